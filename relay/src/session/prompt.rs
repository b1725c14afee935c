//! psgate's own prompt (`PS psgate>`) in the relay: one [`Runspace`] per user, next to the user's sessions, so a
//! reload, a second tab or another browser of the same user sees the same `$session1`.
//!
//! A line runs on a blocking thread (the language core is synchronous and does no IO); its [`Remoting`] is the
//! [`Manager`] (sessions opened, listed, removed, disconnected, connected; pipelines run on many sessions with their
//! events read back from the sessions' buffers) and its [`Host`] is a pipeline [`Buffer`] of the pseudo-session
//! [`LOCAL_SESSION`], so a browser follows, resumes, stops and answers a line at the prompt exactly as a command in
//! a session. `psgate shell` uses the same code with the manager in-process.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use psgate_lang::{Host, Invocation, RemoteError, RemoteEvent, Remoting, RunId, Runspace, SaveError};
use psgate_shared::api::{
    Completion, ErrorCode, HostAnswer, LOCAL_SESSION, OutputBufferingMode, PipelineId, PipelineRecord, PipelineState, PromptModule, RecordKind, RemoteShell, ServerMessage,
    SessionId, SessionInfo, SessionState, Target,
};
use psgate_shared::clixml::{self, Value};
use psgate_shared::psrp::host::HostMethod;
use tokio::runtime::Handle;

use super::manager::{ApiError, Buffer, Manager, OPEN_TIMEOUT, PIPELINES_KEPT};
use crate::store::PromptPart;

/// The prompt shown for psgate's prompt.
pub const PROMPT: &str = "PS psgate>";
/// The computer of psgate's own prompt in the audit trail.
pub const PROMPT_COMPUTER: &str = "psgate";
/// How long a session may take to disconnect or connect before the prompt gives up waiting (it goes on).
const STATE_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a pipeline of Invoke-Command waits for a busy session to become available.
const BUSY_WAIT: Duration = Duration::from_secs(60);

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// One user's prompt.
#[derive(Debug, Default)]
pub struct UserPrompt {
    /// Held by the thread running a line, for the line's duration (lines run one at a time, as in a console).
    runspace: Mutex<Runspace>,
    /// The entered session, readable while a line runs.
    entered: Mutex<Option<SessionId>>,
    /// The modules Import-PSSession made, as the pages show them, readable while a line runs.
    modules: Mutex<Vec<PromptModule>>,
    /// The prompt's lines, the last [`PIPELINES_KEPT`].
    lines: Mutex<BTreeMap<PipelineId, Line>>,
    /// Runs of pipelines on sessions (Invoke-Command, jobs, Receive-PSSession); they outlive the line that
    /// started them (jobs).
    runs: Mutex<HashMap<u64, Arc<Run>>>,
    next_run: AtomicU64,
}

#[derive(Debug)]
struct Line {
    buffer: Arc<Buffer>,
    script: String,
    stop: Arc<AtomicBool>,
    /// Host calls waiting for the browser's answer.
    calls: Arc<Mutex<HashMap<i64, mpsc::Sender<HostAnswer>>>>,
}

