"""The PSRP test host checked by independent clients, and against the recorded Windows traffic.

(a) psrpcore's client role over the out-of-process framing (client.py), the host as a local process like `pwsh -s`,
    in FullLanguage and in NoLanguage mode (a JEA RestrictedRemoteServer-like session, also as sshd's powershell-jea);
(b) the same core set over a real OpenSSH sshd (`ssh -s … powershell`), key (ed25519, RSA) and password login;
(c) devious-pypsrp 1.0.1 (pypsrp's `psrp` package, asyncssh) over SSH, in its own virtual environment;
(d) the host's messages have the same shape as what Windows servers sent in shared/fixtures/winrm-recorded.

Run: `$PSGATE_PYTHON -m pytest tests/peers -q` (the SSH tests need root: they start sshd and create the test user).
No test sleeps: every wait is on the peer's next line, with a deadline.
"""

from __future__ import annotations

import base64
import datetime
import json
import os
import re
import struct
import subprocess
import sys
import time
import typing
import uuid
from pathlib import Path
from xml.etree import ElementTree

import pytest
import yaml

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import psrpcore  # noqa: E402
from psrpcore.types import PSCredential, PSInvocationState, PSSecureString, RunspacePoolState  # noqa: E402

import sshd  # noqa: E402
from client import NULL_GUID, Session, Transport, guid_line  # noqa: E402

FIXTURES = (Path(os.environ.get("PSGATE_SHARED") or HERE / "../../../shared") / "fixtures/winrm-recorded").resolve()
TOOLS = Path(os.environ.get("PSGATE_TOOLS", "/opt/psgate-tools"))
PYPSRP_PYTHON = TOOLS / "venv-pypsrp" / "bin" / "python"
BOM = b"\xef\xbb\xbf"
IS_ROOT = os.geteuid() == 0


def host_argv() -> typing.List[str]:
    return [sys.executable, str(HERE / "psrp_host.py")]


def host_env(tmp: Path, **extra: str) -> dict:
    return dict(os.environ, PSRP_HOST_LOG=str(tmp / "host.log"), **extra)


@pytest.fixture(scope="module")
def local(tmp_path_factory: pytest.TempPathFactory) -> typing.Iterator[Session]:
    """One local host process shared by the read-only checks of this module."""
    tmp = tmp_path_factory.mktemp("local")
    with Session.spawn(host_argv(), env=host_env(tmp)) as s:
        s.open()
        yield s


@pytest.fixture()
def fresh(tmp_path: Path) -> typing.Iterator[Session]:
    with Session.spawn(host_argv(), env=host_env(tmp_path)) as s:
        s.open()
        yield s


# -- helpers ----------------------------------------------------------------------------------------------------------


def messages(lines: typing.Iterable[str]) -> typing.List[typing.Tuple[int, bytes, uuid.UUID, int]]:
    """(message type, body, PID, fragments) of every PSRP message in received <Data> lines."""
    pending: dict = {}
    out = []
    for line in lines:
        if not line.startswith("<Data "):
            continue
        data = base64.b64decode(line.split(">", 1)[1].split("<", 1)[0])
        oid, fid, flags, length = struct.unpack(">QQBI", data[:21])
        assert len(data) == 21 + length, "exactly one fragment per <Data> line"
        assert len(data) <= 32768
        if flags & 1:
            pending[oid] = (bytearray(), 0)
        buf, n = pending[oid]
        buf += data[21:]
        pending[oid] = (buf, n + 1)
        if flags & 2:
            buf, n = pending.pop(oid)
            mtype = struct.unpack_from("<I", buf, 4)[0]
            pid = uuid.UUID(bytes_le=bytes(buf[24:40]))
            out.append((mtype, bytes(buf[40:]), pid, n))
    return out


def result_messages(s: Session, pid: uuid.UUID) -> typing.List[typing.Tuple[int, bytes]]:
    return [(t, b) for t, b, p, _ in messages(s.t.received) if p == pid]


def category_messages(s: Session, pid: uuid.UUID) -> typing.List[str]:
    """ErrorCategory_Message as sent (psrpcore's client rebuilds CategoryInfo's text without the colon)."""
    found = []
    for _, body in result_messages(s, pid):
        for e in ElementTree.fromstring(body.lstrip(BOM)).iter("S"):
            if e.get("N") == "ErrorCategory_Message":
                found.append(e.text or "")
    return found


def skeleton(body: bytes) -> str:
    """A message's shape: elements, N attributes, type names, RefIds; values and ToString texts left out."""
    root = ElementTree.fromstring(body[3:] if body.startswith(BOM) else body)

    def walk(e: ElementTree.Element) -> str:
        attrs = "".join(f" {k}={v}" for k, v in e.attrib.items() if k in ("N", "RefId"))
        if e.tag == "T":
            return f"<T>{e.text}</T>"
        return f"<{e.tag}{attrs}>" + "".join(walk(c) for c in e) + f"</{e.tag}>"

    return walk(root)


