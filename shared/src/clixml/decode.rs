//! The decoder: CLIXML text to [`Value`]s.
//!
//! A loop over quick-xml's events with an explicit stack of open containers, so nesting costs heap,
//! not call stack: a deeply nested input is refused by [`Limits::max_depth`] and can never overflow the
//! stack, whatever the build. Every count and size has a limit too. Text is taken as the raw slice
//! between the tags and unescaped once (XML references, then `_xHHHH_`).

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
/// enough that hostile input cannot exhaust memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Deepest nesting of open containers (objects, property sets, lists, dictionary entries).
    /// PowerShell's own serializer and deserializer stop 50 objects below the top level
    /// (`MaxDepthBelowTopLevel`); an object nested in a property takes two levels here.
    pub max_depth: usize,
    /// Most values (elements) in one input.
    pub max_values: usize,
    /// Largest input in bytes.
    pub max_bytes: usize,
}

/// Deepest nesting the decoder accepts by default. Values this deep are also safe to encode, print
/// and drop with the recursive code elsewhere (see the `deep_nesting` test).
pub const DEFAULT_MAX_DEPTH: usize = 128;

impl Default for Limits {
    fn default() -> Self {
        Limits { max_depth: DEFAULT_MAX_DEPTH, max_values: 50_000_000, max_bytes: 1 << 30 }
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
        Some((start, empty)) => {
            d.frames.push(Frame::Message(None));
            d.begin_value(&start, empty, None)?;
            d.run()?;
            match d.frames.pop() {
                Some(Frame::Message(Some(v))) => v,
                _ => return Err(d.error_at(d.pos(), K::Empty)),
            }
        }
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
    let Some((root, empty)) = d.next_element("document")? else {
        return Err(d.error_at(d.pos(), K::NotADocument));
    };
    if root.local_name().as_ref() != "Objs" {
        return Err(d.error_at(d.last, K::NotADocument));
    }
    let mut items = Vec::new();
    if !empty {
        d.frames.push(Frame::Objs(Vec::new()));
        d.run()?;
        items = d.document.take().unwrap_or_default();
    }
    d.expect_end_of_input("document")?;
    Ok(Document { clixml_header, items })
}

/// An open container on the decoder's stack.
enum Frame {
    /// The top of a message; holds its value once read.
    Message(Option<Value>),
    /// The `<Objs>` root of a document.
    Objs(Vec<Item>),
    /// An `<Obj>` being read.
    Obj(Box<OpenObject>),
    /// `<MS>` (extended) or `<Props>` (adapted).
    Props { extended: bool, props: Vec<Property> },
    /// `<LST>`, `<IE>`, `<STK>`, `<QUE>`.
    List(ListKind, Vec<Value>),
    /// `<DCT>`
    Dict(Vec<(Value, Value)>),
    /// `<En>`: a dictionary entry.
    En { key: Option<Value>, value: Option<Value> },
}

struct OpenObject {
    obj: Object,
    ref_id: Option<u32>,
    has_content: bool,
    /// What the parent needs with the finished value: its `N` (or, in a document, `S`) attribute.
    slot: Option<Str>,
}

impl Frame {
    fn tag(&self) -> &'static str {
        match self {
            Frame::Message(_) => "message",
            Frame::Objs(_) => "Objs",
            Frame::Obj(_) => "Obj",
            Frame::Props { extended: true, .. } => "MS",
            Frame::Props { extended: false, .. } => "Props",
            Frame::List(kind, _) => kind.tag(),
            Frame::Dict(_) => "DCT",
            Frame::En { .. } => "En",
        }
    }
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
    /// The open containers, innermost last.
    frames: Vec<Frame>,
    /// A document's items once `</Objs>` is read.
    document: Option<Vec<Item>>,
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
            frames: Vec::new(),
            document: None,
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

    fn invalid(&self, at: usize, type_name: &'static str, text: &str) -> DecodeError {
        let mut text = text.to_owned();
        if text.len() > 64 {
            let cut = (0..=64).rev().find(|i| text.is_char_boundary(*i)).unwrap_or(0);
            text.truncate(cut);
            text.push('…');
        }
        self.error_at(at, K::InvalidValue { type_name, text })
    }

    /// Reads events until the frame that was on top when called is closed.
    fn run(&mut self) -> Result<(), DecodeError> {
        let floor = self.frames.len();
        loop {
            if self.frames.len() < floor || matches!(self.frames.last(), Some(Frame::Message(Some(_)))) {
                return Ok(());
            }
            let at = self.pos();
            match self.read()? {
                Event::Start(e) => self.open_child(&e, false, at)?,
                Event::Empty(e) => self.open_child(&e, true, at)?,
                Event::End(e) => self.close(e.local_name().as_ref(), at)?,
                Event::Text(t) => {
                    if !t.bytes().all(|b| b.is_ascii_whitespace()) {
                        return Err(self.error_at(at, K::UnexpectedText(self.context())));
                    }
                }
                Event::GeneralRef(_) | Event::CData(_) => return Err(self.error_at(at, K::UnexpectedText(self.context()))),
                Event::Eof => {
                    let tag = self.frames.last().map_or("message", Frame::tag);
                    return Err(self.error_at(at, K::UnexpectedEof(tag.into())));
                }
                Event::Decl(_) | Event::Comment(_) | Event::PI(_) | Event::DocType(_) => {}
            }
        }
    }

