"""The sysbench-style ``oltp_read_write`` workload, as data (steps) and as Hypothesis strategies.

A workload is a list of steps, each a JSON-friendly list, run against the engine over a
:class:`~faultfs.SimDisk`.  Transactions live in slots 0..2, so up to three interleave; a
statement on an empty slot begins a transaction (at the run's isolation level).  Steps:

    ["point_select", slot, id]             SELECT c FROM sbtest1 WHERE id=?
    ["range_select", slot, id, n]          SELECT c FROM sbtest1 WHERE id BETWEEN ? AND ?+n
    ["sum_range", slot, id, n]             SELECT SUM(k) FROM sbtest1 WHERE id BETWEEN ...
    ["order_range", slot, id, n]           SELECT c ... WHERE id BETWEEN ... ORDER BY c
    ["distinct_range", slot, id, n]        SELECT DISTINCT c ... WHERE id BETWEEN ... ORDER BY c
    ["k_select", slot, k]                  SELECT id FROM sbtest1 WHERE k=? (secondary index)
    ["update_index", slot, id, seed]       UPDATE sbtest1 SET k=k+1 WHERE id=?
    ["update_non_index", slot, id, seed]   UPDATE sbtest1 SET c=? WHERE id=?
    ["delete_insert", slot, id, seed]      DELETE ... WHERE id=?; INSERT ... (id, ...)
    ["insert", slot, id, seed]             INSERT a new id (growth: page splits)
    ["oltp_trx", slot, id, seed]           sysbench oltp_read_write's whole transaction:
                                           point selects, simple, sum, order and distinct
                                           ranges, index update, non-index update, delete +
                                           insert, commit (ids derived from id and seed)
    ["bulk_insert", slot, id, n, seed]     INSERT n consecutive new ids in one transaction
                                           (page splits, log pressure and wrap)
    ["bulk_update", slot, id, n, seed]     UPDATE c of n consecutive ids in one transaction
                                           (undo spanning many pages, log pressure)
    ["bulk_delete", slot, id, n]           DELETE n consecutive ids in one transaction (purge
                                           then empties pages: merges, tree shrink)
    ["commit", slot]  ["rollback", slot]   on an empty slot, while a prepared transaction
                                           waits: XA COMMIT / XA ROLLBACK of the oldest one
    ["prepare", slot]                      XA PREPARE the slot's transaction (or, on an empty
                                           slot, the next slot's, if any); the slot lets go of
                                           it (XA END), so its next statement begins anew
    ["create_table", n]                    CREATE TABLE sbtest2 or sbtest3 (n even / odd), with
                                           the index on k when n % 4 >= 2, then its load: one
                                           transaction inserts 10, 25 or 40 rows (n % 3) and
                                           commits (``load-begin`` / ``load-ack`` markers)
    ["drop_table", n]                      DROP TABLE sbtest2 or sbtest3
    ["rename_table", n]                    RENAME TABLE sbtest2 TO sbtest3 (n even) or back
                                           (DDL on a table that does not exist, or onto one
                                           that does, is skipped, as IF [NOT] EXISTS would)
    ["background", n]                      n steps of log writer / page cleaner / checkpoint /
                                           background rollback / purge
    ["checkpoint"]
    ["purge", n]                           n purge batches (InnoDB's purge threads)

Reads are consistent reads, checked as they happen against a snapshot model kept by the
runner: the committed versions of every row in commit order, a REPEATABLE READ transaction's
snapshot taken at its first read, a READ COMMITTED one's at every statement, its own writes
on top.  A read that returns anything else is an isolation anomaly (``run.read_anomalies``),
which the campaign reports as a finding whatever the crash.  Updates read the current version
under an exclusive lock (SELECT ... FOR UPDATE), as UPDATE does.

A statement that hits a row lock held by another slot's transaction rolls its own transaction
back (as innodb_rollback_on_timeout would), which the oracle sees as a rollback.

Setup (sysbench ``prepare``) creates the database and table, loads ``table_size`` rows, takes a
sharp checkpoint and emits the ``initial-state`` marker (its rows and tables); crash positions
lie after it.  DDL statements announce themselves with ``ddl-begin`` (op, table, new name) and
``ddl-ack`` once they returned (checkers.oracle.check_dictionary); a CREATE is followed by the
table's load, one transaction between ``load-begin`` and ``load-ack`` markers whose rows no
other load writes (checkers.oracle.check_ddl_rows).  The workload's other transactions touch
sbtest1 only.
Transactions announce themselves through trace markers (``commit-begin`` with their writes,
``commit-ack`` with the commit LSN once commit returned), which is all the oracle reads.  With
flush_log_at_trx_commit 0 or 2 the ack carries ``mode`` too, and after every step that moved
them the log's LSNs are marked: ``log-written lsn=`` (written to the OS) and ``log-durable
lsn=`` (fsynced), from which the oracle learns which acknowledged commits must survive.
"""
from __future__ import annotations

import functools
import random
import struct
from collections import Counter
from dataclasses import dataclass, field

from hypothesis import strategies as st

from tornpage.checkers.probes import WORKLOAD_PROBES
from tornpage.engine import (DuplicateKey, Engine, EngineConfig, EngineError, LockConflict,
                             WatchdogExpired)
from tornpage.engine import row
from tornpage.engine.log import LOG_START_LSN, OS_FILE_LOG_BLOCK_SIZE
from tornpage.engine.trx_sys import TRX_SYS_TRX_ID_WRITE_MARGIN
from tornpage.faultfs import Image, SimDisk, get_device
from tornpage.faultfs.media import KINDS, MediaFaultError, parse_schedule

TABLE = "sbtest1"
SLOTS = 3
DDL_TABLES = ("sbtest2", "sbtest3")     # the tables DDL steps create, drop and rename


