#!/usr/bin/env python3
"""A real MIT Kerberos KDC on loopback for psgate's tests: a test realm in a temporary folder of its own.

Debian's `krb5-kdc` (krb5kdc, kdb5_util), `krb5-admin-server` (kadmin.local) and `krb5-user` (kinit, klist) — installed
by `scripts/setup.sh --test`. Only the standard library is used, so any python3 runs it.

What it makes, in its folder:
- `krb5.conf`: the realm (default PSGATE.TEST) with its KDC at 127.0.0.1:PORT (TCP and UDP, a free port), no DNS
  lookups, no reverse DNS, `localhost` mapped to the realm. Point KRB5_CONFIG at it.
- `kdc.conf` (KRB5_KDC_PROFILE), the database (`kdb5_util create`), the KDC's log (`kdc.log`).
- A user principal with a password (`ada@PSGATE.TEST`), and the services HTTP/, WSMAN/ and host/<host> for each host
  (default `localhost` and `127.0.0.1`) in one keytab, `http.keytab` (KRB5_KTNAME for the WS-Management peer).

As a context manager (pytest):

    with Kdc(user="ada", password="Secret-1") as kdc:
        env = kdc.env()                      # KRB5_CONFIG, KRB5_KDC_PROFILE, KRB5_KTNAME
        kdc.kinit(ccache)                    # a ticket cache for the user

As a command (Rust tests spawn it): prints one JSON line once the KDC answers on TCP, then stays up until killed
(SIGTERM, SIGINT) or until its parent process dies (it checks every 0.2 s); then it stops the KDC and removes its
folder:

    python3 tests/peers/kdc.py [--realm PSGATE.TEST] [--user ada] [--password PW] [--host localhost --host ...]
    {"realm": "PSGATE.TEST", "kdc": "127.0.0.1:40123", "kdc_port": 40123, "krb5_config": ".../krb5.conf",
     "kdc_conf": ".../kdc.conf", "keytab": ".../http.keytab", "user": "ada@PSGATE.TEST", "password": "...",
     "dir": "...", "services": ["HTTP/localhost@PSGATE.TEST", ...]}

krb5kdc is started with PR_SET_PDEATHSIG, so it dies with the process that started it (this command, or the pytest
process — strictly, with the thread that called `start()`); a missing KDC tool is a `KdcError` naming the packages,
never a silent skip.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import typing

REALM = "PSGATE.TEST"
USER = "ada"
HOSTS = ("localhost", "127.0.0.1")
SERVICES = ("HTTP", "WSMAN", "host")  # host/: what pypsrp asks for unless told (Windows maps HTTP/ to it)
START_TIMEOUT = 20.0
TOOLS = {"krb5kdc": "krb5-kdc", "kdb5_util": "krb5-kdc", "kadmin.local": "krb5-admin-server", "kinit": "krb5-user"}
SEARCH = ("/usr/sbin", "/usr/local/sbin", "/sbin", "/usr/bin", "/usr/local/bin")


class KdcError(RuntimeError):
    pass


def tool(name: str) -> str:
    """The path of an MIT Kerberos program, or a KdcError that says what to install."""
    path = shutil.which(name) or shutil.which(name, path=os.pathsep.join(SEARCH))
    if path is None:
        packages = " ".join(sorted(set(TOOLS.values())))
        raise KdcError(f"{name} not found: the tests need MIT Kerberos (run `bash scripts/setup.sh --test`, or "
                       f"`apt-get install {packages}`)")
    return path


def _die_with_parent() -> None:
    """In the child before exec: SIGKILL when the thread that started it exits (Linux prctl PR_SET_PDEATHSIG)."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL, 0, 0, 0)
    except OSError:
        pass


