"""A pool of worker threads that is polite to hosts: the scheduling of `lrlivae.fetch.download`.

`HostPool(tasks, step, workers=, per_host=).run()` calls `step(task)` on `workers` threads and yields each
task once `step` returns None (settled). Tasks are handed out round-robin over their `host` attribute,
never one of a host that already has `per_host` tasks in flight, so a thread is not parked behind a busy
host while others wait. When `step` returns a number of seconds instead, the task goes back to its host's
queue, due after that delay (a retry after backoff or Retry-After), and the thread takes other work
meanwhile. An exception in `step` (a local error: disk full ...) stops the pool and is raised by `run`;
so is anything that interrupts the caller (Ctrl-C): the threads finish their current step and end.

`HostLimiter` is the hard cap under it: at most `per_host` holders of a host's slot at a time (the HTTP
layer holds one per request, so redirects to another host count against that host).
"""
from __future__ import annotations

import queue
import threading
import time
from collections import Counter, deque
from heapq import heappop, heappush
from itertools import count
from typing import Callable, Iterator, Sequence


class HostPool:
    def __init__(self, tasks: Sequence, step: Callable[[object], float | None], *, workers: int, per_host: int,
                 stop: threading.Event | None = None):
        self.step, self.workers, self.per_host = step, workers, per_host
        self.stop = stop or threading.Event()
        self.queues: dict[str, deque] = {}
        for t in tasks:
            self.queues.setdefault(t.host, deque()).append(t)
        self.ring = deque(self.queues)  # the hosts with queued tasks, in round-robin order
        self.running: Counter = Counter()
        self.later: list = []  # (due, seq, task) of tasks waiting for a retry
        self.left = len(tasks)
        self._cv, self._seq = threading.Condition(), count()
        self._finished: queue.Queue = queue.Queue()

    def run(self) -> Iterator:
        """Yield every task as it settles (in no fixed order)."""
        n = self.left
        threads = [threading.Thread(target=self._work, name=f"fetch-{k}", daemon=True)
                   for k in range(min(self.workers, n))]
        try:
            for t in threads:
                t.start()
            while n:
                try:
                    item = self._finished.get(timeout=0.5)
                except queue.Empty:
                    if not any(t.is_alive() for t in threads):
                        raise RuntimeError("the pool stopped before every task settled") from None
                    continue
                if isinstance(item, BaseException):
                    raise item
                n -= 1
                yield item
        finally:
            self.stop.set()
            with self._cv:
                self._cv.notify_all()
            for t in threads:
                t.join()

    def _work(self) -> None:
        try:
            while (task := self._take()) is not None:
                wait = self.step(task)
                self._done(task, wait)
                if wait is None:
                    self._finished.put(task)
        except BaseException as e:
            self.stop.set()
            self._finished.put(e)

    def _take(self):
        """The next task, or None when every task is settled or the pool stops."""
        with self._cv:
            while self.left and not self.stop.is_set():
                now = time.monotonic()
                while self.later and self.later[0][0] <= now:
                    task = heappop(self.later)[2]
                    if not self.queues[task.host]:
                        self.ring.append(task.host)
                    self.queues[task.host].appendleft(task)
                for _ in range(len(self.ring)):  # at most (busy hosts + 1) turns: a busy host has a thread
                    host = self.ring.popleft()
                    if self.running[host] < self.per_host:
                        task = self.queues[host].popleft()
                        if self.queues[host]:
                            self.ring.append(host)
                        self.running[host] += 1
                        return task
                    self.ring.append(host)
                self._cv.wait(min(self.later[0][0] - now, 0.5) if self.later else 0.5)
            return None

    def _done(self, task, wait: float | None) -> None:
        with self._cv:
            self.running[task.host] -= 1
            if wait is None:
                self.left -= 1
            else:
                heappush(self.later, (time.monotonic() + wait, next(self._seq), task))
            self._cv.notify_all()


class HostLimiter:
    """At most `per_host` holders of a host's slot at a time."""

    def __init__(self, per_host: int):
        self.per_host = per_host
        self._cv = threading.Condition()
        self._active: Counter = Counter()

    def acquire(self, host: str, stop: threading.Event | None = None) -> None:
        with self._cv:
            while self._active[host] >= self.per_host:
                if stop is not None and stop.is_set():
                    raise InterruptedError(f"stopped while waiting for a slot of {host}")
                self._cv.wait(0.2)
            self._active[host] += 1

    def release(self, host: str) -> None:
        with self._cv:
            self._active[host] -= 1
            self._cv.notify_all()
