//! Colours in text: ANSI escape sequences (what pwsh 7's `$PSStyle`, and native commands, write) and the
//! `ConsoleColor`s of Write-Host.
//!
//! SGR sequences (`ESC [ … m`: bold, dim, italic, underline, inverse, strike-through, the 8 + 8 colours, the
//! 256-colour palette `38;5;n` and true colour `38;2;r;g;b`, each for foreground and background, and their
//! resets) become styled [`Span`]s; every other escape sequence (cursor moves, erasing, OSC titles and links,
//! DCS, charset switches) is removed, so nothing of an escape sequence is ever shown. The colours are Windows
//! Terminal's "Campbell" scheme, which the console's CSS uses too.

use std::borrow::Cow;

/// A colour: one of the 256 of the palette (0–15 the console colours), or true colour.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Color {
    /// `30–37`, `90–97` (0–15) or `38;5;n`.
    Palette(u8),
    /// `38;2;r;g;b`.
    Rgb(u8, u8, u8),
}

/// The 16 console colours in ANSI order (black, red, green, yellow, blue, magenta, cyan, white, then bright).
const CAMPBELL: [(u8, u8, u8); 16] = [
    (0x0c, 0x0c, 0x0c),
    (0xc5, 0x0f, 0x1f),
    (0x13, 0xa1, 0x0e),
    (0xc1, 0x9c, 0x00),
    (0x00, 0x37, 0xda),
    (0x88, 0x17, 0x98),
    (0x3a, 0x96, 0xdd),
    (0xcc, 0xcc, 0xcc),
    (0x76, 0x76, 0x76),
    (0xe7, 0x48, 0x56),
    (0x16, 0xc6, 0x0c),
    (0xf9, 0xf1, 0xa5),
    (0x3b, 0x78, 0xff),
    (0xb4, 0x00, 0x9e),
    (0x61, 0xd6, 0xd6),
    (0xf2, 0xf2, 0xf2),
];

/// `System.ConsoleColor` (Black = 0 … White = 15) → the ANSI palette index Windows maps it to.
const CONSOLE_TO_ANSI: [u8; 16] = [0, 4, 2, 6, 1, 5, 3, 7, 8, 12, 10, 14, 9, 13, 11, 15];

/// The `System.ConsoleColor` names, by value.
const CONSOLE_NAMES: [&str; 16] = [
    "Black",
    "DarkBlue",
    "DarkGreen",
    "DarkCyan",
    "DarkRed",
    "DarkMagenta",
    "DarkYellow",
    "Gray",
    "DarkGray",
    "Blue",
    "Green",
    "Cyan",
    "Red",
    "Magenta",
    "Yellow",
    "White",
];

impl Color {
    /// A `System.ConsoleColor` by its value (`-1`, the host's default, and anything else out of range: none).
    pub fn console(value: i64) -> Option<Color> {
        let i = usize::try_from(value).ok()?;
        CONSOLE_TO_ANSI.get(i).map(|&a| Color::Palette(a))
    }

    /// A `System.ConsoleColor` by its name, ignoring case.
    pub fn console_named(name: &str) -> Option<Color> {
        let i = CONSOLE_NAMES.iter().position(|n| n.eq_ignore_ascii_case(name.trim()))?;
        Color::console(i as i64)
    }

    /// The colour's red, green and blue.
    pub fn rgb(self) -> (u8, u8, u8) {
        match self {
            Color::Rgb(r, g, b) => (r, g, b),
            Color::Palette(n @ 0..=15) => CAMPBELL[usize::from(n)],
            Color::Palette(n @ 16..=231) => {
                let level = |c: u8| if c == 0 { 0 } else { 55 + c * 40 };
                let n = n - 16;
                (level(n / 36), level(n / 6 % 6), level(n % 6))
            }
            Color::Palette(n) => {
                let grey = 8 + (n - 232) * 10;
                (grey, grey, grey)
            }
        }
    }

    /// `#rrggbb`.
    pub fn css(self) -> String {
        let (r, g, b) = self.rgb();
        format!("#{r:02x}{g:02x}{b:02x}")
    }
}

