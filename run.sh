#!/usr/bin/env bash
# voiceswap recipe: corpus -> Kaldi data dirs -> features -> model -> converted speech.
# Every stage can be run on its own: ./run.sh --stage 2 --stop-stage 3
set -euo pipefail

log() {
  local fname=${BASH_SOURCE[1]##*/}
  echo -e "$(date '+%Y-%m-%dT%H:%M:%S') (${fname}:${BASH_LINENO[0]}:${FUNCNAME[1]}) $*" >&2
}

# General options.
stage=0                 # first stage to run
stop_stage=11           # last stage to run
corpus=synth            # corpus to prepare
nj=2                    # parallel jobs of the data stages
tag=""                  # experiment tag for exp/<tag> (used by the model stages, 4 and up)
force=false             # redo stages whose outputs are up to date
db_dir=""               # where the corpus lives (default: db/<corpus>)
data_dir=data           # Kaldi data dirs
dump_dir=dump           # features, statistics, normalised features
exp_dir=exp             # experiments
feats="logmel80 mfcc39" # feature configs (conf/feats/<name>.yaml) extracted in stage 2
train_set=train
dev_set=dev
eval_set="eval"

# Model options.
model=softvc_whisper_ppg # the model: conf/<model>.yaml (its family: key says which family it is);
                        # all: the default config of every conversion family (plan.py models)
models=""               # several models, e.g. "vqvae vaegan": stages 4-10 of each on the same data, then one report
model_config=""         # model config (default: conf/<model>.yaml)
train_overrides=""      # config overrides "section.key=value ..." (they become part of the tag);
                        # "<model>:section.key=value" applies to that model only (with --models)
vocoder=griffinlim      # the vocoder of stages 7-9: conf/vocoder/<vocoder>.yaml (griffinlim: nothing to train)
vocoder_config=""       # vocoder config (default: conf/vocoder/<vocoder>.yaml)
vocoder_overrides=""    # "section.key=value ..." overrides of the vocoder config, e.g. "train.max_steps=2000"
vocoder_dir=""          # the trained vocoder, shared by every model (default: <exp-dir>/vocoder_<vocoder>_<corpus>)
inference_overrides=""  # stage 8: "inference.key=value ..." how the family converts (e.g. sampling steps, guidance),
                        # "<model>:inference.key=value" for one model only;
                        # the outputs go to convert_<vocoder>_<these settings>, so each setting is its own results row
ngpu=0                  # GPUs for training: 0 = CPU, 1 = one GPU, N > 1 = torchrun DDP on N GPUs
convert_reconstruct=true # stage 8 also reconstructs every source with its own speaker

# Scoring options (stages 9-10).
score_max_pairs=0       # score at most this many conversion pairs (0: all)
score_opts=""           # extra options of voiceswap/bin/score.py, e.g. "--mos-max-pairs 80 --measures emb,clf,mcep,f0"
classifier_overrides="" # "section.key=value ..." overrides of conf/speaker_classifier.yaml (the judge of stage 9)
results=""              # corpus results table of stage 10 (default: RESULTS.md beside the exp dir)
report_dir=""           # stage 11's listening report (default: <exp-dir>/report)
report_pairs=6          # eval pairs in the listening report

# Options of the synth corpus.
synth_speakers="slt rms awb kal ked esf2 esm7 sltw" # voices, or the preset many (24; local/synth/voices.py)
num_sentences=100       # sentences spoken by every voice
num_dev_sentences=10    # of which held out for dev
num_eval_sentences=10   # of which held out for eval
num_pair_sentences=5    # eval sentences used for conversion pairs (every ordered speaker pair)
corpus_seed=777         # seed of the sentence selection

get_corpus_opts=""      # extra options of local/<corpus>/get_corpus.sh (stage 0)
data_prep_opts=""       # extra options of local/<corpus>/data_prep.sh (stage 1)

# A corpus is a directory local/<corpus>/ with get_corpus.sh (stage 0) and data_prep.sh (stage 1).
valid_corpora=$(cd "$(dirname "$0")/local" && for d in */; do
  [ -x "${d}get_corpus.sh" ] && [ -x "${d}data_prep.sh" ] && printf '%s ' "${d%/}"; done)
valid_corpora=${valid_corpora% }

help_message=$(cat << EOF
Usage: $0 [options]
Stages:
  0: get the corpus (synth: synthesise it offline)          -> \${db_dir}
  1: Kaldi data prep + validation                           -> \${data_dir}/{train,dev,eval}
  2: features (log-mel, MFCC-39) in \${nj} jobs               -> \${dump_dir}/raw/<feat>/<set>
  3: global/per-speaker statistics + normalisation          -> \${dump_dir}/stats, \${dump_dir}/norm
  Stages 4-7 run the steps the model's family declares (plan.py show --config conf/<model>.yaml):
  4: train the content/unit model (e.g. vqvae: the whole model; softvc: content features, k-means,
     soft-unit head)                                        -> \${exp_dir}/<tag>, \${dump_dir}/content
  5: dump units of every set                                -> \${dump_dir}/units/<tag>/<set>
  6: train the conversion model (e.g. softvc: the acoustic model; vqvae: nothing) -> \${exp_dir}/<tag>
  7: train the vocoder (griffinlim: nothing to train)       -> \${exp_dir}/vocoder_<vocoder>_<corpus>
  8: convert the eval pairs, reconstruct their sources      -> \${exp_dir}/<tag>/convert_<vocoder>
  9: score: the metric suite (+ the speaker classifier)     -> \${exp_dir}/<tag>/scores_<vocoder>
 10: plots and the results table of every experiment        -> \${exp_dir}/<tag>/plots_<vocoder>, RESULTS.md
 11: ranked comparison and listening report of this run's models -> \${exp_dir}/report/index.html
Options:
  --stage               # first stage (default="${stage}")
  --stop-stage          # last stage (default="${stop_stage}")
  --corpus              # one of: ${valid_corpora} (default="${corpus}")
  --nj                  # parallel jobs (default="${nj}")
  --tag                 # experiment tag (default: derived from the config name and overrides)
  --force               # redo stages that are up to date (default="${force}")
  --db-dir              # corpus location (default="db/<corpus>")
  --data-dir            # data dirs (default="${data_dir}")
  --dump-dir            # features (default="${dump_dir}")
  --exp-dir             # experiments (default="${exp_dir}")
  --feats               # feature configs under conf/feats (default="${feats}")
  --get-corpus-opts     # extra options of local/<corpus>/get_corpus.sh (default="${get_corpus_opts}")
  --data-prep-opts      # extra options of local/<corpus>/data_prep.sh (default="${data_prep_opts}")
  --train-set, --dev-set, --eval-set  # set names (default="${train_set} ${dev_set} ${eval_set}")
Model options:
  --model               # model config name: conf/<model>.yaml, e.g. vqvae, softvc; all: every family (default="${model}")
  --models              # several model config names: stages 4-10 of each, then one report (default="${models}")
  --model-config        # model config (default="conf/<model>.yaml")
  --train-overrides     # "section.key=value ..." config overrides (default="${train_overrides}")
  --vocoder             # vocoder config name: conf/vocoder/<vocoder>.yaml, e.g. griffinlim, hifigan (default="${vocoder}")
  --vocoder-config      # vocoder config (default: conf/vocoder/<vocoder>.yaml)
  --vocoder-overrides   # "section.key=value ..." vocoder config overrides, e.g. "train.max_steps=2000"
  --vocoder-dir         # trained vocoder dir (default: \${exp_dir}/vocoder_<vocoder>_<corpus>)
  --inference-overrides # "inference.key=value ..." stage-8 settings of the family (default="${inference_overrides}")
  --ngpu                # training GPUs; > 1 runs DistributedDataParallel via torchrun (default="${ngpu}")
  --convert-reconstruct # stage 8 also reconstructs each source (default="${convert_reconstruct}")
Scoring options:
  --score-max-pairs     # score at most this many conversion pairs, 0: all (default="${score_max_pairs}")
  --score-opts          # extra options of score.py (default="${score_opts}")
  --classifier-overrides # overrides of conf/speaker_classifier.yaml (default="${classifier_overrides}")
  --results             # results table (default: RESULTS.md beside \${exp_dir})
  --report-dir          # stage 11's listening report (default: \${exp_dir}/report)
  --report-pairs        # eval pairs in the listening report (default="${report_pairs}")
Options of --corpus synth:
  --synth-speakers      # voices (default="${synth_speakers}")
  --num-sentences       # sentences per voice (default="${num_sentences}")
  --num-dev-sentences   # held out for dev (default="${num_dev_sentences}")
  --num-eval-sentences  # held out for eval (default="${num_eval_sentences}")
  --num-pair-sentences  # eval sentences in conversion pairs (default="${num_pair_sentences}")
  --corpus-seed         # sentence selection seed (default="${corpus_seed}")
EOF
)

cd "$(dirname "$0")"
log "$0 $*"
script_args=("$@")  # --models runs this script once per model with these options and a few more
. utils/parse_options.sh

if [ $# -ne 0 ]; then
  log "${help_message}"
  log "Error: unexpected positional arguments: $*"
  exit 2
fi
last_stage=11
is_uint() { case "$1" in ''|*[!0-9]*) return 1 ;; *) return 0 ;; esac; }
if ! is_uint "${stage}" || ! is_uint "${stop_stage}"; then
  log "Error: --stage '${stage}' and --stop-stage '${stop_stage}' must be stage numbers 0-${last_stage}"
  exit 2
