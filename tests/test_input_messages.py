"""Input errors whose message carries numbers or lists: the exact text, where the message is
built from the input (tests/bad_inputs_table.py checks every error's class and its start)."""

import re

import numpy as np
import pytest

import measureflow as mf


@pytest.mark.parametrize("bad,shown", [([0.0, 2.0, 3.0], "0.0, 2.0, 3.0)"), ([0.0, 2.0, 3.0, 5.0], "0.0, 2.0, 3.0, ...)")])
def test_logistic_label_error_lists_three_bad_values_then_an_ellipsis(bad, shown):
    """Up to three distinct bad labels are listed; a fourth becomes '...'; the count is of
    bad entries (each bad value twice here). Checked before the run starts."""
    y = np.array([1.0, -1.0] + bad + bad)
    data = mf.data.Dataset(np.ones((len(y), 2)), y)
    with pytest.raises(mf.ValidationError, match=re.escape(f"y has {2 * len(bad)} other value(s) ({shown};")):
        mf.solve(mf.Problem(mf.features.ReLU(input_dim=2), "logistic", None, data),
                 mf.Particles(np.ones((3, 3)), np.ones(3) / 3), step=0.1, iterations=1)


def test_a_failing_user_feature_is_named_with_its_error_class_and_first_line():
    """The user's exception is reported as 'Class: its first line' (one line, not its trace)."""

    def feature(th, x):
        raise ValueError("first line of the user's error\nsecond line")

    data = mf.data.Dataset(np.ones((4, 2)), np.ones(4))
    with pytest.raises(mf.ValidationError) as err:
        mf.Problem(mf.features.Custom(feature, dim=3), "square", None, data)
    assert str(err.value) == ("the feature Custom φ(θ, x) (θ in R^3, x in R^2) fails on inputs of shapes (3,), (2,): "
                              "ValueError: first line of the user's error")


def test_a_schedule_must_stay_positive_up_to_iteration_1000():
    """Zero is refused up to t = 1000 (a mistake) and allowed beyond (late underflow); the
    message names the first bad iteration."""
    import jax.numpy as jnp

    def off_from(t0):
        return lambda t: jnp.where(jnp.asarray(t) < t0, 1.0, 0.0)

    with pytest.raises(mf.ValidationError, match=re.escape("schedule(1000) = 0 (τ_t")):
        mf.methods.Langevin(0.1, schedule=off_from(1000))
    mf.methods.Langevin(0.1, schedule=off_from(1001))  # zero only after t = 1000: accepted


def test_a_grid_too_coarse_for_the_kernel_names_the_needed_size():
    with pytest.raises(mf.ValidationError) as err:
        mf.data.SpikeSignal(3, cutoff=10, grid=15)
    assert str(err.value) == ("grid=15 cannot represent the cut-off f_c=10: the square loss on an N-point grid "
                              "equals the exact L² loss of the filtered signal only for N > 2K = 20; use grid >= 21")