#[derive(Debug)]
struct Run {
    events: Mutex<mpsc::Receiver<RemoteEvent>>,
    stop: Arc<AtomicBool>,
    /// The pipelines it started: stopped with it.
    pipelines: Arc<Mutex<Vec<(SessionId, PipelineId)>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Run {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Takes back `owner`'s prompt state from the store when this relay has no prompt for them yet (it took them over,
/// or restarted): their variables, history and modules as they were after their last line, and the session they
/// had entered if it is still open here (a WinRM session taken over; not one that could not move).
pub async fn take_back(manager: &Manager, owner: &str) {
    if lock(manager.prompts()).contains_key(owner) {
        return;
    }
    let state = manager.kept_prompt(PromptPart::State, owner).await;
    let modules = manager.kept_prompt(PromptPart::Modules, owner).await;
    if state.is_none() && modules.is_none() {
        return;
    }
    let prompt = UserPrompt::default();
    {
        let mut rs = lock(&prompt.runspace);
        if let Some(state) = state {
            match clixml::decode_message(state.as_bytes()) {
                Ok(state) => rs.restore_state(&state),
                Err(e) => tracing::warn!(%owner, error = %e, "the kept prompt state does not read"),
            }
        }
        if let Some(modules) = modules
            && let Err(e) = rs.restore_modules(&modules)
        {
            tracing::warn!(%owner, error = %e, "the kept prompt modules do not read");
        }
        let live = |id: SessionId| manager.list(owner, None, None).iter().any(|s| s.id == id && !matches!(s.state, SessionState::Broken | SessionState::Closed));
        if rs.entered().is_some_and(|e| !live(e.session)) {
            rs.leave();
        }
        *lock(&prompt.entered) = rs.entered().map(|e| e.session);
        *lock(&prompt.modules) = page_modules(&rs);
    }
    lock(manager.prompts()).entry(owner.to_owned()).or_insert_with(|| Arc::new(prompt));
}

/// The modules Import-PSSession made, as the pages show them.
fn page_modules(rs: &Runspace) -> Vec<PromptModule> {
    rs.modules().iter().map(|m| PromptModule { name: m.name.clone(), session: m.session, commands: m.proxies.iter().map(|p| p.name.clone()).collect() }).collect()
}

/// The user's prompt (made on first use).
pub fn of(manager: &Manager, owner: &str) -> Arc<UserPrompt> {
    lock(manager.prompts()).entry(owner.to_owned()).or_default().clone()
}

/// Runs a line at `owner`'s prompt; its events go to the returned buffer.
pub fn run(manager: &Arc<Manager>, owner: &str, line: String) -> Result<(PipelineId, Arc<Buffer>), ApiError> {
    let prompt = of(manager, owner);
    let pipeline = manager.next_pipeline();
    let buffer = Arc::new(Buffer::new());
    // The line at psgate's own prompt (session 0): what it ran on sessions is recorded by those sessions too.
    manager.audit_pipeline(&buffer, crate::audit::Event::pipeline(owner, owner, LOCAL_SESSION.0, PROMPT_COMPUTER, pipeline.0, &line));
    let stop = Arc::new(AtomicBool::new(false));
    let calls: Arc<Mutex<HashMap<i64, mpsc::Sender<HostAnswer>>>> = Arc::default();
    {
        let mut lines = lock(&prompt.lines);
        lines.insert(pipeline, Line { buffer: buffer.clone(), script: line.clone(), stop: stop.clone(), calls: calls.clone() });
        while lines.len() > PIPELINES_KEPT {
            lines.pop_first();
        }
    }
    let (manager, owner, out) = (manager.clone(), owner.to_owned(), buffer.clone());
    let handle = Handle::current();
    tokio::task::spawn_blocking(move || {
        let mut host = RelayHost { buffer: out.clone(), pipeline, stop, calls, next_call: 0, writes_files: manager.prompt_writes_files() };
        let (outcome, entered, modules, state, kept_modules) = {
            let mut rs = lock(&prompt.runspace);
            let mut remoting = RelayRemoting { manager: manager.clone(), owner: owner.clone(), prompt: prompt.clone(), handle: handle.clone() };
            let outcome = rs.run(&line, &mut remoting, &mut host);
            let modules = page_modules(&rs);
            let changed = *lock(&prompt.modules) != modules;
            (outcome, rs.entered().map(|e| e.session), modules, rs.saved_state(), changed.then(|| rs.saved_modules()))
        };
        // Kept for the relay that takes this user over (or this one, restarted).
        let _guard = handle.enter();
        match clixml::encode_message(&state) {
            Ok(text) => manager.keep_prompt(PromptPart::State, &owner, &text),
            Err(e) => tracing::warn!(%owner, error = %e, "the prompt's state cannot be kept"),
        }
        if let Some(kept) = kept_modules {
            manager.keep_prompt(PromptPart::Modules, &owner, &kept);
            *lock(&prompt.modules) = modules.clone();
            manager.publish_to(&owner, ServerMessage::PromptModules { modules });
        }
        let changed = {
            let mut e = lock(&prompt.entered);
            let changed = *e != entered;
            *e = entered;
            changed
        };
        if changed {
            manager.publish_to(&owner, ServerMessage::PromptState { entered });
        }
        tracing::debug!(%owner, pipeline = pipeline.0, state = ?outcome.state, "prompt line ended");
        out.push(|seq| ServerMessage::PipelineState { session: LOCAL_SESSION, pipeline, seq, state: outcome.state, error: None });
    });
    Ok((pipeline, buffer))
}

impl UserPrompt {
    /// The modules Import-PSSession made.
    pub fn modules(&self) -> Vec<PromptModule> {
        lock(&self.modules).clone()
    }

    /// The session Enter-PSSession entered.
    pub fn entered(&self) -> Option<SessionId> {
        *lock(&self.entered)
    }

    /// A line's buffer, to follow it.
    pub fn buffer(&self, pipeline: PipelineId) -> Result<Arc<Buffer>, ApiError> {
        lock(&self.lines).get(&pipeline).map(|l| l.buffer.clone()).ok_or_else(|| unknown(pipeline))
    }

    /// Ctrl+C on a line.
    pub fn stop(&self, pipeline: PipelineId) -> Result<(), ApiError> {
        let lines = lock(&self.lines);
        let line = lines.get(&pipeline).ok_or_else(|| unknown(pipeline))?;
        line.stop.store(true, Ordering::SeqCst);
        Ok(())
    }

    /// Stops every line (the relay is stopping).
    pub fn stop_all(&self) {
        for line in lock(&self.lines).values() {
            line.stop.store(true, Ordering::SeqCst);
        }
        for run in lock(&self.runs).values() {
            run.stop.store(true, Ordering::SeqCst);
        }
    }

    /// The browser's answer to a host call of a line.
    pub fn answer(&self, pipeline: PipelineId, call_id: i64, answer: HostAnswer) -> Result<(), ApiError> {
        let calls = lock(&self.lines).get(&pipeline).map(|l| l.calls.clone()).ok_or_else(|| unknown(pipeline))?;
        let waiting = lock(&calls).remove(&call_id);
        match waiting {
            Some(tx) => {
                let _ = tx.send(answer);
                Ok(())
            }
            None => Err(ApiError { code: ErrorCode::BadMessage, message: format!("no host call {call_id} is waiting in pipeline {}", pipeline.0) }),
        }
    }

    /// The lines kept, oldest first, with their buffers.
    pub fn history(&self) -> Vec<(PipelineRecord, Arc<Buffer>)> {
        lock(&self.lines)
            .iter()
            .map(|(&pipeline, l)| {
                let record = PipelineRecord { session: LOCAL_SESSION, pipeline, script: l.script.clone(), prompt: PROMPT.into(), invocation: None, finished: l.buffer.outcome().is_some() };
                (record, l.buffer.clone())
            })
            .collect()
    }

    /// Tab completion at the prompt (`cursor` in UTF-16 code units): empty while a line runs.
    pub fn complete(&self, sessions: &[SessionInfo], input: &str, cursor: u32) -> ServerMessage {
        let byte = utf16_to_byte(input, cursor as usize);
        let found = match self.runspace.try_lock() {
            Ok(rs) => psgate_lang::complete(&rs, sessions, input, byte),
            Err(std::sync::TryLockError::Poisoned(p)) => psgate_lang::complete(&p.into_inner(), sessions, input, byte),
            Err(std::sync::TryLockError::WouldBlock) => psgate_lang::Completions::default(),
        };
        let matches: Vec<Completion> = found.matches;
        ServerMessage::Completions { session: LOCAL_SESSION, input: input.to_owned(), cursor, replacement_index: found.replacement_index, replacement_length: found.replacement_length, matches }
    }

    /// A session was removed elsewhere (the sessions panel): the prompt leaves it if it had entered it. `true`
    /// when that changed the prompt's state.
    pub fn session_gone(&self, id: SessionId) -> bool {
        let mut entered = lock(&self.entered);
        if *entered != Some(id) {
            return false;
        }
        // A line that is running has the runspace: Remove-PSSession there leaves it itself.
        if let Ok(mut rs) = self.runspace.try_lock() {
            rs.leave();
        }
        *entered = None;
        true
    }
}

fn unknown(pipeline: PipelineId) -> ApiError {
    ApiError { code: ErrorCode::UnknownPipeline, message: format!("psgate's prompt has no pipeline {}", pipeline.0) }
}

/// A UTF-16 index into `s` as a byte offset (clamped).
fn utf16_to_byte(s: &str, units: usize) -> usize {
    let mut count = 0;
    for (i, c) in s.char_indices() {
        if count >= units {
            return i;
        }
        count += c.len_utf16();
    }
    s.len()
}

/// The console of a line: its pipeline buffer.
struct RelayHost {
    buffer: Arc<Buffer>,
    pipeline: PipelineId,
    stop: Arc<AtomicBool>,
    calls: Arc<Mutex<HashMap<i64, mpsc::Sender<HostAnswer>>>>,
    next_call: i64,
    /// Files may be written on this machine (`psgate shell`).
    writes_files: bool,
}

impl Host for RelayHost {
    fn save(&mut self, path: &str, content: &str, force: bool) -> Result<String, SaveError> {
        if !self.writes_files {
            return Err(SaveError::Unsupported);
        }
        let path = std::path::Path::new(path);
        let fail = |e: std::io::Error| SaveError::Failed(e.to_string());
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(fail)?;
        }
        let mut options = std::fs::OpenOptions::new();
        options.write(true);
        if force {
            options.create(true).truncate(true);
        } else {
            options.create_new(true);
        }
        let mut file = options.open(path).map_err(|e| match e.kind() {
            std::io::ErrorKind::AlreadyExists => SaveError::Failed(format!("the file '{}' already exists (use -Force to overwrite it)", path.display())),
            _ => fail(e),
        })?;
        std::io::Write::write_all(&mut file, content.as_bytes()).map_err(fail)?;
        Ok(std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf()).display().to_string())
    }

