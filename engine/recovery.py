"""Crash recovery (log/log0recv.cc, buf/buf0dblwr.cc, trx/trx0roll.cc).

In order, as InnoDB does it:
  1. read both checkpoint slots and take the newest valid one (none: refuse to start);
  2. scan the log from the checkpoint LSN to the first bad, stale or partial block and parse
     complete mtrs only;
  2b. find the MLOG_CHECKPOINT marker carrying the checkpoint LSN (refuse to start without it:
     bug 20 ignored the redo instead), learn from the MLOG_FILE_NAME / CREATE / RENAME / DELETE
     records which tablespace files the redo touches, replay the file operations (create a
     file whose creation was logged but lost, finish a logged rename, unlink a dropped table's
     file) and open those files (MySQL 5.7's recv_init_crash_recovery_spaces); hash each page
     record by (space, page) in LSN order, discarding the records of dropped spaces (bug 19);
  3. repair torn pages from the doublewrite buffer;
  4. apply the records page by page: a record is applied iff its mtr's start LSN >= the page
     LSN read from disk (the page LSN is an end LSN, so equal means not yet applied); then the
     page LSN and trailer LSN become the mtr's end LSN.  A page whose first record re-creates it
     (MLOG_PAGE_INIT) need not be readable.  Applied pages join the flush list by a sorted
     insert on their oldest modification (BufferPool.install_recovered; apply reaches them in
     page order, not LSN order), not by the O(1) tail append of the normal path;
  4b. read the rollback segment count and doublewrite area from the recovered TRX_SYS page
     and refuse a configuration that disagrees (Engine.check_sys_geometry); open the tables
     of the recovered dictionary (Engine.open_dictionary);
  5. write a new checkpoint (the next number, so the newest valid slot is not overwritten);
  6. resurrect ACTIVE transactions from the undo logs (only now: MDEV-34212);
  7. open for new transactions; the engine rolls the resurrected ones back in background steps.

Recovery costs O(redo bytes) to scan and parse plus O(dirty pages · log(dirty pages)) to insert
the applied pages into the flush list.  Mtrs that run after it (background rollback, new work)
start beyond the recovered LSN, so the pages they dirty are appended behind the recovered ones.
"""
from __future__ import annotations

import contextlib
import gc
from typing import Iterator

from tornpage.engine import page as fil_page, trx_sys
from tornpage.engine.errors import (Corruption, LayoutError, PageFromFuture, RecoveryError,
                                   TornPageUnrepairable)
from tornpage.engine.log import ScanResult, read_checkpoints, scan
from tornpage.engine import mtr_log
from tornpage.engine.mtr_log import (FILE_RECORD_TYPES, MLOG_CHECKPOINT, MLOG_FILE_CREATE,
                                     MLOG_FILE_DELETE, MLOG_PAGE_INIT, RedoParseError, apply)
from tornpage.engine.page import PAGE_OK, PAGE_FROM_FUTURE, PAGE_MISPLACED, PAGE_ZERO, PAGE_SHORT


def should_apply(start_lsn: int, page_lsn: int) -> bool:
    """recv_recover_page: apply a record iff its mtr's start LSN >= the page LSN."""
    return start_lsn >= page_lsn


def scan_log(engine) -> ScanResult:
    ckpts = read_checkpoints(engine.log.file)
    if not ckpts:
        raise RecoveryError("no valid checkpoint in either slot of the redo log")
    res = scan(engine.log.file, engine.config.log_file_size, ckpts[0])
    st = engine.stats
    st["recv_scan_blocks"] += res.blocks
    st["recv_mtrs_parsed"] += len(res.mtrs)
    st[f"recv_scan_stop_{res.stop}"] += 1
    return res


def has_checkpoint_marker(res: ScanResult) -> bool:
    """Whether the scanned mtrs hold the MLOG_CHECKPOINT marker of the scan's checkpoint."""
    lsn = res.checkpoint.lsn
    return any(r.type == MLOG_CHECKPOINT and mtr_log.checkpoint_lsn(r) == lsn
               for m in res.mtrs for r in m.records)


def check_checkpoint_marker(engine, res: ScanResult) -> None:
    """The scan from a checkpoint must reach the MLOG_CHECKPOINT marker carrying its LSN: the
    checkpoint writes it (with the file names) and makes it durable before the checkpoint
    slot, so without it the redo cannot be trusted to name every file it touches.

    Raises:
        RecoveryError: no marker (mutant ``redo-ignored-without-checkpoint-marker``, bug 20,
            MySQL #80788, goes on as if the log held no redo after the checkpoint).
    """
    if has_checkpoint_marker(res):
        engine.stats["recv_checkpoint_marker_found"] += 1
        return
    lsn = res.checkpoint.lsn
    raise RecoveryError(f"no MLOG_CHECKPOINT marker for the checkpoint at LSN {lsn} between it "
                        f"and the end of the log at {res.recovered_lsn} ({len(res.mtrs)} mtrs "
                        f"scanned): the log after the checkpoint is damaged")