fi
if [ "${stage}" -gt "${last_stage}" ] || [ "${stop_stage}" -gt "${last_stage}" ]; then
  log "Error: the last stage is ${last_stage}; got --stage ${stage} --stop-stage ${stop_stage}"
  exit 2
fi
if [ "${stop_stage}" -lt "${stage}" ]; then
  log "Error: --stop-stage ${stop_stage} is below --stage ${stage}: nothing would run"
  exit 2
fi
if ! is_uint "${nj}" || [ "${nj}" -lt 1 ]; then
  log "Error: --nj must be a positive integer (parallel jobs), got '${nj}'"
  exit 2
fi
if ! is_uint "${ngpu}"; then
  log "Error: --ngpu must be 0 (CPU) or a number of GPUs, got '${ngpu}'"
  exit 2
fi
if ! echo " ${valid_corpora} " | grep -q " ${corpus} "; then
  log "Error: unknown corpus '${corpus}'; valid corpora: ${valid_corpora}"
  exit 2
fi
[ -n "${db_dir}" ] || db_dir=db/${corpus}
[ -n "${report_dir}" ] || report_dir=${exp_dir}/report
if ! is_uint "${report_pairs}" || [ "${report_pairs}" -lt 1 ]; then
  log "Error: --report-pairs must be a positive integer, got '${report_pairs}'"
  exit 2
