"""Transactions, rollback segments, undo logs and row locks (trx/trx0trx.cc, trx0roll.cc,
trx0undo.cc, trx0rseg.cc, lock/lock0lock.cc; simplified).

Life of a writing transaction:
  1. its first change assigns an undo log: a free slot of rollback segment ``trx_id mod R`` is
     pointed at a new UNDO_LOG header page (state ACTIVE) in the same mtr as the change;
  2. every row change is one mtr that appends an undo record and changes the clustered index
     record (DB_TRX_ID = trx id, DB_ROLL_PTR = the undo record), so the two are atomic;
  3. commit is one mtr that sets the undo state to TO_FREE, clears the rseg slot and frees the
     undo pages; its end LSN is the commit LSN.  A transaction is durably committed iff that
     mtr lies within the recovered log.  With flush_log_at_trx_commit=1 the log is made durable
     up to the commit LSN before commit returns (bug 1 acknowledges earlier);
  4. rollback pops undo records newest first, each pop and its inverse row change one mtr, so a
     crash during rollback resumes where it stopped (bug 18); then it frees the undo log.

Row locks are exclusive for writes and shared for reads, held to the end of the transaction;
there is no waiting: a conflict raises :class:`~engine.errors.LockConflict`.
"""
from __future__ import annotations

from engine import btr, btr_page as bp, undo, trx_sys
from engine.errors import Corruption, LockConflict, TrxStateError
from engine.page import FIL_NULL, FIL_PAGE_NEXT, FIL_PAGE_PREV, FIL_PAGE_UNDO_LOG, u32

ACTIVE, COMMITTED, ROLLED_BACK = "ACTIVE", "COMMITTED", "ROLLED_BACK"


class UndoLog:
    """In-memory handle of an undo log (the pages are the truth)."""

    def __init__(self, rseg_id: int, slot: int, hdr_page: int) -> None:
        self.rseg_id = rseg_id
        self.slot = slot
        self.hdr_page = hdr_page


