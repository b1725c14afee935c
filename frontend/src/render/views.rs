//! PowerShell's default formatting, as data: which view a type gets (the columns and headings of pwsh 7's
//! built-in `*.format.ps1xml`), and the rule for everything else (`PSStandardMembers.DefaultDisplayPropertySet`
//! if the object carries one, else all its properties: four or fewer make a table, five or more a list).
//!
//! Type names match with or without the `Deserialized.` prefix remoting adds. The script-block columns of the
//! real views (`[long]($_.NPM / 1024)`, `"{0:N2}" -f …`) are the named computations of [`Calc`], so the
//! table below stays plain data.

use std::borrow::Cow;

use psgate_shared::clixml::{Content, DateTime, Object, TimeSpan, Value};

use super::display::{cell, dotnet_type};

/// How a view lays an object out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Format-Table: one row per object.
    Table,
    /// Format-List: `Name : Value` lines per object.
    List,
    /// One line of text per object (a custom control).
    Text,
}

/// A column's alignment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Align {
    /// Left.
    Left,
    /// Right (numbers in the built-in views).
    Right,
    /// Right when every value is a number, as Format-Table does without a view.
    Auto,
}

/// Where a column's value comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Get {
    /// A property, ignoring case (a primitive's too: a `Version`'s `Major`, a `TimeSpan`'s `TotalSeconds`).
    Property(Cow<'static, str>),
    /// The first of these properties the object has (pwsh 7's display-only `LengthString` before `Length`).
    First(&'static [&'static str]),
    /// A script-block column.
    Calc(Calc),
    /// A dictionary entry's key (`Name` of a hashtable's table).
    Key,
    /// A dictionary entry's value.
    Value,
}

/// The script-block columns of the built-in views.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Calc {
    /// `[long]($_.<p> / 1024)`
    Kilobytes(&'static str),
    /// `"{0:N2}" -f [float]($_.<p> / 1MB)`
    MegabytesN2(&'static str),
    /// `"{0:N2}" -f [float]($_.<p>)`
    N2(&'static str),
    /// `if($_.Used -or $_.Free) { "{0:###0.00}" -f ($_.<p> / 1GB) }`
    DriveGigabytes(&'static str),
    /// `$_.Provider.Name`
    ProviderName,
    /// `if($null -ne $_.DisplayRoot) { $_.DisplayRoot } else { $_.Root }`
    DriveRoot,
    /// pwsh 7's `LastWriteTimeString`: `{0,10:d} {0,8:t}`.
    LastWriteTime,
    /// pwsh 7's `LengthString`: empty for a directory.
    FileLength,
    /// A date as its string (`Get-Date`): long date and long time, or one of them as its `DisplayHint` says.
    DateText,
    /// A MatchInfo: its string (`path:line:text`), else its `Line`.
    MatchText,
}

/// One column of a view (or one line of a list).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Field {
    /// The heading (the label, else the property name).
    pub heading: Cow<'static, str>,
    /// Its value.
    pub get: Get,
    /// Its alignment.
    pub align: Align,
    /// The view's width in characters (0: as wide as it needs).
    pub width: u16,
}

/// A view's grouping: a new table whenever the property's value changes, titled `label: value`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Group {
    /// `Directory`
    pub label: &'static str,
    /// `PSParentPath`
    pub property: &'static str,
}

/// A default view.
#[derive(Debug, PartialEq, Eq)]
pub struct View {
    /// Its name in PowerShell.
    pub name: &'static str,
    /// The types it is for, most specific first; matched with or without `Deserialized.`.
    pub types: &'static [&'static str],
    /// Table, list or text.
    pub format: Format,
    /// The columns (table) or lines (list).
    pub fields: &'static [Field],
    /// Grouping, if any.
    pub group: Option<Group>,
    /// A text view's text.
    pub text: Option<Calc>,
}

const fn col(heading: &'static str, property: &'static str, align: Align, width: u16) -> Field {
    Field { heading: Cow::Borrowed(heading), get: Get::Property(Cow::Borrowed(property)), align, width }
}

const fn calc(heading: &'static str, calc: Calc, align: Align, width: u16) -> Field {
    Field { heading: Cow::Borrowed(heading), get: Get::Calc(calc), align, width }
}

