#!/usr/bin/env bash
# Sweeps: run stages 4-9 of run.sh once per override set and seed, then one table + plots over them.
#
#   utils/sweep.sh --sweep "model.codebook_size=32,64,128" --seeds "0 1 2" [run.sh options ...]
#
# Every run is ./run.sh --stage 4 --stop-stage 9 --train-overrides "<base> <point> <seed>": its tag
# (plan.py tag of those overrides) is its own exp/<tag>, jobs go through $train_cmd as run.sh
# dispatches them (cmd_backend=slurm utils/sweep.sh ... for Slurm), and a re-run of the same
# command redoes nothing finished: run.sh's stamps skip done stages and train.py resumes from its
# newest checkpoint (a finished one stops at once). Runs go one after the other; --jobs N runs up to
# N at a time after the first (which alone makes what runs share: the stage-9 speaker classifier,
# a trained vocoder). A failed run is reported and the sweep goes on; the exit status is 1 if any failed.
#
# Sweep options (all others go to run.sh unchanged):
#   --sweep KEY=V1,V2,...   a swept key and its values; repeat for a grid over several keys
#   --sets "K=V K=V"        one override set as a point of its own (ablations); repeatable, combined
#                           with the --sweep grid when both are given
#   --seeds "0 1 2"         run every point once per seed (default: once, with the config's seed)
#   --seed-keys KEYS        the config keys a seed sets (default "train.seed")
#   --report-dir DIR        the table, plots and logs (default <exp-dir>/sweeps/<config>__<swept keys>)
#   --jobs N                runs at a time (default 1)
#   --stage, --stop-stage   the run.sh stages of each run (default 4 and 9: stages 0-3 must have run;
#                           --stage 0 has the first run make them)
#   --train-overrides "..." overrides of every run (the base the sweep adds to)
# Output: <report-dir>/sweep.md, sweep.tsv (per point: mean/std/min/max/n of every stage-9 metric),
# sweep_runs.tsv (per run), plots/<metric>.png and plots/overview.png, log/<tag>.log per run.
set -euo pipefail

log() { echo "$(date '+%Y-%m-%dT%H:%M:%S') (sweep.sh) $*" >&2; }
usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; }

sweeps=()
sets=()
seeds=""
seed_keys="train.seed"
report_dir=""
jobs=1
stage=4
stop_stage=9
train_overrides=""
# run.sh options the sweep needs to know (they are passed on as well); the defaults are run.sh's.
model=softvc_whisper_ppg
model_config=""
exp_dir=exp
vocoder=griffinlim
inference_overrides=""
run_opts=()
while [ $# -gt 0 ]; do
  opt=${1//_/-}
  case "${opt}" in
    -h|--help) usage; exit 0 ;;
  esac
  if [ $# -lt 2 ]; then
    echo "$0: option '$1' needs a value (see --help)" >&2
    exit 2
  fi
  case "${opt}" in
    --sweep) sweeps+=("$2") ;;
    --sets) sets+=("$2") ;;
    --seeds) seeds=$2 ;;
    --seed-keys) seed_keys=$2 ;;
    --report-dir) report_dir=$2 ;;
    --jobs) jobs=$2 ;;
    --stage) stage=$2 ;;
    --stop-stage) stop_stage=$2 ;;
    --train-overrides) train_overrides=$2 ;;
    --tag)
      echo "$0: --tag cannot be given: every run's tag comes from its overrides (plan.py tag)" >&2
      exit 2 ;;
    --model) model=$2; run_opts+=("$1" "$2") ;;
    --model-config) model_config=$2; run_opts+=("$1" "$2") ;;
    --exp-dir) exp_dir=$2; run_opts+=("$1" "$2") ;;
    --vocoder) vocoder=$2; run_opts+=("$1" "$2") ;;
    --inference-overrides) inference_overrides=$2; run_opts+=("$1" "$2") ;;
    --*) run_opts+=("$1" "$2") ;;
    *)
      echo "$0: unexpected argument '$1': every option is '--name value' (see --help)" >&2
      exit 2 ;;
  esac
  shift 2
done
case "${jobs}" in ''|*[!0-9]*|0) echo "$0: --jobs must be a positive integer, got '${jobs}'" >&2; exit 2 ;; esac
if [ "${stop_stage}" -lt 9 ] 2>/dev/null; then
  log "Warning: --stop-stage ${stop_stage} < 9: runs will not be scored, the table will list them as not scored"
fi

cd "$(dirname "$0")/.."
if [ ! -f .venv/.voiceswap-setup ]; then
  log "No environment yet: running utils/setup.sh (first time: a few minutes)"
  utils/setup.sh
fi
. ./path.sh

