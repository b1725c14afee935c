//! A fake remoting side and console for the language tests: sessions open at once (computers named `bad…` refuse
//! the credentials, `blocked…` are outside the allow-list, `fail…` fail every command), and every run answers with
//! one object per session saying what it was sent.

#![allow(dead_code)]

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use psgate_lang::{Host, Invocation, RemoteError, RemoteEvent, Remoting, RunId, Runspace};
use psgate_shared::api::{Availability, ErrorCode, HostAnswer, OutputBufferingMode, PipelineId, PipelineState, RecordKind, RemoteShell, SessionId, SessionInfo, SessionState, Target, Transport};
use psgate_shared::clixml::Value;
use psgate_shared::psrp::host::HostMethod;
use psgate_shared::psrp::messages::{ErrorRecordView, PipelineSpec};

#[derive(Default)]
pub struct Fake {
    pub sessions: Vec<SessionInfo>,
    pub targets: Vec<Target>,
    next: u64,
    runs: HashMap<u64, VecDeque<RemoteEvent>>,
    next_run: u64,
    /// What was asked, in order.
    pub log: Vec<String>,
    /// Shells `remote_shells` lists.
    pub shells: Vec<RemoteShell>,
    pub answers: Vec<(SessionId, i64, HostAnswer)>,
    /// Computers the fake serves over its local transport.
    pub local: Vec<String>,
    /// What GET_COMMAND_METADATA finds (every session has them).
    pub commands: Vec<Value>,
    /// What a remote Get-Help answers (none: it fails as on a restricted endpoint).
    pub help: Option<Value>,
    /// What `Get-Command -ShowCommandInfo` answers.
    pub show: Vec<Value>,
    /// What `Get-FormatData` answers.
    pub format_data: Vec<Value>,
    /// The sessions' APPLICATION_PRIVATE_DATA.
    pub private_data: Option<Value>,
    /// WinRM configurations on the WSMan: drive: `(computer/Container/…/Setting, value, source)`.
    pub wsman: Vec<(String, String, Option<String>)>,
}

/// A command as `Get-Command -ShowCommandInfo` sends it: one set of `(name, mandatory, position, enum values)`.
pub fn show_command_info(name: &str, params: &[(&str, bool, Option<i32>, &[&str])]) -> Value {
    let v = psgate_lang::values::object;
    let t = Value::string;
    let parameters = params
        .iter()
        .map(|(n, mandatory, position, enums)| {
            let ty = v(
                &["System.Management.Automation.PSCustomObject"],
                None,
                vec![
                    ("FullName", t(if enums.is_empty() { "System.String" } else { "Microsoft.ActiveDirectory.Management.ADSearchScope" })),
                    ("IsEnum", Value::Bool(!enums.is_empty())),
                    ("IsArray", Value::Bool(false)),
                    ("EnumValues", psgate_lang::values::array(enums.iter().map(|e| t(e)).collect())),
                ],
            );
            v(
                &["System.Management.Automation.PSCustomObject"],
                None,
                vec![
                    ("Name", t(n)),
                    ("IsMandatory", Value::Bool(*mandatory)),
                    ("ValueFromPipeline", Value::Bool(false)),
                    ("Position", Value::I32(position.unwrap_or(i32::MIN))),
                    ("ParameterType", ty),
                    ("HasParameterSet", Value::Bool(false)),
                    ("ValidParamSetValues", psgate_lang::values::array(Vec::new())),
                ],
            )
        })
        .collect();
    let set = v(&["System.Management.Automation.PSCustomObject"], None, vec![("Name", t("__AllParameterSets")), ("IsDefault", Value::Bool(true)), ("Parameters", psgate_lang::values::array(parameters))]);
    v(&["System.Management.Automation.PSCustomObject"], None, vec![("Name", t(name)), ("ModuleName", t("ActiveDirectory")), ("ParameterSets", psgate_lang::values::array(vec![set]))])
}

