"""Checkpoints of a run on disk: the solver state and the recorder, written atomically.

One ``.npz`` file of plain arrays (read with allow_pickle=False): the arrays of the state
and recorder pytrees, and a JSON header naming the measureflow version, the problem (a
SHA-256 of its structure and data), the update rule, the dtype and the call (first and
last iteration). It is written to a
temporary file in the same directory, flushed to disk and renamed over the old one, so a
process killed at any moment leaves either the previous checkpoint or the new one.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import tempfile

import jax
import numpy as np

from .._version import __version__
from ..errors import ValidationError

FORMAT = "measureflow-checkpoint/1"


def _describe(obj) -> str:
    """A process-independent text for the static part of a problem: dataclasses field by
    field, functions by name and bytecode (their repr holds a memory address)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        inner = ", ".join(f"{f.name}={_describe(getattr(obj, f.name))}" for f in dataclasses.fields(obj))
        return f"{type(obj).__qualname__}({inner})"
    code = getattr(obj, "__code__", None)
    if code is not None:
        digest = hashlib.sha256(code.co_code + repr(code.co_consts).encode()).hexdigest()[:16]
        return f"{getattr(obj, '__qualname__', '?')}#{digest}"
    if isinstance(obj, (tuple, list)):
        return "(" + ", ".join(_describe(o) for o in obj) + ")"
    return re.sub(r" at 0x[0-9a-fA-F]+", "", repr(obj))


def problem_fingerprint(problem) -> str:
    """SHA-256 of the problem's structure (feature, loss, regularizer, kind of data) and of
    its arrays' dtypes, shapes and bytes."""
    leaves, treedef = jax.tree_util.tree_flatten(problem)
    static = [_describe(problem.feature), _describe(problem.loss), _describe(problem.regularizer),
              type(problem.data).__qualname__, str(treedef.num_leaves)]
    h = hashlib.sha256("|".join(static).encode())
    for leaf in leaves:
        a = np.ascontiguousarray(np.asarray(leaf))
        h.update(f"{a.dtype}{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def save(path, header: dict, tree) -> None:
    """Write ``tree``'s leaves and ``header`` to ``path`` atomically."""
    leaves = jax.tree_util.tree_leaves(tree)
    arrays = {f"leaf_{i}": np.asarray(a) for i, a in enumerate(leaves)}
    meta = dict(header, format=FORMAT, measureflow=__version__, leaves=len(leaves))
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".checkpoint-", suffix=".npz", dir=directory)
    try:
        with os.fdopen(fd, "wb") as fh:
            np.savez(fh, header=np.asarray(json.dumps(meta, sort_keys=True)), **arrays)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    try:  # the rename itself is durable once the directory is synced
        dfd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:
        pass


def load(path, template, expected: dict):
    """The tree saved at ``path``, in the structure of ``template``, after checking its
    header against ``expected`` (each mismatch is a ValidationError naming it)."""
    try:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(str(z["header"]))
            leaves = [z[f"leaf_{i}"] for i in range(int(meta["leaves"]))]
    except Exception as exc:  # noqa: BLE001 - any failure to read is a damaged file
        raise ValidationError(f"checkpoint {path} is damaged or not a measureflow checkpoint "
                              f"({type(exc).__name__}: {exc}); delete it to start afresh") from None
    if meta.get("format") != FORMAT:
        raise ValidationError(f"checkpoint {path} has format {meta.get('format')!r}, not {FORMAT!r}")
    if meta.get("measureflow") != __version__:
        raise ValidationError(f"checkpoint {path} was written by measureflow {meta.get('measureflow')}, this is "
                              f"{__version__}: a run is only resumed by the version that started it")
    for name, want in expected.items():
        if meta.get(name) != want:
            what = {"problem": "another problem (feature, loss, regularizer or data differ)",
                    "rule": f"another update rule ({meta.get(name)!r}, not {want!r})"}.get(
                name, f"{name}={meta.get(name)!r}, not {want!r}")
            raise ValidationError(f"checkpoint {path} belongs to a run with {what}; use another checkpoint= path "
                                  "or delete it")
    ref_leaves, treedef = jax.tree_util.tree_flatten(template)
    if len(ref_leaves) != len(leaves) or any(np.shape(a) != np.shape(b) or np.asarray(a).dtype != b.dtype
                                             for a, b in zip(ref_leaves, leaves)):
        raise ValidationError(f"checkpoint {path} holds arrays of other shapes than this run's (particles, "
                              "history or snapshot sizes differ)")
    return jax.tree_util.tree_unflatten(treedef, leaves), meta
