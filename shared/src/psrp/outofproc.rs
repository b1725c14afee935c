//! The out-of-process transport (SSH subsystem, `pwsh -s`; protocol.md §6), sans-IO: one XML element
//! per line, and a client driver around a [`RunspacePool`] that does the packet dance — `Command`
//! before a pipeline's first data, one `Data` in flight per id until its `DataAck`, `Signal` to stop,
//! `Close` to release a pipeline or the whole session.

use std::collections::{HashMap, HashSet, VecDeque};

use base64::Engine as _;
use uuid::Uuid;

use crate::clixml::xml::{Lexer, Token};

use super::messages::PipelineSpec;
use super::pool::{Event, Outgoing, ProtocolError, RunspacePool, Stream};

/// One line of the out-of-process protocol. `guid` is a pipeline id, or nil for the session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Packet {
    /// `<Data Stream='Default|PromptResponse' PSGuid='…'>base64 fragments</Data>`
    Data {
        /// The stream.
        stream: Stream,
        /// Pipeline or nil.
        guid: Uuid,
        /// The fragments.
        data: Vec<u8>,
    },
    /// `<DataAck PSGuid='…' />` (server → client)
    DataAck(Uuid),
    /// `<Command PSGuid='…' />` (client → server): a new pipeline.
    Command(Uuid),
    /// `<CommandAck PSGuid='…' />`
    CommandAck(Uuid),
    /// `<Signal PSGuid='…' />`: stop the pipeline.
    Signal(Uuid),
    /// `<SignalAck PSGuid='…' />`
    SignalAck(Uuid),
    /// `<Close PSGuid='…' />`: release a pipeline, or the session.
    Close(Uuid),
    /// `<CloseAck PSGuid='…' />`
    CloseAck(Uuid),
}

/// A line that is not a packet.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PacketError {
    /// `__NamedPipeError__: …`: the server reports an error in text.
    #[error("the server reported: {0}")]
    Server(String),
    /// Anything else.
    #[error("not an out-of-process packet: {reason}: {line:?}")]
    Malformed {
        /// What is wrong.
        reason: &'static str,
        /// The line (cut to 200 characters).
        line: String,
    },
}

fn malformed(reason: &'static str, line: &str) -> PacketError {
    let mut line = line.to_owned();
    if line.len() > 200 {
        let cut = (0..=200).rev().find(|i| line.is_char_boundary(*i)).unwrap_or(0);
        line.truncate(cut);
    }
    PacketError::Malformed { reason, line }
}

impl Packet {
    /// Reads one line (without its newline).
    pub fn parse(line: &str) -> Result<Packet, PacketError> {
        let line = line.trim_end_matches(['\r', '\n']);
        if let Some(text) = line.strip_prefix("__NamedPipeError__:") {
            return Err(PacketError::Server(text.trim().to_owned()));
        }
        let mut lexer = Lexer::new(line, 0);
        let start = match lexer.next() {
            Ok(Token::Start(s)) => s,
            _ => return Err(malformed("no element", line)),
        };
        let guid = start.ps_guid.ok_or_else(|| malformed("no PSGuid", line))?;
        let guid = Uuid::try_parse(guid).map_err(|_| malformed("a PSGuid that is not a GUID", line))?;
        let simple = |p: Packet| if start.empty { Ok(p) } else { Err(malformed("content in an empty packet", line)) };
        match start.name {
            "Data" => {
                let stream = match start.stream {
                    Some(s) if s.eq_ignore_ascii_case("Default") => Stream::Default,
                    Some(s) if s.eq_ignore_ascii_case("PromptResponse") => Stream::PromptResponse,
                    _ => return Err(malformed("a Data packet without a known Stream", line)),
                };
                let text = if start.empty {
                    ""
                } else {
                    let b64_start = lexer.pos();
                    match lexer.next() {
                        Ok(Token::Text(t)) => match lexer.next() {
                            Ok(Token::End("Data")) => t,
                            _ => return Err(malformed("an unterminated Data packet", line)),
                        },
                        Ok(Token::End("Data")) => &line[b64_start..b64_start],
                        _ => return Err(malformed("an unterminated Data packet", line)),
                    }
                };
                let data = base64::engine::general_purpose::STANDARD.decode(text.trim()).map_err(|_| malformed("Data that is not base64", line))?;
                Ok(Packet::Data { stream, guid, data })
            }
            "DataAck" => simple(Packet::DataAck(guid)),
            "Command" => simple(Packet::Command(guid)),
            "CommandAck" => simple(Packet::CommandAck(guid)),
            "Signal" => simple(Packet::Signal(guid)),
            "SignalAck" => simple(Packet::SignalAck(guid)),
            "Close" => simple(Packet::Close(guid)),
            "CloseAck" => simple(Packet::CloseAck(guid)),
            _ => Err(malformed("an unknown packet", line)),
        }
    }

