//! The console page's state: login, the connection, the sessions and one console per session. A pure
//! `Reducible` reducer with an [`Action`] enum, tested natively; the WebSocket ([`crate::api`]) feeds it
//! [`Action::Socket`] events and the components send what the user does.

use std::collections::BTreeMap;
use std::rc::Rc;

use psgate_shared::api::{ErrorCode, InvocationId, InvokeHost, PipelineId, PipelineState, RecordKind, ServerMessage, SessionId, SessionInfo, SessionState};
use psgate_shared::clixml::{self, Content, Document, Item, Value};
use yew::Reducible;

use crate::api::Event;
use crate::render::blocks::{Block, blocks};

/// Who is logged in.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Auth {
    /// Asking `/api/me`.
    #[default]
    Checking,
    /// The login page, with the last failure.
    LoggedOut(Option<String>),
    /// The console, for this user.
    LoggedIn(String),
}

/// The WebSocket's state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Link {
    /// First connection under way.
    #[default]
    Connecting,
    /// Connected.
    Open,
    /// Dropped; trying again in this many milliseconds.
    Retrying(u32),
}

/// What happens to the page.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// `/api/me` or a login said who the user is.
    LoggedIn(String),
    /// Not logged in (with the reason to show, after a failed login).
    LoggedOut(Option<String>),
    /// The socket said something.
    Socket(Event),
    /// The user picked a session's console.
    Select(SessionId),
    /// The user ran a script in a session (the `run` message was sent).
    Ran(SessionId, String),
    /// The user answered (or cancelled) the session's host prompt.
    Answered(SessionId),
    /// The user ran Invoke-Command on these sessions (the `invoke` message was sent).
    Invoked(Vec<SessionId>, String),
    /// The user answered (or cancelled) a host prompt of an Invoke-Command pipeline.
    AnsweredInvoke(SessionId, PipelineId),
    /// Dismiss the notices.
    DismissNotices,
}

/// The page state.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct State {
    /// Login.
    pub auth: Auth,
    /// The connection.
    pub link: Link,
    /// The user's sessions, by id.
    pub sessions: Vec<SessionInfo>,
    /// The console shown.
    pub active: Option<SessionId>,
    /// One console per session.
    pub consoles: BTreeMap<SessionId, Console>,
    /// Refused targets and relay errors, newest last.
    pub notices: Vec<String>,
    /// Invoke-Command runs, oldest first.
    pub invocations: Vec<Invocation>,
}

/// One Invoke-Command run.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Invocation {
    /// The relay's id, once `invoke_started` came.
    pub id: Option<InvocationId>,
    /// The script.
    pub script: String,
    /// The throttle limit in effect.
    pub throttle_limit: Option<u32>,
    /// Each session's part, in the order asked.
    pub hosts: Vec<InvokeTarget>,
    /// The relay refused the run (nothing ran).
    pub refused: Option<String>,
    /// `invoke_finished` came.
    pub finished: bool,
}

impl Invocation {
    fn host(&mut self, session: SessionId) -> &mut InvokeTarget {
        if let Some(i) = self.hosts.iter().position(|h| h.session == session) {
            return &mut self.hosts[i];
        }
        self.hosts.push(InvokeTarget::new(session, String::new()));
        self.hosts.last_mut().expect("just pushed")
    }

    fn finish_host(&mut self, host: InvokeHost) {
        let h = self.host(host.session);
        h.computer_name = host.computer_name;
        h.pipeline = host.pipeline.or(h.pipeline);
        h.state = Some(host.state);
        h.prompt = None;
        h.message = host.message.or_else(|| host.error.as_deref().map(error_message)).or(h.message.take());
    }

    /// How many hosts ended in each way: (completed, failed, stopped).
    pub fn summary(&self) -> (usize, usize, usize) {
        let count = |s: PipelineState| self.hosts.iter().filter(|h| h.state == Some(s)).count();
        (count(PipelineState::Completed), count(PipelineState::Failed), count(PipelineState::Stopped))
    }
}

/// One session's part of an Invoke-Command run.
#[derive(Clone, Debug, PartialEq)]
pub struct InvokeTarget {
    /// The session.
    pub session: SessionId,
    /// Its `ComputerName`.
    pub computer_name: String,
    /// The pipeline, once started.
    pub pipeline: Option<PipelineId>,
    /// `None`: waiting for its turn (throttle limit); then running, then the final state.
    pub state: Option<PipelineState>,
    /// Why it failed (could not start, or the terminating error's message).
    pub message: Option<String>,
    /// What it wrote.
    pub output: Entry,
    /// Its host call waiting for an answer.
    pub prompt: Option<HostPrompt>,
}

impl InvokeTarget {
    fn new(session: SessionId, computer_name: String) -> InvokeTarget {
        InvokeTarget { session, computer_name, pipeline: None, state: None, message: None, output: Entry::default(), prompt: None }
    }
}

