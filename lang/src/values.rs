//! Values at psgate's prompt are CLIXML values ([`Value`]), the same model remote output arrives in, so a
//! variable holds a deserialized remote object as it came and the console renders local and remote output alike.
//! This module gives them PowerShell's semantics: arrays, truth, text, comparison, wildcards, members.

use std::sync::Arc;

use psgate_shared::clixml::{self, Content, ListKind, Object, Property, Str, Value};

/// The type names of `object[]`.
pub fn array_types() -> clixml::TypeNames {
    Arc::from(vec![Str::from("System.Object[]"), Str::from("System.Array"), Str::from("System.Object")])
}

/// `@(items)`.
pub fn array(items: Vec<Value>) -> Value {
    Value::object(Object { type_names: Some(array_types()), content: Content::List(ListKind::List, items), ..Object::default() })
}

/// The items of an array or other collection (not a dictionary).
pub fn as_list(v: &Value) -> Option<&[Value]> {
    match v {
        Value::Object(o) => match &o.content {
            Content::List(_, items) => Some(items),
            _ => None,
        },
        _ => None,
    }
}

/// What a value sends down a pipeline: a collection's items, one value otherwise.
pub fn enumerate(v: Value) -> Vec<Value> {
    match as_list(&v) {
        Some(items) => items.to_vec(),
        None => vec![v],
    }
}

/// A pipeline's output as one value: nothing is `$null`, one object is itself, more are an array.
pub fn collapse(mut items: Vec<Value>) -> Value {
    match items.len() {
        0 => Value::Nil,
        1 => items.pop().unwrap_or(Value::Nil),
        _ => array(items),
    }
}

/// A new object with these type names, `ToString` and note properties.
pub fn object(type_names: &[&str], to_string: Option<String>, properties: Vec<(&str, Value)>) -> Value {
    let mut names: Vec<Str> = type_names.iter().map(|t| Str::from(*t)).collect();
    if names.last().is_none_or(|l| l != "System.Object") {
        names.push(Str::from("System.Object"));
    }
    Value::object(Object {
        type_names: Some(Arc::from(names)),
        to_string: to_string.map(Str::from),
        extended: properties.into_iter().map(|(n, v)| Property::new(n, v)).collect(),
        ..Object::default()
    })
}

/// Sets an object's `PSStandardMembers.DefaultDisplayPropertySet` to `names` (replacing any it had): the properties a
/// table or list of it shows, as both renderers read them.
pub fn set_display_properties(object: &mut Object, names: &[&str]) {
    let names = array(names.iter().map(|n| Value::string(*n)).collect());
    let set = self::object(&["System.Management.Automation.PSPropertySet"], None, vec![("ReferencedPropertyNames", names)]);
    object.extended.retain(|p| p.name.as_str() != "PSStandardMembers");
    object.extended.push(Property::new("PSStandardMembers", Value::member_set(vec![Property::new("DefaultDisplayPropertySet", set)])));
}

/// A `PSCustomObject` with these properties.
pub fn custom_object(properties: Vec<(String, Value)>) -> Value {
    Value::object(Object {
        type_names: Some(Arc::from(vec![Str::from("System.Management.Automation.PSCustomObject"), Str::from("System.Object")])),
        extended: properties.into_iter().map(|(n, v)| Property::new(n, v)).collect(),
        ..Object::default()
    })
}

/// The most derived type name, without remoting's `Deserialized.` prefix.
pub fn type_name(v: &Value) -> String {
    match v {
        Value::Nil => "null".into(),
        Value::Object(o) => match o.type_names().next() {
            Some(t) => t.strip_prefix("Deserialized.").unwrap_or(t).to_owned(),
            None => match &o.content {
                Content::Primitive(p) => type_name(p),
                Content::Dict(_) => "System.Collections.Hashtable".into(),
                _ => "System.Management.Automation.PSCustomObject".into(),
            },
        },
        other => primitive_type(other).into(),
    }
}

