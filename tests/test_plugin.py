"""The pytest plugin (campaigns/pytest_plugin.py), the crash_test helper (campaigns/crashtest.py)
and the pyfakefs adapter (faultfs/pyfakefs_vfs.py).  The worked example (examples/kvstore.py,
examples/test_kvstore.py) is run in a pytester sandbox: the broken store must fail with a
reproduction command that reproduces it, the fixed store must pass."""
from __future__ import annotations

import builtins
import io
import os
import re
import shlex
import xml.etree.ElementTree as ET
from pathlib import Path

import hypothesis  # noqa: F401  (loaded once here, not again by every in-process pytester run)
import pytest

from tornpage.campaigns.crashtest import (CrashConsistencyError, Promised, ack, begin,
                                 crash_test, promised_at)
from tornpage.faultfs import SimDisk
from tornpage.faultfs.crash import DROP, Choice, CrashPlan
from tornpage.faultfs.pyfakefs_vfs import FakeFSAdapter, UnsupportedIO
from tornpage.faultfs.trace import Create, Fsync, FsyncDir, Marker, Mkdir, Rename, Truncate, Unlink, Write

pytest_plugins = ["pytester"]

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
REPRO = re.compile(r"^reproduce: (pytest .*)$", re.M)


@pytest.fixture
def example(pytester: pytest.Pytester) -> pytest.Pytester:
    """A sandbox holding the worked example."""
    for name in ("kvstore.py", "test_kvstore.py"):
        (pytester.path / name).write_text((EXAMPLES / name).read_text())
    return pytester


def _real_tree(path: Path) -> list[str]:
    """Every real file below ``path`` but pytest's own (its cache, bytecode)."""
    return sorted(str(p.relative_to(path)) for p in path.rglob("*")
                  if not {".pytest_cache", "__pycache__"} & set(p.relative_to(path).parts))


# -- the worked example through the plugin ---------------------------------------------------------

def test_broken_store_fails_with_explanation_and_reproduction_line(example):
    before = _real_tree(example.path)
    r = example.runpytest("test_kvstore.py::test_broken_store", "--tornpage-seed", "7")
    r.assert_outcomes(failed=1)
    out = r.stdout.str()
    cmd = "pytest test_kvstore.py::test_broken_store --tornpage-seed 7 -p tornpage"
    # in the explanation, in the section under the traceback, in the terminal summary
    assert f"reproduce: {cmd}" in out
    r.stdout.re_match_lines([r"^-+ tornpage -+$", re.escape(f"reproduce: {cmd}")])
    r.stdout.re_match_lines([r"^=+ tornpage: reproduce =+$", re.escape(cmd)])
    # the missing fsync, named: the new log's write was lost while the rename survived
    r.stdout.fnmatch_lines(["*#* write data.log.tmp * bytes: dropped",
                            "*not yet durable but kept:*rename data.log.tmp -> data.log (inode 1)*",
                            "*check said: AssertionError: 'k*': acknowledged *, recovered None*"])
    assert _real_tree(example.path) == before       # the store wrote nothing real


def test_reproduction_line_reproduces_the_failure(example):
    first = example.runpytest("test_kvstore.py::test_broken_store")     # a random seed
    first.assert_outcomes(failed=1)
    seed = re.search(r"^tornpage: seed (\d+) \(profile ci\)$", first.stdout.str(), re.M)
    assert seed, "the report header names the seed"
    cmd = REPRO.search(first.stdout.str()).group(1)
    assert f"--tornpage-seed {seed.group(1)}" in cmd
    again = example.runpytest(*shlex.split(cmd)[1:])
    again.assert_outcomes(failed=1)
    plan = re.compile(r"crash plan: (\{.*\})")
    assert plan.search(again.stdout.str()).group(1) == plan.search(first.stdout.str()).group(1)
    assert REPRO.search(again.stdout.str()).group(1) == cmd