const fn first(heading: &'static str, properties: &'static [&'static str], align: Align, width: u16) -> Field {
    Field { heading: Cow::Borrowed(heading), get: Get::First(properties), align, width }
}

const fn line(property: &'static str) -> Field {
    col(property, property, Align::Left, 0)
}

use Align::{Left, Right};

/// The built-in views (pwsh 7's `DotNetTypes`, `FileSystem` and `PowerShellCore` format data).
pub static VIEWS: &[View] = &[
    View {
        name: "process",
        types: &["System.Diagnostics.Process"],
        format: Format::Table,
        fields: &[
            calc("NPM(K)", Calc::Kilobytes("NPM"), Right, 7),
            calc("PM(M)", Calc::MegabytesN2("PM"), Right, 8),
            calc("WS(M)", Calc::MegabytesN2("WS"), Right, 10),
            calc("CPU(s)", Calc::N2("CPU"), Right, 10),
            col("Id", "Id", Right, 7),
            first("SI", &["SI", "SessionId"], Right, 3),
            first("ProcessName", &["ProcessName", "Name"], Left, 0),
        ],
        group: None,
        text: None,
    },
    View {
        name: "service",
        types: &["System.ServiceProcess.ServiceController"],
        format: Format::Table,
        fields: &[col("Status", "Status", Left, 8), col("Name", "Name", Left, 18), col("DisplayName", "DisplayName", Left, 38)],
        group: None,
        text: None,
    },
    View {
        name: "children",
        types: &["System.IO.DirectoryInfo", "System.IO.FileInfo"],
        format: Format::Table,
        fields: &[
            first("Mode", &["ModeWithoutHardLink", "Mode"], Left, 7),
            calc("LastWriteTime", Calc::LastWriteTime, Right, 26),
            calc("Length", Calc::FileLength, Right, 14),
            first("Name", &["NameString", "Name"], Left, 0),
        ],
        group: Some(Group { label: "Directory", property: "PSParentPath" }),
        text: None,
    },
    View {
        name: "Microsoft.PowerShell.Commands.GroupInfo",
        types: &["Microsoft.PowerShell.Commands.GroupInfo"],
        format: Format::Table,
        fields: &[col("Count", "Count", Right, 5), col("Name", "Name", Left, 25), col("Group", "Group", Left, 0)],
        group: None,
        text: None,
    },
    View {
        name: "drive",
        types: &["System.Management.Automation.PSDriveInfo"],
        format: Format::Table,
        fields: &[
            col("Name", "Name", Left, 10),
            calc("Used (GB)", Calc::DriveGigabytes("Used"), Right, 13),
            calc("Free (GB)", Calc::DriveGigabytes("Free"), Right, 13),
            calc("Provider", Calc::ProviderName, Left, 13),
            calc("Root", Calc::DriveRoot, Left, 35),
            col("CurrentLocation", "CurrentLocation", Right, 0),
        ],
        group: None,
        text: None,
    },
    View {
        name: "System.Version",
        types: &["System.Version"],
        format: Format::Table,
        fields: &[col("Major", "Major", Left, 6), col("Minor", "Minor", Left, 6), col("Build", "Build", Left, 6), col("Revision", "Revision", Left, 8)],
        group: None,
        text: None,
    },
    View {
        name: "System.Management.Automation.SemanticVersion",
        types: &["System.Management.Automation.SemanticVersion"],
        format: Format::Table,
        fields: &[
            col("Major", "Major", Left, 6),
            col("Minor", "Minor", Left, 6),
            col("Patch", "Patch", Left, 6),
            col("PreReleaseLabel", "PreReleaseLabel", Left, 15),
            col("BuildLabel", "BuildLabel", Left, 11),
        ],
        group: None,
        text: None,
    },
    View {
        name: "System.Guid",
        types: &["System.Guid"],
        format: Format::Table,
        fields: &[col("Guid", "Guid", Left, 0)],
        group: None,
        text: None,
    },
    View {
        name: "System.TimeSpan",
        types: &["System.TimeSpan"],
        format: Format::List,
        fields: &[
            line("Days"),
            line("Hours"),
            line("Minutes"),
            line("Seconds"),
            line("Milliseconds"),
            line("Ticks"),
            line("TotalDays"),
            line("TotalHours"),
            line("TotalMinutes"),
            line("TotalSeconds"),
            line("TotalMilliseconds"),
        ],
        group: None,
        text: None,
    },
    View {
        name: "MatchInfo",
        types: &["Microsoft.PowerShell.Commands.MatchInfo"],
        format: Format::Text,
        fields: &[],
        group: None,
        text: Some(Calc::MatchText),
    },
    View { name: "DateTime", types: &["System.DateTime"], format: Format::Text, fields: &[], group: None, text: Some(Calc::DateText) },
    // Remoting's views, for what psgate's prompt outputs (pwsh 7's PowerShellCore format data).
    View {
        name: "PSSession",
        types: &["System.Management.Automation.Runspaces.PSSession"],
        format: Format::Table,
        fields: &[
            col("Id", "Id", Right, 3),
            col("Name", "Name", Left, 15),
            col("Transport", "Transport", Left, 9),
            col("ComputerName", "ComputerName", Left, 15),
            col("ComputerType", "ComputerType", Left, 15),
            col("State", "State", Left, 13),
            col("ConfigurationName", "ConfigurationName", Left, 20),
            col("Availability", "Availability", Right, 13),
        ],
        group: None,
        text: None,
    },
    View {
        name: "Job",
        types: &["System.Management.Automation.Job"],
        format: Format::Table,
        fields: &[
            col("Id", "Id", Left, 6),
            col("Name", "Name", Left, 15),
            col("PSJobTypeName", "PSJobTypeName", Left, 15),
            col("State", "State", Left, 13),
            col("HasMoreData", "HasMoreData", Left, 15),
            col("Location", "Location", Left, 20),
            col("Command", "Command", Left, 25),
        ],
        group: None,
        text: None,
    },
    View {
        name: "MemberDefinition",
        types: &["Microsoft.PowerShell.Commands.MemberDefinition"],
        format: Format::Table,
        fields: &[line("Name"), line("MemberType"), line("Definition")],
        group: Some(Group { label: "TypeName", property: "TypeName" }),
        text: None,
    },
];

/// The Name/Value table of a dictionary (`System.Collections.DictionaryEntry`'s view).
pub static DICTIONARY: &[Field] = &[
    Field { heading: Cow::Borrowed("Name"), get: Get::Key, align: Left, width: 30 },
    Field { heading: Cow::Borrowed("Value"), get: Get::Value, align: Align::Auto, width: 0 },
];

/// The type names of a value, most derived first, without `Deserialized.`: an object's `<TN>`, a
/// primitive's .NET type.
pub fn type_names(value: &Value) -> Vec<&str> {
    match value {
        Value::Object(o) if o.type_names.is_some() => o.type_names().collect(),
        Value::Object(o) => o.primitive().map(|p| vec![dotnet_type(p)]).unwrap_or_default(),
        Value::Nil | Value::Cycle(_) => Vec::new(),
        other => vec![dotnet_type(other)],
    }
}

/// The built-in view for a value's type, if there is one.
pub fn view_for(value: &Value) -> Option<&'static View> {
    type_names(value).into_iter().find_map(|t| VIEWS.iter().find(|v| v.types.contains(&t)))
}

