"""The test command of one mutant (run by cosmic-ray in a module's tree): run only the tests
that execute the mutated code.

    python mutation/select_tests.py TREE --timeout S

The tree holds the module's unmutated sources under ``.pristine/`` and ``mutation-map.json``
(written by ``run.py`` from one coverage run of the covering tests, with JAX's caches cleared
before each test so every test that uses a jitted function traces it and is recorded). The
mutated lines are found by comparing the tree's sources with the pristine ones; the tests
chosen are those that executed the function around each mutated line (all the covering tests
for a line outside any function: module or class level, run at import). No test executes
it: the mutant survives without a run. Exit status: pytest's (0 = survived).
"""

from __future__ import annotations

import argparse
import difflib
import json
import pathlib
import subprocess
import sys


def changed_lines(pristine: list[str], mutated: list[str]) -> set[int]:
    """1-based line numbers of ``pristine`` that the mutation replaced or deleted, or next
    to which it inserted."""
    lines: set[int] = set()
    for tag, i1, i2, _, _ in difflib.SequenceMatcher(a=pristine, b=mutated, autojunk=False).get_opcodes():
        if tag in ("replace", "delete"):
            lines.update(range(i1 + 1, i2 + 1))
        elif tag == "insert":
            lines.update({max(i1, 1), i1 + 1})
    return lines


def select(tree: pathlib.Path) -> list[str] | None:
    """The node ids to run (in the covering order); None: every covering test."""
    mapping = json.loads((tree / "mutation-map.json").read_text())
    chosen: set[str] = set()
    for rel, info in mapping["files"].items():
        old = (tree / ".pristine" / rel).read_text().splitlines()
        new = (tree / rel).read_text().splitlines()
        if old == new:
            continue
        for line in changed_lines(old, new):
            tests = info["lines"].get(str(line))
            if tests is None:  # outside any function: run at import, by every test
                return None
            chosen.update(tests)
    order = mapping["order"]
    return [t for t in order if t in chosen]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("tree", type=pathlib.Path)
    ap.add_argument("--timeout", type=int, required=True, help="pytest-timeout per test, seconds")
    args = ap.parse_args(argv)
    mapping = json.loads((args.tree / "mutation-map.json").read_text())
    tests = select(args.tree)
    if tests is None:
        tests = mapping["covering"]
    elif not tests:
        print("no covering test executes the mutated code: survived without a run")
        return 0
    cmd = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", "--timeout", str(args.timeout), *tests]
    return subprocess.run(cmd, cwd=args.tree, check=False).returncode


if __name__ == "__main__":
    sys.exit(main())
