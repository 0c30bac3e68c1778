"""Purge: removal of what no read view needs any more (trx/trx0purge.cc, row/row0purge.cc;
simplified).

Committed undo logs that hold update records wait in their rollback segment's history list
(engine.trx_sys) in commit order.  Purge takes the log with the smallest trx_no over all
rollback segments, but only when its trx_no is below purge's view's ``low_limit_no``: every
read view open then was taken after that commit, so none can need the versions the log holds
(the view is a copy of the oldest open view, or a view of now: engine.read_view.oldest).  For
each undo record, one mtr:

  * a delete-mark (TRX_UNDO_DEL_MARK_REC) whose clustered record is still delete-marked by the
    same transaction: remove the clustered record and its secondary index entry
    (row_purge_remove_clust_if_poss, row_purge_remove_sec_if_poss);
  * every update record: remove the secondary entry of the old version's ``k`` if it is
    delete-marked and no version purge's view can reach still has it;
  * an insert record: nothing (the row is current).

Then one mtr unlinks the log from the history list and frees its pages.  A crash anywhere in
between is harmless: the log is still at the head of its history list after recovery, and
purging a record twice finds nothing left to do (each removal checks the record first).

Purge runs as a background step (``Engine.run_background``, task ``purge``), at most
``purge_batch`` undo records per step, so workload steps interleave with it and a crash can
cut it anywhere.
"""
from __future__ import annotations

from typing import Callable

from tornpage.engine import btr, btr_page as bp, read_view, row, trx_sys, undo
from tornpage.engine.errors import Corruption
from tornpage.engine.page import FIL_NULL


