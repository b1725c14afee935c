//! The envelopes of PowerShell Remoting over WinRM: every request the client sends, built as text, and every
//! response, parsed into typed structs (MS-WSMV 3.1.4, MS-PSRP 3.1.5.3, `protocol.md` §4 and §7).
//!
//! Requests are laid out the way pypsrp 0.9.1 sends them, which `../shared/fixtures/winrm-recorded` shows Windows
//! Server 2008 R2 to 2025 answering: the headers in the order `wsa:Action`, `wsmv:DataLocale`, `wsman:Locale`,
//! `wsman:MaxEnvelopeSize`, `wsa:MessageID`, `wsman:OperationTimeout`, `wsa:ReplyTo`, `wsman:ResourceURI`,
//! `wsmv:SessionId`, `wsa:To`, then `wsman:OptionSet` and `wsman:SelectorSet`; ids as upper-case GUIDs. Where
//! PowerShell itself differs, PowerShell wins: a pipeline is stopped with its `powershell/signal/crtl_c` (sic), which
//! is what the PowerShell plugin compares against; any other code sent to a command closes it.
//!
//! A request is a [`Request`] (action, resource URI, selectors, options, [`Body`]), made by one of its constructors
//! and written by [`Request::to_xml`] with the client's [`ClientConfig`] and a fresh MessageID. [`Request::parse`]
//! reads one back (tests replay recorded traffic with it). [`parse_response`] reads any response; a SOAP fault comes
//! back as [`WsmanError::Fault`].
//!
//! WinRM's configuration resources (`winrm/config`, `…/service`, `…/winrs`, `…/plugin?Name=`) are read with
//! [`Request::get_resource`] and changed with [`Request::put_resource`]; `config.rs` reads their settings and edits
//! them.
//!
//! Sizing: a PSRP fragment travels base64-encoded in `creationXml`, `rsp:Arguments`, `rsp:Stream` or `connectXml`,
//! and the whole envelope must stay within the server's `MaxEnvelopeSize` (`winrm/config` MaxEnvelopeSizekb × 1024,
//! read with [`Request::get_config`]; 150 KiB on Server 2008 R2, 500 KiB later). [`max_fragment_size`] gives the
//! largest fragment that fits; see there for the formula.

use std::fmt;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use psgate_shared::psrp::fragment::HEADER_LEN;
use uuid::Uuid;

use super::config::ConfigResource;
use super::xml::{Document, Element, is_xml_space, push_attr, push_text};
use super::{WsmanError, WsmanFault, ns};

/// `wsa:ReplyTo/wsa:Address`: answer on the same HTTP connection.
pub const ANONYMOUS: &str = "http://schemas.xmlsoap.org/ws/2004/08/addressing/role/anonymous";
/// The resource URI of a PowerShell session configuration is this prefix and the configuration's name.
pub const POWERSHELL_URI_PREFIX: &str = "http://schemas.microsoft.com/powershell/";
/// The configuration PowerShell uses when none is named.
pub const DEFAULT_CONFIGURATION: &str = "Microsoft.PowerShell";
/// Shells, for Enumerate and for WS-Transfer Get of one shell.
pub const SHELL_URI: &str = "http://schemas.microsoft.com/wbem/wsman/1/windows/shell";
/// The commands of shells, for Enumerate.
pub const COMMAND_URI: &str = "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/Command";
/// WinRM's configuration, for WS-Transfer Get.
pub const CONFIG_URI: &str = "http://schemas.microsoft.com/wbem/wsman/1/config";
/// The Enumerate filter dialect that selects a shell's commands by ShellId.
pub const SELECTOR_FILTER: &str = "http://schemas.dmtf.org/wbem/wsman/1/wsman/SelectorFilter";
/// The `protocolversion` option PowerShell 5.1 and 7 send on Create and Connect (MS-PSRP 3.1.5.3.1).
pub const PROTOCOL_VERSION: &str = "2.3";
/// The `MaxEnvelopeSize` to send before the server's is known: 150 KiB, which every Windows version accepts.
pub const DEFAULT_MAX_ENVELOPE_SIZE: u32 = 153_600;
/// pypsrp's `OperationTimeout`; below the server's default MaxTimeoutms (60 s).
pub const DEFAULT_OPERATION_TIMEOUT: Duration = Duration::from_secs(20);
/// pypsrp's `wsman:MaxElements` for enumerations (Windows' MaxBatchItems default is 32000).
pub const ENUMERATE_MAX_ELEMENTS: u32 = 32_000;
/// What pypsrp adds to the measured envelope to cover options and selectors it did not measure (see
/// [`max_fragment_size`]).
pub const ENVELOPE_MARGIN: usize = 256;
const COMMAND_STATE_PREFIX: &str = "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/CommandState/";

/// The resource URI of a session configuration: a configuration name gets PowerShell's prefix; a full URI (as
/// PowerShell's `-ConfigurationName` also accepts) is used as it is. JEA endpoints are configurations like any other.
pub fn configuration_uri(configuration: &str) -> String {
    if configuration.starts_with("http://") || configuration.starts_with("https://") {
        configuration.to_owned()
    } else {
        format!("{POWERSHELL_URI_PREFIX}{configuration}")
    }
}

/// A WS-Management operation; the response's action is the request's with `Response` appended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Action {
    Get,
    /// WS-Transfer Put: replaces a resource (a configuration resource) with the representation sent.
    Put,
    Create,
    Delete,
    Enumerate,
    Pull,
    Command,
    Send,
    Receive,
    Signal,
    Disconnect,
    Reconnect,
    Connect,
}

const ACTIONS: [(Action, &str, &str); 13] = [
    (
        Action::Get,
        "http://schemas.xmlsoap.org/ws/2004/09/transfer/Get",
        "http://schemas.xmlsoap.org/ws/2004/09/transfer/GetResponse",
    ),
    (
        Action::Put,
        "http://schemas.xmlsoap.org/ws/2004/09/transfer/Put",
        "http://schemas.xmlsoap.org/ws/2004/09/transfer/PutResponse",
    ),
    (
        Action::Create,
        "http://schemas.xmlsoap.org/ws/2004/09/transfer/Create",
        "http://schemas.xmlsoap.org/ws/2004/09/transfer/CreateResponse",
    ),
    (
        Action::Delete,
        "http://schemas.xmlsoap.org/ws/2004/09/transfer/Delete",
        "http://schemas.xmlsoap.org/ws/2004/09/transfer/DeleteResponse",
    ),
    (
        Action::Enumerate,
        "http://schemas.xmlsoap.org/ws/2004/09/enumeration/Enumerate",
        "http://schemas.xmlsoap.org/ws/2004/09/enumeration/EnumerateResponse",
    ),
    (
        Action::Pull,
        "http://schemas.xmlsoap.org/ws/2004/09/enumeration/Pull",
        "http://schemas.xmlsoap.org/ws/2004/09/enumeration/PullResponse",
    ),
    (
        Action::Command,
        "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/Command",
        "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/CommandResponse",
    ),
    (
        Action::Send,
        "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/Send",
        "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/SendResponse",
    ),
    (
        Action::Receive,
        "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/Receive",
        "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/ReceiveResponse",
    ),
    (
        Action::Signal,
        "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/Signal",
        "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/SignalResponse",
    ),
    (
        Action::Disconnect,
        "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/Disconnect",
        "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/DisconnectResponse",
    ),
    (
        Action::Reconnect,
        "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/Reconnect",
        "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/ReconnectResponse",
    ),
    (
        Action::Connect,
        "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/Connect",
        "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/ConnectResponse",
    ),
];

impl Action {
    /// The request's `wsa:Action`.
    pub fn uri(self) -> &'static str {
        ACTIONS.iter().find(|(a, _, _)| *a == self).map_or("", |e| e.1)
    }

    /// The response's `wsa:Action`.
    pub fn response_uri(self) -> &'static str {
        ACTIONS.iter().find(|(a, _, _)| *a == self).map_or("", |e| e.2)
    }

    /// The action a request's `wsa:Action` names.
    pub fn from_uri(uri: &str) -> Option<Action> {
        ACTIONS.iter().find(|e| e.1 == uri).map(|e| e.0)
    }

    /// The action a response's `wsa:Action` answers.
    pub fn from_response_uri(uri: &str) -> Option<Action> {
        ACTIONS.iter().find(|e| e.2 == uri).map(|e| e.0)
    }
}

/// What every request of one client carries in its headers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientConfig {
    /// `wsa:To`: the endpoint, e.g. `https://srv01:5986/wsman`.
    pub to: String,
    /// `wsmv:SessionId`: one per client, the same on every request, so that the server can tell a Reconnect from the
    /// same client from a Connect by another (MS-PSRP 3.1.4.9). Keep it to reconnect.
    pub session_id: Uuid,
    /// `wsman:MaxEnvelopeSize` in bytes: the largest response the server may send, and what fragments are sized
    /// against. Default [`DEFAULT_MAX_ENVELOPE_SIZE`]; set it from [`ServerConfig::max_envelope_size`].
    pub max_envelope_size: u32,
    /// `wsman:OperationTimeout`, default 20 s. Keep it below the server's MaxTimeoutms (60 s by default); a Receive
    /// that times out is answered with [`super::FaultKind::OperationTimeout`] and sent again.
    pub operation_timeout: Duration,
    /// `wsman:Locale`: the language of the server's messages. Default `en-US`.
    pub locale: String,
    /// `wsmv:DataLocale`: how numbers and dates are formatted. Default `en-US`.
    pub data_locale: String,
}

impl ClientConfig {
    /// A client with pypsrp's defaults: 150 KiB envelopes, a 20 s operation timeout, `en-US`.
    pub fn new(to: impl Into<String>, session_id: Uuid) -> ClientConfig {
        ClientConfig {
            to: to.into(),
            session_id,
            max_envelope_size: DEFAULT_MAX_ENVELOPE_SIZE,
            operation_timeout: DEFAULT_OPERATION_TIMEOUT,
            locale: "en-US".to_owned(),
            data_locale: "en-US".to_owned(),
        }
    }

