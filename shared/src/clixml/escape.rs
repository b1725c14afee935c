//! String escaping (MS-PSRP 2.2.5.3.2; PowerShell `EncodeString`/`DecodeString`), fused with XML escaping.
//!
//! On the wire a UTF-16 code unit in 0x00–0x1F, 0x7F–0x9F or the surrogate range is written `_xHHHH_`
//! (a character outside the BMP gives two, one per surrogate), and `_` is written `_x005F_` when an `x`
//! or `X` follows it. Decoding accepts the hex digits in either case. XML escaping applies on top.

use std::borrow::Cow;

use super::value::Str;

/// Why an XML character reference or entity could not be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct BadEntity {
    /// Byte offset of the `&` in the text.
    pub offset: usize,
}

/// Appends `s` to `out` escaped for element text (`attr = false`) or a double-quoted attribute.
pub fn escape_into(out: &mut String, s: &str, attr: bool) {
    let bytes = s.as_bytes();
    // Fast path: copy runs of bytes that need nothing.
    let mut start = 0;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        let needs = match b {
            b'&' | b'<' | b'>' | b'_' | 0x00..=0x1F | 0x7F => true,
            b'"' => attr,
            // 0xC2 0x80..=0x9F is U+0080..U+009F (C1 controls); 0xF0..=0xF4 starts a non-BMP char.
            0xC2 => matches!(bytes.get(i + 1), Some(0x80..=0x9F)),
            0xF0..=0xF4 => true,
            _ => false,
        };
        if !needs {
            i += 1;
            continue;
        }
        out.push_str(&s[start..i]);
        match b {
            b'&' => out.push_str("&amp;"),
            b'<' => out.push_str("&lt;"),
            b'>' => out.push_str("&gt;"),
            b'"' => out.push_str("&quot;"),
            b'_' => {
                if matches!(bytes.get(i + 1), Some(b'x' | b'X')) {
                    out.push_str("_x005F_");
                } else {
                    out.push('_');
                }
            }
            0xC2 => {
                push_unit(out, u16::from(bytes[i + 1] & 0x3F) | 0x80);
                i += 2;
                start = i;
                continue;
            }
            0xF0..=0xF4 => {
                // A 4-byte UTF-8 sequence: `s` is valid UTF-8, so the char is whole.
                let c = s[i..].chars().next().unwrap_or('\u{FFFD}');
                let mut units = [0u16; 2];
                for u in c.encode_utf16(&mut units) {
                    push_unit(out, *u);
                }
                i += c.len_utf8();
                start = i;
                continue;
            }
            _ => push_unit(out, u16::from(b)),
        }
        i += 1;
        start = i;
    }
    out.push_str(&s[start..]);
}

fn push_unit(out: &mut String, u: u16) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    out.push_str("_x");
    for shift in [12, 8, 4, 0] {
        out.push(HEX[usize::from((u >> shift) & 0xF)] as char);
    }
    out.push('_');
}

/// `s` escaped as element text.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    escape_into(&mut out, s, false);
    out
}

/// Decodes raw element text (`attr = false`) or an attribute value: XML line-end (and, in attributes,
/// whitespace) normalisation (XML 1.0 §2.11, §3.3.3), then XML references, then `_xHHHH_` escapes.
pub(crate) fn unescape(raw: &str, attr: bool) -> Result<Str, BadEntity> {
    let b = raw.as_bytes();
    let needs_space = b.contains(&b'\r') || (attr && (b.contains(&b'\n') || b.contains(&b'\t')));
    let has_amp = b.contains(&b'&');
    let has_underscore = b.contains(&b'_');
    if !needs_space && !has_amp && !has_underscore {
        return Ok(Str::from(raw));
    }
    let normalised: Cow<'_, str> = if needs_space { Cow::Owned(normalise_space(raw, attr)) } else { Cow::Borrowed(raw) };
    // Entity offsets are reported into `raw`; normalisation only ever shortens, so they stay close.
    let text: Cow<'_, str> = if has_amp { Cow::Owned(xml_unescape(&normalised)?) } else { normalised };
    if !has_underscore {
        return Ok(Str::from(text.as_ref()));
    }
    Ok(decode_underscores(&text))
}

/// `\r\n` and a lone `\r` become `\n`; in an attribute every `\t`, `\n`, `\r` becomes a space.
fn normalise_space(raw: &str, attr: bool) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars().peekable();
    while let Some(c) = chars.next() {
        let c = match c {
            '\r' => {
                if chars.peek() == Some(&'\n') {
                    chars.next();
                }
                '\n'
            }
            c => c,
        };
        out.push(if attr && matches!(c, '\n' | '\t') { ' ' } else { c });
    }
    out
}