fi
if [ "${model}" = all ] || [ -n "${models}" ]; then
  if [ -n "${model_config}" ] || [ -n "${tag}" ]; then
    log "Error: --model-config and --tag name one experiment; with --model all or --models, each model uses conf/<model>.yaml and its own tag"
    exit 2
  fi
fi
[ -n "${model_config}" ] || model_config=conf/${model}.yaml
[ -n "${vocoder_config}" ] || vocoder_config=conf/vocoder/${vocoder}.yaml
[ -n "${vocoder_dir}" ] || vocoder_dir=${exp_dir}/vocoder_${vocoder}_${corpus}
sets="${train_set} ${dev_set} ${eval_set}"

# A fresh clone needs no manual step: the environment is built on first use.
if [ ! -f .venv/.voiceswap-setup ]; then
  log "No environment yet: running utils/setup.sh (first time: a few minutes)"
  utils/setup.sh
fi
. ./path.sh
. ./cmd.sh

# "section.key=value ..." -> "--set section.key=value ..." (train.py, plan.py and the step scripts).
set_args() {
  local _override _args=""
  for _override in $1; do
    _args+=" --set ${_override}"
  done
  echo "${_args}"
}
# The overrides of model $1 from "$2": the plain ones and those prefixed "$1:" (prefix removed).
overrides_of() {
  local _override _key _out=""
  for _override in $2; do
    _key=${_override%%=*}
    case "${_key}" in
      *:*) [ "${_key%%:*}" != "$1" ] || _out+=" ${_override#*:}" ;;
      *) _out+=" ${_override}" ;;
    esac
  done
  echo "${_out# }"
}

# Stages 8-10 write convert_/scores_/plots_<decode>: the vocoder, plus the inference settings "$1" if any.
decode_name() {
  local _decode=${vocoder}
  if [ -n "$1" ]; then
    _decode+=_$(echo "$1" | tr ' ' '\n' | LC_ALL=C sort | sed 's/^inference\.//' | tr '=/' '-+' | paste -sd_ -)
  fi
  echo "${_decode}"
}

