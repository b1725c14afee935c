//! The bodies of PSRP messages (MS-PSRP 2.2.2), built and read as CLIXML values. Field names and
//! layouts follow what Windows PowerShell sends (see the recordings in `../shared/fixtures`).

use std::sync::Arc;

use base64::Engine as _;

use crate::clixml::{Content, ListKind, Object, Property, Str, Value, Version};

/// A property.
pub(crate) fn prop(name: &str, value: Value) -> Property {
    Property::new(name, value)
}

fn tn(names: &[&str]) -> Option<Arc<[Str]>> {
    Some(names.iter().map(|n| Str::from(*n)).collect::<Vec<_>>().into())
}

/// An enum value as PowerShell serializes one: its type, `System.Enum`…, the name and the number.
pub fn enum_value(type_name: &str, name: &str, value: i32) -> Value {
    Value::object(Object {
        type_names: tn(&[type_name, "System.Enum", "System.ValueType", "System.Object"]),
        to_string: Some(name.into()),
        content: Content::Primitive(Value::I32(value)),
        ..Object::default()
    })
}

fn bag(props: Vec<Property>) -> Value {
    Value::object(Object { extended: props, ..Object::default() })
}

/// The protocol version psgate offers (PowerShell 5.1–7.5).
pub const PROTOCOL_VERSION: Version = Version::new(2, 3);

/// SESSION_CAPABILITY (MS-PSRP 2.2.2.1). PowerShell always says `PSVersion` 2.0.
pub fn session_capability(protocol: Version) -> Value {
    bag(vec![
        prop("protocolversion", Value::Version(protocol)),
        prop("PSVersion", Value::Version(Version::new(2, 0))),
        prop("SerializationVersion", Value::Version(Version { major: 1, minor: 1, build: Some(0), revision: Some(1) })),
    ])
}

/// What a peer's SESSION_CAPABILITY says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Capability {
    /// `protocolversion`
    pub protocol: Version,
    /// `PSVersion`
    pub ps_version: Version,
    /// `SerializationVersion`
    pub serialization: Version,
}

/// Reads SESSION_CAPABILITY.
pub fn parse_capability(body: &Value) -> Result<Capability, String> {
    let o = body.as_object().ok_or("SESSION_CAPABILITY is not an object")?;
    let version = |n: &str| match o.property(n) {
        Some(Value::Version(v)) => Ok(*v),
        _ => Err(format!("SESSION_CAPABILITY without {n}")),
    };
    Ok(Capability { protocol: version("protocolversion")?, ps_version: version("PSVersion")?, serialization: version("SerializationVersion")? })
}

/// What the client tells the server about its host (`HostInfo`, MS-PSRP 2.2.3.14).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HostInfo {
    /// No host at all: the server uses its own.
    pub host_null: bool,
    /// No UI: prompts fail on the server.
    pub ui_null: bool,
    /// No raw UI (window sizes, key reads).
    pub raw_ui_null: bool,
    /// Use the runspace's host.
    pub use_runspace_host: bool,
}

impl Default for HostInfo {
    /// An interactive host with a UI and no raw UI, as a browser console is.
    fn default() -> Self {
        HostInfo { host_null: false, ui_null: false, raw_ui_null: true, use_runspace_host: false }
    }
}

fn host_info(h: &HostInfo) -> Value {
    bag(vec![
        prop("_isHostNull", Value::Bool(h.host_null)),
        prop("_isHostUINull", Value::Bool(h.ui_null)),
        prop("_isHostRawUINull", Value::Bool(h.raw_ui_null)),
        prop("_useRunspaceHost", Value::Bool(h.use_runspace_host)),
    ])
}

const APARTMENT_STATE: &str = "System.Management.Automation.Runspaces.ApartmentState";

/// INIT_RUNSPACEPOOL (MS-PSRP 2.2.2.2).
pub fn init_runspace_pool(min: i32, max: i32, host: &HostInfo, application_arguments: Option<Value>) -> Value {
    bag(vec![
        prop("MinRunspaces", Value::I32(min)),
        prop("MaxRunspaces", Value::I32(max)),
        prop("PSThreadOptions", enum_value("System.Management.Automation.Runspaces.PSThreadOptions", "Default", 0)),
        prop("ApartmentState", enum_value(APARTMENT_STATE, "UNKNOWN", 2)),
        prop("HostInfo", host_info(host)),
        prop("ApplicationArguments", application_arguments.unwrap_or(Value::Nil)),
    ])
}

