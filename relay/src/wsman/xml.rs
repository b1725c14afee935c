//! The XML a WS-Management peer sends, read into a small namespace-aware tree that the envelope parsers query.
//!
//! Bounded: at most [`MAX_DOCUMENT`] bytes, [`MAX_DEPTH`] levels and [`MAX_ELEMENTS`] elements, so nothing a server
//! sends can exhaust the stack or memory; the tree lives in one arena (`Vec`), never in recursive boxes. Names are
//! resolved to namespace URIs (prefixes are the sender's choice and mean nothing); `xmlns` declarations are not kept
//! as attributes. Each element keeps the concatenation of its own text and CDATA, with entity and character
//! references resolved; comments and processing instructions are skipped, a DOCTYPE is refused.
//!
//! Public so that tests can compare documents by meaning (same names, attributes, text and children in order)
//! rather than byte for byte.
//!
//! Each element also remembers where it stood in the bytes parsed ([`Element::source_range`]), which equality
//! ignores: a configuration resource is edited in its own text and put back with everything else kept byte for byte
//! (`config.rs`), and [`Element::standalone_xml`] cuts an element out of its envelope so that it still reads alone.

use std::collections::HashMap;
use std::ops::Range;

use quick_xml::XmlVersion;
use quick_xml::escape::resolve_predefined_entity;
use quick_xml::events::{BytesStart, Event};
use quick_xml::name::ResolveResult;
use quick_xml::reader::NsReader;

use super::WsmanError;

/// The largest document parsed. A response is bounded by the `MaxEnvelopeSize` the client asked for (500 KiB by
/// default on Windows); this is a backstop far above any real envelope.
pub const MAX_DOCUMENT: usize = 64 << 20;
/// The deepest nesting parsed. SOAP envelopes from WinRM nest about ten levels.
pub const MAX_DEPTH: usize = 64;
/// The most elements parsed in one document.
pub const MAX_ELEMENTS: usize = 1 << 20;

/// A parsed document: an arena of elements, the root first.
#[derive(Clone, Debug)]
pub struct Document {
    elements: Vec<Node>,
    namespaces: Vec<String>,
    /// Where each element (same index) stood in the bytes parsed; not part of the document's meaning.
    spans: Vec<Span>,
}

/// Documents are equal when they mean the same: the positions of their elements do not count.
impl PartialEq for Document {
    fn eq(&self, other: &Document) -> bool {
        self.elements == other.elements && self.namespaces == other.namespaces
    }
}

impl Eq for Document {}

/// Byte offsets of one element in the bytes given to [`Document::parse`]: `start` is its `<`, `start_tag_end` just
/// after its start tag's `>`, `end_tag_start` its end tag's `<` (equal to `end` for `<a/>`), `end` just after it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Span {
    start: usize,
    start_tag_end: usize,
    end_tag_start: usize,
    end: usize,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Node {
    namespace: Option<u32>,
    name: String,
    attributes: Vec<Attribute>,
    text: String,
    children: Vec<usize>,
    parent: Option<usize>,
}

/// One attribute; `namespace` is `None` for an unprefixed name (XML namespaces give those no namespace).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attribute {
    pub namespace: Option<String>,
    pub name: String,
    pub value: String,
}

/// A borrowed element of a [`Document`].
#[derive(Clone, Copy, Debug)]
pub struct Element<'d> {
    doc: &'d Document,
    index: usize,
}

impl Document {
    /// Parses a whole document: exactly one root element, UTF-8.
    pub fn parse(bytes: &[u8]) -> Result<Document, WsmanError> {
        if bytes.len() > MAX_DOCUMENT {
            return Err(WsmanError::TooLarge { what: "document bytes", limit: MAX_DOCUMENT });
        }
        let text = std::str::from_utf8(bytes).map_err(|e| WsmanError::NotUtf8 { position: e.valid_up_to() })?;
        // A byte order mark is legal before the XML declaration.
        let (text, offset) = match text.strip_prefix('\u{feff}') {
            Some(rest) => (rest, '\u{feff}'.len_utf8()),
            None => (text, 0),
        };
        Builder { offset, ..Builder::default() }.run(text)
    }

