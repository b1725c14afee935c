//! The terminal as a PowerShell host, for `psgate invoke` and `psgate shell`: host calls written out (Write-Host,
//! warnings, progress) or asked of the user (Read-Host, Get-Credential, choices, a mandatory parameter's prompt).
//! Secrets are read without echo when the input is a terminal.

use std::io::{BufRead, IsTerminal, Write};

use psgate_shared::api::RecordKind;
use psgate_shared::clixml::Value;
use psgate_shared::psrp::host::{HostCall, HostMethod};
use psgate_shared::psrp::messages::ErrorRecordView;

use super::format;

/// Where answers come from: the terminal, or the lines of a piped script.
pub trait Input {
    /// A line typed after `prompt` (written to standard error); `None` at the end of the input.
    fn line(&mut self, prompt: &str) -> Option<String>;
    /// A secret typed after `prompt`, not echoed on a terminal.
    fn secret(&mut self, prompt: &str) -> Option<String>;
}

/// Standard input: lines, and secrets without echo when it is a terminal.
#[derive(Debug)]
pub struct Stdin<R> {
    /// The lines.
    pub reader: R,
}

impl<R: BufRead> Input for Stdin<R> {
    fn line(&mut self, prompt: &str) -> Option<String> {
        if !prompt.is_empty() {
            eprint!("{prompt}");
            let _ = std::io::stderr().flush();
        }
        let mut line = String::new();
        match self.reader.read_line(&mut line) {
            Ok(0) | Err(_) => None,
            Ok(_) => Some(line.trim_end_matches(['\r', '\n']).to_owned()),
        }
    }

    fn secret(&mut self, prompt: &str) -> Option<String> {
        if std::io::stdin().is_terminal() {
            return rpassword::prompt_password(prompt).ok();
        }
        self.line(prompt)
    }
}

/// What the user answered a host call with.
#[derive(Debug, PartialEq)]
pub enum Asked {
    /// Nothing to answer (a void call: written out).
    Void,
    /// A line of text.
    Text(String),
    /// A secret (a SecureString to make).
    Secret(String),
    /// A user and password.
    Credential {
        /// The user.
        user: String,
        /// The password.
        password: String,
    },
    /// `Prompt`'s fields: name, text, secret.
    Fields(Vec<(String, String, bool)>),
    /// `PromptForChoice`'s index.
    Choice(i32),
    /// A value the console knows itself (the host's name, version, culture).
    Value(Value),
    /// No answer (the input ended, or a bad choice).
    Error(String),
}

