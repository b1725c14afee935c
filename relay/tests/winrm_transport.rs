//! The WinRM transport's HTTP layer against the WS-Management test peer (`tests/peers/winrm_host.py`: pyspnego's NTLM
//! and SPNEGO acceptors, MS-WSMV message encryption, HTTPS with channel binding checks; see `common/winrm_peer.rs`).
//!
//! Each test starts its own peer on a free loopback port. The envelopes come from `psgate_relay::wsman`; what is
//! under test is the HTTP layer: one connection, authentication, sealing, TLS.

#[path = "common/secrets.rs"]
mod secrets;
#[path = "common/winrm_peer.rs"]
mod winrm_peer;
#[path = "common/wsman_get.rs"]
mod wsman_get;

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use psgate_relay::transport::winrm::{
    AuthError, AuthFailure, AuthMethod, CertificateProblem, Endpoint, TlsVerification, WinrmClient, WinrmError,
    WinrmOptions,
};
use psgate_relay::wsman::{ClientConfig, Request, ServerConfig};
use secrecy::SecretString;
use uuid::Uuid;
use winrm_peer::{PASSWORD, PeerOptions, USER, WinrmPeer};

const WRONG_PASSWORD: &str = "Not-Ada-9f2b";
/// Long enough for an unoptimised build on a busy 2-core machine, short enough to fail a hang.
const STEP: Duration = Duration::from_secs(60);

// ---- helpers ---------------------------------------------------------------------------------------------------

fn init_tracing() {
    secrets::watch(&[PASSWORD, WRONG_PASSWORD]);
}

fn start(options: PeerOptions) -> WinrmPeer {
    init_tracing();
    WinrmPeer::start(options)
}

fn assert_no_secret_logged() {
    assert!(!secrets::logged(), "a password reached the logs");
}

fn options(url: &str, auth: AuthMethod, password: &str) -> WinrmOptions {
    let endpoint = Endpoint::parse(url).expect("endpoint");
    let mut options = WinrmOptions::new(endpoint, USER, SecretString::from(password), auth);
    options.connect_timeout = STEP;
    options.request_timeout = STEP;
    options
}

fn client(options: WinrmOptions) -> WinrmClient {
    WinrmClient::new(options).expect("client options")
}

