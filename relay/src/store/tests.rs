//! The store's cases, written once and run on both engines: SQLite in memory, and PostgreSQL in a database of the
//! test's own on the server `$PSGATE_TEST_POSTGRES` names (`scripts/postgres.sh` starts one and prints it).

use super::*;

/// The variable naming the PostgreSQL server for the tests (a database there the tests may make databases from).
const TEST_POSTGRES: &str = "PSGATE_TEST_POSTGRES";

/// `url` with its database replaced by `name`.
fn with_database(url: &str, name: &str) -> String {
    let (main, query) = url.split_once('?').map_or((url, String::new()), |(m, q)| (m, format!("?{q}")));
    let after_scheme = main.find("://").map_or(0, |i| i + 3);
    let base = main[after_scheme..].find('/').map_or(main, |i| &main[..after_scheme + i]);
    format!("{base}/{name}{query}")
}

/// A database of the test's own on the test server: made afresh (named after the test and this process), dropped
/// after the test even when it fails.
struct PgDatabase {
    admin_url: String,
    name: String,
    url: String,
}

impl PgDatabase {
    async fn admin(&self) -> tokio_postgres::Client {
        let (client, connection) = tokio_postgres::connect(&self.admin_url, tokio_postgres::NoTls).await.unwrap_or_else(|e| panic!("connecting to ${TEST_POSTGRES} ({}): {e}", redacted(&self.admin_url)));
        tokio::spawn(connection);
        client
    }

    async fn create(test: &str) -> PgDatabase {
        let admin_url = std::env::var(TEST_POSTGRES).unwrap_or_else(|_| {
            panic!("{TEST_POSTGRES} is not set: the PostgreSQL variants of the store tests need a server; run `eval \"$(scripts/postgres.sh)\"` (it starts a throwaway one and prints the variable), then the tests again")
        });
        let mut name: String = format!("psgate_t{}_{test}", std::process::id()).chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '_' }).collect();
        name.truncate(63);
        let db = PgDatabase { url: with_database(&admin_url, &name), admin_url, name };
        let admin = db.admin().await;
        // Left by an earlier process of the same id that died in the middle.
        admin.batch_execute(&format!("DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)", db.name)).await.expect("dropping a leftover test database");
        admin.batch_execute(&format!("CREATE DATABASE \"{}\"", db.name)).await.expect("creating the test's database");
        db
    }

    async fn drop_database(self) {
        let admin = self.admin().await;
        admin.batch_execute(&format!("DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)", self.name)).await.expect("dropping the test's database");
    }

    /// Runs `test` on this database, then drops it (after a failure too), and fails as `test` did.
    async fn run<F: std::future::Future<Output = ()> + Send + 'static>(self, test: impl FnOnce(String) -> F) {
        let outcome = tokio::spawn(test(self.url.clone())).await;
        self.drop_database().await;
        if let Err(e) = outcome {
            std::panic::resume_unwind(e.into_panic());
        }
    }
}

/// A `#[tokio::test]` per engine for each store case (`async fn case(store: &Store)`): `case::sqlite` on SQLite in
/// memory, `case::postgres` on a PostgreSQL database of its own.
macro_rules! on_both_engines {
    ($($case:ident),* $(,)?) => {$(
        mod $case {
            #[tokio::test]
            async fn sqlite() {
                let store = super::Store::in_memory().expect("db");
                super::$case(&store).await;
            }

            #[tokio::test]
            async fn postgres() {
                super::PgDatabase::create(stringify!($case)).await.run(|url| async move {
                    let store = super::Store::open_url(&url).await.expect("the PostgreSQL store opens and migrates");
                    assert!(store.is_postgres());
                    super::$case(&store).await;
                }).await;
            }
        }
    )*};
}

on_both_engines!(max_concurrent_users_counts_users_holding_sessions_anywhere, users_have_one_home_that_moves_with_its_relays_sessions, users_and_passwords, logins_are_kept_touched_and_purged, admins, the_audit_is_one_chain_that_tells_what_was_removed_or_altered, winrm_sessions_are_kept_updated_and_forgotten, relays_register_heartbeat_and_hand_their_sessions_over, a_store_that_answers_pings);