    /// The root element.
    pub fn root(&self) -> Element<'_> {
        Element { doc: self, index: 0 }
    }

    fn namespace(&self, id: Option<u32>) -> Option<&str> {
        id.and_then(|i| self.namespaces.get(i as usize)).map(String::as_str)
    }
}

impl<'d> Element<'d> {
    /// The namespace URI, `None` when the name is in no namespace.
    pub fn namespace(&self) -> Option<&'d str> {
        self.doc.namespace(self.node().namespace)
    }

    /// The local name.
    pub fn name(&self) -> &'d str {
        &self.node().name
    }

    /// Whether this is `{namespace}name`.
    pub fn is(&self, namespace: &str, name: &str) -> bool {
        self.name() == name && self.namespace() == Some(namespace)
    }

    /// The attributes, in document order, without namespace declarations.
    pub fn attributes(&self) -> &'d [Attribute] {
        &self.node().attributes
    }

    /// The value of an unprefixed attribute.
    pub fn attr(&self, name: &str) -> Option<&'d str> {
        self.attributes().iter().find(|a| a.namespace.is_none() && a.name == name).map(|a| a.value.as_str())
    }

    /// The value of a namespaced attribute (`s:mustUnderstand`, `xml:lang`).
    pub fn attr_ns(&self, namespace: &str, name: &str) -> Option<&'d str> {
        self.attributes()
            .iter()
            .find(|a| a.namespace.as_deref() == Some(namespace) && a.name == name)
            .map(|a| a.value.as_str())
    }

    /// The element's own text (its text and CDATA children concatenated), as sent.
    pub fn raw_text(&self) -> &'d str {
        &self.node().text
    }

    /// The element's own text without surrounding XML whitespace: what every WS-Management value means.
    pub fn text(&self) -> &'d str {
        self.raw_text().trim_matches(is_xml_space)
    }

    /// The child elements in order.
    pub fn children(&self) -> impl Iterator<Item = Element<'d>> + 'd {
        let doc = self.doc;
        self.node().children.iter().map(move |&index| Element { doc, index })
    }

    /// The first child `{namespace}name`.
    pub fn child(&self, namespace: &str, name: &str) -> Option<Element<'d>> {
        self.children().find(|c| c.is(namespace, name))
    }

    /// Every child `{namespace}name`.
    pub fn children_named<'a>(&self, namespace: &'a str, name: &'a str) -> impl Iterator<Item = Element<'d>> + 'a
    where
        'd: 'a,
    {
        self.children().filter(move |c| c.is(namespace, name))
    }

    /// The element this one is a child of; `None` for the root.
    pub fn parent(&self) -> Option<Element<'d>> {
        self.node().parent.map(|index| Element { doc: self.doc, index })
    }

    /// The bytes of the whole element, start tag to end tag, in what [`Document::parse`] was given: with that text,
    /// `&text[range]` is the element exactly as sent.
    pub fn source_range(&self) -> Range<usize> {
        let s = self.span();
        s.start..s.end
    }

    /// The bytes of its start tag (`<a x="1">`), or of the whole element when it is an empty-element tag (`<a/>`).
    pub fn start_tag_range(&self) -> Range<usize> {
        let s = self.span();
        s.start..s.start_tag_end
    }

    /// The bytes between its start and end tags (empty for `<a></a>`); `None` for an empty-element tag (`<a/>`).
    pub fn content_range(&self) -> Option<Range<usize>> {
        let s = self.span();
        (s.start_tag_end < s.end).then_some(s.start_tag_end..s.end_tag_start)
    }

    /// The element as it stands in `source` (the text this document was parsed from), made to read alone: the
    /// namespace declarations it relies on from its ancestors (a prefix declared on `s:Envelope`, a default
    /// namespace on `s:Body`) are added to its start tag, copied as the ancestor wrote them; nothing else changes.
    /// `None` when `source` is not the parsed text.
    pub fn standalone_xml(&self, source: &str) -> Option<String> {
        let text = source.get(self.source_range())?;
        // The nearest ancestor's declaration of each prefix ("" for the default namespace), as written.
        let mut inherited: Vec<(&str, &str)> = Vec::new();
        let mut ancestor = self.parent();
        while let Some(a) = ancestor {
            let tag = source.get(a.start_tag_range())?;
            for attr in scan_start_tag(tag)?.attributes {
                if let Some(prefix) = declared_prefix(&tag[attr.name.clone()])
                    && !inherited.iter().any(|(p, _)| *p == prefix)
                {
                    inherited.push((prefix, &tag[attr.whole]));
                }
            }
            ancestor = a.parent();
        }
        if inherited.is_empty() {
            return Some(text.to_owned());
        }
        // The prefixes used in the element where no declaration inside it is in scope.
        let mut needed: Vec<&str> = Vec::new();
        let mut stack: Vec<(Element<'d>, Vec<&str>)> = vec![(*self, Vec::new())];
        while let Some((e, mut declared)) = stack.pop() {
            let tag = source.get(e.start_tag_range())?;
            let scanned = scan_start_tag(tag)?;
            let mut used = vec![prefix_of(&tag[scanned.name.clone()])];
            for attr in &scanned.attributes {
                let name = &tag[attr.name.clone()];
                match declared_prefix(name) {
                    Some(p) => declared.push(p),
                    None if name.contains(':') => used.push(prefix_of(name)),
                    None => {}
                }
            }
            for p in used {
                if p != "xml" && !declared.contains(&p) && !needed.contains(&p) {
                    needed.push(p);
                }
            }
            stack.extend(e.children().map(|c| (c, declared.clone())));
        }
        let name_end = scan_start_tag(source.get(self.start_tag_range())?)?.name.end;
        let mut out = String::with_capacity(text.len() + 64);
        out.push_str(&text[..name_end]);
        for (prefix, declaration) in &inherited {
            if needed.contains(prefix) {
                out.push(' ');
                out.push_str(declaration);
            }
        }
        out.push_str(&text[name_end..]);
        Some(out)
    }

    /// The first element below this one (in document order, at any depth) named `{namespace}name`.
    pub fn descendant(&self, namespace: &str, name: &str) -> Option<Element<'d>> {
        // Depth-first with an explicit stack, children visited in order.
        let mut stack: Vec<Element<'d>> = self.children().collect();
        stack.reverse();
        while let Some(e) = stack.pop() {
            if e.is(namespace, name) {
                return Some(e);
            }
            let before = stack.len();
            stack.extend(e.children());
            stack[before..].reverse();
        }
        None
    }

    fn node(&self) -> &'d Node {
        // `index` always comes from the same document, so it is in bounds; the fallback is never taken.
        self.doc.elements.get(self.index).unwrap_or(&EMPTY_NODE)
    }

    fn span(&self) -> Span {
        self.doc.spans.get(self.index).copied().unwrap_or_default()
    }
}

