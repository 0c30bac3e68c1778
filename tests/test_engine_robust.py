"""The engine's failure handling (issue #11): it never rests on ``assert``, it stops when an mtr
cannot commit, and it opens a database by what is on disk, refusing a configuration that
disagrees with it.
"""
from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from tornpage.engine import (Corruption, Engine, EngineConfig, EnginePanic,
                             LockConflict, LogFull)
from tornpage.engine import RecoveryError, btr_page as bp, mtr_log, trx_sys, undo
from tornpage.engine.config import ConfigError, ConfigMismatch
from tornpage.engine.errors import EngineIOError, LayoutError
from tornpage.engine.page import FIL_PAGE_INDEX
from tornpage.faultfs import DROP, Choice, CrashPlan, CrashStateBuilder, FaultSpec, SimDisk

# the engine tests' small configuration, shared
from test_engine import PS, T, _cfg  # noqa: E402


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


# --------------------------------------------------------------------------------------------
# 2. a failure inside Mtr.commit stops the engine
# --------------------------------------------------------------------------------------------


def _engine_with_rows(n: int = 40, **kw):
    disk = SimDisk()
    eng = Engine.create(disk, _cfg(**kw))
    eng.create_table(T)
    for k in range(n):
        t = eng.begin()
        t.insert(T, k, b"committed %d" % k)
        t.commit()
    return disk, eng


def _assert_stopped(disk: SimDisk, eng: Engine, committed: dict) -> None:
    """The engine refuses everything, holds no page fixed, writes nothing more, and the disk
    recovers to exactly the committed rows."""
    assert eng.panicked
    assert all(f.fix_count == 0 for f in eng.buf.frames.values())
    n_ops = len(disk.trace)
    for call in (eng.begin, lambda: eng.all_rows(T), eng.checkpoint, eng.purge_all,
                 lambda: eng.run_background(4), lambda: eng.create_table("t2"), eng.mtr):
        with pytest.raises(EnginePanic):
            call()
    with pytest.raises(EnginePanic):        # a stopped pool writes no page (a dirty eviction)
        eng.buf.flush_batch(4)
    eng.close()                             # a stopped engine closes without writing
    assert len(disk.trace) == n_ops
    e2 = Engine.open(SimDisk(image=_drop_all(disk)), eng.config)
    e2.finish_background_rollback()
    assert e2.all_rows(T) == committed
    e2._check()


def test_log_full_inside_mtr_commit_stops_the_engine():
    """Without the log free check (an instance patch: the one seam bug 12 removes) the log
    writer's own guard raises LogFull inside Mtr.commit, after the mtr changed its pages.
    The engine must stop, not carry on with those pages changed, unlogged and still fixed."""
    disk, eng = _engine_with_rows(log_file_size=EngineConfig.min_log_file_size(PS))
    committed = eng.all_rows(T)
    eng._log_free_check = lambda: None
    t = eng.begin()
    with pytest.raises(LogFull):
        for k in range(100, 10_000):
            t.insert(T, k, bytes([k % 251]) * 300)
    assert eng.panicked.startswith("mtr commit failed after changing pages: LogFull")
    _assert_stopped(disk, eng, committed)


class _StampFails(Exception):
    """A failure injected while an mtr stamps its pages (after its log append)."""


def test_a_failure_while_stamping_pages_stops_the_engine():
    """A failure after the group reached the log buffer, while the pages are being put on the
    flush list: some pages are stamped, some are not.  The engine stops and unfixes them."""
    disk, eng = _engine_with_rows()
    committed = eng.all_rows(T)
    real = eng.buf.note_modification
    calls = []

    def note_modification(f, start, end):
        calls.append(f.key)
        if len(calls) == 2:
            raise _StampFails("injected")
        real(f, start, end)

    eng.buf.note_modification = note_modification
    t = eng.begin()
    with pytest.raises(_StampFails):
        t.insert(T, 1000, b"never committed")      # undo page, rseg page, leaf: >= 2 pages
    del eng.buf.note_modification
    assert "_StampFails: injected" in eng.panicked
    _assert_stopped(disk, eng, committed)


def test_an_io_error_inside_an_mtr_stops_the_engine():
    """An EIO (a SimDisk media fault) on the first write after many uncommitted inserts: the
    log write the WAL rule makes before a page flush (an LRU eviction inside an mtr, or the log
    free check) fails, and the engine stops with no page left fixed."""
    disk, eng = _engine_with_rows(200)
    committed = eng.all_rows(T)
    disk.arm([FaultSpec("eio-write", 0)])
    t = eng.begin()
    with pytest.raises(EngineIOError):
        for k in range(1000, 3000):
            t.insert(T, k, bytes([k % 251]) * 200)
    assert eng.panicked and "failed" in eng.panicked
    _assert_stopped(disk, eng, committed)


def test_a_failure_before_an_mtr_changes_anything_does_not_stop_the_engine():
    disk, eng = _engine_with_rows(3)
    t1, t2 = eng.begin(), eng.begin()
    t1.put(T, 1, b"x")
    with pytest.raises(LockConflict):
        t2.put(T, 1, b"y")
    assert not eng.panicked
    assert all(f.fix_count == 0 for f in eng.buf.frames.values())
    t1.commit()


