//! The client side of a runspace pool and its pipelines (MS-PSRP 3.1), sans-IO.
//!
//! Bytes from the transport go in with [`RunspacePool::receive`]; what to send comes out of
//! [`RunspacePool::poll_send`] (whole fragments, tagged with the pipeline they are for and the stream);
//! what happened comes out of [`RunspacePool::poll_event`]. Ids, keys and time come from the caller.
//! The transport's own commands (create a command, signal, close) are the transport's business: see
//! [`outofproc`](super::outofproc) for the SSH and local-process framing.

use std::collections::{HashMap, VecDeque};

use uuid::Uuid;

use crate::clixml::{DecodeError, Value, Version, decode_message_with, encode_message};

use super::crypto::{CryptoError, ExchangeKey, SessionKey, plain_secure_string, utf16le};
use super::fragment::{self, Defragmenter, FragmentError};
use super::host::{HostCall, HostMethod, HostResult, response_body};
use super::message::{Destination, Message, MessageError, MessageType};
use super::messages::{self as m, Capability, HostInfo, PipelineSpec, PipelineState, PoolState};

/// How a pool is opened.
#[derive(Clone, Debug)]
pub struct PoolConfig {
    /// The pool's id (RPID; the ShellId over WS-Management).
    pub id: Uuid,
    /// `MinRunspaces`
    pub min_runspaces: i32,
    /// `MaxRunspaces`
    pub max_runspaces: i32,
    /// What the client's host can do.
    pub host: HostInfo,
    /// `ApplicationArguments` (`$PSSenderInfo.ApplicationArguments` on the server).
    pub application_arguments: Option<Value>,
    /// The protocol version offered: 2.3 by default; 2.4 turns on plain SecureStrings if the server
    /// speaks 2.4 too.
    pub protocol: Version,
    /// Largest fragment sent, header included (32 KiB out of process).
    pub max_fragment: usize,
    /// Largest packet handed to the transport at once (whole fragments; at least one).
    pub max_packet: usize,
    /// Limits on what is received.
    pub limits: crate::clixml::Limits,
    /// Largest message reassembled from fragments.
    pub max_message: usize,
}

impl PoolConfig {
    /// Defaults for a pool with this id.
    pub fn new(id: Uuid) -> PoolConfig {
        PoolConfig {
            id,
            min_runspaces: 1,
            max_runspaces: 1,
            host: HostInfo::default(),
            application_arguments: None,
            protocol: m::PROTOCOL_VERSION,
            max_fragment: fragment::DEFAULT_MAX_FRAGMENT,
            max_packet: 8 * fragment::DEFAULT_MAX_FRAGMENT,
            limits: crate::clixml::Limits::default(),
            max_message: fragment::DEFAULT_MAX_MESSAGE,
        }
    }
}

/// The stream a packet travels on (MS-PSRP 3.1.5.3.5).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Stream {
    /// Everything but host responses.
    Default,
    /// Host responses.
    PromptResponse,
}

/// A packet of whole fragments for the transport.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outgoing {
    /// The pipeline it is for (CREATE_PIPELINE included), or `None` for the pool.
    pub pipeline: Option<Uuid>,
    /// The stream.
    pub stream: Stream,
    /// The fragments.
    pub data: Vec<u8>,
}

/// A record stream of a pipeline.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RecordKind {
    /// ERROR_RECORD: a non-terminating error.
    Error,
    /// WARNING_RECORD
    Warning,
    /// VERBOSE_RECORD
    Verbose,
    /// DEBUG_RECORD
    Debug,
    /// INFORMATION_RECORD (protocol 2.3+): also `Write-Host`.
    Information,
    /// PROGRESS_RECORD
    Progress,
}

impl From<RecordKind> for crate::api::RecordKind {
    fn from(kind: RecordKind) -> crate::api::RecordKind {
        match kind {
            RecordKind::Error => crate::api::RecordKind::Error,
            RecordKind::Warning => crate::api::RecordKind::Warning,
            RecordKind::Verbose => crate::api::RecordKind::Verbose,
            RecordKind::Debug => crate::api::RecordKind::Debug,
            RecordKind::Information => crate::api::RecordKind::Information,
            RecordKind::Progress => crate::api::RecordKind::Progress,
        }
    }
}

