//! The expandable object tree. A node computes its children only when opened ([`crate::render::tree`]).

use std::rc::Rc;

use psgate_shared::clixml::Value;
use yew::prelude::*;

use super::{DecodedProps, plural};
use crate::render::shared::SharedRefs;
use crate::render::stream::Stream;
use crate::render::tree::{Origin, ancestor_label, cycle_text, expand, head};

/// Children (or top-level items) drawn at a time; "Show more" adds as many again.
const PAGE: usize = 200;

/// Every item of the decoded input, as a tree.
#[component]
pub fn ObjectTree(props: &DecodedProps) -> Html {
    let shown = use_state(|| PAGE);
    let d = &props.decoded;
    let no_ancestors: Rc<Vec<String>> = Rc::default();
    let more = {
        let shown = shown.clone();
        Callback::from(move |_: MouseEvent| shown.set(*shown + PAGE))
    };
    html! {
        <section class="panel">
            <h2>{ "Objects" }</h2>
            <ul class="tree" role="tree" id="object-tree">
                { for d.document.items.iter().enumerate().take(*shown).map(|(i, item)| html! {
                    <TreeNode
                        key={i}
                        label={AttrValue::from(format!("#{i}"))}
                        stream={item.stream.as_deref().map(|s| Stream::from_attr(Some(s)))}
                        value={item.value.clone()}
                        shared={Rc::clone(&d.shared)}
                        ancestors={Rc::clone(&no_ancestors)}
                    />
                }) }
            </ul>
            if d.document.items.len() > *shown {
                <button type="button" class="show-more" onclick={more}>
                    { format!("Show more ({} not shown)", plural(d.document.items.len() - *shown, "item")) }
                </button>
            }
        </section>
    }
}

/// Props of [`TreeNode`].
#[derive(Debug, Properties, PartialEq)]
pub struct TreeNodeProps {
    /// `#0` for an item, the property name, `[i]` or the dictionary key below.
    pub label: AttrValue,
    /// Where the value comes from (none for top-level items).
    #[prop_or_default]
    pub origin: Option<Origin>,
    /// A top-level item's stream.
    #[prop_or_default]
    pub stream: Option<Stream>,
    /// The value.
    pub value: Value,
    /// The document's shared objects.
    pub shared: Rc<SharedRefs>,
    /// The enclosing objects' labels, outermost first, for naming where a cycle points.
    pub ancestors: Rc<Vec<String>>,
}

/// One value in the tree, closed until clicked.
#[component]
pub fn TreeNode(props: &TreeNodeProps) -> Html {
    let open = use_state(|| false);
    let shown = use_state(|| PAGE);
    let h = head(&props.value);
    let summary = match props.value {
        Value::Cycle(levels_up) => cycle_text(levels_up, &props.ancestors),
        _ => h.summary.clone(),
    };
    let shared = match &props.value {
        Value::Object(o) => props.shared.get(o),
        _ => None,
    };
    let toggle = {
        let open = open.clone();
        Callback::from(move |_: MouseEvent| open.set(!*open))
    };
    let keydown = {
        let open = open.clone();
        Callback::from(move |e: KeyboardEvent| {
            if e.key() == "Enter" || e.key() == " " {
                e.prevent_default();
                open.set(!*open);
            }
        })
    };
    let origin = props.origin.filter(|o| !o.badge().is_empty());
    let class = classes!(
        "node",
        props.stream.as_ref().map(Stream::css_class),
        matches!(props.value, Value::Cycle(_)).then_some("cycle")
    );
    let body = if h.expandable && *open { body(props, &shown) } else { Html::default() };
    html! {
        <li {class} role="treeitem" aria-expanded={h.expandable.then(|| open.to_string())}>
            <div
                class={classes!("node-head", h.expandable.then_some("expandable"))}
                tabindex={h.expandable.then_some("0")}
                onclick={h.expandable.then_some(toggle)}
                onkeydown={h.expandable.then_some(keydown)}
            >
                <span class="twisty" aria-hidden="true">{ if !h.expandable { "" } else if *open { "▾" } else { "▸" } }</span>
                <span class="node-label">{ &props.label }</span>
                if let Some(o) = origin { <span class="badge origin" title={o.title()}>{ o.badge() }</span> }
                if let Some(s) = &props.stream { <span class={classes!("badge", "stream", s.css_class())}>{ s.name() }</span> }
                <span class="tag" title={h.tag_title}>{ h.tag }</span>
                if let Some(t) = &h.type_name { <span class="type-name">{ t }</span> }
                if let Some(c) = &h.container { <span class="container">{ c }</span> }
                if let Some(s) = shared {
                    <span class="badge shared" title={format!("the same object is referenced in {} places", s.count)}>
                        { format!("shared #{}", s.id) }
                    </span>
                }
                <span class="node-summary">{ summary }</span>
            </div>
            { body }
        </li>
    }
}

fn body(props: &TreeNodeProps, shown: &UseStateHandle<usize>) -> Html {
    let e = expand(&props.value);
    let ancestors = match ancestor_label(&props.value) {
        Some(label) => {
            let mut a = (*props.ancestors).clone();
            a.push(label);
            Rc::new(a)
        }
        None => Rc::clone(&props.ancestors),
    };
    let more = {
        let shown = shown.clone();
        Callback::from(move |_: MouseEvent| shown.set(*shown + PAGE))
    };
    let hidden = e.children.len().saturating_sub(**shown);
    html! {
        <div class="node-body">
            if !e.type_names.is_empty() {
                <div class="meta">
                    <span class="meta-key">{ "TypeNames" }</span>
                    <ol class="type-names">{ for e.type_names.iter().map(|t| html! { <li>{ t }</li> }) }</ol>
                </div>
            }
            if let Some(s) = &e.to_string {
                <div class="meta"><span class="meta-key">{ "ToString" }</span><span class="meta-value">{ s }</span></div>
            }
            if let Some(t) = &e.text { <pre class="full-text">{ t }</pre> }
            if !e.children.is_empty() {
                <ul role="group">
                    { for e.children.into_iter().take(**shown).enumerate().map(|(i, c)| html! {
                        <TreeNode
                            key={i}
                            label={AttrValue::from(c.label)}
                            origin={Some(c.origin)}
                            value={c.value}
                            shared={Rc::clone(&props.shared)}
                            ancestors={Rc::clone(&ancestors)}
                        />
                    }) }
                </ul>
            }
            if hidden > 0 {
                <button type="button" class="show-more" onclick={more}>{ format!("Show more ({hidden} not shown)") }</button>
            }
        </div>
    }
}
