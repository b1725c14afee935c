//! The formatted view of output, as a PowerShell console would print it: objects as tables or lists by
//! PowerShell's default formatting rules ([`super::views`]), error records, the other streams and Write-Host as
//! coloured text, progress records as bars.
//!
//! Like `Out-Default`, consecutive objects of one shape share a table (or list) and a new one starts whenever
//! the shape changes, so a document that mixes processes, a warning and an error shows a table, a line and a
//! red block, in document order. The progress bars stay after everything else, the way the console keeps them
//! out of the output.
//!
//! Layout is incremental: [`Layout::push`] formats one item and appends it to the last block when it fits, so a
//! command's n objects cost O(n) however they arrive, and cloning a layout (the page state is a reducer) is
//! O(number of blocks): the rows and lines live in [`Log`]s. Cells are computed when drawn: only the first
//! [`SAMPLE_ROWS`] rows of a table are formatted as they arrive, for its column widths and alignment.

use std::ops::Index;
use std::rc::Rc;

use psgate_shared::clixml::{Content, Document, Item, Object, ProgressRecord, ProgressRecordType, Value};

use super::ansi::{self, Color, Parser, Span, Style};
use super::display::{cell, is_numeric, scalar_text};
use super::log::Log;
use super::stream::Stream;
use super::views::{self, Align, DICTIONARY, Field, Format, Get};

/// Rows of a table formatted as they arrive, for its column widths and alignment (PowerShell too sizes a
/// table from its first objects). Beyond them, row 64, 128, 256, … are sampled too, so a column still widens
/// for values that grow (`object 4999` after `object 49`) at a cost of O(log n).
pub const SAMPLE_ROWS: usize = 50;

/// The widest a column without a width in its view is drawn, in characters.
pub const MAX_COLUMN_CHARS: usize = 40;

/// One piece of the formatted view.
#[derive(Clone, Debug, PartialEq)]
pub enum Block {
    /// Objects of one shape, as a table or a list.
    Objects(Objects),
    /// Lines of text of one stream: strings and other scalars, messages, Write-Host.
    Text(TextBlock),
    /// The progress bars.
    Progress(ProgressGroup),
}

/// Consecutive objects of one shape.
#[derive(Clone, Debug, PartialEq)]
pub struct Objects {
    /// Table or list, as PowerShell's default formatting chose.
    pub format: Format,
    /// A grouped view's heading (`Directory: C:\Users`).
    pub title: Option<String>,
    /// Whether the rows' items carry a stream (`S="…"`): then a table's first column says which.
    pub stream_column: bool,
    /// The columns (a list's lines), in order.
    pub columns: Rc<Vec<Column>>,
    /// One per object (per entry, for a dictionary).
    pub rows: Log<Row>,
    /// What another object must match to join.
    key: Rc<str>,
}

/// A column of a table (a line of a list).
#[derive(Clone, Debug, PartialEq)]
pub struct Column {
    /// What the view says of it.
    pub field: Field,
    /// The longest text among the sampled rows (and the heading), in characters.
    pub chars: usize,
    /// Whether every non-empty sampled value is a number (`None`: none seen yet).
    pub numeric: Option<bool>,
}

impl Column {
    fn new(field: Field) -> Column {
        Column { chars: field.heading.chars().count(), field, numeric: None }
    }

    /// The heading.
    pub fn heading(&self) -> &str {
        &self.field.heading
    }

    /// Right-aligned: by its view, or because its values are numbers (Format-Table's rule).
    pub fn right(&self) -> bool {
        match self.field.align {
            Align::Right => true,
            Align::Left => false,
            Align::Auto => self.numeric == Some(true),
        }
    }

    /// How wide to draw it, in characters: its view's width (never narrower than the heading), else what the
    /// sampled rows needed, at most [`MAX_COLUMN_CHARS`].
    pub fn width(&self) -> usize {
        match self.field.width {
            0 => self.chars.min(MAX_COLUMN_CHARS),
            w => usize::from(w).max(self.heading().chars().count()),
        }
    }
}

/// A table row (a list entry).
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    /// The item's index in the output.
    pub item: usize,
    /// Its stream.
    pub stream: Stream,
    /// The object.
    pub value: Value,
    /// For a dictionary's table: the entry.
    pub entry: Option<usize>,
}

impl Objects {
    /// The value a column shows for a row.
    pub fn value(&self, row: &Row, column: usize) -> Value {
        let Some(c) = self.columns.get(column) else { return Value::Nil };
        let entry = row.entry.and_then(|i| match row.value.as_object().map(|o| &o.content) {
            Some(Content::Dict(entries)) => entries.get(i),
            _ => None,
        });
        views::get(&row.value, &c.field.get, entry)
    }

    /// The text of a cell, as drawn: one line, escape sequences removed.
    pub fn cell(&self, row: &Row, column: usize) -> String {
        let text = cell(&self.value(row, column));
        match ansi::strip(&text) {
            std::borrow::Cow::Borrowed(_) => text,
            std::borrow::Cow::Owned(s) => s,
        }
    }

    /// Every cell of a row.
    pub fn cells(&self, row: &Row) -> Vec<String> {
        (0..self.columns.len()).map(|c| self.cell(row, c)).collect()
    }

    /// The cells of the row at `index` (empty when there is none).
    pub fn row_cells(&self, index: usize) -> Vec<String> {
        self.rows.get(index).map(|r| self.cells(&r)).unwrap_or_default()
    }

    /// The headings.
    pub fn headings(&self) -> Vec<&str> {
        self.columns.iter().map(Column::heading).collect()
    }

    /// How wide a list's names are padded (Format-List pads to the longest).
    pub fn name_width(&self) -> usize {
        self.columns.iter().map(|c| c.heading().chars().count()).max().unwrap_or(0)
    }

    /// A list entry's lines: `Name : Value`, names padded like Format-List.
    pub fn list_lines(&self, row: &Row) -> Vec<(String, String)> {
        let width = self.name_width();
        self.columns
            .iter()
            .enumerate()
            .map(|(i, c)| (format!("{:<width$}", c.heading()), self.cell(row, i)))
            .collect()
    }

