"""The WS-Management test peer (winrm_host.py) checked by an independent client, and against recorded Windows traffic.

pypsrp 0.9.1's own `RunspacePool` and `PowerShell` classes (the WinRM client of Ansible's psrp connection) drive the
peer over HTTP with NTLM and MS-WSMV message encryption, over HTTPS with NTLM (channel binding checked) and with
Basic: every emulated command, every stream, host calls, input, stop, the OperationTimeout fault, disconnect and
reconnect, connect from a new client (get_runspace_pools), idle timeout, Block/Drop buffering, quotas, unknown
configurations, a NoLanguage (JEA-like) configuration and authentication failures. The responses have the same shapes as the ones Windows sent in
shared/fixtures/winrm-recorded.

Run: `$PSGATE_PYTHON -m pytest tests/peers/test_winrm_peer.py -q` (each test starts its own peers on free loopback
ports). Waits are on the peer's answers with deadlines; the two that watch the server's clock (idle timeout, Drop
while disconnected) poll with a deadline.
"""

from __future__ import annotations

import os
import re
import select
import struct
import subprocess
import sys
import time
import typing
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import yaml

# pypsrp 0.9.1 and pyspnego 0.12.4 are installed in $PSGATE_VENV by `scripts/setup.sh --test`.
from pypsrp.complex_objects import ObjectMeta, PSCredential, PSInvocationState, RunspacePoolState  # noqa: E402
from pypsrp.exceptions import AuthenticationError, WinRMTransportError, WSManFaultError  # noqa: E402
from pypsrp.host import PSHost, PSHostUserInterface  # noqa: E402
from pypsrp.powershell import PowerShell, RunspacePool  # noqa: E402
from pypsrp.shell import CommandState  # noqa: E402
from pypsrp.wsman import NAMESPACES, SelectorSet, WSMan  # noqa: E402

HERE = Path(__file__).resolve().parent
FIXTURES = (Path(os.environ.get("PSGATE_SHARED") or HERE / "../../../shared") / "fixtures/winrm-recorded").resolve()
ADA = ("PSGATE\\ada", "Ada-Secret-1")
BOB = ("PSGATE\\bob", "Bob-Secret-2")
USERS = [f"{ADA[0]}:{ADA[1]}", f"{BOB[0]}:{BOB[1]}"]
RSP = NAMESPACES["rsp"]

# Fault codes (MS-WSMV, winerror.h) and the quota each QUOTA_* code names.
TIMED_OUT = 0x80338029
UNEXPECTED_SELECTORS = 0x8033805B
INVALID_RESOURCE_URI = 0x8033803B
SHELL_DISCONNECTED = 0x803381C4
SESSIONID_MISMATCH = 0x803381C6
CONNECTED_ELSEWHERE = 0x803381CD
QUOTAS = {0x803381A5: "MaxShellsPerUser", 0x803381AB: "MaxConcurrentUsers", 0x803381A6: "MaxConcurrentOperationsPerUser"}


# -- the peer ---------------------------------------------------------------------------------------------------------


class Peer:
    """winrm_host.py as a child process on a free loopback port; stopped (and its shells with it) on exit."""

    def __init__(self, tmp: Path, *extra: str, tls: bool = False) -> None:
        self.log = tmp / f"winrm_host-{os.getpid()}-{time.monotonic_ns()}.log"
        argv = [sys.executable, str(HERE / "winrm_host.py"), "--port", "0", "--auth", "ntlm,basic", "--log", str(self.log)]
        argv += [a for u in USERS for a in ("--user", u)]
        argv += ["--tls"] if tls else []
        argv += list(extra)
        self.tls = tls
        self.stderr = self.log.with_suffix(".stderr")
        with open(self.stderr, "w") as err:
            self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=err, text=True)
        deadline = time.monotonic() + 30
        line = ""
        while time.monotonic() < deadline:
            ready, _, _ = select.select([self.proc.stdout], [], [], 0.2)
            if ready:
                line = self.proc.stdout.readline()  # type: ignore[union-attr]
                break
            if self.proc.poll() is not None:
                break
        m = re.search(r"listening on (https?)://127\.0\.0\.1:(\d+)/wsman", line)
        if not m:
            self.stop()
            raise RuntimeError(f"winrm_host did not start: {line!r} {self.stderr.read_text()}")
        self.port = int(m.group(2))

    def wsman(self, user: typing.Tuple[str, str] = ADA, auth: str = "ntlm", **kw: typing.Any) -> WSMan:
        if self.tls:
            kw.setdefault("cert_validation", False)
        else:
            kw.setdefault("encryption", "always" if auth != "basic" else "never")
        kw.setdefault("operation_timeout", 10)
        return WSMan("127.0.0.1", port=self.port, username=user[0], password=user[1], ssl=self.tls, auth=auth, **kw)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)

    def __enter__(self) -> "Peer":
        return self

    def __exit__(self, *exc: typing.Any) -> None:
        self.stop()


@pytest.fixture(scope="module")
def http_peer(tmp_path_factory: pytest.TempPathFactory) -> typing.Iterator[Peer]:
    with Peer(tmp_path_factory.mktemp("winrm-http")) as peer:
        yield peer