/// CONNECT_RUNSPACEPOOL (MS-PSRP 2.2.2.28): empty, or the pool size to ask for.
pub fn connect_runspace_pool(size: Option<(i32, i32)>) -> Value {
    match size {
        Some((min, max)) => bag(vec![prop("MinRunspaces", Value::I32(min)), prop("MaxRunspaces", Value::I32(max))]),
        None => Value::string(""),
    }
}

/// SET_MAX_RUNSPACES / SET_MIN_RUNSPACES (MS-PSRP 2.2.2.6–7).
pub fn set_runspaces(max: bool, count: i32, call_id: i64) -> Value {
    bag(vec![prop(if max { "MaxRunspaces" } else { "MinRunspaces" }, Value::I32(count)), prop("ci", Value::I64(call_id))])
}

/// GET_AVAILABLE_RUNSPACES and RESET_RUNSPACE_STATE (MS-PSRP 2.2.2.10, 2.2.2.31): just the call id.
pub fn call_id_only(call_id: i64) -> Value {
    bag(vec![prop("ci", Value::I64(call_id))])
}

/// PUBLIC_KEY (MS-PSRP 2.2.2.3).
pub fn public_key(blob: &[u8]) -> Value {
    bag(vec![prop("PublicKey", Value::string(base64::engine::general_purpose::STANDARD.encode(blob)))])
}

/// The blob of an ENCRYPTED_SESSION_KEY (MS-PSRP 2.2.2.4).
pub fn parse_encrypted_session_key(body: &Value) -> Result<Vec<u8>, String> {
    let text = body.as_object().and_then(|o| o.property("EncryptedSessionKey")).and_then(Value::as_str).ok_or("ENCRYPTED_SESSION_KEY without a key")?;
    base64::engine::general_purpose::STANDARD.decode(text).map_err(|_| "ENCRYPTED_SESSION_KEY is not base64".to_owned())
}

/// `PipelineResultTypes`: which stream a command's output is merged into.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ResultType {
    /// `None`
    #[default]
    None,
    /// `Output`
    Output,
    /// `Error`
    Error,
}

impl ResultType {
    fn value(self) -> Value {
        let (name, v) = match self {
            ResultType::None => ("None", 0),
            ResultType::Output => ("Output", 1),
            ResultType::Error => ("Error", 2),
        };
        enum_value("System.Management.Automation.Runspaces.PipelineResultTypes", name, v)
    }
}

/// One command of a pipeline (MS-PSRP 2.2.3.12).
#[derive(Clone, Debug, PartialEq)]
pub struct Command {
    /// A command name, or script text when `is_script`.
    pub text: String,
    /// Script text rather than a command name.
    pub is_script: bool,
    /// `UseLocalScope`
    pub use_local_scope: Option<bool>,
    /// Parameters: `(Some(name), value)`, or `(None, value)` for a positional argument.
    pub parameters: Vec<(Option<String>, Value)>,
    /// Merge this command's error stream into its output (`2>&1`).
    pub merge_errors: bool,
}

impl Command {
    /// A script (`Get-Process | Select -First 3`).
    pub fn script(text: impl Into<String>) -> Command {
        Command { text: text.into(), is_script: true, use_local_scope: None, parameters: Vec::new(), merge_errors: false }
    }

    /// A command by name (`Get-Process`), parameters added with [`Command::param`].
    pub fn named(name: impl Into<String>) -> Command {
        Command { is_script: false, ..Command::script(name) }
    }

    /// Adds a named parameter.
    pub fn param(mut self, name: impl Into<String>, value: Value) -> Command {
        self.parameters.push((Some(name.into()), value));
        self
    }

    /// Adds a positional argument.
    pub fn arg(mut self, value: Value) -> Command {
        self.parameters.push((None, value));
        self
    }
}

/// A pipeline to create (the `PowerShell` of CREATE_PIPELINE, MS-PSRP 2.2.2.10, 2.2.3.11).
#[derive(Clone, Debug, PartialEq)]
pub struct PipelineSpec {
    /// The commands, in order.
    pub commands: Vec<Command>,
    /// No input will be sent (END_OF_PIPELINE_INPUT is implied).
    pub no_input: bool,
    /// Add to the remote history (true for commands typed in a console).
    pub add_to_history: bool,
    /// A nested pipeline.
    pub is_nested: bool,
}

impl PipelineSpec {
    /// One script, no input, not added to history.
    pub fn script(text: impl Into<String>) -> PipelineSpec {
        PipelineSpec { commands: vec![Command::script(text)], no_input: true, add_to_history: false, is_nested: false }
    }
}

const LIST_OF_PSOBJECT: &str = "System.Collections.Generic.List`1[[System.Management.Automation.PSObject, System.Management.Automation, Version=1.0.0.0, Culture=neutral, PublicKeyToken=31bf3856ad364e35]]";

