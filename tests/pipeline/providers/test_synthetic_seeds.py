import numpy as np
import pytest

from marketlake.pipeline.providers.synthetic_seeds import Seeded, states


@pytest.mark.parametrize("head", [[42], [7, 0], [2**40 + 3], [2**70 + 5, 3], [0], []])
def test_states_are_those_of_default_rng(head):
    tails = np.random.default_rng(5).integers(0, 2**32, size=(400, 2))
    tails[:3] = [[0, 0], [2**32 - 1, 0], [0, 2**32 - 1]]
    for (state, inc), tail in zip(states(head, tails), tails.tolist(), strict=True):
        ref = np.random.default_rng([*head, *tail]).bit_generator.state
        assert ref["state"] == {"state": state, "inc": inc}


def test_seeded_draws_are_those_of_default_rng_in_any_order():
    tails = [(h, key) for h in (0, 1, 123456789, 2**32 - 1) for key in (7, 11, 2026)]
    seeded = Seeded([42], tails)
    assert len(seeded) == len(tails)
    for row in [5, 0, 11, 5, 3]:
        rng, ref = seeded[row], np.random.default_rng([42, *tails[row]])
        assert rng.integers(3, 12) == ref.integers(3, 12)
        assert rng.standard_normal(7).tobytes() == ref.standard_normal(7).tobytes()
        assert rng.uniform(0.006, 0.03, 4).tobytes() == ref.uniform(0.006, 0.03, 4).tobytes()


def test_words_out_of_range_are_refused():
    assert states([42], []) == []
    with pytest.raises(ValueError):
        states([-1], [[1]])
    with pytest.raises(ValueError):
        states([42], [[2**32]])
