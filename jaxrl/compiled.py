"""Compiled programs kept per learner, in one place.

Each owner (a learner, a population) has one dict of compiled programs, created on first use and dropped with the
owner (a WeakKeyDictionary: nothing is written into the owner itself). Later runs of the same owner (resume, a
population's members, tests) reuse what is there; population groups of one shape share one dict (`share_compiled`).
"""

from __future__ import annotations

import weakref
from typing import Any, Callable

import jax

_CACHES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def compiled_cache(owner) -> dict[Any, Any]:
    """`owner`'s compiled programs by name (e.g. "chunks": run_in_chunks' programs by chunk size)."""
    return _CACHES.setdefault(owner, {})


def share_compiled(owner, cache: dict[Any, Any]) -> None:
    """Make `owner` use `cache` (another owner's `compiled_cache`, or a fresh dict several owners share)."""
    _CACHES[owner] = cache


def compiled_once(owner, name: str, fn: Callable) -> Callable:
    """`jax.jit(fn)`, made once per owner under `name`: `fn` must take everything that differs between calls as
    arguments (a population's members, a resumed run)."""
    cache = compiled_cache(owner)
    if name not in cache:
        cache[name] = jax.jit(fn)
    return cache[name]
