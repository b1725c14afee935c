//! Display strings for values: the short one-line form of a table cell (what PowerShell's formatter would
//! print) and the full text of a primitive (what the tree shows).

use psgate_shared::clixml::{Content, DateTime, Object, ProgressRecord, TimeSpan, Value};

/// How many items of a collection a cell shows before `…`, like PowerShell's `$FormatEnumerationLimit`.
pub const ENUMERATION_LIMIT: usize = 4;

/// Longest cell text, in characters, before it is cut with `…`.
pub const CELL_CHARS: usize = 120;

/// The short, single-line display string of a value, as a Format-Table cell shows it.
pub fn cell(value: &Value) -> String {
    let mut out = String::new();
    write_cell(&mut out, value, 0);
    truncate(first_line(&out), CELL_CHARS)
}

/// The full text of a scalar value (primitives, strings in full), or `None` for objects, progress records and
/// cycles, which the tree shows as nodes.
pub fn scalar_text(value: &Value) -> Option<String> {
    Some(match value {
        Value::Nil => "$null".to_owned(),
        Value::Bool(b) => if *b { "True" } else { "False" }.to_owned(),
        Value::Char(c) => char_text(*c),
        Value::U8(v) => v.to_string(),
        Value::I8(v) => v.to_string(),
        Value::U16(v) => v.to_string(),
        Value::I16(v) => v.to_string(),
        Value::U32(v) => v.to_string(),
        Value::I32(v) => v.to_string(),
        Value::U64(v) => v.to_string(),
        Value::I64(v) => v.to_string(),
        Value::Single(v) => single(*v),
        Value::Double(v) => double(*v),
        Value::Decimal(d) => d.to_string(),
        Value::String(s) | Value::Uri(s) | Value::Xml(s) | Value::ScriptBlock(s) => s.to_string(),
        Value::DateTime(dt) => datetime_full(dt),
        Value::TimeSpan(ts) => timespan(*ts),
        Value::Bytes(b) => hex(b),
        Value::Guid(g) => g.hyphenated().to_string(),
        Value::Version(v) => v.to_string(),
        Value::SecureString(b) => format!("System.Security.SecureString ({} encrypted bytes)", b.len()),
        Value::Progress(_) | Value::Object(_) | Value::Cycle(_) => return None,
    })
}

/// The .NET type a primitive tag stands for (MS-PSRP 2.2.5.1), for tooltips next to the tag.
pub fn dotnet_type(value: &Value) -> &'static str {
    value.dotnet_type()
}

/// The type name to show for an object: the most derived one, without `Deserialized.`.
pub fn object_type(obj: &Object) -> Option<&str> {
    obj.type_names().next()
}

/// Whether a value is a number, so that its table column is right-aligned as Format-Table does.
pub fn is_numeric(value: &Value) -> bool {
    match value {
        Value::U8(_)
        | Value::I8(_)
        | Value::U16(_)
        | Value::I16(_)
        | Value::U32(_)
        | Value::I32(_)
        | Value::U64(_)
        | Value::I64(_)
        | Value::Single(_)
        | Value::Double(_)
        | Value::Decimal(_) => true,
        Value::Object(o) => !o.is_enum() && o.to_string.is_none() && o.primitive().is_some_and(is_numeric),
        _ => false,
    }
}

fn write_cell(out: &mut String, value: &Value, depth: usize) {
    match value {
        Value::Nil => {}
        Value::Bytes(b) => enumeration(out, b.iter().take(ENUMERATION_LIMIT).map(|b| b.to_string()), b.len()),
        Value::Progress(pr) => out.push_str(&progress_summary(pr)),
        Value::Cycle(_) => out.push_str("(cycle)"),
        Value::DateTime(dt) => out.push_str(&datetime_short(dt)),
        Value::Object(o) => write_object(out, o, depth),
        other => out.push_str(&scalar_text(other).unwrap_or_default()),
    }
}

fn write_object(out: &mut String, obj: &Object, depth: usize) {
    // Collections are enumerated, as PowerShell does, whatever their ToString says (`System.Object[]`).
    match &obj.content {
        Content::List(_, items) if depth < 2 => {
            let shown = items.iter().take(ENUMERATION_LIMIT).map(|v| {
                let mut s = String::new();
                write_cell(&mut s, v, depth + 1);
                s
            });
            return enumeration(out, shown, items.len());
        }
        Content::Dict(entries) if depth < 2 => {
            let shown = entries.iter().take(ENUMERATION_LIMIT).map(|(k, v)| {
                let mut s = String::from("[");
                write_cell(&mut s, k, depth + 1);
                s.push_str(", ");
                write_cell(&mut s, v, depth + 1);
                s.push(']');
                s
            });
            return enumeration(out, shown, entries.len());
        }
        Content::List(..) | Content::Dict(_) => return out.push_str("{…}"),
        _ => {}
    }
    if let Some(s) = &obj.to_string {
        out.push_str(s);
    } else if let Content::Primitive(v) = &obj.content {
        write_cell(out, v, depth + 1);
    } else if obj.properties().next().is_some() && depth < 2 {
        // A property bag without ToString prints like a PSCustomObject: @{A=1; B=x}.
        out.push_str("@{");
        for (i, p) in obj.properties().enumerate() {
            if i > 0 {
                out.push_str("; ");
            }
            out.push_str(&p.name);
            out.push('=');
            write_cell(out, &p.value, depth + 1);
            if out.len() > CELL_CHARS * 4 {
                break;
            }
        }
        out.push('}');
    } else if let Some(t) = object_type(obj) {
        out.push_str(t);
    }
}

