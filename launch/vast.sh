#!/usr/bin/env bash
# jaxrl on a Vast.ai GPU, directly through the `vastai` CLI (pip install vastai; vastai set api-key KEY).
# Run it from the repository root. See `launch/vast.sh --help`.
#
# The instance runs a slim CUDA base image (no PyTorch, no toolkit: the jax[cuda12] wheels bring CUDA's libraries);
# `setup` installs jaxrl into ~/jaxrl-venv there. Every job started by `train`/`combos` is recorded on the instance
# (~/jaxrl/runs/vast/jobs/<name>.cmd) and the instance's on-start command (`--onstart-cmd`, run on every boot,
# e.g. when an outbid interruptible instance is resumed) starts each unfinished job again: `train` runs with
# run.resume=true in a fixed run dir, `combos` skips finished combinations, so a restart continues where it stopped.
# With JAXRL_BUCKET=s3://bucket/prefix set when the instance is created, each job syncs runs/ and registry/ there
# (`aws s3 sync`, every JAXRL_SYNC_EVERY seconds and when it ends; AWS_* credentials passed the same way).
# VAST_DRY_RUN=1 prints the vastai, ssh and rsync commands instead of running them.
set -euo pipefail

readonly REMOTE_DIR="jaxrl"                     # under the instance's home directory
readonly VENV="jaxrl-venv"                      # ~/jaxrl-venv on the instance
DEFAULT_QUERY="gpu_name=RTX_4090 num_gpus=1 reliability>0.98 inet_down>200 disk_space>=40 cuda_vers>=12.4"
VAST_QUERY="${VAST_QUERY:-$DEFAULT_QUERY rentable=true}"
VAST_IMAGE="${VAST_IMAGE:-nvidia/cuda:12.6.3-base-ubuntu24.04}"   # ~100 MB; or your build of the Dockerfile
VAST_DISK="${VAST_DISK:-40}"
VAST_BID="${VAST_BID:-}"
VAST_DRY_RUN="${VAST_DRY_RUN:-}"
RUN_NAME="${RUN_NAME:-default}"
JAXRL_BUCKET="${JAXRL_BUCKET:-}"
# forwarded to the instance's environment by `create` when set here
FORWARDED_ENV=(JAXRL_BUCKET JAXRL_SYNC_EVERY AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY AWS_SESSION_TOKEN
               AWS_DEFAULT_REGION AWS_ENDPOINT_URL)

