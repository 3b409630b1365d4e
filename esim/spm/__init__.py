"""Virtual scanning-probe and electron microscopy of an electrode cross-section.

- ``esim.spm.section``: the ion-milled plane, the half-space network that remains behind it, and
  the pixel grid (phase, particle id, pore flag, distance to the particle edge, depth).
- ``esim.spm.maps``: :func:`~esim.spm.maps.simulate_spm` — SSRM, C-AFM (maps and I–V curves),
  KPFM, SEM and EDX maps with their ground truth, as a frozen ``SPMMaps`` (HDF5, Gwyddion .gsf,
  PNG, CSV).
- ``esim.spm.instrument``: the instrument models shared by the maps: tip contact and spreading
  resistance, amplifier ranges and noise, the KPFM point-spread function, SEM/EDX formation.
- ``esim.spm.figures``: figures laid out like Otoyama et al. (2020), Figures 2–4.

Importing this package has no side effects.
"""
