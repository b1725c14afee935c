//! The relay's configuration: a TOML file, then environment variables over it.
//!
//! Every field has a safe default: loopback only, no allowed targets, no local PowerShell. An unknown key, a bad
//! value or an unreadable file is a [`ConfigError`] naming the problem, never a panic.
//!
//! ```toml
//! listen = "127.0.0.1:8080"          # PSGATE_LISTEN
//! database = "psgate.db"             # PSGATE_DATABASE
//! assets = "dist"                    # PSGATE_ASSETS
//! allowed_origins = ["https://intranet.contoso.com"]   # PSGATE_ALLOWED_ORIGINS (comma-separated)
//! secure_cookies = false             # true behind a TLS proxy (the cookie gets `Secure`)
//! login_minutes = 480                # how long a login lasts
//! local_command = ["pwsh", "-s", "-NoLogo", "-NoProfile"]   # the local transport's command line
//! known_hosts = "/etc/psgate/known_hosts"                   # SSH host keys (default ~/.ssh/known_hosts)
//!
//! [[allow]]                          # the target allow-list: a target must match one rule
//! hosts = ["srv*.contoso.com", "10.0.0.5"]
//! ports = [22]                       # empty or absent: any port
//! transports = ["ssh"]               # empty or absent: any transport
//! ```

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use psgate_shared::api::Transport;
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
}

impl AllowRule {
    /// Whether the rule lets `host:port` over `transport` through.
    pub fn allows(&self, host: &str, port: u16, transport: Transport) -> bool {
        self.hosts.iter().any(|p| glob_match(p, host))
            && (self.ports.is_empty() || self.ports.contains(&port))
            && (self.transports.is_empty() || self.transports.contains(&transport))
    }
}

/// The relay's configuration.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Where to listen.
    pub listen: SocketAddr,
    /// The SQLite database of users.
    pub database: PathBuf,
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
    /// The target allow-list; empty: no target is allowed.
    pub allow: Vec<AllowRule>,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            database: PathBuf::from("psgate.db"),
            assets: PathBuf::from("dist"),
            allowed_origins: Vec::new(),
            secure_cookies: false,
            login_minutes: 8 * 60,
            local_command: None,
            known_hosts: None,
            allow: Vec::new(),
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
            self.database = v.into();
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

    fn validate(&self) -> Result<(), ConfigError> {
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
        for rule in &self.allow {
            if rule.hosts.is_empty() || rule.hosts.iter().any(|h| h.trim().is_empty()) {
                return Err(ConfigError::Invalid("an [[allow]] rule needs hosts, none empty".into()));
            }
        }
        Ok(())
    }

    /// Whether the allow-list lets the target through.
    pub fn allows(&self, host: &str, port: u16, transport: Transport) -> bool {
        self.allow.iter().any(|r| r.allows(host, port, transport))
    }
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
}
