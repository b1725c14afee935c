//! A runspace pool over WS-Management (MS-PSRP 3.1.5.3, `protocol.md` §4, §7): the session's task drives a
//! [`Shell`] — the pool plus the shell's WS-Management state — with HTTP requests.
//!
//! - **Requests in order, on one connection.** Create, Command, Send, Signal, Disconnect, Reconnect, Connect and
//!   Delete go one at a time, in the order the pool produced them, on the control connection: a pipeline's Command
//!   is answered before its first Send or its Signal goes out.
//! - **Receives beside it.** A Receive long-polls (up to the OperationTimeout, then the server's `w:TimedOut` fault
//!   and the Receive is sent again), so each runs on a connection of its own: one for the shell (the pool's own
//!   messages: host calls of the pool, the session key) and one per running command, taken from connections kept
//!   idle after an earlier Receive. NTLM and Kerberos authenticate each connection once.
//! - **Fragments sized to the server.** [`connect`] reads the server's `MaxEnvelopeSize` (WS-Transfer Get of
//!   `winrm/config`; 150 KiB, Windows' smallest default, if the user may not read it) and sizes the pool's fragments
//!   so that the largest envelope that carries them fits; a message larger than that goes in several Sends.
//! - **Disconnect / Reconnect / Connect.** Disconnect stops the Receives (the server answers the waiting ones with
//!   its shell-disconnected fault) and leaves the shell running; Reconnect (same client, same `wsmv:SessionId`)
//!   resumes them. Connect is for a new client (another relay process): `connectXml` carries SESSION_CAPABILITY and
//!   CONNECT_RUNSPACEPOOL, `connectResponseXml` the server's capability and RUNSPACEPOOL_INIT_DATA; then each command
//!   that still runs is connected and received from where the last client stopped. [`ShellRecord`] is what a later
//!   Connect needs: what the relay stores.
//! - **Faults are typed.** A failed request becomes a [`WinrmOpError`]; quota faults name their quota.
//! - **Configuration.** [`config_get`] and [`config_set`] read and change the target's WinRM configuration as
//!   PowerShell's WSMan provider does (Get the resource, edit one setting in its XML, Put it back); the target's
//!   refusals keep their fault codes.

use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt;
use std::time::Duration;

use futures_util::stream::{FuturesUnordered, StreamExt as _};
use psgate_shared::api::{ErrorCode, OutputBufferingMode};
use psgate_shared::psrp::fragment;
use psgate_shared::psrp::messages::PipelineSpec;
use psgate_shared::psrp::outofproc::ClientEvent;
use psgate_shared::psrp::pool::{PoolConfig, ProtocolError, RunspacePool, Stream};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use uuid::Uuid;

use super::outofproc::{Client, Job, Session, Unsupported};
use crate::transport::winrm::{WinrmClient, WinrmError, WinrmOptions};
use crate::wsman::envelope::{BufferMode, ClientConfig, EnumItem, GetResponse, InputStream, ReceiveResponse, Request, Response, ShellRef, SignalCode};
use crate::wsman::config as wsman_config;
use crate::wsman::{ConfigDocument, ConfigItem, ConfigResource, FaultKind, WsmanError, WsmanFault, configuration_uri, parse_response};

/// Windows' smallest default `MaxEnvelopeSize` (Server 2008 R2): used when the configuration cannot be read.
pub const FALLBACK_MAX_ENVELOPE: u32 = 150 * 1024;

/// Events held before the task stops taking Receive answers.
const MAX_PENDING_EVENTS: usize = 1024;