/// A WS-Transfer Get of the configuration, checked to answer it.
async fn get_config(client: &mut WinrmClient, padding: usize) -> ServerConfig {
    wsman_get::get_config(client, padding, STEP).await.0
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

/// A TCP relay in front of the peer that counts connections and can cut them all, as a server or a NAT does.
struct Relay {
    port: u16,
    accepted: Arc<AtomicUsize>,
    live: Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>>,
    accept: tokio::task::JoinHandle<()>,
}

impl Relay {
    async fn start(upstream: u16) -> Relay {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let accepted = Arc::new(AtomicUsize::new(0));
        let live: Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>> = Arc::default();
        let (counter, tasks) = (Arc::clone(&accepted), Arc::clone(&live));
        let accept = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                counter.fetch_add(1, Ordering::SeqCst);
                let task = tokio::spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(("127.0.0.1", upstream)).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                tasks.lock().expect("relay tasks").push(task);
            }
        });
        Relay { port, accepted, live, accept }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/wsman", self.port)
    }

    fn connections(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    /// Closes every relayed connection (both sockets are dropped).
    fn cut(&self) {
        for task in self.live.lock().expect("relay tasks").drain(..) {
            task.abort();
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.cut();
        self.accept.abort();
    }
}

// ---- HTTP: NTLM and SPNEGO with message encryption ---------------------------------------------------------------

/// Three envelopes (one of 400 KB) sealed over plain HTTP, on one TCP connection with one NTLM handshake.
#[tokio::test]
async fn ntlm_over_http_seals_envelopes_on_one_connection() {
    let peer = start(PeerOptions { auth: "ntlm", ..PeerOptions::default() });
    let relay = Relay::start(peer.port).await;
    let mut client = client(options(&relay.url(), AuthMethod::Ntlm, PASSWORD));

    let started = Instant::now();
    let config = get_config(&mut client, 0).await;
    let first = started.elapsed();
    assert_eq!(config.max_envelope_size_kb, Some(500), "{config:?}");
    let handshake = client.stats().last_connect.expect("a connection was opened");
    eprintln!("NTLM over HTTP: connect + handshake {handshake:?}, first Get answered after {first:?}");

    let started = Instant::now();
    let again = get_config(&mut client, 0).await;
    eprintln!("NTLM over HTTP: a sealed Get on the open connection {:?}", started.elapsed());
    assert_eq!(again, config);
    let large = get_config(&mut client, 400_000).await;
    assert_eq!(large, config);

    let stats = client.stats();
    assert_eq!((stats.connections, stats.handshakes, stats.requests), (1, 1, 3), "{stats:?}");
    assert_eq!(relay.connections(), 1);
    let log = peer.log();
    assert_eq!(count(&log, "NTLM: PSGATE\\ada authenticated"), 1, "{log}");
    // The peer only accepts sealed envelopes over HTTP (AllowUnencrypted=false): three were read.
    assert_eq!(count(&log, "<- Get"), 3, "{log}");
    assert_no_secret_logged();
}

/// Negotiate: SPNEGO with NTLM inside (no KDC here), the mechListMIC exchange finished by the 200's final token.
#[tokio::test]
async fn negotiate_over_http_seals_envelopes() {
    let peer = start(PeerOptions { auth: "ntlm", ..PeerOptions::default() });
    let mut client = client(options(&peer.url, AuthMethod::Negotiate, PASSWORD));
    let config = get_config(&mut client, 0).await;
    assert_eq!(config.max_envelope_size_kb, Some(500));
    get_config(&mut client, 100_000).await;
    let stats = client.stats();
    assert_eq!((stats.connections, stats.handshakes), (1, 1), "{stats:?}");
    assert_eq!(count(&peer.log(), "authenticated"), 1, "{}", peer.log());
    assert_no_secret_logged();
}

/// The server closes the kept-alive connection (HTTP.sys does after two idle minutes): the next envelope goes on a
/// new connection with a new handshake, sent once.
#[tokio::test]
async fn a_closed_connection_is_reopened_and_authenticated_again() {
    let peer = start(PeerOptions { auth: "ntlm", ..PeerOptions::default() });
    let relay = Relay::start(peer.port).await;
    let mut client = client(options(&relay.url(), AuthMethod::Ntlm, PASSWORD));
    get_config(&mut client, 0).await;
    assert!(client.is_connected());

    relay.cut();
    let deadline = Instant::now() + STEP;
    while client.is_connected() {
        assert!(Instant::now() < deadline, "the client never noticed the closed connection");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    get_config(&mut client, 0).await;
    let stats = client.stats();
    assert_eq!((stats.connections, stats.handshakes, stats.requests), (2, 2, 2), "{stats:?}");
    assert_eq!(relay.connections(), 2);
    assert_eq!(count(&peer.log(), "<- Get"), 2, "each envelope was processed once: {}", peer.log());
    assert_no_secret_logged();
}

#[tokio::test]
async fn a_wrong_password_is_an_auth_error_with_the_servers_answer() {
    let peer = start(PeerOptions::default());
    for method in [AuthMethod::Ntlm, AuthMethod::Negotiate] {
        let mut client = client(options(&peer.url, method, WRONG_PASSWORD));
        let started = Instant::now();
        let err = send_err(&mut client).await;
        assert!(started.elapsed() < Duration::from_secs(20), "took {:?}", started.elapsed());
        let WinrmError::Auth(AuthError { method: m, user, failure: AuthFailure::Rejected(answer), .. }) = &err else {
            panic!("{method}: expected a rejection, got {err:?}");
        };
        assert_eq!((*m, user.as_str()), (method, USER));
        assert_eq!(answer.status, 401);
        assert!(answer.challenges.iter().any(|c| c == "Negotiate"), "{answer:?}");
        let message = err.to_string();
        assert!(message.starts_with(&format!("{method} authentication as PSGATE\\ada to {} failed: the server refused", peer.url)), "{message}");
        assert!(message.contains("401 Unauthorized, WWW-Authenticate: Negotiate, Basic realm=\"WSMAN\""), "{message}");
    }
    assert_no_secret_logged();
}

/// A server that does not offer Negotiate: the error says what it offers.
#[tokio::test]
async fn a_method_the_server_does_not_offer_is_named() {
    let peer = start(PeerOptions { auth: "basic", ..PeerOptions::default() });
    let mut client = client(options(&peer.url, AuthMethod::Ntlm, PASSWORD));
    let err = send_err(&mut client).await;
    assert!(matches!(&err, WinrmError::Auth(AuthError { failure: AuthFailure::NotOffered(_), .. })), "{err:?}");
    assert!(err.to_string().contains("does not offer it (401 Unauthorized, WWW-Authenticate: Basic realm=\"WSMAN\")"), "{err}");
}

// ---- Basic -------------------------------------------------------------------------------------------------------

/// Refused before anything is sent: no TCP connection is even opened.
#[tokio::test]
async fn basic_over_plain_http_is_refused_before_sending() {
    init_tracing();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://127.0.0.1:{}/wsman", listener.local_addr().expect("addr").port());
    let err = WinrmClient::new(options(&url, AuthMethod::Basic, PASSWORD)).expect_err("refused");
    assert!(matches!(err, WinrmError::BasicOverHttp { .. }), "{err:?}");
    assert!(err.to_string().starts_with("refusing Basic authentication over plain HTTP to http://127.0.0.1:"), "{err}");
    let accepted = tokio::time::timeout(Duration::from_millis(200), listener.accept()).await;
    assert!(accepted.is_err(), "a connection was made");
}

/// Allowed explicitly (and by the server's AllowUnencrypted), Basic works over HTTP; a wrong password is refused.
#[tokio::test]
async fn basic_over_http_when_both_sides_allow_it() {
    let peer = start(PeerOptions { allow_unencrypted: true, ..PeerOptions::default() });
    let mut allowed = options(&peer.url, AuthMethod::Basic, PASSWORD);
    allowed.allow_unencrypted_http = true;
    let mut ok = client(allowed.clone());
    get_config(&mut ok, 0).await;
    get_config(&mut ok, 0).await;
    assert_eq!((ok.stats().connections, ok.stats().handshakes), (1, 0));

    allowed.credentials.password = SecretString::from(WRONG_PASSWORD);
    let err = send_err(&mut client(allowed)).await;
    let WinrmError::Auth(AuthError { method: AuthMethod::Basic, failure: AuthFailure::Rejected(answer), .. }) = &err else {
        panic!("expected a Basic rejection, got {err:?}");
    };
    assert_eq!(answer.status, 401);
    assert_no_secret_logged();
}

// ---- HTTPS -------------------------------------------------------------------------------------------------------

fn https_options(peer: &WinrmPeer, auth: AuthMethod) -> WinrmOptions {
    options(&peer.url, auth, PASSWORD)
}

/// The peer's self-signed certificate: refused by default, accepted with it as the CA file, or with the opt-out.
#[tokio::test]
async fn https_checks_certificates_unless_told_not_to() {
    let peer = start(PeerOptions { tls: true, ..PeerOptions::default() });
    let cert = peer.cert.clone().expect("the peer's certificate");

    let err = send_err(&mut client(https_options(&peer, AuthMethod::Basic))).await;
    match &err {
        WinrmError::Certificate { problem: CertificateProblem::UnknownIssuer, host } => {
            assert_eq!(host, &format!("127.0.0.1:{}", peer.port));
        }
        other => panic!("expected an unknown issuer, got {other:?}"),
    }
    assert!(err.to_string().contains("is refused: it is not issued by a trusted certificate authority"), "{err}");
    assert!(!peer.log().contains("<- Get"), "nothing was sent");

    let mut with_ca = https_options(&peer, AuthMethod::Basic);
    with_ca.ca_file = Some(cert.clone());
    let mut trusted = client(with_ca.clone());
    get_config(&mut trusted, 0).await;
    assert_eq!(trusted.stats().handshakes, 0, "Basic needs no handshake");

    // The certificate names 127.0.0.1 only.
    let mut wrong_name = with_ca;
    wrong_name.endpoint.host = "localhost".to_owned();
    let err = send_err(&mut client(wrong_name)).await;
    assert!(matches!(&err, WinrmError::Certificate { problem: CertificateProblem::WrongName { .. }, .. }), "{err:?}");

    let mut danger = https_options(&peer, AuthMethod::Basic);
    danger.tls_verification = TlsVerification::DangerAcceptInvalidCertificates;
    get_config(&mut client(danger), 0).await;

    let mut bad_ca = https_options(&peer, AuthMethod::Basic);
    bad_ca.ca_file = Some(peer.dir.path().join("missing.pem"));
    assert!(matches!(WinrmClient::new(bad_ca), Err(WinrmError::CaFile { .. })));
    assert_no_secret_logged();
}

/// NTLM over HTTPS carries the certificate's tls-server-end-point binding; the peer, hardened to Strict, requires and
/// checks it. Without it the same peer refuses.
#[tokio::test]
async fn ntlm_over_https_binds_the_channel() {
    let peer = start(PeerOptions { tls: true, cbt_hardening: "Strict", ..PeerOptions::default() });
    let cert = peer.cert.clone().expect("certificate");
    for method in [AuthMethod::Ntlm, AuthMethod::Negotiate] {
        let mut bound = https_options(&peer, method);
        bound.ca_file = Some(cert.clone());
        let mut c = client(bound.clone());
        let config = get_config(&mut c, 0).await;
        assert_eq!(config.max_envelope_size_kb, Some(500));
        get_config(&mut c, 50_000).await;
        assert_eq!((c.stats().connections, c.stats().handshakes), (1, 1));

        let mut unbound = bound;
        unbound.channel_binding = false;
        let err = send_err(&mut client(unbound)).await;
        assert!(matches!(&err, WinrmError::Auth(AuthError { failure: AuthFailure::Rejected(_), .. })), "{method}: {err:?}");
    }
    assert!(peer.log().contains("Acceptor bindings specified but not present"), "{}", peer.log());
    assert_no_secret_logged();
}

/// The binding is the certificate the client saw: through a TLS-intercepting proxy (its own certificate, trusted by
/// the client) the peer sees another binding than its own and refuses — the relay attack channel binding stops.
#[tokio::test]
async fn a_tls_intercepting_proxy_is_refused_by_the_binding() {
    let peer = start(PeerOptions { tls: true, ..PeerOptions::default() });
    let proxy = TlsProxy::start(peer.port, peer.dir.path()).await;
    let mut through = options(&format!("https://127.0.0.1:{}/wsman", proxy.port), AuthMethod::Ntlm, PASSWORD);
    through.ca_file = Some(proxy.cert.clone());
    let err = send_err(&mut client(through.clone())).await;
    assert!(matches!(&err, WinrmError::Auth(AuthError { failure: AuthFailure::Rejected(_), .. })), "{err:?}");
    assert!(peer.log().contains("Acceptor bindings do not match"), "{}", peer.log());

    // Basic has no binding: the same proxy passes it (what makes Basic over an intercepted channel unsafe).
    through.auth = AuthMethod::Basic;
    get_config(&mut client(through), 0).await;
    assert_no_secret_logged();
}

/// A TLS server with its own certificate that relays to the peer over TLS (accepting the peer's certificate).
struct TlsProxy {
    port: u16,
    cert: std::path::PathBuf,
    accept: tokio::task::JoinHandle<()>,
}

impl TlsProxy {
    async fn start(upstream: u16, dir: &Path) -> TlsProxy {
        use rustls::pki_types::pem::PemObject as _;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

        // A certificate and key for 127.0.0.1, made by the peer's own helper.
        let script = format!(
            "import sys; sys.path.insert(0, {peers:?}); import winrm_host; c, k, _ = winrm_host.self_signed({dir:?}, '127.0.0.1'); print(c); print(k)",
            peers = winrm_peer::repo().join("tests/peers").display().to_string(),
            dir = dir.join("proxy").display().to_string(),
        );
        std::fs::create_dir_all(dir.join("proxy")).expect("proxy dir");
        let out = std::process::Command::new(winrm_peer::python()).args(["-c", &script]).output().expect("run python");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let mut lines = text.lines();
        let (cert_path, key_path) = (lines.next().expect("cert").to_owned(), lines.next().expect("key").to_owned());

        let certs: Vec<CertificateDer<'static>> =
            CertificateDer::pem_file_iter(&cert_path).expect("cert").collect::<Result<_, _>>().expect("cert");
        let key = PrivateKeyDer::from_pem_file(&key_path).expect("key");
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let server = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .expect("server config");
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server));

        // Upstream: the peer's certificate is not checked (this is the attacker's side).
        let upstream_tls = {
            let config = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .expect("versions")
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(NoCheck))
                .with_no_client_auth();
            tokio_rustls::TlsConnector::from(Arc::new(config))
        };

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let accept = tokio::spawn(async move {
            while let Ok((inbound, _)) = listener.accept().await {
                let (acceptor, connector) = (acceptor.clone(), upstream_tls.clone());
                tokio::spawn(async move {
                    let Ok(mut inbound) = acceptor.accept(inbound).await else { return };
                    let Ok(tcp) = tokio::net::TcpStream::connect(("127.0.0.1", upstream)).await else { return };
                    let name = ServerName::try_from("127.0.0.1").expect("name");
                    let Ok(mut outbound) = connector.connect(name, tcp).await else { return };
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                });
            }
        });
        TlsProxy { port, cert: cert_path.into(), accept }
    }
}

impl Drop for TlsProxy {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

#[derive(Debug)]
struct NoCheck;

impl rustls::client::danger::ServerCertVerifier for NoCheck {
    fn verify_server_cert(
        &self,
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &[rustls::pki_types::CertificateDer<'_>],
        _: &rustls::pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }
    fn verify_tls13_signature(
        &self,
        _: &[u8],
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        rustls::crypto::aws_lc_rs::default_provider().signature_verification_algorithms.supported_schemes()
    }
}
