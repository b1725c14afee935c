//! The relay's store: its users, browser logins, the WinRM sessions kept for a later Connect and the audit, in one of
//! two engines: an embedded SQLite file (the default), or a PostgreSQL database that several relays can share.
//! Passwords are argon2id hashes (PHC strings); a login is kept as the SHA-256 of its cookie's token (never the
//! token), with its last activity and its expiry, so logins survive a restart of the relay and a stolen database
//! holds no usable cookie.
//!
//! The schema is made and moved on by versioned migrations (refinery; `relay/migrations/sqlite` and
//! `relay/migrations/postgres`, the same versions on both) when the store opens. The methods are `async`: PostgreSQL
//! is reached through a pool without blocking the runtime's threads; SQLite's statements are short and run inline
//! (a busy database waits up to 5 s); argon2 hashing always runs on the blocking pool.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use argon2::password_hash::{PasswordHash, PasswordHasher as _, PasswordVerifier as _, SaltString};
use argon2::Argon2;
use rusqlite::{Connection, OptionalExtension as _};

mod sqlite_migrations {
    refinery::embed_migrations!("migrations/sqlite");
}

mod postgres_migrations {
    refinery::embed_migrations!("migrations/postgres");
}

/// The PostgreSQL advisory lock that relays starting together on one database take while they migrate it.
const MIGRATION_LOCK: i64 = 0x7073_6761_7465; // "psgate"

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// SQLite failed.
    #[error("user database: {0}")]
    Sql(#[from] rusqlite::Error),
    /// PostgreSQL failed.
    #[error("user database: {0}")]
    Postgres(#[from] tokio_postgres::Error),
    /// No PostgreSQL connection could be had (or the URL is not one).
    #[error("user database: {0}")]
    Pool(String),
    /// A migration of the schema failed.
    #[error("user database migration: {0}")]
    Migration(#[from] refinery::Error),
    /// Hashing failed.
    #[error("password hashing: {0}")]
    Hash(String),
    /// A bad user name or password.
    #[error("{0}")]
    Invalid(&'static str),
}

impl From<deadpool_postgres::PoolError> for StoreError {
    fn from(e: deadpool_postgres::PoolError) -> StoreError {
        StoreError::Pool(e.to_string())
    }
}

/// Which database a store is: `postgres://…` or `postgresql://…` (a URL), else an SQLite file's path. Shown (Debug,
/// Display) without any password.
#[derive(Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(from = "String")]
pub enum Database {
    /// An SQLite file (made if missing).
    Sqlite(PathBuf),
    /// A PostgreSQL connection URL.
    Postgres(String),
}

impl Database {
    /// `url` read as [`Database`] says.
    pub fn from_url(url: &str) -> Database {
        let lower = url.get(..13).unwrap_or(url).to_ascii_lowercase();
        if lower.starts_with("postgres://") || lower.starts_with("postgresql://") { Database::Postgres(url.to_owned()) } else { Database::Sqlite(PathBuf::from(url)) }
    }

    /// Whether it is PostgreSQL.
    pub fn is_postgres(&self) -> bool {
        matches!(self, Database::Postgres(_))
    }
}

impl From<String> for Database {
    fn from(url: String) -> Database {
        Database::from_url(&url)
    }
}

impl From<&Path> for Database {
    fn from(path: &Path) -> Database {
        Database::Sqlite(path.to_owned())
    }
}

/// `url` with its password (in the user information or a `password=` parameter) replaced by `***`.
fn redacted(url: &str) -> String {
    let (main, query) = url.split_once('?').map_or((url, None), |(m, q)| (m, Some(q)));
    let mut out = match main.split_once("://") {
        Some((scheme, rest)) => {
            let (authority, path) = rest.find('/').map_or((rest, ""), |i| rest.split_at(i));
            match authority.rsplit_once('@') {
                Some((userinfo, host)) if userinfo.contains(':') => {
                    let user = userinfo.split_once(':').map_or(userinfo, |(u, _)| u);
                    format!("{scheme}://{user}:***@{host}{path}")
                }
                _ => main.to_owned(),
            }
        }
        None => main.to_owned(),
    };
    if let Some(query) = query {
        let params: Vec<String> = query
            .split('&')
            .map(|p| match p.split_once('=') {
                Some((k, _)) if k.eq_ignore_ascii_case("password") => format!("{k}=***"),
                _ => p.to_owned(),
            })
            .collect();
        out.push('?');
        out.push_str(&params.join("&"));
    }
    out
}

impl std::fmt::Display for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Database::Sqlite(path) => write!(f, "{}", path.display()),
            Database::Postgres(url) => f.write_str(&redacted(url)),
        }
    }
}

