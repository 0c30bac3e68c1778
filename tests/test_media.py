"""Media faults (faultfs.media): each kind's documented effect on small hand-checked traces,
their place in crash states, schedule validation and determinism; the engine stopping on an IO
error and recovering its crash states; and the fault-model mutants found only with their fault.
"""
from __future__ import annotations

import errno
from unittest import mock

import pytest

from tornpage.campaigns import crashcheck, runner
from tornpage.campaigns.cli import _required_probes
from tornpage.campaigns.mutants import planted
from tornpage.campaigns.runner import CampaignConfig, run_campaign
from tornpage.campaigns.workload import (MEDIA_ROTATION, TABLE, WorkloadSettings,
                                         media_schedule_strategy, row_value, run_workload)
from tornpage.checkers.verdict import LOST
from tornpage.engine import Engine, EnginePanic
from tornpage.engine.errors import EngineIOError
from tornpage.faultfs import (DROP, TEAR, Choice, CrashPlan, CrashPlanError, CrashStateBuilder, FaultSpec,
                     InjectedIOError, MediaFault, MediaFaultError, SimDisk, pending_ops,
                     search)
from tornpage.faultfs.media import KINDS, SECTOR, flip_bit, parse_schedule, sectors, whole_sectors
from tornpage.faultfs.trace import Write

PATTERN = bytes(range(256)) * 8          # 2048 bytes, four sectors, every byte distinct per 256


def durable_file(profile: str = "sector512", data: bytes = PATTERN, path: str = "a"):
    """A disk whose file ``path`` (holding ``data``) and its name are durable; (disk, file)."""
    disk = SimDisk(profile)
    f = disk.open(path, create=True)
    disk.fsync_dir()
    f.pwrite(data, 0)
    f.fsync()
    return disk, f


def builder(disk: SimDisk) -> CrashStateBuilder:
    return CrashStateBuilder(disk.base, disk.trace, disk.profile)


def new_ops(disk: SimDisk, since: int) -> list:
    return disk.trace.ops[since:]


def bits_set(b: bytes) -> int:
    return sum(bin(x).count("1") for x in b)


def xor(a: bytes, b: bytes) -> bytes:
    assert len(a) == len(b)
    return bytes(x ^ y for x, y in zip(a, b))


# -- bitflip -------------------------------------------------------------------------------------

def test_bitflip_flips_exactly_one_bit_of_the_at_th_read():
    """Read #1 (0-based) returns the data with bit ``arg % (8*len)`` flipped; reads #0 and #2
    are clean, the disk is unchanged, and the fault is one MediaFault op in the trace."""
    disk, f = durable_file()
    n0 = len(disk.trace)
    arg = 8 * 1024 * 3 + 8 * 100 + 5     # % 8192 -> bit 805: byte 100 of the read, bit 5
    disk.arm([FaultSpec("bitflip", 1, arg)])
    r0 = f.pread(1024, 512)
    r1 = f.pread(1024, 512)
    r2 = f.pread(1024, 512)
    want = PATTERN[512:1536]
    assert r0 == want and r2 == want
    diff = xor(r1, want)
    assert bits_set(diff) == 1
    assert diff[100] == 1 << 5
    assert disk.read_file("a") == PATTERN               # the media is fine
    assert f.pread(2048, 0) == PATTERN                  # a re-read is clean
    assert new_ops(disk, n0) == [MediaFault("bitflip", 0, "a", 612, 1,
                                            "bit 5 of byte 612 flipped")]
    assert disk.faults_injected == 1


def test_bitflip_bit_is_taken_modulo_the_bytes_actually_read():
    """A short read near EOF returns 48 bytes, so the bit is ``arg % 384``."""
    disk, f = durable_file()
    disk.arm([FaultSpec("bitflip", 0, 384 * 7 + 9)])   # bit 9: byte 1, bit 1
    got = f.pread(100, 2000)
    want = PATTERN[2000:]
    assert len(got) == 48
    assert xor(got, want) == bytes([0, 2]) + bytes(46)
    assert flip_bit(want, 384 * 7 + 9) == (got, 9)
    assert isinstance(disk.trace.ops[-1], MediaFault) and disk.trace.ops[-1].offset == 2001


def test_no_fault_before_arming_and_counting_starts_at_arm():
    """IOs before ``arm`` are not counted: the fault hits the at-th read after arming."""
    disk, f = durable_file()
    for _ in range(5):
        f.pread(16, 0)
    disk.arm([FaultSpec("bitflip", 0, 0)])
    assert f.pread(1, 0) == bytes([PATTERN[0] ^ 1])
    assert f.pread(1, 0) == PATTERN[:1]


# -- sector-error -------------------------------------------------------------------------------

def sector_error_disk(profile: str = "sector512"):
    """A durable 2048-byte file whose sector 3 went bad on the first read after arming
    (``arg`` 1 picks the second sector of the read of sectors 2-3)."""
    disk, f = durable_file(profile)
    disk.arm([FaultSpec("sector-error", 0, 1)])
    with pytest.raises(OSError) as exc:
        f.pread(1024, 1024)
    assert exc.value.errno == errno.EIO
    assert isinstance(exc.value, InjectedIOError)
    return disk, f


