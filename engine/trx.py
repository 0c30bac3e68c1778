"""Transactions, rollback segments, undo logs and row locks (trx/trx0trx.cc, trx0roll.cc,
trx0undo.cc, trx0rseg.cc, lock/lock0lock.cc; simplified).

Life of a writing transaction:
  1. its first change assigns an undo log: a free slot of rollback segment ``trx_id mod R`` is
     pointed at a new UNDO_LOG header page (state ACTIVE) in the same mtr as the change;
  2. every row change is one mtr that appends an undo record and changes the clustered index
     record (DB_TRX_ID = trx id, DB_ROLL_PTR = the undo record) and the secondary index
     entries (engine.row), so all of them are atomic.  A delete only delete-marks;
  3. XA PREPARE (optional) is one mtr that sets the undo state to PREPARED, made durable as a
     commit is; a prepared transaction survives recovery as prepared, holding its locks, until
     an explicit commit or rollback resolves it;
  4. commit is one mtr that takes a commit number (trx_no) and either frees an undo log of
     inserts only (TO_FREE) or appends a log with update records to its rollback segment's
     history list (TO_PURGE) for MVCC and purge (engine.purge); either way the rseg slot is
     cleared.  Its end LSN is the commit LSN: a transaction is durably committed iff that mtr
     lies within the recovered log.  With flush_log_at_trx_commit=1 the log is made durable up
     to the commit LSN before commit returns (bug 1 acknowledges earlier);
  5. rollback pops undo records newest first, each pop and its inverse row change one mtr, so a
     crash during rollback resumes where it stopped (bug 18); then it frees the undo log.

Write locks are exclusive row locks held to the end of the transaction; consistent reads take
no locks (they read the version their read view sees, engine.read_view).  There is no waiting:
a conflict raises :class:`~engine.errors.LockConflict`.
"""
from __future__ import annotations

from tornpage.engine import btr, btr_page as bp, read_view, row, undo, trx_sys
from tornpage.engine.errors import Corruption, LockConflict, TrxStateError
from tornpage.engine.page import FIL_NULL, FIL_PAGE_NEXT, FIL_PAGE_PREV, FIL_PAGE_UNDO_LOG, u32

ACTIVE, PREPARED, COMMITTED, ROLLED_BACK = "ACTIVE", "PREPARED", "COMMITTED", "ROLLED_BACK"
UPDATE_UNDO_TYPES = (undo.TRX_UNDO_UPD_EXIST_REC, undo.TRX_UNDO_UPD_DEL_REC,
                     undo.TRX_UNDO_DEL_MARK_REC)


class UndoLog:
    """In-memory handle of an undo log (the pages are the truth)."""

    def __init__(self, rseg_id: int, slot: int, hdr_page: int) -> None:
        self.rseg_id = rseg_id
        self.slot = slot
        self.hdr_page = hdr_page


class Trx:
    """A transaction.  ``resurrected`` is true for one found ACTIVE or PREPARED in undo at
    recovery.  ``isolation``: engine.read_view.REPEATABLE_READ or READ_COMMITTED;
    ``read_view``: the REPEATABLE READ snapshot, taken at the first consistent read."""

    def __init__(self, engine, trx_id: int, resurrected: bool = False,
                 isolation: str = read_view.REPEATABLE_READ) -> None:
        self.engine = engine
        self.id = trx_id
        self.state = ACTIVE
        self.undo: UndoLog | None = None
        self.locks: set[tuple[int, int]] = set()
        self.resurrected = resurrected
        self.isolation = isolation
        self.read_view: read_view.ReadView | None = None
        self.has_update_undo = False
        self.commit_lsn = 0
        self.trx_no = 0

    def __repr__(self) -> str:
        return f"Trx({self.id}, {self.state})"

    # convenience: the engine's row API bound to this transaction
    def get(self, table: str, key: int):
        return self.engine.get(self, table, key)

    def put(self, table: str, key: int, value: bytes) -> None:
        self.engine.put(self, table, key, value)

    def insert(self, table: str, key: int, value: bytes) -> None:
        self.engine.insert(self, table, key, value)

    def update(self, table: str, key: int, value: bytes) -> bool:
        return self.engine.update(self, table, key, value)

    def delete(self, table: str, key: int) -> bool:
        return self.engine.delete(self, table, key)

    def get_for_update(self, table: str, key: int):
        return self.engine.get_for_update(self, table, key)

    def scan(self, table: str, lo: int, hi: int, limit: int = 1 << 30):
        return self.engine.scan(self, table, lo, hi, limit)

    def lookup_k(self, table: str, k: int):
        return self.engine.lookup_k(self, table, k)

    def prepare(self) -> int:
        return self.engine.prepare(self)

    def commit(self) -> int:
        return self.engine.commit(self)

    def rollback(self) -> None:
        self.engine.rollback(self)


