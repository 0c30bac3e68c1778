"""The engine's failure handling (issue #11): it never rests on ``assert``, it stops when an mtr
cannot commit, and it opens a database by what is on disk, refusing a configuration that
disagrees with it.
"""
from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from tornpage.engine import Corruption, Engine, EngineConfig
from tornpage.engine import btr_page as bp, mtr_log, undo
from tornpage.engine.errors import LayoutError
from tornpage.engine.page import FIL_PAGE_INDEX
from tornpage.faultfs import DROP, Choice, CrashPlan, CrashStateBuilder, SimDisk

T = "t"
PS = 4096


def _cfg(**kw) -> EngineConfig:
    base = dict(page_size=PS, buffer_pool_pages=16, log_file_size=96 * 1024,
                doublewrite_batch_pages=8, page_cleaner_batch=4)
    base.update(kw)
    return EngineConfig(**base)


def _drop_all(disk: SimDisk) -> bytes:
    """The disk image after a power loss at the end of the trace that lost every pending
    write."""
    b = CrashStateBuilder(disk.base, disk.trace, disk.profile)
    pos = len(disk.trace)
    return b.build(CrashPlan(pos, tuple((i, Choice(DROP)) for i in b.pending(pos))))


# --------------------------------------------------------------------------------------------
# 1. no behaviour inside assert; layout errors are Corruption
# --------------------------------------------------------------------------------------------


def test_layout_errors_are_corruption_not_assertion_errors():
    for cls in (bp.PageLayoutError, undo.UndoLayoutError, mtr_log.RedoApplyError):
        assert issubclass(cls, LayoutError) and issubclass(cls, Corruption)
        assert not issubclass(cls, AssertionError)


@pytest.mark.parametrize("rec", [
    mtr_log.write_string(0, 5, PS - 2, b"abc"),                      # past the page end
    mtr_log.RedoRecord(mtr_log.MLOG_WRITE_STRING, 0, 5, b"\x00"),    # no offset
    mtr_log.RedoRecord(mtr_log.MLOG_PAGE_INIT, 0, 5, b"\x00" * 3),   # wrong body length
    mtr_log.RedoRecord(mtr_log.MLOG_REC_DELETE, 0, 5, b"\x00" * 7),
    mtr_log.RedoRecord(mtr_log.MLOG_REC_INSERT, 0, 5, b"\x00" * 3),  # shorter than a key
    mtr_log.RedoRecord(mtr_log.MLOG_LIST_END_COPY_CREATED, 0, 5, b"\x00\x40abc"),
])
def test_a_redo_record_that_does_not_fit_is_a_typed_error(rec):
    """Redo from checksum-valid blocks that does not fit its page is corruption, raised as
    such with assertions on or off (recovery turns it into a Corruption naming the record)."""
    frame = bytearray(PS)
    mtr_log.apply(frame, mtr_log.page_init(0, 5, FIL_PAGE_INDEX, 0, 1), PS)   # an empty INDEX page
    with pytest.raises(mtr_log.RedoApplyError):
        mtr_log.apply(frame, rec, PS)


def test_the_dictionary_refuses_a_repeated_space_id():
    from tornpage.engine import trx_sys
    frame = bytearray(PS)
    body = trx_sys.encode_dict([("a", 1, 1, 0xFFFFFFFF), ("b", 1, 1, 0xFFFFFFFF)])
    frame[trx_sys.DICT_HDR_N_TABLES:trx_sys.DICT_HDR_N_TABLES + len(body)] = body
    with pytest.raises(Corruption, match="space id 1"):
        trx_sys.decode_dict(frame)


_UNDER_O = textwrap.dedent('''
    import sys
    from tornpage.checkers import structure
    from tornpage.engine import Engine, EngineConfig
    from tornpage.faultfs import DROP, Choice, CrashPlan, CrashStateBuilder, SimDisk

    if __debug__:
        sys.exit("not running under python -O")
    cfg = EngineConfig(page_size=4096, buffer_pool_pages=16, log_file_size=96 * 1024,
                       doublewrite_batch_pages=8, page_cleaner_batch=4)
    disk = SimDisk()
    eng = Engine.create(disk, cfg)          # flush_all used to run inside an assert: a hang
    eng.create_table("t")
    for k in range(150):                    # enough rows to split pages and fill the pool
        t = eng.begin()
        t.insert("t", k, bytes([k % 251]) * 60)
        t.commit()
        if k % 20 == 0:
            eng.run_background(2)
    open_trx = eng.begin()
    for k in range(150, 170):
        open_trx.insert("t", k, b"uncommitted" * 5)
    t = eng.begin()
    t.delete("t", 3)
    t.commit()
    eng.run_background(3)
    b = CrashStateBuilder(disk.base, disk.trace, disk.profile)
    pos = len(disk.trace)
    image = b.build(CrashPlan(pos, tuple((i, Choice(DROP)) for i in b.pending(pos))))
    e2 = Engine.open(SimDisk(image=image), cfg)
    problems = structure.check_after_recovery(e2)
    if problems:                            # (no assert here: it would be stripped)
        sys.exit(f"after recovery: {problems}")
    e2.finish_background_rollback()
    rows = e2.all_rows("t")
    want = {k: bytes([k % 251]) * 60 for k in range(150) if k != 3}
    if rows != want:
        sys.exit(f"recovered rows differ: {sorted(set(rows) ^ set(want))[:10]}")
    problems = structure.check_quiesced(e2)
    if problems:
        sys.exit(f"structure: {problems}")
    e2.close()
    print("recovered", len(rows), "rows")
''')


def test_create_insert_crash_recover_under_python_dash_O():
    """With assertions off (``python -O``) the engine creates a database, runs transactions,
    crashes and recovers exactly the committed rows: no behaviour hides inside an assert."""
    p = subprocess.run([sys.executable, "-O", "-c", _UNDER_O], capture_output=True, text=True,
                       timeout=120)
    assert p.returncode == 0, p.stdout + p.stderr
    assert p.stdout.strip() == "recovered 149 rows", p.stdout