@pytest.fixture(scope="module")
def https_peer(tmp_path_factory: pytest.TempPathFactory) -> typing.Iterator[Peer]:
    with Peer(tmp_path_factory.mktemp("winrm-https"), tls=True) as peer:
        yield peer


class UI(PSHostUserInterface):
    """Answers the host calls the emulated commands make, and records them."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: typing.List[str] = []

    def ReadLine(self, runspace: typing.Any, pipeline: typing.Any) -> str:  # noqa: N802 - pypsrp's names
        self.calls.append("ReadLine")
        return "typed by pypsrp"

    def ReadLineAsSecureString(self, runspace: typing.Any, pipeline: typing.Any) -> typing.Any:  # noqa: N802
        self.calls.append("ReadLineAsSecureString")
        return runspace.serialize("secret over winrm", ObjectMeta("SS"))

    def Prompt(self, runspace: typing.Any, pipeline: typing.Any, caption: str, message: str, descriptions: list) -> dict:  # noqa: N802
        self.calls.append("Prompt")
        names = [prop(d, "name") for d in descriptions]
        return {n: ("Ada" if n in ("Name", "Your name") else 36) for n in names}

    def PromptForCredential1(self, runspace: typing.Any, pipeline: typing.Any, caption: str, message: str,  # noqa: N802
                             user_name: str, target_name: str) -> PSCredential:
        self.calls.append("PromptForCredential1")
        return PSCredential(username=user_name or "nobody", password="pypsrp-secret")

    def PromptForChoice(self, runspace: typing.Any, pipeline: typing.Any, caption: str, message: str,  # noqa: N802
                        choices: list, default: int) -> int:
        self.calls.append("PromptForChoice")
        return 2


def host() -> PSHost:
    return PSHost(None, None, False, "psgate-test", None, UI(), "1.0")


TRANSPORTS = ["http-ntlm-encrypted", "https-ntlm", "https-basic"]


def connection(request: pytest.FixtureRequest, kind: str, **kw: typing.Any) -> WSMan:
    if kind == "http-ntlm-encrypted":
        return request.getfixturevalue("http_peer").wsman(**kw)
    if kind == "https-ntlm":
        return request.getfixturevalue("https_peer").wsman(**kw)
    return request.getfixturevalue("https_peer").wsman(auth="basic", **kw)


@pytest.fixture(params=TRANSPORTS)
def pool(request: pytest.FixtureRequest) -> typing.Iterator[RunspacePool]:
    with RunspacePool(connection(request, request.param), host=host()) as rp:
        yield rp


def run(rp: RunspacePool, script: str, input: typing.Any = None) -> PowerShell:
    ps = PowerShell(rp)
    ps.add_script(script)
    ps.invoke(input=input)
    return ps


def prop(o: typing.Any, name: str) -> typing.Any:
    """A property of a deserialized object, adapted or extended, by name in any case (as PowerShell reads them)."""
    for table in (o.adapted_properties, o.extended_properties):
        for key, value in table.items():
            if key.lower() == name.lower():
                return value
    raise KeyError(name)


def index(o: typing.Any) -> int:
    return int(prop(o, "Index"))


# -- every emulated command, over each transport ---------------------------------------------------------------------


def test_open_and_version_table(pool: RunspacePool) -> None:
    assert pool.state == RunspacePoolState.OPENED
    assert pool.protocol_version == "2.3"
    table = pool.application_private_data.data["PSVersionTable"]
    assert str(table["PSVersion"]).startswith("7.4.") and table["PSEdition"] == "Core"
    assert pool.connection.max_envelope_size == 512000, "pypsrp raises its envelope size for protocol 2.2+"
    (out,) = run(pool, "$PSVersionTable").output
    assert out["PSEdition"] == "Core" and str(out["PSRemotingProtocolVersion"]) == "2.3"


def test_objects_and_streams(pool: RunspacePool) -> None:
    (date,) = run(pool, "Get-Date").output  # a DateTime with the DisplayHint note property
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{7}[+-]\d\d:\d\d", date.property_sets[0])
    assert "DisplayHint" in date.extended_properties
    ps = run(pool, "Get-Process -Name svchost")
    assert ps.state == PSInvocationState.COMPLETED and not ps.had_errors
    assert [prop(p, "Id") for p in ps.output] == [812, 1020, 1544]
    assert ps.output[0].types[0] == "System.Diagnostics.Process"  # pypsrp drops the "Deserialized." prefix
    ps = PowerShell(pool)
    ps.add_cmdlet("Get-Process").add_parameter("Name", "explorer")
    assert [str(p) for p in ps.invoke()] == ["System.Diagnostics.Process (explorer)"]
    assert run(pool, "Write-Output a 'b c' 3; Write-Output two").output == ["a", "b c", 3, "two"]
    ps = run(pool, "Write-Error 'it broke'; Write-Warning w1; Write-Verbose v1; Write-Debug d1; Write-Information i1 -Tags t1; Write-Output after")
    assert ps.state == PSInvocationState.COMPLETED and ps.output == ["after"]
    assert [str(e) for e in ps.streams.error] == ["it broke"]
    assert ps.streams.error[0].fq_error == "Microsoft.PowerShell.Commands.WriteErrorException"
    assert [w.message for w in ps.streams.warning] == ["w1"] and [v.message for v in ps.streams.verbose] == ["v1"]
    assert [d.message for d in ps.streams.debug] == ["d1"]
    (info,) = ps.streams.information
    assert info.message_data == "i1" and info.source == "Write-Information" and list(info.tags) == ["t1"]
    (info,) = run(pool, "Write-Host 'hello host' -ForegroundColor Green").streams.information
    assert info.source == "Write-Host" and prop(info.message_data, "Message") == "hello host"
    ps = run(pool, "Write-Progress -Activity Copying -Status 'Half way' -PercentComplete 50")
    assert [(p.activity, p.description, p.percent_complete) for p in ps.streams.progress] == [("Copying", "Half way", 50)]
    ps = run(pool, "Test-Progress -Count 4")
    assert [p.percent_complete for p in ps.streams.progress] == [25, 50, 75, 100, 100]
    assert ps.output == ["progress done: 4"]
    assert run(pool, "Start-Sleep -Milliseconds 20").state == PSInvocationState.COMPLETED
    assert run(pool, "Test-Long -Seconds 0.35").output[:3] == ["tick 1", "tick 2", "tick 3"]


@pytest.mark.parametrize("script, message, error_id", [
    ("throw 'bad thing'", "bad thing", "bad thing"),
    ("Test-Terminating -Message stop", "stop", "stop"),
    ("Get-Nothing -Force", "The term 'Get-Nothing' is not recognized", "CommandNotFoundException"),
    ("Get-Process -Bogus 1", "A parameter cannot be found that matches parameter name 'Bogus'.",
     "NamedParameterNotFound,Microsoft.PowerShell.Commands.GetProcessCommand"),
])
def test_terminating_errors(pool: RunspacePool, script: str, message: str, error_id: str) -> None:
    ps = run(pool, script)
    assert ps.state == PSInvocationState.FAILED and ps.had_errors and not ps.output
    (reason,) = ps.streams.error
    assert str(reason).startswith(message) and reason.fq_error == error_id


def get_service(rp: RunspacePool, **params: typing.Any) -> PowerShell:
    """Get-Service as a Command object (IsScript false), as Invoke-Command -ScriptBlock is not: pypsrp's add_cmdlet."""
    ps = PowerShell(rp)
    ps.add_cmdlet("Get-Service")
    for name, value in params.items():
        ps.add_parameter(name, value)
    ps.invoke()
    return ps