# Stage 11: ranked comparison + listening report of the scores dirs "$@" (stage 9 of each experiment).
make_report() {
  log "Stage 11: ranked comparison and listening report of $# experiment(s) -> ${report_dir}"
  ${train_cmd} "${report_dir}/log/report.log" \
    report.py --data-dir "${data_dir}" --eval-set "${eval_set}" --num-pairs "${report_pairs}" "${report_dir}" "$@"
  log "Stage 11: open ${report_dir}/index.html in a browser (table: ${report_dir}/comparison.md)"
}

# --model all / --models: the data stages once, then stages 4-10 of each model in its own run of this
# script (a failed model does not stop the others), then one report of those that made it.
if [ "${model}" = all ] && [ -z "${models}" ]; then
  models=$(plan.py models)
fi
if [ -n "${models}" ]; then
  first_model_stage=$(( stage > 4 ? stage : 4 ))
  last_model_stage=$(( stop_stage < 10 ? stop_stage : 10 ))
  if [ "${stage}" -le 3 ]; then
    "$0" "${script_args[@]}" --models "" --model "${models%% *}" --stage "${stage}" \
      --stop-stage "$(( stop_stage < 3 ? stop_stage : 3 ))"
  fi
  failed=""
  scored_exps=()
  mkdir -p "${report_dir}/log"
  if [ "${stop_stage}" -ge 4 ] && [ "${first_model_stage}" -le "${last_model_stage}" ]; then
    for _model in ${models}; do
      _log=${report_dir}/log/${_model}.log
      log "--models: ${_model}, stages ${first_model_stage}-${last_model_stage}; see the progress in ${_log}"
      if "$0" "${script_args[@]}" --models "" --model "${_model}" --stage "${first_model_stage}" \
          --stop-stage "${last_model_stage}" > "${_log}" 2>&1; then
        # shellcheck disable=SC2046
        scored_exps+=("${exp_dir}/$(plan.py tag --config "conf/${_model}.yaml" \
          $(set_args "$(overrides_of "${_model}" "${train_overrides}")"))/scores_$(decode_name \
          "$(overrides_of "${_model}" "${inference_overrides}")")")
      else
        failed+=" ${_model}"
        log "--models: ${_model} failed; the end of ${_log}:"
        tail -n 5 "${_log}" | sed 's/^/    /' >&2
      fi
    done
  fi
  if [ "${stop_stage}" -ge 11 ] && [ "${#scored_exps[@]}" -gt 0 ]; then
    make_report "${scored_exps[@]}"
  fi
  if [ -n "${failed}" ]; then
    log "Error: --models: failed:${failed}; their logs: $(for _m in ${failed}; do printf '%s ' "${report_dir}/log/${_m}.log"; done)"
    log "Re-run the same command to resume: finished stages of every model are skipped"
    exit 1
  fi
  log "Successfully finished stages ${stage}-${stop_stage} of: ${models}"
  exit 0
fi

train_overrides=$(overrides_of "${model}" "${train_overrides}")
inference_overrides=$(overrides_of "${model}" "${inference_overrides}")
model_set_opts=$(set_args "${train_overrides}")
inference_set_opts=$(set_args "${inference_overrides}")
decode=$(decode_name "${inference_overrides}")
vocoder_set_opts=$(set_args "${vocoder_overrides}")
if [ ${stop_stage} -ge 4 ]; then
  # The config's family: key names the family; an unknown model or vocoder lists the registered ones.
  # shellcheck disable=SC2086
  family=$(plan.py family --config "${model_config}" ${model_set_opts} --role conversion)
  # shellcheck disable=SC2086
  vocoder_family=$(plan.py family --config "${vocoder_config}" ${vocoder_set_opts} --role vocoder)
fi

# Data, features and experiments of two corpora must never mix under one data dir.
check_corpus_of() {
  local marker=$1/corpus
  if [ -f "${marker}" ] && [ "$(cat "${marker}")" != "${corpus}" ]; then
    log "Error: $1 holds corpus '$(cat "${marker}")', not '${corpus}'; use other --data-dir/--dump-dir or remove them"
    exit 1
  fi
}
check_corpus_of "${data_dir}"
check_corpus_of "${dump_dir}"

require_file() {
  # $1: file, $2: the stage that makes it
  if [ ! -f "$1" ]; then
    log "Error: $1 is missing: run $2 first (e.g. ./run.sh --stage ${2#stage } --stop-stage ${2#stage })"
    exit 1
  fi
}