    fn add(&mut self, row: Row) -> usize {
        let mut work = 1;
        if self.rows.len() < SAMPLE_ROWS || self.rows.len().is_power_of_two() {
            let texts: Vec<(String, Value)> = (0..self.columns.len()).map(|c| (self.cell(&row, c), self.value(&row, c))).collect();
            work += texts.len();
            for (column, (text, value)) in Rc::make_mut(&mut self.columns).iter_mut().zip(texts) {
                column.chars = column.chars.max(text.chars().count());
                if !value.is_nil() && !text.is_empty() {
                    let number = is_numeric(&value) || looks_numeric(&text);
                    column.numeric = Some(column.numeric.unwrap_or(true) && number);
                }
            }
        }
        self.rows.push(row);
        work
    }
}

/// Whether a computed cell is a number as the views print them (`-12`, `1,234.50`): right-aligned too.
fn looks_numeric(text: &str) -> bool {
    let digits = text.strip_prefix('-').unwrap_or(text);
    digits.bytes().next().is_some_and(|b| b.is_ascii_digit())
        && digits.bytes().all(|b| b.is_ascii_digit() || b == b',' || b == b'.')
        && digits.bytes().filter(|&b| b == b'.').count() <= 1
}

/// Lines of one stream.
#[derive(Clone, Debug, PartialEq)]
pub struct TextBlock {
    /// The index of the first item.
    pub item: usize,
    /// The stream, which decides its colour.
    pub stream: Stream,
    /// The finished lines.
    pub lines: Log<Line>,
    /// A line Write-Host `-NoNewline` left open: the next text continues it.
    pub open: Option<Line>,
    /// The escape-sequence style in effect at the end (it carries over to the next line, as in a terminal).
    style: Style,
}

/// A line of text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Line {
    /// The item it comes from.
    pub item: usize,
    /// Its runs of styled text.
    pub spans: Vec<Span>,
}

impl Line {
    /// The line's text.
    pub fn text(&self) -> String {
        ansi::text(&self.spans)
    }
}

impl TextBlock {
    /// How many lines it shows.
    pub fn len(&self) -> usize {
        self.lines.len() + usize::from(self.open.is_some())
    }

    /// Whether it shows none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The lines in `range` (clipped), the open one last.
    pub fn slice(&self, range: std::ops::Range<usize>) -> Vec<Line> {
        let mut lines = self.lines.slice(range.clone());
        if let Some(open) = self.open.as_ref().filter(|_| range.contains(&self.lines.len())) {
            lines.push(open.clone());
        }
        lines
    }

    /// Its text, lines joined with `\n`.
    pub fn text(&self) -> String {
        self.slice(0..self.len()).iter().map(Line::text).collect::<Vec<_>>().join("\n")
    }

    fn append(&mut self, item: usize, text: &str, host: Option<Style>, no_newline: bool) -> usize {
        let mut parser = Parser::new(host.unwrap_or(self.style));
        let text = text.strip_suffix('\n').unwrap_or(text);
        let text = text.strip_suffix('\r').unwrap_or(text);
        let mut count = 0;
        let mut segments = text.split('\n').peekable();
        while let Some(segment) = segments.next() {
            let spans = parser.line(segment);
            let line = match (count, self.open.take()) {
                (0, Some(mut open)) => {
                    open.spans.extend(spans);
                    open
                }
                (_, open) => {
                    if let Some(o) = open {
                        self.lines.push(o);
                    }
                    Line { item, spans }
                }
            };
            count += 1;
            if segments.peek().is_none() && no_newline {
                self.open = Some(line);
            } else {
                self.lines.push(line);
            }
        }
        if host.is_none() {
            self.style = parser.style;
        }
        count
    }
}

/// The progress bars, parents before their children.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProgressGroup {
    /// The item of the latest record.
    pub item: usize,
    /// The bars, each child after its parent (and the parent's earlier children).
    pub bars: Vec<ProgressView>,
}

/// A progress bar.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProgressView {
    /// The item's index in the output.
    pub item: usize,
    /// `ActivityId`: a later record of the same activity updates its bar.
    pub activity_id: i32,
    /// `ParentActivityId` (-1: a top-level activity).
    pub parent_id: i32,
    /// How deep it is drawn under its parents (0 at the top).
    pub depth: usize,
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

