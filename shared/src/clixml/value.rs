//! The value model: what a CLIXML element means, independent of how it was written.
//!
//! One [`Value`] per element. Complex objects (`<Obj>`) are shared through [`Arc`], so a `<Ref>` to an
//! earlier object is the same allocation as that object: decoding never copies, and encoding writes a
//! `<Ref>` again for every repeated pointer. A `<Ref>` to an object that is still open (an ancestor, as
//! PowerShell writes for a self-referencing hashtable) cannot be an `Arc` without a cycle, so it is kept
//! as [`Value::Cycle`], counted in object levels upwards.
//!
//! ## Member sets
//!
//! An object's instance member sets (a `PSMemberSet`, such as a `PSStandardMembers` added with
//! `Add-Member -MemberType MemberSet`) are written by PowerShell as a nested `<MS N="name">…</MS>` inside
//! the object's `<MS>`, among its extended properties and in their order; a member set can hold note
//! properties and further member sets, never adapted properties, type names or a value, and has no
//! `RefId` (MS-PSRP 2.2.5.2.9). A member set is kept here as the extended [`Property`] it stands in
//! for, named by its `N`, whose value is an [`Object`] with [`Object::member_set`] set and its members
//! in [`Object::extended`] (build one with [`Value::member_set`]). So `obj.property("PSStandardMembers")`
//! finds it and `.property("DefaultDisplayProperty")` its member, as `$o.PSStandardMembers.…` does in
//! PowerShell. Such an object is only valid as a member of an `<MS>` (an object's or another set's):
//! the encoder refuses it anywhere else, and writes it back as `<MS N="…">`, never as an `<Obj>`.
//! Cycle levels ([`Value::Cycle`]) count `<Obj>` elements only: a member set is not a level.

use std::fmt;
use std::sync::Arc;

use compact_str::CompactString;
use uuid::Uuid;

/// A string as the codec stores it: short strings (≤ 24 bytes) live inline without an allocation.
pub type Str = CompactString;

/// One CLIXML value (MS-PSRP 2.2.5).
#[derive(Clone, Debug)]
pub enum Value {
    /// `<Nil />`
    Nil,
    /// `<B>`
    Bool(bool),
    /// `<C>`: one UTF-16 code unit, written as its number.
    Char(u16),
    /// `<By>`
    U8(u8),
    /// `<SB>`
    I8(i8),
    /// `<U16>`
    U16(u16),
    /// `<I16>`
    I16(i16),
    /// `<U32>`
    U32(u32),
    /// `<I32>`
    I32(i32),
    /// `<U64>`
    U64(u64),
    /// `<I64>`
    I64(i64),
    /// `<Sg>`
    Single(f32),
    /// `<Db>`
    Double(f64),
    /// `<D>`: a .NET decimal, kept as its validated invariant text so that its scale (`1.10`) survives.
    Decimal(Str),
    /// `<S>`
    String(Str),
    /// `<URI>`
    Uri(Str),
    /// `<XD>`
    Xml(Str),
    /// `<SBK>`
    ScriptBlock(Str),
    /// `<DT>`
    DateTime(DateTime),
    /// `<TS>`
    TimeSpan(TimeSpan),
    /// `<BA>`
    Bytes(Vec<u8>),
    /// `<G>`
    Guid(Uuid),
    /// `<Version>`
    Version(Version),
    /// `<SS>`: the ciphertext exactly as it arrived (base64-decoded). Decrypting needs the session key,
    /// which only the PSRP layer has.
    SecureString(Vec<u8>),
    /// `<PR>`
    Progress(Box<ProgressRecord>),
    /// `<Obj>`
    Object(Arc<Object>),
    /// A `<Ref>` to an enclosing object that was still being read: `0` = the innermost enclosing object.
    Cycle(u32),
}

