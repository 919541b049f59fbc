"""The synthetic market's seeded generators, many at a time.

``np.random.default_rng([a, b, c])`` costs about 25 µs of Python and Cython around very
little arithmetic (a ``SeedSequence`` hashes the words, ``PCG64`` takes four of its words as
its state). A nightly run seeds thousands, so :func:`states` hashes the words of many seeds
in one vectorised pass, by the algorithm numpy documents as stable (NEP 19:
``SeedSequence`` and ``PCG64`` seeding keep their streams across versions), and
:class:`Seeded` sets each state on one reused generator: the draws are those of
``default_rng`` with the same words, bit for bit.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

_POOL = 4
_INIT_A, _MULT_A = 0x43B0D7E5, 0x931E8875
_INIT_B, _MULT_B = 0x8B51F9DD, 0x58F38DED
_MIX_L, _MIX_R = 0xCA01F9DD, 0x4973F715
_MASK32 = 0xFFFFFFFF
_MASK128 = (1 << 128) - 1
_PCG_MULT = 0x2360ED051FC65DA44385DF649FCCF645


def _words(value: int) -> list[int]:
    """A non-negative int as numpy's SeedSequence reads it: 32-bit words, low first."""
    if value < 0:
        raise ValueError("seed words must be non-negative")
    out = [value & _MASK32]
    value >>= 32
    while value:
        out.append(value & _MASK32)
        value >>= 32
    return out


def _hashmix(value: np.ndarray, const: list[int]) -> np.ndarray:
    value = value ^ np.uint32(const[0])
    const[0] = (const[0] * _MULT_A) & _MASK32
    value = value * np.uint32(const[0])
    return value ^ (value >> np.uint32(16))


def _mix(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    out = np.uint32(_MIX_L) * x - np.uint32(_MIX_R) * y
    return out ^ (out >> np.uint32(16))


def states(
    head: Sequence[int], tails: Sequence[Sequence[int]] | np.ndarray
) -> list[tuple[int, int]]:
    """The PCG64 (state, inc) of ``default_rng([*head, *tail])`` for each row of ``tails``
    (non-negative ints below 2**32, one word each)."""
    n = len(tails)
    if not n:
        return []
    tails = np.asarray(tails, dtype=np.int64).reshape(n, -1)
    words = [w for v in head for w in _words(int(v))]
    cols = [np.full(n, w, dtype=np.uint32) for w in words]
    if tails.size and (tails.min() < 0 or tails.max() > _MASK32):
        raise ValueError("seed words must be below 2**32")
    cols += [tails[:, j].astype(np.uint32) for j in range(tails.shape[1])]
    zero = np.zeros(n, dtype=np.uint32)
    with np.errstate(over="ignore"):
        const = [_INIT_A]
        pool = [_hashmix(cols[i] if i < len(cols) else zero, const) for i in range(_POOL)]
        for src in range(_POOL):
            for dst in range(_POOL):
                if src != dst:
                    pool[dst] = _mix(pool[dst], _hashmix(pool[src], const))
        for src in range(_POOL, len(cols)):
            for dst in range(_POOL):
                pool[dst] = _mix(pool[dst], _hashmix(cols[src], const))
        out = []
        const_b = _INIT_B
        for i in range(8):  # generate_state(4, uint64): eight 32-bit words, low word first
            value = pool[i % _POOL] ^ np.uint32(const_b)
            const_b = (const_b * _MULT_B) & _MASK32
            value = value * np.uint32(const_b)
            out.append(value ^ (value >> np.uint32(16)))
    u64 = [(out[2 * i + 1].astype(np.uint64) << np.uint64(32)) | out[2 * i] for i in range(4)]
    s = (u64[0].tolist(), u64[1].tolist(), u64[2].tolist(), u64[3].tolist())
    result = []
    for s0, s1, i0, i1 in zip(*s, strict=True):
        inc = ((((i0 << 64) | i1) << 1) | 1) & _MASK128
        state = inc  # state 0, one step: 0 * mult + inc
        state = (state + ((s0 << 64) | s1)) & _MASK128
        state = (state * _PCG_MULT + inc) & _MASK128
        result.append((state, inc))
    return result


class Seeded:
    """``default_rng([*head, *tail])`` for each row of ``tails``, by its row number: one
    generator, its state set for the row asked (draw from it before asking the next)."""

    def __init__(self, head: Sequence[int], tails: Sequence[Sequence[int]] | np.ndarray) -> None:
        self._states = states(head, tails)
        self._rng = np.random.Generator(np.random.PCG64())

    def __len__(self) -> int:
        return len(self._states)

    def __getitem__(self, row: int) -> np.random.Generator:
        state, inc = self._states[row]
        self._rng.bit_generator.state = {
            "bit_generator": "PCG64",
            "state": {"state": state, "inc": inc},
            "has_uint32": 0,
            "uinteger": 0,
        }
        return self._rng
