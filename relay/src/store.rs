//! The relay's users and browser logins: an embedded SQLite database. Passwords are argon2id hashes (PHC
//! strings); a login is kept as the SHA-256 of its cookie's token (never the token), with its last activity and
//! its expiry, so logins survive a restart of the relay and a stolen database holds no usable cookie.

use std::path::Path;
use std::sync::Mutex;

use argon2::password_hash::{PasswordHash, PasswordHasher as _, PasswordVerifier as _, SaltString};
use argon2::Argon2;
use rusqlite::{Connection, OptionalExtension as _};

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// SQLite failed.
    #[error("user database: {0}")]
    Sql(#[from] rusqlite::Error),
    /// Hashing failed.
    #[error("password hashing: {0}")]
    Hash(String),
    /// A bad user name or password.
    #[error("{0}")]
    Invalid(&'static str),
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
}

impl std::fmt::Debug for WinrmSessionRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WinrmSessionRow").field("key", &self.key).field("owner", &self.owner).field("target", &self.target).finish_non_exhaustive()
    }
}

/// The users table.
#[derive(Debug)]
pub struct Store {
    db: Mutex<Connection>,
    path: Option<std::path::PathBuf>,
}

impl Store {
    /// Opens (creating if needed) the database at `path`.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let mut store = Store::init(Connection::open(path)?)?;
        store.path = Some(path.to_owned());
        Ok(store)
    }

    /// The database file (none: in memory).
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// A database in memory (tests, demo).
    pub fn in_memory() -> Result<Store, StoreError> {
        Store::init(Connection::open_in_memory()?)
    }

    fn init(db: Connection) -> Result<Store, StoreError> {
        // Another process (`psgate user add`, a second relay on the same file) may hold the lock for a moment.
        db.busy_timeout(std::time::Duration::from_secs(5))?;
        db.execute_batch(
            "CREATE TABLE IF NOT EXISTS users (name TEXT PRIMARY KEY NOT NULL, password_hash TEXT NOT NULL, created TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP);
             CREATE TABLE IF NOT EXISTS logins (token_hash TEXT PRIMARY KEY NOT NULL, user TEXT NOT NULL, created INTEGER NOT NULL,
                 last_seen INTEGER NOT NULL, expires INTEGER NOT NULL);
             CREATE INDEX IF NOT EXISTS logins_user ON logins (user);
             CREATE TABLE IF NOT EXISTS winrm_sessions (key TEXT PRIMARY KEY NOT NULL, owner TEXT NOT NULL, target TEXT NOT NULL,
                 shell TEXT NOT NULL, sealed_password BLOB, updated INTEGER NOT NULL);
             CREATE TABLE IF NOT EXISTS audit (id INTEGER PRIMARY KEY, time INTEGER NOT NULL, actor TEXT NOT NULL,
                 action TEXT NOT NULL, subject TEXT NOT NULL, detail TEXT NOT NULL);",
        )?;
        // Relay admins (psgate user add --admin), added to databases made before the flag.
        let has_admin: bool = db.prepare("SELECT 1 FROM pragma_table_info('users') WHERE name = 'admin'")?.exists([])?;
        if !has_admin {
            db.execute_batch("ALTER TABLE users ADD COLUMN admin INTEGER NOT NULL DEFAULT 0")?;
        }
        Ok(Store { db: Mutex::new(db), path: None })
    }

    fn db(&self) -> std::sync::MutexGuard<'_, Connection> {
        // A panic while holding the lock leaves SQLite consistent (each statement is atomic).
        self.db.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Keeps (or updates) what a later Connect to a WinRM session needs: `target` and `shell` are JSON without any
    /// secret; the password only sealed (see `crate::seal`).
    pub fn put_winrm_session(&self, row: &WinrmSessionRow) -> Result<(), StoreError> {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64);
        self.db().execute(
            "INSERT INTO winrm_sessions (key, owner, target, shell, sealed_password, updated) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT(key) DO UPDATE SET owner = ?2, target = ?3, shell = ?4, sealed_password = ?5, updated = ?6",
            rusqlite::params![row.key, row.owner, row.target, row.shell, row.sealed_password, now],
        )?;
        Ok(())
    }

    /// Forgets a WinRM session.
    pub fn remove_winrm_session(&self, key: &str) -> Result<(), StoreError> {
        self.db().execute("DELETE FROM winrm_sessions WHERE key = ?1", [key])?;
        Ok(())
    }

    /// Every kept WinRM session, oldest first.
    pub fn winrm_sessions(&self) -> Result<Vec<WinrmSessionRow>, StoreError> {
        let db = self.db();
        let mut stmt = db.prepare("SELECT key, owner, target, shell, sealed_password FROM winrm_sessions ORDER BY updated, key")?;
        let rows = stmt.query_map([], |r| {
            Ok(WinrmSessionRow { key: r.get(0)?, owner: r.get(1)?, target: r.get(2)?, shell: r.get(3)?, sealed_password: r.get(4)? })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Adds `name` or sets its password. Slow (argon2): call from a blocking context.
    pub fn set_user(&self, name: &str, password: &str) -> Result<(), StoreError> {
        if name.is_empty() || name.len() > 64 || !name.chars().all(|c| c.is_ascii_alphanumeric() || "._-@".contains(c)) {
            return Err(StoreError::Invalid("a user name is 1-64 letters, digits or ._-@"));
        }
        if password.is_empty() {
            return Err(StoreError::Invalid("the password is empty"));
        }
        let salt = SaltString::generate(&mut argon2::password_hash::rand_core::OsRng);
        let hash = Argon2::default().hash_password(password.as_bytes(), &salt).map_err(|e| StoreError::Hash(e.to_string()))?.to_string();
        let db = self.db();
        db.execute(
            "INSERT INTO users (name, password_hash) VALUES (?1, ?2) ON CONFLICT(name) DO UPDATE SET password_hash = excluded.password_hash",
            (name, &hash),
        )?;
        // A new password ends the user's logins.
        db.execute("DELETE FROM logins WHERE user = ?1", [name])?;
        Ok(())
    }

    /// Makes `name` a relay admin or not (`false` for an unknown user).
    pub fn set_admin(&self, name: &str, admin: bool) -> Result<bool, StoreError> {
        Ok(self.db().execute("UPDATE users SET admin = ?2 WHERE name = ?1", (name, admin))? > 0)
    }

    /// Whether `name` is a relay admin (who sees every user's sessions and may close them).
    pub fn is_admin(&self, name: &str) -> Result<bool, StoreError> {
        Ok(self.db().query_row("SELECT admin FROM users WHERE name = ?1", [name], |r| r.get::<_, bool>(0)).optional()?.unwrap_or(false))
    }

    /// Records what `actor` did to `subject` (milliseconds since the Unix epoch).
    pub fn audit(&self, time: i64, actor: &str, action: &str, subject: &str, detail: &str) -> Result<(), StoreError> {
        self.db().execute("INSERT INTO audit (time, actor, action, subject, detail) VALUES (?1, ?2, ?3, ?4, ?5)", (time, actor, action, subject, detail))?;
        Ok(())
    }

    /// The audit, oldest first: (time, actor, action, subject, detail).
    pub fn audit_rows(&self) -> Result<Vec<AuditRow>, StoreError> {
        let db = self.db();
        let mut q = db.prepare("SELECT time, actor, action, subject, detail FROM audit ORDER BY id")?;
        let rows = q.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)))?.collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    /// Whether `password` is `name`'s. Slow (argon2): call from a blocking context. An unknown user costs a hash
    /// too, so timing does not tell which names exist.
    pub fn verify(&self, name: &str, password: &str) -> Result<bool, StoreError> {
        let stored: Option<String> = self.db().query_row("SELECT password_hash FROM users WHERE name = ?1", [name], |r| r.get(0)).optional()?;
        let Some(stored) = stored else {
            let salt = SaltString::generate(&mut argon2::password_hash::rand_core::OsRng);
            let _ = Argon2::default().hash_password(password.as_bytes(), &salt);
            return Ok(false);
        };
        let hash = PasswordHash::new(&stored).map_err(|e| StoreError::Hash(e.to_string()))?;
        Ok(Argon2::default().verify_password(password.as_bytes(), &hash).is_ok())
    }
}

