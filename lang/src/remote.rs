//! What the prompt needs from outside, as two traits the caller implements: [`Remoting`] (the user's sessions:
//! the relay's session manager, or `psgate shell`'s in-process one, or a test's fake) and [`Host`] (the console:
//! output, records, prompts, Ctrl+C). The language core calls them and does no IO of its own.

use std::time::Duration;

use psgate_shared::api::{HostAnswer, OutputBufferingMode, PipelineId, PipelineState, RecordKind, RemoteShell, SessionId, SessionInfo, Target};
use psgate_shared::clixml::Value;
use psgate_shared::psrp::host::HostMethod;
use psgate_shared::psrp::messages::PipelineSpec;

/// Why a remoting request failed: the relay's stable code and its message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemoteError {
    /// The code (`target_not_allowed`, `authentication_failed`, `quota_exceeded` …).
    pub code: psgate_shared::api::ErrorCode,
    /// For people.
    pub message: String,
}

impl RemoteError {
    /// An error.
    pub fn new(code: psgate_shared::api::ErrorCode, message: impl Into<String>) -> RemoteError {
        RemoteError { code, message: message.into() }
    }
}

/// A run of one pipeline on one or many sessions (Invoke-Command, a job, Receive-PSSession), started by
/// [`Remoting::start`] and read with [`Remoting::next_event`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RunId(pub u64);

/// What to run where.
#[derive(Clone, Debug, PartialEq)]
pub struct Invocation {
    /// The sessions, each once, in order.
    pub sessions: Vec<SessionId>,
    /// The pipeline (Command objects where the line allowed it, else script text with its arguments).
    pub pipeline: PipelineSpec,
    /// How many sessions run it at once.
    pub throttle_limit: u32,
    /// The text shown for it (history, jobs' `Command`).
    pub text: String,
    /// Objects for the pipeline to read (a proxy fed by the local pipeline); `None`: it reads no input.
    pub input: Option<Vec<Value>>,
}

/// Something a run reports.
#[derive(Clone, Debug, PartialEq)]
pub enum RemoteEvent {
    /// The pipeline started on a session.
    Started {
        /// The session.
        session: SessionId,
        /// Its computer.
        computer_name: String,
        /// The pipeline there.
        pipeline: PipelineId,
    },
    /// An output object (already carrying `PSComputerName` when the run was asked to tag it).
    Output {
        /// The session.
        session: SessionId,
        /// The object.
        value: Value,
    },
    /// An error, warning, verbose, debug, information or progress record.
    Record {
        /// The session.
        session: SessionId,
        /// Which stream.
        kind: RecordKind,
        /// The record.
        value: Value,
    },
    /// The remote pipeline asks the host something (Read-Host, Get-Credential…): answer with
    /// [`Remoting::answer`].
    HostCall {
        /// The session.
        session: SessionId,
        /// The pipeline there.
        pipeline: PipelineId,
        /// The call's id there.
        call_id: i64,
        /// The method.
        method: HostMethod,
        /// Its arguments.
        args: Vec<Value>,
    },
    /// One session's pipeline ended (or could not start: `error` says why).
    Finished {
        /// The session.
        session: SessionId,
        /// Its computer.
        computer_name: String,
        /// How it ended.
        state: PipelineState,
        /// The terminating error record, or why it did not run.
        error: Option<Value>,
    },
    /// Every session's pipeline has ended; nothing follows.
    Done,
}

/// A quota as Get-PSGateQuota shows it: PowerShell's name, where it is set, the limit and the use now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QuotaUse {
    /// `MaxShellsPerUser`, `IdleTimeout`, …
    pub quota: String,
    /// Where it is set (`[quotas]`, `[[allow]] rule 2 (dc*)`).
    pub scope: String,
    /// The limit (`None`: none).
    pub limit: Option<u64>,
    /// Limit and use are seconds (a TimeSpan), not counts.
    pub seconds: bool,
    /// The use now, where it is a count or an elapsed time.
    pub used: Option<u64>,
    /// Whose use (Get-PSGateQuota -AllUsers; `None`: the relay's as a whole).
    pub user: Option<String>,
}

/// Any user's session, for a relay admin.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserSession {
    /// Its owner.
    pub owner: String,
    /// The session.
    pub info: SessionInfo,
    /// Seconds until IdleTimeout closes it (`None`: no such quota, or a command runs).
    pub idle_left_secs: Option<u64>,
    /// Seconds until MaxShellRunTime closes it.
    pub run_left_secs: Option<u64>,
}

