//! The SSH transport: opens the `powershell` subsystem on a host and hands back its byte stream.
//!
//! Over the stream runs the out-of-process protocol (`protocol.md` §6): one XML element per `\n`-terminated line,
//! the same as `ssh -s host powershell`. This module only moves bytes; it knows nothing of PSRP.
//!
//! Host keys are checked against an OpenSSH `known_hosts` file, the way `ssh` does: plain and hashed (`|1|…`)
//! entries, `[host]:port` for ports other than 22, `*`/`?` wildcards, `!` negation and `@revoked`. A key that
//! differs from the recorded one is always refused; an unknown host is refused under [`HostKeyPolicy::Strict`] and
//! recorded under [`HostKeyPolicy::AcceptNew`] (like `StrictHostKeyChecking accept-new`).
//!
//! Closing: read until end of file, then [`SshStream::close`] (or drop the stream). `shutdown()` half-closes (sends
//! SSH EOF) like a TCP stream: the subsystem sees the end of its standard input and reading goes on.

use std::borrow::Cow;
use std::fmt;
use std::future::{Future, poll_fn};
use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Waker, ready};
use std::time::Duration;

use hmac::{Hmac, KeyInit as _, Mac as _};
use russh::client::{self, AuthResult, DisconnectReason, Handle, Msg};
use russh::keys::ssh_key::known_hosts::{Entry, HostPatterns, Marker};
use russh::keys::ssh_key::public::KeyData;
use russh::keys::{Algorithm, HashAlg, PrivateKey, PrivateKeyWithHashAlg, PublicKey, PublicKeyOrCertificate};
use russh::{ChannelMsg, ChannelReadHalf, ChannelWriteHalf, Disconnect, Preferred, SshId};
use secrecy::{ExposeSecret as _, SecretString};
use sha1::Sha1;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tracing::{debug, info, trace, warn};

/// How long [`SshStream::close`] waits for the subsystem to end after our EOF before closing the channel itself.
const CLOSE_GRACE: Duration = Duration::from_secs(3);
/// The most of the subsystem's standard error kept for [`SubsystemExit::stderr`].
const STDERR_TAIL: usize = 4096;

/// Where and how to open the subsystem.
#[derive(Clone, Debug)]
pub struct SshOptions {
    pub host: String,
    /// Default 22.
    pub port: u16,
    pub user: String,
    pub auth: SshAuth,
    /// An OpenSSH `known_hosts` file; default [`default_known_hosts`]. A missing file is an empty one.
    pub known_hosts: PathBuf,
    pub host_key_policy: HostKeyPolicy,
    /// Default `powershell`.
    pub subsystem: String,
    /// Bounds everything [`open_subsystem`] does: TCP connect, key exchange, authentication, the subsystem request.
    pub connect_timeout: Duration,
}

impl SshOptions {
    /// Options with the defaults: port 22, [`default_known_hosts`], [`HostKeyPolicy::Strict`], subsystem
    /// `powershell`, a 15 s connect timeout.
    pub fn new(host: impl Into<String>, user: impl Into<String>, auth: SshAuth) -> Self {
        Self {
            host: host.into(),
            port: 22,
            user: user.into(),
            auth,
            known_hosts: default_known_hosts(),
            host_key_policy: HostKeyPolicy::Strict,
            subsystem: "powershell".to_owned(),
            connect_timeout: Duration::from_secs(15),
        }
    }

    /// `host:port`, or `[host]:port` for an IPv6 address: how messages name the host.
    pub fn display_addr(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// `~/.ssh/known_hosts`, the file `ssh` reads (falls back to `.ssh/known_hosts` when there is no home directory).
pub fn default_known_hosts() -> PathBuf {
    std::env::home_dir().unwrap_or_default().join(".ssh").join("known_hosts")
}

/// How to authenticate. Debug output never shows a password or a passphrase.
#[derive(Clone)]
pub enum SshAuth {
    Password(SecretString),
    /// A private key file in OpenSSH (or PEM/PKCS#8) format: Ed25519, ECDSA or RSA. RSA signs with rsa-sha2-512 or
    /// rsa-sha2-256, never SHA-1 `ssh-rsa`.
    Key {
        path: PathBuf,
        passphrase: Option<SecretString>,
    },
}

impl fmt::Debug for SshAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Password(_) => f.write_str("Password(<redacted>)"),
            Self::Key { path, passphrase } => f
                .debug_struct("Key")
                .field("path", path)
                .field("passphrase", &passphrase.as_ref().map(|_| "<redacted>"))
                .finish(),
        }
    }
}

/// What to do with a host key that `known_hosts` does not hold. A key that differs from the recorded one is always
/// refused.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum HostKeyPolicy {
    /// Refuse the host (`StrictHostKeyChecking yes`).
    #[default]
    Strict,
    /// Append the key to `known_hosts`, then connect (`StrictHostKeyChecking accept-new`).
    AcceptNew,
}

