//! The decoder: CLIXML text to [`Value`]s.
//!
//! A recursive descent over quick-xml's events. Recursion is bounded by [`Limits::max_depth`], so a deeply
//! nested input is refused before it can exhaust the stack; every count and size has a limit too. Text is
//! taken as the raw slice between the tags and unescaped once (XML references, then `_xHHHH_`).

use std::collections::HashMap;
use std::sync::Arc;

use base64::Engine as _;
use quick_xml::Reader;
use quick_xml::events::{BytesStart, Event};
use uuid::Uuid;

use super::error::{DecodeError, DecodeErrorKind as K, Position};
use super::escape::{Unescape, unescape};
use super::primitive as p;
use super::value::*;

/// Bounds on what the decoder accepts. The defaults are generous for real PowerShell output and small
/// enough that hostile input cannot exhaust memory or the stack.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Deepest nesting of elements that hold values (objects, containers, properties). PowerShell's
    /// own serializer stops at depth 1 for remoting and allows at most 100 levels for Export-Clixml.
    pub max_depth: usize,
    /// Most values (elements) in one input.
    pub max_values: usize,
    /// Largest input in bytes.
    pub max_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_depth: 200, max_values: 50_000_000, max_bytes: 1 << 30 }
    }
}

/// Decodes a single PSRP message body (MS-PSRP 2.2.1): one element, no `<Objs>` root, optionally led by
/// a UTF-8 byte-order mark and an XML declaration.
pub fn decode_message(input: &[u8]) -> Result<Value, DecodeError> {
    decode_message_with(input, Limits::default())
}

/// [`decode_message`] with explicit limits.
pub fn decode_message_with(input: &[u8], limits: Limits) -> Result<Value, DecodeError> {
    let mut d = Decoder::new(input, limits)?;
    let value = match d.next_element("message")? {
        Some((start, empty)) => d.value(&start, empty, 0)?,
        None => return Err(d.error_at(d.pos(), K::Empty)),
    };
    d.expect_end_of_input("message")?;
    Ok(value)
}

/// Decodes a stand-alone document: `<Objs>` with its objects, optionally led by a byte-order mark, the
/// `#< CLIXML` line `pwsh` writes, and an XML declaration. Each object keeps its `S="…"` stream.
pub fn decode_document(input: &[u8]) -> Result<Document, DecodeError> {
    decode_document_with(input, Limits::default())
}

/// [`decode_document`] with explicit limits.
pub fn decode_document_with(input: &[u8], limits: Limits) -> Result<Document, DecodeError> {
    let mut d = Decoder::new(input, limits)?;
    let clixml_header = d.skip_clixml_header();
    let mut doc = Document { clixml_header, items: Vec::new() };
    let Some((root, empty)) = d.next_element("document")? else {
        return Err(d.error_at(d.pos(), K::NotADocument));
    };
    if root.local_name().as_ref() != "Objs" {
        return Err(d.error_at(d.last, K::NotADocument));
    }
    if !empty {
        loop {
            let at = d.pos();
            match d.read()? {
                Event::Start(e) => doc.items.push(d.item(&e, false)?),
                Event::Empty(e) => doc.items.push(d.item(&e, true)?),
                Event::End(e) => {
                    d.check_end("Objs", e.local_name().as_ref())?;
                    break;
                }
                Event::Text(t) => d.whitespace_only(&t, "<Objs>")?,
                Event::Eof => return Err(d.error_at(at, K::UnexpectedEof("Objs".into()))),
                Event::GeneralRef(_) | Event::CData(_) => {
                    return Err(d.error_at(at, K::UnexpectedText("<Objs>".into())));
                }
                _ => {}
            }
        }
    }
    d.expect_end_of_input("document")?;
    Ok(doc)
}

/// A slot of the `RefId` table: an object still being read (its depth among open objects) or done.
enum Slot {
    Open(u32),
    Done(Arc<Object>),
}

struct Decoder<'a> {
    input: &'a str,
    reader: Reader<&'a [u8]>,
    /// Offset of `input` within what the reader reads (the reader starts after a stripped prefix).
    base: usize,
    /// Where the last event read began, for error positions.
    last: usize,
    limits: Limits,
    values: usize,
    /// RefIds are 0, 1, 2… in practice: a vector indexed by id, with a map for the odd writer.
    refs: Vec<Option<Slot>>,
    refs_sparse: HashMap<u32, Slot>,
    type_names: Vec<Option<TypeNames>>,
    type_names_sparse: HashMap<u32, TypeNames>,
    /// Number of `<Obj>` elements currently open.
    open_objects: u32,
    /// Scratch for text that holds CDATA.
    scratch: Vec<u8>,
}

