"""psgate's engine and psrpcore's client get the same objects from the same scripts on the same test host.

psgate side: `psgate invoke --local --command <host> --json -c SCRIPT` (the Rust engine, the session actor, the
out-of-process framing); psrpcore side: its client role through client.py. Both outputs are compared in the
canonical JSON shape of tests/psrpcore/canon.py, whose normalisations are the only ones allowed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(REPO / "tests" / "psrpcore"))

import canon  # noqa: E402
from client import Session  # noqa: E402

PSGATE_BIN = Path(os.environ.get("PSGATE_BIN", REPO / "target" / "debug" / "psgate"))
HOST = [sys.executable, str(HERE / "psrp_host.py")]

# Deterministic scripts (Get-Date is not: it is compared by type in the Rust tests).
SCRIPTS = [
    "Get-Process",
    "Get-Process -Name svchost",
    "Get-Objects -Count 25",
    "Get-Objects -Count 3 -Size large",
    "Write-Output hello; Write-Output 42",
    "$PSVersionTable",
    "Measure-Input",
]


def psgate_objects(script: str) -> list:
    if not PSGATE_BIN.is_file():
        pytest.fail(f"{PSGATE_BIN} is missing: cargo build -p psgate-relay, or set PSGATE_BIN")
    command = " ".join(f'"{a}"' for a in HOST)
    done = subprocess.run([str(PSGATE_BIN), "invoke", "--local", "--command", command, "--json", "-c", script],
                          capture_output=True, timeout=120)
    assert done.returncode == 0, done.stderr.decode()
    lines = [json.loads(line) for line in done.stdout.decode().splitlines() if line.strip()]
    return [canon.normalise(v) for v in canon.expand_refs(lines)]


def psrpcore_objects(script: str) -> list:
    with Session.spawn(HOST) as s:
        s.open()
        # As in tests/psrpcore: psrpcore reads output with its type registry emptied, so that no object
        # becomes one of its Python classes and every type name comes back as the server wrote it.
        with canon.generic_types():
            result = s.run(script)
        return [canon.normalise(canon.canon(v)) for v in result.output]


@pytest.mark.parametrize("script", SCRIPTS)
def test_same_objects_from_the_same_script(script: str) -> None:
    ours = psgate_objects(script)
    theirs = psrpcore_objects(script)
    assert len(ours) == len(theirs), f"{script}: {len(ours)} objects from psgate, {len(theirs)} from psrpcore"
    assert ours, f"{script} produced nothing"
    for i, (a, b) in enumerate(zip(ours, theirs)):
        assert canon.same(a, b), f"{script}: object {i} differs\npsgate:   {json.dumps(a)[:2000]}\npsrpcore: {json.dumps(b)[:2000]}"
