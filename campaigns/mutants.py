"""Planted bugs (mutants) from INNODB.md's list of real recovery bugs.

Each mutant is a patch applied by name around a campaign, kept outside the engine's own code:
the engine exposes the seam (a method or a module function) and the mutant replaces it.  A
campaign that cannot kill a mutant within its budget has a blind spot.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Callable, Iterator
from unittest import mock

from engine import buf, dblwr, os_file, recovery
from engine.engine import Engine
from engine.page import PAGE_OK


class UnknownMutant(KeyError):
    """Raised for a mutant name that is not planted."""


def _ack_before_log_fsync(self, commit_lsn: int) -> None:
    # bug 1 (PXC #895): the log is written but not fsynced before the commit is acknowledged
    self.log.write_up_to(commit_lsn, flush=False)


def _apply_if_start_after_page_lsn(start_lsn: int, page_lsn: int) -> bool:
    # bug 2: apply only when the record's start LSN is strictly newer than the page LSN
    return start_lsn > page_lsn


def _no_doublewrite_fsync(self) -> None:
    # bug 6: no fsync between the doublewrite write and the in-place write
    return None


def _fsync_retry_after_eio(self) -> None:
    # fsyncgate: retry a failed fsync and carry on as if the data were durable
    try:
        self.file.fsync()
    except OSError:
        self.file.fsync()


def _no_checksum_on_read(self, raw: bytes) -> str:
    # pages read from disk are used without verifying their checksum
    return PAGE_OK


def _ignore_write_errors(self, data: bytes, offset: int) -> int:
    # a failed write is ignored: the caller believes the data reached the file
    try:
        return self.file.pwrite(data, offset)
    except OSError:
        return len(data)


def _recovery_checkpoint_at_end(engine) -> None:
    # checkpoint at the recovered end of the log while the applied pages are still dirty
    engine.fil.fsync_all()
    engine.log.write_up_to(engine.log.end_lsn, flush=True)
    engine.log.write_checkpoint(engine.log.end_lsn)


def _no_dir_fsync_on_create(self) -> None:
    # a new tablespace file's directory entry is never fsynced
    return None


@dataclass(frozen=True)
class Mutant:
    name: str
    bug: int                  # the number in INNODB.md's list (0: a fault-model mutant)
    description: str
    expect: str               # what the oracle should see
    patch: Callable[[], contextlib.AbstractContextManager]
    needs: str = ""           # the fault model that can find it, when not the default


MUTANTS: dict[str, Mutant] = {m.name: m for m in (
    Mutant("ack-before-log-fsync", 1,
           "commit acknowledged before the log was fsynced to the commit LSN (PXC #895)",
           "L: an acknowledged commit is lost",
           lambda: mock.patch.object(Engine, "_flush_log_at_commit", _ack_before_log_fsync)),
    Mutant("redo-apply-start-gt-page-lsn", 2,
           "redo applied when start LSN > page LSN instead of >= (off by one)",
           "R/L/U/C: the first change after a page flush is never redone",
           lambda: mock.patch.object(recovery, "should_apply", _apply_if_start_after_page_lsn)),
    Mutant("no-doublewrite-fsync", 6,
           "no fsync between the doublewrite write and the in-place write",
           "R/C: a torn page whose copy was not durable cannot be repaired",
           lambda: mock.patch.object(dblwr.Doublewrite, "_sync_area", _no_doublewrite_fsync)),
    Mutant("fsync-retry-after-eio", 0,
           "a failed fsync is retried and the engine carries on (PostgreSQL before 2018)",
           "L: a commit acknowledged after the retry is lost",
           lambda: mock.patch.object(os_file.GuardedFile, "fsync", _fsync_retry_after_eio),
           needs="--media-faults (eio-fsync)"),
    Mutant("no-checksum-on-read", 0,
           "pages read from disk are not verified (checksum, LSN) before use",
           "E/U/L/C: a flipped bit is used (the engine crashes on it) or written back with a "
           "fresh checksum",
           lambda: mock.patch.object(buf.BufferPool, "_verify_read", _no_checksum_on_read),
           needs="--media-faults (bitflip)"),
    Mutant("no-dir-fsync-on-create", 0,
           "the directory is not fsynced after a tablespace file is created",
           "R/L: the table's file name is lost by a power loss",
           lambda: mock.patch.object(Engine, "_sync_dir", _no_dir_fsync_on_create),
           needs="metadata persistence (a power-loss device)"),
    Mutant("recovery-checkpoint-ignores-dirty-pages", 0,
           "the checkpoint written after redo apply is the recovered end LSN although the "
           "applied pages are not flushed yet",
           "L/U/C: a crash during recovery skips redo that was applied only in memory",
           lambda: mock.patch.object(recovery, "checkpoint_after_apply",
                                     _recovery_checkpoint_at_end),
           needs="--recovery-crashes >= 1"),
    Mutant("ignore-write-errors", 0,
           "a write that fails with EIO or ENOSPC is ignored and the page counted as written",
           "L/C: the page on disk is older than the checkpoint assumes",
           lambda: mock.patch.object(os_file.GuardedFile, "pwrite", _ignore_write_errors),
           needs="--media-faults (eio-write, enospc)"),
)}


def get_mutant(name: str) -> Mutant:
    try:
        return MUTANTS[name]
    except KeyError:
        raise UnknownMutant(f"unknown mutant {name!r}; known: {', '.join(MUTANTS)}") from None


@contextlib.contextmanager
def planted(name: str | None) -> Iterator[None]:
    """Apply mutant ``name`` for the duration of the block (no-op for None)."""
    if name is None:
        yield
        return
    with get_mutant(name).patch():
        yield
