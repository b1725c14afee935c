//! The security context of one WinRM connection and its HTTP tokens: NTLM and SPNEGO (Negotiate) through sspi
//! (Devolutions' SSPI in Rust), Kerberos through the system's GSSAPI ([`super::gssapi`]), and MS-WSMV message sealing
//! (EncryptMessage/DecryptMessage, `gss_wrap_iov`).
//!
//! Who does what, with a password:
//! - NTLM: sspi, channel-bound over HTTPS (MsvAvChannelBindings).
//! - Kerberos: MIT's GSSAPI, `gss_acquire_cred_with_password` (the AS exchange with the KDC that krb5.conf or DNS
//!   names for the realm, the tickets in a private MEMORY ccache), channel-bound over HTTPS.
//! - Negotiate: as sspi decided it before: NTLM when the server is named by an IP address (a service ticket names a
//!   host) or the user names no realm; else GSSAPI's SPNEGO with Kerberos, falling back to NTLM (sspi, inside SPNEGO)
//!   when Kerberos cannot be used — no KDC for the realm, none reachable, a clock skew, no ticket for the server —
//!   but not when the KDC refuses the password.
//! - With a KDC named ([`ContextConfig::kdc`], or sspi's `SSPI_KDC_URL`): sspi's Kerberos, the AS and TGS exchanges
//!   answered by [`KdcClient`] over TCP or UDP with tokio (sspi's own network client is not compiled in; a KDC proxy,
//!   MS-KKDCP, is not supported). MIT's GSSAPI takes its KDCs from the process's krb5.conf only, so it cannot serve a
//!   KDC named per connection. sspi's Kerberos is **not channel-bound**: see [`SecurityContext::step`].
//!
//! From the ticket cache (no password: `kinit` was run), Kerberos and Negotiate are GSSAPI's (sspi cannot read an MIT
//! ccache), channel-bound over HTTPS.

use std::time::Duration;

use secrecy::{ExposeSecret as _, SecretString};
use sspi::generator::GeneratorState;
use sspi::negotiate::ProtocolConfig;
use sspi::ntlm::NtlmConfig;
use sspi::{
    AuthIdentity, BufferType, ClientRequestFlags, Credentials, CredentialUse, DataRepresentation, EncryptionFlags,
    ErrorKind, InitializeSecurityContextResult, KdcResolution, Kerberos, KerberosConfig, Negotiate, NegotiateConfig,
    NegotiatedProtocol, NetworkProtocol, NetworkRequest, Ntlm, SecurityBuffer, SecurityBufferRef, SecurityStatus, Sspi,
    Username,
};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tracing::{debug, info, warn};

use super::AuthMethod;
use super::gssapi::{GssContext, GssCredential, GssError, GssMech, kerberos_principal};

/// The largest reply accepted from a KDC (a TGS-REP with a large PAC is tens of KiB).
const MAX_KDC_REPLY: usize = 1024 * 1024;
/// sspi's own setting of a KDC for every realm (read by sspi itself when no KDC is named in the options).
const SSPI_KDC_URL: &str = "SSPI_KDC_URL";

/// What this context asks of the mechanism: mutual authentication where it exists (Kerberos), and sealing.
fn requirements() -> ClientRequestFlags {
    ClientRequestFlags::MUTUAL_AUTH
        | ClientRequestFlags::INTEGRITY
        | ClientRequestFlags::CONFIDENTIALITY
        | ClientRequestFlags::SEQUENCE_DETECT
        | ClientRequestFlags::REPLAY_DETECT
        | ClientRequestFlags::ALLOCATE_MEMORY
}

enum Mech {
    Ntlm(Box<Ntlm>, Option<sspi::AuthIdentityBuffers>),
    /// sspi's SPNEGO: NTLM inside, or Kerberos with a KDC named.
    Negotiate(Box<Negotiate>, Option<sspi::CredentialsBuffers>),
    /// sspi's Kerberos, with a KDC named.
    Kerberos(Box<Kerberos>, Option<sspi::CredentialsBuffers>),
    /// Kerberos (or SPNEGO with Kerberos) through the system's GSSAPI, with a password or on the ticket cache.
    Gssapi(Box<GssContext>),
}

