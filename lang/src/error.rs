//! Errors as PowerShell shows them: parse errors with their place, and error records (the same CLIXML shape a
//! remote PowerShell sends, so the console renders local and remote errors alike).

use psgate_shared::clixml::{Object, Property, Value};

use crate::ast::Span;

/// A line psgate's prompt cannot read: PowerShell's error id, its message, and where.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ParseError {
    /// PowerShell's `FullyQualifiedErrorId` (`MissingEndParenthesisInExpression`).
    pub id: &'static str,
    /// The message, as PowerShell words it.
    pub message: String,
    /// Where.
    pub span: Span,
}

impl ParseError {
    /// A parse error.
    pub fn new(id: &'static str, message: impl Into<String>, span: Span) -> ParseError {
        ParseError { id, message: message.into(), span }
    }

    /// As an error record (category ParserError).
    pub fn record(&self, line: &str) -> Value {
        ErrorSpec {
            message: self.message.clone(),
            id: self.id.to_owned(),
            category: Category::ParserError,
            exception: "System.Management.Automation.ParseException",
            target: None,
            activity: String::new(),
            position: Some(position_message(line, self.span)),
        }
        .record()
    }
}

/// `At line:1 char:20` and the line with the place underlined, as PowerShell's `PositionMessage`.
pub fn position_message(text: &str, span: Span) -> String {
    let start = (span.start as usize).min(text.len());
    let start = floor_boundary(text, start);
    let line_start = text[..start].rfind('\n').map_or(0, |i| i + 1);
    let line_no = text[..start].matches('\n').count() + 1;
    let line_end = text[start..].find(['\n', '\r']).map_or(text.len(), |i| start + i);
    let line = &text[line_start..line_end];
    let column = text[line_start..start].chars().count();
    let end = floor_boundary(text, (span.end as usize).clamp(start, line_end));
    let width = text[start..end].chars().count().max(1);
    format!("At line:{line_no} char:{}\n+ {line}\n+ {}{}", column + 1, " ".repeat(column), "~".repeat(width))
}

fn floor_boundary(text: &str, mut i: usize) -> usize {
    while i > 0 && !text.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// PowerShell's `ErrorCategory` (the numbers are the enum's).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum Category {
    NotSpecified = 0,
    InvalidArgument = 5,
    InvalidData = 6,
    InvalidOperation = 7,
    InvalidResult = 8,
    InvalidType = 9,
    NotImplemented = 11,
    ObjectNotFound = 13,
    OperationStopped = 14,
    OperationTimeout = 15,
    ParserError = 17,
    PermissionDenied = 18,
    ResourceBusy = 19,
    ResourceUnavailable = 21,
    OpenError = 1,
    CloseError = 2,
    ConnectionError = 27,
    AuthenticationError = 28,
    QuotaExceeded = 30,
}

impl Category {
    /// The name PowerShell prints.
    pub fn name(self) -> &'static str {
        psgate_shared::psrp::messages::category_name(self as i64)
    }
}

/// What an error record says.
#[derive(Clone, Debug)]
pub struct ErrorSpec {
    /// The exception's message.
    pub message: String,
    /// `FullyQualifiedErrorId`
    pub id: String,
    /// The category.
    pub category: Category,
    /// The exception's .NET type.
    pub exception: &'static str,
    /// The target object's text.
    pub target: Option<String>,
    /// The command that failed (the category's activity).
    pub activity: String,
    /// The position message.
    pub position: Option<String>,
}

