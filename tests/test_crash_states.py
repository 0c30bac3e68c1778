"""Crash states as a pure function of (base image, trace, position, CrashPlan, device profile).

Small hand-checked traces pin the persistence model byte for byte (pending sets, fsync barriers,
reordering, torn writes and their fills, each device profile's guarantees, explanations);
Hypothesis properties check determinism, the keep-everything state and barrier durability on
random traces and plans."""
from __future__ import annotations

import hashlib
import itertools

import pytest
from hypothesis import given, settings, strategies as st

from tornpage.faultfs import (DEVICES, DROP, KEEP, TEAR, Choice, CrashPlan, CrashPlanError,
                     CrashStateBuilder, Image, SimDisk, pending_ops, tear_units)
from tornpage.faultfs.trace import Create, Fsync, FsyncDir, Mkdir, Rename, Truncate, Unlink, Write

A, B, C = b"A" * 1024, b"B" * 512, b"C" * 512


def builder(disk: SimDisk, **kw) -> CrashStateBuilder:
    return CrashStateBuilder(disk.base, disk.trace, disk.profile, **kw)


def abc_disk(profile: str = "sector512") -> SimDisk:
    """The reference trace::

        #0 create a            #3 fsync a
        #1 fsync_dir /         #4 write a [512, 1024)  B  (unsynced)
        #2 write a [0, 1024) A #5 write a [1024, 1536) C  (unsynced)
    """
    disk = SimDisk(profile)
    f = disk.open("a", create=True)
    disk.fsync_dir()
    f.pwrite(A, 0)
    f.fsync()
    f.pwrite(B, 512)
    f.pwrite(C, 1024)
    assert len(disk.trace) == 6
    return disk


def file_at(b: CrashStateBuilder, position: int, *choices, path: str = "a") -> bytes | None:
    return b.build(CrashPlan(position, tuple(choices))).files.get(path)


# -- pending sets and barriers --------------------------------------------------------------------

def test_pending_sets_of_the_reference_trace():
    """A write is pending until an fsync of its file; a create until an fsync of its directory."""
    b = builder(abc_disk())
    assert [b.pending(p) for p in range(7)] == [[], [0], [], [2], [], [4], [4, 5]]


def test_crash_before_fsync_keeping_everything():
    """Before the fsync the unsynced write is pending; kept, it is in the image; dropped, the
    (durably created) file is empty."""
    b = builder(abc_disk())
    assert file_at(b, 3) == A
    assert file_at(b, 3, (2, Choice(DROP))) == b""
    assert file_at(b, 2) == b""
    assert file_at(b, 0) is None


def test_keep_all_at_the_end_is_the_live_image():
    """Keeping every pending write at the end of the trace gives what the program saw."""
    disk = abc_disk()
    assert file_at(builder(disk), 6) == A[:512] + B + C
    assert builder(disk).build(CrashPlan(6)) == disk.live_image()


def test_later_write_kept_while_earlier_dropped():
    """Pending writes are independent: an earlier one may be lost while a later one survives."""
    b = builder(abc_disk())
    assert file_at(b, 6, (4, Choice(DROP)), (5, Choice(KEEP))) == A + C
    assert file_at(b, 6, (4, Choice(KEEP)), (5, Choice(DROP))) == A[:512] + B
    assert file_at(b, 6, (4, Choice(DROP)), (5, Choice(DROP))) == A


def test_drop_never_crosses_an_fsync_barrier():
    """A write followed by an fsync of its file is durable: it is not pending, a plan naming it
    is rejected, and it survives every plan over the pending writes."""
    b = builder(abc_disk())
    assert 2 not in b.pending(6)
    with pytest.raises(CrashPlanError, match="not pending"):
        b.build(CrashPlan(6, ((2, Choice(DROP)),)))
    fates = [Choice(KEEP), Choice(DROP), Choice(TEAR, ()), Choice(TEAR, (0,))]
    for c4, c5 in itertools.product(fates, fates):
        data = file_at(b, 6, (4, c4), (5, c5))
        assert data[:512] == A[:512]
        assert data[512:1024] in (A[:512], B)


def test_barrier_is_per_file():
    """An fsync of one file is no barrier for another file's earlier write."""
    disk = SimDisk()
    fa, fb = disk.open("a", create=True), disk.open("b", create=True)
    disk.fsync_dir()                         # #2
    fb.pwrite(b"b" * 512, 0)                 # #3
    fa.pwrite(b"a" * 512, 0)                 # #4
    fa.fsync()                               # #5
    b = builder(disk)
    assert b.pending(6) == [3]
    img = b.build(CrashPlan(6, ((3, Choice(DROP)),)))
    assert img.files == {"a": b"a" * 512, "b": b""}


