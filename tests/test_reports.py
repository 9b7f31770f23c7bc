"""Learning-quality labels, the changelog and summary, the scoreboard, plots and the webhook."""

from __future__ import annotations

import copy
import json
import logging
import socket
import threading
import uuid
from http.server import BaseHTTPRequestHandler, HTTPServer

import fsspec
import numpy as np
import pytest

from jaxrl.reference import rolling_sharpe_np
from jaxrl.registry import Registry
from jaxrl.reports import LABELS, candidate_message, classify, post_webhook, write_quality_reports, write_scoreboard
from jaxrl.reports.plots import PLOT_FILES, plot_backtest, rolling_sharpe_series
from jaxrl.reports.quality import CHANGELOG, SUMMARY, QualityThresholds
from jaxrl.scoreboard import main as scoreboard_main

PNG = b"\x89PNG\r\n\x1a\n"


def attempt(attempt_id="a1", symbol="SPY", **parts):
    """A training record that fails the gate for no particular reason, with `parts` merged into its blocks."""
    record = {
        "attempt_id": attempt_id, "created": f"2026-01-01T00:00:{len(attempt_id):02d}", "kind": "training",
        "symbol": symbol, "env": "position", "agent": "ppo", "network": "mlp", "seed": 0, "candidate_id": None,
        "gate": {"rolling_sharpe_mean": 0.3, "threshold": 1.0, "passed": False, "sharpe": 0.3,
                 "flat_realized_exposure_ratio": 0.1, "avg_abs_realized_exposure": 0.6, "mean_turnover": 0.01,
                 "optimistic": False},
        "validation": {"rolling_sharpe_mean": 0.4, "sharpe": 0.35, "flat_realized_exposure_ratio": 0.1},
        "selection": {"metric": "rolling_sharpe_mean", "window": "validation", "optimistic": False, "best_update": 40,
                      "best_score": 0.4, "evals": 6, "stopped": False, "stop_update": -1},
        "history": {"update": [10, 20, 30, 40, 50, 60], "rolling_sharpe_mean": [0.1, 0.2, 0.3, 0.4, 0.35, 0.38],
                    "flat_realized_exposure_ratio": [0.1] * 6},
        "training": {"train_sharpe": 0.6, "reward_pnl_correlation": 0.8, "final_episode_return": 1.0},
    }
    for block, values in parts.items():
        if isinstance(values, dict) and isinstance(record.get(block), dict):
            record[block].update(values)
        else:
            record[block] = values
    return record


CASES = {
    "underperformed": {},
    "passed": {"gate": {"rolling_sharpe_mean": 1.25, "passed": True, "sharpe": 1.1}},
    "near_miss": {"gate": {"rolling_sharpe_mean": 0.85}},
    "flat_policy_collapse": {"gate": {"rolling_sharpe_mean": 0.0, "sharpe": 0.0, "flat_realized_exposure_ratio": 0.97}},
    "high_turnover_low_sharpe": {"gate": {"mean_turnover": 0.35, "sharpe": 0.1}},
    "training_to_real_gap": {"training": {"train_sharpe": 2.6}},
    "early_peak_then_degradation": {"history": {"update": [10, 20, 30, 40, 50, 60],
                                                "rolling_sharpe_mean": [1.1, 0.9, 0.6, 0.3, 0.2, 0.1]}},
    "reward_pnl_misalignment": {"training": {"reward_pnl_correlation": -0.2}},
    "implausible_result": {"gate": {"rolling_sharpe_mean": 7.5, "sharpe": 6.2, "passed": True}},
    "gate_metric_divergence": {"gate": {"rolling_sharpe_mean": 1.19, "passed": True, "sharpe": -0.04,
                                        "total_return": -0.011}},
    "insignificant_pass": {"gate": {"rolling_sharpe_mean": 1.05, "passed": True, "sharpe": 0.45,
                                    "total_return": 0.08, "sharpe_confidence": 0.84,
                                    "candidate_rules": {"applied": ["rolling_sharpe_mean >= threshold", "sharpe > 0",
                                                                    "total_return > 0", "sharpe_confidence >= 0.95"],
                                                        "failed": ["sharpe_confidence >= 0.95"]}}},
}


