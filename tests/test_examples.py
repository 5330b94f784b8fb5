"""Every example under examples/ runs, at a tiny size, and writes what it says it writes.

The examples run in this process (``runpy``, with their own command-line arguments), so
the suite pays JAX's import once, and compilations are shared between them: the tiny runs
keep the examples' problem sizes and cut the iterations, so that relu_seed_sweeps reuses
what relu_gd and relu_sgd compiled and deconvolution_validation what deconvolution_1d/2d
did (the same problems). They check that the scripts work and, where a script prints a
claim, that the printed numbers support it (CLAIMS: a duality gap consistent with its
relative value and nonnegative, losses that decrease); their full-size results are in the
docs' gallery.
"""

from __future__ import annotations

import json
import pathlib
import re
import runpy
import sys

import pytest

EXAMPLES = pathlib.Path(__file__).resolve().parent.parent / "examples"

#: example -> (tiny arguments, files it must write into --out)
SMOKE = {
    "relu_gd": (["--iterations", "20"], ["relu_gd_seed0.png", "relu_gd_seed0.json"]),
    "relu_sgd": (["--iterations", "20"], ["relu_sgd_seed0.png", "relu_sgd_seed0.json"]),
    "sigmoid_gd": (["--m", "5", "--n", "40", "--iterations", "20"], ["sigmoid_gd_seed0.png", "sigmoid_gd_seed0.json"]),
    "relu_logistic": (["--m", "5", "--n", "40", "--iterations", "20"],
                      ["relu_logistic_seed0.png", "relu_logistic_seed0.json"]),
    "relu_seed_sweeps": (["--gd-seeds", "1", "--sgd-seeds", "1", "--iterations", "20"], ["relu_seed_sweeps.json"]),
    "deconvolution_1d": (["--iterations", "20"], ["deconvolution_1d.png"]),
    "deconvolution_2d": (["--iterations", "20"], ["deconvolution_2d.png"]),
    "deconvolution_validation": (["--seeds", "1", "--seeds-2d", "1", "--iterations", "20", "--ms", "50"],
                                 ["deconvolution_validation_noiseless_noisy_2d_timing.json"]),
    "relu_flow": (["--tiny"], []),
    "relu_hessian": (["--tiny"], []),
    "wfr_convergence": (["--iterations", "30"], ["wfr_convergence.png", "wfr_convergence.csv"]),
    "langevin": (["--m", "20", "--iterations", "30"], []),
}


_NUM = r"([-+]?\d+(?:\.\d*)?(?:e[-+]?\d+)?|inf|nan)"


def _gap_is_consistent(out: str):
    """F, gap ≥ 0 and relative = gap / D with D = F − gap, to the printed digits: the gap
    has 4 (relative error 5e-4), so D = F − gap has relative error 5e-4 · gap / D."""
    F = float(re.search(rf"F = {_NUM}", out).group(1))
    gap, rel = map(float, re.search(rf"duality gap {_NUM} \(relative {_NUM}\)", out).groups())
    assert gap >= 0 and F > 0
    assert rel == pytest.approx(gap / (F - gap), rel=1e-3 * (1 + rel))


def _decreases(pattern: str):
    def check(out: str):
        pairs = [tuple(map(float, m)) for m in re.findall(pattern, out)]
        assert pairs, f"no line matches {pattern!r}"
        for before, after in pairs:
            assert after < before, (before, after)
    return check


#: example -> a check of what its printed output claims
CLAIMS = {
    "deconvolution_1d": _gap_is_consistent,
    "deconvolution_2d": _gap_is_consistent,
    "relu_seed_sweeps": _decreases(rf"loss {_NUM} -> {_NUM}"),
    "wfr_convergence": _decreases(rf"excess {_NUM} -> {_NUM}"),
}


def test_every_example_has_a_smoke_test():
    scripts = {p.stem for p in EXAMPLES.glob("*.py") if not p.name.startswith("_")}
    assert scripts == set(SMOKE)


@pytest.mark.parametrize("name", sorted(SMOKE))
def test_example_runs_at_a_tiny_size(name, tmp_path, monkeypatch, capsys):
    args, outputs = SMOKE[name]
    monkeypatch.syspath_prepend(str(EXAMPLES))  # the examples import their helpers (_report, relu_gd)
    monkeypatch.setattr(sys, "argv", [f"{name}.py", *args, "--out", str(tmp_path)])
    runpy.run_path(str(EXAMPLES / f"{name}.py"), run_name="__main__")
    out = capsys.readouterr().out
    assert out.strip()  # it reports what it did
    if name in CLAIMS:
        CLAIMS[name](out)
    for out in outputs:
        path = tmp_path / out
        assert path.is_file() and path.stat().st_size > 0, out
        if out.endswith(".json"):
            json.loads(path.read_text())
