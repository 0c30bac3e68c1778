"""Regenerate the README's sample outputs and tables from real runs, or check them.

    python docs/update_readme.py            # run the commands, rewrite the marked blocks
    python docs/update_readme.py --check    # run them, fail (exit 1) if a block's shape changed

A generated block sits between ``<!-- BEGIN generated:NAME -->`` and
``<!-- END generated:NAME -->``; nothing else in the README is touched.  The blocks:

* ``default-run``: ``tornpage run --examples 40 --seed 0`` (deterministic work; the timings in
  it are what this machine measured);
* ``walkthrough``: a planted bug found, replayed, explained, shrunk, inspected and turned into a
  regression test;
* ``devices``: ``tornpage devices``;
* ``every-device``: 40 workloads on every device with media faults and crashes during recovery;
* ``doublewrite``: the doublewrite buffer off, on 512-byte sectors and on ``atomic16k``;
* ``shards``: two CI shards of the ``ci`` profile;
* ``speed``: ``benchmarks/campaign_speed.py`` (figures only: not shape-checked);
* ``benchmarks``: the recovery-scaling and engine-throughput benchmarks (figures only);
* ``nightly-memory``: a one-hour nightly campaign's memory (figures only; it takes the hour, so
  it runs only when named: ``--only nightly-memory``);
* ``selftest``: ``tornpage selftest`` as a table: every planted bug with the fault model it needs,
  what the campaign found (kind and checker rule) and the time from the start of its campaign
  to the saved, shrunk artifact; then the clean engine on every device.

``--check`` compares *shapes*: every run of digits becomes ``#`` (exit statuses excepted) and
runs of spaces one space, so a new timing passes and a changed exit status, verdict, rule, probe
name or table row fails.  It needs
tornpage installed (the ``tornpage`` command on PATH).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile

README = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "README.md")
BLOCK = re.compile(r"(<!-- BEGIN generated:(?P<name>[a-z-]+) -->\n)(?P<body>.*?)"
                   r"(<!-- END generated:(?P=name) -->)", re.S)


def _run(args: list[str], cwd: str, **extra_env: str) -> tuple[int, str]:
    env = dict(os.environ, PYTHONUNBUFFERED="1", COLUMNS="100", **extra_env)
    r = subprocess.run(["tornpage", *args], cwd=cwd, env=env, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, text=True)
    return r.returncode, r.stdout


def default_run(cwd: str) -> str:
    rc, out = _run(["run", "--examples", "40", "--seed", "0", "--artifacts", "art"], cwd)
    return f"```\n$ tornpage run --examples 40 --seed 0\n{out.rstrip()}\n```\n(exit status {rc})\n"


def devices(cwd: str) -> str:
    _, out = _run(["devices"], cwd)
    return f"```\n$ tornpage devices\n{out.rstrip()}\n```\n"


def selftest(cwd: str) -> str:
    rc, out = _run(["selftest", "--json", "st.json", "--artifacts", "st"], cwd)
    with open(os.path.join(cwd, "st.json")) as f:
        r = json.load(f)
    rows = ["| mutant | INNODB.md bug | needs | found (kind: rule) | in workload | "
            "seconds to the saved, shrunk artifact |", "|---|---|---|---|---|---|"]
    equivalent = []
    for m in r["mutants"]:
        found = f"{m['kind']}: `{m['rule']}`" if m["killed"] else "**survived**"
        if m["equivalent"]:
            e = m["experiment"]
            found = (f"equivalent: no outcome differs in {e['outcomes_compared']} crash states "
                     f"(seam answered otherwise {e['diverged']} of {e['seam_calls']} times)")
            equivalent.append(f"- `{m['mutant']}` (bug {m['bug']}): "
                              f"{m['experiment']['argument']}.")
        rows.append(f"| `{m['mutant']}` | {m['bug'] or 'fault model'} | "
                    f"{m['needs'] or 'default campaign'} | {found} | {m['workloads']} | "
                    f"{m['seconds_to_artifact']:.1f} |")
    rows.append("")
    rows.append("| clean engine on | media faults | workloads | crash states | findings |")
    rows.append("|---|---|---|---|---|")
    for c in r["clean"]:
        rows.append(f"| `{c['device']}` | {'yes' if c['media_faults'] else 'no'} | "
                    f"{c['workloads']} | {c['crash_states']} | {len(c['false_positives'])} |")
    tail = [ln for ln in out.splitlines() if ln.startswith(("mutants killed", "time to",
                                                             "false positives", "result"))]
    if equivalent:
        rows += ["", "Why each equivalent mutant cannot change an outcome in this engine, and "
                     "what it would need (the experiment above, the clean engine run on the "
                     "mutant's campaigns with every crash state's outcome compared, backs "
                     "each):", ""] + equivalent
    return ("```\n$ tornpage selftest\n...\n" + "\n".join(tail) + f"\n```\n(exit status {rc})\n\n"
            + "\n".join(rows) + "\n")


def walkthrough(cwd: str) -> str:
    """A planted bug found, replayed, explained, shrunk, inspected, turned into a test."""
    out = []

    def show(args: list[str], keep=None) -> str:
        rc, text = _run(args, cwd)
        lines = text.rstrip().splitlines()
        if keep is not None and len(lines) > keep:
            lines = lines[:keep] + ["..."]
        out.append("$ tornpage " + " ".join(args))
        out.extend(lines)
        out.append(f"(exit status {rc})")
        out.append("")
        return text

    text = show(["run", "--mutant", "ack-before-log-fsync", "--examples", "8", "--seed", "0",
                 "--quiet"])
    art = re.search(r"reproduce: tornpage replay (\S+)", text).group(1)
    show(["replay", art])
    show(["explain", art])
    show(["shrink", art])
    show(["inspect", art], keep=14)
    show(["regress", art, "-o", "test_regress_ack.py"])
    # no traceback and no short summary: their width depends on the terminal and on CI
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "--tb=no", "-rN", "-p",
                        "no:cacheprovider", "test_regress_ack.py"], cwd=cwd,
                       capture_output=True, text=True)
    out.append("$ python -m pytest -q --tb=no test_regress_ack.py")
    out.extend(ln for ln in r.stdout.rstrip().splitlines()[-1:])
    return "```\n" + "\n".join(out).rstrip() + "\n```\n"


MEDIA_PROBES = ["media_bitflip", "media_bit_rot", "media_sector_error", "media_eio_write",
                "media_enospc", "media_eio_fsync", "media_misdirected",
                "media_at_rest_corruption", "lost_write_detected", "crash_during_recovery",
                "refused_on_media_error", "refused_on_misdirected_write",
                "refused_on_at_rest_corruption"]


def every_device(cwd: str) -> str:
    """Every device with media faults and two crashes during recovery, 40 workloads each."""
    from tornpage.faultfs.devices import DEVICES
    head = ["device", "exit", "crash states", "findings"] + [p.replace("media_", "")
                                                             for p in MEDIA_PROBES]
    rows = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    codes = []
    for name in DEVICES:
        rc, _ = _run(["run", "--examples", "40", "--seed", "0", "--device", name,
                      "--media-faults", "--recovery-crashes", "2", "--quiet", "--json",
                      f"{name}.json", "--artifacts", f"art-{name}"], cwd)
        with open(os.path.join(cwd, f"{name}.json")) as f:
            d = json.load(f)
        cells = [f"`{name}`", str(rc), str(d["crash_states"]), str(len(d["findings"]))]
        cells += [str(d["probes"].get(p, 0)) for p in MEDIA_PROBES]
        rows.append("| " + " | ".join(cells) + " |")
        codes.append(rc)
    note = " (exit 1 with no finding: a required probe never fired in 40 workloads)" \
        if 1 in codes else ""
    return ("`tornpage run --examples 40 --seed 0 --device D --media-faults --recovery-crashes 2`"
            f" for each device{note}:\n\n" + "\n".join(rows) + "\n")


def _load() -> str:
    """The load average (1, 5 and 15 minutes), or "unknown" off Linux."""
    if not os.path.exists("/proc/loadavg"):
        return "unknown"
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def speed(cwd: str) -> str:
    """benchmarks/campaign_speed.py against its reference commit, with the load it ran under."""
    load = _load()
    bench = os.path.join(os.path.dirname(README), "benchmarks", "campaign_speed.py")
    r = subprocess.run([sys.executable, bench, "--examples", "24", "--repeat", "3"], cwd=cwd,
                       capture_output=True, text=True)
    lines = [ln for ln in r.stdout.splitlines() if not ln.startswith("run ")]
    return ("```\n$ python benchmarks/campaign_speed.py --examples 24 --repeat 3\n"
            + "\n".join(lines).strip() + "\n```\n"
            + f"(load average {load} when it started, 2-core machine)\n")


def _tail(args: list[str], cwd: str, start: str) -> list[str]:
    """The command line and its output from the first line starting with ``start``."""
    rc, text = _run(args, cwd)
    lines = text.rstrip().splitlines()
    at = next((i for i, ln in enumerate(lines) if ln.startswith(start)), 0)
    return ["$ tornpage " + " ".join(args), "..."] + lines[at:] + [f"(exit status {rc})", ""]


def doublewrite(cwd: str) -> str:
    """The doublewrite buffer off: torn pages found on 512-byte sectors, clean on atomic16k."""
    out = _tail(["run", "--no-doublewrite", "--examples", "40", "--seed", "0", "--quiet",
                 "--artifacts", "dw"], cwd, "findings")
    out += _tail(["run", "--no-doublewrite", "--device", "atomic16k", "--examples", "40",
                  "--seed", "0", "--quiet", "--artifacts", "dw16"], cwd, "findings")
    return "```\n" + "\n".join(out).rstrip() + "\n```\n"


def shards(cwd: str) -> str:
    """Two CI shards cover the ci profile's chunks without overlap."""
    out = []
    for k in (1, 2):
        args = ["run", "--profile", "ci", "--shard", f"{k}/2", "--quiet", "--json",
                f"s{k}.json", "--junit", f"s{k}.xml", "--artifacts", f"sh{k}"]
        rc, _ = _run(args, cwd, CI="true")
        out.append("$ CI=true tornpage " + " ".join(a for a in args[:-2]) + f"   # exit {rc}")
    chunks = [json.load(open(os.path.join(cwd, f"s{k}.json")))["chunks"] for k in (1, 2)]
    out.append("$ python -c \"import json; print(json.load(open('s1.json'))['chunks'], "
               "json.load(open('s2.json'))['chunks'])\"")
    out.append(f"{chunks[0]} {chunks[1]}")
    return "```\n" + "\n".join(out) + "\n```\n"