/// What happened.
#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    /// The pool's state changed; `error` is the server's error record, or a text made here.
    PoolState {
        /// The new state.
        state: PoolState,
        /// Why, when it broke.
        error: Option<Value>,
    },
    /// The server's SESSION_CAPABILITY arrived and the protocol version is agreed.
    Negotiated(Capability),
    /// APPLICATION_PRIVATE_DATA: among others the remote `$PSVersionTable` (`PSVersionTable`).
    ApplicationPrivateData(Value),
    /// RUNSPACEPOOL_INIT_DATA (after a connect).
    InitData {
        /// `MinRunspaces`
        min: i32,
        /// `MaxRunspaces`
        max: i32,
    },
    /// RUNSPACE_AVAILABILITY: the answer to a SET_MAX/MIN_RUNSPACES (a bool), GET_AVAILABLE_RUNSPACES
    /// (a count) or RESET_RUNSPACE_STATE (a bool) with that call id.
    Availability {
        /// The call id of the request.
        call_id: i64,
        /// `SetMinMaxRunspacesResponse`
        value: Value,
    },
    /// USER_EVENT (a forwarded PowerShell event).
    UserEvent(Value),
    /// A host call, from the pool (`pipeline: None`) or a pipeline.
    HostCall {
        /// The pipeline, if any.
        pipeline: Option<Uuid>,
        /// The call.
        call: HostCall,
    },
    /// The server asked for our public key (PUBLIC_KEY_REQUEST): call [`RunspacePool::start_key_exchange`].
    KeyRequested,
    /// The session key is in place: SecureStrings can travel.
    KeyExchanged,
    /// An output object (for GET_COMMAND_METADATA, the count and then the command metadata).
    Output {
        /// The pipeline.
        pipeline: Uuid,
        /// The object.
        value: Value,
    },
    /// A record on one of the other streams.
    Record {
        /// The pipeline.
        pipeline: Uuid,
        /// Which stream.
        kind: RecordKind,
        /// The record (an ErrorRecord, InformationalRecord, ProgressRecord, InformationRecord object).
        value: Value,
    },
    /// A pipeline's state changed; `error` is the terminating error of a Failed (or Stopped) pipeline.
    PipelineState {
        /// The pipeline.
        pipeline: Uuid,
        /// The new state.
        state: PipelineState,
        /// The error record, if any.
        error: Option<Value>,
    },
}

/// Why the pool could not go on.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ProtocolError {
    /// Bad fragments.
    #[error(transparent)]
    Fragment(#[from] FragmentError),
    /// A bad message header.
    #[error(transparent)]
    Message(#[from] MessageError),
    /// A message body that is not CLIXML.
    #[error("{message_type:?} message: {error}")]
    Decode {
        /// The message.
        message_type: MessageType,
        /// The decode error.
        error: DecodeError,
    },
    /// A message body that is CLIXML but not what the message needs.
    #[error("{message_type:?} message: {detail}")]
    Invalid {
        /// The message.
        message_type: MessageType,
        /// What was wrong.
        detail: String,
    },
    /// A message for another pool, or to the server.
    #[error("a message for {0} reached this client")]
    Misdirected(String),
    /// The server speaks a protocol this client does not.
    #[error("the server speaks PSRP protocol {0}, which this client does not support")]
    Version(Version),
    /// Something the pool cannot do in its state.
    #[error("{0}")]
    State(String),
    /// The key exchange or a SecureString failed.
    #[error(transparent)]
    Crypto(#[from] CryptoError),
}

struct Queued {
    pipeline: Option<Uuid>,
    stream: Stream,
    message: Vec<u8>,
}

/// A client runspace pool.
pub struct RunspacePool {
    config: PoolConfig,
    state: PoolState,
    /// The version agreed with the server (ours until its capability arrives).
    protocol: Version,
    next_object_id: u64,
    next_call_id: i64,
    defrag: Defragmenter,
    queue: VecDeque<Queued>,
    events: VecDeque<Event>,
    pipelines: HashMap<Uuid, PipelineState>,
    exchange_key: Option<ExchangeKey>,
    session_key: Option<SessionKey>,
    application_private_data: Option<Value>,
}

impl std::fmt::Debug for RunspacePool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunspacePool").field("id", &self.config.id).field("state", &self.state).field("protocol", &self.protocol).finish_non_exhaustive()
    }
}