/// A request that failed.
#[derive(Debug, thiserror::Error)]
pub enum WinrmOpError {
    /// The HTTP layer: connection, TLS, authentication, encryption.
    #[error(transparent)]
    Http(#[from] WinrmError),
    /// The answer: a WS-Management fault, or not a valid answer.
    #[error(transparent)]
    Wsman(#[from] WsmanError),
}

impl WinrmOpError {
    /// How the browser is told: refused credentials and quota faults have codes of their own.
    pub fn code(&self) -> ErrorCode {
        match (self, self.kind()) {
            (WinrmOpError::Http(WinrmError::Auth(_)), _) | (_, Some(FaultKind::AccessDenied)) => ErrorCode::AuthenticationFailed,
            (_, Some(FaultKind::Quota(_))) => ErrorCode::QuotaExceeded,
            _ => ErrorCode::TargetFailed,
        }
    }

    /// The server's fault, if that is what it is.
    pub fn fault(&self) -> Option<&WsmanFault> {
        match self {
            WinrmOpError::Wsman(WsmanError::Fault(f)) => Some(f),
            _ => None,
        }
    }

    /// The fault's kind.
    pub fn kind(&self) -> Option<FaultKind> {
        self.fault().map(WsmanFault::kind)
    }
}

/// How to reach a WinRM target and which shell to use.
#[derive(Clone, Debug)]
pub struct WinrmTarget {
    /// Endpoint, credentials, TLS.
    pub options: WinrmOptions,
    /// `-ConfigurationName` (default `Microsoft.PowerShell`).
    pub configuration_name: Option<String>,
    /// The shell's idle timeout asked for at creation (default: the server's).
    pub idle_timeout: Option<Duration>,
    /// `wsman:OperationTimeout` of Receives.
    pub operation_timeout: Duration,
}

impl WinrmTarget {
    /// Defaults: the default configuration, the server's idle timeout, 20 s Receives.
    pub fn new(options: WinrmOptions) -> WinrmTarget {
        WinrmTarget { options, configuration_name: None, idle_timeout: None, operation_timeout: Duration::from_secs(20) }
    }

    /// The resource URI of the configuration.
    pub fn resource_uri(&self) -> String {
        configuration_uri(self.configuration_name.as_deref().unwrap_or("Microsoft.PowerShell"))
    }
}

/// What a later Connect needs, from another client or after a relay restart (no secret in it).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShellRecord {
    /// The endpoint URL.
    pub endpoint: String,
    /// The shell's resource URI (its configuration).
    pub resource_uri: String,
    /// The ShellId (the runspace pool's id).
    pub shell_id: Uuid,
    /// The `wsmv:SessionId` of the client that created or last connected it (a Reconnect must repeat it).
    pub wsman_session_id: Uuid,
    /// The commands (pipelines) the client had at the target.
    pub commands: Vec<Uuid>,
}

/// Opens a WinRM session: reads the server's envelope size, then starts the task. The pool is opened (a new shell)
/// by [`Client::open`], or, with `attach`, connected to an existing disconnected shell with its commands.
///
/// `take_over`: the shell's client (another relay) died without disconnecting it, so the target may still count it
/// connected to that client and refuse a Connect (ERROR_WINRS_SHELL_CONNECTED_TO_DIFFERENT_CLIENT). It is first
/// disconnected as that client — the `wsmv:SessionId` the record keeps — with Block buffering, so that nothing the
/// shell produces meanwhile is dropped. A shell already disconnected refuses that, which changes nothing.
pub async fn connect(target: WinrmTarget, attach: Option<ShellRecord>, take_over: bool) -> Result<Session, WinrmOpError> {
    let mut control = WinrmClient::new(target.options.clone())?;
    if let Some(record) = attach.as_ref().filter(|_| take_over) {
        let previous = ClientConfig::new(target.options.endpoint.to_string(), record.wsman_session_id);
        let shell = ShellRef::new(record.resource_uri.clone(), upper(record.shell_id));
        match call(&mut control, &previous, Request::disconnect(&shell, None, Some(BufferMode::Block)), target.options.request_timeout).await {
            Ok(_) => tracing::info!(shell = %upper(record.shell_id), "disconnected as its previous client, to take it over"),
            Err(e) => tracing::info!(shell = %upper(record.shell_id), error = %e, "disconnecting as its previous client (it may be disconnected already)"),
        }
    }
    let session_id = Uuid::new_v4();
    let mut config = ClientConfig::new(target.options.endpoint.to_string(), session_id);
    config.operation_timeout = target.operation_timeout;
    config.max_envelope_size = match call(&mut control, &config, Request::get_config(), target.options.request_timeout).await {
        Ok(Response::Get(GetResponse::Config(c))) => c.max_envelope_size().unwrap_or(FALLBACK_MAX_ENVELOPE),
        Ok(_) => FALLBACK_MAX_ENVELOPE,
        // Reading the configuration needs rights a JEA user may not have; anything else is the target refusing us.
        Err(e) if e.fault().is_some() => FALLBACK_MAX_ENVELOPE,
        Err(e) => return Err(e),
    };
    let resource_uri = attach.as_ref().map_or_else(|| target.resource_uri(), |a| a.resource_uri.clone());
    let id = attach.as_ref().map_or_else(Uuid::new_v4, |a| a.shell_id);
    let mut pool_config = PoolConfig::new(id);
    let probe = ShellRef::new(resource_uri.clone(), upper(id));
    let max_fragment = config.max_fragment_size(&probe)?;
    pool_config.max_fragment = max_fragment;
    pool_config.max_packet = max_fragment;
    let mut shell = Shell::new(RunspacePool::new(pool_config), config, resource_uri, target.idle_timeout, max_fragment);
    if let Some(record) = attach {
        shell.attach(record).map_err(|e| WinrmOpError::Wsman(WsmanError::Unexpected { expected: "a shell to connect to", found: e.to_string() }))?;
    }
    Ok(Session::spawn(move |jobs, events| run(shell, target, control, jobs, events)))
}

/// Remove-PSSession of a disconnected shell this client is not attached to: Delete it.
pub async fn delete(target: &WinrmTarget, record: &ShellRecord) -> Result<(), WinrmOpError> {
    let mut client = WinrmClient::new(target.options.clone())?;
    let config = ClientConfig::new(target.options.endpoint.to_string(), Uuid::new_v4());
    let shell = ShellRef::new(record.resource_uri.clone(), upper(record.shell_id));
    call(&mut client, &config, Request::delete(&shell), target.options.request_timeout).await.map(drop)
}

/// `Get-PSSession -ComputerName`: the shells the target holds for these credentials, with their commands.
pub async fn enumerate(target: &WinrmTarget) -> Result<Vec<(crate::wsman::envelope::ShellInfo, Vec<Uuid>)>, WinrmOpError> {
    let mut client = WinrmClient::new(target.options.clone())?;
    let config = ClientConfig::new(target.options.endpoint.to_string(), Uuid::new_v4());
    let timeout = target.options.request_timeout;
    let mut shells = Vec::new();
    for item in enumerate_all(&mut client, &config, Request::enumerate_shells(), timeout).await? {
        if let EnumItem::Shell(s) = item
            && s.resource_uri.as_deref().is_none_or(|u| u.starts_with("http://schemas.microsoft.com/powershell/"))
        {
            shells.push(*s);
        }
    }
    let mut out = Vec::new();
    for shell in shells {
        let mut commands = Vec::new();
        // A shell may end between the two requests: it simply has no commands then.
        if let Ok(items) = enumerate_all(&mut client, &config, Request::enumerate_commands(&shell.shell_id), timeout).await {
            for item in items {
                if let EnumItem::Command { command_id, .. } = item
                    && let Ok(id) = Uuid::parse_str(&command_id)
                {
                    commands.push(id);
                }
            }
        }
        out.push((shell, commands));
    }
    Ok(out)
}

/// `Get-Item WSMan:\<computer>\…` as PowerShell's WSMan provider reads it: a WS-Transfer Get of the configuration
/// `resource`, its XML exactly as the target sent it (what [`config_set`] edits) and its settings. Any user Windows
/// lets read the configuration may; a refusal (or an unknown plugin) is the target's fault, its code kept.
pub async fn config_get(target: &WinrmTarget, resource: &ConfigResource) -> Result<(String, Vec<ConfigItem>), WinrmOpError> {
    let mut client = WinrmClient::new(target.options.clone())?;
    let config = ClientConfig::new(target.options.endpoint.to_string(), Uuid::new_v4());
    let document = call_config(&mut client, &config, Request::get_resource(resource), target.options.request_timeout)
        .await?
        .ok_or(WsmanError::Missing("the configuration resource in the GetResponse"))?;
    Ok((document.xml, document.items))
}

/// `Set-Item WSMan:\<computer>\…\<setting> <value>` as PowerShell's WSMan provider does it, on one connection: a
/// WS-Transfer Get of `resource`, the setting at `path` ([`ConfigItem::path`]) set to `value` in the resource's own
/// XML with every other byte kept, and a WS-Transfer Put of the whole resource back. Returns the settings the Put's
/// answer shows (the resource as the target now holds it).
///
/// A path the resource does not have is [`WsmanError::UnknownSetting`], found before anything is put. The target
/// decides the rest and refuses with its fault, code and text kept: a user who is no administrator
/// ([`FaultKind::AccessDenied`]), a setting Group Policy sets ([`FaultKind::PolicyControlled`]), a read-only one
/// ([`FaultKind::DeprecatedSetting`]), a value out of range ([`FaultKind::SchemaValidation`],
/// [`FaultKind::IdleTimeoutOutOfRange`]). A plugin's change takes effect on Windows when WinRM restarts; nothing in
/// the answer says so.
pub async fn config_set(target: &WinrmTarget, resource: &ConfigResource, path: &str, value: &str) -> Result<Vec<ConfigItem>, WinrmOpError> {
    let mut client = WinrmClient::new(target.options.clone())?;
    let config = ClientConfig::new(target.options.endpoint.to_string(), Uuid::new_v4());
    let timeout = target.options.request_timeout;
    let current = call_config(&mut client, &config, Request::get_resource(resource), timeout)
        .await?
        .ok_or(WsmanError::Missing("the configuration resource in the GetResponse"))?;
    let edited = wsman_config::edit(&current.xml, path, value)?;
    match call_config(&mut client, &config, Request::put_resource(resource, edited.clone()), timeout).await? {
        Some(answer) => Ok(answer.items),
        // WS-Transfer lets the target answer nothing when it took the resource as sent.
        None => Ok(ConfigDocument::parse(edited)?.items),
    }
}

/// Sends a Get or Put of a configuration resource and reads the resource its answer carries (a fault is an error).
async fn call_config(client: &mut WinrmClient, config: &ClientConfig, request: Request, timeout: Duration) -> Result<Option<ConfigDocument>, WinrmOpError> {
    let message_id = Uuid::new_v4();
    let xml = request.to_xml(config, message_id);
    let answer = client.send_with_timeout(xml.as_bytes(), timeout).await?;
    let (envelope, document) = wsman_config::parse_config_response(&answer.body)?;
    envelope.answers(request.action, message_id)?;
    Ok(document)
}

async fn enumerate_all(client: &mut WinrmClient, config: &ClientConfig, first: Request, timeout: Duration) -> Result<Vec<EnumItem>, WinrmOpError> {
    let resource_uri = first.resource_uri.clone();
    let mut items = Vec::new();
    let mut answer = call(client, config, first, timeout).await?;
    // Bounded: a server that never ends its sequence is not followed forever.
    for _ in 0..1000 {
        let (Response::Enumerate(e) | Response::Pull(e)) = answer else { break };
        items.extend(e.items);
        match e.context {
            Some(context) if !e.end_of_sequence => answer = call(client, config, Request::pull(&resource_uri, &context), timeout).await?,
            _ => break,
        }
    }
    Ok(items)
}

/// Sends one request and reads its answer (a fault is an error).
async fn call(client: &mut WinrmClient, config: &ClientConfig, request: Request, timeout: Duration) -> Result<Response, WinrmOpError> {
    let message_id = Uuid::new_v4();
    let xml = request.to_xml(config, message_id);
    let answer = client.send_with_timeout(xml.as_bytes(), timeout).await?;
    let envelope = parse_response(&answer.body)?;
    envelope.answers(request.action, message_id)?;
    Ok(envelope.body)
}

fn upper(id: Uuid) -> String {
    id.hyphenated().to_string().to_uppercase()
}

/// A request of the control connection.
#[derive(Clone, Debug)]
enum Op {
    Create(Vec<u8>),
    ConnectPool(Vec<u8>),
    Command(Uuid, Vec<u8>),
    ConnectCommand(Uuid),
    Send { pid: Option<Uuid>, stream: InputStream, data: Vec<u8> },
    Signal(Uuid, SignalCode),
    Disconnect(Option<Duration>, Option<BufferMode>),
    Reconnect,
    Delete,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Before Create or Connect was answered.
    Starting,
    Open,
    Disconnecting,
    Disconnected,
    Reconnecting,
    Closing,
    Closed,
}

#[derive(Debug, Default)]
struct Command {
    /// The Command (or Connect) was answered: Receives can start.
    ready: bool,
    /// The server reported CommandState Done: no more Receives.
    done: bool,
    /// Released (Signal terminate sent).
    closing: bool,
}

/// The pool and the shell's WS-Management state, without IO: jobs call into it, the task carries out its requests.
pub struct Shell {
    pool: RunspacePool,
    config: ClientConfig,
    resource_uri: String,
    idle_timeout: Option<Duration>,
    shell: Option<ShellRef>,
    phase: Phase,
    ops: VecDeque<Op>,
    commands: HashMap<Uuid, Command>,
    /// Commands to connect once the pool is (a Connect).
    to_connect: Vec<Uuid>,
    events: VecDeque<ClientEvent>,
    max_chunk: usize,
    closing: bool,
    /// Why the session broke, when a request failed.
    failure: Option<ErrorCode>,
    /// Disconnects so far: a Receive sent before the last one may come back with a fault about it after a
    /// reconnect, which says nothing of the shell now.
    epoch: u64,
}

impl fmt::Debug for Shell {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shell").field("shell", &self.shell.as_ref().and_then(ShellRef::shell_id)).field("phase", &self.phase).finish_non_exhaustive()
    }
}

