"""The fault kinds added to complete the fault model, each on a small hand-checked trace, and the
planted bug each one alone finds (misdirected writes, zero- and garbage-filled torn sectors), plus
a device guarantee shown by a mutant it makes harmless (ordered persistence)."""
from __future__ import annotations

import pytest

from tornpage.campaigns import crashcheck
from tornpage.campaigns.mutants import MUTANTS, planted
from tornpage.campaigns.runner import CampaignConfig, run_campaign
from tornpage.campaigns.workload import WorkloadSettings, run_workload
from tornpage.engine import page as P
from tornpage.engine.errors import LostWrite
from tornpage.engine.os_file import GuardedFile
from tornpage.faultfs import DROP, KEEP, Choice, CrashPlan, CrashStateBuilder, FaultSpec, SimDisk
from tornpage.faultfs.media import misdirected_target
from tornpage.faultfs.trace import MediaFault, Write


def _disk_with_file(n_blocks: int = 4):
    d = SimDisk()
    f = d.open("f", create=True)
    for i in range(n_blocks):
        f.pwrite(bytes([0x10 + i]) * 512, i * 512)
    f.fsync()
    return d, f


# -- misdirected writes on the simulated disk ---------------------------------------------------

def test_misdirected_write_lands_arg_lengths_further_on_and_misses_its_target():
    d, f = _disk_with_file()
    d.arm([FaultSpec("misdirected", 0, 1)])          # 1 + 1 % 4 = 2 lengths further on
    assert f.pwrite(b"\xAA" * 512, 0) == 512         # acknowledged: no error
    assert f.pread(512, 0) == b"\x10" * 512          # the target keeps its old data
    assert f.pread(512, 1024) == b"\xAA" * 512       # the victim, two blocks on, is overwritten
    assert f.pread(512, 512) == b"\x11" * 512 and f.pread(512, 1536) == b"\x13" * 512
    fault, write = d.trace.ops[-2:]
    assert isinstance(fault, MediaFault) and fault.kind == "misdirected"
    assert (fault.offset, fault.length) == (1024, 512)
    assert fault.detail == "write of 512 bytes meant for 0 landed at 1024"
    assert isinstance(write, Write) and write.offset == 1024
    assert d.faults_injected == 1


def test_misdirected_write_past_the_end_of_the_file_is_lost():
    d, f = _disk_with_file()
    d.arm([FaultSpec("misdirected", 0, 0)])
    n = len(d.trace)
    assert f.pwrite(b"\xAA" * 512, 1536) == 512      # would land at 2048: past the end
    assert f.size() == 2048 and f.pread(512, 1536) == b"\x13" * 512
    assert len(d.trace) == n + 1 and "lost" in d.trace.ops[-1].detail   # no Write traced
    assert (d.trace.ops[-1].offset, d.trace.ops[-1].length) == (1536, 0)    # landed nowhere


@pytest.mark.parametrize("offset,length,size,arg,want", [
    (0, 512, 4096, 0, 512), (0, 512, 4096, 3, 2048), (0, 512, 4096, 7, 2048),
    (3584, 512, 4096, 0, None), (0, 4096, 4096, 0, None), (0, 0, 4096, 0, None)])
def test_misdirected_target(offset, length, size, arg, want):
    assert misdirected_target(offset, length, size, arg) == want


EARLIER, OTHER_FILE = 1 << 20, 2 << 20        # misdirected arg bits 20+: where it lands


@pytest.mark.parametrize("offset,length,size,arg,want", [
    (2048, 512, 4096, EARLIER, 1536), (2048, 512, 4096, EARLIER + 3, 0),
    (1024, 512, 4096, EARLIER + 2, None),                  # would land before the file's start
    (0, 512, 4096, EARLIER, None), (0, 512, 4096, OTHER_FILE, None),
    (0, 512, 4096, 3 * (1 << 20), 512)])                   # bits 20+ taken modulo 3
def test_misdirected_target_earlier_in_the_file(offset, length, size, arg, want):
    assert misdirected_target(offset, length, size, arg) == want