/// The message of a terminating error record (CLIXML), for a status line.
pub fn error_message(clixml: &str) -> String {
    let Ok(v) = clixml::decode_message(clixml.as_bytes()) else { return "failed".into() };
    let Some(o) = v.as_object() else { return v.as_str().unwrap_or("failed").to_owned() };
    let exception = o.property("Exception").and_then(Value::as_object);
    exception
        .and_then(|e| e.property("Message").and_then(Value::as_str).map(str::to_owned).or_else(|| e.to_string.as_ref().map(|s| s.to_string())))
        .or_else(|| o.to_string.as_ref().map(|s| s.to_string()))
        .or_else(|| o.property("Message").and_then(Value::as_str).map(str::to_owned))
        .unwrap_or_else(|| "failed".into())
}

/// One session's console.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Console {
    /// Commands and what they wrote, oldest first.
    pub entries: Vec<Entry>,
    /// Scripts run, oldest first (Up/Down).
    pub history: Vec<String>,
    /// The running pipeline (Ctrl+C stops it).
    pub running: Option<PipelineId>,
    /// A `run` was sent and its `pipeline_started` has not come.
    pub starting: bool,
    /// The host call waiting for an answer.
    pub prompt: Option<HostPrompt>,
}

/// A command and its output.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Entry {
    /// The prompt it was typed at (`[localhost]: PS>`).
    pub prompt: String,
    /// The script.
    pub script: String,
    /// Its pipeline, once started.
    pub pipeline: Option<PipelineId>,
    /// Everything it wrote, as a document whose items carry their stream.
    pub items: Vec<Item>,
    /// `items` laid out like a console.
    pub blocks: Rc<Vec<Block>>,
    /// The last state.
    pub state: Option<PipelineState>,
}

impl Entry {
    fn push(&mut self, stream: Option<&str>, value: Value) {
        self.items.push(Item { stream: stream.map(Into::into), value });
        let doc = Document { clixml_header: false, items: self.items.clone() };
        self.blocks = Rc::new(blocks(&doc));
    }

    fn push_clixml(&mut self, stream: Option<&str>, text: &str) {
        match clixml::decode_message(text.as_bytes()) {
            Ok(value) => self.push(stream, value),
            Err(e) => self.push(Some("Error"), Value::string(format!("psgate could not decode an object: {e}"))),
        }
    }
}

/// A host call the user must answer (MS-PSRP 2.2.3.17).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostPrompt {
    /// The pipeline.
    pub pipeline: PipelineId,
    /// The `call_id` to answer.
    pub call_id: i64,
    /// What to ask.
    pub kind: PromptKind,
}

/// The dialog a host call becomes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PromptKind {
    /// `ReadLine`: one line of text.
    Line,
    /// `ReadLineAsSecureString`: one masked line, answered as `secure`.
    SecureLine,
    /// `PromptForCredential1`/`2`: user name and masked password, answered as `credential`.
    Credential {
        /// The caption.
        caption: String,
        /// The message.
        message: String,
        /// The suggested user name (pre-filled).
        user: String,
    },
    /// `PromptForChoice`: buttons; answered with the index.
    Choice {
        /// Caption and message.
        caption: String,
        /// The message.
        message: String,
        /// The labels, without `&`.
        choices: Vec<String>,
        /// The default choice.
        default: Option<usize>,
    },
    /// `Prompt`: named fields; answered with a hashtable.
    Fields {
        /// The caption.
        caption: String,
        /// The message.
        message: String,
        /// The fields.
        fields: Vec<Field>,
    },
    /// A call this console cannot answer yet (Cancel only).
    Unsupported(String),
}

/// One field of a `Prompt` call (a FieldDescription).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Field {
    /// Its name (the answer's key).
    pub name: String,
    /// Its label, when it has one.
    pub label: String,
    /// A `System.Security.SecureString` field: masked, answered as a secure field.
    pub secure: bool,
}