def row_value(id_: int, k: int, seed: int) -> bytes:
    """sysbench's (k, c, pad) row image: k INT, c CHAR(120), pad CHAR(60)."""
    c = "-".join(f"{(seed * 1000003 + id_ * 7919 + j * 104729) % 10**11:011d}"
                 for j in range(10))[:119].ljust(120)
    pad = "-".join(f"{(seed + id_ + j) % 10**11:011d}" for j in range(5))[:59].ljust(60)
    return struct.pack(">I", k) + c.encode() + pad.encode()


row_k = row.row_k      # the k column: the value's first 4 bytes (the engine's index key)


# buffer pool page accesses one opened engine may make before it is taken for hung in a loop
# that makes no IO (engine.errors.WatchdogExpired); measured: at most 5,677 per engine, workload
# or crash state, in `tornpage run --examples 40` with seed 0, and seed 1 with --media-faults
WATCHDOG_PAGE_ACCESSES = 250_000


@dataclass(frozen=True)
class WorkloadSettings:
    """Everything besides the steps that determines the trace (part of every artifact)."""
    table_size: int = 60
    page_size: int = 4096
    buffer_pool_pages: int = 24
    log_file_size: int = 192 * 1024
    doublewrite: bool = True
    device: str = "sector512"
    media_faults: tuple = ()        # faultfs.media schedule, ((kind, at, arg), ...), after setup
    flush_log_at_trx_commit: int = 1    # innodb_flush_log_at_trx_commit: 0, 1 or 2 (artifacts
                                        # older than modes 0 and 2 lack the key: 1)
    isolation: str = "REPEATABLE-READ"  # transaction_isolation: or READ-COMMITTED
    n_rollback_segments: int = 2        # innodb_rollback_segments
    initial_lsn: int = LOG_START_LSN    # the database's age (EngineConfig.initial_lsn,
    initial_trx_id: int = 0             # .initial_trx_id): see database_age_strategy
    log_flush_every_mtrs: int = 0       # EngineConfig.log_flush_every_mtrs: see
                                        # LOG_FLUSH_EVERY_MTRS

    def engine_config(self) -> EngineConfig:
        return EngineConfig(page_size=self.page_size, buffer_pool_pages=self.buffer_pool_pages,
                            log_file_size=self.log_file_size, doublewrite=self.doublewrite,
                            doublewrite_batch_pages=8, page_cleaner_batch=4,
                            flush_log_at_trx_commit=self.flush_log_at_trx_commit,
                            transaction_isolation=self.isolation,
                            n_rollback_segments=self.n_rollback_segments,
                            watchdog_page_accesses=WATCHDOG_PAGE_ACCESSES,
                            initial_lsn=self.initial_lsn, initial_trx_id=self.initial_trx_id,
                            log_flush_every_mtrs=self.log_flush_every_mtrs)

    def to_json(self) -> dict:
        d = dict(self.__dict__)
        d["media_faults"] = [list(f) for f in self.media_faults]
        return d

    @classmethod
    def from_json(cls, d: dict) -> "WorkloadSettings":
        """Raises TypeError / ValueError (MediaFaultError) for malformed settings."""
        d = dict(d)
        d["media_faults"] = tuple(tuple(f.to_json())
                                  for f in parse_schedule(d.get("media_faults", ())))
        out = cls(**d)
        out.engine_config()         # ConfigError (a ValueError): a setting out of range
        return out

    def schedule(self) -> tuple:
        return parse_schedule(self.media_faults)


@dataclass
class WorkloadRun:
    """One executed workload: the disk, its trace and what the campaign needs to crash it."""
    settings: WorkloadSettings
    steps: list
    disk: SimDisk
    base: Image
    setup_end: int                      # trace index of the initial-state marker
    writers: dict = field(default_factory=dict)   # (table, key, value) → who wrote it
    events: list = field(default_factory=list)    # (trace index, words) for explanations
    engine_stats: dict = field(default_factory=dict)
    stopped: str | None = None          # why the engine stopped before the last step, if it did
    crashed: bool = False               # ... and it was no typed refusal (EngineError) but a crash
    hung: bool = False                  # ... or its watchdog expired (a loop that makes no IO)
    lsn_span: tuple = (0, 0)            # the log's end LSN at the initial state and at the end
    trx_id_span: tuple = (0, 0)         # the next trx id at the initial state and at the end
    read_anomalies: list = field(default_factory=list)  # reads the snapshot model disagrees with
    setup_stats: dict = field(default_factory=dict)     # engine stats at the initial state

    @property
    def trace(self):
        return self.disk.trace


def run_workload(settings: WorkloadSettings, steps: list) -> WorkloadRun:
    """Create the database, load it, then run ``steps``; never crashes by itself.

    Deterministic: the same settings and steps give the same trace, byte for byte.  An engine
    that fails while it creates and loads the database gives a run that stopped at once (no
    ``initial-state`` marker: every crash state's check reports the failure).
    """
    disk = SimDisk(get_device(settings.device))
    eng = None
    try:
        eng = Engine.create(disk, settings.engine_config())
        _load(eng, settings)
        rows = tuple((TABLE, k, v) for k, v in sorted(eng.all_rows(TABLE).items()))
    except (Exception, WatchdogExpired) as e:  # noqa: BLE001 - as below, in the setup
        run = WorkloadRun(settings, steps, disk, disk.base, len(disk.trace) - 1)
        _engine_failed(run, e, "while creating and loading the database")
        run.engine_stats = dict(eng.stats) if eng is not None else {}
        return run
    disk.mark("initial-state", rows=rows, tables=(TABLE,))
    run = WorkloadRun(settings, steps, disk, disk.base, len(disk.trace) - 1)
    run.setup_stats = dict(eng.stats)
    lsn, trx_id = eng.log.lsn, eng.trx_sys.max_trx_id
    disk.arm(settings.schedule())
    try:
        _Runner(eng, disk, run).run(steps)
    except (Exception, WatchdogExpired) as e:  # noqa: BLE001 - the process dies here
        _engine_failed(run, e)
    run.engine_stats = dict(eng.stats)
    run.lsn_span, run.trx_id_span = (lsn, eng.log.lsn), (trx_id, eng.trx_sys.max_trx_id)
    return run


