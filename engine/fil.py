"""Tablespace files: space id → file, page-granular IO (fil/fil0fil.cc, simplified).

The system tablespace (space 0) is ``ibdata1``; each table has its own ``<name>.ibd`` (file per
table).  Page ``n`` of a space lives at byte offset ``n * page_size`` of its file.  All IO goes
through the VFS protocol.

File names in the redo log (MySQL 5.7's fil_names_dirty / fil_names_clear): the first mtr that
changes a table's space after a checkpoint carries an MLOG_FILE_NAME record for it, and every
checkpoint writes MLOG_FILE_NAME for each space changed after its LSN, then the MLOG_CHECKPOINT
marker.  So a scan from the checkpoint names every file the redo after it touches, and recovery
opens exactly those (engine.recovery), whatever the dictionary page on disk says.
"""
from __future__ import annotations

from tornpage.engine import mtr_log
from tornpage.engine.mtr_log import MLOG_FILE_NAME, RedoRecord

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
        # space id -> end LSN of its latest change, for the spaces named in the log since the
        # last checkpoint (fil_system->named_spaces and fil_space_t::max_lsn)
        self.named: dict[int, int] = {}

    def open_space(self, space_id: int, path: str, create: bool = False) -> Tablespace:
        assert space_id not in self.spaces, space_id
        ts = Tablespace(space_id, path, self.vfs.open(path, create=create), self.page_size)
        self.spaces[space_id] = ts
        return ts

    def space(self, space_id: int) -> Tablespace:
        return self.spaces[space_id]

    def close_space(self, space_id: int) -> Tablespace:
        """Close a dropped table's file and forget its name (the caller unlinks it)."""
        ts = self.spaces.pop(space_id)
        self.named.pop(space_id, None)
        ts.file.close()
        return ts

    def name_records(self, space_ids) -> list[RedoRecord]:
        """MLOG_FILE_NAME for each of ``space_ids`` (table spaces an mtr changed) not named
        since the last checkpoint, in space id order (fil_names_write_if_was_clean)."""
        return [mtr_log.file_record(MLOG_FILE_NAME, s, self.spaces[s].path)
                for s in sorted(space_ids) if s and s not in self.named]

    def note_changed(self, space_ids, end_lsn: int) -> None:
        """An mtr ending at ``end_lsn`` changed ``space_ids`` (named in the log now)."""
        for s in space_ids:
            if s:
                self.named[s] = end_lsn

    def checkpoint_names(self, lsn: int) -> list[RedoRecord]:
        """At a checkpoint at ``lsn`` (fil_names_clear): MLOG_FILE_NAME for every space changed
        after ``lsn``, which stay named; the others are forgotten, so their next change names
        them again."""
        self.named = {s: end for s, end in self.named.items() if end > lsn}
        return [mtr_log.file_record(MLOG_FILE_NAME, s, self.spaces[s].path)
                for s in sorted(self.named)]

    def fsync_all(self) -> None:
        """fsync every tablespace with unsynced writes, in space id order."""
        for sid in sorted(self.spaces):
            if self.spaces[sid].unsynced:
                self.spaces[sid].fsync()

    def close(self) -> None:
        for ts in self.spaces.values():
            ts.file.close()