static EMPTY_NODE: Node = Node {
    namespace: None,
    name: String::new(),
    attributes: Vec::new(),
    text: String::new(),
    children: Vec::new(),
    parent: None,
};

/// A start tag read from its text (one that a reader has already found well-formed): ranges into that text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct StartTag {
    /// The qualified name, `cfg:Winrs`.
    pub name: Range<usize>,
    pub attributes: Vec<RawAttribute>,
}

/// One attribute of a [`StartTag`], as written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct RawAttribute {
    /// The qualified name, `xmlns:cfg`, `Source`.
    pub name: Range<usize>,
    /// The value between the quotes, still escaped.
    pub value: Range<usize>,
    /// `'` or `"`.
    pub quote: char,
    /// Name, `=`, and quoted value.
    pub whole: Range<usize>,
}

/// Reads `<name a="1" b='2'>` or `<name/>`; `None` when `tag` is not a start tag. The tag must be well-formed
/// (it comes from a parsed [`Document`]): this only finds where its parts are.
pub(crate) fn scan_start_tag(tag: &str) -> Option<StartTag> {
    let b = tag.as_bytes();
    let is_space = |c: u8| matches!(c, b' ' | b'\t' | b'\r' | b'\n');
    let name_end = |from: usize| (from..b.len()).find(|&i| is_space(b[i]) || matches!(b[i], b'/' | b'>' | b'='));
    if b.first() != Some(&b'<') {
        return None;
    }
    let name = 1..name_end(1)?;
    let mut attributes = Vec::new();
    let mut i = name.end;
    loop {
        while b.get(i).copied().is_some_and(is_space) {
            i += 1;
        }
        match b.get(i)? {
            b'/' | b'>' => break,
            _ => {}
        }
        let attr_start = i;
        let attr_name = i..name_end(i)?;
        i = attr_name.end;
        while b.get(i).copied().is_some_and(is_space) {
            i += 1;
        }
        if b.get(i) != Some(&b'=') {
            return None;
        }
        i += 1;
        while b.get(i).copied().is_some_and(is_space) {
            i += 1;
        }
        let quote = *b.get(i)?;
        if quote != b'"' && quote != b'\'' {
            return None;
        }
        let value_start = i + 1;
        let value_end = value_start + b.get(value_start..)?.iter().position(|&c| c == quote)?;
        i = value_end + 1;
        attributes.push(RawAttribute {
            name: attr_name,
            value: value_start..value_end,
            quote: char::from(quote),
            whole: attr_start..i,
        });
    }
    Some(StartTag { name, attributes })
}