/// Attributes a CLIXML element can carry.
#[derive(Default)]
struct Attrs<'e> {
    n: Option<std::borrow::Cow<'e, str>>,
    ref_id: Option<std::borrow::Cow<'e, str>>,
    s: Option<std::borrow::Cow<'e, str>>,
}

const SPARSE_LIMIT: u32 = 1 << 16;

impl<'a> Decoder<'a> {
    fn new(bytes: &'a [u8], limits: Limits) -> Result<Self, DecodeError> {
        if bytes.len() > limits.max_bytes {
            return Err(DecodeError {
                kind: K::TooLarge { size: bytes.len(), limit: limits.max_bytes },
                position: Position::locate(bytes, 0),
            });
        }
        let input = std::str::from_utf8(bytes).map_err(|e| DecodeError {
            kind: K::BadText("not valid UTF-8"),
            position: Position::locate(bytes, e.valid_up_to()),
        })?;
        let base = if input.starts_with('\u{FEFF}') { 3 } else { 0 };
        Ok(Decoder {
            input,
            reader: Self::reader(&input[base..]),
            base,
            last: base,
            limits,
            values: 0,
            refs: Vec::new(),
            refs_sparse: HashMap::new(),
            type_names: Vec::new(),
            type_names_sparse: HashMap::new(),
            open_objects: 0,
            scratch: Vec::new(),
        })
    }

    fn reader(text: &'a str) -> Reader<&'a [u8]> {
        let mut r = Reader::from_str(text);
        let c = r.config_mut();
        c.trim_text_start = false;
        c.trim_text_end = false;
        c.expand_empty_elements = false;
        // The descent checks every end tag against the element it opened.
        c.check_end_names = false;
        r
    }

    /// Skips the `#< CLIXML` line; returns whether it was there.
    fn skip_clixml_header(&mut self) -> bool {
        let rest = &self.input[self.base..];
        let Some(after) = rest.strip_prefix("#< CLIXML") else { return false };
        let skip = after.bytes().take_while(|b| matches!(b, b'\r' | b'\n')).count();
        self.base += 9 + skip;
        self.reader = Self::reader(&self.input[self.base..]);
        true
    }

    fn pos(&self) -> usize {
        self.base + self.reader.buffer_position() as usize
    }

    fn error_at(&self, offset: usize, kind: K) -> DecodeError {
        DecodeError { kind, position: Position::locate(self.input.as_bytes(), offset) }
    }

    fn read(&mut self) -> Result<Event<'a>, DecodeError> {
        self.last = self.pos();
        match self.reader.read_event() {
            Ok(e) => Ok(e),
            Err(e) => {
                let at = self.base + self.reader.error_position() as usize;
                Err(self.error_at(at, K::Xml(e.to_string())))
            }
        }
    }

    /// The next element at the top level (skipping the declaration, comments and whitespace).
    fn next_element(&mut self, what: &'static str) -> Result<Option<(BytesStart<'a>, bool)>, DecodeError> {
        loop {
            match self.read()? {
                Event::Start(e) => return Ok(Some((e, false))),
                Event::Empty(e) => return Ok(Some((e, true))),
                Event::Eof => return Ok(None),
                Event::Text(t) => self.whitespace_only(&t, what)?,
                Event::GeneralRef(_) | Event::CData(_) => {
                    return Err(self.error_at(self.last, K::UnexpectedText(what.into())));
                }
                Event::End(e) => {
                    let name = e.local_name().as_ref().to_owned();
                    return Err(self.error_at(self.last, K::UnexpectedElement { element: format!("/{name}"), context: what.into() }));
                }
                Event::Decl(_) | Event::Comment(_) | Event::PI(_) | Event::DocType(_) => {}
            }
        }
    }

    fn expect_end_of_input(&mut self, what: &'static str) -> Result<(), DecodeError> {
        loop {
            match self.read()? {
                Event::Eof => return Ok(()),
                Event::Text(t) if t.bytes().all(|b| b.is_ascii_whitespace()) => {}
                Event::Comment(_) | Event::PI(_) => {}
                _ => return Err(self.error_at(self.last, K::TrailingContent(what))),
            }
        }
    }

