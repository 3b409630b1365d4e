"""esim: electrical simulation of composite positive electrodes of sulfide all-solid-state
lithium batteries, particle by particle, and the SPM maps a microscopist would measure.

Importing esim has no side effects: no logging set-up, no global numpy state.
"""

from importlib.metadata import PackageNotFoundError, version as _version

try:
    __version__ = _version("esim")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0+unknown"

from esim.errors import EsimError, InvalidParameters  # noqa: E402
from esim.params import Params, load_params  # noqa: E402

__all__ = ["EsimError", "InvalidParameters", "Params", "load_params", "__version__"]
