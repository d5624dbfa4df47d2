"""One supervised FFmpeg process: lifecycle, state, log/report, stale timeout and limits.

A :class:`Process` is created and driven by :class:`~trio_core.engine.supervisor.Supervisor`; the
API and hooks read it (``state_json``, ``report_json``, ``log``, ``extra_state``).

Runtime model (structured concurrency):

* *start* runs :meth:`Process._lifecycle` as a task in the Supervisor's nursery. It owns a
  cancel scope (the "process scope") and a nursery (``RunContext.nursery``) in which hooks run
  their tasks. The lifecycle loops over *attempts* (FFmpeg runs) while reconnect rules allow.
* an attempt: state ``starting`` -> placeholders resolved, command assembled, hooks'
  ``on_start`` -> exec FFmpeg (:func:`trio_core.ffmpeg.child.spawn`: stdin/stderr pipes, stdout to
  /dev/null, its own process group, a parent-death signal so it dies with the server however the
  server dies; recorded in the db dir's pid records while it runs) -> state ``running``
  **immediately after a successful exec** (datarhei semantics; progress is visible in
  ``state.progress``) -> stderr is read continuously (progress parser + log ring), a 1 s
  watchdog kills a *stopped* FFmpeg (``T`` in /proc, e.g. SIGSTOP: it can act on nothing but
  SIGKILL) at once, samples CPU/RSS, enforces limits (SIGKILL after ``waitfor_seconds`` above a
  limit -> ``killed``) and the stale timeout (graceful stop) -> exit classified: 0 or 255 ->
  ``finished``, other code -> ``failed``, signal -> ``killed`` (logged as ``FFmpeg killed by
  signal SIGKILL`` etc.); spawn failure or HookAbort -> ``failed`` -> hooks' ``on_stop``.
* reconnect: when FFmpeg ended on its own (including failures, HookAbort, limits, stale, a
  stopped FFmpeg killed) and ``order == "start"`` and ``reconnect`` is true, wait
  ``reconnect_delay_seconds`` (``state.reconnect_seconds`` counts down) and run again
  (``ctx.attempt`` + 1). After a start that never exec'd FFmpeg (HookAbort, spawn failure) with
  delay 0 we still wait 1 s, so a permanently failing hook cannot spin the CPU. Otherwise the
  lifecycle ends and the process nursery is cancelled.
* *stop* (stop/delete/update/restart, or Supervisor shutdown) = cancel the process scope. FFmpeg
  is then stopped gracefully by :meth:`Process._deliver_cancel` (shielded): ``q\\n`` on stdin,
  up to 3 s, SIGTERM, 2 s, SIGKILL — except that a stopped FFmpeg, found so before or during
  these waits (checked every 0.1 s), is sent SIGKILL at once (these periods, the watchdog
  interval and the stop hooks' deadline are the :class:`EngineTimings` the Supervisor passes): the sequence never waits on a
  process that cannot act. Nothing started by the process outlives its scope: the FFmpeg child
  is reaped, its pipes closed, its pid record removed, hook tasks cancelled. Its stderr is
  read to the end although the stop cancelled the scope (shielded, until EOF or
  :data:`STDERR_DRAIN_SECONDS` after the reap): the prelude and the last lines FFmpeg prints
  while it stops stay in the run's report.
"""

from __future__ import annotations

import math
import signal
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import trio

from trio_core.engine.command import build_command, core_command
from trio_core.engine.hooks import Hook, HookAbort, RunContext
from trio_core.engine.limits import CpuMeter, LimitWatch, sample
from trio_core.engine.process_config import ProcessConfig
from trio_core.ffmpeg.child import DEVNULL, PIPE, Child, spawn, wait_or_stop
from trio_core.ffmpeg.progress import ProgressParser, core_number, empty_progress

if TYPE_CHECKING:
    from trio_core.engine.pid_records import PidRecords

__all__ = ["DEFAULT_TIMINGS", "EXEC_STATES", "EngineTimings", "Process", "classify_exit", "signal_name"]

EXEC_STATES = ("finished", "starting", "running", "finishing", "failed", "killed")


@dataclass(frozen=True)
class EngineTimings:
    """The engine's waits, in seconds (the defaults are the production values; tests shrink
    them). Passed Supervisor -> Process."""

    grace_after_q: float = 3.0  # stop: after ``q`` on stdin, before SIGTERM
    grace_after_term: float = 2.0  # stop: after SIGTERM, before SIGKILL
    watch_interval: float = 1.0  # watchdog period: stopped FFmpeg, CPU/RSS, limits, stale
    stop_poll: float = 0.1  # how often the stop sequence checks whether FFmpeg was stopped
    hook_stop_timeout: float = 5.0  # deadline of the (shielded) hooks' ``on_stop`` calls


