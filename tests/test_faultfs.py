"""faultfs: the VFS protocol (OsVFS and SimDisk alike), the IO trace and its hash, device
profiles and crash plans as JSON data.  Crash-state construction is in test_crash_states.py."""
from __future__ import annotations

import hashlib
import json

import pytest

from tornpage.faultfs import (DEFAULT_DEVICE, DEVICES, DROP, KEEP, TEAR, VFS, Choice, CrashPlan,
                     CrashPlanError, CrashStateBuilder, Image, OsVFS, SimDisk, UnknownDevice,
                     VFSFile, get_device, pending_ops)
from tornpage.faultfs.trace import (Create, Fsync, FsyncDir, Marker, Mkdir, Rename, Trace, Truncate,
                           Unlink, Write)


# -- VFS: OsVFS and SimDisk behave the same ------------------------------------------------------

@pytest.fixture(params=["os", "sim"])
def any_vfs(request, tmp_path):
    """Each VFS implementation, empty."""
    if request.param == "os":
        return OsVFS(str(tmp_path / "root"))
    return SimDisk()


def _script(vfs) -> dict:
    """A fixed sequence of VFS calls; returns what the program observed along the way."""
    seen: dict = {}
    f = vfs.open("a", create=True)
    seen["empty_size"] = f.size()
    assert f.pwrite(b"hello", 0) == 5
    assert f.pwrite(b"XY", 1) == 2
    seen["overwrite"] = f.pread(100, 0)
    f.pwrite(b"end", 10)                          # past EOF: the gap reads as zeros
    seen["gap"] = f.pread(100, 0)
    seen["short_read"] = f.pread(10, 8)
    seen["read_past_eof"] = f.pread(4, 50)
    f.fsync()
    f.truncate(4)
    seen["shrunk"] = (f.size(), f.pread(100, 0))
    f.truncate(6)
    seen["grown"] = (f.size(), f.pread(100, 0))
    f.close()
    vfs.mkdir("d")
    g = vfs.open("d/x", create=True)
    g.pwrite(b"in dir", 0)
    g.close()
    vfs.fsync_dir("d")
    vfs.fsync_dir()
    vfs.mark("commit-ack", trx=1)
    seen["root"] = vfs.listdir()
    seen["d"] = vfs.listdir("d")
    vfs.rename("a", "b")
    seen["after_rename"] = (vfs.exists("a"), vfs.exists("b"), vfs.listdir())
    seen["renamed_data"] = vfs.open("b").pread(100, 0)
    vfs.open("zz", create=True).close()
    vfs.open("c", create=True).close()
    seen["sorted"] = vfs.listdir()
    vfs.unlink("b")
    seen["after_unlink"] = (vfs.exists("b"), vfs.listdir())
    reopened = vfs.open("d/x", create=True)       # existing file: create=True must not truncate
    seen["reopen"] = reopened.pread(100, 0)
    return seen


def test_vfs_script_observations(any_vfs):
    """Both VFS implementations give the page-cache semantics the protocol promises."""
    seen = _script(any_vfs)
    assert seen["empty_size"] == 0
    assert seen["overwrite"] == b"hXYlo"
    assert seen["gap"] == b"hXYlo\0\0\0\0\0end"
    assert seen["short_read"] == b"\0\0end"
    assert seen["read_past_eof"] == b""
    assert seen["shrunk"] == (4, b"hXYl")
    assert seen["grown"] == (6, b"hXYl\0\0")
    assert seen["root"] == ["a", "d"]
    assert seen["d"] == ["x"]
    assert seen["after_rename"] == (False, True, ["b", "d"])
    assert seen["renamed_data"] == b"hXYl\0\0"
    assert seen["sorted"] == ["b", "c", "d", "zz"]
    assert seen["after_unlink"] == (False, ["c", "d", "zz"])
    assert seen["reopen"] == b"in dir"


def test_os_and_sim_vfs_observe_the_same(tmp_path):
    """The same program sees byte-identical results on a real directory and on SimDisk."""
    assert _script(OsVFS(str(tmp_path))) == _script(SimDisk())


def test_vfs_protocol_conformance(any_vfs):
    """Both implementations satisfy the runtime-checkable VFS / VFSFile protocols."""
    assert isinstance(any_vfs, VFS)
    f = any_vfs.open("p", create=True)
    assert isinstance(f, VFSFile)
    assert f.path == "p"