def test_misdirected_write_lands_earlier_in_the_file():
    d, f = _disk_with_file()
    d.arm([FaultSpec("misdirected", 0, EARLIER + 1)])   # 2 lengths earlier
    assert f.pwrite(b"\xAA" * 512, 1536) == 512
    assert f.pread(2048, 0) == b"\x10" * 512 + b"\xAA" * 512 + b"\x12" * 512 + b"\x13" * 512
    fault, write = d.trace.ops[-2:]
    assert (fault.kind, fault.offset, fault.length) == ("misdirected", 512, 512)
    assert fault.detail == "write of 512 bytes meant for 1536 landed at 512"
    assert write == Write(0, "f", 512, b"\xAA" * 512)


def _two_files():
    d = SimDisk()
    f, g = d.open("f", create=True), d.open("g", create=True)
    d.fsync_dir()
    for h, byte in ((f, 0x10), (g, 0x20)):
        h.pwrite(bytes([byte]) * 2048, 0)
        h.fsync()
    return d, f, g


def test_misdirected_write_lands_in_another_file():
    """The data meant for f lands at the same offset in g (the only other file): f keeps its
    old data, g's range is overwritten, and the trace's MediaFault and Write name g."""
    d, f, g = _two_files()
    base = d.live_image()
    d2 = SimDisk(image=base)
    f2 = d2.open("f")
    d2.arm([FaultSpec("misdirected", 0, OTHER_FILE + 7)])
    assert f2.pwrite(b"\xAA" * 512, 1024) == 512
    assert d2.read_file("f") == b"\x10" * 2048
    assert d2.read_file("g") == b"\x20" * 1024 + b"\xAA" * 512 + b"\x20" * 512
    fault, write = d2.trace.ops[-2:]
    assert (fault.kind, fault.path, fault.offset, fault.length) == ("misdirected", "g", 1024, 512)
    assert fault.detail == "write of 512 bytes meant for f at 1024 landed in g at 1024"
    assert write.path == "g" and write.inode == d2._names["g"] and write.offset == 1024
    # an ordinary pending write of g for a crash: kept, it damages g; dropped, nothing changed
    b = CrashStateBuilder(base, d2.trace, d2.profile)
    w = len(d2.trace) - 1
    assert b.pending(len(d2.trace)) == [w]
    assert b.build(CrashPlan(w + 1)).files["g"] == d2.read_file("g")
    assert b.build(CrashPlan(w + 1, ((w, Choice(DROP)),))) == base
    # a write to g's fsync makes it durable; f's fsync does not
    d2.open("f").fsync()
    assert CrashStateBuilder(base, d2.trace, d2.profile).pending(len(d2.trace)) == [w]


def test_misdirected_write_into_another_file_is_lost_when_it_does_not_fit_or_none_exists():
    d, f, g = _two_files()
    d.arm([FaultSpec("misdirected", 0, OTHER_FILE)])
    f.pwrite(b"\xAA" * 512, 1536 + 512)                 # an append: past g's end
    assert d.trace.ops[-1].length == 0 and "landed nowhere" in d.trace.ops[-1].detail
    assert d.read_file("g") == b"\x20" * 2048
    alone, h = _disk_with_file()
    alone.arm([FaultSpec("misdirected", 0, OTHER_FILE)])
    h.pwrite(b"\xAA" * 512, 0)                          # no other file: lost
    assert alone.trace.ops[-1].length == 0 and h.pread(512, 0) == b"\x10" * 512


def test_write_verification_catches_a_write_misdirected_into_another_file():
    d, f, g = _two_files()
    owner = _Owner()
    gf = GuardedFile(d.open("f"), owner)
    d.arm([FaultSpec("misdirected", 0, OTHER_FILE)])
    gf.pwrite(b"\x03" * 512, 512)
    with pytest.raises(LostWrite, match="write of 512 bytes at 512 of f does not read back"):
        gf.fsync()


def test_a_misdirected_write_is_an_ordinary_pending_write_for_a_crash():
    d, f = _disk_with_file()
    base = d.live_image()
    d2 = SimDisk(image=base)
    f2 = d2.open("f")
    d2.arm([FaultSpec("misdirected", 0, 0)])
    f2.pwrite(b"\xAA" * 512, 0)
    b = CrashStateBuilder(base, d2.trace, d2.profile)
    w = next(i for i, op in enumerate(d2.trace.ops) if isinstance(op, Write))
    end = len(d2.trace)
    kept = b.build(CrashPlan(end, ((w, Choice(KEEP)),))).files["f"]
    lost = b.build(CrashPlan(end, ((w, Choice(DROP)),))).files["f"]
    assert kept[:512] == b"\x10" * 512 and kept[512:1024] == b"\xAA" * 512
    assert lost == base.files["f"]


