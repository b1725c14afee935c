//! A local PowerShell process speaking the out-of-process protocol on its standard input and output
//! (`pwsh -s`, the way `New-PSSession -UseWindowsPowerShell` and background jobs reach their host).

use std::ffi::OsString;
use std::process::Stdio;

use tokio::io::{AsyncBufReadExt, BufReader, Join};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

/// The default command: PowerShell in server mode.
pub const DEFAULT_COMMAND: &[&str] = &["pwsh", "-s", "-NoLogo", "-NoProfile"];

/// A running process and the stream to it. Dropping it kills the process.
#[derive(Debug)]
pub struct LocalProcess {
    /// The process (killed when dropped).
    pub child: Child,
    /// Its standard output (read) joined with its standard input (write).
    pub stream: Join<ChildStdout, ChildStdin>,
}

/// Why the process could not start.
#[derive(Debug, thiserror::Error)]
pub enum LocalError {
    /// No command given.
    #[error("no command to run")]
    Empty,
    /// The process did not start.
    #[error("could not start {program:?}: {source}")]
    Spawn {
        /// The program.
        program: OsString,
        /// Why.
        source: std::io::Error,
    },
}

/// Starts `argv` (program and arguments) with piped standard input and output; its standard error is
/// logged line by line.
pub fn spawn(argv: &[OsString]) -> Result<LocalProcess, LocalError> {
    let (program, args) = argv.split_first().ok_or(LocalError::Empty)?;
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|source| LocalError::Spawn { program: program.clone(), source })?;
    let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
        return Err(LocalError::Spawn { program: program.clone(), source: std::io::Error::other("no pipes") });
    };
    if let Some(stderr) = child.stderr.take() {
        let name = program.to_string_lossy().into_owned();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                tracing::warn!(program = %name, %line, "stderr of the local PowerShell process");
            }
        });
    }
    tracing::info!(program = %program.to_string_lossy(), pid = child.id(), "started a local PowerShell process");
    Ok(LocalProcess { child, stream: tokio::io::join(stdout, stdin) })
}
