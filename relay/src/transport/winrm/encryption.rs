//! MS-WSMV 2.2.9.1: the `multipart/encrypted` body that carries a sealed SOAP message over plain HTTP.
//!
//! Pure framing: bytes in, bytes out; the sealing itself (EncryptMessage/DecryptMessage) is the security context's
//! (`auth.rs`). A request or response body is one or more parts, each
//!
//! ```text
//! --Encrypted Boundary\r\n
//! \tContent-Type: application/HTTP-SPNEGO-session-encrypted\r\n
//! \tOriginalContent: type=application/soap+xml;charset=UTF-8;Length=<plaintext length>\r\n
//! --Encrypted Boundary\r\n
//! \tContent-Type: application/octet-stream\r\n
//! <u32 LE header length><header><sealed data>
//! ```
//!
//! then `--Encrypted Boundary--\r\n`. The header is the 16-byte NTLM signature, or the Kerberos wrap token's
//! leading part (RFC 4121, as SSPI's EncryptMessage splits it); the sealed data is as long as the plaintext (plus
//! the cipher's padding, which `Length` counts). Only CredSSP splits a message: over 16 KiB it goes as 16384-byte
//! chunks, one part each, under `multipart/x-multi-encrypted` (pypsrp `encryption.py`). Exchange writes a space
//! after the `--` of its boundaries; [`decode`] accepts that.

use std::fmt::Write as _;

/// The boundary Windows and pypsrp use (`Content-Type: …;boundary="Encrypted Boundary"`).
pub const BOUNDARY: &str = "Encrypted Boundary";
/// CredSSP seals messages in chunks of this size (pypsrp `WinRMEncryption.SIXTEEN_KB`).
pub const CREDSSP_CHUNK: usize = 16384;
/// The plaintext's type, as every part declares it.
const ORIGINAL_TYPE: &str = "application/soap+xml;charset=UTF-8";
/// A header longer than this is not a signature or a wrap token header: the body is corrupt.
const MAX_HEADER: usize = 64 * 1024;

/// The `protocol` of the `multipart/encrypted` content type: which security package sealed the parts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SealProtocol {
    /// NTLM, or SPNEGO (Negotiate) with NTLM or Kerberos inside: `application/HTTP-SPNEGO-session-encrypted`.
    Spnego,
    /// The raw `Kerberos` HTTP scheme: `application/HTTP-Kerberos-session-encrypted`.
    Kerberos,
    /// CredSSP (MS-CSSP, sealed by its TLS channel): `application/HTTP-CredSSP-session-encrypted`.
    CredSsp,
}

impl SealProtocol {
    /// The MIME type named in the content type and in each part.
    pub fn mime(self) -> &'static str {
        match self {
            Self::Spnego => "application/HTTP-SPNEGO-session-encrypted",
            Self::Kerberos => "application/HTTP-Kerberos-session-encrypted",
            Self::CredSsp => "application/HTTP-CredSSP-session-encrypted",
        }
    }

    /// The protocol a MIME type names (compared without regard to case, as HTTP media types are).
    pub fn from_mime(mime: &str) -> Option<Self> {
        [Self::Spnego, Self::Kerberos, Self::CredSsp].into_iter().find(|p| p.mime().eq_ignore_ascii_case(mime.trim()))
    }

    /// Whether a plaintext of `len` bytes goes as several chunks (`multipart/x-multi-encrypted`).
    pub fn is_multi(self, len: usize) -> bool {
        self == Self::CredSsp && len > CREDSSP_CHUNK
    }

    /// The pieces a plaintext is sealed in: one, or 16 KiB chunks for a long CredSSP message.
    pub fn chunks(self, plaintext: &[u8]) -> Vec<&[u8]> {
        if self.is_multi(plaintext.len()) { plaintext.chunks(CREDSSP_CHUNK).collect() } else { vec![plaintext] }
    }

    /// The request's `Content-Type` header for a plaintext of `len` bytes.
    pub fn content_type(self, len: usize) -> String {
        let multi = if self.is_multi(len) { "multipart/x-multi-encrypted" } else { "multipart/encrypted" };
        format!("{multi};protocol=\"{}\";boundary=\"{BOUNDARY}\"", self.mime())
    }
}

/// One sealed piece of a message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SealedPart {
    /// `Length=` of `OriginalContent`: the plaintext's length plus the cipher's padding.
    pub original_length: usize,
    /// The signature or wrap token header.
    pub header: Vec<u8>,
    /// The sealed data.
    pub sealed: Vec<u8>,
}

/// A `Content-Type` header that announces an encrypted body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EncryptedContentType {
    /// `multipart/x-multi-encrypted` rather than `multipart/encrypted`.
    pub multi: bool,
    /// The `protocol` parameter, if it names a known one.
    pub protocol: Option<SealProtocol>,
    pub boundary: String,
}

