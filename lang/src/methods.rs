//! The .NET methods psgate's prompt calls on values (`$s.ToString()`, `$name.ToUpper()`), and the `-f` operator's
//! composite formatting.

use psgate_shared::clixml::Value;

use crate::values::{self, text};

/// Calls a method; `Err` is PowerShell's message for a method the value does not have.
pub fn call(v: &Value, name: &str, args: &[Value]) -> Result<Value, String> {
    let lower = name.to_ascii_lowercase();
    let arg = |i: usize| args.get(i).map(text).unwrap_or_default();
    match (lower.as_str(), args.len()) {
        ("tostring", 0) => return Ok(Value::string(text(v))),
        ("gettype", 0) => {
            let full = values::type_name(v);
            let short = full.rsplit('.').next().unwrap_or(&full).to_owned();
            return Ok(values::object(&["System.RuntimeType"], Some(full.clone()), vec![("Name", Value::string(short)), ("FullName", Value::string(full))]));
        }
        ("equals", 1) => return Ok(Value::Bool(values::equals(v, &args[0], true))),
        ("gethashcode", 0) => return Ok(Value::I32(text(v).bytes().fold(17i32, |h, b| h.wrapping_mul(31).wrapping_add(i32::from(b))))),
        _ => {}
    }
    if let Value::String(s) = values::primitive(v) {
        let s = s.as_str();
        let out = match (lower.as_str(), args.len()) {
            ("toupper" | "toupperinvariant", 0) => Value::string(s.to_uppercase()),
            ("tolower" | "tolowerinvariant", 0) => Value::string(s.to_lowercase()),
            ("trim", 0) => Value::string(s.trim()),
            ("trimstart", 0) => Value::string(s.trim_start()),
            ("trimend", 0) => Value::string(s.trim_end()),
            ("trim", 1) => Value::string(s.trim_matches(|c| arg(0).contains(c))),
            ("trimstart", 1) => Value::string(s.trim_start_matches(|c| arg(0).contains(c))),
            ("trimend", 1) => Value::string(s.trim_end_matches(|c| arg(0).contains(c))),
            ("contains", 1) => Value::Bool(s.contains(&arg(0))),
            ("startswith", 1) => Value::Bool(s.starts_with(&arg(0))),
            ("endswith", 1) => Value::Bool(s.ends_with(&arg(0))),
            ("indexof", 1) => Value::I32(s.find(&arg(0)).map_or(-1, |i| s[..i].encode_utf16().count() as i32)),
            ("replace", 2) => Value::string(s.replace(&arg(0), &arg(1))),
            ("split", 1) => values::array(s.split(|c| arg(0).contains(c)).map(Value::string).collect()),
            ("substring", 1 | 2) => {
                let chars: Vec<char> = s.chars().collect();
                let start = values::integer(&args[0]).unwrap_or(0).max(0) as usize;
                let len = args.get(1).and_then(values::integer).map_or(chars.len().saturating_sub(start), |l| l.max(0) as usize);
                if start + len > chars.len() {
                    return Err("Exception calling \"Substring\": \"Index and length must refer to a location within the string.\"".into());
                }
                Value::string(chars[start..start + len].iter().collect::<String>())
            }
            ("padleft", 1) => Value::string(format!("{:>w$}", s, w = values::integer(&args[0]).unwrap_or(0).clamp(0, 10_000) as usize)),
            ("padright", 1) => Value::string(format!("{:<w$}", s, w = values::integer(&args[0]).unwrap_or(0).clamp(0, 10_000) as usize)),
            _ => return Err(not_found(v, name)),
        };
        return Ok(out);
    }
    Err(not_found(v, name))
}

fn not_found(v: &Value, name: &str) -> String {
    format!("Method invocation failed because [{}] does not contain a method named '{name}'.", values::type_name(v))
}

/// .NET composite formatting: `{0}`, `{0,10}`, `{0,-10}`, `{0:N2}`, `{0:D3}`, `{0:X}`, `{{` and `}}`.
pub fn format(fmt: &str, args: &[Value]) -> Result<String, String> {
    let bad = || "Error formatting a string: Input string was not in a correct format.".to_owned();
    let mut out = String::new();
    let mut chars = fmt.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '{' if chars.peek() == Some(&'{') => {
                chars.next();
                out.push('{');
            }
            '}' if chars.peek() == Some(&'}') => {
                chars.next();
                out.push('}');
            }
            '}' => return Err(bad()),
            '{' => {
                let mut spec = String::new();
                loop {
                    match chars.next() {
                        Some('}') => break,
                        Some(x) => spec.push(x),
                        None => return Err(bad()),
                    }
                }
                let (head, fmt_spec) = spec.split_once(':').map_or((spec.as_str(), ""), |(h, f)| (h, f));
                let (index, align) = head.split_once(',').map_or((head, None), |(i, a)| (i, Some(a)));
                let index: usize = index.trim().parse().map_err(|_| bad())?;
                let v = args.get(index).ok_or_else(|| "Error formatting a string: Index (zero based) must be greater than or equal to zero and less than the size of the argument list.".to_owned())?;
                let mut s = format_one(v, fmt_spec);
                if let Some(a) = align {
                    let w: i64 = a.trim().parse().map_err(|_| bad())?;
                    let width = w.unsigned_abs().min(1000) as usize;
                    let len = s.chars().count();
                    if len < width {
                        let pad = " ".repeat(width - len);
                        s = if w < 0 { format!("{s}{pad}") } else { format!("{pad}{s}") };
                    }
                }
                out.push_str(&s);
            }
            other => out.push(other),
        }
    }
    Ok(out)
}

fn format_one(v: &Value, spec: &str) -> String {
    let upper = spec.to_ascii_uppercase();
    let digits = |d: &str, default: usize| d.parse::<usize>().unwrap_or(default).min(30);
    match (upper.chars().next(), values::number(v)) {
        (Some('N'), Some(n)) if values::is_number(v) => group(n, digits(&upper[1..], 2)),
        (Some('F'), Some(n)) if values::is_number(v) => format!("{n:.prec$}", prec = digits(&upper[1..], 2)),
        (Some('D'), Some(n)) if values::is_number(v) => format!("{:0w$}", n as i64, w = digits(&upper[1..], 0)),
        (Some('X'), Some(n)) if values::is_number(v) => {
            let s = format!("{:0w$X}", n as i64, w = digits(&upper[1..], 0));
            if spec.starts_with('x') { s.to_lowercase() } else { s }
        }
        _ => text(v),
    }
}

/// A number with thousands separators and `decimals` digits after the point (`N2`).
fn group(n: f64, decimals: usize) -> String {
    let s = format!("{:.decimals$}", n.abs());
    let (int, frac) = s.split_once('.').map_or((s.as_str(), ""), |(i, f)| (i, f));
    let mut grouped = String::new();
    for (i, c) in int.chars().enumerate() {
        if i > 0 && (int.len() - i) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(c);
    }
    let sign = if n < 0.0 && s.chars().any(|c| c.is_ascii_digit() && c != '0') { "-" } else { "" };
    if frac.is_empty() { format!("{sign}{grouped}") } else { format!("{sign}{grouped}.{frac}") }
}