def test_reproduction_line_works_without_plugin_autoload(example, monkeypatch):
    """``-p tornpage`` in the command loads the plugin by its entry point name."""
    r = example.runpytest("test_kvstore.py::test_broken_store", "--tornpage-seed", "3")
    cmd = REPRO.search(r.stdout.str()).group(1)
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")
    sub = example.runpytest_subprocess(*shlex.split(cmd)[1:])
    sub.assert_outcomes(failed=1)
    sub.stdout.fnmatch_lines(["tornpage: seed 3 (profile ci)", f"reproduce: {cmd}"])


def test_fixed_store_passes(example):
    before = _real_tree(example.path)
    r = example.runpytest("test_kvstore.py::test_fixed_store", "--tornpage-seed", "7")
    r.assert_outcomes(passed=1)
    assert "reproduce" not in r.stdout.str()
    assert _real_tree(example.path) == before


def test_header_shows_seed_profile_and_budget(pytester):
    pytester.makepyfile("def test_nothing():\n    pass\n")
    r = pytester.runpytest("--tornpage-seed", "12", "--tornpage-profile", "nightly",
                           "--tornpage-budget", "30s")
    r.assert_outcomes(passed=1)
    r.stdout.fnmatch_lines(["tornpage: seed 12 (profile nightly, budget 30s)"])
    bad = pytester.runpytest("--tornpage-budget", "lots")
    assert bad.ret == pytest.ExitCode.USAGE_ERROR
    bad.stderr.fnmatch_lines(["*--tornpage-budget*neither N (crash states) nor Ns (seconds)*"])


def test_junit_xml_has_the_reproduction_property(example):
    r = example.runpytest("test_kvstore.py", "--tornpage-seed", "5", "--tornpage-budget", "500",
                          "--junitxml=report.xml")
    r.assert_outcomes(passed=1, failed=1)
    cases = {c.get("name"): c for c in ET.parse(example.path / "report.xml").iter("testcase")}
    props = {c: [(p.get("name"), p.get("value")) for p in case.iter("property")]
             for c, case in cases.items()}
    assert props["test_broken_store"] == [(
        "tornpage_reproduce",
        "pytest test_kvstore.py::test_broken_store --tornpage-seed 5 --tornpage-budget 500 "
        "-p tornpage")]
    assert props["test_fixed_store"] == []


def test_budget_in_states_limits_the_search(pytester):
    pytester.makepyfile("""
        from tornpage.campaigns.crashtest import ack

        def op(disk):
            f = disk.open("a", create=True)
            for i in range(20):
                f.pwrite(b"x", i)
                f.fsync()
                ack(i=i)

        def test_count(crash_test):
            result = crash_test(op, None, lambda disk, promised: None)
            assert not result.complete
            assert result.states == 3
    """)
    # a budget that ends first never passes: it fails, or skips when asked to, saying how many
    r = pytester.runpytest("--tornpage-budget", "3", "-rs")
    r.assert_outcomes(failed=1)
    r.stdout.fnmatch_lines(["*CrashTestIncomplete: crash test incomplete: the budget ended "
                            "after 3 of * planned crash states*"])
    r = pytester.runpytest("--tornpage-budget", "3", "--tornpage-incomplete", "skip", "-rs")
    r.assert_outcomes(skipped=1)
    r.stdout.fnmatch_lines(["*budget ended after 3 of * planned crash states*"])



def test_plugin_leaves_other_tests_alone(pytester):
    pytester.makepyfile("""
        import os
        def test_fails():
            assert 1 == 2
        def test_real_fsync_untouched(tmp_path):
            fd = os.open(tmp_path / "f", os.O_CREAT | os.O_WRONLY)
            os.write(fd, b"x"); os.fsync(fd); os.close(fd)
            assert (tmp_path / "f").read_bytes() == b"x"
    """)
    r = pytester.runpytest("--junitxml=r.xml")
    r.assert_outcomes(passed=1, failed=1)
    assert "reproduce" not in r.stdout.str()
    assert not list(ET.parse(pytester.path / "r.xml").iter("property"))


