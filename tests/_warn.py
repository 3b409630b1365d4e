"""A subcommand body that warns as numpy does (tests/test_cli.py runs it in a subprocess)."""

import numpy as np


def run(args):
    """numpy's 'Mean of empty slice', from a source line the warning would show."""
    np.nanmean(np.full(3, np.nan))
    return 0