fn list(items: Vec<Value>) -> Value {
    Value::object(Object { type_names: tn(&[LIST_OF_PSOBJECT, "System.Object"]), content: Content::List(ListKind::List, items), ..Object::default() })
}

fn command(c: &Command, protocol: Version) -> Value {
    let args = c
        .parameters
        .iter()
        .map(|(name, value)| {
            bag(vec![prop("N", name.as_deref().map_or(Value::Nil, Value::string)), prop("V", value.clone())])
        })
        .collect();
    let (my, to) = if c.merge_errors { (ResultType::Error, ResultType::Output) } else { (ResultType::None, ResultType::None) };
    let mut props = vec![
        prop("Cmd", Value::string(c.text.as_str())),
        prop("IsScript", Value::Bool(c.is_script)),
        prop("UseLocalScope", c.use_local_scope.map_or(Value::Nil, Value::Bool)),
        prop("MergeMyResult", my.value()),
        prop("MergeToResult", to.value()),
        prop("MergePreviousResults", ResultType::None.value()),
        prop("Args", list(args)),
    ];
    // The per-stream merges exist from protocol 2.2; the information stream from 2.3.
    if protocol >= Version::new(2, 2) {
        let error = if c.merge_errors { ResultType::Output } else { ResultType::None };
        props.push(prop("MergeError", error.value()));
        for stream in ["MergeWarning", "MergeVerbose", "MergeDebug"] {
            props.push(prop(stream, ResultType::None.value()));
        }
    }
    if protocol >= Version::new(2, 3) {
        props.push(prop("MergeInformation", ResultType::None.value()));
    }
    bag(props)
}

/// CREATE_PIPELINE (MS-PSRP 2.2.2.10) for a server speaking `protocol`.
pub fn create_pipeline(spec: &PipelineSpec, host: &HostInfo, protocol: Version) -> Value {
    let powershell = bag(vec![
        prop("IsNested", Value::Bool(spec.is_nested)),
        prop("ExtraCmds", Value::Nil),
        prop("Cmds", list(spec.commands.iter().map(|c| command(c, protocol)).collect())),
        prop("History", Value::Nil),
        prop("RedirectShellErrorOutputPipe", Value::Bool(false)),
    ]);
    bag(vec![
        prop("NoInput", Value::Bool(spec.no_input)),
        prop("ApartmentState", enum_value(APARTMENT_STATE, "UNKNOWN", 2)),
        prop("RemoteStreamOptions", enum_value("System.Management.Automation.Runspaces.RemoteStreamOptions", "AddInvocationInfo", 15)),
        prop("AddToHistory", Value::Bool(spec.add_to_history)),
        prop("HostInfo", host_info(host)),
        prop("PowerShell", powershell),
        prop("IsNested", Value::Bool(spec.is_nested)),
    ])
}

/// GET_COMMAND_METADATA (MS-PSRP 2.2.2.14): commands matching `names` (wildcards allowed).
pub fn get_command_metadata(names: &[&str]) -> Value {
    get_command_metadata_in(names, &[])
}

fn strings(items: &[&str]) -> Value {
    Value::object(Object {
        type_names: tn(&["System.String[]", "System.Array", "System.Object"]),
        content: Content::List(ListKind::List, items.iter().map(|n| Value::string(*n)).collect()),
        ..Object::default()
    })
}

/// GET_COMMAND_METADATA of the commands matching `names` in the modules `namespaces` (none: any module), as
/// Import-PSSession asks for them.
pub fn get_command_metadata_in(names: &[&str], namespaces: &[&str]) -> Value {
    // Alias, Function, Filter, Cmdlet (1 | 2 | 4 | 8); ExternalScript and Application are not importable.
    bag(vec![
        prop("Name", strings(names)),
        prop("CommandType", enum_value("System.Management.Automation.CommandTypes", "Alias, Function, Filter, Cmdlet", 15)),
        prop("Namespace", if namespaces.is_empty() { Value::Nil } else { strings(namespaces) }),
        prop("ArgumentList", Value::Nil),
    ])
}

/// The first answer to GET_COMMAND_METADATA: how many commands follow (`CommandMetadataCount`'s `Count`).
pub fn metadata_count(v: &Value) -> Option<u32> {
    // Windows sends it as a `Selected.Microsoft.PowerShell.Commands.GenericMeasureInfo` with only `Count`; a
    // command's metadata has a `Name`.
    let o = v.as_object()?;
    if o.property("Name").is_some() {
        return None;
    }
    u32::try_from(o.property("Count")?.as_i64()?).ok()
}

