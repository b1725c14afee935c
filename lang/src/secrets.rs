//! Credentials at the prompt. `Get-Credential` gives a PSCredential whose `Password` is a SecureString; at psgate's
//! prompt the SecureString's bytes are only a handle to the password, which the runspace holds in memory (never in
//! a variable's value, never in the history, never written anywhere), so a variable can be shown, listed, copied
//! and kept without its password.

use psgate_shared::clixml::{Object, Property, Value};

use crate::values;

const MARK: &[u8] = b"psgate-secret:";

/// The passwords of the runspace's credentials and SecureStrings.
#[derive(Default)]
pub struct Secrets {
    items: Vec<String>,
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Secrets({} kept)", self.items.len())
    }
}

impl Secrets {
    /// Keeps a secret; the SecureString value that stands for it.
    pub fn keep(&mut self, secret: String) -> Value {
        self.items.push(secret);
        let mut handle = MARK.to_vec();
        handle.extend_from_slice(&(self.items.len() as u64 - 1).to_le_bytes());
        Value::SecureString(handle)
    }

    /// The secret a SecureString stands for.
    pub fn open(&self, v: &Value) -> Option<&str> {
        let Value::SecureString(bytes) = values::primitive(v) else { return None };
        let index = bytes.strip_prefix(MARK)?;
        let index = u64::from_le_bytes(index.try_into().ok()?);
        self.items.get(usize::try_from(index).ok()?).map(String::as_str)
    }

    /// A PSCredential.
    pub fn credential(&mut self, user: &str, password: String) -> Value {
        let secure = self.keep(password);
        Value::object(Object {
            type_names: Some(vec!["System.Management.Automation.PSCredential".into(), "System.Object".into()].into()),
            to_string: Some("System.Management.Automation.PSCredential".into()),
            adapted: vec![Property::new("UserName", Value::string(user)), Property::new("Password", secure)],
            ..Object::default()
        })
    }

    /// A credential's user and password (`None`: not a credential of this runspace).
    pub fn user_password(&self, v: &Value) -> Option<(String, String)> {
        if !is_credential(v) {
            return None;
        }
        let user = values::text(&values::property(v, "UserName")?);
        let password = self.open(&values::property(v, "Password")?)?.to_owned();
        Some((user, password))
    }
}

/// Whether a value is a PSCredential.
pub fn is_credential(v: &Value) -> bool {
    values::is_type(v, "System.Management.Automation.PSCredential")
}