set_train_launcher() {
  # Sets _cmd (the job dispatcher) and _train (the train.py command) for --ngpu.
  if [ "${ngpu}" -eq 0 ]; then
    _cmd=${train_cmd}
    _train="train.py"
  elif [ "${ngpu}" -eq 1 ]; then
    _cmd="${cuda_cmd} --gpu 1"
    _train="train.py --ngpu 1"
  else
    # One process per GPU; data.batch_size is per GPU, so the global batch grows with ngpu.
    _cmd="${cuda_cmd} --gpu ${ngpu}"
    _train="torchrun --standalone --nproc_per_node=${ngpu} $(command -v train.py) --ngpu 1"
  fi
}


if [ ${stage} -le 0 ] && [ ${stop_stage} -ge 0 ]; then
  log "Stage 0: get corpus '${corpus}' into ${db_dir}"
  _opts="--nj ${nj} --cmd '${train_cmd}'"
  if [ "${corpus}" = synth ]; then
    _opts+=" --num-sentences ${num_sentences} --seed ${corpus_seed} --speakers '${synth_speakers}'"
  fi
  eval "local/${corpus}/get_corpus.sh ${_opts} ${get_corpus_opts} ${db_dir}"
fi


if [ ${stage} -le 1 ] && [ ${stop_stage} -ge 1 ]; then
  log "Stage 1: Kaldi data prep ${db_dir} -> ${data_dir}/{${train_set},${dev_set},${eval_set}}"
  _stamp_dir=${data_dir}/.stamps/prep
  _prep_opts="${num_dev_sentences} ${num_eval_sentences} ${num_pair_sentences} ${sets} ${data_prep_opts}"
  if ! ${force} && stamp.py check "${_stamp_dir}" --text "${_prep_opts}" "${db_dir}/.complete"; then
    log "Stage 1: ${data_dir} is up to date with ${db_dir}; skipping (--force true to redo)"
  else
    require_file "${db_dir}/.complete" "stage 0"
    _opts=""
    if [ "${corpus}" = synth ]; then
      _opts+=" --num-dev-sentences ${num_dev_sentences} --num-eval-sentences ${num_eval_sentences}"
      _opts+=" --num-pair-sentences ${num_pair_sentences}"
    fi
    eval "local/${corpus}/data_prep.sh ${_opts} ${data_prep_opts} ${db_dir} ${data_dir}"
    for _set in ${sets}; do
      utils/validate_data_dir.sh --sample-rate 16000 "${data_dir}/${_set}"
    done
    echo "${corpus}" > "${data_dir}/corpus"
    stamp.py write "${_stamp_dir}" --text "${_prep_opts}" "${db_dir}/.complete"
  fi
fi


if [ ${stage} -le 2 ] && [ ${stop_stage} -ge 2 ]; then
  log "Stage 2: features (${feats}) -> ${dump_dir}/raw/<feat>/<set>"
  mkdir -p "${dump_dir}"
  echo "${corpus}" > "${dump_dir}/corpus"
  for _feat in ${feats}; do
    for _set in ${sets}; do
      require_file "${data_dir}/${_set}/wav.scp" "stage 1"
      _out=${dump_dir}/raw/${_feat}/${_set}
      log "Stage 2: ${_feat} of ${_set}; see the progress in ${_out}/log/compute_feats.*.log"
      utils/make_feats.sh --nj "${nj}" --cmd "${train_cmd}" --force "${force}" \
        --feats-config "conf/feats/${_feat}.yaml" "${data_dir}/${_set}" "${_out}"
    done
  done
fi