impl RunspacePool {
    /// A pool that has not been opened yet.
    pub fn new(config: PoolConfig) -> RunspacePool {
        RunspacePool {
            protocol: config.protocol,
            defrag: Defragmenter::new(config.max_message),
            config,
            state: PoolState::BeforeOpen,
            next_object_id: 1,
            next_call_id: 1,
            queue: VecDeque::new(),
            events: VecDeque::new(),
            pipelines: HashMap::new(),
            exchange_key: None,
            session_key: None,
            application_private_data: None,
        }
    }

    /// The pool's id.
    pub fn id(&self) -> Uuid {
        self.config.id
    }

    /// The pool's state.
    pub fn state(&self) -> PoolState {
        self.state
    }

    /// The protocol version in use.
    pub fn protocol(&self) -> Version {
        self.protocol
    }

    /// The last APPLICATION_PRIVATE_DATA.
    pub fn application_private_data(&self) -> Option<&Value> {
        self.application_private_data.as_ref()
    }

    /// The remote `$PSVersionTable` (from APPLICATION_PRIVATE_DATA).
    pub fn ps_version_table(&self) -> Option<&Value> {
        self.application_private_data.as_ref()?.as_object()?.property("ApplicationPrivateData").and_then(|d| find_key(d, "PSVersionTable"))
    }

    /// A pipeline's last known state.
    pub fn pipeline_state(&self, id: Uuid) -> Option<PipelineState> {
        self.pipelines.get(&id).copied()
    }

    fn set_state(&mut self, state: PoolState, error: Option<Value>) {
        if self.state != state {
            self.state = state;
            self.events.push_back(Event::PoolState { state, error });
        }
    }

    fn queue(&mut self, pipeline: Option<Uuid>, stream: Stream, message_type: MessageType, pid: Uuid, body: Option<&Value>) {
        let data = match body {
            Some(v) => encode_message(v).unwrap_or_default().into_bytes(),
            None => Vec::new(),
        };
        let mut message = Vec::with_capacity(data.len() + super::message::HEADER_LEN);
        Message { destination: Destination::Server, message_type, rpid: self.config.id, pid, data: &data }.write(&mut message);
        self.queue.push_back(Queued { pipeline, stream, message });
    }

    fn queue_pool(&mut self, message_type: MessageType, body: &Value) {
        self.queue(None, Stream::Default, message_type, Uuid::nil(), Some(body));
    }

    fn require(&self, wanted: PoolState, what: &str) -> Result<(), ProtocolError> {
        if self.state == wanted {
            Ok(())
        } else {
            Err(ProtocolError::State(format!("cannot {what}: the runspace pool is {:?}", self.state)))
        }
    }

    /// Opens the pool: SESSION_CAPABILITY and INIT_RUNSPACEPOOL, sent together.
    pub fn open(&mut self) -> Result<(), ProtocolError> {
        self.require(PoolState::BeforeOpen, "open")?;
        let cap = m::session_capability(self.config.protocol);
        let init = m::init_runspace_pool(self.config.min_runspaces, self.config.max_runspaces, &self.config.host, self.config.application_arguments.clone());
        self.queue_pool(MessageType::SessionCapability, &cap);
        self.queue_pool(MessageType::InitRunspacePool, &init);
        self.set_state(PoolState::Opening, None);
        Ok(())
    }

    /// Connects to a pool another client left disconnected (WS-Management only): SESSION_CAPABILITY and
    /// CONNECT_RUNSPACEPOOL.
    pub fn connect(&mut self) -> Result<(), ProtocolError> {
        self.require(PoolState::BeforeOpen, "connect")?;
        let cap = m::session_capability(self.config.protocol);
        self.queue_pool(MessageType::SessionCapability, &cap);
        self.queue_pool(MessageType::ConnectRunspacePool, &m::connect_runspace_pool(None));
        self.set_state(PoolState::Connecting, None);
        Ok(())
    }

