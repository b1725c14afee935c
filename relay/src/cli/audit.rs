//! `psgate audit`: verify the audit chain, search it (by user, computer, time, command text and result), export it.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args, Subcommand, ValueEnum};

use crate::audit::export::{self, Matcher};
use crate::audit::Record;
use crate::config::Config;
use crate::store::{AuditFilter, Store};

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Check the audit chain: every record in order, none missing, none altered. Exits 1 when it is not intact.
    Verify {
        /// The TOML configuration file that names the database and the sealing key.
        #[arg(long, value_name = "FILE", env = "PSGATE_CONFIG")]
        config: Option<PathBuf>,
    },
    /// List the records that match (one line each, or JSON lines).
    Search {
        #[command(flatten)]
        query: Query,
        /// One JSON object a line (the record's place in the chain and its event).
        #[arg(long)]
        json: bool,
        /// The TOML configuration file that names the database.
        #[arg(long, value_name = "FILE", env = "PSGATE_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Write the records that match in a format other tools read.
    Export {
        #[command(flatten)]
        query: Query,
        /// jsonl: every record as a JSON line; asciicast: the pipelines as an asciicast v3 recording (asciinema
        /// play); transcript: the pipelines as a JEA-style PowerShell transcript.
        #[arg(long, value_enum, default_value_t = Format::Jsonl)]
        format: Format,
        /// The TOML configuration file that names the database.
        #[arg(long, value_name = "FILE", env = "PSGATE_CONFIG")]
        config: Option<PathBuf>,
    },
}

/// An export's format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// JSON lines.
    Jsonl,
    /// asciicast v3.
    Asciicast,
    /// A JEA-style transcript.
    Transcript,
}

/// Which records.
#[derive(Debug, Clone, Default, Args)]
pub struct Query {
    /// Done by this user, or in their sessions.
    #[arg(long)]
    user: Option<String>,
    /// On this computer.
    #[arg(long)]
    computer: Option<String>,
    /// One session: OWNER/ID (`alice/3`; `alice/0` is her psgate prompt).
    #[arg(long, value_name = "OWNER/ID")]
    session: Option<String>,
    /// From this time (UTC: 2026-12-08, 2026-12-08T10:42:07Z, or milliseconds since 1970).
    #[arg(long, value_name = "TIME")]
    since: Option<String>,
    /// Before this time.
    #[arg(long, value_name = "TIME")]
    until: Option<String>,
    /// Records of these kinds (login, login_refused, logout, session_opened, session_failed, session_closed,
    /// pipeline, quota_refused, admin, retention).
    #[arg(long, value_delimiter = ',')]
    kind: Vec<String>,
    /// Pipelines whose command text (or a command's name) contains this (wildcards * and ? allowed).
    #[arg(long, value_name = "TEXT")]
    command: Option<String>,
    /// Pipelines that returned an object of this type (ServiceController, or its full name; wildcards allowed).
    #[arg(long, value_name = "TYPE")]
    result_type: Option<String>,
    /// Pipelines that returned an object with this property value (Name=Spooler; wildcards allowed).
    #[arg(long, value_name = "PROPERTY=VALUE")]
    result: Option<String>,
}

/// A time as `--since`/`--until` take it, in milliseconds since the Unix epoch.
pub fn parse_time(text: &str) -> anyhow::Result<i64> {
    let t = text.trim();
    if let Ok(ms) = t.parse::<i64>() {
        return Ok(ms);
    }
    let date = time::macros::format_description!("[year]-[month]-[day]");
    if let Ok(d) = time::Date::parse(t, &date) {
        return Ok(d.midnight().assume_utc().unix_timestamp() * 1000);
    }
    let spaced = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second]");
    let stamp = t.trim_end_matches('Z').replace('T', " ");
    if let Ok(d) = time::PrimitiveDateTime::parse(&stamp, &spaced) {
        return Ok(d.assume_utc().unix_timestamp() * 1000);
    }
    anyhow::bail!("{text:?} is not a time: give 2026-12-08, 2026-12-08T10:42:07Z (UTC) or milliseconds since 1970")
}