/// How a run of text is drawn. The default is the console's own colours, plain.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Style {
    /// Foreground colour.
    pub fg: Option<Color>,
    /// Background colour.
    pub bg: Option<Color>,
    /// `1`
    pub bold: bool,
    /// `2`
    pub dim: bool,
    /// `3`
    pub italic: bool,
    /// `4`
    pub underline: bool,
    /// `7`: foreground and background swapped.
    pub inverse: bool,
    /// `9`
    pub strike: bool,
}

impl Style {
    /// A style with these Write-Host colours.
    pub fn colors(fg: Option<Color>, bg: Option<Color>) -> Style {
        Style { fg, bg, ..Style::default() }
    }

    /// Whether it is the console's default.
    pub fn is_plain(&self) -> bool {
        *self == Style::default()
    }

    /// The inline CSS that draws it (empty for the default style).
    pub fn css(&self) -> String {
        let (mut fg, mut bg) = (self.fg.map(Color::css), self.bg.map(Color::css));
        if self.inverse {
            // The console's own colours (style.css: --con-text on --con-bg) swap too.
            (fg, bg) = (Some(bg.unwrap_or_else(|| "#0c0c0c".into())), Some(fg.unwrap_or_else(|| "#cccccc".into())));
        }
        let mut css = String::new();
        if let Some(c) = fg {
            css.push_str(&format!("color:{c};"));
        }
        if let Some(c) = bg {
            css.push_str(&format!("background:{c};"));
        }
        if self.bold {
            css.push_str("font-weight:bold;");
        }
        if self.dim {
            css.push_str("opacity:0.7;");
        }
        if self.italic {
            css.push_str("font-style:italic;");
        }
        match (self.underline, self.strike) {
            (true, true) => css.push_str("text-decoration:underline line-through;"),
            (true, false) => css.push_str("text-decoration:underline;"),
            (false, true) => css.push_str("text-decoration:line-through;"),
            (false, false) => {}
        }
        css
    }

    /// Applies one SGR sequence's parameters (`1;31`, `38;5;208`, `38:2::255:0:0`, empty = reset).
    fn apply(&mut self, params: &str) {
        let num = |s: &str| s.parse::<u32>().unwrap_or(0).min(u32::from(u16::MAX));
        let groups: Vec<&str> = params.split(';').collect();
        let mut i = 0;
        while i < groups.len() {
            let group = groups[i];
            i += 1;
            if group.contains(':') {
                // ITU T.416 sub-parameters: `38:5:n`, `38:2:[colour space]:r:g:b`, `4:3` (curly underline).
                let sub: Vec<u32> = group.split(':').map(num).collect();
                match sub.as_slice() {
                    [c @ (38 | 48), rest @ ..] => {
                        let colour = match rest {
                            [5, n, ..] => u8::try_from(*n).ok().map(Color::Palette),
                            [2, _, r, g, b, ..] | [2, r, g, b] => rgb(*r, *g, *b),
                            _ => None,
                        };
                        self.set_extended(*c, colour);
                    }
                    [4, 0, ..] => self.underline = false,
                    [4, ..] => self.underline = true,
                    _ => {}
                }
                continue;
            }
            match num(group) {
                0 => *self = Style::default(),
                1 => self.bold = true,
                2 => self.dim = true,
                3 => self.italic = true,
                4 | 21 => self.underline = true,
                7 => self.inverse = true,
                9 => self.strike = true,
                22 => (self.bold, self.dim) = (false, false),
                23 => self.italic = false,
                24 => self.underline = false,
                27 => self.inverse = false,
                29 => self.strike = false,
                n @ 30..=37 => self.fg = Some(Color::Palette((n - 30) as u8)),
                39 => self.fg = None,
                n @ 40..=47 => self.bg = Some(Color::Palette((n - 40) as u8)),
                49 => self.bg = None,
                n @ 90..=97 => self.fg = Some(Color::Palette((n - 90 + 8) as u8)),
                n @ 100..=107 => self.bg = Some(Color::Palette((n - 100 + 8) as u8)),
                c @ (38 | 48) => {
                    let arg = |k: usize| groups.get(i + k).map(|s| num(s));
                    let colour = match arg(0) {
                        Some(5) => {
                            let c = arg(1).and_then(|n| u8::try_from(n).ok()).map(Color::Palette);
                            i += 2;
                            c
                        }
                        Some(2) => {
                            let c = match (arg(1), arg(2), arg(3)) {
                                (Some(r), Some(g), Some(b)) => rgb(r, g, b),
                                _ => None,
                            };
                            i += 4;
                            c
                        }
                        _ => None,
                    };
                    self.set_extended(c, colour);
                }
                _ => {}
            }
        }
    }