def _free_port() -> int:
    """A port free for both TCP and UDP on 127.0.0.1 (the KDC binds both)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as t:
            t.bind(("127.0.0.1", 0))
            port = t.getsockname()[1]
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
                try:
                    u.bind(("127.0.0.1", port))
                except OSError:
                    continue
            return port
    raise KdcError("no free port for the KDC")


def _check_name(what: str, value: str) -> str:
    # kadmin.local -q splits its query on white space and quotes: keep test names and passwords plain.
    if not value or any(c.isspace() or c in "\"'\\" for c in value):
        raise KdcError(f"the {what} {value!r} must be non-empty, without spaces, quotes or backslashes")
    return value


class Kdc:
    """An MIT KDC for one test realm; `start()` / `stop()`, or `with Kdc() as kdc:`."""

    def __init__(self, realm: str = REALM, user: str = USER, password: typing.Optional[str] = None,
                 hosts: typing.Sequence[str] = HOSTS, services: typing.Sequence[str] = SERVICES,
                 directory: typing.Optional[str] = None) -> None:
        self.realm = _check_name("realm", realm).upper()
        self.user_name = _check_name("user", user)
        self.password = _check_name("password", password or f"Krb-{secrets.token_hex(8)}")
        self.hosts = [_check_name("host", h) for h in hosts]
        self.services = [_check_name("service", s) for s in services]
        self._own_dir = directory is None
        self.dir = directory or tempfile.mkdtemp(prefix="psgate-kdc-")
        self.krb5_config = os.path.join(self.dir, "krb5.conf")
        self.kdc_conf = os.path.join(self.dir, "kdc.conf")
        self.keytab = os.path.join(self.dir, "http.keytab")
        self.log = os.path.join(self.dir, "kdc.log")
        self.port = 0
        self.proc: typing.Optional[subprocess.Popen] = None

    @property
    def user(self) -> str:
        return f"{self.user_name}@{self.realm}"

    @property
    def kdc(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def principals(self) -> typing.List[str]:
        return [f"{s}/{h}@{self.realm}" for h in self.hosts for s in self.services]

    def env(self, base: typing.Optional[typing.Mapping[str, str]] = None) -> typing.Dict[str, str]:
        """`base` (default os.environ) with KRB5_CONFIG, KRB5_KDC_PROFILE and KRB5_KTNAME pointing here."""
        env = dict(os.environ if base is None else base)
        env.update(KRB5_CONFIG=self.krb5_config, KRB5_KDC_PROFILE=self.kdc_conf, KRB5_KTNAME=f"FILE:{self.keytab}")
        env.pop("KRB5CCNAME", None)
        return env

    # -- set up --------------------------------------------------------------------------------------------------
    def _write_config(self) -> None:
        d, r, p = self.dir, self.realm, self.port
        enctypes = "aes256-cts-hmac-sha1-96 aes128-cts-hmac-sha1-96"
        with open(self.krb5_config, "w", encoding="utf-8") as f:
            f.write(
                "[libdefaults]\n"
                f"    default_realm = {r}\n"
                "    dns_lookup_realm = false\n"
                "    dns_lookup_kdc = false\n"
                "    dns_canonicalize_hostname = false\n"
                "    rdns = false\n"
                "    udp_preference_limit = 1\n"
                "    forwardable = true\n"
                f"    default_tkt_enctypes = {enctypes}\n"
                f"    default_tgs_enctypes = {enctypes}\n"
                f"    permitted_enctypes = {enctypes}\n"
                f"    default_ccache_name = FILE:{d}/krb5cc_default\n"
                f"    default_keytab_name = FILE:{self.keytab}\n"
                "[realms]\n"
                f"    {r} = {{\n"
                f"        kdc = 127.0.0.1:{p}\n"
                "    }\n"
                "[domain_realm]\n"
                + "".join(f"    {h} = {r}\n" for h in self.hosts)
                + f"    .{r.lower()} = {r}\n    {r.lower()} = {r}\n"
                "[logging]\n"
                f"    default = FILE:{d}/krb5lib.log\n"
            )
        with open(self.kdc_conf, "w", encoding="utf-8") as f:
            f.write(
                "[kdcdefaults]\n"
                f"    kdc_listen = 127.0.0.1:{p}\n"
                f"    kdc_tcp_listen = 127.0.0.1:{p}\n"
                "[realms]\n"
                f"    {r} = {{\n"
                f"        database_name = {d}/principal\n"
                f"        key_stash_file = {d}/stash\n"
                f"        acl_file = {d}/kadm5.acl\n"
                f"        kdc_listen = 127.0.0.1:{p}\n"
                f"        kdc_tcp_listen = 127.0.0.1:{p}\n"
                "        max_life = 10h 0m 0s\n"
                "        max_renewable_life = 7d 0h 0m 0s\n"
                "        supported_enctypes = aes256-cts-hmac-sha1-96:normal aes128-cts-hmac-sha1-96:normal\n"
                "        default_principal_flags = +preauth\n"
                "    }\n"
                "[logging]\n"
                f"    kdc = FILE:{self.log}\n"
                f"    admin_server = FILE:{d}/kadmin.log\n"
                f"    default = FILE:{d}/krb5lib.log\n"
            )
        with open(os.path.join(d, "kadm5.acl"), "w", encoding="utf-8") as f:
            f.write("")

    def _run(self, argv: typing.Sequence[str], what: str) -> None:
        done = subprocess.run(argv, env=self.env(), stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)
        if done.returncode != 0:
            raise KdcError(f"{what} failed ({done.returncode}): {done.stderr.strip() or done.stdout.strip()}")

    def _kadmin(self, query: str, what: str) -> None:
        self._run([tool("kadmin.local"), "-r", self.realm, "-q", query], what)

    def _make_database(self) -> None:
        master = secrets.token_hex(16)
        self._run([tool("kdb5_util"), "-r", self.realm, "create", "-s", "-P", master], "kdb5_util create")
        self._kadmin(f"addprinc -pw {self.password} {self.user_name}", f"adding the user {self.user}")
        for principal in self.principals:
            self._kadmin(f"addprinc -randkey {principal}", f"adding {principal}")
        self._kadmin(f"ktadd -k {self.keytab} {' '.join(self.principals)}", "writing the keytab")

    def _serve(self) -> None:
        pidfile = os.path.join(self.dir, "krb5kdc.pid")
        with open(os.path.join(self.dir, "krb5kdc.stderr"), "w") as err:
            self.proc = subprocess.Popen([tool("krb5kdc"), "-n", "-r", self.realm, "-P", pidfile], env=self.env(),
                                         stdin=subprocess.DEVNULL, stdout=err, stderr=err,
                                         preexec_fn=_die_with_parent)
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise KdcError(f"krb5kdc exited ({self.proc.returncode}): {self._tail()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.05)
        raise KdcError(f"krb5kdc did not listen on 127.0.0.1:{self.port} within {START_TIMEOUT} s: {self._tail()}")

    def _tail(self) -> str:
        text = ""
        for name in ("krb5kdc.stderr", "kdc.log"):
            try:
                with open(os.path.join(self.dir, name), encoding="utf-8", errors="replace") as f:
                    text += f.read()[-2000:]
            except OSError:
                pass
        return text.strip()

    def start(self) -> "Kdc":
        for name in TOOLS:
            tool(name)
        try:
            for attempt in range(3):
                self.port = _free_port()
                for name in os.listdir(self.dir):
                    path = os.path.join(self.dir, name)
                    (shutil.rmtree if os.path.isdir(path) else os.unlink)(path)
                self._write_config()
                self._make_database()
                try:
                    self._serve()
                    return self
                except KdcError:
                    self._stop_kdc()
                    if attempt == 2:
                        raise
        except BaseException:
            self.stop()
            raise
        return self

    # -- use -----------------------------------------------------------------------------------------------------
    def kinit(self, ccache: str, password: typing.Optional[str] = None) -> None:
        """`kinit` as the user into `ccache` (a path, or a `TYPE:residual` name)."""
        name = ccache if ":" in ccache else f"FILE:{ccache}"
        env = self.env()
        env["KRB5CCNAME"] = name
        done = subprocess.run([tool("kinit"), self.user], env=env, input=(password or self.password) + "\n",
                              capture_output=True, text=True, timeout=60)
        if done.returncode != 0:
            raise KdcError(f"kinit {self.user} failed: {done.stderr.strip()}")

    def ready_line(self) -> str:
        return json.dumps({
            "realm": self.realm, "kdc": self.kdc, "kdc_port": self.port, "krb5_config": self.krb5_config,
            "kdc_conf": self.kdc_conf, "keytab": self.keytab, "user": self.user, "password": self.password,
            "dir": self.dir, "services": self.principals,
        })

    # -- tear down -----------------------------------------------------------------------------------------------
    def _stop_kdc(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None

    def stop(self) -> None:
        self._stop_kdc()
        if self._own_dir:
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> "Kdc":
        return self.start()

    def __exit__(self, *exc: typing.Any) -> None:
        self.stop()


def main(argv: typing.Optional[typing.Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(description="an MIT Kerberos KDC on 127.0.0.1 with a test realm (psgate's tests)")
    p.add_argument("--realm", default=REALM, help=f"the realm (default {REALM})")
    p.add_argument("--user", default=USER, help=f"the user principal's name (default {USER})")
    p.add_argument("--password", help="the user's password (default a random one, in the ready line)")
    p.add_argument("--host", action="append", help="a host of the HTTP/ and WSMAN/ services (repeatable; default "
                                                    + " and ".join(HOSTS) + ")")
    args = p.parse_args(argv)
    parent = os.getppid()
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    signal.signal(signal.SIGINT, lambda *_: stop.append(1))
    signal.signal(signal.SIGHUP, lambda *_: stop.append(1))
    kdc = Kdc(realm=args.realm, user=args.user, password=args.password, hosts=args.host or HOSTS)
    try:
        kdc.start()
    except KdcError as e:
        sys.stderr.write(f"kdc.py: {e}\n")
        return 2
    try:
        print(kdc.ready_line(), flush=True)
        while not stop and os.getppid() == parent:
            if kdc.proc is None or kdc.proc.poll() is not None:
                sys.stderr.write(f"kdc.py: krb5kdc exited: {kdc._tail()}\n")
                return 1
            time.sleep(0.2)
    finally:
        kdc.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
