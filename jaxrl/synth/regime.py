"""Two-state Gaussian regime-switching (hidden Markov) model, fitted by EM (Baum-Welch).

    s_t Markov with transition[i, j] = P(s_{t+1} = j | s_t = i),   r_t | s_t = k ~ N(means[k], vols[k]^2).

State 0 is the calm (lower-vol) regime. The E-step is a scaled forward-backward pass (two `lax.scan`s, emission
densities in log space, shifted per bar so extreme returns cannot underflow); the M-step is closed form. EM runs
in one `lax.while_loop` until the mean log-likelihood per bar improves by less than `tol`.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from jaxrl.synth.padding import pad_with_mask

MIN_VOL = 1e-2  # floor on a regime's vol, in units of the sample std: keeps a state from collapsing onto one bar


@struct.dataclass
class RegimeParams:
    means: jnp.ndarray  # (2,)
    vols: jnp.ndarray  # (2,)
    transition: jnp.ndarray  # (2, 2), rows sum to one

    @property
    def stationary(self):
        """Long-run share of time in each regime."""
        leave = jnp.stack([self.transition[0, 1], self.transition[1, 0]])
        return leave[::-1] / jnp.sum(leave)


def _log_emission(params: RegimeParams, returns):
    z = (returns[:, None] - params.means) / params.vols
    return -0.5 * z**2 - jnp.log(params.vols) - 0.5 * jnp.log(2.0 * jnp.pi)  # (T, 2)


def forward_backward(params: RegimeParams, initial, returns, mask=None):
    """Posterior regime probabilities (T, 2), summed pairwise posteriors (2, 2) and the total log-likelihood.
    Padding (`mask` 0, trailing only) gets emission density 1 in both regimes: it adds no evidence, and its
    transitions are left out of the pairwise sums."""
    mask = jnp.ones_like(returns) if mask is None else mask
    log_b = _log_emission(params, returns) * mask[:, None]
    shift = jnp.max(log_b, axis=1, keepdims=True)
    b = jnp.exp(log_b - shift)  # emission densities up to a per-bar factor exp(shift)

    def forward(alpha_prev, b_t):
        alpha = (alpha_prev @ params.transition) * b_t
        norm = jnp.sum(alpha)
        return alpha / norm, (alpha / norm, norm)

    alpha0 = initial * b[0]
    norm0 = jnp.sum(alpha0)
    _, (alphas, norms) = jax.lax.scan(forward, alpha0 / norm0, b[1:])
    alphas = jnp.concatenate([(alpha0 / norm0)[None], alphas])
    norms = jnp.concatenate([norm0[None], norms])

    def backward(carry, inputs):
        beta_next, pair_sum = carry
        alpha_t, b_next, norm_next, real_next = inputs
        weighted = b_next * beta_next
        pair_sum = pair_sum + real_next * alpha_t[:, None] * params.transition * weighted[None, :] / norm_next
        beta = params.transition @ weighted / norm_next
        return (beta, pair_sum), beta

    (_, pair_sum), betas = jax.lax.scan(
        backward, (jnp.ones(2), jnp.zeros((2, 2))), (alphas[:-1], b[1:], norms[1:], mask[1:]), reverse=True
    )
    betas = jnp.concatenate([betas, jnp.ones((1, 2))])
    posterior = alphas * betas
    posterior = posterior / jnp.sum(posterior, axis=1, keepdims=True)
    log_likelihood = jnp.sum(jnp.log(norms)) + jnp.sum(shift)
    return posterior, pair_sum, log_likelihood


def _m_step(posterior, pair_sum, returns, mask):
    posterior = posterior * mask[:, None]
    weight = jnp.sum(posterior, axis=0)
    means = posterior.T @ returns / weight
    variance = jnp.sum(posterior * (returns[:, None] - means) ** 2, axis=0) / weight
    transition = pair_sum / jnp.sum(pair_sum, axis=1, keepdims=True)
    return RegimeParams(means=means, vols=jnp.maximum(jnp.sqrt(variance), MIN_VOL), transition=transition), posterior[0]


@functools.partial(jax.jit, static_argnames=("max_iter",))
def _em(scaled, mask, params0: RegimeParams, max_iter: int, tol: float):
    n = jnp.sum(mask)
    initial0 = params0.stationary

    def step(carry):
        params, initial, loglik, _, it = carry
        posterior, pair_sum, new_loglik = forward_backward(params, initial, scaled, mask)
        new_params, new_initial = _m_step(posterior, pair_sum, scaled, mask)
        return new_params, new_initial, new_loglik / n, loglik, it + 1

    def keep_going(carry):
        _, _, loglik, previous, it = carry
        return (it < max_iter) & (jnp.abs(loglik - previous) > tol)

    init = (params0, initial0, jnp.asarray(-jnp.inf), jnp.asarray(jnp.inf), jnp.asarray(0))
    params, _, loglik, _, iterations = jax.lax.while_loop(keep_going, step, init)
    return params, loglik, iterations


def fit(train_returns: np.ndarray, max_iter: int = 500, tol: float = 1e-7, return_info: bool = False):
    """Baum-Welch RegimeParams (in return units), state 0 the calm regime. `return_info=True` also returns a dict
    with the mean log-likelihood per bar (of the returns scaled by their std) and the number of EM iterations."""
    returns = np.asarray(train_returns, dtype=np.float64)
    if returns.ndim != 1 or returns.size < 100 or not np.all(np.isfinite(returns)):
        raise ValueError(f"regime model needs a 1-D finite series of at least 100 returns, got shape {returns.shape}")
    scale = float(returns.std())
    scaled, mask = (jnp.asarray(a, jnp.float32) for a in pad_with_mask(returns / scale))
    mean = float(np.mean(returns / scale))
    # start: a calm and a turbulent regime around the sample mean, both persistent
    params0 = RegimeParams(
        means=jnp.asarray([mean, mean], jnp.float32),
        vols=jnp.asarray([0.7, 1.5], jnp.float32),
        transition=jnp.asarray([[0.98, 0.02], [0.05, 0.95]], jnp.float32),
    )
    p, loglik, iterations = _em(scaled, mask, params0, int(max_iter), float(tol))
    order = jnp.argsort(p.vols)  # label switching: state 0 = lower vol
    params = RegimeParams(means=p.means[order] * scale, vols=p.vols[order] * scale,
                          transition=p.transition[order][:, order])
    if not return_info:
        return params
    return params, {"mean_log_likelihood_scaled": float(loglik), "iterations": int(iterations), "scale": scale}


def sample(key, params: RegimeParams, length: int) -> jnp.ndarray:
    """(length,) returns; the first regime is drawn from the stationary distribution."""
    return sample_with_states(key, params, length)[0]


def sample_with_states(key, params: RegimeParams, length: int):
    """(length,) returns and the (length,) regime path that produced them."""
    first_key, switch_key, noise_key = jax.random.split(key, 3)
    first = jax.random.bernoulli(first_key, params.stationary[1]).astype(jnp.int32)
    uniforms = jax.random.uniform(switch_key, (length - 1,))

    def step(state, u):
        nxt = (u < params.transition[state, 1]).astype(jnp.int32)
        return nxt, nxt

    _, rest = jax.lax.scan(step, first, uniforms)
    states = jnp.concatenate([first[None], rest])
    noise = jax.random.normal(noise_key, (length,))
    return params.means[states] + params.vols[states] * noise, states
