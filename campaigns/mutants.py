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

from tornpage.engine import (btr, buf, dblwr, fil, log, mtr_log, os_file, purge, read_view,
                            recovery, trx, undo)
from tornpage.engine import page as fil_page
from tornpage.engine.engine import Engine
from tornpage.engine.mtr import Mtr
from tornpage.engine.page import PAGE_BAD_CHECKSUM, PAGE_OK

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


_parse_mtr = log.parse_mtr


def _parse_mtr_without_end_marker(buf_, pos: int):
    # bug 3: a multi-record mtr is stored record by record, without waiting for its
    # MLOG_MULTI_REC_END: when the bytes end inside a group, the records complete so far are
    # taken as if the group had ended there
    got = _parse_mtr(buf_, pos)
    if got is not None:
        return got
    recs, n = [], len(buf_)
    while pos + mtr_log.REC_HDR <= n and buf_[pos] != mtr_log.MLOG_MULTI_REC_END:
        t, space, page_no, ln = mtr_log._HDR.unpack_from(buf_, pos)
        if pos + mtr_log.REC_HDR + ln > n:
            break
        recs.append(mtr_log.RedoRecord(t & ~mtr_log.MLOG_SINGLE_REC_FLAG, space, page_no,
                                       bytes(buf_[pos + mtr_log.REC_HDR:
                                                  pos + mtr_log.REC_HDR + ln])))
        pos += mtr_log.REC_HDR + ln
    return (recs, pos) if recs else None


_block_problem = log._block_problem


def _block_checksum_not_checked(blk: bytes, block_lsn: int, prev_ckno):
    # bug 4: the scan goes on past a block whose checksum fails (the block is judged on its
    # number, data length and checkpoint number alone)
    why = _block_problem(blk, block_lsn, prev_ckno)
    if why == log.STOP_CHECKSUM:
        fixed = bytearray(blk)
        fil_page.put_u32(fixed, log.LOG_BLOCK_CHECKSUM, log.block_checksum(fixed))
        return _block_problem(bytes(fixed), block_lsn, prev_ckno)
    return why


def _checkpoint_always_slot_1(no: int) -> int:
    # bug 5: every checkpoint goes to the first slot, so a torn checkpoint write destroys the
    # only checkpoint there is
    return log.LOG_CHECKPOINT_1


def _dblwr_first_copy_any_lsn(self, checkpoint_lsn: int, scanned_lsn: int) -> dict:
    # bug 7 (MDEV-11799): the first valid copy of a page found in the area is the one restored,
    # whatever its LSN: a stale copy older than the checkpoint may win over the newest one
    best: dict = {}
    for i in range(self.n_pages):
        img = self.space.read_page(self.first_page + i)
        if fil_page.verify(img, self.page_size) != PAGE_OK:
            continue
        best.setdefault((fil_page.page_space(img), fil_page.page_no(img)), img)
    return best


def _dblwr_copy_not_verified(self, checkpoint_lsn: int, scanned_lsn: int) -> dict:
    # bug 8: copies are chosen by their LSN without verifying their checksum, so a copy torn
    # while it was being written can be restored
    best: dict = {}
    for i in range(self.n_pages):
        img = self.space.read_page(self.first_page + i)
        if len(img) != self.page_size:
            continue
        lsn = fil_page.page_lsn(img)
        if lsn == 0 or not checkpoint_lsn <= lsn <= scanned_lsn:
            continue
        key = (fil_page.page_space(img), fil_page.page_no(img))
        if key not in best or fil_page.page_lsn(best[key]) < lsn:
            best[key] = img
    return best


def _zero_checksum_taken_as_empty(page, page_size, log_end_lsn=None, expect=None) -> str:
    # bug 9 (MySQL #73689): a stored checksum of 0 is taken to mean an empty page that was never
    # checksummed, and the page is used without verifying the rest of it
    if len(page) == page_size and any(page) and \
            fil_page.u32(page, fil_page.FIL_PAGE_SPACE_OR_CHKSUM) == 0:
        return PAGE_OK
    return _verify(page, page_size, log_end_lsn, expect)


