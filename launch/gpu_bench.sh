#!/usr/bin/env bash
# The `gpu` benchmark suite on one accelerator, then its Markdown table on stdout. Run it from the repository root of
# a checkout installed with its accelerator's JAX (pip install -e ".[cuda]"):
#
#   launch/gpu_bench.sh [OUT_DIR] [more python -m jaxrl.bench options]      # default OUT_DIR: bench-gpu
#
# Sized to finish in about 8 minutes on an H200 (environments at 2^12..2^20 envs, a 15M-step PPO run on the exit
# env at 256 / 4,096 / 65,536 envs with compile in its wall time, 1,024 PPO members, the gate backtest of 1,024
# policies, 100,000 ReBRAC updates projected to 1M, the sequence backbones at 4,096 envs, the memory estimate).
# Nothing here has run on an accelerator yet: the sizes are estimates. The JSON and the table are rewritten after
# every entry, an entry that fails (out of memory) is recorded and the next one runs (--keep-going), and the run
# stops after GPU_BENCH_TIMEOUT seconds (default 600): a run cut short still prints what it measured. A CPU-only JAX is refused (GPU_BENCH_ALLOW_CPU=1 runs anyway; `--size small` is the CPU-sized suite).
# GPU_BENCH_DRY_RUN=1 prints the benchmark command instead of running it.
set -euo pipefail

OUT_DIR="${1:-bench-gpu}"
shift || true
PYTHON="${PYTHON:-python}"
TIMEOUT="${GPU_BENCH_TIMEOUT:-600}"
COMMAND=("$PYTHON" -m jaxrl.bench --suite gpu --keep-going --out "$OUT_DIR/bench.json" "$@")

if [[ -n "${GPU_BENCH_DRY_RUN:-}" ]]; then
  echo "timeout $TIMEOUT ${COMMAND[*]}"
  exit 0
fi
platform="$("$PYTHON" -c 'import jax; print(jax.devices()[0].platform)')"
if [[ "$platform" == "cpu" && -z "${GPU_BENCH_ALLOW_CPU:-}" ]]; then
  echo "launch/gpu_bench.sh: JAX sees no accelerator (platform cpu): install jax[cuda12] (pip install -e \".[cuda]\")," \
       "or run the CPU-sized suite: python -m jaxrl.bench --suite gpu --size small" >&2
  exit 2
fi
mkdir -p "$OUT_DIR"
status=0
timeout "$TIMEOUT" "${COMMAND[@]}" > "$OUT_DIR/bench.log" 2>&1 || status=$?
if [[ -f "$OUT_DIR/bench.md" ]]; then
  cat "$OUT_DIR/bench.md"
fi
if [[ $status -ne 0 ]]; then
  echo "launch/gpu_bench.sh: the benchmark exited $status (124: stopped after ${TIMEOUT}s); the table above holds" \
       "the entries it finished; log: $OUT_DIR/bench.log" >&2
  tail -n 20 "$OUT_DIR/bench.log" >&2
fi
exit "$status"
