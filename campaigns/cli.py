"""The ``tornpage`` command line (click).

Exit codes: 0 clean (or a replay that now passes), 1 findings (or a replay that still fails, or
a required probe that never fired), 2 a usage error or an unreadable artifact.
"""
from __future__ import annotations

import concurrent.futures
import contextlib
import json
import os
import signal
import subprocess
import sys

import click

from tornpage.campaigns import crashcheck, reports, runner, tools
from tornpage.campaigns import html_report
from tornpage.campaigns.artifacts import ArtifactError, load
from tornpage.campaigns.mutants import MUTANTS, planted
from tornpage.campaigns.runner import SEARCH_MODES, CampaignConfig, CampaignResult, run_campaign
from tornpage.campaigns.workload import (ISOLATION_LEVELS, TRX_COMMIT_MODES, WorkloadSettings,
                                isolation_probe, run_workload)
from tornpage.checkers.probes import FAULT_PROBES, PROBES, REQUIRED_DEFAULT, WORKLOAD_PROBES
from tornpage.engine.config import PAGE_SIZES, ConfigError
from tornpage.faultfs import DEVICES, DEFAULT_DEVICE, CrashPlanError


def _err(msg: str) -> None:
    click.echo(msg, err=True)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option("0.1.0", prog_name="tornpage")
def main() -> None:
    """tornpage: crash-consistency and recovery verification for an InnoDB-style engine."""


def _required_probes(settings: WorkloadSettings, mutant: str | None, recovery_crashes: int = 0,
                     media_faults: bool = False, modes: tuple = (), levels: tuple = ()) -> tuple:
    """The probes a clean campaign with these options must see fire: the recovery branches it
    exists to test, every flush_log_at_trx_commit mode and isolation level it was to run, the
    engine paths the workloads exist to exercise (old versions read through undo, secondary
    index maintenance, purge during the workload and after a crash, page merges, the log wrap
    and a synchronous checkpoint, log flushes at mtr boundaries) and every fault it was
    configured to inject (a fault that never fired is a test that never ran).  With media faults the workload paths are not
    required: the engine stops at a workload's first media fault, which comes early in most
    workloads, so a short campaign cannot promise to reach them (the default campaign does)."""
    if mutant:
        return ()
    req = list(REQUIRED_DEFAULT)
    req += [f"trx_commit_mode_{m}" for m in modes]
    req += [isolation_probe(lv) for lv in levels]
    req.append("purge_after_recovery")
    if not media_faults:
        req += ["consistent_read_old_version", "sec_index_delete_mark",
                "purge_removed_sec_entry", "btr_page_merge", "log_flushed_at_mtr_boundary"]
    dev = DEVICES[settings.device]
    if not settings.doublewrite or not dev.power_loss or dev.tear_unit >= settings.page_size:
        req.remove("doublewrite_repair")   # nothing can tear, or nothing can repair
    if recovery_crashes:
        req.append("crash_during_recovery")
    if media_faults:      # ENOSPC needs a file-extending write at the right moment: not required
        req += ["media_bitflip", "media_sector_error", "media_eio_write", "media_eio_fsync",
                "media_misdirected", "media_at_rest_corruption", "media_bit_rot",
                "engine_stopped_on_media_fault"]
    if settings.page_size == 4096 and not media_faults:
        # the minimum log of 4 KiB pages wraps and fills up under the campaign's log pressure
        # steps (campaigns.runner.log_pressure_strategy); the minimum log of larger pages holds
        # more redo than a workload writes
        req += ["log_wrapped", "log_free_check_checkpoint"]
    if dev.power_loss and "zeros" in dev.torn_fills:
        req.append("fault_torn_zeros")
    if dev.power_loss and dev.sub_sector_cuts:
        req.append("fault_torn_inside_sector")
    if not dev.safe_append:
        req.append("fault_size_only")
    return tuple(req)