# -- crash_test on code written against the VFS protocol ----------------------------------------

def _toy(fsync_before_ack: bool):
    """Append-only records on the VFS protocol; the broken variant acks before the fsync."""
    def operation(disk):
        f = disk.open("log", create=True)
        disk.fsync_dir()
        size = 0
        for key in ("a", "b", "c"):
            rec = f"{key}\n".encode()
            f.pwrite(rec, size)
            size += len(rec)
            if fsync_before_ack:
                f.fsync()
            ack(key=key, value=True)
        f.fsync()

    def check(disk, promised):
        data = disk.open("log").pread(1 << 20, 0) if disk.exists("log") else b""
        for key in promised:
            assert f"{key}\n".encode() in data, f"acknowledged {key!r} lost"
    return operation, check


def test_crash_test_finds_a_missing_fsync_in_vfs_code():
    op, check = _toy(fsync_before_ack=False)
    with pytest.raises(CrashConsistencyError) as e:
        crash_test(op, None, check, seed=1)
    msg = str(e.value)
    assert "#2 write log [0, 2) 2 bytes: dropped" in msg
    assert "check said: AssertionError: acknowledged 'a' lost" in msg
    assert e.value.plan == CrashPlan(4, ((2, Choice(DROP)),))   # just after the first ack
    op, check = _toy(fsync_before_ack=True)
    result = crash_test(op, None, check, seed=1)
    assert result.complete and result.states > 5


def test_a_recovery_that_raises_is_a_failure_and_named_so():
    def op(disk):
        f = disk.open("f", create=True)
        f.pwrite(b"{}", 0)

    def recover(disk):
        if disk.exists("f"):
            assert disk.open("f").pread(2, 0) == b"{}", "half-written file"

    with pytest.raises(CrashConsistencyError, match="recovery raised: AssertionError: half-wr"):
        crash_test(op, recover, None)


def test_crash_test_is_deterministic_for_a_seed():
    """With every crash point beyond the exhaustive bound, plans are sampled from the seed."""
    def op(disk):
        f = disk.open("f", create=True)
        f.pwrite(bytes(range(256)) * 8, 0)        # 4 sectors: torn shapes to sample
        f.pwrite(b"z" * 1024, 4096)
        ack(done=1)

    def check(disk, promised):
        data = disk.open("f").pread(5120, 0) if disk.exists("f") else b""
        assert not (promised.acks and data[:512] != (bytes(range(256)) * 2)), "first sector"

    def run(seed):
        with pytest.raises(CrashConsistencyError) as e:
            crash_test(op, None, check, seed=seed, exhaustive_bound=1, samples_per_point=8)
        return e.value

    a, b = run(11), run(11)
    assert a.plan == b.plan and str(a) == str(b)


def test_setup_is_durable_before_the_operation():
    def setup(disk):
        disk.open("f", create=True).pwrite(b"old", 0)      # no fsync: setup is durable anyway

    def op(disk):
        disk.open("f").pwrite(b"new", 0)

    seen = []
    crash_test(op, None, lambda disk, promised: seen.append(disk.open("f").pread(3, 0)),
               setup=setup)
    assert sorted(set(seen)) == [b"new", b"old"]




def test_promised_tracks_acks_and_in_flight_operations():
    d = SimDisk()
    for label, attrs in [("begin", dict(key="k", value=1)), ("ack", dict(key="k", value=1)),
                         ("begin", dict(key="k", value=2)), ("begin", dict(key="j", value=3))]:
        d.mark(label, **attrs)
    p = promised_at(d.trace, 4)
    assert dict(p) == {"k": 1} and p.allowed("k") == [1, 2] and p.allowed("j") == [None, 3]
    assert promised_at(d.trace, 1) == Promised([]) and promised_at(d.trace, 1).in_flight


