"""Figures, targets, the printed table and the results document. Pure, no I/O.

A :class:`Figure` is one row: a measured value, the baseline it is compared
with (measured in the same run), their ratio and, if the row has one, a target.

>>> row = Figure("creation_c8", "ticket creation, 8 conn", 300.0, "req/s", baseline=400.0,
...              baseline_label="naive", target=Target.ratio_at_least(0.75))
>>> round(row.ratio, 2), row.passed, row.target.text
(0.75, True, 'ratio ≥ 0.75')
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from bench.stats import ratio

SCHEMA_VERSION = 1
COLUMNS = ("figure", "value", "baseline", "ratio", "target", "result")


@dataclass(frozen=True)
class Target:
    """What a row must achieve: on its ratio to the baseline, or on its absolute value."""

    on: str  # "ratio" or "value"
    bound: str  # "min" (at least) or "max" (at most)
    threshold: float
    unit: str = ""

    @classmethod
    def ratio_at_least(cls, threshold: float) -> Target:
        return cls("ratio", "min", threshold)

    @classmethod
    def at_most(cls, threshold: float, unit: str = "") -> Target:
        return cls("value", "max", threshold, unit)

    @classmethod
    def at_least(cls, threshold: float, unit: str = "") -> Target:
        return cls("value", "min", threshold, unit)

    def check(self, value: float | None, ratio_: float | None) -> bool | None:
        """True or False, or ``None`` when the figure needed was not measured."""
        subject = ratio_ if self.on == "ratio" else value
        if subject is None:
            return None
        return subject >= self.threshold if self.bound == "min" else subject <= self.threshold

    @property
    def text(self) -> str:
        sign = "≥" if self.bound == "min" else "≤"
        what = "ratio " if self.on == "ratio" else ""
        unit = f" {self.unit}" if self.unit else ""
        return f"{what}{sign} {_number(self.threshold)}{unit}"


@dataclass(frozen=True)
class Figure:
    """One row of the table and of ``latest.json``."""

    key: str
    label: str
    value: float | None
    unit: str
    baseline: float | None = None
    baseline_label: str = ""
    target: Target | None = None
    note: str = ""
    details: Mapping = field(default_factory=dict)

    @property
    def ratio(self) -> float | None:
        return ratio(self.value, self.baseline)

    @property
    def passed(self) -> bool | None:
        return self.target.check(self.value, self.ratio) if self.target else None

    def to_dict(self) -> dict:
        return {
            "key": self.key, "label": self.label, "value": self.value, "unit": self.unit,
            "baseline": self.baseline, "baseline_label": self.baseline_label, "ratio": self.ratio,
            "target": self.target.text if self.target else None, "passed": self.passed,
            "note": self.note, "details": dict(self.details),
        }


def _number(value: float | None) -> str:
    """Compact and readable: 2,431 / 97.3 / 0.753 / 1.2e-05."""
    if value is None:
        return "-"
    magnitude = abs(value)
    if magnitude >= 1000:
        return f"{value:,.0f}"
    if magnitude >= 100:
        return f"{value:.0f}"
    if magnitude >= 10:
        return f"{value:.1f}"
    if magnitude >= 0.01 or value == 0:
        return f"{value:.3g}" if magnitude < 1 else f"{value:.2f}"
    return f"{value:.2g}"


def _result(passed: bool | None, has_target: bool) -> str:
    if not has_target:
        return ""
    return {True: "PASS", False: "FAIL", None: "n/a"}[passed]


def row_cells(figure: Figure) -> tuple[str, ...]:
    """The cells of one printed row."""
    value = f"{_number(figure.value)} {figure.unit}".strip() if figure.value is not None else "-"
    baseline = "-"
    if figure.baseline is not None:
        baseline = f"{_number(figure.baseline)} {figure.unit}".strip()
        if figure.baseline_label:
            baseline += f" ({figure.baseline_label})"
    target = figure.target.text if figure.target else ""
    return (figure.label, value, baseline, _number(figure.ratio) if figure.ratio is not None else "",
            target, _result(figure.passed, figure.target is not None))


def render_table(figures: Sequence[Figure], title: str = "") -> str:
    """A plain-text table (also valid Markdown): figure, value, baseline, ratio, target, result."""
    rows = [COLUMNS, *(row_cells(figure) for figure in figures)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS))]

    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(cell.ljust(width) for cell, width in zip(cells, widths, strict=True)) + " |"

    ruler = "|" + "|".join("-" * (width + 2) for width in widths) + "|"
    lines = [line(rows[0]), ruler, *(line(row) for row in rows[1:])]
    notes = [f"note — {figure.label}: {figure.note}" for figure in figures if figure.note]
    return "\n".join(([title, ""] if title else []) + lines + ([""] + notes if notes else []))


def target_summary(figures: Iterable[Figure]) -> dict[str, bool | None]:
    """Each targeted row's key and whether it passed."""
    return {figure.key: figure.passed for figure in figures if figure.target is not None}


def results_document(figures: Sequence[Figure], *, machine: Mapping, run: Mapping,
                     creation_ratio: float | None, raw: Mapping) -> dict:
    """What ``bench/results/latest.json`` holds: every figure, the machine, the run and raw data."""
    targets = target_summary(figures)
    return {
        "schema_version": SCHEMA_VERSION,
        "run": dict(run),
        "machine": dict(machine),
        "creation_ratio": creation_ratio,
        "targets": targets,
        "all_targets_passed": bool(targets) and all(targets.values()),
        "figures": [figure.to_dict() for figure in figures],
        "raw": dict(raw),
    }


CPU_PHASES = ("c8", "c32", "paced", "light", "backlog")
CPU_ORDER = ("gateway", "tickets", "notify", "volunteers", "supervisor", "secantus", "rabbitmq", "harness",
             "loadgen")


def render_cpu_table(raw: Mapping) -> str:
    """Cores used by each process in each loaded phase (1.00 = one core), and by everything else.

    >>> print(render_cpu_table({"naive": {"c8": {"cpu": {"cores": {"gateway": 0.5}, "other_cores": 0.1,
    ...                                                  "machine_busy_cores": 0.6}}}}))
    | phase    | gateway | others | machine |
    |----------|---------|--------|---------|
    | naive c8 | 0.50    | 0.10   | 0.60    |
    """
    phases = [(f"{stack} {phase}", raw[stack][phase]["cpu"]) for stack in ("naive", "platform")
              for phase in CPU_PHASES if isinstance(raw.get(stack, {}).get(phase), Mapping)
              and "cpu" in raw[stack][phase]]
    seen = {name for _, cpu in phases for name in cpu["cores"]}
    names = [name for name in CPU_ORDER if name in seen] + sorted(seen - set(CPU_ORDER))
    header = ("phase", *names, "others", "machine")
    rows = [header]
    for label, cpu in phases:
        cores = [cpu["cores"].get(name) for name in names]
        rows.append((label, *(f"{value:.2f}" if value is not None else "-" for value in cores),
                     f"{cpu['other_cores']:.2f}", f"{cpu['machine_busy_cores']:.2f}"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = ["| " + " | ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) + " |" for row in rows]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)
