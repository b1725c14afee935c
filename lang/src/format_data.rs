//! Format data an import brings: the views `Get-FormatData` answers in the session (deserialized
//! `ExtendedTypeDefinition`s), read into [`FormatView`]s and applied where output reaches the console, so that
//! both renderers (the browser's and `psgate shell`'s) lay the types out as the server's views say; and written
//! back as a `.format.ps1xml` by Export-PSSession.
//!
//! A view's columns become the object's `PSStandardMembers.DefaultDisplayPropertySet`, and its control (table or
//! list) the layout type name Format-Table and Format-List use ([`FORMAT_TABLE`]); a column whose label differs
//! from its property, or whose value is a script block, becomes a note property named by the label. Script blocks
//! from a server run here only when they are pure expressions (`$_.Name`, `"{0:N2}" -f ($_.Size / 1GB)`): no
//! command, no script block, no assignment, so format data can never act on the user's sessions. Widths and
//! alignments are kept for the export; the renderers size columns to their content.

use psgate_shared::clixml::{Property, Value};

use crate::ast::{Element, Expr, ExprKind, Pipeline, Script, Statement, StringPart};
use crate::cmdlets::utility::{FORMAT_LIST, FORMAT_TABLE};
use crate::values::{self, text};

/// A view for one or more types: the first table or list view `Get-FormatData` gave for them.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FormatView {
    /// The view's name.
    pub name: String,
    /// The types it is for (without `Deserialized.`).
    pub types: Vec<String>,
    /// A list view (else a table).
    pub list: bool,
    /// The columns (a list's lines), in order.
    pub columns: Vec<FormatColumn>,
}

/// One column of a view.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FormatColumn {
    /// The heading: the label, else the property's name, else the script's text.
    pub label: String,
    /// Whether the label was given (a header's `Label`, a list item's `Label`).
    pub labelled: bool,
    /// Where its value comes from.
    pub source: Source,
    /// The header's width (0: none).
    pub width: u32,
    /// `Left`, `Center`, `Right` (empty: undefined).
    pub alignment: String,
}

/// Where a column's value comes from.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Source {
    /// A property.
    Property(String),
    /// A script block, its text.
    Script(String),
}

/// Reads `Get-FormatData`'s objects: per type, its first table or list view (wide and custom controls are
/// skipped: no renderer here lays them out).
pub fn read(definitions: &[Value]) -> Vec<FormatView> {
    let mut out = Vec::new();
    for definition in definitions {
        let mut types: Vec<String> = prop(definition, "TypeNames").map(values::enumerate).unwrap_or_default().iter().map(text).filter(|t| !t.is_empty()).collect();
        if types.is_empty() {
            types.extend(prop(definition, "TypeName").map(|t| text(&t)).filter(|t| !t.is_empty()));
        }
        let types: Vec<String> = types.into_iter().map(|t| t.strip_prefix("Deserialized.").map(str::to_owned).unwrap_or(t)).collect();
        if types.is_empty() {
            continue;
        }
        let views = prop(definition, "FormatViewDefinition").map(values::enumerate).unwrap_or_default();
        if let Some(view) = views.iter().find_map(|v| view_of(v, &types)) {
            out.push(view);
        }
    }
    out
}

fn prop(v: &Value, name: &str) -> Option<Value> {
    values::property(v, name).filter(|v| !v.is_nil())
}

fn prop_text(v: &Value, name: &str) -> String {
    prop(v, name).map(|v| text(&v)).unwrap_or_default()
}

fn view_of(definition: &Value, types: &[String]) -> Option<FormatView> {
    let control = prop(definition, "Control")?;
    let kind = control.as_object()?.type_names().find_map(|t| {
        let t = t.strip_prefix("Deserialized.").unwrap_or(t);
        match t {
            "System.Management.Automation.TableControl" => Some(false),
            "System.Management.Automation.ListControl" => Some(true),
            _ => None,
        }
    })?;
    let columns = if kind { list_items(&control) } else { table_columns(&control) };
    (!columns.is_empty()).then(|| FormatView { name: prop_text(definition, "Name"), types: types.to_vec(), list: kind, columns })
}

/// A `DisplayEntry`: a property or a script block.
fn entry(v: &Value) -> Option<Source> {
    let value = prop_text(v, "Value");
    if value.trim().is_empty() {
        return None;
    }
    Some(if prop_text(v, "ValueType").eq_ignore_ascii_case("ScriptBlock") { Source::Script(value) } else { Source::Property(value) })
}

fn column(label: String, source: Source, width: u32, alignment: String) -> FormatColumn {
    let labelled = !label.trim().is_empty();
    let label = if labelled {
        label
    } else {
        match &source {
            Source::Property(p) => p.clone(),
            Source::Script(s) => s.trim().to_owned(),
        }
    };
    FormatColumn { label, labelled, source, width, alignment }
}