/// Why the subsystem could not be opened. The messages are written for an administrator.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SshError {
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        addr: String,
        #[source]
        source: io::Error,
    },
    #[error("connecting to {addr} timed out after {} s ({stage})", .after.as_secs_f32())]
    Timeout { addr: String, after: Duration, stage: &'static str },
    #[error(
        "the host key for {host} is not known ({fingerprint}); refusing to connect — add it to {} \
         (for example from `ssh-keyscan`) or allow new host keys",
        .known_hosts.display()
    )]
    UnknownHostKey { host: String, fingerprint: String, known_hosts: PathBuf },
    #[error(
        "the host key for {host} has CHANGED ({fingerprint}); refusing to connect — remove the old key from {} \
         line {known_hosts_line} if the change is expected",
        .known_hosts.display()
    )]
    ChangedHostKey { host: String, fingerprint: String, known_hosts: PathBuf, known_hosts_line: usize },
    #[error(
        "the host key for {host} ({fingerprint}) is marked @revoked in {} line {known_hosts_line}; refusing to connect",
        .known_hosts.display()
    )]
    RevokedHostKey { host: String, fingerprint: String, known_hosts: PathBuf, known_hosts_line: usize },
    #[error("cannot use the known_hosts file {}: {source}", .path.display())]
    KnownHosts {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot use the private key {}: {reason}", .path.display())]
    KeyFile { path: PathBuf, reason: String },
    #[error(
        "authentication failed for user {user} on {host} (tried {}; the server accepts {})",
        .methods_tried.join(", "), list_or_none(.server_methods)
    )]
    AuthFailed { user: String, host: String, methods_tried: Vec<String>, server_methods: Vec<String> },
    #[error(
        "{host} refused the SSH subsystem \"{name}\" — its sshd_config needs a line like \
         `Subsystem {name} /usr/bin/pwsh -sshs -NoLogo -NoProfile`"
    )]
    SubsystemRefused { host: String, name: String },
    #[error("the SSH connection closed: {reason}")]
    ConnectionLost { reason: String },
    #[error("SSH protocol error: {0}")]
    Protocol(String),
}

fn list_or_none(methods: &[String]) -> String {
    if methods.is_empty() { "none".to_owned() } else { methods.join(", ") }
}

impl From<russh::Error> for SshError {
    fn from(e: russh::Error) -> Self {
        let lost = |reason: &str| Self::ConnectionLost { reason: reason.to_owned() };
        match e {
            russh::Error::Disconnect | russh::Error::HUP => {
                lost("the server closed the TCP connection without an SSH disconnect message")
            }
            russh::Error::KeepaliveTimeout => lost("the server stopped answering keepalives"),
            russh::Error::InactivityTimeout => lost("nothing was received for too long"),
            russh::Error::IO(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                lost("the server closed the TCP connection without an SSH disconnect message")
            }
            russh::Error::IO(e) => Self::ConnectionLost { reason: e.to_string() },
            other => Self::Protocol(other.to_string()),
        }
    }
}

/// How the subsystem ended, as far as the server said (from [`SshStream::close`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SubsystemExit {
    /// The exit status, if the subsystem ended before the channel closed.
    pub exit_status: Option<u32>,
    /// The signal that ended it, if one did.
    pub exit_signal: Option<String>,
    /// The end of what it wrote to standard error (at most 4 KiB, lossy UTF-8).
    pub stderr: String,
}

/// Connects, checks the host key, authenticates and opens `opts.subsystem`, all within `opts.connect_timeout`.
pub async fn open_subsystem(opts: &SshOptions) -> Result<SshStream, SshError> {
    let stage = Mutex::new("connecting");
    match tokio::time::timeout(opts.connect_timeout, establish(opts, &stage)).await {
        Ok(result) => result,
        Err(_) => {
            let stage = *stage.lock().unwrap_or_else(PoisonError::into_inner);
            warn!(addr = %opts.display_addr(), stage, "ssh connect timed out");
            Err(SshError::Timeout { addr: opts.display_addr(), after: opts.connect_timeout, stage })
        }
    }
}