    fn whitespace_only(&self, text: &str, context: &str) -> Result<(), DecodeError> {
        if text.bytes().all(|b| b.is_ascii_whitespace()) {
            Ok(())
        } else {
            Err(self.error_at(self.last, K::UnexpectedText(context.into())))
        }
    }

    fn check_end(&self, expected: &str, found: &str) -> Result<(), DecodeError> {
        if expected == found {
            Ok(())
        } else {
            Err(self.error_at(
                self.last,
                K::MismatchedEnd {
                    expected: expected.to_owned(),
                    found: found.to_owned(),
                },
            ))
        }
    }

    fn attrs<'e>(&self, e: &'e BytesStart<'a>) -> Result<Attrs<'e>, DecodeError> {
        let mut out = Attrs::default();
        for a in e.attributes().with_checks(false) {
            let a = a.map_err(|err| self.error_at(self.last, K::Xml(err.to_string())))?;
            match a.key.local_name().as_ref() {
                "N" => out.n = Some(a.value),
                "RefId" => out.ref_id = Some(a.value),
                "S" => out.s = Some(a.value),
                _ => {}
            }
        }
        Ok(out)
    }

    fn text_error(&self, at: usize, e: Unescape) -> DecodeError {
        match e {
            Unescape::Utf8(_) => self.error_at(at, K::BadText("not valid UTF-8")),
            Unescape::Entity(_) => self.error_at(at, K::BadText("malformed character or entity reference")),
        }
    }

    fn unescape_attr(&self, raw: &str) -> Result<Str, DecodeError> {
        unescape(raw.as_bytes()).map_err(|e| self.text_error(self.last, e))
    }

    fn ref_id(&self, element: &BytesStart<'_>, raw: Option<&str>) -> Result<u32, DecodeError> {
        raw.and_then(|s| p::trim(s).parse::<u32>().ok())
            .ok_or_else(|| {
                self.error_at(self.last, K::BadAttribute { element: name_of(element), attribute: "RefId" })
            })
    }

    fn count(&mut self) -> Result<(), DecodeError> {
        self.values += 1;
        if self.values > self.limits.max_values {
            return Err(self.error_at(self.last, K::TooManyValues(self.limits.max_values)));
        }
        Ok(())
    }

    fn item(&mut self, e: &BytesStart<'a>, empty: bool) -> Result<Item, DecodeError> {
        let stream = match self.attrs(e)?.s {
            Some(raw) => Some(self.unescape_attr(&raw)?),
            None => None,
        };
        Ok(Item { stream, value: self.value(e, empty, 0)? })
    }

    /// Reads the raw text content of the element just opened, up to and including its end tag.
    fn text(&mut self, tag: &str, empty: bool) -> Result<Str, DecodeError> {
        if empty {
            return Ok(Str::default());
        }
        let start = self.pos();
        let mut cdata = false;
        loop {
            let at = self.pos();
            match self.read()? {
                Event::Text(_) | Event::GeneralRef(_) => {}
                Event::CData(_) | Event::Comment(_) => cdata = true,
                Event::End(e) => {
                    self.check_end(tag, e.local_name().as_ref())?;
                    return if cdata { self.text_slow(start, at) } else { self.unescape_span(start, at) };
                }
                Event::Eof => return Err(self.error_at(at, K::UnexpectedEof(tag.to_owned()))),
                Event::Start(e) | Event::Empty(e) => {
                    return Err(self.error_at(
                        at,
                        K::UnexpectedElement { element: name_of(&e), context: format!("<{}>", tag) },
                    ));
                }
                Event::Decl(_) | Event::PI(_) | Event::DocType(_) => {}
            }
        }
    }

    fn unescape_span(&self, start: usize, end: usize) -> Result<Str, DecodeError> {
        unescape(self.input[start..end].as_bytes()).map_err(|e| self.text_error(start + offset_of(e), e))
    }

