"""The documentation site builds with ``mkdocs build --strict`` (what ``make docs`` runs),
a broken reference fails that build, and the how-to code runs (slow)."""

from __future__ import annotations

import importlib.util
import pathlib
import re
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.skipif(importlib.util.find_spec("mkdocs") is None
                                or importlib.util.find_spec("mkdocstrings_handlers") is None,
                                reason="mkdocs / mkdocstrings are not installed (pip install -e '.[docs]')")


def mkdocs_build(config: pathlib.Path, site: pathlib.Path, cwd: pathlib.Path = ROOT):
    return subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file", str(config),
                           "--site-dir", str(site)], cwd=cwd, capture_output=True, text=True, timeout=300,
                          env={**__import__("os").environ, "NO_MKDOCS_2_WARNING": "1"})


def _nav_pages(nav) -> list[str]:
    pages = []
    for item in nav:
        for value in item.values():
            pages += _nav_pages(value) if isinstance(value, list) else [value]
    return pages


def test_the_site_builds_strictly_with_every_page(tmp_path):
    import yaml

    res = mkdocs_build(ROOT / "mkdocs.yml", tmp_path / "site")
    assert res.returncode == 0, res.stderr[-3000:]
    pages = _nav_pages(yaml.safe_load((ROOT / "mkdocs.yml").read_text())["nav"])
    on_disk = {str(p.relative_to(ROOT / "docs")) for p in (ROOT / "docs").rglob("*.md")}
    assert set(pages) == on_disk  # every page is in the navigation, and every entry exists
    for page in pages:
        html = tmp_path / "site" / (page[:-3].removesuffix("index") + "/index.html").lstrip("/")
        assert html.is_file(), page
    # the API reference is generated from the docstrings
    plotting = (tmp_path / "site" / "reference" / "plotting" / "index.html").read_text()
    assert "planar_animation" in plotting and "GIF of network units moving in the plane" in plotting
    # the benchmark tables are included from benchmarks/README.md
    assert "FLOP count" in (tmp_path / "site" / "benchmarks" / "index.html").read_text()


@pytest.mark.parametrize("page, builds", [("[a link](no-such-page.md)", False),
                                         ("::: measureflow.no_such_module", False),
                                         ("::: measureflow.plotting.rates", True)])  # the control
def test_a_broken_reference_fails_the_build(tmp_path, page, builds):
    import yaml

    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text())
    config.pop("nav")
    config["docs_dir"] = str(tmp_path / "docs")
    config["plugins"][1]["mkdocstrings"]["handlers"]["python"]["paths"] = [str(ROOT / "src")]
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "index.md").write_text(f"# Broken\n\n{page}\n")
    (tmp_path / "mkdocs.yml").write_text(yaml.safe_dump(config))
    res = mkdocs_build(tmp_path / "mkdocs.yml", tmp_path / "site", cwd=ROOT)
    assert (res.returncode == 0) == builds, res.stderr[-2000:]


@pytest.mark.slow
@pytest.mark.parametrize("page", ["getting-started.md", "how-to/own-feature.md"])
def test_the_code_on_the_page_runs(page):
    namespace = {}
    for block in re.findall(r"```python\n(.*?)```", (ROOT / "docs" / page).read_text(), re.S):
        exec(compile(block, page, "exec"), namespace)