async fn establish(opts: &SshOptions, stage: &Mutex<&'static str>) -> Result<SshStream, SshError> {
    let set_stage = |s| *stage.lock().unwrap_or_else(PoisonError::into_inner) = s;
    let addr = opts.display_addr();
    let lookup = known_hosts_name(&opts.host, opts.port);
    let known = read_known_hosts(&opts.known_hosts, &lookup).await?;
    // Load the key before connecting: a wrong passphrase should not cost a connection.
    let credential = match &opts.auth {
        SshAuth::Key { path, passphrase } => {
            set_stage("loading the private key");
            Credential::Key { path, key: Arc::new(load_key(path, passphrase.clone()).await?) }
        }
        SshAuth::Password(password) => Credential::Password(password),
    };

    let config = client::Config {
        client_id: SshId::Standard(Cow::Owned(format!("SSH-2.0-psgate_{}", env!("CARGO_PKG_VERSION")))),
        preferred: Preferred { key: Cow::Owned(host_key_preference(&known)), ..Preferred::default() },
        // The out-of-process protocol is small lines, answered one by one: no Nagle delay.
        nodelay: true,
        // Idle PowerShell sessions are normal; keepalives find a dead peer (3 unanswered × 30 s).
        keepalive_interval: Some(Duration::from_secs(30)),
        keepalive_max: 3,
        // Ends the connection's task if a server stalls the handshake (keepalives start after it); an established
        // connection gets keepalive answers well within this.
        inactivity_timeout: Some(Duration::from_secs(150)),
        ..client::Config::default()
    };
    let disconnect_reason = Arc::new(Mutex::new(None));
    let handler = ClientHandler {
        addr: addr.clone(),
        lookup,
        known_hosts: opts.known_hosts.clone(),
        known,
        policy: opts.host_key_policy,
        disconnect_reason: Arc::clone(&disconnect_reason),
    };

    set_stage("connecting");
    debug!(%addr, "ssh tcp connect");
    let tcp = tokio::net::TcpStream::connect((opts.host.as_str(), opts.port))
        .await
        .map_err(|source| SshError::Connect { addr: addr.clone(), source })?;

    let session = async {
        set_stage("key exchange");
        let mut handle = client::connect_stream(Arc::new(config), tcp, handler).await?;
        info!(%addr, "ssh connected");

        set_stage("authentication");
        authenticate(&mut handle, opts, credential, &addr).await?;

        set_stage("opening the subsystem");
        let channel = handle.channel_open_session().await?;
        channel.request_subsystem(true, opts.subsystem.as_str()).await?;
        let (mut read_half, write_half) = channel.split();
        // Output that comes before the reply (it should not) is kept for the first read.
        let mut early = Vec::new();
        loop {
            match read_half.wait().await {
                Some(ChannelMsg::Success) => break,
                Some(ChannelMsg::Failure) => {
                    warn!(%addr, subsystem = %opts.subsystem, "ssh subsystem refused");
                    let _ = write_half.close().await;
                    let _ = handle.disconnect(Disconnect::ByApplication, "subsystem refused", "en").await;
                    return Err(SshError::SubsystemRefused { host: addr.clone(), name: opts.subsystem.clone() });
                }
                Some(ChannelMsg::Data { data }) => early.extend_from_slice(&data),
                Some(ChannelMsg::Close | ChannelMsg::Eof) | None => {
                    return Err(SshError::ConnectionLost {
                        reason: "the server closed the channel while the subsystem was starting".to_owned(),
                    });
                }
                Some(other) => trace!(?other, "ssh channel message while requesting the subsystem"),
            }
        }
        Ok((handle, read_half, write_half, early))
    };
    let (handle, read_half, write_half, early) =
        session.await.map_err(|e| match (e, take_reason(&disconnect_reason)) {
            // A request that failed because the server hung up: say why it did.
            (SshError::Protocol(_) | SshError::ConnectionLost { .. }, Some(reason)) => {
                SshError::ConnectionLost { reason }
            }
            (e, _) => e,
        })?;
    info!(%addr, subsystem = %opts.subsystem, user = %opts.user, "ssh subsystem opened");

    let writer = Box::pin(write_half.make_writer());
    Ok(SshStream {
        rx: Rx::Idle(read_half),
        pending: early.into(),
        writer,
        conn: Some(Conn { handle, channel: write_half }),
        addr,
        subsystem: opts.subsystem.clone(),
        remote: Remote::Open,
        eof_sent: false,
        write_waker: None,
        exit: SubsystemExit::default(),
        stderr_tail: Vec::new(),
        disconnect_reason,
    })
}

