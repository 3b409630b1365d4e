"""Gwyddion Simple Field export/import: exact round trip, byte layout, and gsffile as an
independent reader and writer."""

from __future__ import annotations

import re

import gsffile
import numpy as np
import pytest

from esim.errors import InputFileError, InvalidParameters
from esim.io.gsf import MAGIC, GsfChannel, read_gsf, write_gsf
from esim.spm.maps import CHANNELS


def _data(shape=(13, 17), seed=0):
    rng = np.random.default_rng(seed)
    return (10 ** rng.uniform(2, 10, size=shape)).astype(np.float32)


def _header_end(raw: bytes) -> tuple[int, int]:
    """(index of the first NUL, index where the data start), counting NULs: the first data
    value must not start with a NUL byte (1.1f is cd cc 8c 3f little-endian)."""
    end = raw.index(b"\0")
    start = end
    while raw[start:start + 1] == b"\0":
        start += 1
    return end, start


def test_round_trip_exact(tmp_path):
    d = _data()
    path = tmp_path / "ssrm.gsf"
    write_gsf(path, d, pixel_size_m=37e-9, z_unit="Ohm", title="SSRM R_app (bias -2 V)",
              x_offset_m=1.5e-6, y_offset_m=-2e-7)
    ch = read_gsf(path)
    assert isinstance(ch, GsfChannel)
    assert ch.data.dtype == np.float32 and ch.data.shape == d.shape
    np.testing.assert_array_equal(ch.data.view(np.uint32), d.view(np.uint32))  # bit-equal
    assert ch.pixel_size_m == 37e-9 and ch.pixel_size_y_m == 37e-9
    assert (ch.z_unit, ch.xy_unit, ch.title) == ("Ohm", "m", "SSRM R_app (bias -2 V)")
    assert (ch.x_offset_m, ch.y_offset_m) == (1.5e-6, -2e-7)
    assert "data=(13, 17)" in repr(ch)


def test_float64_input_is_stored_as_float32(tmp_path):
    d = np.linspace(-1, 1, 12).reshape(3, 4)
    write_gsf(tmp_path / "k.gsf", d, pixel_size_m=1e-8, z_unit="V", title="KPFM")
    np.testing.assert_array_equal(read_gsf(tmp_path / "k.gsf").data, d.astype(np.float32))


def test_non_square_pixels(tmp_path):
    write_gsf(tmp_path / "a.gsf", _data((4, 6)), pixel_size_m=(2e-8, 3e-8), z_unit="A", title="I")
    ch = read_gsf(tmp_path / "a.gsf")
    assert (ch.pixel_size_y_m, ch.pixel_size_m) == (2e-8, 3e-8)


@pytest.mark.parametrize("title", ["T", "TT", "TTT", "TTTT", "TTTTT", "μm-wide ⌀"])
def test_header_alignment_and_lf(tmp_path, title):
    d = _data((5, 3))
    d[0, 0] = 1.1
    path = tmp_path / "x.gsf"
    write_gsf(path, d, pixel_size_m=1e-8, z_unit="V", title=title)
    raw = path.read_bytes()
    assert raw.startswith(MAGIC)
    end, start = _header_end(raw)
    assert start % 4 == 0
    assert 1 <= start - end <= 4
    if end % 4 == 0:
        assert start - end == 4  # an aligned header still gets 4 NULs
    assert len(raw) - start == d.size * 4  # nothing after the data
    header = raw[:end]
    assert b"\r" not in header and header.endswith(b"\n")
    assert read_gsf(path).title == title


def test_all_padding_lengths_occur(tmp_path):
    pads = set()
    for n in range(8):
        path = tmp_path / f"p{n}.gsf"
        write_gsf(path, np.full((2, 2), 1.1), pixel_size_m=1e-8, z_unit="V", title="t" * (n + 1))
        end, start = _header_end(path.read_bytes())
        pads.add(start - end)
    assert pads == {1, 2, 3, 4}


