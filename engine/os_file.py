"""The engine's IO layer over the VFS protocol (os/os0file.cc, much simplified).

Every file the engine opens is wrapped so that a failing IO call stops the engine: InnoDB treats
an error from a read, a write or an fsync of its files as fatal (``os_file_handle_error`` ends in
``ut_error``, and since the 2018 "fsyncgate" discussion an fsync failure is never retried,
because Linux has already marked the unwritten pages clean).  Here the engine records the panic
and raises :class:`~engine.errors.EngineIOError`; the caller must stop using the engine, which
refuses any further mini-transaction.  Recovery after a restart is the only way on.

``FileNotFoundError`` from ``open`` is not an IO failure: the engine uses it to find what exists.

Write verification: a drive can acknowledge a write it lost or put in the wrong place (a
misdirected write), and nothing in InnoDB's page checksums notices: the old page still verifies.
So, as storage systems that distrust their drives do (ZFS's parent checksums, Oracle's
DB_LOST_WRITE_PROTECT, TigerBeetle's read-back of its own writes), every successful fsync is
followed by reading back what the writes since the previous fsync put in the file.  A mismatch
stops the engine with :class:`~engine.errors.LostWrite` before anything relies on the write:
a commit is acknowledged, and a checkpoint moves past a page flush, only after the fsync, so a
lost log or page write can still be redone from the log after a restart.  Until that fsync, a
read of a range the engine wrote must return what it wrote (read your writes): without the
doublewrite buffer a page write waits for the next checkpoint's fsync, and a page evicted and
read again in between would otherwise bring back the old page, which still verifies.  A
misdirected write's victim (the range it landed on) is caught when read: pages carry their own
page number (engine.page, PAGE_MISPLACED) and log blocks their block number (engine.log).
"""
from __future__ import annotations

from tornpage.engine.errors import EngineIOError, LostWrite


class GuardedFile:
    """A VFS file whose IO errors panic the engine ``owner`` (anything with ``_panic(str)``)."""

    def __init__(self, file, owner) -> None:
        self.file = file
        self.path = file.path
        self._owner = owner
        self._unverified: list[tuple[int, bytes]] = []    # (offset, data) since the last fsync

    def _failed(self, what: str, e: OSError) -> EngineIOError:
        msg = f"{what} of {self.path} failed: {e.strerror or e}"
        self._owner._panic(msg)
        return EngineIOError(msg)

    def pread(self, n: int, offset: int) -> bytes:
        """Read ``n`` bytes at ``offset``.

        Raises:
            EngineIOError: the read failed.
            LostWrite: the range overlaps a write not yet fsynced and does not return what the
                write put there (read your writes: see the module docstring)."""
        try:
            got = self.file.pread(n, offset)
        except OSError as e:
            raise self._failed(f"read of {n} bytes at {offset}", e) from e
        if self._unverified:
            self._check_read(got, n, offset)
        return got

    def _check_read(self, got: bytes, n: int, offset: int) -> None:
        """A read overlapping writes that await their fsync must return what they wrote, later
        writes winning: otherwise, when a second read disagrees too, the disk lost or
        misdirected one of them (one bad read is a transient read error, left to the page
        checksum as every read's is)."""
        end = offset + n
        want = bytearray(got)
        written_to = 0                  # how far into the range the writes reach
        for off, data in self._unverified:
            lo, hi = max(off, offset), min(off + len(data), end)
            if lo < hi:
                if hi - offset > len(want):
                    want.extend(bytes(hi - offset - len(want)))
                want[lo - offset:hi - offset] = data[lo - off:hi - off]
                written_to = max(written_to, hi - offset)
        if len(got) >= written_to and want[:len(got)] == got:
            return
        try:
            again = self.file.pread(n, offset)
        except OSError as e:
            raise self._failed(f"read of {n} bytes at {offset}", e) from e
        if len(again) >= written_to and want[:len(again)] == again:
            return              # a transient read error: page verification sees the bad copy
        raise self._lost(f"read of {n} bytes at {offset} of {self.path} does not return what a "
                         f"write not yet fsynced put there", offset, got, want)

    def _lost(self, what: str, offset: int, got: bytes, want: bytearray) -> LostWrite:
        """Stop the engine for a lost or misdirected write; the error to raise."""
        at = next((k for k in range(len(want)) if k >= len(got) or got[k] != want[k]),
                  len(want))
        msg = (f"{what} (first difference at byte {offset + at}): the disk lost or misdirected "
               f"the write")
        self._owner._panic(msg)
        return LostWrite(msg)

    def pwrite(self, data: bytes, offset: int) -> int:
        try:
            n = self.file.pwrite(data, offset)
        except OSError as e:
            raise self._failed(f"write of {len(data)} bytes at {offset}", e) from e
        self._unverified.append((offset, bytes(data)))
        return n

    def fsync(self) -> None:
        """fsync once, then verify the writes it made durable (see the module docstring).

        Raises:
            EngineIOError: the fsync failed (never retried; mutant ``fsync-retry-after-eio``
                retries instead).
            LostWrite: a write since the previous fsync does not read back.
        """
        try:
            self.file.fsync()
        except OSError as e:
            raise self._failed("fsync", e) from e
        self._verify_writes()

    def _verify_writes(self) -> None:
        """Read back every range written since the previous fsync and compare it with what the
        writes put there, later writes winning (mutant ``no-write-verify`` skips this).
        Costs one read per write, no extra fsync."""
        writes, self._unverified = self._unverified, []
        for i, (off, data) in enumerate(writes):
            want = bytearray(data)
            end = off + len(data)
            for off2, data2 in writes[i + 1:]:          # a later write of an overlapping range
                lo, hi = max(off, off2), min(end, off2 + len(data2))
                if lo < hi:
                    want[lo - off:hi - off] = data2[lo - off2:hi - off2]
            got = self.pread(len(want), off)
            if got != want:
                raise self._lost(f"write of {len(want)} bytes at {off} of {self.path} does not "
                                 f"read back after fsync", off, got, want)

    def truncate(self, size: int) -> None:
        try:
            self.file.truncate(size)
        except OSError as e:
            raise self._failed(f"truncate to {size}", e) from e
        # what lay past the new end is gone: compare only what is left
        self._unverified = [(o, d[:size - o]) for o, d in self._unverified if o < size]

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
