"""Process hygiene for long-running stages: they end with the job that started them.

:func:`die_with_parent` makes a stage (and the worker processes it starts with the
``spawn`` method, e.g. nnU-Net's data augmentation) end when whoever started it ends,
even by SIGKILL: Linux's parent-death signal for the direct parent, and a watch on the
Snakemake process named by :data:`SUPERVISOR_VARIABLE` (Snakemake runs a job through a
shell, which outlives a killed Snakemake). A SIGTERM or SIGHUP raises :class:`Terminated`
instead of ending the process at once, so temporary files are removed on the way out, and
the stage's own child processes (e.g. NiftyReg started by nipype) are ended too.

:func:`exclusive_lock` keeps a second process off a file another is writing (e.g. two
trainers on one checkpoint).
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import logging
import os
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType

log = logging.getLogger(__name__)

SUPERVISOR_VARIABLE = "IUSYNTH_SUPERVISOR_PID"  # set by the workflow to Snakemake's pid
PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>
WATCH_INTERVAL_S = 1.0


class Terminated(SystemExit):
    """The process received SIGTERM or SIGHUP (e.g. its parent died); exits 128 + signal."""


def _raise_terminated(signum: int, frame: FrameType | None) -> None:
    """Signal handler: end every child process, then unwind (``finally`` blocks run)."""
    end_children()
    raise Terminated(128 + signum)


def _start_time(pid: int) -> str | None:
    """The start time of a process (field 22 of ``/proc/<pid>/stat``), None if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rpartition(")")[2].split()[19]


def _parent_of(pid: int) -> int | None:
    """The parent pid of a process, None if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rpartition(")")[2].split()[1])


def _ancestors() -> list[int]:
    """The pids above this process, its parent first, up to (without) pid 1."""
    chain = []
    pid = _parent_of(os.getpid())
    while pid is not None and pid > 1 and pid not in chain:
        chain.append(pid)
        pid = _parent_of(pid)
    return chain


def children() -> list[int]:
    """Every live descendant of this process (children first), from ``/proc``."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            parent = _parent_of(int(entry.name))
            if parent is not None:
                parents[int(entry.name)] = parent
    found: list[int] = []
    frontier = [os.getpid()]
    while frontier:
        below = [pid for pid, parent in parents.items() if parent in frontier]
        found.extend(below)
        frontier = below
    return found


def end_children() -> None:
    """Send SIGTERM to every descendant of this process (those already gone are skipped)."""
    for pid in children():
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            continue


def _watch(pid: int, started: str) -> None:
    """Poll ``pid``; when it is gone (or its pid was reused), SIGTERM this process."""
    while _start_time(pid) == started:
        time.sleep(WATCH_INTERVAL_S)
    log.error("the job's supervisor (pid %d) has ended; stopping", pid)
    os.kill(os.getpid(), signal.SIGTERM)


def die_with_parent() -> None:
    """End this process with the Snakemake that started the job (and with its parent).

    SIGTERM always raises :class:`Terminated` (after ending this process's children). When
    the environment names a supervising process (:data:`SUPERVISOR_VARIABLE`, set by the
    workflow) that is an ancestor of this one, the stage is a job of a run: SIGHUP does
    the same, the Linux parent-death signal (SIGTERM) is set and a daemon thread watches
    the supervisor. A stage run by hand (e.g. under ``nohup``) keeps its own parent-death
    and hang-up behaviour.
    """
    signal.signal(signal.SIGTERM, _raise_terminated)
    supervisor = os.environ.get(SUPERVISOR_VARIABLE, "")
    if not (supervisor.isdigit() and int(supervisor) in _ancestors()):
        return
    signal.signal(signal.SIGHUP, _raise_terminated)
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        prctl = libc.prctl
    except (OSError, AttributeError):
        prctl = None
    if prctl is not None:
        parent = os.getppid()
        if prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) != 0:
            error = os.strerror(ctypes.get_errno())
            log.warning("could not set the parent-death signal (%s)", error)
        if os.getppid() != parent:  # the parent died before the signal was set
            os.kill(os.getpid(), signal.SIGTERM)
    started = _start_time(int(supervisor))
    if started is not None:
        threading.Thread(
            target=_watch, args=(int(supervisor), started), daemon=True, name="supervisor"
        ).start()


def supervise_jobs() -> None:
    """Name this process (Snakemake, parsing the workflow) as the supervisor of its jobs.

    Stages started below it (:func:`die_with_parent`) stop when it ends.
    """
    os.environ[SUPERVISOR_VARIABLE] = str(os.getpid())


def _holder(lock: Path) -> str:
    """The pid written in a lock file, or ``unknown``."""
    try:
        text = lock.read_text().strip()
    except OSError:
        return "unknown"
    return text if text.isdigit() else "unknown"


@contextmanager
def exclusive_lock(path: Path, what: str = "file") -> Iterator[Path]:
    """Hold an exclusive ``flock`` on ``<path>.lock`` (beside ``path``) for the block.

    The lock file holds the pid of the process that has it. A second process asking for
    the same lock gets a RuntimeError naming ``path``, that pid, and what to do. The lock
    is released when the block ends or the process dies (the file stays).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = path.with_name(path.name + ".lock")
    handle = open(lock, "a+")
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            if error.errno not in (errno.EAGAIN, errno.EACCES):
                raise
            pid = _holder(lock)
            raise RuntimeError(
                f"{path}: another process (pid {pid}) is using this {what} (lock {lock}); "
                f"wait for it to finish, or stop it (kill {pid}) and run again"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        yield lock
    finally:
        handle.close()
