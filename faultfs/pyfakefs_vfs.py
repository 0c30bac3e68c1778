"""Ordinary Python file code (``open``, ``os.write``, ``os.fsync``, ``os.rename`` …) on a fake file
system whose every mutating operation is recorded as a :class:`~faultfs.trace.Trace`.

pyfakefs alone is not enough for crash testing: its ``fsync`` is a no-op, it does not fake
``os.pwrite``, ``os.pread`` or ``mmap``, and its descriptors are small integers that collide with
real ones, so an unfaked call such as ``os.pwrite(fd, …)`` would reach a *real* file.  This
adapter runs pyfakefs' :class:`~pyfakefs.fake_filesystem_unittest.Patcher` with

* a shadow :class:`~faultfs.simdisk.SimDisk`: every change the program makes below the traced
  ``root`` directory is mirrored onto it as the same VFS call (create, write, truncate, fsync,
  fsync_dir, mkdir, rename, unlink), so the trace has SimDisk's semantics exactly (inodes numbered
  in creation order, base files first in sorted path order) and
  :class:`~faultfs.crash.CrashStateBuilder` cuts crash states from it unchanged;
* hooks at pyfakefs' choke points, not at the ``os`` functions, so every route into the fake file
  system is seen: ``FakeFile`` content and size changes (buffered ``open()`` writes, ``os.write``,
  truncation), ``FakeDirectory.add_entry``/``remove_entry`` (creates, mkdirs, unlinks) and
  ``FakeFilesystem.rename`` (one atomic Rename, even when it replaces its destination);
* a fake ``os`` module (:class:`TracedOsModule`) adding ``pwrite``/``pread``, making ``fsync`` and
  ``fdatasync`` barriers (``os.open(dir, O_RDONLY)`` + ``os.fsync`` is ``fsync_dir``) and refusing,
  with :class:`UnsupportedIO`, every descriptor call it cannot fake or whose descriptor it does
  not know;
* an audit hook (:func:`sys.addaudithook`, installed on first use, inert outside a guarded run):
  while the program runs, a real ``open`` for writing, a real ``os.rename``/``remove``/``mkdir``/
  ``truncate``…, a real ``mmap`` of a file or ``sqlite3.connect`` to a file raises
  :class:`UnsupportedIO` instead of touching the real disk.

Granularity of writes: ``os.write``/``os.pwrite`` are recorded exactly (offset and bytes given).
A buffered file object reaches the fake file system when pyfakefs flushes it (buffer full,
``flush()``, ``seek``/``tell``, ``close``), as CPython's buffer reaches the OS; such a flush is
recorded as one write covering the bytes that changed, so rewriting bytes with equal values is
not a separate operation.  Unflushed buffered data is not in the file (``os.fsync`` does not
flush a Python buffer, on a real system either).

Only ``root`` is on the simulated disk.  The rest of the fake file system (``/tmp`` …) is like a
tmpfs: never traced and empty after a crash.  Renames across the ``root`` boundary, directory
renames and removals, hard links and symlinks below ``root`` raise :class:`UnsupportedIO` (the
trace has no operation for them).

Invariant (:meth:`FakeFSAdapter._check`): the files and directories below ``root`` equal the
shadow disk's :meth:`~faultfs.simdisk.SimDisk.live_image`; a difference means a route the adapter
does not intercept, and is raised, never ignored.
"""
from __future__ import annotations

import errno
import importlib
import os
import posixpath
import stat
import sys
import threading
from contextlib import contextmanager
from types import ModuleType
from typing import Iterable, Iterator

from pyfakefs import fake_filesystem_unittest, fake_os, helpers
from pyfakefs.fake_file import FakeDirectory, FakeDirWrapper, FakeFile, FakeFileWrapper

from tornpage.faultfs.devices import DEFAULT_DEVICE, DeviceProfile
from tornpage.faultfs.simdisk import Image, SimDisk, SimFile
from tornpage.faultfs.trace import Trace

__all__ = ["UnsupportedIO", "FakeFSAdapter", "TracedOsModule", "active_adapter"]


class UnsupportedIO(OSError):
    """An IO the pyfakefs adapter cannot fake or trace (mmap of a file, an unknown descriptor, a
    real file opened for writing, a directory rename below the root …).  Raised instead of letting
    the call reach the real disk or escape the trace."""


_ACTIVE: "FakeFSAdapter | None" = None


def active_adapter() -> "FakeFSAdapter | None":
    """The adapter whose patcher is running, if any."""
    return _ACTIVE


def _refuse(code: int, msg: str) -> UnsupportedIO:
    err = UnsupportedIO(code, f"tornpage pyfakefs adapter: {msg}")
    if _ACTIVE is not None:
        _ACTIVE.refusals.append(err)      # kept even when the program catches the OSError
    return err


