//! WS-Management (MS-WSMV) as WinRM's PowerShell plugin speaks it: the SOAP envelopes of PowerShell Remoting over
//! WinRM (MS-PSRP 3.1.5.3, `protocol.md` §4 and §7), built and parsed by pure code.
//!
//! No IO here: requests come out as text and responses go in as bytes; ids (MessageID, ShellId = RPID,
//! CommandId = PID) and the client's `wsmv:SessionId` come from the caller, so the HTTP transport owns time,
//! randomness and sockets. Nothing a server sends can panic this module: every malformed envelope is a
//! [`WsmanError`], every SOAP fault a [`WsmanFault`] with a [`FaultKind`].
//!
//! - [`envelope`]: [`Request`] (Create with `creationXml`, Command, Send, Receive, Signal, Delete, Disconnect,
//!   Reconnect, Connect, Enumerate/Pull, WS-Transfer Get and Put) with headers laid out as pypsrp sends them to
//!   Windows; [`parse_response`] into typed responses; [`max_fragment_size`], the largest PSRP fragment an envelope
//!   holds.
//! - [`config`]: WinRM's configuration resources ([`ConfigResource`]) as PowerShell's WSMan provider reads and
//!   changes them: their settings as [`ConfigItem`]s, one setting edited in the resource's own XML to Put back.
//! - [`fault`]: SOAP faults as [`WsmanFault`], classified: operation timeout, shell gone, access denied, the quota
//!   that was hit, a configuration change refused (Group Policy, read-only, out of range, not in the schema).
//! - [`xml`]: the bounded, namespace-aware XML tree the parsers read.

pub mod config;
pub mod envelope;
pub mod fault;
pub mod xml;

pub use config::{ConfigDocument, ConfigItem, ConfigResource, ItemKind};

pub use envelope::{
    Action, Body, BufferMode, ClientConfig, CommandState, CommandStateKind, ConnectResponse, CreateResponse,
    CreateShell, EnumItem, EnumerationResponse, GetResponse, InputStream, ParsedRequest, ReceiveResponse,
    ReceivedStream, Request, RequestHeader, Response, ResponseEnvelope, Selector, SendStream, ServerConfig, ShellInfo,
    ShellRef, ShellState, SignalCode, WsmanOption, configuration_uri, max_fragment_size, parse_response,
};
pub use fault::{FaultKind, Quota, WsmanFault};

/// WS-Management's namespaces (MS-WSMV 2.2.1), under the prefixes `protocol.md` uses.
pub mod ns {
    /// SOAP 1.2.
    pub const S: &str = "http://www.w3.org/2003/05/soap-envelope";
    /// WS-Addressing (2004/08).
    pub const WSA: &str = "http://schemas.xmlsoap.org/ws/2004/08/addressing";
    /// DMTF WS-Management.
    pub const WSMAN: &str = "http://schemas.dmtf.org/wbem/wsman/1/wsman.xsd";
    /// Microsoft's WS-Management extensions (`DataLocale`, `SessionId`).
    pub const WSMV: &str = "http://schemas.microsoft.com/wbem/wsman/1/wsman.xsd";
    /// The Windows remote shell.
    pub const RSP: &str = "http://schemas.microsoft.com/wbem/wsman/1/windows/shell";
    /// WS-Enumeration.
    pub const WSEN: &str = "http://schemas.xmlsoap.org/ws/2004/09/enumeration";
    /// WS-Transfer.
    pub const WST: &str = "http://schemas.xmlsoap.org/ws/2004/09/transfer";
    /// The detail of a WinRM fault.
    pub const WSMANFAULT: &str = "http://schemas.microsoft.com/wbem/wsman/1/wsmanfault";
    /// WinRM's configuration (`cfg:Config`).
    pub const CFG: &str = "http://schemas.microsoft.com/wbem/wsman/1/config";
    /// PowerShell's open content (`creationXml`, `connectXml`, `connectResponseXml`).
    pub const PWSH: &str = "http://schemas.microsoft.com/powershell";
    /// `xml:lang`.
    pub const XML: &str = "http://www.w3.org/XML/1998/namespace";
    /// The CIM error some WinRM faults carry instead of `wsmanfault:WSManFault` (`MSFT_WmiError`).
    pub const WMI_ERROR: &str = "http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/MSFT_WmiError";
}