/// An item of a WinRM computer's configuration on the `WSMan:` drive: a setting or a container.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WsmanItem {
    /// Its name (`MaxShellsPerUser`, `Shell`, `Quotas`).
    pub name: String,
    /// A setting's value.
    pub value: Option<String>,
    /// Where a setting's value comes from when not from WinRM's own configuration (`GPO`).
    pub source: Option<String>,
    /// A container (`Shell`, `Service`, `Plugin\<name>\Quotas`), not a setting.
    pub container: bool,
}

/// What a `WSMan:` path names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WsmanNode {
    /// A setting.
    Leaf(WsmanItem),
    /// A container and its children.
    Container(WsmanItem, Vec<WsmanItem>),
}

/// The user's sessions, as the prompt's cmdlets use them. Every method may block (the relay waits for targets);
/// none may panic.
pub trait Remoting {
    /// The user's sessions now.
    fn sessions(&mut self) -> Vec<SessionInfo>;
    /// New-PSSession: opens each target and waits until it is opened or has failed.
    fn open(&mut self, targets: Vec<Target>) -> Vec<Result<SessionInfo, RemoteError>>;
    /// Remove-PSSession: closes these sessions.
    fn remove(&mut self, ids: &[SessionId]) -> Result<(), RemoteError>;
    /// Disconnect-PSSession: waits until they are disconnected.
    fn disconnect(&mut self, ids: &[SessionId], idle_timeout_secs: Option<u32>, mode: Option<OutputBufferingMode>) -> Vec<Result<SessionInfo, RemoteError>>;
    /// Connect-PSSession: waits until they are opened again.
    fn connect(&mut self, ids: &[SessionId]) -> Vec<Result<SessionInfo, RemoteError>>;
    /// The shells a WinRM target keeps for these credentials (Get-PSSession -ComputerName).
    fn remote_shells(&mut self, target: &Target) -> Result<Vec<RemoteShell>, RemoteError>;
    /// Starts a run (Invoke-Command's fan-out, at most `throttle_limit` at once).
    fn start(&mut self, invocation: Invocation, tag_computer_name: bool) -> Result<RunId, RemoteError>;
    /// Receive-PSSession: follows what the session's last pipeline (one a Connect re-attached, or the one
    /// running) gives from its start.
    fn receive(&mut self, session: SessionId) -> Result<RunId, RemoteError>;
    /// Implicit remoting's discovery: GET_COMMAND_METADATA in a session for the commands `names` (wildcards) of
    /// the modules `modules` (none: any). The run's outputs are the answers: the count, then one object per
    /// command.
    fn command_metadata(&mut self, session: SessionId, names: &[String], modules: &[String]) -> Result<RunId, RemoteError>;
    /// The next event of a run, waiting at most `wait` (`None`: nothing yet).
    fn next_event(&mut self, run: RunId, wait: Duration) -> Option<RemoteEvent>;
    /// Answers a [`RemoteEvent::HostCall`].
    fn answer(&mut self, session: SessionId, pipeline: PipelineId, call_id: i64, answer: HostAnswer) -> Result<(), RemoteError>;
    /// Stops a run's pipelines (Ctrl+C, Stop-Job).
    fn stop(&mut self, run: RunId);
    /// Forgets a run (its events are no longer wanted).
    fn forget(&mut self, run: RunId);
    /// Whether `-ComputerName <computer>` means the relay's own machine over its local transport (the relay
    /// runs a local PowerShell and does not reach that name over WinRM): `New-PSSession -ComputerName localhost`
    /// then needs no credentials, as on Windows.
    fn local_computer(&mut self, computer: &str) -> bool {
        let _ = computer;
        false
    }
    /// The target a session was opened with (credentials included), for New-PSSession -Session; `None`: not
    /// known.
    fn target_of(&mut self, session: SessionId) -> Option<Target> {
        let _ = session;
        None
    }
    /// The relay's quotas for the user (`all_users`: every user's use; admins only).
    fn quotas(&mut self, all_users: bool) -> Result<Vec<QuotaUse>, RemoteError> {
        let _ = all_users;
        Err(RemoteError::new(psgate_shared::api::ErrorCode::NotSupported, "this prompt has no session quotas: it is not a relay's"))
    }
    /// A WinRM target's quotas against the user's use of it (`Get-PSGateQuota -ComputerName`).
    fn target_quotas(&mut self, computer: &str) -> Result<Vec<QuotaUse>, RemoteError> {
        let _ = computer;
        Err(RemoteError::new(psgate_shared::api::ErrorCode::NotSupported, "this prompt cannot reach a computer's WinRM configuration"))
    }
    /// Every user's sessions (admins only).
    fn user_sessions(&mut self) -> Result<Vec<UserSession>, RemoteError> {
        Err(RemoteError::new(psgate_shared::api::ErrorCode::NotSupported, "this prompt has no other users: it is not a relay's"))
    }
    /// Closes any user's session (admins only; audited).
    fn close_user_session(&mut self, owner: &str, session: SessionId) -> Result<(), RemoteError> {
        let _ = (owner, session);
        Err(RemoteError::new(psgate_shared::api::ErrorCode::NotSupported, "this prompt has no other users: it is not a relay's"))
    }
    /// `Get-Item WSMan:\<computer>\<path>`: an item of a WinRM computer's configuration (read with WS-Transfer
    /// Get, with the credentials of one of the user's WinRM sessions to it).
    fn wsman_get(&mut self, computer: &str, path: &[String]) -> Result<WsmanNode, RemoteError> {
        let _ = (computer, path);
        Err(RemoteError::new(psgate_shared::api::ErrorCode::NotSupported, "this prompt cannot reach a computer's WinRM configuration"))
    }
    /// `Set-Item WSMan:\<computer>\<path> <value>`: Get the resource, edit the setting, Put it back.
    fn wsman_set(&mut self, computer: &str, path: &[String], value: &str) -> Result<(), RemoteError> {
        let _ = (computer, path, value);
        Err(RemoteError::new(psgate_shared::api::ErrorCode::NotSupported, "this prompt cannot reach a computer's WinRM configuration"))
    }
    /// The time the quotas leave a session of the user: (idle, run) seconds; `None` each where none applies.
    fn time_left(&mut self, session: SessionId) -> (Option<u64>, Option<u64>) {
        let _ = session;
        (None, None)
    }
    /// The APPLICATION_PRIVATE_DATA the session's server sent (MS-PSRP 2.2.2.13): its `PSVersionTable`, and the
    /// `ImplicitRemoting.CommandsToSkip` an endpoint may declare; `None`: not known.
    fn application_private_data(&mut self, session: SessionId) -> Option<Value> {
        let _ = session;
        None
    }
}

