//! `psgate shell`: psgate's prompt (`PS psgate>`) in a terminal, with the sessions held in this process. It is
//! the relay's own prompt code ([`crate::session::prompt`]) on an in-process [`Manager`], so it types, binds,
//! runs and words errors exactly as the browser's prompt. Interactive (line editing, history, tab completion) when
//! standard input is a terminal; otherwise it reads lines from standard input, so scripts can pipe into it.

use std::io::{IsTerminal as _, Write as _};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clap::Args;
use psgate_shared::api::{FieldAnswer, HostAnswer, LOCAL_SESSION, PipelineId, PipelineState, ServerMessage, SessionId};
use psgate_shared::clixml::{self, Value};
use psgate_shared::psrp::host::{HostCall, HostMethod};
use tokio::runtime::Runtime;

use super::console::{self, Asked, Input};
use crate::config::{AllowRule, Config};
use crate::session::manager::{Buffer, Manager, shown_prompt};

/// `psgate shell`'s options.
#[derive(Debug, Args)]
pub struct ShellArgs {
    /// A relay configuration whose allow-list, known_hosts, local command and `[winrm]` settings apply (absent:
    /// every target is allowed, as for `psgate invoke`).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// The known_hosts file for SSH targets (default: ~/.ssh/known_hosts).
    #[arg(long, value_name = "FILE")]
    known_hosts: Option<PathBuf>,
    /// Trust and remember an SSH host key seen for the first time (a changed key is always refused).
    #[arg(long)]
    accept_new_host_key: bool,
    /// A PEM file of CA certificates to trust for WinRM over HTTPS, besides the system's.
    #[arg(long, value_name = "FILE")]
    ca_file: Option<PathBuf>,
    /// Lab only: accept any HTTPS certificate of a WinRM target.
    #[arg(long)]
    danger_accept_invalid_certificates: bool,
    /// Allow Basic authentication over plain HTTP (the password and every message in clear).
    #[arg(long)]
    allow_unencrypted: bool,
    /// The local transport's command line (`New-PSSession` without a computer), e.g. "pwsh -s -NoLogo -NoProfile".
    #[arg(long, value_name = "CMD")]
    local_command: Option<String>,
}

/// The user the shell's sessions belong to.
const OWNER: &str = "shell";

fn config(args: &ShellArgs) -> anyhow::Result<Config> {
    let mut config = match &args.config {
        Some(path) => Config::load(Some(path))?,
        None => Config {
            allow: vec![AllowRule { hosts: vec!["*".into()], ports: vec![], transports: vec![], ..AllowRule::default() }],
            local_command: Some(super::serve::demo_command()),
            ..Config::default()
        },
    };
    if let Some(k) = &args.known_hosts {
        config.known_hosts = Some(k.clone());
    }
    config.accept_new_host_keys |= args.accept_new_host_key;
    // The shell runs on the user's machine: Export-PSSession writes its module here.
    config.prompt_writes_files = true;
    if let Some(ca) = &args.ca_file {
        config.winrm.ca_file = Some(ca.clone());
    }
    config.winrm.danger_accept_invalid_certificates |= args.danger_accept_invalid_certificates;
    config.winrm.allow_basic_over_http |= args.allow_unencrypted;
    if let Some(cmd) = &args.local_command {
        config.local_command = Some(super::invoke::split_command(cmd)?.into_iter().map(|a| a.to_string_lossy().into_owned()).collect());
    }
    Ok(config)
}

