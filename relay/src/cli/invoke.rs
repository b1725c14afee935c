//! `psgate invoke`: run one script on a remote (SSH or WinRM) or local PowerShell and print what comes back.
//!
//! Output objects go to standard output (as JSON lines with `--json`, else as text); every other stream
//! goes to standard error the way PowerShell's console shows it. Host calls (Read-Host, Get-Credential,
//! choices) are answered from the terminal. The exit status is 1 when the pipeline failed or was stopped.

use std::ffi::OsString;
use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::Args;
use psgate_shared::clixml::{Value, json};
use psgate_shared::psrp::crypto::ExchangeKey;
use psgate_shared::psrp::host::{HostCall, HostMethod, HostResult};
use psgate_shared::psrp::messages::{ErrorRecordView, PipelineSpec, PipelineState, PoolState};
use psgate_shared::psrp::outofproc::{ClientEvent, OutOfProcClient};
use psgate_shared::psrp::pool::{Event, PoolConfig, RunspacePool, needs_secure_string};
use uuid::Uuid;

use super::console::{self, Asked, print_error, print_record};
use super::format;
use crate::session::outofproc::Session;
use crate::session::winrm::{self, WinrmTarget};
use crate::transport::winrm::{AuthMethod, Endpoint, TlsVerification, WinrmOptions};
use crate::transport::{local, ssh};

/// Where to run, and what.
#[derive(Debug, Args)]
pub struct InvokeArgs {
    /// Connect over SSH to USER@HOST[:PORT] (the `powershell` subsystem).
    #[arg(long, value_name = "USER@HOST[:PORT]", conflicts_with_all = ["local", "winrm"], required_unless_present_any = ["local", "winrm"])]
    ssh: Option<String>,
    /// Connect over WinRM (WS-Management) to this endpoint: http[s]://HOST[:PORT][/wsman] (ports 5985/5986 by default).
    #[arg(long, value_name = "URL", conflicts_with = "local")]
    winrm: Option<String>,
    /// The WinRM user (DOMAIN\user or user@REALM).
    #[arg(long, value_name = "USER", requires = "winrm")]
    user: Option<String>,
    /// WinRM authentication: negotiate (Kerberos, else NTLM), ntlm, kerberos, basic.
    #[arg(long, value_name = "METHOD", default_value = "negotiate", requires = "winrm")]
    auth: String,
    /// The WinRM session configuration (endpoint), e.g. a JEA one (default Microsoft.PowerShell).
    #[arg(long, value_name = "NAME", requires = "winrm")]
    configuration_name: Option<String>,
    /// A PEM file of CA certificates to trust for HTTPS, besides the system's.
    #[arg(long, value_name = "FILE", requires = "winrm")]
    ca_file: Option<PathBuf>,
    /// Lab only: accept any HTTPS certificate (no protection against a man in the middle).
    #[arg(long, requires = "winrm")]
    danger_accept_invalid_certificates: bool,
    /// Allow Basic authentication over plain HTTP (the password and every message in clear).
    #[arg(long, requires = "winrm")]
    allow_unencrypted: bool,
    /// Run a local PowerShell process instead (`pwsh -s`).
    #[arg(long)]
    local: bool,
    /// The local command line (with --local), e.g. "pwsh -s -NoLogo -NoProfile".
    #[arg(long, value_name = "CMD", requires = "local")]
    command: Option<String>,
    /// Private key file for SSH public-key authentication.
    #[arg(long, value_name = "FILE")]
    key: Option<PathBuf>,
    /// Read the password (SSH or WinRM) from the first line of standard input.
    #[arg(long)]
    password_stdin: bool,
    /// The known_hosts file (default: ~/.ssh/known_hosts).
    #[arg(long, value_name = "FILE")]
    known_hosts: Option<PathBuf>,
    /// Trust and remember a host key seen for the first time (a changed key is always refused).
    #[arg(long)]
    accept_new_host_key: bool,
    /// The SSH subsystem.
    #[arg(long, default_value = "powershell")]
    subsystem: String,
    /// The script to run.
    #[arg(short = 'c', long = "script", value_name = "SCRIPT")]
    script: String,
    /// Print output objects as JSON lines (the shape of `psgate clixml decode`).
    #[arg(long)]
    json: bool,
    /// Seconds to wait for the connection and the session to open.
    #[arg(long, default_value_t = 30)]
    timeout: u64,
}