/// How a password is used for Kerberos or Negotiate (see the module's documentation).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum PasswordRoute {
    /// A KDC is named: sspi's Kerberos (or sspi's SPNEGO, which prefers it), not channel-bound.
    SspiWithKdc,
    /// The system's GSSAPI: Kerberos, or SPNEGO with Kerberos and NTLM (sspi) as the fallback.
    Gssapi,
    /// Negotiate with NTLM alone (sspi's SPNEGO): the server is named by an IP address or the user names no realm.
    Ntlm,
}

/// The route of a password for `method` (Kerberos or Negotiate) to `target` (`SERVICE/host`).
fn password_route(method: AuthMethod, user: &str, target: &str, kdc_named: bool) -> PasswordRoute {
    if kdc_named {
        return PasswordRoute::SspiWithKdc;
    }
    if method != AuthMethod::Negotiate {
        return PasswordRoute::Gssapi;
    }
    let host = target.rsplit('/').next().unwrap_or(target);
    let ip = host.trim_start_matches('[').trim_end_matches(']').parse::<std::net::IpAddr>().is_ok();
    let realm = kerberos_principal(user).ok().and_then(|(_, realm)| realm);
    if ip || realm.is_none() { PasswordRoute::Ntlm } else { PasswordRoute::Gssapi }
}

/// A client security context for one TCP connection.
pub(crate) struct SecurityContext {
    mech: Mech,
    /// Negotiate on GSSAPI with a password: NTLM inside sspi's SPNEGO, used if Kerberos is unavailable at the first
    /// step (dropped after it).
    fallback: Option<Box<Mech>>,
    /// The service principal name, `WSMAN/host` by default.
    target: String,
    /// SEC_CHANNEL_BINDINGS with the `tls-server-end-point` data, over HTTPS (sspi's form; GSSAPI has its own).
    bindings: Option<Vec<u8>>,
    complete: bool,
    kdc: KdcClient,
}

impl std::fmt::Debug for SecurityContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mech = match self.mech {
            Mech::Ntlm(..) => "NTLM",
            Mech::Negotiate(..) => "Negotiate",
            Mech::Kerberos(..) => "Kerberos",
            Mech::Gssapi(..) => "GSSAPI",
        };
        f.debug_struct("SecurityContext")
            .field("mech", &mech)
            .field("target", &self.target)
            .field("channel_binding", &self.bindings.is_some())
            .field("ntlm_fallback", &self.fallback.is_some())
            .field("complete", &self.complete)
            .finish_non_exhaustive()
    }
}

/// Where a context needs its KDC and what to call the client machine.
#[derive(Clone, Debug)]
pub(crate) struct ContextConfig<'a> {
    pub method: AuthMethod,
    pub user: &'a str,
    pub password: &'a SecretString,
    pub target: String,
    pub computer_name: String,
    /// `tcp://kdc:88`, `udp://kdc:88` or `kdc`: Kerberos with a password is then sspi's, talking to this KDC (not
    /// channel-bound). None: the system's GSSAPI, which finds the realm's KDC in krb5.conf (or DNS) — unless
    /// `SSPI_KDC_URL` is set, which names a KDC for sspi the same way.
    pub kdc: Option<&'a str>,
    /// The `tls-server-end-point` data (RFC 5929), over HTTPS.
    pub channel_binding: Option<Vec<u8>>,
    pub kdc_timeout: Duration,
    /// Kerberos or Negotiate from the default ticket cache (system GSSAPI) instead of the password.
    pub ticket_cache: bool,
}

fn gss_error(kind: ErrorKind, e: &GssError) -> sspi::Error {
    sspi::Error::new(kind, e.to_string())
}

/// sspi's SPNEGO with NTLM alone (its Kerberos switched off: Kerberos with a password is GSSAPI's, or sspi's only with
/// a KDC named).
fn ntlm_negotiate(identity: AuthIdentity, computer: String) -> Result<Mech, sspi::Error> {
    let config = NegotiateConfig::new(Box::new(NtlmConfig::new(computer.clone())), Some("ntlm".to_owned()), computer);
    let mut negotiate = Box::new(Negotiate::new_client(config)?);
    let creds = negotiate
        .acquire_credentials_handle()
        .with_credential_use(CredentialUse::Outbound)
        .with_auth_data(&Credentials::AuthIdentity(identity))
        .execute(&mut *negotiate)?
        .credentials_handle;
    Ok(Mech::Negotiate(negotiate, creds))
}

