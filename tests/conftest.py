from __future__ import annotations

import importlib.util
import os
import subprocess
from collections.abc import Generator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"

# IMAGEGEN_TEST_NO_MKOSI=1: the run sees no mkosi at all, in this process and in every Python it starts,
# which proves the fast suite needs none. Done at import, before any test module imports imagegen.
NO_MKOSI = bool(os.environ.get("IMAGEGEN_TEST_NO_MKOSI"))
if NO_MKOSI:
    _spec = importlib.util.spec_from_file_location("no_mkosi", Path(__file__).parent / "no_mkosi/sitecustomize.py")
    assert _spec is not None and _spec.loader is not None
    _no_mkosi = importlib.util.module_from_spec(_spec)
    _spec.loader.exec_module(_no_mkosi)
    _no_mkosi.hide_mkosi()

# On CI every check the README promises runs: a skip fails the run. The only skips allowed there are the
# ones a run with mkosi hidden makes on purpose (the same tests run with mkosi in the run before it).
MKOSI_MISSING = "mkosi is not importable"


def on_ci() -> bool:
    return os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def skip_allowed_on_ci(reason: str) -> bool:
    return NO_MKOSI and reason.startswith(MKOSI_MISSING)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--seed", metavar="PATH",
                     help="the seed article (shared/seed/archwiki-wireless-bonding.txt) for the conformance tests; "
                          "default: $IMAGEGEN_SEED, else ../shared/seed/ beside the checkout")


def pytest_configure(config: pytest.Config) -> None:
    given = config.getoption("--seed")
    if given:
        path = Path(given).resolve()
        if not path.is_file():
            raise pytest.UsageError(f"--seed {given}: no such file (give the path of archwiki-wireless-bonding.txt)")
        # seed.py reads it; so do the Pythons the tests start.
        os.environ["IMAGEGEN_SEED"] = str(path)


def _seed_line() -> str:
    from seed import HOW_TO_GIVE, seed_path

    found = seed_path()
    if found is not None:
        return f"seed article: {found}"
    given = os.environ.get("IMAGEGEN_SEED")
    where = f"IMAGEGEN_SEED={given} is not a file" if given else "not beside the checkout (../shared/seed/)"
    return f"seed article: NOT FOUND ({where}): the seed conformance tests skip; {HOW_TO_GIVE}"


def pytest_report_header(config: pytest.Config) -> list[str]:
    lines = [_seed_line()]
    if NO_MKOSI:
        lines.append("mkosi: hidden (IMAGEGEN_TEST_NO_MKOSI=1), as on a machine where it was never installed")
    if on_ci():
        lines.append("CI: a skipped test fails the run")
    return lines


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    line = _seed_line()
    if "NOT FOUND" in line:
        terminalreporter.write_line(line, red=True, bold=True)


def _fail_skip_on_ci(report: pytest.TestReport | pytest.CollectReport) -> None:
    if not (on_ci() and report.skipped) or hasattr(report, "wasxfail"):
        return
    reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
    reason = reason.removeprefix("Skipped: ")
    if skip_allowed_on_ci(reason):
        return
    report.outcome = "failed"
    report.longrepr = (f"skipped on CI, where every check the README promises must run: {reason} "
                       "(`imagegen setup` installs the tools the tests call, --seed PATH gives the article)")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, None, None]:
    outcome = yield
    _fail_skip_on_ci(outcome.get_result())


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector: pytest.Collector) -> Generator[None, None, None]:
    outcome = yield
    _fail_skip_on_ci(outcome.get_result())


@pytest.fixture
def tmpfs(tmp_path: Path) -> Generator[Path, None, None]:
    """A directory on a tmpfs of its own: another file system than the checkout and tmp_path."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mnt = tmp_path / "tmpfs"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "mode=0755", "imagegen-test", str(mnt)], check=True)
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "--lazy", str(mnt)], check=True)


@pytest.fixture
def write_profile(tmp_path: Path):
    """Write TOML text to a profile file in tmp_path and return its path."""

    def write(text: str, name: str = "host.toml") -> Path:
        path = tmp_path / name
        path.write_text(text)
        return path

    return write
