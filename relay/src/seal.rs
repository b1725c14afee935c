//! Target passwords at rest: AES-256-GCM with a key of the relay's own, so that a disconnected WinRM session can be
//! connected again after a restart without a password in clear in the database.
//!
//! The key lives in `seal_key_file`, by default a file beside an SQLite database (`<database>.key`; mode 0600, made
//! on first use; a PostgreSQL store needs `seal_key_file`, the same file for every relay sharing it); the database
//! holds `nonce ‖ ciphertext ‖ tag`, with the row's identity as associated data so that a sealed value cannot be
//! moved to another row. Whoever can read both the database and the key file can read the passwords: keep the
//! relay's state folder to the relay's account. An in-memory store gets a key that dies with the process.

use std::path::{Path, PathBuf};

use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::hmac;
use ring::rand::{SecureRandom as _, SystemRandom};

/// What the channel key is derived with.
const CHANNEL_LABEL: &[u8] = b"psgate relay channel v1";
/// What the audit chain's key is derived with.
const AUDIT_LABEL: &[u8] = b"psgate audit chain v1";

/// Why a value could not be sealed or opened.
#[derive(Debug, thiserror::Error)]
pub enum SealError {
    /// The key file could not be read or written.
    #[error("the key file {}: {source}", .path.display())]
    KeyFile {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The key file is not 32 bytes.
    #[error("the key file {} is not a 32-byte key", .0.display())]
    BadKey(PathBuf),
    /// The system's random source failed.
    #[error("no randomness")]
    Random,
    /// The sealed value was made with another key, altered, or belongs to another row.
    #[error("a sealed value does not open with this relay's key")]
    Open,
}

/// Seals and opens secrets with the relay's key; signs and checks the relay-to-relay channel's requests with a key
/// derived from it (HMAC-SHA256 of a label: relays that share the sealing key share this one, and neither reveals the
/// other).
pub struct Sealer {
    key: LessSafeKey,
    channel: hmac::Key,
    /// The audit chain's MAC key (derived as the channel's, with its own label).
    audit: hmac::Key,
    rng: SystemRandom,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sealer(<key>)")
    }
}

impl Sealer {
    /// The key in `path`, made (0600) if there is none.
    pub fn load_or_create(path: &Path) -> Result<Sealer, SealError> {
        let file_error = |source| SealError::KeyFile { path: path.to_owned(), source };
        let bytes = match std::fs::read(path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let key = random_key()?;
                write_private(path, &key).map_err(file_error)?;
                key.to_vec()
            }
            Err(e) => return Err(file_error(e)),
        };
        let key: [u8; 32] = bytes.try_into().map_err(|_| SealError::BadKey(path.to_owned()))?;
        Ok(Sealer::with_key(&key))
    }

    /// A key that lives as long as the process (for an in-memory store).
    pub fn ephemeral() -> Result<Sealer, SealError> {
        Ok(Sealer::with_key(&random_key()?))
    }

    fn with_key(key: &[u8; 32]) -> Sealer {
        let channel = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key), CHANNEL_LABEL);
        let channel = hmac::Key::new(hmac::HMAC_SHA256, channel.as_ref());
        let audit = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key), AUDIT_LABEL);
        let audit = hmac::Key::new(hmac::HMAC_SHA256, audit.as_ref());
        let key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, key).expect("a 32-byte AES-256 key"));
        Sealer { key, channel, audit, rng: SystemRandom::new() }
    }

    /// `message` signed with the channel key, in hex.
    pub fn sign(&self, message: &[u8]) -> String {
        hmac::sign(&self.channel, message).as_ref().iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The audit chain's MAC key ([`crate::audit`]).
    pub fn audit_key(&self) -> AuditKey {
        AuditKey(self.audit.clone())
    }

    /// Whether `signature` (hex) is [`Sealer::sign`]'s for `message` (compared in constant time).
    pub fn verify(&self, message: &[u8], signature: &str) -> bool {
        let bytes: Option<Vec<u8>> = signature.len().is_multiple_of(2)
            .then(|| (0..signature.len()).step_by(2).map(|i| signature.get(i..i + 2).and_then(|h| u8::from_str_radix(h, 16).ok())).collect())
            .flatten();
        bytes.is_some_and(|b| hmac::verify(&self.channel, message, &b).is_ok())
    }

    /// `plain` sealed for the row `context`.
    pub fn seal(&self, plain: &str, context: &str) -> Result<Vec<u8>, SealError> {
        let mut nonce = [0u8; NONCE_LEN];
        self.rng.fill(&mut nonce).map_err(|_| SealError::Random)?;
        let mut data = plain.as_bytes().to_vec();
        self.key.seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::from(context.as_bytes()), &mut data).map_err(|_| SealError::Random)?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&data);
        Ok(out)
    }

    /// What [`Sealer::seal`] sealed for `context`.
    pub fn open(&self, sealed: &[u8], context: &str) -> Result<String, SealError> {
        if sealed.len() < NONCE_LEN {
            return Err(SealError::Open);
        }
        let (nonce, data) = sealed.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| SealError::Open)?;
        let mut data = data.to_vec();
        let plain = self.key.open_in_place(nonce, Aad::from(context.as_bytes()), &mut data).map_err(|_| SealError::Open)?;
        String::from_utf8(plain.to_vec()).map_err(|_| SealError::Open)
    }
}

fn random_key() -> Result<[u8; 32], SealError> {
    let mut key = [0u8; 32];
    SystemRandom::new().fill(&mut key).map_err(|_| SealError::Random)?;
    Ok(key)
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_values_open_only_with_their_key_and_row() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("psgate.db.key");
        let a = Sealer::load_or_create(&path).expect("key made");
        let sealed = a.seal("Secret-1", "session 1").expect("sealed");
        assert!(!sealed.windows(8).any(|w| w == b"Secret-1"), "not in clear");
        use std::os::unix::fs::PermissionsExt as _;
        assert_eq!(std::fs::metadata(&path).expect("key file").permissions().mode() & 0o777, 0o600);
        let again = Sealer::load_or_create(&path).expect("key read");
        assert_eq!(again.open(&sealed, "session 1").expect("opens after a restart"), "Secret-1");
        assert!(matches!(again.open(&sealed, "session 2"), Err(SealError::Open)), "bound to its row");
        assert!(matches!(Sealer::ephemeral().expect("key").open(&sealed, "session 1"), Err(SealError::Open)));
        let mut bad = sealed.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert!(matches!(again.open(&bad, "session 1"), Err(SealError::Open)));
        // The channel key: the same for relays sharing the key file, another for another key.
        let signature = a.sign(b"alice");
        assert!(again.verify(b"alice", &signature) && !again.verify(b"bob", &signature));
        assert!(!Sealer::ephemeral().expect("key").verify(b"alice", &signature));
        assert!(!again.verify(b"alice", "zz") && !again.verify(b"alice", &signature[1..]));
        std::fs::write(&path, b"short").expect("write");
        assert!(matches!(Sealer::load_or_create(&path), Err(SealError::BadKey(_))));
    }
}

/// The audit chain's MAC key: HMAC-SHA256 under a key derived from the sealing key (relays sharing the sealing key
/// share it; it reveals neither the sealing key nor the channel's).
#[derive(Clone)]
pub struct AuditKey(hmac::Key);

impl std::fmt::Debug for AuditKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AuditKey(<key>)")
    }
}

impl AuditKey {
    /// `message`'s MAC, in hex.
    pub fn mac(&self, message: &[u8]) -> String {
        hmac::sign(&self.0, message).as_ref().iter().map(|b| format!("{b:02x}")).collect()
    }
}