class FileHistory:
    """What the redo since the checkpoint says of one tablespace: the paths it had, in LSN
    order, whether its creation and its deletion were logged."""
    __slots__ = ("paths", "created", "deleted")

    def __init__(self) -> None:
        self.paths: list[str] = []
        self.created = False
        self.deleted = False

    def note(self, path: str) -> None:
        if not self.paths or self.paths[-1] != path:
            self.paths.append(path)


def file_histories(res: ScanResult) -> dict[int, FileHistory]:
    """space id → its FileHistory, from the file-level records of the scanned mtrs.

    Raises:
        RecoveryError: a file-level record that does not parse, or names the system space.
    """
    out: dict[int, FileHistory] = {}
    for m in res.mtrs:
        for r in m.records:
            if r.type not in FILE_RECORD_TYPES or r.type == MLOG_CHECKPOINT:
                continue
            try:
                paths = mtr_log.file_paths(r)
            except RedoParseError as e:
                raise RecoveryError(f"redo log corrupt in the mtr at LSN {m.start_lsn}: {e}") \
                    from None
            if r.space == 0:
                raise RecoveryError(f"{r.describe()} at LSN {m.start_lsn} names the system "
                                    f"tablespace")
            h = out.setdefault(r.space, FileHistory())
            for p in paths:
                h.note(p)
            h.created |= r.type == MLOG_FILE_CREATE
            h.deleted |= r.type == MLOG_FILE_DELETE
    return out


def replay_file_ops(engine, files: dict[int, FileHistory]) -> None:
    """Bring the directory to what the redo says and open every live space it names (fil_op
    replay): a dropped space's files are unlinked (unless a live space now owns the path); a
    live space's file is found at its last path, renamed there from an earlier one, or, when
    its creation is in the redo, created empty (its pages come back from MLOG_PAGE_INIT).  The
    directory is fsynced once if anything changed.

    Raises:
        RecoveryError: a live space's file is missing and its creation is not in the redo.
    """
    vfs, st = engine.vfs, engine.stats
    live = {s: h for s, h in files.items() if not h.deleted}
    owner = {h.paths[-1]: s for s, h in live.items()}
    changed = False
    for s in sorted(files):
        h = files[s]
        if h.deleted:
            for p in dict.fromkeys(h.paths):
                if p not in owner and vfs.exists(p):
                    vfs.unlink(p)
                    st["recv_file_deleted"] += 1
                    changed = True
            continue
        path = h.paths[-1]
        if not vfs.exists(path):
            old = next((p for p in reversed(h.paths[:-1]) if p not in owner and vfs.exists(p)),
                       None)
            if old is not None:
                vfs.rename(old, path)
                st["recv_file_renamed"] += 1
            elif h.created:
                vfs.open(path, create=True).close()
                st["recv_file_created"] += 1
            else:
                raise RecoveryError(f"{path} (space {s}), which the redo log names, is missing")
            changed = True
        engine.fil.open_space(s, path)
    if changed:
        vfs.fsync_dir("")


def discard_dropped(h: dict[tuple[int, int], list], files: dict[int, FileHistory],
                    stats) -> None:
    """Forget the page records of dropped spaces (their file is gone or going: MySQL #43948,
    bug 19, kept them, and recovery waited for the tablespace forever)."""
    for key in [k for k in h if k[0] in files and files[k[0]].deleted]:
        stats["recv_records_dropped_space"] += len(h.pop(key))


def build_hash(engine, res: ScanResult,
               files: dict[int, FileHistory]) -> dict[tuple[int, int], list]:
    """(space, page) → [(start LSN, end LSN, record)] in LSN order (recv_sys->addr_hash), page
    records only.

    Raises:
        RecoveryError: a page record of a table space that no file-level record since the
            checkpoint names (``files``, from :func:`file_histories`).
    """
    h: dict[tuple[int, int], list] = {}
    for m in res.mtrs:
        for r in m.records:
            if r.type in FILE_RECORD_TYPES:
                continue
            if r.space and r.space not in files:
                raise RecoveryError(f"redo {r.describe()} at LSN {m.start_lsn}: no MLOG_FILE_NAME"
                                    f" since the checkpoint names space {r.space}")
            h.setdefault((r.space, r.page_no), []).append((m.start_lsn, m.end_lsn, r))
    return h