impl std::fmt::Debug for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Database::Sqlite(path) => f.debug_tuple("Sqlite").field(path).finish(),
            Database::Postgres(url) => f.debug_tuple("Postgres").field(&redacted(url)).finish(),
        }
    }
}

/// A WinRM session kept for a later Connect.
#[derive(Clone, PartialEq, Eq)]
pub struct WinrmSessionRow {
    /// The ShellId, upper case.
    pub key: String,
    /// The relay user.
    pub owner: String,
    /// The target (JSON of `api::Target`, its password removed).
    pub target: String,
    /// The shell (JSON of `session::winrm::ShellRecord`).
    pub shell: String,
    /// The target password, sealed.
    pub sealed_password: Option<Vec<u8>>,
    /// Since when the session is idle (ms since the Unix epoch; none: it is not).
    pub idle_since: Option<i64>,
    /// The relay holding it (`[cluster] relay_id`; none: kept by a relay from before relays had ids).
    pub relay: Option<String>,
    /// It was open (not disconnected by its user) when kept: a relay that takes it over connects it again.
    pub resume: bool,
    /// Its id (the user's numbering; none: kept before ids were).
    pub session_id: Option<i64>,
}

impl std::fmt::Debug for WinrmSessionRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WinrmSessionRow").field("key", &self.key).field("owner", &self.owner).field("target", &self.target).field("idle_since", &self.idle_since).finish_non_exhaustive()
    }
}

/// A stored login (times in milliseconds since the Unix epoch).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoginRow {
    /// Whose.
    pub user: String,
    /// The last activity.
    pub last_seen: i64,
    /// When it ends whatever the activity.
    pub expires: i64,
}

/// The store, on one of its engines.
pub struct Store {
    engine: Engine,
}

enum Engine {
    Sqlite { db: Mutex<Connection>, path: Option<PathBuf> },
    Postgres(deadpool_postgres::Pool),
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.engine {
            Engine::Sqlite { path, .. } => f.debug_struct("Store").field("sqlite", path).finish(),
            Engine::Postgres(pool) => f.debug_struct("Store").field("postgres", &pool.status()).finish(),
        }
    }
}

/// Runs `f` on the blocking pool (argon2).
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T, StoreError> + Send + 'static) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(f).await.map_err(|e| StoreError::Hash(e.to_string()))?
}

fn hash_password(password: &str) -> Result<String, StoreError> {
    let salt = SaltString::generate(&mut argon2::password_hash::rand_core::OsRng);
    Ok(Argon2::default().hash_password(password.as_bytes(), &salt).map_err(|e| StoreError::Hash(e.to_string()))?.to_string())
}

