"""``tornpage report``: one self-contained HTML page for one or more campaign runs.

A nightly run, or a CI matrix (several ``tornpage run --json`` summaries merged: shards,
devices), becomes one page a person would rather look at than read: crash states and workloads
per shard and device, a bar chart of the probes (required ones marked, a required probe that
never fired in red), the coverage of the crash points, and per distinct finding its kind, rule,
explanation, reproduce command and IO timeline around the crash, rebuilt from its artifact
(each trace operation a box: durable, kept, dropped, torn with its tear units, with the crash
line).

The page has no script and loads nothing: the CSS is inline, the charts are inline SVG drawn
by the template (jinja2, autoescaping on), and a Content-Security-Policy forbids any fetch.
"""
from __future__ import annotations

import datetime
import json
import math
import os
from collections import Counter

import jinja2

from tornpage.campaigns import crashcheck
from tornpage.campaigns.artifacts import ArtifactError, load as load_artifact
from tornpage.campaigns.mutants import planted
from tornpage.campaigns.workload import run_workload
from tornpage.checkers.probes import FAULT_PROBES, PROBES, WORKLOAD_PROBES
from tornpage.checkers.rules import RULES
from tornpage.checkers.verdict import KIND_NAMES
from tornpage.faultfs.crash import DROP, KEEP, SIZE_ONLY, TEAR, tear_units
from tornpage.faultfs.trace import Fsync, FsyncDir, Marker, MediaFault, Write


class ReportError(ValueError):
    """Input the report cannot use (the message says which file and why)."""


# -- reading runs ----------------------------------------------------------------------------------
def load_run(path: str) -> dict:
    """The summary ``tornpage run --json`` wrote at ``path``.

    Raises:
        ReportError: missing, unreadable, not JSON, or not a tornpage run summary.
    """
    try:
        with open(path, encoding="utf-8") as f:
            d = json.load(f)
    except FileNotFoundError:
        raise ReportError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise ReportError(f"{path}: is a directory, not a run JSON") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ReportError(f"{path}: not a JSON file ({e})") from None
    what = "not a tornpage run JSON (tornpage run --json FILE writes one)"
    if not isinstance(d, dict) or d.get("tool") != "tornpage":
        if isinstance(d, dict) and d.get("tornpage_artifact") is not None:
            what += "; this is a finding artifact: pass the run's JSON, and the artifacts " \
                    "directory with --artifacts"
        raise ReportError(f"{path}: {what}")
    for key, typ, desc in (("settings", dict, "an object"), ("workloads", int, "an integer"),
                           ("crash_states", int, "an integer"), ("probes", dict, "an object"),
                           ("coverage", dict, "an object"), ("findings", list, "a list")):
        if key not in d:
            raise ReportError(f"{path}: {what}: missing field {key!r}")
        if not isinstance(d[key], typ) or isinstance(d[key], bool):
            raise ReportError(f"{path}: {what}: {key} must be {desc}, got {d[key]!r}")
    if not all(isinstance(v, int) for v in d["probes"].values()):
        raise ReportError(f"{path}: {what}: probe counts must be integers")
    if not all(isinstance(f, dict) for f in d["findings"]):
        raise ReportError(f"{path}: {what}: each finding must be an object")
    return d


def _shard(d: dict) -> str:
    s = d.get("shard")
    if isinstance(s, list) and len(s) == 2:
        return f"{s[0]}/{s[1]}"
    return "1/1"


def _shard_key(d: dict):
    s = d.get("shard")
    return tuple(s) if isinstance(s, list) and len(s) == 2 and \
        all(isinstance(x, int) for x in s) else (1, 1)


# -- artifacts and the IO timeline -----------------------------------------------------------------
def find_artifact(recorded: str | None, run_path: str, artifacts_dir: str | None) -> str | None:
    """Where the artifact ``recorded`` in a run JSON is now: under ``artifacts_dir`` (by file
    name, searched recursively: a CI download puts each job's files in a folder of its own),
    at the recorded path, or beside the run JSON."""
    if not recorded:
        return None
    name = os.path.basename(recorded)
    if artifacts_dir:
        direct = os.path.join(artifacts_dir, name)
        if os.path.isfile(direct):
            return direct
        for root, _dirs, files in os.walk(artifacts_dir):
            if name in files:
                return os.path.join(root, name)
    if os.path.isfile(recorded):
        return recorded
    beside = os.path.join(os.path.dirname(os.path.abspath(run_path)), recorded)
    if os.path.isfile(beside):
        return beside
    return None


ROW_H, TORN_H, GAP, EVENT_H = 24, 40, 4, 18
BOX_X, BOX_W, STATUS_X, SVG_W = 8, 760, 780, 1000

STATUS_TEXT = {
    "durable": "durable (a barrier followed)",
    "kept": "pending, kept",
    "dropped": "pending, DROPPED",
    "dropped-ordered": "dropped (ordered: after a loss)",
    "torn": "pending, TORN",
    "size-only": "size only, data lost",
    "barrier": "barrier",
    "marker": "marker",
    "media": "media fault",
    "after": "not issued (after the crash)",
    "applied": "applied",
}