/// The prefix a namespace declaration declares (`xmlns:cfg` → `cfg`, `xmlns` → ""), `None` for other attributes.
fn declared_prefix(attribute: &str) -> Option<&str> {
    match attribute.strip_prefix("xmlns") {
        Some("") => Some(""),
        Some(rest) => rest.strip_prefix(':'),
        None => None,
    }
}

/// The prefix of a qualified name; "" when it has none.
fn prefix_of(name: &str) -> &str {
    name.split_once(':').map_or("", |(p, _)| p)
}

/// XML's whitespace: space, tab, carriage return, line feed.
pub fn is_xml_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\r' | '\n')
}

#[derive(Default)]
struct Builder {
    elements: Vec<Node>,
    spans: Vec<Span>,
    /// What was cut from the front of the bytes before the reader saw them (a byte order mark).
    offset: usize,
    namespaces: Vec<String>,
    ids: HashMap<String, u32>,
    /// The open elements, innermost last.
    open: Vec<usize>,
    done: bool,
}

impl Builder {
    fn run(mut self, text: &str) -> Result<Document, WsmanError> {
        let mut reader = NsReader::from_str(text);
        reader.config_mut().check_end_names = true;
        loop {
            let position = reader.buffer_position();
            let event = reader.read_event().map_err(|e| WsmanError::Xml { position, message: e.to_string() })?;
            match event {
                Event::Start(e) => {
                    self.open_element(&reader, &e, position)?;
                    self.start_tag_ends(reader.buffer_position());
                }
                Event::Empty(e) => {
                    self.open_element(&reader, &e, position)?;
                    let end = reader.buffer_position();
                    self.start_tag_ends(end);
                    self.close_element(end, end);
                }
                Event::End(_) => self.close_element(position, reader.buffer_position()),
                Event::Text(t) => self.text(&t.xml_content(XmlVersion::Implicit1_0), position)?,
                Event::CData(t) => self.text(&t.xml_content(XmlVersion::Implicit1_0), position)?,
                Event::GeneralRef(r) => {
                    let resolved = match r.resolve_char_ref() {
                        Ok(Some(c)) => c.to_string(),
                        Ok(None) => match resolve_predefined_entity(&r) {
                            Some(s) => s.to_owned(),
                            None => {
                                return Err(WsmanError::Xml { position, message: format!("unknown entity &{};", &*r) });
                            }
                        },
                        Err(e) => return Err(WsmanError::Xml { position, message: e.to_string() }),
                    };
                    self.text(&resolved, position)?;
                }
                Event::DocType(_) => {
                    return Err(WsmanError::Xml { position, message: "a DOCTYPE is not allowed in SOAP".into() });
                }
                Event::Decl(_) | Event::PI(_) | Event::Comment(_) => {}
                Event::Eof => break,
            }
        }
        if !self.open.is_empty() {
            return Err(WsmanError::Xml {
                position: text.len() as u64,
                message: "the document ends inside an element".into(),
            });
        }
        if self.elements.is_empty() {
            return Err(WsmanError::Xml { position: 0, message: "no root element".into() });
        }
        Ok(Document { elements: self.elements, namespaces: self.namespaces, spans: self.spans })
    }