    /// The line, without its newline, as PowerShell writes it.
    pub fn to_line(&self) -> String {
        let (name, guid) = match self {
            Packet::Data { stream, guid, data } => {
                let stream = match stream {
                    Stream::Default => "Default",
                    Stream::PromptResponse => "PromptResponse",
                };
                let mut line = format!("<Data Stream='{stream}' PSGuid='{}'>", guid.hyphenated());
                base64::engine::general_purpose::STANDARD.encode_string(data, &mut line);
                line.push_str("</Data>");
                return line;
            }
            Packet::DataAck(g) => ("DataAck", g),
            Packet::Command(g) => ("Command", g),
            Packet::CommandAck(g) => ("CommandAck", g),
            Packet::Signal(g) => ("Signal", g),
            Packet::SignalAck(g) => ("SignalAck", g),
            Packet::Close(g) => ("Close", g),
            Packet::CloseAck(g) => ("CloseAck", g),
        };
        format!("<{name} PSGuid='{}' />", guid.hyphenated())
    }
}

/// What the driver reports besides the pool's own events.
#[derive(Clone, Debug, PartialEq)]
pub enum ClientEvent {
    /// An event of the runspace pool.
    Psrp(Event),
    /// The server acknowledged a stop.
    Stopping(Uuid),
    /// The server released a pipeline (`CloseAck`).
    PipelineClosed(Uuid),
    /// The server closed the session (`CloseAck` for the nil id): the transport can end.
    SessionClosed,
    /// WS-Management: the shell is disconnected (Disconnect-PSSession); it runs on at the target.
    Disconnected,
    /// WS-Management: the shell is connected again (Reconnect, or Connect with its commands re-attached).
    Reconnected,
    /// WS-Management: a Disconnect or Reconnect failed; the session stays as it was. The target's message.
    OperationFailed(String),
}

/// Drives a [`RunspacePool`] over the out-of-process protocol.
#[derive(Debug)]
pub struct OutOfProcClient {
    pool: RunspacePool,
    /// Packets waiting for their id's turn (a Data in flight, or a Command not yet acknowledged).
    held: HashMap<Uuid, VecDeque<Outgoing>>,
    /// Ids with a Data in flight.
    in_flight: HashSet<Uuid>,
    /// Pipelines announced with `Command` and not yet acknowledged.
    awaiting_command_ack: HashSet<Uuid>,
    /// Pipelines announced and acknowledged.
    commanded: HashSet<Uuid>,
    lines: VecDeque<String>,
    /// Pipelines whose first data has been written.
    data_sent: HashSet<Uuid>,
    /// Signal/Close packets waiting for their pipeline's first data to be written.
    deferred: Vec<(Uuid, Packet)>,
    events: VecDeque<ClientEvent>,
    closing: bool,
}

impl OutOfProcClient {
    /// A driver for a pool that has not been opened.
    pub fn new(pool: RunspacePool) -> OutOfProcClient {
        OutOfProcClient {
            pool,
            held: HashMap::new(),
            in_flight: HashSet::new(),
            awaiting_command_ack: HashSet::new(),
            commanded: HashSet::new(),
            lines: VecDeque::new(),
            data_sent: HashSet::new(),
            deferred: Vec::new(),
            events: VecDeque::new(),
            closing: false,
        }
    }

    /// The pool.
    pub fn pool(&self) -> &RunspacePool {
        &self.pool
    }

    /// The pool, to queue messages (answer host calls, send input…); call [`OutOfProcClient::poll_line`] after.
    pub fn pool_mut(&mut self) -> &mut RunspacePool {
        &mut self.pool
    }

    /// Opens the pool.
    pub fn open(&mut self) -> Result<(), ProtocolError> {
        self.pool.open()
    }

    /// Starts a pipeline.
    pub fn create_pipeline(&mut self, id: Uuid, spec: &PipelineSpec) -> Result<(), ProtocolError> {
        self.pool.create_pipeline(id, spec)
    }