impl Shell {
    fn new(pool: RunspacePool, config: ClientConfig, resource_uri: String, idle_timeout: Option<Duration>, max_chunk: usize) -> Shell {
        Shell {
            pool,
            config,
            resource_uri,
            idle_timeout,
            shell: None,
            phase: Phase::Starting,
            ops: VecDeque::new(),
            commands: HashMap::new(),
            to_connect: Vec::new(),
            events: VecDeque::new(),
            max_chunk,
            closing: false,
            failure: None,
            epoch: 0,
        }
    }

    /// Prepares a Connect to `record`'s shell (instead of [`Client::open`]).
    fn attach(&mut self, record: ShellRecord) -> Result<(), ProtocolError> {
        self.pool.connect()?;
        let data = self.take_pool_messages();
        self.shell = Some(ShellRef::new(record.resource_uri, upper(record.shell_id)));
        self.to_connect = record.commands;
        self.ops.push_back(Op::ConnectPool(data));
        Ok(())
    }

    /// Everything the pool queued, as one buffer of fragments (for creationXml / connectXml).
    fn take_pool_messages(&mut self) -> Vec<u8> {
        let mut data = Vec::new();
        while let Some(out) = self.pool.poll_send() {
            data.extend_from_slice(&out.data);
        }
        data
    }