    /// The largest PSRP fragment (header included) that any request to `shell` can carry: the smallest room left by
    /// the envelopes that carry fragments (Create, Command, Send, Connect), each measured with this configuration.
    /// Use it as the engine's `max_fragment` and `max_packet`.
    pub fn max_fragment_size(&self, shell: &ShellRef) -> Result<usize, WsmanError> {
        let id = Uuid::from_u128(u128::MAX);
        let skeletons = [
            Request::create_pool(&shell.resource_uri, id, &[], Some(Duration::from_secs(u64::from(u32::MAX)))),
            Request::command(shell, id, &[]),
            Request::send(shell, InputStream::Stdin, Some(id), &[]),
            Request::send(shell, InputStream::Pr, Some(id), &[]),
            Request::connect_pool(shell, &[]),
        ];
        let overhead = skeletons.iter().map(|r| r.to_xml(self, id).len()).max().unwrap_or_default();
        max_fragment_size(self.max_envelope_size as usize, overhead)
    }
}

/// The largest PSRP fragment, its 21-byte header included, that fits an envelope of `max_envelope_size` bytes whose
/// own text (everything but the base64 payload) is `overhead` bytes.
///
/// pypsrp (`WSMan._calc_envelope_size`) measures a Send skeleton and computes
/// `⌊(MaxEnvelopeSize − (len(skeleton) + 256)) / 4 × 3⌋`: the room left after the envelope and a 256-byte margin,
/// times ¾ because base64 turns 3 bytes into 4 characters; its fragmenter then keeps 21 bytes of that for the
/// fragment header. This does the same with [`ENVELOPE_MARGIN`], rounded down to whole base64 quanta
/// (`⌊room / 4⌋ × 3`), so the encoded fragment never exceeds the room, where pypsrp's rounding can exceed it by up to
/// 3 characters (which its margin absorbs). [`ClientConfig::max_fragment_size`] measures the largest envelope that
/// carries fragments instead of only a Send.
pub fn max_fragment_size(max_envelope_size: usize, overhead: usize) -> Result<usize, WsmanError> {
    let room = max_envelope_size.saturating_sub(overhead.saturating_add(ENVELOPE_MARGIN));
    let size = room / 4 * 3;
    if size <= HEADER_LEN {
        return Err(WsmanError::EnvelopeTooSmall { max_envelope_size, overhead });
    }
    Ok(size)
}

/// A `wsman:Selector`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Selector {
    pub name: String,
    pub value: String,
}

impl Selector {
    pub fn new(name: impl Into<String>, value: impl Into<String>) -> Selector {
        Selector { name: name.into(), value: value.into() }
    }
}

/// A `wsman:Option` of the `OptionSet`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WsmanOption {
    pub name: String,
    pub value: String,
    /// `MustComply="true"`: the server must fail rather than ignore the option.
    pub must_comply: bool,
}

impl WsmanOption {
    pub fn new(name: impl Into<String>, value: impl Into<String>) -> WsmanOption {
        WsmanOption { name: name.into(), value: value.into(), must_comply: false }
    }

    /// The same option with `MustComply="true"`.
    pub fn must_comply(mut self) -> WsmanOption {
        self.must_comply = true;
        self
    }
}

/// The shell (runspace pool) requests address: its resource URI and the selectors from its ResourceCreated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShellRef {
    pub resource_uri: String,
    pub selectors: Vec<Selector>,
}

impl ShellRef {
    /// The shell `shell_id` of the configuration `resource_uri` (see [`configuration_uri`]).
    pub fn new(resource_uri: impl Into<String>, shell_id: impl Into<String>) -> ShellRef {
        ShellRef { resource_uri: resource_uri.into(), selectors: vec![Selector::new("ShellId", shell_id)] }
    }

    /// The shell a CreateResponse describes, with the server's selectors kept as they are (MS-WSMV 3.1.4.5: use
    /// the EPR the server returned); `resource_uri` is the Create's, used when the response names none.
    pub fn from_created(resource_uri: &str, created: &CreateResponse) -> ShellRef {
        let mut selectors = created.selectors.clone();
        if selectors.is_empty()
            && let Some(id) = created.shell.as_ref().map(|s| s.shell_id.clone())
        {
            selectors.push(Selector::new("ShellId", id));
        }
        ShellRef { resource_uri: created.resource_uri.clone().unwrap_or_else(|| resource_uri.to_owned()), selectors }
    }

    /// The `ShellId` selector.
    pub fn shell_id(&self) -> Option<&str> {
        self.selectors.iter().find(|s| s.name == "ShellId").map(|s| s.value.as_str())
    }
}

/// The input streams of a PowerShell shell.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InputStream {
    /// PSRP data.
    Stdin,
    /// Answers to host calls ("prompt response"), MS-PSRP 3.1.5.3.5.
    Pr,
}

impl InputStream {
    pub fn as_str(self) -> &'static str {
        match self {
            InputStream::Stdin => "stdin",
            InputStream::Pr => "pr",
        }
    }
}

/// A Signal's `rsp:Code`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SignalCode {
    /// `powershell/signal/crtl_c` (sic): stop the pipeline. PowerShell's client sends this spelling (MS-PSRP
    /// 3.1.5.3.9) and its plugin compares ordinally; pypsrp's `…/ctrl_c` would close the command instead.
    PsStop,
    /// `http://schemas.microsoft.com/wbem/wsman/1/windows/shell/signal/terminate`: release a finished command
    /// (MS-WSMV 2.2.5.6; pypsrp writes `…/Terminate`).
    Terminate,
    /// `…/windows/shell/signal/ctrl_c`: Ctrl+C for a WinRS (cmd) command.
    CtrlC,
    /// `…/windows/shell/signal/ctrl_break`.
    CtrlBreak,
    /// Any other code, as sent.
    Other(String),
}

impl SignalCode {
    const KNOWN: [(&'static str, SignalCode); 4] = [
        ("powershell/signal/crtl_c", SignalCode::PsStop),
        ("http://schemas.microsoft.com/wbem/wsman/1/windows/shell/signal/terminate", SignalCode::Terminate),
        ("http://schemas.microsoft.com/wbem/wsman/1/windows/shell/signal/ctrl_c", SignalCode::CtrlC),
        ("http://schemas.microsoft.com/wbem/wsman/1/windows/shell/signal/ctrl_break", SignalCode::CtrlBreak),
    ];

    /// The code as sent.
    pub fn as_str(&self) -> &str {
        match self {
            SignalCode::Other(s) => s,
            known => Self::KNOWN.iter().find(|(_, c)| c == known).map_or("", |(s, _)| s),
        }
    }

    /// Reads a code; only an exact match is a known one (servers compare these ordinally).
    pub fn parse(code: &str) -> SignalCode {
        Self::KNOWN
            .iter()
            .find(|(s, _)| *s == code)
            .map_or_else(|| SignalCode::Other(code.to_owned()), |(_, c)| c.clone())
    }
}

/// What the server does with a disconnected shell's output once its buffer is full (MS-WSMV 2.2.4.15,
/// `OutputBufferingModeEnumeration`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BufferMode {
    /// Suspend the pipeline until a client reconnects (the server's default).
    Block,
    /// Keep running and discard the oldest output.
    Drop,
}

impl BufferMode {
    pub fn as_str(self) -> &'static str {
        match self {
            BufferMode::Block => "Block",
            BufferMode::Drop => "Drop",
        }
    }

    fn parse(text: &str) -> Result<BufferMode, WsmanError> {
        if text.eq_ignore_ascii_case("block") {
            Ok(BufferMode::Block)
        } else if text.eq_ignore_ascii_case("drop") {
            Ok(BufferMode::Drop)
        } else {
            Err(invalid("BufferMode", text))
        }
    }
}

/// The body of a Create: the shell to make (MS-WSMV 2.2.4.37).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CreateShell {
    /// The `ShellId` attribute: for PowerShell, the runspace pool's id, upper case (MS-PSRP 3.1.5.3.1).
    pub shell_id: Option<String>,
    /// `stdin pr` for PowerShell.
    pub input_streams: String,
    /// `stdout` for PowerShell.
    pub output_streams: String,
    /// `rsp:IdleTimeOut`: how long the server keeps the shell without requests (and, once disconnected, without a
    /// reconnect) before deleting it.
    pub idle_timeout: Option<Duration>,
    /// `creationXml`: the first PSRP fragments (SESSION_CAPABILITY, INIT_RUNSPACEPOOL).
    pub creation_xml: Option<Vec<u8>>,
}

/// One `rsp:Stream` of a Send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SendStream {
    /// `stdin` or `pr`.
    pub name: String,
    /// The pipeline's id; absent for the pool.
    pub command_id: Option<String>,
    /// `End="true"`: no more input for this stream (WinRS).
    pub end: Option<bool>,
    pub data: Vec<u8>,
}

/// A request's body, by operation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Body {
    /// `<s:Body/>`: Delete, Get, and a shell's Reconnect.
    Empty,
    /// Create.
    Shell(CreateShell),
    /// Command: `rsp:CommandLine`. PowerShell sends an empty `rsp:Command` and the base64 of the CREATE_PIPELINE
    /// message's first fragments as the one `rsp:Arguments` (MS-PSRP 3.1.5.3.3); WinRS sends text.
    CommandLine { command_id: Option<String>, command: String, arguments: Vec<String> },
    /// Send: `rsp:Send/rsp:Stream`.
    Send { streams: Vec<SendStream> },
    /// Receive: `rsp:Receive/rsp:DesiredStream`, with the pipeline's id or none for the pool.
    Receive { streams: String, command_id: Option<String> },
    /// Signal: `rsp:Signal`.
    Signal { command_id: Option<String>, code: SignalCode },
    /// Disconnect: `rsp:Disconnect` with MS-WSMV 2.2.4.15's optional `rsp:IdleTimeOut` and `rsp:BufferMode`.
    Disconnect { idle_timeout: Option<Duration>, buffer_mode: Option<BufferMode> },
    /// Reconnect of a command, or with a buffer mode: `rsp:Reconnect` (a shell's plain Reconnect is [`Body::Empty`]).
    Reconnect { command_id: Option<String>, buffer_mode: Option<BufferMode> },
    /// Connect: `rsp:Connect` with `connectXml` for the pool, or a `CommandId` for a pipeline.
    Connect { command_id: Option<String>, connect_xml: Option<Vec<u8>> },
    /// Enumerate: `wsen:Enumerate`, optimised (items in the response), filtered by selectors for commands.
    Enumerate { optimize: bool, max_elements: Option<u32>, selector_filter: Option<Vec<Selector>> },
    /// Pull: `wsen:Pull`.
    Pull { context: String, max_elements: Option<u32> },
    /// Put: the resource's new representation, its element as XML text written into `s:Body` as it is (a
    /// configuration resource as a Get gave it, with one setting edited). It must read alone: its namespace
    /// declarations on itself, as [`super::xml::Element::standalone_xml`] leaves them.
    Resource(String),
}

