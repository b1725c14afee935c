//! psgate's own prompt (`PS psgate>`): the subset of PowerShell that admins type to drive remoting
//! (`$s1, $s2 = New-PSSession -ComputerName srv02, dc01`, `Get-PSSession -ComputerName SRV02 | Enter-PSSession`),
//! with PowerShell's rules: case-insensitive names, unambiguous parameter prefixes, positional parameters,
//! parameter sets, pipeline binding, and its words for errors.
//!
//! **Architecture invariant:** no IO, no async runtime, no clock. Text and two traits go in ([`Remoting`]: the user's
//! sessions; [`Host`]: the console); values and events come out. The relay wires it to its session manager, `psgate
//! shell` to an in-process one, the tests to a fake. Nothing a user types can panic it: the parser is bounded
//! ([`parser::MAX_DEPTH`]) and fuzzed.

pub mod ast;
mod bind;
mod cmdlets;
pub mod complete;
mod error;
mod eval;
pub mod format;
pub mod format_data;
pub mod fuzzing;
mod help;
mod host;
pub mod export;
pub mod implicit;
pub mod jea;
mod jobs;
mod members;
mod methods;
pub mod parser;
pub mod quota;
pub mod remote;
mod secrets;
pub mod session;
pub mod values;
pub mod wsman;

pub use cmdlets::names as command_names;
pub use complete::{Completions, complete};
pub use error::{ErrorSpec, Category, Failure, ParseError, informational, position_message};
pub use eval::{Entered, HistoryEntry, Outcome, PSGATE_VERSION, Route, Runspace, is_exit_line};
pub use parser::{is_incomplete, parse};
pub use remote::{Host, Invocation, QuotaUse, RemoteError, RemoteEvent, Remoting, RunId, SaveError, UserSession, WsmanItem, WsmanNode};