    /// Moves what the pool queued into requests.
    fn pump(&mut self) {
        if self.shell.is_none() || matches!(self.phase, Phase::Closing | Phase::Closed) {
            return;
        }
        while let Some(out) = self.pool.poll_send() {
            let stream = match out.stream {
                Stream::Default => InputStream::Stdin,
                Stream::PromptResponse => InputStream::Pr,
            };
            let mut chunks = split_fragments(&out.data, self.max_chunk).into_iter();
            if let Some(pid) = out.pipeline
                && !self.commands.contains_key(&pid)
            {
                // A pipeline's first message (CREATE_PIPELINE) is the Command's argument.
                self.commands.insert(pid, Command::default());
                self.ops.push_back(Op::Command(pid, chunks.next().unwrap_or_default()));
            }
            for data in chunks {
                self.ops.push_back(Op::Send { pid: out.pipeline, stream, data });
            }
        }
    }

    /// The Receives that should be waiting: the shell's and each ready command's.
    fn wanted_receives(&self) -> Vec<Option<Uuid>> {
        if self.phase != Phase::Open || self.closing {
            return Vec::new();
        }
        let mut wanted = vec![None];
        wanted.extend(self.commands.iter().filter(|(_, c)| c.ready && !c.done && !c.closing).map(|(id, _)| Some(*id)));
        wanted
    }