# -- the fake os module ---------------------------------------------------------------------------

# Descriptor calls pyfakefs does not fake: forwarded to the real os they would act on whatever
# real file has the same number.  Refused always.
_REFUSED_FD_CALLS = ("writev", "pwritev", "readv", "preadv", "posix_fallocate", "posix_fadvise",
                     "copy_file_range", "splice", "lockf", "fchown", "fchdir", "fstatvfs")
_EXTRA_DIR = ("pwrite", "pread", "ftruncate", "truncate", "fdopen", "fchmod", "sync",
              "lseek") + _REFUSED_FD_CALLS


class TracedOsModule(fake_os.FakeOsModule):
    """pyfakefs' fake ``os`` with the calls crash testing needs (see the module docstring)."""

    @staticmethod
    def dir() -> list[str]:
        # also patch ``from os import pwrite, ftruncate, …`` in already imported modules
        return fake_os.FakeOsModule.dir() + [n for n in _EXTRA_DIR if hasattr(os, n)]

    def _handle(self, fd: int, call: str):
        """The open fake file behind ``fd``; UnsupportedIO for a descriptor the fake file system
        does not know (it may be a real file: it must not be passed on)."""
        _rearm()
        if not isinstance(fd, int):
            raise TypeError(f"{call}: an integer file descriptor is required, got {fd!r}")
        files = self.filesystem.open_files
        if 0 <= fd < len(files) and files[fd]:
            return files[fd][0]
        raise _refuse(errno.EBADF, f"os.{call}({fd}): descriptor {fd} is not open in the fake "
                                   f"file system; it is not passed to the real os, where it "
                                   f"could be a real file")

    def _file(self, fd: int, call: str, write: bool) -> FakeFileWrapper:
        h = self._handle(fd, call)
        if not isinstance(h, FakeFileWrapper):
            self.filesystem.raise_os_error(errno.EBADF, str(fd))
        if write and not h.open_modes.can_write:
            self.filesystem.raise_os_error(errno.EBADF, h.file_path)
        if not write and not h.open_modes.can_read:
            self.filesystem.raise_os_error(errno.EBADF, h.file_path)
        return h

    def write(self, fd: int, contents: bytes) -> int:
        h = self._handle(fd, "write")
        ad = _ACTIVE
        if ad is not None and isinstance(h, FakeFileWrapper) and not h.is_stream:
            h._sync_io()
            ad._hint = (None if h.open_modes.append else h._io.tell(), bytes(contents))
        try:
            return super().write(fd, contents)
        finally:
            if ad is not None:
                ad._hint = None

    def pwrite(self, fd: int, data: bytes, offset: int) -> int:
        """Write ``data`` at byte ``offset`` without moving the file position (on an O_APPEND
        descriptor Linux appends whatever the offset, and so does this)."""
        h = self._file(fd, "pwrite", write=True)
        if offset < 0:
            raise OSError(errno.EINVAL, "negative offset")
        data = bytes(data)
        obj = h.file_object
        old = obj.byte_contents or b""
        if h.open_modes.append:
            offset = len(old)
        new = _splice(old, offset, data)
        ad = _ACTIVE
        if ad is not None:
            ad._hint = (offset, data)
        try:
            obj.set_contents(new)
        finally:
            if ad is not None:
                ad._hint = None
        obj.st_mtime = obj.st_ctime = helpers.now()
        return len(data)

    def pread(self, fd: int, n: int, offset: int) -> bytes:
        """Up to ``n`` bytes at ``offset`` without moving the file position."""
        h = self._file(fd, "pread", write=False)
        if n < 0 or offset < 0:
            raise OSError(errno.EINVAL, "negative size or offset")
        return bytes((h.file_object.byte_contents or b"")[offset:offset + n])

    def lseek(self, fd: int, pos: int, whence: int) -> int:
        h = self._handle(fd, "lseek")
        super().lseek(fd, pos, whence)
        return h.tell()                   # pyfakefs returns None; os.lseek returns the offset

    def fsync(self, fd: int) -> None:
        """A barrier: the file's writes (or a directory's entries) become durable."""
        h = self._handle(fd, "fsync")
        super().fsync(fd)
        if _ACTIVE is not None:
            _ACTIVE._on_fsync(h)

    def fdatasync(self, fd: int) -> None:
        h = self._handle(fd, "fdatasync")
        super().fdatasync(fd)
        if _ACTIVE is not None:
            _ACTIVE._on_fsync(h)

    def sync(self) -> None:
        """Everything becomes durable: every traced file and directory is synced."""
        if _ACTIVE is not None:
            _ACTIVE._sync_all()


