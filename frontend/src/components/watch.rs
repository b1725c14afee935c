//! The watch page (`/watch/`, a bundle of its own: `psgate-watch`): sessions that are not the user's own.
//! - `/watch/?join=OWNER/ID`: a session another user shared, joined live (its kept pipelines first, then what
//!   happens), with who is present; an observer's console takes no input, a peer's does; a moderator approves or
//!   denies the commands that wait.
//! - `/watch/`: the audit page for relay admins: search the audit trail (by user, computer, command, and by result),
//!   open a session's timeline and replay it with its timing through the console's own renderers.
//!
//! Its own bundle: what only these pages need does not weigh on the console's download.

use std::cell::RefCell;
use std::rc::Rc;

use psgate_shared::api::{ClientMessage, ServerMessage, SessionId, ShareRole};
use web_sys::HtmlInputElement;
use yew::prelude::*;

use super::shell::{Login, SessionConsole, present, use_history_wanted, use_page_start};
use crate::api::{self, Event as SocketEvent, Socket};
use crate::app::{Action, Auth, Link, State, local_info};
use crate::audit::{Record, Search, Step, replay, session_query};

/// The page: a joined session, or the audit.
#[component]
pub fn WatchApp() -> Html {
    let state = use_reducer(State::default);
    let _ = use_page_start(state.dispatcher());
    let on_action = state.dispatcher().to_callback();
    let user = match &state.auth {
        Auth::Checking => return html! { <p class="hint">{ "Loading…" }</p> },
        Auth::LoggedOut(error) => return html! { <Login error={error.clone()} {on_action} /> },
        Auth::LoggedIn(user) => user.clone(),
    };
    let joined = api::joined_session();
    html! {
        <>
            <header class="topbar">
                <span class="brand">{ "psgate" }</span>
                <span class="topbar-title">{ if joined.is_some() { "Shared session" } else { "Audit" } }</span>
                <a class="topbar-link" href="/">{ "Console" }</a>
                <span class="topbar-spacer"></span>
                <span class="topbar-user" id="user">{ user }</span>
            </header>
            if joined.is_some() {
                <Joined state={state.clone()} />
            } else {
                <Audit />
            }
        </>
    }
}

#[derive(Properties, PartialEq)]
struct JoinedProps {
    state: UseReducerHandle<State>,
}

