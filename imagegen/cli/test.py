"""`imagegen test` and `imagegen vm`: boot the lab image of a profile and prove (or explore) its network."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from imagegen.cli.options import (
    Accel,
    AccelOpt,
    ImageOpt,
    JsonFlag,
    Profiles,
    ScenarioOpt,
    StoreOpt,
    SubstituteOnlyOpt,
    SubstituterOpt,
    UefiOpt,
)

if TYPE_CHECKING:
    from collections.abc import Callable

    from rich.console import Console

    from imagegen.profile import LoadedProfile
    from imagegen.scenarios.session import LabSession
    from imagegen.store import Entry, Store
    from imagegen.vm.lab import LabPlan
    from imagegen.vm.machine import ImageFiles, Machine


def _refuse_old_keep(value: bool) -> None:
    if value:
        typer.echo("error: imagegen test --keep is now --keep-vm (leave the VM running at the end)", err=True)
        raise typer.Exit(2)


def lab_image(loaded: LoadedProfile, image: Path | None, console: Console,
              store: Store) -> tuple[ImageFiles, Entry | None]:
    """The lab image to test and its store entry: the one given (an entry only if it lives in the store),
    else the profile's lab image from the store, built when any of its inputs changed."""
    from rich.text import Text

    from imagegen.errors import UsageError
    from imagegen.stages.realise import realise_image
    from imagegen.vm.machine import ImageFiles

    if image is not None:
        try:
            return ImageFiles.from_dir(image), store.get(image)
        except UsageError:
            return ImageFiles.from_dir(image), None
    built = realise_image(store, loaded, lab=True, record=False, console=console)
    console.print(Text(f"lab image: {'reused' if built.reused else 'built'} {built.entry.path}"))
    return ImageFiles.from_dir(built.entry.path), built.entry


