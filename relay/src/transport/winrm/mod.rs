//! The WinRM transport's HTTP layer: POSTs SOAP envelopes to a WS-Management endpoint (`http[s]://host:port/wsman`)
//! over one kept-alive HTTP/1.1 connection per session, authenticated and, over plain HTTP, sealed.
//!
//! This module moves envelopes; it knows nothing of their contents (`crate::wsman` builds and reads them).
//! [`WinrmClient::send`] takes a SOAP body and returns the status and the (unsealed) body of the answer.
//!
//! - **One connection** (`http.rs`): hyper's HTTP/1.1 client connection, not a pool — NTLM and Kerberos
//!   authenticate the TCP connection and the sealed messages' sequence numbers belong to it (`protocol.md` §5). If
//!   the server closes it (HTTP.sys drops idle connections after two minutes), the next request opens a new one and
//!   authenticates again; a request is only sent again if it provably never left (hyper hands it back).
//! - **HTTPS** (`tls.rs`): rustls; certificates checked against the system's CA store plus
//!   [`WinrmOptions::ca_file`], unless [`TlsVerification::DangerAcceptInvalidCertificates`]; a bad certificate is
//!   [`WinrmError::Certificate`] with a [`CertificateProblem`]. NTLM and Kerberos carry the `tls-server-end-point`
//!   channel binding (RFC 5929) of the certificate the server presented — all but sspi's Kerberos, below.
//! - **Authentication** (`auth.rs`): Basic (only over HTTPS unless [`WinrmOptions::allow_unencrypted_http`]);
//!   NTLM (sspi), Kerberos (the system's GSSAPI) and Negotiate (SPNEGO: Kerberos when the server is named by a host
//!   name and the user by a realm, falling back to NTLM when Kerberos cannot be used, else NTLM). As pypsrp does, the
//!   handshake runs on empty POSTs before the first envelope (`Authorization: Negotiate <token>` ↔ 401
//!   `WWW-Authenticate: Negotiate <token>`), so an envelope is sent once, and sealed from the start. A refusal is an
//!   [`AuthError`] that quotes the server's answer; a KDC's refusal (a wrong password: "pre-authentication failed")
//!   is an [`AuthFailure::Package`] naming it.
//! - **Kerberos** is the system's GSSAPI (MIT krb5, `gssapi.rs`), which finds the realm's KDC in krb5.conf
//!   (`KRB5_CONFIG`) or DNS. With a password, `gss_acquire_cred_with_password` does the AS exchange and keeps the
//!   tickets in a private `MEMORY:` ccache (never a file; `KRB5CCNAME` is not used); the user is `REALM\user` or
//!   `user@realm`, both the principal `user@REALM`, or a bare `user` in krb5.conf's default realm. Negotiate's
//!   SPNEGO is MIT's, with Kerberos in it (and nothing else unless gss-ntlmssp is installed; its password credential
//!   costs a second AS exchange, see `gssapi.rs`); when Kerberos cannot be used (no KDC for the realm, none
//!   reachable, a clock skew, no ticket for the server) it goes on with NTLM, sspi's, inside sspi's SPNEGO — not when
//!   the KDC refuses the password. From an existing ticket cache (`kinit` done, `KRB5CCNAME` set, no password: an empty
//!   password with Kerberos or Negotiate, or [`WinrmOptions::use_ticket_cache`]) the same GSSAPI uses its tickets.
//!   Either way, over HTTPS the GSSAPI context is bound to the certificate (a Windows listener with
//!   `CbtHardeningLevel=Strict` requires it) and over HTTP it seals with `gss_wrap_iov`.
//!   Only with a KDC named ([`WinrmOptions::kdc`], or sspi's `SSPI_KDC_URL` in the environment) is Kerberos sspi's,
//!   the relay itself talking to that KDC (MIT's GSSAPI takes its KDCs from the process's krb5.conf alone): sspi's
//!   Kerberos is **not channel-bound** (sspi 0.23 marks a bound authenticator with a two-byte KERB_AP_OPTIONS_CBT that
//!   MIT's acceptor refuses — see `auth.rs`), so a `Strict` listener refuses it and a TLS-intercepting proxy trusted
//!   by the relay goes unnoticed. NTLM, alone or inside Negotiate, is always bound.
//! - **Message encryption** (`encryption.rs`, MS-WSMV 2.2.9.1): over plain HTTP every envelope of an NTLM,
//!   Negotiate or Kerberos session goes as `multipart/encrypted` (`application/HTTP-SPNEGO-session-encrypted`), sealed
//!   with the connection's context (sspi's EncryptMessage, or `gss_wrap_iov` with the wrap token's header first);
//!   answers are unsealed and their length checked.
//!
//! Secrets: the password lives in a [`SecretString`], [`WinrmCredentials`]' `Debug` is redacted, `Authorization`
//! headers are marked sensitive, and no token is logged. sspi's own TRACE events show handshake tokens (never the
//! password): keep `sspi` below TRACE in production filters. With Kerberos, MIT's GSSAPI holds a copy of the password
//! in the credential (in memory, to renew the TGT) for the life of the connection's context; the ticket cache's keys
//! never pass through psgate.
//!
//! Tests: `relay/tests/winrm_transport.rs` (NTLM, SPNEGO, Basic, TLS and binding against the WS-Management peer) and
//! `relay/tests/winrm_kerberos.rs` (Kerberos against a real MIT KDC, `tests/peers/kdc.py`: password and ticket cache,
//! HTTP sealed, HTTPS bound — a Strict peer requires the binding, a TLS-intercepting proxy is refused —, Negotiate's
//! choice and its NTLM fallback, a wrong password, no ticket cache written; sspi's unbound Kerberos with a KDC named).
//! CredSSP is not implemented (the framing knows its chunking).