[ -n "${model_config}" ] || model_config=conf/${model}.yaml
# The scores dir of stage 9 is scores_<decode>: the vocoder plus the inference settings, named as run.sh does.
decode=${vocoder}
if [ -n "${inference_overrides}" ]; then
  decode+=_$(echo "${inference_overrides}" | tr ' ' '\n' | LC_ALL=C sort | sed 's/^inference\.//' | tr '=/' '-+' | paste -sd_ -)
fi
if [ -z "${report_dir}" ]; then
  _name=$(basename "${model_config}" .yaml)
  for _spec in ${sweeps[@]+"${sweeps[@]}"}; do _name+="__${_spec%%=*}"; done
  [ ${#sets[@]} -eq 0 ] || _name+="__sets"
  [ -z "${seeds}" ] || _name+="__seeds"
  report_dir=${exp_dir}/sweeps/$(echo "${_name}" | tr -c 'A-Za-z0-9._=+\n-' '-')
fi
mkdir -p "${report_dir}/log"

# Expand and check the whole sweep first: a typo in a key fails now, not after hours of training.
_args=(--config "${model_config}" --seeds "${seeds}" --seed-keys "${seed_keys}" --manifest "${report_dir}/sweep.json")
for _override in ${train_overrides}; do _args+=(--set "${_override}"); done
for _spec in ${sweeps[@]+"${sweeps[@]}"}; do _args+=(--sweep "${_spec}"); done
for _spec in ${sets[@]+"${sets[@]}"}; do _args+=(--sets "${_spec}"); done
_runs=$(sweep.py runs "${_args[@]}")
num_runs=$(echo "${_runs}" | wc -l)
log "${num_runs} runs of ${model_config} (stages ${stage}-${stop_stage}, ${jobs} at a time) -> ${exp_dir}/<tag>; table in ${report_dir}"

# One run: run.sh with the run's overrides, its output in log/<tag>.log; the status in log/<tag>.status.
run_one() {
  local _n=$1 _tag=$2 _overrides=$3
  local _log=${report_dir}/log/${_tag}.log _metrics=${exp_dir}/${_tag}/scores_${decode}/metrics.json
  local _before="" _start=${SECONDS} _status=failed
  [ ! -f "${_metrics}" ] || _before=$(stat -c %Y "${_metrics}")
  log "run ${_n}/${num_runs}: ${_tag}; see the progress in ${_log}"
  if ./run.sh ${run_opts[@]+"${run_opts[@]}"} --stage "${stage}" --stop-stage "${stop_stage}" \
      --train-overrides "${_overrides}" > "${_log}" 2>&1; then
    _status=finished
    if ! grep -qF "Experiment: ${exp_dir}/${_tag} (tag ${_tag}," "${_log}"; then
      # The sweep's tag and run.sh's must agree, or the table would read another experiment's scores.
      log "Error: run.sh gave ${_tag} another experiment dir: see ${_log}"
      _status=failed
    elif [ -n "${_before}" ] && [ "${_before}" = "$(stat -c %Y "${_metrics}")" ]; then
      _status=up-to-date
    fi
  fi
  echo "${_status}" > "${report_dir}/log/${_tag}.status"
  case "${_status}" in
    finished) log "run ${_n}/${num_runs}: ${_tag} finished in $(( SECONDS - _start )) s" ;;
    up-to-date) log "run ${_n}/${num_runs}: ${_tag} was finished before: nothing redone ($(( SECONDS - _start )) s)" ;;
    *) log "run ${_n}/${num_runs}: ${_tag} FAILED: see the end of ${_log}"; tail -n 3 "${_log}" >&2 ;;
  esac
}

_n=0
while IFS=$'\t' read -r -u 3 _tag _overrides; do
  _n=$(( _n + 1 ))
  rm -f "${report_dir}/log/${_tag}.status"
  if [ "${jobs}" -eq 1 ] || [ "${_n}" -eq 1 ]; then
    run_one "${_n}" "${_tag}" "${_overrides}"
  else
    while [ "$(jobs -rp | wc -l)" -ge "${jobs}" ]; do wait -n || true; done
    run_one "${_n}" "${_tag}" "${_overrides}" &
  fi
done 3<<< "${_runs}"
wait

failed=""
while IFS=$'\t' read -r _tag _; do
  case "$(cat "${report_dir}/log/${_tag}.status" 2>/dev/null || true)" in
    finished|up-to-date) ;;
    *) failed+=" ${_tag}" ;;
  esac
done <<< "${_runs}"

sweep.py report --manifest "${report_dir}/sweep.json" --exp-dir "${exp_dir}" --vocoder "${decode}" \
  --out-dir "${report_dir}"
log "table: ${report_dir}/sweep.md, ${report_dir}/sweep.tsv; plots: ${report_dir}/plots"
if [ -n "${failed}" ]; then
  log "Error: $(echo "${failed}" | wc -w) of ${num_runs} runs failed:${failed} (re-run the same command to retry them)"
  exit 1
fi
log "Successfully finished ${num_runs} runs"