class PurgeSys:
    """The purge cursor: the undo log being purged and how far (in memory only).

    ``observer``, when set, is called with the id of the transaction whose undo log purge is
    about to start on, before any of it is purged (a test harness checks it against its own
    model of the open snapshots)."""

    def __init__(self, engine) -> None:
        self.engine = engine
        self.cursor: tuple | None = None   # (rseg id, header page, trx id, records, next)
        self.observer: Callable[[int], None] | None = None

    # -- history --------------------------------------------------------------------------------
    def _rseg(self, src, rseg_id: int):
        return src.page(0, trx_sys.FIRST_RSEG_PAGE_NO + rseg_id)

    def heads(self) -> list[tuple[int, int, int]]:
        """(trx_no, rseg id, header page) of each non-empty history list's oldest log."""
        eng = self.engine
        out = []
        for r in range(eng.config.n_rollback_segments):
            _, first, _ = trx_sys.rseg_history(self._rseg(eng.buf, r).data, eng.config.page_size)
            if first != FIL_NULL:
                out.append((undo.header_trx_no(eng.buf.get(0, first).data), r, first))
        return sorted(out)

    def history_length(self) -> int:
        """Undo logs waiting for purge, over all rollback segments (the history list length)."""
        eng = self.engine
        return sum(trx_sys.rseg_history(self._rseg(eng.buf, r).data, eng.config.page_size)[0]
                   for r in range(eng.config.n_rollback_segments))

    def view(self) -> read_view.ReadView:
        """Purge's view (see the module docstring)."""
        ts = self.engine.trx_sys
        now = read_view.ReadView.open(ts.max_trx_id, ts.active, 0)
        return read_view.oldest((t.read_view for t in ts.active.values() if t.read_view), now)

    # -- work -------------------------------------------------------------------------------------
    def step(self, batch: int) -> bool:
        """Purge up to ``batch`` undo records of the oldest purgeable log, or free that log when
        all its records are done.  Returns False when nothing may be purged now (empty history,
        or its oldest log is still needed by a read view)."""
        eng = self.engine
        if self.cursor is None:
            heads = self.heads()
            if not heads:
                return False
            trx_no, rseg_id, hdr = heads[0]
            if trx_no >= self.view().low_limit_no:
                eng.stats["purge_blocked_by_read_view"] += 1
                return False
            tid = undo.header_trx_id(eng.buf.get(0, hdr).data)
            if self.observer is not None:
                self.observer(tid)
            recs = [undo.parse_rec(p) for p in eng.trx_sys.undo_records_from(hdr)]
            self.cursor = (rseg_id, hdr, tid, recs, 0)
        rseg_id, hdr, tid, recs, nxt = self.cursor
        if nxt < len(recs):
            view = self.view()
            for rec in recs[nxt:nxt + batch]:
                self._purge_rec(tid, rec, view)
            self.cursor = (rseg_id, hdr, tid, recs, min(len(recs), nxt + batch))
            return True
        self._free_log(rseg_id, hdr)
        self.cursor = None
        return True

    def _purge_rec(self, trx_id: int, rec: tuple, view) -> None:
        rtype, _, space, key, old = rec
        eng = self.engine
        eng.stats["purge_undo_recs"] += 1
        if rtype == undo.TRX_UNDO_INSERT_REC:
            return
        idx = eng.index_by_space(space)
        sidx = eng.sec_index_by_space(space)
        with eng.mtr() as m:
            path, cur = idx.lookup_path(m, key)
            if rtype == undo.TRX_UNDO_DEL_MARK_REC and cur is not None and \
                    bp.is_delete_marked(cur) and bp.leaf_trx_id(cur) == trx_id:
                idx.delete(m, key, path)
                eng.stats["purge_del_marked_removed"] += 1
                if sidx is not None and row.sec_remove(m, sidx, row.rec_k(cur), key,
                                                       only_if_marked=True):
                    eng.stats["purge_sec_entries_removed"] += 1
                cur = None
            if sidx is not None:
                if row.sec_remove_if_unneeded(m, sidx, cur, space, row.rec_k(old), key,
                                              view) == "removed":
                    eng.stats["purge_sec_entries_removed"] += 1

    def _free_log(self, rseg_id: int, hdr: int) -> None:
        """Unlink the log at the head of the rseg's history list and free its pages."""
        eng = self.engine
        ps = eng.config.page_size
        pages = eng.trx_sys.undo_chain(hdr)
        with eng.mtr() as m:
            rf = self._rseg(m, rseg_id)
            length, first, last = trx_sys.rseg_history(rf.data, ps)
            if first != hdr:
                raise Corruption(f"rseg {rseg_id}: history list starts at {first}, purge is at "
                                 f"{hdr}")
            hf = m.page(0, hdr)
            nxt = undo.header_history_next(hf.data)
            m.write(rf, trx_sys.rseg_history_offset(ps), trx_sys.encode_history(
                length - 1, nxt, FIL_NULL if nxt == FIL_NULL else last))
            m.write(hf, undo.TRX_UNDO_STATE, undo.TRX_UNDO_TO_FREE.to_bytes(2, "big"))
            for pno in pages:
                btr.free_page(m, 0, pno)
        eng.stats["purge_logs_freed"] += 1

    def run_all(self, batch: int = 64) -> int:
        """Purge until nothing is purgeable; returns the steps that did work."""
        n = 0
        while self.step(batch):
            n += 1
        return n

    def _check(self) -> None:
        """Assert every history list: its length, its last pointer, TO_PURGE logs in
        ascending trx_no."""
        eng = self.engine
        ps = eng.config.page_size
        for r in range(eng.config.n_rollback_segments):
            length, first, last = trx_sys.rseg_history(self._rseg(eng.buf, r).data, ps)
            n, pno, prev, prev_no = 0, first, FIL_NULL, -1
            while pno != FIL_NULL:
                f = eng.buf.get(0, pno)
                assert undo.header_state(f.data) == undo.TRX_UNDO_TO_PURGE, (r, pno)
                assert undo.header_trx_no(f.data) > prev_no, (r, pno)
                undo._check(f.data, header=True)
                prev_no = undo.header_trx_no(f.data)
                prev, pno = pno, undo.header_history_next(f.data)
                n += 1
                assert n <= length, f"rseg {r}: history list longer than its length {length}"
            assert n == length and prev == last, (r, n, length, prev, last)