    /// Text with CDATA sections or comments: re-read the span event by event.
    fn text_slow(&mut self, start: usize, end: usize) -> Result<Str, DecodeError> {
        let mut r = Self::reader(&self.input[start..end]);
        self.scratch.clear();
        loop {
            match r.read_event() {
                Ok(Event::Text(t)) => self.scratch.extend_from_slice(t.as_bytes()),
                Ok(Event::GeneralRef(g)) => {
                    self.scratch.push(b'&');
                    self.scratch.extend_from_slice(g.as_bytes());
                    self.scratch.push(b';');
                }
                Ok(Event::CData(c)) => {
                    for b in c.bytes() {
                        match b {
                            b'&' => self.scratch.extend_from_slice(b"&amp;"),
                            b'<' => self.scratch.extend_from_slice(b"&lt;"),
                            _ => self.scratch.push(b),
                        }
                    }
                }
                Ok(Event::Eof) => break,
                Ok(_) => {}
                Err(e) => return Err(self.error_at(start, K::Xml(e.to_string()))),
            }
        }
        unescape(&self.scratch).map_err(|e| self.text_error(start, e))
    }

    /// Skips to the end of an element that must be empty (`<Nil>`, `<Ref>`, `<TNRef>`).
    fn empty_content(&mut self, tag: &str, empty: bool) -> Result<(), DecodeError> {
        if empty {
            return Ok(());
        }
        let text = self.text(tag, false)?;
        if text.bytes().all(|b| b.is_ascii_whitespace()) {
            Ok(())
        } else {
            Err(self.error_at(self.last, K::UnexpectedText(format!("<{}>", tag))))
        }
    }

    fn invalid(&self, type_name: &'static str, text: &str) -> DecodeError {
        let mut text = text.to_owned();
        if text.len() > 64 {
            let cut = (0..=64).rev().find(|i| text.is_char_boundary(*i)).unwrap_or(0);
            text.truncate(cut);
            text.push('…');
        }
        self.error_at(self.last, K::InvalidValue { type_name, text })
    }

    /// One value: the element `e` has just been read. `depth` counts the enclosing value levels.
    fn value(&mut self, e: &BytesStart<'a>, empty: bool, depth: usize) -> Result<Value, DecodeError> {
        self.count()?;
        let name = e.local_name();
        let tag = name.as_ref();
        macro_rules! parsed {
            ($tname:literal, $parse:expr, $variant:expr) => {{
                let t = self.text(tag, empty)?;
                match $parse(t.as_str()) {
                    Some(v) => $variant(v),
                    None => return Err(self.invalid($tname, &t)),
                }
            }};
        }
        fn int<T: std::str::FromStr>(s: &str) -> Option<T> {
            p::trim(s).parse().ok()
        }
        Ok(match tag {
            "S" => Value::String(self.text(tag, empty)?),
            "I32" => parsed!("I32", int::<i32>, Value::I32),
            "I64" => parsed!("I64", int::<i64>, Value::I64),
            "B" => parsed!("B", p::parse_bool, Value::Bool),
            "Obj" => self.object(e, empty, depth)?,
            "Ref" => {
                let attrs = self.attrs(e)?;
                let id = self.ref_id(e, attrs.ref_id.as_deref())?;
                self.empty_content(tag, empty)?;
                self.resolve_ref(id)?
            }
            "Nil" => {
                self.empty_content(tag, empty)?;
                Value::Nil
            }
            "DT" => parsed!("DT", p::parse_datetime, Value::DateTime),
            "TS" => parsed!("TS", p::parse_timespan, Value::TimeSpan),
            "U32" => parsed!("U32", int::<u32>, Value::U32),
            "U64" => parsed!("U64", int::<u64>, Value::U64),
            "I16" => parsed!("I16", int::<i16>, Value::I16),
            "U16" => parsed!("U16", int::<u16>, Value::U16),
            "By" => parsed!("By", int::<u8>, Value::U8),
            "SB" => parsed!("SB", int::<i8>, Value::I8),
            "C" => parsed!("C", int::<u16>, Value::Char),
            "Db" => parsed!("Db", p::parse_f64, Value::Double),
            "Sg" => parsed!("Sg", p::parse_f32, Value::Single),
            "D" => parsed!("D", p::parse_decimal, |d: &str| Value::Decimal(Str::from(d))),
            "G" => parsed!("G", |s: &str| Uuid::try_parse(p::trim(s)).ok(), Value::Guid),
            "Version" => parsed!("Version", p::parse_version, Value::Version),
            "BA" => parsed!("BA", decode_base64, Value::Bytes),
            "SS" => parsed!("SS", decode_base64, Value::SecureString),
            "URI" => Value::Uri(self.text(tag, empty)?),
            "XD" => Value::Xml(self.text(tag, empty)?),
            "SBK" => Value::ScriptBlock(self.text(tag, empty)?),
            "PR" => Value::Progress(Box::new(self.progress(empty)?)),
            _ => {
                return Err(self.error_at(
                    self.last,
                    K::UnexpectedElement { element: name_of(e), context: "a value position".into() },
                ));
            }
        })
    }