def test_fsync_covers_truncate():
    """Truncate is file data: pending until an fsync, then durable."""
    disk = SimDisk(image=Image({"f": b"x" * 100}))
    f = disk.open("f")
    f.truncate(10)                           # #0
    assert builder(disk).pending(1) == [0]
    assert file_at(builder(disk), 1, (0, Choice(DROP)), path="f") == b"x" * 100
    assert file_at(builder(disk), 1, path="f") == b"x" * 10
    f.fsync()
    f.truncate(20)                           # #2: grows with zeros
    b = builder(disk)
    assert b.pending(3) == [2]
    assert file_at(b, 3, (2, Choice(DROP)), path="f") == b"x" * 10
    assert file_at(b, 3, path="f") == b"x" * 10 + bytes(10)


def test_markers_are_never_pending():
    """Markers are trace events, not IO: never pending, never in the image."""
    disk = SimDisk()
    disk.mark("commit-begin", trx=1)
    f = disk.open("a", create=True)
    disk.mark("commit-ack", trx=1)
    f.pwrite(b"z", 0)
    b = builder(disk)
    assert b.pending(4) == [1, 3]
    with pytest.raises(CrashPlanError):
        b.build(CrashPlan(4, ((2, Choice(DROP)),)))
    assert b.build(CrashPlan(4)) == Image({"a": b"z"}, set())


# -- metadata operations --------------------------------------------------------------------------

def test_create_is_pending_until_its_directory_is_fsynced():
    """A file fsync makes the data durable but not the directory entry naming it."""
    disk = SimDisk()
    f = disk.open("a", create=True)          # #0
    f.pwrite(b"data", 0)                     # #1
    f.fsync()                                # #2
    b = builder(disk)
    assert b.pending(3) == [0]
    assert b.build(CrashPlan(3, ((0, Choice(DROP)),))).files == {}
    assert b.build(CrashPlan(3)).files == {"a": b"data"}
    disk.fsync_dir()                         # #3
    assert builder(disk).pending(4) == []


def test_fsync_dir_covers_only_its_directory():
    """fsync_dir of one directory is no barrier for entries of another."""
    disk = SimDisk()
    disk.mkdir("d")                          # #0 entry in /
    disk.fsync_dir()                         # #1
    disk.open("d/x", create=True)            # #2 entry in d
    disk.open("y", create=True)              # #3 entry in /
    disk.fsync_dir("d")                      # #4
    b = builder(disk)
    assert b.pending(5) == [3]
    assert b.build(CrashPlan(5, ((3, Choice(DROP)),))).files == {"d/x": b""}


def test_rename_and_unlink_pending_until_fsync_dir():
    """A dropped rename leaves the old name; a dropped unlink leaves the file; both are durable
    after fsync_dir."""
    disk = SimDisk(image=Image({"old": b"O", "gone": b"G"}))
    disk.rename("old", "new")                # #0
    disk.unlink("gone")                      # #1
    b = builder(disk)
    assert b.pending(2) == [0, 1]
    assert b.build(CrashPlan(2)).files == {"new": b"O"}
    assert b.build(CrashPlan(2, ((0, Choice(DROP)), (1, Choice(DROP))))).files == \
        {"old": b"O", "gone": b"G"}
    assert b.build(CrashPlan(2, ((0, Choice(DROP)),))).files == {"old": b"O"}
    disk.fsync_dir()
    assert builder(disk).pending(3) == []


def test_rename_across_directories_needs_both_fsynced():
    """A rename changes two directories; it is durable only once both are fsynced."""
    disk = SimDisk(image=Image({"d/f": b"F", "e/keep": b""}, {"d", "e"}))
    disk.rename("d/f", "e/f")                # #0
    disk.fsync_dir("e")                      # #1
    assert builder(disk).pending(2) == [0]
    disk.fsync_dir("d")                      # #2
    assert builder(disk).pending(3) == []


def test_dropped_mkdir_hides_its_files():
    """If the directory entry is lost, files created inside it are not in the image."""
    disk = SimDisk()
    disk.mkdir("d")                          # #0
    f = disk.open("d/x", create=True)        # #1
    f.pwrite(b"x", 0)                        # #2
    disk.fsync_dir("d")                      # #3
    f.fsync()                                # #4
    b = builder(disk)
    assert b.pending(5) == [0]
    assert b.build(CrashPlan(5)) == Image({"d/x": b"x"}, {"d"})
    assert b.build(CrashPlan(5, ((0, Choice(DROP)),))) == Image({}, set())


# -- torn writes ----------------------------------------------------------------------------------

O, N = b"o" * 4096, b"n" * 4096