/// Writes or asks what a host call wants.
pub fn ask(call: &HostCall, input: &mut dyn Input) -> Asked {
    let text = |i: usize| call.text_arg(i).unwrap_or_default().to_owned();
    let no_input = || Asked::Error("psgate: no input is available to answer the host's question".into());
    match call.method {
        HostMethod::Write1 | HostMethod::Write2 => {
            print!("{}", text(if call.method == HostMethod::Write1 { 0 } else { 2 }));
            let _ = std::io::stdout().flush();
            Asked::Void
        }
        HostMethod::WriteLine1 => {
            println!();
            Asked::Void
        }
        HostMethod::WriteLine2 | HostMethod::WriteLine3 => {
            println!("{}", text(if call.method == HostMethod::WriteLine2 { 0 } else { 2 }));
            Asked::Void
        }
        HostMethod::WriteErrorLine => {
            eprintln!("{}", text(0));
            Asked::Void
        }
        HostMethod::WriteDebugLine | HostMethod::WriteVerboseLine | HostMethod::WriteWarningLine => {
            let prefix = match call.method {
                HostMethod::WriteDebugLine => "DEBUG",
                HostMethod::WriteVerboseLine => "VERBOSE",
                _ => "WARNING",
            };
            eprintln!("{prefix}: {}", text(0));
            Asked::Void
        }
        HostMethod::WriteProgress => {
            if let Some(v) = call.args.get(1) {
                print_record(RecordKind::Progress, v);
            }
            Asked::Void
        }
        HostMethod::SetBufferContents1 => {
            // Clear-Host.
            if std::io::stdout().is_terminal() {
                print!("\x1b[2J\x1b[H");
                let _ = std::io::stdout().flush();
            }
            Asked::Void
        }
        m if m.is_void() => Asked::Void,
        HostMethod::GetName => Asked::Value(Value::string("psgate")),
        HostMethod::GetVersion => Asked::Value(Value::Version(psgate_shared::clixml::Version::new(0, 1))),
        HostMethod::GetCurrentCulture | HostMethod::GetCurrentUICulture => Asked::Value(Value::string("en-US")),
        HostMethod::ReadLine => input.line("").map_or_else(no_input, Asked::Text),
        HostMethod::ReadLineAsSecureString => input.secret(&text(0)).map_or_else(no_input, Asked::Secret),
        HostMethod::PromptForCredential1 | HostMethod::PromptForCredential2 => {
            eprintln!("{}\n{}", text(0), text(1));
            let suggested = text(2);
            let user = if suggested.is_empty() {
                match input.line("User: ") {
                    Some(u) => u,
                    None => return no_input(),
                }
            } else {
                suggested
            };
            match input.secret(&format!("Password for user {user}: ")) {
                Some(password) => Asked::Credential { user, password },
                None => no_input(),
            }
        }
        HostMethod::PromptForChoice => {
            let (choices, defaults) = call.choices();
            eprintln!("{}\n{}", text(0), text(1));
            for (i, c) in choices.iter().enumerate() {
                eprintln!("[{i}] {}{}", c.label.replace('&', ""), if defaults.contains(&(i as i32)) { " (default)" } else { "" });
            }
            match input.line("Choice: ") {
                Some(answer) => {
                    let index = answer.trim().parse::<i32>().ok().or_else(|| if answer.trim().is_empty() { defaults.first().copied() } else { None });
                    match index {
                        Some(i) if i >= 0 && (i as usize) < choices.len() => Asked::Choice(i),
                        _ => Asked::Error(format!("{answer:?} is not one of the choices")),
                    }
                }
                None => no_input(),
            }
        }
        HostMethod::Prompt => {
            eprintln!("\n{}\n{}", text(0), text(1));
            let mut answers = Vec::new();
            for field in call.fields() {
                let label = if field.label.is_empty() { field.name.clone() } else { field.label.clone() };
                let secure = field.type_name == "System.Security.SecureString";
                let answer = if secure { input.secret(&format!("{label}: ")) } else { input.line(&format!("{label}: ")) };
                let Some(v) = answer else { return no_input() };
                answers.push((field.name, v, secure));
            }
            Asked::Fields(answers)
        }
        other => Asked::Error(format!("psgate's console host does not implement {}", other.name())),
    }
}

/// A record on standard error, as PowerShell's console writes it.
pub fn print_record(kind: RecordKind, value: &Value) {
    let text = format::record_text(value);
    match kind {
        RecordKind::Error => print_error(&ErrorRecordView::from_value(value)),
        RecordKind::Warning => eprintln!("WARNING: {text}"),
        RecordKind::Verbose => eprintln!("VERBOSE: {text}"),
        RecordKind::Debug => eprintln!("DEBUG: {text}"),
        RecordKind::Information => eprintln!("{text}"),
        RecordKind::Progress => {
            if let Some(line) = format::progress_text(value) {
                if std::io::stderr().is_terminal() {
                    eprint!("\r\x1b[K{line}");
                } else {
                    eprintln!("{line}");
                }
            }
        }
    }
}

/// As PowerShell's console writes an error: the message, where, then the category and id lines.
pub fn print_error(e: &ErrorRecordView) {
    eprintln!("{}", e.message);
    if !e.position.is_empty() {
        eprintln!("{}", e.position.trim_end());
    }
    if !e.category.is_empty() {
        eprintln!("    + CategoryInfo          : {}", e.category);
    }
    if !e.fully_qualified_error_id.is_empty() {
        eprintln!("    + FullyQualifiedErrorId : {}", e.fully_qualified_error_id);
    }
}
