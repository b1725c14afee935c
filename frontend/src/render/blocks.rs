//! The formatted view of a document, as a PowerShell console would print it: uniform objects as tables
//! (Format-Table), error records and the other streams as coloured text, progress records as bars.
//!
//! Like `Out-Default`, a new table starts whenever the shape of the objects changes, so a document that mixes
//! processes, a warning and an error shows a table, a line and a red block, in document order.

use psgate_shared::clixml::{Content, Document, Item, Object, ProgressRecord, ProgressRecordType, Value};

use super::display::{cell, is_numeric, scalar_text};
use super::stream::Stream;

/// One piece of the formatted view.
#[derive(Clone, Debug, PartialEq)]
pub enum Block {
    /// Consecutive objects with the same properties.
    Table(Table),
    /// A message: strings, error records, warnings and the like, already prefixed (`WARNING: `).
    Text(TextBlock),
    /// A progress record.
    Progress(ProgressView),
}

/// A Format-Table table.
#[derive(Clone, Debug, PartialEq)]
pub struct Table {
    /// Whether the rows' items carry a stream (`S="…"`): then the first column says which.
    pub stream_column: bool,
    /// The property columns, in the first object's order.
    pub columns: Vec<Column>,
    /// One per object (or per entry, for a hashtable).
    pub rows: Vec<Row>,
}

/// A table column.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Column {
    /// The property name.
    pub name: String,
    /// Every value is a number: right-aligned, as Format-Table does.
    pub numeric: bool,
}

/// A table row.
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    /// The item's index in the document.
    pub item: usize,
    /// Its stream.
    pub stream: Stream,
    /// One display string per column.
    pub cells: Vec<String>,
}

/// A message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TextBlock {
    /// The index of the (first) item it comes from.
    pub item: usize,
    /// The stream, which decides its colour.
    pub stream: Stream,
    /// The text, possibly several lines (`\n`).
    pub text: String,
}

/// A progress bar.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProgressView {
    /// The item's index in the document.
    pub item: usize,
    /// `ActivityId`: a later record of the same activity updates its bar.
    pub activity_id: i32,
    /// `Activity`
    pub activity: String,
    /// `StatusDescription` (may be empty).
    pub status: String,
    /// `CurrentOperation`, when there is one.
    pub current_operation: Option<String>,
    /// 0..=100, or `None` when unknown (-1).
    pub percent: Option<u8>,
    /// `SecondsRemaining`, when known.
    pub seconds_remaining: Option<u32>,
    /// A `Completed` record.
    pub completed: bool,
}

/// Lays a document out as blocks.
pub fn blocks(doc: &Document) -> Vec<Block> {
    let mut out: Vec<Block> = Vec::new();
    let mut table_key: Option<Vec<String>> = None;
    let mut last_text_mergeable = false;
    let mut bag_tables = Vec::new();
    for (index, item) in doc.items.iter().enumerate() {
        let stream = Stream::from_attr(item.stream.as_deref());
        let mergeable = matches!(item.value, Value::String(_));
        let kind = classify(item, &stream);
        if !matches!(kind, Kind::Bag(_)) {
            table_key = None;
        }
        match kind {
            Kind::Bag(obj) => {
                let key = shape(obj);
                let row = Row { item: index, stream, cells: Vec::new() };
                match out.last_mut() {
                    Some(Block::Table(t)) if table_key.as_ref() == Some(&key) => {
                        t.stream_column |= item.stream.is_some();
                        t.rows.push(row);
                    }
                    _ => {
                        bag_tables.push(out.len());
                        out.push(Block::Table(Table {
                            stream_column: item.stream.is_some(),
                            columns: columns(obj),
                            rows: vec![row],
                        }));
                        table_key = Some(key);
                    }
                }
                last_text_mergeable = false;
            }
            Kind::Dict(entries) => {
                out.push(Block::Table(dict_table(index, stream, item.stream.is_some(), entries)));
                last_text_mergeable = false;
            }
            Kind::Progress(view) => {
                let view = ProgressView { item: index, ..view };
                match out.last_mut() {
                    // The console shows one bar per activity and updates it: so does this view.
                    Some(Block::Progress(p)) if p.activity_id == view.activity_id => *p = view,
                    _ => out.push(Block::Progress(view)),
                }
                last_text_mergeable = false;
            }
            Kind::Message { stream, text } => {
                let text = text.replace("\r\n", "\n");
                match out.last_mut() {
                    // pwsh writes a long error line by line as separate <S S="Error"> items: join them again.
                    Some(Block::Text(t)) if mergeable && last_text_mergeable && t.stream == stream => {
                        if !t.text.ends_with('\n') {
                            t.text.push('\n');
                        }
                        t.text.push_str(&text);
                    }
                    _ => out.push(Block::Text(TextBlock { item: index, stream, text })),
                }
                last_text_mergeable = mergeable;
            }
        }
    }
    for i in bag_tables {
        if let Block::Table(t) = &mut out[i] {
            fill(t, doc);
        }
    }
    for block in &mut out {
        if let Block::Text(t) = block {
            let trimmed = t.text.trim_end().len();
            t.text.truncate(trimmed);
            t.text.insert_str(0, t.stream.prefix());
        }
    }
    out
}