def tear_disk(profile: str, size: int = 2048, offset: int = 0, length: int = 2048) -> SimDisk:
    """Base file f of ``size`` bytes 'o'; #0 writes ``length`` bytes 'n' at ``offset``."""
    disk = SimDisk(profile, image=Image({"f": b"o" * size}))
    disk.open("f").pwrite(b"n" * length, offset)
    return disk


def torn(disk: SimDisk, units, fill: str = "old") -> bytes:
    return builder(disk).build(CrashPlan(1, ((0, Choice(TEAR, tuple(units), fill)),))).files["f"]


def test_tear_fill_old_keeps_old_sectors():
    """On 512-byte sectors a tear keeps the named sectors new and the others old."""
    assert torn(tear_disk("sector512"), (0, 2)) == N[:512] + O[:512] + N[:512] + O[:512]
    assert torn(tear_disk("sector512"), (3,)) == O[:1536] + N[:512]


def test_tear_with_no_units_or_all_units():
    """Tearing to no units equals dropping; tearing to all units equals keeping."""
    disk = tear_disk("sector512")
    b = builder(disk)
    assert torn(disk, ()) == b.build(CrashPlan(1, ((0, Choice(DROP)),))).files["f"] == O[:2048]
    assert torn(disk, range(4)) == b.build(CrashPlan(1)).files["f"] == N[:2048]


def test_tear_fill_zeros():
    """With the zeros fill the lost sectors read as zeros, destroying the old contents."""
    assert torn(tear_disk("nonatomic512"), (0, 2), "zeros") == \
        N[:512] + bytes(512) + N[:512] + bytes(512)


def test_tear_fill_garbage():
    """With the garbage fill the lost sectors hold bytes that are neither old nor new, differ
    from sector to sector, and are the same every time the state is built."""
    disk = tear_disk("nonatomic512")
    data = torn(disk, (0, 2), "garbage")
    assert len(data) == 2048
    assert data[0:512] == N[:512] and data[1024:1536] == N[:512]
    g1, g3 = data[512:1024], data[1536:2048]
    for g in (g1, g3):
        assert g != O[:512] and g != N[:512] and g != bytes(512)
        assert len(set(g)) > 1
    assert g1 != g3
    assert torn(tear_disk("nonatomic512"), (0, 2), "garbage") == data


def test_tear_of_an_unaligned_write():
    """Tear units follow absolute sector boundaries, so an unaligned write's first and last
    units are partial."""
    disk = tear_disk("sector512", offset=100, length=1000)
    assert tear_units(100, 1000, 512) == [(0, 412), (412, 924), (924, 1000)]
    assert torn(disk, (1,)) == O[:512] + N[:512] + O[:1024]
    assert torn(disk, (0, 2)) == O[:100] + N[:412] + O[:512] + N[:76] + O[:948]
    with pytest.raises(CrashPlanError, match="unit 3"):
        torn(disk, (3,))


def test_tear_past_end_of_file_zero_fills_the_gap():
    """A kept unit beyond the old end of file extends it; the lost unit before it reads as the
    old contents, which were zeros (a hole)."""
    disk = SimDisk(image=Image({"f": b""}))
    disk.open("f").pwrite(N[:1024], 0)
    assert torn(disk, (1,)) == bytes(512) + N[:512]


def test_tear_only_writes():
    """Only a write can be torn; tearing a create or truncate is rejected."""
    disk = SimDisk()
    f = disk.open("a", create=True)
    f.truncate(10)
    b = builder(disk)
    for i in (0, 1):
        with pytest.raises(CrashPlanError, match="not a write"):
            b.build(CrashPlan(2, ((i, Choice(TEAR, ())),)))


@pytest.mark.parametrize("offset, length, unit, expected", [
    (0, 512, 512, [(0, 512)]),
    (0, 2048, 512, [(0, 512), (512, 1024), (1024, 1536), (1536, 2048)]),
    (100, 1000, 512, [(0, 412), (412, 924), (924, 1000)]),
    (511, 2, 512, [(0, 1), (1, 2)]),
    (512, 1, 512, [(0, 1)]),
    (1023, 1, 512, [(0, 1)]),
    (0, 0, 512, []),
    (1000, 5000, 4096, [(0, 3096), (3096, 5000)]),
    (4096, 4096, 4096, [(0, 4096)]),
    (16384, 16384, 16384, [(0, 16384)]),
    (4096, 16384, 16384, [(0, 12288), (12288, 16384)]),
    (4096, 4096, 16384, [(0, 4096)]),
])
def test_tear_units_boundaries(offset, length, unit, expected):
    """tear_units splits a write at multiples of the unit, relative to the write's start."""
    got = tear_units(offset, length, unit)
    assert got == expected
    assert sum(b - a for a, b in got) == length


