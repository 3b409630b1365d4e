"""Exceptions raised by esim.

Every error that a user can cause (bad parameters, unreadable files, a structure that does
not conduct) derives from :class:`EsimError`.  The CLI turns these into a one-line message and
exit status 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class EsimError(Exception):
    """Base class of all expected esim errors."""


class InvalidParameters(EsimError, ValueError):
    """A parameter is unknown, of the wrong type or out of its allowed range.

    The message names the field (``section.key``) and the allowed range.
    """


class InputFileError(EsimError, OSError):
    """An input file is missing, unreadable or not what esim expects; the message names it."""


class NotPercolating(EsimError):
    """No conducting path joins the terminals of a network."""


class SolverDidNotConverge(EsimError):
    """An iterative or Newton solve failed to reach its tolerance."""


class PackingFailed(EsimError):
    """The packing generator could not reach its targets (density, composition, overlap)."""
