"""PSRP over the out-of-process transport from Python, with psrpcore's client role (reusable by any test).

The transport is any child process that speaks the out-of-process line protocol on stdin/stdout (protocol.md §6):
`python psrp_host.py`, `pwsh -s`, or `ssh -s … powershell`. `Transport` frames lines; `Session` drives psrpcore's
sans-IO `ClientRunspacePool` / `ClientPowerShell` over it and collects what each pipeline receives.

    with Session.spawn([sys.executable, "tests/peers/psrp_host.py"]) as s:
        s.open()
        result = s.run("Get-Date")          # a script, or run_command("Get-Process", Name="svchost")
        assert result.state == PSInvocationState.Completed

Nothing here sleeps to wait: every wait is on the next line from the peer, with a deadline.
"""

from __future__ import annotations

import base64
import dataclasses
import queue
import re
import subprocess
import threading
import time
import typing
import uuid

import psrpcore
from psrpcore import (
    ClientGetCommandMetadata,
    ClientHostResponder,
    ClientPowerShell,
    ClientRunspacePool,
    PSRPPayload,
    StreamType,
)
from psrpcore.types import PSInvocationState, RunspacePoolState

NULL_GUID = uuid.UUID(int=0)
FRAGMENT_SIZE = 32768

LINE = re.compile(
    r"^<(?P<tag>Data|DataAck|Command|CommandAck|Signal|SignalAck|Close|CloseAck)"
    r"(?: Stream='(?P<stream>[^']*)')? PSGuid='(?P<guid>[0-9a-f-]{36})'"
    r"(?: />|>(?P<body>[A-Za-z0-9+/=]*)</(?P=tag)>)$"
)


class ProtocolError(AssertionError):
    pass


@dataclasses.dataclass
class Packet:
    tag: str
    guid: uuid.UUID
    stream: typing.Optional[str] = None
    data: bytes = b""
    line: str = ""


def data_line(data: bytes, guid: uuid.UUID, stream: str = "Default") -> str:
    return f"<Data Stream='{stream}' PSGuid='{guid}'>{base64.b64encode(data).decode()}</Data>"


def guid_line(tag: str, guid: uuid.UUID) -> str:
    return f"<{tag} PSGuid='{guid}' />"


class Transport:
    """Lines to and from a child process. Every line received must match the strict format pwsh writes."""

    def __init__(self, argv: typing.Sequence[str], env: typing.Optional[dict] = None, keep_lines: bool = True) -> None:
        self.argv = list(argv)
        self.proc = subprocess.Popen(
            self.argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
        )
        self.lines: "queue.Queue[typing.Optional[bytes]]" = queue.Queue()
        self.received: typing.List[str] = []
        self.sent: typing.List[str] = []
        self.keep_lines = keep_lines
        self.stderr = bytearray()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self._err_reader = threading.Thread(target=self._read_err, daemon=True)
        self._err_reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in iter(self.proc.stdout.readline, b""):
            self.lines.put(raw)
        self.lines.put(None)

    def _read_err(self) -> None:
        assert self.proc.stderr is not None
        for raw in iter(self.proc.stderr.readline, b""):
            self.stderr += raw

    def send(self, line: str) -> None:
        if self.keep_lines:
            self.sent.append(line)
        assert self.proc.stdin is not None
        self.proc.stdin.write(line.encode("ascii") + b"\n")
        self.proc.stdin.flush()

    def receive(self, timeout: float) -> Packet:
        try:
            raw = self.lines.get(timeout=timeout)
        except queue.Empty:
            raise TimeoutError(f"no line from the peer within {timeout}s; stderr: {bytes(self.stderr)[-2000:]!r}") from None
        if raw is None:
            raise EOFError(f"the peer closed its stdout; stderr: {bytes(self.stderr)[-2000:]!r}")
        if not raw.endswith(b"\n"):
            raise ProtocolError(f"line without its \\n: {raw[:200]!r}")
        line = raw[:-1].decode("ascii")
        if self.keep_lines:
            self.received.append(line)
        m = LINE.match(line)
        if not m:
            raise ProtocolError(f"not an out-of-process line in pwsh's format: {line[:200]!r}")
        body = m.group("body")
        return Packet(m.group("tag"), uuid.UUID(m.group("guid")), m.group("stream"), base64.b64decode(body or ""), line)

    def close(self, timeout: float = 10) -> int:
        if self.proc.stdin and not self.proc.stdin.closed:
            try:
                self.proc.stdin.close()
            except OSError:
                pass
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(timeout)