def test_sector_error_fails_the_read_and_every_later_read_of_that_sector():
    disk, f = sector_error_disk()
    assert disk.trace.ops[-1] == MediaFault("sector-error", 0, "a", 3 * SECTOR, SECTOR,
                                            "sector 3 unreadable")
    for n, off in [(1, 3 * SECTOR + 100), (512, 3 * SECTOR), (10, 3 * SECTOR - 5), (2048, 0)]:
        with pytest.raises(OSError) as exc:
            f.pread(n, off)
        assert exc.value.errno == errno.EIO and isinstance(exc.value, InjectedIOError)
    assert f.pread(1536, 0) == PATTERN[:1536]            # sectors 0-2 are fine
    assert f.pread(512, 2 * SECTOR) == PATTERN[1024:1536]
    assert disk.faults_injected == 1                     # later failures are not new faults


def test_a_write_covering_the_bad_sector_clears_it():
    disk, f = sector_error_disk()
    f.pwrite(b"N" * 512, 3 * SECTOR)
    assert f.pread(2048, 0) == PATTERN[:1536] + b"N" * 512


def test_a_write_covering_part_of_the_bad_sector_does_not_clear_it():
    """A drive rewrites (remaps) whole sectors only: a partial write cannot bring back the
    unreadable rest of the sector, neither while running nor in a crash state."""
    disk, f = sector_error_disk()
    f.pwrite(b"n" * 10, 3 * SECTOR + 100)
    with pytest.raises(OSError):
        f.pread(512, 3 * SECTOR)
    f.pwrite(b"M" * 600, 2 * SECTOR + 400)              # covers 2 partly, 3 only partly too
    with pytest.raises(OSError):
        f.pread(1, 3 * SECTOR)
    img = builder(disk).build(CrashPlan(len(disk.trace)))
    assert img.bad_sectors == {"a": frozenset({3})}


def test_sector_error_is_in_the_crash_image_after_the_fault_only():
    """The crash image after the fault carries the bad sector (a SimDisk over it fails to read
    it, and reads the others); a crash before the fault has no bad sector."""
    disk, f = sector_error_disk()
    fault_at = len(disk.trace) - 1
    b = builder(disk)
    after = b.build(CrashPlan(len(disk.trace)))
    assert after.bad_sectors == {"a": frozenset({3})}
    assert after.files["a"] == PATTERN
    assert after == disk.live_image()                    # keep-all is what the program sees
    before = b.build(CrashPlan(fault_at))
    assert before.bad_sectors == {}
    g = SimDisk(image=after).open("a")
    with pytest.raises(OSError) as exc:
        g.pread(1, 3 * SECTOR + 511)
    assert exc.value.errno == errno.EIO
    assert g.pread(1536, 0) == PATTERN[:1536]
    assert SimDisk(image=before).open("a").pread(2048, 0) == PATTERN


def test_bad_sector_follows_the_file_through_a_rename():
    disk, f = sector_error_disk()
    disk.rename("a", "b")
    disk.fsync_dir()
    img = builder(disk).build(CrashPlan(len(disk.trace)))
    assert img.bad_sectors == {"b": frozenset({3})}
    with pytest.raises(OSError):
        SimDisk(image=img).open("b").pread(512, 3 * SECTOR)


def test_crash_states_of_a_write_over_a_bad_sector():
    """A pending write covering sectors 2-3 after sector 3 went bad: kept, it clears the sector;
    dropped, or torn so that only the unit of sector 2 arrives, the sector stays bad."""
    disk, f = sector_error_disk()
    f.pwrite(b"W" * 1024, 2 * SECTOR)
    w = len(disk.trace) - 1
    end = len(disk.trace)
    b = builder(disk)
    assert b.pending(end) == [w]

    def bad(*choices):
        return b.build(CrashPlan(end, tuple(choices))).bad_sectors

    assert bad() == {}
    assert bad((w, Choice(DROP))) == {"a": frozenset({3})}
    assert bad((w, Choice(TEAR, (0,)))) == {"a": frozenset({3})}      # only sector 2 written
    assert bad((w, Choice(TEAR, (1,)))) == {}                         # sector 3 rewritten
    img = b.build(CrashPlan(end, ((w, Choice(TEAR, (0,))),)))
    assert img.files["a"] == PATTERN[:1024] + b"W" * 512 + PATTERN[1536:]
    # the write was issued while running, so the program reads it back
    assert f.pread(2048, 0) == PATTERN[:1024] + b"W" * 1024


def test_nonatomic_zero_filled_unit_rewrites_the_sector():
    """On a non-atomic device a lost unit filled with zeros was written by the device, so that
    sector is readable (zeros); a lost unit showing the old contents was not written."""
    disk, f = sector_error_disk("nonatomic512")
    f.pwrite(b"W" * 1024, 2 * SECTOR)
    w, end = len(disk.trace) - 1, len(disk.trace)
    b = builder(disk)
    zeros = b.build(CrashPlan(end, ((w, Choice(TEAR, (0,), "zeros")),)))
    assert zeros.bad_sectors == {}
    assert zeros.files["a"][1536:] == bytes(512)
    old = b.build(CrashPlan(end, ((w, Choice(TEAR, (0,), "old")),)))
    assert old.bad_sectors == {"a": frozenset({3})}