    /// Asks the server to stop a pipeline (Ctrl+C). Sent after the pipeline's creation has gone out: a
    /// Signal for a pipeline the server does not know yet would be lost.
    pub fn stop(&mut self, id: Uuid) {
        self.after_creation(id, Packet::Signal(id));
    }

    /// Releases a finished pipeline on the server (after its creation has gone out).
    pub fn close_pipeline(&mut self, id: Uuid) {
        self.after_creation(id, Packet::Close(id));
    }

    /// Sends `packet` now if the pipeline's first data has been written (or the pipeline is not this
    /// client's), else as soon as it is.
    fn after_creation(&mut self, id: Uuid, packet: Packet) {
        let pending = !self.data_sent.contains(&id) && self.pool.pipeline_state(id).is_some();
        if pending {
            self.deferred.push((id, packet));
        } else {
            if matches!(packet, Packet::Close(_)) {
                self.commanded.remove(&id);
                self.data_sent.remove(&id);
            }
            self.lines.push_back(packet.to_line());
        }
    }

    /// Closes the session; [`ClientEvent::SessionClosed`] follows when the server has done so.
    pub fn close(&mut self) {
        if !self.closing {
            self.closing = true;
            self.pool.closing();
            self.lines.push_back(Packet::Close(Uuid::nil()).to_line());
        }
    }

    /// Feeds one line from the server.
    pub fn receive_line(&mut self, line: &str) -> Result<(), OutOfProcError> {
        if line.trim().is_empty() {
            return Ok(());
        }
        let packet = match Packet::parse(line) {
            Ok(p) => p,
            Err(e) => {
                self.pool.broken(&e.to_string());
                self.drain_pool_events();
                return Err(e.into());
            }
        };
        match packet {
            Packet::Data { data, .. } => {
                let result = self.pool.receive(&data);
                self.drain_pool_events();
                result?;
            }
            Packet::DataAck(g) => {
                self.in_flight.remove(&g);
            }
            Packet::CommandAck(g) => {
                self.awaiting_command_ack.remove(&g);
                self.commanded.insert(g);
            }
            Packet::SignalAck(g) => self.events.push_back(ClientEvent::Stopping(g)),
            Packet::CloseAck(g) if g.is_nil() => {
                self.pool.closed();
                self.drain_pool_events();
                self.events.push_back(ClientEvent::SessionClosed);
            }
            Packet::CloseAck(g) => self.events.push_back(ClientEvent::PipelineClosed(g)),
            Packet::Command(_) | Packet::Signal(_) | Packet::Close(_) => {
                let e = malformed("a client-to-server packet from the server", line);
                self.pool.broken(&e.to_string());
                self.drain_pool_events();
                return Err(e.into());
            }
        }
        Ok(())
    }

    /// The transport ended (process exit, channel closed, read error).
    pub fn transport_closed(&mut self, reason: &str) {
        if self.closing {
            self.pool.closed();
        } else {
            self.pool.broken(reason);
        }
        self.drain_pool_events();
    }

