//! The console page's state: login, the connection, the sessions and one console per session. A pure
//! `Reducible` reducer with an [`Action`] enum, tested natively; the WebSocket ([`crate::api`]) feeds it
//! [`Action::Socket`] events and the components send what the user does.

use std::collections::BTreeMap;
use std::rc::Rc;

use psgate_shared::api::{LOCAL_SESSION, Availability, Completion, ErrorCode, InvocationId, InvocationRecord, InvokeHost, PipelineId, PipelineRecord, PipelineState, RecordKind, RemoteShell, ServerMessage, SessionId, SessionInfo, SessionState, Share, ShareRole, SharedSession, Transport};
use psgate_shared::clixml::{self, Content, Item, Object, Property, Value};
use yew::Reducible;

use crate::api::Event;
use crate::render::blocks::Layout;
use crate::render::log::Log;

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
    /// The user asked a WinRM target for its shells (`get_remote_shells` was sent for this computer).
    AskedShells(String),
    /// Close the remote shells list.
    CloseShells,
    /// The sessions panel asked for new sessions: the first that comes gets the console.
    AskedSessions,
}

/// The page state.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct State {
    /// Login.
    pub auth: Auth,
    /// The connection.
    pub link: Link,
    /// The user is a relay admin (the relay's `hello` says so): the page offers every user's sessions.
    pub admin: bool,
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
    /// The last `Get-PSSession -ComputerName` asked for: the shells a WinRM target holds for the user.
    pub remote_shells: Option<RemoteShells>,
    /// Grows when a pipeline this page did not start appears (Connect re-attached it): the page then asks the
    /// relay's `history` for its script.
    pub history_wanted: u32,
    /// The session psgate's prompt has entered (its lines go there; `exit` comes back).
    pub entered: Option<SessionId>,
    /// The modules Import-PSSession made at psgate's prompt (the sessions panel shows them by session).
    pub modules: Vec<psgate_shared::api::PromptModule>,
    /// The sessions panel asked for sessions: the console shows the first new one (not those typed at the prompt).
    pub follow_new: bool,
    /// The console shown was chosen by the page, not the user: a page that comes back shows the first session's
    /// console, or psgate's prompt when the prompt has been used.
    pub auto_active: bool,
    /// This page is a console joined to another user's shared session (`/?join=OWNER/ID`): its owner and the role.
    pub joined: Option<(String, ShareRole)>,
    /// Who is present in shared sessions (the owner first), by session.
    pub present: BTreeMap<SessionId, Vec<Share>>,
    /// Who the user's sessions are shared with, by session.
    pub shares: BTreeMap<SessionId, Vec<Share>>,
    /// Sessions other users shared with this one.
    pub shared_with_me: Vec<SharedSession>,
    /// Pipelines waiting for this user's approval as a moderator: (session, pipeline, command, who typed it).
    pub approvals: Vec<Approval>,
}

/// A pipeline waiting for this user's approval as a moderator.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Approval {
    /// The session's owner.
    pub owner: String,
    /// The owner's session.
    pub session: SessionId,
    /// The pipeline.
    pub pipeline: PipelineId,
    /// Its command.
    pub command: String,
    /// Who typed it.
    pub requested_by: String,
}

/// psgate's own prompt, shown as a console like a session's.
pub fn local_info() -> SessionInfo {
    SessionInfo {
        id: LOCAL_SESSION,
        name: "psgate".into(),
        computer_name: "psgate".into(),
        transport: Transport::Local,
        state: SessionState::Opened,
        availability: Availability::Available,
        reason: None,
        prompt: Some(LOCAL_PROMPT.into()),
        configuration_name: None,
        instance_id: None,
        can_disconnect: false,
        idle_left_secs: None,
        run_left_secs: None,
    }
}

/// psgate's prompt.
pub const LOCAL_PROMPT: &str = "PS psgate>";

/// `exit`, `Exit-PSSession` or `exsn` alone: inside an entered session these go to psgate's prompt.
pub fn is_exit_line(line: &str) -> bool {
    let t = line.trim().trim_end_matches(';').trim();
    ["exit", "exit-pssession", "exsn"].iter().any(|w| t.eq_ignore_ascii_case(w))
}

/// What a WinRM target answered to `get_remote_shells`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RemoteShells {
    /// The computer asked.
    pub computer_name: String,
    /// Its shells; `None` while asking.
    pub shells: Option<Vec<RemoteShell>>,
    /// Why there is no answer.
    pub error: Option<String>,
}

/// The script shown for a pipeline this page did not start (Connect-PSSession re-attached it) until the relay's
/// `history` names it.
pub const CONNECTED_PIPELINE: &str = "(connected pipeline)";

/// An error for people: the message, after what kind of failure it is when the code says more than the message.
pub fn readable_error(code: ErrorCode, message: &str) -> String {
    let kind = match code {
        ErrorCode::AuthenticationFailed => "authentication failed",
        ErrorCode::QuotaExceeded => "quota exceeded",
        ErrorCode::TargetFailed => "the target failed",
        ErrorCode::NotSupported => "not supported",
        _ => return message.to_owned(),
    };
    if message.is_empty() { kind.to_owned() } else { format!("{kind}: {message}") }
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
    /// The last answer to a Tab (the console applies it if the input has not changed since).
    pub completions: Option<Rc<Completions>>,
}

/// What the target's `TabExpansion2` offered for an input (MS-PSRP carries PowerShell's `CommandCompletion`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Completions {
    /// The input completed.
    pub input: String,
    /// The cursor, in UTF-16 code units.
    pub cursor: u32,
    /// Where the replaced text starts, in UTF-16 code units.
    pub replacement_index: u32,
    /// How long the replaced text is, in UTF-16 code units.
    pub replacement_length: u32,
    /// The matches, in the target's order.
    pub matches: Vec<Completion>,
}