/// Why an encrypted body could not be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FramingError {
    #[error("the encrypted body has no part (no \"--{boundary}\" line)")]
    NoParts { boundary: String },
    #[error("part {part} of the encrypted body lacks the OriginalContent Length")]
    MissingLength { part: usize },
    #[error("part {part} of the encrypted body has an invalid Length {value:?}")]
    InvalidLength { part: usize, value: String },
    #[error("part {part} of the encrypted body has no application/octet-stream section")]
    MissingData { part: usize },
    #[error("part {part} of the encrypted body is cut short ({what})")]
    Truncated { part: usize, what: &'static str },
    #[error("part {part} of the encrypted body declares a {len}-byte header")]
    HeaderTooLong { part: usize, len: usize },
}

/// Reads a `Content-Type` value; `None` unless it is `multipart/encrypted` or `multipart/x-multi-encrypted` with a
/// boundary.
pub fn parse_content_type(value: &str) -> Option<EncryptedContentType> {
    let mut fields = value.split(';');
    let media = fields.next()?.trim();
    let multi = if media.eq_ignore_ascii_case("multipart/encrypted") {
        false
    } else if media.eq_ignore_ascii_case("multipart/x-multi-encrypted") {
        true
    } else {
        return None;
    };
    let (mut protocol, mut boundary) = (None, None);
    for field in fields {
        let Some((name, value)) = field.split_once('=') else { continue };
        let value = value.trim().trim_matches('"');
        match name.trim().to_ascii_lowercase().as_str() {
            "protocol" => protocol = SealProtocol::from_mime(value),
            "boundary" if !value.is_empty() => boundary = Some(value.to_owned()),
            _ => {}
        }
    }
    Some(EncryptedContentType { multi, protocol, boundary: boundary? })
}

/// The body for `parts` (in order), with the closing boundary.
pub fn encode(protocol: SealProtocol, parts: &[SealedPart]) -> Vec<u8> {
    let size = parts.iter().map(|p| 200 + p.header.len() + p.sealed.len()).sum::<usize>() + 32;
    let mut body = Vec::with_capacity(size);
    for part in parts {
        let mut text = String::with_capacity(200);
        // Writing to a String cannot fail.
        let _ = write!(
            text,
            "--{BOUNDARY}\r\n\tContent-Type: {}\r\n\tOriginalContent: type={ORIGINAL_TYPE};Length={}\r\n\
             --{BOUNDARY}\r\n\tContent-Type: application/octet-stream\r\n",
            protocol.mime(),
            part.original_length,
        );
        body.extend_from_slice(text.as_bytes());
        // A header is at most a few dozen bytes (MAX_HEADER is far below u32::MAX).
        let header_len = u32::try_from(part.header.len()).unwrap_or(u32::MAX);
        body.extend_from_slice(&header_len.to_le_bytes());
        body.extend_from_slice(&part.header);
        body.extend_from_slice(&part.sealed);
    }
    body.extend_from_slice(format!("--{BOUNDARY}--\r\n").as_bytes());
    body
}

/// The parts of an encrypted body. Never panics: any malformed body is a [`FramingError`].
pub fn decode(body: &[u8], boundary: &str) -> Result<Vec<SealedPart>, FramingError> {
    let mut parts = Vec::new();
    let Some(mut pos) = find_delimiter(body, boundary, 0).map(|(_, end)| end) else {
        return Err(FramingError::NoParts { boundary: boundary.to_owned() });
    };
    loop {
        let part = parts.len() + 1;
        // The first section: the part's headers, up to the next delimiter line.
        let (head_end, data_start) =
            find_delimiter(body, boundary, pos).ok_or(FramingError::Truncated { part, what: "no data section" })?;
        let original_length = original_length(&body[pos..head_end], part)?;
        // The second section: `\tContent-Type: application/octet-stream\r\n`, then the binary data.
        let bin_start = skip_header_lines(body, data_start).ok_or(FramingError::MissingData { part })?;
        let len_bytes: [u8; 4] = body
            .get(bin_start..bin_start + 4)
            .and_then(|b| b.try_into().ok())
            .ok_or(FramingError::Truncated { part, what: "no header length" })?;
        let header_len = u32::from_le_bytes(len_bytes) as usize;
        if header_len > MAX_HEADER {
            return Err(FramingError::HeaderTooLong { part, len: header_len });
        }
        let header_start = bin_start + 4;
        let sealed_start = header_start + header_len;
        let header =
            body.get(header_start..sealed_start).ok_or(FramingError::Truncated { part, what: "header" })?.to_vec();
        // The sealed bytes are binary and could hold anything, the boundary included: look for the delimiter where
        // `Length` says the data ends, and only if it is not there, from the data's start.
        let (sealed_end, next) = sealed_start
            .checked_add(original_length)
            .and_then(|expected| delimiter_at(body, boundary, expected).map(|end| (expected, end)))
            .or_else(|| find_delimiter(body, boundary, sealed_start))
            .ok_or(FramingError::Truncated { part, what: "sealed data" })?;
        parts.push(SealedPart { original_length, header, sealed: body[sealed_start..sealed_end].to_vec() });
        pos = next;
        // `--boundary--` closes the body; a part may also just run into the next `--boundary`.
        if body.get(pos..pos + 2) == Some(b"--") || pos >= body.len() {
            return Ok(parts);
        }
        pos = skip_line_end(body, pos);
        if pos >= body.len() {
            return Ok(parts);
        }
    }
}

