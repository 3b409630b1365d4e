"""Typed, validated parameter sets, loaded from and saved to TOML.

A parameter set is a frozen dataclass of sections; each section is a frozen dataclass of
scalar fields.  Every field carries, in its metadata:

- ``unit``: the SI unit of the value ("1" for dimensionless, "" for text and flags);
- ``range``: the allowed closed interval ``(lo, hi)`` (``None`` for an open end), or ``choices``;
- ``source``: the literature source of the default, or the stated reason for it.

TOML keys carry their unit in the name where the quantity has one (``electrode_thickness_m``),
so a file reads unambiguously without this module.

Examples
--------
>>> from esim.params import Params
>>> p = Params()
>>> p.structure.electrode_thickness_m
5e-05
>>> p2 = p.replace(structure={"seed": 7})
>>> p2.structure.seed
7
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np

from esim._fields import param
from esim.errors import InputFileError, InvalidParameters

__all__ = [
    "MaterialsParams",
    "NetworkParams",
    "PackingParams",
    "Params",
    "load_params",
    "params_from_dict",
    "params_to_toml",
    "describe_field",
    "parse_overrides",
]


# ----------------------------------------------------------------------------------------------
# Sections
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PackingParams:
    """Structure of the composite electrode: particle sizes, composition, box, packing algorithm.

    NMC111 (LiNi1/3Mn1/3Co1/3O2) is the hard active material; Li3PS4 glass (75Li2S-25P2S5) is the
    soft solid electrolyte (SE), which may overlap NMC and SE as the glass deforms when pressed.
    """

    seed: int = param(20200824, unit="", range=(0, 2**63 - 1),
                      source="any fixed integer; the default is the reference paper's posting date")
    box_x_m: float = param(40e-6, unit="m", range=(1e-6, 1e-2),
                           source="lateral period; 40 um holds ~500 NMC particles of 5 um, "
                                  "enough for a 15 x 15 um imaging window with margin")
    box_y_m: float = param(40e-6, unit="m", range=(1e-6, 1e-2),
                           source="lateral period, same reasoning as box_x_m")
    electrode_thickness_m: float = param(
        50e-6, unit="m", range=(1e-6, 1e-2),
        source="Otoyama et al., Research Square preprint rs-57856 (2020): 'the 50 um thick "
               "electrode layer'; 11 mg composite on a 10 mm pellet")
    z_boundary: str = param("walls", unit="", choices=("walls", "periodic"),
                            source="walls: current collector at z=0, SE separator at z=L (the "
                                   "electrode); periodic: bulk test boxes without walls")
    nmc_d50_m: float = param(5e-6, unit="m", range=(1e-8, 1e-3),
                             source="~5 um NMC of the reference group (materials_literature.md "
                                    "[S]); Bielefeld et al., J. Phys. Chem. C 123, 1626 (2019) use "
                                    "5 um [S]")
    nmc_gsd: float = param(1.25, unit="1", range=(1.0, 3.0),
                           source="geometric standard deviation of the lognormal diameter; 1.25 is "
                                  "a typical narrow commercial NMC (assumption, not measured here)")
    se_d50_m: float = param(3e-6, unit="m", range=(1e-8, 1e-3),
                            source="'a few um' glass after milling; 3 um as in Bielefeld et al., "
                                   "J. Phys. Chem. C 123, 1626 (2019) [S]")
    se_gsd: float = param(1.4, unit="1", range=(1.0, 3.0),
                          source="milled glass is broader than NMC (assumption)")
    size_cutoff_sigmas: float = param(2.5, unit="1", range=(0.5, 6.0),
                                      source="lognormal truncated at +-2.5 sigma (in log-space) so "
                                             "that no single giant particle sets the cell size")
    target_solid_fraction: float = param(
        0.85, unit="1", range=(0.05, 0.99),
        source="pressed at 360 MPa (Otoyama 2020 Methods); Li3PS4 glass exceeds 90 % relative "
               "density above 350 MPa (Sakuda et al., Sci. Rep. 3, 2261, 2013 [S]), the NMC "
               "skeleton keeps some porosity; 0.85 is the issue's stated default")
    nmc_fraction_of_solid: float = param(
        0.54, unit="1", range=(0.0, 1.0),
        source="NMC:Li3PS4 = 75:25 wt% = 54:46 vol% (Otoyama 2020; densities 4.75 and 1.88 g/cm3)")
    se_overlap_allowed: bool = param(
        True, unit="",
        source="Li3PS4 glass is plastic at 360 MPa (Sakuda et al., Sci. Rep. 3, 2261, 2013 [S]): "
               "SE may overlap")
    nmc_stiffness_ratio: float = param(
        100.0, unit="1", range=(1.0, 1e5),
        source="ratio of NMC-NMC to SE contact stiffness in the soft-sphere compression; NMC "
               "(E ~140 GPa, Xu et al., JES 164, A3333, 2017) is much stiffer than the glass "
               "(E ~24 GPa, hardness 1.9 GPa); the ratio is numerical, chosen to keep NMC-NMC "
               "overlaps near 1 % of the radius while the minimiser stays fast (largest "
               "overlap at 1e4 particles: 0.9-1.1 % at 100 (1.1-1.3 % at 1e5), 1.8 % at 60, "
               "3.3 % at 30; FIRE iterations 12.0k, 8.2k, 6.6k: "
               "benchmarks/results/fire_stiffness.md). The "
               "geometric NMC-NMC contact radii (lens circles of the overlaps) scale as its "
               "inverse square root (default box: median 188/100/56/32 nm at 30/100/300/1000, "
               "experiments/results/contact_radii/); "
               "the mechanical ones do not (~330 nm)")
    contact_tolerance_rel: float = param(
        0.01, unit="1", range=(0.0, 0.5),
        source="a pair whose gap is below this fraction of the smaller radius is a contact "
               "(surface roughness of milled/pressed powders; numerical choice)")
    asperity_radius_m: float = param(
        10e-9, unit="m", range=(0.0, 1e-6),
        source="minimum contact radius of touching pairs: nanometre asperities of pressed "
               "oxide powders (assumption, order of a LiNbO3 coating thickness of 5-10 nm)")
    fraction_tolerance: float = param(
        0.002, unit="1", range=(1e-5, 0.05),
        source="the generator iterates until the union solid fraction is within this of its "
               "target (Monte-Carlo error of the default sample is ~0.0004)")
    sample_points: int = param(1_000_000, unit="", range=(1000, 10**9),
                               source="random points used to measure the union phase fractions")
    force_tolerance: float = param(
        1e-4, unit="1", range=(1e-12, 1e-1),
        source="FIRE stops when the largest net force on a particle, in units of the soft "
               "stiffness times the mean radius, is below this")
    max_iterations: int = param(200_000, unit="", range=(100, 10**8),
                                source="upper bound on FIRE iterations per minimisation")
    minimiser: str = param(
        "auto", unit="", choices=("auto", "fire", "fire-imex"),
        source="fire: FIRE, every spring explicit, NMC mass = the stiffness ratio; fire-imex: "
               "FIRE, unit masses, the stiff NMC-NMC springs implicit (esim/_fire_imex.py: the "
               "same minima; at 1e5, 3 seeds: 7.5-8.7k against 16-38k iterations, 98-126 s "
               "against 92-250 s; at ratio 1000 on the default box 2.3x faster); auto: "
               "fire-imex from 20000 particles, else fire (the default box and small packings "
               "keep the plain FIRE results)")


from esim._params_materials import MaterialsParams, NetworkParams  # noqa: E402
from esim._params_charge import ChargeParams  # noqa: E402
from esim._params_spm import SPMParams  # noqa: E402

SECTIONS: dict[str, type] = {
    "structure": PackingParams,
    "materials": MaterialsParams,
    "network": NetworkParams,
    "charge": ChargeParams,
    "spm": SPMParams,
}


@dataclass(frozen=True)
class Params:
    """A full esim parameter set: one frozen section per stage."""

    structure: PackingParams = field(default_factory=PackingParams)
    materials: MaterialsParams = field(default_factory=MaterialsParams)
    network: NetworkParams = field(default_factory=NetworkParams)
    charge: ChargeParams = field(default_factory=ChargeParams)
    spm: SPMParams = field(default_factory=SPMParams)

    def replace(self, **sections: Mapping[str, Any]) -> "Params":
        """A copy with some fields changed, validated: ``p.replace(structure={"seed": 3})``."""
        data = self.to_dict()
        for name, changes in sections.items():
            if name not in data:
                raise InvalidParameters(f"{name}: unknown section; valid sections: "
                                        f"{', '.join(SECTIONS)}")
            data[name].update(changes)
        return params_from_dict(data)

    def to_dict(self) -> dict[str, dict[str, Any]]:
        """Nested plain dict, ready for TOML or JSON."""
        return {name: dataclasses.asdict(getattr(self, name)) for name in SECTIONS}

    def to_toml(self) -> str:
        """The parameter set as TOML, with units and sources as comments."""
        return params_to_toml(self)

    def to_json(self) -> str:
        """The parameter set as canonical JSON (sorted keys): stored in every result file."""
        return json.dumps(self.to_dict(), sort_keys=True)

    def save(self, path: str | os.PathLike) -> None:
        """Write the TOML atomically (temporary file, then rename)."""
        from esim.io.atomic import atomic_write_text

        atomic_write_text(path, self.to_toml())


# ----------------------------------------------------------------------------------------------
# Validation
# ----------------------------------------------------------------------------------------------


def describe_field(section: str, f: dataclasses.Field) -> str:
    """``section.name`` with its allowed range or choices, for error messages."""
    md = f.metadata
    unit = f" {md['unit']}" if md.get("unit") not in (None, "", "1") else ""
    if md.get("choices"):
        return f"{section}.{f.name} (one of {', '.join(map(str, md['choices']))})"
    rng = md.get("range")
    if rng:
        lo = "-inf" if rng[0] is None else f"{rng[0]:g}"
        hi = "inf" if rng[1] is None else f"{rng[1]:g}"
        return f"{section}.{f.name} (allowed range [{lo}, {hi}]{unit})"
    return f"{section}.{f.name}"


def _coerce(section: str, f: dataclasses.Field, value: Any) -> Any:
    """Check the type and range of one value; return it converted to the field's type."""
    what = describe_field(section, f)
    typ = f.type if isinstance(f.type, type) else {"int": int, "float": float, "str": str,
                                                   "bool": bool}[f.type]
    if typ is bool:
        if not isinstance(value, bool):
            raise InvalidParameters(f"{what}: expected true or false, got {value!r}")
        return value
    if typ is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise InvalidParameters(f"{what}: expected an integer, got {value!r}")
    elif typ is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise InvalidParameters(f"{what}: expected a number, got {value!r}")
        value = float(value)
        if not math.isfinite(value):
            raise InvalidParameters(f"{what}: must be finite, got {value!r}")
    elif typ is str:
        if not isinstance(value, str):
            raise InvalidParameters(f"{what}: expected a string, got {value!r}")
    choices = f.metadata.get("choices")
    if choices and value not in choices:
        raise InvalidParameters(f"{what}: got {value!r}")
    rng = f.metadata.get("range")
    if rng:
        lo, hi = rng
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            raise InvalidParameters(f"{what}: got {value!r}")
    return value