def _refusing(name: str):
    def refused(self, *args, **kwargs):
        raise _refuse(errno.ENOTSUP, f"os.{name} cannot be faked or traced")
    refused.__name__ = name
    return refused


for _n in _REFUSED_FD_CALLS:
    setattr(TracedOsModule, _n, _refusing(_n))
for _n in ("write", "pwrite", "pread", "lseek", "fsync", "fdatasync", "sync") + _REFUSED_FD_CALLS:
    # as pyfakefs does for its own methods: a call from a module it skips uses the real os
    setattr(TracedOsModule, _n, fake_os.handle_original_call(getattr(TracedOsModule, _n)))


def _splice(old: bytes, offset: int, data: bytes) -> bytes:
    """``old`` with ``data`` written at ``offset`` (a gap past the end reads as zeros)."""
    if offset > len(old):
        old = old + bytes(offset - len(old))
    return old[:offset] + data + old[offset + len(data):]


def _first_diff(a: bytes, b: bytes) -> int:
    """Index of the first byte where ``a`` and ``b`` differ within their common length (that
    length when they agree).  O(n) memcmp in 4 KiB steps."""
    n = min(len(a), len(b))
    ma, mb = memoryview(a), memoryview(b)
    lo = 0
    while lo < n:
        hi = min(n, lo + 4096)
        if ma[lo:hi] != mb[lo:hi]:
            return next(i for i in range(lo, hi) if a[i] != b[i])
        lo = hi
    return n


def _last_diff(a: bytes, b: bytes) -> int:
    """One past the last differing byte of two equal-length byte strings (0 when equal)."""
    assert len(a) == len(b)
    ra, rb = a[::-1], b[::-1]
    return len(a) - _first_diff(ra, rb)


# -- hooks at pyfakefs' choke points (installed while an adapter runs) ----------------------------

_orig_set_initial_contents = FakeFile.set_initial_contents
_orig_size = FakeFile.size
_orig_add_entry = FakeDirectory.add_entry
_orig_remove_entry = FakeDirectory.remove_entry


def _tracked(obj) -> "tuple[FakeFSAdapter, SimFile] | None":
    ad = _ACTIVE
    if ad is None or ad._quiet:
        return None
    ent = ad._files.get(id(obj))
    if ent is None or ent[0] is not obj:
        return None
    return ad, ent[1]


def _hook_set_initial_contents(self, contents, *args, **kwargs):
    _rearm()
    t = _tracked(self)
    if t is None:
        return _orig_set_initial_contents(self, contents, *args, **kwargs)
    old = self._byte_contents or b""
    changed = _orig_set_initial_contents(self, contents, *args, **kwargs)
    t[0]._record_content(t[1], old, self._byte_contents or b"")
    return changed


def _hook_size_set(self, st_size: int) -> None:
    t = _tracked(self)
    _orig_size.fset(self, st_size)
    if t is None:
        return
    data = self._byte_contents or b""
    if len(data) != st_size:          # pyfakefs does not zero-fill an empty file it grows
        self._byte_contents = data[:st_size] + bytes(max(0, st_size - len(data)))
    t[1].truncate(st_size)


def _hook_add_entry(self, path_object) -> None:
    _rearm()
    ad = _ACTIVE
    if ad is None or ad._quiet or self.filesystem is not ad.fs:
        return _orig_add_entry(self, path_object)
    drel = ad._rel(self.path)
    if drel is None:
        return _orig_add_entry(self, path_object)
    rel = posixpath.join(drel, helpers.to_string(path_object.name))
    if isinstance(path_object, FakeDirectory):
        _orig_add_entry(self, path_object)
        ad.disk.mkdir(rel)
        return
    if stat.S_ISLNK(path_object.st_mode):
        raise _refuse(errno.ENOTSUP, f"symlink {rel!r} below the traced root: not modelled")
    if id(path_object) in ad._files or path_object.st_nlink:
        raise _refuse(errno.ENOTSUP, f"hard link {rel!r} below the traced root: not modelled")
    _orig_add_entry(self, path_object)
    f = ad.disk.open(rel, create=True)
    ad._files[id(path_object)] = (path_object, f)
    if path_object.byte_contents:
        f.pwrite(path_object.byte_contents, 0)


def _hook_remove_entry(self, pathname_name, recursive: bool = True) -> None:
    ad = _ACTIVE
    if ad is None or ad._quiet or self.filesystem is not ad.fs:
        return _orig_remove_entry(self, pathname_name, recursive)
    drel = ad._rel(self.path)
    if drel is None:
        return _orig_remove_entry(self, pathname_name, recursive)
    name = helpers.to_string(self._normalized_entryname(pathname_name))
    rel = posixpath.join(drel, name)
    entry = self.entries.get(name)
    if isinstance(entry, FakeDirectory):
        raise _refuse(errno.ENOTSUP, f"removing directory {rel!r} below the traced root: the "
                                     f"trace has no operation for it")
    _orig_remove_entry(self, pathname_name, recursive)
    if ad.disk.exists(rel):
        ad.disk.unlink(rel)


