//! Kerberos from the user's existing ticket cache, through the system's GSSAPI (MIT krb5's `libgssapi_krb5`, by the
//! `libgssapi` crate): what `kinit` left in `KRB5CCNAME` (else krb5.conf's `default_ccache_name`), the realm and
//! KDC from krb5.conf (`KRB5_CONFIG`). sspi, which does Kerberos with a password, cannot read an MIT ticket cache.
//!
//! Kerberos itself (`AuthMethod::Kerberos`: a raw GSS-API krb5 token under the `Negotiate` scheme, as pypsrp's
//! `auth="kerberos"`) or SPNEGO with Kerberos inside (`AuthMethod::Negotiate`; MIT's SPNEGO has no NTLM unless
//! gss-ntlmssp is installed). Sealing follows MS-WSMV 2.2.9.1 as pyspnego's `wrap_winrm` does: `gss_wrap_iov` with
//! HEADER | DATA | PADDING buffers (the header goes before the sealed data, the padding — none for AES — after it),
//! and `gss_unwrap_iov` with HEADER | DATA.
//!
//! `gss_init_sec_context` may ask the KDC for a service ticket (blocking IO inside libkrb5), so steps run on tokio's
//! blocking pool. No secret goes through here: the ticket cache holds them, and tokens are never logged.

use libgssapi::context::{ClientCtx, CtxFlags, SecurityContext as _};
use libgssapi::credential::{Cred, CredUsage};
use libgssapi::name::Name;
use libgssapi::oid::{GSS_MECH_KRB5, GSS_MECH_SPNEGO, GSS_NT_HOSTBASED_SERVICE, Oid, OidSet};
use libgssapi::util::{GssIov, GssIovType};
use tracing::debug;

use std::sync::{Mutex, PoisonError};

/// A GSSAPI failure, with MIT's own words (major and minor status).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub(crate) struct GssError(String);

impl GssError {
    fn new(what: &str, e: &libgssapi::error::Error) -> Self {
        Self(format!("{what}: {}", e.to_string().trim()))
    }
}

/// The mechanism asked of GSSAPI.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum GssMech {
    Kerberos,
    Spnego,
}

impl GssMech {
    fn oid(self) -> Oid<'static> {
        match self {
            Self::Kerberos => GSS_MECH_KRB5,
            Self::Spnego => GSS_MECH_SPNEGO,
        }
    }
}

/// A client context on the default ticket cache.
pub(crate) struct GssContext {
    /// None only while a step runs on the blocking pool (or after it panicked). In a mutex only to be `Sync`, as the
    /// `WinrmClient` that holds it is (the context is used through `&mut self`, so the lock is never contended).
    ctx: Option<Mutex<ClientCtx>>,
    mech: GssMech,
    /// The `gss_channel_bindings_struct` application data (`tls-server-end-point:…`), over HTTPS.
    bindings: Option<Vec<u8>>,
    complete: bool,
}

impl std::fmt::Debug for GssContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GssContext")
            .field("mech", &self.mech)
            .field("channel_binding", &self.bindings.is_some())
            .field("complete", &self.complete)
            .finish_non_exhaustive()
    }
}

impl GssContext {
    /// `target` is a service principal in the `SERVICE/host` form (`WSMAN/srv01.corp.example`); GSSAPI gets the
    /// host-based name `SERVICE@host`, which krb5.conf maps to a realm. Fails now, not at the first step, when the
    /// ticket cache is missing, empty or expired.
    pub(crate) fn new(mech: GssMech, target: &str, bindings: Option<Vec<u8>>) -> Result<Self, GssError> {
        let service = match target.split_once('/') {
            Some((service, host)) if !service.is_empty() && !host.is_empty() => format!("{service}@{host}"),
            _ => return Err(GssError(format!("the service principal {target:?} is not SERVICE/host"))),
        };
        let name = Name::new(service.as_bytes(), Some(GSS_NT_HOSTBASED_SERVICE))
            .map_err(|e| GssError::new(&format!("the service name {service}"), &e))?;
        let mechs = OidSet::singleton(GSS_MECH_KRB5).map_err(|e| GssError::new("an OID set", &e))?;
        // The default initiator credential: the ticket cache's principal and its TGT (checked here, so that a missing
        // `kinit` is said plainly).
        let cred = Cred::acquire(None, None, CredUsage::Initiate, Some(&mechs)).map_err(|e| {
            GssError::new("no usable Kerberos ticket cache (run kinit; KRB5CCNAME names the cache)", &e)
        })?;
        if let Ok(principal) = cred.name().and_then(|n| n.display_name()) {
            let principal = String::from_utf8_lossy(&principal);
            debug!(%principal, %service, ?mech, "gssapi credential from the ticket cache");
        }
        let flags = CtxFlags::GSS_C_MUTUAL_FLAG
            | CtxFlags::GSS_C_INTEG_FLAG
            | CtxFlags::GSS_C_CONF_FLAG
            | CtxFlags::GSS_C_SEQUENCE_FLAG
            | CtxFlags::GSS_C_REPLAY_FLAG;
        let ctx = ClientCtx::new(Some(cred), name, flags, Some(mech.oid()));
        Ok(Self { ctx: Some(Mutex::new(ctx)), mech, bindings, complete: false })
    }