def test_every_label_has_a_case():
    assert set(CASES) == set(LABELS)


@pytest.mark.parametrize("label", LABELS)
def test_each_label_is_assigned(label):
    quality = classify(attempt(**copy.deepcopy(CASES[label])))
    assert quality["label"] == label, quality
    assert quality["next_action"] and label in quality["flags"]
    assert all(v is None or isinstance(v, float) for v in quality["evidence"].values())


def test_other_routes_to_labels():
    assert classify(attempt(selection={"stopped": True}))["label"] == "flat_policy_collapse"
    assert classify(attempt(validation={"flat_realized_exposure_ratio": 0.95}))["label"] == "flat_policy_collapse"
    assert classify(attempt(training={"train_sharpe": 0.2, "synthetic_sharpe": 3.0}))["label"] == "training_to_real_gap"
    assert classify(attempt(gate={"win_rate": 0.93}))["label"] == "implausible_result"
    near = classify(attempt(gate={"rolling_sharpe_mean": 0.85}), QualityThresholds(near_miss_margin=0.1))
    assert near["label"] == "underperformed"
    assert classify(attempt(gate={"rolling_sharpe_mean": 1.2, "passed": None}))["label"] == "passed"


def test_precedence():
    both = attempt(gate={"rolling_sharpe_mean": 6.5, "sharpe": 5.5, "passed": True})
    assert classify(both)["label"] == "implausible_result" and "passed" in classify(both)["flags"]
    flat_near = attempt(gate={"rolling_sharpe_mean": 0.9, "flat_realized_exposure_ratio": 0.96})
    assert classify(flat_near)["label"] == "flat_policy_collapse" and "near_miss" in classify(flat_near)["flags"]
    optimistic = classify(attempt(gate={"rolling_sharpe_mean": 1.3, "passed": True, "optimistic": True}))
    assert optimistic["label"] == "passed" and "optimistic" in optimistic["next_action"]


@pytest.mark.parametrize("record", [
    {}, {"gate": None, "validation": None, "selection": None, "history": None, "training": None},
    {"gate": "broken", "history": {"rolling_sharpe_mean": [None, "x", float("nan"), 1.0]}, "training": [1, 2]},
    {"gate": {"rolling_sharpe_mean": "n/a", "threshold": None, "sharpe": float("inf")}},
])
def test_missing_or_malformed_evidence_never_crashes(record):
    quality = classify(record)
    assert quality["label"] == "underperformed" and quality["evidence"]["gate_value"] is None


def test_changelog_appends_and_summary_counts(tmp_path):
    registry = Registry(tmp_path / "registry")
    near = registry.record_attempt(attempt("t-near", **copy.deepcopy(CASES["near_miss"])))
    flat = attempt("t-flat", symbol="BTC", **copy.deepcopy(CASES["flat_policy_collapse"]))
    registry.record_attempt({"attempt_id": "b-1", "kind": "baseline", "symbol": "SPY", "policy": "flat",
                             "gate": {"rolling_sharpe_mean": 0.0, "flat_realized_exposure_ratio": 1.0}})

    write_quality_reports(registry, near, classify(near))
    summary = write_quality_reports(registry, flat, classify(flat))  # not yet in the registry: still counted

    text = registry.read_text(CHANGELOG)
    assert text.count("\n## ") == 2 and text.index("t-near") < text.index("t-flat")
    assert "**near_miss**" in text and "**flat_policy_collapse**" in text and "gate_value=0.85" in text
    assert "next action: " in text and "symbol BTC" in text and "network mlp" in text and "seed 0" in text
    saved = json.loads(registry.read_text(SUMMARY))
    assert saved["counts"] == summary["counts"] and saved["total"] == 2  # the baseline is not a learning attempt
    assert saved["counts"]["near_miss"] == 1 and saved["counts"]["flat_policy_collapse"] == 1
    assert saved["counts"]["passed"] == 0 and set(saved["counts"]) == set(LABELS)
    assert saved["by_symbol"] == {"SPY": {"near_miss": 1}, "BTC": {"flat_policy_collapse": 1}}
    assert {(a["attempt_id"], a["label"]) for a in saved["attempts"]} == {("t-near", "near_miss"),
                                                                          ("t-flat", "flat_policy_collapse")}


