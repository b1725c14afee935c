//! Text forms of the primitive types (MS-PSRP 2.2.5.1), as .NET's `XmlConvert` reads and writes them.

use std::fmt::Write as _;

use super::value::{DateTime, DateTimeKind, TimeSpan, Version};

/// Trims the whitespace `XmlConvert` ignores around numbers and other tokens.
pub(crate) fn trim(s: &str) -> &str {
    s.trim_matches(|c: char| matches!(c, ' ' | '\t' | '\r' | '\n'))
}

/// `<B>`: `true`/`false` (any case), or `1`/`0` as `XmlConvert.ToBoolean` also takes.
pub(crate) fn parse_bool(s: &str) -> Option<bool> {
    let s = trim(s);
    if s.eq_ignore_ascii_case("true") || s == "1" {
        Some(true)
    } else if s.eq_ignore_ascii_case("false") || s == "0" {
        Some(false)
    } else {
        None
    }
}

/// A float's special names, matched as .NET Core's invariant culture does (any case), plus
/// `XmlConvert`'s own `INF`/`-INF`.
fn special_float(s: &str) -> Option<f64> {
    let (neg, body) = match s.strip_prefix('-') {
        Some(b) => (true, b),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    let inf = body.eq_ignore_ascii_case("INF") || body.eq_ignore_ascii_case("Infinity") || body == "∞";
    if inf {
        Some(if neg { f64::NEG_INFINITY } else { f64::INFINITY })
    } else if body.eq_ignore_ascii_case("NaN") {
        Some(f64::NAN)
    } else {
        None
    }
}

fn float_syntax(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'-' | b'+' | b'e' | b'E'))
}

/// `<Db>`: the round-trip form, `INF`, `-INF`, `NaN`.
pub(crate) fn parse_f64(s: &str) -> Option<f64> {
    let s = trim(s);
    special_float(s).or_else(|| if float_syntax(s) { s.parse().ok() } else { None })
}

/// `<Sg>`: like [`parse_f64`], rounded once, straight from the text.
pub(crate) fn parse_f32(s: &str) -> Option<f32> {
    let s = trim(s);
    special_float(s).map(|f| f as f32).or_else(|| if float_syntax(s) { s.parse().ok() } else { None })
}

/// Writes a double as .NET Core's shortest round-trip `R` form: fixed notation for decimal exponents
/// -4..=14, otherwise `d.dddE+XX`.
pub(crate) fn write_f64(out: &mut String, v: f64) {
    if v.is_nan() {
        out.push_str("NaN");
    } else if v.is_infinite() {
        out.push_str(if v > 0.0 { "INF" } else { "-INF" });
    } else {
        write_shortest(out, &format!("{v:e}"), 15);
    }
}

/// A double's CLIXML text (`1.5`, `1E+15`, `NaN`, `INF`).
pub fn double_text(v: f64) -> String {
    let mut s = String::new();
    write_f64(&mut s, v);
    s
}

/// A single's CLIXML text.
pub fn single_text(v: f32) -> String {
    let mut s = String::new();
    write_f32(&mut s, v);
    s
}

/// Writes a single as .NET Core's shortest round-trip form (scientific from exponent 7).
pub(crate) fn write_f32(out: &mut String, v: f32) {
    if v.is_nan() {
        out.push_str("NaN");
    } else if v.is_infinite() {
        out.push_str(if v > 0.0 { "INF" } else { "-INF" });
    } else {
        write_shortest(out, &format!("{v:e}"), 7);
    }
}