/// One record of the audit: (time in milliseconds since the Unix epoch, actor, action, subject, detail).
pub type AuditRow = (i64, String, String, String, String);

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

impl Store {
    /// Records a login under the hash of its token.
    pub fn add_login(&self, token_hash: &str, user: &str, now: i64, expires: i64) -> Result<(), StoreError> {
        self.db().execute(
            "INSERT OR REPLACE INTO logins (token_hash, user, created, last_seen, expires) VALUES (?1, ?2, ?3, ?3, ?4)",
            (token_hash, user, now, expires),
        )?;
        Ok(())
    }

    /// The login stored under `token_hash`.
    pub fn login(&self, token_hash: &str) -> Result<Option<LoginRow>, StoreError> {
        Ok(self
            .db()
            .query_row("SELECT user, last_seen, expires FROM logins WHERE token_hash = ?1", [token_hash], |r| {
                Ok(LoginRow { user: r.get(0)?, last_seen: r.get(1)?, expires: r.get(2)? })
            })
            .optional()?)
    }

    /// Notes activity on a login (never moves `last_seen` back).
    pub fn touch_login(&self, token_hash: &str, now: i64) -> Result<(), StoreError> {
        self.db().execute("UPDATE logins SET last_seen = ?2 WHERE token_hash = ?1 AND last_seen < ?2", (token_hash, now))?;
        Ok(())
    }