    fn request(&self, op: &Op) -> Option<Request> {
        let shell = self.shell.as_ref()?;
        Some(match op {
            Op::Create(data) => {
                let id = Uuid::parse_str(shell.shell_id().unwrap_or_default()).unwrap_or_else(|_| self.pool.id());
                Request::create_pool(&self.resource_uri, id, data, self.idle_timeout)
            }
            Op::ConnectPool(data) => Request::connect_pool(shell, data),
            Op::Command(pid, data) => Request::command(shell, *pid, data),
            Op::ConnectCommand(pid) => Request::connect_command(shell, *pid),
            Op::Send { pid, stream, data } => Request::send(shell, *stream, *pid, data),
            Op::Signal(pid, code) => Request::signal(shell, *pid, code.clone()),
            Op::Disconnect(idle, mode) => Request::disconnect(shell, *idle, *mode),
            Op::Reconnect => Request::reconnect(shell, None),
            Op::Delete => Request::delete(shell),
        })
    }

    fn broken(&mut self, reason: &str) {
        tracing::warn!(shell = ?self.shell.as_ref().and_then(ShellRef::shell_id), %reason, "winrm session broken");
        self.pool.broken(reason);
        self.phase = Phase::Closed;
        self.ops.clear();
        self.drain();
        self.events.push_back(ClientEvent::SessionClosed);
    }

    fn drain(&mut self) {
        while let Some(e) = self.pool.poll_event() {
            self.events.push_back(ClientEvent::Psrp(e));
        }
    }

    fn feed(&mut self, data: &[u8]) {
        if let Err(e) = self.pool.receive(data) {
            tracing::warn!(error = %e, "the target sent something this client cannot use");
            self.drain();
            self.broken(&e.to_string());
        }
        self.drain();
    }

    /// The answer to a control request.
    fn op_done(&mut self, op: Op, result: Result<Response, WinrmOpError>) {
        match (op, result) {
            (Op::Create(_), Ok(Response::Create(created))) => {
                let shell = ShellRef::from_created(&self.resource_uri, &created);
                self.resource_uri = shell.resource_uri.clone();
                self.shell = Some(shell);
                self.phase = Phase::Open;
            }
            (Op::ConnectPool(_), Ok(Response::Connect(answer))) => {
                self.phase = Phase::Open;
                if let Some(data) = answer.connect_response_xml {
                    self.feed(&data);
                }
                for pid in std::mem::take(&mut self.to_connect) {
                    self.pool.adopt_pipeline(pid);
                    self.commands.insert(pid, Command::default());
                    self.ops.push_back(Op::ConnectCommand(pid));
                }
            }
            (Op::Command(pid, _) | Op::ConnectCommand(pid), Ok(_)) => {
                if let Some(c) = self.commands.get_mut(&pid) {
                    c.ready = true;
                }
            }
            (Op::Command(pid, _) | Op::ConnectCommand(pid), Err(e)) => {
                self.commands.remove(&pid);
                self.pool.fail_pipeline(pid, &e.to_string());
                self.drain();
            }
            (Op::Send { .. }, Ok(_)) => {}
            (Op::Send { pid: Some(pid), .. }, Err(e)) => {
                self.pool.fail_pipeline(pid, &e.to_string());
                self.drain();
            }
            (Op::Signal(pid, SignalCode::Terminate), result) => {
                if let Err(e) = result {
                    tracing::debug!(%pid, error = %e, "releasing a command");
                }
                self.commands.remove(&pid);
                self.events.push_back(ClientEvent::PipelineClosed(pid));
            }
            (Op::Signal(pid, _), Ok(_)) => self.events.push_back(ClientEvent::Stopping(pid)),
            (Op::Signal(pid, _), Err(e)) => tracing::warn!(%pid, error = %e, "stopping a command"),
            (Op::Disconnect(..), Ok(_)) => {
                self.epoch += 1;
                self.phase = Phase::Disconnected;
                self.events.push_back(ClientEvent::Disconnected);
            }
            (Op::Reconnect, Ok(_)) => {
                self.phase = Phase::Open;
                self.events.push_back(ClientEvent::Reconnected);
            }
            (Op::Disconnect(..), Err(e)) => {
                self.phase = Phase::Open;
                self.events.push_back(ClientEvent::OperationFailed(e.to_string()));
            }
            (Op::Reconnect, Err(e)) => {
                self.phase = Phase::Disconnected;
                self.events.push_back(ClientEvent::OperationFailed(e.to_string()));
            }
            (Op::Delete, result) => {
                if let Err(e) = result {
                    tracing::debug!(error = %e, "deleting the shell");
                }
                self.phase = Phase::Closed;
                self.pool.closed();
                self.drain();
                self.events.push_back(ClientEvent::SessionClosed);
            }
            (op, Err(e)) => {
                tracing::warn!(?op, error = %e, "winrm request failed");
                self.failure = Some(e.code());
                self.broken(&e.to_string());
            }
            (op, Ok(other)) => self.broken(&format!("the target answered {:?} to {op:?}", other.action())),
        }
    }