async fn relays_register_heartbeat_and_hand_their_sessions_over(store: &Store) {
    store.register_relay("a", "http://10.0.0.1:8080", 1_000).await.expect("a");
    store.register_relay("b", "http://10.0.0.2:8080", 1_500).await.expect("b");
    assert!(store.heartbeat("a", 2_000).await.expect("beat"));
    let relays = store.relays().await.expect("relays");
    assert_eq!(relays.iter().map(|r| (r.id.as_str(), r.heartbeat, r.stopped)).collect::<Vec<_>>(), [("a", 2_000, None), ("b", 1_500, None)]);
    assert!(!relays[1].gone(9_000, 10_000) && relays[1].gone(12_000, 10_000), "silent for more than dead_after");
    let row = |key: &str, relay: Option<&str>| WinrmSessionRow { key: key.into(), owner: "alice".into(), target: "{}".into(), shell: "{}".into(), sealed_password: None, idle_since: None, relay: relay.map(str::to_owned), resume: key == "A1", session_id: None };
    for r in [row("A1", Some("a")), row("A2", Some("a")), row("B1", Some("b")), row("OLD", None)] {
        store.put_winrm_session(&r).await.expect("put");
    }
    let keys = |rows: Vec<WinrmSessionRow>| rows.into_iter().map(|r| r.key).collect::<Vec<_>>();
    let mut mine = keys(store.winrm_sessions_of("b").await.expect("b's"));
    mine.sort();
    assert_eq!(mine, ["B1", "OLD"], "b's own, and those kept before relays had ids");
    // a stops cleanly: b claims its sessions; a second claim (another survivor, later) gets nothing.
    store.relay_stopped("a", 3_000).await.expect("stopped");
    assert!(!store.heartbeat("a", 3_100).await.expect("beat"), "a stopped relay's heartbeat is refused");
    assert!(store.relays().await.expect("relays")[0].gone(3_100, 10_000));
    let mut claimed = keys(store.claim_relay("a", "b", 3_200).await.expect("claim").winrm);
    claimed.sort();
    assert_eq!(claimed, ["A1", "A2"]);
    assert_eq!(store.holders().await.expect("holders"), ["b"]);
    assert!(store.winrm_sessions().await.expect("all").iter().all(|r| r.resume == (r.key == "A1")), "resume is kept");
    assert!(store.claim_relay("a", "c", 3_300).await.expect("claim").winrm.is_empty(), "each session moves once");
    assert!(store.winrm_sessions().await.expect("all").iter().filter(|r| r.key.starts_with('A')).all(|r| r.relay.as_deref() == Some("b")));
    // A restart registers the relay again: alive, not stopped.
    store.register_relay("a", "http://10.0.0.1:8080", 4_000).await.expect("again");
    assert!(store.heartbeat("a", 4_100).await.expect("beat"));
    // psgate drain: asked of a running relay (not of one unknown or stopped); registering again clears it.
    assert!(store.request_drain("a").await.expect("drain") && !store.request_drain("nobody").await.expect("drain"));
    assert!(store.relays().await.expect("relays").iter().find(|r| r.id == "a").is_some_and(|r| r.drain));
    store.register_relay("a", "http://10.0.0.1:8080", 5_000).await.expect("again");
    assert!(!store.relays().await.expect("relays")[0].drain);
}

