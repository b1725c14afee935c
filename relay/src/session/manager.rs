//! The session manager: the relay's PowerShell sessions, owned by users, alive independently of browser
//! connections.
//!
//! Each session is a task ([`drive`]) that owns an out-of-process [`Session`] over SSH or a local process. It
//! takes [`Command`]s and writes every pipeline's events into that pipeline's [`Buffer`]: bounded, numbered from
//! 1, so any number of WebSocket connections follow it from any point (`attach … after_seq`) without losing or
//! repeating an event. Progress is coalesced: the latest record of each activity, flushed at most every
//! [`PROGRESS_INTERVAL`], so a target that writes progress in a tight loop never floods a browser.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::ffi::OsString;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use psgate_shared::api::{
    LOCAL_SESSION, Availability, Completion, DEFAULT_THROTTLE_LIMIT, OutputBufferingMode, RemoteShell, WinrmAuth, ErrorCode, InvocationRecord, InvokeHost, PipelineRecord, FieldAnswer, HostAnswer, InvocationId, PipelineId, PipelineState, RecordKind, ServerMessage, SessionId, SessionInfo, SessionState, Target, Transport, Share, ShareRole, SharedSession,
};
use psgate_shared::clixml::{self, Content, Object, Property, Value};
use psgate_shared::psrp::host::{HostCall, HostMethod, HostResult};
use psgate_shared::psrp::messages::{self, ErrorRecordView, PipelineSpec, PipelineState as PsrpPipelineState, PoolState};
use psgate_shared::psrp::outofproc::{ClientEvent, OutOfProcClient};
use psgate_shared::psrp::pool::{self, Event, PoolConfig, RunspacePool};
use psgate_lang::remote as lang_quota;
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use uuid::Uuid;

use super::outofproc::Session;
use super::winrm::{self as winrm_session, ShellRecord, WinrmTarget};
use crate::unix_ms;
use crate::config::Config;
use crate::seal::Sealer;
use crate::store::{PinnedRow, PromptPart, RelayRow, Store, WinrmSessionRow};
use crate::transport::winrm::{AuthMethod, Endpoint, TlsVerification, WinrmError, WinrmOptions};
use crate::transport::{local, ssh};
use crate::wsman::configuration_uri;

/// Events kept per pipeline; older ones are dropped (an `attach` before them gets `output_dropped`).
pub const BUFFER_EVENTS: usize = 10_000;
/// Pipelines kept per session (finished ones beyond this are forgotten, oldest first).
pub const PIPELINES_KEPT: usize = 32;
/// How often coalesced progress is forwarded.
pub const PROGRESS_INTERVAL: Duration = Duration::from_millis(250);
/// How long connecting and opening a session may take.
pub const OPEN_TIMEOUT: Duration = Duration::from_secs(30);
/// Changes queued for each listener before a slow one lags: room for an Invoke-Command over hundreds of
/// sessions (two messages each).
pub const CHANGES_KEPT: usize = 8192;

/// How often a session under the IdleTimeout or MaxShellRunTime quota is sent to its pages again (its time left).
const QUOTA_REFRESH: Duration = Duration::from_secs(60);
/// How long the relay's own pipelines (the prompt, tab completion) may run before they are stopped.
pub const INTERNAL_TIMEOUT: Duration = Duration::from_secs(10);

/// An error the browser sees as `error {code, message}`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ApiError {
    /// The stable code.
    pub code: ErrorCode,
    /// For people.
    pub message: String,
}

impl ApiError {
    fn new(code: ErrorCode, message: impl Into<String>) -> ApiError {
        ApiError { code, message: message.into() }
    }

    /// As a message.
    pub fn to_message(&self) -> ServerMessage {
        ServerMessage::error(self.code, self.message.clone())
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // The guarded data stays consistent between statements; a panicked holder does not poison the relay.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// One pipeline's events, numbered from 1, the last [`BUFFER_EVENTS`] of them kept.
///
/// Backpressure: while a live [`Reader`] (a browser following the pipeline) has not read the oldest event of a full
/// buffer, [`Buffer::must_wait`] says so and the session's task takes no more events from the target (whose output
/// then waits at the target, as PowerShell's Block mode does). Only when nobody follows does a full buffer drop its
/// oldest events (a page that comes back later is told how many it missed).
#[derive(Debug)]
pub struct Buffer {
    /// The most output it keeps, in bytes (the session's MaxMemoryPerShellMB).
    max_bytes: usize,
    inner: Mutex<BufferInner>,
    /// The last sequence number written (subscribers wait on it).
    last: watch::Sender<u64>,
    /// Live readers: their id and the last sequence number each has read.
    readers: Mutex<HashMap<u64, u64>>,
    next_reader: std::sync::atomic::AtomicU64,
    /// A reader moved on or went away.
    room: tokio::sync::Notify,
}

/// A live reader of a [`Buffer`] (see there); it stops counting when dropped.
#[derive(Debug)]
pub struct Reader<'a> {
    buffer: &'a Buffer,
    id: u64,
}

impl Reader<'_> {
    /// Everything up to `seq` has been delivered.
    pub fn advance(&self, seq: u64) {
        if let Some(cursor) = lock(&self.buffer.readers).get_mut(&self.id) {
            *cursor = seq.max(*cursor);
        }
        self.buffer.room.notify_waiters();
    }
}

impl Drop for Reader<'_> {
    fn drop(&mut self) {
        lock(&self.buffer.readers).remove(&self.id);
        self.buffer.room.notify_waiters();
    }
}

/// What an event counts against the MaxMemoryPerShellMB quota: its objects' CLIXML (and a little for the rest).
fn event_bytes(event: &ServerMessage) -> usize {
    match event {
        ServerMessage::Output { clixml, .. } | ServerMessage::Record { clixml, .. } => clixml.len() + 64,
        _ => 64,
    }
}

#[derive(Debug, Default)]
struct BufferInner {
    events: VecDeque<ServerMessage>,
    /// What `events` count against the byte bound.
    bytes: usize,
    /// The sequence number of `events[0]`.
    first: u64,
    finished: bool,
    /// The pipeline's audit record, while it is made.
    tap: Option<Box<crate::audit::Tap>>,
}

/// What [`Buffer::read`] found.
#[derive(Debug)]
pub struct Batch {
    /// Events after the cursor, in order.
    pub events: Vec<ServerMessage>,
    /// Events between the cursor and the first of `events` that were dropped (how many).
    pub dropped: u64,
    /// The pipeline has ended and nothing follows `events`.
    pub finished: bool,
}

impl Buffer {
    pub(super) fn new() -> Buffer {
        Buffer::with_limit(None)
    }

    /// A buffer that also keeps at most `max_bytes` of output (the MaxMemoryPerShellMB quota; `None`: only the
    /// [`BUFFER_EVENTS`] bound).
    pub(super) fn with_limit(max_bytes: Option<usize>) -> Buffer {
        Buffer {
            max_bytes: max_bytes.unwrap_or(usize::MAX).max(1),
            inner: Mutex::new(BufferInner { first: 1, ..BufferInner::default() }),
            last: watch::Sender::new(0),
            readers: Mutex::default(),
            next_reader: std::sync::atomic::AtomicU64::new(1),
            room: tokio::sync::Notify::new(),
        }
    }

    /// Registers a live reader that has read up to `after_seq`.
    pub fn reader(&self, after_seq: u64) -> Reader<'_> {
        let id = self.next_reader.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        lock(&self.readers).insert(id, after_seq);
        Reader { buffer: self, id }
    }

    /// Whether one more event would drop an event a live reader has not read yet.
    pub fn must_wait(&self) -> bool {
        let (len, first, bytes) = {
            let b = lock(&self.inner);
            (b.events.len(), b.first, b.bytes)
        };
        (len >= BUFFER_EVENTS || bytes >= self.max_bytes) && lock(&self.readers).values().any(|&cursor| cursor < first)
    }

    /// Waits until [`Buffer::must_wait`] is false.
    pub async fn room(&self) {
        loop {
            let notified = self.room.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if !self.must_wait() {
                return;
            }
            notified.await;
        }
    }

    /// Appends the event made from its sequence number.
    pub(super) fn push(&self, make: impl FnOnce(u64) -> ServerMessage) {
        let seq = {
            let mut b = lock(&self.inner);
            let seq = b.first + b.events.len() as u64;
            let event = make(seq);
            if matches!(event, ServerMessage::PipelineState { state, .. } if state.is_terminal()) {
                b.finished = true;
            }
            let inner = &mut *b;
            if let Some(tap) = inner.tap.as_mut()
                && tap.observe(&event, &inner.events)
            {
                inner.tap = None;
            }
            b.bytes += event_bytes(&event);
            b.events.push_back(event);
            // The oldest go first, the last event always stays.
            while b.events.len() > 1 && (b.events.len() > BUFFER_EVENTS || b.bytes > self.max_bytes) {
                if let Some(old) = b.events.pop_front() {
                    b.bytes -= event_bytes(&old);
                }
                b.first += 1;
            }
            seq
        };
        self.last.send_replace(seq);
    }

    /// Records the pipeline's events from now on in the audit trail ([`crate::audit::Tap`]).
    pub(super) fn tap(&self, tap: crate::audit::Tap) {
        lock(&self.inner).tap = Some(Box::new(tap));
    }

    /// The user's answer to a host call, for the pipeline's audit record.
    pub(super) fn tap_answer(&self, call_id: i64, answer: &HostAnswer) {
        if let Some(tap) = lock(&self.inner).tap.as_mut() {
            tap.answer(call_id, answer);
        }
    }

    /// Up to `max` events after `after_seq`.
    pub fn read(&self, after_seq: u64, max: usize) -> Batch {
        let b = lock(&self.inner);
        let start = (after_seq + 1).max(b.first);
        let dropped = start - (after_seq + 1);
        let skip = (start - b.first) as usize;
        let events: Vec<ServerMessage> = b.events.iter().skip(skip).take(max).cloned().collect();
        let finished = b.finished && skip + events.len() >= b.events.len();
        Batch { events, dropped, finished }
    }

    /// The pipeline's final state and terminating error (CLIXML), once it has ended.
    pub fn outcome(&self) -> Option<(PipelineState, Option<String>)> {
        let b = lock(&self.inner);
        match b.events.back() {
            Some(ServerMessage::PipelineState { state, error, .. }) if b.finished => Some((*state, error.clone())),
            _ => None,
        }
    }

    /// Waits for events past the last sequence number seen.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.last.subscribe()
    }
}

/// What a session's task is asked to do.
#[derive(Debug)]
enum Command {
    /// `tag`: the `PSComputerName` to add to each output (Invoke-Command).
    Run { pipeline: PipelineId, spec: Work, buffer: Arc<Buffer>, tag: Option<String> },
    Stop(PipelineId),
    Answer { pipeline: PipelineId, call_id: i64, answer: Answer },
    /// Tab completion (answered with `completions`, empty when the session is busy).
    Complete { input: String, cursor: u32, reply: oneshot::Sender<ServerMessage> },
    /// Disconnect-PSSession (WinRM).
    Disconnect { idle_timeout: Option<Duration>, buffer_mode: Option<OutputBufferingMode> },
    /// Connect-PSSession (WinRM): reconnect, or connect a session kept over a relay restart.
    Connect,
    Close,
    /// Another relay holds the session's shell now: send nothing more to the target, forget nothing in the store.
    Abandon(String),
}

/// What a pipeline does at the target.
#[derive(Debug, Clone)]
pub(super) enum Work {
    /// Commands or script text.
    Pipeline(PipelineSpec),
    /// Commands that read these input objects (a proxy of implicit remoting fed by the local pipeline).
    WithInput(PipelineSpec, Vec<Value>),
    /// GET_COMMAND_METADATA (implicit remoting's discovery): `names` (wildcards) in the modules `namespaces`.
    Metadata { names: Vec<String>, namespaces: Vec<String> },
}

/// How a session's task starts.
#[derive(Debug)]
enum Start {
    /// New-PSSession: a new runspace pool (over WinRM, a new shell, or a connect to `target.shell_id`).
    New,
    /// A WinRM session kept over a relay restart: disconnected until Connect.
    Restored(ShellRecord),
}

#[derive(Debug)]
struct Entry {
    owner: String,
    /// What it was opened with, for New-PSSession -Session (a new session like it).
    origin: Origin,
    info: Mutex<SessionInfo>,
    commands: mpsc::UnboundedSender<Command>,
    pipelines: Mutex<BTreeMap<PipelineId, Kept>>,
    /// The target's APPLICATION_PRIVATE_DATA (its `$PSVersionTable`, implicit remoting's `CommandsToSkip`), once
    /// opened.
    private_data: Mutex<Option<Value>>,
    /// The first allow-list rule its target matched (whose quotas count it).
    rule: Option<usize>,
    /// The last request of its user (a pipeline, a completion, an attach…), for the IdleTimeout quota.
    activity: Mutex<tokio::time::Instant>,
    /// When it opened (for MaxShellRunTime; `None`: not yet).
    opened_at: Mutex<Option<tokio::time::Instant>>,
    /// True once the session's task has ended (closed at the target, or never opened).
    ended: watch::Sender<bool>,
    /// The relay is stopping and disconnects the session for another relay to take over (and connect again).
    handover: std::sync::atomic::AtomicBool,
    /// Taken over from a relay that died holding it connected: the next Connect disconnects it as that relay first.
    take_over: std::sync::atomic::AtomicBool,
    /// Taken over so: what the pipeline the next Connect re-attaches starts with (a warning that output was lost
    /// there).
    gap: Mutex<Option<String>>,
    /// Its row in the store's pinned sessions (SSH, local: sessions that cannot move to another relay).
    pinned: Mutex<Option<Pin>>,
}

/// A session's row in the store's pinned sessions.
#[derive(Debug)]
struct Pin {
    key: String,
    /// The row's write, while it may still be under way: the row's removal waits for it (else a session removed
    /// within moments of opening could leave its row behind, shown Broken after a restart).
    written: Option<tokio::task::JoinHandle<()>>,
}

/// A session's target, credentials included; its `Debug` names only the computer and transport.
struct Origin(Target);

impl std::fmt::Debug for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Origin({} over {:?})", self.0.computer_name, self.0.transport)
    }
}

/// Marks the session's task ended when it returns, whichever way.
struct Ended(Arc<Entry>);

impl Drop for Ended {
    fn drop(&mut self) {
        self.0.ended.send_replace(true);
    }
}

/// Sessions Remove-PSSession took away; [`Removed::closed`] waits until the targets have closed them.
#[derive(Debug)]
pub struct Removed {
    /// The sessions.
    pub ids: Vec<SessionId>,
    ended: Vec<watch::Receiver<bool>>,
}

impl Removed {
    /// Waits until every removed session is closed at its target, at most `limit`.
    pub async fn closed(self, limit: Duration) {
        let _ = tokio::time::timeout(limit, async {
            for mut e in self.ended {
                let _ = e.wait_for(|ended| *ended).await;
            }
        })
        .await;
    }
}

/// A pipeline the session keeps: its events, and what `history` says of it.
#[derive(Debug, Clone)]
struct Kept {
    buffer: Arc<Buffer>,
    script: String,
    prompt: String,
    invocation: Option<InvocationId>,
    /// Run for psgate's prompt (its Invoke-Command): shown there, not in the session's console history.
    hidden: bool,
}

/// What [`Manager::start`] starts.
struct Launch {
    spec: Work,
    /// The text kept for `history`.
    text: String,
    /// Add `PSComputerName` to each output.
    tag: bool,
    invocation: Option<InvocationId>,
    hidden: bool,
    /// Who runs it, when not the session's owner (a peer of a shared session), for the audit.
    actor: Option<String>,
}

/// A host answer on its way to the session's task. The plain-text forms become SecureStrings there, with the
/// session key (exchanged first when needed). Its `Debug` never shows the text.
enum Answer {
    Ready(HostResult),
    Secure(String),
    Credential { user: String, password: String },
    Fields(Vec<FieldAnswer>),
}

impl std::fmt::Debug for Answer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Answer::Ready(_) => "Ready",
            Answer::Secure(_) => "Secure",
            Answer::Credential { .. } => "Credential",
            Answer::Fields(_) => "Fields",
        })
    }
}

impl Answer {
    fn needs_key(&self) -> bool {
        match self {
            Answer::Ready(_) => false,
            Answer::Secure(_) | Answer::Credential { .. } => true,
            Answer::Fields(fields) => fields.iter().any(|f| f.secure),
        }
    }

    /// The host result, made inside the session (the pool holds the key).
    fn into_result(self, pool: &RunspacePool) -> HostResult {
        let secure = |text: &str| pool.secure_string(text).map(Value::SecureString).map_err(|e| HostResult::Error(format!("the relay could not encrypt the SecureString: {e}")));
        let made = match self {
            Answer::Ready(r) => return r,
            Answer::Secure(text) => secure(&text),
            Answer::Credential { user, password } => secure(&password).map(|ss| match ss {
                Value::SecureString(bytes) => psgate_shared::psrp::host::credential_result(&user, bytes),
                other => other,
            }),
            Answer::Fields(fields) => fields
                .iter()
                .map(|f| Ok((f.name.clone(), if f.secure { secure(&f.text)? } else { Value::string(f.text.as_str()) })))
                .collect::<Result<Vec<_>, HostResult>>()
                .map(|answers| psgate_shared::psrp::host::prompt_result(&answers)),
        };
        made.map(HostResult::Value).unwrap_or_else(|e| e)
    }
}

/// `value` with Invoke-Command's note properties (`PSComputerName`, `PSShowComputerName`); a primitive is
/// wrapped in an object first, as PowerShell does.
pub fn with_computer_name(value: Value, computer_name: &str) -> Value {
    let mut object = match value {
        Value::Object(o) => Arc::unwrap_or_clone(o),
        Value::Nil | Value::Cycle(_) => return value,
        primitive => Object { to_string: primitive.as_str().map(Into::into), content: Content::Primitive(primitive), ..Object::default() },
    };
    object.extended.retain(|p| !p.name.eq_ignore_ascii_case("PSComputerName") && !p.name.eq_ignore_ascii_case("PSShowComputerName"));
    object.extended.push(Property::new("PSComputerName", Value::string(computer_name)));
    object.extended.push(Property::new("PSShowComputerName", Value::Bool(true)));
    Value::object(object)
}

/// `target` as the store keeps it for row `key`: its password sealed, and the rest without secrets (none: sealing
/// failed, logged).
fn kept_target(sealer: &Sealer, target: &Target, key: &str) -> Option<(Option<Vec<u8>>, Target)> {
    match target.password.as_deref().map(|p| sealer.seal(p, key)).transpose() {
        Ok(sealed) => {
            let mut public = target.clone();
            (public.password, public.shell_id) = (None, None);
            Some((sealed, public))
        }
        Err(e) => {
            tracing::error!(error = %e, "sealing a password; the session is not kept");
            None
        }
    }
}

/// `HH:MM:SS` of `ms` since the Unix epoch, in UTC.
fn utc_time(ms: i64) -> String {
    let s = ms.div_euclid(1000).rem_euclid(86_400);
    format!("{:02}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
}

/// `[audit] retention_days`: hourly (and at start), the records older than that are removed and a retention record
/// names the last one removed, so the chain left still verifies.
fn spawn_audit_retention(manager: std::sync::Weak<Manager>, audit: crate::audit::Audit, days: u64) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(3600));
        loop {
            tick.tick().await;
            let Some(manager) = manager.upgrade() else { return };
            let Some((store, _)) = &manager.store else { return };
            let keep_ms = i64::try_from(days.saturating_mul(86_400_000)).unwrap_or(i64::MAX);
            match store.prune_audit(unix_ms().saturating_sub(keep_ms)).await {
                Ok(Some((removed, seq, mac))) => {
                    tracing::info!(removed, through = seq, days, "audit records past their retention removed");
                    let data = serde_json::json!({"through_seq": seq, "through_mac": mac, "removed": removed, "retention_days": days});
                    audit.record(crate::audit::Event::new(crate::audit::Kind::Retention, "psgate").with(data));
                }
                Ok(None) => {}
                Err(e) => tracing::error!(error = %e, "removing audit records past their retention"),
            }
        }
    });
}

/// The pinned sessions `relay` holds in `manager`'s store (none without one).
async fn store_pinned(manager: &Manager, relay: &str) -> Vec<PinnedRow> {
    let Some((store, _)) = &manager.store else { return Vec::new() };
    store.pinned_of(relay).await.unwrap_or_else(|e| {
        tracing::error!(error = %e, "reading the kept sessions");
        Vec::new()
    })
}

/// Which relay serves a user ([`Manager::home`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Home {
    /// This one.
    Here,
    /// Another, running: its `[cluster] relay_id` and `address`.
    There {
        /// Its id.
        relay: String,
        /// Where relays reach it.
        address: String,
    },
}

/// Something every connection of a user hears: a session's change (`session_changed`) or an Invoke-Command
/// run's progress (`invoke_started`, `invoke_host_started`, `invoke_host_finished`, `invoke_finished`).
#[derive(Clone, Debug)]
pub struct Change {
    /// The owner.
    pub owner: String,
    /// The message.
    pub message: ServerMessage,
    /// Who hears it.
    pub scope: Scope,
}

/// Who hears a [`Change`]: the owner's connections and the joiners of the session it is about (`All`), only those
/// joiners, or one joiner (by user).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Scope {
    /// The owner's connections, and the joiners of the session concerned.
    All,
    /// Only the joiners of the session concerned (the owner's connection that ran it follows it already).
    Joiners,
    /// Only this user's joined consoles of the session concerned.
    Joiner(String),
}

/// A joiner present in a shared session.
#[derive(Debug)]
struct Joiner {
    seat: u64,
    user: String,
    role: ShareRole,
    /// By an invitation (else an admin's observer's seat, which only the admin's leaving ends).
    invited: bool,
    revoked: bool,
}

