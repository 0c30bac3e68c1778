"""Distinct crash states per second of the default campaign (and with ``--media-faults``),
against a reference commit, with the per-phase split of the CPU and the peak memory.

Run on demand (not a test), from the repository with tornpage installed:

    python benchmarks/campaign_speed.py [--examples N] [--repeat R] [--seed S] [--ref REV]

What it does: the working tree's campaign and the reference commit's (``--ref``, default the
commit before the crash-state search and speed work) run the same ``--examples`` workloads of
``--seed``, each in its own subprocess, interleaved (current, reference, current, ...) ``--repeat``
times for each configuration, so a noisy machine slows both alike.  The reference is taken with
``git archive`` into a temporary directory; both trees are imported from their sources (first on
``PYTHONPATH``, either layout: the top-level ``campaigns`` package of old commits, or
``tornpage.*``), never from an installed copy, and each child checks where its code came from.

Counting: every call of the crash-state checker is keyed by what makes a state distinct: its
durable image, the markers issued before the crash, whether the crash lost anything, and the
crash plans of any crashes during recovery.  ``distinct`` counts the different keys; the rest
are repeats, reported apart (the current campaign reuses a repeat's verdict instead of checking
it again, and counts it as ``crash_states_reused``).  Hashing the images for the count is the
benchmark's own cost and is taken out of the timings.

Phases (exclusive CPU seconds; a nested phase's time is not counted in its caller): running the
workload, building crash images, recovery (``Engine.open``), background rollback, fsck
(``check_after_recovery`` and ``check_quiesced``, purge to the end included), the
committed-state oracle, and the rest (Hypothesis, the search, the campaign's own work).

Printed: one line per run, then per configuration and tree the medians, the phase split and the
peak RSS (``ru_maxrss`` of the child), and last
``distinct crash states/s: X (ratio to <ref>: R)``: the default configuration's median distinct
states per CPU-second of the current tree, and the median over the interleaved pairs of
current/reference.  Absolute figures depend on the machine; quote the ratio.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
DEFAULT_REF = "d95c5a3"      # main before the namespace move, the one search and the speed work

CHILD = r'''
import hashlib, json, os, resource, sys, tempfile, time
examples, seed, media, layout = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3] == "1", sys.argv[4]
if layout == "tornpage":
    from tornpage.campaigns import crashcheck, runner
    from tornpage.engine import Engine
    from tornpage.faultfs.crash import CrashStateBuilder
    from tornpage.faultfs.trace import Marker, MediaFault
else:                                   # before the namespace move: top-level packages
    from campaigns import crashcheck, runner
    from engine import Engine
    from faultfs.crash import CrashStateBuilder
    from faultfs.trace import Marker, MediaFault
where = os.path.dirname(os.path.dirname(os.path.realpath(runner.__file__)))
assert where.startswith(sys.argv[5]), (where, sys.argv[5])     # the tree asked for, not another
cpu = time.process_time
phases = {}
stack = []
overhead = [0.0]


def timed(name, fn):
    def wrapper(*a, **k):
        t = cpu()
        if stack:
            phases[stack[-1]] = phases.get(stack[-1], 0.0) + t - stack_t[-1]
        stack.append(name); stack_t.append(t)
        try:
            return fn(*a, **k)
        finally:
            t2 = cpu()
            phases[name] = phases.get(name, 0.0) + t2 - stack_t[-1]
            stack.pop(); stack_t.pop()
            if stack:
                stack_t[-1] = t2
    return wrapper
stack_t = []

keys = set()
calls = [0]
hook_builds = [0.0]
real_check = crashcheck.check_crash_state


def counting(run, plan, *a, **k):
    out = real_check(run, plan, *a, **k)
    t = cpu()
    calls[0] += 1
    img = crashcheck.builder_for(run).build(plan)
    hook_builds[0] += cpu() - t
    h = hashlib.blake2b(digest_size=20)
    for p in sorted(img.files):
        h.update(p.encode() + hashlib.blake2b(img.files[p], digest_size=20).digest())
    h.update(repr(sorted(img.dirs)).encode() + repr(sorted(img.bad_sectors.items())).encode())
    before = sum(1 for op in run.trace.ops[:plan.position] if isinstance(op, (Marker, MediaFault)))
    lossy = any(c.kind != "keep" for _, c in plan.choices)
    nested = [p.dumps() for p in out.nested]
    keys.add((id(run), h.hexdigest(), before, lossy, tuple(nested)))
    overhead[0] += cpu() - t
    return out

crashcheck.check_crash_state = counting
runner.run_workload = timed("workload", runner.run_workload)
CrashStateBuilder.build = timed("crash image", CrashStateBuilder.build)
real_open = Engine.open.__func__
Engine.open = classmethod(timed("recovery", real_open))
Engine.finish_background_rollback = timed("background rollback",
                                          Engine.finish_background_rollback)
crashcheck.check_after_recovery = timed("fsck", crashcheck.check_after_recovery)
crashcheck.check_quiesced = timed("fsck", crashcheck.check_quiesced)
crashcheck.check_committed_state = timed("oracle", crashcheck.check_committed_state)

cfg = runner.CampaignConfig(seed=seed, budget=None, examples=examples, media_faults=media,
                            artifacts_dir=tempfile.mkdtemp(), check_determinism=False)
t0, c0 = time.perf_counter(), cpu()
res = runner.run_campaign(cfg)
wall, total = time.perf_counter() - t0, cpu() - c0
# the counting hook's own work: its image builds ran inside "crash image", its hashing in no
# phase; both leave the total
phases["crash image"] = max(0.0, phases.get("crash image", 0.0) - hook_builds[0])
total -= overhead[0]
wall -= overhead[0]
phases["rest (Hypothesis, search, campaign)"] = max(0.0, total - sum(phases.values()))
print(json.dumps({"distinct": len(keys), "checked_calls": calls[0],
                  "reported": res.crash_states,
                  "reused": getattr(res, "crash_states_reused", 0),
                  "workloads": res.workloads, "findings": len(res.findings),
                  "cpu": total, "wall": wall, "phases": phases,
                  "maxrss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
'''


@dataclasses.dataclass
class Tree:
    name: str
    pythonpath: str        # put first on PYTHONPATH: it shadows any installed tornpage
    layout: str            # "tornpage" (tornpage.* packages) or "flat" (old top-level packages)
    root: str              # where its code lives (checked by the child)


def _tree(name: str, d: str) -> Tree:
    if os.path.isdir(os.path.join(d, "src", "tornpage")):      # the tornpage.* layout
        shim = tempfile.mkdtemp(prefix="tornpage-path-")
        pkg = os.path.join(shim, "tornpage")
        os.makedirs(pkg)
        for entry in os.listdir(os.path.join(d, "src", "tornpage")):
            os.symlink(os.path.join(d, "src", "tornpage", entry), os.path.join(pkg, entry))
        for sub in ("engine", "faultfs", "checkers", "campaigns"):
            os.symlink(os.path.join(d, sub), os.path.join(pkg, sub))
        return Tree(name, shim, "tornpage", os.path.realpath(d))
    return Tree(name, d, "flat", os.path.realpath(d))


def reference_tree(rev: str) -> Tree:
    """The commit ``rev``, extracted with ``git archive`` into a temporary directory."""
    short = subprocess.run(["git", "-C", REPO, "rev-parse", "--short", rev], check=True,
                           capture_output=True, text=True).stdout.strip()
    d = tempfile.mkdtemp(prefix=f"tornpage-ref-{short}-")
    archive = subprocess.run(["git", "-C", REPO, "archive", rev], check=True,
                             capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", d], input=archive, check=True)
    return _tree(short, d)


def run_child(tree: Tree, examples: int, seed: int, media: bool) -> dict:
    env = dict(os.environ, PYTHONPATH=tree.pythonpath)
    with tempfile.TemporaryDirectory() as cwd:
        r = subprocess.run([sys.executable, "-c", CHILD, str(examples), str(seed),
                            "1" if media else "0", tree.layout, tree.root], env=env, cwd=cwd,
                           capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"benchmark child failed:\n{r.stderr[-3000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--examples", type=int, default=40)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--ref", default=DEFAULT_REF, help="reference commit (default %(default)s)")
    ap.add_argument("--no-media", action="store_true", help="skip the --media-faults runs")
    a = ap.parse_args()
    reference = reference_tree(a.ref)
    ref = reference.name
    current = _tree("current", REPO)
    configs = [("default", False)] + ([] if a.no_media else [("--media-faults", True)])
    out: dict = {}
    for r in range(a.repeat):
        for name, media in configs:
            for t in (current, reference):
                tree = t.name
                x = run_child(t, a.examples, a.seed, media)
                x["rate"] = x["distinct"] / x["cpu"]
                out.setdefault((name, tree), []).append(x)
                print(f"run {r + 1} {name:14s} {tree:8s}: {x['distinct']:5d} distinct states "
                      f"({x['checked_calls'] - x['distinct']} repeats checked, {x['reused']} "
                      f"reused) of {x['workloads']} workloads in {x['cpu']:.2f} CPU-s, "
                      f"{x['wall']:.2f} s: {x['rate']:.0f} distinct/CPU-s", flush=True)
    ratios = {}
    for name, _ in configs:
        for tree in ("current", ref):
            xs = out[(name, tree)]
            med = statistics.median(x["rate"] for x in xs)
            print(f"\n{name} @ {tree}: median {med:.0f} distinct crash states per CPU-second, "
                  f"peak RSS {max(x['maxrss_mib'] for x in xs):.0f} MiB")
            tot = {}
            for x in xs:
                for k, v in x["phases"].items():
                    tot[k] = tot.get(k, 0.0) + v
            s = sum(tot.values()) or 1.0
            for k, v in sorted(tot.items(), key=lambda kv: -kv[1]):
                print(f"  {k:38s} {100 * v / s:5.1f}%")
        pairs = [c["rate"] / b["rate"] for c, b in zip(out[(name, "current")], out[(name, ref)])]
        ratios[name] = statistics.median(pairs)
        print(f"{name}: ratio current/{ref} per interleaved pair: "
              + ", ".join(f"{p:.2f}" for p in pairs))
    cur = statistics.median(x["rate"] for x in out[("default", "current")])
    print(f"distinct crash states/s: {cur:.0f} (ratio to {ref}: {ratios['default']:.2f})")


if __name__ == "__main__":
    main()