/// Each user is served by one relay, their home: the first relay to ask becomes it; a survivor claiming a relay gone
/// takes its users' homes with its sessions, in one claim.
async fn users_have_one_home_that_moves_with_its_relays_sessions(store: &Store) {
    store.register_relay("a", "http://10.0.0.1:8080", 1_000).await.expect("a");
    store.register_relay("b", "http://10.0.0.2:8080", 1_000).await.expect("b");
    let (home, row) = store.home("alice", "a", 1_100).await.expect("home");
    assert_eq!((home.as_str(), row.map(|r| r.address)), ("a", Some("http://10.0.0.1:8080".to_owned())));
    // b asks later (the user's second tab reached b): still a.
    assert_eq!(store.home("alice", "b", 1_200).await.expect("home").0, "a");
    assert_eq!(store.home("bob", "b", 1_200).await.expect("home").0, "b");
    // A home on a relay never registered has no row (the caller treats it as gone).
    assert_eq!(store.home("carol", "ghost", 1_200).await.expect("home"), ("ghost".to_owned(), None));
    let mut holders = store.holders().await.expect("holders");
    holders.sort();
    assert_eq!(holders, ["a", "b", "ghost"], "a relay that is only a home must be taken over too");
    let row = WinrmSessionRow { key: "S1".into(), owner: "alice".into(), target: "{}".into(), shell: "{}".into(), sealed_password: None, idle_since: None, relay: Some("a".into()), resume: true, session_id: Some(3) };
    store.put_winrm_session(&row).await.expect("put");
    // And a session that cannot move (SSH): kept, claimed with the rest, forgotten when its user removes it.
    let pinned = PinnedRow { key: "P1".into(), relay: "a".into(), owner: "alice".into(), target: "{}".into(), sealed_password: Some(vec![1, 2, 3]), opened: 1_500, session_id: Some(4) };
    store.put_pinned(&pinned).await.expect("pin");
    store.put_pinned(&PinnedRow { key: "P2".into(), relay: "b".into(), ..pinned.clone() }).await.expect("pin");
    assert_eq!(store.pinned_of("a").await.expect("a's"), std::slice::from_ref(&pinned));
    let claimed = store.claim_relay("a", "b", 2_000).await.expect("claim");
    assert_eq!(claimed.winrm.len(), 1);
    assert_eq!(claimed.pinned, [PinnedRow { relay: "b".into(), ..pinned }]);
    assert!(store.pinned_of("a").await.expect("a's").is_empty() && store.pinned_of("b").await.expect("b's").len() == 2);
    store.remove_pinned("P1").await.expect("forget");
    assert_eq!(store.pinned_of("b").await.expect("b's").iter().map(|r| r.key.as_str()).collect::<Vec<_>>(), ["P2"]);
    assert_eq!(store.home("alice", "a", 2_100).await.expect("home").0, "b", "the home moved with the session");
    assert!(store.claim_relay("a", "c", 2_200).await.expect("claim").winrm.is_empty());
    assert_eq!(store.home("alice", "c", 2_300).await.expect("home").0, "b", "and only once");
}

/// MaxConcurrentUsers across relays: a user is admitted while fewer than `max` users hold sessions (or when they hold
/// some already), and leaves the count when they hold none.
async fn max_concurrent_users_counts_users_holding_sessions_anywhere(store: &Store) {
    assert!(store.admit_user("alice", "a", 2, 1_000).await.expect("admit"));
    assert!(store.admit_user("bob", "b", 2, 1_000).await.expect("admit"), "a second user, on another relay");
    assert!(!store.admit_user("carol", "a", 2, 1_000).await.expect("admit"), "a third: refused");
    assert!(store.admit_user("alice", "a", 2, 1_000).await.expect("admit"), "a user holding sessions already: always");
    assert_eq!(store.home("carol", "b", 1_100).await.expect("home").0, "a", "the refused user still has a home");
    store.set_user_active("bob", false).await.expect("inactive");
    assert!(store.admit_user("carol", "a", 2, 1_200).await.expect("admit"), "bob's slot");
    assert!(!store.admit_user("bob", "b", 2, 1_300).await.expect("admit"));
}

/// `/readyz`'s check (its failure, a PostgreSQL server gone, is tests/tests/ops.rs's).
async fn a_store_that_answers_pings(store: &Store) {
    store.ping().await.expect("the store answers");
    store.ping().await.expect("again, on a pooled connection");
}

