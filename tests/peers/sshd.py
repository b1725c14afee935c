#!/usr/bin/env python3
"""A real OpenSSH sshd on loopback whose `powershell` subsystem is psgate's PSRP test host (psrp_host.py).

Run as root (CI is). Everything it needs is installed on first use, idempotently: Debian's openssh-server, the test
user `psgate-test` (password PASSWORD, authorized ed25519 and RSA client keys) and psrpcore for /usr/bin/python3
(`pip install --target`, because the test user cannot execute a Python that lives under /root).

    with Sshd() as info:            # or Sshd(subsystem=False) for a server without the powershell subsystem
        subprocess.run(info.ssh_argv() + ["powershell"])  # ssh -s … psgate-test@127.0.0.1 powershell

`Sshd(jea_subsystem=True)` adds a second subsystem, `powershell-jea`: the same host in NoLanguage mode
(PSRP_HOST_LANGUAGE=NoLanguage, a JEA-like RestrictedRemoteServer session; `jea_visible_commands` sets
PSRP_HOST_VISIBLE_COMMANDS, else the host's default list; `["+ActiveDirectory"]` adds the AD module's commands to
it, as a JEA role for implicit remoting). Its wrapper sets both variables itself, so a client's
SetEnv cannot lift the restriction. The default server has only `powershell`.

From a shell: `python3 tests/peers/sshd.py [--no-subsystem] [--jea-subsystem] [--port N]` starts one, prints its
details as JSON and stops it on Ctrl-C or when stdin closes.

Each server gets its own folder under $PSGATE_TOOLS/sshd/ (root-owned, 0755: StrictModes refuses anything under a
world-writable folder such as /tmp) with its own host key, sshd_config, known_hosts, a copy of the test host and
its log files. The client keys and the user are shared by all servers (so that servers started by other engineers at
the same time keep working); the password is a constant for the same reason.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import typing

HERE = os.path.dirname(os.path.abspath(__file__))
TOOLS = os.environ.get("PSGATE_TOOLS") or ("/opt/psgate-tools" if os.geteuid() == 0 else os.path.expanduser("~/.cache/psgate-tools"))
PSRPCORE_VERSION = os.environ.get("PSRPCORE_VERSION", "0.3.1")
PEER_SITE = os.path.join(TOOLS, f"peer-site-psrpcore-{PSRPCORE_VERSION}")
KEYS_DIR = os.path.join(TOOLS, "peer-keys")
SSHD = "/usr/sbin/sshd"
SYSTEM_PYTHON = "/usr/bin/python3"
USER = "psgate-test"
PASSWORD = "Psgate-Peer-Pass-1"  # a test account on loopback only; constant so concurrent servers agree
HOST_FILES = ("psrp_host.py", "host_core.py", "clixml_out.py")


def _run(argv: typing.Sequence[str], **kw: typing.Any) -> subprocess.CompletedProcess:
    return subprocess.run(argv, check=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kw)


_lock = threading.Lock()


def ensure_openssh_server() -> None:
    if os.path.exists(SSHD) and shutil.which("ssh-keygen"):
        return
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", "openssh-server"], check=True, env=env)


def ensure_peer_site() -> str:
    """psrpcore for /usr/bin/python3 in a folder every user can read."""
    check = [SYSTEM_PYTHON, "-c", f"import psrpcore, sys, importlib.metadata as m; sys.exit(m.version('psrpcore') != '{PSRPCORE_VERSION}')"]
    env = dict(os.environ, PYTHONPATH=PEER_SITE, PYTHONNOUSERSITE="1")
    if subprocess.run(check, env=env, capture_output=True).returncode != 0:
        tmp = PEER_SITE + ".tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        pip = [sys.executable, "-m", "pip"]
        if subprocess.run(pip + ["--version"], capture_output=True).returncode != 0:
            pip = [SYSTEM_PYTHON, "-m", "pip"]
        _run(pip + ["install", "--quiet", "--disable-pip-version-check", "--no-compile", "--target", tmp, f"psrpcore=={PSRPCORE_VERSION}"])
        shutil.rmtree(PEER_SITE, ignore_errors=True)
        os.rename(tmp, PEER_SITE)
        subprocess.run(check, env=env, check=True)
    _chmod_readable(PEER_SITE)
    return PEER_SITE


def _chmod_readable(path: str) -> None:
    for root, dirs, files in os.walk(path):
        os.chmod(root, 0o755)
        for f in files:
            p = os.path.join(root, f)
            os.chmod(p, os.stat(p).st_mode | 0o444 | (0o111 if os.stat(p).st_mode & 0o100 else 0))
    for parent in _parents(path):
        st = os.stat(parent)
        if not st.st_mode & 0o005:
            raise RuntimeError(f"{parent} is not readable by other users: the test user cannot reach {path}")


def _parents(path: str) -> typing.List[str]:
    out = []
    p = os.path.dirname(path)
    while p and p != "/":
        out.append(p)
        p = os.path.dirname(p)
    return out


def _has_password(password: str) -> bool:
    """Whether USER's password in /etc/shadow is `password` (an account locked or without one: no)."""
    try:
        with open("/etc/shadow", encoding="utf-8") as f:
            hashed = next((line.split(":")[1] for line in f if line.split(":")[0] == USER), "")
    except OSError:
        return False
    if not hashed.startswith("$"):
        return False
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            import crypt  # deprecated, and still in Python 3.11 and 3.12: the system's crypt(3), as sshd uses
        except ImportError:
            return False
    return crypt.crypt(password, hashed) == hashed


