"""sysbench oltp_read_write transactions per second, on the simulated disk (SimDisk) and on
a real directory (faultfs.OsVFS over a temporary directory).

Run on demand (not a test):
    python benchmarks/engine_throughput.py [--transactions N] [--repeat R] [--dir PATH]

One transaction is sysbench's full oltp_read_write transaction (oltp_common.lua), with
sysbench's default counts (``--point-selects`` 10, ``--range-size`` 100), on a table with the
secondary index k_1 on k (``Engine.create_table(..., k_index=True)``):

    10 point selects      SELECT c FROM sbtest1 WHERE id=?            Engine.get
    1 simple range        SELECT c ... WHERE id BETWEEN ? AND ?+99    Engine.scan
    1 sum range           SELECT SUM(k) ... WHERE id BETWEEN ...      Engine.scan, SUM(k)
    1 order range         SELECT c ... BETWEEN ... ORDER BY c         Engine.scan, sorted by c
    1 distinct range      SELECT DISTINCT c ... BETWEEN ... ORDER BY c  Engine.scan, distinct c
    1 index update        UPDATE ... SET k=k+1 WHERE id=?             get_for_update + update
    1 non-index update    UPDATE ... SET c=? WHERE id=?               get_for_update + update
    1 delete + insert     DELETE ... WHERE id=?; INSERT (id, k, c, pad)
    commit                flush_log_at_trx_commit=1: the log is fsynced

Reads are consistent (MVCC, no locks; REPEATABLE READ); the updates read the current version
under an exclusive lock, as UPDATE does.  The engine has no SQL layer: the sum, order and
distinct ranges are computed over the engine's consistent range scan (``Engine.scan``), as a
SQL layer would.  The index update changes k, so the engine maintains the secondary index
(delete-marks the old entry, inserts the new one); the delete delete-marks the row and the
insert goes over the delete-marked record.  After each transaction ``--bg-steps`` steps of
background work run (``Engine.run_background``: page cleaner, checkpoint, background
rollback, purge), since the engine never runs it by itself (InnoDB's page cleaner and purge
are threads).  One client (no ``--threads``).  ids are uniform in 1..``--table-size``, seeded:
every run on every medium runs the same transactions, and the engine's counters of the two
media are compared (printed: they should be identical).

The database (``--table-size`` rows, loaded in transactions of 1000 rows as sysbench prepare
does, then a clean shutdown) is built once on a SimDisk; every run starts from a copy of it
(a fresh SimDisk of the image, or the files written and fsynced into a new temporary
directory), opens the engine (not timed), then times ``--transactions`` transactions with
``time.perf_counter`` (the CPU time, ``time.process_time``, is printed beside it: on a busy
machine the two part, and on the real directory the difference is mostly fsync waits).  Media
are interleaved in every repeat so machine noise hits both alike.
Printed: every run, the median transactions per second of each medium, and the ratio
real/SimDisk; for the SimDisk, the engine's counters per transaction (including purge and the
history list length left at the end) and the IO per transaction from its trace (pwrites,
bytes, fsyncs).  Absolute figures depend on the machine, and on the real directory's file
system (printed).
"""
from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import struct
import tempfile
import time

from tornpage.campaigns.workload import row_k, row_value
from tornpage.engine import Engine, EngineConfig
from tornpage.faultfs import Image, OsVFS, SimDisk
from tornpage.faultfs.trace import Fsync, FsyncDir, Write

TABLE = "sbtest1"

def make_config(a) -> EngineConfig:
    return EngineConfig(page_size=a.page_size, buffer_pool_pages=a.buffer_pool_pages,
                        log_file_size=a.log_file_mib << 20, flush_log_at_trx_commit=1)


def prepare(cfg: EngineConfig, table_size: int) -> Image:
    """sysbench prepare on a SimDisk, then a clean shutdown; its image (everything durable)."""
    disk = SimDisk()
    eng = Engine.create(disk, cfg)
    eng.create_table(TABLE, k_index=True)
    for lo in range(1, table_size + 1, 1000):
        t = eng.begin()
        for i in range(lo, min(lo + 1000, table_size + 1)):
            t.insert(TABLE, i, row_value(i, i, 0))
        t.commit()
    eng.close()
    return disk.live_image()


def c_col(value: bytes) -> bytes:
    """The c column (CHAR(120)) of a row image of campaigns.workload.row_value."""
    return value[4:124]


