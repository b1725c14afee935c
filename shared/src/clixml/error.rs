//! Decode and encode errors: what went wrong and where.

use std::fmt;

/// Where in the input an error was found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Position {
    /// Byte offset from the start of the input.
    pub offset: usize,
    /// 1-based line.
    pub line: usize,
    /// 1-based column, in bytes.
    pub column: usize,
}

impl Position {
    pub(crate) fn locate(input: &[u8], offset: usize) -> Position {
        let offset = offset.min(input.len());
        let before = &input[..offset];
        let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
        let column = offset - before.iter().rposition(|&b| b == b'\n').map_or(0, |p| p + 1) + 1;
        Position { offset, line, column }
    }
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}, column {} (byte {})", self.line, self.column, self.offset)
    }
}

/// What was wrong with the input.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeErrorKind {
    /// The XML itself is not well-formed.
    #[error("malformed XML: {0}")]
    Xml(String),
    /// The input ended inside an element.
    #[error("unexpected end of input inside <{0}>")]
    UnexpectedEof(String),
    /// An element that CLIXML does not have, or one in the wrong place.
    #[error("unexpected element <{element}> in {context}")]
    UnexpectedElement {
        /// The element found.
        element: String,
        /// Where it was found.
        context: String,
    },
    /// An end tag that does not close the open element.
    #[error("mismatched end tag </{found}>, expected </{expected}>")]
    MismatchedEnd {
        /// The element that was open.
        expected: String,
        /// The end tag found.
        found: String,
    },
    /// Text where only elements may appear.
    #[error("unexpected text in {0}")]
    UnexpectedText(String),
    /// A primitive whose text is not a valid value of its type.
    #[error("invalid {type_name} value {text:?}")]
    InvalidValue {
        /// The CLIXML tag (`I32`, `DT`, …).
        type_name: &'static str,
        /// The offending text (truncated).
        text: String,
    },
    /// A required attribute is missing or not a number.
    #[error("<{element}> needs a valid {attribute} attribute")]
    BadAttribute {
        /// The element.
        element: String,
        /// The attribute.
        attribute: &'static str,
    },
    /// A `<Ref>` or `<TNRef>` to an id never defined.
    #[error("<{element} RefId=\"{id}\"> refers to nothing defined before it")]
    UnknownRef {
        /// `Ref` or `TNRef`.
        element: &'static str,
        /// The id.
        id: u32,
    },
    /// A `<DCT>` entry without a `Key` or `Value`.
    #[error("dictionary entry without {0}")]
    BadDictEntry(&'static str),
    /// An `<Obj>` with two values (two containers, or a container and a primitive).
    #[error("<Obj> holds more than one value")]
    DuplicateContent,
    /// Text that is not UTF-8, or a bad `&…;` reference.
    #[error("invalid text: {0}")]
    BadText(&'static str),
    /// Nested deeper than [`Limits::max_depth`](super::Limits::max_depth).
    #[error("nested deeper than the limit of {0}")]
    TooDeep(usize),
    /// More values than [`Limits::max_values`](super::Limits::max_values).
    #[error("more than the limit of {0} values")]
    TooManyValues(usize),
    /// Input larger than [`Limits::max_bytes`](super::Limits::max_bytes).
    #[error("input of {size} bytes exceeds the limit of {limit}")]
    TooLarge {
        /// The input size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// A document without its `<Objs>` root.
    #[error("not a CLIXML document: expected <Objs>")]
    NotADocument,
    /// Content after the end of the document or message.
    #[error("content after the end of the {0}")]
    TrailingContent(&'static str),
    /// The input holds no element.
    #[error("no CLIXML element found")]
    Empty,
}

/// A decode failure: what, and where.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DecodeError {
    /// What was wrong.
    pub kind: DecodeErrorKind,
    /// Where.
    pub position: Position,
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} at {}", self.kind, self.position)
    }
}

impl std::error::Error for DecodeError {}

/// An encode failure: values built in code can say what CLIXML cannot.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EncodeError {
    /// A [`Value::Cycle`](super::Value::Cycle) reaching above the outermost object.
    #[error("cycle reference {0} levels up has no enclosing object")]
    DanglingCycle(u32),
    /// Nested deeper than the limit.
    #[error("nested deeper than the limit of {0}")]
    TooDeep(usize),
    /// A member set ([`Object::member_set`](super::Object::member_set)) anywhere but among an `<MS>`'s
    /// members: CLIXML has no other place for one.
    #[error("a member set can only be a member of an <MS>")]
    MisplacedMemberSet,
    /// A member set with type names, a `ToString`, a value or adapted properties, which `<MS N="…">`
    /// cannot hold.
    #[error("member set {0:?} holds more than members")]
    InvalidMemberSet(String),
    /// A value that has no CLIXML form (an invalid date or decimal built in code).
    #[error("invalid {type_name} value {text:?}")]
    InvalidValue {
        /// The tag.
        type_name: &'static str,
        /// Its text.
        text: String,
    },
}