async fn users_and_passwords(store: &Store) {
    store.set_user("alice", "correct horse").await.expect("add");
    assert!(store.verify("alice", "correct horse").await.expect("verify"));
    assert!(!store.verify("alice", "wrong").await.expect("verify"));
    assert!(!store.verify("bob", "correct horse").await.expect("verify"));
    store.set_user("alice", "new").await.expect("change");
    assert!(!store.verify("alice", "correct horse").await.expect("verify"));
    assert!(store.verify("alice", "new").await.expect("verify"));
    assert!(store.set_user("a b", "x").await.is_err());
    assert!(store.set_user("carol", "").await.is_err());
    let stored = store.password_hash("alice").await.expect("read").expect("a hash");
    assert!(stored.starts_with("$argon2id$"), "{stored}");
}

async fn logins_are_kept_touched_and_purged(store: &Store) {
    store.set_user("alice", "pw").await.expect("add");
    store.add_login("h1", "alice", 1_000, 100_000).await.expect("login");
    store.add_login("h2", "alice", 1_000, 100_000).await.expect("login");
    assert_eq!(store.login("h1").await.expect("read"), Some(LoginRow { user: "alice".into(), last_seen: 1_000, expires: 100_000 }));
    store.touch_login("h1", 5_000).await.expect("touch");
    store.touch_login("h1", 4_000).await.expect("an older touch is ignored");
    assert_eq!(store.login("h1").await.expect("read").map(|l| l.last_seen), Some(5_000));
    assert_eq!(store.purge_logins(6_000, 2_000).await.expect("purge"), 1, "h2 idle since 1000");
    assert!(store.login("h2").await.expect("read").is_none());
    assert_eq!(store.purge_logins(100_000, 0).await.expect("purge"), 1, "h1 expired");
    store.add_login("h3", "alice", 1_000, 100_000).await.expect("login");
    store.add_login("h3", "alice", 2_000, 200_000).await.expect("the same token again replaces it");
    assert_eq!(store.login("h3").await.expect("read"), Some(LoginRow { user: "alice".into(), last_seen: 2_000, expires: 200_000 }));
    assert!(store.remove_login("h3").await.expect("remove"));
    assert!(!store.remove_login("h3").await.expect("remove"));
    store.add_login("h4", "alice", 1_000, 100_000).await.expect("login");
    store.set_user("alice", "new").await.expect("change");
    assert!(store.login("h4").await.expect("read").is_none(), "a new password ends the logins");
}

async fn admins(store: &Store) {
    store.set_user("root", "pw").await.expect("add");
    assert!(!store.is_admin("root").await.expect("read"), "nobody is an admin by default");
    assert!(store.set_admin("root", true).await.expect("set"));
    assert!(!store.set_admin("nobody", true).await.expect("set"), "an unknown user is not made one");
    assert!(store.is_admin("root").await.expect("read") && !store.is_admin("nobody").await.expect("read"));
    store.set_user("root", "new").await.expect("a new password");
    assert!(store.is_admin("root").await.expect("read"), "a new password keeps the flag");
    assert!(store.set_admin("root", false).await.expect("unset") && !store.is_admin("root").await.expect("read"));
}

/// Any statement, on either engine (the tests' tampering).
async fn exec(store: &Store, sql: &str) {
    match &store.engine {
        Engine::Sqlite { db, .. } => {
            Store::sqlite(db, |db| db.execute_batch(sql)).expect("sql");
        }
        Engine::Postgres(pool) => {
            pool.get().await.expect("client").batch_execute(sql).await.expect("sql");
        }
    }
}

/// The audit chain as `psgate audit verify` reads it.
async fn verified(store: &Store, key: &crate::seal::AuditKey) -> (u64, Vec<crate::audit::Problem>) {
    let mut verifier = crate::audit::Verifier::default();
    let mut after = 0;
    loop {
        let page = store.audit_page(&AuditFilter::default(), after, 7).await.expect("page");
        let Some(last) = page.last() else { break };
        after = last.seq;
        for r in &page {
            verifier.check(key, r);
        }
    }
    verifier.finish()
}