/// The properties an object's `PSStandardMembers.DefaultDisplayPropertySet` names, if it carries one.
///
/// PowerShell serializes a member set as a nested `<MS N="PSStandardMembers">` of note properties; a property
/// set itself has no value to serialize, so what arrives is whatever the sender made of it: a list of names,
/// an object with `ReferencedPropertyNames` (a serialized `PSPropertySet`), or a string of names.
pub fn display_property_set(obj: &Object) -> Option<Vec<String>> {
    let set = obj.property("PSStandardMembers")?.as_object()?.property("DefaultDisplayPropertySet")?;
    let names = |v: &Value| -> Option<Vec<String>> {
        match v {
            Value::String(s) => Some(s.split([',', ' ', ';']).filter(|n| !n.is_empty()).map(str::to_owned).collect()),
            Value::Object(o) => match &o.content {
                Content::List(_, items) => Some(items.iter().filter_map(|i| i.as_str().map(str::to_owned)).collect()),
                _ => None,
            },
            _ => None,
        }
    };
    let list = names(set).or_else(|| set.as_object()?.property("ReferencedPropertyNames").and_then(names))?;
    let list: Vec<String> = list.into_iter().filter(|n| obj.property(n).is_some()).collect();
    (!list.is_empty()).then_some(list)
}

