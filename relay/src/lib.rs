//! The psgate relay: holds PowerShell sessions, serves the browser console, runs the command line.
//!
//! Code map: [`cli`] (the `psgate` command line), [`http`] (the web server and its routes),
//! [`session`] (a runspace pool on a transport, driven by a task), [`transport`] (SSH, local process).

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
