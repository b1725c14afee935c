//! psgate's protocol core.
//!
//! Architecture invariant: this crate does no IO (no sockets, files, clocks or randomness of its own)
//! and builds for `wasm32-unknown-unknown`; the relay and the browser both use it.
//!
//! - [`clixml`]: PowerShell's object serialization (MS-PSRP 2.2.5), decode and encode.
//! - [`psrp`]: the remoting protocol itself (fragments, messages).
//! - [`api`]: the browser↔relay WebSocket contract (the one module that derives `Serialize`).

pub mod api;
pub mod clixml;
pub mod psrp;

#[doc(hidden)]
pub mod fuzzing;
