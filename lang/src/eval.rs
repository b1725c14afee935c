//! The evaluator: a [`Runspace`] (variables, history, the entered session, jobs, credentials) runs a line's
//! statements. Cmdlets run locally on the [`Remoting`] the caller gives; script blocks go to the remote side as
//! text (or Command objects), or run here for Where-Object and ForEach-Object.
//!
//! Errors follow PowerShell: a parse error stops the line; a cmdlet's terminating error (a binding error, an
//! unknown command) stops its statement and the next statement runs; non-terminating errors (one host of many
//! failing) are written and the cmdlet goes on.

use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;
use std::time::Duration;

use psgate_shared::api::{HostAnswer, PipelineState, RecordKind, SessionId};
use psgate_shared::clixml::{Content, Object, Value};
use psgate_shared::psrp::host::HostMethod;

use crate::ast::{BinaryOp, CommandArg, CommandCall, CompareOp, Element, Expr, ExprKind, Pipeline, Script, Span, Statement, StringPart, UnaryOp};
use crate::bind::{self, Arg, Bound, Kind, Param};
use crate::cmdlets::{self, Cmdlet};
use crate::error::{Category, ErrorSpec, Failure, position_message};
use crate::remote::{Host, Remoting, RunId};
use crate::secrets::Secrets;
use crate::values::{self, text};

/// How long a wait for remote events lasts before the prompt looks at Ctrl+C again.
pub(crate) const POLL: Duration = Duration::from_millis(50);

/// The prompt's state: one per user, kept between lines.
#[derive(Default)]
pub struct Runspace {
    /// Variables by lower-case name: the name as first assigned, and the value.
    variables: BTreeMap<String, (String, Value)>,
    pub(crate) secrets: Secrets,
    pub(crate) history: Vec<HistoryEntry>,
    pub(crate) entered: Option<Entered>,
    pub(crate) jobs: Vec<crate::jobs::Job>,
    pub(crate) next_job: u32,
    /// `$?`: whether the last statement succeeded.
    last_ok: bool,
    /// Shells Get-PSSession -ComputerName listed, by InstanceId: how to connect them (credentials included;
    /// never shown, never kept beyond the runspace).
    pub(crate) known_shells: HashMap<String, psgate_shared::api::Target>,
    /// At most this many evaluation steps per line (`None`: no limit; Ctrl+C stops a long line).
    step_limit: Option<u64>,
    /// The modules Import-PSSession made, oldest first.
    pub(crate) modules: Vec<crate::implicit::Module>,
    /// Modules made so far (their names).
    pub(crate) next_module: u32,
}

impl std::fmt::Debug for Runspace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the credentials of `secrets` or `known_shells`.
        f.debug_struct("Runspace")
            .field("variables", &self.variables.len())
            .field("history", &self.history.len())
            .field("entered", &self.entered)
            .field("jobs", &self.jobs.len())
            .field("modules", &self.modules.len())
            .field("secrets", &self.secrets)
            .finish()
    }
}

/// A line in the history (Get-History).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HistoryEntry {
    /// `Id`
    pub id: u32,
    /// `CommandLine`
    pub line: String,
    /// `ExecutionStatus`: Completed, Failed or Stopped.
    pub status: &'static str,
}

/// What [`Runspace::saved_modules`] keeps.
#[derive(serde::Serialize, serde::Deserialize)]
struct KeptModules {
    next_module: u32,
    modules: Vec<crate::implicit::Module>,
}

/// The session Enter-PSSession entered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entered {
    /// The session.
    pub session: SessionId,
    /// Its computer.
    pub computer_name: String,
    /// Made by `Enter-PSSession -ComputerName`: removed at `exit`.
    pub temporary: bool,
}

/// How a line ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// Completed, Failed (a parse error, or a statement's error) or Stopped (Ctrl+C).
    pub state: PipelineState,
    /// `exit` at the local prompt (`psgate shell` ends).
    pub exit: bool,
}

/// Where a typed line goes.
#[derive(Clone, Debug, PartialEq)]
pub enum Route {
    /// psgate's prompt runs it ([`Runspace::run`]).
    Local,
    /// The entered session runs it, as this pipeline.
    Remote {
        /// The session.
        session: SessionId,
        /// The pipeline: Command objects where the line allows, else its text.
        pipeline: psgate_shared::psrp::messages::PipelineSpec,
    },
}

/// Why a statement stopped.
#[derive(Debug)]
pub(crate) enum Flow {
    /// A terminating error.
    Error(Failure),
    /// Ctrl+C.
    Stopped,
    /// `exit`.
    Exit,
    /// A terminating error already written (its statement stops).
    Reported,
}

impl From<Failure> for Flow {
    fn from(f: Failure) -> Flow {
        Flow::Error(f)
    }
}

pub(crate) type R<T> = Result<T, Flow>;

/// Where a command's output goes.
pub(crate) enum Sink<'s> {
    /// The console.
    Host,
    /// The next command, a variable or an expression.
    Collect(&'s mut Vec<Value>),
}

/// The prompt's own `$PSVersionTable` version.
pub const PSGATE_VERSION: &str = env!("CARGO_PKG_VERSION");

impl Runspace {
    /// A new runspace.
    pub fn new() -> Runspace {
        Runspace { last_ok: true, ..Runspace::default() }
    }

