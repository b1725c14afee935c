//! The relay's users: an embedded SQLite database with argon2id password hashes (PHC strings).

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

/// The users table.
#[derive(Debug)]
pub struct Store {
    db: Mutex<Connection>,
}

impl Store {
    /// Opens (creating if needed) the database at `path`.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        Store::init(Connection::open(path)?)
    }

    /// A database in memory (tests, demo).
    pub fn in_memory() -> Result<Store, StoreError> {
        Store::init(Connection::open_in_memory()?)
    }

    fn init(db: Connection) -> Result<Store, StoreError> {
        db.execute_batch("CREATE TABLE IF NOT EXISTS users (name TEXT PRIMARY KEY NOT NULL, password_hash TEXT NOT NULL, created TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP)")?;
        Ok(Store { db: Mutex::new(db) })
    }

    fn db(&self) -> std::sync::MutexGuard<'_, Connection> {
        // A panic while holding the lock leaves SQLite consistent (each statement is atomic).
        self.db.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
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
        self.db().execute(
            "INSERT INTO users (name, password_hash) VALUES (?1, ?2) ON CONFLICT(name) DO UPDATE SET password_hash = excluded.password_hash",
            (name, hash),
        )?;
        Ok(())
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
}
