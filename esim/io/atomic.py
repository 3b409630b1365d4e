"""Atomic file writes: write a temporary file beside the target, then rename it into place.

A crash or a bad input never leaves a half-written result at the target path, and an existing
file there survives until the new one is complete.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator

from esim.errors import InvalidParameters

__all__ = ["atomic_path", "atomic_write_text", "atomic_write_bytes", "atomic_write_json",
           "json_safe", "check_output_dir", "check_output_file", "check_not_input"]


def _check_parents(path: Path, field: str) -> None:
    """The nearest existing ancestor of ``path`` must be a folder we can write into."""
    for parent in path.absolute().parents:
        if parent.exists():
            if not parent.is_dir():
                raise InvalidParameters(f"{field}: {path}: {parent} is a file, not a folder")
            if not os.access(parent, os.W_OK | os.X_OK):
                raise InvalidParameters(f"{field}: {path}: cannot write into {parent}")
            return


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def check_not_input(outputs, inputs, field: str = "--output") -> None:
    """Refuse, before any work, to write any of ``outputs`` (paths) over one of ``inputs``
    (paths or None): ``esim charge pk.h5 -o pk.h5`` replaced its packing by the charge."""
    for o in outputs:
        for i in inputs:
            if i is not None and _same_file(Path(o), Path(i)):
                raise InvalidParameters(f"{field}: {o} is the input {i}; esim does not write "
                                        "over its input: choose another path")


#: What esim draws figures as (the suffix picks the format)
FIGURE_SUFFIXES = (".png", ".pdf", ".svg")


#: The file each command's output folder is known by, and the command (``check_output_dir``)
OUTPUT_MARKERS = {"sweep.json": "esim sweep", "manifest.json": "esim dataset",
                  "compare.json": "esim compare", "report.json": "esim reproduce",
                  "solve.json": "esim solve", "spm.h5": "esim spm (or a dataset state)"}


def check_output_dir(path: str | os.PathLike, field: str = "--outdir", *,
                     subfolders: tuple[str, ...] = (), files: tuple[str, ...] = (),
                     marker: str | None = None) -> Path:
    """Check, before any work, that ``path`` can be made or used as an output folder; raise
    :class:`~esim.errors.InvalidParameters` naming ``field`` if it is a file or lies under one,
    or if its nearest existing folder is not writable; and, in an existing folder, if one of the
    ``subfolders`` it will write is a file or one of the ``files`` a folder, or (``marker``: the
    calling command's own entry of :data:`OUTPUT_MARKERS`) if the folder holds another command's
    output and one of ``files`` would replace a file of it.  Creates nothing."""
    path = Path(path)
    if path.exists() and path.is_dir() and marker is not None and not (path / marker).is_file():
        others = [m for m in OUTPUT_MARKERS if m != marker and (path / m).is_file()]
        clash = [f for f in files if (path / f).exists() and f not in OUTPUT_MARKERS]
        if others and clash:
            raise InvalidParameters(
                f"{field}: {path} holds the output of {OUTPUT_MARKERS[others[0]]} "
                f"({others[0]}); writing {clash[0]} there would replace its file: choose "
                "another folder")
    if path.exists():
        if not path.is_dir():
            raise InvalidParameters(f"{field}: {path} exists and is not a folder")
        if not os.access(path, os.W_OK | os.X_OK):
            raise InvalidParameters(f"{field}: cannot write into {path}")
        for name in subfolders:
            if (path / name).exists() and not (path / name).is_dir():
                raise InvalidParameters(f"{field}: {path / name} exists and is not a folder "
                                        "(results are written into it)")
        for name in files:
            if (path / name).is_dir():
                raise InvalidParameters(f"{field}: {path / name} is a folder; it would be "
                                        "overwritten by a file")
        return path
    _check_parents(path, field)
    return path


def check_output_file(path: str | os.PathLike, field: str = "--output",
                      suffixes: tuple[str, ...] = ()) -> Path:
    """Check, before any work, that a result can be written to the file ``path`` (atomically,
    beside it): not a folder, not under a file, in a writable folder, with one of ``suffixes``
    (lower case, e.g. ``(".h5", ".hdf5")``) when given.  Creates nothing."""
    path = Path(path)
    if suffixes and path.suffix.lower() not in suffixes:
        raise InvalidParameters(f"{field}: expected a {' or '.join(suffixes)} path, got {path}")
    if path.is_dir():
        raise InvalidParameters(f"{field}: {path} is a folder; give a file name")
    _check_parents(path, field)
    return path


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = ".tmp") -> Iterator[Path]:
    """Yield a temporary path in the target's folder; rename it to ``path`` on success.

    On an exception the temporary file is removed and the target is left untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp_path, 0o666 & ~umask)  # mkstemp makes 0600; results are ordinary files
    try:
        yield tmp_path
        try:
            os.replace(tmp_path, path)
        except IsADirectoryError:  # name the target, not the hidden temporary file
            raise InvalidParameters(f"{path} is a folder; it would be overwritten by a "
                                    "file") from None
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write UTF-8 ``text`` to ``path`` atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))


def json_safe(v: Any) -> Any:
    """``v`` with every non-finite float (NaN, inf) inside dicts and lists replaced by None, so
    that any JSON parser reads the result (``json`` would write the invalid ``NaN``)."""
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, dict):
        return {k: json_safe(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [json_safe(x) for x in v]
    return v


def atomic_write_json(path: str | os.PathLike, obj: Any, indent: int = 2) -> None:
    """Write ``obj`` as JSON (non-finite floats as null) to ``path`` atomically."""
    atomic_write_text(path, json.dumps(json_safe(obj), indent=indent) + "\n")