class Trx:
    """A transaction.  ``resurrected`` is true for one found ACTIVE in undo at recovery."""

    def __init__(self, engine, trx_id: int, resurrected: bool = False) -> None:
        self.engine = engine
        self.id = trx_id
        self.state = ACTIVE
        self.undo: UndoLog | None = None
        self.locks: set[tuple[int, int]] = set()
        self.resurrected = resurrected
        self.commit_lsn = 0

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

    def scan(self, table: str, lo: int, hi: int, limit: int = 1 << 30):
        return self.engine.scan(self, table, lo, hi, limit)

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
    def begin(self) -> Trx:
        """Start a transaction with the next id (trx ids are persisted every
        TRX_SYS_TRX_ID_WRITE_MARGIN ids, as trx_sys_get_new_trx_id does)."""
        tid = self.max_trx_id
        self.max_trx_id += 1
        if tid % trx_sys.TRX_SYS_TRX_ID_WRITE_MARGIN == 0:
            with self.engine.mtr() as m:
                f = m.page(0, trx_sys.TRX_SYS_PAGE_NO)
                m.write(f, trx_sys.TRX_SYS_TRX_ID_STORE,
                        (tid + trx_sys.TRX_SYS_TRX_ID_WRITE_MARGIN).to_bytes(8, "big"))
        trx = Trx(self.engine, tid)
        self.active[tid] = trx
        return trx

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
        from engine import mtr_log
        m.log(lf, mtr_log.RedoRecord(mtr_log.MLOG_UNDO_INSERT, 0, lf.page_no, payload))
        m.write(hf, undo.TRX_UNDO_N_RECS, (n + 1).to_bytes(4, "big"))
        return undo.make_roll_ptr(rtype == undo.TRX_UNDO_INSERT_REC, u.rseg_id, lf.page_no, off)

    def undo_pages(self, trx: Trx) -> list[int]:
        """Page numbers of the transaction's undo log chain, header page first."""
        pages = []
        pno = trx.undo.hdr_page
        while pno != FIL_NULL:
            pages.append(pno)
            if len(pages) > 1 << 16:
                raise Corruption(f"undo log of trx {trx.id} has a cycle")
            pno = u32(self.engine.buf.get(0, pno).data, FIL_PAGE_NEXT)
        return pages

    def undo_records(self, trx: Trx) -> list[bytes]:
        out = []
        for pno in self.undo_pages(trx):
            out.extend(p for _, p in undo.page_records(self.engine.buf.get(0, pno).data))
        return out

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

    # -- commit and rollback --------------------------------------------------------------------------
    def commit(self, trx: Trx) -> int:
        """Commit; return the commit LSN (0 for a transaction that changed nothing)."""
        if trx.undo is not None:
            with self.engine.mtr() as m:
                self._free_undo_log(m, trx)
            trx.commit_lsn = m.end_lsn
        trx.state = COMMITTED
        self._finish(trx)
        if trx.commit_lsn:
            self.engine._flush_log_at_commit(trx.commit_lsn)
        return trx.commit_lsn

    def _finish(self, trx: Trx) -> None:
        self.lock_sys.release_all(trx)
        self.active.pop(trx.id, None)
        trx.undo = None

    def rollback_step(self, trx: Trx) -> bool:
        """Undo the newest undo record of ``trx`` in one mtr; when none is left, free the undo
        log (completing the rollback).  Returns True while records remain."""
        assert trx.state == ACTIVE
        if trx.undo is None:
            trx.state = ROLLED_BACK
            self._finish(trx)
            return False
        u = trx.undo
        eng = self.engine
        with eng.mtr() as m:
            hf = m.page(0, u.hdr_page)
            n = undo.header_n_recs(hf.data)
            if n == 0:
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

    def _undo_row(self, m, trx: Trx, rtype: int, space: int, key: int, old: bytes) -> None:
        index = self.engine.index_by_space(space)
        cur = index.get(m, key)
        if rtype == undo.TRX_UNDO_INSERT_REC:
            if cur is None or bp.leaf_trx_id(cur) != trx.id:
                raise Corruption(f"rollback of insert {index.name}:{key} by trx {trx.id}: "
                                 f"row is {'missing' if cur is None else 'not ours'}")
            index.delete(m, key)
        elif rtype == undo.TRX_UNDO_UPD_EXIST_REC:
            if cur is None or bp.leaf_trx_id(cur) != trx.id:
                raise Corruption(f"rollback of update {index.name}:{key} by trx {trx.id}: "
                                 f"row is {'missing' if cur is None else 'not ours'}")
            index.update(m, old)
        else:
            if cur is not None:
                raise Corruption(f"rollback of delete {index.name}:{key} by trx {trx.id}: "
                                 f"row exists")
            index.insert(m, old)

    def rollback(self, trx: Trx) -> None:
        while self.rollback_step(trx):
            pass

    # -- recovery ---------------------------------------------------------------------------------------
    def resurrect(self) -> list[Trx]:
        """trx_lists_init_at_db_start: rebuild ACTIVE transactions from the undo logs, with X
        locks on the rows they changed.  Must run after redo apply (MDEV-34212)."""
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
                if state != undo.TRX_UNDO_ACTIVE:
                    raise Corruption(f"rseg {rseg_id} slot {slot}: undo log of trx {tid} in "
                                     f"state {state} still in a slot")
                trx = Trx(eng, tid, resurrected=True)
                trx.undo = UndoLog(rseg_id, slot, pno)
                for payload in self.undo_records(trx):
                    _, _, space, key, _ = undo.parse_rec(payload)
                    self.lock_sys.acquire(trx, "?", space, key, "X")
                self.active[tid] = trx
                found.append(trx)
                max_id = max(max_id, tid + 1)
        self.max_trx_id = max(max_id, self.max_trx_id)
        eng.stats["recv_trx_resurrected"] += len(found)
        return sorted(found, key=lambda t: -t.id)

    def _check(self) -> None:
        """Every active transaction with an undo log owns its rseg slot; lock holders are
        active transactions."""
        for t in self.active.values():
            assert t.state == ACTIVE
        for k, (mode, holders) in self.lock_sys.locks.items():
            assert holders and holders <= set(self.active), (k, holders)