    /// The answer to a Receive: what it says of the command and the shell, and the PSRP data it carries, which
    /// the caller feeds with [`Shell::feed_received`] — after sending the next Receive, so that the target produces
    /// the next batch while this one is decoded.
    fn receive_done(&mut self, key: Option<Uuid>, epoch: u64, result: Result<Response, WinrmOpError>) -> Option<ReceiveResponse> {
        match result {
            Ok(Response::Receive(r)) => {
                if let (Some(pid), Some(state)) = (key, &r.command_state)
                    && state.state == crate::wsman::envelope::CommandStateKind::Done
                    && let Some(c) = self.commands.get_mut(&pid)
                {
                    c.done = true;
                }
                return Some(r);
            }
            Ok(other) => self.broken(&format!("the target answered {:?} to a Receive", other.action())),
            Err(e) => match e.kind() {
                Some(FaultKind::OperationTimeout) => {}
                // Sent before a disconnect: its fault is about that, not about the shell now (reconnected).
                _ if epoch != self.epoch => {}
                // Disconnected (by us, or by the server's own idle rules): the Receive ends.
                _ if matches!(self.phase, Phase::Disconnecting | Phase::Disconnected | Phase::Reconnecting | Phase::Closing | Phase::Closed) => {}
                Some(FaultKind::ShellDisconnected) => {
                    self.epoch += 1;
                    self.phase = Phase::Disconnected;
                    self.events.push_back(ClientEvent::Disconnected);
                }
                // A command released meanwhile.
                _ if key.is_some_and(|pid| self.commands.get(&pid).is_none_or(|c| c.closing || c.done)) => {}
                _ => {
                    self.failure = Some(e.code());
                    self.broken(&e.to_string());
                }
            },
        }
        None
    }

    /// A command the target reports Done whose pipeline never told this client its final state: it ended before
    /// this client connected to the shell (a relay that died between the end and its Signal left it there), and the
    /// state went to the previous client. It ends here, failed, saying so, rather than waiting for ever.
    fn ended_elsewhere(&mut self, key: Option<Uuid>) {
        let Some(pid) = key else { return };
        if self.commands.get(&pid).is_some_and(|c| c.done) && self.pool.pipeline_state(pid).is_some_and(|s| !s.is_terminal()) {
            tracing::info!(%pid, "a re-attached command had ended before this client connected");
            self.pool.fail_pipeline(pid, "The command had ended before this relay connected to the session: its final state, and any output not yet received, went to the client that held the session then.");
            self.drain();
        }
    }

    /// Feeds what a Receive brought.
    fn feed_received(&mut self, r: ReceiveResponse) {
        for s in r.streams.iter().filter(|s| !s.data.is_empty()) {
            if self.phase == Phase::Closed {
                return;
            }
            self.feed(&s.data);
        }
    }
}

impl Shell {
    /// Every handle is gone: a disconnected shell is left to run at the target (a later Connect picks it up);
    /// any other is closed.
    fn abandon(&mut self) {
        if matches!(self.phase, Phase::Disconnected | Phase::Disconnecting) {
            self.phase = Phase::Closed;
            self.ops.clear();
            self.events.push_back(ClientEvent::SessionClosed);
        } else {
            self.close();
        }
    }
}

impl Client for Shell {
    fn pool(&self) -> &RunspacePool {
        &self.pool
    }

    fn pool_mut(&mut self) -> &mut RunspacePool {
        &mut self.pool
    }

    fn open(&mut self) -> Result<(), ProtocolError> {
        self.pool.open()?;
        let data = self.take_pool_messages();
        self.shell = Some(ShellRef::new(self.resource_uri.clone(), upper(self.pool.id())));
        self.ops.push_back(Op::Create(data));
        Ok(())
    }