/// A command as GET_COMMAND_METADATA describes it (MS-PSRP 2.2.3.22): what implicit remoting needs to make its
/// proxy.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CommandMetadata {
    /// `Name`
    pub name: String,
    /// `Namespace`: its module.
    pub namespace: String,
    /// `HelpUri`
    pub help_uri: String,
    /// `CommandType`: `Cmdlet`, `Function`, `Alias`, `Filter`.
    pub command_type: String,
    /// `ResolvedCommandName`: what an alias names.
    pub resolved_command_name: Option<String>,
    /// `OutputType`: the type names it declares.
    pub output_type: Vec<String>,
    /// `Parameters`, in the server's order.
    pub parameters: Vec<ParameterMetadata>,
}

/// One parameter of a [`CommandMetadata`] (`ParameterMetadata`).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ParameterMetadata {
    /// `Name`
    pub name: String,
    /// `ParameterType`
    pub type_name: String,
    /// `Aliases`
    pub aliases: Vec<String>,
    /// `SwitchParameter`
    pub switch: bool,
}

fn list_of(v: Option<&Value>) -> &[Value] {
    match v.and_then(Value::as_object).map(|o| &o.content) {
        Some(Content::List(_, items)) => items,
        _ => &[],
    }
}

fn text_of(v: Option<&Value>) -> String {
    match v {
        Some(Value::Object(o)) => o.to_string.as_deref().map(str::to_owned).or_else(|| o.primitive().and_then(Value::as_str).map(str::to_owned)).unwrap_or_default(),
        Some(v) => v.as_str().unwrap_or_default().to_owned(),
        None => String::new(),
    }
}

impl CommandMetadata {
    /// Reads one command's answer (`None`: not a command's metadata, e.g. the count).
    pub fn from_value(v: &Value) -> Option<CommandMetadata> {
        let o = v.as_object()?;
        let name = o.property("Name")?.as_str()?.to_owned();
        let parameters = match o.property("Parameters").and_then(Value::as_object).map(|p| &p.content) {
            Some(Content::Dict(entries)) => entries
                .iter()
                .map(|(key, meta)| {
                    let m = meta.as_object();
                    let prop = |n: &str| m.and_then(|m| m.property(n));
                    ParameterMetadata {
                        name: prop("Name").and_then(Value::as_str).map_or_else(|| text_of(Some(key)), str::to_owned),
                        type_name: text_of(prop("ParameterType")),
                        aliases: list_of(prop("Aliases")).iter().filter_map(Value::as_str).map(str::to_owned).collect(),
                        switch: prop("SwitchParameter").and_then(Value::as_bool).unwrap_or(false),
                    }
                })
                .collect(),
            _ => Vec::new(),
        };
        Some(CommandMetadata {
            name,
            namespace: text_of(o.property("Namespace")),
            help_uri: text_of(o.property("HelpUri")),
            command_type: text_of(o.property("CommandType")),
            resolved_command_name: o.property("ResolvedCommandName").and_then(Value::as_str).map(str::to_owned),
            output_type: list_of(o.property("OutputType")).iter().map(|t| text_of(Some(t))).filter(|t| !t.is_empty()).collect(),
            parameters,
        })
    }
}

/// `RunspacePoolState` as PowerShell servers send it (the .NET enum; MS-PSRP 2.2.3.4 differs at 6–9).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PoolState {
    /// 0
    BeforeOpen,
    /// 1
    Opening,
    /// 2
    Opened,
    /// 3
    Closed,
    /// 4
    Closing,
    /// 5
    Broken,
    /// 6
    Disconnecting,
    /// 7
    Disconnected,
    /// 8
    Connecting,
}

impl PoolState {
    /// From the wire value.
    pub fn from_i32(v: i32) -> Option<PoolState> {
        use PoolState::*;
        Some(match v {
            0 => BeforeOpen,
            1 => Opening,
            2 => Opened,
            3 => Closed,
            4 => Closing,
            5 => Broken,
            6 => Disconnecting,
            7 => Disconnected,
            8 => Connecting,
            _ => return None,
        })
    }
}

/// `PSInvocationState` (MS-PSRP 2.2.3.5).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PipelineState {
    /// 0
    NotStarted,
    /// 1
    Running,
    /// 2
    Stopping,
    /// 3: stopped by the client
    Stopped,
    /// 4
    Completed,
    /// 5: a terminating error
    Failed,
    /// 6
    Disconnected,
}