/// The .NET type of a primitive (`System.Object` for anything else).
pub fn primitive_type(v: &Value) -> &'static str {
    match v {
        Value::Nil | Value::Object(_) | Value::Cycle(_) => "System.Object",
        other => other.dotnet_type(),
    }
}

/// Whether the object is of this type (with or without `Deserialized.`).
pub fn is_type(v: &Value, name: &str) -> bool {
    v.as_object().is_some_and(|o| o.type_names().any(|t| t.eq_ignore_ascii_case(name) || t.strip_prefix("Deserialized.").is_some_and(|t| t.eq_ignore_ascii_case(name))))
}

/// The primitive inside a value (an enum's or a wrapped primitive's).
pub fn primitive(v: &Value) -> &Value {
    match v {
        Value::Object(o) => match &o.content {
            Content::Primitive(p) => p,
            _ => v,
        },
        _ => v,
    }
}

/// A number, when the value is one (or text that reads as one).
pub fn number(v: &Value) -> Option<f64> {
    Some(match primitive(v) {
        Value::U8(x) => f64::from(*x),
        Value::I8(x) => f64::from(*x),
        Value::U16(x) => f64::from(*x),
        Value::I16(x) => f64::from(*x),
        Value::U32(x) => f64::from(*x),
        Value::I32(x) => f64::from(*x),
        Value::U64(x) => *x as f64,
        Value::I64(x) => *x as f64,
        Value::Single(x) => f64::from(*x),
        Value::Double(x) => *x,
        Value::Decimal(s) => s.parse().ok()?,
        Value::Bool(b) => f64::from(u8::from(*b)),
        Value::String(s) => parse_number_text(s)?,
        _ => return None,
    })
}

/// Text that PowerShell converts to a number (`" 42 "`, `0x10`, `1e3`, `1kb`).
pub fn parse_number_text(s: &str) -> Option<f64> {
    let t = s.trim();
    if t.is_empty() {
        return Some(0.0);
    }
    match crate::parser::parse_number(t)? {
        crate::ast::ExprKind::Int(n) => Some(n as f64),
        crate::ast::ExprKind::Double(f) => Some(f),
        _ => None,
    }
}

/// An integer (rounded as PowerShell rounds: to even).
pub fn integer(v: &Value) -> Option<i64> {
    match primitive(v) {
        Value::I32(x) => Some(i64::from(*x)),
        Value::I64(x) => Some(*x),
        _ => {
            let f = number(v)?;
            let r = f.round_ties_even();
            (r.is_finite() && r.abs() < 9.2e18).then_some(r as i64)
        }
    }
}

/// Whether a value is a number (not text that reads as one).
pub fn is_number(v: &Value) -> bool {
    matches!(
        primitive(v),
        Value::U8(_) | Value::I8(_) | Value::U16(_) | Value::I16(_) | Value::U32(_) | Value::I32(_) | Value::U64(_) | Value::I64(_) | Value::Single(_) | Value::Double(_) | Value::Decimal(_)
    )
}

/// An integer as PowerShell types it: `Int32` when it fits, else `Int64`.
pub fn int(n: i64) -> Value {
    i32::try_from(n).map_or(Value::I64(n), Value::I32)
}

/// A number result: an integer when it is whole and was made from integers, else a double.
pub fn num(f: f64, integral: bool) -> Value {
    if integral && f.fract() == 0.0 && f.abs() < 9.2e18 { int(f as i64) } else { Value::Double(f) }
}

/// PowerShell's truth: `$null`, `$false`, 0, `''` and empty arrays are false; a one-item array is its item's.
pub fn truthy(v: &Value) -> bool {
    match v {
        Value::Nil => false,
        Value::Bool(b) => *b,
        Value::String(s) => !s.is_empty(),
        Value::Object(o) => match &o.content {
            Content::List(_, items) => match items.as_slice() {
                [] => false,
                [one] => truthy(one),
                _ => true,
            },
            Content::Primitive(p) if o.type_names.is_none() => truthy(p),
            _ => true,
        },
        v if is_number(v) => number(v).is_some_and(|n| n != 0.0),
        Value::SecureString(_) => true,
        _ => true,
    }
}

