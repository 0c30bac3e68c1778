"""Tools for reproducing a finding locally: inspect a crash image, explain, shrink, and turn an
artifact into a pytest regression test.

``inspect`` decodes what is on disk the way ``innochecksum`` and a redo log dump do: each page's
FIL header, type, LSN and verification verdict; the log header, both checkpoint slots and the
blocks a recovery would scan.  ``explain`` replays an artifact and tells, in words, the trace
around the crash, which of the crash plan's choices matter (the finding disappears when that
choice alone is undone) and the expected versus found rows.  ``shrink`` makes an artifact
smaller while the same finding reproduces: steps after the crash go, then the crash plan is
shrunk by :func:`faultfs.search.shrink_plan`, then single steps go, within a step budget.
"""
from __future__ import annotations

import dataclasses
import json
import os

from tornpage.engine import log as redo
from tornpage.engine import page as fil_page
from tornpage.engine.fil import IBD_SUFFIX, LOG_FILE, SYS_FILE
from tornpage.faultfs import KEEP, CrashPlan, CrashPlanError, search
from tornpage.checkers.verdict import finding_signature

from tornpage.campaigns import crashcheck
from tornpage.campaigns.artifacts import Artifact
from tornpage.campaigns.workload import age_words, run_workload


class _BytesFile:
    """Read-only ``pread`` over bytes (what the log scanner needs)."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def pread(self, n: int, offset: int) -> bytes:
        return self.data[offset:offset + n]


# -- inspect ---------------------------------------------------------------------------------------
def inspect_files(files: dict[str, bytes], page_size: int, bad_sectors=None,
                  max_blocks: int = 64) -> list[str]:
    """Lines describing every tablespace page and the redo log of a crash image.

    ``files``: path → bytes.  Pages are decoded at ``page_size`` bytes; at most ``max_blocks``
    redo blocks are listed.  Never raises for malformed contents: that is what it reports.
    """
    out: list[str] = []
    bad_sectors = bad_sectors or {}
    for path in sorted(files):
        data = files[path]
        if path == LOG_FILE:
            out += inspect_log(data, max_blocks)
        elif path == SYS_FILE or path.endswith(IBD_SUFFIX):
            out += inspect_tablespace(path, data, page_size)
        else:
            out.append(f"{path}: {len(data)} bytes (not a tornpage engine file)")
        if bad_sectors.get(path):
            out.append(f"  unreadable sectors (latent errors): "
                       f"{', '.join(map(str, sorted(bad_sectors[path])))}")
    return out


def inspect_tablespace(path: str, data: bytes, page_size: int) -> list[str]:
    n = -(-len(data) // page_size)
    out = [f"{path}: {len(data)} bytes, {n} pages of {page_size}"]
    counts: dict[str, int] = {}
    for p in range(n):
        raw = data[p * page_size:(p + 1) * page_size]
        v = fil_page.verify(raw, page_size)
        counts[v] = counts.get(v, 0) + 1
        if v == fil_page.PAGE_ZERO:
            out.append(f"  page {p:4d}: all zero (never written)")
            continue
        if len(raw) < page_size:
            out.append(f"  page {p:4d}: short ({len(raw)} bytes)")
            continue
        ptype = fil_page.page_type(raw)
        name = fil_page.PAGE_TYPE_NAMES.get(ptype, f"type {ptype}")
        trailer = fil_page.u32(raw, page_size - 4)
        head = f"  page {p:4d}: {name:9s} space {fil_page.page_space(raw)} " \
               f"page_no {fil_page.page_no(raw)} LSN {fil_page.page_lsn(raw)}"
        if path == SYS_FILE and (fil_page.page_space(raw), fil_page.page_no(raw)) != (0, p):
            v += f" (doublewrite copy of page {fil_page.page_space(raw)}:{fil_page.page_no(raw)})"
        elif fil_page.page_no(raw) != p:
            v += f"; header claims page {fil_page.page_no(raw)} (misplaced)"
        out.append(f"{head} trailer LSN(low32) {trailer}: {v}")
    out.append("  summary: " + ", ".join(f"{k} {c}" for k, c in sorted(counts.items())))
    return out


def inspect_log(data: bytes, max_blocks: int = 64) -> list[str]:
    f = _BytesFile(data)
    out = [f"{LOG_FILE}: {len(data)} bytes, capacity {max(0, len(data) - redo.LOG_FILE_HDR_SIZE)}"
           f" bytes of 512-byte blocks"]
    if len(data) < redo.LOG_FILE_HDR_SIZE:
        return out + ["  too short for the log header and checkpoint slots"]
    for slot in (redo.LOG_CHECKPOINT_1, redo.LOG_CHECKPOINT_2):
        c = redo.decode_checkpoint(data[slot:slot + redo.BLOCK], slot)
        out.append(f"  checkpoint slot @{slot}: " + (
            f"no {c.no} LSN {c.lsn} offset {c.offset}" if c else "empty or bad checksum"))
    ckpts = redo.read_checkpoints(f)
    if not ckpts:
        return out + ["  no valid checkpoint: recovery cannot start"]
    ck = ckpts[0]
    try:
        res = redo.scan(f, len(data), ck)
    except Exception as e:  # noqa: BLE001 - reported, not raised
        return out + [f"  scan from checkpoint {ck.no} (LSN {ck.lsn}) fails: "
                      f"{type(e).__name__}: {e}"]
    out.append(f"  scan from checkpoint {ck.no}: {res.blocks} blocks, {len(res.mtrs)} complete "
               f"mtrs, recovered LSN {res.recovered_lsn}, stopped: {res.stop}")
    block_lsn = ck.lsn - ck.lsn % redo.BLOCK
    anchor = (block_lsn, ck.offset)         # the checkpoint's block, where the scan starts
    cap = len(data) - redo.LOG_FILE_HDR_SIZE
    for _ in range(min(max_blocks, res.blocks + 1)):
        off = redo.data_offset(*anchor, block_lsn, cap)
        blk = data[off:off + redo.BLOCK]
        if len(blk) < redo.BLOCK:
            out.append(f"  block LSN {block_lsn} @{off}: short")
            break
        no = fil_page.u32(blk, redo.LOG_BLOCK_HDR_NO) & redo.LOG_BLOCK_NO_MASK
        ok = fil_page.u32(blk, redo.LOG_BLOCK_CHECKSUM) == redo.block_checksum(blk)
        out.append(f"  block LSN {block_lsn} @{off}: no {no} (expected "
                   f"{redo.block_no(block_lsn)}) data_len "
                   f"{fil_page.u16(blk, redo.LOG_BLOCK_HDR_DATA_LEN)} first_rec_group "
                   f"{fil_page.u16(blk, redo.LOG_BLOCK_FIRST_REC_GROUP)} checkpoint_no "
                   f"{fil_page.u32(blk, redo.LOG_BLOCK_CHECKPOINT_NO)} checksum "
                   f"{'ok' if ok else 'BAD'}")
        block_lsn += redo.BLOCK
    for m in res.mtrs[:max_blocks]:
        out.append(f"  mtr [{m.start_lsn}, {m.end_lsn}): "
                   + "; ".join(r.describe() for r in m.records[:6])
                   + (f"; ... {len(m.records) - 6} more" if len(m.records) > 6 else ""))
    return out


def is_engine_file(path: str) -> bool:
    """Whether ``path`` (relative, ``/``-separated) names a file the engine writes."""
    name = path.rsplit("/", 1)[-1]
    return name in (LOG_FILE, SYS_FILE) or name.endswith(IBD_SUFFIX)


ENGINE_FILES = f"{LOG_FILE}, {SYS_FILE} or *{IBD_SUFFIX}"


def read_dir(path: str) -> dict[str, bytes]:
    """Every regular file under ``path`` (relative paths, ``/``-separated) → bytes."""
    files = {}
    for root, _, names in os.walk(path):
        for n in names:
            full = os.path.join(root, n)
            rel = os.path.relpath(full, path).replace(os.sep, "/")
            with open(full, "rb") as f:
                files[rel] = f.read()
    return files


def crash_image(art: Artifact):
    """(run, image) of an artifact: the workload replayed and the crash state it names."""
    run = run_workload(art.settings, art.steps)
    return run, crashcheck.builder_for(run).build(art.plan)


# -- explain ---------------------------------------------------------------------------------------
def explain(art: Artifact, context: int = 12) -> list[str]:
    """Words on an artifact: the finding, the trace around the crash, the choices that matter,
    expected versus found rows.  The mutant, if any, must already be planted."""
    run = run_workload(art.settings, art.steps)
    out = crashcheck.check_crash_state(run, art.plan, nested=art.nested,
                                               new_work=art.new_work)
    lines = [f"finding: {out.verdict.explain().splitlines()[0] if not out.verdict.ok else 'none'}"
             + ("" if not out.verdict.ok else " (the artifact no longer fails)")]
    age = age_words(run)
    if age:
        lines.append(age)
    trace = run.trace
    pos = art.plan.position
    events = dict(run.events)
    lines.append(f"timeline: operations {max(0, pos - context)}..{pos - 1} of {len(trace)}, "
                 f"crash after #{pos - 1}")
    choices = dict(art.plan.choices)
    for i in range(max(0, pos - context), min(len(trace), pos + 2)):
        if i in events:
            lines.append(f"        -- {events[i]}")
        mark = ">>" if i == pos - 1 else ("  " if i < pos else "xx")
        fate = choices.get(i)
        tag = f"   [{fate.kind}{' ' + str(list(fate.units)) if fate and fate.units else ''}]" \
            if fate is not None and fate.kind != KEEP else ""
        lines.append(f"  {mark} {trace.describe(i)}{tag}")
    lines.append("crash plan (each choice that loses something):")
    lines += ["  " + s for s in crashcheck.explain_plans(run, art.plan, art.nested)]
    if not out.verdict.ok:
        matters = []
        for i, c in art.plan.choices:
            if c.kind == KEEP:
                continue
            rest = tuple((j, d) for j, d in art.plan.choices if j != i)
            alt = crashcheck.check_crash_state(run, CrashPlan(pos, rest), nested=art.nested,
                                         new_work=art.new_work)
            if alt.verdict.ok:
                matters.append(f"  {trace.describe(i)}: {c.kind} MATTERS (keeping it, the "
                               f"state passes)")
            else:
                matters.append(f"  {trace.describe(i)}: {c.kind} does not matter on its own")
        lines.append("which choices matter:")
        lines += matters or ["  none: the finding needs no lost write (a crash with everything "
                             "written kept)"]
        lines.append("expected versus found:")
        lines += ["  " + d for d in out.verdict.details]
    return lines


# -- shrink ----------------------------------------------------------------------------------------
def _fails_same(art: Artifact, steps: list, plan: CrashPlan) -> bool:
    try:
        run = run_workload(art.settings, steps)
        out = crashcheck.check_crash_state(run, plan, nested=art.nested,
                                         new_work=art.new_work)
    except CrashPlanError:
        return False
    return not out.verdict.ok and out.verdict.same_finding(art.finding)


def _signature(art: Artifact) -> str:
    return finding_signature(art.finding)


def shrink(art: Artifact, log=lambda s: None, steps: int = 500) -> Artifact:
    """A smaller artifact with the same finding (kind and checker rule; the mutant, if any,
    planted): workload steps after the crash removed, then the crash plan shrunk by
    :func:`faultfs.search.shrink_plan` (the campaign's plan shrinker: fewer losses, whole losses
    for tears, an earlier crash), then each workload step tried away in turn.  At most
    ``steps`` candidate runs in all (deterministic).

    Raises:
        ValueError: the artifact does not reproduce its finding.
    """
    budget = search.ShrinkBudget(steps)
    wl = [list(s) for s in art.steps]
    plan = art.plan
    if not _fails_same(art, wl, plan):
        raise ValueError("the artifact does not reproduce its finding: nothing to shrink")
    # 1. steps that ran wholly after the crash cannot matter to the trace before it
    while len(wl) > 1 and budget.take() and _fails_same(art, wl[:-1], plan):
        wl.pop()
    log(f"steps after the crash removed: {len(art.steps)} -> {len(wl)}")
    # 2. the crash plan
    run = run_workload(art.settings, wl)

    def still(cand: CrashPlan):
        try:
            out = crashcheck.check_crash_state(run, cand, nested=art.nested,
                                         new_work=art.new_work)
        except CrashPlanError:
            return None
        return out if not out.verdict.ok and out.verdict.same_finding(art.finding) else None
    before = search.plan_losses(plan)
    plan, _, accepted = search.shrink_plan(crashcheck.builder_for(run), plan, still, budget,
                                           lo=run.setup_end + 1)
    log(f"crash plan: {before} -> {search.plan_losses(plan)} faults ({accepted} shrinks)")
    # 3. single steps (the trace shifts: the plan must still fit and fail the same way)
    i = 0
    while i < len(wl) and budget.take():
        cand = wl[:i] + wl[i + 1:]
        if cand and _fails_same(art, cand, plan):
            log(f"step {i} removed: {wl[i]}")
            wl = cand
        else:
            i += 1
    log(f"{budget.used} of {budget.steps} shrink steps used")
    run = run_workload(art.settings, wl)
    out = crashcheck.check_crash_state(run, plan, nested=art.nested,
                                         new_work=art.new_work)
    return dataclasses.replace(art, steps=wl, plan=plan, trace_hash=run.trace.hash(),
                               finding=out.verdict.to_json(), shrunk=True)


# -- regression test -------------------------------------------------------------------------------
REGRESSION_TEMPLATE = '''"""Regression test generated by `tornpage regress` from {source}.

