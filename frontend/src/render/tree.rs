//! The tree model: what a node shows closed ([`head`]) and what it holds when opened ([`expand`]).
//!
//! Children are computed only when a node is opened, so shared objects (one `Arc` held in many places) cost
//! nothing until looked at, and a [`Value::Cycle`] is a leaf that names the ancestor it points back to.

use psgate_shared::clixml::{Content, Object, ProgressRecordType, Property, Value};

use super::display::{CELL_CHARS, cell, dotnet_type, hex, object_type, scalar_text, truncate};

/// A node, closed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Head {
    /// The CLIXML element (`I32`, `S`, `Obj`, `PR`, `Ref`…).
    pub tag: &'static str,
    /// The .NET type, for a tooltip on the tag.
    pub tag_title: &'static str,
    /// An object's most derived type name (without `Deserialized.`).
    pub type_name: Option<String>,
    /// A container's element and size: `LST (3)`, `DCT (2)`.
    pub container: Option<String>,
    /// One line: the value, quoted for strings.
    pub summary: String,
    /// Whether opening it shows more.
    pub expandable: bool,
}

/// Where a child comes from, shown as a small badge.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    /// `<Props>`: an adapted property.
    Adapted,
    /// `<MS>`: an extended property.
    Extended,
    /// An element of a list.
    Element,
    /// A dictionary entry.
    Entry,
    /// The value an enum or extended primitive wraps.
    Wrapped,
    /// A field of a progress record.
    Field,
}

impl Origin {
    /// The badge text; empty where the label says enough (`[0]`, a key, `value`).
    pub fn badge(self) -> &'static str {
        match self {
            Origin::Adapted => "Props",
            Origin::Extended => "MS",
            Origin::Element | Origin::Entry | Origin::Field | Origin::Wrapped => "",
        }
    }

    /// The badge's tooltip.
    pub fn title(self) -> &'static str {
        match self {
            Origin::Adapted => "adapted property (<Props>)",
            Origin::Extended => "extended property (<MS>)",
            Origin::Element | Origin::Entry | Origin::Field | Origin::Wrapped => "",
        }
    }
}

/// A child of an opened node.
#[derive(Clone, Debug, PartialEq)]
pub struct Child {
    /// Property name, `[i]` or dictionary key.
    pub label: String,
    /// Where it comes from.
    pub origin: Origin,
    /// The value (cheap to clone: objects are shared).
    pub value: Value,
}

/// A node, opened.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Expanded {
    /// All type names as written, most derived first.
    pub type_names: Vec<String>,
    /// `<ToString>`, when there is one.
    pub to_string: Option<String>,
    /// The full text of a long string, or a hex dump.
    pub text: Option<String>,
    /// Properties, elements, entries or fields.
    pub children: Vec<Child>,
}

/// What a node shows closed.
pub fn head(value: &Value) -> Head {
    let (type_name, container, expandable) = match value {
        Value::Object(o) => (
            object_type(o).map(str::to_owned),
            container(o),
            o.type_names.is_some()
                || o.to_string.is_some()
                || o.content != Content::None
                || o.properties().next().is_some(),
        ),
        Value::Progress(_) => (None, None, true),
        Value::Bytes(b) | Value::SecureString(b) => (None, None, !b.is_empty()),
        Value::String(_) | Value::Uri(_) | Value::Xml(_) | Value::ScriptBlock(_) => {
            let full = scalar_text(value).unwrap_or_default();
            (None, None, full.chars().count() > CELL_CHARS || full.contains(['\n', '\r']))
        }
        _ => (None, None, false),
    };
    Head { tag: value.tag(), tag_title: dotnet_type(value), type_name, container, summary: summary(value), expandable }
}

fn container(o: &Object) -> Option<String> {
    match &o.content {
        Content::List(kind, items) => Some(format!("{} ({})", kind.tag(), items.len())),
        Content::Dict(entries) => Some(format!("DCT ({})", entries.len())),
        _ => None,
    }
}