def one_trx(eng: Engine, rng: random.Random, a, seq: int) -> None:
    """One oltp_read_write transaction (see the module docstring)."""
    n = a.table_size
    span = a.range_size - 1
    t = eng.begin()
    for _ in range(a.point_selects):                        # SELECT c WHERE id=?
        t.get(TABLE, rng.randint(1, n))
    lo = rng.randint(1, n)                                  # simple range
    [c_col(v) for _, v in t.scan(TABLE, lo, lo + span)]
    lo = rng.randint(1, n)                                  # SUM(k)
    sum(row_k(v) for _, v in t.scan(TABLE, lo, lo + span))
    lo = rng.randint(1, n)                                  # c ORDER BY c
    sorted(c_col(v) for _, v in t.scan(TABLE, lo, lo + span))
    lo = rng.randint(1, n)                                  # DISTINCT c ORDER BY c
    sorted({c_col(v) for _, v in t.scan(TABLE, lo, lo + span)})
    i = rng.randint(1, n)                                   # index update: k = k + 1
    cur = t.get_for_update(TABLE, i)
    if cur is not None:
        t.update(TABLE, i, struct.pack(">I", (row_k(cur) + 1) & 0xFFFFFFFF) + cur[4:])
    i = rng.randint(1, n)                                   # non-index update: new c
    cur = t.get_for_update(TABLE, i)
    if cur is not None:
        t.update(TABLE, i, row_value(i, row_k(cur), seq))
    i = rng.randint(1, n)                                   # delete + insert of the same id
    t.delete(TABLE, i)
    t.insert(TABLE, i, row_value(i, rng.randint(1, n), seq))
    t.commit()
    if a.bg_steps:
        eng.run_background(a.bg_steps)


def run_transactions(eng: Engine, a) -> tuple[float, float]:
    """Time ``--transactions`` transactions; return (wall seconds, CPU seconds)."""
    rng = random.Random(a.seed)
    c0 = time.process_time()
    t0 = time.perf_counter()
    for seq in range(a.transactions):
        one_trx(eng, rng, a, seq)
    return time.perf_counter() - t0, time.process_time() - c0


def engine_counters(eng: Engine) -> dict:
    return {**dict(eng.stats), **{"log_" + k: v for k, v in eng.log.stats.items()}}


def run_sim(image: Image, cfg: EngineConfig, a):
    """((wall s, CPU s), engine counters, IO per transaction) on a fresh SimDisk of ``image``."""
    disk = SimDisk(image=image)
    eng = Engine.open(disk, cfg)
    before = engine_counters(eng)
    first = len(disk.trace)
    dt = run_transactions(eng, a)
    ops = disk.trace.ops[first:]
    writes = [op for op in ops if isinstance(op, Write)]
    io = {"pwrites": len(writes), "bytes": sum(len(op.data) for op in writes),
          "fsyncs": sum(isinstance(op, (Fsync, FsyncDir)) for op in ops)}
    counters = diff(engine_counters(eng), before)
    counters["history_length_at_end"] = eng.purge.history_length()
    eng.close()
    return dt, counters, {k: v / a.transactions for k, v in io.items()}


