"""The ``huisheng`` command line (``kernel.cli.main:main``) and what its commands share.

Nothing here imports eventlet or nameko: only ``huisheng service NAME`` (a child) loads the runner.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Sequence


def say(message: str) -> None:
    """Progress for the user, on stdout."""
    print(f"huisheng: {message}", flush=True)


def complain(message: str) -> None:
    """Errors for the user, on stderr."""
    print(f"huisheng: {message}", file=sys.stderr, flush=True)


def table(rows: Sequence[Sequence[str]], right: Iterable[int] = ()) -> list[str]:
    """Columns padded to their widest cell; the ``right`` columns (numbers) right-aligned.

    >>> table([("NAME", "N"), ("alpha", "12")], right=[1])
    ['NAME    N', 'alpha  12']
    """
    right = set(right)
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return ["  ".join(cell.rjust(w) if i in right else cell.ljust(w)
                      for i, (cell, w) in enumerate(zip(row, widths, strict=True))).rstrip() for row in rows]