/// Why a WS-Management message could not be read, or the fault the server answered.
#[derive(Debug, thiserror::Error)]
pub enum WsmanError {
    /// The server answered a SOAP fault.
    #[error("{0}")]
    Fault(Box<WsmanFault>),
    /// The bytes are not UTF-8 (WinRM answers in the charset asked for, UTF-8).
    #[error("the envelope is not UTF-8 (at byte {position})")]
    NotUtf8 { position: usize },
    /// Not well-formed XML.
    #[error("malformed XML at byte {position}: {message}")]
    Xml { position: u64, message: String },
    /// A bound of [`xml`] was exceeded.
    #[error("the envelope exceeds the limit of {limit} {what}")]
    TooLarge { what: &'static str, limit: usize },
    /// Well-formed, but not the envelope expected (no `s:Envelope`, no `s:Body`, an unknown action).
    #[error("not a WS-Management {expected}: {found}")]
    Unexpected { expected: &'static str, found: String },
    /// A required element or attribute is absent.
    #[error("{0} is missing")]
    Missing(&'static str),
    /// [`config::edit`] was asked for a setting the configuration resource does not have (or for a container).
    #[error("the configuration resource {resource} has no setting {path}")]
    UnknownSetting {
        /// The path asked for.
        path: String,
        /// The resource's element, by local name (`Winrs`, `PlugInConfiguration`).
        resource: String,
    },
    /// A value does not parse (a number, a duration, base64, an enumeration).
    #[error("invalid {what}: {value:?}")]
    Invalid { what: &'static str, value: String },
    /// The response does not answer the request: another action, or `wsa:RelatesTo` names another message.
    #[error("the response does not answer the request: {0}")]
    Mismatch(String),
    /// `MaxEnvelopeSize` leaves no room for a PSRP fragment after the envelope's own size.
    #[error(
        "a MaxEnvelopeSize of {max_envelope_size} bytes leaves no room for data after {overhead} bytes of envelope"
    )]
    EnvelopeTooSmall { max_envelope_size: usize, overhead: usize },
}

impl WsmanError {
    /// The fault, when the server answered one.
    pub fn fault(&self) -> Option<&WsmanFault> {
        match self {
            WsmanError::Fault(f) => Some(f),
            _ => None,
        }
    }

    /// The fault's kind, when the server answered one.
    pub fn fault_kind(&self) -> Option<FaultKind> {
        self.fault().map(WsmanFault::kind)
    }

    /// Whether this is the fault a Receive gets when `OperationTimeout` passed without output: the Receive is then
    /// sent again, unchanged (MS-WSMV 3.1.4.14).
    pub fn is_operation_timeout(&self) -> bool {
        self.fault_kind() == Some(FaultKind::OperationTimeout)
    }
}

/// The body of the `wsman_envelope` fuzz target (`fuzz/`), here so that `cargo test` replays its regression corpus
/// (`relay/test_data/fuzz/wsman_envelope`) with the same checks.
///
/// Reads `data` as a response and as a request. A request that parses is built again and must parse back to the
/// same request (escaping and the model agree); decoded payloads can never outgrow their envelope. A Get or Put
/// answer is read as a configuration resource too, and editing any of its first settings changes that setting only.
///
/// # Panics
/// When the parser or the builder breaks one of those invariants: that is what the fuzzer looks for.
pub fn fuzz_parse(data: &[u8]) {
    if let Ok(doc) = xml::Document::parse(data) {
        let _ = fault::WsmanFault::from_document(&doc);
    }
    match parse_response(data) {
        Ok(envelope) => {
            if let Response::Receive(r) = &envelope.body {
                let decoded: usize = r.streams.iter().map(|s| s.data.len()).sum();
                assert!(decoded <= data.len(), "decoded streams outgrow their envelope");
            }
        }
        Err(WsmanError::Fault(f)) => {
            let _ = f.kind();
            let _ = f.to_string();
        }
        Err(_) => {}
    }
    if let Ok((_, Some(resource))) = config::parse_config_response(data) {
        check_config_edits(&resource);
    }
    if let Ok(parsed) = Request::parse(data) {
        let Some(config) = parsed.header.client_config() else { return };
        let message_id = parsed.header.message_id.unwrap_or_default();
        let xml = parsed.request.to_xml(&config, message_id);
        let again =
            Request::parse(xml.as_bytes()).unwrap_or_else(|e| panic!("a built request does not parse ({e}): {xml}"));
        assert_eq!(again.request, parsed.request, "a request changed when built again: {xml}");
        assert_eq!(again.header.client_config(), Some(config), "the header changed when built again: {xml}");
    }
}

/// Each of the first settings of `resource`, edited to a value that needs escaping, reads back as that value with
/// every other setting unchanged.
fn check_config_edits(resource: &ConfigDocument) {
    const VALUE: &str = "a<b>&\"c'";
    for (i, item) in resource.items.iter().enumerate().take(16) {
        // A path that two settings share edits the one it finds first: check only the ones it finds.
        if !resource.item(&item.path).is_some_and(|found| std::ptr::eq(found, item)) {
            continue;
        }
        let edited = config::edit(&resource.xml, &item.path, VALUE)
            .unwrap_or_else(|e| panic!("a setting of a parsed resource cannot be edited ({e}): {}", item.path));
        let after =
            config::items(&edited).unwrap_or_else(|e| panic!("an edited resource does not parse ({e}): {edited}"));
        let mut expected = resource.items.clone();
        if let Some(changed) = expected.get_mut(i) {
            changed.value = VALUE.to_owned();
        }
        assert_eq!(after, expected, "editing {} changed something else: {edited}", item.path);
    }
}