enum Kind<'a> {
    /// A property bag, for a table.
    Bag(&'a Object),
    /// A hashtable: a Name/Value table of its own.
    Dict(&'a [(Value, Value)]),
    Progress(ProgressView),
    Message {
        stream: Stream,
        text: String,
    },
}

fn classify<'a>(item: &'a Item, stream: &Stream) -> Kind<'a> {
    let obj = match &item.value {
        Value::Progress(pr) => return Kind::Progress(from_record(pr)),
        Value::Object(o) => o,
        other => {
            let text = scalar_text(other).unwrap_or_else(|| cell(other));
            return Kind::Message { stream: stream.clone(), text };
        }
    };
    if let Some(view) = progress(obj) {
        return Kind::Progress(view);
    }
    if obj.is_type("System.Management.Automation.ErrorRecord")
        || (*stream == Stream::Error && obj.property("FullyQualifiedErrorId").is_some())
    {
        return Kind::Message { stream: Stream::Error, text: error_text(obj) };
    }
    if obj.is_type("System.Management.Automation.InformationalRecord") {
        let stream = informational_stream(obj).unwrap_or_else(|| stream.clone());
        let text = ["Message", "InformationalRecord_Message"]
            .into_iter()
            .find_map(|p| obj.property(p).and_then(text_of))
            .or_else(|| obj.to_string.as_deref().map(str::to_owned))
            .unwrap_or_default();
        return Kind::Message { stream, text };
    }
    if obj.is_type("System.Management.Automation.InformationRecord") || *stream != Stream::Output {
        let text = obj.to_string.as_deref().map(str::to_owned).unwrap_or_else(|| cell(&item.value));
        let stream = if *stream == Stream::Output { Stream::Information } else { stream.clone() };
        return Kind::Message { stream, text };
    }
    match &obj.content {
        Content::Dict(entries) => Kind::Dict(entries),
        Content::None if obj.properties().next().is_some() => Kind::Bag(obj),
        _ => Kind::Message { stream: stream.clone(), text: cell(&item.value) },
    }
}

/// A string property's text, or an object's ToString.
fn text_of(v: &Value) -> Option<String> {
    v.as_str().map(str::to_owned).or_else(|| v.as_object().and_then(|o| o.to_string.as_deref().map(str::to_owned)))
}

fn informational_stream(obj: &Object) -> Option<Stream> {
    [
        ("System.Management.Automation.WarningRecord", Stream::Warning),
        ("System.Management.Automation.VerboseRecord", Stream::Verbose),
        ("System.Management.Automation.DebugRecord", Stream::Debug),
    ]
    .into_iter()
    .find(|(t, _)| obj.is_type(t))
    .map(|(_, s)| s)
}