    fn create_pipeline(&mut self, id: Uuid, spec: &PipelineSpec) -> Result<(), ProtocolError> {
        if self.phase != Phase::Open {
            return Err(ProtocolError::State(format!("the shell is {:?}", self.phase)));
        }
        self.pool.create_pipeline(id, spec)
    }

    fn stop(&mut self, id: Uuid) {
        if self.commands.contains_key(&id) {
            self.ops.push_back(Op::Signal(id, SignalCode::PsStop));
        }
    }

    fn close_pipeline(&mut self, id: Uuid) {
        match self.commands.get_mut(&id) {
            Some(c) if !c.closing => {
                c.closing = true;
                self.ops.push_back(Op::Signal(id, SignalCode::Terminate));
            }
            Some(_) => {}
            None => self.events.push_back(ClientEvent::PipelineClosed(id)),
        }
    }

    fn close(&mut self) {
        if self.closing || self.phase == Phase::Closed {
            return;
        }
        self.closing = true;
        self.pool.closing();
        self.drain();
        if self.shell.is_some() && !matches!(self.phase, Phase::Closed) {
            self.pump();
            self.phase = Phase::Closing;
            self.ops.push_back(Op::Delete);
        } else {
            self.phase = Phase::Closed;
            self.pool.closed();
            self.drain();
            self.events.push_back(ClientEvent::SessionClosed);
        }
    }

    fn disconnect(&mut self, idle_timeout: Option<Duration>, buffer_mode: Option<OutputBufferingMode>) -> Result<(), Unsupported> {
        if self.phase == Phase::Open {
            self.phase = Phase::Disconnecting;
            let mode = buffer_mode.map(|m| match m {
                OutputBufferingMode::Block => BufferMode::Block,
                OutputBufferingMode::Drop => BufferMode::Drop,
            });
            self.ops.push_back(Op::Disconnect(idle_timeout, mode));
        } else {
            self.events.push_back(ClientEvent::OperationFailed(format!("the session is not connected ({:?})", self.phase)));
        }
        Ok(())
    }

    fn reconnect(&mut self) -> Result<(), Unsupported> {
        if self.phase == Phase::Disconnected {
            self.phase = Phase::Reconnecting;
            self.ops.push_back(Op::Reconnect);
        } else {
            self.events.push_back(ClientEvent::OperationFailed(format!("the session is not disconnected ({:?})", self.phase)));
        }
        Ok(())
    }

    fn failure(&self) -> Option<ErrorCode> {
        self.failure
    }

    fn shell(&self) -> Option<ShellRecord> {
        let shell = self.shell.as_ref()?;
        let shell_id = Uuid::parse_str(shell.shell_id()?).ok()?;
        let mut commands: Vec<Uuid> = self.commands.iter().filter(|(_, c)| !c.closing).map(|(id, _)| *id).collect();
        commands.sort();
        Some(ShellRecord {
            endpoint: self.config.to.clone(),
            resource_uri: shell.resource_uri.clone(),
            shell_id,
            wsman_session_id: self.config.session_id,
            commands,
        })
    }
}

/// Splits a packet of whole fragments into chunks of at most `max` bytes (a fragment larger than `max` alone).
fn split_fragments(data: &[u8], max: usize) -> Vec<Vec<u8>> {
    let mut chunks: Vec<Vec<u8>> = Vec::new();
    let mut rest = data;
    let mut current = Vec::new();
    while !rest.is_empty() {
        let len = match fragment::parse(rest) {
            Ok((_, after)) => rest.len() - after.len(),
            // Not fragments (cannot happen with the pool's own output): send it as it is.
            Err(_) => rest.len(),
        };
        if !current.is_empty() && current.len() + len > max {
            chunks.push(std::mem::take(&mut current));
        }
        current.extend_from_slice(&rest[..len]);
        rest = &rest[len..];
    }
    if !current.is_empty() || chunks.is_empty() {
        chunks.push(current);
    }
    chunks
}

type Answer = (WinrmClient, Result<Response, WinrmOpError>);
type Received = (Option<Uuid>, u64, Answer);

/// The Receives in flight, each a task of its own (on a multi-threaded runtime, the next batch is read and parsed on
/// one core while the last is decoded on the other), at most one per shell or command.
struct Receives {
    tasks: FuturesUnordered<tokio::task::JoinHandle<Received>>,
    keys: HashSet<Option<Uuid>>,
    /// Authenticated connections kept from earlier Receives.
    idle: Vec<WinrmClient>,
    options: WinrmOptions,
    timeout: Duration,
}

impl Receives {
    /// Sends the Receives `shell` wants that are not in flight.
    fn start(&mut self, shell: &mut Shell) {
        for key in shell.wanted_receives() {
            if self.keys.contains(&key) {
                continue;
            }
            let mut client = match self.idle.pop() {
                Some(c) => c,
                None => match WinrmClient::new(self.options.clone()) {
                    Ok(c) => c,
                    Err(e) => {
                        shell.broken(&e.to_string());
                        return;
                    }
                },
            };
            let Some(shell_ref) = shell.shell.clone() else { return };
            let (config, timeout, epoch) = (shell.config.clone(), self.timeout, shell.epoch);
            self.keys.insert(key);
            self.tasks.push(tokio::spawn(async move {
                let r = call(&mut client, &config, Request::receive(&shell_ref, key), timeout).await;
                (key, epoch, (client, r))
            }));
        }
    }