def test_vfs_missing_files_raise_file_not_found(any_vfs):
    """Opening without create, renaming or unlinking a missing file raises FileNotFoundError."""
    with pytest.raises(FileNotFoundError):
        any_vfs.open("missing")
    with pytest.raises(FileNotFoundError):
        any_vfs.unlink("missing")
    with pytest.raises(FileNotFoundError):
        any_vfs.rename("missing", "other")
    assert not any_vfs.exists("missing")
    assert not any_vfs.exists("other")


def test_osvfs_writes_reach_the_real_directory(tmp_path):
    """OsVFS maps VFS paths onto files below its root."""
    vfs = OsVFS(str(tmp_path))
    vfs.mkdir("db")
    f = vfs.open("db/t.ibd", create=True)
    f.pwrite(b"page", 3)
    f.fsync()
    f.close()
    assert (tmp_path / "db" / "t.ibd").read_bytes() == b"\0\0\0page"


def test_osvfs_rejects_paths_escaping_the_root(tmp_path):
    """A path that resolves outside the root is refused, not silently opened."""
    vfs = OsVFS(str(tmp_path / "root"))
    (tmp_path / "secret").write_bytes(b"x")
    with pytest.raises(ValueError, match="escapes"):
        vfs.open("../secret")


def test_simdisk_missing_parent_directory():
    """SimDisk refuses to create a file or directory whose parent does not exist."""
    disk = SimDisk()
    with pytest.raises(FileNotFoundError):
        disk.open("nodir/f", create=True)
    with pytest.raises(FileNotFoundError):
        disk.mkdir("a/b")
    with pytest.raises(FileNotFoundError):
        disk.listdir("nodir")
    with pytest.raises(FileNotFoundError):
        disk.fsync_dir("nodir")
    assert len(disk.trace) == 0


def test_simdisk_starts_from_base_image():
    """A SimDisk over an image reads the image's files and directories without tracing them."""
    base = Image({"d/f": b"old", "g": b"G"}, {"d"})
    disk = SimDisk(image=base)
    assert disk.read_file("d/f") == b"old"
    assert disk.open("g").pread(10, 0) == b"G"
    assert disk.listdir() == ["d", "g"]
    assert len(disk.trace) == 0
    disk.open("d/f").pwrite(b"N", 0)
    assert disk.read_file("d/f") == b"Nld"
    assert base.files["d/f"] == b"old"               # the caller's image is not mutated
    assert disk.live_image() == Image({"d/f": b"Nld", "g": b"G"}, {"d"})


def test_simdisk_default_profile_and_names():
    """SimDisk defaults to sector512 and accepts a profile by name or by value."""
    assert DEFAULT_DEVICE == "sector512"
    assert SimDisk().profile is DEVICES["sector512"]
    assert SimDisk("sector4k").profile.sector_size == 4096
    assert SimDisk(DEVICES["ordered"]).profile.ordered
    with pytest.raises(UnknownDevice):
        SimDisk("no-such-device")


# -- the trace ------------------------------------------------------------------------------------

def _traced_disk(payload: bytes = b"xy") -> SimDisk:
    disk = SimDisk()
    f = disk.open("a", create=True)
    f.pwrite(payload, 0)
    f.fsync()
    disk.mark("commit-ack", trx=7, ok=True)
    disk.rename("a", "b")
    disk.mkdir("d")
    disk.fsync_dir()
    f.truncate(1)
    disk.unlink("b")
    return disk


def test_trace_records_every_op_in_order():
    """Each mutating call appends exactly one operation, in issue order, with its arguments."""
    disk = _traced_disk()
    assert disk.trace.ops == [
        Create("a", 0),
        Write(0, "a", 0, b"xy"),
        Fsync(0, "a"),
        Marker("commit-ack", (("ok", True), ("trx", 7))),
        Rename("a", "b", 0),
        Mkdir("d"),
        FsyncDir(""),
        Truncate(0, "a", 1),
        Unlink("b", 0),
    ]
    assert len(disk.trace) == 9
    assert disk.trace[4] == Rename("a", "b", 0)


def test_reads_and_reopen_are_not_traced():
    """Reads, size, exists, listdir, re-opening an existing file and mkdir of an existing
    directory leave the trace alone."""
    disk = _traced_disk()
    n, h = len(disk.trace), disk.trace_hash()
    disk.open("d/e", create=True)                  # one Create
    assert len(disk.trace) == n + 1
    f = disk.open("d/e", create=True)
    f.pread(10, 0)
    f.size()
    disk.exists("d/e")
    disk.listdir("d")
    disk.mkdir("d")
    f.close()
    assert len(disk.trace) == n + 1
    assert disk.trace_hash() != h