def _section_from_dict(name: str, cls: type, data: Mapping[str, Any]) -> Any:
    if not isinstance(data, Mapping):
        raise InvalidParameters(f"{name}: expected a table of parameters, got {data!r}")
    known = {f.name: f for f in fields(cls)}
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise InvalidParameters(
            f"{name}.{unknown[0]}: unknown parameter; valid keys of [{name}]: {', '.join(known)}")
    values = {k: _coerce(name, known[k], v) for k, v in data.items()}
    return cls(**values)


def _check_consistency(p: Params) -> None:
    """Constraints between fields, each naming the fields involved."""
    s = p.structure
    smallest_box = min(s.box_x_m, s.box_y_m, s.electrode_thickness_m)
    if smallest_box < 2.0 * max(s.nmc_d50_m, s.se_d50_m):
        raise InvalidParameters(
            "structure.box_x_m/box_y_m/electrode_thickness_m: every box edge must be at least two "
            f"particle diameters (largest d50 {max(s.nmc_d50_m, s.se_d50_m):g} m), got "
            f"{smallest_box:g} m")
    if p.spm.fov_z_anchor == "full":  # the map spans the thickness: its pixel along z
        from esim._params_spm import check_kpfm_psf_size

        check_kpfm_psf_size(p.spm, (s.electrode_thickness_m / p.spm.pixels_z,))
    _warn_nmc_sigma_falls(p.materials)
    c = p.charge
    if c.initial_x >= c.x_limit:
        raise InvalidParameters(
            f"charge.initial_x: must lie below charge.x_limit ({c.x_limit:g}), the delithiation "
            f"at which a run stops, got {c.initial_x:g}")
    if not c.dt_min_s <= c.dt_initial_s <= c.dt_max_s:
        raise InvalidParameters(
            "charge.dt_initial_s: must lie between charge.dt_min_s and charge.dt_max_s, got "
            f"{c.dt_min_s:g} <= {c.dt_initial_s:g} <= {c.dt_max_s:g}")