def recorded() -> typing.List[typing.Tuple[str, int, bytes]]:
    """(file, message type, body) of every server message in the recordings."""
    out = []
    for path in sorted(FIXTURES.glob("test_psrp*.yml")):
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
        pending: dict = {}
        for ex in doc["messages"]:
            if not ex.get("response"):
                continue
            for el in ElementTree.fromstring(ex["response"]).iter():
                if el.tag.rsplit("}", 1)[-1] not in ("Stream", "connectResponseXml") or not (el.text or "").strip():
                    continue
                data = base64.b64decode(el.text)
                pos = 0
                while pos < len(data):
                    oid, fid, flags, length = struct.unpack_from(">QQBI", data, pos)
                    if flags & 1:
                        pending[oid] = bytearray()
                    pending[oid] += data[pos + 21 : pos + 21 + length]
                    pos += 21 + length
                    if flags & 2:
                        buf = pending.pop(oid)
                        out.append((path.name, struct.unpack_from("<I", buf, 4)[0], bytes(buf[40:])))
    return out


def answer_host(values: dict) -> typing.Callable:
    """A host handler answering by method name."""

    def handler(s: Session, responder: psrpcore.ClientHostResponder, event: typing.Any) -> None:
        name = event.method_identifier.name
        value = values[name]
        if callable(value):
            value = value(event)
        getattr(responder, {
            "ReadLine": "read_line", "ReadLineAsSecureString": "read_line_as_secure_string", "Prompt": "prompt",
            "PromptForChoice": "prompt_for_choice", "PromptForCredential1": "prompt_for_credential",
            "PromptForCredential2": "prompt_for_credential",
        }[name])(event.ci, value)
        s.respond()

    return handler


# -- (a) psrpcore's client over the out-of-process framing, host as a local process ------------------------------------


def test_open_wire_format(fresh: Session) -> None:
    lines = fresh.t.received
    # pwsh's OutOfProcessUtils formats: attributes in single quotes, lowercase GUIDs, " />" for the empty elements.
    assert lines[0] == "<DataAck PSGuid='00000000-0000-0000-0000-000000000000' />"
    assert fresh.t.sent[0].startswith("<Data Stream='Default' PSGuid='00000000-0000-0000-0000-000000000000'>")
    got = messages(lines)
    assert [m[0] for m in got] == [0x00010002, 0x00021009, 0x00021005]
    assert all(m[1].startswith(BOM) for m in got), "Windows starts every message body with a UTF-8 BOM"
    assert got[0][1] == BOM + (
        b'<Obj RefId="0"><MS><Version N="protocolversion">2.3</Version><Version N="PSVersion">2.0</Version>'
        b'<Version N="SerializationVersion">1.1.0.1</Version></MS></Obj>'
    )
    table = fresh.pool.application_private_data["PSVersionTable"]
    assert str(table["PSVersion"]).startswith("7.4.") and table["PSEdition"] == "Core"
    assert str(table["PSRemotingProtocolVersion"]) == "2.3" and str(table["SerializationVersion"]) == "1.1.0.1"
    assert fresh.pool.state == RunspacePoolState.Opened


def test_get_date_and_version_table(local: Session) -> None:
    r = local.run("Get-Date")
    assert r.state == PSInvocationState.Completed
    (value,) = r.output
    assert isinstance(value, datetime.datetime) and value.tzinfo is not None
    body = result_messages(local, r.pipeline_id)[0][1]
    assert re.search(rb"<DT>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{7}[+-]\d\d:\d\d</DT><MS><Obj N=\"DisplayHint\"", body)
    r = local.run("$PSVersionTable")
    (table,) = r.output
    assert table["PSEdition"] == "Core" and str(table["PSVersion"]) == "7.4.6"


def test_get_process(local: Session) -> None:
    r = local.run("Get-Process -Name svchost")
    assert r.state == PSInvocationState.Completed and len(r.output) == 3 and not r.error
    p = r.output[0]
    assert p.PSTypeNames[0] == "Deserialized.System.Diagnostics.Process"
    assert str(p) == "System.Diagnostics.Process (svchost)"
    assert (p.Name, p.Id, p.ProcessName) == ("svchost", 812, "svchost")
    assert p.CPU == 45.25 and p.WorkingSet64 == 23461888 and isinstance(p.StartTime, datetime.datetime)
    assert p.MainModule.PSTypeNames[0] == "Deserialized.System.Diagnostics.ProcessModule"
    assert p.MainModule.ModuleName == "svchost.exe"
    # The command form (not a script) binds the same way, positional or named.
    assert len(local.run_command("Get-Process", "explorer").output) == 1
    assert len(local.run_command("Get-Process", Name="pwsh").output) == 1
    assert len(local.run("Get-Process").output) == 8
    # A missing name is a non-terminating error: the pipeline completes.
    r = local.run("Get-Process -Name nosuch")
    assert r.state == PSInvocationState.Completed and not r.output
    (err,) = r.error
    assert err.FullyQualifiedErrorId == "NoProcessFoundForGivenName,Microsoft.PowerShell.Commands.GetProcessCommand"
    assert category_messages(local, r.pipeline_id) == ["ObjectNotFound: (nosuch:String) [Get-Process], ProcessCommandException"]


SERVICE_TYPES = [
    "Deserialized.System.Service.ServiceController#StartupType", "Deserialized.System.Service.ServiceController#BinaryPathName",
    "Deserialized.System.Service.ServiceController#DelayedAutoStart", "Deserialized.System.Service.ServiceController#Description",
    "Deserialized.System.Service.ServiceController#UserName", "Deserialized.System.ServiceProcess.ServiceController",
    "Deserialized.System.ComponentModel.Component", "Deserialized.System.MarshalByRefObject", "Deserialized.System.Object",
]
SCRIPTS_NOT_ALLOWED = "The syntax is not supported by this runspace. This can occur if the runspace is in no-language mode."


