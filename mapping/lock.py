"""One job at a time per output: an advisory lock (flock) on a file beside the output.

Two jobs writing one store or one output folder would overwrite each other's blocks and
products; the second one refuses in one line instead. The kernel drops the lock when the process
ends, however it ends, so a killed job never leaves a stale lock behind.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from common.errors import BusyError, OutputError

NO_LOCKS = {errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOTSUP, errno.ENOSYS}
"""What flock raises where the filesystem has no locks: NFS without a lock daemon (ENOLCK), Lustre
mounted without ``flock`` (ENOSYS, EOPNOTSUPP), common on SLURM machines."""


@contextlib.contextmanager
def exclusive(lock_file: Path, what: Path) -> Iterator[None]:
    """Hold ``lock_file`` (created when missing, never deleted) for the job writing ``what``."""
    try:
        fd = os.open(lock_file, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise BusyError(f"{what}: cannot create the lock file {lock_file} "
                        f"({exc.strerror})") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "?"
            raise BusyError(f"{what}: another job is writing here (pid {holder}, lock "
                            f"{lock_file}); wait for it or choose another output") from None
        except OSError as exc:
            raise _lock_error(lock_file, exc) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)


def _lock_error(lock_file: Path, exc: OSError) -> OutputError:
    """One line for a lock that the filesystem refuses (not another job's: BusyError)."""
    code = errno.errorcode.get(exc.errno or 0, "")
    reason = f"{code}: {exc.strerror}" if code and exc.strerror else str(exc) or code
    if exc.errno in NO_LOCKS:
        problem = "the filesystem does not support file locks"
    else:
        problem = "cannot be locked"
    return OutputError(f"{lock_file}: {problem} ({reason}), and the lock keeps two jobs from "
                       "writing one output at once: choose an --out on another filesystem (a "
                       "local disk, or one mounted with locks)")


def store_lock(store: Path) -> Path:
    """The lock file of a tile store: a hidden sibling, so the store itself stays pure Zarr."""
    return store.parent / f".{store.name}.lock"