/// An error record as the console host prints it: the message, where it happened, then the category and
/// the error id. Works for both shapes: Export-Clixml (adapted `CategoryInfo`, `InvocationInfo`) and a PSRP
/// ERROR_RECORD (MS-PSRP 2.2.3.15: extended `ErrorCategory_Message`, `InvocationInfo_PositionMessage`).
fn error_text(obj: &Object) -> String {
    let message = obj
        .property("ErrorDetails_Message")
        .and_then(text_of)
        .or_else(|| obj.to_string.as_deref().map(str::to_owned))
        .or_else(|| {
            obj.property("Exception").and_then(Value::as_object).and_then(|e| e.property("Message")).and_then(text_of)
        })
        .unwrap_or_else(|| "error".to_owned());
    let mut text = message;
    let position = obj
        .property("InvocationInfo")
        .and_then(Value::as_object)
        .and_then(|i| i.property("PositionMessage"))
        .or_else(|| obj.property("InvocationInfo_PositionMessage"))
        .and_then(text_of);
    if let Some(p) = position.filter(|p| !p.is_empty()) {
        text.push('\n');
        text.push_str(&p);
    }
    let category = obj
        .property("CategoryInfo")
        .map(cell)
        .or_else(|| obj.property("ErrorCategory_Message").and_then(text_of))
        .filter(|c| !c.is_empty());
    if let Some(c) = category {
        text.push_str("\n    + CategoryInfo          : ");
        text.push_str(&c);
    }
    if let Some(id) = obj.property("FullyQualifiedErrorId").and_then(text_of) {
        text.push_str("\n    + FullyQualifiedErrorId : ");
        text.push_str(&id);
    }
    text
}

/// A progress record wrapped in an object (`pwsh` writes `{SourceId, Record}` to its progress stream), or a
/// PSRP PROGRESS_RECORD message (MS-PSRP 2.2.2.25: `Activity`, `PercentComplete`, … as extended properties).
fn progress(obj: &Object) -> Option<ProgressView> {
    if let Some(pr) = obj.properties().find_map(|p| match &p.value {
        Value::Progress(pr) => Some(pr),
        _ => None,
    }) {
        return Some(from_record(pr));
    }
    let activity = obj.property("Activity")?.as_str()?;
    let percent = obj.property("PercentComplete")?.as_i64()?;
    let activity_id = i32::try_from(obj.property("ActivityId")?.as_i64()?).ok()?;
    let text = |name| obj.property(name).and_then(Value::as_str).map(str::to_owned);
    let completed = obj
        .property("Type")
        .and_then(|t| {
            t.as_object()
                .and_then(|o| o.to_string.as_deref().map(str::to_owned))
                .or_else(|| t.as_str().map(str::to_owned))
        })
        .is_some_and(|t| t.eq_ignore_ascii_case("Completed"));
    Some(ProgressView {
        item: 0,
        activity_id,
        activity: activity.to_owned(),
        status: text("StatusDescription").unwrap_or_default().trim().to_owned(),
        current_operation: text("CurrentOperation").filter(|s| !s.trim().is_empty()),
        percent: u8::try_from(percent.clamp(-1, 100)).ok(),
        seconds_remaining: obj.property("SecondsRemaining").and_then(Value::as_i64).and_then(|s| u32::try_from(s).ok()),
        completed,
    })
}

fn from_record(pr: &ProgressRecord) -> ProgressView {
    ProgressView {
        item: 0,
        activity_id: pr.activity_id,
        activity: pr.activity.to_string(),
        status: pr.status_description.as_deref().unwrap_or_default().trim().to_owned(),
        current_operation: pr.current_operation.as_deref().map(str::to_owned).filter(|s| !s.trim().is_empty()),
        percent: u8::try_from(pr.percent_complete.clamp(-1, 100)).ok(),
        seconds_remaining: u32::try_from(pr.seconds_remaining).ok(),
        completed: pr.record_type == ProgressRecordType::Completed,
    }
}

/// What makes two objects fit one table: the same property names, in order, ignoring case.
fn shape(obj: &Object) -> Vec<String> {
    property_names(obj).map(|n| n.to_ascii_lowercase()).collect()
}

/// Property names in the order the formatter lists them, each once (an extended property hides an
/// adapted one of the same name, as [`Object::property`] resolves it).
fn property_names(obj: &Object) -> impl Iterator<Item = &str> {
    let mut seen: Vec<&str> = Vec::new();
    obj.properties().filter_map(move |p| {
        if seen.iter().any(|s| s.eq_ignore_ascii_case(&p.name)) {
            None
        } else {
            seen.push(&p.name);
            Some(p.name.as_str())
        }
    })
}

fn columns(obj: &Object) -> Vec<Column> {
    property_names(obj).map(|n| Column { name: n.to_owned(), numeric: false }).collect()
}

