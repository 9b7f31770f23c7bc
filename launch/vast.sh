#!/usr/bin/env bash
# jaxrl on a Vast.ai GPU, directly through the `vastai` CLI (pip install vastai; vastai set api-key KEY).
# Run it from the repository root. See `launch/vast.sh --help`.
set -euo pipefail

readonly REMOTE_DIR="jaxrl"                     # under the instance's home directory
readonly VENV="jaxrl-venv"                      # ~/jaxrl-venv on the instance
DEFAULT_QUERY="gpu_name=RTX_4090 num_gpus=1 reliability>0.98 inet_down>200 disk_space>=60 cuda_vers>=12.4"
VAST_QUERY="${VAST_QUERY:-$DEFAULT_QUERY rentable=true}"
VAST_IMAGE="${VAST_IMAGE:-pytorch/pytorch:latest}"
VAST_DISK="${VAST_DISK:-60}"
VAST_BID="${VAST_BID:-}"
RUN_NAME="${RUN_NAME:-default}"

usage() {
  cat <<EOF
usage: launch/vast.sh <command> [arguments]

  search [QUERY]            list offers, cheapest first (default query: \$VAST_QUERY)
                              $VAST_QUERY
  create OFFER_ID           rent the offer: image \$VAST_IMAGE ($VAST_IMAGE), \$VAST_DISK GB disk ($VAST_DISK),
                            ssh; set VAST_BID=<\$/h> for an interruptible (spot) instance
  setup ID                  copy this checkout to ~/$REMOTE_DIR and pip install -e ".[cuda]" in ~/$VENV
  train ID [OVERRIDES...]   start python -m jaxrl.train in the background: run dir runs/vast/\$RUN_NAME
                            (run.resume=true: the same RUN_NAME continues an interrupted run)
  combos ID [OVERRIDES...]  start python -m jaxrl.combos in the background: grid.runs_dir runs/combos/\$RUN_NAME
                            (a second start skips finished combinations and resumes the interrupted one)
  status ID                 the instance, python -m jaxrl.status of its runs and the end of the log
  download ID [DEST]        rsync runs/ and registry/ back to DEST (default runs/vast-ID/)
  ssh ID [COMMAND...]       a shell (or one command) on the instance
  destroy ID                delete the instance (download first: its disk goes with it)

environment: VAST_QUERY VAST_IMAGE VAST_DISK VAST_BID RUN_NAME (now: $RUN_NAME)

example:
  launch/vast.sh search
  launch/vast.sh create 1234567              # prints the new instance id
  launch/vast.sh setup 7654321
  RUN_NAME=grid1 launch/vast.sh combos 7654321 'grid.symbols=[spy,qqq,btc]' 'grid.seeds=[0,1,2]'
  launch/vast.sh status 7654321
  launch/vast.sh download 7654321 && launch/vast.sh destroy 7654321
EOF
}

die() { echo "vast.sh: $*" >&2; exit 1; }

need_vastai() {
  command -v vastai >/dev/null 2>&1 ||
    die "the vastai CLI is not installed: pip install vastai && vastai set api-key KEY"
}

need_id() {
  [[ $# -ge 1 && "$1" =~ ^[0-9]+$ ]] || die "expected a numeric instance or offer id (see --help)"
}

# "ssh://root@host:port" from `vastai ssh-url ID`, split into SSH_TARGET (root@host) and SSH_PORT.
try_resolve_ssh() {
  local url
  url="$(vastai ssh-url "$1" 2>/dev/null | tail -n 1)" || return 1
  url="${url#ssh://}"
  [[ "$url" == *@*:* ]] || return 1
  SSH_TARGET="${url%:*}"
  SSH_PORT="${url##*:}"
}

resolve_ssh() {
  try_resolve_ssh "$1" || die "no ssh address for instance $1 yet (is it running? launch/vast.sh status $1)"
}

ssh_opts() {
  printf '%s\n' -p "$SSH_PORT" -o StrictHostKeyChecking=accept-new -o ServerAliveInterval=30
}

remote() {
  local opts
  mapfile -t opts < <(ssh_opts)
  # shellcheck disable=SC2029  # the remote command is composed here on purpose (quoted with printf %q)
  ssh "${opts[@]}" "$SSH_TARGET" "$@"
}

rsync_ssh() {
  echo "ssh -p $SSH_PORT -o StrictHostKeyChecking=accept-new"
}

start_background() {  # start_background <log name> <python -m module and overrides, already quoted>
  local log="$1" command="$2"
  remote "cd ~/$REMOTE_DIR && mkdir -p runs/vast && nohup setsid ~/$VENV/bin/python -m $command \
    > runs/vast/$log.log 2>&1 < /dev/null & echo started: \$! ; echo log: ~/$REMOTE_DIR/runs/vast/$log.log"
}

quote_args() {
  local out="" arg
  for arg in "$@"; do out+=" $(printf '%q' "$arg")"; done
  printf '%s' "$out"
}

cmd="${1:-}"
case "$cmd" in
  -h|--help|help)
    usage
    exit 0
    ;;
  "")
    usage >&2
    exit 2
    ;;
