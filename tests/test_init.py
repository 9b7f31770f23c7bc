"""The LAPACK-free orthogonal initializer: the same matrices as JAX's, orthonormal, and usable under vmap."""

import jax
import numpy as np
import pytest

from jaxrl.networks.init import orthogonal

SHAPES = [(66, 64), (64, 64), (64, 1), (1, 64), (3, 5), (2, 4, 6)]


@pytest.mark.parametrize("shape", SHAPES)
def test_same_matrices_as_jax_orthogonal(shape):
    keys = jax.random.split(jax.random.PRNGKey(0), 3)
    ours = jax.jit(jax.vmap(lambda k: orthogonal(1.7)(k, shape)))(keys)
    theirs = [jax.nn.initializers.orthogonal(1.7)(k, shape) for k in keys]  # unbatched: LAPACK, one at a time
    for a, b in zip(np.asarray(ours), theirs):
        np.testing.assert_allclose(a, np.asarray(b), atol=2e-5)


@pytest.mark.parametrize("shape", [(66, 64), (5, 3), (3, 5)])
def test_orthonormal_columns_or_rows(shape):
    q = np.asarray(orthogonal(1.0)(jax.random.PRNGKey(0), shape), np.float64)
    gram = q.T @ q if shape[0] >= shape[1] else q @ q.T
    np.testing.assert_allclose(gram, np.eye(min(shape)), atol=1e-5)


def test_vmapped_init_of_many_kernels():
    """Eight kernels initialised for four members in one program (what deadlocked with LAPACK's batched QR)."""
    shapes = [(64, 1), (66, 64), (64, 64), (64, 64)] * 2

    def init(key):
        keys = jax.random.split(key, len(shapes))
        return [orthogonal(2.0)(k, s) for k, s in zip(keys, shapes)]

    keys = jax.random.split(jax.random.PRNGKey(0), 4)
    stacked = jax.jit(jax.vmap(init))(keys)
    alone = jax.jit(init)
    for i in range(4):
        for got, want in zip(stacked, alone(keys[i])):
            np.testing.assert_allclose(np.asarray(got[i]), np.asarray(want), atol=1e-5)


def test_rejects_a_vector_shape():
    with pytest.raises(ValueError, match="at least a 2-D shape"):
        orthogonal()(jax.random.PRNGKey(0), (8,))
