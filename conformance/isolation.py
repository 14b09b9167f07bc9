"""Worker processes for the cases, so that a kernel that crashes or hangs fails only its own case.

A worker is a spawned process (CUDA cannot follow a fork) that selects the Triton backend for the
device before it imports any kernel, then checks one case after another: it lives long, because
starting one costs seconds. Each case starts from the kernel's fresh state (:func:`check_fresh`),
so what a case finds does not depend on the cases its worker checked before. It sends each finding as its check finishes. Its watchdog thread
notices a kernel launch that has not ended after ``hang_timeout`` seconds
(:func:`conformance.harness.seconds_in_kernel`), asks the loaded kernel packages who waits on
whom (their ``records.describe_waits()``) and sends that as the case's hang; long work outside a
launch (refsim's predictions) is not a hang, and the watchdog says the worker is alive meanwhile.

The parent reads a worker that died mid-case (a segfault, an abort) as that case's crash, kills a
worker that reported a hang, and also kills one that has sent nothing for ``hang_timeout`` plus
:data:`WORD_GRACE_S` (a watchdog that cannot run, e.g. native code holding the GIL). The case then
fails with an ``isolation`` finding after the findings of the checks that had finished, a fresh
worker takes the dead one's place, and the remaining cases go on. Results come back in the order given.
"""

import collections
import contextlib
import dataclasses
import functools
import importlib
import multiprocessing
import multiprocessing.connection
import os
import signal
import sys
import threading
import time

from .backend import select_backend
from .causes import Cause

# How long the parent waits past the hang timeout for a worker's word before killing it silently.
WORD_GRACE_S = 10.0
# How often a busy worker's watchdog tells the parent it is alive.
HEARTBEAT_S = 5.0
# How long a worker may take to import torch, Triton and the suite before the run gives up.
STARTUP_LIMIT_S = 600.0

_THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


@dataclasses.dataclass(frozen=True)
class Task:
    """One case, checked against the KernelUnderTest that ``factory`` builds in the worker: a
    ``"module:function"`` string or a picklable callable, called with no arguments."""

    factory: object
    case: object


def crash_reason(exitcode):
    """What a worker's exit code says, e.g. "the kernel crashed: signal 6 (SIGABRT)"."""
    if exitcode >= 0:
        return f"the kernel crashed: exit code {exitcode}"
    try:
        name = f" ({signal.Signals(-exitcode).name})"
    except ValueError:  # a signal without a name, such as a real-time one
        name = ""
    return f"the kernel crashed: signal {-exitcode}{name}"


# ---------------------------------------------------------------------------- the worker's side


def _resolve(factory):
    """The callable a factory names."""
    if isinstance(factory, str):
        module, _, name = factory.partition(":")
        return getattr(importlib.import_module(module), name)
    return factory


def _label(factory):
    """A factory as text, naming a case's kernel when it died before it had a name."""
    if isinstance(factory, str):
        return factory
    if isinstance(factory, functools.partial):
        return f"{_label(factory.func)}{factory.args}"
    return f"{factory.__module__}:{factory.__qualname__}"


def _describe_waits():
    """Who waits on whom, from the first loaded kernel package that can tell, or None.

    Each package shaped like ``kernels`` (``kernels`` itself, a mutant's copy) may offer
    ``records.describe_waits()``; one that lacks it, answers None or fails tells nothing.
    """
    for name, module in list(sys.modules.items()):
        if name.count(".") != 1 or not name.endswith(".records"):
            continue
        describe = getattr(module, "describe_waits", None)
        if not callable(describe):
            continue
        try:
            detail = describe()
        except Exception:  # a failing description must not cost the report of the hang itself
            continue
        if detail:
            return detail
    return None


def _current_step():
    """The step of ``check_case`` the main thread is in, e.g. "check determinism"."""
    from .checking import check_case

    frame = sys._current_frames().get(threading.main_thread().ident)
    callees = []  # the frames below check_case's, innermost first
    while frame is not None and frame.f_code is not check_case.__code__:
        callees.append(frame)
        frame = frame.f_back
    if frame is None:
        return "building the kernel"
    names = [callee.f_code.co_name for callee in reversed(callees)]
    checks = [name for name in names if not name.startswith("_step_")]  # a check, not its step
    return (checks or names or [frame.f_code.co_name])[0].replace("_", " ")


def hang_reason(hang_timeout):
    """Why the case is hung: who waits on whom if the kernels can tell, else the step it is in."""
    detail = _describe_waits()
    if detail:
        return f"no progress for {hang_timeout:g} s: {detail}"
    return f"no progress for {hang_timeout:g} s in {_current_step()}"