def _load(eng: Engine, settings: WorkloadSettings) -> None:
    """The setup after Engine.create: the table, its rows in one transaction, a sharp
    checkpoint (the initial state)."""
    eng.create_table(TABLE, k_index=True)
    trx = eng.begin()
    for i in range(1, settings.table_size + 1):
        trx.insert(TABLE, i, row_value(i, i, 0))
    trx.commit()
    eng.make_checkpoint(flush=True)


def setup_redo_bytes(settings: WorkloadSettings, mutant: str | None = None) -> int:
    """Bytes of LSN the setup (create, load, sharp checkpoint) takes for ``settings`` on a new
    database, or 0 when the setup fails: what an aged database's start is measured back from
    (:func:`database_age_strategy`).  The engine as it is now (``mutant`` planted or not, which
    is part of the key the result is kept under: a mutant may change the setup's redo)."""
    # only what changes the setup's redo is kept (so few setups are run per process)
    base = WorkloadSettings(table_size=settings.table_size, page_size=settings.page_size,
                            buffer_pool_pages=settings.buffer_pool_pages,
                            log_file_size=settings.log_file_size,
                            doublewrite=settings.doublewrite,
                            n_rollback_segments=settings.n_rollback_segments)
    return _setup_redo_bytes(base, mutant)


@functools.lru_cache(maxsize=512)
def _setup_redo_bytes(settings: WorkloadSettings, mutant: str | None) -> int:
    try:
        eng = Engine.create(SimDisk(get_device(settings.device)), settings.engine_config())
        _load(eng, settings)
    except (Exception, WatchdogExpired):  # noqa: BLE001 - the workload's run reports it
        return 0
    return eng.log.lsn - LOG_START_LSN


def age_words(run: WorkloadRun) -> str | None:
    """What an explanation says of a database created aged (None for a new one): where its
    counters started, where the workload took them and which width boundary they crossed."""
    s = run.settings
    if s.initial_lsn == LOG_START_LSN and not s.initial_trx_id:
        return None
    crossings = [f"LSN 2**{b}" for b in LSN_BOUNDARIES if crossed(run.lsn_span, b)] + \
        [f"trx id 2**{b}" for b in TRX_ID_BOUNDARIES if crossed(run.trx_id_span, b)]
    return (f"database created aged: log from LSN {s.initial_lsn}, trx ids from "
            f"{s.initial_trx_id + TRX_SYS_TRX_ID_WRITE_MARGIN}; the workload took the LSN "
            f"{run.lsn_span[0]}..{run.lsn_span[1]} and trx ids {run.trx_id_span[0]}.."
            f"{run.trx_id_span[1]}" + (f", crossing {' and '.join(crossings)}" if crossings
                                        else ""))


def crossed(span: tuple, bits: int) -> bool:
    """Whether a counter that went from ``span[0]`` to ``span[1]`` (the next LSN or trx id, at
    the initial state and at the end) was used on both sides of ``2**bits``: values below it
    and at least one value ``2**bits`` or above, which only a next value past it shows."""
    return span[0] < 1 << bits < span[1]


def _engine_failed(run: WorkloadRun, e: BaseException, when: str = "") -> None:
    """Record why the engine stopped: a typed refusal (EngineError: a media fault it refused, or
    a bug), a crash (any other exception, e.g. its own layout assertion, or garbage it did not
    verify: always a finding, see crashcheck) or a hang (its watchdog expired); the trace so
    far is what the crash states are cut from."""
    run.stopped = f"{type(e).__name__}: {e}" + (f" ({when})" if when else "")
    run.hung = isinstance(e, WatchdogExpired)
    run.crashed = not run.hung and not isinstance(e, EngineError)
    what = "hung" if run.hung else "crashed" if run.crashed else "stopped"
    run.events.append((len(run.disk.trace), f"engine {what}: {run.stopped}"))


