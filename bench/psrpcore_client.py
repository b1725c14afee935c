"""psrpcore's client receiving N objects from the test host over the same transport psgate uses.

    python bench/psrpcore_client.py COUNT SIZE -- ARGV...    → one JSON line: {"objects", "seconds"}

ARGV is the transport command (e.g. `ssh -s … powershell`); the script is `Get-Objects -Count COUNT
-Size SIZE -Fast`. Timing starts when the pipeline is created and ends at its final state.
"""
import json
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "peers"))

from client import Session  # noqa: E402

count, size = int(sys.argv[1]), sys.argv[2]
argv = sys.argv[sys.argv.index("--") + 1:]
with Session.spawn(argv, timeout=600.0) as s:
    s.open()
    start, cpu = time.perf_counter(), time.process_time()
    result = s.run(f"Get-Objects -Count {count} -Size {size} -Fast")
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    print(json.dumps({"objects": len(result.output), "seconds": elapsed, "cpu_seconds": cpu, "state": str(result.state)}), flush=True)
