//! The PowerShell Remoting Protocol (MS-PSRP), sans-IO: bytes in, bytes and events out.
//!
//! - [`fragment`]: the fragment layer (MS-PSRP 2.2.4): split messages, reassemble them.
//! - [`message`]: the message header (MS-PSRP 2.2.1) and message types (2.2.2).
//! - [`messages`]: the message bodies, built and read.
//! - [`host`]: host calls and their answers (MS-PSRP 2.2.2.15–16).
//! - [`crypto`]: the key exchange and SecureString.
//! - [`pool`]: the client runspace pool and its pipelines.
//! - [`outofproc`]: the out-of-process transport's framing and client driver (SSH, `pwsh -s`).

pub mod crypto;
pub mod fragment;
pub mod host;
pub mod message;
pub mod messages;
pub mod outofproc;
pub mod pool;