# -- the audit guard ------------------------------------------------------------------------------

_GUARD_THREAD: int | None = None
_AUDIT_INSTALLED = False
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
_REAL_MUTATIONS = frozenset({
    "os.rename", "os.remove", "os.rmdir", "os.mkdir", "os.truncate", "os.link", "os.symlink",
    "os.chmod", "os.chown", "os.utime", "os.setxattr", "os.removexattr", "os.chflags",
    "os.lockf"})


def _caller() -> str:
    """The innermost Python frame outside this module and the standard library's io."""
    f = sys._getframe(1)
    while f is not None and f.f_globals.get("__name__") in (__name__, "io", "_pyio"):
        f = f.f_back
    if f is None:
        return "?"
    return f"{f.f_globals.get('__name__', '?')} {f.f_code.co_filename}:{f.f_lineno} in " \
           f"{f.f_code.co_name}"


def _audit(event: str, args: tuple) -> None:
    if _GUARD_THREAD is None or _GUARD_THREAD != threading.get_ident():
        return
    if event != "sys.setprofile":         # (setting the hook is itself audited)
        _rearm()
    if event == "open":
        path, mode, flags = args
        writing = (isinstance(flags, int) and flags & _WRITE_FLAGS) or \
            (isinstance(mode, str) and any(c in mode for c in "wax+"))
        if writing:
            raise _refuse(errno.EPERM, f"real open({path!r}, {mode or flags!r}) for writing "
                                       f"refused (called from {_caller()}): it bypassed the "
                                       f"fake file system (a C extension, io.FileIO, a module "
                                       f"pyfakefs skips, or an open/os.open bound before the "
                                       f"patcher started: pass that module to "
                                       f"FakeFSAdapter(modules_to_reload=[...]))")
    elif event in _REAL_MUTATIONS:
        raise _refuse(errno.EPERM, f"real {event}{args!r} refused during a fake-file-system run")
    elif event == "mmap.__new__" and args[0] != -1:
        raise _refuse(errno.ENOTSUP, f"mmap.mmap of descriptor {args[0]} (called from "
                                     f"{_caller()}): memory-mapped file IO cannot be faked or "
                                     f"traced.  Fix: make the library use read()/write() "
                                     f"instead (many have a fallback for platforms without "
                                     f"mmap, e.g. semidbm takes its SimpleFileLoader when "
                                     f"sys.modules['semidbm.loaders.mmapload'] is None)")
    elif event == "sqlite3.connect" and args and str(args[0]) not in (":memory:", ""):
        raise _refuse(errno.ENOTSUP, f"sqlite3.connect({args[0]!r}) would use the real disk")


def tempfile_dir() -> str:
    """The directory tempfile uses by default, for messages: the cached one, else ``/tmp``
    (``tempfile.gettempdir()`` would probe the fake file system with writes to find one)."""
    import tempfile
    return tempfile.tempdir or "/tmp"


def _install_audit_hook() -> None:
    global _AUDIT_INSTALLED
    if not _AUDIT_INSTALLED:
        sys.addaudithook(_audit)      # cannot be removed; inert unless a guard is on
        _AUDIT_INSTALLED = True


# -- references bound before patching ------------------------------------------------------------
#
# pyfakefs replaces ``os``/``io``/``open`` where a module refers to them by name, and with
# ``patch_default_args=True`` in default arguments (``def f(x, write=os.write)``: semidbm).  A
# class attribute bound at import time (``class _Database: _os = os``: dbm.dumb) is only rebound
# by reloading its module under the patcher, pyfakefs' ``modules_to_reload``; the adapter finds
# such modules itself.  Whatever still holds a real descriptor function is stopped at the call by a
# profile hook (below): the fake file system's descriptors are small integers that collide with
# real ones, so a real ``os.write(fd, …)`` would write into whatever real file has that number.

_FS_MODULE_NAMES = ("os", "io", "_io", "posix", "posixpath", "os.path", "shutil")
_NEVER_RELOAD = ("pyfakefs", "tornpage", "pathlib", "_pytest", "pytest", "pluggy", "importlib",
                 "encodings", "typing", "abc")