fn summary(value: &Value) -> String {
    match value {
        Value::Nil => "$null".to_owned(),
        Value::String(_) | Value::Uri(_) | Value::Xml(_) | Value::ScriptBlock(_) => {
            format!("\"{}\"", truncate(visible(&scalar_text(value).unwrap_or_default()), CELL_CHARS))
        }
        Value::Bytes(b) => format!("{} bytes: {}", b.len(), truncate(hex(&b[..b.len().min(8)]), CELL_CHARS)),
        Value::DateTime(_) => scalar_text(value).unwrap_or_default(),
        _ => cell(value),
    }
}

/// A string on one line with its control characters visible: a line break as `↵`, a tab as `⇥`, the others as
/// their Control Pictures (`␀`), so that `"a\r\n"` and `"a"` do not look the same.
pub fn visible(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\r' if chars.peek() == Some(&'\n') => {
                chars.next();
                out.push('↵');
            }
            '\r' | '\n' => out.push('↵'),
            '\t' => out.push('⇥'),
            c if (c as u32) < 0x20 => out.push(char::from_u32(0x2400 + c as u32).unwrap_or('�')),
            c => out.push(c),
        }
    }
    out
}

/// What a node holds when opened.
pub fn expand(value: &Value) -> Expanded {
    match value {
        Value::Object(o) => expand_object(o),
        Value::Progress(pr) => {
            let opt = |s: &Option<_>| {
                s.as_ref().map_or(Value::Nil, |s: &psgate_shared::clixml::Str| Value::String(s.clone()))
            };
            let record_type = match pr.record_type {
                ProgressRecordType::Processing => "Processing",
                ProgressRecordType::Completed => "Completed",
            };
            let fields = [
                ("Activity", Value::String(pr.activity.clone())),
                ("ActivityId", Value::I32(pr.activity_id)),
                ("StatusDescription", opt(&pr.status_description)),
                ("CurrentOperation", opt(&pr.current_operation)),
                ("ParentActivityId", Value::I32(pr.parent_activity_id)),
                ("PercentComplete", Value::I32(pr.percent_complete)),
                ("SecondsRemaining", Value::I32(pr.seconds_remaining)),
                ("RecordType", Value::string(record_type)),
            ];
            Expanded {
                children: fields
                    .into_iter()
                    .map(|(label, value)| Child { label: label.to_owned(), origin: Origin::Field, value })
                    .collect(),
                ..Expanded::default()
            }
        }
        Value::Bytes(b) | Value::SecureString(b) => Expanded { text: Some(hex(b)), ..Expanded::default() },
        other => Expanded { text: scalar_text(other), ..Expanded::default() },
    }
}

fn expand_object(o: &Object) -> Expanded {
    let mut children = Vec::new();
    match &o.content {
        Content::None => {}
        Content::Primitive(v) => {
            children.push(Child { label: "value".into(), origin: Origin::Wrapped, value: v.clone() })
        }
        // In document order: a stack's top first, a queue's head first, as they were written.
        Content::List(_, items) => {
            children.extend(items.iter().enumerate().map(|(i, v)| Child {
                label: format!("[{i}]"),
                origin: Origin::Element,
                value: v.clone(),
            }));
        }
        Content::Dict(entries) => children.extend(entries.iter().enumerate().map(|(i, (k, v))| {
            if scalar_text(k).is_some() {
                Child { label: cell(k), origin: Origin::Entry, value: v.clone() }
            } else {
                // A key that is itself an object: show the entry as a Key/Value pair so the key can be opened.
                let pair = Object {
                    extended: vec![Property::new("Key", k.clone()), Property::new("Value", v.clone())],
                    ..Object::default()
                };
                Child { label: format!("[{i}]"), origin: Origin::Entry, value: Value::object(pair) }
            }
        })),
    }
    children.extend(o.adapted.iter().map(|p| Child {
        label: p.name.to_string(),
        origin: Origin::Adapted,
        value: p.value.clone(),
    }));
    children.extend(o.extended.iter().map(|p| Child {
        label: p.name.to_string(),
        origin: Origin::Extended,
        value: p.value.clone(),
    }));
    Expanded {
        type_names: o.type_names.iter().flat_map(|t| t.iter()).map(|t| t.to_string()).collect(),
        to_string: o.to_string.as_deref().map(str::to_owned),
        text: None,
        children,
    }
}