def _either_checksum_field(page, page_size, log_end_lsn=None, expect=None) -> str:
    # bug 10 (MDEV-27931): the checksum is accepted when either stored field matches it
    v = _verify(page, page_size, log_end_lsn, expect)
    if v == PAGE_BAD_CHECKSUM:
        c = fil_page.page_checksum(page)
        if c in (fil_page.u32(page, fil_page.FIL_PAGE_SPACE_OR_CHKSUM),
                 fil_page.u32(page, page_size - fil_page.FIL_PAGE_END_LSN_OLD_CHKSUM)):
            fixed = bytearray(page)
            fil_page.put_u32(fixed, fil_page.FIL_PAGE_SPACE_OR_CHKSUM, c)
            fil_page.put_u32(fixed, page_size - fil_page.FIL_PAGE_END_LSN_OLD_CHKSUM, c)
            return _verify(bytes(fixed), page_size, log_end_lsn, expect)
    return v


def _install_recovered_appended(self, space: int, page_no: int, data, oldest: int,
                                newest: int) -> None:
    # bug 11: recovered pages are appended at the flush list's tail (the normal path's O(1)
    # buf_flush_insert_into_flush_list, right for pages an mtr commit adds in LSN order) in the
    # order redo apply reaches them (page order), not inserted sorted by oldest_modification:
    # the list head is no longer the oldest page, and a checkpoint taken from it advances past
    # unflushed pages
    assert (space, page_no) not in self.frames
    f = self._install(buf.Frame(space, page_no, data))
    f.oldest_modification = oldest
    f.newest_modification = newest
    self.flush_list.append(f)


def _checkpoint_before_data_fsync(self) -> None:
    # bug 13: the checkpoint is written without fsyncing the data files first
    return None


def _page_write_before_log_durable(self, lsn: int) -> None:
    # bug 14: pages are written without making the log durable to their newest_modification
    return None


def _undo_count_not_logged(self, m, hf, n_recs: int) -> None:
    # bug 15 (MDEV-23806): a byte change to an undo page (TRX_UNDO_N_RECS of the undo log
    # header) is made to the page, which the mtr marks modified, but no redo record describes it
    hf.data[undo.TRX_UNDO_N_RECS:undo.TRX_UNDO_N_RECS + 4] = n_recs.to_bytes(4, "big")
    m.modified[hf.key] = hf


_apply_hash = recovery.apply_hash
_resurrect = trx.TrxSys.resurrect


def _resurrect_then_apply(engine, h: dict, recovered_lsn: int) -> None:
    # bug 16 (MDEV-34212): transactions are resurrected from the undo pages as they are on disk,
    # before redo apply; the pages it read are then brought up to date by redo, the transactions
    # are not
    before = set(engine.buf.frames)
    _resurrect(engine.trx_sys)
    for key in [k for k in engine.buf.frames if k not in before]:
        if not engine.buf.frames[key].oldest_modification:
            del engine.buf.frames[key]
    _apply_hash(engine, h, recovered_lsn)


def _already_resurrected(self) -> list:
    return []


@contextlib.contextmanager
def _resurrect_before_redo_apply() -> Iterator[None]:
    with mock.patch.object(recovery, "apply_hash", _resurrect_then_apply), \
            mock.patch.object(trx.TrxSys, "resurrect", _already_resurrected):
        yield


def _bg_roll_limit_off_by_one(self, t) -> int:
    # bug 17 (MySQL #55283): background rollback of a resurrected transaction stops at undo
    # number 1, not 0: the transaction's first change is never undone
    return 1 if t.resurrected else 0


