"""A Python prompt with `machine` and `lab` bound to a booted lab, as NixOS's driverInteractive gives:
try a check by hand, then paste it into a test file."""

from __future__ import annotations

import code
import signal
import sys
from collections.abc import Callable

from imagegen.interrupt import Interrupted
from imagegen.testing.errors import TestFailure
from imagegen.testing.lab import Lab
from imagegen.testing.machine import Machine

BANNER = """\
machine and lab are the booted lab (docs/testing-api.md), e.g.
    machine.succeed("ip -br addr show")        lab.peer.succeed("ping -c 1 -W 2 {target}")
"""
STOPS_THE_VM = "Ctrl-D ends the prompt and stops the VM."


class Repl(code.InteractiveConsole):
    """An interactive console that shows a failed check as its message, not as a traceback."""

    def __init__(self, machine: Machine, lab: Lab) -> None:
        super().__init__(locals={"machine": machine, "lab": lab, "__name__": "__imagegen_repl__"})

    def showtraceback(self) -> None:
        error = sys.exc_info()[1]
        if error is not None and _ends_the_prompt(error):
            raise error  # SIGTERM or SIGHUP while a line runs: the command stops
        if isinstance(error, TestFailure):
            self.write(f"{type(error).__name__}: {error}\n")
        else:
            super().showtraceback()


def interact(machine: Machine, lab: Lab, read: Callable[[str], str] = input, *, end: str = STOPS_THE_VM) -> None:
    """Read and run Python lines until end of input; end says what Ctrl-D then does."""
    if read is input and sys.stdin.isatty():
        import readline  # noqa: F401  (line editing and history for input())
    target = lab.plan.probe_target() if lab.plan.static4 else "ADDRESS"
    repl = Repl(machine, lab)
    repl.write(BANNER.format(target=target) + end + "\n")
    more = False
    while True:
        try:
            line = read("... " if more else ">>> ")
        except EOFError:
            repl.write("\n")
            return
        except KeyboardInterrupt as e:
            if _ends_the_prompt(e):
                raise
            # Ctrl-C drops the line being typed, as Python's own prompt does.
            repl.write("\nKeyboardInterrupt\n")
            repl.resetbuffer()
            more = False
            continue
        more = repl.push(line)


def _ends_the_prompt(error: BaseException | None) -> bool:
    """SIGTERM and SIGHUP stop imagegen (and so the VM) even at the prompt; Ctrl-C only drops a line."""
    return isinstance(error, Interrupted) and error.signum != signal.SIGINT
