//! The psgate relay: holds PowerShell sessions, serves the browser console, runs the command line.
//!
//! Code map: [`cli`] (the `psgate` command line), [`http`] (the web server and its routes),
//! [`session`] (a runspace pool on a transport, driven by a task), [`transport`] (SSH, local process).

pub mod audit;
pub mod cli;
pub mod config;
pub mod http;
pub mod metrics;
pub mod session;
pub mod seal;
pub mod store;
pub mod transport;
pub mod quotas;
pub mod wsman;

/// Now, in milliseconds since the Unix epoch: the wall clock, for what outlives the process (logins, kept sessions,
/// relay heartbeats).
pub(crate) fn unix_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// This machine's host name, if it has one.
pub(crate) fn host_name() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|s| s.trim().to_owned())
        .ok()
        .filter(|s| !s.is_empty())
}