    fn resolve_ref(&self, id: u32) -> Result<Value, DecodeError> {
        let slot = if id < SPARSE_LIMIT { self.refs.get(id as usize).and_then(Option::as_ref) } else { self.refs_sparse.get(&id) };
        match slot {
            Some(Slot::Done(obj)) => Ok(Value::Object(Arc::clone(obj))),
            Some(Slot::Open(level)) => Ok(Value::Cycle(self.open_objects - 1 - level)),
            None => Err(self.error_at(self.last, K::UnknownRef { element: "Ref", id })),
        }
    }

    fn set_ref(&mut self, id: u32, slot: Slot) {
        if id < SPARSE_LIMIT {
            let i = id as usize;
            if self.refs.len() <= i {
                self.refs.resize_with(i + 1, || None);
            }
            self.refs[i] = Some(slot);
        } else {
            self.refs_sparse.insert(id, slot);
        }
    }

    fn object(&mut self, e: &BytesStart<'a>, empty: bool, depth: usize) -> Result<Value, DecodeError> {
        if depth >= self.limits.max_depth {
            return Err(self.error_at(self.last, K::TooDeep(self.limits.max_depth)));
        }
        let attrs = self.attrs(e)?;
        let ref_id = match attrs.ref_id {
            Some(raw) => Some(self.ref_id(e, Some(&raw))?),
            None => None,
        };
        if let Some(id) = ref_id {
            self.set_ref(id, Slot::Open(self.open_objects));
        }
        self.open_objects += 1;
        let result = self.object_body(empty, depth);
        self.open_objects -= 1;
        let obj = Arc::new(result?);
        if let Some(id) = ref_id {
            self.set_ref(id, Slot::Done(Arc::clone(&obj)));
        }
        Ok(Value::Object(obj))
    }

    fn object_body(&mut self, empty: bool, depth: usize) -> Result<Object, DecodeError> {
        let mut obj = Object::default();
        if empty {
            return Ok(obj);
        }
        let mut has_content = false;
        loop {
            let at = self.pos();
            let (e, child_empty) = match self.read()? {
                Event::Start(e) => (e, false),
                Event::Empty(e) => (e, true),
                Event::End(e) => {
                    self.check_end("Obj", e.local_name().as_ref())?;
                    return Ok(obj);
                }
                Event::Text(t) => {
                    self.whitespace_only(&t, "<Obj>")?;
                    continue;
                }
                Event::Eof => return Err(self.error_at(at, K::UnexpectedEof("Obj".into()))),
                Event::GeneralRef(_) | Event::CData(_) => return Err(self.error_at(at, K::UnexpectedText("<Obj>".into()))),
                _ => continue,
            };
            let name = e.local_name();
            match name.as_ref() {
                "MS" => self.properties("MS", child_empty, depth + 1, &mut obj.extended)?,
                "Props" => self.properties("Props", child_empty, depth + 1, &mut obj.adapted)?,
                "TN" => obj.type_names = Some(self.type_names(&e, child_empty)?),
                "TNRef" => {
                    let attrs = self.attrs(&e)?;
                    let id = self.ref_id(&e, attrs.ref_id.as_deref())?;
                    self.empty_content("TNRef", child_empty)?;
                    let tn = if id < SPARSE_LIMIT {
                        self.type_names.get(id as usize).and_then(Option::as_ref)
                    } else {
                        self.type_names_sparse.get(&id)
                    };
                    let tn = tn.ok_or_else(|| self.error_at(at, K::UnknownRef { element: "TNRef", id }))?;
                    obj.type_names = Some(Arc::clone(tn));
                }
                "ToString" => obj.to_string = Some(self.text("ToString", child_empty)?),
                tag @ ("LST" | "IE" | "STK" | "QUE" | "DCT") => {
                    if std::mem::replace(&mut has_content, true) {
                        return Err(self.error_at(at, K::DuplicateContent));
                    }
                    self.count()?;
                    obj.content = if tag == "DCT" {
                        Content::Dict(self.dict(child_empty, depth + 1)?)
                    } else {
                        let kind = match tag {
                            "LST" => ListKind::List,
                            "IE" => ListKind::Enumerable,
                            "STK" => ListKind::Stack,
                            _ => ListKind::Queue,
                        };
                        Content::List(kind, self.list(kind.tag(), child_empty, depth + 1)?)
                    };
                }
                _ => {
                    // An extended primitive or an enum's value.
                    if std::mem::replace(&mut has_content, true) {
                        return Err(self.error_at(at, K::DuplicateContent));
                    }
                    obj.content = Content::Primitive(self.value(&e, child_empty, depth + 1)?);
                }
            }
        }
    }

