"""Tablespace files: space id → file, page-granular IO (fil/fil0fil.cc, simplified).

The system tablespace (space 0) is ``ibdata1``; each table has its own ``<name>.ibd`` (file per
table).  Page ``n`` of a space lives at byte offset ``n * page_size`` of its file.  All IO goes
through the VFS protocol.
"""
from __future__ import annotations

SYS_FILE = "ibdata1"
LOG_FILE = "ib_logfile0"
IBD_SUFFIX = ".ibd"


class Tablespace:
    """One tablespace file.  ``unsynced`` is true while writes await an fsync."""

    def __init__(self, space_id: int, path: str, file, page_size: int) -> None:
        self.space_id = space_id
        self.path = path
        self.file = file
        self.page_size = page_size
        self.unsynced = False

    def read_page(self, page_no: int) -> bytes:
        """The page's bytes as on disk; shorter than a page (possibly empty) past end of file."""
        return self.file.pread(self.page_size, page_no * self.page_size)

    def write_pages(self, page_no: int, data: bytes) -> None:
        """Write whole pages starting at ``page_no`` in one IO."""
        assert len(data) % self.page_size == 0
        self.file.pwrite(data, page_no * self.page_size)
        self.unsynced = True

    def fsync(self) -> None:
        self.file.fsync()
        self.unsynced = False

    def size_pages(self) -> int:
        return self.file.size() // self.page_size


class Fil:
    """The open tablespaces of an engine, keyed by space id."""

    def __init__(self, vfs, page_size: int) -> None:
        self.vfs = vfs
        self.page_size = page_size
        self.spaces: dict[int, Tablespace] = {}

    def open_space(self, space_id: int, path: str, create: bool = False) -> Tablespace:
        assert space_id not in self.spaces, space_id
        ts = Tablespace(space_id, path, self.vfs.open(path, create=create), self.page_size)
        self.spaces[space_id] = ts
        return ts

    def space(self, space_id: int) -> Tablespace:
        return self.spaces[space_id]

    def fsync_all(self) -> None:
        """fsync every tablespace with unsynced writes, in space id order."""
        for sid in sorted(self.spaces):
            if self.spaces[sid].unsynced:
                self.spaces[sid].fsync()

    def close(self) -> None:
        for ts in self.spaces.values():
            ts.file.close()