# -- device profiles --------------------------------------------------------------------------------

def test_sector512_default_may_lose_tear_and_reorder():
    """The default device loses, reorders and tears unsynced writes at 512 bytes."""
    disk = abc_disk()
    assert disk.profile.name == "sector512"
    b = builder(disk)
    assert b.pending(6) == [4, 5]
    assert file_at(b, 6, (4, Choice(DROP))) == A + C
    assert len(tear_units(0, 2048, disk.profile.tear_unit)) == 4


def test_sector4k_tears_only_at_4k():
    """On sector4k every 4 KiB block of a torn write is all old or all new."""
    disk = tear_disk("sector4k", size=8192, length=8192)
    for r in range(3):
        for units in itertools.combinations(range(2), r):
            data = torn(disk, units)
            for k in range(2):
                block = data[k * 4096:(k + 1) * 4096]
                assert block == (N if k in units else O)
    with pytest.raises(CrashPlanError):
        torn(disk, (2,))
    assert tear_units(1000, 5000, DEVICES["sector4k"].tear_unit) == [(0, 3096), (3096, 5000)]


def test_atomic16k_never_tears_an_aligned_page():
    """An aligned 16 KiB write is one tear unit on atomic16k: a crash shows all of it or
    none of it, whatever the plan."""
    disk = tear_disk("atomic16k", size=16384, length=16384)
    b = builder(disk)
    assert tear_units(0, 16384, disk.profile.tear_unit) == [(0, 16384)]
    assert torn(disk, ()) == O * 4
    assert torn(disk, (0,)) == N * 4
    assert b.build(CrashPlan(1, ((0, Choice(DROP)),))).files["f"] == O * 4
    with pytest.raises(CrashPlanError):
        torn(disk, (1,))
    small = tear_disk("atomic16k", size=16384, offset=4096, length=4096)   # a 4 KiB page
    assert torn(small, ()) == O * 4
    assert torn(small, (0,)) == O + N + O + O


def test_atomic16k_unaligned_write_tears_at_16k_boundary():
    """Atomicity is for aligned units only: a write straddling a 16 KiB boundary may tear
    there (and only there)."""
    disk = tear_disk("atomic16k", size=32768, offset=8192, length=16384)
    assert torn(disk, (0,)) == O * 2 + N * 2 + O * 4
    assert torn(disk, (1,)) == O * 4 + N * 2 + O * 2


def ordered_disk() -> SimDisk:
    """Three unsynced 1024-byte writes (two tear units each) to file f of 3072 bytes 'o'."""
    disk = SimDisk("ordered", image=Image({"f": b"o" * 3072}))
    f = disk.open("f")
    for k, ch in enumerate(b"xyz"):
        f.pwrite(bytes([ch]) * 1024, 1024 * k)
    return disk


def test_ordered_drop_drops_every_later_write():
    """On an ordered device a dropped write ends the surviving prefix: a later write is never
    kept while an earlier one is lost."""
    disk = ordered_disk()
    b = builder(disk)
    assert b.pending(3) == [0, 1, 2]
    img = b.build(CrashPlan(3, ((1, Choice(DROP)), (2, Choice(KEEP)))))
    assert img.files["f"] == b"x" * 1024 + b"o" * 2048
    img = b.build(CrashPlan(3, ((0, Choice(DROP)),)))
    assert img.files["f"] == b"o" * 3072
    unordered = SimDisk("sector512", image=Image({"f": b"o" * 3072}))
    f = unordered.open("f")
    for k, ch in enumerate(b"xyz"):
        f.pwrite(bytes([ch]) * 1024, 1024 * k)
    img = builder(unordered).build(CrashPlan(3, ((0, Choice(DROP)),)))
    assert img.files["f"] == b"o" * 1024 + b"y" * 1024 + b"z" * 1024


def test_ordered_keeps_a_prefix_under_every_plan():
    """Exhaustively: every ordered crash state is a prefix of the writes, the last possibly
    torn."""
    disk = ordered_disk()
    b = builder(disk)
    fates = [Choice(KEEP), Choice(DROP), Choice(TEAR, (0,)), Choice(TEAR, (1,))]
    for plan_fates in itertools.product(fates, repeat=3):
        expected = bytearray(b"o" * 3072)
        for k, c in enumerate(plan_fates):
            new = bytes([b"xyz"[k]]) * 1024
            if c.kind == DROP:
                break
            if c.kind == KEEP:
                expected[1024 * k:1024 * (k + 1)] = new
                continue
            for u in c.units:
                expected[1024 * k + 512 * u:1024 * k + 512 * (u + 1)] = new[:512]
            break
        plan = CrashPlan(3, tuple(enumerate(plan_fates)))
        assert b.build(plan).files["f"] == bytes(expected), plan


