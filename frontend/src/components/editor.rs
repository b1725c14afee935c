//! The text box and its buttons.

use web_sys::HtmlTextAreaElement;
use yew::prelude::*;

use crate::state::Action;

/// Props of [`Editor`].
#[derive(Debug, Properties, PartialEq)]
pub struct EditorProps {
    /// The text box's content.
    pub input: AttrValue,
    /// Where edits and button presses go.
    pub on_action: Callback<Action>,
}

/// The text box, "Load sample" and "Clear".
#[component]
pub fn Editor(props: &EditorProps) -> Html {
    let oninput = props.on_action.reform(|e: InputEvent| {
        let area: HtmlTextAreaElement = e.target_unchecked_into();
        Action::Edit(area.value())
    });
    let load = props.on_action.reform(|_: MouseEvent| Action::LoadSample);
    let clear = props.on_action.reform(|_: MouseEvent| Action::Clear);
    html! {
        <section class="editor">
            <div class="editor-bar">
                <label for="clixml-input">{ "CLIXML document or PSRP message" }</label>
                <div class="buttons">
                    <button type="button" id="load-sample" onclick={load}>{ "Load sample" }</button>
                    <button type="button" id="clear" class="secondary" onclick={clear}>{ "Clear" }</button>
                </div>
            </div>
            <textarea
                id="clixml-input"
                spellcheck="false"
                autocomplete="off"
                placeholder={"#< CLIXML\n<Objs Version=\"1.1.0.1\" xmlns=\"http://schemas.microsoft.com/powershell/2004/04\">\n  …\n</Objs>"}
                value={props.input.clone()}
                {oninput}
            />
        </section>
    }
}