    /// Creates a pipeline with the caller's id. Its messages go to that pipeline's target.
    pub fn create_pipeline(&mut self, id: Uuid, spec: &PipelineSpec) -> Result<(), ProtocolError> {
        self.require(PoolState::Opened, "start a pipeline")?;
        if self.pipelines.contains_key(&id) {
            return Err(ProtocolError::State(format!("pipeline {id} exists already")));
        }
        let body = m::create_pipeline(spec, &self.config.host, self.protocol);
        self.queue(Some(id), Stream::Default, MessageType::CreatePipeline, id, Some(&body));
        self.pipelines.insert(id, PipelineState::NotStarted);
        Ok(())
    }

    /// Asks for the metadata of commands (implicit remoting): the answers come as [`Event::Output`] on
    /// pipeline `id`, a `CommandMetadataCount` first.
    pub fn get_command_metadata(&mut self, id: Uuid, names: &[&str]) -> Result<(), ProtocolError> {
        self.get_command_metadata_in(id, names, &[])
    }

    /// [`RunspacePool::get_command_metadata`] of the commands of these modules (`Namespace`; none: any module),
    /// as Import-PSSession -Module asks.
    pub fn get_command_metadata_in(&mut self, id: Uuid, names: &[&str], namespaces: &[&str]) -> Result<(), ProtocolError> {
        self.require(PoolState::Opened, "get command metadata")?;
        let body = m::get_command_metadata_in(names, namespaces);
        self.queue(Some(id), Stream::Default, MessageType::GetCommandMetadata, id, Some(&body));
        self.pipelines.insert(id, PipelineState::NotStarted);
        Ok(())
    }

    fn require_pipeline(&self, id: Uuid) -> Result<(), ProtocolError> {
        match self.pipelines.get(&id) {
            Some(s) if !s.is_terminal() => Ok(()),
            Some(s) => Err(ProtocolError::State(format!("pipeline {id} has finished ({s:?})"))),
            None => Err(ProtocolError::State(format!("no pipeline {id}"))),
        }
    }

    /// Takes over a pipeline that runs at the server already (connected after a disconnect, WS-Management):
    /// its messages are accepted from now on.
    pub fn adopt_pipeline(&mut self, id: Uuid) {
        self.pipelines.entry(id).or_insert(PipelineState::Running);
    }

    /// The transport could not carry a pipeline's messages: it fails with `reason` (an event says so).
    pub fn fail_pipeline(&mut self, id: Uuid, reason: &str) {
        if self.pipelines.get(&id).is_some_and(|s| !s.is_terminal()) {
            self.pipelines.insert(id, PipelineState::Failed);
            self.events.push_back(Event::PipelineState { pipeline: id, state: PipelineState::Failed, error: Some(Value::string(reason)) });
        }
    }

    /// Sends one input object to a pipeline created with `no_input: false`.
    pub fn send_input(&mut self, id: Uuid, value: &Value) -> Result<(), ProtocolError> {
        self.require_pipeline(id)?;
        self.queue(Some(id), Stream::Default, MessageType::PipelineInput, id, Some(value));
        Ok(())
    }

    /// Ends a pipeline's input.
    pub fn end_input(&mut self, id: Uuid) -> Result<(), ProtocolError> {
        self.require_pipeline(id)?;
        self.queue(Some(id), Stream::Default, MessageType::EndOfPipelineInput, id, None);
        Ok(())
    }

    /// Answers a host call (nothing is sent for a void method).
    pub fn host_response(&mut self, pipeline: Option<Uuid>, call: &HostCall, result: HostResult) -> Result<(), ProtocolError> {
        if call.method.is_void() {
            return Ok(());
        }
        let body = response_body(call.call_id, call.method, &result);
        let (message_type, pid) = match pipeline {
            Some(p) => (MessageType::PipelineHostResponse, p),
            None => (MessageType::RunspacePoolHostResponse, Uuid::nil()),
        };
        self.queue(pipeline, Stream::PromptResponse, message_type, pid, Some(&body));
        Ok(())
    }

    fn call_id(&mut self) -> i64 {
        let id = self.next_call_id;
        self.next_call_id += 1;
        id
    }