/// The tag each primitive is written with, for messages and for the JSON shape.
impl Value {
    /// The CLIXML element name of this value.
    pub fn tag(&self) -> &'static str {
        match self {
            Value::Nil => "Nil",
            Value::Bool(_) => "B",
            Value::Char(_) => "C",
            Value::U8(_) => "By",
            Value::I8(_) => "SB",
            Value::U16(_) => "U16",
            Value::I16(_) => "I16",
            Value::U32(_) => "U32",
            Value::I32(_) => "I32",
            Value::U64(_) => "U64",
            Value::I64(_) => "I64",
            Value::Single(_) => "Sg",
            Value::Double(_) => "Db",
            Value::Decimal(_) => "D",
            Value::String(_) => "S",
            Value::Uri(_) => "URI",
            Value::Xml(_) => "XD",
            Value::ScriptBlock(_) => "SBK",
            Value::DateTime(_) => "DT",
            Value::TimeSpan(_) => "TS",
            Value::Bytes(_) => "BA",
            Value::Guid(_) => "G",
            Value::Version(_) => "Version",
            Value::SecureString(_) => "SS",
            Value::Progress(_) => "PR",
            Value::Object(_) => "Obj",
            Value::Cycle(_) => "Ref",
        }
    }

    /// A string-like value's text (`S`, `URI`, `XD`, `SBK`), looking through an extended primitive.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) | Value::Uri(s) | Value::Xml(s) | Value::ScriptBlock(s) => Some(s),
            Value::Object(o) => o.primitive().and_then(Value::as_str),
            _ => None,
        }
    }

    /// The complex object, if this is one.
    pub fn as_object(&self) -> Option<&Object> {
        match self {
            Value::Object(o) => Some(o),
            _ => None,
        }
    }

    /// An integer value widened to `i64` (any integer tag, an enum, or an extended primitive).
    pub fn as_i64(&self) -> Option<i64> {
        Some(match *self {
            Value::U8(v) => v.into(),
            Value::I8(v) => v.into(),
            Value::U16(v) => v.into(),
            Value::I16(v) => v.into(),
            Value::U32(v) => v.into(),
            Value::I32(v) => v.into(),
            Value::U64(v) => i64::try_from(v).ok()?,
            Value::I64(v) => v,
            Value::Object(ref o) => return o.primitive().and_then(Value::as_i64),
            _ => return None,
        })
    }

    /// A boolean, looking through an extended primitive.
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Value::Bool(b) => Some(*b),
            Value::Object(o) => o.primitive().and_then(Value::as_bool),
            _ => None,
        }
    }

    /// Whether this is `<Nil />`.
    pub fn is_nil(&self) -> bool {
        matches!(self, Value::Nil)
    }

    /// A new object value.
    pub fn object(object: Object) -> Value {
        Value::Object(Arc::new(object))
    }

    /// A string value.
    pub fn string(s: impl Into<Str>) -> Value {
        Value::String(s.into())
    }

    /// A member set (a nested `<MS N="…">`) holding `members`: the value of the property that names it.
    pub fn member_set(members: Vec<Property>) -> Value {
        Value::object(Object { member_set: true, extended: members, ..Object::default() })
    }

    /// Whether this is a member set (see [`Object::member_set`]).
    /// The .NET type a value's tag stands for (MS-PSRP 2.2.5.1): `System.Int32` for `<I32>`; `null` for `<Nil>`.
    pub fn dotnet_type(&self) -> &'static str {
        match self {
            Value::Nil => "null",
            Value::Bool(_) => "System.Boolean",
            Value::Char(_) => "System.Char",
            Value::U8(_) => "System.Byte",
            Value::I8(_) => "System.SByte",
            Value::U16(_) => "System.UInt16",
            Value::I16(_) => "System.Int16",
            Value::U32(_) => "System.UInt32",
            Value::I32(_) => "System.Int32",
            Value::U64(_) => "System.UInt64",
            Value::I64(_) => "System.Int64",
            Value::Single(_) => "System.Single",
            Value::Double(_) => "System.Double",
            Value::Decimal(_) => "System.Decimal",
            Value::String(_) => "System.String",
            Value::Uri(_) => "System.Uri",
            Value::Xml(_) => "System.Xml.XmlDocument",
            Value::ScriptBlock(_) => "System.Management.Automation.ScriptBlock",
            Value::DateTime(_) => "System.DateTime",
            Value::TimeSpan(_) => "System.TimeSpan",
            Value::Bytes(_) => "System.Byte[]",
            Value::Guid(_) => "System.Guid",
            Value::Version(_) => "System.Version",
            Value::SecureString(_) => "System.Security.SecureString",
            Value::Progress(_) => "System.Management.Automation.ProgressRecord",
            Value::Object(_) => "System.Object",
            Value::Cycle(_) => "a reference to an enclosing object",
        }
    }

    pub fn is_member_set(&self) -> bool {
        matches!(self, Value::Object(o) if o.member_set)
    }
}