# Settings profiles (--profile).  Options given on the command line win over the profile.
PROFILES: dict[str, dict] = {
    "default": {},
    "ci": {"examples": 40, "seed": 0},
    "nightly": {"budget": 3600.0, "seed": None, "recovery_crashes": 2, "max_findings": 20,
                "database": ".tornpage/examples"},
}
PROFILE_HELP = ("ci: 40 workloads, seed 0, no example database (fast, deterministic); "
                "nightly: one hour, a random seed (printed), 2 crashes during recovery, up to "
                "20 distinct findings, Hypothesis example database in .tornpage/examples "
                "(failures found one night are replayed first the next), whatever CI "
                "variables say")


def _parse_shard(ctx, param, value):
    if value is None:
        return (1, 1)
    try:
        k, n = (int(x) for x in value.split("/"))
    except ValueError:
        raise click.BadParameter(f"expected K/N, e.g. 1/4, got {value!r}") from None
    if not 1 <= k <= n:
        raise click.BadParameter(f"shard {k}/{n}: need 1 <= K <= N")
    return (k, n)


@main.command()
@click.option("--profile", type=click.Choice(sorted(PROFILES)), default="default",
              show_default=True, help=PROFILE_HELP)
@click.option("--budget", type=click.FloatRange(min=0.1), default=20.0, show_default=True,
              help="Wall-clock seconds to explore (checked between chunks of 4 workloads); "
                   "ignored with --examples unless given too.")
@click.option("--examples", type=click.IntRange(min=1), default=None,
              help="Run this many workloads in all shards together (deterministic for a seed).")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True)
@click.option("--shard", callback=_parse_shard, default=None, metavar="K/N",
              help="Run shard K of N: chunk i of the seed space when i % N == K-1.")
@click.option("--jobs", type=click.IntRange(min=1), default=os.cpu_count() or 1,
              show_default="the machine's cores",
              help="Worker processes (chunks run in parallel; merged in chunk order, so the "
                   "result of --examples is the same for any --jobs).")
@click.option("--dask", "dask_address", default=None, metavar="SCHEDULER_ADDRESS",
              help="Run chunks on a Dask distributed cluster (pip install 'tornpage[dask]').")
@click.option("--mutant", type=click.Choice(sorted(MUTANTS)), default=None,
              help="Plant a known recovery bug (see `tornpage mutants`).")
@click.option("--device", type=click.Choice(sorted(DEVICES)), default=DEFAULT_DEVICE,
              show_default=True, help="Device profile (see `tornpage devices`).")
@click.option("--no-doublewrite", is_flag=True, help="Run the engine with innodb_doublewrite=OFF.")
@click.option("--page-size", type=click.Choice([str(p) for p in PAGE_SIZES[:3]]),
              default="4096", show_default=True)
@click.option("--flush-log-at-trx-commit", "trx_commit", type=click.Choice(["0", "1", "2"]),
              multiple=True, help="innodb_flush_log_at_trx_commit of the workloads (repeat "
                                  "for several); default: 1, 2 and 0, drawn per workload.")
@click.option("--isolation", type=click.Choice(list(ISOLATION_LEVELS)), multiple=True,
              help="transaction_isolation of the workloads (repeat for both); default: "
                   "REPEATABLE-READ and READ-COMMITTED, drawn per workload.")
@click.option("--crash-states", type=click.IntRange(min=1), default=24, show_default=True,
              help="Crash states derived from each workload's trace.")
@click.option("--max-findings", type=click.IntRange(min=1), default=1, show_default=True,
              help="Stop after this many distinct findings (deduplicated by signature).")
@click.option("--recovery-crashes", type=click.IntRange(min=0, max=8), default=1,
              show_default=True, help="Crash during recovery up to K times per crash state "
                                      "(each recovery IO is a crash point).")
@click.option("--search", type=click.Choice(sorted(SEARCH_MODES)), default="sample",
              show_default=True, help="How crash states are chosen: " + "; ".join(
                  f"{k}: {v}" for k, v in sorted(SEARCH_MODES.items())))
