//! Kerberos through the system's GSSAPI (MIT krb5's `libgssapi_krb5`, by the `libgssapi` crate), with the realm and
//! its KDC from krb5.conf (`KRB5_CONFIG`; DNS where krb5.conf allows it). Two sources of the user's credential:
//!
//! - **A password** ([`GssCredential::Password`]): `gss_acquire_cred_with_password` does the AS exchange with the
//!   realm's KDC at the first step and keeps the TGT — and the service ticket `gss_init_sec_context` then gets — in a
//!   private `MEMORY:` ccache of that credential (MIT's `acquire_init_cred` makes it with `krb5_cc_new_unique(…,
//!   "MEMORY", …)` whenever a password is given; no ccache file, `KRB5CCNAME` and krb5.conf's `default_ccache_name`
//!   are not used). MIT keeps its copy of the password in the credential (to renew the TGT) until the credential is
//!   released with the context; psgate's own copy is a [`SecretString`], zeroed when dropped.
//! - **The ticket cache** ([`GssCredential::TicketCache`]): what `kinit` left in `KRB5CCNAME` (else krb5.conf's
//!   `default_ccache_name`). No secret goes through psgate.
//!
//! Kerberos itself (`AuthMethod::Kerberos`: a raw GSS-API krb5 token under the `Negotiate` scheme, as pypsrp's
//! `auth="kerberos"`) or SPNEGO with Kerberos inside (`AuthMethod::Negotiate`: MIT's SPNEGO, on a SPNEGO credential —
//! see [`PendingPassword::acquire`]; it offers the system's mechanisms, krb5 alone unless gss-ntlmssp is installed;
//! psgate's NTLM is sspi's, see `auth.rs`). Over HTTPS the `tls-server-end-point` data goes in as
//! `gss_channel_bindings_struct`'s application data: the authenticator's checksum carries its MD5 (RFC 4121 4.1.1.2),
//! which MIT's and Windows' acceptors check. Sealing follows MS-WSMV 2.2.9.1 as pyspnego's `wrap_winrm` does:
//! `gss_wrap_iov` with HEADER | DATA | PADDING buffers (the header goes before the sealed data, the padding — none for
//! AES — after it), and `gss_unwrap_iov` with HEADER | DATA.
//!
//! `gss_acquire_cred_with_password` and `gss_init_sec_context` talk to the KDC (blocking IO inside libkrb5), so steps
//! run on tokio's blocking pool. Tokens are never logged.

use libgssapi::context::{ClientCtx, CtxFlags, SecurityContext as _};
use libgssapi::credential::{Cred, CredUsage};
use libgssapi::name::Name;
use libgssapi::oid::{GSS_MECH_KRB5, GSS_MECH_SPNEGO, GSS_NT_HOSTBASED_SERVICE, GSS_NT_KRB5_PRINCIPAL, Oid, OidSet};
use libgssapi::util::{GssIov, GssIovType};
use secrecy::{ExposeSecret as _, SecretString};
use tracing::debug;

use std::sync::{Mutex, PoisonError};

/// libkrb5's error codes (com_err table `krb5`, `krb5.h`) that say the realm's KDC could not be used: not found
/// (krb5.conf and DNS know no KDC for the realm), not reached, in another realm, or with a clock too far from ours.
const KRB5_REALM_UNKNOWN: i32 = -1_765_328_230;
const KRB5_KDC_UNREACH: i32 = -1_765_328_228;
const KRB5_REALM_CANT_RESOLVE: i32 = -1_765_328_164;
const KRB5KDC_ERR_WRONG_REALM: i32 = -1_765_328_316;
const KRB5KRB_AP_ERR_SKEW: i32 = -1_765_328_347;
/// The KDC refused the password (with pre-authentication; without it the reply does not decrypt).
const KRB5KDC_ERR_PREAUTH_FAILED: i32 = -1_765_328_360;
const KRB5KRB_AP_ERR_BAD_INTEGRITY: i32 = -1_765_328_353;
const KRB5KDC_ERR_C_PRINCIPAL_UNKNOWN: i32 = -1_765_328_378;

