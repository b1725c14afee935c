//! The formatted view: the blocks of [`crate::render::blocks`] drawn like a PowerShell console.

use yew::prelude::*;

use super::{DecodedProps, plural};
use crate::render::blocks::{Block, ProgressView, Table, TextBlock};

/// Rows drawn per table; the tree still holds every object.
const MAX_ROWS: usize = 1000;

/// The console-like view of a decoded input.
#[component]
pub fn Console(props: &DecodedProps) -> Html {
    html! {
        <section class="panel">
            <h2>{ "Formatted" }</h2>
            <div class="console" id="console">
                { for props.decoded.blocks.iter().map(block) }
            </div>
        </section>
    }
}

/// One block, drawn as the console shows it (also used by the session consoles).
pub(crate) fn block(b: &Block) -> Html {
    match b {
        Block::Table(t) => table(t),
        Block::Text(t) => text(t),
        Block::Progress(p) => progress(p),
    }
}

fn table(t: &Table) -> Html {
    let align = |numeric: bool| if numeric { "num" } else { "" };
    let hidden = t.rows.len().saturating_sub(MAX_ROWS);
    html! {
        <div class="table-wrap">
            <table class="format-table">
                <thead>
                    <tr>
                        if t.stream_column { <th>{ "Stream" }</th> }
                        { for t.columns.iter().map(|c| html! { <th class={align(c.numeric)}>{ &c.name }</th> }) }
                    </tr>
                </thead>
                <tbody>
                    { for t.rows.iter().take(MAX_ROWS).map(|row| html! {
                        <tr class={row.stream.css_class()} data-item={row.item.to_string()}>
                            if t.stream_column { <td class="stream-name">{ row.stream.name() }</td> }
                            { for row.cells.iter().zip(&t.columns).map(|(cell, c)| html! {
                                <td class={align(c.numeric)} title={cell.clone()}>{ cell }</td>
                            }) }
                        </tr>
                    }) }
                </tbody>
            </table>
            if hidden > 0 {
                <p class="more-rows">{ format!("… {} more (all of them are in the object tree)", plural(hidden, "row")) }</p>
            }
        </div>
    }
}

fn text(t: &TextBlock) -> Html {
    html! { <pre class={classes!("message", t.stream.css_class())} data-item={t.item.to_string()}>{ &t.text }</pre> }
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
    if let Some(s) = p.seconds_remaining {
        details.push(format!("{s} s remaining"));
    }
    let class = classes!(
        "progress",
        p.completed.then_some("completed"),
        (p.percent.is_none() && !p.completed).then_some("indeterminate")
    );
    html! {
        <div {class} data-item={p.item.to_string()}>
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