@click.option("--exhaustive-bound", type=click.IntRange(min=1), default=64, show_default=True,
              help="Enumerate a crash point completely when its space has at most this many "
                   "states (a quarter of it is the number of samples per larger point in the "
                   "systematic search).")
@click.option("--media-faults", is_flag=True,
              help="Inject media faults while workloads run: bit flips and latent sector "
                   "errors on read, bit rot (a flipped bit that stays), EIO on write and fsync, "
                   "ENOSPC, misdirected writes (further on, earlier, or into another file) and "
                   "writes stored with a wrong bit (at-rest corruption); see faultfs.media.")
@click.option("--shrink/--no-shrink", default=True, show_default=True,
              help="Shrink each finding: the workload (Hypothesis), then the crash plan "
                   "(off: faster, larger cases).")
@click.option("--shrink-steps", type=click.IntRange(min=0), default=100, show_default=True,
              help="Runs spent shrinking one finding, at most: a deterministic bound, so the "
                   "same command saves the same artifact.  --budget does not cover shrinking.")
@click.option("--determinism-check/--no-determinism-check", default=True, show_default=True,
              help="Replay every finding twice and compare trace hash and verdict.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False, writable=True),
              default=None, help="Write the summary as JSON here.")
@click.option("--junit", "junit_path", type=click.Path(dir_okay=False, writable=True),
              default=None, help="Write JUnit XML here: one test case per finding signature, "
                                 "the reproduction command as a property.")
@click.option("--artifacts", type=click.Path(file_okay=False), default="tornpage-artifacts",
              show_default=True, help="Directory for finding artifacts.")
@click.option("--quiet", is_flag=True, help="No progress lines on stderr.")
@click.pass_context
def run(ctx, profile, budget, examples, seed, shard, jobs, dask_address, mutant, device,
        no_doublewrite, page_size, trx_commit, isolation, crash_states, max_findings, recovery_crashes,
        search, exhaustive_bound, media_faults, shrink, shrink_steps, determinism_check,
        json_path, junit_path, artifacts, quiet):
    """Run a fault campaign: workloads, crashes, recovery, oracles."""
    given = {name for name in ctx.params
             if ctx.get_parameter_source(name) == click.core.ParameterSource.COMMANDLINE}
    prof = dict(PROFILES[profile])
    pick = {k: (ctx.params[k] if k in given else prof.get(k, ctx.params[k]))
            for k in ("budget", "examples", "seed", "recovery_crashes", "max_findings")}
    budget, examples, seed = pick["budget"], pick["examples"], pick["seed"]
    if seed is None:                  # nightly: a fresh seed each night, printed to reproduce
        seed = int.from_bytes(os.urandom(4), "big")
    if examples is not None and "budget" not in given:
        budget = None
    modes = tuple(dict.fromkeys(int(m) for m in trx_commit)) or TRX_COMMIT_MODES
    levels = tuple(dict.fromkeys(isolation)) or ISOLATION_LEVELS
    settings = WorkloadSettings(page_size=int(page_size), log_file_size=48 * int(page_size),
                                doublewrite=not no_doublewrite, device=device,
                                flush_log_at_trx_commit=modes[0], isolation=levels[0])
    try:
        settings.engine_config()
    except ConfigError as e:
        raise click.UsageError(str(e))
    if dask_address:
        if "jobs" in given:
            raise click.UsageError("--jobs and --dask are alternatives; give one")
        jobs = 1
    _check_writable(json_path, "--json")
    _check_writable(junit_path, "--junit")
    try:
        os.makedirs(artifacts, exist_ok=True)
    except OSError as e:
        raise click.UsageError(f"--artifacts {artifacts}: cannot create the directory "
                               f"({e.strerror or e})")
    if not os.access(artifacts, os.W_OK):
        raise click.UsageError(f"--artifacts {artifacts}: the directory is not writable")
    if prof.get("database"):
        # the example database exists after every nightly run, not only after a failure, so a
        # CI cache step always has something to keep
        try:
            os.makedirs(prof["database"], exist_ok=True)
        except OSError as e:
            raise click.UsageError(f"cannot create the example database {prof['database']}: "
                                   f"{e.strerror or e}")
    cfg = CampaignConfig(seed=seed, budget=budget, examples=examples, settings=settings,
                         mutant=mutant, crash_states_per_workload=crash_states,
                         artifacts_dir=artifacts, max_findings=pick["max_findings"],
                         recovery_crashes=pick["recovery_crashes"], shard=shard,
                         search=search, exhaustive_bound=exhaustive_bound,
                         check_determinism=determinism_check, media_faults=media_faults,
                         database=prof.get("database"), shrink=shrink,
                         shrink_steps=shrink_steps, show_shrink=not quiet,
                         trx_commit_modes=modes, isolation_levels=levels,
                         required_probes=_required_probes(settings, mutant,
                                                          pick["recovery_crashes"],
                                                          media_faults, modes, levels))
    if not quiet:
        _err(f"tornpage run: profile {profile}, seed {seed}, "
             + (f"{examples} workloads" if examples else f"budget {budget:g}s")
             + (f", shard {shard[0]}/{shard[1]}" if shard != (1, 1) else "")
             + f", device {device}, doublewrite {'off' if no_doublewrite else 'on'}, "
               f"page size {page_size}, flush_log_at_trx_commit "
             + ",".join(map(str, modes)) + (f", mutant {mutant}" if mutant else ""))

    last = [-1.0]

    def progress(r: CampaignResult) -> None:
        if not quiet and r.elapsed - last[0] >= 2.0:
            last[0] = r.elapsed
            _err(f"[{r.elapsed:6.1f}s] workloads {r.workloads:5d}  crash states "
                 f"{r.crash_states:7d}  findings {len(r.findings)}")

    with _terminate_as_interrupt(cooperative=jobs <= 1 and not dask_address), \
            _executor(jobs, dask_address) as executor:
        res = run_campaign(cfg, progress, executor=executor,
                           jobs=jobs if not dask_address else _dask_workers(executor))
        if res.interrupted:
            _stop_workers(executor)
    _print_summary(cfg, res)
    if json_path:
        with open(json_path, "w") as f:
            json.dump(res.to_json(cfg), f, indent=1)
            f.write("\n")
    if junit_path:
        reports.write_junit(junit_path, cfg, res)
    sys.exit(130 if res.interrupted else 1 if res.failed else 0)