    /// Runs one line.
    pub fn run(&mut self, line: &str, remoting: &mut dyn Remoting, host: &mut dyn Host) -> Outcome {
        let trimmed = line.trim();
        let id = self.history.last().map_or(1, |h| h.id + 1);
        if !trimmed.is_empty() {
            self.history.push(HistoryEntry { id, line: trimmed.to_owned(), status: "Running" });
        }
        let mut ctx = Ctx { rs: self, remoting: crate::remote::Cached::new(remoting), host, src: Rc::from(line), blocks: HashMap::new(), error_action: None, pipeline_position: 0, steps: 0 };
        let (state, exit) = ctx.run_line();
        if !trimmed.is_empty()
            && let Some(h) = self.history.iter_mut().rev().find(|h| h.id == id)
        {
            h.status = match state {
                PipelineState::Completed => "Completed",
                PipelineState::Stopped => "Stopped",
                _ => "Failed",
            };
        }
        Outcome { state, exit }
    }

    /// The session Enter-PSSession entered, if any.
    pub fn entered(&self) -> Option<&Entered> {
        self.entered.as_ref()
    }

    /// The modules Import-PSSession made.
    pub fn modules(&self) -> &[crate::implicit::Module] {
        &self.modules
    }

    /// Leaves the entered session without running anything (it was removed or broke).
    pub fn leave(&mut self) -> Option<Entered> {
        self.entered.take()
    }

    /// Where `line` goes: inside an entered session everything but `exit` and `Exit-PSSession` runs there.
    pub fn route(&self, line: &str) -> Route {
        match &self.entered {
            Some(e) if !is_exit_line(line) => Route::Remote { session: e.session, pipeline: crate::jea::pipeline_for(line) },
            _ => Route::Local,
        }
    }

    /// The prompt psgate shows: `PS psgate> `.
    pub fn prompt(&self) -> &'static str {
        "PS psgate> "
    }

    /// A variable's value.
    pub fn variable(&self, name: &str) -> Option<&Value> {
        self.variables.get(&name.to_lowercase()).map(|(_, v)| v)
    }

    /// Every variable's name and value, by name.
    pub fn variables(&self) -> impl Iterator<Item = (&str, &Value)> {
        self.variables.values().map(|(n, v)| (n.as_str(), v))
    }

    /// Sets a variable.
    pub fn set_variable(&mut self, name: &str, value: Value) {
        let key = name.to_lowercase();
        match self.variables.get_mut(&key) {
            Some(slot) => slot.1 = value,
            None => {
                self.variables.insert(key, (name.to_owned(), value));
            }
        }
    }

    /// The history, oldest first.
    pub fn history(&self) -> &[HistoryEntry] {
        &self.history
    }

    /// What of the prompt outlives its relay (issue 19: kept in the store, sealed, and taken back by the relay that
    /// takes the user over): the variables, the history and the entered session, as one value (`@(@(@(name,
    /// value)…), @(@(id, line, status)…), @(session, computer, temporary))`, the last empty when none is entered).
    /// The modules Import-PSSession made are kept apart ([`Runspace::saved_modules`]: large, and seldom changed).
    /// Not kept: jobs.
    pub fn saved_state(&self) -> Value {
        let variables = self.variables.values().map(|(name, value)| values::array(vec![Value::string(name.as_str()), value.clone()])).collect();
        let history = self.history.iter().map(|h| values::array(vec![Value::I64(i64::from(h.id)), Value::string(h.line.as_str()), Value::string(h.status)])).collect();
        let entered = self.entered.iter().flat_map(|e| {
            let session = i64::try_from(e.session.0).unwrap_or(i64::MAX);
            [Value::I64(session), Value::string(e.computer_name.as_str()), Value::Bool(e.temporary)]
        });
        values::array(vec![values::array(variables), values::array(history), values::array(entered.collect())])
    }

    /// Takes back what [`Runspace::saved_state`] kept: its variables set (over those of a new runspace), its history
    /// as this runspace's, its entered session (the caller leaves it with [`Runspace::leave`] when that session did
    /// not survive). A value of another shape is ignored; a state kept before the entered session was is read.
    pub fn restore_state(&mut self, state: &Value) {
        let (variables, history) = match values::as_list(state) {
            Some([variables, history]) => (variables, history),
            Some([variables, history, entered]) => {
                if let Some([session, computer, temporary]) = values::as_list(entered)
                    && let (Some(session), Some(computer), Value::Bool(temporary)) = (session.as_i64(), computer.as_str(), temporary)
                    && let Ok(session) = u64::try_from(session)
                {
                    self.entered = Some(Entered { session: SessionId(session), computer_name: computer.to_owned(), temporary: *temporary });
                }
                (variables, history)
            }
            _ => return,
        };
        for pair in values::as_list(variables).unwrap_or_default() {
            if let Some([name, value]) = values::as_list(pair)
                && let Some(name) = name.as_str()
            {
                self.set_variable(name, value.clone());
            }
        }
        self.history = values::as_list(history)
            .unwrap_or_default()
            .iter()
            .filter_map(|h| match values::as_list(h)? {
                [id, line, status] => Some(HistoryEntry {
                    id: u32::try_from(id.as_i64()?).ok()?,
                    line: line.as_str()?.to_owned(),
                    status: match status.as_str()? {
                        "Completed" => "Completed",
                        "Stopped" => "Stopped",
                        _ => "Failed",
                    },
                }),
                _ => None,
            })
            .collect();
    }

    /// The modules Import-PSSession made, kept apart from [`Runspace::saved_state`] (issue 19): JSON of their
    /// proxies, parameter sets and format views, and the count that names the next one.
    pub fn saved_modules(&self) -> String {
        let kept = KeptModules { next_module: self.next_module, modules: self.modules.clone() };
        serde_json::to_string(&kept).unwrap_or_default()
    }

    /// Takes back what [`Runspace::saved_modules`] kept, in place of this runspace's modules: their proxies run
    /// again in their sessions (a session that did not survive is opened again like it when a proxy runs, as
    /// after a Broken session). Text that does not read is an error and changes nothing.
    pub fn restore_modules(&mut self, kept: &str) -> Result<(), serde_json::Error> {
        let kept: KeptModules = serde_json::from_str(kept)?;
        self.modules = kept.modules;
        self.next_module = self.next_module.max(kept.next_module);
        Ok(())
    }

    /// Bounds the work of each line (statements and expressions evaluated): a line over it fails.
    pub fn set_step_limit(&mut self, limit: Option<u64>) {
        self.step_limit = limit;
    }
}