/// A joined session: its console (read-only for an observer), who is present, the commands waiting for this
/// moderator.
#[component]
fn Joined(props: &JoinedProps) -> Html {
    let state = &props.state;
    let socket: Rc<RefCell<Option<Socket>>> = use_mut_ref(|| None);
    {
        let (dispatch, socket) = (state.dispatcher(), Rc::clone(&socket));
        use_effect_with((), move |_| {
            // The relay sends the session, its backlog and then its events unasked.
            *socket.borrow_mut() = Some(Socket::connect(Callback::from(move |event: SocketEvent| dispatch.dispatch(Action::Socket(event)))));
            move || {
                if let Some(s) = socket.borrow_mut().take() {
                    s.close();
                }
            }
        });
    }
    let send = api::sender(&socket);
    use_history_wanted(state.history_wanted, &send);
    let on_action = state.dispatcher().to_callback();
    let link = match state.link {
        Link::Connecting => "connecting…".to_owned(),
        Link::Open => "connected".to_owned(),
        Link::Retrying(ms) => crate::app::retry_text(ms),
    };
    let info = state.active.and_then(|id| state.session(id).cloned());
    html! {
        <main class="app-layout">
            <section class="panel joined" id="joined">
                if let Some((owner, role)) = &state.joined {
                    <h2>{ format!("{owner}'s session, shared with you: you are {}", if *role == ShareRole::Peer { "a peer (you may run commands)" } else { "an observer" }) }</h2>
                    { present(state.active.and_then(|a| state.present.get(&a))) }
                } else if matches!(state.link, Link::Retrying(ms) if ms >= 1000) {
                    // The relay refuses the join (HTTP 403, which a browser's WebSocket does not show) or cannot be
                    // reached: after a few tries, said; the page keeps trying.
                    <h2 id="join-refused">{ format!("Could not join {}", api::joined_session().unwrap_or_default()) }</h2>
                    <p class="hint">{ "The session is not shared with you, it has ended, or the relay cannot be reached. Its owner shares it from their console; an admin or a moderator may observe it." }</p>
                } else {
                    <h2>{ "Joining…" }</h2>
                }
                <p class="hint link-state">{ link }</p>
            </section>
            { for state.approvals.iter().filter(|a| state.joined.as_ref().is_some_and(|(owner, _)| *owner == a.owner)).map(|a| {
                let (session, pipeline, command, by) = (a.session, a.pipeline, &a.command, &a.requested_by);
                let decide = |approve: bool| send.reform(move |_: MouseEvent| ClientMessage::Approve { session, pipeline, approve, reason: None });
                html! {
                    <div class="notices approval" role="alert" data-pipeline={pipeline.0.to_string()}>
                        { format!("{by} asks to run: ") }<code>{ command }</code>
                        <button type="button" class="approve" onclick={decide(true)}>{ "Approve" }</button>
                        <button type="button" class="secondary deny" onclick={decide(false)}>{ "Deny" }</button>
                    </div>
                }
            }) }
            if !state.notices.is_empty() {
                <div class="notices" role="alert">
                    { for state.notices.iter().map(|n| html! { <div class="notice">{ n }</div> }) }
                </div>
            }
            if let Some(info) = info {
                <SessionConsole
                    key={info.id.0}
                    console={state.consoles.get(&info.id).cloned().unwrap_or_default()}
                    info={info.clone()}
                    {send}
                    {on_action}
                    read_only={state.joined.as_ref().is_none_or(|(_, role)| *role == ShareRole::Observer).then_some("you observe this session")}
                />
            }
        </main>
    }
}

/// A time as the audit page shows it: `2026-12-08 03:01:02` (UTC).
fn time(ms: i64) -> String {
    let iso = js_sys::Date::new(&(ms as f64).into()).to_iso_string().as_string().unwrap_or_default();
    iso.get(..19).unwrap_or(&iso).replace('T', " ")
}

