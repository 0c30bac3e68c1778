"""The clustered B+tree of a table (btr/btr0btr.cc, btr0cur.cc; simplified).

Keys are unsigned 64-bit primary keys.  The root page number never changes (as in InnoDB: a
root split copies the root's records to a new child and raises the root a level,
btr_root_raise_and_insert).  Leaves are linked through FIL_PAGE_PREV / FIL_PAGE_NEXT; so is each
non-leaf level.  A node pointer's key is the lower bound of its child's key range (every key in
the subtree is >= it), except for the leftmost pointer of a page, which acts as minus infinity.

Every change happens inside the caller's mtr: an insert that splits pages, the parent updates
and a root raise are one atomic group of redo records; so is a delete with the page merges,
page discards and tree shrink it triggers.

Delete (btr_cur_pessimistic_delete + btr_cur_compress_if_useful): after the record is removed,
a non-root page that became empty is discarded (btr_discard_page: its node pointer is removed
from the parent, it is unlinked from its level and freed); one whose data fell below
MERGE_THRESHOLD_PCT of the page capacity is merged into its left, or else right, sibling under
the same parent when its records fit there (btr_compress), the emptied page freed.  A parent
that lost a node pointer is then checked the same way, up to the root; a root left with a single
child takes that child's records and level (btr_lift_page_up), so the height shrinks and the
root page number never changes.  Merges are composed from the same redo records as splits
(MLOG_REC_INSERT / MLOG_REC_DELETE / MLOG_REC_UPDATE_IN_PLACE, MLOG_PAGE_INIT +
MLOG_LIST_END_COPY_CREATED, FIL_PAGE_PREV/NEXT and FSP bitmap writes): recovery rebuilds them
from redo alone.  Pages are kept compact by every change (each rewrites the heap back to back,
btr_page.write_records or its incremental equivalents), so there is
no fragmentation for btr_page_reorganize to remove and merges need no reorganize step.

Non-leaf invariants (what Index._check and the descent rely on):
  * the first record of every non-leaf page routes "minus infinity": the descent and _check
    ignore its key, which may be stale (lower or higher than the page's lower bound) after
    merges and discards; it is only ever less than the page's second key;
  * every other node pointer key lies strictly above the page's lower bound and below its upper
    bound, and is the exact lower bound of its child's range.  A record that stops being first
    (a merge puts records before it, or appends it behind another page's records) is re-keyed
    to that exact bound first, and a node pointer about to be inserted at or before a first
    record's key re-keys the first record to 0 (the smallest u64), so a stale first key never
    misroutes a search.

Leaf records may be delete-marked; merges treat every record alike and read only its length and
key (btr_page.records / rec_key), so they serve the clustered and the secondary record formats.
"""
from __future__ import annotations

import bisect

from tornpage.engine import btr_page as bp
from tornpage.engine import fsp, mtr_log
from tornpage.engine.errors import Corruption
from tornpage.engine.page import (FIL_NULL, FIL_PAGE_INDEX, FIL_PAGE_NEXT, FIL_PAGE_PREV, page_type, u32)


def max_record_size(page_size: int) -> int:
    """Largest record payload (bytes) a page can take so that any split succeeds."""
    return bp.capacity(page_size) // 4 - bp.REC_LEN


# InnoDB's MERGE_THRESHOLD default (BTR_CUR_PAGE_COMPRESS_LIMIT): a non-root page whose data
# falls below this percentage of the page capacity after a delete is merged when it fits
MERGE_THRESHOLD_PCT = 50


def data_size(frame) -> int:
    """Bytes of ``frame``'s record heap in use: payloads plus their length fields
    (page_get_data_size).  O(1)."""
    return bp.capacity(len(frame)) - bp.free_space(frame)