class _Runner:
    def __init__(self, eng: Engine, disk: SimDisk, run: WorkloadRun) -> None:
        self.eng, self.disk, self.run_ = eng, disk, run
        self.slots: dict[int, object] = {}
        self.writes: dict[int, dict[int, bytes | None]] = {}
        self.mode = eng.config.flush_log_at_trx_commit
        self.marked: tuple = (None, None)     # (written, durable) LSNs as markers last said
        # the snapshot model: committed versions of each row, [(commit seq, value or None)]
        self.versions: dict[int, list] = {k: [(0, v)] for _, k, v in
                                          disk.trace.markers("initial-state")[-1][1].get("rows", ())}
        self.seq = 0                          # commits so far
        self.loads = 0                        # DDL tables loaded so far
        self.snap: dict[int, int] = {}        # REPEATABLE READ trx id → its snapshot's seq
        self.rc = eng.config.transaction_isolation == "READ-COMMITTED"
        self.step_no = 0
        self.prepared: list = []              # prepared transactions no slot holds, oldest first
        self.committed_at: dict[int, int] = {}    # trx id → its commit's seq
        eng.purge.observer = self._purge_begins

    def _mark_log(self) -> None:
        """With flush_log_at_trx_commit 0 or 2: mark the LSN the log was written to the OS up
        to (``log-written``) and fsynced up to (``log-durable``), each when it changed since
        the last marker (first at the start of the run).  With 1 every acknowledged commit is
        durable: no markers."""
        if self.mode == 1:
            return
        written, durable = self.eng.log.written_lsn, self.eng.log.flushed_lsn
        if written != self.marked[0]:
            self.disk.mark("log-written", lsn=written)
        if durable != self.marked[1]:
            self.disk.mark("log-durable", lsn=durable)
        self.marked = (written, durable)

    def _trx(self, slot: int):
        t = self.slots.get(slot)
        if t is None:
            t = self.eng.begin()
            self.slots[slot] = t
            self.writes[t.id] = {}
        return t

    def _note(self, words: str) -> None:
        self.run_.events.append((len(self.disk.trace), words))

    def _end(self, slot, how: str) -> None:
        """End the transaction of ``slot`` (or, a Trx, a detached prepared one)."""
        t = self.slots.pop(slot) if isinstance(slot, int) else slot
        writes = self.writes.pop(t.id)
        if how == "committed":
            self.seq += 1
            self.committed_at[t.id] = self.seq
            for k, v in writes.items():
                self.versions.setdefault(k, []).append((self.seq, v))
        self.snap.pop(t.id, None)
        for k, v in writes.items():
            self.run_.writers.setdefault((TABLE, k, v), f"trx {t.id} ({how})")
        if how != "committed":
            self._reread_k_after_rollback(writes)

    def _reread_k_after_rollback(self, writes: dict) -> None:
        """After a rollback, every open snapshot (a REPEATABLE READ transaction that has read)
        reads again, through the secondary index, each k value the rolled-back rows had in the
        rolled-back writes, have now, or have in the version that snapshot sees: a rollback
        must leave (delete-marked) every entry an old read view still needs, and no entry a
        read view would wrongly see."""
        readers = [t for t in self.slots.values() if t.id in self.snap]
        if not readers or not writes:
            return
        ks = {row_k(v) for v in writes.values() if v is not None}
        for key in writes:
            if self.versions.get(key) and (v := self.versions[key][-1][1]) is not None:
                ks.add(row_k(v))
            for t in readers:
                if (v := self._expected(t, key, self.snap[t.id])) is not None:
                    ks.add(row_k(v))
        for t in readers:
            for k in sorted(ks):
                self._k_select(t, k)

    def _purge_begins(self, trx_id: int) -> None:
        """Purge is about to remove what the undo log of ``trx_id`` holds: every open snapshot
        must already see that transaction's commit, or a version it may read goes.  Checked
        against this model's commit order and snapshots, not the engine's read views, so a
        purge that starts too early is an anomaly at once, whether or not a later read would
        have reached what it removed.  Transactions not in ``committed_at`` (the setup's, and
        a DDL table's load) count as commit 0: the setup precedes every snapshot, and a load
        only inserts, whose undo is freed at commit and never reaches purge."""
        seq = self.committed_at.get(trx_id, 0)
        for t in self.slots.values():
            if t.id in self.snap and seq > self.snap[t.id]:
                msg = (f"step {self.step_no}: purge began on the undo log of trx {trx_id}, "
                       f"committed {seq - self.snap[t.id]} commit(s) after the snapshot of trx "
                       f"{t.id} (REPEATABLE READ), which is still open and may read the "
                       f"versions that log holds")
                self.run_.read_anomalies.append(msg)
                self._note("isolation anomaly: " + msg)

    def _purge(self, batches: int) -> None:
        for _ in range(batches):
            if not self.eng.purge.step(self.eng.config.purge_batch):
                return
            self.eng.stats["purge_steps_in_workload"] += 1

    # -- the snapshot model ----------------------------------------------------------------------
    def _snapshot(self, t) -> int:
        """The commit seq ``t``'s next consistent read sees (taken now under READ COMMITTED,
        at the first read under REPEATABLE READ, as the engine takes its read view)."""
        if self.rc:
            return self.seq
        return self.snap.setdefault(t.id, self.seq)

    def _expected(self, t, key: int, seq: int):
        own = self.writes[t.id]
        if key in own:
            return own[key]
        val = None
        for s, v in self.versions.get(key, ()):
            if s > seq:
                break
            val = v
        return val

    def _expected_range(self, t, lo: int, hi: int, seq: int) -> list:
        keys = sorted(k for k in set(self.versions) | set(self.writes[t.id]) if lo <= k <= hi)
        return [(k, v) for k in keys if (v := self._expected(t, k, seq)) is not None]

    def _anomaly(self, t, what: str, got, expected) -> None:
        iso = "READ COMMITTED" if self.rc else "REPEATABLE READ"
        msg = (f"step {self.step_no}: trx {t.id} ({iso}) {what} returned {_brief(got)}, the "
               f"snapshot model expects {_brief(expected)}")
        self.run_.read_anomalies.append(msg)
        self._note("isolation anomaly: " + msg)

    def _select(self, t, id_: int) -> None:
        seq = self._snapshot(t)
        got = t.get(TABLE, id_)
        exp = self._expected(t, id_, seq)
        if got != exp:
            self._anomaly(t, f"SELECT id={id_}", got, exp)

    def _range(self, t, lo: int, hi: int, what: str) -> list:
        seq = self._snapshot(t)
        got = t.scan(TABLE, lo, hi)
        exp = self._expected_range(t, lo, hi, seq)
        if got != exp:
            g, e = dict(got), dict(exp)
            diff = [k for k in sorted(set(g) | set(e)) if g.get(k) != e.get(k)]
            self._anomaly(t, f"{what} id BETWEEN {lo} AND {hi}",
                          f"{[k for k, _ in got]}; at id {diff[0]}: {_brief(g.get(diff[0]))}",
                          f"{[k for k, _ in exp]}; at id {diff[0]}: {_brief(e.get(diff[0]))}")
        elif what == "SUM(k)":
            self.run_.events.append((len(self.disk.trace), f"trx {t.id} SUM(k) = "
                                     f"{sum(row_k(v) for _, v in got)}"))
        return got

    def _k_select(self, t, k: int) -> None:
        seq = self._snapshot(t)
        got = [pk for pk, _ in t.lookup_k(TABLE, k)]
        keys = set(self.versions) | set(self.writes[t.id])
        exp = sorted(pk for pk in keys
                     if (v := self._expected(t, pk, seq)) is not None and row_k(v) == k)
        if got != exp:
            self._anomaly(t, f"SELECT id WHERE k={k}", got, exp)

    def _write(self, t, key: int, value: bytes | None) -> None:
        self.writes[t.id][key] = value
        self.run_.writers.setdefault((TABLE, key, value), f"trx {t.id} (never committed)")

    def run(self, steps: list) -> None:
        self._mark_log()
        for no, step in enumerate(steps):
            self.step_no = no
            self._step(step)
            self._mark_log()   # any step may move the log: commits, background, checkpoints,
                               # and statements too (an evicted dirty page obeys the WAL rule)
        self.step_no = len(steps)
        self._purge(1 << 30)
        self._mark_log()
        self._final_snapshot_scans()

    def _final_snapshot_scans(self) -> None:
        """After the last step, purge runs until nothing is left that it may purge (InnoDB's
        purge threads never stop for long), then every transaction still open with a snapshot
        (REPEATABLE READ) reads the whole table once more: its snapshot must still be whole,
        however much was committed and purged since it was taken."""
        for slot in sorted(self.slots):
            t = self.slots[slot]
            if t.id in self.snap:
                self._range(t, 0, (1 << 32) - 1, "final snapshot scan: SELECT c")

    def _step(self, step: list) -> None:
        op = step[0]
        if op == "background":
            self.eng.run_background(int(step[1]))
            return
        if op == "checkpoint":
            self.eng.checkpoint()
            return
        if op == "purge":
            self._purge(int(step[1]))
            return
        if op in ("create_table", "drop_table", "rename_table"):
            self._ddl(op, int(step[1]))
            return
        slot = int(step[1]) % SLOTS
        try:
            self._statement(op, slot, step)
        except LockConflict as e:
            t = self.slots.get(slot)
            self._note(f"slot {slot}: {e}; rolling back trx {t.id}")
            t.rollback()
            self._end(slot, "rolled back after a lock conflict")

    def _ddl(self, op: str, n: int) -> None:
        """One DDL statement on sbtest2 / sbtest3, between ``ddl-begin`` and ``ddl-ack``
        markers; skipped (noted) where IF [NOT] EXISTS would skip it."""
        name = DDL_TABLES[n % 2]
        tables = self.eng.tables
        if op == "create_table":
            if name in tables:
                return self._note(f"CREATE TABLE {name} skipped: it exists")
            self.disk.mark("ddl-begin", op="create", table=name)
            self.eng.create_table(name, k_index=n % 4 >= 2)
            self.disk.mark("ddl-ack")
            self.eng.stats["workload_ddl"] += 1
            return self._load(name, n)
        elif op == "drop_table":
            if name not in tables:
                return self._note(f"DROP TABLE {name} skipped: no such table")
            self.disk.mark("ddl-begin", op="drop", table=name)
            self.eng.drop_table(name)
        else:
            new = DDL_TABLES[(n + 1) % 2]
            if name not in tables or new in tables:
                return self._note(f"RENAME TABLE {name} TO {new} skipped")
            self.disk.mark("ddl-begin", op="rename", table=name, new=new)
            self.eng.rename_table(name, new)
        self.disk.mark("ddl-ack")
        self.eng.stats["workload_ddl"] += 1

    def _load(self, name: str, n: int) -> None:
        """Fill a table CREATE TABLE just made in one transaction (INSERT ... SELECT), between
        ``load-begin`` (``table``, ``trx``, ``rows``: ``(key, value)`` pairs) and ``load-ack``
        (``trx``, ``lsn``, ``mode`` as ``commit-ack``) markers: the rows of a DDL table the
        oracle checks (checkers.oracle.check_ddl_rows)."""
        t = self.eng.begin()
        self.loads += 1                 # each load its own values: tables never look alike
        rows = tuple((k, row_value(k, k, 1000 + self.loads))
                     for k in range(1, 10 + 15 * (n % 3) + 1))
        for k, v in rows:
            t.insert(name, k, v)
        self.disk.mark("load-begin", table=name, trx=t.id, rows=rows)
        lsn = t.commit()
        self.disk.mark("load-ack", trx=t.id, lsn=lsn, **self._mode_kw())

    def _mode_kw(self) -> dict:
        return {} if self.mode == 1 else {"mode": self.mode}

    def _prepare(self, slot: int) -> None:
        """XA PREPARE: markers before (with the writes) and after (with the prepare LSN)."""
        open_ = [s for s in (slot, (slot + 1) % SLOTS, (slot + 2) % SLOTS) if s in self.slots]
        if not open_:
            return
        t = self.slots.pop(open_[0])      # the session lets go of it (XA END; PREPARE)
        self.prepared.append(t)
        writes = tuple(sorted((TABLE, k, v) for k, v in self.writes[t.id].items()))
        self.disk.mark("xa-prepare-begin", trx=t.id, writes=writes)
        lsn = t.prepare()
        self.disk.mark("xa-prepare", trx=t.id, lsn=lsn, **self._mode_kw())
        self.snap.pop(t.id, None)       # a prepared transaction reads no more
        self._note(f"trx {t.id} XA PREPARE (LSN {lsn})")

    def _statement(self, op: str, slot: int, step: list) -> None:
        if op == "prepare":
            self._prepare(slot)
            return
        if op == "commit":
            if slot not in self.slots:
                if not self.prepared:
                    return
                t = self.prepared.pop(0)            # XA COMMIT of the oldest prepared trx
                self._note(f"trx {t.id} XA COMMIT")
            else:
                t = self.slots[slot]
            writes = tuple(sorted((TABLE, k, v) for k, v in self.writes[t.id].items()))
            self.disk.mark("commit-begin", trx=t.id, writes=writes)
            lsn = t.commit()
            if self.mode == 1:
                self.disk.mark("commit-ack", trx=t.id, lsn=lsn)
            else:
                self.disk.mark("commit-ack", trx=t.id, lsn=lsn, mode=self.mode)
            self._end(slot if self.slots.get(slot) is t else t, "committed")
            self._purge(1)      # purge threads wake up after commits
            return
        if op == "rollback":
            if slot not in self.slots:
                if not self.prepared:
                    return
                t = self.prepared.pop(0)            # XA ROLLBACK of the oldest prepared trx
                self._note(f"trx {t.id} XA ROLLBACK")
                self.disk.mark("xa-rollback-begin", trx=t.id)
                t.rollback()
                self.disk.mark("xa-rollback", trx=t.id, lsn=self.eng.log.end_lsn,
                               **self._mode_kw())
                self._end(t, "rolled back by XA ROLLBACK")
                return
            t = self.slots[slot]
            self._note(f"trx {t.id} rollback")
            t.rollback()
            self._end(slot, "rolled back")
            return
        t = self._trx(slot)
        id_ = int(step[2])
        if op == "point_select":
            self._select(t, id_)
        elif op == "k_select":
            self._k_select(t, id_)
        elif op == "range_select":
            self._range(t, id_, id_ + int(step[3]), "SELECT c")
        elif op in ("sum_range", "order_range", "distinct_range"):
            what = {"sum_range": "SUM(k)", "order_range": "SELECT c ORDER BY c",
                    "distinct_range": "SELECT DISTINCT c ORDER BY c"}[op]
            self._range(t, id_, id_ + int(step[3]), what)
        elif op == "oltp_trx":
            self._oltp_trx(slot, t, id_, int(step[3]))
        elif op == "bulk_delete":
            for j in range(int(step[3])):
                if t.delete(TABLE, id_ + j):
                    self._write(t, id_ + j, None)
        elif op in ("update_index", "update_non_index"):
            self._update(t, id_, int(step[3]), bump_k=op == "update_index")
        elif op == "delete_insert":
            if t.delete(TABLE, id_):
                self._write(t, id_, None)
            v = row_value(id_, id_, int(step[3]))
            t.insert(TABLE, id_, v)
            self._write(t, id_, v)
        elif op == "insert":
            self._insert(t, id_, int(step[3]))
        elif op == "bulk_update":
            for j in range(int(step[3])):
                self._update(t, id_ + j, int(step[4]), bump_k=False)
        elif op == "bulk_insert":
            for j in range(int(step[3])):
                self._insert(t, id_ + j, int(step[4]))
        else:
            raise ValueError(f"unknown workload step {step!r}")

    def _oltp_trx(self, slot: int, t, id_: int, seed: int) -> None:
        """sysbench oltp_read_write's transaction (oltp_common.lua), scaled down: 4 point
        selects, one each of the simple, sum, order and distinct ranges (5 rows), an index
        update, a non-index update, a delete plus insert, then commit."""
        n = max(self.run_.settings.table_size, 1)

        def pick(j: int) -> int:
            return (id_ - 1 + j * (seed % 97 + 1)) % n + 1
        for j in range(4):
            self._select(t, pick(j))
        for j, what in enumerate(("SELECT c", "SUM(k)", "SELECT c ORDER BY c",
                                  "SELECT DISTINCT c ORDER BY c")):
            lo = pick(4 + j)
            self._range(t, lo, lo + 4, what)
        self._update(t, pick(8), seed, bump_k=True)
        self._update(t, pick(9), seed, bump_k=False)
        victim = pick(10)
        if t.delete(TABLE, victim):
            self._write(t, victim, None)
        v = row_value(victim, victim, seed)
        t.insert(TABLE, victim, v)
        self._write(t, victim, v)
        self._statement("commit", slot, ["commit", slot])

    def _update(self, t, id_: int, seed: int, bump_k: bool) -> None:
        cur = t.get_for_update(TABLE, id_)
        if cur is None:
            return
        v = row_value(id_, row_k(cur) + 1 if bump_k else row_k(cur), seed)
        t.update(TABLE, id_, v)
        self._write(t, id_, v)

    def _insert(self, t, id_: int, seed: int) -> None:
        v = row_value(id_, id_, seed)
        try:
            t.insert(TABLE, id_, v)
        except DuplicateKey:
            return
        self._write(t, id_, v)


