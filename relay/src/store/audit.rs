//! The audit trail's table (`audit_records`): appending to the one chain under a lock on its end, reading it in
//! order, and retention.

use super::{Engine, Store, StoreError};
use crate::audit::{Event, GENESIS, Record, chain_input};

/// The PostgreSQL advisory lock relays take while they append to the chain.
const AUDIT_LOCK: i64 = 7_700_920;

const COLUMNS: &str = "seq, relay, at, kind, actor, owner, session, computer, body, prev, mac";

/// What a search narrows by in the store (the rest, command text and results, is matched on the records read).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AuditFilter {
    /// Only these kinds (`pipeline`, `login`, …; empty: all).
    pub kinds: Vec<String>,
    /// The actor or the session's owner.
    pub user: Option<String>,
    /// The session's computer (case-insensitive).
    pub computer: Option<String>,
    /// From this time (ms).
    pub since: Option<i64>,
    /// Before this time (ms).
    pub until: Option<i64>,
    /// Only this session: (owner, id).
    pub session: Option<(String, i64)>,
}

fn record_sqlite(r: &rusqlite::Row<'_>) -> rusqlite::Result<Record> {
    Ok(Record {
        seq: r.get(0)?,
        relay: r.get(1)?,
        at: r.get(2)?,
        kind: r.get(3)?,
        actor: r.get(4)?,
        owner: r.get(5)?,
        session: r.get(6)?,
        computer: r.get(7)?,
        body: r.get(8)?,
        prev: r.get(9)?,
        mac: r.get(10)?,
    })
}

fn record_pg(r: &tokio_postgres::Row) -> Result<Record, tokio_postgres::Error> {
    Ok(Record {
        seq: r.try_get(0)?,
        relay: r.try_get(1)?,
        at: r.try_get(2)?,
        kind: r.try_get(3)?,
        actor: r.try_get(4)?,
        owner: r.try_get(5)?,
        session: r.try_get(6)?,
        computer: r.try_get(7)?,
        body: r.try_get(8)?,
        prev: r.try_get(9)?,
        mac: r.try_get(10)?,
    })
}

/// The records `events` make after the chain's end `(seq, mac)`.
fn chained(relay: &str, end: Option<(i64, String)>, events: &[Event], mac: &(dyn Fn(&str) -> String + Sync)) -> Vec<Record> {
    let (mut seq, mut prev) = end.unwrap_or((0, GENESIS.to_owned()));
    events
        .iter()
        .map(|e| {
            seq += 1;
            let body = serde_json::to_string(e).unwrap_or_default();
            let this = mac(&chain_input(seq, relay, &prev, &body));
            Record {
                seq,
                relay: relay.to_owned(),
                at: e.at,
                kind: e.kind.name().to_owned(),
                actor: e.actor.clone(),
                owner: e.owner.clone(),
                session: e.session.and_then(|s| i64::try_from(s).ok()),
                computer: e.computer.clone(),
                body,
                prev: std::mem::replace(&mut prev, this.clone()),
                mac: this,
            }
        })
        .collect()
}

impl Store {
    /// Appends `events` to the audit chain as records of `relay`, MACed by `mac`, in one transaction holding the
    /// chain's end (two relays appending at once: one after the other, one order).
    pub async fn append_audit(&self, relay: &str, events: &[Event], mac: &(dyn Fn(&str) -> String + Sync)) -> Result<(), StoreError> {
        const END: &str = "SELECT seq, mac FROM audit_records ORDER BY seq DESC LIMIT 1";
        let insert = format!("INSERT INTO audit_records ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)");
        match &self.engine {
            Engine::Sqlite { db, .. } => Store::sqlite(db, |db| {
                let tx = rusqlite::Transaction::new_unchecked(db, rusqlite::TransactionBehavior::Immediate)?;
                let end = {
                    use rusqlite::OptionalExtension as _;
                    tx.query_row(END, [], |r| Ok((r.get(0)?, r.get(1)?))).optional()?
                };
                {
                    let mut q = tx.prepare(&insert.replace('$', "?"))?;
                    for r in chained(relay, end, events, mac) {
                        q.execute(rusqlite::params![r.seq, r.relay, r.at, r.kind, r.actor, r.owner, r.session, r.computer, r.body, r.prev, r.mac])?;
                    }
                }
                tx.commit()
            }),
            Engine::Postgres(pool) => {
                let mut client = pool.get().await?;
                let tx = client.transaction().await?;
                tx.execute("SELECT pg_advisory_xact_lock($1)", &[&AUDIT_LOCK]).await?;
                let end = tx.query_opt(END, &[]).await?.map(|r| Ok::<_, tokio_postgres::Error>((r.try_get(0)?, r.try_get(1)?))).transpose()?;
                let q = tx.prepare(&insert).await?;
                for r in chained(relay, end, events, mac) {
                    tx.execute(&q, &[&r.seq, &r.relay, &r.at, &r.kind, &r.actor, &r.owner, &r.session, &r.computer, &r.body, &r.prev, &r.mac]).await?;
                }
                tx.commit().await?;
                Ok(())
            }
        }
    }