/// A command's metadata as a server sends it: `params` are `(name, type, switch)`.
pub fn command_metadata(name: &str, module: &str, command_type: &str, resolved: Option<&str>, params: &[(&str, &str, bool)]) -> Value {
    use psgate_shared::clixml::{Content, Object};
    let entries = params
        .iter()
        .map(|(n, t, switch)| {
            let meta = psgate_lang::values::object(
                &["Deserialized.System.Management.Automation.ParameterMetadata"],
                None,
                vec![("Name", Value::string(*n)), ("ParameterType", Value::string(*t)), ("Aliases", psgate_lang::values::array(Vec::new())), ("SwitchParameter", Value::Bool(*switch)), ("IsDynamic", Value::Bool(false))],
            );
            (Value::string(*n), meta)
        })
        .collect();
    let parameters = Value::object(Object { content: Content::Dict(entries), ..Object::default() });
    let command_type = psgate_lang::values::object(&["System.Management.Automation.CommandTypes"], Some(command_type.to_owned()), vec![]);
    psgate_lang::values::object(
        &["Selected.System.Management.Automation.CmdletInfo"],
        None,
        vec![
            ("Name", Value::string(name)),
            ("Namespace", Value::string(module)),
            ("HelpUri", Value::string("https://go.microsoft.com/fwlink/?LinkId=301409")),
            ("CommandType", command_type),
            ("ResolvedCommandName", resolved.map_or(Value::Nil, Value::string)),
            ("OutputType", psgate_lang::values::array(Vec::new())),
            ("Parameters", parameters),
        ],
    )
}

/// A pipeline as text: `Get-Process -Name bits` for Command objects, `script{…} args[…]` for script text.
pub fn describe(p: &PipelineSpec) -> String {
    let parts: Vec<String> = p
        .commands
        .iter()
        .map(|c| {
            let mut s = if c.is_script { format!("script{{{}}}", c.text) } else { c.text.clone() };
            for (name, value) in &c.parameters {
                match (name, value) {
                    (Some(n), Value::Nil) => s.push_str(&format!(" {n}")),
                    (Some(n), v) => s.push_str(&format!(" {n}{}", psgate_lang::values::text(v))),
                    (None, v) => s.push_str(&format!(" [{}]", psgate_lang::values::text(v))),
                }
            }
            s
        })
        .collect();
    parts.join(" | ")
}

impl Fake {
    fn add(&mut self, t: &Target, state: SessionState) -> SessionInfo {
        self.next += 1;
        let id = SessionId(self.next);
        let winrm = t.transport == Transport::Winrm;
        let info = SessionInfo {
            id,
            name: t.name.clone().unwrap_or_else(|| format!("Runspace{}", id.0)),
            computer_name: t.computer_name.clone(),
            transport: t.transport,
            state,
            availability: if state == SessionState::Opened { Availability::Available } else { Availability::None },
            reason: None,
            prompt: None,
            configuration_name: winrm.then(|| t.configuration_name.clone().unwrap_or_else(|| "Microsoft.PowerShell".into())),
            instance_id: t.shell_id.clone().or_else(|| winrm.then(|| format!("00000000-0000-0000-0000-{:012}", id.0))),
            can_disconnect: winrm,
            idle_left_secs: None,
            run_left_secs: None,
        };
        self.sessions.push(info.clone());
        info
    }
}

impl Remoting for Fake {
    fn sessions(&mut self) -> Vec<SessionInfo> {
        self.sessions.clone()
    }

    fn open(&mut self, targets: Vec<Target>) -> Vec<Result<SessionInfo, RemoteError>> {
        targets
            .into_iter()
            .map(|t| {
                let who = t.user.clone().map(|u| format!(" user={u}")).unwrap_or_default();
                let pw = if t.password.is_some() { " password" } else { "" };
                self.log.push(format!("open {:?} {}{who}{pw}", t.transport, t.computer_name).to_lowercase());
                self.targets.push(t.clone());
                if t.computer_name.starts_with("bad") {
                    return Err(RemoteError::new(ErrorCode::AuthenticationFailed, "Access is denied."));
                }
                if t.computer_name.starts_with("blocked") {
                    return Err(RemoteError::new(ErrorCode::TargetNotAllowed, format!("{}:5985 over WinRM is not in this relay's allow-list", t.computer_name)));
                }
                Ok(self.add(&t, SessionState::Opened))
            })
            .collect()
    }