def _brief(x) -> str:
    if isinstance(x, (bytes, bytearray)):
        return f"a row with k={row_k(x)}" if len(x) >= 4 else repr(bytes(x))
    if x is None:
        return "no row"
    if isinstance(x, list) and len(x) > 12:
        return f"{x[:12]}… ({len(x)} ids)"
    return str(x)


# -- Hypothesis strategies -------------------------------------------------------------------------
def step_strategy(table_size: int):
    ids = st.integers(1, table_size)
    # DDL: three branches of the one_of below (one_of drops repeated strategies, so each is
    # its own), so a 20-step workload runs a few statements
    ddl = [st.tuples(st.just(op), st.integers(0, 3))
           for op in ("create_table", "drop_table", "rename_table")]
    new_ids = st.integers(table_size + 1, table_size * 4)
    slot = st.integers(0, SLOTS - 1)
    seed = st.integers(0, 10**6)
    return st.one_of(
        st.tuples(st.just("update_non_index"), slot, ids, seed),
        st.tuples(st.just("commit"), slot),
        st.tuples(st.just("update_index"), slot, ids, seed),
        st.tuples(st.just("delete_insert"), slot, ids, seed),
        st.tuples(st.just("insert"), slot, new_ids, seed),
        st.tuples(st.just("background"), st.integers(1, 6)),
        st.tuples(st.just("point_select"), slot, ids),
        st.tuples(st.just("range_select"), slot, ids, st.integers(1, 20)),
        st.tuples(st.just("rollback"), slot),
        st.tuples(st.just("bulk_insert"), slot, new_ids, st.integers(2, 60), seed),
        st.tuples(st.just("bulk_update"), slot, ids, st.integers(2, 40), seed),
        st.tuples(st.just("checkpoint")),
        st.tuples(st.just("oltp_trx"), slot, ids, seed),
        st.tuples(st.just("k_select"), slot, ids),
        st.tuples(st.sampled_from(["sum_range", "order_range", "distinct_range"]), slot, ids,
                  st.integers(1, 20)),
        st.tuples(st.just("bulk_delete"), slot, ids, st.integers(2, 60)),
        st.tuples(st.just("purge"), st.integers(1, 8)),
        *ddl,
    ).map(list)


