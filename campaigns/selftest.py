"""``tornpage selftest``: prove the harness.  Every planted bug (:mod:`campaigns.mutants`) is run
with the fault model it needs and must be found (killed), and the clean engine is run on every
device, with and without media faults, and must give no finding (no false positive).

Budgets are deterministic and the same for every mutant: up to ``seeds`` campaigns of
``examples`` workloads each (seeds ``seed``, ``seed + 1``, …; each stops at the first finding)
and ``clean_examples`` workloads per clean campaign, so two runs of the same command give the
same verdicts and the same artifacts.  The time from the start of a mutant's
campaign to its saved, shrunk artifact is measured (wall clock, reported, never used to decide).
"""
from __future__ import annotations

import dataclasses
import os
import statistics
import time

from tornpage.campaigns.mutants import MUTANTS
from tornpage.campaigns.runner import CampaignConfig, run_campaign
from tornpage.campaigns.workload import WorkloadSettings
from tornpage.faultfs.devices import DEFAULT_DEVICE, DEVICES


def _settings(device: str | None) -> WorkloadSettings:
    return dataclasses.replace(WorkloadSettings(), device=device or DEFAULT_DEVICE)


def run_mutant(name: str, examples: int, seed: int, artifacts_dir: str,
               shrink_steps: int, seeds: int = 1) -> dict:
    """One mutant's campaigns: seeds ``seed``, ``seed + 1``, … (``seeds`` of them) in turn, each
    of at most ``examples`` workloads, until one finds it.  The same budget for every mutant:
    nothing is tuned to one.  A JSON-able dict: killed, kind, rule, seed, seconds, workloads…"""
    opts = MUTANTS[name].campaign_options()
    t0 = time.perf_counter()
    workloads = states = 0
    for s in range(seed, seed + seeds):
        cfg = CampaignConfig(seed=s, budget=None, examples=examples, mutant=name,
                             settings=_settings(opts["device"]),
                             media_faults=opts["media_faults"],
                             recovery_crashes=opts["recovery_crashes"],
                             artifacts_dir=os.path.join(artifacts_dir, name),
                             shrink_steps=shrink_steps, required_probes=())
        res = run_campaign(cfg)
        workloads += res.workloads
        states += res.crash_states
        if res.findings:
            break
    seconds = time.perf_counter() - t0
    f = res.findings[0] if res.findings else None
    return {"mutant": name, "bug": MUTANTS[name].bug, "needs": MUTANTS[name].needs,
            "killed": f is not None, "kind": f.verdict["kind"] if f else None,
            "rule": f.verdict.get("rule") if f else None, "seed": s if f else None,
            "artifact": f.artifact if f else None, "workloads": workloads,
            "crash_states": states, "seconds_to_artifact": round(seconds, 2)}


def run_clean(device: str, media_faults: bool, examples: int, seed: int,
              artifacts_dir: str) -> dict:
    """The clean engine on ``device``: any finding is a false positive."""
    cfg = CampaignConfig(seed=seed, budget=None, examples=examples,
                         settings=_settings(device), media_faults=media_faults,
                         artifacts_dir=os.path.join(artifacts_dir, f"clean-{device}"),
                         required_probes=(), max_findings=20)
    res = run_campaign(cfg)
    return {"device": device, "media_faults": media_faults, "workloads": res.workloads,
            "crash_states": res.crash_states,
            "false_positives": [f.to_json() for f in res.findings]}


def selftest(*, examples: int = 40, clean_examples: int = 8, seed: int = 0, seeds: int = 4,
             artifacts_dir: str = "tornpage-selftest", shrink_steps: int = 100,
             executor=None, progress=lambda line: None) -> dict:
    """Run every mutant and every clean configuration; return the report (see the module
    docstring).  ``executor``: a ``concurrent.futures`` executor to spread the campaigns over,
    or None to run them here in turn."""
    jobs = [("mutant", (name, examples, seed, artifacts_dir, shrink_steps, seeds))
            for name in MUTANTS]
    jobs += [("clean", (device, media, clean_examples, seed, artifacts_dir))
             for device in DEVICES for media in (False, True)]
    fns = {"mutant": run_mutant, "clean": run_clean}
    if executor is None:
        results = []
        for kind, args in jobs:
            results.append(fns[kind](*args))
            progress(_line(kind, results[-1]))
    else:
        futures = [executor.submit(fns[kind], *args) for kind, args in jobs]
        results = []
        for (kind, _), fut in zip(jobs, futures):
            results.append(fut.result())
            progress(_line(kind, results[-1]))
    mutants = [r for (k, _), r in zip(jobs, results) if k == "mutant"]
    clean = [r for (k, _), r in zip(jobs, results) if k == "clean"]
    times = [m["seconds_to_artifact"] for m in mutants if m["killed"]]
    report = {"tool": "tornpage selftest", "seed": seed, "seeds": seeds,
              "examples_per_mutant": examples,
              "clean_examples": clean_examples, "mutants": mutants, "clean": clean,
              "killed": sum(m["killed"] for m in mutants), "total": len(mutants),
              "survivors": [m["mutant"] for m in mutants if not m["killed"]],
              "false_positives": sum(len(c["false_positives"]) for c in clean),
              "median_seconds_to_artifact": statistics.median(times) if times else None,
              "max_seconds_to_artifact": max(times) if times else None}
    report["passed"] = not report["survivors"] and not report["false_positives"]
    return report


def _line(kind: str, r: dict) -> str:
    if kind == "mutant":
        if not r["killed"]:
            return f"SURVIVED {r['mutant']} ({r['workloads']} workloads)"
        return (f"killed   {r['mutant']:40s} {r['kind']}:{r['rule']}  "
                f"{r['seconds_to_artifact']:.1f} s, seed {r['seed']}, {r['workloads']} "
                f"workloads")
    fp = len(r["false_positives"])
    return (f"{'clean   ' if not fp else 'FALSE+  '} {r['device']}"
            f"{' --media-faults' if r['media_faults'] else ''}: {r['workloads']} workloads, "
            f"{r['crash_states']} crash states, {fp} findings")