def compress_limit(page_size: int) -> int:
    """Data size (bytes) below which a non-root page is a merge candidate
    (BTR_CUR_PAGE_COMPRESS_LIMIT)."""
    return bp.capacity(page_size) * MERGE_THRESHOLD_PCT // 100


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
    """Mark ``page_no`` of ``space`` free in the FSP bitmap in ``mtr`` (btr_page_free).  The
    page's own contents are left alone: it is unreachable once the caller has unlinked it."""
    hdr = mtr.page(space, 0)
    if not fsp.is_used(hdr.data, page_no):
        raise Corruption(f"page {space}:{page_no} to free is already free in the FSP bitmap")
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
        O(height * log(records per page)) on cached pages (btr_page.parsed)."""
        f = self._index_page(mtr, self.root)
        path = [f]
        lvl = bp.level(f.data)
        while lvl > 0:
            pp = bp.parsed(f.data)
            if not pp.recs:
                raise Corruption(f"{self.name}: empty non-leaf page {f.page_no}")
            i = max(0, bisect.bisect_right(pp.keys, key) - 1)
            child = self._index_page(mtr, bp.node_child(pp.recs[i]))
            child_lvl = bp.level(child.data)
            if child_lvl != lvl - 1:
                raise Corruption(f"{self.name}: page {child.page_no} at level "
                                 f"{child_lvl} under level {lvl}")
            path.append(child)
            f, lvl = child, child_lvl
        return path

    def get(self, mtr, key: int) -> bytes | None:
        """The leaf record payload with ``key``, or None.  O(height * log(records per page))."""
        return bp.lookup(self.search_path(mtr, key)[-1].data, key)

    def lookup_path(self, mtr, key: int) -> tuple[list, bytes | None]:
        """(:meth:`search_path`, :meth:`get`) of ``key`` with one descent: the path can be
        handed to :meth:`delete`, :meth:`update` or :meth:`insert` of the same key in the same
        mtr, if no page was fixed or read in between (a second descent would then fix the
        same frames in the same order, so the buffer pool's LRU order is the same without it).
        O(height * log(records per page))."""
        path = self.search_path(mtr, key)
        return path, bp.lookup(path[-1].data, key)

    def scan(self, mtr, lo: int, hi: int, limit: int) -> list[bytes]:
        """Leaf records with lo <= key <= hi in key order, at most ``limit``.  O(height *
        log(records per page) + leaf records visited), no key decoded on cached pages."""
        return self.scan_keyed(mtr, lo, hi, limit)[1]

    def scan_keyed(self, mtr, lo: int, hi: int, limit: int) -> tuple[list[int], list[bytes]]:
        """(keys, records) of :meth:`scan`: ``keys[i]`` is the key of ``records[i]``."""
        keys: list[int] = []
        out: list[bytes] = []
        leaf = self.search_path(mtr, lo)[-1]
        while True:
            pp = bp.parsed(leaf.data)
            if bp.keys_ascending(pp):
                if self._scan_page(pp, lo, hi, limit, out, keys):
                    return keys, out
            else:                       # a damaged page: the records in page order
                for k, r in zip(pp.keys, pp.recs):
                    if k > hi or len(out) >= limit:
                        return keys, out
                    if k >= lo:
                        out.append(r)
                        keys.append(k)
            nxt = u32(leaf.data, FIL_PAGE_NEXT)
            if nxt == FIL_NULL:
                return keys, out
            leaf = self._index_page(mtr, nxt)

    @staticmethod
    def _scan_page(pp, lo: int, hi: int, limit: int, out: list, keys_out: list) -> bool:
        """:meth:`scan`'s walk over one leaf whose keys ascend, by binary search and slices:
        appends to ``out`` what the record-by-record walk appends (records with lo <= key <=
        hi, up to ``limit`` in all) and returns True where that walk would stop on this page
        (at a key > hi, or at any record once ``limit`` are taken); False: go on to the next
        leaf (also when the limit was reached with this page's last record, as the walk
        looks at the next leaf's first record before it stops).  O(log records) + records
        taken, in C.  Their keys go to ``keys_out``."""
        keys = pp.keys
        n = len(keys)
        room = limit - len(out)
        if room <= 0:
            return n > 0
        t = bisect.bisect_right(keys, hi)
        s = bisect.bisect_left(keys, lo, 0, t)
        if t - s >= room:
            out.extend(pp.recs[s:s + room])
            keys_out.extend(keys[s:s + room])
            return s + room < n
        out.extend(pp.recs[s:t])
        keys_out.extend(keys[s:t])
        return t < n

    # -- modification -----------------------------------------------------------------------------
    def insert(self, mtr, payload: bytes, path: list | None = None) -> None:
        """Insert a leaf record (the key must be absent), splitting pages as needed.  ``path``:
        from :meth:`lookup_path` of its key (saves the descent)."""
        assert len(payload) <= max_record_size(mtr.page_size)
        if path is None:
            path = self.search_path(mtr, bp.rec_key(payload))
        self._insert_at(mtr, path, len(path) - 1, payload)

    def update(self, mtr, payload: bytes, path: list | None = None) -> None:
        """Replace the leaf record with the same key (in place when it fits).  ``path``: from
        :meth:`lookup_path` of that key (saves the descent)."""
        key = bp.rec_key(payload)
        if path is None:
            path = self.search_path(mtr, key)
        leaf = path[-1]
        cur = bp.lookup(leaf.data, key)
        if cur is None:
            raise Corruption(f"{self.name}: key {key} to update is not in leaf page "
                             f"{self.space}:{leaf.page_no}")
        if bp.free_space(leaf.data) + len(cur) >= len(payload):
            mtr.log(leaf, mtr_log.RedoRecord(mtr_log.MLOG_REC_UPDATE_IN_PLACE, self.space,
                                             leaf.page_no, payload))
        else:
            mtr.log(leaf, mtr_log.RedoRecord(mtr_log.MLOG_REC_DELETE, self.space, leaf.page_no,
                                             mtr_log.key_body(key)))
            self._insert_at(mtr, path, len(path) - 1, payload)

    def delete(self, mtr, key: int, path: list | None = None) -> None:
        """Physically remove the leaf record with ``key`` (it must exist), then merge, discard
        and shrink as the module docstring says (btr_cur_pessimistic_delete +
        btr_cur_compress_if_useful).  O(height * records per page) plus, per merged page, one
        MLOG_REC_INSERT per moved record.  ``path``: from :meth:`lookup_path` of ``key``
        (saves the descent)."""
        if path is None:
            path = self.search_path(mtr, key)
        leaf = path[-1]
        mtr.log(leaf, mtr_log.RedoRecord(mtr_log.MLOG_REC_DELETE, self.space, leaf.page_no,
                                         mtr_log.key_body(key)))
        self._compress_if_useful(mtr, path, len(path) - 1)

    def _insert_at(self, mtr, path: list, depth: int, payload: bytes) -> None:
        f = path[depth]
        if bp.level(f.data) > 0:
            self._min_key_before(mtr, f, bp.rec_key(payload))
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

    # -- delete: merge, discard, shrink (btr0btr.cc) -------------------------------------------
    def _compress_if_useful(self, mtr, path: list, depth: int) -> None:
        """btr_cur_compress_if_useful for ``path[depth]``, which just lost a record: discard it
        when empty, merge it when below compress_limit, lift the root's only child into the
        root.  Recurses up ``path`` while parents lose node pointers."""
        f = path[depth]
        if depth == 0:
            self._lift_root(mtr, f)
        elif bp.n_recs(f.data) == 0:
            self._discard_page(mtr, path, depth)
        elif data_size(f.data) < compress_limit(mtr.page_size):
            self._compress(mtr, path, depth)

    def _node_ptr_pos(self, parent, precs: list, child_no: int) -> int:
        """Position of the node pointer to ``child_no`` in ``parent``'s records ``precs``.

        Raises:
            Corruption: the parent has no pointer to the child.
        """
        for i, r in enumerate(precs):
            if bp.node_child(r) == child_no:
                return i
        raise Corruption(f"{self.name}: page {parent.page_no} has no node pointer to page "
                         f"{child_no}")

    def _sibling(self, mtr, f, precs: list, pos: int, left: bool):
        """The child of ``precs[pos]`` (fixed), checked to be ``f``'s left / right neighbour on
        the level list.

        Raises:
            Corruption: FIL_PAGE_PREV / FIL_PAGE_NEXT disagree with the parent.
        """
        s = self._index_page(mtr, bp.node_child(precs[pos]))
        a, b = (s, f) if left else (f, s)
        if u32(a.data, FIL_PAGE_NEXT) != b.page_no or u32(b.data, FIL_PAGE_PREV) != a.page_no \
                or bp.level(s.data) != bp.level(f.data):
            raise Corruption(f"{self.name}: pages {a.page_no} and {b.page_no} are adjacent "
                             f"children of one parent but not linked siblings of one level")
        return s

    def _compress(self, mtr, path: list, depth: int) -> None:
        """btr_compress: merge the underfilled ``path[depth]`` into its left sibling under the
        same parent if its records fit there, else into its right one; free it; then look at
        the parent.  No merge (the page stays as it is) when neither fits or the page is its
        parent's only child."""
        f = path[depth]
        parent = path[depth - 1]
        precs = bp.records(parent.data)
        pos = self._node_ptr_pos(parent, precs, f.page_no)
        need = data_size(f.data)
        if pos > 0:
            left = self._sibling(mtr, f, precs, pos - 1, left=True)
            if need <= bp.free_space(left.data):
                self._merge_into_left(mtr, f, left, parent, precs, pos)
                self._compress_if_useful(mtr, path, depth - 1)
                return
        if pos + 1 < len(precs):
            right = self._sibling(mtr, f, precs, pos + 1, left=False)
            if need <= bp.free_space(right.data):
                self._merge_into_right(mtr, f, right, parent, precs, pos)
                self._compress_if_useful(mtr, path, depth - 1)

    def _merge_into_left(self, mtr, f, left, parent, precs: list, pos: int) -> None:
        """Append ``f``'s records to ``left`` (its keys are all smaller), unlink and free ``f``
        and delete its node pointer ``precs[pos]`` (pos >= 1, so never the parent's first).
        On a non-leaf level ``f``'s first record is re-keyed to ``f``'s lower bound, the key of
        its node pointer.  Redo: one MLOG_REC_INSERT per record on ``left``, MLOG_REC_DELETE on
        the parent, sibling link and FSP bitmap writes."""
        bound = bp.rec_key(precs[pos])
        recs = bp.records(f.data)
        if bp.level(f.data) > 0:
            recs[0] = bp.make_node_ptr(bound, bp.node_child(recs[0]))
        lrecs = bp.records(left.data)
        if lrecs and bp.rec_key(lrecs[-1]) >= bound or \
                any(bp.rec_key(a) >= bp.rec_key(b) for a, b in zip(recs, recs[1:])):
            raise Corruption(f"{self.name}: merging page {f.page_no} into {left.page_no}: keys "
                             f"not above {left.page_no}'s and ascending from {bound}")
        for r in recs:
            mtr.log(left, mtr_log.RedoRecord(mtr_log.MLOG_REC_INSERT, self.space,
                                             left.page_no, r))
        self._level_list_remove(mtr, f)
        mtr.log(parent, mtr_log.RedoRecord(mtr_log.MLOG_REC_DELETE, self.space, parent.page_no,
                                           mtr_log.key_body(bound)))
        free_page(mtr, self.space, f.page_no)
        mtr.engine.stats["btr_page_merges"] += 1

    def _merge_into_right(self, mtr, f, right, parent, precs: list, pos: int) -> None:
        """Put ``f``'s records in front of ``right``'s, unlink and free ``f``; in the parent
        ``f``'s node pointer now points to ``right`` (keeping its key, ``f``'s lower bound) and
        ``right``'s old pointer ``precs[pos + 1]`` is deleted.  On a non-leaf level ``right``'s
        old first record is re-keyed to its exact bound (that pointer's key) before it stops
        being first.  Redo: MLOG_REC_DELETE + MLOG_REC_INSERT (re-key), one MLOG_REC_INSERT per
        moved record, MLOG_REC_DELETE + MLOG_REC_UPDATE_IN_PLACE on the parent, sibling link
        and FSP bitmap writes."""
        bound = bp.rec_key(precs[pos + 1])
        recs = bp.records(f.data)
        rrecs = bp.records(right.data)
        if any(bp.rec_key(r) >= bound for r in recs) or \
                (rrecs and bp.level(right.data) == 0 and bp.rec_key(rrecs[0]) < bound):
            raise Corruption(f"{self.name}: merging page {f.page_no} into {right.page_no}: keys "
                             f"not below {right.page_no}'s bound {bound}")
        if bp.level(right.data) > 0 and rrecs and bp.rec_key(rrecs[0]) != bound:
            first = rrecs[0]
            if len(rrecs) > 1 and bp.rec_key(rrecs[1]) <= bound:
                raise Corruption(f"{self.name}: page {right.page_no} key "
                                 f"{bp.rec_key(rrecs[1])} not above its bound {bound}")
            mtr.log(right, mtr_log.RedoRecord(mtr_log.MLOG_REC_DELETE, self.space,
                                              right.page_no, mtr_log.key_body(bp.rec_key(first))))
            mtr.log(right, mtr_log.RedoRecord(mtr_log.MLOG_REC_INSERT, self.space, right.page_no,
                                              bp.make_node_ptr(bound, bp.node_child(first))))
        for r in recs:
            mtr.log(right, mtr_log.RedoRecord(mtr_log.MLOG_REC_INSERT, self.space,
                                              right.page_no, r))
        self._level_list_remove(mtr, f)
        self._node_ptr_take_over(mtr, parent, precs, pos)
        free_page(mtr, self.space, f.page_no)
        mtr.engine.stats["btr_page_merges"] += 1

    def _node_ptr_take_over(self, mtr, parent, precs: list, pos: int) -> None:
        """The child of ``precs[pos + 1]`` takes over ``precs[pos]``'s range: delete the former
        pointer and point the latter (its key unchanged, so a first record stays first) at
        that child.  Redo: MLOG_REC_DELETE + MLOG_REC_UPDATE_IN_PLACE on ``parent``."""
        nxt = precs[pos + 1]
        mtr.log(parent, mtr_log.RedoRecord(mtr_log.MLOG_REC_DELETE, self.space, parent.page_no,
                                           mtr_log.key_body(bp.rec_key(nxt))))
        mtr.log(parent, mtr_log.RedoRecord(
            mtr_log.MLOG_REC_UPDATE_IN_PLACE, self.space, parent.page_no,
            bp.make_node_ptr(bp.rec_key(precs[pos]), bp.node_child(nxt))))

    def _discard_page(self, mtr, path: list, depth: int) -> None:
        """btr_discard_page: drop ``path[depth]``, whose subtree holds no record (an empty
        leaf, or a non-leaf page whose only child was just discarded): unlink it from its level,
        free it and remove its node pointer.  The range goes to the left sibling under the same
        parent, or for the parent's first child to the right one.  A parent left without
        children is discarded in turn; a root left without children becomes an empty leaf."""
        f = path[depth]
        parent = path[depth - 1]
        precs = bp.records(parent.data)
        pos = self._node_ptr_pos(parent, precs, f.page_no)
        self._level_list_remove(mtr, f)
        free_page(mtr, self.space, f.page_no)
        mtr.engine.stats["btr_pages_discarded"] += 1
        if len(precs) == 1:
            if depth - 1 > 0:
                self._discard_page(mtr, path, depth - 1)
            else:       # cannot follow a lift, which leaves no root with one child: be safe
                mtr.engine.stats["btr_tree_shrinks"] += bp.level(parent.data)
                mtr.new_page(self.space, self.root, FIL_PAGE_INDEX, 0, self.index_id)
            return
        if pos == 0:
            self._node_ptr_take_over(mtr, parent, precs, 0)
        else:
            mtr.log(parent, mtr_log.RedoRecord(mtr_log.MLOG_REC_DELETE, self.space,
                                               parent.page_no,
                                               mtr_log.key_body(bp.rec_key(precs[pos]))))
        self._compress_if_useful(mtr, path, depth - 1)

    def _level_list_remove(self, mtr, f) -> None:
        """btr_level_list_remove: link ``f``'s left and right neighbours to each other
        (FIL_PAGE_NEXT of the left, FIL_PAGE_PREV of the right; MLOG_WRITE_STRING).  ``f``'s
        own links are left as they are: it is about to be freed."""
        prev_no = u32(f.data, FIL_PAGE_PREV)
        next_no = u32(f.data, FIL_PAGE_NEXT)
        if prev_no != FIL_NULL:
            mtr.write(self._index_page(mtr, prev_no), FIL_PAGE_NEXT, next_no.to_bytes(4, "big"))
        if next_no != FIL_NULL:
            mtr.write(self._index_page(mtr, next_no), FIL_PAGE_PREV, prev_no.to_bytes(4, "big"))

    def _lift_root(self, mtr, root) -> None:
        """btr_lift_page_up, for the root: while the root is a non-leaf page with a single node
        pointer, re-create the root at its child's level with the child's records
        (MLOG_PAGE_INIT + MLOG_LIST_END_COPY_CREATED) and free the child.  The root page number
        never changes.  Counts one ``btr_tree_shrinks`` per level removed."""
        while bp.level(root.data) > 0:
            recs = bp.records(root.data)
            if len(recs) != 1:
                return
            child = self._index_page(mtr, bp.node_child(recs[0]))
            lvl = bp.level(child.data)
            if lvl != bp.level(root.data) - 1 or u32(child.data, FIL_PAGE_PREV) != FIL_NULL or \
                    u32(child.data, FIL_PAGE_NEXT) != FIL_NULL:
                raise Corruption(f"{self.name}: the root's only child {child.page_no} is not "
                                 f"alone on the level below the root")
            crecs = bp.records(child.data)
            mtr.new_page(self.space, self.root, FIL_PAGE_INDEX, lvl, self.index_id)
            if crecs:
                mtr.log(root, mtr_log.RedoRecord(mtr_log.MLOG_LIST_END_COPY_CREATED, self.space,
                                                 self.root, mtr_log.encode_rec_list(crecs)))
            free_page(mtr, self.space, child.page_no)
            mtr.engine.stats["btr_tree_shrinks"] += 1

    def _min_key_before(self, mtr, f, key: int) -> None:
        """Before node pointer ``key`` goes into non-leaf page ``f``: if ``f``'s first record
        (minus infinity, its key possibly stale) has a key >= ``key``, re-key it to 0 so the new
        pointer lands after it (MLOG_REC_DELETE + MLOG_REC_INSERT).  ``key`` > 0 always: a
        split key is above the split page's first record's key."""
        recs = bp.records(f.data)
        if recs and bp.rec_key(recs[0]) >= key:
            assert key > 0, (self.name, f.page_no, key)
            first = recs[0]
            mtr.log(f, mtr_log.RedoRecord(mtr_log.MLOG_REC_DELETE, self.space, f.page_no,
                                          mtr_log.key_body(bp.rec_key(first))))
            mtr.log(f, mtr_log.RedoRecord(mtr_log.MLOG_REC_INSERT, self.space, f.page_no,
                                          bp.make_node_ptr(0, bp.node_child(first))))

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
            pp = bp.parsed(f.data)
            recs, keys = pp.recs, pp.keys
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
