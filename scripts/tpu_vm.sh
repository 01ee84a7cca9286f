#!/usr/bin/env bash
# Runs a gradlab sweep on a Cloud TPU VM or pod slice.
#
#   scripts/tpu_vm.sh create --name=gl --zone=us-central2-b --type=v4-32
#   scripts/tpu_vm.sh setup  --name=gl --zone=us-central2-b
#   scripts/tpu_vm.sh run    --name=gl --zone=us-central2-b --config=configs/default.py \
#                            --workdir=runs/tpu1 [--bucket=gs://my-bucket/gradlab] [-- EXTRA FLAGS]
#   scripts/tpu_vm.sh fetch  --name=gl --zone=us-central2-b --workdir=runs/tpu1 [--bucket=...]
#   scripts/tpu_vm.sh delete --name=gl --zone=us-central2-b
#
# --dry-run (or GRADLAB_DRY_RUN=1) prints every command instead of running it (give it
# before `--`: what follows `--` goes to experiments.sweep). Every value put into the
# remote command is quoted (printf %q): a workdir with a space works, a `;` stays text. setup and run go to every worker
# (--worker=all): each host runs the same sweep with --multihost, feeds and writes only
# its own shard of each chunk, and `gradlab.results.load` merges the shards. fetch copies
# the workdir back: from the bucket when --bucket is given (every worker synced its shard
# there), else from each worker 0..N-1 in turn (--workers=N, default 1), since each
# worker's chunk files stay on that worker.
#
# TFDS data in a bucket: pass --config.data.data_dir=gs://BUCKET/PATH after `--`. The
# array_record reader cannot open gs:// paths (google/array_record#120), so `run` mounts
# BUCKET read-only with Cloud Storage FUSE (gcsfuse, installed by `setup`) at
# /tmp/gradlab-gcs/BUCKET on every worker and gives the sweep that path instead.
set -euo pipefail

usage() { sed -n '2,23p' "$0" | sed 's/^# \{0,1\}//'; exit "${1:-0}"; }

cmd="${1:-}"; [[ -n "$cmd" ]] || usage 2; shift
[[ "$cmd" != "-h" && "$cmd" != "--help" ]] || usage 0
name="gradlab"; zone=""; type="v4-8"; version="tpu-ubuntu2204-base"; project=""
config="configs/default.py"; workdir=""; bucket=""; workers=1; dry="${GRADLAB_DRY_RUN:-0}"
extra=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --name=*) name="${1#*=}" ;;
    --zone=*) zone="${1#*=}" ;;
    --type=*) type="${1#*=}" ;;
    --version=*) version="${1#*=}" ;;
    --project=*) project="${1#*=}" ;;
    --config=*) config="${1#*=}" ;;
    --workdir=*) workdir="${1#*=}" ;;
    --bucket=*) bucket="${1#*=}" ;;
    --workers=*) workers="${1#*=}" ;;
    --dry-run) dry=1 ;;
    -h|--help) usage 0 ;;
    --) shift; extra=("$@"); break ;;
    *) echo "error: unknown option '$1' (see --help)" >&2; exit 2 ;;
  esac
  shift
done
[[ -n "$zone" ]] || { echo "error: --zone is required" >&2; exit 2; }

gc=(gcloud compute tpus tpu-vm)
where=(--zone="$zone"); [[ -z "$project" ]] || where+=(--project="$project")

run() {  # prints, then runs unless --dry-run
  printf '%q ' "$@"; printf '\n'
  [[ "$dry" == 1 ]] || "$@"
}

remote_workdir() {
  [[ -n "$workdir" ]] || { echo "error: --workdir is required for $cmd" >&2; exit 2; }
  echo "gradlab/$workdir"
}

case "$cmd" in
  create)
    run "${gc[@]}" create "$name" "${where[@]}" --accelerator-type="$type" --version="$version"
    ;;
  setup)
    run "${gc[@]}" scp --recurse --worker=all "${where[@]}" \
      "$(cd "$(dirname "$0")/.." && pwd)" "$name":gradlab
    gcsfuse_repo='deb [signed-by=/usr/share/keyrings/cloud.google.asc] https://packages.cloud.google.com/apt gcsfuse-$(lsb_release -c -s) main'
    gcsfuse="command -v gcsfuse >/dev/null || { echo \"$gcsfuse_repo\" | sudo tee /etc/apt/sources.list.d/gcsfuse.list >/dev/null && curl -fsSL https://packages.cloud.google.com/apt/doc/apt-key.gpg | sudo tee /usr/share/keyrings/cloud.google.asc >/dev/null && sudo apt-get update -q && sudo apt-get install -y -q gcsfuse; }"
    run "${gc[@]}" ssh "$name" --worker=all "${where[@]}" --command \
      "cd gradlab && pip install -q -r requirements.txt && pip install -q -U 'jax[tpu]' && $gcsfuse"
    ;;
  run)
    wd="$(remote_workdir)"
    mount=""; flags=()
    for flag in "${extra[@]}"; do
      if [[ "$flag" == --config.data.data_dir=gs://* ]]; then  # mount it (see the top)
        gs="${flag#*=}"; bucket_name="${gs#gs://}"; bucket_name="${bucket_name%%/*}"
        dir="/tmp/gradlab-gcs/$bucket_name"
        mount="$(printf '%q ' mkdir -p "$dir")&& { mountpoint -q $(printf '%q' "$dir") || $(printf '%q ' gcsfuse --implicit-dirs -o ro "$bucket_name" "$dir"); } && "
        flag="--config.data.data_dir=$dir${gs#gs://"$bucket_name"}"
      fi
      flags+=("$flag")
    done
    args="$(printf '%q ' "--config=$config" "--workdir=${wd#gradlab/}" "${flags[@]}")"
    sweep="${mount}cd gradlab && python -m experiments.sweep --multihost --quiet ${args% }"
    sync="$(printf '%q ' "${wd#gradlab/}" "$bucket/$workdir")"
    [[ -z "$bucket" ]] || sweep+=" && gsutil -m rsync -r ${sync% }"
    run "${gc[@]}" ssh "$name" --worker=all "${where[@]}" --command "$sweep"
    ;;
  fetch)
    wd="$(remote_workdir)"
    run mkdir -p "$(dirname "$workdir")"
    if [[ -n "$bucket" ]]; then
      run gsutil -m rsync -r "$bucket/$workdir" "$workdir"
    else
      for ((w = 0; w < workers; w++)); do
        run "${gc[@]}" scp --recurse --worker="$w" "${where[@]}" "$name:$wd" "$(dirname "$workdir")/"
      done
    fi
    ;;
  delete)
    run "${gc[@]}" delete "$name" "${where[@]}" --quiet
    ;;
  *) echo "error: unknown subcommand '$cmd'; known: create, setup, run, fetch, delete" >&2; exit 2 ;;
esac
