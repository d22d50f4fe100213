"""Shadow scoring in a process of its own.

A challenger in shadow scores every request but never answers one. Scored in a thread of the
server, its batches and above all its prediction-log rows (Python work per row) held the
server's GIL, and a request arriving meanwhile waited for it: shadow added 40-50 % to p99 at
concurrency 8 on 2 cores. Now the server only hands each request over::

    request path ─append─▶ pending list ─sender thread: pickle a batch─▶ pipe ─▶ shadow process
    /metrics ◀─receiver thread─ pipe ◀─ (model, version, requests, rows, seconds) per batch ─┘

The shadow process is started with ``spawn`` (the server has threads: a forked copy would
inherit locks they hold), lowers its own priority (``os.nice(19)``) so the kernel runs the
server first, loads the challengers itself through :func:`models_py.serving.load_version` (the
exact versions the server loaded, even if the alias moved since), reads their features from
the online store itself (a separate deployment in spirit: the server sends request ids, times
and entity rows with their request-time values, never features), scores in batches and writes
role ``shadow`` rows, as :func:`models_py.serving.log_row` builds them, through a
:class:`~models_py.prediction_log.PredictionLog` of its own into the same folder (file names
carry the process id).

Nothing on the request path waits for the shadow: the pending list is bounded
(``shadow_queue``); when it is full, or the shadow process failed to load or died, requests'
shadow jobs are dropped and counted (``featurestack_shadow_dropped_total``; the death in
``featurestack_errors_total``, kind ``shadow_process_died``) and the champion keeps serving.
A clean stop sends a sentinel: the process scores everything it was sent, flushes its log and
exits, and the server waits for it up to ``shadow_stop_seconds``.

Hand-written because no library does this: multiprocessing's ``Queue`` has a feeder thread
too, but no bound that drops instead of blocking, nor a way to know which jobs a dead
consumer never settled.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import pickle
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from featurestack.core.settings import Settings
from models_py.contract import CHALLENGER
from models_py.prediction_log import PredictionLog
from models_py.serving import SHADOW, ServeConfig, Served, ServedModel, log_row

if TYPE_CHECKING:
    from multiprocessing.connection import Connection
    from multiprocessing.process import BaseProcess

    from models_py.server_metrics import Metrics

#: the shadow process's niceness: the kernel gives the server's threads the CPU first
NICE = 19
DIED = "shadow_process_died"
FAILED = "shadow_failed"

#: (model, request id, request time, entity rows with their request-time values)
Job = tuple[str, str, datetime, list[dict[str, Any]]]

logger = logging.getLogger(__name__)


class ShadowProcess:
    """The server's side: a bounded hand-over to the shadow process, and its reports back.

    Every job ends in exactly one of: scored (the process reported it), failed (the process
    reported an exception scoring it, counted as an error) or dropped (queue full, process
    gone, or sent but never reported before the process died), so nothing is silent.
    """

    def __init__(
        self,
        settings: Settings,
        models: dict[str, ServedModel],
        config: ServeConfig,
        metrics: Metrics,
    ) -> None:
        self.metrics = metrics
        self.batch, self.wait, self.limit = (
            config.shadow_batch,
            config.shadow_wait_seconds,
            config.shadow_queue,
        )
        self.stop_seconds = config.shadow_stop_seconds
        self.versions = {}
        for name, model in models.items():
            assert model.challenger is not None
            self.versions[name] = model.challenger.version
        self._pending: list[Job] = []
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._closing = False
        self._alive = True
        self._settled_lost = False
        self._sent: Counter[str] = Counter()
        self._done: Counter[str] = Counter()
        self._last_warning = 0.0
        self.state = "starting"

        ctx = multiprocessing.get_context("spawn")
        jobs_read, jobs_write = ctx.Pipe(duplex=False)
        stats_read, stats_write = ctx.Pipe(duplex=False)
        self._process: BaseProcess = ctx.Process(
            target=_child_main,
            args=(
                settings,
                self.versions,
                config.log_flush_rows,
                config.log_flush_seconds,
                config.shadow_batch,
                jobs_read,
                stats_write,
            ),
            name="featurestack-shadow",
            daemon=True,
        )
        try:
            with _our_code_first():
                self._process.start()
        except OSError:  # no process to shadow with: the champion still serves
            logger.exception("the shadow process could not be started")
        # our copies of the child's ends: once it exits, our reads see EOF and writes EPIPE
        jobs_read.close()
        stats_write.close()
        self._jobs: Connection = jobs_write
        self._stats: Connection = stats_read
        self._receiver = threading.Thread(target=self._receive, name="shadow-stats", daemon=True)
        self._sender = threading.Thread(target=self._send_loop, name="shadow-send", daemon=True)
        self._receiver.start()
        self._sender.start()

    @property
    def pid(self) -> int | None:
        return self._process.pid

    @property
    def pending(self) -> int:
        return len(self._pending)

    def submit(self, model: str, request_id: str, at: datetime, rows: list[dict[str, Any]]) -> None:
        """Hand one request over (never blocks: drops and counts when the shadow cannot keep
        up or is gone)."""
        with self._lock:
            accepted = self._alive and not self._closing and len(self._pending) < self.limit
            if accepted:
                self._pending.append((model, request_id, at, rows))
                n = len(self._pending)
        if not accepted:
            self._drop(model, 1)
        elif n >= self.batch:
            self._wake.set()

    def close(self) -> None:
        """Send what is pending and a sentinel; wait (``shadow_stop_seconds``) for the process
        to score it all and flush its log; stop it if it does not."""
        with self._lock:
            self._closing = True
        self._wake.set()
        deadline = time.monotonic() + self.stop_seconds
        self._sender.join(max(deadline - time.monotonic(), 0))
        if self._process.pid is not None:
            self._process.join(max(deadline - time.monotonic(), 0))
        if self._process.pid is not None and self._process.is_alive():
            logger.warning(
                "the shadow process did not finish within %.0f s (serve config "
                "shadow_stop_seconds); stopping it: what it had not scored is dropped",
                self.stop_seconds,
            )
            self._process.kill()
            self._process.join()
        self._sender.join()
        self._receiver.join()
        self._settle_lost()
        self._jobs.close()
        self._stats.close()

    # -- threads ---------------------------------------------------------------------------

    def _send_loop(self) -> None:
        while True:
            self._wake.wait(self.wait)
            self._wake.clear()
            with self._lock:
                jobs, self._pending = self._pending, []
                closing, alive = self._closing, self._alive
            if not alive:
                self._drop_jobs(jobs)
                break
            for start in range(0, len(jobs), self.batch):
                chunk = jobs[start : start + self.batch]
                if not self._send(chunk):
                    self._drop_jobs(jobs[start + len(chunk) :])
                    break
            else:
                if closing:
                    # gone already? then close() counts what it was sent and never reported
                    with contextlib.suppress(OSError):
                        self._jobs.send_bytes(pickle.dumps(None))
                    return
                continue
            break
        # the process is gone: what it was sent and never reported is lost
        self._receiver.join()
        self._settle_lost()
        with self._lock:
            rest, self._pending = self._pending, []
        self._drop_jobs(rest)

    def _send(self, chunk: list[Job]) -> bool:
        data = pickle.dumps(chunk, protocol=pickle.HIGHEST_PROTOCOL)
        counts = Counter(job[0] for job in chunk)
        with self._lock:
            self._sent.update(counts)
        try:
            self._jobs.send_bytes(data)  # blocks (this thread only) while the process lags
        except OSError:
            with self._lock:
                self._sent.subtract(counts)
                self._alive = False
            self._drop_jobs(chunk)
            return False
        return True

    def _receive(self) -> None:
        clean = False
        while True:
            try:
                message = self._stats.recv()
            except (EOFError, OSError):
                break
            kind = message[0]
            if kind == "ready":
                self.state = "ready"
            elif kind == "scored":
                _, model, version, requests, rows, seconds = message
                with self._lock:
                    self._done[model] += requests
                self.metrics.observe(model, version, SHADOW, rows, seconds, requests=requests)
            elif kind == "failed":
                _, model, requests, text = message
                with self._lock:
                    self._done[model] += requests
                self.metrics.error(model, FAILED, requests)
                logger.error("shadow scoring of %s failed: %s", model, text)
            elif kind == "fatal":
                logger.error("the shadow process failed: %s", message[1])
            elif kind == "done":
                clean = True
        with self._lock:
            self._alive = False
            closing = self._closing
        self.state = "stopped" if clean else "died"
        self._wake.set()
        if not clean:
            code = None
            if self._process.pid is not None:
                self._process.join(5)
                code = self._process.exitcode
            logger.error(
                "the shadow process stopped (exit code %s)%s; the champion keeps serving, "
                "shadow jobs are dropped and counted in featurestack_shadow_dropped_total; "
                "restart the server to shadow again",
                code,
                " while the server was stopping" if closing else "",
            )
            for model in self.versions:
                self.metrics.error(model, DIED)

    # -- accounting ------------------------------------------------------------------------

    def _settle_lost(self) -> None:
        """Count as dropped what was sent but never reported (once: after the receiver ended)."""
        with self._lock:
            if self._settled_lost or self._receiver.is_alive():
                return
            self._settled_lost = True
            lost = {m: self._sent[m] - self._done[m] for m in self._sent}
        for model, n in lost.items():
            if n > 0:
                self.metrics.shadow_dropped(model, n)

    def _drop_jobs(self, jobs: Iterable[Job]) -> None:
        for model, n in Counter(job[0] for job in jobs).items():
            self._drop(model, n)

    def _drop(self, model: str, n: int) -> None:
        self.metrics.shadow_dropped(model, n)
        now = time.monotonic()
        if now - self._last_warning > 10:
            self._last_warning = now
            reason = (
                "the shadow process is not running"
                if not self._alive
                else "the server is stopping"
                if self._closing
                else f"{self.limit} requests already wait for it (serve config shadow_queue)"
            )
            logger.warning("shadow scoring of %s dropped a request: %s", model, reason)


# -- the shadow process -------------------------------------------------------------------------


@contextlib.contextmanager
def _our_code_first() -> Iterator[None]:
    """Start the child with this process's featurestack and models_py in front of its path.

    ``spawn`` gives the child the parent's ``sys.path``, and loading a model logged with its
    code (``code_paths``) put that model's copy of models_py, as old as the model, in front of
    it: the child would import the model's copy (which may lack this module) instead of the
    code the server runs.
    """
    import featurestack
    import models_py

    ours = list(
        dict.fromkeys(
            str(Path(next(iter(package.__path__))).resolve().parent)
            for package in (featurestack, models_py)
        )
    )
    saved = sys.path
    sys.path = ours + [p for p in saved if p not in ours]
    try:
        yield
    finally:
        sys.path = saved


def shadow_rows(
    model: str, challenger: Served, jobs: list[Job], now: datetime
) -> list[tuple[Any, ...]]:
    """Score ``jobs`` (one model's) with the challenger in one batch: one online read and one
    booster call for all their entities; the prediction-log rows, role ``shadow``."""
    rows = [row for job in jobs for row in job[3]]
    feats = challenger.read(rows, now)
    outputs = challenger.score(feats)
    out, i = [], 0
    for _, request_id, at, entities in jobs:
        for row in entities:
            out.append(
                log_row(request_id, at, model, challenger, SHADOW, row, feats, i, outputs[i])
            )
            i += 1
    return out


def _child_main(
    settings: Settings,
    versions: dict[str, str],
    flush_rows: int,
    flush_seconds: float,
    batch: int,
    jobs: Connection,
    stats: Connection,
) -> None:
    """The shadow process: load, then score what arrives until the sentinel (or the server
    is gone), flush the log, exit."""
    import signal

    from featurestack.core.cli import quiet_warnings

    os.nice(NICE)
    # Ctrl-C in a terminal reaches the whole process group: the server stops us cleanly
    # (sentinel), or we see it gone (end of the pipe). SIGTERM (a service manager stopping
    # the group) exits through the ``finally`` below, flushing what was scored.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    quiet_warnings()
    try:
        from featurestack.infra import feast_ops
        from models_py.serving import load_version

        store = feast_ops.load_store(settings)
        challengers = {
            name: load_version(settings, store, name, CHALLENGER, version)
            for name, version in versions.items()
        }
    except Exception as exc:
        _report(stats, ("fatal", f"loading the challengers {versions} failed: {exc!r}"))
        raise SystemExit(1) from exc
    log = PredictionLog(settings.prediction_log_dir, flush_rows, flush_seconds)
    log.start()
    _report(stats, ("ready",))
    try:
        _score_until_stopped(challengers, log, batch, jobs, stats)
    finally:
        log.close()
    _report(stats, ("done",))


def _score_until_stopped(
    challengers: dict[str, Served],
    log: PredictionLog,
    batch: int,
    jobs: Connection,
    stats: Connection,
) -> None:
    stop = False
    while not stop:
        try:
            pending: list[Job] | None = pickle.loads(jobs.recv_bytes())
            if pending is None:
                return
            while len(pending) < batch and jobs.poll():  # catch up in bigger batches
                more = pickle.loads(jobs.recv_bytes())
                if more is None:
                    stop = True
                    break
                pending.extend(more)
        except (EOFError, OSError):
            return  # the server is gone: keep what was scored
        by_model: dict[str, list[Job]] = {}
        for job in pending:
            by_model.setdefault(job[0], []).append(job)
        for model, model_jobs in by_model.items():
            started = time.perf_counter()
            challenger = challengers[model]
            try:
                rows = shadow_rows(model, challenger, model_jobs, max(j[2] for j in model_jobs))
            except Exception as exc:  # one bad batch must not stop the shadow
                logger.exception("shadow scoring of %s failed", model)
                _report(stats, ("failed", model, len(model_jobs), repr(exc)))
                continue
            log.append(rows)
            seconds = time.perf_counter() - started
            n = len(model_jobs)
            _report(stats, ("scored", model, challenger.version, n, len(rows), seconds))


def _report(stats: Connection, message: tuple[Any, ...]) -> None:
    with contextlib.suppress(OSError):  # the server is gone: nobody to tell
        stats.send(message)