# ---- scoreboard -------------------------------------------------------------------------------------------------
def fill_registry(registry: Registry):
    def baseline(attempt_id, symbol, policy, value):
        return {"attempt_id": attempt_id, "kind": "baseline", "symbol": symbol, "policy": policy, "agent": "baseline",
                "network": None, "seed": None, "created": "2026-01-01T00:00:00",
                "gate": {"rolling_sharpe_mean": value, "passed": value >= 1.0, "threshold": 1.0, "sharpe": value / 2,
                         "avg_abs_realized_exposure": 1.0, "flat_realized_exposure_ratio": 0.0,
                         "mean_turnover": 0.001}}

    registry.record_attempt(baseline("b-spy-hold", "SPY", "buy_and_hold", 1.8))
    registry.record_attempt(baseline("b-spy-flat", "SPY", "flat", 0.0))
    registry.record_attempt(attempt("t-spy", gate={"rolling_sharpe_mean": 1.2, "passed": True}))
    registry.record_attempt(attempt("t-btc", symbol="BTC", gate={"rolling_sharpe_mean": 0.5}))
    registry.record_attempt({"attempt_id": "t-broken", "kind": "training", "symbol": "SPY", "gate": None})


@pytest.fixture(params=["local", "memory"])
def registry(request, tmp_path):
    if request.param == "local":
        yield Registry(tmp_path / "registry")
        return
    root = f"memory://jaxrl-test-{uuid.uuid4().hex}"
    yield Registry(root)
    fs = fsspec.filesystem("memory")
    path = root.split("://", 1)[1]
    if fs.exists(path):
        fs.rm(path, recursive=True)


def test_scoreboard_ranks_and_gaps(registry):
    fill_registry(registry)
    rows = write_scoreboard(registry)
    assert [r["attempt_id"] for r in rows] == ["b-spy-hold", "t-spy", "t-btc", "b-spy-flat", "t-broken"]
    assert [r["rank"] for r in rows] == [1, 2, 3, 4, 5]
    by_id = {r["attempt_id"]: r for r in rows}
    assert by_id["t-spy"]["gap_to_best_baseline"] == pytest.approx(1.2 - 1.8)
    assert by_id["t-spy"]["best_baseline"] == "buy_and_hold" and by_id["t-spy"]["agent"] == "ppo"
    assert by_id["b-spy-hold"]["gap_to_best_baseline"] == 0.0 and by_id["b-spy-hold"]["agent"] == "buy_and_hold"
    assert by_id["t-btc"]["gap_to_best_baseline"] is None and by_id["t-btc"]["best_baseline"] is None
    assert by_id["t-broken"]["gate_value"] is None and by_id["t-broken"]["gap_to_best_baseline"] is None
    assert by_id["t-spy"]["passed"] is True and by_id["t-spy"]["flat_realized_exposure_ratio"] == 0.1
    saved = json.loads(registry.read_text("scoreboard.json"))
    assert [r["attempt_id"] for r in saved["rows"]] == [r["attempt_id"] for r in rows]
    markdown = registry.read_text("scoreboard.md")
    assert sum(line.startswith("|") for line in markdown.splitlines()) == 2 + len(rows)
    assert "-0.600 vs buy_and_hold" in markdown