/// Runs `psgate invoke`.
pub fn run(args: InvokeArgs) -> anyhow::Result<ExitCode> {
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(invoke(args))
}

fn parse_target(target: &str) -> anyhow::Result<(String, String, u16)> {
    let (user, host) = target.split_once('@').context("--ssh needs USER@HOST[:PORT]")?;
    let (host, port) = match host.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') || h.starts_with('[') => (h.trim_matches(['[', ']']), p.parse().context("a port is a number")?),
        _ => (host, 22),
    };
    if user.is_empty() || host.is_empty() {
        bail!("--ssh needs USER@HOST[:PORT]");
    }
    Ok((user.to_owned(), host.to_owned(), port))
}

async fn invoke(args: InvokeArgs) -> anyhow::Result<ExitCode> {
    let stdin = std::io::stdin();
    let mut input = stdin.lock();
    let pool = RunspacePool::new(PoolConfig::new(Uuid::new_v4()));
    let client = OutOfProcClient::new(pool);
    let timeout = Duration::from_secs(args.timeout);
    let session = if let Some(url) = &args.winrm {
        let user = args.user.clone().context("--winrm needs --user")?;
        let method = match args.auth.to_ascii_lowercase().as_str() {
            "negotiate" | "default" => AuthMethod::Negotiate,
            "ntlm" => AuthMethod::Ntlm,
            "kerberos" => AuthMethod::Kerberos,
            "basic" => AuthMethod::Basic,
            other => bail!("--auth {other}: use negotiate, ntlm, kerberos or basic"),
        };
        let password = if args.password_stdin {
            let mut password = String::new();
            input.read_line(&mut password).context("reading the password from standard input")?;
            password.trim_end_matches(['\r', '\n']).to_owned()
        } else if method == AuthMethod::Kerberos || method == AuthMethod::Negotiate {
            // No password: Kerberos with the ticket cache.
            String::new()
        } else {
            bail!("--auth {} needs --password-stdin", args.auth);
        };
        let mut options = WinrmOptions::new(Endpoint::parse(url)?, user, password.into(), method);
        options.ca_file = args.ca_file.clone();
        if args.danger_accept_invalid_certificates {
            options.tls_verification = TlsVerification::DangerAcceptInvalidCertificates;
        }
        options.allow_unencrypted_http = args.allow_unencrypted;
        options.connect_timeout = timeout;
        let mut target = WinrmTarget::new(options);
        target.configuration_name = args.configuration_name.clone();
        tokio::time::timeout(timeout, winrm::connect(target, None, false)).await.context("the target did not answer in time")??
    } else if let Some(target) = &args.ssh {
        let (user, host, port) = parse_target(target)?;
        let auth = if args.password_stdin {
            let mut password = String::new();
            input.read_line(&mut password).context("reading the password from standard input")?;
            ssh::SshAuth::Password(password.trim_end_matches(['\r', '\n']).to_owned().into())
        } else if let Some(key) = &args.key {
            ssh::SshAuth::Key { path: key.clone(), passphrase: None }
        } else {
            bail!("--ssh needs --key FILE or --password-stdin");
        };
        let mut opts = ssh::SshOptions::new(host, user, auth);
        opts.port = port;
        if let Some(file) = &args.known_hosts {
            opts.known_hosts = file.clone();
        }
        if args.accept_new_host_key {
            opts.host_key_policy = ssh::HostKeyPolicy::AcceptNew;
        }
        opts.subsystem = args.subsystem.clone();
        opts.connect_timeout = timeout;
        let stream = ssh::open_subsystem(&opts).await?;
        Session::start(stream, client)
    } else {
        let argv: Vec<OsString> = match &args.command {
            Some(cmd) => split_command(cmd)?,
            None => local::DEFAULT_COMMAND.iter().map(OsString::from).collect(),
        };
        let process = local::spawn(&argv)?;
        // The child lives as long as the session's stream (kill_on_drop).
        let local::LocalProcess { child, stream } = process;
        let session = Session::start(stream, client);
        tokio::spawn(async move {
            let mut child = child;
            let _ = child.wait().await;
        });
        session
    };
    let mut run = Run { session, json: json::Writer::default(), json_mode: args.json, input: console::Stdin { reader: input }, pending_secure: Vec::new(), exit: ExitCode::SUCCESS };
    run.session.with(|c| c.open()).await??;
    tokio::time::timeout(timeout, run.until_opened()).await.context("the session did not open in time")??;
    let pipeline = Uuid::new_v4();
    let spec = PipelineSpec::script(args.script.clone());
    run.session.with(move |c| c.create_pipeline(pipeline, &spec)).await??;
    run.until_finished(pipeline).await?;
    run.session.with(|c| c.close()).await?;
    // The server answers the close; give it a moment, then end regardless.
    let _ = tokio::time::timeout(Duration::from_secs(5), run.until_closed()).await;
    Ok(run.exit)
}