def test_ordered_still_validates_later_choices():
    """A plan stays invalid on an ordered device even when an earlier drop makes the bad
    choice irrelevant to the image."""
    b = builder(ordered_disk())
    with pytest.raises(CrashPlanError, match="unit 7"):
        b.build(CrashPlan(3, ((0, Choice(DROP)), (2, Choice(TEAR, (7,))))))


def test_process_kill_keeps_everything_written():
    """After a process kill nothing is pending: every crash state is exactly what had been
    issued, synced or not, and no plan can name an operation."""
    disk = abc_disk("process-kill")
    b = builder(disk)
    for p in range(len(disk.trace) + 1):
        assert b.pending(p) == []
    assert file_at(b, 6) == A[:512] + B + C
    assert file_at(b, 3) == A
    assert file_at(b, 1) == b""                   # the create survives without fsync_dir
    assert pending_ops(disk.trace, 1, disk.profile) == []
    with pytest.raises(CrashPlanError, match="not pending"):
        b.build(CrashPlan(6, ((5, Choice(DROP)),)))
    assert builder(abc_disk("sector512")).pending(6) == [4, 5]   # power loss would lose them


def test_nonatomic512_is_the_only_profile_with_destructive_fills():
    """Only nonatomic512 lets a torn write destroy a sector's old contents."""
    for name, profile in DEVICES.items():
        assert ("zeros" in profile.torn_fills) == (name == "nonatomic512")
        assert "old" in profile.torn_fills


# -- explanations ---------------------------------------------------------------------------------

def test_explain_drop_and_keep():
    """explain: a header with the crash point and pending count, then one line per choice that
    loses something (kept operations are not listed)."""
    b = builder(abc_disk())
    lines = b.explain(CrashPlan(6, ((4, Choice(DROP)), (5, Choice(KEEP)))))
    assert lines == ["crash after operation #5 (2 operations pending)",
                     "#4 write a [512, 1024) 512 bytes: dropped"]


def test_explain_tear_names_new_and_old_units():
    """A torn write's line lists which units are new and which show the fill."""
    disk = tear_disk("sector512")
    b = builder(disk)
    lines = b.explain(CrashPlan(1, ((0, Choice(TEAR, (0, 2))),)))
    assert lines[1] == ("#0 write f [0, 2048) 2048 bytes: torn: units 0,2 new, 1,3 old "
                        "(512-byte units)")
    assert b.explain(CrashPlan(1, ((0, Choice(TEAR, (0, 1, 3))),)))[1].endswith(
        "units 0-1,3 new, 2 old (512-byte units)")
    assert b.explain(CrashPlan(1, ((0, Choice(TEAR, ())),)))[1].endswith(
        "units none new, 0-3 old (512-byte units)")
    z = builder(tear_disk("nonatomic512")).explain(CrashPlan(1, ((0, Choice(TEAR, (2, 3),
                                                                           "zeros")),)))
    assert z[1].endswith("torn: units 2-3 new, 0-1 zeros (512-byte units)")
    k4 = builder(tear_disk("sector4k", size=8192, length=8192))
    assert k4.explain(CrashPlan(1, ((0, Choice(TEAR, (1,))),)))[1].endswith(
        "units 1 new, 0 old (4096-byte units)")


def test_explain_uses_describe_callback_and_metadata_ops():
    """describe(op) enriches write lines; metadata drops are named too."""
    disk = SimDisk()
    f = disk.open("t.ibd", create=True)      # #0
    f.pwrite(b"p" * 4096, 4096)              # #1
    b = builder(disk)
    plan = CrashPlan(2, ((0, Choice(DROP)), (1, Choice(DROP))))
    lines = b.explain(plan, describe=lambda op: f"page {op.offset // 4096}")
    assert lines == ["crash after operation #1 (2 operations pending)",
                     "#0 create t.ibd (inode 0): dropped",
                     "#1 write t.ibd [4096, 8192) 4096 bytes (page 1): dropped"]


# -- properties on random traces --------------------------------------------------------------------

BASE = Image({"a": bytes(range(256)) * 4, "b": b""})
TARGETS = ("a", "b", "c")
write_st = st.tuples(st.just("write"), st.sampled_from(TARGETS), st.integers(0, 3000),
                     st.integers(0, 1500))
step_st = st.one_of(
    write_st, write_st, write_st,                  # writes are the interesting operations
    st.tuples(st.just("fsync"), st.sampled_from(TARGETS)),
    st.tuples(st.just("trunc"), st.sampled_from(TARGETS), st.integers(0, 4000)),
    st.tuples(st.just("mark")),
    st.tuples(st.just("create")),
    st.tuples(st.just("rename")),
    st.tuples(st.just("fsync_dir")),
)


