"""Every example under examples/ runs, at a tiny size, and writes what it says it writes.

The examples run in this process (``runpy``, with their own command-line arguments), so
the suite pays JAX's import once, and compilations are shared between them: the tiny runs
keep the examples' problem sizes and cut the iterations, so that relu_seed_sweeps reuses
what relu_gd and relu_sgd compiled and deconvolution_validation what deconvolution_1d/2d
did (the same problems). They check that the scripts work, not their numbers (their
full-size results are in the docs' gallery).
"""

from __future__ import annotations

import json
import pathlib
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


def test_every_example_has_a_smoke_test():
    scripts = {p.stem for p in EXAMPLES.glob("*.py") if not p.name.startswith("_")}
    assert scripts == set(SMOKE)


@pytest.mark.parametrize("name", sorted(SMOKE))
def test_example_runs_at_a_tiny_size(name, tmp_path, monkeypatch, capsys):
    args, outputs = SMOKE[name]
    monkeypatch.syspath_prepend(str(EXAMPLES))  # the examples import their helpers (_report, relu_gd)
    monkeypatch.setattr(sys, "argv", [f"{name}.py", *args, "--out", str(tmp_path)])
    runpy.run_path(str(EXAMPLES / f"{name}.py"), run_name="__main__")
    assert capsys.readouterr().out.strip()  # it reports what it did
    for out in outputs:
        path = tmp_path / out
        assert path.is_file() and path.stat().st_size > 0, out
        if out.endswith(".json"):
            json.loads(path.read_text())