/// A loaded credential.
enum Credential<'a> {
    Password(&'a SecretString),
    Key { path: &'a Path, key: Arc<PrivateKey> },
}

async fn authenticate(
    handle: &mut Handle<ClientHandler>,
    opts: &SshOptions,
    credential: Credential<'_>,
    addr: &str,
) -> Result<(), SshError> {
    let (result, mut method) = match credential {
        Credential::Key { path, key } => {
            let hash = if key.algorithm().is_rsa() {
                // OpenSSH ≥ 8.8 refuses SHA-1 signatures: take what server-sig-algs offers, else SHA-512.
                match handle.best_supported_rsa_hash().await? {
                    Some(Some(hash)) => Some(hash),
                    _ => Some(HashAlg::Sha512),
                }
            } else {
                None
            };
            let key = PrivateKeyWithHashAlg::new(key, hash);
            let method = format!("publickey ({} key {})", key.algorithm(), path.display());
            (handle.authenticate_publickey(opts.user.as_str(), key).await?, method)
        }
        Credential::Password(password) => (
            handle.authenticate_password(opts.user.as_str(), password.expose_secret().to_owned()).await?,
            "password".to_owned(),
        ),
    };
    match result {
        AuthResult::Success => {
            info!(%addr, user = %opts.user, %method, "ssh authenticated");
            Ok(())
        }
        AuthResult::Failure { remaining_methods, partial_success } => {
            let server_methods: Vec<String> = remaining_methods.iter().map(|m| <&str>::from(m).to_owned()).collect();
            if partial_success {
                method.push_str(": accepted, but the server requires a second method");
            }
            warn!(%addr, user = %opts.user, %method, "ssh authentication failed");
            let _ = handle.disconnect(Disconnect::AuthCancelledByUser, "", "en").await;
            Err(SshError::AuthFailed {
                user: opts.user.clone(),
                host: addr.to_owned(),
                methods_tried: vec![method],
                server_methods,
            })
        }
    }
}

async fn load_key(path: &Path, passphrase: Option<SecretString>) -> Result<PrivateKey, SshError> {
    let path = path.to_owned();
    // Decrypting an OpenSSH key runs bcrypt-pbkdf: keep it off the async threads.
    let result = tokio::task::spawn_blocking({
        let path = path.clone();
        move || russh::keys::load_secret_key(&path, passphrase.as_ref().map(|p| p.expose_secret()))
    })
    .await
    .map_err(|e| SshError::KeyFile { path: path.clone(), reason: e.to_string() })?;
    result.map_err(|e| {
        let reason = match e {
            russh::keys::Error::IO(e) => e.to_string(),
            russh::keys::Error::KeyIsEncrypted => "it is protected by a passphrase and none was given".to_owned(),
            other => format!("wrong passphrase or not a private key ({other})"),
        };
        SshError::KeyFile { path, reason }
    })
}

/// The russh handler: checks the host key, remembers why the connection ended.
struct ClientHandler {
    addr: String,
    lookup: String,
    known_hosts: PathBuf,
    known: Vec<KnownHost>,
    policy: HostKeyPolicy,
    disconnect_reason: Arc<Mutex<Option<String>>>,
}

impl client::Handler for ClientHandler {
    type Error = SshError;

    async fn check_server_key(&mut self, server_key: &PublicKeyOrCertificate) -> Result<bool, SshError> {
        let PublicKeyOrCertificate::PublicKey { key, .. } = server_key else {
            // Host certificates are not requested (russh's default), so a server cannot send one.
            return Err(SshError::Protocol(
                "the server presented a host certificate, which psgate does not use".into(),
            ));
        };
        let fingerprint = format!("{} {}", key.algorithm(), key.fingerprint(HashAlg::Sha256));
        match check_host_key(&self.known, key.key_data()) {
            HostKeyStatus::Known { line } => {
                debug!(addr = %self.addr, %fingerprint, line, "ssh host key matches known_hosts");
                Ok(true)
            }
            HostKeyStatus::Revoked { line } => {
                warn!(addr = %self.addr, %fingerprint, line, "ssh host key revoked; refusing");
                Err(SshError::RevokedHostKey {
                    host: self.addr.clone(),
                    fingerprint,
                    known_hosts: self.known_hosts.clone(),
                    known_hosts_line: line,
                })
            }
            HostKeyStatus::Changed { line } => {
                warn!(addr = %self.addr, %fingerprint, line, "ssh host key CHANGED; refusing");
                Err(SshError::ChangedHostKey {
                    host: self.addr.clone(),
                    fingerprint,
                    known_hosts: self.known_hosts.clone(),
                    known_hosts_line: line,
                })
            }
            HostKeyStatus::Unknown => match self.policy {
                HostKeyPolicy::Strict => {
                    warn!(addr = %self.addr, %fingerprint, "ssh host key unknown; refusing (strict)");
                    Err(SshError::UnknownHostKey {
                        host: self.addr.clone(),
                        fingerprint,
                        known_hosts: self.known_hosts.clone(),
                    })
                }
                HostKeyPolicy::AcceptNew => {
                    append_known_host(&self.known_hosts, &self.lookup, key).await?;
                    // russh checks only the first key exchange's key; remember it all the same.
                    self.known.push(KnownHost { line: 0, revoked: false, key: key.key_data().clone() });
                    info!(
                        addr = %self.addr, %fingerprint, known_hosts = %self.known_hosts.display(),
                        "ssh host key learned"
                    );
                    Ok(true)
                }
            },
        }
    }

    async fn auth_banner(&mut self, banner: &str, _session: &mut client::Session) -> Result<(), SshError> {
        debug!(addr = %self.addr, banner, "ssh banner");
        Ok(())
    }

    async fn disconnected(&mut self, reason: DisconnectReason<SshError>) -> Result<(), SshError> {
        let (text, result) = match reason {
            DisconnectReason::ReceivedDisconnect(info) => {
                let text = if info.message.is_empty() {
                    format!("the server disconnected ({:?})", info.reason_code)
                } else {
                    format!("the server disconnected ({:?}: {})", info.reason_code, info.message)
                };
                (text, Ok(()))
            }
            DisconnectReason::Error(e) => {
                let text = match &e {
                    SshError::ConnectionLost { reason } => reason.clone(),
                    other => other.to_string(),
                };
                (text, Err(e))
            }
        };
        debug!(addr = %self.addr, reason = %text, "ssh connection ended");
        *self.disconnect_reason.lock().unwrap_or_else(PoisonError::into_inner) = Some(text);
        result
    }
}

fn take_reason(reason: &Mutex<Option<String>>) -> Option<String> {
    reason.lock().unwrap_or_else(PoisonError::into_inner).clone()
}

// ---------------------------------------------------------------------------------------------------------------
// The stream

/// The subsystem's standard input and output.
///
/// - Reading: the subsystem's standard output. End of file (a read of 0 bytes) when the server sends EOF or closes
///   the channel. If the connection is lost first, the read fails (`ConnectionAborted`, with the reason). Standard
///   error is logged (`warn!`) and kept for [`SubsystemExit::stderr`], never mixed into the stream.
/// - Writing: flow-controlled by the SSH window; a write waits while the server's window is full. Keep reading in
///   another task, or a server that stops reading while its output fills our window will stall both directions.
///   Writing to a channel the server has closed fails with `BrokenPipe` (seen once a read has observed the close).
/// - `shutdown()` sends EOF (half-close); reading goes on until the server's EOF.
/// - [`close`](Self::close) ends it cleanly; dropping it closes the channel and the connection in the background.
pub struct SshStream {
    rx: Rx,
    /// The rest of the last data message, not yet read.
    pending: bytes::Bytes,
    writer: Pin<Box<dyn AsyncWrite + Send>>,
    /// None once closed (by `close` or drop).
    conn: Option<Conn>,
    addr: String,
    subsystem: String,
    remote: Remote,
    eof_sent: bool,
    /// A write waiting for window space; woken when a read sees the channel end, since no window will come.
    write_waker: Option<Waker>,
    exit: SubsystemExit,
    stderr_tail: Vec<u8>,
    disconnect_reason: Arc<Mutex<Option<String>>>,
}

struct Conn {
    /// Keeps the connection's task alive as long as the stream.
    handle: Handle<ClientHandler>,
    channel: ChannelWriteHalf<Msg>,
}

/// The read half of the channel, or the future waiting on its next message (which owns it meanwhile).
enum Rx {
    Idle(ChannelReadHalf),
    Waiting(Pin<Box<dyn Future<Output = (ChannelReadHalf, Option<ChannelMsg>)> + Send>>),
    Gone,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Remote {
    Open,
    /// The server sent EOF: no more data, but the channel is open (it may still read ours).
    Eof,
    /// The server closed the channel.
    Closed,
    /// The connection ended without closing the channel.
    Lost,
}

impl fmt::Debug for SshStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SshStream")
            .field("addr", &self.addr)
            .field("subsystem", &self.subsystem)
            .field("remote", &self.remote)
            .field("eof_sent", &self.eof_sent)
            .field("closed", &self.conn.is_none())
            .finish_non_exhaustive()
    }
}