DEFAULT_TIMINGS = EngineTimings()
#: how long FFmpeg's stderr is still read after FFmpeg was reaped (EOF normally comes at once)
STDERR_DRAIN_SECONDS = 1.0

STOPPED_MESSAGE = ("FFmpeg is stopped (state T, e.g. SIGSTOP) and cannot act on q or SIGTERM; "
                   "sending SIGKILL")


def signal_name(signum: int) -> str:
    """``9`` -> ``"SIGKILL"`` (``"signal 99"`` for a number without a name)."""
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


def classify_exit(returncode: int) -> str:
    """datarhei's exit classification: 0/255 finished, signal killed, other failed."""
    if returncode in (0, 255):
        return "finished"
    if returncode < 0:
        return "killed"
    return "failed"


class ProcessHost(Protocol):
    """What a :class:`Process` needs of the supervisor that owns it (the
    :class:`~trio_core.engine.supervisor.Supervisor` is one; this module does not import it)."""

    ffmpeg: str
    hooks: Sequence[Hook]
    pid_records: PidRecords | None

    @property
    def nursery(self) -> trio.Nursery | None:
        """Where process lifecycles run; None while the host is not running."""

    def resolve(self, cfg: ProcessConfig) -> ProcessConfig:
        """``cfg`` with placeholders and references resolved."""