# -- eio-write and enospc -----------------------------------------------------------------------

def test_eio_write_writes_nothing():
    disk, f = durable_file()
    disk.arm([FaultSpec("eio-write", 1)])
    f.pwrite(b"0" * 10, 0)                               # write #0: fine
    n0 = len(disk.trace)
    before = disk.read_file("a")
    with pytest.raises(OSError) as exc:
        f.pwrite(b"1" * 100, 2000)                       # write #1 (extending): fails
    assert exc.value.errno == errno.EIO and isinstance(exc.value, InjectedIOError)
    assert disk.read_file("a") == before and f.size() == 2048
    ops = new_ops(disk, n0)
    assert len(ops) == 1 and isinstance(ops[0], MediaFault)
    assert (ops[0].kind, ops[0].offset, ops[0].length) == ("eio-write", 2000, 100)
    f.pwrite(b"2" * 10, 20)                              # write #2: fine
    assert disk.read_file("a") == b"0" * 10 + PATTERN[10:20] + b"2" * 10 + PATTERN[30:]
    assert [type(op) for op in new_ops(disk, n0)] == [MediaFault, Write]


def test_enospc_counts_only_file_extending_writes():
    disk, f = durable_file(data=PATTERN[:1024])
    disk.arm([FaultSpec("enospc", 1)])
    f.pwrite(b"a" * 100, 0)          # overwrite: not counted
    f.pwrite(b"b" * 24, 1000)        # ends exactly at EOF: not extending
    f.pwrite(b"c" * 512, 1024)       # extending write #0: fine
    f.pwrite(b"d" * 512, 0)          # overwrite
    assert disk.faults_injected == 0
    n0 = len(disk.trace)
    image = disk.read_file("a")
    with pytest.raises(OSError) as exc:
        f.pwrite(b"e" * 10, 1530)    # extending write #1: ENOSPC
    assert exc.value.errno == errno.ENOSPC and isinstance(exc.value, InjectedIOError)
    assert disk.read_file("a") == image and f.size() == 1536
    ops = new_ops(disk, n0)
    assert len(ops) == 1 and ops[0].kind == "enospc"
    f.pwrite(b"f" * 10, 4000)        # extending write #2 (with a gap): fine
    assert f.size() == 4010


def test_enospc_never_fires_on_overwrites():
    disk, f = durable_file()
    disk.arm([FaultSpec("enospc", 0)])
    for i in range(6):
        f.pwrite(b"x" * 100, i * 100)
    assert disk.faults_injected == 0
    assert not any(isinstance(op, MediaFault) for op in disk.trace.ops)


# -- eio-fsync ------------------------------------------------------------------------------------

def fsync_disk(fail: bool):
    """#0 create a, #1 fsync_dir, #2 write A, #3 fsync (durable); then write B (pending), an
    fsync that fails when ``fail``, a successful fsync, write C and a successful fsync."""
    disk = SimDisk()
    f = disk.open("a", create=True)
    disk.fsync_dir()
    f.pwrite(b"A" * 512, 0)
    f.fsync()
    if fail:
        disk.arm([FaultSpec("eio-fsync", 0)])
    f.pwrite(b"B" * 512, 512)
    wb = len(disk.trace) - 1
    if fail:
        with pytest.raises(OSError) as exc:
            f.fsync()
        assert exc.value.errno == errno.EIO and isinstance(exc.value, InjectedIOError)
        assert disk.trace.ops[-1].kind == "eio-fsync"
    else:
        f.fsync()
    assert f.pread(1024, 0) == b"A" * 512 + b"B" * 512    # still in the page cache
    f.fsync()                                             # succeeds
    after_retry = len(disk.trace)
    f.pwrite(b"C" * 512, 1024)
    wc = len(disk.trace) - 1
    f.fsync()
    return disk, wb, wc, after_retry


def test_eio_fsync_leaves_the_write_pending_forever():
    """After a failed fsync the write it covered stays pending even past later successful
    fsyncs of the file (Linux marks the failed pages clean); a crash may lose it."""
    disk, wb, wc, after_retry = fsync_disk(fail=True)
    prof = disk.profile
    assert pending_ops(disk.trace, after_retry, prof) == [wb]
    assert pending_ops(disk.trace, len(disk.trace), prof) == [wb]        # C is durable
    b = builder(disk)
    lost = b.build(CrashPlan(len(disk.trace), ((wb, Choice(DROP)),)))
    assert lost.files["a"] == b"A" * 512 + bytes(512) + b"C" * 512
    early = b.build(CrashPlan(after_retry, ((wb, Choice(DROP)),)))
    assert early.files["a"] == b"A" * 512


