"""On-disk formats of the engine: each structure's round trip and its named corruption cases.

Covers engine.page (FIL header/trailer, crc32c, torn / corrupt / all-zero / from-the-future),
engine.btr_page (record heap), engine.undo (undo records, pages, roll pointers),
engine.trx_sys and engine.fsp (system headers), engine.mtr_log (redo records: encode, parse,
apply), engine.log (512-byte blocks, scan stop reasons, checkpoint slots) and engine.config.
"""
from __future__ import annotations

import random
import struct

import pytest

from tornpage.engine import btr_page as bp
from tornpage.engine import fsp, log as L, mtr_log as ml, trx_sys, undo
from tornpage.engine import page as P
from tornpage.engine.config import PAGE_SIZES, ConfigError, EngineConfig
from tornpage.engine.engine import Engine
from tornpage.engine.errors import PageFromFuture, RecoveryError
from tornpage.engine.log import LogSys
from tornpage.faultfs import TEAR, Choice, CrashPlan, CrashStateBuilder, SimDisk

# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------


def _index_frame(page_size: int = 4096, page_no: int = 7, space: int = 3, level: int = 0,
                 index_id: int = 3) -> bytearray:
    f = bytearray(page_size)
    P.init_frame(f, space, page_no, P.FIL_PAGE_INDEX)
    bp.init(f, level, index_id)
    return f


def _undo_frame(page_size: int = 4096, page_no: int = 20) -> bytearray:
    f = bytearray(page_size)
    P.init_frame(f, 0, page_no, P.FIL_PAGE_UNDO_LOG)
    undo.init_page(f)
    return f


def _leaf(key: int, value: bytes = b"v", trx_id: int = 5) -> bytes:
    return bp.make_leaf_rec(key, trx_id, undo.make_roll_ptr(True, 1, 9, 64), value)


def _stamped_page(page_size: int, lsn: int = 0x1_2345_6789, page_no: int = 11,
                  space: int = 4) -> bytes:
    f = _index_frame(page_size, page_no=page_no, space=space)
    for k in (5, 1, 9):
        bp.insert_rec(f, _leaf(k, b"x" * k))
    P.put_u32(f, P.FIL_PAGE_PREV, 10)
    P.put_u32(f, P.FIL_PAGE_NEXT, 12)
    return P.stamp_for_write(f, lsn)


def _flip(b: bytes, off: int, mask: int = 0x01) -> bytes:
    x = bytearray(b)
    x[off] ^= mask
    return bytes(x)


# --------------------------------------------------------------------------------------------
# engine.page
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("ps", PAGE_SIZES)
def test_page_fil_header_and_trailer_round_trip(ps):
    lsn = 0xABCD_0000_1234_5678
    img = _stamped_page(ps, lsn=lsn, page_no=123, space=77)
    assert len(img) == ps
    assert P.page_no(img) == 123
    assert P.page_space(img) == 77
    assert P.page_type(img) == P.FIL_PAGE_INDEX
    assert P.u32(img, P.FIL_PAGE_PREV) == 10
    assert P.u32(img, P.FIL_PAGE_NEXT) == 12
    assert P.page_lsn(img) == lsn
    assert P.u64(img, P.FIL_PAGE_FILE_FLUSH_LSN) == 0
    # trailer: second checksum copy at P-8, low 32 bits of the LSN at P-4
    assert P.u32(img, ps - 4) == lsn & 0xFFFFFFFF
    c = P.page_checksum(img)
    assert P.u32(img, P.FIL_PAGE_SPACE_OR_CHKSUM) == c
    assert P.u32(img, ps - 8) == c
    assert P.verify(img, ps) == P.PAGE_OK
    assert P.verify(img, ps, log_end_lsn=lsn) == P.PAGE_OK
    # the records survive the trip through bytes
    assert [bp.rec_key(r) for r in bp.records(img)] == [1, 5, 9]


@pytest.mark.parametrize("ps", PAGE_SIZES)
def test_page_checksum_is_crc32c_of_the_two_documented_ranges(ps):
    import crc32c
    img = _stamped_page(ps)
    expect = crc32c.crc32c(img[4:26]) ^ crc32c.crc32c(img[38:ps - 8])
    assert P.page_checksum(img) == expect
    # restamping at another LSN changes the checksum (the LSN is covered)
    img2 = P.stamp_for_write(img, 0x1_2345_6790)
    assert P.page_checksum(img2) != P.page_checksum(img)
    assert P.verify(img2, ps) == P.PAGE_OK


def test_init_frame_writes_a_fresh_header():
    f = bytearray(b"\xff" * 4096)
    P.init_frame(f, 5, 42, P.FIL_PAGE_UNDO_LOG)
    assert P.page_no(f) == 42 and P.page_space(f) == 5
    assert P.page_type(f) == P.FIL_PAGE_UNDO_LOG
    assert P.u32(f, P.FIL_PAGE_PREV) == P.FIL_NULL
    assert P.u32(f, P.FIL_PAGE_NEXT) == P.FIL_NULL
    assert P.page_lsn(f) == 0
    assert not any(f[P.FIL_PAGE_DATA:])


@pytest.mark.parametrize("ps", [4096, 16384])
@pytest.mark.parametrize("where", ["offset", "prev", "type", "body", "heap_end", "chk_head",
                                   "chk_trailer", "lsn_high"])
def test_page_flipped_byte_is_detected_as_corrupt(ps, where):
    img = _stamped_page(ps)
    off = {"offset": P.FIL_PAGE_OFFSET + 3, "prev": P.FIL_PAGE_PREV, "type": P.FIL_PAGE_TYPE,
           "body": P.FIL_PAGE_DATA + 20, "heap_end": ps - 9, "chk_head": 1,
           "chk_trailer": ps - 6, "lsn_high": P.FIL_PAGE_LSN}[where]
    bad = _flip(img, off)
    assert P.verify(bad, ps) == P.PAGE_BAD_CHECKSUM


def test_page_every_checksummed_byte_matters():
    ps = 4096
    img = _stamped_page(ps)
    rng = random.Random(7)
    offsets = [o for o in range(ps) if 0 <= o < 16 or 24 <= o < 26 or 38 <= o < ps - 4]
    for off in rng.sample(offsets, 300):
        assert P.verify(_flip(img, off, 1 << rng.randrange(8)), ps) == P.PAGE_BAD_CHECKSUM, off


def test_page_one_valid_checksum_copy_is_not_enough():
    """Both copies must equal the checksum (never "either", MDEV-27931)."""
    ps = 4096
    img = bytearray(_stamped_page(ps))
    P.put_u32(img, ps - 8, P.u32(img, ps - 8) ^ 0x10)       # trailer copy wrong, header right
    assert P.verify(bytes(img), ps) == P.PAGE_BAD_CHECKSUM
    img = bytearray(_stamped_page(ps))
    P.put_u32(img, 0, P.u32(img, 0) ^ 0x10)                  # header copy wrong, trailer right
    assert P.verify(bytes(img), ps) == P.PAGE_BAD_CHECKSUM


def test_page_stored_zero_checksum_is_not_empty():
    """A stored checksum of 0 is not a "no checksum" marker (MySQL #73689)."""
    ps = 4096
    img = bytearray(_stamped_page(ps))
    assert P.page_checksum(img) != 0
    P.put_u32(img, 0, 0)
    P.put_u32(img, ps - 8, 0)
    assert P.verify(bytes(img), ps) == P.PAGE_BAD_CHECKSUM


