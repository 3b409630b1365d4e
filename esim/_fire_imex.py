"""FIRE with the stiff NMC-NMC springs integrated implicitly (the ``fire-imex`` minimiser).

The plain minimiser (:func:`esim.packing._fire`) integrates every spring explicitly, so its time
step is set by the stiffest ones: it gives each NMC particle a mass equal to the NMC-NMC
stiffness (``structure.nmc_stiffness_ratio``), which keeps the step stable but makes the NMC
network respond to the glass's forces ~100 times more slowly.  The iteration count then grows
with the stiffness contrast (at 3e4 particles, seed 3: 16.9k iterations at ratio 100 against
4.4k at ratio 1; docs/packing.md).

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

Threading.  Every loop runs over ``_NCH`` fixed chunks of rows, in serial kernels and their
threaded twins (``esim.packing._twin``; threaded when the force kernel is, from
``_PARALLEL_MIN_PARTICLES`` particles).  The rows are the implicit particles in ascending, i.e.
cell, order, so a hard pair is nearly always *internal* to one chunk (both rows in it: 95 % at
1e5 particles) and its scatter writes only that chunk's rows; the few *boundary* pairs are
added serially after each parallel pass, and partial sums are added in chunk order.  Results
are therefore the same bytes on any number of threads (``tests/test_packing.py``).  (A
conflict-free gather over each row's pairs was measured first: twice the memory traffic of the
scatter, and slower on 2 threads than the serial scatter.)

Measured (default composite, 1e5 particles, seeds 20200824, 1 and 2, 2 threads, one run of
``benchmarks/results/packing_1e5_imex_threaded.md``): 5.8k, 6.8k and 5.3k FIRE iterations at
10.5 ms, 52.3, 71.8 and 56.1 s (median 56.1 s; an earlier run of the same code: 56.7 s), against
38.3k, 24.4k and 16.0k iterations at 5.4 ms, 203, 141 and 86 s for plain FIRE (median 141 s,
ratio 2.5).  The serial implicit solve before it took 14.5 ms per iteration and a median of
118 s (``packing_1e5_minimisers.md``).  The gain grows with the stiffness ratio, which plain
FIRE pays for in iterations and this step does not: at ratio 1000 on the default box (serial
kernels), 11.6k and 12.9k against 71.6k and 72.6k iterations, 5.8-6.3 s against 13.4-14.7 s.
"""

from __future__ import annotations

import math

import numba as nb
import numpy as np

from esim.packing import _top2, _top2_merged, _twin

_NB = dict(cache=True, nogil=True)
_CG_TOL = 1e-2  # relative residual of the implicit solve
_CG_MAX = 8  # most conjugate-gradient iterations per FIRE step
# The rows are cut into _NCH fixed chunks; a hard pair is "internal" to a chunk when both its
# rows lie in it (95 % of them at 1e5 particles: rows keep the particles' cell order) and
# "boundary" otherwise.  Every threaded loop runs over these chunks; internal pairs write only
# their own chunk's rows, boundary pairs are added serially afterwards, and partial sums are
# added chunk by chunk in a fixed order, so results do not depend on the number of threads.
_NCH = 4


