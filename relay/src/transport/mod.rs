//! Transports that carry the PowerShell Remoting protocol to a host.
//!
//! [`ssh`]: the `powershell` SSH subsystem, which speaks the out-of-process line protocol (`protocol.md` §6).
//! [`winrm`]: WS-Management over HTTP(S) (`protocol.md` §4–§5): one authenticated, kept-alive connection that carries
//! SOAP envelopes, sealed over plain HTTP.

pub mod local;
pub mod ssh;
pub mod winrm;
