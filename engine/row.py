"""Row versions and secondary index maintenance (row/row0vers.cc, row0upd.cc, row0uins.cc,
row0umod.cc, row0purge.cc; simplified).

Version chain: a clustered record's DB_ROLL_PTR points at the undo record that holds the
version before it (the old record, with its own DB_TRX_ID and DB_ROLL_PTR); a roll pointer
with the insert flag means there was no earlier version.  A consistent read walks the chain
until a version its read view sees (:func:`build_for_consistent_read`).  Purge and rollback
stop a walk at the first version purge's view sees: undo older than that may already be
purged and its pages reused (:func:`sec_entry_needed`).

Secondary index (the index on ``k``, the value's first 4 bytes as a big-endian u32): entries
``(k, pk)`` are never updated in place.  A change of k delete-marks the old entry and inserts
(or un-delete-marks) the new one; a delete delete-marks the entry.  Rollback removes an entry
it had added unless an older version still has it, in which case it stays delete-marked for
purge; purge removes a delete-marked entry once no version a read view can see has it.  All
index changes of one row change happen in the same mtr as its undo record, so a crash leaves
either all or none of them.
"""
from __future__ import annotations

import struct

from tornpage.engine import btr_page as bp, fsp, undo
from tornpage.engine.errors import Corruption
from tornpage.engine.page import FIL_PAGE_UNDO_LOG, page_type


def row_k(value: bytes) -> int:
    """The secondary index column ``k`` of a row value: its first 4 bytes, big-endian u32."""
    return struct.unpack_from(">I", value, 0)[0]


def rec_k(rec: bytes) -> int:
    return row_k(bp.leaf_value(rec))


def previous_version(src, rec: bytes, space: int, stats=None) -> bytes | None:
    """The version of clustered record ``rec`` before its DB_TRX_ID changed it, read from the
    undo record its DB_ROLL_PTR points at; None when it was an insert (no earlier version).
    ``src``: an mtr or the buffer pool.

    Raises:
        Corruption: the roll pointer dangles (a freed undo page, no record there, or a record
            of another row): undo was purged while a version chain still led to it.
    """
    is_insert, _, pno, off = undo.parse_roll_ptr(bp.leaf_roll_ptr(rec))
    if is_insert:
        return None
    key = bp.rec_key(rec)
    if not fsp.is_used(src.page(0, 0).data, pno):
        raise Corruption(f"row {space}:{key}: roll pointer to undo page {pno}, which is free "
                         f"(its undo log was purged while a version still needed it)")
    f = src.page(0, pno)
    if page_type(f.data) != FIL_PAGE_UNDO_LOG:
        raise Corruption(f"row {space}:{key}: roll pointer to page {pno} of type "
                         f"{page_type(f.data)}, not an undo page")
    try:
        rtype, _, r_space, r_key, old = undo.parse_rec(undo.read_rec_at(f.data, off))
    except undo.UndoLayoutError as e:
        raise Corruption(f"row {space}:{key}: roll pointer to undo page {pno} offset {off}: "
                         f"{e}") from None
    if (r_space, r_key) != (space, key) or rtype == undo.TRX_UNDO_INSERT_REC:
        raise Corruption(f"row {space}:{key}: roll pointer to undo page {pno} offset {off} "
                         f"finds a {undo.UNDO_TYPE_NAMES[rtype]} record of row "
                         f"{r_space}:{r_key}")
    if stats is not None:
        stats["mvcc_versions_built"] += 1
    return old


def build_for_consistent_read(src, rec: bytes, space: int, view, stats=None) -> bytes | None:
    """The version of ``rec`` that read view ``view`` sees (a delete-marked version means the
    row was deleted: the caller treats it as absent), or None when the row did not exist for
    the view (row_vers_build_for_consistent_read)."""
    while rec is not None and not view.changes_visible(bp.leaf_trx_id(rec)):
        rec = previous_version(src, rec, space, stats)
    return rec


def visible_value(src, rec: bytes | None, space: int, view, stats=None) -> bytes | None:
    """The row value ``view`` sees in clustered record ``rec``, or None (no row for it)."""
    if rec is None:
        return None
    v = build_for_consistent_read(src, rec, space, view, stats)
    return None if v is None or bp.is_delete_marked(v) else bp.leaf_value(v)


def sec_entry_needed(src, clust_rec: bytes | None, space: int, k: int, purge_view) -> bool:
    """Whether a secondary entry ``(k, pk)`` is still needed: some version of the row, from the
    current one back to the first version purge's view sees, is not delete-marked and has
    ``k`` (row_vers_old_has_index_entry with also_curr)."""
    rec = clust_rec
    while rec is not None:
        if not bp.is_delete_marked(rec) and rec_k(rec) == k:
            return True
        if purge_view.changes_visible(bp.leaf_trx_id(rec)):
            return False
        rec = previous_version(src, rec, space)
    return False


# -- secondary index changes (inside the caller's mtr) ---------------------------------------------
# Each looks an entry up and changes it with one descent (Index.lookup_path), touching no other
# page in between; sec_remove_if_unneeded reads undo pages in between, so it descends again.
def sec_insert(m, sidx, k: int, pk: int) -> None:
    """Add entry (k, pk), or clear its delete mark if a delete-marked one is still there."""
    key = bp.sec_key(k, pk)
    path, cur = sidx.lookup_path(m, key)
    if cur is None:
        sidx.insert(m, bp.make_sec_rec(k, pk), path)
    elif bp.is_delete_marked(cur):
        sidx.update(m, bp.make_sec_rec(k, pk), path)
    else:
        raise Corruption(f"{sidx.name}: entry ({k}, {pk}) exists and is not delete-marked")


def sec_delete_mark(m, sidx, k: int, pk: int, marked: bool = True) -> None:
    """Set (or with ``marked=False`` clear) the delete mark of entry (k, pk), which must exist."""
    path, cur = sidx.lookup_path(m, bp.sec_key(k, pk))
    if cur is None:
        raise Corruption(f"{sidx.name}: entry ({k}, {pk}) missing (to "
                         f"{'delete-mark' if marked else 'unmark'})")
    m.engine.stats["sec_entries_delete_marked" if marked else "sec_entries_unmarked"] += 1
    sidx.update(m, bp.make_sec_rec(k, pk, marked), path)


def sec_remove(m, sidx, k: int, pk: int, only_if_marked: bool = False) -> bool:
    """Remove entry (k, pk) if present (and, with ``only_if_marked``, delete-marked)."""
    key = bp.sec_key(k, pk)
    path, cur = sidx.lookup_path(m, key)
    if cur is None or (only_if_marked and not bp.is_delete_marked(cur)):
        return False
    sidx.delete(m, key, path)
    return True


def sec_remove_if_unneeded(m, sidx, clust_rec, space: int, k: int, pk: int,
                           purge_view) -> str:
    """Purge or rollback of entry (k, pk): remove it when no version still needs it, else make
    sure it is delete-marked.  Returns "removed", "kept" or "absent"."""
    cur = sidx.get(m, bp.sec_key(k, pk))
    if cur is None:
        return "absent"
    if sec_entry_needed(m, clust_rec, space, k, purge_view):
        if not bp.is_delete_marked(cur) and not _current_has(clust_rec, k):
            sidx.update(m, bp.make_sec_rec(k, pk, True))
        return "kept"
    sidx.delete(m, bp.sec_key(k, pk))
    return "removed"


def _current_has(clust_rec, k: int) -> bool:
    return clust_rec is not None and not bp.is_delete_marked(clust_rec) and rec_k(clust_rec) == k