def test(
    profiles: Profiles,
    accel: AccelOpt = Accel.auto,
    junit: Annotated[Path | None, typer.Option("--junit", show_default=False,
                                               help="Write JUnit XML here.")] = None,
    json_file: Annotated[Path | None, typer.Option("--json-file", show_default=False,
                                                   help="Write the results as JSON here.")] = None,
    as_json: JsonFlag = False,
    keep_vm: Annotated[bool, typer.Option("--keep-vm", help="Leave the VM running at the end and print how to "
                                          "attach (skips the clean-shutdown scenario).")] = False,
    old_keep: Annotated[bool, typer.Option("--keep", hidden=True, callback=_refuse_old_keep)] = False,
    uefi: UefiOpt = False,
    artifacts: Annotated[Path | None, typer.Option("--artifacts", show_default=False,
                                                   help="Where a failure's evidence goes. Default: the verdict's "
                                                   "store entry, artifacts/.")] = None,
    image: ImageOpt = None,
    scenario: ScenarioOpt = None,
    no_scenarios: Annotated[bool, typer.Option("--no-scenarios", help="Run no built-in scenario, only the test "
                                               "files' functions (--script, tests.scripts): the quick loop "
                                               "while writing a check.")] = False,
    rerun: Annotated[bool, typer.Option("--rerun", help="Run the scenarios even if the store holds a verdict "
                                        "for this image, scenario set and parameters.")] = False,
    store: StoreOpt = None,
    repeat: Annotated[int, typer.Option("--repeat", min=1, help="Run the scenarios N times, each on a fresh "
                                        "boot, and report how often each passed (implies --rerun: a stored "
                                        "verdict is no run).")] = 1,
    substituters: SubstituterOpt = None,
    substitute_only: SubstituteOnlyOpt = False,
    script: Annotated[list[Path] | None, typer.Option("--script", show_default=False,
                                                      help="A test file whose functions test_…(machine, lab) "
                                                      "run after the scenarios, beside the profile's "
                                                      "tests.scripts (repeatable; docs/testing-api.md).")] = None,
    debug: Annotated[bool, typer.Option("--debug", help="At the first failed check, open a Python prompt with "
                                        "machine and lab bound, the VM as the failure left it; Ctrl-D goes on "
                                        "with the run (runs outside the store).")] = False,
    sequential: Annotated[bool, typer.Option("--sequential", help="Start each VM only once the one before it "
                                             "is shut down: one VM's memory at a time, one boot's wait "
                                             "more. By default the next VM boots beside the scenarios of "
                                             "the one before.")] = False,
) -> None:
    """Boot the profile's lab image under QEMU and prove its network: failover, failback, hot-plug, ...

    The verdict is kept in the store under the hash of the image, the scenarios and their parameters: an
    unchanged run prints the stored verdict (--rerun runs again). --json prints the store paths and the
    verdict on stdout. --repeat N runs N times; a scenario that does not pass every time is flaky.
    """
    import json
    import shutil
    import sys

    from rich.console import Console
    from rich.text import Text

    from imagegen.cli.cache import substituter
    from imagegen.errors import UsageError
    from imagegen.interrupt import interrupted
    from imagegen.profile import load_profiles
    from imagegen.render import host_state_for, resolve_target
    from imagegen.report.artifacts import default_artifacts_dir
    from imagegen.report.console import ConsoleReport
    from imagegen.report.jsonout import is_json_report, write_json
    from imagegen.report.junit import is_junit_report, write_junit
    from imagegen.report.model import RunResult
    from imagegen.report.repeat import repeat_dict, write_repeat_json
    from imagegen.safeoutput import MARKER, check_file, check_tree, claim_tree, release_tree
    from imagegen.scenarios.catalog import BY_NAME
    from imagegen.scenarios.runner import MAIN_VM, WIFI_ONLY_VM, LabRun, TestOptions, applicable
    from imagegen.stages.derivations import profile_hash, verdict_derivation
    from imagegen.stages.realise import open_store, planned_image
    from imagegen.stages.verdicts import ARTIFACTS, attach_verdict, realise_verdict
    from imagegen.testing.calls import CallLog
    from imagegen.testing.repl import interact
    from imagegen.testing.scripts import CALL_LOG, bind, load_scripts, user_scenarios
    from imagegen.vm.accel import choose_accel
    from imagegen.vm.lab import lab_profile, plan_lab

    console = Console(stderr=True)
    if as_json and any(str(p) == "-" or p.suffix == ".json" for p in profiles):
        raise UsageError("imagegen test --json takes no value: it prints the verdict on stdout",
                         "use --json-file PATH to write the results to a file")
    if repeat > 1 and keep_vm:
        raise UsageError("--keep-vm leaves the VM running, so it cannot be repeated", "drop --keep-vm or --repeat")
    if repeat > 1 and debug:
        raise UsageError("--debug stops a run for a person at its first failure, so it cannot be repeated",
                         "drop --debug or --repeat")
    if no_scenarios and scenario:
        raise UsageError("--no-scenarios runs no built-in scenario, so it cannot name one with --scenario",
                         "drop --no-scenarios or --scenario")
    request = accel.request
    only = tuple(s.value for s in scenario or ())
    # Every path the run writes is checked before anything is built or booted.
    root = artifacts  # where evidence outside the store goes; the default is named once the host is known
    if root is not None:
        check_tree(root, "--artifacts")
    if junit is not None:
        check_file(junit, "--junit", is_junit_report)
    if json_file is not None:
        check_file(json_file, "--json-file", is_json_report)
    loaded = load_profiles(profiles)
    plan = plan_lab(lab_profile(loaded))
    # Imported now: a broken test file is a usage error before anything is built or booted.
    tests = load_scripts([*loaded.test_scripts(), *(script or [])])
    scripts = tuple(dict.fromkeys(t.script for t in tests))
    if no_scenarios and not tests:
        raise UsageError("--no-scenarios leaves nothing to run: the profile's tests.scripts and --script name "
                         "no test function", "add --script FILE with a def test_…(machine, lab), or drop "
                         "--no-scenarios")
    dhcp6_unit = resolve_target(loaded.profile.image).layout.dhcp6_unit
    st = open_store(store, substituter(substituters, substitute_only, console))
    hostname = loaded.profile.image.hostname
    fits = applicable(set(only or BY_NAME), plan)
    chosen = () if no_scenarios else tuple(n for n in (*MAIN_VM, *WIFI_ONLY_VM) if n in fits)
    # With a cache to ask, the verdict is looked for before the image: a hit needs no image at all. The
    # host's hash key keys the lab AP's passphrase in the verdict's hash; a new host's state file is
    # not written for that question (its hashes then match nothing, and the image is built).
    asks_first = st.substituter is not None and image is None and not (keep_vm or debug or rerun or repeat > 1)
    planned = planned_image(st, loaded, lab=True) if asks_first else None
    files: ImageFiles | None
    image_entry: Entry | None
    if planned is not None and st.substitute(verdict_derivation(
            planned, hostname=hostname, scenarios=chosen, uefi=uefi, lab_plan=plan, dhcp6_unit=dhcp6_unit,
            state=host_state_for(loaded, create=False), scripts=scripts)):
        console.print(Text(f"lab image: not needed ({planned.path_name} has a verdict)"))
        files, image_entry = None, planned
    else:
        files, image_entry = lab_image(loaded, image, console, st)
    state = host_state_for(loaded)  # the image's render kept it
    report = ConsoleReport(console)
    label = " ".join(str(p) for p in profiles)
    root = root or default_artifacts_dir(hostname)

    def keep_evidence(evidence: Path, keep_at: Path) -> Path:
        """Copy evidence out of the store (whose entry the next run replaces) into keep_at, in root."""
        claim_tree(root, "artifacts", "--artifacts")
        shutil.copytree(evidence, keep_at, dirs_exist_ok=True)
        return keep_at

    def run(evidence: Path, keep_at: Path | None = None) -> RunResult:
        assert files is not None
        try:
            report.step("choosing the accelerator (a short KVM boot)…")
            choice = choose_accel(request, files.kernel)
            report.note(f"accelerator: {choice.reason}")
            options = TestOptions(uefi=uefi, keep=keep_vm, artifacts=evidence, only=only, builtin=not no_scenarios,
                                  extra=user_scenarios(tests), debug=prompt if debug else None,
                                  overlap=not sequential)
            return LabRun(plan, dhcp6_unit, files, choice, options, report).run(label)
        except KeyboardInterrupt as e:
            # The evidence so far: a store run's would go with its unfinished entry, so it is copied out.
            kept = None
            if evidence.is_dir() and any(p.name != MARKER for p in evidence.iterdir()):
                kept = keep_evidence(evidence, keep_at) if keep_at is not None else evidence
            raise interrupted(e, what=f"imagegen test {label}", artifacts=kept) from None

    def prompt(session: LabSession) -> None:
        """--debug's prompt, its calls logged beside the run's."""
        assert session.artifacts is not None
        interact(*bind(session, CallLog(session.artifacts / CALL_LOG)),
                 end="Ctrl-D ends the prompt; the run goes on and then stops the VM.")

    def once(again: bool, run_dir: Path | None) -> tuple[RunResult, Path, Entry | None]:
        if keep_vm or debug or image_entry is None:
            # A kept VM is for a person to look at, a debugged one was driven by a person, and an image
            # outside the store has no identity to file a verdict under: they run outside the store.
            claimed = claim_tree(root, "artifacts", "--artifacts")
            evidence = run_dir or root
            try:
                return run(evidence), evidence, None
            finally:
                if claimed:
                    release_tree(root)  # a run that kept no evidence leaves no empty directory
        drv = verdict_derivation(image_entry, hostname=hostname, scenarios=chosen, uefi=uefi, lab_plan=plan,
                                 dhcp6_unit=dhcp6_unit, state=state, scripts=scripts)
        entry, result = realise_verdict(st, drv, lambda evidence: run(evidence, run_dir or root), rerun=again)
        console.print(Text(f"verdict: {'reused' if entry.reused else 'stored'} {entry.path}"))
        attach_verdict(st, hostname, image_entry, profile_hash(loaded, state), entry, result)
        evidence = entry.path / ARTIFACTS
        # The next run replaces the store's verdict: a repeated run keeps its own copy of the evidence.
        keep_at = run_dir or artifacts
        if keep_at is not None and evidence.is_dir():
            evidence = keep_evidence(evidence, keep_at)
        return result, evidence, entry

    results: list[RunResult] = []
    repeat_root = root
    for k in range(1, repeat + 1):
        run_dir = None
        if repeat > 1:
            console.rule(f"run {k} of {repeat}")
            run_dir = repeat_root / f"run-{k:02d}"
        result, evidence, verdict_entry = once(rerun or repeat > 1, run_dir)
        results.append(result)
        report.summary(result)
    if repeat > 1:
        report.repeat_summary(results)
        console.print(Text(f"evidence of each run: {repeat_root}/run-NN"))
    for timeline in sorted(evidence.glob("timeline-*.svg")):
        console.print(Text(f"timeline: {timeline}"))
    for screen in sorted(evidence.glob("screen-*.png")):
        console.print(Text(f"last screen: {screen}"))
    if junit is not None:
        # JUnit has no notion of repeats: the last run, whose evidence the store keeps.
        write_junit(result, junit)
    if as_json:
        json.dump({"verdict_path": str(verdict_entry.path) if verdict_entry else None,
                   "image_path": str(image_entry.path) if image_entry else None,
                   "reused": verdict_entry.reused if verdict_entry else False,
                   "passed": all(r.passed for r in results), "verdict": result.to_dict(),
                   **({"repeat": repeat_dict(results)} if repeat > 1 else {})}, sys.stdout, indent=2)
        print()
    if json_file is not None:
        if repeat > 1:
            write_repeat_json(results, json_file)
        else:
            write_json(result, json_file)
    if not all(r.passed for r in results):
        raise typer.Exit(1)