def test_scoreboard_cli_writes_elsewhere(tmp_path, capsys):
    registry = Registry(tmp_path / "registry")
    fill_registry(registry)
    assert scoreboard_main(["--registry", str(tmp_path / "registry"), "--out", str(tmp_path / "out")]) == 0
    rows = json.loads((tmp_path / "out" / "scoreboard.json").read_text())["rows"]
    assert rows[0]["attempt_id"] == "b-spy-hold" and (tmp_path / "out" / "scoreboard.md").exists()
    assert not (tmp_path / "registry" / "scoreboard.json").exists()
    assert "5 attempts ranked" in capsys.readouterr().out


def test_empty_registry_scoreboard(tmp_path):
    assert write_scoreboard(Registry(tmp_path / "empty")) == []
    assert "no attempts yet" in (tmp_path / "empty" / "scoreboard.md").read_text()


# ---- plots ------------------------------------------------------------------------------------------------------
def test_plots_write_pngs(tmp_path):
    rng = np.random.default_rng(0)
    n = 300
    asset = rng.normal(0.0004, 0.01, n)
    exposures = np.clip(np.round(rng.normal(0.5, 0.5, n), 1), -1, 1)
    strategy = exposures * asset
    dates = np.arange(np.datetime64("2020-01-01"), np.datetime64("2020-01-01") + n)
    paths = plot_backtest(tmp_path / "plots", dates, strategy, exposures, asset, 1.0, 252, window=30, title="TEST")
    assert [p.name for p in paths] == list(PLOT_FILES)
    for path in paths:
        data = path.read_bytes()
        assert data[:8] == PNG and len(data) > 5000
    np.testing.assert_allclose(rolling_sharpe_series(strategy, 252, 30), rolling_sharpe_np(strategy, 252, 30),
                               rtol=1e-9, atol=1e-12)
    assert len(plot_backtest(tmp_path / "short", None, strategy[:10], exposures[:10], asset[:10], 1.0, 252)) == 3


# ---- webhook ----------------------------------------------------------------------------------------------------
@pytest.fixture
def webhook_server():
    received = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append((self.path, self.headers["Content-Type"], json.loads(body)))
            self.send_response(500 if self.path == "/fail" else 200)
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", received
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


def test_webhook_posts_slack_json(webhook_server):
    url, received = webhook_server
    assert post_webhook(f"{url}/hooks/T000/B000", "New candidate: SPY +1.23") is True
    assert received == [("/hooks/T000/B000", "application/json; charset=utf-8", {"text": "New candidate: SPY +1.23"})]


def test_webhook_failures_return_false(webhook_server, caplog):
    url, received = webhook_server
    with caplog.at_level(logging.WARNING, logger="jaxrl.reports.notify"):
        assert post_webhook(f"{url}/fail", "x") is False
        with socket.socket() as probe:  # a port that was free a moment ago and is now closed
            probe.bind(("127.0.0.1", 0))
            closed = probe.getsockname()[1]
        assert post_webhook(f"http://127.0.0.1:{closed}/hook", "x", timeout=2) is False
        assert post_webhook("not a url", "x") is False
    assert len(caplog.records) == 3 and "T000" not in caplog.text


def test_candidate_message():
    record = attempt("t-1", gate={"rolling_sharpe_mean": 1.234, "passed": True, "start": "2015-08-28",
                                  "end": "2020-08-28", "total_return": 0.5, "max_drawdown": -0.2},
                     candidate_id="t-1", quality={"label": "passed"})
    text = candidate_message(record)
    assert text.startswith("New candidate t-1: SPY ppo/mlp seed 0") and "+1.234 vs threshold 1.00" in text
    assert "2015-08-28..2020-08-28" in text and "quality: passed" in text and "optimistic" not in text
    assert "did not pass" in candidate_message(attempt("t-2")) and candidate_message({})
