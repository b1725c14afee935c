//! The relays that share a store (issue 19): each registers itself and heartbeats; a kept WinRM session names the relay
//! holding it. A relay that stopped (cleanly: `stopped` set) or went silent (no heartbeat for `dead_after`) has its
//! WinRM sessions taken over by a survivor: [`Store::claim_winrm_sessions`] moves them in one statement, so of two
//! survivors claiming at once each session goes to exactly one.

use super::{Engine, Store, StoreError, WINRM_COLUMNS, WinrmSessionRow};

/// A relay of the deployment, as the store knows it (times in ms since the Unix epoch).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RelayRow {
    /// `[cluster] relay_id`.
    pub id: String,
    /// Where the other relays reach it (`[cluster] address`).
    pub address: String,
    /// When it started.
    pub started: i64,
    /// Its last heartbeat.
    pub heartbeat: i64,
    /// When it stopped cleanly (none: it runs, or died).
    pub stopped: Option<i64>,
    /// `psgate drain` asked it to hand its sessions over and stop.
    pub drain: bool,
}

impl RelayRow {
    /// Whether the relay is gone at `now`: stopped, or silent for `dead_after` ms.
    pub fn gone(&self, now: i64, dead_after: i64) -> bool {
        self.stopped.is_some() || now.saturating_sub(self.heartbeat) > dead_after
    }
}

impl Store {
    /// Registers relay `id` (again, after a restart): started and alive now.
    pub async fn register_relay(&self, id: &str, address: &str, now: i64) -> Result<(), StoreError> {
        const SQL: &str = "INSERT INTO relays (id, address, started, heartbeat, stopped, drain) VALUES ($1, $2, $3, $3, NULL, false)
             ON CONFLICT (id) DO UPDATE SET address = $2, started = $3, heartbeat = $3, stopped = NULL, drain = false";
        match &self.engine {
            Engine::Sqlite { db, .. } => Store::sqlite(db, |db| db.execute(&SQL.replace('$', "?"), rusqlite::params![id, address, now])).map(drop),
            Engine::Postgres(pool) => {
                pool.get().await?.execute(SQL, &[&id, &address, &now]).await?;
                Ok(())
            }
        }
    }

    /// Relay `id` is alive at `now`. False when the store no longer has it alive (another relay took its sessions
    /// over, deeming it gone): it must not go on as if nothing happened.
    pub async fn heartbeat(&self, id: &str, now: i64) -> Result<bool, StoreError> {
        const SQL: &str = "UPDATE relays SET heartbeat = $2 WHERE id = $1 AND stopped IS NULL";
        let n = match &self.engine {
            Engine::Sqlite { db, .. } => Store::sqlite(db, |db| db.execute(&SQL.replace('$', "?"), rusqlite::params![id, now]))?,
            Engine::Postgres(pool) => usize::try_from(pool.get().await?.execute(SQL, &[&id, &now]).await?).unwrap_or(usize::MAX),
        };
        Ok(n > 0)
    }

    /// Relay `id` stopped cleanly at `now` (its WinRM sessions are disconnected, ready for another relay).
    pub async fn relay_stopped(&self, id: &str, now: i64) -> Result<(), StoreError> {
        const SQL: &str = "UPDATE relays SET stopped = $2 WHERE id = $1";
        match &self.engine {
            Engine::Sqlite { db, .. } => Store::sqlite(db, |db| db.execute(&SQL.replace('$', "?"), rusqlite::params![id, now])).map(drop),
            Engine::Postgres(pool) => {
                pool.get().await?.execute(SQL, &[&id, &now]).await?;
                Ok(())
            }
        }
    }

    /// `psgate drain`: asks running relay `id` to hand its sessions over and stop (at its next heartbeat). False when
    /// no such relay runs.
    pub async fn request_drain(&self, id: &str) -> Result<bool, StoreError> {
        const SQL: &str = "UPDATE relays SET drain = true WHERE id = $1 AND stopped IS NULL";
        let n = match &self.engine {
            Engine::Sqlite { db, .. } => Store::sqlite(db, |db| db.execute(&SQL.replace('$', "?"), rusqlite::params![id]))?,
            Engine::Postgres(pool) => usize::try_from(pool.get().await?.execute(SQL, &[&id]).await?).unwrap_or(usize::MAX),
        };
        Ok(n > 0)
    }

    /// Every relay the store knows, by id.
    pub async fn relays(&self) -> Result<Vec<RelayRow>, StoreError> {
        const SQL: &str = "SELECT id, address, started, heartbeat, stopped, drain FROM relays ORDER BY id";
        match &self.engine {
            Engine::Sqlite { db, .. } => Store::sqlite(db, |db| {
                let mut stmt = db.prepare(SQL)?;
                let rows = stmt.query_map([], |r| Ok(RelayRow { id: r.get(0)?, address: r.get(1)?, started: r.get(2)?, heartbeat: r.get(3)?, stopped: r.get(4)?, drain: r.get(5)? }))?;
                rows.collect()
            }),
            Engine::Postgres(pool) => pool
                .get()
                .await?
                .query(SQL, &[])
                .await?
                .iter()
                .map(|r| Ok(RelayRow { id: r.try_get(0)?, address: r.try_get(1)?, started: r.try_get(2)?, heartbeat: r.try_get(3)?, stopped: r.try_get(4)?, drain: r.try_get(5)? }))
                .collect(),
        }
    }

    /// The kept WinRM sessions relay `id` holds, with those kept before relays had ids (a restart takes them back).
    pub async fn winrm_sessions_of(&self, id: &str) -> Result<Vec<WinrmSessionRow>, StoreError> {
        self.winrm_rows(&format!("SELECT {WINRM_COLUMNS} FROM winrm_sessions WHERE relay = $1 OR relay IS NULL ORDER BY updated, key"), &[id]).await
    }

    /// The relays named as holders of kept WinRM sessions (a relay that never registered, from a test or a store
    /// copied elsewhere, counts as gone).
    pub async fn winrm_holders(&self) -> Result<Vec<String>, StoreError> {
        const SQL: &str = "SELECT DISTINCT relay FROM winrm_sessions WHERE relay IS NOT NULL ORDER BY relay";
        match &self.engine {
            Engine::Sqlite { db, .. } => Store::sqlite(db, |db| db.prepare(SQL)?.query_map([], |r| r.get(0))?.collect()),
            Engine::Postgres(pool) => pool.get().await?.query(SQL, &[]).await?.iter().map(|r| Ok(r.try_get(0)?)).collect(),
        }
    }

    /// Moves relay `from`'s kept WinRM sessions to relay `to`, in one statement: what was moved (a session another
    /// survivor moved first is not).
    pub async fn claim_winrm_sessions(&self, from: &str, to: &str) -> Result<Vec<WinrmSessionRow>, StoreError> {
        self.winrm_rows(&format!("UPDATE winrm_sessions SET relay = $2 WHERE relay = $1 RETURNING {WINRM_COLUMNS}"), &[from, to]).await
    }
}