mod auth;
pub mod encryption;
mod gssapi;
mod http;
pub mod tls;

use std::fmt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Request, StatusCode};
use secrecy::{ExposeSecret as _, SecretString};
use tracing::{debug, info, warn};

use self::auth::{ContextConfig, SecurityContext};
use self::encryption::{SealProtocol, SealedPart};
use self::http::{HttpConnection, RawResponse, SendError};
pub use self::tls::{CertificateProblem, TlsVerification, tls_server_end_point};

/// WinRM's HTTP port.
pub const DEFAULT_HTTP_PORT: u16 = 5985;
/// WinRM's HTTPS port.
pub const DEFAULT_HTTPS_PORT: u16 = 5986;
/// The `Content-Type` of a plain envelope.
pub const SOAP_CONTENT_TYPE: &str = "application/soap+xml;charset=UTF-8";
/// Round trips an authentication may take (NTLM takes two, SPNEGO with a mechListMIC three).
const MAX_AUTH_ROUNDS: usize = 6;
/// The most of an error body quoted in messages.
const QUOTE_LIMIT: usize = 512;

/// How to authenticate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthMethod {
    /// `Authorization: Basic` on every request. Local accounts only on Windows; never over plain HTTP by default.
    Basic,
    /// NTLM, its raw tokens under the `Negotiate` scheme (pypsrp's `auth="ntlm"`).
    Ntlm,
    /// SPNEGO: Kerberos (the system's GSSAPI) when the server is named by a host name and the user by a realm whose
    /// KDC can be used (krb5.conf, DNS; or [`WinrmOptions::kdc`] for sspi's), else NTLM — what Windows clients use.
    Negotiate,
    /// Kerberos only (its GSS-API token under the `Negotiate` scheme, as pypsrp's `auth="kerberos"`), through the
    /// system's GSSAPI (sspi's with [`WinrmOptions::kdc`]).
    Kerberos,
}

impl fmt::Display for AuthMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Basic => "Basic",
            Self::Ntlm => "NTLM",
            Self::Negotiate => "Negotiate",
            Self::Kerberos => "Kerberos",
        })
    }
}

/// Where the WS-Management service listens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    pub https: bool,
    /// A DNS name or an IP address (IPv6 without brackets).
    pub host: String,
    pub port: u16,
    /// Default `/wsman`.
    pub path: String,
}

impl Endpoint {
    /// `http://host:5985/wsman`.
    pub fn http(host: impl Into<String>) -> Self {
        Self { https: false, host: host.into(), port: DEFAULT_HTTP_PORT, path: "/wsman".to_owned() }
    }

    /// `https://host:5986/wsman`.
    pub fn https(host: impl Into<String>) -> Self {
        Self { https: true, host: host.into(), port: DEFAULT_HTTPS_PORT, path: "/wsman".to_owned() }
    }

    /// Reads `http[s]://host[:port][/path]` (the port defaults to 5985/5986, the path to `/wsman`).
    pub fn parse(url: &str) -> Result<Self, WinrmError> {
        let invalid = |reason: &'static str| WinrmError::InvalidEndpoint { url: url.to_owned(), reason };
        let uri: hyper::Uri = url.parse().map_err(|_| invalid("not a URL"))?;
        let https = match uri.scheme_str() {
            Some(s) if s.eq_ignore_ascii_case("http") => false,
            Some(s) if s.eq_ignore_ascii_case("https") => true,
            _ => return Err(invalid("the scheme must be http or https")),
        };
        let host = uri.host().filter(|h| !h.is_empty()).ok_or_else(|| invalid("no host"))?;
        let host = host.trim_start_matches('[').trim_end_matches(']').to_owned();
        let port = uri.port_u16().unwrap_or(if https { DEFAULT_HTTPS_PORT } else { DEFAULT_HTTP_PORT });
        let path = match uri.path() {
            "" | "/" => "/wsman".to_owned(),
            p => p.to_owned(),
        };
        if uri.query().is_some() {
            return Err(invalid("a query string is not expected"));
        }
        Ok(Self { https, host, port, path })
    }

    /// `host:port`, or `[host]:port` for an IPv6 address: how messages name the server (and the `Host` header).
    pub fn display_addr(&self) -> String {
        if self.host.contains(':') { format!("[{}]:{}", self.host, self.port) } else { format!("{}:{}", self.host, self.port) }
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}{}", if self.https { "https" } else { "http" }, self.display_addr(), self.path)
    }
}

/// Who to log in as. `Debug` never shows the password.
#[derive(Clone)]
pub struct WinrmCredentials {
    /// `DOMAIN\user`, `user@domain.example` or a local `user`. For Kerberos, `REALM\user` and `user@realm` both
    /// name the principal `user@REALM`; a bare `user` is in krb5.conf's default realm.
    pub user: String,
    pub password: SecretString,
}