def test_unlink_then_create_makes_a_new_inode():
    """A path is a directory entry: unlink + create names a fresh inode."""
    disk = SimDisk()
    disk.open("f", create=True)
    disk.unlink("f")
    disk.open("f", create=True)
    assert disk.trace.ops == [Create("f", 0), Unlink("f", 0), Create("f", 1)]


def test_markers_recorded_with_attrs():
    """Markers are kept in the trace with sorted attributes and can be filtered by label."""
    disk = SimDisk()
    disk.mark("commit-begin", trx=1, rows=[1, 2])
    f = disk.open("a", create=True)
    f.pwrite(b"z", 0)
    disk.mark("commit-ack", trx=1)
    disk.mark("commit-begin", trx=2)
    all_markers = disk.trace.markers()
    assert [i for i, _ in all_markers] == [0, 3, 4]
    begins = disk.trace.markers("commit-begin")
    assert [(i, m.get("trx")) for i, m in begins] == [(0, 1), (4, 2)]
    assert begins[0][1].attrs == (("rows", [1, 2]), ("trx", 1))
    assert begins[0][1].get("missing", "dflt") == "dflt"
    assert disk.trace.markers("nothing") == []


def test_trace_hash_is_deterministic():
    """Two runs issuing the same operations have the same trace hash."""
    assert _traced_disk().trace_hash() == _traced_disk().trace_hash()
    assert len(_traced_disk().trace_hash()) == 64


def test_trace_hash_detects_one_different_byte():
    """Changing one data byte of one write changes the hash."""
    assert _traced_disk(b"xy").trace_hash() != _traced_disk(b"xz").trace_hash()


def test_trace_hash_of_empty_trace_and_growth():
    """The empty trace hashes like SHA-256 of nothing; every append changes the hash."""
    t = Trace()
    assert t.hash() == hashlib.sha256().hexdigest()
    seen = {t.hash()}
    for op in [Mkdir("d"), Marker("m"), FsyncDir("d"), Marker("m")]:
        t.append(op)
        seen.add(t.hash())
    assert len(seen) == 5


@pytest.mark.parametrize("a, b", [
    ([Write(0, "a", 0, b"ab"), Write(0, "a", 2, b"c")],
     [Write(0, "a", 0, b"a"), Write(0, "a", 1, b"bc")]),        # same bytes, split differently
    ([Write(0, "a", 0, b"x")], [Write(0, "a", 1, b"x")]),       # offset
    ([Write(0, "a", 0, b"x")], [Write(1, "a", 0, b"x")]),       # inode
    ([Fsync(0, "a"), Marker("m")], [Marker("m"), Fsync(0, "a")]),  # order
    ([Marker("m", (("trx", 1),))], [Marker("m", (("trx", 2),))]),  # marker attribute
    ([Rename("a", "b", 0)], [Rename("b", "a", 0)]),
])
def test_trace_hash_distinguishes_traces(a, b):
    """Different traces get different hashes (data, offset, inode, order, attributes)."""
    ta, tb = Trace(), Trace()
    for op in a:
        ta.append(op)
    for op in b:
        tb.append(op)
    assert ta.hash() != tb.hash()


def test_trace_hash_is_lazy_but_equals_hashing_each_operation_at_append():
    """hash() hashes what append was given: the same digest as hashing each operation's
    encoding as it came, whenever hash() is called, even for a marker whose mutable attribute
    the caller changed after marking."""
    from tornpage.faultfs.trace import encode_op
    rows = {1: b"a"}
    ops = [Mkdir("d"), Write(0, "a", 0, b"xy"), Marker("m", (("rows", rows),)),
           Fsync(0, "a"), Write(0, "a", 7, b"z" * 600), Rename("a", "b", 0)]
    want = hashlib.sha256()
    t = Trace()
    for k, op in enumerate(ops):
        enc = encode_op(op)
        want.update(len(enc).to_bytes(8, "little") + enc)
        t.append(op)
        if k == 2:
            rows[2] = b"later"              # the marker's attribute changes after marking
        if k == 3:
            assert t.hash() == want.hexdigest()     # a hash midway, then more appends
    assert t.hash() == want.hexdigest()
    assert t.hash() == want.hexdigest()             # asking twice changes nothing