/// Fills a table's cells from its items (rows are collected first, so the columns are known).
fn fill(t: &mut Table, doc: &Document) {
    let mut numeric = vec![true; t.columns.len()];
    let mut any = vec![false; t.columns.len()];
    for row in &mut t.rows {
        let Some(obj) = doc.items[row.item].value.as_object() else { continue };
        for (i, col) in t.columns.iter().enumerate() {
            match obj.property(&col.name) {
                Some(v) if !v.is_nil() => {
                    any[i] = true;
                    numeric[i] &= is_numeric(v);
                    row.cells.push(cell(v));
                }
                _ => row.cells.push(String::new()),
            }
        }
    }
    for (i, col) in t.columns.iter_mut().enumerate() {
        col.numeric = any[i] && numeric[i];
    }
}

/// A hashtable prints as a Name/Value table.
fn dict_table(item: usize, stream: Stream, has_stream: bool, entries: &[(Value, Value)]) -> Table {
    let numeric = !entries.is_empty() && entries.iter().all(|(_, v)| is_numeric(v));
    Table {
        stream_column: has_stream,
        columns: vec![Column { name: "Name".into(), numeric: false }, Column { name: "Value".into(), numeric }],
        rows: entries
            .iter()
            .map(|(k, v)| Row { item, stream: stream.clone(), cells: vec![cell(k), cell(v)] })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use psgate_shared::clixml::decode_document;

    use super::*;

    fn doc(body: &str) -> Document {
        let xml = format!(
            "<Objs Version=\"1.1.0.1\" xmlns=\"http://schemas.microsoft.com/powershell/2004/04\">{body}</Objs>"
        );
        decode_document(xml.as_bytes()).expect("test document decodes")
    }

    fn bag(props: &str) -> String {
        format!("<Obj><TN><T>System.Management.Automation.PSCustomObject</T></TN><MS>{props}</MS></Obj>")
    }

    fn tables(blocks: &[Block]) -> Vec<&Table> {
        blocks.iter().filter_map(|b| if let Block::Table(t) = b { Some(t) } else { None }).collect()
    }

    fn texts(blocks: &[Block]) -> Vec<(&Stream, &str)> {
        blocks
            .iter()
            .filter_map(|b| if let Block::Text(t) = b { Some((&t.stream, t.text.as_str())) } else { None })
            .collect()
    }

    #[test]
    fn uniform_objects_make_one_table() {
        let d = doc(&[
            bag(r#"<S N="Name">a</S><I32 N="Size">10</I32>"#),
            bag(r#"<S N="name">b</S><I32 N="size">200</I32>"#),
        ]
        .concat());
        let b = blocks(&d);
        assert_eq!(b.len(), 1);
        let t = tables(&b)[0];
        assert!(!t.stream_column);
        assert_eq!(
            t.columns,
            vec![Column { name: "Name".into(), numeric: false }, Column { name: "Size".into(), numeric: true }]
        );
        assert_eq!(t.rows[1].cells, vec!["b", "200"]);
        assert_eq!(t.rows[1].item, 1);
    }

    #[test]
    fn a_change_of_shape_starts_a_new_table() {
        let d = doc(&[
            bag(r#"<S N="Name">a</S>"#),
            bag(r#"<S N="Name">b</S><I32 N="Size">1</I32>"#),
            bag(r#"<S N="Name">c</S><I32 N="Size">2</I32>"#),
        ]
        .concat());
        let t = blocks(&d);
        let t = tables(&t);
        assert_eq!(t.len(), 2);
        assert_eq!(t[0].rows.len(), 1);
        assert_eq!(t[1].rows.len(), 2);
    }

    #[test]
    fn a_stream_column_when_items_carry_streams() {
        let one = bag(r#"<S N="Name">a</S>"#).replacen("<Obj>", "<Obj S=\"Output\">", 1);
        let d = doc(&[one, bag(r#"<S N="Name">b</S>"#)].concat());
        let b = blocks(&d);
        let t = tables(&b)[0];
        assert!(t.stream_column);
        assert_eq!(t.rows[0].stream, Stream::Output);
        assert_eq!(t.rows[0].cells, vec!["a"]);
    }

    #[test]
    fn missing_properties_and_nulls_are_empty_cells() {
        let d = doc(&[bag(r#"<S N="A">x</S><Nil N="B"/>"#), bag(r#"<S N="A">y</S><I32 N="B">1</I32>"#)].concat());
        let b = blocks(&d);
        let t = tables(&b)[0];
        assert_eq!(t.rows[0].cells, vec!["x", ""]);
        assert!(t.columns[1].numeric);
    }

    #[test]
    fn error_lines_written_one_per_item_are_joined() {
        let d = doc(concat!(
            r#"<S S="Error">fake : The term 'fake' is not recognized. Check _x000D__x000A_</S>"#,
            r#"<S S="Error">the spelling._x000D__x000A_</S>"#,
            r#"<S S="Error">    + FullyQualifiedErrorId : CommandNotFoundException_x000D__x000A_</S>"#,
            r#"<S S="Error"> _x000D__x000A_</S>"#,
        ));
        let b = blocks(&d);
        assert_eq!(
            texts(&b),
            vec![(
                &Stream::Error,
                "fake : The term 'fake' is not recognized. Check \nthe spelling.\n    + FullyQualifiedErrorId : CommandNotFoundException"
            )]
        );
    }

    #[test]
    fn streams_get_their_prefix_and_separate_lines() {
        let d =
            doc(r#"<S S="warning">careful</S><S S="verbose">doing it</S><S S="debug">x=1</S><S>out1</S><S>out2</S>"#);
        assert_eq!(
            texts(&blocks(&d)),
            vec![
                (&Stream::Warning, "WARNING: careful"),
                (&Stream::Verbose, "VERBOSE: doing it"),
                (&Stream::Debug, "DEBUG: x=1"),
                (&Stream::Output, "out1\nout2"),
            ]
        );
    }

    #[test]
    fn a_warning_record_is_a_warning_line() {
        let d = doc(concat!(
            r#"<Obj S="warning"><TN><T>System.Management.Automation.WarningRecord</T>"#,
            r#"<T>System.Management.Automation.InformationalRecord</T><T>System.Object</T></TN>"#,
            r#"<ToString>low disk</ToString><Props><S N="Message">low disk</S></Props></Obj>"#
        ));
        assert_eq!(texts(&blocks(&d)), vec![(&Stream::Warning, "WARNING: low disk")]);
    }

    #[test]
    fn an_error_record_prints_like_the_console_host() {
        let d = doc(concat!(
            r#"<Obj S="Error"><TN><T>System.Management.Automation.ErrorRecord</T><T>System.Object</T></TN>"#,
            r#"<ToString>Cannot find path 'C:\x'.</ToString><Props>"#,
            r#"<Obj N="CategoryInfo"><ToString>ObjectNotFound: (C:\x:String) [Get-Item], ItemNotFoundException</ToString></Obj>"#,
            r#"<S N="FullyQualifiedErrorId">PathNotFound,Microsoft.PowerShell.Commands.GetItemCommand</S>"#,
            r#"<Obj N="InvocationInfo"><Props><S N="PositionMessage">At line:1 char:1</S></Props></Obj>"#,
            r#"</Props></Obj>"#
        ));
        assert_eq!(
            texts(&blocks(&d)),
            vec![(
                &Stream::Error,
                "Cannot find path 'C:\\x'.\nAt line:1 char:1\n    + CategoryInfo          : ObjectNotFound: (C:\\x:String) [Get-Item], ItemNotFoundException\n    + FullyQualifiedErrorId : PathNotFound,Microsoft.PowerShell.Commands.GetItemCommand"
            )]
        );
    }

    #[test]
    fn a_psrp_error_record_message_uses_its_extended_properties() {
        let d = doc(concat!(
            r#"<Obj><TN><T>System.Management.Automation.ErrorRecord</T></TN><ToString>boom</ToString><MS>"#,
            r#"<S N="ErrorCategory_Message">NotSpecified: (:) [], RuntimeException</S>"#,
            r#"<S N="FullyQualifiedErrorId">RuntimeException</S></MS></Obj>"#
        ));
        assert_eq!(
            texts(&blocks(&d))[0].1.lines().nth(1),
            Some("    + CategoryInfo          : NotSpecified: (:) [], RuntimeException")
        );
    }

    #[test]
    fn progress_records_become_bars() {
        let d = doc(concat!(
            r#"<Obj S="progress"><MS><I64 N="SourceId">1</I64><PR N="Record"><AV>Copying</AV><AI>0</AI><Nil/>"#,
            r#"<PI>-1</PI><PC>40</PC><T>Processing</T><SR>-1</SR><SD>2 of 5</SD></PR></MS></Obj>"#,
            r#"<PR><AV>Done</AV><AI>1</AI><S>last file</S><PI>-1</PI><PC>-1</PC><T>Completed</T><SR>3</SR><SD> </SD></PR>"#,
        ));
        let b = blocks(&d);
        assert_eq!(
            b,
            vec![
                Block::Progress(ProgressView {
                    item: 0,
                    activity_id: 0,
                    activity: "Copying".into(),
                    status: "2 of 5".into(),
                    current_operation: None,
                    percent: Some(40),
                    seconds_remaining: None,
                    completed: false,
                }),
                Block::Progress(ProgressView {
                    item: 1,
                    activity_id: 1,
                    activity: "Done".into(),
                    status: String::new(),
                    current_operation: Some("last file".into()),
                    percent: None,
                    seconds_remaining: Some(3),
                    completed: true,
                }),
            ]
        );
    }

    #[test]
    fn a_later_record_of_the_same_activity_updates_its_bar() {
        let pr = |pc: i32| {
            format!(
                "<PR><AV>Copying</AV><AI>7</AI><Nil/><PI>-1</PI><PC>{pc}</PC><T>Processing</T><SR>-1</SR><SD>x</SD></PR>"
            )
        };
        let d = doc(&[pr(10), pr(20), pr(30)].concat());
        let b = blocks(&d);
        assert_eq!(b.len(), 1);
        let Block::Progress(p) = &b[0] else { panic!("not a progress bar") };
        assert_eq!((p.item, p.percent), (2, Some(30)));
    }

    #[test]
    fn a_psrp_progress_record_message_is_a_bar() {
        let d = doc(concat!(
            r#"<Obj><MS><S N="Activity">Installing</S><I32 N="ActivityId">1</I32><S N="StatusDescription">step 1</S>"#,
            r#"<Nil N="CurrentOperation"/><I32 N="ParentActivityId">-1</I32><I32 N="PercentComplete">150</I32>"#,
            r#"<Obj N="Type"><ToString>Completed</ToString><I32>1</I32></Obj><I32 N="SecondsRemaining">-1</I32></MS></Obj>"#
        ));
        let Block::Progress(p) = &blocks(&d)[0] else { panic!("not a progress bar") };
        assert_eq!(
            (p.activity.as_str(), p.status.as_str(), p.percent, p.completed),
            ("Installing", "step 1", Some(100), true)
        );
    }

    #[test]
    fn a_hashtable_is_a_name_value_table() {
        let d = doc(
            r#"<Obj><TN><T>System.Collections.Hashtable</T></TN><DCT><En><S N="Key">a</S><I32 N="Value">1</I32></En></DCT></Obj>"#,
        );
        let b = blocks(&d);
        let t = tables(&b)[0];
        assert_eq!(t.columns.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(), vec!["Name", "Value"]);
        assert_eq!(t.rows[0].cells, vec!["a", "1"]);
    }

    #[test]
    fn scalars_in_the_output_stream_are_lines() {
        let d = doc(r#"<I32>42</I32><B>true</B>"#);
        assert_eq!(texts(&blocks(&d)), vec![(&Stream::Output, "42"), (&Stream::Output, "True")]);
    }

    #[test]
    fn the_sample_lays_out_as_a_console_would() {
        let (_, d) = crate::input::decode(crate::SAMPLE);
        let d = d.expect("the sample decodes");
        let b = blocks(&d);
        let kinds: Vec<&str> = b
            .iter()
            .map(|b| match b {
                Block::Table(_) => "table",
                Block::Text(t) => t.stream.name(),
                Block::Progress(_) => "progress",
            })
            .collect();
        assert_eq!(kinds, vec!["table", "Warning", "Verbose", "Error", "progress"]);
        let t = tables(&b)[0];
        assert_eq!(t.rows.len(), 3);
        assert_eq!(t.columns[0].name, "Id");
        assert!(t.columns[0].numeric);
        assert_eq!(t.rows[1].cells[..3], ["4242", "pwsh", "12.34375"]);
        assert_eq!(t.rows[1].cells[4], "2026-11-25 08:15:02");
        assert_eq!(t.rows[1].cells[5], "Normal");
        assert!(texts(&b)[2].1.contains("+ FullyQualifiedErrorId : NoProcessFoundForGivenName"));
    }
}