/// The audit page: a search, its records, and a session's timeline with its replay.
#[component]
fn Audit() -> Html {
    let fields: [NodeRef; 7] = Default::default();
    let results = use_state(|| None::<Result<(Vec<Record>, bool), String>>);
    // The session opened: (owner, id, its records or why not).
    let timeline = use_state(|| None::<(String, u64, Result<Rc<Vec<Record>>, String>)>);
    let onsubmit = {
        let (fields, results) = (fields.clone(), results.clone());
        Callback::from(move |e: SubmitEvent| {
            e.prevent_default();
            let value = |i: usize| fields[i].cast::<HtmlInputElement>().map(|f| f.value()).unwrap_or_default();
            // A `datetime-local` box's value (`2026-12-08T03:10`), read as UTC as the records' times are shown.
            let time = |i: usize| Some(js_sys::Date::parse(&format!("{}Z", value(i)))).filter(|t| t.is_finite()).map(|t| t as i64);
            let search = Search { user: value(0), computer: value(1), command: value(2), result: value(3), result_type: value(4), since: time(5), until: time(6) };
            let results = results.clone();
            yew::platform::spawn_local(async move {
                results.set(Some(api::audit(&search.query()).await.map(|p| (p.records, p.more))));
            });
        })
    };
    let open = |owner: String, session: u64| {
        let timeline = timeline.clone();
        Callback::from(move |_: MouseEvent| {
            let (timeline, owner) = (timeline.clone(), owner.clone());
            yew::platform::spawn_local(async move {
                let records = api::audit(&session_query(&owner, session)).await.map(|p| Rc::new(p.records));
                timeline.set(Some((owner, session, records)));
            });
        })
    };
    let labels = ["User", "Computer", "Command", "Result (Name=Spooler)", "Result type", "Since (UTC)", "Until (UTC)"];
    let ids = ["audit-user", "audit-computer", "audit-command", "audit-result", "audit-result-type", "audit-since", "audit-until"];
    html! {
        <main class="app-layout audit-page">
            <section class="panel" id="audit-search">
                <h2>{ "Audit trail" }</h2>
                <form class="audit-form" {onsubmit}>
                    { for (0..7).map(|i| html! {
                        <label>{ labels[i] }<input id={ids[i]} ref={fields[i].clone()} spellcheck="false" type={if i >= 5 { "datetime-local" } else { "text" }} /></label>
                    }) }
                    <button type="submit" id="audit-submit">{ "Search" }</button>
                </form>
                { match &*results {
                    None => html! { <p class="hint">{ "Search by who acted, the computer, text in the command, or what a command returned: a property (Name=Spooler) or a type." }</p> },
                    Some(Err(e)) => html! { <p class="login-error" role="alert">{ e }</p> },
                    Some(Ok((records, more))) => html! {
                        <>
                            <p class="hint" id="audit-count">{ format!("{} record{}{}", records.len(), if records.len() == 1 { "" } else { "s" }, if *more { " (more: narrow the search)" } else { "" }) }</p>
                            <table class="sessions audit-records" id="audit-records">
                                <thead><tr><th>{ "#" }</th><th>{ "Time (UTC)" }</th><th>{ "What" }</th><th>{ "Who" }</th><th>{ "Session" }</th><th>{ "Computer" }</th><th>{ "Detail" }</th></tr></thead>
                                <tbody>
                                    { for records.iter().map(|r| {
                                        let e = &r.event;
                                        let session = match (&e.owner, e.session) {
                                            (Some(owner), Some(id)) => html! {
                                                <button type="button" class="secondary open-timeline" onclick={open(owner.clone(), id)} title="This session's timeline and replay">{ format!("{owner} #{id}") }</button>
                                            },
                                            _ => html! {},
                                        };
                                        html! {
                                            <tr class={classes!("audit-record", format!("kind-{}", e.kind))}>
                                                <td class="num">{ r.seq }</td><td>{ time(e.at) }</td><td>{ &e.kind }</td><td>{ &e.actor }</td>
                                                <td>{ session }</td><td>{ e.computer.clone().unwrap_or_default() }</td><td class="detail">{ e.summary() }</td>
                                            </tr>
                                        }
                                    }) }
                                </tbody>
                            </table>
                        </>
                    },
                } }
            </section>
            { match &*timeline {
                None => html! {},
                Some((_, _, Err(e))) => html! { <p class="login-error" role="alert">{ e }</p> },
                Some((owner, id, Ok(records))) => html! { <Timeline key={format!("{owner}/{id}")} owner={owner.clone()} session={*id} records={Rc::clone(records)} /> },
            } }
        </main>
    }
}

#[derive(Properties, PartialEq)]
struct TimelineProps {
    owner: String,
    session: u64,
    records: Rc<Vec<Record>>,
}

/// The replay's console: the console's own state, fed the recorded events.
#[derive(Default, PartialEq)]
struct Replayed {
    console: Rc<State>,
    /// Steps done, of all.
    done: usize,
}

enum ReplayAction {
    /// From the start, in this session (its commands show at its prompt).
    Reset(psgate_shared::api::SessionInfo),
    Step(Action),
}

impl Reducible for Replayed {
    type Action = ReplayAction;
    fn reduce(self: Rc<Self>, action: ReplayAction) -> Rc<Self> {
        match action {
            ReplayAction::Reset(info) => Rc::new(Replayed { console: Rc::new(State::default()).reduce(Action::Socket(SocketEvent::Message(ServerMessage::Sessions { sessions: vec![info] }))), done: 0 }),
            ReplayAction::Step(a) => Rc::new(Replayed { console: Rc::clone(&self.console).reduce(a), done: self.done + 1 }),
        }
    }
}

