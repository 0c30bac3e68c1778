"""Crash-recovery time against redo size (1x and 8x), and flush-list costs against the number of
dirty pages (10^3 and 10^5): the recovery-time sorted insert and the normal path's append.

Run on demand (not a test):
    python benchmarks/recovery_scaling.py [--scale S] [--repeat R] [--seed N]

Recovery (engine.recovery) should cost O(redo bytes) to scan, parse and apply plus
O(dirty pages · log(dirty pages)) to put the applied pages into the flush list, so 8x the redo
should take about 8x the time (the goal is at most 10x).

What runs: one database on a SimDisk (page size 4096 bytes), a table of ``--table-size`` rows
loaded and made durable by a sharp checkpoint; then ``8 · --trx`` sysbench-like write
transactions (seeded, deterministic), each an index update (k = k + 1), a non-index update (new
c), a delete + insert of the same id (oltp_read_write) and an insert of the next new id
(oltp_insert with auto-increment ids), committed with flush_log_at_trx_commit=1.  Reads are
left out: they write no redo.  There is no checkpoint after the load: the log file is sized to
hold all the redo, the buffer pool to hold every page (undo logs included), and no background
work (page cleaner, checkpoint, purge) is ever stepped, so every changed page stays dirty (the
deletes only delete-mark, and the insert of the same id goes over the delete-marked record).
The crash images are taken as a process kill (``SimDisk.live_image()``: everything written
survives) after ``--trx`` transactions (1x) and after ``8 · --trx`` (8x), on the same run, so
both recover from the same checkpoint.  Recovery = ``Engine.open`` on a fresh
``SimDisk(image)`` (building the SimDisk is not timed), ``--repeat`` times each, interleaved;
medians are printed, in seconds.

Figures printed for 1x and 8x: redo since the checkpoint (LSN difference, bytes, block headers,
trailers and block padding included) and redo scanned by recovery (``recv_scan_blocks`` · 512
bytes), mtrs parsed, records applied, pages recovered dirty (``recv_pages_applied``, equal to
the flush list length after recovery), median recovery time (s) and its cost per KiB of redo;
also, to tell a busy machine and the garbage collector apart from the engine, the CPU time
(``time.process_time``) and the time spent in Python's cyclic garbage collector during
recovery (``gc.callbacks``) with its number of full (generation 2) collections.

Flush list, recovery path: an empty ``engine.buf.FlushList`` filled with ``N``
``engine.buf.Frame`` objects whose oldest_modification is random (seeded) through
``FlushList.insert_sorted``, the O(log n) sorted insert ``BufferPool.install_recovered`` uses
(engine.buf's real key function ``_flush_key``); the figure is the mean time per insert in
nanoseconds (median of max(``--repeat``, 5) runs; at N = 10^3 each run fills 100 lists so both
sizes time 10^5 inserts; the garbage collector stays on, as in recovery).  The goal: 10^5 costs
less than 3x 10^3.  For comparison only, the same is printed for a ``SortedKeyList`` with the
tuple key ``(oldest_modification, space, page_no)`` the engine used before this benchmark
showed it missing the goal (``tuple_flush_key``; the engine now packs the same order into one
int).

Flush list, normal path: the same, but the frames' oldest_modification increases (LSN order,
as mtrs commit) and they go in through ``FlushList.append``, the O(1) tail append
``BufferPool.note_modification`` uses; the figure is the mean time per append in nanoseconds,
and it should be flat from 10^3 to 10^5: an append compares no key and searches nothing
(tests/test_flush_list.py checks that it never computes the sort key), so what growth remains
is memory, the ``OrderedDict``'s table and nodes for 10^5 frames outgrowing the CPU caches.

The last line is exactly ``recovery time ratio 8x/1x: X``.  ``--scale`` multiplies the table
size and the transaction count (default 1.0: about 40 s on the 2-core development machine).
Absolute figures depend on the machine.
"""
from __future__ import annotations

import argparse
import gc
import random
import statistics
import struct
import time

from tornpage.campaigns.workload import row_k, row_value
from tornpage.engine import Engine, EngineConfig
from tornpage.engine import buf as engine_buf
from tornpage.faultfs import SimDisk