def _pattern(tag: int, n: int) -> bytes:
    out = b""
    k = 0
    while len(out) < n:
        out += hashlib.sha256(f"{tag}:{k}".encode()).digest()
        k += 1
    return out[:n]


def run_steps(steps, profile: str, limit: int | None = None) -> SimDisk:
    """Run abstract steps on a SimDisk over BASE; each step that runs adds exactly one trace
    operation, so ``limit`` cuts the run at any trace position."""
    disk = SimDisk(profile, image=BASE)
    files = {"a": disk.open("a"), "b": disk.open("b")}
    c_name = None
    for k, s in enumerate(steps):
        if limit is not None and len(disk.trace) >= limit:
            break
        n = len(disk.trace)
        kind = s[0]
        if kind == "create":
            if "c" in files:
                continue
            c_name = "c"
            files["c"] = disk.open("c", create=True)
        elif kind == "rename":
            if c_name is None:
                continue
            new = "c2" if c_name == "c" else "c"
            disk.rename(c_name, new)
            c_name = new
        elif kind == "fsync_dir":
            disk.fsync_dir()
        elif kind == "mark":
            disk.mark("step", k=k)
        else:
            f = files.get(s[1])
            if f is None:
                continue
            if kind == "write":
                f.pwrite(_pattern(k, s[3]), s[2])
            elif kind == "fsync":
                f.fsync()
            else:
                f.truncate(s[2])
        assert len(disk.trace) == n + 1
    return disk


@st.composite
def crash_cases(draw, profiles=tuple(sorted(DEVICES))):
    """(steps, disk, position, plan) with the plan's choices drawn within the pending set."""
    profile = draw(st.sampled_from(profiles))
    steps = draw(st.lists(step_st, min_size=4, max_size=25))
    disk = run_steps(steps, profile)
    pos = draw(st.one_of(st.just(len(disk.trace)), st.integers(0, len(disk.trace))))
    choices = []
    for i in pending_ops(disk.trace, pos, disk.profile):
        op = disk.trace[i]
        kind = draw(st.sampled_from([KEEP, DROP, TEAR] if isinstance(op, Write) else
                                    [KEEP, DROP]))
        if kind == TEAR:
            n = len(tear_units(op.offset, len(op.data), disk.profile.tear_unit))
            units = draw(st.sets(st.integers(0, n - 1))) if n else set()
            fill = draw(st.sampled_from(disk.profile.torn_fills))
            choices.append((i, Choice(TEAR, tuple(sorted(units)), fill)))
        elif kind == DROP or draw(st.booleans()):     # sometimes name a keep explicitly
            choices.append((i, Choice(kind)))
    return steps, disk, pos, CrashPlan(pos, tuple(choices))


def durable_bytes(disk: SimDisk, pos: int, pending: set[int], inode: int) -> dict[int, int]:
    """offset → byte for every byte of ``inode`` whose last writer before ``pos`` is durable
    (the base image or a write not pending); a truncate forgets everything before it."""
    last: dict[int, tuple[int, int]] = {x: (-1, v) for x, v in
                                        enumerate(BASE.files[sorted(BASE.files)[inode]])}
    for i in range(pos):
        op = disk.trace[i]
        if getattr(op, "inode", None) != inode:
            continue
        if isinstance(op, Truncate):
            last.clear()
        elif isinstance(op, Write):
            for x in range(len(op.data)):
                last[op.offset + x] = (i, op.data[x])
    return {x: v for x, (i, v) in last.items() if i not in pending}


@settings(max_examples=50, deadline=None)
@given(crash_cases())
def test_build_is_deterministic(case):
    """The same plan always builds the same image, whatever the snapshot spacing or cache."""
    _, disk, pos, plan = case
    b = builder(disk)
    first = b.build(plan)
    assert b.build(plan) == first
    assert builder(disk, snapshot_every=1).build(plan) == first
    assert builder(disk, snapshot_every=3).build(plan) == first
    assert CrashStateBuilder(disk.base, disk.trace, disk.profile).build(
        CrashPlan.from_json(plan.to_json())) == first


@settings(max_examples=50, deadline=None)
@given(crash_cases())
def test_keep_all_equals_the_live_image_of_the_prefix(case):
    """Keeping every pending operation at position p gives exactly what the program saw after
    its first p operations (at the end: the disk's live image)."""
    steps, disk, pos, _ = case
    b = builder(disk)
    assert b.build(CrashPlan(len(disk.trace))) == disk.live_image()
    assert b.build(CrashPlan(pos)) == run_steps(steps, disk.profile.name, limit=pos).live_image()


