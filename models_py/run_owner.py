"""Runs whose process died: a training killed after its MLflow run started (SIGKILL, the
machine going down) leaves that run RUNNING for ever, and MLflow has no way to tell it from a
run still going. Each training run is tagged with its owner (host and pid, :func:`owner_tags`);
the next training on the same host marks the runs whose owner is gone KILLED
(:func:`close_dead_runs`), with a tag saying why, so the experiment lists no phantom run and
nothing later mistakes one for a live training. The registry never held anything of such a
run: versions are registered at its end.
"""

from __future__ import annotations

import os
import socket
from typing import Any

HOST_TAG = "featurestack.host"
PID_TAG = "featurestack.pid"
REASON_TAG = "featurestack.terminated_reason"


def owner_tags() -> dict[str, str]:
    return {HOST_TAG: socket.gethostname(), PID_TAG: str(os.getpid())}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def close_dead_runs(client: Any, experiment_id: str) -> list[str]:
    """Mark KILLED the RUNNING runs of ``experiment_id`` started on this host by a process
    that no longer exists; return their ids."""
    host = socket.gethostname()
    runs = client.search_runs(
        [experiment_id],
        filter_string=f"attributes.status = 'RUNNING' and tags.`{HOST_TAG}` = '{host}'",
        max_results=1000,
    )
    closed = []
    for run in runs:
        pid = run.data.tags.get(PID_TAG, "")
        if pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
            client.set_tag(
                run.info.run_id,
                REASON_TAG,
                f"its process {pid} on {host} died before the run ended; nothing of it was "
                "registered",
            )
            client.set_terminated(run.info.run_id, status="KILLED")
            closed.append(run.info.run_id)
    return closed
