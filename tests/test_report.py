"""``tornpage report``: one self-contained HTML page for one or more run JSONs.

Plain tests read the HTML (what it shows, that it loads nothing and runs no script, that input
is escaped) and the command's errors (exit 2, one line, no traceback, -o checked first).  The
browser tests open the page in headless Chromium (Debian's /usr/bin/chromium; they skip without
it): no console message at all (the page has no script, and its Content-Security-Policy makes
any fetch a console error), the finding and the probe chart in the DOM, a screenshot that is
not blank.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import struct
import subprocess
import zlib

import pytest
from click.testing import CliRunner

from tornpage.campaigns import html_report
from tornpage.campaigns.artifacts import Artifact, load
from tornpage.campaigns.cli import main
from tornpage.campaigns.workload import WorkloadSettings, run_workload
from tornpage.checkers.probes import FAULT_PROBES, PROBES, WORKLOAD_PROBES
from tornpage.faultfs import CrashPlan
from tornpage.faultfs.crash import DROP, TEAR, Choice

CHROMIUM = "/usr/bin/chromium"
needs_chromium = pytest.mark.skipif(
    not os.path.exists(CHROMIUM),
    reason=f"{CHROMIUM} is missing (apt-get install chromium, as .ci/run does): the report is "
           "not checked in a browser")

# a deterministic campaign with one finding (measured: seed 0 finds the L within 8 workloads,
# about 2 s with shrinking) and a clean one whose required probes all fire (seed 1, 8 workloads)
MUTANT_ARGS = ("--mutant", "ack-before-log-fsync", "--examples", "8", "--seed", "0")
CLEAN_ARGS = ("--examples", "8", "--seed", "1")
ALL_PROBES = list(PROBES) + list(WORKLOAD_PROBES) + list(FAULT_PROBES)


def invoke(*args):
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert result.exception is None or isinstance(result.exception, SystemExit), \
        result.exc_info
    assert "Traceback" not in result.output
    return result


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """(directory, mutant run JSON, clean run JSON, artifacts directory)."""
    d = tmp_path_factory.mktemp("runs")
    arts = d / "artifacts"
    r = invoke("run", *MUTANT_ARGS, "--json", d / "finding.json", "--artifacts", arts, "--quiet")
    assert r.exit_code == 1, r.output
    r = invoke("run", *CLEAN_ARGS, "--json", d / "clean.json", "--artifacts", d / "clean-arts",
               "--quiet")
    assert r.exit_code == 0, r.output
    return d, d / "finding.json", d / "clean.json", arts


@pytest.fixture(scope="module")
def report(runs, tmp_path_factory):
    """The report of both runs: (path, html, the finding, its artifact)."""
    d, finding, clean, arts = runs
    out = tmp_path_factory.mktemp("report") / "report.html"
    r = invoke("report", finding, clean, "--artifacts", arts, "-o", out)
    assert r.exit_code == 0, r.output
    assert f"wrote {out}: 2 runs, 1 distinct finding (1 timeline drawn)" in r.stdout
    f = json.loads(finding.read_text())["findings"][0]
    return out, out.read_text(), f, load(f["artifact"])


# -- what the page shows ---------------------------------------------------------------------------
@pytest.mark.timeout(120)
def test_the_page_shows_the_finding_with_its_timeline(report):
    _, html, f, art = report
    # the mutant acknowledges XA PREPARE early too: the first workload's prepared trx is lost
    assert f["rule"] == "oracle.xa_prepared_lost"          # measured with this seed
    assert f'<span class="rule">{f["rule"]}</span>' in html
    assert f'<span class="kind" title="committed data lost">{f["kind"]}</span>' in html
    assert f"tornpage replay {f['artifact']}" in html
    assert "had been acknowledged" in html
    # the timeline: the dropped write is a box of its own, the crash line is drawn, the
    # operations after the crash position (if any) are not issued
    lost = [i for i, c in art.plan.choices if c.kind == DROP]
    assert lost
    for i in lost:
        assert re.search(rf'<g class="op op-dropped" data-index="{i}">', html), i
    assert html.count('<g class="crash-line">') == 1
    assert 'class="op op-durable"' in html or 'class="op op-barrier"' in html


@pytest.mark.timeout(120)
def test_the_page_charts_every_probe_and_marks_the_required(report, runs):
    _, html, _, _ = report
    bars = re.findall(r'<g class="probe-bar ([a-z\- ]+)" data-probe="([a-z0-9_]+)">', html)
    assert [name for _, name in bars] == ALL_PROBES
    required = set(json.loads(runs[2].read_text())["required_probes"])
    assert required
    for classes, name in bars:
        assert ("probe-required" in classes) == (name in required), name
        assert "probe-missing" not in classes          # every required probe fired
    assert "every required probe fired" in html


@pytest.mark.timeout(120)
def test_the_page_tables_runs_and_coverage(report, runs):
    _, html, _, _ = report
    d, finding, clean, _ = runs
    total = sum(json.loads(p.read_text())["crash_states"] for p in (finding, clean))
    points = sum(json.loads(p.read_text())["coverage"]["crash_points"] for p in (finding, clean))
    assert 'id="runs-table"' in html and 'id="coverage-table"' in html
    assert f'<td class="n">{total:,}</td>' in html
    assert f'<td class="n">{points:,}</td>' in html
    assert html.count('<g class="coverage-bar">') == 2


@pytest.mark.timeout(120)
def test_the_page_is_self_contained(report):
    _, html, _, _ = report
    assert "<script" not in html.lower()
    assert not re.search(r"<(link|img|iframe|object|embed)\b", html, re.I)
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html, re.I)
    assert "url(" not in html and "@import" not in html
    assert "default-src 'none'" in html          # and the browser enforces it


@pytest.mark.timeout(120)
def test_a_required_probe_that_never_fired_is_red(runs, tmp_path):
    d, _, clean, _ = runs
    data = json.loads(clean.read_text())
    data["required_probes"].append("fault_torn_zeros")       # never fires on sector512
    data["missing_probes"] = ["fault_torn_zeros"]
    data["passed"] = False
    (tmp_path / "run.json").write_text(json.dumps(data))
    r = invoke("report", tmp_path / "run.json", "-o", tmp_path / "r.html")
    assert r.exit_code == 0, r.output
    assert "required probes never fired: fault_torn_zeros" in r.stdout
    html = (tmp_path / "r.html").read_text()
    m = re.search(r'<g class="probe-bar probe-missing probe-required" '
                  r'data-probe="fault_torn_zeros">(.*?)</g>', html, re.S)
    assert m, "the missing probe has no red bar"
    assert "#c62828" in m.group(1) and "required, never fired" in m.group(1)
    assert html.count("probe-missing") == 1
    assert '<span class="badge fail">FAIL</span>' in html


@pytest.mark.timeout(120)
def test_a_matrix_of_shards_and_devices_is_merged(runs, tmp_path):
    d, finding, clean, arts = runs
    paths = []
    for device, k in (("sector512", 1), ("sector512", 2), ("nonatomic512", 1),
                      ("nonatomic512", 2)):
        data = json.loads(clean.read_text())
        data["settings"]["device"] = device
        data["shard"] = [k, 2]
        p = tmp_path / f"{device}-{k}.json"
        p.write_text(json.dumps(data))
        paths.append(p)
    paths.append(finding)
    r = invoke("report", *paths, "--artifacts", arts, "-o", tmp_path / "m.html")
    assert r.exit_code == 0, r.output
    html = (tmp_path / "m.html").read_text()
    c = json.loads(clean.read_text())
    f = json.loads(finding.read_text())
    # a subtotal per device, a total over all runs
    assert re.search(rf'<tr class="subtotal"><td>nonatomic512</td><td colspan="6">2 runs</td>'
                     rf'<td class="n">{2 * c["workloads"]:,}</td>'
                     rf'<td class="n">{2 * c["crash_states"]:,}</td>', html)
    assert re.search(rf'<tr class="total"><td colspan="7">all runs</td>'
                     rf'<td class="n">{4 * c["workloads"] + f["workloads"]:,}</td>'
                     rf'<td class="n">{4 * c["crash_states"] + f["crash_states"]:,}</td>',
                     html)
    for label in ("nonatomic512 · shard 1/2", "nonatomic512 · shard 2/2",
                  "sector512 · shard 1/2", "sector512 · shard 2/2"):
        assert label in html
    # probe counts are summed over the runs
    total = 4 * c["probes"]["redo_applied"] + f["probes"]["redo_applied"]
    assert f"{total:,}" in html


@pytest.mark.timeout(120)
def test_one_finding_in_two_runs_is_shown_once(runs, tmp_path):
    d, finding, _, arts = runs
    data = json.loads(finding.read_text())
    data["shard"] = [2, 2]
    (tmp_path / "other.json").write_text(json.dumps(data))
    r = invoke("report", finding, tmp_path / "other.json", "--artifacts", arts,
               "-o", tmp_path / "r.html")
    assert r.exit_code == 0, r.output
    assert "1 distinct finding" in r.stdout
    html = (tmp_path / "r.html").read_text()
    assert html.count('<section class="finding"') == 1
    assert html.count('<pre class="reproduce">') == 2        # one reproduce line per run


@pytest.mark.timeout(120)
def test_an_artifact_moved_elsewhere_is_found_by_name(runs, tmp_path):
    """A CI download puts each job's files in a folder of its own: --artifacts is searched."""
    d, finding, _, arts = runs
    moved = tmp_path / "download" / "tornpage-sector512-shard1" / "tornpage-artifacts"
    shutil.copytree(arts, moved)
    data = json.loads(finding.read_text())
    data["findings"][0]["artifact"] = "/nonexistent/ci/runner/path/" + \
        os.path.basename(data["findings"][0]["artifact"])
    (tmp_path / "run.json").write_text(json.dumps(data))
    r = invoke("report", tmp_path / "run.json", "--artifacts", tmp_path / "download",
               "-o", tmp_path / "r.html")
    assert r.exit_code == 0 and "(1 timeline drawn)" in r.stdout, r.output
    assert "the artifact is now at" in (tmp_path / "r.html").read_text()