/// The label of an object for the ancestor chain that [`cycle_text`] reads.
pub fn ancestor_label(value: &Value) -> Option<String> {
    let Value::Object(o) = value else { return None };
    Some(object_type(o).unwrap_or("object").to_owned())
}

/// What a `Cycle(levels_up)` points back to. `ancestors` are the enclosing objects' labels, outermost first.
pub fn cycle_text(levels_up: u32, ancestors: &[String]) -> String {
    let up = levels_up as usize + 1;
    let levels = if up == 1 { "1 level up".to_owned() } else { format!("{up} levels up") };
    match ancestors.len().checked_sub(up).and_then(|i| ancestors.get(i)) {
        Some(label) => format!("↻ back to the enclosing {label} ({levels})"),
        None => format!("↻ back to an enclosing object ({levels})"),
    }
}

#[cfg(test)]
mod tests {
    use psgate_shared::clixml::{decode_document, decode_message};

    use super::*;

    fn msg(xml: &str) -> Value {
        decode_message(xml.as_bytes()).expect("test message decodes")
    }

    #[test]
    fn scalars_are_leaves_with_their_tag() {
        let h = head(&Value::I32(5));
        assert_eq!((h.tag, h.tag_title, h.summary.as_str(), h.expandable), ("I32", "System.Int32", "5", false));
        let h = head(&Value::string("pwsh"));
        assert_eq!((h.tag, h.summary.as_str(), h.expandable), ("S", "\"pwsh\"", false));
        assert_eq!(head(&Value::Nil).summary, "$null");
    }

    #[test]
    fn long_strings_open_to_their_full_text() {
        let v = Value::string("line one\nline two");
        let h = head(&v);
        assert!(h.expandable);
        assert_eq!(h.summary, "\"line one↵line two\"");
        assert_eq!(expand(&v).text.as_deref(), Some("line one\nline two"));
    }

    #[test]
    fn control_characters_are_visible_in_summaries() {
        assert_eq!(visible("a\r\nb\nc\rd\te\u{0}"), "a↵b↵c↵d⇥e␀");
        let h = head(&Value::string("At line:1 char:1\r\n"));
        assert_eq!((h.summary.as_str(), h.expandable), ("\"At line:1 char:1↵\"", true));
        let long = head(&Value::string("x".repeat(CELL_CHARS + 1)));
        assert!(long.expandable);
        assert!(long.summary.ends_with("…\""));
    }

    #[test]
    fn an_object_shows_type_names_to_string_and_typed_properties() {
        let v = msg(concat!(
            r#"<Obj RefId="0"><TN RefId="0"><T>Deserialized.System.Diagnostics.Process</T><T>System.Object</T></TN>"#,
            r#"<ToString>System.Diagnostics.Process (pwsh)</ToString>"#,
            r#"<Props><I32 N="Id">42</I32><Obj N="MainModule" RefId="1"><ToString>pwsh.exe</ToString><Props><S N="FileName">C:\pwsh.exe</S></Props></Obj></Props>"#,
            r#"<MS><S N="Note">n</S></MS></Obj>"#
        ));
        let h = head(&v);
        assert_eq!(h.type_name.as_deref(), Some("System.Diagnostics.Process"));
        assert_eq!(h.summary, "System.Diagnostics.Process (pwsh)");
        assert!(h.expandable);
        let e = expand(&v);
        assert_eq!(e.type_names, vec!["Deserialized.System.Diagnostics.Process", "System.Object"]);
        assert_eq!(e.to_string.as_deref(), Some("System.Diagnostics.Process (pwsh)"));
        let labels: Vec<_> = e.children.iter().map(|c| (c.label.as_str(), c.origin, c.value.tag())).collect();
        assert_eq!(
            labels,
            vec![
                ("Id", Origin::Adapted, "I32"),
                ("MainModule", Origin::Adapted, "Obj"),
                ("Note", Origin::Extended, "S")
            ]
        );
        let nested = expand(&e.children[1].value);
        assert_eq!(nested.children[0].label, "FileName");
        assert_eq!(head(&nested.children[0].value).summary, "\"C:\\pwsh.exe\"");
    }