impl Store {
    /// Opens (creating if needed) the SQLite database at `path`, and migrates it.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        Store::init_sqlite(Connection::open(path)?, Some(path.to_owned()))
    }

    /// An SQLite database in memory (tests, demo).
    pub fn in_memory() -> Result<Store, StoreError> {
        Store::init_sqlite(Connection::open_in_memory()?, None)
    }

    /// Opens `database` (see [`Database`]), and migrates it.
    pub async fn connect(database: &Database) -> Result<Store, StoreError> {
        match database {
            Database::Sqlite(path) => Store::open(path),
            Database::Postgres(url) => Store::open_postgres(url).await,
        }
    }

    /// Opens the database `url` names: `postgres://…` or `postgresql://…` (PostgreSQL), else an SQLite file's path.
    pub async fn open_url(url: &str) -> Result<Store, StoreError> {
        Store::connect(&Database::from_url(url)).await
    }

    /// The SQLite database file (none: in memory, or PostgreSQL).
    pub fn path(&self) -> Option<&Path> {
        match &self.engine {
            Engine::Sqlite { path, .. } => path.as_deref(),
            Engine::Postgres(_) => None,
        }
    }

    /// Whether the store is PostgreSQL.
    pub fn is_postgres(&self) -> bool {
        matches!(self.engine, Engine::Postgres(_))
    }

    fn init_sqlite(mut db: Connection, path: Option<PathBuf>) -> Result<Store, StoreError> {
        // Another process (`psgate user add`, a second relay on the same file) may hold the lock for a moment.
        db.busy_timeout(std::time::Duration::from_secs(5))?;
        // A database made before versioned migrations by a psgate from before relay admins: its users table (which
        // V1 then leaves as it is) gets the admin flag that V1 has.
        let has_users = db.prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'users'")?.exists([])?;
        if has_users && !db.prepare("SELECT 1 FROM pragma_table_info('users') WHERE name = 'admin'")?.exists([])? {
            db.execute_batch("ALTER TABLE users ADD COLUMN admin INTEGER NOT NULL DEFAULT 0")?;
        }
        sqlite_migrations::migrations::runner().run(&mut db)?;
        Ok(Store { engine: Engine::Sqlite { db: Mutex::new(db), path } })
    }

    async fn open_postgres(url: &str) -> Result<Store, StoreError> {
        let mut config: tokio_postgres::Config = url.parse()?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(std::time::Duration::from_secs(10));
        }
        config.application_name("psgate");
        let manager = deadpool_postgres::Manager::from_config(config, tokio_postgres::NoTls, deadpool_postgres::ManagerConfig { recycling_method: deadpool_postgres::RecyclingMethod::Fast });
        let pool = deadpool_postgres::Pool::builder(manager)
            .max_size(16)
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .wait_timeout(Some(std::time::Duration::from_secs(15)))
            .create_timeout(Some(std::time::Duration::from_secs(15)))
            .build()
            .map_err(|e| StoreError::Pool(e.to_string()))?;
        let mut client = pool.get().await?;
        // Relays starting together on a new database: one migrates it, the others wait and find it done.
        client.execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK]).await?;
        let migrated = postgres_migrations::migrations::runner().run_async(&mut **client).await;
        let unlocked = client.execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK]).await;
        if migrated.is_err() || unlocked.is_err() {
            // The connection may still hold the lock or be in a failed transaction: not back to the pool.
            drop(deadpool_postgres::Object::take(client));
        }
        migrated?;
        unlocked?;
        Ok(Store { engine: Engine::Postgres(pool) })
    }

    /// Whether the database answers (`SELECT 1`): on PostgreSQL, a connection from the pool (made anew if the pooled
    /// ones have closed) and a round trip; on SQLite, a statement on the connection (waiting out another writer's
    /// lock, up to its busy timeout). For `/readyz`, which bounds the wait.
    pub async fn ping(&self) -> Result<(), StoreError> {
        match &self.engine {
            Engine::Sqlite { db, .. } => Store::sqlite(db, |db| db.query_row("SELECT 1", [], |r| r.get::<_, i64>(0))).map(drop),
            Engine::Postgres(pool) => {
                pool.get().await?.simple_query("SELECT 1").await?;
                Ok(())
            }
        }
    }

    /// Runs `f` on the SQLite connection.
    fn sqlite<T>(db: &Mutex<Connection>, f: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> Result<T, StoreError> {
        // A panic while holding the lock leaves SQLite consistent (each statement is atomic).
        let db = db.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        Ok(f(&db)?)
    }

    /// Keeps (or updates) what a later Connect to a WinRM session needs: `target` and `shell` are JSON without any
    /// secret; the password only sealed (see `crate::seal`). A session another relay has claimed is not changed: a
    /// relay that lost touch with the store cannot take it back by writing.
    pub async fn put_winrm_session(&self, row: &WinrmSessionRow) -> Result<(), StoreError> {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64);
        match &self.engine {
            Engine::Sqlite { db, .. } => Store::sqlite(db, |db| {
                db.execute(
                    "INSERT INTO winrm_sessions (key, owner, target, shell, sealed_password, updated, idle_since, relay, resume, session_id) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
                     ON CONFLICT(key) DO UPDATE SET owner = ?2, target = ?3, shell = ?4, sealed_password = ?5, updated = ?6, idle_since = ?7, relay = ?8, resume = ?9, session_id = ?10
                     WHERE winrm_sessions.relay IS NULL OR winrm_sessions.relay = ?8 OR ?8 IS NULL",
                    rusqlite::params![row.key, row.owner, row.target, row.shell, row.sealed_password, now, row.idle_since, row.relay, row.resume, row.session_id],
                )
            })
            .map(drop),
            Engine::Postgres(pool) => {
                let client = pool.get().await?;
                let stmt = client
                    .prepare_cached(
                        "INSERT INTO winrm_sessions (key, owner, target, shell, sealed_password, updated, idle_since, relay, resume, session_id) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
                         ON CONFLICT (key) DO UPDATE SET owner = $2, target = $3, shell = $4, sealed_password = $5, updated = $6, idle_since = $7, relay = $8, resume = $9, session_id = $10
                         WHERE winrm_sessions.relay IS NULL OR winrm_sessions.relay = $8 OR $8 IS NULL",
                    )
                    .await?;
                client.execute(&stmt, &[&row.key, &row.owner, &row.target, &row.shell, &row.sealed_password, &now, &row.idle_since, &row.relay, &row.resume, &row.session_id]).await?;
                Ok(())
            }
        }
    }

    /// Forgets a WinRM session.
    pub async fn remove_winrm_session(&self, key: &str) -> Result<(), StoreError> {
        match &self.engine {
            Engine::Sqlite { db, .. } => Store::sqlite(db, |db| db.execute("DELETE FROM winrm_sessions WHERE key = ?1", [key])).map(drop),
            Engine::Postgres(pool) => {
                let client = pool.get().await?;
                let stmt = client.prepare_cached("DELETE FROM winrm_sessions WHERE key = $1").await?;
                client.execute(&stmt, &[&key]).await?;
                Ok(())
            }
        }
    }

    /// Every kept WinRM session, oldest first.
    pub async fn winrm_sessions(&self) -> Result<Vec<WinrmSessionRow>, StoreError> {
        self.winrm_rows(&format!("SELECT {WINRM_COLUMNS} FROM winrm_sessions ORDER BY updated, key"), &[]).await
    }

    /// Runs `sql` (its text parameters `$1`, `$2`… are `params`) and reads [`WINRM_COLUMNS`] rows.
    pub(super) async fn winrm_rows(&self, sql: &str, params: &[&str]) -> Result<Vec<WinrmSessionRow>, StoreError> {
        match &self.engine {
            Engine::Sqlite { db, .. } => Store::sqlite(db, |db| db.prepare(&sql.replace('$', "?"))?.query_map(rusqlite::params_from_iter(params), winrm_row_sqlite)?.collect()),
            Engine::Postgres(pool) => {
                let params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = params.iter().map(|p| p as &(dyn tokio_postgres::types::ToSql + Sync)).collect();
                pool.get().await?.query(sql, &params).await?.iter().map(winrm_row_pg).collect()
            }
        }
    }

    /// Adds `name` or sets its password (the hash made on the blocking pool); a new password ends the user's logins.
    pub async fn set_user(&self, name: &str, password: &str) -> Result<(), StoreError> {
        if name.is_empty() || name.len() > 64 || !name.chars().all(|c| c.is_ascii_alphanumeric() || "._-@".contains(c)) {
            return Err(StoreError::Invalid("a user name is 1-64 letters, digits or ._-@"));
        }
        if password.is_empty() {
            return Err(StoreError::Invalid("the password is empty"));
        }
        let password = password.to_owned();
        let hash = blocking(move || hash_password(&password)).await?;
        match &self.engine {
            Engine::Sqlite { db, .. } => Store::sqlite(db, |db| {
                let tx = db.unchecked_transaction()?;
                tx.execute("INSERT INTO users (name, password_hash) VALUES (?1, ?2) ON CONFLICT(name) DO UPDATE SET password_hash = excluded.password_hash", (name, &hash))?;
                tx.execute("DELETE FROM logins WHERE user = ?1", [name])?;
                tx.commit()
            }),
            Engine::Postgres(pool) => {
                let mut client = pool.get().await?;
                let tx = client.transaction().await?;
                tx.execute("INSERT INTO users (name, password_hash) VALUES ($1, $2) ON CONFLICT (name) DO UPDATE SET password_hash = excluded.password_hash", &[&name, &hash]).await?;
                tx.execute("DELETE FROM logins WHERE \"user\" = $1", &[&name]).await?;
                tx.commit().await?;
                Ok(())
            }
        }
    }

    /// Makes `name` a relay admin or not (`false` for an unknown user).
    pub async fn set_admin(&self, name: &str, admin: bool) -> Result<bool, StoreError> {
        match &self.engine {
            Engine::Sqlite { db, .. } => Store::sqlite(db, |db| db.execute("UPDATE users SET admin = ?2 WHERE name = ?1", (name, admin))).map(|n| n > 0),
            Engine::Postgres(pool) => Ok(pool.get().await?.execute("UPDATE users SET admin = $2 WHERE name = $1", &[&name, &admin]).await? > 0),
        }
    }

    /// Whether `name` is a relay admin (who sees every user's sessions and may close them).
    pub async fn is_admin(&self, name: &str) -> Result<bool, StoreError> {
        match &self.engine {
            Engine::Sqlite { db, .. } => Store::sqlite(db, |db| db.query_row("SELECT admin FROM users WHERE name = ?1", [name], |r| r.get::<_, bool>(0)).optional()).map(|a| a.unwrap_or(false)),
            Engine::Postgres(pool) => {
                let client = pool.get().await?;
                let stmt = client.prepare_cached("SELECT admin FROM users WHERE name = $1").await?;
                Ok(client.query_opt(&stmt, &[&name]).await?.map(|r| r.try_get::<_, bool>(0)).transpose()?.unwrap_or(false))
            }
        }
    }

    /// The password hash of `name` (PHC string).
    async fn password_hash(&self, name: &str) -> Result<Option<String>, StoreError> {
        match &self.engine {
            Engine::Sqlite { db, .. } => Store::sqlite(db, |db| db.query_row("SELECT password_hash FROM users WHERE name = ?1", [name], |r| r.get(0)).optional()),
            Engine::Postgres(pool) => {
                let client = pool.get().await?;
                let stmt = client.prepare_cached("SELECT password_hash FROM users WHERE name = $1").await?;
                Ok(client.query_opt(&stmt, &[&name]).await?.map(|r| r.try_get(0)).transpose()?)
            }
        }
    }

    /// Whether `password` is `name`'s (argon2 on the blocking pool). An unknown user costs a hash too, so timing does
    /// not tell which names exist.
    pub async fn verify(&self, name: &str, password: &str) -> Result<bool, StoreError> {
        let stored = self.password_hash(name).await?;
        let password = password.to_owned();
        blocking(move || {
            let Some(stored) = stored else {
                let _ = hash_password(&password);
                return Ok(false);
            };
            let hash = PasswordHash::new(&stored).map_err(|e| StoreError::Hash(e.to_string()))?;
            Ok(Argon2::default().verify_password(password.as_bytes(), &hash).is_ok())
        })
        .await
    }

    /// Records a login under the hash of its token.
    pub async fn add_login(&self, token_hash: &str, user: &str, now: i64, expires: i64) -> Result<(), StoreError> {
        match &self.engine {
            Engine::Sqlite { db, .. } => Store::sqlite(db, |db| {
                db.execute("INSERT OR REPLACE INTO logins (token_hash, user, created, last_seen, expires) VALUES (?1, ?2, ?3, ?3, ?4)", (token_hash, user, now, expires))
            })
            .map(drop),
            Engine::Postgres(pool) => {
                pool.get()
                    .await?
                    .execute(
                        "INSERT INTO logins (token_hash, \"user\", created, last_seen, expires) VALUES ($1, $2, $3, $3, $4)
                         ON CONFLICT (token_hash) DO UPDATE SET \"user\" = $2, created = $3, last_seen = $3, expires = $4",
                        &[&token_hash, &user, &now, &expires],
                    )
                    .await?;
                Ok(())
            }
        }
    }

    /// The login stored under `token_hash` (one query: every request's check).
    pub async fn login(&self, token_hash: &str) -> Result<Option<LoginRow>, StoreError> {
        match &self.engine {
            Engine::Sqlite { db, .. } => Store::sqlite(db, |db| {
                db.query_row("SELECT user, last_seen, expires FROM logins WHERE token_hash = ?1", [token_hash], |r| Ok(LoginRow { user: r.get(0)?, last_seen: r.get(1)?, expires: r.get(2)? }))
                    .optional()
            }),
            Engine::Postgres(pool) => {
                let client = pool.get().await?;
                let stmt = client.prepare_cached("SELECT \"user\", last_seen, expires FROM logins WHERE token_hash = $1").await?;
                Ok(client.query_opt(&stmt, &[&token_hash]).await?.map(|r| Ok::<_, tokio_postgres::Error>(LoginRow { user: r.try_get(0)?, last_seen: r.try_get(1)?, expires: r.try_get(2)? })).transpose()?)
            }
        }
    }

    /// Notes activity on a login (never moves `last_seen` back).
    pub async fn touch_login(&self, token_hash: &str, now: i64) -> Result<(), StoreError> {
        match &self.engine {
            Engine::Sqlite { db, .. } => Store::sqlite(db, |db| db.execute("UPDATE logins SET last_seen = ?2 WHERE token_hash = ?1 AND last_seen < ?2", (token_hash, now))).map(drop),
            Engine::Postgres(pool) => {
                let client = pool.get().await?;
                let stmt = client.prepare_cached("UPDATE logins SET last_seen = $2 WHERE token_hash = $1 AND last_seen < $2").await?;
                client.execute(&stmt, &[&token_hash, &now]).await?;
                Ok(())
            }
        }
    }

    /// Forgets a login; whether there was one.
    pub async fn remove_login(&self, token_hash: &str) -> Result<bool, StoreError> {
        match &self.engine {
            Engine::Sqlite { db, .. } => Store::sqlite(db, |db| db.execute("DELETE FROM logins WHERE token_hash = ?1", [token_hash])).map(|n| n > 0),
            Engine::Postgres(pool) => Ok(pool.get().await?.execute("DELETE FROM logins WHERE token_hash = $1", &[&token_hash]).await? > 0),
        }
    }

    /// Forgets the logins that have expired or been idle since `idle_since`; how many.
    pub async fn purge_logins(&self, now: i64, idle_since: i64) -> Result<usize, StoreError> {
        match &self.engine {
            Engine::Sqlite { db, .. } => Store::sqlite(db, |db| db.execute("DELETE FROM logins WHERE expires <= ?1 OR last_seen <= ?2", (now, idle_since))),
            Engine::Postgres(pool) => {
                let n = pool.get().await?.execute("DELETE FROM logins WHERE expires <= $1 OR last_seen <= $2", &[&now, &idle_since]).await?;
                Ok(usize::try_from(n).unwrap_or(usize::MAX))
            }
        }
    }
}