def assert_bits(service: typing.Any) -> None:
    assert service.types[:6] == [  # pypsrp drops the "Deserialized." prefix
        "System.Service.ServiceController#StartupType", "System.Service.ServiceController#BinaryPathName",
        "System.Service.ServiceController#DelayedAutoStart", "System.Service.ServiceController#Description",
        "System.Service.ServiceController#UserName", "System.ServiceProcess.ServiceController",
    ]
    assert service.types[6:] == ["System.ComponentModel.Component", "System.MarshalByRefObject", "System.Object"]
    assert str(service) == "bits" and prop(service, "Name") == prop(service, "ServiceName") == "bits"
    assert prop(service, "DisplayName") == "Background Intelligent Transfer Service"
    assert str(prop(service, "Status")) == "Running" and prop(service, "CanStop") is True
    assert str(prop(service, "StartType")) == "Manual" and str(prop(service, "StartupType")) == "Manual"


def test_get_service(pool: RunspacePool) -> None:
    for ps in (run(pool, "Get-Service -Name bits"), get_service(pool, Name="bits")):
        assert ps.state == PSInvocationState.COMPLETED and not ps.had_errors
        (service,) = ps.output
        assert_bits(service)
    # A name that matches nothing is a non-terminating error: the pipeline goes on and completes.
    for ps in (run(pool, "Get-Service -Name nosuch; Get-Service WinRM"), get_service(pool, Name=["nosuch", "WinRM"])):
        assert ps.state == PSInvocationState.COMPLETED
        assert [str(s) for s in ps.output] == ["WinRM"] and str(prop(ps.output[0], "Status")) == "Running"
        (err,) = ps.streams.error
        assert str(err) == "Cannot find any service with service name 'nosuch'."
        assert err.fq_error == "NoServiceFoundForGivenName,Microsoft.PowerShell.Commands.GetServiceCommand"
        assert err.message == "ObjectNotFound: (nosuch:String) [Get-Service], ServiceCommandException"
    (spooler,) = get_service(pool, Name="Spool*").output
    assert str(spooler) == "Spooler" and str(prop(spooler, "Status")) == "Stopped"


