//! Transports that carry the PowerShell Remoting protocol to a host.
//!
//! [`ssh`]: the `powershell` SSH subsystem, which speaks the out-of-process line protocol (`protocol.md` §6).

pub mod local;
pub mod ssh;