impl ProgressView {
    /// `SecondsRemaining` as the time left, `h:mm:ss`.
    pub fn time_left(&self) -> Option<String> {
        self.seconds_remaining.map(|s| format!("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60))
    }
}

impl ProgressGroup {
    /// Applies a record as the console does: a new activity gets a bar (under its parent when that is shown),
    /// a known one is updated; a completed child disappears with its own children, a completed top-level
    /// activity stays (or appears), shown as completed, without its children.
    pub fn update(&mut self, item: usize, mut view: ProgressView) {
        self.item = item;
        view.item = item;
        let at = self.bars.iter().position(|b| b.activity_id == view.activity_id);
        let parent = self
            .bars
            .iter()
            .position(|b| view.parent_id >= 0 && b.activity_id == view.parent_id && view.parent_id != view.activity_id);
        match (at, parent) {
            // A completed child goes, with its own children.
            (at, Some(_)) if view.completed => {
                if let Some(at) = at {
                    let end = self.subtree_end(at);
                    self.bars.drain(at..end);
                }
            }
            // A known activity is updated where it is; completed, it loses its children.
            (Some(at), _) => {
                if view.completed {
                    let end = self.subtree_end(at);
                    self.bars.drain(at + 1..end);
                }
                view.depth = self.bars[at].depth;
                self.bars[at] = view;
            }
            // A new child goes after its parent's other descendants, one level deeper.
            (None, Some(p)) => {
                view.depth = self.bars[p].depth + 1;
                let end = self.subtree_end(p);
                self.bars.insert(end, view);
            }
            (None, None) => {
                view.depth = 0;
                self.bars.push(view);
            }
        }
    }

    /// The index after the bar at `at` and all its descendants.
    fn subtree_end(&self, at: usize) -> usize {
        let depth = self.bars[at].depth;
        at + 1 + self.bars[at + 1..].iter().take_while(|b| b.depth > depth).count()
    }
}

/// Output laid out as blocks, built one item at a time.
#[derive(Clone, Debug, Default)]
pub struct Layout {
    blocks: Rc<Vec<Block>>,
    work: usize,
}

/// Equal when they show the same: O(1) for clones of one layout.
impl PartialEq for Layout {
    fn eq(&self, other: &Layout) -> bool {
        Rc::ptr_eq(&self.blocks, &other.blocks) || self.blocks == other.blocks
    }
}

impl Index<usize> for Layout {
    type Output = Block;

    fn index(&self, index: usize) -> &Block {
        &self.blocks[index]
    }
}

impl Layout {
    /// Lays out a whole document.
    pub fn of(doc: &Document) -> Layout {
        let mut layout = Layout::default();
        for (i, item) in doc.items.iter().enumerate() {
            layout.push(i, item);
        }
        layout
    }

    /// The blocks, in order.
    pub fn iter(&self) -> std::slice::Iter<'_, Block> {
        self.blocks.iter()
    }

    /// How many blocks.
    pub fn len(&self) -> usize {
        self.blocks.len()
    }

    /// Whether there is nothing to show.
    pub fn is_empty(&self) -> bool {
        self.blocks.is_empty()
    }

    /// How much formatting work all the pushes did (items classified, cells sampled, blocks copied): linear
    /// in the output, which the tests check.
    pub fn work(&self) -> usize {
        self.work
    }

    /// Formats the item at `index` of the output and adds it.
    pub fn push(&mut self, index: usize, item: &Item) {
        let stream = Stream::from_attr(item.stream.as_deref());
        self.work += 1;
        match classify(&item.value, &stream) {
            Kind::Each(values) => {
                for v in values {
                    let kind = match classify(v, &stream) {
                        Kind::Each(_) => text_kind(stream.clone(), cell(v)),
                        kind => kind,
                    };
                    self.add(index, &stream, item.stream.is_some(), v, kind);
                }
            }
            kind => self.add(index, &stream, item.stream.is_some(), &item.value, kind),
        }
    }

    fn add(&mut self, index: usize, stream: &Stream, explicit: bool, value: &Value, kind: Kind<'_>) {
        match kind {
            Kind::Nothing | Kind::Each(_) => {}
            Kind::Progress(view) => self.progress(index, view),
            Kind::Text(t) => self.text(index, t),
            Kind::Objects(shape) => {
                let rows: Vec<Row> = match &shape.entries {
                    Some(n) => (0..*n).map(|e| Row { item: index, stream: stream.clone(), value: value.clone(), entry: Some(e) }).collect(),
                    None => vec![Row { item: index, stream: stream.clone(), value: value.clone(), entry: None }],
                };
                self.objects(shape, explicit, rows);
            }
        }
    }

    /// The blocks, to change (copied when an older layout shares them: O(blocks), counted as work).
    fn blocks_mut(&mut self) -> &mut Vec<Block> {
        if Rc::strong_count(&self.blocks) > 1 {
            self.work += self.blocks.len();
        }
        Rc::make_mut(&mut self.blocks)
    }

    /// Where output goes: before the progress bars, which stay last.
    fn content_end(&self) -> usize {
        match self.blocks.last() {
            Some(Block::Progress(_)) => self.blocks.len() - 1,
            _ => self.blocks.len(),
        }
    }

    fn objects(&mut self, shape: Shape, explicit: bool, rows: Vec<Row>) {
        let end = self.content_end();
        let mut work = 0;
        let blocks = self.blocks_mut();
        let joins = end > 0 && matches!(&blocks[end - 1], Block::Objects(b) if *b.key == *shape.key);
        if !joins {
            let block = Objects {
                format: shape.format,
                title: shape.title,
                stream_column: false,
                columns: Rc::new(shape.fields.into_iter().map(Column::new).collect()),
                rows: Log::new(),
                key: shape.key.into(),
            };
            blocks.insert(end, Block::Objects(block));
        }
        let at = if joins { end - 1 } else { end };
        if let Block::Objects(b) = &mut blocks[at] {
            b.stream_column |= explicit;
            for row in rows {
                work += b.add(row);
            }
        }
        self.work += work;
    }

    fn text(&mut self, index: usize, t: TextKind) {
        let end = self.content_end();
        let blocks = self.blocks_mut();
        let joins = end > 0 && matches!(&blocks[end - 1], Block::Text(b) if b.stream == t.stream);
        if !joins {
            let block = TextBlock { item: index, stream: t.stream.clone(), lines: Log::new(), open: None, style: Style::default() };
            blocks.insert(end, Block::Text(block));
        }
        let at = if joins { end - 1 } else { end };
        let mut work = 0;
        if let Block::Text(b) = &mut blocks[at] {
            let text = format!("{}{}", t.stream.prefix(), t.text);
            work = b.append(index, &text, t.host, t.no_newline);
        }
        self.work += work;
    }

    fn progress(&mut self, index: usize, view: ProgressView) {
        let blocks = self.blocks_mut();
        match blocks.last_mut() {
            Some(Block::Progress(g)) => g.update(index, view),
            _ => {
                let mut g = ProgressGroup::default();
                g.update(index, view);
                blocks.push(Block::Progress(g));
            }
        }
        if matches!(blocks.last(), Some(Block::Progress(g)) if g.bars.is_empty()) {
            blocks.pop();
        }
    }
}

/// Lays a document out as blocks.
pub fn blocks(doc: &Document) -> Vec<Block> {
    Layout::of(doc).iter().cloned().collect()
}

/// What one value becomes.
enum Kind<'a> {
    /// An object (or a dictionary's entries) for a table or list.
    Objects(Shape),
    /// Text.
    Text(TextKind),
    /// A progress record.
    Progress(ProgressView),
    /// A collection in the output: each element is formatted (Out-Default enumerates).
    Each(&'a [Value]),
    /// `$null` in the output: nothing, as in PowerShell.
    Nothing,
}

/// How an object is shown.
struct Shape {
    /// Objects with the same key share a block.
    key: String,
    format: Format,
    title: Option<String>,
    fields: Vec<Field>,
    /// A dictionary: its number of entries, one row each.
    entries: Option<usize>,
}

/// A piece of text.
struct TextKind {
    stream: Stream,
    text: String,
    /// Write-Host's colours.
    host: Option<Style>,
    /// Write-Host `-NoNewline`.
    no_newline: bool,
}

fn text_kind(stream: Stream, text: String) -> Kind<'static> {
    Kind::Text(TextKind { stream, text, host: None, no_newline: false })
}