impl fmt::Debug for WinrmCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WinrmCredentials").field("user", &self.user).field("password", &"<redacted>").finish()
    }
}

/// Where and how to connect.
#[derive(Clone, Debug)]
pub struct WinrmOptions {
    pub endpoint: Endpoint,
    pub credentials: WinrmCredentials,
    pub auth: AuthMethod,
    /// Default [`TlsVerification::Verify`].
    pub tls_verification: TlsVerification,
    /// CA certificates (PEM) trusted besides the system's, for a self-signed or private-CA listener.
    pub ca_file: Option<PathBuf>,
    /// Allows Basic over plain HTTP: the password and every envelope cross the network readable by anyone on the
    /// path (the server must also have `AllowUnencrypted=true`). NTLM, Negotiate and Kerberos seal the envelopes
    /// over HTTP and do not need this.
    pub allow_unencrypted_http: bool,
    /// Send the `tls-server-end-point` channel binding over HTTPS (default true; Windows' `CbtHardeningLevel`
    /// Strict requires it).
    pub channel_binding: bool,
    /// The service of the server's principal name, `WSMAN` (Windows registers `WSMAN/host` and `HTTP/host`).
    pub spn_service: String,
    /// The host of the principal name, when it differs from the endpoint's (an IP address, an alias).
    pub spn_host: Option<String>,
    /// A KDC for Kerberos and Negotiate with a password: `tcp://kdc.example:88`, `udp://…` or a host name. Then
    /// Kerberos is sspi's, the relay talking to this KDC itself, and **not channel-bound** over HTTPS (see the module
    /// docs); `SSPI_KDC_URL` in the environment does the same. None (the default): the system's GSSAPI, with the KDC of
    /// the user's realm from the krb5.conf that `KRB5_CONFIG` names (default `/etc/krb5.conf`) or DNS — bound.
    pub kdc: Option<String>,
    /// Kerberos and Negotiate only: authenticate with the tickets that `kinit` left in the user's ticket cache
    /// (`KRB5CCNAME`, else krb5.conf's `default_ccache_name`) through the system's GSSAPI (MIT krb5), not with the
    /// password. An empty password with Kerberos or Negotiate means the same. The realm and its KDC then come from
    /// krb5.conf (`KRB5_CONFIG`), not from [`WinrmOptions::kdc`]; the user name is only shown in messages.
    pub use_ticket_cache: bool,
    /// Bounds opening a connection: TCP connect, TLS handshake, authentication (default 30 s).
    pub connect_timeout: Duration,
    /// Bounds one request and its answer (default 120 s; a Receive waits up to its OperationTimeout).
    pub request_timeout: Duration,
    /// The largest answer accepted (default 64 MiB).
    pub max_response_bytes: usize,
    /// The NTLM workstation name (default this machine's host name).
    pub computer_name: String,
}

impl WinrmOptions {
    /// Options with the defaults (see each field).
    pub fn new(endpoint: Endpoint, user: impl Into<String>, password: SecretString, auth: AuthMethod) -> Self {
        Self {
            endpoint,
            credentials: WinrmCredentials { user: user.into(), password },
            auth,
            tls_verification: TlsVerification::Verify,
            ca_file: None,
            allow_unencrypted_http: false,
            channel_binding: true,
            spn_service: "WSMAN".to_owned(),
            spn_host: None,
            kdc: None,
            use_ticket_cache: false,
            connect_timeout: Duration::from_secs(30),
            request_timeout: Duration::from_secs(120),
            max_response_bytes: 64 * 1024 * 1024,
            computer_name: local_host_name(),
        }
    }
}

impl WinrmOptions {
    /// Whether Kerberos comes from the ticket cache: [`WinrmOptions::use_ticket_cache`], or Kerberos/Negotiate with an
    /// empty password.
    pub fn uses_ticket_cache(&self) -> bool {
        matches!(self.auth, AuthMethod::Kerberos | AuthMethod::Negotiate)
            && (self.use_ticket_cache || self.credentials.password.expose_secret().is_empty())
    }
}

fn local_host_name() -> String {
    crate::host_name().unwrap_or_else(|| "PSGATE".to_owned())
}

/// What the server answered, for error messages (tokens in `WWW-Authenticate` are left out).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerAnswer {
    pub status: u16,
    /// The challenges offered: `Negotiate`, `Basic realm="WSMAN"`, …
    pub challenges: Vec<String>,
    /// The start of the body, as text.
    pub body: String,
}

impl ServerAnswer {
    fn new(status: StatusCode, headers: &HeaderMap, body: &[u8]) -> Self {
        let challenges = headers
            .get_all(header::WWW_AUTHENTICATE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(split_challenges)
            .map(|c| match c.split_once(' ') {
                // `Negotiate <base64>` → `Negotiate`; `Basic realm="…"` stays whole.
                Some((scheme, rest)) if is_token68(rest.trim()) => scheme.to_owned(),
                _ => c.to_owned(),
            })
            .collect();
        let text = String::from_utf8_lossy(body);
        let text = text.trim();
        let body = match text.char_indices().nth(QUOTE_LIMIT) {
            Some((at, _)) => format!("{}…", &text[..at]),
            None => text.to_owned(),
        };
        Self { status: status.as_u16(), challenges, body }
    }

    fn offers(&self, scheme: &str) -> bool {
        self.challenges.iter().any(|c| c.split(' ').next().is_some_and(|s| s.eq_ignore_ascii_case(scheme)))
    }
}

impl fmt::Display for ServerAnswer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let reason = StatusCode::from_u16(self.status).ok().and_then(|s| s.canonical_reason()).unwrap_or("");
        write!(f, "{} {reason}", self.status)?;
        if !self.challenges.is_empty() {
            write!(f, ", WWW-Authenticate: {}", self.challenges.join(", "))?;
        }
        if !self.body.is_empty() {
            write!(f, ": {}", self.body)?;
        }
        Ok(())
    }
}