/// A pipeline waiting for a moderator's approval: the command its session's task gets once approved.
#[derive(Debug)]
struct Pending {
    entry: Arc<Entry>,
    command: Command,
    buffer: Arc<Buffer>,
    text: String,
    requested_by: String,
    moderators: Vec<String>,
}

/// A joiner's presence: leaving when dropped.
#[derive(Debug)]
pub struct JoinGuard {
    manager: std::sync::Weak<Manager>,
    owner: String,
    session: SessionId,
    /// This joiner among the session's.
    pub seat: u64,
}

impl Drop for JoinGuard {
    fn drop(&mut self) {
        let Some(m) = self.manager.upgrade() else { return };
        let left = {
            let mut joins = lock(&m.joins);
            let key = (self.owner.clone(), self.session);
            let left = joins.get(&key).and_then(|j| j.iter().find(|j| j.seat == self.seat)).map(|j| j.user.clone());
            if let Some(j) = joins.get_mut(&key) {
                j.retain(|j| j.seat != self.seat);
                if j.is_empty() {
                    joins.remove(&key);
                }
            }
            left
        };
        if let (Some(user), Ok(computer)) = (left, m.computer_name(&self.owner, self.session)) {
            m.audit(crate::audit::Event::new(crate::audit::Kind::Sharing, &user).on(&self.owner, self.session.0, &computer).with(serde_json::json!({"action": "leave"})));
        }
        m.publish_participants(&self.owner, self.session);
    }
}

fn role_name(role: ShareRole) -> &'static str {
    match role {
        ShareRole::Observer => "observer",
        ShareRole::Peer => "peer",
    }
}

fn role_of(name: &str) -> ShareRole {
    if name == "peer" { ShareRole::Peer } else { ShareRole::Observer }
}

/// How a share names a group of `[groups]` rather than a user: `group:ops`.
const GROUP_PREFIX: &str = "group:";

/// What `user` may do by the shares `rows` of one session: their own invitation's role, else the strongest of their
/// groups' (`groups`: `[groups]`); `None`: not invited.
fn access_of(rows: &[crate::store::ShareRow], groups: &std::collections::BTreeMap<String, Vec<String>>, user: &str) -> Option<ShareRole> {
    if let Some(row) = rows.iter().find(|r| r.grantee == user) {
        return Some(role_of(&row.role));
    }
    rows.iter()
        .filter(|r| r.grantee.strip_prefix(GROUP_PREFIX).and_then(|g| groups.get(g)).is_some_and(|members| members.iter().any(|m| m == user)))
        .map(|r| role_of(&r.role))
        .max_by_key(|role| *role == ShareRole::Peer)
}

fn store_failed(e: &crate::store::StoreError) -> ApiError {
    tracing::error!(error = %e, "the store");
    ApiError::new(ErrorCode::Internal, "the store did not answer; retry in a moment")
}

#[derive(Debug, Default)]
struct Inner {
    /// Each user's last session id: ids count per user, as in a PowerShell console of one's own (a user's sessions
    /// move between relays together, keeping their ids).
    next_session: HashMap<String, u64>,
    next_pipeline: u64,
    next_invocation: u64,
    sessions: BTreeMap<(String, SessionId), Arc<Entry>>,
    /// Invoke-Command runs, oldest first, the last [`PIPELINES_KEPT`] of each user.
    invocations: VecDeque<(String, Arc<Mutex<InvocationRecord>>)>,
}

impl Inner {
    /// A new pipeline's id: the wall clock's milliseconds, or one more than the last id when that is later. A page
    /// re-attaching a pipeline by (session, pipeline, after_seq) after its relay stopped must never reach another
    /// pipeline of that session under the same id, with other seqs, on the relay now holding it (or on the same relay,
    /// restarted): ids are unique across relays and restarts as long as no relay makes more than a pipeline a
    /// millisecond for as long as a takeover takes.
    fn new_pipeline(&mut self) -> PipelineId {
        self.next_pipeline = (self.next_pipeline + 1).max(u64::try_from(unix_ms()).unwrap_or(0));
        PipelineId(self.next_pipeline)
    }
}

/// The relay's sessions.
#[derive(Debug)]
pub struct Manager {
    config: Arc<Config>,
    inner: Mutex<Inner>,
    changes: broadcast::Sender<Change>,
    /// Where WinRM sessions are kept for a Connect after a restart (none: they are not).
    store: Option<(Arc<Store>, Sealer)>,
    /// Each user's prompt (`PS psgate>`).
    prompts: Mutex<HashMap<String, Arc<super::prompt::UserPrompt>>>,
    /// `[quotas] max_connections`: the API's requests and WebSockets now.
    connections: crate::quotas::Connections,
    /// The time the quotas count in (tests move it).
    time: crate::quotas::QuotaTime,
    /// `[cluster] relay_id`: whose kept WinRM sessions these are in the store.
    relay_id: String,
    /// `psgate drain` asked this relay (through the store) to hand its sessions over and stop.
    drain_asked: watch::Sender<bool>,
    /// This relay's metrics (shared with its web server).
    metrics: Arc<crate::metrics::Metrics>,
    /// Set while the relay drains (before it stops): `/readyz` answers 503 so that a balancer sends new users to
    /// other relays, while the sessions here go on.
    draining: std::sync::atomic::AtomicBool,
    /// Each user's WebSocket connections here, and the notices kept for them while they had none.
    users: Mutex<HashMap<String, (usize, Vec<ServerMessage>)>>,
    /// Where audit records go (none: no store, or `[audit] enabled = false`).
    audit: Option<crate::audit::Audit>,
    /// The joiners present in each shared session here, by (owner, session).
    joins: Mutex<HashMap<(String, SessionId), Vec<Joiner>>>,
    /// Pipelines of moderated sessions waiting for a moderator, by (owner, session, pipeline).
    pending: Mutex<HashMap<(String, SessionId, PipelineId), Pending>>,
    next_join: std::sync::atomic::AtomicU64,
}

/// A user's connection, counted while it lasts ([`Manager::user_connected`]).
#[derive(Debug)]
pub struct Connected {
    manager: std::sync::Weak<Manager>,
    user: String,
}

impl Drop for Connected {
    fn drop(&mut self) {
        if let Some(m) = self.manager.upgrade() {
            let mut users = lock(&m.users);
            if let Some((n, notices)) = users.get_mut(&self.user) {
                *n = n.saturating_sub(1);
                if *n == 0 && notices.is_empty() {
                    users.remove(&self.user);
                }
            }
        }
    }
}

impl Manager {
    /// A manager that opens sessions the allow-list in `config` lets through.
    pub fn new(config: Arc<Config>) -> Arc<Manager> {
        let limit = config.quotas.max_connections;
        let relay_id = config.relay_id();
        Arc::new(Manager { config, inner: Mutex::new(Inner::default()), changes: broadcast::channel(CHANGES_KEPT).0, store: None, prompts: Mutex::default(), connections: crate::quotas::Connections::new(limit), time: crate::quotas::QuotaTime::default(), relay_id, metrics: Arc::default(), draining: Default::default(), drain_asked: watch::Sender::new(false), users: Mutex::default(), audit: None, joins: Mutex::default(), pending: Mutex::default(), next_join: std::sync::atomic::AtomicU64::new(1) })
    }