@pytest.mark.timeout(120)
def test_a_missing_artifact_leaves_a_note_not_a_failure(runs, tmp_path):
    d, finding, _, _ = runs
    data = json.loads(finding.read_text())
    data["findings"][0]["artifact"] = "/nonexistent/finding.json"
    (tmp_path / "run.json").write_text(json.dumps(data))
    r = invoke("report", tmp_path / "run.json", "-o", tmp_path / "r.html")
    assert r.exit_code == 0 and "(0 timelines drawn)" in r.stdout, r.output
    html = (tmp_path / "r.html").read_text()
    assert "artifact not found (/nonexistent/finding.json)" in html
    assert "--artifacts DIR" in html


@pytest.mark.timeout(120)
def test_text_from_the_json_is_escaped(runs, tmp_path):
    d, finding, _, arts = runs
    data = json.loads(finding.read_text())
    evil = '<script>alert("x")</script><img src=//evil.example/x>'
    data["findings"][0]["summary"] = evil
    data["findings"][0]["explanation"] = evil
    data["settings"]["device"] = evil
    (tmp_path / "run.json").write_text(json.dumps(data))
    r = invoke("report", tmp_path / "run.json", "--artifacts", arts, "-o", tmp_path / "r.html")
    assert r.exit_code == 0, r.output
    html = (tmp_path / "r.html").read_text()
    assert "<script" not in html and "<img" not in html
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in html