/// The first `--[ws]boundary` at or after `from` that starts a line (or the body, or follows the sealed data):
/// (its start, the index just after the boundary name and its line end unless it is the closing `--`).
fn find_delimiter(body: &[u8], boundary: &str, from: usize) -> Option<(usize, usize)> {
    let mut at = from;
    while at < body.len() {
        let offset = body.get(at..)?.windows(2).position(|w| w == b"--")?;
        let start = at + offset;
        if let Some(end) = delimiter_at(body, boundary, start) {
            return Some((start, end));
        }
        at = start + 1;
    }
    None
}

/// If `--[ws]boundary` starts at `start`: the index after it (after its CRLF unless it is followed by `--`).
fn delimiter_at(body: &[u8], boundary: &str, start: usize) -> Option<usize> {
    let rest = body.get(start..)?.strip_prefix(b"--")?;
    let spaces = rest.iter().take_while(|b| **b == b' ' || **b == b'\t').count();
    let after = rest.get(spaces..)?.strip_prefix(boundary.as_bytes())?;
    let end = start + 2 + spaces + boundary.len();
    if after.starts_with(b"--") {
        Some(end)
    } else if after.is_empty() || after.starts_with(b"\r\n") || after.starts_with(b"\n") {
        Some(skip_line_end(body, end))
    } else {
        None // a longer name that begins with this boundary's
    }
}

fn skip_line_end(body: &[u8], pos: usize) -> usize {
    if body.get(pos..pos + 2) == Some(b"\r\n") {
        pos + 2
    } else if body.get(pos) == Some(&b'\n') {
        pos + 1
    } else {
        pos
    }
}

/// After the section's header lines (each ends with CRLF; the last is the `Content-Type`): where the data starts.
fn skip_header_lines(body: &[u8], from: usize) -> Option<usize> {
    let rest = body.get(from..)?;
    let line_end = rest.windows(2).position(|w| w == b"\r\n")?;
    let line = String::from_utf8_lossy(&rest[..line_end]);
    line.trim().to_ascii_lowercase().starts_with("content-type:").then_some(from + line_end + 2)
}