    fn open_element(&mut self, reader: &NsReader<&[u8]>, e: &BytesStart<'_>, position: u64) -> Result<(), WsmanError> {
        if self.done && self.open.is_empty() {
            return Err(WsmanError::Xml { position, message: "more than one root element".into() });
        }
        if self.open.len() >= MAX_DEPTH {
            return Err(WsmanError::TooLarge { what: "nesting depth", limit: MAX_DEPTH });
        }
        if self.elements.len() >= MAX_ELEMENTS {
            return Err(WsmanError::TooLarge { what: "elements", limit: MAX_ELEMENTS });
        }
        let resolver = reader.resolver();
        let (ns, local) = resolver.resolve_element(e.name());
        let namespace = self.namespace_id(ns, position)?;
        let name = local.as_ref().to_owned();
        let mut attributes = Vec::new();
        for attr in e.attributes() {
            let attr = attr.map_err(|e| WsmanError::Xml { position, message: e.to_string() })?;
            let key = attr.key;
            if key.as_namespace_binding().is_some() {
                continue;
            }
            let (ns, local) = resolver.resolve_attribute(key);
            let namespace = match ns {
                ResolveResult::Bound(n) => Some(n.as_ref().to_owned()),
                ResolveResult::Unbound => None,
                ResolveResult::Unknown(p) => {
                    return Err(WsmanError::Xml { position, message: format!("undeclared namespace prefix {p}") });
                }
            };
            let value = attr
                .normalized_value(XmlVersion::Implicit1_0)
                .map_err(|e| WsmanError::Xml { position, message: e.to_string() })?
                .into_owned();
            attributes.push(Attribute { namespace, name: local.as_ref().to_owned(), value });
        }
        let index = self.elements.len();
        let parent = self.open.last().copied();
        self.elements.push(Node { namespace, name, attributes, text: String::new(), children: Vec::new(), parent });
        let start = self.at(position);
        self.spans.push(Span { start, start_tag_end: start, end_tag_start: start, end: start });
        if let Some(&parent) = self.open.last()
            && let Some(p) = self.elements.get_mut(parent)
        {
            p.children.push(index);
        }
        self.open.push(index);
        self.done = true;
        Ok(())
    }

    /// Where the innermost open element's start tag ends (the reader's position after it).
    fn start_tag_ends(&mut self, position: u64) {
        let at = self.at(position);
        if let Some(span) = self.open.last().and_then(|&i| self.spans.get_mut(i)) {
            span.start_tag_end = at;
        }
    }

    /// Closes the innermost open element, whose end tag lies from `end_tag_start` to `end` (reader positions).
    fn close_element(&mut self, end_tag_start: u64, end: u64) {
        // quick-xml checks that end tags match, so an End always closes an open element.
        let (end_tag_start, end) = (self.at(end_tag_start), self.at(end));
        if let Some(span) = self.open.pop().and_then(|i| self.spans.get_mut(i)) {
            span.end_tag_start = end_tag_start;
            span.end = end;
        }
    }

    /// A reader position as an offset into the bytes given to [`Document::parse`].
    fn at(&self, position: u64) -> usize {
        usize::try_from(position).unwrap_or(usize::MAX).saturating_add(self.offset)
    }

    fn text(&mut self, text: &str, position: u64) -> Result<(), WsmanError> {
        match self.open.last().and_then(|&i| self.elements.get_mut(i)) {
            Some(node) => {
                node.text.push_str(text);
                Ok(())
            }
            None if text.chars().all(is_xml_space) => Ok(()),
            None => Err(WsmanError::Xml { position, message: "text outside the root element".into() }),
        }
    }