    fn output(&mut self, value: Value) {
        match clixml::encode_message(&value) {
            Ok(text) => {
                let pipeline = self.pipeline;
                self.buffer.push(|seq| ServerMessage::Output { session: LOCAL_SESSION, pipeline, seq, clixml: text });
            }
            Err(e) => tracing::warn!(error = %e, "an output object of the prompt could not be encoded"),
        }
    }

    fn record(&mut self, kind: RecordKind, value: Value) {
        if let Ok(text) = clixml::encode_message(&value) {
            let pipeline = self.pipeline;
            self.buffer.push(|seq| ServerMessage::Record { session: LOCAL_SESSION, pipeline, seq, kind, clixml: text });
        }
    }

    fn call(&mut self, method: HostMethod, args: Vec<Value>) -> Option<HostAnswer> {
        self.next_call += 1;
        let call_id = self.next_call;
        let (tx, rx) = mpsc::channel();
        lock(&self.calls).insert(call_id, tx);
        let args: Vec<String> = args.iter().filter_map(|a| clixml::encode_message(a).ok()).collect();
        let pipeline = self.pipeline;
        self.buffer.push(|seq| ServerMessage::HostCall { session: LOCAL_SESSION, pipeline, seq, call_id, method: method.name().to_owned(), args });
        loop {
            match rx.recv_timeout(Duration::from_millis(100)) {
                Ok(answer) => return Some(answer),
                Err(mpsc::RecvTimeoutError::Timeout) if !self.stopping() => {}
                Err(_) => {
                    lock(&self.calls).remove(&call_id);
                    return None;
                }
            }
        }
    }

