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

use std::collections::HashMap;

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
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Document {
    elements: Vec<Node>,
    namespaces: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Node {
    namespace: Option<u32>,
    name: String,
    attributes: Vec<Attribute>,
    text: String,
    children: Vec<usize>,
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
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        Builder::default().run(text)
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
}

static EMPTY_NODE: Node =
    Node { namespace: None, name: String::new(), attributes: Vec::new(), text: String::new(), children: Vec::new() };

/// XML's whitespace: space, tab, carriage return, line feed.
pub fn is_xml_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\r' | '\n')
}

#[derive(Default)]
struct Builder {
    elements: Vec<Node>,
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
                }
                Event::Empty(e) => {
                    self.open_element(&reader, &e, position)?;
                    self.close_element();
                }
                Event::End(_) => self.close_element(),
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
        Ok(Document { elements: self.elements, namespaces: self.namespaces })
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
        self.elements.push(Node { namespace, name, attributes, text: String::new(), children: Vec::new() });
        if let Some(&parent) = self.open.last()
            && let Some(p) = self.elements.get_mut(parent)
        {
            p.children.push(index);
        }
        self.open.push(index);
        self.done = true;
        Ok(())
    }

    fn close_element(&mut self) {
        // quick-xml checks that end tags match, so an End always closes an open element.
        self.open.pop();
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
