//! The XML subset CLIXML uses, tokenised in one pass over text that is already valid UTF-8.
//!
//! Why not quick-xml here: CLIXML needs elements, three attributes (`N`, `RefId`, `S`), text, CDATA,
//! comments and the declaration; the decoder validates UTF-8 once and checks nesting itself. quick-xml
//! (0.42) re-validates every event as UTF-8 and keeps a stack of open names even with its end checks
//! off, which made it the larger part of decoding. The benchmark keeps a bare quick-xml tokenisation
//! as the floor this is measured against. A `<!DOCTYPE>` is refused: CLIXML never has one, and
//! refusing it rules out entity-expansion attacks.

/// A token. Slices borrow the input; text and attribute values are raw (still escaped).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Token<'a> {
    /// `<name …>` or `<name …/>`.
    Start(Start<'a>),
    /// `</name>`
    End(&'a str),
    /// Character data up to the next `<`, raw.
    Text(&'a str),
    /// `<![CDATA[…]]>`, literal.
    CData(&'a str),
    /// The end of the input.
    Eof,
}

/// A start tag: its local name and the attributes CLIXML gives meaning to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Start<'a> {
    /// The name without any namespace prefix.
    pub name: &'a str,
    /// The name as written.
    pub qname: &'a str,
    /// `<…/>`
    pub empty: bool,
    /// `N="…"`, raw.
    pub n: Option<&'a str>,
    /// `RefId="…"`, raw.
    pub ref_id: Option<&'a str>,
    /// `S="…"`, raw.
    pub s: Option<&'a str>,
    /// `PSGuid='…'` (out-of-process packets), raw.
    pub ps_guid: Option<&'a str>,
    /// `Stream='…'` (out-of-process packets), raw.
    pub stream: Option<&'a str>,
}

/// A syntax error: where, and what.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct SyntaxError {
    /// Byte offset into the lexer's input.
    pub offset: usize,
    /// What is wrong, as a phrase ("an unterminated comment").
    pub message: &'static str,
}

/// Tokenises `input` from `pos`.
#[derive(Clone, Debug)]
pub(crate) struct Lexer<'a> {
    input: &'a str,
    pos: usize,
}

fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

fn local(qname: &str) -> &str {
    match qname.rfind(':') {
        Some(i) => &qname[i + 1..],
        None => qname,
    }
}

impl<'a> Lexer<'a> {
    pub(crate) fn new(input: &'a str, pos: usize) -> Lexer<'a> {
        Lexer { input, pos }
    }

    /// The offset of the next token.
    pub(crate) fn pos(&self) -> usize {
        self.pos
    }

    fn err<T>(&self, offset: usize, message: &'static str) -> Result<T, SyntaxError> {
        Err(SyntaxError { offset, message })
    }

    fn find(&self, from: usize, needle: &str) -> Option<usize> {
        self.input[from..].find(needle).map(|i| from + i)
    }

    /// The next token, skipping comments, processing instructions and the XML declaration.
    pub(crate) fn next(&mut self) -> Result<Token<'a>, SyntaxError> {
        loop {
            let start = self.pos;
            let rest = &self.input.as_bytes()[start..];
            if rest.is_empty() {
                return Ok(Token::Eof);
            }
            if rest[0] != b'<' {
                let end = self.input[start..].find('<').map_or(self.input.len(), |i| start + i);
                self.pos = end;
                return Ok(Token::Text(&self.input[start..end]));
            }
            match rest.get(1) {
                Some(b'/') => return self.end_tag(start),
                Some(b'?') => {
                    let end = self.find(start + 2, "?>").ok_or(SyntaxError { offset: start, message: "an unterminated processing instruction" })?;
                    self.pos = end + 2;
                }
                Some(b'!') => {
                    if rest.starts_with(b"<!--") {
                        let end = self.find(start + 4, "-->").ok_or(SyntaxError { offset: start, message: "an unterminated comment" })?;
                        self.pos = end + 3;
                    } else if rest.starts_with(b"<![CDATA[") {
                        let end = self.find(start + 9, "]]>").ok_or(SyntaxError { offset: start, message: "an unterminated CDATA section" })?;
                        self.pos = end + 3;
                        return Ok(Token::CData(&self.input[start + 9..end]));
                    } else {
                        return self.err(start, "a DOCTYPE or other declaration, which CLIXML never has");
                    }
                }
                _ => return self.start_tag(start),
            }
        }
    }

    fn name_end(&self, from: usize) -> usize {
        let b = self.input.as_bytes();
        let mut i = from;
        while i < b.len() && !matches!(b[i], b' ' | b'\t' | b'\r' | b'\n' | b'/' | b'>' | b'<' | b'=' | b'"' | b'\'') {
            i += 1;
        }
        i
    }