    /// A manager that keeps its WinRM sessions in `store` (passwords sealed by `sealer`) and takes back those a
    /// previous process of this relay kept: those that were open when it stopped are connected again at once; those
    /// their users had disconnected show as Disconnected until Connect. Call inside the runtime.
    pub async fn with_store(config: Arc<Config>, store: Arc<Store>, sealer: Sealer) -> Arc<Manager> {
        let relay_id = config.relay_id();
        // This relay's own (kept by it before a restart, or before relays had ids); other relays' come by takeover.
        let rows = store.winrm_sessions_of(&relay_id).await.unwrap_or_else(|e| {
            tracing::error!(error = %e, "reading the kept WinRM sessions");
            Vec::new()
        });
        let limit = config.quotas.max_connections;
        let audit = config.audit.enabled.then(|| crate::audit::Audit::start(store.clone(), sealer.audit_key(), relay_id.clone(), config.audit.max_pipeline_kb.saturating_mul(1024)));
        let manager = Arc::new(Manager { config, inner: Mutex::new(Inner::default()), changes: broadcast::channel(CHANGES_KEPT).0, store: Some((store, sealer)), prompts: Mutex::default(), connections: crate::quotas::Connections::new(limit), time: crate::quotas::QuotaTime::default(), relay_id, metrics: Arc::default(), draining: Default::default(), drain_asked: watch::Sender::new(false), users: Mutex::default(), audit, joins: Mutex::default(), pending: Mutex::default(), next_join: std::sync::atomic::AtomicU64::new(1) });
        if let (Some(days), Some(audit)) = (manager.config.audit.retention_days, &manager.audit) {
            spawn_audit_retention(Arc::downgrade(&manager), audit.clone(), days);
        }
        // Its SSH and local sessions ended with the previous process: shown Broken, to be opened again.
        let pinned = store_pinned(&manager, &manager.relay_id).await;
        for row in &pinned {
            let reason = format!("Held by this relay ({}) before it restarted at {} UTC: a session over {{}} ends with its relay. Re-create it to open it again.", manager.relay_id, utc_time(unix_ms()));
            if let Err(e) = manager.restore_pinned(row, &reason) {
                tracing::warn!(key = %row.key, error = %e, "a pinned session of the previous process cannot be shown");
            }
        }
        for row in rows {
            match manager.restore(&row) {
                // Open when this relay stopped (not disconnected by its user): connected again, as a relay taking it
                // over would.
                Ok(id) if row.resume => {
                    if let Err(e) = manager.connect(&row.owner, &[id]) {
                        tracing::warn!(session = id.0, error = %e.message, "connecting a kept session again");
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(key = %row.key, error = %e, "a kept WinRM session cannot be restored; forgetting it");
                    manager.forget(&row.key).await;
                }
            }
        }
        manager
    }

    /// `[cluster] relay_id`.
    pub fn relay_id(&self) -> &str {
        &self.relay_id
    }

    /// Appends `event` to the audit trail (when this relay records one).
    pub fn audit(&self, event: crate::audit::Event) {
        if let Some(audit) = &self.audit {
            audit.record(event);
        }
    }

    /// Waits until every audit record made so far is in the store.
    pub async fn flush_audit(&self) {
        if let Some(audit) = &self.audit {
            audit.flush().await;
        }
    }

    /// Records a session's opening (or failure: `error`), with its target (never its password); `connected`: a
    /// Connect to a shell opened before (a takeover, a restart).
    fn audit_session(&self, entry: &Entry, target: &Target, kind: crate::audit::Kind, connected: bool, error: Option<&str>) {
        if self.audit.is_none() {
            return;
        }
        let info = lock(&entry.info).clone();
        let mut data = serde_json::json!({
            "transport": info.transport,
            "port": crate::config::default_port(target.transport, target.use_ssl, target.port),
            "configuration_name": info.configuration_name,
            "user": target.user,
            "name": info.name,
        });
        if connected {
            data["connected"] = true.into();
        }
        if let Some(error) = error {
            data["error"] = error.into();
        }
        self.audit(crate::audit::Event::new(kind, &entry.owner).on(&entry.owner, info.id.0, &info.computer_name).with(data));
    }

    /// Records a quota's refusal of `owner`'s New-PSSession (to `computer`, when known).
    fn audit_refusal(&self, owner: &str, computer: Option<&str>, refusal: &crate::quotas::Refusal) {
        let mut event = crate::audit::Event::new(crate::audit::Kind::QuotaRefused, owner).with(serde_json::json!({"quota": refusal.quota(), "message": refusal.message()}));
        event.owner = Some(owner.to_owned());
        event.computer = computer.map(str::to_owned);
        self.audit(event);
    }

    /// Records the pipeline `buffer` carries, from its first event to its last (when this relay records): `event`
    /// made by [`crate::audit::Event::pipeline`].
    pub(super) fn audit_pipeline(&self, buffer: &Buffer, event: crate::audit::Event) {
        if let Some(audit) = &self.audit {
            buffer.tap(crate::audit::Tap::new(audit, event));
        }
    }

    /// Registers this relay in the store and starts its heartbeat, which also takes over the WinRM sessions of
    /// relays gone ([`Manager::cluster_tick`]) every `[cluster] heartbeat_secs`.
    pub async fn join_cluster(self: &Arc<Self>) {
        let Some((store, _)) = &self.store else { return };
        if let Err(e) = store.register_relay(&self.relay_id, &self.config.relay_address(), unix_ms()).await {
            tracing::error!(error = %e, relay = %self.relay_id, "registering the relay in the store");
        }
        let manager = Arc::downgrade(self);
        let every = Duration::from_secs(self.config.cluster.heartbeat_secs.max(1));
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(manager) = manager.upgrade() else { return };
                manager.cluster_tick().await;
            }
        });
    }

    /// One heartbeat, and a look for relays gone: the WinRM sessions of each (a relay stopped, silent for
    /// `[cluster] dead_after_secs`, or never registered) are claimed in the store (each by exactly one survivor),
    /// taken back here, and connected again if they were open. How many were taken over.
    pub async fn cluster_tick(self: &Arc<Self>) -> usize {
        let Some((store, _)) = &self.store else { return 0 };
        let now = unix_ms();
        match store.heartbeat(&self.relay_id, now).await {
            Ok(true) => {}
            // Another relay deemed this one gone and took its sessions: say so loudly (two relays must not drive
            // one shell); registering again makes it a member anew.
            Ok(false) => {
                // Marked stopped by another relay (which took its sessions), or never registered (the store was down
                // when it started): only the first means its sessions are held elsewhere now.
                let deemed_gone = store.relays().await.is_ok_and(|rs| rs.iter().any(|r| r.id == self.relay_id && r.stopped.is_some()));
                if deemed_gone {
                    tracing::error!(relay = %self.relay_id, "the store had this relay as gone: another relay holds its WinRM sessions now");
                    self.abandon_winrm_sessions(&format!("Relay {} lost touch with the store and another relay took this session over: reach it there.", self.relay_id));
                }
                if let Err(e) = store.register_relay(&self.relay_id, &self.config.relay_address(), now).await {
                    tracing::warn!(error = %e, "registering the relay in the store");
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "heartbeat: the store did not answer");
                return 0;
            }
        }
        let (relays, holders) = match (store.relays().await, store.holders().await) {
            (Ok(r), Ok(h)) => (r, h),
            (Err(e), _) | (_, Err(e)) => {
                tracing::warn!(error = %e, "reading the relays");
                return 0;
            }
        };
        if relays.iter().any(|r| r.id == self.relay_id && r.drain) && !*self.drain_asked.borrow() {
            tracing::warn!(relay = %self.relay_id, "psgate drain: handing the sessions over and stopping");
            self.set_draining(true);
            self.drain_asked.send_replace(true);
        }
        let mut taken = 0;
        for holder in holders.iter().filter(|h| **h != self.relay_id) {
            let relay = relays.iter().find(|r| &r.id == holder);
            if relay.is_some_and(|r| !self.gone(r, now)) {
                continue;
            }
            taken += self.take_over(holder, relay, now).await;
        }
        taken
    }

    /// Whether `relay` is gone at `now`: stopped, or silent for `[cluster] dead_after_secs`.
    fn gone(&self, relay: &RelayRow, now: i64) -> bool {
        relay.gone(now, i64::try_from(self.config.cluster.dead_after_secs.saturating_mul(1000)).unwrap_or(i64::MAX))
    }

    /// Takes over what relay `holder` (whose row is `relay`; none: never registered), gone, held: its users' homes and
    /// its WinRM sessions, connected again if they were open. How many sessions were taken over.
    async fn take_over(self: &Arc<Self>, holder: &str, relay: Option<&RelayRow>, now: i64) -> usize {
        let Some((store, _)) = &self.store else { return 0 };
        // A silent relay is marked stopped first: if it comes back, its heartbeat tells it its sessions moved.
        if let Some(r) = relay.filter(|r| r.stopped.is_none())
            && let Err(e) = store.relay_stopped(&r.id, now).await
        {
            tracing::warn!(error = %e, relay = %r.id, "marking a silent relay stopped");
        }
        let claimed = match store.claim_relay(holder, &self.relay_id, now).await {
            Ok(claimed) => claimed,
            Err(e) => {
                tracing::warn!(error = %e, relay = %holder, "taking over a relay's users and WinRM sessions");
                return 0;
            }
        };
        let why = match relay {
            Some(r) if r.stopped.is_some() => "it stopped".to_owned(),
            Some(r) => format!("silent for {} s", now.saturating_sub(r.heartbeat) / 1000),
            None => "it is not registered".to_owned(),
        };
        if !claimed.winrm.is_empty() || !claimed.pinned.is_empty() {
            tracing::warn!(relay = %holder, winrm = claimed.winrm.len(), pinned = claimed.pinned.len(), %why, "taking over the sessions of a relay gone");
        }
        // Sessions that cannot move: shown Broken here, with when their relay stopped, to be opened again.
        let stopped_at = relay.map_or(now, |r| r.stopped.unwrap_or(r.heartbeat));
        for row in &claimed.pinned {
            let reason = format!("Held by relay {holder}, which stopped at {} UTC: a session over {{}} cannot move to another relay. Re-create it to open it again.", utc_time(stopped_at));
            if let Err(e) = self.restore_pinned(row, &reason) {
                tracing::warn!(key = %row.key, error = %e, "a pinned session taken over cannot be shown");
            }
        }
        let died = relay.is_none_or(|r| r.stopped.is_none());
        let mut taken = 0;
        for row in claimed.winrm {
            match self.restore(&row) {
                Ok(id) => {
                    taken += 1;
                    self.metrics.took_over(died);
                    if died {
                        self.died_holding(&row, id, holder, &why);
                    }
                    if row.resume && let Err(e) = self.connect(&row.owner, &[id]) {
                        tracing::warn!(session = id.0, error = %e.message, "connecting a session taken over");
                    }
                }
                Err(e) => tracing::warn!(key = %row.key, error = %e, "a WinRM session taken over cannot be restored"),
            }
        }
        taken
    }

    /// Which relay serves `owner` (holds their sessions and prompt): this one when the user has no home yet (it
    /// becomes theirs) or when their home relay is gone (this one takes it over at once, as a heartbeat would);
    /// another, running, relay's id and address otherwise. Without a store, always this one.
    pub async fn home(self: &Arc<Self>, owner: &str) -> Result<Home, crate::store::StoreError> {
        let Some((store, _)) = &self.store else { return Ok(Home::Here) };
        let now = unix_ms();
        let (relay, row) = store.home(owner, &self.relay_id, now).await?;
        if relay == self.relay_id {
            return Ok(Home::Here);
        }
        match row {
            Some(r) if !self.gone(&r, now) => Ok(Home::There { relay: r.id, address: r.address }),
            row => {
                tracing::warn!(%owner, %relay, "the user's relay is gone: taking its users and sessions over");
                self.take_over(&relay, row.as_ref(), now).await;
                match store.home(owner, &self.relay_id, now).await? {
                    (relay, _) if relay == self.relay_id => Ok(Home::Here),
                    (relay, row) => Ok(Home::There { address: row.map(|r| r.address).unwrap_or_default(), relay }),
                }
            }
        }
    }

    /// Nothing listens at relay `relay`'s address (it refused this relay's connection): when its heartbeat is also
    /// late (over two beats), it is gone without waiting for `[cluster] dead_after_secs`, and this relay takes its
    /// users and sessions over now. (A relay that only lost touch with the store still listens; one that only paused
    /// still heartbeats.)
    pub async fn home_refused(self: &Arc<Self>, relay: &str) {
        let Some((store, _)) = &self.store else { return };
        let now = unix_ms();
        let Ok(relays) = store.relays().await else { return };
        let Some(row) = relays.iter().find(|r| r.id == relay) else { return };
        let late = i64::try_from(self.config.cluster.heartbeat_secs.max(1).saturating_mul(2000)).unwrap_or(i64::MAX);
        if row.stopped.is_none() && now.saturating_sub(row.heartbeat) > late {
            tracing::warn!(%relay, "a relay refuses connections and its heartbeat is late: taking its users and sessions over");
            self.take_over(relay, Some(row), now).await;
        }
    }

    /// `[quotas] max_concurrent_users` across every relay of the store: refused when `owner` holds no session and as
    /// many users as the quota allows do, on any relay (the local check in `create` counts this relay's alone).
    pub async fn admit_user(&self, owner: &str) -> Result<(), ApiError> {
        let (Some(max), Some((store, _))) = (self.config.quotas.max_concurrent_users, &self.store) else { return Ok(()) };
        match store.admit_user(owner, &self.relay_id, max, unix_ms()).await {
            Ok(true) => Ok(()),
            Ok(false) => {
                let refusal = crate::quotas::Refusal::MaxConcurrentUsers(max, None);
                tracing::info!(owner, ?refusal, "New-PSSession refused by a quota (every relay's users counted)");
                self.metrics.refused(refusal.quota());
                self.audit_refusal(owner, None, &refusal);
                Err(ApiError::new(ErrorCode::QuotaExceeded, refusal.message()))
            }
            Err(e) => {
                tracing::error!(error = %e, "counting the users with sessions in the store");
                Err(ApiError::new(ErrorCode::Internal, "the store did not answer; retry in a moment"))
            }
        }
    }

    /// Keeps a part of `owner`'s prompt (their variables, history and entered session as CLIXML; their modules as
    /// JSON), sealed with the relays' key (a credential in a variable is never in clear in the store), written in
    /// the background.
    pub(super) fn keep_prompt(&self, part: PromptPart, owner: &str, text: &str) {
        let Some((store, sealer)) = &self.store else { return };
        let sealed = match sealer.seal(text, &prompt_context(part, owner)) {
            Ok(sealed) => sealed,
            Err(e) => {
                tracing::error!(error = %e, "sealing the prompt's state");
                return;
            }
        };
        let (store, owner, now) = (store.clone(), owner.to_owned(), unix_ms());
        tokio::spawn(async move {
            if let Err(e) = store.put_prompt(part, &owner, &sealed, now).await {
                tracing::error!(error = %e, ?part, "keeping the prompt's state");
            }
        });
    }

    /// A part of `owner`'s kept prompt, opened (none: none kept, or it does not open: logged).
    pub(super) async fn kept_prompt(&self, part: PromptPart, owner: &str) -> Option<String> {
        let (store, sealer) = self.store.as_ref()?;
        let sealed = store.prompt(part, owner).await.map_err(|e| tracing::error!(error = %e, ?part, "reading the prompt's state")).ok()??;
        sealer.open(&sealed, &prompt_context(part, owner)).map_err(|e| tracing::warn!(%owner, ?part, error = %e, "the kept prompt state does not open")).ok()
    }

    /// `[cluster] heartbeat_secs` (at least 1).
    pub fn heartbeat_secs(&self) -> u64 {
        self.config.cluster.heartbeat_secs.max(1)
    }

    /// The relay-to-relay channel's key (the sealing key's), when this relay has a store.
    pub fn channel(&self) -> Option<&Sealer> {
        self.store.as_ref().map(|(_, sealer)| sealer)
    }

    /// Lets go of every WinRM session without a word to its target or a change in the store (another relay holds
    /// them now: a relay that lost touch with the store, or a test standing in for a relay killed). They turn Broken
    /// here with `why`.
    pub fn abandon_winrm_sessions(&self, why: &str) {
        let entries: Vec<Arc<Entry>> = lock(&self.inner).sessions.values().filter(|e| lock(&e.info).transport == Transport::Winrm).cloned().collect();
        for e in entries {
            let _ = e.commands.send(Command::Abandon(why.to_owned()));
        }
    }

    /// A session taken over from relay `holder`, which died holding it (`why`): its next Connect disconnects it as
    /// that relay first, and its user is told plainly that output the dead relay had received and not delivered is
    /// lost (the target gave it to that relay; nobody has it now), never silently.
    fn died_holding(&self, row: &WinrmSessionRow, id: SessionId, holder: &str, why: &str) {
        let Some(entry) = lock(&self.inner).sessions.get(&(row.owner.clone(), id)).cloned() else { return };
        entry.take_over.store(true, std::sync::atomic::Ordering::SeqCst);
        let computer = lock(&entry.info).computer_name.trim().to_owned();
        let message = format!(
            "Relay {holder} stopped without handing session {} over ({why}): this relay took it over from {computer}. Output {holder} had received and not yet delivered is lost; what {computer} produced since comes next.",
            id.0
        );
        self.update(&entry, |i| i.reason = Some(message.clone()));
        *lock(&entry.gap) = Some(format!("Relay {holder} stopped ({why}) while this command ran: output it had received and not yet delivered is lost; what {computer} produced since follows."));
        self.notice(&row.owner, ServerMessage::TargetRefused { computer_name: computer, code: ErrorCode::TargetFailed, message });
    }

    /// Tells `owner` something they must not miss: at once if they are connected here, else at their next
    /// connection (a takeover happens while browsers reconnect).
    fn notice(&self, owner: &str, message: ServerMessage) {
        {
            let mut users = lock(&self.users);
            let (connected, notices) = users.entry(owner.to_owned()).or_default();
            if *connected == 0 {
                notices.push(message);
                return;
            }
        }
        self.publish(owner, message);
    }

    /// Counts a connection of `user` while the guard lives: the notices kept for the user, to send it first.
    pub fn user_connected(self: &Arc<Self>, user: &str) -> (Connected, Vec<ServerMessage>) {
        let mut users = lock(&self.users);
        let (connected, notices) = users.entry(user.to_owned()).or_default();
        *connected += 1;
        (Connected { manager: Arc::downgrade(self), user: user.to_owned() }, std::mem::take(notices))
    }

    /// Resolves when `psgate drain` has asked this relay to stop (seen at a heartbeat): `psgate serve` then stops as
    /// on SIGTERM.
    pub async fn drain_asked(&self) {
        let mut asked = self.drain_asked.subscribe();
        let _ = asked.wait_for(|a| *a).await;
    }

    /// This relay stops (after [`Manager::shutdown`] disconnected its WinRM sessions): the store says so, and the
    /// other relays take its sessions over at their next heartbeat.
    pub async fn leave_cluster(&self) {
        if let Some((store, _)) = &self.store
            && let Err(e) = store.relay_stopped(&self.relay_id, unix_ms()).await
        {
            tracing::error!(error = %e, "telling the store this relay stopped");
        }
    }

    fn restore(self: &Arc<Self>, row: &WinrmSessionRow) -> anyhow::Result<SessionId> {
        let target = self.opened_target(&row.target, row.sealed_password.as_deref(), &row.key)?;
        let record: ShellRecord = serde_json::from_str(&row.shell)?;
        self.check_target(&target).map_err(|e| anyhow::anyhow!("{}", e.message))?;
        let want = row.session_id.and_then(|i| u64::try_from(i).ok()).map(SessionId);
        let (id, entry, rx) = self.add_entry(&row.owner, &target, SessionState::Disconnected, false, want).map_err(|e| anyhow::anyhow!("{}", e.message))?;
        self.held_again(&row.owner);
        self.update(&entry, |i| i.instance_id = Some(row.key.clone()));
        // Idle since it was last used before the restart, not since the restart (IdleTimeout counts on).
        if let Some(since) = row.idle_since {
            let idle_for = std::time::Duration::from_millis(u64::try_from(unix_ms().saturating_sub(since)).unwrap_or(0));
            let now = self.time.now();
            *lock(&entry.activity) = now.checked_sub(idle_for).unwrap_or(now);
        }
        tracing::info!(session = id.0, owner = %row.owner, shell = %row.key, "a kept WinRM session taken back: disconnected");
        tokio::spawn(drive(self.clone(), entry, target, Start::Restored(record), rx));
        Ok(id)
    }

    /// `owner` holds sessions here that were not admitted here (taken over, kept over a restart): they count against
    /// MaxConcurrentUsers on every relay.
    fn held_again(&self, owner: &str) {
        if let Some((store, _)) = &self.store {
            let (store, owner) = (store.clone(), owner.to_owned());
            tokio::spawn(async move {
                if let Err(e) = store.set_user_active(&owner, true).await {
                    tracing::error!(error = %e, "noting a user with sessions in the store");
                }
            });
        }
    }

    /// A target the store kept (JSON) with its password, sealed for row `key`, opened.
    fn opened_target(&self, json: &str, sealed: Option<&[u8]>, key: &str) -> anyhow::Result<Target> {
        let mut target: Target = serde_json::from_str(json)?;
        if let (Some(sealed), Some((_, sealer))) = (sealed, &self.store) {
            target.password = Some(sealer.open(sealed, key)?);
        }
        Ok(target)
    }

    /// Shows pinned session `row` (its relay is gone) as Broken with `reason` (`{}`: its transport), holding its
    /// target for a re-create.
    fn restore_pinned(self: &Arc<Self>, row: &PinnedRow, reason: &str) -> anyhow::Result<SessionId> {
        let target = self.opened_target(&row.target, row.sealed_password.as_deref(), &row.key)?;
        let want = row.session_id.and_then(|i| u64::try_from(i).ok()).map(SessionId);
        let (id, entry, _commands) = self.add_entry(&row.owner, &target, SessionState::Broken, false, want).map_err(|e| anyhow::anyhow!("{}", e.message))?;
        self.held_again(&row.owner);
        *lock(&entry.pinned) = Some(Pin { key: row.key.clone(), written: None });
        // No task drives it: nothing to wait for when it is removed.
        entry.ended.send_replace(true);
        let transport = match target.transport {
            Transport::Ssh => "SSH",
            Transport::Local => "the local host",
            Transport::Winrm => "WinRM",
        };
        self.update(&entry, |i| i.reason = Some(reason.replace("{}", transport)));
        tracing::info!(session = id.0, owner = %row.owner, relay = %row.relay, "a pinned session of a relay gone: shown Broken");
        Ok(id)
    }

    /// Keeps a new session that cannot move (SSH, local) in the store, so that the relay taking this one's place
    /// shows it Broken rather than not at all.
    fn pin(&self, entry: &Entry, target: &Target) {
        let Some((store, sealer)) = &self.store else { return };
        if target.transport == Transport::Winrm {
            return;
        }
        let key = Uuid::new_v4().simple().to_string();
        let Some((sealed, mut public)) = kept_target(sealer, target, &key) else { return };
        public.name = Some(lock(&entry.info).name.clone());
        let row = PinnedRow { key: key.clone(), relay: self.relay_id.clone(), owner: entry.owner.clone(), target: serde_json::to_string(&public).unwrap_or_default(), sealed_password: sealed, opened: unix_ms(), session_id: i64::try_from(lock(&entry.info).id.0).ok() };
        let store = store.clone();
        let written = tokio::spawn(async move {
            if let Err(e) = store.put_pinned(&row).await {
                tracing::error!(error = %e, "keeping a session in the store");
            }
        });
        *lock(&entry.pinned) = Some(Pin { key, written: Some(written) });
    }

    /// Opens `owner`'s Broken sessions `ids` again on their targets, with their names and credentials: one action
    /// for a session lost with its relay or its connection. Each is removed and a new one made (PowerShell cannot
    /// reopen a broken session either); the new sessions are returned.
    pub fn recreate(self: &Arc<Self>, owner: &str, ids: &[SessionId]) -> Result<Vec<SessionInfo>, ApiError> {
        let entries = self.entries(owner, ids)?;
        if let Some(e) = entries.iter().find(|e| lock(&e.info).state != SessionState::Broken) {
            let info = lock(&e.info);
            return Err(ApiError::new(ErrorCode::SessionNotReady, format!("session {} ({}) is {:?}, not Broken: only a broken session is re-created", info.id.0, info.name, info.state)));
        }
        // Each target checked (the allow-list, kiosk mode) before any session is removed.
        let mut again = Vec::new();
        for e in entries {
            let mut target = e.origin.0.clone();
            let (id, name) = {
                let info = lock(&e.info);
                (info.id, info.name.clone())
            };
            target.name = Some(name);
            self.config.kiosk_allows(&target).map_err(|m| ApiError::new(ErrorCode::TargetNotAllowed, m))?;
            self.check_target(&target)?;
            again.push((id, target));
        }
        let mut made = Vec::new();
        for (id, target) in again {
            self.remove(owner, Some(&[id]))?;
            made.push(self.create(owner, target)?);
        }
        Ok(made)
    }

    /// Keeps what a later Connect needs (the password sealed).
    async fn keep(&self, entry: &Entry, target: &Target, record: &ShellRecord, resume: bool) {
        let Some((store, sealer)) = &self.store else { return };
        let owner = entry.owner.as_str();
        // The idle clock goes with it (as wall-clock time: a later relay process has another monotonic clock).
        let idle_for = self.time.now().saturating_duration_since(*lock(&entry.activity));
        let idle_since = unix_ms().saturating_sub(i64::try_from(idle_for.as_millis()).unwrap_or(i64::MAX));
        let key = record.shell_id.hyphenated().to_string().to_uppercase();
        let Some((sealed, public)) = kept_target(sealer, target, &key) else { return };
        let row = WinrmSessionRow {
            key,
            owner: owner.to_owned(),
            target: serde_json::to_string(&public).unwrap_or_default(),
            shell: serde_json::to_string(record).unwrap_or_default(),
            sealed_password: sealed,
            idle_since: Some(idle_since),
            relay: Some(self.relay_id.clone()),
            resume,
            session_id: i64::try_from(lock(&entry.info).id.0).ok(),
        };
        if let Err(e) = store.put_winrm_session(&row).await {
            tracing::error!(error = %e, "keeping a WinRM session");
        }
    }

    async fn forget(&self, key: &str) {
        if let Some((store, _)) = &self.store
            && let Err(e) = store.remove_winrm_session(key).await
        {
            tracing::error!(error = %e, "forgetting a WinRM session");
        }
    }

    /// Changes of every user (filter by [`Change::owner`]).
    pub fn changes(&self) -> broadcast::Receiver<Change> {
        self.changes.subscribe()
    }

    fn publish(&self, owner: &str, message: ServerMessage) {
        let _ = self.changes.send(Change { owner: owner.to_owned(), message, scope: Scope::All });
    }

    /// Tells every connection of `owner` (the prompt's state changes).
    pub(super) fn publish_to(&self, owner: &str, message: ServerMessage) {
        self.publish(owner, message);
    }

    /// Whether the prompt may write files on this machine (`psgate shell`).
    pub(super) fn prompt_writes_files(&self) -> bool {
        self.config.prompt_writes_files
    }

    /// The modules Import-PSSession made at `owner`'s prompt.
    pub fn prompt_modules(&self, owner: &str) -> Vec<psgate_shared::api::PromptModule> {
        lock(&self.prompts).get(owner).map(|p| p.modules()).unwrap_or_default()
    }

    /// The users' prompts.
    pub(super) fn prompts(&self) -> &Mutex<HashMap<String, Arc<super::prompt::UserPrompt>>> {
        &self.prompts
    }

    /// Whether `computer` names this machine and the relay serves it over its local transport rather than WinRM
    /// (the local transport is configured and allowed for it; WinRM to it is not).
    pub fn local_computer(&self, computer: &str) -> bool {
        let name = computer.trim();
        let this = ["localhost", ".", "127.0.0.1", "::1"].iter().any(|n| n.eq_ignore_ascii_case(name));
        this && self.config.local_command.is_some()
            && self.config.allows(name, 0, Transport::Local)
            && ![5985, 5986].iter().any(|port| self.config.allows(name, *port, Transport::Winrm))
    }

    /// The session `owner`'s prompt has entered (Enter-PSSession), if any.
    pub fn entered(&self, owner: &str) -> Option<SessionId> {
        lock(&self.prompts).get(owner).and_then(|p| p.entered())
    }

    /// Checks a target against the allow-list and its own completeness; nothing is connected.
    pub fn check_target(&self, target: &Target) -> Result<(), ApiError> {
        let host = target.computer_name.trim();
        if host.is_empty() {
            return Err(ApiError::new(ErrorCode::InvalidTarget, "a target needs a computer name"));
        }
        let port = crate::config::default_port(target.transport, target.use_ssl, target.port);
        if !self.config.allows(host, port, target.transport) {
            let how = match target.transport {
                Transport::Ssh => format!("{host}:{port} over ssh"),
                Transport::Local => format!("{host} over the local transport"),
                Transport::Winrm => format!("{host}:{port} over WinRM"),
            };
            return Err(ApiError::new(ErrorCode::TargetNotAllowed, format!("{how} is not in this relay's allow-list")));
        }
        match target.transport {
            Transport::Ssh if target.user.as_deref().unwrap_or_default().is_empty() => {
                Err(ApiError::new(ErrorCode::InvalidTarget, format!("{host}: an ssh target needs a user")))
            }
            Transport::Ssh if target.password.is_none() && target.key_file.is_none() => {
                Err(ApiError::new(ErrorCode::InvalidTarget, format!("{host}: an ssh target needs a password or a key file")))
            }
            Transport::Local if self.config.local_command.is_none() => {
                Err(ApiError::new(ErrorCode::TargetNotAllowed, "the local transport is not configured on this relay"))
            }
            Transport::Winrm if target.user.as_deref().unwrap_or_default().trim().is_empty() || target.password.is_none() => {
                // Never the relay's own Kerberos tickets: a browser user brings their own credentials.
                Err(ApiError::new(ErrorCode::InvalidTarget, format!("{host}: a WinRM target needs a user and a password")))
            }
            Transport::Winrm if target.authentication == Some(WinrmAuth::Basic) && !target.use_ssl && !self.config.winrm.allow_basic_over_http => {
                Err(ApiError::new(
                    ErrorCode::InvalidTarget,
                    format!("{host}: Basic authentication over plain HTTP would send the password in clear; use HTTPS (UseSSL) or Negotiate"),
                ))
            }
            _ => Ok(()),
        }
    }

    /// New-PSSession: starts a session for `owner` on an allowed target. It opens in the background; its
    /// state changes arrive through [`Manager::changes`].
    pub fn create(self: &Arc<Self>, owner: &str, target: Target) -> Result<SessionInfo, ApiError> {
        // Kiosk mode: only the kiosk's targets, whatever the allow-list would let through.
        self.config.kiosk_allows(&target).map_err(|m| ApiError::new(ErrorCode::TargetNotAllowed, m))?;
        self.check_target(&target)?;
        if let Some(shell) = target.shell_id.as_deref() {
            if target.transport != Transport::Winrm {
                return Err(ApiError::new(ErrorCode::NotSupported, "only WinRM sessions can connect to an existing shell"));
            }
            if Uuid::parse_str(shell).is_err() {
                return Err(ApiError::new(ErrorCode::InvalidTarget, format!("{shell:?} is not a shell id")));
            }
            let attached = lock(&self.inner).sessions.values().any(|e| lock(&e.info).instance_id.as_deref().is_some_and(|i| i.eq_ignore_ascii_case(shell)));
            if attached {
                return Err(ApiError::new(ErrorCode::InvalidTarget, format!("a session of this relay is attached to shell {shell} already")));
            }
        }
        let (id, entry, rx) = self.add_entry(owner, &target, SessionState::Opening, true, None)?;
        let info = lock(&entry.info).clone();
        tracing::info!(session = id.0, owner, computer = %info.computer_name, transport = ?info.transport, "new session");
        self.pin(&entry, &target);
        tokio::spawn(drive(self.clone(), entry, target, Start::New, rx));
        Ok(info)
    }

    /// A new session's entry; with `admit`, only within the quotas (checked and taken under one lock, so that two
    /// New-PSSession racing for a user's last slot cannot both have it).
    fn add_entry(&self, owner: &str, target: &Target, state: SessionState, admit: bool, want: Option<SessionId>) -> Result<(SessionId, Arc<Entry>, mpsc::UnboundedReceiver<Command>), ApiError> {
        let port = crate::config::default_port(target.transport, target.use_ssl, target.port);
        let rule = crate::quotas::rule_of(&self.config.allow, target.computer_name.trim(), port, target.transport);
        let (commands, rx) = mpsc::unbounded_channel();
        let mut inner = lock(&self.inner);
        if admit {
            let rule_quotas = rule.map(|i| (i, &self.config.allow[i].quotas));
            let infos: Vec<(Arc<Entry>, SessionState)> = inner.sessions.values().map(|e| (e.clone(), lock(&e.info).state)).collect();
            let held = infos.iter().map(|(e, state)| crate::quotas::Held { owner: &e.owner, rule: e.rule, state: *state });
            if let Err(refusal) = crate::quotas::admit(&self.config.quotas, rule_quotas, owner, held) {
                tracing::info!(owner, computer = %target.computer_name.trim(), ?refusal, "New-PSSession refused by a quota");
                self.metrics.refused(refusal.quota());
                self.audit_refusal(owner, Some(target.computer_name.trim()), &refusal);
                return Err(ApiError::new(ErrorCode::QuotaExceeded, refusal.message()));
            }
        }
        // The id asked (a session taken over keeps its own) when the user has no session with it here.
        let id = match want.filter(|w| w.0 > 0 && !inner.sessions.contains_key(&(owner.to_owned(), *w))) {
            Some(w) => w,
            None => SessionId(inner.next_session.get(owner).copied().unwrap_or(0) + 1),
        };
        let next = inner.next_session.entry(owner.to_owned()).or_default();
        *next = (*next).max(id.0);
        let winrm = target.transport == Transport::Winrm;
        let info = SessionInfo {
            id,
            name: target.name.clone().filter(|n| !n.trim().is_empty()).unwrap_or_else(|| format!("Runspace{}", id.0)),
            computer_name: target.computer_name.trim().to_owned(),
            transport: target.transport,
            state,
            availability: Availability::None,
            reason: None,
            prompt: None,
            configuration_name: winrm.then(|| crate::config::configuration(target.configuration_name.as_deref()).to_owned()),
            instance_id: target.shell_id.as_ref().map(|s| s.to_uppercase()),
            can_disconnect: winrm,
            idle_left_secs: None,
            run_left_secs: None,
        };
        let mut origin = target.clone();
        (origin.name, origin.shell_id) = (None, None);
        let entry = Arc::new(Entry { owner: owner.to_owned(), origin: Origin(origin), info: Mutex::new(info), commands, pipelines: Mutex::default(), private_data: Mutex::default(), rule, activity: Mutex::new(self.time.now()), opened_at: Mutex::default(), ended: watch::Sender::new(false), handover: std::sync::atomic::AtomicBool::new(false), take_over: std::sync::atomic::AtomicBool::new(false), gap: Mutex::default(), pinned: Mutex::default() });
        inner.sessions.insert((owner.to_owned(), id), entry.clone());
        Ok((id, entry, rx))
    }

    /// Disconnect-PSSession on `owner`'s sessions (all checked before any is disconnected).
    pub fn disconnect(&self, owner: &str, ids: &[SessionId], idle_timeout: Option<Duration>, buffer_mode: Option<OutputBufferingMode>) -> Result<(), ApiError> {
        let entries = self.entries(owner, ids)?;
        for e in &entries {
            let info = lock(&e.info);
            if !info.can_disconnect {
                return Err(ApiError::new(ErrorCode::NotSupported, format!("session {} ({:?}) cannot be disconnected: only WinRM sessions can", info.id.0, info.transport)));
            }
            if info.state != SessionState::Opened {
                return Err(ApiError::new(ErrorCode::SessionNotReady, format!("session {} is {:?}, not opened", info.id.0, info.state).to_lowercase()));
            }
        }
        for e in entries {
            let _ = e.commands.send(Command::Disconnect { idle_timeout, buffer_mode });
        }
        Ok(())
    }

    /// The relay is stopping: its opened WinRM sessions are disconnected (Block mode, the target's idle timeout),
    /// not closed, so that their commands run on and the next relay process can connect them again. Waits for
    /// the targets' answers, at most `limit`; then for the audit records made so far to be in the store.
    pub async fn shutdown(&self, limit: Duration) {
        self.hand_over(limit).await;
        let _ = tokio::time::timeout(limit, self.flush_audit()).await;
    }

    async fn hand_over(&self, limit: Duration) {
        // Lines at the prompts end first (one waiting for an answer would keep the process alive).
        for prompt in lock(&self.prompts).values() {
            prompt.stop_all();
        }
        let mut changes = self.changes();
        let entries: Vec<Arc<Entry>> = lock(&self.inner)
            .sessions
            .values()
            .filter(|e| {
                let i = lock(&e.info);
                i.can_disconnect && i.state == SessionState::Opened
            })
            .cloned()
            .collect();
        let mut waiting: Vec<SessionId> = Vec::new();
        for e in &entries {
            e.handover.store(true, std::sync::atomic::Ordering::SeqCst);
            if e.commands.send(Command::Disconnect { idle_timeout: None, buffer_mode: Some(OutputBufferingMode::Block) }).is_ok() {
                waiting.push(lock(&e.info).id);
            }
        }
        if waiting.is_empty() {
            return;
        }
        tracing::info!(sessions = waiting.len(), "disconnecting the WinRM sessions before stopping");
        let _ = tokio::time::timeout(limit, async {
            while !waiting.is_empty() {
                match changes.recv().await {
                    Ok(Change { message: ServerMessage::SessionChanged { session }, .. }) if session.state != SessionState::Opened => {
                        waiting.retain(|id| *id != session.id);
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                    _ => {}
                }
            }
        })
        .await;
        if !waiting.is_empty() {
            tracing::warn!(sessions = ?waiting, "these WinRM sessions did not disconnect in time");
        }
    }

    /// Connect-PSSession on `owner`'s disconnected sessions.
    pub fn connect(&self, owner: &str, ids: &[SessionId]) -> Result<(), ApiError> {
        let entries = self.entries(owner, ids)?;
        for e in &entries {
            let info = lock(&e.info);
            if info.state != SessionState::Disconnected {
                return Err(ApiError::new(ErrorCode::SessionNotReady, format!("session {} is {:?}, not disconnected", info.id.0, info.state).to_lowercase()));
            }
        }
        for e in entries {
            let _ = e.commands.send(Command::Connect);
        }
        Ok(())
    }

    fn entries(&self, owner: &str, ids: &[SessionId]) -> Result<Vec<Arc<Entry>>, ApiError> {
        ids.iter().map(|id| self.entry(owner, *id)).collect()
    }

    /// `Get-PSSession -ComputerName`: the shells a WinRM target holds for the credentials in `target`.
    pub async fn remote_shells(&self, owner: &str, target: &Target) -> Result<Vec<RemoteShell>, ApiError> {
        if target.transport != Transport::Winrm {
            return Err(ApiError::new(ErrorCode::NotSupported, "only WinRM targets list their shells"));
        }
        self.config.kiosk_allows(target).map_err(|m| ApiError::new(ErrorCode::TargetNotAllowed, m))?;
        self.check_target(target)?;
        let winrm = winrm_target(&self.config, target).map_err(|e| target_error(&e))?;
        let shells = winrm_session::enumerate(&winrm).await.map_err(|e| target_error(&anyhow::Error::new(e)))?;
        let attached: Vec<(String, SessionId)> = {
            let inner = lock(&self.inner);
            inner.sessions.values().filter(|e| e.owner == owner).filter_map(|e| {
                let info = lock(&e.info);
                info.instance_id.clone().map(|i| (i, info.id))
            }).collect()
        };
        Ok(shells
            .into_iter()
            .map(|(s, commands)| {
                let uri = s.resource_uri.clone().unwrap_or_default();
                RemoteShell {
                    session: attached.iter().find(|(i, _)| i.eq_ignore_ascii_case(&s.shell_id)).map(|(_, id)| *id),
                    name: s.name.clone().unwrap_or_else(|| s.shell_id.clone()),
                    state: match &s.state {
                        Some(crate::wsman::ShellState::Connected) => "Connected".into(),
                        Some(crate::wsman::ShellState::Disconnected) => "Disconnected".into(),
                        Some(crate::wsman::ShellState::Other(o)) => o.clone(),
                        None => String::new(),
                    },
                    owner: s.owner.clone().unwrap_or_default(),
                    configuration_name: uri.rsplit('/').next().unwrap_or_default().to_owned(),
                    client_ip: s.client_ip.clone().unwrap_or_default(),
                    idle_timeout_secs: s.idle_timeout.map(|d| d.as_secs()),
                    commands: commands.len() as u32,
                    shell_id: s.shell_id,
                }
            })
            .collect())
    }

    /// A session of `owner`, for one of their requests (which is activity on it: the IdleTimeout quota).
    fn entry(&self, owner: &str, id: SessionId) -> Result<Arc<Entry>, ApiError> {
        let entry = lock(&self.inner)
            .sessions
            .get(&(owner.to_owned(), id))
            .cloned()
            .ok_or_else(|| ApiError::new(ErrorCode::UnknownSession, format!("there is no session {}", id.0)))?;
        *lock(&entry.activity) = self.time.now();
        Ok(entry)
    }

    /// The time the quotas count in: tests move it forward instead of waiting for an IdleTimeout.
    pub fn quota_time(&self) -> &crate::quotas::QuotaTime {
        &self.time
    }

    /// `[quotas] max_connections`'s count.
    pub fn connections(&self) -> &crate::quotas::Connections {
        &self.connections
    }

    /// This relay's metrics.
    pub fn metrics(&self) -> &Arc<crate::metrics::Metrics> {
        &self.metrics
    }

    /// Starts (or ends) draining: `/readyz` answers 503 `draining` meanwhile; nothing else changes (a drain's
    /// signal sets it, then waits for the sessions to end or move before the relay stops).
    pub fn set_draining(&self, draining: bool) {
        if self.draining.swap(draining, std::sync::atomic::Ordering::Relaxed) != draining {
            tracing::info!(draining, "the relay's readiness changed");
        }
    }

    /// Whether the relay is draining.
    pub fn draining(&self) -> bool {
        self.draining.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Every user's sessions as the metrics count them: (transport, state, availability) each.
    pub fn session_states(&self) -> Vec<(Transport, SessionState, Availability)> {
        let entries: Vec<Arc<Entry>> = lock(&self.inner).sessions.values().cloned().collect();
        entries
            .iter()
            .map(|e| {
                let info = lock(&e.info);
                (info.transport, info.state, info.availability)
            })
            .collect()
    }

    /// Whether `user` is a relay admin (flagged in the database: `psgate user add --admin`).
    pub async fn is_admin(&self, user: &str) -> bool {
        let Some((store, _)) = &self.store else { return false };
        self.metrics.time_store(crate::metrics::StoreOp::IsAdmin, store.is_admin(user)).await.unwrap_or_else(|e| {
            tracing::error!(error = %e, "reading the admin flag");
            false
        })
    }

    async fn refuse_non_admin(&self, user: &str) -> Result<(), ApiError> {
        if self.is_admin(user).await {
            Ok(())
        } else {
            Err(ApiError::new(ErrorCode::TargetNotAllowed, "Access is denied: only a relay admin (psgate user add --admin) sees and closes other users' sessions."))
        }
    }

    /// The time the quotas leave a session: (idle, run) seconds, each `None` where no quota applies (idle: also
    /// while a command runs in it, connected).
    fn time_left_of(&self, entry: &Entry) -> (Option<u64>, Option<u64>) {
        let quotas = self.quotas_of(entry);
        let info = lock(&entry.info).clone();
        if matches!(info.state, SessionState::Closed | SessionState::Broken) {
            return (None, None);
        }
        let now = self.time.now();
        let busy = info.state == SessionState::Opened && info.availability == Availability::Busy;
        let idle = quotas.idle_timeout_secs.filter(|_| !busy).map(|t| t.saturating_sub(now.saturating_duration_since(*lock(&entry.activity)).as_secs()));
        let opened = *lock(&entry.opened_at);
        let run = quotas.max_shell_run_time_secs.map(|t| t.saturating_sub(opened.map_or(0, |o| now.saturating_duration_since(o).as_secs())));
        (idle, run)
    }

    /// The time the quotas leave one of `owner`'s sessions (not a request on it: asking does not keep it open).
    pub fn time_left(&self, owner: &str, id: SessionId) -> (Option<u64>, Option<u64>) {
        let entry = lock(&self.inner).sessions.get(&(owner.to_owned(), id)).cloned();
        entry.map_or((None, None), |e| self.time_left_of(&e))
    }

    /// Get-PSGateQuota: each quota that applies to `owner` (`all_users`, admins only: every user's use).
    pub async fn quota_use(&self, owner: &str, all_users: bool) -> Result<Vec<lang_quota::QuotaUse>, ApiError> {
        if all_users {
            self.refuse_non_admin(owner).await?;
        }
        /// A session as the quotas see it: owner, rule, state, opened, last request.
        struct Seen(String, Option<usize>, SessionState, Option<tokio::time::Instant>, tokio::time::Instant);
        let held: Vec<Seen> = lock(&self.inner).sessions.values().map(|e| Seen(e.owner.clone(), e.rule, lock(&e.info).state, *lock(&e.opened_at), *lock(&e.activity))).collect();
        let live = |h: &&Seen| !matches!(h.2, SessionState::Closed | SessionState::Broken);
        let mut users: Vec<String> = if all_users { held.iter().filter(live).map(|h| h.0.clone()).collect() } else { vec![owner.to_owned()] };
        users.sort_unstable();
        users.dedup();
        let mut scopes: Vec<(Option<usize>, String, &crate::quotas::Quotas)> = vec![(None, "[quotas]".to_owned(), &self.config.quotas)];
        for (i, rule) in self.config.allow.iter().enumerate().filter(|(_, r)| r.quotas != crate::quotas::Quotas::default()) {
            scopes.push((Some(i), format!("[[allow]] rule {} ({})", i + 1, rule.hosts.join(", ")), &rule.quotas));
        }
        let now = self.time.now();
        let mut out = Vec::new();
        let row = |quota: &str, scope: &str, limit: Option<u64>, seconds: bool, used: Option<u64>, user: Option<&str>| lang_quota::QuotaUse {
            quota: quota.to_owned(),
            scope: scope.to_owned(),
            limit,
            seconds,
            used,
            user: user.filter(|_| all_users).map(str::to_owned),
        };
        for (rule, scope, q) in &scopes {
            let in_scope: Vec<_> = held.iter().filter(live).filter(|h| rule.is_none() || h.1 == *rule).collect();
            for user in &users {
                let mine: Vec<_> = in_scope.iter().filter(|h| &h.0 == user).collect();
                if let Some(max) = q.max_shells_per_user {
                    out.push(row("MaxShellsPerUser", scope, Some(u64::from(max)), false, Some(mine.len() as u64), Some(user)));
                }
                if let Some(t) = q.idle_timeout_secs {
                    // The longest idle of the user's sessions now.
                    let idle = mine.iter().map(|h| now.saturating_duration_since(h.4).as_secs()).max();
                    out.push(row("IdleTimeout", scope, Some(t), true, idle, Some(user)));
                }
                if let Some(t) = q.max_shell_run_time_secs {
                    let run = mine.iter().filter_map(|h| h.3).map(|o| now.saturating_duration_since(o).as_secs()).max();
                    out.push(row("MaxShellRunTime", scope, Some(t), true, run, Some(user)));
                }
            }
            if let Some(max) = q.max_concurrent_users {
                let mut holders: Vec<&String> = in_scope.iter().map(|h| &h.0).collect();
                holders.sort_unstable();
                holders.dedup();
                out.push(row("MaxConcurrentUsers", scope, Some(u64::from(max)), false, Some(holders.len() as u64), None));
            }
            if rule.is_none()
                && let Some(max) = q.max_connections
            {
                out.push(row("MaxConnections", scope, Some(u64::from(max)), false, self.connections.in_use(), None));
            }
        }
        Ok(out)
    }

    /// Get-PSGateSession (admins): every user's sessions, with the time their quotas leave them.
    pub async fn user_sessions(&self, admin: &str) -> Result<Vec<lang_quota::UserSession>, ApiError> {
        self.refuse_non_admin(admin).await?;
        let entries: Vec<Arc<Entry>> = lock(&self.inner).sessions.values().cloned().collect();
        Ok(entries
            .iter()
            .map(|e| {
                let (idle_left_secs, run_left_secs) = self.time_left_of(e);
                lang_quota::UserSession { owner: e.owner.clone(), info: lock(&e.info).clone(), idle_left_secs, run_left_secs }
            })
            .collect())
    }

    /// Remove-PSGateSession (admins): closes `owner`'s session `id`, and records it in the audit.
    pub async fn admin_close(&self, admin: &str, owner: &str, id: SessionId) -> Result<Removed, ApiError> {
        self.refuse_non_admin(admin).await?;
        let computer = self.computer_name(owner, id)?;
        let removed = self.remove_as(admin, owner, Some(&[id]))?;
        tracing::warn!(admin, owner, session = id.0, %computer, "an admin closed another user's session");
        self.audit(crate::audit::Event::new(crate::audit::Kind::Admin, admin).on(owner, id.0, &computer).with(serde_json::json!({"action": "Remove-PSGateSession"})));
        self.publish(owner, ServerMessage::TargetRefused { computer_name: computer.clone(), code: ErrorCode::TargetNotAllowed, message: format!("The relay admin {admin} closed your session {} on {computer}.", id.0) });
        Ok(removed)
    }

    /// The WinRM target to reach `computer`'s configuration with: the origin of the first of `owner`'s WinRM sessions
    /// to it (its credentials), and the configurations those sessions use.
    fn wsman_origin(&self, owner: &str, computer: &str) -> Result<(Target, Vec<String>), ApiError> {
        let inner = lock(&self.inner);
        let mut found: Option<Target> = None;
        let mut configurations = Vec::new();
        for e in inner.sessions.values().filter(|e| e.owner == owner) {
            let info = lock(&e.info);
            if info.transport == Transport::Winrm && info.computer_name.trim().eq_ignore_ascii_case(computer.trim()) {
                configurations.extend(info.configuration_name.clone());
                found.get_or_insert_with(|| e.origin.0.clone());
            }
        }
        let target = found.ok_or_else(|| {
            ApiError::new(
                ErrorCode::UnknownSession,
                format!("Cannot find path 'WSMan:\\{computer}': psgate reads a computer's WinRM configuration with the credentials of one of your WinRM sessions to it. Open one first: New-PSSession -ComputerName {computer}."),
            )
        })?;
        Ok((target, configurations))
    }

    /// `Get-Item WSMan:\<computer>\<path>`: the setting or container there, read from the target.
    pub async fn wsman_get(&self, owner: &str, computer: &str, path: &[String]) -> Result<psgate_lang::WsmanNode, ApiError> {
        use super::wsman_drive::{Located, locate, node, plugins};
        let (target, configurations) = self.wsman_origin(owner, computer)?;
        let (resource, inner) = match locate(path) {
            Located::Plugins => return Ok(plugins(configurations)),
            Located::In(resource, inner) => (resource, inner),
        };
        let winrm = winrm_target(&self.config, &target).map_err(|e| target_error(&e))?;
        let (_, items) = winrm_session::config_get(&winrm, &resource).await.map_err(|e| target_error(&anyhow::Error::new(e)))?;
        let name = path.last().cloned().unwrap_or_else(|| computer.to_owned());
        node(&resource, &items, &inner, &name)
            .ok_or_else(|| ApiError::new(ErrorCode::UnknownSession, format!("Cannot find path 'WSMan:\\{computer}\\{}' because it does not exist.", path.join("\\"))))
    }

    /// `Set-Item WSMan:\<computer>\<path> <value>`: Get the resource, edit the setting, Put it back.
    pub async fn wsman_set(&self, owner: &str, computer: &str, path: &[String], value: &str) -> Result<(), ApiError> {
        use super::wsman_drive::{Located, locate};
        let (target, _) = self.wsman_origin(owner, computer)?;
        let Located::In(resource, inner) = locate(path) else {
            return Err(ApiError::new(ErrorCode::NotSupported, "This command cannot be used in the current path because this cmdlet is not supported at this level of Provider path."));
        };
        let winrm = winrm_target(&self.config, &target).map_err(|e| target_error(&e))?;
        winrm_session::config_set(&winrm, &resource, &inner.join("/"), value).await.map_err(|e| target_error(&anyhow::Error::new(e)))?;
        tracing::info!(owner, computer, path = %path.join("\\"), value, "WinRM configuration changed");
        Ok(())
    }

    /// `Get-PSGateQuota -ComputerName`: a WinRM target's quotas (`WSMan:\\<computer>\\Shell`, `…\\Service`, and
    /// `…\\Plugin\\<name>\\Quotas` of the configurations the user's sessions there use) against the user's shells
    /// on it, which WS-Management's Enumerate lists with their owner, client and state.
    pub async fn target_quota_use(&self, owner: &str, computer: &str) -> Result<Vec<lang_quota::QuotaUse>, ApiError> {
        use crate::wsman::ConfigResource;
        let (target, mut configurations) = self.wsman_origin(owner, computer)?;
        configurations.sort_unstable_by_key(|c| c.to_lowercase());
        configurations.dedup_by(|a, b| a.eq_ignore_ascii_case(b));
        let winrm = winrm_target(&self.config, &target).map_err(|e| target_error(&e))?;
        let fail = |e: winrm_session::WinrmOpError| target_error(&anyhow::Error::new(e));
        let shells = winrm_session::enumerate(&winrm).await.map_err(fail)?;
        let of_configuration = |c: &str| shells.iter().filter(|(s, _)| s.resource_uri.as_deref().is_some_and(|u| u.rsplit('/').next().is_some_and(|n| n.eq_ignore_ascii_case(c)))).count() as u64;
        let mut owners: Vec<String> = shells.iter().filter_map(|(s, _)| s.owner.clone()).collect();
        owners.sort_unstable();
        owners.dedup();
        let number = |items: &[crate::wsman::ConfigItem], path: &str| items.iter().find(|i| i.path.eq_ignore_ascii_case(path)).and_then(|i| i.value.trim().parse::<u64>().ok());
        let row = |quota: &str, scope: String, limit: Option<u64>, seconds: bool, used: Option<u64>| lang_quota::QuotaUse { quota: quota.into(), scope, limit, seconds, used, user: None };
        let mut out = Vec::new();
        let (_, winrs) = winrm_session::config_get(&winrm, &ConfigResource::Winrs).await.map_err(fail)?;
        let scope = format!("WSMan:\\{computer}\\Shell");
        out.push(row("MaxShellsPerUser", scope.clone(), number(&winrs, "MaxShellsPerUser"), false, Some(shells.len() as u64)));
        out.push(row("MaxConcurrentUsers", scope.clone(), number(&winrs, "MaxConcurrentUsers"), false, Some(owners.len() as u64)));
        out.push(row("IdleTimeout", scope.clone(), number(&winrs, "IdleTimeout").map(|ms| ms / 1000), true, None));
        for q in ["MaxShellRunTime", "MaxProcessesPerShell", "MaxMemoryPerShellMB"] {
            out.push(row(q, scope.clone(), number(&winrs, q), false, None));
        }
        let (_, service) = winrm_session::config_get(&winrm, &ConfigResource::Service).await.map_err(fail)?;
        let scope = format!("WSMan:\\{computer}\\Service");
        let operations: u64 = shells.iter().map(|(_, commands)| commands.len() as u64).sum();
        out.push(row("MaxConcurrentOperationsPerUser", scope.clone(), number(&service, "MaxConcurrentOperationsPerUser"), false, Some(operations)));
        out.push(row("MaxConnections", scope, number(&service, "MaxConnections"), false, None));
        if configurations.is_empty() {
            configurations.push("Microsoft.PowerShell".into());
        }
        for c in &configurations {
            let (_, plugin) = winrm_session::config_get(&winrm, &ConfigResource::Plugin(c.clone())).await.map_err(fail)?;
            let scope = format!("WSMan:\\{computer}\\Plugin\\{c}\\Quotas");
            out.push(row("MaxShellsPerUser", scope.clone(), number(&plugin, "Quotas/MaxShellsPerUser"), false, Some(of_configuration(c))));
            out.push(row("MaxShells", scope.clone(), number(&plugin, "Quotas/MaxShells"), false, None));
            out.push(row("MaxConcurrentUsers", scope.clone(), number(&plugin, "Quotas/MaxConcurrentUsers"), false, None));
            out.push(row("IdleTimeout", scope.clone(), number(&plugin, "Quotas/IdleTimeoutms").map(|ms| ms / 1000), true, None));
            out.push(row("MaxConcurrentCommandsPerShell", scope, number(&plugin, "Quotas/MaxConcurrentCommandsPerShell"), false, None));
        }
        Ok(out)
    }

    /// The output a command of the session may keep in the relay (MaxMemoryPerShellMB), in bytes.
    fn output_limit(&self, entry: &Entry) -> Option<usize> {
        self.quotas_of(entry).max_memory_per_shell_mb.map(|mb| (mb as usize).saturating_mul(1024 * 1024))
    }

    /// The quotas of a session: `[quotas]` tightened by its rule's.
    fn quotas_of(&self, entry: &Entry) -> crate::quotas::Quotas {
        match entry.rule.and_then(|i| self.config.allow.get(i)) {
            Some(rule) => self.config.quotas.tightened(&rule.quotas),
            None => self.config.quotas.clone(),
        }
    }

    /// Get-PSSession: `owner`'s sessions, optionally filtered (case-insensitive), by id.
    pub fn list(&self, owner: &str, computer_name: Option<&str>, name: Option<&str>) -> Vec<SessionInfo> {
        let entries: Vec<Arc<Entry>> = lock(&self.inner).sessions.values().filter(|e| e.owner == owner).cloned().collect();
        entries
            .iter()
            .map(|e| {
                let mut info = lock(&e.info).clone();
                (info.idle_left_secs, info.run_left_secs) = self.time_left_of(e);
                info
            })
            .filter(|i| computer_name.is_none_or(|c| i.computer_name.eq_ignore_ascii_case(c)))
            .filter(|i| name.is_none_or(|n| i.name.eq_ignore_ascii_case(n)))
            .collect()
    }

    /// Remove-PSSession: closes and forgets these sessions of `owner` (`None`: all of them). Ids that are not
    /// `owner`'s are an error and nothing is removed.
    pub fn remove(&self, owner: &str, ids: Option<&[SessionId]>) -> Result<Removed, ApiError> {
        self.remove_as(owner, owner, ids)
    }

    /// [`Manager::remove`] done by `actor` (an admin), as the audit records it.
    fn remove_as(&self, actor: &str, owner: &str, ids: Option<&[SessionId]>) -> Result<Removed, ApiError> {
        let mut inner = lock(&self.inner);
        let ids: Vec<SessionId> = match ids {
            Some(ids) => {
                if let Some(id) = ids.iter().find(|id| !inner.sessions.contains_key(&(owner.to_owned(), **id))) {
                    return Err(ApiError::new(ErrorCode::UnknownSession, format!("there is no session {}", id.0)));
                }
                ids.to_vec()
            }
            None => inner.sessions.keys().filter(|(o, _)| o == owner).map(|(_, id)| *id).collect(),
        };
        let mut ended = Vec::new();
        for id in &ids {
            if let Some(entry) = inner.sessions.remove(&(owner.to_owned(), *id)) {
                ended.push(entry.ended.subscribe());
                if let (Some(pin), Some((store, _))) = (lock(&entry.pinned).take(), &self.store) {
                    let store = store.clone();
                    tokio::spawn(async move {
                        if let Some(written) = pin.written {
                            let _ = written.await;
                        }
                        if let Err(e) = store.remove_pinned(&pin.key).await {
                            tracing::error!(error = %e, "forgetting a session in the store");
                        }
                    });
                }
                let _ = entry.commands.send(Command::Close);
                tracing::info!(session = id.0, owner, "session removed");
                let computer = lock(&entry.info).computer_name.clone();
                self.audit(crate::audit::Event::new(crate::audit::Kind::SessionClosed, actor).on(owner, id.0, &computer));
                // Its shares end with it.
                if let Some((store, _)) = &self.store {
                    let (store, owner, id) = (store.clone(), owner.to_owned(), id.0 as i64);
                    tokio::spawn(async move {
                        if let Err(e) = store.remove_share(&owner, id, None).await {
                            tracing::error!(error = %e, "forgetting a session's shares");
                        }
                    });
                }
                // Every page's sessions panel drops it (whoever removed it: a page, psgate's prompt).
                let mut info = lock(&entry.info).clone();
                info.state = SessionState::Closed;
                info.availability = Availability::None;
                self.publish(owner, ServerMessage::SessionChanged { session: info });
            }
        }
        let none_left = !inner.sessions.keys().any(|(o, _)| o == owner);
        drop(inner);
        // Holding no session any more, the user no longer counts against MaxConcurrentUsers anywhere.
        if none_left && !ids.is_empty() && let Some((store, _)) = &self.store {
            let (store, owner) = (store.clone(), owner.to_owned());
            tokio::spawn(async move {
                if let Err(e) = store.set_user_active(&owner, false).await {
                    tracing::error!(error = %e, "noting a user without sessions in the store");
                }
            });
        }
        // The prompt leaves a session removed under it (from the sessions panel).
        let prompt = lock(&self.prompts).get(owner).cloned();
        if let Some(prompt) = prompt
            && ids.iter().any(|id| prompt.session_gone(*id))
        {
            self.publish(owner, ServerMessage::PromptState { entered: None });
        }
        Ok(Removed { ids, ended })
    }

    /// Runs a console command; the pipeline's events go to the returned buffer. A line typed at a session's
    /// console goes as Command objects where it can (a JEA endpoint refuses script text); one for
    /// [`LOCAL_SESSION`] runs at psgate's own prompt.
    pub fn run(self: &Arc<Self>, owner: &str, id: SessionId, script: String) -> Result<(PipelineId, Arc<Buffer>), ApiError> {
        if id == LOCAL_SESSION {
            return super::prompt::run(self, owner, script);
        }
        let spec = Work::Pipeline(psgate_lang::jea::pipeline_for(&script));
        let started = self.start(owner, id, Launch { spec, text: script, tag: false, invocation: None, hidden: false, actor: None })?;
        // The session's joiners follow it too.
        if self.has_joiners(owner, id) {
            self.publish_scoped(owner, ServerMessage::PipelineStarted { session: id, pipeline: started.0 }, Scope::Joiners);
        }
        Ok(started)
    }

    /// A peer's command in `owner`'s shared session: run as the owner's, recorded as `actor`'s; every participant
    /// (the owner's pages, the joiners, the peer's own console) follows it from `pipeline_started`.
    pub fn run_as_peer(&self, actor: &str, owner: &str, id: SessionId, script: String) -> Result<PipelineId, ApiError> {
        let spec = Work::Pipeline(psgate_lang::jea::pipeline_for(&script));
        let (pipeline, _) = self.start(owner, id, Launch { spec, text: script, tag: false, invocation: None, hidden: false, actor: Some(actor.to_owned()) })?;
        self.publish(owner, ServerMessage::PipelineStarted { session: id, pipeline });
        Ok(pipeline)
    }

    /// Admins: up to `limit` audit records after `after` that `filter` and `matcher` select, and whether more do.
    pub async fn audit_records(&self, admin: &str, filter: &crate::store::AuditFilter, matcher: &crate::audit::export::Matcher, after: i64, limit: usize) -> Result<(Vec<crate::audit::Record>, bool), ApiError> {
        self.refuse_non_admin(admin).await?;
        let Some((store, _)) = &self.store else { return Ok((Vec::new(), false)) };
        let mut records = crate::audit::export::select(store, filter, matcher, after, limit + 1).await.map_err(|e| store_failed(&e))?;
        let more = records.len() > limit;
        records.truncate(limit);
        Ok((records, more))
    }

    /// Admins: the audit chain checked (records, the last number, what is wrong).
    pub async fn audit_verify(&self, admin: &str) -> Result<(u64, i64, Vec<String>), ApiError> {
        self.refuse_non_admin(admin).await?;
        let Some((store, sealer)) = &self.store else { return Ok((0, 0, Vec::new())) };
        let (records, end, problems) = crate::audit::export::verify(store, &sealer.audit_key()).await.map_err(|e| store_failed(&e))?;
        Ok((records, end, problems.iter().map(ToString::to_string).collect()))
    }

    /// Shares `owner`'s session `id` with `user` as `role` (again: the role changes, for a joined console at once);
    /// the session's shares after it.
    pub async fn share(&self, owner: &str, id: SessionId, user: &str, role: ShareRole) -> Result<Vec<Share>, ApiError> {
        let computer = self.computer_name(owner, id)?;
        let Some((store, _)) = &self.store else { return Err(ApiError::new(ErrorCode::NotSupported, "sharing needs the relay's store")) };
        if user == owner {
            return Err(ApiError::new(ErrorCode::BadMessage, "a session is its owner's already"));
        }
        if let Some(group) = user.strip_prefix(GROUP_PREFIX) {
            if !self.config.groups.contains_key(group) {
                return Err(ApiError::new(ErrorCode::BadMessage, format!("there is no group {group} ([groups] in the relay's configuration)")));
            }
        } else {
            match store.user_exists(user).await {
                Ok(true) => {}
                Ok(false) => return Err(ApiError::new(ErrorCode::BadMessage, format!("there is no relay user {user}"))),
                Err(e) => return Err(store_failed(&e)),
            }
        }
        let row = crate::store::ShareRow { owner: owner.to_owned(), session_id: id.0 as i64, grantee: user.to_owned(), role: role_name(role).to_owned() };
        store.put_share(&row, unix_ms()).await.map_err(|e| store_failed(&e))?;
        self.reseat(store, owner, id).await;
        tracing::info!(owner, session = id.0, %user, ?role, "session shared");
        self.audit(crate::audit::Event::new(crate::audit::Kind::Sharing, owner).on(owner, id.0, &computer).with(serde_json::json!({"action": "share", "user": user, "role": role})));
        self.publish_participants(owner, id);
        // The invitee's pages on this relay see it at once (on another relay: within five heartbeats, http::ws).
        self.tell_invitees(user).await;
        self.shares(owner, id).await
    }

    /// The users a share's grantee names: the user, or the group's members.
    fn invitees(&self, grantee: &str) -> Vec<String> {
        match grantee.strip_prefix(GROUP_PREFIX) {
            Some(group) => self.config.groups.get(group).cloned().unwrap_or_default(),
            None => vec![grantee.to_owned()],
        }
    }

    /// Tells the pages on this relay of the users `grantee` names what is shared with them now.
    async fn tell_invitees(&self, grantee: &str) {
        for user in self.invitees(grantee) {
            if let Ok(sessions) = self.shared_with(&user).await {
                self.publish(&user, ServerMessage::SharedSessions { sessions });
            }
        }
    }

    /// The joiners of `owner`'s session `id` given their role by the shares now kept (their own, or their groups');
    /// those no longer invited are revoked at once: told, and their consoles closed (an admin's observer's seat that
    /// was never invited stays).
    async fn reseat(&self, store: &Store, owner: &str, id: SessionId) {
        let Ok(rows) = store.shares_of(owner, id.0 as i64).await else { return };
        let mut revoked = Vec::new();
        for j in lock(&self.joins).get_mut(&(owner.to_owned(), id)).into_iter().flatten().filter(|j| !j.revoked) {
            match access_of(&rows, &self.config.groups, &j.user) {
                // Invited now (an admin's observer's seat too: its role is the invitation's until revoked).
                Some(role) => {
                    j.role = role;
                    j.invited = true;
                }
                None if j.invited => {
                    j.revoked = true;
                    revoked.push(j.user.clone());
                }
                None => {}
            }
        }
        // Once per user (their consoles in several tabs are seats of their own).
        revoked.sort();
        revoked.dedup();
        for user in revoked {
            self.publish_scoped(owner, ServerMessage::ShareRevoked { owner: owner.to_owned(), session: id }, Scope::Joiner(user));
        }
    }

    /// Revokes `user`'s share of `owner`'s session `id` at once: their joined consoles are told and closed.
    pub async fn unshare(&self, owner: &str, id: SessionId, user: &str) -> Result<Vec<Share>, ApiError> {
        let computer = self.computer_name(owner, id)?;
        let Some((store, _)) = &self.store else { return Err(ApiError::new(ErrorCode::NotSupported, "sharing needs the relay's store")) };
        store.remove_share(owner, id.0 as i64, Some(user)).await.map_err(|e| store_failed(&e))?;
        tracing::info!(owner, session = id.0, %user, "share revoked");
        self.audit(crate::audit::Event::new(crate::audit::Kind::Sharing, owner).on(owner, id.0, &computer).with(serde_json::json!({"action": "revoke", "user": user})));
        // Its joiners not invited otherwise (their own invitation, another group's) are revoked; an admin's own
        // observer's seat is not an invitation and stays.
        self.reseat(store, owner, id).await;
        self.tell_invitees(user).await;
        self.shares(owner, id).await
    }

    /// Who `owner`'s session `id` is shared with.
    pub async fn shares(&self, owner: &str, id: SessionId) -> Result<Vec<Share>, ApiError> {
        self.entry(owner, id)?;
        let Some((store, _)) = &self.store else { return Ok(Vec::new()) };
        let rows = store.shares_of(owner, id.0 as i64).await.map_err(|e| store_failed(&e))?;
        Ok(rows.into_iter().map(|r| Share { user: r.grantee, role: Some(role_of(&r.role)) }).collect())
    }

    /// The sessions other users shared with `user`.
    pub async fn shared_with(&self, user: &str) -> Result<Vec<SharedSession>, ApiError> {
        let Some((store, _)) = &self.store else { return Ok(Vec::new()) };
        let mut rows = store.shares_to(user).await.map_err(|e| store_failed(&e))?;
        for (group, members) in &self.config.groups {
            if members.iter().any(|m| m == user) {
                rows.extend(store.shares_to(&format!("{GROUP_PREFIX}{group}")).await.map_err(|e| store_failed(&e))?);
            }
        }
        // One entry per session, with what the user may do there (their own invitation's role, else their groups'),
        // in the order first shared.
        let mut by_session: Vec<((String, i64), Vec<crate::store::ShareRow>)> = Vec::new();
        for r in rows {
            let key = (r.owner.clone(), r.session_id);
            match by_session.iter_mut().find(|(k, _)| *k == key) {
                Some((_, of_session)) => of_session.push(r),
                None => by_session.push((key, vec![r])),
            }
        }
        Ok(by_session
            .into_iter()
            .filter_map(|((owner, id), of_session)| {
                let role = access_of(&of_session, &self.config.groups, user)?;
                Some(SharedSession { owner, session: SessionId(u64::try_from(id).ok()?), role })
            })
            .collect())
    }

    /// What `joiner` may do in `owner`'s session `id`, held here: their invitation's role, else an admin's
    /// observer's seat; refused otherwise. Also whether it is an invitation.
    pub async fn join_access(&self, joiner: &str, owner: &str, id: SessionId) -> Result<(ShareRole, bool), ApiError> {
        self.entry(owner, id)?;
        let refused = || ApiError::new(ErrorCode::Forbidden, format!("{owner} has not shared session {} with {joiner}", id.0));
        if joiner == owner {
            return Err(ApiError::new(ErrorCode::BadMessage, "the session is yours: open it in your own console"));
        }
        let Some((store, _)) = &self.store else { return Err(refused()) };
        let rows = store.shares_of(owner, id.0 as i64).await.map_err(|e| store_failed(&e))?;
        if let Some(role) = access_of(&rows, &self.config.groups, joiner) {
            return Ok((role, true));
        }
        let moderator = self.entry(owner, id).ok().and_then(|e| self.moderation_of(&e)).is_some_and(|m| m.moderators.iter().any(|m| m == joiner));
        if moderator || self.is_admin(joiner).await {
            return Ok((ShareRole::Observer, false));
        }
        Err(refused())
    }

    /// A joiner present in `owner`'s session `id` (until the guard drops); everyone there hears who is.
    pub fn join(self: &Arc<Self>, joiner: &str, owner: &str, id: SessionId, role: ShareRole, invited: bool) -> JoinGuard {
        let seat = self.next_join.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        lock(&self.joins).entry((owner.to_owned(), id)).or_default().push(Joiner { seat, user: joiner.to_owned(), role, invited, revoked: false });
        if let Ok(computer) = self.computer_name(owner, id) {
            self.audit(crate::audit::Event::new(crate::audit::Kind::Sharing, joiner).on(owner, id.0, &computer).with(serde_json::json!({"action": "join", "role": role})));
        }
        self.publish_participants(owner, id);
        JoinGuard { manager: Arc::downgrade(self), owner: owner.to_owned(), session: id, seat }
    }

    /// A joiner's role now (`None`: revoked, or gone).
    pub fn join_role(&self, owner: &str, id: SessionId, seat: u64) -> Option<ShareRole> {
        lock(&self.joins).get(&(owner.to_owned(), id))?.iter().find(|j| j.seat == seat && !j.revoked).map(|j| j.role)
    }

    fn has_joiners(&self, owner: &str, id: SessionId) -> bool {
        lock(&self.joins).get(&(owner.to_owned(), id)).is_some_and(|j| !j.is_empty())
    }

    /// Who is present in `owner`'s session `id`: the owner, then each joiner.
    pub fn participants(&self, owner: &str, id: SessionId) -> Vec<Share> {
        let mut out = vec![Share { user: owner.to_owned(), role: None }];
        out.extend(lock(&self.joins).get(&(owner.to_owned(), id)).into_iter().flatten().filter(|j| !j.revoked).map(|j| Share { user: j.user.clone(), role: Some(j.role) }));
        out
    }

    fn publish_participants(&self, owner: &str, id: SessionId) {
        let participants = self.participants(owner, id);
        self.publish(owner, ServerMessage::Participants { session: id, participants });
    }

    /// Sends `message` to `scope` among `owner`'s connections and their sessions' joiners.
    pub(super) fn publish_scoped(&self, owner: &str, message: ServerMessage, scope: Scope) {
        let _ = self.changes.send(Change { owner: owner.to_owned(), message, scope });
    }

    /// A new pipeline's id.
    pub(super) fn next_pipeline(&self) -> PipelineId {
        lock(&self.inner).new_pipeline()
    }

    /// A new Invoke-Command run's id.
    pub fn next_invocation(&self) -> InvocationId {
        let mut inner = lock(&self.inner);
        inner.next_invocation += 1;
        InvocationId(inner.next_invocation)
    }

    /// The target a session of `owner` was opened with (credentials included), for a new session like it.
    pub fn target_of(&self, owner: &str, id: SessionId) -> Result<Target, ApiError> {
        Ok(self.entry(owner, id)?.origin.0.clone())
    }

    /// The APPLICATION_PRIVATE_DATA a session of `owner` received when it last opened.
    pub fn application_private_data(&self, owner: &str, id: SessionId) -> Option<Value> {
        lock(&self.entry(owner, id).ok()?.private_data).clone()
    }

    /// A session's `ComputerName`.
    pub fn computer_name(&self, owner: &str, id: SessionId) -> Result<String, ApiError> {
        Ok(lock(&self.entry(owner, id)?.info).computer_name.clone())
    }

    /// Runs Invoke-Command's script on one session: like [`Manager::run`], each output object carries the
    /// session's `PSComputerName` note property.
    fn run_tagged(&self, owner: &str, id: SessionId, script: String, invocation: InvocationId) -> Result<(PipelineId, Arc<Buffer>), ApiError> {
        let spec = Work::Pipeline(psgate_lang::jea::block_pipeline(&script, &[]));
        self.start(owner, id, Launch { spec, text: script, tag: true, invocation: Some(invocation), hidden: false, actor: None })
    }

    /// Runs a pipeline for psgate's prompt (Invoke-Command there): kept for the prompt to follow and stop, not in
    /// the session's console history.
    /// `input`: objects for the pipeline to read (none: it reads no input).
    pub(super) fn run_for_prompt(&self, owner: &str, id: SessionId, spec: PipelineSpec, input: Option<Vec<Value>>, text: String, tag: bool) -> Result<(PipelineId, Arc<Buffer>), ApiError> {
        let spec = match input {
            Some(input) => Work::WithInput(spec, input),
            None => Work::Pipeline(spec),
        };
        self.start(owner, id, Launch { spec, text, tag, invocation: None, hidden: true, actor: None })
    }

    /// GET_COMMAND_METADATA in a session (Import-PSSession's discovery): its answers (the count, then one object per
    /// command) are the returned pipeline's output; not in the session's console history.
    pub fn command_metadata(&self, owner: &str, id: SessionId, names: Vec<String>, namespaces: Vec<String>) -> Result<(PipelineId, Arc<Buffer>), ApiError> {
        let text = format!("(command metadata {} in {})", names.join(", "), if namespaces.is_empty() { "every module".to_owned() } else { namespaces.join(", ") });
        self.start(owner, id, Launch { spec: Work::Metadata { names, namespaces }, text, tag: false, invocation: None, hidden: true, actor: None })
    }

    fn start(&self, owner: &str, id: SessionId, launch: Launch) -> Result<(PipelineId, Arc<Buffer>), ApiError> {
        let Launch { spec, text: script, tag: tagged, invocation, hidden, actor } = launch;
        let entry = self.entry(owner, id)?;
        let (tag, prompt, computer) = {
            let mut info = lock(&entry.info);
            if info.state != SessionState::Opened || info.availability != Availability::Available {
                return Err(ApiError::new(ErrorCode::SessionNotReady, format!("session {} is {:?}, {:?}", id.0, info.state, info.availability).to_lowercase()));
            }
            info.availability = Availability::Busy;
            self.publish(owner, ServerMessage::SessionChanged { session: info.clone() });
            let prompt = if tagged { String::new() } else { shown_prompt(&info) };
            (tagged.then(|| info.computer_name.clone()), prompt, info.computer_name.clone())
        };
        let pipeline = self.next_pipeline();
        let buffer = Arc::new(Buffer::with_limit(self.output_limit(&entry)));
        // Every pipeline but implicit remoting's discovery (the relay's own prompt and completion pipelines do not
        // come here); those of psgate's prompt too (hidden from the console's history, not from the audit).
        let commands = match &spec {
            Work::Pipeline(spec) | Work::WithInput(spec, _) => Some(crate::audit::commands_json(spec)),
            Work::Metadata { .. } => None,
        };
        if let Some(commands) = commands {
            let mut event = crate::audit::Event::pipeline(actor.as_deref().unwrap_or(owner), owner, id.0, &computer, pipeline.0, &script);
            event.data["commands"] = commands;
            self.audit_pipeline(&buffer, event);
        }
        {
            let mut pipelines = lock(&entry.pipelines);
            pipelines.insert(pipeline, Kept { buffer: buffer.clone(), script: script.clone(), prompt, invocation, hidden });
            while pipelines.len() > PIPELINES_KEPT {
                pipelines.pop_first();
            }
        }
        // A moderated session: the pipeline waits for a moderator (unless all its commands pass).
        let moderation = match &spec {
            Work::Pipeline(p) | Work::WithInput(p, _) => self.moderation_of(&entry).filter(|m| !m.passes(p)),
            Work::Metadata { .. } => None,
        };
        let command = Command::Run { pipeline, spec, buffer: buffer.clone(), tag };
        if let Some(moderation) = moderation {
            let requested_by = actor.unwrap_or_else(|| owner.to_owned());
            self.request_approval(&entry, pipeline, command, &buffer, &script, &requested_by, moderation.moderators);
            return Ok((pipeline, buffer));
        }
        entry.commands.send(command).map_err(|_| ApiError::new(ErrorCode::SessionNotReady, "the session has ended"))?;
        Ok((pipeline, buffer))
    }

    /// The moderation of the `[[allow]]` rule a session was opened under, if any.
    fn moderation_of(&self, entry: &Entry) -> Option<crate::config::Moderation> {
        entry.rule.and_then(|i| self.config.allow.get(i)).and_then(|r| r.moderation.clone())
    }

    /// Holds `command` until a moderator decides; everyone present in the session hears of it.
    #[allow(clippy::too_many_arguments)]
    fn request_approval(&self, entry: &Arc<Entry>, pipeline: PipelineId, command: Command, buffer: &Arc<Buffer>, text: &str, requested_by: &str, moderators: Vec<String>) {
        let (owner, session, computer) = {
            let info = lock(&entry.info);
            (entry.owner.clone(), info.id, info.computer_name.clone())
        };
        let notice = format!("This command waits for a moderator's approval ({}).", moderators.join(", "));
        if let Ok(clixml) = clixml::encode_message(&psgate_lang::informational("Warning", &notice)) {
            buffer.push(|seq| ServerMessage::Record { session, pipeline, seq, kind: RecordKind::Warning, clixml });
        }
        tracing::info!(%owner, session = session.0, pipeline = pipeline.0, %requested_by, "a pipeline waits for a moderator");
        self.audit(crate::audit::Event::new(crate::audit::Kind::Approval, requested_by).on(&owner, session.0, &computer).with(serde_json::json!({"action": "requested", "pipeline": pipeline.0, "command": text})));
        let message = ServerMessage::ApprovalRequested { owner: owner.clone(), session, pipeline, command: text.to_owned(), requested_by: requested_by.to_owned(), moderators: moderators.clone() };
        self.tell_moderators(&owner, &moderators, message);
        lock(&self.pending).insert((owner.clone(), session, pipeline), Pending { entry: entry.clone(), command, buffer: buffer.clone(), text: text.to_owned(), requested_by: requested_by.to_owned(), moderators });
    }

    /// The approvals waiting in `owner`'s session `id` (for a moderator who joins).
    pub fn pending_approvals(&self, owner: &str, id: SessionId) -> Vec<ServerMessage> {
        lock(&self.pending)
            .iter()
            .filter(|((o, s, _), _)| o == owner && *s == id)
            .map(|((owner, session, pipeline), p)| ServerMessage::ApprovalRequested { owner: owner.clone(), session: *session, pipeline: *pipeline, command: p.text.clone(), requested_by: p.requested_by.clone(), moderators: p.moderators.clone() })
            .collect()
    }

    /// A moderator's decision on a waiting pipeline of `owner`'s session `id`.
    pub fn decide(&self, moderator: &str, owner: &str, id: SessionId, pipeline: PipelineId, approve: bool, reason: Option<String>) -> Result<(), ApiError> {
        let key = (owner.to_owned(), id, pipeline);
        let pending = {
            let mut all = lock(&self.pending);
            match all.get(&key) {
                None => return Err(ApiError::new(ErrorCode::UnknownPipeline, format!("no pipeline {} waits for approval in {owner}'s session {}", pipeline.0, id.0))),
                Some(p) if !p.moderators.iter().any(|m| m == moderator) => {
                    return Err(ApiError::new(ErrorCode::Forbidden, format!("{moderator} is not a moderator of {owner}'s session {}", id.0)));
                }
                Some(_) => all.remove(&key).expect("present"),
            }
        };
        let computer = lock(&pending.entry.info).computer_name.clone();
        let why = reason.as_deref().map(|r| format!(": {r}")).unwrap_or_default();
        tracing::info!(%owner, session = id.0, pipeline = pipeline.0, %moderator, approve, "a moderator decided");
        self.audit(crate::audit::Event::new(crate::audit::Kind::Approval, moderator).on(owner, id.0, &computer).with(serde_json::json!({"action": if approve { "approved" } else { "denied" }, "pipeline": pipeline.0, "command": pending.text, "requested_by": pending.requested_by, "reason": reason})));
        self.tell_moderators(owner, &pending.moderators, ServerMessage::ApprovalDecided { owner: owner.to_owned(), session: id, pipeline, approved: approve, by: moderator.to_owned(), reason: reason.clone() });
        if approve {
            let notice = format!("Approved by {moderator}{why}.");
            if let Ok(clixml) = clixml::encode_message(&psgate_lang::informational("Warning", &notice)) {
                pending.buffer.push(|seq| ServerMessage::Record { session: id, pipeline, seq, kind: RecordKind::Warning, clixml });
            }
            if pending.entry.commands.send(pending.command).is_err() {
                return Err(ApiError::new(ErrorCode::SessionNotReady, "the session has ended"));
            }
            return Ok(());
        }
        let spec = psgate_lang::ErrorSpec {
            message: format!("The command was denied by the moderator {moderator}{why}."),
            id: "ModeratorDenied".into(),
            category: psgate_lang::Category::PermissionDenied,
            exception: "System.UnauthorizedAccessException",
            target: None,
            activity: pending.text.clone(),
            position: None,
        };
        let error = clixml::encode_message(&spec.record()).ok();
        pending.buffer.push(|seq| ServerMessage::PipelineState { session: id, pipeline, seq, state: PipelineState::Failed, error });
        self.update(&pending.entry, |i| i.availability = Availability::Available);
        Ok(())
    }

    /// Ctrl+C on a pipeline still waiting for approval: it ends `stopped` (`false`: none waits).
    fn cancel_pending(&self, owner: &str, id: SessionId, pipeline: PipelineId) -> bool {
        let Some(pending) = lock(&self.pending).remove(&(owner.to_owned(), id, pipeline)) else { return false };
        pending.buffer.push(|seq| ServerMessage::PipelineState { session: id, pipeline, seq, state: PipelineState::Stopped, error: None });
        self.update(&pending.entry, |i| i.availability = Availability::Available);
        self.tell_moderators(owner, &pending.moderators, ServerMessage::ApprovalDecided { owner: owner.to_owned(), session: id, pipeline, approved: false, by: owner.to_owned(), reason: Some("stopped by its user".into()) });
        true
    }

    /// Tells an approval's request or its end (decided, or the pipeline stopped) to everyone present in `owner`'s
    /// session and to the moderators' own pages on this relay (they decide from a console joined to the session).
    fn tell_moderators(&self, owner: &str, moderators: &[String], message: ServerMessage) {
        for m in moderators.iter().filter(|m| *m != owner) {
            self.publish(m, message.clone());
        }
        self.publish(owner, message);
    }

    /// Invoke-Command: runs `script` on `sessions` (each once, in the order given), at most `throttle_limit` at
    /// once. The run goes on whatever happens to the connection that asked; every connection of `owner` hears of
    /// it through [`Manager::changes`] and `history` keeps it.
    pub fn invoke(self: &Arc<Self>, owner: &str, sessions: &[SessionId], script: String, throttle_limit: Option<u32>) -> Result<InvocationId, ApiError> {
        let mut hosts: Vec<(SessionId, String)> = Vec::new();
        for &session in sessions {
            if !hosts.iter().any(|(s, _)| *s == session) {
                hosts.push((session, self.computer_name(owner, session)?));
            }
        }
        let throttle = throttle_limit.filter(|t| *t > 0).unwrap_or(DEFAULT_THROTTLE_LIMIT);
        let invocation = self.next_invocation();
        let record = Arc::new(Mutex::new(InvocationRecord { invocation, script: script.clone(), throttle_limit: throttle, sessions: hosts.clone(), hosts: Vec::new(), finished: false }));
        {
            let mut inner = lock(&self.inner);
            inner.invocations.push_back((owner.to_owned(), record.clone()));
            while inner.invocations.iter().filter(|(o, _)| o == owner).count() > PIPELINES_KEPT {
                if let Some(i) = inner.invocations.iter().position(|(o, _)| o == owner) {
                    inner.invocations.remove(i);
                }
            }
        }
        tracing::info!(invocation = invocation.0, owner, sessions = hosts.len(), throttle, "invoke");
        self.publish(owner, ServerMessage::InvokeStarted { invocation, sessions: hosts.iter().map(|(s, _)| *s).collect(), throttle_limit: throttle, script: script.clone() });
        tokio::spawn(invoke(self.clone(), owner.to_owned(), record, hosts, script, throttle as usize));
        Ok(invocation)
    }

    /// What `owner`'s sessions keep of their pipelines, oldest first, with each one's buffer to follow it; and
    /// `owner`'s Invoke-Command runs.
    pub fn history(&self, owner: &str) -> (Vec<(PipelineRecord, Arc<Buffer>)>, Vec<InvocationRecord>) {
        let (entries, invocations): (Vec<Arc<Entry>>, Vec<InvocationRecord>) = {
            let inner = lock(&self.inner);
            (
                inner.sessions.values().filter(|e| e.owner == owner).cloned().collect(),
                inner.invocations.iter().filter(|(o, _)| o == owner).map(|(_, r)| lock(r).clone()).collect(),
            )
        };
        let mut pipelines: Vec<(PipelineRecord, Arc<Buffer>)> = entries
            .iter()
            .flat_map(|e| {
                let session = lock(&e.info).id;
                lock(&e.pipelines)
                    .iter()
                    .filter(|(_, k)| !k.hidden)
                    .map(|(&pipeline, k)| {
                        let record = PipelineRecord { session, pipeline, script: k.script.clone(), prompt: k.prompt.clone(), invocation: k.invocation, finished: k.buffer.outcome().is_some() };
                        (record, k.buffer.clone())
                    })
                    .collect::<Vec<_>>()
            })
            .collect();
        if let Some(prompt) = lock(&self.prompts).get(owner).cloned() {
            pipelines.extend(prompt.history());
        }
        pipelines.sort_by_key(|(r, _)| r.pipeline);
        (pipelines, invocations)
    }

    /// Tab completion through the remote `TabExpansion2`; the answer comes once the target has answered
    /// (empty when the session is running a command, as PowerShell's console cannot complete then either).
    pub fn complete(&self, owner: &str, id: SessionId, input: String, cursor: u32) -> Result<oneshot::Receiver<ServerMessage>, ApiError> {
        if id == LOCAL_SESSION {
            let (reply, answer) = oneshot::channel();
            let sessions = self.list(owner, None, None);
            let _ = reply.send(super::prompt::of(self, owner).complete(&sessions, &input, cursor));
            return Ok(answer);
        }
        let entry = self.entry(owner, id)?;
        if lock(&entry.info).state != SessionState::Opened {
            return Err(ApiError::new(ErrorCode::SessionNotReady, format!("session {} is not open", id.0)));
        }
        let (reply, answer) = oneshot::channel();
        entry
            .commands
            .send(Command::Complete { input, cursor, reply })
            .map_err(|_| ApiError::new(ErrorCode::SessionNotReady, "the session has ended"))?;
        Ok(answer)
    }

    /// A pipeline's buffer, to follow it.
    pub fn buffer(&self, owner: &str, id: SessionId, pipeline: PipelineId) -> Result<Arc<Buffer>, ApiError> {
        if id == LOCAL_SESSION {
            return super::prompt::of(self, owner).buffer(pipeline);
        }
        let entry = self.entry(owner, id)?;
        let buffer = lock(&entry.pipelines).get(&pipeline).map(|k| k.buffer.clone());
        buffer.ok_or_else(|| ApiError::new(ErrorCode::UnknownPipeline, format!("session {} has no pipeline {}", id.0, pipeline.0)))
    }

    /// Ctrl+C.
    pub fn stop(&self, owner: &str, id: SessionId, pipeline: PipelineId) -> Result<(), ApiError> {
        if id == LOCAL_SESSION {
            return super::prompt::of(self, owner).stop(pipeline);
        }
        self.buffer(owner, id, pipeline)?;
        if self.cancel_pending(owner, id, pipeline) {
            return Ok(());
        }
        let _ = self.entry(owner, id)?.commands.send(Command::Stop(pipeline));
        Ok(())
    }

    /// The browser's answer to a host call.
    pub fn answer(&self, owner: &str, id: SessionId, pipeline: PipelineId, call_id: i64, answer: HostAnswer) -> Result<(), ApiError> {
        // In the pipeline's audit record, its secrets redacted.
        self.buffer(owner, id, pipeline)?.tap_answer(call_id, &answer);
        if id == LOCAL_SESSION {
            return super::prompt::of(self, owner).answer(pipeline, call_id, answer);
        }
        let answer = match answer {
            HostAnswer::Value { clixml } => Answer::Ready(HostResult::Value(
                clixml::decode_message(clixml.as_bytes()).map_err(|e| ApiError::new(ErrorCode::BadMessage, format!("the answer is not CLIXML: {e}")))?,
            )),
            HostAnswer::Error { message } => Answer::Ready(HostResult::Error(message)),
            HostAnswer::Secure { text } => Answer::Secure(text),
            HostAnswer::Credential { user, password } => Answer::Credential { user, password },
            HostAnswer::Fields { fields } => Answer::Fields(fields),
        };
        let _ = self.entry(owner, id)?.commands.send(Command::Answer { pipeline, call_id, answer });
        Ok(())
    }

    /// A pipeline found running at a connect: kept like a console command, announced to every connection of the
    /// owner (which follow it from its first event).
    fn reattach(&self, entry: &Entry, uuid: Uuid) -> Running {
        let pipeline = self.next_pipeline();
        let buffer = Arc::new(Buffer::with_limit(self.output_limit(entry)));
        let (session, computer) = {
            let mut info = lock(&entry.info);
            info.availability = Availability::Busy;
            (info.id, info.computer_name.clone())
        };
        // Recorded from here (what ran before is in the record of the relay that started it, if it ended there).
        self.audit_pipeline(&buffer, crate::audit::Event::pipeline(&entry.owner, &entry.owner, session.0, &computer, pipeline.0, &format!("(connected pipeline {uuid})")));
        // Taken over from a relay that died: the output it lost is said where it would have been, first.
        if let Some(gap) = lock(&entry.gap).take() {
            let record = psgate_lang::informational("Warning", &gap);
            if let Ok(clixml) = clixml::encode_message(&record) {
                buffer.push(|seq| ServerMessage::Record { session, pipeline, seq, kind: RecordKind::Warning, clixml });
            }
        }
        lock(&entry.pipelines).insert(pipeline, Kept { buffer: buffer.clone(), script: format!("(connected pipeline {uuid})"), prompt: String::new(), invocation: None, hidden: false });
        tracing::info!(session = session.0, pipeline = pipeline.0, %uuid, "a running pipeline re-attached");
        // Followed by the user's pages at once, or by their next connection (after a takeover, browsers reconnect).
        self.notice(&entry.owner, ServerMessage::PipelineStarted { session, pipeline });
        Running { id: pipeline, uuid, buffer, calls: HashMap::new(), tag: None, waiting_for_key: Vec::new(), progress: BTreeMap::new() }
    }

    fn update(&self, entry: &Entry, f: impl FnOnce(&mut SessionInfo)) {
        let mut info = {
            let mut info = lock(&entry.info);
            f(&mut info);
            info.clone()
        };
        (info.idle_left_secs, info.run_left_secs) = self.time_left_of(entry);
        let (id, state) = (info.id, info.state);
        self.publish(&entry.owner, ServerMessage::SessionChanged { session: info });
        // A session that breaks or is disconnected under psgate's prompt is left, as PowerShell's console pops it.
        if matches!(state, SessionState::Broken | SessionState::Disconnected | SessionState::Closed)
            && let Some(prompt) = lock(&self.prompts).get(&entry.owner).cloned()
            && prompt.session_gone(id)
        {
            self.publish(&entry.owner, ServerMessage::PromptState { entered: None });
        }
    }
}

/// The prompt a console shows for a session: its remote prompt's text, `PS>` until it is known.
pub fn shown_prompt(info: &SessionInfo) -> String {
    info.prompt.as_deref().map(str::trim_end).filter(|p| !p.is_empty()).unwrap_or("PS>").to_owned()
}

/// Waits until a pipeline has ended (`None`: its buffer is gone).
async fn finished(buffer: &Buffer) -> Option<(PipelineState, Option<String>)> {
    let mut changed = buffer.subscribe();
    loop {
        if let Some(outcome) = buffer.outcome() {
            return Some(outcome);
        }
        changed.changed().await.ok()?;
    }
}

/// Invoke-Command's run: the script on each session, at most `throttle` at once; each session's start and end,
/// then the whole run's end, are published to the owner's connections and kept in `record`.
async fn invoke(manager: Arc<Manager>, owner: String, record: Arc<Mutex<InvocationRecord>>, sessions: Vec<(SessionId, String)>, script: String, throttle: usize) {
    use futures_util::stream::{self, StreamExt as _};
    let invocation = lock(&record).invocation;
    let one = |(session, computer_name): (SessionId, String)| {
        let (manager, owner, script, record) = (manager.clone(), owner.clone(), script.clone(), record.clone());
        async move {
            let mut host = InvokeHost { session, computer_name: computer_name.clone(), pipeline: None, state: PipelineState::Failed, error: None, message: None };
            match manager.run_tagged(&owner, session, script, invocation) {
                Ok((pipeline, buffer)) => {
                    host.pipeline = Some(pipeline);
                    manager.publish(&owner, ServerMessage::InvokeHostStarted { invocation, session, computer_name, pipeline });
                    match finished(&buffer).await {
                        Some((state, error)) => (host.state, host.error) = (state, error),
                        None => host.message = Some("the session ended".into()),
                    }
                }
                Err(e) => host.message = Some(e.message),
            }
            lock(&record).hosts.push(host.clone());
            manager.publish(&owner, ServerMessage::InvokeHostFinished { invocation, host: host.clone() });
            host
        }
    };
    let order: HashMap<SessionId, usize> = sessions.iter().enumerate().map(|(i, (s, _))| (*s, i)).collect();
    let mut hosts: Vec<InvokeHost> = stream::iter(sessions).map(one).buffer_unordered(throttle.max(1)).collect().await;
    hosts.sort_by_key(|h| order.get(&h.session).copied().unwrap_or(usize::MAX));
    lock(&record).finished = true;
    manager.publish(&owner, ServerMessage::InvokeFinished { invocation, hosts });
}

fn split_argv(argv: &[String]) -> Vec<OsString> {
    argv.iter().map(OsString::from).collect()
}

/// The WinRM options for a target (the relay's `[winrm]` settings applied).
fn winrm_target(config: &Config, target: &Target) -> anyhow::Result<WinrmTarget> {
    let host = target.computer_name.trim();
    let mut endpoint = if target.use_ssl { Endpoint::https(host) } else { Endpoint::http(host) };
    if let Some(port) = target.port {
        endpoint.port = port;
    }
    let auth = match target.authentication.unwrap_or_default() {
        WinrmAuth::Negotiate => AuthMethod::Negotiate,
        WinrmAuth::Ntlm => AuthMethod::Ntlm,
        WinrmAuth::Kerberos => AuthMethod::Kerberos,
        WinrmAuth::Basic => AuthMethod::Basic,
    };
    let password = target.password.clone().ok_or_else(|| anyhow::anyhow!("no password"))?;
    let mut options = WinrmOptions::new(endpoint, target.user.clone().unwrap_or_default().trim(), password.into(), auth);
    options.ca_file = config.winrm.ca_file.clone();
    if config.winrm.danger_accept_invalid_certificates {
        options.tls_verification = TlsVerification::DangerAcceptInvalidCertificates;
    }
    options.allow_unencrypted_http = config.winrm.allow_basic_over_http;
    options.connect_timeout = OPEN_TIMEOUT;
    let mut winrm = WinrmTarget::new(options);
    winrm.configuration_name = target.configuration_name.clone().filter(|c| !c.trim().is_empty());
    winrm.operation_timeout = Duration::from_secs(config.winrm.operation_timeout_secs);
    Ok(winrm)
}

/// A target's failure as the browser sees it: refused credentials and quota faults get their own codes.
fn target_error(e: &anyhow::Error) -> ApiError {
    let message = format!("{e:#}");
    for cause in e.chain() {
        if let Some(api) = cause.downcast_ref::<ApiError>() {
            return api.clone();
        }
        if let Some(op) = cause.downcast_ref::<winrm_session::WinrmOpError>() {
            return ApiError::new(op.code(), message);
        }
        if let Some(WinrmError::Auth(_)) = cause.downcast_ref::<WinrmError>() {
            return ApiError::new(ErrorCode::AuthenticationFailed, message);
        }
    }
    ApiError::new(ErrorCode::TargetFailed, message)
}

/// What a Connect to `target.shell_id` (a shell listed by `remote_shells`) needs: its configuration and commands.
async fn shell_to_connect(config: &Config, target: &Target, shell_id: &str) -> anyhow::Result<ShellRecord> {
    let winrm = winrm_target(config, target)?;
    let shells = winrm_session::enumerate(&winrm).await?;
    let (shell, commands) = shells
        .into_iter()
        .find(|(s, _)| s.shell_id.eq_ignore_ascii_case(shell_id))
        .ok_or_else(|| anyhow::anyhow!("{} holds no shell {shell_id} for {}", target.computer_name.trim(), target.user.as_deref().unwrap_or_default()))?;
    Ok(ShellRecord {
        endpoint: winrm.options.endpoint.to_string(),
        resource_uri: shell.resource_uri.unwrap_or_else(|| configuration_uri(target.configuration_name.as_deref().unwrap_or("Microsoft.PowerShell"))),
        shell_id: Uuid::parse_str(&shell.shell_id)?,
        wsman_session_id: Uuid::nil(),
        commands,
    })
}

/// Opens (or, with `attach`, connects) a session; `take_over`: see [`winrm_session::connect`].
async fn connect(config: &Config, target: &Target, attach: Option<ShellRecord>, take_over: bool) -> anyhow::Result<Session> {
    let client = OutOfProcClient::new(RunspacePool::new(PoolConfig::new(Uuid::new_v4())));
    match target.transport {
        Transport::Winrm => Ok(winrm_session::connect(winrm_target(config, target)?, attach, take_over).await?),
        Transport::Local => {
            let argv = config.local_command.as_deref().map(split_argv).unwrap_or_default();
            let local::LocalProcess { child, stream } = local::spawn(&argv)?;
            let session = Session::start(stream, client);
            // The child lives as long as the session's stream (kill_on_drop); reap it when it exits.
            tokio::spawn(async move {
                let mut child = child;
                let _ = child.wait().await;
            });
            Ok(session)
        }
        Transport::Ssh => {
            let auth = match (&target.password, &target.key_file) {
                (Some(p), _) => ssh::SshAuth::Password(p.clone().into()),
                (None, Some(k)) => ssh::SshAuth::Key { path: k.into(), passphrase: None },
                (None, None) => anyhow::bail!("no password or key"),
            };
            let mut opts = ssh::SshOptions::new(target.computer_name.trim().to_owned(), target.user.clone().unwrap_or_default(), auth);
            opts.port = target.port.unwrap_or(22);
            if let Some(s) = target.subsystem.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
                opts.subsystem = s.to_owned();
            }
            if let Some(k) = &config.known_hosts {
                opts.known_hosts = k.clone();
            }
            if config.accept_new_host_keys {
                opts.host_key_policy = ssh::HostKeyPolicy::AcceptNew;
            }
            opts.connect_timeout = OPEN_TIMEOUT;
            Ok(Session::start(ssh::open_subsystem(&opts).await?, client))
        }
    }
}

