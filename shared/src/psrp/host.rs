//! Host calls (MS-PSRP 2.2.2.15–16, 2.2.3.17; protocol.md §3): the server asks the client's host to
//! read a line, prompt, write, report progress… A call carries `ci` (call id), `mi` (method) and `mp`
//! (arguments); a non-void call is answered with `mr` (the result) or `me` (an error record), on the
//! same pipeline, on the PromptResponse stream. Void calls get no answer.

use std::sync::Arc;

use crate::clixml::{Content, ListKind, Object, Property, Str, Value};

use super::messages::{enum_value, prop};

macro_rules! methods {
    ($($id:literal $name:ident $void:literal,)*) => {
        /// `RemoteHostMethodId`: what a host call asks for.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum HostMethod {
            $(#[doc = stringify!($name)] $name,)*
        }

        impl HostMethod {
            /// From the wire id.
            pub fn from_id(id: i32) -> Option<HostMethod> {
                match id {
                    $($id => Some(HostMethod::$name),)*
                    _ => None,
                }
            }

            /// The wire id.
            pub fn id(self) -> i32 {
                match self {
                    $(HostMethod::$name => $id,)*
                }
            }

            /// The .NET name (`ReadLine`, `PromptForChoice`, …).
            pub fn name(self) -> &'static str {
                match self {
                    $(HostMethod::$name => stringify!($name),)*
                }
            }

            /// Whether the method returns nothing, so the client must not answer.
            pub fn is_void(self) -> bool {
                match self {
                    $(HostMethod::$name => $void,)*
                }
            }
        }
    };
}

methods! {
    1 GetName false, 2 GetVersion false, 3 GetInstanceId false, 4 GetCurrentCulture false, 5 GetCurrentUICulture false,
    6 SetShouldExit true, 7 EnterNestedPrompt true, 8 ExitNestedPrompt true, 9 NotifyBeginApplication true,
    10 NotifyEndApplication true,
    11 ReadLine false, 12 ReadLineAsSecureString false,
    13 Write1 true, 14 Write2 true, 15 WriteLine1 true, 16 WriteLine2 true, 17 WriteLine3 true,
    18 WriteErrorLine true, 19 WriteDebugLine true, 20 WriteProgress true, 21 WriteVerboseLine true, 22 WriteWarningLine true,
    23 Prompt false, 24 PromptForCredential1 false, 25 PromptForCredential2 false, 26 PromptForChoice false,
    27 GetForegroundColor false, 28 SetForegroundColor true, 29 GetBackgroundColor false, 30 SetBackgroundColor true,
    31 GetCursorPosition false, 32 SetCursorPosition true, 33 GetWindowPosition false, 34 SetWindowPosition true,
    35 GetCursorSize false, 36 SetCursorSize true, 37 GetBufferSize false, 38 SetBufferSize true,
    39 GetWindowSize false, 40 SetWindowSize true, 41 GetWindowTitle false, 42 SetWindowTitle true,
    43 GetMaxWindowSize false, 44 GetMaxPhysicalWindowSize false, 45 GetKeyAvailable false,
    46 ReadKey false, 47 FlushInputBuffer true, 48 SetBufferContents1 true, 49 SetBufferContents2 true,
    50 GetBufferContents false, 51 ScrollBufferContents true,
    52 PushRunspace true, 53 PopRunspace true, 54 GetIsRunspacePushed false, 55 GetRunspace false,
    56 PromptForChoiceMultipleSelection false,
}

/// A host call from the server.
#[derive(Clone, Debug, PartialEq)]
pub struct HostCall {
    /// `ci`: the id the answer must carry. Negative for void calls.
    pub call_id: i64,
    /// `mi`
    pub method: HostMethod,
    /// `mp`: the arguments, in order (enum arguments arrive as plain integers).
    pub args: Vec<Value>,
}

impl HostCall {
    /// Reads a RUNSPACEPOOL_HOST_CALL or PIPELINE_HOST_CALL body.
    pub fn parse(body: &Value) -> Result<HostCall, String> {
        let obj = body.as_object().ok_or("a host call is not an object")?;
        let call_id = obj.property("ci").and_then(Value::as_i64).ok_or("a host call without ci")?;
        let id = obj.property("mi").and_then(Value::as_i64).ok_or("a host call without mi")?;
        let method = i32::try_from(id).ok().and_then(HostMethod::from_id).ok_or_else(|| format!("unknown host method {id}"))?;
        let args = match obj.property("mp").and_then(Value::as_object).map(|o| &o.content) {
            Some(Content::List(_, items)) => items.clone(),
            _ => Vec::new(),
        };
        Ok(HostCall { call_id, method, args })
    }

    /// The `i`-th argument as text.
    pub fn text_arg(&self, i: usize) -> Option<&str> {
        self.args.get(i).and_then(Value::as_str)
    }
}

/// The answer to a non-void host call.
#[derive(Clone, Debug, PartialEq)]
pub enum HostResult {
    /// `mr`: the method's return value, already in CLIXML form (see the builders below).
    Value(Value),
    /// `me`: the host could not do it; the message becomes a `RemoteHostExecutionException`.
    Error(String),
}

/// The RUNSPACEPOOL_HOST_RESPONSE / PIPELINE_HOST_RESPONSE body.
pub fn response_body(call_id: i64, method: HostMethod, result: &HostResult) -> Value {
    let mut props = vec![
        prop("ci", Value::I64(call_id)),
        prop("mi", enum_value("System.Management.Automation.Remoting.RemoteHostMethodId", method.name(), method.id())),
    ];
    match result {
        HostResult::Value(v) => props.push(prop("mr", v.clone())),
        HostResult::Error(message) => props.push(prop("me", host_error(message))),
    }
    Value::object(Object { extended: props, ..Object::default() })
}