class _Watchdog:
    """Notices a case stuck inside one kernel launch for ``hang_timeout`` seconds and reports
    it once; while the case makes progress otherwise (refsim's predictions, the diagnosis), it
    tells the parent every :data:`HEARTBEAT_S` seconds that the worker is alive."""

    def __init__(self, send, hang_timeout):
        self._send = send
        self._timeout = hang_timeout
        self._lock = threading.Lock()
        self._index = None  # the task being checked; None between tasks and once reported
        threading.Thread(target=self._watch, name="conformance-watchdog", daemon=True).start()

    def begin(self, index):
        with self._lock:
            self._index = index

    def end(self):
        with self._lock:
            self._index = None

    def _watch(self):
        from .harness import seconds_in_kernel

        last_beat = time.monotonic()
        while True:
            time.sleep(min(1.0, self._timeout / 10))
            in_kernel = seconds_in_kernel()
            with self._lock:
                index = self._index
                stuck = index is not None and in_kernel is not None and in_kernel > self._timeout
                if stuck:
                    self._index = None
            if stuck:
                self._send(("hung", index, hang_reason(self._timeout)))
            elif index is not None and time.monotonic() - last_beat >= HEARTBEAT_S:
                self._send(("alive", index))
                last_beat = time.monotonic()


def check_fresh(kut, case, device, determinism_runs=3, on_finding=None):
    """:func:`conformance.checking.check_case` from the state of a new process: the kernel's
    ``reset()`` first, if it has one (the project's kernels and mutants forget their prepared
    calls and workspaces), so a case finds the same whatever its worker checked before it."""
    from .checking import check_case

    if kut.reset is not None:
        kut.reset()
    return check_case(kut, case, device, determinism_runs, on_finding=on_finding)


def _check(task, device, determinism_runs, send, watchdog, index):
    """Build the task's kernel and check its case, sending each finding as it comes."""
    from .checking import CaseResult
    from .checks import Finding

    try:
        kut = _resolve(task.factory)()
    except Exception as exc:  # a factory that fails is this case's failure, not the worker's
        reason = f"building the kernel failed: {type(exc).__name__}: {exc}"[:500]
        return CaseResult(
            _label(task.factory),
            task.case,
            [Finding("launch", False, [reason], Cause.UNCLASSIFIED)],
            0,
        )
    send(("started", index, kut.name))

    def on_finding(finding):
        send(("finding", index, finding))

    return check_fresh(kut, task.case, device, determinism_runs, on_finding=on_finding)


def _serve(conn, device, determinism_runs, hang_timeout):
    """A worker's life: select the backend, import the suite, then check tasks until told to
    stop (None, or the parent gone)."""
    select_backend(device)  # before anything imports a kernel module
    from . import checking  # noqa: F401  (torch and the suite, imported before "ready")

    lock = threading.Lock()

    def send(message):
        with lock:
            conn.send(message)

    watchdog = _Watchdog(send, hang_timeout)
    send(("ready",))
    while True:
        try:
            message = conn.recv()
        except EOFError:
            return
        if message is None:
            return
        index, task = message
        watchdog.begin(index)
        result = _check(task, device, determinism_runs, send, watchdog, index)
        watchdog.end()
        send(("done", index, result))


# ---------------------------------------------------------------------------- the parent's side


@dataclasses.dataclass
class _Job:
    """A task running in a worker, as far as the parent has heard."""

    index: int
    task: Task
    began: float
    heard: float  # when the worker last sent word of it
    kernel: str = None
    findings: list = dataclasses.field(default_factory=list)


class _Worker:
    def __init__(self, context, device, determinism_runs, hang_timeout):
        self.conn, child = context.Pipe()
        self.process = context.Process(
            target=_serve,
            args=(child, device, determinism_runs, hang_timeout),
            name="conformance-worker",
        )
        self.process.start()
        child.close()
        self.started = time.monotonic()
        self.ready = False
        self.job = None

    def assign(self, index, task):
        now = time.monotonic()
        self.job = _Job(index, task, began=now, heard=now)
        self.conn.send((index, task))

    def stop(self):
        """Ask an idle worker to finish, kill a busy or starting one; wait for it either way."""
        if self.ready and self.job is None and self.process.is_alive():
            with contextlib.suppress(OSError):
                self.conn.send(None)
            self.process.join(timeout=10)
        if self.process.is_alive():
            self.process.kill()
        self.process.join()
        self.conn.close()