def _clip(s: str, n: int = 100) -> str:
    return s if len(s) <= n else s[:n - 1] + "…"


def timeline(art, before: int = 12, after: int = 3) -> dict:
    """The IO timeline of an artifact around its crash, laid out for the template's SVG.

    Replays the workload with the artifact's mutant planted and takes the pending operations
    and their fates from the crash plan (:class:`faultfs.crash.CrashStateBuilder`).  Shows the
    ``before`` operations before the crash, ``after`` after it, and every operation the plan
    loses or tears (with its neighbours), gaps elided."""
    with planted(art.mutant):
        run = run_workload(art.settings, art.steps)
    trace = run.trace
    builder = crashcheck.builder_for(run)
    plan = art.plan
    pos = plan.position
    pending = set(builder.pending(pos))
    choices = dict(plan.choices)
    describe = crashcheck.describe_write(run)
    profile = builder.profile
    n = len(trace)

    shown = set(range(max(0, pos - before), min(n, pos + after)))
    for i, c in choices.items():
        if c.kind != KEEP:
            shown.update(j for j in (i - 1, i, i + 1) if 0 <= j < n)
    # an ordered device keeps a prefix of the pending operations: after the first loss every
    # later pending operation is gone too
    first_loss = min((i for i, c in choices.items() if c.kind != KEEP and i in pending),
                     default=None)
    events: dict[int, list[str]] = {}
    for i, words in run.events:
        events.setdefault(i, []).append(words)

    rows, y, prev = [], 4, None
    counts: Counter = Counter()
    crash_y = None

    def event_rows(k: int) -> None:
        # an event at index k happened when operations 0..k-1 had been issued
        nonlocal y
        for words in events.get(k, []):
            rows.append({"kind": "event", "y": y, "text": _clip(f"— {words}", 120)})
            y += EVENT_H

    for i in sorted(shown):
        if prev is not None and i > prev + 1:
            rows.append({"kind": "gap", "y": y, "text": f"⋯ {i - prev - 1} operations ⋯"})
            y += EVENT_H
        if crash_y is None and i >= pos:
            event_rows(pos)
            crash_y = y + 2
            y += 22
        if i < pos:
            event_rows(i)
        op = trace.ops[i]
        label = trace.describe(i)
        if isinstance(op, Write):
            extra = describe(op)
            if extra:
                label += f" ({extra})"
        units = []
        torn_text = None
        if i >= pos:
            status = "after"
        elif isinstance(op, Marker):
            status = "marker"
        elif isinstance(op, (Fsync, FsyncDir)):
            status = "barrier"
        elif isinstance(op, MediaFault):
            status = "media"
        elif i not in pending:
            status = "durable" if profile.power_loss else "applied"
        else:
            c = choices.get(i)
            kind = c.kind if c is not None else KEEP
            if profile.ordered and first_loss is not None and i > first_loss:
                status = "dropped-ordered"
            elif kind == DROP:
                status = "dropped"
            elif kind == SIZE_ONLY:
                status = "size-only"
            elif kind == TEAR and isinstance(op, Write):
                status = "torn"
                parts = tear_units(op.offset, len(op.data), profile.tear_unit)
                kept = set(c.units)
                scale = (BOX_W - 8) / max(1, len(op.data))
                for u, (a, b) in enumerate(parts):
                    units.append({"x": BOX_X + 4 + a * scale, "w": max(1.0, (b - a) * scale),
                                  "new": u in kept,
                                  "title": f"unit {u}: bytes [{op.offset + a}, {op.offset + b}) "
                                           + ("reached the disk" if u in kept else
                                              f"lost, reads as {c.fill}")})
                torn_text = f"TORN: {len(kept)}/{len(parts)} units new, rest {c.fill}"
            else:
                status = "kept"
        counts[status] += 1
        h = TORN_H if units else ROW_H
        rows.append({"kind": "op", "y": y, "h": h, "index": i, "status": status,
                     "text": _clip(label), "title": label, "units": units,
                     "unit_y": y + 22, "status_text": torn_text or STATUS_TEXT[status],
                     "last": i == pos - 1})
        y += h + GAP
        prev = i
    if crash_y is None:          # the crash is at the end of the trace
        event_rows(pos)
        crash_y = y + 2
        y += 22
    lost = [i for i, c in choices.items() if c.kind != KEEP]
    return {"rows": rows, "height": y + 6, "crash_y": crash_y, "position": pos,
            "ops": n, "pending": len(pending), "lost": len(lost), "counts": dict(counts),
            "device": profile.name, "tear_unit": profile.tear_unit,
            "trace_matches": run.trace.hash() == art.trace_hash,
            "nested": len(art.nested),
            "plan_lines": crashcheck.explain_plans(run, plan, art.nested)}