def test_host_calls_and_secure_strings(pool: RunspacePool) -> None:
    ui = pool.host.ui
    assert run(pool, "Read-Host").output == ["typed by pypsrp"]
    assert run(pool, "Read-Host -Prompt 'Your name'").output == ["Ada"]
    assert run(pool, "Test-Choice").output == [2]
    (answer,) = run(pool, "Test-Prompt").output
    assert dict(answer) == {"Name": "Ada", "Age": 36}
    pool.exchange_keys()  # a SecureString travels only after the key exchange (protocol 2.2+)
    assert run(pool, "Read-Host -AsSecureString").output == ["secure:secret over winrm"]
    assert run(pool, "Get-Credential -UserName bob").output == ["bob", "password:pypsrp-secret"]
    assert run(pool, "ConvertTo-SecureString -String hidden -AsPlainText -Force").output == ["hidden"]
    assert ui.calls == ["ReadLine", "Prompt", "PromptForChoice", "Prompt", "ReadLineAsSecureString", "PromptForCredential1"]


def test_input_metadata_and_pool_requests(pool: RunspacePool) -> None:
    out = run(pool, "Measure-Input", input=["a", 2, {"k": "v"}]).output
    assert out[:2] == ["a", 2] and dict(out[2]) == {"k": "v"} and out[3] == 3
    assert run(pool, "Write-Output x y | Measure-Input").output == ["x", "y", 2]
    assert [c.name for c in pool.get_command_metadata("*-ADUser")] == ["Get-ADUser", "New-ADUser", "Set-ADUser"]
    pool.max_runspaces = 5
    pool.min_runspaces = 2
    assert pool.get_available_runspaces() == 5
    pool.reset_runspace_state()


def test_bulk_output(pool: RunspacePool) -> None:
    out = run(pool, "Get-Objects -Count 1500").output
    assert [index(o) for o in out] == list(range(1500))
    out = run(pool, "Get-Objects -Count 3 -Size huge").output  # ~100 KiB each: several 32 KiB fragments per object
    assert [len(prop(o, "Data")) for o in out] == [100000] * 3
    out = run(pool, "Get-Objects -Count 300 -Fast").output
    assert len(out) == 300 and {index(o) for o in out} == {0}


def test_fast_mode_delivers_100000_objects_quickly(http_peer: Peer) -> None:
    # Raw Receives (no deserialisation): what a benchmark client sees; over NTLM-encrypted HTTP.
    with RunspacePool(http_peer.wsman()) as rp:
        ps = PowerShell(rp)
        ps.add_script("Get-Objects -Count 100000 -Fast")
        started = time.monotonic()
        ps.begin_invoke()
        ids: typing.List[int] = []
        state = None
        responses = 0
        while state != CommandState.DONE:
            state, _rc, buffers = rp.shell.receive("stdout", command_id=ps._command_id)
            responses += 1
            data, pos = buffers["stdout"], 0
            while pos < len(data):
                oid, _fid, _flags, length = struct.unpack_from(">QQBI", data, pos)
                ids.append(oid)
                pos += 21 + length
        elapsed = time.monotonic() - started
        assert len(ids) == 100001 and ids == sorted(ids), "100,000 outputs and PIPELINE_STATE, object ids increasing"
        assert responses < 400, "many fragments per ReceiveResponse, up to MaxEnvelopeSize"
        assert elapsed < 30, f"100,000 objects took {elapsed:.1f} s"
        ps.state = PSInvocationState.COMPLETED
        ps.close()


# -- WS-Management behaviour ------------------------------------------------------------------------------------------


def test_stop_and_release(http_peer: Peer) -> None:
    with RunspacePool(http_peer.wsman()) as rp:
        ps = PowerShell(rp)
        ps.add_script("Test-Long -Seconds 60")
        ps.begin_invoke()
        while len(ps.output) < 2:
            ps.poll_invoke()
        assert ps.output[:2] == ["tick 1", "tick 2"]
        started = time.monotonic()
        ps.stop()  # Signal powershell/signal/ctrl_c: answered once the pipeline has stopped
        assert time.monotonic() - started < 5
        # What the stopped pipeline left: PIPELINE_STATE(Stopped) with PipelineStoppedException, then Done.
        state, _rc, buffers = rp.shell.receive("stdout", command_id=ps._command_id)
        while state != CommandState.DONE:
            more_state, _rc, more = rp.shell.receive("stdout", command_id=ps._command_id)
            state, buffers = more_state, {"stdout": buffers["stdout"] + more["stdout"]}
        assert b'N="PipelineState">3<' in buffers["stdout"] and b"PipelineStopped" in buffers["stdout"]
        rp.shell.signal("http://schemas.microsoft.com/wbem/wsman/1/windows/shell/signal/Terminate", ps._command_id)
        with pytest.raises(WSManFaultError) as e:
            rp.shell.receive("stdout", command_id=ps._command_id)
        assert e.value.code == UNEXPECTED_SELECTORS and "command identifier that does not exist" in str(e.value)
        assert run(rp, "Write-Output still-alive").output == ["still-alive"]


