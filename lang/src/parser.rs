//! The parser: a line of PowerShell (the subset psgate's prompt runs) into an [`ast::Script`].
//!
//! PowerShell reads a line in two modes: in *command mode* (after a command's name) bare words are strings
//! (`srv02`), `-Name` is a parameter and numbers are numbers; in *expression mode* `-eq` is an operator and a bare
//! word is an error. The parser switches as PowerShell's does: a statement that starts with a name is a command,
//! one that starts with `$`, a quote, a number, `(`, `@` or an operator is an expression.
//!
//! Nothing here can panic on any input: positions are byte offsets checked against the line, nesting is bounded
//! by [`MAX_DEPTH`], and every malformed line is a [`ParseError`] naming PowerShell's error id and the place.
//! A script block's braces are found by a scan that understands strings, comments and here-strings, so a block
//! psgate cannot read (an `if`, a `foreach`) is still sent whole to the remote side.

use crate::ast::{BinaryOp, CommandArg, CommandCall, CompareOp, Element, Expr, ExprKind, Pipeline, Script, ScriptBlock, Span, Statement, StringPart, Target, UnaryOp};
use crate::error::ParseError;

/// How deeply parentheses, blocks and sub-expressions may nest.
pub const MAX_DEPTH: u32 = 64;

/// Parses a whole line (or script).
pub fn parse(line: &str) -> Result<Script, ParseError> {
    let mut p = Parser { src: line, pos: 0, depth: 0 };
    let script = p.statements(None)?;
    Ok(script)
}

/// Keywords psgate's prompt does not run (PowerShell's statements); a line with one is refused plainly.
const UNSUPPORTED_KEYWORDS: &[&str] = &[
    "if", "elseif", "else", "foreach", "for", "while", "do", "until", "switch", "function", "filter", "workflow", "try", "catch", "finally", "trap", "throw",
    "return", "break", "continue", "param", "begin", "process", "end", "clean", "class", "enum", "using", "data", "dynamicparam", "configuration",
];

struct Parser<'a> {
    src: &'a str,
    pos: usize,
    depth: u32,
}

/// Characters PowerShell reads as a dash (`-`, en dash, em dash, horizontal bar): pasted from documents.
fn dash_len(s: &str) -> Option<usize> {
    let c = s.chars().next()?;
    matches!(c, '-' | '\u{2013}' | '\u{2014}' | '\u{2015}').then(|| c.len_utf8())
}

fn is_single_quote(c: char) -> bool {
    matches!(c, '\'' | '\u{2018}' | '\u{2019}' | '\u{201a}' | '\u{201b}')
}

fn is_double_quote(c: char) -> bool {
    matches!(c, '"' | '\u{201c}' | '\u{201d}' | '\u{201e}')
}

/// Ends a bare word (command mode) or a command name.
fn ends_word(c: char) -> bool {
    c.is_whitespace() || matches!(c, ';' | '|' | '&' | '(' | ')' | '{' | '}' | ',' | '\n' | '\r') || is_single_quote(c) || is_double_quote(c)
}

fn is_name_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

fn is_variable_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_' || c == '?'
}

