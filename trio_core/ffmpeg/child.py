"""Child processes (FFmpeg and helpers) that cannot outlive the server, however it dies.

Every child gets, before it execs:

* a **parent-death signal** (Linux ``PR_SET_PDEATHSIG``, SIGKILL): when the server dies —
  SIGKILL, OOM kill, crash — the kernel kills the child. Between fork and ``prctl`` the server
  may already have died; the child then checks ``getppid()`` (as prctl(2) advises) and kills
  itself.
* its **own process group** (``pgid == pid``): signals from the engine go to the whole group,
  and a terminal's Ctrl-C reaches the server only (which then stops its children in order).

How the signal is set: CPython can set it only from a ``preexec_fn``, which forces ``fork()``
(instead of ``vfork()``) with the GIL held — the trio loop then stalls for as long as the kernel
copies the server's page tables (tens of ms, growing with RSS; ``python -m bench.spawn``). So
when util-linux's ``setpriv`` is there (checked once), the child is started through it instead
(the fast ``vfork`` path): ``setpriv --pdeathsig KILL -- /bin/sh -c <check> <server pid> argv…``
sets the signal, ``sh`` checks the parent pid from /proc and ``exec``s the program — same pid
all along. Without ``setpriv`` the ``preexec_fn`` is used. Either way a missing or
non-executable program raises OSError from :func:`spawn`, as :class:`subprocess.Popen` would.

The trap: the parent-death signal fires when the *thread* that forked the child exits, not the
process. ``trio.run_process`` forks in a trio worker thread, and trio retires idle worker
threads after ~10 s, which would kill a healthy child. So :func:`spawn` forks from a **thread
of its own per child that lives exactly as long as the child**: it forks, then blocks in
``waitid(WNOWAIT)`` until the child has exited, tells the trio thread, and ends. The child is
reaped by the trio thread only (:meth:`Child.wait`), so until :meth:`Child.wait` returns the pid
(and the process group id) cannot be recycled and signals always reach the right process.

**The one spawn path.** Every program the server starts — FFmpeg processes, the API probe,
the skills probe and its device helpers, the WebRTC input probe — is started here, so each gets
the parent-death signal and its own process group. With ``record`` (a :class:`PidRecorder`,
the engine's pid records) the child is recorded right after it was started and the record is
removed when :meth:`Child.wait` has reaped it, so the next server start can end it if a
parent-death signal could not (see :mod:`trio_core.engine.pid_records`).

Contract: whoever calls :func:`spawn` owns the :class:`Child` and must wait for it
(:meth:`Child.wait`, :func:`wait_or_stop` or :meth:`Child.aclose`) within its trio scope, and
close its pipes (:meth:`Child.aclose` does both). :func:`spawn` itself is not cancellable (a
fork takes milliseconds; a cancelled caller would leak the child); the waits are.
:func:`run_process` is spawn + wait + close for short runs.
"""

from __future__ import annotations

import ctypes
import errno
import os
import shutil
import signal
import subprocess
import threading
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Protocol

import trio

from trio_core.ffmpeg.procfs import ProcStat, read_proc_stat

__all__ = ["Child", "PIPE", "DEVNULL", "PidRecorder", "run_process", "spawn", "wait_or_stop"]

PIPE = subprocess.PIPE
DEVNULL = subprocess.DEVNULL
PARENT_DEATH_SIGNAL = signal.SIGKILL
_PR_SET_PDEATHSIG = 1
#: run by ``sh`` between ``setpriv`` and the program: $0 = the server's pid; give up if the
#: parent already changed (the server died before the parent-death signal was set)
_CHECK_PARENT = 'read -r pid comm state ppid rest < /proc/self/stat; [ "$ppid" = "$0" ] || exit 137; exec "$@"'
#: "auto" (setpriv when usable, else preexec_fn), "setpriv" or "preexec" (tests force one)
launcher = "auto"
_setpriv: str | None | bool = False  # False = not checked yet


