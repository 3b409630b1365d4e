"""The README's Python example runs as printed (the documentation cannot drift from the API)."""

from __future__ import annotations

import re
import runpy
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def python_block(header: str) -> str:
    """The first ```python block after the Markdown header ``header``."""
    text = README.read_text()
    start = text.index(header)
    m = re.search(r"```python\n(.*?)```", text[start:], flags=re.S)
    assert m, f"no python block after {header!r}"
    return m.group(1)


def test_from_python_example_runs(tmp_path, monkeypatch, capsys):
    code = python_block("### From Python")
    script = tmp_path / "tour.py"
    script.write_text(code)
    monkeypatch.chdir(tmp_path)
    runpy.run_path(str(script), run_name="__main__")
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("Packing(N=")
    cap, ocv = map(float, out[2].split())
    assert abs(cap / 164.0 - 1) < 0.10 and 4.3 < ocv < 4.4  # the paper's 164 mAh/g, 4.36 V
    assert (tmp_path / "charged_maps.png").read_bytes()[:4] == b"\x89PNG"
