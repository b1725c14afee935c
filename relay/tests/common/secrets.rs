//! Every log event of a test process, at TRACE (ours, and the `log` events of russh, sspi and rustls), goes
//! through a writer that watches for the test's secrets; set `PSGATE_TEST_LOG=1` to see the events too.

#![allow(dead_code)] // Each test binary that includes this uses a part.

use std::io;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};

static SECRETS: OnceLock<&'static [&'static str]> = OnceLock::new();
static LOGGED: AtomicBool = AtomicBool::new(false);

struct Scanner;

impl io::Write for Scanner {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        if SECRETS.get().is_some_and(|secrets| secrets.iter().any(|s| text.contains(s))) {
            LOGGED.store(true, Ordering::SeqCst);
        }
        if std::env::var_os("PSGATE_TEST_LOG").is_some() {
            io::stderr().write_all(buf)?;
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Watches the process's logs for `secrets` (the first call of the process decides which).
pub fn watch(secrets: &'static [&'static str]) {
    SECRETS.get_or_init(|| {
        let _ = tracing_subscriber::fmt().with_max_level(tracing::Level::TRACE).with_ansi(false).with_writer(|| Scanner).try_init();
        secrets
    });
}

/// Whether any log line so far held a secret.
pub fn logged() -> bool {
    LOGGED.load(Ordering::SeqCst)
}