    fn set_extended(&mut self, code: u32, colour: Option<Color>) {
        if let Some(c) = colour {
            if code == 38 {
                self.fg = Some(c);
            } else {
                self.bg = Some(c);
            }
        }
    }
}

fn rgb(r: u32, g: u32, b: u32) -> Option<Color> {
    Some(Color::Rgb(u8::try_from(r).ok()?, u8::try_from(g).ok()?, u8::try_from(b).ok()?))
}

/// A run of text in one style.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Span {
    /// The text (no escape sequences, no line breaks).
    pub text: String,
    /// How it is drawn.
    pub style: Style,
}

impl Span {
    /// Unstyled text.
    pub fn plain(text: impl Into<String>) -> Span {
        Span { text: text.into(), style: Style::default() }
    }
}

/// The pieces of a text: printable runs and escape sequences.
enum Piece<'a> {
    Text(&'a str),
    /// An SGR sequence's parameters.
    Sgr(&'a str),
    /// Anything else escaped, or a control character: dropped.
    Skip,
}

/// Splits `s` at its escape sequences (and at carriage returns, unless `keep_cr`). An unterminated sequence at
/// the end is dropped whole.
fn pieces(s: &str, keep_cr: bool) -> impl Iterator<Item = Piece<'_>> {
    let mut rest = s;
    let stops: &[char] = if keep_cr { &['\x1b', '\u{9b}', '\x07', '\0'] } else { &['\x1b', '\u{9b}', '\r', '\x07', '\0'] };
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let start = rest.find(stops).unwrap_or(rest.len());
        if start > 0 {
            let (text, tail) = rest.split_at(start);
            rest = tail;
            return Some(Piece::Text(text));
        }
        let mut chars = rest.char_indices();
        let (_, first) = chars.next()?;
        let csi_at = match first {
            '\x1b' => match chars.next() {
                Some((i, '[')) => Some(i + 1),
                Some((i, ']' | 'P' | 'X' | '^' | '_')) => {
                    // OSC, DCS, SOS, PM, APC: a string ended by BEL or ST (ESC \).
                    let body = &rest[i + 1..];
                    let end = body.find(['\x07', '\x1b']).map_or(body.len(), |e| {
                        e + if body[e..].starts_with("\x1b\\") { 2 } else if body[e..].starts_with('\x07') { 1 } else { 0 }
                    });
                    rest = &body[end..];
                    return Some(Piece::Skip);
                }
                Some((i, c)) => {
                    // ESC, intermediates (0x20–0x2F), one final character: charset switches, ESC 7, ESC c.
                    let mut end = i + c.len_utf8();
                    if ('\x20'..='\x2f').contains(&c) {
                        let tail = &rest[end..];
                        let more = tail.find(|ch: char| !('\x20'..='\x2f').contains(&ch)).unwrap_or(tail.len());
                        end += more;
                        end += tail[more..].chars().next().map_or(0, char::len_utf8);
                    }
                    rest = &rest[end..];
                    return Some(Piece::Skip);
                }
                None => {
                    rest = "";
                    return Some(Piece::Skip);
                }
            },
            '\u{9b}' => Some(first.len_utf8()),
            _ => None,
        };
        let Some(at) = csi_at else {
            rest = &rest[first.len_utf8()..];
            return Some(Piece::Skip);
        };
        // CSI: parameter bytes 0x30–0x3F, intermediate bytes 0x20–0x2F, one final byte 0x40–0x7E.
        let body = &rest[at..];
        let params_end = body.find(|c: char| !('\x30'..='\x3f').contains(&c)).unwrap_or(body.len());
        let inter_end = params_end + body[params_end..].find(|c: char| !('\x20'..='\x2f').contains(&c)).unwrap_or(body.len() - params_end);
        let Some(fin) = body[inter_end..].chars().next() else {
            rest = "";
            return Some(Piece::Skip);
        };
        rest = &body[inter_end + fin.len_utf8()..];
        let params = &body[..params_end];
        let private = params.starts_with(['<', '=', '>', '?']);
        if fin == 'm' && inter_end == params_end && !private {
            Some(Piece::Sgr(params))
        } else {
            Some(Piece::Skip)
        }
    })
}