    fn interactive(&self) -> bool {
        true
    }

    fn stopping(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    fn clear(&mut self) {
        // Clear-Host is PowerShell's `$RawUI.SetBufferContents(@{Top=-1; …}, …)`: a void host call the console
        // answers by clearing itself.
        let pipeline = self.pipeline;
        // A negative call id: nothing to answer, as for any void host call.
        self.buffer.push(|seq| ServerMessage::HostCall { session: LOCAL_SESSION, pipeline, seq, call_id: -1, method: HostMethod::SetBufferContents1.name().to_owned(), args: Vec::new() });
    }
}

/// The manager, as the prompt's cmdlets see it: blocking calls from the line's thread.
struct RelayRemoting {
    manager: Arc<Manager>,
    owner: String,
    prompt: Arc<UserPrompt>,
    handle: Handle,
}

fn remote_error(e: ApiError) -> RemoteError {
    RemoteError::new(e.code, e.message)
}

impl RelayRemoting {
    /// Waits until every session in `ids` satisfies `done` (or is gone), at most `limit`.
    fn wait_for(&self, ids: &[SessionId], limit: Duration, done: impl Fn(&SessionInfo) -> bool) -> Vec<Option<SessionInfo>> {
        let manager = self.manager.clone();
        let owner = self.owner.clone();
        let mut changes = manager.changes();
        self.handle.block_on(async {
            let deadline = tokio::time::Instant::now() + limit;
            loop {
                let all = manager.list(&owner, None, None);
                let now: Vec<Option<SessionInfo>> = ids.iter().map(|id| all.iter().find(|s| s.id == *id).cloned()).collect();
                if now.iter().all(|s| s.as_ref().is_none_or(&done)) || tokio::time::Instant::now() >= deadline {
                    return now;
                }
                let _ = tokio::time::timeout(Duration::from_millis(100), changes.recv()).await;
            }
        })
    }
}

impl Remoting for RelayRemoting {
    fn sessions(&mut self) -> Vec<SessionInfo> {
        self.manager.list(&self.owner, None, None)
    }