def assert_bits(service: typing.Any, name: str = "bits") -> None:
    assert service.PSTypeNames == SERVICE_TYPES
    assert str(service) == name and service.Name == name and service.ServiceName == name
    assert service.DisplayName == "Background Intelligent Transfer Service"
    assert str(service.Status) == "Running" and int(service.Status) == 4
    assert service.Status.PSTypeNames[0] == "Deserialized.System.ServiceProcess.ServiceControllerStatus"
    assert str(service.StartType) == "Manual" and int(service.StartType) == 3
    assert str(service.StartupType) == "Manual" and service.CanStop is True and service.MachineName == "."
    assert list(service.RequiredServices) == list(service.ServicesDependedOn) == ["RpcSs"]


def test_get_service(local: Session) -> None:
    # As a script and as a command (positional and named), like Get-Process.
    for r in (local.run("Get-Service -Name bits"), local.run_command("Get-Service", "bits"),
              local.run_command("Get-Service", Name="bits")):
        assert r.state == PSInvocationState.Completed and not r.error
        (service,) = r.output
        assert_bits(service)
    # Wildcards match the service names, sorted as Get-Service sorts them; a stopped service.
    assert [str(s) for s in local.run("Get-Service").output] == ["BITS", "RpcSs", "Spooler", "sshd", "WinRM"]
    (spooler,) = local.run_command("Get-Service", Name="spool*").output
    assert spooler.Name == "Spooler" and str(spooler.Status) == "Stopped" and int(spooler.Status) == 1
    assert spooler.CanStop is False
    (winrm,) = local.run_command("Get-Service", DisplayName="Windows Remote*").output
    assert (winrm.Name, str(winrm.Status)) == ("WinRM", "Running")
    # A name without wildcards that matches nothing is a non-terminating error: the pipeline completes, the rest is
    # still written.
    r = local.run_command("Get-Service", Name=["nosuch", "WinRM", "b*"])
    assert r.state == PSInvocationState.Completed and [s.Name for s in r.output] == ["BITS", "WinRM"]
    (err,) = r.error
    assert str(err) == "Cannot find any service with service name 'nosuch'."
    assert err.FullyQualifiedErrorId == "NoServiceFoundForGivenName,Microsoft.PowerShell.Commands.GetServiceCommand"
    assert err.Exception.ServiceName == "nosuch" and err.TargetObject == "nosuch"
    assert category_messages(local, r.pipeline_id) == ["ObjectNotFound: (nosuch:String) [Get-Service], ServiceCommandException"]
    r = local.run("Get-Service -Name nosuch; Write-Output after")
    assert r.state == PSInvocationState.Completed and r.output == ["after"] and len(r.error) == 1


def test_output_and_error_streams(local: Session) -> None:
    r = local.run("Write-Output a 'b c' 3")
    assert r.output == ["a", "b c", 3]
    r = local.run("Write-Output one; Write-Output two")
    assert r.output == ["one", "two"]
    r = local.run("Write-Error 'it broke'; Write-Output after")
    assert r.state == PSInvocationState.Completed and r.output == ["after"]
    (err,) = r.error
    assert str(err) == "it broke" and err.FullyQualifiedErrorId == "Microsoft.PowerShell.Commands.WriteErrorException"
    assert category_messages(local, r.pipeline_id) == ["NotSpecified: (:) [Write-Error], WriteErrorException"]
    r = local.run("Write-Warning w1; Write-Verbose v1; Write-Debug d1; Write-Information i1 -Tags t1")
    assert [w.Message for w in r.warning] == ["w1"] and [v.Message for v in r.verbose] == ["v1"]
    assert [d.Message for d in r.debug] == ["d1"]
    (info,) = r.information
    assert info.MessageData == "i1" and info.Source == "Write-Information" and list(info.Tags) == ["t1"]


def test_write_host_and_progress(local: Session) -> None:
    r = local.run("Write-Host 'hello host' -ForegroundColor Green -NoNewline")
    (info,) = r.information
    assert info.Source == "Write-Host" and list(info.Tags) == ["PSHOST"]
    msg = info.MessageData
    assert msg.PSTypeNames[0] == "Deserialized.System.Management.Automation.HostInformationMessage"
    assert msg.Message == "hello host" and msg.NoNewLine is True and str(msg.ForegroundColor) == "ConsoleColor.Green"
    r = local.run("Write-Progress -Activity Copying -Status 'Half way' -PercentComplete 50")
    (p,) = r.progress
    assert (p.Activity, p.StatusDescription, p.PercentComplete) == ("Copying", "Half way", 50)
    r = local.run("Test-Progress -Count 4")
    assert [p.PercentComplete for p in r.progress] == [25, 50, 75, 100, 100]
    assert r.output == ["progress done: 4"]