impl Completions {
    /// The input with match `index` in place, and the cursor after it (UTF-16 code units, as the textarea's).
    pub fn apply(&self, index: usize) -> Option<(String, u32)> {
        let m = self.matches.get(index)?;
        let units: Vec<u16> = self.input.encode_utf16().collect();
        let start = (self.replacement_index as usize).min(units.len());
        let end = start.saturating_add(self.replacement_length as usize).min(units.len());
        let mut out: Vec<u16> = units[..start].to_vec();
        out.extend(m.text.encode_utf16());
        let cursor = u32::try_from(out.len()).ok()?;
        out.extend_from_slice(&units[end..]);
        // Offsets inside a surrogate pair would split a character: refuse rather than corrupt the line.
        String::from_utf16(&out).ok().map(|s| (s, cursor))
    }
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
    /// Everything it wrote, as a document whose items carry their stream (cheap to clone: a [`Log`]).
    pub items: Log<Item>,
    /// `items` laid out like a console, one item at a time as they arrive.
    pub blocks: Layout,
    /// The last state.
    pub state: Option<PipelineState>,
}

impl Entry {
    /// Adds what the pipeline wrote and lays out just that (appended to the last block when it fits): O(1) per
    /// item, however long the output already is.
    fn push(&mut self, stream: Option<&str>, value: Value) {
        let item = Item { stream: stream.map(Into::into), value };
        self.blocks.push(self.items.len(), &item);
        self.items.push(item);
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

/// A host `Write*` call (MS-PSRP 2.2.3.17: `Write1`/`Write2` without a newline, `WriteLine1..3`, colours in
/// `Write2`/`WriteLine3`, and the stream lines) as the stream and item the console shows: Write-Host's text
/// becomes a `HostInformationMessage`, as PowerShell 5+ sends it in an InformationRecord, so it is drawn the same.
pub fn host_write(method: &str, args: &[String]) -> Option<(&'static str, Value)> {
    let arg = |i: usize| args.get(i).and_then(|a| clixml::decode_message(a.as_bytes()).ok());
    let text = |v: Option<Value>| v.as_ref().and_then(|v| v.as_str().map(str::to_owned).or_else(|| v.as_object().and_then(|o| o.to_string.as_deref().map(str::to_owned)))).unwrap_or_default();
    let (stream, no_newline, colors) = match method {
        "Write1" => ("Information", true, false),
        "Write2" => ("Information", true, true),
        "WriteLine1" | "WriteLine2" => ("Information", false, false),
        "WriteLine3" => ("Information", false, true),
        "WriteErrorLine" => return Some(("Error", Value::string(text(arg(0))))),
        "WriteDebugLine" => return Some(("Debug", Value::string(text(arg(0))))),
        "WriteVerboseLine" => return Some(("Verbose", Value::string(text(arg(0))))),
        "WriteWarningLine" => return Some(("Warning", Value::string(text(arg(0))))),
        _ => return None,
    };
    let message = if method == "WriteLine1" { String::new() } else { text(arg(if colors { 2 } else { 0 })) };
    let color = |i: usize| if colors { arg(i).unwrap_or(Value::Nil) } else { Value::Nil };
    let data = Object {
        type_names: Some(vec!["System.Management.Automation.HostInformationMessage".into(), "System.Object".into()].into()),
        to_string: Some(message.as_str().into()),
        adapted: vec![
            Property::new("Message", Value::string(message)),
            Property::new("NoNewLine", Value::Bool(no_newline)),
            Property::new("ForegroundColor", color(0)),
            Property::new("BackgroundColor", color(1)),
        ],
        ..Object::default()
    };
    let record = Object {
        type_names: Some(vec!["System.Management.Automation.InformationRecord".into(), "System.Object".into()].into()),
        extended: vec![Property::new("MessageData", Value::object(data)), Property::new("Source", Value::string("Write-Host"))],
        ..Object::default()
    };
    Some((stream, Value::object(record)))
}

/// The prompt shown before a command, like Enter-PSSession's: `[COMPUTER]: ` and the remote `prompt`
/// function's text (`PS>` until it is known).
pub fn prompt_of(info: Option<&SessionInfo>) -> String {
    if info.is_some_and(|i| i.id == LOCAL_SESSION) {
        return LOCAL_PROMPT.into();
    }
    info.map_or_else(
        || "PS>".to_owned(),
        |i| format!("[{}]: {}", i.computer_name, i.prompt.as_deref().map(str::trim_end).filter(|p| !p.is_empty()).unwrap_or("PS>")),
    )
}

/// `State` as Get-PSSession shows it.
pub fn session_state_label(state: SessionState) -> &'static str {
    match state {
        SessionState::Opening => "Opening",
        SessionState::Opened => "Opened",
        SessionState::Disconnected => "Disconnected",
        SessionState::Broken => "Broken",
        SessionState::Closed => "Closed",
    }
}

/// The connection line while the socket waits to reconnect: `disconnected: retrying in 0.5 s` (tenths, cut; no
/// float formatting, whose exact-precision code would weigh on the WebAssembly).
pub fn retry_text(ms: u32) -> String {
    format!("disconnected: retrying in {}.{} s", ms / 1000, ms % 1000 / 100)
}

/// A pipeline's state in lower case, as the console and the embed page's events name it.
pub fn pipeline_state_name(state: PipelineState) -> &'static str {
    match state {
        PipelineState::Running => "running",
        PipelineState::Stopping => "stopping",
        PipelineState::Stopped => "stopped",
        PipelineState::Completed => "completed",
        PipelineState::Failed => "failed",
    }
}

/// `Availability` as Get-PSSession shows it.
pub fn availability_label(availability: Availability) -> &'static str {
    match availability {
        Availability::Available => "Available",
        Availability::Busy => "Busy",
        Availability::None => "None",
    }
}

