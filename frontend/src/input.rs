//! What the user pasted: a CLIXML document or a single PSRP message body, decoded with the shared codec.

use psgate_shared::clixml::{self, DecodeError, Document};

pub use psgate_shared::clixml::Kind as InputKind;

/// For the status line.
pub fn kind_label(kind: InputKind) -> &'static str {
    match kind {
        InputKind::Document => "CLIXML document",
        InputKind::Message => "PSRP message",
    }
}

/// Decodes `input` as a document or a message (a message becomes a one-item document).
pub fn decode(input: &str) -> (InputKind, Result<Document, DecodeError>) {
    match clixml::decode_auto(input.as_bytes()) {
        Ok((kind, doc)) => (kind, Ok(doc)),
        Err(e) => (clixml::kind_of(input.as_bytes()), Err(e)),
    }
}

/// A decode failure, ready to show: the message, where, and the offending line with a caret under it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    /// What was wrong (the codec's message, without the position).
    pub message: String,
    /// 1-based line.
    pub line: usize,
    /// 1-based column, in characters (the codec counts bytes).
    pub column: usize,
    /// The text of that line (cut around the column when very long).
    pub excerpt: String,
    /// Characters of `excerpt` before the caret.
    pub caret: usize,
}

/// How much of a long line is shown on each side of the error.
const EXCERPT_CONTEXT: usize = 60;

impl Failure {
    /// Locates `error` in `input` for display.
    pub fn new(input: &str, error: &DecodeError) -> Failure {
        let offset = floor_char_boundary(input, error.position.offset);
        let line_start = input[..offset].rfind('\n').map_or(0, |i| i + 1);
        let line_end = input[offset..].find('\n').map_or(input.len(), |i| offset + i);
        let line = input[line_start..line_end].trim_end_matches('\r');
        let column = input[line_start..offset].chars().count();
        let chars: Vec<char> = line.chars().collect();
        let from = column.saturating_sub(EXCERPT_CONTEXT);
        let to = (column + EXCERPT_CONTEXT).min(chars.len());
        let mut excerpt: String = chars[from.min(to)..to].iter().collect();
        let mut caret = column - from.min(column);
        if from > 0 {
            excerpt.insert(0, '…');
            caret += 1;
        }
        if to < chars.len() {
            excerpt.push('…');
        }
        Failure { message: error.kind.to_string(), line: error.position.line, column: column + 1, excerpt, caret }
    }
}

fn floor_char_boundary(s: &str, i: usize) -> usize {
    let mut i = i.min(s.len());
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_is_a_one_item_document() {
        let (kind, doc) = decode("<I32>7</I32>");
        assert_eq!(kind, InputKind::Message);
        let doc = doc.expect("decodes");
        assert_eq!(doc.items.len(), 1);
        assert_eq!(doc.items[0].value.as_i64(), Some(7));
    }

    #[test]
    fn whitespace_before_the_clixml_line_is_skipped() {
        let (kind, doc) = decode("\n  #< CLIXML\n<Objs><S>a</S></Objs>");
        assert_eq!(kind, InputKind::Document);
        let doc = doc.expect("decodes");
        assert!(doc.clixml_header);
        assert_eq!(doc.items[0].value.as_str(), Some("a"));
    }

    #[test]
    fn errors_after_skipped_whitespace_point_into_the_pasted_text() {
        let plain = "#< CLIXML\n<Objs>\n<I32>x</I32></Objs>";
        let e0 = decode(plain).1.expect_err("invalid I32");
        let e = decode(&format!("\n \n{plain}")).1.expect_err("invalid I32");
        assert_eq!(e.kind, e0.kind);
        assert_eq!(e.position.line, e0.position.line + 2);
        assert_eq!(e.position.column, e0.position.column);
        assert_eq!(e.position.offset, e0.position.offset + 3);
    }

    #[test]
    fn failure_shows_the_line_and_a_caret() {
        let input = "#< CLIXML\n<Objs>\n  <I32>x</I32>\n</Objs>";
        let e = decode(input).1.expect_err("invalid I32");
        let f = Failure::new(input, &e);
        assert_eq!(f.line, 3);
        assert_eq!(f.excerpt, "  <I32>x</I32>");
        assert!(f.message.starts_with("invalid I32 value"), "{}", f.message);
        assert_eq!(f.column, f.caret + 1);
    }

    #[test]
    fn failure_counts_columns_in_characters_and_cuts_long_lines() {
        let long = format!("<Objs><S>{}é</S><Bad/></Objs>", "x".repeat(200));
        let e = decode(&long).1.expect_err("unknown element");
        let f = Failure::new(&long, &e);
        assert_eq!(f.line, 1);
        assert_eq!(f.column, long[..e.position.offset].chars().count() + 1);
        assert!(f.excerpt.starts_with('…'));
        assert_eq!(f.excerpt.chars().nth(f.caret), Some('<'));
    }
}