fn enumeration(out: &mut String, shown: impl Iterator<Item = String>, total: usize) {
    out.push('{');
    for (i, s) in shown.enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        out.push_str(&s);
    }
    if total > ENUMERATION_LIMIT {
        out.push('…');
    }
    out.push('}');
}

/// `Activity: status (60 %)`, one line.
pub fn progress_summary(pr: &ProgressRecord) -> String {
    let mut s = pr.activity.to_string();
    if let Some(sd) = pr.status_description.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
        s.push_str(": ");
        s.push_str(sd);
    }
    if pr.percent_complete >= 0 {
        s.push_str(&format!(" ({} %)", pr.percent_complete));
    }
    s
}

/// The first line of a text, with `…` when more follow.
pub fn first_line(s: &str) -> String {
    let s = s.trim_start_matches(['\r', '\n']);
    match s.find(['\r', '\n']) {
        Some(i) if !s[i..].trim().is_empty() => format!("{}…", &s[..i]),
        Some(i) => s[..i].to_owned(),
        None => s.to_owned(),
    }
}

/// `s` cut to at most `max` characters, the last being `…` when cut.
pub fn truncate(s: String, max: usize) -> String {
    match s.char_indices().nth(max.saturating_sub(1)) {
        Some((i, _)) if s[i..].chars().nth(1).is_some() => format!("{}…", &s[..i]),
        _ => s,
    }
}

/// A UTF-16 code unit as text: itself when it is a character, its number when it is half a surrogate pair.
fn char_text(c: u16) -> String {
    char::from_u32(c.into()).map_or_else(|| format!("\\u{c:04X}"), String::from)
}

/// Doubles as .NET Core prints them: the shortest round-trip digits, scientific from 1E+15 and from 1E-05
/// down (CLIXML's own text form), infinities spelled out.
pub fn double(v: f64) -> String {
    if v.is_infinite() {
        return if v < 0.0 { "-Infinity" } else { "Infinity" }.to_owned();
    }
    psgate_shared::clixml::double_text(v)
}

/// Singles as .NET Core prints them: scientific from 1E+07 and from 1E-05 down.
pub fn single(v: f32) -> String {
    if v.is_infinite() {
        return if v < 0.0 { "-Infinity" } else { "Infinity" }.to_owned();
    }
    psgate_shared::clixml::single_text(v)
}

/// A date as a table shows it: `2026-11-25 08:15:02`, the local offset left out (PowerShell prints local
/// time without one too).
pub fn datetime_short(dt: &DateTime) -> String {
    format!("{:04}-{:02}-{:02} {:02}:{:02}:{:02}", dt.year, dt.month, dt.day, dt.hour, dt.minute, dt.second)
}

/// A date in full, in its CLIXML round-trip form: `2026-11-25T08:15:02.1234567+01:00`.
pub fn datetime_full(dt: &DateTime) -> String {
    dt.to_string()
}

/// A time span in .NET's constant format: `[-][d.]hh:mm:ss[.fffffff]`.
pub fn timespan(ts: TimeSpan) -> String {
    let ticks = ts.0.unsigned_abs();
    let tps = TimeSpan::TICKS_PER_SECOND as u64;
    let fraction = ticks % tps;
    let seconds = ticks / tps;
    let (days, hours, minutes, secs) = (seconds / 86_400, seconds / 3600 % 24, seconds / 60 % 60, seconds % 60);
    let mut s = String::new();
    if ts.0 < 0 {
        s.push('-');
    }
    if days > 0 {
        s.push_str(&format!("{days}."));
    }
    s.push_str(&format!("{hours:02}:{minutes:02}:{secs:02}"));
    if fraction > 0 {
        s.push_str(&format!(".{fraction:07}"));
    }
    s
}