async fn the_audit_is_one_chain_that_tells_what_was_removed_or_altered(store: &Store) {
    use crate::audit::{Event, Kind, Problem};
    let key = crate::seal::Sealer::ephemeral().expect("key").audit_key();
    let mac = |input: &str| key.mac(input.as_bytes());
    let event = |i: i64, actor: &str| {
        let mut e = Event::new(Kind::Pipeline, actor).on(actor, 1, "srv02").with(serde_json::json!({"command": format!("Get-Item {i}")}));
        e.at = 1_000 + i;
        e
    };
    // Two relays appending at once make one chain: every number once, each record after the one before.
    let batches = |relay: &'static str| {
        let mac = &mac;
        async move {
            for b in 0..10 {
                let events: Vec<Event> = (0..5).map(|i| event(b * 5 + i, if relay == "a" { "alice" } else { "bob" })).collect();
                store.append_audit(relay, &events, mac).await.expect("appended");
            }
        }
    };
    futures_util::future::join(batches("a"), batches("b")).await;
    assert_eq!(verified(store, &key).await, (100, vec![]));
    let all = store.audit_page(&AuditFilter::default(), 0, 1000).await.expect("all");
    assert_eq!(all.iter().map(|r| r.seq).collect::<Vec<_>>(), (1..=100).collect::<Vec<_>>());
    // The filters the store applies.
    let bobs = store.audit_page(&AuditFilter { user: Some("bob".into()), since: Some(1_010), ..AuditFilter::default() }, 0, 1000).await.expect("bob's");
    assert_eq!(bobs.len(), 40);
    assert!(bobs.iter().all(|r| r.actor == "bob" && r.at >= 1_010 && r.relay == "b"));
    let one = store.audit_page(&AuditFilter { session: Some(("alice".into(), 1)), computer: Some("SRV02".into()), kinds: vec!["pipeline".into()], ..AuditFilter::default() }, 0, 1000).await.expect("alice's");
    assert_eq!(one.len(), 50);
    // Another key (a forger without the relays' key) sees every record altered.
    let other = crate::seal::Sealer::ephemeral().expect("key").audit_key();
    assert_eq!(verified(store, &other).await.1.len(), 100);

    // Tampering, each kind caught and named.
    exec(store, "DELETE FROM audit_records WHERE seq = 40").await;
    assert_eq!(verified(store, &key).await.1, [Problem::Missing { first: 40, last: 40 }]);
    exec(store, "UPDATE audit_records SET body = REPLACE(body, 'Get-Item', 'Remove-Item') WHERE seq = 8").await;
    exec(store, "UPDATE audit_records SET actor = 'mallory' WHERE seq = 9").await;
    let (_, problems) = verified(store, &key).await;
    assert!(problems.contains(&Problem::Altered { seq: 8 }) && problems.contains(&Problem::Columns { seq: 9 }) && problems.contains(&Problem::Missing { first: 40, last: 40 }), "{problems:?}");
    // A record removed and the rest renumbered: the link breaks where it was.
    exec(store, "DELETE FROM audit_records WHERE seq >= 8 AND seq <= 41; UPDATE audit_records SET seq = seq - 50 WHERE seq >= 60 AND seq <= 62").await;
    let (_, problems) = verified(store, &key).await;
    assert!(problems.iter().any(|p| matches!(p, Problem::Missing { .. })), "{problems:?}");
    // (Records removed from the end, all of them here, are not seen by the chain alone: `psgate audit verify` prints
    // the end it reached, to compare with one noted elsewhere.)
    exec(store, "DELETE FROM audit_records").await;

    // Retention: what it removes is named by the record it appends; the chain left verifies.
    let events: Vec<Event> = (0..20).map(|i| event(i, "alice")).collect();
    store.append_audit("a", &events, &mac).await.expect("appended");
    let (removed, through, through_mac) = store.prune_audit(1_010).await.expect("pruned").expect("some were old");
    assert_eq!((removed, through), (10, 10));
    assert_eq!(verified(store, &key).await.1, [Problem::Missing { first: 1, last: 10 }], "not yet named by a retention record");
    let retention = Event::new(Kind::Retention, "psgate").with(serde_json::json!({"through_seq": through, "through_mac": through_mac}));
    store.append_audit("a", &[retention], &mac).await.expect("appended");
    assert_eq!(verified(store, &key).await, (11, vec![]));
    assert!(store.prune_audit(1).await.expect("none").is_none(), "nothing older");
    // Never the last record: the chain keeps its end.
    let (removed, _, _) = store.prune_audit(i64::MAX).await.expect("pruned").expect("all but the last");
    assert_eq!(removed, 10);
    assert_eq!(store.audit_page(&AuditFilter::default(), 0, 100).await.expect("left").len(), 1);
}

