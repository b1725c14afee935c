#!/usr/bin/env python3
"""psgate's PSRP test host: a PowerShell Remoting server over the out-of-process transport.

It speaks MS-PSRP with psrpcore's server role (ServerRunspacePool, ServerPipeline, ServerHostRequestor) over the
out-of-process line protocol that `pwsh -s` and the SSH `powershell` subsystem use (protocol.md §6): one XML element
per `\n`-terminated line on stdin/stdout. It runs as the `powershell` subsystem of OpenSSH (see sshd.py) or as a plain
child process. stdout carries protocol lines only; logs go to the file named by PSRP_HOST_LOG.

Where psrpcore's server differs from the recorded Windows servers, this host follows the recordings: every message
body starts with a UTF-8 BOM, no PIPELINE_STATE(Running) is sent, SESSION_CAPABILITY lists protocolversion first,
objects are laid out as PowerShell's serializer does (clixml_out.py), RUNSPACEPOOL_STATE(Closed) precedes CloseAck,
one PSRP fragment per <Data> line as PowerShell's out-of-process transport writes them, a call id spelled "CI" is read
as PowerShell reads property names (case-insensitively).

The PowerShell side (HostPool, object shapes, the emulated commands, the session logic) lives in host_core.py and is
shared with the WS-Management peer winrm_host.py; this file is the out-of-process transport.

Emulated commands: see COMMANDS in host_core.py (`Get-Date`, `$PSVersionTable`, `Get-Process`, `Get-Service`, `Write-*`,
`Read-Host`, `Get-Credential`, `Test-Choice`, `Test-Prompt`, `Measure-Input`, `Start-Sleep`, `Test-Long`,
`Get-Objects`, `throw`, `Test-Terminating`, `Test-Progress`). Each runs as a command with parameters or as a script
that is just such a command line (`Get-Process -Name svchost`, `Write-Output 'a b' | Measure-Input`).

Environment:
  PSRP_HOST_LOG            log file (default: no log)
  PSRP_HOST_FAST=1         Get-Objects sends one serialized object again and again (benchmarks)
  PSRP_HOST_ACK_LATE=1     write a <DataAck> after the answers its data produced instead of before them (pwsh can
                           do either: the capability is answered synchronously, the rest asynchronously)
  PSRP_HOST_LANGUAGE       FullLanguage (default) or NoLanguage: a JEA-like RestrictedRemoteServer session, where a
                           pipeline with a script (IsScript) fails with PowerShell's ScriptsNotAllowed ParseException
                           and only the visible commands run (others: CommandNotFoundException, `prompt` and
                           `TabExpansion2` included); Command objects with parameters work as in FullLanguage
  PSRP_HOST_VISIBLE_COMMANDS  comma-separated visible commands (NoLanguage default: Get-Command, Get-FormatData,
                           Clear-Host, Select-Object, Get-Help, Measure-Object, Out-Default, Exit-PSSession — the
                           RestrictedRemoteServer list — plus Get-Service, Get-Process); also restricts FullLanguage.
                           A module name (ActiveDirectory, BenchModule, PSGate.Aliases) stands for its commands,
                           RestrictedRemoteServer for that list; `+NAME` adds to the default list instead of
                           replacing it (`+ActiveDirectory`: a JEA role exposing the AD module)
  PSRP_HOST_COMMANDS_TO_SKIP  comma-separated (may be empty): the implicit remoting skip list the endpoint declares
                           in its application private data (`ImplicitRemoting.CommandsToSkip`); unset: none declared
sshd.py can serve this NoLanguage host as a second subsystem, `powershell-jea` (Sshd(jea_subsystem=True)).
"""

from __future__ import annotations

import base64
import logging
import os
import re
import sys
import traceback
import typing
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from psrpcore import StreamType  # noqa: E402
from psrpcore.types import RunspacePoolState  # noqa: E402