    /// SET_MAX_RUNSPACES; the answer is an [`Event::Availability`] with the returned call id.
    pub fn set_max_runspaces(&mut self, count: i32) -> Result<i64, ProtocolError> {
        self.require(PoolState::Opened, "set the runspace count")?;
        let ci = self.call_id();
        self.queue_pool(MessageType::SetMaxRunspaces, &m::set_runspaces(true, count, ci));
        Ok(ci)
    }

    /// SET_MIN_RUNSPACES.
    pub fn set_min_runspaces(&mut self, count: i32) -> Result<i64, ProtocolError> {
        self.require(PoolState::Opened, "set the runspace count")?;
        let ci = self.call_id();
        self.queue_pool(MessageType::SetMinRunspaces, &m::set_runspaces(false, count, ci));
        Ok(ci)
    }

    /// GET_AVAILABLE_RUNSPACES.
    pub fn get_available_runspaces(&mut self) -> Result<i64, ProtocolError> {
        self.require(PoolState::Opened, "count runspaces")?;
        let ci = self.call_id();
        self.queue_pool(MessageType::GetAvailableRunspaces, &m::call_id_only(ci));
        Ok(ci)
    }

    /// RESET_RUNSPACE_STATE (protocol 2.3+).
    pub fn reset_runspace_state(&mut self) -> Result<i64, ProtocolError> {
        self.require(PoolState::Opened, "reset the runspace")?;
        if self.protocol < Version::new(2, 3) {
            return Err(ProtocolError::State(format!("the server speaks protocol {}; resetting needs 2.3", self.protocol)));
        }
        let ci = self.call_id();
        self.queue_pool(MessageType::ResetRunspaceState, &m::call_id_only(ci));
        Ok(ci)
    }

    /// Whether SecureStrings travel as plain UTF-16 (both sides at protocol 2.4 or later).
    pub fn plain_secure_strings(&self) -> bool {
        self.protocol >= Version::new(2, 4)
    }

    /// Whether a SecureString can be sent now (the key is exchanged, or none is needed).
    pub fn can_send_secure_strings(&self) -> bool {
        self.plain_secure_strings() || self.session_key.is_some()
    }

    /// Sends our public key (PUBLIC_KEY). Needed at protocol 2.2/2.3 before any SecureString travels,
    /// a credential in a host answer included; the server never asks first at those versions.
    pub fn start_key_exchange(&mut self, key: ExchangeKey) -> Result<(), ProtocolError> {
        if self.plain_secure_strings() {
            self.events.push_back(Event::KeyExchanged);
            return Ok(());
        }
        let body = m::public_key(&key.public_blob());
        self.exchange_key = Some(key);
        self.queue_pool(MessageType::PublicKey, &body);
        Ok(())
    }

    /// The `<SS>` bytes for `text`.
    pub fn secure_string(&self, text: &str) -> Result<Vec<u8>, CryptoError> {
        if self.plain_secure_strings() {
            return Ok(plain_secure_string(text));
        }
        Ok(self.session_key.as_ref().ok_or(CryptoError::NoKey)?.encrypt(text))
    }

    /// The text of a received `<SS>`.
    pub fn reveal(&self, secure: &[u8]) -> Result<String, CryptoError> {
        if self.plain_secure_strings() {
            return utf16le(secure);
        }
        self.session_key.as_ref().ok_or(CryptoError::NoKey)?.decrypt(secure)
    }

    /// The transport is gone or broke: the pool is Broken and every running pipeline Failed.
    pub fn broken(&mut self, reason: &str) {
        if matches!(self.state, PoolState::Closed | PoolState::Broken) {
            return;
        }
        let error = Value::string(reason);
        let running: Vec<Uuid> = self.pipelines.iter().filter(|(_, s)| !s.is_terminal()).map(|(id, _)| *id).collect();
        for id in running {
            self.pipelines.insert(id, PipelineState::Failed);
            self.events.push_back(Event::PipelineState { pipeline: id, state: PipelineState::Failed, error: Some(error.clone()) });
        }
        self.set_state(PoolState::Broken, Some(error));
    }

    /// The transport closed the pool cleanly.
    pub fn closed(&mut self) {
        self.set_state(PoolState::Closed, None);
    }

