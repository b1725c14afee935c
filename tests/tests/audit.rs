//! The audit trail (issue 20) end to end: a relay on an SQLite file records logins, sessions, pipelines with their
//! objects, host prompts (secrets redacted), quota refusals and admin actions; `psgate audit` (the real binary)
//! verifies the chain, finds a command by its text and by its result, exports JSON lines, asciicast v3 and a
//! JEA-style transcript, and catches a deleted and an edited record.

mod at_prompt;

use std::sync::Arc;

use psgate_relay::config::Config;
use psgate_relay::store::Store;
use psgate_shared::api::{HostAnswer, PipelineState, ServerMessage};
use psgate_tests::relay::{Client, relay_on};
use serde_json::json;

const CREDENTIAL_PASSWORD: &str = "Cred-P@ss-91";
const SECURE_TEXT: &str = "Typed-S3cret-77";

/// The log, kept in memory.
#[derive(Clone, Default)]
struct Log(Arc<std::sync::Mutex<Vec<u8>>>);

impl Log {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner)).into_owned()
    }
}

impl std::io::Write for Log {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner).extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Log {
    type Writer = Log;

    fn make_writer(&'a self) -> Log {
        self.clone()
    }
}

/// `psgate audit <args>` on the configuration `config`: exit status and standard output.
async fn psgate_audit(config: &std::path::Path, args: &[&str]) -> (i32, String) {
    let out = tokio::process::Command::new(psgate_tests::site::psgate_bin())
        .arg("audit")
        .args(args)
        .arg("--config")
        .arg(config)
        .output()
        .await
        .expect("psgate runs");
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_records_what_matters_and_psgate_audit_reads_verifies_and_exports_it() {
    // The relay's log at debug, kept to be scanned for the passwords (the file's other test logs there too).
    let log = Log::default();
    let _ = tracing_subscriber::fmt().with_env_filter("psgate_relay=debug").with_writer(log.clone()).try_init();
    let dir = tempfile::tempdir().expect("a folder");
    let db = dir.path().join("psgate.db");
    let key = dir.path().join("seal.key");
    let config = dir.path().join("psgate.toml");
    std::fs::write(&config, format!("database = {:?}\nseal_key_file = {:?}\n", db.display().to_string(), key.display().to_string())).expect("config");
    let store = Arc::new(Store::open(&db).expect("the store"));
    for u in ["alice", "root"] {
        store.set_user(u, &format!("{u}-pw")).await.expect("user");
    }
    store.set_admin("root", true).await.expect("admin");
    let key_file = key.clone();
    let relay = relay_on(store.clone(), move |c: &mut Config| {
        c.seal_key_file = Some(key_file);
        c.quotas.max_shells_per_user = Some(1);
        c.audit.max_pipeline_kb = 8;
    })
    .await;

    let mut c = Client::connect(&relay, "alice").await;
    let s = c.new_session().await;
    // A command and its objects.
    let p = c.run(s, "Get-Service -Name Spooler, BITS").await;
    let events = c.until_done(p).await;
    assert_eq!(psgate_tests::relay::outputs(&events).len(), 2);
    // Host prompts: a SecureString typed, and a credential at psgate's prompt.
    let p = c.run(s, "Read-Host -AsSecureString").await;
    let call = c
        .until(|m| match m {
            ServerMessage::HostCall { pipeline, call_id, .. } if *pipeline == p => Some(*call_id),
            _ => None,
        })
        .await;
    c.send(json!({"type": "host_response", "session": s, "pipeline": p, "call_id": call, "answer": {"kind": "secure", "text": SECURE_TEXT}})).await;
    c.until_done(p).await;
    let shown = at_prompt::prompt_with(&mut c, "$cred = Get-Credential", vec![HostAnswer::Credential { user: "contoso\\ada".into(), password: CREDENTIAL_PASSWORD.into() }]).await;
    assert_eq!(shown.state, PipelineState::Completed, "{shown:?}");
    // Over the cap (8 KiB): the first objects, the count, the last.
    let p = c.run(s, "Get-Objects -Count 300").await;
    c.until_done(p).await;
    // A quota refusal (one shell each), and an admin closing alice's session.
    let shown = at_prompt::prompt(&mut c, "New-PSSession -ComputerName localhost").await;
    assert_eq!(shown.errors.len(), 1, "{shown:?}");
    let mut root = Client::connect(&relay, "root").await;
    at_prompt::prompt(&mut root, &format!("Remove-PSGateSession -User alice -Id {}", s.0)).await;
    relay.manager.flush_audit().await;

    // Every kind of record, in order.
    let (status, listing) = psgate_audit(&config, &["search"]).await;
    assert_eq!(status, 0, "{listing}");
    let kinds: Vec<&str> = listing.split_whitespace().collect();
    for kind in ["login", "session_opened", "pipeline", "quota_refused", "admin", "session_closed"] {
        assert!(kinds.contains(&kind), "{kind} in {listing}");
    }
    assert!(listing.lines().any(|l| l.contains(" root ") && l.contains("session_closed")), "closed by the admin: {listing}");
    let (status, json_lines) = psgate_audit(&config, &["search", "--json", "--kind", "pipeline"]).await;
    assert_eq!(status, 0, "{json_lines}");
    let pipelines: Vec<serde_json::Value> = json_lines.lines().filter(|l| l.starts_with('{')).map(|l| serde_json::from_str(l).expect("JSON")).collect();
    let command = |p: &serde_json::Value| p["event"]["data"]["command"].as_str().unwrap_or_default().to_owned();
    let get_service = pipelines.iter().find(|p| command(p) == "Get-Service -Name Spooler, BITS").expect("recorded");
    assert_eq!((get_service["event"]["actor"].as_str(), get_service["event"]["data"]["state"].as_str(), get_service["event"]["data"]["objects"].as_u64()), (Some("alice"), Some("completed"), Some(2)));
    let big = pipelines.iter().find(|p| command(p) == "Get-Objects -Count 300").expect("recorded");
    let kept = big["event"]["data"]["events"].as_array().map_or(0, Vec::len) as u64;
    assert_eq!((big["event"]["data"]["objects"].as_u64(), kept + big["event"]["data"]["omitted"].as_u64().unwrap_or(0)), (Some(300), 300), "{}", big["event"]["data"]["omitted"]);
    assert!(kept > 0 && big["event"]["data"]["last"]["output"].is_string(), "the first objects and the last");
    let read_host = pipelines.iter().find(|p| command(p) == "Read-Host -AsSecureString").expect("recorded");
    let answer = read_host["event"]["data"]["events"].as_array().and_then(|e| e.iter().find(|e| e["type"] == "host_answer")).expect("the answer recorded");
    assert_eq!(answer["answer"]["secure"], "<redacted>");

    // By command text, and by result: which sessions returned a service named Spooler.
    let (_, found) = psgate_audit(&config, &["search", "--command", "get-serv"]).await;
    assert!(found.contains("Get-Service -Name Spooler, BITS") && found.contains("1 records"), "{found}");
    let (_, found) = psgate_audit(&config, &["search", "--result-type", "ServiceController", "--result", "Name=Spooler"]).await;
    assert!(found.contains(&format!("alice/{}", s.0)) && found.contains("1 records"), "{found}");
    let (_, found) = psgate_audit(&config, &["search", "--result", "Name=NoSuchService"]).await;
    assert!(found.contains("0 records"), "{found}");

    // Exports, read back by their own rules.
    let session = format!("alice/{}", s.0);
    let (status, cast) = psgate_audit(&config, &["export", "--format", "asciicast", "--session", &session]).await;
    assert_eq!(status, 0, "{cast}");
    let mut lines = cast.lines();
    let header: serde_json::Value = serde_json::from_str(lines.next().expect("a header")).expect("JSON");
    assert_eq!((header["version"].as_u64(), header["term"]["cols"].is_u64(), header["term"]["rows"].is_u64()), (Some(3), true, true));
    let events: Vec<(f64, String, String)> = lines.map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}"))).collect();
    assert!(events.iter().all(|(interval, code, _)| *interval >= 0.0 && ["o", "m"].contains(&code.as_str())), "intervals from the event before, output or marker");
    let markers: Vec<&str> = events.iter().filter(|(_, code, _)| code == "m").map(|(_, _, d)| d.as_str()).collect();
    assert_eq!(markers, ["Get-Service -Name Spooler, BITS", "Read-Host -AsSecureString", "Get-Objects -Count 300"]);
    let screen: String = events.iter().filter(|(_, code, _)| code == "o").map(|(_, _, d)| d.as_str()).collect();
    assert!(screen.contains("[localhost]: PS> Get-Service -Name Spooler, BITS\r\n") && screen.contains("Spooler"), "{screen}");
    let (status, transcript) = psgate_audit(&config, &["export", "--format", "transcript", "--session", &session]).await;
    assert_eq!(status, 0, "{transcript}");
    assert!(transcript.starts_with("**********************\nPowerShell transcript start\nStart time: "), "{transcript}");
    assert!(transcript.contains("PS>CommandInvocation(Get-Service): \"Get-Service\"\n>> ParameterBinding(Get-Service): name=\"Name\"; value=\"Spooler BITS\"\n"), "{transcript}");
    assert!(transcript.trim_end().ends_with("**********************") && transcript.contains("PowerShell transcript end\nEnd time: "), "{transcript}");
    let (_, jsonl) = psgate_audit(&config, &["export", "--format", "jsonl"]).await;
    let records: Vec<serde_json::Value> = jsonl.lines().map(|l| serde_json::from_str(l).expect("JSON")).collect();
    assert!(records.windows(2).all(|w| w[1]["seq"].as_i64() == w[0]["seq"].as_i64().map(|s| s + 1) && w[1]["prev"] == w[0]["mac"]), "one chain");

    // Nothing secret in the database.
    let mut bytes = std::fs::read(&db).expect("the database");
    bytes.extend(std::fs::read(dir.path().join("psgate.db-wal")).unwrap_or_default());
    let has = |needle: &str| bytes.windows(needle.len()).any(|w| w == needle.as_bytes());
    assert!(!has(CREDENTIAL_PASSWORD) && !has("alice-pw"), "a password in the database");
    let logged = log.text();
    assert!(logged.contains("login") && logged.contains("session opened"), "the log was kept");
    assert!(!logged.contains(CREDENTIAL_PASSWORD) && !logged.contains(SECURE_TEXT) && !logged.contains("alice-pw"), "a secret in the log");

    // The same over HTTP, for an admin's page: by result, one session's timeline, the chain's state.
    let as_user = |name: &'static str| {
        let addr = relay.addr;
        async move { psgate_tests::relay::login_at(addr, name, &format!("{name}-pw")).await }
    };
    let (alice_cookie, root_cookie) = (as_user("alice").await, as_user("root").await);
    let get = |path: String, cookie: String| {
        let addr = relay.addr;
        async move { psgate_tests::relay::get_as(addr, &path, Some(&cookie)).await }
    };
    let (status, _, _) = get("/api/audit?result_type=ServiceController&result=Name%3DSpooler".into(), alice_cookie.clone()).await;
    assert_eq!(status, 403, "alice is no admin");
    let (status, _, body) = get("/api/audit?result_type=ServiceController&result=Name%3DSpooler".into(), root_cookie.clone()).await;
    assert_eq!(status, 200, "{body}");
    let found: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(found["records"].as_array().map(Vec::len), Some(1), "{found}");
    let event = &found["records"][0]["event"];
    assert_eq!((event["data"]["command"].as_str(), event["owner"].as_str(), event["session"].as_u64()), (Some("Get-Service -Name Spooler, BITS"), Some("alice"), Some(s.0)));
    let (_, _, body) = get(format!("/api/audit?owner=alice&session={}&kinds=pipeline&limit=2", s.0), root_cookie.clone()).await;
    let page: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!((page["records"].as_array().map(Vec::len), page["more"].as_bool()), (Some(2), Some(true)), "a page, and more after it");
    let (status, _, _) = get("/api/audit?nonsense=1".into(), root_cookie.clone()).await;
    assert_eq!(status, 400);
    let (_, _, body) = get("/api/audit/verify".into(), root_cookie.clone()).await;
    let verdict: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    assert!(verdict["records"].as_u64().is_some_and(|n| n >= 12) && verdict["problems"].as_array().is_some_and(Vec::is_empty), "{verdict}");

    // The chain verifies, and tampering is caught and named.
    let (status, verdict) = psgate_audit(&config, &["verify"]).await;
    assert_eq!(status, 0, "{verdict}");
    assert!(verdict.contains("the audit chain is intact"), "{verdict}");
    let sql = rusqlite::Connection::open(&db).expect("the database");
    sql.execute("DELETE FROM audit_records WHERE seq = 2", []).expect("delete");
    sql.execute("UPDATE audit_records SET body = REPLACE(body, 'Spooler', 'Spoofer') WHERE kind = 'pipeline' AND body LIKE '%Get-Service%'", []).expect("edit");
    let edited: i64 = sql.query_row("SELECT seq FROM audit_records WHERE body LIKE '%Spoofer%'", [], |r| r.get(0)).expect("edited");
    drop(sql);
    let (status, verdict) = psgate_audit(&config, &["verify"]).await;
    assert_eq!(status, 1, "{verdict}");
    assert!(verdict.contains("record 2 is missing") && verdict.contains(&format!("record {edited} was altered")) && verdict.contains("NOT intact"), "{verdict}");
    let (_, _, body) = get("/api/audit/verify".into(), root_cookie.clone()).await;
    let verdict: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(verdict["problems"], json!(["record 2 is missing", format!("record {edited} was altered: its MAC does not match its contents")]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_removes_old_records_and_the_chain_left_still_verifies() {
    let dir = tempfile::tempdir().expect("a folder");
    let store = Arc::new(Store::open(&dir.path().join("psgate.db")).expect("the store"));
    let key_file = dir.path().join("seal.key");
    let key = psgate_relay::seal::Sealer::load_or_create(&key_file).expect("the key").audit_key();
    // Ten records from ten days ago, five from today.
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("time").as_millis() as i64;
    let events: Vec<psgate_relay::audit::Event> = (0..15)
        .map(|i| {
            let mut e = psgate_relay::audit::Event::new(psgate_relay::audit::Kind::Login, "alice");
            e.at = if i < 10 { now - 10 * 86_400_000 + i } else { now - 1000 + i };
            e
        })
        .collect();
    store.append_audit("earlier", &events, &|input: &str| key.mac(input.as_bytes())).await.expect("appended");
    // A relay keeping a week's records removes the old ones when it starts, and says so in the chain.
    let relay = relay_on(store.clone(), move |c: &mut Config| {
        c.seal_key_file = Some(key_file);
        c.audit.retention_days = Some(7);
    })
    .await;
    let deadline = std::time::Instant::now() + psgate_tests::STEP;
    let retention = loop {
        relay.manager.flush_audit().await;
        let filter = psgate_relay::store::AuditFilter { kinds: vec!["retention".into()], ..Default::default() };
        if let Some(r) = store.audit_page(&filter, 0, 10).await.expect("read").pop() {
            break r.event().expect("an event");
        }
        assert!(std::time::Instant::now() < deadline, "a retention record");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert_eq!((retention.data["through_seq"].as_i64(), retention.data["removed"].as_u64()), (Some(10), Some(10)));
    let left = store.audit_page(&psgate_relay::store::AuditFilter::default(), 0, 100).await.expect("read");
    assert_eq!(left.first().map(|r| r.seq), Some(11), "the old ones gone");
    let (records, _, problems) = psgate_relay::audit::export::verify(&store, &key).await.expect("verified");
    assert_eq!((records, problems), (6, vec![]), "the five left and the retention record, intact");
}