# -- the page --------------------------------------------------------------------------------------
def _probe_groups() -> list[tuple[str, list[tuple[str, str]]]]:
    return [("recovery branches", [(k, v[1]) for k, v in PROBES.items()]),
            ("workloads", [(k, v[1]) for k, v in WORKLOAD_PROBES.items()]),
            ("faults", list(FAULT_PROBES.items()))]


PROBE_LABEL_W, PROBE_BAR_X, PROBE_BAR_W, PROBE_ROW = 290, 300, 520, 18


def probe_chart(totals: Counter, required: set) -> dict:
    """The probe bar chart (log scale) laid out for the template."""
    groups = _probe_groups()
    known = {k for _, items in groups for k, _ in items}
    other = sorted(set(totals) - known)
    if other:
        groups.append(("other", [(k, "") for k in other]))
    top = max([1] + list(totals.values()))
    rows, y = [], 6
    for title, items in groups:
        rows.append({"kind": "group", "y": y + 12, "text": title})
        y += 20
        for name, desc in items:
            count = totals.get(name, 0)
            req = name in required
            w = PROBE_BAR_W * math.log10(1 + count) / math.log10(1 + top) if count else 0
            state = "missing" if req and not count else ("zero" if not count else "fired")
            rows.append({"kind": "probe", "y": y, "name": name, "count": count,
                         "required": req, "state": state, "w": round(max(w, 2.0), 1),
                         "title": f"{name}: {count:,}" + (" (required)" if req else "")
                                  + (f": {desc}" if desc else "")})
            y += PROBE_ROW
        y += 6
    return {"rows": rows, "height": y + 4, "top": top,
            "ticks": [{"x": PROBE_BAR_X + PROBE_BAR_W * math.log10(1 + t) / math.log10(1 + top),
                       "label": f"{t:,}"}
                      for t in (1, 10, 100, 1000, 10000, 100000, 1000000) if t <= top]}


def build_context(runs: list[tuple[str, dict]], artifacts_dir: str | None = None) -> dict:
    """Everything the template shows, from the runs ``(path, summary)``."""
    runs = sorted(runs, key=lambda r: (str(r[1]["settings"].get("device", "")),
                                       _shard_key(r[1]), r[0]))
    table = []
    totals = Counter()
    probes: Counter = Counter()
    required: set = set()
    for path, d in runs:
        s = d["settings"]
        cov = d["coverage"]
        probes.update(d["probes"])
        required.update(p for p in d.get("required_probes") or [] if isinstance(p, str))
        row = {"file": os.path.basename(path), "path": path,
               "device": s.get("device", "?"), "shard": _shard(d), "seed": d.get("seed"),
               "mutant": d.get("mutant") or "", "page_size": s.get("page_size", ""),
               "doublewrite": "on" if s.get("doublewrite", True) else "off",
               "modes": ",".join(str(m) for m in d.get("trx_commit_modes") or []),
               "search": d.get("search", ""),
               "workloads": d["workloads"], "crash_states": d["crash_states"],
               "reused": d.get("crash_states_reused", 0) or 0,
               "shrink_runs": d.get("shrink_runs", 0) or 0,
               "rate": d.get("crash_states_per_second"),
               "elapsed": d.get("elapsed_seconds", 0) or 0,
               "findings": len(d["findings"]),
               "missing": list(d.get("missing_probes") or []),
               "passed": bool(d.get("passed", not d["findings"])),
               "cov": {"points": cov.get("crash_points", 0) or 0,
                       "exhaustive": cov.get("crash_points_exhaustive", 0) or 0,
                       "sampled": cov.get("crash_points_sampled", 0) or 0,
                       "states": cov.get("exhaustive_states", 0) or 0,
                       "largest": cov.get("largest_exhaustive_space", 0) or 0,
                       "median": cov.get("sampled_median_fraction"),
                       "prefixes": cov.get("prefixes", 0) or 0}}
        table.append(row)
        for k in ("workloads", "crash_states", "reused", "shrink_runs", "elapsed", "findings"):
            totals[k] += row[k]
        for k in ("points", "exhaustive", "sampled", "states", "prefixes"):
            totals["cov_" + k] += row["cov"][k]

    # per device subtotals when the matrix has several runs of a device
    devices: dict[str, Counter] = {}
    for row in table:
        c = devices.setdefault(row["device"], Counter())
        c["runs"] += 1
        for k in ("workloads", "crash_states", "findings"):
            c[k] += row[k]
    # coverage bars: exhaustive and sampled crash points, on one scale for every run
    top_points = max([1] + [r["cov"]["points"] for r in table])
    labels = Counter(f"{r['device']} · shard {r['shard']}" for r in table)
    for row in table:
        row["label"] = f"{row['device']} · shard {row['shard']}"
        if labels[row["label"]] > 1:       # two runs of one shard and device: name the files
            row["label"] = _clip(f"{row['label']} · {row['file']}", 34)
    for row in table:
        cv = row["cov"]
        cv["w_ex"] = 520 * cv["exhaustive"] / top_points
        cv["w_sa"] = 520 * cv["sampled"] / top_points

    missing = sorted(p for p in required if not probes.get(p))
    findings = _findings(runs, artifacts_dir)
    passed = not findings and not missing and all(r["passed"] for r in table)
    return {"runs": table, "totals": totals, "devices": devices,
            "multi_device": len(devices) > 1 or len(table) > 1,
            "chart": probe_chart(probes, required), "required": sorted(required),
            "missing": missing, "findings": findings, "passed": passed,
            "generated": datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
            "status_text": STATUS_TEXT, "svg_w": SVG_W, "box_x": BOX_X, "box_w": BOX_W,
            "status_x": STATUS_X, "probe": {"label_w": PROBE_LABEL_W, "bar_x": PROBE_BAR_X,
                                            "bar_w": PROBE_BAR_W},
            "artifacts_dir": artifacts_dir}