impl HostPrompt {
    /// Reads a host call's method and CLIXML arguments.
    pub fn new(pipeline: PipelineId, call_id: i64, method: &str, args: &[String]) -> HostPrompt {
        let args: Vec<Value> = args.iter().map(|a| clixml::decode_message(a.as_bytes()).unwrap_or(Value::Nil)).collect();
        let text = |i: usize| args.get(i).and_then(Value::as_str).unwrap_or_default().to_owned();
        let list = |i: usize| match args.get(i).and_then(Value::as_object).map(|o| &o.content) {
            Some(Content::List(_, values)) => values.clone(),
            _ => Vec::new(),
        };
        let prop = |v: &Value, names: &[&str]| {
            names.iter().find_map(|n| v.as_object().and_then(|o| o.property(n)).and_then(Value::as_str).filter(|s| !s.is_empty()).map(str::to_owned)).unwrap_or_default()
        };
        let kind = match method {
            "ReadLine" => PromptKind::Line,
            "ReadLineAsSecureString" => PromptKind::SecureLine,
            "PromptForCredential1" | "PromptForCredential2" => PromptKind::Credential { caption: text(0), message: text(1), user: text(2) },
            "PromptForChoice" => PromptKind::Choice {
                caption: text(0),
                message: text(1),
                choices: list(2).iter().map(|c| prop(c, &["Label"]).replace('&', "")).collect(),
                default: args.get(3).and_then(Value::as_i64).and_then(|d| usize::try_from(d).ok()),
            },
            "Prompt" => PromptKind::Fields {
                caption: text(0),
                message: text(1),
                fields: list(2)
                    .iter()
                    .map(|f| Field {
                        name: prop(f, &["Name", "Label"]),
                        label: prop(f, &["Label"]).replace('&', ""),
                        secure: prop(f, &["ParameterTypeFullName"]) == "System.Security.SecureString" || prop(f, &["ParameterTypeName"]) == "SecureString",
                    })
                    .collect(),
            },
            other => PromptKind::Unsupported(other.to_owned()),
        };
        HostPrompt { pipeline, call_id, kind }
    }
}