@pytest.mark.parametrize(
    "script, error_id, message, category",
    [
        ("throw 'bad thing'", "bad thing", "bad thing", "OperationStopped: (bad thing:String) [], RuntimeException"),
        ("Test-Terminating -Message stop", "stop", "stop", "OperationStopped: (stop:String) [], RuntimeException"),
        (
            "Get-Nothing -Force",
            "CommandNotFoundException",
            "The term 'Get-Nothing' is not recognized as the name of a cmdlet, function, script file, or operable "
            "program. Check the spelling of the name, or if a path was included, verify that the path is correct and "
            "try again.",
            "ObjectNotFound: (Get-Nothing:String) [], CommandNotFoundException",
        ),
        (
            "Get-Process -Bogus 1",
            "NamedParameterNotFound,Microsoft.PowerShell.Commands.GetProcessCommand",
            "A parameter cannot be found that matches parameter name 'Bogus'.",
            "InvalidArgument: (:) [Get-Process], ParameterBindingException",
        ),
    ],
)
def test_terminating_errors(local: Session, script: str, error_id: str, message: str, category: str) -> None:
    r = local.run(script)
    assert r.state == PSInvocationState.Failed and not r.output
    assert r.reason.FullyQualifiedErrorId == error_id
    assert str(r.reason) == message and r.reason.Exception.Message == message
    assert category_messages(local, r.pipeline_id) == [category]


def test_no_running_state_and_bom_everywhere(local: Session) -> None:
    local.run("Write-Output x")
    got = messages(local.t.received)
    states = [b for t, b, _, _ in got if t == 0x00041006]
    assert states and not any(b'N="PipelineState">1<' in b for b in states), "Windows never sends Running"
    assert all(b.startswith(BOM) for _, b, _, _ in got)


def test_host_calls(fresh: Session) -> None:
    r = fresh.run("Read-Host", host=answer_host({"ReadLine": "typed line"}))
    assert r.output == ["typed line"]
    assert [c.method_identifier.name for c in r.host_calls] == ["ReadLine"]
    # With -Prompt, pwsh's Read-Host asks Prompt() for one field named after the prompt.
    r = fresh.run("Read-Host -Prompt 'Your name'", host=answer_host({"Prompt": lambda e: {e.method_parameters[2][0].Name: "Ada"}}))
    assert r.output == ["Ada"]
    r = fresh.run("Test-Choice", host=answer_host({"PromptForChoice": 2}))
    (call,) = r.host_calls
    caption, message, choices, default = call.method_parameters
    assert [c.Label for c in choices] == ["&Yes", "&No", "&Maybe"] and default == 1
    assert r.output == [2]
    r = fresh.run("Test-Prompt", host=answer_host({"Prompt": {"Name": "Ada", "Age": 36}}))
    (call,) = r.host_calls
    assert [f.Name for f in call.method_parameters[2]] == ["Name", "Age"]
    (answer,) = r.output
    assert dict(answer) == {"Name": "Ada", "Age": 36}


def test_secure_strings_both_ways(fresh: Session) -> None:
    # Client → server: the client (protocol 2.3) must send PUBLIC_KEY before any SecureString travels.
    fresh.exchange_key()
    secret = PSSecureString("s3cret!")
    r = fresh.run("Read-Host -AsSecureString", host=answer_host({"ReadLineAsSecureString": secret}))
    assert r.output == ["secure:s3cret!"]
    cred = PSCredential(UserName="DOMAIN\\ada", Password=PSSecureString("pa55"))
    r = fresh.run("Get-Credential -UserName ada", host=answer_host({"PromptForCredential1": cred}))
    (call,) = r.host_calls
    assert call.method_parameters[:3] == ["PowerShell credential request", "Enter your credentials.", "ada"]
    assert r.output == ["DOMAIN\\ada", "password:pa55"]
    # Server → client.
    r = fresh.run("ConvertTo-SecureString -String 'from server' -AsPlainText -Force")
    (value,) = r.output
    assert isinstance(value, PSSecureString) and value.decrypt() == "from server"


def test_server_key_request_depends_on_protocol(tmp_path: Path) -> None:
    # A client at protocol 2.1 is asked for its key (PUBLIC_KEY_REQUEST); psrpcore's client answers with PUBLIC_KEY.
    with Session.spawn(host_argv(), env=host_env(tmp_path)) as old:
        old.pool.our_capability.protocolversion = psrpcore.types.PSVersion("2.1")
        old.open()
        r = old.run("ConvertTo-SecureString -String 'asked' -AsPlainText -Force")
        assert r.output[0].decrypt() == "asked"
        assert any(isinstance(e, psrpcore.PublicKeyRequestEvent) for e in old.pool_events)
        assert 0x00010007 in [m[0] for m in messages(old.t.received)]
    # A 2.3 client is never asked (pwsh's EncryptSecureString): without its own PUBLIC_KEY it cannot decrypt.
    with Session.spawn(host_argv(), env=host_env(tmp_path)) as new:
        new.open()
        r = new.run("ConvertTo-SecureString -String 'hidden' -AsPlainText -Force")
        assert r.state == PSInvocationState.Completed
        assert 0x00010007 not in [m[0] for m in messages(new.t.received)]
        with pytest.raises(psrpcore.MissingCipherError):
            r.output[0].decrypt()


def test_pipeline_input(local: Session) -> None:
    r = local.run("Measure-Input", inputs=["a", 2, {"k": "v"}])
    assert r.output[:2] == ["a", 2] and dict(r.output[2]) == {"k": "v"} and r.output[3] == 3
    r = local.run("Write-Output x y | Measure-Input")
    assert r.output == ["x", "y", 2]
    ps = local.powershell(no_input=False)
    ps.add_command("Measure-Input")
    assert local.invoke(ps, inputs=[]).output == [0]


