//! A JSON shape for CLIXML values: what `psgate clixml decode` prints and `psgate clixml encode` reads.
//!
//! Every value keeps its CLIXML type, named by its CLIXML tag:
//! - `<Nil/>` is `null`; `<S>` is a JSON string; `<B>` is `true`/`false`;
//! - every other primitive is a one-key object `{"TAG": …}`: numbers as JSON numbers (`{"I32": 5}`,
//!   `{"Db": 1.5}`; `{"Db": "NaN"}`, `"INF"`, `"-INF"` for the non-finite ones), `{"C": 97}`, and the rest
//!   as their CLIXML text: `{"D": "1.10"}`, `{"DT": "2024-05-01T10:00:00.5Z"}`, `{"TS": "PT1M30S"}`,
//!   `{"G": "…"}`, `{"Version": "2.3"}`, `{"BA": "base64"}`, `{"SS": "base64 ciphertext"}`, `{"URI": …}`,
//!   `{"XD": …}`, `{"SBK": …}`;
//! - a progress record is `{"PR": {"activity", "activity_id", "current_operation", "parent_activity_id",
//!   "percent_complete", "record_type", "seconds_remaining", "status_description"}}`;
//! - an object is `{"Obj": {…}}` with the keys it has, in this order: `"RefId"` (only on an object that
//!   is referenced again), `"TN"` (type names), `"ToString"`, one of `"value"` (extended primitive or
//!   enum value), `"LST"`/`"IE"`/`"STK"`/`"QUE"` (arrays) or `"DCT"` (an array of `[key, value]` pairs),
//!   then `"Props"` (adapted) and `"MS"` (extended properties) as JSON objects in document order (as
//!   `[name, value]` pairs instead when a set repeats a name, which a JSON object cannot hold);
//! - a member set (a nested `<MS N="name">`, [`Object::member_set`]) is the member `"name": {"MS": {…}}`
//!   of an `"MS"`, its members written like an `"MS"`'s (pairs if a name repeats); it never has a
//!   `"RefId"`, and the reader accepts `{"MS": …}` nowhere else;
//! - a repeated object is `{"Ref": n}`; a reference to an enclosing object is `{"Cycle": levels}`.
//!
//! A document is one line per object; an object written with a stream attribute is wrapped as
//! `{"stream": "Error", "value": …}`. Reference ids are shared across the lines of one document.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Arc;

use base64::Engine as _;
use serde_json::Value as Json;

use super::primitive as p;
use super::value::*;

/// Options for [`Writer`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WriteOptions {
    /// Write every occurrence of a shared object in full instead of `{"Ref": n}` (for comparing by
    /// meaning; the output can grow exponentially on hostile input, so use it on trusted values only).
    pub expand_refs: bool,
}

/// Writes values as JSON, keeping reference ids across calls (one writer per document).
#[derive(Debug, Default)]
pub struct Writer {
    options: WriteOptions,
    ids: HashMap<*const Object, u32>,
}

impl Writer {
    /// A writer with the given options.
    pub fn new(options: WriteOptions) -> Writer {
        Writer { options, ids: HashMap::new() }
    }

    /// One document item as a JSON line (without the newline).
    pub fn item(&mut self, item: &Item) -> String {
        let mut out = String::new();
        match &item.stream {
            Some(s) => {
                out.push_str("{\"stream\":");
                json_string(&mut out, s);
                out.push_str(",\"value\":");
                self.value(&mut out, &item.value);
                out.push('}');
            }
            None => self.value(&mut out, &item.value),
        }
        out
    }

    /// A value as JSON.
    pub fn value_json(&mut self, v: &Value) -> String {
        let mut out = String::new();
        self.value(&mut out, v);
        out
    }