/// RFC 7235's token68 (a challenge's token, as opposed to its auth-params): base64-like, `=` only at the end.
fn is_token68(s: &str) -> bool {
    let body = s.trim_end_matches('=');
    !body.is_empty() && body.chars().all(|c| c.is_ascii_alphanumeric() || "-._~+/".contains(c))
}

/// `WWW-Authenticate` values may hold several challenges separated by commas (`Negotiate, Basic realm="x"`).
fn split_challenges(value: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut quoted = false;
    for (i, c) in value.char_indices() {
        match c {
            '"' => quoted = !quoted,
            ',' if !quoted => {
                // A comma inside auth-params (`realm="a", charset=x`) belongs to the challenge before it.
                let next = value[i + 1..].trim_start();
                let next_word = next.split([' ', ',']).next().unwrap_or("");
                if !next_word.contains('=') {
                    out.push(value[start..i].trim());
                    start = i + 1;
                }
            }
            _ => {}
        }
    }
    out.push(value[start..].trim());
    out.into_iter().filter(|c| !c.is_empty()).collect()
}

/// Why authentication failed.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum AuthFailure {
    /// The server refused the credentials: a wrong password, an unknown or locked account, a refused channel
    /// binding, or an account that may not use this endpoint.
    Rejected(ServerAnswer),
    /// The server does not offer this method.
    NotOffered(ServerAnswer),
    /// The security package could not go on: a user name it cannot use, a token it cannot read, a KDC error.
    Package(String),
    /// The server stopped the exchange before it was complete.
    Incomplete(ServerAnswer),
}

impl fmt::Display for AuthFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Rejected(answer) => write!(f, "the server refused the credentials ({answer})"),
            Self::NotOffered(answer) => write!(f, "the server does not offer it ({answer})"),
            Self::Package(message) => f.write_str(message),
            Self::Incomplete(answer) => write!(f, "the server ended the exchange before it completed ({answer})"),
        }
    }
}

/// Authentication failed. Never holds the password.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{method} authentication as {user} to {endpoint} failed: {failure}")]
pub struct AuthError {
    pub method: AuthMethod,
    pub user: String,
    pub endpoint: String,
    pub failure: AuthFailure,
}

/// Why a request could not be made. The messages are written for an administrator.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WinrmError {
    #[error("invalid WinRM endpoint {url:?}: {reason}")]
    InvalidEndpoint { url: String, reason: &'static str },
    #[error(
        "refusing Basic authentication over plain HTTP to {endpoint}: the password and every message would cross the \
         network unencrypted — use HTTPS, or NTLM/Negotiate/Kerberos (which encrypt the messages), or allow \
         unencrypted HTTP explicitly"
    )]
    BasicOverHttp { endpoint: String },
    #[error("cannot use the CA file {}: {reason}", .path.display())]
    CaFile { path: PathBuf, reason: String },
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{addr} timed out after {} s ({stage})", .after.as_secs_f32())]
    Timeout { addr: String, after: Duration, stage: &'static str },
    #[error(
        "the TLS certificate of {host} is refused: {problem} — give its CA with a CA file, or (lab only) accept \
         invalid certificates"
    )]
    Certificate { host: String, problem: CertificateProblem },
    #[error("the TLS handshake with {addr} failed: {reason}")]
    Tls { addr: String, reason: String },
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error("the connection to {addr} was lost: {reason}")]
    ConnectionLost { addr: String, reason: String },
    #[error("HTTP error with {addr}: {reason}")]
    Http { addr: String, reason: String },
    #[error("{addr} answered {answer} during {stage}")]
    UnexpectedStatus { addr: String, stage: &'static str, answer: ServerAnswer },
    #[error("the answer from {addr} exceeds {limit} bytes")]
    ResponseTooLarge { addr: String, limit: usize },
    #[error("message encryption with {addr} failed: {reason}")]
    Encryption { addr: String, reason: String },
}

/// An answer, unsealed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WinrmResponse {
    /// 200 for a response envelope, 500 for a SOAP fault; others come from the HTTP server itself.
    pub status: u16,
    pub body: Vec<u8>,
    /// Whether it came sealed (MS-WSMV 2.2.9.1). A session that seals refuses a plain 2xx answer; a plain error
    /// answer (from HTTP.sys itself) is passed on.
    pub sealed: bool,
}

/// Counters for the life of a [`WinrmClient`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConnectionStats {
    /// TCP connections opened.
    pub connections: u64,
    /// Completed NTLM/Negotiate/Kerberos handshakes.
    pub handshakes: u64,
    /// Envelopes sent (a resend after a closed connection counts again).
    pub requests: u64,
    /// How long the last connection took to open and authenticate.
    pub last_connect: Option<Duration>,
}