if [ ${stage} -le 3 ] && [ ${stop_stage} -ge 3 ]; then
  log "Stage 3: statistics -> ${dump_dir}/stats, normalised features -> ${dump_dir}/norm"
  for _feat in ${feats}; do
    _stats_dir=${dump_dir}/stats/${_feat}
    _train_raw=${dump_dir}/raw/${_feat}/${train_set}
    require_file "${_train_raw}/.done" "stage 2"
    if ! ${force} && stamp.py check "${_stats_dir}" "${_train_raw}/.done"; then
      log "Stage 3: ${_stats_dir} is up to date; skipping"
    else
      ${train_cmd} "${_stats_dir}/log/global_stats.log" \
        compute_stats.py --global-stats "${_stats_dir}/global_stats.npz" "${_train_raw}/feats.scp"
      stamp.py write "${_stats_dir}" "${_train_raw}/.done"
    fi
    for _set in ${sets}; do
      _raw=${dump_dir}/raw/${_feat}/${_set}
      _norm=${dump_dir}/norm/${_feat}/${_set}
      require_file "${_raw}/.done" "stage 2"
      if ! ${force} && stamp.py check "${_norm}" "${_raw}/.done" "${_stats_dir}/.done"; then
        log "Stage 3: ${_norm} is up to date; skipping"
        continue
      fi
      ${train_cmd} "${_stats_dir}/log/spk_stats.${_set}.log" \
        compute_stats.py --utt2spk "${data_dir}/${_set}/utt2spk" \
          --spk-stats "${_stats_dir}/${_set}/spk_stats.ark" "${_raw}/feats.scp"
      ${train_cmd} "${_norm}/log/normalize.log" \
        normalize_feats.py --stats "${_stats_dir}/global_stats.npz" \
          "${_raw}/feats.scp" "${_norm}/feats.ark" "${_norm}/feats.scp"
      cp "${_raw}/utt2num_frames" "${_norm}/utt2num_frames"
      stamp.py write "${_norm}" "${_raw}/.done" "${_stats_dir}/.done"
    done
  done
fi


if [ ${stop_stage} -ge 4 ]; then
  # One experiment per config and overrides: changing an override never reuses an old exp dir.
  # shellcheck disable=SC2086
  [ -n "${tag}" ] || tag=$(plan.py tag --config "${model_config}" ${model_set_opts})
  model_exp=${exp_dir}/${tag}
  log "Experiment: ${model_exp} (tag ${tag}, family ${family}; vocoder ${vocoder}, family ${vocoder_family})"
fi

# Runs the jobs of stage $1 of the plan of config $2 (overrides $3) for experiment dir $4
# (voiceswap/train/jobs.py): each job is skipped when its stamp says its inputs are unchanged.
run_plan_stage() {
  local _stage=$1 _config=$2 _set_opts=$3 _exp=$4 _name=$5
  local _jobs _launcher _out _log _text _inputs _describe _command
  # shellcheck disable=SC2086
  _jobs=$(plan.py jobs --stage "${_stage}" --config "${_config}" ${_set_opts} --exp-dir "${_exp}" \
    --dump-dir "${dump_dir}" --data-dir "${data_dir}" --train-set "${train_set}" --dev-set "${dev_set}" \
    --eval-set "${eval_set}" --nj "${nj}")
  if [ -z "${_jobs}" ]; then
    log "Stage ${_stage}: ${_name} has nothing to do in this stage"
    return 0
  fi
  while IFS=$'\t' read -r -u 3 _launcher _out _log _text _inputs _describe _command; do
    [ "${_inputs}" != - ] || _inputs=""
    # shellcheck disable=SC2086
    if [ "${_out}" != - ] && ! ${force} && stamp.py check "${_out}" --text "${_text}" ${_inputs}; then
      log "Stage ${_stage}: ${_out} is up to date; skipping"
      continue
    fi
    log "Stage ${_stage}: ${_describe}; see the progress in ${_log}"
    case "${_launcher}" in
      train) set_train_launcher; eval "${_cmd} '${_log}' ${_train} ${_command#train.py }" ;;
      cpu) eval "${train_cmd} '${_log}' ${_command}" ;;
      decode) eval "${decode_cmd} '${_log}' ${_command}" ;;
      *) log "Error: plan.py gave an unknown launcher '${_launcher}'"; exit 1 ;;
    esac
    # shellcheck disable=SC2086
    [ "${_out}" = - ] || stamp.py write "${_out}" --text "${_text}" ${_inputs}
  done 3<<< "${_jobs}"
}


if [ ${stage} -le 4 ] && [ ${stop_stage} -ge 4 ]; then
  log "Stage 4: the content/unit model of ${family} (${model_config}${train_overrides:+, ${train_overrides}}) -> ${model_exp}"
  run_plan_stage 4 "${model_config}" "${model_set_opts}" "${model_exp}" "${family}"
fi


if [ ${stage} -le 5 ] && [ ${stop_stage} -ge 5 ]; then
  log "Stage 5: dump the units of ${family} -> ${dump_dir}/units/${tag}/<set>"
  run_plan_stage 5 "${model_config}" "${model_set_opts}" "${model_exp}" "${family}"
fi