@dataclasses.dataclass
class Result:
    pipeline_id: uuid.UUID
    output: typing.List[typing.Any] = dataclasses.field(default_factory=list)
    error: typing.List[typing.Any] = dataclasses.field(default_factory=list)
    warning: typing.List[typing.Any] = dataclasses.field(default_factory=list)
    verbose: typing.List[typing.Any] = dataclasses.field(default_factory=list)
    debug: typing.List[typing.Any] = dataclasses.field(default_factory=list)
    information: typing.List[typing.Any] = dataclasses.field(default_factory=list)
    progress: typing.List[typing.Any] = dataclasses.field(default_factory=list)
    host_calls: typing.List[typing.Any] = dataclasses.field(default_factory=list)
    events: typing.List[typing.Any] = dataclasses.field(default_factory=list)
    state: typing.Optional[PSInvocationState] = None
    reason: typing.Any = None  # the ErrorRecord of PIPELINE_STATE, if any


HostHandler = typing.Callable[["Session", ClientHostResponder, typing.Any], None]

TERMINAL = (PSInvocationState.Completed, PSInvocationState.Failed, PSInvocationState.Stopped)


class Session:
    """A psrpcore client RunspacePool over an out-of-process Transport."""

    def __init__(self, transport: Transport, timeout: float = 20.0) -> None:
        self.t = transport
        self.timeout = timeout
        self.pool = ClientRunspacePool()
        self.results: typing.Dict[uuid.UUID, Result] = {}
        self.pool_events: typing.List[typing.Any] = []
        self.acks: typing.Dict[typing.Tuple[str, uuid.UUID], int] = {}
        self.order: typing.List[typing.Tuple[str, uuid.UUID, typing.Any]] = []  # (tag, guid, event or None)
        self.host_handler: typing.Optional[HostHandler] = None
        self.unacked: typing.Dict[uuid.UUID, int] = {}  # Data sent from inside pump() whose DataAck nobody awaits

    @classmethod
    def spawn(cls, argv: typing.Sequence[str], env: typing.Optional[dict] = None, timeout: float = 20.0) -> "Session":
        return cls(Transport(argv, env), timeout)

    def __enter__(self) -> "Session":
        return self

    def __exit__(self, *exc: typing.Any) -> None:
        self.t.close()

    # -- low level --
    def pump(self, timeout: typing.Optional[float] = None) -> Packet:
        """Reads one line and feeds it to psrpcore."""
        p = self.t.receive(self.timeout if timeout is None else timeout)
        if p.tag == "Data":
            self.pool.receive_data(PSRPPayload(p.data, StreamType.default, None if p.guid == NULL_GUID else p.guid))
            while True:
                event = self.pool.next_event()
                if event is None:
                    break
                self._dispatch(event)
                self.order.append(("Data", p.guid, event))
        elif p.tag == "DataAck" and self.unacked.get(p.guid, 0) > 0:
            self.unacked[p.guid] -= 1
            self.order.append((p.tag, p.guid, None))
        else:
            self.acks[(p.tag, p.guid)] = self.acks.get((p.tag, p.guid), 0) + 1
            self.order.append((p.tag, p.guid, None))
        return p

    def wait(self, predicate: typing.Callable[[], bool], what: str, timeout: typing.Optional[float] = None) -> None:
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while not predicate():
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"waiting for {what}")
            self.pump(left)

    def wait_ack(self, tag: str, guid: uuid.UUID) -> None:
        key = (tag, guid)
        self.wait(lambda: self.acks.get(key, 0) > 0, f"{tag} {guid}")
        self.acks[key] -= 1

    def send_pending(self, guid: uuid.UUID) -> None:
        """Sends what psrpcore queued, one Data line at a time, each after the previous one's DataAck."""
        while True:
            payload = self.pool.data_to_send(FRAGMENT_SIZE)
            if payload is None:
                return
            target = payload.pipeline_id or NULL_GUID
            stream = "PromptResponse" if payload.stream_type == StreamType.prompt_response else "Default"
            self.t.send(data_line(payload.data, target, stream))
            self.wait_ack("DataAck", target)

    def _dispatch(self, event: typing.Any) -> None:
        pid = getattr(event, "pipeline_id", None)
        result = self.results.get(pid) if pid else None
        if result is None:
            self.pool_events.append(event)
            if isinstance(event, psrpcore.PublicKeyRequestEvent):
                self.respond()  # psrpcore queued PUBLIC_KEY: send it now, from inside the wait
            return
        result.events.append(event)
        if isinstance(event, psrpcore.PipelineOutputEvent):
            result.output.append(event.data)
        elif isinstance(event, psrpcore.ErrorRecordEvent):
            result.error.append(event.record)
        elif isinstance(event, psrpcore.WarningRecordEvent):
            result.warning.append(event.record)
        elif isinstance(event, psrpcore.VerboseRecordEvent):
            result.verbose.append(event.record)
        elif isinstance(event, psrpcore.DebugRecordEvent):
            result.debug.append(event.record)
        elif isinstance(event, psrpcore.InformationRecordEvent):
            result.information.append(event.record)
        elif isinstance(event, psrpcore.ProgressRecordEvent):
            result.progress.append(event.record)
        elif isinstance(event, psrpcore.PipelineHostCallEvent):
            result.host_calls.append(event)
            if self.host_handler is None:
                raise ProtocolError(f"unexpected host call {event.method_identifier!r}")
            pipeline = self.pool.pipeline_table[pid]
            self.host_handler(self, ClientHostResponder(pipeline), event)
        elif isinstance(event, psrpcore.PublicKeyRequestEvent):  # pragma: no cover - pool events land above
            pass
        elif isinstance(event, psrpcore.PipelineStateEvent):
            result.state = event.state
            result.reason = event.reason

    # -- the pool --
    def open(self) -> None:
        self.pool.open()
        self.send_pending(NULL_GUID)
        self.wait(lambda: self.pool.state == RunspacePoolState.Opened, "RUNSPACEPOOL_STATE(Opened)")

    def exchange_key(self) -> None:
        self.pool.exchange_key()
        self.send_pending(NULL_GUID)
        self.wait(
            lambda: any(isinstance(e, psrpcore.EncryptedSessionKeyEvent) for e in self.pool_events), "ENCRYPTED_SESSION_KEY"
        )

    def pool_request(self, ci: int, kind: type) -> typing.Any:
        self.send_pending(NULL_GUID)
        found: typing.List[typing.Any] = []

        def done() -> bool:
            found[:] = [e for e in self.pool_events if isinstance(e, kind) and getattr(e, "ci", None) == ci]
            return bool(found)

        self.wait(done, f"{kind.__name__} ci={ci}")
        return found[0]

    def close(self) -> None:
        self.t.send(guid_line("Close", NULL_GUID))
        self.wait_ack("CloseAck", NULL_GUID)

    # -- pipelines --
    def start(self, pipeline: typing.Any, inputs: typing.Optional[typing.Sequence[typing.Any]] = None) -> Result:
        pid = pipeline.pipeline_id
        self.results[pid] = Result(pid)
        self.t.send(guid_line("Command", pid))
        self.wait_ack("CommandAck", pid)
        pipeline.start()
        self.send_pending(pid)
        if inputs is not None:
            for value in inputs:
                pipeline.send(value)
                self.send_pending(pid)
            pipeline.send_eof()
            self.send_pending(pid)
        return self.results[pid]

    def finish(self, result: Result, close: bool = True, timeout: typing.Optional[float] = None) -> Result:
        self.wait(lambda: result.state in TERMINAL, f"terminal PIPELINE_STATE of {result.pipeline_id}", timeout)
        if close:
            self.t.send(guid_line("Close", result.pipeline_id))
            self.wait_ack("CloseAck", result.pipeline_id)
            self.pool.pipeline_table.pop(result.pipeline_id, None)
        return result

    def powershell(self, no_input: bool = True) -> ClientPowerShell:
        return ClientPowerShell(self.pool, no_input=no_input)

    def run(self, script: str, inputs: typing.Optional[typing.Sequence[typing.Any]] = None, host: typing.Optional[HostHandler] = None) -> Result:
        ps = self.powershell(no_input=inputs is None)
        ps.add_script(script)
        return self.invoke(ps, inputs, host)

    def run_command(self, name: str, *args: typing.Any, host: typing.Optional[HostHandler] = None, **params: typing.Any) -> Result:
        ps = self.powershell()
        ps.add_command(name)
        for a in args:
            ps.add_argument(a)
        for k, v in params.items():
            ps.add_parameter(k, v)
        return self.invoke(ps, None, host)

    def invoke(self, ps: typing.Any, inputs: typing.Optional[typing.Sequence[typing.Any]] = None, host: typing.Optional[HostHandler] = None) -> Result:
        self.host_handler = host
        try:
            return self.finish(self.start(ps, inputs))
        finally:
            self.host_handler = None

    def get_command_metadata(self, names: typing.Union[str, typing.List[str]], namespace: typing.Optional[typing.List[str]] = None) -> Result:
        gcm = ClientGetCommandMetadata(self.pool, names, namespace=namespace)
        return self.finish(self.start(gcm))

    def stop(self, result: Result) -> None:
        self.t.send(guid_line("Signal", result.pipeline_id))
        self.wait_ack("SignalAck", result.pipeline_id)

    def respond(self) -> None:
        """Sends queued host responses (Stream='PromptResponse') — call from a host handler after responding."""
        while True:
            payload = self.pool.data_to_send(FRAGMENT_SIZE)
            if payload is None:
                return
            target = payload.pipeline_id or NULL_GUID
            stream = "PromptResponse" if payload.stream_type == StreamType.prompt_response else "Default"
            self.t.send(data_line(payload.data, target, stream))
            self.unacked[target] = self.unacked.get(target, 0) + 1  # its DataAck is swallowed by pump()
