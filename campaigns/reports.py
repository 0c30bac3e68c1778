"""Campaign reports for CI: JUnit XML (one test case per finding signature).

CI systems (GitHub Actions, GitLab, Jenkins) render JUnit XML natively; each distinct finding is
one failing test case whose ``reproduce`` property is the command that replays it, and a clean
campaign is one passing test case carrying the seed, shard and counts.
"""
from __future__ import annotations

import xml.etree.ElementTree as ET


def write_junit(path: str, cfg, res) -> None:
    """Write ``res`` (a CampaignResult of ``cfg``) as JUnit XML to ``path``."""
    shard = f"{cfg.shard[0]}/{cfg.shard[1]}"
    cases = []
    for f in res.findings:
        case = ET.Element("testcase", classname="tornpage.findings", name=f.signature(),
                          time="0")
        props = ET.SubElement(case, "properties")
        for k, v in (("reproduce", f"tornpage replay {f.artifact}"), ("artifact", f.artifact),
                     ("seed", str(f.seed)),
                     ("duplicates", str(res.duplicates.get(f.signature(), 0)))):
            ET.SubElement(props, "property", name=k, value=v)
        fail = ET.SubElement(case, "failure", message=f"[{f.verdict['kind']}] "
                                                      f"{f.verdict['summary']}")
        fail.text = f.explanation + "\n" + "\n".join(f.plan_lines)
        cases.append(case)
    if res.missing_probes:
        case = ET.Element("testcase", classname="tornpage.probes", name="required probes",
                          time="0")
        ET.SubElement(case, "failure", message="required probes never fired: "
                                               + ", ".join(res.missing_probes))
        cases.append(case)
    summary = ET.Element("testcase", classname="tornpage.campaign",
                         name=f"seed {cfg.seed} shard {shard}", time=f"{res.elapsed:.3f}")
    props = ET.SubElement(summary, "properties")
    if res.interrupted:
        ET.SubElement(summary, "failure", message="interrupted before the budget ended")
    for k, v in (("seed", cfg.seed), ("shard", shard), ("workloads", res.workloads),
                 ("crash_states", res.crash_states),
                 ("crash_states_reused", res.crash_states_reused),
                 ("interrupted", str(res.interrupted).lower()),
                 ("chunks", " ".join(map(str, sorted(res.chunk_ids))))):
        ET.SubElement(props, "property", name=k, value=str(v))
    cases.append(summary)
    suite = ET.Element("testsuite", name="tornpage", tests=str(len(cases)),
                       failures=str(sum(1 for c in cases if c.find("failure") is not None)),
                       errors="0", skipped="0", time=f"{res.elapsed:.3f}")
    suite.extend(cases)
    root = ET.Element("testsuites")
    root.append(suite)
    ET.indent(root)
    ET.ElementTree(root).write(path, encoding="utf-8", xml_declaration=True)