/// A value as PowerShell converts it to text: numbers in the invariant culture, `True`, an array's items
/// separated by spaces, an object by its `ToString`.
pub fn text(v: &Value) -> String {
    match v {
        Value::Nil => String::new(),
        Value::Bool(true) => "True".into(),
        Value::Bool(false) => "False".into(),
        Value::String(s) | Value::Uri(s) | Value::Xml(s) | Value::Decimal(s) => s.to_string(),
        Value::ScriptBlock(s) => s.to_string(),
        Value::Char(c) => char::from_u32(u32::from(*c)).map(String::from).unwrap_or_default(),
        Value::U8(x) => x.to_string(),
        Value::I8(x) => x.to_string(),
        Value::U16(x) => x.to_string(),
        Value::I16(x) => x.to_string(),
        Value::U32(x) => x.to_string(),
        Value::I32(x) => x.to_string(),
        Value::U64(x) => x.to_string(),
        Value::I64(x) => x.to_string(),
        Value::Single(x) => clixml::single_text(*x),
        Value::Double(x) => clixml::double_text(*x),
        Value::DateTime(d) => d.to_string(),
        Value::TimeSpan(t) => timespan_text(t.0),
        Value::Bytes(b) => b.iter().map(u8::to_string).collect::<Vec<_>>().join(" "),
        Value::SecureString(_) => "System.Security.SecureString".into(),
        Value::Guid(g) => g.to_string(),
        Value::Version(v) => v.to_string(),
        Value::Progress(p) => p.activity.to_string(),
        Value::Cycle(_) => String::new(),
        Value::Object(o) => match (&o.content, &o.to_string) {
            (Content::List(_, items), _) => items.iter().map(text).collect::<Vec<_>>().join(" "),
            (_, Some(s)) => s.to_string(),
            (Content::Primitive(p), None) => text(p),
            (Content::Dict(_), None) => "System.Collections.Hashtable".into(),
            (_, None) => {
                if o.type_names().next().is_some_and(|t| t.ends_with("PSCustomObject")) {
                    let props: Vec<String> = o.properties().map(|p| format!("{}={}", p.name, text(&p.value))).collect();
                    format!("@{{{}}}", props.join("; "))
                } else {
                    o.type_names().next().map(|t| t.strip_prefix("Deserialized.").unwrap_or(t).to_owned()).unwrap_or_default()
                }
            }
        },
    }
}