/// Opens the pool (unless it connects to an existing one) and waits for it; events before that are handled (host
/// calls of the pool get errors).
async fn open(session: &mut Session, connecting: bool) -> anyhow::Result<()> {
    if !connecting {
        session.with(|c| c.open()).await??;
    }
    loop {
        match session.events.recv().await {
            Some(ClientEvent::Psrp(Event::PoolState { state: PoolState::Opened, .. })) => return Ok(()),
            Some(ClientEvent::Psrp(Event::PoolState { state: PoolState::Broken | PoolState::Closed, error })) => {
                let message = error.map(|e| ErrorRecordView::from_value(&e).message).unwrap_or_else(|| "the session could not be opened".into());
                let code = session.with(|c| c.failure()).await.ok().flatten().unwrap_or(ErrorCode::TargetFailed);
                return Err(ApiError::new(code, message).into());
            }
            Some(ClientEvent::SessionClosed) | None => anyhow::bail!("the target closed the connection"),
            Some(ClientEvent::OperationFailed(why)) => anyhow::bail!("{why}"),
            Some(_) => {}
        }
    }
}

struct Running {
    id: PipelineId,
    uuid: Uuid,
    buffer: Arc<Buffer>,
    calls: HashMap<i64, HostCall>,
    /// Invoke-Command's `PSComputerName` for each output.
    tag: Option<String>,
    /// Answers that need the session key, waiting for the key exchange (started by the first of them).
    waiting_for_key: Vec<(HostCall, Answer)>,
    /// The latest progress record of each activity, not yet forwarded.
    progress: BTreeMap<i32, Value>,
}