/// Equality by meaning: floats compare by bit pattern (so `NaN == NaN`, as a round trip needs), shared
/// objects compare by content.
impl PartialEq for Value {
    fn eq(&self, other: &Self) -> bool {
        use Value::*;
        match (self, other) {
            (Nil, Nil) => true,
            (Bool(a), Bool(b)) => a == b,
            (Char(a), Char(b)) => a == b,
            (U8(a), U8(b)) => a == b,
            (I8(a), I8(b)) => a == b,
            (U16(a), U16(b)) => a == b,
            (I16(a), I16(b)) => a == b,
            (U32(a), U32(b)) => a == b,
            (I32(a), I32(b)) => a == b,
            (U64(a), U64(b)) => a == b,
            (I64(a), I64(b)) => a == b,
            (Single(a), Single(b)) => a.to_bits() == b.to_bits(),
            (Double(a), Double(b)) => a.to_bits() == b.to_bits(),
            (Decimal(a), Decimal(b)) => a == b,
            (String(a), String(b)) | (Uri(a), Uri(b)) | (Xml(a), Xml(b)) | (ScriptBlock(a), ScriptBlock(b)) => a == b,
            (DateTime(a), DateTime(b)) => a == b,
            (TimeSpan(a), TimeSpan(b)) => a == b,
            (Bytes(a), Bytes(b)) | (SecureString(a), SecureString(b)) => a == b,
            (Guid(a), Guid(b)) => a == b,
            (Version(a), Version(b)) => a == b,
            (Progress(a), Progress(b)) => a == b,
            (Object(a), Object(b)) => Arc::ptr_eq(a, b) || a == b,
            (Cycle(a), Cycle(b)) => a == b,
            _ => false,
        }
    }
}

/// The `<TN>` list, most derived type first. Shared between objects through `<TNRef>`.
pub type TypeNames = Arc<[Str]>;

/// A complex object (`<Obj>`, MS-PSRP 2.2.5.2).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Object {
    /// `<TN>`/`<TNRef>`: the type names, most derived first; `None` when the object has none (PSRP messages).
    pub type_names: Option<TypeNames>,
    /// `<ToString>`
    pub to_string: Option<Str>,
    /// What the object wraps: nothing, an (extended) primitive or enum value, or a container.
    pub content: Content,
    /// `<Props>`: adapted properties (the .NET object's own, through its adapter).
    pub adapted: Vec<Property>,
    /// `<MS>`: extended properties (note properties, ETS members; every PSRP message field), and the
    /// object's member sets among them (properties whose value is a member set).
    pub extended: Vec<Property>,
    /// `true` when this is not an `<Obj>` but a member set, a nested `<MS N="…">` (a `PSMemberSet` such
    /// as `PSStandardMembers`), held as the value of the extended property that names it. Then only
    /// [`extended`](Object::extended), its members (note properties and nested member sets), has
    /// meaning; it is valid only as a member of an `<MS>`, has no `RefId`, and is not a level for
    /// [`Value::Cycle`].
    pub member_set: bool,
}

/// What an [`Object`] wraps besides its properties.
#[derive(Clone, Debug, Default, PartialEq)]
pub enum Content {
    /// A property bag.
    #[default]
    None,
    /// An extended primitive or an enum's underlying value (MS-PSRP 2.2.5.2.9, 2.2.5.2.3).
    Primitive(Value),
    /// `<LST>`, `<IE>`, `<STK>` or `<QUE>`.
    List(ListKind, Vec<Value>),
    /// `<DCT>`: entries in document order.
    Dict(Vec<(Value, Value)>),
}

/// The kind of list container (MS-PSRP 2.2.5.2.6).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ListKind {
    /// `<LST>`: IList, arrays.
    List,
    /// `<IE>`: any other IEnumerable.
    Enumerable,
    /// `<STK>`: Stack, top first.
    Stack,
    /// `<QUE>`: Queue, head first.
    Queue,
}

impl ListKind {
    /// The element name.
    pub fn tag(self) -> &'static str {
        match self {
            ListKind::List => "LST",
            ListKind::Enumerable => "IE",
            ListKind::Stack => "STK",
            ListKind::Queue => "QUE",
        }
    }
}

/// A named property (`N="…"`).
#[derive(Clone, Debug, PartialEq)]
pub struct Property {
    /// The property name, unescaped.
    pub name: Str,
    /// Its value.
    pub value: Value,
}

impl Property {
    /// A property.
    pub fn new(name: impl Into<Str>, value: Value) -> Property {
        Property { name: name.into(), value }
    }
}

impl Object {
    /// The type names without the `Deserialized.` prefix PowerShell adds to types it could not rehydrate.
    pub fn type_names(&self) -> impl Iterator<Item = &str> {
        self.type_names
            .iter()
            .flat_map(|t| t.iter())
            .map(|t| t.strip_prefix("Deserialized.").unwrap_or(t))
    }

    /// Whether the object is (or derives from) `type_name`, ignoring the `Deserialized.` prefix.
    pub fn is_type(&self, type_name: &str) -> bool {
        self.type_names().any(|t| t == type_name)
    }

    /// Whether this is an enum value (`System.Enum` among its type names).
    pub fn is_enum(&self) -> bool {
        self.is_type("System.Enum")
    }