# --------------------------------------------------------------------------------------------
# 3. the engine opens by what is on disk; a configuration that disagrees is refused
# --------------------------------------------------------------------------------------------


def _eight_segment_db_with_an_uncommitted_row_in_segment_5():
    """A database created with 8 rollback segments; a committed row 1; an uncommitted row 500
    whose transaction's undo log lies in rollback segment 5, its redo durable; then a crash
    that keeps everything."""
    disk, eng = _engine_with_rows(0, n_rollback_segments=8)
    t = eng.begin()
    t.insert(T, 1, b"committed")
    t.commit()
    while True:
        t = eng.begin()
        if t.id % 8 == 5:
            break
        t.commit()
    t.insert(T, 500, b"uncommitted")
    assert t.undo.rseg_id == 5
    eng.log.write_up_to(eng.log.end_lsn, flush=True)      # its redo is durable
    return SimDisk(image=_drop_all(disk)), eng.config


def test_an_uncommitted_row_in_a_segment_beyond_the_configured_count_never_shows():
    """Opening with n_rollback_segments=2 used to resurrect transactions from segments 0 and 1
    only: the transaction in segment 5 was never rolled back and its row became visible."""
    disk, cfg = _eight_segment_db_with_an_uncommitted_row_in_segment_5()
    with pytest.raises(ConfigError):             # the configuration disagrees: refused
        Engine.open(SimDisk(image=disk.live_image()), _cfg(n_rollback_segments=2))
    eng = Engine.open(disk, cfg)                 # as on disk: segment 5 is rolled back
    eng.finish_background_rollback()
    assert eng.all_rows(T) == {1: b"committed"}, "an uncommitted row is visible"


def test_a_mismatched_rollback_segment_count_is_refused_naming_setting_and_values():
    disk, cfg = _eight_segment_db_with_an_uncommitted_row_in_segment_5()
    with pytest.raises(ConfigMismatch, match=r"n_rollback_segments: configured 2, on disk 8"):
        Engine.open(disk, _cfg(n_rollback_segments=2))
    eng = Engine.open(disk, cfg)                 # the right configuration: rolled back
    eng.finish_background_rollback()
    assert eng.all_rows(T) == {1: b"committed"}


def _clean_db(**kw):
    disk, eng = _engine_with_rows(5, **kw)
    eng.close()
    return disk, eng.config


@pytest.mark.parametrize("setting,created,opened", [
    ("page_size", 4096, 8192),
    ("doublewrite_batch_pages", 8, 16),
    ("log_file_size", 1 << 18, 1 << 19),
    ("n_rollback_segments", 4, 1),
])
def test_a_setting_fixed_at_creation_that_disagrees_is_refused(setting, created, opened):
    base = dict(log_file_size=1 << 18)
    disk, cfg = _clean_db(**{**base, setting: created})
    with pytest.raises(ConfigMismatch) as ei:
        Engine.open(disk, _cfg(**{**base, setting: opened}))
    e = ei.value
    assert (e.setting, e.configured, e.on_disk) == (setting, opened, created)
    assert f"{setting}: configured {opened}, on disk {created}" in str(e)
    assert isinstance(e, ConfigError) and isinstance(e, RecoveryError)
    assert Engine.open(disk, cfg).all_rows(T) == {k: b"committed %d" % k for k in range(5)}


def _tear_first_sector(disk: SimDisk, page_no: int) -> None:
    f = disk.open("ibdata1")
    f.pwrite(bytes(512), page_no * PS)
    f.fsync()


def test_the_page_size_is_read_from_the_dictionary_header_when_page_0_is_torn():
    disk, cfg = _clean_db(log_file_size=1 << 18)
    _tear_first_sector(disk, 0)
    with pytest.raises(ConfigMismatch, match="page_size: configured 8192, on disk 4096"):
        Engine.open(disk, _cfg(page_size=8192, log_file_size=1 << 18))


def test_a_torn_trx_sys_is_repaired_from_doublewrite_and_its_geometry_checked_after_redo():
    """TRX_SYS torn in the sector that holds both doublewrite header copies: before redo the
    area is where the configuration puts it; the copy there repairs TRX_SYS, and the recovered
    page is checked against the configuration before any transaction is resurrected."""
    disk, eng = _engine_with_rows(0, n_rollback_segments=8)
    t = eng.begin()                        # its id is a multiple of the TRX_ID write margin
    t.insert(T, 1, b"one")
    t.commit()
    f = eng.buf.frames[(0, trx_sys.TRX_SYS_PAGE_NO)]
    assert f.oldest_modification
    eng.buf._write([f], single=True)       # as an LRU eviction: the single-page slot first
    image = _drop_all(disk)

    torn = SimDisk(image=image)
    _tear_first_sector(torn, trx_sys.TRX_SYS_PAGE_NO)
    e2 = Engine.open(torn, eng.config)
    assert e2.stats["recv_dblwr_area_from_config"] == 1
    assert e2.stats["recv_dblwr_pages_restored"] >= 1
    assert e2.all_rows(T) == {1: b"one"}

    torn = SimDisk(image=image)
    _tear_first_sector(torn, trx_sys.TRX_SYS_PAGE_NO)
    with pytest.raises(Corruption):        # the copy is not where 2 segments put the area
        Engine.open(torn, _cfg(n_rollback_segments=2))
