"""numba kernels of :mod:`esim.solver` (arrays and scalars in, arrays out; no Python objects).

Naive twins live in ``tests/test_solver_kernels.py`` (scipy's connected components, the
COO-assembled Laplacian, ``P.T @ A @ P`` with an explicit aggregation matrix, dense solves).

Numba caveat: a kernel compiled with ``parallel=True`` and ``cache=True`` is only ever called
from Python, never from another cached kernel (that segfaults when the cache is reloaded with
the numba in use).  All flags are set here, in :data:`_SERIAL` and :data:`_PARALLEL`.
"""

from __future__ import annotations

import numba as nb
import numpy as np

_SERIAL = {"cache": True, "nogil": True}
_PARALLEL = {"cache": True, "nogil": True, "parallel": True}


# --------------------------------------------------------------------------------------------
# topology and assembly
# --------------------------------------------------------------------------------------------
@nb.njit(**_SERIAL)
def components(n_nodes, conns, g):
    """Connected components over the edges with ``g > 0`` (union-find, path halving).

    Returns ``(n_components, labels)``: labels int32, numbered 0.. in order of each
    component's smallest node.
    """
    parent = np.arange(n_nodes, dtype=np.int64)
    for e in range(conns.shape[0]):
        if not g[e] > 0:
            continue
        a = conns[e, 0]
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        b = conns[e, 1]
        while parent[b] != b:
            parent[b] = parent[parent[b]]
            b = parent[b]
        if a < b:
            parent[b] = a
        elif b < a:
            parent[a] = b
    labels = np.empty(n_nodes, dtype=np.int32)
    n_comp = 0
    for k in range(n_nodes):  # a root is the smallest node of its tree: labels in order
        p = parent[k]
        if p == k:
            labels[k] = n_comp
            n_comp += 1
        else:
            labels[k] = labels[p]  # p < k is already labelled ...
            parent[k] = parent[p]  # ... and its root too (keep the chain short)
    return n_comp, labels


@nb.njit(**_SERIAL)
def _reduced_fill(pos, conns, g, vfixed, nf):
    """Unsorted CSR of the reduced Laplacian (diagonal first in each row) and the RHS."""
    count = np.ones(nf, dtype=np.int64)  # the diagonal
    m = conns.shape[0]
    for e in range(m):
        if not g[e] > 0:
            continue
        pi = pos[conns[e, 0]]
        pj = pos[conns[e, 1]]
        if pi >= 0 and pj >= 0 and pi != pj:
            count[pi] += 1
            count[pj] += 1
    indptr = np.empty(nf + 1, dtype=np.int64)
    indptr[0] = 0
    for r in range(nf):
        indptr[r + 1] = indptr[r] + count[r]
    nnz = indptr[nf]
    indices = np.empty(nnz, dtype=np.int32)
    data = np.zeros(nnz, dtype=np.float64)
    cur = np.empty(nf, dtype=np.int64)
    for r in range(nf):
        indices[indptr[r]] = r
        cur[r] = indptr[r] + 1
    b = np.zeros(nf, dtype=np.float64)
    for e in range(m):
        ge = g[e]
        if not ge > 0:
            continue
        i = conns[e, 0]
        j = conns[e, 1]
        if i == j:
            continue  # self-loops carry no current
        pi = pos[i]
        pj = pos[j]
        if pi >= 0:
            data[indptr[pi]] += ge
            if pj >= 0:
                indices[cur[pi]] = pj
                data[cur[pi]] = -ge
                cur[pi] += 1
            elif not np.isnan(vfixed[j]):
                b[pi] += ge * vfixed[j]
        if pj >= 0:
            data[indptr[pj]] += ge
            if pi >= 0:
                indices[cur[pj]] = pi
                data[cur[pj]] = -ge
                cur[pj] += 1
            elif not np.isnan(vfixed[i]):
                b[pj] += ge * vfixed[i]
    return indptr, indices, data, b


@nb.njit(**_PARALLEL)
def sort_merge_rows(indptr, indices, data, length):
    """Sort each row by column and sum duplicates in place; ``length[r]`` = merged length."""
    for r in nb.prange(indptr.size - 1):
        s, e = indptr[r], indptr[r + 1]
        if e - s > 32:
            order = np.argsort(indices[s:e], kind="mergesort")
            ci = indices[s:e][order].copy()
            cv = data[s:e][order].copy()
            indices[s:e] = ci
            data[s:e] = cv
        else:  # insertion sort: rows of resistor networks are short
            for k in range(s + 1, e):
                c, v = indices[k], data[k]
                t = k - 1
                while t >= s and indices[t] > c:
                    indices[t + 1] = indices[t]
                    data[t + 1] = data[t]
                    t -= 1
                indices[t + 1] = c
                data[t + 1] = v
        w = s
        for k in range(s + 1, e):
            if indices[k] == indices[w]:
                data[w] += data[k]
            else:
                w += 1
                indices[w] = indices[k]
                data[w] = data[k]
        length[r] = (w - s + 1) if e > s else 0