def test_operation_timeout_is_the_timed_out_fault(http_peer: Peer) -> None:
    with RunspacePool(http_peer.wsman()) as rp:
        ps = PowerShell(rp)
        ps.add_script("Start-Sleep -Seconds 2; Write-Output woke")
        ps.begin_invoke()
        started = time.monotonic()
        with pytest.raises(WSManFaultError) as e:
            rp.shell.receive("stdout", command_id=ps._command_id, timeout=1)
        assert e.value.code == TIMED_OUT and 0.9 < time.monotonic() - started < 3
        assert "cannot complete the operation within the time specified in OperationTimeout" in str(e.value)
        ps.poll_invoke(timeout=1)  # pypsrp ignores this fault and asks again
        assert ps.end_invoke() == ["woke"]


def test_unknown_configuration_and_a_named_one(http_peer: Peer) -> None:
    with pytest.raises(WSManFaultError) as e:
        RunspacePool(http_peer.wsman(), configuration_name="NoSuch.Config").open()
    assert e.value.code == INVALID_RESOURCE_URI
    assert ("The resource URI (http://schemas.microsoft.com/powershell/NoSuch.Config) was not found in the "
            "WS-Management catalog") in str(e.value)
    with RunspacePool(http_peer.wsman(), configuration_name="PowerShell.7") as rp:
        assert rp.shell.resource_uri.endswith("/PowerShell.7")
        assert run(rp, "Write-Output seven").output == ["seven"]


SCRIPTS_NOT_ALLOWED = "The syntax is not supported by this runspace. This can occur if the runspace is in no-language mode."


def assert_not_recognized(ps: PowerShell, name: str) -> None:
    assert ps.state == PSInvocationState.FAILED and ps.had_errors and not ps.output
    (reason,) = ps.streams.error
    assert reason.fq_error == "CommandNotFoundException"
    assert str(reason).startswith(f"The term '{name}' is not recognized as the name of a cmdlet, function, script file")


def test_no_language_configuration(tmp_path: Path) -> None:
    # A JEA-like RestrictedRemoteServer endpoint: Command objects run, scripts and invisible commands are refused.
    with Peer(tmp_path, "--restricted-configuration", "PSGate.JEA") as peer:
        with RunspacePool(peer.wsman(), configuration_name="PSGate.JEA", host=host()) as rp:
            assert rp.shell.resource_uri.endswith("/PSGate.JEA")
            ps = get_service(rp, Name="bits")
            assert ps.state == PSInvocationState.COMPLETED and not ps.had_errors
            (service,) = ps.output
            assert_bits(service)
            ps = get_service(rp, Name="nosuch")
            assert ps.state == PSInvocationState.COMPLETED and [e.fq_error for e in ps.streams.error] == [
                "NoServiceFoundForGivenName,Microsoft.PowerShell.Commands.GetServiceCommand"
            ]
            ps = PowerShell(rp)
            ps.add_cmdlet("Get-Process").add_argument("explorer")  # positional, as in FullLanguage
            assert [str(p) for p in ps.invoke()] == ["System.Diagnostics.Process (explorer)"]
            for script in ("Get-Service -Name bits", "Get-Date"):
                ps = run(rp, script)
                assert ps.state == PSInvocationState.FAILED and ps.had_errors and not ps.output
                (reason,) = ps.streams.error
                assert str(reason) == SCRIPTS_NOT_ALLOWED and reason.fq_error == "ScriptsNotAllowed"
                assert reason.category == 17 and reason.reason == "ParseException"  # ErrorCategory.ParserError
                assert reason.message == f"ParserError: ({script}:String) [], ParseException"
                assert reason.exception.types[:2] == [
                    "System.Management.Automation.ParseException", "System.Management.Automation.RuntimeException"
                ]
            for name in ("Get-Date", "prompt", "TabExpansion2"):
                ps = PowerShell(rp)
                ps.add_cmdlet(name)
                ps.invoke()
                assert_not_recognized(ps, name)
            assert rp.get_command_metadata("*-ADUser") == []
        # The same server's default configuration is FullLanguage.
        with RunspacePool(peer.wsman()) as rp:
            assert_bits(run(rp, "Get-Service -Name bits").output[0])
            assert run(rp, "prompt").output == ["PS C:\\Users\\psgate> "]
    # --visible-commands replaces the visible list.
    with Peer(tmp_path, "--restricted-configuration", "Narrow", "--visible-commands", "Get-Date") as peer:
        with RunspacePool(peer.wsman(), configuration_name="Narrow") as rp:
            ps = PowerShell(rp)
            ps.add_cmdlet("Get-Date")
            assert len(ps.invoke()) == 1 and ps.state == PSInvocationState.COMPLETED
            ps = PowerShell(rp)
            ps.add_cmdlet("Get-Service").add_parameter("Name", "bits")
            ps.invoke()
            assert_not_recognized(ps, "Get-Service")


def test_server_config_get(http_peer: Peer) -> None:
    w = http_peer.wsman()
    w.update_max_payload_size()  # WS-Transfer Get of http://schemas.microsoft.com/wbem/wsman/1/config
    assert w.max_envelope_size == 500 * 1024
    config = w.get_server_config()
    assert config.findtext("cfg:Config/cfg:MaxTimeoutms", namespaces=NAMESPACES) == "60000"
    assert config.findtext("cfg:Config/cfg:Service/cfg:Auth/cfg:CbtHardeningLevel", namespaces=NAMESPACES) == "Relaxed"


