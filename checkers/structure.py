"""The structural checker (an fsck for the engine's files).

Two passes, each returning a list of problems (empty: clean).  A problem
(:class:`checkers.rules.Problem`) is a string in words that also names the rule it broke
(``problem.rule``, an id of :data:`checkers.rules.RULES`, e.g. ``fsck.btr_sibling_link``):

* :func:`check_after_recovery`, right after ``Engine.open`` and before any new work: every page
  the FSP bitmaps mark used is valid (checksum, trailer LSN) and no page LSN lies beyond the
  recovered end of the redo log.  Pages recovery is holding dirty in the buffer pool are checked
  there instead of on disk (their disk image may be the torn one being repaired).
* :func:`check_quiesced`, after background rollback finished: it runs purge to the end (no read
  view is open, so the whole history list goes) and flushes everything, then checks the same
  pages on disk, every B+tree's order, bounds, levels and sibling links, every tree page marked
  used and every used page reachable (no leaks), no rollback-segment slot in use, no
  transaction left ACTIVE, empty history lists, no delete-marked record left, and a secondary
  index that holds exactly one entry (k, id) per row of its table.

The B+tree walk is the checker's own (not ``btr.Index._check``), so each broken invariant has
its rule and a mutant planted in the engine cannot blind it.  It stops at a tree's first broken
invariant, as a walk over a broken tree cannot trust what lies below.
"""
from __future__ import annotations

import bisect

from tornpage.checkers.rules import Problem
from tornpage.engine import btr_page, fsp, row, trx_sys
from tornpage.engine import page as fil_page
from tornpage.engine.errors import EngineError, EngineIOError
from tornpage.engine.fil import IBD_SUFFIX
from tornpage.engine.page import (FIL_NULL, FIL_PAGE_INDEX, FIL_PAGE_NEXT, FIL_PAGE_PREV,
                                  PAGE_OK, page_type, u32)

# the checker's own reference to page verification, bound at import: a mutant that plants a bug
# in the engine's verification (campaigns.mutants) must not blind the checker too
_verify_page = fil_page.verify

# what fil_page.verify said → the rule a used page in that state breaks
_PAGE_RULES = {fil_page.PAGE_BAD_CHECKSUM: "fsck.page_checksum", fil_page.PAGE_TORN: "fsck.page_torn",
               fil_page.PAGE_ZERO: "fsck.page_zero", fil_page.PAGE_SHORT: "fsck.page_short",
               fil_page.PAGE_FROM_FUTURE: "fsck.page_lsn_future",
               fil_page.PAGE_MISPLACED: "fsck.page_misplaced"}


def _used_pages(eng, space: int) -> list[int]:
    return fsp.used_pages(eng.buf.get(space, 0).data)


def _dblwr_area(eng) -> range:
    first = trx_sys.doublewrite_first_page(eng.config.n_rollback_segments)
    return range(first, first + trx_sys.dblwr_area_pages(eng.config.doublewrite_batch_pages))


def _page_problems(eng, lsn_limit: int, use_pool: bool) -> list[Problem]:
    out = []
    ps = eng.config.page_size
    area = _dblwr_area(eng)
    for space in sorted(eng.fil.spaces):
        ts = eng.fil.space(space)
        for pno in _used_pages(eng, space):
            if space == 0 and pno in area:
                continue        # doublewrite slots hold copies of other pages (or nothing)
            f = eng.buf.frames.get((space, pno)) if use_pool else None
            if f is not None and f.oldest_modification:
                lsn = f.newest_modification
                if lsn > lsn_limit:
                    out.append(Problem("fsck.pool_page_lsn_future",
                                       f"page {space}:{pno} in the buffer pool has LSN {lsn} "
                                       f"beyond the recovered log end {lsn_limit}"))
                continue
            raw = ts.read_page(pno)
            v = _verify_page(raw, ps, lsn_limit)
            if v != PAGE_OK:
                out.append(Problem(_PAGE_RULES.get(v, "fsck.page_invalid"),
                                   f"page {space}:{pno} on disk is {v}"
                                   + (f" (page LSN {fil_page.page_lsn(raw)} > {lsn_limit})"
                                      if v == fil_page.PAGE_FROM_FUTURE else "")))
            elif fil_page.page_no(raw) != pno or fil_page.page_space(raw) != space:
                out.append(Problem("fsck.page_misplaced",
                                   f"page {space}:{pno} on disk claims to be page "
                                   f"{fil_page.page_space(raw)}:{fil_page.page_no(raw)}"))
    return out