def test_without_the_failure_the_write_is_durable():
    disk, wb, wc, after_retry = fsync_disk(fail=False)
    assert pending_ops(disk.trace, after_retry, disk.profile) == []
    assert pending_ops(disk.trace, len(disk.trace), disk.profile) == []
    with pytest.raises(CrashPlanError):
        builder(disk).build(CrashPlan(len(disk.trace), ((wb, Choice(DROP)),)))


def test_eio_fsync_affects_only_its_file_and_earlier_syncs_still_hold():
    disk = SimDisk()
    a = disk.open("a", create=True)
    bf = disk.open("b", create=True)
    disk.fsync_dir()
    a.pwrite(b"1" * 512, 0)
    a.fsync()                                  # durable before the failure
    w1 = len(disk.trace) - 2
    a.pwrite(b"2" * 512, 0)
    w2 = len(disk.trace) - 1
    bf.pwrite(b"b" * 512, 0)
    wbf = len(disk.trace) - 1
    disk.arm([FaultSpec("eio-fsync", 0)])
    with pytest.raises(OSError):
        a.fsync()
    bf.fsync()
    a.fsync()
    pend = pending_ops(disk.trace, len(disk.trace), disk.profile)
    assert pend == [w2]
    assert w1 not in pend and wbf not in pend
    img = builder(disk).build(CrashPlan(len(disk.trace), ((w2, Choice(DROP)),)))
    assert img.files == {"a": b"1" * 512, "b": b"b" * 512}


def test_eio_fsync_is_no_barrier_on_any_power_loss_device():
    for profile in ("sector4k", "atomic16k", "ordered", "nonatomic512"):
        disk = SimDisk(profile)
        f = disk.open("a", create=True)
        disk.fsync_dir()
        f.pwrite(b"x" * 4096, 0)
        disk.arm([FaultSpec("eio-fsync", 0)])
        with pytest.raises(OSError):
            f.fsync()
        f.fsync()
        assert pending_ops(disk.trace, len(disk.trace), disk.profile) == [2], profile
    disk = SimDisk("process-kill")
    f = disk.open("a", create=True)
    f.pwrite(b"x", 0)
    disk.arm([FaultSpec("eio-fsync", 0)])
    with pytest.raises(OSError):
        f.fsync()
    assert pending_ops(disk.trace, len(disk.trace), disk.profile) == []


# -- schedules ------------------------------------------------------------------------------------

@pytest.mark.parametrize("args", [("nope", 0, 0), ("bitflip", -1, 0), ("eio-fsync", 0, -3),
                                  ("enospc", 1.0, 0), ("bitflip", "1", 0), ("", 0, 0)])
def test_faultspec_rejects_bad_values(args):
    with pytest.raises(MediaFaultError):
        FaultSpec(*args)


@pytest.mark.parametrize("v", ["bitflip", None, 3, ["bitflip", 0], ["bitflip", 0, 0, 0],
                               {"kind": "bitflip", "at": 0, "arg": 0}, ["nope", 0, 0],
                               ["bitflip", -1, 0]])
def test_faultspec_from_json_rejects_wrong_shapes(v):
    with pytest.raises(MediaFaultError):
        FaultSpec.from_json(v)


@pytest.mark.parametrize("v", ["bitflip", {"a": 1}, None, 5, [["bitflip", 0]], [["x", 0, 0]]])
def test_parse_schedule_rejects_malformed(v):
    with pytest.raises(MediaFaultError):
        parse_schedule(v)
    assert issubclass(MediaFaultError, ValueError)


def test_schedule_round_trip_and_io_classes():
    raw = [["bitflip", 0, 5], ["sector-error", 3, 1], ["eio-write", 2, 0], ["enospc", 0, 0],
           ["misdirected", 4, 2], ["eio-fsync", 1, 0], ["at-rest-corruption", 5, 9],
           ["bit-rot", 2, 3]]
    sched = parse_schedule(raw)
    assert [f.to_json() for f in sched] == raw
    assert parse_schedule([f.to_json() for f in sched]) == sched
    assert parse_schedule(tuple(tuple(x) for x in raw)) == sched
    assert [f.io_class for f in sched] == ["read", "read", "write", "write", "write", "fsync",
                                           "write", "read"]
    assert set(KINDS) == {x[0] for x in raw}
    assert parse_schedule([]) == ()
    s = WorkloadSettings(media_faults=(("eio-fsync", 1, 0),))
    assert WorkloadSettings.from_json(s.to_json()) == s
    assert s.schedule() == (FaultSpec("eio-fsync", 1, 0),)


def test_sectors_helper():
    assert list(sectors(0, 512)) == [0]
    assert list(sectors(511, 2)) == [0, 1]
    assert list(sectors(1024, 1024)) == [2, 3]
    assert list(sectors(100, 0)) == []
    assert list(whole_sectors(0, 512)) == [0]
    assert list(whole_sectors(1, 1023)) == [1]
    assert list(whole_sectors(100, 1000)) == [1]
    assert list(whole_sectors(600, 10)) == []
    assert list(whole_sectors(512, 1536)) == [1, 2, 3]
    assert list(whole_sectors(100, 0)) == []


