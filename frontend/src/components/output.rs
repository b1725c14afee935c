//! Output drawn like a PowerShell console: the blocks of [`crate::render::blocks::Layout`], each table or list
//! with a toolbar (Table / List / Members / Tree, Copy CSV / Copy JSON), coloured text, progress bars.
//!
//! Big blocks are virtualised: rows have a fixed height, a block scrolls inside a viewport of [`VIEW_ROWS`]
//! rows, and only the rows in view (and [`OVERSCAN`] either side) are in the DOM, between two spacers that
//! keep the scrollbar true; scrolling recomputes which. A table of 100,000 rows draws about 50.

use std::ops::Range;
use std::rc::Rc;

use psgate_shared::clixml::{Document, Item};
use yew::prelude::*;

use super::plural;
use super::tree::TreeNode;
use crate::render::ansi::Span;
use crate::render::blocks::{Block, Layout, Line, Objects, ProgressGroup, ProgressView, TextBlock};
use crate::render::export;
use crate::render::members::members;
use crate::render::shared::SharedRefs;
use crate::render::stream::Stream;
use crate::render::views::Format;

/// The height of a table row, a list line and a text line, in CSS pixels (style.css sets the same).
pub const ROW_PX: usize = 19;

/// The height of a table's heading row (style.css: `.format-table th`).
const HEADER_PX: usize = 23;

/// Rows a viewport shows before it scrolls.
pub const VIEW_ROWS: usize = 30;

/// Rows drawn beyond each edge of the viewport, so a small scroll shows rows already there.
pub const OVERSCAN: usize = 10;

/// Lines of text drawn whole (wrapping); longer texts are virtualised, one line per row.
const TEXT_WHOLE: usize = 200;

/// Blocks drawn at once, the newest; "Show earlier" adds as many again.
const BLOCKS_SHOWN: usize = 500;

/// Tree items drawn at a time.
const TREE_PAGE: usize = 200;

/// Objects whose types Get-Member lists (the first ones: their types stand for the rest).
const MEMBER_ROWS: usize = 1000;

/// Props of [`Output`].
#[derive(Debug, Properties, PartialEq)]
pub struct OutputProps {
    /// The laid-out output.
    pub blocks: Layout,
}

/// A command's output (or a document's), block by block.
#[component]
pub fn Output(props: &OutputProps) -> Html {
    let shown = use_state(|| BLOCKS_SHOWN);
    let n = props.blocks.len();
    let skip = n.saturating_sub(*shown);
    let earlier = {
        let shown = shown.clone();
        Callback::from(move |_: MouseEvent| shown.set(*shown + BLOCKS_SHOWN))
    };
    html! {
        <>
            if skip > 0 {
                <button type="button" class="show-more" onclick={earlier}>{ format!("Show earlier output ({} not shown)", plural(skip, "block")) }</button>
            }
            { for props.blocks.iter().enumerate().skip(skip).map(|(i, b)| html! { <BlockView key={i} block={b.clone()} /> }) }
        </>
    }
}

/// Props of [`BlockView`].
#[derive(Debug, Properties, PartialEq)]
pub struct BlockProps {
    /// The block.
    pub block: Block,
}

/// One block.
#[component]
pub fn BlockView(props: &BlockProps) -> Html {
    match &props.block {
        Block::Objects(o) => html! { <ObjectsView objects={o.clone()} /> },
        Block::Text(t) => html! { <Viewport content={Content::Text(t.clone())} /> },
        Block::Progress(g) => progress_group(g),
    }
}

/// How a block of objects is shown.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Table,
    List,
    Members,
    Tree,
}

impl Mode {
    /// Its name, as the block's `data-mode`.
    fn name(self) -> &'static str {
        match self {
            Mode::Table => "table",
            Mode::List => "list",
            Mode::Members => "members",
            Mode::Tree => "tree",
        }
    }

    const ALL: [(Mode, &'static str, &'static str); 4] = [
        (Mode::Table, "Table", "view-table"),
        (Mode::List, "List", "view-list"),
        (Mode::Members, "Members", "view-members"),
        (Mode::Tree, "Tree", "view-tree"),
    ];
}