    fn end_tag(&mut self, start: usize) -> Result<Token<'a>, SyntaxError> {
        let b = self.input.as_bytes();
        let name_end = self.name_end(start + 2);
        if name_end == start + 2 {
            return self.err(start, "an end tag without a name");
        }
        let mut i = name_end;
        while i < b.len() && is_space(b[i]) {
            i += 1;
        }
        if b.get(i) != Some(&b'>') {
            return self.err(i, "no '>' closing the end tag");
        }
        self.pos = i + 1;
        Ok(Token::End(local(&self.input[start + 2..name_end])))
    }

    fn start_tag(&mut self, start: usize) -> Result<Token<'a>, SyntaxError> {
        let b = self.input.as_bytes();
        let name_end = self.name_end(start + 1);
        if name_end == start + 1 {
            return self.err(start, "no element name after '<'");
        }
        let qname = &self.input[start + 1..name_end];
        let mut tag = Start { name: local(qname), qname, empty: false, n: None, ref_id: None, s: None, ps_guid: None, stream: None };
        let mut i = name_end;
        loop {
            let before_space = i;
            while i < b.len() && is_space(b[i]) {
                i += 1;
            }
            match b.get(i) {
                Some(b'>') => {
                    self.pos = i + 1;
                    return Ok(Token::Start(tag));
                }
                Some(b'/') => {
                    if b.get(i + 1) != Some(&b'>') {
                        return self.err(i, "no '>' after '/'");
                    }
                    tag.empty = true;
                    self.pos = i + 2;
                    return Ok(Token::Start(tag));
                }
                None => return self.err(start, "the end of the input inside a tag"),
                Some(_) if i == before_space => return self.err(i, "no whitespace before an attribute"),
                Some(_) => {}
            }
            let attr_end = self.name_end(i);
            if attr_end == i {
                return self.err(i, "no attribute name");
            }
            let attr = local(&self.input[i..attr_end]);
            i = attr_end;
            while i < b.len() && is_space(b[i]) {
                i += 1;
            }
            if b.get(i) != Some(&b'=') {
                return self.err(i, "no '=' after an attribute name");
            }
            i += 1;
            while i < b.len() && is_space(b[i]) {
                i += 1;
            }
            let quote = match b.get(i) {
                Some(q @ (b'"' | b'\'')) => *q,
                _ => return self.err(i, "an attribute value without quotes"),
            };
            let value_start = i + 1;
            let Some(len) = b[value_start..].iter().position(|&c| c == quote) else {
                return self.err(i, "an attribute value without its closing quote");
            };
            let value = &self.input[value_start..value_start + len];
            if let Some(lt) = value.find('<') {
                return self.err(value_start + lt, "'<' inside an attribute value");
            }
            match attr {
                "N" => tag.n = Some(value),
                "RefId" => tag.ref_id = Some(value),
                "S" => tag.s = Some(value),
                "PSGuid" => tag.ps_guid = Some(value),
                "Stream" => tag.stream = Some(value),
                _ => {}
            }
            i = value_start + len + 1;
        }
    }

    /// After the start tag of a text-only element: its raw text when it is plain text followed by
    /// `</name>`, consuming the end tag; `None` (consuming nothing) when anything else follows, for
    /// the caller to read token by token.
    pub(crate) fn simple_text(&mut self, name: &str) -> Option<&'a str> {
        let start = self.pos;
        let lt = self.input[start..].find('<').map(|i| start + i)?;
        let b = self.input.as_bytes();
        let after = lt + 2 + name.len();
        if b.get(lt + 1) == Some(&b'/') && self.input.get(lt + 2..after) == Some(name) && b.get(after) == Some(&b'>') {
            self.pos = after + 1;
            Some(&self.input[start..lt])
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens(s: &str) -> Result<Vec<Token<'_>>, SyntaxError> {
        let mut l = Lexer::new(s, 0);
        let mut out = Vec::new();
        loop {
            match l.next()? {
                Token::Eof => return Ok(out),
                t => out.push(t),
            }
        }
    }

    fn start<'a>(name: &'a str, empty: bool, n: Option<&'a str>, ref_id: Option<&'a str>) -> Token<'a> {
        Token::Start(Start { name, qname: name, empty, n, ref_id, s: None, ps_guid: None, stream: None })
    }

    #[test]
    fn tokenises_the_clixml_subset() {
        let t = tokens("<?xml version=\"1.0\"?><!-- c --><Obj RefId=\"0\" ><S N='a b' x=\"1\"/>t &amp; u<![CDATA[<x>]]></Obj >").expect("valid");
        assert_eq!(
            t,
            vec![
                start("Obj", false, None, Some("0")),
                start("S", true, Some("a b"), None),
                Token::Text("t &amp; u"),
                Token::CData("<x>"),
                Token::End("Obj"),
            ]
        );
        let t = tokens("<ps:Obj xmlns:ps=\"u\" ps:N=\"v\"></ps:Obj>").expect("valid");
        assert!(matches!(t[0], Token::Start(Start { name: "Obj", qname: "ps:Obj", n: Some("v"), .. })));
        assert_eq!(t[1], Token::End("Obj"));
    }

    #[test]
    fn refuses_what_is_not_xml() {
        for (bad, at) in [
            ("<", 0),
            ("< a>", 0),
            ("<a b>", 4),
            ("<a b=c>", 5),
            ("<a b=\"c>", 5),
            ("<a b=\"<\">", 6),
            ("<a/ >", 2),
            ("<ab=\"1\">", 3),
            ("<a b=\"1\"", 0),
            ("</>", 0),
            ("</a", 3),
            ("<!-- x", 0),
            ("<![CDATA[ x", 0),
            ("<!DOCTYPE x [<!ENTITY a \"b\">]>", 0),
            ("<? x", 0),
        ] {
            let e = tokens(bad).expect_err(bad);
            assert_eq!(e.offset, at, "{bad}: {}", e.message);
        }
    }

    #[test]
    fn simple_text_takes_only_plain_text() {
        let mut l = Lexer::new("a &lt; b</S><I32>", 0);
        assert_eq!(l.simple_text("S"), Some("a &lt; b"));
        assert_eq!(l.pos(), 12);
        for s in ["x<!--c--></S>", "x</Sx>", "x</S >", "x<b/></S>", "x"] {
            let mut l = Lexer::new(s, 0);
            assert_eq!(l.simple_text("S"), None, "{s}");
            assert_eq!(l.pos(), 0);
        }
    }
}
