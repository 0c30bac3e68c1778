"""Crash-test third-party storage libraries with tornpage's pyfakefs adapter, and print the outcomes
as a markdown table (pasted into docs/third-party.md).

    python docs/third_party.py            # every library that is installed
    python docs/third_party.py tinydb     # some of them

Each scenario is a realistic put/get workload on one library: ``setup`` creates the store (durable
before the operation), ``operation`` puts, updates and deletes keys and acknowledges each change
once the library's call returned (after the library's own sync/flush call where it has one),
``recover`` reopens the store, ``check`` compares every key with what was promised.  Everything
runs through ``tornpage.crash_test(..., vfs_kind="pyfakefs")``: the library's ``open``/``os``
calls act on a fake file system whose IO is traced, and nothing reaches the real disk.

tests/test_third_party.py imports this file and asserts the outcome of each scenario.
"""
from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import os
import platform
import sys
import traceback
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable

import tornpage
from tornpage import ack, begin

# the changes every key-value scenario makes: (key, value), value None deletes the key
CHANGES = [("k0", "v0"), ("k1", "v1"), ("k2", "v2"), ("k0", "v0-new"), ("k1", None)]


@dataclass
class Scenario:
    name: str                      # the library as users know it
    module: str                    # what to import (skip the scenario when it is missing)
    dist: str | None               # its PyPI distribution (None: standard library)
    operation: Callable
    recover: Callable
    check: Callable
    setup: Callable | None = None
    kwargs: dict = field(default_factory=dict)

    def available(self) -> bool:
        try:
            importlib.import_module(self.module)
        except ImportError:
            return False
        return True

    def version(self) -> str:
        if self.dist is None:
            return f"stdlib (Python {platform.python_version()})"
        return importlib.metadata.version(self.dist)


def _check_kv(get: Callable[[str], object], promised) -> None:
    """Every key has its acknowledged value (or that of an in-flight change)."""
    for key in {k for k, _ in CHANGES}:
        got = get(key)
        assert got in promised.allowed(key), \
            f"{key!r}: promised {promised.get(key)!r}, recovered {got!r}"


def _apply_changes(store, encode=lambda value: value) -> None:
    """CHANGES to a dbm-like mapping, each made durable by its ``sync()`` (the documented
    durability call of semidbm, dbm.dumb and shelve) before it is acknowledged; then close."""
    for key, value in CHANGES:
        begin(key=key, value=value)
        if value is None:
            del store[key]
        else:
            store[key] = encode(value)
        store.sync()
        ack(key=key, value=value)
    store.close()


# -- semidbm: a pure-Python append-only dbm (os.write bound as a default argument) -------------

@contextmanager
def _semidbm_without_mmap():
    """semidbm memory-maps its data file to load the index (the adapter refuses mmap); when the
    mmap loader cannot be imported it takes its own fallback, a read()-based loader."""
    saved = sys.modules.get("semidbm.loaders.mmapload", _MISSING)
    sys.modules["semidbm.loaders.mmapload"] = None
    try:
        yield
    finally:
        if saved is _MISSING:
            del sys.modules["semidbm.loaders.mmapload"]
        else:
            sys.modules["semidbm.loaders.mmapload"] = saved


_MISSING = object()


def _semidbm_open(root):
    import semidbm
    with _semidbm_without_mmap():
        return semidbm.open(f"{root}/db", "c")


def _semidbm_setup(root):
    _semidbm_open(root).close()


def _semidbm_operation(root):
    _apply_changes(_semidbm_open(root))


def _semidbm_get(root):
    db = _semidbm_open(root)

    def get(key):
        try:
            return db[key].decode()
        except KeyError:                            # (`key in db` wants bytes keys)
            return None
    return db, get


def _semidbm_recover(root):
    _semidbm_get(root)[0].close()


def _semidbm_check(root, promised):
    db, get = _semidbm_get(root)
    try:
        _check_kv(get, promised)
    finally:
        db.close()


# -- dbm.dumb and shelve: the standard library's pure-Python dbm (class attribute _os) -----------

def _dumb_setup(root):
    import dbm.dumb
    dbm.dumb.open(f"{root}/db", "c").close()


def _dumb_operation(root):
    import dbm.dumb
    _apply_changes(dbm.dumb.open(f"{root}/db", "c"))     # its sync() writes the index (.dir)


def _dumb_recover(root):
    import dbm.dumb
    dbm.dumb.open(f"{root}/db", "c").close()


def _dumb_check(root, promised):
    import dbm.dumb
    db = dbm.dumb.open(f"{root}/db", "c")
    try:
        _check_kv(lambda k: db[k].decode() if k in db else None, promised)
    finally:
        db.close()


