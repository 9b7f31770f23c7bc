"""Typed configuration: every group's keys, types and ranges, checked before anything is loaded or compiled."""

from jaxrl.config.rules import ConfigError, Rule
from jaxrl.config.schema import check_against_market, validate_config

__all__ = ["ConfigError", "Rule", "check_against_market", "validate_config"]
