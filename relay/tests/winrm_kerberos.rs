//! Kerberos for real: the WinRM transport's HTTP layer against the WS-Management peer (`tests/peers/winrm_host.py
//! --auth kerberos`: pyspnego's GSSAPI acceptor over MIT krb5, with the service keys of a real MIT KDC started by
//! `tests/peers/kdc.py` on a free loopback port; see `common/kerberos.rs`).
//!
//! With a password and no KDC named, Kerberos is the system's GSSAPI (MIT's gss_acquire_cred_with_password, the KDC
//! from the krb5.conf that KRB5_CONFIG names, the tickets in memory), as it is from a ticket cache that `kinit` filled;
//! over HTTPS it is channel-bound, which a peer with `--cbt-hardening Strict` requires. With a KDC named in the options
//! it is sspi's (the AS and TGS exchanges from the relay's own sockets), and not channel-bound. libkrb5 reads
//! KRB5_CONFIG and KRB5CCNAME from the process environment, which a test cannot change in its own process without
//! `unsafe`: the GSSAPI tests run their client side in a child process of this test binary (itself, filtered to that
//! test) with them set.

#[path = "common/kerberos.rs"]
mod kerberos;
#[path = "common/tls_proxy.rs"]
mod tls_proxy;
#[path = "common/winrm_peer.rs"]
mod winrm_peer;
#[path = "common/secrets.rs"]
mod secrets;
#[path = "common/wsman_get.rs"]
mod wsman_get;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use kerberos::{Kdc, KerberosPeer};
use tls_proxy::TlsProxy;
use psgate_relay::transport::winrm::{
    AuthError, AuthFailure, AuthMethod, Endpoint, WinrmClient, WinrmError, WinrmOptions,
};
use psgate_relay::wsman::{ClientConfig, Request, ServerConfig};
use secrecy::SecretString;
use uuid::Uuid;

/// The KDC user's password, and a wrong one; both are looked for in every log line.
const PASSWORD: &str = "Krb-Ada-Secret-5d2a";
const WRONG_PASSWORD: &str = "Krb-Not-Ada-81c3";
/// The peer's NTLM account (for the Negotiate tests: NTLM must not be what succeeds).
const NTLM_USER: &str = "PSGATE\\ada:Ntlm-Ada-Secret-44e1";
const STEP: Duration = Duration::from_secs(60);
/// Set (to a JSON spec) in the child process of a GSSAPI test: the test then plays the client.
const CHILD_SPEC: &str = "PSGATE_KRB_CHILD";

// ---- helpers ---------------------------------------------------------------------------------------------------

/// Every log event of the process, at TRACE (sspi's and libgssapi's included), is searched for the passwords.
fn init_tracing() {
    secrets::watch(&[PASSWORD, WRONG_PASSWORD]);
}

fn assert_no_secret_logged() {
    assert!(!secrets::logged(), "a password reached the logs");
}

fn kdc() -> Kdc {
    init_tracing();
    Kdc::start(PASSWORD)
}

/// Kerberos or Negotiate to `url` as the KDC's user, with the KDC named (sspi's Kerberos).
fn options(url: &str, kdc: &Kdc, auth: AuthMethod, password: &str) -> WinrmOptions {
    let endpoint = Endpoint::parse(url).expect("endpoint");
    let mut options = WinrmOptions::new(endpoint, kdc.down_level_user(), SecretString::from(password), auth);
    options.kdc = Some(kdc.url());
    options.connect_timeout = STEP;
    options.request_timeout = STEP;
    options
}

/// HTTPS with the peer's certificate trusted.
fn https_options(peer: &KerberosPeer, kdc: &Kdc, auth: AuthMethod, password: &str) -> WinrmOptions {
    let mut options = options(&peer.url, kdc, auth, password);
    options.ca_file = Some(peer.cert.clone().expect("the peer's certificate"));
    options
}