    fn value(&mut self, out: &mut String, v: &Value) {
        macro_rules! tagged {
            ($tag:literal, $body:expr) => {{
                out.push_str(concat!("{\"", $tag, "\":"));
                #[allow(clippy::let_unit_value)]
                let _ = $body;
                out.push('}');
            }};
        }
        match v {
            Value::Nil => out.push_str("null"),
            Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Value::String(s) => json_string(out, s),
            Value::Char(c) => tagged!("C", write!(out, "{c}")),
            Value::U8(x) => tagged!("By", write!(out, "{x}")),
            Value::I8(x) => tagged!("SB", write!(out, "{x}")),
            Value::U16(x) => tagged!("U16", write!(out, "{x}")),
            Value::I16(x) => tagged!("I16", write!(out, "{x}")),
            Value::U32(x) => tagged!("U32", write!(out, "{x}")),
            Value::I32(x) => tagged!("I32", write!(out, "{x}")),
            Value::U64(x) => tagged!("U64", write!(out, "{x}")),
            Value::I64(x) => tagged!("I64", write!(out, "{x}")),
            Value::Single(x) => tagged!("Sg", float(out, x.is_finite(), |o| p::write_f32(o, *x))),
            Value::Double(x) => tagged!("Db", float(out, x.is_finite(), |o| p::write_f64(o, *x))),
            Value::Decimal(d) => tagged!("D", json_string(out, d)),
            Value::Uri(s) => tagged!("URI", json_string(out, s)),
            Value::Xml(s) => tagged!("XD", json_string(out, s)),
            Value::ScriptBlock(s) => tagged!("SBK", json_string(out, s)),
            Value::DateTime(dt) => tagged!("DT", {
                let mut s = String::new();
                p::write_datetime(&mut s, dt);
                json_string(out, &s)
            }),
            Value::TimeSpan(ts) => tagged!("TS", {
                let mut s = String::new();
                p::write_timespan(&mut s, *ts);
                json_string(out, &s)
            }),
            Value::Bytes(b) => tagged!("BA", json_string(out, &base64::engine::general_purpose::STANDARD.encode(b))),
            Value::SecureString(b) => tagged!("SS", json_string(out, &base64::engine::general_purpose::STANDARD.encode(b))),
            Value::Guid(g) => tagged!("G", write!(out, "\"{}\"", g.hyphenated())),
            Value::Version(ver) => tagged!("Version", write!(out, "\"{ver}\"")),
            Value::Progress(pr) => tagged!("PR", self.progress(out, pr)),
            Value::Cycle(n) => tagged!("Cycle", write!(out, "{n}")),
            Value::Object(obj) => self.object(out, obj),
        }
    }

    fn progress(&mut self, out: &mut String, pr: &ProgressRecord) {
        out.push_str("{\"activity\":");
        json_string(out, &pr.activity);
        let _ = write!(out, ",\"activity_id\":{},\"current_operation\":", pr.activity_id);
        opt_string(out, pr.current_operation.as_deref());
        let _ = write!(
            out,
            ",\"parent_activity_id\":{},\"percent_complete\":{},\"record_type\":\"{}\",\"seconds_remaining\":{},\"status_description\":",
            pr.parent_activity_id,
            pr.percent_complete,
            match pr.record_type {
                ProgressRecordType::Processing => "Processing",
                ProgressRecordType::Completed => "Completed",
            },
            pr.seconds_remaining
        );
        opt_string(out, pr.status_description.as_deref());
        out.push('}');
    }

