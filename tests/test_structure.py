"""The structural checker (checkers/structure.py) on real engines with hand-made damage.

The engine is built and opened the way campaigns/crashcheck.py does it: the workload's setup
(``run_workload``) on a SimDisk, then ``Engine.open`` (crash recovery) on a SimDisk holding an
image of that disk.  Damage is done to the durable image before recovery (what fsck is for), or
to a live engine's state where the check is about the running engine.
"""
from __future__ import annotations

import pytest

from tornpage.campaigns.workload import TABLE, WorkloadSettings, row_value, run_workload
from tornpage.checkers.structure import check_after_recovery, check_quiesced
from tornpage.engine import Engine, btr_page as bp, fsp
from tornpage.engine import page as fil_page
from tornpage.engine.page import FIL_NULL, FIL_PAGE_NEXT, FIL_PAGE_PREV
from tornpage.faultfs import SimDisk

SETTINGS = WorkloadSettings(table_size=150)       # 4 KiB pages: a two-level tree, 15 leaves
PS = SETTINGS.page_size
IBD = TABLE + ".ibd"
SPACE = 1                                         # sbtest1's tablespace id


@pytest.fixture(scope="module")
def base_image():
    """The durable image right after the workload's setup (150 rows, sharp checkpoint)."""
    run = run_workload(SETTINGS, [])
    return run.disk.live_image()


def open_image(image) -> Engine:
    return Engine.open(SimDisk(SETTINGS.device, image), SETTINGS.engine_config())


def get_page(image, pno: int, path: str = IBD) -> bytearray:
    return bytearray(image.files[path][pno * PS:(pno + 1) * PS])


def put_page(image, pno: int, page: bytes, path: str = IBD):
    """A copy of ``image`` with page ``pno`` of ``path`` replaced or appended (the base stays
    intact)."""
    out = image.copy()
    data = bytearray(out.files[path])
    if len(data) < (pno + 1) * PS:
        data += bytes((pno + 1) * PS - len(data))
    data[pno * PS:(pno + 1) * PS] = page
    out.files[path] = bytes(data)
    return out


def restamp(page: bytearray, lsn: int | None = None) -> bytes:
    """Valid checksums and trailer for an edited page (as a page flush would write it)."""
    return fil_page.stamp_for_write(page, fil_page.page_lsn(page) if lsn is None else lsn)


def tree_layout(image) -> tuple[int, list[int]]:
    """(root page, leaf pages in key order) of sbtest1, from a clean open."""
    eng = open_image(image)
    idx = eng.tables[TABLE]
    root = eng.buf.get(SPACE, idx.root)
    assert bp.level(root.data) == 1, "the fixture should give a two-level tree"
    leaves = [bp.node_child(r) for r in bp.records(root.data)]
    return idx.root, leaves


def problems_after_open(image) -> tuple[list[str], list[str]]:
    eng = open_image(image)
    after = check_after_recovery(eng)
    return after, check_quiesced(eng)


# -- clean ---------------------------------------------------------------------------------------
def test_clean_engine_reports_nothing(base_image):
    eng = open_image(base_image)
    assert check_after_recovery(eng) == []
    assert eng.all_rows(TABLE) == {i: row_value(i, i, 0) for i in range(1, 151)}
    assert check_quiesced(eng) == []


def test_clean_after_crash_with_redo_and_rollback():
    """A real crash state (everything written reaches the disk, nothing flushed after the
    commit): recovery applies redo, resurrects the uncommitted trx, rolls it back; fsck is clean
    once rollback finished."""
    steps = [["bulk_update", 0, 10, 20, 5], ["update_non_index", 1, 40, 6],
             ["commit", 0]]          # the commit's log write carries slot 1's change too
    run = run_workload(SETTINGS, steps)
    eng = open_image(run.disk.live_image())
    assert eng.stats["recv_records_applied"] > 0
    assert check_after_recovery(eng) == []
    assert eng.trx_sys.active, "the uncommitted trx of slot 1 should be resurrected"
    eng.finish_background_rollback()
    assert check_quiesced(eng) == []