/// With a password and no KDC named: the system's GSSAPI, with the KDC of the krb5.conf that KRB5_CONFIG names (in a
/// child process).
fn gss_options(url: &str, user: &str, auth: AuthMethod, password: &str) -> WinrmOptions {
    let endpoint = Endpoint::parse(url).expect("endpoint");
    let mut options = WinrmOptions::new(endpoint, user, SecretString::from(password), auth);
    options.connect_timeout = STEP;
    options.request_timeout = STEP;
    assert!(options.kdc.is_none() && !options.uses_ticket_cache());
    options
}

fn client(options: WinrmOptions) -> WinrmClient {
    WinrmClient::new(options).expect("client options")
}

/// A WS-Transfer Get of the configuration, checked to answer it, sealed over HTTP and not over HTTPS; `padding` bytes
/// of comment make it larger.
async fn get_config(client: &mut WinrmClient, padding: usize) -> ServerConfig {
    let (config, sealed) = wsman_get::get_config(client, padding, STEP).await;
    assert_eq!(sealed, !client.options().endpoint.https, "sealed over HTTP only");
    config
}

async fn send_err(client: &mut WinrmClient) -> WinrmError {
    let xml = Request::get_config().to_xml(&ClientConfig::new("http://x/wsman", Uuid::new_v4()), Uuid::new_v4());
    match tokio::time::timeout(STEP, client.send(xml.as_bytes())).await.expect("in time") {
        Ok(response) => panic!("the request succeeded: {} {}", response.status, String::from_utf8_lossy(&response.body)),
        Err(e) => e,
    }
}

fn count(haystack: &str, needle: &str) -> usize {
    haystack.matches(needle).count()
}

fn assert_rejected(err: &WinrmError, what: &str) {
    assert!(matches!(err, WinrmError::Auth(AuthError { failure: AuthFailure::Rejected(_), .. })), "{what}: {err:?}");
}

/// The spec of this process, if it is a child of a GSSAPI test (see [`run_child`]).
fn child_spec() -> Option<Spec> {
    let spec = std::env::var(CHILD_SPEC).ok()?;
    init_tracing();
    Some(Spec(serde_json::from_str(&spec).expect("the spec")))
}

/// What a child process gets: URLs, paths, the user.
struct Spec(serde_json::Value);

impl Spec {
    fn text(&self, key: &str) -> String {
        self.0[key].as_str().unwrap_or_else(|| panic!("{key} in {}", self.0)).to_owned()
    }

    fn port(&self, key: &str) -> u16 {
        self.0[key].as_u64().and_then(|p| u16::try_from(p).ok()).unwrap_or_else(|| panic!("{key} in {}", self.0))
    }
}

/// Runs the test `test` again in a child process of this test binary, as the client, with KRB5_CONFIG set, `spec` in
/// [`CHILD_SPEC`], and KRB5CCNAME naming `ccache` (None: unset, so krb5.conf's `default_ccache_name` applies — the file
/// that [`assert_no_ccache_written`] then checks was never made).
fn run_child(test: &str, spec: serde_json::Value, kdc: &Kdc, ccache: Option<&Path>) {
    let exe = std::env::current_exe().expect("the test binary");
    let mut cmd = Command::new(exe);
    cmd.args([test, "--exact", "--nocapture", "--test-threads=1"]).envs(kdc.env()).env(CHILD_SPEC, spec.to_string());
    match ccache {
        Some(ccache) => cmd.env("KRB5CCNAME", format!("FILE:{}", ccache.display())),
        None => cmd.env_remove("KRB5CCNAME"),
    };
    let out = cmd.output().expect("run the child");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && text.contains("1 passed"), "the child failed:\n{text}");
    assert!(!text.contains(PASSWORD) && !text.contains(WRONG_PASSWORD), "a password in the child's output:\n{text}");
}

/// A password acquired through GSSAPI stays in memory: no ticket cache file appears in the KDC's folder, where the
/// test realm's krb5.conf puts the default one (`default_ccache_name`); the tickets were in a MEMORY ccache.
fn assert_no_ccache_written(kdc: &Kdc) {
    let caches: Vec<String> = std::fs::read_dir(&kdc.dir)
        .expect("the KDC's folder")
        .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
        .filter(|name| name.starts_with("krb5cc"))
        .collect();
    assert!(caches.is_empty(), "ticket caches written: {caches:?}");
}