def _real_fs_objects() -> tuple[set[int], set[int]]:
    """ids of the real file-system modules, and of their functions (plus ``open``)."""
    mods = {id(sys.modules[n]) for n in _FS_MODULE_NAMES if n in sys.modules}
    fns = {id(open)}
    for n in _FS_MODULE_NAMES:
        m = sys.modules.get(n)
        for v in vars(m).values() if m is not None else ():
            if callable(v) and not isinstance(v, type):
                fns.add(id(v))
    return mods, fns


def _holds_real_fs(cls: type, mods: set[int], fns: set[int]) -> str | None:
    """The name of a class attribute of ``cls`` bound to a real fs module or function."""
    for name, v in list(vars(cls).items()):
        if isinstance(v, (staticmethod, classmethod)):
            v = v.__func__
        if id(v) in mods or id(v) in fns:
            return name
    return None


def modules_binding_real_fs(extra_skip: Iterable[str] = ()) -> dict[ModuleType, str]:
    """Loaded modules whose classes hold a real ``os``/``io``/``open`` (module or function) as a
    class attribute, bound at import before any patcher ran: ``{module: "Class.attr"}``.  pyfakefs
    does not look into class attributes; reloading such a module under the patcher rebinds them
    (dbm.dumb: ``_Database._os``, ``_Database._io``)."""
    mods, fns = _real_fs_objects()
    skipped = {getattr(m, "__name__", None)
               for m in fake_filesystem_unittest.Patcher.SKIPMODULES if m is not None}
    skip = tuple(_NEVER_RELOAD) + tuple(extra_skip)
    found: dict[ModuleType, str] = {}
    for name, mod in list(sys.modules.items()):
        if (not isinstance(mod, ModuleType) or name in skipped or name == "__main__"
                or name.split(".")[0] in skip or name in skip or _is_test_module(mod)):
            continue
        for cname, cls in list(vars(mod).items()):
            if isinstance(cls, type) and getattr(cls, "__module__", None) == name:
                attr = _holds_real_fs(cls, mods, fns)
                if attr is not None:
                    found[mod] = f"{cname}.{attr}"
                    break
    return found


def _is_test_module(mod: ModuleType) -> bool:
    """pytest's test modules and conftest files are never reloaded (their functions are the
    collected tests); the profile hook and the audit hook still stop what they would let escape."""
    base = os.path.basename(getattr(mod, "__file__", None) or "")
    return base.startswith("test_") or base.endswith("_test.py") or base == "conftest.py"


def _real_fd_functions() -> dict[object, str]:
    """The real functions that take a file descriptor, by object: calling one of them from the
    program under test would act on a real descriptor with the fake one's number."""
    names = ("write", "pwrite", "writev", "pwritev", "read", "pread", "readv", "preadv",
             "lseek", "fsync", "fdatasync", "ftruncate", "close", "closerange", "fstat",
             "fchmod", "fchown", "fchdir", "dup", "dup2", "posix_fallocate", "posix_fadvise",
             "copy_file_range", "sendfile", "splice", "lockf", "fstatvfs", "get_inheritable",
             "set_inheritable", "get_blocking", "set_blocking", "device_encoding", "isatty")
    out: dict[object, str] = {}
    for n in names:
        f = getattr(os, n, None)
        if f is not None:
            out[f] = f"os.{n}"
    import fcntl
    for n in ("fcntl", "flock", "lockf", "ioctl"):
        out[getattr(fcntl, n)] = f"fcntl.{n}"
    for mod, name in (("_gdbm", "dbm.gnu.open"), ("_dbm", "dbm.ndbm.open")):
        try:                          # C libraries: they open and write real files themselves
            out[importlib.import_module(mod).open] = name
        except ImportError:
            pass
    return out


_C_LIBRARIES = {"dbm.gnu.open", "dbm.ndbm.open"}


_REAL_FD_FUNCS = _real_fd_functions()
# callers allowed to use real descriptors: pyfakefs' own modules and what it never patches
# (the standard library's os/io, pytest's capture …), never the program under test
_REAL_FD_CALLERS = ("pyfakefs", "os", "io", "_pyio", "posixpath", "genericpath", "_pytest",
                    "pytest_timeout", "linecache", "tokenize", "traceback", "tornpage.faultfs")


_NET_THREAD: int | None = None          # the thread whose guarded run has the profile hook


def _rearm() -> None:
    """CPython drops a profile hook that raised: put it back (called at every fake IO and audit
    event of the guarded thread), so a refusal the program caught does not open the gate."""
    if _NET_THREAD is not None and sys.getprofile() is None and \
            _NET_THREAD == threading.get_ident():
        sys.setprofile(_fd_profile)


def _rearm_after_refusal() -> None:
    """The hook is dropped once it raised: a one-shot trace function puts it back at the next
    Python call (then hands over to the trace function that was there, e.g. coverage's)."""
    prev = sys.gettrace()

    def once(frame, event, arg):
        sys.settrace(prev)
        _rearm()
        return prev(frame, event, arg) if prev is not None else None
    sys.settrace(once)