@pytest.mark.parametrize("script", ["Test-Long -Seconds 60", "Start-Sleep -Seconds 60"])
def test_stop(fresh: Session, script: str) -> None:
    ps = fresh.powershell()
    ps.add_script(script)
    r = fresh.start(ps)
    if script.startswith("Test-Long"):
        fresh.wait(lambda: len(r.output) >= 3, "three ticks")
        assert r.output[:3] == ["tick 1", "tick 2", "tick 3"]
    started = time.monotonic()
    fresh.stop(r)
    assert r.state == PSInvocationState.Stopped, "pwsh stops the pipeline before it writes SignalAck"
    assert r.reason.FullyQualifiedErrorId == "PipelineStopped"
    assert str(r.reason) == "The pipeline has been stopped."
    assert category_messages(fresh, r.pipeline_id) == ["OperationStopped: (:) [], PipelineStoppedException"]
    assert time.monotonic() - started < 5
    fresh.finish(r)
    assert fresh.run("Write-Output still-alive").output == ["still-alive"]


def test_get_objects(fresh: Session) -> None:
    r = fresh.run("Get-Objects -Count 2000")
    assert len(r.output) == 2000 and r.output[1999].Index == 1999 and r.output[5].Name == "object 5"
    r = fresh.run("Get-Objects -Count 3 -Size huge")
    assert len(r.output[2].Data) == 100000
    assert {n for t, _, p, n in messages(fresh.t.received) if p == r.pipeline_id and t == 0x00041004} == {4}
    r = fresh.run("Get-Objects -Count 500 -Size large -Fast")
    assert len(r.output) == 500 and {o.Index for o in r.output} == {0} and len(r.output[0].Data) == 10000
    ids = [struct.unpack(">Q", base64.b64decode(line.split(">", 1)[1][:12])[:8])[0] for line in fresh.t.received if line.startswith("<Data ")]
    assert ids == sorted(ids) and len(set(ids)) == len(messages(fresh.t.received)), "one ObjectId per message, increasing"


def test_command_metadata(local: Session) -> None:
    r = local.get_command_metadata("*-ADUser")
    assert r.state == PSInvocationState.Completed
    count, *commands = r.output
    assert count.Count == 3 and [c.Name for c in commands] == ["Get-ADUser", "New-ADUser", "Set-ADUser"]
    get = commands[0]
    assert get.Namespace == "ActiveDirectory" and int(get.CommandType) == 8
    assert {"Identity", "Filter", "Properties", "Verbose"} <= set(get.Parameters)
    assert get.Parameters["Identity"].ParameterType == "Microsoft.ActiveDirectory.Management.ADUser"
    new = commands[1]
    assert {"Name", "SamAccountName", "Enabled", "Path"} <= set(new.Parameters)
    assert new.Parameters["PassThru"].SwitchParameter is True
    assert [c.Name for c in local.get_command_metadata("get-aduser").output[1:]] == ["Get-ADUser"]
    assert local.get_command_metadata("Get-*", namespace=["Microsoft.PowerShell.*"]).output[0].Count == 0


def test_runspace_requests(fresh: Session) -> None:
    pool = fresh.pool
    assert fresh.pool_request(pool.set_max_runspaces(5), psrpcore.SetRunspaceAvailabilityEvent).success is True
    assert pool.max_runspaces == 5
    assert fresh.pool_request(pool.set_min_runspaces(2), psrpcore.SetRunspaceAvailabilityEvent).success is True
    assert fresh.pool_request(pool.set_min_runspaces(-1), psrpcore.SetRunspaceAvailabilityEvent).success is False
    assert fresh.pool_request(pool.get_available_runspaces(), psrpcore.GetRunspaceAvailabilityEvent).count == 5
    assert fresh.pool_request(pool.reset_runspace_state(), psrpcore.SetRunspaceAvailabilityEvent).success is True


def test_close_order_and_exit(fresh: Session) -> None:
    fresh.close()
    tail = [(tag, guid, type(ev).__name__ if ev else None) for tag, guid, ev in fresh.order[-2:]]
    assert tail == [("Data", NULL_GUID, "RunspacePoolStateEvent"), ("CloseAck", NULL_GUID, None)]
    assert fresh.pool.state == RunspacePoolState.Closed
    assert fresh.t.close() == 0


def test_bad_input_is_survived(tmp_path: Path) -> None:
    with Session.spawn(host_argv(), env=host_env(tmp_path)) as s:
        s.t.send("this is not xml")
        s.t.send("<Data Stream='Default' PSGuid='00000000-0000-0000-0000-000000000000'>!!!notbase64</Data>")
        s.wait_ack("DataAck", NULL_GUID)
        stray = uuid.uuid4()
        s.t.send(f"<Data Stream='Default' PSGuid='{stray}'>AAAA</Data>")
        s.wait_ack("DataAck", stray)  # as pwsh: data for an unknown command is acknowledged and dropped
        s.open()
        assert s.run("Write-Output ok").output == ["ok"]
        s.close()
        assert "unknown element" in bytes(s.t.stderr).decode()


# -- (d) the same shapes as the recorded Windows servers ---------------------------------------------------------------


