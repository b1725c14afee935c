//! The relay's configuration: a TOML file, then environment variables over it.
//!
//! Every field has a safe default: loopback only, no allowed targets, no local PowerShell. An unknown key, a bad
//! value or an unreadable file is a [`ConfigError`] naming the problem, never a panic.
//!
//! ```toml
//! listen = "127.0.0.1:8080"          # PSGATE_LISTEN
//! database = "psgate.db"             # PSGATE_DATABASE; or "postgres://user:password@host/db" (PostgreSQL)
//! seal_key_file = "/etc/psgate/seal.key"   # the key sealing kept WinRM passwords (default: <database>.key;
//!                                    # needed with PostgreSQL: relays sharing a store share it)
//! assets = "dist"                    # PSGATE_ASSETS
//! allowed_origins = ["https://intranet.contoso.com"]   # PSGATE_ALLOWED_ORIGINS (comma-separated)
//! secure_cookies = false             # true behind a TLS proxy (the cookie gets `Secure`)
//! login_minutes = 480                # how long a login lasts
//! local_command = ["pwsh", "-s", "-NoLogo", "-NoProfile"]   # the local transport's command line
//! known_hosts = "/etc/psgate/known_hosts"                   # SSH host keys (default ~/.ssh/known_hosts)
//! accept_new_host_keys = false                              # record a first-seen host's key (a changed one is refused)
//! metrics = true                     # serve GET /metrics (Prometheus text, no login)
//!
//! [[allow]]                          # the target allow-list: a target must match one rule
//! hosts = ["srv*.contoso.com", "10.0.0.5"]
//! ports = [22]                       # empty or absent: any port
//! transports = ["ssh"]               # empty or absent: any transport
//!
//! quotas = { max_shells_per_user = 2 }   # this rule's targets only, within [quotas]
//!
//! [quotas]                           # PowerShell's WSMan:\localhost\Shell quotas for the relay's users (see crate::quotas)
//! max_shells_per_user = 30
//! max_concurrent_users = 10
//! max_connections = 300              # WebSockets and API requests at once; beyond: 503 with Retry-After
//! idle_timeout_secs = 7200           # IdleTimeout: a session unused this long is closed, with a warning first
//! max_shell_run_time_secs = 28800    # MaxShellRunTime: a session is closed this long after it opened
//!
//! [auth]
//! idle_timeout_secs = 28800          # a browser login ends after this long without activity (kiosk: 900)
//!
//! [embed]                            # the /embed page, for iframes
//! frame_ancestors = ["https://portal.contoso.com"]   # who may frame /embed (default: nobody, 'none')
//! cookie_same_site = "strict"        # strict | lax | none (none: a portal on another site; needs secure_cookies)
//! target = { computer = "srv01.contoso.com", transport = "ssh", port = 22, user = "ops" }   # wins over the URL's
//!
//! [kiosk]                            # only these targets, from a pick list
//! enabled = true
//! targets = [{ computer = "localhost", transport = "local", name = "Local shell" }]
//! ```

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use psgate_shared::api::{Target, Transport, WinrmAuth};
use serde::Deserialize;

/// Why the configuration cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("reading {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid TOML or has a bad value.
    #[error("{path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// toml's message (with the line).
        message: String,
    },
    /// An environment variable has a bad value.
    #[error("{name}: {message}")]
    Env {
        /// The variable.
        name: &'static str,
        /// Why.
        message: String,
    },
    /// A value is well-formed but unusable.
    #[error("{0}")]
    Invalid(String),
}

/// One rule of the target allow-list.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AllowRule {
    /// Host patterns: `*` any run of characters, `?` one; compared case-insensitively.
    pub hosts: Vec<String>,
    /// Allowed ports; empty: any.
    #[serde(default)]
    pub ports: Vec<u16>,
    /// Allowed transports; empty: any.
    #[serde(default)]
    pub transports: Vec<Transport>,
    /// Quotas for the sessions to this rule's targets, within `[quotas]` (the smaller wins).
    #[serde(default)]
    pub quotas: crate::quotas::Quotas,
    /// Moderated sessions: each pipeline in a session to this rule's targets waits for a moderator's approval,
    /// unless all its commands are ones that pass.
    #[serde(default)]
    pub moderation: Option<Moderation>,
}

/// `moderation = { moderators = ["root"], pass = ["Get-*"] }` of an `[[allow]]` rule.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Moderation {
    /// The relay users who approve (or deny) a pipeline: from a console joined to the session, which they may
    /// open as observers without an invitation.
    pub moderators: Vec<String>,
    /// Command name patterns (`*`, `?`; case-insensitive) that run without approval: a pipeline of such commands
    /// only (Command objects, not script text) passes.
    #[serde(default)]
    pub pass: Vec<String>,
}