class _MtrWithoutRedo(Mtr):
    """An mtr whose commit marks its pages modified (at the current LSN, as InnoDB's
    MTR_LOG_NO_REDO does) but writes no redo."""

    def commit(self) -> None:
        try:
            if self.records:
                lsn = self.engine.log.end_lsn
                for key in sorted(self.modified):
                    f = self.modified[key]
                    if f.oldest_modification == 0:
                        f.oldest_modification = lsn
                        self.buf.flush_list.append(f)
                    f.newest_modification = lsn
                    fil_page.put_u64(f.data, fil_page.FIL_PAGE_LSN, lsn)
        finally:
            self._release()


def _rollback_step_without_redo(self):
    # bug 18: a rollback step (the undo record's pop and its inverse row change) is not
    # redo-logged: a crash during rollback leaves whichever of its pages were flushed
    m = self.engine.mtr()
    m.__class__ = _MtrWithoutRedo
    return m


_write_pages = fil.Tablespace.write_pages


def _extend_without_fsync(self, page_no: int, data: bytes) -> None:
    # bug 21 (MySQL #45892): a write that extends a data file is not followed by an fsync of
    # that file (the new size and pages are taken as durable)
    extends = page_no * self.page_size + len(data) > self.file.size()
    unsynced = self.unsynced
    _write_pages(self, page_no, data)
    if extends:
        self.unsynced = unsynced


def _dropped_space_redo_kept(h, files, stats) -> None:
    # bug 19 (MySQL #43948): the page records of a dropped tablespace are not discarded ...
    return None


_apply_hash = recovery.apply_hash


def _apply_waiting_for_tablespace(engine, h, recovered_lsn: int) -> None:
    # ... and applying the hashed records waits until every page has its tablespace, as
    # recv_apply_hashed_log_recs waited for recv_sys->n_addrs to reach 0: a dropped space's
    # records never get there, and recovery polls the file system for its file forever
    for space in sorted({s for s, _ in h if s not in engine.fil.spaces}):
        while space not in engine.fil.spaces:
            engine.vfs.exists(f"space {space}")
    _apply_hash(engine, h, recovered_lsn)


@contextlib.contextmanager
def _dropped_space_redo_kept_waiting() -> Iterator[None]:
    with mock.patch.object(recovery, "discard_dropped", _dropped_space_redo_kept), \
            mock.patch.object(recovery, "apply_hash", _apply_waiting_for_tablespace):
        yield


def _redo_ignored_without_marker(engine, res) -> None:
    # bug 20 (MySQL #80788): with no MLOG_CHECKPOINT marker for the checkpoint in the scanned
    # log, recovery goes on as if the log held nothing after the checkpoint
    if not recovery.has_checkpoint_marker(res):
        res.mtrs.clear()
        res.recovered_lsn = res.checkpoint.lsn


class Divergence:
    """What a differential run of a mutant saw: how often the planted seam was reached
    (``calls``) and how often the mutant's answer would have differed from the clean engine's
    (``diverged``), with the first difference in words (``first``).  A differential run is the
    clean engine with its seam watched; when ``diverged`` stays 0 over a campaign, the mutant's
    run of that campaign is the clean engine's, call for call: no oracle could tell them apart.
    """

    def __init__(self) -> None:
        self.calls = 0
        self.diverged = 0
        self.first: str | None = None

    def reached(self, differs: bool, what: str = "") -> None:
        self.calls += 1
        if differs:
            self.diverged += 1
            if self.first is None:
                self.first = what

    def to_json(self) -> dict:
        return {"seam_calls": self.calls, "diverged": self.diverged, "first": self.first}


