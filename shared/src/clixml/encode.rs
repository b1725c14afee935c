//! The encoder: [`Value`]s to CLIXML text, laid out as PowerShell's serializer writes it.
//!
//! Objects get `RefId`s 0, 1, 2… in document order; an object reached again through the same [`Arc`]
//! is written as `<Ref>`. Type-name lists are written once per document and then as `<TNRef>`. A member
//! set ([`Object::member_set`]) is written where PowerShell's serializer puts it, as `<MS N="…">` among the
//! extended members, without a `RefId` (self-closing when empty, as `XmlWriter` closes an empty element).

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Arc;

use base64::Engine as _;

use super::error::EncodeError;
use super::escape::escape_into;
use super::primitive as p;
use super::value::*;

/// The namespace of a stand-alone document's `<Objs>` root.
pub const OBJS_NAMESPACE: &str = "http://schemas.microsoft.com/powershell/2004/04";

/// Default bound on nesting when encoding, matching the decoder's default.
pub const MAX_ENCODE_DEPTH: usize = super::decode::DEFAULT_MAX_DEPTH;

/// Encodes one value as a PSRP message body (no root, no BOM).
pub fn encode_message(value: &Value) -> Result<String, EncodeError> {
    let mut e = Encoder::default();
    e.value(value, None, None, 0)?;
    Ok(e.out)
}

/// Encodes a stand-alone document with its `<Objs>` root (and the `#< CLIXML` line if it had one).
pub fn encode_document(doc: &Document) -> Result<String, EncodeError> {
    let mut e = Encoder::default();
    if doc.clixml_header {
        e.out.push_str("#< CLIXML\r\n");
    }
    let _ = write!(e.out, "<Objs Version=\"1.1.0.1\" xmlns=\"{OBJS_NAMESPACE}\">");
    for item in &doc.items {
        e.value(&item.value, None, item.stream.as_deref(), 0)?;
    }
    e.out.push_str("</Objs>");
    Ok(e.out)
}

#[derive(Default)]
struct Encoder {
    out: String,
    next_ref: u32,
    /// Objects written so far that something else also holds, by address.
    written: HashMap<*const Object, u32>,
    type_names: HashMap<TypeNames, u32>,
    /// RefIds of the objects being written, outermost first, for [`Value::Cycle`].
    open: Vec<u32>,
}

impl Encoder {
    fn start(&mut self, tag: &str, name: Option<&str>, stream: Option<&str>) {
        self.out.push('<');
        self.out.push_str(tag);
        if let Some(n) = name {
            self.out.push_str(" N=\"");
            escape_into(&mut self.out, n, true);
            self.out.push('"');
        }
        if let Some(s) = stream {
            self.out.push_str(" S=\"");
            escape_into(&mut self.out, s, true);
            self.out.push('"');
        }
    }

    fn text_element(&mut self, tag: &str, name: Option<&str>, stream: Option<&str>, text: &str) {
        self.start(tag, name, stream);
        if text.is_empty() {
            self.out.push_str(" />");
        } else {
            self.out.push('>');
            escape_into(&mut self.out, text, false);
            self.close(tag);
        }
    }

    /// An element whose text needs no escaping (numbers, dates, base64).
    fn raw_element(&mut self, tag: &str, name: Option<&str>, stream: Option<&str>, write: impl FnOnce(&mut String)) {
        self.start(tag, name, stream);
        self.out.push('>');
        write(&mut self.out);
        self.close(tag);
    }

    fn close(&mut self, tag: &str) {
        self.out.push_str("</");
        self.out.push_str(tag);
        self.out.push('>');
    }

