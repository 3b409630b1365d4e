"""Progress reporting: bars only on a terminal, silenced by ``quiet`` (peer lesson 6)."""

from __future__ import annotations

import sys
from typing import Any


def progress(total: int | None = None, desc: str = "", quiet: bool = False, **kw: Any):
    """A tqdm bar on stderr, disabled when stderr is not a terminal or ``quiet`` is set."""
    from tqdm.auto import tqdm

    disable = quiet or not sys.stderr.isatty()
    return tqdm(total=total, desc=desc, disable=disable, leave=False, file=sys.stderr, **kw)


def warnings_as_log_lines(quiet: bool):
    """Route Python warnings (numpy's RuntimeWarnings, say) to the ``py.warnings`` logger as one
    line each, ``warning: Category: message (file:line)``, silenced when ``quiet``.  Returns a
    function that puts back what was there (the CLI calls it on exit; workers do not)."""
    import logging
    import warnings

    def one_line(message, category, filename, lineno, line=None):
        from pathlib import Path

        return f"warning: {category.__name__}: {message} ({Path(filename).name}:{lineno})"

    logger = logging.getLogger("py.warnings")
    shown, fmt, level = warnings.showwarning, warnings.formatwarning, logger.level
    logging.captureWarnings(True)
    logger.setLevel(logging.ERROR if quiet else logging.WARNING)
    warnings.formatwarning = one_line

    def restore() -> None:
        warnings.formatwarning = fmt
        logger.setLevel(level)
        if warnings.showwarning is not shown:  # captured here, not by the host before
            logging.captureWarnings(False)

    return restore