usage() {
  cat <<EOF
usage: launch/vast.sh <command> [arguments]

  search [QUERY]            list offers, cheapest first (default query: \$VAST_QUERY)
                              $VAST_QUERY
  create OFFER_ID           rent the offer: image \$VAST_IMAGE ($VAST_IMAGE), \$VAST_DISK GB disk ($VAST_DISK),
                            ssh, an on-start command that restarts unfinished jobs on every boot;
                            set VAST_BID=<\$/h> for an interruptible (spot) instance
  setup ID                  copy this checkout to ~/$REMOTE_DIR and pip install -e ".[cuda]" in ~/$VENV
  train ID [OVERRIDES...]   start python -m jaxrl.train in the background: run dir runs/vast/\$RUN_NAME
                            (run.resume=true: a restart or the same RUN_NAME continues an interrupted run)
  combos ID [OVERRIDES...]  start python -m jaxrl.combos in the background: grid.runs_dir runs/combos/\$RUN_NAME
                            (a second start skips finished combinations and resumes the interrupted one)
  status ID                 the instance, python -m jaxrl.status of its runs and the end of the log
  download ID [DEST]        rsync runs/ and registry/ back to DEST (default runs/vast-ID/)
  ssh ID [COMMAND...]       a shell (or one command) on the instance
  destroy ID                delete the instance (download first, or sync to a bucket: its disk goes with it)

on the instance (used by the on-start command and by train/combos):
  boot                      start every recorded job without a .done file
  job NAME                  run recorded job NAME in the foreground, syncing to \$JAXRL_BUCKET

environment: VAST_QUERY VAST_IMAGE VAST_DISK VAST_BID VAST_DRY_RUN RUN_NAME (now: $RUN_NAME)
             JAXRL_BUCKET (s3://bucket/prefix: sync runs/ and registry/ there) JAXRL_SYNC_EVERY (seconds, 600)
             AWS_* credentials for the bucket (forwarded by create, like JAXRL_BUCKET)

example:
  launch/vast.sh search
  JAXRL_BUCKET=s3://my-jaxrl/vast launch/vast.sh create 1234567     # prints the new instance id
  launch/vast.sh setup 7654321
  RUN_NAME=grid1 launch/vast.sh combos 7654321 'grid.symbols=[spy,qqq,btc]' 'grid.seeds=[0,1,2]'
  launch/vast.sh status 7654321
  launch/vast.sh download 7654321 && launch/vast.sh destroy 7654321
EOF
}

die() { echo "vast.sh: $*" >&2; exit 1; }

# run a command, or with VAST_DRY_RUN=1 print it (shell-quoted, secrets masked) instead
run() {
  if [[ -n "$VAST_DRY_RUN" ]]; then
    local out="" arg
    for arg in "$@"; do out+=" $(printf '%q' "$arg")"; done
    echo "+${out}" | sed -E 's/(AWS_SECRET_ACCESS_KEY|AWS_SESSION_TOKEN)=[^ \\]*/\1=***/g'
    return 0
  fi
  "$@"
}

need_vastai() {
  [[ -n "$VAST_DRY_RUN" ]] && return 0
  command -v vastai >/dev/null 2>&1 ||
    die "the vastai CLI is not installed: pip install vastai && vastai set api-key KEY"
}

need_id() {
  [[ $# -ge 1 && "$1" =~ ^[0-9]+$ ]] || die "expected a numeric instance or offer id (see --help)"
}

# "ssh://root@host:port" from `vastai ssh-url ID`, split into SSH_TARGET (root@host) and SSH_PORT.
try_resolve_ssh() {
  if [[ -n "$VAST_DRY_RUN" ]]; then
    SSH_TARGET="root@ssh-host-of-$1"
    SSH_PORT="22"
    return 0
  fi
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

remote() {
  run ssh -p "$SSH_PORT" -o StrictHostKeyChecking=accept-new -o ServerAliveInterval=30 "$SSH_TARGET" "$@"
}

rsync_ssh() {
  echo "ssh -p $SSH_PORT -o StrictHostKeyChecking=accept-new"
}

quote_args() {
  local out="" arg
  for arg in "$@"; do out+=" $(printf '%q' "$arg")"; done
  printf '%s' "$out"
}

# What a slim CUDA base lacks (python3, venv, rsync), installed when missing.
base_packages() {
  printf '%s' "{ command -v python3 >/dev/null && python3 -c 'import venv, ensurepip' 2>/dev/null && \
command -v rsync >/dev/null; } || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
--no-install-recommends python3 python3-venv rsync ca-certificates >/dev/null; }"
}

# The instance's on-start command (every boot): the base packages, then every unfinished job.
onstart_command() {
  printf '%s; if [ -f ~/%s/launch/vast.sh ]; then cd ~/%s && bash launch/vast.sh boot; fi' \
    "$(base_packages)" "$REMOTE_DIR" "$REMOTE_DIR"
}

# record a job on the instance and start it: record_job <name> <module and overrides, already quoted>
record_job() {
  local name="$1" command="$2"
  remote "cd ~/$REMOTE_DIR && mkdir -p runs/vast/jobs && printf '%s\n' $(printf '%q' "$command") \
    > runs/vast/jobs/$name.cmd && rm -f runs/vast/jobs/$name.done && \
    { nohup setsid bash launch/vast.sh job $name >> runs/vast/$name.log 2>&1 < /dev/null & } && \
    echo started: $name && echo log: ~/$REMOTE_DIR/runs/vast/$name.log"
}

# ---- on the instance ----------------------------------------------------------------------------------------------
sync_to_bucket() {
  [[ -n "$JAXRL_BUCKET" ]] || return 0
  local part
  for part in runs registry; do
    if [[ -d "$part" ]]; then
      aws s3 sync --only-show-errors "$part" "${JAXRL_BUCKET%/}/$part" || echo "vast.sh: sync of $part failed" >&2
    fi
  done
}

run_job() {  # in ~/jaxrl: run runs/vast/jobs/<name>.cmd; mark it done when python exits 0
  local name="$1" file="runs/vast/jobs/$1.cmd" line pid status sync_pid=""
  [[ -f "$file" ]] || die "no recorded job $file"
  line="$(head -n 1 "$file")"
  local -a args
  eval "args=($line)"  # written by record_job with printf %q: one shell-quoted word per argument
  if [[ -n "$JAXRL_BUCKET" ]]; then
    command -v aws >/dev/null 2>&1 || PATH="$HOME/$VENV/bin:$PATH"
    command -v aws >/dev/null 2>&1 || "$HOME/$VENV/bin/pip" install --quiet awscli
    (while sleep "${JAXRL_SYNC_EVERY:-600}"; do sync_to_bucket; done) &
    sync_pid=$!
  fi
  echo "== $(date -u +%FT%TZ) job $name: python -m ${args[*]}"
  "$HOME/$VENV/bin/python" -m "${args[@]}" &
  pid=$!
  status=0
  wait "$pid" || status=$?
  if [[ -n "$sync_pid" ]]; then kill "$sync_pid" 2>/dev/null || true; fi
  sync_to_bucket
  if [[ "$status" -eq 0 ]]; then date -u +%FT%TZ > "runs/vast/jobs/$name.done"; fi
  echo "== $(date -u +%FT%TZ) job $name exited $status"
  return "$status"
}

boot_jobs() {  # in ~/jaxrl: start every recorded job that has not finished
  local file name
  for file in runs/vast/jobs/*.cmd; do
    [[ -f "$file" ]] || continue
    name="$(basename "$file" .cmd)"
    [[ -f "runs/vast/jobs/$name.done" ]] && continue
    echo "vast.sh boot: restarting $name"
    nohup setsid bash launch/vast.sh job "$name" >> "runs/vast/$name.log" 2>&1 < /dev/null &
  done
}

# ---- commands -----------------------------------------------------------------------------------------------------
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
    run vastai search offers "${1:-$VAST_QUERY}" -o 'dph+'
    ;;
  create)
    need_vastai
    need_id "$@"
    extra=()
    if [[ -n "$VAST_BID" ]]; then extra+=(--bid_price "$VAST_BID"); fi
    env_opts=""
    for name in "${FORWARDED_ENV[@]}"; do
      if [[ -n "${!name:-}" ]]; then env_opts+="${env_opts:+ }-e $name=${!name}"; fi
    done
    if [[ -n "$env_opts" ]]; then extra+=(--env "$env_opts"); fi
    run vastai create instance "$1" --image "$VAST_IMAGE" --disk "$VAST_DISK" --ssh --direct --label jaxrl \
      --onstart-cmd "$(onstart_command)" ${extra[@]+"${extra[@]}"}
    echo "then: launch/vast.sh status <new instance id>   (wait for 'running'), launch/vast.sh setup <id>"
    ;;
  setup)
    need_vastai
    need_id "$@"
    resolve_ssh "$1"
    remote "$(base_packages) && mkdir -p ~/$REMOTE_DIR"
    run rsync -az --delete -e "$(rsync_ssh)" --exclude .git --exclude .venv --exclude runs --exclude multirun \
      --exclude registry --exclude backtests --exclude searches --exclude vast --exclude __pycache__ \
      ./ "$SSH_TARGET:$REMOTE_DIR/"
    remote "set -euo pipefail; cd ~/$REMOTE_DIR; python3 -m venv ~/$VENV; \
      ~/$VENV/bin/pip install --quiet --upgrade pip; ~/$VENV/bin/pip install --quiet -e '.[cuda]'; \
      ~/$VENV/bin/python -c 'import jax; print(\"jax\", jax.__version__, jax.devices())'"
    ;;
  train)
    need_vastai
    need_id "$@"
    id="$1"; shift
    resolve_ssh "$id"
    record_job "train-$RUN_NAME" "jaxrl.train$(quote_args "$@") run.resume=true hydra.run.dir=runs/vast/$RUN_NAME"
    ;;
  combos)
    need_vastai
    need_id "$@"
    id="$1"; shift
    resolve_ssh "$id"
    record_job "combos-$RUN_NAME" "jaxrl.combos$(quote_args "$@") grid.runs_dir=runs/combos/$RUN_NAME"
    ;;
  status)
    need_vastai
    need_id "$@"
    run vastai show instance "$1"
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
    run mkdir -p "$dest"
    for part in runs registry; do
      run rsync -az -e "$(rsync_ssh)" "$SSH_TARGET:$REMOTE_DIR/$part/" "$dest/$part/" || echo "no $part/ yet"
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
    run vastai destroy instance "$1"
    ;;
  boot)
    boot_jobs
    ;;
  job)
    [[ $# -ge 1 && "$1" =~ ^[A-Za-z0-9._-]+$ ]] || die "job: expected a recorded job name"
    run_job "$1"
    ;;
  *)
    echo "vast.sh: unknown command '$cmd'" >&2
    usage >&2
    exit 2
    ;;
esac