@pytest.mark.parametrize("ps", PAGE_SIZES)
def test_torn_page_trailer_lsn_differs_from_header_lsn(ps):
    img = bytearray(_stamped_page(ps, lsn=5000))
    P.put_u32(img, ps - 4, 4999)
    assert P.verify(bytes(img), ps) == P.PAGE_TORN
    # a realistic tear: the first half of the new image over the old image
    old = _stamped_page(ps, lsn=5000)
    f = bytearray(old)
    bp.insert_rec(f, _leaf(100, b"new"))
    new = P.stamp_for_write(f, 9000)
    torn = new[:ps // 2] + old[ps // 2:]
    assert P.verify(torn, ps) == P.PAGE_TORN
    # the first half of a never-written page (the rest reads as zeros) is torn too
    assert P.verify(new[:ps // 2] + bytes(ps // 2), ps) == P.PAGE_TORN
    # torn is reported before the checksum (InnoDB's order), even with a body flip too
    assert P.verify(_flip(torn, P.FIL_PAGE_DATA + 30), ps) == P.PAGE_TORN


@pytest.mark.parametrize("ps", PAGE_SIZES)
def test_all_zero_page_is_valid_and_empty(ps):
    """Documented: an all-zero page was never written: PAGE_ZERO (not corrupt); so is a page
    past the end of file (empty read); a short read with data is PAGE_SHORT."""
    assert P.verify(bytes(ps), ps) == P.PAGE_ZERO
    assert P.verify(b"", ps) == P.PAGE_ZERO
    assert P.verify(bytes(ps // 2), ps) == P.PAGE_ZERO
    assert P.verify(_stamped_page(ps)[:ps // 2], ps) == P.PAGE_SHORT
    # one non-zero byte makes it a page that must verify
    assert P.verify(_flip(bytes(ps), 100), ps) != P.PAGE_ZERO


def test_page_from_the_future_is_detected_against_the_log_end():
    ps = 4096
    img = _stamped_page(ps, lsn=100_000)
    assert P.verify(img, ps, log_end_lsn=99_999) == P.PAGE_FROM_FUTURE
    assert P.verify(img, ps, log_end_lsn=100_000) == P.PAGE_OK
    assert P.verify(img, ps) == P.PAGE_OK                      # no log end given: not checked
    # the corruption checks come first
    assert P.verify(_flip(img, 200), ps, log_end_lsn=1) == P.PAGE_BAD_CHECKSUM


def _small_config(**kw) -> EngineConfig:
    base = dict(page_size=4096, buffer_pool_pages=16, log_file_size=96 * 1024,
                doublewrite_batch_pages=8, page_cleaner_batch=4)
    base.update(kw)
    return EngineConfig(**base)


def _clean_db(rows=20, cfg=None):
    disk = SimDisk()
    cfg = cfg or _small_config()
    eng = Engine.create(disk, cfg)
    eng.create_table("t")
    trx = eng.begin()
    for k in range(rows):
        trx.insert("t", k, b"row%d" % k)
    trx.commit()
    eng.close()
    return disk, cfg


def _restamp_on_disk(disk: SimDisk, path: str, page_no: int, ps: int, lsn: int) -> None:
    f = disk.open(path)
    raw = f.pread(ps, page_no * ps)
    assert P.verify(raw, ps) == P.PAGE_OK
    f.pwrite(P.stamp_for_write(raw, lsn), page_no * ps)


def test_engine_refuses_a_page_from_the_future_at_open():
    disk, cfg = _clean_db()
    _restamp_on_disk(disk, "ibdata1", 0, cfg.page_size, 1 << 40)
    with pytest.raises(PageFromFuture):
        Engine.open(disk, cfg)


def test_engine_refuses_a_table_page_from_the_future_on_read():
    disk, cfg = _clean_db()
    _restamp_on_disk(disk, "t.ibd", 1, cfg.page_size, 1 << 40)   # the clustered index root
    eng = Engine.open(disk, cfg)
    with pytest.raises(PageFromFuture):
        eng.all_rows("t")
    trx = eng.begin()
    with pytest.raises(PageFromFuture):
        trx.get("t", 3)


def test_engine_clean_db_reads_back_before_tampering():
    """Control for the two tests above: the untampered database opens and reads fine."""
    disk, cfg = _clean_db()
    eng = Engine.open(disk, cfg)
    assert eng.all_rows("t") == {k: b"row%d" % k for k in range(20)}


# --------------------------------------------------------------------------------------------
# engine.btr_page
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("ps", PAGE_SIZES)
def test_btr_page_insert_search_delete_keep_order_and_round_trip(ps):
    rng = random.Random(ps)
    f = _index_frame(ps)
    model: dict[int, bytes] = {}
    budget = bp.capacity(ps) // 2
    while sum(len(v) + bp.REC_VALUE + bp.REC_LEN for v in model.values()) < budget:
        k = rng.randrange(1 << 64)
        if k in model:
            continue
        v = bytes(rng.randrange(256) for _ in range(rng.randrange(0, 40)))
        bp.insert_rec(f, _leaf(k, v))
        model[k] = v
        if len(model) > 200:
            break
    for k in rng.sample(sorted(model), len(model) // 3):
        bp.delete_rec(f, k)
        del model[k]
    recs = bp.records(f)
    keys = [bp.rec_key(r) for r in recs]
    assert keys == sorted(model)
    assert bp.n_recs(f) == len(model)
    bp._check(f)
    for k, v in model.items():
        i = bp.find(recs, k)
        assert bp.rec_key(recs[i]) == k and bp.leaf_value(recs[i]) == v
    # search for an absent key lands on its insertion point
    absent = next(k for k in range(1, 1000) if k not in model)
    i = bp.find(recs, absent)
    assert i == len(recs) or bp.rec_key(recs[i]) > absent
    # round trip through bytes
    img = P.stamp_for_write(f, 777)
    assert P.verify(img, ps) == P.PAGE_OK
    back = bytearray(img)
    assert bp.records(back) == recs
    assert bp.level(back) == 0 and bp.n_recs(back) == len(model)
    assert P.u64(back, bp.PAGE_INDEX_ID) == 3
    # free space accounting
    used = sum(len(r) + bp.REC_LEN for r in recs)
    assert bp.free_space(back) == bp.capacity(ps) - used


def test_btr_page_delete_clears_the_freed_heap_tail():
    f = _index_frame()
    for k in range(10):
        bp.insert_rec(f, _leaf(k, b"z" * 50))
    top = bp.u16(f, bp.PAGE_HEAP_TOP)
    bp.list_end_delete(f, 5)
    assert [bp.rec_key(r) for r in bp.records(f)] == [0, 1, 2, 3, 4]
    new_top = bp.u16(f, bp.PAGE_HEAP_TOP)
    assert new_top < top and not any(f[new_top:top])


def test_btr_page_update_and_errors():
    f = _index_frame()
    for k in (10, 20, 30):
        bp.insert_rec(f, _leaf(k, b"a"))
    bp.update_rec(f, _leaf(20, b"longer value", trx_id=99))
    r = bp.records(f)[1]
    assert bp.leaf_value(r) == b"longer value" and bp.leaf_trx_id(r) == 99
    with pytest.raises(bp.PageLayoutError):
        bp.insert_rec(f, _leaf(20, b"dup"))
    with pytest.raises(bp.PageLayoutError):
        bp.update_rec(f, _leaf(21, b"missing"))
    with pytest.raises(bp.PageLayoutError):
        bp.delete_rec(f, 25)
    with pytest.raises(bp.PageLayoutError):
        bp.copy_recs_to_created(f, [_leaf(1)])
    with pytest.raises(bp.PageLayoutError):
        bp.write_records(f, [_leaf(k, b"x" * 1000) for k in range(5)])   # does not fit 4 KiB
    assert [bp.rec_key(r) for r in bp.records(f)] == [10, 20, 30]       # unchanged by failures


def test_btr_page_records_rejects_a_corrupt_heap():
    f = _index_frame()
    for k in (1, 2):
        bp.insert_rec(f, _leaf(k))
    bad = bytearray(f)
    P.put_u16(bad, bp.PAGE_N_RECS, 3)
    with pytest.raises(bp.PageLayoutError):
        bp.records(bad)
    bad = bytearray(f)
    P.put_u16(bad, bp.PAGE_DATA, 5000)               # a record length crossing the heap top
    with pytest.raises(bp.PageLayoutError):
        bp.records(bad)
    bad = bytearray(f)
    P.put_u16(bad, bp.PAGE_HEAP_TOP, 4095)
    with pytest.raises(bp.PageLayoutError):
        bp.records(bad)
    bad = bytearray(f)
    P.put_u16(bad, P.FIL_PAGE_TYPE, P.FIL_PAGE_UNDO_LOG)
    with pytest.raises(bp.PageLayoutError):
        bp._check(bad)


def test_btr_page_check_rejects_unordered_keys_and_bad_node_pointers():
    f = _index_frame()
    bp.write_records(f, [_leaf(5), _leaf(3)])
    with pytest.raises(bp.PageLayoutError):
        bp._check(f)
    g = _index_frame(level=1)
    bp.write_records(g, [bp.make_node_ptr(0, 4), bp.make_node_ptr(10, 5) + b"x"])
    with pytest.raises(bp.PageLayoutError):
        bp._check(g)
    h = _index_frame(level=1)
    bp.write_records(h, [bp.make_node_ptr(0, 4), bp.make_node_ptr(10, 5)])
    bp._check(h)
    assert [bp.node_child(r) for r in bp.records(h)] == [4, 5]


def test_leaf_record_fields_round_trip():
    rp = undo.make_roll_ptr(False, 17, 123456, 789)
    rec = bp.make_leaf_rec(2**64 - 1, 2**48 - 1, rp, b"value", info=0x20)
    assert bp.rec_key(rec) == 2**64 - 1
    assert rec[bp.REC_INFO] == 0x20
    assert bp.leaf_trx_id(rec) == 2**48 - 1
    assert bp.leaf_roll_ptr(rec) == rp
    assert bp.leaf_value(rec) == b"value"
    assert len(rec) == bp.REC_VALUE + 5
    # bytewise order of records is key order (big-endian key first)
    keys = [0, 1, 255, 256, 2**32, 2**63, 2**64 - 1]
    recs = [bp.make_leaf_rec(k, 1, rp, b"") for k in keys]
    assert sorted(recs) == recs


# --------------------------------------------------------------------------------------------
# engine.undo
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("rtype,old", [(undo.TRX_UNDO_INSERT_REC, b""),
                                       (undo.TRX_UNDO_UPD_EXIST_REC, b"old clustered rec"),
                                       (undo.TRX_UNDO_DEL_MARK_REC, b"deleted rec bytes")])
def test_undo_record_round_trip(rtype, old):
    payload = undo.make_rec(rtype, 41, 7, 2**64 - 2, old)
    assert len(payload) == undo.UNDO_REC_HDR + len(old)
    assert undo.parse_rec(payload) == (rtype, 41, 7, 2**64 - 2, old)


def test_undo_record_parse_errors():
    with pytest.raises(undo.UndoLayoutError):
        undo.parse_rec(b"\x0b\x00")
    bad = bytearray(undo.make_rec(undo.TRX_UNDO_INSERT_REC, 0, 1, 2))
    bad[0] = 99
    with pytest.raises(undo.UndoLayoutError):
        undo.parse_rec(bytes(bad))


@pytest.mark.skipif(not __debug__, reason="a caller's pre-condition, asserted (off under -O)")
def test_undo_make_rec_asserts_its_pre_condition():
    with pytest.raises(AssertionError):
        undo.make_rec(undo.TRX_UNDO_INSERT_REC, 0, 1, 2, b"old")   # insert carries no old rec


def test_undo_page_append_and_parse_round_trip():
    f = _undo_frame()
    assert undo.page_free(f) == undo.TRX_UNDO_PAGE_HDR_END
    assert undo.page_records(f) == []
    payloads = [undo.make_rec(undo.TRX_UNDO_UPD_EXIST_REC, i, 3, i * 10, b"o" * i)
                for i in range(1, 30)]
    offs = [undo.append_rec(f, p) for p in payloads]
    assert offs[0] == undo.TRX_UNDO_PAGE_HDR_END
    back = bytearray(P.stamp_for_write(f, 4242))
    assert undo.page_records(back) == list(zip(offs, payloads))
    assert undo.page_room(back) == 4096 - 8 - undo.page_free(back)
    # rolling back one record is a write of TRX_UNDO_PAGE_FREE (engine.trx.rollback_step)
    P.put_u16(back, undo.TRX_UNDO_PAGE_FREE, offs[-1])
    assert [p for _, p in undo.page_records(back)] == payloads[:-1]


def test_undo_page_full_and_corrupt():
    f = _undo_frame()
    big = undo.make_rec(undo.TRX_UNDO_DEL_MARK_REC, 0, 1, 1, b"x" * 1000)
    n = 0
    with pytest.raises(undo.UndoLayoutError):
        while True:
            undo.append_rec(f, big)
            n += 1
    assert n == (4096 - 8 - undo.TRX_UNDO_PAGE_HDR_END) // (len(big) + 2)
    assert len(undo.page_records(f)) == n                       # the failed append changed nothing
    bad = bytearray(f)
    P.put_u16(bad, undo.TRX_UNDO_PAGE_FREE, 4095)
    with pytest.raises(undo.UndoLayoutError):
        undo.page_records(bad)
    bad = bytearray(f)
    P.put_u16(bad, undo.TRX_UNDO_PAGE_HDR_END, 3)                # record shorter than its header
    with pytest.raises(undo.UndoLayoutError):
        undo.page_records(bad)


def test_undo_log_header_fields_round_trip():
    f = _undo_frame()
    # the header as engine.trx._assign_undo writes it
    hdr = (undo.TRX_UNDO_ACTIVE.to_bytes(2, "big") + (123456789).to_bytes(8, "big") +
           (77).to_bytes(4, "big") + (5).to_bytes(4, "big") + bytes([3]))
    f[undo.TRX_UNDO_STATE:undo.TRX_UNDO_STATE + len(hdr)] = hdr
    back = bytearray(P.stamp_for_write(f, 1))
    assert undo.header_state(back) == undo.TRX_UNDO_ACTIVE
    assert undo.header_trx_id(back) == 123456789
    assert undo.header_last_page(back) == 77
    assert undo.header_n_recs(back) == 5
    assert back[undo.TRX_UNDO_RSEG_ID] == 3
    assert undo.TRX_UNDO_RSEG_ID < undo.TRX_UNDO_PAGE_HDR_END


@pytest.mark.parametrize("is_insert,rseg,page,off", [(True, 0, 0, 0), (False, 127, 2**32 - 1,
                                                                          2**16 - 1),
                                                     (True, 5, 1234, 64), (False, 1, 9, 4000)])
def test_roll_ptr_round_trip(is_insert, rseg, page, off):
    rp = undo.make_roll_ptr(is_insert, rseg, page, off)
    assert len(rp) == bp.ROLL_PTR_LEN
    assert undo.parse_roll_ptr(rp) == (is_insert, rseg, page, off)
    assert bool(rp[0] & 0x80) == is_insert


def test_null_roll_ptr():
    assert undo.parse_roll_ptr(undo.NULL_ROLL_PTR) == (True, 0, 0, 0)


@pytest.mark.skipif(not __debug__, reason="a caller's pre-condition, asserted (off under -O)")
def test_roll_ptr_asserts_its_pre_condition():
    with pytest.raises(AssertionError):
        undo.make_roll_ptr(True, 128, 0, 0)


# --------------------------------------------------------------------------------------------
# engine.trx_sys and engine.fsp
# --------------------------------------------------------------------------------------------


def test_trx_sys_header_round_trip():
    ps = 4096
    f = bytearray(ps)
    P.init_frame(f, 0, trx_sys.TRX_SYS_PAGE_NO, P.FIL_PAGE_TYPE_TRX_SYS)
    R = 3
    body = ((999).to_bytes(8, "big") + R.to_bytes(4, "big") +
            trx_sys.doublewrite_header(trx_sys.doublewrite_first_page(R), 9) +
            b"".join((trx_sys.FIRST_RSEG_PAGE_NO + i).to_bytes(4, "big") for i in range(R)))
    f[trx_sys.TRX_SYS_TRX_ID_STORE:trx_sys.TRX_SYS_TRX_ID_STORE + len(body)] = body
    back = bytearray(P.stamp_for_write(f, 5))
    assert trx_sys.trx_id_store(back) == 999
    assert P.u32(back, trx_sys.TRX_SYS_N_RSEGS) == R
    assert trx_sys.read_doublewrite_header(back) == (6, 9)
    assert [P.u32(back, trx_sys.TRX_SYS_RSEGS + 4 * i) for i in range(R)] == [3, 4, 5]
    assert trx_sys.first_free_page(R, 9) == 15


def test_doublewrite_header_survives_one_damaged_copy():
    f = bytearray(4096)
    hdr = trx_sys.doublewrite_header(5, 17)
    assert len(hdr) == 24
    f[trx_sys.TRX_SYS_DOUBLEWRITE:trx_sys.TRX_SYS_DOUBLEWRITE + 24] = hdr
    assert trx_sys.read_doublewrite_header(f) == (5, 17)
    f[trx_sys.TRX_SYS_DOUBLEWRITE] ^= 0xFF                  # first magic destroyed
    assert trx_sys.read_doublewrite_header(f) == (5, 17)
    f[trx_sys.TRX_SYS_DOUBLEWRITE_REPEAT] ^= 0xFF           # both destroyed
    assert trx_sys.read_doublewrite_header(f) is None


def test_rseg_header_round_trip():
    ps = 8192
    f = bytearray(ps)
    ml.apply(f, ml.page_init(0, 3, P.FIL_PAGE_TYPE_RSEG), ps)
    assert trx_sys.n_slots(ps) == 512
    slots = trx_sys.rseg_slots(f, ps)
    assert slots == [P.FIL_NULL] * 512
    P.put_u32(f, trx_sys.rseg_slot_offset(7), 40)
    P.put_u32(f, trx_sys.rseg_slot_offset(511), 41)
    back = bytearray(P.stamp_for_write(f, 9))
    s = trx_sys.rseg_slots(back, ps)
    assert s[7] == 40 and s[511] == 41 and s.count(P.FIL_NULL) == 510
    assert trx_sys.rseg_slot_offset(511) + 4 <= ps - 8


def test_dictionary_header_round_trip():
    f = bytearray(4096)
    tables = [("sbtest1", 1, 1, 2), ("a", 2, 1, 0xFFFFFFFF), ("x" * 64, 2**32 - 1, 7, 9)]
    enc = trx_sys.encode_dict(tables)
    f[trx_sys.DICT_HDR_N_TABLES:trx_sys.DICT_HDR_N_TABLES + len(enc)] = enc
    back = P.stamp_for_write(f, 3)
    assert trx_sys.decode_dict(back) == tables
    assert trx_sys.decode_dict(bytes(4096)) == []


def test_fsp_header_and_bitmap_round_trip():
    ps = 4096
    f = bytearray(ps)
    P.init_frame(f, 9, 0, P.FIL_PAGE_TYPE_FSP_HDR)
    f[fsp.FSP_SPACE_ID:fsp.FSP_SPACE_ID + 16] = fsp.header_bytes(9, ps, 4, 2)
    for p in (0, 1, 3):
        off, b = fsp.bitmap_byte_after(f, p, True)
        f[off:off + 1] = b
    back = bytearray(P.stamp_for_write(f, 11))
    assert P.u32(back, fsp.FSP_SPACE_ID) == 9
    assert P.u32(back, fsp.FSP_PAGE_SIZE) == ps
    assert fsp.free_limit(back) == 4
    assert P.u32(back, fsp.FSP_FIRST_FREE) == 2
    assert fsp.used_pages(back) == [0, 1, 3]
    assert fsp.is_used(back, 3) and not fsp.is_used(back, 2)
    assert fsp.find_free(back, ps) == 2                 # a freed page below the limit is reused
    off, b = fsp.bitmap_byte_after(back, 2, True)
    back[off:off + 1] = b
    assert fsp.find_free(back, ps) == 4                 # then the limit grows
    off, b = fsp.bitmap_byte_after(back, 1, False)
    back[off:off + 1] = b
    assert fsp.used_pages(back) == [0, 2, 3]
    assert fsp.find_free(back, ps) == 4                 # page 1 is below FSP_FIRST_FREE


def test_fsp_space_full():
    ps = 4096
    f = bytearray(ps)
    n = fsp.max_pages(ps)
    assert n == (ps - 8 - fsp.FSP_BITMAP) * 8
    f[fsp.FSP_SPACE_ID:fsp.FSP_SPACE_ID + 16] = fsp.header_bytes(1, ps, n, 0)
    f[fsp.FSP_BITMAP:fsp.FSP_BITMAP + n // 8] = b"\xff" * (n // 8)
    with pytest.raises(fsp.SpaceFull):
        fsp.find_free(f, ps)
    off, b = fsp.bitmap_byte_after(f, n - 1, False)
    f[off:off + 1] = b
    assert fsp.find_free(f, ps) == n - 1


# --------------------------------------------------------------------------------------------
# engine.mtr_log
# --------------------------------------------------------------------------------------------

PS = 4096


def _sample_records():
    """(record, frame before, function that performs the same change the direct way)."""
    out = []
    f = _index_frame(PS, page_no=7, space=3)
    for k in (10, 20, 30, 40):
        bp.insert_rec(f, _leaf(k, b"v%d" % k))

    def direct(fn):
        def run(frame):
            fn(frame)
        return run

    out.append((ml.write_string(3, 7, 1000, b"hello world"), f,
                direct(lambda fr: fr.__setitem__(slice(1000, 1011), b"hello world"))))
    out.append((ml.page_init(3, 7, P.FIL_PAGE_INDEX, 2, 99), f,
                direct(lambda fr: (P.init_frame(fr, 3, 7, P.FIL_PAGE_INDEX),
                                   bp.init(fr, 2, 99)))))
    out.append((ml.page_init(0, 21, P.FIL_PAGE_UNDO_LOG), f,
                direct(lambda fr: (P.init_frame(fr, 0, 21, P.FIL_PAGE_UNDO_LOG),
                                   undo.init_page(fr)))))
    out.append((ml.page_init(0, 3, P.FIL_PAGE_TYPE_RSEG), f,
                direct(lambda fr: (P.init_frame(fr, 0, 3, P.FIL_PAGE_TYPE_RSEG),
                                   trx_sys.init_rseg(fr, PS)))))
    out.append((ml.page_init(0, 1, P.FIL_PAGE_TYPE_TRX_SYS), f,
                direct(lambda fr: P.init_frame(fr, 0, 1, P.FIL_PAGE_TYPE_TRX_SYS))))
    new = _leaf(25, b"inserted")
    out.append((ml.RedoRecord(ml.MLOG_REC_INSERT, 3, 7, new), f,
                direct(lambda fr: bp.insert_rec(fr, new))))
    upd = _leaf(20, b"updated in place, longer")
    out.append((ml.RedoRecord(ml.MLOG_REC_UPDATE_IN_PLACE, 3, 7, upd), f,
                direct(lambda fr: bp.update_rec(fr, upd))))
    out.append((ml.RedoRecord(ml.MLOG_REC_DELETE, 3, 7, ml.key_body(30)), f,
                direct(lambda fr: bp.delete_rec(fr, 30))))
    out.append((ml.RedoRecord(ml.MLOG_LIST_END_DELETE, 3, 7, ml.key_body(20)), f,
                direct(lambda fr: bp.list_end_delete(fr, 20))))
    empty = _index_frame(PS, page_no=8, space=3, level=0)
    recs = [_leaf(k, b"c" * k) for k in (50, 60, 70)]
    out.append((ml.RedoRecord(ml.MLOG_LIST_END_COPY_CREATED, 3, 8, ml.encode_rec_list(recs)),
                empty, direct(lambda fr: bp.copy_recs_to_created(fr, recs))))
    uf = _undo_frame(PS, 21)
    urec = undo.make_rec(undo.TRX_UNDO_DEL_MARK_REC, 0, 3, 30, _leaf(30))
    out.append((ml.RedoRecord(ml.MLOG_UNDO_INSERT, 0, 21, urec), uf,
                direct(lambda fr: undo.append_rec(fr, urec))))
    return out


_SAMPLES = _sample_records()


def test_samples_cover_every_record_type():
    assert {r.type for r, _, _ in _SAMPLES} == set(ml.TYPE_NAMES) - ml.FILE_RECORD_TYPES


def test_file_level_records_round_trip_and_change_no_page():
    recs = [ml.file_record(ml.MLOG_FILE_NAME, 3, "a.ibd"),
            ml.file_record(ml.MLOG_FILE_CREATE, 4, "b.ibd"),
            ml.file_record(ml.MLOG_FILE_RENAME, 4, "b.ibd", "c.ibd"),
            ml.file_record(ml.MLOG_FILE_DELETE, 3, "a.ibd"),
            ml.checkpoint_marker(123456)]
    assert {r.type for r in recs} == ml.FILE_RECORD_TYPES
    back, end = ml.parse_mtr(ml.encode_mtr(recs), 0)
    assert back == recs
    assert [ml.file_paths(r) for r in back[:4]] == [["a.ibd"], ["b.ibd"], ["b.ibd", "c.ibd"],
                                                    ["a.ibd"]]
    assert ml.checkpoint_lsn(back[4]) == 123456
    assert "b.ibd -> c.ibd" in back[2].describe()
    for r in recs:
        with pytest.raises(ml.RedoApplyError):
            ml.apply(bytearray(PS), r, PS)
    for body in (b"", b"\xff\xfe", b"a\0b"):
        with pytest.raises(ml.RedoParseError):
            ml.file_paths(ml.RedoRecord(ml.MLOG_FILE_DELETE, 3, 0, body))
    with pytest.raises(ml.RedoParseError):
        ml.file_paths(ml.RedoRecord(ml.MLOG_FILE_RENAME, 3, 0, b"only-one"))


@pytest.mark.parametrize("idx", range(len(_SAMPLES)),
                         ids=[f"{ml.TYPE_NAMES[r.type]}-{i}" for i, (r, _, _) in
                              enumerate(_SAMPLES)])
def test_redo_record_encode_parse_apply(idx):
    rec, before, direct = _SAMPLES[idx]
    # single-record mtr: the type carries MLOG_SINGLE_REC_FLAG
    enc = ml.encode_mtr([rec])
    assert enc[0] == rec.type | ml.MLOG_SINGLE_REC_FLAG
    assert len(enc) == ml.REC_HDR + len(rec.body)
    assert ml.parse_mtr(enc, 0) == ([rec], len(enc))
    # inside a buffer, at an offset, followed by other bytes
    buf = b"\x55" * 13 + enc + b"\x00" * 40
    assert ml.parse_mtr(buf, 13) == ([rec], 13 + len(enc))
    # multi-record mtr ends with MLOG_MULTI_REC_END
    multi = ml.encode_mtr([rec, rec])
    assert multi[-1] == ml.MLOG_MULTI_REC_END
    assert ml.parse_mtr(multi, 0) == ([rec, rec], len(multi))
    # apply == the change made directly with the page module's function
    a = bytearray(before)
    b = bytearray(before)
    ml.apply(a, rec, PS)
    direct(b)
    assert a == b
    assert a != before or rec.type == ml.MLOG_PAGE_INIT   # (PAGE_INIT of an empty page)
    # and the result is a well-formed page of its kind
    if P.page_type(a) == P.FIL_PAGE_INDEX:
        bp._check(a)
    elif P.page_type(a) == P.FIL_PAGE_UNDO_LOG:
        undo.page_records(a)


@pytest.mark.parametrize("idx", range(len(_SAMPLES)))
def test_redo_record_truncated_anywhere_is_incomplete(idx):
    """A record cut short is not a record: parse_mtr says "incomplete" (None), so recovery
    discards the partial group (recv_parse_log_recs)."""
    rec = _SAMPLES[idx][0]
    for enc in (ml.encode_mtr([rec]), ml.encode_mtr([rec, _SAMPLES[0][0]])):
        for cut in range(len(enc)):
            assert ml.parse_mtr(enc[:cut], 0) is None, cut


def test_redo_parse_errors_are_typed():
    good = ml.encode(ml.write_string(0, 1, 100, b"abc"))
    with pytest.raises(ml.RedoParseError):
        ml.parse_mtr(bytes([77]) + good[1:], 0)                    # unknown type
    with pytest.raises(ml.RedoParseError):
        ml.parse_mtr(bytes([ml.MLOG_MULTI_REC_END]) + good, 0)     # end marker first
    with pytest.raises(ml.RedoParseError):                         # single flag inside multi
        ml.parse_mtr(good + ml.encode(ml.write_string(0, 1, 0, b"x"), single=True), 0)
    huge = struct.pack(">BIII", ml.MLOG_WRITE_STRING | ml.MLOG_SINGLE_REC_FLAG, 0, 1,
                       (1 << 20) + 1)
    with pytest.raises(ml.RedoParseError):
        ml.parse_mtr(huge, 0)                                      # impossible length
    assert issubclass(ml.RedoParseError, ValueError)


def test_redo_apply_to_a_wrong_page_raises_typed_errors():
    f = _index_frame()
    bp.insert_rec(f, _leaf(1))
    with pytest.raises(bp.PageLayoutError):
        ml.apply(f, ml.RedoRecord(ml.MLOG_REC_INSERT, 3, 7, _leaf(1)), PS)
    with pytest.raises(bp.PageLayoutError):
        ml.apply(f, ml.RedoRecord(ml.MLOG_REC_DELETE, 3, 7, ml.key_body(2)), PS)
    with pytest.raises(bp.PageLayoutError):
        ml.apply(f, ml.RedoRecord(ml.MLOG_LIST_END_COPY_CREATED, 3, 7,
                                  ml.encode_rec_list([_leaf(5)])), PS)
    u = _undo_frame()
    with pytest.raises(undo.UndoLayoutError):
        for _ in range(10):
            ml.apply(u, ml.RedoRecord(ml.MLOG_UNDO_INSERT, 0, 20, b"u" * 1000), PS)


def test_rec_list_encoding_round_trip():
    recs = [_leaf(k, b"q" * k) for k in range(0, 300, 37)]
    assert ml.decode_rec_list(ml.encode_rec_list(recs)) == recs
    assert ml.decode_rec_list(b"") == []


def test_engine_do_path_equals_redo_replay():
    """Every redo record the running engine logged, read back from the log file and replayed
    from nothing onto blank frames, rebuilds exactly the page images the engine wrote (do and
    redo cannot drift apart)."""
    disk = SimDisk()
    cfg = _small_config(buffer_pool_pages=16, log_file_size=4 << 20)
    eng = Engine.create(disk, cfg)
    eng.create_table("t")
    rng = random.Random(3)
    for i in range(8):
        if i == 4:
            eng.checkpoint()        # a marker naming the table's space (MLOG_FILE_NAME)
        trx = eng.begin()
        for _ in range(40):
            k = rng.randrange(400)
            v = bytes([k % 256]) * rng.randrange(10, 700)
            if rng.random() < 0.2:
                trx.delete("t", k)
            else:
                trx.put("t", k, v)
        if rng.random() < 0.3:
            trx.rollback()
        else:
            trx.commit()
    eng.buf.flush_all()
    assert eng.stats["btr_page_splits"] > 0 and eng.stats["buf_lru_evictions"] > 0

    eng.log.write_up_to(eng.log.lsn)
    assert eng.log.lsn - L.LOG_START_LSN < eng.log.capacity       # nothing overwritten yet
    # the whole log from its very first LSN (the stale-block rule allows rising epochs)
    res = L.scan(disk.open("ib_logfile0"), cfg.log_file_size,
                 L.Checkpoint(0, L.LOG_START_LSN, L.LOG_FILE_HDR_SIZE, L.LOG_CHECKPOINT_1))
    # the writer moves to the next block after fsyncing a partial one (never rewrites it)
    assert res.stop == L.STOP_END and res.recovered_lsn <= eng.log.lsn
    assert res.recovered_lsn == eng.log.lsn or (eng.log.lsn % L.BLOCK == 0 and
                                                eng.log.lsn - res.recovered_lsn < L.BLOCK)
    assert len(res.mtrs) == eng.stats["mtr_committed"] + eng.stats["checkpoint_markers"]
    assert sum(len(m.records) for m in res.mtrs) == eng.stats["redo_records_written"] + \
        eng.stats["checkpoint_file_names"] + eng.stats["checkpoint_markers"]
    frames: dict[tuple[int, int], bytearray] = {}
    last: dict[tuple[int, int], int] = {}
    types = set()
    for m in res.mtrs:
        end = m.end_lsn
        data = ml.encode_mtr(m.records)
        assert ml.parse_mtr(data, 0) == (m.records, len(data))
        for r in m.records:
            types.add(r.type)
            if r.type in ml.FILE_RECORD_TYPES:
                continue            # names files, changes no page
            key = (r.space, r.page_no)
            fr = frames.setdefault(key, bytearray(PS))
            ml.apply(fr, r, PS)
            last[key] = end
    assert types == set(ml.TYPE_NAMES) - {ml.MLOG_FILE_RENAME, ml.MLOG_FILE_DELETE}
    files = {0: "ibdata1", 1: "t.ibd"}
    assert {s for s, _ in frames} == set(files)
    for (space, pno), fr in frames.items():
        on_disk = disk.read_file(files[space])[pno * PS:(pno + 1) * PS]
        assert on_disk == P.stamp_for_write(fr, last[(space, pno)]), (space, pno)


# --------------------------------------------------------------------------------------------
# engine.log
# --------------------------------------------------------------------------------------------

BLK = L.BLOCK


def _new_log(size: int = 64 * 1024):
    disk = SimDisk()
    f = disk.open("ib_logfile0", create=True)
    log = LogSys(f, size)
    log.create()
    log.write_checkpoint(L.LOG_START_LSN)
    return disk, f, log


def _mtr_bytes(rng, i: int, n: int | None = None) -> bytes:
    n = rng.randrange(1, 900) if n is None else n
    return ml.encode_mtr([ml.write_string(0, 5 + i % 3, 40, bytes([i % 256]) * n)])


def _write_mtrs(log, rng, count: int, sizes=None):
    out = []
    for i in range(count):
        data = _mtr_bytes(rng, i, None if sizes is None else sizes[i])
        s, e = log.append(data)
        out.append((s, e, data))
        if rng.random() < 0.3:
            # written, not fsynced: an fsync would close the block (see test_log_never_
            # rewrites_a_durable_block), and these tests check the contiguous stream
            log.write_up_to(e, flush=False)
    log.write_up_to(log.lsn, flush=True)
    return out


def test_log_never_rewrites_a_durable_block():
    """After an fsync that leaves a partial block, the next mtr starts in the next block: no
    fsynced block is ever written again (a torn rewrite could destroy durable redo on a device
    whose lost sectors read as zeros), and the scan still finds every mtr with its LSNs."""
    disk, f, log = _new_log()
    rng = random.Random(31)
    mtrs = []
    for i in range(40):
        data = _mtr_bytes(rng, i, rng.randrange(1, 300))
        s, e = log.append(data)
        mtrs.append((s, e, data))
        if rng.random() < 0.5:
            log.write_up_to(e, flush=True)
    log.write_up_to(log.end_lsn, flush=True)
    durable: set[int] = set()
    written: set[int] = set()
    from tornpage.faultfs.trace import Fsync, Write
    for op in disk.trace.ops:
        if isinstance(op, Write) and op.path == "ib_logfile0" and op.offset >= 2048:
            blocks = set(range(op.offset // BLK, (op.offset + len(op.data) - 1) // BLK + 1))
            assert not blocks & durable, f"durable log block rewritten at {op.offset}"
            written |= blocks
        elif isinstance(op, Fsync) and op.path == "ib_logfile0":
            durable |= written
    res = _scan(f, 64 * 1024)
    assert res.stop == L.STOP_END
    assert [m.end_lsn for m in res.mtrs] == [e for _, e, _ in mtrs]
    assert [ml.encode_mtr(m.records) for m in res.mtrs] == [d for _, _, d in mtrs]
    assert res.recovered_lsn == log.end_lsn
    # LSNs stay consecutive (a closed block does not change where the next mtr starts by LSN)
    assert all(a[1] == b[0] for a, b in zip(mtrs, mtrs[1:]))
    closed = [b for b in range(L.LOG_START_LSN, log.lsn - BLK, BLK)
              if P.u16(_block_at(f, log, b), L.LOG_BLOCK_HDR_DATA_LEN) < BLK]
    assert closed, "some fsync left a partial block, and the next mtr went to the next block"


def test_a_repeated_scan_reuses_its_parse_but_asks_a_replaced_parse_mtr(monkeypatch):
    """parse_run keeps each payload's parse (issue #10, "Speed"): a second scan of the same
    log gives the same result without parsing again, with fresh record lists; a replaced
    parse_mtr (a mutant's seam) is asked about every payload it has not parsed; a corrupt
    payload gives the same RecoveryError every time."""
    L.clear_parse_cache()
    disk, f, log = _new_log()
    _write_mtrs(log, random.Random(7), 12)
    calls = []
    real = L.parse_mtr

    def counting(buf, pos):
        calls.append(pos)
        return real(buf, pos)
    monkeypatch.setattr(L, "parse_mtr", counting)
    first = _scan(f, 64 * 1024)
    n = len(calls)
    assert n == len(first.mtrs) + 1                      # every mtr, then the incomplete end
    again = _scan(f, 64 * 1024)
    assert len(calls) == n                               # kept: not parsed again
    assert again == first and again.mtrs[0].records is not first.mtrs[0].records

    def other(buf, pos):                                 # another seam: asked afresh
        calls.append(pos)
        return real(buf, pos)
    monkeypatch.setattr(L, "parse_mtr", other)
    assert _scan(f, 64 * 1024) == first and len(calls) == 2 * n
    monkeypatch.setattr(L, "parse_mtr", real)
    blk = _block_at(f, log, L.LOG_START_LSN)
    blk[L.LOG_BLOCK_HDR_SIZE] = 77                       # an unknown record type, checksum fixed
    _put_block(f, log, L.LOG_START_LSN, blk)
    errors = []
    for _ in range(2):
        with pytest.raises(RecoveryError) as e:
            _scan(f, 64 * 1024)
        errors.append(str(e.value))
    assert errors[0] == errors[1] and "unknown redo record type 77" in errors[0]
    L.clear_parse_cache()


def _scan(f, size):
    ck = L.read_checkpoints(f)
    return L.scan(f, size, ck[0])


def _block_at(f, log, block_lsn) -> bytearray:
    return bytearray(f.pread(BLK, log.offset_of(block_lsn)))


def _put_block(f, log, block_lsn, blk: bytearray, fix_checksum=True) -> None:
    if fix_checksum:
        P.put_u32(blk, L.LOG_BLOCK_CHECKSUM, L.block_checksum(blk))
    f.pwrite(bytes(blk), log.offset_of(block_lsn))


def test_lsn_add_skips_block_header_and_trailer():
    s = L.LOG_START_LSN
    assert L.lsn_add(s, 0) == s
    assert L.lsn_add(s, 1) == s + 12 + 1
    assert L.lsn_add(s, L.LOG_BLOCK_PAYLOAD) == s + BLK          # normalised to the next block
    assert L.lsn_add(s, L.LOG_BLOCK_PAYLOAD + 1) == s + BLK + 12 + 1
    assert L.lsn_add(s + 500, 7) == s + 507                      # last payload byte is 507
    assert L.lsn_add(s + 500, 8) == s + BLK                      # 508 is the trailer: next block
    assert L.lsn_add(s + 500, 9) == s + BLK + 13
    assert L.lsn_add(s + 12, 3 * L.LOG_BLOCK_PAYLOAD) == s + 3 * BLK
    # additivity
    rng = random.Random(1)
    for _ in range(200):
        a, b = rng.randrange(1, 3000), rng.randrange(1, 3000)
        assert L.lsn_add(L.lsn_add(s, a), b) == L.lsn_add(s, a + b)


def test_block_no_and_checkpoint_encoding():
    assert L.block_no(0) == 1
    assert L.block_no(L.LOG_START_LSN) == L.LOG_START_LSN // BLK + 1
    assert L.block_no(BLK * L.LOG_BLOCK_NO_MASK) == 1      # wraps at 2^30 - 1 (bit 30: a flag)
    b = L.encode_checkpoint(7, 123456, 4096)
    assert len(b) == BLK
    assert L.decode_checkpoint(b, L.LOG_CHECKPOINT_2) == L.Checkpoint(7, 123456, 4096,
                                                                      L.LOG_CHECKPOINT_2)
    assert L.decode_checkpoint(_flip(b, 9), 512) is None
    assert L.decode_checkpoint(bytes(BLK), 512) is None
    assert L.decode_checkpoint(b[:100], 512) is None
    assert L.checkpoint_slot_for(0) == L.LOG_CHECKPOINT_1 == 512
    assert L.checkpoint_slot_for(1) == L.LOG_CHECKPOINT_2 == 1536
    h = L.file_header()
    assert P.u32(h, L.LOG_HEADER_FORMAT) == L.LOG_HEADER_FORMAT_TORNPAGE
    assert P.u64(h, L.LOG_HEADER_START_LSN) == L.LOG_START_LSN
    assert P.u32(h, L.LOG_BLOCK_CHECKSUM) == L.block_checksum(h)


def test_log_blocks_have_header_and_crc32c_trailer():
    import crc32c
    _, f, log = _new_log()
    rng = random.Random(11)
    mtrs = _write_mtrs(log, rng, 30)
    starts = {s for s, _, _ in mtrs}
    assert f.size() == 64 * 1024
    assert f.pread(BLK, 0) == L.file_header()
    lsn = L.LOG_START_LSN
    nblocks = 0
    while lsn < log.lsn:
        blk = f.pread(BLK, log.offset_of(lsn))
        assert P.u32(blk, L.LOG_BLOCK_HDR_NO) & L.LOG_BLOCK_NO_MASK == L.block_no(lsn)
        assert P.u32(blk, L.LOG_BLOCK_CHECKSUM) == crc32c.crc32c(blk[:508])
        dl = P.u16(blk, L.LOG_BLOCK_HDR_DATA_LEN)
        last = lsn + BLK > log.end_lsn
        assert dl == (log.end_lsn - lsn if last else BLK)
        frg = P.u16(blk, L.LOG_BLOCK_FIRST_REC_GROUP)
        in_block = sorted(s for s in starts if lsn <= s < lsn + BLK)
        if in_block:
            # a start at the block start is stored as offset 12 (after the header)
            assert frg == max(in_block[0] - lsn, L.LOG_BLOCK_HDR_SIZE)
        else:
            assert frg == 0
        assert P.u32(blk, L.LOG_BLOCK_CHECKPOINT_NO) == 1       # next checkpoint number
        lsn += BLK
        nblocks += 1
    assert nblocks > 10


def test_log_write_and_scan_round_trip():
    _, f, log = _new_log()
    rng = random.Random(12)
    mtrs = _write_mtrs(log, rng, 40)
    res = _scan(f, 64 * 1024)
    assert res.stop == L.STOP_END
    assert res.checkpoint.lsn == L.LOG_START_LSN and res.checkpoint.no == 0
    assert [(m.start_lsn, m.end_lsn) for m in res.mtrs] == [(s, e) for s, e, _ in mtrs]
    assert [ml.encode_mtr(m.records) for m in res.mtrs] == [d for _, _, d in mtrs]
    assert res.recovered_lsn == res.scanned_lsn == log.end_lsn
    # consecutive: each mtr starts where the previous ended
    assert all(a[1] == b[0] for a, b in zip(mtrs, mtrs[1:]))


def _victim_block(mtrs, nth=0.5):
    """A block in the middle of the written log, and the mtrs complete before it."""
    e_mid = mtrs[int(len(mtrs) * nth)][1]
    blsn = e_mid - e_mid % BLK + BLK
    before = [(s, e) for s, e, _ in mtrs if e <= blsn]
    return blsn, before


def test_log_scan_stops_at_a_block_with_a_bad_checksum():
    _, f, log = _new_log()
    mtrs = _write_mtrs(log, random.Random(13), 40)
    blsn, before = _victim_block(mtrs)
    blk = _block_at(f, log, blsn)
    blk[200] ^= 0x40
    _put_block(f, log, blsn, blk, fix_checksum=False)
    res = _scan(f, 64 * 1024)
    assert res.stop == L.STOP_CHECKSUM
    assert [(m.start_lsn, m.end_lsn) for m in res.mtrs] == before
    assert res.scanned_lsn == blsn
    assert 0 < len(before) < len(mtrs)


def test_log_scan_stops_at_a_wrong_block_number():
    _, f, log = _new_log()
    mtrs = _write_mtrs(log, random.Random(14), 40)
    blsn, before = _victim_block(mtrs, 0.3)
    blk = _block_at(f, log, blsn)
    lap = (64 * 1024 - L.LOG_FILE_HDR_SIZE) // BLK
    # a block one lap older (what a previous lap left there) ends the scan
    P.put_u32(blk, L.LOG_BLOCK_HDR_NO, L.block_no(blsn - lap * BLK))
    _put_block(f, log, blsn, blk)
    res = _scan(f, 64 * 1024)
    assert res.stop == L.STOP_BLOCK_NUMBER
    assert [(m.start_lsn, m.end_lsn) for m in res.mtrs] == before
    # so does a wrong number whose checksum fails (a torn or garbage block)
    P.put_u32(blk, L.LOG_BLOCK_HDR_NO, L.block_no(blsn) + 1)
    _put_block(f, log, blsn, blk, fix_checksum=False)
    res = _scan(f, 64 * 1024)
    assert res.stop == L.STOP_BLOCK_NUMBER
    assert [(m.start_lsn, m.end_lsn) for m in res.mtrs] == before
    # a valid block of another place (any number but whole laps older): a misdirected write
    # destroyed this block, and ending the log here would silently drop committed redo
    for wrong in (L.block_no(blsn + BLK), L.block_no(blsn - (lap - 1) * BLK),
                  L.block_no(blsn - 3 * BLK)):
        P.put_u32(blk, L.LOG_BLOCK_HDR_NO, wrong)
        _put_block(f, log, blsn, blk)
        assert L.misplaced_block(bytes(blk), blsn, 64 * 1024 - L.LOG_FILE_HDR_SIZE)
        with pytest.raises(RecoveryError, match="misdirected write"):
            _scan(f, 64 * 1024)
    # the flush bit (bit 31) is ignored
    P.put_u32(blk, L.LOG_BLOCK_HDR_NO, L.block_no(blsn) | L.LOG_BLOCK_FLUSH_BIT_MASK)
    _put_block(f, log, blsn, blk)
    res = _scan(f, 64 * 1024)
    assert res.stop == L.STOP_END and len(res.mtrs) == len(mtrs)


def test_log_scan_stops_at_a_stale_block():
    _, f, log = _new_log()
    mtrs = _write_mtrs(log, random.Random(15), 40)
    blsn, before = _victim_block(mtrs, 0.6)
    blk = _block_at(f, log, blsn)
    assert P.u32(blk, L.LOG_BLOCK_CHECKPOINT_NO) == 1
    P.put_u32(blk, L.LOG_BLOCK_CHECKPOINT_NO, 0)                # written before checkpoint 0
    _put_block(f, log, blsn, blk)
    res = _scan(f, 64 * 1024)
    assert res.stop == L.STOP_STALE
    assert [(m.start_lsn, m.end_lsn) for m in res.mtrs] == before


def test_log_scan_accepts_blocks_of_newer_checkpoint_epochs():
    _, f, log = _new_log()
    rng = random.Random(16)
    first = _write_mtrs(log, rng, 10)
    log.write_checkpoint(L.LOG_START_LSN)          # checkpoint 1 (slot 2), same LSN
    log.write_checkpoint(L.LOG_START_LSN)          # checkpoint 2 (slot 1)
    second = _write_mtrs(log, rng, 10)
    res = _scan(f, 64 * 1024)
    assert res.checkpoint.no == 2
    assert res.stop == L.STOP_END
    assert len(res.mtrs) == 20 and res.recovered_lsn == second[-1][1]
    ckno = {P.u32(_block_at(f, log, b), L.LOG_BLOCK_CHECKPOINT_NO)
            for b in range(L.LOG_START_LSN, log.lsn, BLK)}
    assert ckno == {1, 3}
    assert first[-1][1] == second[0][0]


def test_log_scan_stops_at_an_impossible_data_length():
    _, f, log = _new_log()
    mtrs = _write_mtrs(log, random.Random(17), 40)
    blsn, before = _victim_block(mtrs, 0.4)
    blk = _block_at(f, log, blsn)
    P.put_u16(blk, L.LOG_BLOCK_HDR_DATA_LEN, 510)              # between trailer and full
    _put_block(f, log, blsn, blk)
    res = _scan(f, 64 * 1024)
    assert res.stop == L.STOP_DATA_LEN
    assert [(m.start_lsn, m.end_lsn) for m in res.mtrs] == before


def test_log_scan_partial_block_ends_the_log_and_drops_an_incomplete_mtr():
    _, f, log = _new_log()
    rng = random.Random(18)
    mtrs = _write_mtrs(log, rng, 5)
    # a big mtr spanning several blocks whose last block never reached the disk
    s, e = log.append(_mtr_bytes(rng, 99, 2000))
    log.write_up_to(e)
    last_blk = (e - 1) - (e - 1) % BLK
    assert last_blk > s
    f.pwrite(bytes(BLK), log.offset_of(last_blk))
    res = _scan(f, 64 * 1024)
    assert res.stop == L.STOP_BLOCK_NUMBER                    # zeros: block number 0
    assert [(m.start_lsn, m.end_lsn) for m in res.mtrs] == [(a, b) for a, b, _ in mtrs]
    assert res.recovered_lsn == mtrs[-1][1] == s
    assert res.scanned_lsn == last_blk
    # the normal end: the last block is partial
    _, f2, log2 = _new_log()
    m2 = _write_mtrs(log2, rng, 5)
    assert log2.end_lsn % BLK != 0
    res2 = _scan(f2, 64 * 1024)
    assert res2.stop == L.STOP_END and res2.recovered_lsn == m2[-1][1]


def test_log_scan_ignores_bytes_beyond_data_length():
    _, f, log = _new_log()
    mtrs = _write_mtrs(log, random.Random(19), 5)
    blsn = log.end_lsn - log.end_lsn % BLK           # the last, partial (closed) block
    blk = _block_at(f, log, blsn)
    dl = P.u16(blk, L.LOG_BLOCK_HDR_DATA_LEN)
    assert L.LOG_BLOCK_HDR_SIZE < dl < 500
    junk = ml.encode(ml.write_string(0, 1, 0, b"x" * 30), single=True)[:20]
    blk[dl:dl + 20] = junk
    _put_block(f, log, blsn, blk)
    res = _scan(f, 64 * 1024)
    assert res.stop == L.STOP_END and len(res.mtrs) == len(mtrs)


def test_log_scan_refuses_a_log_that_ends_before_its_checkpoint():
    _, f, log = _new_log()
    _write_mtrs(log, random.Random(20), 5)
    assert log.end_lsn % BLK > L.LOG_BLOCK_HDR_SIZE
    log.write_checkpoint(log.end_lsn)                                # mid-block checkpoint
    blsn = log.end_lsn - log.end_lsn % BLK
    blk = _block_at(f, log, blsn)
    P.put_u16(blk, L.LOG_BLOCK_HDR_DATA_LEN, L.LOG_BLOCK_HDR_SIZE)
    _put_block(f, log, blsn, blk)
    with pytest.raises(RecoveryError):
        _scan(f, 64 * 1024)
    blk[300] ^= 1                                                # no valid block at all
    _put_block(f, log, blsn, blk, fix_checksum=False)
    with pytest.raises(RecoveryError):
        _scan(f, 64 * 1024)


def test_log_scan_refuses_unparseable_redo_in_a_valid_block():
    _, f, log = _new_log()
    s, _ = log.append(_mtr_bytes(random.Random(1), 0, 50))
    log.write_up_to(log.lsn)
    blsn = s - s % BLK
    blk = _block_at(f, log, blsn)
    assert s == L.LOG_START_LSN                                  # a block start: data at 12
    blk[L.LOG_BLOCK_HDR_SIZE] = 77                               # unknown record type
    _put_block(f, log, blsn, blk)
    with pytest.raises(RecoveryError):
        _scan(f, 64 * 1024)


def test_log_wraps_around_the_circular_file():
    size = 2048 + 64 * BLK
    _, f, log = _new_log(size)
    rng = random.Random(21)
    written = []
    for rnd in range(24):
        written = _write_mtrs(log, rng, 12, sizes=[rng.randrange(100, 600) for _ in range(12)])
        log.write_checkpoint(written[3][1])                     # keep the tail of the round
    assert log.lsn - L.LOG_START_LSN > 2 * log.capacity            # wrapped more than twice
    res = _scan(f, size)
    assert res.checkpoint.lsn == written[3][1]
    assert [(m.start_lsn, m.end_lsn) for m in res.mtrs] == [(s, e) for s, e, _ in written[4:]]
    assert res.stop in (L.STOP_END, L.STOP_BLOCK_NUMBER)
    assert res.recovered_lsn == log.end_lsn


def test_log_refuses_to_overwrite_redo_newer_than_the_checkpoint():
    size = 2048 + 64 * BLK
    _, f, log = _new_log(size)
    with pytest.raises(L.LogFull):
        for i in range(1000):
            log.append(_mtr_bytes(random.Random(i), i, 400))
    assert log.lsn - L.LOG_START_LSN <= log.capacity - BLK


def test_checkpoint_slots_alternate_and_newest_valid_wins():
    disk, f, log = _new_log()
    rng = random.Random(22)
    cps = []
    for _ in range(5):
        mtrs = _write_mtrs(log, rng, 4)
        log.write_checkpoint(mtrs[1][1])
        cps.append(mtrs[1][1])
    # numbers 0 .. 5 were written; 4 is in slot 1, 5 in slot 2
    c = L.read_checkpoints(f)
    assert [(x.no, x.lsn, x.slot) for x in c] == [(5, cps[-1], L.LOG_CHECKPOINT_2),
                                                  (4, cps[-2], L.LOG_CHECKPOINT_1)]
    assert c[0].offset == log.offset_of(cps[-1] - cps[-1] % BLK)
    # a corrupt newest slot falls back to the other one
    raw = bytearray(f.pread(BLK, L.LOG_CHECKPOINT_2))
    raw[10] ^= 0xFF
    f.pwrite(bytes(raw), L.LOG_CHECKPOINT_2)
    c = L.read_checkpoints(f)
    assert [(x.no, x.lsn) for x in c] == [(4, cps[-2])]
    res = L.scan(f, 64 * 1024, c[0])
    assert res.stop == L.STOP_END and res.recovered_lsn == log.end_lsn
    assert res.mtrs[0].start_lsn == cps[-2]
    # both slots bad: nothing to recover from
    f.pwrite(bytes(BLK), L.LOG_CHECKPOINT_1)
    assert L.read_checkpoints(f) == []


def test_engine_falls_back_to_the_older_checkpoint_slot():
    disk = SimDisk()
    cfg = _small_config(log_file_size=1 << 20)
    eng = Engine.create(disk, cfg)
    eng.create_table("t")
    expect = {}
    for r in range(4):
        trx = eng.begin()
        for k in range(r * 20, r * 20 + 20):
            trx.insert("t", k, b"%d" % k * 20)
            expect[k] = b"%d" % k * 20
        trx.commit()
        if r == 1:
            eng.checkpoint()
    ck = L.read_checkpoints(eng.log.file)
    newest = ck[0]
    image = disk.live_image()                                   # a process kill
    log_img = bytearray(image.files["ib_logfile0"])
    log_img[newest.slot + 3] ^= 0xFF
    image.files["ib_logfile0"] = bytes(log_img)
    eng2 = Engine.open(SimDisk(image=image), cfg)
    assert eng2.stats["recv_scan_stop_end-of-log"] == 1
    assert eng2.log.checkpoint_no == ck[1].no + 1               # recovery checkpointed once
    assert eng2.all_rows("t") == expect
    # both slots destroyed: refuse to start
    log_img[ck[1].slot + 3] ^= 0xFF
    image.files["ib_logfile0"] = bytes(log_img)
    with pytest.raises(RecoveryError):
        Engine.open(SimDisk(image=image), cfg)


# --------------------------------------------------------------------------------------------
# engine.config
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("ps", PAGE_SIZES)
def test_config_every_documented_page_size_is_accepted(ps):
    cfg = EngineConfig(page_size=ps, log_file_size=EngineConfig.min_log_file_size(ps))
    assert cfg.page_size == ps
    assert EngineConfig.from_json(cfg.to_json()) == cfg
    assert cfg.log_free_check_margin * 4 + 2048 == EngineConfig.min_log_file_size(ps)


def test_config_page_sizes_are_4k_to_64k():
    assert PAGE_SIZES == (4096, 8192, 16384, 32768, 65536)


@pytest.mark.parametrize("ps", [0, 512, 1024, 2048, 4095, 12288, 131072])
def test_config_invalid_page_size_raises(ps):
    with pytest.raises(ConfigError):
        EngineConfig(page_size=ps)


@pytest.mark.parametrize("ps", PAGE_SIZES)
def test_config_too_small_log_file_raises(ps):
    m = EngineConfig.min_log_file_size(ps)
    with pytest.raises(ConfigError):
        EngineConfig(page_size=ps, log_file_size=m - 512)
    with pytest.raises(ConfigError):
        EngineConfig(page_size=ps, log_file_size=m + 1)         # not a multiple of 512
    EngineConfig(page_size=ps, log_file_size=m)


@pytest.mark.parametrize("kw", [dict(buffer_pool_pages=15), dict(flush_log_at_trx_commit=3),
                                dict(flush_log_at_trx_commit=-1),
                                dict(doublewrite_batch_pages=0),
                                dict(doublewrite_batch_pages=65),
                                dict(n_rollback_segments=0), dict(n_rollback_segments=128),
                                dict(page_cleaner_batch=0),
                                dict(page_cleaner_batch=17, doublewrite_batch_pages=16),
                                dict(watchdog_page_accesses=0)])
def test_config_other_bad_settings_raise(kw):
    with pytest.raises(ConfigError):
        EngineConfig(**kw)


def test_config_error_is_a_value_error_and_from_json_rejects_unknown_keys():
    assert issubclass(ConfigError, ValueError)
    with pytest.raises(ConfigError):
        EngineConfig.from_json({"page_size": 4096, "no_such_setting": 1})
    with pytest.raises(ConfigError):
        EngineConfig.from_json({"page_size": 3000})
    assert EngineConfig.from_json({}) == EngineConfig()


def test_engine_refuses_a_mismatched_page_size():
    disk, cfg = _clean_db(cfg=_small_config(log_file_size=1 << 18))
    other = _small_config(page_size=8192, log_file_size=1 << 18)
    with pytest.raises(RecoveryError):
        Engine.open(disk, other)
    # and a log file size that does not match the configuration
    with pytest.raises(RecoveryError):
        Engine.open(disk, _small_config(log_file_size=1 << 19))
    assert Engine.open(disk, cfg).all_rows("t")[19] == b"row19"


def test_log_scan_ignores_a_block_left_by_an_earlier_crashed_run():
    """Crash 1 keeps two blocks of a three-block write (mtr A incomplete); recovery resumes at
    the next block; run 2's mtr B is written over that stale block and the next one, and crash 2
    loses the first of them.  The stale block (A's bytes, old checkpoint number) must not be
    glued to B's block into a phantom mtr: the scan ends there and A and B are both dropped."""
    size = 2048 + 64 * BLK
    disk, f, log = _new_log(size)
    m0 = ml.encode_mtr([ml.write_string(1, 3, 0, b"M" * 300)])
    _, e0 = log.append(m0)
    hdr = len(ml.encode_mtr([ml.write_string(1, 4, 0, b"")]))
    room = (L.LOG_BLOCK_CHECKSUM - e0 % BLK) + L.LOG_BLOCK_PAYLOAD + 20
    _, ea = log.append(ml.encode_mtr([ml.write_string(1, 4, 0, b"A" * (room - hdr))]))
    log.write_up_to(ea, flush=False)
    w = disk.trace.ops[-1]
    assert len(w.data) == 3 * BLK
    b = CrashStateBuilder(disk.base, disk.trace, disk.profile)
    img = b.build(CrashPlan(len(disk.trace), ((len(disk.trace) - 1,
                                               Choice(TEAR, (0, 1))),)))   # 512-byte units
    disk1 = SimDisk(image=img)
    f1 = disk1.open("ib_logfile0")
    ck = L.read_checkpoints(f1)[0]
    r1 = L.scan(f1, size, ck)
    assert [m.end_lsn for m in r1.mtrs] == [e0]
    log2 = LogSys(f1, size)
    log2.restart_at(r1.recovered_lsn, ck)
    log2.write_checkpoint(log2.end_lsn)
    _, eb = log2.append(ml.encode_mtr([ml.write_string(1, 5, 0, b"B" * (L.LOG_BLOCK_PAYLOAD
                                                                        + 20 - hdr))]))
    log2.write_up_to(eb, flush=False)
    w2 = len(disk1.trace) - 1
    assert len(disk1.trace.ops[w2].data) == 2 * BLK
    b2 = CrashStateBuilder(disk1.base, disk1.trace, disk1.profile)
    img2 = b2.build(CrashPlan(len(disk1.trace), ((w2, Choice(TEAR, (1,))),)))
    f2 = SimDisk(image=img2).open("ib_logfile0")
    r2 = L.scan(f2, size, L.read_checkpoints(f2)[0])
    assert r2.mtrs == [] and r2.stop == L.STOP_STALE