def _shelf(root):
    # shelve.open picks dbm's default module; dbm.gnu/dbm.ndbm are C libraries writing real files
    # (refused by the adapter), so open the shelf on dbm.dumb explicitly
    import dbm.dumb
    import shelve
    return shelve.Shelf(dbm.dumb.open(f"{root}/shelf", "c"))


def _shelve_setup(root):
    _shelf(root).close()


def _shelve_operation(root):
    _apply_changes(_shelf(root), encode=lambda value: {"value": value})


def _shelve_recover(root):
    _shelf(root).close()


def _shelve_check(root, promised):
    shelf = _shelf(root)
    try:
        _check_kv(lambda k: shelf[k]["value"] if k in shelf else None, promised)
    finally:
        shelf.close()


# -- tinydb: a JSON document store ------------------------------------------------------------

def _tinydb_setup(root):
    from tinydb import TinyDB
    TinyDB(f"{root}/db.json").close()


def _tinydb_operation(root):
    from tinydb import Query, TinyDB
    db = TinyDB(f"{root}/db.json")
    for key, value in CHANGES:
        begin(key=key, value=value)
        if value is None:
            db.remove(Query().key == key)
        else:
            db.upsert({"key": key, "value": value}, Query().key == key)
        ack(key=key, value=value)                   # JSONStorage flushes and fsyncs each write
    db.close()


def _tinydb_recover(root):
    from tinydb import TinyDB
    TinyDB(f"{root}/db.json").close()


def _tinydb_check(root, promised):
    from tinydb import Query, TinyDB
    db = TinyDB(f"{root}/db.json")
    try:
        def get(k):
            doc = db.get(Query().key == k)
            return None if doc is None else doc["value"]
        _check_kv(get, promised)
    finally:
        db.close()


# -- persist-queue: a file-based FIFO queue (temporary files through tempfile) -----------------

ITEMS = ["job-0", "job-1", "job-2", "job-3"]


def _pq_setup(root):
    import persistqueue
    persistqueue.Queue(f"{root}/q")                 # default tempdir: see docs/third-party.md


def _pq_operation(root):
    import persistqueue
    q = persistqueue.Queue(f"{root}/q")
    for item in ITEMS:
        begin(key=item, value="queued")
        q.put(item)
        ack(key=item, value="queued")
    for item in ITEMS[:2]:                          # consume the first two
        begin(key=item, value="done")
        got = q.get(block=False)
        assert got == item, (got, item)
        q.task_done()
        ack(key=item, value="done")


def _pq_items(root):
    import persistqueue
    q = persistqueue.Queue(f"{root}/q")
    items = []
    while True:
        try:
            items.append(q.get(block=False))
        except persistqueue.Empty:
            return items


def _pq_recover(root):
    _pq_items(root)


def _pq_check(root, promised):
    items = _pq_items(root)
    for item in ITEMS:
        state = "queued" if item in items else ("done" if promised.get(item) else None)
        assert state in promised.allowed(item), \
            f"{item!r}: promised {promised.get(item)!r}, recovered queue {items!r}"
    assert items == sorted(items), f"queue out of order: {items!r}"


# -- atomicwrites: write a whole file atomically (temporary file + rename + fsyncs) -------------

VERSIONS = [b"version 1\n", b"version 2, longer\n" * 40, b"v3\n"]


def _aw_operation(root):
    from atomicwrites import atomic_write
    for v in VERSIONS:
        begin(key="config", value=v)
        with atomic_write(f"{root}/config", mode="wb", overwrite=True) as f:
            f.write(v)
        ack(key="config", value=v)


def _aw_recover(root):
    pass


def _aw_check(root, promised):
    path = f"{root}/config"
    got = open(path, "rb").read() if os.path.exists(path) else None
    assert got in promised.allowed("config"), \
        f"config: promised {promised.get('config')!r}, recovered {got!r}"


_PUT = [
    Scenario("semidbm", "semidbm", "semidbm", _semidbm_operation, _semidbm_recover,
             _semidbm_check, _semidbm_setup),
    Scenario("dbm.dumb", "dbm.dumb", None, _dumb_operation, _dumb_recover, _dumb_check,
             _dumb_setup),
    Scenario("shelve", "shelve", None, _shelve_operation, _shelve_recover, _shelve_check,
             _shelve_setup),
    Scenario("tinydb", "tinydb", "tinydb", _tinydb_operation, _tinydb_recover, _tinydb_check,
             _tinydb_setup),
    Scenario("persist-queue", "persistqueue", "persist-queue", _pq_operation, _pq_recover,
             _pq_check, _pq_setup),
    Scenario("atomicwrites", "atomicwrites", "atomicwrites", _aw_operation, _aw_recover,
             _aw_check),
]