def run_real(image: Image, cfg: EngineConfig, a):
    """((wall s, CPU s), engine counters) on a new temporary directory holding ``image``'s
    files."""
    root = tempfile.mkdtemp(prefix="tornpage-bench-", dir=a.dir)
    try:
        for d in sorted(image.dirs):
            os.makedirs(os.path.join(root, d), exist_ok=True)
        for path, data in sorted(image.files.items()):
            with open(os.path.join(root, path), "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
        vfs = OsVFS(root)
        vfs.fsync_dir("")
        eng = Engine.open(vfs, cfg)
        before = engine_counters(eng)
        dt = run_transactions(eng, a)
        counters = diff(engine_counters(eng), before)
        counters["history_length_at_end"] = eng.purge.history_length()
        eng.close()
        return dt, counters
    finally:
        shutil.rmtree(root, ignore_errors=True)


def diff(after: dict, before: dict) -> dict:
    return {k: v - before.get(k, 0) for k, v in sorted(after.items()) if v - before.get(k, 0)}


def fs_type(path: str) -> str:
    """The file system type holding ``path`` (Linux /proc/mounts), or "unknown"."""
    try:
        best, kind = "", "unknown"
        real = os.path.realpath(path)
        with open("/proc/mounts") as f:
            for line in f:
                parts = line.split()
                mnt = parts[1]
                if (real == mnt or real.startswith(mnt.rstrip("/") + "/")) and \
                        len(mnt) >= len(best):
                    best, kind = mnt, f"{parts[2]} on {parts[0]} mounted at {mnt}"
        return kind
    except OSError:
        return "unknown"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--transactions", type=int, default=300, help="timed transactions per run")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--table-size", type=int, default=10000, help="rows (sysbench default)")
    ap.add_argument("--point-selects", type=int, default=10)
    ap.add_argument("--range-size", type=int, default=100)
    ap.add_argument("--bg-steps", type=int, default=1,
                    help="background steps (page cleaner, checkpoint, rollback, purge) after "
                         "each transaction")
    ap.add_argument("--page-size", type=int, default=16384)
    ap.add_argument("--buffer-pool-pages", type=int, default=1024)
    ap.add_argument("--log-file-mib", type=int, default=8)
    ap.add_argument("--dir", default=None, help="parent of the temporary database directory "
                                                "(default: the system temp directory)")
    a = ap.parse_args()
    t_start = time.perf_counter()
    cfg = make_config(a)
    real_dir = a.dir or tempfile.gettempdir()
    print(f"transaction: {a.point_selects} point selects, 4 ranges of {a.range_size} (simple, "
          f"sum, order, distinct; over Engine.scan), 1 index update (secondary index on k), "
          f"1 non-index update, 1 delete + insert, commit, {a.bg_steps} background step(s) "
          f"(page cleaner, checkpoint, rollback, purge in rotation)")
    print(f"engine: page size {cfg.page_size}, buffer pool {cfg.buffer_pool_pages} pages, log "
          f"file {cfg.log_file_size} bytes, doublewrite {'on' if cfg.doublewrite else 'off'}; "
          f"{a.table_size} rows; {a.transactions} transactions per run")
    print(f"real directory: faultfs.OsVFS under {real_dir} ({fs_type(real_dir)})")
    image = prepare(cfg, a.table_size)
    rates: dict[str, list[float]] = {"SimDisk": [], "real dir": []}
    counters: dict[str, dict] = {}
    io = None
    for r in range(a.repeat):
        (dt, cpu), c, io = run_sim(image, cfg, a)
        rates["SimDisk"].append(a.transactions / dt)
        counters.setdefault("SimDisk", c)
        print(f"run {r + 1} SimDisk: {a.transactions} trx in {dt:.2f} s (CPU {cpu:.2f} s) = "
              f"{a.transactions / dt:.0f} trx/s")
        (dt, cpu), c = run_real(image, cfg, a)
        rates["real dir"].append(a.transactions / dt)
        counters.setdefault("real dir", c)
        print(f"run {r + 1} real dir: {a.transactions} trx in {dt:.2f} s (CPU {cpu:.2f} s) = "
              f"{a.transactions / dt:.0f} trx/s")
    c = counters["SimDisk"]
    n = a.transactions
    print(f"per transaction (engine counters): {c.get('mtr_committed', 0) / n:.1f} mtrs, "
          f"{c.get('buf_pages_written', 0) / n:.2f} pages written by the page cleaner, "
          f"{c.get('log_log_fsyncs', 0) / n:.2f} log fsyncs, "
          f"{c.get('log_checkpoints', 0) / n:.2f} checkpoints, "
          f"{c.get('log_sync_checkpoints', 0) / n:.3f} synchronous (log-full) checkpoints")
    print(f"per transaction (engine counters): {c.get('sec_index_updates', 0) / n:.2f} "
          f"secondary-index updates, {c.get('bg_purge', 0) / n:.2f} purge steps, "
          f"{c.get('purge_undo_recs', 0) / n:.2f} undo records purged, "
          f"{c.get('purge_del_marked_removed', 0) / n:.2f} delete-marked rows removed; "
          f"history list length at the end: {c['history_length_at_end']} undo logs")
    print(f"per transaction (SimDisk trace): {io['pwrites']:.1f} pwrites, "
          f"{io['bytes'] / 1024:.1f} KiB written, {io['fsyncs']:.2f} fsyncs")
    print(f"engine counters identical on both media: "
          f"{'yes' if counters['SimDisk'] == counters['real dir'] else 'NO'}")
    sim, real = statistics.median(rates["SimDisk"]), statistics.median(rates["real dir"])
    print(f"total runtime {time.perf_counter() - t_start:.1f} s")
    print(f"median trx/s, SimDisk: {sim:.0f}")
    print(f"median trx/s, real dir: {real:.0f}")
    print(f"ratio real dir/SimDisk: {real / sim:.2f}")


if __name__ == "__main__":
    main()