TRX_COMMIT_MODES = (1, 2, 0)     # innodb_flush_log_at_trx_commit values campaigns draw
ISOLATION_LEVELS = ("REPEATABLE-READ", "READ-COMMITTED")   # transaction_isolation values


def isolation_probe(level: str) -> str:
    """The workload probe that counts workloads run at isolation ``level``."""
    return "isolation_" + {"REPEATABLE-READ": "rr", "READ-COMMITTED": "rc"}[level]


def settings_strategy(base: WorkloadSettings):
    """Vary what changes the engine's paths (buffer pool pressure, log wrap, tree height; a
    400-row table outgrows every buffer pool drawn, so pages are read from disk and dirty
    pages evicted through the single-page doublewrite slot, as in a database whose working
    set exceeds memory), keeping what the user chose (page size, device, doublewrite, flush_log_at_trx_commit:
    campaigns draw that with :func:`trx_commit_mode_strategy`)."""
    return st.builds(
        lambda bp, log, rows: WorkloadSettings(
            table_size=rows, page_size=base.page_size, buffer_pool_pages=bp,
            log_file_size=log, doublewrite=base.doublewrite,
            device=base.device, flush_log_at_trx_commit=base.flush_log_at_trx_commit),
        st.sampled_from([base.buffer_pool_pages, 16, 64]),
        st.sampled_from([base.log_file_size, EngineConfig.min_log_file_size(base.page_size)]),
        st.sampled_from([base.table_size, 20, 150, 400]))


