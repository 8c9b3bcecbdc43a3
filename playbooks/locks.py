"""One change at a time per device: a lock per device, held across threads and across processes (the suite and a
`soc playbook run` on the same machine), with a timeout.

Inside a process a threading lock orders the waiters; across processes an flock on ``<lock_dir>/<device>.lock``
does. Both are released when the holder leaves the ``with`` block, and the kernel drops the flock if the process dies,
so a killed suite never leaves a device locked.
"""

from __future__ import annotations

import fcntl
import os
import re
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


class LockTimeout(Exception):
    pass


class DeviceLocks:
    def __init__(self, lock_dir: str | os.PathLike, timeout: float):
        self.dir = Path(lock_dir)
        self.timeout = timeout
        self._threads: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    def _thread_lock(self, device_id: str) -> threading.Lock:
        with self._guard:
            return self._threads.setdefault(device_id, threading.Lock())

    @contextmanager
    def hold(self, device_id: str, timeout: float | None = None) -> Iterator[float]:
        """Hold the device's lock; yields how long the wait was. Raises LockTimeout after `timeout` seconds."""
        timeout = self.timeout if timeout is None else timeout
        started = time.monotonic()
        local = self._thread_lock(device_id)
        if not local.acquire(timeout=timeout):
            raise LockTimeout(f"device {device_id} is busy with another change (waited {timeout:.0f}s)")
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            safe = re.sub(r"[^A-Za-z0-9_.-]", "_", device_id)
            fd = os.open(self.dir / f"{safe}.lock", os.O_RDWR | os.O_CREAT, 0o600)
            try:
                delay = 0.005
                while True:
                    try:
                        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                        break
                    except BlockingIOError:
                        if time.monotonic() - started >= timeout:
                            raise LockTimeout(f"device {device_id} is locked by another process "
                                              f"(waited {timeout:.0f}s)") from None
                        time.sleep(delay)
                        delay = min(delay * 2, 0.1)
                try:
                    yield time.monotonic() - started
                finally:
                    fcntl.flock(fd, fcntl.LOCK_UN)
            finally:
                os.close(fd)
        finally:
            local.release()