#[derive(Debug, Properties, PartialEq)]
struct ObjectsProps {
    objects: Objects,
}

/// Objects: the toolbar, then the table, list, members or tree.
#[component]
fn ObjectsView(props: &ObjectsProps) -> Html {
    let o = &props.objects;
    let default = if o.format == Format::List { Mode::List } else { Mode::Table };
    let mode = use_state_eq(|| None::<Mode>);
    let status = use_state_eq(String::new);
    let current = mode.unwrap_or(default);
    let buttons = Mode::ALL.iter().map(|&(m, label, class)| {
        let mode = mode.clone();
        let onclick = Callback::from(move |_: MouseEvent| mode.set(Some(m)));
        html! { <button type="button" class={classes!("view", class)} aria-pressed={(m == current).to_string()} {onclick}>{ label }</button> }
    });
    let copy = |what: &'static str, make: fn(&Objects) -> String| {
        let (objects, status) = (o.clone(), status.clone());
        Callback::from(move |_: MouseEvent| {
            let done = format!("copied {} as {what}", plural(objects.rows.len(), "row"));
            let status = status.clone();
            copy_text(make(&objects), Callback::from(move |r: Result<(), &'static str>| status.set(r.map_or_else(str::to_owned, |()| done.clone()))));
        })
    };
    let body = match current {
        // Keyed by mode: a new viewport, scrolled to the top, rather than the old one's scroll position.
        Mode::Table => html! { <Viewport key="table" content={Content::Table(o.clone())} /> },
        Mode::List => html! { <Viewport key="list" content={Content::List(o.clone())} /> },
        Mode::Members => members_view(o),
        Mode::Tree => html! { <TreeView objects={o.clone()} /> },
    };
    html! {
        <div class="block objects" data-mode={current.name()} data-rows={o.rows.len().to_string()}>
            if let Some(title) = &o.title { <div class="objects-title">{ title }</div> }
            <div class="output-toolbar" role="toolbar" aria-label="How to show these objects">
                { for buttons }
                <span class="toolbar-gap"></span>
                <button type="button" class="copy-csv" onclick={copy("CSV", export::csv)}>{ "Copy CSV" }</button>
                <button type="button" class="copy-json" onclick={copy("JSON", export::json)}>{ "Copy JSON" }</button>
                if !status.is_empty() { <span class="copy-status" role="status">{ (*status).clone() }</span> }
            </div>
            { body }
        </div>
    }
}

/// Puts text on the clipboard with the Clipboard API, then says how it went. The API exists only in secure
/// contexts (HTTPS, localhost): elsewhere `navigator.clipboard` is undefined, and calling it would throw.
fn copy_text(text: String, done: Callback<Result<(), &'static str>>) {
    let Some(clipboard) = web_sys::window().map(|w| w.navigator().clipboard()).filter(|c| !c.is_undefined()) else {
        return done.emit(Err("this page cannot use the clipboard (it needs HTTPS or localhost)"));
    };
    let promise = clipboard.write_text(&text);
    yew::platform::spawn_local(async move {
        let result = wasm_bindgen_futures::JsFuture::from(promise).await;
        done.emit(result.map(|_| ()).map_err(|_| "the browser did not allow the copy"));
    });
}

/// The rows of a virtualised viewport to draw, and the spacers' heights, for the first row in view.
fn window(first: usize, count: usize, per_row: usize) -> (Range<usize>, usize, usize) {
    let view = (VIEW_ROWS / per_row.max(1)).max(1);
    let start = first.saturating_sub(OVERSCAN).min(count);
    let end = (first + view + OVERSCAN).min(count).max(start);
    let px = ROW_PX * per_row.max(1);
    (start..end, start * px, (count - end) * px)
}

/// The scroll handler of a viewport: records which row (of `per_row` lines) is first in view.
fn on_scroll(first: &UseStateHandle<usize>, per_row: usize) -> Callback<Event> {
    let first = first.clone();
    Callback::from(move |e: Event| {
        if let Some(el) = e.target_dyn_into::<web_sys::Element>() {
            let top = usize::try_from(el.scroll_top()).unwrap_or(0);
            first.set(top / (ROW_PX * per_row.max(1)));
        }
    })
}

/// What a [`Viewport`] draws.
#[derive(Debug, PartialEq)]
enum Content {
    /// Objects as Format-Table.
    Table(Objects),
    /// Objects as Format-List.
    List(Objects),
    /// Lines of text.
    Text(TextBlock),
}

#[derive(Debug, Properties, PartialEq)]
struct ViewportProps {
    content: Content,
}

/// A table, a list or a text in a scrolling viewport that draws only the rows in view (a short text is drawn
/// whole instead, wrapping, as a `<pre>`).
#[component]
fn Viewport(props: &ViewportProps) -> Html {
    let first = use_state_eq(|| 0usize);
    let (count, per_row) = match &props.content {
        Content::Table(o) => (o.rows.len(), 1),
        Content::List(o) => (o.rows.len(), o.columns.len() + 1),
        Content::Text(t) => (t.len(), 1),
    };
    let (range, above, below) = window(*first, count, per_row);
    let onscroll = on_scroll(&first, per_row);
    match &props.content {
        Content::Table(o) => table(o, range, above, below, onscroll),
        Content::List(o) => list(o, range, above, below, onscroll),
        Content::Text(t) if count <= TEXT_WHOLE => whole_text(t),
        Content::Text(t) => text(t, range, above, below, onscroll),
    }
}

/// A spacer standing for the rows not drawn.
fn spacer(px: usize) -> Html {
    html! { if px > 0 { <div class="spacer" aria-hidden="true" style={format!("height: {px}px")}></div> } }
}

/// Format-Table: a fixed layout (widths from the view or the first rows), the rows in `range` drawn.
fn table(o: &Objects, range: Range<usize>, above: usize, below: usize, onscroll: Callback<Event>) -> Html {
    let rows = o.rows.slice(range);
    let last = o.columns.len().saturating_sub(1);
    let total: usize = o.columns.iter().map(|c| c.width() + 2).sum::<usize>() + if o.stream_column { 13 } else { 0 };
    let align = |right: bool| if right { "num" } else { "" };
    let cols = o.columns.iter().enumerate().map(|(i, c)| {
        let style = (i < last).then(|| format!("width: {}ch", c.width() + 2));
        html! { <col {style} /> }
    });
    let columns = (o.columns.len() + usize::from(o.stream_column)).to_string();
    let spacer_row = |px: usize| {
        html! { if px > 0 { <tr class="spacer" aria-hidden="true"><td colspan={columns.clone()} style={format!("height: {px}px")}></td></tr> } }
    };
    html! {
        <div class="viewport table-viewport" style={format!("max-height: {}px", HEADER_PX + VIEW_ROWS * ROW_PX + 2)} {onscroll}>
            <table class="format-table" style={format!("min-width: {total}ch")}>
                <colgroup>
                    if o.stream_column { <col style="width: 13ch" /> }
                    { for cols }
                </colgroup>
                <thead>
                    <tr>
                        if o.stream_column { <th>{ "Stream" }</th> }
                        { for o.columns.iter().map(|c| html! { <th class={align(c.right())}>{ c.heading() }</th> }) }
                    </tr>
                </thead>
                <tbody>
                    { spacer_row(above) }
                    { for rows.iter().map(|row| html! {
                        <tr class={row.stream.css_class()} data-item={row.item.to_string()}>
                            if o.stream_column { <td class="stream-name">{ row.stream.name() }</td> }
                            { for o.columns.iter().enumerate().map(|(i, c)| {
                                let text = o.cell(row, i);
                                html! { <td class={align(c.right())} title={text.clone()}>{ text }</td> }
                            }) }
                        </tr>
                    }) }
                    { spacer_row(below) }
                </tbody>
            </table>
        </div>
    }
}

/// Format-List: `Name : Value` lines, names padded, a blank line after each object; the objects in `range` drawn.
fn list(o: &Objects, range: Range<usize>, above: usize, below: usize, onscroll: Callback<Event>) -> Html {
    let rows = o.rows.slice(range);
    html! {
        <div class="viewport list-viewport" style={format!("max-height: {}px", (VIEW_ROWS + 1) * ROW_PX)} {onscroll}>
            <div class="format-list">
                { spacer(above) }
                { for rows.iter().map(|row| html! {
                    <div class={classes!("list-record", row.stream.css_class())} data-item={row.item.to_string()}>
                        { for o.list_lines(row).into_iter().map(|(name, value)| html! {
                            <div class="list-line"><span class="list-name">{ name }</span>{ " : " }<span class="list-value">{ value }</span></div>
                        }) }
                    </div>
                }) }
                { spacer(below) }
            </div>
        </div>
    }
}

/// Get-Member of the objects (the types among the first [`MEMBER_ROWS`]): per type, `TypeName: …` and a
/// Name / MemberType / Definition table.
fn members_view(o: &Objects) -> Html {
    let types = o.rows.with(|rows| members(rows.iter().take(MEMBER_ROWS).map(|r| &r.value)));
    html! {
        <div class="members">
            { for types.iter().map(|t| html! {
                <div class="members-type">
                    <div class="members-type-name">{ format!("TypeName: {}", t.type_name) }</div>
                    <table class="format-table members-table">
                        <thead><tr><th>{ "Name" }</th><th>{ "MemberType" }</th><th>{ "Definition" }</th></tr></thead>
                        <tbody>
                            { for t.members.iter().map(|m| html! {
                                <tr><td>{ &m.name }</td><td>{ m.member_type }</td><td>{ &m.definition }</td></tr>
                            }) }
                        </tbody>
                    </table>
                </div>
            }) }
        </div>
    }
}

/// The objects as expandable trees (the viewer's tree nodes), a page at a time.
#[component]
fn TreeView(props: &ObjectsProps) -> Html {
    let shown = use_state(|| TREE_PAGE);
    let items = use_memo(props.objects.rows.clone(), |rows| {
        let mut items: Vec<(usize, Option<Stream>, Item)> = Vec::new();
        rows.with(|rows| {
            for r in rows {
                // A dictionary's rows are its entries: one tree for the whole dictionary.
                if items.last().is_none_or(|(i, ..)| *i != r.item) {
                    let stream = (r.stream != Stream::Output).then(|| r.stream.clone());
                    items.push((r.item, stream, Item { stream: None, value: r.value.clone() }));
                }
            }
        });
        let doc = Document { clixml_header: false, items: items.iter().map(|(_, _, i)| i.clone()).collect() };
        (Rc::new(SharedRefs::of(&doc)), items)
    });
    let (shared, items) = &*items;
    let no_ancestors: Rc<Vec<String>> = Rc::default();
    let more = {
        let shown = shown.clone();
        Callback::from(move |_: MouseEvent| shown.set(*shown + TREE_PAGE))
    };
    html! {
        <div class="output-tree">
            <ul class="tree" role="tree">
                { for items.iter().take(*shown).map(|(index, stream, item)| html! {
                    <TreeNode
                        key={*index}
                        label={AttrValue::from(format!("#{index}"))}
                        stream={stream.clone()}
                        value={item.value.clone()}
                        shared={Rc::clone(shared)}
                        ancestors={Rc::clone(&no_ancestors)}
                    />
                }) }
            </ul>
            if items.len() > *shown {
                <button type="button" class="show-more" onclick={more}>{ format!("Show more ({} not shown)", plural(items.len() - *shown, "item")) }</button>
            }
        </div>
    }
}

/// A short text, whole: one `<pre>` that wraps, as the console prints it.
fn whole_text(t: &TextBlock) -> Html {
    let lines = t.slice(0..t.len());
    html! {
        <pre class={classes!("block", "message", t.stream.css_class())} data-item={t.item.to_string()}>
            { for lines.iter().enumerate().map(|(i, l)| html! { <>{ if i > 0 { "\n" } else { "" } }{ spans(l) }</> }) }
        </pre>
    }
}

/// A long text, one line per row, the lines in `range` drawn.
fn text(t: &TextBlock, range: Range<usize>, above: usize, below: usize, onscroll: Callback<Event>) -> Html {
    let lines = t.slice(range);
    html! {
        <div class={classes!("block", "viewport", "text-viewport", t.stream.css_class())} style={format!("max-height: {}px", VIEW_ROWS * ROW_PX)} {onscroll} data-item={t.item.to_string()}>
            { spacer(above) }
            { for lines.iter().map(|l| html! { <div class="text-line" data-item={l.item.to_string()}>{ spans(l) }</div> }) }
            { spacer(below) }
        </div>
    }
}

/// A line's styled runs.
fn spans(line: &Line) -> Html {
    html! {
        { for line.spans.iter().map(|s: &Span| if s.style.is_plain() {
            html! { { s.text.clone() } }
        } else {
            html! { <span class="styled" style={s.style.css()}>{ s.text.clone() }</span> }
        }) }
    }
}

fn progress_group(g: &ProgressGroup) -> Html {
    html! {
        <div class="block progress-group" data-item={g.item.to_string()}>
            { for g.bars.iter().map(progress) }
        </div>
    }
}

fn progress(p: &ProgressView) -> Html {
    let width = if p.completed { 100 } else { p.percent.unwrap_or(0) };
    let label = match (p.completed, p.percent) {
        (true, _) => "Completed".to_owned(),
        (false, Some(pc)) => format!("{pc} %"),
        (false, None) => String::new(),
    };
    let mut details: Vec<String> = Vec::new();
    if !p.status.is_empty() {
        details.push(p.status.clone());
    }
    if let Some(op) = &p.current_operation {
        details.push(op.clone());
    }
    if let Some(left) = p.time_left() {
        details.push(format!("{left} remaining"));
    }
    let class = classes!(
        "progress",
        p.completed.then_some("completed"),
        (p.percent.is_none() && !p.completed).then_some("indeterminate"),
        (p.depth > 0).then_some("child")
    );
    html! {
        <div {class} data-item={p.item.to_string()} data-activity={p.activity_id.to_string()} data-depth={p.depth.to_string()}
            style={(p.depth > 0).then(|| format!("margin-left: {}ch", 3 * p.depth))}>
            <div class="progress-activity">{ &p.activity }</div>
            <div
                class="progress-track"
                role="progressbar"
                aria-label={p.activity.clone()}
                aria-valuemin="0"
                aria-valuemax="100"
                aria-valuenow={p.percent.map(|pc| pc.to_string())}
            >
                <div class="progress-fill" style={format!("width: {width}%")}></div>
                <span class="progress-label">{ label }</span>
            </div>
            if !details.is_empty() { <div class="progress-status">{ details.join(" · ") }</div> }
        </div>
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_window_draws_the_rows_in_view_and_spaces_the_rest() {
        assert_eq!(window(0, 100_000, 1), (0..VIEW_ROWS + OVERSCAN, 0, (100_000 - VIEW_ROWS - OVERSCAN) * ROW_PX));
        let (range, above, below) = window(50_000, 100_000, 1);
        assert_eq!(range, 50_000 - OVERSCAN..50_000 + VIEW_ROWS + OVERSCAN);
        assert_eq!((above, below), ((50_000 - OVERSCAN) * ROW_PX, (100_000 - range.end) * ROW_PX));
        assert_eq!(above + below + range.len() * ROW_PX, 100_000 * ROW_PX, "the scroll height stays true");
        assert_eq!(window(99_999, 100_000, 1).0, 99_989..100_000);
        assert_eq!(window(10, 5, 1), (0..5, 0, 0), "a stale scroll position past the end draws what there is");
        let (range, above, _) = window(3, 100, 6);
        assert_eq!((range, above), (0..18, 0), "list entries of 6 lines: 5 in view");
    }
}