impl<'a> Parser<'a> {
    fn rest(&self) -> &'a str {
        self.src.get(self.pos..).unwrap_or_default()
    }

    fn peek(&self) -> Option<char> {
        self.rest().chars().next()
    }

    fn peek_at(&self, n: usize) -> Option<char> {
        self.rest().chars().nth(n)
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += c.len_utf8();
        Some(c)
    }

    fn at(&self, s: &str) -> bool {
        self.rest().starts_with(s)
    }

    fn span_from(&self, start: usize) -> Span {
        Span::new(start, self.pos)
    }

    fn here(&self) -> Span {
        let end = self.pos + self.peek().map_or(0, char::len_utf8);
        Span::new(self.pos, end)
    }

    fn enter(&mut self) -> Result<(), ParseError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(ParseError::new("ScriptTooComplex", format!("The line is nested more than {MAX_DEPTH} levels deep."), self.here()));
        }
        Ok(())
    }

    fn leave(&mut self) {
        self.depth = self.depth.saturating_sub(1);
    }

    /// Spaces, tabs, comments and line continuations (a backtick before the line's end); `newlines` also skips
    /// line ends (after an operator, a comma or a pipe, PowerShell reads on).
    fn skip_space(&mut self, newlines: bool) {
        loop {
            let Some(c) = self.peek() else { return };
            if c == '\n' || c == '\r' {
                if !newlines {
                    return;
                }
                self.bump();
            } else if c.is_whitespace() {
                self.bump();
            } else if c == '`' && matches!(self.peek_at(1), Some('\n' | '\r')) {
                self.bump();
                if self.at("\r\n") {
                    self.bump();
                }
                self.bump();
            } else if self.at("<#") {
                match self.rest().find("#>") {
                    Some(i) => self.pos += i + 2,
                    None => self.pos = self.src.len(),
                }
            } else if c == '#' {
                match self.rest().find(['\n', '\r']) {
                    Some(i) => self.pos += i,
                    None => self.pos = self.src.len(),
                }
            } else {
                return;
            }
        }
    }

    /// Statements until the end of the line or `close` (not consumed).
    fn statements(&mut self, close: Option<char>) -> Result<Script, ParseError> {
        let start = self.pos;
        let mut statements = Vec::new();
        loop {
            self.skip_space(true);
            while self.peek() == Some(';') {
                self.bump();
                self.skip_space(true);
            }
            match self.peek() {
                None => break,
                Some(c) if Some(c) == close => break,
                Some('|') => return Err(ParseError::new("EmptyPipeElement", "An empty pipe element is not allowed.", self.here())),
                Some(c @ (')' | '}')) => {
                    return Err(ParseError::new("UnexpectedToken", format!("Unexpected token '{c}' in expression or statement."), self.here()));
                }
                Some(_) => {}
            }
            let statement = self.statement()?;
            statements.push(statement);
            self.skip_space(false);
            match self.peek() {
                None | Some(';' | '\n' | '\r') => {}
                Some(c) if Some(c) == close => {}
                Some(_) => {
                    let token = self.token_text();
                    return Err(ParseError::new("UnexpectedToken", format!("Unexpected token '{token}' in expression or statement."), self.token_span()));
                }
            }
        }
        Ok(Script { statements, span: self.span_from(start) })
    }

    /// The text of the token here, for messages.
    fn token_text(&self) -> String {
        let rest = self.rest();
        let mut end = rest.find(|c: char| c.is_whitespace() || c == ';').unwrap_or(rest.len());
        if end == 0 {
            end = rest.chars().next().map_or(0, char::len_utf8);
        }
        rest[..end].to_owned()
    }

    fn token_span(&self) -> Span {
        Span::new(self.pos, self.pos + self.token_text().len())
    }

    fn statement(&mut self) -> Result<Statement, ParseError> {
        let start = self.pos;
        if let Some(word) = self.keyword() {
            if word.eq_ignore_ascii_case("exit") {
                self.pos += word.len();
                self.skip_space(false);
                // `exit 0`: the code means nothing here; read and drop it.
                if !matches!(self.peek(), None | Some(';' | '\n' | '\r' | ')' | '}')) {
                    self.expression()?;
                }
                return Ok(Statement::Exit { span: self.span_from(start) });
            }
            let span = Span::new(self.pos, self.pos + word.len());
            return Err(ParseError::new(
                "NotSupported",
                format!("The '{}' statement is not supported at psgate's prompt. Run it in a session: Invoke-Command -Session $s -ScriptBlock {{ … }}, or Enter-PSSession.", word.to_lowercase()),
                span,
            ));
        }
        let pipeline = self.pipeline()?;
        self.skip_space(false);
        if self.peek() == Some('=') && self.peek_at(1) != Some('=') {
            let eq = self.here();
            let targets = assignment_targets(&pipeline)?;
            self.bump();
            self.skip_space(true);
            if matches!(self.peek(), None | Some(';' | ')' | '}')) {
                return Err(ParseError::new("ExpectedValueExpression", "You must provide a value expression following the '=' operator.", eq));
            }
            let value = self.pipeline()?;
            return Ok(Statement::Assign { targets, value, span: self.span_from(start) });
        }
        Ok(Statement::Pipeline(pipeline))
    }

    /// A keyword at the start of a statement (a word followed by a space, `(`, `{` or the end).
    fn keyword(&self) -> Option<&'a str> {
        let rest = self.rest();
        let end = rest.find(|c: char| !c.is_ascii_alphabetic()).unwrap_or(rest.len());
        let word = &rest[..end];
        let after = rest[end..].chars().next();
        let is_kw = word.eq_ignore_ascii_case("exit") || UNSUPPORTED_KEYWORDS.iter().any(|k| k.eq_ignore_ascii_case(word));
        (is_kw && after.is_none_or(|c| c.is_whitespace() || matches!(c, '(' | '{' | ';'))).then_some(word)
    }

    fn pipeline(&mut self) -> Result<Pipeline, ParseError> {
        let start = self.pos;
        let mut elements = Vec::new();
        let first = if self.starts_command() { Element::Command(self.command()?) } else { Element::Expression(self.expression()?) };
        elements.push(first);
        loop {
            self.skip_space(false);
            if self.at("||") || self.at("&&") {
                return Err(ParseError::new("NotSupported", "Pipeline chains (&& and ||) are not supported at psgate's prompt.", Span::new(self.pos, self.pos + 2)));
            }
            if self.peek() != Some('|') {
                break;
            }
            let bar = self.here();
            self.bump();
            self.skip_space(true);
            if matches!(self.peek(), None | Some('|' | ';' | ')' | '}')) {
                return Err(ParseError::new("EmptyPipeElement", "An empty pipe element is not allowed.", bar));
            }
            if !self.starts_command() {
                let at = self.pos;
                let e = self.expression()?;
                let _ = at;
                return Err(ParseError::new("ExpressionsMustBeFirstInPipeline", "Expressions are only allowed as the first element of a pipeline.", e.span));
            }
            elements.push(Element::Command(self.command()?));
        }
        self.skip_space(false);
        if let Some(c) = self.peek()
            && (c == '>' || (c.is_ascii_digit() && self.peek_at(1) == Some('>')))
        {
            return Err(ParseError::new("NotSupported", "Redirection (>, 2>&1) is not supported at psgate's prompt.", self.here()));
        }
        Ok(Pipeline { elements, span: self.span_from(start) })
    }

    /// Whether a command (not an expression) starts here.
    fn starts_command(&self) -> bool {
        let Some(c) = self.peek() else { return false };
        if c == '$' || c == '(' || c == '@' || c == '{' || c == '[' || c == '!' || c == '+' || is_single_quote(c) || is_double_quote(c) {
            return false;
        }
        if let Some(n) = dash_len(self.rest()) {
            // `-not $x`, `-1`: expressions. A lone word after a dash is an operator in expression mode.
            let _ = n;
            return false;
        }
        if c == '&' || c == '.' && self.peek_at(1).is_some_and(char::is_whitespace) {
            return false;
        }
        if c.is_ascii_digit() || c == '.' {
            // `3`, `1kb`, `.5`, `1..3` are expressions; `7zip` is a command.
            return parse_number(self.number_ahead()).is_none();
        }
        !ends_word(c)
    }

    /// A number's token in expression mode: letters, digits and single dots (`1..3` is a range), after an
    /// optional dash.
    fn number_ahead(&self) -> &'a str {
        let rest = self.rest();
        let mut end = dash_len(rest).unwrap_or(0);
        let bytes = rest.as_bytes();
        while end < bytes.len() {
            let b = bytes[end];
            if b.is_ascii_alphanumeric() || b == b'_' || (b == b'.' && bytes.get(end + 1) != Some(&b'.')) {
                end += 1;
            } else {
                break;
            }
        }
        &rest[..end]
    }

    fn word_ahead(&self) -> &'a str {
        let rest = self.rest();
        let end = rest.find(ends_word).unwrap_or(rest.len());
        &rest[..end]
    }

    fn command(&mut self) -> Result<CommandCall, ParseError> {
        let start = self.pos;
        if self.peek() == Some('&') || self.peek() == Some('.') {
            return Err(ParseError::new("NotSupported", "The call operators (& and .) are not supported at psgate's prompt; type the command's name.", self.here()));
        }
        let name = self.word_ahead();
        self.pos += name.len();
        let name_span = self.span_from(start);
        let mut args = Vec::new();
        loop {
            self.skip_space(false);
            let Some(c) = self.peek() else { break };
            if matches!(c, ';' | '|' | ')' | '}' | '\n' | '\r') || self.at("&&") {
                break;
            }
            if c == '>' || (c.is_ascii_digit() && self.peek_at(1) == Some('>')) {
                break;
            }
            if c == '&' {
                return Err(ParseError::new("AmpersandNotAllowed", "The ampersand (&) character is not allowed. The & operator is reserved for future use; wrap an ampersand in double quotation marks (\"&\") to pass it as part of a string.", self.here()));
            }
            if let Some(n) = dash_len(self.rest())
                && self.rest()[n..].chars().next().is_some_and(|c| c.is_alphabetic() || c == '_' || c == '?')
            {
                let p_start = self.pos;
                self.pos += n;
                let name_start = self.pos;
                while let Some(c) = self.peek() {
                    if ends_word(c) || c == ':' {
                        break;
                    }
                    self.bump();
                }
                let name = self.src[name_start..self.pos].to_owned();
                let value = if self.peek() == Some(':') {
                    let colon = self.here();
                    self.bump();
                    self.skip_space(false);
                    if matches!(self.peek(), None | Some(';' | '|' | ')' | '}' | '\n' | '\r')) {
                        return Err(ParseError::new("ParameterRequiresArgument", format!("The parameter '{name}' requires an argument after ':'."), colon));
                    }
                    Some(self.command_argument()?)
                } else {
                    None
                };
                args.push(CommandArg::Parameter { name, value, span: self.span_from(p_start) });
                continue;
            }
            args.push(CommandArg::Argument(self.command_argument()?));
        }
        Ok(CommandCall { name: name.to_owned(), name_span, args, span: self.span_from(start) })
    }

    /// A command argument: one value, or several separated by commas (an array).
    fn command_argument(&mut self) -> Result<Expr, ParseError> {
        let first = self.argument_value()?;
        self.skip_space(false);
        if self.peek() != Some(',') {
            return Ok(first);
        }
        let mut items = vec![first];
        while self.peek() == Some(',') {
            let comma = self.here();
            self.bump();
            self.skip_space(true);
            if matches!(self.peek(), None | Some(';' | '|' | ')' | '}' | ',')) {
                return Err(ParseError::new("MissingExpressionAfterToken", "Missing argument in parameter list.", comma));
            }
            items.push(self.argument_value()?);
            self.skip_space(false);
        }
        let span = items[0].span.to(items[items.len() - 1].span);
        Ok(Expr { kind: ExprKind::Array(items), span })
    }

    /// One value in command mode: a bare word, a number, a string, a variable (with members), a group.
    fn argument_value(&mut self) -> Result<Expr, ParseError> {
        let Some(c) = self.peek() else {
            return Err(ParseError::new("MissingArgument", "Missing argument in parameter list.", self.here()));
        };
        if c == '$' || c == '(' || c == '@' || c == '{' || is_single_quote(c) || is_double_quote(c) {
            let primary = self.primary()?;
            return self.postfix(primary);
        }
        let start = self.pos;
        let word = self.word_ahead();
        if word.is_empty() {
            let token = self.token_text();
            return Err(ParseError::new("UnexpectedToken", format!("Unexpected token '{token}' in expression or statement."), self.token_span()));
        }
        self.pos += word.len();
        let span = self.span_from(start);
        let kind = match parse_number(word) {
            Some(n) => n,
            None => ExprKind::BareWord(word.to_owned()),
        };
        Ok(Expr { kind, span })
    }

    // Expressions, loosest first.

    fn expression(&mut self) -> Result<Expr, ParseError> {
        self.enter()?;
        let e = self.binary(0);
        self.leave();
        e
    }

    /// Binary operators by precedence level: 0 `-and -or -xor`, 1 comparisons, 2 `+ -`, 3 `* / %`, 4 `-f`,
    /// 5 `..`; then unary operators, then the comma.
    fn binary(&mut self, level: u8) -> Result<Expr, ParseError> {
        if level > 5 {
            return self.unary();
        }
        let mut left = self.binary(level + 1)?;
        loop {
            self.skip_space(false);
            let save = self.pos;
            let Some((op, len)) = self.binary_operator() else { break };
            if precedence(op) != level {
                break;
            }
            let op_span = Span::new(self.pos, self.pos + len);
            self.pos += len;
            self.skip_space(true);
            if matches!(self.peek(), None | Some(';' | '|' | ')' | '}' | ',')) {
                let shown = op_span.text(self.src);
                return Err(ParseError::new("ExpectedValueExpression", format!("You must provide a value expression following the '{shown}' operator."), op_span));
            }
            let right = self.binary(level + 1);
            let right = match right {
                Ok(r) => r,
                Err(e) => {
                    self.pos = save;
                    return Err(e);
                }
            };
            let span = left.span.to(right.span);
            left = Expr { kind: ExprKind::Binary(op, Box::new(left), Box::new(right)), span };
        }
        Ok(left)
    }

    /// The binary operator here and its length, if any.
    fn binary_operator(&self) -> Option<(BinaryOp, usize)> {
        let rest = self.rest();
        let c = rest.chars().next()?;
        let simple = match c {
            '+' => Some(BinaryOp::Add),
            '*' => Some(BinaryOp::Multiply),
            '/' => Some(BinaryOp::Divide),
            '%' => Some(BinaryOp::Remainder),
            '.' if rest.starts_with("..") => return Some((BinaryOp::Range, 2)),
            _ => None,
        };
        if let Some(op) = simple {
            return Some((op, 1));
        }
        let n = dash_len(rest)?;
        let word_len = rest[n..].find(|c: char| !c.is_ascii_alphabetic()).unwrap_or(rest.len() - n);
        if word_len == 0 {
            return Some((BinaryOp::Subtract, n));
        }
        let word = rest[n..n + word_len].to_ascii_lowercase();
        let op = match word.as_str() {
            "and" => BinaryOp::And,
            "or" => BinaryOp::Or,
            "xor" => BinaryOp::Xor,
            "f" => BinaryOp::Format,
            w => {
                let (case_sensitive, base) = match w.strip_prefix('c') {
                    Some(b) if CompareOp::ALL.iter().any(|o| o.name() == b) => (true, b),
                    _ => match w.strip_prefix('i') {
                        Some(b) if CompareOp::ALL.iter().any(|o| o.name() == b) => (false, b),
                        _ => (false, w),
                    },
                };
                let op = CompareOp::ALL.iter().find(|o| o.name() == base)?;
                BinaryOp::Compare(*op, case_sensitive)
            }
        };
        Some((op, n + word_len))
    }

    fn unary(&mut self) -> Result<Expr, ParseError> {
        let start = self.pos;
        let rest = self.rest();
        let op = if rest.starts_with('!') {
            Some((UnaryOp::Not, 1))
        } else if let Some(n) = dash_len(rest) {
            let after = &rest[n..];
            if after.get(..3).is_some_and(|w| w.eq_ignore_ascii_case("not")) && !after.get(3..).unwrap_or_default().starts_with(|c: char| c.is_ascii_alphanumeric()) {
                Some((UnaryOp::Not, n + 3))
            } else if after.starts_with(|c: char| c.is_ascii_digit() || c == '.') && parse_number(self.number_ahead()).is_some() {
                None
            } else if after.starts_with(|c: char| c.is_ascii_alphabetic()) {
                let word_len = after.find(|c: char| !c.is_ascii_alphanumeric()).unwrap_or(after.len());
                let span = Span::new(self.pos, self.pos + n + word_len);
                return Err(ParseError::new("UnexpectedToken", format!("Unexpected token '{}' in expression or statement.", span.text(self.src)), span));
            } else {
                Some((UnaryOp::Negate, n))
            }
        } else if rest.starts_with('+') {
            Some((UnaryOp::Plus, 1))
        } else {
            None
        };
        let Some((op, len)) = op else { return self.array() };
        let op_span = Span::new(self.pos, self.pos + len);
        self.pos += len;
        self.skip_space(true);
        if matches!(self.peek(), None | Some(';' | '|' | ')' | '}')) {
            let shown = op_span.text(self.src);
            return Err(ParseError::new("MissingExpressionAfterOperator", format!("Missing expression after unary operator '{shown}'."), op_span));
        }
        self.enter()?;
        let operand = self.unary();
        self.leave();
        let operand = operand?;
        Ok(Expr { span: Span::new(start, operand.span.end as usize), kind: ExprKind::Unary(op, Box::new(operand)) })
    }

    /// `a, b, c` (tighter than every operator but member access).
    fn array(&mut self) -> Result<Expr, ParseError> {
        let first = self.postfix_primary()?;
        self.skip_space(false);
        if self.peek() != Some(',') {
            return Ok(first);
        }
        let mut items = vec![first];
        while self.peek() == Some(',') {
            let comma = self.here();
            self.bump();
            self.skip_space(true);
            if matches!(self.peek(), None | Some(';' | '|' | ')' | '}' | ',' | '=')) {
                return Err(ParseError::new("MissingExpressionAfterToken", "Missing expression after ','.", comma));
            }
            items.push(self.postfix_primary()?);
            self.skip_space(false);
        }
        let span = items[0].span.to(items[items.len() - 1].span);
        Ok(Expr { kind: ExprKind::Array(items), span })
    }

    fn postfix_primary(&mut self) -> Result<Expr, ParseError> {
        let p = self.primary()?;
        self.postfix(p)
    }

    /// `.Name`, `.Method(…)` and `[i]` right after a value (no space between, as PowerShell requires).
    fn postfix(&mut self, mut e: Expr) -> Result<Expr, ParseError> {
        loop {
            if self.peek() == Some('.') && self.peek_at(1) != Some('.') {
                let dot = self.here();
                self.bump();
                let name = match self.peek() {
                    Some(c) if is_name_char(c) => {
                        let start = self.pos;
                        while self.peek().is_some_and(is_name_char) {
                            self.bump();
                        }
                        self.src[start..self.pos].to_owned()
                    }
                    Some(c) if is_single_quote(c) || is_double_quote(c) => match self.primary()?.kind {
                        ExprKind::String(s) => s,
                        ExprKind::Expandable(parts) if parts.iter().all(|p| matches!(p, StringPart::Text(_))) => {
                            parts.into_iter().map(|p| if let StringPart::Text(t) = p { t } else { String::new() }).collect()
                        }
                        _ => return Err(ParseError::new("NotSupported", "Member names with variables are not supported at psgate's prompt.", dot)),
                    },
                    _ => return Err(ParseError::new("MissingPropertyName", "Missing property name after reference operator.", dot)),
                };
                if self.peek() == Some('(') {
                    let open = self.here();
                    self.bump();
                    self.enter()?;
                    let mut args = Vec::new();
                    self.skip_space(true);
                    if self.peek() != Some(')') {
                        loop {
                            args.push(self.binary(1)?);
                            self.skip_space(true);
                            if self.peek() == Some(',') {
                                self.bump();
                                self.skip_space(true);
                                continue;
                            }
                            break;
                        }
                    }
                    self.leave();
                    if self.peek() != Some(')') {
                        return Err(ParseError::new("MissingEndParenthesisInMethodCall", "Missing ')' in method call.", open));
                    }
                    self.bump();
                    let span = Span::new(e.span.start as usize, self.pos);
                    e = Expr { kind: ExprKind::Method(Box::new(e), name, args), span };
                } else {
                    let span = Span::new(e.span.start as usize, self.pos);
                    e = Expr { kind: ExprKind::Member(Box::new(e), name), span };
                }
            } else if self.peek() == Some('[') {
                let open = self.here();
                self.bump();
                self.skip_space(true);
                if self.peek() == Some(']') {
                    return Err(ParseError::new("MissingArrayIndexExpression", "Array index expression is missing or not valid.", open));
                }
                let index = self.expression()?;
                self.skip_space(true);
                if self.peek() != Some(']') {
                    return Err(ParseError::new("MissingEndSquareBracket", "Missing ']' after array index expression.", open));
                }
                self.bump();
                let span = Span::new(e.span.start as usize, self.pos);
                e = Expr { kind: ExprKind::Index(Box::new(e), Box::new(index)), span };
            } else if self.at("::") {
                return Err(ParseError::new("NotSupported", "Static members (::) are not supported at psgate's prompt.", Span::new(self.pos, self.pos + 2)));
            } else {
                return Ok(e);
            }
        }
    }

    fn primary(&mut self) -> Result<Expr, ParseError> {
        let start = self.pos;
        let Some(c) = self.peek() else {
            return Err(ParseError::new("ExpectedExpression", "An expression was expected after '('.", self.here()));
        };
        match c {
            '$' if self.peek_at(1) == Some('(') => {
                let open = self.here();
                self.pos += 2;
                let body = self.group_statements(')', open, "MissingEndParenthesisInSubexpression", "Missing closing ')' in subexpression.")?;
                Ok(Expr { kind: ExprKind::SubExpression(body), span: self.span_from(start) })
            }
            '$' => {
                let name = self.variable()?;
                Ok(Expr { kind: ExprKind::Variable(name), span: self.span_from(start) })
            }
            '@' if self.peek_at(1) == Some('(') => {
                let open = self.here();
                self.pos += 2;
                let body = self.group_statements(')', open, "MissingEndParenthesisInExpression", "Missing closing ')' in expression.")?;
                Ok(Expr { kind: ExprKind::ArrayExpression(body), span: self.span_from(start) })
            }
            '@' if self.peek_at(1) == Some('{') => self.hashtable(),
            '@' if matches!(self.peek_at(1), Some(q) if is_single_quote(q) || is_double_quote(q)) => self.here_string(),
            '@' => {
                let span = Span::new(self.pos, self.pos + 1 + self.rest()[1..].find(ends_word).unwrap_or(self.rest().len() - 1));
                Err(ParseError::new("NotSupported", "Splatting (@name) is not supported at psgate's prompt.", span))
            }
            '(' => {
                let open = self.here();
                self.bump();
                self.enter()?;
                self.skip_space(true);
                if self.peek().is_none() {
                    self.leave();
                    return Err(ParseError::new("MissingEndParenthesisInExpression", "Missing closing ')' in expression.", Span::new(self.pos, self.pos)));
                }
                if self.peek() == Some(')') {
                    self.leave();
                    return Err(ParseError::new("ExpectedExpression", "An expression was expected after '('.", open));
                }
                let inner = if self.keyword().is_some() { self.statement().map(|s| (s, true)) } else { self.pipeline().map(|p| (Statement::Pipeline(p), false)) };
                self.leave();
                let (inner, _) = inner?;
                let Statement::Pipeline(pipeline) = inner else {
                    return Err(ParseError::new("NotSupported", "Only a pipeline can be inside ( ) at psgate's prompt; use $( ) for statements.", open));
                };
                self.skip_space(true);
                if self.peek() == Some('=') {
                    return Err(ParseError::new("NotSupported", "Assignments inside ( ) are not supported at psgate's prompt.", self.here()));
                }
                if self.peek() != Some(')') {
                    if self.peek().is_none() {
                        return Err(ParseError::new("MissingEndParenthesisInExpression", "Missing closing ')' in expression.", Span::new(self.pos, self.pos)));
                    }
                    let token = self.token_text();
                    return Err(ParseError::new("UnexpectedToken", format!("Unexpected token '{token}' in expression or statement."), self.token_span()));
                }
                self.bump();
                Ok(Expr { kind: ExprKind::Paren(Box::new(pipeline)), span: self.span_from(start) })
            }
            '{' => self.script_block(),
            '[' => {
                let end = self.rest().find(']').map_or(self.src.len(), |i| self.pos + i + 1);
                Err(ParseError::new("NotSupported", "Type literals and casts ([type]) are not supported at psgate's prompt.", Span::new(self.pos, end)))
            }
            c if is_single_quote(c) => self.single_quoted(),
            c if is_double_quote(c) => self.double_quoted(),
            c if c.is_ascii_digit() || c == '.' || dash_len(self.rest()).is_some() => {
                let word = self.number_ahead();
                match parse_number(word) {
                    Some(kind) => {
                        self.pos += word.len();
                        Ok(Expr { kind, span: self.span_from(start) })
                    }
                    None => {
                        let token = self.token_text();
                        Err(ParseError::new("UnexpectedToken", format!("Unexpected token '{token}' in expression or statement."), self.token_span()))
                    }
                }
            }
            _ => {
                let token = self.token_text();
                Err(ParseError::new("UnexpectedToken", format!("Unexpected token '{token}' in expression or statement."), self.token_span()))
            }
        }
    }

    /// Statements up to `close` (consumed), after an opening already consumed at `open`.
    fn group_statements(&mut self, close: char, open: Span, id: &'static str, message: &'static str) -> Result<Script, ParseError> {
        self.enter()?;
        let body = self.statements(Some(close));
        self.leave();
        let body = body?;
        if self.peek() != Some(close) {
            let _ = open;
            return Err(ParseError::new(id, message, Span::new(self.pos, self.pos)));
        }
        self.bump();
        Ok(body)
    }

    fn variable(&mut self) -> Result<String, ParseError> {
        let dollar = self.here();
        self.bump();
        if self.peek() == Some('{') {
            self.bump();
            let start = self.pos;
            let Some(end) = self.rest().find('}') else {
                return Err(ParseError::new("IncompleteDollarVariableReference", "Missing '}' in the variable name.", dollar));
            };
            self.pos += end + 1;
            return Ok(strip_scope(&self.src[start..start + end]).to_owned());
        }
        let start = self.pos;
        match self.peek() {
            Some('$' | '^') => {
                self.bump();
            }
            Some(c) if is_variable_char(c) => {
                while self.peek().is_some_and(is_variable_char) {
                    self.bump();
                }
                // One scope or drive qualifier: `$global:x`, `$env:USERNAME`, `$using:n`.
                if self.peek() == Some(':') && self.peek_at(1).is_some_and(is_variable_char) {
                    self.bump();
                    while self.peek().is_some_and(is_variable_char) {
                        self.bump();
                    }
                }
            }
            _ => {
                return Err(ParseError::new("InvalidVariableReference", "Variable reference is not valid. '$' was not followed by a valid variable name character. Consider using ${} to delimit the name.", dollar));
            }
        }
        Ok(strip_scope(&self.src[start..self.pos]).to_owned())
    }

    fn single_quoted(&mut self) -> Result<Expr, ParseError> {
        let start = self.pos;
        self.bump();
        let mut text = String::new();
        loop {
            match self.bump() {
                None => {
                    return Err(ParseError::new("TerminatorExpectedAtEndOfString", "The string is missing the terminator: '.", Span::new(start, start + 1)));
                }
                Some(c) if is_single_quote(c) => {
                    if self.peek().is_some_and(is_single_quote) {
                        self.bump();
                        text.push('\'');
                    } else {
                        break;
                    }
                }
                Some(c) => text.push(c),
            }
        }
        Ok(Expr { kind: ExprKind::String(text), span: self.span_from(start) })
    }

    fn double_quoted(&mut self) -> Result<Expr, ParseError> {
        let start = self.pos;
        self.bump();
        let mut parts = Vec::new();
        let mut text = String::new();
        loop {
            let Some(c) = self.peek() else {
                return Err(ParseError::new("TerminatorExpectedAtEndOfString", "The string is missing the terminator: \".", Span::new(start, start + 1)));
            };
            if is_double_quote(c) {
                self.bump();
                if self.peek().is_some_and(is_double_quote) {
                    self.bump();
                    text.push('"');
                    continue;
                }
                break;
            }
            self.string_char(&mut parts, &mut text)?;
        }
        if !text.is_empty() || parts.is_empty() {
            parts.push(StringPart::Text(text));
        }
        Ok(Expr { kind: ExprKind::Expandable(parts), span: self.span_from(start) })
    }

    /// One character (or escape, or `$…`) of an expandable string.
    fn string_char(&mut self, parts: &mut Vec<StringPart>, text: &mut String) -> Result<(), ParseError> {
        let Some(c) = self.bump() else { return Ok(()) };
        match c {
            '`' => {
                let Some(e) = self.bump() else { return Ok(()) };
                match e {
                    '0' => text.push('\0'),
                    'a' => text.push('\u{7}'),
                    'b' => text.push('\u{8}'),
                    'e' => text.push('\u{1b}'),
                    'f' => text.push('\u{c}'),
                    'n' => text.push('\n'),
                    'r' => text.push('\r'),
                    't' => text.push('\t'),
                    'v' => text.push('\u{b}'),
                    'u' if self.peek() == Some('{') => {
                        let at = self.pos;
                        let close = self.rest().find('}');
                        let code = close.and_then(|i| u32::from_str_radix(&self.rest()[1..i], 16).ok()).and_then(char::from_u32);
                        match (close, code) {
                            (Some(i), Some(ch)) => {
                                self.pos += i + 1;
                                text.push(ch);
                            }
                            _ => return Err(ParseError::new("InvalidUnicodeEscapeSequence", "The Unicode escape sequence is not valid.", Span::new(at, at + 1))),
                        }
                    }
                    other => text.push(other),
                }
            }
            '$' if self.peek() == Some('(') => {
                let open = Span::new(self.pos - 1, self.pos + 1);
                self.bump();
                let body = self.group_statements(')', open, "MissingEndParenthesisInSubexpression", "Missing closing ')' in subexpression.")?;
                flush(parts, text);
                parts.push(StringPart::SubExpression(body));
            }
            '$' if self.peek().is_some_and(|c| is_variable_char(c) || c == '{') => {
                self.pos -= 1;
                let name = self.variable()?;
                flush(parts, text);
                parts.push(StringPart::Variable(name));
            }
            other => text.push(other),
        }
        Ok(())
    }

    /// `@' … '@` and `@" … "@`: the text between the line after the opening and the line of the closing.
    fn here_string(&mut self) -> Result<Expr, ParseError> {
        let start = self.pos;
        self.bump();
        let quote = self.bump().unwrap_or('"');
        let expandable = is_double_quote(quote);
        let line_end = self.rest().find('\n');
        let opening_rest = &self.rest()[..line_end.unwrap_or(self.rest().len())];
        if !opening_rest.trim().is_empty() || line_end.is_none() {
            return Err(ParseError::new("UnexpectedCharactersAfterHereStringHeader", "No characters are allowed after a here-string header but before the end of the line.", Span::new(start, start + 2)));
        }
        self.pos += line_end.unwrap_or(0) + 1;
        let body_start = self.pos;
        let closing = if expandable { ["\n\"@", "\n\u{201d}@"] } else { ["\n'@", "\n\u{2019}@"] };
        let found = closing.iter().filter_map(|c| self.rest().find(c)).min();
        let Some(end) = found else {
            return Err(ParseError::new("TerminatorExpectedAtEndOfString", format!("The string is missing the terminator: {}@.", if expandable { '"' } else { '\'' }), Span::new(start, start + 2)));
        };
        let body_end = body_start + end;
        let body = self.src[body_start..body_end].strip_suffix('\r').unwrap_or(&self.src[body_start..body_end]);
        if !expandable {
            let text = body.to_owned();
            self.pos = body_end + 1;
            self.bump();
            self.bump();
            return Ok(Expr { kind: ExprKind::String(text), span: self.span_from(start) });
        }
        let mut sub = Parser { src: &self.src[..body_start + body.len()], pos: body_start, depth: self.depth };
        let mut parts = Vec::new();
        let mut text = String::new();
        while sub.pos < sub.src.len() {
            sub.string_char(&mut parts, &mut text)?;
        }
        if !text.is_empty() || parts.is_empty() {
            parts.push(StringPart::Text(text));
        }
        self.pos = body_end + 1;
        self.bump();
        self.bump();
        Ok(Expr { kind: ExprKind::Expandable(parts), span: self.span_from(start) })
    }

    fn hashtable(&mut self) -> Result<Expr, ParseError> {
        let start = self.pos;
        let open = Span::new(self.pos, self.pos + 2);
        self.pos += 2;
        self.enter()?;
        let mut entries = Vec::new();
        loop {
            self.skip_space(true);
            while self.peek() == Some(';') {
                self.bump();
                self.skip_space(true);
            }
            match self.peek() {
                Some('}') => break,
                None => {
                    self.leave();
                    return Err(ParseError::new("MissingEndCurlyBrace", "Missing closing '}' in statement block or type definition.", open));
                }
                _ => {}
            }
            let key = match self.peek() {
                Some(c) if is_single_quote(c) || is_double_quote(c) || c == '$' || c == '(' => self.primary()?,
                _ => {
                    let key_start = self.pos;
                    while self.peek().is_some_and(|c| !c.is_whitespace() && c != '=' && c != ';' && c != '}') {
                        self.bump();
                    }
                    if self.pos == key_start {
                        self.leave();
                        return Err(ParseError::new("MissingKeyInHashLiteral", "Missing key before '=' in hash literal.", self.here()));
                    }
                    Expr { kind: ExprKind::BareWord(self.src[key_start..self.pos].to_owned()), span: self.span_from(key_start) }
                }
            };
            self.skip_space(false);
            if self.peek() != Some('=') {
                self.leave();
                return Err(ParseError::new("MissingEqualsInHashLiteral", "Missing '=' operator after key in hash literal.", self.here()));
            }
            self.bump();
            self.skip_space(true);
            if matches!(self.peek(), None | Some('}' | ';')) {
                self.leave();
                return Err(ParseError::new("MissingStatementInHashLiteral", "Missing statement after '=' in hash literal.", self.here()));
            }
            let value = self.pipeline()?;
            entries.push((key, value));
            self.skip_space(false);
            if !matches!(self.peek(), Some('}' | ';' | '\n' | '\r')) {
                self.leave();
                return Err(ParseError::new("MissingEndCurlyBrace", "Missing closing '}' in statement block or type definition.", open));
            }
        }
        self.leave();
        self.bump();
        Ok(Expr { kind: ExprKind::Hashtable(entries), span: self.span_from(start) })
    }

    /// `{ … }`: the matching brace is found by [`scan_block`], then the body parsed where psgate can.
    fn script_block(&mut self) -> Result<Expr, ParseError> {
        let start = self.pos;
        let Some(close) = scan_block(self.src, start) else {
            return Err(ParseError::new("MissingEndCurlyBrace", "Missing closing '}' in statement block or type definition.", Span::new(start, start + 1)));
        };
        let text = self.src[start + 1..close].to_owned();
        let body = if self.depth + 1 > MAX_DEPTH {
            Err(ParseError::new("ScriptTooComplex", format!("The line is nested more than {MAX_DEPTH} levels deep."), Span::new(start, start + 1)))
        } else {
            let mut inner = Parser { src: &self.src[..close], pos: start + 1, depth: self.depth + 1 };
            inner.statements(None)
        };
        self.pos = close + 1;
        Ok(Expr { kind: ExprKind::ScriptBlock(ScriptBlock { text, body }), span: self.span_from(start) })
    }
}