/// Runs `psgate shell`: 0 when every line succeeded, 1 when one failed.
pub fn run(args: ShellArgs) -> anyhow::Result<ExitCode> {
    let rt = Runtime::new()?;
    let manager = {
        let _guard = rt.enter();
        Manager::new(Arc::new(config(&args)?))
    };
    let interactive = std::io::stdin().is_terminal();
    let current: Arc<Mutex<Option<(SessionId, PipelineId)>>> = Arc::default();
    // Ctrl+C stops the running line (at the prompt itself, the line editor has it).
    {
        let (manager, current) = (manager.clone(), current.clone());
        rt.spawn(async move {
            while tokio::signal::ctrl_c().await.is_ok() {
                if let Some((session, pipeline)) = *current.lock().unwrap_or_else(std::sync::PoisonError::into_inner) {
                    let _ = manager.stop(OWNER, session, pipeline);
                }
            }
        });
    }
    let mut failed = false;
    if interactive {
        let mut editor = rustyline::Editor::<Completer, rustyline::history::DefaultHistory>::new()?;
        editor.set_helper(Some(Completer { manager: manager.clone(), rt: rt.handle().clone() }));
        loop {
            let prompt = prompt_text(&manager);
            let mut line = match editor.readline(&prompt) {
                Ok(l) => l,
                Err(rustyline::error::ReadlineError::Interrupted) => continue,
                Err(_) => break,
            };
            while psgate_lang::is_incomplete(&line) {
                match editor.readline(">> ") {
                    Ok(more) => {
                        line.push('\n');
                        line.push_str(&more);
                    }
                    Err(_) => break,
                }
            }
            if line.trim().is_empty() {
                continue;
            }
            let _ = editor.add_history_entry(line.as_str());
            let mut input = console::Stdin { reader: std::io::stdin().lock() };
            match run_line(&rt, &manager, &current, &line, &mut input) {
                Some(ok) => failed |= !ok,
                None => break,
            }
        }
    } else {
        let stdin = std::io::stdin();
        let mut input = console::Stdin { reader: stdin.lock() };
        while let Some(mut line) = input.line("") {
            while psgate_lang::is_incomplete(&line) {
                let Some(more) = input.line("") else { break };
                line.push('\n');
                line.push_str(&more);
            }
            if line.trim().is_empty() {
                continue;
            }
            match run_line(&rt, &manager, &current, &line, &mut input) {
                Some(ok) => failed |= !ok,
                None => break,
            }
        }
    }
    // The sessions end with the shell (a WinRM shell is deleted at its target).
    rt.block_on(async {
        if let Ok(removed) = manager.remove(OWNER, None) {
            removed.closed(Duration::from_secs(10)).await;
        }
    });
    Ok(if failed { ExitCode::FAILURE } else { ExitCode::SUCCESS })
}

/// `PS psgate> `, or the entered session's `[SRV02]: PS C:\> `.
fn prompt_text(manager: &Manager) -> String {
    match manager.entered(OWNER).and_then(|id| manager.list(OWNER, None, None).into_iter().find(|s| s.id == id)) {
        Some(info) => format!("[{}]: {} ", info.computer_name, shown_prompt(&info)),
        None => format!("{} ", crate::session::prompt::PROMPT),
    }
}

/// Runs one line at the prompt (or in the entered session) and prints what it gives. `Some(succeeded)`, or
/// `None` when the line ends the shell (`exit` at the prompt itself).
fn run_line(rt: &Runtime, manager: &Arc<Manager>, current: &Mutex<Option<(SessionId, PipelineId)>>, line: &str, input: &mut dyn Input) -> Option<bool> {
    let entered = manager.entered(OWNER);
    let exit = psgate_lang::is_exit_line(line);
    if exit && entered.is_none() {
        return None;
    }
    let session = match entered {
        Some(id) if !exit => id,
        _ => LOCAL_SESSION,
    };
    let started = {
        let _guard = rt.enter();
        manager.run(OWNER, session, line.to_owned())
    };
    let (pipeline, buffer) = match started {
        Ok(p) => p,
        Err(e) => {
            eprintln!("{}", e.message);
            return Some(false);
        }
    };
    *current.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some((session, pipeline));
    let (state, errors) = follow(rt, manager, session, pipeline, &buffer, input);
    *current.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = None;
    // As `$?`: a line that wrote an error failed, even if its pipeline completed.
    Some(state == PipelineState::Completed && errors == 0)
}