def _load_prctl() -> Callable[..., int] | None:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        fn = libc.prctl
    except (OSError, AttributeError):  # not Linux/glibc: no parent-death signal
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    fn.restype = ctypes.c_int
    return fn  # type: ignore[no-any-return]


_prctl = _load_prctl()


def _child_setup(parent_pid: int, sig: int) -> None:
    """Runs in the child between fork and exec (keep it minimal: no locks, no imports)."""
    if _prctl is not None:
        _prctl(_PR_SET_PDEATHSIG, sig, 0, 0, 0)
        if os.getppid() != parent_pid:  # the server died before prctl took effect
            os.kill(os.getpid(), signal.SIGKILL)


def _server_pid() -> int:
    """The pid a child must have as its parent once its parent-death signal is set."""
    return os.getpid()


def _find_setpriv() -> str | None:
    """``setpriv`` if it is there and knows ``--pdeathsig`` (util-linux >= 2.33)."""
    path = shutil.which("setpriv")
    if path is None or not os.path.exists("/bin/sh") or not os.path.exists("/proc/self/stat"):
        return None
    try:
        ok = subprocess.run([path, "--pdeathsig", "KILL", "--", "/bin/sh", "-c", "exit 0"],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, timeout=10).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return None
    return path if ok else None


async def _setpriv_path() -> str | None:
    global _setpriv
    if launcher == "preexec" or _prctl is None:
        return None
    if _setpriv is False:
        _setpriv = await trio.to_thread.run_sync(_find_setpriv)
    if launcher == "setpriv" and _setpriv is None:
        raise RuntimeError("setpriv with --pdeathsig is not available")
    return _setpriv  # type: ignore[return-value]


def _executable(program: str, cwd: str | None, env: Mapping[str, str] | None) -> str:
    """Resolve ``program`` like execvp would; OSError (ENOENT/EACCES) if it cannot be run."""
    if "/" in program:
        path = os.path.join(cwd, program) if cwd else program
        if not os.path.exists(path):
            raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), program)
        if os.path.isdir(path) or not os.access(path, os.X_OK):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), program)
        return program
    search = (env if env is not None else os.environ).get("PATH", os.defpath)
    found = shutil.which(program, path=search)
    if found is None:
        raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), program)
    return found


class PidRecorder(Protocol):
    """Where started children are recorded while they run (the engine's pid records)."""

    def add(self, pid: int, start_time: int, process_id: str, program: str) -> None:
        """Record a started child (must not raise)."""

    def remove(self, pid: int) -> None:
        """Forget a reaped child (must not raise)."""