    fn namespace_id(&mut self, ns: ResolveResult<'_>, position: u64) -> Result<Option<u32>, WsmanError> {
        match ns {
            ResolveResult::Unbound => Ok(None),
            ResolveResult::Unknown(p) => {
                Err(WsmanError::Xml { position, message: format!("undeclared namespace prefix {p}") })
            }
            ResolveResult::Bound(n) => {
                let uri = n.as_ref().to_owned();
                if let Some(&id) = self.ids.get(&uri) {
                    return Ok(Some(id));
                }
                let id = u32::try_from(self.namespaces.len())
                    .map_err(|_| WsmanError::TooLarge { what: "namespaces", limit: u32::MAX as usize })?;
                self.namespaces.push(uri.clone());
                self.ids.insert(uri, id);
                Ok(Some(id))
            }
        }
    }
}

/// Appends `text` escaped for element content. Carriage returns and tabs become character references so that an
/// XML reader gives back exactly `text` (end-of-line handling would otherwise turn `\r` into `\n`).
pub(crate) fn push_text(out: &mut String, text: &str) {
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\r' => out.push_str("&#13;"),
            _ => out.push(c),
        }
    }
}

/// Appends `value` escaped for a double-quoted attribute; whitespace other than a space becomes a character
/// reference, which attribute-value normalisation leaves alone.
pub(crate) fn push_attr(out: &mut String, value: &str) {
    for c in value.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\r' => out.push_str("&#13;"),
            '\n' => out.push_str("&#10;"),
            '\t' => out.push_str("&#9;"),
            _ => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_resolve_to_namespaces_whatever_the_prefix() {
        let doc = Document::parse(
            br#"<a:x xmlns:a="urn:a" xmlns="urn:d"><y k="1" a:k="2">t&amp;<![CDATA[<c>]]>&#65;</y><a:z/></a:x>"#,
        )
        .expect("parses");
        let root = doc.root();
        assert!(root.is("urn:a", "x"));
        let y = root.child("urn:d", "y").expect("default namespace");
        assert_eq!(y.attr("k"), Some("1"));
        assert_eq!(y.attr_ns("urn:a", "k"), Some("2"));
        assert_eq!(y.text(), "t&<c>A");
        assert!(root.child("urn:a", "z").is_some());
        assert!(root.descendant("urn:d", "y").is_some());
    }

    #[test]
    fn malformed_and_hostile_documents_are_errors() {
        for bad in [
            &b""[..],
            b"<a>",
            b"<a></b>",
            b"<a/><b/>",
            b"text",
            b"<x:a/>",
            b"<a>&unknown;</a>",
            b"<!DOCTYPE a [<!ENTITY e 'x'>]><a>&e;</a>",
            b"<a>\xff</a>",
        ] {
            assert!(Document::parse(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
        let deep = "<a>".repeat(MAX_DEPTH + 1);
        assert!(matches!(Document::parse(deep.as_bytes()), Err(WsmanError::TooLarge { .. })));
    }

    #[test]
    fn elements_know_where_they_stand_in_the_source() {
        // A byte order mark, a declaration and a comment before or between elements: offsets are into these bytes.
        let source = "\u{feff}<?xml version=\"1.0\"?><a:x xmlns:a=\"urn:a\"><!-- c --><y k='1'>t&amp;u</y> <a:z />\
                      <w></w></a:x>";
        let doc = Document::parse(source.as_bytes()).expect("parses");
        let root = doc.root();
        assert_eq!(&source[root.source_range()], &source[source.find("<a:x").expect("root")..]);
        assert_eq!(&source[root.start_tag_range()], "<a:x xmlns:a=\"urn:a\">");
        let mut children = root.children();
        let (y, z, w) = (children.next().expect("y"), children.next().expect("z"), children.next().expect("w"));
        assert_eq!(&source[y.source_range()], "<y k='1'>t&amp;u</y>");
        assert_eq!(y.content_range().map(|r| &source[r]), Some("t&amp;u"));
        assert_eq!(&source[z.source_range()], "<a:z />");
        assert_eq!(&source[z.start_tag_range()], "<a:z />");
        assert_eq!(z.content_range(), None);
        assert_eq!(&source[w.source_range()], "<w></w>");
        assert_eq!(w.content_range().map(|r| &source[r]), Some(""));
        assert_eq!(z.parent().map(|p| p.name()), Some("x"));
        assert!(root.parent().is_none());
        // Equality is by meaning: the same document written with other spacing and quotes is equal.
        let a = Document::parse(b"<a:x xmlns:a=\"urn:a\"><y k=\"1\">t</y><a:z/></a:x>").expect("parses");
        let b = Document::parse(b"<a:x  xmlns:a='urn:a'><y  k='1'>t</y><a:z /></a:x>").expect("parses");
        assert_eq!(a, b);
    }

    #[test]
    fn an_element_cut_out_of_its_document_keeps_the_namespaces_it_uses() {
        let source = "<s:E xmlns:s=\"urn:s\" xmlns:c='urn:c' xmlns=\"urn:d\" xmlns:u=\"urn:u\"><s:B>\
                      <c:R c:k=\"1\"><p:I xmlns:p=\"urn:p\"/><D/></c:R><q:R xmlns:q=\"urn:q\"/></s:B></s:E>";
        let doc = Document::parse(source.as_bytes()).expect("parses");
        let body = doc.root().children().next().expect("body");
        let mut resources = body.children();
        let first = resources.next().expect("c:R");
        let alone = first.standalone_xml(source).expect("the parsed text");
        // c (the element and its attribute) and the default namespace (D) are added; s, u and p are not.
        assert_eq!(alone, "<c:R xmlns:c='urn:c' xmlns=\"urn:d\" c:k=\"1\"><p:I xmlns:p=\"urn:p\"/><D/></c:R>");
        let reread = Document::parse(alone.as_bytes()).expect("reads alone");
        assert!(reread.root().is("urn:c", "R"));
        assert_eq!(reread.root().children().nth(1).and_then(|d| d.namespace()), Some("urn:d"));
        // Self-contained already: verbatim.
        let second = resources.next().expect("q:R");
        assert_eq!(second.standalone_xml(source).as_deref(), Some("<q:R xmlns:q=\"urn:q\"/>"));
        assert_eq!(first.standalone_xml("<short/>"), None);
    }

    #[test]
    fn start_tags_are_scanned_as_written() {
        let tag = "<cfg:Quotas  A=\"1\" b = 'x\"y' xmlns:cfg=\"urn:c\"/>";
        let t = scan_start_tag(tag).expect("a start tag");
        assert_eq!(&tag[t.name], "cfg:Quotas");
        let attrs: Vec<(&str, &str, char, &str)> = t
            .attributes
            .iter()
            .map(|a| (&tag[a.name.clone()], &tag[a.value.clone()], a.quote, &tag[a.whole.clone()]))
            .collect();
        assert_eq!(
            attrs,
            [
                ("A", "1", '"', "A=\"1\""),
                ("b", "x\"y", '\'', "b = 'x\"y'"),
                ("xmlns:cfg", "urn:c", '"', "xmlns:cfg=\"urn:c\"")
            ]
        );
        assert_eq!(scan_start_tag("<a>").map(|t| t.attributes.len()), Some(0));
        for bad in ["", "a", "<a b>", "<a b=c>", "<a b=\"c>"] {
            assert_eq!(scan_start_tag(bad), None, "{bad}");
        }
    }

    #[test]
    fn escaping_survives_a_reader() {
        let tricky = "a&b<c>d\"e'f\r\n\tg]]>";
        let mut xml = String::from("<a v=\"");
        push_attr(&mut xml, tricky);
        xml.push_str("\">");
        push_text(&mut xml, tricky);
        xml.push_str("</a>");
        let doc = Document::parse(xml.as_bytes()).expect("parses");
        assert_eq!(doc.root().attr("v"), Some(tricky));
        assert_eq!(doc.root().raw_text(), tricky);
    }
}
