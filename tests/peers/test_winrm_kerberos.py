"""Kerberos for real: the WS-Management peer (winrm_host.py --auth kerberos) against a real MIT KDC (kdc.py), driven
by pypsrp 0.9.1 with pyspnego's GSSAPI initiator (python-gssapi over MIT krb5).

The KDC runs on a free loopback port with the realm PSGATE.TEST; the peer gets its keytab (HTTP/, WSMAN/ and host/
for localhost and 127.0.0.1). Kerberos with a password (pyspnego's gss_acquire_cred_with_password) and from a
ticket cache that kinit filled, raw (auth="kerberos") and inside SPNEGO (auth="negotiate"), over HTTP with MS-WSMV
message encryption and over HTTPS with the channel binding checked (and required under --cbt-hardening Strict); NTLM
on the same peer still works, and a peer without Kerberos refuses it.

Run: `$PSGATE_PYTHON -m pytest tests/peers/test_winrm_kerberos.py -q` (needs `scripts/setup.sh --test`: krb5-kdc,
krb5-admin-server, krb5-user, python-gssapi and krb5 in the venv; without them the tests fail and say what is missing).
"""

from __future__ import annotations

import os
import re
import select
import subprocess
import sys
import time
import typing
from pathlib import Path

import pytest

from pypsrp.exceptions import AuthenticationError  # noqa: E402
from pypsrp.powershell import PowerShell, RunspacePool  # noqa: E402
from pypsrp.wsman import WSMan  # noqa: E402

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from kdc import Kdc  # noqa: E402

PASSWORD = "Krb-Ada-Py-3f9e"
NTLM = ("PSGATE\\ada", "Ntlm-Ada-Py-7a21")


class Peer:
    """winrm_host.py with the KDC's keytab, on a free loopback port."""

    def __init__(self, kdc: Kdc, tmp: Path, auth: str, tls: bool = False, cbt_hardening: str = "Relaxed") -> None:
        self.log = tmp / f"winrm_host-{time.monotonic_ns()}.log"
        argv = [sys.executable, str(HERE / "winrm_host.py"), "--port", "0", "--auth", auth, "--log", str(self.log),
                "--user", f"{NTLM[0]}:{NTLM[1]}", "--keytab", kdc.keytab, "--krb5-config", kdc.krb5_config,
                "--cbt-hardening", cbt_hardening]
        argv += ["--tls"] if tls else []
        self.tls = tls
        with open(self.log.with_suffix(".stderr"), "w") as err:
            self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=err, text=True)
        deadline = time.monotonic() + 30
        line = ""
        while time.monotonic() < deadline and self.proc.poll() is None:
            ready, _, _ = select.select([self.proc.stdout], [], [], 0.2)
            if ready:
                line = self.proc.stdout.readline()  # type: ignore[union-attr]
                break
        m = re.search(r"listening on https?://127\.0\.0\.1:(\d+)/wsman", line)
        if not m:
            self.stop()
            raise RuntimeError(f"winrm_host did not start: {line!r} {self.log.with_suffix('.stderr').read_text()}")
        self.port = int(m.group(1))

    def wsman(self, user: typing.Optional[str], password: typing.Optional[str], auth: str, **kw: typing.Any) -> WSMan:
        if self.tls:
            kw.setdefault("cert_validation", False)
        else:
            kw.setdefault("encryption", "always")
        return WSMan("127.0.0.1", port=self.port, username=user, password=password, ssl=self.tls, auth=auth,
                     operation_timeout=10, **kw)

    def authenticated(self, who: str) -> int:
        return self.log.read_text().count(f"{who} authenticated")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


@pytest.fixture(scope="module")
def kdc() -> typing.Iterator[Kdc]:
    with Kdc(password=PASSWORD) as kdc:
        yield kdc


