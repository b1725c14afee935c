//! The page state: what is in the text box and what it decoded to. A pure reducer, tested natively.

use std::rc::Rc;

use psgate_shared::clixml::Document;
use yew::{AttrValue, Reducible};

use crate::input::{self, Failure, InputKind};
use crate::render::blocks::Layout;
use crate::render::shared::SharedRefs;

/// What the user can do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// The text box changed (typed, pasted).
    Edit(String),
    /// Put the built-in sample in the text box.
    LoadSample,
    /// Empty the text box.
    Clear,
}

/// The page state.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct State {
    /// The text box.
    pub input: AttrValue,
    /// What it decodes to.
    pub outcome: Outcome,
}

/// The result of decoding the text box.
#[derive(Clone, Debug, Default, PartialEq)]
pub enum Outcome {
    /// Nothing to decode (blank input).
    #[default]
    Empty,
    /// Decoded, with everything the views need computed once.
    Decoded(Rc<Decoded>),
    /// The codec refused it.
    Failed {
        /// Which decoder was used.
        kind: InputKind,
        /// What and where.
        failure: Failure,
    },
}

/// A decoded input and its views.
#[derive(Debug)]
pub struct Decoded {
    /// Document or message.
    pub kind: InputKind,
    /// The objects.
    pub document: Document,
    /// The console-like layout.
    pub blocks: Layout,
    /// The objects held more than once.
    pub shared: Rc<SharedRefs>,
}

/// Identity: one decode is one value. Comparing contents would walk the whole document on every render.
impl PartialEq for Decoded {
    fn eq(&self, other: &Self) -> bool {
        std::ptr::eq(self, other)
    }
}

impl Decoded {
    /// Lays out a decoded document.
    pub fn new(kind: InputKind, document: Document) -> Decoded {
        Decoded { kind, blocks: Layout::of(&document), shared: Rc::new(SharedRefs::of(&document)), document }
    }
}

impl State {
    /// The state for a text box holding `input`.
    pub fn with_input(input: String) -> State {
        let outcome = if input.trim().is_empty() {
            Outcome::Empty
        } else {
            match input::decode(&input) {
                (kind, Ok(doc)) => Outcome::Decoded(Rc::new(Decoded::new(kind, doc))),
                (kind, Err(e)) => Outcome::Failed { kind, failure: Failure::new(&input, &e) },
            }
        };
        State { input: input.into(), outcome }
    }
}

impl Reducible for State {
    type Action = Action;

    fn reduce(self: Rc<Self>, action: Action) -> Rc<Self> {
        let input = match action {
            Action::Edit(text) if *self.input == *text => return self,
            Action::Edit(text) => text,
            Action::LoadSample => crate::SAMPLE.to_owned(),
            Action::Clear => String::new(),
        };
        Rc::new(State::with_input(input))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(actions: impl IntoIterator<Item = Action>) -> Rc<State> {
        actions.into_iter().fold(Rc::new(State::default()), Reducible::reduce)
    }

    #[test]
    fn starts_empty() {
        assert_eq!(State::default().outcome, Outcome::Empty);
    }

    #[test]
    fn loading_the_sample_decodes_it() {
        let s = run([Action::LoadSample]);
        assert_eq!(&*s.input, crate::SAMPLE);
        let Outcome::Decoded(d) = &s.outcome else { panic!("the sample decodes: {:?}", s.outcome) };
        assert_eq!(d.kind, InputKind::Document);
        assert!(d.document.clixml_header);
        assert_eq!(d.document.items.len(), 7);
        assert_eq!(d.shared.len(), 1, "pwsh's Parent is a <Ref> to explorer");
    }

    #[test]
    fn a_malformed_edit_fails_with_a_position() {
        let s = run([Action::LoadSample, Action::Edit("<Objs>\n  <I32>1</I33>\n</Objs>".into())]);
        let Outcome::Failed { kind, failure } = &s.outcome else { panic!("fails: {:?}", s.outcome) };
        assert_eq!(*kind, InputKind::Document);
        assert_eq!(failure.line, 2);
        assert!(failure.message.contains("I33"), "{}", failure.message);
    }

    #[test]
    fn a_message_body_decodes_as_one_item() {
        let s = run([Action::Edit("\u{FEFF}<Obj RefId=\"0\"><MS><I32 N=\"x\">1</I32></MS></Obj>".into())]);
        let Outcome::Decoded(d) = &s.outcome else { panic!("decodes: {:?}", s.outcome) };
        assert_eq!(d.kind, InputKind::Message);
        assert_eq!(d.document.items.len(), 1);
    }

    #[test]
    fn clearing_and_blank_input_show_nothing() {
        assert_eq!(run([Action::LoadSample, Action::Clear]).outcome, Outcome::Empty);
        assert_eq!(run([Action::Edit("  \n ".into())]).outcome, Outcome::Empty);
    }

    #[test]
    fn an_unchanged_edit_keeps_the_decoded_state() {
        let s = run([Action::LoadSample]);
        let again = Rc::clone(&s).reduce(Action::Edit(crate::SAMPLE.to_owned()));
        assert!(Rc::ptr_eq(&s, &again));
    }
}