class LockSys:
    """Row locks: (space, key) → mode and holders.  No waiting."""

    def __init__(self) -> None:
        self.locks: dict[tuple[int, int], tuple[str, set[int]]] = {}

    def acquire(self, trx: Trx, table: str, space: int, key: int, mode: str) -> None:
        """Take a shared ('S') or exclusive ('X') lock on the row.

        Raises:
            LockConflict: another transaction holds a conflicting lock.
        """
        k = (space, key)
        cur = self.locks.get(k)
        if cur is None:
            self.locks[k] = (mode, {trx.id})
        else:
            held_mode, holders = cur
            others = holders - {trx.id}
            if mode == "S":
                if held_mode == "X" and others:
                    raise LockConflict(table, key, min(others))
                holders.add(trx.id)
            else:
                if others:
                    raise LockConflict(table, key, min(others))
                self.locks[k] = ("X", {trx.id})
        trx.locks.add(k)

    def release_all(self, trx: Trx) -> None:
        for k in sorted(trx.locks):
            mode, holders = self.locks[k]
            holders.discard(trx.id)
            if not holders:
                del self.locks[k]
        trx.locks.clear()


class TrxSys:
    """Transaction ids, rollback segments, active transactions."""

    def __init__(self, engine) -> None:
        self.engine = engine
        self.max_trx_id = 1
        self.active: dict[int, Trx] = {}
        self.lock_sys = LockSys()
        self.n_rsegs = engine.config.n_rollback_segments
        self.page_size = engine.config.page_size

    def rseg_page(self, rseg_id: int) -> int:
        return trx_sys.FIRST_RSEG_PAGE_NO + rseg_id

    # -- ids ---------------------------------------------------------------------------------------
    def _new_id(self) -> int:
        """The next value of the trx id / trx_no counter (persisted every
        TRX_SYS_TRX_ID_WRITE_MARGIN values, as trx_sys_get_new_trx_id does)."""
        tid = self.max_trx_id
        self.max_trx_id += 1
        if tid % trx_sys.TRX_SYS_TRX_ID_WRITE_MARGIN == 0:
            with self.engine.mtr() as m:
                f = m.page(0, trx_sys.TRX_SYS_PAGE_NO)
                m.write(f, trx_sys.TRX_SYS_TRX_ID_STORE,
                        (tid + trx_sys.TRX_SYS_TRX_ID_WRITE_MARGIN).to_bytes(8, "big"))
        return tid

    def begin(self, isolation: str = read_view.REPEATABLE_READ) -> Trx:
        """Start a transaction with the next id."""
        trx = Trx(self.engine, self._new_id(), isolation=isolation)
        self.active[trx.id] = trx
        return trx

    # -- read views ----------------------------------------------------------------------------------
    def view_for(self, trx: Trx) -> read_view.ReadView:
        """The read view of ``trx``'s next consistent read: its snapshot, taken now if it has
        none, with REPEATABLE READ; a fresh one per statement with READ COMMITTED
        (trx_assign_read_view)."""
        if trx.isolation == read_view.READ_COMMITTED:
            return self.open_view(trx)
        if trx.read_view is None:
            trx.read_view = self.open_view(trx)
            self.engine.stats["read_views_opened"] += 1
        return trx.read_view

    def open_view(self, trx: Trx) -> read_view.ReadView:
        return read_view.ReadView.open(self.max_trx_id, self.active, trx.id)

    # -- undo ----------------------------------------------------------------------------------------
    def _assign_undo(self, m, trx: Trx) -> None:
        rseg_id = trx.id % self.n_rsegs
        rf = m.page(0, self.rseg_page(rseg_id))
        slots = trx_sys.rseg_slots(rf.data, self.page_size)
        try:
            slot = slots.index(FIL_NULL)
        except ValueError:
            raise TrxStateError(f"rollback segment {rseg_id}: all {len(slots)} undo slots in use")
        pno = btr.alloc_page(m, 0)
        hf = m.new_page(0, pno, FIL_PAGE_UNDO_LOG)
        hdr = (undo.TRX_UNDO_ACTIVE.to_bytes(2, "big") + trx.id.to_bytes(8, "big") +
               pno.to_bytes(4, "big") + (0).to_bytes(4, "big") + bytes([rseg_id]))
        m.write(hf, undo.TRX_UNDO_STATE, hdr)
        m.write(rf, trx_sys.rseg_slot_offset(slot), pno.to_bytes(4, "big"))
        trx.undo = UndoLog(rseg_id, slot, pno)

    def add_undo_rec(self, m, trx: Trx, rtype: int, space: int, key: int,
                     old_rec: bytes = b"") -> bytes:
        """Append an undo record in mtr ``m``; return the DB_ROLL_PTR (7 bytes) pointing at it."""
        if trx.undo is None:
            self._assign_undo(m, trx)
        if rtype in UPDATE_UNDO_TYPES:
            trx.has_update_undo = True
        u = trx.undo
        hf = m.page(0, u.hdr_page)
        n = undo.header_n_recs(hf.data)
        payload = undo.make_rec(rtype, n, space, key, old_rec)
        last_no = undo.header_last_page(hf.data)
        lf = m.page(0, last_no)
        if undo.page_room(lf.data) < len(payload) + 2:
            new_no = btr.alloc_page(m, 0)
            nf = m.new_page(0, new_no, FIL_PAGE_UNDO_LOG)
            m.write(nf, FIL_PAGE_PREV, last_no.to_bytes(4, "big"))
            m.write(lf, FIL_PAGE_NEXT, new_no.to_bytes(4, "big"))
            m.write(hf, undo.TRX_UNDO_LAST_PAGE, new_no.to_bytes(4, "big"))
            lf = nf
            self.engine.stats["undo_pages_added"] += 1
        off = undo.page_free(lf.data)
        from tornpage.engine import mtr_log
        m.log(lf, mtr_log.RedoRecord(mtr_log.MLOG_UNDO_INSERT, 0, lf.page_no, payload))
        self._undo_count_appended(m, hf, n + 1)
        return undo.make_roll_ptr(rtype == undo.TRX_UNDO_INSERT_REC, u.rseg_id, lf.page_no, off)

    def _undo_count_appended(self, m, hf, n_recs: int) -> None:
        """TRX_UNDO_N_RECS of the undo log header after an undo record was appended, in mtr
        ``m`` (mutant ``undo-n-recs-not-logged`` changes the byte without redo)."""
        m.write(hf, undo.TRX_UNDO_N_RECS, n_recs.to_bytes(4, "big"))

    def undo_chain(self, hdr_page: int) -> list[int]:
        """Page numbers of the undo log whose header page is ``hdr_page``, header first."""
        pages = []
        pno = hdr_page
        while pno != FIL_NULL:
            pages.append(pno)
            if len(pages) > 1 << 16:
                raise Corruption(f"undo log at page {hdr_page} has a cycle")
            pno = u32(self.engine.buf.get(0, pno).data, FIL_PAGE_NEXT)
        return pages

    def undo_records_from(self, hdr_page: int) -> list[bytes]:
        """Payloads of every undo record of the log at ``hdr_page``, oldest first."""
        out = []
        for pno in self.undo_chain(hdr_page):
            out.extend(p for _, p in undo.page_records(self.engine.buf.get(0, pno).data))
        return out

    def undo_pages(self, trx: Trx) -> list[int]:
        """Page numbers of the transaction's undo log chain, header page first."""
        return self.undo_chain(trx.undo.hdr_page)

    def undo_records(self, trx: Trx) -> list[bytes]:
        return self.undo_records_from(trx.undo.hdr_page)

    def _free_undo_log(self, m, trx: Trx) -> None:
        """Set state TO_FREE, clear the rseg slot and free the undo pages, in mtr ``m``."""
        u = trx.undo
        pages = self.undo_pages(trx)
        hf = m.page(0, u.hdr_page)
        m.write(hf, undo.TRX_UNDO_STATE, undo.TRX_UNDO_TO_FREE.to_bytes(2, "big"))
        rf = m.page(0, self.rseg_page(u.rseg_id))
        m.write(rf, trx_sys.rseg_slot_offset(u.slot), FIL_NULL.to_bytes(4, "big"))
        for pno in pages:
            btr.free_page(m, 0, pno)

    def _add_to_history(self, m, trx: Trx) -> None:
        """trx_purge_add_undo_to_history: state TO_PURGE with the trx_no, rseg slot cleared, the
        log appended to the rseg's history list, in mtr ``m``."""
        u = trx.undo
        ps = self.page_size
        hf = m.page(0, u.hdr_page)
        m.write(hf, undo.TRX_UNDO_STATE, undo.TRX_UNDO_TO_PURGE.to_bytes(2, "big"))
        m.write(hf, undo.TRX_UNDO_TRX_NO, trx.trx_no.to_bytes(8, "big") +
                FIL_NULL.to_bytes(4, "big"))
        rf = m.page(0, self.rseg_page(u.rseg_id))
        m.write(rf, trx_sys.rseg_slot_offset(u.slot), FIL_NULL.to_bytes(4, "big"))
        length, first, last = trx_sys.rseg_history(rf.data, ps)
        if last != FIL_NULL:
            lf = m.page(0, last)
            m.write(lf, undo.TRX_UNDO_HISTORY_NEXT, u.hdr_page.to_bytes(4, "big"))
        m.write(rf, trx_sys.rseg_history_offset(ps), trx_sys.encode_history(
            length + 1, u.hdr_page if first == FIL_NULL else first, u.hdr_page))
        self.engine.stats["undo_logs_to_history"] += 1

    # -- prepare, commit and rollback ------------------------------------------------------------------
    def prepare(self, trx: Trx) -> int:
        """XA PREPARE: mark the undo log PREPARED in one mtr; returns its end LSN (0 for a
        transaction that changed nothing), made durable as a commit's is."""
        lsn = 0
        if trx.undo is not None:
            with self.engine.mtr() as m:
                m.write(m.page(0, trx.undo.hdr_page), undo.TRX_UNDO_STATE,
                        undo.TRX_UNDO_PREPARED.to_bytes(2, "big"))
            lsn = m.end_lsn
        trx.state = PREPARED
        trx.read_view = None
        self.engine.stats["trx_prepared"] += 1
        if lsn:
            self.engine._flush_log_at_commit(lsn)
        return lsn

    def commit(self, trx: Trx) -> int:
        """Commit (an ACTIVE or PREPARED transaction); return the commit LSN (0 for a
        transaction that changed nothing)."""
        if trx.undo is not None:
            trx.trx_no = self._new_id()
            with self.engine.mtr() as m:
                if trx.has_update_undo:
                    self._add_to_history(m, trx)
                else:
                    self._free_undo_log(m, trx)
            trx.commit_lsn = m.end_lsn
        if trx.state == PREPARED:
            self.engine.stats["trx_prepared_committed"] += 1
        trx.state = COMMITTED
        self._finish(trx)
        if trx.commit_lsn:
            self.engine._flush_log_at_commit(trx.commit_lsn)
        return trx.commit_lsn

    def _finish(self, trx: Trx) -> None:
        self.lock_sys.release_all(trx)
        self.active.pop(trx.id, None)
        trx.undo = None
        trx.read_view = None

    def rollback_step(self, trx: Trx) -> bool:
        """Undo the newest undo record of ``trx`` in one mtr; when none is left, free the undo
        log (completing the rollback).  Returns True while records remain.  A PREPARED
        transaction's undo log is first set back to ACTIVE (one mtr, made durable as a commit
        is), so a crash during the rollback leaves it to background rollback, never half
        rolled back yet prepared, nor prepared again after the rollback returned."""
        if trx.state == PREPARED:
            if trx.undo is not None:
                with self.engine.mtr() as m:
                    m.write(m.page(0, trx.undo.hdr_page), undo.TRX_UNDO_STATE,
                            undo.TRX_UNDO_ACTIVE.to_bytes(2, "big"))
                # the XA ROLLBACK decision is made durable as a prepare or commit is: else a
                # crash after the rollback returned recovers the transaction PREPARED again,
                # with all its changes (MySQL: "Persist the XA ROLLBACK", trx_rollback_low)
                self.engine._flush_log_at_commit(m.end_lsn)
            trx.state = ACTIVE
            self.engine.stats["trx_prepared_rolled_back"] += 1
        assert trx.state == ACTIVE
        if trx.undo is None:
            trx.state = ROLLED_BACK
            self._finish(trx)
            return False
        u = trx.undo
        eng = self.engine
        with self._rollback_step_mtr() as m:
            hf = m.page(0, u.hdr_page)
            n = undo.header_n_recs(hf.data)
            if n <= self._roll_limit(trx):
                self._free_undo_log(m, trx)
                done = True
            else:
                last_no = undo.header_last_page(hf.data)
                lf = m.page(0, last_no)
                recs = undo.page_records(lf.data)
                if not recs:
                    raise Corruption(f"undo page {last_no} of trx {trx.id} is empty but "
                                     f"TRX_UNDO_N_RECS is {n}")
                off, payload = recs[-1]
                rtype, undo_no, space, key, old = undo.parse_rec(payload)
                if undo_no != n - 1:
                    raise Corruption(f"trx {trx.id}: undo record number {undo_no}, expected "
                                     f"{n - 1}")
                self._undo_row(m, trx, rtype, space, key, old)
                m.write(lf, undo.TRX_UNDO_PAGE_FREE, off.to_bytes(2, "big"))
                m.write(hf, undo.TRX_UNDO_N_RECS, (n - 1).to_bytes(4, "big"))
                if len(recs) == 1 and last_no != u.hdr_page:
                    prev = u32(lf.data, FIL_PAGE_PREV)
                    pf = m.page(0, prev)
                    m.write(pf, FIL_PAGE_NEXT, FIL_NULL.to_bytes(4, "big"))
                    m.write(hf, undo.TRX_UNDO_LAST_PAGE, prev.to_bytes(4, "big"))
                    btr.free_page(m, 0, last_no)
                done = False
                eng.stats["undo_records_rolled_back"] += 1
                if trx.resurrected:
                    eng.stats["undo_records_rolled_back_background"] += 1
        if done:
            trx.state = ROLLED_BACK
            if trx.resurrected:
                eng.stats["trx_rolled_back_background"] += 1
            self._finish(trx)
            return False
        return True

    def _rollback_step_mtr(self):
        """The mtr of one rollback step: the pop of an undo record and its inverse row change
        are redo-logged together (mutant ``rollback-not-redo-logged`` logs nothing)."""
        return self.engine.mtr()

    def _roll_limit(self, trx: Trx) -> int:
        """The undo number rollback stops at: every record numbered at or above it is undone,
        so 0 for a whole rollback (trx_roll_limit; mutant ``bg-rollback-off-by-one`` stops one
        record early in background rollback)."""
        return 0

    def _undo_row(self, m, trx: Trx, rtype: int, space: int, key: int, old: bytes) -> None:
        """The inverse of one row change (row0uins.cc, row0umod.cc), in mtr ``m``: the clustered
        record and, if the table has one, the secondary index entries."""
        eng = self.engine
        index = eng.index_by_space(space)
        sidx = eng.sec_index_by_space(space)
        path, cur = index.lookup_path(m, key)     # no page is touched before its change
        what = undo.UNDO_TYPE_NAMES[rtype]
        if cur is None or bp.leaf_trx_id(cur) != trx.id:
            raise Corruption(f"rollback of {what} {index.name}:{key} by trx {trx.id}: row is "
                             f"{'missing' if cur is None else 'not ours'}")
        if rtype == undo.TRX_UNDO_INSERT_REC:
            index.delete(m, key, path)
            if sidx is not None:
                row.sec_remove(m, sidx, row.rec_k(cur), key)
            return
        if rtype == undo.TRX_UNDO_UPD_DEL_REC and \
                eng.purge.view().changes_visible(bp.leaf_trx_id(old)):
            # the delete-marked record comes back, but its deleter is visible to purge's view:
            # purge may have passed it already, so it is removed here (row_undo_mod_clust)
            index.delete(m, key, path)
            eng.stats["rollback_del_marked_removed"] += 1
            if sidx is not None:
                row.sec_remove(m, sidx, row.rec_k(cur), key)
                row.sec_remove(m, sidx, row.rec_k(old), key, only_if_marked=True)
            return
        index.update(m, old, path)
        if sidx is None:
            return
        k_cur, k_old = row.rec_k(cur), row.rec_k(old)
        if rtype == undo.TRX_UNDO_DEL_MARK_REC:
            self._sec_undo_mark(m, sidx, k_old, key, marked=False)
        elif k_cur != k_old:
            # the entry this change added goes (or stays delete-marked if an older version has
            # it); the old version's entry, delete-marked by this change, comes back
            row.sec_remove_if_unneeded(m, sidx, old, space, k_cur, key, eng.purge.view())
            if rtype == undo.TRX_UNDO_UPD_EXIST_REC:
                self._sec_undo_mark(m, sidx, k_old, key, marked=False)
        elif rtype == undo.TRX_UNDO_UPD_DEL_REC:
            self._sec_undo_mark(m, sidx, k_cur, key, marked=True)

    def _sec_undo_mark(self, m, sidx, k: int, pk: int, marked: bool) -> None:
        """Rollback's secondary index step (mutant ``sec-index-not-rolled-back`` skips it)."""
        row.sec_delete_mark(m, sidx, k, pk, marked)

    def rollback(self, trx: Trx) -> None:
        while self.rollback_step(trx):
            pass

    # -- recovery ---------------------------------------------------------------------------------------
    def resurrect(self) -> list[Trx]:
        """trx_lists_init_at_db_start: rebuild ACTIVE and PREPARED transactions from the undo
        logs in rseg slots, with X locks on the rows they changed.  Must run after redo apply
        (MDEV-34212).  ACTIVE ones are then rolled back in background steps; PREPARED ones wait
        for an explicit commit or rollback.  Committed logs waiting in history lists are
        purge's (engine.purge)."""
        eng = self.engine
        found = []
        sys_page = eng.buf.get(0, trx_sys.TRX_SYS_PAGE_NO)
        max_id = trx_sys.trx_id_store(sys_page.data)
        for rseg_id in range(self.n_rsegs):
            rf = eng.buf.get(0, self.rseg_page(rseg_id))
            for slot, pno in enumerate(trx_sys.rseg_slots(rf.data, self.page_size)):
                if pno == FIL_NULL:
                    continue
                hf = eng.buf.get(0, pno)
                state = undo.header_state(hf.data)
                tid = undo.header_trx_id(hf.data)
                if state not in (undo.TRX_UNDO_ACTIVE, undo.TRX_UNDO_PREPARED):
                    raise Corruption(f"rseg {rseg_id} slot {slot}: undo log of trx {tid} in "
                                     f"state {undo.STATE_NAMES.get(state, state)} still in a "
                                     f"slot")
                trx = Trx(eng, tid, resurrected=True)
                trx.undo = UndoLog(rseg_id, slot, pno)
                if state == undo.TRX_UNDO_PREPARED:
                    trx.state = PREPARED
                    eng.stats["recv_trx_prepared"] += 1
                for payload in self.undo_records(trx):
                    rtype, _, space, key, _ = undo.parse_rec(payload)
                    trx.has_update_undo |= rtype in UPDATE_UNDO_TYPES
                    self.lock_sys.acquire(trx, "?", space, key, "X")
                self.active[tid] = trx
                found.append(trx)
                max_id = max(max_id, tid + 1)
        self.max_trx_id = max(max_id, self.max_trx_id)
        eng.stats["recv_trx_resurrected"] += len(found)
        return sorted(found, key=lambda t: -t.id)

    def _check(self) -> None:
        """Every transaction still in ``active`` is ACTIVE or PREPARED and owns the rseg slot
        of its undo log, whose pages parse; lock holders are such transactions."""
        for t in self.active.values():
            assert t.state in (ACTIVE, PREPARED), t
            if t.undo is not None:
                rf = self.engine.buf.get(0, self.rseg_page(t.undo.rseg_id))
                assert trx_sys.rseg_slots(rf.data, self.page_size)[t.undo.slot] == \
                    t.undo.hdr_page, t
                for i, pno in enumerate(self.undo_pages(t)):
                    undo._check(self.engine.buf.get(0, pno).data, header=i == 0)
        for k, (mode, holders) in self.lock_sys.locks.items():
            assert holders and holders <= set(self.active), (k, holders)