def test_ack_outside_crash_test_is_an_error():
    with pytest.raises(RuntimeError, match="outside crash_test"):
        ack(key="k")
    with pytest.raises(RuntimeError):
        begin(key="k")


# -- the pyfakefs adapter -------------------------------------------------------------------------

def _same_script_on_a_simdisk():
    d = SimDisk()
    f = d.open("a.tmp", create=True)
    f.pwrite(b"hello", 0)
    f.pwrite(b"!", 5)
    f.fsync()
    d.rename("a.tmp", "a")
    d.fsync_dir("")
    d.mkdir("sub")
    g = d.open("sub/b", create=True)
    g.pwrite(b"xyz", 0)
    g.pwrite(b"Q", 10)
    g.truncate(4)
    g.fsync()
    d.fsync_dir("sub")
    d.open("c", create=True)
    d.rename("c", "a")                       # replaces a
    d.unlink("sub/b")
    d.mark("ack", key="k")
    return d.trace.ops


def test_adapter_traces_plain_os_code_as_simdisk_does(tmp_path):
    root = str(tmp_path / "db")
    with FakeFSAdapter(root) as fx, fx.guard():
        with open(f"{root}/a.tmp", "wb") as f:
            f.write(b"hello")
            f.flush()
            f.write(b"!")
            f.flush()
            os.fsync(f.fileno())
        os.rename(f"{root}/a.tmp", f"{root}/a")
        dfd = os.open(root, os.O_RDONLY)
        os.fsync(dfd)                        # fsync of a directory descriptor: fsync_dir
        os.close(dfd)
        os.mkdir(f"{root}/sub")
        fd = os.open(f"{root}/sub/b", os.O_CREAT | os.O_RDWR)
        assert os.write(fd, b"xyz") == 3
        assert os.pwrite(fd, b"Q", 10) == 1
        assert os.pread(fd, 20, 0) == b"xyz" + bytes(7) + b"Q"
        os.ftruncate(fd, 4)
        os.fsync(fd)
        os.close(fd)
        dfd = os.open(f"{root}/sub", os.O_RDONLY)
        os.fsync(dfd)
        os.close(dfd)
        open(f"{root}/c", "wb").close()
        os.replace(f"{root}/c", f"{root}/a")
        os.unlink(f"{root}/sub/b")
        fx.mark("ack", key="k")
        fx._check()
        ops = fx.trace.ops
    assert ops == _same_script_on_a_simdisk()
    assert [type(op) for op in ops] == [Create, Write, Write, Fsync, Rename, FsyncDir, Mkdir,
                                        Create, Write, Write, Truncate, Fsync, FsyncDir, Create,
                                        Rename, Unlink, Marker]
    assert not tmp_path.exists() or _real_tree(tmp_path) == []
    assert os.fsync.__module__ == "posix" and builtins.open is io.open   # unpatched again


def test_adapter_traces_other_routes_into_files():
    """pathlib, shutil, text mode, append mode, os.truncate, seeks in a buffered file: every
    change below the root is traced (the fake tree equals the shadow disk), nothing outside."""
    import shutil
    import tempfile
    with FakeFSAdapter("/data") as fx, fx.guard():
        Path("/data/p").write_text("hello\n")
        shutil.copyfile("/data/p", "/data/q")
        with open("/data/q", "a") as f:
            f.write("more")
        os.truncate("/data/q", 3)
        with open("/data/big", "wb") as f:
            f.write(b"a" * 20000)
        with open("/data/big", "r+b") as f:
            f.seek(100)
            f.write(b"XY")
            f.seek(15000)
            f.write(b"Z")
        shutil.move("/data/q", "/data/r")
        fd, _ = tempfile.mkstemp()            # outside the root: a tmpfs, not traced
        os.write(fd, b"scratch")
        os.close(fd)
        fx._check()
        image = fx.disk.live_image()
        writes = [(op.path, op.offset, len(op.data)) for op in fx.trace.ops
                  if isinstance(op, Write)]
    assert image.files == {"p": b"hello\n", "r": b"hel",
                           "big": b"a" * 100 + b"XY" + b"a" * 14898 + b"Z" + b"a" * 4999}
    assert ("big", 100, 2) in writes and ("big", 15000, 1) in writes
    assert all(not p.startswith("/") for p, _, _ in writes)