def test_shapes_match_windows_recordings(fresh: Session) -> None:
    rec = recorded()
    assert rec, f"no recordings in {FIXTURES}"

    def windows(mtype: int, where: typing.Callable[[bytes], bool] = lambda b: True) -> typing.Set[str]:
        return {skeleton(b) for _, t, b in rec if t == mtype and b.strip(BOM).strip() and where(b)}

    fresh.exchange_key()
    fresh.run("Write-Warning w; Write-Verbose v; Write-Debug d; Write-Progress -Activity a -Status s")
    fresh.run("Read-Host", host=answer_host({"ReadLine": "x"}))
    fresh.run("Read-Host -AsSecureString", host=answer_host({"ReadLineAsSecureString": PSSecureString("x")}))
    fresh.pool_request(fresh.pool.set_max_runspaces(3), psrpcore.SetRunspaceAvailabilityEvent)
    fresh.pool_request(fresh.pool.get_available_runspaces(), psrpcore.GetRunspaceAvailabilityEvent)
    ours: typing.Dict[int, typing.Set[str]] = {}
    for t, b, _, _ in messages(fresh.t.received):
        ours.setdefault(t, set()).add(skeleton(b))
    no_invocation = lambda b: b"InvocationInfo_" not in b  # noqa: E731
    checks = {
        0x00010002: windows(0x00010002),  # SESSION_CAPABILITY
        0x00021005: windows(0x00021005),  # RUNSPACEPOOL_STATE
        0x00010006: windows(0x00010006),  # ENCRYPTED_SESSION_KEY
        0x00021004: windows(0x00021004),  # RUNSPACE_AVAILABILITY
        0x00041009: windows(0x00041009, no_invocation),  # WARNING_RECORD
        0x00041008: windows(0x00041008, no_invocation),  # VERBOSE_RECORD
        0x00041007: windows(0x00041007, no_invocation),  # DEBUG_RECORD
        0x00041010: windows(0x00041010),  # PROGRESS_RECORD
        0x00041100: windows(0x00041100),  # PIPELINE_HOST_CALL
    }
    for mtype, theirs in checks.items():
        assert ours.get(mtype), f"the host sent no 0x{mtype:08X}"
        assert ours[mtype] <= theirs, f"0x{mtype:08X} has a shape Windows never sent: {ours[mtype] - theirs}"
    # PIPELINE_STATE(Completed) and the APPLICATION_PRIVATE_DATA envelope are byte-for-byte Windows'.
    assert BOM + b'<Obj RefId="0"><MS><I32 N="PipelineState">4</I32></MS></Obj>' in {b for _, b, _, _ in messages(fresh.t.received)}
    app = [b for t, b, _, _ in messages(fresh.t.received) if t == 0x00021009][0]
    win_app = [b for _, t, b in rec if t == 0x00021009][0]
    assert app[:200] == win_app[:200], "same PSPrimitiveDictionary envelope"


def _ms_names(body: bytes, path: str = ".") -> typing.List[str]:
    root = ElementTree.fromstring(body.lstrip(BOM))
    node = root.find(path)
    assert node is not None
    return [c.get("N") for c in node.find("MS")] if node.find("MS") is not None else []


def test_error_record_and_metadata_shapes(local: Session) -> None:
    rec = recorded()
    r = local.run("Write-Error boom")
    ours = [b for t, b in result_messages(local, r.pipeline_id) if t == 0x00041005][0]
    windows = [b for f, t, b in rec if t == 0x00041005 and b"writeErrorStream" in b][0]
    win_names = [n for n in _ms_names(windows) if not n.startswith(("InvocationInfo_", "CommandInfo_"))]
    our_names = _ms_names(ours)
    assert [n for n in win_names if n not in ("PipelineIterationInfo", "PSMessageDetails")] == our_names
    r = local.run("throw x")
    ours = [b for t, b in result_messages(local, r.pipeline_id) if t == 0x00041006][0]
    windows = [b for f, t, b in rec if t == 0x00041006 and b"ExceptionAsErrorRecord" in b][0]
    assert _ms_names(ours) == _ms_names(windows) == ["PipelineState", "ExceptionAsErrorRecord"]
    assert _ms_names(ours, "./MS/Obj") == _ms_names(windows, "./MS/Obj")
    r = local.get_command_metadata("Get-ADUser")
    ours_meta = [b for t, b in result_messages(local, r.pipeline_id) if t == 0x00041004]
    win_meta = [b for f, t, b in rec if f == "test_psrp_get_command_metadata.yml" and t == 0x00041004]
    assert skeleton(ours_meta[0]) == skeleton(win_meta[0]), "CommandMetadataCount"
    assert _ms_names(ours_meta[1]) == _ms_names(win_meta[1]), "CmdletInfo properties"


# -- NoLanguage: a JEA-like RestrictedRemoteServer session (PSRP_HOST_LANGUAGE=NoLanguage) --------------------------


@pytest.fixture(scope="module")
def no_language(tmp_path_factory: pytest.TempPathFactory) -> typing.Iterator[Session]:
    tmp = tmp_path_factory.mktemp("nolanguage")
    with Session.spawn(host_argv(), env=host_env(tmp, PSRP_HOST_LANGUAGE="NoLanguage")) as s:
        s.open()
        yield s


def assert_scripts_not_allowed(s: Session, r: typing.Any, script: str) -> None:
    assert r.state == PSInvocationState.Failed and not r.output and not r.error
    reason = r.reason
    assert str(reason) == reason.Exception.Message == SCRIPTS_NOT_ALLOWED
    assert reason.FullyQualifiedErrorId == "ScriptsNotAllowed" and int(reason.CategoryInfo.Category) == 17  # ParserError
    assert reason.Exception.PSTypeNames[:3] == [
        "Deserialized.System.Management.Automation.ParseException",
        "Deserialized.System.Management.Automation.RuntimeException", "Deserialized.System.SystemException",
    ]
    assert reason.TargetObject == script
    # PowerShell reports it in PIPELINE_STATE(Failed) only: no ERROR_RECORD message.
    assert [t for t, _ in result_messages(s, r.pipeline_id)] == [0x00041006]
    assert category_messages(s, r.pipeline_id) == [f"ParserError: ({script}:String) [], ParseException"]