    /// Marks the pool Closing (the transport sends its close).
    pub fn closing(&mut self) {
        if !matches!(self.state, PoolState::Closed | PoolState::Broken) {
            self.set_state(PoolState::Closing, None);
        }
    }

    /// The next packet to send: queued messages for the same pipeline and stream, fragmented.
    pub fn poll_send(&mut self) -> Option<Outgoing> {
        let first = self.queue.pop_front()?;
        let (pipeline, stream) = (first.pipeline, first.stream);
        let mut data = Vec::new();
        let mut next = Some(first);
        while let Some(q) = next {
            let id = self.next_object_id;
            self.next_object_id += 1;
            fragment::write(&mut data, id, &q.message, self.config.max_fragment);
            next = match self.queue.front() {
                Some(f) if f.pipeline == pipeline && f.stream == stream && data.len() + f.message.len() + fragment::HEADER_LEN <= self.config.max_packet => {
                    self.queue.pop_front()
                }
                _ => None,
            };
        }
        Some(Outgoing { pipeline, stream, data })
    }

    /// Whether anything waits in [`RunspacePool::poll_send`].
    pub fn has_outgoing(&self) -> bool {
        !self.queue.is_empty()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// Feeds a packet of fragments from the server. An error breaks the pool (an event says so too).
    pub fn receive(&mut self, data: &[u8]) -> Result<(), ProtocolError> {
        let result = self.receive_inner(data);
        if let Err(e) = &result {
            self.broken(&e.to_string());
        }
        result
    }

    fn receive_inner(&mut self, data: &[u8]) -> Result<(), ProtocolError> {
        for message in self.defrag.feed(data)? {
            self.handle(&message)?;
        }
        Ok(())
    }

    fn handle(&mut self, bytes: &[u8]) -> Result<(), ProtocolError> {
        let msg = Message::parse(bytes)?;
        if msg.destination != Destination::Client {
            return Err(ProtocolError::Misdirected("the server".into()));
        }
        // Windows servers send their SESSION_CAPABILITY with a nil pool id (seen in every recording).
        if msg.rpid != self.config.id && !msg.rpid.is_nil() {
            return Err(ProtocolError::Misdirected(format!("runspace pool {}", msg.rpid)));
        }
        let t = msg.message_type;
        let limits = self.config.limits;
        let body = || -> Result<Value, ProtocolError> {
            decode_message_with(msg.data, limits).map_err(|error| ProtocolError::Decode { message_type: t, error })
        };
        let invalid = |detail: String| ProtocolError::Invalid { message_type: t, detail };
        let pid = msg.pid;
        match t {
            MessageType::SessionCapability => {
                let cap = m::parse_capability(&body()?).map_err(invalid)?;
                if cap.protocol.major != 2 {
                    return Err(ProtocolError::Version(cap.protocol));
                }
                self.protocol = self.config.protocol.min(cap.protocol);
                self.events.push_back(Event::Negotiated(cap));
            }
            MessageType::ApplicationPrivateData => {
                let v = body()?;
                self.application_private_data = Some(v.clone());
                self.events.push_back(Event::ApplicationPrivateData(v));
            }
            MessageType::RunspacePoolState => {
                let (n, error) = m::parse_state(&body()?, "RunspaceState").map_err(invalid)?;
                let state = PoolState::from_i32(n).ok_or_else(|| invalid(format!("unknown runspace pool state {n}")))?;
                if state == PoolState::Broken || state == PoolState::Closed {
                    // Pipelines cannot outlive their pool.
                    let reason = error.clone().unwrap_or_else(|| Value::string(format!("the runspace pool is {state:?}")));
                    let running: Vec<Uuid> = self.pipelines.iter().filter(|(_, s)| !s.is_terminal()).map(|(id, _)| *id).collect();
                    for id in running {
                        self.pipelines.insert(id, PipelineState::Failed);
                        self.events.push_back(Event::PipelineState { pipeline: id, state: PipelineState::Failed, error: Some(reason.clone()) });
                    }
                }
                self.set_state(state, error);
            }
            MessageType::RunspacePoolInitData => {
                let v = body()?;
                let o = v.as_object().ok_or_else(|| invalid("not an object".into()))?;
                let get = |n: &str| o.property(n).and_then(Value::as_i64).map(|v| v as i32).ok_or_else(|| invalid(format!("no {n}")));
                self.events.push_back(Event::InitData { min: get("MinRunspaces")?, max: get("MaxRunspaces")? });
                // A connect is complete with the pool's init data (PowerShell's client sets Opened here too).
                if self.state == PoolState::Connecting {
                    self.set_state(PoolState::Opened, None);
                }
            }
            MessageType::RunspaceAvailability => {
                let v = body()?;
                let o = v.as_object().ok_or_else(|| invalid("not an object".into()))?;
                let call_id = o.property("ci").and_then(Value::as_i64).ok_or_else(|| invalid("no ci".into()))?;
                let value = o.property("SetMinMaxRunspacesResponse").cloned().unwrap_or(Value::Nil);
                self.events.push_back(Event::Availability { call_id, value });
            }
            MessageType::UserEvent => self.events.push_back(Event::UserEvent(body()?)),
            MessageType::PublicKeyRequest => self.events.push_back(Event::KeyRequested),
            MessageType::EncryptedSessionKey => {
                let blob = m::parse_encrypted_session_key(&body()?).map_err(invalid)?;
                let key = self.exchange_key.as_ref().ok_or_else(|| invalid("a session key without a key exchange".into()))?;
                self.session_key = Some(key.session_key(&blob)?);
                self.exchange_key = None;
                self.events.push_back(Event::KeyExchanged);
            }
            MessageType::RunspacePoolHostCall | MessageType::PipelineHostCall => {
                let call = HostCall::parse(&body()?).map_err(invalid)?;
                let pipeline = (t == MessageType::PipelineHostCall).then_some(pid);
                self.events.push_back(Event::HostCall { pipeline, call });
            }
            MessageType::PipelineOutput => {
                self.running(pid);
                self.events.push_back(Event::Output { pipeline: pid, value: body()? });
            }
            MessageType::ErrorRecord
            | MessageType::WarningRecord
            | MessageType::VerboseRecord
            | MessageType::DebugRecord
            | MessageType::InformationRecord
            | MessageType::ProgressRecord => {
                let kind = match t {
                    MessageType::ErrorRecord => RecordKind::Error,
                    MessageType::WarningRecord => RecordKind::Warning,
                    MessageType::VerboseRecord => RecordKind::Verbose,
                    MessageType::DebugRecord => RecordKind::Debug,
                    MessageType::InformationRecord => RecordKind::Information,
                    _ => RecordKind::Progress,
                };
                self.running(pid);
                self.events.push_back(Event::Record { pipeline: pid, kind, value: body()? });
            }
            MessageType::PipelineState => {
                let (n, error) = m::parse_state(&body()?, "PipelineState").map_err(invalid)?;
                let state = PipelineState::from_i32(n).ok_or_else(|| invalid(format!("unknown pipeline state {n}")))?;
                self.pipelines.insert(pid, state);
                self.events.push_back(Event::PipelineState { pipeline: pid, state, error });
            }
            other => return Err(ProtocolError::Invalid { message_type: other, detail: "a client never receives this message".into() }),
        }
        Ok(())
    }

    /// A pipeline that produces something is running (servers send no Running state by themselves).
    fn running(&mut self, pid: Uuid) {
        if let Some(s @ PipelineState::NotStarted) = self.pipelines.get_mut(&pid) {
            *s = PipelineState::Running;
        }
    }
}

/// The value under `key` in a PSPrimitiveDictionary (a `<DCT>`), looking through nested ones.
fn find_key<'a>(v: &'a Value, key: &str) -> Option<&'a Value> {
    let crate::clixml::Content::Dict(entries) = &v.as_object()?.content else { return None };
    entries.iter().find(|(k, _)| k.as_str().is_some_and(|k| k.eq_ignore_ascii_case(key))).map(|(_, v)| v)
}

/// Whether the method asks for a SecureString back (so a key exchange must come first).
pub fn needs_secure_string(method: HostMethod) -> bool {
    matches!(method, HostMethod::ReadLineAsSecureString | HostMethod::PromptForCredential1 | HostMethod::PromptForCredential2 | HostMethod::Prompt)
}