fn alignment(v: &Value) -> String {
    match prop_text(v, "Alignment") {
        a if a.eq_ignore_ascii_case("Undefined") => String::new(),
        a => a,
    }
}

fn table_columns(control: &Value) -> Vec<FormatColumn> {
    let headers = prop(control, "Headers").map(values::enumerate).unwrap_or_default();
    let Some(row) = prop(control, "Rows").map(values::enumerate).unwrap_or_default().into_iter().next() else { return Vec::new() };
    let cells = prop(&row, "Columns").map(values::enumerate).unwrap_or_default();
    let mut out = Vec::new();
    for (i, cell) in cells.iter().enumerate() {
        let Some(source) = prop(cell, "DisplayEntry").and_then(|d| entry(&d)) else { continue };
        let header = headers.get(i);
        let label = header.map(|h| prop_text(h, "Label")).unwrap_or_default();
        let width = header.and_then(|h| prop(h, "Width")).and_then(|w| values::integer(&w)).and_then(|w| u32::try_from(w).ok()).unwrap_or(0);
        let align = match alignment(cell) {
            a if a.is_empty() => header.map(alignment).unwrap_or_default(),
            a => a,
        };
        out.push(column(label, source, width, align));
    }
    out
}

fn list_items(control: &Value) -> Vec<FormatColumn> {
    let entries = prop(control, "Entries").map(values::enumerate).unwrap_or_default();
    // The entry for any type (no EntrySelectedBy), else the first.
    let chosen = entries.iter().find(|e| prop(e, "EntrySelectedBy").is_none_or(|s| values::enumerate(s).is_empty())).or(entries.first());
    let Some(chosen) = chosen else { return Vec::new() };
    prop(chosen, "Items")
        .map(values::enumerate)
        .unwrap_or_default()
        .iter()
        .filter_map(|item| {
            let source = prop(item, "DisplayEntry").and_then(|d| entry(&d))?;
            Some(column(prop_text(item, "Label"), source, 0, String::new()))
        })
        .collect()
}

/// The view for a value's type, the newest import's first.
pub(crate) fn view_for<'a>(views: impl Iterator<Item = &'a FormatView>, value: &Value) -> Option<&'a FormatView> {
    let object = value.as_object()?;
    let names: Vec<&str> = object.type_names().map(|t| t.strip_prefix("Deserialized.").unwrap_or(t)).collect();
    if names.first().is_some_and(|t| *t == FORMAT_TABLE || *t == FORMAT_LIST) {
        return None;
    }
    let views: Vec<&FormatView> = views.collect();
    names.iter().find_map(|n| views.iter().find(|v| v.types.iter().any(|t| t.eq_ignore_ascii_case(n))).copied())
}

/// The object laid out as `view` says: its columns as the display property set (note properties for labels and
/// script blocks, computed by `eval`), the view's layout first among its type names. `eval` runs a pure
/// expression with `$_` set to the object; `None`: it could not.
pub(crate) fn apply(view: &FormatView, value: Value, eval: &mut dyn FnMut(&str, &Value) -> Option<Value>) -> Value {
    let Value::Object(shared) = &value else { return value };
    let mut object = (**shared).clone();
    let mut shown = Vec::new();
    for column in &view.columns {
        let computed = match &column.source {
            Source::Property(p) if !column.labelled || column.label.eq_ignore_ascii_case(p) => {
                shown.push(p.clone());
                continue;
            }
            Source::Property(p) => values::member(&value, p),
            Source::Script(s) if pure(s) => eval(s, &value).unwrap_or(Value::Nil),
            Source::Script(_) => Value::Nil,
        };
        object.extended.retain(|p| !p.name.eq_ignore_ascii_case(&column.label));
        object.extended.push(Property { name: column.label.as_str().into(), value: computed });
        shown.push(column.label.clone());
    }
    values::set_display_properties(&mut object, &shown.iter().map(String::as_str).collect::<Vec<_>>());
    let layout = if view.list { FORMAT_LIST } else { FORMAT_TABLE };
    let mut type_names: Vec<psgate_shared::clixml::Str> = vec![layout.into()];
    type_names.extend(object.type_names().map(Into::into));
    object.type_names = Some(type_names.into());
    Value::object(object)
}

/// Whether a format script block is a pure expression: statements that are single expressions made of values,
/// variables, members, indexes, methods and operators, with no command, assignment or script block in them.
pub fn pure(script: &str) -> bool {
    crate::parser::parse(script).is_ok_and(|s| pure_script(&s))
}

fn pure_script(s: &Script) -> bool {
    s.statements.iter().all(|st| match st {
        Statement::Pipeline(p) => pure_pipeline(p),
        Statement::Assign { .. } | Statement::Exit { .. } => false,
    })
}

fn pure_pipeline(p: &Pipeline) -> bool {
    matches!(p.elements.as_slice(), [Element::Expression(e)] if pure_expr(e))
}

