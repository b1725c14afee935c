//! CLIXML, PowerShell's object serialization (MS-PSRP 2.2.5): the value model, a decoder and an encoder.
//!
//! - [`decode_message`] / [`encode_message`]: one PSRP message body (no root).
//! - [`decode_document`] / [`encode_document`]: a stand-alone `<Objs>` document (Export-Clixml,
//!   `pwsh -OutputFormat xml`, with its optional `#< CLIXML` line and `S="…"` streams).
//! - [`json`]: the JSON shape the command line prints and reads.

mod decode;
mod encode;
mod error;
mod escape;
pub mod json;
mod primitive;
mod value;
pub(crate) mod xml;

pub use decode::{DEFAULT_MAX_DEPTH, Kind, Limits, decode_auto, kind_of, decode_document, decode_document_with, decode_message, decode_message_with};
pub use encode::{MAX_ENCODE_DEPTH, OBJS_NAMESPACE, encode_document, encode_message};
pub use error::{DecodeError, DecodeErrorKind, EncodeError, Position};
pub use escape::{escape, escape_into};
pub use primitive::{double_text, single_text};
pub use value::*;