@nb.njit(**_SERIAL)
def _compact_rows(indptr, indices, data, length):
    nf = indptr.size - 1
    new_ptr = np.empty(nf + 1, dtype=np.int64)
    new_ptr[0] = 0
    for r in range(nf):
        new_ptr[r + 1] = new_ptr[r] + length[r]
    if new_ptr[nf] == indptr[nf]:
        return new_ptr, indices, data
    ni = np.empty(new_ptr[nf], dtype=indices.dtype)
    nd = np.empty(new_ptr[nf], dtype=np.float64)
    for r in range(nf):
        s = indptr[r]
        t = new_ptr[r]
        for k in range(length[r]):
            ni[t + k] = indices[s + k]
            nd[t + k] = data[s + k]
    return new_ptr, ni, nd


def reduced_csr(pos, conns, g, vfixed, nf):
    """Reduced Laplacian as canonical CSR arrays (sorted, summed) and its right-hand side.

    ``pos[k]`` is node ``k``'s row (``-1`` for fixed or inactive nodes); ``vfixed`` the fixed
    potentials (NaN elsewhere).  Edges with ``g <= 0`` and self-loops are left out.
    Returns ``(indptr int64, indices int32, data float64, b float64)``.
    """
    indptr, indices, data, b = _reduced_fill(pos, conns, g, vfixed, nf)
    length = np.empty(nf, dtype=np.int64)
    sort_merge_rows(indptr, indices, data, length)
    indptr, indices, data = _compact_rows(indptr, indices, data, length)
    return indptr, indices, data, b


@nb.njit(**_SERIAL)
def schur_fill(pos, lvals, d, ion_k, slot_start, slot_bd, slot_c, data):
    """Sum the contributions of the charge's Schur complement into CSR ``data`` (zeroed here)
    at their precomputed positions ``pos``, in the order of ``esim.charge._SchurPattern``:
    the Laplacian values, ``d`` on every interface's (e, e), ``d`` on (s, s) and ``-d`` on
    (e, s) and (s, e) of the glass interfaces ``ion_k``, then each NMC's dense block over its
    slots ``slot_start[e]:slot_start[e + 1]``, ``-slot_bd[a] * slot_c[b]`` (a-major)."""
    data[:] = 0.0
    t = 0
    for i in range(lvals.size):
        data[pos[t]] += lvals[i]
        t += 1
    for k in range(d.size):
        data[pos[t]] += d[k]
        t += 1
    for j in range(ion_k.size):
        data[pos[t]] += d[ion_k[j]]
        t += 1
    for _ in range(2):  # (e, s), then (s, e)
        for j in range(ion_k.size):
            data[pos[t]] -= d[ion_k[j]]
            t += 1
    for e in range(slot_start.size - 1):
        a0, a1 = slot_start[e], slot_start[e + 1]
        for a in range(a0, a1):
            ba = slot_bd[a]
            for b in range(a0, a1):
                data[pos[t]] -= ba * slot_c[b]
                t += 1


@nb.njit(**_SERIAL)
def edge_currents(conns, g, potential, active):
    """Edge currents ``g (v_i - v_j)`` (0 unless both ends are active) and each node's net
    outgoing current."""
    m = conns.shape[0]
    current = np.zeros(m, dtype=np.float64)
    net_out = np.zeros(potential.size, dtype=np.float64)
    for e in range(m):
        i = conns[e, 0]
        j = conns[e, 1]
        if active[i] and active[j]:
            c = g[e] * (potential[i] - potential[j])
            current[e] = c
            net_out[i] += c
            net_out[j] -= c
    return current, net_out


# --------------------------------------------------------------------------------------------
# CSR level (the fine level of the grid hierarchy)
# --------------------------------------------------------------------------------------------
@nb.njit(**_PARALLEL)
def csr_matvec(indptr, indices, data, x, y):
    """``y = A x``."""
    for r in nb.prange(indptr.size - 1):
        s = 0.0
        for k in range(indptr[r], indptr[r + 1]):
            s += data[k] * x[indices[k]]
        y[r] = s