impl Moderation {
    /// Whether `spec` runs without approval.
    pub fn passes(&self, spec: &psgate_shared::psrp::messages::PipelineSpec) -> bool {
        !spec.commands.is_empty() && spec.commands.iter().all(|c| !c.is_script && self.pass.iter().any(|p| glob_match(p, &c.text)))
    }
}

impl AllowRule {
    /// Whether the rule lets `host:port` over `transport` through.
    pub fn allows(&self, host: &str, port: u16, transport: Transport) -> bool {
        self.hosts.iter().any(|p| glob_match(p, host))
            && (self.ports.is_empty() || self.ports.contains(&port))
            && (self.transports.is_empty() || self.transports.contains(&transport))
    }
}

/// A target named in the configuration (`[kiosk] targets`, `[embed] target`): New-PSSession's parameters
/// without credentials.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetPreset {
    /// The host name or address (`localhost` for the local transport).
    pub computer: String,
    /// The transport.
    pub transport: Transport,
    /// The port (absent: 22 for SSH).
    #[serde(default)]
    pub port: Option<u16>,
    /// The SSH user (absent: the browser asks for it).
    #[serde(default)]
    pub user: Option<String>,
    /// The session's name.
    #[serde(default)]
    pub name: Option<String>,
    /// WinRM over HTTPS (default port 5986).
    #[serde(default)]
    pub use_ssl: bool,
    /// WinRM authentication (absent: Negotiate).
    #[serde(default)]
    pub authentication: Option<WinrmAuth>,
    /// WinRM configuration name (absent: Microsoft.PowerShell).
    #[serde(default)]
    pub configuration_name: Option<String>,
}

impl TargetPreset {
    /// A preset with nothing but its computer and transport.
    pub fn new(computer: impl Into<String>, transport: Transport) -> TargetPreset {
        TargetPreset { computer: computer.into(), transport, port: None, user: None, name: None, use_ssl: false, authentication: None, configuration_name: None }
    }

    /// As a `new_sessions` target (no password, no key file).
    pub fn to_target(&self) -> Target {
        Target {
            computer_name: self.computer.clone(),
            transport: self.transport,
            port: self.port,
            user: self.user.clone(),
            password: None,
            key_file: None,
            subsystem: None,
            name: self.name.clone(),
            use_ssl: self.use_ssl,
            authentication: self.authentication,
            configuration_name: self.configuration_name.clone(),
            shell_id: None,
        }
    }

    /// Whether a browser's target is this one: same computer (case-insensitive), transport and port, and the same
    /// user when this one names a user. The name and the credentials do not matter.
    pub fn matches(&self, target: &Target) -> bool {
        self.computer.eq_ignore_ascii_case(target.computer_name.trim())
            && self.transport == target.transport
            && self.use_ssl == target.use_ssl
            && default_port(self.transport, self.use_ssl, self.port) == default_port(target.transport, target.use_ssl, target.port)
            && self.user.as_deref().is_none_or(|u| Some(u) == target.user.as_deref())
            && configuration(self.configuration_name.as_deref()).eq_ignore_ascii_case(configuration(target.configuration_name.as_deref()))
    }

    fn check(&self, what: &str) -> Result<(), ConfigError> {
        if self.computer.trim().is_empty() {
            return Err(ConfigError::Invalid(format!("{what}: computer is empty")));
        }
        if self.port == Some(0) {
            return Err(ConfigError::Invalid(format!("{what}: port 0 is not a port")));
        }
        Ok(())
    }
}

/// A target's port: the given one, else 22 for SSH, 5985 (5986 with SSL) for WinRM, 0 for the local transport.
pub fn default_port(transport: Transport, use_ssl: bool, port: Option<u16>) -> u16 {
    port.unwrap_or(match transport {
        Transport::Ssh => 22,
        Transport::Local => 0,
        Transport::Winrm if use_ssl => 5986,
        Transport::Winrm => 5985,
    })
}

/// A WinRM target's configuration name (PowerShell's default when absent or empty).
pub fn configuration(name: Option<&str>) -> &str {
    name.map(str::trim).filter(|n| !n.is_empty()).unwrap_or("Microsoft.PowerShell")
}