esac
shift

case "$cmd" in
  search)
    need_vastai
    vastai search offers "${1:-$VAST_QUERY}" -o 'dph+'
    ;;
  create)
    need_vastai
    need_id "$@"
    extra=()
    if [[ -n "$VAST_BID" ]]; then extra+=(--bid_price "$VAST_BID"); fi
    vastai create instance "$1" --image "$VAST_IMAGE" --disk "$VAST_DISK" --ssh --direct --label jaxrl \
      ${extra[@]+"${extra[@]}"}
    echo "then: launch/vast.sh status <new instance id>   (wait for 'running'), launch/vast.sh setup <id>"
    ;;
  setup)
    need_vastai
    need_id "$@"
    resolve_ssh "$1"
    remote "mkdir -p ~/$REMOTE_DIR"
    rsync -az --delete -e "$(rsync_ssh)" --exclude .git --exclude .venv --exclude runs --exclude multirun \
      --exclude registry --exclude backtests --exclude vast --exclude __pycache__ ./ "$SSH_TARGET:$REMOTE_DIR/"
    remote "set -euo pipefail; cd ~/$REMOTE_DIR
      if python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
        python3 -m venv ~/$VENV
      else
        export PATH=\"\$HOME/.local/bin:\$PATH\"
        command -v uv >/dev/null || curl -LsSf https://astral.sh/uv/install.sh | sh
        uv venv --seed --allow-existing --python 3.12 ~/$VENV
      fi
      ~/$VENV/bin/pip install --quiet --upgrade pip
      ~/$VENV/bin/pip install --quiet -e '.[cuda]'
      ~/$VENV/bin/python -c 'import jax; print(\"jax\", jax.__version__, jax.devices())'"
    ;;
  train)
    need_vastai
    need_id "$@"
    id="$1"; shift
    resolve_ssh "$id"
    start_background "train-$RUN_NAME" "jaxrl.train$(quote_args "$@") run.resume=true hydra.run.dir=runs/vast/$RUN_NAME"
    ;;
  combos)
    need_vastai
    need_id "$@"
    id="$1"; shift
    resolve_ssh "$id"
    start_background "combos-$RUN_NAME" "jaxrl.combos$(quote_args "$@") grid.runs_dir=runs/combos/$RUN_NAME"
    ;;
  status)
    need_vastai
    need_id "$@"
    vastai show instance "$1"
    if try_resolve_ssh "$1"; then
      remote "cd ~/$REMOTE_DIR 2>/dev/null || exit 0
        for d in runs/combos/* runs/vast; do [ -d \"\$d\" ] && ~/$VENV/bin/python -m jaxrl.status \"\$d\"; done
        for f in runs/vast/*.log; do [ -f \"\$f\" ] && { echo \"== \$f\"; tail -n 5 \"\$f\"; }; done; true"
    fi
    ;;
  download)
    need_vastai
    need_id "$@"
    dest="${2:-runs/vast-$1}"
    resolve_ssh "$1"
    mkdir -p "$dest"
    for part in runs registry; do
      rsync -az -e "$(rsync_ssh)" "$SSH_TARGET:$REMOTE_DIR/$part/" "$dest/$part/" || echo "no $part/ yet"
    done
    echo "downloaded to $dest (python -m jaxrl.status $dest/runs; python -m jaxrl.scoreboard --registry $dest/registry)"
    ;;
  ssh)
    need_vastai
    need_id "$@"
    id="$1"; shift
    resolve_ssh "$id"
    remote "$@"
    ;;
  destroy)
    need_vastai
    need_id "$@"
    vastai destroy instance "$1"
    ;;
  *)
    echo "vast.sh: unknown command '$cmd'" >&2
    usage >&2
    exit 2
    ;;
esac
