"""Third-party storage libraries crash-tested through ``crash_test(..., vfs_kind="pyfakefs")``
(issue #12 §3): the scenarios of docs/third_party.py, each asserted to give the outcome it gives
as measured, and each proved to make **zero real writes**.

How "zero real writes" is measured, independently of the adapter's own refusals
(:class:`RealWriteWatch`):

* bait descriptors: before the run every free descriptor number from 3 to 63 is taken by a real,
  empty bait file.  The fake file system's descriptors are small integers from 3 up, so a real
  ``os.write``/``os.pwrite``/``os.ftruncate`` on a fake descriptor (semidbm's default-argument
  escape) lands in a bait file, or in a real file pytest already has open at that number (those
  are watched by size and mtime);
* an audit hook counts every real ``open`` for writing and real ``os.rename``/``remove``/``mkdir``
  … the interpreter performs while the run is on;
* the run's working directory is a fresh real directory: a relative-path escape would leave a
  file there, and it must stay empty.

``test_watch_catches_an_unpatched_write`` shows the watch catches a real escape (the adapter's
descriptor hook switched off, a closure-bound real ``os.write``), and that with the hook on the
same call is refused with :class:`UnsupportedIO` naming the function and the fix.
"""
from __future__ import annotations

import importlib.util
import os
import stat
import sys
import threading
from pathlib import Path

import pytest

import tornpage
from tornpage.faultfs import pyfakefs_vfs
from tornpage.faultfs.pyfakefs_vfs import FakeFSAdapter, UnsupportedIO

_SCRIPT = Path(__file__).resolve().parent.parent / "docs" / "third_party.py"