def test_gsffile_reads_esim_file_identically(tmp_path):
    d = _data((9, 11), seed=1)
    path = tmp_path / "cafm.gsf"
    write_gsf(path, d, pixel_size_m=25e-9, z_unit="A", title="C-AFM current", x_offset_m=3e-6)
    data, meta = gsffile.read_gsf(path)
    np.testing.assert_array_equal(data.view(np.uint32), d.view(np.uint32))
    assert meta["XReal"] == pytest.approx(11 * 25e-9, rel=1e-15)
    assert meta["YReal"] == pytest.approx(9 * 25e-9, rel=1e-15)
    assert meta["XOffset"] == 3e-6 and meta["YOffset"] == 0.0
    assert (meta["XYUnits"], meta["ZUnits"], meta["Title"]) == ("m", "A", "C-AFM current")


@pytest.mark.parametrize("name", sorted(CHANNELS))
def test_gsffile_reads_every_exported_channel_title(tmp_path, name):
    """Every channel esim exports (its title and unit) reads back with gsffile, which splits
    header lines at every '=' (an '=' in the KPFM title broke it)."""
    unit, title = CHANNELS[name]
    path = tmp_path / f"{name}.gsf"
    d = _data((4, 5), seed=3)
    write_gsf(path, d, pixel_size_m=1e-8, z_unit=unit, title=title)
    data, meta = gsffile.read_gsf(path)
    np.testing.assert_array_equal(data.view(np.uint32), d.view(np.uint32))
    assert meta["Title"] == title and meta.get("ZUnits", "") == unit


def test_esim_reads_gsffile_file(tmp_path):
    d = _data((6, 10), seed=2)
    path = tmp_path / "ext.gsf"
    gsffile.write_gsf(path, d, {"XReal": 5e-6, "YReal": 3e-6, "XYUnits": "m", "ZUnits": "V",
                                "Title": "from gsffile", "XOffset": 1e-6})
    ch = read_gsf(path)
    np.testing.assert_array_equal(ch.data, d)
    assert ch.pixel_size_m == pytest.approx(5e-7, rel=1e-15)
    assert ch.pixel_size_y_m == pytest.approx(5e-7, rel=1e-15)
    assert (ch.z_unit, ch.title, ch.x_offset_m) == ("V", "from gsffile", 1e-6)


def test_minimal_header_defaults(tmp_path):
    raw = MAGIC + b"XRes=2\nYRes=1\nCustom = hello\n"
    raw += b"\0" * (4 - len(raw) % 4) + np.array([1.5, -2.0], "<f4").tobytes()
    (tmp_path / "m.gsf").write_bytes(raw)
    ch = read_gsf(tmp_path / "m.gsf")
    assert ch.data.tolist() == [[1.5, -2.0]]
    # Gwyddion's defaults: no unit (not metres), extent 1; read_map will not take them as metres
    assert (ch.pixel_size_m, ch.z_unit, ch.xy_unit, ch.title) == (0.5, "", "", "")
    assert not ch.lateral_known
    assert ch.extra == {"Custom": "hello"}


@pytest.mark.parametrize("header, why", [
    (b"XRes=2\nYRes=2\nXReal=1e-6\nYReal=1e-6\nZUnits=Ohm\n", "XYUnits ''"),  # no XYUnits
    (b"XRes=2\nYRes=2\nXYUnits=\nXReal=2\nYReal=2\nZUnits=Ohm\n", "XYUnits ''"),
    (b"XRes=2\nYRes=2\nXYUnits=m\nZUnits=Ohm\n", "missing"),  # no extent
    (b"XRes=2\nYRes=2\nXYUnits=m\nXReal=0\nYReal=1e-6\nZUnits=Ohm\n", "missing"),
])
def test_a_gsf_without_a_lateral_size_in_metres_needs_one_given(tmp_path, header, why):
    """Gwyddion reads a missing XYUnits as no unit and a missing XReal as 1: neither is a
    pixel size in metres (it was read as 1 m per pixel, silently)."""
    from esim.io.maps import read_map

    raw = MAGIC + header
    raw += b"\0" * (4 - len(raw) % 4) + np.arange(4, dtype="<f4").tobytes()
    f = tmp_path / "m.gsf"
    f.write_bytes(raw)
    with pytest.raises(InputFileError, match=f"m.gsf: the file gives no lateral size.*{why}"
                                             ".*--pixel-size-m"):
        read_map(f)
    ch = read_map(f, pixel_size_m=3e-8)
    assert (ch.pixel_size_m, ch.pixel_size_y_m, ch.z_unit) == (3e-8, 3e-8, "Ohm")


