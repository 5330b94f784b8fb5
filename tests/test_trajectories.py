"""The trajectory experiment: the mass-within-5° measure on constructed students, the
coordinates in which a student at the optimum sits on the teacher's marks, the spikes'
analogue, the ``test`` preset's tables and figures, and every experiment's presets
against its ``Params`` model."""

from __future__ import annotations

import numpy as np
import pytest

import measureflow as mf
from measureflow.experiments import first_variation, mean_field_limit
from measureflow.experiments import trajectories as tr
from measureflow.experiments.tables import paths_array, read_table

ANGLES, SIGNS = [0.0, 120.0, 250.0], [1, 1, -1]


def _teacher():
    a = np.radians(ANGLES)
    return np.stack([np.cos(a), np.sin(a), np.asarray(SIGNS, dtype=float)], axis=1)


def _unit(degrees, size, a):
    """A unit (w₁, w₂, a) with direction ``degrees`` and |w| = size."""
    r = np.radians(degrees)
    return [size * np.cos(r), size * np.sin(r), a]


# -- the mass-within-5° measure -----------------------------------------------------------

def test_split_teacher_gives_the_share_of_mass_within_the_angle():
    # every teacher unit split in three: on its ray (mass a|w| = 2·1.5 = 3), 3° off (mass 1),
    # 8° off (mass 0.5); the rotation goes either way
    units = []
    for ang, s in zip(ANGLES, SIGNS):
        units += [_unit(ang, 1.5, 2.0 * s), _unit(ang + 3.0, 0.5, 2.0 * s), _unit(ang - 8.0, 0.25, 2.0 * s)]
    units = np.array(units)
    T = _teacher()
    assert tr.aligned_fraction(units, T) == pytest.approx(4.0 / 4.5)  # default: 5°
    assert tr.aligned_fraction(units, T, degrees=2.0) == pytest.approx(3.0 / 4.5)
    assert tr.aligned_fraction(units, T, degrees=10.0) == pytest.approx(1.0)
    # a unit on a teacher ray with the opposite sign is not aligned, whatever its mass
    wrong = np.vstack([units, _unit(0.0, 1.0, -6.0)])
    assert tr.aligned_fraction(wrong, T) == pytest.approx(12.0 / 19.5)
    # the masses on each ray (1/m each): only the units within 5° with the teacher's sign
    m = len(wrong)
    assert np.allclose(tr.ray_masses(wrong, T), np.array(SIGNS) * 4.0 / m)


def test_mass_is_output_weight_times_input_norm_and_zero_mass_is_nan():
    T = _teacher()
    # a huge |w| with a tiny a is a small unit: the mass is |a||w|, not |θ|
    units = np.array([_unit(0.0, 100.0, 0.01), _unit(60.0, 1.0, 9.0)])
    assert tr.aligned_fraction(units, T) == pytest.approx(1.0 / 10.0)
    assert np.isnan(tr.aligned_fraction(np.array([_unit(0.0, 1.0, 0.0), [0.0, 0.0, 3.0]]), T))
    # w = 0 carries no mass and does not break the directions
    assert tr.aligned_fraction(np.array([[0.0, 0.0, 3.0], _unit(120.0, 2.0, 1.0)]), T) == 1.0


def test_a_student_equal_to_the_teacher_lands_on_the_marks():
    T = _teacher()
    teacher = tr._teacher(tr.NetworkRun(**tr.PRESETS["test"]["relu_gd"]))
    problem = mf.Problem(mf.features.ReLU(2, bias=False), "square", None, teacher)
    assert problem.has_exact_risk
    # the teacher itself (m = m0): its population risk (the closed form) is 0
    assert problem.objective(mf.Particles(T)) == pytest.approx(0.0, abs=1e-14)
    assert np.allclose(tr.ray_masses(T, T), T[:, 2] / len(T))
    # the teacher split unevenly over m = 7 units (a·|w| shared in proportions 1/2, 1/4,
    # 1/4 on ray 0, 1/3, 2/3 on ray 1, all on ray 2): the risk is 0 and the mass on each
    # ray is the teacher's a*_k|w*_k|/m0 — the hollow circle sits on the star
    m, m0 = 7, 3
    shares = [(0, 0.5), (0, 0.25), (0, 0.25), (1, 1 / 3), (1, 2 / 3), (2, 0.6), (2, 0.4)]
    units = np.array([_unit(ANGLES[k], 2.0, SIGNS[k] * share * m / m0 / 2.0) for k, share in shares])
    assert problem.objective(mf.Particles(units)) == pytest.approx(0.0, abs=1e-13)
    assert np.allclose(tr.ray_masses(units, T), T[:, 2] / m0)
    assert tr.aligned_fraction(units, T) == 1.0
    # moving mass off the rays raises the risk: the marks are where the optimum is
    off = units.copy()
    off[0, :2] = _unit(20.0, 2.0, 0.0)[:2]
    assert problem.objective(mf.Particles(off)) > 1e-4