impl SecurityContext {
    pub(crate) fn new(config: ContextConfig<'_>) -> Result<Self, sspi::Error> {
        let bindings = config.channel_binding.as_deref().map(sec_channel_bindings);
        let kdc = KdcClient { timeout: config.kdc_timeout };
        if config.ticket_cache {
            let mech = match config.method {
                AuthMethod::Kerberos => GssMech::Kerberos,
                AuthMethod::Negotiate => GssMech::Spnego,
                AuthMethod::Ntlm | AuthMethod::Basic => {
                    return Err(sspi::Error::new(
                        ErrorKind::InvalidParameter,
                        format!("{} needs a password (only Kerberos and Negotiate use a ticket cache)", config.method),
                    ));
                }
            };
            // The channel binding goes in as gss_channel_bindings_struct's application data; GSSAPI hashes it.
            let context =
                GssContext::new(mech, &config.target, config.channel_binding.clone(), GssCredential::TicketCache)
                    .map_err(|e| gss_error(ErrorKind::NoCredentials, &e))?;
            return Ok(Self {
                mech: Mech::Gssapi(Box::new(context)),
                fallback: None,
                target: config.target,
                bindings,
                complete: false,
                kdc,
            });
        }
        if config.user.trim().is_empty() {
            return Err(sspi::Error::new(ErrorKind::InvalidParameter, "no user name"));
        }
        let username = Username::parse(config.user).map_err(|e| {
            sspi::Error::new(
                ErrorKind::InvalidParameter,
                format!("the user name {:?} is neither DOMAIN\\user nor user@domain ({e:?})", config.user),
            )
        })?;
        let identity =
            AuthIdentity { username, password: config.password.expose_secret().to_owned().into() };
        let computer = config.computer_name.clone();
        let kdc_named = config.kdc.is_some() || std::env::var_os(SSPI_KDC_URL).is_some_and(|v| !v.is_empty());
        let route = password_route(config.method, config.user, &config.target, kdc_named);
        let mut fallback = None;
        let mech = match (config.method, route) {
            (AuthMethod::Ntlm, _) => {
                let mut ntlm = Box::new(Ntlm::with_config(NtlmConfig::new(computer)));
                let creds = ntlm
                    .acquire_credentials_handle()
                    .with_credential_use(CredentialUse::Outbound)
                    .with_auth_data(&identity)
                    .execute(&mut *ntlm)?
                    .credentials_handle;
                Mech::Ntlm(ntlm, creds)
            }
            (AuthMethod::Basic, _) => {
                return Err(sspi::Error::new(ErrorKind::InvalidParameter, "Basic has no security context"));
            }
            (AuthMethod::Negotiate, PasswordRoute::Ntlm) => ntlm_negotiate(identity, computer)?,
            (AuthMethod::Kerberos | AuthMethod::Negotiate, PasswordRoute::Gssapi) => {
                let (principal, _) =
                    kerberos_principal(config.user).map_err(|e| gss_error(ErrorKind::InvalidParameter, &e))?;
                let mech = if config.method == AuthMethod::Kerberos { GssMech::Kerberos } else { GssMech::Spnego };
                let password = config.password.clone();
                let context = GssContext::new(
                    mech,
                    &config.target,
                    config.channel_binding.clone(),
                    GssCredential::Password { principal, password },
                )
                .map_err(|e| gss_error(ErrorKind::InvalidParameter, &e))?;
                if config.method == AuthMethod::Negotiate {
                    fallback = Some(Box::new(ntlm_negotiate(identity, computer)?));
                }
                Mech::Gssapi(Box::new(context))
            }
            (AuthMethod::Negotiate, _) => {
                // With a KDC named, Kerberos is tried first (NTLM if the KDC cannot be reached or does not know the
                // server); with SSPI_KDC_URL, sspi finds it there.
                let protocol: Box<dyn ProtocolConfig> = match config.kdc {
                    Some(kdc) => Box::new(KerberosConfig::new_with_kdc_url(kdc, computer.clone())),
                    None => Box::new(NtlmConfig::new(computer.clone())),
                };
                let mut negotiate = Box::new(Negotiate::new_client(NegotiateConfig::new(protocol, None, computer))?);
                let creds = negotiate
                    .acquire_credentials_handle()
                    .with_credential_use(CredentialUse::Outbound)
                    .with_auth_data(&Credentials::AuthIdentity(identity))
                    .execute(&mut *negotiate)?
                    .credentials_handle;
                Mech::Negotiate(negotiate, creds)
            }
            (AuthMethod::Kerberos, _) => {
                let kdc_url = config.kdc.and_then(sspi::kerberos::config::parse_kdc_url);
                let mut kerberos = Box::new(Kerberos::new_client_from_config(KerberosConfig {
                    kdc_resolution: KdcResolution::KdcUrl(kdc_url),
                    client_computer_name: computer,
                })?);
                let creds = kerberos
                    .acquire_credentials_handle()
                    .with_credential_use(CredentialUse::Outbound)
                    .with_auth_data(&Credentials::AuthIdentity(identity))
                    .execute(&mut *kerberos)?
                    .credentials_handle;
                Mech::Kerberos(kerberos, creds)
            }
        };
        if route == PasswordRoute::SspiWithKdc && bindings.is_some() && config.method != AuthMethod::Ntlm {
            warn!(
                target = %config.target,
                "with a KDC named, Kerberos is sspi's and not channel-bound: a server that requires channel binding \
                 (CbtHardeningLevel=Strict) refuses it"
            );
        }
        Ok(Self { mech, fallback, target: config.target, bindings, complete: false, kdc })
    }