// ---- with a password, no KDC named (the system's GSSAPI), in a child process -----------------------------------

/// Kerberos over plain HTTP: gss_acquire_cred_with_password's AS exchange with the real KDC (found in krb5.conf), one
/// TGS exchange, one AP exchange with the peer, then every envelope sealed with gss_wrap_iov (MS-WSMV 2.2.9.1, the
/// RFC 4121 wrap token's header before the data) on the one connection. The user as `REALM\user` and as
/// `user@realm`. No ticket cache is written.
#[tokio::test]
async fn kerberos_with_a_password_over_http_seals_envelopes() {
    if let Some(spec) = child_spec() {
        let mut c = client(gss_options(&spec.text("url"), &spec.text("user"), AuthMethod::Kerberos, PASSWORD));
        let config = get_config(&mut c, 0).await;
        assert_eq!(config.max_envelope_size_kb, Some(500));
        get_config(&mut c, 100_000).await;
        get_config(&mut c, 7).await;
        assert_eq!((c.stats().connections, c.stats().handshakes, c.stats().requests), (1, 1, 3));
        // user@realm: the realm is the domain in upper case (a plain principal, not an enterprise name).
        let upn = gss_options(&spec.text("url"), "ada@psgate.test", AuthMethod::Kerberos, PASSWORD);
        get_config(&mut client(upn), 0).await;
        assert_no_secret_logged();
        return;
    }
    let kdc = kdc();
    let peer = KerberosPeer::start(&kdc, "kerberos", false, NTLM_USER);
    let spec = serde_json::json!({ "url": peer.url, "user": kdc.down_level_user() });
    run_child("kerberos_with_a_password_over_http_seals_envelopes", spec, &kdc, None);
    let log = peer.log();
    assert_eq!(count(&log, "Kerberos: ada@PSGATE.TEST authenticated"), 2, "{log}");
    let kdc_log = kdc.log();
    let tgt = "ada@PSGATE.TEST for krbtgt/PSGATE.TEST@PSGATE.TEST";
    assert_eq!(count(&kdc_log, "AS_REQ") - count(&kdc_log, "NEEDED_PREAUTH"), 2, "{kdc_log}");
    assert!(kdc_log.contains(tgt), "{kdc_log}");
    assert!(kdc_log.contains("TGS_REQ") && kdc_log.contains("WSMAN/127.0.0.1@PSGATE.TEST"), "{kdc_log}");
    assert_no_ccache_written(&kdc);
}

/// A wrong password: the KDC refuses the AS exchange (pre-authentication failed), before the server is ever sent a
/// token, and the error is the typed authentication error naming Kerberos and the user — never the password. Through
/// GSSAPI (in the child) and through sspi with the KDC named (here); Negotiate does not fall back to NTLM on it.
#[tokio::test]
async fn a_wrong_password_is_the_kdcs_refusal_as_an_auth_error() {
    async fn refused(options: WinrmOptions, user: &str) {
        let method = options.auth;
        let err = send_err(&mut client(options)).await;
        let WinrmError::Auth(AuthError { method: m, user: u, failure: AuthFailure::Package(message), .. }) = &err else {
            panic!("{method}: not a package failure: {err:?}");
        };
        assert_eq!((*m, u.as_str()), (method, user));
        assert!(message.contains("pre-authentication"), "{method}: {message}");
        let text = err.to_string();
        assert!(text.contains(&format!("authentication as {user}")) && !text.contains(WRONG_PASSWORD), "{text}");
    }
    if let Some(spec) = child_spec() {
        for method in [AuthMethod::Kerberos, AuthMethod::Negotiate] {
            let mut options = gss_options(&spec.text("url"), &spec.text("user"), method, WRONG_PASSWORD);
            options.spn_host = Some("localhost".to_owned());
            refused(options, &spec.text("user")).await;
        }
        assert_no_secret_logged();
        return;
    }
    let kdc = kdc();
    let peer = KerberosPeer::start(&kdc, "kerberos,ntlm", false, NTLM_USER);
    for method in [AuthMethod::Kerberos, AuthMethod::Negotiate] {
        let mut options = options(&peer.url, &kdc, method, WRONG_PASSWORD);
        options.spn_host = Some("localhost".to_owned());
        refused(options, &kdc.down_level_user()).await;
    }
    let spec = serde_json::json!({ "url": peer.url, "user": kdc.down_level_user() });
    run_child("a_wrong_password_is_the_kdcs_refusal_as_an_auth_error", spec, &kdc, None);
    assert!(!peer.log().contains("authenticated") && !peer.log().contains("NTLM"), "{}", peer.log());
    assert_eq!(count(&kdc.log(), "PREAUTH_FAILED"), 4, "{}", kdc.log());
    assert_no_ccache_written(&kdc);
    assert_no_secret_logged();
}