fn classify<'a>(value: &'a Value, stream: &Stream) -> Kind<'a> {
    let obj = match value {
        Value::Progress(pr) => return Kind::Progress(from_record(pr)),
        Value::Object(o) => o,
        Value::Nil if *stream == Stream::Output => return Kind::Nothing,
        // pwsh writes long error lines one <S S="Error"> at a time and ends with a blank one: not a line.
        Value::String(s) if *stream == Stream::Error && s.trim().is_empty() => return Kind::Nothing,
        other if *stream == Stream::Output => return format_value(other),
        other => return text_kind(stream.clone(), scalar_text(other).unwrap_or_else(|| cell(other))),
    };
    if let Some(view) = progress(obj) {
        return Kind::Progress(view);
    }
    if obj.is_type("System.Management.Automation.ErrorRecord")
        || (*stream == Stream::Error && obj.property("FullyQualifiedErrorId").is_some())
    {
        return text_kind(Stream::Error, error_text(obj));
    }
    if obj.is_type("System.Management.Automation.InformationalRecord") {
        let stream = informational_stream(obj).unwrap_or_else(|| stream.clone());
        let text = ["Message", "InformationalRecord_Message"]
            .into_iter()
            .find_map(|p| obj.property(p).and_then(text_of))
            .or_else(|| obj.to_string.as_deref().map(str::to_owned))
            .unwrap_or_default();
        return text_kind(stream, text);
    }
    if obj.is_type("System.Management.Automation.InformationRecord")
        || (*stream == Stream::Information && obj.property("MessageData").is_some())
    {
        return information(obj, value);
    }
    if *stream != Stream::Output {
        let text = obj.to_string.as_deref().map(str::to_owned).unwrap_or_else(|| cell(value));
        return text_kind(stream.clone(), text);
    }
    format_value(value)
}

/// An output value, by PowerShell's default formatting: a dictionary as a Name/Value table, a collection
/// element by element, a type with a built-in view by it, an object by its display properties (four or fewer:
/// a table; five or more: a list), anything else as its text.
fn format_value(value: &Value) -> Kind<'_> {
    if let Some(obj) = value.as_object() {
        match &obj.content {
            Content::Dict(entries) if entries.is_empty() => return Kind::Nothing,
            Content::Dict(entries) => {
                return Kind::Objects(Shape {
                    key: "dictionary".into(),
                    format: Format::Table,
                    title: None,
                    fields: DICTIONARY.to_vec(),
                    entries: Some(entries.len()),
                });
            }
            Content::List(_, items) => return Kind::Each(items),
            _ => {}
        }
    }
    // Format-Table and Format-List at psgate's prompt: the objects keep their properties, the first type name
    // says how to lay them out.
    let forced = value.as_object().and_then(|o| o.type_names().next()).and_then(|t| match t {
        "psgate.Format.Table" => Some(Format::Table),
        "psgate.Format.List" => Some(Format::List),
        _ => None,
    });
    if let Some(view) = views::view_for(value).filter(|_| forced.is_none()) {
        if view.format == Format::Text {
            let text = view.text.map(|c| c.eval(value)).unwrap_or(Value::Nil);
            return text_kind(Stream::Output, scalar_text(&text).unwrap_or_else(|| cell(&text)));
        }
        let title = view.group.and_then(|g| {
            let v = views::property(value, g.property).filter(|v| !v.is_nil())?;
            let path = cell(&v);
            let path = path.split_once("::").map_or(path.as_str(), |(_, p)| p).to_owned();
            Some(format!("{}: {path}", g.label))
        });
        let key = format!("view\u{1}{}\u{1}{}", view.name, title.as_deref().unwrap_or_default());
        return Kind::Objects(Shape { key, format: view.format, title, fields: view.fields.to_vec(), entries: None });
    }
    match value.as_object() {
        Some(obj) if matches!(obj.content, Content::None) && obj.properties().next().is_some() => {
            let names = views::display_property_set(obj).unwrap_or_else(|| property_names(obj).map(str::to_owned).collect());
            let format = forced.unwrap_or(if names.len() <= 4 { Format::Table } else { Format::List });
            let mut key = format!("{format:?}");
            for n in &names {
                key.push('\u{1}');
                key.push_str(&n.to_ascii_lowercase());
            }
            let fields = names
                .into_iter()
                .map(|n| Field { heading: n.clone().into(), get: Get::Property(n.into()), align: Align::Auto, width: 0 })
                .collect();
            Kind::Objects(Shape { key, format, title: None, fields, entries: None })
        }
        _ => text_kind(Stream::Output, scalar_text(value).unwrap_or_else(|| cell(value))),
    }
}

/// An InformationRecord: Write-Host's `HostInformationMessage` with its colours, else the message data's text.
fn information(obj: &Object, value: &Value) -> Kind<'static> {
    let data = obj.property("MessageData");
    let message = data.and_then(Value::as_object).filter(|m| {
        m.is_type("System.Management.Automation.HostInformationMessage")
            || (m.property("Message").is_some() && m.property("NoNewLine").is_some())
    });
    if let Some(m) = message {
        let text = m.property("Message").and_then(text_of).unwrap_or_default();
        let (fg, bg) = (m.property("ForegroundColor").and_then(console_color), m.property("BackgroundColor").and_then(console_color));
        let no_newline = m.property("NoNewLine").and_then(Value::as_bool).unwrap_or(false);
        let host = (fg.is_some() || bg.is_some()).then(|| Style::colors(fg, bg));
        return Kind::Text(TextKind { stream: Stream::Information, text, host, no_newline });
    }
    let text = match data {
        Some(d) => scalar_text(d).or_else(|| text_of(d)).unwrap_or_else(|| cell(d)),
        None => obj.to_string.as_deref().map(str::to_owned).unwrap_or_else(|| cell(value)),
    };
    text_kind(Stream::Information, text)
}

/// A `System.ConsoleColor`: an enum object, its number or its name.
fn console_color(v: &Value) -> Option<Color> {
    match v {
        Value::Object(o) => o
            .primitive()
            .and_then(Value::as_i64)
            .and_then(Color::console)
            .or_else(|| o.to_string.as_deref().and_then(Color::console_named)),
        Value::String(s) => Color::console_named(s),
        other => other.as_i64().and_then(Color::console),
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
        parent_id: obj.property("ParentActivityId").and_then(Value::as_i64).and_then(|p| i32::try_from(p).ok()).unwrap_or(-1),
        depth: 0,
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
        parent_id: pr.parent_activity_id,
        depth: 0,
        activity: pr.activity.to_string(),
        status: pr.status_description.as_deref().unwrap_or_default().trim().to_owned(),
        current_operation: pr.current_operation.as_deref().map(str::to_owned).filter(|s| !s.trim().is_empty()),
        percent: u8::try_from(pr.percent_complete.clamp(-1, 100)).ok(),
        seconds_remaining: u32::try_from(pr.seconds_remaining).ok(),
        completed: pr.record_type == ProgressRecordType::Completed,
    }
}

