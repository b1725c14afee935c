//! The console page: login, the sessions panel, one Enter-PSSession-like console per session, host prompts as
//! dialogs. State is [`crate::app::State`]; the one WebSocket is [`crate::api::Socket`]. `/viewer` is the
//! CLIXML viewer.

use std::cell::RefCell;
use std::rc::Rc;

use psgate_shared::api::{LOCAL_SESSION, ClientMessage, DEFAULT_THROTTLE_LIMIT, FieldAnswer, HostAnswer, OutputBufferingMode, PipelineId, PipelineState, SessionId, SessionInfo, SessionState, ShareRole, Target, Transport, WinrmAuth};
use web_sys::{HtmlInputElement, HtmlSelectElement, HtmlTextAreaElement};
use yew::prelude::*;

use super::console::block;
use crate::api::{self, Event, Socket};
use crate::app::{Action, Auth, Completions, Console, HostPrompt, Invocation, Link, PromptKind, RemoteShells, State, availability_label, fields_answer, history_step, is_exit_line, local_info, pipeline_state_name, prompt_of, session_state_label, string_answer, transport_label};

/// The console's bundle: `/embed` is the embed page, anything else the console (`/viewer` and `/watch/` are the
/// other bundle's, [`super::Pages`]).
#[component]
pub fn App() -> Html {
    let path = web_sys::window().and_then(|w| w.location().pathname().ok()).unwrap_or_default();
    if crate::embed::is_embed_path(&path) {
        html! { <super::embed::EmbedPage /> }
    } else {
        html! { <ConsolePage /> }
    }
}

/// A page's start: the relay's page configuration (kiosk mode, the embed target; known before any login), then
/// whether somebody is logged in, told to the reducer.
#[hook]
pub fn use_page_start(dispatch: UseReducerDispatcher<State>) -> UseStateHandle<Option<psgate_shared::api::PageConfig>> {
    let page = use_state(|| None::<psgate_shared::api::PageConfig>);
    {
        let page = page.clone();
        use_effect_with((), move |_| {
            yew::platform::spawn_local(async move {
                page.set(Some(api::page_config().await.unwrap_or_default()));
                dispatch.dispatch(match api::me().await {
                    Some(user) => Action::LoggedIn(user),
                    None => Action::LoggedOut(None),
                });
            });
        });
    }
    page
}

/// A pipeline this page did not start came (Connect re-attached it, another tab or a joined session's owner ran it):
/// the relay's history names its script. `wanted` is [`State::history_wanted`].
#[hook]
pub(crate) fn use_history_wanted(wanted: u32, send: &Callback<ClientMessage>) {
    let send = send.clone();
    use_effect_with(wanted, move |&wanted| {
        if wanted > 0 {
            send.emit(ClientMessage::GetHistory { replay: false });
        }
    });
}

