"""Markets with a known answer for the learning-quality benchmark, and the best causal exposure on each.

Every market is a daily series simulated in float64 numpy from a fixed seed and written as an ordinary CSV, so the
benchmark trains through exactly the loader, environment, selection and gate a user's file goes through. What makes
a market useful here is that its data-generating process is known, so the conditional mean of the next return given
everything up to the decision bar can be computed exactly (`conditional_mean`), and from it the oracle exposures
(`jaxrl.quality.oracle`).

| kind | process of the simple return r_t | conditional mean of r_{t+1} given bars <= t |
|---|---|---|
| `ar1` | r_t = phi * r_{t-1} + vol * eps_t | phi * r_t |
| `regime` | hidden two-state Markov drift +-drift, stay probability `stay`, r_t = drift_{s_t} + vol * eps_t | drift * (P(up at t+1) - P(down at t+1)), from the Hamilton filter |
| `garch` | GARCH(1,1) volatility, no drift | 0 |
| `random_walk` | vol * eps_t | 0 |

The last two are the negative controls: no policy has an edge there, so none may ever pass the gate.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

KINDS = ("ar1", "regime", "garch", "random_walk")
FIRST_DATE = "2004-01-05"


@dataclasses.dataclass(frozen=True)
class MarketSpec:
    """One generated market. `years` of 252 business days; `seed` fixes the path (never a training seed)."""

    name: str
    kind: str
    seed: int
    years: float = 16.0
    vol: float = 0.01  # daily volatility of the innovations
    phi: float = 0.0  # ar1: autocorrelation of returns
    drift: float = 0.0  # regime: |daily drift| in each regime
    stay: float = 0.98  # regime: probability of keeping the regime from one bar to the next
    garch_alpha: float = 0.08  # garch: weight of the last squared innovation
    garch_beta: float = 0.9  # garch: weight of the last variance

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"market {self.name!r}: unknown kind {self.kind!r}; expected one of {KINDS}")
        if not 0.0 < self.vol < 0.2:
            raise ValueError(f"market {self.name!r}: vol must be in (0, 0.2), got {self.vol}")
        if not -1.0 < self.phi < 1.0:
            raise ValueError(f"market {self.name!r}: phi must be in (-1, 1), got {self.phi}")
        if not 0.0 < self.stay < 1.0:
            raise ValueError(f"market {self.name!r}: stay must be in (0, 1), got {self.stay}")
        if self.garch_alpha < 0 or self.garch_beta < 0 or self.garch_alpha + self.garch_beta >= 1:
            raise ValueError(f"market {self.name!r}: garch needs alpha, beta >= 0 and alpha + beta < 1")

    @property
    def num_bars(self) -> int:
        return int(round(self.years * 252))

    @property
    def planted(self) -> bool:
        """Whether the market carries an edge (the controls do not)."""
        return self.kind in ("ar1", "regime") and (self.phi != 0.0 or self.drift != 0.0)

    def with_seed(self, seed: int) -> "MarketSpec":
        return dataclasses.replace(self, seed=seed)


# The benchmark's markets. Strengths are chosen so the naive one-step oracle earns a gate value of roughly 0.6 to 2
# at 0 bps: a real but modest edge, like the one a daily strategy can hope for.
MARKETS: dict[str, MarketSpec] = {spec.name: spec for spec in (
    MarketSpec("ar1_momentum", "ar1", seed=101, phi=0.2),
    MarketSpec("ar1_momentum_weak", "ar1", seed=102, phi=0.1),
    MarketSpec("ar1_reversion", "ar1", seed=103, phi=-0.15),
    MarketSpec("regime_trend", "regime", seed=104, drift=0.002, stay=0.985),
    MarketSpec("garch_no_drift", "garch", seed=105),
    MarketSpec("random_walk", "random_walk", seed=106),
)}


@dataclasses.dataclass(frozen=True)
class Simulated:
    returns: np.ndarray  # (T,) r_0 = 0, r_t = c_t / c_{t-1} - 1
    regimes: np.ndarray | None  # (T,) +1 / -1 drift regime of each bar (regime markets)


def simulate(spec: MarketSpec) -> Simulated:
    """The market's returns (float64), from its own seed only."""
    rng = np.random.default_rng(spec.seed)
    n = spec.num_bars
    eps = rng.standard_normal(n)
    returns = np.zeros(n)
    regimes = None
    if spec.kind == "ar1":
        innovation = spec.vol * np.sqrt(1.0 - spec.phi**2)  # unconditional daily vol = spec.vol
        for t in range(1, n):
            returns[t] = spec.phi * returns[t - 1] + innovation * eps[t]
    elif spec.kind == "regime":
        switch = rng.random(n) > spec.stay
        regimes = np.ones(n)
        regimes[0] = 1.0 if rng.random() < 0.5 else -1.0
        for t in range(1, n):
            regimes[t] = -regimes[t - 1] if switch[t] else regimes[t - 1]
        returns[1:] = spec.drift * regimes[1:] + spec.vol * eps[1:]
    elif spec.kind == "garch":
        omega = spec.vol**2 * (1.0 - spec.garch_alpha - spec.garch_beta)  # unconditional variance = vol^2
        variance, shock = spec.vol**2, 0.0
        for t in range(1, n):
            variance = omega + spec.garch_alpha * shock**2 + spec.garch_beta * variance
            shock = np.sqrt(variance) * eps[t]
            returns[t] = shock
    else:
        returns[1:] = spec.vol * eps[1:]
    return Simulated(np.clip(returns, -0.5, 0.5), regimes)