def benchmarks(cwd: str) -> str:
    """The recovery-scaling and engine-throughput benchmarks' summary lines."""
    here = os.path.join(os.path.dirname(README), "benchmarks")
    out = []
    for script, args, keep in (("recovery_scaling.py", ["--repeat", "5"], ("1x:", "8x:", "redo ratio",
                                                                         "flush-list insert cost",
                                                                         "flush-list append cost",
                                                                         "recovery time ratio")),
                               ("engine_throughput.py", [], ("median", "ratio", "SimDisk",
                                                             "OsVFS", "history"))):
        r = subprocess.run([sys.executable, os.path.join(here, script), *args], cwd=cwd,
                           capture_output=True, text=True)
        out.append(f"$ python benchmarks/{script} {' '.join(args)}".rstrip())
        out += [ln for ln in r.stdout.splitlines() if ln.startswith(keep)] or \
            r.stdout.splitlines()[-6:]
        out.append("")
    return "```\n" + "\n".join(out).rstrip() + "\n```\n"


def nightly_memory(cwd: str) -> str:
    """``benchmarks/nightly_memory.py --minutes 60 --jobs 1``: a one-hour nightly campaign's
    memory (an hour of wall-clock time: run it on its own, ``--only nightly-memory``)."""
    load = _load()
    args = ["--minutes", "60", "--jobs", "1", "--every", "60"]
    r = subprocess.run([sys.executable, os.path.join(os.path.dirname(README), "benchmarks",
                                                     "nightly_memory.py"), *args],
                       cwd=cwd, capture_output=True, text=True)
    keep = [ln for ln in r.stdout.splitlines()
            if ln.startswith(("campaign exit status", "peak total", "total RSS at", "nightly RSS"))]
    if r.returncode != 0 or not any(ln.startswith("nightly RSS") for ln in keep):
        raise SystemExit(f"benchmarks/nightly_memory.py failed (exit status {r.returncode}): "
                         f"{(r.stderr or r.stdout)[-2000:]}")
    return ("```\n$ python benchmarks/nightly_memory.py " + " ".join(args) + "\n...\n"
            + "\n".join(keep) + "\n```\n"
            + f"(load average {load} when it started, 2-core machine)\n")


