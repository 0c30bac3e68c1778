"""Every checker rule (checkers/rules.py RULES) fires on its own fault, and only there.

Each case of :data:`CASES` names one rule id, the finding kind it gives, and a function
``run(fault)`` that builds a small engine (or marker trace, or workload run), damages it when
``fault`` is true, and returns what the checker said: a :class:`Verdict`, or the list of
problems the structural checker returned.  For each case:

* with the fault, the verdict fails with exactly that kind and rule (and a structural check
  reports no rule but that one, or those the case lists in ``also``);
* without the fault, the same input passes.

:func:`test_every_rule_has_a_case` fails when a rule is added to RULES without a case here.

Damage is done the way tests/test_structure.py does it: to the durable image before recovery
(page images, bitmaps, tree pages, restamped so that only the intended check can see it), or to
a recovered engine's pages in the buffer pool (records, undo slots) where the check is about the
quiesced state.  The campaign's own verdict sites (``engine.*``, ``workload.*``,
``recovery.*``) are driven through ``crashcheck.check_crash_state`` on a real workload run,
with the engine call that must fail patched to fail, or the run's record of the workload
edited.
"""
from __future__ import annotations

import pickle
from dataclasses import dataclass, field
from typing import Callable

import pytest

from tornpage.campaigns import crashcheck
from tornpage.campaigns.artifacts import from_dict
from tornpage.campaigns.runner import Finding
from tornpage.campaigns.workload import TABLE, WorkloadSettings, row_value, run_workload
from tornpage.checkers import structure
from tornpage.checkers.oracle import (check_committed_state, check_ddl_rows, check_dictionary,
                                     check_prepared, check_xa_resolution)
from tornpage.checkers.rules import RULES, Problem
from tornpage.checkers.structure import check_after_recovery, check_quiesced
from tornpage.checkers.verdict import (CORRUPT, ENGINE_ERROR, HANG, ISOLATION, LOST, REFUSED,
                                       UNCOMMITTED, Verdict, finding_signature,
                                       legacy_signature)
from tornpage.engine import Engine, btr_page as bp, fsp, trx_sys
from tornpage.engine import page as fil_page
from tornpage.engine.errors import Corruption, RecoveryError
from tornpage.engine.page import (FIL_PAGE_NEXT, FIL_PAGE_OFFSET, FIL_PAGE_TYPE, FIL_PAGE_UNDO_LOG)
from tornpage.faultfs import CrashPlan, SimDisk

# one database shape and its image helpers, shared with the structural checker's tests
from test_structure import IBD, PS, SETTINGS, get_page, open_image, put_page  # noqa: E402

SPACE = 1                                         # sbtest1's tablespace id
SMALL = WorkloadSettings(table_size=20)           # for whole crash checks: fast


# -- images and engines ----------------------------------------------------------------------------
_BASE = {}


def base_image():
    """The durable image right after the workload's setup (150 rows, sharp checkpoint)."""
    if "image" not in _BASE:
        _BASE["image"] = run_workload(SETTINGS, []).disk.live_image()
    return _BASE["image"]


def restamp(page: bytearray, lsn: int | None = None) -> bytes:
    """Valid checksums and trailer for an edited page (as a page flush would write it)."""
    return fil_page.stamp_for_write(page, fil_page.page_lsn(page) if lsn is None else lsn)


def layout() -> tuple[int, list[int]]:
    """(root page, leaf pages in key order) of sbtest1's clustered index."""
    eng = open_image(base_image())
    idx = eng.tables[TABLE]
    root = eng.buf.get(SPACE, idx.root)
    assert bp.level(root.data) == 1, "the fixture should give a two-level tree"
    return idx.root, [bp.node_child(r) for r in bp.records(root.data)]


def edited(pno: int, edit, path: str = IBD):
    """The base image with page ``pno`` of ``path`` edited by ``edit(page)`` and restamped."""
    page = get_page(base_image(), pno, path)
    edit(page)
    return put_page(base_image(), pno, restamp(page), path)


def mark_used(image, pno: int, path: str = IBD):
    """``image`` with page ``pno`` of ``path`` marked used in its FSP bitmap and holding a
    valid page of its own number (a copy of the file's page 0 retyped as an undo page), so
    that only the leak checks can see it."""
    hdr = get_page(image, 0, path)
    off, byte = fsp.bitmap_byte_after(hdr, pno, used=True)
    hdr[off:off + 1] = byte
    fil_page.put_u32(hdr, fsp.FSP_FREE_LIMIT, max(fsp.free_limit(hdr), pno + 1))
    image = put_page(image, 0, restamp(hdr), path)
    page = get_page(image, 0, path)
    fil_page.put_u32(page, FIL_PAGE_OFFSET, pno)
    fil_page.put_u16(page, FIL_PAGE_TYPE, FIL_PAGE_UNDO_LOG)
    return put_page(image, pno, restamp(page), path)