    /// Whether the handshake is over.
    pub(crate) fn is_complete(&self) -> bool {
        self.complete
    }

    /// The next token to send, from the server's last one (None at the start).
    pub(crate) async fn step(&mut self, server_token: Option<&[u8]>) -> Result<Option<Vec<u8>>, sspi::Error> {
        if let Mech::Gssapi(ctx) = &mut self.mech {
            match ctx.step(server_token).await {
                Ok(token) => {
                    self.complete = ctx.is_complete();
                    self.fallback = None;
                    return Ok(token);
                }
                Err(e) if server_token.is_none() && e.kerberos_unavailable() && self.fallback.is_some() => {
                    // Negotiate: as Windows and sspi do, NTLM when Kerberos cannot be used (not when it is refused).
                    info!(target = %self.target, reason = %e, "Kerberos is unavailable; Negotiate goes on with NTLM");
                    if let Some(fallback) = self.fallback.take() {
                        self.mech = *fallback;
                    }
                }
                Err(e) => return Err(gss_error(ErrorKind::InternalError, &e)),
            }
        }
        let mut input = vec![SecurityBuffer::new(server_token.unwrap_or_default().to_vec(), BufferType::Token)];
        // sspi 0.23's Kerberos, given a channel binding, also writes KERB_AP_OPTIONS_CBT into the authenticator as two
        // bytes where MS-KILE has a four-byte value in AD-IF-RELEVANT; MIT's acceptor refuses such an AP-REQ outright
        // ("Invalid message type"), whatever its own binding policy. So sspi's Kerberos (used only with a KDC named)
        // goes unbound; NTLM, alone or inside SPNEGO, is bound (it reads the binding at its second step, when SPNEGO's
        // choice is known). Kerberos through GSSAPI (a password without a KDC named, or the ticket cache) is bound.
        let bind = match &self.mech {
            Mech::Ntlm(..) => true,
            Mech::Negotiate(ctx, _) => {
                server_token.is_some() && matches!(ctx.negotiated_protocol(), NegotiatedProtocol::Ntlm(_))
            }
            Mech::Kerberos(..) | Mech::Gssapi(..) => false,
        };
        if let Some(bindings) = self.bindings.as_ref().filter(|_| bind) {
            input.push(SecurityBuffer::new(bindings.clone(), BufferType::ChannelBindings));
        }
        let mut output = vec![SecurityBuffer::new(Vec::new(), BufferType::Token)];
        let (target, kdc) = (self.target.as_str(), &self.kdc);
        let result = match &mut self.mech {
            Mech::Ntlm(ctx, creds) => initialize(&mut **ctx, creds, target, &mut input, &mut output, kdc).await?,
            Mech::Negotiate(ctx, creds) => initialize(&mut **ctx, creds, target, &mut input, &mut output, kdc).await?,
            Mech::Kerberos(ctx, creds) => initialize(&mut **ctx, creds, target, &mut input, &mut output, kdc).await?,
            Mech::Gssapi(_) => return Err(sspi::Error::new(ErrorKind::InternalError, "a GSSAPI context stepped as sspi")),
        };
        match result.status {
            SecurityStatus::Ok => self.complete = true,
            SecurityStatus::ContinueNeeded => {}
            SecurityStatus::CompleteNeeded | SecurityStatus::CompleteAndContinue => {
                match &mut self.mech {
                    Mech::Ntlm(ctx, _) => ctx.complete_auth_token(&mut output)?,
                    Mech::Negotiate(ctx, _) => ctx.complete_auth_token(&mut output)?,
                    Mech::Kerberos(ctx, _) => ctx.complete_auth_token(&mut output)?,
                    Mech::Gssapi(_) => SecurityStatus::Ok,
                };
                self.complete = result.status == SecurityStatus::CompleteNeeded;
            }
            other => {
                return Err(sspi::Error::new(ErrorKind::InternalError, format!("unexpected status {other:?}")));
            }
        }
        let token = output.pop().map(|b| b.buffer).filter(|t| !t.is_empty());
        debug!(complete = self.complete, token_bytes = token.as_ref().map_or(0, Vec::len), "security context step");
        Ok(token)
    }