@contextlib.contextmanager
def _terminate_as_interrupt(cooperative: bool):
    """SIGTERM (a CI job cancelled, a pod evicted) stops a campaign as Ctrl-C does: findings
    kept, JSON and JUnit written, exit 130.  Both set ``runner.STOP``; a campaign running in
    this process (``cooperative``) stops at its next crash state (runner.StopRequest), one
    that waits on workers is interrupted at once; a second signal always interrupts at once."""
    def handler(signum, frame):
        again = runner.STOP.requested
        runner.STOP.set()
        if again or not cooperative:
            raise KeyboardInterrupt
    runner.STOP.clear()
    old = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, h in old.items():
            signal.signal(sig, h)


def _stop_workers(executor) -> None:
    """After an interrupt, stop a process pool's workers now instead of letting their chunks
    (and their shrinking) run to the end; their unshrunk artifacts are already saved."""
    if isinstance(executor, concurrent.futures.ProcessPoolExecutor):
        for proc in list(getattr(executor, "_processes", {}).values()):
            proc.terminate()
        executor.shutdown(wait=False, cancel_futures=True)


def _check_writable(path: str | None, option: str) -> None:
    """Fail before the campaign (exit 2), not after it, when an output cannot be written."""
    if path is None:
        return
    d = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(d) or not os.access(d, os.W_OK) or \
            (os.path.exists(path) and not os.access(path, os.W_OK)):
        raise click.UsageError(f"{option} {path}: cannot write there")


