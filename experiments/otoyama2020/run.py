"""Reproduce Otoyama et al., Research Square preprint (2020), doi 10.21203/rs.3.rs-57856/v1.

    python experiments/otoyama2020/run.py results/ [--quick]

Same as ``esim reproduce otoyama2020 -o results/``; the experiment itself is
:func:`esim.reproduce.run_otoyama2020` (in the package, so the installed command can run it).
"""

import sys

from esim.cli.main import main

if __name__ == "__main__":
    out = sys.argv[1] if len(sys.argv) > 1 and not sys.argv[1].startswith("-") else "results"
    sys.exit(main(["reproduce", "otoyama2020", "-o", out, *[a for a in sys.argv[1:] if a != out]]))
