"""The order of a run's steps. Pure, no I/O.

Both stacks are up at once, and their loaded phases alternate, so a naive figure
and the platform figure it is compared with are measured minutes apart at most:
on a shared machine the neighbours' load drifts, and comparing runs taken far
apart would compare the neighbours. With ``abba`` each sustained rate is
measured twice per stack, in the order naive, platform, platform, naive, which
cancels a load that rises or falls steadily during the run.

>>> [f"{s.stack}.{s.phase}" for s in build_schedule(Config(connections=(8,), abba=False))][:4]
['naive.warmup', 'platform.warmup', 'naive.c8', 'platform.c8']
"""

from __future__ import annotations

from dataclasses import dataclass

NAIVE, PLATFORM = "naive", "platform"


@dataclass(frozen=True)
class Config:
    """How long and how much: the full run (about 7 minutes) or the quick one (under 2)."""

    quick: bool = False
    sustained_seconds: float = 12
    paced_seconds: float = 30
    warmup_seconds: float = 4
    drain_timeout: float = 60
    backlog_events: int = 10_000
    baseline_messages: int = 5_000
    baseline_inserts: int = 5_000
    baseline_batches: int = 20
    connections: tuple[int, ...] = (8, 32)
    paced_rate: float = 100.0
    light_rate: float = 40.0  # a rate the platform sustains, to tell a slow path from an overloaded one
    abba: bool = True
    profile_seconds: float = 0.0


FULL = Config()
QUICK = Config(quick=True, sustained_seconds=4, paced_seconds=5, warmup_seconds=2, drain_timeout=15,
               backlog_events=2_000, baseline_messages=2_000, baseline_inserts=2_000, baseline_batches=5,
               abba=False, light_rate=0.0)


@dataclass(frozen=True)
class Step:
    """One thing to do to one stack; ``phase`` is where its result goes in the raw results."""

    stack: str
    phase: str
    action: str  # warm_up, sustained, paced, backlog, memory, profile or down
    connections: int | None = None
    rate: float | None = None  # of a paced step; None: the config's paced_rate
    tap: bool = False  # bind the event tap around it (it costs the broker an extra queue)
    slot: int | None = None  # the n-th of several runs combined into one figure


def sustained_steps(config: Config, connections: int) -> list[Step]:
    """The runs of one sustained figure: naive, platform (, platform, naive)."""
    order = (NAIVE, PLATFORM, PLATFORM, NAIVE) if config.abba else (NAIVE, PLATFORM)
    seen: dict[str, int] = {}
    steps = []
    for stack in order:
        seen[stack] = seen.get(stack, 0) + 1
        steps.append(Step(stack, f"c{connections}", "sustained", connections=connections, slot=seen[stack]))
    return steps


def build_schedule(config: Config) -> list[Step]:
    """Every step of a run, in order."""
    steps = [Step(NAIVE, "warmup", "warm_up"), Step(PLATFORM, "warmup", "warm_up")]
    for connections in config.connections:
        steps += sustained_steps(config, connections)
    steps += [Step(NAIVE, "paced", "paced"), Step(PLATFORM, "paced", "paced", tap=True)]
    if config.light_rate:
        steps += [Step(kind, "light", "paced", rate=config.light_rate, tap=kind == PLATFORM)
                  for kind in (NAIVE, PLATFORM)]
    steps += [Step(NAIVE, "memory", "memory"), Step(NAIVE, "down", "down")]
    steps += [Step(PLATFORM, "backlog", "backlog", tap=True), Step(PLATFORM, "memory", "memory")]
    if config.profile_seconds:
        steps.append(Step(PLATFORM, "profile", "profile"))
    return steps


def only(steps: list[Step], phases: set[str]) -> list[Step]:
    """Just the steps of some phases (for experiments: ``--only backlog``); stopping a stack is kept.

    >>> [s.phase for s in only(build_schedule(QUICK), {"backlog"})]
    ['down', 'backlog']
    """
    return [step for step in steps if step.phase in phases or step.action == "down"]
