//! The out-of-process session actor: owns an [`OutOfProcClient`] and a byte stream, moves lines between
//! them, and reports events. Commands are closures run on the client inside the task, so every caller
//! sees one consistent client without locks. Events are delivered with backpressure: while the consumer
//! lags, the task stops reading the transport (and SSH's window stops the server), but it still takes
//! commands, so a caller waiting on a command can never deadlock against a full event queue.

use std::collections::VecDeque;

use psgate_shared::psrp::messages::PipelineSpec;
use psgate_shared::psrp::outofproc::{ClientEvent, OutOfProcClient};
use psgate_shared::psrp::pool::{ProtocolError, RunspacePool};
use uuid::Uuid;
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader, BufWriter};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

/// The longest line accepted from a server. PowerShell's fragments are 32 KiB (about 44 KiB of base64
/// per line); this leaves room for servers that pack several fragments into one packet.
pub const MAX_LINE: usize = 16 << 20;

/// Events held before the task stops reading the transport.
const MAX_PENDING_EVENTS: usize = 1024;

/// Work for a session's task: runs on its client.
pub type Job = Box<dyn FnOnce(&mut dyn Client) + Send>;

/// What the manager asks of a session's protocol client, whatever the transport: the PSRP pool, and the
/// transport's own handling of pipelines (out of process: Command/Signal/Close packets; WS-Management: Command,
/// Signal and Delete requests).
pub trait Client: Send {
    /// The pool.
    fn pool(&self) -> &RunspacePool;
    /// The pool, to queue messages (answer host calls, send input, …).
    fn pool_mut(&mut self) -> &mut RunspacePool;
    /// Opens the pool (and, over WS-Management, creates the shell).
    fn open(&mut self) -> Result<(), ProtocolError>;
    /// Starts a pipeline.
    fn create_pipeline(&mut self, id: Uuid, spec: &PipelineSpec) -> Result<(), ProtocolError>;
    /// GET_COMMAND_METADATA as pipeline `id` (its answers come as the pipeline's output): every transport sends a
    /// pipeline's first message the same way, whichever it is.
    fn command_metadata(&mut self, id: Uuid, names: &[&str], namespaces: &[&str]) -> Result<(), ProtocolError> {
        self.pool_mut().get_command_metadata_in(id, names, namespaces)
    }
    /// Stops a pipeline (Ctrl+C).
    fn stop(&mut self, id: Uuid);
    /// Releases a finished pipeline at the target.
    fn close_pipeline(&mut self, id: Uuid);
    /// Closes the session; [`ClientEvent::SessionClosed`] follows.
    fn close(&mut self);
    /// Disconnect-PSSession: [`ClientEvent::Disconnected`] or [`ClientEvent::OperationFailed`] follows.
    fn disconnect(&mut self, idle_timeout: Option<std::time::Duration>, buffer_mode: Option<psgate_shared::api::OutputBufferingMode>) -> Result<(), Unsupported> {
        let _ = (idle_timeout, buffer_mode);
        Err(Unsupported)
    }
    /// Connects a disconnected session again: [`ClientEvent::Reconnected`] or [`ClientEvent::OperationFailed`].
    fn reconnect(&mut self) -> Result<(), Unsupported> {
        Err(Unsupported)
    }
    /// Why the session broke, when the transport knows better than the pool's message (WS-Management faults).
    fn failure(&self) -> Option<psgate_shared::api::ErrorCode> {
        None
    }
    /// What a later Connect needs (WS-Management).
    fn shell(&self) -> Option<crate::session::winrm::ShellRecord> {
        None
    }
}

/// The transport cannot disconnect (SSH and local processes end with their connection).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("this session's transport cannot disconnect and connect again (only WinRM sessions can)")]
pub struct Unsupported;

impl Client for OutOfProcClient {
    fn pool(&self) -> &RunspacePool {
        OutOfProcClient::pool(self)
    }
    fn pool_mut(&mut self) -> &mut RunspacePool {
        OutOfProcClient::pool_mut(self)
    }
    fn open(&mut self) -> Result<(), ProtocolError> {
        OutOfProcClient::open(self)
    }
    fn create_pipeline(&mut self, id: Uuid, spec: &PipelineSpec) -> Result<(), ProtocolError> {
        OutOfProcClient::create_pipeline(self, id, spec)
    }
    fn stop(&mut self, id: Uuid) {
        OutOfProcClient::stop(self, id);
    }
    fn close_pipeline(&mut self, id: Uuid) {
        OutOfProcClient::close_pipeline(self, id);
    }
    fn close(&mut self) {
        OutOfProcClient::close(self);
    }
}