    fn remove(&mut self, ids: &[SessionId]) -> Result<(), RemoteError> {
        self.log.push(format!("remove {:?}", ids.iter().map(|i| i.0).collect::<Vec<_>>()));
        self.sessions.retain(|s| !ids.contains(&s.id));
        Ok(())
    }

    fn disconnect(&mut self, ids: &[SessionId], idle: Option<u32>, mode: Option<OutputBufferingMode>) -> Vec<Result<SessionInfo, RemoteError>> {
        self.log.push(format!("disconnect {:?} {idle:?} {mode:?}", ids.iter().map(|i| i.0).collect::<Vec<_>>()));
        ids.iter()
            .map(|id| {
                let s = self.sessions.iter_mut().find(|s| s.id == *id).ok_or_else(|| RemoteError::new(ErrorCode::UnknownSession, "gone"))?;
                if !s.can_disconnect {
                    return Err(RemoteError::new(ErrorCode::NotSupported, "only WinRM sessions can be disconnected"));
                }
                s.state = SessionState::Disconnected;
                s.availability = Availability::None;
                Ok(s.clone())
            })
            .collect()
    }

    fn connect(&mut self, ids: &[SessionId]) -> Vec<Result<SessionInfo, RemoteError>> {
        self.log.push(format!("connect {:?}", ids.iter().map(|i| i.0).collect::<Vec<_>>()));
        ids.iter()
            .map(|id| {
                let s = self.sessions.iter_mut().find(|s| s.id == *id).ok_or_else(|| RemoteError::new(ErrorCode::UnknownSession, "gone"))?;
                s.state = SessionState::Opened;
                s.availability = Availability::Available;
                Ok(s.clone())
            })
            .collect()
    }

    fn remote_shells(&mut self, target: &Target) -> Result<Vec<RemoteShell>, RemoteError> {
        self.log.push(format!("shells {}", target.computer_name));
        Ok(self.shells.clone())
    }