# -- determinism ----------------------------------------------------------------------------------

def _program(schedule) -> SimDisk:
    """A fixed program that survives its IO errors; returns its disk."""
    disk = SimDisk()
    f = disk.open("a", create=True)
    disk.fsync_dir()
    disk.arm(schedule)
    for i in range(6):
        for call in (lambda: f.pwrite(bytes([i]) * 700, i * 300),
                     lambda: f.pread(1000, i * 200), f.fsync):
            try:
                call()
            except OSError:
                disk.mark("io-error", i=i)
    return disk


def test_same_schedule_same_trace_hash():
    sched = (FaultSpec("bitflip", 2, 77), FaultSpec("sector-error", 4, 1),
             FaultSpec("eio-write", 3), FaultSpec("enospc", 1), FaultSpec("eio-fsync", 2))
    h1, h2 = _program(sched).trace_hash(), _program(sched).trace_hash()
    assert h1 == h2
    assert _program(sched).faults_injected == 5
    assert _program(()).trace_hash() != h1
    assert _program(sched[:4]).trace_hash() != h1
    assert _program((FaultSpec("bitflip", 2, 78),) + sched[1:]).trace_hash() != h1


# -- the engine ------------------------------------------------------------------------------------

STEPS = [["update_non_index", 0, 3, 5], ["commit", 0], ["update_non_index", 1, 4, 6], ["commit", 1]]


def test_engine_stops_on_a_failed_fsync_and_refuses_further_work():
    s = WorkloadSettings(table_size=20)
    disk = SimDisk()
    eng = Engine.create(disk, s.engine_config())
    eng.create_table(TABLE)
    t = eng.begin()
    for i in range(1, 21):
        t.insert(TABLE, i, row_value(i, i, 0))
    t.commit()
    eng.make_checkpoint(flush=True)
    disk.arm([FaultSpec("eio-fsync", 0)])
    t = eng.begin()
    t.update(TABLE, 3, row_value(3, 3, 9))
    with pytest.raises(EngineIOError) as exc:
        t.commit()
    assert crashcheck.caused_by_media(exc.value)
    assert eng.panicked
    assert isinstance(disk.trace.ops[-1], MediaFault)
    n = len(disk.trace)
    for work in (eng.begin, lambda: eng.run_background(3), eng.checkpoint, t.rollback,
                 lambda: t.update(TABLE, 4, row_value(4, 4, 9))):
        with pytest.raises((EnginePanic, EngineIOError)):
            work()
    assert len(disk.trace) == n                  # nothing more reached the disk


def test_crash_states_after_a_failed_fsync_pass_the_oracle():
    """The workload stops at the failed commit fsync; every crash state after the setup
    (each position; every plan where the space is small) recovers to a state the oracle
    accepts, the unacknowledged commit being either in or out."""
    s = WorkloadSettings(table_size=20, media_faults=(("eio-fsync", 0, 0),))
    run = run_workload(s, STEPS)
    assert run.stopped and run.stopped.startswith("EngineIOError")
    assert crashcheck.media_fault_probes(run) == {"media_eio_fsync": 1,
                                                  "engine_stopped_on_media_fault": 1}
    assert not run.trace.markers("commit-ack")
    b = crashcheck.builder_for(run)
    checked = 0
    for pos in range(run.setup_end + 1, len(run.trace) + 1):
        assert search.space_size(b, pos) <= 64
        for plan in search.enumerate_plans(b, pos):
            res = crashcheck.check_crash_state(run, plan)
            assert res.verdict.ok, (plan, res.verdict.explain())
            checked += 1
    assert checked >= 4 + 1                          # the lost/torn log write included


def test_fsync_retry_mutant_loses_an_acknowledged_commit_on_the_same_workload():
    """With the retry mutant the engine acknowledges the commit after the failed fsync; the
    crash state that loses the (forever pending) log write loses it: L."""
    s = WorkloadSettings(table_size=20, media_faults=(("eio-fsync", 0, 0),))
    with planted("fsync-retry-after-eio"):
        run = run_workload(s, STEPS)
        assert run.stopped is None and len(run.trace.markers("commit-ack")) == 2
        b = crashcheck.builder_for(run)
        end = len(run.trace)
        verdicts = [crashcheck.check_crash_state(run, p).verdict
                    for p in search.enumerate_plans(b, end)]
    assert verdicts[0].ok                                 # keeping everything is fine
    assert any(not v.ok and v.kind == LOST for v in verdicts)
    # without the fault the same mutant changes nothing: nothing is pending at the end
    with planted("fsync-retry-after-eio"):
        clean = run_workload(WorkloadSettings(table_size=20), STEPS)
    assert crashcheck.builder_for(clean).pending(len(clean.trace)) == []


# -- mutants found only under their fault model --------------------------------------------------