if [ ${stage} -le 6 ] && [ ${stop_stage} -ge 6 ]; then
  log "Stage 6: the conversion model of ${family} -> ${model_exp}"
  run_plan_stage 6 "${model_config}" "${model_set_opts}" "${model_exp}" "${family}"
fi


if [ ${stage} -le 7 ] && [ ${stop_stage} -ge 7 ]; then
  # One vocoder per corpus and features, shared by every model: it learns log-mel -> audio of real speech.
  log "Stage 7: the vocoder ${vocoder} (${vocoder_config}${vocoder_overrides:+, ${vocoder_overrides}}) -> ${vocoder_dir}"
  run_plan_stage 7 "${vocoder_config}" "${vocoder_set_opts}" "${vocoder_dir}" "${vocoder_family}"
fi


if [ ${stage} -le 8 ] && [ ${stop_stage} -ge 8 ]; then
  # One convert/scores/plots dir per vocoder (voiceswap/eval/layout.py), so each lands in RESULTS.md.
  _out=${model_exp}/convert_${decode}
  log "Stage 8: convert ${data_dir}/${eval_set}/pairs with ${model_exp} + ${vocoder} -> ${_out}"
  require_file "${data_dir}/${eval_set}/pairs" "stage 1"
  # The checkpoints convert.py loads (best, else newest): a retrained model or vocoder makes the outputs out of date.
  _ckpt=$(plan.py checkpoint --made-by "stages 4-6 (training of ${family})" "${model_exp}")
  _voc_ckpt=$(plan.py checkpoint --made-by "stage 7 (the ${vocoder} vocoder)" --config "${vocoder_config}" "${vocoder_dir}")
  _stamp_text="${_ckpt} ${vocoder_config} ${convert_reconstruct} ${inference_overrides}${_voc_ckpt:+ ${_voc_ckpt}}"
  if ! ${force} && stamp.py check "${_out}" --text "${_stamp_text}" "${_ckpt}" "${data_dir}/${eval_set}/pairs"; then
    log "Stage 8: ${_out} is up to date; skipping"
  else
    rm -rf "${_out}"
    mkdir -p "${_out}/split"
    cp "${data_dir}/${eval_set}/pairs" "${_out}/items"
    if ${convert_reconstruct}; then
      # Each source once more in its own voice: the ceiling of what the decoder + vocoder can do. Only
      # sources of train speakers: an unseen speaker (speaker-disjoint split) has no voice to decode with.
      cut -d' ' -f1 "${data_dir}/${eval_set}/pairs" | sort -u > "${_out}/sources"
      utils/filter_scp.pl "${_out}/sources" "${data_dir}/${eval_set}/utt2spk" \
        | awk 'NR == FNR { seen[$1] = 1; next } ($2 in seen) { print $1, $2, $1 }' \
          "${data_dir}/${train_set}/spk2utt" - >> "${_out}/items"
    fi
    _num_items=$(wc -l < "${_out}/items")
    _nj=$(( nj < _num_items ? nj : _num_items ))
    _split_items=""
    for _n in $(seq "${_nj}"); do
      _split_items+=" ${_out}/split/items.${_n}"
    done
    # shellcheck disable=SC2086
    utils/split_scp.pl "${_out}/items" ${_split_items}
    log "Stage 8: ${_num_items} outputs in ${_nj} jobs; see the progress in ${_out}/log/convert.*.log"
    # shellcheck disable=SC2086
    ${decode_cmd} JOB=1:"${_nj}" "${_out}/log/convert.JOB.log" \
      convert.py --exp-dir "${model_exp}" --checkpoint "${_ckpt}" ${inference_set_opts} --dump-dir "${dump_dir}" --data-set "${eval_set}" \
        --train-set "${train_set}" --utt2spk "${data_dir}/${eval_set}/utt2spk" \
        --vocoder-config "${vocoder_config}" --vocoder-dir "${vocoder_dir}" --references-from "${_out}/items" --job JOB \
        "${_out}/split/items.JOB" "${_out}"
    for _n in $(seq "${_nj}"); do cat "${_out}/mel.${_n}.scp"; done | LC_ALL=C sort > "${_out}/mel.scp"
    for _n in $(seq "${_nj}"); do cat "${_out}/conversions.${_n}"; done | LC_ALL=C sort > "${_out}/conversions"
    awk -v dir="$(cd "${_out}" && pwd)/wav" '{print $1, dir "/" $1 ".wav"}' "${_out}/conversions" > "${_out}/wav.scp"
    stamp.py write "${_out}" --text "${_stamp_text}" "${_ckpt}" "${data_dir}/${eval_set}/pairs"
    log "Stage 8: $(grep -c ' conversion$' "${_out}/conversions") conversions and $(grep -c ' reconstruction$' "${_out}/conversions" || true) reconstructions in ${_out}/wav"
  fi