/// A TimeSpan as .NET's `ToString()` writes it: `[-][d.]hh:mm:ss[.fffffff]` (`01:00:00`, `1.02:03:04.5000000`).
pub fn timespan_text(ticks: i64) -> String {
    let sign = if ticks < 0 { "-" } else { "" };
    let t = ticks.unsigned_abs();
    let (secs, frac) = (t / 10_000_000, t % 10_000_000);
    let (days, h, m, s) = (secs / 86_400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    let mut out = String::from(sign);
    if days > 0 {
        out.push_str(&format!("{days}."));
    }
    out.push_str(&format!("{h:02}:{m:02}:{s:02}"));
    if frac > 0 {
        out.push_str(&format!(".{frac:07}"));
    }
    out
}

/// A property of an object, ignoring case; `Count`/`Length` of collections and strings.
pub fn property(v: &Value, name: &str) -> Option<Value> {
    if let Some(o) = v.as_object()
        && let Some(p) = o.property(name)
    {
        return Some(p.clone());
    }
    if let Some(items) = as_list(v)
        && (name.eq_ignore_ascii_case("Count") || name.eq_ignore_ascii_case("Length"))
    {
        return Some(int(items.len() as i64));
    }
    if let Some(o) = v.as_object()
        && let Content::Dict(entries) = &o.content
    {
        if name.eq_ignore_ascii_case("Count") {
            return Some(int(entries.len() as i64));
        }
        return entries.iter().find(|(k, _)| text(k).eq_ignore_ascii_case(name)).map(|(_, v)| v.clone());
    }
    match primitive(v) {
        Value::String(s) if name.eq_ignore_ascii_case("Length") => Some(int(s.encode_utf16().count() as i64)),
        Value::Version(ver) => {
            let part = |n: Option<u32>| Value::I32(n.map_or(-1, |n| n as i32));
            match name.to_ascii_lowercase().as_str() {
                "major" => Some(Value::I32(ver.major as i32)),
                "minor" => Some(Value::I32(ver.minor as i32)),
                "build" => Some(part(ver.build)),
                "revision" => Some(part(ver.revision)),
                _ => None,
            }
        }
        _ if name.eq_ignore_ascii_case("Count") || name.eq_ignore_ascii_case("Length") => Some(Value::I32(i32::from(!v.is_nil()))),
        _ => None,
    }
}

/// `$x.Name`: the property; on a collection without it, member enumeration (each item's, flattened).
pub fn member(v: &Value, name: &str) -> Value {
    if let Some(items) = as_list(v) {
        if name.eq_ignore_ascii_case("Count") || name.eq_ignore_ascii_case("Length") {
            return int(items.len() as i64);
        }
        let found: Vec<Value> = items.iter().flat_map(|i| enumerate(member(i, name))).filter(|x| !x.is_nil()).collect();
        return collapse(found);
    }
    property(v, name).unwrap_or(Value::Nil)
}

/// PowerShell's wildcard match (`*`, `?`, `[a-z]`, `` ` `` escapes), ignoring case unless `case_sensitive`.
pub fn like(text: &str, pattern: &str, case_sensitive: bool) -> bool {
    if text.is_ascii() && pattern.is_ascii() {
        // No allocation for the common case: ASCII compared byte by byte.
        let fold = |b: u8| if case_sensitive { b } else { b.to_ascii_lowercase() };
        let t: smallvec_like::Buf = smallvec_like::Buf::new(text.bytes().map(fold));
        let p: smallvec_like::Buf = smallvec_like::Buf::new(pattern.bytes().map(fold));
        return wildcard(t.as_slice(), p.as_slice());
    }
    let fold = |s: &str| if case_sensitive { s.chars().collect::<Vec<_>>() } else { s.chars().flat_map(char::to_lowercase).collect() };
    let (t, p) = (fold(text), fold(pattern));
    wildcard(&t, &p)
}

/// Short texts folded on the stack.
mod smallvec_like {
    pub struct Buf {
        inline: [u8; 64],
        heap: Vec<u8>,
        len: usize,
    }

    impl Buf {
        pub fn new(bytes: impl ExactSizeIterator<Item = u8>) -> Buf {
            let len = bytes.len();
            if len <= 64 {
                let mut inline = [0u8; 64];
                for (slot, b) in inline.iter_mut().zip(bytes) {
                    *slot = b;
                }
                Buf { inline, heap: Vec::new(), len }
            } else {
                Buf { inline: [0; 64], heap: bytes.collect(), len }
            }
        }

        pub fn as_slice(&self) -> &[u8] {
            if self.heap.is_empty() { &self.inline[..self.len] } else { &self.heap }
        }
    }
}

fn wildcard<C: Copy + PartialEq + PartialOrd + Wild>(t: &[C], p: &[C]) -> bool {
    // Iterative with one backtrack point per `*`: linear in practice, never recursive.
    let (mut ti, mut pi) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() {
            let c = p[pi];
            if c.is('*') {
                star = Some((pi, ti));
                pi += 1;
                continue;
            }
            if c.is('?') {
                ti += 1;
                pi += 1;
                continue;
            }
            if c.is('[') {
                if let Some((matched, next)) = class(&p[pi..], t[ti])
                    && matched
                {
                    ti += 1;
                    pi += next;
                    continue;
                }
            } else if c.is('`') && pi + 1 < p.len() {
                if p[pi + 1] == t[ti] {
                    ti += 1;
                    pi += 2;
                    continue;
                }
            } else if c == t[ti] {
                ti += 1;
                pi += 1;
                continue;
            }
        }
        match star {
            Some((sp, st)) => {
                pi = sp + 1;
                ti = st + 1;
                star = Some((sp, st + 1));
            }
            None => return false,
        }
    }
    p[pi..].iter().all(|c| c.is('*'))
}