def _warn_nmc_sigma_falls(m: Any) -> None:
    """Warn when the NMC's electronic conductivity would fall on delithiation.

    ``log10 sigma`` and ``E_a`` are both linear in x between the table's points, so at any one
    temperature ``log10 sigma(x)`` is too, and the points decide.  The pristine point is
    calibrated within a literature bracket (from other samples) that reaches above Amin &
    Chiang's x = 0.1 value, so within the allowed ranges it can lie above it: a warning, not an
    error, naming the fields."""
    import sys
    import warnings

    from esim.materials import NMC_TABLE_X, nmc_sigma_e

    fields = ("nmc_sigma_e_pristine_S_per_m", "nmc_sigma_e_x010_S_per_m",
              "nmc_sigma_e_x030_S_per_m", "nmc_sigma_e_x050_S_per_m", "nmc_sigma_e_x075_S_per_m")
    sig = nmc_sigma_e(NMC_TABLE_X, m.temperature_K, m, kind="x")
    drop = np.flatnonzero(np.diff(sig) < 0)
    if drop.size:
        k = int(drop[0])
        why = (" (the pristine point comes from another sample than Amin & Chiang's table)"
               if k == 0 else "")
        level, frame = 2, sys._getframe(1)  # the first frame outside esim: the caller's line
        while frame is not None and frame.f_globals.get("__name__", "").startswith("esim"):
            frame, level = frame.f_back, level + 1
        warnings.warn(
            f"materials.{fields[k]} / materials.{fields[k + 1]} / materials.temperature_K: "
            f"the NMC's electronic conductivity falls on delithiation at {m.temperature_K:g} K, "
            f"from {sig[k]:.3g} S/m at x = {NMC_TABLE_X[k]:g} to {sig[k + 1]:.3g} S/m at x = "
            f"{NMC_TABLE_X[k + 1]:g}{why}, so charging makes that NMC conduct worse",
            stacklevel=level)