/// The columns of a [`WinrmSessionRow`], in its fields' order.
/// A [`WINRM_COLUMNS`] row of SQLite.
fn winrm_row_sqlite(r: &rusqlite::Row<'_>) -> rusqlite::Result<WinrmSessionRow> {
    Ok(WinrmSessionRow { key: r.get(0)?, owner: r.get(1)?, target: r.get(2)?, shell: r.get(3)?, sealed_password: r.get(4)?, idle_since: r.get(5)?, relay: r.get(6)?, resume: r.get(7)?, session_id: r.get(8)? })
}

/// A [`WINRM_COLUMNS`] row of PostgreSQL.
fn winrm_row_pg(r: &tokio_postgres::Row) -> Result<WinrmSessionRow, StoreError> {
    Ok(WinrmSessionRow {
        key: r.try_get(0)?,
        owner: r.try_get(1)?,
        target: r.try_get(2)?,
        shell: r.try_get(3)?,
        sealed_password: r.try_get(4)?,
        idle_since: r.try_get(5)?,
        relay: r.try_get(6)?,
        resume: r.try_get(7)?,
        session_id: r.try_get(8)?,
    })
}

const WINRM_COLUMNS: &str = "key, owner, target, shell, sealed_password, idle_since, relay, resume, session_id";

mod audit;
pub use audit::AuditFilter;
mod shares;
pub use shares::ShareRow;
mod relays;
pub use relays::{Claimed, PinnedRow, PromptPart, RelayRow};

#[cfg(test)]
mod tests;