/// `exit`, `Exit-PSSession` or `exsn` alone on a line.
pub fn is_exit_line(line: &str) -> bool {
    let t = line.trim().trim_end_matches(';').trim();
    ["exit", "exit-pssession", "exsn"].iter().any(|w| t.eq_ignore_ascii_case(w))
}

/// A line's evaluation.
pub(crate) struct Ctx<'a> {
    pub rs: &'a mut Runspace,
    pub remoting: crate::remote::Cached<'a>,
    pub host: &'a mut dyn Host,
    /// The text spans refer to (the line, or a script block's text while it runs).
    pub src: Rc<str>,
    blocks: HashMap<String, Rc<Result<Script, crate::ParseError>>>,
    /// `-ErrorAction` of the command running.
    pub error_action: Option<String>,
    /// The position of the command running in its pipeline (1-based), for prompts.
    pub pipeline_position: usize,
    /// Statements and expressions evaluated so far.
    steps: u64,
}

impl Ctx<'_> {
    fn run_line(&mut self) -> (PipelineState, bool) {
        let script = match crate::parser::parse(&self.src) {
            Ok(s) => s,
            Err(e) => {
                self.host.record(RecordKind::Error, e.record(&self.src));
                return (PipelineState::Failed, false);
            }
        };
        crate::implicit::prune(self);
        let outcome = self.line_statements(&script);
        crate::implicit::prune(self);
        outcome
    }

    fn line_statements(&mut self, script: &Script) -> (PipelineState, bool) {
        let mut failed = false;
        for statement in &script.statements {
            match self.statement(statement, &mut Sink::Host) {
                Ok(()) => self.rs.last_ok = true,
                Err(Flow::Error(f)) => {
                    failed = true;
                    self.rs.last_ok = false;
                    self.host.record(RecordKind::Error, f.record);
                }
                Err(Flow::Reported) => {
                    failed = true;
                    self.rs.last_ok = false;
                }
                Err(Flow::Stopped) => return (PipelineState::Stopped, false),
                Err(Flow::Exit) => {
                    return match self.exit_session() {
                        Ok(true) => (PipelineState::Completed, false),
                        Ok(false) => (PipelineState::Completed, true),
                        Err(Flow::Error(f)) => {
                            self.host.record(RecordKind::Error, f.record);
                            (PipelineState::Failed, false)
                        }
                        Err(_) => (PipelineState::Stopped, false),
                    };
                }
            }
        }
        (if failed { PipelineState::Failed } else { PipelineState::Completed }, false)
    }

    /// `exit` / Exit-PSSession: leaves the entered session (`true`), or says the prompt itself should end.
    pub fn exit_session(&mut self) -> R<bool> {
        match self.rs.entered.take() {
            Some(e) => {
                if e.temporary {
                    let _ = self.remoting.remove(&[e.session]);
                }
                Ok(true)
            }
            None => Ok(false),
        }
    }

    pub fn check_stop(&mut self) -> R<()> {
        self.steps += 1;
        if self.rs.step_limit.is_some_and(|limit| self.steps > limit) {
            return Err(Flow::Error(Failure::new(ErrorSpec {
                message: "The line did more work than this prompt allows.".into(),
                id: "StepLimitExceeded".into(),
                category: Category::QuotaExceeded,
                exception: "System.Management.Automation.RuntimeException",
                target: None,
                activity: String::new(),
                position: None,
            })));
        }
        if self.host.stopping() { Err(Flow::Stopped) } else { Ok(()) }
    }

    /// The position message of a span of the current text.
    pub fn position(&self, span: Span) -> String {
        position_message(&self.src, span)
    }

    pub fn emit(&mut self, sink: &mut Sink<'_>, value: Value) {
        match sink {
            // Out-Default writes nothing for $null.
            Sink::Host if value.is_nil() => {}
            Sink::Host => {
                let value = self.live(value);
                let value = self.formatted(value);
                self.host.output(value);
            }
            Sink::Collect(v) => v.push(value),
        }
    }

    /// An object laid out by the view an import's format data has for its type (the newest import's first).
    fn formatted(&mut self, value: Value) -> Value {
        let Some(view) = crate::format_data::view_for(self.rs.modules.iter().rev().flat_map(|m| m.formats.iter()), &value).cloned() else { return value };
        let mut eval = |script: &str, item: &Value| self.invoke_block(script, Some(item)).ok().map(values::collapse);
        crate::format_data::apply(&view, value, &mut eval)
    }

    /// A non-terminating error: written (or not, or made terminating) as `-ErrorAction` says.
    pub fn write_error(&mut self, failure: Failure) -> R<()> {
        match self.error_action.as_deref() {
            Some("SilentlyContinue" | "Ignore") => Ok(()),
            Some("Stop") => Err(Flow::Error(failure)),
            _ => {
                self.host.record(RecordKind::Error, failure.record);
                Ok(())
            }
        }
    }

    /// A PSSession (or an array of them) as it is now.
    pub fn live(&mut self, value: Value) -> Value {
        if crate::session::is_session(&value) {
            return self.refresh(&value);
        }
        if let Some(items) = values::as_list(&value)
            && items.iter().any(crate::session::is_session)
        {
            let items = items.iter().map(|i| if crate::session::is_session(i) { self.refresh(i) } else { i.clone() }).collect();
            return values::array(items);
        }
        value
    }

    /// A PSSession object as its session is now, or Closed when the session is gone.
    fn refresh(&mut self, v: &Value) -> Value {
        match crate::session::id_of(v) {
            // With the time the relay's quotas leave it (IdleTimeLeft, RunTimeLeft), where they apply.
            Some(id) => match self.remoting.object_of(id) {
                Some(object) => {
                    let left = self.remoting.time_left(id);
                    crate::quota::with_time_left(object, left)
                }
                None => crate::session::closed(v),
            },
            None => v.clone(),
        }
    }

    pub fn statement(&mut self, s: &Statement, sink: &mut Sink<'_>) -> R<()> {
        self.check_stop()?;
        match s {
            Statement::Pipeline(p) => self.pipeline(p, sink),
            Statement::Assign { targets, value, .. } => {
                let mut out = Vec::new();
                self.pipeline(value, &mut Sink::Collect(&mut out))?;
                if targets.len() == 1 {
                    self.rs.set_variable(&targets[0].name, values::collapse(out));
                } else {
                    let mut rest = out.into_iter();
                    for (i, t) in targets.iter().enumerate() {
                        let v = if i + 1 == targets.len() { values::collapse(rest.by_ref().collect()) } else { rest.next().unwrap_or(Value::Nil) };
                        self.rs.set_variable(&t.name, v);
                    }
                }
                Ok(())
            }
            Statement::Exit { .. } => Err(Flow::Exit),
        }
    }

    pub fn pipeline(&mut self, p: &Pipeline, sink: &mut Sink<'_>) -> R<()> {
        let mut input: Option<Vec<Value>> = None;
        let n = p.elements.len();
        for (i, element) in p.elements.iter().enumerate() {
            self.check_stop()?;
            self.pipeline_position = i + 1;
            if i + 1 == n {
                self.element(element, input.take(), sink)?;
            } else {
                let mut out = Vec::new();
                self.element(element, input.take(), &mut Sink::Collect(&mut out))?;
                input = Some(out);
            }
        }
        Ok(())
    }

    fn element(&mut self, element: &Element, input: Option<Vec<Value>>, sink: &mut Sink<'_>) -> R<()> {
        match element {
            Element::Expression(e) => {
                let v = self.expr(e)?;
                for item in values::enumerate(v) {
                    self.emit(sink, item);
                }
                Ok(())
            }
            Element::Command(c) => self.command(c, input, sink),
        }
    }

    fn command(&mut self, call: &CommandCall, input: Option<Vec<Value>>, sink: &mut Sink<'_>) -> R<()> {
        // A proxy of implicit remoting is a function: it hides a cmdlet of the same name (Import-PSSession
        // -AllowClobber).
        if let Some((module, proxy)) = crate::implicit::find(&self.rs.modules, &call.name) {
            let proxy = proxy.clone();
            let args = self.arguments(call)?;
            let line = call.span.text(&self.src).to_owned();
            return crate::implicit::call(self, module, &proxy, args, input, &line, sink);
        }
        let Some(cmdlet) = cmdlets::find(&call.name) else {
            let failure = self.not_found(call);
            // PowerShell 7's feedback provider ("general") names the nearest commands after the error.
            let similar = cmdlets::similar(&call.name);
            if !similar.is_empty() {
                self.host.record(RecordKind::Error, failure.record);
                let text = format!("\n[general]\n  The most similar commands are:\n    \u{27a4} {}\n", similar.join(", "));
                self.host.record(RecordKind::Information, crate::error::host_text(&text));
                return Err(Flow::Reported);
            }
            return Err(Flow::Error(failure));
        };
        let args = self.arguments(call)?;
        // A command after a pipe that got nothing does nothing (its process block never runs).
        if input.as_ref().is_some_and(Vec::is_empty) && cmdlet.sig.params.iter().any(|p| p.pipe != bind::Pipe::No) {
            return Ok(());
        }
        let src = self.src.clone();
        let (bound, missing) = bind::bind(&cmdlet.sig, args, input.as_deref(), &|span| position_message(&src, span))?;
        let bound = self.prompt_missing(cmdlet, bound, missing)?;
        let action = bound.string("ErrorAction").or_else(|| self.error_action.clone());
        let saved = std::mem::replace(&mut self.error_action, action);
        let result = (cmdlet.run)(self, &bound, sink);
        self.error_action = saved;
        result
    }

    /// A command's arguments, evaluated.
    fn arguments(&mut self, call: &CommandCall) -> R<Vec<Arg>> {
        let mut args = Vec::with_capacity(call.args.len());
        for a in &call.args {
            match a {
                CommandArg::Parameter { name, value, span } => {
                    let value = match value {
                        Some(e) => Some(self.argument(e)?),
                        None => None,
                    };
                    args.push(Arg::Named { name: name.clone(), value, span: *span });
                }
                CommandArg::Argument(e) => {
                    let value = self.argument(e)?;
                    args.push(Arg::Value { value, shown: e.span.text(&self.src).to_owned(), span: e.span });
                }
            }
        }
        Ok(args)
    }

    /// A missing mandatory parameter: asked for, as PowerShell does, when someone can answer.
    fn prompt_missing(&mut self, cmdlet: &'static Cmdlet, mut bound: Bound, missing: Vec<&'static Param>) -> R<Bound> {
        if missing.is_empty() {
            return Ok(bound);
        }
        let names: Vec<&str> = missing.iter().map(|p| p.name).collect();
        if !self.host.interactive() {
            return Err(Flow::Error(bind::binding_error(
                &cmdlet.sig,
                "MissingMandatoryParameter",
                format!("Cannot process command because of one or more missing mandatory parameters: {}.", names.join(" ")),
                None,
                Category::InvalidArgument,
            )));
        }
        let fields = missing.iter().map(|p| crate::host::field(p.name, p.kind, p.help)).collect();
        let caption = format!("cmdlet {} at command pipeline position {}", cmdlet.sig.name, self.pipeline_position.max(1));
        let answer = self.host.call(HostMethod::Prompt, vec![Value::string(caption), Value::string("Supply values for the following parameters:"), values::array(fields)]);
        let Some(HostAnswer::Fields { fields }) = answer else { return Err(Flow::Stopped) };
        for p in missing {
            let given = fields.iter().find(|f| f.name.eq_ignore_ascii_case(p.name)).map(|f| (f.text.clone(), f.secure));
            let Some((text, secure)) = given.filter(|(t, _)| !t.trim().is_empty()) else {
                return Err(Flow::Error(bind::binding_error(
                    &cmdlet.sig,
                    "ParameterArgumentValidationErrorEmptyStringNotAllowed",
                    format!("Cannot bind argument to parameter '{}' because it is an empty string.", p.name),
                    None,
                    Category::InvalidData,
                )));
            };
            let raw = if secure {
                self.rs.secrets.keep(text)
            } else if matches!(p.kind, Kind::Strings | Kind::Ints | Kind::Objects | Kind::Guids) {
                values::array(text.split(',').map(|s| Value::string(s.trim())).collect())
            } else {
                Value::string(text)
            };
            let value = bind::convert(p.kind, raw).map_err(|why| bind::binding_error(&cmdlet.sig, "CannotConvertArgumentNoMessage", format!("Cannot bind parameter '{}'. {why}", p.name), None, Category::InvalidArgument))?;
            bound.values.insert(p.name, value);
        }
        Ok(bound)
    }

    fn not_found(&self, call: &CommandCall) -> Failure {
        let message = format!(
            "The term '{}' is not recognized as a name of a cmdlet, function, script file, or executable program.\nCheck the spelling of the name, or if a path was included, verify that the path is correct and try again.",
            call.name
        );
        Failure::new(ErrorSpec {
            message,
            id: "CommandNotFoundException".into(),
            category: Category::ObjectNotFound,
            exception: "System.Management.Automation.CommandNotFoundException",
            target: Some(call.name.clone()),
            activity: String::new(),
            position: Some(self.position(call.name_span)),
        })
    }

    /// A command argument's value: a bare word is a string.
    fn argument(&mut self, e: &Expr) -> R<Value> {
        match &e.kind {
            ExprKind::BareWord(w) => Ok(Value::string(w.as_str())),
            ExprKind::Array(items) => {
                let mut out = Vec::with_capacity(items.len());
                for i in items {
                    out.push(self.argument(i)?);
                }
                Ok(values::array(out))
            }
            _ => self.expr(e),
        }
    }

    pub fn variable(&mut self, name: &str) -> Value {
        let lower = name.to_lowercase();
        match lower.as_str() {
            "true" => Value::Bool(true),
            "false" => Value::Bool(false),
            "null" => Value::Nil,
            "psitem" => self.rs.variable("_").cloned().unwrap_or(Value::Nil),
            "?" => Value::Bool(self.rs.last_ok),
            "psversiontable" => crate::cmdlets::utility::version_table(),
            "pid" => Value::Nil,
            "host" => values::object(&["System.Management.Automation.Internal.Host.InternalHost"], Some("psgate".into()), vec![("Name", Value::string("psgate")), ("Version", Value::string(PSGATE_VERSION))]),
            _ => {
                let name = lower.strip_prefix("using:").unwrap_or(&lower);
                if name.starts_with("env:") {
                    return Value::Nil;
                }
                self.rs.variable(name).cloned().unwrap_or(Value::Nil)
            }
        }
    }

    pub fn expr(&mut self, e: &Expr) -> R<Value> {
        self.check_stop()?;
        Ok(match &e.kind {
            ExprKind::Int(n) => values::int(*n),
            ExprKind::Double(f) => Value::Double(*f),
            ExprKind::String(s) | ExprKind::BareWord(s) => Value::string(s.as_str()),
            ExprKind::Expandable(parts) => {
                let mut out = String::new();
                for part in parts {
                    match part {
                        StringPart::Text(t) => out.push_str(t),
                        StringPart::Variable(name) => {
                            let v = self.variable(name);
                            let v = self.live(v);
                            out.push_str(&text(&v));
                        }
                        StringPart::SubExpression(script) => {
                            let v = self.statements(script)?;
                            out.push_str(&text(&values::collapse(v)));
                        }
                    }
                }
                Value::string(out)
            }
            ExprKind::Variable(name) => self.variable(name),
            ExprKind::Array(items) => {
                let mut out = Vec::with_capacity(items.len());
                for i in items {
                    out.push(self.expr(i)?);
                }
                values::array(out)
            }
            ExprKind::Paren(p) => {
                let mut out = Vec::new();
                self.pipeline(p, &mut Sink::Collect(&mut out))?;
                values::collapse(out)
            }
            ExprKind::SubExpression(script) => values::collapse(self.statements(script)?),
            ExprKind::ArrayExpression(script) => values::array(self.statements(script)?),
            ExprKind::Hashtable(entries) => {
                let mut dict = Vec::with_capacity(entries.len());
                for (k, v) in entries {
                    let key = self.expr(k)?;
                    let mut out = Vec::new();
                    self.pipeline(v, &mut Sink::Collect(&mut out))?;
                    dict.push((key, values::collapse(out)));
                }
                Value::object(Object {
                    type_names: Some(vec!["System.Collections.Hashtable".into(), "System.Object".into()].into()),
                    content: Content::Dict(dict),
                    ..Object::default()
                })
            }
            ExprKind::ScriptBlock(block) => Value::ScriptBlock(block.text.as_str().into()),
            ExprKind::Member(target, name) => {
                let v = self.expr(target)?;
                let v = self.live(v);
                values::member(&v, name)
            }
            ExprKind::Index(target, index) => {
                let v = self.expr(target)?;
                let i = self.expr(index)?;
                index_value(&v, &i)
            }
            ExprKind::Method(target, name, args) => {
                let v = self.expr(target)?;
                let v = self.live(v);
                let mut a = Vec::with_capacity(args.len());
                for x in args {
                    a.push(self.expr(x)?);
                }
                crate::methods::call(&v, name, &a).map_err(|m| {
                    Flow::Error(Failure::new(ErrorSpec {
                        message: m,
                        id: "MethodNotFound".into(),
                        category: Category::InvalidOperation,
                        exception: "System.Management.Automation.RuntimeException",
                        target: None,
                        activity: String::new(),
                        position: Some(self.position(e.span)),
                    }))
                })?
            }
            ExprKind::Unary(op, operand) => {
                let v = self.expr(operand)?;
                match op {
                    UnaryOp::Not => Value::Bool(!values::truthy(&v)),
                    UnaryOp::Negate | UnaryOp::Plus => {
                        let n = values::number(&v).ok_or_else(|| self.operand_error(&v, e.span))?;
                        let n = if *op == UnaryOp::Negate { -n } else { n };
                        values::num(n, values::is_number(&v) && !matches!(values::primitive(&v), Value::Double(_) | Value::Single(_)))
                    }
                }
            }
            ExprKind::Binary(op, left, right) => self.binary(*op, left, right, e.span)?,
        })
    }

    fn operand_error(&self, v: &Value, span: Span) -> Flow {
        Flow::Error(Failure::new(ErrorSpec {
            message: format!("Cannot convert value \"{}\" to type \"System.Int32\". Error: \"The input string '{}' was not in a correct format.\"", text(v), text(v)),
            id: "InvalidCastFromStringToInteger".into(),
            category: Category::InvalidArgument,
            exception: "System.Management.Automation.RuntimeException",
            target: None,
            activity: String::new(),
            position: Some(self.position(span)),
        }))
    }

    fn binary(&mut self, op: BinaryOp, left: &Expr, right: &Expr, span: Span) -> R<Value> {
        match op {
            BinaryOp::And => {
                let l = self.expr(left)?;
                if !values::truthy(&l) {
                    return Ok(Value::Bool(false));
                }
                let r = self.expr(right)?;
                return Ok(Value::Bool(values::truthy(&r)));
            }
            BinaryOp::Or => {
                let l = self.expr(left)?;
                if values::truthy(&l) {
                    return Ok(Value::Bool(true));
                }
                let r = self.expr(right)?;
                return Ok(Value::Bool(values::truthy(&r)));
            }
            _ => {}
        }
        let l = self.expr(left)?;
        let r = self.expr(right)?;
        let l = self.live(l);
        let r = self.live(r);
        match op {
            BinaryOp::Xor => Ok(Value::Bool(values::truthy(&l) != values::truthy(&r))),
            BinaryOp::Compare(cmp, cs) => self.compare(cmp, cs, &l, &r, span),
            BinaryOp::Add => {
                if let Some(items) = values::as_list(&l) {
                    let mut out = items.to_vec();
                    out.extend(values::enumerate(r));
                    return Ok(values::array(out));
                }
                if matches!(values::primitive(&l), Value::String(_)) {
                    return Ok(Value::string(format!("{}{}", text(&l), text(&r))));
                }
                if l.is_nil() {
                    return Ok(r);
                }
                self.arith(&l, &r, span, |a, b| a + b)
            }
            BinaryOp::Subtract => self.arith(&l, &r, span, |a, b| a - b),
            BinaryOp::Multiply => {
                if let Value::String(s) = values::primitive(&l) {
                    let n = values::integer(&r).ok_or_else(|| self.operand_error(&r, span))?;
                    if !(0..=100_000).contains(&n) || s.len().saturating_mul(n as usize) > 10_000_000 {
                        return Err(self.runtime_error("The result of the multiplication is too large for psgate's prompt.", span));
                    }
                    return Ok(Value::string(s.repeat(n as usize)));
                }
                self.arith(&l, &r, span, |a, b| a * b)
            }
            BinaryOp::Divide => {
                if values::number(&r) == Some(0.0) {
                    return Err(self.runtime_error("Attempted to divide by zero.", span));
                }
                let (a, b) = (values::number(&l).ok_or_else(|| self.operand_error(&l, span))?, values::number(&r).ok_or_else(|| self.operand_error(&r, span))?);
                Ok(values::num(a / b, (a / b).fract() == 0.0 && values::is_number(&l) && values::is_number(&r)))
            }
            BinaryOp::Remainder => {
                if values::number(&r) == Some(0.0) {
                    return Err(self.runtime_error("Attempted to divide by zero.", span));
                }
                self.arith(&l, &r, span, |a, b| a % b)
            }
            BinaryOp::Range => {
                let (a, b) = (values::integer(&l).ok_or_else(|| self.operand_error(&l, span))?, values::integer(&r).ok_or_else(|| self.operand_error(&r, span))?);
                if (a - b).unsigned_abs() > 1_000_000 {
                    return Err(self.runtime_error("The range is too large for psgate's prompt (at most 1,000,000 items).", span));
                }
                let items: Vec<Value> = if a <= b { (a..=b).map(values::int).collect() } else { (b..=a).rev().map(values::int).collect() };
                Ok(values::array(items))
            }
            BinaryOp::Format => {
                let args = values::enumerate(r);
                crate::methods::format(&text(&l), &args).map(Value::string).map_err(|m| self.runtime_error(&m, span))
            }
            BinaryOp::And | BinaryOp::Or => Ok(Value::Nil),
        }
    }

    fn arith(&self, l: &Value, r: &Value, span: Span, f: impl Fn(f64, f64) -> f64) -> R<Value> {
        let a = values::number(l).ok_or_else(|| self.operand_error(l, span))?;
        let b = values::number(r).ok_or_else(|| self.operand_error(r, span))?;
        let integral = |v: &Value| !matches!(values::primitive(v), Value::Double(_) | Value::Single(_) | Value::Decimal(_)) && values::number(v).is_some_and(|n| n.fract() == 0.0);
        Ok(values::num(f(a, b), integral(l) && integral(r)))
    }

    pub fn runtime_error(&self, message: &str, span: Span) -> Flow {
        Flow::Error(Failure::new(ErrorSpec {
            message: message.to_owned(),
            id: "RuntimeException".into(),
            category: Category::InvalidOperation,
            exception: "System.Management.Automation.RuntimeException",
            target: None,
            activity: String::new(),
            position: Some(self.position(span)),
        }))
    }

    fn compare(&mut self, op: CompareOp, cs: bool, l: &Value, r: &Value, span: Span) -> R<Value> {
        match op {
            CompareOp::Contains | CompareOp::NotContains => {
                let items = values::enumerate(l.clone());
                let found = items.iter().any(|i| values::equals(i, r, cs));
                return Ok(Value::Bool(found == (op == CompareOp::Contains)));
            }
            CompareOp::In | CompareOp::NotIn => {
                let items = values::enumerate(r.clone());
                let found = items.iter().any(|i| values::equals(i, l, cs));
                return Ok(Value::Bool(found == (op == CompareOp::In)));
            }
            _ => {}
        }
        if let Some(items) = values::as_list(l) {
            // A collection on the left filters: the items for which the comparison is true.
            let mut out = Vec::new();
            for i in items {
                if self.scalar_compare(op, cs, i, r, span, false)? {
                    out.push(i.clone());
                }
            }
            return Ok(values::array(out));
        }
        Ok(Value::Bool(self.scalar_compare(op, cs, l, r, span, true)?))
    }

    fn scalar_compare(&mut self, op: CompareOp, cs: bool, l: &Value, r: &Value, span: Span, set_matches: bool) -> R<bool> {
        use std::cmp::Ordering::*;
        Ok(match op {
            CompareOp::Eq => values::equals(l, r, cs),
            CompareOp::Ne => !values::equals(l, r, cs),
            CompareOp::Gt => values::order(l, r, cs) == Some(Greater),
            CompareOp::Ge => matches!(values::order(l, r, cs), Some(Greater | Equal)),
            CompareOp::Lt => values::order(l, r, cs) == Some(Less),
            CompareOp::Le => matches!(values::order(l, r, cs), Some(Less | Equal)),
            CompareOp::Like => values::like(&text(l), &text(r), cs),
            CompareOp::NotLike => !values::like(&text(l), &text(r), cs),
            CompareOp::Match | CompareOp::NotMatch => {
                let re = regex::RegexBuilder::new(&text(r)).case_insensitive(!cs).size_limit(1 << 20).build().map_err(|e| {
                    self.runtime_error(&format!("The regular expression pattern {} is not valid: {e}", text(r)), span)
                })?;
                let subject = text(l);
                let found = re.captures(&subject);
                if set_matches && let Some(c) = &found {
                    let mut dict = Vec::new();
                    for (i, name) in re.capture_names().enumerate() {
                        if let Some(m) = c.get(i) {
                            let key = name.map_or_else(|| values::int(i as i64), Value::string);
                            dict.push((key, Value::string(m.as_str())));
                        }
                    }
                    let matches = Value::object(Object {
                        type_names: Some(vec!["System.Collections.Hashtable".into(), "System.Object".into()].into()),
                        content: Content::Dict(dict),
                        ..Object::default()
                    });
                    self.rs.set_variable("Matches", matches);
                }
                found.is_some() == (op == CompareOp::Match)
            }
            CompareOp::Contains | CompareOp::NotContains | CompareOp::In | CompareOp::NotIn => false,
        })
    }

    /// Statements' output (`$( … )`, `@( … )`, a script block).
    pub fn statements(&mut self, script: &Script) -> R<Vec<Value>> {
        let mut out = Vec::new();
        for s in &script.statements {
            self.statement(s, &mut Sink::Collect(&mut out))?;
        }
        Ok(out)
    }

    /// Runs a script block here with `$_` set to `item` (Where-Object, ForEach-Object); its output.
    pub fn invoke_block(&mut self, block: &str, item: Option<&Value>) -> R<Vec<Value>> {
        let parsed = match self.blocks.get(block) {
            Some(p) => p.clone(),
            None => {
                let p = Rc::new(crate::parser::parse(block));
                self.blocks.insert(block.to_owned(), p.clone());
                p
            }
        };
        let script = match &*parsed {
            Ok(s) => s,
            Err(e) => return Err(Flow::Error(Failure { record: e.record(block) })),
        };
        let saved_src = std::mem::replace(&mut self.src, Rc::from(block));
        let saved = item.map(|i| {
            let old = self.rs.variable("_").cloned();
            self.rs.set_variable("_", i.clone());
            old
        });
        let result = self.statements(script);
        if let Some(old) = saved {
            self.rs.set_variable("_", old.unwrap_or(Value::Nil));
        }
        self.src = saved_src;
        result
    }

    /// Follows a run to its end: output to `sink`, records to the console, host calls to the user.
    pub fn follow(&mut self, run: RunId, sink: &mut Sink<'_>) -> R<Vec<crate::remote::RemoteEvent>> {
        use crate::remote::RemoteEvent;
        let mut finished = Vec::new();
        loop {
            if self.host.stopping() {
                self.remoting.stop(run);
                // Let the pipelines report their stop, briefly.
                for _ in 0..40 {
                    match self.remoting.next_event(run, POLL) {
                        Some(RemoteEvent::Done) | None => break,
                        Some(_) => {}
                    }
                }
                self.remoting.forget(run);
                return Err(Flow::Stopped);
            }
            let Some(event) = self.remoting.next_event(run, POLL) else { continue };
            match event {
                RemoteEvent::Started { .. } => {}
                RemoteEvent::Output { value, .. } => self.emit(sink, value),
                RemoteEvent::Record { kind, value, .. } => {
                    if kind == RecordKind::Error {
                        self.write_error(Failure { record: value })?;
                    } else {
                        self.host.record(kind, value);
                    }
                }
                RemoteEvent::HostCall { session, pipeline, call_id, method, args } => {
                    let answer = self.host.call(method, args);
                    let answer = answer.unwrap_or(HostAnswer::Error { message: "the prompt was cancelled".into() });
                    let _ = self.remoting.answer(session, pipeline, call_id, answer);
                }
                RemoteEvent::Finished { computer_name, state, error, session } => {
                    // A host's failure shows when it happens, between the other hosts' output.
                    crate::cmdlets::remoting::report_host_end(self, &computer_name, state, error.clone())?;
                    finished.push(RemoteEvent::Finished { computer_name, state, error, session });
                }
                RemoteEvent::Done => {
                    self.remoting.forget(run);
                    return Ok(finished);
                }
            }
        }
    }
}