def params_from_dict(data: Mapping[str, Any]) -> Params:
    """Build and validate a :class:`Params` from nested mappings; missing keys take defaults."""
    if not isinstance(data, Mapping):
        raise InvalidParameters(f"parameters: expected a table, got {type(data).__name__}")
    unknown = sorted(set(data) - set(SECTIONS))
    if unknown:
        raise InvalidParameters(
            f"{unknown[0]}: unknown section; valid sections: {', '.join(SECTIONS)}")
    sections = {name: _section_from_dict(name, cls, data.get(name, {}))
                for name, cls in SECTIONS.items()}
    p = Params(**sections)
    _check_consistency(p)
    return p


def load_params(path: str | os.PathLike) -> Params:
    """Read and validate a TOML parameter file.

    Raises
    ------
    InputFileError
        The file is missing, unreadable or not valid TOML (the message names the file).
    InvalidParameters
        A key is unknown, of the wrong type, or out of range (the message names the field).
    """
    path = Path(path)
    try:
        text = path.read_bytes()
    except FileNotFoundError:
        raise InputFileError(f"{path}: no such parameter file") from None
    except OSError as exc:
        raise InputFileError(f"{path}: cannot read ({exc.strerror})") from None
    try:
        data = tomllib.loads(text.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise InputFileError(f"{path}: not a valid TOML file ({exc})") from None
    try:
        return params_from_dict(data)
    except InvalidParameters as exc:
        raise InvalidParameters(f"{path}: {exc}") from None


def parse_overrides(items: Iterable[str]) -> dict[str, dict[str, Any]]:
    """``["network.contact_model=mechanical", "structure.seed=3"]`` as
    ``{"network": {"contact_model": "mechanical"}, "structure": {"seed": 3}}``.

    Each value is read as a TOML value (``3``, ``2.5e-8``, ``true``, ``"text"``); a bare word
    that is not one is taken as a string.  The sections and keys are checked when the result is
    applied with :meth:`Params.replace`, which names the field and its allowed range.

    Raises
    ------
    InvalidParameters
        An item is not of the form ``SECTION.KEY=VALUE``.
    """
    out: dict[str, dict[str, Any]] = {}
    for item in items:
        key, sep, text = item.partition("=")
        section, dot, name = key.strip().partition(".")
        if not (sep and dot and section and name and text.strip()):
            raise InvalidParameters(f"--set: expected SECTION.KEY=VALUE, got {item!r}")
        try:
            value = tomllib.loads(f"v = {text.strip()}")["v"]
        except tomllib.TOMLDecodeError:
            value = text.strip()
        out.setdefault(section, {})[name.strip()] = value
    return out


# ----------------------------------------------------------------------------------------------
# TOML output
# ----------------------------------------------------------------------------------------------


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        r = repr(v)
        return r if ("." in r or "e" in r or "inf" in r or "nan" in r) else r + ".0"
    if isinstance(v, str):
        return json.dumps(v)  # a JSON string of printable text is a TOML basic string
    raise TypeError(f"cannot write {type(v).__name__} to TOML")


def params_to_toml(p: Params) -> str:
    """TOML text of a parameter set, every key commented with its unit, range and source."""
    lines = ["# esim parameter set. Units are SI; each key's unit is in its name or comment.",
             ""]
    for name in SECTIONS:
        sec = getattr(p, name)
        lines.append(f"[{name}]")
        for f in fields(sec):
            md = f.metadata
            lines.append(f"# {describe_field(name, f)}; unit: {md['unit'] or '-'}")
            lines.append(f"# source: {md['source']}")
            lines.append(f"{f.name} = {_toml_value(getattr(sec, f.name))}")
        lines.append("")
    return "\n".join(lines)