fn flush(parts: &mut Vec<StringPart>, text: &mut String) {
    if !text.is_empty() {
        parts.push(StringPart::Text(std::mem::take(text)));
    }
}

fn strip_scope(name: &str) -> &str {
    for scope in ["global:", "script:", "local:", "private:"] {
        if name.len() > scope.len() && name.get(..scope.len()).is_some_and(|p| p.eq_ignore_ascii_case(scope)) {
            return name.get(scope.len()..).unwrap_or(name);
        }
    }
    name
}

fn precedence(op: BinaryOp) -> u8 {
    match op {
        BinaryOp::And | BinaryOp::Or | BinaryOp::Xor => 0,
        BinaryOp::Compare(..) => 1,
        BinaryOp::Add | BinaryOp::Subtract => 2,
        BinaryOp::Multiply | BinaryOp::Divide | BinaryOp::Remainder => 3,
        BinaryOp::Format => 4,
        BinaryOp::Range => 5,
    }
}

/// The targets of an assignment: `$a` or `$a, $b`.
fn assignment_targets(pipeline: &Pipeline) -> Result<Vec<Target>, ParseError> {
    let invalid = |span| {
        ParseError::new(
            "InvalidLeftHandSide",
            "The assignment expression is not valid. The input to an assignment operator must be an object that is able to accept assignments, such as a variable or a property.",
            span,
        )
    };
    let [Element::Expression(e)] = pipeline.elements.as_slice() else { return Err(invalid(pipeline.span)) };
    let one = |e: &Expr| match &e.kind {
        ExprKind::Variable(name) if !is_constant_variable(name) => Ok(Target { name: name.clone(), span: e.span }),
        _ => Err(invalid(e.span)),
    };
    match &e.kind {
        ExprKind::Array(items) => items.iter().map(one).collect(),
        _ => Ok(vec![one(e)?]),
    }
}

