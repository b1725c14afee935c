//! The relays that share a store (issue 19): each registers itself and heartbeats; a kept WinRM session names the relay
//! holding it. A relay that stopped (cleanly: `stopped` set) or went silent (no heartbeat for `dead_after`) has its
//! WinRM sessions and its users' homes taken over by a survivor: [`Store::claim_relay`] moves them in one transaction,
//! so of two survivors claiming at once each goes to exactly one.

use super::{Engine, Store, StoreError, WINRM_COLUMNS, WinrmSessionRow};

const PINNED_COLUMNS: &str = "key, relay, owner, target, sealed_password, opened, session_id";

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

/// A session that cannot move to another relay (SSH, the local host), as kept for the relay that would take it over.
#[derive(Clone, PartialEq, Eq)]
pub struct PinnedRow {
    /// Its own id in the store (the sealed password's associated data).
    pub key: String,
    /// The relay holding it.
    pub relay: String,
    /// The relay user.
    pub owner: String,
    /// The target (JSON of `api::Target`, its password removed).
    pub target: String,
    /// The target password, sealed.
    pub sealed_password: Option<Vec<u8>>,
    /// When it opened (ms since the Unix epoch).
    pub opened: i64,
    /// Its id (the user's numbering).
    pub session_id: Option<i64>,
}

impl std::fmt::Debug for PinnedRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PinnedRow").field("key", &self.key).field("relay", &self.relay).field("owner", &self.owner).field("target", &self.target).finish_non_exhaustive()
    }
}

fn pinned_sqlite(r: &rusqlite::Row<'_>) -> rusqlite::Result<PinnedRow> {
    Ok(PinnedRow { key: r.get(0)?, relay: r.get(1)?, owner: r.get(2)?, target: r.get(3)?, sealed_password: r.get(4)?, opened: r.get(5)?, session_id: r.get(6)? })
}

fn pinned_pg(r: &tokio_postgres::Row) -> Result<PinnedRow, StoreError> {
    Ok(PinnedRow { key: r.try_get(0)?, relay: r.try_get(1)?, owner: r.try_get(2)?, target: r.try_get(3)?, sealed_password: r.try_get(4)?, opened: r.try_get(5)?, session_id: r.try_get(6)? })
}

/// What a survivor takes over from a relay gone ([`Store::claim_relay`]).
#[derive(Debug, Default)]
pub struct Claimed {
    /// Its kept WinRM sessions (now the survivor's).
    pub winrm: Vec<WinrmSessionRow>,
    /// Its sessions that cannot move (now the survivor's to show as Broken).
    pub pinned: Vec<PinnedRow>,
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

    /// The relays that hold something a survivor must take over: kept sessions or users' homes (a relay that never
    /// registered, from a test or a store copied elsewhere, counts as gone).
    pub async fn holders(&self) -> Result<Vec<String>, StoreError> {
        const SQL: &str = "SELECT relay FROM winrm_sessions WHERE relay IS NOT NULL UNION SELECT relay FROM homes UNION SELECT relay FROM pinned_sessions ORDER BY 1";
        match &self.engine {
            Engine::Sqlite { db, .. } => Store::sqlite(db, |db| db.prepare(SQL)?.query_map([], |r| r.get(0))?.collect()),
            Engine::Postgres(pool) => pool.get().await?.query(SQL, &[]).await?.iter().map(|r| Ok(r.try_get(0)?)).collect(),
        }
    }

    /// Moves what relay `from` holds to relay `to`, at once: its users' homes, its kept WinRM sessions and its pinned
    /// sessions (what moved is returned; of two survivors claiming at once, each goes to exactly one, and a user's
    /// sessions go where their home goes).
    pub async fn claim_relay(&self, from: &str, to: &str, now: i64) -> Result<Claimed, StoreError> {
        const HOMES: &str = "UPDATE homes SET relay = $2, since = $3 WHERE relay = $1";
        let sessions = format!("UPDATE winrm_sessions SET relay = $2 WHERE relay = $1 RETURNING {WINRM_COLUMNS}");
        let pinned = format!("UPDATE pinned_sessions SET relay = $2 WHERE relay = $1 RETURNING {PINNED_COLUMNS}");
        match &self.engine {
            Engine::Sqlite { db, .. } => Store::sqlite(db, |db| {
                let tx = db.unchecked_transaction()?;
                tx.execute(&HOMES.replace('$', "?"), rusqlite::params![from, to, now])?;
                let winrm = tx.prepare(&sessions.replace('$', "?"))?.query_map(rusqlite::params![from, to], super::winrm_row_sqlite)?.collect::<rusqlite::Result<Vec<_>>>()?;
                let pinned = tx.prepare(&pinned.replace('$', "?"))?.query_map(rusqlite::params![from, to], pinned_sqlite)?.collect::<rusqlite::Result<Vec<_>>>()?;
                tx.commit()?;
                Ok(Claimed { winrm, pinned })
            }),
            Engine::Postgres(pool) => {
                let mut client = pool.get().await?;
                let tx = client.transaction().await?;
                // The homes first, on both claimers: the second waits on their rows, then finds none left.
                tx.execute(HOMES, &[&from, &to, &now]).await?;
                let winrm = tx.query(&sessions, &[&from, &to]).await?.iter().map(super::winrm_row_pg).collect::<Result<Vec<_>, _>>()?;
                let pinned = tx.query(&pinned, &[&from, &to]).await?.iter().map(pinned_pg).collect::<Result<Vec<_>, _>>()?;
                tx.commit().await?;
                Ok(Claimed { winrm, pinned })
            }
        }
    }