def _fd_profile(frame, event: str, arg) -> None:
    """``sys.setprofile`` hook of a guarded run: a C call of a real descriptor function from the
    program under test raises :class:`UnsupportedIO` before it happens."""
    if event != "c_call":
        return
    try:
        what = _REAL_FD_FUNCS.get(arg)
    except TypeError:                 # an unhashable callable
        return
    if what is None:
        return
    caller = frame.f_globals.get("__name__", "") or ""
    if any(caller == c or caller.startswith(c + ".") for c in _REAL_FD_CALLERS):
        return
    code = frame.f_code
    _rearm_after_refusal()
    if what in _C_LIBRARIES:
        raise _refuse(errno.ENOTSUP,
                      f"{what}() called from {caller} ({code.co_filename}:{frame.f_lineno}): a C "
                      f"library that writes real files, it cannot be faked.  Fix: use dbm.dumb "
                      f"(shelve: shelve.Shelf(dbm.dumb.open(path, 'c')))")
    raise _refuse(errno.EBADF,
                  f"real {what}() called from {caller} ({code.co_filename}:{frame.f_lineno}, in "
                  f"{code.co_name}) while the fake file system runs: the function was bound "
                  f"before pyfakefs patched (a default argument, class or instance attribute, "
                  f"closure or alias made at import), so it would act on the real descriptor "
                  f"that has the fake one's number.  Fix: import the module after the adapter "
                  f"starts, or pass it to FakeFSAdapter(modules_to_reload=[module]) so pyfakefs "
                  f"reloads it under the patcher")


# -- the adapter ----------------------------------------------------------------------------------

