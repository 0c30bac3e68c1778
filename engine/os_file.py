"""The engine's IO layer over the VFS protocol (os/os0file.cc, much simplified).

Every file the engine opens is wrapped so that a failing IO call stops the engine: InnoDB treats
an error from a read, a write or an fsync of its files as fatal (``os_file_handle_error`` ends in
``ut_error``, and since the 2018 "fsyncgate" discussion an fsync failure is never retried,
because Linux has already marked the unwritten pages clean).  Here the engine records the panic
and raises :class:`~engine.errors.EngineIOError`; the caller must stop using the engine, which
refuses any further mini-transaction.  Recovery after a restart is the only way on.

``FileNotFoundError`` from ``open`` is not an IO failure: the engine uses it to find what exists.
"""
from __future__ import annotations

from engine.errors import EngineIOError


class GuardedFile:
    """A VFS file whose IO errors panic the engine ``owner`` (anything with ``_panic(str)``)."""

    def __init__(self, file, owner) -> None:
        self.file = file
        self.path = file.path
        self._owner = owner

    def _failed(self, what: str, e: OSError) -> EngineIOError:
        msg = f"{what} of {self.path} failed: {e.strerror or e}"
        self._owner._panic(msg)
        return EngineIOError(msg)

    def pread(self, n: int, offset: int) -> bytes:
        try:
            return self.file.pread(n, offset)
        except OSError as e:
            raise self._failed(f"read of {n} bytes at {offset}", e) from e

    def pwrite(self, data: bytes, offset: int) -> int:
        try:
            return self.file.pwrite(data, offset)
        except OSError as e:
            raise self._failed(f"write of {len(data)} bytes at {offset}", e) from e

    def fsync(self) -> None:
        """fsync once; an error is fatal (mutant ``fsync-retry-after-eio`` retries instead)."""
        try:
            self.file.fsync()
        except OSError as e:
            raise self._failed("fsync", e) from e

    def truncate(self, size: int) -> None:
        try:
            self.file.truncate(size)
        except OSError as e:
            raise self._failed(f"truncate to {size}", e) from e

    def size(self) -> int:
        return self.file.size()

    def close(self) -> None:
        self.file.close()


class GuardedVFS:
    """The VFS protocol with every file guarded (see :class:`GuardedFile`)."""

    def __init__(self, vfs, owner) -> None:
        self.vfs = vfs
        self._owner = owner

    def open(self, path: str, create: bool = False) -> GuardedFile:
        return GuardedFile(self.vfs.open(path, create=create), self._owner)

    def exists(self, path: str) -> bool:
        return self.vfs.exists(path)

    def fsync_dir(self, path: str = "") -> None:
        try:
            self.vfs.fsync_dir(path)
        except OSError as e:
            msg = f"fsync of directory {path or '/'} failed: {e.strerror or e}"
            self._owner._panic(msg)
            raise EngineIOError(msg) from e

    def __getattr__(self, name: str):
        return getattr(self.vfs, name)
