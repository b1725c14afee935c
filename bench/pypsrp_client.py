"""pypsrp 0.9.1 (the reference WinRM client) against the WS-Management test peer, for `psgate-bench winrm`.

    python bench/pypsrp_client.py open PORT K         → one JSON line: {"open_seconds": [K times]}
    python bench/pypsrp_client.py receive PORT COUNT  → one JSON line: {"objects", "seconds", "cpu_seconds",
                                                        "open_seconds", "checked"}
    python bench/pypsrp_client.py metadata PORT K MODULE → one JSON line: {"commands": [per run], "seconds": [K times],
                                                        "cpu_seconds": [K], "parameters": [per run]}

The user and password come from PSGATE_BENCH_USER and PSGATE_BENCH_PASSWORD. The connection is the one
tests/peers/test_winrm_peer.py proves: HTTP on 127.0.0.1, NTLM, MS-WSMV message encryption always.

open: from making the WSMan object (it connects and authenticates on its first request) until RunspacePool.open()
returns (the pool is Opened); K such opens, each with a new WSMan (a new connection), after one that is not counted
(the first pulls in code and caches); each pool is closed (its shell deleted) outside the clock. receive: `Get-Objects -Count COUNT` (the peer in --fast mode) timed around
PowerShell.invoke() only, which returns once every output object is received and deserialized. Python's start and
imports are outside both clocks.
"""
import json
import os
import sys
import time

from pypsrp.powershell import PowerShell, RunspacePool
from pypsrp.wsman import WSMan


def wsman(port: int) -> WSMan:
    return WSMan(
        "127.0.0.1",
        port=port,
        username=os.environ["PSGATE_BENCH_USER"],
        password=os.environ["PSGATE_BENCH_PASSWORD"],
        ssl=False,
        auth="ntlm",
        encryption="always",
        cert_validation=False,
        path="wsman",
        operation_timeout=20,
    )


def open_pool(port: int):
    start = time.perf_counter()
    pool = RunspacePool(wsman(port))
    pool.open()
    return pool, time.perf_counter() - start


def main() -> None:
    mode, port = sys.argv[1], int(sys.argv[2])
    if mode == "open":
        times = []
        for i in range(int(sys.argv[3]) + 1):
            pool, seconds = open_pool(port)
            pool.close()
            if i > 0:
                times.append(seconds)
        print(json.dumps({"open_seconds": times}), flush=True)
        return
    pool, open_seconds = open_pool(port)
    result = {"open_seconds": open_seconds}
    if mode == "metadata":
        # Implicit remoting's discovery: GET_COMMAND_METADATA for every command of MODULE, timed around
        # RunspacePool.get_command_metadata(), which returns the deserialized CommandMetadata objects. One run first,
        # not counted (it pulls in code and caches).
        runs, module = int(sys.argv[3]), sys.argv[4]
        result.update({"commands": [], "seconds": [], "cpu_seconds": [], "parameters": []})
        for i in range(runs + 1):
            start, cpu = time.perf_counter(), time.process_time()
            found = pool.get_command_metadata("*", namespace=[module])
            elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
            if i > 0:
                result["commands"].append(len(found))
                result["seconds"].append(elapsed)
                result["cpu_seconds"].append(cpu)
                result["parameters"].append(sum(len(c.parameters or {}) for c in found))
    if mode == "receive":
        count = int(sys.argv[3])
        ps = PowerShell(pool)
        ps.add_script(f"Get-Objects -Count {count}")
        start, cpu = time.perf_counter(), time.process_time()
        output = ps.invoke()
        elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
        # Deserialized, not just counted: the peer's fast mode repeats object 0 (Index 0, Name "object 0").
        checked = sum(1 for o in output if o.adapted_properties.get("Name", o.extended_properties.get("Name")) == "object 0")
        result.update({"objects": len(output), "checked": checked, "seconds": elapsed, "cpu_seconds": cpu,
                       "had_errors": bool(ps.had_errors), "state": str(ps.state)})
    pool.close()
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