def test_enumerate_then_pull(http_peer: Peer) -> None:
    # Without wsman:OptimizeEnumeration the items come with a Pull on the enumeration context.
    with RunspacePool(http_peer.wsman()) as rp:
        w = http_peer.wsman()
        response = w.enumerate("http://schemas.microsoft.com/wbem/wsman/1/windows/shell",
                               ET.Element(f"{{{NAMESPACES['wsen']}}}Enumerate"))
        context = response.findtext("wsen:EnumerateResponse/wsen:EnumerationContext", namespaces=NAMESPACES)
        assert context and context.startswith("uuid:")
        pull = ET.Element(f"{{{NAMESPACES['wsen']}}}Pull")
        ET.SubElement(pull, f"{{{NAMESPACES['wsen']}}}EnumerationContext").text = context
        items = w.pull("http://schemas.microsoft.com/wbem/wsman/1/windows/shell", pull)
        ids = [e.text for e in items.findall("wsen:PullResponse/wsen:Items/rsp:Shell/rsp:ShellId", NAMESPACES)]
        assert rp.id in ids and items.find("wsen:PullResponse/wsen:EndOfSequence", NAMESPACES) is not None


def test_disconnect_and_reconnect_the_same_client(http_peer: Peer) -> None:
    rp = RunspacePool(http_peer.wsman(), host=host())
    rp.open()
    ps = PowerShell(rp)
    ps.add_script("Write-Output before; Start-Sleep -Milliseconds 300; Write-Output after")
    ps.begin_invoke()
    rp.disconnect()
    assert ps.state == PSInvocationState.DISCONNECTED
    shell = rp.shell._get_shell()  # WS-Transfer Get of the shell
    assert shell["State"] == "Disconnected" and shell["BufferMode"] == "Block"
    with pytest.raises(WSManFaultError) as e:
        rp.shell.receive("stdout", command_id=ps._command_id)
    assert e.value.code == SHELL_DISCONNECTED
    # Another client session (another wsmv:SessionId) cannot Reconnect: it must Connect.
    other = RunspacePool(http_peer.wsman())
    other.id = other.shell.id = rp.id
    other.shell._selector_set = rp.shell._selector_set
    other.state = RunspacePoolState.DISCONNECTED
    with pytest.raises(WSManFaultError) as e:
        other.connect()
    assert e.value.code == SESSIONID_MISMATCH
    rp.connect()  # Reconnect
    assert rp.state == RunspacePoolState.OPENED and rp.shell._get_shell()["State"] == "Connected"
    assert ps.connect() == ["before", "after"]  # Connect with the CommandId, then Receive
    assert run(rp, "Write-Output again").output == ["again"]
    assert rp.is_alive()
    rp.close()


def test_connect_from_a_new_client(http_peer: Peer) -> None:
    a = RunspacePool(http_peer.wsman())
    a.open()
    ps = PowerShell(a)
    ps.add_script("Write-Output one; Start-Sleep -Milliseconds 200; Write-Output two")
    ps.begin_invoke()
    a.disconnect()
    # Bob's shells are his own: he sees none of Ada's.
    assert a.id not in [p.id for p in RunspacePool.get_runspace_pools(http_peer.wsman(user=BOB))]
    pools = {p.id: p for p in RunspacePool.get_runspace_pools(http_peer.wsman())}  # Enumerate shells and commands
    b = pools[a.id]
    assert b.state == RunspacePoolState.DISCONNECTED and list(b.pipelines) == [ps.id]
    b.connect()  # Connect with connectXml: SESSION_CAPABILITY + RUNSPACEPOOL_INIT_DATA, then APPLICATION_PRIVATE_DATA
    assert b.application_private_data is not None and b.protocol_version == "2.3"
    assert str(b.application_private_data.data["PSVersionTable"]["PSEdition"]) == "Core"
    with pytest.raises(WSManFaultError) as e:  # the shell is now held by b
        pools2 = {p.id: p for p in RunspacePool.get_runspace_pools(http_peer.wsman())}
        pools2[a.id].connect()
    assert e.value.code == CONNECTED_ELSEWHERE
    (pipeline,) = b.create_disconnected_power_shells()
    assert pipeline.connect() == ["one", "two"]
    assert prop(run(b, "Get-Process -Id 4").output[0], "ProcessName") == "System"
    b.close()
    assert a.id not in [p.id for p in RunspacePool.get_runspace_pools(http_peer.wsman())]


def test_idle_timeout_deletes_a_disconnected_shell(http_peer: Peer) -> None:
    rp = RunspacePool(http_peer.wsman(), idle_timeout=1)
    rp.open()
    assert rp.shell.idle_time_out == "PT1.000S"
    rp.disconnect()
    deadline = time.monotonic() + 10
    while rp.id in [p.id for p in RunspacePool.get_runspace_pools(http_peer.wsman())]:
        assert time.monotonic() < deadline, "the shell outlived its idle timeout"
        time.sleep(0.2)
    with pytest.raises(WSManFaultError) as e:
        rp.connect()
    assert e.value.code == UNEXPECTED_SELECTORS and "the shell was not found on the server" in str(e.value)