/// A property of a value, ignoring case: an object's, or a primitive's own (`Major` of a `Version`, `Days` of a
/// `TimeSpan`, `Guid` of a `Guid`). `None` when it has no such property.
pub fn property(value: &Value, name: &str) -> Option<Value> {
    let is = |n: &str| name.eq_ignore_ascii_case(n);
    match value {
        Value::Object(o) => match o.property(name) {
            Some(v) => Some(v.clone()),
            None => o.primitive().and_then(|p| property(p, name)),
        },
        Value::Version(v) => {
            let part = |p: Option<u32>| Value::I64(p.map_or(-1, i64::from));
            if is("Major") {
                Some(Value::I64(v.major.into()))
            } else if is("Minor") {
                Some(Value::I64(v.minor.into()))
            } else if is("Build") {
                Some(part(v.build))
            } else if is("Revision") {
                Some(part(v.revision))
            } else {
                None
            }
        }
        Value::TimeSpan(ts) => timespan_property(*ts, name),
        Value::Guid(g) if is("Guid") => Some(Value::string(g.hyphenated().to_string())),
        _ => None,
    }
}

fn timespan_property(ts: TimeSpan, name: &str) -> Option<Value> {
    const TICKS_PER_MS: i64 = 10_000;
    let t = ts.0;
    let (ms, s, m, h, d) = (TICKS_PER_MS as f64, 1e7, 6e8, 3.6e10, 8.64e11);
    let v = match name.to_ascii_lowercase().as_str() {
        "days" => Value::I64(t / 864_000_000_000),
        "hours" => Value::I64(t / 36_000_000_000 % 24),
        "minutes" => Value::I64(t / 600_000_000 % 60),
        "seconds" => Value::I64(t / 10_000_000 % 60),
        "milliseconds" => Value::I64(t / TICKS_PER_MS % 1000),
        "ticks" => Value::I64(t),
        "totaldays" => Value::Double(t as f64 / d),
        "totalhours" => Value::Double(t as f64 / h),
        "totalminutes" => Value::Double(t as f64 / m),
        "totalseconds" => Value::Double(t as f64 / s),
        "totalmilliseconds" => Value::Double(t as f64 / ms),
        _ => return None,
    };
    Some(v)
}

/// A field's value for a value (for a dictionary's table, `entry` is the entry's key and value).
pub fn get(value: &Value, get: &Get, entry: Option<&(Value, Value)>) -> Value {
    match get {
        Get::Property(name) => property(value, name).unwrap_or(Value::Nil),
        Get::First(names) => names.iter().find_map(|n| property(value, n).filter(|v| !v.is_nil())).unwrap_or(Value::Nil),
        Get::Calc(c) => c.eval(value),
        Get::Key => entry.map(|e| e.0.clone()).unwrap_or(Value::Nil),
        Get::Value => entry.map(|e| e.1.clone()).unwrap_or(Value::Nil),
    }
}

/// A number, from any numeric value (and an extended primitive or enum holding one).
pub fn number(v: &Value) -> Option<f64> {
    Some(match v {
        Value::U8(n) => (*n).into(),
        Value::I8(n) => (*n).into(),
        Value::U16(n) => (*n).into(),
        Value::I16(n) => (*n).into(),
        Value::U32(n) => (*n).into(),
        Value::I32(n) => (*n).into(),
        Value::U64(n) => *n as f64,
        Value::I64(n) => *n as f64,
        Value::Single(n) => (*n).into(),
        Value::Double(n) => *n,
        Value::Decimal(d) => decimal(d)?,
        Value::Object(o) => return o.primitive().and_then(number),
        _ => return None,
    })
}