def _findings(runs: list[tuple[str, dict]], artifacts_dir: str | None) -> list[dict]:
    """One entry per distinct finding signature over every run, its timeline drawn from the
    first artifact found."""
    by_sig: dict[str, dict] = {}
    for path, d in runs:
        where = f"{os.path.basename(path)} ({d['settings'].get('device', '?')}, shard " \
                f"{_shard(d)})"
        dups = d.get("duplicate_findings") if isinstance(d.get("duplicate_findings"),
                                                         dict) else {}
        for f in d["findings"]:
            sig = str(f.get("signature") or f"{f.get('kind')}:{f.get('rule')}")
            e = by_sig.get(sig)
            if e is None:
                kind = str(f.get("kind", "?"))
                rule = f.get("rule") or ""
                e = by_sig[sig] = {
                    "signature": sig, "kind": kind, "kind_name": KIND_NAMES.get(kind, ""),
                    "rule": rule, "rule_text": RULES.get(rule, ""),
                    "summary": str(f.get("summary", "")),
                    "explanation": str(f.get("explanation", "")),
                    "crash_plan": [str(x) for x in f.get("crash_plan")]
                    if isinstance(f.get("crash_plan"), list) else [],
                    "determinism": f.get("determinism"), "shrink_steps": f.get("shrink_steps"),
                    "seed": f.get("seed"), "seen": [], "duplicates": 0, "timeline": None,
                    "note": None, "artifact": None}
            extra = dups.get(sig, 0)
            e["duplicates"] += extra if isinstance(extra, int) else 0
            recorded = f.get("artifact") if isinstance(f.get("artifact"), str) else None
            art_path = find_artifact(recorded, path, artifacts_dir)
            e["seen"].append({"where": where, "reproduce": str(f.get("reproduce") or ""),
                              "found_at": art_path, "recorded": recorded})
    for e in by_sig.values():
        for s in e["seen"]:
            if s["found_at"] and e["timeline"] is None:
                e["artifact"] = s["found_at"]
                e["timeline"], e["note"] = _timeline_or_note(s["found_at"])
                if e["timeline"] is not None:
                    break
        if e["timeline"] is None and e["note"] is None:
            recorded = ", ".join(str(s["recorded"]) for s in e["seen"])
            e["note"] = (f"artifact not found ({recorded}); pass the directory holding it "
                         f"with --artifacts DIR to draw the IO timeline")
    return list(by_sig.values())


def _timeline_or_note(path: str):
    try:
        art = load_artifact(path)
    except ArtifactError as e:
        return None, f"artifact unreadable: {e}"
    try:
        return timeline(art), None
    except Exception as e:  # noqa: BLE001 - the engine under test may fail; the page still renders
        return None, f"could not rebuild the workload of {path}: {type(e).__name__}: {e}"


_ENV = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined,
                          trim_blocks=True, lstrip_blocks=True)


def _num(v, digits: int = 0) -> str:
    if v is None:
        return "—"
    if isinstance(v, float) and digits:
        return f"{v:,.{digits}f}"
    return f"{int(v):,}" if isinstance(v, (int, float)) else str(v)


def _frac(v) -> str:
    return "—" if v is None else f"{v:.2g}"


_ENV.filters["num"] = _num
_ENV.filters["frac"] = _frac
_ENV.filters["px"] = lambda v: f"{v:.1f}"


def render(runs: list[tuple[str, dict]], artifacts_dir: str | None = None) -> str:
    """The HTML page for ``runs`` (``(path, summary)`` pairs, as :func:`load_run` reads them)."""
    return _ENV.from_string(TEMPLATE).render(**build_context(runs, artifacts_dir))


def write_report(run_paths: list[str], output: str, artifacts_dir: str | None = None) -> dict:
    """Read the runs, write the page to ``output``; return a short summary for the CLI.

    Raises:
        ReportError: a run file the report cannot use, or an artifacts path that is no
            directory.
        OSError: the page could not be written.
    """
    if artifacts_dir is not None and not os.path.isdir(artifacts_dir):
        raise ReportError(f"--artifacts {artifacts_dir}: no such directory")
    runs = [(p, load_run(p)) for p in run_paths]
    ctx = build_context(runs, artifacts_dir)
    html = _ENV.from_string(TEMPLATE).render(**ctx)
    tmp = output + ".tmp"
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(html)
        os.replace(tmp, output)
    except OSError:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    return {"runs": len(runs), "findings": len(ctx["findings"]),
            "timelines": sum(1 for f in ctx["findings"] if f["timeline"]),
            "missing": ctx["missing"], "passed": ctx["passed"]}


