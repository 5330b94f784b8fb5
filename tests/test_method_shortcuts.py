"""The string shortcuts of solve(method=...): "sgd" is gradient steps, or forward–backward
when the regularizer is non-smooth (its prox is needed)."""

import pytest

import measureflow as mf


@pytest.mark.parametrize("reg,rule", [(None, mf.methods.GradientStep), (mf.L2(0.1), mf.methods.GradientStep),
                                      (mf.L1(0.1), mf.methods.ForwardBackward)], ids=["none", "l2", "l1"])
def test_sgd_resolves_by_the_regularizers_smoothness(reg, rule):
    assert type(mf.methods.get("sgd", reg)) is rule


def test_the_other_shortcuts_and_a_rule_pass_through():
    assert type(mf.methods.get("gd")) is mf.methods.GradientStep
    assert type(mf.methods.get("fb", mf.L2(0.1))) is mf.methods.ForwardBackward
    assert type(mf.methods.get("wfr")) is mf.methods.WFR
    rule = mf.methods.WFR(alpha=2.0)
    assert mf.methods.get(rule, mf.L1(0.1)) is rule