/// `[winrm]`: how the relay reaches WinRM targets.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WinrmConfig {
    /// A PEM file of CA certificates trusted for HTTPS targets, besides the system's.
    pub ca_file: Option<PathBuf>,
    /// Lab only: accept any HTTPS certificate (no protection against a man in the middle).
    pub danger_accept_invalid_certificates: bool,
    /// Allow Basic authentication over plain HTTP (the password and every message cross the network in clear).
    pub allow_basic_over_http: bool,
    /// `wsman:OperationTimeout` of Receives, in seconds (below the target's MaxTimeoutms, 60 s by default).
    pub operation_timeout_secs: u64,
}

impl Default for WinrmConfig {
    fn default() -> WinrmConfig {
        WinrmConfig { ca_file: None, danger_accept_invalid_certificates: false, allow_basic_over_http: false, operation_timeout_secs: 20 }
    }
}

/// `[cluster]`: relays that share one store (PostgreSQL) register there and heartbeat; when one stops or goes silent, a
/// survivor takes its WinRM sessions over (the protocol's Connect, from the kept ShellId and sealed credentials).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterConfig {
    /// This relay's id in the store; the same after a restart, so it takes its own sessions back (default: the host
    /// name and the listen port; a relay listening on port 0 gets a new id each start).
    pub relay_id: Option<String>,
    /// Where the other relays reach this one (default: `http://<listen>`).
    pub address: Option<String>,
    /// Seconds between heartbeats (and looks for relays gone).
    pub heartbeat_secs: u64,
    /// A relay silent this many seconds is gone: its WinRM sessions are taken over.
    pub dead_after_secs: u64,
}

impl Default for ClusterConfig {
    fn default() -> ClusterConfig {
        ClusterConfig { relay_id: None, address: None, heartbeat_secs: 2, dead_after_secs: 10 }
    }
}

impl Config {
    /// `[cluster] relay_id`, or its default.
    pub fn relay_id(&self) -> String {
        if let Some(id) = self.cluster.relay_id.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
            return id.to_owned();
        }
        if self.listen.port() == 0 {
            return format!("relay-{}", uuid::Uuid::new_v4().simple());
        }
        let host = crate::host_name().unwrap_or_else(|| "localhost".into());
        format!("{host}:{}", self.listen.port())
    }

    /// `[cluster] address`, or its default.
    pub fn relay_address(&self) -> String {
        self.cluster.address.clone().unwrap_or_else(|| format!("http://{}", self.listen))
    }
}

/// The login cookie's `SameSite`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SameSite {
    /// Sent only from the relay's own site (a portal on the same site, `*.contoso.com`, may frame it).
    #[default]
    Strict,
    /// Also on top-level navigations from other sites.
    Lax,
    /// Also inside an iframe of another site: `SameSite=None; Secure; Partitioned` (HTTPS only).
    None,
}

impl SameSite {
    /// The attribute's value.
    pub fn as_str(self) -> &'static str {
        match self {
            SameSite::Strict => "Strict",
            SameSite::Lax => "Lax",
            SameSite::None => "None",
        }
    }
}

/// `[audit]`: the audit trail ([`crate::audit`]), written to the store by every relay.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditConfig {
    /// Record (default true).
    pub enabled: bool,
    /// The most of a pipeline's objects and records kept, in KiB; beyond it, their count and the last.
    pub max_pipeline_kb: usize,
    /// Records older than this many days are removed (none: kept for ever).
    pub retention_days: Option<u64>,
}

impl Default for AuditConfig {
    fn default() -> AuditConfig {
        AuditConfig { enabled: true, max_pipeline_kb: 1024, retention_days: None }
    }
}

/// `[auth]`: browser logins.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// Seconds without activity (API calls, WebSocket messages) after which a login ends; absent: 8 hours, 15
    /// minutes in kiosk mode.
    pub idle_timeout_secs: Option<u64>,
}

/// `[embed]`: the `/embed` page for iframes.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EmbedConfig {
    /// CSP `frame-ancestors` sources allowed to frame `/embed` (`https://portal.contoso.com`,
    /// `https://*.contoso.com`, `'self'`, `*`); empty: `'none'`. The page's `postMessage` events go only to these.
    pub frame_ancestors: Vec<String>,
    /// The login cookie's `SameSite` (`none` lets a portal on another site embed the console; needs
    /// `secure_cookies`).
    pub cookie_same_site: SameSite,
    /// The target `/embed` opens; set, it wins over the URL's `?computer=…`.
    pub target: Option<TargetPreset>,
}

impl EmbedConfig {
    /// The `frame-ancestors` directive's sources for `/embed`.
    pub fn frame_ancestors_directive(&self) -> String {
        if self.frame_ancestors.is_empty() { "'none'".to_owned() } else { self.frame_ancestors.join(" ") }
    }
}