def test_trace_append_returns_index():
    """append returns the index of the new operation."""
    t = Trace()
    assert t.append(Mkdir("x")) == 0
    assert t.append(Mkdir("y")) == 1


def test_describe_names_each_operation():
    """describe(i) gives one line naming the operation, its index and its arguments."""
    t = _traced_disk().trace
    assert t.describe(0) == "#0 create a (inode 0)"
    assert t.describe(1) == "#1 write a [0, 2) 2 bytes"
    assert t.describe(2) == "#2 fsync a"
    assert t.describe(3) == "#3 marker commit-ack ok=True trx=7"
    assert t.describe(4) == "#4 rename a -> b (inode 0)"
    assert t.describe(6) == "#6 fsync_dir /"
    assert t.describe(7) == "#7 truncate a to 1 bytes"
    assert t.describe(8) == "#8 unlink b (inode 0)"
    for i in range(len(t)):
        assert "\n" not in t.describe(i)


def test_describe_shortens_long_marker_attrs():
    """A long marker attribute is cut in the one-line description."""
    t = Trace()
    t.append(Marker("big", (("blob", b"z" * 500),)))
    line = t.describe(0)
    assert line.startswith("#0 marker big blob=")
    assert len(line) < 120 and "chars)" in line


# -- device profiles --------------------------------------------------------------------------------

def test_device_table():
    """The seven named profiles exist with the documented tear units and switches."""
    assert set(DEVICES) == {"sector512", "sector4k", "atomic16k", "nonatomic512", "ordered",
                            "process-kill", "unsafe-append"}
    for name, p in DEVICES.items():
        assert p.name == name and p.description
    tear = {n: p.tear_unit for n, p in DEVICES.items()}
    assert tear == {"sector512": 512, "sector4k": 4096, "atomic16k": 16384,
                    "nonatomic512": 512, "ordered": 512, "process-kill": 512,
                    "unsafe-append": 512}
    assert [n for n, p in DEVICES.items() if p.ordered] == ["ordered"]
    assert [n for n, p in DEVICES.items() if not p.power_loss] == ["process-kill"]
    assert [n for n, p in DEVICES.items() if p.torn_fills != ("old",)] == ["nonatomic512"]
    assert set(DEVICES["nonatomic512"].torn_fills) == {"old", "zeros", "garbage"}
    assert [n for n, p in DEVICES.items() if not p.safe_append] == ["unsafe-append"]


@pytest.mark.parametrize("name", sorted(DEVICES))
def test_get_device_known(name):
    """get_device returns the table's profile for each known name."""
    assert get_device(name) is DEVICES[name]


def test_get_device_unknown_raises_unknown_device():
    """An unknown device name raises UnknownDevice listing the known names."""
    with pytest.raises(UnknownDevice) as exc:
        get_device("sector1k")
    assert "sector1k" in str(exc.value) and "atomic16k" in str(exc.value)


# -- crash plans as JSON --------------------------------------------------------------------------

PLAN = CrashPlan(9, ((2, Choice(DROP)), (4, Choice(TEAR, (0, 3), "zeros")),
                     (5, Choice(KEEP)), (7, Choice(TEAR, (), "garbage"))))


def test_crash_plan_json_round_trip():
    """A plan survives dumps → json.loads → from_json unchanged, including tear units/fill."""
    text = PLAN.dumps()
    back = CrashPlan.from_json(json.loads(text))
    assert back == PLAN
    assert back.choice(4) == Choice(TEAR, (0, 3), "zeros")
    assert back.choice(6) == Choice()                   # unnamed → keep
    assert back.dumps() == text


def test_crash_plan_json_shape():
    """The JSON form is plain data: position plus [index, choice] pairs; keep/drop carry no
    units or fill."""
    d = json.loads(PLAN.dumps())
    assert d == {"position": 9, "choices": [
        [2, {"kind": "drop"}],
        [4, {"kind": "tear", "units": [0, 3], "fill": "zeros"}],
        [5, {"kind": "keep"}],
        [7, {"kind": "tear", "units": [], "fill": "garbage"}]]}


def test_crash_plan_from_json_defaults():
    """Missing choices mean keep everything; a tear without fill shows the old contents."""
    assert CrashPlan.from_json({"position": 3}) == CrashPlan(3)
    plan = CrashPlan.from_json({"position": 3, "choices": [[1, {"kind": "tear", "units": [1]}]]})
    assert plan.choice(1) == Choice(TEAR, (1,), "old")