    /// Seals `plaintext`: (header, sealed data), MS-WSMV 2.2.9.1.
    pub(crate) fn wrap(&mut self, plaintext: &[u8]) -> Result<(Vec<u8>, Vec<u8>), sspi::Error> {
        match &mut self.mech {
            Mech::Ntlm(ctx, _) => seal(&mut **ctx, plaintext),
            Mech::Negotiate(ctx, _) => seal(&mut **ctx, plaintext),
            Mech::Kerberos(ctx, _) => seal(&mut **ctx, plaintext),
            Mech::Gssapi(ctx) => ctx.wrap(plaintext).map_err(|e| sspi::Error::new(ErrorKind::EncryptFailure, e.to_string())),
        }
    }

    /// Opens a sealed message.
    pub(crate) fn unwrap(&mut self, header: &[u8], sealed: &[u8]) -> Result<Vec<u8>, sspi::Error> {
        match &mut self.mech {
            Mech::Ntlm(ctx, _) => unseal(&mut **ctx, header, sealed),
            Mech::Negotiate(ctx, _) => unseal(&mut **ctx, header, sealed),
            Mech::Kerberos(ctx, _) => unseal(&mut **ctx, header, sealed),
            Mech::Gssapi(ctx) => {
                ctx.unwrap(header, sealed).map_err(|e| sspi::Error::new(ErrorKind::DecryptFailure, e.to_string()))
            }
        }
    }
}

/// One InitializeSecurityContext call, with the KDC round trips it asks for.
async fn initialize<T: Sspi>(
    ctx: &mut T,
    creds: &mut T::CredentialsHandle,
    target: &str,
    input: &mut [SecurityBuffer],
    output: &mut [SecurityBuffer],
    kdc: &KdcClient,
) -> Result<InitializeSecurityContextResult, sspi::Error> {
    let mut builder = ctx
        .initialize_security_context()
        .with_credentials_handle(creds)
        .with_context_requirements(requirements())
        .with_target_data_representation(DataRepresentation::Native)
        .with_target_name(target)
        .with_input(input)
        .with_output(output);
    let mut generator = ctx.initialize_security_context_impl(&mut builder)?;
    let mut state = generator.start();
    loop {
        match state {
            GeneratorState::Completed(result) => return result,
            GeneratorState::Suspended(request) => {
                let reply = kdc.send(&request).await;
                state = generator.resume(reply);
            }
        }
    }
}

fn seal<T: Sspi>(ctx: &mut T, plaintext: &[u8]) -> Result<(Vec<u8>, Vec<u8>), sspi::Error> {
    let trailer = usize::try_from(ctx.query_context_sizes()?.security_trailer).unwrap_or(usize::MAX).min(64 * 1024);
    let mut header = vec![0u8; trailer];
    let mut data = plaintext.to_vec();
    let (header_len, data_len) = {
        let mut buffers = [SecurityBufferRef::token_buf(&mut header), SecurityBufferRef::data_buf(&mut data)];
        ctx.encrypt_message(EncryptionFlags::empty(), &mut buffers)?;
        (buffers[0].data().len(), buffers[1].data().len())
    };
    header.truncate(header_len);
    data.truncate(data_len);
    Ok((header, data))
}

