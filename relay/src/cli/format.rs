//! Text for a terminal: objects the way PowerShell's console shows them, simply.

use psgate_shared::clixml::{Content, Object, Value};

/// An output object as text: a primitive as itself; an object with properties as a list
/// (`Name : value`, like Format-List); an enum or wrapped primitive as its ToString.
pub fn value_text(v: &Value) -> String {
    match v {
        Value::Object(o) if o.properties().next().is_some() && !matches!(o.content, Content::Primitive(_)) => list_text(o),
        _ => scalar_text(v),
    }
}

fn list_text(o: &Object) -> String {
    let width = o.properties().map(|p| p.name.chars().count()).max().unwrap_or(0);
    let mut out = String::new();
    for p in o.properties() {
        let value = scalar_text(&p.value).replace('\n', &format!("\n{:width$}   ", ""));
        out.push_str(&format!("{:width$} : {value}\n", p.name));
    }
    out
}

/// One value on one line (nested objects by their ToString or type).
pub fn scalar_text(v: &Value) -> String {
    match v {
        Value::Nil => String::new(),
        Value::Bool(b) => if *b { "True" } else { "False" }.to_owned(),
        Value::String(s) | Value::Uri(s) | Value::Xml(s) | Value::ScriptBlock(s) | Value::Decimal(s) => s.to_string(),
        Value::Char(c) => char::from_u32(u32::from(*c)).map(String::from).unwrap_or_default(),
        Value::U8(x) => x.to_string(),
        Value::I8(x) => x.to_string(),
        Value::U16(x) => x.to_string(),
        Value::I16(x) => x.to_string(),
        Value::U32(x) => x.to_string(),
        Value::I32(x) => x.to_string(),
        Value::U64(x) => x.to_string(),
        Value::I64(x) => x.to_string(),
        Value::Single(x) => psgate_shared::clixml::single_text(*x),
        Value::Double(x) => psgate_shared::clixml::double_text(*x),
        Value::DateTime(d) => d.to_string(),
        Value::TimeSpan(t) => t.to_string(),
        Value::Bytes(b) => format!("{} bytes", b.len()),
        Value::SecureString(_) => "System.Security.SecureString".to_owned(),
        Value::Guid(g) => g.to_string(),
        Value::Version(v) => v.to_string(),
        Value::Progress(p) => p.activity.to_string(),
        Value::Cycle(_) => "…".to_owned(),
        Value::Object(o) => match (&o.to_string, &o.content) {
            (Some(s), _) => s.to_string(),
            (None, Content::Primitive(p)) => scalar_text(p),
            (None, Content::List(_, items)) => format!("{{{}}}", items.iter().map(scalar_text).collect::<Vec<_>>().join(", ")),
            (None, _) => o.type_names().next().unwrap_or("PSObject").to_owned(),
        },
    }
}

/// The message of a warning, verbose, debug or information record.
pub fn record_text(v: &Value) -> String {
    let Some(o) = v.as_object() else { return scalar_text(v) };
    for name in ["InformationalRecord_Message", "Message", "MessageData"] {
        if let Some(m) = o.property(name) {
            return match m.as_object() {
                // Write-Host: a HostInformationMessage in MessageData.
                Some(inner) if inner.property("Message").is_some() => scalar_text(inner.property("Message").unwrap_or(&Value::Nil)),
                _ => scalar_text(m),
            };
        }
    }
    scalar_text(v)
}

/// A progress record as one status line, or nothing for a completed one.
pub fn progress_text(v: &Value) -> Option<String> {
    let o = v.as_object()?;
    let text = |n: &str| o.property(n).map(scalar_text).unwrap_or_default();
    let record_type = o.property("Type").map(scalar_text).unwrap_or_default();
    if record_type == "Completed" {
        return None;
    }
    let percent = o.property("PercentComplete").and_then(Value::as_i64).unwrap_or(-1);
    let mut line = format!("{}: {}", text("Activity"), text("StatusDescription"));
    if percent >= 0 {
        line.push_str(&format!(" ({percent}%)"));
    }
    Some(line)
}

#[cfg(test)]
mod tests {
    use psgate_shared::clixml::decode_message;

    use super::*;

    #[test]
    fn objects_print_as_lists_and_primitives_as_themselves() {
        let v = decode_message(br#"<Obj RefId="0"><TN RefId="0"><T>T</T></TN><ToString>x</ToString><Props><S N="Name">svchost</S><I32 N="Id">42</I32></Props></Obj>"#).expect("decodes");
        assert_eq!(value_text(&v), "Name : svchost\nId   : 42\n");
        assert_eq!(value_text(&Value::I32(5)), "5");
        let e = decode_message(br#"<Obj RefId="0"><TN RefId="0"><T>System.ConsoleColor</T><T>System.Enum</T></TN><ToString>Red</ToString><I32>12</I32></Obj>"#).expect("decodes");
        assert_eq!(value_text(&e), "Red");
        let w = decode_message(br#"<Obj RefId="0"><ToString>careful</ToString><MS><S N="InformationalRecord_Message">careful</S></MS></Obj>"#).expect("decodes");
        assert_eq!(record_text(&w), "careful");
    }
}