/// `sci` is Rust's shortest `{:e}` form (`-1.25e-7`); re-laid out the way .NET writes it.
fn write_shortest(out: &mut String, sci: &str, sci_from: i32) {
    let (mantissa, exp) = sci.split_once('e').unwrap_or((sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let (neg, mantissa) = match mantissa.strip_prefix('-') {
        Some(m) => (true, m),
        None => (false, mantissa),
    };
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    if neg {
        out.push('-');
    }
    if digits == "0" {
        out.push('0');
        return;
    }
    if exp >= sci_from || exp < -4 {
        out.push_str(&digits[..1]);
        if digits.len() > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        let _ = write!(out, "E{}{:02}", if exp < 0 { '-' } else { '+' }, exp.unsigned_abs());
    } else if exp < 0 {
        out.push_str("0.");
        for _ in 0..(-exp - 1) {
            out.push('0');
        }
        out.push_str(&digits);
    } else {
        let int_len = exp as usize + 1;
        if digits.len() <= int_len {
            out.push_str(&digits);
            for _ in digits.len()..int_len {
                out.push('0');
            }
        } else {
            out.push_str(&digits[..int_len]);
            out.push('.');
            out.push_str(&digits[int_len..]);
        }
    }
}

/// `<D>`: an invariant decimal as `XmlConvert.ToDecimal` reads it: `[-+]digits[.digits]`, where either
/// side of the point may be empty (`.5`, `5.`), at most 29 significant digits and scale 28 as .NET's
/// `decimal` allows. Returns the text with surrounding whitespace trimmed, so the scale survives.
pub(crate) fn parse_decimal(s: &str) -> Option<&str> {
    let t = trim(s);
    let body = t.strip_prefix(['-', '+']).unwrap_or(t);
    let (int, frac) = match body.split_once('.') {
        Some((i, f)) => (i, f),
        None => (body, ""),
    };
    let digits = |d: &str| d.bytes().all(|b| b.is_ascii_digit());
    if int.len() + frac.len() == 0 || !digits(int) || !digits(frac) {
        return None;
    }
    let significant = int.trim_start_matches('0').len() + frac.len();
    (frac.len() <= 28 && significant <= 29).then_some(t)
}

/// `<Version>`: 2 to 4 non-negative 32-bit parts.
pub(crate) fn parse_version(s: &str) -> Option<Version> {
    let mut parts = trim(s).split('.');
    let mut next = || -> Option<Option<u32>> {
        match parts.next() {
            None => Some(None),
            Some(p) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => {
                p.parse::<u32>().ok().filter(|v| *v <= i32::MAX as u32).map(Some)
            }
            Some(_) => None,
        }
    };
    let major = next()??;
    let minor = next()??;
    let build = next()?;
    let revision = next()?;
    if build.is_none() && revision.is_some() || next()?.is_some() {
        return None;
    }
    Some(Version { major, minor, build, revision })
}

fn num<T: std::str::FromStr>(s: &str) -> Option<T> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// `<DT>`: `yyyy-MM-ddTHH:mm:ss[.fffffff][Z|±hh:mm]`.
pub(crate) fn parse_datetime(s: &str) -> Option<DateTime> {
    let s = trim(s);
    let b = s.as_bytes();
    // Everything valid is ASCII; checking that first makes every byte index below a char boundary.
    if !s.is_ascii() || b.len() < 19 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || b[13] != b':' || b[16] != b':' {
        return None;
    }
    let year: u16 = num(&s[0..4])?;
    let month: u8 = num(&s[5..7])?;
    let day: u8 = num(&s[8..10])?;
    let hour: u8 = num(&s[11..13])?;
    let minute: u8 = num(&s[14..16])?;
    let second: u8 = num(&s[17..19])?;
    let mut rest = &s[19..];
    let mut ticks = 0u32;
    if let Some(frac) = rest.strip_prefix('.') {
        let n = frac.bytes().take_while(u8::is_ascii_digit).count();
        if n == 0 || n > 7 {
            return None;
        }
        ticks = num::<u32>(&frac[..n])? * 10u32.pow(7 - n as u32);
        rest = &frac[n..];
    }
    let kind = match rest {
        "" => DateTimeKind::Unspecified,
        "Z" => DateTimeKind::Utc,
        _ => {
            let rb = rest.as_bytes();
            if rb.len() != 6 || rb[3] != b':' {
                return None;
            }
            let sign: i16 = match rb[0] {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            let h: i16 = num(&rest[1..3])?;
            let m: i16 = num(&rest[4..6])?;
            if h > 14 || m > 59 {
                return None;
            }
            DateTimeKind::Local(sign * (h * 60 + m))
        }
    };
    let dt = DateTime { year, month, day, hour, minute, second, ticks, kind };
    valid_datetime(&dt).then_some(dt)
}

pub(crate) fn valid_datetime(dt: &DateTime) -> bool {
    (1..=9999).contains(&dt.year)
        && (1..=12).contains(&dt.month)
        && dt.day >= 1
        && dt.day <= days_in_month(dt.year, dt.month)
        && dt.hour < 24
        && dt.minute < 60
        && dt.second < 60
        && dt.ticks < 10_000_000
        && match dt.kind {
            DateTimeKind::Local(off) => off.abs() <= 14 * 60,
            _ => true,
        }
}

fn days_in_month(year: u16, month: u8) -> u8 {
    match month {
        4 | 6 | 9 | 11 => 30,
        2 if year.is_multiple_of(4) && (!year.is_multiple_of(100) || year.is_multiple_of(400)) => 29,
        2 => 28,
        _ => 31,
    }
}

pub(crate) fn write_datetime(out: &mut String, dt: &DateTime) {
    let _ = write!(
        out,
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
        dt.year, dt.month, dt.day, dt.hour, dt.minute, dt.second
    );
    write_fraction(out, dt.ticks);
    match dt.kind {
        DateTimeKind::Unspecified => {}
        DateTimeKind::Utc => out.push('Z'),
        DateTimeKind::Local(off) => {
            let sign = if off < 0 { '-' } else { '+' };
            let off = off.unsigned_abs();
            let _ = write!(out, "{sign}{:02}:{:02}", off / 60, off % 60);
        }
    }
}

/// `.fffffff` with trailing zeros dropped (`FFFFFFF`); nothing for zero.
fn write_fraction(out: &mut String, ticks: u32) {
    if ticks == 0 {
        return;
    }
    let digits = format!("{ticks:07}");
    out.push('.');
    out.push_str(digits.trim_end_matches('0'));
}

const TICKS_PER_MINUTE: i128 = 60 * 10_000_000;
const TICKS_PER_HOUR: i128 = 60 * TICKS_PER_MINUTE;
const TICKS_PER_DAY: i128 = 24 * TICKS_PER_HOUR;

/// `<TS>`: an xs:duration, `-?PnYnMnDTnHnMn.nS` (years count 365 days and months 30, as .NET does).
pub(crate) fn parse_timespan(s: &str) -> Option<TimeSpan> {
    let s = trim(s);
    let (neg, s) = match s.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, s),
    };
    let mut s = s.strip_prefix('P')?;
    if s.is_empty() {
        return None;
    }
    let mut total: i128 = 0;
    let mut in_time = false;
    let mut any = false;
    let mut last_rank = 0; // components must come in order
    while !s.is_empty() {
        if let Some(r) = s.strip_prefix('T') {
            if in_time || r.is_empty() {
                return None;
            }
            in_time = true;
            s = r;
            continue;
        }
        let n = s.bytes().take_while(u8::is_ascii_digit).count();
        let int: i128 = if n == 0 { 0 } else { s[..n].parse().ok()? };
        let mut rest = &s[n..];
        let mut frac_ticks: i128 = 0;
        let mut had_frac = false;
        if let Some(f) = rest.strip_prefix('.') {
            let m = f.bytes().take_while(u8::is_ascii_digit).count();
            if m == 0 {
                return None;
            }
            let keep = &f[..m.min(7)];
            frac_ticks = keep.parse::<i128>().ok()? * 10i128.pow(7 - keep.len() as u32);
            rest = &f[m..];
            had_frac = true;
        }
        if n == 0 && !had_frac {
            return None;
        }
        let unit = rest.chars().next()?;
        let (rank, ticks_per) = match (in_time, unit) {
            (false, 'Y') => (1, 365 * TICKS_PER_DAY),
            (false, 'M') => (2, 30 * TICKS_PER_DAY),
            (false, 'D') => (3, TICKS_PER_DAY),
            (true, 'H') => (4, TICKS_PER_HOUR),
            (true, 'M') => (5, TICKS_PER_MINUTE),
            (true, 'S') => (6, 10_000_000),
            _ => return None,
        };
        if rank <= last_rank || (had_frac && unit != 'S') {
            return None;
        }
        last_rank = rank;
        total = total.checked_add(int.checked_mul(ticks_per)?)?.checked_add(frac_ticks)?;
        if total > i64::MAX as i128 + 1 {
            return None;
        }
        any = true;
        s = &rest[1..];
    }
    if !any {
        return None;
    }
    let total = if neg { -total } else { total };
    i64::try_from(total).ok().map(TimeSpan)
}

pub(crate) fn write_timespan(out: &mut String, ts: TimeSpan) {
    let mut t = i128::from(ts.0);
    if t < 0 {
        out.push('-');
        t = -t;
    }
    out.push('P');
    let days = t / TICKS_PER_DAY;
    t %= TICKS_PER_DAY;
    if days != 0 {
        let _ = write!(out, "{days}D");
    }
    if t != 0 {
        out.push('T');
        let hours = t / TICKS_PER_HOUR;
        t %= TICKS_PER_HOUR;
        let minutes = t / TICKS_PER_MINUTE;
        t %= TICKS_PER_MINUTE;
        if hours != 0 {
            let _ = write!(out, "{hours}H");
        }
        if minutes != 0 {
            let _ = write!(out, "{minutes}M");
        }
        if t != 0 {
            let _ = write!(out, "{}", t / 10_000_000);
            write_fraction(out, (t % 10_000_000) as u32);
            out.push('S');
        }
    } else if days == 0 {
        out.push_str("T0S");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f64_text(v: f64) -> String {
        let mut s = String::new();
        write_f64(&mut s, v);
        s
    }

    #[test]
    fn doubles_like_dotnet() {
        for (v, t) in [
            (0.0, "0"),
            (1.5, "1.5"),
            (-2.0, "-2"),
            (100.0, "100"),
            (1e14, "100000000000000"),
            (1e15, "1E+15"),
            (1.2345678901234568e17, "1.2345678901234568E+17"),
            (0.0001, "0.0001"),
            (0.00001, "1E-05"),
            (1.7976931348623157e308, "1.7976931348623157E+308"),
            (5e-324, "5E-324"),
            (f64::INFINITY, "INF"),
            (f64::NEG_INFINITY, "-INF"),
            (0.1 + 0.2, "0.30000000000000004"),
        ] {
            assert_eq!(f64_text(v), t);
            assert_eq!(parse_f64(t).map(f64::to_bits), Some(v.to_bits()), "{t}");
        }
        for nan in ["NaN", "NAN", "nan"] {
            assert!(parse_f64(nan).is_some_and(f64::is_nan), "{nan}");
            assert!(parse_f32(nan).is_some_and(f32::is_nan), "{nan}");
        }
        assert_eq!(parse_f64("-infinity"), Some(f64::NEG_INFINITY));
        assert_eq!(parse_f32("inf"), Some(f32::INFINITY));
        assert_eq!(parse_f64("1e3"), Some(1000.0));
        assert_eq!(parse_f64("infinite"), None);
        assert_eq!(parse_f64(""), None);
        assert_eq!(parse_f64("1,5"), None);
        let mut s = String::new();
        write_f32(&mut s, 1e7);
        write_f32(&mut s, 0.1);
        assert_eq!(s, "1E+070.1");
    }

    #[test]
    fn datetimes() {
        for t in ["2024-05-01T10:00:00.5Z", "2024-02-29T23:59:59.9999999+05:30", "0001-01-01T00:00:00", "2021-01-01T00:00:00-08:00"] {
            let dt = parse_datetime(t).unwrap_or_else(|| panic!("{t}"));
            let mut s = String::new();
            write_datetime(&mut s, &dt);
            assert_eq!(s, t);
        }
        assert_eq!(parse_datetime("2024-05-01T10:00:00.1234567Z").map(|d| d.ticks), Some(1_234_567));
        assert_eq!(parse_datetime("2024-05-01T10:00:00.12Z").map(|d| d.ticks), Some(1_200_000));
        for bad in ["2024-05-01T10:00:0∞Z", "2024-05-01T10:00:00+é:0", "2023-02-29T00:00:00", "2024-13-01T00:00:00", "2024-05-01 10:00:00", "2024-05-01T10:00:00.Z", "2024-05-01T10:00:00.12345678Z", "2024-05-01T24:00:00", "2024-05-01T10:00:00+5:00", "x"] {
            assert_eq!(parse_datetime(bad), None, "{bad}");
        }
    }

    #[test]
    fn timespans() {
        for (t, ticks) in [
            ("PT0S", 0),
            ("PT9.0269026S", 90_269_026),
            ("P1DT2H", (26 * 3600) * 10_000_000),
            ("P1D", 864_000_000_000),
            ("-PT1S", -10_000_000),
            ("PT1M30S", 900_000_000),
            ("PT0.0000001S", 1),
        ] {
            assert_eq!(parse_timespan(t), Some(TimeSpan(ticks)), "{t}");
            let mut s = String::new();
            write_timespan(&mut s, TimeSpan(ticks));
            assert_eq!(s, t);
        }
        assert_eq!(parse_timespan("P1Y"), Some(TimeSpan(365 * 864_000_000_000)));
        assert_eq!(parse_timespan("PT1.123456789S"), Some(TimeSpan(11_234_567)));
        let mut s = String::new();
        write_timespan(&mut s, TimeSpan(i64::MIN));
        assert_eq!(parse_timespan(&s), Some(TimeSpan(i64::MIN)));
        for bad in ["", "P", "PT", "1D", "P1H", "PT1D", "P1S", "PT1.5H", "PT1S1M", "P99999999999999999999D", "PT.S"] {
            assert_eq!(parse_timespan(bad), None, "{bad}");
        }
    }

    #[test]
    fn versions_and_decimals() {
        assert_eq!(parse_version("1.1.0.1"), Some(Version { major: 1, minor: 1, build: Some(0), revision: Some(1) }));
        assert_eq!(parse_version("2.3"), Some(Version::new(2, 3)));
        for bad in ["2", "1.2.3.4.5", "1.-1", "a.b", "1..2", "3000000000.1"] {
            assert_eq!(parse_version(bad), None, "{bad}");
        }
        assert_eq!(parse_decimal(" 1.10 "), Some("1.10"));
        assert_eq!(parse_decimal("-79228162514264337593543950335"), Some("-79228162514264337593543950335"));
        assert_eq!(parse_decimal(".5"), Some(".5"));
        assert_eq!(parse_decimal("+5."), Some("+5."));
        for bad in ["", ".", "-", "1e5", "--1", "1.2.3", "792281625142643375935439503351"] {
            assert_eq!(parse_decimal(bad), None, "{bad}");
        }
        assert_eq!(parse_bool("True"), Some(true));
        assert_eq!(parse_bool("0"), Some(false));
        assert_eq!(parse_bool("yes"), None);
    }
}
