//! `psgate serve`, `psgate demo` and `psgate user add`: the relay service.

use std::io::{BufRead as _, IsTerminal as _, Write as _};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context as _;
use rand::Rng as _;

use crate::config::{AllowRule, AuthConfig, Config, EmbedConfig, KioskConfig, TargetPreset};
use crate::http::{Api, AppConfig, auth::Auth};
use crate::seal::Sealer;
use crate::session::manager::Manager;
use crate::store::Store;

const NO_SEAL_KEY: &str = "a PostgreSQL database needs seal_key_file in the configuration: the file of the key that seals kept WinRM passwords, the same for every relay on the database (made if missing)";

/// Refuses a configuration whose store is PostgreSQL without `seal_key_file` (before connecting to it).
pub fn check_seal_key(config: &Config) -> anyhow::Result<()> {
    if config.database.is_postgres() && config.seal_key_file.is_none() {
        anyhow::bail!(NO_SEAL_KEY);
    }
    Ok(())
}

/// The key that seals kept WinRM passwords: `seal_key_file`; else `<database>.key` beside an SQLite file, or one
/// that dies with the process for an SQLite database in memory. A PostgreSQL store needs `seal_key_file` (relays
/// that share a store must share its key): without it, an error.
pub fn sealer(config: &Config, store: &Store) -> anyhow::Result<Sealer> {
    if let Some(file) = &config.seal_key_file {
        return Sealer::load_or_create(file).context("seal_key_file");
    }
    if store.is_postgres() {
        anyhow::bail!(NO_SEAL_KEY);
    }
    Ok(match store.path() {
        Some(db) => {
            let mut key = db.as_os_str().to_owned();
            key.push(".key");
            Sealer::load_or_create(Path::new(&key))?
        }
        None => Sealer::ephemeral()?,
    })
}

/// The API's state for `config` and `store` (which it reads the kept WinRM sessions from: call inside the runtime).
pub async fn api(config: Arc<Config>, store: Arc<Store>) -> Api {
    let manager = match sealer(&config, &store) {
        Ok(sealer) => Manager::with_store(config.clone(), store.clone(), sealer).await,
        Err(e) => {
            tracing::error!(error = %e, "no key to seal passwords: WinRM sessions are not kept over a restart");
            Manager::new(config.clone())
        }
    };
    let connections = manager.connections().clone();
    Api {
        auth: Arc::new(Auth::new(store, &config, manager.metrics().clone())),
        manager,
        allowed_origins: Arc::new(config.allowed_origins.clone()),
        connections,
        config,
    }
}

/// How long a stopping relay waits for its WinRM sessions to disconnect.
const SHUTDOWN_LIMIT: std::time::Duration = std::time::Duration::from_secs(15);

/// `psgate serve --config FILE`.
pub fn serve(config_file: Option<&Path>) -> anyhow::Result<()> {
    let mut config = Config::load(config_file)?;
    check_seal_key(&config)?;
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async move {
        let store = Arc::new(Store::connect(&config.database).await.with_context(|| format!("opening {}", config.database))?);
        // Refused before listening: without its key, a relay could neither keep nor take back WinRM sessions.
        sealer(&config, &store)?;
        let listener = tokio::net::TcpListener::bind(config.listen).await.with_context(|| format!("listening on {}", config.listen))?;
        // The port bound, when it was 0 (the address other relays reach this one at, by default).
        config.listen = listener.local_addr()?;
        println!("psgate listening on http://{}/", config.listen);
        let config = Arc::new(config);
        let api = api(config.clone(), store).await;
        let manager = api.manager.clone();
        // In the store's list of relays, heartbeating; taking over the WinRM sessions of relays gone.
        manager.join_cluster().await;
        tracing::info!(relay = %manager.relay_id(), "relay started");
        let app = AppConfig { assets: config.assets.clone(), api: Some(api) };
        let draining = manager.clone();
        crate::http::serve(listener, app, async move {
            tokio::select! {
                () = super::shutdown_signal() => {}
                () = draining.drain_asked() => {}
            }
            // /readyz says so at once: the balancer sends new users elsewhere while the sessions are handed over.
            draining.set_draining(true);
        })
        .await?;
        // WinRM sessions outlive the relay: disconnected now, connected again by the next process with this relay's
        // id, or by another relay on the same store, which takes them over.
        manager.shutdown(SHUTDOWN_LIMIT).await;
        manager.leave_cluster().await;
        Ok(())
    })
}