/// `$true`, `$false`, `$null`: never assigned.
pub(crate) fn is_constant_variable(name: &str) -> bool {
    ["true", "false", "null"].iter().any(|c| c.eq_ignore_ascii_case(name))
}

/// A number as PowerShell reads it: decimal or `0x` hex, a fraction or exponent, a `kb`…`pb` multiplier, an
/// optional leading dash. `None`: not a number (in command mode, a bare word).
pub(crate) fn parse_number(word: &str) -> Option<ExprKind> {
    let (negative, body) = match dash_len(word) {
        Some(n) => (true, &word[n..]),
        None => (false, word),
    };
    if body.is_empty() || !body.starts_with(|c: char| c.is_ascii_digit() || c == '.') {
        return None;
    }
    let lower = body.to_ascii_lowercase();
    let (digits, multiplier) = [("kb", 1i64 << 10), ("mb", 1 << 20), ("gb", 1 << 30), ("tb", 1 << 40), ("pb", 1 << 50)]
        .iter()
        .find_map(|(s, m)| lower.strip_suffix(s).map(|d| (d.to_owned(), *m)))
        .unwrap_or((lower.clone(), 1));
    let digits = digits.strip_suffix('l').unwrap_or(&digits);
    let sign = if negative { -1 } else { 1 };
    if let Some(hex) = digits.strip_prefix("0x") {
        let n = i64::from_str_radix(hex, 16).ok()?;
        return n.checked_mul(multiplier).and_then(|n| n.checked_mul(sign)).map(ExprKind::Int);
    }
    if !digits.chars().all(|c| c.is_ascii_digit() || matches!(c, '.' | 'e' | '+' | '-')) || !digits.starts_with(|c: char| c.is_ascii_digit() || c == '.') {
        return None;
    }
    if digits.chars().all(|c| c.is_ascii_digit())
        && let Some(n) = digits.parse::<i64>().ok().and_then(|n| n.checked_mul(multiplier)).and_then(|n| n.checked_mul(sign))
    {
        return Some(ExprKind::Int(n));
    }
    let f: f64 = digits.parse().ok()?;
    if !f.is_finite() {
        return None;
    }
    Some(ExprKind::Double(f * multiplier as f64 * sign as f64))
}