def first_unused(image, path: str = IBD) -> int:
    used = set(fsp.used_pages(get_page(image, 0, path)))
    return next(p for p in range(1, 10_000) if p not in used)


def leaf_frames(eng, idx) -> list:
    """The leaf frames of ``idx`` in key order (through the buffer pool)."""
    frames = [eng.buf.get(idx.space, idx.root)]
    while bp.level(frames[0].data) > 0:
        frames = [eng.buf.get(idx.space, bp.node_child(r))
                  for f in frames for r in bp.records(f.data)]
    return frames


def leaf_with(eng, idx, key: int):
    return next(f for f in leaf_frames(eng, idx)
                if key in [bp.rec_key(r) for r in bp.records(f.data)])


def record(frame, key: int) -> bytes:
    return next(r for r in bp.records(frame.data) if bp.rec_key(r) == key)


ROW = 77                                  # the row the pool-damage cases pick on


def row_entry(eng, key: int = ROW) -> int:
    """The secondary index key of row ``key``'s entry (k, id)."""
    from tornpage.engine import row
    clust = record(leaf_with(eng, eng.tables[TABLE], key), key)
    return bp.sec_key(row.rec_k(clust), key)


def recovered(image=None) -> Engine:
    return open_image(base_image() if image is None else image)


# -- what the checkers say ---------------------------------------------------------------------------
def after_recovery(image):
    """The problems right after recovery (the campaign's first structural check)."""
    return check_after_recovery(open_image(image))


def quiesced(image=None, damage=None):
    """The full check of a recovered, quiesced engine, ``damage(eng)`` done first."""
    eng = recovered(image)
    eng.finish_background_rollback()
    if damage is not None:
        damage(eng)
    return check_quiesced(eng)


def image_case(make_image, check=after_recovery):
    """``run(fault)`` for damage to the durable image."""
    return lambda fault: check(make_image() if fault else base_image())


def pool_case(damage):
    """``run(fault)`` for damage to a recovered engine's pages in the buffer pool."""
    return lambda fault: quiesced(damage=damage if fault else None)