class Child:
    """A running (or exited, not yet reaped) child process. Create with :func:`spawn`.

    ``pid``, ``args``, ``stdin`` (:class:`trio.lowlevel.FdStream` when ``stdin=PIPE``),
    ``stdout``/``stderr`` (likewise), ``start_time`` (clock ticks after boot, from /proc: with
    ``pid`` it identifies the process), ``returncode`` (None until reaped by :meth:`wait`;
    negative = killed by that signal, as :mod:`subprocess`).
    """

    def __init__(self, popen: subprocess.Popen[bytes], args: list[str], exited: trio.Event,
                 stdin: trio.lowlevel.FdStream | None, stdout: trio.lowlevel.FdStream | None,
                 stderr: trio.lowlevel.FdStream | None,
                 record: PidRecorder | None = None) -> None:
        self._popen = popen
        self.pid = popen.pid
        self.args = args
        self.stdin = stdin
        self.stdout = stdout
        self.stderr = stderr
        self._exited = exited  # set (in the trio thread) once the child has exited, unreaped
        stat = read_proc_stat(self.pid)
        self.start_time = stat.start_time if stat is not None else 0
        self._record = record

    @property
    def returncode(self) -> int | None:
        return self._popen.returncode

    async def wait(self) -> int:
        """Wait until the child has exited, reap it, return its return code. Cancellable."""
        await self._exited.wait()
        if self._popen.returncode is None:
            self._popen.poll()  # reaps: the child has exited (the watcher thread saw it)
            if self._popen.returncode is None:  # pragma: no cover - reaped behind our back
                self._popen.returncode = 0
        if self._record is not None:
            record, self._record = self._record, None
            record.remove(self.pid)
        return self._popen.returncode

    def stat(self) -> ProcStat | None:
        """The child's /proc stat while it is not reaped (None afterwards)."""
        if self._popen.returncode is not None:
            return None
        return read_proc_stat(self.pid)

    @property
    def stopped(self) -> bool:
        """True while the child is stopped (SIGSTOP etc.): only SIGKILL/SIGCONT act on it."""
        st = self.stat()
        return st is not None and st.stopped

    def send_signal(self, sig: int) -> None:
        """Signal the child's process group (no-op once reaped: the ids may be recycled)."""
        if self._popen.returncode is not None:
            return
        try:
            os.killpg(self.pid, sig)
        except ProcessLookupError:
            pass
        except PermissionError:  # the child left its group (setsid/setpgid): signal it alone
            try:
                os.kill(self.pid, sig)
            except ProcessLookupError:
                pass

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    async def aclose(self) -> None:
        """Kill the child if still running, reap it and close its pipes (shielded)."""
        with trio.CancelScope(shield=True):
            if self._popen.returncode is None:
                self.kill()
                await self.wait()
            for stream in (self.stdin, self.stdout, self.stderr):
                if stream is not None:
                    await stream.aclose()


def _pipe_to_child() -> tuple[trio.lowlevel.FdStream, int]:
    r, w = os.pipe()
    return trio.lowlevel.FdStream(w), r


def _pipe_from_child() -> tuple[trio.lowlevel.FdStream, int]:
    r, w = os.pipe()
    return trio.lowlevel.FdStream(r), w


async def spawn(argv: Sequence[str], *, stdin: int | None = None, stdout: int | None = None,
                stderr: int | None = None, cwd: str | None = None,
                env: Mapping[str, str] | None = None,
                death_signal: int = PARENT_DEATH_SIGNAL,
                record: PidRecorder | None = None, record_id: str = "") -> Child:
    """Start ``argv`` (see the module docstring). ``stdin``/``stdout``/``stderr``: None
    (inherit), :data:`PIPE` (a trio stream on the :class:`Child`), :data:`DEVNULL` or an fd.
    ``record``: record the child there as ``record_id`` until it is reaped.

    Raises OSError when the program cannot be executed (nothing is left behind then).
    Not cancellable (returns within the time of a fork + exec).
    """
    args = list(argv)
    setpriv = await _setpriv_path()
    parent_pid = _server_pid()
    if setpriv is not None:
        program = _executable(args[0], cwd, env)
        signame = signal.Signals(death_signal).name.removeprefix("SIG")
        launch = [setpriv, "--pdeathsig", signame, "--", "/bin/sh", "-c", _CHECK_PARENT,
                  str(parent_pid), program, *args[1:]]
        preexec: Callable[[], None] | None = None
    else:
        launch = args

        def preexec() -> None:
            _child_setup(parent_pid, death_signal)
    ours: list[trio.lowlevel.FdStream] = []
    theirs: list[int] = []
    child_in: int | None = stdin
    child_out: int | None = stdout
    child_err: int | None = stderr
    s_in = s_out = s_err = None
    try:
        if stdin == PIPE:
            s_in, child_in = _pipe_to_child()
            ours.append(s_in)
            theirs.append(child_in)
        if stdout == PIPE:
            s_out, child_out = _pipe_from_child()
            ours.append(s_out)
            theirs.append(child_out)
        if stderr == PIPE:
            s_err, child_err = _pipe_from_child()
            ours.append(s_err)
            theirs.append(child_err)
        token = trio.lowlevel.current_trio_token()
        spawned = trio.Event()
        exited = trio.Event()
        result: list[subprocess.Popen[bytes] | BaseException] = []

        def popen() -> subprocess.Popen[bytes]:
            return subprocess.Popen(
                launch, stdin=child_in, stdout=child_out, stderr=child_err, cwd=cwd,
                env=dict(env) if env is not None else None, close_fds=True, process_group=0,
                preexec_fn=preexec,
            )

        def deliver_spawned(res: subprocess.Popen[bytes] | BaseException) -> None:
            result.append(res)
            spawned.set()

        def watcher() -> None:
            # this thread is the child's parent for PR_SET_PDEATHSIG: it must live until the
            # child has exited, and only then end
            res: subprocess.Popen[bytes] | BaseException
            try:
                res = popen()
            except BaseException as exc:
                res = exc
            try:
                token.run_sync_soon(deliver_spawned, res)
            except trio.RunFinishedError:  # nobody to own the child any more
                if isinstance(res, subprocess.Popen):
                    res.kill()
                    res.wait()
                return
            if isinstance(res, BaseException):
                return
            try:
                os.waitid(os.P_PID, res.pid, os.WEXITED | os.WNOWAIT)
            except ChildProcessError:
                pass
            try:
                token.run_sync_soon(exited.set)
            except trio.RunFinishedError:
                pass

        thread = threading.Thread(target=watcher, name=f"child-watch {argv[0]}", daemon=True)
        with trio.CancelScope(shield=True):
            thread.start()
            await spawned.wait()
        res = result[0]
        if isinstance(res, BaseException):
            raise res  # OSError: cannot execute (the pipes are closed below)
        child = Child(res, args, exited, s_in, s_out, s_err, record)
        ours.clear()
        if record is not None:
            record.add(child.pid, child.start_time, record_id, os.path.basename(args[0]))
        return child
    finally:
        for fd in theirs:
            os.close(fd)
        for stream in ours:
            stream.close()