/// A request: what to do, to what, with which options.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    pub action: Action,
    pub resource_uri: String,
    pub selectors: Vec<Selector>,
    pub options: Vec<WsmanOption>,
    /// Overrides the configuration's `OperationTimeout` for this request.
    pub operation_timeout: Option<Duration>,
    pub body: Body,
}

impl Request {
    fn new(action: Action, resource_uri: impl Into<String>, body: Body) -> Request {
        Request {
            action,
            resource_uri: resource_uri.into(),
            selectors: Vec::new(),
            options: Vec::new(),
            operation_timeout: None,
            body,
        }
    }

    fn to_shell(action: Action, shell: &ShellRef, body: Body) -> Request {
        Request::new(action, shell.resource_uri.clone(), body).with_selectors(shell.selectors.clone())
    }

    /// Adds an option.
    pub fn with_option(mut self, option: WsmanOption) -> Request {
        self.options.push(option);
        self
    }

    /// Replaces the selectors.
    pub fn with_selectors(mut self, selectors: Vec<Selector>) -> Request {
        self.selectors = selectors;
        self
    }

    /// Sets this request's `OperationTimeout`.
    pub fn with_operation_timeout(mut self, timeout: Duration) -> Request {
        self.operation_timeout = Some(timeout);
        self
    }

    /// Create: opens the runspace pool `rpid` on the configuration `resource_uri` (MS-PSRP 3.1.5.3.1). `creation_xml`
    /// is the first fragments (SESSION_CAPABILITY and INIT_RUNSPACEPOOL, at most [`ClientConfig::max_fragment_size`]);
    /// the rest go with [`Request::send`]. Option `protocolversion` = [`PROTOCOL_VERSION`], MustComply.
    pub fn create_pool(resource_uri: &str, rpid: Uuid, creation_xml: &[u8], idle_timeout: Option<Duration>) -> Request {
        Request::new(
            Action::Create,
            resource_uri,
            Body::Shell(CreateShell {
                shell_id: Some(upper(rpid)),
                input_streams: "stdin pr".to_owned(),
                output_streams: "stdout".to_owned(),
                idle_timeout,
                creation_xml: Some(creation_xml.to_vec()),
            }),
        )
        .with_option(WsmanOption::new("protocolversion", PROTOCOL_VERSION).must_comply())
    }

    /// Command: creates the pipeline `pid` with the first fragments of its CREATE_PIPELINE message (MS-PSRP
    /// 3.1.5.3.3). With pypsrp's option `WINRS_SKIP_CMD_SHELL` = False.
    pub fn command(shell: &ShellRef, pid: Uuid, arguments: &[u8]) -> Request {
        Request::to_shell(
            Action::Command,
            shell,
            Body::CommandLine {
                command_id: Some(upper(pid)),
                command: String::new(),
                arguments: vec![BASE64.encode(arguments)],
            },
        )
        .with_option(WsmanOption::new("WINRS_SKIP_CMD_SHELL", "False"))
    }

    /// Send: PSRP fragments to the pool (`pid` None) or a pipeline; host-call answers go on [`InputStream::Pr`].
    pub fn send(shell: &ShellRef, stream: InputStream, pid: Option<Uuid>, data: &[u8]) -> Request {
        Request::to_shell(
            Action::Send,
            shell,
            Body::Send {
                streams: vec![SendStream {
                    name: stream.as_str().to_owned(),
                    command_id: pid.map(upper),
                    end: None,
                    data: data.to_vec(),
                }],
            },
        )
    }

    /// Receive: output of the pool (`pid` None) or of a pipeline, `stdout`, with pypsrp's
    /// `WSMAN_CMDSHELL_OPTION_KEEPALIVE` = True. Keep one outstanding for the pool and one per pipeline; on an
    /// [`super::FaultKind::OperationTimeout`] send it again.
    pub fn receive(shell: &ShellRef, pid: Option<Uuid>) -> Request {
        Request::to_shell(
            Action::Receive,
            shell,
            Body::Receive { streams: "stdout".to_owned(), command_id: pid.map(upper) },
        )
        .with_option(WsmanOption::new("WSMAN_CMDSHELL_OPTION_KEEPALIVE", "True"))
    }

    /// Signal to a pipeline: [`SignalCode::PsStop`] stops it, [`SignalCode::Terminate`] releases it once done.
    pub fn signal(shell: &ShellRef, pid: Uuid, code: SignalCode) -> Request {
        Request::to_shell(Action::Signal, shell, Body::Signal { command_id: Some(upper(pid)), code })
    }

    /// Delete: closes the shell and its runspace pool (MS-PSRP 3.1.5.3.11).
    pub fn delete(shell: &ShellRef) -> Request {
        Request::to_shell(Action::Delete, shell, Body::Empty)
    }

    /// Disconnect (MS-PSRP 3.1.5.3.16): the shell keeps running for `idle_timeout` (else the Create's), buffering
    /// output as `buffer_mode` says. Send it once pending Sends are answered; keep the [`ClientConfig::session_id`],
    /// the shell and the pipelines' ids to Reconnect.
    pub fn disconnect(shell: &ShellRef, idle_timeout: Option<Duration>, buffer_mode: Option<BufferMode>) -> Request {
        Request::to_shell(Action::Disconnect, shell, Body::Disconnect { idle_timeout, buffer_mode })
    }

    /// Reconnect from the client that disconnected (same `wsmv:SessionId`), MS-PSRP 3.1.5.3.18. An empty body as
    /// pypsrp and MS-WSMV 4.7.10 send it; with a buffer mode, `rsp:Reconnect/rsp:BufferMode` (MS-PSRP names the
    /// item; its layout follows Disconnect's and is not confirmed against Windows). Then Receive again.
    pub fn reconnect(shell: &ShellRef, buffer_mode: Option<BufferMode>) -> Request {
        let body = match buffer_mode {
            None => Body::Empty,
            Some(mode) => Body::Reconnect { command_id: None, buffer_mode: Some(mode) },
        };
        Request::to_shell(Action::Reconnect, shell, body)
    }

    /// Reconnect to one pipeline after the shell's Reconnect: `<rsp:Reconnect CommandId="…"/>`. MS-PSRP
    /// 3.1.5.3.18 asks for the CommandId in the body; this attribute form is Connect's and is not confirmed against
    /// Windows.
    pub fn reconnect_command(shell: &ShellRef, pid: Uuid) -> Request {
        Request::to_shell(Action::Reconnect, shell, Body::Reconnect { command_id: Some(upper(pid)), buffer_mode: None })
    }

    /// Connect from a new client (MS-PSRP 3.1.5.3.14): `connect_xml` is SESSION_CAPABILITY and CONNECT_RUNSPACEPOOL;
    /// the response's `connectResponseXml` holds the server's answer. Option `protocolversion`, MustComply.
    pub fn connect_pool(shell: &ShellRef, connect_xml: &[u8]) -> Request {
        Request::to_shell(
            Action::Connect,
            shell,
            Body::Connect { command_id: None, connect_xml: Some(connect_xml.to_vec()) },
        )
        .with_option(WsmanOption::new("protocolversion", PROTOCOL_VERSION).must_comply())
    }

    /// Connect to one pipeline of a connected shell: `<rsp:Connect CommandId="…"/>` (pypsrp), then Receive.
    pub fn connect_command(shell: &ShellRef, pid: Uuid) -> Request {
        Request::to_shell(Action::Connect, shell, Body::Connect { command_id: Some(upper(pid)), connect_xml: None })
    }

    /// Enumerate the user's shells (every configuration, connected or not), items in the response.
    pub fn enumerate_shells() -> Request {
        Request::new(
            Action::Enumerate,
            SHELL_URI,
            Body::Enumerate { optimize: true, max_elements: Some(ENUMERATE_MAX_ELEMENTS), selector_filter: None },
        )
    }

    /// Enumerate one shell's commands: the SelectorFilter on `ShellId` that Windows' client uses.
    pub fn enumerate_commands(shell_id: &str) -> Request {
        Request::new(
            Action::Enumerate,
            COMMAND_URI,
            Body::Enumerate {
                optimize: true,
                max_elements: Some(ENUMERATE_MAX_ELEMENTS),
                selector_filter: Some(vec![Selector::new("ShellId", shell_id)]),
            },
        )
    }

    /// Pull the next items of an enumeration the server did not finish in its EnumerateResponse.
    pub fn pull(resource_uri: &str, context: &str) -> Request {
        Request::new(
            Action::Pull,
            resource_uri,
            Body::Pull { context: context.to_owned(), max_elements: Some(ENUMERATE_MAX_ELEMENTS) },
        )
    }

    /// WS-Transfer Get of WinRM's configuration, for `MaxEnvelopeSizekb` (and the quotas).
    pub fn get_config() -> Request {
        Request::new(Action::Get, CONFIG_URI, Body::Empty)
    }

    /// WS-Transfer Get of a WinRM configuration resource (what `winrm get winrm/config/winrs` and PowerShell's
    /// WSMan provider read): its resource URI, and for a plugin the `Name` selector.
    pub fn get_resource(resource: &ConfigResource) -> Request {
        Request::new(Action::Get, resource.resource_uri(), Body::Empty).with_selectors(resource.selectors())
    }

