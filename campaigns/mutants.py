"""Planted bugs (mutants) from INNODB.md's list of real recovery bugs.

Each mutant is a patch applied by name around a campaign, kept outside the engine's own code:
the engine exposes the seam (a method or a module function) and the mutant replaces it.  A
campaign that cannot kill a mutant within its budget has a blind spot.
"""
from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass
from typing import Callable, Iterator
from unittest import mock

from tornpage.engine import btr, buf, dblwr, log, os_file, purge, read_view, recovery, trx
from tornpage.engine import page as fil_page
from tornpage.engine.engine import Engine
from tornpage.engine.page import PAGE_OK

_verify = fil_page.verify       # the real verification, which the mutants below wrap


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
    self._verify_writes()       # the read-back is not what this bug is about


def _no_checksum_on_read(self, raw: bytes, where) -> str:
    # pages read from disk are used without verifying their checksum
    return PAGE_OK


def _ignore_write_errors(self, data: bytes, offset: int) -> int:
    # a failed write is ignored: the caller believes the data reached the file
    try:
        return self.file.pwrite(data, offset)
    except OSError:
        return len(data)


def _no_write_verify(self) -> None:
    # writes are trusted once fsynced: a lost or misdirected write goes unnoticed
    self._unverified = []


def _lsn_zero_page_trusted(page, page_size, log_end_lsn=None, expect=None) -> str:
    # a page whose FIL_PAGE_LSN is 0 is taken as freshly initialised and not verified
    if len(page) == page_size and any(page) and fil_page.page_lsn(page) == 0:
        return PAGE_OK
    return _verify(page, page_size, log_end_lsn, expect)


def _unknown_page_type_unchecked(page, page_size, log_end_lsn=None, expect=None) -> str:
    # pages of a FIL_PAGE_TYPE the engine does not know are taken as unused and not verified
    if len(page) == page_size and any(page) and \
            fil_page.page_type(page) not in fil_page.PAGE_TYPE_NAMES:
        return PAGE_OK
    return _verify(page, page_size, log_end_lsn, expect)


def _recovery_checkpoint_at_end(engine) -> None:
    # checkpoint at the recovered end of the log while the applied pages are still dirty
    engine.fil.fsync_all()
    engine.log.write_up_to(engine.log.end_lsn, flush=True)
    engine.log.write_checkpoint(engine.log.end_lsn)


def _no_dir_fsync_on_create(self) -> None:
    # a new tablespace file's directory entry is never fsynced
    return None


_flush_log_at_commit = Engine._flush_log_at_commit


def _trx_commit_2_no_write(self, commit_lsn: int) -> None:
    # flush_log_at_trx_commit=2 acknowledged with the commit's redo still in the log buffer:
    # the OS never saw it, so a process kill loses it
    if self.config.flush_log_at_trx_commit != 2:
        _flush_log_at_commit(self, commit_lsn)


def _no_log_free_check(self) -> None:
    # bug 12 (MySQL #69477): no free-space check before an mtr, so nothing flushes and
    # checkpoints when the log runs low
    return None


def _overwrite_past_checkpoint(self, start: int, end: int) -> None:
    # ... and the log writer overwrites redo newer than the last checkpoint, as InnoDB's did
    # (it only printed "the age of the last checkpoint ... exceeds the log group capacity")
    return None


@contextlib.contextmanager
def _no_log_capacity_check() -> Iterator[None]:
    with mock.patch.object(Engine, "_log_free_check", _no_log_free_check), \
            mock.patch.object(log.LogSys, "_check_capacity", _overwrite_past_checkpoint):
        yield


def _level_list_remove_left_only(self, mtr, f) -> None:
    # a page merge or discard unlinks the freed page from its level by fixing the left
    # neighbour's FIL_PAGE_NEXT only: the right neighbour's FIL_PAGE_PREV still names the freed
    # page (a backward scan, or the next split or merge there, follows it into a free page)
    prev_no = fil_page.u32(f.data, fil_page.FIL_PAGE_PREV)
    next_no = fil_page.u32(f.data, fil_page.FIL_PAGE_NEXT)
    if prev_no != fil_page.FIL_NULL:
        mtr.write(self._index_page(mtr, prev_no), fil_page.FIL_PAGE_NEXT,
                  next_no.to_bytes(4, "big"))


def _purge_ignores_read_views(self) -> read_view.ReadView:
    # purge's view is a view of now: it ignores the read views still open, so it removes
    # delete-marked rows and frees undo logs an older snapshot still needs
    ts = self.engine.trx_sys
    return read_view.ReadView.open(ts.max_trx_id, ts.active, 0)


def _read_view_per_statement(self, t) -> read_view.ReadView:
    # REPEATABLE READ takes a fresh read view for every statement (READ COMMITTED's rule)
    return self.open_view(t)


def _sec_index_not_rolled_back(self, m, sidx, k: int, pk: int, marked: bool) -> None:
    # rollback restores the clustered record but leaves the secondary index entry as the
    # rolled-back change left it (delete-marked, or unmarked)
    return None