fn unseal<T: Sspi>(ctx: &mut T, header: &[u8], sealed: &[u8]) -> Result<Vec<u8>, sspi::Error> {
    let mut header = header.to_vec();
    let mut data = sealed.to_vec();
    let mut buffers = [SecurityBufferRef::token_buf(&mut header), SecurityBufferRef::data_buf(&mut data)];
    ctx.decrypt_message(&mut buffers)?;
    Ok(buffers[1].data().to_vec())
}

/// SEC_CHANNEL_BINDINGS (MS-SSPI) with no addresses and `application_data`: eight little-endian u32 fields
/// (address types, lengths and offsets), then the data at offset 32.
fn sec_channel_bindings(application_data: &[u8]) -> Vec<u8> {
    const HEADER: u32 = 32;
    let len = u32::try_from(application_data.len()).unwrap_or(u32::MAX);
    let mut out = Vec::with_capacity(32 + application_data.len());
    for field in [0, 0, 0, 0, 0, 0, len, HEADER] {
        out.extend_from_slice(&u32::to_le_bytes(field));
    }
    out.extend_from_slice(application_data);
    out
}

/// Answers sspi's KDC requests (Kerberos AS and TGS exchanges) with tokio sockets.
#[derive(Clone, Debug)]
struct KdcClient {
    timeout: Duration,
}