/// A running session. Dropping it closes the session and the transport.
#[derive(Debug)]
pub struct Session {
    jobs: mpsc::Sender<Job>,
    /// What happens, in order. Ends after [`ClientEvent::SessionClosed`] or when the transport ends.
    pub events: mpsc::Receiver<ClientEvent>,
    task: JoinHandle<()>,
}

/// The session's task has ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the session has ended")]
pub struct SessionEnded;

impl Session {
    /// Starts the task for `client` over `stream`.
    pub fn start<S>(stream: S, client: OutOfProcClient) -> Session
    where
        S: AsyncRead + AsyncWrite + Send + 'static,
    {
        Session::spawn(|jobs, events| run(stream, client, jobs, events))
    }

    /// Starts `task`, which takes jobs from its first argument and sends events to its second.
    pub fn spawn<F, Fut>(task: F) -> Session
    where
        F: FnOnce(mpsc::Receiver<Job>, mpsc::Sender<ClientEvent>) -> Fut,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        let (jobs_tx, jobs_rx) = mpsc::channel::<Job>(64);
        let (events_tx, events_rx) = mpsc::channel(256);
        let task = tokio::spawn(task(jobs_rx, events_tx));
        Session { jobs: jobs_tx, events: events_rx, task }
    }

    /// Runs `f` on the client inside the session's task and returns its result; lines it queues are sent.
    pub async fn with<R, F>(&self, f: F) -> Result<R, SessionEnded>
    where
        R: Send + 'static,
        F: FnOnce(&mut dyn Client) -> R + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let job: Job = Box::new(move |c| {
            let _ = tx.send(f(c));
        });
        self.jobs.send(job).await.map_err(|_| SessionEnded)?;
        rx.await.map_err(|_| SessionEnded)
    }

    /// Ends the session's task at once, sending nothing more to the target: the shell stays there, held by a client
    /// that is gone (what a relay killed leaves; also what a relay must do with a session another relay took over).
    ///
    /// The handles are dropped only once the task has stopped: `abort` takes effect at the task's next await, and a
    /// task running meanwhile on another thread that saw its jobs' channel closed would take it for every handle
    /// gone, and close the session at the target (a WinRM shell deleted under the relay that took it over: seen as
    /// `shell not found` in `winrm_session.rs::a_shell_whose_client_died_is_taken_over_as_that_client`, under load).
    pub fn abandon(self) {
        let Session { jobs, events, task } = self;
        task.abort();
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(async move {
                    let _ = task.await;
                    drop((jobs, events));
                });
            }
            // No runtime: no task runs either.
            Err(_) => drop((jobs, events, task)),
        }
    }

    /// Waits for the task to end (after the session closed or the transport ended).
    pub async fn finished(self) {
        let Session { jobs, events, task } = self;
        drop(events);
        drop(jobs);
        let _ = task.await;
    }
}

