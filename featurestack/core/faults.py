"""Fault points: the steps at which the fault tests kill a real process (tests/integration/
test_faults.py, docs/faults.md), as fail points do in databases.

:func:`fault_point` costs one dictionary lookup and does nothing unless the environment
variable ``FEATURESTACK_FAULT`` names the point: ``name`` (the first time it is reached) or
``name:N`` (the N-th time). Then the process writes ``<FEATURESTACK_FAULT_DIR>/<name>.reached``
(holding its pid; written whole by a rename) and stops there, waiting for the test watching for
that file to kill it with ``SIGKILL``. A process nobody kills within
``FEATURESTACK_FAULT_WAIT_S`` seconds (default 120) kills itself the same way, so a test that
died leaves no process waiting. Imports nothing of ours.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

ENV = "FEATURESTACK_FAULT"
DIR_ENV = "FEATURESTACK_FAULT_DIR"
WAIT_ENV = "FEATURESTACK_FAULT_WAIT_S"

_reached: dict[str, int] = {}


def fault_point(name: str) -> None:
    """Stop here to be killed when ``FEATURESTACK_FAULT`` names this point (see above)."""
    wanted = os.environ.get(ENV)
    if not wanted or not wanted.startswith(name):
        return
    point, _, nth = wanted.partition(":")
    if point != name:
        return
    _reached[name] = _reached.get(name, 0) + 1
    if _reached[name] != (int(nth) if nth else 1):
        return
    folder = Path(os.environ.get(DIR_ENV) or ".")
    folder.mkdir(parents=True, exist_ok=True)
    marker = folder / f"{name}.reached"
    tmp = folder / f".{name}.{os.getpid()}.tmp"
    tmp.write_text(str(os.getpid()))
    tmp.replace(marker)
    deadline = time.monotonic() + float(os.environ.get(WAIT_ENV) or 120)
    while time.monotonic() < deadline:
        time.sleep(0.05)
    os.kill(os.getpid(), signal.SIGKILL)
