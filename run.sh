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
stop_stage=8            # last stage to run
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
eval_set=eval

# Model options.
model=vqvae             # model family: conf/<model>.yaml
model_config=""         # family config (default: conf/<model>.yaml)
train_overrides=""      # config overrides "section.key=value ..." (they become part of the tag)
vocoder=griffinlim      # vocoder of stage 8
ngpu=0                  # GPUs for training: 0 = CPU, 1 = one GPU, N > 1 = torchrun DDP on N GPUs
convert_reconstruct=true # stage 8 also reconstructs every source with its own speaker

# Options of the synth corpus.
synth_speakers="slt rms awb kal ked esf2 esm7 sltw" # voices (see local/synth/synthesize.py)
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
  4: train the model (vqvae: encoder, codebook and decoder)  -> \${exp_dir}/<tag>
  5: dump units (vqvae: code indices and vectors)           -> \${dump_dir}/units/<tag>/<set>
  6: train the conversion model (vqvae: trained in stage 4)
  7: train the vocoder (griffinlim: nothing to train)
  8: convert the eval pairs, reconstruct their sources      -> \${exp_dir}/<tag>/convert
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
  --model               # model family (default="${model}")
  --model-config        # family config (default="conf/<model>.yaml")
  --train-overrides     # "section.key=value ..." config overrides (default="${train_overrides}")
  --vocoder             # vocoder: griffinlim (default="${vocoder}")
  --ngpu                # training GPUs; > 1 runs DistributedDataParallel via torchrun (default="${ngpu}")
  --convert-reconstruct # stage 8 also reconstructs each source (default="${convert_reconstruct}")
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
. utils/parse_options.sh

if [ $# -ne 0 ]; then
  log "${help_message}"
  log "Error: unexpected positional arguments: $*"
  exit 2
fi
if ! echo " ${valid_corpora} " | grep -q " ${corpus} "; then
  log "Error: unknown corpus '${corpus}'; valid corpora: ${valid_corpora}"
  exit 2
fi
[ -n "${db_dir}" ] || db_dir=db/${corpus}
[ -n "${model_config}" ] || model_config=conf/${model}.yaml
if [ ! -f "${model_config}" ]; then
  log "Error: no config ${model_config} for model '${model}'; configs: $(cd conf && ls ./*.yaml | sed 's|^\./||' | tr '\n' ' ')"
  exit 2
fi
case "${vocoder}" in
  griffinlim) ;;
  *) log "Error: unknown vocoder '${vocoder}'; valid vocoders: griffinlim"; exit 2 ;;
esac
sets="${train_set} ${dev_set} ${eval_set}"

# A fresh clone needs no manual step: the environment is built on first use.
if [ ! -f .venv/.voiceswap-setup ]; then
  log "No environment yet: running utils/setup.sh (first time: a few minutes)"
  utils/setup.sh
fi
. ./path.sh
. ./cmd.sh

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
  _set_opts=""
  for _override in ${train_overrides}; do
    _set_opts+=" --set ${_override}"
  done
  # shellcheck disable=SC2086
  [ -n "${tag}" ] || tag=$(train.py --config "${model_config}" ${_set_opts} --print-tag)
  model_exp=${exp_dir}/${tag}
  log "Experiment: ${model_exp} (tag ${tag})"
fi


if [ ${stage} -le 4 ] && [ ${stop_stage} -ge 4 ]; then
  log "Stage 4: train ${model} (${model_config}${train_overrides:+, ${train_overrides}}) -> ${model_exp}"
  require_file "${dump_dir}/norm/logmel80/${train_set}/.done" "stage 3"
  log "Stage 4: see the progress in ${model_exp}/train.log (or ${model_exp}/log/train.log)"
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
  # shellcheck disable=SC2086
  ${_cmd} "${model_exp}/log/train.log" \
    ${_train} --config "${model_config}" ${_set_opts} --outdir "${model_exp}" \
      --feats-dir "${dump_dir}/norm" --data-dir "${data_dir}" \
      --train-set "${train_set}" --valid-set "${dev_set}"
fi