TEMPLATE = r"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>tornpage report: {{ "PASS" if passed else "FAIL" }}</title>
<style>
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #1d2330;
       margin: 0 auto; padding: 16px 24px 48px; max-width: 1160px; background: #fff; }
h1 { font-size: 22px; margin: 4px 0 2px; }
h2 { font-size: 18px; margin: 28px 0 8px; border-bottom: 2px solid #e3e7ee; padding-bottom: 3px; }
h3 { font-size: 16px; margin: 14px 0 6px; }
.sub { color: #5b6475; margin: 0 0 8px; }
.badge { display: inline-block; padding: 2px 10px; border-radius: 4px; font-weight: 700;
         color: #fff; vertical-align: 2px; font-size: 13px; }
.pass { background: #2e7d32; } .fail { background: #c62828; }
.kpis { display: flex; gap: 12px; flex-wrap: wrap; margin: 10px 0 4px; }
.kpi { border: 1px solid #dde2ea; border-radius: 6px; padding: 6px 14px; min-width: 110px; }
.kpi b { display: block; font-size: 20px; }
.kpi span { color: #5b6475; font-size: 12px; }
.kpi.bad { border-color: #c62828; background: #fdecea; }
table { border-collapse: collapse; font-size: 13px; margin: 4px 0; }
th, td { border: 1px solid #dde2ea; padding: 3px 8px; text-align: left; }
th { background: #f3f5f9; font-weight: 600; }
td.n { text-align: right; font-variant-numeric: tabular-nums; }
tr.total td { font-weight: 700; background: #f8f9fb; }
tr.subtotal td { background: #fbfbfd; color: #3a4252; font-style: italic; }
.ok { color: #2e7d32; font-weight: 600; } .no { color: #c62828; font-weight: 700; }
pre { background: #f6f8fa; border: 1px solid #e3e7ee; border-radius: 4px; padding: 8px 10px;
      overflow-x: auto; font-size: 12.5px; white-space: pre-wrap; margin: 6px 0; }
code { font-family: ui-monospace, "DejaVu Sans Mono", Menlo, Consolas, monospace; }
.finding { border: 1px solid #e6b8b8; border-left: 6px solid #c62828; border-radius: 6px;
           padding: 4px 14px 10px; margin: 14px 0; }
.finding .kind { display: inline-block; background: #c62828; color: #fff; font-weight: 700;
                 border-radius: 4px; padding: 0 7px; margin-right: 6px; }
.rule { font-family: ui-monospace, "DejaVu Sans Mono", monospace; background: #fdecea;
        padding: 1px 5px; border-radius: 3px; }
.note { color: #8a5a00; background: #fff6e0; border: 1px solid #f0d9a0; padding: 4px 8px;
        border-radius: 4px; }
.legend span { display: inline-block; margin: 2px 12px 2px 0; font-size: 12.5px; }
.legend i { display: inline-block; width: 14px; height: 12px; border: 1px solid #555;
            vertical-align: -2px; margin-right: 4px; }
svg text { font-family: system-ui, sans-serif; }
svg .mono { font-family: ui-monospace, "DejaVu Sans Mono", monospace; font-size: 11.5px; }
.chart { border: 1px solid #e3e7ee; border-radius: 6px; padding: 6px; overflow-x: auto; }
.box-durable { fill: #c8e6c9; stroke: #2e7d32; }
.box-applied { fill: #c8e6c9; stroke: #2e7d32; }
.box-kept { fill: #bbdefb; stroke: #1565c0; }
.box-dropped, .box-dropped-ordered { fill: #ffcdd2; stroke: #c62828; stroke-width: 2; stroke-dasharray: 6 3; }
.box-torn { fill: #fff3e0; stroke: #c62828; stroke-width: 2; }
.box-size-only { fill: #ffe0b2; stroke: #e65100; stroke-width: 2; }
.box-barrier { fill: #eceff1; stroke: #455a64; }
.box-marker { fill: #fff8c4; stroke: #b59b00; }
.box-media { fill: #e1bee7; stroke: #6a1b9a; }
.box-after { fill: #fafafa; stroke: #9aa1ad; stroke-dasharray: 4 3; }
.op-after text { fill: #9aa1ad; }
.unit-new { fill: #1e88e5; stroke: #fff; stroke-width: .5; }
.unit-lost { fill: #e53935; stroke: #fff; stroke-width: .5; }
</style>
</head>
<body>
<h1>tornpage report <span class="badge {{ 'pass' if passed else 'fail' }}">{{ "PASS" if passed else "FAIL" }}</span></h1>
<p class="sub">{{ runs|length }} run{{ "" if runs|length == 1 else "s" }} merged{% if artifacts_dir %}, artifacts from <code>{{ artifacts_dir }}</code>{% endif %} · generated {{ generated }}</p>
<div class="kpis">
  <div class="kpi"><b>{{ totals.workloads|num }}</b><span>workloads</span></div>
  <div class="kpi"><b>{{ totals.crash_states|num }}</b><span>distinct crash states</span></div>
  <div class="kpi"><b>{{ totals.cov_points|num }}</b><span>crash points</span></div>
  <div class="kpi{{ ' bad' if findings else '' }}"><b>{{ findings|length }}</b><span>distinct findings</span></div>
  <div class="kpi{{ ' bad' if missing else '' }}"><b>{{ missing|length }}</b><span>required probes never fired</span></div>
</div>

<h2 id="runs">Runs: crash states and workloads per shard and device</h2>
<table id="runs-table">
<tr><th>device</th><th>shard</th><th>seed</th><th>mutant</th><th>page</th><th>dblwr</th><th>commit modes</th>
<th>workloads</th><th>crash states</th><th>reused</th><th>shrink runs</th><th>states/s</th><th>seconds</th><th>findings</th><th>result</th><th>file</th></tr>
{% for r in runs %}
<tr><td>{{ r.device }}</td><td>{{ r.shard }}</td><td class="n">{{ r.seed if r.seed is not none else "—" }}</td><td>{{ r.mutant }}</td>
<td class="n">{{ r.page_size }}</td><td>{{ r.doublewrite }}</td><td>{{ r.modes }}</td>
<td class="n">{{ r.workloads|num }}</td><td class="n">{{ r.crash_states|num }}</td><td class="n">{{ r.reused|num }}</td>
<td class="n">{{ r.shrink_runs|num }}</td><td class="n">{{ r.rate|num(1) }}</td><td class="n">{{ r.elapsed|num(1) }}</td>
<td class="n{{ ' no' if r.findings else '' }}">{{ r.findings }}</td>
<td>{% if r.passed %}<span class="ok">PASS</span>{% else %}<span class="no">FAIL</span>{% if r.missing %} <span title="required probes that never fired in this run">(missing: {{ r.missing|join(", ") }})</span>{% endif %}{% endif %}</td>
<td><code title="{{ r.path }}">{{ r.file }}</code></td></tr>
{% endfor %}
{% if multi_device %}
{% for dev, c in devices.items() %}
<tr class="subtotal"><td>{{ dev }}</td><td colspan="6">{{ c.runs }} run{{ "" if c.runs == 1 else "s" }}</td><td class="n">{{ c.workloads|num }}</td><td class="n">{{ c.crash_states|num }}</td><td colspan="4"></td><td class="n">{{ c.findings }}</td><td colspan="2"></td></tr>
{% endfor %}
<tr class="total"><td colspan="7">all runs</td><td class="n">{{ totals.workloads|num }}</td><td class="n">{{ totals.crash_states|num }}</td><td class="n">{{ totals.reused|num }}</td><td class="n">{{ totals.shrink_runs|num }}</td><td></td><td class="n">{{ totals.elapsed|num(1) }}</td><td class="n">{{ totals.findings }}</td><td colspan="2"></td></tr>
{% endif %}
</table>

<h2 id="probes">Probes</h2>
<p class="sub">How often each recovery branch, workload path and injected fault fired, summed over every run (log scale).
{% if required %}Required probes are marked <b>required</b>; {% endif %}{% if missing %}<span class="no">required probes that never fired are red: {{ missing|join(", ") }}</span>{% elif required %}every required probe fired.{% else %}no probe was required (a mutant run requires none).{% endif %}</p>
<div class="chart">
<svg id="probe-chart" width="{{ probe.bar_x + probe.bar_w + 150 }}" height="{{ chart.height }}" viewBox="0 0 {{ probe.bar_x + probe.bar_w + 150 }} {{ chart.height }}" role="img" aria-label="probe counts">
{% for t in chart.ticks %}
<line x1="{{ t.x|px }}" x2="{{ t.x|px }}" y1="0" y2="{{ chart.height }}" stroke="#eef0f4"/>
{% endfor %}
{% for row in chart.rows %}
{% if row.kind == "group" %}
<text x="4" y="{{ row.y }}" font-size="12.5" font-weight="700" fill="#3a4252">{{ row.text }}</text>
{% else %}
<g class="probe-bar probe-{{ row.state }}{{ ' probe-required' if row.required else '' }}" data-probe="{{ row.name }}">
<title>{{ row.title }}</title>
<text x="{{ probe.label_w }}" y="{{ row.y + 12 }}" text-anchor="end" class="mono" fill="{{ '#c62828' if row.state == 'missing' else ('#9aa1ad' if row.state == 'zero' else '#1d2330') }}"{% if row.required %} font-weight="700"{% endif %}>{{ row.name }}</text>
{% if row.state == "missing" %}
<rect x="{{ probe.bar_x }}" y="{{ row.y + 2 }}" width="{{ probe.bar_w }}" height="13" fill="#fdecea" stroke="#c62828" stroke-dasharray="4 3"/>
<text x="{{ probe.bar_x + 6 }}" y="{{ row.y + 12.5 }}" font-size="11.5" font-weight="700" fill="#c62828">required, never fired</text>
{% elif row.state == "zero" %}
<text x="{{ probe.bar_x + 4 }}" y="{{ row.y + 12.5 }}" font-size="11" fill="#9aa1ad">0</text>
{% else %}
<rect x="{{ probe.bar_x }}" y="{{ row.y + 2 }}" width="{{ row.w }}" height="13" rx="2" fill="{{ '#1565c0' if row.required else '#7fa7d6' }}"/>
<text x="{{ probe.bar_x + row.w + 5 }}" y="{{ row.y + 12.5 }}" font-size="11.5" fill="#1d2330">{{ row.count|num }}{% if row.required %} · required{% endif %}</text>
{% endif %}
</g>
{% endif %}
{% endfor %}
{% for t in chart.ticks %}
<text x="{{ t.x|px }}" y="{{ chart.height - 2 }}" font-size="10" fill="#9aa1ad" text-anchor="middle">{{ t.label }}</text>
{% endfor %}
</svg>
</div>
<p class="legend"><span><i style="background:#1565c0"></i>required, fired</span><span><i style="background:#7fa7d6"></i>fired</span><span><i style="background:#fdecea;border-color:#c62828"></i>required, never fired</span><span style="color:#9aa1ad">grey name: not required, never fired</span></p>

<h2 id="coverage">Coverage of the crash points</h2>
<p class="sub">A crash point is one position in one workload's trace. At an exhaustive point every crash state of its space was checked; at a sampled point a fraction (the median fraction is shown).</p>
<div class="chart">
<svg id="coverage-chart" width="{{ svg_w }}" height="{{ runs|length * 30 + 10 }}" viewBox="0 0 {{ svg_w }} {{ runs|length * 30 + 10 }}" role="img" aria-label="crash point coverage">
{% for r in runs %}
{% set y = loop.index0 * 30 + 6 %}
<g class="coverage-bar">
<text x="200" y="{{ y + 15 }}" text-anchor="end" font-size="12.5">{{ r.label }}</text>
<rect x="210" y="{{ y + 3 }}" width="{{ r.cov.w_ex|px }}" height="16" fill="#43a047"><title>{{ r.cov.exhaustive }} crash points enumerated exhaustively ({{ r.cov.states }} states, spaces up to {{ r.cov.largest }})</title></rect>
<rect x="{{ (210 + r.cov.w_ex)|px }}" y="{{ y + 3 }}" width="{{ r.cov.w_sa|px }}" height="16" fill="#f9a825"><title>{{ r.cov.sampled }} crash points sampled (median {{ r.cov.median|frac }} of their space)</title></rect>
<text x="{{ (216 + r.cov.w_ex + r.cov.w_sa)|px }}" y="{{ y + 15 }}" font-size="12">{{ r.cov.exhaustive }} exhaustive + {{ r.cov.sampled }} sampled = {{ r.cov.points }}</text>
</g>
{% endfor %}
</svg>
</div>
<p class="legend"><span><i style="background:#43a047"></i>exhaustive crash points</span><span><i style="background:#f9a825"></i>sampled crash points</span></p>
<table id="coverage-table">
<tr><th>device</th><th>shard</th><th>crash points</th><th>exhaustive</th><th>states enumerated</th><th>largest space enumerated</th><th>sampled</th><th>median fraction sampled</th><th>prefix states</th></tr>
{% for r in runs %}
<tr><td>{{ r.device }}</td><td>{{ r.shard }}</td><td class="n">{{ r.cov.points|num }}</td><td class="n">{{ r.cov.exhaustive|num }}</td><td class="n">{{ r.cov.states|num }}</td><td class="n">{{ r.cov.largest|num }}</td><td class="n">{{ r.cov.sampled|num }}</td><td class="n">{{ r.cov.median|frac }}</td><td class="n">{{ r.cov.prefixes|num }}</td></tr>
{% endfor %}
{% if runs|length > 1 %}
<tr class="total"><td colspan="2">all runs</td><td class="n">{{ totals.cov_points|num }}</td><td class="n">{{ totals.cov_exhaustive|num }}</td><td class="n">{{ totals.cov_states|num }}</td><td></td><td class="n">{{ totals.cov_sampled|num }}</td><td></td><td class="n">{{ totals.cov_prefixes|num }}</td></tr>
{% endif %}
</table>

<h2 id="findings">Findings</h2>
{% if not findings %}
<p class="ok">No finding.</p>
{% endif %}
{% for f in findings %}
<section class="finding" id="finding-{{ loop.index }}">
<h3><span class="kind" title="{{ f.kind_name }}">{{ f.kind }}</span>{{ f.kind_name }}: {{ f.summary }}</h3>
<p>rule <span class="rule">{{ f.rule or "—" }}</span>{% if f.rule_text %} — {{ f.rule_text }}{% endif %}<br>
signature <code>{{ f.signature }}</code> · seed <code>{{ f.seed }}</code>{% if f.shrink_steps is not none %} · {{ f.shrink_steps }} shrink steps{% endif %}{% if f.determinism %} · determinism: {{ f.determinism }}{% endif %}{% if f.duplicates %} · {{ f.duplicates }} more finding{{ "" if f.duplicates == 1 else "s" }} with this signature dropped{% endif %}</p>
<p><b>Reproduce</b></p>
{% for s in f.seen %}
<pre class="reproduce"><code>{{ s.reproduce }}</code></pre>
<p class="sub">found by {{ s.where }}{% if s.found_at and s.found_at != s.recorded %}; the artifact is now at <code>{{ s.found_at }}</code>{% endif %}</p>
{% endfor %}
<p><b>Explanation</b></p>
<pre class="explanation">{{ f.explanation }}</pre>
{% if f.crash_plan %}
<p><b>Crash plan</b></p>
<pre>{{ f.crash_plan|join("\n") }}</pre>
{% endif %}
<p><b>IO timeline around the crash</b></p>
{% if f.timeline %}
{% set t = f.timeline %}
<p class="sub">operations of the workload's trace (time flows down), device <code>{{ t.device }}</code> ({{ t.tear_unit }}-byte tear units): the crash after operation #{{ t.position - 1 }} of {{ t.ops }}, {{ t.pending }} operation{{ "" if t.pending == 1 else "s" }} pending, {{ t.lost }} lost or torn{% if t.nested %}, then {{ t.nested }} crash{{ "" if t.nested == 1 else "es" }} during recovery{% endif %}.{% if not t.trace_matches %} <span class="no">The replayed trace differs from the artifact's (the code changed since the run): the timeline may not be the one the run saw.</span>{% endif %}</p>
<div class="chart">
<svg class="timeline" width="{{ svg_w }}" height="{{ t.height }}" viewBox="0 0 {{ svg_w }} {{ t.height }}" role="img" aria-label="IO timeline">
{% for r in t.rows %}
{% if r.kind == "gap" %}
<text x="{{ box_x + box_w / 2 }}" y="{{ r.y + 12 }}" text-anchor="middle" font-size="11.5" fill="#8a93a3">{{ r.text }}</text>
{% elif r.kind == "event" %}
<text x="{{ box_x + 6 }}" y="{{ r.y + 12 }}" font-size="11.5" font-style="italic" fill="#6a4f9c">{{ r.text }}</text>
{% else %}
<g class="op op-{{ r.status }}" data-index="{{ r.index }}">
<title>{{ r.title }}: {{ r.status_text }}</title>
<rect class="box-{{ r.status }}" x="{{ box_x }}" y="{{ r.y }}" width="{{ box_w }}" height="{{ r.h }}" rx="3"/>
{% for u in r.units %}
<rect class="unit {{ 'unit-new' if u.new else 'unit-lost' }}" x="{{ u.x|px }}" y="{{ r.unit_y }}" width="{{ u.w|px }}" height="12"><title>{{ u.title }}</title></rect>
{% endfor %}
<text x="{{ box_x + 6 }}" y="{{ r.y + 16 }}" class="mono">{{ r.text }}</text>
<text x="{{ status_x }}" y="{{ r.y + 16 }}" font-size="12" font-weight="{{ 700 if r.status in ('dropped', 'dropped-ordered', 'torn', 'size-only') else 400 }}" fill="{{ '#c62828' if r.status in ('dropped', 'dropped-ordered', 'torn', 'size-only') else '#3a4252' }}">{{ r.status_text }}</text>
</g>
{% endif %}
{% endfor %}
<g class="crash-line">
<line x1="0" x2="{{ svg_w }}" y1="{{ t.crash_y + 9 }}" y2="{{ t.crash_y + 9 }}" stroke="#c62828" stroke-width="2.5" stroke-dasharray="8 4"/>
<rect x="{{ status_x - 4 }}" y="{{ t.crash_y }}" width="206" height="18" rx="3" fill="#c62828"/>
<text x="{{ status_x + 4 }}" y="{{ t.crash_y + 13 }}" font-size="12" font-weight="700" fill="#fff">⚡ CRASH: power lost here</text>
</g>
</svg>
</div>
<p class="legend">
<span><i style="background:#c8e6c9"></i>durable</span><span><i style="background:#bbdefb"></i>pending, kept</span><span><i style="background:#ffcdd2;border-style:dashed;border-color:#c62828"></i>pending, dropped</span><span><i style="background:#1e88e5"></i>torn: unit reached the disk</span><span><i style="background:#e53935"></i>torn: unit lost</span><span><i style="background:#eceff1"></i>barrier (fsync)</span><span><i style="background:#fff8c4"></i>marker</span><span><i style="background:#fafafa;border-style:dashed"></i>after the crash</span>
</p>
{% if t.plan_lines and t.plan_lines != f.crash_plan %}
<pre>{{ t.plan_lines|join("\n") }}</pre>
{% endif %}
{% else %}
<p class="note">{{ f.note }}</p>
{% endif %}
</section>
{% endfor %}
</body>
</html>
"""
