//! The decoder: CLIXML text to [`Value`]s.
//!
//! One pass over the tokens of [`xml`](super::xml) with an explicit stack of open containers, so
//! nesting costs heap, not call stack: a deeply nested input is refused by [`Limits::max_depth`] and can
//! never overflow the stack, whatever the build. Every count and size has a limit too. Text is taken
//! as the raw slice between the tags and unescaped once (XML references, then `_xHHHH_`). Property
//! and item lists are gathered on shared stacks and moved out at their exact size.

use std::collections::HashMap;
use std::sync::Arc;

use base64::Engine as _;
use uuid::Uuid;

use super::error::{DecodeError, DecodeErrorKind as K, Position};
use super::escape::unescape;
use super::primitive as p;
use super::value::*;
use super::xml::{Lexer, Start, SyntaxError, Token};

/// Bounds on what the decoder accepts. The defaults are generous for real PowerShell output and small
/// enough that hostile input cannot exhaust memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Deepest nesting of open containers (objects, property sets, member sets, lists, dictionary
    /// entries).
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
    let Some(start) = d.next_element("message")? else {
        return Err(d.error_at(d.lexer.pos(), K::Empty));
    };
    d.frames.push(Frame::Message(None));
    d.begin_value(&start, None)?;
    d.run()?;
    let Some(Frame::Message(Some(value))) = d.frames.pop() else {
        return Err(d.error_at(d.lexer.pos(), K::Empty));
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
    let Some(root) = d.next_element("document")? else {
        return Err(d.error_at(d.lexer.pos(), K::NotADocument));
    };
    if root.name != "Objs" {
        return Err(d.error_at(d.last, K::NotADocument));
    }
    let mut items = Vec::new();
    if !root.empty {
        d.frames.push(Frame::Objs(Vec::new()));
        d.run()?;
        items = d.document.take().unwrap_or_default();
    }
    d.expect_end_of_input("document")?;
    Ok(Document { clixml_header, items })
}

/// What a CLIXML text holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A stand-alone `<Objs>` document.
    Document,
    /// One PSRP message body.
    Message,
}

/// Tells a document from a message: a document starts, after a byte-order mark, whitespace, the
/// `#< CLIXML` line, an XML declaration and comments, with `<Objs`.
pub fn kind_of(input: &[u8]) -> Kind {
    let head = String::from_utf8_lossy(&input[..input.len().min(4096)]);
    let mut s = head.trim_start_matches('\u{FEFF}').trim_start();
    if let Some(rest) = s.strip_prefix("#< CLIXML")
        && (rest.is_empty() || rest.starts_with(['\r', '\n']))
    {
        return Kind::Document;
    }
    loop {
        s = s.trim_start();
        if let Some(rest) = s.strip_prefix("<?") {
            s = rest.split_once("?>").map_or("", |(_, r)| r);
        } else if let Some(rest) = s.strip_prefix("<!--") {
            s = rest.split_once("-->").map_or("", |(_, r)| r);
        } else {
            let root = s.strip_prefix("<Objs").is_some_and(|r| r.is_empty() || r.starts_with([' ', '>', '/', '\t', '\r', '\n']));
            return if root { Kind::Document } else { Kind::Message };
        }
    }
}

/// Decodes a document, or a single message as a one-item document; says which it was.
pub fn decode_auto(input: &[u8]) -> Result<(Kind, Document), DecodeError> {
    match kind_of(input) {
        Kind::Document => Ok((Kind::Document, decode_document(input)?)),
        Kind::Message => {
            let value = decode_message(input)?;
            Ok((Kind::Message, Document { clixml_header: false, items: vec![Item { stream: None, value }] }))
        }
    }
}

/// An open container on the decoder's stack.
enum Frame {
    /// The top of a message; holds its value once read.
    Message(Option<Value>),
    /// The `<Objs>` root of a document.
    Objs(Vec<Item>),
    /// An `<Obj>` being read.
    Obj(OpenObject),
    /// `<MS>` (extended) or `<Props>` (adapted); its properties are on `Decoder::props` from `base`.
    Props { extended: bool, base: usize },
    /// A member set, `<MS N="name">` inside an `<MS>`; its members are on `Decoder::props` from `base`.
    MemberSet { name: Str, base: usize },
    /// `<LST>`, `<IE>`, `<STK>`, `<QUE>`; items on `Decoder::items` from `base`.
    List { kind: ListKind, base: usize },
    /// `<DCT>`; entries on `Decoder::entries` from `base`.
    Dict { base: usize },
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
            Frame::MemberSet { .. } => "MS",
            Frame::List { kind, .. } => kind.tag(),
            Frame::Dict { .. } => "DCT",
            Frame::En { .. } => "En",
        }
    }
}