    /// WS-Transfer Put of a WinRM configuration resource: `body_xml` is the resource's element (`cfg:Winrs`,
    /// `PlugInConfiguration`) with the settings to set — PowerShell's WSMan provider sends the whole resource as a Get
    /// gave it, one setting edited (`config::edit`). Windows answers with the resource as it now stands.
    pub fn put_resource(resource: &ConfigResource, body_xml: String) -> Request {
        Request::new(Action::Put, resource.resource_uri(), Body::Resource(body_xml))
            .with_selectors(resource.selectors())
    }

    /// WS-Transfer Get of one shell: its state (Connected/Disconnected) and properties; a fault when it is gone.
    pub fn get_shell(shell_id: &str) -> Request {
        Request::new(Action::Get, SHELL_URI, Body::Empty).with_selectors(vec![Selector::new("ShellId", shell_id)])
    }

    /// The envelope, as text, with `message_id` as its `wsa:MessageID` (the response's `wsa:RelatesTo`).
    pub fn to_xml(&self, config: &ClientConfig, message_id: Uuid) -> String {
        let mut x = String::with_capacity(1600 + self.payload_len() * 4 / 3);
        x.push_str("<s:Envelope");
        for (prefix, uri) in
            [("s", ns::S), ("wsa", ns::WSA), ("wsman", ns::WSMAN), ("wsmv", ns::WSMV), ("rsp", ns::RSP)]
        {
            x.push_str(&format!(" xmlns:{prefix}=\"{uri}\""));
        }
        if matches!(self.body, Body::Enumerate { .. } | Body::Pull { .. }) {
            x.push_str(&format!(" xmlns:wsen=\"{}\"", ns::WSEN));
        }
        x.push_str("><s:Header>");
        leaf(&mut x, "wsa:Action", &[("s:mustUnderstand", "true")], self.action.uri());
        empty(&mut x, "wsmv:DataLocale", &[("s:mustUnderstand", "false"), ("xml:lang", &config.data_locale)]);
        empty(&mut x, "wsman:Locale", &[("s:mustUnderstand", "false"), ("xml:lang", &config.locale)]);
        leaf(&mut x, "wsman:MaxEnvelopeSize", &[("s:mustUnderstand", "true")], &config.max_envelope_size.to_string());
        leaf(&mut x, "wsa:MessageID", &[], &format!("uuid:{}", upper(message_id)));
        leaf(
            &mut x,
            "wsman:OperationTimeout",
            &[],
            &format_duration(self.operation_timeout.unwrap_or(config.operation_timeout)),
        );
        x.push_str("<wsa:ReplyTo>");
        leaf(&mut x, "wsa:Address", &[("s:mustUnderstand", "true")], ANONYMOUS);
        x.push_str("</wsa:ReplyTo>");
        leaf(&mut x, "wsman:ResourceURI", &[("s:mustUnderstand", "true")], &self.resource_uri);
        leaf(&mut x, "wsmv:SessionId", &[("s:mustUnderstand", "false")], &format!("uuid:{}", upper(config.session_id)));
        leaf(&mut x, "wsa:To", &[], &config.to);
        if !self.options.is_empty() {
            x.push_str("<wsman:OptionSet s:mustUnderstand=\"true\">");
            for o in &self.options {
                let attrs: &[(&str, &str)] =
                    if o.must_comply { &[("Name", &o.name), ("MustComply", "true")] } else { &[("Name", &o.name)] };
                leaf(&mut x, "wsman:Option", attrs, &o.value);
            }
            x.push_str("</wsman:OptionSet>");
        }
        if !self.selectors.is_empty() {
            write_selectors(&mut x, &self.selectors);
        }
        x.push_str("</s:Header>");
        self.write_body(&mut x);
        x.push_str("</s:Envelope>");
        x
    }

    fn payload_len(&self) -> usize {
        match &self.body {
            Body::Shell(s) => s.creation_xml.as_ref().map_or(0, Vec::len),
            Body::Send { streams } => streams.iter().map(|s| s.data.len()).sum(),
            Body::CommandLine { arguments, .. } => arguments.iter().map(String::len).sum(),
            Body::Connect { connect_xml, .. } => connect_xml.as_ref().map_or(0, Vec::len),
            _ => 0,
        }
    }

    fn write_body(&self, x: &mut String) {
        if self.body == Body::Empty {
            x.push_str("<s:Body />");
            return;
        }
        x.push_str("<s:Body>");
        match &self.body {
            Body::Empty => {}
            Body::Shell(shell) => {
                open(x, "rsp:Shell", &[("ShellId", shell.shell_id.as_deref())]);
                leaf(x, "rsp:InputStreams", &[], &shell.input_streams);
                leaf(x, "rsp:OutputStreams", &[], &shell.output_streams);
                if let Some(t) = shell.idle_timeout {
                    leaf(x, "rsp:IdleTimeOut", &[], &format_duration(t));
                }
                if let Some(data) = &shell.creation_xml {
                    leaf(x, "creationXml", &[("xmlns", ns::PWSH)], &BASE64.encode(data));
                }
                x.push_str("</rsp:Shell>");
            }
            Body::CommandLine { command_id, command, arguments } => {
                open(x, "rsp:CommandLine", &[("CommandId", command_id.as_deref())]);
                if command.is_empty() {
                    x.push_str("<rsp:Command />");
                } else {
                    leaf(x, "rsp:Command", &[], command);
                }
                for a in arguments {
                    leaf(x, "rsp:Arguments", &[], a);
                }
                x.push_str("</rsp:CommandLine>");
            }
            Body::Send { streams } => {
                x.push_str("<rsp:Send>");
                for s in streams {
                    let end = s.end.map(|e| if e { "true" } else { "false" });
                    open(
                        x,
                        "rsp:Stream",
                        &[("Name", Some(&s.name)), ("CommandId", s.command_id.as_deref()), ("End", end)],
                    );
                    x.push_str(&BASE64.encode(&s.data));
                    x.push_str("</rsp:Stream>");
                }
                x.push_str("</rsp:Send>");
            }
            Body::Receive { streams, command_id } => {
                x.push_str("<rsp:Receive>");
                open(x, "rsp:DesiredStream", &[("CommandId", command_id.as_deref())]);
                push_text(x, streams);
                x.push_str("</rsp:DesiredStream></rsp:Receive>");
            }
            Body::Signal { command_id, code } => {
                open(x, "rsp:Signal", &[("CommandId", command_id.as_deref())]);
                leaf(x, "rsp:Code", &[], code.as_str());
                x.push_str("</rsp:Signal>");
            }
            Body::Disconnect { idle_timeout, buffer_mode } => {
                if idle_timeout.is_none() && buffer_mode.is_none() {
                    x.push_str("<rsp:Disconnect />");
                } else {
                    x.push_str("<rsp:Disconnect>");
                    if let Some(t) = idle_timeout {
                        leaf(x, "rsp:IdleTimeOut", &[], &format_duration(*t));
                    }
                    if let Some(m) = buffer_mode {
                        leaf(x, "rsp:BufferMode", &[], m.as_str());
                    }
                    x.push_str("</rsp:Disconnect>");
                }
            }
            Body::Reconnect { command_id, buffer_mode } => {
                open(x, "rsp:Reconnect", &[("CommandId", command_id.as_deref())]);
                if let Some(m) = buffer_mode {
                    leaf(x, "rsp:BufferMode", &[], m.as_str());
                }
                x.push_str("</rsp:Reconnect>");
            }
            Body::Connect { command_id, connect_xml } => {
                open(x, "rsp:Connect", &[("CommandId", command_id.as_deref())]);
                if let Some(data) = connect_xml {
                    leaf(x, "connectXml", &[("xmlns", ns::PWSH)], &BASE64.encode(data));
                }
                x.push_str("</rsp:Connect>");
            }
            Body::Enumerate { optimize, max_elements, selector_filter } => {
                x.push_str("<wsen:Enumerate>");
                if *optimize {
                    x.push_str("<wsman:OptimizeEnumeration />");
                }
                if let Some(n) = max_elements {
                    leaf(x, "wsman:MaxElements", &[], &n.to_string());
                }
                if let Some(selectors) = selector_filter {
                    open(x, "wsman:Filter", &[("Dialect", Some(SELECTOR_FILTER))]);
                    write_selectors(x, selectors);
                    x.push_str("</wsman:Filter>");
                }
                x.push_str("</wsen:Enumerate>");
            }
            Body::Pull { context, max_elements } => {
                x.push_str("<wsen:Pull>");
                leaf(x, "wsen:EnumerationContext", &[], context);
                if let Some(n) = max_elements {
                    leaf(x, "wsen:MaxElements", &[], &n.to_string());
                }
                x.push_str("</wsen:Pull>");
            }
            Body::Resource(xml) => x.push_str(xml),
        }
        x.push_str("</s:Body>");
    }