impl SshStream {
    /// `host:port` of the server.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// Ends the session cleanly: sends EOF, waits up to 3 s for the subsystem to end and the server to close the
    /// channel (collecting its exit status), closes the channel and disconnects. Data still arriving is discarded:
    /// read to the end first if it matters.
    pub async fn close(mut self) -> Result<SubsystemExit, SshError> {
        let Some(conn) = self.conn.take() else { return Ok(self.exit.clone()) };
        if self.remote == Remote::Open || self.remote == Remote::Eof {
            if !self.eof_sent {
                let _ = conn.channel.eof().await;
                self.eof_sent = true;
            }
            let drained = tokio::time::timeout(CLOSE_GRACE, async {
                while matches!(self.remote, Remote::Open | Remote::Eof) {
                    let msg = poll_fn(|cx| self.poll_msg(cx)).await;
                    if let Some(ChannelMsg::Data { data }) = &msg {
                        debug!(bytes = data.len(), "ssh data discarded while closing");
                    }
                    self.on_msg(msg);
                }
            })
            .await;
            if drained.is_err() {
                debug!(addr = %self.addr, "ssh subsystem did not end within the grace period; closing the channel");
            }
        }
        if self.remote != Remote::Lost {
            // russh answers the server's CLOSE itself; ours is needed only if the server has not closed.
            if self.remote != Remote::Closed {
                let _ = conn.channel.close().await;
            }
            let _ = conn.handle.disconnect(Disconnect::ByApplication, "", "en").await;
        }
        self.exit.stderr = String::from_utf8_lossy(&self.stderr_tail).into_owned();
        info!(
            addr = %self.addr, subsystem = %self.subsystem, exit_status = ?self.exit.exit_status,
            exit_signal = ?self.exit.exit_signal, "ssh session closed"
        );
        Ok(self.exit.clone())
    }

    fn poll_msg(&mut self, cx: &mut Context<'_>) -> Poll<Option<ChannelMsg>> {
        loop {
            match std::mem::replace(&mut self.rx, Rx::Gone) {
                Rx::Idle(mut half) => {
                    self.rx = Rx::Waiting(Box::pin(async move {
                        let msg = half.wait().await;
                        (half, msg)
                    }));
                }
                Rx::Waiting(mut fut) => match fut.as_mut().poll(cx) {
                    Poll::Ready((half, msg)) => {
                        self.rx = Rx::Idle(half);
                        return Poll::Ready(msg);
                    }
                    Poll::Pending => {
                        self.rx = Rx::Waiting(fut);
                        return Poll::Pending;
                    }
                },
                Rx::Gone => return Poll::Ready(None),
            }
        }
    }

    fn on_msg(&mut self, msg: Option<ChannelMsg>) {
        match msg {
            Some(ChannelMsg::Data { data }) => self.pending = data,
            Some(ChannelMsg::ExtendedData { data, ext }) => {
                let text = String::from_utf8_lossy(&data[..data.len().min(1024)]);
                let stderr = text.trim_end();
                warn!(addr = %self.addr, subsystem = %self.subsystem, ext, stderr, "ssh subsystem stderr");
                self.stderr_tail.extend_from_slice(&data);
                let excess = self.stderr_tail.len().saturating_sub(STDERR_TAIL);
                self.stderr_tail.drain(..excess);
            }
            Some(ChannelMsg::Eof) => {
                debug!(addr = %self.addr, "ssh server sent eof");
                if self.remote == Remote::Open {
                    self.remote = Remote::Eof;
                }
            }
            Some(ChannelMsg::Close) => {
                debug!(addr = %self.addr, "ssh server closed the channel");
                self.remote = Remote::Closed;
                self.wake_writer();
            }
            Some(ChannelMsg::ExitStatus { exit_status }) => {
                debug!(addr = %self.addr, exit_status, "ssh subsystem exited");
                self.exit.exit_status = Some(exit_status);
            }
            Some(ChannelMsg::ExitSignal { signal_name, error_message, .. }) => {
                let signal = format!("{signal_name:?}");
                warn!(addr = %self.addr, signal = %signal, error_message, "ssh subsystem killed by a signal");
                self.exit.exit_signal = Some(signal);
            }
            Some(other) => trace!(?other, "ssh channel message ignored"),
            None => {
                if matches!(self.remote, Remote::Open | Remote::Eof) {
                    let reason = take_reason(&self.disconnect_reason).unwrap_or_default();
                    warn!(addr = %self.addr, reason, "ssh connection lost");
                    self.remote = Remote::Lost;
                }
                self.wake_writer();
            }
        }
    }