def disconnect_with(rp: RunspacePool, **items: str) -> None:
    """pypsrp sends an empty <rsp:Disconnect/>; MS-PSRP's optional items (IdleTimeOut, BufferMode) by hand."""
    element = ET.Element(f"{{{RSP}}}Disconnect")
    for name, value in items.items():
        ET.SubElement(element, f"{{{RSP}}}{name}").text = value
    selectors = SelectorSet()
    selectors.add_option("ShellId", rp.shell.id)
    rp.connection.disconnect(rp.shell.resource_uri, element, selector_set=selectors)
    rp.state = RunspacePoolState.DISCONNECTED
    for ps in rp.pipelines.values():
        ps.state = PSInvocationState.DISCONNECTED


@pytest.mark.parametrize("mode", ["Block", "Drop"])
def test_buffer_modes_while_disconnected(tmp_path: Path, mode: str) -> None:
    with Peer(tmp_path, "--buffer-bytes", "20000") as peer:
        rp = RunspacePool(peer.wsman())
        rp.open()
        ps = PowerShell(rp)
        ps.add_script("Get-Objects -Count 600")  # ~200 KiB of output; the buffer holds ~20 KB
        ps.begin_invoke()
        disconnect_with(rp, BufferMode=mode, IdleTimeOut="PT60S")
        shell = rp.shell._get_shell()
        assert (shell["BufferMode"], shell["IdleTimeOut"]) == (mode, "PT60.000S")
        if mode == "Drop":
            # A disconnected pipeline in Drop mode runs on and discards its oldest output: wait for it to finish.
            deadline = time.monotonic() + 10
            while f"command {ps._command_id} finished" not in peer.log.read_text():
                assert time.monotonic() < deadline, "the pipeline did not finish while disconnected"
                time.sleep(0.1)
        rp.connect()
        out = [index(o) for o in ps.connect()]
        assert ps.state == PSInvocationState.COMPLETED
        if mode == "Block":
            assert out == list(range(600)), "Block: the pipeline waited, nothing lost"
        else:
            assert out[-1] == 599 and out[0] > 0 and out == sorted(out) and len(out) < 600, "Drop: the oldest are lost"
        rp.close()


def test_quota_faults(tmp_path: Path) -> None:
    args = ["--max-shells-per-user", "1", "--max-concurrent-users", "1", "--max-concurrent-operations-per-user", "2"]
    with Peer(tmp_path, *args) as peer:
        with RunspacePool(peer.wsman()) as rp:
            faults = {}
            for user in (ADA, BOB):
                with pytest.raises(WSManFaultError) as e:
                    RunspacePool(peer.wsman(user=user)).open()
                faults[user[0]] = e.value
            ps = PowerShell(rp)
            ps.add_script("Test-Long -Seconds 30")
            ps.begin_invoke()  # the shell and a running pipeline: two operations
            with pytest.raises(WSManFaultError) as e:
                run(rp, "Write-Output over-quota")
            faults["operations"] = e.value
            ps.stop()
        got = {k: (QUOTAS.get(v.code), v.reason) for k, v in faults.items()}
        assert got[ADA[0]] == ("MaxShellsPerUser", "The WS-Management service cannot process the request. This user is "
                               "allowed a maximum number of 1 concurrent shells, which has been exceeded. Close existing "
                               "shells or raise the quota for this user.")
        assert got[BOB[0]][0] == "MaxConcurrentUsers" and "maximum number of users" in got[BOB[0]][1]
        assert got["operations"] == ("MaxConcurrentOperationsPerUser", "The WS-Management service cannot process the "
                                     "request. This user is allowed a maximum number of 2 concurrent operations, which "
                                     "has been exceeded. Close existing operations for this user, or raise the quota for "
                                     "this user.")


# -- authentication ---------------------------------------------------------------------------------------------------


def test_wrong_passwords_are_401(http_peer: Peer, https_peer: Peer) -> None:
    for peer, auth in ((http_peer, "ntlm"), (https_peer, "ntlm"), (https_peer, "basic")):
        with pytest.raises(AuthenticationError):
            RunspacePool(peer.wsman(user=(ADA[0], "wrong"), auth=auth)).open()
    with pytest.raises(AuthenticationError):  # an unknown user
        RunspacePool(http_peer.wsman(user=("PSGATE\\eve", "x"))).open()


def test_unencrypted_http_is_refused(http_peer: Peer, tmp_path: Path) -> None:
    for auth in ("ntlm", "basic"):
        with pytest.raises(AuthenticationError):
            RunspacePool(http_peer.wsman(auth=auth, encryption="never")).open()
    with Peer(tmp_path, "--allow-unencrypted") as peer:  # AllowUnencrypted=true: Basic over plain HTTP
        with RunspacePool(peer.wsman(auth="basic", encryption="never")) as rp:
            assert run(rp, "Write-Output plain").output == ["plain"]