/// What the relay runs a pipeline of its own for.
#[derive(Debug)]
enum Purpose {
    /// The remote `prompt` function, after the session opens and after each console command.
    Prompt,
    /// `TabExpansion2` for the browser.
    Complete { input: String, cursor: u32, reply: oneshot::Sender<ServerMessage> },
}

impl Purpose {
    fn name(&self) -> &'static str {
        match self {
            Purpose::Prompt => "prompt",
            Purpose::Complete { .. } => "completion",
        }
    }

    fn spec(&self) -> PipelineSpec {
        let command = match self {
            Purpose::Prompt => messages::Command::named("prompt"),
            // As PowerShell's CommandCompletion.CompleteInput calls it on a remote runspace: positional input,
            // cursor index and (no) options.
            Purpose::Complete { input, cursor, .. } => {
                messages::Command::named("TabExpansion2").arg(Value::string(input.as_str())).arg(Value::I32(i32::try_from(*cursor).unwrap_or(i32::MAX))).arg(Value::Nil)
            }
        };
        PipelineSpec { commands: vec![command], no_input: true, add_to_history: false, is_nested: false }
    }
}

/// A pipeline the relay runs for itself: its output is collected, never shown as a command's.
#[derive(Debug)]
struct Internal {
    uuid: Uuid,
    purpose: Purpose,
    outputs: Vec<Value>,
    deadline: tokio::time::Instant,
}