/// How the live connection authenticates its requests.
enum Session {
    /// An `Authorization: Basic` header on every request.
    Basic(HeaderValue),
    /// Authenticated by a security context; over HTTPS nothing more is needed per request (TLS protects them).
    Authenticated,
    /// Over HTTP: every envelope sealed with the context.
    Sealed(Box<SecurityContext>, SealProtocol),
}

struct Live {
    http: HttpConnection,
    session: Session,
}

/// A WinRM endpoint reached over one connection at a time. Requests are sequential (`&mut self`).
pub struct WinrmClient {
    options: WinrmOptions,
    tls: Option<std::sync::Arc<rustls::ClientConfig>>,
    live: Option<Live>,
    stats: ConnectionStats,
}

impl fmt::Debug for WinrmClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WinrmClient")
            .field("endpoint", &self.options.endpoint.to_string())
            .field("auth", &self.options.auth)
            .field("user", &self.options.credentials.user)
            .field("connected", &self.is_connected())
            .field("stats", &self.stats)
            .finish()
    }
}

impl WinrmClient {
    /// Checks the options (Basic over HTTP, the CA file) without connecting.
    pub fn new(options: WinrmOptions) -> Result<Self, WinrmError> {
        let endpoint = &options.endpoint;
        if !endpoint.https && options.auth == AuthMethod::Basic && !options.allow_unencrypted_http {
            return Err(WinrmError::BasicOverHttp { endpoint: endpoint.to_string() });
        }
        let tls = if endpoint.https {
            Some(tls::client_config(options.tls_verification, options.ca_file.as_deref())?)
        } else {
            None
        };
        Ok(Self { options, tls, live: None, stats: ConnectionStats::default() })
    }

    pub fn options(&self) -> &WinrmOptions {
        &self.options
    }

    pub fn stats(&self) -> ConnectionStats {
        self.stats
    }

    /// Whether a connection is open (the server may still close it at any time).
    pub fn is_connected(&self) -> bool {
        self.live.as_ref().is_some_and(|l| !l.http.is_closed())
    }

    /// Closes the connection; the next request opens a new one.
    pub fn disconnect(&mut self) {
        if self.live.take().is_some() {
            debug!(endpoint = %self.options.endpoint, "winrm connection closed by us");
        }
    }

    /// Opens and authenticates a connection now, if none is open (a request does it when needed).
    pub async fn connect(&mut self) -> Result<(), WinrmError> {
        if !self.is_connected() {
            let live = self.open().await?;
            self.live = Some(live);
        }
        Ok(())
    }

    /// POSTs `soap` and returns the answer, within [`WinrmOptions::request_timeout`].
    pub async fn send(&mut self, soap: &[u8]) -> Result<WinrmResponse, WinrmError> {
        let timeout = self.options.request_timeout;
        self.send_with_timeout(soap, timeout).await
    }

    /// POSTs `soap` and returns the answer within `timeout` (opening a connection first is bounded by
    /// [`WinrmOptions::connect_timeout`]).
    pub async fn send_with_timeout(&mut self, soap: &[u8], timeout: Duration) -> Result<WinrmResponse, WinrmError> {
        let addr = self.options.endpoint.display_addr();
        for attempt in 0..2 {
            let mut live = match self.live.take() {
                Some(live) if !live.http.is_closed() => live,
                Some(_) => {
                    debug!(%addr, "winrm connection closed by the server; reconnecting");
                    self.open().await?
                }
                None => self.open().await?,
            };
            let request = self.envelope_request(&mut live.session, soap)?;
            self.stats.requests += 1;
            let raw = match live.http.send(request, self.options.max_response_bytes, timeout).await {
                Ok(raw) => raw,
                Err(SendError::NotSent) if attempt == 0 => {
                    debug!(%addr, "winrm connection closed before the request went out; reconnecting");
                    continue;
                }
                Err(SendError::NotSent) => {
                    return Err(WinrmError::ConnectionLost {
                        addr,
                        reason: "the server closes every connection before a request".to_owned(),
                    });
                }
                Err(SendError::Failed(e)) => return Err(e),
            };
            if raw.status == StatusCode::UNAUTHORIZED {
                let answer = ServerAnswer::new(raw.status, &raw.headers, &raw.body);
                // The request was not processed. A context the server no longer knows (it restarted, or the
                // connection was re-established behind a proxy) gets one fresh handshake.
                if attempt == 0 && !matches!(live.session, Session::Basic(_)) {
                    warn!(%addr, status = answer.status, "winrm authentication lost; authenticating again");
                    continue;
                }
                return Err(self.auth_error(AuthFailure::Rejected(answer)).into());
            }
            // A connection whose answer cannot be unsealed is out of step: it is not kept.
            let response = read_response(&mut live.session, raw, &addr)?;
            debug!(%addr, status = response.status, bytes = response.body.len(), sealed = response.sealed, "winrm answer");
            self.live = Some(live);
            return Ok(response);
        }
        Err(WinrmError::ConnectionLost { addr, reason: "the server closed the new connection too".to_owned() })
    }