def test_one_ntlm_handshake_per_connection(http_peer: Peer) -> None:
    # Authentication belongs to the TCP connection: a pool's requests (and the encryption) ride on one handshake.
    before = http_peer.log.read_text().count("NTLM: PSGATE\\ada authenticated")
    with RunspacePool(http_peer.wsman()) as rp:
        for i in range(3):
            assert run(rp, f"Write-Output {i}").output == [i]
    assert http_peer.log.read_text().count("NTLM: PSGATE\\ada authenticated") == before + 1


def test_https_channel_binding(https_peer: Peer, monkeypatch: pytest.MonkeyPatch) -> None:
    # pypsrp binds NTLM to the certificate (tls-server-end-point); without a binding Relaxed hardening accepts it.
    with RunspacePool(https_peer.wsman(negotiate_send_cbt=False)) as rp:
        assert run(rp, "Write-Output unbound").output == ["unbound"]
    from pypsrp.negotiate import HTTPNegotiateAuth

    monkeypatch.setattr(HTTPNegotiateAuth, "_get_certificate_hash", staticmethod(lambda der: b"\x01" * 32))
    with pytest.raises(AuthenticationError):
        RunspacePool(https_peer.wsman()).open()


# -- the same shapes as the recorded Windows responses ----------------------------------------------------------------


def skeleton(element: ET.Element) -> str:
    """Element names (namespace URI + local name) and attribute names, recursively; repeated siblings once."""
    children: typing.List[str] = []
    for child in element:
        s = skeleton(child)
        if not children or children[-1] != s:
            children.append(s)
    attrs = ",".join(sorted(a for a in element.attrib))
    return f"<{element.tag}[{attrs}]>" + "".join(children) + "</>"


def kind(root: ET.Element) -> str:
    action = root.findtext("s:Header/{http://schemas.xmlsoap.org/ws/2004/08/addressing}Action", "", NAMESPACES)
    name = action.rsplit("/", 1)[-1]
    if name == "fault":
        code = root.find(".//{http://schemas.microsoft.com/wbem/wsman/1/wsmanfault}WSManFault")
        return f"fault {code.get('Code') if code is not None else '?'}"
    return name


def recorded_shapes() -> typing.Dict[str, typing.Set[str]]:
    shapes: typing.Dict[str, typing.Set[str]] = {}
    for path in sorted(FIXTURES.glob("*.yml")):
        for exchange in yaml.safe_load(path.read_text(encoding="utf-8"))["messages"]:
            if exchange.get("response"):
                root = ET.fromstring(exchange["response"])
                shapes.setdefault(kind(root), set()).add(skeleton(root))
    return shapes


def test_responses_have_the_recorded_shapes(https_peer: Peer, monkeypatch: pytest.MonkeyPatch) -> None:
    from pypsrp import wsman as pypsrp_wsman

    ours: typing.List[ET.Element] = []
    original = pypsrp_wsman._TransportHTTP._send_request

    def recording(self: typing.Any, request: typing.Any, timeout: typing.Any = None) -> bytes:
        try:
            content = original(self, request, timeout=timeout)
        except WinRMTransportError as e:
            ours.append(ET.fromstring(e.response_text))
            raise
        if content:
            ours.append(ET.fromstring(content))
        return content

    monkeypatch.setattr(pypsrp_wsman._TransportHTTP, "_send_request", recording)
    w = https_peer.wsman(auth="basic")
    w.update_max_payload_size()
    rp = RunspacePool(w, host=host())
    rp.open()
    run(rp, "Write-Output a; Write-Warning w")
    run(rp, "Read-Host")  # a host call: CommandState Pending
    run(rp, "Measure-Input", input=[1, 2])  # Send
    ps = PowerShell(rp)
    ps.add_script("Start-Sleep -Seconds 5")
    ps.begin_invoke()
    with pytest.raises(WSManFaultError):
        rp.shell.receive("stdout", command_id=ps._command_id, timeout=1)  # the TimedOut fault
    ps.stop()
    rp.shell._get_shell()
    rp.disconnect()
    rp.connect()
    rp.disconnect()
    b = {p.id: p for p in RunspacePool.get_runspace_pools(https_peer.wsman(auth="basic"))}[rp.id]
    b.connect()
    b.close()
    with pytest.raises(WSManFaultError):
        rp.shell._get_shell()  # a Get of a shell that is gone
    windows = recorded_shapes()
    compared = set()
    for root in ours:
        k = kind(root)
        if k not in windows or root.find(f".//{{{RSP}}}CommandId/..") is not None and k == "EnumerateResponse":
            continue  # no recording has an Enumerate of commands with items (their shape is the peer's guess)
        compared.add(k)
        assert skeleton(root) in windows[k], f"{k} has a shape Windows never sent:\n{ET.tostring(root)[:3000]!r}"
    assert {"CreateResponse", "ReceiveResponse", "CommandResponse", "SendResponse", "SignalResponse", "DeleteResponse",
            "DisconnectResponse", "ReconnectResponse", "ConnectResponse", "EnumerateResponse", "GetResponse",
            f"fault {TIMED_OUT}", f"fault {UNEXPECTED_SELECTORS}"} <= compared