    fn wake_writer(&mut self) {
        if let Some(waker) = self.write_waker.take() {
            waker.wake();
        }
    }

    fn lost_error(&self) -> io::Error {
        let reason = take_reason(&self.disconnect_reason).unwrap_or_else(|| "no reason given".to_owned());
        io::Error::new(
            io::ErrorKind::ConnectionAborted,
            format!("the SSH connection to {} was lost: {reason}", self.addr),
        )
    }

    fn write_error(&self) -> Option<io::Error> {
        match self.remote {
            Remote::Lost => Some(self.lost_error()),
            Remote::Closed => Some(io::Error::new(
                io::ErrorKind::BrokenPipe,
                format!("{} closed the SSH channel of subsystem {}", self.addr, self.subsystem),
            )),
            _ if self.eof_sent || self.conn.is_none() => {
                Some(io::Error::new(io::ErrorKind::BrokenPipe, "write after shutdown of the SSH stream"))
            }
            _ => None,
        }
    }
}

impl AsyncRead for SshStream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if !this.pending.is_empty() {
                let n = buf.remaining().min(this.pending.len());
                buf.put_slice(&this.pending.split_to(n));
                return Poll::Ready(Ok(()));
            }
            match this.remote {
                Remote::Open => {}
                Remote::Eof | Remote::Closed => return Poll::Ready(Ok(())),
                Remote::Lost => return Poll::Ready(Err(this.lost_error())),
            }
            let msg = ready!(this.poll_msg(cx));
            this.on_msg(msg);
        }
    }
}

impl AsyncWrite for SshStream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        // After the server's EOF nobody reads the channel any more: notice its close here.
        while this.remote == Remote::Eof {
            match this.poll_msg(cx) {
                Poll::Ready(msg) => this.on_msg(msg),
                Poll::Pending => break,
            }
        }
        if let Some(e) = this.write_error() {
            return Poll::Ready(Err(e));
        }
        match this.writer.as_mut().poll_write(cx, buf) {
            Poll::Pending => {
                this.write_waker = Some(cx.waker().clone());
                Poll::Pending
            }
            // The only error: the connection's task has ended.
            Poll::Ready(Err(_)) => Poll::Ready(Err(this.lost_error())),
            Poll::Ready(Ok(n)) => Poll::Ready(Ok(n)),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().writer.as_mut().poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.eof_sent || this.conn.is_none() || matches!(this.remote, Remote::Closed | Remote::Lost) {
            return Poll::Ready(Ok(()));
        }
        ready!(this.writer.as_mut().poll_shutdown(cx))?;
        debug!(addr = %this.addr, "ssh sent eof");
        this.eof_sent = true;
        Poll::Ready(Ok(()))
    }
}

impl Drop for SshStream {
    fn drop(&mut self) {
        let Some(conn) = self.conn.take() else { return };
        info!(addr = %self.addr, subsystem = %self.subsystem, "ssh session dropped; closing");
        let remote = self.remote;
        // Without a runtime, dropping the handle and channel still ends the connection's task (it then shuts the
        // TCP stream down without an SSH disconnect message).
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                if remote != Remote::Closed {
                    let _ = conn.channel.close().await;
                }
                let _ = conn.handle.disconnect(Disconnect::ByApplication, "", "en").await;
            });
        }
    }
}

// ---------------------------------------------------------------------------------------------------------------
// known_hosts