/// A character of a wildcard pattern: a `char`, or an ASCII byte.
trait Wild {
    fn is(self, c: char) -> bool;
}

impl Wild for char {
    fn is(self, c: char) -> bool {
        self == c
    }
}

impl Wild for u8 {
    fn is(self, c: char) -> bool {
        u32::from(self) == c as u32
    }
}

/// `[abc]`, `[a-z]` against `c`: whether it matches and the class's length (`None`: not a class).
fn class<C: Copy + PartialEq + PartialOrd + Wild>(p: &[C], c: C) -> Option<(bool, usize)> {
    let end = p.iter().position(|x| x.is(']'))?;
    if end < 2 {
        return None;
    }
    let body = &p[1..end];
    let mut i = 0;
    let mut matched = false;
    while i < body.len() {
        if i + 2 < body.len() && body[i + 1].is('-') {
            matched |= body[i] <= c && c <= body[i + 2];
            i += 3;
        } else {
            matched |= body[i] == c;
            i += 1;
        }
    }
    Some((matched, end + 1))
}

/// Whether text has wildcard characters.
pub fn has_wildcards(s: &str) -> bool {
    s.contains(['*', '?', '['])
}

/// `-eq` between two scalars, converting the right to the left's kind as PowerShell does.
pub fn equals(left: &Value, right: &Value, case_sensitive: bool) -> bool {
    let (l, r) = (primitive(left), primitive(right));
    match (l, r) {
        (Value::Nil, Value::Nil) => true,
        (Value::Nil, _) | (_, Value::Nil) => false,
        (Value::Bool(a), _) => *a == truthy(right),
        _ if is_number(left) => number(right).is_some_and(|b| number(left) == Some(b)),
        (Value::String(_), _) | (_, Value::String(_)) | (Value::Object(_), _) => {
            let (a, b) = (text(left), text(right));
            if case_sensitive { a == b } else { a.to_lowercase() == b.to_lowercase() }
        }
        _ => text(left) == text(right),
    }
}

/// `-lt`/`-gt` ordering between two scalars (numbers as numbers when the left is one, else text ignoring case).
pub fn order(left: &Value, right: &Value, case_sensitive: bool) -> Option<std::cmp::Ordering> {
    if left.is_nil() && right.is_nil() {
        return Some(std::cmp::Ordering::Equal);
    }
    if left.is_nil() {
        return Some(std::cmp::Ordering::Less);
    }
    if right.is_nil() {
        return Some(std::cmp::Ordering::Greater);
    }
    if is_number(left) {
        return number(left)?.partial_cmp(&number(right)?);
    }
    if let (Value::DateTime(a), Value::DateTime(b)) = (primitive(left), primitive(right)) {
        return Some(a.ticks.cmp(&b.ticks));
    }
    let (a, b) = (text(left), text(right));
    Some(if case_sensitive { a.cmp(&b) } else { a.to_lowercase().cmp(&b.to_lowercase()) })
}

/// Sort order for Sort-Object: numbers before text, then as [`order`].
pub fn sort_order(a: &Value, b: &Value) -> std::cmp::Ordering {
    match (is_number(a), is_number(b)) {
        (true, false) => std::cmp::Ordering::Less,
        (false, true) => std::cmp::Ordering::Greater,
        _ => order(a, b, false).unwrap_or(std::cmp::Ordering::Equal),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn timespans_read_as_dotnet_writes_them() {
        let s = 10_000_000;
        for (ticks, text) in [(3600 * s, "01:00:00"), (0, "00:00:00"), (-(90 * s), "-00:01:30"), ((86_400 + 3723) * s + 5_000_000, "1.01:02:03.5000000")] {
            assert_eq!(super::timespan_text(ticks), text);
        }
    }
}
