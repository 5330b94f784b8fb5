"""Argument checks shared by every public entry point.

Each check raises :class:`~measureflow.errors.ValidationError` (or ``InputTypeError``)
naming the argument, the offending value and what would be valid — before any compilation.
"""

from __future__ import annotations

import math
import numbers
import os
from typing import Iterable

import numpy as np

from .errors import InputTypeError, ValidationError


def _show(value) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def check_choice(name: str, value, choices: Iterable[str]) -> str:
    choices = tuple(choices)
    if not isinstance(value, str) or value not in choices:
        raise ValidationError(f"{name}={_show(value)} is not one of {', '.join(map(repr, choices))}")
    return value


def check_int(name: str, value, *, minimum: int | None = None, maximum: int | None = None) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise InputTypeError(f"{name} must be an integer, got {_show(value)} ({type(value).__name__})")
    value = int(value)
    if minimum is not None and value < minimum:
        raise ValidationError(f"{name}={value} is invalid: it must be >= {minimum}")
    if maximum is not None and value > maximum:
        raise ValidationError(f"{name}={value} is invalid: it must be <= {maximum}")
    return value


#: Seeds are 64-bit: the largest value a JAX PRNG key (and NumPy's generators) accept.
MAX_SEED = 2**63 - 1


def check_seed(name: str, value) -> int:
    """An integer seed in [0, 2^63 − 1] (what ``jax.random.PRNGKey`` accepts without
    overflowing; negative seeds would alias large ones)."""
    return check_int(name, value, minimum=0, maximum=MAX_SEED)


def memory_bytes() -> int | None:
    """Physical memory of this machine in bytes (``None`` where it cannot be read)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return None


def check_memory(what: str, nbytes: float, hint: str = "") -> None:
    """Refuse, before allocating, an array of ``nbytes`` bytes larger than the machine's
    physical memory: the allocation could only fail, or abort the process inside XLA."""
    total = memory_bytes()
    if total is not None and nbytes > total:
        raise ValidationError(f"{what} would need {nbytes / 2**30:.3g} GiB, more than this machine's "
                              f"{total / 2**30:.3g} GiB of memory{'; ' + hint if hint else ''}")


def check_real(name: str, value, *, positive: bool = False, nonnegative: bool = False) -> float:
    if isinstance(value, (bool, np.bool_, str, bytes)) or getattr(value, "dtype", None) == bool:
        raise InputTypeError(f"{name} must be a real number, got {_show(value)} ({type(value).__name__})")
    if not isinstance(value, numbers.Real):
        try:  # 0-d numeric arrays are fine
            value = float(np.asarray(value).item()) if np.ndim(value) == 0 else value
        except (TypeError, ValueError):
            pass
        if not isinstance(value, numbers.Real) or isinstance(value, bool):
            raise InputTypeError(f"{name} must be a real number, got {_show(value)} ({type(value).__name__})")
    value = float(value)
    if not math.isfinite(value):
        raise ValidationError(f"{name}={value} is invalid: it must be finite")
    if positive and value <= 0:
        raise ValidationError(f"{name}={value} is invalid: it must be > 0")
    if nonnegative and value < 0:
        raise ValidationError(f"{name}={value} is invalid: it must be >= 0")
    return value


def check_array(name: str, value, *, ndim: int | None = None, shape: tuple | None = None,
                finite: bool = True, dtype=np.float64) -> np.ndarray:
    """Convert to a float NumPy array and check its rank, shape (``None`` entries are free)
    and finiteness."""
    try:
        arr = np.asarray(value)
    except Exception as exc:  # noqa: BLE001 - anything unconvertible is a type error here
        raise InputTypeError(f"{name} could not be converted to an array: {exc}") from None
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise InputTypeError(f"{name} must be a numeric array, got dtype {arr.dtype}")
    if np.issubdtype(arr.dtype, np.complexfloating):
        raise InputTypeError(f"{name} must be real, got dtype {arr.dtype}")
    arr = arr.astype(dtype) if dtype is not None else arr
    if ndim is not None and arr.ndim != ndim:
        raise ValidationError(f"{name} must have {ndim} dimension(s), got shape {arr.shape}")
    if shape is not None:
        if arr.ndim != len(shape) or any(s is not None and s != a for s, a in zip(shape, arr.shape)):
            want = "(" + ", ".join("*" if s is None else str(s) for s in shape) + ")"
            raise ValidationError(f"{name} has shape {arr.shape}, expected {want}")
    if finite and arr.size and not np.all(np.isfinite(arr)):
        bad = np.argwhere(~np.isfinite(arr))[0]
        raise ValidationError(
            f"{name} contains non-finite values (first at index {tuple(int(i) for i in bad)}: "
            f"{arr[tuple(bad)]}); remove or impute them")
    return arr


def as_key(key):
    """A JAX PRNG key from an int seed or a key array (raw uint32[2] or typed)."""
    import jax
    import jax.numpy as jnp

    if isinstance(key, (int, np.integer)) and not isinstance(key, bool):
        return jax.random.PRNGKey(check_seed("key", key))
    if isinstance(key, jax.Array) and key.shape == (2,) and key.dtype == jnp.uint32:
        return key
    if isinstance(key, jax.Array) and jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        return key
    raise InputTypeError(f"key must be an int seed or a jax.random key, got {_show(key)}")