    fn start(&mut self, invocation: Invocation, tag: bool) -> Result<RunId, RemoteError> {
        let what = describe(&invocation.pipeline);
        let input = match &invocation.input {
            Some(items) => format!(" input[{}]", items.iter().map(psgate_lang::values::text).collect::<Vec<_>>().join(", ")),
            None => String::new(),
        };
        self.log.push(format!("start {:?} throttle={} {what}{input}", invocation.sessions.iter().map(|i| i.0).collect::<Vec<_>>(), invocation.throttle_limit));
        let canned = if what.starts_with("Get-Command") && what.contains("ShowCommandInfo") {
            Some(&self.show)
        } else if what.starts_with("Get-FormatData") {
            Some(&self.format_data)
        } else {
            None
        };
        if let Some(canned) = canned
            && let Some(id) = invocation.sessions.first()
        {
            let canned = canned.clone();
            self.next_run += 1;
            let computer = self.sessions.iter().find(|s| s.id == *id).map(|s| s.computer_name.clone()).unwrap_or_default();
            let mut events: VecDeque<RemoteEvent> = canned.into_iter().map(|value| RemoteEvent::Output { session: *id, value }).collect();
            events.push_back(RemoteEvent::Finished { session: *id, computer_name: computer, state: PipelineState::Completed, error: None });
            events.push_back(RemoteEvent::Done);
            self.runs.insert(self.next_run, events);
            return Ok(RunId(self.next_run));
        }
        if what.starts_with("Get-Help")
            && let Some(id) = invocation.sessions.first()
        {
            // Get-Help answers with the help object, or fails as on a restricted endpoint, which has none.
            self.next_run += 1;
            let computer = self.sessions.iter().find(|s| s.id == *id).map(|s| s.computer_name.clone()).unwrap_or_default();
            let end = match &self.help {
                Some(_) => RemoteEvent::Finished { session: *id, computer_name: computer, state: PipelineState::Completed, error: None },
                None => RemoteEvent::Finished { session: *id, computer_name: computer, state: PipelineState::Failed, error: Some(Value::string("The term 'Get-Help' is not recognized")) },
            };
            let mut events: VecDeque<RemoteEvent> = self.help.iter().map(|h| RemoteEvent::Output { session: *id, value: h.clone() }).collect();
            events.push_back(end);
            events.push_back(RemoteEvent::Done);
            self.runs.insert(self.next_run, events);
            return Ok(RunId(self.next_run));
        }
        self.next_run += 1;
        let mut events = VecDeque::new();
        for id in &invocation.sessions {
            let Some(s) = self.sessions.iter().find(|s| s.id == *id) else { continue };
            let computer = s.computer_name.clone();
            events.push_back(RemoteEvent::Started { session: *id, computer_name: computer.clone(), pipeline: PipelineId(self.next_run * 100 + id.0) });
            if computer.starts_with("fail") {
                let record = psgate_lang::ErrorSpec {
                    message: format!("{computer} failed"),
                    id: "Failed".into(),
                    category: psgate_lang::Category::NotSpecified,
                    exception: "System.Exception",
                    target: None,
                    activity: String::new(),
                    position: None,
                }
                .record();
                events.push_back(RemoteEvent::Finished { session: *id, computer_name: computer, state: PipelineState::Failed, error: Some(record) });
                continue;
            }
            let mut props = vec![("Sent", Value::string(what.as_str()))];
            if tag {
                props.push(("PSComputerName", Value::string(computer.as_str())));
            }
            let value = psgate_lang::values::object(&["Fake.Result"], Some(format!("{computer}: {what}")), props);
            events.push_back(RemoteEvent::Output { session: *id, value });
            events.push_back(RemoteEvent::Finished { session: *id, computer_name: computer, state: PipelineState::Completed, error: None });
        }
        events.push_back(RemoteEvent::Done);
        self.runs.insert(self.next_run, events);
        Ok(RunId(self.next_run))
    }

    fn receive(&mut self, session: SessionId) -> Result<RunId, RemoteError> {
        self.log.push(format!("receive {}", session.0));
        self.next_run += 1;
        let computer = self.sessions.iter().find(|s| s.id == session).map(|s| s.computer_name.clone()).unwrap_or_default();
        let events = VecDeque::from(vec![
            RemoteEvent::Output { session, value: Value::string("buffered 1") },
            RemoteEvent::Output { session, value: Value::string("buffered 2") },
            RemoteEvent::Finished { session, computer_name: computer, state: PipelineState::Completed, error: None },
            RemoteEvent::Done,
        ]);
        self.runs.insert(self.next_run, events);
        Ok(RunId(self.next_run))
    }

    fn command_metadata(&mut self, session: SessionId, names: &[String], modules: &[String]) -> Result<RunId, RemoteError> {
        self.log.push(format!("metadata {} names={} modules={}", session.0, names.join(","), modules.join(",")));
        self.next_run += 1;
        let computer = self.sessions.iter().find(|s| s.id == session).map(|s| s.computer_name.clone()).ok_or_else(|| RemoteError::new(ErrorCode::UnknownSession, "gone"))?;
        let found: Vec<&Value> = self
            .commands
            .iter()
            .filter(|c| {
                let name = psgate_lang::values::property(c, "Name").map(|n| psgate_lang::values::text(&n)).unwrap_or_default();
                let module = psgate_lang::values::property(c, "Namespace").map(|n| psgate_lang::values::text(&n)).unwrap_or_default();
                names.iter().any(|p| psgate_lang::values::like(&name, p, false)) && (modules.is_empty() || modules.iter().any(|m| psgate_lang::values::like(&module, m, false)))
            })
            .collect();
        let mut events = VecDeque::new();
        let count = psgate_lang::values::object(&["Selected.Microsoft.PowerShell.Commands.GenericMeasureInfo"], None, vec![("Count", Value::I32(found.len() as i32))]);
        events.push_back(RemoteEvent::Output { session, value: count });
        for c in found {
            events.push_back(RemoteEvent::Output { session, value: c.clone() });
        }
        events.push_back(RemoteEvent::Finished { session, computer_name: computer, state: PipelineState::Completed, error: None });
        events.push_back(RemoteEvent::Done);
        self.runs.insert(self.next_run, events);
        Ok(RunId(self.next_run))
    }