    /// Reads a request envelope (what a client sent): its header values and the request.
    pub fn parse(bytes: &[u8]) -> Result<ParsedRequest, WsmanError> {
        let doc = Document::parse(bytes)?;
        let envelope = envelope_of(&doc)?;
        let header = envelope.child(ns::S, "Header").ok_or(WsmanError::Missing("s:Header"))?;
        let body = envelope.child(ns::S, "Body").ok_or(WsmanError::Missing("s:Body"))?;
        let action_uri = header.child(ns::WSA, "Action").ok_or(WsmanError::Missing("wsa:Action"))?.text();
        let action = Action::from_uri(action_uri)
            .ok_or_else(|| WsmanError::Unexpected { expected: "request action", found: action_uri.to_owned() })?;
        let resource_uri =
            header.child(ns::WSMAN, "ResourceURI").ok_or(WsmanError::Missing("wsman:ResourceURI"))?.text().to_owned();
        let selectors = match header.child(ns::WSMAN, "SelectorSet") {
            Some(set) => read_selectors(set)?,
            None => Vec::new(),
        };
        let mut options = Vec::new();
        if let Some(set) = header.child(ns::WSMAN, "OptionSet") {
            for o in set.children_named(ns::WSMAN, "Option") {
                options.push(WsmanOption {
                    name: o.attr("Name").ok_or(WsmanError::Missing("wsman:Option/@Name"))?.to_owned(),
                    value: o.text().to_owned(),
                    must_comply: o.attr("MustComply").is_some_and(|v| v.trim().eq_ignore_ascii_case("true")),
                });
            }
        }
        let text = |namespace: &str, name: &str| header.child(namespace, name).map(|e| e.text().to_owned());
        let lang = |namespace: &str, name: &str| {
            header.child(namespace, name).and_then(|e| e.attr_ns(ns::XML, "lang")).map(str::to_owned)
        };
        let request_header = RequestHeader {
            to: text(ns::WSA, "To"),
            message_id: header.child(ns::WSA, "MessageID").and_then(|e| parse_uuid(e.text())),
            session_id: header.child(ns::WSMV, "SessionId").and_then(|e| parse_uuid(e.text())),
            max_envelope_size: text(ns::WSMAN, "MaxEnvelopeSize"),
            operation_timeout: text(ns::WSMAN, "OperationTimeout"),
            locale: lang(ns::WSMAN, "Locale"),
            data_locale: lang(ns::WSMV, "DataLocale"),
            reply_to: header
                .child(ns::WSA, "ReplyTo")
                .and_then(|r| r.child(ns::WSA, "Address"))
                .map(|a| a.text().to_owned()),
        };
        let source = std::str::from_utf8(bytes).map_err(|e| WsmanError::NotUtf8 { position: e.valid_up_to() })?;
        let body = read_request_body(action, body, source)?;
        Ok(ParsedRequest {
            header: request_header,
            request: Request { action, resource_uri, selectors, options, operation_timeout: None, body },
        })
    }
}

/// A request read back, with the values of its headers as sent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParsedRequest {
    pub header: RequestHeader,
    /// The request; its `operation_timeout` is `None` (the header's value is in [`RequestHeader`]).
    pub request: Request,
}

/// The per-client headers of a request, as sent (invalid values kept as text, so that every request reads).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestHeader {
    pub to: Option<String>,
    pub message_id: Option<Uuid>,
    pub session_id: Option<Uuid>,
    pub max_envelope_size: Option<String>,
    pub operation_timeout: Option<String>,
    pub locale: Option<String>,
    pub data_locale: Option<String>,
    pub reply_to: Option<String>,
}

impl RequestHeader {
    /// The configuration that writes these headers again; `None` when one is missing or does not parse (such as
    /// an `OperationTimeout` of `PT-1S`).
    pub fn client_config(&self) -> Option<ClientConfig> {
        Some(ClientConfig {
            to: self.to.clone()?,
            session_id: self.session_id?,
            max_envelope_size: self.max_envelope_size.as_deref()?.parse().ok()?,
            operation_timeout: parse_duration(self.operation_timeout.as_deref()?)?,
            locale: self.locale.clone()?,
            data_locale: self.data_locale.clone()?,
        })
    }
}

/// The body of a request; `source` is the envelope's text, from which a Put's resource is kept verbatim.
fn read_request_body(action: Action, body: Element<'_>, source: &str) -> Result<Body, WsmanError> {
    let rsp = |name: &str| body.child(ns::RSP, name);
    Ok(match action {
        Action::Get | Action::Delete => Body::Empty,
        Action::Put => match body.children().next() {
            None => Body::Empty,
            Some(resource) => Body::Resource(
                resource.standalone_xml(source).ok_or(WsmanError::Missing("the text of the Put's resource"))?,
            ),
        },
        Action::Create => match rsp("Shell") {
            None => Body::Empty,
            Some(shell) => Body::Shell(CreateShell {
                shell_id: shell.attr("ShellId").map(|s| s.trim().to_owned()),
                input_streams: shell.child(ns::RSP, "InputStreams").map(|e| e.text().to_owned()).unwrap_or_default(),
                output_streams: shell.child(ns::RSP, "OutputStreams").map(|e| e.text().to_owned()).unwrap_or_default(),
                idle_timeout: shell
                    .child(ns::RSP, "IdleTimeOut")
                    .map(|e| duration(e.text(), "rsp:IdleTimeOut"))
                    .transpose()?,
                creation_xml: shell.child(ns::PWSH, "creationXml").map(|e| base64(e, "creationXml")).transpose()?,
            }),
        },
        Action::Command => {
            let line = rsp("CommandLine").ok_or(WsmanError::Missing("rsp:CommandLine"))?;
            Body::CommandLine {
                command_id: id_attr(line, "CommandId"),
                command: line.child(ns::RSP, "Command").map(|c| c.raw_text().to_owned()).unwrap_or_default(),
                arguments: line.children_named(ns::RSP, "Arguments").map(|a| a.raw_text().to_owned()).collect(),
            }
        }
        Action::Send => {
            let send = rsp("Send").ok_or(WsmanError::Missing("rsp:Send"))?;
            let mut streams = Vec::new();
            for s in send.children_named(ns::RSP, "Stream") {
                streams.push(SendStream {
                    name: s.attr("Name").ok_or(WsmanError::Missing("rsp:Stream/@Name"))?.trim().to_owned(),
                    command_id: id_attr(s, "CommandId"),
                    end: s.attr("End").map(|e| parse_bool(e, "rsp:Stream/@End")).transpose()?,
                    data: base64(s, "rsp:Stream")?,
                });
            }
            Body::Send { streams }
        }
        Action::Receive => {
            let desired = rsp("Receive")
                .and_then(|r| r.child(ns::RSP, "DesiredStream"))
                .ok_or(WsmanError::Missing("rsp:Receive/rsp:DesiredStream"))?;
            Body::Receive { streams: desired.text().to_owned(), command_id: id_attr(desired, "CommandId") }
        }
        Action::Signal => {
            let signal = rsp("Signal").ok_or(WsmanError::Missing("rsp:Signal"))?;
            let code = signal.child(ns::RSP, "Code").ok_or(WsmanError::Missing("rsp:Signal/rsp:Code"))?;
            Body::Signal { command_id: id_attr(signal, "CommandId"), code: SignalCode::parse(code.text()) }
        }
        Action::Disconnect => match rsp("Disconnect") {
            None => Body::Empty,
            Some(d) => Body::Disconnect {
                idle_timeout: d
                    .child(ns::RSP, "IdleTimeOut")
                    .map(|e| duration(e.text(), "rsp:IdleTimeOut"))
                    .transpose()?,
                buffer_mode: d.child(ns::RSP, "BufferMode").map(|e| BufferMode::parse(e.text())).transpose()?,
            },
        },
        Action::Reconnect => match rsp("Reconnect") {
            None => Body::Empty,
            Some(r) => Body::Reconnect {
                command_id: id_attr(r, "CommandId"),
                buffer_mode: r.child(ns::RSP, "BufferMode").map(|e| BufferMode::parse(e.text())).transpose()?,
            },
        },
        Action::Connect => match rsp("Connect") {
            None => Body::Empty,
            Some(c) => Body::Connect {
                command_id: id_attr(c, "CommandId"),
                connect_xml: c.child(ns::PWSH, "connectXml").map(|e| base64(e, "connectXml")).transpose()?,
            },
        },
        Action::Enumerate => match body.child(ns::WSEN, "Enumerate") {
            None => Body::Empty,
            Some(e) => {
                let selector_filter = match e.child(ns::WSMAN, "Filter") {
                    None => None,
                    Some(f) => {
                        let dialect = f.attr("Dialect").unwrap_or_default().trim();
                        if dialect != SELECTOR_FILTER {
                            return Err(invalid("wsman:Filter/@Dialect", dialect));
                        }
                        Some(match f.child(ns::WSMAN, "SelectorSet") {
                            Some(set) => read_selectors(set)?,
                            None => Vec::new(),
                        })
                    }
                };
                Body::Enumerate {
                    optimize: e.child(ns::WSMAN, "OptimizeEnumeration").is_some(),
                    max_elements: e
                        .child(ns::WSMAN, "MaxElements")
                        .map(|m| number(m.text(), "wsman:MaxElements"))
                        .transpose()?,
                    selector_filter,
                }
            }
        },
        Action::Pull => match body.child(ns::WSEN, "Pull") {
            None => Body::Empty,
            Some(p) => Body::Pull {
                context: p.child(ns::WSEN, "EnumerationContext").map(|c| c.text().to_owned()).unwrap_or_default(),
                max_elements: p
                    .child(ns::WSEN, "MaxElements")
                    .map(|m| number(m.text(), "wsen:MaxElements"))
                    .transpose()?,
            },
        },
    })
}

/// A response envelope: its addressing headers and its typed body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResponseEnvelope {
    /// `wsa:Action`; absent only from servers that leave it out (the body then says what it answers).
    pub action: Option<String>,
    pub message_id: Option<String>,
    /// `wsa:RelatesTo`: the request's MessageID.
    pub relates_to: Option<String>,
    pub body: Response,
}

impl ResponseEnvelope {
    /// Checks that this answers the request `action` sent as `message_id` (pypsrp checks `wsa:RelatesTo` too).
    pub fn answers(&self, action: Action, message_id: Uuid) -> Result<(), WsmanError> {
        if self.body.action() != action {
            return Err(WsmanError::Mismatch(format!("a {:?} response to a {action:?} request", self.body.action())));
        }
        match self.relates_to.as_deref().and_then(parse_uuid) {
            Some(id) if id == message_id => Ok(()),
            _ => Err(WsmanError::Mismatch(format!(
                "wsa:RelatesTo {:?} instead of uuid:{}",
                self.relates_to,
                upper(message_id)
            ))),
        }
    }
}

/// A response's body, by operation. A PutResponse carries the resource as the server now holds it, read like a
/// Get's answer: Windows sends the whole resource back (an empty body, which WS-Transfer allows, is
/// [`GetResponse::Other`] with an empty name); `config::parse_config_response` keeps its XML and settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Response {
    Create(CreateResponse),
    Delete,
    Get(GetResponse),
    Put(GetResponse),
    Enumerate(EnumerationResponse),
    Pull(EnumerationResponse),
    Command { command_id: String },
    Send,
    Receive(ReceiveResponse),
    Signal,
    Disconnect,
    Reconnect,
    Connect(ConnectResponse),
}