/// Reads lines of text, keeping the style from one line to the next as a terminal does.
#[derive(Clone, Copy, Debug, Default)]
pub struct Parser {
    /// The style in effect.
    pub style: Style,
}

impl Parser {
    /// A parser starting with `style` (Write-Host's colours; the default otherwise).
    pub fn new(style: Style) -> Parser {
        Parser { style }
    }

    /// One line (no `\n` in it) as spans, adjacent runs of one style merged, empty runs left out.
    pub fn line(&mut self, line: &str) -> Vec<Span> {
        let mut spans: Vec<Span> = Vec::new();
        for piece in pieces(line, false) {
            match piece {
                Piece::Text(t) => match spans.last_mut() {
                    Some(last) if last.style == self.style => last.text.push_str(t),
                    _ => spans.push(Span { text: t.to_owned(), style: self.style }),
                },
                Piece::Sgr(p) => self.style.apply(p),
                Piece::Skip => {}
            }
        }
        spans
    }
}

/// Text without its escape sequences (for table cells, list values, copied text); line breaks stay.
pub fn strip(s: &str) -> Cow<'_, str> {
    if !s.contains(['\x1b', '\u{9b}', '\x07', '\0']) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len());
    for piece in pieces(s, true) {
        if let Piece::Text(t) = piece {
            out.push_str(t);
        }
    }
    Cow::Owned(out)
}