def campaign(tmp_path, mutant, examples, media_faults=False, device="sector512", seed=0):
    cfg = CampaignConfig(seed=seed, budget=None, examples=examples, media_faults=media_faults,
                         mutant=mutant, settings=WorkloadSettings(device=device),
                         artifacts_dir=str(tmp_path), check_determinism=False)
    return run_campaign(cfg)


def test_fsync_retry_after_eio_found_with_media_faults(tmp_path):
    # seed 0 finds it in its 2nd workload (measured)
    res = campaign(tmp_path, "fsync-retry-after-eio", 40, media_faults=True, seed=0)
    assert len(res.findings) == 1
    assert res.findings[0].verdict["kind"] in ("L", "C", "R")
    assert res.probes["media_eio_fsync"] >= 1


def test_fsync_retry_after_eio_not_found_without_media_faults(tmp_path):
    res = campaign(tmp_path, "fsync-retry-after-eio", 8, media_faults=False)
    assert res.findings == []
    assert res.workloads == 8 and res.crash_states > 0
    assert not any(k.startswith("media_") for k in res.probes)


def test_ignore_write_errors_not_found_without_media_faults(tmp_path):
    """The seam only matters when a write fails: without media faults the mutant is inert
    (test_campaign checks it is found with them)."""
    res = campaign(tmp_path, "ignore-write-errors", 8, media_faults=False)
    assert res.findings == []
    assert res.workloads == 8 and res.crash_states > 0


def test_no_dir_fsync_on_create_found_on_the_default_device(tmp_path):
    res = campaign(tmp_path, "no-dir-fsync-on-create", 4)
    assert len(res.findings) == 1
    assert "sbtest1.ibd" in res.findings[0].verdict["summary"]


def test_no_dir_fsync_on_create_not_found_under_process_kill(tmp_path):
    res = campaign(tmp_path, "no-dir-fsync-on-create", 8, device="process-kill")
    assert res.findings == []
    assert res.workloads == 8 and res.crash_states > 0


# -- at-rest corruption --------------------------------------------------------------------------

def corrupted_disk(arg: int = 2 * 83, profile: str = "sector512"):
    """A durable file; the next write (1024 bytes 'W' over sectors 1-2) is stored with one bit
    wrong: ``arg % 2`` picks sector 1 + 0 or 1, ``(arg // 2) % 4096`` the bit (default: sector
    1, bit 83 of the write's bytes there: byte 10, bit 3)."""
    disk, f = durable_file(profile)
    disk.arm([FaultSpec("at-rest-corruption", 0, arg)])
    assert f.pwrite(b"W" * 1024, SECTOR) == 1024          # acknowledged: no error
    return disk, f


def test_at_rest_corruption_stores_one_bit_wrong_and_every_read_sees_it():
    disk, f = corrupted_disk()
    stored = bytearray(b"W" * 1024)
    stored[10] ^= 1 << 3
    want = PATTERN[:512] + bytes(stored) + PATTERN[1536:]
    for _ in range(3):                                   # not transient: every read
        assert f.pread(2048, 0) == want
    fault, write = disk.trace.ops[-2:]
    assert fault == MediaFault("at-rest-corruption", 0, "a", 512 + 10, 1,
                               "write of 1024 bytes at 512 stored with bit 3 of byte 522 "
                               "flipped (sector 1 reads back wrong)")
    assert write == Write(0, "a", 512, bytes(stored))     # what the drive stored
    assert bits_set(xor(f.pread(1024, 512), b"W" * 1024)) == 1
    assert disk.faults_injected == 1
    f.pwrite(b"X" * 4, 520)                              # the next write is clean
    assert f.pread(4, 520) == b"XXXX"


def test_at_rest_corruption_picks_the_sector_and_bit_from_arg():
    disk, f = corrupted_disk(arg=1 + 2 * 4095)            # second sector, its last bit
    diff = xor(f.pread(1024, 512), b"W" * 1024)
    assert diff[:1023] == bytes(1023) and diff[1023] == 0x80
    d2, f2 = durable_file()
    d2.arm([FaultSpec("at-rest-corruption", 0, 5)])       # a 10-byte write inside sector 3
    f2.pwrite(b"v" * 10, 3 * SECTOR + 100)
    assert bits_set(xor(f2.pread(10, 3 * SECTOR + 100), b"v" * 10)) == 1
    assert d2.trace.ops[-2].offset == 3 * SECTOR + 100    # 5 % 80 = bit 5 of the first byte


def test_at_rest_corruption_is_in_every_crash_state_that_keeps_the_write():
    disk, f = corrupted_disk()
    w = len(disk.trace) - 1
    damaged = disk.read_file("a")
    b = builder(disk)
    end = len(disk.trace)
    assert b.build(CrashPlan(end)).files["a"] == damaged
    assert b.build(CrashPlan(end, ((w, Choice(DROP)),))).files["a"] == PATTERN
    torn_img = b.build(CrashPlan(end, ((w, Choice(TEAR, (1,))),))).files["a"]
    assert torn_img == PATTERN[:512] + PATTERN[512:1024] + b"W" * 512 + PATTERN[1536:]
    f.fsync()                                           # durable: every later crash keeps it
    b = builder(disk)
    assert b.pending(len(disk.trace)) == []
    assert b.build(CrashPlan(len(disk.trace))).files["a"] == damaged
    assert SimDisk(image=b.build(CrashPlan(len(disk.trace)))).open("a").pread(1024, 512) == \
        damaged[512:1536]
    f.pwrite(b"R" * 512, SECTOR)                        # a rewrite of the sector heals it
    assert builder(disk).build(CrashPlan(len(disk.trace))).files["a"][512:1024] == b"R" * 512