impl Response {
    /// The operation this answers.
    pub fn action(&self) -> Action {
        match self {
            Response::Create(_) => Action::Create,
            Response::Delete => Action::Delete,
            Response::Get(_) => Action::Get,
            Response::Put(_) => Action::Put,
            Response::Enumerate(_) => Action::Enumerate,
            Response::Pull(_) => Action::Pull,
            Response::Command { .. } => Action::Command,
            Response::Send => Action::Send,
            Response::Receive(_) => Action::Receive,
            Response::Signal => Action::Signal,
            Response::Disconnect => Action::Disconnect,
            Response::Reconnect => Action::Reconnect,
            Response::Connect(_) => Action::Connect,
        }
    }
}

/// A CreateResponse: the new shell's endpoint reference and, from Server 2012 on, its properties.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CreateResponse {
    /// `wsa:Address`.
    pub address: Option<String>,
    /// `wsman:ResourceURI` of the reference parameters.
    pub resource_uri: Option<String>,
    /// The selectors to address the shell with (`ShellId`).
    pub selectors: Vec<Selector>,
    /// `rsp:Shell`, when the server describes the shell.
    pub shell: Option<ShellInfo>,
}

impl CreateResponse {
    /// The shell's id: the `ShellId` selector, else the described shell's.
    pub fn shell_id(&self) -> Option<&str> {
        self.selectors
            .iter()
            .find(|s| s.name == "ShellId")
            .map(|s| s.value.as_str())
            .or_else(|| self.shell.as_ref().map(|s| s.shell_id.as_str()))
    }
}

/// Whether a shell has a client (MS-WSMV 2.2.4.37 `rsp:State`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ShellState {
    Connected,
    Disconnected,
    Other(String),
}

/// A shell as the server describes it (CreateResponse, Get, Enumerate; MS-WSMV 2.2.4.37).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ShellInfo {
    pub shell_id: String,
    pub name: Option<String>,
    /// The configuration's resource URI.
    pub resource_uri: Option<String>,
    pub owner: Option<String>,
    pub client_ip: Option<String>,
    pub process_id: Option<u32>,
    pub idle_timeout: Option<Duration>,
    pub input_streams: Option<String>,
    pub output_streams: Option<String>,
    pub max_idle_timeout: Option<Duration>,
    pub locale: Option<String>,
    pub data_locale: Option<String>,
    pub compression_mode: Option<String>,
    pub profile_loaded: Option<String>,
    pub encoding: Option<String>,
    pub buffer_mode: Option<BufferMode>,
    pub state: Option<ShellState>,
    pub shell_run_time: Option<Duration>,
    pub shell_inactivity: Option<Duration>,
    /// As sent, e.g. `46MB`.
    pub memory_used: Option<String>,
    pub child_processes: Option<u32>,
}

/// A ReceiveResponse (MS-WSMV 2.2.4.27): output and, for a pipeline, its state.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReceiveResponse {
    pub streams: Vec<ReceivedStream>,
    pub command_state: Option<CommandState>,
}

/// One `rsp:Stream` of output, base64-decoded: PSRP fragments for PowerShell.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReceivedStream {
    /// `stdout` for PowerShell.
    pub name: String,
    /// The pipeline, or `None` for the pool.
    pub command_id: Option<String>,
    /// `End="true"`: the stream is finished (WinRS).
    pub end: bool,
    pub data: Vec<u8>,
}

/// `rsp:CommandState`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommandState {
    pub command_id: Option<String>,
    pub state: CommandStateKind,
    pub exit_code: Option<i64>,
}

/// The state URI's last segment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CommandStateKind {
    Done,
    Pending,
    Running,
    Other(String),
}

/// A ConnectResponse: for the pool, the server's `connectResponseXml` (SESSION_CAPABILITY and, from PowerShell
/// servers, RUNSPACEPOOL_INIT_DATA).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConnectResponse {
    pub input_streams: Option<String>,
    pub output_streams: Option<String>,
    pub connect_response_xml: Option<Vec<u8>>,
}

/// An EnumerateResponse or PullResponse.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EnumerationResponse {
    /// The context to Pull with; absent or empty when the items are all here.
    pub context: Option<String>,
    pub items: Vec<EnumItem>,
    pub end_of_sequence: bool,
}

/// One enumerated item.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EnumItem {
    Shell(Box<ShellInfo>),
    /// `rsp:Command`: pypsrp reads `rsp:CommandId`; Windows' full item is not recorded.
    Command {
        shell_id: Option<String>,
        command_id: String,
    },
    /// Another element, by local name.
    Other(String),
}

/// A WS-Transfer GetResponse (or PutResponse): the resource it carries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GetResponse {
    Shell(ShellInfo),
    Config(ServerConfig),
    /// Another resource, by its element's local name.
    Other(String),
}

/// WinRM's configuration (`cfg:Config`, test_wsman_update_envelope_size_*.yml): the sizes and quotas a client
/// works within.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServerConfig {
    pub max_envelope_size_kb: Option<u64>,
    pub max_timeout_ms: Option<u64>,
    pub max_batch_items: Option<u64>,
    pub max_provider_requests: Option<u64>,
    /// `Service/MaxConcurrentOperations`.
    pub max_concurrent_operations: Option<u64>,
    /// `Service/MaxConcurrentOperationsPerUser`.
    pub max_concurrent_operations_per_user: Option<u64>,
    pub enumeration_timeout_ms: Option<u64>,
    pub max_connections: Option<u64>,
    pub max_packet_retrieval_time_seconds: Option<u64>,
    /// `Service/AllowUnencrypted`.
    pub allow_unencrypted: Option<bool>,
    /// `Winrs/AllowRemoteShellAccess`.
    pub allow_remote_shell_access: Option<bool>,
    /// `Winrs/IdleTimeout`, milliseconds.
    pub idle_timeout_ms: Option<u64>,
    pub max_concurrent_users: Option<u64>,
    pub max_shell_run_time: Option<u64>,
    pub max_processes_per_shell: Option<u64>,
    pub max_memory_per_shell_mb: Option<u64>,
    pub max_shells_per_user: Option<u64>,
}

impl ServerConfig {
    /// The server's `MaxEnvelopeSize` in bytes, for [`ClientConfig::max_envelope_size`].
    pub fn max_envelope_size(&self) -> Option<u32> {
        self.max_envelope_size_kb.and_then(|kb| kb.checked_mul(1024)).and_then(|b| u32::try_from(b).ok())
    }
}

/// Reads a response: its typed body, or the server's fault as [`WsmanError::Fault`]. The kind of body follows the
/// `wsa:Action`, or the body's element when a server leaves the action out.
pub fn parse_response(bytes: &[u8]) -> Result<ResponseEnvelope, WsmanError> {
    read_response(&Document::parse(bytes)?)
}

/// [`parse_response`] of a document already parsed (`config.rs` keeps the document for the resource's text).
pub(crate) fn read_response(doc: &Document) -> Result<ResponseEnvelope, WsmanError> {
    if let Some(fault) = WsmanFault::from_document(doc) {
        return Err(WsmanError::Fault(Box::new(fault)));
    }
    let envelope = envelope_of(doc)?;
    let header = envelope.child(ns::S, "Header");
    let header_text = |name: &str| header.and_then(|h| h.child(ns::WSA, name)).map(|e| e.text().to_owned());
    let action_uri = header_text("Action");
    let body = envelope.child(ns::S, "Body").ok_or(WsmanError::Missing("s:Body"))?;
    let first = body.children().next();
    let action = match &action_uri {
        Some(uri) => Action::from_response_uri(uri)
            .ok_or_else(|| WsmanError::Unexpected { expected: "response action", found: uri.clone() })?,
        None => first.and_then(infer_action).ok_or(WsmanError::Missing("wsa:Action"))?,
    };
    let body = read_response_body(action, body)?;
    Ok(ResponseEnvelope {
        action: action_uri,
        message_id: header_text("MessageID"),
        relates_to: header_text("RelatesTo"),
        body,
    })
}

fn infer_action(first: Element<'_>) -> Option<Action> {
    Some(match (first.namespace()?, first.name()) {
        (ns::WST, "ResourceCreated") => Action::Create,
        (ns::RSP, "CommandResponse") => Action::Command,
        (ns::RSP, "ReceiveResponse") => Action::Receive,
        (ns::RSP, "SendResponse") => Action::Send,
        (ns::RSP, "SignalResponse") => Action::Signal,
        (ns::RSP, "ConnectResponse") => Action::Connect,
        (ns::WSEN, "EnumerateResponse") => Action::Enumerate,
        (ns::WSEN, "PullResponse") => Action::Pull,
        (ns::RSP, "Shell") | (ns::CFG, "Config") => Action::Get,
        _ => return None,
    })
}