/// A GSSAPI failure, with MIT's own words (major and minor status).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub(crate) struct GssError {
    message: String,
    /// Kerberos cannot be used here (no KDC for the realm, none reachable, a clock skew, or no service ticket for the
    /// server), as opposed to a refusal of the user's credentials: Negotiate may then use NTLM instead.
    unavailable: bool,
}

impl GssError {
    fn new(what: &str, e: &libgssapi::error::Error) -> Self {
        Self { message: format!("{what}: {}", e.to_string().trim()), unavailable: false }
    }

    fn plain(message: String) -> Self {
        Self { message, unavailable: false }
    }

    fn unavailable(mut self) -> Self {
        self.unavailable = true;
        self
    }

    /// Whether Kerberos could not be used at all (rather than being refused): see [`GssError::unavailable`].
    pub(crate) fn kerberos_unavailable(&self) -> bool {
        self.unavailable
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

/// Where the user's Kerberos credential comes from.
pub(crate) enum GssCredential {
    /// The default ticket cache, filled by `kinit`.
    TicketCache,
    /// A password, for `principal` (`user@REALM`, or `user` in the default realm: see [`kerberos_principal`]).
    Password { principal: String, password: SecretString },
}

impl std::fmt::Debug for GssCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::TicketCache => f.write_str("TicketCache"),
            Self::Password { principal, .. } => {
                f.debug_struct("Password").field("principal", principal).field("password", &"<redacted>").finish()
            }
        }
    }
}

/// A user name as a Kerberos principal for `gss_acquire_cred_with_password`: `REALM\user` and `user@realm` both give
/// `user@REALM` (realms are upper case, as Active Directory's and by convention MIT's; `user@domain` names the realm
/// of its domain, not an enterprise name), a bare `user` is in krb5.conf's `default_realm`. `/`, `@` and `\` in the
/// user part are escaped (krb5_parse_name would read a second component or a realm). The realm is returned too.
pub(crate) fn kerberos_principal(user: &str) -> Result<(String, Option<String>), GssError> {
    let user = user.trim();
    let (name, realm) = match user.split_once('\\') {
        Some((domain, name)) => (name, Some(domain)),
        None => match user.rsplit_once('@') {
            Some((name, domain)) => (name, Some(domain)),
            None => (user, None),
        },
    };
    let realm = realm.map(str::trim).filter(|r| !r.is_empty()).map(str::to_uppercase);
    if name.is_empty() || realm.as_deref().is_some_and(|r| r.contains(['@', '/', '\\'])) {
        return Err(GssError::plain(format!("the user name {user:?} is not a Kerberos principal")));
    }
    let mut principal = String::with_capacity(name.len() + 16);
    for c in name.chars() {
        if matches!(c, '/' | '@' | '\\') {
            principal.push('\\');
        }
        principal.push(c);
    }
    if let Some(realm) = &realm {
        principal.push('@');
        principal.push_str(realm);
    }
    Ok((principal, realm))
}

/// What the context asks of the mechanism: mutual authentication, sealing, sequence and replay detection.
fn flags() -> CtxFlags {
    CtxFlags::GSS_C_MUTUAL_FLAG
        | CtxFlags::GSS_C_INTEG_FLAG
        | CtxFlags::GSS_C_CONF_FLAG
        | CtxFlags::GSS_C_SEQUENCE_FLAG
        | CtxFlags::GSS_C_REPLAY_FLAG
}

/// A password context before its first step: the credential is acquired there, on the blocking pool.
struct PendingPassword {
    principal: String,
    password: SecretString,
    target: Name,
}