/// `[kiosk]`: a console limited to a pick list of targets.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KioskConfig {
    /// Kiosk mode on: the sessions panel offers only `targets`, and the relay refuses any other.
    pub enabled: bool,
    /// The targets offered (each must also pass the allow-list).
    pub targets: Vec<TargetPreset>,
}

/// The default idle timeout of a login.
pub const DEFAULT_IDLE_TIMEOUT_SECS: u64 = 8 * 60 * 60;
/// The default idle timeout of a login in kiosk mode.
pub const KIOSK_IDLE_TIMEOUT_SECS: u64 = 15 * 60;

/// The relay's configuration.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Where to listen.
    pub listen: SocketAddr,
    /// The store of users, logins and kept WinRM sessions: an SQLite file, or a `postgres://` URL.
    pub database: crate::store::Database,
    /// The key file that seals kept WinRM passwords (made if missing); absent: `<database>.key` beside an SQLite
    /// file (a PostgreSQL store needs it: relays that share a store share this key).
    pub seal_key_file: Option<PathBuf>,
    /// Trunk's `dist` with the browser console.
    pub assets: PathBuf,
    /// Origins besides the relay's own that may open the WebSocket (`https://host[:port]`).
    pub allowed_origins: Vec<String>,
    /// Mark the login cookie `Secure` (set when browsers reach the relay over HTTPS).
    pub secure_cookies: bool,
    /// How long a login lasts, in minutes.
    pub login_minutes: u64,
    /// The local transport's command line; absent: the local transport is off.
    pub local_command: Option<Vec<String>>,
    /// The known_hosts file for SSH targets (default: `~/.ssh/known_hosts`).
    pub known_hosts: Option<PathBuf>,
    /// Trust and record the key of an SSH host seen for the first time (a changed key is always refused).
    pub accept_new_host_keys: bool,
    /// The prompt may write files on this machine (Export-PSSession's module): set by `psgate shell`, where the
    /// machine is the user's own; never from a configuration file (a relay must not write where its users say).
    #[serde(skip)]
    pub prompt_writes_files: bool,
    /// The target allow-list; empty: no target is allowed.
    pub allow: Vec<AllowRule>,
    /// `[auth]`: browser logins.
    pub auth: AuthConfig,
    /// `[embed]`: the `/embed` page.
    pub embed: EmbedConfig,
    /// `[kiosk]`: kiosk mode.
    pub kiosk: KioskConfig,
    /// `[winrm]`: WinRM targets.
    pub winrm: WinrmConfig,
    /// `[quotas]`: the relay's session quotas for its users.
    pub quotas: crate::quotas::Quotas,
    /// `[cluster]`: several relays on one store.
    pub cluster: ClusterConfig,
    /// `[audit]`: the audit trail.
    pub audit: AuditConfig,
    /// `[groups]`: named groups of relay users (`ops = ["bob", "carol"]`), a session shared with `group:ops` is shared
    /// with each. The relays of a site give the same groups.
    pub groups: std::collections::BTreeMap<String, Vec<String>>,
    /// Serve `GET /metrics` (Prometheus text, without a login: a relay whose port is reachable by people who should
    /// not see its session counts turns it off, or keeps the path from them at its proxy).
    pub metrics: bool,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            database: crate::store::Database::Sqlite(PathBuf::from("psgate.db")),
            seal_key_file: None,
            assets: PathBuf::from("dist"),
            allowed_origins: Vec::new(),
            secure_cookies: false,
            login_minutes: 8 * 60,
            local_command: None,
            known_hosts: None,
            accept_new_host_keys: false,
            prompt_writes_files: false,
            allow: Vec::new(),
            auth: AuthConfig::default(),
            embed: EmbedConfig::default(),
            kiosk: KioskConfig::default(),
            winrm: WinrmConfig::default(),
            quotas: crate::quotas::Quotas::default(),
            cluster: ClusterConfig::default(),
            audit: AuditConfig::default(),
            groups: std::collections::BTreeMap::new(),
            metrics: true,
        }
    }
}