@pytest.mark.timeout(60)
def test_timeline_draws_torn_units_and_the_operations_after_the_crash():
    """A hand-made crash plan: the one pending write torn (its second 512-byte unit reached the
    disk, the first did not), the crash two operations before the end of the trace."""
    s = WorkloadSettings(table_size=20)
    steps = [["update_non_index", 0, 3, 7], ["commit", 0]]
    run = run_workload(s, steps)
    pos = len(run.trace) - 2
    from tornpage.campaigns import crashcheck
    pend = crashcheck.builder_for(run).pending(pos)
    assert len(pend) == 1 and len(run.trace.ops[pend[0]].data) == 1024
    i = pend[0]
    art = Artifact(seed=1, settings=s, steps=steps, mutant=None, trace_hash=run.trace.hash(),
                   plan=CrashPlan(pos, ((i, Choice(TEAR, (1,), "old")),)), finding={})
    t = html_report.timeline(art)
    ops = {r["index"]: r for r in t["rows"] if r["kind"] == "op"}
    torn = ops[i]
    assert torn["status"] == "torn"
    assert [u["new"] for u in torn["units"]] == [False, True]
    assert torn["units"][0]["x"] < torn["units"][1]["x"]
    assert torn["status_text"] == "TORN: 1/2 units new, rest old"
    assert [ops[j]["status"] for j in range(pos, len(run.trace))] == ["after", "after"]
    assert all(r["status"] in ("durable", "barrier", "marker") for j, r in ops.items()
               if j < pos and j != i)
    # the crash line lies between the last operation before the crash and the first after it
    assert ops[pos - 1]["y"] < t["crash_y"] < ops[pos]["y"]
    assert t["trace_matches"] and t["pending"] == 1 and t["lost"] == 1


# -- bad input: one line, exit 2, never a traceback, -o checked before any work ------------------------
@pytest.fixture
def no_work(monkeypatch):
    def boom(*a, **k):
        raise AssertionError("the report did its work before checking its output path")
    monkeypatch.setattr(html_report, "load_run", boom)
    monkeypatch.setattr(html_report, "build_context", boom)