    fn open(&mut self, targets: Vec<Target>) -> Vec<Result<SessionInfo, RemoteError>> {
        let mut changes = self.manager.changes();
        let created: Vec<Result<SessionInfo, RemoteError>> = targets
            .into_iter()
            .map(|t| {
                self.handle.block_on(self.manager.admit_user(&self.owner)).and_then(|()| self.manager.create(&self.owner, t)).map_err(remote_error)
            })
            .collect();
        let ids: Vec<SessionId> = created.iter().filter_map(|r| r.as_ref().ok().map(|i| i.id)).collect();
        let manager = self.manager.clone();
        let owner = self.owner.clone();
        // The reasons targets gave, by computer (the manager reports them as `target_refused`).
        let mut refusals: Vec<(String, ErrorCode, String)> = Vec::new();
        let settled = self.handle.block_on(async {
            let deadline = tokio::time::Instant::now() + OPEN_TIMEOUT + Duration::from_secs(5);
            loop {
                let all = manager.list(&owner, None, None);
                let now: Vec<Option<SessionInfo>> = ids.iter().map(|id| all.iter().find(|s| s.id == *id).cloned()).collect();
                if now.iter().all(|s| s.as_ref().is_none_or(|s| s.state != SessionState::Opening)) || tokio::time::Instant::now() >= deadline {
                    // A target's refusal is published before its session turns Broken: those not read yet are
                    // waiting here.
                    while let Ok(change) = changes.try_recv() {
                        if change.owner == owner
                            && let ServerMessage::TargetRefused { computer_name, code, message } = change.message
                        {
                            refusals.push((computer_name, code, message));
                        }
                    }
                    return now;
                }
                match tokio::time::timeout(Duration::from_millis(100), changes.recv()).await {
                    Ok(Ok(change)) if change.owner == owner => {
                        if let ServerMessage::TargetRefused { computer_name, code, message } = change.message {
                            refusals.push((computer_name, code, message));
                        }
                    }
                    _ => {}
                }
            }
        });
        let mut failed: Vec<SessionId> = Vec::new();
        let mut settled = settled.into_iter();
        let results = created
            .into_iter()
            .map(|r| {
                let info = r?;
                let now = settled.next().flatten();
                match now {
                    Some(s) if s.state == SessionState::Opened => Ok(s),
                    other => {
                        failed.push(info.id);
                        let reason = other.as_ref().and_then(|s| s.reason.clone());
                        let refusal = refusals.iter().position(|(c, _, _)| c.eq_ignore_ascii_case(&info.computer_name)).map(|i| refusals.remove(i));
                        Err(match (refusal, other) {
                            (Some((_, code, message)), _) => RemoteError::new(code, message),
                            (None, Some(s)) if s.state == SessionState::Opening => RemoteError::new(ErrorCode::TargetFailed, format!("the session did not open within {} s", OPEN_TIMEOUT.as_secs())),
                            (None, _) => RemoteError::new(ErrorCode::TargetFailed, reason.unwrap_or_else(|| "the session could not be opened".into())),
                        })
                    }
                }
            })
            .collect();
        // As New-PSSession: a session that did not open is not kept.
        if !failed.is_empty()
            && let Ok(removed) = self.manager.remove(&self.owner, Some(&failed))
        {
            self.handle.block_on(removed.closed(Duration::from_secs(5)));
        }
        results
    }

    fn remove(&mut self, ids: &[SessionId]) -> Result<(), RemoteError> {
        let removed = self.manager.remove(&self.owner, Some(ids)).map_err(remote_error)?;
        self.handle.block_on(removed.closed(Duration::from_secs(10)));
        Ok(())
    }

    fn disconnect(&mut self, ids: &[SessionId], idle: Option<u32>, mode: Option<OutputBufferingMode>) -> Vec<Result<SessionInfo, RemoteError>> {
        if let Err(e) = self.manager.disconnect(&self.owner, ids, idle.map(|s| Duration::from_secs(u64::from(s))), mode) {
            return ids.iter().map(|_| Err(remote_error(e.clone()))).collect();
        }
        let now = self.wait_for(ids, STATE_TIMEOUT, |s| matches!(s.state, SessionState::Disconnected | SessionState::Broken | SessionState::Closed));
        settled(now, SessionState::Disconnected)
    }

    fn connect(&mut self, ids: &[SessionId]) -> Vec<Result<SessionInfo, RemoteError>> {
        if let Err(e) = self.manager.connect(&self.owner, ids) {
            return ids.iter().map(|_| Err(remote_error(e.clone()))).collect();
        }
        // A connect first leaves Disconnected (the state changes when the target has answered).
        let now = self.wait_for(ids, STATE_TIMEOUT, |s| matches!(s.state, SessionState::Opened | SessionState::Broken | SessionState::Closed) || (s.state == SessionState::Disconnected && s.reason.is_some()));
        settled(now, SessionState::Opened)
    }

