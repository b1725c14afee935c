//! Get-Member of output objects, from what their CLIXML carries: for each type, its name, then its members
//! with their kind and definition, sorted as Get-Member sorts them (by member type, then name).
//!
//! A deserialized object keeps no methods but those of `System.Object`; its adapted properties (`<Props>`) are
//! `Property` members (`System.Int32 {get;set;}`), its extended ones (`<MS>`) `NoteProperty` members with their
//! value (`int Id=4242`), as Get-Member shows objects that came over remoting.

use psgate_shared::clixml::{Object, Value};

use super::display::{cell, dotnet_type};

/// Types listed at most (Get-Member lists each distinct type once).
pub const MAX_TYPES: usize = 20;

/// The members of one type.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TypeMembers {
    /// `TypeName: …`, as the object names its most derived type.
    pub type_name: String,
    /// Its members, sorted.
    pub members: Vec<Member>,
}

/// One member.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    /// `Name`
    pub name: String,
    /// `MemberType`: `Method`, `NoteProperty`, `Property`.
    pub member_type: &'static str,
    /// `Definition`
    pub definition: String,
}

/// The members of each distinct type among `values` (the first object of a type stands for it).
pub fn members<'a>(values: impl IntoIterator<Item = &'a Value>) -> Vec<TypeMembers> {
    let mut out: Vec<TypeMembers> = Vec::new();
    for v in values {
        if out.len() >= MAX_TYPES {
            break;
        }
        let type_name = type_name(v);
        if !out.iter().any(|t| t.type_name == type_name) {
            out.push(TypeMembers { members: of(v), type_name });
        }
    }
    out
}

/// The name Get-Member gives a value's type.
fn type_name(v: &Value) -> String {
    match v {
        Value::Object(o) => match o.type_names.as_ref().and_then(|t| t.first()) {
            Some(t) => t.to_string(),
            None => o.primitive().map_or("System.Management.Automation.PSCustomObject", dotnet_type).to_owned(),
        },
        Value::Nil => "System.Object".to_owned(),
        other => dotnet_type(other).to_owned(),
    }
}

fn of(v: &Value) -> Vec<Member> {
    let method = |name: &str, definition: &str| Member { name: name.into(), member_type: "Method", definition: definition.into() };
    let mut members = vec![
        method("Equals", "bool Equals(System.Object obj)"),
        method("GetHashCode", "int GetHashCode()"),
        method("GetType", "type GetType()"),
        method("ToString", "string ToString()"),
    ];
    if let Value::Object(o) = v {
        members.extend(properties(o));
    }
    // By member type, then name. A type has tens of members: an insertion sort is plenty (and small).
    let key = |m: &Member| (m.member_type, m.name.to_ascii_lowercase());
    for i in 1..members.len() {
        let mut j = i;
        while j > 0 && key(&members[j - 1]) > key(&members[j]) {
            members.swap(j - 1, j);
            j -= 1;
        }
    }
    members
}

fn properties(o: &Object) -> impl Iterator<Item = Member> + '_ {
    let adapted = o.adapted.iter().map(|p| Member {
        name: p.name.to_string(),
        member_type: "Property",
        definition: format!("{} {{get;set;}}", full_type(&p.value)),
    });
    let extended = o.extended.iter().map(|p| {
        let value = if p.value.is_nil() { "null".to_owned() } else { cell(&p.value) };
        Member { name: p.name.to_string(), member_type: "NoteProperty", definition: format!("{} {}={value}", short_type(&p.value), p.name) }
    });
    adapted.chain(extended)
}

/// A value's .NET type name: an object's first type name, a primitive's type.
fn full_type(v: &Value) -> String {
    match v {
        Value::Object(o) => match o.type_names.as_ref().and_then(|t| t.first()) {
            Some(t) => t.to_string(),
            None => o.primitive().map_or("System.Management.Automation.PSObject", dotnet_type).to_owned(),
        },
        Value::Nil => "System.Object".to_owned(),
        other => dotnet_type(other).to_owned(),
    }
}