# -- the engine's defences ------------------------------------------------------------------------

class _Owner:
    panicked = None

    def _panic(self, msg):
        self.panicked = msg


def test_write_verification_catches_a_misdirected_write_at_fsync():
    d, f = _disk_with_file()
    owner = _Owner()
    g = GuardedFile(d.open("f"), owner)
    g.pwrite(b"\x01" * 512, 0)
    g.pwrite(b"\x02" * 256, 256)                      # a later write of an overlapping range
    g.fsync()                                         # reads back 0x01*256 + 0x02*256: fine
    assert owner.panicked is None
    d.arm([FaultSpec("misdirected", 0, 0)])
    g.pwrite(b"\x03" * 512, 512)
    with pytest.raises(LostWrite, match="write of 512 bytes at 512 of f does not read back"):
        g.fsync()
    assert owner.panicked and "lost or misdirected" in owner.panicked


def test_write_verification_after_truncate_compares_what_is_left():
    d, f = _disk_with_file()
    g = GuardedFile(d.open("f"), _Owner())
    g.pwrite(b"\x05" * 1024, 1024)
    g.truncate(1536)
    g.fsync()                                         # no false alarm for the cut-off half


def test_page_verification_names_a_misplaced_page():
    ps = 4096
    frame = bytearray(ps)
    P.init_frame(frame, 3, 7, P.FIL_PAGE_INDEX)
    img = P.stamp_for_write(frame, 9000)
    assert P.verify(img, ps) == P.PAGE_OK
    assert P.verify(img, ps, expect=(3, 7)) == P.PAGE_OK
    assert P.verify(img, ps, expect=(3, 8)) == P.PAGE_MISPLACED
    assert P.verify(img, ps, expect=(4, 7)) == P.PAGE_MISPLACED


# -- the planted bugs each fault kind alone finds ------------------------------------------------

# a workload whose 5th write after setup is a page write that a misdirected write moves onto
# another page (found by a campaign with --mutant no-write-verify --media-faults)
MISDIRECTED = WorkloadSettings(buffer_pool_pages=16, log_file_size=196608,
                               media_faults=(("misdirected", 5, 297),))
MISDIRECTED_STEPS = [["checkpoint"], ["bulk_update", 1, 36, 25, 749], ["rollback", 0],
                     ["range_select", 0, 20, 14], ["background", 3], ["background", 5]]


def test_no_write_verify_is_found_only_because_of_the_misdirected_write():
    with planted("no-write-verify"):
        run = run_workload(MISDIRECTED, MISDIRECTED_STEPS)
        assert run.stopped is None and run.disk.faults_injected == 1
        bad = crashcheck.check_crash_state(run, CrashPlan(len(run.trace), ()))
    assert not bad.verdict.ok and bad.verdict.kind in ("L", "U", "C")
    # the engine as built reads its writes back: it stops, and every crash state passes
    run = run_workload(MISDIRECTED, MISDIRECTED_STEPS)
    assert run.stopped and run.stopped.startswith("LostWrite")
    b = crashcheck.builder_for(run)
    checked = 0
    for pos in crashcheck.crash_points(run):
        # everything kept, then each pending operation lost alone
        plans = [CrashPlan(pos, ())] + [CrashPlan(pos, ((i, Choice(DROP)),))
                                         for i in b.pending(pos)]
        for plan in plans:
            res = crashcheck.check_crash_state(run, plan)
            assert res.verdict.ok, res.verdict.explain()
            checked += 1
    assert checked > 6
    # and without the fault the mutant is inert on the same workload
    with planted("no-write-verify"):
        clean = run_workload(WorkloadSettings(buffer_pool_pages=16, log_file_size=196608),
                             MISDIRECTED_STEPS)
        assert crashcheck.check_crash_state(clean, CrashPlan(len(clean.trace), ())).verdict.ok


def _kind(finding) -> str:
    v = finding.verdict
    return v["kind"] if isinstance(v, dict) else v.kind