    fn context(&self) -> String {
        format!("<{}>", self.frames.last().map_or("message", Frame::tag))
    }

    fn push(&mut self, frame: Frame) -> Result<(), DecodeError> {
        if self.frames.len() > self.limits.max_depth {
            return Err(self.error_at(self.last, K::TooDeep(self.limits.max_depth)));
        }
        self.frames.push(frame);
        Ok(())
    }

    /// An element opened inside the innermost frame.
    fn open_child(&mut self, e: &BytesStart<'a>, empty: bool, at: usize) -> Result<(), DecodeError> {
        let name = e.local_name();
        let tag = name.as_ref();
        match self.frames.last_mut() {
            Some(Frame::Obj(open)) => match tag {
                "MS" | "Props" => {
                    if !empty {
                        self.push(Frame::Props { extended: tag == "MS", props: Vec::new() })?;
                    }
                }
                "TN" => {
                    let tn = self.type_names(e, empty)?;
                    if let Some(Frame::Obj(open)) = self.frames.last_mut() {
                        open.obj.type_names = Some(tn);
                    }
                }
                "TNRef" => {
                    let attrs = self.attrs(e)?;
                    let id = self.ref_id(e, attrs.ref_id.as_deref())?;
                    self.empty_content("TNRef", empty)?;
                    let tn = if id < SPARSE_LIMIT {
                        self.type_names.get(id as usize).and_then(Option::as_ref)
                    } else {
                        self.type_names_sparse.get(&id)
                    };
                    let tn = tn.cloned().ok_or_else(|| self.error_at(at, K::UnknownRef { element: "TNRef", id }))?;
                    if let Some(Frame::Obj(open)) = self.frames.last_mut() {
                        open.obj.type_names = Some(tn);
                    }
                }
                "ToString" => {
                    let text = self.text("ToString", empty)?;
                    if let Some(Frame::Obj(open)) = self.frames.last_mut() {
                        open.obj.to_string = Some(text);
                    }
                }
                "LST" | "IE" | "STK" | "QUE" | "DCT" => {
                    if std::mem::replace(&mut open.has_content, true) {
                        return Err(self.error_at(at, K::DuplicateContent));
                    }
                    self.count()?;
                    let frame = match tag {
                        "LST" => Frame::List(ListKind::List, Vec::new()),
                        "IE" => Frame::List(ListKind::Enumerable, Vec::new()),
                        "STK" => Frame::List(ListKind::Stack, Vec::new()),
                        "QUE" => Frame::List(ListKind::Queue, Vec::new()),
                        _ => Frame::Dict(Vec::new()),
                    };
                    if empty {
                        self.end_frame(frame, at)?;
                    } else {
                        self.push(frame)?;
                    }
                }
                // An extended primitive or an enum's value.
                _ => {
                    if open.has_content {
                        return Err(self.error_at(at, K::DuplicateContent));
                    }
                    self.begin_value(e, empty, None)?;
                }
            },
            Some(Frame::Props { .. }) => {
                let name = match self.attrs(e)?.n {
                    Some(raw) => self.unescape_attr(&raw)?,
                    None => return Err(self.error_at(at, K::BadAttribute { element: name_of(e), attribute: "N" })),
                };
                self.begin_value(e, empty, Some(name))?;
            }
            Some(Frame::List(..)) => self.begin_value(e, empty, None)?,
            Some(Frame::Dict(_)) => {
                if tag != "En" {
                    return Err(self.error_at(at, K::UnexpectedElement { element: name_of(e), context: "<DCT>".into() }));
                }
                let frame = Frame::En { key: None, value: None };
                if empty {
                    self.end_frame(frame, at)?;
                } else {
                    self.push(frame)?;
                }
            }
            Some(Frame::En { .. }) => {
                let n = self.attrs(e)?.n;
                let slot = match n.as_deref() {
                    Some("Key") => "Key",
                    Some("Value") => "Value",
                    _ => return Err(self.error_at(at, K::BadAttribute { element: name_of(e), attribute: "N" })),
                };
                self.begin_value(e, empty, Some(Str::const_new(slot)))?;
            }
            Some(Frame::Objs(_)) => {
                let stream = match self.attrs(e)?.s {
                    Some(raw) => Some(self.unescape_attr(&raw)?),
                    None => None,
                };
                self.begin_value(e, empty, stream)?;
            }
            Some(Frame::Message(_)) | None => {
                return Err(self.error_at(at, K::TrailingContent("message")));
            }
        }
        Ok(())
    }

