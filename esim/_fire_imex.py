"""FIRE with the stiff NMC-NMC springs integrated implicitly (the ``fire-imex`` minimiser).

The plain minimiser (:func:`esim.packing._fire`) integrates every spring explicitly, so its time
step is set by the stiffest ones: it gives each NMC particle a mass equal to the NMC-NMC
stiffness (``structure.nmc_stiffness_ratio``), which keeps the step stable but makes the NMC
network respond to the glass's forces ~100 times more slowly.  The iteration count then grows
with the stiffness contrast (at 3e4 particles, seed 3: 16.9k iterations at ratio 100 against
4.4k at ratio 1; README, Known limitations).

Here every mass is 1 and each FIRE step treats the hard springs (overlapping NMC-NMC pairs and
the NMC-wall contacts) by linearised backward Euler, the soft ones explicitly (an
implicit-explicit, IMEX, step: Ascher, Ruuth & Spiteri, Appl. Numer. Math. 25, 151, 1997; the
linearised implicit step for stiff springs solved by conjugate gradients is that of Baraff &
Witkin, SIGGRAPH 1998)::

    (I + dt^2 K_h) v_new = keep v + (mix + dt) F,    x <- x + dt v_new

``F`` is the full force (soft and hard) at ``x``; ``keep`` and ``mix`` are FIRE's velocity
mixing (Bitzek et al., Phys. Rev. Lett. 97, 170201, 2006), unchanged; ``K_h`` is the normal
stiffness of the hard contacts, ``k_hard n n^T`` per pair (the tangential term
``k_hard delta / d``, under 1 % of it at these overlaps, is left out: it changes the step, not
its fixed points).  Particles outside ``K_h`` get ``v_new = keep v + (mix + dt) F``, the plain
semi-implicit Euler step.  Fixed points are those of plain FIRE (``F = 0``): the same energy,
the same force tolerance, the same contacts and overlaps to within the minimiser's choice among
local minima.  The system is solved to a relative residual of ``_CG_TOL`` by conjugate gradients
preconditioned with each particle's 3 x 3 diagonal block, from the block-Jacobi guess, at most
``_CG_MAX`` iterations (measured on the default box: 8 iterations suffice; 2 or 4 cost more FIRE
iterations than they save).

The kernels are serial, so results do not depend on the number of threads (the force and
pair-list kernels are :mod:`esim.packing`'s own, threaded with fixed chunks).

Measured (``benchmarks/results/packing_1e5_minimisers.md``; default composite, 1e5 particles,
seeds 20200824, 1 and 2, 2 threads, one run): 7.5k, 8.7k and 7.9k FIRE iterations against
38.3k, 24.4k and 16.0k for plain FIRE, but 14.5 ms per iteration against 6.0 ms (the implicit
solve is serial: ~8 CG iterations over ~43k NMC contacts, plus the system's set-up), so
117.5, 126.3 and 97.7 s against 250.5, 147.5 and 92.1 s: the median 1.26x and the slowest seed
2.1x faster.  The gain grows with the stiffness ratio, which plain FIRE pays for in iterations
and this step does not: at ratio 1000 on the default box, 11.6k and 12.9k against 71.6k and
72.6k iterations, 5.8-6.3 s against 13.4-14.7 s.
"""

from __future__ import annotations

import math

import numba as nb
import numpy as np

_NB = dict(cache=True, nogil=True)
_CG_TOL = 1e-2  # relative residual of the implicit solve
_CG_MAX = 8  # most conjugate-gradient iterations per FIRE step


@nb.njit(**_NB)
def _hard_pairs(pairs, hard):
    """The pairs of the Verlet list whose two particles are both hard."""
    cnt = 0
    for p in range(pairs.shape[0]):
        if hard[pairs[p, 0]] and hard[pairs[p, 1]]:
            cnt += 1
    hp = np.empty((cnt, 2), np.int64)
    c = 0
    for p in range(pairs.shape[0]):
        if hard[pairs[p, 0]] and hard[pairs[p, 1]]:
            hp[c, 0] = pairs[p, 0]
            hp[c, 1] = pairs[p, 1]
            c += 1
    return hp


