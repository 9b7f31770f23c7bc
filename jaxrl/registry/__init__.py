"""Attempt records and gate-passing candidate models, on local disk or any fsspec store."""

from jaxrl.registry.store import Registry, new_attempt_id

__all__ = ["Registry", "new_attempt_id"]