/// The CLIXML answer to `Prompt`: a hashtable of field name → text.
pub fn fields_answer(fields: &[(String, String)]) -> String {
    let mut out = String::from(r#"<Obj RefId="0"><TN RefId="0"><T>System.Collections.Hashtable</T><T>System.Object</T></TN><DCT>"#);
    for (name, value) in fields {
        out.push_str(&format!(r#"<En><S N="Key">{}</S><S N="Value">{}</S></En>"#, clixml::escape(name), clixml::escape(value)));
    }
    out.push_str("</DCT></Obj>");
    out
}

/// The CLIXML of a string answer.
pub fn string_answer(text: &str) -> String {
    format!("<S>{}</S>", clixml::escape(text))
}

/// The prompt shown before a command, like Enter-PSSession's.
pub fn prompt_of(info: Option<&SessionInfo>) -> String {
    info.map_or_else(|| "PS>".to_owned(), |i| format!("[{}]: PS>", i.computer_name))
}

/// The stream name a record kind is written under (as the viewer's `S` attributes).
fn stream_of(kind: RecordKind) -> &'static str {
    match kind {
        RecordKind::Error => "Error",
        RecordKind::Warning => "Warning",
        RecordKind::Verbose => "Verbose",
        RecordKind::Debug => "Debug",
        RecordKind::Information => "Information",
        RecordKind::Progress => "Progress",
    }
}

impl State {
    fn entry(&mut self, session: SessionId, pipeline: PipelineId) -> Option<&mut Entry> {
        self.consoles.get_mut(&session)?.entries.iter_mut().rev().find(|e| e.pipeline == Some(pipeline))
    }

    fn invoke_host(&mut self, session: SessionId, pipeline: PipelineId) -> Option<&mut InvokeTarget> {
        self.invocations.iter_mut().rev().flat_map(|i| i.hosts.iter_mut()).find(|h| h.session == session && h.pipeline == Some(pipeline))
    }

    fn invocation(&mut self, id: InvocationId) -> Option<&mut Invocation> {
        self.invocations.iter_mut().rev().find(|i| i.id == Some(id))
    }

    /// The session's row.
    pub fn session(&self, id: SessionId) -> Option<&SessionInfo> {
        self.sessions.iter().find(|s| s.id == id)
    }

    fn keep_consistent(&mut self) {
        let ids: Vec<SessionId> = self.sessions.iter().map(|s| s.id).collect();
        self.consoles.retain(|id, _| ids.contains(id));
        if self.active.is_none_or(|a| !ids.contains(&a)) {
            self.active = ids.first().copied();
        }
    }

    fn message(&mut self, message: ServerMessage) {
        match message {
            ServerMessage::Hello { .. } => {}
            ServerMessage::Sessions { sessions } => {
                self.sessions = sessions;
                self.keep_consistent();
            }
            ServerMessage::SessionChanged { session } => {
                if session.state == SessionState::Closed {
                    self.sessions.retain(|s| s.id != session.id);
                } else if let Some(s) = self.sessions.iter_mut().find(|s| s.id == session.id) {
                    *s = session;
                } else {
                    self.sessions.push(session);
                    self.sessions.sort_by_key(|s| s.id);
                }
                self.keep_consistent();
            }
            ServerMessage::TargetRefused { computer_name, message, .. } => self.notices.push(format!("{computer_name}: {message}")),
            ServerMessage::PipelineStarted { session, pipeline } => {
                let prompt = prompt_of(self.session(session));
                let console = self.consoles.entry(session).or_default();
                console.running = Some(pipeline);
                match console.entries.last_mut() {
                    Some(e) if console.starting && e.pipeline.is_none() => e.pipeline = Some(pipeline),
                    _ => console.entries.push(Entry { prompt, pipeline: Some(pipeline), ..Entry::default() }),
                }
                console.starting = false;
            }
            ServerMessage::Output { session, pipeline, clixml, .. } => {
                if let Some(h) = self.invoke_host(session, pipeline) {
                    h.output.push_clixml(None, &clixml);
                } else if let Some(e) = self.entry(session, pipeline) {
                    e.push_clixml(None, &clixml);
                }
            }
            ServerMessage::Record { session, pipeline, kind, clixml, .. } => {
                if let Some(h) = self.invoke_host(session, pipeline) {
                    h.output.push_clixml(Some(stream_of(kind)), &clixml);
                } else if let Some(e) = self.entry(session, pipeline) {
                    e.push_clixml(Some(stream_of(kind)), &clixml);
                }
            }
            ServerMessage::HostCall { session, pipeline, call_id, method, args, .. } => {
                if call_id < 0 {
                    // Write-Host and friends: the text is the last argument.
                    if method.starts_with("Write") {
                        let text = args.last().and_then(|a| clixml::decode_message(a.as_bytes()).ok());
                        let text = text.filter(|t| t.as_str().is_some()).unwrap_or_else(|| Value::string(""));
                        if let Some(h) = self.invoke_host(session, pipeline) {
                            h.output.push(Some("Information"), text);
                        } else if let Some(e) = self.entry(session, pipeline) {
                            e.push(Some("Information"), text);
                        }
                    }
                } else if let Some(h) = self.invoke_host(session, pipeline) {
                    h.prompt = Some(HostPrompt::new(pipeline, call_id, &method, &args));
                } else if let Some(console) = self.consoles.get_mut(&session) {
                    console.prompt = Some(HostPrompt::new(pipeline, call_id, &method, &args));
                }
            }
            ServerMessage::PipelineState { session, pipeline, state, error, .. } => {
                if let Some(h) = self.invoke_host(session, pipeline) {
                    h.state = Some(state);
                    if let Some(error) = error {
                        h.message = Some(error_message(&error));
                        h.output.push_clixml(Some("Error"), &error);
                    }
                    if state.is_terminal() {
                        h.prompt = None;
                    }
                } else if let Some(e) = self.entry(session, pipeline) {
                    e.state = Some(state);
                    if let Some(error) = error {
                        e.push_clixml(Some("Error"), &error);
                    }
                }
                if state.is_terminal()
                    && let Some(console) = self.consoles.get_mut(&session)
                    && console.running == Some(pipeline)
                {
                    console.running = None;
                    console.prompt = None;
                }
            }
            ServerMessage::Error { code, message } => {
                // A refused `run`: the command the user typed fails in its console.
                let refused_run = matches!(code, ErrorCode::SessionNotReady | ErrorCode::UnknownSession);
                let starting = self.consoles.values_mut().find(|c| c.starting);
                // A refused `invoke` (an unknown session): nothing ran.
                let pending = self.invocations.iter_mut().rev().find(|i| i.id.is_none() && i.refused.is_none());
                match (starting, pending) {
                    (Some(console), _) if refused_run => {
                        console.starting = false;
                        if let Some(e) = console.entries.last_mut() {
                            e.push(Some("Error"), Value::string(message));
                            e.state = Some(PipelineState::Failed);
                        }
                    }
                    (None, Some(invocation)) if matches!(code, ErrorCode::UnknownSession | ErrorCode::BadMessage) => invocation.refused = Some(message),
                    _ => self.notices.push(message),
                }
            }
            ServerMessage::InvokeStarted { invocation, sessions, throttle_limit } => {
                let names: Vec<(SessionId, String)> = sessions.iter().map(|&id| (id, self.session(id).map(|i| i.computer_name.clone()).unwrap_or_default())).collect();
                let run = match self.invocations.iter_mut().find(|i| i.id.is_none() && i.refused.is_none()) {
                    Some(run) => run,
                    None => {
                        self.invocations.push(Invocation::default());
                        self.invocations.last_mut().expect("just pushed")
                    }
                };
                run.id = Some(invocation);
                run.throttle_limit = Some(throttle_limit);
                // The relay's order (each session once) replaces the one asked.
                let old = std::mem::take(&mut run.hosts);
                for (session, computer_name) in names {
                    let mut h = old.iter().find(|h| h.session == session).cloned().unwrap_or_else(|| InvokeTarget::new(session, String::new()));
                    if h.computer_name.is_empty() {
                        h.computer_name = computer_name;
                    }
                    run.hosts.push(h);
                }
            }
            ServerMessage::InvokeHostStarted { invocation, session, computer_name, pipeline } => {
                if let Some(run) = self.invocation(invocation) {
                    let h = run.host(session);
                    h.computer_name = computer_name;
                    h.pipeline = Some(pipeline);
                    h.state = Some(PipelineState::Running);
                    h.output.pipeline = Some(pipeline);
                }
            }
            ServerMessage::InvokeHostFinished { invocation, host } => {
                if let Some(run) = self.invocation(invocation) {
                    run.finish_host(host);
                }
            }
            ServerMessage::InvokeFinished { invocation, hosts } => {
                if let Some(run) = self.invocation(invocation) {
                    for host in hosts {
                        run.finish_host(host);
                    }
                    run.finished = true;
                }
            }
        }
    }
}

impl Reducible for State {
    type Action = Action;

    fn reduce(self: Rc<Self>, action: Action) -> Rc<Self> {
        let mut s = (*self).clone();
        match action {
            Action::LoggedIn(user) => s.auth = Auth::LoggedIn(user),
            Action::LoggedOut(reason) => s = State { auth: Auth::LoggedOut(reason), ..State::default() },
            Action::Socket(Event::Open) => s.link = Link::Open,
            Action::Socket(Event::Closed { retry_ms }) => {
                s.link = Link::Retrying(retry_ms);
                // A `run` in flight on the dropped connection is lost: let the user type again.
                for console in s.consoles.values_mut().filter(|c| c.starting) {
                    console.starting = false;
                    if let Some(e) = console.entries.last_mut().filter(|e| e.pipeline.is_none()) {
                        e.push(Some("Error"), Value::string("the connection to the relay dropped before the command started"));
                        e.state = Some(PipelineState::Failed);
                    }
                }
            }
            Action::Socket(Event::Message(m)) => s.message(m),
            Action::Socket(Event::Garbled(e)) => s.notices.push(format!("the relay sent a message this page does not understand: {e}")),
            Action::Select(id) => s.active = Some(id),
            Action::Ran(session, script) => {
                let prompt = prompt_of(s.session(session));
                let console = s.consoles.entry(session).or_default();
                if !script.trim().is_empty() && console.history.last() != Some(&script) {
                    console.history.push(script.clone());
                }
                console.entries.push(Entry { prompt, script, ..Entry::default() });
                console.starting = true;
            }
            Action::Answered(session) => {
                if let Some(c) = s.consoles.get_mut(&session) {
                    c.prompt = None;
                }
            }
            Action::Invoked(sessions, script) => {
                let hosts = sessions
                    .iter()
                    .map(|&session| InvokeTarget::new(session, s.session(session).map(|i| i.computer_name.clone()).unwrap_or_default()))
                    .collect();
                s.invocations.push(Invocation { script, hosts, ..Invocation::default() });
            }
            Action::AnsweredInvoke(session, pipeline) => {
                if let Some(h) = s.invoke_host(session, pipeline) {
                    h.prompt = None;
                }
            }
            Action::DismissNotices => s.notices.clear(),
        }
        Rc::new(s)
    }
}

/// Up/Down in the input line: the new position in `history` (`history.len()` = the line being typed) and the
/// text to show, or `None` when nothing changes.
pub fn history_step(history: &[String], pos: usize, up: bool) -> Option<(usize, String)> {
    let pos = pos.min(history.len());
    let next = if up { pos.checked_sub(1)? } else if pos < history.len() { pos + 1 } else { return None };
    Some((next, history.get(next).cloned().unwrap_or_default()))
}

#[cfg(test)]
mod tests {
    use psgate_shared::api::{Availability, Transport};

    use super::*;

    const S: SessionId = SessionId(1);
    const P: PipelineId = PipelineId(7);

    fn info(id: u64, state: SessionState) -> SessionInfo {
        SessionInfo {
            id: SessionId(id),
            name: format!("Runspace{id}"),
            computer_name: "localhost".into(),
            transport: Transport::Local,
            state,
            availability: Availability::Available,
            reason: None,
        }
    }

    fn msg(m: ServerMessage) -> Action {
        Action::Socket(Event::Message(m))
    }

    fn run(actions: impl IntoIterator<Item = Action>) -> Rc<State> {
        actions.into_iter().fold(Rc::new(State::default()), Reducible::reduce)
    }

    fn started() -> Vec<Action> {
        vec![
            Action::LoggedIn("demo".into()),
            msg(ServerMessage::Sessions { sessions: vec![info(1, SessionState::Opened)] }),
            Action::Ran(S, "Get-Process".into()),
            msg(ServerMessage::PipelineStarted { session: S, pipeline: P }),
        ]
    }

    #[test]
    fn the_first_session_gets_the_console_and_its_prompt() {
        let s = run(started());
        assert_eq!(s.active, Some(S));
        let c = &s.consoles[&S];
        assert_eq!(c.running, Some(P));
        assert_eq!(c.entries[0].prompt, "[localhost]: PS>");
        assert_eq!(c.entries[0].pipeline, Some(P));
        assert_eq!(c.history, ["Get-Process"]);
    }

    #[test]
    fn uniform_output_becomes_a_table_and_records_are_prefixed() {
        let obj = |name: &str| format!(r#"<Obj RefId="0"><MS><S N="ProcessName">{name}</S><I32 N="Id">4</I32></MS></Obj>"#);
        let mut actions = started();
        for (seq, name) in [(1, "svchost"), (2, "pwsh")] {
            actions.push(msg(ServerMessage::Output { session: S, pipeline: P, seq, clixml: obj(name) }));
        }
        actions.push(msg(ServerMessage::Record { session: S, pipeline: P, seq: 3, kind: RecordKind::Warning, clixml: "<S>careful</S>".into() }));
        actions.push(msg(ServerMessage::PipelineState { session: S, pipeline: P, seq: 4, state: PipelineState::Completed, error: None }));
        let s = run(actions);
        let e = &s.consoles[&S].entries[0];
        let Block::Table(t) = &e.blocks[0] else { panic!("a table: {:?}", e.blocks) };
        assert_eq!(t.rows.len(), 2);
        assert_eq!(t.rows[0].cells, ["svchost", "4"]);
        let Block::Text(w) = &e.blocks[1] else { panic!("a warning: {:?}", e.blocks) };
        assert_eq!(w.text, "WARNING: careful");
        assert_eq!(s.consoles[&S].running, None);
        assert_eq!(e.state, Some(PipelineState::Completed));
    }

    #[test]
    fn read_line_becomes_a_prompt_until_answered() {
        let mut actions = started();
        actions.push(msg(ServerMessage::HostCall { session: S, pipeline: P, seq: 1, call_id: 3, method: "ReadLine".into(), args: vec![] }));
        let s = run(actions);
        assert_eq!(s.consoles[&S].prompt, Some(HostPrompt { pipeline: P, call_id: 3, kind: PromptKind::Line }));
        let s = s.reduce(Action::Answered(S));
        assert_eq!(s.consoles[&S].prompt, None);
    }

    #[test]
    fn choices_and_fields_are_read_from_the_arguments() {
        let choice = |label: &str| format!(r#"<Obj><MS><S N="Label">{label}</S><S N="HelpMessage">h</S></MS></Obj>"#);
        let list = format!(r#"<Obj><LST>{}{}</LST></Obj>"#, choice("&amp;Yes"), choice("&amp;No"));
        let p = HostPrompt::new(P, 1, "PromptForChoice", &["<S>Confirm</S>".into(), "<S>Pick one</S>".into(), list, "<I32>1</I32>".into()]);
        assert_eq!(p.kind, PromptKind::Choice { caption: "Confirm".into(), message: "Pick one".into(), choices: vec!["Yes".into(), "No".into()], default: Some(1) });
        let fields = r#"<Obj><LST><Obj><MS><S N="Name">Name</S></MS></Obj></LST></Obj>"#.to_owned();
        let p = HostPrompt::new(P, 2, "Prompt", &["<S />".into(), "<S />".into(), fields]);
        assert_eq!(p.kind, PromptKind::Fields { caption: String::new(), message: String::new(), fields: vec![Field { name: "Name".into(), label: String::new(), secure: false }] });
        assert_eq!(HostPrompt::new(P, 3, "PromptForCredential3", &[]).kind, PromptKind::Unsupported("PromptForCredential3".into()));
    }

    #[test]
    fn secure_strings_credentials_and_secure_fields_are_masked_prompts() {
        assert_eq!(HostPrompt::new(P, 1, "ReadLineAsSecureString", &[]).kind, PromptKind::SecureLine);
        let args = ["<S>Creds</S>".into(), "<S>Enter them</S>".into(), "<S>bob</S>".into(), "<S></S>".into()];
        for method in ["PromptForCredential1", "PromptForCredential2"] {
            assert_eq!(HostPrompt::new(P, 2, method, &args).kind, PromptKind::Credential { caption: "Creds".into(), message: "Enter them".into(), user: "bob".into() });
        }
        assert_eq!(HostPrompt::new(P, 2, "PromptForCredential1", &["<S>c</S>".into(), "<S>m</S>".into(), "<Nil />".into()]).kind, PromptKind::Credential {
            caption: "c".into(),
            message: "m".into(),
            user: String::new()
        });
        let field = |name: &str, full: &str| format!(r#"<Obj><MS><S N="name">{name}</S><S N="label"></S><S N="parameterTypeFullName">{full}</S></MS></Obj>"#);
        let fields = format!("<Obj><LST>{}{}</LST></Obj>", field("pin", "System.Security.SecureString"), field("who", "System.String"));
        let p = HostPrompt::new(P, 3, "Prompt", &["<S />".into(), "<S />".into(), fields]);
        let PromptKind::Fields { fields, .. } = p.kind else { panic!("{p:?}") };
        assert_eq!(fields.iter().map(|f| (f.name.as_str(), f.secure)).collect::<Vec<_>>(), [("pin", true), ("who", false)]);
    }

    #[test]
    fn answers_are_clixml_that_decodes() {
        assert_eq!(clixml::decode_message(string_answer("a<b").as_bytes()).expect("decodes").as_str(), Some("a<b"));
        let v = clixml::decode_message(fields_answer(&[("Name".into(), "Ann & co".into())]).as_bytes()).expect("decodes");
        let Some(Content::Dict(entries)) = v.as_object().map(|o| &o.content) else { panic!("{v:?}") };
        assert_eq!(entries[0].1.as_str(), Some("Ann & co"));
    }

    #[test]
    fn write_host_is_an_information_line() {
        let mut actions = started();
        actions.push(msg(ServerMessage::HostCall { session: S, pipeline: P, seq: 1, call_id: -100, method: "WriteLine2".into(), args: vec!["<S>hello</S>".into()] }));
        let s = run(actions);
        let Block::Text(t) = &s.consoles[&S].entries[0].blocks[0] else { panic!() };
        assert_eq!(t.text, "hello");
    }

    #[test]
    fn a_refused_run_fails_in_its_console() {
        let s = run([
            msg(ServerMessage::Sessions { sessions: vec![info(1, SessionState::Opening)] }),
            Action::Ran(S, "x".into()),
            msg(ServerMessage::error(ErrorCode::SessionNotReady, "the session is not opened")),
        ]);
        let c = &s.consoles[&S];
        assert!(!c.starting);
        assert_eq!(c.entries[0].state, Some(PipelineState::Failed));
        assert!(s.notices.is_empty());
    }

    #[test]
    fn removed_sessions_lose_their_consoles() {
        let mut actions = started();
        actions.push(msg(ServerMessage::SessionChanged { session: info(2, SessionState::Opened) }));
        actions.push(msg(ServerMessage::SessionChanged { session: info(1, SessionState::Closed) }));
        let s = run(actions);
        assert_eq!(s.sessions.iter().map(|s| s.id).collect::<Vec<_>>(), [SessionId(2)]);
        assert!(!s.consoles.contains_key(&S));
        assert_eq!(s.active, Some(SessionId(2)));
        let s = s.reduce(msg(ServerMessage::Sessions { sessions: vec![] }));
        assert_eq!(s.active, None);
    }

    #[test]
    fn refused_targets_are_noticed() {
        let s = run([msg(ServerMessage::TargetRefused { computer_name: "srv".into(), code: ErrorCode::TargetNotAllowed, message: "not allowed".into() })]);
        assert_eq!(s.notices, ["srv: not allowed"]);
        assert!(s.reduce(Action::DismissNotices).notices.is_empty());
    }

    #[test]
    fn a_drop_while_starting_fails_the_command_and_logout_forgets_everything() {
        let s = run([
            msg(ServerMessage::Sessions { sessions: vec![info(1, SessionState::Opened)] }),
            Action::Ran(S, "x".into()),
            Action::Socket(Event::Closed { retry_ms: 250 }),
        ]);
        assert_eq!(s.link, Link::Retrying(250));
        assert_eq!(s.consoles[&S].entries[0].state, Some(PipelineState::Failed));
        let s = s.reduce(Action::LoggedOut(None));
        assert_eq!(*s, State { auth: Auth::LoggedOut(None), ..State::default() });
    }

    fn host(session: u64, pipeline: u64, state: PipelineState, message: Option<&str>) -> InvokeHost {
        InvokeHost {
            session: SessionId(session),
            computer_name: "localhost".into(),
            pipeline: (pipeline > 0).then_some(PipelineId(pipeline)),
            state,
            error: None,
            message: message.map(Into::into),
        }
    }

    #[test]
    fn invoke_groups_output_by_host_and_keeps_consoles_apart() {
        let inv = InvocationId(1);
        let (s2, p2, p3) = (SessionId(2), PipelineId(20), PipelineId(30));
        let obj = r#"<Obj RefId="0"><MS><S N="ProcessName">svchost</S><S N="PSComputerName">localhost</S></MS></Obj>"#;
        let s = run([
            msg(ServerMessage::Sessions { sessions: vec![info(1, SessionState::Opened), info(2, SessionState::Opened), info(3, SessionState::Opened)] }),
            Action::Invoked(vec![S, s2, SessionId(3)], "Get-Process".into()),
            msg(ServerMessage::InvokeStarted { invocation: inv, sessions: vec![S, s2, SessionId(3)], throttle_limit: 32 }),
            msg(ServerMessage::InvokeHostStarted { invocation: inv, session: S, computer_name: "localhost".into(), pipeline: P }),
            msg(ServerMessage::InvokeHostStarted { invocation: inv, session: s2, computer_name: "localhost".into(), pipeline: p2 }),
            msg(ServerMessage::Output { session: S, pipeline: P, seq: 1, clixml: obj.into() }),
            msg(ServerMessage::HostCall { session: s2, pipeline: p2, seq: 1, call_id: 4, method: "ReadLineAsSecureString".into(), args: vec![] }),
        ]);
        let run0 = &s.invocations[0];
        assert_eq!(run0.id, Some(inv));
        assert_eq!(run0.hosts.iter().map(|h| h.state).collect::<Vec<_>>(), [Some(PipelineState::Running), Some(PipelineState::Running), None]);
        assert_eq!(run0.hosts[0].output.items.len(), 1);
        assert_eq!(run0.hosts[1].prompt.as_ref().map(|p| &p.kind), Some(&PromptKind::SecureLine));
        assert!(s.consoles.values().all(|c| c.entries.is_empty() && c.prompt.is_none()), "invoke output stays out of the consoles");
        let s = s.reduce(Action::AnsweredInvoke(s2, p2));
        assert_eq!(s.invocations[0].hosts[1].prompt, None);
        let failed = ServerMessage::PipelineState {
            session: s2,
            pipeline: p2,
            seq: 2,
            state: PipelineState::Failed,
            error: Some(r#"<Obj><ToString>boom</ToString><MS><S N="Message">x</S></MS></Obj>"#.into()),
        };
        let s = [
            msg(failed),
            msg(ServerMessage::PipelineState { session: S, pipeline: P, seq: 2, state: PipelineState::Completed, error: None }),
            msg(ServerMessage::InvokeHostFinished { invocation: inv, host: host(1, 7, PipelineState::Completed, None) }),
            msg(ServerMessage::InvokeHostStarted { invocation: inv, session: SessionId(3), computer_name: "localhost".into(), pipeline: p3 }),
            msg(ServerMessage::InvokeFinished {
                invocation: inv,
                hosts: vec![host(1, 7, PipelineState::Completed, None), host(2, 20, PipelineState::Failed, None), host(3, 0, PipelineState::Failed, Some("the session is busy"))],
            }),
        ]
        .into_iter()
        .fold(Rc::new(State { invocations: s_before_finish(), ..State::default() }), Reducible::reduce);
        let run0 = &s.invocations[0];
        assert!(run0.finished);
        assert_eq!(run0.summary(), (1, 2, 0));
        assert_eq!(run0.hosts[1].message.as_deref(), Some("boom"));
        assert_eq!(run0.hosts[2].message.as_deref(), Some("the session is busy"));
    }

    fn s_before_finish() -> Vec<Invocation> {
        let (s2, p2) = (SessionId(2), PipelineId(20));
        let inv = InvocationId(1);
        run([
            msg(ServerMessage::Sessions { sessions: vec![info(1, SessionState::Opened), info(2, SessionState::Opened), info(3, SessionState::Opened)] }),
            Action::Invoked(vec![S, s2, SessionId(3)], "Get-Process".into()),
            msg(ServerMessage::InvokeStarted { invocation: inv, sessions: vec![S, s2, SessionId(3)], throttle_limit: 32 }),
            msg(ServerMessage::InvokeHostStarted { invocation: inv, session: S, computer_name: "localhost".into(), pipeline: P }),
            msg(ServerMessage::InvokeHostStarted { invocation: inv, session: s2, computer_name: "localhost".into(), pipeline: p2 }),
        ])
        .invocations
        .clone()
    }

    #[test]
    fn a_refused_invoke_says_why() {
        let s = run([
            msg(ServerMessage::Sessions { sessions: vec![info(1, SessionState::Opened)] }),
            Action::Invoked(vec![SessionId(9)], "x".into()),
            msg(ServerMessage::error(ErrorCode::UnknownSession, "no session 9")),
        ]);
        assert_eq!(s.invocations[0].refused.as_deref(), Some("no session 9"));
        assert!(s.notices.is_empty());
    }

    #[test]
    fn history_walks_up_and_back_down() {
        let h = ["a".to_owned(), "b".to_owned()];
        assert_eq!(history_step(&h, 2, true), Some((1, "b".into())));
        assert_eq!(history_step(&h, 1, true), Some((0, "a".into())));
        assert_eq!(history_step(&h, 0, true), None);
        assert_eq!(history_step(&h, 0, false), Some((1, "b".into())));
        assert_eq!(history_step(&h, 1, false), Some((2, String::new())));
        assert_eq!(history_step(&h, 2, false), None);
    }
}