def _dblwr_differential(pick) -> Callable[[Divergence], contextlib.AbstractContextManager]:
    """Doublewrite recovery with ``pick`` (a mutant's ``_pick_copies``) watched: it diverges
    when, for a page whose in-place image does not verify (one recovery restores), the mutant
    would restore another copy than the clean engine (or one where the clean engine restores
    none, or none where it restores one)."""
    real = dblwr.Doublewrite.recover

    def factory(d: Divergence):
        def recover(self, fil, checkpoint_lsn, scanned_lsn, stats):
            clean = self._pick_copies(checkpoint_lsn, scanned_lsn)
            planted = pick(self, checkpoint_lsn, scanned_lsn)
            what = ""
            for key in sorted(set(clean) | set(planted)):
                if key[0] not in fil.spaces or clean.get(key) == planted.get(key):
                    continue
                cur = fil.space(key[0]).read_page(key[1])
                if _verify(cur, self.page_size, expect=key) != PAGE_OK:
                    what = (f"page {key[0]}:{key[1]}: the clean engine restores "
                            f"{_copy_lsn(clean.get(key))}, the mutant {_copy_lsn(planted.get(key))}")
                    break
            d.reached(bool(what), what)
            return real(self, fil, checkpoint_lsn, scanned_lsn, stats)
        return mock.patch.object(dblwr.Doublewrite, "recover", recover)
    return factory


def _copy_lsn(img: bytes | None) -> str:
    return "no copy" if img is None else f"the copy of LSN {fil_page.page_lsn(img)}"


def _either_checksum_differential(d: Divergence) -> contextlib.AbstractContextManager:
    """Page verification watched: it diverges when accepting either checksum field gives
    another answer than requiring both."""
    def verify(page, page_size, log_end_lsn=None, expect=None):
        v = _verify(page, page_size, log_end_lsn, expect)
        m = _either_checksum_field(page, page_size, log_end_lsn, expect)
        d.reached(m != v, f"a page verifies as {m!r} with either field, {v!r} with both")
        return v
    return mock.patch.object(fil_page, "verify", verify)


def _checkpoint_marker_differential(d: Divergence) -> contextlib.AbstractContextManager:
    """Recovery's checkpoint-marker check watched: it diverges when the scanned log lacks the
    marker (the clean engine refuses, the mutant would discard the redo)."""
    real = recovery.check_checkpoint_marker

    def check(engine, res):
        d.reached(not recovery.has_checkpoint_marker(res),
                  f"the log lacks the MLOG_CHECKPOINT marker of checkpoint LSN "
                  f"{res.checkpoint.lsn}")
        return real(engine, res)
    return mock.patch.object(recovery, "check_checkpoint_marker", check)