fn pure_expr(e: &Expr) -> bool {
    match &e.kind {
        ExprKind::Int(_) | ExprKind::Double(_) | ExprKind::String(_) | ExprKind::BareWord(_) | ExprKind::Variable(_) => true,
        ExprKind::Expandable(parts) => parts.iter().all(|p| match p {
            StringPart::Text(_) | StringPart::Variable(_) => true,
            StringPart::SubExpression(s) => pure_script(s),
        }),
        ExprKind::Array(items) => items.iter().all(pure_expr),
        ExprKind::Paren(p) => pure_pipeline(p),
        ExprKind::SubExpression(s) | ExprKind::ArrayExpression(s) => pure_script(s),
        ExprKind::Hashtable(pairs) => pairs.iter().all(|(k, v)| pure_expr(k) && pure_pipeline(v)),
        ExprKind::ScriptBlock(_) => false,
        ExprKind::Member(x, _) | ExprKind::Unary(_, x) => pure_expr(x),
        ExprKind::Index(x, i) => pure_expr(x) && pure_expr(i),
        ExprKind::Method(x, _, args) => pure_expr(x) && args.iter().all(pure_expr),
        ExprKind::Binary(_, l, r) => pure_expr(l) && pure_expr(r),
    }
}

/// Views as a `.format.ps1xml` (PowerShell's format file schema), each selected by its types and their
/// `Deserialized.` names.
pub fn ps1xml(views: &[FormatView]) -> String {
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<Configuration>\n  <ViewDefinitions>\n");
    for view in views {
        out.push_str(&format!("    <View>\n      <Name>{}</Name>\n      <ViewSelectedBy>\n", xml(&view.name)));
        for t in &view.types {
            out.push_str(&format!("        <TypeName>{}</TypeName>\n        <TypeName>Deserialized.{}</TypeName>\n", xml(t), xml(t)));
        }
        out.push_str("      </ViewSelectedBy>\n");
        let value = |c: &FormatColumn| match &c.source {
            Source::Property(p) => format!("<PropertyName>{}</PropertyName>", xml(p)),
            Source::Script(s) => format!("<ScriptBlock>{}</ScriptBlock>", xml(s)),
        };
        if view.list {
            out.push_str("      <ListControl>\n        <ListEntries>\n          <ListEntry>\n            <ListItems>\n");
            for c in &view.columns {
                let label = if c.labelled { format!("<Label>{}</Label>", xml(&c.label)) } else { String::new() };
                out.push_str(&format!("              <ListItem>{label}{}</ListItem>\n", value(c)));
            }
            out.push_str("            </ListItems>\n          </ListEntry>\n        </ListEntries>\n      </ListControl>\n");
        } else {
            out.push_str("      <TableControl>\n        <TableHeaders>\n");
            for c in &view.columns {
                let mut header = String::new();
                if c.labelled {
                    header.push_str(&format!("<Label>{}</Label>", xml(&c.label)));
                }
                if c.width > 0 {
                    header.push_str(&format!("<Width>{}</Width>", c.width));
                }
                if !c.alignment.is_empty() {
                    header.push_str(&format!("<Alignment>{}</Alignment>", xml(&c.alignment)));
                }
                out.push_str(&format!("          <TableColumnHeader>{header}</TableColumnHeader>\n"));
            }
            out.push_str("        </TableHeaders>\n        <TableRowEntries>\n          <TableRowEntry>\n            <TableColumnItems>\n");
            for c in &view.columns {
                out.push_str(&format!("              <TableColumnItem>{}</TableColumnItem>\n", value(c)));
            }
            out.push_str("            </TableColumnItems>\n          </TableRowEntry>\n        </TableRowEntries>\n      </TableControl>\n");
        }
        out.push_str("    </View>\n");
    }
    out.push_str("  </ViewDefinitions>\n</Configuration>\n");
    out
}

fn xml(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c if (c as u32) < 0x20 && !matches!(c, '\t' | '\n' | '\r') => out.push_str(&format!("&#x{:X};", c as u32)),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_pure_expressions_are_run() {
        for ok in ["$_.Name", "\"{0:N2}\" -f ($_.Size / 1GB)", "$_.Name.ToUpper()", "@($_.A, $_.B)", "\"$($_.A) x\""] {
            assert!(pure(ok), "{ok}");
        }
        for bad in ["Get-PSSession | Remove-PSSession", "$x = 1", "$($_.A; Remove-PSSession -Id 1)", "{ 1 }", "$_.A | % { $_ }", "\"$(Get-PSSession)\"", "(Remove-PSSession 1)", "exit"] {
            assert!(!pure(bad), "{bad}");
        }
    }

    #[test]
    fn xml_text_is_escaped() {
        assert_eq!(xml("a<b & 'c'\u{1}"), "a&lt;b &amp; &apos;c&apos;&#x1;");
    }
}