/// Prints a pipeline's events until its end, answering its host calls from the terminal: its final state and how
/// many errors it wrote.
fn follow(rt: &Runtime, manager: &Manager, session: SessionId, pipeline: PipelineId, buffer: &Buffer, input: &mut dyn Input) -> (PipelineState, usize) {
    let mut changed = buffer.subscribe();
    let mut cursor = 0;
    let mut errors = 0;
    // Output objects wait here until something else is written, so a table is printed as one.
    let mut pending: Vec<Value> = Vec::new();
    let flush = |pending: &mut Vec<Value>| {
        if !pending.is_empty() {
            print!("{}", psgate_lang::format::to_text(pending));
            let _ = std::io::stdout().flush();
            pending.clear();
        }
    };
    loop {
        let batch = buffer.read(cursor, 256);
        let empty = batch.events.is_empty();
        for event in batch.events {
            cursor = event.seq().unwrap_or(cursor);
            match event {
                ServerMessage::Output { clixml, .. } => {
                    if let Ok(v) = clixml::decode_message(clixml.as_bytes()) {
                        pending.push(v);
                    }
                }
                ServerMessage::Record { kind, clixml, .. } => {
                    flush(&mut pending);
                    errors += usize::from(kind == psgate_shared::api::RecordKind::Error);
                    if let Ok(v) = clixml::decode_message(clixml.as_bytes()) {
                        console::print_record(kind, &v);
                    }
                }
                ServerMessage::HostCall { call_id, method, args, .. } => {
                    flush(&mut pending);
                    let Some(method) = (1..=56).filter_map(HostMethod::from_id).find(|m| m.name() == method) else { continue };
                    let args = args.iter().filter_map(|a| clixml::decode_message(a.as_bytes()).ok()).collect();
                    let call = HostCall { call_id, method, args };
                    if let Some(answer) = answer(console::ask(&call, input)) {
                        let _ = manager.answer(OWNER, session, pipeline, call_id, answer);
                    }
                }
                ServerMessage::PipelineState { state, error, .. } if state.is_terminal() => {
                    flush(&mut pending);
                    if let Some(e) = error.and_then(|e| clixml::decode_message(e.as_bytes()).ok()) {
                        errors += 1;
                        console::print_record(psgate_shared::api::RecordKind::Error, &e);
                    }
                    return (state, errors);
                }
                _ => {}
            }
        }
        if empty {
            flush(&mut pending);
            let waited = rt.block_on(async { tokio::time::timeout(Duration::from_millis(200), changed.changed()).await });
            if matches!(waited, Ok(Err(_))) {
                return (PipelineState::Failed, errors + 1);
            }
        }
    }
}

/// The terminal's answer as the API's.
fn answer(asked: Asked) -> Option<HostAnswer> {
    Some(match asked {
        Asked::Void => return None,
        Asked::Value(v) => HostAnswer::Value { clixml: clixml::encode_message(&v).unwrap_or_default() },
        Asked::Text(t) => HostAnswer::Value { clixml: clixml::encode_message(&Value::string(t)).unwrap_or_default() },
        Asked::Secret(text) => HostAnswer::Secure { text },
        Asked::Credential { user, password } => HostAnswer::Credential { user, password },
        Asked::Choice(i) => HostAnswer::Value { clixml: clixml::encode_message(&Value::I32(i)).unwrap_or_default() },
        Asked::Fields(fields) => HostAnswer::Fields { fields: fields.into_iter().map(|(name, text, secure)| FieldAnswer { name, text, secure }).collect() },
        Asked::Error(message) => HostAnswer::Error { message },
    })
}

/// Tab completion: the prompt's own, or the entered session's `TabExpansion2`.
struct Completer {
    manager: Arc<Manager>,
    rt: tokio::runtime::Handle,
}

impl rustyline::completion::Completer for Completer {
    type Candidate = rustyline::completion::Pair;

    fn complete(&self, line: &str, pos: usize, _ctx: &rustyline::Context<'_>) -> rustyline::Result<(usize, Vec<Self::Candidate>)> {
        let session = self.manager.entered(OWNER).unwrap_or(LOCAL_SESSION);
        let cursor = line[..pos.min(line.len())].encode_utf16().count() as u32;
        let Ok(answer) = self.manager.complete(OWNER, session, line.to_owned(), cursor) else { return Ok((pos, Vec::new())) };
        let answer = self.rt.block_on(async { tokio::time::timeout(Duration::from_secs(5), answer).await });
        let Ok(Ok(ServerMessage::Completions { replacement_index, matches, .. })) = answer else { return Ok((pos, Vec::new())) };
        let start = line.char_indices().scan(0u32, |units, (i, c)| {
            let here = *units;
            *units += c.len_utf16() as u32;
            Some((i, here))
        });
        let start = start.filter(|(_, u)| *u >= replacement_index).map(|(i, _)| i).next().unwrap_or(line.len());
        let pairs = matches.into_iter().map(|m| rustyline::completion::Pair { display: m.list_text, replacement: m.text }).collect();
        Ok((start, pairs))
    }
}

impl rustyline::hint::Hinter for Completer {
    type Hint = String;
}
impl rustyline::highlight::Highlighter for Completer {}
impl rustyline::validate::Validator for Completer {}
impl rustyline::Helper for Completer {}
