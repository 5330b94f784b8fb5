"""pytest plugin for the coverage run of mutation/run.py: JAX's caches are cleared before
each test, so every test that calls a jitted function traces it again and its lines are
recorded under that test (not only under the first test that compiled it); the node ids are
appended, in run order, to $MUTATION_ORDER_FILE."""

import os


def pytest_runtest_setup(item):
    import jax

    jax.clear_caches()
    with open(os.environ["MUTATION_ORDER_FILE"], "a") as f:
        f.write(item.nodeid + "\n")