#[component]
fn ConsolePage() -> Html {
    let state = use_reducer(State::default);
    let socket: Rc<RefCell<Option<Socket>>> = use_mut_ref(|| None);
    // Kiosk mode (known before the login) and its targets (named once logged in).
    let page = use_page_start(state.dispatcher());
    let logged_in = matches!(state.auth, Auth::LoggedIn(_));
    {
        let page = page.clone();
        use_effect_with(logged_in, move |&logged_in| {
            if logged_in {
                yew::platform::spawn_local(async move {
                    if let Some(c) = api::page_config().await {
                        page.set(Some(c));
                    }
                });
            }
        });
    }
    {
        let (dispatch, socket) = (state.dispatcher(), Rc::clone(&socket));
        use_effect_with(logged_in, move |&logged_in| {
            if logged_in {
                let on_event = {
                    let socket = Rc::clone(&socket);
                    // The first connection of this page replays what the relay kept (a tab closed and opened
                    // again shows its consoles); a reconnect only catches up (running pipelines re-attach).
                    let first = Rc::new(std::cell::Cell::new(true));
                    Callback::from(move |event: Event| {
                        if event == Event::Open
                            && let Some(s) = socket.borrow().as_ref()
                        {
                            s.send(&ClientMessage::GetSessions { computer_name: None, name: None });
                            s.send(&ClientMessage::GetHistory { replay: first.replace(false) });
                            s.send(&ClientMessage::GetSharedSessions {});
                        }
                        dispatch.dispatch(Action::Socket(event));
                    })
                };
                *socket.borrow_mut() = Some(Socket::connect(on_event));
            }
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
    let user = match &state.auth {
        Auth::Checking => return html! { <p class="hint">{ "Loading…" }</p> },
        Auth::LoggedOut(error) => return html! { <Login error={error.clone()} {on_action} /> },
        Auth::LoggedIn(user) => user.clone(),
    };
    let logout = on_action.reform(|_: MouseEvent| {
        yew::platform::spawn_local(api::logout());
        Action::LoggedOut(None)
    });
    let link = match state.link {
        Link::Connecting => html! { <span class="link connecting">{ "connecting…" }</span> },
        Link::Open => html! { <span class="link open">{ "connected" }</span> },
        Link::Retrying(ms) => html! { <span class="link retrying">{ crate::app::retry_text(ms) }</span> },
    };
    let active = state.active.and_then(|id| if id == LOCAL_SESSION { Some(local_info()) } else { state.session(id).cloned() });
    html! {
        <>
            <header class="topbar">
                <span class="brand">{ "psgate" }</span>
                <span class="topbar-title">{ "Console" }</span>
                <a class="topbar-link" href="/viewer">{ "Viewer" }</a>
                if state.admin { <a class="topbar-link" id="audit-link" href="/watch/">{ "Audit" }</a> }
                <span class="topbar-spacer"></span>
                { link }
                <span class="topbar-user" id="user">{ &user }</span>
                <button type="button" class="secondary" id="logout" onclick={logout}>{ "Log out" }</button>
            </header>
            <main class="app-layout">
                <Sessions sessions={state.sessions.clone()} modules={state.modules.clone()} active={state.active} send={send.clone()} on_action={on_action.clone()} online={state.link == Link::Open} admin={state.admin}
                    kiosk={page.as_ref().filter(|c| c.kiosk).map(|c| c.kiosk_targets.clone())} remote_shells={state.remote_shells.clone()} shares={state.shares.clone()} />
                { shared_with_me(&state.shared_with_me) }
                // Commands waiting for this user's approval as a moderator: decided on the watch page, joined to the session.
                { for state.approvals.iter().filter(|a| a.owner != user).map(|a| {
                    let href = api::watch_href(&a.owner, a.session);
                    html! {
                        <div class="notices approval-waiting" role="alert">
                            { format!("{} asks to run ", a.requested_by) }<code>{ &a.command }</code>{ format!(" in {}'s session {}, which you moderate. ", a.owner, a.session.0) }
                            <a class="decide" {href} target="_blank">{ "Open it to decide" }</a>
                        </div>
                    }
                }) }
                if !state.notices.is_empty() {
                    <div class="notices" role="alert">
                        { for state.notices.iter().map(|n| html! { <div class="notice">{ n }</div> }) }
                        <button type="button" class="secondary" onclick={on_action.reform(|_: MouseEvent| Action::DismissNotices)}>{ "Dismiss" }</button>
                    </div>
                }
                if let Some(info) = active {
                    <SessionConsole
                        key={info.id.0}
                        console={state.consoles.get(&info.id).cloned().unwrap_or_default()}
                        info={info.clone()}
                        send={send.clone()}
                        on_action={on_action.clone()}
                        entered={state.entered}
                    />
                    if state.present.get(&info.id).is_some_and(|p| p.len() > 1) {
                        { present(state.present.get(&info.id)) }
                    }
                }
                <InvokePanel sessions={state.sessions.clone()} invocations={state.invocations.clone()} send={send.clone()} on_action={on_action.clone()} online={state.link == Link::Open} />

            </main>
        </>
    }
}

#[derive(Properties, PartialEq)]
pub(crate) struct LoginProps {
    pub(crate) error: Option<String>,
    pub(crate) on_action: Callback<Action>,
    /// The link to the viewer (not inside an iframe: the viewer cannot be framed).
    #[prop_or(true)]
    pub(crate) viewer_link: bool,
}

#[component]
pub(crate) fn Login(props: &LoginProps) -> Html {
    let name = use_node_ref();
    let password = use_node_ref();
    let busy = use_state(|| false);
    let onsubmit = {
        let (name, password, busy, on_action) = (name.clone(), password.clone(), busy.clone(), props.on_action.clone());
        Callback::from(move |e: SubmitEvent| {
            e.prevent_default();
            let value = |r: &NodeRef| r.cast::<HtmlInputElement>().map(|i| i.value()).unwrap_or_default();
            let (n, p) = (value(&name), value(&password));
            let (busy, on_action) = (busy.clone(), on_action.clone());
            busy.set(true);
            yew::platform::spawn_local(async move {
                let result = api::login(&n, &p).await;
                busy.set(false);
                on_action.emit(match result {
                    Ok(user) => Action::LoggedIn(user),
                    Err(e) => Action::LoggedOut(Some(e)),
                });
            });
        })
    };
    html! {
        <main class="login-page">
            <form class="login" {onsubmit}>
                <h1><span class="brand">{ "psgate" }</span>{ " sign in" }</h1>
                <label for="login-name">{ "User name" }</label>
                <input id="login-name" ref={name} autocomplete="username" required=true />
                <label for="login-password">{ "Password" }</label>
                <input id="login-password" ref={password} type="password" autocomplete="current-password" required=true />
                if let Some(e) = &props.error { <p class="login-error" role="alert">{ e }</p> }
                <button type="submit" id="login-submit" disabled={*busy}>{ "Log in" }</button>
                if props.viewer_link { <p class="hint"><a href="/viewer">{ "CLIXML viewer" }</a>{ " (no login needed)" }</p> }
            </form>
        </main>
    }
}

/// Who is present in a shared session: the owner, then each joiner with their role.
pub(crate) fn present(participants: Option<&Vec<psgate_shared::api::Share>>) -> Html {
    let Some(participants) = participants else { return html! {} };
    let names: Vec<String> = participants
        .iter()
        .map(|p| match p.role {
            None => format!("{} (owner)", p.user),
            Some(ShareRole::Peer) => format!("{} (peer)", p.user),
            Some(ShareRole::Observer) => format!("{} (observer)", p.user),
        })
        .collect();
    html! { <p class="present" id="present">{ format!("Present: {}", names.join(", ")) }</p> }
}

/// The sessions other users shared with this one, each opened in a console of its own (a new tab).
fn shared_with_me(sessions: &[psgate_shared::api::SharedSession]) -> Html {
    if sessions.is_empty() {
        return html! {};
    }
    html! {
        <section class="panel shared-with-me" id="shared-with-me">
            <h2>{ "Shared with you" }</h2>
            { for sessions.iter().map(|x| {
                let href = api::watch_href(&x.owner, x.session);
                let role = if x.role == ShareRole::Peer { "peer" } else { "observer" };
                html! { <p><a class="join-link" {href} target="_blank">{ format!("{}'s session {}", x.owner, x.session.0) }</a>{ format!(" ({role})") }</p> }
            }) }
        </section>
    }
}

#[derive(Properties, PartialEq)]
struct SessionsProps {
    sessions: Vec<SessionInfo>,
    /// The prompt's imported modules.
    modules: Vec<psgate_shared::api::PromptModule>,
    active: Option<SessionId>,
    send: Callback<ClientMessage>,
    on_action: Callback<Action>,
    /// The user is a relay admin.
    admin: bool,
    online: bool,
    /// Kiosk mode: its targets (a pick list instead of the form).
    kiosk: Option<Vec<Target>>,
    /// The last `Get-PSSession -ComputerName` answer.
    remote_shells: Option<RemoteShells>,
    /// Who each session is shared with.
    #[prop_or_default]
    shares: std::collections::BTreeMap<SessionId, Vec<psgate_shared::api::Share>>,
}

/// The New-PSSession form, as typed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Form {
    computers: String,
    transport: String,
    port: String,
    user: String,
    password: String,
    name: String,
    configuration_name: String,
    authentication: String,
    use_ssl: bool,
}

/// Reads the New-PSSession form: one target per comma-separated computer name.
fn targets(f: &Form) -> Result<Vec<Target>, String> {
    let transport = match f.transport.as_str() {
        "ssh" => Transport::Ssh,
        "winrm" => Transport::Winrm,
        _ => Transport::Local,
    };
    let winrm = transport == Transport::Winrm;
    let authentication = match f.authentication.as_str() {
        "ntlm" => WinrmAuth::Ntlm,
        "kerberos" => WinrmAuth::Kerberos,
        "basic" => WinrmAuth::Basic,
        _ => WinrmAuth::Negotiate,
    };
    let port = parse_number::<u16>(&f.port, 1, "Port")?;
    let opt = |s: &str| Some(s.trim().to_owned()).filter(|s| !s.is_empty());
    let names: Vec<&str> = f.computers.split(',').map(str::trim).filter(|c| !c.is_empty()).collect();
    if names.is_empty() {
        return Err("name at least one computer".into());
    }
    let many = names.len() > 1;
    Ok(names
        .iter()
        .map(|c| Target {
            computer_name: (*c).to_owned(),
            transport,
            port,
            user: opt(&f.user),
            password: Some(f.password.clone()).filter(|p| !p.is_empty()),
            key_file: None,
            subsystem: None,
            // One name for several sessions would be ambiguous: number them.
            name: opt(&f.name).map(|n| if many { format!("{n}-{c}") } else { n }),
            use_ssl: winrm && f.use_ssl,
            authentication: winrm.then_some(authentication),
            configuration_name: opt(&f.configuration_name).filter(|_| winrm),
            shell_id: None,
        })
        .collect())
}

/// The value of an input or select (empty when absent).
fn value_of(r: &NodeRef) -> String {
    if let Some(s) = r.cast::<HtmlSelectElement>() {
        return s.value();
    }
    r.cast::<HtmlInputElement>().map(|i| i.value()).unwrap_or_default()
}

/// The port the form's placeholder shows: the transport's default.
fn default_port(transport: &str, use_ssl: bool) -> &'static str {
    match (transport, use_ssl) {
        ("ssh", _) => "22",
        ("winrm", false) => "5985",
        ("winrm", true) => "5986",
        _ => "",
    }
}

#[component]
fn Sessions(props: &SessionsProps) -> Html {
    // computers, port, user, password, name, configuration name, UseSSL, authentication, transport
    let refs: Rc<[NodeRef; 9]> = use_memo((), |_| Default::default());
    // Idle timeout and buffering mode of Disconnect.
    let disconnect_refs: Rc<[NodeRef; 2]> = use_memo((), |_| Default::default());
    // What the form's selects and checkbox say, for the fields and placeholders that depend on them (the inputs
    // themselves are never given a `value`: a re-render would put it back over what the user typed).
    let shown = use_state(|| ("local".to_owned(), false));
    // The target the remote shells were listed with: a Connect to one of them uses it.
    let shells_target = use_mut_ref(|| None::<Target>);
    let error = use_state(|| None::<String>);
    // The share dialog: the session being shared, and its user and role fields.
    let sharing = use_state(|| None::<SessionId>);
    let share_refs: Rc<[NodeRef; 2]> = use_memo((), |_| Default::default());
    let read = {
        let refs = Rc::clone(&refs);
        move || Form {
            computers: value_of(&refs[0]),
            port: value_of(&refs[1]),
            user: value_of(&refs[2]),
            password: value_of(&refs[3]),
            name: value_of(&refs[4]),
            configuration_name: value_of(&refs[5]),
            use_ssl: refs[6].cast::<HtmlInputElement>().is_some_and(|i| i.checked()),
            authentication: value_of(&refs[7]),
            transport: value_of(&refs[8]),
        }
    };
    let onsubmit = {
        let (read, error, send, on_action) = (read.clone(), error.clone(), props.send.clone(), props.on_action.clone());
        Callback::from(move |e: SubmitEvent| {
            e.prevent_default();
            match targets(&read()) {
                Ok(targets) => {
                    error.set(None);
                    on_action.emit(Action::AskedSessions);
                    send.emit(ClientMessage::NewSessions { targets });
                }
                Err(e) => error.set(Some(e)),
            }
        })
    };
    let get_shells = {
        let (read, error, send, on_action, shells_target) = (read.clone(), error.clone(), props.send.clone(), props.on_action.clone(), Rc::clone(&shells_target));
        Callback::from(move |_: MouseEvent| match targets(&read()) {
            Ok(mut t) if t.len() == 1 => {
                error.set(None);
                let target = t.remove(0);
                on_action.emit(Action::AskedShells(target.computer_name.clone()));
                send.emit(ClientMessage::GetRemoteShells { target: target.clone() });
                *shells_target.borrow_mut() = Some(target);
            }
            Ok(_) => error.set(Some("Get-PSSession -ComputerName asks one computer".into())),
            Err(e) => error.set(Some(e)),
        })
    };
    let onchange = {
        let (read, shown) = (read.clone(), shown.clone());
        Callback::from(move |_: web_sys::Event| {
            let f = read();
            shown.set((f.transport, f.use_ssl));
        })
    };
    {
        // The demo target, typed in once: a `value` attribute would be put back on every render, wiping what the
        // user typed whenever a message re-renders the panel.
        let computers = refs[0].clone();
        use_effect_with((), move |_| {
            if let Some(input) = computers.cast::<HtmlInputElement>()
                && input.value().is_empty()
            {
                input.set_value("localhost");
            }
        });
    }
    let remove_all = props.send.reform(|_: MouseEvent| ClientMessage::RemoveSessions { ids: vec![], all: true });
    // Sessions asked for here (the kiosk's picks, a remote shell's Connect) get the console when they come.
    let follow_send = {
        let (send, on_action) = (props.send.clone(), props.on_action.clone());
        Callback::from(move |m: ClientMessage| {
            if matches!(m, ClientMessage::NewSessions { .. }) {
                on_action.emit(Action::AskedSessions);
            }
            send.emit(m);
        })
    };
    let (transport, use_ssl) = &*shown;
    let winrm = transport == "winrm";
    let disconnect_options = props.sessions.iter().any(|s| s.can_disconnect);
    // The relay's IdleTimeout or MaxShellRunTime counts for some session: a column says when each closes.
    let quota_column = props.sessions.iter().any(|s| s.idle_left_secs.is_some() || s.run_left_secs.is_some());
    let headings: &[&str] = if quota_column {
        &["Id", "Name", "ComputerName", "Transport", "State", "Availability", "ConfigurationName", "Closes in", ""]
    } else {
        &["Id", "Name", "ComputerName", "Transport", "State", "Availability", "ConfigurationName", ""]
    };
    html! {
        <section class="panel sessions">
            <h2>{ "Sessions" }</h2>
            if let Some(targets) = props.kiosk.clone() {
                <super::embed::KioskPicker {targets} send={follow_send.clone()} online={props.online} />
            } else {
            <form class="new-session" {onsubmit}>
                { field("ComputerName", "new-computers", &refs[0], "text", "localhost, srv01, srv02") }
                { select("Transport", "new-transport", &refs[8], &[("local", "local"), ("ssh", "ssh"), ("winrm", "winrm")], Some(onchange.clone())) }
                { field("Port", "new-port", &refs[1], "text", default_port(transport, *use_ssl)) }
                <span class="winrm-fields" hidden={!winrm}>
                    <label class="inline">{ "UseSSL" }<input id="new-use-ssl" ref={refs[6].clone()} type="checkbox" {onchange} /></label>
                    { select("Authentication", "new-authentication", &refs[7], &[("negotiate", "Negotiate"), ("ntlm", "NTLM"), ("kerberos", "Kerberos"), ("basic", "Basic")], None) }
                    { field("ConfigurationName", "new-configuration", &refs[5], "text", "Microsoft.PowerShell") }
                </span>
                { field("User", "new-user", &refs[2], "text", "") }
                { field("Password", "new-password", &refs[3], "password", "") }
                { field("Name", "new-name", &refs[4], "text", "") }
                <button type="submit" id="new-session" disabled={!props.online}>{ "New-PSSession" }</button>
                if winrm {
                    <button type="button" class="secondary" id="get-remote-shells" onclick={get_shells} disabled={!props.online}
                        title="Get-PSSession -ComputerName: the shells this computer keeps for you">{ "Remote shells" }</button>
                }
            </form>
            }
            if let Some(e) = &*error { <p class="form-error" role="alert">{ e }</p> }
            if let Some(r) = &props.remote_shells { { remote_shells_view(r, &props.sessions, &follow_send, &props.on_action, &shells_target) } }
            <button type="button" id="prompt-console" class={classes!("secondary", "prompt-console", (props.active == Some(LOCAL_SESSION)).then_some("active"))}
                onclick={props.on_action.reform(|_: MouseEvent| Action::Select(LOCAL_SESSION))}>{ "PS psgate>" }</button>
            if props.admin {
                <button type="button" id="admin-sessions" class="secondary" disabled={!props.online}
                    title="Get-PSGateSession; Get-PSGateQuota -AllUsers: every user's sessions and quota use (you are a relay admin)"
                    onclick={at_prompt("Get-PSGateSession | Format-Table; Get-PSGateQuota -AllUsers | Format-Table".into(), &props.on_action, &props.send)}>{ "All users" }</button>
            }
            <table class="sessions-table" id="sessions">
                { head(headings) }
                <tbody>
                    { for props.sessions.iter().map(|s| {
                        let id = s.id;
                        let select = props.on_action.reform(move |_: MouseEvent| Action::Select(id));
                        let remove = props.send.reform(move |e: MouseEvent| {
                            e.stop_propagation();
                            ClientMessage::RemoveSessions { ids: vec![id], all: false }
                        });
                        let recreate = props.send.reform(move |e: MouseEvent| {
                            e.stop_propagation();
                            ClientMessage::RecreateSessions { ids: vec![id] }
                        });
                        let class = classes!("session-row", (props.active == Some(id)).then_some("active"));
                        let state = session_state_label(s.state);
                        html! {
                            <tr {class} data-id={id.0.to_string()} onclick={select} title={s.reason.clone()}>
                                <td class="num">{ id.0 }</td>
                                <td>{ &s.name }{ for props.modules.iter().filter(|m| m.session == id).map(|m| html! {
                                    <span class="session-module" title={m.commands.join(", ")}>{ " " }{ &m.name }</span>
                                }) }{ for props.shares.get(&id).into_iter().flatten().map(|x| {
                                    let user = x.user.clone();
                                    let unshare = props.send.reform(move |e: MouseEvent| {
                                        e.stop_propagation();
                                        ClientMessage::UnshareSession { session: id, user: user.clone() }
                                    });
                                    html! { <button type="button" class="secondary unshare-session" title="Stop sharing: their console closes at once" onclick={unshare}>{ format!("✕ {}", x.user) }</button> }
                                }) }</td>
                                <td>{ &s.computer_name }</td>
                                <td>{ transport_label(s.transport) }</td>
                                <td class={classes!("state", format!("state-{}", state.to_ascii_lowercase()))}>{ state }</td>
                                <td>{ availability_label(s.availability) }</td>
                                <td>{ s.configuration_name.clone().unwrap_or_default() }</td>
                                if quota_column {
                                    <td class="session-closes">{ closes_in(s) }</td>
                                }
                                <td class="session-actions">
                                    if s.transport == Transport::Winrm && s.state == SessionState::Opened {
                                        <button type="button" class="secondary session-quotas" disabled={!props.online}
                                            title="Get-PSGateQuota -ComputerName: this computer's WSMan quotas beside your shells there (Set-Item WSMan:\\… changes them)"
                                            onclick={at_prompt(format!("Get-PSGateQuota -ComputerName {}", quoted(&s.computer_name)), &props.on_action, &props.send)}>{ "Quotas" }</button>
                                    }
                                    if s.can_disconnect || s.state == SessionState::Disconnected {
                                        <button type="button" class="secondary disconnect-session" disabled={!props.online || s.state != SessionState::Opened}
                                            onclick={disconnect(id, &disconnect_refs, &error, &props.send)}>{ "Disconnect" }</button>
                                        <button type="button" class="secondary connect-session" disabled={!props.online || s.state != SessionState::Disconnected}
                                            onclick={connect(id, &props.send)}>{ "Connect" }</button>
                                    }
                                    if s.state == SessionState::Broken {
                                        <button type="button" class="secondary recreate-session" disabled={!props.online}
                                            title="Open it again on the same target, with the same name and credentials" onclick={recreate}>{ "Re-create" }</button>
                                    }
                                    if id != LOCAL_SESSION {
                                        <button type="button" class="secondary share-session" disabled={!props.online} onclick={{ let sharing = sharing.clone(); move |_: MouseEvent| sharing.set(Some(id)) }}
                                            title="Share this session with another relay user, as an observer or a peer">{ "Share" }</button>
                                    }
                                    <button type="button" class="secondary remove-session" onclick={remove}>{ "Remove" }</button>
                                </td>
                            </tr>
                        }
                    }) }
                </tbody>
            </table>
            if let Some(id) = *sharing {
                <form class="share-form" id="share-form" onsubmit={share(id, &share_refs, &sharing, &props.send)}>
                    <span>{ format!("Share session {} with", id.0) }</span>
                    <input id="share-user" ref={share_refs[0].clone()} placeholder="a relay user, or group:NAME" required=true spellcheck="false" />
                    { select("as", "share-role", &share_refs[1], &[("observer", "an observer (watches)"), ("peer", "a peer (may run commands)")], None) }
                    <button type="submit" id="share-submit">{ "Share" }</button>
                    <button type="button" class="secondary" onclick={{ let sharing = sharing.clone(); move |_: MouseEvent| sharing.set(None) }}>{ "Cancel" }</button>
                </form>
            }
            if disconnect_options {
                <div class="disconnect-options">
                    <span>{ "Disconnect-PSSession" }</span>
                    { field("IdleTimeoutSec", "disconnect-idle", &disconnect_refs[0], "text", "(target's)") }
                    { select("OutputBufferingMode", "disconnect-buffering", &disconnect_refs[1], &[("", "(target's)"), ("block", "Block"), ("drop", "Drop")], None) }
                </div>
            }
            if props.sessions.is_empty() { <p class="hint">{ "No sessions: create one above." }</p> }
            else { <button type="button" class="secondary" id="remove-all" onclick={remove_all}>{ "Remove all" }</button> }
        </section>
    }
}

/// What the user can do with a command's objects, under its output; each runs at psgate's prompt as the line it
/// shows (so it is in the history as if typed):
/// - Export-PSSession's files (`FileInfo` with their text in `Content`: the relay writes nothing where its users say):
///   a download link each;
/// - Get-PSGateSession's sessions (admins): Watch (the watch page, as an observer), Close, with `Remove-PSGateSession`
///   (audited by the relay);
/// - Get-PSGateQuota -ComputerName's WSMan quotas: open their `WSMan:\<computer>\…` container;
/// - a WSMan: container's settings (Get-ChildItem WSMan:\…): change one with `Set-Item`.
///
/// Only short outputs are looked at.
fn actions(items: &crate::render::log::Log<psgate_shared::clixml::Item>, on_action: &Callback<Action>, send: &Callback<ClientMessage>) -> Html {
    if items.len() > 64 {
        return Html::default();
    }
    let (mut files, mut closes, mut scopes, mut settings) = (Vec::new(), Vec::new(), Vec::<String>::new(), Vec::new());
    items.with(|items| {
        for o in items.iter().filter_map(|i| i.value.as_object()) {
            let text = |name: &str| o.property(name).and_then(|v| v.as_str()).map(str::to_owned);
            if o.is_type("System.IO.FileInfo") {
                if let (Some(name), Some(content)) = (text("Name"), text("Content")) {
                    files.push((name, format!("data:text/plain;charset=utf-8,{}", js_sys::encode_uri_component(&content))));
                }
            } else if o.is_type("psgate.UserSession") {
                let state = text("State").unwrap_or_default();
                if let (Some(user), Some(id)) = (text("User"), o.property("Id").and_then(|v| v.as_i64()).and_then(|i| u64::try_from(i).ok()))
                    && state != "Closed"
                {
                    closes.push((user, id, text("ComputerName").unwrap_or_default()));
                }
            } else if o.is_type("psgate.Quota") {
                if let Some(scope) = text("Scope").filter(|s| s.starts_with("WSMan:\\") && !scopes.contains(s)) {
                    scopes.push(scope);
                }
            } else if o.is_type("Microsoft.WSMan.Management.WSManConfigLeafElement")
                && let Some(path) = text("PSPath").and_then(|p| p.split_once("WSMan::").map(|(_, rest)| format!("WSMan:\\{rest}")))
            {
                settings.push((path, text("Value").unwrap_or_default()));
            }
        }
    });
    if files.is_empty() && closes.is_empty() && scopes.is_empty() && settings.is_empty() {
        return Html::default();
    }
    html! {
        <div class="output-actions">
            { for files.into_iter().map(|(name, href)| html! { <a class="download" {href} download={name.clone()}>{ format!("Download {name}") }</a> }) }
            { for closes.into_iter().map(|(user, id, computer)| {
                let script = format!("Remove-PSGateSession -User {} -Id {id}; Get-PSGateSession | Format-Table", quoted(&user));
                // An admin observes any session: on the watch page.
                let watch = api::watch_href(&user, SessionId(id));
                html! {
                    <>
                        <a class="watch-user-session" href={watch} target="_blank">{ format!("Watch {user}'s session {id}") }</a>
                        <button type="button" class="secondary close-user-session" onclick={at_prompt(script, on_action, send)}>{ format!("Close {user}'s session {id} ({computer})") }</button>
                    </>
                }
            }) }
            { for scopes.into_iter().map(|scope| {
                let script = format!("Get-ChildItem {}", quoted(&scope));
                html! { <button type="button" class="secondary open-wsman" onclick={at_prompt(script, on_action, send)}>{ scope }</button> }
            }) }
            { for settings.into_iter().map(|(path, value)| html! { <Setting {path} {value} on_action={on_action.clone()} send={send.clone()} /> }) }
        </div>
    }
}

#[derive(Properties, PartialEq)]
struct SettingProps {
    path: String,
    value: String,
    on_action: Callback<Action>,
    send: Callback<ClientMessage>,
}

/// A WSMan: setting to change: its value in a box, Set-Item (as PowerShell's provider does it: the target's
/// configuration read, the element edited, put back), then the container listed again.
#[component]
fn Setting(props: &SettingProps) -> Html {
    let input = use_node_ref();
    let onsubmit = {
        let (input, path, on_action, send) = (input.clone(), props.path.clone(), props.on_action.clone(), props.send.clone());
        Callback::from(move |e: SubmitEvent| {
            e.prevent_default();
            let value = input.cast::<web_sys::HtmlInputElement>().map(|i| i.value()).unwrap_or_default();
            let parent = path.rsplit_once('\\').map_or(path.as_str(), |(p, _)| p);
            run_at_prompt(format!("Set-Item {} {}; Get-ChildItem {}", quoted(&path), quoted(value.trim()), quoted(parent)), &on_action, &send);
        })
    };
    let name = props.path.rsplit('\\').next().unwrap_or_default().to_owned();
    html! {
        <form class="wsman-setting" {onsubmit} data-path={props.path.clone()}>
            <label>{ name }<input type="text" ref={input} value={props.value.clone()} autocomplete="off" /></label>
            <button type="submit" class="secondary">{ "Set-Item" }</button>
        </form>
    }
}

/// When the relay's quotas close a session, as of its last update: `59 min (idle)`, `1 h 5 min (run time)`.
fn closes_in(s: &SessionInfo) -> String {
    let (secs, why) = match (s.idle_left_secs, s.run_left_secs) {
        (Some(i), Some(r)) if r < i => (r, "run time"),
        (Some(i), _) => (i, "idle"),
        (None, Some(r)) => (r, "run time"),
        (None, None) => return String::new(),
    };
    let text = match secs {
        s if s < 60 => format!("{s} s"),
        s if s < 3600 => format!("{} min", s / 60),
        s => format!("{} h {} min", s / 3600, s % 3600 / 60),
    };
    format!("{text} ({why})")
}

/// `s` as a PowerShell single-quoted string (its quotes doubled), for a line the page writes.
fn quoted(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// Runs `script` at psgate's prompt, shown there as if typed.
fn run_at_prompt(script: String, on_action: &Callback<Action>, send: &Callback<ClientMessage>) {
    on_action.emit(Action::Select(LOCAL_SESSION));
    on_action.emit(Action::Ran(LOCAL_SESSION, script.clone()));
    send.emit(ClientMessage::Run { session: LOCAL_SESSION, script });
}

/// A button's click that runs `script` at psgate's prompt.
fn at_prompt(script: String, on_action: &Callback<Action>, send: &Callback<ClientMessage>) -> Callback<MouseEvent> {
    let (on_action, send) = (on_action.clone(), send.clone());
    Callback::from(move |e: MouseEvent| {
        e.stop_propagation();
        run_at_prompt(script.clone(), &on_action, &send);
    })
}

/// `<label>LABEL<input></label>`: never given a value (a re-render would put it back over what the user typed).
fn field(label: &'static str, id: &'static str, r: &NodeRef, kind: &'static str, placeholder: &'static str) -> Html {
    html! { <label>{ label }<input {id} ref={r.clone()} type={kind} {placeholder} autocomplete="off" /></label> }
}

/// `<label>LABEL<select>` of `(value, text)` options, the first selected to begin with.
fn select(label: &'static str, id: &'static str, r: &NodeRef, options: &[(&'static str, &'static str)], onchange: Option<Callback<web_sys::Event>>) -> Html {
    html! {
        <label>{ label }
            <select {id} ref={r.clone()} {onchange}>
                { for options.iter().enumerate().map(|(i, &(value, text))| html! { <option {value} selected={i == 0}>{ text }</option> }) }
            </select>
        </label>
    }
}

/// A table's header row.
fn head(cells: &[&'static str]) -> Html {
    html! { <thead><tr>{ for cells.iter().map(|&c| html! { <th>{ c }</th> }) }</tr></thead> }
}

/// Disconnect-PSSession on one session, with the panel's IdleTimeoutSec and OutputBufferingMode.
fn disconnect(id: SessionId, refs: &Rc<[NodeRef; 2]>, error: &UseStateHandle<Option<String>>, send: &Callback<ClientMessage>) -> Callback<MouseEvent> {
    let (refs, error, send) = (Rc::clone(refs), error.clone(), send.clone());
    Callback::from(move |e: MouseEvent| {
        e.stop_propagation();
        match disconnect_message(id, &value_of(&refs[0]), &value_of(&refs[1])) {
            Ok(m) => {
                error.set(None);
                send.emit(m);
            }
            Err(e) => error.set(Some(e)),
        }
    })
}

/// Connect-PSSession on one session.
fn connect(id: SessionId, send: &Callback<ClientMessage>) -> Callback<MouseEvent> {
    send.reform(move |e: MouseEvent| {
        e.stop_propagation();
        ClientMessage::ConnectSessions { ids: vec![id] }
    })
}

/// The `disconnect_sessions` message for one session: `-IdleTimeoutSec` (empty: the target's; at least 60, as
/// PowerShell requires) and `-OutputBufferingMode` (`block`, `drop`, or empty: the target's).
fn disconnect_message(id: SessionId, idle: &str, buffering: &str) -> Result<ClientMessage, String> {
    Ok(ClientMessage::DisconnectSessions {
        ids: vec![id],
        idle_timeout_secs: parse_number(idle, 60, "IdleTimeoutSec")?,
        output_buffering_mode: match buffering {
            "block" => Some(OutputBufferingMode::Block),
            "drop" => Some(OutputBufferingMode::Drop),
            _ => None,
        },
    })
}

/// `Get-PSSession -ComputerName`'s answer: the target's shells, each with a Connect when it waits disconnected.
fn remote_shells_view(r: &RemoteShells, sessions: &[SessionInfo], send: &Callback<ClientMessage>, on_action: &Callback<Action>, target: &Rc<RefCell<Option<Target>>>) -> Html {
    let body = match (&r.shells, &r.error) {
        (_, Some(e)) => html! { <p class="form-error" role="alert">{ e }</p> },
        (None, None) => html! { <p class="hint">{ "asking…" }</p> },
        (Some(shells), None) if shells.is_empty() => html! { <p class="hint">{ "No shells." }</p> },
        (Some(shells), None) => html! {
            <table class="sessions-table">
                { head(&["InstanceId", "Name", "State", "Owner", "ConfigurationName", "Commands", ""]) }
                <tbody>
                    { for shells.iter().map(|sh| {
                        // A session of this user holds it (the relay says so, or the session's InstanceId does).
                        let attached = sh.session.or_else(|| sessions.iter().find(|s| s.instance_id.as_deref() == Some(sh.shell_id.as_str())).map(|s| s.id));
                        let action = match attached {
                            Some(id) => {
                                let waiting = sessions.iter().any(|s| s.id == id && s.state == SessionState::Disconnected);
                                html! {
                                    <>
                                        <span class="shell-attached">{ if waiting { format!("session {} (disconnected)", id.0) } else { format!("session {}", id.0) } }</span>
                                        if waiting { <button type="button" class="connect-shell" onclick={connect(id, send)}>{ "Connect" }</button> }
                                    </>
                                }
                            }
                            None if sh.state.eq_ignore_ascii_case("Disconnected") => {
                                let (send, target, shell_id, name) = (send.clone(), Rc::clone(target), sh.shell_id.clone(), sh.name.clone());
                                let onclick = Callback::from(move |_: MouseEvent| {
                                    let Some(mut t) = target.borrow().clone() else { return };
                                    t.shell_id = Some(shell_id.clone());
                                    t.name = Some(name.clone()).filter(|n| !n.is_empty()).or(t.name);
                                    send.emit(ClientMessage::NewSessions { targets: vec![t] });
                                });
                                html! { <button type="button" class="connect-shell" {onclick}>{ "Connect" }</button> }
                            }
                            None => html! { <span class="hint">{ "in use by another client" }</span> },
                        };
                        html! {
                            <tr class="remote-shell" data-shell={sh.shell_id.clone()} data-state={sh.state.clone()}>
                                { for [&sh.shell_id, &sh.name, &sh.state, &sh.owner, &sh.configuration_name, &sh.commands.to_string()].map(|v| html! { <td>{ v }</td> }) }
                                <td>{ action }</td>
                            </tr>
                        }
                    }) }
                </tbody>
            </table>
        },
    };
    html! {
        <div class="remote-shells" id="remote-shells">
            <h3>
                { format!("Get-PSSession -ComputerName {}", r.computer_name) }
                <button type="button" class="secondary" onclick={on_action.reform(|_: MouseEvent| Action::CloseShells)}>{ "Close" }</button>
            </h3>
            { body }
        </div>
    }
}

#[derive(Properties, PartialEq)]
struct InvokeProps {
    sessions: Vec<SessionInfo>,
    invocations: Vec<Invocation>,
    send: Callback<ClientMessage>,
    on_action: Callback<Action>,
    online: bool,
}

/// Invoke-Command: one script on the sessions ticked, the results grouped by computer.
#[component]
fn InvokePanel(props: &InvokeProps) -> Html {
    let picked = use_state(Vec::<SessionId>::new);
    let script = use_node_ref();
    let throttle = use_node_ref();
    let error = use_state(|| None::<String>);
    // Only sessions that still exist count.
    let chosen: Vec<SessionId> = props.sessions.iter().map(|s| s.id).filter(|id| picked.contains(id)).collect();
    let onsubmit = {
        let (script, throttle, error, send, on_action, chosen) = (script.clone(), throttle.clone(), error.clone(), props.send.clone(), props.on_action.clone(), chosen.clone());
        Callback::from(move |e: SubmitEvent| {
            e.prevent_default();
            let text = script.cast::<HtmlTextAreaElement>().map(|t| t.value()).unwrap_or_default();
            let limit = throttle.cast::<HtmlInputElement>().map(|t| t.value()).unwrap_or_default();
            let throttle_limit = match parse_number(&limit, 1, "ThrottleLimit") {
                Ok(t) => t,
                Err(e) => return error.set(Some(e)),
            };
            if chosen.is_empty() {
                error.set(Some("tick at least one session".into()));
            } else if text.trim().is_empty() {
                error.set(Some("type a script".into()));
            } else {
                error.set(None);
                on_action.emit(Action::Invoked(chosen.clone(), text.clone()));
                send.emit(ClientMessage::Invoke { sessions: chosen.clone(), script: text, throttle_limit });
            }
        })
    };
    if props.sessions.is_empty() && props.invocations.is_empty() {
        return html! {};
    }
    html! {
        <section class="panel invoke" id="invoke">
            <h2>{ "Invoke-Command" }</h2>
            <form class="invoke-form" {onsubmit}>
                <fieldset class="invoke-sessions">
                    <legend>{ "Sessions" }</legend>
                    { for props.sessions.iter().map(|s| {
                        let (id, picked) = (s.id, picked.clone());
                        let onchange = Callback::from(move |e: web_sys::Event| {
                            let on = e.target_dyn_into::<HtmlInputElement>().is_some_and(|i| i.checked());
                            let mut v: Vec<SessionId> = (*picked).iter().copied().filter(|&p| p != id).collect();
                            if on {
                                v.push(id);
                            }
                            picked.set(v);
                        });
                        html! {
                            <label class="invoke-session">
                                <input type="checkbox" data-id={id.0.to_string()} checked={chosen.contains(&id)} {onchange} />
                                { format!("{} · {} ({})", s.id.0, s.name, s.computer_name) }
                            </label>
                        }
                    }) }
                </fieldset>
                <label class="invoke-script-label" for="invoke-script">{ "ScriptBlock" }</label>
                <textarea id="invoke-script" ref={script} rows="2" spellcheck="false" autocomplete="off" placeholder="Get-Process -Name svchost" />
                <label class="invoke-throttle">
                    { "ThrottleLimit " }
                    <input id="invoke-throttle" ref={throttle} type="number" min="1" max="10000" inputmode="numeric" placeholder={DEFAULT_THROTTLE_LIMIT.to_string()} />
                </label>
                <button type="submit" id="invoke-run" disabled={!props.online}>{ "Invoke-Command" }</button>
            </form>
            if let Some(e) = &*error { <p class="form-error" role="alert">{ e }</p> }
            { for props.invocations.iter().enumerate().rev().map(|(i, run)| invocation_view(i, run, &props.send, &props.on_action)) }
        </section>
    }
}

/// A number field: empty is the default (`None`); else a whole number of at least `min`.
fn parse_number<T: std::str::FromStr + PartialOrd + From<u8>>(text: &str, min: u8, what: &str) -> Result<Option<T>, String> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(None);
    }
    match text.parse::<T>() {
        Ok(n) if n >= T::from(min) => Ok(Some(n)),
        _ => Err(format!("{what} must be a whole number of at least {min}, not \"{text}\"")),
    }
}

/// One Invoke-Command run: its summary, then each computer's status and output.
fn invocation_view(index: usize, run: &Invocation, send: &Callback<ClientMessage>, on_action: &Callback<Action>) -> Html {
    let (completed, failed, stopped) = run.summary();
    let summary = if let Some(why) = &run.refused {
        format!("refused: {why}")
    } else if run.finished {
        let mut s = format!("{} host(s): {completed} completed", run.hosts.len());
        if failed > 0 {
            s.push_str(&format!(", {failed} failed"));
        }
        if stopped > 0 {
            s.push_str(&format!(", {stopped} stopped"));
        }
        s
    } else if run.id.is_none() {
        "starting…".to_owned()
    } else {
        let done = run.hosts.iter().filter(|h| h.state.is_some_and(PipelineState::is_terminal)).count();
        format!("running: {done} of {} host(s) finished", run.hosts.len())
    };
    let class = classes!("invocation", run.finished.then_some("finished"), run.refused.is_some().then_some("refused"));
    html! {
        <div {class} data-index={index.to_string()} data-invocation={run.id.map(|i| i.0.to_string())}>
            <pre class="console-command"><span class="console-prompt">{ "PS> Invoke-Command -ScriptBlock" }</span>{ format!(" {{ {} }}", run.script) }</pre>
            <p class="invoke-summary">{ summary }</p>
            { for run.hosts.iter().map(|h| {
                let (label, state_class) = match h.state {
                    None => ("waiting".to_owned(), "waiting".to_owned()),
                    Some(PipelineState::Failed) => (format!("failed: {}", h.message.as_deref().unwrap_or("failed")), "failed".to_owned()),
                    Some(s) => (pipeline_state_name(s).to_owned(), pipeline_state_name(s).to_owned()),
                };
                let (session, pipeline) = (h.session, h.pipeline);
                html! {
                    <div class={classes!("invoke-host", format!("invoke-{state_class}"))} data-session={session.0.to_string()} data-state={state_class.clone()}>
                        <h3>
                            <span class="invoke-computer">{ &h.computer_name }</span>
                            <span class="invoke-session-id">{ format!(" (session {})", session.0) }</span>
                            <span class={classes!("invoke-status", format!("state-{state_class}"))}>{ label }</span>
                            if let (Some(PipelineState::Running), Some(pipeline)) = (h.state, pipeline) {
                                <button type="button" class="secondary invoke-stop" onclick={send.reform(move |_: MouseEvent| ClientMessage::Stop { session, pipeline })}>{ "Stop" }</button>
                            }
                        </h3>
                        <div class="console invoke-output">{ for h.output.blocks.iter().map(block) }</div>
                        if let Some(p) = &h.prompt {
                            <HostDialog prompt={p.clone()} on_answer={{
                                let prompt_pipeline = p.pipeline;
                                answer_for(session, prompt_pipeline, p.call_id, send, on_action.reform(move |()| Action::AnsweredInvoke(session, prompt_pipeline)))
                            }} />
                        }
                    </div>
                }
            }) }
        </div>
    }
}

/// The share dialog's submit: shares session `id` with the user named, as the role chosen, and closes.
fn share(id: SessionId, refs: &Rc<[NodeRef; 2]>, sharing: &UseStateHandle<Option<SessionId>>, send: &Callback<ClientMessage>) -> Callback<SubmitEvent> {
    let (refs, sharing, send) = (Rc::clone(refs), sharing.clone(), send.clone());
    Callback::from(move |e: SubmitEvent| {
        e.prevent_default();
        let user = value_of(&refs[0]).trim().to_owned();
        if !user.is_empty() {
            let role = if value_of(&refs[1]) == "peer" { ShareRole::Peer } else { ShareRole::Observer };
            send.emit(ClientMessage::ShareSession { session: id, user, role });
            sharing.set(None);
        }
    })
}

/// What a disconnected session's console says instead of taking input.
const DISCONNECTED_LINE: &str = "disconnected — Connect to continue";

#[derive(Properties, PartialEq)]
pub(crate) struct ConsoleProps {
    pub(crate) info: SessionInfo,
    pub(crate) console: Console,
    pub(crate) send: Callback<ClientMessage>,
    pub(crate) on_action: Callback<Action>,
    /// The session psgate's prompt entered: `exit` typed in its console goes to the prompt.
    #[prop_or_default]
    pub(crate) entered: Option<SessionId>,
    /// A console that shows everything and takes no input (an observer's, a replay's): what its input line says.
    #[prop_or_default]
    pub(crate) read_only: Option<&'static str>,
}

#[component]
pub(crate) fn SessionConsole(props: &ConsoleProps) -> Html {
    let input = use_node_ref();
    let history_pos = use_mut_ref(|| usize::MAX);
    let id = props.info.id;
    let busy = props.console.running.is_some() || props.console.starting;
    // Disconnect-PSSession: the output stays, input waits for Connect.
    let disconnected = props.info.state == SessionState::Disconnected;
    // Tab completion being cycled through: the target's answer and the match in the input.
    let cycle = use_state(|| None::<(Rc<Completions>, usize)>);
    {
        // A new answer to Tab: put its first match in, if the input is still what was completed.
        let (input, cycle) = (input.clone(), cycle.clone());
        use_effect_with(props.console.completions.clone(), move |answer| {
            if let (Some(c), Some(area)) = (answer, input.cast::<HtmlTextAreaElement>())
                && area.value() == c.input
                && area.selection_start().ok().flatten() == Some(c.cursor)
                && put_completion(&area, c, 0)
            {
                cycle.set(Some((c.clone(), 0)));
            }
        });
    }
    let onkeydown = {
        let (input, send, on_action, history_pos) = (input.clone(), props.send.clone(), props.on_action.clone(), Rc::clone(&history_pos));
        let (history, running) = (props.console.history.clone(), props.console.running);
        let cycle = cycle.clone();
        let entered = props.entered == Some(id);
        Callback::from(move |e: KeyboardEvent| {
            let Some(area) = input.cast::<HtmlTextAreaElement>() else { return };
            match e.key().as_str() {
                "Tab" if !busy => {
                    e.prevent_default();
                    // Tab again on an untouched completion: the next match (Shift+Tab: the previous), no round trip.
                    if let Some((c, i)) = (*cycle).clone()
                        && c.matches.len() > 1
                        && c.apply(i).is_some_and(|(text, _)| text == area.value())
                    {
                        let n = c.matches.len();
                        let next = if e.shift_key() { (i + n - 1) % n } else { (i + 1) % n };
                        put_completion(&area, &c, next);
                        cycle.set(Some((c, next)));
                    } else {
                        let value = area.value();
                        let end = u32::try_from(value.encode_utf16().count()).unwrap_or(u32::MAX);
                        let cursor = area.selection_start().ok().flatten().unwrap_or(end);
                        send.emit(ClientMessage::Complete { session: id, input: value, cursor });
                    }
                }
                "Escape" => cycle.set(None),
                "Enter" if !e.shift_key() => {
                    e.prevent_default();
                    if busy || disconnected {
                        return;
                    }
                    let script = area.value();
                    area.set_value("");
                    *history_pos.borrow_mut() = usize::MAX;
                    // Inside an entered session, `exit` is psgate's prompt's (Exit-PSSession).
                    let session = if entered && is_exit_line(&script) { LOCAL_SESSION } else { id };
                    on_action.emit(Action::Ran(session, script.clone()));
                    send.emit(ClientMessage::Run { session, script });
                }
                key @ ("ArrowUp" | "ArrowDown") if !area.value().contains('\n') => {
                    let pos = (*history_pos.borrow()).min(history.len());
                    if let Some((next, text)) = history_step(&history, pos, key == "ArrowUp") {
                        e.prevent_default();
                        *history_pos.borrow_mut() = next;
                        area.set_value(&text);
                    }
                }
                "c" if e.ctrl_key() => {
                    let selected = web_sys::window().and_then(|w| w.get_selection().ok().flatten()).is_some_and(|s| !s.is_collapsed());
                    if let (Some(pipeline), false) = (running, selected) {
                        e.prevent_default();
                        send.emit(ClientMessage::Stop { session: id, pipeline });
                    }
                }
                _ => {}
            }
        })
    };
    {
        // Keep the newest output in view.
        let input = input.clone();
        let n = props.console.entries.iter().map(|e| e.items.len() + 1).sum::<usize>();
        use_effect_with(n, move |_| {
            if let Some(el) = input.cast::<web_sys::Element>() {
                el.scroll_into_view_with_bool(false);
            }
        });
    }
    let stop = {
        let (send, running) = (props.send.clone(), props.console.running);
        Callback::from(move |_: MouseEvent| {
            if let Some(pipeline) = running {
                send.emit(ClientMessage::Stop { session: id, pipeline });
            }
        })
    };
    let oninput = {
        let cycle = cycle.clone();
        Callback::from(move |_: InputEvent| cycle.set(None))
    };
    let prompt = prompt_of(Some(&props.info));
    html! {
        <section class="panel session-console">
            <h2>{ if id == LOCAL_SESSION { "psgate · your prompt on the relay".to_owned() } else { format!("{} · {}", props.info.name, props.info.computer_name) } }</h2>
            <div class="console" id="session-console">
                { for props.console.entries.iter().map(|e| html! {
                    <div class="console-entry" data-pipeline={e.pipeline.map(|p| p.0.to_string())}>
                        <pre class="console-command"><span class="console-prompt">{ &e.prompt }</span>{ " " }{ &e.script }</pre>
                        <super::output::Output blocks={e.blocks.clone()} />
                        { actions(&e.items, &props.on_action, &props.send) }
                        if let Some(state) = e.state.filter(|s| !matches!(s, psgate_shared::api::PipelineState::Running | psgate_shared::api::PipelineState::Completed)) {
                            <div class="pipeline-end">{ format!("({})", pipeline_state_name(state)) }</div>
                        }
                    </div>
                }) }
                if disconnected {
                    <div class="console-disconnected" id="console-disconnected" role="status">
                        { DISCONNECTED_LINE }
                        <button type="button" class="secondary" onclick={connect(id, &props.send)}>{ "Connect" }</button>
                    </div>
                }
                <div class="console-input-line">
                    <label class="console-prompt" for="console-input">{ prompt }</label>
                    <textarea id="console-input" ref={input.clone()} rows="1" spellcheck="false" autocomplete="off" {onkeydown} {oninput} disabled={disconnected || props.read_only.is_some()}
                        placeholder={if let Some(why) = props.read_only { why } else if busy && !disconnected { "running… (Ctrl+C stops it)" } else { "" }} />
                </div>
                if let Some((c, current)) = (*cycle).clone().filter(|(c, _)| c.matches.len() > 1) {
                    <ul class="completion-list" id="completion-list" role="listbox" aria-label="Completions">
                        { for c.matches.iter().enumerate().map(|(i, m)| {
                            let pick = {
                                let (input, cycle, c) = (input.clone(), cycle.clone(), c.clone());
                                Callback::from(move |_: MouseEvent| {
                                    if let Some(area) = input.cast::<HtmlTextAreaElement>() {
                                        put_completion(&area, &c, i);
                                        let _ = area.focus();
                                    }
                                    cycle.set(None);
                                })
                            };
                            html! {
                                <li role="option" aria-selected={(i == current).to_string()} class={classes!((i == current).then_some("current"))}
                                    title={m.tooltip.clone()} data-type={m.result_type.clone()} onclick={pick}>{ &m.list_text }</li>
                            }
                        }) }
                    </ul>
                }
            </div>
            if props.console.running.is_some() && !disconnected {
                <button type="button" class="secondary" id="stop" onclick={stop}>{ "Stop (Ctrl+C)" }</button>
            }
            if let Some(p) = &props.console.prompt {
                <HostDialog prompt={p.clone()} on_answer={answer_for(id, p.pipeline, p.call_id, &props.send, props.on_action.reform(move |()| Action::Answered(id)))} />
            }
        </section>
    }
}

/// Puts match `index` of a completion in the input with the cursor after it; false if there is none.
fn put_completion(area: &HtmlTextAreaElement, c: &Completions, index: usize) -> bool {
    let Some((text, cursor)) = c.apply(index) else { return false };
    area.set_value(&text);
    let _ = area.set_selection_range(cursor, cursor);
    true
}

/// The callback that answers a host call: closes its dialog (`closed`), then sends the `host_response`.
fn answer_for(session: SessionId, pipeline: PipelineId, call_id: i64, send: &Callback<ClientMessage>, closed: Callback<()>) -> Callback<HostAnswer> {
    let send = send.clone();
    Callback::from(move |answer: HostAnswer| {
        closed.emit(());
        send.emit(ClientMessage::HostResponse { session, pipeline, call_id, answer });
    })
}

#[derive(Properties, PartialEq)]
struct HostDialogProps {
    prompt: HostPrompt,
    /// Sends the answer (and closes the dialog).
    on_answer: Callback<HostAnswer>,
}

#[component]
fn HostDialog(props: &HostDialogProps) -> Html {
    let inputs: Rc<Vec<NodeRef>> = use_memo(props.prompt.call_id, |_| (0..8).map(|_| NodeRef::default()).collect());
    let answer = props.on_answer.clone();
    let cancel = answer.reform(|_: MouseEvent| HostAnswer::Error { message: "cancelled by the user".into() });
    let value = |r: &NodeRef| r.cast::<HtmlInputElement>().map(|i| i.value()).unwrap_or_default();
    {
        // The first input, or the password when the user name is filled in.
        let skip_user = matches!(&props.prompt.kind, PromptKind::Credential { user, .. } if !user.is_empty());
        let first = inputs[usize::from(skip_user)].clone();
        // Get-Credential's user name is set once per call, not as a `value=` attribute: a re-render would put it
        // back over what the user typed.
        let user = match &props.prompt.kind {
            PromptKind::Credential { user, .. } => Some((inputs[0].clone(), user.clone())),
            _ => None,
        };
        use_effect_with(props.prompt.call_id, move |_| {
            if let Some((field, name)) = user
                && let Some(i) = field.cast::<HtmlInputElement>()
            {
                i.set_value(&name);
            }
            if let Some(i) = first.cast::<HtmlInputElement>() {
                let _ = i.focus();
            }
        });
    }
    let (title, body) = match &props.prompt.kind {
        PromptKind::Line => {
            let (first, answer) = (inputs[0].clone(), answer.clone());
            let onsubmit = Callback::from(move |e: SubmitEvent| {
                e.prevent_default();
                answer.emit(HostAnswer::Value { clixml: string_answer(&value(&first)) });
            });
            ("Read-Host".to_owned(), html! {
                <form {onsubmit}>
                    <input id="host-input" ref={inputs[0].clone()} autocomplete="off" />
                    <div class="buttons">
                        <button type="submit" id="host-submit">{ "OK" }</button>
                        <button type="button" class="secondary" onclick={cancel.clone()}>{ "Cancel" }</button>
                    </div>
                </form>
            })
        }
        PromptKind::SecureLine => {
            let (first, answer) = (inputs[0].clone(), answer.clone());
            let onsubmit = Callback::from(move |e: SubmitEvent| {
                e.prevent_default();
                answer.emit(HostAnswer::Secure { text: value(&first) });
            });
            ("Read-Host -AsSecureString".to_owned(), html! {
                <form {onsubmit}>
                    <input id="host-input" class="host-secure" ref={inputs[0].clone()} type="password" autocomplete="off" aria-label="Secure string" />
                    <div class="buttons">
                        <button type="submit" id="host-submit">{ "OK" }</button>
                        <button type="button" class="secondary" onclick={cancel.clone()}>{ "Cancel" }</button>
                    </div>
                </form>
            })
        }
        PromptKind::Credential { caption, message, .. } => {
            let (user_ref, password_ref, answer) = (inputs[0].clone(), inputs[1].clone(), answer.clone());
            let onsubmit = Callback::from(move |e: SubmitEvent| {
                e.prevent_default();
                answer.emit(HostAnswer::Credential { user: value(&user_ref), password: value(&password_ref) });
            });
            (if caption.is_empty() { "Get-Credential".to_owned() } else { caption.clone() }, html! {
                <form {onsubmit}>
                    if !message.is_empty() { <p>{ message }</p> }
                    <label class="host-field">{ "User" }<input id="host-user" ref={inputs[0].clone()} autocomplete="off" /></label>
                    <label class="host-field">{ "Password" }<input id="host-password" ref={inputs[1].clone()} type="password" autocomplete="off" /></label>
                    <div class="buttons">
                        <button type="submit" id="host-submit">{ "OK" }</button>
                        <button type="button" class="secondary" onclick={cancel.clone()}>{ "Cancel" }</button>
                    </div>
                </form>
            })
        }
        PromptKind::Choice { caption, message, choices, default } => (caption.clone(), html! {
            <>
                <p>{ message }</p>
                <div class="buttons">
                    { for choices.iter().enumerate().map(|(i, label)| {
                        let pick = answer.reform(move |_: MouseEvent| HostAnswer::Value { clixml: format!("<I32>{i}</I32>") });
                        let class = classes!("host-choice", (*default != Some(i)).then_some("secondary"));
                        html! { <button type="button" {class} onclick={pick}>{ label }</button> }
                    }) }
                    <button type="button" class="secondary" onclick={cancel.clone()}>{ "Cancel" }</button>
                </div>
            </>
        }),
        PromptKind::Fields { caption, message, fields } => {
            let (inputs2, answer, names) = (Rc::clone(&inputs), answer.clone(), fields.clone());
            let onsubmit = Callback::from(move |e: SubmitEvent| {
                e.prevent_default();
                answer.emit(if names.iter().any(|f| f.secure) {
                    // A SecureString field: the relay makes the `<SS>` with the session key.
                    HostAnswer::Fields { fields: names.iter().zip(inputs2.iter()).map(|(f, r)| FieldAnswer { name: f.name.clone(), text: value(r), secure: f.secure }).collect() }
                } else {
                    let pairs: Vec<(String, String)> = names.iter().zip(inputs2.iter()).map(|(f, r)| (f.name.clone(), value(r))).collect();
                    HostAnswer::Value { clixml: fields_answer(&pairs) }
                });
            });
            (if caption.is_empty() { "Prompt".to_owned() } else { caption.clone() }, html! {
                <form {onsubmit}>
                    if !message.is_empty() { <p>{ message }</p> }
                    { for fields.iter().zip(inputs.iter()).map(|(f, r)| html! {
                        <label class="host-field">{ if f.label.is_empty() { &f.name } else { &f.label } }
                            <input ref={r.clone()} data-field={f.name.clone()} type={if f.secure { "password" } else { "text" }} autocomplete="off" />
                        </label>
                    }) }
                    <div class="buttons">
                        <button type="submit" id="host-submit">{ "OK" }</button>
                        <button type="button" class="secondary" onclick={cancel.clone()}>{ "Cancel" }</button>
                    </div>
                </form>
            })
        }
        PromptKind::Unsupported(method) => (method.clone(), html! {
            <>
                <p>{ format!("This console cannot answer {method} yet.") }</p>
                <div class="buttons"><button type="button" onclick={cancel.clone()}>{ "Cancel" }</button></div>
            </>
        }),
    };
    html! {
        <div class="host-backdrop">
            <div class="host-dialog" role="dialog" aria-modal="true" aria-label={title.clone()}>
                <h3>{ title }</h3>
                { body }
            </div>
        </div>
    }
}

#[cfg(test)]
mod tests {
    use psgate_shared::api::WinrmAuth;

    use super::*;

    fn form(computers: &str, transport: &str, port: &str, user: &str, password: &str, name: &str) -> Form {
        Form { computers: computers.into(), transport: transport.into(), port: port.into(), user: user.into(), password: password.into(), name: name.into(), ..Form::default() }
    }

    #[test]
    fn the_throttle_limit_is_a_positive_number_or_the_default() {
        let parse_throttle = |t: &str| parse_number::<u32>(t, 1, "ThrottleLimit");
        assert_eq!(parse_throttle(""), Ok(None));
        assert_eq!(parse_throttle(" 8 "), Ok(Some(8)));
        for bad in ["0", "-1", "many", "1.5"] {
            assert!(parse_throttle(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_throttle("0"), Err("ThrottleLimit must be a whole number of at least 1, not \"0\"".into()));
    }

    #[test]
    fn several_computers_make_several_targets() {
        let t = targets(&form("srv1, srv2,", "ssh", "2222", "bob", "pw", "web")).expect("valid");
        assert_eq!(t.len(), 2);
        assert_eq!((t[1].computer_name.as_str(), t[1].port, t[1].user.as_deref(), t[1].name.as_deref()), ("srv2", Some(2222), Some("bob"), Some("web-srv2")));
        assert_eq!(t[0].transport, Transport::Ssh);
        assert_eq!((t[0].use_ssl, t[0].authentication, t[0].configuration_name.as_deref()), (false, None, None), "WinRM's fields stay off SSH");
        let t = targets(&form("localhost", "local", "", "", "", "")).expect("valid");
        assert_eq!((t[0].transport, t[0].port, t[0].user.clone(), t[0].password.clone(), t[0].name.clone()), (Transport::Local, None, None, None, None));
        assert!(targets(&form(" , ", "local", "", "", "", "")).is_err());
        assert!(targets(&form("a", "local", "99999", "", "", "")).is_err());
        assert!(targets(&form("a", "local", "0", "", "", "")).is_err());
    }

    #[test]
    fn a_winrm_target_has_ssl_authentication_and_configuration() {
        let f = Form { use_ssl: true, authentication: "ntlm".into(), configuration_name: " JEA.Ops ".into(), ..form("srv1", "winrm", "", "PSGATE\\ada", "Secret-1", "") };
        let t = targets(&f).expect("valid");
        assert_eq!(t[0].transport, Transport::Winrm);
        assert_eq!((t[0].use_ssl, t[0].authentication, t[0].configuration_name.as_deref(), t[0].port), (true, Some(WinrmAuth::Ntlm), Some("JEA.Ops"), None));
        assert_eq!((t[0].user.as_deref(), t[0].password.as_deref(), t[0].shell_id.as_deref()), (Some("PSGATE\\ada"), Some("Secret-1"), None));
        let t = targets(&Form { authentication: String::new(), configuration_name: String::new(), use_ssl: false, ..f }).expect("valid");
        assert_eq!((t[0].use_ssl, t[0].authentication, t[0].configuration_name.as_deref()), (false, Some(WinrmAuth::Negotiate), None), "Negotiate by default");
        assert_eq!((default_port("winrm", false), default_port("winrm", true), default_port("ssh", true), default_port("local", false)), ("5985", "5986", "22", ""));
        // The JSON the relay reads.
        let json = serde_json::to_string(&t[0]).expect("encode");
        assert_eq!(json, r#"{"computer_name":"srv1","transport":"winrm","user":"PSGATE\\ada","password":"Secret-1","authentication":"negotiate"}"#);
    }

    #[test]
    fn disconnect_takes_the_idle_timeout_and_buffering_mode() {
        assert_eq!(
            disconnect_message(SessionId(3), " 120 ", "drop"),
            Ok(ClientMessage::DisconnectSessions { ids: vec![SessionId(3)], idle_timeout_secs: Some(120), output_buffering_mode: Some(OutputBufferingMode::Drop) })
        );
        assert_eq!(
            disconnect_message(SessionId(3), "", ""),
            Ok(ClientMessage::DisconnectSessions { ids: vec![SessionId(3)], idle_timeout_secs: None, output_buffering_mode: None })
        );
        assert_eq!(disconnect_message(SessionId(3), "", "block").map(|m| serde_json::to_string(&m).expect("encode")), Ok(r#"{"type":"disconnect_sessions","ids":[3],"output_buffering_mode":"block"}"#.into()));
        for bad in ["59", "soon", "-1"] {
            assert!(disconnect_message(SessionId(3), bad, "").is_err(), "{bad}");
        }
    }
}