def assert_not_recognized(r: typing.Any, name: str) -> None:
    assert r.state == PSInvocationState.Failed and not r.output
    assert r.reason.FullyQualifiedErrorId == "CommandNotFoundException"
    assert str(r.reason) == (
        f"The term '{name}' is not recognized as the name of a cmdlet, function, script file, or operable program. "
        "Check the spelling of the name, or if a path was included, verify that the path is correct and try again."
    )


def test_no_language_runs_visible_commands(no_language: Session) -> None:
    for r in (no_language.run_command("Get-Service", Name="bits"), no_language.run_command("Get-Service", "bits")):
        assert r.state == PSInvocationState.Completed and not r.error
        (service,) = r.output
        assert_bits(service)
    r = no_language.run_command("Get-Service", Name="nosuch")
    assert r.state == PSInvocationState.Completed and [e.FullyQualifiedErrorId for e in r.error] == [
        "NoServiceFoundForGivenName,Microsoft.PowerShell.Commands.GetServiceCommand"
    ]
    assert [p.Id for p in no_language.run_command("Get-Process", Name="svchost").output] == [812, 1020, 1544]
    ps = no_language.powershell()  # a pipeline of commands is no script either
    ps.add_command("Get-Process").add_parameter("Name", "pwsh")
    assert [p.Id for p in no_language.invoke(ps).output] == [6020]


@pytest.mark.parametrize("script", ["Get-Service -Name bits", "Get-Date", "prompt", "$PSVersionTable"])
def test_no_language_refuses_scripts(no_language: Session, script: str) -> None:
    assert_scripts_not_allowed(no_language, no_language.run(script), script)


def test_no_language_refuses_a_script_anywhere_in_the_pipeline(no_language: Session) -> None:
    # The whole pipeline is built before any of it runs: the visible command ahead of the script does not run.
    ps = no_language.powershell()
    ps.add_command("Get-Service").add_parameter("Name", "nosuch")
    ps.add_script("Get-Process")
    assert_scripts_not_allowed(no_language, no_language.invoke(ps), "Get-Process")


@pytest.mark.parametrize("name", ["Get-Date", "prompt", "TabExpansion2", "Write-Output", "gsv", "$PSVersionTable"])
def test_no_language_hides_other_commands(no_language: Session, name: str) -> None:
    assert_not_recognized(no_language.run_command(name), name)


def test_no_language_command_metadata_lists_only_visible_commands(no_language: Session) -> None:
    (count,) = no_language.get_command_metadata("*-ADUser").output
    assert count.Count == 0


def test_no_language_visible_commands_are_configurable(tmp_path: Path) -> None:
    env = host_env(tmp_path, PSRP_HOST_LANGUAGE="nolanguage", PSRP_HOST_VISIBLE_COMMANDS="Get-Date, Get-ADUser")
    with Session.spawn(host_argv(), env=env) as s:
        s.open()
        assert isinstance(s.run_command("Get-Date").output[0], datetime.datetime)
        assert_not_recognized(s.run_command("Get-Service", Name="bits"), "Get-Service")
        assert [c.Name for c in s.get_command_metadata("*-ADUser").output[1:]] == ["Get-ADUser"]
        assert_scripts_not_allowed(s, s.run("Get-Date"), "Get-Date")
        s.close()


# -- (b) the same over a real sshd -------------------------------------------------------------------------------------

needs_root = pytest.mark.skipif(not IS_ROOT, reason="starting sshd and creating the test user need root")


@pytest.fixture(scope="module")
def ssh_server() -> typing.Iterator[sshd.SshdInfo]:
    if not IS_ROOT:
        pytest.skip("needs root")
    with sshd.Sshd() as info:
        yield info


def ssh_session(info: sshd.SshdInfo, auth: str) -> Session:
    if auth == "password":
        return Session(Transport(info.ssh_argv(password=True) + ["powershell"], env=info.password_env()))
    key = info.key_rsa if auth == "rsa" else info.key_ed25519
    return Session(Transport(info.ssh_argv(key=key) + ["powershell"]))


@needs_root
@pytest.mark.parametrize("auth", ["ed25519", "rsa", "password"])
def test_ssh_core(ssh_server: sshd.SshdInfo, auth: str) -> None:
    with ssh_session(ssh_server, auth) as s:
        s.open()
        assert messages(s.t.received)[0][1].startswith(BOM)
        assert isinstance(s.run("Get-Date").output[0], datetime.datetime)
        assert [p.Id for p in s.run("Get-Process -Name svchost").output] == [812, 1020, 1544]
        r = s.run("Write-Error e1; Write-Output o1")
        assert r.output == ["o1"] and [str(e) for e in r.error] == ["e1"]
        assert s.run("throw t1").state == PSInvocationState.Failed
        s.exchange_key()
        r = s.run("Read-Host -AsSecureString", host=answer_host({"ReadLineAsSecureString": PSSecureString("over ssh")}))
        assert r.output == ["secure:over ssh"]
        assert s.run("Measure-Input", inputs=[1, 2]).output == [1, 2, 2]
        ps = s.powershell()
        ps.add_script("Test-Long")
        r = s.start(ps)
        s.wait(lambda: len(r.output) >= 2, "two ticks")
        s.stop(r)
        assert r.state == PSInvocationState.Stopped
        s.finish(r)
        assert s.get_command_metadata("*-ADUser").output[0].Count == 3
        s.close()
        assert s.pool.state == RunspacePoolState.Closed
        assert s.t.close() == 0


