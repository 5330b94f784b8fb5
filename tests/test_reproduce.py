"""`measureflow reproduce` / `measureflow plot`: the experiments write their tables, the
figures are redrawn byte-identically from the tables alone, report.md lists every figure,
report.html holds the same text with every figure embedded and renders in headless
Chromium, the trajectory experiment writes a GIF per figure, bad input is a one-line
error; the Wasserstein distance against closed forms."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys

import numpy as np
import pytest

import measureflow as mf
from measureflow.experiments import reproduce as rp
from measureflow.experiments.mean_field_limit import wasserstein

MINE = ["trajectories", "first_variation", "mean_field_limit"]  # = conftest.REPRODUCED
CLI = [sys.executable, "-c", "from measureflow.cli import run; run()"]


def cli(*args, timeout=600):
    return subprocess.run(CLI + [str(a) for a in args], capture_output=True, text=True, timeout=timeout)


# -- Wasserstein distance against closed forms ---------------------------------------------

def quantile_w2(x, a, y, b):
    """W2 of two 1-D measures from their quantile functions: ∫₀¹ |F⁻¹(u) − G⁻¹(u)|² du,
    integrated exactly over the merged breakpoints of the two cumulative mass functions."""
    ix, iy = np.argsort(x), np.argsort(y)
    x, a, y, b = x[ix], a[ix] / a.sum(), y[iy], b[iy] / b.sum()
    ca, cb = np.cumsum(a), np.cumsum(b)
    u = np.unique(np.concatenate([[0.0], ca, cb]))
    u = u[u <= 1.0]
    mids = (u[:-1] + u[1:]) / 2
    qx = x[np.minimum(np.searchsorted(ca, mids), len(x) - 1)]
    qy = y[np.minimum(np.searchsorted(cb, mids), len(y) - 1)]
    return float(np.sqrt(np.sum(np.diff(u) * (qx - qy) ** 2)))


def test_wasserstein_1d_equal_masses_is_sorted_matching():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=40), rng.uniform(-1, 3, size=40)
    expected = np.sqrt(np.mean((np.sort(x) - np.sort(y)) ** 2))
    assert wasserstein(x, y) == pytest.approx(expected, rel=1e-10)


def test_wasserstein_1d_unequal_masses_and_sizes_matches_quantiles():
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=17), rng.normal(1.0, 2.0, size=29)
    a, b = rng.uniform(0.1, 1, 17), rng.uniform(0.1, 1, 29)
    a, b = a / a.sum(), b / b.sum()
    assert wasserstein(x, y, a, b) == pytest.approx(quantile_w2(x, a, y, b), rel=1e-9)


def test_wasserstein_shift_scale_equal_and_split():
    rng = np.random.default_rng(2)
    X = rng.normal(size=(30, 3))
    c = np.array([0.3, -1.2, 0.5])
    assert wasserstein(X, X + c) == pytest.approx(np.linalg.norm(c), rel=1e-10)  # a translation costs |c|
    assert wasserstein(X, X) == pytest.approx(0.0, abs=1e-12)
    # scaling about the mean in 1-D: W2(x, λx) = |λ − 1| · ‖x‖ (sorted matching stays the identity)
    x = rng.normal(size=25)
    assert wasserstein(x, 3.0 * x) == pytest.approx(2.0 * np.sqrt(np.mean(x**2)), rel=1e-10)
    # splitting every particle in two with half its mass is the same measure
    Y = rng.normal(size=(20, 3)) + 1.0
    w = rng.uniform(0.5, 1.5, 20)
    w /= w.sum()
    base = wasserstein(X, Y, None, w)
    assert wasserstein(X, np.vstack([Y, Y]), None, np.concatenate([w, w]) / 2) == pytest.approx(base, rel=1e-10)
    assert wasserstein(np.vstack([X, X]), Y, None, w) == pytest.approx(base, rel=1e-10)


def test_wasserstein_periodic_coordinate_and_errors():
    # on the circle, 0.05 and 0.95 are 0.1 apart
    assert wasserstein([[0.0, 0.05]], [[0.0, 0.95]], periodic=[False, True]) == pytest.approx(0.1)
    assert wasserstein([[0.0, 0.05]], [[0.0, 0.95]]) == pytest.approx(0.9)
    with pytest.raises(mf.ValidationError, match="total masses"):
        wasserstein([0.0, 1.0], [0.0], [0.5, 0.5], [2.0])
    with pytest.raises(mf.ValidationError, match="shapes"):
        wasserstein(np.zeros((3, 2)), np.zeros((3, 3)))


# -- registry and input errors ----------------------------------------------------------------

def test_registry_lists_every_experiment_and_checks_names(tmp_path):
    assert set(rp.experiments()) == {"excess_loss", "trajectories", "first_variation", "mean_field_limit"}
    assert rp.experiments() == ["excess_loss", "trajectories", "first_variation", "mean_field_limit"]  # by ORDER
    order = rp.experiments()
    assert rp.select("trajectories,mean_field_limit") == [n for n in order if n in ("trajectories", "mean_field_limit")]
    for name in MINE:
        module = rp.load(name)
        assert module.NAME == name and {"quick", "paper"} <= set(module.PRESETS)
        json.dumps(module.PRESETS)
    with pytest.raises(mf.ValidationError, match="unknown experiment 'nope'"):
        rp.select(["nope"])
    with pytest.raises(mf.ValidationError, match="unknown preset 'huge'"):
        rp.reproduce(tmp_path / "o", "huge", only=["trajectories"])
    (tmp_path / "file").write_text("x")
    with pytest.raises(mf.ValidationError, match="is a file"):
        rp.reproduce(tmp_path / "file", "test", only=["trajectories"])
    assert not (tmp_path / "o").exists()  # nothing written before the checks pass


DUMMY = '''"""A dummy experiment: this one file is all it takes."""
from pydantic import BaseModel, ConfigDict

NAME = "{name}"
TITLE = "Dummy"
ORDER = {order}
PRESETS = {{"test": {{"size": 3}}}}


class Params(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    size: int


def run(out_dir, params, seed, progress):
    (out_dir / "size.txt").write_text(str(params["size"] + seed))


def plot(out_dir):
    return []


def summarize(out_dir):
    return "size " + (out_dir / "size.txt").read_text()
'''


def test_adding_an_experiment_is_one_module(tmp_path, monkeypatch):
    import measureflow.experiments as pkg
    from measureflow.experiments import registry

    extra = tmp_path / "extra"
    extra.mkdir()
    (extra / "aaa_dummy.py").write_text(DUMMY.format(name="aaa_dummy", order=15))
    (extra / "zzz_broken.py").write_text(DUMMY.format(name="zzz_broken", order=5).replace("class Params", "class P"))
    (extra / "not_one.py").write_text("NAME = 'something_else'\n")  # NAME must be the module's name
    monkeypatch.setattr(pkg, "__path__", list(pkg.__path__) + [str(extra)])
    monkeypatch.setattr(sys, "path", sys.path + [str(extra)])
    names = rp.experiments()
    assert names.index("zzz_broken") < names.index("excess_loss") < names.index("aaa_dummy")  # by ORDER
    assert "not_one" not in names
    summary = rp.reproduce(tmp_path / "o", "test", only=["aaa_dummy"])
    assert summary.ran == ("aaa_dummy",) and (tmp_path / "o" / "aaa_dummy" / "size.txt").read_text() == "3"
    assert "size 3" in (tmp_path / "o" / "report.md").read_text()
    with pytest.raises(mf.ValidationError, match=r"^aaa_dummy\.size: Input should be a valid integer"):
        rp.reproduce(tmp_path / "p", "test", only=["aaa_dummy"], settings=["aaa_dummy.size=\"3\""])
    with pytest.raises(mf.ValidationError, match=r"^aaa_dummy\.colour: Extra inputs are not permitted"):
        rp.reproduce(tmp_path / "p", "test", only=["aaa_dummy"], settings=["aaa_dummy.colour=1"])
    with pytest.raises(mf.ValidationError, match="zzz_broken lacks Params"):
        rp.reproduce(tmp_path / "p", "test", only=["zzz_broken"])
    assert not (tmp_path / "p").exists()
    registry._TASKS.pop("aaa_dummy.x", None)


def test_experiment_tasks_are_found_without_imports():
    from measureflow.experiments import registry

    # a fresh process: here the experiment module may already be imported by other tests
    code = ("import sys; from measureflow.experiments import registry; "
            "assert 'measureflow.experiments.excess_loss' not in sys.modules; "
            "print(registry.get_task('excess_loss.cell').name)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "excess_loss.cell"  # found by its name, the module imported on demand
    with pytest.raises(mf.ValidationError, match="is not registered"):
        registry.get_task("excess_loss.nope")


@pytest.mark.parametrize("args, message", [
    (["reproduce", "--only", "nope"], "unknown experiment 'nope'"),
    (["reproduce", "--set", "nope.x=1"], "unknown experiment 'nope'"),
    (["reproduce", "--only", "excess_loss", "--preset", "test", "--set", "excess_loss.problems.relu.m=3"],
     "excess_loss.problems.relu.m: Input should be a valid list (got 3)"),
    (["reproduce", "--preset", "huge", "--only", "trajectories"], "unknown preset 'huge'"),
    (["reproduce", "--out", "{file}", "--only", "trajectories"], "is a file, not a directory"),
    (["plot", "{empty}"], "holds no reproduced experiment"),
    (["plot", "{missing}"], "is not a directory"),
])
def test_cli_errors_are_one_line_with_exit_code_2(tmp_path, monkeypatch, capsys, args, message):
    from measureflow.cli import run

    (tmp_path / "file").write_text("x")
    (tmp_path / "empty").mkdir()
    paths = {"file": tmp_path / "file", "empty": tmp_path / "empty", "missing": tmp_path / "missing"}
    monkeypatch.setattr(sys, "argv", ["measureflow"] + [a.format(**paths) for a in args])
    with pytest.raises(SystemExit) as exit_info:
        run()  # the console script's entry point, in process
    assert exit_info.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0]


# -- end to end (tiny "test" preset) --------------------------------------------------------

def _digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


# the fixture ``reproduced`` (conftest.py): the test preset of MINE, reproduced once per session


EXPECTED_TABLES = {
    "trajectories": ["deconvolution_paths", "deconvolution_history", "deconvolution_truth", "deconvolution_signal",
                     "deconvolution_recovered", "relu_gd_paths", "relu_gd_history", "relu_gd_teacher",
                     "relu_sgd_paths", "relu_sgd_history", "relu_sgd_teacher", "metrics"],
    "first_variation": ["panels", "grid", "support", "marks"],
    "mean_field_limit": ["distances", "rates", "setup", "objective"],
}


def test_every_experiment_writes_tables_figures_and_config(reproduced):
    import pandas as pd

    out, summary = reproduced
    assert summary.ran == tuple(MINE) and summary.skipped == ()
    for name in MINE:
        for table in EXPECTED_TABLES[name]:
            df = pd.read_csv(out / name / f"{table}.csv")
            assert len(df) > 0 and np.all(np.isfinite(df.select_dtypes("number").to_numpy())), (name, table)
        figs = summary.figures[name]
        assert figs and {p.suffix for p in figs} == {".png", ".pdf"}
        assert all(p.stat().st_size > 1000 for p in figs)
    config = json.loads((out / "config.json").read_text())
    assert config["seed"] == 0 and config["versions"]["measureflow"] == mf.__version__
    for name in MINE:
        rec = config["experiments"][name]
        assert rec["params"] == rp.load(name).PRESETS["test"] and rec["seed"] == 0 and rec["wall_time_s"] > 0


def test_report_lists_every_figure_with_a_reading(reproduced):
    out, summary = reproduced
    report = (out / "report.md").read_text()
    for name in MINE:
        assert f"## {rp.load(name).TITLE}" in report
        for p in summary.figures[name]:
            assert f"({name}/{p.name})" in report
    # the readings carry numbers from the tables
    metrics = __import__("pandas").read_csv(out / "trajectories" / "metrics.csv")
    gap = metrics[(metrics.run == "deconvolution") & (metrics.metric == "duality_gap")].value.iloc[0]
    assert f"{gap:.2e}" in report


def test_tables_hold_what_the_figures_claim(reproduced):
    import pandas as pd

    out, _ = reproduced
    d = pd.read_csv(out / "mean_field_limit" / "distances.csv")
    rates = pd.read_csv(out / "mean_field_limit" / "rates.csv")
    # every (problem, time) has one fitted rate, equal to the least-squares slope of the medians
    for (problem, it), g in d.groupby(["problem", "iteration"]):
        med = g.groupby("m")["w2"].median()
        slope = np.polyfit(np.log(med.index), np.log(med.to_numpy()), 1)[0]
        row = rates[(rates.problem == problem) & (rates.iteration == it)]
        assert row.slope.iloc[0] == pytest.approx(slope, rel=1e-9)
    # the first-variation grid is F'(μ0) itself: at r = 0 the spikes' F' vanishes
    grid = pd.read_csv(out / "first_variation" / "grid.csv")
    support = pd.read_csv(out / "first_variation" / "support.csv")
    assert np.allclose(support[support.panel == "spikes"].value, 0.0, atol=1e-12)
    relu = support[support.panel == "relu"]
    assert np.allclose(np.hypot(relu.x, relu.y), 1.0)  # the unit circle of supp μ0
    # 2-homogeneity: the derivative across the unit sphere is 2F'
    assert np.allclose(relu.normal_derivative, 2 * relu.value, atol=1e-10)
    assert set(grid.panel) == {"relu", "spikes"}


def test_plot_redraws_identical_figures_from_tables_alone(reproduced, tmp_path):
    import shutil

    out, summary = reproduced
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    before = {p.relative_to(out): _digest(p) for paths in summary.figures.values() for p in paths}
    for rel in before:
        (copy / rel).unlink()
    (copy / "report.md").unlink()
    res = cli("plot", copy)  # a fresh process: nothing but the directory
    assert res.returncode == 0, res.stderr
    after = {rel: _digest(copy / rel) for rel in before}
    assert after == before
    assert (copy / "report.md").read_text() == (out / "report.md").read_text().replace(str(out), str(copy))
    assert (copy / "report.html").read_text() == (out / "report.html").read_text().replace(str(out), str(copy))


def test_rerun_skips_up_to_date_experiments(reproduced, monkeypatch, tmp_path):
    import shutil

    out = tmp_path / "copy"  # the rerun rewrites the report and drops a run.json: not in the shared results
    shutil.copytree(reproduced[0], out)

    class Rerun(Exception):
        pass

    def refuse(*args, **kwargs):
        raise Rerun

    monkeypatch.setattr(rp.load("first_variation"), "run", refuse)
    summary = rp.reproduce(out, "test", only=["first_variation"], seed=0)
    assert summary.skipped == ("first_variation",) and summary.ran == ()
    with pytest.raises(Rerun):
        rp.reproduce(out, "test", only=["first_variation"], seed=1)  # another seed is not up to date


def test_aligned_fraction_weighs_units_by_their_scale():
    from measureflow.experiments.trajectories import aligned_fraction

    teacher = np.array([[1.0, 0.0, 1.0], [0.0, 1.0, -1.0]])  # (w, b, a): ray +x positive, ray +y negative
    units = np.array([[2.0, 0.0, 1.0],     # on the positive ray, scale 2
                      [0.0, 3.0, -1.0],    # on the negative ray, scale 3
                      [0.0, 1.0, 5.0],     # on the negative ray but a > 0: not aligned, scale 5
                      [1.0, 1.0, 1.0]])    # 45° off: not aligned, scale √2
    assert aligned_fraction(units, teacher) == pytest.approx(5.0 / (10.0 + np.sqrt(2.0)))
    assert aligned_fraction(units[:2], teacher) == pytest.approx(1.0)
    rotated = np.array([[np.cos(np.radians(9)), np.sin(np.radians(9)), 1.0]])
    assert aligned_fraction(rotated, teacher, degrees=10) == 1.0 and aligned_fraction(rotated, teacher) == 0.0


# -- animations and report.html -------------------------------------------------------------

def test_trajectory_experiment_writes_a_gif_per_figure(reproduced):
    import pandas as pd

    from measureflow.plotting.animation import gif_info

    out, summary = reproduced
    gifs = summary.animations["trajectories"]
    assert [p.name for p in gifs] == ["deconvolution.gif", "relu_gd.gif", "relu_sgd.gif"]
    report = (out / "report.md").read_text()
    for p in gifs:
        snapshots = pd.read_csv(out / "trajectories" / f"{p.stem}_paths.csv")["iteration"].nunique()
        info = gif_info(p)  # default: one frame per saved snapshot at 10 frames per second
        assert info["frames"] == snapshots and set(info["duration_ms"]) == {100}
        assert f"(trajectories/{p.name})" in report
    assert set(summary.animations) == {"trajectories"}  # the other experiments have no flow to show


def _html_images(page):
    import html.parser

    class Images(html.parser.HTMLParser):
        def __init__(self):
            super().__init__()
            self.src, self.links, self.text = [], [], []

        def handle_starttag(self, tag, attrs):
            attrs = dict(attrs)
            if tag == "img":
                self.src.append(attrs["src"])
            for key in ("href", "src"):
                if key in attrs and tag != "img":
                    self.links.append(attrs[key])

        def handle_data(self, data):
            self.text.append(data)

    parser = Images()
    parser.feed(page)
    return parser


def test_report_html_is_self_contained_with_the_same_text(reproduced):
    import base64
    import re

    out, summary = reproduced
    page = (out / "report.html").read_text()
    md = (out / "report.md").read_text()
    parsed = _html_images(page)
    shown = [m for m in re.findall(r"!\[[^]]*\]\(([^)]+)\)", md)]  # every image of report.md, in order
    assert len(shown) == len(parsed.src) > 0
    for rel, src in zip(shown, parsed.src):  # embedded byte for byte, with the right type
        mime, data = re.fullmatch(r"data:(image/(?:png|gif));base64,(.+)", src).groups()
        assert mime == f"image/{rel.rsplit('.', 1)[1]}" and base64.b64decode(data) == (out / rel).read_bytes()
    assert not any(re.match(r"[a-z]+://", link) for link in parsed.links)  # nothing from a network
    text = " ".join("".join(parsed.text).split())
    for name in MINE:  # headings and readings: the text of report.md
        assert rp.load(name).TITLE in text
        assert " ".join(rp.load(name).summarize(out / name).split()) in text


def test_report_html_renders_in_headless_chromium(reproduced, tmp_path):
    import _chromium

    if _chromium.executable() is None:
        pytest.skip("chromium is not installed (apt-get install -y chromium)")
    from PIL import Image

    out, _ = reproduced
    url = (out / "report.html").as_uri()
    state, requests = _chromium.inspect(url, """JSON.stringify({
        images: Array.from(document.images).map(i => ({complete: i.complete, width: i.naturalWidth,
                                                       height: i.naturalHeight})),
        headings: Array.from(document.querySelectorAll("h1, h2")).map(h => h.textContent),
        text: document.body.innerText.length, height: document.documentElement.scrollHeight})""")
    state = json.loads(state)
    expected = len(_html_images((out / "report.html").read_text()).src)
    assert len(state["images"]) == expected > 0
    assert all(i["complete"] and i["width"] > 0 and i["height"] > 0 for i in state["images"]), state["images"]
    assert state["headings"][1:] == [rp.load(n).TITLE for n in MINE] and state["text"] > 500
    assert {r.split(":", 1)[0] for r in requests} <= {"file", "data"}, "the page asked the network for something"
    shot = tmp_path / "report.png"
    height = min(state["height"], 16_000)
    _chromium.screenshot(url, str(shot), width=1280, height=height)
    pixels = np.asarray(Image.open(shot).convert("RGB"))
    assert pixels.shape == (height, 1280, 3)
    drawn = np.any(pixels != 255, axis=2)  # the page's background is white
    assert drawn.mean() > 0.01 and drawn.any(axis=1).mean() > 0.3  # ink, spread down the page
    print(f"screenshot {pixels.shape[1]}x{pixels.shape[0]} px, {drawn.mean():.1%} non-background pixels, "
          f"{len(state['images'])} images loaded, {len(requests)} requests ({', '.join(sorted({r.split(':')[0] for r in requests}))})")


def test_animate_redraws_the_gifs_and_the_report(reproduced, tmp_path):
    import base64
    import shutil

    from measureflow.plotting.animation import gif_info

    copy = tmp_path / "copy"
    shutil.copytree(reproduced[0], copy)
    written = rp.animate_directory(copy / "trajectories", fps=5, frames=3)  # the experiment's own folder
    assert [p.name for p in written["trajectories"]] == ["deconvolution.gif", "relu_gd.gif", "relu_sgd.gif"]
    page = (copy / "report.html").read_text()
    for p in written["trajectories"]:
        assert gif_info(p)["frames"] == 3 and set(gif_info(p)["duration_ms"]) == {200}
        assert base64.b64encode(p.read_bytes()).decode() in page  # the report shows the new GIFs