    fn next_event(&mut self, run: RunId, _wait: Duration) -> Option<RemoteEvent> {
        self.runs.get_mut(&run.0)?.pop_front()
    }

    fn answer(&mut self, session: SessionId, _pipeline: PipelineId, call_id: i64, answer: HostAnswer) -> Result<(), RemoteError> {
        self.answers.push((session, call_id, answer));
        Ok(())
    }

    fn stop(&mut self, run: RunId) {
        self.log.push(format!("stop {}", run.0));
    }

    fn forget(&mut self, run: RunId) {
        self.runs.remove(&run.0);
    }

    fn local_computer(&mut self, computer: &str) -> bool {
        self.local.iter().any(|c| c.eq_ignore_ascii_case(computer))
    }

    fn application_private_data(&mut self, _session: SessionId) -> Option<Value> {
        self.private_data.clone()
    }

    fn wsman_get(&mut self, computer: &str, path: &[String]) -> Result<psgate_lang::WsmanNode, RemoteError> {
        let key = if path.is_empty() { computer.to_lowercase() } else { format!("{computer}/{}", path.join("/")).to_lowercase() };
        let item = |name: &str, value: Option<String>, source: Option<String>, container: bool| psgate_lang::WsmanItem { name: name.to_owned(), value, source, container };
        if let Some((k, v, src)) = self.wsman.iter().find(|(k, ..)| k.to_lowercase() == key) {
            return Ok(psgate_lang::WsmanNode::Leaf(item(k.rsplit('/').next().unwrap_or_default(), Some(v.clone()), src.clone(), false)));
        }
        let mut children: Vec<psgate_lang::WsmanItem> = Vec::new();
        for (k, v, src) in &self.wsman {
            let Some(rest) = k.to_lowercase().strip_prefix(&format!("{key}/")).map(str::to_owned) else { continue };
            let start = k.len() - rest.len();
            let rest = &k[start..];
            let (name, deeper) = rest.split_once('/').map_or((rest, false), |(n, _)| (n, true));
            if !children.iter().any(|c| c.name == name) {
                children.push(if deeper { item(name, None, None, true) } else { item(name, Some(v.clone()), src.clone(), false) });
            }
        }
        if children.is_empty() {
            return Err(RemoteError::new(psgate_shared::api::ErrorCode::TargetFailed, format!("Cannot find path '{}' because it does not exist.", path.join("\\"))));
        }
        Ok(psgate_lang::WsmanNode::Container(item(path.last().map_or(computer, String::as_str), None, None, true), children))
    }

    fn wsman_set(&mut self, computer: &str, path: &[String], value: &str) -> Result<(), RemoteError> {
        let key = format!("{computer}/{}", path.join("/")).to_lowercase();
        self.log.push(format!("wsman set {key} = {value}"));
        match self.wsman.iter_mut().find(|(k, ..)| k.to_lowercase() == key) {
            Some((_, _, Some(src))) => Err(RemoteError::new(psgate_shared::api::ErrorCode::TargetFailed, format!("The config setting {} cannot be changed because is controlled by policies ({src}).", path.last().cloned().unwrap_or_default()))),
            Some((_, v, None)) => {
                *v = value.to_owned();
                Ok(())
            }
            None => Err(RemoteError::new(psgate_shared::api::ErrorCode::TargetFailed, "no such setting")),
        }
    }

