//! Host calls the prompt makes itself: the fields of a `Prompt` call (a missing mandatory parameter).

use psgate_shared::clixml::Value;

use crate::bind::Kind;
use crate::values;

/// A `FieldDescription` for a parameter (a `SecureString` one asks for masked input).
pub fn field(name: &str, kind: Kind, help: &str) -> Value {
    let type_name = kind.type_name();
    values::object(
        &["System.Management.Automation.Host.FieldDescription"],
        None,
        vec![
            ("name", Value::string(name)),
            ("label", Value::string(if matches!(kind, Kind::Strings | Kind::Ints | Kind::Objects | Kind::Guids | Kind::Sessions) { format!("{name}[0]") } else { name.to_owned() })),
            ("parameterTypeName", Value::string(type_name.rsplit('.').next().unwrap_or(type_name))),
            ("parameterTypeFullName", Value::string(type_name)),
            ("parameterAssemblyFullName", Value::string("System.Private.CoreLib")),
            ("helpMessage", Value::string(help)),
            ("isMandatory", Value::Bool(true)),
            ("modifiedByRemotingProtocol", Value::Bool(false)),
            ("metadata", values::array(Vec::new())),
            ("defaultValue", Value::Nil),
        ],
    )
}