/// The built-in demo target's command line: `pwsh -s` where PowerShell is installed, else the repository's test
/// host (`tests/peers/psrp_host.py` with `$PSGATE_PYTHON`).
pub fn demo_command() -> Vec<String> {
    let on_path = |name: &str| std::env::var_os("PATH").is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(name).is_file()));
    if on_path("pwsh") {
        return crate::transport::local::DEFAULT_COMMAND.iter().map(|s| (*s).to_owned()).collect();
    }
    let python = std::env::var("PSGATE_PYTHON").unwrap_or_else(|_| {
        let tools = std::env::var("PSGATE_TOOLS").unwrap_or_else(|_| "/opt/psgate-tools".into());
        format!("{tools}/venv/bin/python")
    });
    let host = [PathBuf::from("tests/peers/psrp_host.py"), Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/peers/psrp_host.py")]
        .into_iter()
        .find(|p| p.is_file())
        .unwrap_or_else(|| PathBuf::from("tests/peers/psrp_host.py"));
    vec![python, host.to_string_lossy().into_owned()]
}

/// `psgate demo`'s modes (for trying and testing kiosk mode and the embed page).
#[derive(Clone, Debug, Default)]
pub struct DemoOptions {
    /// Kiosk mode with two picks of the demo target.
    pub kiosk: bool,
    /// `[embed] frame_ancestors`.
    pub frame_ancestors: Vec<String>,
    /// `[auth] idle_timeout_secs`.
    pub idle_timeout_secs: Option<u64>,
}

/// `psgate demo`: loopback only, an in-memory user database with one demo user, one allowed target (`localhost`
/// over the local transport, [`demo_command`]).
pub fn demo(port: u16, assets: PathBuf, options: DemoOptions) -> anyhow::Result<()> {
    let local = psgate_shared::api::Transport::Local;
    let pick = |name: &str| TargetPreset { name: Some(name.into()), ..TargetPreset::new("localhost", local) };
    let config = Config {
        listen: SocketAddr::from(([127, 0, 0, 1], port)),
        assets: assets.clone(),
        local_command: Some(demo_command()),
        allow: vec![AllowRule { hosts: vec!["localhost".into()], ports: vec![], transports: vec![local], ..AllowRule::default() }],
        auth: AuthConfig { idle_timeout_secs: options.idle_timeout_secs },
        embed: EmbedConfig { frame_ancestors: options.frame_ancestors, ..EmbedConfig::default() },
        kiosk: KioskConfig { enabled: options.kiosk, targets: if options.kiosk { vec![pick("Demo shell"), pick("Scratch shell")] } else { Vec::new() } },
        ..Config::default()
    };
    config.validate()?;
    let config = Arc::new(config);
    let store = Arc::new(Store::in_memory()?);
    let password: String = rand::rngs::OsRng.sample_iter(rand::distributions::Alphanumeric).take(16).map(char::from).collect();
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async move {
        store.set_user("demo", &password).await?;
        let listener = tokio::net::TcpListener::bind(config.listen).await?;
        let local = listener.local_addr()?;
        // tests/e2e reads this first line.
        println!("psgate demo listening on http://{local}/");
        println!("log in as: demo / {password}");
        println!("demo target: localhost (transport local: {})", config.local_command.as_deref().unwrap_or_default().join(" "));
        if config.kiosk.enabled {
            println!("kiosk mode: {} targets, idle logout after {} s", config.kiosk.targets.len(), config.idle_timeout().as_secs());
        }
        if !config.embed.frame_ancestors.is_empty() {
            println!("embed page: http://{local}/embed, may be framed by {}", config.embed.frame_ancestors.join(" "));
        }
        let _ = std::io::stdout().flush();
        let app = AppConfig { assets, api: Some(api(config.clone(), store).await) };
        crate::http::serve(listener, app, super::shutdown_signal()).await
    })
}

