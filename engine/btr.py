"""The clustered B+tree of a table (btr/btr0btr.cc, btr0cur.cc; simplified).

Keys are unsigned 64-bit primary keys.  The root page number never changes (as in InnoDB: a
root split copies the root's records to a new child and raises the root a level,
btr_root_raise_and_insert).  Leaves are linked through FIL_PAGE_PREV / FIL_PAGE_NEXT; so is each
non-leaf level.  A node pointer's key is the smallest key of its subtree, except for the leftmost
pointer of a page, which acts as minus infinity.

Every change happens inside the caller's mtr: an insert that splits pages, the parent updates
and a root raise are one atomic group of redo records.

Simplification: no page merges on delete yet (empty leaves stay linked); records are never
delete-marked (see engine.undo).
"""
from __future__ import annotations

import bisect

from engine import btr_page as bp
from engine import fsp, mtr_log
from engine.errors import Corruption
from engine.page import (FIL_NULL, FIL_PAGE_INDEX, FIL_PAGE_NEXT, FIL_PAGE_PREV, page_type, u32)


def max_record_size(page_size: int) -> int:
    """Largest record payload (bytes) a page can take so that any split succeeds."""
    return bp.capacity(page_size) // 4 - bp.REC_LEN


def alloc_page(mtr, space: int) -> int:
    """Allocate a page of ``space`` in ``mtr`` (marks it used in the FSP bitmap)."""
    hdr = mtr.page(space, 0)
    pno = fsp.find_free(hdr.data, mtr.page_size)
    off, b = fsp.bitmap_byte_after(hdr.data, pno, True)
    mtr.write(hdr, off, b)
    if pno >= fsp.free_limit(hdr.data):
        mtr.write(hdr, fsp.FSP_FREE_LIMIT, (pno + 1).to_bytes(4, "big"))
    return pno


def free_page(mtr, space: int, page_no: int) -> None:
    hdr = mtr.page(space, 0)
    assert fsp.is_used(hdr.data, page_no), (space, page_no)
    off, b = fsp.bitmap_byte_after(hdr.data, page_no, False)
    mtr.write(hdr, off, b)