/// The position of the `}` that closes the `{` at `open`, skipping strings, here-strings, comments, escapes and
/// nested blocks. Bounded: nesting deeper than [`MAX_DEPTH`] gives `None`, as an unclosed block does.
pub(crate) fn scan_block(src: &str, open: usize) -> Option<usize> {
    let mut scan = Scan { src, pos: open + 1, depth: 0 };
    scan.code('}')
}

struct Scan<'a> {
    src: &'a str,
    pos: usize,
    depth: u32,
}

impl Scan<'_> {
    fn rest(&self) -> &str {
        self.src.get(self.pos..).unwrap_or_default()
    }

    fn next(&mut self) -> Option<char> {
        let c = self.rest().chars().next()?;
        self.pos += c.len_utf8();
        Some(c)
    }

    /// Code until `close`; returns its position.
    fn code(&mut self, close: char) -> Option<usize> {
        self.depth += 1;
        if self.depth > MAX_DEPTH * 4 {
            return None;
        }
        let mut previous = ' ';
        loop {
            let at = self.pos;
            let c = self.next()?;
            match c {
                c if c == close => {
                    self.depth -= 1;
                    return Some(at);
                }
                '`' => {
                    self.next();
                }
                '{' => {
                    self.code('}')?;
                }
                '(' => {
                    self.code(')')?;
                }
                '<' if self.rest().starts_with('#') => {
                    let end = self.rest().find("#>")?;
                    self.pos += end + 2;
                }
                '#' if previous.is_whitespace() || matches!(previous, ';' | '{' | '(' | '|' | '}' | ')') => {
                    let end = self.rest().find(['\n', '\r']).unwrap_or(self.rest().len());
                    self.pos += end;
                }
                '@' if self.rest().starts_with(|q: char| is_single_quote(q) || is_double_quote(q)) && self.rest()[1..].trim_start_matches([' ', '\t', '\r']).starts_with('\n') => {
                    let q = self.next()?;
                    let closing = if is_double_quote(q) { "\n\"@" } else { "\n'@" };
                    let end = self.rest().find(closing)?;
                    self.pos += end + closing.len();
                }
                q if is_single_quote(q) => loop {
                    let c = self.next()?;
                    if is_single_quote(c) {
                        if self.rest().starts_with(is_single_quote) {
                            self.next();
                        } else {
                            break;
                        }
                    }
                },
                q if is_double_quote(q) => loop {
                    let c = self.next()?;
                    match c {
                        '`' => {
                            self.next();
                        }
                        '$' if self.rest().starts_with('(') => {
                            self.next();
                            self.code(')')?;
                        }
                        c if is_double_quote(c) => {
                            if self.rest().starts_with(is_double_quote) {
                                self.next();
                            } else {
                                break;
                            }
                        }
                        _ => {}
                    }
                },
                _ => {}
            }
            previous = c;
        }
    }
}

/// Whether a line is unfinished rather than wrong: an unclosed block, parenthesis, string or here-string, or a
/// trailing pipe or operator, so a console reads the next line (`>> `) instead of reporting an error.
pub fn is_incomplete(text: &str) -> bool {
    let Err(e) = parse(text) else { return false };
    let end = text.trim_end().len();
    match e.id {
        "MissingEndCurlyBrace" | "TerminatorExpectedAtEndOfString" | "UnexpectedCharactersAfterHereStringHeader" => true,
        "MissingEndParenthesisInExpression" | "MissingEndParenthesisInSubexpression" | "EmptyPipeElement" | "ExpectedValueExpression" | "MissingExpressionAfterToken" => {
            e.span.end as usize >= end
        }
        _ => false,
    }
}
