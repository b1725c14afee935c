"""Runs in devious-pypsrp's own virtual environment ($PSGATE_TOOLS/venv-pypsrp): pypsrp 1.0's `psrp` client, an
independent PSRP client with an SSH transport (asyncssh), connects to the test host through a real sshd and runs a
few commands. Prints one JSON document with what it saw; test_peer.py checks it.

    venv-pypsrp/bin/python pypsrp_check.py '<SshdInfo JSON>' [key|password]
"""

import asyncio
import json
import sys

import asyncssh
import psrp
from psrpcore.types import PSCredential, PSSecureString


class UI(psrp.PSHostUI):
    def __init__(self) -> None:
        super().__init__()
        self.calls = []

    def read_line(self) -> str:
        self.calls.append("ReadLine")
        return "typed by pypsrp"

    def prompt_for_credential(self, caption, message, username=None, *args, **kwargs):  # type: ignore[no-untyped-def]
        # (pypsrp 1.0 calls this with target=…, not the target_name=… of its own PSHostUI signature.)
        # A SecureString in a host reply: pypsrp must run the key exchange (PUBLIC_KEY) first.
        self.calls.append("PromptForCredential")
        return PSCredential(UserName=username or "nobody", Password=PSSecureString("pypsrp-secret"))

    def write_progress(self, source_id, record) -> None:  # type: ignore[no-untyped-def]
        self.calls.append("WriteProgress")


def plain(value):
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return {"type_names": list(value.PSTypeNames), "str": str(value),
            "props": {k: str(getattr(value, k, None)) for k in ("Name", "Id", "ProcessName", "CPU") if hasattr(value, k)}}


async def main(info: dict, auth: str) -> dict:
    if auth == "password":
        opts = asyncssh.SSHClientConnectionOptions(username=info["user"], password=info["password"], client_keys=None,
                                                   known_hosts=info["known_hosts"])
    else:
        opts = asyncssh.SSHClientConnectionOptions(username=info["user"], client_keys=[info["key_ed25519"]],
                                                   known_hosts=info["known_hosts"])
    ui = UI()
    report: dict = {"runs": {}}
    async with psrp.AsyncRunspacePool(psrp.SSHInfo(info["host"], port=info["port"], options=opts), host=psrp.PSHost(ui=ui)) as rp:
        report["psversion"] = str(rp.application_private_data["PSVersionTable"]["PSVersion"])
        for script in ["Get-Date", "Get-Process -Name svchost", "Write-Error 'pypsrp error'", "Read-Host",
                       "Write-Progress -Activity Act -Status Stat -PercentComplete 40", "throw 'pypsrp throw'",
                       "Get-Credential -UserName bob"]:
            ps = psrp.AsyncPowerShell(rp)
            ps.add_script(script)
            entry: dict = {}
            try:
                out = await ps.invoke()
                entry["output"] = [plain(o) for o in out]
            except psrp.PipelineFailed as e:
                entry["failed"] = str(e)
            except Exception as e:  # noqa: BLE001 - reported to the test
                entry["exception"] = f"{type(e).__name__}: {e}"
            entry["state"] = ps.state.name
            entry["errors"] = [str(e) for e in ps.streams.error]
            entry["progress"] = [{"activity": r.Activity, "status": r.StatusDescription, "percent": r.PercentComplete}
                                 for r in ps.streams.progress]
            report["runs"][script] = entry
        meta = psrp.AsyncCommandMetaPipeline(rp, name="*-ADUser")
        report["metadata"] = [getattr(o, "Name", None) for o in await meta.invoke()]
    report["host_calls"] = ui.calls
    return report


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main(json.loads(sys.argv[1]), sys.argv[2] if len(sys.argv) > 2 else "key"))))