TABLE = "sbtest1"
REDO_PER_TRX_ESTIMATE = 4096     # bytes; measured about 2,300 (each commit pads its last block)


def make_config(page_size: int, trx_total: int, rows_total: int) -> EngineConfig:
    """A configuration under which nothing is flushed or checkpointed by itself: a log that
    holds all the redo, a buffer pool that holds every page (the undo logs too: with no purge
    stepped, every write transaction's undo log, a page or more, stays in the history list)."""
    log = 2 * trx_total * REDO_PER_TRX_ESTIMATE + (4 << 20)
    log -= log % 512
    pages = max(1024, 4 * rows_total * 256 // page_size + 1024) + 2 * trx_total
    return EngineConfig(page_size=page_size, buffer_pool_pages=pages, log_file_size=log,
                        flush_log_at_trx_commit=1)


def write_trx(eng: Engine, rng: random.Random, table_size: int, next_id: int, seed: int) -> None:
    """One sysbench-like write transaction (see the module docstring); ``next_id`` is the new
    id it appends."""
    t = eng.begin()
    i = rng.randint(1, table_size)                      # UPDATE ... SET k=k+1 WHERE id=?
    cur = t.get(TABLE, i)
    t.update(TABLE, i, struct.pack(">I", (row_k(cur) + 1) & 0xFFFFFFFF) + cur[4:])
    i = rng.randint(1, table_size)                      # UPDATE ... SET c=? WHERE id=?
    cur = t.get(TABLE, i)
    t.update(TABLE, i, row_value(i, row_k(cur), seed))
    i = rng.randint(1, table_size)                      # DELETE ... WHERE id=?; INSERT (id, ...)
    t.delete(TABLE, i)
    t.insert(TABLE, i, row_value(i, rng.randint(1, table_size), seed))
    t.insert(TABLE, next_id, row_value(next_id, rng.randint(1, table_size), seed))   # oltp_insert
    t.commit()


def build_images(table_size: int, trx: int, page_size: int, seed: int):
    """Run the workload once; return (config, [(label, image, facts)]) for 1x and 8x."""
    cfg = make_config(page_size, 8 * trx, table_size + 8 * trx)
    disk = SimDisk()
    eng = Engine.create(disk, cfg)
    eng.create_table(TABLE)
    for lo in range(1, table_size + 1, 1000):           # sysbench prepare: batches of 1000 rows
        t = eng.begin()
        for i in range(lo, min(lo + 1000, table_size + 1)):
            t.insert(TABLE, i, row_value(i, i, 0))
        t.commit()
    eng.make_checkpoint(flush=True)
    ckpt = eng.log.checkpoint_lsn
    rng = random.Random(seed)
    out = []
    next_id = table_size + 1
    done = 0
    for label, upto in (("1x", trx), ("8x", 8 * trx)):
        while done < upto:
            write_trx(eng, rng, table_size, next_id, seed * 1_000_003 + done)
            next_id += 1
            done += 1
        st = eng.stats
        if eng.log.checkpoint_lsn != ckpt or st["log_sync_checkpoints"] or \
                st["buf_lru_evictions"] or st["bg_page_cleaner"]:
            raise SystemExit(f"setup broken at {label}: checkpoint moved or pages were flushed "
                             f"({dict(st)}); raise REDO_PER_TRX_ESTIMATE")
        facts = {"redo_lsn": eng.log.end_lsn - ckpt, "dirty_before": len(eng.buf.flush_list),
                 "rows": next_id - 1, "trx": done}
        out.append((label, disk.live_image(), facts))
    return cfg, out


class GcWatch:
    """Time spent in Python's cyclic garbage collector (s) and full (generation 2) collections,
    while registered in ``gc.callbacks``."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.full = 0
        self._t0 = 0.0

    def __call__(self, phase: str, info: dict) -> None:
        if phase == "start":
            self._t0 = time.perf_counter()
            self.full += info["generation"] == 2
        else:
            self.seconds += time.perf_counter() - self._t0


def recover_once(image, cfg: EngineConfig, expect_rows: int):
    """Time Engine.open on a fresh SimDisk of ``image``; return (wall s, CPU s, recovery stats
    with the GC figures as ``gc_seconds`` and ``gc_full``)."""
    disk = SimDisk(image=image)
    gc.collect()
    watch = GcWatch()
    gc.callbacks.append(watch)
    c0 = time.process_time()
    t0 = time.perf_counter()
    eng = Engine.open(disk, cfg)
    dt = time.perf_counter() - t0
    cpu = time.process_time() - c0
    gc.callbacks.remove(watch)
    st = dict(eng.stats)
    st["flush_list"] = len(eng.buf.flush_list)
    st["gc_seconds"], st["gc_full"] = watch.seconds, watch.full
    n = len(eng.all_rows(TABLE))                        # not timed: recovery was right
    assert n == expect_rows, (n, expect_rows)
    return dt, cpu, st


def tuple_flush_key(f) -> tuple:
    """For comparison only, the engine's earlier key: the same order as ``_flush_key`` as a
    3-tuple, which compares element by element."""
    return (f.oldest_modification, f.space, f.page_no)


def random_frames(n: int, rng: random.Random) -> list:
    """``n`` clean-looking frames of distinct pages with random oldest_modification (LSNs)."""
    out = []
    for p in range(n):
        f = engine_buf.Frame(1, p, bytearray())
        f.oldest_modification = f.newest_modification = rng.randrange(8192, 1 << 40)
        out.append(f)
    return out


def lsn_ordered(frames: list) -> list:
    """The same frames, re-dated so their oldest_modification increases in list order (as mtr
    commits date the pages they append); recovery's figures are taken first."""
    for i, f in enumerate(frames):
        f.oldest_modification = f.newest_modification = 8192 + 100 * i
    return frames


def fill_ns(frame_lists: list, new_list, add_name: str) -> float:
    """Mean ns per call of ``add_name`` filling one empty list from ``new_list()`` per element
    of ``frame_lists``."""
    elapsed = 0.0
    adds = 0
    for frames in frame_lists:
        fl = new_list()
        add = getattr(fl, add_name)
        t0 = time.perf_counter()
        for f in frames:
            add(f)
        elapsed += time.perf_counter() - t0
        adds += len(frames)
    return elapsed / adds * 1e9


FILLS = (                      # (figure name, new empty list, method), timed in this order
    ("insert_sorted", engine_buf.FlushList, "insert_sorted"),
    ("tuple", lambda: engine_buf.SortedKeyList(key=tuple_flush_key), "add"),
)


def flush_list_figures(repeat: int, seed: int, sizes=(1_000, 100_000), total: int = 100_000):
    """{(figure name, size): median ns per insert or append}; sizes and figures interleaved in
    every run: the recovery path's sorted insert (and the tuple-key comparison) on random
    LSNs, then the normal path's append on the same frames re-dated in LSN order."""
    rng = random.Random(seed)
    runs: dict = {}
    for _ in range(repeat):
        lists = {n: [random_frames(n, rng) for _ in range(max(1, total // n))] for n in sizes}
        gc.collect()
        for name, new_list, add_name in FILLS:
            for n in sizes:
                runs.setdefault((name, n), []).append(fill_ns(lists[n], new_list, add_name))
        for n in sizes:
            ordered = [lsn_ordered(frames) for frames in lists[n]]
            runs.setdefault(("append", n), []).append(
                fill_ns(ordered, engine_buf.FlushList, "append"))
        del lists
    return {k: statistics.median(v) for k, v in runs.items()}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--scale", type=float, default=1.0,
                    help="multiplies --table-size and --trx (e.g. 0.2 for a quick run)")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--table-size", type=int, default=5000,
                    help="rows loaded before the checkpoint")
    ap.add_argument("--trx", type=int, default=600, help="write transactions for 1x (8x: 8 times)")
    ap.add_argument("--page-size", type=int, default=4096)
    a = ap.parse_args()
    table_size = max(100, int(a.table_size * a.scale))
    trx = max(20, int(a.trx * a.scale))
    t_start = time.perf_counter()
    cfg, images = build_images(table_size, trx, a.page_size, a.seed)
    print(f"workload: {table_size} rows loaded, sharp checkpoint, then {trx} (1x) and {8 * trx} "
          f"(8x) write transactions; page size {cfg.page_size}, buffer pool "
          f"{cfg.buffer_pool_pages} pages, log file {cfg.log_file_size} bytes "
          f"(built in {time.perf_counter() - t_start:.1f} s)")
    recover_once(images[0][1], cfg, images[0][2]["rows"])     # warm-up (imports), not timed
    times: dict[str, list[float]] = {label: [] for label, _, _ in images}
    cpus: dict[str, list[float]] = {label: [] for label, _, _ in images}
    gcs: dict[str, list[float]] = {label: [] for label, _, _ in images}
    stats: dict[str, dict] = {}
    for r in range(a.repeat):
        for label, image, facts in images:
            dt, cpu, st = recover_once(image, cfg, facts["rows"])
            times[label].append(dt)
            cpus[label].append(cpu)
            gcs[label].append(st.pop("gc_seconds"))
            if label in stats:
                assert st == stats[label], "recovery is not deterministic"
            stats[label] = st
            print(f"run {r + 1} {label}: recovery {dt:.3f} s (CPU {cpu:.3f} s, of which cyclic "
                  f"GC {gcs[label][-1]:.3f} s; full collections: {st['gc_full']})")
    med, cpu, gcm = {}, {}, {}
    for label, _, facts in images:
        st = stats[label]
        med[label] = statistics.median(times[label])
        cpu[label] = statistics.median(cpus[label])
        gcm[label] = statistics.median(gcs[label])
        scanned = st["recv_scan_blocks"] * 512
        print(f"{label}: {facts['trx']} trx, redo since checkpoint {facts['redo_lsn']} bytes "
              f"(LSN difference), scanned {scanned} bytes ({st['recv_scan_blocks']} blocks), "
              f"{st['recv_mtrs_parsed']} mtrs, {st['recv_records_applied']} records applied, "
              f"{st['recv_pages_applied']} pages recovered dirty (flush list "
              f"{st['flush_list']}, {facts['dirty_before']} before the crash); median recovery "
              f"{med[label]:.3f} s = {med[label] * 1e6 / (facts['redo_lsn'] / 1024):.1f} us/KiB "
              f"(median CPU {cpu[label]:.3f} s, cyclic GC {gcm[label]:.3f} s)")
    f1, f8 = images[0][2], images[1][2]
    print(f"redo ratio 8x/1x: {f8['redo_lsn'] / f1['redo_lsn']:.2f}, dirty pages ratio 8x/1x: "
          f"{stats['8x']['recv_pages_applied'] / stats['1x']['recv_pages_applied']:.2f}, "
          f"CPU time ratio 8x/1x: {cpu['8x'] / cpu['1x']:.2f}, CPU time without cyclic GC: "
          f"{(cpu['8x'] - gcm['8x']) / (cpu['1x'] - gcm['1x']):.2f}")
    del images                                         # a smaller heap for the garbage collector
    t_fl = time.perf_counter()
    fl = flush_list_figures(max(a.repeat, 5), a.seed)
    for n in (1_000, 100_000):
        print(f"flush-list insert (recovery, sorted), {n} recovered dirty pages: "
              f"{fl['insert_sorted', n]:.0f} ns per insert")
    print(f"(comparison, not the engine: the earlier tuple key: "
          f"{fl['tuple', 1_000]:.0f} and {fl['tuple', 100_000]:.0f} ns per insert, ratio "
          f"{fl['tuple', 100_000] / fl['tuple', 1_000]:.2f})")
    for n in (1_000, 100_000):
        print(f"flush-list append (normal path), {n} dirty pages: {fl['append', n]:.0f} ns per "
              f"append")
    print(f"flush-list insert cost ratio 10^5/10^3: "
          f"{fl['insert_sorted', 100_000] / fl['insert_sorted', 1_000]:.2f} (goal < 3)")
    print(f"flush-list append cost ratio 10^5/10^3: "
          f"{fl['append', 100_000] / fl['append', 1_000]:.2f} (goal: flat)")
    print(f"flush-list figures took {time.perf_counter() - t_fl:.1f} s")
    print(f"total runtime {time.perf_counter() - t_start:.1f} s")
    print(f"recovery time ratio 8x/1x: {med['8x'] / med['1x']:.2f}")


if __name__ == "__main__":
    main()