def vm(
    profiles: Profiles,
    accel: AccelOpt = Accel.auto,
    uefi: UefiOpt = False,
    image: ImageOpt = None,
    store: StoreOpt = None,
    interactive: Annotated[bool, typer.Option("--interactive", help="Boot the lab and open a Python prompt "
                                              "with machine and lab bound (docs/testing-api.md) instead "
                                              "of the serial console.")] = False,
    artifacts: Annotated[Path | None, typer.Option("--artifacts", show_default=False,
                                                   help="With --interactive: where screenshots, copies and "
                                                   "the call log go.")] = None,
) -> None:
    """Boot the profile's lab image with its serial console on this terminal (Ctrl-A x quits), or with
    --interactive the whole lab with a Python prompt to drive it."""
    from rich.console import Console
    from rich.text import Text

    from imagegen.profile import load_profiles
    from imagegen.render import resolve_target
    from imagegen.report.artifacts import default_artifacts_dir
    from imagegen.safeoutput import check_tree
    from imagegen.stages.realise import open_store
    from imagegen.vm.accel import choose_accel
    from imagegen.vm.lab import lab_profile, plan_lab
    from imagegen.vm.machine import Machine

    console = Console(stderr=True)
    loaded = load_profiles(profiles)
    plan = plan_lab(lab_profile(loaded))
    root = artifacts or default_artifacts_dir(loaded.profile.image.hostname)
    if interactive:
        check_tree(root, "--artifacts")
    # The entry is kept for as long as the VM runs: its hold keeps gc from the image being booted.
    files, booted = lab_image(loaded, image, console, open_store(store))
    choice = choose_accel(accel.request, files.kernel)
    console.print(Text(f"accelerator: {choice.reason}"))
    if interactive:
        _interactive(lambda: Machine(files, accel=choice.accel, nics=plan.nics, uefi=uefi), plan,
                     resolve_target(loaded.profile.image).layout.dhcp6_unit, root, console,
                     agent_timeout=choice.agent_timeout)
        return
    machine = Machine(files, accel=choice.accel, nics=plan.nics, uefi=uefi)
    s = machine.sockets
    console.print(Text(f"QMP: {s.qmp}   guest agent: {s.agent}   serial log: {s.serial_log}\n"
                       f"wired NIC: QMP id {plan.wired_nic.id}; Ctrl-A x quits, Ctrl-A c toggles the QEMU monitor"))
    rc = machine.interactive()
    if rc != 0:
        raise typer.Exit(rc)