fn host_error(message: &str) -> Value {
    let exception = Value::object(Object {
        type_names: Some(type_names(&[
            "System.Management.Automation.Remoting.RemoteHostException",
            "System.Management.Automation.RuntimeException",
            "System.SystemException",
            "System.Exception",
            "System.Object",
        ])),
        to_string: Some(message.into()),
        adapted: vec![prop("Message", Value::string(message))],
        ..Object::default()
    });
    Value::object(Object {
        type_names: Some(type_names(&["System.Management.Automation.ErrorRecord", "System.Object"])),
        to_string: Some(message.into()),
        extended: vec![
            prop("Exception", exception),
            prop("TargetObject", Value::Nil),
            prop("FullyQualifiedErrorId", Value::string("RemoteHostExecutionException")),
            prop("InvocationInfo", Value::Nil),
            prop("ErrorCategory_Category", Value::I32(0)),
            prop("ErrorCategory_Activity", Value::string("")),
            prop("ErrorCategory_Reason", Value::string("RemoteHostException")),
            prop("ErrorCategory_TargetName", Value::string("")),
            prop("ErrorCategory_TargetType", Value::string("")),
            prop("ErrorCategory_Message", Value::string(message)),
            prop("SerializeExtendedInfo", Value::Bool(false)),
        ],
        ..Object::default()
    })
}

fn type_names(names: &[&str]) -> Arc<[Str]> {
    names.iter().map(|n| Str::from(*n)).collect::<Vec<_>>().into()
}

/// `Prompt`'s result: a hashtable from field name to the value entered.
pub fn prompt_result(fields: &[(String, Value)]) -> Value {
    Value::object(Object {
        type_names: Some(type_names(&["System.Collections.Hashtable", "System.Object"])),
        content: Content::Dict(fields.iter().map(|(k, v)| (Value::string(k.as_str()), v.clone())).collect()),
        ..Object::default()
    })
}

/// `PromptForCredential`'s result: a PSCredential whose password is a SecureString (`secure` is its
/// `<SS>` bytes, encrypted by the caller with the session key).
pub fn credential_result(user: &str, secure: Vec<u8>) -> Value {
    Value::object(Object {
        type_names: Some(type_names(&["System.Management.Automation.PSCredential", "System.Object"])),
        to_string: Some("System.Management.Automation.PSCredential".into()),
        adapted: vec![prop("UserName", Value::string(user)), prop("Password", Value::SecureString(secure))],
        ..Object::default()
    })
}

/// `PromptForChoiceMultipleSelection`'s result: `Collection<int>`.
pub fn choices_result(indexes: &[i32]) -> Value {
    Value::object(Object {
        type_names: Some(type_names(&[
            "System.Collections.ObjectModel.Collection`1[[System.Int32, System.Private.CoreLib, Version=4.0.0.0, Culture=neutral, PublicKeyToken=7cec85d7bea7798e]]",
            "System.Object",
        ])),
        content: Content::List(ListKind::List, indexes.iter().map(|i| Value::I32(*i)).collect()),
        ..Object::default()
    })
}

/// A field of a `Prompt` call (`FieldDescription`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Field {
    /// `name`: the key of the answer.
    pub name: String,
    /// `label`
    pub label: String,
    /// `parameterTypeFullName` (`System.Security.SecureString` asks for masked input).
    pub type_name: String,
    /// `helpMessage`
    pub help: String,
    /// `isMandatory`
    pub mandatory: bool,
}

/// A choice of a `PromptForChoice` call (`ChoiceDescription`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Choice {
    /// `label`, with `&` before the hot key.
    pub label: String,
    /// `helpMessage`
    pub help: String,
}

fn list_items(v: Option<&Value>) -> &[Value] {
    match v.and_then(Value::as_object).map(|o| &o.content) {
        Some(Content::List(_, items)) => items,
        _ => &[],
    }
}

fn text_prop(o: &Object, name: &str) -> String {
    o.property(name).and_then(Value::as_str).unwrap_or_default().to_owned()
}

impl HostCall {
    /// `Prompt`'s fields (argument 2).
    pub fn fields(&self) -> Vec<Field> {
        list_items(self.args.get(2))
            .iter()
            .filter_map(Value::as_object)
            .map(|o| Field {
                name: text_prop(o, "name"),
                label: text_prop(o, "label"),
                type_name: text_prop(o, "parameterTypeFullName"),
                help: text_prop(o, "helpMessage"),
                mandatory: o.property("isMandatory").and_then(Value::as_bool).unwrap_or(false),
            })
            .collect()
    }

    /// `PromptForChoice`'s choices (argument 2) and default (argument 3; -1 for none).
    pub fn choices(&self) -> (Vec<Choice>, Vec<i32>) {
        let choices = list_items(self.args.get(2))
            .iter()
            .filter_map(Value::as_object)
            .map(|o| Choice { label: text_prop(o, "label"), help: text_prop(o, "helpMessage") })
            .collect();
        let defaults = match self.args.get(3) {
            Some(v) if v.as_i64().is_some() => vec![v.as_i64().unwrap_or(-1) as i32],
            Some(v) => list_items(Some(v)).iter().filter_map(Value::as_i64).map(|i| i as i32).collect(),
            None => Vec::new(),
        };
        (choices, defaults)
    }
}

/// A property, for callers building results.
pub fn property(name: &str, value: Value) -> Property {
    prop(name, value)
}
