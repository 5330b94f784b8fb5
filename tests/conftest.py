import os
import pathlib

os.environ.setdefault("MPLBACKEND", "Agg")

import pytest  # noqa: E402

import measureflow  # noqa: E402,F401  (enables float64 before any test builds arrays)

#: the experiments of ``measureflow reproduce`` whose ``test`` preset the suite runs end to end
REPRODUCED = ["trajectories", "first_variation", "mean_field_limit"]


@pytest.fixture(scope="session")
def reproduced(tmp_path_factory):
    """One ``reproduce`` of REPRODUCED at the ``test`` preset, seed 0, two worker processes
    (the experiments' time is mostly single-threaded compilation): the directory and the
    Summary, read (never written) by test_reproduce.py and test_trajectories.py, which
    copy it before changing anything."""
    from measureflow.experiments import reproduce as rp

    out = tmp_path_factory.mktemp("results")
    return out, rp.reproduce(out, "test", only=REPRODUCED, seed=0, jobs=2)


# -- parallel runs (pytest-xdist, `make test`: -n 2 --dist loadfile) ----------------------
#
# A worker runs whole test files: their module fixtures are built once and their tests
# share their JAX compilations, as in a serial run. Files that share a session fixture go
# to the same worker (SHARED), and the heaviest files are sent first (HEAVY, longest at the
# top: a worker then ends on small files, not on a long one while the other waits). (xdist's
# own `loadgroup` cannot do this here: with pytest 9 its group suffix on the test id is
# lost, so the groups are ignored.) A serial run keeps pytest's order.

#: files that read the same session fixture -> the name of their common unit
SHARED = {"test_reproduce.py": "reproduce", "test_trajectories.py": "reproduce"}
#: the longest units (per-test durations of the default run), longest first
HEAVY = ["test_examples.py", "reproduce", "test_solvers.py", "test_sweep.py", "test_networks.py", "test_flow.py"]


def _unit(path: str) -> str:
    name = pathlib.PurePath(path.split("::", 1)[0]).name
    return SHARED.get(name, name)


def pytest_collection_modifyitems(config, items):
    if hasattr(config, "workerinput"):  # an xdist worker: the order the units are sent in
        rank = {u: i for i, u in enumerate(HEAVY)}
        items.sort(key=lambda item: rank.get(_unit(item.nodeid), len(HEAVY)))  # stable otherwise


class _Units:
    """The scheduler of ``--dist loadfile``, sending SHARED files as one unit; registered only
    where xdist is active (its hook is unknown to pytest otherwise: ``-p no:xdist``)."""

    @pytest.hookimpl(tryfirst=True)
    def pytest_xdist_make_scheduler(self, config, log):
        if config.getvalue("dist") != "loadfile":
            return None  # xdist's own scheduler
        from xdist.scheduler import LoadFileScheduling

        class Units(LoadFileScheduling):
            def _split_scope(self, nodeid):
                return _unit(nodeid)

        config.option.loadscopereorder = False  # the collection's order (HEAVY first), not by test count
        return Units(config, log)


def pytest_configure(config):
    if config.pluginmanager.hasplugin("xdist"):
        config.pluginmanager.register(_Units(), "measureflow-test-units")