/// Negotiate (SPNEGO) chooses Kerberos when the user names a realm whose KDC is known and the server is named by a
/// host name (as Windows and sspi, NTLM for an IP address: a service ticket names a host): GSSAPI's SPNEGO in the
/// child, sspi's with the KDC named here. The peer accepts both; its NTLM account has another password, so only
/// Kerberos can succeed. A realm no KDC is known for (the NTLM account's `PSGATE`), or a server the KDC has no ticket
/// for, falls back to NTLM.
#[tokio::test]
async fn negotiate_picks_kerberos_when_the_kdc_is_known() {
    if let Some(spec) = child_spec() {
        let mut options = gss_options(&spec.text("url"), &spec.text("user"), AuthMethod::Negotiate, PASSWORD);
        options.spn_host = Some("localhost".to_owned());
        let mut c = client(options);
        get_config(&mut c, 0).await;
        get_config(&mut c, 30_000).await;
        assert_eq!((c.stats().connections, c.stats().handshakes), (1, 1));

        let (user, password) = NTLM_USER.split_once(':').expect("user:password");
        let mut options = gss_options(&spec.text("url"), user, AuthMethod::Negotiate, password);
        options.spn_host = Some("localhost".to_owned());
        get_config(&mut client(options), 0).await;

        // The KDC has no ticket for this server (its realm is known, the password right): NTLM too, which the peer
        // refuses (PSGATE.TEST\ada is no NTLM account of its).
        let mut options = gss_options(&spec.text("url"), &spec.text("user"), AuthMethod::Negotiate, PASSWORD);
        options.spn_host = Some("nosuch.psgate.test".to_owned());
        assert_rejected(&send_err(&mut client(options)).await, "no service ticket, then NTLM");
        assert_no_secret_logged();
        return;
    }
    let kdc = kdc();
    let peer = KerberosPeer::start(&kdc, "kerberos,ntlm", false, NTLM_USER);
    let spec = serde_json::json!({ "url": peer.url, "user": kdc.down_level_user() });
    run_child("negotiate_picks_kerberos_when_the_kdc_is_known", spec, &kdc, None);
    let log = peer.log();
    assert_eq!(count(&log, "Kerberos: ada@PSGATE.TEST authenticated"), 1, "{log}");
    assert_eq!(count(&log, "NTLM: PSGATE\\ada authenticated"), 1, "{log}");
    assert!(kdc.log().contains("WSMAN/localhost@PSGATE.TEST"), "{}", kdc.log());
    assert!(!kdc.log().contains("@PSGATE for"), "no AS exchange for the realm PSGATE: {}", kdc.log());
    let no_ticket = "ada@PSGATE.TEST for WSMAN/nosuch.psgate.test@PSGATE.TEST, Server not found in Kerberos database";
    assert!(kdc.log().contains(no_ticket), "{}", kdc.log());
    assert!(log.contains("SPNEGO authentication failed"), "the NTLM fallback reached the peer: {log}");

    let mut options = options(&peer.url, &kdc, AuthMethod::Negotiate, PASSWORD);
    options.spn_host = Some("localhost".to_owned());
    let mut c = client(options);
    get_config(&mut c, 0).await;
    assert_eq!(count(&peer.log(), "Kerberos: ada@PSGATE.TEST authenticated"), 2, "{}", peer.log());
    assert_eq!(count(&peer.log(), "NTLM: "), 1, "{}", peer.log());
    assert_no_ccache_written(&kdc);
    assert_no_secret_logged();
}