@nb.njit(**_NB)
def _implicit_set(n, hp, hard, pos, rad, box, periodic_z, margin):
    """The particles that may carry a hard spring until the next pair-list renewal: both ends of
    every hard pair, and hard particles within ``margin`` (the skin) of a wall.  Returns their
    indices ``sub`` (local row q -> particle) and the hard pairs in local rows."""
    loc = np.full(n, -1, np.int64)
    k = 0
    for p in range(hp.shape[0]):
        for e in range(2):
            m = hp[p, e]
            if loc[m] < 0:
                loc[m] = k
                k += 1
    if not periodic_z:
        for m in range(n):
            if hard[m] and (pos[m, 2] < rad[m] + margin or pos[m, 2] > box[2] - rad[m] - margin):
                if loc[m] < 0:
                    loc[m] = k
                    k += 1
    sub = np.empty(k, np.int64)
    for m in range(n):
        if loc[m] >= 0:
            sub[loc[m]] = m
    lij = np.empty_like(hp)
    for p in range(hp.shape[0]):
        lij[p, 0] = loc[hp[p, 0]]
        lij[p, 1] = loc[hp[p, 1]]
    return sub, lij


@nb.njit(**_NB)
def _prepare(pos, rad, sub, lij, box, periodic_z, vel, frc, keep, mixdt, c,
             lpos, apair, nrm, lwall, binv, rhs, x):
    """One step's linear system, in local rows (``sub``): positions and radii gathered into
    ``lpos`` (so the pair scan stays in cache), the overlapping hard pairs as local row pairs
    ``apair[:na]`` with unit normals ``nrm``, the wall contacts ``lwall``, the inverse
    3 x 3 diagonal blocks of ``I + c K`` (``binv``, symmetric: xx yy zz xy xz yz), the
    right-hand side and the block-Jacobi first guess ``x``.  Fills the preallocated arrays;
    returns ``na``."""
    k = sub.shape[0]
    bx, by, bz = box[0], box[1], box[2]
    for q in range(k):
        m = sub[q]
        lpos[q, 0] = pos[m, 0]
        lpos[q, 1] = pos[m, 1]
        lpos[q, 2] = pos[m, 2]
        lpos[q, 3] = rad[m]
    na = 0
    for p in range(lij.shape[0]):
        i = lij[p, 0]
        j = lij[p, 1]
        q0 = lpos[j, 0] - lpos[i, 0]
        if q0 > 0.5 * bx:
            q0 -= bx
        elif q0 < -0.5 * bx:
            q0 += bx
        q1 = lpos[j, 1] - lpos[i, 1]
        if q1 > 0.5 * by:
            q1 -= by
        elif q1 < -0.5 * by:
            q1 += by
        q2 = lpos[j, 2] - lpos[i, 2]
        if periodic_z:
            if q2 > 0.5 * bz:
                q2 -= bz
            elif q2 < -0.5 * bz:
                q2 += bz
        dd = q0 * q0 + q1 * q1 + q2 * q2
        rr = lpos[i, 3] + lpos[j, 3]
        if dd > 0.0 and dd < rr * rr:
            qd = math.sqrt(dd)
            apair[na, 0] = i
            apair[na, 1] = j
            nrm[na, 0] = q0 / qd
            nrm[na, 1] = q1 / qd
            nrm[na, 2] = q2 / qd
            na += 1
    blk = np.empty((k, 6))
    for q in range(k):
        w = (not periodic_z) and (lpos[q, 3] > lpos[q, 2] or lpos[q, 2] + lpos[q, 3] > bz)
        lwall[q] = w
        blk[q, 0] = 1.0
        blk[q, 1] = 1.0
        blk[q, 2] = 1.0 + (c if w else 0.0)
        blk[q, 3] = 0.0
        blk[q, 4] = 0.0
        blk[q, 5] = 0.0
    for t in range(na):
        n0, n1, n2 = nrm[t, 0], nrm[t, 1], nrm[t, 2]
        for e in range(2):
            q = apair[t, e]
            blk[q, 0] += c * n0 * n0
            blk[q, 1] += c * n1 * n1
            blk[q, 2] += c * n2 * n2
            blk[q, 3] += c * n0 * n1
            blk[q, 4] += c * n0 * n2
            blk[q, 5] += c * n1 * n2
    for q in range(k):
        a, d, f = blk[q, 0], blk[q, 1], blk[q, 2]
        b, e_, g = blk[q, 3], blk[q, 4], blk[q, 5]
        c00 = d * f - g * g
        c01 = e_ * g - b * f
        c02 = b * g - e_ * d
        inv = 1.0 / (a * c00 + b * c01 + e_ * c02)
        i11 = (a * f - e_ * e_) * inv
        i12 = (b * e_ - a * g) * inv
        i22 = (a * d - b * b) * inv
        c00 *= inv
        c01 *= inv
        c02 *= inv
        binv[q, 0] = c00
        binv[q, 1] = i11
        binv[q, 2] = i22
        binv[q, 3] = c01
        binv[q, 4] = c02
        binv[q, 5] = i12
        m = sub[q]
        r0 = keep * vel[m, 0] + mixdt * frc[m, 0]
        r1 = keep * vel[m, 1] + mixdt * frc[m, 1]
        r2 = keep * vel[m, 2] + mixdt * frc[m, 2]
        rhs[q, 0] = r0
        rhs[q, 1] = r1
        rhs[q, 2] = r2
        x[q, 0] = c00 * r0 + c01 * r1 + c02 * r2
        x[q, 1] = c01 * r0 + i11 * r1 + i12 * r2
        x[q, 2] = c02 * r0 + i12 * r1 + i22 * r2
    return na