    fn object(&mut self, out: &mut String, obj: &Arc<Object>) {
        if obj.member_set {
            out.push_str("{\"MS\":");
            self.members(out, &obj.extended);
            out.push('}');
            return;
        }
        let ptr = Arc::as_ptr(obj);
        if !self.options.expand_refs
            && let Some(id) = self.ids.get(&ptr)
        {
            let _ = write!(out, "{{\"Ref\":{id}}}");
            return;
        }
        out.push_str("{\"Obj\":{");
        let mut first = true;
        let mut key = |out: &mut String, k: &str| {
            if !std::mem::replace(&mut first, false) {
                out.push(',');
            }
            json_string(out, k);
            out.push(':');
        };
        if !self.options.expand_refs && Arc::strong_count(obj) > 1 {
            let id = self.ids.len() as u32;
            self.ids.insert(ptr, id);
            key(out, "RefId");
            let _ = write!(out, "{id}");
        }
        if let Some(tn) = &obj.type_names {
            key(out, "TN");
            out.push('[');
            for (i, t) in tn.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                json_string(out, t);
            }
            out.push(']');
        }
        if let Some(ts) = &obj.to_string {
            key(out, "ToString");
            json_string(out, ts);
        }
        match &obj.content {
            Content::None => {}
            Content::Primitive(v) => {
                key(out, "value");
                self.value(out, v);
            }
            Content::List(kind, items) => {
                key(out, kind.tag());
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    self.value(out, item);
                }
                out.push(']');
            }
            Content::Dict(entries) => {
                key(out, "DCT");
                out.push('[');
                for (i, (k, v)) in entries.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push('[');
                    self.value(out, k);
                    out.push(',');
                    self.value(out, v);
                    out.push(']');
                }
                out.push(']');
            }
        }
        for (name, props) in [("Props", &obj.adapted), ("MS", &obj.extended)] {
            if props.is_empty() {
                continue;
            }
            key(out, name);
            self.members(out, props);
        }
        out.push_str("}}");
    }

    /// A property set as a JSON object, or as `[name, value]` pairs if it repeats a name.
    fn members(&mut self, out: &mut String, props: &[Property]) {
        // A JSON object cannot hold one name twice; the rare set that does goes as pairs.
        let pairs = has_duplicate_names(props);
        out.push(if pairs { '[' } else { '{' });
        for (i, prop) in props.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            if pairs {
                out.push('[');
            }
            json_string(out, &prop.name);
            out.push(if pairs { ',' } else { ':' });
            self.value(out, &prop.value);
            if pairs {
                out.push(']');
            }
        }
        out.push(if pairs { ']' } else { '}' });
    }
}

fn has_duplicate_names(props: &[Property]) -> bool {
    if props.len() <= 16 {
        return props.iter().enumerate().any(|(i, p)| props[..i].iter().any(|q| q.name == p.name));
    }
    let mut seen = std::collections::HashSet::with_capacity(props.len());
    !props.iter().all(|p| seen.insert(p.name.as_str()))
}

/// A finite float as a JSON number in CLIXML's own text (shortest round-trip digits, `E` exponent);
/// the others as the strings CLIXML uses for them.
fn float(out: &mut String, finite: bool, write: impl FnOnce(&mut String)) {
    if finite {
        write(out);
    } else {
        out.push('"');
        write(out);
        out.push('"');
    }
}

fn opt_string(out: &mut String, s: Option<&str>) {
    match s {
        Some(s) => json_string(out, s),
        None => out.push_str("null"),
    }
}

fn json_string(out: &mut String, s: &str) {
    out.push('"');
    let mut start = 0;
    for (i, b) in s.bytes().enumerate() {
        let esc = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0..=0x1F | 0x7F => "",
            _ => continue,
        };
        out.push_str(&s[start..i]);
        if esc.is_empty() {
            let _ = write!(out, "\\u{b:04x}");
        } else {
            out.push_str(esc);
        }
        start = i + 1;
    }
    out.push_str(&s[start..]);
    out.push('"');
}

/// Why a JSON value could not become a CLIXML value.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {message}")]
pub struct JsonError {
    /// Where, as a JSON path (`$.Obj.MS.Name`).
    pub path: String,
    /// What was wrong.
    pub message: String,
}

/// Reads the JSON shape back into values, resolving `{"Ref": n}` across calls (one reader per document).
#[derive(Debug, Default)]
pub struct Reader {
    refs: HashMap<u64, Arc<Object>>,
}

/// Nesting bound for JSON input, like the CLIXML decoder's.
const MAX_JSON_DEPTH: usize = 200;

impl Reader {
    /// A reader.
    pub fn new() -> Reader {
        Reader::default()
    }

