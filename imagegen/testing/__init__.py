"""The test API of `imagegen test`: a Machine and a Lab that checks written in plain Python drive, and the
Results a check records named checks and figures in. The built-in scenarios (imagegen.scenarios.catalog)
are written on exactly this.

    def test_static_address(machine: Machine, lab: Lab) -> None:
        machine.wait_for_unit("master@bond0.service")
        assert "192.168.0.2/24" in machine.succeed("ip -br addr show bond0")
        lab.peer.succeed("ping -c 3 -W 2 192.168.0.2")

docs/testing-api.md shows the whole of it; the docstrings here are the reference.
"""

from imagegen.testing.errors import CommandFailed, TestFailure, UnitFailed, WaitTimeout
from imagegen.testing.lab import Lab, Outage, Probe
from imagegen.testing.machine import ClockOffset, Machine, Peer
from imagegen.testing.results import CheckFailed, NotApplicable, Results
from imagegen.testing.waits import Polled
from imagegen.vm.agent import AgentError
from imagegen.vm.lab import LabPlan, SecondBond

__all__ = ["AgentError", "CheckFailed", "ClockOffset", "CommandFailed", "Lab", "LabPlan", "Machine", "NotApplicable",
           "Outage", "Peer", "Polled", "Probe", "Results", "SecondBond", "TestFailure", "UnitFailed", "WaitTimeout"]