impl PendingPassword {
    /// `gss_acquire_cred_with_password` (the AS exchange), then the context on that credential.
    ///
    /// The password goes to the krb5 mechanism first, whose minor status is libkrb5's own code: it says whether the
    /// KDC refused the password (an error) or Kerberos cannot be used here (Negotiate then uses NTLM). SPNEGO's minor
    /// codes cannot say it: MIT's mechglue renumbers a code that a mechanism under SPNEGO already reported. And MIT's
    /// SPNEGO takes only a SPNEGO credential (given a krb5 one, `gss_init_sec_context` finds no SPNEGO element in it
    /// and falls back to the default credential — the process's ticket cache), so for Negotiate a SPNEGO credential
    /// is acquired next, with the password the KDC has just accepted: a second AS exchange. MIT's SPNEGO offers the
    /// mechanisms of the system's GSSAPI that have credentials: krb5 here (IAKERB is not a default mechanism); were
    /// gss-ntlmssp installed, its NTLM too.
    fn acquire(self, mech: GssMech) -> Result<ClientCtx, GssError> {
        let principal = &self.principal;
        let name = Name::new(principal.as_bytes(), Some(GSS_NT_KRB5_PRINCIPAL))
            .map_err(|e| GssError::new(&format!("the principal {principal}"), &e))?;
        let with_password = |mech: Oid<'static>| {
            let mechs = OidSet::singleton(mech).map_err(|e| GssError::new("an OID set", &e))?;
            let password = self.password.expose_secret();
            let cred = Cred::acquire_with_password(Some(&name), password, None, CredUsage::Initiate, Some(&mechs));
            Ok::<_, GssError>(cred)
        };
        let cred = with_password(GSS_MECH_KRB5)?.map_err(|e| {
            let code = e.minor as i32;
            let what = match code {
                KRB5KDC_ERR_PREAUTH_FAILED | KRB5KRB_AP_ERR_BAD_INTEGRITY => {
                    format!("the KDC refused the password of {principal} (pre-authentication failed)")
                }
                KRB5KDC_ERR_C_PRINCIPAL_UNKNOWN => format!("the KDC does not know {principal}"),
                _ => format!("cannot get a Kerberos ticket for {principal} with the password"),
            };
            let error = GssError::new(&what, &e);
            match code {
                KRB5_REALM_UNKNOWN | KRB5_KDC_UNREACH | KRB5_REALM_CANT_RESOLVE | KRB5KDC_ERR_WRONG_REALM
                | KRB5KRB_AP_ERR_SKEW => error.unavailable(),
                _ => error,
            }
        })?;
        let cred = match mech {
            GssMech::Kerberos => cred,
            GssMech::Spnego => {
                drop(cred);
                with_password(GSS_MECH_SPNEGO)?.map_err(|e| {
                    GssError::new(&format!("cannot get a SPNEGO credential for {principal} with the password"), &e)
                })?
            }
        };
        debug!(%principal, ?mech, "gssapi credential from a password (the tickets in a MEMORY ccache)");
        Ok(ClientCtx::new(Some(cred), self.target, flags(), Some(mech.oid())))
    }
}

/// A client context through the system's GSSAPI.
pub(crate) struct GssContext {
    /// None only before the first step of a password context, while a step runs on the blocking pool, or after it
    /// panicked. In a mutex only to be `Sync`, as the `WinrmClient` that holds it is (the context is used through
    /// `&mut self`, so the lock is never contended).
    ctx: Option<Mutex<ClientCtx>>,
    /// A password context until its first step.
    pending: Option<PendingPassword>,
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
    /// host-based name `SERVICE@host`, which krb5.conf maps to a realm. From the ticket cache, fails now, not at the
    /// first step, when the cache is missing, empty or expired; with a password, the KDC is first asked at the first
    /// step.
    pub(crate) fn new(
        mech: GssMech,
        target: &str,
        bindings: Option<Vec<u8>>,
        credential: GssCredential,
    ) -> Result<Self, GssError> {
        let service = match target.split_once('/') {
            Some((service, host)) if !service.is_empty() && !host.is_empty() => format!("{service}@{host}"),
            _ => return Err(GssError::plain(format!("the service principal {target:?} is not SERVICE/host"))),
        };
        let name = Name::new(service.as_bytes(), Some(GSS_NT_HOSTBASED_SERVICE))
            .map_err(|e| GssError::new(&format!("the service name {service}"), &e))?;
        let (ctx, pending) = match credential {
            GssCredential::TicketCache => {
                // The mechanism's own credential: SPNEGO's for SPNEGO (given a krb5 one, MIT's SPNEGO would find no
                // element of its own in it and take the default credential anyway).
                let mechs = OidSet::singleton(mech.oid()).map_err(|e| GssError::new("an OID set", &e))?;
                // The default initiator credential: the ticket cache's principal and its TGT (checked here, so that a
                // missing `kinit` is said plainly).
                let cred = Cred::acquire(None, None, CredUsage::Initiate, Some(&mechs)).map_err(|e| {
                    GssError::new("no usable Kerberos ticket cache (run kinit; KRB5CCNAME names the cache)", &e)
                })?;
                if let Ok(principal) = cred.name().and_then(|n| n.display_name()) {
                    let principal = String::from_utf8_lossy(&principal);
                    debug!(%principal, %service, ?mech, "gssapi credential from the ticket cache");
                }
                (Some(Mutex::new(ClientCtx::new(Some(cred), name, flags(), Some(mech.oid())))), None)
            }
            GssCredential::Password { principal, password } => {
                debug!(%principal, %service, ?mech, "gssapi with a password");
                (None, Some(PendingPassword { principal, password, target: name }))
            }
        };
        Ok(Self { ctx, pending, mech, bindings, complete: false })
    }