# -- page images ---------------------------------------------------------------------------------
def test_flipped_byte_in_a_data_page_is_a_bad_checksum(base_image):
    _, leaves = tree_layout(base_image)
    pno = leaves[3]
    page = get_page(base_image, pno)
    page[PS // 2] ^= 0x40
    after, quiesced = problems_after_open(put_page(base_image, pno, page))
    want = f"page {SPACE}:{pno} on disk is {fil_page.PAGE_BAD_CHECKSUM}"
    assert want in after, after
    assert [p.rule for p in after] == ["fsck.page_checksum"]
    assert any(want in p for p in quiesced), quiesced


def test_trailer_lsn_disagreeing_with_page_lsn_is_torn(base_image):
    _, leaves = tree_layout(base_image)
    pno = leaves[-1]
    page = get_page(base_image, pno)
    page[PS - 1] ^= 0x01                 # low 32 bits of the LSN in the trailer
    after, quiesced = problems_after_open(put_page(base_image, pno, page))
    want = f"page {SPACE}:{pno} on disk is {fil_page.PAGE_TORN}"
    assert want in after, after
    assert [p.rule for p in after] == ["fsck.page_torn"]
    assert any(want in p for p in quiesced), quiesced


def test_page_lsn_beyond_the_recovered_log_end_is_from_the_future(base_image):
    _, leaves = tree_layout(base_image)
    pno = leaves[0]
    clean = open_image(base_image)
    future = clean.recovered_lsn + 10_000
    page = restamp(get_page(base_image, pno), lsn=future)    # valid checksum, LSN from the future
    eng = open_image(put_page(base_image, pno, page))
    assert eng.recovered_lsn == clean.recovered_lsn
    after = check_after_recovery(eng)
    assert after == [f"page {SPACE}:{pno} on disk is {fil_page.PAGE_FROM_FUTURE} "
                     f"(page LSN {future} > {eng.recovered_lsn})"], after
    assert after[0].rule == "fsck.page_lsn_future"
    assert any(f"page {SPACE}:{pno}" in p for p in check_quiesced(eng))


def test_page_lsn_at_the_recovered_log_end_is_fine(base_image):
    """The boundary: a page LSN equal to the recovered log end is not from the future."""
    _, leaves = tree_layout(base_image)
    pno = leaves[0]
    end = open_image(base_image).recovered_lsn
    page = restamp(get_page(base_image, pno), lsn=end)
    after, quiesced = problems_after_open(put_page(base_image, pno, page))
    assert after == [] and quiesced == []


def test_dirty_page_in_the_pool_beyond_the_log_end_is_reported():
    """Pages recovery holds dirty are checked in the pool, not on disk."""
    run = run_workload(SETTINGS, [["bulk_update", 0, 10, 20, 5], ["commit", 0]])
    eng = open_image(run.disk.live_image())
    dirty = [f for f in eng.buf.frames.values() if f.oldest_modification and f.space == SPACE]
    assert dirty, "the committed redo should have been applied to pages left dirty"
    assert check_after_recovery(eng) == []
    f = dirty[0]
    f.newest_modification = eng.recovered_lsn + 1
    after = check_after_recovery(eng)
    assert after == [f"page {f.space}:{f.page_no} in the buffer pool has LSN "
                     f"{eng.recovered_lsn + 1} beyond the recovered log end "
                     f"{eng.recovered_lsn}"], after
    assert after[0].rule == "fsck.pool_page_lsn_future"


def test_page_written_to_the_wrong_place_is_reported(base_image):
    _, leaves = tree_layout(base_image)
    src, dst = leaves[1], leaves[2]
    after, _ = problems_after_open(put_page(base_image, dst, get_page(base_image, src)))
    assert f"page {SPACE}:{dst} on disk claims to be page {SPACE}:{src}" in after, after
    assert {p.rule for p in after} == {"fsck.page_misplaced"}


# -- B+tree structure (pages with valid checksums) -------------------------------------------------
def edit_leaf(base_image, which: int, edit):
    """Apply ``edit(page, root, leaves)`` to leaf ``which`` and restamp it; return
    (image, page number)."""
    root, leaves = tree_layout(base_image)
    pno = leaves[which]
    page = get_page(base_image, pno)
    edit(page, root, leaves)
    return put_page(base_image, pno, restamp(page)), pno


def test_keys_out_of_order_in_a_page(base_image):
    def swap(page, root, leaves):
        recs = bp.records(page)
        recs[0], recs[1] = recs[1], recs[0]
        bp.write_records(page, recs)
    image, pno = edit_leaf(base_image, 4, swap)
    after, quiesced = problems_after_open(image)
    assert after == [], "checksums are valid: only the tree check can see this"
    assert [(p.rule, p) for p in quiesced] == [
        ("fsck.btr_order", f"table {TABLE}: page {pno}: keys not strictly ascending: "
                           f"[42, 41, 43, 44, 45, 46, 47, 48, 49, 50]")], quiesced


def test_key_outside_its_node_pointer_bounds(base_image):
    def raise_last_key(page, root, leaves):
        recs = bp.records(page)
        recs[-1] = (10_000).to_bytes(8, "big") + recs[-1][8:]   # still ascending in the page
        bp.write_records(page, recs)
    image, pno = edit_leaf(base_image, 2, raise_last_key)
    after, quiesced = problems_after_open(image)
    assert after == []
    assert any(f"key 10000 on page {pno} outside [" in p for p in quiesced), quiesced
    assert [p.rule for p in quiesced] == ["fsck.btr_key_bounds"]


def test_broken_sibling_link(base_image):
    def skip_next(page, root, leaves):
        fil_page.put_u32(page, FIL_PAGE_NEXT, leaves[5])      # leaf 3 → leaf 5, skipping 4
    image, pno = edit_leaf(base_image, 3, skip_next)
    _, leaves = tree_layout(base_image)
    after, quiesced = problems_after_open(image)
    assert after == []
    assert any(f"level 0 sibling links {pno} <-> {leaves[4]} broken" in p for p in quiesced), \
        quiesced
    assert [p.rule for p in quiesced] == ["fsck.btr_sibling_link"]


def test_broken_back_link(base_image):
    def bad_prev(page, root, leaves):
        fil_page.put_u32(page, FIL_PAGE_PREV, FIL_NULL)
    image, pno = edit_leaf(base_image, 6, bad_prev)
    _, leaves = tree_layout(base_image)
    _, quiesced = problems_after_open(image)
    assert any(f"sibling links {leaves[5]} <-> {pno} broken" in p for p in quiesced), quiesced
    assert [p.rule for p in quiesced] == ["fsck.btr_sibling_link"]


def test_level_list_not_terminated(base_image):
    def link_last_to_first(page, root, leaves):
        fil_page.put_u32(page, FIL_PAGE_NEXT, leaves[0])
    image, _ = edit_leaf(base_image, -1, link_last_to_first)
    _, quiesced = problems_after_open(image)
    assert any("level 0 list not terminated by FIL_NULL" in p for p in quiesced), quiesced
    assert [p.rule for p in quiesced] == ["fsck.btr_level_list_end"]


def test_tree_page_marked_free_in_the_bitmap(base_image):
    _, leaves = tree_layout(base_image)
    victim = leaves[7]
    page = get_page(base_image, 0)
    off, byte = fsp.bitmap_byte_after(page, victim, used=False)
    page[off:off + 1] = byte
    _, quiesced = problems_after_open(put_page(base_image, 0, restamp(page)))
    assert any(f"tree pages [{victim}] are marked free in the FSP bitmap" in p
               for p in quiesced), quiesced
    assert [p.rule for p in quiesced] == ["fsck.tree_page_free"]


# -- transactions and undo -----------------------------------------------------------------------
def test_active_transaction_on_a_live_engine():
    disk = SimDisk(SETTINGS.device)
    eng = Engine.create(disk, SETTINGS.engine_config())
    eng.create_table(TABLE)
    trx = eng.begin()
    trx.insert(TABLE, 1, b"row one")
    quiesced = check_quiesced(eng)
    assert f"transactions still ACTIVE: [{trx.id}]" in quiesced, quiesced
    assert [p.rule for p in quiesced] == ["fsck.trx_active_left"]
    trx.commit()
    assert check_quiesced(eng) == []


def test_resurrected_transaction_left_active_after_recovery():
    steps = [["update_non_index", 0, 7, 3], ["insert", 0, 400, 4], ["background", 6]]
    run = run_workload(SETTINGS, steps)
    eng = open_image(run.disk.live_image())
    assert check_after_recovery(eng) == []
    active = sorted(eng.trx_sys.active)
    assert len(active) == 1
    assert f"transactions still ACTIVE: {active}" in check_quiesced(eng)
    eng.finish_background_rollback()
    assert check_quiesced(eng) == []
    assert 400 not in eng.all_rows(TABLE)


def test_undo_slot_left_in_use_without_an_active_transaction():
    """A transaction the engine forgot (as a resurrection bug would) but whose undo log still
    holds its rollback-segment slot."""
    steps = [["update_non_index", 0, 7, 3], ["background", 6]]
    run = run_workload(SETTINGS, steps)
    eng = open_image(run.disk.live_image())
    (tid, trx), = eng.trx_sys.active.items()
    del eng.trx_sys.active[tid]
    quiesced = check_quiesced(eng)
    assert any(p.startswith(f"rollback segment {trx.undo.rseg_id}: undo slots still in use")
               for p in quiesced), quiesced
    assert any("marked used but no undo log owns them" in p for p in quiesced), quiesced
    assert [p.rule for p in quiesced] == ["fsck.rseg_slot_in_use", "fsck.undo_page_leak"]