async fn run<S>(stream: S, mut client: OutOfProcClient, mut jobs: mpsc::Receiver<Job>, events: mpsc::Sender<ClientEvent>)
where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let (read, write) = tokio::io::split(stream);
    // One PowerShell fragment line is about 44 KiB; an idle session should cost little.
    let mut reader = BufReader::with_capacity(64 << 10, read);
    let mut writer = BufWriter::with_capacity(16 << 10, write);
    let mut line = Vec::new();
    let mut pending: VecDeque<ClientEvent> = VecDeque::new();
    let mut transport_open = true;
    let mut jobs_open = true;
    let mut session_closed = false;
    loop {
        // Send what the client queued.
        let mut wrote = false;
        while let Some(l) = client.poll_line() {
            wrote = true;
            if let Err(e) = write_line(&mut writer, &l).await {
                tracing::warn!(error = %e, "writing to the transport failed");
                client.transport_closed(&format!("writing to the server failed: {e}"));
                transport_open = false;
                break;
            }
        }
        if wrote && transport_open && writer.flush().await.is_err() {
            client.transport_closed("writing to the server failed");
            transport_open = false;
        }
        while let Some(e) = client.poll_event() {
            session_closed |= matches!(e, ClientEvent::SessionClosed);
            pending.push_back(e);
        }
        // Done when everything is delivered (or nobody listens) and the session or the transport ended.
        // A closed session ends the task even if the server keeps the transport open (PowerShell waits
        // for the end of its input): dropping the writer gives it that.
        if pending.is_empty() && (session_closed || !transport_open) {
            break;
        }
        if !transport_open && !jobs_open && pending.is_empty() {
            break;
        }
        tokio::select! {
            biased;
            job = jobs.recv(), if jobs_open => match job {
                Some(job) => job(&mut client as &mut dyn Client),
                None => {
                    // Every handle is gone: close the session politely.
                    jobs_open = false;
                    client.close();
                }
            },
            permit = events.reserve(), if !pending.is_empty() => match permit {
                Ok(permit) => {
                    if let Some(e) = pending.pop_front() {
                        let last = matches!(e, ClientEvent::SessionClosed);
                        permit.send(e);
                        if last {
                            break;
                        }
                    }
                }
                Err(_) => {
                    // Nobody listens: drop the backlog and close.
                    pending.clear();
                    if jobs_open {
                        client.close();
                    }
                    jobs_open = false;
                }
            },
            read = read_line(&mut reader, &mut line, MAX_LINE), if transport_open && pending.len() < MAX_PENDING_EVENTS => match read {
                Ok(true) => {
                    let text = String::from_utf8_lossy(&line);
                    if let Err(e) = client.receive_line(&text) {
                        tracing::warn!(error = %e, "the server sent something this client cannot use");
                    }
                    line.clear();
                    // Give back what one unusually long line took.
                    line.shrink_to(64 << 10);
                }
                Ok(false) => {
                    client.transport_closed("the server closed the connection");
                    transport_open = false;
                }
                Err(e) => {
                    client.transport_closed(&format!("reading from the server failed: {e}"));
                    transport_open = false;
                }
            },
        }
    }
    let _ = writer.shutdown().await;
    tracing::debug!("session task ended");
}

async fn write_line<W: AsyncWrite + Unpin>(w: &mut W, line: &str) -> std::io::Result<()> {
    w.write_all(line.as_bytes()).await?;
    w.write_all(b"\n").await
}

/// Reads up to and including `\n` into `buf` (kept across cancellations: this is safe in `select!`).
/// `Ok(true)`: a whole line is in `buf` (without its newline); `Ok(false)`: the stream ended.
async fn read_line<R: AsyncBufRead + Unpin>(r: &mut R, buf: &mut Vec<u8>, max: usize) -> std::io::Result<bool> {
    loop {
        let available = r.fill_buf().await?;
        if available.is_empty() {
            if buf.is_empty() {
                return Ok(false);
            }
            // A last line without its newline.
            return Ok(true);
        }
        match available.iter().position(|&b| b == b'\n') {
            Some(i) => {
                buf.extend_from_slice(&available[..i]);
                r.consume(i + 1);
                if buf.last() == Some(&b'\r') {
                    buf.pop();
                }
                return Ok(true);
            }
            None => {
                let n = available.len();
                buf.extend_from_slice(available);
                r.consume(n);
            }
        }
        if buf.len() > max {
            return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, format!("a line from the server exceeds {max} bytes")));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn lines_survive_cancellation_and_are_bounded() {
        let (mut a, b) = tokio::io::duplex(4096);
        let mut r = BufReader::new(b);
        let mut buf = Vec::new();
        a.write_all(b"hel").await.expect("write");
        // Cancelled half-way: the part read so far stays in the buffer.
        let t = tokio::time::timeout(std::time::Duration::from_millis(20), read_line(&mut r, &mut buf, 100)).await;
        assert!(t.is_err());
        a.write_all(b"lo\r\nrest").await.expect("write");
        assert!(read_line(&mut r, &mut buf, 100).await.expect("line"));
        assert_eq!(buf, b"hello");
        buf.clear();
        a.write_all(&[b'x'; 200]).await.expect("write");
        let err = read_line(&mut r, &mut buf, 100).await.expect_err("too long");
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidData);
        buf.clear();
        drop(a);
        let mut r2 = BufReader::new(&b"last"[..]);
        assert!(read_line(&mut r2, &mut buf, 100).await.expect("line"));
        assert_eq!(buf, b"last");
        buf.clear();
        assert!(!read_line(&mut r2, &mut buf, 100).await.expect("eof"));
    }
}