/// `Transport` as Get-PSSession shows it (`WSMan` for WinRM).
pub fn transport_label(transport: Transport) -> &'static str {
    match transport {
        Transport::Local => "Local",
        Transport::Ssh => "SSH",
        Transport::Winrm => "WSMan",
    }
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

    /// Where a pipeline's output goes: its Invoke-Command host's, else its console entry.
    fn output_of(&mut self, session: SessionId, pipeline: PipelineId) -> Option<&mut Entry> {
        if self.invoke_host(session, pipeline).is_some() {
            return self.invoke_host(session, pipeline).map(|h| &mut h.output);
        }
        self.entry(session, pipeline)
    }

    fn invocation(&mut self, id: InvocationId) -> Option<&mut Invocation> {
        self.invocations.iter_mut().rev().find(|i| i.id == Some(id))
    }

    /// The session's row.
    pub fn session(&self, id: SessionId) -> Option<&SessionInfo> {
        self.sessions.iter().find(|s| s.id == id)
    }

    /// The prompt a command of this console was typed at.
    fn prompt_for(&self, session: SessionId) -> String {
        if session == LOCAL_SESSION { LOCAL_PROMPT.into() } else { prompt_of(self.session(session)) }
    }

    /// `history`: Invoke-Command runs are brought up to date; on a page that has shown nothing yet, the consoles
    /// are rebuilt from the kept pipelines (their events follow, replayed by the relay).
    fn restore(&mut self, pipelines: Vec<PipelineRecord>, invocations: Vec<InvocationRecord>) {
        let fresh = self.invocations.is_empty() && self.consoles.values().all(|c| c.entries.is_empty());
        for record in invocations {
            let i = match self.invocations.iter().position(|i| i.id == Some(record.invocation)) {
                Some(i) => i,
                None if fresh => {
                    let hosts = record.sessions.iter().map(|(s, name)| InvokeTarget::new(*s, name.clone())).collect();
                    self.invocations.push(Invocation { id: Some(record.invocation), script: record.script.clone(), throttle_limit: Some(record.throttle_limit), hosts, ..Invocation::default() });
                    self.invocations.len() - 1
                }
                None => continue,
            };
            let run = &mut self.invocations[i];
            for host in record.hosts {
                run.finish_host(host);
            }
            run.finished |= record.finished;
        }
        if !fresh {
            // Pipelines Connect re-attached (started elsewhere, or before a relay restart) get their script.
            for p in pipelines {
                let computer = self.session(p.session).map(|i| i.computer_name.clone()).unwrap_or_default();
                let local = p.session == LOCAL_SESSION;
                if let Some(e) = self.entry(p.session, p.pipeline).filter(|e| e.script == CONNECTED_PIPELINE) {
                    if local {
                        e.prompt = LOCAL_PROMPT.into();
                    } else if !p.prompt.is_empty() {
                        e.prompt = format!("[{computer}]: {}", p.prompt);
                    }
                    e.script = p.script;
                }
            }
            return;
        }
        for p in pipelines {
            if let Some(invocation) = p.invocation {
                if let Some(run) = self.invocation(invocation) {
                    let h = run.host(p.session);
                    h.pipeline = Some(p.pipeline);
                    h.output.pipeline = Some(p.pipeline);
                    if h.state.is_none() {
                        h.state = Some(PipelineState::Running);
                    }
                }
                continue;
            }
            let prompt = if p.session == LOCAL_SESSION {
                LOCAL_PROMPT.to_owned()
            } else {
                let Some(computer) = self.session(p.session).map(|i| i.computer_name.clone()) else { continue };
                format!("[{computer}]: {}", p.prompt)
            };
            let console = self.consoles.entry(p.session).or_default();
            let at = console.entries.partition_point(|e| e.pipeline.is_some_and(|q| q < p.pipeline));
            console.entries.insert(at, Entry { prompt, script: p.script.clone(), pipeline: Some(p.pipeline), ..Entry::default() });
            console.history.push(p.script);
            if !p.finished {
                console.running = Some(p.pipeline);
            }
        }
    }

    fn keep_consistent(&mut self) {
        let ids: Vec<SessionId> = self.sessions.iter().map(|s| s.id).collect();
        self.consoles.retain(|id, _| *id == LOCAL_SESSION || ids.contains(id));
        // psgate's prompt is always there: a console whose session went goes back to it.
        if self.active.is_none_or(|a| a != LOCAL_SESSION && !ids.contains(&a)) {
            self.active = Some(LOCAL_SESSION);
        }
        let prompt_used = self.consoles.get(&LOCAL_SESSION).is_some_and(|c| !c.entries.is_empty());
        if self.auto_active && self.active == Some(LOCAL_SESSION) && !prompt_used {
            self.active = ids.first().copied().or(Some(LOCAL_SESSION));
        }
    }

    fn message(&mut self, message: ServerMessage) {
        // A pipeline waiting for a host call's answer writes nothing else: any later event of that pipeline means
        // the call was answered (from another tab, or long ago in a replayed history), so its dialog goes.
        if let ServerMessage::Output { session, pipeline, .. }
        | ServerMessage::Record { session, pipeline, .. }
        | ServerMessage::HostCall { session, pipeline, .. }
        | ServerMessage::PipelineState { session, pipeline, .. } = &message
        {
            let (session, pipeline) = (*session, *pipeline);
            if let Some(h) = self.invoke_host(session, pipeline) {
                h.prompt = None;
            } else if let Some(console) = self.consoles.get_mut(&session)
                && console.prompt.as_ref().is_some_and(|p| p.pipeline == pipeline)
            {
                console.prompt = None;
            }
        }
        match message {
            ServerMessage::Hello { admin, .. } => self.admin = admin,
            ServerMessage::Joined { owner, session, role } => {
                self.joined = Some((owner, role));
                self.active = Some(session.id);
                self.auto_active = false;
                self.consoles.entry(session.id).or_default();
                self.sessions = vec![session];
            }
            ServerMessage::Participants { session, participants } => {
                self.present.insert(session, participants);
            }
            ServerMessage::SessionShares { session, shares } => {
                self.shares.insert(session, shares);
            }
            ServerMessage::SharedSessions { sessions } => self.shared_with_me = sessions,
            ServerMessage::ShareRevoked { owner, session } => self.notices.push(format!("{owner} stopped sharing session {} with you.", session.0)),
            ServerMessage::ApprovalRequested { owner, session, pipeline, command, requested_by, moderators } => {
                if matches!(&self.auth, Auth::LoggedIn(me) if moderators.contains(me)) && !self.approvals.iter().any(|a| a.pipeline == pipeline && a.owner == owner) {
                    self.approvals.push(Approval { owner, session, pipeline, command, requested_by });
                }
            }
            ServerMessage::ApprovalDecided { owner, pipeline, .. } => self.approvals.retain(|a| !(a.pipeline == pipeline && a.owner == owner)),
            ServerMessage::PromptState { entered } => {
                // Enter-PSSession shows the session's console; exit brings psgate's prompt back.
                self.auto_active = false;
                match entered {
                    Some(id) => self.active = Some(id),
                    None if self.entered.is_some() && self.active == self.entered => self.active = Some(LOCAL_SESSION),
                    None => {}
                }
                self.entered = entered;
            }
            ServerMessage::PromptModules { modules } => self.modules = modules,
            ServerMessage::Sessions { sessions } => {
                if self.follow_new
                    && let Some(new) = sessions.iter().find(|s| self.session(s.id).is_none())
                {
                    self.active = Some(new.id);
                    self.follow_new = false;
                }
                self.sessions = sessions;
                self.keep_consistent();
            }
            ServerMessage::SessionChanged { session } => {
                if session.state == SessionState::Closed {
                    self.sessions.retain(|s| s.id != session.id);
                } else if let Some(s) = self.sessions.iter_mut().find(|s| s.id == session.id) {
                    *s = session;
                } else {
                    if std::mem::take(&mut self.follow_new) {
                        self.active = Some(session.id);
                    }
                    self.sessions.push(session);
                    self.sessions.sort_by_key(|s| s.id);
                }
                self.keep_consistent();
            }
            ServerMessage::History { pipelines, invocations } => {
                self.restore(pipelines, invocations);
                if self.auto_active && self.consoles.get(&LOCAL_SESSION).is_some_and(|c| !c.entries.is_empty()) {
                    self.active = Some(LOCAL_SESSION);
                }
            }
            ServerMessage::Completions { session, input, cursor, replacement_index, replacement_length, matches } => {
                if let Some(console) = self.consoles.get_mut(&session) {
                    console.completions = Some(Rc::new(Completions { input, cursor, replacement_index, replacement_length, matches }));
                }
            }
            ServerMessage::TargetRefused { computer_name, code, message } => {
                let message = readable_error(code, &message);
                match self.remote_shells.as_mut().filter(|r| r.shells.is_none() && r.error.is_none() && r.computer_name.eq_ignore_ascii_case(&computer_name)) {
                    // The answer to `get_remote_shells`: the target could not be asked.
                    Some(r) => r.error = Some(message),
                    None => self.notices.push(format!("{computer_name}: {message}")),
                }
            }
            ServerMessage::RemoteShells { computer_name, shells } => self.remote_shells = Some(RemoteShells { computer_name, shells: Some(shells), error: None }),
            ServerMessage::PipelineStarted { session, pipeline } => {
                let prompt = self.prompt_for(session);
                let console = self.consoles.entry(session).or_default();
                let previous = console.running.replace(pipeline);
                // Connect re-attached a pipeline this console shows running: its output goes on there. (An ended one
                // with that id is another pipeline: a restarted relay numbers them from 1 again.)
                if console.entries.iter().any(|e| e.pipeline == Some(pipeline) && e.state.is_none_or(|s| !s.is_terminal())) {
                    return;
                }
                // Another pipeline of the session while this console shows one running (a session runs one at a time):
                // the relay that held it stopped, and the relay now holding the session re-attached the same command
                // under another id. Its output goes on in the entry that showed it running.
                if !console.starting
                    && let Some(old) = previous.filter(|old| *old != pipeline)
                    && let Some(e) = console.entries.iter_mut().find(|e| e.pipeline == Some(old) && e.state.is_none_or(|s| !s.is_terminal()))
                {
                    e.pipeline = Some(pipeline);
                    return;
                }
                match console.entries.last_mut() {
                    Some(e) if console.starting && e.pipeline.is_none() => e.pipeline = Some(pipeline),
                    // Not this page's command: Connect re-attached it, or another tab ran it.
                    _ => {
                        console.entries.push(Entry { prompt, script: CONNECTED_PIPELINE.into(), pipeline: Some(pipeline), ..Entry::default() });
                        self.history_wanted += 1;
                    }
                }
                console.starting = false;
            }
            ServerMessage::Output { session, pipeline, clixml, .. } => {
                if let Some(e) = self.output_of(session, pipeline) {
                    e.push_clixml(None, &clixml);
                }
            }
            ServerMessage::Record { session, pipeline, kind, clixml, .. } => {
                if let Some(e) = self.output_of(session, pipeline) {
                    e.push_clixml(Some(stream_of(kind)), &clixml);
                }
            }
            ServerMessage::HostCall { session, pipeline, call_id, method, args, .. } => {
                if call_id < 0 && method == "SetBufferContents1" {
                    // Clear-Host: the console keeps only the command that cleared it.
                    if let Some(console) = self.consoles.get_mut(&session) {
                        console.entries.retain(|e| e.pipeline == Some(pipeline));
                    }
                } else if call_id < 0 {
                    // Write-Host and friends, as the host shows them.
                    if let Some((stream, value)) = host_write(&method, &args)
                        && let Some(e) = self.output_of(session, pipeline)
                    {
                        e.push(Some(stream), value);
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
            // The relay no longer keeps a pipeline this page re-attached after a reconnect (the relay that held it
            // stopped; the one holding the session now has re-attached the command under another id, and says so
            // with `pipeline_started`), or that a Stop came too late for: nothing to tell the user.
            ServerMessage::Error { code: ErrorCode::UnknownPipeline, .. } => {}
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
                    _ => match self.remote_shells.as_mut().filter(|r| r.shells.is_none() && r.error.is_none()) {
                        // The answer to `get_remote_shells`.
                        Some(r) if !refused_run => r.error = Some(readable_error(code, &message)),
                        _ => self.notices.push(readable_error(code, &message)),
                    },
                }
            }
            ServerMessage::InvokeStarted { invocation, sessions, throttle_limit, script } => {
                if self.invocations.iter().any(|i| i.id == Some(invocation)) {
                    return; // already known from `history`
                }
                let names: Vec<(SessionId, String)> = sessions.iter().map(|&id| (id, self.session(id).map(|i| i.computer_name.clone()).unwrap_or_default())).collect();
                // This page's own run, else one started elsewhere (another tab of the user).
                let mine = self.invocations.iter().position(|i| i.id.is_none() && i.refused.is_none() && (script.is_empty() || i.script == script));
                let run = match mine {
                    Some(i) => &mut self.invocations[i],
                    None => {
                        self.invocations.push(Invocation { script, ..Invocation::default() });
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
            Action::AskedSessions => {
                s.follow_new = true;
                s.auto_active = false;
            }
            Action::LoggedIn(user) => {
                s.auth = Auth::LoggedIn(user);
                if s.active.is_none() {
                    s.active = Some(LOCAL_SESSION);
                    s.auto_active = true;
                }
            }
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
            // The relay ended the login (idle, expired, logged out elsewhere): the login page, with the reason.
            Action::Socket(Event::LoggedOut(reason)) => s = State { auth: Auth::LoggedOut(Some(reason)), ..State::default() },
            // A joined console is over: said, the session gone from the page.
            Action::Socket(Event::Ended(reason)) => {
                s.notices.push(reason);
                s.sessions.clear();
                s.approvals.clear();
                s.keep_consistent();
            }
            Action::Select(id) => {
                s.active = Some(id);
                s.auto_active = false;
            }
            Action::Ran(session, script) => {
                s.auto_active = false;
                let prompt = s.prompt_for(session);
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
            Action::AskedShells(computer_name) => s.remote_shells = Some(RemoteShells { computer_name, ..RemoteShells::default() }),
            Action::CloseShells => s.remote_shells = None,
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
    use super::*;
    use crate::render::blocks::Block;

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
            prompt: None,
            configuration_name: None,
            instance_id: None,
            can_disconnect: false,
            idle_left_secs: None,
            run_left_secs: None,
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
            Action::AskedSessions,
            msg(ServerMessage::Sessions { sessions: vec![info(1, SessionState::Opened)] }),
            Action::Ran(S, "Get-Process".into()),
            msg(ServerMessage::PipelineStarted { session: S, pipeline: P }),
        ]
    }

    #[test]
    fn psgate_s_prompt_has_the_console_until_the_panel_makes_a_session() {
        let s = run([Action::LoggedIn("demo".into())]);
        assert_eq!(s.active, Some(LOCAL_SESSION));
        // A page that comes back to the user's sessions, the prompt unused, shows the first session's console.
        let back = s.clone().reduce(msg(ServerMessage::Sessions { sessions: vec![info(1, SessionState::Opened)] }));
        assert_eq!(back.active, Some(S));
        // A session typed at the prompt leaves the prompt where it is.
        let s = s.reduce(Action::Ran(LOCAL_SESSION, "New-PSSession".into()));
        let s = s.reduce(msg(ServerMessage::PipelineStarted { session: LOCAL_SESSION, pipeline: P }));
        let s = s.reduce(msg(ServerMessage::SessionChanged { session: info(1, SessionState::Opening) }));
        assert_eq!(s.active, Some(LOCAL_SESSION));
        assert_eq!(s.consoles[&LOCAL_SESSION].entries[0].prompt, "PS psgate>");
        // Enter-PSSession shows the session's console; exit brings the prompt back.
        let s = s.reduce(msg(ServerMessage::PromptState { entered: Some(S) }));
        assert_eq!((s.active, s.entered), (Some(S), Some(S)));
        let s = s.reduce(msg(ServerMessage::PromptState { entered: None }));
        assert_eq!((s.active, s.entered), (Some(LOCAL_SESSION), None));
        // Clear-Host keeps only the command that cleared.
        let s = s.reduce(Action::Ran(LOCAL_SESSION, "cls".into()));
        let s = s.reduce(msg(ServerMessage::PipelineStarted { session: LOCAL_SESSION, pipeline: PipelineId(9) }));
        let s = s.reduce(msg(ServerMessage::HostCall { session: LOCAL_SESSION, pipeline: PipelineId(9), seq: 1, call_id: -1, method: "SetBufferContents1".into(), args: vec![] }));
        assert_eq!(s.consoles[&LOCAL_SESSION].entries.iter().map(|e| e.script.as_str()).collect::<Vec<_>>(), ["cls"]);
        assert!(is_exit_line(" Exit-PSSession ") && is_exit_line("exit;") && !is_exit_line("exit 1"));
    }

    #[test]
    fn the_prompts_lines_come_back_from_history() {
        let record = PipelineRecord { session: LOCAL_SESSION, pipeline: P, script: "$s = New-PSSession".into(), prompt: "PS psgate>".into(), invocation: None, finished: true };
        let s = run([Action::LoggedIn("demo".into()), msg(ServerMessage::History { pipelines: vec![record], invocations: vec![] })]);
        let e = &s.consoles[&LOCAL_SESSION].entries[0];
        assert_eq!((e.prompt.as_str(), e.script.as_str()), ("PS psgate>", "$s = New-PSSession"));
    }

    #[test]
    fn a_session_asked_from_the_panel_gets_the_console_and_its_prompt() {
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
        let Block::Objects(t) = &e.blocks[0] else { panic!("a table: {:?}", e.blocks) };
        assert_eq!(t.rows.len(), 2);
        assert_eq!(t.row_cells(0), ["svchost", "4"]);
        let Block::Text(w) = &e.blocks[1] else { panic!("a warning: {:?}", e.blocks) };
        assert_eq!(w.text(), "WARNING: careful");
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
        assert_eq!(t.text(), "hello");
    }

    #[test]
    fn write_host_colours_and_no_newline_from_host_calls_are_kept() {
        let red = r#"<Obj><TN><T>System.ConsoleColor</T><T>System.Enum</T></TN><ToString>Red</ToString><I32>12</I32></Obj>"#;
        let blue = r#"<Obj><TN><T>System.ConsoleColor</T><T>System.Enum</T></TN><ToString>DarkBlue</ToString><I32>1</I32></Obj>"#;
        let mut actions = started();
        for (seq, method, args) in [
            (1, "Write2", vec![red.to_owned(), blue.to_owned(), "<S>alert: </S>".to_owned()]),
            (2, "WriteLine3", vec![red.to_owned(), blue.to_owned(), "<S>disk full</S>".to_owned()]),
            (3, "WriteWarningLine", vec!["<S>careful</S>".to_owned()]),
            (4, "SetShouldExit", vec!["<I32>1</I32>".to_owned()]),
        ] {
            actions.push(msg(ServerMessage::HostCall { session: S, pipeline: P, seq, call_id: -100 - seq as i64, method: method.into(), args }));
        }
        let s = run(actions);
        let blocks = &s.consoles[&S].entries[0].blocks;
        let Block::Text(t) = &blocks[0] else { panic!("{blocks:?}") };
        assert_eq!(t.text(), "alert: disk full", "Write2 leaves the line open for the next write");
        let line = &t.slice(0..1)[0];
        assert!(line.spans.iter().all(|s| s.style.fg.is_some() && s.style.bg.is_some()), "{line:?}");
        assert_eq!(host_write("WriteWarningLine", &["<S>careful</S>".into()]).map(|(s, v)| (s, v.as_str().map(str::to_owned))), Some(("Warning", Some("careful".into()))));
        assert!(host_write("SetShouldExit", &[]).is_none(), "not a write");
    }

    #[test]
    fn a_hundred_thousand_rows_are_laid_out_in_linear_time() {
        // As the reducer does: every message clones the state and pushes onto the clone while the old state lives.
        let value = clixml::decode_message(br#"<Obj RefId="0"><MS><I32 N="Index">1</I32><S N="Name">object 1</S><B N="Even">false</B></MS></Obj>"#).expect("decodes");
        let n = 100_000;
        let mut entry = Entry::default();
        for _ in 0..n {
            let old = entry.clone();
            entry.push(None, value.clone());
            drop(old);
        }
        let Block::Objects(t) = &entry.blocks[0] else { panic!("a table") };
        assert_eq!((entry.items.len(), entry.blocks.len(), t.rows.len()), (n, 1, n));
        assert_eq!(t.row_cells(n - 1), ["1", "object 1", "False"]);
        let per_item = entry.blocks.work() as f64 / n as f64;
        assert!(per_item < 4.0, "{per_item} units of layout work per item: not linear");
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
        // The console goes back to psgate's prompt, which is always there.
        assert_eq!(s.active, Some(LOCAL_SESSION));
        let s = s.reduce(msg(ServerMessage::Sessions { sessions: vec![] }));
        assert_eq!(s.active, Some(LOCAL_SESSION));
    }

    #[test]
    fn a_joined_console_shows_the_shared_session_who_is_present_and_what_waits_for_this_moderator() {
        use psgate_shared::api::{Share, ShareRole};
        let s = run([
            Action::LoggedIn("root".into()),
            msg(ServerMessage::Joined { owner: "alice".into(), session: info(3, SessionState::Opened), role: ShareRole::Observer }),
            msg(ServerMessage::Participants { session: SessionId(3), participants: vec![Share { user: "alice".into(), role: None }, Share { user: "root".into(), role: Some(ShareRole::Observer) }] }),
            msg(ServerMessage::ApprovalRequested { owner: "alice".into(), session: SessionId(3), pipeline: PipelineId(9), command: "Stop-Service x".into(), requested_by: "alice".into(), moderators: vec!["root".into()] }),
            msg(ServerMessage::ApprovalRequested { owner: "alice".into(), session: SessionId(3), pipeline: PipelineId(10), command: "y".into(), requested_by: "alice".into(), moderators: vec!["ops".into()] }),
        ]);
        assert_eq!(s.joined, Some(("alice".to_owned(), ShareRole::Observer)));
        assert_eq!((s.active, s.sessions.len()), (Some(SessionId(3)), 1), "the shared session's console");
        assert_eq!(s.present[&SessionId(3)].len(), 2);
        assert_eq!(s.approvals.iter().map(|a| a.pipeline).collect::<Vec<_>>(), [PipelineId(9)], "only what this user moderates");
        let s = s.reduce(msg(ServerMessage::ApprovalDecided { owner: "alice".into(), session: SessionId(3), pipeline: PipelineId(9), approved: true, by: "root".into(), reason: None }));
        assert!(s.approvals.is_empty());
        // Revoked: said, and the session leaves the page.
        let s = s.reduce(msg(ServerMessage::ShareRevoked { owner: "alice".into(), session: SessionId(3) }));
        let s = s.reduce(Action::Socket(Event::Ended("alice stopped sharing session 3 with you".into())));
        assert!(s.sessions.is_empty());
        assert_eq!(s.notices, ["alice stopped sharing session 3 with you.", "alice stopped sharing session 3 with you"]);
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
            msg(ServerMessage::InvokeStarted { invocation: inv, sessions: vec![S, s2, SessionId(3)], throttle_limit: 32, script: "Get-Process".into() }),
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
            msg(ServerMessage::InvokeStarted { invocation: inv, sessions: vec![S, s2, SessionId(3)], throttle_limit: 32, script: "Get-Process".into() }),
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
    fn the_prompt_is_the_remote_prompt_functions_text() {
        let mut i = info(1, SessionState::Opened);
        assert_eq!(prompt_of(Some(&i)), "[localhost]: PS>", "until the target answered");
        i.prompt = Some("PS C:\\Users\\me> ".into());
        assert_eq!(prompt_of(Some(&i)), "[localhost]: PS C:\\Users\\me>");
        let s = run(started().into_iter().chain([msg(ServerMessage::SessionChanged { session: i.clone() })]));
        assert_eq!(prompt_of(s.session(SessionId(1))), "[localhost]: PS C:\\Users\\me>");
    }

    fn completions(input: &str, cursor: u32, index: u32, length: u32, texts: &[&str]) -> ServerMessage {
        let matches = texts.iter().map(|t| Completion { text: (*t).into(), list_text: (*t).into(), result_type: "Command".into(), tooltip: String::new() }).collect();
        ServerMessage::Completions { session: SessionId(1), input: input.into(), cursor, replacement_index: index, replacement_length: length, matches }
    }

    #[test]
    fn completions_replace_the_range_they_name() {
        let s = run(started().into_iter().chain([msg(completions("Get-Pro | Sort", 7, 0, 7, &["Get-Process", "Get-ProcessMitigation"]))]));
        let c = s.consoles[&SessionId(1)].completions.clone().expect("kept for the console");
        assert_eq!(c.apply(0), Some(("Get-Process | Sort".into(), 11)));
        assert_eq!(c.apply(1), Some(("Get-ProcessMitigation | Sort".into(), 21)));
        assert_eq!(c.apply(2), None);
        // Offsets count UTF-16 code units, as PowerShell and the textarea do: "é" is one, "😀" two.
        let c = Completions { input: "😀é cd Do".into(), cursor: 9, replacement_index: 7, replacement_length: 2, matches: vec![Completion { text: ".\\Documents".into(), list_text: "Documents".into(), result_type: "ProviderContainer".into(), tooltip: String::new() }] };
        assert_eq!(c.apply(0), Some(("😀é cd .\\Documents".into(), 18)));
        // A range past the end is clamped, never a panic.
        let c = Completions { replacement_index: 99, replacement_length: 5, ..c };
        assert_eq!(c.apply(0).map(|(s, _)| s), Some("😀é cd Do.\\Documents".into()));
    }

    #[test]
    fn a_replayed_history_rebuilds_the_console_without_old_dialogs() {
        let restored = run([
            Action::LoggedIn("demo".into()),
            msg(ServerMessage::Sessions { sessions: vec![info(1, SessionState::Opened)] }),
            msg(ServerMessage::History {
                pipelines: vec![
                    PipelineRecord { session: S, pipeline: PipelineId(4), script: "Read-Host".into(), prompt: "PS C:\\>".into(), invocation: None, finished: true },
                    PipelineRecord { session: S, pipeline: PipelineId(7), script: "Test-Long".into(), prompt: "PS C:\\>".into(), invocation: None, finished: false },
                ],
                invocations: vec![],
            }),
            // The replay: a Read-Host answered long ago, then its echo and end.
            msg(ServerMessage::HostCall { session: S, pipeline: PipelineId(4), seq: 1, call_id: 1, method: "ReadLine".into(), args: vec![] }),
            msg(ServerMessage::Output { session: S, pipeline: PipelineId(4), seq: 2, clixml: "<S>typed</S>".into() }),
            msg(ServerMessage::PipelineState { session: S, pipeline: PipelineId(4), seq: 3, state: PipelineState::Completed, error: None }),
        ]);
        let console = &restored.consoles[&S];
        assert_eq!(console.entries.iter().map(|e| (e.prompt.as_str(), e.script.as_str())).collect::<Vec<_>>(), [("[localhost]: PS C:\\>", "Read-Host"), ("[localhost]: PS C:\\>", "Test-Long")]);
        assert_eq!(console.entries[0].items.len(), 1, "the echo is back");
        assert!(console.prompt.is_none(), "an answered call shows no dialog");
        assert_eq!(console.running, Some(PipelineId(7)), "Ctrl+C can stop the running one");
        assert_eq!(console.history, ["Read-Host", "Test-Long"]);
        // A later history (a reconnect) does not add entries twice.
        let again = restored.reduce(msg(ServerMessage::History {
            pipelines: vec![PipelineRecord { session: S, pipeline: PipelineId(4), script: "Read-Host".into(), prompt: String::new(), invocation: None, finished: true }],
            invocations: vec![],
        }));
        assert_eq!(again.consoles[&S].entries.len(), 2);
    }

    fn winrm(id: u64, state: SessionState) -> SessionInfo {
        SessionInfo { transport: Transport::Winrm, configuration_name: Some("Microsoft.PowerShell".into()), instance_id: Some(format!("SHELL-{id}")), can_disconnect: true, ..info(id, state) }
    }

    #[test]
    fn a_disconnected_session_keeps_its_console_and_connect_goes_on_with_the_same_pipeline() {
        let mut actions = vec![
            Action::LoggedIn("demo".into()),
            msg(ServerMessage::Sessions { sessions: vec![winrm(1, SessionState::Opened)] }),
            Action::Ran(S, "Test-Long".into()),
            msg(ServerMessage::PipelineStarted { session: S, pipeline: P }),
            msg(ServerMessage::Output { session: S, pipeline: P, seq: 1, clixml: "<S>tick 1</S>".into() }),
        ];
        actions.push(msg(ServerMessage::SessionChanged { session: winrm(1, SessionState::Disconnected) }));
        let s = run(actions);
        assert_eq!(s.session(S).map(|i| i.state), Some(SessionState::Disconnected));
        assert_eq!(s.consoles[&S].entries[0].items.len(), 1, "the output stays");
        assert_eq!(s.consoles[&S].running, Some(P), "the remote pipeline runs on");
        // Connect: the relay re-attaches the pipeline; what it wrote meanwhile goes to the same entry.
        let s = [
            msg(ServerMessage::SessionChanged { session: winrm(1, SessionState::Opened) }),
            msg(ServerMessage::PipelineStarted { session: S, pipeline: P }),
            msg(ServerMessage::Output { session: S, pipeline: P, seq: 2, clixml: "<S>tick 2</S>".into() }),
        ]
        .into_iter()
        .fold(s, Reducible::reduce);
        let c = &s.consoles[&S];
        assert_eq!(c.entries.len(), 1);
        assert_eq!((c.entries[0].script.as_str(), c.entries[0].items.len(), c.running), ("Test-Long", 2, Some(P)));
        assert_eq!(s.history_wanted, 0, "nothing to ask");
    }

    #[test]
    fn a_connected_pipeline_this_page_did_not_start_gets_an_entry_and_its_script_from_history() {
        let p2 = PipelineId(9);
        let s = run([
            Action::LoggedIn("demo".into()),
            msg(ServerMessage::Sessions { sessions: vec![winrm(1, SessionState::Opened)] }),
            Action::Ran(S, "Get-Date".into()),
            msg(ServerMessage::PipelineStarted { session: S, pipeline: P }),
            msg(ServerMessage::PipelineState { session: S, pipeline: P, seq: 1, state: PipelineState::Completed, error: None }),
            // Connect-PSSession in another browser, or after a relay restart: a pipeline never seen here.
            msg(ServerMessage::PipelineStarted { session: S, pipeline: p2 }),
            msg(ServerMessage::Output { session: S, pipeline: p2, seq: 1, clixml: "<S>tick 40</S>".into() }),
        ]);
        let c = &s.consoles[&S];
        assert_eq!(c.entries.iter().map(|e| e.script.as_str()).collect::<Vec<_>>(), ["Get-Date", CONNECTED_PIPELINE]);
        assert_eq!((c.entries[1].pipeline, c.entries[1].items.len(), c.running), (Some(p2), 1, Some(p2)));
        assert_eq!(s.history_wanted, 1, "the page asks the relay's history for its script");
        let s = s.reduce(msg(ServerMessage::History {
            pipelines: vec![
                PipelineRecord { session: S, pipeline: P, script: "Get-Date".into(), prompt: "PS C:\\>".into(), invocation: None, finished: true },
                PipelineRecord { session: S, pipeline: p2, script: "Test-Long -Seconds 30".into(), prompt: "PS C:\\Temp>".into(), invocation: None, finished: false },
            ],
            invocations: vec![],
        }));
        let c = &s.consoles[&S];
        assert_eq!(c.entries.len(), 2, "nothing added twice");
        assert_eq!((c.entries[1].prompt.as_str(), c.entries[1].script.as_str()), ("[localhost]: PS C:\\Temp>", "Test-Long -Seconds 30"));
        assert_eq!(c.entries[0].prompt, "[localhost]: PS>", "the page's own entries are left alone");
        // The relay holding the session stopped while Test-Long ran; the relay now holding it (or the same one,
        // restarted, numbering pipelines from 1 again) re-attached it under another id: its output goes on in the
        // entry that showed it running, not in the ended entry that had the id before.
        let s = s.reduce(msg(ServerMessage::PipelineStarted { session: S, pipeline: P }));
        let c = &s.consoles[&S];
        assert_eq!((c.entries.len(), c.entries[1].pipeline, c.running), (2, Some(P), Some(P)));
        let s = s.reduce(msg(ServerMessage::Output { session: S, pipeline: P, seq: 1, clixml: "<S>tick 7</S>".into() }));
        assert_eq!((s.consoles[&S].entries[0].items.len(), s.consoles[&S].entries[1].items.len()), (0, 2));
        // Once it has ended, a later pipeline of the session is a new entry.
        let s = s.reduce(msg(ServerMessage::PipelineState { session: S, pipeline: P, seq: 2, state: PipelineState::Completed, error: None }));
        let s = s.reduce(msg(ServerMessage::PipelineStarted { session: S, pipeline: PipelineId(10) }));
        assert_eq!(s.consoles[&S].entries.len(), 3);
    }

    #[test]
    fn remote_shells_are_listed_and_their_errors_shown_there() {
        let shell = RemoteShell {
            shell_id: "2B6B8C2F".into(),
            name: "Runspace1".into(),
            state: "Disconnected".into(),
            owner: "PSGATE\\ada".into(),
            configuration_name: "Microsoft.PowerShell".into(),
            client_ip: "127.0.0.1".into(),
            idle_timeout_secs: Some(7200),
            commands: 1,
            session: None,
        };
        let s = run([Action::AskedShells("srv1".into())]);
        assert_eq!(s.remote_shells, Some(RemoteShells { computer_name: "srv1".into(), shells: None, error: None }));
        let s = s.reduce(msg(ServerMessage::RemoteShells { computer_name: "srv1".into(), shells: vec![shell.clone()] }));
        assert_eq!(s.remote_shells.as_ref().and_then(|r| r.shells.clone()), Some(vec![shell]));
        assert!(s.reduce(Action::CloseShells).remote_shells.is_none());
        for refusal in [
            ServerMessage::error(ErrorCode::AuthenticationFailed, "the target refused PSGATE\\ada"),
            ServerMessage::TargetRefused { computer_name: "SRV1".into(), code: ErrorCode::AuthenticationFailed, message: "the target refused PSGATE\\ada".into() },
        ] {
            let s = run([Action::AskedShells("srv1".into()), msg(refusal)]);
            assert_eq!(s.remote_shells.as_ref().and_then(|r| r.error.as_deref()), Some("authentication failed: the target refused PSGATE\\ada"));
            assert!(s.notices.is_empty());
        }
        let s = run([Action::AskedShells("srv1".into()), msg(ServerMessage::TargetRefused { computer_name: "srv2".into(), code: ErrorCode::TargetNotAllowed, message: "not allowed".into() })]);
        assert_eq!((s.notices.as_slice(), s.remote_shells.as_ref().and_then(|r| r.error.as_deref())), (&["srv2: not allowed".to_owned()][..], None), "another computer's refusal");
        let s = s.reduce(msg(ServerMessage::error(ErrorCode::AuthenticationFailed, "the target refused PSGATE\\ada")));
        // Once answered, a later error is a notice again.
        let s = s.reduce(msg(ServerMessage::error(ErrorCode::NotSupported, "Disconnect-PSSession needs a WinRM session")));
        assert_eq!(s.notices, ["srv2: not allowed", "not supported: Disconnect-PSSession needs a WinRM session"]);
    }

    #[test]
    fn the_new_error_codes_read_as_what_happened() {
        let s = run([msg(ServerMessage::TargetRefused { computer_name: "srv1".into(), code: ErrorCode::QuotaExceeded, message: "MaxShellsPerUser: the user has 5 shells".into() })]);
        assert_eq!(s.notices, ["srv1: quota exceeded: MaxShellsPerUser: the user has 5 shells"]);
        assert_eq!(readable_error(ErrorCode::TargetFailed, "connection refused"), "the target failed: connection refused");
        assert_eq!(readable_error(ErrorCode::AuthenticationFailed, ""), "authentication failed");
        assert_eq!(readable_error(ErrorCode::TargetNotAllowed, "not allowed"), "not allowed");
        assert_eq!((session_state_label(SessionState::Disconnected), availability_label(Availability::None), transport_label(Transport::Winrm)), ("Disconnected", "None", "WSMan"));
    }

    #[test]
    fn the_retry_delay_is_shown_in_tenths_of_a_second() {
        assert_eq!([250, 500, 8000, 12_345].map(retry_text), ["disconnected: retrying in 0.2 s", "disconnected: retrying in 0.5 s", "disconnected: retrying in 8.0 s", "disconnected: retrying in 12.3 s"]);
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