fi

if [ ${stage} -le 9 ] && [ ${stop_stage} -ge 9 ]; then
  _scores=${model_exp}/scores_${decode}
  log "Stage 9: score ${model_exp}/convert_${decode} -> ${_scores}"
  require_file "${model_exp}/convert_${decode}/.done" "stage 8"
  # The judge of speaker accuracy, class and Frechet scores: the toolkit's own speaker classifier,
  # trained once per corpus on real train speech and cached (nothing is downloaded).
  _clf=${exp_dir}/speaker_classifier_${corpus}
  if [ ! -f "${_clf}/checkpoints/best.pt" ]; then
    log "Stage 9: train the speaker classifier of the metric suite -> ${_clf}; see the progress in ${_clf}/log/train.log"
    # shellcheck disable=SC2046
    ${cuda_cmd} "${_clf}/log/train.log" \
      train.py --config conf/speaker_classifier.yaml $(set_args "${classifier_overrides}") --exp-dir "${_clf}" \
        --dump-dir "${dump_dir}" --data-dir "${data_dir}" --train-set "${train_set}" --valid-set "${dev_set}"
  fi
  _clf_ckpt=$(plan.py checkpoint --made-by "stage 9 (the speaker classifier)" "${_clf}")
  _score_opts="--exp-dir ${model_exp} --data-dir ${data_dir} --dump-dir ${dump_dir} --eval-set ${eval_set}"
  _score_opts+=" --train-set ${train_set} --corpus ${corpus} --vocoder ${decode} --classifier-dir ${_clf}"
  _score_opts+=" --vocoder-config ${vocoder_config} --vocoder-dir ${vocoder_dir}"
  _score_opts+=" --max-pairs ${score_max_pairs} ${score_opts}"
  if ! ${force} && stamp.py check "${_scores}" --text "${_score_opts} ${_clf_ckpt}" "${model_exp}/convert_${decode}/.done" "${_clf_ckpt}"; then
    log "Stage 9: ${_scores} is up to date; skipping"
  else
    rm -rf "${_scores}/measure"
    log "Stage 9: measuring in ${nj} jobs; see the progress in ${_scores}/log/measure.*.log"
    # shellcheck disable=SC2086
    ${decode_cmd} JOB=1:"${nj}" "${_scores}/log/measure.JOB.log" \
      score.py measure ${_score_opts} --job JOB --nj "${nj}"
    # shellcheck disable=SC2086
    ${decode_cmd} "${_scores}/log/summarize.log" score.py summarize ${_score_opts} --nj "${nj}"
    stamp.py write "${_scores}" --text "${_score_opts} ${_clf_ckpt}" "${model_exp}/convert_${decode}/.done" "${_clf_ckpt}"
    log "Stage 9: scores in ${_scores}/RESULTS.md and ${_scores}/metrics.json"
  fi
fi


if [ ${stage} -le 10 ] && [ ${stop_stage} -ge 10 ]; then
  _plots=${model_exp}/plots_${decode}
  [ -n "${results}" ] || results=$(dirname "${exp_dir}")/RESULTS.md
  log "Stage 10: plots -> ${_plots}, results of every experiment -> ${results}"
  require_file "${model_exp}/scores_${decode}/metrics.json" "stage 9"
  ${train_cmd} "${_plots}/log/plot.log" \
    plot.py --exp-dir "${model_exp}" --vocoder "${decode}" --data-dir "${data_dir}" --dump-dir "${dump_dir}" \
      --eval-set "${eval_set}" --train-set "${train_set}" "${_plots}"
  utils/show_results.sh "${exp_dir}" > "${results}.tmp"
  mv "${results}.tmp" "${results}"
  log "Stage 10: $(find "${_plots}" -name '*.png' | wc -l) plots in ${_plots}; table in ${results}"
fi


if [ ${stage} -le 11 ] && [ ${stop_stage} -ge 11 ]; then
  require_file "${model_exp}/scores_${decode}/metrics.json" "stage 9"
  make_report "${model_exp}/scores_${decode}"
fi

log "Successfully finished stages ${stage}-${stop_stage}"