/// Resolves the five predefined entities and numeric character references.
fn xml_unescape(raw: &str) -> Result<String, BadEntity> {
    let mut out = String::with_capacity(raw.len());
    let mut rest = raw;
    let mut offset = 0;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        let bad = BadEntity { offset: offset + amp };
        let semi = rest[amp..].bytes().take(12).position(|c| c == b';').ok_or(bad)? + amp;
        let name = &rest[amp + 1..semi];
        match name {
            "lt" => out.push('<'),
            "gt" => out.push('>'),
            "amp" => out.push('&'),
            "quot" => out.push('"'),
            "apos" => out.push('\''),
            _ => {
                let cp = if let Some(hex) = name.strip_prefix("#x").or_else(|| name.strip_prefix("#X")) {
                    parse_num(hex, 16)
                } else if let Some(dec) = name.strip_prefix('#') {
                    parse_num(dec, 10)
                } else {
                    None
                };
                out.push(cp.and_then(char::from_u32).ok_or(bad)?);
            }
        }
        offset += semi + 1;
        rest = &rest[semi + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

fn parse_num(digits: &str, radix: u32) -> Option<u32> {
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u32::from_str_radix(digits, radix).ok()
}

fn hex4(b: &[u8]) -> Option<u16> {
    let mut v = 0u16;
    for &c in b {
        let d = match c {
            b'0'..=b'9' => c - b'0',
            b'a'..=b'f' => c - b'a' + 10,
            b'A'..=b'F' => c - b'A' + 10,
            _ => return None,
        };
        v = (v << 4) | u16::from(d);
    }
    Some(v)
}

/// Decodes `_xHHHH_` escapes. Surrogate pairs are joined; a lone surrogate (legal in .NET, impossible
/// in a Rust string) becomes U+FFFD.
fn decode_underscores(text: &str) -> Str {
    let b = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut start = 0;
    let mut i = 0;
    let escape_at = |i: usize| -> Option<u16> {
        if b.len() >= i + 7 && matches!(b[i + 1], b'x' | b'X') && b[i + 6] == b'_' {
            hex4(&b[i + 2..i + 6])
        } else {
            None
        }
    };
    while i < b.len() {
        if b[i] != b'_' {
            i += 1;
            continue;
        }
        let Some(unit) = escape_at(i) else {
            i += 1;
            continue;
        };
        out.push_str(&text[start..i]);
        i += 7;
        if (0xD800..0xDC00).contains(&unit) {
            if let Some(low @ 0xDC00..=0xDFFF) = escape_at(i).filter(|_| i < b.len() && b[i] == b'_') {
                let cp = 0x10000 + ((u32::from(unit) - 0xD800) << 10) + (u32::from(low) - 0xDC00);
                out.push(char::from_u32(cp).unwrap_or('\u{FFFD}'));
                i += 7;
            } else {
                out.push('\u{FFFD}');
            }
        } else {
            out.push(char::from_u32(u32::from(unit)).unwrap_or('\u{FFFD}'));
        }
        start = i;
    }
    out.push_str(&text[start..]);
    Str::from(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(plain: &str, wire: &str) {
        assert_eq!(escape(plain), wire, "escape {plain:?}");
        assert_eq!(unescape(wire, false).as_deref(), Ok(plain), "unescape {wire:?}");
    }

    #[test]
    fn escapes_like_powershell() {
        check("", "");
        check("plain text", "plain text");
        check("a\tb\r\nc", "a_x0009_b_x000D__x000A_c");
        check("\u{0}\u{1F}\u{7F}\u{80}\u{9F}\u{A0}", "_x0000__x001F__x007F__x0080__x009F_\u{A0}");
        check("_x0000_", "_x005F_x0000_");
        check("_X and _y", "_x005F_X and _y");
        check("trailing_", "trailing_");
        check("😀 smile", "_xD83D__xDE00_ smile");
        check("<&>\"'", "&lt;&amp;&gt;\"'");
        check("C:\\a_x\r\n", "C:\\a_x005F_x_x000D__x000A_");
        check("é ü 漢字", "é ü 漢字");
    }

    #[test]
    fn decodes_case_insensitive_hex_and_xml_references() {
        assert_eq!(unescape("_x000a__x000D_", false).as_deref(), Ok("\n\r"));
        assert_eq!(unescape("_xd83d__xde00_", false).as_deref(), Ok("😀"));
        assert_eq!(unescape("&#95;x000A_", false).as_deref(), Ok("\n"));
        assert_eq!(unescape("&#x41;&#66;&apos;", false).as_deref(), Ok("AB'"));
        // Not escapes: left alone.
        assert_eq!(unescape("_x12_ _xZZZZ_ _x1234", false).as_deref(), Ok("_x12_ _xZZZZ_ _x1234"));
        // Lone surrogates cannot live in a Rust string.
        assert_eq!(unescape("_xD800_x", false).as_deref(), Ok("\u{FFFD}x"));
        assert_eq!(unescape("_xDC00_", false).as_deref(), Ok("\u{FFFD}"));
    }

    #[test]
    fn rejects_bad_references() {
        assert_eq!(unescape("a &bogus; b", false), Err(BadEntity { offset: 2 }));
        assert_eq!(unescape("a & b", false), Err(BadEntity { offset: 2 }));
        assert_eq!(unescape("ok &amp; &#xD800;", false), Err(BadEntity { offset: 9 }));
        assert_eq!(unescape("&#12a;", false), Err(BadEntity { offset: 0 }));
    }

    #[test]
    fn normalises_raw_line_ends_but_not_references() {
        assert_eq!(unescape("a\r\nb\rc\nd", false).as_deref(), Ok("a\nb\nc\nd"));
        assert_eq!(unescape("a&#13;&#10;b_x000D_", false).as_deref(), Ok("a\r\nb\r"));
        assert_eq!(unescape("a\tb\r\nc", true).as_deref(), Ok("a b c"));
        assert_eq!(unescape("a&#9;b", true).as_deref(), Ok("a\tb"));
    }

    #[test]
    fn attribute_escaping_quotes() {
        let mut s = String::new();
        escape_into(&mut s, "a\"b", true);
        assert_eq!(s, "a&quot;b");
    }
}