    #[test]
    fn lists_and_dicts_open_to_their_items() {
        let v = msg(r#"<Obj RefId="0"><TN RefId="0"><T>System.Object[]</T></TN><LST><I32>1</I32><S>b</S></LST></Obj>"#);
        let h = head(&v);
        assert_eq!(h.container.as_deref(), Some("LST (2)"));
        assert_eq!(h.summary, "{1, b}");
        let e = expand(&v);
        assert_eq!(e.children.iter().map(|c| c.label.as_str()).collect::<Vec<_>>(), vec!["[0]", "[1]"]);

        let d = msg(concat!(
            r#"<Obj RefId="0"><DCT><En><S N="Key">name</S><S N="Value">x</S></En>"#,
            r#"<En><Obj N="Key" RefId="1"><MS><I32 N="k">1</I32></MS></Obj><I32 N="Value">2</I32></En></DCT></Obj>"#
        ));
        let e = expand(&d);
        assert_eq!(e.children[0].label, "name");
        assert_eq!(e.children[1].label, "[1]");
        let pair = expand(&e.children[1].value);
        assert_eq!(pair.children.iter().map(|c| c.label.as_str()).collect::<Vec<_>>(), vec!["Key", "Value"]);
    }

    #[test]
    fn an_enum_opens_to_its_value() {
        let v = msg(
            r#"<Obj RefId="0"><TN RefId="0"><T>System.ConsoleColor</T><T>System.Enum</T></TN><ToString>Red</ToString><I32>12</I32></Obj>"#,
        );
        assert_eq!(head(&v).summary, "Red");
        let e = expand(&v);
        assert_eq!((e.children[0].origin, e.children[0].value.clone()), (Origin::Wrapped, Value::I32(12)));
    }

    #[test]
    fn a_self_referencing_hashtable_is_a_finite_tree() {
        // $h = @{}; $h.Self = $h; $h | Export-Clixml
        let doc = decode_document(
            br#"<Objs><Obj RefId="0"><TN RefId="0"><T>System.Collections.Hashtable</T></TN><DCT><En><S N="Key">Self</S><Ref N="Value" RefId="0"/></En></DCT></Obj></Objs>"#,
        )
        .expect("decodes");
        let root = &doc.items[0].value;
        let e = expand(root);
        assert_eq!(e.children[0].value, Value::Cycle(0));
        let h = head(&e.children[0].value);
        assert_eq!((h.tag, h.expandable), ("Ref", false));
        let ancestors = vec![ancestor_label(root).expect("object")];
        assert_eq!(cycle_text(0, &ancestors), "↻ back to the enclosing System.Collections.Hashtable (1 level up)");
        assert_eq!(cycle_text(3, &ancestors), "↻ back to an enclosing object (4 levels up)");
    }

    #[test]
    fn progress_records_open_to_their_fields() {
        let doc = decode_document(
            br#"<Objs><PR><AV>Copy</AV><AI>2</AI><Nil/><PI>-1</PI><PC>50</PC><T>Processing</T><SR>9</SR><SD>half</SD></PR></Objs>"#,
        )
        .expect("decodes");
        let e = expand(&doc.items[0].value);
        let find = |l: &str| e.children.iter().find(|c| c.label == l).map(|c| c.value.clone());
        assert_eq!(find("PercentComplete"), Some(Value::I32(50)));
        assert_eq!(find("CurrentOperation"), Some(Value::Nil));
        assert_eq!(find("RecordType"), Some(Value::string("Processing")));
    }

    #[test]
    fn bytes_open_to_a_hex_dump() {
        let v = Value::Bytes(vec![0xde, 0xad, 0xbe, 0xef]);
        assert_eq!(head(&v).summary, "4 bytes: de ad be ef");
        assert_eq!(expand(&v).text.as_deref(), Some("de ad be ef"));
    }
}