from host_core import (  # noqa: E402
    FRAGMENT_SIZE,
    NULL_GUID,
    PS_VERSION,
    HostPool,
    PsrpSession,
    Run,
    fragments,
    output_encoder,
    parse_language,
)

log = logging.getLogger("psrp_host")


def data_line(frag_b64: str, guid: uuid.UUID) -> str:
    return f"<Data Stream='Default' PSGuid='{guid}'>{frag_b64}</Data>\n"


def guid_line(tag: str, guid: uuid.UUID) -> str:
    return f"<{tag} PSGuid='{guid}' />\n"


# ---------------------------------------------------------------------------------------------------------------------
# The out-of-process server


_LINE = re.compile(
    r"^\s*<(?P<tag>Data|DataAck|Command|CommandAck|Signal|SignalAck|Close|CloseAck)\b(?P<attrs>[^>]*?)(?:/>|>(?P<body>[^<]*)</(?P=tag)>)\s*$"
)
_ATTR = re.compile(r"""(\w+)\s*=\s*(?:'([^']*)'|"([^"]*)")""")


class Server(PsrpSession):
    """The session over stdin/stdout: one XML element per line (protocol.md §6)."""

    def __init__(self, stdin: typing.BinaryIO, stdout: typing.BinaryIO) -> None:
        language, visible = parse_language(os.environ.get("PSRP_HOST_LANGUAGE"), os.environ.get("PSRP_HOST_VISIBLE_COMMANDS"))
        super().__init__(fast=os.environ.get("PSRP_HOST_FAST") == "1", language_mode=language, visible_commands=visible)
        self.stdin = stdin
        self.stdout = stdout
        self.ack_late = os.environ.get("PSRP_HOST_ACK_LATE") == "1"

    # -- output --
    def write(self, text: str) -> None:
        with self.lock:
            self.stdout.write(text.encode("ascii"))
            self.stdout.flush()

    def flush(self) -> None:
        """Writes every queued PSRP message: one fragment per <Data> line, as pwsh does."""
        with self.lock:
            out = []
            while True:
                payload = self.pool.data_to_send(FRAGMENT_SIZE)
                if payload is None:
                    break
                guid = payload.pipeline_id or NULL_GUID
                for frag in fragments(payload.data):
                    out.append(data_line(base64.b64encode(frag).decode(), guid))
            if out:
                self.stdout.write("".join(out).encode("ascii"))
                self.stdout.flush()

    def send_bulk(self, run: Run, count: int, size: str, fast: bool) -> None:
        """Get-Objects: many outputs straight to stdout (one fragment per line), in batches so Signal gets through."""
        encode = output_encoder(self.pool.runspace_pool_id, run.pid, size, fast)
        prefix = f"<Data Stream='Default' PSGuid='{run.pid}'>"
        suffix = "</Data>\n"
        batch = 64 if size == "large" else 512
        done = 0
        while done < count:
            n = min(batch, count - done)
            with self.lock:
                run.check()
                first_oid = self.pool._fragment_count
                self.pool._fragment_count += n
                lines = [prefix + b64 + suffix for k in range(n) for (b64, _, _, _) in encode(done + k, first_oid + k)]
                self.stdout.write("".join(lines).encode("ascii"))
                self.stdout.flush()
            done += n

    # -- input --
    def serve(self) -> int:
        log.info("psrp_host %s started, pid %d, %s", PS_VERSION, os.getpid(), self.language_mode)
        while True:
            raw = self.stdin.readline()
            if not raw:
                log.info("stdin closed: exiting")
                break
            line = raw.decode("utf-8", "replace").strip()
            if not line:
                log.warning("empty line ignored")
                continue
            try:
                self.handle(line)
            except Exception:
                log.exception("failed to handle line %r", line[:200])
                sys.stderr.write("psrp_host: failed to handle a line: " + traceback.format_exc().splitlines()[-1] + "\n")
                sys.stderr.flush()
        with self.lock:
            for run in self.runs.values():
                run.stopped = True
                run.cond.notify_all()
        return 0

    def handle(self, line: str) -> None:
        m = _LINE.match(line)
        if not m:
            log.error("not an out-of-process element: %r", line[:200])
            sys.stderr.write(f"psrp_host: unknown element {line[:80]!r}\n")
            sys.stderr.flush()
            return
        tag = m.group("tag")
        attrs = {a: b if b is not None and b != "" or c is None else c for a, b, c in _ATTR.findall(m.group("attrs"))}
        guid = uuid.UUID(attrs.get("PSGuid", str(NULL_GUID)))
        log.debug("<- %s %s %s", tag, guid, (m.group("body") or "")[:80])
        if tag == "Data":
            try:
                data = base64.b64decode(m.group("body") or "", validate=True)
            except ValueError as e:
                # Acknowledge it all the same so that the client does not wait forever, and say why on stderr.
                log.error("undecodable <Data> for %s: %s", guid, e)
                sys.stderr.write(f"psrp_host: <Data> for {guid} is not base64: {e}\n")
                sys.stderr.flush()
                with self.lock:
                    self.fail(guid, e)
                    self.write(guid_line("DataAck", guid))
                    self.flush()
                return
            self.on_data(guid, attrs.get("Stream", "Default"), data)
        elif tag == "Command":
            self.on_command(guid)
        elif tag == "Signal":
            self.on_signal(guid)
        elif tag == "Close":
            self.on_close(guid)
        else:
            log.error("unexpected %s from the client", tag)

    def on_data(self, guid: uuid.UUID, stream: str, data: bytes) -> None:
        with self.lock:
            if guid != NULL_GUID and guid not in self.runs:
                log.warning("data for unknown pipeline %s: acknowledged and dropped", guid)
                self.write(guid_line("DataAck", guid))
                return
            if self.pool.state == RunspacePoolState.Closed:
                log.info("data after close: a new session")
                self.pool = HostPool()
                self.key_exchanged = False
            stream_type = StreamType.prompt_response if stream.lower() == "promptresponse" else StreamType.default
            self.feed(guid, stream_type, data)
            if not self.ack_late:
                self.write(guid_line("DataAck", guid))
            self.flush()
            if self.ack_late:
                self.write(guid_line("DataAck", guid))
            self.start_ready_runs()

    def on_command(self, guid: uuid.UUID) -> None:
        with self.lock:
            if guid in self.runs:
                log.warning("Command for an existing pipeline %s", guid)
            else:
                self.new_run(guid)
            self.write(guid_line("CommandAck", guid))

    def on_signal(self, guid: uuid.UUID) -> None:
        with self.lock:
            run = self.runs.get(guid)
            if run is not None:
                # pwsh stops the pipeline synchronously (PowerShell.Stop()) before it writes SignalAck.
                self.stop_run(run)
                self.flush()
            self.write(guid_line("SignalAck", guid))

    def on_close(self, guid: uuid.UUID) -> None:
        with self.lock:
            if guid == NULL_GUID:
                self.close_session()
            else:
                self.close_pipeline(guid)
            self.write(guid_line("CloseAck", guid))


def main() -> int:
    log_path = os.environ.get("PSRP_HOST_LOG")
    if log_path:
        logging.basicConfig(
            filename=log_path,
            level=logging.DEBUG if os.environ.get("PSRP_HOST_DEBUG") == "1" else logging.INFO,
            format="%(asctime)s %(process)d %(threadName)s %(levelname)s %(message)s",
        )
    else:
        logging.getLogger().addHandler(logging.NullHandler())
    stdout = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    # Nothing else may reach the protocol stream: anything printed by mistake goes to stderr.
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    server = Server(sys.stdin.buffer, stdout)
    try:
        return server.serve()
    except Exception:
        log.exception("fatal")
        raise


if __name__ == "__main__":
    sys.exit(main())