/// The longest pause a replay keeps between two events (a user thinking, a session idle overnight).
const MAX_GAP_MS: i64 = 2_000;

/// A session's records in order, and its replay.
#[component]
fn Timeline(props: &TimelineProps) -> Html {
    let replayed = use_reducer(Replayed::default);
    // Each play bumps it: a replay started before (or the page gone) stops at its next step.
    let generation = use_mut_ref(|| 0u32);
    let speed = use_state(|| 1i64);
    let session = SessionId(props.session);
    let steps: Rc<Vec<Step>> = {
        let records = Rc::clone(&props.records);
        use_memo(records, move |r| replay(r, session, MAX_GAP_MS))
    };
    {
        let generation = Rc::clone(&generation);
        use_effect_with((), move |_| move || *generation.borrow_mut() += 1);
    }
    let computer = props.records.iter().find_map(|r| r.event.computer.clone()).unwrap_or_default();
    let mut info = local_info();
    info.id = session;
    info.name = format!("{} #{}", props.owner, props.session);
    info.computer_name = computer.clone();
    info.prompt = None;
    let play = {
        let (dispatch, generation, steps, speed, info) = (replayed.dispatcher(), Rc::clone(&generation), Rc::clone(&steps), *speed, info.clone());
        Callback::from(move |_: MouseEvent| {
            let mine = {
                let mut g = generation.borrow_mut();
                *g += 1;
                *g
            };
            dispatch.dispatch(ReplayAction::Reset(info.clone()));
            let (dispatch, generation, steps) = (dispatch.clone(), Rc::clone(&generation), Rc::clone(&steps));
            yew::platform::spawn_local(async move {
                let mut clock = 0;
                for step in steps.iter() {
                    let wait = (step.after_ms - clock) / speed;
                    if wait > 0 {
                        yew::platform::time::sleep(std::time::Duration::from_millis(wait as u64)).await;
                        clock = step.after_ms;
                    }
                    if *generation.borrow() != mine {
                        return;
                    }
                    dispatch.dispatch(ReplayAction::Step(step.action.clone()));
                }
            });
        })
    };
    let on_speed = {
        let speed = speed.clone();
        Callback::from(move |e: Event| {
            if let Some(s) = e.target_dyn_into::<web_sys::HtmlSelectElement>() {
                speed.set(s.value().parse().unwrap_or(1));
            }
        })
    };
    let pipelines = props.records.iter().filter(|r| r.event.kind == "pipeline").count();
    html! {
        <section class="panel timeline" id="timeline">
            <h2>{ format!("{}'s session {} on {computer}", props.owner, props.session) }</h2>
            <ol class="timeline-records">
                { for props.records.iter().map(|r| html! {
                    <li class={format!("kind-{}", r.event.kind)}>
                        <span class="num">{ time(r.event.at) }</span>{ " " }<strong>{ &r.event.kind }</strong>{ format!(" by {}: ", r.event.actor) }{ r.event.summary() }
                    </li>
                }) }
            </ol>
            <div class="replay-controls">
                <button type="button" id="replay" onclick={play} disabled={pipelines == 0}>{ "Replay" }</button>
                <label>{ "Speed " }
                    <select id="replay-speed" onchange={on_speed}>
                        <option value="1" selected=true>{ "1×" }</option>
                        <option value="4">{ "4×" }</option>
                        <option value="16">{ "16×" }</option>
                    </select>
                </label>
                <span class="hint" id="replay-progress">{ format!("{} of {} events", replayed.done, steps.len()) }</span>
            </div>
            <SessionConsole
                key="replay"
                console={replayed.console.consoles.get(&session).cloned().unwrap_or_default()}
                {info}
                send={Callback::from(|_: ClientMessage| {})}
                on_action={Callback::from(|_: Action| {})}
                read_only={Some("a recording: replayed, nothing runs")}
            />
        </section>
    }
}