def _load_scenarios():
    spec = importlib.util.spec_from_file_location("tornpage_docs_third_party", _SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


tp = _load_scenarios()


# -- the watch ------------------------------------------------------------------------------------

_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
_MUTATIONS = {"os.rename", "os.remove", "os.rmdir", "os.mkdir", "os.truncate", "os.link",
              "os.symlink", "os.chmod", "os.utime"}   # (shutil.* audit fake IO too)
_WATCH: "RealWriteWatch | None" = None
_HOOKED = False


def _count(event: str, args: tuple) -> None:
    w = _WATCH
    if w is None or threading.get_ident() != w.thread:
        return
    if event == "open":
        _, mode, flags = args
        if (isinstance(flags, int) and flags & _WRITE_FLAGS) or \
                (isinstance(mode, str) and any(c in mode for c in "wax+")):
            w.real_events.append((event, args))
    elif event in _MUTATIONS:
        w.real_events.append((event, args))


class RealWriteWatch:
    """Records what reached the real file system between :meth:`start` and :meth:`stop`."""

    def __init__(self, tmp_path: Path) -> None:
        self.bait_dir = tmp_path / "bait"
        self.cwd = tmp_path / "cwd"
        self.bait: dict[int, Path] = {}
        self.others: dict[int, tuple] = {}     # fds open before us: regular files' (size, mtime)
        self.real_events: list = []
        self.thread = threading.get_ident()

    def start(self, monkeypatch) -> "RealWriteWatch":
        global _WATCH, _HOOKED
        self.bait_dir.mkdir()
        self.cwd.mkdir()
        monkeypatch.chdir(self.cwd)
        for fd in range(3, 64):
            try:
                st = os.fstat(fd)
            except OSError:
                continue
            if stat.S_ISREG(st.st_mode):
                self.others[fd] = (st.st_size, st.st_mtime_ns)
        while True:
            p = self.bait_dir / f"bait{len(self.bait)}"
            fd = os.open(p, os.O_RDWR | os.O_CREAT, 0o600)
            if fd >= 64:
                os.close(fd)
                os.unlink(p)
                break
            self.bait[fd] = p
        if not _HOOKED:
            sys.addaudithook(_count)
            _HOOKED = True
        _WATCH = self
        return self

    def stop(self) -> list[str]:
        """What escaped, in words (empty: nothing)."""
        global _WATCH
        _WATCH = None
        escaped = [f"real {e}{a!r}" for e, a in self.real_events]
        for fd, p in self.bait.items():
            os.close(fd)
            if p.stat().st_size:
                escaped.append(f"real descriptor {fd} written: {p.read_bytes()[:60]!r}")
        for fd, before in self.others.items():
            try:
                st = os.fstat(fd)
            except OSError:
                escaped.append(f"real descriptor {fd} (open before the run) was closed")
                continue
            if (st.st_size, st.st_mtime_ns) != before:
                escaped.append(f"real file behind descriptor {fd} (open before the run) changed")
        left = sorted(str(p.relative_to(self.cwd)) for p in self.cwd.rglob("*"))
        if left:
            escaped.append(f"files left in the run's real working directory: {left}")
        return escaped


@pytest.fixture
def real_write_watch(tmp_path, monkeypatch):
    w = RealWriteWatch(tmp_path).start(monkeypatch)
    yield w
    if _WATCH is w:
        w.stop()


# -- the libraries ----------------------------------------------------------------------------

# outcome of each scenario as measured (seed 0, device sector512, Python 3.11, the versions in
# docs/third-party.md): (kind, a phrase of the one-line explanation)
MEASURED = {
    "atomicwrites": ("crash-consistent", "crash states"),
    "dbm.dumb": ("check failed (AssertionError)", "'k0': promised None, recovered ''"),
    "dbm.dumb (create)": ("check failed (AssertionError)", "'k0': promised None, recovered ''"),
    "shelve": ("check failed (EOFError)", "Ran out of input"),
    "shelve (create)": ("check failed (EOFError)", "Ran out of input"),
    "semidbm": ("crash-consistent", "crash states"),
    "semidbm (create)": ("recovery raised (DBMLoadError)", "not a semibdm db file"),
    "tinydb": ("check failed (JSONDecodeError)", "Extra data"),
    "tinydb (create)": ("check failed (AssertionError)", "'k0': promised 'v0', recovered None"),
    "persist-queue": ("recovery raised (EOFError)", "Ran out of input"),
    "persist-queue (create)": ("recovery raised (EOFError)", "Ran out of input"),
}


def test_every_scenario_has_a_measured_outcome():
    assert set(MEASURED) == set(tp.SCENARIOS)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("name", sorted(MEASURED))
def test_library_outcome_and_zero_real_writes(name, real_write_watch):
    scenario = tp.SCENARIOS[name]
    if not scenario.available():
        pytest.skip(f"{scenario.module} is not installed (pip install '.[thirdparty]')")
    outcome = tp.run(name)
    escaped = real_write_watch.stop()
    assert escaped == [], f"{name}: IO reached the real file system: {escaped}"
    kind, phrase = MEASURED[name]
    assert (outcome.kind, outcome.consistent) == (kind, kind == "crash-consistent"), \
        outcome.explanation
    assert phrase in outcome.explanation
    if outcome.consistent:
        assert outcome.result.complete and outcome.result.states > 5
    else:
        assert isinstance(outcome.error, tornpage.CrashConsistencyError)


@pytest.mark.timeout(60)
def test_semidbm_default_argument_writes_reach_the_fake_file(real_write_watch):
    """semidbm binds os.write as a default argument at import: patched (patch_default_args), its
    writes are traced into the fake file, none reaches a real descriptor."""
    semidbm = pytest.importorskip("semidbm", reason="semidbm is not installed")
    import semidbm.db
    real_write = os.write
    assert semidbm.db._SemiDBM.__setitem__.__defaults__.count(real_write) == 1
    with FakeFSAdapter("/s") as fx, fx.guard():
        with tp._semidbm_without_mmap():
            db = semidbm.open("/s/db", "c")
        assert real_write not in semidbm.db._SemiDBM.__setitem__.__defaults__
        db["k"] = "v"
        db.sync()
        db.close()
        fx._check()
        assert any(b"kv" in getattr(op, "data", b"") for op in fx.trace.ops)
    assert semidbm.db._SemiDBM.__setitem__.__defaults__.count(real_write) == 1   # restored
    assert real_write_watch.stop() == []


@pytest.mark.timeout(60)
def test_persist_queue_default_tempdir_is_not_the_traced_root(real_write_watch, caplog):
    """persist-queue's default tempdir (tempfile's, in the fake /tmp) is on another device than
    the traced root, as on a real system: the library notices and keeps its temporary files in
    the queue directory, so its renames stay below the root."""
    persistqueue = pytest.importorskip("persistqueue", reason="persist-queue is not installed")
    import tempfile
    with FakeFSAdapter("/pq") as fx, fx.guard():
        assert os.stat("/pq").st_dev != os.stat(tempfile.gettempdir()).st_dev
        q = persistqueue.Queue("/pq/q")
        q.put("x")
        assert q.tempdir == "/pq/q"
        del q
        fx._check()
    assert "not on the same filesystem" in caplog.text
    assert real_write_watch.stop() == []


@pytest.mark.timeout(60)
def test_temporary_file_renamed_into_the_root_is_refused_with_the_fix(real_write_watch):
    import tempfile
    with FakeFSAdapter("/r") as fx, fx.guard():
        fd, tmp = tempfile.mkstemp()                 # the fake /tmp: outside the traced root
        os.write(fd, b"data")
        os.close(fd)
        with pytest.raises(UnsupportedIO, match="crosses the traced root") as e:
            os.replace(tmp, "/r/data")
        assert e.value.errno == 18                   # EXDEV: handlers of it (shutil.move) work
        assert "tempdir=" in str(e.value) and "dir=" in str(e.value)
        import shutil
        shutil.move(tmp, "/r/data")                  # copies across "devices", as for real
        assert open("/r/data", "rb").read() == b"data"
        fx._check()
    assert real_write_watch.stop() == []


# -- the watch catches a real escape ---------------------------------------------------------------

def _closure_bound_write():
    real_write = os.write                 # bound before the patcher starts, in a closure:
    return lambda fd, data: real_write(fd, data)    # neither pyfakefs nor the reload sees it


@pytest.mark.timeout(60)
def test_watch_catches_an_unpatched_write(real_write_watch, monkeypatch):
    """The watch is not vacuous: with the adapter's descriptor hook off, a real os.write on a
    fake descriptor lands in a real file and the watch reports it."""
    leaky_write = _closure_bound_write()
    monkeypatch.setattr(pyfakefs_vfs, "_fd_profile", None)     # guard() installs no hook
    with FakeFSAdapter("/w", fd_guard=True) as fx, fx.guard():
        assert sys.getprofile() is None
        fds = [os.open(f"/w/f{i}", os.O_CREAT | os.O_WRONLY) for i in range(64)]
        fd = next(fd for fd in fds if fd in real_write_watch.bait)   # same number as a bait
        leaky_write(fd, b"ESCAPED")
        for f in fds:
            os.close(f)
    escaped = real_write_watch.stop()
    assert escaped and any("written: b'ESCAPED'" in e or f"descriptor {fd}" in e
                           for e in escaped), escaped


@pytest.mark.timeout(60)
def test_adapter_refuses_the_same_write_naming_function_and_fix(real_write_watch):
    leaky_write = _closure_bound_write()
    with FakeFSAdapter("/w") as fx, fx.guard():
        fd = os.open("/w/f", os.O_CREAT | os.O_WRONLY)
        with pytest.raises(UnsupportedIO) as e:
            leaky_write(fd, b"ESCAPED")
        os.close(fd)
    msg = str(e.value)
    assert "real os.write()" in msg and "test_third_party" in msg
    assert "modules_to_reload" in msg
    assert real_write_watch.stop() == []


@pytest.mark.timeout(60)
def test_crash_test_reports_the_refusal_not_a_library_bug(real_write_watch):
    """Through crash_test the refusal propagates as UnsupportedIO (the adapter's limit), never as
    a CrashConsistencyError blaming the code under test."""
    leaky_write = _closure_bound_write()

    def op(root):
        fd = os.open(f"{root}/f", os.O_CREAT | os.O_WRONLY)
        leaky_write(fd, b"x")

    with pytest.raises(UnsupportedIO, match="os.write"):
        tornpage.crash_test(op, None, None, vfs_kind="pyfakefs")
    assert real_write_watch.stop() == []


@pytest.mark.parametrize("argv", [["no-such-library"], ["--no-such-flag"]])
def test_a_bad_argument_is_a_usage_error(argv, capsys):
    """One line naming the mistake, exit 2, nothing run and no traceback."""
    with pytest.raises(SystemExit) as e:
        tp.main(argv)
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "error:" in err and "Traceback" not in err