    fn auth_error(&self, failure: AuthFailure) -> AuthError {
        AuthError {
            method: self.options.auth,
            user: self.options.credentials.user.clone(),
            endpoint: self.options.endpoint.to_string(),
            failure,
        }
    }

    /// Connects and authenticates within the connect timeout.
    async fn open(&mut self) -> Result<Live, WinrmError> {
        let started = Instant::now();
        let addr = self.options.endpoint.display_addr();
        let timeout = self.options.connect_timeout;
        let stage = std::sync::Mutex::new("connecting");
        let result = tokio::time::timeout(timeout, self.establish(&stage)).await;
        let live = match result {
            Ok(result) => result?,
            Err(_) => {
                let stage = *stage.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                warn!(%addr, stage, "winrm connect timed out");
                return Err(WinrmError::Timeout { addr, after: timeout, stage });
            }
        };
        self.stats.last_connect = Some(started.elapsed());
        info!(
            endpoint = %self.options.endpoint,
            auth = %self.options.auth,
            user = %self.options.credentials.user,
            ms = started.elapsed().as_millis() as u64,
            "winrm connected"
        );
        Ok(live)
    }

    async fn establish(&mut self, stage: &std::sync::Mutex<&'static str>) -> Result<Live, WinrmError> {
        let set_stage = |s| *stage.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = s;
        set_stage(if self.options.endpoint.https { "TCP connect and TLS handshake" } else { "TCP connect" });
        let mut http = HttpConnection::connect(&self.options.endpoint, self.tls.as_ref()).await?;
        self.stats.connections += 1;
        let session = match self.options.auth {
            AuthMethod::Basic => {
                let credentials = &self.options.credentials;
                if credentials.user.contains(':') {
                    // RFC 7617: the user-id ends at the first colon.
                    return Err(self.auth_error(AuthFailure::Package("a Basic user name cannot hold a colon".into())).into());
                }
                let raw = format!("{}:{}", credentials.user, credentials.password.expose_secret());
                let mut value = HeaderValue::from_str(&format!("Basic {}", BASE64.encode(raw.as_bytes())))
                    .map_err(|_| self.auth_error(AuthFailure::Package("the user name cannot go in a header".into())))?;
                value.set_sensitive(true);
                Session::Basic(value)
            }
            AuthMethod::Ntlm | AuthMethod::Negotiate | AuthMethod::Kerberos => {
                set_stage("authentication");
                let context = self.handshake(&mut http).await?;
                self.stats.handshakes += 1;
                if self.options.endpoint.https {
                    Session::Authenticated
                } else {
                    Session::Sealed(Box::new(context), SealProtocol::Spnego)
                }
            }
        };
        Ok(Live { http, session })
    }

    /// The NTLM/SPNEGO/Kerberos exchange on empty POSTs.
    async fn handshake(&self, http: &mut HttpConnection) -> Result<SecurityContext, WinrmError> {
        let options = &self.options;
        let addr = options.endpoint.display_addr();
        let package = |e: sspi::Error| self.auth_error(AuthFailure::Package(format!("{}: {}", options.auth, e.description)));
        let channel_binding = match (&http.peer_certificate, options.channel_binding) {
            (Some(cert), true) => Some(tls::tls_server_end_point(cert)),
            _ => None,
        };
        let spn_host = options.spn_host.clone().unwrap_or_else(|| options.endpoint.host.clone());
        let mut context = SecurityContext::new(ContextConfig {
            method: options.auth,
            user: &options.credentials.user,
            password: &options.credentials.password,
            target: format!("{}/{spn_host}", options.spn_service),
            computer_name: options.computer_name.clone(),
            kdc: options.kdc.as_deref(),
            channel_binding,
            kdc_timeout: options.connect_timeout,
            ticket_cache: options.uses_ticket_cache(),
        })
        .map_err(package)?;
        let mut token = context.step(None).await.map_err(package)?;
        for _ in 0..MAX_AUTH_ROUNDS {
            let Some(out) = token.take() else {
                return Err(self.auth_error(AuthFailure::Package("the security package produced no token".into())).into());
            };
            let mut authorization = HeaderValue::from_str(&format!("Negotiate {}", BASE64.encode(&out)))
                .map_err(|_| self.auth_error(AuthFailure::Package("a token cannot go in a header".into())))?;
            authorization.set_sensitive(true);
            let request = self.request(Bytes::new(), None, Some(authorization))?;
            let raw = match http.send(request, options.max_response_bytes, options.connect_timeout).await {
                Ok(raw) => raw,
                Err(SendError::NotSent) => {
                    return Err(WinrmError::ConnectionLost {
                        addr,
                        reason: "the server closed the connection during authentication".to_owned(),
                    });
                }
                Err(SendError::Failed(e)) => return Err(e),
            };
            let server_token = negotiate_token(&raw.headers)
                .map_err(|reason| self.auth_error(AuthFailure::Package(reason)))?;
            let answer = || ServerAnswer::new(raw.status, &raw.headers, &raw.body);
            if raw.status == StatusCode::UNAUTHORIZED {
                match server_token {
                    Some(server_token) if !context.is_complete() => {
                        token = context.step(Some(&server_token)).await.map_err(package)?;
                    }
                    _ => {
                        let answer = answer();
                        let failure = if answer.offers("Negotiate") || answer.offers("Kerberos") || answer.offers("NTLM") {
                            AuthFailure::Rejected(answer)
                        } else {
                            AuthFailure::NotOffered(answer)
                        };
                        return Err(self.auth_error(failure).into());
                    }
                }
            } else if raw.status.is_success() {
                // The final token (Kerberos' AP-REP, SPNEGO's accept-completed and mechListMIC) comes with the 200.
                if let Some(server_token) = server_token.filter(|_| !context.is_complete()) {
                    context.step(Some(&server_token)).await.map_err(package)?;
                }
                if !context.is_complete() {
                    // As pypsrp: a server that accepts without its final token is taken at its word.
                    debug!(%addr, "the server accepted the authentication without a final token");
                }
                return Ok(context);
            } else {
                return Err(WinrmError::UnexpectedStatus { addr, stage: "authentication", answer: answer() });
            }
        }
        Err(self
            .auth_error(AuthFailure::Package(format!("the exchange did not end after {MAX_AUTH_ROUNDS} round trips")))
            .into())
    }