impl Config {
    /// Reads `path` (if given), then applies the environment.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        let config = match path {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_owned(), source })?;
                Config::parse(&text).map_err(|message| ConfigError::Parse { path: path.to_owned(), message })?
            }
            None => Config::default(),
        };
        config.with_env(|name| std::env::var(name).ok())
    }

    /// Parses a TOML text (missing keys take their defaults).
    pub fn parse(text: &str) -> Result<Config, String> {
        let config: Config = toml::from_str(text).map_err(|e| e.to_string().trim_end().to_owned())?;
        config.validate().map_err(|e| e.to_string())?;
        Ok(config)
    }

    /// Applies `PSGATE_LISTEN`, `PSGATE_DATABASE`, `PSGATE_ASSETS`, `PSGATE_ALLOWED_ORIGINS` (read through `env`).
    pub fn with_env(mut self, env: impl Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        if let Some(v) = env("PSGATE_LISTEN") {
            self.listen = v.parse().map_err(|_| ConfigError::Env { name: "PSGATE_LISTEN", message: format!("{v:?} is not an address like 127.0.0.1:8080") })?;
        }
        if let Some(v) = env("PSGATE_DATABASE") {
            self.database = crate::store::Database::from_url(&v);
        }
        if let Some(v) = env("PSGATE_ASSETS") {
            self.assets = v.into();
        }
        if let Some(v) = env("PSGATE_ALLOWED_ORIGINS") {
            self.allowed_origins = v.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned).collect();
        }
        self.validate()?;
        Ok(self)
    }

    /// Checks the values that parse but cannot be used (also for a configuration built in code).
    pub fn validate(&self) -> Result<(), ConfigError> {
        for origin in &self.allowed_origins {
            if !(origin.starts_with("http://") || origin.starts_with("https://")) || origin.ends_with('/') {
                return Err(ConfigError::Invalid(format!("allowed origin {origin:?} is not like https://host[:port]")));
            }
        }
        if self.login_minutes == 0 {
            return Err(ConfigError::Invalid("login_minutes must be at least 1".into()));
        }
        if self.local_command.as_ref().is_some_and(Vec::is_empty) {
            return Err(ConfigError::Invalid("local_command is empty".into()));
        }
        for (i, rule) in self.allow.iter().enumerate() {
            if rule.hosts.is_empty() || rule.hosts.iter().any(|h| h.trim().is_empty()) {
                return Err(ConfigError::Invalid("an [[allow]] rule needs hosts, none empty".into()));
            }
            rule.quotas.validate(&format!("[[allow]] rule {} quotas:", i + 1), false).map_err(ConfigError::Invalid)?;
        }
        self.quotas.validate("[quotas]", true).map_err(ConfigError::Invalid)?;
        if !(1..=3600).contains(&self.winrm.operation_timeout_secs) {
            return Err(ConfigError::Invalid("[winrm] operation_timeout_secs must be between 1 and 3600".into()));
        }
        if self.auth.idle_timeout_secs == Some(0) {
            return Err(ConfigError::Invalid("[auth] idle_timeout_secs must be at least 1".into()));
        }
        if self.auth.idle_timeout_secs.is_some_and(|s| s > 366 * 24 * 3600) {
            return Err(ConfigError::Invalid("[auth] idle_timeout_secs is more than a year".into()));
        }
        if self.login_minutes > 366 * 24 * 60 {
            return Err(ConfigError::Invalid("login_minutes is more than a year".into()));
        }
        for source in &self.embed.frame_ancestors {
            check_frame_ancestor(source, self.embed.frame_ancestors.len())?;
        }
        if self.embed.cookie_same_site == SameSite::None && !self.secure_cookies {
            return Err(ConfigError::Invalid(
                "[embed] cookie_same_site = \"none\" needs secure_cookies = true: browsers drop a SameSite=None cookie without Secure, \
                 so the relay must be reached over HTTPS (directly or behind a TLS proxy)"
                    .into(),
            ));
        }
        let usable = |what: &str, preset: &TargetPreset| -> Result<(), ConfigError> {
            preset.check(what)?;
            let port = default_port(preset.transport, preset.use_ssl, preset.port);
            if !self.allows(preset.computer.trim(), port, preset.transport) {
                return Err(ConfigError::Invalid(format!("{what} {:?} is not in the allow-list: add an [[allow]] rule for it", preset.computer)));
            }
            if preset.transport == Transport::Local && self.local_command.is_none() {
                return Err(ConfigError::Invalid(format!("{what} {:?} uses the local transport, but local_command is not set", preset.computer)));
            }
            Ok(())
        };
        if let Some(target) = &self.embed.target {
            usable("[embed] target", target)?;
        }
        if self.kiosk.enabled && self.kiosk.targets.is_empty() {
            return Err(ConfigError::Invalid("[kiosk] is enabled without targets: list them in [kiosk] targets".into()));
        }
        for target in &self.kiosk.targets {
            usable("[kiosk] target", target)?;
        }
        Ok(())
    }

    /// How long a browser login may stay idle.
    pub fn idle_timeout(&self) -> std::time::Duration {
        let default = if self.kiosk.enabled { KIOSK_IDLE_TIMEOUT_SECS } else { DEFAULT_IDLE_TIMEOUT_SECS };
        std::time::Duration::from_secs(self.auth.idle_timeout_secs.unwrap_or(default))
    }

    /// Kiosk mode: `Ok` with nothing to do when it is off or the target is one of the kiosk's; else why not.
    pub fn kiosk_allows(&self, target: &Target) -> Result<(), String> {
        if !self.kiosk.enabled || self.kiosk.targets.iter().any(|k| k.matches(target)) {
            return Ok(());
        }
        Err(format!("{} is not one of this kiosk's targets", target.computer_name.trim()))
    }

    /// Whether the allow-list lets the target through.
    pub fn allows(&self, host: &str, port: u16, transport: Transport) -> bool {
        self.allow.iter().any(|r| r.allows(host, port, transport))
    }
}