    fn take(&mut self) -> Result<ClientCtx, GssError> {
        let ctx = self.ctx.take().ok_or_else(|| GssError("the security context was lost".to_owned()))?;
        Ok(ctx.into_inner().unwrap_or_else(PoisonError::into_inner))
    }

    fn get(&mut self) -> Result<&mut ClientCtx, GssError> {
        let ctx = self.ctx.as_mut().ok_or_else(|| GssError("the security context was lost".to_owned()))?;
        Ok(ctx.get_mut().unwrap_or_else(PoisonError::into_inner))
    }

    pub(crate) fn is_complete(&self) -> bool {
        self.complete
    }

    /// The next token for the server, from its last one (None at the start). May ask the KDC for a service ticket.
    pub(crate) async fn step(&mut self, server_token: Option<&[u8]>) -> Result<Option<Vec<u8>>, GssError> {
        let mut ctx = self.take()?;
        let input = server_token.map(<[u8]>::to_vec);
        let bindings = self.bindings.clone();
        let (ctx, result) = tokio::task::spawn_blocking(move || {
            let result = ctx.step(input.as_deref(), bindings.as_deref()).map(|out| out.map(|b| b.to_vec()));
            let complete = ctx.is_complete();
            (ctx, result.map(|token| (token, complete)))
        })
        .await
        .map_err(|e| GssError(format!("the GSSAPI step failed: {e}")))?;
        self.ctx = Some(Mutex::new(ctx));
        let (token, complete) = result.map_err(|e| GssError::new("GSSAPI", &e))?;
        self.complete = complete;
        debug!(complete, token_bytes = token.as_ref().map_or(0, Vec::len), "gssapi step");
        Ok(token.filter(|t| !t.is_empty()))
    }

    /// Seals `plaintext`: (header, sealed data followed by the padding), MS-WSMV 2.2.9.1.
    pub(crate) fn wrap(&mut self, plaintext: &[u8]) -> Result<(Vec<u8>, Vec<u8>), GssError> {
        let ctx = self.get()?;
        let mut data = plaintext.to_vec();
        let (header, padding) = {
            let mut iov = [
                GssIov::new_alloc(GssIovType::Header),
                GssIov::new(GssIovType::Data, &mut data),
                GssIov::new_alloc(GssIovType::Padding),
            ];
            ctx.wrap_iov(true, &mut iov).map_err(|e| GssError::new("gss_wrap_iov", &e))?;
            (iov[0].to_vec(), iov[2].to_vec())
        };
        data.extend_from_slice(&padding);
        Ok((header, data))
    }

    /// Opens a sealed message (its header, then the sealed data).
    pub(crate) fn unwrap(&mut self, header: &[u8], sealed: &[u8]) -> Result<Vec<u8>, GssError> {
        let ctx = self.get()?;
        let mut header = header.to_vec();
        let mut data = sealed.to_vec();
        {
            let mut iov = [GssIov::new(GssIovType::Header, &mut header), GssIov::new(GssIovType::Data, &mut data)];
            ctx.unwrap_iov(&mut iov).map_err(|e| GssError::new("gss_unwrap_iov", &e))?;
        }
        Ok(data)
    }
}