def _created(s: Scenario) -> Scenario:
    """The same workload on a store the operation itself creates (first use): no setup."""
    return Scenario(f"{s.name} (create)", s.module, s.dist, _then(s.setup, s.operation),
                    s.recover, s.check, None, s.kwargs)


def _then(first, second):
    def both(root):
        if first is not None:
            first(root)
        second(root)
    return both


# "<lib>": the store exists (setup= made it durable), the operation puts/updates/deletes;
# "<lib> (create)": the operation creates the store first, as a program's first run does
SCENARIOS = {s.name: s for s in _PUT + [_created(s) for s in _PUT if s.setup is not None]}


# -- running them ------------------------------------------------------------------------------

@dataclass
class Outcome:
    library: str
    version: str
    consistent: bool
    kind: str              # "crash-consistent", or the failing phase and exception type
    explanation: str       # one line
    error: BaseException | None = None
    result: object = None


def _short(text: str, n: int = 150) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[:n - 1] + "…"


def run(name: str, *, seed: int = 0, max_states: int = 2000, **kwargs) -> Outcome:
    """Crash-test one scenario; its outcome (a crash-consistency failure is an outcome, not an
    exception; anything else the run raises, e.g. UnsupportedIO, propagates)."""
    s = SCENARIOS[name]
    try:
        result = tornpage.crash_test(s.operation, s.recover, s.check, vfs_kind="pyfakefs",
                                     setup=s.setup, seed=seed, max_states=max_states,
                                     **{**s.kwargs, **kwargs})
    except tornpage.CrashConsistencyError as e:
        cause = e.__cause__
        if cause is not None and cause.__traceback__ is not None:
            traceback.clear_frames(cause.__traceback__)   # drop the library's objects now,
            #                                               while the fake file system exists
        check_line = next((ln for ln in e.lines if ln.startswith(("check said", "recovery"))), "")
        phase, _, said = check_line.partition(": ")
        etype = said.split(":")[0]
        kind = f"{'check failed' if phase.startswith('check') else 'recovery raised'} " \
               f"({etype})"
        crash = e.lines[0].split(": ", 1)[-1]
        losses = [ln for ln in e.lines[1:] if not ln.startswith(
            ("not yet durable", "promised", "check said", "recovery raised"))]
        expl = f"{said} — crash after {crash}; " + (losses[0] if losses else "")
        return Outcome(s.name, s.version(), False, kind, _short(expl, 220), e)
    return Outcome(s.name, s.version(), True, "crash-consistent",
                   f"{result.states} crash states of a {result.operations}-operation trace "
                   f"passed", None, result)


def table(outcomes: list[Outcome]) -> str:
    rows = ["| library | version | outcome | explanation |", "|---|---|---|---|"]
    for o in outcomes:
        expl = o.explanation.replace("|", "\\|")
        rows.append(f"| {o.library} | {o.version} | {o.kind} | {expl} |")
    return "\n".join(rows)


DOC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "third-party.md")
BEGIN, END = "<!-- BEGIN generated:third-party -->\n", "<!-- END generated:third-party -->"


def main(argv: list[str]) -> int:
    """Print the table; with ``--update``, also rewrite its marked block in third-party.md.
    An unknown scenario name is a usage error (exit 2)."""
    ap = argparse.ArgumentParser(description="Crash-test third-party storage libraries with "
                                             "tornpage's pyfakefs adapter and print the table.")
    ap.add_argument("--update", action="store_true",
                    help="also rewrite the generated table in docs/third-party.md")
    ap.add_argument("scenario", nargs="*", metavar="SCENARIO",
                    help=f"scenarios to run (default: all): {', '.join(sorted(SCENARIOS))}")
    args = ap.parse_args(argv)
    unknown = [n for n in args.scenario if n not in SCENARIOS]
    if unknown:
        ap.error(f"unknown scenario {unknown[0]!r}; known: {', '.join(sorted(SCENARIOS))}")
    update = args.update
    names = args.scenario or sorted(SCENARIOS, key=lambda n: (n.split(" ")[0], n))
    outcomes, missing = [], []
    for n in names:
        if not SCENARIOS[n].available():
            missing.append(n)
            continue
        outcomes.append(run(n))
    text = table(outcomes)
    if missing:
        text += f"\n\n(not installed, skipped: {', '.join(missing)})"
    text += (f"\n\nGenerated by `python docs/third_party.py --update` (tornpage pyfakefs adapter, "
             f"seed 0, device sector512, Python {platform.python_version()}).")
    print(text)
    if update:
        with open(DOC) as f:
            doc = f.read()
        a, b = doc.index(BEGIN) + len(BEGIN), doc.index(END)
        with open(DOC, "w") as f:
            f.write(doc[:a] + text + "\n" + doc[b:])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