impl KdcClient {
    async fn send(&self, request: &NetworkRequest) -> Result<Vec<u8>, sspi::Error> {
        // sspi falls back to NTLM (Negotiate) on this kind, as on an unreachable KDC.
        let unreachable = |message: String| sspi::Error::new(ErrorKind::NoAuthenticatingAuthority, message);
        let host = request.url.host_str().unwrap_or_default().trim_start_matches('[').trim_end_matches(']').to_owned();
        let port = request.url.port().unwrap_or(88);
        debug!(protocol = ?request.protocol, %host, port, bytes = request.data.len(), "kdc request");
        let exchange = async {
            match request.protocol {
                NetworkProtocol::Tcp => {
                    let mut stream = tokio::net::TcpStream::connect((host.as_str(), port)).await?;
                    stream.write_all(&request.data).await?;
                    let mut len = [0u8; 4];
                    stream.read_exact(&mut len).await?;
                    let n = u32::from_be_bytes(len) as usize;
                    if n > MAX_KDC_REPLY {
                        return Err(std::io::Error::other(format!("the KDC announced a {n}-byte reply")));
                    }
                    let mut reply = vec![0u8; 4 + n];
                    reply[..4].copy_from_slice(&len);
                    stream.read_exact(&mut reply[4..]).await?;
                    Ok(reply)
                }
                NetworkProtocol::Udp => {
                    let target = tokio::net::lookup_host((host.as_str(), port))
                        .await?
                        .next()
                        .ok_or_else(|| std::io::Error::other("the KDC's name resolves to no address"))?;
                    let local = if target.is_ipv6() { "[::]:0" } else { "0.0.0.0:0" };
                    let socket = tokio::net::UdpSocket::bind(local).await?;
                    socket.send_to(&request.data, target).await?;
                    let mut buf = vec![0u8; 65536];
                    let n = socket.recv(&mut buf).await?;
                    let mut reply = (n as u32).to_be_bytes().to_vec();
                    reply.extend_from_slice(&buf[..n]);
                    Ok(reply)
                }
                NetworkProtocol::Http | NetworkProtocol::Https => {
                    Err(std::io::Error::other("KDC proxies (MS-KKDCP) are not supported; name the KDC as tcp://host:88"))
                }
            }
        };
        match tokio::time::timeout(self.timeout, exchange).await {
            Ok(Ok(reply)) => Ok(reply),
            Ok(Err(e)) => Err(unreachable(format!("KDC {host}:{port}: {e}"))),
            Err(_) => Err(unreachable(format!("KDC {host}:{port} did not answer within {:?}", self.timeout))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_bindings_structure() {
        let data = b"tls-server-end-point:0123";
        let bytes = sec_channel_bindings(data);
        let parsed = sspi::channel_bindings::ChannelBindings::from_bytes(&bytes).expect("sspi reads it");
        assert_eq!(parsed.application_data, data);
        assert!(parsed.initiator.is_empty() && parsed.acceptor.is_empty());
        assert_eq!(bytes.len(), 32 + data.len());
    }

    fn config(method: AuthMethod, user: &str, password: &SecretString) -> ContextConfig<'static> {
        // Leak for 'static in tests only.
        let password: &'static SecretString = Box::leak(Box::new(password.clone()));
        let user: &'static str = Box::leak(user.to_owned().into_boxed_str());
        ContextConfig {
            method,
            user,
            password,
            // An IP address: Negotiate is then NTLM's (sspi) without asking libkrb5 for a KDC.
            target: "WSMAN/192.0.2.10".to_owned(),
            computer_name: "PSGATE-TEST".to_owned(),
            kdc: None,
            channel_binding: None,
            kdc_timeout: Duration::from_secs(1),
            ticket_cache: false,
        }
    }

    #[tokio::test]
    async fn ntlm_first_token_is_a_negotiate_message() {
        let password = SecretString::from("Secret-1");
        let mut ctx = SecurityContext::new(config(AuthMethod::Ntlm, "PSGATE\\ada", &password)).expect("context");
        let token = ctx.step(None).await.expect("step").expect("a token");
        assert_eq!(&token[..12], b"NTLMSSP\0\x01\0\0\0");
        assert!(!ctx.is_complete());
        // Negotiate wraps it in SPNEGO (a GSS-API InitialContextToken).
        let mut ctx = SecurityContext::new(config(AuthMethod::Negotiate, "ada@psgate.test", &password)).expect("context");
        let token = ctx.step(None).await.expect("step").expect("a token");
        assert_eq!(token[0], 0x60);
        assert!(format!("{ctx:?}").contains("Negotiate"));
    }

    #[tokio::test]
    async fn a_malformed_server_token_is_an_error_not_a_panic() {
        let password = SecretString::from("Secret-1");
        for method in [AuthMethod::Ntlm, AuthMethod::Negotiate] {
            let mut ctx = SecurityContext::new(config(method, "PSGATE\\ada", &password)).expect("context");
            ctx.step(None).await.expect("first step");
            for garbage in [&b""[..], b"NTLMSSP\0\x02\0\0\0", &[0xa1, 0x82, 0xff, 0xff], &[0u8; 64]] {
                let mut ctx2 = SecurityContext::new(config(method, "PSGATE\\ada", &password)).expect("context");
                ctx2.step(None).await.expect("first step");
                assert!(ctx2.step(Some(garbage)).await.is_err(), "{method:?} accepted {garbage:?}");
            }
        }
    }

    /// MsvAvChannelBindings (AV pair 0x000A) of an NTLMv2 AUTHENTICATE message, if present.
    fn channel_bindings_av_pair(authenticate: &[u8]) -> Option<Vec<u8>> {
        let u16_at = |at: usize| u16::from_le_bytes([authenticate[at], authenticate[at + 1]]) as usize;
        let nt_len = u16_at(20);
        let nt_offset = u32::from_le_bytes(authenticate[24..28].try_into().ok()?) as usize;
        let nt = &authenticate[nt_offset..nt_offset + nt_len];
        // NTProofStr (16), then the blob's fixed 28 bytes, then AV pairs (MS-NLMP 2.2.2.7).
        let mut at = 16 + 28;
        while at + 4 <= nt.len() {
            let (id, len) = (u16::from_le_bytes([nt[at], nt[at + 1]]), u16::from_le_bytes([nt[at + 2], nt[at + 3]]));
            if id == 0 {
                return None;
            }
            if id == 0x000a {
                return Some(nt[at + 4..at + 4 + usize::from(len)].to_vec());
            }
            at += 4 + usize::from(len);
        }
        None
    }

    /// pyspnego's CHALLENGE test vector (a Windows-shaped one, target DOMAIN): answered with an AUTHENTICATE whose
    /// channel binding is the MD5 of the SEC_CHANNEL_BINDINGS we pass, and none without one.
    #[tokio::test]
    async fn ntlm_answers_a_recorded_challenge_with_the_channel_binding() {
        let shared = std::env::var_os("PSGATE_SHARED").map(std::path::PathBuf::from).unwrap_or_else(|| std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared"));
        let fixture = shared.join("fixtures/ntlm/ntlm_challenge");
        let challenge = std::fs::read(&fixture).unwrap_or_else(|e| panic!("{}: {e}", fixture.display()));
        let password = SecretString::from("Secret-1");
        let mut bound = config(AuthMethod::Ntlm, "PSGATE\\ada", &password);
        bound.channel_binding = Some(b"tls-server-end-point:0123456789abcdef0123456789abcdef".to_vec());
        let mut unbound = bound.clone();
        unbound.channel_binding = None;

        let mut ctx = SecurityContext::new(bound).expect("context");
        ctx.step(None).await.expect("negotiate");
        let authenticate = ctx.step(Some(&challenge)).await.expect("authenticate").expect("a token");
        assert_eq!(&authenticate[..12], b"NTLMSSP\0\x03\0\0\0");
        assert!(ctx.is_complete());
        let binding = channel_bindings_av_pair(&authenticate).expect("MsvAvChannelBindings");
        assert_eq!(binding.len(), 16);
        assert_ne!(binding, [0u8; 16]);

        let mut ctx = SecurityContext::new(unbound).expect("context");
        ctx.step(None).await.expect("negotiate");
        let authenticate = ctx.step(Some(&challenge)).await.expect("authenticate").expect("a token");
        assert!(channel_bindings_av_pair(&authenticate).is_none_or(|b| b == [0u8; 16]));
        // Sealing works once the context is complete: a signature and data of the plaintext's length.
        let (header, sealed) = ctx.wrap(b"<s:Envelope/>").expect("wrap");
        assert_eq!((header.len(), sealed.len()), (16, 13));
        assert_ne!(sealed, b"<s:Envelope/>");
    }

    #[test]
    fn only_kerberos_and_negotiate_use_a_ticket_cache() {
        let password = SecretString::from("");
        for method in [AuthMethod::Ntlm, AuthMethod::Basic] {
            let mut config = config(method, "PSGATE\\ada", &password);
            config.ticket_cache = true;
            let err = SecurityContext::new(config).expect_err("no ticket cache for it");
            assert!(err.to_string().contains("needs a password"), "{method:?}: {err}");
        }
    }

    #[test]
    fn the_route_of_a_password() {
        use PasswordRoute::*;
        let route = |method, user, target, kdc_named| password_route(method, user, target, kdc_named);
        // Kerberos: GSSAPI, whatever the user and server, unless a KDC is named (sspi).
        assert_eq!(route(AuthMethod::Kerberos, "PSGATE.TEST\\ada", "WSMAN/127.0.0.1", false), Gssapi);
        assert_eq!(route(AuthMethod::Kerberos, "ada", "WSMAN/srv01", false), Gssapi);
        assert_eq!(route(AuthMethod::Kerberos, "PSGATE.TEST\\ada", "WSMAN/srv01", true), SspiWithKdc);
        // Negotiate: Kerberos (GSSAPI) for a host name and a user with a realm; NTLM for an IP address or no realm.
        assert_eq!(route(AuthMethod::Negotiate, "ada@corp.example", "WSMAN/srv01.corp.example", false), Gssapi);
        assert_eq!(route(AuthMethod::Negotiate, "CORP\\ada", "HTTP/srv01", false), Gssapi);
        assert_eq!(route(AuthMethod::Negotiate, "CORP\\ada", "WSMAN/10.0.0.5", false), Ntlm);
        assert_eq!(route(AuthMethod::Negotiate, "CORP\\ada", "WSMAN/::1", false), Ntlm);
        assert_eq!(route(AuthMethod::Negotiate, "ada", "WSMAN/srv01", false), Ntlm);
        assert_eq!(route(AuthMethod::Negotiate, "CORP\\ada", "WSMAN/srv01", true), SspiWithKdc);
    }

    #[test]
    fn negotiate_on_gssapi_keeps_ntlm_as_its_fallback() {
        let password = SecretString::from("Secret-1");
        let mut config = config(AuthMethod::Negotiate, "PSGATE\\ada", &password);
        config.target = "WSMAN/srv01.psgate.test".to_owned();
        let ctx = SecurityContext::new(config.clone()).expect("context");
        let text = format!("{ctx:?}");
        assert!(text.contains("GSSAPI") && text.contains("ntlm_fallback: true"), "{text}");
        assert!(!text.contains("Secret-1"), "{text}");
        config.method = AuthMethod::Kerberos;
        let text = format!("{:?}", SecurityContext::new(config).expect("context"));
        assert!(text.contains("GSSAPI") && text.contains("ntlm_fallback: false"), "{text}");
    }

    #[test]
    fn an_empty_user_name_is_refused() {
        let password = SecretString::from("x");
        let err = SecurityContext::new(config(AuthMethod::Ntlm, " ", &password)).expect_err("no user");
        assert!(err.to_string().contains("no user name"), "{err}");
    }
}
