//! Shared sessions (`session_shares`): who a session is shared with, and as what.

use super::{Engine, Store, StoreError};

/// A share as kept: the session's owner and id, the user it is shared with, the role (`observer`, `peer`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShareRow {
    /// The session's owner.
    pub owner: String,
    /// The session's id among the owner's.
    pub session_id: i64,
    /// The user invited.
    pub grantee: String,
    /// `observer` or `peer`.
    pub role: String,
}

const COLUMNS: &str = "owner, session_id, grantee, role";

fn share_sqlite(r: &rusqlite::Row<'_>) -> rusqlite::Result<ShareRow> {
    Ok(ShareRow { owner: r.get(0)?, session_id: r.get(1)?, grantee: r.get(2)?, role: r.get(3)? })
}

fn share_pg(r: &tokio_postgres::Row) -> Result<ShareRow, tokio_postgres::Error> {
    Ok(ShareRow { owner: r.try_get(0)?, session_id: r.try_get(1)?, grantee: r.try_get(2)?, role: r.try_get(3)? })
}

impl Store {
    /// Shares `owner`'s session with `grantee` as `role` (again: the new role).
    pub async fn put_share(&self, row: &ShareRow, now: i64) -> Result<(), StoreError> {
        const SQL: &str = "INSERT INTO session_shares (owner, session_id, grantee, role, granted) VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (owner, session_id, grantee) DO UPDATE SET role = excluded.role, granted = excluded.granted";
        match &self.engine {
            Engine::Sqlite { db, .. } => Store::sqlite(db, |db| db.execute(&SQL.replace('$', "?"), rusqlite::params![row.owner, row.session_id, row.grantee, row.role, now])).map(drop),
            Engine::Postgres(pool) => {
                pool.get().await?.execute(SQL, &[&row.owner, &row.session_id, &row.grantee, &row.role, &now]).await?;
                Ok(())
            }
        }
    }

    /// Revokes `grantee`'s share of `owner`'s session (`None`: every share of it: the session is gone); whether any
    /// was removed.
    pub async fn remove_share(&self, owner: &str, session_id: i64, grantee: Option<&str>) -> Result<bool, StoreError> {
        let (sql, grantee) = match grantee {
            Some(g) => ("DELETE FROM session_shares WHERE owner = $1 AND session_id = $2 AND grantee = $3", g),
            None => ("DELETE FROM session_shares WHERE owner = $1 AND session_id = $2 AND grantee <> $3", ""),
        };
        match &self.engine {
            Engine::Sqlite { db, .. } => Store::sqlite(db, |db| db.execute(&sql.replace('$', "?"), rusqlite::params![owner, session_id, grantee])).map(|n| n > 0),
            Engine::Postgres(pool) => Ok(pool.get().await?.execute(sql, &[&owner, &session_id, &grantee]).await? > 0),
        }
    }

    /// The shares of `owner`'s session `session_id`, oldest first.
    pub async fn shares_of(&self, owner: &str, session_id: i64) -> Result<Vec<ShareRow>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM session_shares WHERE owner = $1 AND session_id = $2 ORDER BY granted, grantee");
        match &self.engine {
            Engine::Sqlite { db, .. } => Store::sqlite(db, |db| db.prepare(&sql.replace('$', "?"))?.query_map(rusqlite::params![owner, session_id], share_sqlite)?.collect()),
            Engine::Postgres(pool) => Ok(pool.get().await?.query(&sql, &[&owner, &session_id]).await?.iter().map(share_pg).collect::<Result<_, _>>()?),
        }
    }

    /// The shares made to `grantee`, oldest first.
    pub async fn shares_to(&self, grantee: &str) -> Result<Vec<ShareRow>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM session_shares WHERE grantee = $1 ORDER BY granted, owner, session_id");
        match &self.engine {
            Engine::Sqlite { db, .. } => Store::sqlite(db, |db| db.prepare(&sql.replace('$', "?"))?.query_map(rusqlite::params![grantee], share_sqlite)?.collect()),
            Engine::Postgres(pool) => Ok(pool.get().await?.query(&sql, &[&grantee]).await?.iter().map(share_pg).collect::<Result<_, _>>()?),
        }
    }

    /// Whether `name` is a relay user.
    pub async fn user_exists(&self, name: &str) -> Result<bool, StoreError> {
        const SQL: &str = "SELECT 1 FROM users WHERE name = $1";
        match &self.engine {
            Engine::Sqlite { db, .. } => Store::sqlite(db, |db| {
                use rusqlite::OptionalExtension as _;
                db.query_row(&SQL.replace('$', "?"), [name], |_| Ok(())).optional().map(|r| r.is_some())
            }),
            Engine::Postgres(pool) => Ok(pool.get().await?.query_opt(SQL, &[&name]).await?.is_some()),
        }
    }
}
