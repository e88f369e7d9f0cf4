"""Bounded, named waits with back-off: a poll soon after the start (most conditions hold quickly), then
ever rarer ones, never past the deadline."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Generic, TypeVar

from imagegen.testing.errors import WaitTimeout

T = TypeVar("T")

FIRST_DELAY = 0.1
FACTOR = 1.5
MAX_DELAY = 2.0


@dataclass(frozen=True)
class Waited(Generic[T]):
    value: T
    seconds: float
    polls: int


@dataclass(frozen=True)
class Clock:
    """Time as the waits see it; tests give a fake one."""

    now: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep


REAL_CLOCK = Clock()


def delays(first: float = FIRST_DELAY, factor: float = FACTOR, cap: float = MAX_DELAY) -> Iterator[float]:
    """The pauses between polls: first, first·factor, … up to cap."""
    delay = first
    while True:
        yield delay
        delay = min(delay * factor, cap)


def wait_until(what: str, attempt: Callable[[], T | None], timeout: float, *,
               last: Callable[[], str] | None = None, clock: Clock = REAL_CLOCK) -> Waited[T]:
    """Call attempt() until it returns something other than None (or False); raise WaitTimeout naming
    `what`, with last() (what the last poll saw), when timeout seconds pass first. An exception from
    attempt() ends the wait at once: that is how a wait fails early (a unit in state failed)."""
    start = clock.now()
    polls = 0
    for delay in delays():
        polls += 1
        value = attempt()
        if value is not None and value is not False:
            return Waited(value, clock.now() - start, polls)
        left = start + timeout - clock.now()
        if left <= 0:
            raise WaitTimeout(what, clock.now() - start, polls, last() if last else "")
        clock.sleep(min(delay, left))
    raise AssertionError("unreachable")  # delays() never ends


@dataclass(frozen=True)
class Polled(Generic[T]):
    """What a poll found: the condition's value, or None when time ran out first; true when it holds."""

    value: T | None
    seconds: float
    polls: int

    def __bool__(self) -> bool:
        return self.value is not None


def poll(attempt: Callable[[], T | None], timeout: float, interval: float, *,
         clock: Clock = REAL_CLOCK) -> Polled[T]:
    """Call attempt() every interval seconds until it returns something truthy or timeout seconds have
    passed (then one last try), and say what it returned. Unlike wait_until, running out of time is an
    answer, not an error: the caller records it as a check that did not hold."""
    start = clock.now()
    polls = 0
    while True:
        polls += 1
        value = attempt()
        if value:
            return Polled(value, clock.now() - start, polls)
        if clock.now() - start > timeout:
            return Polled(None, clock.now() - start, polls)
        clock.sleep(interval)