# counter widths a long-lived database crosses and a new one never does (database_age_strategy)
LSN_BOUNDARIES = (32, 39)       # LSN 2**32: the page trailer's low 32 bits (FIL_PAGE_END_LSN_
                                # OLD_CHKSUM) wrap; 2**39: log block numbers (30 bits) wrap
TRX_ID_BOUNDARIES = (32,)       # trx id 2**32: past any 32-bit truncation of DB_TRX_ID


def database_age_strategy(setup_bytes=lambda: 0):
    """(initial_lsn, initial_trx_id) of the database a workload creates (EngineConfig): new
    (8192, 0), or aged, as a database in service for years is, so that the LSN or the trx id
    counter crosses a width boundary during the workload: the LSN starts so that 2**32 or
    2**39 lies up to 64 KiB of redo after the setup (``setup_bytes()``: the setup's redo,
    :func:`setup_redo_bytes`, asked only for an aged LSN; a workload writes up to about
    100 KiB), the first trx id up to 8 ids (a setup takes 2, a workload up to about 10) before
    2**32.  Shrinks towards a new database.  (FoundationDB's simulator randomises its knobs
    the same way: a value no test picks is a path no test runs.)"""
    def age(lsn_bits, gap_blocks, trx_bits, trx_ids):
        lsn = LOG_START_LSN
        if lsn_bits:
            lsn = (1 << lsn_bits) - setup_bytes() - OS_FILE_LOG_BLOCK_SIZE * gap_blocks
            lsn = max(LOG_START_LSN, lsn - lsn % OS_FILE_LOG_BLOCK_SIZE)
        trx = (1 << trx_bits) - TRX_SYS_TRX_ID_WRITE_MARGIN - trx_ids if trx_bits else 0
        return lsn, trx
    return st.builds(age, st.sampled_from((0,) + LSN_BOUNDARIES), st.integers(1, 128),
                     st.sampled_from((0,) + TRX_ID_BOUNDARIES), st.integers(1, 8))


# EngineConfig.log_flush_every_mtrs values campaigns draw per workload, shrinking towards 0
# (no extra flush): in a real engine other threads' commits and the log writer flush the log at
# any moment, so any mtr boundary can be the durable end of the redo, and an operation split
# into two mtrs that must be one shows only when a crash keeps the first and loses the second
LOG_FLUSH_EVERY_MTRS = (0, 1, 3)


def trx_commit_mode_strategy(modes: tuple = TRX_COMMIT_MODES):
    """innodb_flush_log_at_trx_commit among ``modes``, shrinking towards the first.  Campaigns
    draw it after the steps, so a seed gives the same workloads it gave before modes 0 and 2
    existed."""
    return st.sampled_from(tuple(modes))


def isolation_strategy(levels: tuple = ISOLATION_LEVELS):
    """transaction_isolation among ``levels`` (drawn after the flush mode, so older seeds'
    workloads stay as they were)."""
    return st.sampled_from(tuple(levels))