/// Kerberos with a password over HTTPS: not sealed (TLS protects the messages), and channel-bound — for Kerberos and
/// for Negotiate's choice of Kerberos — to a peer that requires the binding (`--cbt-hardening Strict`: MIT alone lets
/// an authenticator without one through, so the peer checks GSS_C_CHANNEL_BOUND_FLAG). Through a TLS-intercepting
/// proxy that the client trusts, the binding names the proxy's certificate and the peer refuses. sspi's Kerberos (a
/// KDC named) sends no binding, and the same peer refuses it.
#[tokio::test]
async fn kerberos_with_a_password_over_https() {
    if let Some(spec) = child_spec() {
        for method in [AuthMethod::Kerberos, AuthMethod::Negotiate] {
            let mut options = gss_options(&spec.text("url"), &spec.text("user"), method, PASSWORD);
            options.ca_file = Some(spec.text("cert").into());
            options.spn_host = Some("localhost".to_owned());
            let mut c = client(options);
            get_config(&mut c, 0).await;
            get_config(&mut c, 70_000).await;
            assert_eq!((c.stats().connections, c.stats().handshakes), (1, 1), "{method}");
        }
        let proxy = TlsProxy::start(spec.port("port"), Path::new(&spec.text("dir"))).await;
        for method in [AuthMethod::Kerberos, AuthMethod::Negotiate] {
            let mut through = gss_options(&proxy.url(), &spec.text("user"), method, PASSWORD);
            through.ca_file = Some(proxy.cert.clone());
            through.spn_host = Some("localhost".to_owned());
            assert_rejected(&send_err(&mut client(through)).await, "through the proxy");
        }
        assert_no_secret_logged();
        return;
    }
    let kdc = kdc();
    let peer = KerberosPeer::start_strict(&kdc, "kerberos", NTLM_USER);
    let spec = serde_json::json!({
        "url": peer.url,
        "port": peer.port,
        "dir": peer.dir.path(),
        "cert": peer.cert,
        "user": kdc.down_level_user(),
    });
    run_child("kerberos_with_a_password_over_https", spec, &kdc, None);
    let log = peer.log();
    assert_eq!(count(&log, "Kerberos: ada@PSGATE.TEST authenticated (channel-bound)"), 2, "{log}");
    assert_eq!(count(&log, "Kerberos: ada@PSGATE.TEST authenticated"), 2, "{log}");
    // MIT's acceptor refused both attempts through the proxy: their binding is not the peer's certificate's.
    let wrong_binding = |l: &&str| l.contains("handshake refused") && l.contains("Incorrect channel bindings");
    assert_eq!(log.lines().filter(wrong_binding).count(), 2, "{log}");
    assert!(!log.contains("sent no channel binding"), "{log}");

    let mut sspi = https_options(&peer, &kdc, AuthMethod::Kerberos, PASSWORD);
    sspi.spn_host = Some("localhost".to_owned());
    assert_rejected(&send_err(&mut client(sspi)).await, "sspi's Kerberos on a Strict peer");
    let unbound = "ada@PSGATE.TEST sent no channel binding (CbtHardeningLevel=Strict)";
    assert!(peer.log().contains(unbound), "{}", peer.log());
    assert_no_ccache_written(&kdc);
    assert_no_secret_logged();
}

// ---- with a password and a KDC named (sspi), in this process ---------------------------------------------------

