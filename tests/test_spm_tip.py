"""The SSRM tip-spreading law against a voxel solve of a tip on the flat cut face of a particle.

Geometry (voxel units, edge dx): a block of n x n x n/2 voxels of resistivity rho, the top layer
is the milled face, the face x = 0 is the particle's edge (insulating), the bottom face is
grounded (the rest of the particle and the network beyond it) and the other faces are
insulating.  The tip is a disc electrode: the top-layer voxels whose centres lie within ``a`` of
the tip centre, held at 1 V.  The electrode's equipotential reaches half a voxel beyond its voxel
centres along every link, so its radius is the area-equivalent one plus dx/2,
``a_eff = sqrt(n_disc / pi) dx + dx / 2``.  The law is
``R = rho / (4 a_eff) * f(s / a_eff)`` (:func:`esim.spm.instrument.spreading_resistance`),
``s`` the distance from the disc centre to the edge x = 0.
"""

from __future__ import annotations

import numpy as np
import pytest

from esim.solver import solve_network
from esim.spm.instrument import spreading_resistance
from esim.voxel_network import voxel_network

N, A = 48, 3.0  # block n x n x n/2 voxels, disc radius 3 voxels


def tip_resistance_voxel(n: int, a: float, s: float, dx: float = 1e-7,
                         rho: float = 2.0) -> tuple[float, float]:
    """(R, a_eff) of a disc tip at distance s (voxels) from the block's x = 0 face; ohm, m."""
    nz = n // 2
    img = np.ones((n, n, nz), np.uint8)
    net = voxel_network(img, {1: 1.0 / rho}, dx, axis=2)
    g = net.g.copy()
    g[(net.conns == net.outlet_node).any(axis=1)] = 0.0  # the milled face is free, not a contact
    ii, jj = np.meshgrid(np.arange(n) + 0.5, np.arange(n) + 0.5, indexing="ij")
    disc = (ii - s) ** 2 + (jj - n / 2) ** 2 <= a * a
    flat = np.ravel_multi_index((np.floor(ii[disc]).astype(int), np.floor(jj[disc]).astype(int),
                                 np.full(int(disc.sum()), nz - 1)), img.shape)
    pos = np.full(img.size, -1)
    pos[net.voxel_index] = np.arange(net.voxel_index.size)
    nodes = pos[flat]
    sol = solve_network(net.n_nodes, net.conns, g, np.r_[nodes, net.inlet_node],
                        np.r_[np.ones(nodes.size), 0.0], method="amg", rtol=1e-9)
    current = abs(sol.node_injection[nodes].sum())
    a_eff = (np.sqrt(disc.sum() / np.pi) + 0.5) * dx
    return 1.0 / current, a_eff


def test_tip_law_matches_voxel_sweep():
    """From the face's centre to s / a_eff ~ 1 from the edge (1 s): the law is within 10 % of the
    voxel solve (measured 0.4-7.2 %, the grid's bias at a ~ 3 voxels), and the rise of R toward
    the edge, where the grid bias cancels, is the voxel solve's within 30 % (measured 3-21 %;
    without the edge factor f the law would miss it entirely)."""
    dx, rho = 1e-7, 2.0
    res = {}
    for s in (N / 2, 12.0, 8.0, 5.0, 3.5):
        r_vox, a_eff = tip_resistance_voxel(N, A, s, dx, rho)
        res[s] = (r_vox, float(spreading_resistance(rho, a_eff, s * dx)))
    r_vox_c, r_law_c = res[N / 2]
    for s, (r_vox, r_law) in res.items():
        assert abs(r_law / r_vox - 1.0) < 0.10, (s, r_law / r_vox)
    for s in (8.0, 5.0, 3.5):  # the edge raises R by 8-37 % here
        rise_vox = res[s][0] / r_vox_c - 1.0
        rise_law = res[s][1] / r_law_c - 1.0
        assert rise_vox > 0.07
        assert rise_law == pytest.approx(rise_vox, rel=0.30), s


def test_edge_raises_resistance_voxel():
    # the voxel solve itself shows the edge effect the law models: R grows toward the edge
    r = [tip_resistance_voxel(32, 2.5, s)[0] for s in (16.0, 4.0)]
    assert r[1] > 1.05 * r[0]
