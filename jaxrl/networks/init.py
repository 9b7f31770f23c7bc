"""Orthogonal weight initialisation without LAPACK.

`orthogonal(scale)` draws the same matrices as `jax.nn.initializers.orthogonal(scale)` (Mezzadri's method: a
Gaussian matrix, its QR factor Q with the signs that make R's diagonal positive), but computes Q by classical
Gram-Schmidt with one re-orthogonalisation pass (CGS2) in plain jnp instead of LAPACK's geqrf/orgqr.

Why: on a CPU with few cores, jaxlib 0.10.2 deadlocks when one program runs several *batched* LAPACK QR calls at
once, which is what `jax.vmap` over the init of a network with many orthogonal layers produces (a population's
`init_state`, `jax.vmap(train)(keys)`). Seen on a 2-core machine with 8 vmapped orthogonal kernels: the program
never finishes and uses no CPU; with one core or more devices it runs. The QR with a positive diagonal is unique,
so this gives the same Q up to float rounding (the tests compare it with JAX's initializer).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp


def gram_schmidt(z: jnp.ndarray) -> jnp.ndarray:
    """Q of the QR factorisation of a tall (n, k) matrix `z` (n >= k) with R's diagonal positive."""
    n, k = z.shape

    def column(j, q):
        v = z[:, j]
        for _ in range(2):  # CGS2: the second pass removes what rounding left of the earlier directions
            v = v - q @ (q.T @ v)  # columns >= j of q are still zero
        return q.at[:, j].set(v / jnp.linalg.norm(v))

    return jax.lax.fori_loop(0, k, column, jnp.zeros((n, k), z.dtype))


def orthogonal(scale: float = 1.0):
    """A flax/JAX initializer: orthonormal columns (or rows, when there are fewer rows than columns) x `scale`."""

    def init(key, shape, dtype=jnp.float32):
        if len(shape) < 2:
            raise ValueError(f"orthogonal initializer requires at least a 2-D shape, got {tuple(shape)}")
        n_rows, n_cols = math.prod(shape[:-1]), shape[-1]
        z = jax.random.normal(key, (max(n_rows, n_cols), min(n_rows, n_cols)), dtype)
        q = gram_schmidt(z)
        if n_rows < n_cols:
            q = q.T
        return (jnp.asarray(scale, dtype) * q).reshape(shape)

    return init
