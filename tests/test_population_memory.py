"""The closed-form population pieces: no m × k kernel matrix at large sizes (XLA's
temporaries of kernel_matvec, and so of quadratic_form and the exact first variation, at
m = k = 2^13 stay far below the 512 MiB of the float64 matrix; compiled, not run), and
finite gradients at a zero unit."""

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


def test_kernels_have_finite_gradients_at_a_zero_unit():
    """A unit with w = 0 (a zero row) must not make the closed-form risk's gradient NaN: the
    norms inside the kernels are differentiated through a safe branch at 0."""
    import numpy as np

    W = jnp.asarray(np.random.default_rng(0).standard_normal((3, 4))).at[1].set(0.0)
    V = jnp.asarray(np.random.default_rng(1).standard_normal((2, 4)))
    for kernel in (population.relu_kernel, population.erf_kernel):
        g = jax.grad(lambda W: jnp.sum(kernel(W, V)))(W)
        assert np.all(np.isfinite(np.asarray(g))), kernel.__name__