Finding: {finding}
It fails while the bug is present and passes once it is fixed.
"""
import json

from tornpage.campaigns.artifacts import from_dict
from tornpage.campaigns.crashcheck import check_crash_state
from tornpage.campaigns.mutants import planted
from tornpage.campaigns.tools import workload_plans
from tornpage.campaigns.workload import run_workload

ARTIFACT = json.loads(r"""
{artifact}
""")


def test_{name}():
    art = from_dict(ARTIFACT, {source!r})
    with planted(art.mutant):
        run = run_workload(art.settings, art.steps)
        if run.trace.hash() == art.trace_hash:     # the same IO: the recorded crash state
            plans = [art.plan]
        else:       # the code changed its IO: every crash point of the workload instead
            plans = list(workload_plans(run))
        for plan in plans:
            recorded = plan is art.plan
            out = check_crash_state(run, plan, nested=art.nested if recorded else [],
                                    new_work=art.new_work if recorded else None)
            assert out.verdict.ok, out.verdict.explain()
'''


def workload_plans(run, bound: int = 16):
    """Crash plans covering a workload without an artifact's plan: the one crash-state search
    (:class:`faultfs.search.CrashSearch`, ``positions`` schedule) over the workload: every
    prefix with nothing lost, every crash point enumerated whole when its space has at most
    ``bound`` states, else its single drops and a few seeded samples."""
    return iter(search.CrashSearch(crashcheck.builder_for(run), run.setup_end + 1,
                                   len(run.trace), seed=0, schedule="positions",
                                   exhaustive_bound=bound, samples_per_point=4,
                                   promise_labels=crashcheck.PROMISE_LABELS))


def regression_test(art: Artifact, source: str, include_mutant: bool = True) -> str:
    """The source of a pytest module that replays ``art`` and asserts the state passes."""
    d = art.to_json()
    if not include_mutant:
        d["mutant"] = None
    name = "".join(ch if ch.isalnum() else "_" for ch in
                   os.path.splitext(os.path.basename(source))[0]).lower()
    return REGRESSION_TEMPLATE.format(source=source, finding=_signature(art),
                                      artifact=json.dumps(d, indent=1, sort_keys=True),
                                      name=name[:80] or "artifact")