    /// A value element: an `<Obj>` opens a frame; anything else is read whole and delivered.
    fn begin_value(&mut self, e: &BytesStart<'a>, empty: bool, slot: Option<Str>) -> Result<(), DecodeError> {
        if e.local_name().as_ref() != "Obj" {
            let value = self.primitive(e, empty)?;
            return self.deliver(value, slot);
        }
        self.count()?;
        let attrs = self.attrs(e)?;
        let ref_id = match attrs.ref_id {
            Some(raw) => Some(self.ref_id(e, Some(&raw))?),
            None => None,
        };
        let open = Box::new(OpenObject { obj: Object::default(), ref_id, has_content: false, slot });
        if let Some(id) = ref_id {
            self.set_ref(id, Slot::Open(self.open_objects));
        }
        self.open_objects += 1;
        if empty {
            self.end_frame(Frame::Obj(open), self.last)
        } else {
            self.push(Frame::Obj(open))
        }
    }

    /// An end tag: closes the innermost frame.
    fn close(&mut self, tag: &str, at: usize) -> Result<(), DecodeError> {
        let expected = self.frames.last().map_or("message", Frame::tag);
        if expected != tag {
            return Err(self.error_at(at, K::MismatchedEnd { expected: expected.into(), found: tag.into() }));
        }
        match self.frames.pop() {
            Some(Frame::Objs(items)) => {
                // The document root is done: hand its items to the caller.
                self.document = Some(items);
                Ok(())
            }
            Some(frame) => self.end_frame(frame, at),
            None => Ok(()),
        }
    }

    /// A finished frame: its value goes to the frame below.
    fn end_frame(&mut self, frame: Frame, at: usize) -> Result<(), DecodeError> {
        match frame {
            Frame::Obj(open) => {
                let OpenObject { obj, ref_id, slot, .. } = *open;
                self.open_objects -= 1;
                let obj = Arc::new(obj);
                if let Some(id) = ref_id {
                    self.set_ref(id, Slot::Done(Arc::clone(&obj)));
                }
                self.deliver(Value::Object(obj), slot)
            }
            Frame::Props { extended, props } => {
                if let Some(Frame::Obj(open)) = self.frames.last_mut() {
                    let target = if extended { &mut open.obj.extended } else { &mut open.obj.adapted };
                    if target.is_empty() {
                        *target = props;
                    } else {
                        target.extend(props);
                    }
                }
                Ok(())
            }
            Frame::List(kind, items) => self.set_content(Content::List(kind, items)),
            Frame::Dict(entries) => self.set_content(Content::Dict(entries)),
            Frame::En { key, value } => match (key, value) {
                (Some(k), Some(v)) => {
                    if let Some(Frame::Dict(entries)) = self.frames.last_mut() {
                        entries.push((k, v));
                    }
                    Ok(())
                }
                (None, _) => Err(self.error_at(at, K::BadDictEntry("a Key"))),
                (_, None) => Err(self.error_at(at, K::BadDictEntry("a Value"))),
            },
            Frame::Message(_) | Frame::Objs(_) => Ok(()),
        }
    }

    fn set_content(&mut self, content: Content) -> Result<(), DecodeError> {
        if let Some(Frame::Obj(open)) = self.frames.last_mut() {
            open.obj.content = content;
        }
        Ok(())
    }

    /// A finished value goes to the innermost frame.
    fn deliver(&mut self, value: Value, slot: Option<Str>) -> Result<(), DecodeError> {
        match self.frames.last_mut() {
            Some(Frame::Obj(open)) => {
                open.has_content = true;
                open.obj.content = Content::Primitive(value);
            }
            Some(Frame::Props { props, .. }) => props.push(Property { name: slot.unwrap_or_default(), value }),
            Some(Frame::List(_, items)) => items.push(value),
            Some(Frame::En { key, value: v }) => {
                if slot.as_deref() == Some("Key") {
                    *key = Some(value);
                } else {
                    *v = Some(value);
                }
            }
            Some(Frame::Objs(items)) => items.push(Item { stream: slot, value }),
            Some(Frame::Message(result)) => *result = Some(value),
            Some(Frame::Dict(_)) | None => {}
        }
        Ok(())
    }

    /// A value that is not an `<Obj>`: the element `e` has just been read; reads through its end tag.
    fn primitive(&mut self, e: &BytesStart<'a>, empty: bool) -> Result<Value, DecodeError> {
        self.count()?;
        let name = e.local_name();
        let tag = name.as_ref();
        macro_rules! parsed {
            ($tname:literal, $parse:expr, $variant:expr) => {{
                let at = self.pos();
                let t = self.text(tag, empty)?;
                match $parse(t.as_str()) {
                    Some(v) => $variant(v),
                    None => return Err(self.invalid(at, $tname, &t)),
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
                let at = d.pos();
                let t = d.text(tag, child_empty)?;
                p::trim(&t).parse().map_err(|_| d.invalid(at, name, &t))
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
                    let at = d.pos();
                    let t = d.text("T", child_empty)?;
                    pr.record_type = match p::trim(&t) {
                        "Processing" => ProgressRecordType::Processing,
                        "Completed" => ProgressRecordType::Completed,
                        _ => return Err(d.invalid(at, "PR/T", &t)),
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