/// Property names in the order the formatter lists them, each once (an extended property hides an
/// adapted one of the same name, as [`Object::property`] resolves it). `PSStandardMembers` is not one, nor
/// is any member set (a nested `<MS N="…">`).
fn property_names(obj: &Object) -> impl Iterator<Item = &str> {
    let mut seen: Vec<&str> = Vec::new();
    obj.properties().filter_map(move |p| {
        if seen.iter().any(|s| s.eq_ignore_ascii_case(&p.name))
            || p.name.eq_ignore_ascii_case("PSStandardMembers")
            || p.value.is_member_set()
        {
            None
        } else {
            seen.push(&p.name);
            Some(p.name.as_str())
        }
    })
}

#[cfg(test)]
mod tests {
    use psgate_shared::clixml::{Property, decode_document};

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

    fn tables(blocks: &[Block]) -> Vec<&Objects> {
        blocks.iter().filter_map(|b| if let Block::Objects(t) = b { Some(t) } else { None }).collect()
    }

    fn texts(blocks: &[Block]) -> Vec<(&Stream, String)> {
        blocks.iter().filter_map(|b| if let Block::Text(t) = b { Some((&t.stream, t.text())) } else { None }).collect()
    }

    fn bars(blocks: &[Block]) -> Vec<(String, usize, Option<u8>, bool)> {
        match blocks.last() {
            Some(Block::Progress(g)) => g.bars.iter().map(|b| (b.activity.clone(), b.depth, b.percent, b.completed)).collect(),
            _ => Vec::new(),
        }
    }