/// The type as PowerShell abbreviates it in a definition (`int`, `string`, `datetime`).
fn short_type(v: &Value) -> String {
    const SHORT: &[(&str, &str)] = &[
        ("System.Object", "object"),
        ("System.String", "string"),
        ("System.Int32", "int"),
        ("System.Int64", "long"),
        ("System.Int16", "short"),
        ("System.Byte", "byte"),
        ("System.SByte", "sbyte"),
        ("System.UInt16", "ushort"),
        ("System.UInt32", "uint"),
        ("System.UInt64", "ulong"),
        ("System.Boolean", "bool"),
        ("System.Char", "char"),
        ("System.Double", "double"),
        ("System.Single", "float"),
        ("System.Decimal", "decimal"),
        ("System.DateTime", "datetime"),
        ("System.TimeSpan", "timespan"),
        ("System.Guid", "guid"),
        ("System.Version", "version"),
        ("System.Uri", "uri"),
        ("System.Xml.XmlDocument", "xml"),
        ("System.Byte[]", "byte[]"),
        ("System.Management.Automation.ScriptBlock", "scriptblock"),
        ("System.Security.SecureString", "securestring"),
        ("System.Management.Automation.PSCustomObject", "System.Management.Automation.PSCustomObject"),
    ];
    let full = full_type(v);
    SHORT.iter().find(|(long, _)| *long == full).map_or(full, |(_, short)| (*short).to_owned())
}

#[cfg(test)]
mod tests {
    use psgate_shared::clixml::decode_message;

    use super::*;

    fn obj(xml: &str) -> Value {
        decode_message(xml.as_bytes()).expect("test object decodes")
    }

    #[test]
    fn properties_and_notes_like_get_member_on_deserialized_objects() {
        let p = obj(concat!(
            r#"<Obj><TN><T>Deserialized.System.Diagnostics.Process</T><T>Deserialized.System.Object</T></TN>"#,
            r#"<Props><I32 N="BasePriority">8</I32><Obj N="StartInfo"><TN><T>Deserialized.System.Diagnostics.ProcessStartInfo</T></TN><ToString>x</ToString></Obj></Props>"#,
            r#"<MS><I32 N="Id">4242</I32><S N="Name">pwsh</S><Nil N="Company"/></MS></Obj>"#
        ));
        let t = members([&p]);
        assert_eq!(t.len(), 1);
        assert_eq!(t[0].type_name, "Deserialized.System.Diagnostics.Process");
        let rows: Vec<(&str, &str, &str)> =
            t[0].members.iter().map(|m| (m.name.as_str(), m.member_type, m.definition.as_str())).collect();
        assert_eq!(
            rows,
            [
                ("Equals", "Method", "bool Equals(System.Object obj)"),
                ("GetHashCode", "Method", "int GetHashCode()"),
                ("GetType", "Method", "type GetType()"),
                ("ToString", "Method", "string ToString()"),
                ("Company", "NoteProperty", "object Company=null"),
                ("Id", "NoteProperty", "int Id=4242"),
                ("Name", "NoteProperty", "string Name=pwsh"),
                ("BasePriority", "Property", "System.Int32 {get;set;}"),
                ("StartInfo", "Property", "Deserialized.System.Diagnostics.ProcessStartInfo {get;set;}"),
            ]
        );
    }

    #[test]
    fn each_type_once_and_primitives_too() {
        let a = obj(r#"<Obj><TN><T>A</T></TN><MS><DT N="When">2026-01-02T03:04:05Z</DT></MS></Obj>"#);
        let b = obj(r#"<Obj><TN><T>B</T></TN><MS/></Obj>"#);
        let t = members([&a, &b, &a.clone(), &Value::string("s"), &obj("<Obj><MS><I64 N=\"n\">1</I64></MS></Obj>")]);
        assert_eq!(t.iter().map(|t| t.type_name.as_str()).collect::<Vec<_>>(), ["A", "B", "System.String", "System.Management.Automation.PSCustomObject"]);
        assert_eq!(t[0].members.last().map(|m| m.definition.as_str()), Some("datetime When=2026-01-02 03:04:05"));
        assert_eq!(t[3].members.last().map(|m| m.definition.as_str()), Some("long n=1"));
    }
}