def check_after_recovery(eng) -> list[Problem]:
    """Page validity and page LSN <= recovered log end, right after recovery; and no
    tablespace file that no table of the dictionary owns (``fsck.orphan_file``: DDL is atomic
    by redo, so a dropped or renamed table's file never outlives recovery)."""
    try:
        return _orphan_files(eng) + _page_problems(eng, eng.recovered_lsn, use_pool=True)
    except EngineIOError:   # unreadable, not malformed: the caller decides
        raise
    except EngineError as e:
        return [Problem("fsck.engine_error", f"{type(e).__name__}: {e}")]


def _orphan_files(eng) -> list[Problem]:
    owned = {eng.fil.space(idx.space).path for idx in eng.tables.values()}
    orphans = [p for p in eng.vfs.listdir("") if p.endswith(IBD_SUFFIX) and p not in owned]
    if not orphans:
        return []
    return [Problem("fsck.orphan_file", f"tablespace files {orphans[:8]} belong to no table of "
                                        f"the recovered dictionary {sorted(eng.tables)}")]


def _index_agreement(eng, idx, sidx) -> list[Problem]:
    """After a full purge: no delete-marked records, and the secondary index holds exactly
    the entries (k, id) of the clustered index's rows."""
    out = []
    big = (1 << 64) - 1
    ckeys, clust = idx.scan_keyed(eng.buf, 0, big, 1 << 62)
    skeys, entries = sidx.scan_keyed(eng.buf, 0, big, 1 << 62)
    info, flag = btr_page.REC_INFO, btr_page.REC_INFO_DELETED_FLAG
    marked = [k for k, r in zip(ckeys, clust) if r[info] & flag]
    if marked:
        out.append(Problem("fsck.delete_marked_after_purge",
                           f"table {idx.name}: delete-marked rows {marked[:8]} left after purge"))
    smarked = [btr_page.sec_key_parts(k) for k, e in zip(skeys, entries) if e[info] & flag]
    if smarked:
        out.append(Problem("fsck.sec_delete_marked_after_purge",
                           f"table {idx.name}, index k: delete-marked entries (k, id) "
                           f"{smarked[:8]} left after purge"))
    want = {(row.rec_k(r), k) for k, r in zip(ckeys, clust) if not r[info] & flag}
    have = {btr_page.sec_key_parts(k) for k, e in zip(skeys, entries) if not e[info] & flag}
    if want - have:
        out.append(Problem("fsck.sec_index_missing_entry",
                           f"table {idx.name}, index k: rows (k, id) {sorted(want - have)[:8]} "
                           f"have no index entry"))
    if have - want:
        out.append(Problem("fsck.sec_index_extra_entry",
                           f"table {idx.name}, index k: entries (k, id) "
                           f"{sorted(have - want)[:8]} match no row"))
    return out


class _TreeBroken(Exception):
    def __init__(self, rule: str, message: str) -> None:
        super().__init__(message)
        self.rule = rule