def _interactive(new_machine: Callable[[], Machine], plan: LabPlan, dhcp6_unit: str, root: Path,
                 console: Console, *, agent_timeout: float) -> None:
    """Boot the lab as imagegen test does, hand a prompt to the person, stop the VM when it ends."""
    from rich.text import Text

    from imagegen.interrupt import interrupted
    from imagegen.safeoutput import claim_tree, release_tree
    from imagegen.scenarios.runner import BOOT_ATTEMPTS
    from imagegen.scenarios.session import LabSession
    from imagegen.testing.calls import CallLog
    from imagegen.testing.repl import interact
    from imagegen.testing.scripts import CALL_LOG, bind
    from imagegen.vm.agent import GuestGone

    claimed = claim_tree(root, "artifacts", "--artifacts")
    try:
        for attempt in range(1, BOOT_ATTEMPTS + 1):
            machine = new_machine()
            session = LabSession(machine, plan, dhcp6_unit)
            session.artifacts = root
            with machine:
                console.print(Text("booting the lab VM…"))
                try:
                    session.boot_seconds = session.boot(agent_timeout=agent_timeout)
                except GuestGone as e:
                    # As in imagegen test: under TCG the guest kernel now and then dies patching its own
                    # code at boot, the emulator's fault; one more boot.
                    if attempt == BOOT_ATTEMPTS:
                        raise
                    console.print(Text(f"the VM died while booting, booting it again: {e}"))
                    continue
                except KeyboardInterrupt as e:
                    raise interrupted(e, what="imagegen vm --interactive", artifacts=None) from None
                console.print(Text(f"guest agent answered after {session.boot_seconds:.0f} s; artifacts: {root}"))
                interact(*bind(session, CallLog(root / CALL_LOG)))
                return
    finally:
        if claimed:
            release_tree(root)