/// A decimal's invariant text (`-12.50`) as a number.
fn decimal(text: &str) -> Option<f64> {
    let (negative, digits) = match text.strip_prefix('-') {
        Some(d) => (true, d),
        None => (false, text),
    };
    let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
    let mut value = 0.0;
    for b in int.bytes() {
        value = value * 10.0 + f64::from(b.checked_sub(b'0').filter(|d| *d < 10)?);
    }
    let mut scale = 1.0;
    for b in frac.bytes() {
        scale /= 10.0;
        value += scale * f64::from(b.checked_sub(b'0').filter(|d| *d < 10)?);
    }
    Some(if negative { -value } else { value })
}

impl Calc {
    /// Computes the column for a value (`Nil` when the script block would print nothing).
    pub fn eval(self, value: &Value) -> Value {
        let num = |p: &str| property(value, p).as_ref().and_then(number);
        match self {
            Calc::Kilobytes(p) => Value::I64((num(p).unwrap_or(0.0) / 1024.0).round_ties_even() as i64),
            Calc::MegabytesN2(p) => Value::string(n2(f64::from((num(p).unwrap_or(0.0) / 1_048_576.0) as f32))),
            Calc::N2(p) => Value::string(n2(f64::from(num(p).unwrap_or(0.0) as f32))),
            Calc::DriveGigabytes(p) => {
                let (used, free) = (num("Used").unwrap_or(0.0), num("Free").unwrap_or(0.0));
                if used == 0.0 && free == 0.0 {
                    Value::Nil
                } else {
                    Value::string(fixed2(num(p).unwrap_or(0.0) / 1_073_741_824.0))
                }
            }
            Calc::ProviderName => match property(value, "Provider") {
                Some(Value::Object(o)) => o
                    .property("Name")
                    .filter(|n| !n.is_nil())
                    .cloned()
                    .or_else(|| o.to_string.as_deref().map(|s| Value::string(after_backslash(s))))
                    .unwrap_or(Value::Nil),
                Some(Value::String(s)) => Value::string(after_backslash(&s)),
                _ => Value::Nil,
            },
            Calc::DriveRoot => property(value, "DisplayRoot")
                .filter(|v| !v.is_nil())
                .or_else(|| property(value, "Root"))
                .unwrap_or(Value::Nil),
            Calc::LastWriteTime => match property(value, "LastWriteTimeString").filter(|v| !v.is_nil()) {
                Some(s) => s,
                None => match property(value, "LastWriteTime").as_ref().and_then(date_of) {
                    Some(dt) => Value::string(format!("{:>10} {:>8}", short_date(&dt), short_time(&dt))),
                    None => Value::Nil,
                },
            },
            Calc::FileLength => match property(value, "LengthString").filter(|v| !v.is_nil()) {
                Some(s) => s,
                None if is_directory(value) => Value::Nil,
                None => property(value, "Length").unwrap_or(Value::Nil),
            },
            Calc::DateText => match date_of(value) {
                Some(dt) => Value::string(date_text(&dt, display_hint(value).as_deref())),
                None => Value::string(cell(value)),
            },
            Calc::MatchText => match value {
                Value::Object(o) => o
                    .to_string
                    .as_deref()
                    .map(Value::string)
                    .or_else(|| o.property("Line").cloned())
                    .unwrap_or(Value::Nil),
                other => other.clone(),
            },
        }
    }
}

fn after_backslash(s: &str) -> &str {
    s.rsplit('\\').next().unwrap_or(s)
}

fn is_directory(value: &Value) -> bool {
    value.as_object().is_some_and(|o| o.is_type("System.IO.DirectoryInfo"))
}

fn date_of(v: &Value) -> Option<DateTime> {
    match v {
        Value::DateTime(dt) => Some(*dt),
        Value::Object(o) => o.primitive().and_then(date_of),
        _ => None,
    }
}

/// `Get-Date`'s `DisplayHint` (`Date`, `Time` or `DateTime`).
fn display_hint(v: &Value) -> Option<String> {
    let hint = v.as_object()?.property("DisplayHint")?;
    hint.as_object().and_then(|o| o.to_string.as_deref().map(str::to_owned)).or_else(|| hint.as_str().map(str::to_owned))
}