def _bad_inputs(tmp_path, artifact_path):
    (tmp_path / "notjson.json").write_text("{ this is not json")
    (tmp_path / "list.json").write_text("[1, 2]")
    (tmp_path / "other.json").write_text(json.dumps({"tool": "something else"}))
    (tmp_path / "partial.json").write_text(json.dumps({"tool": "tornpage", "settings": {}}))
    (tmp_path / "badtype.json").write_text(json.dumps(
        {"tool": "tornpage", "settings": {}, "workloads": "8", "crash_states": 1, "probes": {},
         "coverage": {}, "findings": []}))
    return {"missing": (tmp_path / "nope.json", "no such file"),
            "directory": (tmp_path, "is a directory"),
            "not json": (tmp_path / "notjson.json", "not a JSON file"),
            "a list": (tmp_path / "list.json", "not a tornpage run JSON"),
            "another tool": (tmp_path / "other.json", "not a tornpage run JSON"),
            "missing field": (tmp_path / "partial.json", "missing field 'workloads'"),
            "wrong type": (tmp_path / "badtype.json", "workloads must be an integer"),
            "an artifact": (artifact_path, "this is a finding artifact")}


@pytest.mark.timeout(120)
@pytest.mark.parametrize("case", ["missing", "directory", "not json", "a list", "another tool",
                                  "missing field", "wrong type", "an artifact"])
def test_a_bad_run_file_is_exit_2_with_one_line(runs, tmp_path, case):
    d, finding, _, _ = runs
    artifact = json.loads(finding.read_text())["findings"][0]["artifact"]
    path, words = _bad_inputs(tmp_path, artifact)[case]
    out = tmp_path / "r.html"
    r = invoke("report", finding, path, "-o", out)
    assert r.exit_code == 2, r.output
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("tornpage report: ") and words in lines[0], \
        r.stderr
    assert str(path) in lines[0]
    assert not out.exists()


@pytest.mark.timeout(60)
def test_output_in_a_missing_directory_is_checked_first(runs, tmp_path, no_work):
    out = tmp_path / "nonexistent" / "r.html"
    r = invoke("report", runs[1], "-o", out)
    assert r.exit_code == 2, r.output
    assert "-o" in r.stderr and "does not exist" in r.stderr, r.stderr
    assert r.stdout == "" and not out.parent.exists()


@pytest.mark.timeout(60)
def test_output_that_is_a_directory_is_checked_first(runs, tmp_path, no_work):
    r = invoke("report", runs[1], "-o", tmp_path)
    assert r.exit_code == 2, r.output
    assert "is a directory" in r.stderr, r.stderr


@pytest.mark.timeout(60)
@pytest.mark.skipif(os.geteuid() == 0, reason="root can write anywhere")
def test_an_unwritable_output_is_checked_first(runs, tmp_path, no_work):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        r = invoke("report", runs[1], "-o", ro / "r.html")
    finally:
        ro.chmod(0o700)
    assert r.exit_code == 2, r.output
    assert "cannot write there" in r.stderr, r.stderr


@pytest.mark.timeout(60)
def test_an_output_that_fails_while_writing_is_exit_2(runs, tmp_path, monkeypatch):
    """Checked up front and still failing (a full disk, a race): one line, exit 2."""
    def full(*a, **k):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(html_report.os, "replace", full)
    r = invoke("report", runs[2], "-o", tmp_path / "r.html")
    assert r.exit_code == 2, r.output
    assert "cannot write" in r.stderr and "No space left on device" in r.stderr, r.stderr
    assert list(tmp_path.iterdir()) == []          # no half-written page left behind


@pytest.mark.timeout(60)
def test_no_run_and_a_bad_artifacts_directory_are_usage_errors(runs, tmp_path):
    r = invoke("report", "-o", tmp_path / "r.html")
    assert r.exit_code == 2 and "Missing argument" in r.stderr, r.output
    r = invoke("report", runs[1], "--artifacts", tmp_path / "nope", "-o", tmp_path / "r.html")
    assert r.exit_code == 2, r.output
    assert "--artifacts" in r.stderr and "no such directory" in r.stderr, r.stderr
    assert not (tmp_path / "r.html").exists()


# -- in a real browser -------------------------------------------------------------------------------
def chromium(tmp_path, url: str, *args: str) -> tuple[str, str]:
    """Run headless Chromium on ``url``: (stdout, stderr log)."""
    profile = tmp_path / "chromium-profile"
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
           "--no-first-run", "--disable-background-networking", "--disable-component-update",
           "--disable-sync", f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0",
           *args, url]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=90,
                       env={**os.environ, "HOME": str(tmp_path)})
    assert p.returncode == 0, p.stderr[-3000:]
    return p.stdout, p.stderr


