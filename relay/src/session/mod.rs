//! Sessions: a runspace pool on a transport, driven by a task of its own.
//!
//! - [`outofproc`]: the actor that runs the out-of-process protocol (SSH, local process) over any byte
//!   stream; callers send it closures and read its events.
//! - [`manager`]: the relay's sessions, owned by users, with buffered, resumable pipeline output.

pub mod manager;
pub mod outofproc;
pub mod winrm;
