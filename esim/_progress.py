"""Progress reporting: bars only on a terminal, silenced by ``quiet`` (peer lesson 6)."""

from __future__ import annotations

import sys
from typing import Any


def progress(total: int | None = None, desc: str = "", quiet: bool = False, **kw: Any):
    """A tqdm bar on stderr, disabled when stderr is not a terminal or ``quiet`` is set."""
    from tqdm.auto import tqdm

    disable = quiet or not sys.stderr.isatty()
    return tqdm(total=total, desc=desc, disable=disable, leave=False, file=sys.stderr, **kw)