    fn value(&mut self, v: &Value, name: Option<&str>, stream: Option<&str>, depth: usize) -> Result<(), EncodeError> {
        macro_rules! display {
            ($tag:literal, $x:expr) => {
                self.raw_element($tag, name, stream, |o| {
                    let _ = write!(o, "{}", $x);
                })
            };
        }
        match v {
            Value::Nil => {
                self.start("Nil", name, stream);
                self.out.push_str(" />");
            }
            Value::Bool(b) => display!("B", if *b { "true" } else { "false" }),
            Value::Char(c) => display!("C", c),
            Value::U8(x) => display!("By", x),
            Value::I8(x) => display!("SB", x),
            Value::U16(x) => display!("U16", x),
            Value::I16(x) => display!("I16", x),
            Value::U32(x) => display!("U32", x),
            Value::I32(x) => display!("I32", x),
            Value::U64(x) => display!("U64", x),
            Value::I64(x) => display!("I64", x),
            Value::Single(x) => self.raw_element("Sg", name, stream, |o| p::write_f32(o, *x)),
            Value::Double(x) => self.raw_element("Db", name, stream, |o| p::write_f64(o, *x)),
            Value::Decimal(d) => {
                if p::parse_decimal(d) != Some(d.as_str()) {
                    return Err(EncodeError::InvalidValue { type_name: "D", text: d.to_string() });
                }
                self.raw_element("D", name, stream, |o| o.push_str(d));
            }
            Value::String(s) => self.text_element("S", name, stream, s),
            Value::Uri(s) => self.text_element("URI", name, stream, s),
            Value::Xml(s) => self.text_element("XD", name, stream, s),
            Value::ScriptBlock(s) => self.text_element("SBK", name, stream, s),
            Value::DateTime(dt) => {
                if !p::valid_datetime(dt) {
                    return Err(EncodeError::InvalidValue { type_name: "DT", text: format!("{dt:?}") });
                }
                self.raw_element("DT", name, stream, |o| p::write_datetime(o, dt));
            }
            Value::TimeSpan(ts) => self.raw_element("TS", name, stream, |o| p::write_timespan(o, *ts)),
            Value::Bytes(b) => self.raw_element("BA", name, stream, |o| base64::engine::general_purpose::STANDARD.encode_string(b, o)),
            Value::SecureString(b) => {
                self.raw_element("SS", name, stream, |o| base64::engine::general_purpose::STANDARD.encode_string(b, o))
            }
            Value::Guid(g) => display!("G", g.hyphenated()),
            Value::Version(ver) => display!("Version", ver),
            Value::Progress(pr) => self.progress(pr, name, stream),
            Value::Object(obj) => self.object(obj, name, stream, depth)?,
            Value::Cycle(up) => {
                let idx = self.open.len().checked_sub(1 + *up as usize).ok_or(EncodeError::DanglingCycle(*up))?;
                let id = self.open[idx];
                self.start("Ref", name, stream);
                let _ = write!(self.out, " RefId=\"{id}\" />");
            }
        }
        Ok(())
    }

    fn progress(&mut self, pr: &ProgressRecord, name: Option<&str>, stream: Option<&str>) {
        self.start("PR", name, stream);
        self.out.push('>');
        self.text_element("AV", None, None, &pr.activity);
        self.raw_element("AI", None, None, |o| {
            let _ = write!(o, "{}", pr.activity_id);
        });
        match &pr.current_operation {
            Some(op) => self.text_element("S", None, None, op),
            None => self.out.push_str("<Nil />"),
        }
        for (tag, v) in [("PI", pr.parent_activity_id), ("PC", pr.percent_complete)] {
            self.raw_element(tag, None, None, |o| {
                let _ = write!(o, "{v}");
            });
        }
        let t = match pr.record_type {
            ProgressRecordType::Processing => "Processing",
            ProgressRecordType::Completed => "Completed",
        };
        self.raw_element("T", None, None, |o| o.push_str(t));
        self.raw_element("SR", None, None, |o| {
            let _ = write!(o, "{}", pr.seconds_remaining);
        });
        match &pr.status_description {
            Some(sd) => self.text_element("SD", None, None, sd),
            None => self.out.push_str("<Nil />"),
        }
        self.close("PR");
    }

