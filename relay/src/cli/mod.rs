//! The `psgate` command line.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod audit;
mod clixml;
mod console;
mod format;
mod invoke;
pub mod serve;
mod shell;

/// psgate: a browser-based PowerShell Remoting console and its relay.
#[derive(Debug, Parser)]
#[command(name = "psgate", version, about, long_about = None, after_help = CONFIG_HELP)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
    /// How the log (standard error) is written: text for people, or json (one object a line: timestamp, level,
    /// fields, target) for a log collector.
    #[arg(long, global = true, value_enum, value_name = "FORMAT", env = "PSGATE_LOG_FORMAT", default_value_t = LogFormat::Text)]
    log_format: LogFormat,
}

/// The log's format (`--log-format`, `PSGATE_LOG_FORMAT`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// JSON lines.
    Json,
}

const CONFIG_HELP: &str = "\
Configuration (psgate serve --config FILE, psgate user add --config FILE) is TOML; every key is optional:
  listen = \"127.0.0.1:8080\"              # env PSGATE_LISTEN
  database = \"psgate.db\"                 # env PSGATE_DATABASE: the store of users (argon2 hashes), logins, WinRM
                                         # sessions kept for Connect (passwords sealed) and the audit; an SQLite file,
                                         # or \"postgres://user:password@host:5432/psgate\" (PostgreSQL, which several
                                         # relays may share; no TLS yet). Its schema is migrated when the relay starts.
  seal_key_file = \"/etc/psgate/seal.key\" # the key sealing kept WinRM passwords (32 bytes, mode 0600, made if
                                         # missing); default <database>.key beside an SQLite file. Required with
                                         # PostgreSQL: every relay on the database needs the same key file
  assets = \"dist\"                        # env PSGATE_ASSETS (the built browser console)
  allowed_origins = [\"https://intranet.contoso.com\"]   # env PSGATE_ALLOWED_ORIGINS (comma-separated)
  secure_cookies = false                 # true when browsers reach the relay over HTTPS
  login_minutes = 480                    # a login ends this long after it was made, whatever the activity
  local_command = [\"pwsh\", \"-s\", \"-NoLogo\", \"-NoProfile\"]   # absent: no local transport
  known_hosts = \"/etc/psgate/known_hosts\"                   # SSH host keys
  accept_new_host_keys = false           # trust and record a host key seen for the first time (a changed one: never)
  metrics = true                         # serve GET /metrics (Prometheus text, no login; false: 404)
  [[allow]]                              # the target allow-list (empty: nothing is allowed)
  hosts = [\"srv*.contoso.com\", \"10.0.0.5\"]   # * and ? wildcards, case-insensitive
  ports = [22, 5985, 5986]               # absent: any port
  transports = [\"ssh\", \"winrm\"]          # ssh, winrm, local; absent: any
  quotas = { max_shells_per_user = 2 }   # quotas for this rule's targets, within [quotas] (the smaller wins)
  moderation = { moderators = [\"root\"], pass = [\"Get-*\"] }   # each pipeline in these sessions waits for a
                                         # moderator's approval (from a joined console) unless its commands pass
  [quotas]                               # PowerShell's WSMan:\\localhost\\Shell quotas, for the relay's own users
                                         # (absent: no limit)
  max_shells_per_user = 30               # MaxShellsPerUser: New-PSSession beyond it is refused
  max_concurrent_users = 10              # MaxConcurrentUsers: users holding sessions at once
  max_connections = 300                  # MaxConnections: API requests and WebSockets at once; beyond: 503 + Retry-After
  idle_timeout_secs = 7200               # IdleTimeout: a session its user has not used this long is closed (a
                                         # disconnected one counts from its disconnection; a running command is use)
  max_shell_run_time_secs = 28800        # MaxShellRunTime: a session is closed this long after it opened
  warning_secs = 300                     # the user's pages are warned this long before either close
  max_memory_per_shell_mb = 150          # MaxMemoryPerShellMB: output kept for a command (beyond: the oldest dropped,
                                         # or the target waits while a page follows it)
  [winrm]                                # WinRM targets
  ca_file = \"/etc/psgate/winrm-ca.pem\"   # CA certificates for HTTPS targets, besides the system's
  danger_accept_invalid_certificates = false   # lab only: any HTTPS certificate
  allow_basic_over_http = false          # Basic over plain HTTP sends the password in clear
  operation_timeout_secs = 20            # a Receive's OperationTimeout (below the target's MaxTimeoutms)
  [auth]
  idle_timeout_secs = 28800              # a browser login ends after this long without activity (API calls,
                                         # WebSocket messages); default 8 h, 900 (15 min) in kiosk mode.
                                         # Logins are kept in the database (token hashes): a restart keeps them.
  [embed]                                # the /embed page (the console of one session, for an iframe)
  frame_ancestors = [\"https://portal.contoso.com\"]   # who may frame /embed and get its postMessage events
                                         # ('self', *, https://*.contoso.com too); default: nobody ('none')
  cookie_same_site = \"strict\"            # strict | lax | none: none (SameSite=None; Secure; Partitioned) lets a
                                         # portal on another site embed the console; needs secure_cookies = true
  target = { computer = \"srv01\", transport = \"ssh\", port = 22, user = \"ops\", name = \"web\" }
                                         # (WinRM: use_ssl = true, authentication = \"kerberos\",
                                         #  configuration_name = \"JEA.Helpdesk\")
                                         # the session /embed opens; wins over /embed?computer=&transport=&port=&user=&name=
  [cluster]                              # several relays on one PostgreSQL database
  relay_id = \"relay-1\"                   # this relay in the store (default: host name and listen port); keep it
                                         # across restarts so a relay takes its own WinRM sessions back
  address = \"http://10.0.0.11:8080\"      # where the other relays reach it (default: http://<listen>)
  heartbeat_secs = 2                     # between heartbeats (and looks for relays gone)
  dead_after_secs = 10                   # a relay silent this long (or stopped) is gone: a survivor takes its
                                         # WinRM sessions over with Connect, connecting again those that were open
  [audit]                                # the audit trail in the database (psgate audit verify|search|export)
  enabled = true                         # record logins, sessions, pipelines with their objects, host prompts
                                         # (secrets redacted), quota refusals, admin actions
  max_pipeline_kb = 1024                 # a pipeline's objects kept up to this; beyond: their count and the last
  retention_days = 365                   # remove older records (absent: keep them all)
  [groups]                               # groups of relay users a session can be shared with (as group:ops)
  ops = [\"bob\", \"carol\"]
  [kiosk]                                # only a pick list of targets; the relay refuses any other
  enabled = true
  targets = [{ computer = \"localhost\", transport = \"local\", name = \"Shell\" }]   # each must pass [[allow]] too
The relay answers GET /healthz (200 while it serves), GET /readyz (200, or 503 when draining or its store does
not answer within 2 s) and GET /metrics without a login, none counted against max_connections.
PSGATE_LOG sets the log filter (e.g. info, psgate_relay=debug); --log-format json (or PSGATE_LOG_FORMAT=json)
writes the log as JSON lines.";

#[derive(Debug, Subcommand)]
enum Command {
    /// The audit trail the relays write: verify its chain, search it (by user, computer, time, command, result),
    /// export it (JSON lines, asciicast v3, a JEA-style transcript).
    #[command(subcommand)]
    Audit(audit::AuditCommand),
    /// Decode, encode and round-trip CLIXML (PowerShell's object serialization).
    #[command(subcommand)]
    Clixml(clixml::ClixmlCommand),
    /// Run one script on a remote PowerShell over SSH or WinRM, or on a local one, and print what it returns.
    Invoke(Box<invoke::InvokeArgs>),
    /// Run the relay: the browser console, its API and the sessions (the configuration keys: `psgate --help`).
    Serve {
        /// The TOML configuration file (absent: defaults and environment).
        #[arg(long, value_name = "FILE", env = "PSGATE_CONFIG")]
        config: Option<PathBuf>,
    },
    /// psgate's own prompt (PS psgate>) in this terminal: New-PSSession, Enter-PSSession, Invoke-Command… with the
    /// sessions held in this process. Reads a script from standard input when it is not a terminal.
    Shell(Box<shell::ShellArgs>),
    /// Manage the relay's users.
    #[command(subcommand)]
    User(UserCommand),
    /// Ask a relay (through the database the relays share) to hand its sessions over to the other relays and stop,
    /// as SIGTERM does; wait until it has.
    Drain {
        /// The relay's `[cluster] relay_id` (default: the configuration's own).
        #[arg(long, value_name = "ID")]
        relay: Option<String>,
        /// How long to wait for it to stop, in seconds.
        #[arg(long, value_name = "SECS", default_value_t = 60)]
        wait: u64,
        /// The TOML configuration file that names the database.
        #[arg(long, value_name = "FILE", env = "PSGATE_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Run psgate on loopback in demo mode (a demo user, the built-in demo target), serving the browser console.
    Demo {
        /// Port on 127.0.0.1 (0 picks a free one).
        #[arg(long, default_value_t = 8080, env = "PSGATE_PORT")]
        port: u16,
        /// Folder with the built browser console (Trunk's `dist`).
        #[arg(long, env = "PSGATE_ASSETS", default_value = "dist")]
        assets: PathBuf,
        /// Kiosk mode: the sessions panel offers only a pick list (two names for the demo target).
        #[arg(long)]
        kiosk: bool,
        /// Origins that may frame /embed (`[embed] frame_ancestors`), comma-separated or repeated.
        #[arg(long, value_name = "ORIGIN", value_delimiter = ',')]
        frame_ancestors: Vec<String>,
        /// Log a browser login out after this many seconds without activity (`[auth] idle_timeout_secs`).
        #[arg(long, value_name = "SECS")]
        idle_timeout: Option<u64>,
    },
}

#[derive(Debug, Subcommand)]
enum UserCommand {
    /// Add a user or set a user's password (read from standard input, or prompted for on a terminal).
    Add {
        /// The user name.
        name: String,
        /// Make the user a relay admin: sees every user's sessions and quota use (Get-PSGateSession,
        /// Get-PSGateQuota -AllUsers) and may close any session (Remove-PSGateSession, recorded in the audit).
        #[arg(long, conflicts_with = "no_admin")]
        admin: bool,
        /// Take the user's admin rights away.
        #[arg(long)]
        no_admin: bool,
        /// The TOML configuration file that names the database.
        #[arg(long, value_name = "FILE", env = "PSGATE_CONFIG")]
        config: Option<PathBuf>,
    },
}

/// Runs a parsed command line; returns the process exit code.
pub fn run(cli: Cli) -> ExitCode {
    // A server logs its lifecycle; a one-shot command only what went wrong.
    init_tracing(if matches!(cli.command, Command::Demo { .. } | Command::Serve { .. }) { "info" } else { "warn" }, cli.log_format);
    let result = match cli.command {
        Command::Audit(cmd) => audit::run(cmd),
        Command::Clixml(cmd) => clixml::run(cmd),
        Command::Invoke(args) => invoke::run(*args),
        Command::Shell(args) => shell::run(*args),
        Command::Serve { config } => serve::serve(config.as_deref()).map(|()| ExitCode::SUCCESS),
        Command::User(UserCommand::Add { name, admin, no_admin, config }) => {
            let flag = if admin { Some(true) } else if no_admin { Some(false) } else { None };
            serve::add_user(config.as_deref(), &name, flag).map(|()| ExitCode::SUCCESS)
        }
        Command::Drain { relay, wait, config } => serve::drain(config.as_deref(), relay.as_deref(), std::time::Duration::from_secs(wait)).map(|()| ExitCode::SUCCESS),
        Command::Demo { port, assets, kiosk, frame_ancestors, idle_timeout } => {
            serve::demo(port, assets, serve::DemoOptions { kiosk, frame_ancestors, idle_timeout_secs: idle_timeout }).map(|()| ExitCode::SUCCESS)
        }
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("psgate: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_tracing(default: &str, format: LogFormat) {
    use tracing_subscriber::util::SubscriberInitExt as _;
    let filter = tracing_subscriber::EnvFilter::try_from_env("PSGATE_LOG").unwrap_or_else(|_| default.into());
    let _ = subscriber(filter, format, std::io::stderr).try_init();
}

/// The log's subscriber: `filter`'s events in `format`, written to `writer`.
fn subscriber<W>(filter: tracing_subscriber::EnvFilter, format: LogFormat, writer: W) -> Box<dyn tracing::Subscriber + Send + Sync>
where
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(writer);
    match format {
        LogFormat::Text => Box::new(builder.finish()),
        // The span's fields too: a session's or a user's, where an event happens inside one.
        LogFormat::Json => Box::new(builder.json().with_current_span(true).with_span_list(false).finish()),
    }
}

/// Ctrl+C, or SIGTERM (a service manager, a container runtime, a balancer draining the relay): the relay stops
/// cleanly, its WinRM sessions disconnected and handed over to the relays that share its store.
async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => tracing::info!("interrupted: stopping"),
        () = term => tracing::info!("SIGTERM: stopping"),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    /// What the subscriber writes, kept.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner).extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn log(format: LogFormat) -> String {
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = subscriber(tracing_subscriber::EnvFilter::new("info"), format, move || writer.clone());
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!(user = "alice", session = 3, "new session");
            tracing::warn!(reason = "a \"quoted\"\nline", "not ready");
        });
        String::from_utf8(captured.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()).expect("UTF-8")
    }

    #[test]
    fn json_log_lines_parse_with_their_fields() {
        let text = log(LogFormat::Json);
        let lines: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}"))).collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert_eq!((lines[0]["level"].as_str(), lines[0]["fields"]["message"].as_str()), (Some("INFO"), Some("new session")));
        assert_eq!((lines[0]["fields"]["user"].as_str(), lines[0]["fields"]["session"].as_i64()), (Some("alice"), Some(3)));
        assert_eq!(lines[1]["fields"]["reason"].as_str(), Some("a \"quoted\"\nline"));
        assert!(lines[0]["timestamp"].is_string());
        // The default stays for people.
        let text = log(LogFormat::Text);
        assert!(text.contains("INFO") && text.contains("new session") && serde_json::from_str::<serde_json::Value>(text.lines().next().unwrap_or_default()).is_err(), "{text}");
    }

    #[test]
    fn the_log_format_is_an_option_of_every_command_and_json_is_asked_by_name() {
        let cli = Cli::try_parse_from(["psgate", "serve", "--log-format", "json"]).expect("parses");
        assert_eq!(cli.log_format, LogFormat::Json);
        let cli = Cli::try_parse_from(["psgate", "serve"]).expect("parses");
        assert!(matches!(cli.log_format, LogFormat::Text | LogFormat::Json), "text unless PSGATE_LOG_FORMAT says otherwise");
        assert!(Cli::try_parse_from(["psgate", "serve", "--log-format", "xml"]).is_err());
    }
}