def apply_hash(engine, h: dict, recovered_lsn: int) -> None:
    """recv_apply_hashed_log_recs: bring every page with redo up to date, in page order."""
    ps = engine.config.page_size
    st = engine.stats
    for key in sorted(h):
        space, pno = key
        recs = h[key]
        if space not in engine.fil.spaces:
            raise RecoveryError(f"redo for page {space}:{pno} of a tablespace that is not open")
        raw = engine.fil.space(space).read_page(pno)
        v = fil_page.verify(raw, ps, recovered_lsn, expect=key)
        if v == PAGE_OK:
            frame = bytearray(raw)
            plsn = fil_page.page_lsn(raw)
        elif recs[0][2].type == MLOG_PAGE_INIT and should_apply(recs[0][0], 0):
            frame = bytearray(ps)          # the redo re-creates it: old contents not needed
            plsn = 0
            st["recv_pages_init_from_redo"] += 1
            if v not in (PAGE_ZERO, PAGE_SHORT):
                st["recv_torn_pages_recreated_from_redo"] += 1
        elif v == PAGE_FROM_FUTURE:
            raise PageFromFuture(f"page {space}:{pno} has LSN {fil_page.page_lsn(raw)} beyond "
                                 f"the recovered log end {recovered_lsn} (a WAL violation)")
        elif v == PAGE_MISPLACED:
            raise Corruption(f"page {space}:{pno} needs redo from LSN {recs[0][0]} but holds "
                             f"page {fil_page.page_space(raw)}:{fil_page.page_no(raw)} (a "
                             f"misdirected write)")
        elif v in (PAGE_ZERO, PAGE_SHORT):
            raise Corruption(f"page {space}:{pno} needs redo from LSN {recs[0][0]} but is {v} "
                             f"on disk")
        else:
            raise TornPageUnrepairable(f"page {space}:{pno} is {v} and no valid doublewrite "
                                       f"copy exists")
        first = last = 0
        for start, end, r in recs:
            if should_apply(start, plsn):
                try:
                    apply(frame, r, ps)
                except LayoutError as e:
                    raise Corruption(f"redo {r.describe()} [{start}, {end}) does not apply to "
                                     f"page {space}:{pno} with page LSN {plsn}: {e}") from None
                st["recv_records_applied"] += 1
                first = first or start
                last = end
            else:
                st["recv_records_skipped_page_lsn"] += 1
        if last:
            fil_page.put_u64(frame, fil_page.FIL_PAGE_LSN, last)
            engine.buf.install_recovered(space, pno, frame, first, last)
            st["recv_pages_applied"] += 1


@contextlib.contextmanager
def _cyclic_gc_paused() -> Iterator[None]:
    """Recovery allocates objects in proportion to the redo (parsed records, the per-page hash,
    decoded pages) and creates no reference cycles that need collecting while it runs; Python's
    cyclic collector would still traverse all of them at each full collection, so with it on,
    recovery time grows faster than the redo (measured: 8x the redo took 10.3x the time, 7.6x
    without the collector's time).  Paused for the recovery, then restored; reference counting
    frees everything as before, and any cycle left is collected once the collector runs again."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def recover(engine) -> None:
    """Run steps 1-6 on an engine whose files are open (see the module docstring), with
    Python's cyclic garbage collector paused (:func:`_cyclic_gc_paused`).  O(redo bytes) to
    scan, parse and apply, plus O(dirty pages · log(dirty pages)) for the flush list.

    Raises:
        RecoveryError: no valid checkpoint; the log ends before its checkpoint; unparseable redo.
        TornPageUnrepairable: a torn page with no valid doublewrite copy and no re-creating redo.
        PageFromFuture / Corruption: a page that cannot be trusted.
    """
    with _cyclic_gc_paused():
        _recover(engine)


def _recover(engine) -> None:
    res = scan_log(engine)
    check_checkpoint_marker(engine, res)
    engine.log.restart_at(res.recovered_lsn, res.checkpoint)
    files = file_histories(res)
    h = build_hash(engine, res, files)
    discard_dropped(h, files, engine.stats)
    replay_file_ops(engine, files)
    if engine.dblwr is not None:
        engine.dblwr.recover(engine.fil, res.checkpoint.lsn, res.scanned_lsn, engine.stats)
    apply_hash(engine, h, res.recovered_lsn)
    # TRX_SYS as redo left it: the rollback segments to resurrect from are the ones on disk
    # (a configuration that disagrees is refused before anything is resurrected or written)
    engine.check_sys_geometry(engine.buf.get(0, trx_sys.TRX_SYS_PAGE_NO).data,
                              "TRX_SYS after redo apply")
    engine.open_dictionary()
    # the spaces the redo changed stay named until a checkpoint passes their last change
    for (space, _), recs in h.items():
        if space:
            engine.fil.named[space] = max(engine.fil.named.get(space, 0), recs[-1][1])
    engine.recovered_lsn = res.recovered_lsn
    checkpoint_after_apply(engine)
    engine.trx_sys.resurrect()


def checkpoint_after_apply(engine) -> None:
    """A fuzzy checkpoint once redo is applied: its LSN is the oldest modification of the pages
    recovery dirtied, never beyond (mutant ``recovery-checkpoint-ignores-dirty-pages`` writes
    the recovered end LSN, as if every applied page were already on disk)."""
    engine.make_checkpoint(flush=False)