def _campaign(tmp_path, mutant, device, examples):
    cfg = CampaignConfig(seed=0, budget=None, examples=examples, mutant=mutant,
                         settings=WorkloadSettings(device=device), artifacts_dir=str(tmp_path),
                         check_determinism=False, shrink=False)
    return run_campaign(cfg)


@pytest.mark.parametrize("mutant,fill", [("lsn-zero-page-trusted", "zeros"),
                                         ("unknown-page-type-unchecked", "garbage")])
def test_torn_fill_mutants_found_on_nonatomic512_only(tmp_path, mutant, fill):
    assert fill in MUTANTS[mutant].needs or "nonatomic512" in MUTANTS[mutant].needs
    found = _campaign(tmp_path, mutant, "nonatomic512", 12)
    assert found.findings, f"{mutant} not found on nonatomic512"
    # the mutant's damage is loud (R/C/E), reached through a torn sector of its fill or (since
    # sectors may also tear inside) a crash during recovery, whose tears are not counted
    assert all(_kind(f) in "RCE" for f in found.findings)
    assert found.probes[f"fault_torn_{fill}"] >= 1 or \
        any("during recovery" in f.explanation for f in found.findings)
    # sector512 keeps old data in lost sectors: the same mutant does no harm there
    clean = _campaign(tmp_path, mutant, "sector512", 12)
    assert clean.findings == [] and clean.probes["doublewrite_repair"] >= 1


def test_ordered_device_makes_the_missing_doublewrite_fsync_harmless(tmp_path):
    """On an ordered device the doublewrite copy persists before the in-place write it
    precedes, so the missing fsync (bug 6) cannot leave a torn page without a copy."""
    assert _campaign(tmp_path, "no-doublewrite-fsync", "sector512", 12).findings
    res = _campaign(tmp_path, "no-doublewrite-fsync", "ordered", 12)
    assert res.findings == [] and res.crash_states > 0


def test_a_misdirected_log_write_voids_only_the_promise_the_os_was_trusted_with():
    """flush_log_at_trx_commit=2 promises a process kill keeps the commit because the OS has
    the log; a drive that misdirects that (unsynced, so never read back) write breaks it.  The
    oracle then promises only what was fsynced, and this crash state passes; the same commit
    without the fault must survive (found by the every-device campaign with media faults)."""
    s = WorkloadSettings(device="process-kill", flush_log_at_trx_commit=2,
                         media_faults=(("misdirected", 0, 0),))
    steps = [["update_non_index", 0, 1, 1], ["commit", 0]]
    run = run_workload(s, steps)
    assert run.stopped is None and crashcheck.misdirected_writes(run, len(run.trace))
    assert crashcheck.check_crash_state(run, CrashPlan(len(run.trace), ())).verdict.ok
    clean = run_workload(WorkloadSettings(device="process-kill", flush_log_at_trx_commit=2),
                         steps)
    assert crashcheck.check_crash_state(clean, CrashPlan(len(clean.trace), ())).verdict.ok
    with planted("trx-commit-2-no-write"):
        bad = run_workload(WorkloadSettings(device="process-kill", flush_log_at_trx_commit=2),
                           steps)
        assert crashcheck.check_crash_state(bad, CrashPlan(len(bad.trace), ())).verdict.kind \
            == "L"


@pytest.mark.parametrize("arg", [EARLIER + 297, OTHER_FILE + 297, OTHER_FILE + 298])
def test_workloads_with_writes_misdirected_backwards_or_into_another_file_stay_clean(arg):
    """The engine stops on the lost write at its next fsync, and every crash state (everything
    kept, each pending operation lost alone) at every crash point passes or is refused on the
    range the write landed on (accepted)."""
    s = WorkloadSettings(buffer_pool_pages=16, log_file_size=196608,
                         media_faults=(("misdirected", 4, arg),))
    run = run_workload(s, MISDIRECTED_STEPS)
    assert run.disk.faults_injected == 1 and not run.crashed
    b = crashcheck.builder_for(run)
    for pos in crashcheck.crash_points(run):
        for plan in [CrashPlan(pos)] + [CrashPlan(pos, ((i, Choice(DROP)),))
                                        for i in b.pending(pos)]:
            res = crashcheck.check_crash_state(run, plan)
            assert res.verdict.ok, res.verdict.explain()
