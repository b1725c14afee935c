//! The embed page (`/embed`: the console of one session, for an iframe, with `postMessage` events to the
//! parent) and the kiosk pick list. The logic is [`crate::embed`]'s; this is the DOM edge.

use std::cell::RefCell;
use std::rc::Rc;

use psgate_shared::api::{ClientMessage, ServerMessage, SessionId, SessionState, Target, Transport};
use wasm_bindgen::JsValue;
use web_sys::{HtmlInputElement, HtmlSelectElement};
use yew::prelude::*;

use super::shell::{Login, SessionConsole, use_page_start};
use crate::api::{self, Event, Socket};
use crate::app::{Action, Auth, Link, State, session_state_label};
use crate::embed::{ParentEvent, Tracker, choose_target, find_embedded, needs_password, origin_of, post_origins, target_from_query};

/// Posts `events` to the parent window, only to the origins [`post_origins`] allows (none when the page is not
/// framed).
fn post(events: &[ParentEvent], frame_ancestors: &[String]) {
    if events.is_empty() {
        return;
    }
    let Some(window) = web_sys::window() else { return };
    let Ok(Some(parent)) = window.parent() else { return };
    if JsValue::from(parent.clone()) == JsValue::from(window.clone()) {
        return; // not in a frame
    }
    let own = window.location().origin().unwrap_or_default();
    // Chromium and WebKit name the parent's origin; elsewhere the referrer does (the default referrer policy keeps
    // the origin of a cross-origin parent).
    let ancestor = js_sys::Reflect::get(&window.location(), &JsValue::from_str("ancestorOrigins"))
        .ok()
        .filter(JsValue::is_object)
        .and_then(|list| js_sys::Reflect::get(&list, &JsValue::from_f64(0.0)).ok())
        .and_then(|o| o.as_string());
    let parent_origin = ancestor.or_else(|| window.document().and_then(|d| origin_of(&d.referrer())));
    let targets = post_origins(frame_ancestors, parent_origin.as_deref(), &own);
    for event in events {
        let Some(value) = serde_json::to_string(event).ok().and_then(|t| js_sys::JSON::parse(&t).ok()) else { continue };
        for target in &targets {
            let _ = parent.post_message(&value, target);
        }
    }
}

fn describe(target: &Target) -> String {
    let port = target.port.map(|p| format!(":{p}")).unwrap_or_default();
    let user = target.user.as_deref().map(|u| format!("{u}@")).unwrap_or_default();
    let how = match target.transport {
        Transport::Ssh => "ssh",
        Transport::Local => "local",
        Transport::Winrm => "winrm",
    };
    match &target.name {
        Some(name) => format!("{name} ({user}{}{port}, {how})", target.computer_name),
        None => format!("{user}{}{port} ({how})", target.computer_name),
    }
}