class Index:
    """A clustered index: ``space`` id, ``root`` page number, ``index_id``."""

    def __init__(self, name: str, space: int, root: int, index_id: int) -> None:
        self.name = name
        self.space = space
        self.root = root
        self.index_id = index_id

    # -- descent ----------------------------------------------------------------------------------
    def _index_page(self, src, page_no: int):
        """Fetch an INDEX page through ``src``: an :class:`~engine.mtr.Mtr` (fixes the page, for
        changes) or the :class:`~engine.buf.BufferPool` (no fix, for reads that copy at once)."""
        f = src.page(self.space, page_no)
        if page_type(f.data) != FIL_PAGE_INDEX:
            raise Corruption(f"{self.name}: page {self.space}:{page_no} has type "
                             f"{page_type(f.data)}, expected INDEX")
        return f

    def search_path(self, mtr, key: int) -> list:
        """Frames from the root down to the leaf that does or would hold ``key``.
        O(height * records per page)."""
        path = [self._index_page(mtr, self.root)]
        while bp.level(path[-1].data) > 0:
            recs = bp.records(path[-1].data)
            if not recs:
                raise Corruption(f"{self.name}: empty non-leaf page {path[-1].page_no}")
            i = max(0, bisect.bisect_right([bp.rec_key(r) for r in recs], key) - 1)
            child = self._index_page(mtr, bp.node_child(recs[i]))
            if bp.level(child.data) != bp.level(path[-1].data) - 1:
                raise Corruption(f"{self.name}: page {child.page_no} at level "
                                 f"{bp.level(child.data)} under level {bp.level(path[-1].data)}")
            path.append(child)
        return path

    def get(self, mtr, key: int) -> bytes | None:
        """The leaf record payload with ``key``, or None."""
        leaf = self.search_path(mtr, key)[-1]
        recs = bp.records(leaf.data)
        i = bp.find(recs, key)
        if i < len(recs) and bp.rec_key(recs[i]) == key:
            return recs[i]
        return None

    def scan(self, mtr, lo: int, hi: int, limit: int) -> list[bytes]:
        """Leaf records with lo <= key <= hi in key order, at most ``limit``."""
        out = []
        leaf = self.search_path(mtr, lo)[-1]
        while True:
            for r in bp.records(leaf.data):
                k = bp.rec_key(r)
                if k > hi or len(out) >= limit:
                    return out
                if k >= lo:
                    out.append(r)
            nxt = u32(leaf.data, FIL_PAGE_NEXT)
            if nxt == FIL_NULL:
                return out
            leaf = self._index_page(mtr, nxt)

    # -- modification -----------------------------------------------------------------------------
    def insert(self, mtr, payload: bytes) -> None:
        """Insert a leaf record (the key must be absent), splitting pages as needed."""
        assert len(payload) <= max_record_size(mtr.page_size)
        path = self.search_path(mtr, bp.rec_key(payload))
        self._insert_at(mtr, path, len(path) - 1, payload)

    def update(self, mtr, payload: bytes) -> None:
        """Replace the leaf record with the same key (in place when it fits)."""
        key = bp.rec_key(payload)
        path = self.search_path(mtr, key)
        leaf = path[-1]
        recs = bp.records(leaf.data)
        i = bp.find(recs, key)
        assert i < len(recs) and bp.rec_key(recs[i]) == key, key
        if bp.free_space(leaf.data) + len(recs[i]) >= len(payload):
            mtr.log(leaf, mtr_log.RedoRecord(mtr_log.MLOG_REC_UPDATE_IN_PLACE, self.space,
                                             leaf.page_no, payload))
        else:
            mtr.log(leaf, mtr_log.RedoRecord(mtr_log.MLOG_REC_DELETE, self.space, leaf.page_no,
                                             mtr_log.key_body(key)))
            self._insert_at(mtr, path, len(path) - 1, payload)

    def delete(self, mtr, key: int) -> None:
        leaf = self.search_path(mtr, key)[-1]
        mtr.log(leaf, mtr_log.RedoRecord(mtr_log.MLOG_REC_DELETE, self.space, leaf.page_no,
                                         mtr_log.key_body(key)))

    def _insert_at(self, mtr, path: list, depth: int, payload: bytes) -> None:
        f = path[depth]
        if bp.free_space(f.data) >= len(payload) + bp.REC_LEN:
            mtr.log(f, mtr_log.RedoRecord(mtr_log.MLOG_REC_INSERT, self.space, f.page_no,
                                          payload))
            return
        if depth == 0:
            child = self._root_raise(mtr, f)
            path = [f, child] + path[1:]
            depth = 1
            f = child
        self._split_and_insert(mtr, path, depth, payload)

    def _root_raise(self, mtr, root):
        """Move the root's records to a new page one level down; the root points to it."""
        recs = bp.records(root.data)
        lvl = bp.level(root.data)
        new_no = alloc_page(mtr, self.space)
        child = mtr.new_page(self.space, new_no, FIL_PAGE_INDEX, lvl, self.index_id)
        mtr.log(child, mtr_log.RedoRecord(mtr_log.MLOG_LIST_END_COPY_CREATED, self.space, new_no,
                                          mtr_log.encode_rec_list(recs)))
        mtr.new_page(self.space, self.root, FIL_PAGE_INDEX, lvl + 1, self.index_id)
        mtr.log(root, mtr_log.RedoRecord(mtr_log.MLOG_REC_INSERT, self.space, self.root,
                                         bp.make_node_ptr(0, new_no)))
        mtr.engine.stats["btr_root_raises"] += 1
        return child

    def _split_and_insert(self, mtr, path: list, depth: int, payload: bytes) -> None:
        """btr_page_split_and_insert: split ``path[depth]`` at its middle, then insert."""
        f = path[depth]
        recs = bp.records(f.data)
        key = bp.rec_key(payload)
        allrecs = list(recs)
        allrecs.insert(bp.find(recs, key), payload)
        # split point: the middle by bytes, keeping at least one record on each side
        total = sum(len(r) + bp.REC_LEN for r in allrecs)
        acc, m = 0, 0
        while m < len(allrecs) - 1 and acc + len(allrecs[m]) + bp.REC_LEN <= total // 2:
            acc += len(allrecs[m]) + bp.REC_LEN
            m += 1
        m = max(1, m)
        split_key = bp.rec_key(allrecs[m])
        lvl = bp.level(f.data)
        new_no = alloc_page(mtr, self.space)
        right = mtr.new_page(self.space, new_no, FIL_PAGE_INDEX, lvl, self.index_id)
        mtr.log(right, mtr_log.RedoRecord(mtr_log.MLOG_LIST_END_COPY_CREATED, self.space, new_no,
                                          mtr_log.encode_rec_list(allrecs[m:])))
        mtr.log(f, mtr_log.RedoRecord(mtr_log.MLOG_LIST_END_DELETE, self.space, f.page_no,
                                      mtr_log.key_body(split_key)))
        if key < split_key:
            mtr.log(f, mtr_log.RedoRecord(mtr_log.MLOG_REC_INSERT, self.space, f.page_no,
                                          payload))
        # sibling links: f <-> right <-> old next
        old_next = u32(f.data, FIL_PAGE_NEXT)
        mtr.write(right, FIL_PAGE_PREV, f.page_no.to_bytes(4, "big"))
        mtr.write(right, FIL_PAGE_NEXT, old_next.to_bytes(4, "big"))
        mtr.write(f, FIL_PAGE_NEXT, new_no.to_bytes(4, "big"))
        if old_next != FIL_NULL:
            nxt = self._index_page(mtr, old_next)
            mtr.write(nxt, FIL_PAGE_PREV, new_no.to_bytes(4, "big"))
        mtr.engine.stats["btr_page_splits"] += 1
        self._insert_at(mtr, path, depth - 1, bp.make_node_ptr(split_key, new_no))

    # -- invariants -------------------------------------------------------------------------------
    def _check(self, src) -> dict:
        """Walk the whole tree and assert its invariants: page layout, key order, every key
        within its node pointer's bounds, levels decreasing by one, sibling links forming each
        level's list in key order.  Returns {"pages": n, "records": n, "height": h,
        "page_set": [page numbers]}.

        Raises:
            Corruption / btr_page.PageLayoutError: an invariant does not hold.
        """
        # ``src`` is the buffer pool: pages are read without fixing (a large tree would not fit)
        levels: dict[int, list[int]] = {}
        n_records = 0
        pages = 0

        def walk(page_no: int, lo: int | None, hi: int | None, expect_level: int | None):
            nonlocal n_records, pages
            f = self._index_page(src, page_no)
            bp._check(f.data)
            lvl = bp.level(f.data)
            if expect_level is not None and lvl != expect_level:
                raise Corruption(f"{self.name}: page {page_no} level {lvl}, expected "
                                 f"{expect_level}")
            pages += 1
            levels.setdefault(lvl, []).append(page_no)
            recs = bp.records(f.data)
            keys = [bp.rec_key(r) for r in recs]
            for j, k in enumerate(keys):
                if lvl > 0 and j == 0:
                    continue  # leftmost node pointer: minus infinity
                if (lo is not None and k < lo) or (hi is not None and k >= hi):
                    raise Corruption(f"{self.name}: key {k} on page {page_no} outside "
                                     f"[{lo}, {hi})")
            if lvl == 0:
                n_records += len(recs)
                return
            if not recs:
                raise Corruption(f"{self.name}: empty non-leaf page {page_no}")
            for j, r in enumerate(recs):
                c_lo = lo if j == 0 else keys[j]
                c_hi = keys[j + 1] if j + 1 < len(recs) else hi
                walk(bp.node_child(r), c_lo, c_hi, lvl - 1)

        walk(self.root, None, None, None)
        for lvl, pnos in levels.items():
            for a, b in zip(pnos, pnos[1:]):
                fa = src.page(self.space, a)
                fb = src.page(self.space, b)
                if u32(fa.data, FIL_PAGE_NEXT) != b or u32(fb.data, FIL_PAGE_PREV) != a:
                    raise Corruption(f"{self.name}: level {lvl} sibling links {a} <-> {b} broken")
            first = src.page(self.space, pnos[0])
            last = src.page(self.space, pnos[-1])
            if u32(first.data, FIL_PAGE_PREV) != FIL_NULL or \
                    u32(last.data, FIL_PAGE_NEXT) != FIL_NULL:
                raise Corruption(f"{self.name}: level {lvl} list not terminated by FIL_NULL")
        return {"pages": pages, "records": n_records, "height": max(levels) + 1,
                "page_set": sorted(p for pnos in levels.values() for p in pnos)}