if [ ${stage} -le 5 ] && [ ${stop_stage} -ge 5 ]; then
  log "Stage 5: dump ${model} units -> ${dump_dir}/units/${tag}/<set>"
  require_file "${model_exp}/spk2id" "stage 4"
  for _set in ${sets}; do
    _out=${dump_dir}/units/${tag}/${_set}
    _ckpt=$(readlink -f "${model_exp}/checkpoints/best.pt")
    if ! ${force} && stamp.py check "${_out}" --text "${_ckpt}" "${_ckpt}" "${data_dir}/${_set}/utt2spk"; then
      log "Stage 5: ${_out} is up to date; skipping"
      continue
    fi
    ${decode_cmd} "${model_exp}/log/dump_units.${_set}.log" \
      dump_units.py --model-dir "${model_exp}" --dump-dir "${dump_dir}" "${_set}" "${_out}"
    stamp.py write "${_out}" --text "${_ckpt}" "${_ckpt}" "${data_dir}/${_set}/utt2spk"
  done
fi


if [ ${stage} -le 6 ] && [ ${stop_stage} -ge 6 ]; then
  case "${model}" in
    vqvae) log "Stage 6: ${model}: the decoder is the conversion model and trained with the encoder in stage 4; nothing to do" ;;
  esac
fi


if [ ${stage} -le 7 ] && [ ${stop_stage} -ge 7 ]; then
  case "${vocoder}" in
    griffinlim) log "Stage 7: ${vocoder} needs no training; nothing to do" ;;
  esac
fi


if [ ${stage} -le 8 ] && [ ${stop_stage} -ge 8 ]; then
  _out=${model_exp}/convert
  log "Stage 8: convert ${data_dir}/${eval_set}/pairs with ${model} + ${vocoder} -> ${_out}"
  require_file "${model_exp}/spk2id" "stage 4"
  require_file "${data_dir}/${eval_set}/pairs" "stage 1"
  _ckpt=$(readlink -f "${model_exp}/checkpoints/best.pt")
  _stamp_text="${_ckpt} ${vocoder} ${convert_reconstruct}"
  if ! ${force} && stamp.py check "${_out}" --text "${_stamp_text}" "${_ckpt}" "${data_dir}/${eval_set}/pairs"; then
    log "Stage 8: ${_out} is up to date; skipping"
  else
    rm -rf "${_out}"
    mkdir -p "${_out}/split"
    cp "${data_dir}/${eval_set}/pairs" "${_out}/items"
    if ${convert_reconstruct}; then
      # Each source once more in its own voice: the ceiling of what the decoder + vocoder can do.
      cut -d' ' -f1 "${data_dir}/${eval_set}/pairs" | sort -u > "${_out}/sources"
      utils/filter_scp.pl "${_out}/sources" "${data_dir}/${eval_set}/utt2spk" \
        | awk '{print $1, $2, $1}' >> "${_out}/items"
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
    ${decode_cmd} JOB=1:"${_nj}" "${_out}/log/convert.JOB.log" \
      convert.py --model-dir "${model_exp}" --dump-dir "${dump_dir}" --set "${eval_set}" \
        --utt2spk "${data_dir}/${eval_set}/utt2spk" --vocoder "${vocoder}" --job JOB \
        "${_out}/split/items.JOB" "${_out}"
    for _n in $(seq "${_nj}"); do cat "${_out}/mel.${_n}.scp"; done | LC_ALL=C sort > "${_out}/mel.scp"
    for _n in $(seq "${_nj}"); do cat "${_out}/conversions.${_n}"; done | LC_ALL=C sort > "${_out}/conversions"
    awk -v dir="$(cd "${_out}" && pwd)/wav" '{print $1, dir "/" $1 ".wav"}' "${_out}/conversions" > "${_out}/wav.scp"
    stamp.py write "${_out}" --text "${_stamp_text}" "${_ckpt}" "${data_dir}/${eval_set}/pairs"
    log "Stage 8: $(grep -c ' conversion$' "${_out}/conversions") conversions and $(grep -c ' reconstruction$' "${_out}/conversions" || true) reconstructions in ${_out}/wav"
  fi
fi

log "Successfully finished stages ${stage}-${stop_stage}"
