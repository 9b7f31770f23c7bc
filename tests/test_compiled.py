"""Compiled programs are kept per owner in one place (jaxrl/compiled.py), never written into the owner."""

import gc

import jax.numpy as jnp

from jaxrl import compiled
from jaxrl.compiled import compiled_cache, compiled_once, share_compiled


class Owner:
    pass


def test_compiled_once_per_owner_and_name():
    a, b = Owner(), Owner()
    first = compiled_once(a, "double", lambda x: 2 * x)
    assert compiled_once(a, "double", lambda x: 3 * x) is first  # made once: the second fn is not used
    assert float(first(jnp.float32(2.0))) == 4.0
    other = compiled_once(b, "double", lambda x: 3 * x)
    assert other is not first and float(other(jnp.float32(2.0))) == 6.0
    assert vars(a) == {} and vars(b) == {}  # nothing written into the owners
    assert set(compiled_cache(a)) == {"double"}


def test_shared_cache_and_dropped_with_the_owner():
    a, b = Owner(), Owner()
    programs = {}
    share_compiled(a, programs)
    share_compiled(b, programs)
    assert compiled_once(a, "f", lambda x: x + 1) is compiled_once(b, "f", lambda x: x - 1)
    assert compiled_cache(a) is programs is compiled_cache(b)
    count = len(compiled._CACHES)
    del a, b
    gc.collect()
    assert len(compiled._CACHES) == count - 2