@needs_root
def test_ssh_passes_host_settings(ssh_server: sshd.SshdInfo) -> None:
    # sshd_config has AcceptEnv PSRP_HOST_*: a client can switch the host to its benchmark mode.
    with Session(Transport(ssh_server.ssh_argv(options=["-o", "SetEnv=PSRP_HOST_FAST=1"]) + ["powershell"])) as s:
        s.open()
        out = s.run("Get-Objects -Count 50").output
        assert len(out) == 50 and {o.Index for o in out} == {0}, "FAST mode repeats one serialized object"
        s.close()


@needs_root
def test_ssh_host_key_is_checked(ssh_server: sshd.SshdInfo, tmp_path: Path) -> None:
    wrong = tmp_path / "known_hosts"
    wrong.write_text(f"[127.0.0.1]:{ssh_server.port} ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFX4xYjYb0s6VAqFv2Ffl4kTqJyXg0eVJxW3oN5mB1cD\n")
    argv = [a.replace(ssh_server.known_hosts, str(wrong)) for a in ssh_server.ssh_argv()] + ["powershell"]
    p = subprocess.run(argv, input=b"", capture_output=True, timeout=20)
    assert p.returncode == 255 and b"HOST IDENTIFICATION HAS CHANGED" in p.stderr


@needs_root
def test_ssh_jea_subsystem() -> None:
    # A second subsystem, powershell-jea: the same host in NoLanguage mode; powershell stays FullLanguage.
    with sshd.Sshd(jea_subsystem=True) as info:
        assert (info.subsystem, info.jea_subsystem) == ("powershell", "powershell-jea")
        # SetEnv is refused for its language: the subsystem's wrapper sets PSRP_HOST_LANGUAGE itself.
        with Session(Transport(info.ssh_argv(options=["-o", "SetEnv=PSRP_HOST_LANGUAGE=FullLanguage"]) + ["powershell-jea"])) as s:
            s.open()
            (service,) = s.run_command("Get-Service", Name="bits").output
            assert_bits(service)
            assert_scripts_not_allowed(s, s.run("Get-Service -Name bits"), "Get-Service -Name bits")
            assert_not_recognized(s.run_command("prompt"), "prompt")
            s.close()
        with Session(Transport(info.ssh_argv() + ["powershell"])) as s:
            s.open()
            assert_bits(s.run("Get-Service -Name bits").output[0])
            assert s.run_command("prompt").output == ["PS C:\\Users\\psgate> "]
            s.close()


@needs_root
def test_ssh_missing_subsystem() -> None:
    with sshd.Sshd(subsystem=False) as info:
        assert info.subsystem is None
        p = subprocess.run(info.ssh_argv() + ["powershell"], input=b"", capture_output=True, timeout=20)
        assert p.returncode != 0 and b"subsystem request failed" in p.stderr


# -- (c) devious-pypsrp over SSH -----------------------------------------------------------------------------------------


@needs_root
@pytest.mark.parametrize("auth", ["key", "password"])
def test_pypsrp_over_ssh(ssh_server: sshd.SshdInfo, auth: str) -> None:
    if not PYPSRP_PYTHON.exists():
        pytest.fail(f"{PYPSRP_PYTHON} is missing: run `bash scripts/setup.sh --test`")
    p = subprocess.run([str(PYPSRP_PYTHON), str(HERE / "pypsrp_check.py"), ssh_server.to_json(), auth],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr[-3000:]
    report = json.loads(p.stdout)
    runs = report["runs"]
    assert report["psversion"].startswith("7.4")
    assert runs["Get-Date"]["state"] == "Completed" and len(runs["Get-Date"]["output"]) == 1
    procs = runs["Get-Process -Name svchost"]["output"]
    assert [o["props"]["Id"] for o in procs] == ["812", "1020", "1544"]
    assert procs[0]["type_names"][0] == "Deserialized.System.Diagnostics.Process"
    assert runs["Write-Error 'pypsrp error'"]["errors"] == ["pypsrp error"]
    assert runs["Read-Host"]["output"] == ["typed by pypsrp"]
    assert runs["Write-Progress -Activity Act -Status Stat -PercentComplete 40"]["progress"] == [
        {"activity": "Act", "status": "Stat", "percent": 40}
    ]
    assert runs["throw 'pypsrp throw'"]["state"] == "Failed" and "pypsrp throw" in runs["throw 'pypsrp throw'"]["failed"]
    # pypsrp ran the key exchange on its own to send the PSCredential's SecureString.
    assert runs["Get-Credential -UserName bob"]["output"] == ["bob", "password:pypsrp-secret"]
    assert report["metadata"][1:] == ["Get-ADUser", "New-ADUser", "Set-ADUser"]
    assert "ReadLine" in report["host_calls"] and "PromptForCredential" in report["host_calls"]