@dataclass(frozen=True)
class Mutant:
    name: str
    bug: int                  # the number in INNODB.md's list (0: a fault-model mutant)
    description: str
    expect: str               # what the oracle should see
    patch: Callable[[], contextlib.AbstractContextManager]
    needs: str = ""           # the fault model that can find it, when not the default

    def campaign_options(self) -> dict:
        """The campaign settings ``needs`` names: ``media_faults`` (bool), ``device`` (a
        profile name or None) and ``recovery_crashes`` (1 when it needs crashes during
        recovery, else 0: a mutant campaign runs without them unless it needs them)."""
        device = re.search(r"--device ([a-z0-9-]+)", self.needs)
        return {"media_faults": "--media-faults" in self.needs,
                "device": device.group(1) if device else None,
                "recovery_crashes": 1 if "--recovery-crashes" in self.needs else 0}


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
    Mutant("lsn-zero-page-trusted", 0,
           "a page whose FIL_PAGE_LSN is 0 is taken as freshly initialised and not verified "
           "(a shortcut for never-flushed pages; compare MySQL #73689, a zero checksum taken "
           "as 'none')",
           "R/C/E: a page torn with its first sector read back as zeros escapes doublewrite "
           "repair and redo is applied to the wreck",
           lambda: mock.patch.object(fil_page, "verify", _lsn_zero_page_trusted),
           needs="zero-filled torn sectors (--device nonatomic512)"),
    Mutant("unknown-page-type-unchecked", 0,
           "pages whose FIL_PAGE_TYPE is not one the engine knows are taken as unused and "
           "not verified",
           "R/C/E: a page torn with its first sector read back as garbage escapes doublewrite "
           "repair and is used",
           lambda: mock.patch.object(fil_page, "verify", _unknown_page_type_unchecked),
           needs="garbage-filled torn sectors (--device nonatomic512)"),
    Mutant("no-write-verify", 0,
           "writes are not read back after their fsync, so a write the drive lost or put "
           "elsewhere is trusted (InnoDB's own behaviour)",
           "L/C: a checkpoint moves past a page write that never happened, or a commit is "
           "acknowledged whose redo is not on disk",
           lambda: mock.patch.object(os_file.GuardedFile, "_verify_writes", _no_write_verify),
           needs="--media-faults (misdirected)"),
    Mutant("trx-commit-2-no-write", 0,
           "with flush_log_at_trx_commit=2, commit is acknowledged without writing the log to "
           "the OS (the redo stays in the process's log buffer)",
           "L: a process kill loses an acknowledged commit that mode 2 promises to survive it",
           lambda: mock.patch.object(Engine, "_flush_log_at_commit", _trx_commit_2_no_write),
           needs="a crash that keeps what the OS had (--device process-kill, or a power loss "
                 "whose crash plan loses nothing)"),
    Mutant("no-log-free-check", 12,
           "no log free check before an mtr: the log is never flushed and checkpointed "
           "synchronously when it runs low, and redo overwrites the log past the last "
           "checkpoint (MySQL #69477)",
           "R/L/C: recovery finds the checkpointed redo overwritten by a later lap",
           _no_log_capacity_check,
           needs="a log that fills up between checkpoints (the minimum log_file_size, which "
                 "campaigns draw for about half of their workloads)"),
    Mutant("merge-no-sibling-link-fix", 0,
           "a B+tree page merge or discard (btr_level_list_remove) fixes the left neighbour's "
           "FIL_PAGE_NEXT but leaves the right neighbour's FIL_PAGE_PREV pointing at the freed "
           "page",
           "C: the structural check finds a level's sibling links broken (live and after "
           "recovery: the missing link write is missing from the redo too)",
           lambda: mock.patch.object(btr.Index, "_level_list_remove",
                                     _level_list_remove_left_only),
           needs="deletes (purge or rollback of inserts) that merge or discard a leaf with a "
                 "right neighbour"),
    Mutant("purge-ignores-read-view", 0,
           "purge decides what is no longer needed from a view of now, ignoring the read views "
           "still open (purge_sys.view not cloned from the oldest view)",
           "I (or E): a REPEATABLE READ snapshot loses a row another transaction deleted, or "
           "follows a roll pointer into a purged undo log",
           lambda: mock.patch.object(purge.PurgeSys, "view", _purge_ignores_read_views),
           needs="a REPEATABLE READ reader open across another transaction's commit and purge"),
    Mutant("rr-read-view-per-statement", 0,
           "REPEATABLE READ takes a new read view for every statement instead of one per "
           "transaction",
           "I: a second read in the same transaction sees a commit made after its first read",
           lambda: mock.patch.object(trx.TrxSys, "view_for", _read_view_per_statement),
           needs="transaction_isolation REPEATABLE-READ"),
    Mutant("sec-index-not-rolled-back", 0,
           "rollback of a delete or an update of k restores the clustered record but not the "
           "secondary index entry's delete mark",
           "C: after purge the structural check finds a row with no live index entry on k",
           lambda: mock.patch.object(trx.TrxSys, "_sec_undo_mark", _sec_index_not_rolled_back),
           needs="a rolled-back (or crash-interrupted) delete or update of k"),
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