def ensure_user() -> pwd.struct_passwd:
    try:
        entry = pwd.getpwnam(USER)
    except KeyError:
        _run(["useradd", "--create-home", "--shell", "/bin/sh", USER])
        entry = pwd.getpwnam(USER)
    if entry.pw_shell.endswith("nologin") or entry.pw_shell.endswith("false"):
        _run(["usermod", "--shell", "/bin/sh", USER])  # sshd runs the subsystem with the user's shell
    # Set only when it is not already PASSWORD: setting it takes two steps, and a server started meanwhile by another
    # test would see the password wrong in between.
    if not _has_password(PASSWORD):
        _run(["usermod", "-p", "*", USER])  # useradd leaves it locked ("!"), which sshd refuses with UsePAM no
        _run(["chpasswd"], input=f"{USER}:{PASSWORD}\n")
    home = entry.pw_dir
    os.makedirs(home, exist_ok=True)
    os.chown(home, entry.pw_uid, entry.pw_gid)
    os.chmod(home, 0o755)
    return pwd.getpwnam(USER)


def ensure_client_keys() -> typing.Dict[str, str]:
    """Client keys (root's, for the ssh client) and the user's authorized_keys holding them."""
    os.makedirs(KEYS_DIR, exist_ok=True)
    os.chmod(KEYS_DIR, 0o700)
    keys = {}
    for kind, extra in (("ed25519", []), ("rsa", ["-b", "3072"])):
        path = os.path.join(KEYS_DIR, f"id_{kind}")
        if not os.path.exists(path) or not os.path.exists(path + ".pub"):
            for p in (path, path + ".pub"):
                if os.path.exists(p):
                    os.remove(p)
            _run(["ssh-keygen", "-q", "-t", kind, *extra, "-N", "", "-C", f"psgate-peer-{kind}", "-f", path])
        os.chmod(path, 0o600)
        keys[kind] = path
    entry = pwd.getpwnam(USER)
    ssh_dir = os.path.join(entry.pw_dir, ".ssh")
    os.makedirs(ssh_dir, exist_ok=True)
    auth = os.path.join(ssh_dir, "authorized_keys")
    present = open(auth).read().splitlines() if os.path.exists(auth) else []
    wanted = [open(k + ".pub").read().strip() for k in keys.values()]
    missing = [w for w in wanted if w not in present]
    if missing:
        with open(auth, "a") as f:
            for w in missing:
                f.write(w + "\n")
    for p, mode in ((ssh_dir, 0o700), (auth, 0o600)):
        os.chown(p, entry.pw_uid, entry.pw_gid)
        os.chmod(p, mode)
    return keys