class FakeFSAdapter:
    """A pyfakefs session whose directory ``root`` is a traced, crashable disk.

    Args:
        root: absolute path (in the fake file system) of the directory that is on the simulated
            disk; paths in the trace are relative to it, as on a :class:`SimDisk`.
        device: the device profile of the shadow :class:`SimDisk` (name or profile).
        image: durable contents ``root`` starts from (e.g. a crash state to recover).
        modules_to_reload: modules pyfakefs reloads under its patcher (and again afterwards), so
            that ``os``/``io``/``open`` they bound at import (class attributes, aliases, closures)
            are the fake ones.  Loaded modules whose classes hold a real one are added
            automatically (dbm.dumb: ``_Database._os``; see :func:`modules_binding_real_fs`);
            :attr:`reloaded` says which and why.
        additional_skip_names: modules pyfakefs leaves unpatched (their IO is then refused, not
            faked: the audit and profile hooks still run).
        fd_guard: while :meth:`guard` runs, a ``sys.setprofile`` hook refuses calls of real
            descriptor functions (``os.write``, ``os.fsync`` … bound before patching) from the
            program; it roughly doubles the time of Python-heavy code.  Off only when you know no
            such binding exists.

    Default arguments bound to file-system functions (semidbm's ``write=os.write``) are patched
    by pyfakefs (``patch_default_args=True``).  The root is a mount point of its own in the fake
    file system (its ``st_dev`` differs from ``/tmp``'s), as the simulated disk is a device of
    its own.

    Use as a context manager (or :meth:`start`/:meth:`stop`).  While it runs, ``open``, ``os``,
    ``io``, ``pathlib`` and ``shutil`` everywhere act on the fake file system.  :meth:`load`
    replaces the contents with another image (a crash state) and starts a fresh trace.

    Raises:
        UnsupportedIO: on :meth:`start` when pyfakefs is already patching (e.g. the ``fs``
            fixture is in use) or another adapter runs.
    """

    def __init__(self, root: str = "/tornpage", device: DeviceProfile | str = DEFAULT_DEVICE,
                 image: Image | None = None, *, modules_to_reload: Iterable[ModuleType] = (),
                 additional_skip_names: Iterable[str | ModuleType] = (),
                 fd_guard: bool = True) -> None:
        root = posixpath.normpath(root)
        if not root.startswith("/") or root == "/":
            raise ValueError(f"root must be an absolute directory other than '/', got {root!r}")
        self.root = root
        self.device = device
        self._initial = image
        self.fs = None
        self.disk: SimDisk | None = None
        self._files: dict[int, tuple[FakeFile, SimFile]] = {}
        self._quiet = 0
        self._hint: tuple | None = None
        self._patcher = None
        self.modules_to_reload = list(modules_to_reload)
        self.additional_skip_names = list(additional_skip_names)
        self.reloaded: dict[str, str] = {}
        self.fd_guard = fd_guard
        # every UnsupportedIO raised while this adapter ran, in order: a library that catches
        # OSError may swallow one, and then what it does next is not the code under test
        self.refusals: list[UnsupportedIO] = []

    # -- lifecycle ---------------------------------------------------------------------------
    def __enter__(self) -> "FakeFSAdapter":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self) -> None:
        global _ACTIVE
        if _ACTIVE is not None:
            raise _refuse(errno.EBUSY, "another adapter is already running")
        P = fake_filesystem_unittest.Patcher
        if P.PATCHER is not None or P.REF_COUNT:
            raise _refuse(errno.EBUSY, "pyfakefs is already patching (is the `fs` fixture in "
                                       "use?); the adapter needs its own patcher")
        _install_audit_hook()
        skip = [m.__name__ if isinstance(m, ModuleType) else m for m in self.additional_skip_names]
        found = modules_binding_real_fs(skip)
        reload = list(self.modules_to_reload) + [m for m in found if m not in self.modules_to_reload]
        self.reloaded = {m.__name__: found.get(m, "asked for") for m in reload}
        # pyfakefs' own means: default arguments (semidbm's ``write=os.write``) and reloading
        # modules whose classes bound ``os``/``io`` at import (dbm.dumb's ``_Database._os``)
        self._patcher = P(modules_to_patch={"os": TracedOsModule}, patch_default_args=True,
                          modules_to_reload=reload,
                          additional_skip_names=self.additional_skip_names or None)
        self._patcher.setUp()
        try:
            self.fs = self._patcher.fs
            orig_rename = self.fs.rename
            self.fs.rename = lambda old, new, force_replace=False: \
                self._rename(orig_rename, old, new, force_replace)
            FakeFile.set_initial_contents = _hook_set_initial_contents
            FakeFile.size = property(_orig_size.fget, _hook_size_set)
            FakeDirectory.add_entry = _hook_add_entry
            FakeDirectory.remove_entry = _hook_remove_entry
            _ACTIVE = self
            self.load(self._initial)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        global _ACTIVE
        if _ACTIVE is self:
            _ACTIVE = None
        FakeFile.set_initial_contents = _orig_set_initial_contents
        FakeFile.size = _orig_size
        FakeDirectory.add_entry = _orig_add_entry
        FakeDirectory.remove_entry = _orig_remove_entry
        if self._patcher is not None:
            self._patcher.tearDown()
            self._patcher = None

    @contextmanager
    def quiet(self) -> Iterator[None]:
        """Changes made inside are not traced (used to load images)."""
        self._quiet += 1
        try:
            yield
        finally:
            self._quiet -= 1

    @contextmanager
    def guard(self) -> Iterator[None]:
        """Run the program: in this thread, any IO that would reach the real disk (see the module
        docstring) raises :class:`UnsupportedIO`; no bytecode is written on import."""
        global _GUARD_THREAD, _NET_THREAD
        prev, prev_bc, prev_net = _GUARD_THREAD, sys.dont_write_bytecode, _NET_THREAD
        # a profiler already running keeps its hook (then real descriptor calls are not caught)
        net = self.fd_guard and sys.getprofile() in (None, _fd_profile)
        _GUARD_THREAD, sys.dont_write_bytecode = threading.get_ident(), True
        if net:
            _NET_THREAD = _GUARD_THREAD
            sys.setprofile(_fd_profile)
        try:
            yield
        finally:
            if net:
                _NET_THREAD = prev_net
                if prev_net is None:
                    sys.setprofile(None)
            _GUARD_THREAD, sys.dont_write_bytecode = prev, prev_bc

    def load(self, image: Image | None = None) -> None:
        """Reset the fake file system to ``image`` below ``root`` (all of it durable) and start a
        new trace on a fresh shadow disk.  Open descriptors are closed."""
        assert self.fs is not None, "adapter not started"
        image = image if image is not None else Image()
        with self.quiet():
            self.fs.reset()
            # the root is a device of its own, as the simulated disk is: st_dev differs from
            # /tmp's, and a rename across it fails with EXDEV (see _rename)
            self.fs.add_mount_point(self.root)
            for d in sorted(image.dirs):
                self.fs.makedirs(self._abs(d), exist_ok=True)
            objs = {p: self.fs.create_file(self._abs(p), contents=image.files[p])
                    for p in sorted(image.files)}
        self.disk = SimDisk(self.device, image=image)
        self._files = {id(o): (o, self.disk.open(p)) for p, o in objs.items()}

    # -- inspection ---------------------------------------------------------------------------
    @property
    def trace(self) -> Trace:
        return self.disk.trace

    @property
    def base(self) -> Image:
        return self.disk.base

    def mark(self, label: str, **attrs: object) -> None:
        """Record a labelled event in the trace (see :meth:`SimDisk.mark`)."""
        self.disk.mark(label, **attrs)

    def live_image(self) -> Image:
        """What the program sees below ``root`` now, read from the fake file system."""
        files: dict[str, bytes] = {}
        dirs: set[str] = set()

        def walk(d: FakeDirectory, rel: str) -> None:
            for name in sorted(d.entries):
                e = d.entries[name]
                r = f"{rel}/{name}" if rel else name
                if isinstance(e, FakeDirectory):
                    dirs.add(r)
                    walk(e, r)
                else:
                    files[r] = bytes(e.byte_contents or b"")
        walk(self.fs.resolve(self.root), "")
        return Image(files, dirs)

    def _check(self) -> None:
        """Assert the invariant: the fake tree below ``root`` equals the shadow disk.

        Raises:
            UnsupportedIO: naming the first path that differs (a change that was not traced).
        """
        seen, traced = self.live_image(), self.disk.live_image()
        for p in sorted(set(seen.files) | set(traced.files)):
            if seen.files.get(p) != traced.files.get(p):
                raise _refuse(errno.EIO, f"{p!r} changed by an IO path the adapter does not "
                                         f"intercept (fake file system and trace disagree)")
        if seen.dirs != traced.dirs:
            raise _refuse(errno.EIO, f"directories disagree: fake {sorted(seen.dirs)}, traced "
                                     f"{sorted(traced.dirs)}")

    # -- paths --------------------------------------------------------------------------------
    def _abs(self, rel: str) -> str:
        return f"{self.root}/{rel}" if rel else self.root

    def _rel(self, path) -> str | None:
        """``path`` (absolute, normalised) relative to ``root``; None outside it."""
        path = helpers.to_string(path)
        if path == self.root:
            return ""
        if path.startswith(self.root + "/"):
            return path[len(self.root) + 1:]
        return None

    # -- recording ----------------------------------------------------------------------------
    def _record_content(self, f: SimFile, old: bytes, new: bytes) -> None:
        hint, self._hint = self._hint, None
        if hint is not None:
            off = len(old) if hint[0] is None else hint[0]
            if _splice(old, off, hint[1]) == new:
                f.pwrite(hint[1], off)
                return
        if len(new) < len(old):
            f.truncate(len(new))
            old = old[:len(new)]
        a = _first_diff(old, new)
        if len(new) > len(old):
            f.pwrite(new[a:], a)
        elif a < len(old):
            f.pwrite(new[a:_last_diff(old, new)], a)

    def _on_fsync(self, h) -> None:
        if isinstance(h, FakeDirWrapper):
            rel = self._rel(h.get_object().path)
            if rel is not None:
                self.disk.fsync_dir(rel)
        elif isinstance(h, FakeFileWrapper):
            t = _tracked(h.file_object)
            if t is not None:
                t[1].fsync()

    def _sync_all(self) -> None:
        for obj, f in list(self._files.values()):
            f.fsync()
        for d in [""] + sorted(self.disk.live_image().dirs, key=lambda p: (p.count("/"), p)):
            self.disk.fsync_dir(d)

    def _rename(self, orig, old, new, force_replace: bool) -> None:
        if self._quiet:
            return orig(old, new, force_replace)
        fs = self.fs
        o = fs.absnormpath(helpers.to_string(fs.make_string_path(old)))
        n = fs.absnormpath(helpers.to_string(fs.make_string_path(new)))
        ro, rn = self._rel(o), self._rel(n)
        if ro is None and rn is None:
            return orig(old, new, force_replace)
        if ro is None or rn is None:
            raise _refuse(errno.EXDEV,
                          f"rename {o!r} -> {n!r} crosses the traced root {self.root!r}, a "
                          f"device of its own (a real rename fails with EXDEV too).  A file "
                          f"made outside the root (a temporary file in "
                          f"{tempfile_dir()!r}?) cannot be renamed into it: make the library "
                          f"create it below the root, e.g. tempfile.mkstemp(dir=...)/"
                          f"NamedTemporaryFile(dir=...) with a directory below the root, "
                          f"persistqueue.Queue(path, tempdir=<a directory below the root>), or "
                          f"tempfile.tempdir = <a directory below the root> in setup")
        if fs.exists(o, check_link=True) and isinstance(fs.lresolve(o), FakeDirectory):
            raise _refuse(errno.ENOTSUP, f"renaming directory {ro!r} below the traced root: "
                                         f"not modelled")
        with self.quiet():
            orig(old, new, force_replace)
        if ro != rn:
            self.disk.rename(ro, rn)
            obj = fs.lresolve(n)
            self._files[id(obj)] = (obj, self.disk.open(rn))