    #[test]
    fn psgate_s_prompt_output_lays_out_like_powershells() {
        // A PSSession gets its view's eight columns, whatever its other properties.
        let session = r#"<Obj><TN><T>System.Management.Automation.Runspaces.PSSession</T><T>System.Object</T></TN><ToString>[PSSession]web</ToString><MS><I32 N="Id">1</I32><S N="Name">web</S><S N="Transport">WSMan</S><S N="ComputerName">srv02</S><S N="ComputerType">RemoteMachine</S><S N="State">Opened</S><S N="ConfigurationName">Microsoft.PowerShell</S><Nil N="InstanceId" /><S N="Availability">Available</S></MS></Obj>"#;
        let b = blocks(&doc(session));
        assert_eq!(tables(&b)[0].headings(), ["Id", "Name", "Transport", "ComputerName", "ComputerType", "State", "ConfigurationName", "Availability"]);
        // Format-List forces a list of the properties kept, Format-Table a table (of six, more than four).
        let list = r#"<Obj><TN><T>psgate.Format.List</T><T>System.Management.Automation.Runspaces.PSSession</T></TN><MS><I32 N="Id">1</I32><S N="State">Opened</S></MS></Obj>"#;
        assert_eq!(tables(&blocks(&doc(list)))[0].format, Format::List);
        let table = r#"<Obj><TN><T>psgate.Format.Table</T></TN><MS><S N="A">1</S><S N="B">1</S><S N="C">1</S><S N="D">1</S><S N="E">1</S><S N="F">1</S></MS></Obj>"#;
        let t = blocks(&doc(table));
        assert_eq!((tables(&t)[0].format, tables(&t)[0].headings().len()), (Format::Table, 6));
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
        assert_eq!(t.format, Format::Table);
        assert!(!t.stream_column);
        assert_eq!(t.headings(), ["Name", "Size"]);
        assert_eq!(t.columns.iter().map(Column::right).collect::<Vec<_>>(), [false, true], "numbers right-aligned");
        assert_eq!(t.row_cells(1), ["b", "200"]);
        assert_eq!(t.rows.get(1).map(|r| r.item), Some(1));
        assert_eq!(t.columns[1].width(), 4, "as wide as the heading and the widest sampled value");
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
    fn five_or_more_properties_make_a_list_with_padded_names() {
        let d = doc(&bag(r#"<S N="Name">a</S><I32 N="Id">1</I32><B N="Ok">true</B><S N="Description">long</S><Nil N="Path"/>"#));
        let b = blocks(&d);
        let t = tables(&b)[0];
        assert_eq!(t.format, Format::List);
        let row = t.rows.get(0).expect("a row");
        assert_eq!(
            t.list_lines(&row),
            [
                ("Name       ".to_owned(), "a".to_owned()),
                ("Id         ".to_owned(), "1".to_owned()),
                ("Ok         ".to_owned(), "True".to_owned()),
                ("Description".to_owned(), "long".to_owned()),
                ("Path       ".to_owned(), String::new()),
            ]
        );
        let four = doc(&bag(r#"<S N="A">a</S><S N="B">b</S><S N="C">c</S><S N="D">d</S>"#));
        assert_eq!(tables(&blocks(&four))[0].format, Format::Table);
    }

    #[test]
    fn a_default_display_property_set_decides_the_columns() {
        let set = r#"<Obj N="PSStandardMembers"><MS><Obj N="DefaultDisplayPropertySet"><LST><S>Name</S><S>Id</S></LST></Obj></MS></Obj>"#;
        let d = doc(&bag(&format!(r#"<S N="Name">a</S><I32 N="Id">1</I32><B N="Ok">true</B><S N="X">x</S><S N="Y">y</S>{set}"#)));
        let b = blocks(&d);
        let t = tables(&b)[0];
        assert_eq!((t.format, t.headings()), (Format::Table, vec!["Name", "Id"]));
    }

    #[test]
    fn a_default_display_property_set_in_a_member_set_decides_the_columns() {
        // PowerShell writes PSStandardMembers as a nested <MS N="…">; its members are note properties.
        let set = r#"<MS N="PSStandardMembers"><Obj N="DefaultDisplayPropertySet"><TN><T>System.String[]</T></TN><LST><S>Id</S><S>Name</S></LST></Obj></MS>"#;
        let six = r#"<S N="Name">a</S><I32 N="Id">1</I32><B N="Ok">true</B><S N="X">x</S><S N="Y">y</S><S N="Z">z</S>"#;
        let d = doc(&[bag(&format!("{six}{set}")), bag(&format!("{six}{set}"))].concat());
        let b = blocks(&d);
        let t = tables(&b);
        assert_eq!(t.len(), 1);
        assert_eq!((t[0].format, t[0].headings()), (Format::Table, vec!["Id", "Name"]));
        assert_eq!(t[0].row_cells(0), ["1", "a"]);
        // Without a display set, the six properties make a list, and no member set is one of them.
        let other = r#"<MS N="Custom"><S N="Note">n</S></MS>"#;
        let d = doc(&bag(&format!("{six}{other}<MS N=\"PSStandardMembers\" />")));
        let b = blocks(&d);
        let t = tables(&b)[0];
        assert_eq!(t.format, Format::List);
        let row = t.rows.get(0).expect("a row");
        assert_eq!(t.list_lines(&row).len(), 6);
    }

    #[test]
    fn an_imported_view_lays_out_its_columns_in_its_control() {
        // What psgate's prompt makes of an object whose type has a view in an import's format data: the view's
        // layout first among the type names, its columns as the display property set (here five: a table all the same).
        let set = |names: &str| format!(r#"<MS N="PSStandardMembers"><Obj N="DefaultDisplayPropertySet"><TN><T>System.Management.Automation.PSPropertySet</T><T>System.Object</T></TN><MS><Obj N="ReferencedPropertyNames"><TN><T>System.Object[]</T></TN><LST>{names}</LST></Obj></MS></Obj></MS>"#);
        let six = r#"<S N="Name">a</S><I32 N="Id">1</I32><B N="Ok">true</B><S N="X">x</S><S N="Y">y</S><S N="Z">z</S>"#;
        let obj = |layout: &str, names: &str| format!(r#"<Obj><TN><T>{layout}</T><T>Deserialized.Contoso.User</T><T>Deserialized.System.Object</T></TN><MS>{six}{}</MS></Obj>"#, set(names));
        let d = doc(&obj("psgate.Format.Table", "<S>Z</S><S>Y</S><S>X</S><S>Ok</S><S>Name</S>"));
        let b = blocks(&d);
        let t = tables(&b)[0];
        assert_eq!((t.format, t.headings()), (Format::Table, vec!["Z", "Y", "X", "Ok", "Name"]));
        let d = doc(&obj("psgate.Format.List", "<S>Id</S><S>Name</S>"));
        let b = blocks(&d);
        let t = tables(&b)[0];
        let row = t.rows.get(0).expect("a row");
        assert_eq!((t.format, t.list_lines(&row).len()), (Format::List, 2));
    }

    #[test]
    fn processes_use_their_view() {
        let p = |name: &str, id: i32| {
            format!(
                r#"<Obj><TN><T>System.Diagnostics.Process</T></TN><ToString>System.Diagnostics.Process ({name})</ToString><Props><I32 N="Id">{id}</I32><S N="ProcessName">{name}</S></Props><MS><I64 N="NPM">2048</I64><I64 N="PM">1048576</I64><I64 N="WS">3145728</I64><Db N="CPU">0.5</Db><I32 N="SI">1</I32></MS></Obj>"#
            )
        };
        let d = doc(&[p("svchost", 812), p("pwsh", 6020)].concat());
        let b = blocks(&d);
        assert_eq!(b.len(), 1);
        let t = tables(&b)[0];
        assert_eq!(t.headings(), ["NPM(K)", "PM(M)", "WS(M)", "CPU(s)", "Id", "SI", "ProcessName"]);
        assert_eq!(t.row_cells(1), ["2", "1.00", "3.00", "0.50", "6020", "1", "pwsh"]);
        assert!(t.columns[..6].iter().all(Column::right) && !t.columns[6].right());
        assert_eq!(t.columns.iter().map(Column::width).collect::<Vec<_>>()[..6], [7, 8, 10, 10, 7, 3]);
    }

    #[test]
    fn files_are_grouped_by_directory() {
        let f = |dir: &str, name: &str| {
            format!(
                r#"<Obj><TN><T>System.IO.FileInfo</T></TN><Props><S N="Name">{name}</S><I64 N="Length">1</I64></Props><MS><S N="Mode">-a---</S><S N="PSParentPath">Microsoft.PowerShell.Core\FileSystem::{dir}</S></MS></Obj>"#
            )
        };
        let d = doc(&[f("C:\\a", "1.txt"), f("C:\\a", "2.txt"), f("C:\\b", "3.txt")].concat());
        let b = blocks(&d);
        let t = tables(&b);
        assert_eq!(t.iter().map(|t| t.title.as_deref()).collect::<Vec<_>>(), [Some("Directory: C:\\a"), Some("Directory: C:\\b")]);
        assert_eq!(t[0].rows.len(), 2);
        assert_eq!(t[0].headings(), ["Mode", "LastWriteTime", "Length", "Name"]);
    }

    #[test]
    fn a_stream_column_when_items_carry_streams() {
        let one = bag(r#"<S N="Name">a</S>"#).replacen("<Obj>", "<Obj S=\"Output\">", 1);
        let d = doc(&[one, bag(r#"<S N="Name">b</S>"#)].concat());
        let b = blocks(&d);
        let t = tables(&b)[0];
        assert!(t.stream_column);
        assert_eq!(t.rows.get(0).map(|r| r.stream), Some(Stream::Output));
        assert_eq!(t.row_cells(0), ["a"]);
    }

    #[test]
    fn missing_properties_and_nulls_are_empty_cells() {
        let d = doc(&[bag(r#"<S N="A">x</S><Nil N="B"/>"#), bag(r#"<S N="A">y</S><I32 N="B">1</I32>"#)].concat());
        let b = blocks(&d);
        let t = tables(&b)[0];
        assert_eq!(t.row_cells(0), ["x", ""]);
        assert!(t.columns[1].right());
    }

    #[test]
    fn collections_are_enumerated() {
        let d = doc(r#"<Obj><TN><T>System.Object[]</T></TN><LST><I32>1</I32><S>two</S><Nil/></LST></Obj>"#);
        assert_eq!(texts(&blocks(&d)), vec![(&Stream::Output, "1\ntwo".to_owned())]);
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
                "fake : The term 'fake' is not recognized. Check \nthe spelling.\n    + FullyQualifiedErrorId : CommandNotFoundException".to_owned()
            )]
        );
    }

    #[test]
    fn streams_get_their_prefix_and_separate_lines() {
        let d =
            doc(r#"<S S="warning">careful</S><S S="verbose">doing it</S><S S="debug">x=1</S><S>out1</S><S>out2</S><Nil/>"#);
        assert_eq!(
            texts(&blocks(&d)),
            vec![
                (&Stream::Warning, "WARNING: careful".to_owned()),
                (&Stream::Verbose, "VERBOSE: doing it".to_owned()),
                (&Stream::Debug, "DEBUG: x=1".to_owned()),
                (&Stream::Output, "out1\nout2".to_owned()),
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
        assert_eq!(texts(&blocks(&d)), vec![(&Stream::Warning, "WARNING: low disk".to_owned())]);
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
                "Cannot find path 'C:\\x'.\nAt line:1 char:1\n    + CategoryInfo          : ObjectNotFound: (C:\\x:String) [Get-Item], ItemNotFoundException\n    + FullyQualifiedErrorId : PathNotFound,Microsoft.PowerShell.Commands.GetItemCommand".to_owned()
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
    fn write_host_draws_its_console_colours_and_joins_no_newline() {
        let host = |text: &str, no_newline: bool, fg: Option<(i32, &str)>| {
            let fg = fg.map_or(r#"<Nil N="ForegroundColor"/>"#.to_owned(), |(n, name)| {
                format!(r#"<Obj N="ForegroundColor"><TN><T>System.ConsoleColor</T><T>System.Enum</T></TN><ToString>{name}</ToString><I32>{n}</I32></Obj>"#)
            });
            format!(
                r#"<Obj S="Information"><MS><Obj N="MessageData"><TN><T>System.Management.Automation.HostInformationMessage</T></TN><ToString>{text}</ToString><Props><S N="Message">{text}</S><B N="NoNewLine">{no_newline}</B>{fg}<Nil N="BackgroundColor"/></Props></Obj><S N="Source">Write-Host</S></MS></Obj>"#
            )
        };
        let d = doc(&[host("red ", true, Some((12, "Red"))), host("plain", false, None), host("next", false, None)].concat());
        let b = blocks(&d);
        let Block::Text(t) = &b[0] else { panic!("text: {b:?}") };
        assert_eq!((t.stream.clone(), t.text()), (Stream::Information, "red plain\nnext".to_owned()));
        let first = t.lines.get(0).expect("a line");
        assert_eq!(first.spans[0], Span { text: "red ".into(), style: Style::colors(Some(Color::Palette(9)), None) });
        assert_eq!(first.spans[1], Span::plain("plain"));
        let open = doc(&host("prompt> ", true, None));
        let Block::Text(t) = &blocks(&open)[0] else { panic!("text") };
        assert_eq!((t.lines.len(), t.len(), t.text()), (0, 1, "prompt> ".to_owned()), "a line left open still shows");
    }

    #[test]
    fn write_information_shows_its_message_data() {
        let d = doc(r#"<Obj S="Information"><MS><S N="MessageData">note</S><S N="Source">Write-Information</S></MS></Obj>"#);
        assert_eq!(texts(&blocks(&d)), vec![(&Stream::Information, "note".to_owned())]);
    }

    #[test]
    fn escape_sequences_style_text_and_leave_cells_clean() {
        let d = doc("<S>_x001B_[32mgreen_x001B_[0m and _x001B_[1mbold_x001B_[22m_x001B_]0;title_x0007_</S>");
        let b = blocks(&d);
        let Block::Text(t) = &b[0] else { panic!("text") };
        let line = t.lines.get(0).expect("a line");
        assert_eq!(line.text(), "green and bold");
        assert_eq!(line.spans[0].style.fg, Some(Color::Palette(2)));
        assert!(line.spans[2].style.bold);
        let d = doc(&bag(r#"<S N="Name">_x001B_[31mred_x001B_[0m</S>"#));
        assert_eq!(tables(&blocks(&d))[0].row_cells(0), ["red"]);
    }

    #[test]
    fn progress_records_become_bars_after_the_output() {
        let d = doc(concat!(
            r#"<Obj S="progress"><MS><I64 N="SourceId">1</I64><PR N="Record"><AV>Copying</AV><AI>0</AI><Nil/>"#,
            r#"<PI>-1</PI><PC>40</PC><T>Processing</T><SR>-1</SR><SD>2 of 5</SD></PR></MS></Obj>"#,
            r#"<S>copied</S>"#,
            r#"<PR><AV>Done</AV><AI>1</AI><S>last file</S><PI>-1</PI><PC>-1</PC><T>Completed</T><SR>3</SR><SD> </SD></PR>"#,
        ));
        let b = blocks(&d);
        assert!(matches!(&b[0], Block::Text(_)), "the output first, the bars last: {b:?}");
        let Block::Progress(g) = &b[1] else { panic!("bars: {b:?}") };
        assert_eq!(g.bars.len(), 2);
        assert_eq!(
            (g.bars[1].activity.as_str(), g.bars[1].completed, g.bars[1].current_operation.as_deref(), g.bars[1].item),
            ("Done", true, Some("last file"), 2)
        );
        assert_eq!(
            g.bars[..1],
            [ProgressView {
                item: 0,
                activity_id: 0,
                parent_id: -1,
                depth: 0,
                activity: "Copying".into(),
                status: "2 of 5".into(),
                current_operation: None,
                percent: Some(40),
                seconds_remaining: None,
                completed: false,
            }]
        );
    }

    #[test]
    fn a_later_record_of_the_same_activity_updates_its_bar_and_tables_keep_growing() {
        let pr = |pc: i32| {
            format!(
                "<PR><AV>Copying</AV><AI>7</AI><Nil/><PI>-1</PI><PC>{pc}</PC><T>Processing</T><SR>-1</SR><SD>x</SD></PR>"
            )
        };
        let row = |n: i32| bag(&format!(r#"<I32 N="N">{n}</I32>"#));
        let d = doc(&[pr(10), row(1), pr(20), row(2), pr(30)].concat());
        let b = blocks(&d);
        assert_eq!(b.len(), 2);
        assert_eq!(tables(&b)[0].rows.len(), 2, "progress does not split a table");
        let Block::Progress(g) = &b[1] else { panic!("not a progress bar") };
        assert_eq!((g.bars.len(), g.bars[0].item, g.bars[0].percent), (1, 4, Some(30)));
    }

    #[test]
    fn nested_progress_is_indented_and_a_completed_child_disappears() {
        let pr = |activity: &str, id: i32, parent: i32, completed: bool, seconds: i32| {
            let t = if completed { "Completed" } else { "Processing" };
            format!("<PR><AV>{activity}</AV><AI>{id}</AI><Nil/><PI>{parent}</PI><PC>50</PC><T>{t}</T><SR>{seconds}</SR><SD>s</SD></PR>")
        };
        let d = doc(&[pr("Outer", 1, -1, false, 3725), pr("Inner", 2, 1, false, -1), pr("Other", 3, -1, false, -1), pr("Deeper", 4, 2, false, -1)].concat());
        let b = blocks(&d);
        assert_eq!(
            bars(&b),
            [
                ("Outer".to_owned(), 0, Some(50), false),
                ("Inner".to_owned(), 1, Some(50), false),
                ("Deeper".to_owned(), 2, Some(50), false),
                ("Other".to_owned(), 0, Some(50), false),
            ]
        );
        let Block::Progress(g) = &b[0] else { panic!("bars") };
        assert_eq!(g.bars[0].time_left().as_deref(), Some("1:02:05"));
        let d = doc(&[pr("Outer", 1, -1, false, -1), pr("Inner", 2, 1, false, -1), pr("Deeper", 4, 2, false, -1), pr("Inner", 2, 1, true, -1)].concat());
        assert_eq!(bars(&blocks(&d)), [("Outer".to_owned(), 0, Some(50), false)], "the child and its own child are gone");
        let d = doc(&[pr("Outer", 1, -1, false, -1), pr("Inner", 2, 1, false, -1), pr("Outer", 1, -1, true, -1)].concat());
        assert_eq!(bars(&blocks(&d)), [("Outer".to_owned(), 0, Some(50), true)], "a finished top-level activity shows as completed");
    }

    #[test]
    fn a_psrp_progress_record_message_is_a_bar() {
        let d = doc(concat!(
            r#"<Obj><MS><S N="Activity">Installing</S><I32 N="ActivityId">1</I32><S N="StatusDescription">step 1</S>"#,
            r#"<Nil N="CurrentOperation"/><I32 N="ParentActivityId">-1</I32><I32 N="PercentComplete">150</I32>"#,
            r#"<Obj N="Type"><ToString>Processing</ToString><I32>0</I32></Obj><I32 N="SecondsRemaining">61</I32></MS></Obj>"#
        ));
        let Block::Progress(g) = &blocks(&d)[0] else { panic!("not a progress bar") };
        let p = &g.bars[0];
        assert_eq!(
            (p.activity.as_str(), p.status.as_str(), p.percent, p.completed, p.time_left().as_deref()),
            ("Installing", "step 1", Some(100), false, Some("0:01:01"))
        );
    }

    #[test]
    fn a_hashtable_is_a_name_value_table() {
        let h = r#"<Obj><TN><T>System.Collections.Hashtable</T></TN><DCT><En><S N="Key">a</S><I32 N="Value">1</I32></En><En><S N="Key">b</S><I32 N="Value">22</I32></En></DCT></Obj>"#;
        let d = doc(&[h, h].concat());
        let b = blocks(&d);
        let t = tables(&b)[0];
        assert_eq!(t.headings(), ["Name", "Value"]);
        assert_eq!((t.rows.len(), t.row_cells(1)), (4, vec!["b".to_owned(), "22".to_owned()]));
        assert!(t.columns[1].right());
        let empty = doc(r#"<Obj><TN><T>System.Collections.Hashtable</T></TN><DCT></DCT></Obj>"#);
        assert!(blocks(&empty).is_empty());
    }

    #[test]
    fn scalars_in_the_output_stream_are_lines() {
        let d = doc(r#"<I32>42</I32><B>true</B>"#);
        assert_eq!(texts(&blocks(&d)), vec![(&Stream::Output, "42\nTrue".to_owned())]);
        let date = doc(r#"<DT>2026-11-25T08:15:02+01:00</DT><Version>1.2</Version>"#);
        let b = blocks(&date);
        assert_eq!(texts(&b), vec![(&Stream::Output, "Wednesday, November 25, 2026 8:15:02 AM".to_owned())]);
        assert_eq!(tables(&b)[0].row_cells(0), ["1", "2", "-1", "-1"]);
    }

    #[test]
    fn the_sample_lays_out_as_a_console_would() {
        let (_, d) = crate::input::decode(crate::SAMPLE);
        let d = d.expect("the sample decodes");
        let b = blocks(&d);
        let kinds: Vec<&str> = b
            .iter()
            .map(|b| match b {
                Block::Objects(o) if o.format == Format::Table => "table",
                Block::Objects(_) => "list",
                Block::Text(t) => t.stream.name(),
                Block::Progress(_) => "progress",
            })
            .collect();
        assert_eq!(kinds, vec!["list", "Warning", "Verbose", "Error", "progress"]);
        let t = tables(&b)[0];
        assert_eq!(t.rows.len(), 3);
        assert_eq!(t.headings()[..4], ["Id", "ProcessName", "CPU", "WorkingSet64"]);
        let pwsh = t.rows.get(1).expect("pwsh");
        let lines = t.list_lines(&pwsh);
        assert_eq!(lines[0], ("Id           ".to_owned(), "4242".to_owned()));
        assert_eq!(lines[4].1, "2026-11-25 08:15:02");
        assert_eq!(lines[5].1, "Normal");
        assert!(texts(&b)[2].1.contains("+ FullyQualifiedErrorId : NoProcessFoundForGivenName"));
    }

    #[test]
    fn layout_work_is_linear_while_every_version_stays_alive() {
        // The reducer's way: each message clones the state, pushes onto the clone, keeps the old one meanwhile.
        let object = |i: usize| Item {
            stream: None,
            value: Value::object(Object {
                extended: vec![
                    Property::new("Index", Value::I64(i as i64)),
                    Property::new("Name", Value::string(format!("object {i}"))),
                    Property::new("Even", Value::Bool(i.is_multiple_of(2))),
                ],
                ..Object::default()
            }),
        };
        let n = 100_000;
        let mut layout = Layout::default();
        for i in 0..n {
            let old = layout.clone();
            layout.push(i, &object(i));
            drop(old);
        }
        let Block::Objects(t) = &layout[0] else { panic!("a table") };
        assert_eq!((layout.len(), t.rows.len()), (1, n));
        assert_eq!(t.row_cells(n - 1), ["99999", "object 99999", "False"]);
        assert!(layout.work() <= 3 * n + 4 * (SAMPLE_ROWS + 20), "work {} for {n} items", layout.work());
        assert_eq!(t.columns[1].chars, "object 65536".len(), "later, wider values widen the column");
    }
}