impl PipelineState {
    /// From the wire value.
    pub fn from_i32(v: i32) -> Option<PipelineState> {
        use PipelineState::*;
        Some(match v {
            0 => NotStarted,
            1 => Running,
            2 => Stopping,
            3 => Stopped,
            4 => Completed,
            5 => Failed,
            6 => Disconnected,
            _ => return None,
        })
    }

    /// Stopped, Completed or Failed: nothing more will come.
    pub fn is_terminal(self) -> bool {
        matches!(self, PipelineState::Stopped | PipelineState::Completed | PipelineState::Failed)
    }
}

/// Reads RUNSPACEPOOL_STATE or PIPELINE_STATE: the state number and the optional error record.
pub fn parse_state(body: &Value, field: &str) -> Result<(i32, Option<Value>), String> {
    let o = body.as_object().ok_or("a state message is not an object")?;
    let state = o.property(field).and_then(Value::as_i64).ok_or_else(|| format!("a state message without {field}"))?;
    let error = o.property("ExceptionAsErrorRecord").filter(|v| !v.is_nil()).cloned();
    Ok((state as i32, error))
}

/// An error record's parts, as PowerShell shows them (message, category line, position).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ErrorRecordView {
    /// The message (ErrorDetails' if set, else the exception's).
    pub message: String,
    /// `FullyQualifiedErrorId`
    pub fully_qualified_error_id: String,
    /// The category line: `ObjectNotFound: (fake:String) [], CommandNotFoundException`.
    pub category: String,
    /// The target object, as text.
    pub target: String,
    /// The position message (`At line:1 char:1 …`).
    pub position: String,
    /// The exception's .NET type.
    pub exception_type: String,
}

impl ErrorRecordView {
    /// Reads an ErrorRecord (or anything with its shape; strings give a message only).
    pub fn from_value(v: &Value) -> ErrorRecordView {
        let Some(o) = v.as_object() else {
            return ErrorRecordView { message: v.as_str().unwrap_or_default().to_owned(), ..ErrorRecordView::default() };
        };
        let text = |name: &str| o.property(name).and_then(Value::as_str).unwrap_or_default().to_owned();
        let exception = o.property("Exception").and_then(Value::as_object);
        let message = [text("ErrorDetails_Message")]
            .into_iter()
            .chain(exception.and_then(|e| e.property("Message")).and_then(Value::as_str).map(str::to_owned))
            .chain(o.to_string.as_deref().map(str::to_owned))
            .find(|m| !m.is_empty())
            .unwrap_or_default();
        let category = {
            let cat = text("ErrorCategory_Message");
            if cat.is_empty() {
                let name = o.property("ErrorCategory_Category").and_then(Value::as_i64).map(category_name).unwrap_or("NotSpecified");
                format!("{name}: ({}:{}) [{}], {}", text("ErrorCategory_TargetName"), text("ErrorCategory_TargetType"), text("ErrorCategory_Activity"), text("ErrorCategory_Reason"))
            } else {
                cat
            }
        };
        let position = o
            .property("InvocationInfo_PositionMessage")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .or_else(|| o.property("InvocationInfo").and_then(Value::as_object).and_then(|i| i.property("PositionMessage")).and_then(Value::as_str).map(str::to_owned))
            .unwrap_or_default();
        let target = match o.property("TargetObject") {
            Some(Value::Nil) | None => String::new(),
            Some(t) => t.as_str().map(str::to_owned).or_else(|| t.as_object().and_then(|t| t.to_string.as_deref()).map(str::to_owned)).unwrap_or_default(),
        };
        let exception_type = exception.and_then(|e| e.type_names().next()).unwrap_or_default().to_owned();
        ErrorRecordView { message, fully_qualified_error_id: text("FullyQualifiedErrorId"), category, target, position, exception_type }
    }
}

/// `ErrorCategory` names (System.Management.Automation.ErrorCategory).
pub fn category_name(v: i64) -> &'static str {
    const NAMES: [&str; 32] = [
        "NotSpecified", "OpenError", "CloseError", "DeviceError", "DeadlockDetected", "InvalidArgument", "InvalidData",
        "InvalidOperation", "InvalidResult", "InvalidType", "MetadataError", "NotImplemented", "NotInstalled",
        "ObjectNotFound", "OperationStopped", "OperationTimeout", "SyntaxError", "ParserError", "PermissionDenied",
        "ResourceBusy", "ResourceExists", "ResourceUnavailable", "ReadError", "WriteError", "FromStdErr",
        "SecurityError", "ProtocolError", "ConnectionError", "AuthenticationError", "LimitsExceeded", "QuotaExceeded",
        "NotEnabled",
    ];
    usize::try_from(v).ok().and_then(|i| NAMES.get(i)).copied().unwrap_or("NotSpecified")
}