def _hard_pairs_impl(pairs, hard):
    """The pairs of the Verlet list whose two particles are both hard, in list order."""
    npair = pairs.shape[0]
    cnt = np.zeros(_NCH + 1, np.int64)
    for ch in nb.prange(_NCH):
        c = 0
        for p in range(npair * ch // _NCH, npair * (ch + 1) // _NCH):
            if hard[pairs[p, 0]] and hard[pairs[p, 1]]:
                c += 1
        cnt[ch + 1] = c
    for ch in range(_NCH):
        cnt[ch + 1] += cnt[ch]
    hp = np.empty((cnt[_NCH], 2), np.int64)
    for ch in nb.prange(_NCH):
        c = cnt[ch]
        for p in range(npair * ch // _NCH, npair * (ch + 1) // _NCH):
            if hard[pairs[p, 0]] and hard[pairs[p, 1]]:
                hp[c, 0] = pairs[p, 0]
                hp[c, 1] = pairs[p, 1]
                c += 1
    return hp


@nb.njit(**_NB)
def _implicit_set(n, hp, hard, pos, rad, box, periodic_z, margin):
    """The particles that may carry a hard spring until the next pair-list renewal: both ends of
    every hard pair, and hard particles within ``margin`` (the skin) of a wall.

    Returns ``sub`` (local row q -> particle, ascending, so rows keep the particles' memory
    order), ``loc`` (particle -> row, -1 outside), the hard pairs in local rows ``lij``
    grouped by row chunk (group g < _NCH: both rows in chunk g; group _NCH: the rest; list
    order within a group), and the groups' bounds ``gptr``.
    """
    loc = np.full(n, -1, np.int64)
    for p in range(hp.shape[0]):
        loc[hp[p, 0]] = 0
        loc[hp[p, 1]] = 0
    if not periodic_z:
        for m in range(n):
            if hard[m] and (pos[m, 2] < rad[m] + margin or pos[m, 2] > box[2] - rad[m] - margin):
                loc[m] = 0
    k = 0
    for m in range(n):
        if loc[m] == 0:
            loc[m] = k
            k += 1
        else:
            loc[m] = -1
    sub = np.empty(k, np.int64)
    for m in range(n):
        if loc[m] >= 0:
            sub[loc[m]] = m
    rowch = np.empty(k, np.int64)
    for ch in range(_NCH):
        rowch[k * ch // _NCH:k * (ch + 1) // _NCH] = ch
    npair = hp.shape[0]
    grp = np.empty(npair, np.int64)
    gptr = np.zeros(_NCH + 2, np.int64)
    for p in range(npair):
        ci = rowch[loc[hp[p, 0]]]
        g = ci if ci == rowch[loc[hp[p, 1]]] else _NCH
        grp[p] = g
        gptr[g + 1] += 1
    for g in range(_NCH + 1):
        gptr[g + 1] += gptr[g]
    fill = gptr[:_NCH + 1].copy()
    lij = np.empty_like(hp)
    for p in range(npair):
        g = grp[p]
        lij[fill[g], 0] = loc[hp[p, 0]]
        lij[fill[g], 1] = loc[hp[p, 1]]
        fill[g] += 1
    return sub, loc, lij, gptr


def _prepare_impl(pos, rad, sub, lij, gptr, box, periodic_z, vel, frc, keep, mixdt, c, lpos,
                  apair, nrm, acnt, lwall, blk, binv, rhs, x, part):
    """One step's linear system, in local rows (``sub``): positions and radii gathered into
    ``lpos`` (so the pair scan stays in cache); the overlapping hard pairs of each group g
    compacted to ``apair[gptr[g]:gptr[g] + acnt[g]]`` with their unit normals ``nrm``; the wall
    contacts ``lwall``; the inverse 3 x 3 diagonal blocks of ``I + c K`` (``binv``, symmetric:
    xx yy zz xy xz yz; ``blk`` is work space); the right-hand side and the block-Jacobi first
    guess ``x``.  Fills the preallocated arrays; returns (overlapping pairs, |rhs|^2)."""
    k = sub.shape[0]
    bx, by, bz = box[0], box[1], box[2]
    for ch in nb.prange(_NCH):
        for q in range(k * ch // _NCH, k * (ch + 1) // _NCH):
            m = sub[q]
            z, r = pos[m, 2], rad[m]
            lpos[q, 0] = pos[m, 0]
            lpos[q, 1] = pos[m, 1]
            lpos[q, 2] = z
            lpos[q, 3] = r
            w = (not periodic_z) and (r > z or z + r > bz)
            lwall[q] = w
            blk[q, 0] = 1.0
            blk[q, 1] = 1.0
            blk[q, 2] = 1.0 + (c if w else 0.0)
            blk[q, 3] = 0.0
            blk[q, 4] = 0.0
            blk[q, 5] = 0.0
    for g in nb.prange(_NCH + 1):
        na = gptr[g]
        for p in range(gptr[g], gptr[g + 1]):
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
                iq = 1.0 / math.sqrt(dd)
                apair[na, 0] = i
                apair[na, 1] = j
                nrm[na, 0] = q0 * iq
                nrm[na, 1] = q1 * iq
                nrm[na, 2] = q2 * iq
                na += 1
        acnt[g] = na - gptr[g]
        if g < _NCH:  # internal pairs: their rows are this chunk's
            _add_blocks(apair, nrm, gptr[g], na, c, blk)
    _add_blocks(apair, nrm, gptr[_NCH], gptr[_NCH] + acnt[_NCH], c, blk)
    for ch in nb.prange(_NCH):
        bn = 0.0
        for q in range(k * ch // _NCH, k * (ch + 1) // _NCH):
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
            bn += r0 * r0 + r1 * r1 + r2 * r2
        part[ch, 0] = bn
    na = 0
    bn = 0.0
    for g in range(_NCH + 1):
        na += acnt[g]
    for ch in range(_NCH):
        bn += part[ch, 0]
    return na, bn


@nb.njit(**_NB)
def _add_blocks(apair, nrm, t0, t1, c, blk):
    """Add ``c n n^T`` of the active pairs ``t0:t1`` to both rows' diagonal blocks."""
    for t in range(t0, t1):
        n0, n1, n2 = nrm[t, 0], nrm[t, 1], nrm[t, 2]
        for e in range(2):
            q = apair[t, e]
            blk[q, 0] += c * n0 * n0
            blk[q, 1] += c * n1 * n1
            blk[q, 2] += c * n2 * n2
            blk[q, 3] += c * n0 * n1
            blk[q, 4] += c * n0 * n2
            blk[q, 5] += c * n1 * n2


@nb.njit(**_NB)
def _scatter(v, apair, nrm, t0, t1, c, out):
    """``out += c K_t v`` for the active pairs ``t0:t1``; returns their ``v . c K_t v``."""
    vav = 0.0
    for t in range(t0, t1):
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


def _pcg_impl(rhs, x, bn, apair, gptr, acnt, nrm, lwall, c, binv, tol, maxit, r, z, p, ap,
              part):
    """Solve ``(I + c K) x = rhs`` in place from the guess ``x``: conjugate gradients with the
    3 x 3 block-Jacobi preconditioner ``binv``, to ``|r| <= tol |rhs|`` (``bn = |rhs|^2``) or
    ``maxit`` iterations.  ``r, z, p, ap`` (rows x 3) and ``part`` are work arrays.  Returns
    the iterations.

    The product ``(I + c K) v`` runs per row chunk (the identity, the wall term and the chunk's
    internal pairs), then adds the boundary pairs.  Its first call applies it to ``x`` (the
    residual); later calls to ``p``, whose update is fused into the same pass."""
    k = rhs.shape[0]
    it = -1
    rz = 0.0
    rn = 0.0
    beta = 0.0
    while True:
        v = x if it < 0 else p
        for ch in nb.prange(_NCH):
            vav = 0.0
            for q in range(k * ch // _NCH, k * (ch + 1) // _NCH):
                if it == 0:  # the first direction
                    p[q, 0] = z[q, 0]
                    p[q, 1] = z[q, 1]
                    p[q, 2] = z[q, 2]
                elif it > 0:  # the next direction (a chunk's internal pairs read its own rows)
                    p[q, 0] = z[q, 0] + beta * p[q, 0]
                    p[q, 1] = z[q, 1] + beta * p[q, 1]
                    p[q, 2] = z[q, 2] + beta * p[q, 2]
                w = c * v[q, 2] if lwall[q] else 0.0
                ap[q, 0] = v[q, 0]
                ap[q, 1] = v[q, 1]
                ap[q, 2] = v[q, 2] + w
                vav += v[q, 0] * v[q, 0] + v[q, 1] * v[q, 1] + v[q, 2] * v[q, 2] + w * v[q, 2]
            part[ch, 0] = vav + _scatter(v, apair, nrm, gptr[ch], gptr[ch] + acnt[ch], c, ap)
        pap = _scatter(v, apair, nrm, gptr[_NCH], gptr[_NCH] + acnt[_NCH], c, ap)
        alpha = 0.0
        if it >= 0:
            for ch in range(_NCH):
                pap += part[ch, 0]
            alpha = rz / pap
        for ch in nb.prange(_NCH):
            crz = 0.0
            crn = 0.0
            for q in range(k * ch // _NCH, k * (ch + 1) // _NCH):
                if it < 0:  # r = rhs - A x
                    r0 = rhs[q, 0] - ap[q, 0]
                    r1 = rhs[q, 1] - ap[q, 1]
                    r2 = rhs[q, 2] - ap[q, 2]
                else:
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
                crz += r0 * z0 + r1 * z1 + r2 * z2
                crn += r0 * r0 + r1 * r1 + r2 * r2
            part[ch, 1] = crz
            part[ch, 2] = crn
        rz_new = 0.0
        rn = 0.0
        for ch in range(_NCH):
            rz_new += part[ch, 1]
            rn += part[ch, 2]
        beta = rz_new / rz if it >= 0 else 0.0
        rz = rz_new
        it += 1
        if it >= maxit or rn <= tol * tol * bn:
            return it


def _move_impl(pos, vel, frc, keep, mixdt, dt, loc, x, ref, box, periodic_z, d2, top):
    """``v <- keep v + (mix + dt) F`` (unit masses), or the implicit solution ``x`` on the
    implicit rows (``loc``), then ``pos <- pos + dt v``; fills ``d2`` with squared displacements
    since ``ref`` and returns the sum of the two largest displacements (per fixed chunk, then
    merged: exact and thread-count independent)."""
    n = pos.shape[0]
    for ch in nb.prange(_NCH):
        m1 = 0.0
        m2 = 0.0
        for m in range(n * ch // _NCH, n * (ch + 1) // _NCH):
            q = loc[m]
            g = 0.0
            for a in range(3):
                vm = x[q, a] if q >= 0 else keep * vel[m, a] + mixdt * frc[m, a]
                vel[m, a] = vm
                pos[m, a] += dt * vm
                d = pos[m, a] - ref[m, a]
                if a < 2 or periodic_z:
                    if d > 0.5 * box[a]:
                        d -= box[a]
                    elif d < -0.5 * box[a]:
                        d += box[a]
                g += d * d
            d2[m] = g
            m1, m2 = _top2(m1, m2, g)
        top[ch, 0] = m1
        top[ch, 1] = m2
    return _top2_merged(top[:, :2])


def _kernels(threaded: bool) -> tuple:
    """(hard_pairs, prepare, pcg, move): the serial kernels, or their threaded twins."""
    return _PAR if threaded else _SER


_IMPL = (_hard_pairs_impl, _prepare_impl, _pcg_impl, _move_impl)
_SER = tuple(nb.njit(**_NB)(f) for f in _IMPL)
_PAR = tuple(nb.njit(cache=True, nogil=True, parallel=True)(_twin(f, "_par")) for f in _IMPL)
# the serial kernels under their plain names (tests, profiling)
_hard_pairs, _prepare, _pcg, _move = _SER


def fire_imex(pos, rad, hard, box, periodic_z, k_soft, k_hard, ftol, maxit, skin, dt_max):
    """Minimise the harmonic overlap energy in place; as :func:`esim.packing._fire` (same
    arguments less ``mass``, same returns: iterations, max |F|, energy, full and partial
    pair-list renewals), with the hard springs implicit (module docstring)."""
    from esim import packing as pk

    n = pos.shape[0]
    forces = pk._fire_kernels(n)[0]
    threaded = forces is pk._PAR[0]
    hard_pairs, prepare, pcg, move = _kernels(threaded)
    pk._wrap(pos, box, periodic_z)
    vel = np.zeros_like(pos)
    frc = np.zeros_like(pos)
    buf = np.zeros((pk._NCHUNK, n, 3))
    part = np.zeros((pk._NCHUNK, 6))
    work = np.zeros((_NCH, 3))
    d2 = np.zeros(n)
    ref = pos.copy()
    pairs, caps = pk._first_pairs(pos, rad, box, periodic_z, skin, threaded)

    def system():  # the implicit rows, their pairs and the solver's arrays: per pair-list renewal
        sub, loc, lij, gptr = _implicit_set(n, hard_pairs(pairs, hard), hard, pos, rad, box,
                                            periodic_z, skin)
        k, m = sub.shape[0], lij.shape[0]
        arrays = (np.empty((k, 4)), np.empty_like(lij), np.empty((m, 3)),
                  np.zeros(_NCH + 1, np.int64), np.zeros(k, np.bool_), np.empty((k, 6)),
                  np.empty((k, 6)))  # lpos, apair, nrm, acnt, lwall, blk, binv
        rows = tuple(np.empty((k, 3)) for _ in range(6))  # rhs, x, r, z, p, Ap
        return sub, loc, lij, gptr, arrays, rows

    sub, loc, lij, gptr, arrays, rows = system()
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
        rhs, x, r, z, p, ap = rows
        lpos, apair, nrm, acnt, lwall, blk, binv = arrays
        bn = prepare(pos, rad, sub, lij, gptr, box, periodic_z, vel, frc, keep, mix + dt, c,
                     lpos, apair, nrm, acnt, lwall, blk, binv, rhs, x, work)[1]
        pcg(rhs, x, bn, apair, gptr, acnt, nrm, lwall, c, binv, _CG_TOL, _CG_MAX, r, z, p, ap,
            work)
        if move(pos, vel, frc, keep, mix + dt, dt, loc, x, ref, box, periodic_z, d2, work) > skin:
            pairs, caps, full = pk._renew_pairs(pos, rad, box, periodic_z, skin, ref, d2, pairs,
                                                threaded, caps)
            nrebuild += full
            npartial += not full
            sub, loc, lij, gptr, arrays, rows = system()
    pk._wrap(pos, box, periodic_z)
    return it, fmax, e, nrebuild, npartial