    /// A POST to the endpoint.
    fn request(
        &self,
        body: Bytes,
        content_type: Option<&str>,
        authorization: Option<HeaderValue>,
    ) -> Result<Request<Full<Bytes>>, WinrmError> {
        let endpoint = &self.options.endpoint;
        let mut builder = Request::post(endpoint.path.as_str())
            .header(header::HOST, endpoint.display_addr())
            .header(header::USER_AGENT, concat!("psgate/", env!("CARGO_PKG_VERSION")))
            // IIS-hosted endpoints (Exchange) compress otherwise.
            .header(header::ACCEPT_ENCODING, "identity")
            .header(header::CONTENT_LENGTH, body.len());
        if let Some(content_type) = content_type {
            builder = builder.header(header::CONTENT_TYPE, content_type);
        }
        if let Some(authorization) = authorization {
            builder = builder.header(header::AUTHORIZATION, authorization);
        }
        builder
            .body(Full::new(body))
            .map_err(|e| WinrmError::Http { addr: endpoint.display_addr(), reason: format!("cannot build a request: {e}") })
    }

    /// The request for an envelope on this session: sealed over HTTP, with the Basic header for Basic.
    fn envelope_request(&self, session: &mut Session, soap: &[u8]) -> Result<Request<Full<Bytes>>, WinrmError> {
        match session {
            Session::Basic(header) => {
                self.request(Bytes::copy_from_slice(soap), Some(SOAP_CONTENT_TYPE), Some(header.clone()))
            }
            Session::Authenticated => self.request(Bytes::copy_from_slice(soap), Some(SOAP_CONTENT_TYPE), None),
            Session::Sealed(context, protocol) => {
                let addr = self.options.endpoint.display_addr();
                let mut parts = Vec::new();
                for chunk in protocol.chunks(soap) {
                    let (header, sealed) = context
                        .wrap(chunk)
                        .map_err(|e| WinrmError::Encryption { addr: addr.clone(), reason: e.to_string() })?;
                    // The plaintext's length plus the cipher's padding (none for NTLM's RC4 or AES-CTS).
                    let original_length = chunk.len().max(sealed.len());
                    parts.push(SealedPart { original_length, header, sealed });
                }
                let body = encryption::encode(*protocol, &parts);
                let content_type = protocol.content_type(soap.len());
                self.request(Bytes::from(body), Some(&content_type), None)
            }
        }
    }
}

/// The unsealed answer.
fn read_response(session: &mut Session, raw: RawResponse, addr: &str) -> Result<WinrmResponse, WinrmError> {
    let status = raw.status.as_u16();
    let content_type = raw.headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default();
    let encryption_error = |reason: String| WinrmError::Encryption { addr: addr.to_owned(), reason };
    if let Some(encrypted) = encryption::parse_content_type(content_type) {
        let Session::Sealed(context, _) = session else {
            return Err(encryption_error("an encrypted answer on a connection that does not seal".to_owned()));
        };
        let parts = encryption::decode(&raw.body, &encrypted.boundary).map_err(|e| encryption_error(e.to_string()))?;
        let mut body = Vec::with_capacity(raw.body.len());
        for part in parts {
            let plain = context
                .unwrap(&part.header, &part.sealed)
                .map_err(|e| encryption_error(format!("cannot unseal the answer: {e}")))?;
            if plain.len() != part.original_length {
                return Err(encryption_error(format!(
                    "the answer unseals to {} bytes where it announces {}",
                    plain.len(),
                    part.original_length
                )));
            }
            body.extend_from_slice(&plain);
        }
        return Ok(WinrmResponse { status, body, sealed: true });
    }
    if matches!(session, Session::Sealed(..)) && raw.status.is_success() && !raw.body.is_empty() {
        return Err(encryption_error("the server answered in plain text on an encrypted connection".to_owned()));
    }
    Ok(WinrmResponse { status, body: raw.body.to_vec(), sealed: false })
}