    /// One line: an item, possibly wrapped with its stream.
    pub fn item(&mut self, json: &Json) -> Result<Item, JsonError> {
        if let Json::Object(map) = json
            && map.len() == 2
            && map.contains_key("stream")
            && map.contains_key("value")
        {
            let stream = match &map["stream"] {
                Json::String(s) => Some(Str::from(s.as_str())),
                Json::Null => None,
                _ => return Err(err("$.stream", "must be a string")),
            };
            return Ok(Item { stream, value: self.value(&map["value"], "$.value", 0)? });
        }
        Ok(Item { stream: None, value: self.value(json, "$", 0)? })
    }

    /// One value.
    pub fn value(&mut self, json: &Json, path: &str, depth: usize) -> Result<Value, JsonError> {
        if depth > MAX_JSON_DEPTH {
            return Err(err(path, "nested too deeply"));
        }
        let map = match json {
            Json::Null => return Ok(Value::Nil),
            Json::Bool(b) => return Ok(Value::Bool(*b)),
            Json::String(s) => return Ok(Value::String(s.as_str().into())),
            Json::Number(_) => return Err(err(path, "a number needs its type, e.g. {\"I32\": 5}")),
            Json::Array(_) => return Err(err(path, "an array needs a container, e.g. {\"Obj\": {\"LST\": [...]}}")),
            Json::Object(map) => map,
        };
        if map.len() != 1 {
            return Err(err(path, "a typed value is an object with exactly one key, its CLIXML tag"));
        }
        let Some((tag, body)) = map.iter().next() else {
            return Err(err(path, "empty object"));
        };
        let here = format!("{path}.{tag}");
        let text = || body.as_str().ok_or_else(|| err(&here, "must be a string"));
        macro_rules! int {
            ($t:ty, $variant:expr) => {{
                let n = body.as_i64().map(i128::from).or_else(|| body.as_u64().map(i128::from));
                let n = n.ok_or_else(|| err(&here, "must be an integer"))?;
                $variant(<$t>::try_from(n).map_err(|_| err(&here, "out of range"))?)
            }};
        }
        Ok(match tag.as_str() {
            "S" => Value::String(text()?.into()),
            "B" => Value::Bool(body.as_bool().ok_or_else(|| err(&here, "must be true or false"))?),
            "Nil" => Value::Nil,
            "C" => int!(u16, Value::Char),
            "By" => int!(u8, Value::U8),
            "SB" => int!(i8, Value::I8),
            "U16" => int!(u16, Value::U16),
            "I16" => int!(i16, Value::I16),
            "U32" => int!(u32, Value::U32),
            "I32" => int!(i32, Value::I32),
            "U64" => int!(u64, Value::U64),
            "I64" => int!(i64, Value::I64),
            "Db" => Value::Double(json_float(body).ok_or_else(|| err(&here, "must be a number, \"NaN\", \"INF\" or \"-INF\""))?),
            "Sg" => Value::Single(match body {
                Json::Number(n) => n.to_string().parse::<f32>().map_err(|_| err(&here, "not a single"))?,
                _ => json_float(body).ok_or_else(|| err(&here, "must be a number, \"NaN\", \"INF\" or \"-INF\""))? as f32,
            }),
            "D" => Value::Decimal(p::parse_decimal(text()?).ok_or_else(|| err(&here, "not a decimal"))?.into()),
            "URI" => Value::Uri(text()?.into()),
            "XD" => Value::Xml(text()?.into()),
            "SBK" => Value::ScriptBlock(text()?.into()),
            "DT" => Value::DateTime(p::parse_datetime(text()?).ok_or_else(|| err(&here, "not a CLIXML date-time"))?),
            "TS" => Value::TimeSpan(p::parse_timespan(text()?).ok_or_else(|| err(&here, "not an xs:duration"))?),
            "G" => Value::Guid(uuid::Uuid::try_parse(text()?).map_err(|_| err(&here, "not a GUID"))?),
            "Version" => Value::Version(p::parse_version(text()?).ok_or_else(|| err(&here, "not a version"))?),
            "BA" => Value::Bytes(b64(text()?).ok_or_else(|| err(&here, "not base64"))?),
            "SS" => Value::SecureString(b64(text()?).ok_or_else(|| err(&here, "not base64"))?),
            "PR" => Value::Progress(Box::new(progress(body, &here)?)),
            "Cycle" => Value::Cycle(body.as_u64().and_then(|n| u32::try_from(n).ok()).ok_or_else(|| err(&here, "must be a count"))?),
            "Ref" => {
                let id = body.as_u64().ok_or_else(|| err(&here, "must be an id"))?;
                let obj = self.refs.get(&id).ok_or_else(|| err(&here, "refers to no earlier object"))?;
                Value::Object(Arc::clone(obj))
            }
            "Obj" => self.object(body, &here, depth)?,
            "MS" => return Err(err(&here, "a member set can only be a member of an \"MS\"")),
            other => return Err(err(path, &format!("unknown CLIXML tag {other:?}"))),
        })
    }

