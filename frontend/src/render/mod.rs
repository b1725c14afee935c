//! Pure rendering logic: no Yew, no DOM. The components in [`crate::components`] only draw what these
//! functions compute, so everything a user reads is tested natively here.
//!
//! - [`display`]: one value as a short cell string or its full text.
//! - [`stream`]: PowerShell's streams and how each is styled.
//! - [`blocks`]: a document laid out like a console: tables, coloured messages, progress bars.
//! - [`tree`]: the expandable tree: a node's head, and its children when opened.
//! - [`shared`]: which objects a document holds more than once.

pub mod blocks;
pub mod display;
pub mod shared;
pub mod stream;
pub mod tree;