@settings(max_examples=50, deadline=None)
@given(crash_cases())
def test_synced_writes_survive_every_crash(case):
    """Every byte last written by a durable write (one followed by an fsync of its file before
    the crash) reads back exactly, whatever the plan does to pending operations."""
    _, disk, pos, plan = case
    ops = disk.trace.ops
    pend = set() if not disk.profile.power_loss else {   # independent of pending_ops
        i for i in range(pos) if isinstance(ops[i], (Write, Truncate)) and not any(
            isinstance(o, Fsync) and o.inode == ops[i].inode for o in ops[i + 1:pos])}
    img = builder(disk).build(plan)
    for inode, path in enumerate(sorted(BASE.files)):
        data = img.files[path]
        for x, v in durable_bytes(disk, pos, pend, inode).items():
            assert x < len(data) and data[x] == v, (path, x)


@settings(max_examples=50, deadline=None)
@given(crash_cases())
def test_pending_set_matches_the_barrier_definition(case):
    """pending_ops is exactly: on power-loss devices, each data op with no later fsync of its
    inode and each metadata op with no later fsync_dir of its directories before the crash."""
    _, disk, pos, _ = case
    ops = disk.trace.ops
    expected = []
    if disk.profile.power_loss:
        for i in range(pos):
            op, later = ops[i], ops[i + 1:pos]
            if isinstance(op, (Write, Truncate)):
                if not any(isinstance(o, Fsync) and o.inode == op.inode for o in later):
                    expected.append(i)
            elif isinstance(op, (Create, Mkdir, Rename, Unlink)):
                if not any(isinstance(o, FsyncDir) and o.path == "" for o in later):
                    expected.append(i)          # every entry in these traces is in the root
    assert pending_ops(disk.trace, pos, disk.profile) == expected


@settings(max_examples=50, deadline=None)
@given(crash_cases(profiles=("ordered",)))
def test_ordered_device_keeps_a_prefix(case):
    """On the ordered device a plan builds the same image as the plan that drops everything
    after its first drop or tear."""
    _, disk, pos, plan = case
    normalised, cut = [], False
    for i in pending_ops(disk.trace, pos, disk.profile):
        c = plan.choice(i)
        normalised.append((i, Choice(DROP) if cut else c))
        cut = cut or c.kind != KEEP
    b = builder(disk)
    assert b.build(plan) == b.build(CrashPlan(pos, tuple(normalised)))


def test_unsafe_append_persists_size_without_data():
    """Without safe append, an appending write may leave the new size with zeros or garbage;
    with safe append the same plan is refused."""
    from tornpage.faultfs.crash import SIZE_ONLY
    for name, allowed in (("unsafe-append", True), ("sector512", False)):
        d = SimDisk(name)
        f = d.open("log", create=True)
        f.pwrite(b"a" * 512, 0)
        f.fsync()
        f.pwrite(b"b" * 1024, 512)       # appends: the file grows to 1536 bytes
        f.pwrite(b"c" * 512, 0)          # overwrites: not an append
        b = CrashStateBuilder(d.base, d.trace, DEVICES[name])
        pos = len(d.trace)
        append_i, overwrite_i = pos - 2, pos - 1
        assert append_i in b.appends() and overwrite_i not in b.appends()
        plan = CrashPlan(pos, ((append_i, Choice(SIZE_ONLY, (), "zeros")),))
        if not allowed:
            with pytest.raises(CrashPlanError):
                b.build(plan)
            continue
        img = b.build(plan)
        assert img.files["log"] == b"c" * 512 + bytes(1024)
        garbage = b.build(CrashPlan(pos, ((append_i, Choice(SIZE_ONLY, (), "garbage")),)))
        data = garbage.files["log"]
        assert len(data) == 1536 and data[512:] not in (bytes(1024), b"b" * 1024)
        with pytest.raises(CrashPlanError):     # an overwrite has no size to persist alone
            b.build(CrashPlan(pos, ((overwrite_i, Choice(SIZE_ONLY, (), "zeros")),)))
        assert any("only the new file size persisted" in line for line in b.explain(plan))


# -- tears inside a sector (devices whose sectors are not atomic) ---------------------------------

def cut(disk: SimDisk, units, partial, fill: str = "zeros") -> bytes:
    return builder(disk).build(CrashPlan(1, ((0, Choice(TEAR, tuple(units), fill, partial)),))
                               ).files["f"]