/// A slot of the `RefId` table: an object still being read (its depth among open objects) or done.
enum Slot {
    Open(u32),
    Done(Arc<Object>),
}

/// RefIds are 0, 1, 2… in practice: a vector indexed by id, with a map for ids past this.
const SPARSE_LIMIT: u32 = 1 << 16;

/// A table indexed by RefId.
struct RefTable<T> {
    dense: Vec<Option<T>>,
    sparse: HashMap<u32, T>,
}

impl<T> RefTable<T> {
    fn new() -> Self {
        RefTable { dense: Vec::new(), sparse: HashMap::new() }
    }

    fn get(&self, id: u32) -> Option<&T> {
        if id < SPARSE_LIMIT { self.dense.get(id as usize).and_then(Option::as_ref) } else { self.sparse.get(&id) }
    }

    fn set(&mut self, id: u32, value: T) {
        if id < SPARSE_LIMIT {
            let i = id as usize;
            if self.dense.len() <= i {
                self.dense.resize_with(i + 1, || None);
            }
            self.dense[i] = Some(value);
        } else {
            self.sparse.insert(id, value);
        }
    }
}

struct Decoder<'a> {
    input: &'a str,
    lexer: Lexer<'a>,
    /// Where the last token read began, for error positions.
    last: usize,
    limits: Limits,
    values: usize,
    refs: RefTable<Slot>,
    type_names: RefTable<TypeNames>,
    /// Number of `<Obj>` elements currently open.
    open_objects: u32,
    /// The open containers, innermost last.
    frames: Vec<Frame>,
    props: Vec<Property>,
    items: Vec<Value>,
    entries: Vec<(Value, Value)>,
    /// A document's items once `</Objs>` is read.
    document: Option<Vec<Item>>,
}

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
            lexer: Lexer::new(input, base),
            last: base,
            limits,
            values: 0,
            refs: RefTable::new(),
            type_names: RefTable::new(),
            open_objects: 0,
            frames: Vec::new(),
            props: Vec::new(),
            items: Vec::new(),
            entries: Vec::new(),
            document: None,
        })
    }

    /// Skips the `#< CLIXML` line (and any whitespace before it); returns whether it was there.
    fn skip_clixml_header(&mut self) -> bool {
        let at = self.lexer.pos();
        let rest = &self.input[at..];
        let lead = rest.len() - rest.trim_start_matches([' ', '\t', '\r', '\n']).len();
        let Some(after) = rest[lead..].strip_prefix("#< CLIXML") else { return false };
        let skip = after.bytes().take_while(|b| matches!(b, b'\r' | b'\n')).count();
        self.lexer = Lexer::new(self.input, at + lead + 9 + skip);
        true
    }

    fn error_at(&self, offset: usize, kind: K) -> DecodeError {
        DecodeError { kind, position: Position::locate(self.input.as_bytes(), offset) }
    }

    fn syntax(&self, e: SyntaxError) -> DecodeError {
        if e.message.starts_with("the end of the input") {
            return self.error_at(e.offset, K::UnexpectedEof(self.frames.last().map_or("message", Frame::tag).into()));
        }
        self.error_at(e.offset, K::Xml(e.message.to_owned()))
    }

    fn read(&mut self) -> Result<Token<'a>, DecodeError> {
        self.last = self.lexer.pos();
        self.lexer.next().map_err(|e| self.syntax(e))
    }

    /// The next element at the top level (skipping the declaration, comments and whitespace).
    fn next_element(&mut self, what: &'static str) -> Result<Option<Start<'a>>, DecodeError> {
        loop {
            match self.read()? {
                Token::Start(s) => return Ok(Some(s)),
                Token::Eof => return Ok(None),
                Token::Text(t) => self.whitespace_only(t, what)?,
                Token::CData(_) => return Err(self.error_at(self.last, K::UnexpectedText(what.into()))),
                Token::End(name) => {
                    return Err(self.error_at(self.last, K::UnexpectedElement { element: format!("/{name}"), context: what.into() }));
                }
            }
        }
    }

    fn expect_end_of_input(&mut self, what: &'static str) -> Result<(), DecodeError> {
        loop {
            match self.read()? {
                Token::Eof => return Ok(()),
                Token::Text(t) if t.bytes().all(|b| b.is_ascii_whitespace()) => {}
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
            Err(self.error_at(self.last, K::MismatchedEnd { expected: expected.to_owned(), found: found.to_owned() }))
        }
    }

    fn unescape_at(&self, raw: &str, at: usize, attr: bool) -> Result<Str, DecodeError> {
        unescape(raw, attr).map_err(|e| {
            let offset = (raw.as_ptr() as usize).wrapping_sub(self.input.as_ptr() as usize);
            let offset = if offset <= self.input.len() { offset + e.offset } else { at };
            self.error_at(offset, K::BadText("malformed character or entity reference"))
        })
    }

    fn ref_id(&self, e: &Start<'_>, raw: Option<&str>) -> Result<u32, DecodeError> {
        raw.and_then(|s| p::trim(s).parse::<u32>().ok())
            .ok_or_else(|| self.error_at(self.last, K::BadAttribute { element: e.qname.to_owned(), attribute: "RefId" }))
    }

    fn count(&mut self) -> Result<(), DecodeError> {
        self.values += 1;
        if self.values > self.limits.max_values {
            return Err(self.error_at(self.last, K::TooManyValues(self.limits.max_values)));
        }
        Ok(())
    }

    /// The text of the element `tag` just opened (unless `empty`), through its end tag, unescaped.
    fn text(&mut self, tag: &str, empty: bool) -> Result<Str, DecodeError> {
        if empty {
            return Ok(Str::default());
        }
        let start = self.lexer.pos();
        match self.lexer.simple_text(tag) {
            Some(raw) => self.unescape_at(raw, start, false),
            None => self.text_slow(tag, start),
        }
    }

    /// Text with CDATA sections, comments or a spaced end tag: token by token.
    fn text_slow(&mut self, tag: &str, start: usize) -> Result<Str, DecodeError> {
        let mut escaped = String::new();
        loop {
            match self.read()? {
                Token::Text(t) => escaped.push_str(t),
                Token::CData(c) => {
                    for ch in c.chars() {
                        match ch {
                            '&' => escaped.push_str("&amp;"),
                            '<' => escaped.push_str("&lt;"),
                            _ => escaped.push(ch),
                        }
                    }
                }
                Token::End(name) => {
                    self.check_end(tag, name)?;
                    return self.unescape_at(&escaped, start, false);
                }
                Token::Eof => return Err(self.error_at(self.last, K::UnexpectedEof(tag.to_owned()))),
                Token::Start(e) => {
                    return Err(self.error_at(self.last, K::UnexpectedElement { element: e.qname.to_owned(), context: format!("<{tag}>") }));
                }
            }
        }
    }

    /// Skips to the end of an element that must be empty (`<Nil>`, `<Ref>`, `<TNRef>`).
    fn empty_content(&mut self, tag: &str, empty: bool) -> Result<(), DecodeError> {
        let at = self.lexer.pos();
        let text = self.text(tag, empty)?;
        if text.bytes().all(|b| b.is_ascii_whitespace()) {
            Ok(())
        } else {
            Err(self.error_at(at, K::UnexpectedText(format!("<{tag}>"))))
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

    /// Reads tokens until the frame that was on top when called is closed.
    fn run(&mut self) -> Result<(), DecodeError> {
        let floor = self.frames.len();
        loop {
            if self.frames.len() < floor || matches!(self.frames.last(), Some(Frame::Message(Some(_)))) {
                return Ok(());
            }
            match self.read()? {
                Token::Start(s) => self.open_child(&s)?,
                Token::End(name) => self.close(name)?,
                Token::Text(t) => {
                    if !t.bytes().all(|b| b.is_ascii_whitespace()) {
                        return Err(self.error_at(self.last, K::UnexpectedText(self.context())));
                    }
                }
                Token::CData(_) => return Err(self.error_at(self.last, K::UnexpectedText(self.context()))),
                Token::Eof => {
                    let tag = self.frames.last().map_or("message", Frame::tag);
                    return Err(self.error_at(self.last, K::UnexpectedEof(tag.into())));
                }
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

    fn open_object(&mut self) -> Option<&mut OpenObject> {
        match self.frames.last_mut() {
            Some(Frame::Obj(open)) => Some(open),
            _ => None,
        }
    }

    /// An element opened inside the innermost frame.
    fn open_child(&mut self, e: &Start<'a>) -> Result<(), DecodeError> {
        let at = self.last;
        match self.frames.last_mut() {
            Some(Frame::Obj(open)) => match e.name {
                "MS" | "Props" => {
                    if !e.empty {
                        let base = self.props.len();
                        self.push(Frame::Props { extended: e.name == "MS", base })?;
                    }
                }
                "TN" => {
                    let tn = self.type_name_list(e)?;
                    if let Some(open) = self.open_object() {
                        open.obj.type_names = Some(tn);
                    }
                }
                "TNRef" => {
                    let id = self.ref_id(e, e.ref_id)?;
                    self.empty_content("TNRef", e.empty)?;
                    let tn = self.type_names.get(id).cloned().ok_or_else(|| self.error_at(at, K::UnknownRef { element: "TNRef", id }))?;
                    if let Some(open) = self.open_object() {
                        open.obj.type_names = Some(tn);
                    }
                }
                "ToString" => {
                    let text = self.text("ToString", e.empty)?;
                    if let Some(open) = self.open_object() {
                        open.obj.to_string = Some(text);
                    }
                }
                "LST" | "IE" | "STK" | "QUE" | "DCT" => {
                    if std::mem::replace(&mut open.has_content, true) {
                        return Err(self.error_at(at, K::DuplicateContent));
                    }
                    self.count()?;
                    let frame = match e.name {
                        "DCT" => Frame::Dict { base: self.entries.len() },
                        name => {
                            let kind = match name {
                                "LST" => ListKind::List,
                                "IE" => ListKind::Enumerable,
                                "STK" => ListKind::Stack,
                                _ => ListKind::Queue,
                            };
                            Frame::List { kind, base: self.items.len() }
                        }
                    };
                    if e.empty {
                        self.end_frame(frame)?;
                    } else {
                        self.push(frame)?;
                    }
                }
                // An extended primitive or an enum's value.
                _ => {
                    if open.has_content {
                        return Err(self.error_at(at, K::DuplicateContent));
                    }
                    self.begin_value(e, None)?;
                }
            },
            Some(frame @ (Frame::Props { .. } | Frame::MemberSet { .. })) => {
                // A member set lives among extended members only: PowerShell's `<Props>` holds values.
                let extended = !matches!(frame, Frame::Props { extended: false, .. });
                if e.name == "MS" && !extended {
                    return Err(self.error_at(at, K::UnexpectedElement { element: e.qname.to_owned(), context: "<Props>".into() }));
                }
                let name = match e.n {
                    Some(raw) => self.unescape_at(raw, at, true)?,
                    None => return Err(self.error_at(at, K::BadAttribute { element: e.qname.to_owned(), attribute: "N" })),
                };
                if e.name == "MS" {
                    self.count()?;
                    let frame = Frame::MemberSet { name, base: self.props.len() };
                    if e.empty {
                        self.end_frame(frame)?;
                    } else {
                        self.push(frame)?;
                    }
                } else {
                    self.begin_value(e, Some(name))?;
                }
            }
            Some(Frame::List { .. }) => self.begin_value(e, None)?,
            Some(Frame::Dict { .. }) => {
                if e.name != "En" {
                    return Err(self.error_at(at, K::UnexpectedElement { element: e.qname.to_owned(), context: "<DCT>".into() }));
                }
                let frame = Frame::En { key: None, value: None };
                if e.empty {
                    self.end_frame(frame)?;
                } else {
                    self.push(frame)?;
                }
            }
            Some(Frame::En { .. }) => {
                let slot = match e.n {
                    Some("Key") => "Key",
                    Some("Value") => "Value",
                    _ => return Err(self.error_at(at, K::BadAttribute { element: e.qname.to_owned(), attribute: "N" })),
                };
                self.begin_value(e, Some(Str::const_new(slot)))?;
            }
            Some(Frame::Objs(_)) => {
                let stream = match e.s {
                    Some(raw) => Some(self.unescape_at(raw, at, true)?),
                    None => None,
                };
                self.begin_value(e, stream)?;
            }
            Some(Frame::Message(_)) | None => return Err(self.error_at(at, K::TrailingContent("message"))),
        }
        Ok(())
    }

    /// A value element: an `<Obj>` opens a frame; anything else is read whole and delivered.
    fn begin_value(&mut self, e: &Start<'a>, slot: Option<Str>) -> Result<(), DecodeError> {
        if e.name != "Obj" {
            let value = self.primitive(e)?;
            self.deliver(value, slot);
            return Ok(());
        }
        self.count()?;
        let ref_id = match e.ref_id {
            Some(raw) => Some(self.ref_id(e, Some(raw))?),
            None => None,
        };
        let open = OpenObject { obj: Object::default(), ref_id, has_content: false, slot };
        if let Some(id) = ref_id {
            self.refs.set(id, Slot::Open(self.open_objects));
        }
        self.open_objects += 1;
        if e.empty { self.end_frame(Frame::Obj(open)) } else { self.push(Frame::Obj(open)) }
    }

    /// An end tag: closes the innermost frame.
    fn close(&mut self, tag: &str) -> Result<(), DecodeError> {
        let expected = self.frames.last().map_or("message", Frame::tag);
        if expected != tag {
            return Err(self.error_at(self.last, K::MismatchedEnd { expected: expected.into(), found: tag.into() }));
        }
        match self.frames.pop() {
            // The document root is done: hand its items to the caller.
            Some(Frame::Objs(items)) => {
                self.document = Some(items);
                Ok(())
            }
            Some(frame) => self.end_frame(frame),
            None => Ok(()),
        }
    }

    /// A finished frame: its value goes to the frame below.
    fn end_frame(&mut self, frame: Frame) -> Result<(), DecodeError> {
        match frame {
            Frame::Obj(open) => {
                let OpenObject { obj, ref_id, slot, .. } = open;
                self.open_objects -= 1;
                let obj = Arc::new(obj);
                if let Some(id) = ref_id {
                    self.refs.set(id, Slot::Done(Arc::clone(&obj)));
                }
                self.deliver(Value::Object(obj), slot);
            }
            Frame::Props { extended, base } => {
                let props: Vec<Property> = self.props.drain(base..).collect();
                if let Some(open) = self.open_object() {
                    let target = if extended { &mut open.obj.extended } else { &mut open.obj.adapted };
                    if target.is_empty() {
                        *target = props;
                    } else {
                        target.extend(props);
                    }
                }
            }
            Frame::MemberSet { name, base } => {
                let members = self.props.drain(base..).collect();
                self.deliver(Value::member_set(members), Some(name));
            }
            Frame::List { kind, base } => {
                let items = self.items.drain(base..).collect();
                self.set_content(Content::List(kind, items));
            }
            Frame::Dict { base } => {
                let entries = self.entries.drain(base..).collect();
                self.set_content(Content::Dict(entries));
            }
            Frame::En { key, value } => match (key, value) {
                (Some(k), Some(v)) => self.entries.push((k, v)),
                (None, _) => return Err(self.error_at(self.last, K::BadDictEntry("a Key"))),
                (_, None) => return Err(self.error_at(self.last, K::BadDictEntry("a Value"))),
            },
            Frame::Message(_) | Frame::Objs(_) => {}
        }
        Ok(())
    }

    fn set_content(&mut self, content: Content) {
        if let Some(open) = self.open_object() {
            open.obj.content = content;
        }
    }

    /// A finished value goes to the innermost frame.
    fn deliver(&mut self, value: Value, slot: Option<Str>) {
        match self.frames.last_mut() {
            Some(Frame::Obj(open)) => {
                open.has_content = true;
                open.obj.content = Content::Primitive(value);
            }
            Some(Frame::Props { .. } | Frame::MemberSet { .. }) => self.props.push(Property { name: slot.unwrap_or_default(), value }),
            Some(Frame::List { .. }) => self.items.push(value),
            Some(Frame::En { key, value: v }) => {
                if slot.as_deref() == Some("Key") {
                    *key = Some(value);
                } else {
                    *v = Some(value);
                }
            }
            Some(Frame::Objs(items)) => items.push(Item { stream: slot, value }),
            Some(Frame::Message(result)) => *result = Some(value),
            Some(Frame::Dict { .. }) | None => {}
        }
    }

    /// A value that is not an `<Obj>`: its start tag has just been read; reads through its end tag.
    fn primitive(&mut self, e: &Start<'a>) -> Result<Value, DecodeError> {
        self.count()?;
        let (tag, empty) = (e.name, e.empty);
        macro_rules! parsed {
            ($tname:literal, $parse:expr, $variant:expr) => {{
                let at = self.lexer.pos();
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
                let id = self.ref_id(e, e.ref_id)?;
                let at = self.last;
                self.empty_content(tag, empty)?;
                self.resolve_ref(id, at)?
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
                return Err(self.error_at(self.last, K::UnexpectedElement { element: e.qname.to_owned(), context: "a value position".into() }));
            }
        })
    }

    fn resolve_ref(&self, id: u32, at: usize) -> Result<Value, DecodeError> {
        match self.refs.get(id) {
            Some(Slot::Done(obj)) => Ok(Value::Object(Arc::clone(obj))),
            Some(Slot::Open(level)) => Ok(Value::Cycle(self.open_objects - 1 - level)),
            None => Err(self.error_at(at, K::UnknownRef { element: "Ref", id })),
        }
    }

    /// `<TN>`: the `<T>` names, registered under the list's RefId for later `<TNRef>`s.
    fn type_name_list(&mut self, e: &Start<'a>) -> Result<TypeNames, DecodeError> {
        let id = match e.ref_id {
            Some(raw) => Some(self.ref_id(e, Some(raw))?),
            None => None,
        };
        let mut names = Vec::new();
        self.children("TN", e.empty, |d, t| {
            if t.name != "T" {
                return Err(d.error_at(d.last, K::UnexpectedElement { element: t.qname.to_owned(), context: "<TN>".into() }));
            }
            d.count()?;
            names.push(d.text("T", t.empty)?);
            Ok(())
        })?;
        let names: TypeNames = names.into();
        if let Some(id) = id {
            self.type_names.set(id, Arc::clone(&names));
        }
        Ok(names)
    }

    /// The child elements of a text-only container (`<TN>`, `<PR>`), each passed to `each`.
    fn children(
        &mut self,
        tag: &'static str,
        empty: bool,
        mut each: impl FnMut(&mut Self, Start<'a>) -> Result<(), DecodeError>,
    ) -> Result<(), DecodeError> {
        if empty {
            return Ok(());
        }
        loop {
            match self.read()? {
                Token::Start(e) => each(self, e)?,
                Token::End(name) => return self.check_end(tag, name),
                Token::Text(t) => self.whitespace_only(t, &format!("<{tag}>"))?,
                Token::Eof => return Err(self.error_at(self.last, K::UnexpectedEof(tag.to_owned()))),
                Token::CData(_) => return Err(self.error_at(self.last, K::UnexpectedText(format!("<{tag}>")))),
            }
        }
    }

    /// `<PR>`: a progress record's fixed children.
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
        self.children("PR", empty, |d, e| {
            let child_empty = e.empty;
            let int = |d: &mut Self, tag: &'static str, name: &'static str| -> Result<i32, DecodeError> {
                let at = d.lexer.pos();
                let t = d.text(tag, child_empty)?;
                p::trim(&t).parse().map_err(|_| d.invalid(at, name, &t))
            };
            match e.name {
                "AV" => pr.activity = d.text("AV", child_empty)?,
                "AI" => pr.activity_id = int(d, "AI", "PR/AI")?,
                "PI" => pr.parent_activity_id = int(d, "PI", "PR/PI")?,
                "PC" => pr.percent_complete = int(d, "PC", "PR/PC")?,
                "SR" => pr.seconds_remaining = int(d, "SR", "PR/SR")?,
                "S" => pr.current_operation = Some(d.text("S", child_empty)?),
                "Nil" => d.empty_content("Nil", child_empty)?,
                "SD" => pr.status_description = Some(d.text("SD", child_empty)?),
                "T" => {
                    let at = d.lexer.pos();
                    let t = d.text("T", child_empty)?;
                    pr.record_type = match p::trim(&t) {
                        "Processing" => ProgressRecordType::Processing,
                        "Completed" => ProgressRecordType::Completed,
                        _ => return Err(d.invalid(at, "PR/T", &t)),
                    };
                }
                _ => return Err(d.error_at(d.last, K::UnexpectedElement { element: e.qname.to_owned(), context: "<PR>".into() })),
            }
            Ok(())
        })?;
        Ok(pr)
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