    /// Keeps a pinned session.
    pub async fn put_pinned(&self, row: &PinnedRow) -> Result<(), StoreError> {
        let sql = format!("INSERT INTO pinned_sessions ({PINNED_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7)");
        match &self.engine {
            Engine::Sqlite { db, .. } => {
                Store::sqlite(db, |db| db.execute(&sql.replace('$', "?"), rusqlite::params![row.key, row.relay, row.owner, row.target, row.sealed_password, row.opened, row.session_id])).map(drop)
            }
            Engine::Postgres(pool) => {
                pool.get().await?.execute(&sql, &[&row.key, &row.relay, &row.owner, &row.target, &row.sealed_password, &row.opened, &row.session_id]).await?;
                Ok(())
            }
        }
    }

    /// Forgets pinned session `key` (removed by its user).
    pub async fn remove_pinned(&self, key: &str) -> Result<(), StoreError> {
        self.execute_text("DELETE FROM pinned_sessions WHERE key = $1", key).await
    }

    /// Runs `sql`, one statement whose one parameter `$1` is `text`.
    async fn execute_text(&self, sql: &str, text: &str) -> Result<(), StoreError> {
        match &self.engine {
            Engine::Sqlite { db, .. } => Store::sqlite(db, |db| db.execute(&sql.replace('$', "?"), [text])).map(drop),
            Engine::Postgres(pool) => {
                pool.get().await?.execute(sql, &[&text]).await?;
                Ok(())
            }
        }
    }

    /// The pinned sessions relay `id` holds (a restarted relay shows its own as Broken).
    pub async fn pinned_of(&self, id: &str) -> Result<Vec<PinnedRow>, StoreError> {
        let sql = format!("SELECT {PINNED_COLUMNS} FROM pinned_sessions WHERE relay = $1 ORDER BY opened, key");
        match &self.engine {
            Engine::Sqlite { db, .. } => Store::sqlite(db, |db| db.prepare(&sql.replace('$', "?"))?.query_map([id], pinned_sqlite)?.collect()),
            Engine::Postgres(pool) => pool.get().await?.query(&sql, &[&id]).await?.iter().map(pinned_pg).collect(),
        }
    }

    /// User `owner`'s home: the relay that serves them (made `me`, now, if they have none), with that relay's row
    /// (none: it is not registered).
    pub async fn home(&self, owner: &str, me: &str, now: i64) -> Result<(String, Option<RelayRow>), StoreError> {
        const CLAIM: &str = "INSERT INTO homes (owner, relay, since) VALUES ($1, $2, $3) ON CONFLICT (owner) DO NOTHING";
        const READ: &str = "SELECT h.relay, r.id, r.address, r.started, r.heartbeat, r.stopped, r.drain FROM homes h LEFT JOIN relays r ON r.id = h.relay WHERE h.owner = $1";
        fn relay(id: Option<String>, address: String, started: i64, heartbeat: i64, stopped: Option<i64>, drain: bool) -> Option<RelayRow> {
            id.map(|id| RelayRow { id, address, started, heartbeat, stopped, drain })
        }
        match &self.engine {
            Engine::Sqlite { db, .. } => Store::sqlite(db, |db| {
                db.execute(&CLAIM.replace('$', "?"), rusqlite::params![owner, me, now])?;
                db.query_row(&READ.replace('$', "?"), [owner], |r| {
                    let id: Option<String> = r.get(1)?;
                    let row = match id {
                        Some(_) => relay(id, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?),
                        None => None,
                    };
                    Ok((r.get(0)?, row))
                })
            }),
            Engine::Postgres(pool) => {
                let client = pool.get().await?;
                // One round trip when the user has a home (each WebSocket opened), two the first time.
                let read = client.prepare_cached(READ).await?;
                let r = match client.query_opt(&read, &[&owner]).await? {
                    Some(r) => r,
                    None => {
                        client.execute(CLAIM, &[&owner, &me, &now]).await?;
                        client.query_one(&read, &[&owner]).await?
                    }
                };
                let id: Option<String> = r.try_get(1)?;
                let row = match id {
                    Some(_) => relay(id, r.try_get(2)?, r.try_get(3)?, r.try_get(4)?, r.try_get(5)?, r.try_get(6)?),
                    None => None,
                };
                Ok((r.try_get(0)?, row))
            }
        }
    }

