//! Pure rendering logic: no Yew, no DOM. The components in [`crate::components`] only draw what these
//! functions compute, so everything a user reads is tested natively here.
//!
//! - [`display`]: one value as a short cell string or its full text.
//! - [`stream`]: PowerShell's streams and how each is styled.
//! - [`views`]: PowerShell's default formatting: the built-in views of common types, and the table/list rule.
//! - [`blocks`]: output laid out like a console, incrementally: tables, lists, coloured text, progress bars.
//! - [`ansi`]: escape sequences and console colours as styled spans.
//! - [`members`]: Get-Member of output objects.
//! - [`export`]: a result table as CSV or JSON.
//! - [`log`]: the cheap-to-clone append-only list the layout keeps rows and lines in.
//! - [`tree`]: the expandable tree: a node's head, and its children when opened.
//! - [`shared`]: which objects a document holds more than once.

pub mod ansi;
pub mod blocks;
pub mod display;
pub mod export;
pub mod log;
pub mod members;
pub mod shared;
pub mod stream;
pub mod tree;
pub mod views;