/// With the KDC named in the options, the relay itself talks to it (sspi's Kerberos: one AS and one TGS exchange
/// from its own sockets). Over HTTP every envelope is sealed; over HTTPS nothing is, and the authentication is not
/// channel-bound: sspi 0.23 marks a bound authenticator in a way MIT's acceptor refuses (see `auth.rs`), so it sends
/// no binding, a TLS-intercepting proxy that the client trusts is not caught, and a Strict peer refuses it
/// (`kerberos_with_a_password_over_https`). Pinned here, so that the day sspi's binding is usable this test says so.
#[tokio::test]
async fn kerberos_with_a_named_kdc_is_sspis_and_not_channel_bound() {
    let kdc = kdc();
    let http = KerberosPeer::start(&kdc, "kerberos", false, NTLM_USER);
    let mut c = client(options(&http.url, &kdc, AuthMethod::Kerberos, PASSWORD));
    let config = get_config(&mut c, 0).await;
    assert_eq!(config.max_envelope_size_kb, Some(500));
    get_config(&mut c, 100_000).await;
    get_config(&mut c, 7).await;
    assert_eq!((c.stats().connections, c.stats().handshakes, c.stats().requests), (1, 1, 3));
    assert_eq!(count(&http.log(), "Kerberos: ada@PSGATE.TEST authenticated"), 1, "{}", http.log());
    let kdc_log = kdc.log();
    let tgt = "ada@PSGATE.TEST for krbtgt/PSGATE.TEST@PSGATE.TEST";
    assert!(kdc_log.contains("AS_REQ") && kdc_log.contains(tgt), "{kdc_log}");
    assert!(kdc_log.contains("TGS_REQ") && kdc_log.contains("WSMAN/127.0.0.1@PSGATE.TEST"), "{kdc_log}");

    let https = KerberosPeer::start(&kdc, "kerberos", true, NTLM_USER);
    for method in [AuthMethod::Kerberos, AuthMethod::Negotiate] {
        let mut options = https_options(&https, &kdc, method, PASSWORD);
        options.spn_host = Some("localhost".to_owned());
        let mut c = client(options);
        get_config(&mut c, 0).await;
        get_config(&mut c, 70_000).await;
        assert_eq!((c.stats().connections, c.stats().handshakes), (1, 1), "{method}");
    }
    let proxy = TlsProxy::start(https.port, https.dir.path()).await;
    let mut through = options(&proxy.url(), &kdc, AuthMethod::Kerberos, PASSWORD);
    through.ca_file = Some(proxy.cert.clone());
    get_config(&mut client(through), 0).await;
    let log = https.log();
    assert_eq!(count(&log, "Kerberos: ada@PSGATE.TEST authenticated"), 3, "{log}");
    assert!(!log.contains("(channel-bound)"), "{log}");
    assert_no_secret_logged();
}

// ---- from a ticket cache (the system's GSSAPI), in a child process -----------------------------------------------

/// The peers and the user, for the child process of [`kerberos_from_a_ticket_cache`].
fn ticket_cache_spec(mode: &str, kdc: &Kdc, http: &KerberosPeer, https: &KerberosPeer) -> serde_json::Value {
    serde_json::json!({
        "mode": mode,
        "http": http.url,
        "https": https.url,
        "https_port": https.port,
        "https_dir": https.dir.path(),
        "cert": https.cert,
        "principal": kdc.user,
        "user": kdc.down_level_user(),
    })
}

