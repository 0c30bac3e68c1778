"""Memory of a long nightly campaign: does it stay flat, or grow with the run?

Run on demand (not a test), with tornpage installed, on Linux (it reads ``/proc``):

    python benchmarks/nightly_memory.py [--minutes M] [--jobs N] [--seed S] [--every SECONDS]

What it does: starts ``tornpage run --profile nightly --budget <M minutes> --seed S --jobs N``
(the nightly profile: crashes during recovery, up to 20 findings) as a child process and samples
the resident set size (RSS, from ``/proc/<pid>/status`` ``VmRSS``) of the campaign and of every
process below it (the ``--jobs`` pool workers) every ``--every`` seconds, until the campaign
exits.  A one-hour nightly is ``--minutes 60``; the default is 10.

Printed: one line per sample (elapsed seconds, total RSS in MiB, the largest single process's
RSS in MiB), then the peak total and per-process RSS, the total at 10 %, 50 % and 90 % of the
run (the last samples may fall in the campaign's shutdown), and last ``nightly RSS growth,
90%/10%: R (peak P MiB over M minutes)``: a ratio near 1
means memory is flat (the engine's caches are bounded); a ratio that grows with ``--minutes`` is
a leak.  The campaign's own exit status and summary line are printed too.  Absolute sizes depend
on the Python build; quote the ratio.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time


def _children(pid: int) -> list[int]:
    """Every process below ``pid`` (Linux ``/proc/<pid>/task/*/children``)."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        try:
            tasks = os.listdir(f"/proc/{p}/task")
        except OSError:
            continue
        for t in tasks:
            try:
                with open(f"/proc/{p}/task/{t}/children") as f:
                    kids = [int(x) for x in f.read().split()]
            except OSError:
                continue
            out += kids
            todo += kids
    return out


def _rss_mib(pid: int) -> float:
    """VmRSS of ``pid`` in MiB (0 if it is gone)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--every", type=float, default=10.0, help="seconds between samples")
    args = ap.parse_args()
    if not os.path.isdir("/proc/self"):
        sys.exit("nightly_memory.py reads /proc: Linux only")
    cmd = [sys.executable, "-m", "tornpage.campaigns.cli", "run", "--profile", "nightly",
           "--budget", str(args.minutes * 60), "--seed", str(args.seed), "--jobs", str(args.jobs),
           "--quiet", "--artifacts", tempfile.mkdtemp(prefix="nightly-memory-")]
    print("$", " ".join(cmd[2:]), flush=True)
    child = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    t0 = time.monotonic()
    samples: list[tuple[float, float, float]] = []
    while child.poll() is None:
        procs = [child.pid] + _children(child.pid)
        sizes = [_rss_mib(p) for p in procs]
        samples.append((time.monotonic() - t0, sum(sizes), max(sizes)))
        print(f"{samples[-1][0]:8.0f} s  total {samples[-1][1]:7.1f} MiB  largest process "
              f"{samples[-1][2]:7.1f} MiB", flush=True)
        time.sleep(args.every)
    out = child.stdout.read()
    summary = [ln for ln in out.splitlines() if ln.startswith(("crash states", "result"))]
    print(f"campaign exit status {child.returncode}; " + "; ".join(summary))
    if len(samples) < 3:
        print("too few samples for a trend: run longer or sample more often")
        return 1

    def at(frac: float) -> float:
        return samples[min(len(samples) - 1, int(frac * (len(samples) - 1)))][1]
    peak_total = max(s[1] for s in samples)
    peak_proc = max(s[2] for s in samples)
    print(f"peak total RSS {peak_total:.1f} MiB, peak of one process {peak_proc:.1f} MiB")
    print(f"total RSS at 10% {at(0.1):.1f} MiB, 50% {at(0.5):.1f} MiB, 90% {at(0.9):.1f} MiB")
    print(f"nightly RSS growth, 90%/10%: {at(0.9) / at(0.1):.2f} (peak {peak_total:.0f} MiB "
          f"over {args.minutes:g} minutes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