/// The remoting side as a line sees it: the sessions' list read once and reused until the line changes them
/// (outputting 200 PSSessions refreshes each from one list, not from 200 copies of it).
pub(crate) struct Cached<'a> {
    inner: &'a mut dyn Remoting,
    sessions: Option<std::rc::Rc<Vec<SessionInfo>>>,
    /// The PSSession objects made from `sessions`, by id.
    objects: std::collections::HashMap<SessionId, Value>,
}

impl<'a> Cached<'a> {
    pub(crate) fn new(inner: &'a mut dyn Remoting) -> Cached<'a> {
        Cached { inner, sessions: None, objects: std::collections::HashMap::new() }
    }

    /// A session's PSSession object as it is now (`None`: no such session).
    pub(crate) fn object_of(&mut self, id: SessionId) -> Option<Value> {
        let list = self.list();
        if let Some(v) = self.objects.get(&id) {
            return Some(v.clone());
        }
        let v = crate::session::object(list.iter().find(|s| s.id == id)?);
        self.objects.insert(id, v.clone());
        Some(v)
    }

    /// The sessions, from the cache when nothing changed them since.
    pub(crate) fn list(&mut self) -> std::rc::Rc<Vec<SessionInfo>> {
        if let Some(s) = &self.sessions {
            return s.clone();
        }
        let s = std::rc::Rc::new(self.inner.sessions());
        self.sessions = Some(s.clone());
        s
    }

    fn changed(&mut self) -> &mut dyn Remoting {
        self.sessions = None;
        self.objects.clear();
        &mut *self.inner
    }
}

impl Remoting for Cached<'_> {
    fn sessions(&mut self) -> Vec<SessionInfo> {
        self.list().as_ref().clone()
    }
    fn open(&mut self, targets: Vec<Target>) -> Vec<Result<SessionInfo, RemoteError>> {
        self.changed().open(targets)
    }
    fn remove(&mut self, ids: &[SessionId]) -> Result<(), RemoteError> {
        self.changed().remove(ids)
    }
    fn disconnect(&mut self, ids: &[SessionId], idle: Option<u32>, mode: Option<OutputBufferingMode>) -> Vec<Result<SessionInfo, RemoteError>> {
        self.changed().disconnect(ids, idle, mode)
    }
    fn connect(&mut self, ids: &[SessionId]) -> Vec<Result<SessionInfo, RemoteError>> {
        self.changed().connect(ids)
    }
    fn remote_shells(&mut self, target: &Target) -> Result<Vec<RemoteShell>, RemoteError> {
        self.inner.remote_shells(target)
    }
    fn start(&mut self, invocation: Invocation, tag: bool) -> Result<RunId, RemoteError> {
        // A session's availability changes while its pipeline runs.
        self.changed().start(invocation, tag)
    }
    fn receive(&mut self, session: SessionId) -> Result<RunId, RemoteError> {
        self.changed().receive(session)
    }
    fn command_metadata(&mut self, session: SessionId, names: &[String], modules: &[String]) -> Result<RunId, RemoteError> {
        self.changed().command_metadata(session, names, modules)
    }
    fn next_event(&mut self, run: RunId, wait: Duration) -> Option<RemoteEvent> {
        let e = self.inner.next_event(run, wait);
        if matches!(e, Some(RemoteEvent::Finished { .. } | RemoteEvent::Done)) {
            self.sessions = None;
            self.objects.clear();
        }
        e
    }
    fn answer(&mut self, session: SessionId, pipeline: PipelineId, call_id: i64, answer: HostAnswer) -> Result<(), RemoteError> {
        self.inner.answer(session, pipeline, call_id, answer)
    }
    fn stop(&mut self, run: RunId) {
        self.changed().stop(run)
    }
    fn forget(&mut self, run: RunId) {
        self.inner.forget(run)
    }
    fn local_computer(&mut self, computer: &str) -> bool {
        self.inner.local_computer(computer)
    }
    fn application_private_data(&mut self, session: SessionId) -> Option<Value> {
        self.inner.application_private_data(session)
    }
    fn quotas(&mut self, all_users: bool) -> Result<Vec<QuotaUse>, RemoteError> {
        self.inner.quotas(all_users)
    }
    fn user_sessions(&mut self) -> Result<Vec<UserSession>, RemoteError> {
        self.inner.user_sessions()
    }
    fn target_quotas(&mut self, computer: &str) -> Result<Vec<QuotaUse>, RemoteError> {
        self.inner.target_quotas(computer)
    }
    fn close_user_session(&mut self, owner: &str, session: SessionId) -> Result<(), RemoteError> {
        self.changed().close_user_session(owner, session)
    }
    fn time_left(&mut self, session: SessionId) -> (Option<u64>, Option<u64>) {
        self.inner.time_left(session)
    }
    fn wsman_get(&mut self, computer: &str, path: &[String]) -> Result<WsmanNode, RemoteError> {
        self.inner.wsman_get(computer, path)
    }
    fn wsman_set(&mut self, computer: &str, path: &[String], value: &str) -> Result<(), RemoteError> {
        self.inner.wsman_set(computer, path, value)
    }
    fn target_of(&mut self, session: SessionId) -> Option<Target> {
        self.inner.target_of(session)
    }
}