impl Internal {
    /// Delivers what the pipeline produced (nothing, when it failed or timed out).
    fn finish(self, manager: &Manager, entry: &Entry) {
        match self.purpose {
            Purpose::Prompt => {
                let prompt = self.outputs.first().and_then(prompt_text);
                if lock(&entry.info).prompt != prompt {
                    manager.update(entry, |i| i.prompt = prompt);
                }
            }
            Purpose::Complete { input, cursor, reply } => {
                let sid = lock(&entry.info).id;
                let message = match self.outputs.first() {
                    Some(completion) => completions_of(sid, input, cursor, completion),
                    None => no_completions(sid, input, cursor),
                };
                let _ = reply.send(message);
            }
        }
    }
}

/// Starts one of the relay's own pipelines; `Err`: the connection is gone.
async fn start_internal(session: &mut Session, id: SessionId, internal: &mut Option<Internal>, purpose: Purpose) -> Result<(), ()> {
    let uuid = Uuid::new_v4();
    let spec = purpose.spec();
    match session.with(move |c| c.create_pipeline(uuid, &spec)).await.map_err(drop)? {
        Ok(()) => *internal = Some(Internal { uuid, purpose, outputs: Vec::new(), deadline: tokio::time::Instant::now() + INTERNAL_TIMEOUT }),
        Err(e) => {
            tracing::warn!(error = %e, purpose = purpose.name(), "the relay's pipeline could not start");
            if let Purpose::Complete { input, cursor, reply } = purpose {
                let _ = reply.send(no_completions(id, input, cursor));
            }
        }
    }
    Ok(())
}