def workload_probes(run: WorkloadRun) -> Counter:
    """Probe counts (checkers.probes.WORKLOAD_PROBES) for one executed workload: its
    flush_log_at_trx_commit mode, the background log writer's flushes, and the commits
    acknowledged before their log was durable."""
    out: Counter = Counter()
    out[f"trx_commit_mode_{run.settings.flush_log_at_trx_commit}"] += 1
    out[isolation_probe(run.settings.isolation)] += 1
    for bits in LSN_BOUNDARIES:
        if crossed(run.lsn_span, bits):
            out[f"lsn_crossed_2_{bits}"] += 1
    for bits in TRX_ID_BOUNDARIES:
        if crossed(run.trx_id_span, bits):
            out[f"trx_id_crossed_2_{bits}"] += 1
    for name, (key, _) in WORKLOAD_PROBES.items():    # what the workload did, not the setup
        n = run.engine_stats.get(key, 0) - run.setup_stats.get(key, 0) if key else 0
        if n > 0:
            out[name] += n
    return out


# the media fault kinds a --media-faults campaign takes in turn, one per chunk of workloads, as
# the first fault of each workload's schedule (media_schedule_strategy): every required kind
# is drawn in every campaign of at least len(MEDIA_ROTATION) chunks, whatever the seed.  ENOSPC
# is left to chance: it fires only on file-extending writes and is not a required probe.
MEDIA_ROTATION = tuple(k for k in KINDS if k != "enospc")


def media_schedule_strategy(first_kind: str | None = None):
    """One or two media faults (faultfs.media), each at one of the first IOs of its class
    after the setup (a workload issues a handful of reads, writes and fsyncs), or now and
    then later (a fault that stops the engine early also cuts the workload short, and some
    crash states, such as a pending file extension, need a longer run):
    ``(kind, at, arg)`` tuples.  ``arg`` reaches past ``2**20``: a misdirected write's bits 20
    and up choose where it lands (further on, earlier, another file).  With ``first_kind``
    the first fault is of that kind (the campaign's rotation, :data:`MEDIA_ROTATION`), the
    second, if any, of any kind.

    Raises:
        MediaFaultError: ``first_kind`` is no media fault kind.
    """
    if first_kind is not None and first_kind not in KINDS:
        raise MediaFaultError(f"unknown media fault kind {first_kind!r}")
    at = st.sampled_from(["early", "early", "early", "late"]).flatmap(
        lambda when: st.integers(0, 4) if when == "early" else st.integers(5, 40))
    arg = st.integers(0, 3 * 2**20 - 1)
    fault = st.tuples(st.sampled_from(KINDS), at, arg)
    if first_kind is None:
        return st.lists(fault, min_size=1, max_size=2).map(tuple)
    return st.tuples(st.tuples(st.just(first_kind), at, arg),
                     st.lists(fault, max_size=1)).map(lambda t: (t[0], *t[1]))


def prepare_inserts(seed: int, n_steps: int) -> list:
    """The campaign's XA PREPARE placement (for :func:`with_prepares`): one to three
    ``(index, slot)`` pairs from a generator seeded with ``seed`` (the workload's crash search
    seed).  Not a Hypothesis draw: a draw of its own would change the examples Hypothesis
    generates after it, and with them every seed's workloads."""
    rng = random.Random(f"tornpage-xa:{seed}")
    return [(rng.randint(0, n_steps), rng.randrange(SLOTS)) for _ in range(rng.randint(1, 3))]


def with_prepares(steps: list, inserts) -> list:
    """``steps`` with XA PREPARE steps: for each ``(index, slot)`` of ``inserts``, a
    ``["prepare", s]`` right before the first ``["commit", s]`` at or after step ``index`` (two
    phase commit: the commit step then finds its slot empty and XA COMMITs the prepared
    transaction), or ``["prepare", slot]`` at the end when no commit follows (the transaction
    stays prepared up to the crash).  Everything else the workload does stays as it was."""
    out = [list(s) for s in steps]
    at = {}
    for index, slot in inserts:
        j = next((j for j in range(index, len(steps)) if steps[j][0] == "commit"), None)
        if j is None:
            at.setdefault(len(steps), []).append(["prepare", slot])
        elif j not in at:
            at[j] = [["prepare", steps[j][1]]]
    for j in sorted(at, reverse=True):
        out[j:j] = at[j]
    return out


def workload_strategy(table_size: int, max_steps: int = 40):
    """Workload steps (XA PREPARE steps are placed afterwards by :func:`prepare_inserts`)."""
    return st.lists(step_strategy(table_size), min_size=1, max_size=max_steps)


MAX_STEP_VALUE = 2**30      # largest id, count, seed or slot an artifact's step may hold


def validate_steps(steps) -> list:
    """Check a step list read from an artifact.

    Raises:
        ValueError: a step that is not a known, well-formed step.
    """
    arity = {"point_select": 3, "range_select": 4, "update_index": 4, "update_non_index": 4,
             "delete_insert": 4, "insert": 4, "bulk_insert": 5, "bulk_update": 5, "commit": 2,
             "rollback": 2, "background": 2, "checkpoint": 1, "sum_range": 4,
             "order_range": 4, "distinct_range": 4, "k_select": 3, "oltp_trx": 4,
             "bulk_delete": 4, "purge": 2, "prepare": 2, "create_table": 2, "drop_table": 2,
             "rename_table": 2}
    out = []
    for s in steps:
        # ids become the row's 32-bit k column (update_index adds 1 per step): bound every field
        if not isinstance(s, list) or not s or s[0] not in arity or len(s) != arity[s[0]] or \
                not all(isinstance(x, int) and 0 <= x <= MAX_STEP_VALUE for x in s[1:]):
            raise ValueError(f"malformed workload step {s!r}")
        out.append(s)
    return out
