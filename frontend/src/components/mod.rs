//! The Yew components: they draw [`crate::state::State`] and what [`crate::render`] computed, and turn
//! clicks and edits into [`crate::state::Action`]s. Only view state is local: tree nodes (open or closed) and
//! output blocks ([`output`]: table, list, members or tree; which rows are scrolled into view).

mod console;
mod editor;
mod embed;
pub mod output;
mod shell;
mod tree;
mod watch;

use std::rc::Rc;

use yew::prelude::*;

use crate::input::Failure;
use crate::state::{Decoded, Outcome, State};

pub use console::Console;
pub use shell::App;
pub use editor::Editor;
pub use tree::{ObjectTree, TreeNode};
pub use watch::WatchApp;

/// The other pages' bundle (`pages.html`, bin `psgate-pages`): `/viewer` is the CLIXML viewer, `/watch/` the watch
/// page. Pages of their own, so the console's download does not carry them.
#[component]
pub fn Pages() -> Html {
    let path = web_sys::window().and_then(|w| w.location().pathname().ok()).unwrap_or_default();
    if path.trim_end_matches('/') == "/viewer" { html! { <Viewer /> } } else { html! { <WatchApp /> } }
}

/// The CLIXML viewer (`/viewer`): paste a document, see it decoded.
#[component]
pub fn Viewer() -> Html {
    let state = use_reducer(State::default);
    let on_action = state.dispatcher().to_callback();
    let results = match &state.outcome {
        Outcome::Empty => html! {
            <p class="hint">
                { "Paste a CLIXML document (Export-Clixml, or " }<code>{ "pwsh -OutputFormat xml" }</code>
                { " output with its " }<code>{ "#< CLIXML" }</code>{ " line) or a single PSRP message body, or " }
                <strong>{ "Load sample" }</strong>{ ". It is decoded here in the browser; nothing is sent anywhere." }
            </p>
        },
        Outcome::Failed { kind, failure } => html! { <DecodeFailure kind={crate::input::kind_label(*kind)} failure={failure.clone()} /> },
        Outcome::Decoded(decoded) => html! {
            <>
                <Summary decoded={Rc::clone(decoded)} />
                <Console decoded={Rc::clone(decoded)} />
                <ObjectTree decoded={Rc::clone(decoded)} />
            </>
        },
    };
    html! {
        <>
            <header class="topbar">
                <span class="brand">{ "psgate" }</span>
                <span class="topbar-title">{ "CLIXML viewer" }</span>
                <a class="topbar-link" href="/">{ "Console" }</a>
            </header>
            <main class="layout">
                <Editor input={state.input.clone()} {on_action} />
                <div class="results" aria-live="polite">{ results }</div>
            </main>
        </>
    }
}

/// Props of the views of one decoded input.
#[derive(Debug, Properties, PartialEq)]
pub struct DecodedProps {
    /// The decoded input and its layout.
    pub decoded: Rc<Decoded>,
}

/// One line on what was decoded.
#[component]
fn Summary(props: &DecodedProps) -> Html {
    let d = &props.decoded;
    let n = d.document.items.len();
    let mut parts = vec![crate::input::kind_label(d.kind).to_owned(), plural(n, "object")];
    if d.document.clixml_header {
        parts.push("with the #< CLIXML line".to_owned());
    }
    if !d.shared.is_empty() {
        parts.push(format!("{} shared by reference", plural(d.shared.len(), "object")));
    }
    html! { <p class="summary-line" id="decode-summary">{ parts.join(" · ") }</p> }
}

/// `1 object`, `3 objects`.
pub(crate) fn plural(n: usize, noun: &str) -> String {
    if n == 1 { format!("1 {noun}") } else { format!("{n} {noun}s") }
}

#[derive(Debug, Properties, PartialEq)]
struct FailureProps {
    kind: &'static str,
    failure: Failure,
}

/// The codec's refusal: the message, the line and column, and the line itself with a caret.
#[component]
fn DecodeFailure(props: &FailureProps) -> Html {
    let f = &props.failure;
    let caret = format!("{}^", " ".repeat(f.caret));
    html! {
        <div class="decode-error" role="alert">
            <div class="decode-error-title">{ format!("This {} does not decode", props.kind) }</div>
            <div class="decode-error-message">{ &f.message }</div>
            <div class="decode-error-position">{ format!("line {}, column {}", f.line, f.column) }</div>
            <pre class="decode-error-excerpt">{ &f.excerpt }{ "\n" }<span class="caret">{ caret }</span></pre>
        </div>
    }
}
