//! Get-Member's view of a value: a PSSession's real members (as PowerShell's `PSSession` class and its
//! `types.ps1xml` extensions declare them), else what the object carries (adapted properties are `Property`,
//! extended ones `NoteProperty`, plus `System.Object`'s methods, as Get-Member shows a deserialized object).

use psgate_shared::clixml::Value;

use crate::values::{self, text};

/// `(Name, MemberType, Definition)`, sorted as Get-Member sorts (member type, then name).
pub fn of(v: &Value) -> Vec<(String, &'static str, String)> {
    let mut out: Vec<(String, &'static str, String)> = Vec::new();
    if crate::session::is_session(v) {
        out.extend(PSSESSION.iter().map(|(n, k, d)| ((*n).to_owned(), *k, (*d).to_owned())));
    } else {
        out.extend(OBJECT_METHODS.iter().map(|(n, d)| ((*n).to_owned(), "Method", (*d).to_owned())));
        match v.as_object() {
            Some(o) => {
                for p in &o.adapted {
                    out.push((p.name.to_string(), "Property", format!("{} {} {{get;set;}}", short_type(&p.value), p.name)));
                }
                for p in o.extended.iter().filter(|p| !p.value.is_member_set()) {
                    out.push((p.name.to_string(), "NoteProperty", format!("{} {}={}", short_type(&p.value), p.name, text(&p.value))));
                }
            }
            None if matches!(values::primitive(v), Value::String(_)) => {
                out.push(("Length".into(), "Property", "int Length {get;}".into()));
                for (n, d) in STRING_METHODS {
                    out.push(((*n).to_owned(), "Method", (*d).to_owned()));
                }
            }
            None => {}
        }
    }
    out.sort_by(|a, b| a.1.cmp(b.1).then_with(|| a.0.to_lowercase().cmp(&b.0.to_lowercase())));
    out.dedup_by(|a, b| a.0.eq_ignore_ascii_case(&b.0) && a.1 == b.1);
    out
}

/// The short type names Get-Member writes (`string`, `int`, `bool`).
fn short_type(v: &Value) -> String {
    match values::primitive(v) {
        Value::String(_) => "string".into(),
        Value::I32(_) => "int".into(),
        Value::I64(_) => "long".into(),
        Value::Bool(_) => "bool".into(),
        Value::Double(_) => "double".into(),
        Value::Guid(_) => "guid".into(),
        Value::DateTime(_) => "datetime".into(),
        Value::Nil => "object".into(),
        other => {
            let t = values::type_name(other);
            if t == "System.Object" { values::type_name(v).rsplit('.').next().unwrap_or("Object").to_owned() } else { t }
        }
    }
}

const OBJECT_METHODS: &[(&str, &str)] = &[
    ("Equals", "bool Equals(System.Object obj)"),
    ("GetHashCode", "int GetHashCode()"),
    ("GetType", "type GetType()"),
    ("ToString", "string ToString()"),
];

const STRING_METHODS: &[(&str, &str)] = &[
    ("Contains", "bool Contains(string value)"),
    ("EndsWith", "bool EndsWith(string value)"),
    ("IndexOf", "int IndexOf(string value)"),
    ("Replace", "string Replace(string oldValue, string newValue)"),
    ("Split", "string[] Split(char[] separator)"),
    ("StartsWith", "bool StartsWith(string value)"),
    ("Substring", "string Substring(int startIndex), string Substring(int startIndex, int length)"),
    ("ToLower", "string ToLower()"),
    ("ToUpper", "string ToUpper()"),
    ("Trim", "string Trim(), string Trim(char[] trimChars)"),
];

/// PowerShell 7.4's PSSession members (the class's, and the script properties its type data adds).
const PSSESSION: &[(&str, &str, &str)] = &[
    ("Equals", "Method", "bool Equals(System.Object obj)"),
    ("GetHashCode", "Method", "int GetHashCode()"),
    ("GetType", "Method", "type GetType()"),
    ("ToString", "Method", "string ToString()"),
    ("ApplicationPrivateData", "Property", "psprimitivedictionary ApplicationPrivateData {get;}"),
    ("Availability", "Property", "System.Management.Automation.Runspaces.RunspaceAvailability Availability {get;}"),
    ("ComputerName", "Property", "string ComputerName {get;}"),
    ("ComputerType", "Property", "System.Management.Automation.Runspaces.TargetMachineType ComputerType {get;}"),
    ("ConfigurationName", "Property", "string ConfigurationName {get;}"),
    ("ContainerId", "Property", "string ContainerId {get;}"),
    ("Id", "Property", "int Id {get;}"),
    ("InstanceId", "Property", "guid InstanceId {get;}"),
    ("Name", "Property", "string Name {get;set;}"),
    ("Runspace", "Property", "runspace Runspace {get;}"),
    ("Transport", "Property", "string Transport {get;}"),
    ("VMId", "Property", "System.Nullable[guid] VMId {get;}"),
    ("VMName", "Property", "string VMName {get;}"),
    ("DisconnectedOn", "ScriptProperty", "System.Object DisconnectedOn {get=$this.Runspace.DisconnectedOn;}"),
    ("ExpiresOn", "ScriptProperty", "System.Object ExpiresOn {get=$this.Runspace.ExpiresOn;}"),
    ("IdleTimeout", "ScriptProperty", "System.Object IdleTimeout {get=$t = $this.Runspace.ConnectionInfo.IdleTimeout;…}"),
    ("OutputBufferingMode", "ScriptProperty", "System.Object OutputBufferingMode {get=$this.Runspace.ConnectionInfo.OutputBufferingMode;}"),
    ("State", "ScriptProperty", "System.Object State {get=$this.Runspace.RunspaceStateInfo.State;}"),
];