@nb.njit(**_PARALLEL)
def csr_residual(indptr, indices, data, x, b, r):
    """``r = b - A x``."""
    for i in nb.prange(indptr.size - 1):
        s = b[i]
        for k in range(indptr[i], indptr[i + 1]):
            s -= data[k] * x[indices[k]]
        r[i] = s


@nb.njit(**_PARALLEL)
def csr_gs_range(indptr, indices, data, x, b, start, stop):
    """Gauss-Seidel update of rows ``start:stop``, which must not couple to each other (one
    colour of a red-black ordering): all in parallel, the result independent of the thread
    count."""
    for i in nb.prange(start, stop):
        s = b[i]
        diag = 0.0
        for k in range(indptr[i], indptr[i + 1]):
            j = indices[k]
            if j == i:
                diag += data[k]
            else:
                s -= data[k] * x[j]
        x[i] = s / diag


@nb.njit(**_PARALLEL)
def csr_residual_range(indptr, indices, data, x, b, r, start, stop):
    """``r = b - A x`` on rows ``start:stop`` and ``r = 0`` on all other rows (rows that a
    Gauss-Seidel half-sweep has just solved exactly)."""
    n = indptr.size - 1
    for i in nb.prange(n):
        if i < start or i >= stop:
            r[i] = 0.0
            continue
        s = b[i]
        for k in range(indptr[i], indptr[i + 1]):
            s -= data[k] * x[indices[k]]
        r[i] = s


@nb.njit(**_PARALLEL)
def scale_range(x, b, invd, start, stop):
    """``x = 0``, then ``x[start:stop] = b * invd`` there: the Gauss-Seidel update of one
    colour when all its neighbours are still 0 (the first half-sweep from ``x = 0``)."""
    for i in nb.prange(x.size):
        x[i] = b[i] * invd[i] if start <= i < stop else 0.0


@nb.njit(**_PARALLEL)
def csr_permute(indptr, indices, data, perm, inv):
    """``A[perm][:, perm]`` for a permutation ``perm`` (new row ``r`` is old row ``perm[r]``;
    ``inv`` its inverse); rows keep their entries' order (not sorted)."""
    n = indptr.size - 1
    ptr = np.empty(n + 1, dtype=indptr.dtype)
    ptr[0] = 0
    for r in range(n):
        o = perm[r]
        ptr[r + 1] = ptr[r] + indptr[o + 1] - indptr[o]
    ind = np.empty(indices.size, dtype=indices.dtype)
    dat = np.empty(data.size, dtype=np.float64)
    for r in nb.prange(n):
        o = perm[r]
        t = ptr[r]
        for k in range(indptr[o], indptr[o + 1]):
            ind[t] = inv[indices[k]]
            dat[t] = data[k]
            t += 1
    return ptr, ind, dat