    fn object(&mut self, obj: &Arc<Object>, name: Option<&str>, stream: Option<&str>, depth: usize) -> Result<(), EncodeError> {
        if depth >= MAX_ENCODE_DEPTH {
            return Err(EncodeError::TooDeep(MAX_ENCODE_DEPTH));
        }
        if obj.member_set {
            return Err(EncodeError::MisplacedMemberSet);
        }
        let ptr = Arc::as_ptr(obj);
        if let Some(id) = self.written.get(&ptr) {
            let id = *id;
            self.start("Ref", name, stream);
            let _ = write!(self.out, " RefId=\"{id}\" />");
            return Ok(());
        }
        let id = self.next_ref;
        self.next_ref += 1;
        // Only a pointer held elsewhere too can be met again.
        if Arc::strong_count(obj) > 1 {
            self.written.insert(ptr, id);
        }
        self.start("Obj", name, stream);
        let _ = write!(self.out, " RefId=\"{id}\">");
        if let Some(tn) = &obj.type_names {
            match self.type_names.get(tn) {
                Some(tn_id) => {
                    let _ = write!(self.out, "<TNRef RefId=\"{tn_id}\" />");
                }
                None => {
                    let tn_id = self.type_names.len() as u32;
                    self.type_names.insert(Arc::clone(tn), tn_id);
                    let _ = write!(self.out, "<TN RefId=\"{tn_id}\">");
                    for t in tn.iter() {
                        self.text_element("T", None, None, t);
                    }
                    self.out.push_str("</TN>");
                }
            }
        }
        if let Some(ts) = &obj.to_string {
            self.text_element("ToString", None, None, ts);
        }
        self.open.push(id);
        let result = self.object_content(obj, depth);
        self.open.pop();
        result?;
        self.close("Obj");
        Ok(())
    }

    fn object_content(&mut self, obj: &Object, depth: usize) -> Result<(), EncodeError> {
        match &obj.content {
            Content::None => {}
            Content::Primitive(v) => self.value(v, None, None, depth + 1)?,
            Content::List(kind, items) => {
                let tag = kind.tag();
                self.out.push('<');
                self.out.push_str(tag);
                self.out.push('>');
                for item in items {
                    self.value(item, None, None, depth + 1)?;
                }
                self.close(tag);
            }
            Content::Dict(entries) => {
                self.out.push_str("<DCT>");
                for (k, v) in entries {
                    self.out.push_str("<En>");
                    self.value(k, Some("Key"), None, depth + 2)?;
                    self.value(v, Some("Value"), None, depth + 2)?;
                    self.out.push_str("</En>");
                }
                self.out.push_str("</DCT>");
            }
        }
        for (tag, props) in [("Props", &obj.adapted), ("MS", &obj.extended)] {
            if props.is_empty() {
                continue;
            }
            self.out.push('<');
            self.out.push_str(tag);
            self.out.push('>');
            for prop in props {
                if tag == "MS" {
                    self.member(prop, depth + 1)?;
                } else {
                    self.value(&prop.value, Some(&prop.name), None, depth + 1)?;
                }
            }
            self.close(tag);
        }
        Ok(())
    }

    /// A member of an `<MS>`: an extended property, or a member set.
    fn member(&mut self, prop: &Property, depth: usize) -> Result<(), EncodeError> {
        match &prop.value {
            Value::Object(set) if set.member_set => self.member_set(set, &prop.name, depth),
            value => self.value(value, Some(&prop.name), None, depth),
        }
    }

    /// A member set, `<MS N="name">` with its members: note properties and member sets.
    fn member_set(&mut self, set: &Object, name: &str, depth: usize) -> Result<(), EncodeError> {
        if depth >= MAX_ENCODE_DEPTH {
            return Err(EncodeError::TooDeep(MAX_ENCODE_DEPTH));
        }
        if set.type_names.is_some() || set.to_string.is_some() || !matches!(set.content, Content::None) || !set.adapted.is_empty() {
            return Err(EncodeError::InvalidMemberSet(name.to_owned()));
        }
        self.start("MS", Some(name), None);
        if set.extended.is_empty() {
            self.out.push_str(" />");
            return Ok(());
        }
        self.out.push('>');
        for member in &set.extended {
            self.member(member, depth + 1)?;
        }
        self.close("MS");
        Ok(())
    }
}