fn original_length(head: &[u8], part: usize) -> Result<usize, FramingError> {
    let text = String::from_utf8_lossy(head);
    let lower = text.to_ascii_lowercase();
    let at = lower.find("length=").ok_or(FramingError::MissingLength { part })?;
    let value: String = text[at + "length=".len()..].chars().take_while(|c| !c.is_whitespace() && *c != ';').collect();
    value.parse().map_err(|_| FramingError::InvalidLength { part, value })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(len: usize, header: &[u8], sealed: &[u8]) -> SealedPart {
        SealedPart { original_length: len, header: header.to_vec(), sealed: sealed.to_vec() }
    }

    /// The layout MS-WSMV 2.2.9.1 shows and pypsrp/pyspnego write, byte for byte.
    #[test]
    fn encodes_the_documented_layout() {
        let body = encode(SealProtocol::Spnego, &[part(5, &[0xAA; 16], b"\x01\x02\x03\x04\x05")]);
        let mut expected = b"--Encrypted Boundary\r\n\
            \tContent-Type: application/HTTP-SPNEGO-session-encrypted\r\n\
            \tOriginalContent: type=application/soap+xml;charset=UTF-8;Length=5\r\n\
            --Encrypted Boundary\r\n\
            \tContent-Type: application/octet-stream\r\n"
            .to_vec();
        expected.extend_from_slice(&[16, 0, 0, 0]);
        expected.extend_from_slice(&[0xAA; 16]);
        expected.extend_from_slice(b"\x01\x02\x03\x04\x05--Encrypted Boundary--\r\n");
        assert_eq!(body, expected);
        assert_eq!(
            SealProtocol::Spnego.content_type(5),
            "multipart/encrypted;protocol=\"application/HTTP-SPNEGO-session-encrypted\";boundary=\"Encrypted Boundary\""
        );
    }

    #[test]
    fn round_trips_one_and_several_parts() {
        let one = [part(3, b"sig-sig-sig-sig!", b"abc")];
        assert_eq!(decode(&encode(SealProtocol::Spnego, &one), BOUNDARY), Ok(one.to_vec()));
        let many = [part(4, b"h1", b"wxyz"), part(2, &[], b"12"), part(0, b"h3", b"")];
        assert_eq!(decode(&encode(SealProtocol::CredSsp, &many), BOUNDARY), Ok(many.to_vec()));
    }

    /// Sealed bytes are random: a run that looks like the boundary is still data when `Length` says so.
    #[test]
    fn sealed_data_may_contain_the_boundary() {
        let sealed = b"xx--Encrypted Boundary\r\nyy--Encrypted Boundary--\r\n".to_vec();
        let parts = [part(sealed.len(), b"0123456789abcdef", &sealed)];
        assert_eq!(decode(&encode(SealProtocol::Spnego, &parts), BOUNDARY), Ok(parts.to_vec()));
    }

    /// Exchange writes `-- Encrypted Boundary`; a `Length` that does not match the data is still framed.
    #[test]
    fn reads_exchange_spacing_and_a_wrong_length() {
        let body = b"-- Encrypted Boundary\r\n\tContent-Type: application/HTTP-SPNEGO-session-encrypted\r\n\
            \tOriginalContent: type=application/soap+xml;charset=UTF-8;Length=9\r\n-- Encrypted Boundary\r\n\
            \tContent-Type: application/octet-stream\r\n\x02\x00\x00\x00hhsealed-- Encrypted Boundary--\r\n";
        assert_eq!(decode(body, BOUNDARY), Ok(vec![part(9, b"hh", b"sealed")]));
    }

    #[test]
    fn content_types() {
        let ct = parse_content_type(
            "multipart/encrypted;protocol=\"application/HTTP-SPNEGO-session-encrypted\";boundary=\"Encrypted Boundary\"",
        );
        assert_eq!(
            ct,
            Some(EncryptedContentType {
                multi: false,
                protocol: Some(SealProtocol::Spnego),
                boundary: BOUNDARY.to_owned()
            })
        );
        let ct = parse_content_type("Multipart/X-Multi-Encrypted; protocol=application/HTTP-CredSSP-session-encrypted; boundary=B");
        assert_eq!(ct.map(|c| (c.multi, c.protocol, c.boundary)), Some((true, Some(SealProtocol::CredSsp), "B".into())));
        assert_eq!(parse_content_type("application/soap+xml;charset=UTF-8"), None);
        assert_eq!(parse_content_type("multipart/encrypted;protocol=\"x\""), None);
        assert_eq!(SealProtocol::CredSsp.content_type(CREDSSP_CHUNK + 1).split(';').next(), Some("multipart/x-multi-encrypted"));
        assert_eq!(SealProtocol::Spnego.content_type(CREDSSP_CHUNK + 1).split(';').next(), Some("multipart/encrypted"));
    }

    #[test]
    fn only_credssp_splits() {
        let big = vec![7u8; CREDSSP_CHUNK * 2 + 1];
        assert_eq!(SealProtocol::Spnego.chunks(&big).len(), 1);
        assert_eq!(SealProtocol::Kerberos.chunks(&big).len(), 1);
        let chunks = SealProtocol::CredSsp.chunks(&big);
        assert_eq!(chunks.iter().map(|c| c.len()).collect::<Vec<_>>(), [CREDSSP_CHUNK, CREDSSP_CHUNK, 1]);
        assert_eq!(SealProtocol::CredSsp.chunks(&big[..CREDSSP_CHUNK]).len(), 1);
    }

    #[test]
    fn malformed_bodies_are_errors() {
        let good = encode(SealProtocol::Spnego, &[part(3, b"0123456789abcdef", b"abc")]);
        assert!(matches!(decode(b"", BOUNDARY), Err(FramingError::NoParts { .. })));
        assert!(matches!(decode(b"<s:Envelope/>", BOUNDARY), Err(FramingError::NoParts { .. })));
        let no_length = String::from_utf8_lossy(&good).replace("Length=3", "Size=3");
        assert!(matches!(decode(no_length.as_bytes(), BOUNDARY), Err(FramingError::MissingLength { part: 1 })));
        let bad_length = String::from_utf8_lossy(&good).replace("Length=3", "Length=-3");
        assert!(matches!(decode(bad_length.as_bytes(), BOUNDARY), Err(FramingError::InvalidLength { .. })));
        let mut huge = good.clone();
        let at = huge.windows(4).position(|w| w == [16, 0, 0, 0]).expect("header length");
        huge[at..at + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(decode(&huge, BOUNDARY), Err(FramingError::HeaderTooLong { .. })));
        // Every prefix of a good body fails cleanly or yields what it holds; none panics.
        for cut in 0..good.len() {
            let _ = decode(&good[..cut], BOUNDARY);
        }
        assert!(decode(&good[..good.len() - 30], BOUNDARY).is_err());
    }
}