def _check_tree(buf, idx) -> list[int]:
    """Walk ``idx`` (clustered or secondary) from its root and check its invariants: INDEX
    pages whose heap parses, strictly ascending keys, records of the right length, levels
    decreasing by one, every key within its node pointer's bounds (the first node pointer of
    a non-leaf page routes minus infinity: its key is not checked), no empty non-leaf page,
    and sibling links forming each level's list in key order, FIL_NULL at both ends.  Returns
    the tree's page numbers.

    Raises:
        _TreeBroken: the first invariant that does not hold, with its rule.
        EngineError: a page could not be read.
    """
    space = idx.space
    levels: dict[int, list[int]] = {}

    def walk(page_no: int, lo: int | None, hi: int | None, expect_level: int | None):
        data = buf.get(space, page_no).data
        if page_type(data) != FIL_PAGE_INDEX:
            t = page_type(data)
            raise _TreeBroken("fsck.btr_page_type",
                              f"page {space}:{page_no} has type "
                              f"{fil_page.PAGE_TYPE_NAMES.get(t, t)}, expected INDEX")
        try:
            pp = btr_page.parsed(data)
        except btr_page.PageLayoutError as e:
            raise _TreeBroken("fsck.btr_page_layout", f"page {page_no}: {e}") from None
        recs, keys = pp.recs, pp.keys       # keys[i] is the key of recs[i]
        if not btr_page.keys_ascending(pp) or len(set(keys)) != len(keys):
            raise _TreeBroken("fsck.btr_order",
                              f"page {page_no}: keys not strictly ascending: {list(keys)}")
        lvl = btr_page.level(data)
        lens = set(map(len, recs))
        if lvl > 0:
            ok = lens <= {btr_page.NODE_PTR_LEN}
            what, good = "node pointer", lambda n: n == btr_page.NODE_PTR_LEN
        elif btr_page.is_secondary(data):
            ok = lens <= {btr_page.SEC_REC_LEN}
            what, good = "secondary index record", lambda n: n == btr_page.SEC_REC_LEN
        else:
            ok = not lens or min(lens) >= btr_page.REC_VALUE
            what, good = "leaf record", lambda n: n >= btr_page.REC_VALUE
        if not ok:
            bad = next(len(r) for r in recs if not good(len(r)))
            raise _TreeBroken("fsck.btr_record_length",
                              f"page {page_no}: {what} of {bad} bytes")
        if expect_level is not None and lvl != expect_level:
            raise _TreeBroken("fsck.btr_level",
                              f"page {page_no} level {lvl}, expected {expect_level}")
        levels.setdefault(lvl, []).append(page_no)
        # keys ascend strictly: those below lo lead, those at or above hi trail
        first = 1 if lvl > 0 else 0         # the leftmost node pointer: minus infinity
        if first < len(keys):
            k = None
            if lo is not None and keys[first] < lo:
                k = keys[first]
            elif hi is not None:
                i = bisect.bisect_left(keys, hi, first)
                k = keys[i] if i < len(keys) else None
            if k is not None:
                raise _TreeBroken("fsck.btr_key_bounds",
                                  f"key {k} on page {page_no} outside [{lo}, {hi})")
        if lvl == 0:
            return
        if not recs:
            raise _TreeBroken("fsck.btr_empty_nonleaf", f"empty non-leaf page {page_no}")
        for j, r in enumerate(recs):
            c_lo = lo if j == 0 else keys[j]
            c_hi = keys[j + 1] if j + 1 < len(recs) else hi
            walk(btr_page.node_child(r), c_lo, c_hi, lvl - 1)

    walk(idx.root, None, None, None)
    for lvl, pnos in sorted(levels.items()):
        for a, b in zip(pnos, pnos[1:]):
            if u32(buf.get(space, a).data, FIL_PAGE_NEXT) != b or \
                    u32(buf.get(space, b).data, FIL_PAGE_PREV) != a:
                raise _TreeBroken("fsck.btr_sibling_link",
                                  f"level {lvl} sibling links {a} <-> {b} broken")
        if u32(buf.get(space, pnos[0]).data, FIL_PAGE_PREV) != FIL_NULL or \
                u32(buf.get(space, pnos[-1]).data, FIL_PAGE_NEXT) != FIL_NULL:
            raise _TreeBroken("fsck.btr_level_list_end",
                              f"level {lvl} list not terminated by FIL_NULL")
    return sorted(p for pnos in levels.values() for p in pnos)