    fn type_names(&mut self, e: &BytesStart<'a>, empty: bool) -> Result<TypeNames, DecodeError> {
        let attrs = self.attrs(e)?;
        let id = match attrs.ref_id {
            Some(raw) => Some(self.ref_id(e, Some(&raw))?),
            None => None,
        };
        let mut names = Vec::new();
        if !empty {
            loop {
                let at = self.pos();
                match self.read()? {
                    Event::Start(t) if t.local_name().as_ref() == "T" => {
                        self.count()?;
                        names.push(self.text("T", false)?);
                    }
                    Event::Empty(t) if t.local_name().as_ref() == "T" => names.push(Str::default()),
                    Event::End(end) => {
                        self.check_end("TN", end.local_name().as_ref())?;
                        break;
                    }
                    Event::Text(t) => self.whitespace_only(&t, "<TN>")?,
                    Event::Start(t) | Event::Empty(t) => {
                        return Err(self.error_at(at, K::UnexpectedElement { element: name_of(&t), context: "<TN>".into() }));
                    }
                    Event::Eof => return Err(self.error_at(at, K::UnexpectedEof("TN".into()))),
                    Event::GeneralRef(_) | Event::CData(_) => return Err(self.error_at(at, K::UnexpectedText("<TN>".into()))),
                    _ => {}
                }
            }
        }
        let names: TypeNames = names.into();
        if let Some(id) = id {
            if id < SPARSE_LIMIT {
                let i = id as usize;
                if self.type_names.len() <= i {
                    self.type_names.resize_with(i + 1, || None);
                }
                self.type_names[i] = Some(Arc::clone(&names));
            } else {
                self.type_names_sparse.insert(id, Arc::clone(&names));
            }
        }
        Ok(names)
    }