/// Bytes as hex, 16 to a line.
pub fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 3);
    for (i, b) in bytes.iter().enumerate() {
        if i > 0 {
            s.push(if i % 16 == 0 { '\n' } else { ' ' });
        }
        s.push_str(&format!("{b:02x}"));
    }
    s
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use psgate_shared::clixml::{DateTimeKind, ListKind, ProgressRecordType, Property};

    use super::*;

    fn obj(o: Object) -> Value {
        Value::object(o)
    }

    fn list(items: Vec<Value>) -> Value {
        obj(Object { content: Content::List(ListKind::List, items), ..Object::default() })
    }

    #[track_caller]
    fn check(value: Value, expected: &str) {
        assert_eq!(cell(&value), expected);
    }

    #[test]
    fn primitives_print_like_powershell() {
        check(Value::Nil, "");
        check(Value::Bool(true), "True");
        check(Value::I32(-7), "-7");
        check(Value::U64(u64::MAX), "18446744073709551615");
        check(Value::Char(0x41), "A");
        check(Value::Char(0xD83D), "\\uD83D");
        check(Value::Decimal("1.10".into()), "1.10");
        check(Value::string("a\r\nb"), "a…");
        check(Value::string("trailing newline\r\n"), "trailing newline");
        check(Value::Bytes(vec![1, 2, 3, 4, 5]), "{1, 2, 3, 4…}");
        check(Value::SecureString(vec![0; 16]), "System.Security.SecureString (16 encrypted bytes)");
        check(Value::Cycle(0), "(cycle)");
    }

    #[test]
    fn doubles_like_dotnet_core() {
        assert_eq!(double(12.5), "12.5");
        assert_eq!(double(0.1), "0.1");
        assert_eq!(double(1e14), "100000000000000");
        assert_eq!(double(1e15), "1E+15");
        assert_eq!(double(1.5e-5), "1.5E-05");
        assert_eq!(double(0.0001), "0.0001");
        assert_eq!(double(-2.5e300), "-2.5E+300");
        assert_eq!(double(f64::NAN), "NaN");
        assert_eq!(double(f64::NEG_INFINITY), "-Infinity");
        assert_eq!(single(1.5f32), "1.5");
        assert_eq!(single(1e7f32), "1E+07");
    }

    #[test]
    fn dates_and_time_spans() {
        let dt = DateTime {
            year: 2026,
            month: 11,
            day: 5,
            hour: 8,
            minute: 15,
            second: 2,
            ticks: 1_234_567,
            kind: DateTimeKind::Local(-330),
        };
        assert_eq!(datetime_full(&dt), "2026-11-05T08:15:02.1234567-05:30");
        assert_eq!(cell(&Value::DateTime(dt)), "2026-11-05 08:15:02");
        let utc = DateTime { ticks: 0, kind: DateTimeKind::Utc, ..dt };
        assert_eq!(datetime_full(&utc), "2026-11-05T08:15:02Z");
        assert_eq!(timespan(TimeSpan(15_000_000)), "00:00:01.5000000");
        assert_eq!(timespan(TimeSpan(-(86_400 + 3723) * 10_000_000)), "-1.01:02:03");
    }

    #[test]
    fn collections_are_enumerated_up_to_the_limit() {
        check(list((1..=3).map(Value::I32).collect()), "{1, 2, 3}");
        check(list((1..=9).map(Value::I32).collect()), "{1, 2, 3, 4…}");
        let dict = obj(Object {
            content: Content::Dict(vec![(Value::string("a"), Value::I32(1)), (Value::string("b"), Value::Nil)]),
            to_string: Some("System.Collections.Hashtable".into()),
            ..Object::default()
        });
        check(dict, "{[a, 1], [b, ]}");
        check(list(vec![list(vec![list(vec![Value::I32(1)])])]), "{{{…}}}");
    }

    #[test]
    fn objects_show_their_to_string_else_a_property_bag_else_their_type() {
        let names: Arc<[_]> = vec!["Deserialized.System.IO.FileInfo".into(), "System.Object".into()].into();
        let with_to_string =
            Object { type_names: Some(names.clone()), to_string: Some("C:\\a.txt".into()), ..Object::default() };
        check(obj(with_to_string), "C:\\a.txt");
        let bag = Object {
            extended: vec![Property::new("A", Value::I32(1)), Property::new("B", Value::string("x"))],
            ..Object::default()
        };
        check(obj(bag), "@{A=1; B=x}");
        check(obj(Object { type_names: Some(names), ..Object::default() }), "System.IO.FileInfo");
        let enum_value = Object {
            to_string: Some("Running".into()),
            content: Content::Primitive(Value::I32(4)),
            ..Object::default()
        };
        assert!(!is_numeric(&obj(enum_value.clone())));
        check(obj(enum_value), "Running");
    }

    #[test]
    fn long_cells_are_cut() {
        let c = cell(&Value::string("x".repeat(500)));
        assert_eq!(c.chars().count(), CELL_CHARS);
        assert!(c.ends_with('…'));
        assert_eq!(truncate("abc".into(), 3), "abc");
        assert_eq!(truncate("abcd".into(), 3), "ab…");
    }

    #[test]
    fn progress_in_one_line() {
        let pr = ProgressRecord {
            activity: "Copying".into(),
            activity_id: 1,
            current_operation: None,
            parent_activity_id: -1,
            percent_complete: 60,
            record_type: ProgressRecordType::Processing,
            seconds_remaining: -1,
            status_description: Some("3 of 5".into()),
        };
        check(Value::Progress(Box::new(pr)), "Copying: 3 of 5 (60 %)");
    }

    #[test]
    fn hex_dump() {
        assert_eq!(hex(&[0, 255]), "00 ff");
        assert_eq!(hex(&[7; 17]).lines().count(), 2);
    }
}