@pytest.mark.parametrize("bad", [
    None,
    [],
    "plan",
    42,
    {},
    {"choices": []},
    {"position": None},
    {"position": "three"},
    {"position": [1]},
    {"position": 1, "choices": 5},
    {"position": 1, "choices": None},
    {"position": 1, "choices": [[1]]},
    {"position": 1, "choices": [[1, {"kind": "drop"}, 2]]},
    {"position": 1, "choices": [["x", {"kind": "drop"}]]},
    {"position": 1, "choices": [[0, "drop"]]},
    {"position": 1, "choices": [[0, None]]},
    {"position": 1, "choices": [[0, {}]]},
    {"position": 1, "choices": [[0, {"kind": "explode"}]]},
    {"position": 1, "choices": [[0, {"kind": ["drop"]}]]},
    {"position": 1, "choices": [[0, {"kind": "tear", "units": 5}]]},
    {"position": 1, "choices": [[0, {"kind": "tear", "units": ["a"]}]]},
    {"position": 1, "choices": [[0, {"kind": "tear", "units": [None]}]]},
    {"position": 1, "choices": [[0, {"kind": "tear", "fill": "ones"}]]},
    {"position": 1, "choices": [[0, {"kind": "tear", "fill": None}]]},
])
def test_crash_plan_from_json_malformed(bad):
    """Malformed plan JSON raises CrashPlanError (a ValueError), never a bare KeyError,
    TypeError or AttributeError."""
    with pytest.raises(CrashPlanError):
        CrashPlan.from_json(bad)


def test_crash_plan_error_is_a_value_error():
    """CrashPlanError is typed: callers may catch ValueError."""
    assert issubclass(CrashPlanError, ValueError)


def _small_builder():
    disk = SimDisk()
    f = disk.open("a", create=True)
    f.pwrite(b"a" * 512, 0)
    disk.mark("m")
    return disk, CrashStateBuilder(disk.base, disk.trace, disk.profile)


@pytest.mark.parametrize("position", [-1, 4, 100])
def test_out_of_range_position_raises(position):
    """A plan whose position lies outside the trace is rejected by build and pending_ops."""
    disk, b = _small_builder()
    assert len(disk.trace) == 3
    plan = CrashPlan.from_json({"position": position})
    with pytest.raises(CrashPlanError, match="outside"):
        b.build(plan)
    with pytest.raises(CrashPlanError):
        pending_ops(disk.trace, position, disk.profile)


def test_positions_at_the_ends_are_valid():
    """Positions 0 (nothing issued) and len(trace) (everything issued) are both in range."""
    disk, b = _small_builder()
    assert b.build(CrashPlan(0)) == Image()
    assert b.build(CrashPlan(3)) == disk.live_image()


@pytest.mark.parametrize("choices, match", [
    ([[5, {"kind": "drop"}]], "not pending"),           # past the crash position
    ([[2, {"kind": "drop"}]], "not pending"),           # a marker is never pending
    ([[0, {"kind": "tear", "units": [0]}]], "not a write"),  # the Create
    ([[1, {"kind": "tear", "units": [1]}]], "unit 1"),   # one-unit write
    ([[1, {"kind": "tear", "units": [-1]}]], "unit -1"),
])
def test_plans_that_do_not_fit_the_trace_raise(choices, match):
    """A JSON plan naming a non-pending op, tearing a non-write, or naming a tear unit the
    write does not have is rejected with CrashPlanError."""
    _, b = _small_builder()
    plan = CrashPlan.from_json({"position": 3, "choices": choices})
    with pytest.raises(CrashPlanError, match=match):
        b.build(plan)


# -- pyfakefs adapter: references bound before patching (issue #12 §3) ---------------------------

import errno  # noqa: E402  (module level: pyfakefs patches module globals, not a function's locals)
import os  # noqa: E402
import sys  # noqa: E402


def _fs_write_with_default(fd, data, write=os.write):
    """A module-level function with os.write as a default argument, as semidbm has."""
    return write(fd, data)


class _HoldsOs:
    import os as _os                 # a class attribute bound at import, as dbm.dumb's _Database