    /// Forgets a login; whether there was one.
    pub fn remove_login(&self, token_hash: &str) -> Result<bool, StoreError> {
        Ok(self.db().execute("DELETE FROM logins WHERE token_hash = ?1", [token_hash])? > 0)
    }

    /// Forgets the logins that have expired or been idle since `idle_since`; how many.
    pub fn purge_logins(&self, now: i64, idle_since: i64) -> Result<usize, StoreError> {
        Ok(self.db().execute("DELETE FROM logins WHERE expires <= ?1 OR last_seen <= ?2", (now, idle_since))?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_and_passwords() {
        let store = Store::in_memory().expect("db");
        store.set_user("alice", "correct horse").expect("add");
        assert!(store.verify("alice", "correct horse").expect("verify"));
        assert!(!store.verify("alice", "wrong").expect("verify"));
        assert!(!store.verify("bob", "correct horse").expect("verify"));
        store.set_user("alice", "new").expect("change");
        assert!(!store.verify("alice", "correct horse").expect("verify"));
        assert!(store.verify("alice", "new").expect("verify"));
        assert!(store.set_user("a b", "x").is_err());
        assert!(store.set_user("carol", "").is_err());
        let stored: String = store.db().query_row("SELECT password_hash FROM users", [], |r| r.get(0)).expect("row");
        assert!(stored.starts_with("$argon2id$"), "{stored}");
    }

    #[test]
    fn logins_are_kept_touched_and_purged() {
        let store = Store::in_memory().expect("db");
        store.set_user("alice", "pw").expect("add");
        store.add_login("h1", "alice", 1_000, 100_000).expect("login");
        store.add_login("h2", "alice", 1_000, 100_000).expect("login");
        assert_eq!(store.login("h1").expect("read"), Some(LoginRow { user: "alice".into(), last_seen: 1_000, expires: 100_000 }));
        store.touch_login("h1", 5_000).expect("touch");
        store.touch_login("h1", 4_000).expect("an older touch is ignored");
        assert_eq!(store.login("h1").expect("read").map(|l| l.last_seen), Some(5_000));
        assert_eq!(store.purge_logins(6_000, 2_000).expect("purge"), 1, "h2 idle since 1000");
        assert!(store.login("h2").expect("read").is_none());
        assert_eq!(store.purge_logins(100_000, 0).expect("purge"), 1, "h1 expired");
        store.add_login("h3", "alice", 1_000, 100_000).expect("login");
        assert!(store.remove_login("h3").expect("remove"));
        assert!(!store.remove_login("h3").expect("remove"));
        store.add_login("h4", "alice", 1_000, 100_000).expect("login");
        store.set_user("alice", "new").expect("change");
        assert!(store.login("h4").expect("read").is_none(), "a new password ends the logins");
    }

    #[test]
    fn a_database_from_before_the_admin_flag_gets_it_and_admins_are_audited() {
        let dir = std::env::temp_dir().join(format!("psgate-store-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("old.db");
        let _ = std::fs::remove_file(&path);
        {
            let old = Connection::open(&path).expect("open");
            old.execute_batch("CREATE TABLE users (name TEXT PRIMARY KEY NOT NULL, password_hash TEXT NOT NULL, created TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP);
                               INSERT INTO users (name, password_hash) VALUES ('root', 'x');")
                .expect("the old schema");
        }
        let store = Store::open(&path).expect("opened and migrated");
        assert!(!store.is_admin("root").expect("read"), "nobody is an admin by default");
        assert!(store.set_admin("root", true).expect("set"));
        assert!(!store.set_admin("nobody", true).expect("set"), "an unknown user is not made one");
        assert!(store.is_admin("root").expect("read") && !store.is_admin("nobody").expect("read"));
        drop(store);
        let store = Store::open(&path).expect("opened again");
        assert!(store.is_admin("root").expect("kept"));
        store.audit(42, "root", "Remove-PSGateSession", "alice/3", "session 3 on srv02").expect("audit");
        assert_eq!(store.audit_rows().expect("rows"), [(42, "root".into(), "Remove-PSGateSession".into(), "alice/3".into(), "session 3 on srv02".into())]);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