@contextlib.contextmanager
def _worker_environment(jobs, device):
    """Workers inherit the environment they start in: share the cores out so that their numpy
    (BLAS) threads -- refsim's predictions -- do not oversubscribe the machine, and choose the
    Triton backend for ``device`` already there, since a spawned worker imports the caller's
    main module (which may import kernels) before it runs anything of the suite."""
    threads = str(max(1, (os.cpu_count() or 1) // jobs))
    saved = {name: os.environ.get(name) for name in (*_THREAD_VARIABLES, "TRITON_INTERPRET")}
    os.environ.update(dict.fromkeys(_THREAD_VARIABLES, threads))
    select_backend(device)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


class WorkerPool:
    """``jobs`` long-lived worker processes checking tasks on ``device``; a worker whose kernel
    crashed or hung fails that case and is replaced."""

    def __init__(self, device, jobs, determinism_runs=3, hang_timeout=60.0):
        self.device = device
        self.jobs = jobs
        self.determinism_runs = determinism_runs
        self.hang_timeout = hang_timeout
        self._context = multiprocessing.get_context("spawn")  # CUDA cannot follow a fork
        self._workers = []

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    def close(self):
        while self._workers:
            self._workers.pop().stop()

    def run(self, tasks, on_result=None):
        """The CaseResult of every task, in order; ``on_result(result)`` as each one finishes."""
        results = [None] * len(tasks)
        queue = collections.deque(enumerate(tasks))
        while queue or any(w.job for w in self._workers):
            self._start_workers(len(queue) + sum(w.job is not None for w in self._workers))
            for worker in self._workers:
                idle = worker.ready and worker.job is None and worker.process.is_alive()
                if idle and queue:
                    worker.assign(*queue.popleft())
            multiprocessing.connection.wait(
                [w.conn for w in self._workers] + [w.process.sentinel for w in self._workers],
                timeout=self._until_next_deadline(),
            )
            for worker in list(self._workers):
                finished = self._service(worker)
                if finished is not None:
                    index, result = finished
                    results[index] = result
                    if on_result is not None:
                        on_result(result)
        return results

    def _start_workers(self, outstanding):
        missing = min(self.jobs, outstanding) - len(self._workers)
        if missing > 0:
            with _worker_environment(self.jobs, self.device):
                self._workers += [
                    _Worker(self._context, self.device, self.determinism_runs, self.hang_timeout)
                    for _ in range(missing)
                ]

    def _deadline(self, worker):
        if not worker.ready:
            return worker.started + STARTUP_LIMIT_S
        if worker.job is not None:
            return worker.job.heard + self.hang_timeout + WORD_GRACE_S
        return float("inf")

    def _until_next_deadline(self):
        deadline = min((self._deadline(w) for w in self._workers), default=float("inf"))
        return None if deadline == float("inf") else max(0.0, deadline - time.monotonic())

    def _service(self, worker):
        """Read what ``worker`` sent; returns ``(index, CaseResult)`` of a case that finished,
        crashed or hung (a dead or hung worker is removed), or None."""
        job = worker.job
        try:
            while worker.conn.poll():
                kind, *body = worker.conn.recv()
                if kind == "ready":
                    worker.ready = True
                    continue
                if job is None or body[0] != job.index:  # a hang reported as its case finished
                    continue
                job.heard = time.monotonic()
                if kind == "started":
                    job.kernel = body[1]
                elif kind == "finding":
                    job.findings.append(body[1])
                elif kind == "done":
                    worker.job = None
                    return job.index, body[1]
                elif kind == "hung":
                    return self._retire(worker, Cause.KERNEL_HUNG, body[1])
        except (EOFError, OSError):  # the worker is gone; its exit code says how
            pass
        if not worker.process.is_alive():
            if job is not None:
                return self._retire(
                    worker, Cause.KERNEL_CRASHED, crash_reason(worker.process.exitcode)
                )
            self._workers.remove(worker)  # died between cases: a fresh one takes its place
            worker.stop()
            if not worker.ready:
                raise RuntimeError(
                    f"a conformance worker died while starting: exit code {worker.process.exitcode}"
                )
            return None
        if time.monotonic() < self._deadline(worker):
            return None
        if job is not None:
            reason = f"no progress for {self.hang_timeout:g} s, and no word from the worker"
            return self._retire(worker, Cause.KERNEL_HUNG, reason)
        self._workers.remove(worker)
        worker.stop()
        raise RuntimeError(f"a conformance worker did not start in {STARTUP_LIMIT_S:g} s")

    def _retire(self, worker, cause, reason):
        """Remove and kill ``worker``, and fail its case with an ``isolation``
        finding after the findings it had sent."""
        from .checking import CaseResult
        from .checks import Finding

        job = worker.job
        self._workers.remove(worker)
        worker.stop()
        findings = [*job.findings, Finding("isolation", False, [reason], cause)]
        kernel = job.kernel or _label(job.task.factory)
        return job.index, CaseResult(kernel, job.task.case, findings, time.monotonic() - job.began)