    fn object(&mut self, body: &Json, path: &str, depth: usize) -> Result<Value, JsonError> {
        let map = body.as_object().ok_or_else(|| err(path, "must be an object"))?;
        let mut obj = Object::default();
        let mut ref_id = None;
        let mut has_content = false;
        for (k, v) in map {
            let here = format!("{path}.{k}");
            match k.as_str() {
                "RefId" => ref_id = Some(v.as_u64().ok_or_else(|| err(&here, "must be an id"))?),
                "TN" => {
                    let names = v.as_array().ok_or_else(|| err(&here, "must be an array of strings"))?;
                    let names: Result<Vec<Str>, _> =
                        names.iter().map(|n| n.as_str().map(Str::from).ok_or_else(|| err(&here, "must be an array of strings"))).collect();
                    obj.type_names = Some(names?.into());
                }
                "ToString" => obj.to_string = Some(v.as_str().ok_or_else(|| err(&here, "must be a string"))?.into()),
                "value" | "LST" | "IE" | "STK" | "QUE" | "DCT" => {
                    if std::mem::replace(&mut has_content, true) {
                        return Err(err(&here, "an object holds one value or container"));
                    }
                    obj.content = match k.as_str() {
                        "value" => Content::Primitive(self.value(v, &here, depth + 1)?),
                        "DCT" => {
                            let entries = v.as_array().ok_or_else(|| err(&here, "must be an array of [key, value] pairs"))?;
                            let mut out = Vec::with_capacity(entries.len());
                            for (i, e) in entries.iter().enumerate() {
                                let ep = format!("{here}[{i}]");
                                match e.as_array().map(Vec::as_slice) {
                                    Some([key, value]) => {
                                        out.push((self.value(key, &ep, depth + 2)?, self.value(value, &ep, depth + 2)?))
                                    }
                                    _ => return Err(err(&ep, "must be a [key, value] pair")),
                                }
                            }
                            Content::Dict(out)
                        }
                        tag => {
                            let kind = match tag {
                                "LST" => ListKind::List,
                                "IE" => ListKind::Enumerable,
                                "STK" => ListKind::Stack,
                                _ => ListKind::Queue,
                            };
                            let items = v.as_array().ok_or_else(|| err(&here, "must be an array"))?;
                            let items: Result<Vec<Value>, _> = items
                                .iter()
                                .enumerate()
                                .map(|(i, item)| self.value(item, &format!("{here}[{i}]"), depth + 1))
                                .collect();
                            Content::List(kind, items?)
                        }
                    };
                }
                "Props" | "MS" => {
                    let out = self.members(v, &here, depth, k == "MS")?;
                    if k == "Props" {
                        obj.adapted = out;
                    } else {
                        obj.extended = out;
                    }
                }
                other => return Err(err(path, &format!("unknown object key {other:?}"))),
            }
        }
        let obj = Arc::new(obj);
        if let Some(id) = ref_id {
            self.refs.insert(id, Arc::clone(&obj));
        }
        Ok(Value::Object(obj))
    }