    /// MaxConcurrentUsers across every relay of the store: whether `owner` may hold sessions when at most `max` users
    /// do (a user already holding some always may). Admitted, the user counts as active until
    /// [`Store::set_user_active`]. Decided in one transaction under an advisory lock (PostgreSQL) or SQLite's lock, so
    /// of two relays racing for the last slot exactly one wins.
    pub async fn admit_user(&self, owner: &str, me: &str, max: u32, now: i64) -> Result<bool, StoreError> {
        const HOME: &str = "INSERT INTO homes (owner, relay, since) VALUES ($1, $2, $3) ON CONFLICT (owner) DO NOTHING";
        const ACTIVE: &str = "SELECT active FROM homes WHERE owner = $1";
        const COUNT: &str = "SELECT COUNT(*) FROM homes WHERE active";
        const TAKE: &str = "UPDATE homes SET active = true WHERE owner = $1";
        match &self.engine {
            Engine::Sqlite { db, .. } => Store::sqlite(db, |db| {
                let tx = db.unchecked_transaction()?;
                tx.execute(&HOME.replace('$', "?"), rusqlite::params![owner, me, now])?;
                let admitted = tx.query_row(&ACTIVE.replace('$', "?"), [owner], |r| r.get::<_, bool>(0))?
                    || (tx.query_row(COUNT, [], |r| r.get::<_, i64>(0))? < i64::from(max) && tx.execute(&TAKE.replace('$', "?"), [owner])? > 0);
                tx.commit()?;
                Ok(admitted)
            }),
            Engine::Postgres(pool) => {
                let mut client = pool.get().await?;
                let tx = client.transaction().await?;
                // One lock for every admission (the key is psgate's own): a relay counts only after another's decision.
                tx.execute("SELECT pg_advisory_xact_lock(7700919)", &[]).await?;
                tx.execute(HOME, &[&owner, &me, &now]).await?;
                let admitted = tx.query_one(ACTIVE, &[&owner]).await?.try_get::<_, bool>(0)?
                    || (tx.query_one(COUNT, &[]).await?.try_get::<_, i64>(0)? < i64::from(max) && tx.execute(TAKE, &[&owner]).await? > 0);
                tx.commit().await?;
                Ok(admitted)
            }
        }
    }

    /// Whether `owner` holds sessions, counted by [`Store::admit_user`]: set for sessions taken over or kept over a
    /// restart, cleared when the user's last session is removed.
    pub async fn set_user_active(&self, owner: &str, active: bool) -> Result<(), StoreError> {
        let sql = if active { "UPDATE homes SET active = true WHERE owner = $1" } else { "UPDATE homes SET active = false WHERE owner = $1" };
        self.execute_text(sql, owner).await
    }

    /// Keeps a part of `owner`'s prompt (sealed), unless a later one is kept already (writes may arrive out of
    /// order).
    pub async fn put_prompt(&self, part: PromptPart, owner: &str, sealed: &[u8], updated: i64) -> Result<(), StoreError> {
        let table = part.table();
        let sql = format!(
            "INSERT INTO {table} (owner, sealed, updated) VALUES ($1, $2, $3)
             ON CONFLICT (owner) DO UPDATE SET sealed = excluded.sealed, updated = excluded.updated WHERE {table}.updated <= excluded.updated"
        );
        match &self.engine {
            Engine::Sqlite { db, .. } => Store::sqlite(db, |db| db.execute(&sql.replace('$', "?"), rusqlite::params![owner, sealed, updated])).map(drop),
            Engine::Postgres(pool) => {
                pool.get().await?.execute(&sql, &[&owner, &sealed, &updated]).await?;
                Ok(())
            }
        }
    }

    /// A part of `owner`'s kept prompt (sealed).
    pub async fn prompt(&self, part: PromptPart, owner: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let sql = format!("SELECT sealed FROM {} WHERE owner = $1", part.table());
        match &self.engine {
            Engine::Sqlite { db, .. } => Store::sqlite(db, |db| {
                use rusqlite::OptionalExtension as _;
                db.query_row(&sql.replace('$', "?"), [owner], |r| r.get(0)).optional()
            }),
            Engine::Postgres(pool) => Ok(pool.get().await?.query_opt(&sql, &[&owner]).await?.map(|r| r.try_get(0)).transpose()?),
        }
    }
}

/// The parts of a user's prompt the store keeps, each in its table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PromptPart {
    /// Variables, history and the entered session (CLIXML), written after every line.
    State,
    /// The modules Import-PSSession made (JSON), written when they change.
    Modules,
}

impl PromptPart {
    fn table(self) -> &'static str {
        match self {
            PromptPart::State => "prompt_states",
            PromptPart::Modules => "prompt_modules",
        }
    }
}
