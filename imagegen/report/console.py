"""Live progress on the terminal while scenarios run, and the summary table at the end."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape
from rich.status import Status
from rich.table import Table
from rich.text import Text

from imagegen.report.model import Check, RunResult, ScenarioResult
from imagegen.report.repeat import tally


class ConsoleReport:
    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console(stderr=True)
        self._status: Status | None = None

    def note(self, text: str) -> None:
        self.console.print(f"[dim]{escape(text)}[/dim]")

    def step(self, text: str) -> None:
        """What is happening now (booting, waiting); replaces the previous step on a terminal."""
        if self._status is None:
            self._status = self.console.status(text)
            self._status.start()
        else:
            self._status.update(text)

    def pause(self) -> None:
        """End the live step line, so that something else (a prompt) can have the terminal."""
        self._end_step()

    def _end_step(self) -> None:
        if self._status is not None:
            self._status.stop()
            self._status = None

    def start_scenario(self, name: str, title: str) -> None:
        self._end_step()
        self.console.print(f"[bold]▶ {escape(title)}[/bold] [dim]({escape(name)})[/dim]")
        self.step(f"{title}…")

    def check(self, check: Check) -> None:
        mark = "[green]✓[/green]" if check.ok else "[red]✗[/red]"
        self.console.print(f"  {mark} {escape(check.name)}" +
                           (f" [dim]— {escape(check.detail)}[/dim]" if check.detail else ""))

    def end_scenario(self, result: ScenarioResult) -> None:
        self._end_step()
        if result.skipped:
            verdict = "[yellow]SKIP[/yellow]"
        elif result.passed:
            verdict = "[green]PASS[/green]"
        else:
            verdict = "[red]FAIL[/red]"
        figures = ", ".join(f"{k}={v}" for k, v in result.figures.items())
        self.console.print(f"  {verdict} in {result.seconds:.0f} s" +
                           (f" [dim]{escape(figures)}[/dim]" if figures else ""))
        if result.error:
            colour = "yellow" if result.skipped else "red"
            self.console.print(f"  [{colour}]{escape(result.error)}[/{colour}]")

    def summary(self, result: RunResult) -> None:
        self._end_step()
        table = Table(title=Text(f"imagegen test {result.profile} — {result.accel.upper()}, {result.boot} boot"))
        table.add_column("scenario")
        table.add_column("result")
        table.add_column("checks", justify="right")
        table.add_column("time", justify="right")
        table.add_column("figures")
        for s in result.scenarios:
            verdict = ("[yellow]skip[/yellow]" if s.skipped else
                       "[green]pass[/green]" if s.passed else "[red]FAIL[/red]")
            ok = sum(c.ok for c in s.checks)
            table.add_row(Text(s.name), verdict, f"{ok}/{len(s.checks)}", f"{s.seconds:.0f} s",
                          Text("\n".join(f"{k}={v}" for k, v in s.figures.items())))
        self.console.print(table)
        self.console.print(Text(f"accelerator: {result.accel_reason}"))
        if result.artifacts:
            self.console.print(f"[bold]artifacts (serial log, journals, /proc/net/bonding):[/bold] "
                               f"{escape(result.artifacts)}")
        self.console.print("[green bold]all scenarios passed[/green bold]" if result.passed else
                           "[red bold]some scenarios failed[/red bold]")

    def repeat_summary(self, results: list[RunResult]) -> None:
        """How often each scenario passed over several runs, and the spread of its figures."""
        self._end_step()
        table = Table(title=Text(f"imagegen test --repeat {len(results)}: {results[0].profile}"))
        table.add_column("scenario")
        table.add_column("passed", justify="right")
        table.add_column("failed checks")
        table.add_column("figures: median (min–max)")
        for t in tally(results):
            colour = "green" if t.passed == t.ran else "red"
            table.add_row(Text(t.name), f"[{colour}]{t.passed}/{t.ran}[/{colour}]",
                          Text("\n".join(f"{n}× {c}" for c, n in t.failed_checks.items())),
                          Text("\n".join(f"{k}={v}" for k, v in t.figures.items())))
        self.console.print(table)
        ok = sum(r.passed for r in results)
        self.console.print(f"[green bold]{ok}/{len(results)} runs passed[/green bold]" if ok == len(results)
                           else f"[red bold]{ok}/{len(results)} runs passed[/red bold]")