/// The token of a `Negotiate` (or `Kerberos`, `NTLM`) challenge, if the server sent one.
fn negotiate_token(headers: &HeaderMap) -> Result<Option<Vec<u8>>, String> {
    for value in headers.get_all(header::WWW_AUTHENTICATE).iter().filter_map(|v| v.to_str().ok()) {
        for challenge in split_challenges(value) {
            let Some((scheme, token)) = challenge.split_once(' ') else { continue };
            if ["Negotiate", "Kerberos", "NTLM"].iter().any(|s| scheme.eq_ignore_ascii_case(s)) {
                let token = token.trim();
                if token.is_empty() {
                    continue;
                }
                return BASE64
                    .decode(token)
                    .map(Some)
                    .map_err(|e| format!("the server's {scheme} token is not base64: {e}"));
            }
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_parse_with_defaults() {
        let e = Endpoint::parse("http://127.0.0.1:40001/wsman").expect("parse");
        assert_eq!(e, Endpoint { https: false, host: "127.0.0.1".into(), port: 40001, path: "/wsman".into() });
        let e = Endpoint::parse("HTTPS://srv01.corp.example").expect("parse");
        assert_eq!((e.https, e.port, e.path.as_str()), (true, 5986, "/wsman"));
        let e = Endpoint::parse("https://[::1]/wsman").expect("parse");
        assert_eq!((e.host.as_str(), e.display_addr()), ("::1", "[::1]:5986".to_owned()));
        assert_eq!(e.to_string(), "https://[::1]:5986/wsman");
        for bad in ["ftp://x/wsman", "srv01", "http:///wsman", "http://x/wsman?a=b"] {
            assert!(matches!(Endpoint::parse(bad), Err(WinrmError::InvalidEndpoint { .. })), "{bad}");
        }
    }

    #[test]
    fn basic_over_http_is_refused_unless_allowed() {
        let options = WinrmOptions::new(Endpoint::http("h"), "u", SecretString::from("pw-123"), AuthMethod::Basic);
        let err = WinrmClient::new(options.clone()).expect_err("refused");
        assert!(matches!(err, WinrmError::BasicOverHttp { .. }), "{err}");
        assert!(!err.to_string().contains("pw-123"));
        let allowed = WinrmOptions { allow_unencrypted_http: true, ..options.clone() };
        assert!(WinrmClient::new(allowed).is_ok());
        let ntlm = WinrmOptions { auth: AuthMethod::Ntlm, ..options };
        assert!(WinrmClient::new(ntlm).is_ok());
    }

    #[test]
    fn secrets_are_not_debug_printed() {
        let options = WinrmOptions::new(Endpoint::http("h"), "PSGATE\\ada", SecretString::from("hunter2"), AuthMethod::Ntlm);
        assert!(!format!("{options:?}").contains("hunter2"));
        let client = WinrmClient::new(options).expect("client");
        assert!(!format!("{client:?}").contains("hunter2"));
    }

    #[test]
    fn an_empty_password_means_the_ticket_cache_for_kerberos_and_negotiate() {
        let with = |auth, password: &str| WinrmOptions::new(Endpoint::http("h"), "ada", SecretString::from(password), auth);
        assert!(with(AuthMethod::Kerberos, "").uses_ticket_cache());
        assert!(with(AuthMethod::Negotiate, "").uses_ticket_cache());
        assert!(!with(AuthMethod::Kerberos, "pw").uses_ticket_cache());
        assert!(!with(AuthMethod::Ntlm, "").uses_ticket_cache(), "NTLM has no ticket cache");
        let explicit = WinrmOptions { use_ticket_cache: true, ..with(AuthMethod::Kerberos, "pw") };
        assert!(explicit.uses_ticket_cache());
        let basic = WinrmOptions { use_ticket_cache: true, ..with(AuthMethod::Basic, "") };
        assert!(!basic.uses_ticket_cache());
    }

    #[test]
    fn challenges_and_tokens() {
        let mut headers = HeaderMap::new();
        headers.append(header::WWW_AUTHENTICATE, HeaderValue::from_static("Negotiate"));
        headers.append(header::WWW_AUTHENTICATE, HeaderValue::from_static("Basic realm=\"WSMAN\""));
        assert_eq!(negotiate_token(&headers), Ok(None));
        let answer = ServerAnswer::new(StatusCode::UNAUTHORIZED, &headers, b"");
        assert_eq!(answer.challenges, ["Negotiate", "Basic realm=\"WSMAN\""]);
        assert_eq!(answer.to_string(), "401 Unauthorized, WWW-Authenticate: Negotiate, Basic realm=\"WSMAN\"");
        assert!(answer.offers("negotiate") && answer.offers("Basic") && !answer.offers("Kerberos"));

        let mut headers = HeaderMap::new();
        headers.append(header::WWW_AUTHENTICATE, HeaderValue::from_static("Negotiate TlRMTVNTUAACAAAA, Basic realm=\"a, b\""));
        assert_eq!(negotiate_token(&headers), Ok(Some(b"NTLMSSP\0\x02\0\0\0".to_vec())));
        let answer = ServerAnswer::new(StatusCode::UNAUTHORIZED, &headers, &[b'x'; 2000]);
        assert_eq!(answer.challenges, ["Negotiate", "Basic realm=\"a, b\""], "tokens are left out");
        assert!(answer.body.chars().count() <= QUOTE_LIMIT + 1);

        let mut headers = HeaderMap::new();
        headers.append(header::WWW_AUTHENTICATE, HeaderValue::from_static("Negotiate !!notbase64"));
        assert!(negotiate_token(&headers).is_err());
    }
}