    /// A property set (`"Props"`, `"MS"`, or a member set's members) as an object or as pairs; among
    /// extended members (`extended`), `{"MS": …}` is a member set.
    fn members(&mut self, v: &Json, here: &str, depth: usize, extended: bool) -> Result<Vec<Property>, JsonError> {
        if depth > MAX_JSON_DEPTH {
            return Err(err(here, "nested too deeply"));
        }
        let member = |this: &mut Self, name: &str, pv: &Json, at: &str| -> Result<Property, JsonError> {
            let value = match pv {
                Json::Object(map) if extended && map.len() == 1 && map.contains_key("MS") => {
                    Value::member_set(this.members(&map["MS"], &format!("{at}.MS"), depth + 1, true)?)
                }
                _ => this.value(pv, at, depth + 1)?,
            };
            Ok(Property { name: name.into(), value })
        };
        let mut out = Vec::new();
        match v {
            Json::Object(props) => {
                for (name, pv) in props {
                    out.push(member(self, name, pv, &format!("{here}.{name}"))?);
                }
            }
            // The pair form, for a property set that repeats a name.
            Json::Array(pairs) => {
                for (i, pair) in pairs.iter().enumerate() {
                    let at = format!("{here}[{i}]");
                    match pair.as_array().map(Vec::as_slice) {
                        Some([Json::String(name), pv]) => out.push(member(self, name, pv, &at)?),
                        _ => return Err(err(&at, "must be a [name, value] pair")),
                    }
                }
            }
            _ => return Err(err(here, "must be an object of properties")),
        }
        Ok(out)
    }
}

fn err(path: &str, message: &str) -> JsonError {
    JsonError { path: path.to_owned(), message: message.to_owned() }
}

fn json_float(v: &Json) -> Option<f64> {
    match v {
        Json::Number(n) => n.as_f64(),
        Json::String(s) => match s.as_str() {
            "NaN" => Some(f64::NAN),
            "INF" => Some(f64::INFINITY),
            "-INF" => Some(f64::NEG_INFINITY),
            _ => None,
        },
        _ => None,
    }
}

fn b64(s: &str) -> Option<Vec<u8>> {
    base64::engine::general_purpose::STANDARD.decode(s).ok()
}

fn progress(body: &Json, path: &str) -> Result<ProgressRecord, JsonError> {
    let map = body.as_object().ok_or_else(|| err(path, "must be an object"))?;
    let int = |k: &str, default: i32| -> Result<i32, JsonError> {
        match map.get(k) {
            None => Ok(default),
            Some(v) => v.as_i64().and_then(|n| i32::try_from(n).ok()).ok_or_else(|| err(&format!("{path}.{k}"), "must be a 32-bit integer")),
        }
    };
    let opt = |k: &str| -> Result<Option<Str>, JsonError> {
        match map.get(k) {
            None | Some(Json::Null) => Ok(None),
            Some(Json::String(s)) => Ok(Some(s.as_str().into())),
            Some(_) => Err(err(&format!("{path}.{k}"), "must be a string or null")),
        }
    };
    Ok(ProgressRecord {
        activity: opt("activity")?.unwrap_or_default(),
        activity_id: int("activity_id", 0)?,
        current_operation: opt("current_operation")?,
        parent_activity_id: int("parent_activity_id", -1)?,
        percent_complete: int("percent_complete", -1)?,
        record_type: match map.get("record_type").and_then(Json::as_str) {
            None | Some("Processing") => ProgressRecordType::Processing,
            Some("Completed") => ProgressRecordType::Completed,
            Some(_) => return Err(err(&format!("{path}.record_type"), "must be \"Processing\" or \"Completed\"")),
        },
        seconds_remaining: int("seconds_remaining", -1)?,
        status_description: opt("status_description")?,
    })
}