@pytest.fixture(autouse=True)
def krb5_env(kdc: Kdc, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """This process's libkrb5 (pyspnego's initiator) reads the test realm's krb5.conf and a ticket cache of its own."""
    ccache = tmp_path / "krb5cc"
    monkeypatch.setenv("KRB5_CONFIG", kdc.krb5_config)
    monkeypatch.setenv("KRB5CCNAME", f"FILE:{ccache}")
    return ccache


@pytest.fixture(scope="module")
def peers(kdc: Kdc, tmp_path_factory: pytest.TempPathFactory) -> typing.Iterator[typing.Dict[str, Peer]]:
    tmp = tmp_path_factory.mktemp("winrm-krb")
    made = {"http": Peer(kdc, tmp, "kerberos,ntlm"), "https": Peer(kdc, tmp, "kerberos,ntlm", tls=True)}
    try:
        yield made
    finally:
        for peer in made.values():
            peer.stop()


def run(wsman: WSMan, script: str) -> typing.List[typing.Any]:
    with RunspacePool(wsman) as rp:
        ps = PowerShell(rp)
        ps.add_script(script)
        ps.invoke()
        assert not ps.had_errors
        return ps.output


@pytest.mark.parametrize("transport", ["http", "https"])
@pytest.mark.parametrize("auth", ["kerberos", "negotiate"])
def test_kerberos_with_a_password(peers: typing.Dict[str, Peer], kdc: Kdc, transport: str, auth: str) -> None:
    peer = peers[transport]
    before = peer.authenticated(f"Kerberos: {kdc.user}")
    # A host name: SPNEGO initiators use Kerberos for host-based names (the keytab also holds 127.0.0.1's services).
    wsman = peer.wsman(kdc.user, PASSWORD, auth, negotiate_hostname_override="localhost")
    assert run(wsman, f"Write-Output {auth}-{transport}") == [f"{auth}-{transport}"]
    assert peer.authenticated(f"Kerberos: {kdc.user}") == before + 1


@pytest.mark.parametrize("transport", ["http", "https"])
def test_kerberos_from_a_ticket_cache(peers: typing.Dict[str, Peer], kdc: Kdc, krb5_env: Path, transport: str) -> None:
    kdc.kinit(str(krb5_env))
    peer = peers[transport]
    before = peer.authenticated(f"Kerberos: {kdc.user}")
    # No user name and no password: pyspnego uses the default credential, the ticket cache KRB5CCNAME names.
    assert run(peer.wsman(None, None, "kerberos"), "Write-Output cached") == ["cached"]
    assert peer.authenticated(f"Kerberos: {kdc.user}") == before + 1


def test_a_wrong_binding_is_refused(peers: typing.Dict[str, Peer], kdc: Kdc, monkeypatch: pytest.MonkeyPatch) -> None:
    # pypsrp binds Kerberos to the certificate (tls-server-end-point); without a binding MIT's acceptor lets it in (as
    # Windows' Relaxed level does), a wrong one it refuses.
    peer = peers["https"]
    assert run(peer.wsman(kdc.user, PASSWORD, "kerberos", negotiate_send_cbt=False), "Write-Output unbound") == ["unbound"]
    from pypsrp.negotiate import HTTPNegotiateAuth

    monkeypatch.setattr(HTTPNegotiateAuth, "_get_certificate_hash", staticmethod(lambda der: b"\x01" * 32))
    with pytest.raises(AuthenticationError):
        RunspacePool(peer.wsman(kdc.user, PASSWORD, "kerberos")).open()
    assert "channel binding" in peer.log.read_text().lower()


def test_strict_hardening_requires_the_kerberos_binding(kdc: Kdc, tmp_path: Path) -> None:
    # MIT's acceptor lets an authenticator without a binding through; under --cbt-hardening Strict the peer refuses it
    # too (it reads GSS_C_CHANNEL_BOUND_FLAG), as Windows' Strict level does. pypsrp binds Kerberos, raw and in SPNEGO.
    peer = Peer(kdc, tmp_path, "kerberos", tls=True, cbt_hardening="Strict")
    try:
        for auth in ("kerberos", "negotiate"):
            wsman = peer.wsman(kdc.user, PASSWORD, auth, negotiate_hostname_override="localhost")
            assert run(wsman, f"Write-Output {auth}") == [auth]
        assert peer.log.read_text().count(f"Kerberos: {kdc.user} authenticated (channel-bound)") == 2
        with pytest.raises(AuthenticationError):
            RunspacePool(peer.wsman(kdc.user, PASSWORD, "kerberos", negotiate_send_cbt=False)).open()
        assert f"{kdc.user} sent no channel binding (CbtHardeningLevel=Strict)" in peer.log.read_text()
        assert peer.authenticated(f"Kerberos: {kdc.user}") == 2
    finally:
        peer.stop()


def test_ntlm_still_works_beside_kerberos(peers: typing.Dict[str, Peer]) -> None:
    peer = peers["http"]
    before = peer.authenticated(f"NTLM: {NTLM[0]}")
    assert run(peer.wsman(*NTLM, "ntlm"), "Write-Output ntlm") == ["ntlm"]
    assert peer.authenticated(f"NTLM: {NTLM[0]}") == before + 1


def test_a_wrong_password_never_reaches_the_server(peers: typing.Dict[str, Peer], kdc: Kdc) -> None:
    # The KDC refuses the AS exchange (pre-authentication failed): there is no ticket to present.
    with pytest.raises(Exception, match="(?i)pre-?authentication|password"):
        run(peers["http"].wsman(kdc.user, "Not-The-Password-1", "kerberos"), "Write-Output x")


def test_a_peer_without_kerberos_refuses_it(kdc: Kdc, tmp_path: Path) -> None:
    peer = Peer(kdc, tmp_path, "ntlm")
    try:
        with pytest.raises(AuthenticationError):
            run(peer.wsman(kdc.user, PASSWORD, "kerberos"), "Write-Output x")
        assert "kerberos is not enabled" in peer.log.read_text()
        # It offers Negotiate only (no `Kerberos` challenge), and NTLM works as before.
        assert run(peer.wsman(*NTLM, "ntlm"), "Write-Output ntlm") == ["ntlm"]
    finally:
        peer.stop()


def test_the_kdc_stops_with_its_parent(tmp_path: Path) -> None:
    # kdc.py as a command: one JSON line, then it lives until its parent dies (here a shell killed with SIGKILL).
    import json
    import signal

    # `; true` keeps the shell as kdc.py's parent (a lone command would be exec'd in its place).
    shell = subprocess.Popen(["/bin/sh", "-c", f"{sys.executable} {HERE / 'kdc.py'}; true"], stdout=subprocess.PIPE,
                             text=True)
    try:
        ready = json.loads(shell.stdout.readline())  # type: ignore[union-attr]
        assert ready["realm"] == "PSGATE.TEST" and os.path.exists(ready["keytab"])
        assert {"HTTP/localhost@PSGATE.TEST", "WSMAN/127.0.0.1@PSGATE.TEST"} <= set(ready["services"])
    finally:
        os.kill(shell.pid, signal.SIGKILL)  # the shell only: kdc.py must notice by itself
        shell.wait(10)
    deadline = time.monotonic() + 10
    while os.path.exists(ready["dir"]) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not os.path.exists(ready["dir"]), "kdc.py outlived its parent"