def test_a_negative_extent_is_taken_by_its_size(tmp_path):
    from esim.io.maps import read_map

    raw = MAGIC + b"XRes=2\nYRes=2\nXYUnits=m\nXReal=-1e-6\nYReal=1e-6\n"
    raw += b"\0" * (4 - len(raw) % 4) + np.arange(4, dtype="<f4").tobytes()
    (tmp_path / "n.gsf").write_bytes(raw)
    assert read_map(tmp_path / "n.gsf").pixel_size_m == pytest.approx(5e-7)


def test_overwrite_is_atomic_and_leaves_no_temp_files(tmp_path):
    path = tmp_path / "a.gsf"
    write_gsf(path, np.ones((2, 2)), pixel_size_m=1e-8, z_unit="V", title="first")
    with pytest.raises(InvalidParameters):
        write_gsf(path, np.full((2, 2), np.nan), pixel_size_m=1e-8, z_unit="V", title="bad")
    assert read_gsf(path).title == "first"
    write_gsf(path, np.zeros((2, 2)), pixel_size_m=1e-8, z_unit="V", title="second")
    assert read_gsf(path).title == "second"
    assert [p.name for p in tmp_path.iterdir()] == ["a.gsf"]


@pytest.mark.parametrize("mutate, match", [
    (lambda raw: b"", "magic"),
    (lambda raw: b"Gwyddion Simple Field 2.0\n" + raw[len(MAGIC):], "magic"),
    (lambda raw: raw[:-1], "bytes of float32"),
    (lambda raw: raw + b"\0\0\0\0", "bytes of float32"),
    (lambda raw: raw.replace(b"XRes = 3\n", b"XRes = x\n"), "XRes"),
    (lambda raw: raw.replace(b"YRes = 2\n", b"Yres = 2\n"), "YRes"),
    (lambda raw: re.sub(rb"XReal = (\S+)", lambda m: b"XReal = " + b"z" * len(m[1]), raw), "XReal"),
    (lambda raw: raw[:raw.index(b"\0")], "NUL"),
])
def test_corrupt_file_names_it(tmp_path, mutate, match):
    path = tmp_path / "c.gsf"
    write_gsf(path, np.ones((2, 3)), pixel_size_m=1e-8, z_unit="V", title="t")
    path.write_bytes(mutate(path.read_bytes()))
    with pytest.raises(InputFileError, match=match) as info:
        read_gsf(path)
    assert "c.gsf" in str(info.value)


def test_missing_file_names_it(tmp_path):
    with pytest.raises(InputFileError, match="nothere.gsf"):
        read_gsf(tmp_path / "nothere.gsf")


@pytest.mark.parametrize("kwargs, match", [
    (dict(data=np.ones((2, 2, 2))), "data"),
    (dict(data=np.ones((0, 3))), "data"),
    (dict(data=np.array([[np.inf]])), "data"),
    (dict(data=np.array([[1e39]])), "float32"),
    (dict(data=np.array([["a"]])), "data"),
    (dict(pixel_size_m=-1e-9), "pixel_size_m"),
    (dict(pixel_size_m=float("nan")), "pixel_size_m"),
    (dict(pixel_size_m=(1e-9,)), "pixel_size_m"),
    (dict(z_unit="Ohm\nXRes = 9"), "z_unit"),
    (dict(title="a\0b"), "title"),
    (dict(title=" padded"), "title"),
    (dict(title="V_CPD' = V_CPD + V_OCV"), "title"),
    (dict(x_offset_m=float("inf")), "x_offset_m"),
])
def test_bad_write_arguments(tmp_path, kwargs, match):
    args = dict(data=np.ones((2, 2)), pixel_size_m=1e-8, z_unit="V", title="t")
    args.update(kwargs)
    data = args.pop("data")
    with pytest.raises(InvalidParameters, match=match):
        write_gsf(tmp_path / "bad.gsf", data, **args)
    assert not (tmp_path / "bad.gsf").exists()