/// The console the prompt writes to and asks.
pub trait Host {
    /// An output object of the line.
    fn output(&mut self, value: Value);
    /// A record: error, warning, verbose, debug, information, progress.
    fn record(&mut self, kind: RecordKind, value: Value);
    /// A host call the user answers (Get-Credential's dialog, a missing mandatory parameter's prompt, a remote
    /// pipeline's Read-Host). `None`: cancelled or stopped.
    fn call(&mut self, method: HostMethod, args: Vec<Value>) -> Option<HostAnswer>;
    /// Whether someone can answer [`Host::call`] (not when `psgate shell` reads a script from a pipe).
    fn interactive(&self) -> bool;
    /// Ctrl+C was pressed: the line should stop as soon as it can.
    fn stopping(&self) -> bool;
    /// Clear-Host.
    fn clear(&mut self);
    /// Writes a file on the user's machine (Export-PSSession's module), replacing one only with `force`: the
    /// path written. A console that is not on the user's machine cannot ([`SaveError::Unsupported`]).
    fn save(&mut self, path: &str, content: &str, force: bool) -> Result<String, SaveError> {
        let _ = (path, content, force);
        Err(SaveError::Unsupported)
    }
}

/// Why [`Host::save`] wrote nothing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SaveError {
    /// This console has no files of the user's to write.
    Unsupported,
    /// It could not (the reason, for the user).
    Failed(String),
}