@nb.njit(**_SERIAL)
def csr_to_grid(indptr, indices, data, cell, ix, iy, iz, cshape):
    """Galerkin coarse operator ``P^T A P`` of a CSR matrix whose rows sit on a voxel grid,
    with the piecewise-constant prolongation ``P[i, cell[i]] = 1`` onto 2x2x2 blocks.

    ``ix, iy, iz`` are each row's voxel coordinates.  Every off-diagonal entry must join two
    face-neighbouring voxels; then ``P^T A P`` is a 7-point stencil on the coarse grid of shape
    ``cshape``, returned as its diagonal ``d`` and the positive face conductances ``wx, wy, wz``
    (``wx[c]`` couples coarse cells ``c`` and ``c + (1, 0, 0)``; off-diagonal entry ``-w``).
    Returns ``(ok, d, wx, wy, wz)``; ``ok`` is False (arrays meaningless) when an entry joins
    non-neighbours.
    """
    nx, ny, nz = cshape[0], cshape[1], cshape[2]
    d = np.zeros((nx, ny, nz))
    wx = np.zeros((nx, ny, nz))
    wy = np.zeros((nx, ny, nz))
    wz = np.zeros((nx, ny, nz))
    for i in range(indptr.size - 1):
        ci = cell[i]
        cx = ci // (ny * nz)
        cy = (ci // nz) % ny
        cz = ci % nz
        for k in range(indptr[i], indptr[i + 1]):
            j = indices[k]
            a = data[k]
            if j != i:
                dist = abs(ix[i] - ix[j]) + abs(iy[i] - iy[j]) + abs(iz[i] - iz[j])
                if dist != 1:
                    return False, d, wx, wy, wz
            cj = cell[j]
            if cj == ci:
                d[cx, cy, cz] += a
            elif cj > ci:  # count each coupling once, at its lower cell
                if cj - ci == 1 and cz + 1 < nz:
                    wz[cx, cy, cz] -= a
                elif cj - ci == nz and cy + 1 < ny:
                    wy[cx, cy, cz] -= a
                else:
                    wx[cx, cy, cz] -= a
    # d holds the sum of every entry within a block (diagonals and internal couplings):
    # exactly the coarse diagonal (P^T A P)_CC
    return True, d, wx, wy, wz


@nb.njit(**_SERIAL)
def restrict_cells(r, cell, n_cells, rc):
    """``rc = P^T r`` for the piecewise-constant ``P`` of :func:`csr_to_grid` (serial: rows
    scatter into cells)."""
    rc[:] = 0.0
    for i in range(r.size):
        rc[cell[i]] += r[i]


@nb.njit(**_PARALLEL)
def prolong_cells_add(x, cell, ec, alpha):
    """``x += alpha P ec``."""
    for i in nb.prange(x.size):
        x[i] += alpha * ec[cell[i]]


# --------------------------------------------------------------------------------------------
# structured 7-point levels
# --------------------------------------------------------------------------------------------
@nb.njit(**_PARALLEL)
def grid_coarsen(d, wx, wy, wz):
    """Galerkin ``P^T A P`` of a 7-point stencil for 2x2x2 piecewise-constant aggregation:
    again a 7-point stencil (face conductances summed over the four fine faces between two
    blocks; the diagonal summed over the block minus twice its internal faces)."""
    nx, ny, nz = d.shape
    cx, cy, cz = (nx + 1) // 2, (ny + 1) // 2, (nz + 1) // 2
    D = np.zeros((cx, cy, cz))
    WX = np.zeros((cx, cy, cz))
    WY = np.zeros((cx, cy, cz))
    WZ = np.zeros((cx, cy, cz))
    for X in nb.prange(cx):
        for Y in range(cy):
            for Z in range(cz):
                s = 0.0
                for x in range(2 * X, min(2 * X + 2, nx)):
                    for y in range(2 * Y, min(2 * Y + 2, ny)):
                        for z in range(2 * Z, min(2 * Z + 2, nz)):
                            s += d[x, y, z]
                            if x == 2 * X and x + 1 < nx:
                                s -= 2.0 * wx[x, y, z]
                            elif x == 2 * X + 1:
                                WX[X, Y, Z] += wx[x, y, z]
                            if y == 2 * Y and y + 1 < ny:
                                s -= 2.0 * wy[x, y, z]
                            elif y == 2 * Y + 1:
                                WY[X, Y, Z] += wy[x, y, z]
                            if z == 2 * Z and z + 1 < nz:
                                s -= 2.0 * wz[x, y, z]
                            elif z == 2 * Z + 1:
                                WZ[X, Y, Z] += wz[x, y, z]
                D[X, Y, Z] = s
    return D, WX, WY, WZ


@nb.njit(inline="always")
def _coupling(wx, wy, wz, x, i, j, k):
    """``sum_n w_n x_n`` over the (up to six) face neighbours of cell (i, j, k) of the 7-point
    stencil; ``wx[i]`` couples cells i and i + 1 (likewise y, z).  Inlined into the grid
    kernels at compile time (no call, so the parallel-kernel cache caveat does not apply)."""
    nx, ny, nz = x.shape
    s = 0.0
    if i > 0:
        s += wx[i - 1, j, k] * x[i - 1, j, k]
    if i + 1 < nx:
        s += wx[i, j, k] * x[i + 1, j, k]
    if j > 0:
        s += wy[i, j - 1, k] * x[i, j - 1, k]
    if j + 1 < ny:
        s += wy[i, j, k] * x[i, j + 1, k]
    if k > 0:
        s += wz[i, j, k - 1] * x[i, j, k - 1]
    if k + 1 < nz:
        s += wz[i, j, k] * x[i, j, k + 1]
    return s


@nb.njit(**_PARALLEL)
def grid_residual(d, wx, wy, wz, x, b, r):
    """``r = b - A x`` for the 7-point stencil (``d`` diagonal, ``-w`` couplings)."""
    nx, ny, nz = d.shape
    for i in nb.prange(nx):
        for j in range(ny):
            for k in range(nz):
                s = b[i, j, k] - d[i, j, k] * x[i, j, k] + _coupling(wx, wy, wz, x, i, j, k)
                r[i, j, k] = s


@nb.njit(**_PARALLEL)
def grid_gs_colour(d, wx, wy, wz, x, b, colour):
    """Gauss-Seidel update of the cells with ``(i + j + k) % 2 == colour`` (red-black: cells of
    one colour couple only to the other, so all update in parallel); cells with ``d == 0``
    (no conducting voxel below them) stay 0."""
    nx, ny, nz = d.shape
    for i in nb.prange(nx):
        for j in range(ny):
            k0 = (colour + i + j) % 2
            for k in range(k0, nz, 2):
                dd = d[i, j, k]
                if dd == 0.0:
                    continue
                s = b[i, j, k] + _coupling(wx, wy, wz, x, i, j, k)
                x[i, j, k] = s / dd


@nb.njit(**_PARALLEL)
def grid_restrict(r, rc):
    """``rc = P^T r`` for 2x2x2 piecewise-constant aggregation."""
    nx, ny, nz = r.shape
    cx, cy, cz = rc.shape
    for X in nb.prange(cx):
        for Y in range(cy):
            for Z in range(cz):
                s = 0.0
                for x in range(2 * X, min(2 * X + 2, nx)):
                    for y in range(2 * Y, min(2 * Y + 2, ny)):
                        for z in range(2 * Z, min(2 * Z + 2, nz)):
                            s += r[x, y, z]
                rc[X, Y, Z] = s


@nb.njit(**_PARALLEL)
def grid_prolong_add(x, ec, alpha):
    """``x += alpha P ec`` for 2x2x2 piecewise-constant aggregation."""
    nx, ny, nz = x.shape
    for i in nb.prange(nx):
        for j in range(ny):
            for k in range(nz):
                x[i, j, k] += alpha * ec[i // 2, j // 2, k // 2]


# --------------------------------------------------------------------------------------------
# conjugate-gradient helpers
# --------------------------------------------------------------------------------------------
@nb.njit(**_PARALLEL)
def dot(a, b):
    s = 0.0
    for i in nb.prange(a.size):
        s += a[i] * b[i]
    return s


@nb.njit(**_PARALLEL)
def cg_update(x, r, p, q, alpha):
    """``x += alpha p; r -= alpha q``; returns ``r . r``."""
    s = 0.0
    for i in nb.prange(x.size):
        x[i] += alpha * p[i]
        ri = r[i] - alpha * q[i]
        r[i] = ri
        s += ri * ri
    return s


@nb.njit(**_PARALLEL)
def cg_direction(p, z, beta):
    """``p = z + beta p``."""
    for i in nb.prange(p.size):
        p[i] = z[i] + beta * p[i]


@nb.njit(**_PARALLEL)
def grid_matvec(d, wx, wy, wz, x, y):
    """``y = A x`` for the 7-point stencil."""
    nx, ny, nz = d.shape
    for i in nb.prange(nx):
        for j in range(ny):
            for k in range(nz):
                s = d[i, j, k] * x[i, j, k] - _coupling(wx, wy, wz, x, i, j, k)
                y[i, j, k] = s


# --------------------------------------------------------------------------------------------
# voxel networks
# --------------------------------------------------------------------------------------------
@nb.njit(**_SERIAL)
def voxel_face_edges(nm, im, ghm):
    """Face edges of a voxel image, direction by direction (x, then y, then z), each in C
    order: every pair of face neighbours whose node ids (``nm``, -1 for no node) are both
    set and differ, with conductance ``ghm[im[a], im[b]]`` (S).  Returns ``(conns int64
    (M, 2), g float64 (M,))``."""
    nx, ny, nz = nm.shape
    m = 0
    for d in range(3):
        for i in range(nx - (d == 0)):
            for j in range(ny - (d == 1)):
                for k in range(nz - (d == 2)):
                    a = nm[i, j, k]
                    if a < 0:
                        continue
                    if d == 0:
                        b = nm[i + 1, j, k]
                    elif d == 1:
                        b = nm[i, j + 1, k]
                    else:
                        b = nm[i, j, k + 1]
                    if b >= 0 and b != a:
                        m += 1
    conns = np.empty((m, 2), dtype=np.int64)
    g = np.empty(m, dtype=np.float64)
    e = 0
    for d in range(3):
        for i in range(nx - (d == 0)):
            for j in range(ny - (d == 1)):
                for k in range(nz - (d == 2)):
                    a = nm[i, j, k]
                    if a < 0:
                        continue
                    if d == 0:
                        i2, j2, k2 = i + 1, j, k
                    elif d == 1:
                        i2, j2, k2 = i, j + 1, k
                    else:
                        i2, j2, k2 = i, j, k + 1
                    b = nm[i2, j2, k2]
                    if b >= 0 and b != a:
                        conns[e, 0] = a
                        conns[e, 1] = b
                        g[e] = ghm[im[i, j, k], im[i2, j2, k2]]
                        e += 1
    return conns, g