async fn winrm_sessions_are_kept_updated_and_forgotten(store: &Store) {
    assert_eq!(store.winrm_sessions().await.expect("read"), []);
    let a = WinrmSessionRow { key: "AAAA".into(), owner: "alice".into(), target: "{\"computer_name\":\"srv01\"}".into(), shell: "{}".into(), sealed_password: Some(vec![0, 1, 2, 255]), idle_since: None, relay: None, resume: false, session_id: Some(1) };
    let b = WinrmSessionRow { key: "BBBB".into(), owner: "bob".into(), target: "{}".into(), shell: "{\"shell_id\":\"b\"}".into(), sealed_password: None, idle_since: Some(1_700_000_000_123), relay: None, resume: false, session_id: Some(1) };
    store.put_winrm_session(&a).await.expect("put");
    store.put_winrm_session(&b).await.expect("put");
    assert_eq!(store.winrm_sessions().await.expect("read"), [a.clone(), b.clone()]);
    let a2 = WinrmSessionRow { shell: "{\"commands\":[1]}".into(), sealed_password: Some(vec![9; 40]), idle_since: Some(5), ..a.clone() };
    store.put_winrm_session(&a2).await.expect("update");
    let b2 = WinrmSessionRow { idle_since: None, ..b.clone() };
    store.put_winrm_session(&b2).await.expect("update");
    let mut kept = store.winrm_sessions().await.expect("read");
    kept.sort_by(|x, y| x.key.cmp(&y.key));
    assert_eq!(kept, [a2, b2.clone()], "updated in place, idle_since set and cleared");
    store.remove_winrm_session("AAAA").await.expect("remove");
    store.remove_winrm_session("AAAA").await.expect("removing again is no error");
    assert_eq!(store.winrm_sessions().await.expect("read"), [b2]);
}

/// Opening the store `url` names again runs no migration twice and keeps the rows (SQLite: a file).
async fn reopened_keeps_its_rows(url: &str) {
    let open = async || Store::open_url(url).await.expect("opened");
    let store = open().await;
    store.set_user("alice", "pw").await.expect("add");
    store.put_winrm_session(&WinrmSessionRow { key: "K".into(), owner: "alice".into(), target: "{}".into(), shell: "{}".into(), sealed_password: None, idle_since: Some(7), relay: None, resume: false, session_id: None }).await.expect("put");
    drop(store);
    let store = open().await;
    assert!(store.verify("alice", "pw").await.expect("verify"));
    assert_eq!(store.winrm_sessions().await.expect("read").iter().map(|r| r.idle_since).collect::<Vec<_>>(), [Some(7)]);
}

#[tokio::test]
async fn a_reopened_sqlite_store_keeps_its_rows() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("psgate.db");
    reopened_keeps_its_rows(path.to_str().expect("a UTF-8 path")).await;
}

#[tokio::test]
async fn a_reopened_postgres_store_keeps_its_rows_and_relays_starting_together_migrate_once() {
    PgDatabase::create("reopened").await
        .run(|url| async move {
            // Three relays at once on the new database: the advisory lock lets one migrate it.
            let (a, b, c) = tokio::join!(Store::open_url(&url), Store::open_url(&url), Store::open_url(&url));
            drop((a.expect("opened"), b.expect("opened"), c.expect("opened")));
            reopened_keeps_its_rows(&url).await;
        })
        .await;
}

