"""The structural checker (an fsck for the engine's files).

Two passes, each returning a list of problems in words (empty: clean):

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
"""
from __future__ import annotations

from tornpage.engine import btr_page, fsp, row, trx_sys
from tornpage.engine import page as fil_page
from tornpage.engine.errors import EngineError, EngineIOError
from tornpage.engine.page import FIL_NULL, PAGE_OK

# the checker's own reference to page verification, bound at import: a mutant that plants a bug
# in the engine's verification (campaigns.mutants) must not blind the checker too
_verify_page = fil_page.verify


def _used_pages(eng, space: int) -> list[int]:
    return fsp.used_pages(eng.buf.get(space, 0).data)


def _dblwr_area(eng) -> range:
    first = trx_sys.doublewrite_first_page(eng.config.n_rollback_segments)
    return range(first, first + eng.config.doublewrite_batch_pages + 1)


def _page_problems(eng, lsn_limit: int, use_pool: bool) -> list[str]:
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
                    out.append(f"page {space}:{pno} in the buffer pool has LSN {lsn} beyond "
                               f"the recovered log end {lsn_limit}")
                continue
            raw = ts.read_page(pno)
            v = _verify_page(raw, ps, lsn_limit)
            if v != PAGE_OK:
                out.append(f"page {space}:{pno} on disk is {v}"
                           + (f" (page LSN {fil_page.page_lsn(raw)} > {lsn_limit})"
                              if v == fil_page.PAGE_FROM_FUTURE else ""))
            elif fil_page.page_no(raw) != pno or fil_page.page_space(raw) != space:
                out.append(f"page {space}:{pno} on disk claims to be page "
                           f"{fil_page.page_space(raw)}:{fil_page.page_no(raw)}")
    return out


def check_after_recovery(eng) -> list[str]:
    """Page validity and page LSN <= recovered log end, right after recovery."""
    try:
        return _page_problems(eng, eng.recovered_lsn, use_pool=True)
    except EngineIOError:   # unreadable, not malformed: the caller decides
        raise
    except EngineError as e:
        return [f"{type(e).__name__}: {e}"]


def _index_agreement(eng, idx, sidx) -> list[str]:
    """After a full purge: no delete-marked records, and the secondary index holds exactly
    the entries (k, id) of the clustered index's rows."""
    out = []
    big = (1 << 64) - 1
    clust = idx.scan(eng.buf, 0, big, 1 << 62)
    entries = sidx.scan(eng.buf, 0, big, 1 << 62)
    marked = [btr_page.rec_key(r) for r in clust if btr_page.is_delete_marked(r)]
    if marked:
        out.append(f"table {idx.name}: delete-marked rows {marked[:8]} left after purge")
    smarked = [btr_page.sec_key_parts(btr_page.rec_key(e)) for e in entries
               if btr_page.is_delete_marked(e)]
    if smarked:
        out.append(f"table {idx.name}, index k: delete-marked entries (k, id) {smarked[:8]} "
                   f"left after purge")
    want = {(row.rec_k(r), btr_page.rec_key(r))
            for r in clust if not btr_page.is_delete_marked(r)}
    have = {btr_page.sec_key_parts(btr_page.rec_key(e)) for e in entries
            if not btr_page.is_delete_marked(e)}
    if want - have:
        out.append(f"table {idx.name}, index k: rows (k, id) {sorted(want - have)[:8]} have no "
                   f"index entry")
    if have - want:
        out.append(f"table {idx.name}, index k: entries (k, id) {sorted(have - want)[:8]} "
                   f"match no row")
    return out


def check_quiesced(eng) -> list[str]:
    """Full structural check of a quiesced engine (no active transactions, pool flushed)."""
    out: list[str] = []
    try:
        if eng.trx_sys.active:
            out.append(f"transactions still ACTIVE: {sorted(eng.trx_sys.active)}")
        else:
            eng.purge_all()
            if eng.purge.history_length():
                out.append(f"history list holds {eng.purge.history_length()} undo logs after "
                           f"purge ran with no read view open")
        eng.buf.flush_all()
        out += _page_problems(eng, eng.log.end_lsn, use_pool=False)
        ps = eng.config.page_size
        for r in range(eng.config.n_rollback_segments):
            slots = trx_sys.rseg_slots(eng.buf.get(0, trx_sys.FIRST_RSEG_PAGE_NO + r).data, ps)
            used = [(i, p) for i, p in enumerate(slots) if p != FIL_NULL]
            if used and not eng.trx_sys.active:
                out.append(f"rollback segment {r}: undo slots still in use {used[:4]}")
        reserved = trx_sys.first_free_page(eng.config.n_rollback_segments,
                                           eng.config.doublewrite_batch_pages + 1)
        if not eng.trx_sys.active:
            leaked = [p for p in _used_pages(eng, 0) if p >= reserved]
            if leaked:
                out.append(f"system tablespace: pages {leaked[:8]} marked used but no undo log "
                           f"owns them")
        for name in sorted(eng.tables):
            idx = eng.tables[name]
            try:
                info = idx._check(eng.buf)
            except EngineIOError:
                raise
            except EngineError as e:
                out.append(f"table {name}: {type(e).__name__}: {e}")
                continue
            tree_pages = set(info["page_set"])
            used = set(_used_pages(eng, idx.space)) - {0}
            if tree_pages - used:
                out.append(f"table {name}: tree pages {sorted(tree_pages - used)[:8]} are "
                           f"marked free in the FSP bitmap")
            sidx = eng.sec_index_by_space(idx.space)
            if sidx is not None:
                try:
                    info_k = sidx._check(eng.buf)
                except EngineError as e:
                    out.append(f"table {name}, index k: {type(e).__name__}: {e}")
                    continue
                tree_pages |= set(info_k["page_set"])
                if not eng.trx_sys.active:
                    out += _index_agreement(eng, idx, sidx)
            if used - tree_pages:
                out.append(f"table {name}: pages {sorted(used - tree_pages)[:8]} marked used "
                           f"but not in the tree")
    except EngineIOError:   # unreadable, not malformed: the caller decides
        raise
    except EngineError as e:        # btr_page.PageLayoutError included (a Corruption)
        out.append(f"{type(e).__name__}: {e}")
    return out