# -- page images --------------------------------------------------------------------------------------
def flipped_byte():
    return _raw_edit(layout()[1][3], lambda p: p.__setitem__(PS // 2, p[PS // 2] ^ 0x40))


def _raw_edit(pno: int, edit, path: str = IBD):
    """The base image with page ``pno`` edited and NOT restamped (a damaged image)."""
    page = get_page(base_image(), pno, path)
    edit(page)
    return put_page(base_image(), pno, bytes(page), path)


def torn_trailer():
    return _raw_edit(layout()[1][-1], lambda p: p.__setitem__(PS - 1, p[PS - 1] ^ 0x01))


def zeroed_leaf():
    return _raw_edit(layout()[1][5], lambda p: p.__setitem__(slice(0, PS), bytes(PS)))


def short_last_page():
    """The file cut in the middle of its last used page."""
    image = base_image().copy()
    last = max(fsp.used_pages(get_page(image, 0)))
    image.files[IBD] = image.files[IBD][:last * PS + PS // 2]
    return image


def future_lsn():
    end = open_image(base_image()).recovered_lsn
    pno = layout()[1][0]
    return put_page(base_image(), pno, restamp(get_page(base_image(), pno), lsn=end + 10_000))


def misplaced():
    _, leaves = layout()
    return put_page(base_image(), leaves[2], get_page(base_image(), leaves[1]))


def pool_lsn_future(fault: bool):
    run = run_workload(SETTINGS, [["bulk_update", 0, 10, 20, 5], ["commit", 0]])
    eng = open_image(run.disk.live_image())
    if fault:
        f = next(f for f in eng.buf.frames.values() if f.oldest_modification)
        f.newest_modification = eng.recovered_lsn + 1
    return check_after_recovery(eng)


def unknown_verification(fault: bool):
    if not fault:
        return after_recovery(base_image())
    mp = pytest.MonkeyPatch()
    with mp.context() as m:
        m.setattr(structure, "_verify_page", lambda raw, ps, lsn: "gibberish")
        return after_recovery(base_image())


def unreadable_bitmap(fault: bool):
    """The tablespace header evicted from the pool and damaged on disk: the checker's read of
    the FSP bitmap raises Corruption."""
    eng = recovered()
    if fault:
        eng.buf.frames.pop((SPACE, 0), None)
        f = eng.fil.space(SPACE).file
        raw = bytearray(f.pread(PS, 0))
        raw[PS // 2] ^= 0xFF
        f.pwrite(bytes(raw), 0)
    return check_after_recovery(eng)


# -- B+trees ---------------------------------------------------------------------------------------------
def leaf_edit(which: int, edit):
    return lambda: edited(layout()[1][which], lambda p: edit(p, layout()[1]))


def root_edit(edit):
    return lambda: edited(layout()[0], edit)


def set_type(p, leaves):
    fil_page.put_u16(p, FIL_PAGE_TYPE, FIL_PAGE_UNDO_LOG)


def bad_n_recs(p, leaves):
    fil_page.put_u16(p, bp.PAGE_N_RECS, bp.n_recs(p) + 1)


def swap_first_two(p, leaves):
    recs = bp.records(p)
    recs[0], recs[1] = recs[1], recs[0]
    bp.write_records(p, recs)


def short_record(p, leaves):
    recs = bp.records(p)
    recs[0] = recs[0][:bp.KEY_LEN + 2]
    bp.write_records(p, recs)


def raise_last_key(p, leaves):
    recs = bp.records(p)
    recs[-1] = (10_000).to_bytes(8, "big") + recs[-1][8:]      # still ascending in the page
    bp.write_records(p, recs)


def skip_next(p, leaves):
    fil_page.put_u32(p, FIL_PAGE_NEXT, leaves[5])              # leaf 3 → leaf 5, skipping 4


def link_last_to_first(p, leaves):
    fil_page.put_u32(p, FIL_PAGE_NEXT, leaves[0])


def root_level_2(p):
    fil_page.put_u16(p, bp.PAGE_LEVEL, 2)


def empty_root(p):
    bp.write_records(p, [])


def free_in_bitmap():
    victim = layout()[1][7]

    def edit(p):
        off, byte = fsp.bitmap_byte_after(p, victim, used=False)
        p[off:off + 1] = byte
    return edited(0, edit)


def leaked_table_page():
    return mark_used(base_image(), first_unused(base_image()))


def leaked_undo_page():
    image = base_image()
    return mark_used(image, first_unused(image, "ibdata1"), "ibdata1")


# -- transactions, undo, purge, secondary index ----------------------------------------------------------
def active_trx(fault: bool):
    eng = Engine.create(SimDisk(SETTINGS.device), SETTINGS.engine_config())
    eng.create_table(TABLE)
    trx = eng.begin()
    trx.insert(TABLE, 1, b"row one")
    if not fault:
        trx.commit()
    return check_quiesced(eng)


def history_left(fault: bool):
    """A committed update leaves an undo log in the history; purge that does nothing (a purge
    bug) leaves it there."""
    eng = recovered()
    trx = eng.begin()
    trx.update(TABLE, ROW, row_value(ROW, ROW, 1))          # k unchanged
    trx.commit()
    if fault:
        eng.purge.run_all = lambda *a, **k: 0
    return check_quiesced(eng)


def slot_in_use(eng):
    """A rollback-segment slot pointing at an undo page no transaction owns."""
    f = eng.buf.get(0, trx_sys.FIRST_RSEG_PAGE_NO)
    fil_page.put_u32(f.data, trx_sys.rseg_slot_offset(0), 3)


def delete_mark_row(eng):
    """Row ROW delete-marked, its secondary entry gone (as after a half purge)."""
    sec_key = row_entry(eng)
    leaf = leaf_with(eng, eng.tables[TABLE], ROW)
    bp.update_rec(leaf.data, bp.with_delete_mark(record(leaf, ROW), True))
    bp.delete_rec(leaf_with(eng, eng.sec_index_by_space(SPACE), sec_key).data, sec_key)


def delete_mark_entry(eng):
    """Row ROW's secondary entry delete-marked, the row gone."""
    sec_key = row_entry(eng)
    sleaf = leaf_with(eng, eng.sec_index_by_space(SPACE), sec_key)
    bp.update_rec(sleaf.data, bp.with_delete_mark(record(sleaf, sec_key), True))
    bp.delete_rec(leaf_with(eng, eng.tables[TABLE], ROW).data, ROW)


def drop_entry(eng):
    sec_key = row_entry(eng)
    bp.delete_rec(leaf_with(eng, eng.sec_index_by_space(SPACE), sec_key).data, sec_key)


def drop_row(eng):
    bp.delete_rec(leaf_with(eng, eng.tables[TABLE], ROW).data, ROW)


# -- the committed-state oracle --------------------------------------------------------------------------
class Script:
    """Oracle markers on a real SimDisk, as campaigns/workload.py emits them."""

    def __init__(self, initial: dict[int, bytes]) -> None:
        self.disk = SimDisk()
        self.disk.mark("initial-state", rows=tuple((TABLE, k, v) for k, v in sorted(initial.items())))

    def begin(self, trx: int, writes: dict) -> None:
        self.disk.mark("commit-begin", trx=trx,
                       writes=tuple(sorted((TABLE, k, v) for k, v in writes.items())))

    def ack(self, trx: int) -> None:
        self.disk.mark("commit-ack", trx=trx, lsn=1000)

    def judge(self, rows: dict) -> Verdict:
        return check_committed_state(self.disk.trace.markers(), len(self.disk.trace),
                                     {(TABLE, k): v for k, v in rows.items()})


INITIAL = {1: b"1-init", 2: b"2-init", 3: b"3-init"}
AFTER_10 = {**INITIAL, 1: b"1-t10"}
AFTER_11 = {**AFTER_10, 2: b"2-t11", 4: b"4-t11"}


def two_acked() -> Script:
    s = Script(INITIAL)
    s.begin(10, {1: b"1-t10"})
    s.ack(10)
    s.begin(11, {2: b"2-t11", 4: b"4-t11"})
    s.ack(11)
    return s


def oracle_case(faulty: dict, clean: dict, script=two_acked):
    return lambda fault: script().judge(faulty if fault else clean)


def ddl_script() -> Script:
    """Markers: sbtest2 created and dropped (both acknowledged), sbtest3 created (in doubt)."""
    s = Script(INITIAL)
    for label, attrs in [("ddl-begin", {"op": "create", "table": "sbtest2"}), ("ddl-ack", {}),
                         ("ddl-begin", {"op": "drop", "table": "sbtest2"}), ("ddl-ack", {}),
                         ("ddl-begin", {"op": "create", "table": "sbtest3"})]:
        s.disk.mark(label, **attrs)
    return s


def ddl_case(faulty: set, clean: set):
    def run(fault: bool):
        s = ddl_script()
        return check_dictionary(s.disk.trace.markers(), len(s.disk.trace),
                                faulty if fault else clean)
    return run


LOAD = {1: b"1-load", 2: b"2-load"}


def ddl_rows_case(faulty: dict, clean: dict):
    """sbtest2 created and loaded (both acknowledged); ``run(fault)`` judges the recovered rows
    of sbtest2."""
    def run(fault: bool):
        s = Script(INITIAL)
        s.disk.mark("ddl-begin", op="create", table="sbtest2")
        s.disk.mark("ddl-ack")
        s.disk.mark("load-begin", table="sbtest2", trx=50, rows=tuple(sorted(LOAD.items())))
        s.disk.mark("load-ack", trx=50, lsn=1000)
        return check_ddl_rows(s.disk.trace.markers(), len(s.disk.trace),
                              {"sbtest2": faulty if fault else clean})
    return run


def orphan_file():
    """The base image with a tablespace file no table owns."""
    img = base_image().copy()
    img.files["sbtest9.ibd"] = bytes(PS)
    return img


def hanging_open(vfs, config=None):
    """An Engine.open that polls the file system for ever (the bug-19 kind of hang)."""
    while True:
        vfs.exists("sbtest9.ibd")


def with_hole() -> Script:
    s = two_acked()
    s.begin(12, {3: b"3-t12"})                 # in doubt
    s.begin(13, {5: b"5-t13"})                 # in doubt, later in commit order
    return s


# -- the campaign's own verdict sites ----------------------------------------------------------------------
_RUN = {}


def small_run():
    """A small workload run with a committed and an uncommitted transaction."""
    if "run" not in _RUN:
        _RUN["run"] = run_workload(SMALL, [["update_non_index", 0, 5, 11], ["commit", 0],
                                           ["update_non_index", 1, 7, 12]])
    return _RUN["run"]


def crash_check(run, **kw) -> Verdict:
    return crashcheck.check_crash_state(run, CrashPlan(len(run.trace)), **kw).verdict


def patched(target, name: str, replacement):
    """``run(fault)``: the crash check of the small run, ``target.name`` replaced under fault."""
    def run(fault: bool):
        if not fault:
            return crash_check(small_run())
        mp = pytest.MonkeyPatch()
        with mp.context() as m:
            m.setattr(target, name, replacement)
            return crash_check(small_run())
    return run


def raising(exc):
    def f(*a, **k):
        raise exc
    return f


def edited_run(**changes):
    """``run(fault)``: the crash check of a fresh small run, its record edited under fault."""
    def run(fault: bool):
        r = run_workload(SMALL, [["update_non_index", 0, 5, 11], ["commit", 0]])
        if fault:
            for k, v in changes.items():
                setattr(r, k, v)
        return crash_check(r)
    return run


def not_idempotent(fault: bool):
    """One crash during recovery (keeping everything), then recovery again.  Under fault the
    first recovery's rows (the reference) hold a row the final one has not."""
    def draw(depth):
        return (lambda nb: CrashPlan(len(nb.trace))) if depth == 0 else None
    if not fault:
        return crash_check(small_run(), draw_nested=draw)
    real = Engine.all_rows
    calls = []

    def all_rows(self, table):
        rows = real(self, table)
        calls.append(table)
        return {**rows, 9999: b"phantom"} if len(calls) == 1 else rows
    mp = pytest.MonkeyPatch()
    with mp.context() as m:
        m.setattr(Engine, "all_rows", all_rows)
        return crash_check(small_run(), draw_nested=draw)


# -- XA and new work during background rollback ------------------------------------------------------
XA_WRITES = {1: b"1-xa20", 5: b"5-xa20"}


def xa_script() -> Script:
    """Two acknowledged commits, then trx 20 prepared (acknowledged, unresolved)."""
    s = two_acked()
    s.disk.mark("xa-prepare-begin", trx=20,
                writes=tuple(sorted((TABLE, k, v) for k, v in XA_WRITES.items())))
    s.disk.mark("xa-prepare", trx=20, lsn=2000)
    return s


def xa_found(**edit) -> dict:
    rows = {(TABLE, k): v for k, v in XA_WRITES.items()}
    return {20: {"rows": edit.get("rows", rows), "unlocked": edit.get("unlocked", [])}}


def xa_case(faulty: dict):
    def run(fault: bool):
        s = xa_script()
        return check_prepared(s.disk.trace.markers(), len(s.disk.trace),
                              faulty if fault else xa_found())
    return run


def xa_resolution_case(how: str):
    """trx 20 resolved by ``how``; under fault the state after is the other outcome's."""
    before = {(TABLE, k): v for k, v in AFTER_11.items()}
    with_xa = {**before, **{(TABLE, k): v for k, v in XA_WRITES.items()}}
    writes = tuple((TABLE, k, v) for k, v in XA_WRITES.items())

    def run(fault: bool):
        right = with_xa if how == "commit" else before
        wrong = before if how == "commit" else with_xa
        return check_xa_resolution(before, wrong if fault else right, [(20, how, writes)])
    return run


NEW_WORK_SEED = 1          # its new transactions try to lock the loser's row 7 (measured)


def rollback_run():
    """The small run with its uncommitted transaction's redo made durable (a checkpoint): a
    loser for background rollback."""
    if "rollback" not in _RUN:
        _RUN["rollback"] = run_workload(SMALL, [["update_non_index", 0, 5, 11], ["commit", 0],
                                                ["update_non_index", 1, 7, 12], ["checkpoint"]])
    return _RUN["rollback"]


def new_work_edited(edit):
    """``run(fault)``: the crash check of the small run with new work during background
    rollback; under fault ``edit`` changes what the new work recorded."""
    def run(fault: bool):
        if not fault:
            return crash_check(rollback_run(), new_work=NEW_WORK_SEED)
        real = crashcheck.run_new_work

        def edited(*a, **k):
            nw = real(*a, **k)
            edit(nw)
            return nw
        mp = pytest.MonkeyPatch()
        with mp.context() as m:
            m.setattr(crashcheck, "run_new_work", edited)
            return crash_check(rollback_run(), new_work=NEW_WORK_SEED)
    return run


def no_lock_conflicts(fault: bool):
    """Under fault row locks never conflict: a new transaction locks a row the resurrected
    transaction still holds."""
    from tornpage.engine.trx import LockSys
    if not fault:
        return crash_check(rollback_run(), new_work=NEW_WORK_SEED)

    def acquire(self, trx, table, space, key, mode):
        self.locks.setdefault((space, key), (mode, set()))[1].add(trx.id)
        trx.locks.add((space, key))
    mp = pytest.MonkeyPatch()
    with mp.context() as m:
        m.setattr(LockSys, "acquire", acquire)
        return crash_check(rollback_run(), new_work=NEW_WORK_SEED)


# -- the table ------------------------------------------------------------------------------------------------
@dataclass
class Case:
    rule: str
    kind: str
    run: Callable[[bool], object]          # fault → Verdict or list of problems
    also: tuple = field(default=())        # further rules the same damage may break

    @property
    def id(self) -> str:
        return self.rule


CASES = [
    # page images (the campaign's check right after recovery)
    Case("fsck.page_checksum", CORRUPT, image_case(flipped_byte)),
    Case("fsck.page_torn", CORRUPT, image_case(torn_trailer)),
    Case("fsck.page_zero", CORRUPT, image_case(zeroed_leaf)),
    Case("fsck.page_short", CORRUPT, image_case(short_last_page)),
    Case("fsck.page_lsn_future", CORRUPT, image_case(future_lsn)),
    Case("fsck.pool_page_lsn_future", CORRUPT, pool_lsn_future),
    Case("fsck.page_misplaced", CORRUPT, image_case(misplaced)),
    Case("fsck.page_invalid", CORRUPT, unknown_verification),
    Case("fsck.orphan_file", CORRUPT, image_case(orphan_file)),
    Case("fsck.engine_error", CORRUPT, unreadable_bitmap),
    # B+trees (valid pages, broken tree: only the quiesced check sees them)
    Case("fsck.btr_page_type", CORRUPT, image_case(leaf_edit(4, set_type), quiesced)),
    Case("fsck.btr_page_layout", CORRUPT, image_case(leaf_edit(4, bad_n_recs), quiesced)),
    Case("fsck.btr_order", CORRUPT, image_case(leaf_edit(4, swap_first_two), quiesced)),
    Case("fsck.btr_record_length", CORRUPT, image_case(leaf_edit(4, short_record), quiesced)),
    Case("fsck.btr_level", CORRUPT, image_case(root_edit(root_level_2), quiesced)),
    Case("fsck.btr_key_bounds", CORRUPT, image_case(leaf_edit(2, raise_last_key), quiesced)),
    Case("fsck.btr_empty_nonleaf", CORRUPT, image_case(root_edit(empty_root), quiesced)),
    Case("fsck.btr_sibling_link", CORRUPT, image_case(leaf_edit(3, skip_next), quiesced)),
    Case("fsck.btr_level_list_end", CORRUPT,
         image_case(leaf_edit(-1, link_last_to_first), quiesced)),
    Case("fsck.tree_page_free", CORRUPT, image_case(free_in_bitmap, quiesced)),
    Case("fsck.page_leak", CORRUPT, image_case(leaked_table_page, quiesced)),
    # transactions, undo, purge, secondary index
    Case("fsck.trx_active_left", CORRUPT, active_trx),
    Case("fsck.history_not_empty", CORRUPT, history_left, also=("fsck.undo_page_leak",)),
    Case("fsck.rseg_slot_in_use", CORRUPT, pool_case(slot_in_use)),
    Case("fsck.undo_page_leak", CORRUPT, image_case(leaked_undo_page, quiesced)),
    Case("fsck.delete_marked_after_purge", CORRUPT, pool_case(delete_mark_row)),
    Case("fsck.sec_delete_marked_after_purge", CORRUPT, pool_case(delete_mark_entry)),
    Case("fsck.sec_index_missing_entry", CORRUPT, pool_case(drop_entry)),
    Case("fsck.sec_index_extra_entry", CORRUPT, pool_case(drop_row)),
    # the committed-state oracle
    Case("oracle.durable_commit_lost", LOST, oracle_case(AFTER_10, AFTER_11)),
    Case("oracle.uncommitted_visible", UNCOMMITTED,
         oracle_case({**AFTER_11, 99: b"phantom"}, AFTER_11)),
    Case("oracle.partial_transaction", LOST,
         oracle_case({**AFTER_11, 2: b"2-init"}, AFTER_11)),
    Case("oracle.no_committed_prefix", LOST,
         oracle_case({**AFTER_11, 5: b"5-t13"}, {**AFTER_11, 3: b"3-t12", 5: b"5-t13"},
                     with_hole)),
    # XA
    Case("oracle.xa_prepared_lost", LOST, xa_case({})),
    Case("oracle.xa_prepared_unexpected", UNCOMMITTED, xa_case({**xa_found(), 21: {}})),
    Case("oracle.xa_prepared_changed", LOST,
         xa_case(xa_found(rows={(TABLE, 1): b"1-t10", (TABLE, 5): b"5-xa20"}))),
    Case("oracle.xa_prepared_unlocked", UNCOMMITTED, xa_case(xa_found(unlocked=[(TABLE, 5)]))),
    Case("oracle.xa_commit_lost", LOST, xa_resolution_case("commit")),
    Case("oracle.xa_rollback_visible", UNCOMMITTED, xa_resolution_case("rollback")),
    # DDL
    Case("oracle.ddl_lost", LOST, ddl_case({TABLE, "sbtest2"}, {TABLE})),
    Case("oracle.ddl_not_atomic", CORRUPT, ddl_case({TABLE, "sbtest4"}, {TABLE, "sbtest3"})),
    Case("oracle.ddl_load_lost", LOST, ddl_rows_case({1: b"1-load"}, LOAD)),
    Case("oracle.ddl_table_rows_wrong", CORRUPT,
         ddl_rows_case({**LOAD, 2: b"2-torn"}, LOAD)),
    # new transactions during background rollback
    Case("recovery.new_work_lock_ignored", UNCOMMITTED, no_lock_conflicts),
    Case("recovery.new_work_dirty_read", UNCOMMITTED,
         new_work_edited(lambda nw: nw.reads.append((0, 7, b"dirty")))),
    Case("recovery.new_work_lost", LOST,
         new_work_edited(lambda nw: nw.commits.append((9, {9999: None}, {9999: b"new"}, 0)))),
    # the campaign's verdict sites
    Case("engine.refused", REFUSED,
         patched(Engine, "open", raising(RecoveryError("no valid checkpoint")))),
    Case("engine.hang", HANG, patched(Engine, "open", hanging_open)),
    Case("engine.unexpected_error", ENGINE_ERROR,
         patched(Engine, "open", raising(ValueError("boom")))),
    Case("engine.background_corruption", CORRUPT,
         patched(Engine, "finish_background_rollback", raising(Corruption("bad undo")))),
    Case("engine.background_error", ENGINE_ERROR,
         patched(Engine, "finish_background_rollback", raising(ValueError("boom")))),
    Case("engine.check_error", ENGINE_ERROR,
         patched(Engine, "purge_all", raising(RuntimeError("boom")))),
    Case("recovery.not_idempotent", LOST, not_idempotent),
    Case("workload.read_anomaly", ISOLATION,
         edited_run(read_anomalies=["trx 3 read k=5 as v1, its snapshot holds v0"])),
    Case("workload.engine_crashed", ENGINE_ERROR,
         edited_run(crashed=True, stopped="KeyError: 5")),
    Case("workload.engine_stopped", ENGINE_ERROR, edited_run(stopped="LogFull: log full")),
]


def as_verdict(out) -> tuple[Verdict, set]:
    """(verdict, every rule seen) for what a case returned."""
    if isinstance(out, Verdict):
        return out, {out.rule} if not out.ok else set()
    assert all(isinstance(p, Problem) for p in out), out
    return (Verdict.from_problems(CORRUPT, out) if out else Verdict.passed(),
            {p.rule for p in out})


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_rule_fires_on_its_fault(case):
    verdict, rules = as_verdict(case.run(True))
    assert not verdict.ok, f"{case.rule} did not fire"
    assert (verdict.kind, verdict.rule) == (case.kind, case.rule), verdict.explain()
    assert case.rule in rules and rules <= {case.rule, *case.also}, (rules, verdict.explain())
    assert verdict.signature() == f"{case.kind}:{case.rule}"


def looping_rollback(self):
    """A background rollback that loops for ever over one cached page: no file system call."""
    while True:
        self.buf.get(0, 0)


@pytest.mark.parametrize("run", [
    patched(Engine, "finish_background_rollback", looping_rollback),
    edited_run(hung=True, stopped="WatchdogExpired: more than 250000 buffer pool page "
                                  "accesses (the last: page 1:3)")],
    ids=["after-recovery", "during-the-workload"])
def test_engine_hang_fires_on_a_loop_that_makes_no_io(run):
    """engine.hang's second source: the watchdog of buffer pool page accesses (the case above
    is the file system call budget), in a crash state's checks and during the workload."""
    verdict, _ = as_verdict(run(True))
    assert (verdict.kind, verdict.rule) == (HANG, "engine.hang"), verdict.explain()
    assert "buffer pool page accesses" in verdict.summary
    verdict, _ = as_verdict(run(False))
    assert verdict.ok, verdict.explain()


@pytest.mark.parametrize("during", ["setup", "workload"])
def test_a_real_hang_in_the_workload_engine_is_an_h_finding(during):
    """The workload's own engine loops over a cached page (with the campaign's watchdog set by
    WorkloadSettings): in the setup (creating and loading the database) or in a step, the run
    records a hang and every crash state of it reports engine.hang; nothing escapes."""
    real_insert, real_update = Engine.insert, Engine.update
    calls = []

    def loop(self, *a, **k):
        while True:
            self.buf.get(0, 0)

    def insert(self, *a, **k):
        calls.append(1)
        return loop(self) if during == "setup" and len(calls) == 10 else \
            real_insert(self, *a, **k)

    def update(self, *a, **k):
        return loop(self) if during == "workload" else real_update(self, *a, **k)
    mp = pytest.MonkeyPatch()
    with mp.context() as m:
        m.setattr(Engine, "insert", insert)
        m.setattr(Engine, "update", update)
        r = run_workload(SMALL, [["update_non_index", 0, 5, 11], ["commit", 0]])
    assert r.hung and not r.crashed and "WatchdogExpired" in r.stopped
    assert ("while creating and loading the database" in r.stopped) is (during == "setup")
    verdict = crash_check(r)
    assert (verdict.kind, verdict.rule) == (HANG, "engine.hang"), verdict.explain()


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_same_input_without_the_fault_passes(case):
    verdict, rules = as_verdict(case.run(False))
    assert verdict.ok and not rules, verdict.explain()


def test_every_rule_has_a_case():
    ids = [c.rule for c in CASES]
    assert len(ids) == len(set(ids)), "one case per rule"
    assert set(ids) == set(RULES), {"rules without a case": sorted(set(RULES) - set(ids)),
                                    "cases without a rule": sorted(set(ids) - set(RULES))}


@pytest.mark.parametrize("rule", sorted(RULES))
def test_rule_ids_are_short_dotted_and_described(rule):
    where, _, what = rule.partition(".")
    assert where in ("fsck", "oracle", "engine", "recovery", "workload") and what
    assert what.replace("_", "").isalnum() and what == what.lower()
    assert RULES[rule] and "\n" not in RULES[rule]


# -- problems, verdicts, signatures -----------------------------------------------------------------------
def test_problem_is_its_message_and_knows_its_rule():
    p = Problem("fsck.btr_order", "table t: page 4: keys not strictly ascending: [2, 1]")
    assert p == "table t: page 4: keys not strictly ascending: [2, 1]"
    assert "keys not" in p and p.startswith("table t")
    assert p.rule == "fsck.btr_order" and p.message == str(p)
    q = pickle.loads(pickle.dumps(p))
    assert (q, q.rule) == (p, p.rule)
    with pytest.raises(ValueError, match="unknown rule"):
        Problem("fsck.no_such_rule", "x")


def test_verdict_needs_a_known_rule():
    with pytest.raises(ValueError, match="unknown rule"):
        Verdict.failed(LOST, "lost")
    with pytest.raises(ValueError, match="unknown rule"):
        Verdict.failed(LOST, "lost", rule="oracle.nope")


def test_signature_is_kind_and_rule_not_the_message():
    """Two checks whose messages start alike ("table sbtest1, index k") stay apart; one check
    whose messages differ stays together."""
    extra = Verdict.failed(CORRUPT, "table sbtest1, index k: entries (k, id) [(1, 2)] match no "
                                    "row", rule="fsck.sec_index_extra_entry")
    marked = Verdict.failed(CORRUPT, "table sbtest1, index k: delete-marked entries (k, id) "
                                     "[(1, 2)] left after purge",
                            rule="fsck.sec_delete_marked_after_purge")
    assert legacy_signature(extra.to_json()) == legacy_signature(marked.to_json())
    assert extra.signature() != marked.signature()
    assert extra.signature() == "C:fsck.sec_index_extra_entry"
    other = Verdict.failed(CORRUPT, "table sbtest2, index k: entries (k, id) [(7, 9)] match no "
                                    "row", rule="fsck.sec_index_extra_entry")
    assert other.signature() == extra.signature()


def test_to_json_adds_only_the_rule():
    v = Verdict.failed(LOST, "acknowledged commit lost: x", ["a"], rule="oracle.durable_commit_lost")
    assert v.to_json() == {"ok": False, "kind": LOST, "summary": "acknowledged commit lost: x",
                           "details": ["a"], "rule": "oracle.durable_commit_lost"}
    assert finding_signature(v.to_json()) == v.signature()
    assert Finding(v.to_json(), "", 0, "", []).signature() == v.signature()


def test_a_finding_stored_before_rules_still_loads_and_matches():
    art = {"tornpage_artifact": 1, "seed": 0, "settings": SMALL.to_json(), "mutant": None,
           "steps": [], "crash_plan": CrashPlan(5).to_json(), "trace_hash": "0" * 64,
           "finding": {"ok": False, "kind": LOST, "summary": "acknowledged commit lost: x",
                       "details": []}}
    loaded = from_dict(art)
    assert "rule" not in loaded.finding
    assert finding_signature(loaded.finding) == "L:acknowledged commit lost"
    again = Verdict.failed(LOST, "acknowledged commit lost: y", rule="oracle.durable_commit_lost")
    assert again.same_finding(loaded.finding)
    other = Verdict.failed(LOST, "recovered state matches no committed prefix: 1 rows",
                           rule="oracle.partial_transaction")
    assert not other.same_finding(loaded.finding)
    assert again.same_finding(again.to_json()) and not other.same_finding(again.to_json())
    assert not Verdict.passed().same_finding(loaded.finding)