fn read_response_body(action: Action, body: Element<'_>) -> Result<Response, WsmanError> {
    Ok(match action {
        Action::Delete => Response::Delete,
        Action::Send => Response::Send,
        Action::Signal => Response::Signal,
        Action::Disconnect => Response::Disconnect,
        Action::Reconnect => Response::Reconnect,
        Action::Create => {
            let created = body.child(ns::WST, "ResourceCreated").ok_or(WsmanError::Missing("wst:ResourceCreated"))?;
            let params = created.child(ns::WSA, "ReferenceParameters");
            Response::Create(CreateResponse {
                address: created.child(ns::WSA, "Address").map(|a| a.text().to_owned()),
                resource_uri: params.and_then(|p| p.child(ns::WSMAN, "ResourceURI")).map(|r| r.text().to_owned()),
                selectors: match params.and_then(|p| p.child(ns::WSMAN, "SelectorSet")) {
                    Some(set) => read_selectors(set)?,
                    None => Vec::new(),
                },
                shell: body.child(ns::RSP, "Shell").map(read_shell).transpose()?,
            })
        }
        Action::Command => {
            let id = body
                .child(ns::RSP, "CommandResponse")
                .and_then(|c| c.child(ns::RSP, "CommandId"))
                .ok_or(WsmanError::Missing("rsp:CommandResponse/rsp:CommandId"))?;
            Response::Command { command_id: id.text().to_owned() }
        }
        Action::Receive => {
            let r = body.child(ns::RSP, "ReceiveResponse").ok_or(WsmanError::Missing("rsp:ReceiveResponse"))?;
            let mut streams = Vec::new();
            for s in r.children_named(ns::RSP, "Stream") {
                streams.push(ReceivedStream {
                    name: s.attr("Name").ok_or(WsmanError::Missing("rsp:Stream/@Name"))?.trim().to_owned(),
                    command_id: id_attr(s, "CommandId"),
                    end: s.attr("End").map(|e| parse_bool(e, "rsp:Stream/@End")).transpose()?.unwrap_or(false),
                    data: base64(s, "rsp:Stream")?,
                });
            }
            let command_state = match r.child(ns::RSP, "CommandState") {
                None => None,
                Some(c) => {
                    let uri = c.attr("State").ok_or(WsmanError::Missing("rsp:CommandState/@State"))?.trim();
                    let state = match uri.strip_prefix(COMMAND_STATE_PREFIX) {
                        Some("Done") => CommandStateKind::Done,
                        Some("Pending") => CommandStateKind::Pending,
                        Some("Running") => CommandStateKind::Running,
                        _ => CommandStateKind::Other(uri.to_owned()),
                    };
                    Some(CommandState {
                        command_id: id_attr(c, "CommandId"),
                        state,
                        exit_code: c
                            .child(ns::RSP, "ExitCode")
                            .map(|e| number(e.text(), "rsp:ExitCode"))
                            .transpose()?,
                    })
                }
            };
            Response::Receive(ReceiveResponse { streams, command_state })
        }
        Action::Connect => Response::Connect(match body.child(ns::RSP, "ConnectResponse") {
            None => ConnectResponse::default(),
            Some(c) => ConnectResponse {
                input_streams: c.child(ns::RSP, "InputStreams").map(|e| e.text().to_owned()),
                output_streams: c.child(ns::RSP, "OutputStreams").map(|e| e.text().to_owned()),
                connect_response_xml: c
                    .child(ns::PWSH, "connectResponseXml")
                    .map(|e| base64(e, "connectResponseXml"))
                    .transpose()?,
            },
        }),
        Action::Enumerate | Action::Pull => {
            let name = if action == Action::Enumerate { "EnumerateResponse" } else { "PullResponse" };
            let r = body.child(ns::WSEN, name).ok_or(WsmanError::Missing("wsen:EnumerateResponse"))?;
            let mut items = Vec::new();
            for list in
                r.children().filter(|c| c.name() == "Items" && matches!(c.namespace(), Some(ns::WSMAN | ns::WSEN)))
            {
                for item in list.children() {
                    items.push(match (item.namespace(), item.name()) {
                        (Some(ns::RSP), "Shell") => EnumItem::Shell(Box::new(read_shell(item)?)),
                        (Some(ns::RSP), "Command") => EnumItem::Command {
                            shell_id: item.child(ns::RSP, "ShellId").map(|e| e.text().to_owned()),
                            command_id: item
                                .child(ns::RSP, "CommandId")
                                .ok_or(WsmanError::Missing("rsp:Command/rsp:CommandId"))?
                                .text()
                                .to_owned(),
                        },
                        (_, other) => EnumItem::Other(other.to_owned()),
                    });
                }
            }
            let enumeration = EnumerationResponse {
                context: r.child(ns::WSEN, "EnumerationContext").map(|c| c.text().to_owned()).filter(|c| !c.is_empty()),
                items,
                end_of_sequence: r
                    .children()
                    .any(|c| c.name() == "EndOfSequence" && matches!(c.namespace(), Some(ns::WSMAN | ns::WSEN))),
            };
            if action == Action::Enumerate { Response::Enumerate(enumeration) } else { Response::Pull(enumeration) }
        }
        Action::Get => Response::Get(read_resource(body)?),
        Action::Put => Response::Put(read_resource(body)?),
    })
}

/// The resource a GetResponse or PutResponse carries.
fn read_resource(body: Element<'_>) -> Result<GetResponse, WsmanError> {
    Ok(match body.children().next() {
        Some(e) if e.is(ns::RSP, "Shell") => GetResponse::Shell(read_shell(e)?),
        Some(e) if e.is(ns::CFG, "Config") => GetResponse::Config(read_config(e)?),
        Some(e) => GetResponse::Other(e.name().to_owned()),
        None => GetResponse::Other(String::new()),
    })
}

fn read_shell(shell: Element<'_>) -> Result<ShellInfo, WsmanError> {
    let text = |name: &str| shell.child(ns::RSP, name).map(|e| e.text().to_owned());
    let dur = |name: &'static str| shell.child(ns::RSP, name).map(|e| duration(e.text(), name)).transpose();
    let num = |name: &'static str| shell.child(ns::RSP, name).map(|e| number::<u32>(e.text(), name)).transpose();
    Ok(ShellInfo {
        shell_id: text("ShellId").ok_or(WsmanError::Missing("rsp:Shell/rsp:ShellId"))?,
        name: text("Name"),
        resource_uri: text("ResourceUri"),
        owner: text("Owner"),
        client_ip: text("ClientIP"),
        process_id: num("ProcessId")?,
        idle_timeout: dur("IdleTimeOut")?,
        input_streams: text("InputStreams"),
        output_streams: text("OutputStreams"),
        max_idle_timeout: dur("MaxIdleTimeOut")?,
        locale: text("Locale"),
        data_locale: text("DataLocale"),
        compression_mode: text("CompressionMode"),
        profile_loaded: text("ProfileLoaded"),
        encoding: text("Encoding"),
        buffer_mode: shell.child(ns::RSP, "BufferMode").map(|e| BufferMode::parse(e.text())).transpose()?,
        state: text("State").map(|s| match s.as_str() {
            "Connected" => ShellState::Connected,
            "Disconnected" => ShellState::Disconnected,
            _ => ShellState::Other(s),
        }),
        shell_run_time: dur("ShellRunTime")?,
        shell_inactivity: dur("ShellInactivity")?,
        memory_used: text("MemoryUsed"),
        child_processes: num("ChildProcesses")?,
    })
}

fn read_config(config: Element<'_>) -> Result<ServerConfig, WsmanError> {
    fn num(parent: Option<Element<'_>>, name: &'static str) -> Result<Option<u64>, WsmanError> {
        parent.and_then(|p| p.child(ns::CFG, name)).map(|e| number(e.text(), name)).transpose()
    }
    fn flag(parent: Option<Element<'_>>, name: &'static str) -> Result<Option<bool>, WsmanError> {
        parent.and_then(|p| p.child(ns::CFG, name)).map(|e| parse_bool(e.text(), name)).transpose()
    }
    let top = Some(config);
    let service = config.child(ns::CFG, "Service");
    let winrs = config.child(ns::CFG, "Winrs");
    Ok(ServerConfig {
        max_envelope_size_kb: num(top, "MaxEnvelopeSizekb")?,
        max_timeout_ms: num(top, "MaxTimeoutms")?,
        max_batch_items: num(top, "MaxBatchItems")?,
        max_provider_requests: num(top, "MaxProviderRequests")?,
        max_concurrent_operations: num(service, "MaxConcurrentOperations")?,
        max_concurrent_operations_per_user: num(service, "MaxConcurrentOperationsPerUser")?,
        enumeration_timeout_ms: num(service, "EnumerationTimeoutms")?,
        max_connections: num(service, "MaxConnections")?,
        max_packet_retrieval_time_seconds: num(service, "MaxPacketRetrievalTimeSeconds")?,
        allow_unencrypted: flag(service, "AllowUnencrypted")?,
        allow_remote_shell_access: flag(winrs, "AllowRemoteShellAccess")?,
        idle_timeout_ms: num(winrs, "IdleTimeout")?,
        max_concurrent_users: num(winrs, "MaxConcurrentUsers")?,
        max_shell_run_time: num(winrs, "MaxShellRunTime")?,
        max_processes_per_shell: num(winrs, "MaxProcessesPerShell")?,
        max_memory_per_shell_mb: num(winrs, "MaxMemoryPerShellMB")?,
        max_shells_per_user: num(winrs, "MaxShellsPerUser")?,
    })
}

fn envelope_of(doc: &Document) -> Result<Element<'_>, WsmanError> {
    let root = doc.root();
    if root.is(ns::S, "Envelope") {
        Ok(root)
    } else {
        Err(WsmanError::Unexpected {
            expected: "SOAP 1.2 envelope",
            found: format!("{{{}}}{}", root.namespace().unwrap_or_default(), root.name()),
        })
    }
}

fn read_selectors(set: Element<'_>) -> Result<Vec<Selector>, WsmanError> {
    set.children_named(ns::WSMAN, "Selector")
        .map(|s| {
            Ok(Selector {
                name: s.attr("Name").ok_or(WsmanError::Missing("wsman:Selector/@Name"))?.to_owned(),
                value: s.text().to_owned(),
            })
        })
        .collect()
}

fn write_selectors(x: &mut String, selectors: &[Selector]) {
    x.push_str("<wsman:SelectorSet>");
    for s in selectors {
        leaf(x, "wsman:Selector", &[("Name", &s.name)], &s.value);
    }
    x.push_str("</wsman:SelectorSet>");
}

/// `<name attrs>text</name>`.
fn leaf(x: &mut String, name: &str, attrs: &[(&str, &str)], text: &str) {
    x.push('<');
    x.push_str(name);
    for (k, v) in attrs {
        push_attribute(x, k, v);
    }
    x.push('>');
    push_text(x, text);
    x.push_str("</");
    x.push_str(name);
    x.push('>');
}

/// `<name attrs />`.
fn empty(x: &mut String, name: &str, attrs: &[(&str, &str)]) {
    x.push('<');
    x.push_str(name);
    for (k, v) in attrs {
        push_attribute(x, k, v);
    }
    x.push_str(" />");
}

/// `<name attrs>`, leaving out absent attributes.
fn open(x: &mut String, name: &str, attrs: &[(&str, Option<&str>)]) {
    x.push('<');
    x.push_str(name);
    for (k, v) in attrs {
        if let Some(v) = v {
            push_attribute(x, k, v);
        }
    }
    x.push('>');
}