/// The text of a `prompt` function's output (PowerShell shows its string form).
fn prompt_text(value: &Value) -> Option<String> {
    let text = match value {
        Value::Object(o) => o.to_string.as_deref().map(str::to_owned).or_else(|| value.as_str().map(str::to_owned)),
        other => other.as_str().map(str::to_owned).or_else(|| other.as_i64().map(|n| n.to_string())),
    }?;
    // One line, bounded: a prompt is a prompt.
    let line: String = text.lines().last().unwrap_or_default().chars().take(200).collect();
    (!line.trim().is_empty()).then_some(line)
}

fn no_completions(session: SessionId, input: String, cursor: u32) -> ServerMessage {
    ServerMessage::Completions { session, input, cursor, replacement_index: cursor, replacement_length: 0, matches: Vec::new() }
}

/// `completions` from a (deserialized) `CommandCompletion`.
fn completions_of(session: SessionId, input: String, cursor: u32, value: &Value) -> ServerMessage {
    let Some(o) = value.as_object() else { return no_completions(session, input, cursor) };
    let number = |name: &str| o.property(name).and_then(Value::as_i64).and_then(|n| u32::try_from(n).ok());
    let text = |v: Option<&Value>| -> String {
        match v {
            Some(Value::Object(o)) => o.to_string.as_deref().map(str::to_owned).or_else(|| o.primitive().and_then(Value::as_str).map(str::to_owned)).unwrap_or_default(),
            Some(v) => v.as_str().map(str::to_owned).unwrap_or_default(),
            None => String::new(),
        }
    };
    let items: &[Value] = match o.property("CompletionMatches").and_then(Value::as_object).map(|l| &l.content) {
        Some(Content::List(_, items)) => items,
        _ => &[],
    };
    let matches = items
        .iter()
        .filter_map(|item| {
            let Some(m) = item.as_object().filter(|m| m.property("CompletionText").is_some()) else {
                // A match serialized as its string: the text alone.
                let t = item.as_str()?.to_owned();
                return Some(Completion { list_text: t.clone(), text: t, result_type: "Text".into(), tooltip: String::new() });
            };
            let completion = text(m.property("CompletionText"));
            let list = text(m.property("ListItemText"));
            Some(Completion {
                list_text: if list.is_empty() { completion.clone() } else { list },
                text: completion,
                result_type: text(m.property("ResultType")),
                tooltip: text(m.property("ToolTip")),
            })
        })
        .filter(|c| !c.text.is_empty())
        .collect();
    ServerMessage::Completions {
        session,
        input,
        cursor,
        replacement_index: number("ReplacementIndex").unwrap_or(cursor),
        replacement_length: number("ReplacementLength").unwrap_or(0),
        matches,
    }
}

/// A session's task.
async fn drive(manager: Arc<Manager>, entry: Arc<Entry>, target: Target, start: Start, mut commands: mpsc::UnboundedReceiver<Command>) {
    let _ended = Ended(entry.clone());
    let id = lock(&entry.info).id;
    let mut attach = match start {
        Start::New => None,
        // Kept over a restart: nothing happens until Connect.
        Start::Restored(record) => loop {
            match commands.recv().await {
                Some(Command::Connect) => {
                    manager.update(&entry, |i| {
                        i.state = SessionState::Opening;
                        i.reason = None;
                    });
                    break Some(record);
                }
                None | Some(Command::Close) => {
                    // Remove-PSSession of a disconnected session ends its shell at the target too.
                    let key = record.shell_id.hyphenated().to_string().to_uppercase();
                    if let Ok(winrm) = winrm_target(&manager.config, &target)
                        && let Err(e) = winrm_session::delete(&winrm, &record).await
                    {
                        tracing::info!(session = id.0, error = %e, "deleting a disconnected shell");
                    }
                    manager.forget(&key).await;
                    return;
                }
                Some(Command::Abandon(why)) => {
                    manager.update(&entry, |i| {
                        i.state = SessionState::Broken;
                        i.reason = Some(why);
                    });
                    let _ = wait_close(&mut commands, id).await;
                    return;
                }
                Some(c) => refuse(c, id, "the session is disconnected: connect it first"),
            }
        },
    };
    let opened = tokio::select! {
        r = tokio::time::timeout(OPEN_TIMEOUT, async {
            if attach.is_none() && let Some(shell) = target.shell_id.as_deref() {
                attach = Some(shell_to_connect(&manager.config, &target, shell).await?);
            }
            let take_over = entry.take_over.swap(false, std::sync::atomic::Ordering::SeqCst);
            // The relay that died kept the shell's commands as they were when it last wrote them (no write per
            // command): the target lists them as they are.
            if take_over && let Some(record) = attach.as_mut() {
                match shell_to_connect(&manager.config, &target, &record.shell_id.hyphenated().to_string()).await {
                    Ok(listed) => record.commands = listed.commands,
                    Err(e) => tracing::warn!(session = id.0, error = %e, "listing the commands of a shell taken over"),
                }
            }
            let mut s = connect(&manager.config, &target, attach.clone(), take_over).await?;
            open(&mut s, attach.is_some()).await?;
            anyhow::Ok(s)
        }) => r.unwrap_or_else(|_| Err(anyhow::anyhow!("the session did not open within {} s", OPEN_TIMEOUT.as_secs()))),
        // Removed while opening: dropping the half-open session ends it.
        _ = wait_close(&mut commands, id) => {
            if let Some(record) = &attach {
                manager.forget(&record.shell_id.hyphenated().to_string().to_uppercase()).await;
            }
            return;
        }
    };
    let mut session = match opened {
        Ok(s) => s,
        Err(e) => {
            let error = target_error(&e);
            tracing::warn!(session = id.0, code = ?error.code, error = %error.message, "the session could not be opened");
            manager.audit_session(&entry, &target, crate::audit::Kind::SessionFailed, attach.is_some(), Some(&error.message));
            manager.publish(&entry.owner, ServerMessage::TargetRefused { computer_name: target.computer_name.trim().to_owned(), code: error.code, message: error.message.clone() });
            // A kept session whose connect failed stays kept and disconnected: the target may be back later.
            let kept = attach.is_some() && target.shell_id.is_none();
            manager.update(&entry, |i| {
                i.state = if kept { SessionState::Disconnected } else { SessionState::Broken };
                i.reason = Some(error.message);
            });
            if kept && let Some(record) = attach {
                // Start over, waiting for the next Connect.
                Box::pin(drive(manager.clone(), entry.clone(), target, Start::Restored(record), commands)).await;
                return;
            }
            let _ = wait_close(&mut commands, id).await;
            return;
        }
    };
    tracing::info!(session = id.0, "session opened");
    manager.audit_session(&entry, &target, crate::audit::Kind::SessionOpened, attach.is_some(), None);
    let shell = session.with(|c| c.shell()).await.ok().flatten();
    *lock(&entry.private_data) = session.with(|c| c.pool().application_private_data().cloned()).await.ok().flatten();
    if let Some(record) = &shell {
        manager.keep(&entry, &target, record, true).await;
    }
    let shell_key = shell.as_ref().map(|r| r.shell_id.hyphenated().to_string().to_uppercase());
    manager.update(&entry, |i| {
        i.state = SessionState::Opened;
        i.availability = Availability::Available;
        i.instance_id = shell_key.clone();
        i.reason = None;
    });
    let mut running: Option<Running> = None;
    // Connected to a shell with commands still running: the first is the session's running pipeline again.
    if let Some(uuid) = attach.as_ref().and_then(|r| r.commands.first().copied()) {
        running = Some(manager.reattach(&entry, uuid));
    }
    let mut disconnected = false;
    // The prompt is asked for once a re-attached pipeline has ended.
    let reattached = running.is_some();
    // The relay's own pipeline (the prompt, tab completion), and the commands that wait for it to end.
    let mut internal: Option<Internal> = None;
    let mut queued: VecDeque<Command> = VecDeque::new();
    if running.is_none() && start_internal(&mut session, id, &mut internal, Purpose::Prompt).await.is_err() {
        manager.update(&entry, |i| {
            i.state = SessionState::Broken;
            i.availability = Availability::None;
            i.reason = Some("the session's connection ended".into());
        });
        let _ = wait_close(&mut commands, id).await;
        return;
    }
    let mut tick = tokio::time::interval(PROGRESS_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut prompt_stale = reattached;
    // IdleTimeout and MaxShellRunTime: the session's clock, and the warning given for the close it announces.
    let opened_at = *lock(&entry.opened_at).get_or_insert_with(|| manager.time.now());
    let mut clock = crate::quotas::Clock::new(&manager.quotas_of(&entry), opened_at);
    let mut published = manager.time.now();
    let mut moves = manager.time.moves();
    let reason = loop {
        // A pipeline running (or waiting to) in a connected session is activity (the client keeps asking for its output); its end
        // starts the idle clock (below, as its events come). A disconnected session is idle from its disconnection, whatever runs.
        let busy = (running.is_some() || !queued.is_empty()) && !disconnected;
        if busy {
            *lock(&entry.activity) = manager.time.now();
        }
        let now = manager.time.now();
        let due = clock.due(*lock(&entry.activity), busy, now);
        match due {
            crate::quotas::Due::Close(why) => {
                tracing::info!(session = id.0, %why, "session closed by a relay quota");
                quota_close(&manager, &entry, &mut session, running.take(), queued.drain(..).collect(), &why).await;
                if let Some(key) = &shell_key {
                    manager.forget(key).await;
                }
                let _ = wait_close(&mut commands, id).await;
                return;
            }
            crate::quotas::Due::Warn(warning) => {
                let name = lock(&entry.info).name.clone();
                let message = format!("The session {name} (Id {}) {warning}", id.0);
                manager.update(&entry, |i| i.reason = Some(message.clone()));
                manager.publish(&entry.owner, ServerMessage::TargetRefused { computer_name: target.computer_name.trim().to_owned(), code: ErrorCode::QuotaExceeded, message });
            }
            crate::quotas::Due::Clear => manager.update(&entry, |i| i.reason = None),
            crate::quotas::Due::Nothing => {}
        }
        // While a quota counts, the pages get the session (its time left) again at least once a minute.
        let mut wake = clock.next_wake(*lock(&entry.activity), busy);
        if clock.counts() {
            if now >= published + QUOTA_REFRESH {
                published = now;
                manager.update(&entry, |_| {});
            }
            wake = Some(wake.map_or(published + QUOTA_REFRESH, |w| w.min(published + QUOTA_REFRESH)));
        }
        // A console command ended: ask for the prompt again (its location may have changed), as the console does.
        if prompt_stale && running.is_none() && internal.is_none() {
            prompt_stale = false;
            if start_internal(&mut session, id, &mut internal, Purpose::Prompt).await.is_err() {
                break "the session's connection ended".to_owned();
            }
        }
        let command = if internal.is_none()
            && let Some(command) = queued.pop_front()
        {
            Some(command)
        } else {
            let deadline = internal.as_ref().map_or_else(tokio::time::Instant::now, |i| i.deadline);
            // A browser follows the running pipeline and is a full buffer behind: the target waits for it.
            let lagging = running.as_ref().map(|r| r.buffer.clone()).filter(|b| b.must_wait());
            tokio::select! {
                command = commands.recv() => match command {
                    // Nothing runs while the session is disconnected.
                    Some(c @ (Command::Run { .. } | Command::Complete { .. })) if disconnected => {
                        refuse(c, id, "the session is disconnected: connect it first");
                        continue;
                    }
                    // A command or completion waits for the relay's own pipeline to end.
                    Some(c @ (Command::Run { .. } | Command::Complete { .. })) if internal.is_some() => {
                        queued.push_back(c);
                        continue;
                    }
                    None => Some(Command::Close),
                    some => some,
                },
                _ = async { if let Some(b) = &lagging { b.room().await } }, if lagging.is_some() => None,
                event = session.events.recv(), if lagging.is_none() => match event {
                    None | Some(ClientEvent::SessionClosed) => break "the target closed the session".to_owned(),
                    Some(ClientEvent::Psrp(Event::PoolState { state: PoolState::Broken | PoolState::Closed, error })) => {
                        break error.map(|e| ErrorRecordView::from_value(&e).message).unwrap_or_else(|| "the session broke".into());
                    }
                    Some(ClientEvent::Psrp(event)) => {
                        // The running pipeline's events are use, its end too: noted before its end is told to anyone.
                        if running.is_some() && !disconnected {
                            *lock(&entry.activity) = manager.time.now();
                        }
                        if handle(&manager, &entry, &mut session, &mut running, &mut internal, &mut prompt_stale, event).await.is_err() {
                            break "the session's connection ended".to_owned();
                        }
                        None
                    }
                    Some(ClientEvent::Disconnected) => {
                        disconnected = true;
                        tracing::info!(session = id.0, "session disconnected");
                        if let Ok(Some(record)) = session.with(|c| c.shell()).await {
                            // Disconnected by its user it stays so; by this relay stopping, whoever takes it over connects it.
                            let resume = entry.handover.load(std::sync::atomic::Ordering::SeqCst);
                            manager.keep(&entry, &target, &record, resume).await;
                        }
                        manager.update(&entry, |i| {
                            i.state = SessionState::Disconnected;
                            i.availability = Availability::None;
                            i.reason = None;
                        });
                        None
                    }
                    Some(ClientEvent::Reconnected) => {
                        disconnected = false;
                        tracing::info!(session = id.0, "session reconnected");
                        // Open again: a relay that takes it over connects it.
                        if let Ok(Some(record)) = session.with(|c| c.shell()).await {
                            manager.keep(&entry, &target, &record, true).await;
                        }
                        let busy = running.is_some();
                        manager.update(&entry, |i| {
                            i.state = SessionState::Opened;
                            i.availability = if busy { Availability::Busy } else { Availability::Available };
                            i.reason = None;
                        });
                        None
                    }
                    Some(ClientEvent::OperationFailed(why)) => {
                        tracing::warn!(session = id.0, %why, "disconnect or connect failed");
                        manager.publish(&entry.owner, ServerMessage::TargetRefused { computer_name: target.computer_name.trim().to_owned(), code: ErrorCode::TargetFailed, message: why.clone() });
                        manager.update(&entry, |i| i.reason = Some(why));
                        None
                    }
                    Some(_) => None,
                },
                _ = tick.tick(), if running.as_ref().is_some_and(|r| !r.progress.is_empty()) => {
                    if let Some(r) = running.as_mut() {
                        flush_progress(id, r);
                    }
                    None
                }
                // A quota's warning or close is due (the loop's top sees to it).
                () = async { if let Some(w) = wake { manager.time.sleep_until(w, &mut moves).await } }, if wake.is_some() => None,
                // The target did not answer the relay's own pipeline in time: stop it and go on without it.
                _ = tokio::time::sleep_until(deadline), if internal.is_some() => {
                    if let Some(i) = internal.take() {
                        tracing::warn!(session = id.0, purpose = i.purpose.name(), "the target did not answer in time");
                        let uuid = i.uuid;
                        i.finish(&manager, &entry);
                        if session.with(move |c| c.stop(uuid)).await.is_err() {
                            break "the session's connection ended".to_owned();
                        }
                    }
                    None
                }
            }
        };
        let Some(command) = command else { continue };
        match command {
            Command::Close => {
                // Whoever follows the pipelines (an Invoke-Command run, a browser) learns they ended.
                let removed = || clixml::encode_message(&Value::string("the session was removed")).ok();
                if let Some(mut r) = running.take() {
                    flush_progress(id, &mut r);
                    r.buffer.push(|seq| ServerMessage::PipelineState { session: id, pipeline: r.id, seq, state: PipelineState::Stopped, error: removed() });
                }
                for c in queued.drain(..) {
                    if let Command::Run { pipeline, buffer, .. } = c {
                        buffer.push(|seq| ServerMessage::PipelineState { session: id, pipeline, seq, state: PipelineState::Stopped, error: removed() });
                    }
                }
                let _ = session.with(|c| c.close()).await;
                let _ = tokio::time::timeout(Duration::from_secs(5), async { while let Some(e) = session.events.recv().await { if matches!(e, ClientEvent::SessionClosed) { break } } }).await;
                if let Some(key) = &shell_key {
                    manager.forget(key).await;
                }
                return;
            }
            Command::Abandon(why) => {
                tracing::warn!(session = id.0, %why, "session abandoned");
                let error = || clixml::encode_message(&Value::string(why.as_str())).ok();
                if let Some(mut r) = running.take() {
                    flush_progress(id, &mut r);
                    r.buffer.push(|seq| ServerMessage::PipelineState { session: id, pipeline: r.id, seq, state: PipelineState::Stopped, error: error() });
                }
                session.abandon();
                manager.update(&entry, |i| {
                    i.state = SessionState::Broken;
                    i.availability = Availability::None;
                    i.reason = Some(why.clone());
                });
                let _ = wait_close(&mut commands, id).await;
                return;
            }
            Command::Disconnect { idle_timeout, buffer_mode } => {
                if session.with(move |c| c.disconnect(idle_timeout, buffer_mode)).await.is_err() {
                    break "the session's connection ended".to_owned();
                }
            }
            Command::Connect => {
                if session.with(|c| c.reconnect()).await.is_err() {
                    break "the session's connection ended".to_owned();
                }
            }
            Command::Run { pipeline, spec, buffer, tag } => {
                let uuid = Uuid::new_v4();
                let started = session
                    .with(move |c| match &spec {
                        Work::Pipeline(spec) => c.create_pipeline(uuid, spec),
                        Work::WithInput(spec, input) => {
                            c.create_pipeline(uuid, &PipelineSpec { no_input: false, ..spec.clone() })?;
                            for value in input {
                                c.pool_mut().send_input(uuid, value)?;
                            }
                            c.pool_mut().end_input(uuid)
                        }
                        Work::Metadata { names, namespaces } => {
                            let names: Vec<&str> = names.iter().map(String::as_str).collect();
                            let namespaces: Vec<&str> = namespaces.iter().map(String::as_str).collect();
                            c.command_metadata(uuid, &names, &namespaces)
                        }
                    })
                    .await;
                match started {
                    Ok(Ok(())) => running = Some(Running { id: pipeline, uuid, buffer, calls: HashMap::new(), tag, waiting_for_key: Vec::new(), progress: BTreeMap::new() }),
                    Ok(Err(e)) => {
                        manager.update(&entry, |i| i.availability = Availability::Available);
                        buffer.push(|seq| ServerMessage::PipelineState { session: id, pipeline, seq, state: PipelineState::Failed, error: clixml::encode_message(&Value::string(e.to_string())).ok() });
                    }
                    Err(_) => break "the session's connection ended".to_owned(),
                }
            }
            Command::Complete { input, cursor, reply } => {
                if running.is_some() {
                    let _ = reply.send(no_completions(id, input, cursor));
                } else if start_internal(&mut session, id, &mut internal, Purpose::Complete { input, cursor, reply }).await.is_err() {
                    break "the session's connection ended".to_owned();
                }
            }
            // The engine sends the signal once the pipeline's creation has gone out.
            Command::Stop(p) => {
                let uuid = running.as_ref().filter(|r| r.id == p).map(|r| r.uuid);
                if let Some(uuid) = uuid
                    && session.with(move |c| c.stop(uuid)).await.is_err()
                {
                    break "the session's connection ended".to_owned();
                }
                // Stopped before it started (it waited for the relay's own pipeline): it never runs.
                if let Some(i) = queued.iter().position(|c| matches!(c, Command::Run { pipeline, .. } if *pipeline == p))
                    && let Some(Command::Run { buffer, .. }) = queued.remove(i)
                {
                    manager.update(&entry, |i| i.availability = Availability::Available);
                    buffer.push(|seq| ServerMessage::PipelineState { session: id, pipeline: p, seq, state: PipelineState::Stopped, error: None });
                }
            }
            Command::Answer { pipeline, call_id, answer } => {
                let Some(r) = running.as_mut().filter(|r| r.id == pipeline) else { continue };
                let Some(call) = r.calls.remove(&call_id) else { continue };
                let uuid = r.uuid;
                if answer.needs_key() {
                    let Ok(ready) = session.with(|c| c.pool().can_send_secure_strings()).await else { break "the session's connection ended".to_owned() };
                    if !ready {
                        r.waiting_for_key.push((call, answer));
                        if r.waiting_for_key.len() == 1 && start_key_exchange(&mut session, id).await.is_err() {
                            break "the session's connection ended".to_owned();
                        }
                        continue;
                    }
                }
                if send_answer(&mut session, id, uuid, call, answer).await.is_err() {
                    break "the session's connection ended".to_owned();
                }
            }
        }
    };
    for c in queued {
        refuse(c, id, &reason);
    }
    tracing::warn!(session = id.0, %reason, "session broken");
    if let Some(key) = &shell_key {
        manager.forget(key).await;
    }
    if let Some(mut r) = running.take() {
        flush_progress(id, &mut r);
        r.buffer.push(|seq| ServerMessage::PipelineState { session: id, pipeline: r.id, seq, state: PipelineState::Failed, error: clixml::encode_message(&Value::string(reason.clone())).ok() });
    }
    manager.update(&entry, |i| {
        i.state = SessionState::Broken;
        i.availability = Availability::None;
        i.reason = Some(reason);
    });
    let _ = wait_close(&mut commands, id).await;
}

/// Closes a session a relay quota ended (IdleTimeout, MaxShellRunTime): its pipelines stop with the reason, the
/// target closes it (over WinRM, its shell is deleted), and it stays listed as `Closed` with the reason until
/// the user removes it.
async fn quota_close(manager: &Manager, entry: &Entry, session: &mut Session, running: Option<Running>, queued: Vec<Command>, why: &str) {
    let id = lock(&entry.info).id;
    let error = || clixml::encode_message(&Value::string(why)).ok();
    if let Some(mut r) = running {
        flush_progress(id, &mut r);
        r.buffer.push(|seq| ServerMessage::PipelineState { session: id, pipeline: r.id, seq, state: PipelineState::Stopped, error: error() });
    }
    for c in queued {
        refuse(c, id, why);
    }
    let _ = session.with(|c| c.close()).await;
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(e) = session.events.recv().await {
            if matches!(e, ClientEvent::SessionClosed) {
                break;
            }
        }
    })
    .await;
    manager.update(entry, |i| {
        i.state = SessionState::Closed;
        i.availability = Availability::None;
        i.reason = Some(why.to_owned());
    });
}