@nb.njit(**_NB)
def _apply(v, apair, na, nrm, lwall, c, out):
    """``out = (I + c K) v``; returns ``v . out``."""
    vav = 0.0
    for q in range(v.shape[0]):
        w = c * v[q, 2] if lwall[q] else 0.0
        out[q, 0] = v[q, 0]
        out[q, 1] = v[q, 1]
        out[q, 2] = v[q, 2] + w
        vav += v[q, 0] * v[q, 0] + v[q, 1] * v[q, 1] + v[q, 2] * v[q, 2] + w * v[q, 2]
    for t in range(na):
        i = apair[t, 0]
        j = apair[t, 1]
        n0, n1, n2 = nrm[t, 0], nrm[t, 1], nrm[t, 2]
        u = n0 * (v[i, 0] - v[j, 0]) + n1 * (v[i, 1] - v[j, 1]) + n2 * (v[i, 2] - v[j, 2])
        s = c * u
        vav += s * u
        out[i, 0] += s * n0
        out[i, 1] += s * n1
        out[i, 2] += s * n2
        out[j, 0] -= s * n0
        out[j, 1] -= s * n1
        out[j, 2] -= s * n2
    return vav


@nb.njit(**_NB)
def _pcg(rhs, x, apair, na, nrm, lwall, c, binv, tol, maxit):
    """Solve ``(I + c K) x = rhs`` in place from the guess ``x``: conjugate gradients with the
    3 x 3 block-Jacobi preconditioner ``binv``, to ``|r| <= tol |rhs|`` or ``maxit`` iterations.
    Returns the iterations."""
    k = rhs.shape[0]
    r = np.empty((k, 3))
    z = np.empty((k, 3))
    p = np.empty((k, 3))
    ap = np.empty((k, 3))
    _apply(x, apair, na, nrm, lwall, c, ap)
    rz = 0.0
    rn = 0.0
    bn = 0.0
    for q in range(k):
        r0 = rhs[q, 0] - ap[q, 0]
        r1 = rhs[q, 1] - ap[q, 1]
        r2 = rhs[q, 2] - ap[q, 2]
        r[q, 0] = r0
        r[q, 1] = r1
        r[q, 2] = r2
        z0 = binv[q, 0] * r0 + binv[q, 3] * r1 + binv[q, 4] * r2
        z1 = binv[q, 3] * r0 + binv[q, 1] * r1 + binv[q, 5] * r2
        z2 = binv[q, 4] * r0 + binv[q, 5] * r1 + binv[q, 2] * r2
        p[q, 0] = z0
        p[q, 1] = z1
        p[q, 2] = z2
        rz += r0 * z0 + r1 * z1 + r2 * z2
        rn += r0 * r0 + r1 * r1 + r2 * r2
        bn += rhs[q, 0] ** 2 + rhs[q, 1] ** 2 + rhs[q, 2] ** 2
    it = 0
    while it < maxit and rn > tol * tol * bn:
        alpha = rz / _apply(p, apair, na, nrm, lwall, c, ap)
        rz_new = 0.0
        rn = 0.0
        for q in range(k):
            x[q, 0] += alpha * p[q, 0]
            x[q, 1] += alpha * p[q, 1]
            x[q, 2] += alpha * p[q, 2]
            r0 = r[q, 0] - alpha * ap[q, 0]
            r1 = r[q, 1] - alpha * ap[q, 1]
            r2 = r[q, 2] - alpha * ap[q, 2]
            r[q, 0] = r0
            r[q, 1] = r1
            r[q, 2] = r2
            z0 = binv[q, 0] * r0 + binv[q, 3] * r1 + binv[q, 4] * r2
            z1 = binv[q, 3] * r0 + binv[q, 1] * r1 + binv[q, 5] * r2
            z2 = binv[q, 4] * r0 + binv[q, 5] * r1 + binv[q, 2] * r2
            z[q, 0] = z0
            z[q, 1] = z1
            z[q, 2] = z2
            rz_new += r0 * z0 + r1 * z1 + r2 * z2
            rn += r0 * r0 + r1 * r1 + r2 * r2
        beta = rz_new / rz
        rz = rz_new
        for q in range(k):
            p[q, 0] = z[q, 0] + beta * p[q, 0]
            p[q, 1] = z[q, 1] + beta * p[q, 1]
            p[q, 2] = z[q, 2] + beta * p[q, 2]
        it += 1
    return it


