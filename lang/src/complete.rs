//! Tab completion at psgate's prompt: command names and aliases, parameter names of the command being typed,
//! variables, and the values of a few parameters (sessions' names, ids and computers; enum names).

use psgate_shared::api::{Completion, SessionInfo};

use crate::bind::{COMMON, Kind};
use crate::cmdlets;
use crate::eval::Runspace;
use crate::values;

/// What completes the word before the cursor: where it starts, how long it is, the candidates.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Completions {
    /// Where the replaced word starts (in UTF-16 code units, as PowerShell's `TabExpansion2` counts).
    pub replacement_index: u32,
    /// Its length (UTF-16 code units).
    pub replacement_length: u32,
    /// The candidates, best first.
    pub matches: Vec<Completion>,
}

fn completion(text: String, list: &str, kind: &str, tooltip: &str) -> Completion {
    Completion { text, list_text: list.to_owned(), result_type: kind.to_owned(), tooltip: tooltip.to_owned() }
}

const BUILTIN_VARIABLES: &[&str] = &["true", "false", "null", "PSVersionTable", "_", "PSItem", "Matches", "Host"];

/// Completes `input` at `cursor` (a byte offset, clamped to the line).
pub fn complete(rs: &Runspace, sessions: &[SessionInfo], input: &str, cursor: usize) -> Completions {
    let mut cursor = cursor.min(input.len());
    while !input.is_char_boundary(cursor) {
        cursor -= 1;
    }
    let before = &input[..cursor];
    let start = before
        .char_indices()
        .rev()
        .find(|(_, c)| c.is_whitespace() || matches!(c, '|' | ';' | '(' | '{' | ',' | '='))
        .map_or(0, |(i, c)| i + c.len_utf8());
    let word = &before[start..];
    let utf16 = |s: &str| s.encode_utf16().count() as u32;
    let mut out = Completions { replacement_index: utf16(&before[..start]), replacement_length: utf16(word), matches: Vec::new() };
    let prefix = |candidate: &str, typed: &str| candidate.to_lowercase().starts_with(&typed.to_lowercase()) || (values::has_wildcards(typed) && values::like(candidate, typed, false));
    if let Some(typed) = word.strip_prefix('$') {
        let mut names: Vec<String> = rs.variables().map(|(n, _)| n.to_owned()).collect();
        names.extend(BUILTIN_VARIABLES.iter().map(|s| (*s).to_owned()));
        names.sort_by_key(|n| n.to_lowercase());
        names.dedup_by(|a, b| a.eq_ignore_ascii_case(b));
        for n in names.into_iter().filter(|n| prefix(n, typed)) {
            let tip = rs.variable(&n).map(values::type_name).unwrap_or_default();
            out.matches.push(completion(format!("${n}"), &n, "Variable", &tip));
        }
        return out;
    }
    // The command this word belongs to: the first word after the last `|`, `;` or `(` before it.
    let element_start = before[..start].rfind(['|', ';', '(', '{']).map_or(0, |i| i + 1);
    let element = before[element_start..start].trim_start();
    let command_word = element.split_whitespace().next();
    let at_command = element.trim().is_empty();
    if at_command {
        let mut names = cmdlets::names();
        names.sort_by_key(|(n, alias)| (alias.is_some(), n.to_lowercase()));
        for m in rs.modules() {
            for p in m.proxies.iter().filter(|p| prefix(&p.name, word)) {
                out.matches.push(completion(p.name.clone(), &p.name, "Command", &format!("{} on {} ({})", p.meta.name, m.computer_name, m.name)));
            }
        }
        for (name, alias) in names.into_iter().filter(|(n, _)| prefix(n, word)) {
            let tip = alias.map_or_else(String::new, |t| format!("{name} -> {t}"));
            out.matches.push(completion(name.to_owned(), name, "Command", &tip));
        }
        return out;
    }
    // A proxy's parameters: the names its command's metadata gives.
    if let Some((_, proxy)) = command_word.and_then(|w| crate::implicit::find(rs.modules(), w)) {
        if let Some(typed) = word.strip_prefix('-') {
            for p in proxy.meta.parameters.iter().filter(|p| prefix(&p.name, typed)) {
                let ty = if p.switch { "switch".to_owned() } else { crate::implicit::short_type(&p.type_name) };
                out.matches.push(completion(format!("-{}", p.name), &p.name, "ParameterName", &format!("[{ty}]")));
            }
            return out;
        }
        // A value: the enum's names or the ValidateSet `Get-Command -ShowCommandInfo` gave.
        let previous = element.split_whitespace().last().and_then(|w| w.strip_prefix('-'));
        if let Some(name) = previous {
            let mut seen: Vec<&str> = Vec::new();
            for p in proxy.sets.iter().flat_map(|s| s.parameters.iter()).filter(|p| p.name.to_lowercase().starts_with(&name.to_lowercase())) {
                for v in p.values.iter().filter(|v| prefix(v, word)) {
                    if !seen.contains(&v.as_str()) {
                        seen.push(v);
                        out.matches.push(completion(v.clone(), v, "ParameterValue", &p.type_name));
                    }
                }
            }
        }
        return out;
    }
    let Some(cmdlet) = command_word.and_then(cmdlets::find) else { return out };
    if let Some(typed) = word.strip_prefix('-') {
        let mut seen: Vec<&str> = Vec::new();
        for p in cmdlet.sig.params.iter().chain(COMMON.iter()) {
            if seen.contains(&p.name) || !prefix(p.name, typed) {
                continue;
            }
            seen.push(p.name);
            let tip = if p.kind == Kind::Switch { format!("[switch] {}", p.help) } else { format!("[{}] {}", p.kind.short_name(), p.help) };
            out.matches.push(completion(format!("-{}", p.name), p.name, "ParameterName", tip.trim_end()));
        }
        return out;
    }
    // A parameter's value: the parameter is the word before this one.
    let previous = element[..element.len()].split_whitespace().last().and_then(|w| w.strip_prefix('-'));
    let Some(param) = previous.and_then(|name| crate::bind::resolve(&cmdlet.sig, name).ok()) else { return out };
    let mut add = |text: String, list: &str, kind: &str, tip: &str| {
        if prefix(&text, word) && !out.matches.iter().any(|m| m.text == text) {
            out.matches.push(completion(text, list, kind, tip));
        }
    };
    match (param.name, param.kind) {
        ("Id", _) => {
            for s in sessions {
                add(s.id.0.to_string(), &s.id.0.to_string(), "ParameterValue", &format!("{} ({})", s.name, s.computer_name));
            }
        }
        ("Name", _) => {
            for s in sessions {
                add(s.name.clone(), &s.name, "ParameterValue", &s.computer_name);
            }
        }
        ("ComputerName" | "HostName", _) => {
            for s in sessions {
                add(s.computer_name.clone(), &s.computer_name, "ParameterValue", &s.name);
            }
        }
        (_, Kind::Sessions | Kind::Session) => {
            for (n, v) in rs.variables() {
                if values::enumerate(v.clone()).iter().any(crate::session::is_session) {
                    add(format!("${n}"), n, "Variable", "PSSession");
                }
            }
        }
        (_, Kind::Enum(_, names)) => {
            for n in names {
                add((*n).to_owned(), n, "ParameterValue", "");
            }
        }
        _ => {}
    }
    out
}