/// psgate authenticates from an existing ticket cache (kinit beforehand, KRB5CCNAME set, no password): Kerberos and
/// Negotiate, over HTTP (sealed with gss_wrap_iov) and HTTPS (bound to the certificate, which a Strict peer requires;
/// refused through a TLS-intercepting proxy). Without a ticket cache the error says to run kinit. With a password, the
/// ticket cache of another principal is not used.
#[tokio::test]
async fn kerberos_from_a_ticket_cache() {
    if let Some(spec) = child_spec() {
        return ticket_cache_client(&spec).await;
    }
    let kdc = kdc();
    let http = KerberosPeer::start(&kdc, "kerberos", false, NTLM_USER);
    let https = KerberosPeer::start_strict(&kdc, "kerberos", NTLM_USER);
    let ccache = kdc.dir.join("krb5cc_test");
    kdc.kinit(&ccache);

    let test = "kerberos_from_a_ticket_cache";
    run_child(test, ticket_cache_spec("ticket-cache", &kdc, &http, &https), &kdc, Some(&ccache));
    // Kerberos and Negotiate from the cache, over HTTP and over HTTPS (the proxy's attempt is refused).
    assert_eq!(count(&http.log(), "Kerberos: ada@PSGATE.TEST authenticated"), 2, "{}", http.log());
    let log = https.log();
    assert_eq!(count(&log, "Kerberos: ada@PSGATE.TEST authenticated (channel-bound)"), 2, "{log}");
    assert_eq!(count(&log, "Kerberos: ada@PSGATE.TEST authenticated"), 2, "{log}");
    let refused = log.lines().any(|l| l.contains("Kerberos handshake refused") && l.contains("Incorrect channel bindings"));
    assert!(refused && !log.contains("sent no channel binding"), "{log}");
    // GSSAPI asked the KDC for WSMAN/127.0.0.1 with the cache's TGT.
    assert!(kdc.log().contains("ada@PSGATE.TEST for WSMAN/127.0.0.1@PSGATE.TEST"), "{}", kdc.log());

    let no_cache = kdc.dir.join("no-such-ccache");
    run_child(test, ticket_cache_spec("no-ticket-cache", &kdc, &http, &https), &kdc, Some(&no_cache));
    assert_eq!(count(&http.log(), "Kerberos: ada@PSGATE.TEST authenticated"), 2, "{}", http.log());

    // A password is the password's principal, whatever ticket cache the process has (MIT's SPNEGO, given a credential
    // without a SPNEGO element, would take the default one: the relay's own tickets).
    let service_cache = kdc.dir.join("krb5cc_service");
    kdc.kinit_service("host/localhost@PSGATE.TEST", &service_cache);
    run_child(test, ticket_cache_spec("password-beside-a-cache", &kdc, &http, &https), &kdc, Some(&service_cache));
    assert_eq!(count(&http.log(), "Kerberos: ada@PSGATE.TEST authenticated"), 4, "{}", http.log());
    assert!(!http.log().contains("host/localhost@PSGATE.TEST authenticated"), "{}", http.log());
}

/// The client side of [`kerberos_from_a_ticket_cache`], in its child process.
async fn ticket_cache_client(spec: &Spec) {
    let endpoint = |url: &str| Endpoint::parse(url).expect("endpoint");
    let cache_options = |url: &str, method: AuthMethod| {
        // No password: the ticket cache (the user name is only for messages).
        let mut options = WinrmOptions::new(endpoint(url), spec.text("principal"), SecretString::from(""), method);
        options.connect_timeout = STEP;
        options.request_timeout = STEP;
        assert!(options.uses_ticket_cache());
        options
    };

    if spec.text("mode") == "password-beside-a-cache" {
        for method in [AuthMethod::Kerberos, AuthMethod::Negotiate] {
            let mut options = gss_options(&spec.text("http"), &spec.text("user"), method, PASSWORD);
            options.spn_host = Some("localhost".to_owned());
            get_config(&mut client(options), 0).await;
        }
        assert_no_secret_logged();
        return;
    }

    if spec.text("mode") == "no-ticket-cache" {
        for method in [AuthMethod::Kerberos, AuthMethod::Negotiate] {
            let err = send_err(&mut client(cache_options(&spec.text("http"), method))).await;
            let WinrmError::Auth(AuthError { failure: AuthFailure::Package(message), .. }) = &err else {
                panic!("{method}: not a package failure: {err:?}");
            };
            assert!(message.contains("kinit"), "{method}: {message}");
        }
        assert_no_secret_logged();
        return;
    }

    for method in [AuthMethod::Kerberos, AuthMethod::Negotiate] {
        let mut c = client(cache_options(&spec.text("http"), method));
        get_config(&mut c, 0).await;
        get_config(&mut c, 120_000).await;
        get_config(&mut c, 0).await;
        assert_eq!((c.stats().connections, c.stats().handshakes), (1, 1), "{method}");

        let mut over_tls = cache_options(&spec.text("https"), method);
        over_tls.ca_file = Some(spec.text("cert").into());
        let mut c = client(over_tls);
        get_config(&mut c, 0).await;
        get_config(&mut c, 40_000).await;
    }

    // A TLS-intercepting proxy: the GSSAPI binding names its certificate, the peer refuses.
    let proxy = TlsProxy::start(spec.port("https_port"), Path::new(&spec.text("https_dir"))).await;
    let mut through = cache_options(&proxy.url(), AuthMethod::Kerberos);
    through.ca_file = Some(proxy.cert.clone());
    assert_rejected(&send_err(&mut client(through)).await, "through the proxy");
    assert_no_secret_logged();
}