    fn target_of(&mut self, session: SessionId) -> Option<Target> {
        let i = self.sessions.iter().position(|s| s.id == session)?;
        self.targets.get(i).cloned().map(|mut t| {
            t.name = None;
            t
        })
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    Output(Value),
    Record(RecordKind, Value),
    Call(HostMethod, Vec<Value>),
    Clear,
}

#[derive(Default)]
pub struct Console {
    pub events: Vec<Event>,
    pub answers: VecDeque<HostAnswer>,
    pub interactive: bool,
}

impl Host for Console {
    fn output(&mut self, value: Value) {
        self.events.push(Event::Output(value));
    }
    fn record(&mut self, kind: RecordKind, value: Value) {
        self.events.push(Event::Record(kind, value));
    }
    fn call(&mut self, method: HostMethod, args: Vec<Value>) -> Option<HostAnswer> {
        self.events.push(Event::Call(method, args));
        self.answers.pop_front()
    }
    fn interactive(&self) -> bool {
        self.interactive
    }
    fn stopping(&self) -> bool {
        false
    }
    fn clear(&mut self) {
        self.events.push(Event::Clear);
    }
}

/// The console's events as text: output as PowerShell lays it out, records as `error: …`, `warning: …`,
/// host calls as `ask: Method`.
pub fn render(events: &[Event]) -> String {
    let mut out = String::new();
    let mut pending: Vec<Value> = Vec::new();
    let flush = |pending: &mut Vec<Value>, out: &mut String| {
        if !pending.is_empty() {
            out.push_str(&psgate_lang::format::to_text(pending));
            pending.clear();
        }
    };
    for e in events {
        match e {
            Event::Output(v) => pending.push(v.clone()),
            Event::Record(kind, v) => {
                flush(&mut pending, &mut out);
                let view = ErrorRecordView::from_value(v);
                match kind {
                    RecordKind::Error => out.push_str(&format!("error: {} [{}]\n", view.message, view.fully_qualified_error_id)),
                    other => out.push_str(&format!("{}: {}\n", format!("{other:?}").to_lowercase(), psgate_lang::values::text(v))),
                }
            }
            Event::Call(m, _) => {
                flush(&mut pending, &mut out);
                out.push_str(&format!("ask: {}\n", m.name()));
            }
            Event::Clear => out.push_str("(cleared)\n"),
        }
    }
    flush(&mut pending, &mut out);
    out
}

/// A runspace with its fake world.
pub struct World {
    pub rs: Runspace,
    pub fake: Fake,
    pub console: Console,
}

impl World {
    pub fn new() -> World {
        World { rs: Runspace::new(), fake: Fake::default(), console: Console { interactive: true, ..Console::default() } }
    }

    /// Runs lines, returning what the console showed for them.
    pub fn run(&mut self, lines: &str) -> String {
        self.console.events.clear();
        for line in lines.lines() {
            self.rs.run(line, &mut self.fake, &mut self.console);
        }
        render(&self.console.events)
    }

    /// A credential in `$cred` (user ada).
    /// The warnings the console showed since the last line began.
    pub fn warnings(&self) -> Vec<String> {
        self.console
            .events
            .iter()
            .filter_map(|e| match e {
                Event::Record(RecordKind::Warning, v) => Some(psgate_lang::values::text(&psgate_lang::values::property(v, "Message").unwrap_or_else(|| v.clone()))),
                _ => None,
            })
            .collect()
    }

    pub fn with_credential(mut self) -> World {
        self.console.answers.push_back(HostAnswer::Credential { user: "CONTOSO\\ada".into(), password: "Pa$$w0rd".into() });
        self.run("$cred = Get-Credential");
        self
    }
}

/// Compares text, ignoring trailing spaces and blank lines at either end.
pub fn same(actual: &str, expect: &str) {
    let norm = |s: &str| s.lines().map(str::trim_end).collect::<Vec<_>>().join("\n").trim_matches('\n').to_owned();
    let (a, e) = (norm(actual), norm(expect));
    assert!(a == e, "\n--- expected ---\n{e}\n--- actual ---\n{a}\n");
}

pub fn message_of(v: &Value) -> String {
    ErrorRecordView::from_value(v).message
}