impl Query {
    /// What the store narrows by, and what is matched on the records read.
    pub fn split(&self) -> anyhow::Result<(AuditFilter, Matcher)> {
        let session = match &self.session {
            Some(s) => {
                let (owner, id) = s.rsplit_once('/').context("--session is OWNER/ID, as alice/3")?;
                Some((owner.to_owned(), id.parse::<i64>().context("--session is OWNER/ID, as alice/3")?))
            }
            None => None,
        };
        let filter = AuditFilter {
            kinds: self.kind.iter().map(|k| k.trim().to_owned()).filter(|k| !k.is_empty()).collect(),
            user: self.user.clone(),
            computer: self.computer.clone(),
            since: self.since.as_deref().map(parse_time).transpose()?,
            until: self.until.as_deref().map(parse_time).transpose()?,
            session,
        };
        let result_property = match &self.result {
            Some(r) => {
                let (name, value) = r.split_once('=').context("--result is PROPERTY=VALUE, as Name=Spooler")?;
                Some((name.trim().to_owned(), value.trim().to_owned()))
            }
            None => None,
        };
        Ok((filter, Matcher { command: self.command.clone(), result_type: self.result_type.clone(), result_property }))
    }
}

/// The records `query` selects, in chain order.
pub async fn select(store: &Store, query: &Query) -> anyhow::Result<Vec<Record>> {
    let (filter, matcher) = query.split()?;
    Ok(export::select(store, &filter, &matcher, 0, usize::MAX).await?)
}

/// Runs `psgate audit …`.
pub fn run(command: AuditCommand) -> anyhow::Result<ExitCode> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(async {
        match command {
            AuditCommand::Verify { config } => verify(config.as_deref()).await,
            AuditCommand::Search { query, json, config } => {
                let (store, _) = open(config.as_deref()).await?;
                let records = select(&store, &query).await?;
                for r in &records {
                    if json {
                        println!("{}", export::json_line(r));
                    } else if let Some(e) = r.event() {
                        let session = match (&e.owner, e.session) {
                            (Some(o), Some(s)) => format!("{o}/{s}"),
                            _ => String::new(),
                        };
                        println!("{:>6}  {}  {:<12} {:<16} {:<10} {:<15} {}", r.seq, export::utc(e.at), e.actor, e.computer.as_deref().unwrap_or("-"), session, r.kind, export::summary(&e));
                    }
                }
                if !json {
                    eprintln!("{} records", records.len());
                }
                Ok(ExitCode::SUCCESS)
            }
            AuditCommand::Export { query, format, config } => {
                let (store, _) = open(config.as_deref()).await?;
                let records = select(&store, &query).await?;
                let text = match format {
                    Format::Jsonl => records.iter().map(|r| export::json_line(r) + "\n").collect(),
                    Format::Asciicast => export::asciicast(&records, &format!("psgate audit {}", query.session.as_deref().unwrap_or("export"))),
                    Format::Transcript => export::transcript(&records),
                };
                print!("{text}");
                Ok(ExitCode::SUCCESS)
            }
        }
    })
}

async fn open(config: Option<&Path>) -> anyhow::Result<(Store, Config)> {
    let config = Config::load(config)?;
    let store = Store::connect(&config.database).await.with_context(|| format!("opening {}", config.database))?;
    Ok((store, config))
}

async fn verify(config: Option<&Path>) -> anyhow::Result<ExitCode> {
    let (store, config) = open(config).await?;
    super::serve::check_seal_key(&config)?;
    let key = super::serve::sealer(&config, &store)?.audit_key();
    let (records, after, problems) = export::verify(&store, &key).await?;
    if problems.is_empty() {
        println!("{records} records checked: the audit chain is intact (to record {after})");
        return Ok(ExitCode::SUCCESS);
    }
    for p in &problems {
        println!("{p}");
    }
    println!("{records} records checked: the audit chain is NOT intact ({} problems)", problems.len());
    Ok(ExitCode::FAILURE)
}
