"""The closed-form population pieces hold no m × k kernel matrix at large sizes: XLA's
temporaries of kernel_matvec (and so of quadratic_form and the exact first variation) at
m = k = 2^13 stay far below the 512 MiB of the float64 matrix. Compiled, not run."""

import jax
import jax.numpy as jnp

from measureflow import population


def test_kernel_matvec_holds_no_m_by_k_matrix():
    m = k = 1 << 13
    A = jax.ShapeDtypeStruct((m, 3), jnp.float64)
    B = jax.ShapeDtypeStruct((k, 3), jnp.float64)
    b = jax.ShapeDtypeStruct((k,), jnp.float64)
    fn = jax.jit(lambda A, B, b: population.kernel_matvec(population.relu_kernel, A, B, b))
    temp = fn.lower(A, B, b).compile().memory_analysis().temp_size_in_bytes
    assert temp < 8 * m * k / 16