    /// The children of a container, each opened element passed to `each`.
    fn children(
        &mut self,
        tag: &'static str,
        empty: bool,
        mut each: impl FnMut(&mut Self, BytesStart<'a>, bool, usize) -> Result<(), DecodeError>,
    ) -> Result<(), DecodeError> {
        if empty {
            return Ok(());
        }
        loop {
            let at = self.pos();
            match self.read()? {
                Event::Start(e) => each(self, e, false, at)?,
                Event::Empty(e) => each(self, e, true, at)?,
                Event::End(e) => return self.check_end(tag, e.local_name().as_ref()),
                Event::Text(t) => self.whitespace_only(&t, container_name(tag))?,
                Event::Eof => return Err(self.error_at(at, K::UnexpectedEof(tag.to_owned()))),
                Event::GeneralRef(_) | Event::CData(_) => {
                    return Err(self.error_at(at, K::UnexpectedText(container_name(tag).into())));
                }
                _ => {}
            }
        }
    }

    fn properties(&mut self, tag: &'static str, empty: bool, depth: usize, out: &mut Vec<Property>) -> Result<(), DecodeError> {
        self.children(tag, empty, |d, e, child_empty, _| {
            let name = match d.attrs(&e)?.n {
                Some(raw) => d.unescape_attr(&raw)?,
                None => return Err(d.error_at(d.last, K::BadAttribute { element: name_of(&e), attribute: "N" })),
            };
            let value = d.value(&e, child_empty, depth)?;
            out.push(Property { name, value });
            Ok(())
        })
    }

    fn list(&mut self, tag: &'static str, empty: bool, depth: usize) -> Result<Vec<Value>, DecodeError> {
        let mut items = Vec::new();
        self.children(tag, empty, |d, e, child_empty, _| {
            items.push(d.value(&e, child_empty, depth)?);
            Ok(())
        })?;
        Ok(items)
    }

    fn dict(&mut self, empty: bool, depth: usize) -> Result<Vec<(Value, Value)>, DecodeError> {
        let mut entries = Vec::new();
        self.children("DCT", empty, |d, e, en_empty, at| {
            if e.local_name().as_ref() != "En" {
                return Err(d.error_at(at, K::UnexpectedElement { element: name_of(&e), context: "<DCT>".into() }));
            }
            let (mut key, mut value) = (None, None);
            d.children("En", en_empty, |d, e, child_empty, _| {
                let n = d.attrs(&e)?.n.map(|n| n.into_owned());
                let v = d.value(&e, child_empty, depth + 1)?;
                match n.as_deref() {
                    Some("Key") => key = Some(v),
                    Some("Value") => value = Some(v),
                    _ => return Err(d.error_at(d.last, K::BadAttribute { element: name_of(&e), attribute: "N" })),
                }
                Ok(())
            })?;
            match (key, value) {
                (Some(k), Some(v)) => entries.push((k, v)),
                (None, _) => return Err(d.error_at(at, K::BadDictEntry("a Key"))),
                (_, None) => return Err(d.error_at(at, K::BadDictEntry("a Value"))),
            }
            Ok(())
        })?;
        Ok(entries)
    }

    fn progress(&mut self, empty: bool) -> Result<ProgressRecord, DecodeError> {
        let mut pr = ProgressRecord {
            activity: Str::default(),
            activity_id: 0,
            current_operation: None,
            parent_activity_id: -1,
            percent_complete: -1,
            record_type: ProgressRecordType::Processing,
            seconds_remaining: -1,
            status_description: None,
        };
        self.children("PR", empty, |d, e, child_empty, at| {
            let name = e.local_name();
            let tag = name.as_ref();
            let int = |d: &mut Self, tag: &'static str, name: &'static str| -> Result<i32, DecodeError> {
                let t = d.text(tag, child_empty)?;
                p::trim(&t).parse().map_err(|_| d.invalid(name, &t))
            };
            match tag {
                "AV" => pr.activity = d.text("AV", child_empty)?,
                "AI" => pr.activity_id = int(d, "AI", "PR/AI")?,
                "PI" => pr.parent_activity_id = int(d, "PI", "PR/PI")?,
                "PC" => pr.percent_complete = int(d, "PC", "PR/PC")?,
                "SR" => pr.seconds_remaining = int(d, "SR", "PR/SR")?,
                "S" => pr.current_operation = Some(d.text("S", child_empty)?),
                "Nil" => d.empty_content("Nil", child_empty)?,
                "SD" => pr.status_description = Some(d.text("SD", child_empty)?),
                "T" => {
                    let t = d.text("T", child_empty)?;
                    pr.record_type = match p::trim(&t) {
                        "Processing" => ProgressRecordType::Processing,
                        "Completed" => ProgressRecordType::Completed,
                        _ => return Err(d.invalid("PR/T", &t)),
                    };
                }
                _ => return Err(d.error_at(at, K::UnexpectedElement { element: name_of(&e), context: "<PR>".into() })),
            }
            Ok(())
        })?;
        Ok(pr)
    }
}

fn offset_of(e: Unescape) -> usize {
    match e {
        Unescape::Utf8(at) => at,
        Unescape::Entity(b) => b.offset,
    }
}

fn name_of(e: &BytesStart<'_>) -> String {
    e.name().as_ref().to_owned()
}

fn container_name(tag: &str) -> &'static str {
    match tag {
        "MS" => "<MS>",
        "Props" => "<Props>",
        "LST" => "<LST>",
        "IE" => "<IE>",
        "STK" => "<STK>",
        "QUE" => "<QUE>",
        "DCT" => "<DCT>",
        "En" => "<En>",
        "PR" => "<PR>",
        _ => "a container",
    }
}

fn decode_base64(s: &str) -> Option<Vec<u8>> {
    let engine = &base64::engine::general_purpose::STANDARD;
    let t = p::trim(s);
    match engine.decode(t) {
        Ok(v) => Some(v),
        // XmlReader's base64 reader skips whitespace inside the text.
        Err(_) if t.bytes().any(|b| b.is_ascii_whitespace()) => {
            let compact: Vec<u8> = t.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
            engine.decode(compact).ok()
        }
        Err(_) => None,
    }
}