/// An entry of `known_hosts` that names the host being connected to.
#[derive(Clone, Debug)]
struct KnownHost {
    /// 1-based, as editors count.
    line: usize,
    revoked: bool,
    key: KeyData,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum HostKeyStatus {
    Known {
        line: usize,
    },
    Revoked {
        line: usize,
    },
    /// The host has entries, none of them this key.
    Changed {
        line: usize,
    },
    Unknown,
}

/// The name `known_hosts` records a host under: `host`, or `[host]:port` for a port other than 22 (lower case).
fn known_hosts_name(host: &str, port: u16) -> String {
    let host = host.to_ascii_lowercase();
    if port == 22 { host } else { format!("[{host}]:{port}") }
}

async fn read_known_hosts(path: &Path, lookup: &str) -> Result<Vec<KnownHost>, SshError> {
    match tokio::fs::read(path).await {
        Ok(bytes) => Ok(parse_known_hosts(&String::from_utf8_lossy(&bytes), lookup)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(source) => Err(SshError::KnownHosts { path: path.to_owned(), source }),
    }
}

/// The entries of a `known_hosts` file that name `lookup` (see [`known_hosts_name`]). Lines that do not parse and
/// `@cert-authority` lines are skipped, as `ssh` does.
fn parse_known_hosts(content: &str, lookup: &str) -> Vec<KnownHost> {
    let mut found = Vec::new();
    for (index, raw) in content.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        // ssh-key's parser wants single spaces; OpenSSH allows any run of blanks.
        let normalized = line.split_whitespace().collect::<Vec<_>>().join(" ");
        let entry: Entry = match normalized.parse() {
            Ok(entry) => entry,
            Err(e) => {
                debug!(line = index + 1, error = %e, "known_hosts line skipped");
                continue;
            }
        };
        if entry.marker() == Some(&Marker::CertAuthority) || !host_matches(entry.host_patterns(), lookup) {
            continue;
        }
        found.push(KnownHost {
            line: index + 1,
            revoked: entry.marker() == Some(&Marker::Revoked),
            key: entry.public_key().key_data().clone(),
        });
    }
    found
}

/// OpenSSH's `match_hostname`: a hashed name, or a comma-separated list of `*`/`?` patterns where a matching `!`
/// pattern vetoes the entry.
fn host_matches(patterns: &HostPatterns, lookup: &str) -> bool {
    match patterns {
        HostPatterns::HashedName { salt, hash } => {
            let Ok(mac) = Hmac::<Sha1>::new_from_slice(salt) else { return false };
            mac.chain_update(lookup.as_bytes()).verify_slice(hash).is_ok()
        }
        HostPatterns::Patterns(list) => {
            let mut matched = false;
            for pattern in list {
                let (negated, pattern) = match pattern.strip_prefix('!') {
                    Some(p) => (true, p),
                    None => (false, pattern.as_str()),
                };
                if glob_match(pattern.to_ascii_lowercase().as_bytes(), lookup.as_bytes()) {
                    if negated {
                        return false;
                    }
                    matched = true;
                }
            }
            matched
        }
    }
}

/// `*` matches any run of characters, `?` any one.
fn glob_match(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some(b'*') => {
                star = Some((p, t));
                p += 1;
            }
            Some(&c) if c == b'?' || c == text[t] => {
                p += 1;
                t += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    p = sp + 1;
                    t = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

fn check_host_key(known: &[KnownHost], key: &KeyData) -> HostKeyStatus {
    if let Some(k) = known.iter().find(|k| k.revoked && k.key == *key) {
        return HostKeyStatus::Revoked { line: k.line };
    }
    let trusted = || known.iter().filter(|k| !k.revoked);
    if let Some(k) = trusted().find(|k| k.key == *key) {
        return HostKeyStatus::Known { line: k.line };
    }
    // Host key algorithms already known are negotiated first (host_key_preference), so a known host that shows a
    // key of another type no longer has the recorded one: that is a change too, not a new host.
    let same_type = trusted().find(|k| k.key.algorithm() == key.algorithm());
    match same_type.or_else(|| trusted().next()) {
        Some(k) => HostKeyStatus::Changed { line: k.line },
        None => HostKeyStatus::Unknown,
    }
}

/// russh's host key algorithms, those of keys `known_hosts` holds for the host first (as OpenSSH orders them), so
/// that a host with several keys shows the one on record.
fn host_key_preference(known: &[KnownHost]) -> Vec<Algorithm> {
    let default = Preferred::default().key.into_owned();
    let is_known = |alg: &Algorithm| {
        known.iter().any(|k| {
            let recorded = k.key.algorithm();
            *alg == recorded || (recorded.is_rsa() && alg.clone().is_rsa())
        })
    };
    let (mut first, rest): (Vec<_>, Vec<_>) = default.into_iter().partition(is_known);
    first.extend(rest);
    first
}

/// Appends `lookup keytype base64` to `known_hosts` as `ssh` does, creating the file (and a 0700 folder) if needed.
async fn append_known_host(path: &Path, lookup: &str, key: &PublicKey) -> Result<(), SshError> {
    let known_hosts_error = |source| SshError::KnownHosts { path: path.to_owned(), source };
    let encoded =
        PublicKey::new(key.key_data().clone(), "").to_openssh().map_err(|e| known_hosts_error(io::Error::other(e)))?;
    let line = format!("{lookup} {encoded}\n");
    let owned = path.to_owned();
    tokio::task::spawn_blocking(move || append_line(&owned, &line))
        .await
        .map_err(|e| known_hosts_error(io::Error::other(e)))?
        .map_err(known_hosts_error)
}

fn append_line(path: &Path, line: &str) -> io::Result<()> {
    use std::io::{Read as _, Seek as _, SeekFrom, Write as _};
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty() && !d.exists()) {
        let mut builder = std::fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        builder.create(dir)?;
    }
    let mut file = std::fs::OpenOptions::new().read(true).append(true).create(true).open(path)?;
    let mut text = String::new();
    // A file whose last line lacks its newline would otherwise run into ours.
    if file.seek(SeekFrom::End(-1)).is_ok() {
        let mut last = [0u8; 1];
        file.read_exact(&mut last)?;
        if last[0] != b'\n' {
            text.push('\n');
        }
    }
    text.push_str(line);
    // One write: O_APPEND keeps concurrent appenders' lines whole.
    file.write_all(text.as_bytes())?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    const ED_A: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJdD7y3aLq454yWBdwLWbieU1ebz9/cu7/QEXn9OIeZJ";
    const ED_B: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAILIG2T/B0l0gaqj3puu510tu9N1OkQ4znY3LYuEm5zCF";
    const ECDSA: &str = concat!(
        "ecdsa-sha2-nistp256 ",
        "AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBBqw+kmxFq0d80vC+3C1Fym8G37siudtQ5sfMJ1KuUmP",
        "slo81lRXBHFTBoWepSlhQPrZrN3Ikgft2gtTe90DHMI=",
    );
    const RSA: &str = concat!(
        "ssh-rsa ",
        "AAAAB3NzaC1yc2EAAAADAQABAAABAQDbWzeh3/QbmGjlqRn4hnDm99T5nY+SF0fH5iV/yUNUkGShISrlgli0MD6aibPpGg3C",
        "hbq0DhXJPN8LoE0u/1RWK7RTFwCugSju23y3moknEu/wt+A0AsVYog33tBQREBvtfyyk13grYTBMk1M7CahFhM6kJ7/xwDj+",
        "p9YlS+eIOkSupsmV7Jvvf2eS9rTC5nO6vvty0nYVrc1vO8rE0wqKOwlTOabFbqcVYAnHiqoBCarSugDoWvPNGhFMnSRk2rnG",
        "8xo0GbBJSe68vz40aKem4yLeXo6J3c+jR9gjMyCyzITbBb5QOrjKgU3P3Ts8Uqgx8aqYxETRsJyWbq2SLIvT",
    );

    fn key(openssh: &str) -> KeyData {
        PublicKey::from_openssh(openssh).expect("test key").key_data().clone()
    }

    fn status(file: &str, lookup: &str, presented: &str) -> HostKeyStatus {
        check_host_key(&parse_known_hosts(file, lookup), &key(presented))
    }

    #[test]
    fn plain_entries_with_ports_lists_and_blanks() {
        let file = format!("# comment\n\n[localhost]:2222 {ED_A}\nexample.com,10.0.0.1\t{ED_B}   a comment\n");
        assert_eq!(status(&file, "[localhost]:2222", ED_A), HostKeyStatus::Known { line: 3 });
        assert_eq!(status(&file, "10.0.0.1", ED_B), HostKeyStatus::Known { line: 4 });
        assert_eq!(status(&file, "example.com", ED_A), HostKeyStatus::Changed { line: 4 });
        // Port 22 is recorded without brackets; another port is another host.
        assert_eq!(status(&file, "localhost", ED_A), HostKeyStatus::Unknown);
        assert_eq!(status(&file, "[localhost]:2223", ED_A), HostKeyStatus::Unknown);
    }

    #[test]
    fn hashed_entries_match_their_host_only() {
        // From russh's tests: `example.com` hashed with OpenSSH.
        let file = format!("|1|O33ESRMWPVkMYIwJ1Uw+n877jTo=|nuuC5vEqXlEZ/8BXQR7m619W6Ak= {ED_B}\n");
        assert_eq!(status(&file, "example.com", ED_B), HostKeyStatus::Known { line: 1 });
        assert_eq!(status(&file, "example.com", ED_A), HostKeyStatus::Changed { line: 1 });
        assert_eq!(status(&file, "example.org", ED_A), HostKeyStatus::Unknown);
    }

    #[test]
    fn wildcards_negation_and_markers() {
        let file =
            format!("*.corp,!bad.corp {ED_A}\n@revoked * {ED_B}\n@cert-authority *.corp {ED_B}\nnot a valid line\n");
        assert_eq!(status(&file, "web.corp", ED_A), HostKeyStatus::Known { line: 1 });
        assert_eq!(status(&file, &known_hosts_name("WEB.corp", 22), ED_A), HostKeyStatus::Known { line: 1 });
        assert_eq!(status(&file, "bad.corp", ED_A), HostKeyStatus::Unknown);
        assert_eq!(status(&file, "web.corp", ED_B), HostKeyStatus::Revoked { line: 2 });
        assert!(glob_match(b"h?st*", b"host-1"));
        assert!(!glob_match(b"h?st", b"hoost"));
        assert!(glob_match(b"*", b""));
    }

    #[test]
    fn known_key_types_are_preferred() {
        let known = |k: &str| vec![KnownHost { line: 1, revoked: false, key: key(k) }];
        let ecdsa = host_key_preference(&known(ECDSA));
        assert_eq!(ecdsa[0], Algorithm::Ecdsa { curve: russh::keys::EcdsaCurve::NistP256 });
        let rsa = host_key_preference(&known(RSA));
        assert!(rsa[0].clone().is_rsa() && rsa[0] != Algorithm::Rsa { hash: None }, "{rsa:?}");
        assert_eq!(host_key_preference(&[]), Preferred::default().key.into_owned());
        // Every algorithm is still offered.
        assert_eq!(rsa.len(), Preferred::default().key.len());
    }

    #[test]
    fn lookup_names_follow_openssh() {
        assert_eq!(known_hosts_name("Example.COM", 22), "example.com");
        assert_eq!(known_hosts_name("127.0.0.1", 22022), "[127.0.0.1]:22022");
    }

    #[test]
    fn appending_keeps_lines_whole_and_readable() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("sub").join("known_hosts");
        append_line(&path, "a 1\n").expect("append");
        std::fs::write(&path, "a 1").expect("truncate the newline");
        append_line(&path, "b 2\n").expect("append");
        assert_eq!(std::fs::read_to_string(&path).expect("read"), "a 1\nb 2\n");
    }

    #[test]
    fn secrets_are_not_debug_printed() {
        let auth = SshAuth::Password("hunter2".into());
        let opts = SshOptions::new("h", "u", auth);
        assert!(!format!("{opts:?}").contains("hunter2"));
        let auth = SshAuth::Key { path: "/k".into(), passphrase: Some("s3cret".into()) };
        assert!(!format!("{auth:?}").contains("s3cret"));
    }
}