/// `1,234.57`: .NET's `N2` (en-US), rounding halves away from zero.
pub fn n2(x: f64) -> String {
    let cents = (x.abs() * 100.0).round();
    if cents.is_nan() || cents >= 1e17 {
        return super::display::double(x);
    }
    let cents = cents as u64;
    let (int, frac) = (cents / 100, cents % 100);
    let digits = int.to_string();
    let mut grouped = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(c);
    }
    let sign = if x < 0.0 && cents > 0 { "-" } else { "" };
    format!("{sign}{grouped}.{frac:02}")
}

/// `1234.57`: the format `###0.00`.
pub fn fixed2(x: f64) -> String {
    n2(x).replace(',', "")
}

const MONTHS: [&str; 12] =
    ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October", "November", "December"];
const DAYS: [&str; 7] = ["Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"];

/// 0 = Sunday (Sakamoto's method).
fn weekday(dt: &DateTime) -> usize {
    const T: [u32; 12] = [0, 3, 2, 5, 0, 3, 5, 1, 4, 6, 2, 4];
    let m = usize::from(dt.month.clamp(1, 12)) - 1;
    let y = u32::from(dt.year).saturating_sub(u32::from(dt.month < 3));
    ((y + y / 4 - y / 100 + y / 400 + T[m] + u32::from(dt.day)) % 7) as usize
}

/// `11/25/2026` (en-US `d`).
fn short_date(dt: &DateTime) -> String {
    format!("{}/{}/{:04}", dt.month, dt.day, dt.year)
}

/// `8:15 AM` (en-US `t`).
fn short_time(dt: &DateTime) -> String {
    format!("{}:{:02} {}", hour12(dt.hour), dt.minute, if dt.hour < 12 { "AM" } else { "PM" })
}

fn hour12(h: u8) -> u8 {
    match h % 12 {
        0 => 12,
        h => h,
    }
}

/// A date as `Get-Date` prints it (en-US): `Wednesday, November 25, 2026 8:15:02 AM`, or only the date or the
/// time when its `DisplayHint` says so.
pub fn date_text(dt: &DateTime, hint: Option<&str>) -> String {
    let month = MONTHS.get(usize::from(dt.month.clamp(1, 12)) - 1).copied().unwrap_or_default();
    let date = format!("{}, {month} {}, {:04}", DAYS[weekday(dt)], dt.day, dt.year);
    let ampm = if dt.hour < 12 { "AM" } else { "PM" };
    let time = format!("{}:{:02}:{:02} {ampm}", hour12(dt.hour), dt.minute, dt.second);
    match hint {
        Some(h) if h.eq_ignore_ascii_case("Date") => date,
        Some(h) if h.eq_ignore_ascii_case("Time") => time,
        _ => format!("{date} {time}"),
    }
}

#[cfg(test)]
mod tests {
    use psgate_shared::clixml::{DateTimeKind, Version, decode_message};

    use super::*;

    fn obj(xml: &str) -> Value {
        decode_message(xml.as_bytes()).expect("test object decodes")
    }

