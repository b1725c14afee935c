//! psgate's browser console. At this stage: a CLIXML viewer that decodes in the browser.
//!
//! Code map:
//! - [`input`]: what the user pasted: document or single PSRP message, decoded with `psgate_shared::clixml`;
//!   a failure located for display.
//! - [`render`]: pure rendering logic (display strings, stream styles, Format-Table-like grouping, the tree
//!   model, shared-object bookkeeping). No Yew, no DOM: unit-tested natively.
//! - [`state`]: the page state as a `Reducible` reducer with an [`state::Action`] enum.
//! - [`components`]: dumb Yew components that draw the state; only the tree nodes keep local state (open or
//!   closed).
//!
//! Architecture invariant: everything outside `components` is plain Rust that builds and is tested natively;
//! decoding is the `psgate_shared` codec, never a second parser.

pub mod components;
pub mod input;
pub mod render;
pub mod state;

/// A small, realistic document to try the viewer with: `Get-Process | Select-Object …` output, a warning, a
/// verbose line, an error record and a progress record, as `pwsh -OutputFormat xml` would write them.
pub const SAMPLE: &str = include_str!("sample.clixml");