def conditional_mean(spec: MarketSpec, returns: np.ndarray) -> np.ndarray:
    """m[t] = E[r_{t+1} | r_0..r_t] under the market's own process: the signal a perfect causal trader acts on."""
    if spec.kind == "ar1":
        return spec.phi * returns
    if spec.kind != "regime":
        return np.zeros_like(returns)
    # Hamilton filter over the two drift states (+drift, -drift), both with vol spec.vol
    means = np.array([spec.drift, -spec.drift])
    transition = np.array([[spec.stay, 1 - spec.stay], [1 - spec.stay, spec.stay]])
    predicted = np.array([0.5, 0.5])  # P(s_t | r_1..r_{t-1})
    m = np.zeros_like(returns)
    for t in range(len(returns)):
        if t > 0:  # r_0 is not a return of the process
            likelihood = np.exp(-0.5 * ((returns[t] - means) / spec.vol) ** 2)
            predicted = predicted * likelihood
            predicted /= predicted.sum()
        predicted = predicted @ transition  # now P(s_{t+1} | r_1..r_t)
        m[t] = predicted @ means
    return m


def write_market(spec: MarketSpec, directory: str | Path) -> Path:
    """Write the market as `<name>_daily.csv` (Date, Close) with a JSON sidecar of its spec. Returns the path.

    The file is rewritten only when its contents would change, so its SHA-256 (and a run's recipe) is stable."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    simulated = simulate(spec)
    closes = 100.0 * np.cumprod(1.0 + simulated.returns)
    dates = pd.bdate_range(FIRST_DATE, periods=spec.num_bars)
    text = pd.DataFrame({"Date": dates.strftime("%Y-%m-%d"), "Close": np.round(closes, 6)}).to_csv(index=False)
    path = directory / f"{spec.name}_daily.csv"
    if not path.exists() or path.read_text() != text:
        tmp = path.with_suffix(".csv.tmp")
        tmp.write_text(text)
        tmp.replace(path)
    (directory / f"{spec.name}.json").write_text(json.dumps(dataclasses.asdict(spec), indent=1) + "\n")
    return path


def file_returns(path: str | Path) -> np.ndarray:
    """Returns as the loader computes them from the written closes (rounded to 6 decimals), in float64."""
    closes = pd.read_csv(path)["Close"].to_numpy(np.float64)
    returns = np.zeros_like(closes)
    returns[1:] = closes[1:] / closes[:-1] - 1.0
    return returns


def spec_hash(spec: MarketSpec) -> str:
    return hashlib.sha256(json.dumps(dataclasses.asdict(spec), sort_keys=True).encode()).hexdigest()[:12]


def describe(spec: MarketSpec) -> dict[str, Any]:
    return {**dataclasses.asdict(spec), "planted": spec.planted, "num_bars": spec.num_bars}
