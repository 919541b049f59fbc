"""The synthetic market's intraday refinement: bars split into their children in one pass.

Each parent bar (open, high, low, close, volume) becomes ``r`` children: closes on a Brownian
bridge from the parent's open to its close, kept inside its high and low, wicks from the
draws, the parent's high and low reached inside the children that come closest to them, the
volume shared out by the slots' weights. :func:`split_into` is the arithmetic that
``pipeline.providers.synthetic`` did as some forty numpy passes over (sessions x slots)
arrays, done per parent in registers: the same operations in the same order and precision
(float32 draws shifted in float32, then widened; the volume shares summed the way numpy's
``sum`` pairs them), so the market's series are unchanged bit for bit. The split runs about
four times faster; ten years of hourly bars are generated about 45% faster in all.

It lives beside the market, not in ``marketlake.kernels``: importing that package starts
loading every indicator kernel in the background, which a sync of the synthetic market never
calls and which cost it about a tenth of its time. The kernel uses nothing outside this
module, so numba's own cache stamp (this file's) keeps its cached code in step; building the
package fills that cache too (:func:`precompile`, run by ``setup.py``).
"""

from __future__ import annotations

import numba
import numpy as np
from numba import njit

_SQRT12 = 12**0.5


@njit(cache=True, nogil=True)
def _pairwise(a: np.ndarray, n: int) -> float:
    """The sum of ``a[:n]`` (n <= 128) as numpy's pairwise summation gives it: a plain loop
    below eight values, else eight interleaved partial sums combined in a fixed tree."""
    if n < 8:
        res = 0.0
        for i in range(n):
            res += a[i]
        return res
    r0, r1, r2, r3, r4, r5, r6, r7 = a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7]
    i = 8
    end = n - n % 8
    while i < end:
        r0 += a[i]
        r1 += a[i + 1]
        r2 += a[i + 2]
        r3 += a[i + 3]
        r4 += a[i + 4]
        r5 += a[i + 5]
        r6 += a[i + 6]
        r7 += a[i + 7]
        i += 8
    res = ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7))
    while i < n:
        res += a[i]
        i += 1
    return res


@njit(cache=True, nogil=True)
def split_into(o, h, lo, c, v, sqrt_frac, cumfrac, tail, invalid, weight, draws, out):
    """Split each parent ``[s, p]`` of ``o, h, lo, c, v`` (sessions x parents) into the
    ``r`` children of the layout (``sqrt_frac``, ``cumfrac``, ``tail``, ``invalid``,
    ``weight``: parents x r, as ``synthetic._layout`` makes them), with the uniform draws
    ``draws`` (4 x sessions x parents * r, float32: bridge, upper wick, lower wick, volume);
    writes open, high, low, close and volume into ``out`` (5 x sessions x parents * r).
    Padding slots (``invalid``) get values that are never used."""
    sessions, parents = o.shape
    r = sqrt_frac.shape[1]
    if r > 128:
        raise ValueError("at most 128 children per bar")
    walk = np.empty(r)
    close = np.empty(r)
    vol = np.empty(r)
    half = np.float32(0.5)
    for s in range(sessions):
        for p in range(parents):
            po, ph, pl, pc, pv = o[s, p], h[s, p], lo[s, p], c[s, p], v[s, p]
            span = ph - pl
            base = p * r
            # uniform increments of unit variance: a random walk, pinned at both ends
            acc = 0.0
            for j in range(r):
                acc += np.float64(draws[0, s, base + j] - half) * sqrt_frac[p, j]
                walk[j] = acc * _SQRT12
            end = walk[r - 1]
            for j in range(r):
                bridge = (walk[j] - cumfrac[p, j] * end) * span * 0.6
                x = (pc - po) * cumfrac[p, j] + po + bridge
                x = min(max(x, pl), ph)
                close[j] = pc if tail[p, j] else x
            wick_scale = span * 0.3
            best_hi, at_hi, best_lo, at_lo = -np.inf, 0, np.inf, 0
            for j in range(r):
                op = po if j == 0 else close[j - 1]
                cl = close[j]
                wick = wick_scale * sqrt_frac[p, j]
                hi = max(op, cl) + np.float64(draws[1, s, base + j]) * wick
                low = min(op, cl) - np.float64(draws[2, s, base + j]) * wick
                out[0, s, base + j] = op
                out[1, s, base + j] = min(hi, ph)
                out[2, s, base + j] = max(low, pl)
                out[3, s, base + j] = cl
                if invalid[p, j]:
                    hi, low = -np.inf, np.inf
                if hi > best_hi:  # the first child closest to the parent's high
                    best_hi, at_hi = hi, j
                if low < best_lo:
                    best_lo, at_lo = low, j
                vol[j] = weight[p, j] * np.float64(half + draws[3, s, base + j])
            out[1, s, base + at_hi] = ph
            out[2, s, base + at_lo] = pl
            total = _pairwise(vol, r)
            if not total > 0:  # a padding parent has no weight
                total = 1.0
            for j in range(r):
                out[4, s, base + j] = (pv * vol[j]) / total


def example_args() -> tuple:
    """Arguments of the one signature :func:`split_into` is built for: read-only C-contiguous
    inputs (as ``synthetic._split`` passes them) and a writable output."""

    def ro(a: np.ndarray) -> np.ndarray:
        a.flags.writeable = False
        return a

    bars = [ro(np.ones((1, 1))) for _ in range(5)]
    lay = [ro(np.ones((1, 2))), ro(np.ones((1, 2)))]
    lay += [ro(np.zeros((1, 2), np.bool_)), ro(np.zeros((1, 2), np.bool_)), ro(np.ones((1, 2)))]
    draws = ro(np.zeros((4, 1, 2), np.float32))
    return (*bars, *lay, draws, np.empty((5, 1, 2)))


def load() -> None:
    """Load the compiled split now (numba's start-up and the cached machine code: about half
    a second, paid once per process): a sync that will ask for intraday bars does it on a
    thread while it plans and fetches daily bars, instead of in its first intraday request."""
    split_into.compile(tuple(numba.typeof(a) for a in example_args()))


def precompile() -> None:
    """Compile (or load) the split's one signature into numba's cache; used at build time."""
    split_into(*example_args())
