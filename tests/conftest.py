import os

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


# -- parallel runs (pytest-xdist, `make test`: -n 2 --dist loadgroup) ---------------------
#
# Each test file is one xdist group, so a worker runs a whole file: its module fixtures are
# built once and its tests share their JAX compilations, as in a serial run. Files that
# share a session fixture form one group (SHARED). Under xdist the heaviest groups are sent
# first (HEAVY, the longest at the top: a worker then ends on small files, not on a long
# one while the other waits); a serial run keeps pytest's order.

#: files that read the same session fixture -> their group
SHARED = {"test_reproduce.py": "reproduce", "test_trajectories.py": "reproduce"}
#: the longest groups (per-test durations of the default run), longest first
HEAVY = ["test_examples.py", "reproduce", "test_solvers.py", "test_sweep.py", "test_networks.py", "test_flow.py"]


def _group(item) -> str:
    return SHARED.get(item.path.name, item.path.name)


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook reads the groups
def pytest_collection_modifyitems(config, items):
    if not hasattr(config, "workerinput"):  # not an xdist worker
        return
    for item in items:
        item.add_marker(pytest.mark.xdist_group(_group(item)))
    rank = {g: i for i, g in enumerate(HEAVY)}
    items.sort(key=lambda item: rank.get(_group(item), len(HEAVY)))  # stable: file order otherwise
