"""Crash states per second of the default campaign, with and without crashes during recovery.

Run on demand (not a test):  python benchmarks/campaign_speed.py [--examples N] [--repeat R]

Each configuration runs the same seeded workloads (``--examples``) ``--repeat`` times,
interleaved so machine noise hits both alike; prints every run, the median crash states per
second of each configuration and their ratio.  Absolute figures depend on the machine.
"""
from __future__ import annotations

import argparse
import statistics
import time

from tornpage.campaigns.runner import CampaignConfig, run_campaign


def one(examples: int, recovery_crashes: int, seed: int) -> tuple[int, float]:
    cfg = CampaignConfig(seed=seed, budget=None, examples=examples,
                         recovery_crashes=recovery_crashes, artifacts_dir="/tmp/tornpage-bench")
    t0 = time.perf_counter()
    res = run_campaign(cfg)
    dt = time.perf_counter() - t0
    assert not res.failed, res.findings or res.missing_probes
    return res.crash_states, dt


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--examples", type=int, default=120)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    rates: dict[int, list[float]] = {1: [], 0: []}
    for r in range(a.repeat):
        for k in (1, 0):
            n, dt = one(a.examples, k, a.seed)
            rates[k].append(n / dt)
            print(f"run {r + 1} recovery-crashes {k}: {n} crash states in {dt:.1f} s = "
                  f"{n / dt:.0f}/s")
    on, off = statistics.median(rates[1]), statistics.median(rates[0])
    print(f"median crash states/s, recovery crashes on (default): {on:.0f}")
    print(f"median crash states/s, recovery crashes off: {off:.0f}")
    print(f"ratio on/off: {on / off:.2f}")


if __name__ == "__main__":
    main()