    fn get(&mut self) -> Result<&mut ClientCtx, GssError> {
        let ctx = self.ctx.as_mut().ok_or_else(|| GssError::plain("the security context was lost".to_owned()))?;
        Ok(ctx.get_mut().unwrap_or_else(PoisonError::into_inner))
    }

    pub(crate) fn is_complete(&self) -> bool {
        self.complete
    }

    /// The next token for the server, from its last one (None at the start). May ask the KDC for a TGT (the first
    /// step with a password) and a service ticket. A first step that fails after the password was accepted is
    /// [`GssError::kerberos_unavailable`]: the KDC has no ticket for this server, or cannot be reached for one.
    pub(crate) async fn step(&mut self, server_token: Option<&[u8]>) -> Result<Option<Vec<u8>>, GssError> {
        let start = match (self.pending.take(), self.ctx.take()) {
            (Some(pending), _) => Err(pending),
            (None, Some(ctx)) => Ok(ctx.into_inner().unwrap_or_else(PoisonError::into_inner)),
            (None, None) => return Err(GssError::plain("the security context was lost".to_owned())),
        };
        let first_with_password = start.is_err();
        let input = server_token.map(<[u8]>::to_vec);
        let bindings = self.bindings.clone();
        let mech = self.mech;
        let (ctx, result) = tokio::task::spawn_blocking(move || {
            let mut ctx = match start {
                Ok(ctx) => ctx,
                Err(pending) => pending.acquire(mech)?,
            };
            let result = ctx.step(input.as_deref(), bindings.as_deref()).map(|out| out.map(|b| b.to_vec()));
            let complete = ctx.is_complete();
            Ok::<_, GssError>((ctx, result.map(|token| (token, complete))))
        })
        .await
        .map_err(|e| GssError::plain(format!("the GSSAPI step failed: {e}")))??;
        self.ctx = Some(Mutex::new(ctx));
        let (token, complete) = result.map_err(|e| {
            let error = GssError::new("GSSAPI", &e);
            if first_with_password { error.unavailable() } else { error }
        })?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_names_become_principals() {
        let principal = |user: &str| kerberos_principal(user).expect(user);
        assert_eq!(principal("PSGATE.TEST\\ada"), ("ada@PSGATE.TEST".to_owned(), Some("PSGATE.TEST".to_owned())));
        assert_eq!(principal("ada@psgate.test"), ("ada@PSGATE.TEST".to_owned(), Some("PSGATE.TEST".to_owned())));
        assert_eq!(principal(" ada "), ("ada".to_owned(), None));
        assert_eq!(principal("\\ada"), ("ada".to_owned(), None));
        assert_eq!(principal("CORP\\first@x"), ("first\\@x@CORP".to_owned(), Some("CORP".to_owned())));
        assert_eq!(principal("a/b@corp.example").0, "a\\/b@CORP.EXAMPLE");
        for bad in ["", " ", "CORP\\", "@corp.example", "a@b/c"] {
            assert!(kerberos_principal(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_password_credential_is_not_debug_printed() {
        let password = SecretString::from("hunter2");
        let credential = GssCredential::Password { principal: "ada@PSGATE.TEST".to_owned(), password };
        let text = format!("{credential:?}");
        assert!(text.contains("ada@PSGATE.TEST") && !text.contains("hunter2"), "{text}");
    }
}