def test_write_verification_catches_at_rest_corruption_at_fsync():
    from tornpage.engine.errors import LostWrite
    from tornpage.engine.os_file import GuardedFile

    class Owner:
        panicked = None

        def _panic(self, msg):
            self.panicked = msg

    disk, _ = durable_file()
    owner = Owner()
    g = GuardedFile(disk.open("a"), owner)
    disk.arm([FaultSpec("at-rest-corruption", 0, 0)])
    g.pwrite(b"Q" * 512, 0)
    with pytest.raises(LostWrite, match="does not read back"):
        g.fsync()
    assert owner.panicked


def test_at_rest_corruption_in_a_workload_stops_the_engine_and_its_crash_states_pass():
    """The engine reads back its writes after each fsync, so it stops on the corruption before
    relying on the write; every crash state (everything kept, each pending operation lost
    alone) at every crash point is then recovered, refused on the damage (accepted), or
    passes."""
    s = WorkloadSettings(buffer_pool_pages=16, log_file_size=196608,
                         media_faults=(("at-rest-corruption", 4, 297),))
    steps = [["checkpoint"], ["bulk_update", 1, 36, 25, 749], ["rollback", 0],
             ["range_select", 0, 20, 14], ["background", 3], ["background", 5]]
    run = run_workload(s, steps)
    assert run.disk.faults_injected == 1
    assert run.stopped and run.stopped.startswith("LostWrite")
    assert crashcheck.media_fault_probes(run)["media_at_rest_corruption"] == 1
    b = crashcheck.builder_for(run)
    fault = next(j for j, op in enumerate(run.trace.ops) if isinstance(op, MediaFault))
    checked = damaged = 0
    for pos in crashcheck.crash_points(run):
        for plan in [CrashPlan(pos)] + [CrashPlan(pos, ((i, Choice(DROP)),))
                                        for i in b.pending(pos)]:
            res = crashcheck.check_crash_state(run, plan)
            assert res.verdict.ok, res.verdict.explain()
            corrupted = crashcheck.at_rest_corruption(run, plan, b.build(plan))
            assert bool(corrupted) == (pos > fault + 1 and plan.choice(fault + 1).kind != DROP)
            damaged += bool(corrupted)
            checked += 1
    assert checked > 6 and damaged > 0


# -- bit rot -------------------------------------------------------------------------------------

def test_bit_rot_decays_a_bit_on_the_media_seen_by_every_later_read():
    """``arg`` 1 + 2 * 100 on a read of sectors 2-3: sector 3, byte 100 of it (offset 1636),
    bit 1636 % 8 = 4; the read itself and every later one return it; no error."""
    disk, f = durable_file()
    disk.arm([FaultSpec("bit-rot", 0, 1 + 2 * 100)])
    want = bytearray(PATTERN)
    want[1636] ^= 1 << 4
    assert f.pread(1024, 1024) == bytes(want[1024:])
    for _ in range(2):
        assert f.pread(2048, 0) == bytes(want)
    assert disk.trace.ops[-1] == MediaFault("bit-rot", 0, "a", 1636, 1,
                                            "bit 4 of byte 1636 decayed on the media (sector 3 "
                                            "reads back wrong from now on)")
    assert disk.faults_injected == 1 and disk.read_file("a") == bytes(want)


def test_bit_rot_is_in_every_crash_state_after_it_whatever_the_byte_holds():
    """After the rot, every crash state carries it: the keep-all state equals the live image,
    and where a pending write of the byte is dropped the rot flips the old byte; a crash
    before the rot has none; a later surviving write of the byte heals it."""
    disk, f = durable_file()
    f.pwrite(b"W" * 512, 3 * SECTOR)                   # pending over sector 3
    w = len(disk.trace) - 1
    disk.arm([FaultSpec("bit-rot", 0, 100)])           # one-sector read: byte 100 of sector 3
    f.pread(512, 3 * SECTOR)
    rot = len(disk.trace) - 1
    b = builder(disk)
    end = len(disk.trace)
    assert b.build(CrashPlan(end)) == disk.live_image()
    assert disk.read_file("a")[1636] == ord("W") ^ (1 << 4)
    old = b.build(CrashPlan(end, ((w, Choice(DROP)),))).files["a"]
    assert old[1636] == PATTERN[1636] ^ (1 << 4) and old[:1636] == PATTERN[:1636]
    assert b.build(CrashPlan(rot, ((w, Choice(DROP)),))).files["a"] == PATTERN
    f.pwrite(b"H" * 1, 1636)
    assert builder(disk).build(CrashPlan(len(disk.trace))).files["a"][1636] == ord("H")


