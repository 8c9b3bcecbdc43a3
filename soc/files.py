"""Writing a file so that no reader ever sees half of it: the one way the suite replaces a file's content."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def atomic_write(path: str | os.PathLike, data: bytes | str, *, mode: int | None = None, durable: bool = True,
                 encoding: str = "utf-8") -> Path:
    """Replace ``path`` with ``data`` (text is written in ``encoding``): a reader sees the old file or the new one,
    never a part, and a failure leaves the old file as it was (the temporary file is removed).

    The data goes to a temporary file in the same folder, which is then renamed over ``path``. ``durable`` (the
    default) fsyncs the file before the rename and the folder after it, so the new content also survives a crash of
    the machine; a cache that can be rebuilt may pass ``durable=False``. ``mode`` sets the new file's permission
    bits; without it the file is readable and writable by its owner only (0o600).
    """
    path = Path(path)
    payload = data.encode(encoding) if isinstance(data, str) else data
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(payload)
            if durable:
                out.flush()
                os.fsync(out.fileno())
        if mode is not None:
            os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    if durable:
        fsync_folder(path.parent)
    return path


def fsync_folder(folder: str | os.PathLike) -> None:
    """Make a folder's entries (a file created, renamed or deleted in it) survive a crash of the machine."""
    fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def file_stamp(path: str | Path | None) -> tuple | None:
    """What tells that a file changed (modification time, size, inode: a replacing rename changes the inode), or
    None when there is no such file: for watchers that reload a file when it changes."""
    if path is None:
        return None
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino)