@dataclass(frozen=True)
class Mutant:
    name: str
    bug: int                  # the number in INNODB.md's list (0: a fault-model mutant)
    description: str
    expect: str               # what the oracle should see
    patch: Callable[[], contextlib.AbstractContextManager]
    needs: str = ""           # the fault model that can find it, when not the default
    # a differential run (the clean engine, the seam watched: see Divergence), for a mutant
    # that may be equivalent, and the argument why it is
    differential: Callable[[Divergence], contextlib.AbstractContextManager] | None = None
    equivalent: str = ""

    def __post_init__(self) -> None:
        if self.equivalent and self.differential is None:
            raise TypeError(f"mutant {self.name}: an equivalence argument needs the "
                            f"differential watcher that tests it")

    def campaign_options(self) -> dict:
        """The campaign settings ``needs`` names: ``media_faults`` and ``doublewrite`` (bools), ``device`` (a
        profile name or None) and ``recovery_crashes`` (1 when it needs crashes during
        recovery, else 0: a mutant campaign runs without them unless it needs them)."""
        device = re.search(r"--device ([a-z0-9-]+)", self.needs)
        return {"media_faults": "--media-faults" in self.needs,
                "doublewrite": "--no-doublewrite" not in self.needs,
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
           lambda: mock.patch.object(recovery, "should_apply", _apply_if_start_after_page_lsn),
           needs="--recovery-crashes >= 1"),
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
    Mutant("no-dir-fsync-on-create", 22,
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
           "I (or E): purge begins on the undo log of a commit an open REPEATABLE READ "
           "snapshot does not see; the snapshot loses a row another transaction deleted, or "
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
    Mutant("partial-mtr-applied", 3,
           "a multi-record mtr is stored without waiting for its MLOG_MULTI_REC_END: a group "
           "the crash cut is applied in part",
           "C/R: half of a page split, allocation or row change is redone",
           lambda: mock.patch.object(log, "parse_mtr", _parse_mtr_without_end_marker)),
    Mutant("log-scan-past-bad-checksum", 4,
           "the redo scan continues past a log block whose checksum fails",
           "C/R: the bytes of a damaged block are parsed and applied as redo",
           lambda: mock.patch.object(log, "_block_problem", _block_checksum_not_checked),
           needs="tears inside a sector, which keep a block's header (--device nonatomic512)"),
    Mutant("checkpoint-same-slot", 5,
           "every checkpoint is written to the same slot instead of alternating",
           "R: a torn checkpoint write leaves no valid checkpoint",
           lambda: mock.patch.object(log, "checkpoint_slot_for", _checkpoint_always_slot_1),
           needs="a torn one-sector write (--device nonatomic512)"),
    Mutant("dblwr-first-copy-any-lsn", 7,
           "doublewrite recovery restores the first valid copy of a page it finds, ignoring "
           "the LSN window [checkpoint, scanned end] and newer copies (MDEV-11799)",
           "C/L: a torn page is replaced by a stale copy older than the checkpoint, and the "
           "redo between is not replayed",
           lambda: mock.patch.object(dblwr.Doublewrite, "_pick_copies",
                                     _dblwr_first_copy_any_lsn),
           needs="--recovery-crashes >= 1 (the area then also holds the copies an interrupted "
                 "recovery's own flushes left)"),
    Mutant("dblwr-copy-not-verified", 8,
           "doublewrite recovery restores a copy without validating its checksum",
           "C: a copy torn while it was written is written in place",
           lambda: mock.patch.object(dblwr.Doublewrite, "_pick_copies",
                                     _dblwr_copy_not_verified),
           differential=_dblwr_differential(_dblwr_copy_not_verified),
           equivalent="under the doublewrite protocol a copy can be torn only by a crash before "
                      "its fsync, so before the in-place write of its page began: the data page "
                      "then still verifies and is kept whatever copy is picked, or it was never "
                      "written (all zero), and the torn copy the mutant writes over it is "
                      "re-created from the page's MLOG_INIT_FILE_PAGE redo; a copy torn in a "
                      "later batch while an earlier in-place write of the same page is torn "
                      "cannot happen, because the area is reused only after the data files were "
                      "fsynced.  It needs a data page damaged independently of its write (decay "
                      "at rest), which the fault model does not draw"),
    Mutant("zero-checksum-taken-as-empty", 9,
           "a page whose stored checksum is 0 is taken as an empty, never-checksummed page and "
           "used unverified (MySQL #73689)",
           "C/R: a torn page whose first sector reads back as zeros is accepted",
           lambda: mock.patch.object(fil_page, "verify", _zero_checksum_taken_as_empty),
           needs="zero-filled torn sectors (--device nonatomic512)"),
    Mutant("either-checksum-field", 10,
           "a page is accepted when either of its two stored checksum fields matches "
           "(MDEV-27931)",
           "C: a torn page is accepted when its header field matches: a doublewrite copy torn "
           "over the copy of another page that the same mtr stamped (the same LSN, so the "
           "trailer test passes) with equal middle sectors",
           lambda: mock.patch.object(fil_page, "verify", _either_checksum_field),
           # once argued equivalent (the torn check runs first); the selftest's 400-workload
           # budget refuted it: the watcher stays for the equivalence machinery's own tests
           differential=_either_checksum_differential),
    Mutant("recovered-pages-appended-unsorted", 11,
           "pages recovery applied redo to are appended to the flush list in page order, not "
           "inserted sorted by oldest_modification",
           "L/C/R: the checkpoint after recovery advances past unflushed pages; a second crash "
           "loses their redo",
           lambda: mock.patch.object(buf.BufferPool, "install_recovered",
                                     _install_recovered_appended),
           needs="--recovery-crashes >= 1"),
    Mutant("checkpoint-before-data-fsync", 13,
           "a checkpoint is written without fsyncing the data files first",
           "L/R: the checkpoint moves past page writes that were not durable; a power loss "
           "drops them and their redo is no longer scanned",
           lambda: mock.patch.object(Engine, "_sync_data_files", _checkpoint_before_data_fsync),
           needs="--no-doublewrite (page writes then wait for the checkpoint's fsync, as in "
                 "InnoDB) on a device whose page writes cannot tear (--device atomic16k)"),
    Mutant("page-write-before-log-durable", 14,
           "a page is written before the log is durable up to its newest_modification (a WAL "
           "violation)",
           "R/C: after a crash the page is from the future: its LSN is beyond the recovered log",
           lambda: mock.patch.object(buf.BufferPool, "_log_durable_up_to",
                                     _page_write_before_log_durable)),
    Mutant("undo-n-recs-not-logged", 15,
           "appending an undo record changes TRX_UNDO_N_RECS of the undo log header without a "
           "redo record (MDEV-23806)",
           "C/R: the recovered undo header disagrees with its records",
           lambda: mock.patch.object(trx.TrxSys, "_undo_count_appended",
                                     _undo_count_not_logged)),
    Mutant("resurrect-before-redo-apply", 16,
           "transactions are resurrected from the undo pages before redo apply (MDEV-34212)",
           "U/L/R: transactions the redo started are not rolled back, or ones it committed are",
           _resurrect_before_redo_apply),
    Mutant("bg-rollback-off-by-one", 17,
           "background rollback of a resurrected transaction stops at undo number 1: its first "
           "change is never undone (MySQL #55283)",
           "U: a change of a transaction that never committed survives recovery",
           lambda: mock.patch.object(trx.TrxSys, "_roll_limit", _bg_roll_limit_off_by_one)),
    Mutant("rollback-not-redo-logged", 18,
           "rollback steps are not redo-logged",
           "U/C: a crash during rollback leaves a half-rolled-back transaction",
           lambda: mock.patch.object(trx.TrxSys, "_rollback_step_mtr",
                                     _rollback_step_without_redo)),
    Mutant("dropped-space-redo-kept", 19,
           "the redo of a dropped tablespace is not discarded: recovery waits for its file to "
           "apply it (MySQL #43948)",
           "H: recovery never finishes after a crash that follows a DROP TABLE",
           _dropped_space_redo_kept_waiting),
    Mutant("redo-ignored-without-checkpoint-marker", 20,
           "a scan that does not reach the MLOG_CHECKPOINT marker of its checkpoint treats the "
           "log as holding no redo after the checkpoint (MySQL #80788)",
           "L: commits after the checkpoint are lost when the marker's log block is damaged",
           lambda: mock.patch.object(recovery, "check_checkpoint_marker",
                                     _redo_ignored_without_marker),
           needs="--media-faults (at-rest-corruption or a misdirected write in the log)",
           differential=_checkpoint_marker_differential,
           equivalent="the marker can go missing only if its log block is damaged after the "
                      "checkpoint slot named it: every checkpoint makes the marker durable "
                      "before the slot, and the engine reads every log write back after its "
                      "fsync, so at-rest corruption or a lost write of the marker stops the "
                      "engine before the slot is written (the older checkpoint, with its intact "
                      "marker, is used); a misdirected write over the block is refused by the "
                      "scan first.  It needs decay of the log after it was verified, which the "
                      "fault model does not draw; tests/test_engine.py "
                      "test_missing_checkpoint_marker_refuses_to_start damages the block "
                      "directly"),
    Mutant("extend-without-fsync", 21,
           "a page write that extends a data file is not followed by an fsync of the file "
           "(MySQL #45892)",
           "L/R: a checkpoint moves past pages the file lost with its new size",
           lambda: mock.patch.object(fil.Tablespace, "write_pages", _extend_without_fsync)),
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