/// `$a[i]`: an array's item (negative from the end), several items for several indexes, a string's character,
/// a hashtable's value.
fn index_value(v: &Value, i: &Value) -> Value {
    if let Some(indexes) = values::as_list(i) {
        let out: Vec<Value> = indexes.iter().map(|x| index_value(v, x)).filter(|x| !x.is_nil()).collect();
        return values::array(out);
    }
    if let Some(o) = v.as_object()
        && let Content::Dict(entries) = &o.content
    {
        return entries.iter().find(|(k, _)| values::equals(k, i, false)).map(|(_, v)| v.clone()).unwrap_or(Value::Nil);
    }
    let Some(n) = values::integer(i) else { return Value::Nil };
    let at = |len: usize| -> Option<usize> {
        let len = len as i64;
        let k = if n < 0 { len + n } else { n };
        (0..len).contains(&k).then_some(k as usize)
    };
    if let Some(items) = values::as_list(v) {
        return at(items.len()).map(|k| items[k].clone()).unwrap_or(Value::Nil);
    }
    if let Value::String(s) = values::primitive(v) {
        let chars: Vec<char> = s.chars().collect();
        return at(chars.len()).map(|k| Value::Char(chars[k] as u32 as u16)).unwrap_or(Value::Nil);
    }
    // A scalar is a one-item collection.
    if n == 0 || n == -1 { v.clone() } else { Value::Nil }
}
