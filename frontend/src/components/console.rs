//! The formatted view: the output of [`crate::render::blocks`] drawn like a PowerShell console
//! ([`super::output`]).

use yew::prelude::*;

use super::DecodedProps;
use super::output::{BlockView, Output};
use crate::render::blocks::Block;

/// The console-like view of a decoded input.
#[component]
pub fn Console(props: &DecodedProps) -> Html {
    html! {
        <section class="panel">
            <h2>{ "Formatted" }</h2>
            <div class="console" id="console">
                <Output blocks={props.decoded.blocks.clone()} />
            </div>
        </section>
    }
}

/// One block, drawn as the console shows it (also used by the session consoles).
pub(crate) fn block(b: &Block) -> Html {
    html! { <BlockView block={b.clone()} /> }
}
