"""The VFS protocol: the narrow IO seam between a storage engine and a disk.

In the spirit of SQLite's ``sqlite3_vfs`` and Pebble's ``vfs.FS``: a program that does all its IO
through these calls runs unchanged on a real directory (:class:`OsVFS`) or on the simulated,
fault-injecting disk (:class:`faultfs.simdisk.SimDisk`).

Paths are ``/``-separated and relative to the VFS root (``"ibdata1"``, ``"db/t1.ibd"``); the root
directory is ``""``.  Offsets and sizes are in bytes.

Invariants every implementation keeps:
  * ``pread`` returns the newest data written by ``pwrite`` (the page cache), short at end of file;
  * nothing is promised to survive a crash unless ``fsync`` (file data and size) or ``fsync_dir``
    (directory entries) returned after it was written.
"""
from __future__ import annotations

import os
from typing import Protocol, runtime_checkable


class VFSError(OSError):
    """An IO error raised by a VFS implementation (e.g. a missing file)."""


@runtime_checkable
class VFSFile(Protocol):
    """An open file.  All offsets and sizes are in bytes."""

    path: str

    def pread(self, n: int, offset: int) -> bytes:
        """Read up to ``n`` bytes at ``offset``; shorter (possibly empty) past end of file."""

    def pwrite(self, data: bytes, offset: int) -> int:
        """Write ``data`` at ``offset`` (extending the file, zero-filling any gap); return len."""

    def fsync(self) -> None:
        """Make the file's data and size durable (a barrier for earlier writes to this file)."""

    def truncate(self, size: int) -> None:
        """Set the file size to ``size`` bytes."""

    def size(self) -> int:
        """Current size in bytes (as the running program sees it)."""

    def close(self) -> None:
        """Release the handle; closing does not imply durability."""


@runtime_checkable
class VFS(Protocol):
    """A file system: files by path plus directory operations and trace markers."""

    def open(self, path: str, create: bool = False) -> VFSFile:
        """Open ``path``; create it empty when ``create`` and missing.

        Raises:
            FileNotFoundError: ``path`` does not exist and ``create`` is false.
        """

    def exists(self, path: str) -> bool: ...

    def listdir(self, path: str = "") -> list[str]:
        """Names in directory ``path``, sorted (deterministic order)."""

    def mkdir(self, path: str) -> None: ...

    def rename(self, src: str, dst: str) -> None: ...

    def unlink(self, path: str) -> None: ...

    def fsync_dir(self, path: str = "") -> None:
        """Make the entries of directory ``path`` durable (creates, renames, unlinks)."""

    def mark(self, label: str, **attrs: object) -> None:
        """Record a labelled event in the IO trace (a no-op where nothing is traced)."""


class _OsFile:
    def __init__(self, path: str, fd: int) -> None:
        self.path = path
        self._fd = fd

    def pread(self, n: int, offset: int) -> bytes:
        return os.pread(self._fd, n, offset)

    def pwrite(self, data: bytes, offset: int) -> int:
        return os.pwrite(self._fd, data, offset)

    def fsync(self) -> None:
        os.fsync(self._fd)

    def truncate(self, size: int) -> None:
        os.ftruncate(self._fd, size)

    def size(self) -> int:
        return os.fstat(self._fd).st_size

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


class OsVFS:
    """The VFS protocol on a real directory ``root`` (for real disks and benchmarks)."""

    def __init__(self, root: str) -> None:
        self.root = os.path.abspath(root)
        os.makedirs(self.root, exist_ok=True)

    def _p(self, path: str) -> str:
        full = os.path.normpath(os.path.join(self.root, path))
        if not (full == self.root or full.startswith(self.root + os.sep)):
            raise ValueError(f"path {path!r} escapes the VFS root")
        return full

    def open(self, path: str, create: bool = False) -> _OsFile:
        flags = os.O_RDWR | (os.O_CREAT if create else 0)
        return _OsFile(path, os.open(self._p(path), flags, 0o644))

    def exists(self, path: str) -> bool:
        return os.path.exists(self._p(path))

    def listdir(self, path: str = "") -> list[str]:
        return sorted(os.listdir(self._p(path)))

    def mkdir(self, path: str) -> None:
        os.makedirs(self._p(path), exist_ok=True)

    def rename(self, src: str, dst: str) -> None:
        os.rename(self._p(src), self._p(dst))

    def unlink(self, path: str) -> None:
        os.unlink(self._p(path))

    def fsync_dir(self, path: str = "") -> None:
        fd = os.open(self._p(path), os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def mark(self, label: str, **attrs: object) -> None:
        return None