def test_bit_rot_of_a_data_page_stops_the_engine_and_a_refusal_on_it_is_accepted():
    """A page read from disk with a rotten bit fails its checksum: the engine stops; a crash
    state keeping the rot (the page has no copy to repair it from) may be refused, which the
    campaign accepts (probe ``refused_on_at_rest_corruption``), and every other state passes."""
    s = WorkloadSettings(table_size=400, buffer_pool_pages=16, log_file_size=196608,
                         media_faults=(("bit-rot", 2, 12345),))
    steps = [["checkpoint"], ["bulk_update", 1, 36, 25, 749], ["rollback", 0],
             ["range_select", 0, 20, 14], ["background", 3], ["background", 5]]
    run = run_workload(s, steps)
    assert run.stopped and "bad-checksum" in run.stopped and not run.crashed
    assert crashcheck.media_fault_probes(run)["media_bit_rot"] == 1
    rot = next(j for j, op in enumerate(run.trace.ops) if isinstance(op, MediaFault))
    b = crashcheck.builder_for(run)
    refused = 0
    for pos in crashcheck.crash_points(run):
        for plan in [CrashPlan(pos)] + [CrashPlan(pos, ((i, Choice(DROP)),))
                                        for i in b.pending(pos)]:
            res = crashcheck.check_crash_state(run, plan)
            assert res.verdict.ok, res.verdict.explain()
            refused += res.probes.get("refused_on_at_rest_corruption", 0)
            # no write rewrites the rotten page after the rot: every later state keeps it
            assert bool(crashcheck.at_rest_corruption(run, plan, b.build(plan))) == (pos > rot)
    assert refused >= 1


# -- the campaign's media fault rotation ---------------------------------------------------------

def test_each_chunk_draws_its_kind_first_and_a_campaign_of_enough_chunks_draws_every_kind():
    """Chunk i's workloads all begin their schedule with MEDIA_ROTATION[i % 7] (so a 40-workload
    campaign draws every required kind whatever its seed); a second fault, if any, is of any
    kind; ENOSPC is not in the rotation."""
    assert set(MEDIA_ROTATION) == set(KINDS) - {"enospc"}
    cfg = CampaignConfig(seed=3, budget=None, examples=4 * len(MEDIA_ROTATION),
                         media_faults=True, check_determinism=False)
    drawn = {}

    def draw(cfg_, data, chunk=0):
        s, steps, seed = real(cfg_, data, chunk)
        drawn.setdefault(chunk, []).append(s.media_faults)
        return s, [["checkpoint"]], seed          # a trivial workload: the draws are the test

    real = runner._draw_workload
    with mock.patch.object(runner, "_draw_workload", draw):
        run_campaign(cfg)
    assert sorted(drawn) == list(range(len(MEDIA_ROTATION)))
    for chunk, schedules in drawn.items():
        assert len(schedules) >= 4
        for sched in schedules:
            assert sched[0][0] == MEDIA_ROTATION[chunk] and 1 <= len(sched) <= 2
    assert {f[0] for scheds in drawn.values() for sched in scheds for f in sched} \
        >= set(MEDIA_ROTATION)


def test_a_shard_takes_the_kinds_in_turn_over_its_own_chunks():
    """Shard K/N runs chunks K-1, K-1+N, ...: its j-th chunk starts with the j-th kind, so a
    shard count that is a multiple of the rotation's length still draws every kind."""
    n = 2 * len(MEDIA_ROTATION)
    cfg = CampaignConfig(seed=3, budget=None, examples=4 * n * len(MEDIA_ROTATION),
                         media_faults=True, check_determinism=False, shard=(2, n))
    firsts = []

    def draw(cfg_, data, chunk=0):
        s, steps, seed = real(cfg_, data, chunk)
        firsts.append((chunk, s.media_faults[0][0]))
        return s, [["checkpoint"]], seed

    real = runner._draw_workload
    with mock.patch.object(runner, "_draw_workload", draw):
        run_campaign(cfg)
    chunks = sorted({c for c, _ in firsts})
    assert chunks == [1 + j * n for j in range(len(MEDIA_ROTATION))]
    assert {k for _, k in firsts} == set(MEDIA_ROTATION)


def test_an_unknown_first_kind_is_a_typed_error():
    with pytest.raises(MediaFaultError):
        media_schedule_strategy("cosmic-ray")


def test_media_fault_campaigns_require_every_kind_but_not_the_workload_paths():
    settings = WorkloadSettings()
    with_media = _required_probes(settings, None, media_faults=True)
    without = _required_probes(settings, None)
    paths = {"consistent_read_old_version", "btr_page_merge", "log_wrapped",
             "log_free_check_checkpoint", "sec_index_delete_mark", "purge_removed_sec_entry"}
    assert paths <= set(without) and not paths & set(with_media)
    assert {f"media_{k.replace('-', '_')}" for k in MEDIA_ROTATION} <= set(with_media)
    assert "media_enospc" not in with_media