def _tree_pages(eng, idx, label: str, out: list) -> set | None:
    """The pages of tree ``idx``, or None (with its problem appended to ``out``) when the tree
    is broken or unreadable."""
    try:
        return set(_check_tree(eng.buf, idx))
    except EngineIOError:   # unreadable, not malformed: the caller decides
        raise
    except _TreeBroken as e:
        out.append(Problem(e.rule, f"{label}: {e}"))
    except EngineError as e:
        out.append(Problem("fsck.engine_error", f"{label}: {type(e).__name__}: {e}"))
    return None


def check_quiesced(eng) -> list[Problem]:
    """Full structural check of a quiesced engine (no active transactions, pool flushed)."""
    out: list[Problem] = []
    try:
        if eng.trx_sys.active:
            out.append(Problem("fsck.trx_active_left",
                               f"transactions still ACTIVE: {sorted(eng.trx_sys.active)}"))
        else:
            eng.purge_all()
            if eng.purge.history_length():
                out.append(Problem("fsck.history_not_empty",
                                   f"history list holds {eng.purge.history_length()} undo logs "
                                   f"after purge ran with no read view open"))
        eng.buf.flush_all()
        out += _page_problems(eng, eng.log.end_lsn, use_pool=False)
        ps = eng.config.page_size
        for r in range(eng.config.n_rollback_segments):
            slots = trx_sys.rseg_slots(eng.buf.get(0, trx_sys.FIRST_RSEG_PAGE_NO + r).data, ps)
            used = [(i, p) for i, p in enumerate(slots) if p != FIL_NULL]
            if used and not eng.trx_sys.active:
                out.append(Problem("fsck.rseg_slot_in_use",
                                   f"rollback segment {r}: undo slots still in use {used[:4]}"))
        cfg = eng.config
        reserved = trx_sys.first_free_page(cfg.n_rollback_segments,
                                           trx_sys.dblwr_area_pages(cfg.doublewrite_batch_pages))
        if not eng.trx_sys.active:
            leaked = [p for p in _used_pages(eng, 0) if p >= reserved]
            if leaked:
                out.append(Problem("fsck.undo_page_leak",
                                   f"system tablespace: pages {leaked[:8]} marked used but no "
                                   f"undo log owns them"))
        for name in sorted(eng.tables):
            idx = eng.tables[name]
            tree_pages = _tree_pages(eng, idx, f"table {name}", out)
            if tree_pages is None:
                continue
            used = set(_used_pages(eng, idx.space)) - {0}
            if tree_pages - used:
                out.append(Problem("fsck.tree_page_free",
                                   f"table {name}: tree pages {sorted(tree_pages - used)[:8]} "
                                   f"are marked free in the FSP bitmap"))
            sidx = eng.sec_index_by_space(idx.space)
            if sidx is not None:
                sec_pages = _tree_pages(eng, sidx, f"table {name}, index k", out)
                if sec_pages is None:
                    continue
                if sec_pages - used:
                    out.append(Problem("fsck.tree_page_free",
                                       f"table {name}, index k: tree pages "
                                       f"{sorted(sec_pages - used)[:8]} are marked free in the "
                                       f"FSP bitmap"))
                tree_pages |= sec_pages
                if not eng.trx_sys.active:
                    out += _index_agreement(eng, idx, sidx)
            if used - tree_pages:
                out.append(Problem("fsck.page_leak",
                                   f"table {name}: pages {sorted(used - tree_pages)[:8]} marked "
                                   f"used but not in the tree"))
    except EngineIOError:   # unreadable, not malformed: the caller decides
        raise
    except btr_page.PageLayoutError as e:       # a Corruption: before the general case
        out.append(Problem("fsck.btr_page_layout", f"page layout: {e}"))
    except EngineError as e:
        out.append(Problem("fsck.engine_error", f"{type(e).__name__}: {e}"))
    return out
