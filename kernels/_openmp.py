"""How long the OpenMP threads behind the parallel driver spin before they sleep.

numba's ``omp`` threading layer runs ``driver.run_plan`` on GNU OpenMP, whose idle threads spin
for ``GOMP_SPINCOUNT`` iterations (300,000 by default) before sleeping: after every call the
worker thread burns its core for milliseconds, CPU that the caller's own next step and the
machine's other processes then lack. A short spin keeps the hand-offs inside a call quick and
lets the threads sleep right after it. Measured (2 cores, load average 6-7, medians of 3,
2,000 x 2,520 bars, the 8 TA-Lib indicators): a 16-symbol call took 2.3 ms CPU, 2.5 ms wall
with 10,000 spins against 9.1-10.1 ms CPU, 20-31 ms wall with the default; a 2,000-symbol call
110-118 ms CPU against 120-187 ms (0 spins: 119-126 ms CPU, but its wall time grew).

libgomp reads the variable once, when it is loaded (numba loads it with the first parallel
code), so :func:`limit_spin` runs when ``marketlake.kernels`` is imported. A setting of the
caller's -- ``GOMP_SPINCOUNT`` or ``OMP_WAIT_POLICY`` -- is left as it is.
"""

from __future__ import annotations

import os

SPIN_COUNT = 10_000


def limit_spin() -> None:
    """Set ``GOMP_SPINCOUNT`` to :data:`SPIN_COUNT` unless the process chose a wait policy."""
    if "GOMP_SPINCOUNT" not in os.environ and "OMP_WAIT_POLICY" not in os.environ:
        os.environ["GOMP_SPINCOUNT"] = str(SPIN_COUNT)


__all__ = ["SPIN_COUNT", "limit_spin"]