fn push_attribute(x: &mut String, name: &str, value: &str) {
    x.push(' ');
    x.push_str(name);
    x.push_str("=\"");
    push_attr(x, value);
    x.push('"');
}

/// An id attribute (`CommandId`), trimmed.
fn id_attr(e: Element<'_>, name: &str) -> Option<String> {
    e.attr(name).map(|v| v.trim().to_owned())
}

/// A GUID as PowerShell and pypsrp write them in WS-Management: upper case, hyphenated.
fn upper(id: Uuid) -> String {
    id.hyphenated().to_string().to_ascii_uppercase()
}

/// `uuid:XXXXXXXX-…` (or a bare GUID), any case.
fn parse_uuid(text: &str) -> Option<Uuid> {
    let t = text.trim();
    let t = if t.len() >= 5 && t.is_char_boundary(5) && t[..5].eq_ignore_ascii_case("uuid:") { &t[5..] } else { t };
    Uuid::parse_str(t).ok()
}

fn base64(e: Element<'_>, what: &'static str) -> Result<Vec<u8>, WsmanError> {
    let text = e.raw_text();
    let compact: String;
    let b64 = if text.contains(is_xml_space) {
        compact = text.chars().filter(|c| !is_xml_space(*c)).collect();
        compact.as_str()
    } else {
        text
    };
    BASE64.decode(b64).map_err(|_| invalid(what, &truncated(b64)))
}

fn number<T: std::str::FromStr>(text: &str, what: &'static str) -> Result<T, WsmanError> {
    text.parse().map_err(|_| invalid(what, text))
}

fn parse_bool(text: &str, what: &'static str) -> Result<bool, WsmanError> {
    let t = text.trim();
    if t.eq_ignore_ascii_case("true") {
        Ok(true)
    } else if t.eq_ignore_ascii_case("false") {
        Ok(false)
    } else {
        Err(invalid(what, t))
    }
}

fn duration(text: &str, what: &'static str) -> Result<Duration, WsmanError> {
    parse_duration(text).ok_or_else(|| invalid(what, text))
}

fn invalid(what: &'static str, value: &str) -> WsmanError {
    WsmanError::Invalid { what, value: truncated(value) }
}

/// At most 64 characters of a value, for error messages.
fn truncated(value: &str) -> String {
    match value.char_indices().nth(64) {
        Some((i, _)) => format!("{}…", &value[..i]),
        None => value.to_owned(),
    }
}

/// Writes an `xs:duration` as WinRM reads them: `PT20S`, `PT7200.500S`.
pub fn format_duration(d: Duration) -> String {
    match d.subsec_millis() {
        0 => format!("PT{}S", d.as_secs()),
        ms => format!("PT{}.{ms:03}S", d.as_secs()),
    }
}

/// Reads the `xs:duration` forms WinRM uses: `PT20S`, `PT7200.000S`, `P0DT0H0M9S`, `PT2147483.647S`; to the
/// millisecond (finer digits are dropped). Negative durations, years and months are refused.
pub fn parse_duration(text: &str) -> Option<Duration> {
    let rest = text.trim().strip_prefix('P')?;
    let (date, time) = match rest.split_once('T') {
        Some((d, t)) => (d, Some(t)),
        None => (rest, None),
    };
    let mut millis: u64 = 0;
    let mut any = false;
    let mut add = |value: u64, unit_ms: u64| -> Option<()> {
        millis = millis.checked_add(value.checked_mul(unit_ms)?)?;
        any = true;
        Some(())
    };
    if !date.is_empty() {
        let days = date.strip_suffix('D')?;
        add(digits(days)?, 86_400_000)?;
    }
    if let Some(mut t) = time {
        if t.is_empty() {
            return None;
        }
        for (unit, ms) in [('H', 3_600_000), ('M', 60_000)] {
            if let Some(i) = t.find(unit) {
                add(digits(&t[..i])?, ms)?;
                t = &t[i + 1..];
            }
        }
        if !t.is_empty() {
            let secs = t.strip_suffix('S')?;
            let (whole, frac) = match secs.split_once('.') {
                Some((w, f)) => (w, Some(f)),
                None => (secs, None),
            };
            add(digits(whole)?, 1000)?;
            if let Some(f) = frac {
                if f.is_empty() || !f.bytes().all(|b| b.is_ascii_digit()) {
                    return None;
                }
                let ms = f
                    .bytes()
                    .chain(std::iter::repeat(b'0'))
                    .take(3)
                    .fold(0u64, |acc, b| acc * 10 + u64::from(b - b'0'));
                add(ms, 1)?;
            }
        }
    }
    any.then(|| Duration::from_millis(millis))
}

fn digits(text: &str) -> Option<u64> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> ClientConfig {
        ClientConfig::new("https://srv:5986/wsman", Uuid::from_u128(0xAECF_49AF_7164_43E6_B10A_E38E_8C49_86AD))
    }

    #[test]
    fn durations_read_and_write_as_winrm_does() {
        for (text, ms) in [
            ("PT20S", 20_000),
            ("PT7200.000S", 7_200_000),
            ("P0DT0H0M9S", 9000),
            ("PT2147483.647S", 2_147_483_647),
            ("PT0.5S", 500),
            ("P1D", 86_400_000),
            ("PT1H2M", 3_720_000),
        ] {
            assert_eq!(parse_duration(text), Some(Duration::from_millis(ms)), "{text}");
        }
        for bad in ["", "P", "PT", "PT-1S", "P1Y", "P1M", "PTS", "PT1.S", "PT1.xS", "20", "PT99999999999999999999S"] {
            assert_eq!(parse_duration(bad), None, "{bad}");
        }
        assert_eq!(format_duration(Duration::from_secs(60)), "PT60S");
        assert_eq!(format_duration(Duration::from_millis(1500)), "PT1.500S");
    }

    #[test]
    fn the_configuration_name_makes_the_resource_uri() {
        assert_eq!(
            configuration_uri("Microsoft.PowerShell"),
            "http://schemas.microsoft.com/powershell/Microsoft.PowerShell"
        );
        assert_eq!(configuration_uri("JEAMaintenance"), "http://schemas.microsoft.com/powershell/JEAMaintenance");
        assert_eq!(
            configuration_uri("http://schemas.microsoft.com/powershell/x"),
            "http://schemas.microsoft.com/powershell/x"
        );
    }

    #[test]
    fn every_request_reads_back_as_built() {
        let shell = ShellRef::new(configuration_uri("JEA"), "76056A84-51DC-4F24-9262-CA2A55464B2B");
        let pid = Uuid::from_u128(7);
        let requests = [
            Request::create_pool(&shell.resource_uri, Uuid::from_u128(1), b"fragments", Some(Duration::from_secs(60))),
            Request::command(&shell, pid, b"create pipeline"),
            Request::send(&shell, InputStream::Pr, Some(pid), b"answer"),
            Request::receive(&shell, None),
            Request::receive(&shell, Some(pid)),
            Request::signal(&shell, pid, SignalCode::PsStop),
            Request::signal(&shell, pid, SignalCode::Terminate),
            Request::delete(&shell),
            Request::disconnect(&shell, Some(Duration::from_secs(600)), Some(BufferMode::Drop)),
            Request::disconnect(&shell, None, None),
            Request::reconnect(&shell, None),
            Request::reconnect(&shell, Some(BufferMode::Block)),
            Request::reconnect_command(&shell, pid),
            Request::connect_pool(&shell, b"connect"),
            Request::connect_command(&shell, pid),
            Request::enumerate_shells(),
            Request::enumerate_commands("76056A84-51DC-4F24-9262-CA2A55464B2B"),
            Request::pull(SHELL_URI, "uuid:1"),
            Request::get_config(),
            Request::get_shell("X").with_operation_timeout(Duration::from_secs(5)),
            Request::get_resource(&ConfigResource::Winrs),
            Request::get_resource(&ConfigResource::Plugin("JEA".into())),
            Request::put_resource(
                &ConfigResource::Winrs,
                "<cfg:Winrs xmlns:cfg=\"http://schemas.microsoft.com/wbem/wsman/1/config/winrs\"><cfg:MaxShellsPerUser \
                 Source='GPO'>5 &amp; more</cfg:MaxShellsPerUser></cfg:Winrs>"
                    .to_owned(),
            ),
        ];
        for r in requests {
            let xml = r.to_xml(&config(), Uuid::from_u128(42));
            let parsed = Request::parse(xml.as_bytes()).unwrap_or_else(|e| panic!("{e}: {xml}"));
            let mut expected = r.clone();
            let timeout = expected.operation_timeout.take().unwrap_or(config().operation_timeout);
            assert_eq!(parsed.request, expected, "{xml}");
            let mut c = config();
            c.operation_timeout = timeout;
            assert_eq!(parsed.header.client_config(), Some(c));
            assert_eq!(parsed.header.message_id, Some(Uuid::from_u128(42)));
        }
    }

    #[test]
    fn fragments_are_sized_to_the_envelope() {
        let shell = ShellRef::new(configuration_uri(DEFAULT_CONFIGURATION), "76056A84-51DC-4F24-9262-CA2A55464B2B");
        let mut c = config();
        for kb in [150u32, 500, 4096] {
            c.max_envelope_size = kb * 1024;
            let size = c.max_fragment_size(&shell).expect("room");
            // The biggest envelope with a fragment of that size stays within MaxEnvelopeSize.
            let pid = Uuid::from_u128(u128::MAX);
            let data = vec![0u8; size];
            for r in [
                Request::send(&shell, InputStream::Stdin, Some(pid), &data),
                Request::command(&shell, pid, &data),
                Request::create_pool(&shell.resource_uri, pid, &data, Some(Duration::from_secs(7200))),
                Request::connect_pool(&shell, &data),
            ] {
                let len = r.to_xml(&c, pid).len();
                assert!(len + ENVELOPE_MARGIN <= c.max_envelope_size as usize, "{kb} KiB: {len}");
            }
        }
        assert_eq!(max_fragment_size(153_600, 1000).expect("room"), (153_600 - 1256) / 4 * 3);
        assert!(max_fragment_size(1000, 800).is_err());
    }
}
