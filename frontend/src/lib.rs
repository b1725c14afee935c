//! psgate's browser console (login, sessions, an Enter-PSSession-like console) and, at `/viewer`, a CLIXML viewer;
//! and the watch page (`/watch/`, a bundle of its own): a session shared with the user, and the audit for admins.
//!
//! Code map:
//! - [`api`]: the only code that talks to the relay (HTTP login, the one reconnecting WebSocket, re-attach).
//! - [`audit`]: the audit page's records and search, and a recorded session's replay as the console's actions.
//! - [`app`]: the console page's state as a reducer with an [`app::Action`] enum.
//! - [`embed`]: the embed page (`/embed`) and kiosk mode: the target, the embedded session, the `postMessage`
//!   events and the origins they may go to.
//! - [`input`]: what the user pasted: document or single PSRP message, decoded with `psgate_shared::clixml`;
//!   a failure located for display.
//! - [`render`]: pure rendering logic (display strings, stream styles, PowerShell's default views and
//!   table/list rule, incremental layout, ANSI colours, Get-Member, CSV/JSON export, the tree model,
//!   shared-object bookkeeping). No Yew, no DOM: unit-tested natively.
//! - [`state`]: the viewer's state as a `Reducible` reducer with an [`state::Action`] enum.
//! - [`components`]: dumb Yew components that draw the state; only view state is local (tree nodes open or
//!   closed, how an output block is shown and scrolled).
//!
//! Architecture invariant: everything outside `components` is plain Rust that builds and is tested natively;
//! decoding is the `psgate_shared` codec, never a second parser.

pub mod api;
pub mod audit;
pub mod app;
pub mod components;
pub mod embed;
pub mod input;
pub mod render;
pub mod state;

/// A small, realistic document to try the viewer with: `Get-Process | Select-Object …` output, a warning, a
/// verbose line, an error record and a progress record, as `pwsh -OutputFormat xml` would write them.
pub const SAMPLE: &str = include_str!("sample.clixml");
