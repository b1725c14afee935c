//! Sessions: a runspace pool on a transport, driven by a task of its own.
//!
//! - [`outofproc`]: the actor that runs the out-of-process protocol (SSH, local process) over any byte
//!   stream; callers send it closures and read its events.
//! - [`prompt`]: psgate's own prompt per user (`psgate_lang`'s runspace) on the manager's sessions.
//! - [`manager`]: the relay's sessions, owned by users, with buffered, resumable pipeline output.

pub mod manager;
pub mod outofproc;
pub mod prompt;
pub mod winrm;
pub mod wsman_drive;