/// One source of `[embed] frame_ancestors`: `'self'`, `'none'` (alone), `*`, or `http(s)://host[:port]` where the
/// host may start with `*.` and the port may be `*`. Nothing else, so the CSP header cannot be broken out of.
fn check_frame_ancestor(source: &str, count: usize) -> Result<(), ConfigError> {
    let bad = |why: &str| Err(ConfigError::Invalid(format!("[embed] frame_ancestors: {source:?} {why}")));
    match source {
        "'self'" | "*" => return Ok(()),
        "'none'" if count == 1 => return Ok(()),
        "'none'" => return bad("cannot be combined with other sources"),
        _ => {}
    }
    let Some(rest) = source.strip_prefix("https://").or_else(|| source.strip_prefix("http://")) else {
        return bad("is not like https://portal.contoso.com[:port] (or 'self', *)");
    };
    let (host, port) = match rest.rsplit_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (rest, None),
    };
    let name = host.strip_prefix("*.").unwrap_or(host);
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-') {
        return bad("has a bad host (no path, no trailing /)");
    }
    if let Some(port) = port
        && port != "*"
        && port.parse::<u16>().is_err()
    {
        return bad("has a bad port");
    }
    Ok(())
}

/// `*` matches any run of characters, `?` one character; ASCII case-insensitive. Iterative (no backtracking blowup).
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().map(|c| c.to_ascii_lowercase()).collect();
    let t: Vec<char> = text.chars().map(|c| c.to_ascii_lowercase()).collect();
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        for (pattern, text, expect) in [
            ("srv*.contoso.com", "srv01.contoso.com", true),
            ("srv*.contoso.com", "SRV01.Contoso.COM", true),
            ("srv*.contoso.com", "srv01.contoso.com.evil.org", false),
            ("srv*.contoso.com", "web01.contoso.com", false),
            ("127.0.0.1", "127.0.0.1", true),
            ("127.0.0.1", "127.0.0.10", false),
            ("srv??", "srv01", true),
            ("srv??", "srv1", false),
            ("*", "anything", true),
            ("a*b*c", "aXXbYYc", true),
            ("a*b*c", "aXXbYY", false),
        ] {
            assert_eq!(glob_match(pattern, text), expect, "{pattern} vs {text}");
        }
    }

    #[test]
    fn quotas_global_and_per_rule() {
        let c = Config::parse(
            r#"
            [[allow]]
            hosts = ["dc*"]
            quotas = { max_shells_per_user = 1, idle_timeout_secs = 600 }
            [quotas]
            max_shells_per_user = 30
            max_concurrent_users = 10
            max_connections = 300
            idle_timeout_secs = 7200
            "#,
        )
        .expect("valid");
        assert_eq!((c.quotas.max_shells_per_user, c.quotas.max_concurrent_users, c.quotas.max_connections), (Some(30), Some(10), Some(300)));
        let tight = c.quotas.tightened(&c.allow[0].quotas);
        assert_eq!((tight.max_shells_per_user, tight.idle_timeout_secs, tight.max_concurrent_users), (Some(1), Some(600), Some(10)));
        for (text, says) in [
            ("[quotas]\nmax_shells_per_user = 0", "max_shells_per_user must be at least 1"),
            ("[quotas]\nmax_shells_per_user = -1", "invalid value"),
            ("[quotas]\nmax_shell_per_user = 3", "unknown field"),
            ("[[allow]]\nhosts = [\"a\"]\nquotas = { max_connections = 3 }", "set them in [quotas]"),
        ] {
            let e = Config::parse(text).expect_err(text);
            assert!(e.contains(says), "{text}: {e}");
        }
    }

    #[test]
    fn defaults_are_safe() {
        let c = Config::parse("").expect("empty is fine");
        assert!(c.listen.ip().is_loopback());
        assert!(c.local_command.is_none());
        assert!(!c.allows("localhost", 22, Transport::Ssh), "nothing is allowed by default");
    }

    #[test]
    fn a_file_with_rules_and_env_overrides() {
        let c = Config::parse(
            r#"
            listen = "0.0.0.0:9000"
            allowed_origins = ["https://intranet.contoso.com"]
            [[allow]]
            hosts = ["srv*.contoso.com"]
            ports = [22]
            transports = ["ssh"]
            "#,
        )
        .expect("valid");
        assert!(c.allows("srv7.contoso.com", 22, Transport::Ssh));
        assert!(!c.allows("srv7.contoso.com", 2222, Transport::Ssh));
        assert!(!c.allows("srv7.contoso.com", 22, Transport::Local));
        let env = |name: &str| (name == "PSGATE_LISTEN").then(|| "127.0.0.1:7000".to_owned());
        assert_eq!(c.with_env(env).expect("valid").listen.port(), 7000);
    }

    #[test]
    fn the_database_is_an_sqlite_file_or_a_postgres_url_and_the_environment_wins() {
        use crate::store::Database;
        assert_eq!(Config::default().database, Database::Sqlite("psgate.db".into()));
        assert_eq!(Config::parse("database = \"/var/lib/psgate/psgate.db\"").expect("valid").database, Database::Sqlite("/var/lib/psgate/psgate.db".into()));
        let c = Config::parse("database = \"postgres://psgate:pw@db/psgate\"\nseal_key_file = \"/etc/psgate/seal.key\"").expect("valid");
        assert!(c.database.is_postgres() && !format!("{c:?}").contains(":pw@"), "{c:?}");
        assert_eq!(c.seal_key_file.as_deref(), Some(Path::new("/etc/psgate/seal.key")));
        let env = |name: &str| (name == "PSGATE_DATABASE").then(|| "postgresql://db2/psgate".to_owned());
        assert_eq!(Config::default().with_env(env).expect("valid").database, Database::Postgres("postgresql://db2/psgate".into()));
    }

    #[test]
    fn bad_configs_are_clear_errors() {
        for (text, needle) in [
            ("listen = \"nowhere\"", "listen"),
            ("lisen = \"127.0.0.1:1\"", "lisen"),
            ("[[allow]]\nhosts = []", "needs hosts"),
            ("[[allow]]\nhosts = [\"a\"]\ntransports = [\"telnet\"]", "telnet"),
            ("allowed_origins = [\"intranet\"]", "intranet"),
            ("login_minutes = 0", "login_minutes"),
            ("local_command = []", "local_command"),
            ("listen = ", "listen"),
        ] {
            let e = Config::parse(text).expect_err(text);
            assert!(e.contains(needle), "{text}: {e}");
        }
        let env = |name: &str| (name == "PSGATE_LISTEN").then(|| "x".to_owned());
        assert!(Config::default().with_env(env).expect_err("bad").to_string().contains("PSGATE_LISTEN"));
    }

    const LOCAL: &str = "local_command = [\"pwsh\"]\n[[allow]]\nhosts = [\"localhost\", \"srv*\"]\n";

    #[test]
    fn embed_kiosk_and_idle() {
        let c = Config::parse("").expect("empty");
        assert_eq!(c.idle_timeout().as_secs(), DEFAULT_IDLE_TIMEOUT_SECS);
        assert_eq!(c.embed.frame_ancestors_directive(), "'none'");
        assert_eq!(c.embed.cookie_same_site, SameSite::Strict);
        let c = Config::parse(&format!(
            "{LOCAL}[embed]\nframe_ancestors = [\"https://portal.example\", \"https://*.contoso.com:8443\", \"'self'\"]\n\
             target = {{ computer = \"srv01\", transport = \"ssh\", user = \"ops\" }}\n\
             [kiosk]\nenabled = true\ntargets = [{{ computer = \"localhost\", transport = \"local\", name = \"Shell\" }}, {{ computer = \"srv02\", transport = \"ssh\", port = 2222 }}]\n"
        ))
        .expect("valid");
        assert_eq!(c.embed.frame_ancestors_directive(), "https://portal.example https://*.contoso.com:8443 'self'");
        assert_eq!(c.idle_timeout().as_secs(), KIOSK_IDLE_TIMEOUT_SECS, "kiosk mode logs out sooner");
        let target = |computer: &str, transport, port, user: Option<&str>| Target { port, user: user.map(Into::into), ..Target::new(computer, transport) };
        assert!(c.kiosk_allows(&target("LOCALHOST", Transport::Local, None, None)).is_ok());
        assert!(c.kiosk_allows(&target("srv02", Transport::Ssh, Some(2222), Some("anyone"))).is_ok());
        assert!(c.kiosk_allows(&target("srv02", Transport::Ssh, None, Some("anyone"))).is_err(), "another port");
        assert!(c.kiosk_allows(&target("srv03", Transport::Ssh, Some(2222), Some("x"))).is_err(), "allowed, but not a kiosk target");
        let preset = c.embed.target.as_ref().expect("target");
        assert!(preset.matches(&target("srv01", Transport::Ssh, Some(22), Some("ops"))));
        assert!(!preset.matches(&target("srv01", Transport::Ssh, Some(22), Some("root"))), "the preset's user");
        let c = Config::parse(&format!("{LOCAL}[auth]\nidle_timeout_secs = 60\n[kiosk]\nenabled = true\ntargets = [{{ computer = \"localhost\", transport = \"local\" }}]")).expect("valid");
        assert_eq!(c.idle_timeout().as_secs(), 60, "the configured one wins");
        let c = Config::parse("secure_cookies = true\n[embed]\ncookie_same_site = \"none\"\nframe_ancestors = [\"*\"]").expect("valid");
        assert_eq!(c.embed.cookie_same_site, SameSite::None);
        // A WinRM kiosk target: HTTPS (5986 by default) and a JEA configuration are part of what it allows.
        let c = Config::parse(
            "[[allow]]\nhosts = [\"srv02\"]\nports = [5986]\ntransports = [\"winrm\"]\n[kiosk]\nenabled = true\n\
             targets = [{ computer = \"srv02\", transport = \"winrm\", use_ssl = true, configuration_name = \"JEA.Helpdesk\" }]",
        )
        .expect("valid");
        let winrm = |ssl: bool, configuration: Option<&str>| Target { use_ssl: ssl, configuration_name: configuration.map(Into::into), ..Target::new("srv02", Transport::Winrm) };
        assert!(c.kiosk_allows(&winrm(true, Some("jea.helpdesk"))).is_ok());
        assert!(c.kiosk_allows(&winrm(false, Some("JEA.Helpdesk"))).is_err(), "not over plain HTTP");
        assert!(c.kiosk_allows(&winrm(true, None)).is_err(), "not the full Microsoft.PowerShell endpoint");
        assert_eq!(c.kiosk.targets[0].to_target().configuration_name.as_deref(), Some("JEA.Helpdesk"));
        let err = Config::parse("[kiosk]\nenabled = true\ntargets = [{ computer = \"srv02\", transport = \"winrm\", use_ssl = true }]").expect_err("not allowed");
        assert!(err.contains("allow-list"), "{err}");
    }

    #[test]
    fn bad_embed_and_kiosk_configs_are_clear_errors() {
        for (text, needle) in [
            ("[auth]\nidle_timeout_secs = 0", "idle_timeout_secs"),
            ("[auth]\nidle_secs = 5", "idle_secs"),
            ("[embed]\nframe_ancestors = [\"portal.example\"]", "portal.example"),
            ("[embed]\nframe_ancestors = [\"https://portal.example/\"]", "no path"),
            ("[embed]\nframe_ancestors = [\"https://a.example; script-src *\"]", "script-src"),
            ("[embed]\nframe_ancestors = [\"https://a.example:99999\"]", "port"),
            ("[embed]\nframe_ancestors = [\"'none'\", \"https://a.example\"]", "combined"),
            ("[embed]\ncookie_same_site = \"none\"", "secure_cookies"),
            ("[embed]\ncookie_same_site = \"loose\"", "loose"),
            ("[embed]\ntarget = { computer = \"srv01\", transport = \"ssh\" }", "allow-list"),
            ("[embed]\ntarget = { computer = \"\", transport = \"ssh\" }", "empty"),
            ("[kiosk]\nenabled = true", "without targets"),
            ("[kiosk]\nenabled = true\ntargets = [{ computer = \"elsewhere\", transport = \"ssh\" }]", "allow-list"),
            ("[[allow]]\nhosts = [\"localhost\"]\n[kiosk]\nenabled = true\ntargets = [{ computer = \"localhost\", transport = \"local\" }]", "local_command"),
            ("[kiosk]\nenabled = true\ntargets = [{ computer = \"a\", transport = \"ssh\", password = \"x\" }]", "password"),
        ] {
            let e = Config::parse(text).expect_err(text);
            assert!(e.contains(needle), "{text}: {e}");
        }
    }
}