GENERATORS = {"default-run": default_run, "walkthrough": walkthrough, "devices": devices,
              "every-device": every_device, "selftest": selftest, "speed": speed,
              "benchmarks": benchmarks, "doublewrite": doublewrite, "shards": shards,
              "nightly-memory": nightly_memory}
# blocks of measured figures whose shape varies between runs (phases sorted by their share):
# regenerated, never shape-checked
FIGURES_ONLY = {"speed", "benchmarks", "nightly-memory"}
# blocks regenerated only when named with --only (an hour of wall-clock time)
ON_REQUEST = {"nightly-memory"}


def shape(text: str) -> str:
    """Digits and spacing dropped, and the progress lines (their number depends on the
    machine's speed)."""
    lines = [ln for ln in text.splitlines() if not re.match(r"\s*\[\s*[\d.]+s\]", ln)]
    # exit statuses keep their digits: a changed verdict must fail the check
    kept = re.sub(r"(exit(?: status)? )(\d+)", r"\1<\2>", "\n".join(lines))
    return re.sub(r"[ \t]+", " ", re.sub(r"(?<!<)\d+(?!>)", "#", kept)).strip()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--check", action="store_true",
                    help="compare the blocks' shapes instead of rewriting them")
    ap.add_argument("--only", choices=sorted(GENERATORS), action="append",
                    help="just these blocks (repeat); default all")
    a = ap.parse_args()
    with open(README) as f:
        text = f.read()
    found = {m.group("name") for m in BLOCK.finditer(text)}
    missing = set(GENERATORS) - found
    if missing:
        print(f"README.md has no generated block for {', '.join(sorted(missing))}",
              file=sys.stderr)
        return 2
    wanted = a.only or sorted(set(GENERATORS) - (FIGURES_ONLY if a.check else ON_REQUEST))
    new = {}
    with tempfile.TemporaryDirectory() as cwd:
        for name in wanted:
            print(f"running the commands of block {name} ...", file=sys.stderr, flush=True)
            new[name] = GENERATORS[name](cwd)
    if a.check:
        bad = [m.group("name") for m in BLOCK.finditer(text)
               if m.group("name") in new and shape(m.group("body")) != shape(new[m.group("name")])]
        for name in bad:
            print(f"README block {name}: the commands' output no longer has the documented "
                  f"shape; run python docs/update_readme.py", file=sys.stderr)
            print(new[name], file=sys.stderr)
        return 1 if bad else 0

    def replace(m: re.Match) -> str:
        name = m.group("name")
        return m.group(1) + new[name] + m.group(4) if name in new else m.group(0)
    with open(README) as f:         # as it is now: another run may have rewritten other blocks
        text = f.read()
    with open(README, "w") as f:
        f.write(BLOCK.sub(replace, text))
    print(f"rewrote {', '.join(wanted)} in {README}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