    /// Up to `limit` records after `after_seq` that `filter` lets through, in chain order.
    pub async fn audit_page(&self, filter: &AuditFilter, after_seq: i64, limit: i64) -> Result<Vec<Record>, StoreError> {
        // Parameters: $1 after_seq, then the numbers, then the texts (all numbers come before any text).
        let mut conditions = vec!["seq > $1".to_owned()];
        let mut numbers: Vec<i64> = vec![after_seq];
        let mut texts: Vec<String> = Vec::new();
        for (sql, value) in [("at >= ", filter.since), ("at < ", filter.until), ("session = ", filter.session.as_ref().map(|(_, id)| *id))] {
            if let Some(value) = value {
                numbers.push(value);
                conditions.push(format!("{sql}${}", numbers.len()));
            }
        }
        let mut text = |conditions: &mut Vec<String>, sql: &str, value: &str| {
            texts.push(value.to_owned());
            let n = numbers.len() + texts.len();
            conditions.push(sql.replace('?', &format!("${n}")));
        };
        if let Some((owner, _)) = &filter.session {
            text(&mut conditions, "owner = ?", owner);
        }
        if let Some(user) = &filter.user {
            text(&mut conditions, "(actor = ? OR owner = ?)", user);
        }
        if let Some(computer) = &filter.computer {
            text(&mut conditions, "LOWER(computer) = LOWER(?)", computer);
        }
        if !filter.kinds.is_empty() {
            let marks: Vec<String> = filter
                .kinds
                .iter()
                .map(|k| {
                    texts.push(k.clone());
                    format!("${}", numbers.len() + texts.len())
                })
                .collect();
            conditions.push(format!("kind IN ({})", marks.join(", ")));
        }
        let sql = format!("SELECT {COLUMNS} FROM audit_records WHERE {} ORDER BY seq LIMIT {}", conditions.join(" AND "), limit.max(1));
        match &self.engine {
            Engine::Sqlite { db, .. } => Store::sqlite(db, |db| {
                let mut q = db.prepare(&sql.replace('$', "?"))?;
                let mut params: Vec<&dyn rusqlite::ToSql> = numbers.iter().map(|n| n as &dyn rusqlite::ToSql).collect();
                params.extend(texts.iter().map(|t| t as &dyn rusqlite::ToSql));
                q.query_map(params.as_slice(), record_sqlite)?.collect()
            }),
            Engine::Postgres(pool) => {
                let mut params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = numbers.iter().map(|n| n as &(dyn tokio_postgres::types::ToSql + Sync)).collect();
                params.extend(texts.iter().map(|t| t as &(dyn tokio_postgres::types::ToSql + Sync)));
                let rows = pool.get().await?.query(&sql, &params).await?;
                Ok(rows.iter().map(record_pg).collect::<Result<Vec<_>, _>>()?)
            }
        }
    }

    /// Removes the records older than `before` (ms), but never the last one: the number and MAC of the last removed,
    /// for the retention record that must follow (none: nothing was old enough).
    pub async fn prune_audit(&self, before: i64) -> Result<Option<(u64, i64, String)>, StoreError> {
        const CUT: &str = "SELECT seq, mac FROM audit_records WHERE at < $1 AND seq < (SELECT MAX(seq) FROM audit_records) ORDER BY seq DESC LIMIT 1";
        const COUNT: &str = "DELETE FROM audit_records WHERE seq <= $1";
        match &self.engine {
            Engine::Sqlite { db, .. } => Store::sqlite(db, |db| {
                use rusqlite::OptionalExtension as _;
                let tx = rusqlite::Transaction::new_unchecked(db, rusqlite::TransactionBehavior::Immediate)?;
                let Some((seq, mac)) = tx.query_row(&CUT.replace('$', "?"), [before], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?))).optional()? else { return Ok(None) };
                let removed = tx.execute(&COUNT.replace('$', "?"), [seq])?;
                tx.commit()?;
                Ok(Some((removed as u64, seq, mac)))
            }),
            Engine::Postgres(pool) => {
                let mut client = pool.get().await?;
                let tx = client.transaction().await?;
                tx.execute("SELECT pg_advisory_xact_lock($1)", &[&AUDIT_LOCK]).await?;
                let Some(row) = tx.query_opt(CUT, &[&before]).await? else { return Ok(None) };
                let (seq, mac): (i64, String) = (row.try_get(0)?, row.try_get(1)?);
                let removed = tx.execute(COUNT, &[&seq]).await?;
                tx.commit().await?;
                Ok(Some((removed, seq, mac)))
            }
        }
    }
}