/// Splits a command line on whitespace, honouring double quotes.
pub(super) fn split_command(cmd: &str) -> anyhow::Result<Vec<OsString>> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut any = false;
    for ch in cmd.chars() {
        match ch {
            '"' => {
                quoted = !quoted;
                any = true;
            }
            c if c.is_whitespace() && !quoted => {
                if any || !cur.is_empty() {
                    out.push(OsString::from(std::mem::take(&mut cur)));
                }
                any = false;
            }
            c => cur.push(c),
        }
    }
    if quoted {
        bail!("an unclosed quote in --command");
    }
    if any || !cur.is_empty() {
        out.push(OsString::from(cur));
    }
    Ok(out)
}

struct Run<'a> {
    session: Session,
    json: json::Writer,
    json_mode: bool,
    input: console::Stdin<std::io::StdinLock<'a>>,
    /// Host calls that wait for the key exchange.
    pending_secure: Vec<(Option<Uuid>, HostCall)>,
    exit: ExitCode,
}

impl Run<'_> {
    async fn next(&mut self) -> anyhow::Result<ClientEvent> {
        self.session.events.recv().await.context("the session ended unexpectedly")
    }

    async fn until_opened(&mut self) -> anyhow::Result<()> {
        loop {
            match self.next().await? {
                ClientEvent::Psrp(Event::PoolState { state: PoolState::Opened, .. }) => return Ok(()),
                ClientEvent::Psrp(Event::PoolState { state: PoolState::Broken | PoolState::Closed, error }) => {
                    bail!("the session could not be opened: {}", error.map(|e| ErrorRecordView::from_value(&e).message).unwrap_or_default())
                }
                ClientEvent::SessionClosed => bail!("the server closed the session"),
                other => self.handle(other).await?,
            }
        }
    }

    async fn until_finished(&mut self, pipeline: Uuid) -> anyhow::Result<()> {
        let mut interrupts = 0;
        loop {
            let event = tokio::select! {
                e = self.next() => e?,
                _ = tokio::signal::ctrl_c() => {
                    interrupts += 1;
                    if interrupts > 1 {
                        bail!("interrupted");
                    }
                    eprintln!("^C: stopping the pipeline (again to quit)");
                    self.session.with(move |c| c.stop(pipeline)).await?;
                    continue;
                }
            };
            match event {
                ClientEvent::Psrp(Event::PipelineState { pipeline: p, state, error }) if p == pipeline && state.is_terminal() => {
                    if let Some(e) = error {
                        print_error(&ErrorRecordView::from_value(&e));
                    }
                    if state != PipelineState::Completed {
                        self.exit = ExitCode::FAILURE;
                    }
                    self.session.with(move |c| c.close_pipeline(p)).await?;
                    return Ok(());
                }
                ClientEvent::Psrp(Event::PoolState { state: PoolState::Broken | PoolState::Closed, error }) => {
                    let why = error.map(|e| ErrorRecordView::from_value(&e).message).unwrap_or_default();
                    bail!("the session ended: {why}");
                }
                ClientEvent::SessionClosed => bail!("the server closed the session"),
                other => self.handle(other).await?,
            }
        }
    }

    async fn until_closed(&mut self) {
        while let Some(e) = self.session.events.recv().await {
            if matches!(e, ClientEvent::SessionClosed) {
                return;
            }
        }
    }

    async fn handle(&mut self, event: ClientEvent) -> anyhow::Result<()> {
        let ClientEvent::Psrp(event) = event else { return Ok(()) };
        match event {
            Event::Output { value, .. } => {
                let mut out = std::io::stdout().lock();
                if self.json_mode {
                    writeln!(out, "{}", self.json.value_json(&value))?;
                } else {
                    writeln!(out, "{}", format::value_text(&value))?;
                }
            }
            Event::Record { kind, value, .. } => print_record(kind.into(), &value),
            Event::HostCall { pipeline, call } => {
                let ready = self.session.with(|c| c.pool().can_send_secure_strings()).await?;
                if needs_secure_string(call.method) && !ready {
                    self.pending_secure.push((pipeline, call));
                    if self.pending_secure.len() == 1 {
                        let key = tokio::task::spawn_blocking(|| ExchangeKey::generate(&mut rand::rngs::OsRng)).await??;
                        self.session.with(move |c| c.pool_mut().start_key_exchange(key)).await??;
                    }
                } else {
                    self.answer(pipeline, call).await?;
                }
            }
            Event::KeyRequested => {
                let key = tokio::task::spawn_blocking(|| ExchangeKey::generate(&mut rand::rngs::OsRng)).await??;
                self.session.with(move |c| c.pool_mut().start_key_exchange(key)).await??;
            }
            Event::KeyExchanged => {
                for (pipeline, call) in std::mem::take(&mut self.pending_secure) {
                    self.answer(pipeline, call).await?;
                }
            }
            _ => {}
        }
        Ok(())
    }

    async fn answer(&mut self, pipeline: Option<Uuid>, call: HostCall) -> anyhow::Result<()> {
        let result = self.host_result(&call).await?;
        if let Some(result) = result {
            self.session.with(move |c| c.pool_mut().host_response(pipeline, &call, result)).await??;
        }
        Ok(())
    }

    /// The console host: writes or asks (`None` for void calls).
    async fn host_result(&mut self, call: &HostCall) -> anyhow::Result<Option<HostResult>> {
        let asked = console::ask(call, &mut self.input);
        Ok(Some(match asked {
            Asked::Void => return Ok(None),
            Asked::Value(v) => HostResult::Value(v),
            Asked::Text(t) => HostResult::Value(Value::string(t)),
            Asked::Secret(t) => HostResult::Value(Value::SecureString(self.secure(t).await?)),
            Asked::Credential { user, password } => HostResult::Value(psgate_shared::psrp::host::credential_result(&user, self.secure(password).await?)),
            Asked::Choice(i) => HostResult::Value(Value::I32(i)),
            Asked::Fields(fields) => {
                let mut answers = Vec::new();
                for (name, text, secure) in fields {
                    answers.push((name, if secure { Value::SecureString(self.secure(text).await?) } else { Value::string(text) }));
                }
                HostResult::Value(psgate_shared::psrp::host::prompt_result(&answers))
            }
            Asked::Error(e) if call.method == HostMethod::GetInstanceId => {
                let _ = e;
                HostResult::Value(Value::Guid(Uuid::new_v4()))
            }
            Asked::Error(e) => HostResult::Error(e),
        }))
    }

    async fn secure(&self, text: String) -> anyhow::Result<Vec<u8>> {
        Ok(self.session.with(move |c| c.pool().secure_string(&text)).await??)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_and_command_lines() {
        assert_eq!(parse_target("bob@srv01:2222").ok(), Some(("bob".into(), "srv01".into(), 2222)));
        assert_eq!(parse_target("bob@srv01").ok(), Some(("bob".into(), "srv01".into(), 22)));
        assert_eq!(parse_target("bob@[::1]:22022").ok(), Some(("bob".into(), "::1".into(), 22022)));
        assert!(parse_target("srv01").is_err());
        assert!(parse_target("@srv01").is_err());
        assert_eq!(split_command(r#"python3 "/a b/host.py" -x"#).ok(), Some(vec!["python3".into(), "/a b/host.py".into(), "-x".into()]));
        assert!(split_command("a \"b").is_err());
    }
}