def _prune(base: str, age: float = 6 * 3600) -> None:
    """Removes the folders of servers started more than `age` seconds ago (their logs are kept that long)."""
    now = time.time()
    for name in os.listdir(base):
        path = os.path.join(base, name)
        try:
            if name.startswith("sshd-") and now - os.stat(path).st_mtime > age:
                shutil.rmtree(path, ignore_errors=True)
        except OSError:
            pass


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM when the process that started sshd dies (no orphan listeners)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclasses.dataclass
class SshdInfo:
    host: str
    port: int
    user: str
    password: str
    key_ed25519: str
    key_rsa: str
    known_hosts: str
    host_key_line: str  # "ssh-ed25519 AAAA…" (known_hosts holds "[127.0.0.1]:PORT " + this)
    subsystem: typing.Optional[str]  # "powershell", or None for the server without it
    dir: str
    sshd_log: str
    host_log_dir: str
    askpass: str  # an SSH_ASKPASS program that prints the password
    jea_subsystem: typing.Optional[str] = None  # "powershell-jea" (the NoLanguage host) when asked for, else None

    def ssh_argv(self, key: typing.Optional[str] = None, password: bool = False, options: typing.Sequence[str] = ()) -> typing.List[str]:
        """`ssh -s` up to (not including) the subsystem name; key defaults to the ed25519 key."""
        argv = [
            "ssh", "-F", "/dev/null", "-s", "-p", str(self.port),
            "-o", "StrictHostKeyChecking=yes", "-o", f"UserKnownHostsFile={self.known_hosts}",
            "-o", "GlobalKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR", "-o", "ConnectTimeout=10",
        ]
        if password:
            argv += ["-o", "PubkeyAuthentication=no", "-o", "PreferredAuthentications=password", "-o", "NumberOfPasswordPrompts=1"]
        else:
            argv += ["-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes", "-o", "PasswordAuthentication=no", "-i", key or self.key_ed25519]
        argv += list(options)
        argv += [f"{self.user}@{self.host}"]
        return argv

    def password_env(self) -> typing.Dict[str, str]:
        """Environment for `ssh … password=True`: OpenSSH reads the password from SSH_ASKPASS, without a terminal."""
        env = dict(os.environ, SSH_ASKPASS=self.askpass, SSH_ASKPASS_REQUIRE="force", DISPLAY=os.environ.get("DISPLAY", ":0"))
        return env

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2)


class Sshd:
    def __init__(self, subsystem: bool = True, password_auth: bool = True, port: typing.Optional[int] = None,
                 host_env: typing.Optional[typing.Dict[str, str]] = None, jea_subsystem: bool = False,
                 jea_visible_commands: typing.Optional[typing.Sequence[str]] = None) -> None:
        self.subsystem = subsystem
        self.jea_subsystem = jea_subsystem
        self.jea_visible_commands = None if jea_visible_commands is None else list(jea_visible_commands)
        self.password_auth = password_auth
        self.port = port
        self.host_env = host_env or {}
        self.proc: typing.Optional[subprocess.Popen] = None
        self.info: typing.Optional[SshdInfo] = None
        self._ready = threading.Event()
        self._log: typing.Optional[typing.IO[str]] = None

    def __enter__(self) -> SshdInfo:
        return self.start()

    def __exit__(self, *exc: typing.Any) -> None:
        self.stop()

    def start(self, timeout: float = 20) -> SshdInfo:
        if os.geteuid() != 0:
            raise PermissionError("sshd.py needs root: sshd must run as root to switch to the test user")
        with _lock:
            ensure_openssh_server()
            site = ensure_peer_site()
            entry = ensure_user()
            keys = ensure_client_keys()
        base = os.path.join(TOOLS, "sshd")
        os.makedirs(base, exist_ok=True)
        os.chmod(base, 0o755)
        _prune(base)
        d = tempfile.mkdtemp(prefix="sshd-", dir=base)
        os.chmod(d, 0o755)
        host_key = os.path.join(d, "ssh_host_ed25519_key")
        _run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "psgate-peer-host", "-f", host_key])
        host_pub = " ".join(open(host_key + ".pub").read().split()[:2])
        for f in HOST_FILES:
            shutil.copy(os.path.join(HERE, f), os.path.join(d, f))
            os.chmod(os.path.join(d, f), 0o644)
        logs = os.path.join(d, "host-logs")
        os.makedirs(logs)
        os.chown(logs, entry.pw_uid, entry.pw_gid)
        os.chmod(logs, 0o755)
        def write_wrapper(name: str, comment: str, extra: typing.List[str]) -> str:
            wrapper = os.path.join(d, name)
            lines = [
                "#!/bin/sh",
                f"# {comment}",
                f"export PYTHONPATH='{site}'",
                "export PYTHONNOUSERSITE=1 PYTHONDONTWRITEBYTECODE=1",
                f': "${{PSRP_HOST_LOG:={logs}/host-$$.log}}"',
                "export PSRP_HOST_LOG",
            ]
            lines += [f"export {k}='{v}'" for k, v in self.host_env.items()]
            lines += extra
            lines += [f"exec {SYSTEM_PYTHON} '{os.path.join(d, 'psrp_host.py')}'", ""]
            with open(wrapper, "w") as f:
                f.write("\n".join(lines))
            os.chmod(wrapper, 0o755)
            return wrapper

        wrapper = write_wrapper("powershell-subsystem", "The powershell subsystem: psgate's PSRP test host under the system Python.", [])
        jea_wrapper = None
        if self.jea_subsystem:
            visible = (["export PSRP_HOST_VISIBLE_COMMANDS='" + ",".join(self.jea_visible_commands) + "'"]
                       if self.jea_visible_commands is not None else ["unset PSRP_HOST_VISIBLE_COMMANDS"])
            jea_wrapper = write_wrapper(
                "powershell-jea-subsystem",
                "The powershell-jea subsystem: the same host as a NoLanguage (RestrictedRemoteServer-like) session.",
                ["export PSRP_HOST_LANGUAGE=NoLanguage"] + visible,
            )
        askpass = os.path.join(d, "askpass")
        with open(askpass, "w") as f:
            f.write(f"#!/bin/sh\necho '{PASSWORD}'\n")
        os.chmod(askpass, 0o700)
        port = self.port or free_port()
        config = os.path.join(d, "sshd_config")
        conf = [
            f"Port {port}",
            "ListenAddress 127.0.0.1",
            f"HostKey {host_key}",
            f"PidFile {os.path.join(d, 'sshd.pid')}",
            "AuthorizedKeysFile .ssh/authorized_keys",
            "PubkeyAuthentication yes",
            f"PasswordAuthentication {'yes' if self.password_auth else 'no'}",
            "KbdInteractiveAuthentication no",
            "PermitRootLogin no",
            "UsePAM no",
            "StrictModes yes",
            f"AllowUsers {USER}",
            "PrintMotd no",
            "X11Forwarding no",
            "AcceptEnv PSRP_HOST_*",
            "MaxStartups 100:30:200",
            "MaxSessions 50",
            "LogLevel VERBOSE",
        ]
        if self.subsystem:
            conf.append(f"Subsystem powershell {wrapper}")
        if jea_wrapper is not None:
            conf.append(f"Subsystem powershell-jea {jea_wrapper}")
        with open(config, "w") as f:
            f.write("\n".join(conf) + "\n")
        os.makedirs("/run/sshd", exist_ok=True)
        _run([SSHD, "-t", "-f", config])
        sshd_log = os.path.join(d, "sshd.log")
        known = os.path.join(d, "known_hosts")
        with open(known, "w") as f:
            f.write(f"[127.0.0.1]:{port} {host_pub}\n")
        self._log = open(sshd_log, "w")
        self.proc = subprocess.Popen([SSHD, "-D", "-e", "-f", config], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, text=True, preexec_fn=_die_with_parent)
        threading.Thread(target=self._watch, daemon=True).start()
        if not self._ready.wait(timeout) or self.proc.poll() is not None:
            self.stop()
            raise RuntimeError(f"sshd did not start: see {sshd_log}: {open(sshd_log).read()[-2000:]}")
        self.info = SshdInfo(
            host="127.0.0.1", port=port, user=USER, password=PASSWORD, key_ed25519=keys["ed25519"], key_rsa=keys["rsa"],
            known_hosts=known, host_key_line=host_pub, subsystem="powershell" if self.subsystem else None, dir=d,
            sshd_log=sshd_log, host_log_dir=logs, askpass=askpass,
            jea_subsystem="powershell-jea" if jea_wrapper is not None else None,
        )
        return self.info

    def _watch(self) -> None:
        assert self.proc is not None and self.proc.stderr is not None and self._log is not None
        for line in self.proc.stderr:
            self._log.write(line)
            self._log.flush()
            if "Server listening on" in line:
                self._ready.set()
        self._ready.set()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        if self._log is not None:
            time.sleep(0)  # the watcher closes with sshd's stderr
            self._log.flush()