def test_spike_fraction_uses_the_torus_distance_and_the_sign():
    truth_t, truth_a = np.array([0.2, 0.7, 0.001]), np.array([1.5, -1.0, 2.0])
    t = np.array([0.205, 0.68, 0.995, 0.2, 0.5])
    amp = np.array([1.0, -2.0, 3.0, -4.0, 0.0])
    # 0.205: within 0.0125 of 0.2, same sign; 0.68: 0.02 away; 0.995: 0.006 across 0;
    # 0.2 with a negative amplitude: wrong sign
    assert tr.spike_fraction(t, amp, truth_t, truth_a, 0.0125) == pytest.approx(4.0 / 10.0)
    assert tr.spike_fraction(t, amp, truth_t, truth_a, 0.025) == pytest.approx(6.0 / 10.0)
    assert np.isnan(tr.spike_fraction(t, 0 * amp, truth_t, truth_a, 0.1))


# -- parameters -------------------------------------------------------------------------------

@pytest.mark.parametrize("module", [tr, first_variation, mean_field_limit], ids=lambda m: m.NAME)
def test_every_preset_validates_through_params(module):
    for name, preset in module.PRESETS.items():
        module.Params.model_validate(preset)
    bad = {**module.PRESETS["test"]}
    first = next(iter(bad))
    bad[first] = {**bad[first], "typo": 1}
    with pytest.raises(mf.ValidationError, match=rf"^{module.NAME}\.{first}\.typo: Extra inputs"):
        module.run("/nonexistent/never-written", bad, 0, lambda *a: None)


def test_network_params_reject_a_teacher_that_is_not_identifiable():
    from measureflow.experiments.params import parse

    run = {**tr.PRESETS["test"]["relu_gd"], "teacher_angles": [0.0, 120.0, 240.0], "teacher_signs": [1, 1, 1]}
    with pytest.raises(mf.ValidationError, match="open half-plane"):
        parse(tr.NetworkRun, run, tr.NAME)
    with pytest.raises(mf.ValidationError, match="teacher_signs has 2"):
        parse(tr.NetworkRun, {**run, "teacher_signs": [1, 1]}, tr.NAME)
    with pytest.raises(mf.ValidationError, match=r"relu_sgd\.particles: .*greater than 0 \(got -3\)"):
        parse(tr.Params, {**tr.PRESETS["test"], "relu_sgd": {**tr.PRESETS["test"]["relu_sgd"], "particles": -3}},
              tr.NAME)


# -- the test preset --------------------------------------------------------------------------

def test_test_preset_writes_the_tables_and_figures(reproduced, tmp_path):
    import json
    import shutil

    # the test preset at seed 0 as `reproduce` ran it (the session's fixture, conftest.py),
    # copied: plot() below rewrites the figures
    record = json.loads((reproduced[0] / "config.json").read_text())["experiments"]["trajectories"]
    assert record["params"] == tr.PRESETS["test"] and record["seed"] == 0
    out = tmp_path / "trajectories"
    shutil.copytree(reproduced[0] / "trajectories", out)
    for p in out.glob("*.p[nd][gf]"):
        p.unlink()  # the figures come from tr.plot below, not from reproduce
    metrics = read_table(out, "metrics")
    met = {(r, k): v for r, k, v in zip(metrics["run"], metrics["metric"], metrics["value"])}
    T = _teacher()
    for run in ("relu_gd", "relu_sgd"):
        _, S = paths_array(read_table(out, f"{run}_paths"), ("w1", "w2", "a"))
        rays = read_table(out, f"{run}_rays")
        # the tables agree with each other: the last snapshot is the final student
        assert met[(run, "aligned_fraction")] == pytest.approx(tr.aligned_fraction(S[-1], T), rel=1e-12)
        assert np.allclose(rays["student_mass"], tr.ray_masses(S[-1], T), rtol=1e-12)
        assert np.allclose(rays["teacher_mass"], T[:, 2] / 3)
        assert met[(run, "aligned_degrees")] == 5.0
        assert met[(run, "final_population_risk")] < met[(run, "initial_population_risk")] / 100
    truth = read_table(out, "deconvolution_truth")
    _, D = paths_array(read_table(out, "deconvolution_paths"), ("r", "t"))
    assert np.allclose(D[0, :, 0], 0.0)  # from zero weights
    expect = tr.spike_fraction(D[-1, :, 1], D[-1, :, 0] / D.shape[1], truth["t"], truth["a"],
                               met[("deconvolution", "aligned_tolerance")])
    assert met[("deconvolution", "aligned_fraction")] == pytest.approx(expect, rel=1e-12)
    figs = tr.plot(out)
    assert {p.name for p in figs} >= {"relu_gd.png", "relu_sgd.png", "deconvolution.png"}
    assert "within 5°" in tr.summarize(out)
