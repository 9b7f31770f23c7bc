"""Notifications: a Slack-compatible webhook post (`{"text": ...}`) with the standard library only.

A notification is a courtesy: a network failure logs a warning and returns False, it never stops a training run.
"""

from __future__ import annotations

import http.client
import json
import logging
import urllib.error
import urllib.parse
import urllib.request
from typing import Any, Mapping

log = logging.getLogger(__name__)


def post_webhook(url: str, text: str, timeout: float = 10) -> bool:
    """POST {"text": text} as JSON to `url`. True on a 2xx answer; False (with a warning) on anything else."""
    body = json.dumps({"text": text}).encode("utf-8")
    try:
        request = urllib.request.Request(url, data=body, method="POST",
                                         headers={"Content-Type": "application/json; charset=utf-8"})
        with urllib.request.urlopen(request, timeout=timeout) as response:
            status = getattr(response, "status", 200)
            response.read()
    except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as exc:
        # HTTPError (a non-2xx answer) is a URLError too; ValueError covers a malformed URL.
        log.warning("webhook post to %s failed: %s", _redact(url), exc)
        return False
    if not 200 <= status < 300:
        log.warning("webhook post to %s answered HTTP %s", _redact(url), status)
        return False
    return True


def _redact(url: str) -> str:
    """Scheme and host only: webhook URLs carry their secret in the path."""
    parts = urllib.parse.urlsplit(url) if url else None
    return f"{parts.scheme}://{parts.netloc}/..." if parts and parts.netloc else "<webhook>"


def _f(value: Any, spec: str) -> str:
    try:
        return format(float(value), spec)
    except (TypeError, ValueError):
        return "n/a"


def candidate_message(record: Mapping[str, Any]) -> str:
    """One short message about an attempt's gate result (a new candidate when it passed)."""
    gate = record.get("gate") if isinstance(record.get("gate"), Mapping) else {}
    passed = gate.get("passed") is True
    who = record.get("policy") if record.get("kind") == "baseline" else record.get("agent")
    head = (f"New candidate {record.get('candidate_id')}" if passed and record.get("candidate_id")
            else f"Attempt {record.get('attempt_id')} {'passed' if passed else 'did not pass'} the gate")
    lines = [
        f"{head}: {record.get('symbol', '?')} {who or '?'}"
        + (f"/{record['network']}" if record.get("network") else "")
        + (f" seed {record['seed']}" if record.get("seed") is not None else ""),
        f"gate value (rolling_sharpe_mean) {_f(gate.get('rolling_sharpe_mean'), '+.3f')} vs threshold "
        f"{_f(gate.get('threshold'), '.2f')} over {gate.get('start', '?')}..{gate.get('end', '?')}",
        f"sharpe {_f(gate.get('sharpe'), '+.2f')}, total return {_f(gate.get('total_return'), '+.1%')}, "
        f"max drawdown {_f(gate.get('max_drawdown'), '.1%')}, avg |exposure| "
        f"{_f(gate.get('avg_abs_realized_exposure'), '.2f')}, "
        f"flat {_f(gate.get('flat_realized_exposure_ratio'), '.0%')}",
    ]
    quality = record.get("quality")
    if isinstance(quality, Mapping) and quality.get("label"):
        lines.append(f"quality: {quality['label']}")
    if gate.get("optimistic") is True:
        lines.append("warning: optimistic (checkpoint selected on the gate window)")
    return "\n".join(lines)