/// `/embed`: log in if needed, open (or take up again) the session on the target, show its console alone.
#[component]
pub fn EmbedPage() -> Html {
    let state = use_reducer(State::default);
    let socket: Rc<RefCell<Option<Socket>>> = use_mut_ref(|| None);

    let tracker = use_mut_ref(Tracker::default);
    // The session shown, kept while it exists (broken too), so its end is reported.
    let shown = use_mut_ref(|| None::<SessionId>);
    // `new_sessions` was sent (or the user must type a password first).
    let requested = use_mut_ref(|| false);
    let url_target = use_memo((), |_| web_sys::window().and_then(|w| w.location().search().ok()).and_then(|q| target_from_query(&q)));
    let config = use_page_start(state.dispatcher());
    let logged_in = matches!(state.auth, Auth::LoggedIn(_));
    let target = choose_target(config.as_ref().and_then(|c| c.embed_target.clone()), (*url_target).clone());
    {
        let (dispatch, socket, config, requested, url_target) = (state.dispatcher(), Rc::clone(&socket), config.clone(), Rc::clone(&requested), Rc::clone(&url_target));
        use_effect_with(logged_in, move |&logged_in| {
            // Set when the login ends before the configuration has come: then no socket.
            let cancelled = Rc::new(std::cell::Cell::new(false));
            if logged_in {
                let (socket, cancelled) = (Rc::clone(&socket), Rc::clone(&cancelled));
                yew::platform::spawn_local(async move {
                    // With the login, the relay also names its configured target.
                    let page = api::page_config().await.unwrap_or_default();
                    if cancelled.get() {
                        return;
                    }
                    let target = choose_target(page.embed_target.clone(), (*url_target).clone());
                    config.set(Some(page));
                    *requested.borrow_mut() = false;
                    let on_event = {
                        let socket = Rc::clone(&socket);
                        Callback::from(move |event: Event| {
                            if let Some(s) = socket.borrow().as_ref() {
                                if event == Event::Open {
                                    s.send(&ClientMessage::GetSessions { computer_name: None, name: None });
                                }
                                // The first list: take up the embedded session, or open it.
                                if let (Event::Message(ServerMessage::Sessions { sessions }), Some(target)) = (&event, &target)
                                    && !*requested.borrow()
                                {
                                    *requested.borrow_mut() = true;
                                    if find_embedded(sessions, target).is_none() && !needs_password(target) {
                                        s.send(&ClientMessage::NewSessions { targets: vec![target.clone()] });
                                    }
                                }
                            }
                            dispatch.dispatch(Action::Socket(event));
                        })
                    };
                    *socket.borrow_mut() = Some(Socket::connect(on_event));
                });
            }
            move || {
                cancelled.set(true);
                if let Some(s) = socket.borrow_mut().take() {
                    s.close();
                }
            }
        });
    }
    // The embedded session: the one shown while it exists, else the target's.
    let current = {
        let mut shown = shown.borrow_mut();
        let kept = shown.filter(|id| state.session(*id).is_some());
        let current = kept.or_else(|| target.as_ref().and_then(|t| find_embedded(&state.sessions, t)));
        *shown = current;
        current
    };
    {
        let (tracker, state, config) = (Rc::clone(&tracker), state.clone(), config.clone());
        use_effect(move || {
            if let Some(c) = config.as_ref() {
                let events = tracker.borrow_mut().events(&state, current);
                post(&events, &c.frame_ancestors);
            }
        });
    }
    let send = {
        let socket = Rc::clone(&socket);
        Callback::from(move |m: ClientMessage| {
            if let Some(s) = socket.borrow().as_ref() {
                s.send(&m);
            }
        })
    };
    let on_action = state.dispatcher().to_callback();
    let user = match &state.auth {
        Auth::Checking => return html! { <p class="hint">{ "Loading…" }</p> },
        Auth::LoggedOut(error) => return html! { <div class="embed"><Login error={error.clone()} {on_action} viewer_link={false} /></div> },
        Auth::LoggedIn(user) => user.clone(),
    };
    let logout = on_action.reform(|_: MouseEvent| {
        yew::platform::spawn_local(api::logout());
        Action::LoggedOut(None)
    });
    let online = state.link == Link::Open;
    let link = match state.link {
        Link::Connecting => html! { <span class="link connecting">{ "connecting…" }</span> },
        Link::Open => html! { <span class="link open">{ "connected" }</span> },
        Link::Retrying(ms) => html! { <span class="link retrying">{ crate::app::retry_text(ms) }</span> },
    };
    let info = current.and_then(|id| state.session(id).cloned());
    let body = match (&target, &info) {
        (None, _) => html! {
            <p class="hint embed-hint" id="embed-no-target">
                { "No target: open " }<code>{ "/embed?computer=HOST&transport=ssh|local" }</code>{ " (or set [embed] target on the relay)." }
            </p>
        },
        (Some(_), Some(info)) if info.state == SessionState::Opened => html! {
            <SessionConsole
                key={info.id.0}
                console={state.consoles.get(&info.id).cloned().unwrap_or_default()}
                info={info.clone()}
                send={send.clone()}
                on_action={on_action.clone()}
            />
        },
        (Some(t), Some(info)) => {
            let reconnect = {
                let (send, t, id) = (send.clone(), t.clone(), info.id);
                Callback::from(move |_: MouseEvent| {
                    send.emit(ClientMessage::RemoveSessions { ids: vec![id], all: false });
                    send.emit(ClientMessage::NewSessions { targets: vec![t.clone()] });
                })
            };
            html! {
                <div class="embed-status" id="embed-status" data-state={session_state_label(info.state).to_ascii_lowercase()}>
                    <p>{ format!("{}: {}", describe(t), session_state_label(info.state)) }{ info.reason.as_ref().map(|r| format!(" ({r})")).unwrap_or_default() }</p>
                    if info.state != SessionState::Opening {
                        <button type="button" id="embed-reconnect" onclick={reconnect} disabled={!online}>{ "Reconnect" }</button>
                    }
                </div>
            }
        }
        (Some(t), None) if needs_password(t) => html! { <Credentials target={t.clone()} send={send.clone()} {online} /> },
        (Some(t), None) => {
            let connect = {
                let (send, t) = (send.clone(), t.clone());
                Callback::from(move |_: MouseEvent| send.emit(ClientMessage::NewSessions { targets: vec![t.clone()] }))
            };
            html! {
                <div class="embed-status" id="embed-status" data-state="none">
                    <p>{ format!("{}: no session", describe(t)) }</p>
                    <button type="button" id="embed-reconnect" onclick={connect} disabled={!online}>{ "Connect" }</button>
                </div>
            }
        }
    };
    html! {
        <div class="embed">
            <header class="topbar embed-bar">
                <span class="brand">{ "psgate" }</span>
                <span class="embed-target" id="embed-target">{ target.as_ref().map(describe).unwrap_or_default() }</span>
                <span class="topbar-spacer"></span>
                { link }
                <span class="topbar-user" id="user">{ user }</span>
                <button type="button" class="secondary" id="logout" onclick={logout}>{ "Log out" }</button>
            </header>
            if !state.notices.is_empty() {
                <div class="notices" role="alert">
                    { for state.notices.iter().map(|n| html! { <div class="notice">{ n }</div> }) }
                    <button type="button" class="secondary" onclick={on_action.reform(|_: MouseEvent| Action::DismissNotices)}>{ "Dismiss" }</button>
                </div>
            }
            { body }
        </div>
    }
}