    fn remote_shells(&mut self, target: &Target) -> Result<Vec<RemoteShell>, RemoteError> {
        let (manager, owner) = (self.manager.clone(), self.owner.clone());
        self.handle.block_on(async move { manager.remote_shells(&owner, target).await }).map_err(remote_error)
    }

    fn start(&mut self, invocation: Invocation, tag: bool) -> Result<RunId, RemoteError> {
        let id = self.prompt.next_run.fetch_add(1, Ordering::Relaxed) + 1;
        let (tx, rx) = mpsc::channel();
        let stop = Arc::new(AtomicBool::new(false));
        let pipelines: Arc<Mutex<Vec<(SessionId, PipelineId)>>> = Arc::default();
        let task = self.handle.spawn(fan_out(self.manager.clone(), self.owner.clone(), invocation, tag, tx, stop.clone(), pipelines.clone()));
        lock(&self.prompt.runs).insert(id, Arc::new(Run { events: Mutex::new(rx), stop, pipelines, task }));
        Ok(RunId(id))
    }

    fn receive(&mut self, session: SessionId) -> Result<RunId, RemoteError> {
        let (pipelines, _) = self.manager.history(&self.owner);
        let (record, buffer) = pipelines
            .into_iter()
            .rfind(|(r, _)| r.session == session)
            .ok_or_else(|| RemoteError::new(ErrorCode::UnknownPipeline, format!("session {} has no command to receive output from", session.0)))?;
        let id = self.prompt.next_run.fetch_add(1, Ordering::Relaxed) + 1;
        let (tx, rx) = mpsc::channel();
        let stop = Arc::new(AtomicBool::new(false));
        let pipelines: Arc<Mutex<Vec<(SessionId, PipelineId)>>> = Arc::new(Mutex::new(vec![(session, record.pipeline)]));
        let computer = self.manager.computer_name(&self.owner, session).unwrap_or_default();
        let (manager, owner, flag) = (self.manager.clone(), self.owner.clone(), stop.clone());
        let task = self.handle.spawn(async move {
            let _ = tx.send(RemoteEvent::Started { session, computer_name: computer.clone(), pipeline: record.pipeline });
            follow(&manager, &owner, session, &computer, record.pipeline, &buffer, &tx, &flag).await;
            let _ = tx.send(RemoteEvent::Done);
        });
        lock(&self.prompt.runs).insert(id, Arc::new(Run { events: Mutex::new(rx), stop, pipelines, task }));
        Ok(RunId(id))
    }