@nb.njit(**_NB)
def _move(pos, vel, frc, keep, mixdt, dt, sub, x, ref, box, periodic_z, d2):
    """``v <- keep v + (mix + dt) F`` (unit masses), the implicit rows' velocities from ``x``,
    ``pos <- pos + dt v``; fills ``d2`` with squared displacements since ``ref`` and returns the
    sum of the two largest displacements."""
    n = pos.shape[0]
    for m in range(n):
        for a in range(3):
            vel[m, a] = keep * vel[m, a] + mixdt * frc[m, a]
    for q in range(sub.shape[0]):
        for a in range(3):
            vel[sub[q], a] = x[q, a]
    m1 = 0.0
    m2 = 0.0
    for m in range(n):
        g = 0.0
        for a in range(3):
            pos[m, a] += dt * vel[m, a]
            d = pos[m, a] - ref[m, a]
            if a < 2 or periodic_z:
                if d > 0.5 * box[a]:
                    d -= box[a]
                elif d < -0.5 * box[a]:
                    d += box[a]
            g += d * d
        d2[m] = g
        if g > m1:
            m2 = m1
            m1 = g
        elif g > m2:
            m2 = g
    return math.sqrt(m1) + math.sqrt(m2)


def fire_imex(pos, rad, hard, box, periodic_z, k_soft, k_hard, ftol, maxit, skin, dt_max):
    """Minimise the harmonic overlap energy in place; as :func:`esim.packing._fire` (same
    arguments less ``mass``, same returns: iterations, max |F|, energy, full and partial
    pair-list renewals), with the hard springs implicit (module docstring)."""
    from esim import packing as pk

    n = pos.shape[0]
    forces = pk._fire_kernels(n)[0]
    threaded = forces is pk._PAR[0]
    pk._wrap(pos, box, periodic_z)
    vel = np.zeros_like(pos)
    frc = np.zeros_like(pos)
    buf = np.zeros((pk._NCHUNK, n, 3))
    part = np.zeros((pk._NCHUNK, 6))
    d2 = np.zeros(n)
    ref = pos.copy()
    pairs, caps = pk._first_pairs(pos, rad, box, periodic_z, skin, threaded)

    def system():  # the implicit set and its buffers, renewed with the pair list
        hp = _hard_pairs(pairs, hard)
        sub, lij = _implicit_set(n, hp, hard, pos, rad, box, periodic_z, skin)
        k = sub.shape[0]
        return (sub, lij, np.empty((k, 4)), np.empty_like(lij), np.empty((lij.shape[0], 3)),
                np.zeros(k, np.bool_), np.empty((k, 6)), np.empty((k, 3)), np.empty((k, 3)))

    sub, lij, lpos, apair, nrm, lwall, binv, rhs, x = system()
    dt = 0.25 * dt_max
    alpha = pk._FIRE_ALPHA0
    n_pos = 0
    it = 0
    nrebuild = 0
    npartial = 0
    while True:
        e, fmax, pw, vn, fn = forces(pos, rad, hard, pairs, box, periodic_z, k_soft, k_hard,
                                     vel, buf, frc, part)
        if fmax < ftol or it >= maxit:
            break
        it += 1
        keep, mix, dt, alpha, n_pos = pk._fire_rules(pw, vn, fn, dt, alpha, n_pos, dt_max)
        c = dt * dt * k_hard
        na = _prepare(pos, rad, sub, lij, box, periodic_z, vel, frc, keep, mix + dt, c,
                      lpos, apair, nrm, lwall, binv, rhs, x)
        _pcg(rhs, x, apair, na, nrm, lwall, c, binv, _CG_TOL, _CG_MAX)
        if _move(pos, vel, frc, keep, mix + dt, dt, sub, x, ref, box, periodic_z, d2) > skin:
            pairs, caps, full = pk._renew_pairs(pos, rad, box, periodic_z, skin, ref, d2, pairs,
                                                threaded, caps)
            nrebuild += full
            npartial += not full
            sub, lij, lpos, apair, nrm, lwall, binv, rhs, x = system()
    pk._wrap(pos, box, periodic_z)
    return it, fmax, e, nrebuild, npartial