@contextlib.contextmanager
def _executor(jobs: int, dask_address: str | None):
    if dask_address:
        try:
            from distributed import Client
        except ImportError:
            raise click.UsageError("--dask needs the distributed package: "
                                   "pip install 'tornpage[dask]'") from None
        try:
            client = Client(dask_address, timeout="10s")
        except (OSError, TimeoutError, ValueError) as e:
            raise click.UsageError(f"cannot reach the Dask scheduler at {dask_address}: {e}")
        with client:
            yield client
    elif jobs > 1:
        with concurrent.futures.ProcessPoolExecutor(jobs, initializer=_pool_worker) as pool:
            yield pool
    else:
        yield None


def _pool_worker() -> None:
    """A pool worker leaves Ctrl-C to the parent (which saves the findings and stops the
    workers) and dies quietly when the parent terminates it."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _dask_workers(client) -> int:
    return max(1, sum(w.get("nthreads", 1)
                      for w in client.scheduler_info().get("workers", {}).values()))


def _print_summary(cfg: CampaignConfig, res: CampaignResult) -> None:
    rate = res.crash_states / res.elapsed if res.elapsed else 0.0
    click.echo(f"workloads      {res.workloads}")
    click.echo(f"crash states   {res.crash_states} distinct  ({rate:.0f}/s over "
               f"{res.elapsed:.1f}s); {res.crash_states_reused} repeats reused their verdict")
    if res.shrink_runs:
        click.echo(f"shrink runs    {res.shrink_runs}")
    click.echo("probes")
    for name in list(PROBES) + list(WORKLOAD_PROBES) + list(FAULT_PROBES):
        mark = " (required)" if name in cfg.required_probes else ""
        click.echo(f"  {name:38s} {res.probes.get(name, 0):8d}{mark}")
    click.echo(f"search         {cfg.search}: {res.coverage.describe()}")
    click.echo(f"findings       {len(res.findings)}")
    for f in res.findings:
        click.echo("")
        click.echo(f.explanation)
        for line in f.plan_lines:
            click.echo("  " + line)
        if f.determinism is not None:
            click.echo("  determinism: " + ("2 replays gave the same trace hash and verdict"
                                             if f.determinism == "ok" else f.determinism))
        click.echo(f"  artifact: {f.artifact}")
        click.echo(f"  reproduce: tornpage replay {f.artifact}")
    if res.duplicates:
        click.echo("duplicate findings dropped: " + ", ".join(
            f"{sig} x{n}" for sig, n in sorted(res.duplicates.items())))
    if res.missing_probes:
        click.echo(f"required probes that never fired: {', '.join(res.missing_probes)}")
    if res.interrupted:
        click.echo("interrupted: the campaign was stopped before its budget ended (findings "
                   "so far kept; a finding cut off while shrinking keeps its unshrunk artifact)")
    click.echo("result: " + ("INTERRUPTED" if res.interrupted else
                             "FAIL" if res.failed else "PASS"))


@main.command()
@click.argument("artifact", type=click.Path(dir_okay=False))
@click.option("--without-mutant", is_flag=True,
              help="Replay with the artifact's planted bug removed (does the fix pass?).")
@click.option("--subprocess", "in_subprocess", is_flag=True,
              help="Replay in a child process, so a hard crash of the code under test cannot "
                   "lose the reproduction; its exit status is reported.")
def replay(artifact, without_mutant, in_subprocess):
    """Reproduce a finding from its artifact: same trace hash, same verdict."""
    art = _load("replay", artifact)
    if in_subprocess:
        cmd = [sys.executable, "-m", "tornpage.campaigns.cli", "replay", artifact] + \
            (["--without-mutant"] if without_mutant else [])
        proc = subprocess.run(cmd)
        if proc.returncode < 0:
            click.echo(f"the replay process died of signal {-proc.returncode}: the code under "
                       f"test crashed hard; reproduce with: {' '.join(cmd)}")
            sys.exit(1)
        sys.exit(proc.returncode)
    mutant = None if without_mutant else art.mutant
    with planted(mutant):
        run = run_workload(art.settings, art.steps)
        again = run_workload(art.settings, art.steps).trace.hash()
        if again != run.trace.hash():
            click.echo(f"NONDETERMINISTIC: two runs of the workload gave trace hashes "
                       f"{run.trace.hash()[:16]} and {again[:16]}")
            sys.exit(1)
        exact = run.trace.hash() == art.trace_hash
        click.echo(f"replaying {artifact}: {len(art.steps)} steps, crash at operation "
                   f"{art.plan.position} of {len(run.trace)}"
                   + (f", mutant {mutant}" if mutant else ""))
        click.echo(f"trace hash {run.trace.hash()[:16]} "
                   + ("(matches the artifact)" if exact else
                      f"(DIFFERS from the artifact's {art.trace_hash[:16]}: the code changed; "
                      f"the crash plan is applied to the new trace)")
                   + "; the workload ran twice with the same hash")
        try:
            if art.plan.position <= run.setup_end:
                # a changed setup (e.g. once a fix flushes where the bug did not) can end after
                # the recorded crash position: that crash would cut the setup, not the workload
                raise CrashPlanError(f"crash position {art.plan.position} lies in the setup, "
                                     f"which now ends at operation {run.setup_end + 1}")
            out = crashcheck.check_crash_state(run, art.plan, nested=art.nested,
                                               new_work=art.new_work)
            lines = crashcheck.explain_plans(run, art.plan, art.nested)
        except CrashPlanError as e:
            _err(f"tornpage replay: the crash plan does not fit this trace: {e}")
            sys.exit(2)
    for line in lines:
        click.echo("  " + line)
    if out.verdict.ok:
        click.echo("verdict: PASS (the finding no longer reproduces)")
        sys.exit(0)
    click.echo(out.verdict.explain())
    same = out.verdict.same_finding(art.finding)
    click.echo("verdict: FAIL (" + ("same finding as recorded" if same else
                                    "a different finding than recorded") + ")")
    sys.exit(1)


def _load(command: str, artifact: str):
    try:
        return load(artifact)
    except ArtifactError as e:
        _err(f"tornpage {command}: {e}")
        sys.exit(2)


@main.command()
@click.argument("artifact", type=click.Path(dir_okay=False))
@click.option("--context", type=click.IntRange(min=1), default=12, show_default=True,
              help="Trace operations shown before the crash.")
def explain(artifact, context):
    """Explain a finding: the trace around the crash, the choices that matter, expected versus
    found rows."""
    art = _load("explain", artifact)
    with planted(art.mutant):
        try:
            lines = tools.explain(art, context)
        except CrashPlanError as e:
            _err(f"tornpage explain: the crash plan does not fit this trace: {e}")
            sys.exit(2)
    for line in lines:
        click.echo(line)


def _output_file(ctx, param, value):
    """-o FILE: fail at once (exit 2) when FILE cannot be written, not after the work."""
    if value is not None:
        d = os.path.dirname(os.path.abspath(value))
        if not os.path.isdir(d):
            raise click.BadParameter(f"{value}: the directory {d} does not exist")
        if not os.access(d, os.W_OK) or (os.path.exists(value) and
                                         not os.access(value, os.W_OK)):
            raise click.BadParameter(f"{value}: cannot write there")
    return value


@main.command()
@click.argument("artifact", type=click.Path(dir_okay=False))
@click.option("-o", "--output", type=click.Path(dir_okay=False), default=None,
              callback=_output_file,
              help="Where to save the shrunk artifact [default: ARTIFACT with .shrunk.json].")
@click.option("--steps", "shrink_steps", type=click.IntRange(min=1), default=500,
              show_default=True, help="Candidate runs to spend at most (deterministic).")
def shrink(artifact, output, shrink_steps):
    """Shrink a finding further (fewer steps, fewer faults) keeping its signature."""
    art = _load("shrink", artifact)
    out = output or (artifact[:-5] if artifact.endswith(".json") else artifact) + ".shrunk.json"
    _check_writable(out, "-o")          # the default, next to ARTIFACT: before the work too
    with planted(art.mutant):
        try:
            small = tools.shrink(art, log=lambda s: _err("  " + s), steps=shrink_steps)
        except (ValueError, CrashPlanError) as e:
            _err(f"tornpage shrink: {e}")
            sys.exit(2)
    small_path = small.save_as(out)
    click.echo(f"{len(art.steps)} steps, {len(art.plan.choices)} faults -> "
               f"{len(small.steps)} steps, {len(small.plan.choices)} faults")
    click.echo(f"saved {small_path}")
    click.echo(f"reproduce: tornpage replay {small_path}")


@main.command()
@click.argument("target", type=click.Path(exists=True))
@click.option("--page-size", type=click.Choice([str(p) for p in PAGE_SIZES]), default=None,
              help="Page size of a directory's files [default: 4096; an artifact knows its own].")
@click.option("--max-blocks", type=click.IntRange(min=1), default=64, show_default=True)
def inspect(target, page_size, max_blocks):
    """Decode the pages, redo blocks and checkpoints of a crash image: a directory of engine
    files, or an artifact (its crash state is rebuilt)."""
    if os.path.isdir(target):
        files, ps, bad = tools.read_dir(target), int(page_size or 4096), None
        if not any(tools.is_engine_file(p) for p in files):
            _err(f"tornpage inspect: {target}: no engine files there (expected "
                 f"{tools.ENGINE_FILES}" + (f"; found {len(files)} other files)" if files
                                            else "; the directory is empty)"))
            sys.exit(2)
    else:
        art = _load("inspect", target)
        with planted(art.mutant):
            try:
                _, image = tools.crash_image(art)
            except CrashPlanError as e:
                _err(f"tornpage inspect: the crash plan does not fit this trace: {e}")
                sys.exit(2)
        files, ps, bad = image.files, art.settings.page_size, image.bad_sectors
    for line in tools.inspect_files(files, ps, bad, max_blocks):
        click.echo(line)


@main.command()
@click.argument("artifact", type=click.Path(dir_okay=False))
@click.option("-o", "--output", type=click.Path(dir_okay=False), default=None,
              callback=_output_file, help="Write the test module here [default: stdout].")
@click.option("--without-mutant", is_flag=True,
              help="Replay without the artifact's planted bug (a test that passes now).")
def regress(artifact, output, without_mutant):
    """Turn an artifact into a pytest regression test (fails while the bug is present)."""
    art = _load("regress", artifact)
    src = tools.regression_test(art, os.path.basename(artifact),
                                include_mutant=not without_mutant)
    if output:
        with open(output, "w") as f:
            f.write(src)
        click.echo(f"wrote {output}: python -m pytest -q {output}")
    else:
        click.echo(src, nl=False)


@main.command()
def mutants():
    """List the planted bugs a campaign can be asked to find."""
    for m in MUTANTS.values():
        src = f"INNODB.md bug {m.bug}" if m.bug else "fault model"
        click.echo(f"{m.name}  ({src})")
        click.echo(f"    {m.description}")
        click.echo(f"    expect {m.expect}" + (f"; found only with {m.needs}" if m.needs else ""))
        if m.equivalent:
            click.echo(f"    argued equivalent in this engine (tornpage selftest checks it): "
                       f"{m.equivalent}")


@main.command()
@click.option("--examples-per-mutant", type=click.IntRange(min=1), default=400,
              show_default=True, help="Workloads each mutant campaign may run (it stops at "
                                      "the first finding): a deterministic budget.")
@click.option("--seeds", type=click.IntRange(min=1), default=4, show_default=True,
              help="Campaigns per mutant, seed, seed+1, …, until one finds it.")
@click.option("--clean-examples", type=click.IntRange(min=1), default=8, show_default=True,
              help="Workloads of each clean campaign (every device, with and without media "
                   "faults): any finding there is a false positive.")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True)
@click.option("--jobs", type=click.IntRange(min=1), default=os.cpu_count() or 1,
              show_default="the machine's cores", help="Campaigns run in parallel.")
@click.option("--shrink-steps", type=click.IntRange(min=0), default=100, show_default=True)
@click.option("--artifacts", type=click.Path(file_okay=False), default="tornpage-selftest",
              show_default=True, help="Directory for the mutants' artifacts.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False, writable=True),
              default=None, help="Write the report as JSON here.")
def selftest(examples_per_mutant, seeds, clean_examples, seed, jobs, shrink_steps, artifacts,
             json_path):
    """Prove the harness: every planted bug found, no finding on the clean engine.  A mutant
    that survives but is argued equivalent is run again as the clean engine, and passes only
    when no crash state's outcome differs."""
    from tornpage.campaigns import selftest as st
    _check_writable(json_path, "--json")
    with _executor(jobs, None) as executor:
        report = st.selftest(examples=examples_per_mutant, clean_examples=clean_examples,
                             seed=seed, seeds=seeds, artifacts_dir=artifacts,
                             shrink_steps=shrink_steps,
                             executor=executor, progress=click.echo)
    click.echo(f"mutants killed {report['killed']} of {report['total']}"
               + (f"; equivalent (no crash state's outcome differs from the clean engine's): "
                  f"{', '.join(report['equivalent'])}" if report["equivalent"] else "")
               + (f"; survived: {', '.join(report['survivors'])}" if report["survivors"] else ""))
    if report["median_seconds_to_artifact"] is not None:
        click.echo(f"time to the saved, shrunk artifact: median "
                   f"{report['median_seconds_to_artifact']:.1f} s, max "
                   f"{report['max_seconds_to_artifact']:.1f} s")
    click.echo(f"false positives on the clean engine: {report['false_positives']}")
    click.echo("result: " + ("PASS" if report["passed"] else "FAIL"))
    if json_path:
        with open(json_path, "w") as f:
            json.dump(report, f, indent=1)
            f.write("\n")
    sys.exit(0 if report["passed"] else 1)