    /// A Receive came back: its connection is kept for the next.
    fn done(&mut self, key: Option<Uuid>, client: WinrmClient) {
        self.keys.remove(&key);
        if self.idle.len() < 4 {
            self.idle.push(client);
        }
    }
}

impl Drop for Receives {
    fn drop(&mut self) {
        for t in self.tasks.iter() {
            t.abort();
        }
    }
}
type ControlRequest = std::pin::Pin<Box<dyn std::future::Future<Output = (Op, Answer)> + Send>>;

async fn run(mut shell: Shell, target: WinrmTarget, control: WinrmClient, mut jobs: mpsc::Receiver<Job>, events: mpsc::Sender<ClientEvent>) {
    let request_timeout = target.options.request_timeout;
    let receive_timeout = target.operation_timeout + Duration::from_secs(30);
    let mut control = Some(control);
    let mut in_control: Option<ControlRequest> = None;
    let mut receives = Receives { tasks: FuturesUnordered::new(), keys: HashSet::new(), idle: Vec::new(), options: target.options.clone(), timeout: receive_timeout };
    let mut pending: VecDeque<ClientEvent> = VecDeque::new();
    let mut jobs_open = true;
    loop {
        shell.pump();
        if in_control.is_none()
            && let Some(op) = shell.ops.pop_front()
            && let Some(mut client) = control.take()
        {
            match shell.request(&op) {
                Some(request) => {
                    let config = shell.config.clone();
                    in_control = Some(Box::pin(async move {
                        let r = call(&mut client, &config, request, request_timeout).await;
                        (op, (client, r))
                    }));
                }
                None => control = Some(client),
            }
        }
        if pending.len() < MAX_PENDING_EVENTS {
            receives.start(&mut shell);
        }
        while let Some(e) = shell.events.pop_front() {
            pending.push_back(e);
        }
        // Ended, and told: the task stays for its handles' questions (why it failed) until they are gone.
        let finished = shell.phase == Phase::Closed && in_control.is_none();
        if finished && pending.is_empty() && !jobs_open {
            break;
        }
        tokio::select! {
            biased;
            job = jobs.recv(), if jobs_open => match job {
                Some(job) => job(&mut shell as &mut dyn Client),
                None => {
                    jobs_open = false;
                    shell.abandon();
                }
            },
            permit = events.reserve(), if !pending.is_empty() => match permit {
                Ok(permit) => {
                    if let Some(e) = pending.pop_front() {
                        permit.send(e);
                    }
                }
                Err(_) => {
                    pending.clear();
                    if jobs_open {
                        shell.close();
                    }
                    jobs_open = false;
                    if finished {
                        break;
                    }
                }
            },
            (op, (client, result)) = async { in_control.as_mut().expect("guarded").await }, if in_control.is_some() => {
                in_control = None;
                control = Some(client);
                shell.op_done(op, result);
            }
            Some(joined) = receives.tasks.next(), if !receives.tasks.is_empty() && pending.len() < MAX_PENDING_EVENTS => match joined {
                Ok((key, epoch, (client, result))) => {
                    receives.done(key, client);
                    if let Some(received) = shell.receive_done(key, epoch, result) {
                        // The next Receive first, then the decoding of this one.
                        if pending.len() < MAX_PENDING_EVENTS {
                            receives.start(&mut shell);
                        }
                        shell.feed_received(received);
                        shell.ended_elsewhere(key);
                    }
                }
                Err(e) => shell.broken(&format!("a Receive failed: {e}")),
            },
            // Nothing to do until a job or an answer comes.
            else => {
                if !jobs_open && in_control.is_none() && receives.tasks.is_empty() && pending.is_empty() {
                    break;
                }
            }
        }
    }
    tracing::debug!("winrm session task ended");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn large_packets_split_at_fragment_boundaries() {
        let mut data = Vec::new();
        for id in 1..=5u64 {
            fragment::write(&mut data, id, &[b'x'; 100], 64);
        }
        let chunks = split_fragments(&data, 150);
        assert!(chunks.len() > 1);
        assert_eq!(chunks.concat(), data, "nothing lost or reordered");
        for c in &chunks {
            assert!(c.len() <= 150, "{} bytes", c.len());
            let mut d = fragment::Defragmenter::new(1 << 20);
            // Each chunk is whole fragments.
            let mut rest = c.as_slice();
            while !rest.is_empty() {
                let (f, after) = fragment::parse(rest).expect("a whole fragment");
                let _ = d.push(f);
                rest = after;
            }
        }
        assert_eq!(split_fragments(&[], 10), vec![Vec::<u8>::new()]);
    }
}