class Process:
    """One supervised process. Public attributes are read by the API and hooks.

    ``id``, ``config`` (raw placeholders), ``order`` ("start"|"stop", desired state),
    ``created_at``/``updated_at`` (unix seconds), ``extra_state`` (name -> callable whose result
    is added to ``state_json``), ``runs`` (number of FFmpeg executions so far).
    """

    def __init__(self, supervisor: ProcessHost, config: ProcessConfig, *, order: str = "stop",
                 created_at: float | None = None, updated_at: float | None = None,
                 log_lines: int = 100, log_history: int = 3,
                 timings: EngineTimings = DEFAULT_TIMINGS) -> None:
        now = time.time()
        self._sup = supervisor
        self.timings = timings
        self.id = config.id
        self.config = config
        self.order = order
        self.created_at = created_at if created_at is not None else now
        self.updated_at = updated_at if updated_at is not None else now
        self.extra_state: dict[str, Callable[[], Any]] = {}
        self.runs = 0
        self.cpu_usage = 0.0
        self.memory_bytes = 0
        self._exec = "finished"
        self._state_since = now
        self._log: deque[list[str]] = deque(maxlen=max(1, log_lines))
        self._history: deque[dict[str, Any]] = deque(maxlen=max(0, log_history))
        self._prelude: list[str] = []
        self._report_created = now
        #: bumped on every change of what report_json() shows (see there)
        self._report_version = 0
        self._report_cache: tuple[tuple[int, Any, int], dict[str, Any]] | None = None
        self._parser: ProgressParser | None = None
        self._argv: list[str] = []
        self._core_command: list[str] = []
        self._run_ended = trio.Event()
        self._run_ended.set()
        self._reconnect_at: float | None = None
        self._scope: trio.CancelScope | None = None
        self._done = trio.Event()
        self._done.set()
        self._stopping = False
        self._ffmpeg_scope = trio.CancelScope()
        self._watch_scope = trio.CancelScope()
        self._read_scope = trio.CancelScope(shield=True)
        self._last_progress = 0.0
        self.lock = trio.Lock()  # serialises supervisor operations on this process

    # -- read side ----------------------------------------------------------------------------

    @property
    def exec_state(self) -> str:
        return self._exec

    @property
    def active(self) -> bool:
        """True from start until the lifecycle has ended (running, or waiting to reconnect)."""
        return self._scope is not None

    def log(self, line: str) -> None:
        """Append a line to the process log ring (timestamped now)."""
        self._log.append([str(int(time.time())), line])
        self._report_version += 1

    @property
    def last_logline(self) -> str:
        return self._log[-1][1] if self._log else ""

    def command(self) -> list[str]:
        """The resolved command (binary included) of the current/last run, or as it would be."""
        if self._argv:
            return list(self._argv)
        return build_command(self._sup.resolve(self.config), self._sup.ffmpeg)

    def core_command(self) -> list[str]:
        """Core's ``state.command``: the resolved config's arguments (no binary, no injected
        ``-stats``, no hook legs) of the current/last run, or as they would be."""
        if self._core_command:
            return list(self._core_command)
        return core_command(self._sup.resolve(self.config))

    def state_json(self) -> dict[str, Any]:
        """datarhei ``state`` object, plus one key per ``extra_state`` entry."""
        now = time.time()
        reconnect = -1
        if self._reconnect_at is not None:
            reconnect = max(0, math.ceil(self._reconnect_at - now))
        parser = self._parser
        state: dict[str, Any] = {
            "order": self.order,
            "exec": self._exec,
            "runtime_seconds": max(0, int(now - self._state_since)),
            "reconnect_seconds": reconnect,
            "last_logline": self.last_logline,
            "progress": parser.progress_json() if parser is not None else empty_progress(),
            "memory_bytes": self.memory_bytes,
            "cpu_usage": core_number(self.cpu_usage),
            "command": self.core_command(),
        }
        for name, getter in list(self.extra_state.items()):
            try:
                state[name] = getter()
            except Exception as exc:  # a broken hook getter must not break the API
                state[name] = None
                self.log(f"extra_state[{name!r}] failed: {exc!r}")
        return state

    def report_json(self) -> dict[str, Any]:
        """datarhei ``report`` object: current prelude/log and the history of previous runs.

        Built once per change (log line, new run, prelude line) and then shared: callers must
        not mutate it.
        """
        parser = self._parser
        key = (self._report_version, parser, parser.version if parser is not None else -1)
        cached = self._report_cache
        if cached is not None and cached[0][0] == key[0] and cached[0][1] is parser \
                and cached[0][2] == key[2]:
            return cached[1]
        report = self._build_report_json()
        self._report_cache = (key, report)
        return report

    def _build_report_json(self) -> dict[str, Any]:
        prelude = self._parser.prelude if self._parser is not None else self._prelude
        return {
            "created_at": int(self._report_created),
            "prelude": list(prelude),
            "log": [list(e) for e in self._log],
            "history": [
                {"created_at": h["created_at"], "prelude": list(h["prelude"]),
                 "log": [list(e) for e in h["log"]]}
                for h in self._history
            ],
        }

    # -- internals ---------------------------------------------------------------------------

    def _set_state(self, state: str) -> None:
        if state != self._exec:
            self._exec = state
            self._state_since = time.time()

    def _new_report(self) -> None:
        if self._log or self._prelude:
            if self._history.maxlen:
                self._history.append({"created_at": int(self._report_created),
                                      "prelude": list(self._prelude),
                                      "log": [list(e) for e in self._log]})
        self._log.clear()
        self._prelude = []
        self._report_created = time.time()
        self._report_version += 1

    async def _start(self) -> None:
        """Start the lifecycle in the Supervisor's nursery (no-op if active)."""
        if self._scope is not None:
            return
        nursery = self._sup.nursery
        if nursery is None:
            raise RuntimeError("the supervisor is not running")
        await nursery.start(self._lifecycle)

    async def _stop(self) -> None:
        """Cancel the process scope and wait until everything in it has ended."""
        scope = self._scope
        if scope is None:
            return
        self._stopping = True
        try:
            if self._exec in ("starting", "running"):
                self._set_state("finishing")
            scope.cancel()
            await self._done.wait()
        finally:
            self._stopping = False

    async def _kill_run(self) -> None:
        """Core's restart (``Kill``): gracefully stop the running FFmpeg and wait for its exit;
        the reconnect rules then decide whether it runs again. No-op when FFmpeg isn't running."""
        if self._scope is None or self._exec != "running":
            return
        ended = self._run_ended
        self._ffmpeg_scope.cancel()
        await ended.wait()

    async def _lifecycle(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        self._done = trio.Event()
        with trio.CancelScope() as scope:
            self._scope = scope
            task_status.started()
            try:
                async with trio.open_nursery() as nursery:
                    ctx = RunContext(self, nursery, self._sup.ffmpeg)
                    await self._loop(ctx)
                    nursery.cancel_scope.cancel()
            except* Exception as group:
                # a hook task crashed (or an engine bug): this process ends, nothing else does
                for exc in group.exceptions:
                    self.log(f"Process stopped by an internal error: {exc!r}")
                if self._exec in ("starting", "running", "finishing"):
                    self._set_state("failed")
            finally:
                self._scope = None
                self._reconnect_at = None
                self._done.set()

    async def _loop(self, ctx: RunContext) -> None:
        while True:
            ctx.attempt += 1
            executed = await self._attempt(ctx)
            if self._final():
                return
            delay = float(self.config.reconnect_delay_seconds)
            if delay <= 0 and not executed:
                delay = 1.0
            self._reconnect_at = time.time() + delay
            try:
                await trio.sleep(delay)
            finally:
                self._reconnect_at = None

    def _final(self) -> bool:
        """Whether the lifecycle ends after the current attempt."""
        cancelled = trio.current_effective_deadline() == -math.inf
        return cancelled or self._stopping or self.order != "start" or not self.config.reconnect

    async def _attempt(self, ctx: RunContext) -> bool:
        """One FFmpeg run, hooks included. Returns True if FFmpeg was executed."""
        self._new_report()
        self._parser = None
        self._set_state("starting")
        started_hooks: list[Any] = []
        executed = False
        try:
            resolved = self._sup.resolve(self.config)
            self._core_command = core_command(resolved)
            ctx._prepare(resolved)
            self._argv = ctx.argv
            try:
                for hook in list(self._sup.hooks):
                    on_start = getattr(hook, "on_start", None)
                    if on_start is not None:
                        await on_start(ctx)
                    started_hooks.append(hook)
            except HookAbort as exc:
                self.log(f"Start aborted by hook: {exc}")
                self._set_state("failed")
                return False
            except Exception as exc:
                self.log(f"Start failed, hook error: {exc!r}")
                self._set_state("failed")
                return False
            self._argv = ctx.argv
            executed = await self._exec_ffmpeg(ctx.argv, resolved, ctx.extra_output_labels)
            return executed
        finally:
            final = self._final()
            if self._exec in ("starting", "finishing"):
                self._set_state("finished")  # cancelled before FFmpeg ran
            with trio.CancelScope(shield=True) as shield:
                shield.deadline = trio.current_time() + self.timings.hook_stop_timeout
                for hook in reversed(started_hooks):
                    on_stop = getattr(hook, "on_stop", None)
                    if on_stop is None:
                        continue
                    try:
                        await on_stop(ctx, final)
                    except Exception as exc:
                        self.log(f"Stop hook error: {exc!r}")
            if shield.cancelled_caught:  # known only once the scope has exited
                self.log("Stop hooks timed out")

    async def _exec_ffmpeg(self, argv: list[str], resolved: ProcessConfig,
                           extra_labels: list[tuple[str, str]] | None = None) -> bool:
        parser = ProgressParser(
            inputs=[(io.id, io.address) for io in resolved.input],
            outputs=[(io.id, io.address) for io in resolved.output] + list(extra_labels or ()),
        )
        self._ffmpeg_scope = trio.CancelScope()
        self._watch_scope = trio.CancelScope()
        # the log is read to its end although a stop cancels the process scope: what FFmpeg
        # prints while it stops (a late prelude, the last lines) belongs to this run's report
        self._read_scope = trio.CancelScope(shield=True)
        proc: Child | None = None
        try:
            async with trio.open_nursery() as nursery:
                try:
                    proc = await nursery.start(self._run_ffmpeg, argv)
                except OSError as exc:
                    self.log(f"Failed to start FFmpeg ({argv[0]}): {exc}")
                    self._set_state("failed")
                    return False
                self.runs += 1
                self._run_ended = trio.Event()
                self._parser = parser
                self._last_progress = trio.current_time()
                self._set_state("finishing" if self._stopping else "running")
                assert proc.stderr is not None
                nursery.start_soon(self._read_stderr, proc.stderr, parser, self._read_scope)
                nursery.start_soon(self._watch, proc, parser, resolved)
            return True
        finally:
            if proc is not None:
                assert proc.returncode is not None
                self._set_state(classify_exit(proc.returncode))
                if proc.returncode < 0:
                    self.log(f"FFmpeg killed by signal {signal_name(-proc.returncode)}")
                with trio.CancelScope(shield=True):
                    for stream in (proc.stdin, proc.stderr):
                        if stream is not None:
                            await stream.aclose()
            self._prelude = parser.prelude
            self._parser = None
            self._report_version += 1
            self._run_ended.set()
            self.cpu_usage = 0.0
            self.memory_bytes = 0

    async def _run_ffmpeg(self, argv: list[str], *,
                          task_status: trio.TaskStatus[Child] = trio.TASK_STATUS_IGNORED) -> None:
        """Spawn FFmpeg (OSError before ``started`` when it cannot be executed), report it,
        wait for it; when cancelled, stop it with :meth:`_deliver_cancel` and wait for it."""
        try:
            child = await spawn(argv, stdin=PIPE, stdout=DEVNULL, stderr=PIPE,
                                record=self._sup.pid_records, record_id=self.id)
            with self._ffmpeg_scope:
                task_status.started(child)
                await wait_or_stop(child, self._deliver_cancel)
        finally:
            self._watch_scope.cancel()
            # FFmpeg is reaped (or never ran): read what is left in the pipe, for a bounded time
            self._read_scope.deadline = trio.current_time() + STDERR_DRAIN_SECONDS

    async def _deliver_cancel(self, proc: Child) -> None:
        """Graceful stop (runs shielded, cancelled as soon as FFmpeg exited): q, TERM, KILL.

        Never waits on a process that cannot act: a stopped FFmpeg (SIGSTOP) is killed at
        once, also when it is found stopped during a grace period.
        """
        if self._exec in ("starting", "running"):
            self._set_state("finishing")
        if proc.stopped:
            self.log(STOPPED_MESSAGE)
            proc.kill()
            return
        if proc.stdin is not None:
            with trio.move_on_after(1):
                try:
                    await proc.stdin.send_all(b"q\n")
                except (trio.BrokenResourceError, trio.ClosedResourceError, trio.BusyResourceError,
                        OSError):
                    pass
        if await self._grace(proc, self.timings.grace_after_q):
            return
        proc.terminate()
        if await self._grace(proc, self.timings.grace_after_term):
            return
        self.log("FFmpeg did not stop after q and SIGTERM; sending SIGKILL")
        proc.kill()

    async def _grace(self, proc: Child, seconds: float) -> bool:
        """Give FFmpeg ``seconds`` to exit; returns True early if it was found stopped (and
        was killed)."""
        deadline = trio.current_time() + seconds
        while (left := deadline - trio.current_time()) > 0:
            await trio.sleep(min(self.timings.stop_poll, left))
            if proc.stopped:
                self.log(STOPPED_MESSAGE)
                proc.kill()
                return True
        return False

    async def _read_stderr(self, stream: trio.abc.ReceiveStream, parser: ProgressParser,
                           scope: trio.CancelScope) -> None:
        """Feed FFmpeg's stderr to ``parser`` until EOF; ``scope`` (shielded) keeps a stop from
        cutting the reading short, its deadline ends it once FFmpeg was reaped."""
        with scope:
            while True:
                try:
                    data = await stream.receive_some(65536)
                except (trio.ClosedResourceError, trio.BrokenResourceError):
                    break
                if not data:
                    break
                advances = parser.advances
                for line in parser.feed(data):
                    self.log(line)
                if parser.advances != advances:
                    self._last_progress = trio.current_time()
        for line in parser.close():
            self.log(line)

    async def _watch(self, proc: Child, parser: ProgressParser, resolved: ProcessConfig) -> None:
        """Every second: kill a stopped (SIGSTOP) FFmpeg at once, sample CPU/RSS, enforce
        limits and the stale timeout."""
        limits = resolved.limits
        watch = LimitWatch(limits.cpu_usage, limits.memory_mbytes * 1024 * 1024,
                           limits.waitfor_seconds)
        meter = CpuMeter()
        stale = resolved.stale_timeout_seconds
        with self._watch_scope:
            first = sample(proc.pid)
            if first is not None:
                meter.update(trio.current_time(), first.cpu_seconds)
                self.memory_bytes = first.rss_bytes
            while True:
                await trio.sleep(self.timings.watch_interval)
                now = trio.current_time()
                if proc.stopped:
                    self.log(STOPPED_MESSAGE)
                    proc.kill()
                    return
                cpu: float | None = None
                mem: int | None = None
                s = sample(proc.pid)
                if s is not None:
                    cpu = meter.update(now, s.cpu_seconds)
                    mem = s.rss_bytes
                    self.memory_bytes = mem
                    if cpu is not None:
                        self.cpu_usage = cpu
                reason = watch.update(now, cpu, mem) if watch.enabled else None
                if reason is not None:
                    self.log(f"Stopping because limits are exceeded: {reason}")
                    try:
                        proc.kill()
                    except OSError:
                        pass
                    return
                if stale > 0 and now - self._last_progress >= stale:
                    self.log(f"Stopping because of stale timeout: no progress for {stale} s")
                    self._ffmpeg_scope.cancel()
                    return