/// Starts the PSRP key exchange (the RSA key is made off the runtime); `Err`: the connection is gone.
async fn start_key_exchange(session: &mut Session, id: SessionId) -> Result<(), ()> {
    let key = match tokio::task::spawn_blocking(|| psgate_shared::psrp::crypto::ExchangeKey::generate(&mut rand::rngs::OsRng)).await {
        Ok(Ok(key)) => key,
        other => {
            tracing::warn!(session = id.0, error = ?other.err(), "no exchange key");
            return Ok(());
        }
    };
    session.with(move |c| c.pool_mut().start_key_exchange(key)).await.map_err(drop)?.unwrap_or_else(|e| tracing::warn!(session = id.0, error = %e, "key exchange"));
    Ok(())
}

/// Sends a host answer (its SecureStrings made with the session key); `Err`: the connection is gone.
async fn send_answer(session: &mut Session, id: SessionId, pipeline: Uuid, call: HostCall, answer: Answer) -> Result<(), ()> {
    let sent = session
        .with(move |c| {
            let result = answer.into_result(c.pool());
            c.pool_mut().host_response(Some(pipeline), &call, result)
        })
        .await
        .map_err(drop)?;
    if let Err(e) = sent {
        tracing::warn!(session = id.0, error = %e, "a host answer was refused");
    }
    Ok(())
}

/// Waits for `Close`; what else comes meanwhile is refused (the session is not open).
async fn wait_close(commands: &mut mpsc::UnboundedReceiver<Command>, session: SessionId) {
    while let Some(c) = commands.recv().await {
        match c {
            Command::Close => return,
            c => refuse(c, session, "the session is not open"),
        }
    }
}

/// Ends a command that will never run: its pipeline fails, a completion gets nothing.
fn refuse(command: Command, session: SessionId, why: &str) {
    match command {
        Command::Run { pipeline, buffer, .. } => {
            buffer.push(|seq| ServerMessage::PipelineState { session, pipeline, seq, state: PipelineState::Failed, error: clixml::encode_message(&Value::string(why)).ok() });
        }
        Command::Complete { input, cursor, reply } => {
            let _ = reply.send(no_completions(session, input, cursor));
        }
        Command::Stop(_) | Command::Answer { .. } | Command::Disconnect { .. } | Command::Connect | Command::Close | Command::Abandon(_) => {}
    }
}

fn flush_progress(session: SessionId, r: &mut Running) {
    for (_, value) in std::mem::take(&mut r.progress) {
        if let Ok(text) = clixml::encode_message(&value) {
            r.buffer.push(|seq| ServerMessage::Record { session, pipeline: r.id, seq, kind: RecordKind::Progress, clixml: text });
        }
    }
}

fn activity_of(value: &Value) -> i32 {
    match value {
        Value::Progress(p) => p.activity_id,
        other => other.as_object().and_then(|o| o.property("ActivityId")).and_then(Value::as_i64).and_then(|v| i32::try_from(v).ok()).unwrap_or(0),
    }
}

/// One event of the pool while a session is open.
async fn handle(manager: &Manager, entry: &Entry, session: &mut Session, running: &mut Option<Running>, internal: &mut Option<Internal>, prompt_stale: &mut bool, event: Event) -> Result<(), ()> {
    let sid = lock(&entry.info).id;
    let ours = |p: Uuid, internal: &Option<Internal>| internal.as_ref().is_some_and(|i| i.uuid == p);
    let current = |p: Uuid, running: &mut Option<Running>| running.as_mut().filter(|r| r.uuid == p).is_some();
    match event {
        Event::Output { pipeline, value } if ours(pipeline, internal) => {
            if let Some(i) = internal.as_mut()
                && i.outputs.len() < 16
            {
                i.outputs.push(value);
            }
        }
        Event::PipelineState { pipeline, state, .. } if ours(pipeline, internal) => {
            if state.is_terminal()
                && let Some(i) = internal.take()
            {
                if state != PsrpPipelineState::Completed {
                    tracing::debug!(session = sid.0, purpose = i.purpose.name(), ?state, "the relay's pipeline did not complete");
                }
                i.finish(manager, entry);
                session.with(move |c| c.close_pipeline(pipeline)).await.map_err(drop)?;
            }
        }
        Event::Output { pipeline, value } if current(pipeline, running) => {
            let Some(r) = running.as_mut() else { return Ok(()) };
            let value = match &r.tag {
                Some(computer_name) => with_computer_name(value, computer_name),
                None => value,
            };
            match clixml::encode_message(&value) {
                Ok(text) => r.buffer.push(|seq| ServerMessage::Output { session: sid, pipeline: r.id, seq, clixml: text }),
                Err(e) => tracing::warn!(session = sid.0, error = %e, "an output object could not be encoded"),
            }
        }
        Event::Record { pipeline, kind, value } if current(pipeline, running) => {
            let Some(r) = running.as_mut() else { return Ok(()) };
            if kind == pool::RecordKind::Progress {
                r.progress.insert(activity_of(&value), value);
                return Ok(());
            }
            let kind = RecordKind::from(kind);
            if let Ok(text) = clixml::encode_message(&value) {
                r.buffer.push(|seq| ServerMessage::Record { session: sid, pipeline: r.id, seq, kind, clixml: text });
            }
        }
        Event::HostCall { pipeline, call } => {
            let local = match call.method {
                HostMethod::GetName => Some(Value::string("psgate")),
                HostMethod::GetVersion => Some(Value::Version(clixml::Version::new(0, 1))),
                HostMethod::GetInstanceId => Some(Value::Guid(Uuid::new_v4())),
                HostMethod::GetCurrentCulture | HostMethod::GetCurrentUICulture => Some(Value::string("en-US")),
                _ => None,
            };
            let target = running.as_mut().filter(|r| pipeline == Some(r.uuid));
            match (local, target) {
                (Some(v), _) => session.with(move |c| c.pool_mut().host_response(pipeline, &call, HostResult::Value(v))).await.map_err(drop)?.unwrap_or_else(|e| tracing::warn!(error = %e, "host answer")),
                (None, Some(r)) if call.method == HostMethod::WriteProgress => {
                    if let Some(v) = call.args.get(1) {
                        r.progress.insert(activity_of(v), v.clone());
                    }
                }
                (None, Some(r)) => {
                    let args = call.args.iter().filter_map(|a| clixml::encode_message(a).ok()).collect();
                    let (call_id, method) = (call.call_id, call.method.name().to_owned());
                    if !call.method.is_void() {
                        r.calls.insert(call.call_id, call);
                    }
                    r.buffer.push(|seq| ServerMessage::HostCall { session: sid, pipeline: r.id, seq, call_id, method, args });
                }
                (None, None) if !call.method.is_void() => {
                    let result = HostResult::Error(format!("psgate's relay host does not answer {} outside a pipeline", call.method.name()));
                    session.with(move |c| c.pool_mut().host_response(pipeline, &call, result)).await.map_err(drop)?.unwrap_or_else(|e| tracing::warn!(error = %e, "host answer"));
                }
                (None, None) => {}
            }
        }
        Event::PipelineState { pipeline, state, error } if current(pipeline, running) => {
            let state = match state {
                PsrpPipelineState::Running => PipelineState::Running,
                PsrpPipelineState::Stopping => PipelineState::Stopping,
                PsrpPipelineState::Stopped => PipelineState::Stopped,
                PsrpPipelineState::Completed => PipelineState::Completed,
                PsrpPipelineState::Failed => PipelineState::Failed,
                PsrpPipelineState::NotStarted | PsrpPipelineState::Disconnected => return Ok(()),
            };
            let Some(r) = running.as_mut() else { return Ok(()) };
            flush_progress(sid, r);
            let error = error.and_then(|e| clixml::encode_message(&e).ok());
            // The session takes the next command as soon as anybody can know this one ended: available first.
            if state.is_terminal() {
                manager.update(entry, |i| i.availability = Availability::Available);
            }
            r.buffer.push(|seq| ServerMessage::PipelineState { session: sid, pipeline: r.id, seq, state, error });
            if state.is_terminal() {
                let uuid = r.uuid;
                *prompt_stale |= r.tag.is_none();
                *running = None;
                session.with(move |c| c.close_pipeline(uuid)).await.map_err(drop)?;
            }
        }
        Event::KeyRequested => start_key_exchange(session, sid).await?,
        Event::KeyExchanged => {
            if let Some(r) = running.as_mut() {
                for (call, answer) in std::mem::take(&mut r.waiting_for_key) {
                    send_answer(session, sid, r.uuid, call, answer).await?;
                }
            }
        }
        _ => {}
    }
    Ok(())
}

/// What a part of a user's kept prompt is sealed for: a sealed part opens only as that part of that user's prompt.
fn prompt_context(part: PromptPart, owner: &str) -> String {
    match part {
        PromptPart::State => format!("prompt:{owner}"),
        PromptPart::Modules => format!("prompt-modules:{owner}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn out(seq: u64) -> ServerMessage {
        ServerMessage::Output { session: SessionId(1), pipeline: PipelineId(1), seq, clixml: format!("<I32>{seq}</I32>") }
    }

    #[test]
    fn a_buffer_resumes_after_any_sequence_number() {
        let b = Buffer::new();
        for _ in 0..5 {
            b.push(out);
        }
        let seqs = |after| b.read(after, 100).events.iter().filter_map(ServerMessage::seq).collect::<Vec<_>>();
        assert_eq!(seqs(0), vec![1, 2, 3, 4, 5]);
        assert_eq!(seqs(3), vec![4, 5]);
        assert_eq!(seqs(5), Vec::<u64>::new());
        assert_eq!(b.read(1, 2).events.len(), 2);
        assert!(!b.read(0, 100).finished);
        b.push(|seq| ServerMessage::PipelineState { session: SessionId(1), pipeline: PipelineId(1), seq, state: PipelineState::Completed, error: None });
        assert!(b.read(0, 100).finished);
        assert!(!b.read(0, 2).finished, "more follows the first two");
    }

    #[test]
    fn a_full_buffer_drops_the_oldest_and_says_so() {
        let b = Buffer::new();
        for _ in 0..BUFFER_EVENTS + 10 {
            b.push(out);
        }
        let batch = b.read(0, 1);
        assert_eq!(batch.dropped, 10);
        assert_eq!(batch.events[0].seq(), Some(11));
        assert_eq!(b.read(20, 1).dropped, 0);
    }

    #[test]
    fn max_memory_per_shell_mb_bounds_the_bytes_kept_and_a_reader_behind_holds_the_producer() {
        // 1,000-byte objects in a 10,000-byte buffer: the last nine or ten are kept, the rest dropped and counted.
        let big = |seq: u64| ServerMessage::Output { session: SessionId(1), pipeline: PipelineId(1), seq, clixml: format!("<S>{}</S>", "x".repeat(929)) };
        let b = Buffer::with_limit(Some(10_000));
        for _ in 0..100 {
            b.push(big);
        }
        let batch = b.read(0, 1000);
        assert!((9..=10).contains(&batch.events.len()), "{} kept", batch.events.len());
        assert_eq!(batch.dropped as usize + batch.events.len(), 100);
        assert_eq!(batch.events.last().and_then(ServerMessage::seq), Some(100));
        // A live reader behind: the producer waits instead (flow control), nothing is lost.
        let b = Buffer::with_limit(Some(10_000));
        let _reader = b.reader(0);
        let mut pushed = 0;
        while !b.must_wait() {
            b.push(big);
            pushed += 1;
        }
        assert!((10..=11).contains(&pushed), "{pushed} pushed before waiting");
        assert_eq!(b.read(0, 1000).dropped, 0);
    }

    #[tokio::test]
    async fn a_live_reader_behind_a_full_buffer_holds_the_producer_instead_of_losing_output() {
        let b = Arc::new(Buffer::new());
        let reader = b.reader(0);
        for _ in 0..BUFFER_EVENTS {
            assert!(!b.must_wait(), "room until the buffer is full");
            b.push(out);
        }
        assert!(b.must_wait(), "the reader has not read the oldest event");
        let waiting = tokio::time::timeout(Duration::from_millis(50), b.room()).await;
        assert!(waiting.is_err(), "no room while the reader lags");
        reader.advance(1);
        assert!(!b.must_wait(), "the oldest is read: it may go");
        b.push(out);
        assert!(b.must_wait(), "full again, and the reader is behind the new oldest");
        // The reader goes away (a closed tab) while the producer waits: nobody is waited for any more.
        let (room, ()) = tokio::join!(tokio::time::timeout(Duration::from_secs(5), b.room()), async move {
            tokio::task::yield_now().await;
            drop(reader);
        });
        assert!(room.is_ok(), "room once nobody follows");
    }

    #[test]
    fn invoke_outputs_carry_ps_computer_name_like_invoke_command() {
        for value in [Value::string("hello"), Value::I32(5), psgate_shared::psrp::host::prompt_result(&[("a".into(), Value::string("b"))])] {
            let tagged = with_computer_name(value.clone(), "srv01");
            let decoded = clixml::decode_message(clixml::encode_message(&tagged).expect("encode").as_bytes()).expect("decode");
            let obj = decoded.as_object().expect("an object");
            assert_eq!(obj.property("PSComputerName").and_then(Value::as_str), Some("srv01"));
            assert_eq!(obj.property("PSShowComputerName").and_then(Value::as_bool), Some(true));
            if let Some(text) = value.as_str() {
                assert_eq!(decoded.as_str(), Some(text), "the primitive is still inside");
            }
            if let Some(n) = value.as_i64() {
                assert_eq!(decoded.as_i64(), Some(n));
            }
            let again = with_computer_name(decoded, "srv02");
            let names: Vec<_> = again.as_object().expect("object").extended.iter().filter(|p| p.name == "PSComputerName").map(|p| p.value.as_str()).collect();
            assert_eq!(names, vec![Some("srv02")], "tagged once");
        }
        assert_eq!(with_computer_name(Value::Nil, "srv01"), Value::Nil);
    }

    #[test]
    fn answers_never_show_their_text() {
        let a = Answer::Credential { user: "bob".into(), password: "hunter2".into() };
        assert!(!format!("{a:?}").contains("hunter2"));
        assert!(!format!("{:?}", Answer::Secure("s3cret".into())).contains("s3cret"));
    }

    #[test]
    fn the_allow_list_is_checked_before_anything() {
        let config = Config::parse("local_command = [\"true\"]\n[[allow]]\nhosts = [\"localhost\"]\ntransports = [\"local\"]\n[[allow]]\nhosts = [\"srv*.contoso.com\"]\nports = [22]").expect("config");
        let m = Manager::new(Arc::new(config));
        let t = |host: &str, transport, port| Target { port, user: Some("u".into()), password: Some("p".into()), ..Target::new(host, transport) };
        assert_eq!(m.check_target(&t("localhost", Transport::Local, None)), Ok(()));
        assert_eq!(m.check_target(&t("srv1.contoso.com", Transport::Ssh, None)), Ok(()));
        for bad in [t("evil.org", Transport::Ssh, None), t("srv1.contoso.com", Transport::Ssh, Some(2222)), t("localhost", Transport::Ssh, None)] {
            assert_eq!(m.check_target(&bad).map_err(|e| e.code), Err(ErrorCode::TargetNotAllowed), "{bad:?}");
        }
        let mut no_user = t("srv1.contoso.com", Transport::Ssh, None);
        no_user.user = None;
        assert_eq!(m.check_target(&no_user).map_err(|e| e.code), Err(ErrorCode::InvalidTarget));
    }
}