def test_adapter_sync_and_fdatasync_are_barriers():
    with FakeFSAdapter("/data") as fx, fx.guard():
        os.mkdir("/data/d")
        fd = os.open("/data/d/f", os.O_CREAT | os.O_WRONLY)
        os.write(fd, b"x")
        os.fdatasync(fd)
        os.write(fd, b"y")
        os.sync()
        os.close(fd)
        ops = fx.trace.ops
    assert ops[3:] == [Fsync(0, "d/f"), Write(0, "d/f", 1, b"y"), Fsync(0, "d/f"),
                       FsyncDir(""), FsyncDir("d")]


def test_adapter_loads_a_crash_image_back(tmp_path):
    root = "/data"
    with FakeFSAdapter(root) as fx:
        with fx.guard():
            os.makedirs(f"{root}/d")
            with open(f"{root}/d/f", "wb") as f:
                f.write(b"v1")
        image = fx.disk.live_image()
        fx.load(image)
        with fx.guard():
            assert open(f"{root}/d/f", "rb").read() == b"v1"
            with open(f"{root}/d/f", "ab") as f:
                f.write(b"+")
        assert fx.trace.ops == [Write(0, "d/f", 2, b"+")]   # base files are inodes 0, 1, …
        assert fx.base.files == {"d/f": b"v1"}


def test_adapter_refuses_mmap_and_unknown_descriptors(tmp_path):
    import mmap
    real = tmp_path / "real.bin"
    real.write_bytes(b"real data")
    real_fd = os.open(real, os.O_RDWR)
    try:
        with FakeFSAdapter("/data") as fx, fx.guard():
            fd = os.open("/data/f", os.O_CREAT | os.O_RDWR)
            os.write(fd, b"x" * 4096)
            with pytest.raises(UnsupportedIO, match="mmap"):
                mmap.mmap(fd, 4096)
            for call in (lambda: os.fsync(real_fd), lambda: os.write(real_fd, b"X"),
                         lambda: os.pwrite(real_fd, b"X", 0), lambda: os.writev(fd, [b"x"])):
                with pytest.raises(UnsupportedIO) as e:
                    call()
                assert isinstance(e.value, OSError)
            with pytest.raises(UnsupportedIO, match="for writing"):
                io.FileIO(str(tmp_path / "escape"), "w")      # bypasses pyfakefs
            with pytest.raises(UnsupportedIO, match="removing directory"):
                os.mkdir("/data/sub")
                os.rmdir("/data/sub")
            os.close(fd)
    finally:
        os.close(real_fd)
    assert real.read_bytes() == b"real data"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["real.bin"]


def test_adapter_refuses_to_nest_in_another_pyfakefs(fs):
    with pytest.raises(UnsupportedIO, match="already patching"):
        FakeFSAdapter("/data").start()


def test_tornpage_fakefs_fixture_and_crash_test_together(tornpage_fakefs, crash_test):
    """crash_test(vfs_kind="pyfakefs") reuses a running adapter (here the fixture's)."""
    root = tornpage_fakefs.root

    def op(r):
        assert r == root
        with open(f"{r}/x", "wb") as f:
            f.write(b"1")
            f.flush()
            os.fsync(f.fileno())
        dfd = os.open(r, os.O_RDONLY)
        os.fsync(dfd)
        os.close(dfd)
        ack(key="x", value=b"1")

    def check(r, promised):
        if promised:
            assert open(f"{r}/x", "rb").read() == promised["x"]

    result = crash_test(op, None, check, vfs_kind="pyfakefs")
    assert result.complete and result.operations == 5   # create write fsync fsync_dir ack
    assert os.path.exists(root)                  # still the fake file system