def test_adapter_patches_default_arguments_and_restores_them():
    from tornpage.faultfs.pyfakefs_vfs import FakeFSAdapter
    assert _fs_write_with_default.__defaults__ == (os.write,)
    with FakeFSAdapter("/d") as fx, fx.guard():
        fd = os.open("/d/f", os.O_CREAT | os.O_WRONLY)
        assert _fs_write_with_default(fd, b"abc") == 3      # the fake os.write: traced
        os.close(fd)
        assert open("/d/f", "rb").read() == b"abc"
        assert [type(op) for op in fx.trace.ops] == [Create, Write]
    assert _fs_write_with_default.__defaults__ == (os.write,)


def test_adapter_reloads_dbm_dumb_so_its_class_attributes_are_fake():
    import dbm.dumb
    from tornpage.faultfs.pyfakefs_vfs import FakeFSAdapter, modules_binding_real_fs
    real_os = os
    assert dbm.dumb._Database._os is os
    assert modules_binding_real_fs()[dbm.dumb] in ("_Database._os", "_Database._io")
    assert _HoldsOs._os is os                      # found, but a test module is never reloaded
    assert __name__ not in {m.__name__ for m in modules_binding_real_fs()}
    with FakeFSAdapter("/d") as fx, fx.guard():
        assert fx.reloaded["dbm.dumb"].startswith("_Database.")
        assert dbm.dumb._Database._os is not real_os and dbm.dumb._Database._os is os
        db = dbm.dumb.open("/d/db", "c")
        db[b"k"] = b"v"
        db.close()
        fx._check()
        assert {"db.dat", "db.dir"} <= set(fx.disk.live_image().files)
    assert dbm.dumb._Database._os is os                          # reloaded back


def test_adapter_root_is_its_own_device_and_tempfile_stays_fake(tmp_path):
    import tempfile
    from tornpage.faultfs.pyfakefs_vfs import FakeFSAdapter, UnsupportedIO
    with FakeFSAdapter("/d") as fx, fx.guard():
        tmpdir = tempfile.gettempdir()
        assert os.stat("/d").st_dev != os.stat(tmpdir).st_dev
        with tempfile.NamedTemporaryFile(delete=False) as f:     # the fake /tmp
            f.write(b"t")
        assert os.path.exists(f.name)
        with pytest.raises(UnsupportedIO, match="tempfile.tempdir") as e:
            os.rename(f.name, "/d/x")
        assert e.value.errno == errno.EXDEV
        fx.load(fx.disk.live_image())                          # a reload keeps the mount point
        assert os.stat("/d").st_dev != os.stat(tmpdir).st_dev
    assert not os.path.exists(f.name) or not f.name.startswith(str(tmp_path))


def test_adapter_refuses_real_descriptor_functions_bound_before_patching():
    from tornpage.faultfs.pyfakefs_vfs import FakeFSAdapter, UnsupportedIO
    real_fsync, real_lseek = os.fsync, os.lseek            # bound now: a closure would hold them
    with FakeFSAdapter("/d") as fx, fx.guard():
        fd = os.open("/d/f", os.O_CREAT | os.O_WRONLY)
        for call, name in ((lambda: real_fsync(fd), "os.fsync"),
                           (lambda: real_lseek(fd, 0, 0), "os.lseek")):
            with pytest.raises(UnsupportedIO, match=name) as e:
                call()
            assert "modules_to_reload" in str(e.value)
        os.fsync(fd)                                       # the patched one works
        os.close(fd)
    assert sys.getprofile() is None           # the hook is off again


def test_adapter_mmap_refusal_names_the_caller_and_the_fix():
    import mmap
    from tornpage.faultfs.pyfakefs_vfs import FakeFSAdapter, UnsupportedIO
    with FakeFSAdapter("/d") as fx, fx.guard():
        fd = os.open("/d/f", os.O_CREAT | os.O_RDWR)
        os.write(fd, b"x" * 4096)
        with pytest.raises(UnsupportedIO, match="mmap") as e:
            mmap.mmap(fd, 4096)
        os.close(fd)
    assert "test_faultfs" in str(e.value) and "read()/write()" in str(e.value)


def test_adapter_keeps_refusals_the_program_swallowed():
    from tornpage.faultfs.pyfakefs_vfs import FakeFSAdapter
    real_write = os.write
    with FakeFSAdapter("/d") as fx, fx.guard():
        fd = os.open("/d/f", os.O_CREAT | os.O_WRONLY)
        try:
            real_write(fd, b"x")                   # a library catching OSError hides this …
        except OSError:
            pass
        os.close(fd)
    assert len(fx.refusals) == 1 and "os.write" in str(fx.refusals[0])   # … the adapter does not