impl ErrorSpec {
    /// An error record in the shape PowerShell serializes one (the flattened `ErrorCategory_*` and
    /// `InvocationInfo_*` properties included, which is what consoles read).
    pub fn record(&self) -> Value {
        let exception = Object {
            type_names: Some(exception_types(self.exception).into()),
            to_string: Some(self.message.as_str().into()),
            extended: vec![Property::new("Message", Value::string(self.message.as_str()))],
            ..Object::default()
        };
        let reason = self.exception.rsplit('.').next().unwrap_or_default();
        let target = self.target.clone().unwrap_or_default();
        let target_type = if self.target.is_some() { "String" } else { "" };
        let category_message = format!("{}: ({target}:{target_type}) [{}], {reason}", self.category.name(), self.activity);
        let mut extended = vec![
            Property::new("Exception", Value::object(exception)),
            Property::new("TargetObject", self.target.as_deref().map_or(Value::Nil, Value::string)),
            Property::new("FullyQualifiedErrorId", Value::string(self.id.as_str())),
            Property::new("InvocationInfo", Value::Nil),
            Property::new("ErrorCategory_Category", Value::I32(self.category as i32)),
            Property::new("ErrorCategory_Activity", Value::string(self.activity.as_str())),
            Property::new("ErrorCategory_Reason", Value::string(reason)),
            Property::new("ErrorCategory_TargetName", Value::string(target.as_str())),
            Property::new("ErrorCategory_TargetType", Value::string(target_type)),
            Property::new("ErrorCategory_Message", Value::string(category_message)),
            Property::new("SerializeExtendedInfo", Value::Bool(self.position.is_some())),
        ];
        if let Some(position) = &self.position {
            extended.push(Property::new("InvocationInfo_PositionMessage", Value::string(position.as_str())));
        }
        Value::object(Object {
            type_names: Some(vec!["System.Management.Automation.ErrorRecord".into(), "System.Object".into()].into()),
            to_string: Some(self.message.as_str().into()),
            extended,
            ..Object::default()
        })
    }
}

fn exception_types(exception: &str) -> Vec<psgate_shared::clixml::Str> {
    let mut types = vec![exception.into()];
    match exception {
        "System.Management.Automation.ParseException"
        | "System.Management.Automation.CommandNotFoundException"
        | "System.Management.Automation.ParameterBindingException"
        | "System.Management.Automation.PipelineStoppedException" => {
            types.push("System.Management.Automation.RuntimeException".into());
        }
        "System.Management.Automation.Remoting.PSRemotingTransportException" => {
            types.push("System.Management.Automation.RuntimeException".into());
        }
        _ => {}
    }
    types.push("System.SystemException".into());
    types.push("System.Exception".into());
    types.push("System.Object".into());
    types
}

/// An error a statement stops on: a record to show, and whether it ends the whole line (`exit` has its own way).
#[derive(Clone, Debug, PartialEq)]
pub struct Failure {
    /// The error record.
    pub record: Value,
}

impl Failure {
    /// From a spec.
    pub fn new(spec: ErrorSpec) -> Failure {
        Failure { record: spec.record() }
    }

    /// The message.
    pub fn message(&self) -> String {
        psgate_shared::psrp::messages::ErrorRecordView::from_value(&self.record).message
    }
}

/// A warning, verbose or debug record (`kind`: `Warning`, `Verbose`, `Debug`) as PowerShell serializes one.
pub fn informational(kind: &str, message: &str) -> Value {
    Value::object(Object {
        type_names: Some(vec![format!("System.Management.Automation.{kind}Record").into(), "System.Management.Automation.InformationalRecord".into(), "System.Object".into()].into()),
        to_string: Some(message.into()),
        extended: vec![Property::new("InformationalRecord_Message", Value::string(message)), Property::new("InformationalRecord_SerializeInvocationInfo", Value::Bool(false))],
        ..Object::default()
    })
}

/// Text for the console as Write-Host writes it (an information record tagged `PSHOST`).
pub fn host_text(message: &str) -> Value {
    let data = Value::object(Object {
        type_names: Some(vec!["System.Management.Automation.HostInformationMessage".into(), "System.Object".into()].into()),
        to_string: Some(message.into()),
        extended: vec![
            Property::new("Message", Value::string(message)),
            Property::new("NoNewLine", Value::Bool(false)),
            Property::new("ForegroundColor", Value::Nil),
            Property::new("BackgroundColor", Value::Nil),
        ],
        ..Object::default()
    });
    Value::object(Object {
        type_names: Some(vec!["System.Management.Automation.InformationRecord".into(), "System.Object".into()].into()),
        to_string: Some(message.into()),
        extended: vec![
            Property::new("MessageData", data),
            Property::new("Source", Value::string("psgate")),
            Property::new("Tags", crate::values::array(vec![Value::string("PSHOST")])),
        ],
        ..Object::default()
    })
}