#[test]
fn a_database_from_before_the_admin_flag_gets_it_and_admins_are_audited() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("old.db");
    {
        let old = Connection::open(&path).expect("open");
        old.execute_batch(
            "CREATE TABLE users (name TEXT PRIMARY KEY NOT NULL, password_hash TEXT NOT NULL, created TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP);
             INSERT INTO users (name, password_hash) VALUES ('root', 'x');",
        )
        .expect("the old schema");
    }
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let store = Store::open(&path).expect("opened and migrated");
    rt.block_on(async {
        assert!(!store.is_admin("root").await.expect("read"), "nobody is an admin by default");
        assert!(store.set_admin("root", true).await.expect("set"));
    });
    drop(store);
    let store = Store::open(&path).expect("opened again");
    rt.block_on(async {
        assert!(store.is_admin("root").await.expect("kept"));
        assert!(store.set_admin("root", false).await.expect("unset"));
        admins(&store).await;
    });
}

#[tokio::test]
async fn a_database_from_before_versioned_migrations_is_taken_over() {
    // The schema the last psgate before migrations made (its admin column added by ALTER TABLE).
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("psgate.db");
    {
        let old = Connection::open(&path).expect("open");
        old.execute_batch(
            "CREATE TABLE users (name TEXT PRIMARY KEY NOT NULL, password_hash TEXT NOT NULL, created TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP);
             CREATE TABLE logins (token_hash TEXT PRIMARY KEY NOT NULL, user TEXT NOT NULL, created INTEGER NOT NULL, last_seen INTEGER NOT NULL, expires INTEGER NOT NULL);
             CREATE INDEX logins_user ON logins (user);
             CREATE TABLE winrm_sessions (key TEXT PRIMARY KEY NOT NULL, owner TEXT NOT NULL, target TEXT NOT NULL, shell TEXT NOT NULL, sealed_password BLOB, updated INTEGER NOT NULL);
             CREATE TABLE audit (id INTEGER PRIMARY KEY, time INTEGER NOT NULL, actor TEXT NOT NULL, action TEXT NOT NULL, subject TEXT NOT NULL, detail TEXT NOT NULL);
             ALTER TABLE users ADD COLUMN admin INTEGER NOT NULL DEFAULT 0;
             INSERT INTO users (name, password_hash, admin) VALUES ('root', 'x', 1);
             INSERT INTO logins VALUES ('h', 'root', 1, 2, 3);
             INSERT INTO winrm_sessions VALUES ('K', 'root', '{}', '{}', x'0102', 10);",
        )
        .expect("the old schema");
    }
    let store = Store::open(&path).expect("opened and migrated");
    assert!(store.is_admin("root").await.expect("kept"));
    assert_eq!(store.login("h").await.expect("kept"), Some(LoginRow { user: "root".into(), last_seen: 2, expires: 3 }));
    assert_eq!(
        store.winrm_sessions().await.expect("kept"),
        [WinrmSessionRow { key: "K".into(), owner: "root".into(), target: "{}".into(), shell: "{}".into(), sealed_password: Some(vec![1, 2]), idle_since: None, relay: None, resume: false, session_id: None }]
    );
    drop(store);
    Store::open(&path).expect("opened again: nothing left to migrate");
}

#[test]
fn a_postgres_url_selects_postgres_and_is_shown_without_its_password() {
    assert!(Database::from_url("postgres://psgate:s3cret@db.contoso.com/psgate").is_postgres());
    assert!(Database::from_url("PostgreSQL://db/psgate").is_postgres());
    assert_eq!(Database::from_url("/var/lib/psgate/psgate.db"), Database::Sqlite("/var/lib/psgate/psgate.db".into()));
    assert_eq!(Database::from_url("postgres.db"), Database::Sqlite("postgres.db".into()));
    let db = Database::from_url("postgres://psgate:s3cret@db.contoso.com:5432/psgate?sslmode=disable&password=other");
    for shown in [db.to_string(), format!("{db:?}")] {
        assert!(!shown.contains("s3cret") && !shown.contains("other"), "{shown}");
        assert!(shown.contains("psgate:***@db.contoso.com:5432/psgate?sslmode=disable&password=***"), "{shown}");
    }
    assert_eq!(with_database("postgres://u@127.0.0.1:55432/psgate_test?sslmode=disable", "t1"), "postgres://u@127.0.0.1:55432/t1?sslmode=disable");
    assert_eq!(with_database("postgres://u@127.0.0.1:55432", "t1"), "postgres://u@127.0.0.1:55432/t1");
}