    fn command_metadata(&mut self, session: SessionId, names: &[String], modules: &[String]) -> Result<RunId, RemoteError> {
        let id = self.prompt.next_run.fetch_add(1, Ordering::Relaxed) + 1;
        let (tx, rx) = mpsc::channel();
        let stop = Arc::new(AtomicBool::new(false));
        let computer = self.manager.computer_name(&self.owner, session).map_err(remote_error)?;
        // A session busy with another command: this waits for it, as a runspace pool queues.
        let waited = std::time::Instant::now();
        let (pipeline, buffer) = loop {
            match self.manager.command_metadata(&self.owner, session, names.to_vec(), modules.to_vec()) {
                Ok(p) => break p,
                Err(e) if e.code == ErrorCode::SessionNotReady && waited.elapsed() < BUSY_WAIT && busy(&self.manager, &self.owner, session) => {
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err(e) => return Err(remote_error(e)),
            }
        };
        let pipelines: Arc<Mutex<Vec<(SessionId, PipelineId)>>> = Arc::new(Mutex::new(vec![(session, pipeline)]));
        let (manager, owner, flag) = (self.manager.clone(), self.owner.clone(), stop.clone());
        let task = self.handle.spawn(async move {
            let _ = tx.send(RemoteEvent::Started { session, computer_name: computer.clone(), pipeline });
            follow(&manager, &owner, session, &computer, pipeline, &buffer, &tx, &flag).await;
            let _ = tx.send(RemoteEvent::Done);
        });
        lock(&self.prompt.runs).insert(id, Arc::new(Run { events: Mutex::new(rx), stop, pipelines, task }));
        Ok(RunId(id))
    }

    fn next_event(&mut self, run: RunId, wait: Duration) -> Option<RemoteEvent> {
        let Some(r) = lock(&self.prompt.runs).get(&run.0).cloned() else { return Some(RemoteEvent::Done) };
        let events = lock(&r.events);
        match events.recv_timeout(wait) {
            Ok(e) => Some(e),
            Err(mpsc::RecvTimeoutError::Timeout) => None,
            Err(mpsc::RecvTimeoutError::Disconnected) => Some(RemoteEvent::Done),
        }
    }

    fn answer(&mut self, session: SessionId, pipeline: PipelineId, call_id: i64, answer: HostAnswer) -> Result<(), RemoteError> {
        self.manager.answer(&self.owner, session, pipeline, call_id, answer).map_err(remote_error)
    }

    fn stop(&mut self, run: RunId) {
        let Some(r) = lock(&self.prompt.runs).get(&run.0).cloned() else { return };
        r.stop.store(true, Ordering::SeqCst);
        for (session, pipeline) in lock(&r.pipelines).iter() {
            let _ = self.manager.stop(&self.owner, *session, *pipeline);
        }
    }

    fn forget(&mut self, run: RunId) {
        lock(&self.prompt.runs).remove(&run.0);
    }

    fn local_computer(&mut self, computer: &str) -> bool {
        self.manager.local_computer(computer)
    }

    fn target_of(&mut self, session: SessionId) -> Option<Target> {
        self.manager.target_of(&self.owner, session).ok()
    }

    fn application_private_data(&mut self, session: SessionId) -> Option<Value> {
        self.manager.application_private_data(&self.owner, session)
    }

    fn quotas(&mut self, all_users: bool) -> Result<Vec<psgate_lang::QuotaUse>, RemoteError> {
        self.handle.block_on(self.manager.quota_use(&self.owner, all_users)).map_err(remote_error)
    }

    fn user_sessions(&mut self) -> Result<Vec<psgate_lang::UserSession>, RemoteError> {
        self.handle.block_on(self.manager.user_sessions(&self.owner)).map_err(remote_error)
    }

    fn close_user_session(&mut self, owner: &str, session: SessionId) -> Result<(), RemoteError> {
        let removed = self.handle.block_on(self.manager.admin_close(&self.owner, owner, session)).map_err(remote_error)?;
        // As Remove-PSSession: the line ends once the target has closed it.
        self.handle.block_on(removed.closed(Duration::from_secs(10)));
        Ok(())
    }

    fn time_left(&mut self, session: SessionId) -> (Option<u64>, Option<u64>) {
        self.manager.time_left(&self.owner, session)
    }

    fn target_quotas(&mut self, computer: &str) -> Result<Vec<psgate_lang::QuotaUse>, RemoteError> {
        let manager = self.manager.clone();
        self.handle.block_on(manager.target_quota_use(&self.owner, computer)).map_err(remote_error)
    }

    fn wsman_get(&mut self, computer: &str, path: &[String]) -> Result<psgate_lang::WsmanNode, RemoteError> {
        let manager = self.manager.clone();
        self.handle.block_on(manager.wsman_get(&self.owner, computer, path)).map_err(remote_error)
    }

    fn wsman_set(&mut self, computer: &str, path: &[String], value: &str) -> Result<(), RemoteError> {
        let manager = self.manager.clone();
        self.handle.block_on(manager.wsman_set(&self.owner, computer, path, value)).map_err(remote_error)
    }
}

/// Sessions after a disconnect or connect: those in `want`, else why not.
fn settled(now: Vec<Option<SessionInfo>>, want: SessionState) -> Vec<Result<SessionInfo, RemoteError>> {
    now.into_iter()
        .map(|s| match s {
            Some(s) if s.state == want => Ok(s),
            Some(s) => Err(RemoteError::new(ErrorCode::TargetFailed, s.reason.unwrap_or_else(|| format!("the session is {:?}", s.state).to_lowercase()))),
            None => Err(RemoteError::new(ErrorCode::UnknownSession, "the session is gone")),
        })
        .collect()
}

fn record_of(message: &str, id: &str) -> Value {
    psgate_lang::ErrorSpec {
        message: message.to_owned(),
        id: id.to_owned(),
        category: psgate_lang::Category::InvalidOperation,
        exception: "System.InvalidOperationException",
        target: None,
        activity: "Invoke-Command".into(),
        position: None,
    }
    .record()
}

/// Invoke-Command's fan-out for the prompt: each session's pipeline (at most `throttle_limit` at once), its events
/// read from the session's buffer and sent on `tx` as they come.
async fn fan_out(
    manager: Arc<Manager>,
    owner: String,
    invocation: Invocation,
    tag: bool,
    tx: mpsc::Sender<RemoteEvent>,
    stop: Arc<AtomicBool>,
    started: Arc<Mutex<Vec<(SessionId, PipelineId)>>>,
) {
    use futures_util::stream::{self, StreamExt as _};
    let Invocation { sessions, pipeline: spec, throttle_limit, text, input } = invocation;
    let one = |session: SessionId| {
        let (manager, owner, spec, text, tx, stop, started, input) = (manager.clone(), owner.clone(), spec.clone(), text.clone(), tx.clone(), stop.clone(), started.clone(), input.clone());
        async move {
            let computer = manager.computer_name(&owner, session).unwrap_or_default();
            if stop.load(Ordering::SeqCst) {
                let _ = tx.send(RemoteEvent::Finished { session, computer_name: computer, state: PipelineState::Stopped, error: None });
                return;
            }
            // A session busy with another command: this one waits for it, as a runspace pool queues.
            let waited = tokio::time::Instant::now();
            let (pipeline, buffer) = loop {
                match manager.run_for_prompt(&owner, session, spec.clone(), input.clone(), text.clone(), tag) {
                    Ok(p) => break p,
                    Err(e) if e.code == ErrorCode::SessionNotReady && waited.elapsed() < BUSY_WAIT && !stop.load(Ordering::SeqCst) && busy(&manager, &owner, session) => {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    Err(e) => {
                        let message = format!("[{computer}] {}", e.message);
                        let _ = tx.send(RemoteEvent::Finished { session, computer_name: computer, state: PipelineState::Failed, error: Some(record_of(&message, "InvokeCommandSessionNotAvailable")) });
                        return;
                    }
                }
            };
            lock(&started).push((session, pipeline));
            let _ = tx.send(RemoteEvent::Started { session, computer_name: computer.clone(), pipeline });
            follow(&manager, &owner, session, &computer, pipeline, &buffer, &tx, &stop).await;
        }
    };
    stream::iter(sessions).map(one).buffer_unordered(throttle_limit.max(1) as usize).collect::<Vec<()>>().await;
    let _ = tx.send(RemoteEvent::Done);
}

/// Whether a session is open and busy (not broken, closed or disconnected).
/// Whether a session that refused a command will take it soon: opened and busy, or still opening (a session a relay
/// is taking over is Opening until its Connect is answered).
fn busy(manager: &Manager, owner: &str, session: SessionId) -> bool {
    manager.list(owner, None, None).iter().any(|s| s.id == session && matches!(s.state, SessionState::Opened | SessionState::Opening))
}

/// Sends a pipeline's events as remote events until its last; stops it when `stop` is set.
#[allow(clippy::too_many_arguments)]
async fn follow(manager: &Manager, owner: &str, session: SessionId, computer: &str, pipeline: PipelineId, buffer: &Buffer, tx: &mpsc::Sender<RemoteEvent>, stop: &AtomicBool) {
    let mut changed = buffer.subscribe();
    let reader = buffer.reader(0);
    let mut cursor = 0;
    let mut stopped = false;
    loop {
        if !stopped && stop.load(Ordering::SeqCst) {
            stopped = true;
            let _ = manager.stop(owner, session, pipeline);
        }
        let batch = buffer.read(cursor, 128);
        let empty = batch.events.is_empty();
        for event in batch.events {
            cursor = event.seq().unwrap_or(cursor);
            let remote = match event {
                ServerMessage::Output { clixml, .. } => decode(&clixml).map(|value| RemoteEvent::Output { session, value }),
                ServerMessage::Record { kind, clixml, .. } => decode(&clixml).map(|value| RemoteEvent::Record { session, kind, value }),
                ServerMessage::HostCall { call_id, method, args, .. } => {
                    let method = (1..=56).filter_map(HostMethod::from_id).find(|m| m.name() == method);
                    method.map(|method| RemoteEvent::HostCall { session, pipeline, call_id, method, args: args.iter().filter_map(|a| decode(a)).collect() })
                }
                ServerMessage::PipelineState { state, error, .. } if state.is_terminal() => {
                    let error = error.as_deref().and_then(decode);
                    Some(RemoteEvent::Finished { session, computer_name: computer.to_owned(), state, error })
                }
                _ => None,
            };
            if let Some(e) = remote
                && tx.send(e).is_err()
            {
                return;
            }
        }
        reader.advance(cursor);
        if batch.finished {
            return;
        }
        if empty && tokio::time::timeout(Duration::from_millis(100), changed.changed()).await.is_ok_and(|r| r.is_err()) {
            let _ = tx.send(RemoteEvent::Finished { session, computer_name: computer.to_owned(), state: PipelineState::Failed, error: Some(record_of("the session ended", "SessionEnded")) });
            return;
        }
    }
}

fn decode(text: &str) -> Option<Value> {
    clixml::decode_message(text.as_bytes()).ok()
}