def main() -> int:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--no-subsystem", action="store_true", help="no powershell subsystem (a 'missing subsystem' peer)")
    parser.add_argument("--jea-subsystem", action="store_true",
                        help="also a powershell-jea subsystem: the host in NoLanguage mode (PSRP_HOST_LANGUAGE=NoLanguage)")
    parser.add_argument("--jea-visible-commands", metavar="A,B,…",
                        help="with --jea-subsystem: its visible commands (PSRP_HOST_VISIBLE_COMMANDS; default the host's list)")
    parser.add_argument("--no-password", action="store_true", help="keys only")
    parser.add_argument("--port", type=int)
    parser.add_argument("--host-env", action="append", default=[], metavar="NAME=VALUE", help="environment for the test host, e.g. PSRP_HOST_FAST=1")
    args = parser.parse_args()
    env = dict(kv.split("=", 1) for kv in args.host_env)
    visible = None if args.jea_visible_commands is None else [c.strip() for c in args.jea_visible_commands.split(",") if c.strip()]
    server = Sshd(subsystem=not args.no_subsystem, password_auth=not args.no_password, port=args.port, host_env=env,
                  jea_subsystem=args.jea_subsystem, jea_visible_commands=visible)
    info = server.start()
    print(info.to_json(), flush=True)
    print("# try: " + " ".join(info.ssh_argv()) + " powershell", file=sys.stderr, flush=True)
    try:
        signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
        while sys.stdin.read(65536):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