CONSOLE = re.compile(r":CONSOLE|Uncaught")


def console_lines(log: str) -> list[str]:
    """Messages the page logged to its console (Chromium logs each, even console.error and
    uncaught exceptions, as INFO:CONSOLE lines; a CSP violation is one too)."""
    return [ln for ln in log.splitlines() if CONSOLE.search(ln)]


def png_pixels(data: bytes):
    """(width, height, rows of pixel bytes, bytes per pixel) of an 8-bit RGB or RGBA PNG: a
    small decoder, so the test needs no imaging library."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat, ihdr = 8, b"", None
    while pos < len(data):
        n, = struct.unpack(">I", data[pos:pos + 4])
        kind, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + n]
        pos += 12 + n
        if kind == b"IHDR":
            ihdr = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
    w, h, depth, ctype, _, _, interlace = ihdr
    assert depth == 8 and ctype in (2, 6) and interlace == 0, ihdr
    bpp = 3 if ctype == 2 else 4
    raw = zlib.decompress(idat)
    stride = w * bpp
    rows, prev, p = [], bytes(stride), 0
    for _ in range(h):
        f, line = raw[p], bytearray(raw[p + 1:p + 1 + stride])
        p += 1 + stride
        if f == 1:
            for i in range(bpp, stride):
                line[i] = (line[i] + line[i - bpp]) & 255
        elif f == 2:
            line = bytearray((a + b) & 255 for a, b in zip(line, prev))
        elif f == 3:
            for i in range(stride):
                left = line[i - bpp] if i >= bpp else 0
                line[i] = (line[i] + (left + prev[i]) // 2) & 255
        elif f == 4:
            for i in range(stride):
                a = line[i - bpp] if i >= bpp else 0
                b, c = prev[i], prev[i - bpp] if i >= bpp else 0
                pa, pb, pc = abs(b - c), abs(a - c), abs(a + b - 2 * c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) \
                    & 255
        rows.append(bytes(line))
        prev = line
    return w, h, rows, bpp


@needs_chromium
@pytest.mark.timeout(180)
def test_the_report_in_a_headless_browser(report, tmp_path):
    path, _, f, art = report
    dom, log = chromium(tmp_path, path.as_uri(), "--dump-dom")
    assert console_lines(log) == [], console_lines(log)
    assert f["rule"] in dom and "tornpage replay" in dom
    assert len(re.findall(r'class="probe-bar[ "]', dom)) == len(ALL_PROBES)
    assert re.search(r"<svg id=\"probe-chart\"[^>]*>.*<rect", dom, re.S)
    assert '<g class="crash-line">' in dom
    assert 'class="op op-dropped"' in dom

    png = tmp_path / "report.png"
    _, log = chromium(tmp_path, path.as_uri(), f"--screenshot={png}", "--window-size=1200,2000")
    assert console_lines(log) == [], console_lines(log)
    assert png.exists() and png.stat().st_size > 10_000
    w, h, rows, bpp = png_pixels(png.read_bytes())
    assert (w, h) == (1200, 2000)
    colours = {row[x * bpp:x * bpp + 3] for row in rows[::7] for x in range(0, w, 5)}
    assert len(colours) > 50, f"a nearly blank screenshot: {len(colours)} colours"
    # the probe chart's bars (required: #1565c0) are on screen
    assert b"\x15\x65\xc0" in colours


@needs_chromium
@pytest.mark.timeout(120)
def test_the_browser_check_sees_script_errors_and_fetches(tmp_path):
    """The console check is not vacuous: an uncaught error, a console.error and a fetch the CSP
    forbids all show up in Chromium's log."""
    page = tmp_path / "bad.html"
    page.write_text("<!DOCTYPE html><html><head><meta http-equiv=\"Content-Security-Policy\" "
                    "content=\"img-src 'none'\"></head><body><p>x</p>"
                    "<img src=\"https://example.invalid/x.png\">"
                    "<script>console.error('boom'); undefinedFunction();</script>"
                    "</body></html>")
    _, log = chromium(tmp_path, page.as_uri(), "--dump-dom")
    lines = console_lines(log)
    assert any("Uncaught ReferenceError" in ln for ln in lines), log[-3000:]
    assert any("boom" in ln for ln in lines), log[-3000:]
    assert any("Content Security Policy" in ln for ln in lines), log[-3000:]