    #[test]
    fn views_match_with_or_without_the_deserialized_prefix() {
        let p = obj(r#"<Obj><TN><T>Deserialized.System.Diagnostics.Process</T><T>Deserialized.System.Object</T></TN><Props/></Obj>"#);
        assert_eq!(view_for(&p).map(|v| v.name), Some("process"));
        let s = obj(r#"<Obj><TN><T>System.ServiceProcess.ServiceController</T></TN><Props/></Obj>"#);
        assert_eq!(view_for(&s).map(|v| v.name), Some("service"));
        let c = obj(r#"<Obj><TN><T>System.Management.Automation.PSCustomObject</T></TN><MS/></Obj>"#);
        assert_eq!(view_for(&c), None, "a PSCustomObject has no view: the 4/5 property rule decides");
        assert_eq!(view_for(&Value::Version(Version::new(1, 2))).map(|v| v.name), Some("System.Version"));
        assert_eq!(view_for(&Value::string("x")), None);
    }

    #[test]
    fn process_columns_convert_units_like_pwsh() {
        let p = obj(concat!(
            r#"<Obj><TN><T>System.Diagnostics.Process</T></TN><MS><I64 N="NPM">12345</I64><I64 N="PM">11730944</I64>"#,
            r#"<I64 N="WS">23461888</I64><Db N="CPU">1234.5</Db><I32 N="SI">1</I32></MS><Props><I32 N="Id">812</I32>"#,
            r#"<S N="ProcessName">svchost</S></Props></Obj>"#
        ));
        let v = view_for(&p).expect("process view");
        let cells: Vec<String> = v.fields.iter().map(|f| cell(&get(&p, &f.get, None))).collect();
        assert_eq!(cells, ["12", "11.19", "22.38", "1,234.50", "812", "1", "svchost"]);
        let headings: Vec<&str> = v.fields.iter().map(|f| f.heading.as_ref()).collect();
        assert_eq!(headings, ["NPM(K)", "PM(M)", "WS(M)", "CPU(s)", "Id", "SI", "ProcessName"]);
        let idle = obj(r#"<Obj><TN><T>System.Diagnostics.Process</T></TN><MS><Nil N="CPU"/><I64 N="NPM">0</I64></MS></Obj>"#);
        assert_eq!(cell(&get(&idle, &v.fields[3].get, None)), "0.00", "[float]$null is 0");
    }

    #[test]
    fn number_formats() {
        assert_eq!(n2(1234567.891), "1,234,567.89");
        assert_eq!(n2(0.125), "0.13", ".NET rounds halves away from zero");
        assert_eq!(n2(-2.5), "-2.50");
        assert_eq!(n2(-0.001), "0.00");
        assert_eq!(n2(999.999), "1,000.00");
        assert_eq!(fixed2(187.93 * 1_073_741_824.0 / 1_073_741_824.0), "187.93");
        assert_eq!(fixed2(12345.0), "12345.00");
        assert_eq!(n2(1e300), "1E+300");
        assert_eq!(n2(f64::NAN), "NaN");
        assert_eq!(number(&Value::Decimal("-12.50".into())), Some(-12.5));
        assert_eq!(number(&Value::Decimal("1x".into())), None);
    }

    #[test]
    fn files_and_directories() {
        let file = obj(concat!(
            r#"<Obj><TN><T>System.IO.FileInfo</T></TN><Props><S N="Name">a.txt</S><I64 N="Length">1024</I64>"#,
            r#"<DT N="LastWriteTime">2026-11-25T08:05:09.5+01:00</DT></Props><MS><S N="Mode">-a---</S>"#,
            r#"<S N="PSParentPath">Microsoft.PowerShell.Core\FileSystem::C:\Users</S></MS></Obj>"#
        ));
        let v = view_for(&file).expect("children view");
        let cells: Vec<String> = v.fields.iter().map(|f| cell(&get(&file, &f.get, None))).collect();
        assert_eq!(cells, ["-a---", "11/25/2026  8:05 AM", "1024", "a.txt"]);
        let dir = obj(r#"<Obj><TN><T>Deserialized.System.IO.DirectoryInfo</T></TN><Props><S N="Name">d</S></Props><MS><S N="Mode">d----</S><S N="LastWriteTimeString">1/2/2026  11:00 PM</S></MS></Obj>"#);
        let cells: Vec<String> = v.fields.iter().map(|f| cell(&get(&dir, &f.get, None))).collect();
        assert_eq!(cells, ["d----", "1/2/2026  11:00 PM", "", "d"]);
    }

    #[test]
    fn drives_and_groups() {
        let drive = obj(concat!(
            r#"<Obj><TN><T>System.Management.Automation.PSDriveInfo</T></TN><Props><S N="Name">C</S>"#,
            r#"<Obj N="Provider"><ToString>Microsoft.PowerShell.Core\FileSystem</ToString></Obj><S N="Root">C:\</S>"#,
            r#"<S N="CurrentLocation">Users</S><Nil N="DisplayRoot"/></Props><MS><U64 N="Used">201785344000</U64><U64 N="Free">309608611840</U64></MS></Obj>"#
        ));
        let v = view_for(&drive).expect("drive view");
        let cells: Vec<String> = v.fields.iter().map(|f| cell(&get(&drive, &f.get, None))).collect();
        assert_eq!(cells, ["C", "187.93", "288.35", "FileSystem", "C:\\", "Users"]);
        let alias = obj(r#"<Obj><TN><T>System.Management.Automation.PSDriveInfo</T></TN><Props><S N="Name">Alias</S><S N="Provider">Microsoft.PowerShell.Core\Alias</S></Props></Obj>"#);
        assert_eq!(cell(&get(&alias, &v.fields[1].get, None)), "", "no sizes for a drive without any");
        assert_eq!(cell(&get(&alias, &v.fields[3].get, None)), "Alias");
        let group = obj(r#"<Obj><TN><T>Microsoft.PowerShell.Commands.GroupInfo</T></TN><Props><I32 N="Count">2</I32><S N="Name">x</S><Obj N="Group"><LST><S>a</S><S>b</S></LST></Obj></Props></Obj>"#);
        let v = view_for(&group).expect("group view");
        let cells: Vec<String> = v.fields.iter().map(|f| cell(&get(&group, &f.get, None))).collect();
        assert_eq!(cells, ["2", "x", "{a, b}"]);
    }

    #[test]
    fn versions_time_spans_and_guids_have_their_properties() {
        let v = Value::Version(Version { major: 7, minor: 4, build: Some(1), revision: None });
        let cells: Vec<String> = ["Major", "Minor", "Build", "Revision"].iter().map(|p| cell(&property(&v, p).expect("a property"))).collect();
        assert_eq!(cells, ["7", "4", "1", "-1"]);
        let ts = Value::TimeSpan(TimeSpan((86_400 + 3723) * 10_000_000 + 5_000_000));
        assert_eq!(cell(&property(&ts, "Days").expect("days")), "1");
        assert_eq!(cell(&property(&ts, "hours").expect("hours")), "1");
        assert_eq!(cell(&property(&ts, "Milliseconds").expect("ms")), "500");
        assert_eq!(cell(&property(&ts, "TotalSeconds").expect("s")), "90123.5");
        assert_eq!(view_for(&ts).map(|v| v.format), Some(Format::List));
        let g = obj("<G>00000000-0000-0000-0000-000000000000</G>");
        assert_eq!(cell(&property(&g, "Guid").expect("guid")), "00000000-0000-0000-0000-000000000000");
    }

    #[test]
    fn dates_print_like_get_date() {
        let dt = DateTime { year: 2026, month: 11, day: 25, hour: 8, minute: 15, second: 2, ticks: 0, kind: DateTimeKind::Utc };
        assert_eq!(date_text(&dt, None), "Wednesday, November 25, 2026 8:15:02 AM");
        assert_eq!(date_text(&DateTime { hour: 0, ..dt }, Some("Time")), "12:15:02 AM");
        assert_eq!(date_text(&DateTime { year: 2000, month: 2, day: 29, ..dt }, Some("Date")), "Tuesday, February 29, 2000");
        let get_date = obj(r#"<Obj><DT>2026-11-25T20:15:02+01:00</DT><MS><Obj N="DisplayHint"><ToString>Date</ToString><I32>0</I32></Obj></MS></Obj>"#);
        assert_eq!(Calc::DateText.eval(&get_date), Value::string("Wednesday, November 25, 2026"));
    }

    #[test]
    fn a_default_display_property_set_names_the_columns() {
        let o = obj(concat!(
            r#"<Obj><MS><S N="A">1</S><S N="B">2</S><S N="C">3</S><Obj N="PSStandardMembers"><MS>"#,
            r#"<Obj N="DefaultDisplayPropertySet"><LST><S>C</S><S>A</S><S>Missing</S></LST></Obj></MS></Obj></MS></Obj>"#
        ));
        let Value::Object(o) = o else { panic!("an object") };
        assert_eq!(display_property_set(&o), Some(vec!["C".to_owned(), "A".to_owned()]));
        let set = obj(concat!(
            r#"<Obj><MS><S N="A">1</S><Obj N="PSStandardMembers"><MS><Obj N="DefaultDisplayPropertySet"><MS>"#,
            r#"<Obj N="ReferencedPropertyNames"><LST><S>A</S></LST></Obj></MS></Obj></MS></Obj></MS></Obj>"#
        ));
        let Value::Object(set) = set else { panic!("an object") };
        assert_eq!(display_property_set(&set), Some(vec!["A".to_owned()]));
    }
}
