"""GARCH(1,1) with standardised Student-t innovations, fitted by maximum likelihood.

    r_t = mu + sigma_t z_t,   sigma_t^2 = omega + alpha (r_{t-1} - mu)^2 + beta sigma_{t-1}^2,
    z_t ~ t(nu) scaled to unit variance.

The fit works on returns divided by their sample std (so every parameter is O(1) in float32) and optimises
unconstrained coordinates with L-BFGS (optax):
    persistence alpha + beta = sigmoid(a) < 1,  alpha = persistence * sigmoid(b),  beta = persistence - alpha,
    unconditional variance omega / (1 - alpha - beta) = exp(c) > 0,  nu = 2 + exp(d) > 2.
The variance recursion starts from the sample variance of the demeaned returns (backcast).

`mean="sample"` fixes mu at the sample mean and fits the rest by maximum likelihood. The t-likelihood's own mu
is a robust location (near the median), which on equity indices sits well above the sample mean; since a GARCH
path's expected return is exactly mu, "sample" keeps the synthetic drift equal to the real one.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct
from jax.scipy.special import gammaln

from jaxrl.synth.padding import pad_with_mask

NU_MAX = 200.0  # beyond this the t is a Gaussian for any practical purpose; the cap keeps the fit bounded


@struct.dataclass
class GarchParams:
    mu: jnp.ndarray
    omega: jnp.ndarray
    alpha: jnp.ndarray
    beta: jnp.ndarray
    nu: jnp.ndarray

    @property
    def persistence(self):
        return self.alpha + self.beta

    @property
    def unconditional_variance(self):
        return self.omega / (1.0 - self.alpha - self.beta)


def _constrain(theta):
    mu, a, b, c, d = theta
    persistence = jax.nn.sigmoid(a)
    alpha = persistence * jax.nn.sigmoid(b)
    beta = persistence - alpha
    omega = jnp.exp(c) * (1.0 - persistence)
    nu = 2.0 + jnp.minimum(jnp.exp(d), NU_MAX - 2.0)
    return GarchParams(mu=mu, omega=omega, alpha=alpha, beta=beta, nu=nu)


def conditional_variance(params: GarchParams, returns, initial_variance):
    """sigma_t^2 for t = 0..T-1, sigma_0^2 = initial_variance."""
    eps = returns - params.mu

    def step(variance, e):
        return params.omega + params.alpha * e**2 + params.beta * variance, variance

    _, variance = jax.lax.scan(step, initial_variance, eps)
    return variance


def log_likelihood(params: GarchParams, returns, mask=None) -> jnp.ndarray:
    """Mean log-likelihood per bar, variance backcast from the sample variance of the demeaned returns.
    `mask` (0/1 per bar, trailing zeros only) marks padding, which neither counts nor moves the real bars."""
    mask = jnp.ones_like(returns) if mask is None else mask
    bars = jnp.sum(mask)
    eps = (returns - params.mu) * mask
    variance = conditional_variance(params, eps + params.mu, jnp.sum(eps**2) / bars)
    nu = params.nu
    log_density = (gammaln((nu + 1.0) / 2.0) - gammaln(nu / 2.0) - 0.5 * jnp.log(jnp.pi * (nu - 2.0))
                   - 0.5 * jnp.log(variance) - (nu + 1.0) / 2.0 * jnp.log1p(eps**2 / ((nu - 2.0) * variance)))
    return jnp.sum(mask * log_density) / bars


@functools.partial(jax.jit, static_argnames=("max_iter", "fix_mean"))
def _maximise(scaled, mask, theta0, max_iter: int, tol: float, fix_mean: bool):
    def loss(theta):
        if fix_mean:  # mu stays at theta0[0]: its gradient is zero, so L-BFGS never moves it
            theta = theta.at[0].set(theta0[0])
        return -log_likelihood(_constrain(theta), scaled, mask)

    solver = optax.lbfgs()
    value_and_grad = optax.value_and_grad_from_state(loss)

    def step(carry):
        theta, state, _, it = carry
        value, grad = value_and_grad(theta, state=state)
        updates, state = solver.update(grad, state, theta, value=value, grad=grad, value_fn=loss)
        return optax.apply_updates(theta, updates), state, jnp.linalg.norm(grad), it + 1

    def keep_going(carry):
        _, _, grad_norm, it = carry
        return (it < max_iter) & (grad_norm > tol)

    init = (theta0, solver.init(theta0), jnp.asarray(jnp.inf), jnp.asarray(0))
    theta, _, grad_norm, iterations = jax.lax.while_loop(keep_going, step, init)
    return theta, -loss(theta), grad_norm, iterations


def fit(train_returns: np.ndarray, max_iter: int = 500, tol: float = 1e-6, mean: str = "mle",
        return_info: bool = False):
    """Maximum-likelihood GarchParams (in return units); mu by ML (`mean="mle"`) or the sample mean ("sample").
    `return_info=True` also returns a dict with the mean log-likelihood per bar (of the returns scaled by their
    std), the final gradient norm and the number of L-BFGS iterations."""
    if mean not in ("mle", "sample"):
        raise ValueError(f"mean must be 'mle' or 'sample', got {mean!r}")
    returns = np.asarray(train_returns, dtype=np.float64)
    if returns.ndim != 1 or returns.size < 100 or not np.all(np.isfinite(returns)):
        raise ValueError(f"GARCH needs a 1-D finite series of at least 100 returns, got shape {returns.shape}")
    scale = float(returns.std())
    scaled, mask = (jnp.asarray(a, jnp.float32) for a in pad_with_mask(returns / scale))
    # start: persistence 0.95 with a 10% ARCH share, sample mean and variance, nu = 8
    theta0 = jnp.asarray([float(np.mean(returns)) / scale, np.log(0.95 / 0.05), np.log(0.1 / 0.9), 0.0, np.log(6.0)],
                         jnp.float32)
    theta, loglik, grad_norm, iterations = _maximise(scaled, mask, theta0, int(max_iter), float(tol),
                                                     mean == "sample")
    p = _constrain(theta)
    params = GarchParams(mu=p.mu * scale, omega=p.omega * scale**2, alpha=p.alpha, beta=p.beta, nu=p.nu)
    if not return_info:
        return params
    info = {"mean_log_likelihood_scaled": float(loglik), "grad_norm": float(grad_norm),
            "iterations": int(iterations), "scale": scale}
    return params, info


def student_t(key, nu, shape) -> jnp.ndarray:
    """Student-t draws by Bailey's polar method with the disc point drawn exactly (radius^2 ~ U(0, 1), angle
    uniform): t = cos(2 pi U2) sqrt(nu (U1^(-2/nu) - 1)). No rejection loop, so it compiles in a fraction of the
    time `jax.random.t` (a gamma rejection sampler) needs under vmap."""
    radius_key, angle_key = jax.random.split(key)
    radius2 = 1.0 - jax.random.uniform(radius_key, shape)  # (0, 1]
    angle = 2.0 * jnp.pi * jax.random.uniform(angle_key, shape)
    return jnp.cos(angle) * jnp.sqrt(nu * (radius2 ** (-2.0 / nu) - 1.0))


def sample(key, params: GarchParams, length: int) -> jnp.ndarray:
    """(length,) returns; the variance starts at its unconditional level omega / (1 - alpha - beta)."""
    nu = params.nu
    z = student_t(key, nu, (length,)) * jnp.sqrt((nu - 2.0) / nu)

    def step(variance, shock):
        eps = jnp.sqrt(variance) * shock
        return params.omega + params.alpha * eps**2 + params.beta * variance, eps

    _, eps = jax.lax.scan(step, params.unconditional_variance, z)
    return params.mu + eps