#[derive(Properties, PartialEq)]
struct CredentialsProps {
    target: Target,
    send: Callback<ClientMessage>,
    online: bool,
}

/// An SSH target of the embed page: the user (when the target names none) and the password, then connect.
#[component]
fn Credentials(props: &CredentialsProps) -> Html {
    let (user, password) = (use_node_ref(), use_node_ref());
    let onsubmit = {
        let (user, password, send, target) = (user.clone(), password.clone(), props.send.clone(), props.target.clone());
        Callback::from(move |e: SubmitEvent| {
            e.prevent_default();
            let value = |r: &NodeRef| r.cast::<HtmlInputElement>().map(|i| i.value()).unwrap_or_default();
            let mut t = target.clone();
            if t.user.is_none() {
                t.user = Some(value(&user)).filter(|u| !u.is_empty());
            }
            t.password = Some(value(&password));
            send.emit(ClientMessage::NewSessions { targets: vec![t] });
        })
    };
    html! {
        <form class="embed-credentials" id="embed-credentials" {onsubmit}>
            <p>{ format!("Connect to {}", describe(&props.target)) }</p>
            if props.target.user.is_none() {
                <label>{ "User" }<input id="embed-user" ref={user} autocomplete="off" required=true /></label>
            }
            <label>{ "Password" }<input id="embed-password" ref={password} type="password" autocomplete="off" /></label>
            <button type="submit" disabled={!props.online}>{ "Connect" }</button>
        </form>
    }
}

/// Props of the kiosk pick list.
#[derive(Debug, Properties, PartialEq)]
pub struct KioskProps {
    /// The relay's kiosk targets (empty while they load).
    pub targets: Vec<Target>,
    /// Sends `new_sessions`.
    pub send: Callback<ClientMessage>,
    /// The connection is up.
    pub online: bool,
}

/// Kiosk mode's New-PSSession: a pick list of the relay's targets, no free-form host (the relay refuses others
/// anyway); an SSH or WinRM target asks for the password (and the user, when the target names none).
#[component]
pub fn KioskPicker(props: &KioskProps) -> Html {
    let picked = use_state(|| 0usize);
    let (user, password) = (use_node_ref(), use_node_ref());
    let chosen = props.targets.get(*picked).or_else(|| props.targets.first()).cloned();
    let onchange = {
        let picked = picked.clone();
        Callback::from(move |e: web_sys::Event| {
            if let Some(select) = e.target_dyn_into::<HtmlSelectElement>() {
                picked.set(select.value().parse().unwrap_or(0));
            }
        })
    };
    let onsubmit = {
        let (user, password, send, chosen) = (user.clone(), password.clone(), props.send.clone(), chosen.clone());
        Callback::from(move |e: SubmitEvent| {
            e.prevent_default();
            let Some(mut t) = chosen.clone() else { return };
            let value = |r: &NodeRef| r.cast::<HtmlInputElement>().map(|i| i.value()).unwrap_or_default();
            if t.transport != Transport::Local {
                if t.user.is_none() {
                    t.user = Some(value(&user)).filter(|u| !u.is_empty());
                }
                t.password = Some(value(&password));
            }
            send.emit(ClientMessage::NewSessions { targets: vec![t] });
        })
    };
    if props.targets.is_empty() {
        return html! { <p class="hint" id="kiosk-loading">{ "Loading the targets…" }</p> };
    }
    html! {
        <form class="new-session kiosk" id="kiosk-form" {onsubmit}>
            <label>{ "Target" }
                <select id="kiosk-target" {onchange}>
                    { for props.targets.iter().enumerate().map(|(i, t)| html! {
                        <option value={i.to_string()} selected={i == *picked}>{ describe(t) }</option>
                    }) }
                </select>
            </label>
            if let Some(t) = chosen.as_ref().filter(|t| t.transport != Transport::Local) {
                if t.user.is_none() {
                    <label>{ "User" }<input id="kiosk-user" ref={user} autocomplete="off" /></label>
                }
                <label>{ "Password" }<input id="kiosk-password" ref={password} type="password" autocomplete="off" /></label>
            }
            <button type="submit" id="new-session" disabled={!props.online}>{ "New-PSSession" }</button>
        </form>
    }
}