/// `psgate user add NAME`: the password from standard input's first line, or a prompt (not echoed) on a terminal.
/// `admin`: make the user a relay admin (`Some(true)`), or not (`Some(false)`); `None`: as before (a new user is not).
pub fn add_user(config_file: Option<&Path>, name: &str, admin: Option<bool>) -> anyhow::Result<()> {
    // `group:ops` names a group of [groups] where a session is shared.
    anyhow::ensure!(!name.starts_with("group:"), "a user name may not start with group: (a session shared with group:NAME is shared with the group NAME of [groups])");
    anyhow::ensure!(!name.is_empty(), "a user name may not be empty");
    let config = Config::load(config_file)?;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let store = rt.block_on(Store::connect(&config.database)).with_context(|| format!("opening {}", config.database))?;
    let password = if std::io::stdin().is_terminal() {
        eprint!("Password for {name}: ");
        let _ = std::io::stderr().flush();
        let echo_off = std::process::Command::new("stty").arg("-echo").status().is_ok_and(|s| s.success());
        let mut line = String::new();
        let read = std::io::stdin().lock().read_line(&mut line);
        if echo_off {
            let _ = std::process::Command::new("stty").arg("echo").status();
            eprintln!();
        }
        read?;
        line
    } else {
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line)?;
        line
    };
    let admin = rt.block_on(async {
        store.set_user(name, password.trim_end_matches(['\r', '\n'])).await?;
        if let Some(admin) = admin {
            store.set_admin(name, admin).await?;
        }
        store.is_admin(name).await
    })?;
    let role = if admin { " (relay admin)" } else { "" };
    eprintln!("user {name}{role} saved in {}", config.database);
    Ok(())
}

/// `psgate drain [--relay ID]`: asks relay `ID` (default: this configuration's `[cluster] relay_id`), through the
/// store, to hand its sessions over and stop, as SIGTERM would; waits until it has (or `wait` has passed).
pub fn drain(config_file: Option<&Path>, relay: Option<&str>, wait: std::time::Duration) -> anyhow::Result<()> {
    let config = Config::load(config_file)?;
    let id = relay.map_or_else(|| config.relay_id(), str::to_owned);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(async {
        let store = Store::connect(&config.database).await.with_context(|| format!("opening {}", config.database))?;
        if !store.request_drain(&id).await? {
            anyhow::bail!("no relay {id} is running on {}", config.database);
        }
        println!("asked relay {id} to hand its sessions over and stop");
        let deadline = std::time::Instant::now() + wait;
        loop {
            if store.relays().await?.iter().any(|r| r.id == id && r.stopped.is_some()) {
                println!("relay {id} stopped; the other relays take its WinRM sessions over");
                return Ok(());
            }
            if std::time::Instant::now() >= deadline {
                anyhow::bail!("relay {id} has not stopped within {} s (it drains at its next heartbeat)", wait.as_secs());
            }
            tokio::time::sleep(std::time::Duration::from_millis(250)).await;
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn postgres_needs_seal_key_file_and_the_key_file_wins_over_the_one_beside_the_database() {
        let mut config = Config { database: crate::store::Database::from_url("postgres://psgate:pw@db/psgate"), ..Config::default() };
        let refused = check_seal_key(&config).expect_err("refused").to_string();
        assert!(refused.contains("seal_key_file") && !refused.contains("pw"), "{refused}");
        let dir = tempfile::tempdir().expect("temp dir");
        config.seal_key_file = Some(dir.path().join("seal.key"));
        check_seal_key(&config).expect("with the key file");
        // On SQLite the key file, when set, is the key (not <database>.key).
        let db = dir.path().join("psgate.db");
        let store = Store::open(&db).expect("db");
        let sealed = sealer(&config, &store).expect("sealer").seal("pw", "row").expect("sealed");
        assert_eq!(Sealer::load_or_create(&dir.path().join("seal.key")).expect("key").open(&sealed, "row").expect("opens"), "pw");
        assert!(!dir.path().join("psgate.db.key").exists());
        config.seal_key_file = None;
        sealer(&config, &store).expect("sealer");
        assert!(dir.path().join("psgate.db.key").exists(), "without it, beside the database");
    }
}