/// The text of spans.
pub fn text(spans: &[Span]) -> String {
    spans.iter().map(|s| s.text.as_str()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(s: &str) -> Vec<Span> {
        Parser::default().line(s)
    }

    fn fg(c: Color) -> Style {
        Style { fg: Some(c), ..Style::default() }
    }

    #[test]
    fn plain_text_is_one_span() {
        assert_eq!(line("hello"), vec![Span::plain("hello")]);
        assert_eq!(line(""), vec![]);
    }

    #[test]
    fn the_16_colours_for_foreground_and_background() {
        assert_eq!(line("\x1b[31mred\x1b[0m plain"), vec![Span { text: "red".into(), style: fg(Color::Palette(1)) }, Span::plain(" plain")]);
        assert_eq!(line("\x1b[92mx")[0].style.fg, Some(Color::Palette(10)));
        assert_eq!(line("\x1b[44mx")[0].style.bg, Some(Color::Palette(4)));
        assert_eq!(line("\x1b[103mx")[0].style.bg, Some(Color::Palette(11)));
        assert_eq!(line("\x1b[31;39mx")[0].style, Style::default());
        assert_eq!(line("\x1b[41;49mx")[0].style, Style::default());
    }

    #[test]
    fn palette_and_true_colour() {
        assert_eq!(line("\x1b[38;5;208mx")[0].style.fg, Some(Color::Palette(208)));
        assert_eq!(line("\x1b[48;5;232mx")[0].style.bg, Some(Color::Palette(232)));
        assert_eq!(line("\x1b[38;2;255;128;0mx")[0].style.fg, Some(Color::Rgb(255, 128, 0)));
        assert_eq!(line("\x1b[48;2;1;2;3;1mx")[0].style, Style { bg: Some(Color::Rgb(1, 2, 3)), bold: true, ..Style::default() });
        assert_eq!(line("\x1b[38:2::10:20:30mx")[0].style.fg, Some(Color::Rgb(10, 20, 30)));
        assert_eq!(line("\x1b[38:5:9mx")[0].style.fg, Some(Color::Palette(9)));
        // Out of range or cut short: ignored, the text still shows.
        assert_eq!(line("\x1b[38;2;300;0;0mx"), vec![Span::plain("x")]);
        assert_eq!(line("\x1b[38;5mx"), vec![Span::plain("x")]);
        assert_eq!(Color::Palette(208).css(), "#ff8700");
        assert_eq!(Color::Palette(232).css(), "#080808");
        assert_eq!(Color::Palette(9).css(), "#e74856");
    }

    #[test]
    fn attributes_and_their_resets() {
        let s = line("\x1b[1;4;3;9;7;2mx")[0].style;
        assert!(s.bold && s.underline && s.italic && s.strike && s.inverse && s.dim);
        assert_eq!(line("\x1b[1;4;3;9;7;2m\x1b[22;24;23;29;27mx")[0].style, Style::default());
        assert_eq!(line("\x1b[1;31m\x1b[mx")[0].style, Style::default(), "an empty SGR resets");
        assert_eq!(
            Style { fg: Some(Color::Palette(1)), bold: true, underline: true, ..Style::default() }.css(),
            "color:#c50f1f;font-weight:bold;text-decoration:underline;"
        );
        assert_eq!(Style { inverse: true, ..Style::default() }.css(), "color:#0c0c0c;background:#cccccc;");
    }

    #[test]
    fn other_sequences_are_stripped_never_shown() {
        assert_eq!(line("\x1b[2J\x1b[1;1Hclear\x1b[K"), vec![Span::plain("clear")]);
        assert_eq!(line("\x1b]0;title\x07after"), vec![Span::plain("after")]);
        assert_eq!(line("\x1b]8;;https://x.invalid\x1b\\link\x1b]8;;\x1b\\"), vec![Span::plain("link")]);
        assert_eq!(line("\x1b(Bcharset\x1b7\x1b8"), vec![Span::plain("charset")]);
        assert_eq!(line("\x1b[?25lhidden cursor\x1b[?25h"), vec![Span::plain("hidden cursor")]);
        assert_eq!(line("cut\x1b["), vec![Span::plain("cut")]);
        assert_eq!(line("cut\x1b"), vec![Span::plain("cut")]);
        assert_eq!(line("osc\x1b]never ends"), vec![Span::plain("osc")]);
        assert_eq!(line("\u{9b}32mc1"), vec![Span { text: "c1".into(), style: fg(Color::Palette(2)) }]);
        assert_eq!(line("a\rb\x07"), vec![Span::plain("ab")]);
        assert_eq!(strip("\x1b[32mgreen\x1b[0m\r\nnext"), "green\r\nnext");
        assert!(matches!(strip("plain"), Cow::Borrowed("plain")));
    }

    #[test]
    fn the_style_carries_over_to_the_next_line() {
        let mut p = Parser::default();
        assert_eq!(p.line("\x1b[33mone"), vec![Span { text: "one".into(), style: fg(Color::Palette(3)) }]);
        assert_eq!(p.line("two\x1b[0m"), vec![Span { text: "two".into(), style: fg(Color::Palette(3)) }]);
        assert_eq!(p.line("three"), vec![Span::plain("three")]);
    }

    #[test]
    fn adjacent_runs_of_one_style_merge() {
        assert_eq!(line("a\x1b[31m\x1b[39mb"), vec![Span::plain("ab")]);
        assert_eq!(text(&line("\x1b[31ma\x1b[32mb")), "ab");
    }

    #[test]
    fn console_colours_are_windows_mapping() {
        assert_eq!(Color::console(12), Some(Color::Palette(9)), "Red is the bright red");
        assert_eq!(Color::console(4), Some(Color::Palette(1)), "DarkRed is the dark one");
        assert_eq!(Color::console(14), Some(Color::Palette(11)));
        assert_eq!(Color::console(-1), None);
        assert_eq!(Color::console(16), None);
        assert_eq!(Color::console_named("darkyellow"), Some(Color::Palette(3)));
        assert_eq!(Color::console_named("Purple"), None);
    }

    #[test]
    fn garbage_never_panics() {
        for s in ["\x1b[;;;m", "\x1b[38;2m", "\x1b[48;5;999m", "\x1b[99999999999999999999m", "\x1b[38:2m", "é\x1b[31mé\x1b]é", "\x1b\u{e9}x", "\x1b[\u{e9}"] {
            let _ = line(s);
            let _ = strip(s);
        }
    }
}