def test_tornpage_disk_fixture_is_a_fresh_simdisk(tornpage_disk, tornpage_seed):
    assert isinstance(tornpage_disk, SimDisk) and len(tornpage_disk.trace) == 0
    assert isinstance(tornpage_seed, int)


# -- crashes during the user's recovery -------------------------------------------------------------

def _journal_store(fsync_truncate: bool):
    """A store with a redo journal: put writes the journal, fsyncs, acks, then applies to the
    data file; recovery replays the journal into the data file and truncates the journal.  With
    ``fsync_truncate=False`` recovery truncates the journal before the replayed data is durable,
    so a crash during recovery loses an acknowledged value."""
    def setup(disk):
        disk.open("data", create=True)
        disk.open("journal", create=True)
        disk.fsync_dir()

    def operation(disk):
        j = disk.open("journal")
        begin(key="k", value=b"v1")
        j.pwrite(b"v1", 0)
        j.fsync()
        ack(key="k", value=b"v1")

    def recover(disk):
        j, d = disk.open("journal"), disk.open("data")
        entry = j.pread(2, 0)
        if entry:
            d.pwrite(entry, 0)
            if fsync_truncate:
                d.fsync()
            j.truncate(0)
            j.fsync()

    def check(disk, promised):
        got = disk.open("data").pread(2, 0) or disk.open("journal").pread(2, 0) or None
        assert got in promised.allowed("k"), f"k: promised {promised.get('k')!r}, got {got!r}"
    return operation, recover, check, setup


def test_recovery_crashes_find_a_recovery_that_is_not_crash_safe():
    operation, recover, check, setup = _journal_store(fsync_truncate=False)
    assert crash_test(operation, recover, check, seed=1, setup=setup).complete  # one recovery
    with pytest.raises(CrashConsistencyError) as e:
        crash_test(operation, recover, check, seed=1, setup=setup, recovery_crashes=True)
    assert "then a crash during recovery" in str(e.value)
    assert "check said: AssertionError: k: promised b'v1', got None" in str(e.value)


def test_recovery_crashes_pass_a_crash_safe_recovery():
    operation, recover, check, setup = _journal_store(fsync_truncate=True)
    result = crash_test(operation, recover, check, seed=1, setup=setup, recovery_crashes=True)
    assert result.complete and result.states > 3


def test_the_recovery_crashes_option_reaches_the_fixture(pytester):
    pytester.makepyfile("""
        from tornpage import ack, begin

        def test_opt(crash_test):
            def setup(disk):
                disk.open("a", create=True)
                disk.fsync_dir()
            def op(disk):
                f = disk.open("a")
                begin(key="a", value=b"x")
                f.pwrite(b"x", 0)
                f.fsync()
                ack(key="a", value=b"x")
            def recover(disk):
                f = disk.open("a")
                if f.pread(1, 0) == b"x":
                    f.truncate(0)                   # recovery "compacts" without fsync
                    f.pwrite(b"x", 0)
            def check(disk, promised):
                got = disk.open("a").pread(1, 0) or None
                assert got in promised.allowed("a"), got
            crash_test(op, recover, check, setup=setup)
    """)
    pytester.runpytest("--tornpage-seed", "1").assert_outcomes(passed=1)
    r = pytester.runpytest("--tornpage-seed", "1", "--tornpage-recovery-crashes")
    r.assert_outcomes(failed=1)           # the truncate, then a crash: the acked x is gone
    r.stdout.fnmatch_lines(["*then a crash during recovery*",
                            "*--tornpage-seed 1 --tornpage-recovery-crashes -p tornpage*"])
