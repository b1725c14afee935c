//! The PowerShell Remoting Protocol (MS-PSRP), sans-IO: bytes in, bytes and events out.
//!
//! - [`fragment`]: the fragment layer (MS-PSRP 2.2.4): split messages, reassemble them.
//! - [`message`]: the message header (MS-PSRP 2.2.1) and message types (2.2.2).

pub mod fragment;
pub mod message;