    /// The wrapped primitive of an extended primitive or enum.
    pub fn primitive(&self) -> Option<&Value> {
        match &self.content {
            Content::Primitive(v) => Some(v),
            _ => None,
        }
    }

    /// A property by name, extended properties first (as PowerShell resolves them), case-insensitive
    /// like PowerShell's member lookup.
    pub fn property(&self, name: &str) -> Option<&Value> {
        self.extended
            .iter()
            .chain(self.adapted.iter())
            .find(|p| p.name.eq_ignore_ascii_case(name))
            .map(|p| &p.value)
    }

    /// All properties, adapted then extended, as PowerShell's formatter lists them (member sets
    /// included: they are extended members; [`Value::is_member_set`] tells them apart).
    pub fn properties(&self) -> impl Iterator<Item = &Property> {
        self.adapted.iter().chain(self.extended.iter())
    }
}

/// A .NET `DateTime` as written by `XmlConvert` in round-trip mode (MS-PSRP 2.2.5.1.4).
///
/// Kept as its calendar fields rather than converted, so that every value round-trips exactly.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct DateTime {
    /// 1..=9999
    pub year: u16,
    /// 1..=12
    pub month: u8,
    /// 1..=31 (checked against the month)
    pub day: u8,
    /// 0..=23
    pub hour: u8,
    /// 0..=59
    pub minute: u8,
    /// 0..=59
    pub second: u8,
    /// Fraction of a second in 100 ns ticks, 0..=9_999_999.
    pub ticks: u32,
    /// UTC, local with an offset, or unspecified.
    pub kind: DateTimeKind,
}

/// The `DateTimeKind` a `<DT>` was written with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DateTimeKind {
    /// No zone suffix.
    Unspecified,
    /// `Z`
    Utc,
    /// `±hh:mm`: local time at that offset, in minutes east of UTC.
    Local(i16),
}

impl fmt::Display for DateTime {
    /// The CLIXML (`XmlConvert` round-trip) form: `2024-05-01T10:00:00.5Z`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = String::new();
        super::primitive::write_datetime(&mut s, self);
        f.write_str(&s)
    }
}

/// A .NET `TimeSpan` in 100 ns ticks (MS-PSRP 2.2.5.1.5).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TimeSpan(pub i64);

impl fmt::Display for TimeSpan {
    /// The CLIXML (xs:duration) form: `PT1M30S`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = String::new();
        super::primitive::write_timespan(&mut s, *self);
        f.write_str(&s)
    }
}

impl TimeSpan {
    /// Ticks per second.
    pub const TICKS_PER_SECOND: i64 = 10_000_000;
}

/// A .NET `Version`: major.minor[.build[.revision]] (MS-PSRP 2.2.5.1.21).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Version {
    /// Major
    pub major: u32,
    /// Minor
    pub minor: u32,
    /// Build, if written
    pub build: Option<u32>,
    /// Revision, if written (only with a build)
    pub revision: Option<u32>,
}

impl Version {
    /// `major.minor`
    pub const fn new(major: u32, minor: u32) -> Version {
        Version { major, minor, build: None, revision: None }
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)?;
        if let Some(b) = self.build {
            write!(f, ".{b}")?;
            if let Some(r) = self.revision {
                write!(f, ".{r}")?;
            }
        }
        Ok(())
    }
}

/// A `<PR>` progress record (not in MS-PSRP; the layout PowerShell's serializer uses).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProgressRecord {
    /// `AV`
    pub activity: Str,
    /// `AI`
    pub activity_id: i32,
    /// The `<S>`/`<Nil/>` child.
    pub current_operation: Option<Str>,
    /// `PI`
    pub parent_activity_id: i32,
    /// `PC`: -1 when unknown.
    pub percent_complete: i32,
    /// `T`
    pub record_type: ProgressRecordType,
    /// `SR`: -1 when unknown.
    pub seconds_remaining: i32,
    /// `SD`
    pub status_description: Option<Str>,
}

/// `ProgressRecordType`
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ProgressRecordType {
    /// `Processing`
    Processing,
    /// `Completed`
    Completed,
}

/// A top-level object of a document together with its `S="…"` stream attribute, if any.
#[derive(Clone, Debug, PartialEq)]
pub struct Item {
    /// The `S` attribute (`Output`, `Error`, `Debug`, `Verbose`, `Warning`, `Information`, `Progress`), as written.
    pub stream: Option<Str>,
    /// The object.
    pub value: Value,
}

/// A stand-alone CLIXML document: `<Objs>` and its children.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Document {
    /// Whether it began with the `#< CLIXML` line that `pwsh` writes.
    pub clixml_header: bool,
    /// The objects, in order.
    pub items: Vec<Item>,
}
