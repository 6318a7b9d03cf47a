"""Ranks fail together: one rank's error stops every rank within seconds, with the same message.

Without this, a rank that fails (a bad batch, a teacher-cache build, a non-finite loss) exits while the
other ranks wait in their next collective until the process group's timeout (30 minutes by default),
and a launcher that stops them afterwards leaves no word of why. :func:`fail_together` wraps a command's
work (``tools/train.py``, ``tools/test.py``); in a distributed run:

* the failing rank publishes ``rank R of N: <message>`` in the process group's key-value store (the
  first failure wins), waits until every other rank has seen it (``SEEN_WAIT_S`` at most: the store may
  live in this process) and exits, which also breaks the collective the others may be blocked in;
* a watchdog thread on every rank polls the store; when another rank's failure appears it interrupts
  the main thread, and SIGTERM (the launcher stopping the remaining ranks) does the same;
* every rank then raises :class:`~xmodal.errors.RankFailedError` with the published message, so each
  prints the same ``error: rank R of N: ...`` line;
* a rank still alive ``GRACE_S`` seconds after it saw the failure (stuck in a GPU collective the failed
  rank never joins) prints that line and ends its process.

An error every rank raises at the same step with the same text (the non-finite loss guard's) carries
``every_rank = True`` and is published without the rank prefix. :func:`on_rank_zero` runs work on rank 0
while the others wait (the teacher cache's build) and raises rank 0's error on every rank.
"""

from __future__ import annotations

import _thread
import contextlib
import json
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator

import torch.distributed as dist

from xmodal.errors import RankFailedError

# one set of keys per attempt: torchrun's --max-restarts starts the ranks again with the same store
_ATTEMPT = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")
FAILURE_KEY = f"xmodal/{_ATTEMPT}/failure"
SEEN_KEY = f"xmodal/{_ATTEMPT}/failure_seen"
POLL_S = 0.2  # how often the watchdog looks at the store
SEEN_WAIT_S = 5.0  # how long the failing rank waits for the others to read its message
GRACE_S = 10.0  # how long a rank that saw another's failure may take to stop by itself


class _Terminated(BaseException):
    """SIGTERM inside :func:`fail_together`: the launcher stops this rank because another one ended."""


def distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def error_text(error: BaseException) -> str:
    """The error's message as a command prints it (a ``KeyError`` without its quotes)."""
    if isinstance(error, KeyError) and len(error.args) == 1 and isinstance(error.args[0], str):
        return error.args[0]
    return str(error) or type(error).__name__


def _store():
    """The default process group's key-value store (the launcher's rendezvous store), or None."""
    from torch.distributed import distributed_c10d

    getter = getattr(distributed_c10d, "_get_default_store", None)
    try:
        return getter() if getter is not None else None
    except (RuntimeError, ValueError):
        return None


class _Watch:
    """The watchdog of one process: sees another rank's published failure and stops this one."""

    def __init__(self, store, rank: int) -> None:
        self.store, self.rank = store, rank
        self.record: dict | None = None
        self.handling = False  # the main thread is already reporting: no interrupt
        self._seen_sent = False
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="xmodal-rank-watch", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def mark_seen(self) -> None:
        """Tell the failed rank that this one has its message (once per process)."""
        with self._lock:
            if self._seen_sent:
                return
            self._seen_sent = True
        with contextlib.suppress(Exception):
            self.store.add(SEEN_KEY, 1)

    def _run(self) -> None:
        while not self._stop.wait(POLL_S):
            try:
                if not self.store.check([FAILURE_KEY]):
                    continue
                record = json.loads(self.store.get(FAILURE_KEY))
            except Exception:  # the store is gone with its rank: the process group tells the main thread
                return
            self.record = record
            if record["rank"] == self.rank:
                return
            self.mark_seen()
            if not self.handling:
                _thread.interrupt_main()
            time.sleep(GRACE_S)  # a daemon thread: gone with the process when the main thread ends it
            # still alive: stuck where no interrupt reaches (a GPU collective); stop with the same message
            sys.stderr.write(f"error: {record['message']}\n")
            sys.stderr.flush()
            os._exit(2)


_WATCH: list[_Watch] = []  # the running watchdog, if any
_ACTIVE: list[bool] = []  # inside fail_together
_ZERO_CALLS = [0]  # on_rank_zero calls so far: the same sequence on every rank
_SIGTERM_PID = [0]  # the process whose SIGTERM handler raises (not its forked data loader workers)


def _on_sigterm(signum, frame) -> None:
    if os.getpid() != _SIGTERM_PID[0]:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTERM)
        return
    raise _Terminated()