def test_a_one_sector_write_tears_inside_the_sector_on_nonatomic512():
    """A one-sector write: its first n bytes new, the rest zeros, garbage or old (the write
    head stopped inside the sector); the sector's first 16 bytes (a header) can survive new
    while everything after them is destroyed."""
    disk = tear_disk("nonatomic512", size=1024, offset=512, length=512)
    assert cut(disk, (), (0, 16)) == O[:512] + N[:16] + bytes(496)
    assert cut(disk, (), (0, 508), "old") == O[:512] + N[:508] + O[:4]
    g = cut(disk, (), (0, 256), "garbage")
    assert g[:768] == O[:512] + N[:256] and g[768:] not in (O[:256], N[:256], bytes(256))
    assert cut(disk, (), (0, 256), "garbage") == g                   # deterministic


def test_a_cut_inside_one_unit_of_a_longer_write():
    """Units named in ``units`` arrive whole, the cut unit arrives in part, the others show the
    fill: the shape of a write cut off mid-sector (a prefix of whole sectors, then part of
    one)."""
    disk = tear_disk("nonatomic512")
    assert cut(disk, (0, 1), (2, 16)) == N[:1024] + N[:16] + bytes(496) + bytes(512)
    assert cut(disk, (3,), (0, 256), "old") == N[:256] + O[:256] + O[:1024] + N[:512]
    unaligned = tear_disk("nonatomic512", size=2048, offset=100, length=600)   # units 412, 188
    assert cut(unaligned, (0,), (1, 16), "old") == O[:100] + N[:428] + O[:1520]


def test_cuts_only_where_the_device_allows_and_inside_a_lost_unit():
    for profile in ("sector512", "sector4k", "atomic16k", "ordered", "unsafe-append"):
        with pytest.raises(CrashPlanError, match="whole or not at all"):
            cut(tear_disk(profile, size=8192, length=4096), (), (0, 16), "old")
    disk = tear_disk("nonatomic512")
    for units, partial, why in [((0,), (0, 16), "not a lost unit"), ((), (4, 16), "not a lost"),
                                ((), (0, 0), "0 < n < 512"), ((), (0, 512), "0 < n < 512")]:
        with pytest.raises(CrashPlanError, match=why):
            cut(disk, units, partial)
    assert DEVICES["nonatomic512"].sub_sector_cuts == (16, 256, 508)
    assert all(not p.sub_sector_cuts for n, p in DEVICES.items() if n != "nonatomic512")


def test_a_cut_sector_is_not_remapped():
    """A latent sector error stays: a partly written sector is no whole rewrite."""
    disk = SimDisk("nonatomic512", image=Image({"f": b"o" * 1024}, set(),
                                               {"f": frozenset({1})}))
    disk.open("f").pwrite(b"n" * 512, 512)
    img = builder(disk).build(CrashPlan(1, ((0, Choice(TEAR, (), "zeros", (0, 256))),)))
    assert img.bad_sectors == {"f": frozenset({1})}


def test_partial_choice_json_round_trip_and_old_plans_still_load():
    c = Choice(TEAR, (0, 1), "zeros", (2, 16))
    assert c.to_json() == {"kind": "tear", "units": [0, 1], "fill": "zeros", "partial": [2, 16]}
    assert Choice.from_json(c.to_json()) == c
    old = {"position": 9, "choices": [[3, {"kind": "tear", "units": [0], "fill": "old"}],
                                      [4, {"kind": "drop"}]]}
    plan = CrashPlan.from_json(old)
    assert plan.choice(3) == Choice(TEAR, (0,), "old") and plan.choice(3).partial is None
    assert plan.to_json() == old                       # no new key in an old plan's JSON
    assert CrashPlan.from_json(json_roundtrip(CrashPlan(2, ((0, c),)))) == CrashPlan(2, ((0, c),))
    for bad in ({"kind": "drop", "partial": [0, 16]}, {"kind": "tear", "partial": [0]},
                {"kind": "tear", "partial": [0, "16"]}, {"kind": "tear", "partial": 16}):
        with pytest.raises(CrashPlanError):
            Choice.from_json(bad)


def json_roundtrip(plan: CrashPlan) -> dict:
    import json
    return json.loads(plan.dumps())


def test_explain_a_cut_inside_a_sector():
    b = builder(tear_disk("nonatomic512"))
    lines = b.explain(CrashPlan(1, ((0, Choice(TEAR, (0, 1), "zeros", (2, 16))),)))
    assert lines[1] == ("#0 write f [0, 2048) 2048 bytes: torn: units 0-1 new, unit 2 torn "
                        "inside: its first 16 bytes new, the rest zeros, 3 zeros (512-byte "
                        "units)")
    one = builder(tear_disk("nonatomic512", size=1024, offset=512, length=512))
    assert one.explain(CrashPlan(1, ((0, Choice(TEAR, (), "garbage", (0, 508))),)))[1].endswith(
        "torn: units none new, unit 0 torn inside: its first 508 bytes new, the rest garbage, "
        "none garbage (512-byte units)")