    fn drain_pool_events(&mut self) {
        while let Some(e) = self.pool.poll_event() {
            self.events.push_back(ClientEvent::Psrp(e));
        }
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<ClientEvent> {
        self.drain_pool_events();
        self.events.pop_front()
    }

    /// The next line to write to the server (without its newline).
    pub fn poll_line(&mut self) -> Option<String> {
        if let Some(line) = self.lines.pop_front() {
            return Some(line);
        }
        while let Some(out) = self.pool.poll_send() {
            let guid = out.pipeline.unwrap_or_else(Uuid::nil);
            self.held.entry(guid).or_default().push_back(out);
        }
        // Host answers first: a pipeline waiting on its host makes no progress otherwise.
        let mut ready: Vec<Uuid> = self.held.iter().filter(|(_, q)| !q.is_empty()).map(|(g, _)| *g).collect();
        ready.sort_by_key(|g| self.held[g].front().map(|o| o.stream != Stream::PromptResponse));
        for guid in ready {
            if self.in_flight.contains(&guid) || self.awaiting_command_ack.contains(&guid) {
                continue;
            }
            if !guid.is_nil() && !self.commanded.contains(&guid) {
                self.awaiting_command_ack.insert(guid);
                return Some(Packet::Command(guid).to_line());
            }
            let Some(out) = self.held.get_mut(&guid).and_then(VecDeque::pop_front) else { continue };
            self.in_flight.insert(guid);
            let line = Packet::Data { stream: out.stream, guid, data: out.data }.to_line();
            if !guid.is_nil() && self.data_sent.insert(guid) {
                // What waited for this pipeline to exist on the server follows its first data.
                let (now, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.deferred).into_iter().partition(|(id, _)| *id == guid);
                self.deferred = later;
                for (id, packet) in now {
                    if matches!(packet, Packet::Close(_)) {
                        self.commanded.remove(&id);
                        self.data_sent.remove(&id);
                    }
                    self.lines.push_back(packet.to_line());
                }
            }
            return Some(line);
        }
        None
    }
}

/// Why the out-of-process session cannot go on.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum OutOfProcError {
    /// A bad line.
    #[error(transparent)]
    Packet(#[from] PacketError),
    /// A bad PSRP message.
    #[error(transparent)]
    Protocol(#[from] ProtocolError),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::psrp::pool::PoolConfig;

    fn opened_client() -> OutOfProcClient {
        let id = Uuid::from_u128(1);
        let mut c = OutOfProcClient::new(RunspacePool::new(PoolConfig::new(id)));
        c.open().expect("opens");
        while c.poll_line().is_some() {}
        c.receive_line(&Packet::DataAck(Uuid::nil()).to_line()).expect("ack");
        // Pretend the server opened the pool: a RUNSPACEPOOL_STATE(Opened) message.
        let mut raw = Vec::new();
        let body = br#"<Obj RefId="0"><MS><I32 N="RunspaceState">2</I32></MS></Obj>"#;
        crate::psrp::message::Message {
            destination: crate::psrp::message::Destination::Client,
            message_type: crate::psrp::message::MessageType::RunspacePoolState,
            rpid: id,
            pid: Uuid::nil(),
            data: body,
        }
        .write(&mut raw);
        let mut packet = Vec::new();
        crate::psrp::fragment::write(&mut packet, 1, &raw, 32768);
        c.receive_line(&Packet::Data { stream: Stream::Default, guid: Uuid::nil(), data: packet }.to_line()).expect("opened");
        c
    }

    fn tags(lines: &[String]) -> Vec<String> {
        lines.iter().map(|l| l[1..].split([' ', '>']).next().unwrap_or_default().to_owned()).collect()
    }

    #[test]
    fn a_stop_right_after_creating_waits_for_the_pipeline_to_exist() {
        let mut c = opened_client();
        let p = Uuid::from_u128(2);
        c.create_pipeline(p, &PipelineSpec::script("Test-Long")).expect("created");
        c.stop(p);
        let mut out: Vec<String> = std::iter::from_fn(|| c.poll_line()).collect();
        assert_eq!(tags(&out), ["Command"], "nothing but the Command before its acknowledgement");
        c.receive_line(&Packet::CommandAck(p).to_line()).expect("ack");
        out.extend(std::iter::from_fn(|| c.poll_line()));
        assert_eq!(tags(&out), ["Command", "Data", "Signal"], "the Signal follows the pipeline's creation");
        c.close_pipeline(p);
        assert_eq!(c.poll_line().map(|l| tags(&[l])), Some(vec!["Close".to_owned()]));
    }

    #[test]
    fn packets_round_trip_and_bad_lines_are_refused() {
        let g = Uuid::from_u128(0xabc);
        for p in [
            Packet::Data { stream: Stream::PromptResponse, guid: g, data: vec![1, 2, 3] },
            Packet::DataAck(g),
            Packet::Command(g),
            Packet::CommandAck(g),
            Packet::Signal(g),
            Packet::SignalAck(g),
            Packet::Close(Uuid::nil()),
            Packet::CloseAck(g),
        ] {
            assert_eq!(Packet::parse(&p.to_line()).as_ref(), Ok(&p));
        }
        assert_eq!(Packet::DataAck(g).to_line(), "<DataAck PSGuid='00000000-0000-0000-0000-000000000abc' />");
        assert_eq!(Packet::parse("__NamedPipeError__: access denied"), Err(PacketError::Server("access denied".into())));
        for bad in ["<Data Stream='Other' PSGuid='00000000-0000-0000-0000-000000000abc'>AA==</Data>", "<DataAck />", "<Nope PSGuid='00000000-0000-0000-0000-000000000abc' />", "garbage", "<Data Stream='Default' PSGuid='00000000-0000-0000-0000-000000000abc'>!!</Data>"] {
            assert!(matches!(Packet::parse(bad), Err(PacketError::Malformed { .. })), "{bad}");
        }
    }
}