async def wait_or_stop(child: Child, stop: Callable[[Child], Awaitable[Any]]) -> int:
    """Wait for ``child`` to exit. If cancelled, run ``stop(child)`` (shielded) until the child
    has exited — ``stop`` is cancelled at that moment — then re-raise the cancellation."""
    try:
        return await child.wait()
    except BaseException:
        with trio.CancelScope(shield=True):
            async with trio.open_nursery() as nursery:
                stopper = trio.CancelScope()

                async def run_stop() -> None:
                    with stopper:
                        await stop(child)

                nursery.start_soon(run_stop)
                await child.wait()
                stopper.cancel()
        raise


async def _kill(child: Child) -> None:
    child.kill()


async def run_process(argv: Sequence[str], *, stdin: int | None = DEVNULL,
                      capture_stdout: bool = False, capture_stderr: bool = False,
                      env: Mapping[str, str] | None = None,
                      record: PidRecorder | None = None, record_id: str = "",
                      ) -> subprocess.CompletedProcess[bytes]:
    """Run ``argv`` to completion (like ``trio.run_process(..., check=False)``, the subset we
    use), as a :func:`spawn` child. Cancellation: the child is killed and reaped and its pipes
    are closed before the cancellation propagates."""
    child = await spawn(argv, stdin=stdin, stdout=PIPE if capture_stdout else None,
                        stderr=PIPE if capture_stderr else None, env=env, record=record,
                        record_id=record_id)
    chunks: dict[str, list[bytes]] = {"stdout": [], "stderr": []}

    async def drain(stream: trio.abc.ReceiveStream, key: str) -> None:
        async for chunk in stream:
            chunks[key].append(bytes(chunk))

    try:
        async with trio.open_nursery() as nursery:
            if child.stdout is not None:
                nursery.start_soon(drain, child.stdout, "stdout")
            if child.stderr is not None:
                nursery.start_soon(drain, child.stderr, "stderr")
            code = await wait_or_stop(child, _kill)
    finally:
        await child.aclose()
    return subprocess.CompletedProcess(
        list(argv), code,
        b"".join(chunks["stdout"]) if capture_stdout else None,
        b"".join(chunks["stderr"]) if capture_stderr else None,
    )