@main.command()
def devices():
    """List the device profiles and their guarantees."""
    for d in DEVICES.values():
        click.echo(f"{d.name:14s} sector {d.sector_size} B, atomic unit {d.atomic_write_unit} B, "
                   f"{'power loss' if d.power_loss else 'process kill'}, "
                   f"{'ordered' if d.ordered else 'reordering'}, "
                   f"{'safe append' if d.safe_append else 'no safe append'}, lost sectors read "
                   f"as {'/'.join(d.torn_fills)}")
        click.echo(f"{'':14s} {d.description}")


@main.command()
@click.argument("runs", nargs=-1, required=True, type=click.Path())
@click.option("--artifacts", "artifacts_dir", type=click.Path(), default=None,
              help="Directory holding the findings' artifacts (searched recursively, e.g. a "
                   "CI download) [default: the paths recorded in the run JSON].")
@click.option("-o", "--output", type=click.Path(dir_okay=False), default="tornpage-report.html",
              show_default=True, callback=_output_file, help="Write the HTML page here.")
def report(runs, artifacts_dir, output):
    """One self-contained HTML page for runs (tornpage run --json files; several are merged:
    shards, devices): crash states per shard and device, a probe chart, coverage of the crash
    points, and each finding with its IO timeline around the crash."""
    try:
        out = html_report.write_report(list(runs), output, artifacts_dir)
    except html_report.ReportError as e:
        _err(f"tornpage report: {e}")
        sys.exit(2)
    except OSError as e:
        _err(f"tornpage report: cannot write {output}: {e.strerror or e}")
        sys.exit(2)
    click.echo(f"wrote {output}: {out['runs']} run{'' if out['runs'] == 1 else 's'}, "
               f"{out['findings']} distinct finding{'' if out['findings'] == 1 else 's'} "
               f"({out['timelines']} timeline{'' if out['timelines'] == 1 else 's'} drawn)"
               + (f", required probes never fired: {', '.join(out['missing'])}"
                  if out["missing"] else ""))


if __name__ == "__main__":
    main()