def watch_peers() -> None:
    """Start the watchdog inside :func:`fail_together` once the process group exists (a run on GPUs
    starts it in the Runner, after the command entered ``fail_together``)."""
    if not _ACTIVE or _WATCH or not distributed():
        return
    store = _store()
    if store is None:
        return
    _WATCH.append(_Watch(store, dist.get_rank()))
    if threading.current_thread() is threading.main_thread():
        _SIGTERM_PID[0] = os.getpid()
        signal.signal(signal.SIGTERM, _on_sigterm)


@contextlib.contextmanager
def fail_together() -> Iterator[None]:
    """In a distributed run, an error on any rank ends every rank with the same
    :class:`~xmodal.errors.RankFailedError`; a single process is left as it is."""
    previous = signal.getsignal(signal.SIGTERM)
    _ACTIVE.append(True)
    failed = False
    watch_peers()
    try:
        yield
    except BaseException as error:
        if not distributed() or (isinstance(error, SystemExit) and not error.code):
            raise
        failed = True
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, signal.SIG_IGN)  # reporting now: the launcher's SIGTERM must not cut it short
        try:
            failure = stop_together(error)
        except KeyboardInterrupt:  # the watchdog's interrupt, landing while this rank reports its own error
            failure = stop_together(error)
        raise failure from error
    finally:
        _ACTIVE.pop()
        if _WATCH and not _ACTIVE:
            watch = _WATCH.pop()
            if watch.record is None or watch.record["rank"] == watch.rank:
                watch.stop()  # otherwise its grace timer stays armed until the process ends
        if not failed and previous is not None and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, previous)  # after a failure SIGTERM stays ignored: the process is ending


def stop_together(error: BaseException) -> RankFailedError:
    """The error every rank raises for ``error`` (this rank's own failure, or the interruption that
    another rank's failure caused here): the first failure any rank published."""
    watch = _WATCH[-1] if _WATCH else None
    if watch is not None:
        watch.handling = True
    rank, world = dist.get_rank(), dist.get_world_size()
    if isinstance(error, RankFailedError) or getattr(error, "every_rank", False):
        mine = error_text(error)
    elif isinstance(error, _Terminated):
        mine = f"rank {rank} of {world}: stopped by SIGTERM"
    else:
        mine = f"rank {rank} of {world}: {error_text(error)}"
    record = {"rank": rank, "message": mine}
    first = watch.record if watch is not None else None
    store = watch.store if watch is not None else _store()
    if first is None and store is not None:
        with contextlib.suppress(Exception):
            first = json.loads(store.compare_set(FAILURE_KEY, "", json.dumps(record)))
    first = first or record
    if store is not None:
        if first["rank"] != rank:
            if watch is not None:
                watch.mark_seen()
            else:
                with contextlib.suppress(Exception):
                    store.add(SEEN_KEY, 1)
        elif first == record:
            _wait_until_seen(store, world)
    failure = RankFailedError(first["message"])
    failure.here = first == record  # this rank's own error (a command shows its traceback if it is a bug)
    return failure


def _wait_until_seen(store, world: int) -> None:
    deadline = time.monotonic() + SEEN_WAIT_S
    with contextlib.suppress(Exception):
        while store.add(SEEN_KEY, 0) < world - 1 and time.monotonic() < deadline:
            time.sleep(0.05)


def on_rank_zero(work: Callable[[], object]) -> None:
    """``work()`` on rank 0 while the other ranks wait, polling the store (so a build may take longer
    than the process group's timeout); an error on rank 0 is raised there and, as
    :class:`~xmodal.errors.RankFailedError` with the same ``rank 0 of N: ...`` message, on every other rank."""
    if not distributed():
        work()
        return
    rank, world = dist.get_rank(), dist.get_world_size()
    _ZERO_CALLS[0] += 1
    key = f"xmodal/{_ATTEMPT}/rank0/{_ZERO_CALLS[0]}"
    store = _store()
    if rank == 0:
        outcome = "ok"
        try:
            work()
        except BaseException as error:
            outcome = f"error:rank 0 of {world}: {error_text(error)}"
            raise
        finally:
            if store is not None:
                store.set(key, outcome)
            else:
                dist.broadcast_object_list([outcome], src=0)
        return
    if store is not None:
        while not store.check([key]):
            time.sleep(POLL_S)
        outcome = store.get(key).decode()
    else:
        box = [None]
        dist.broadcast_object_list(box, src=0)
        outcome = box[0]
    if outcome != "ok":
        raise RankFailedError(outcome[len("error:"):])
