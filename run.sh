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
stop_stage=10           # last stage to run
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
vocoder=griffinlim      # vocoder of stage 8: griffinlim (no training) or hifigan (trained in stage 7)
vocoder_config=""       # vocoder config (default: conf/vocoder/<vocoder>_small.yaml)
vocoder_overrides=""    # "section.key=value ..." overrides of the vocoder config, e.g. "train.max_steps=2000"
vocoder_dir=""          # the trained vocoder, shared by every model (default: <exp-dir>/vocoder_<vocoder>_<corpus>)
hubert_checkpoint=""    # softvc with content.features.kind=hubert: a local HuBERT checkpoint (empty: download HUBERT_BASE)
ngpu=0                  # GPUs for training: 0 = CPU, 1 = one GPU, N > 1 = torchrun DDP on N GPUs
convert_reconstruct=true # stage 8 also reconstructs every source with its own speaker

# Scoring options (stages 9-10).
score_max_pairs=0       # score at most this many conversion pairs (0: all)
score_opts=""           # extra options of voiceswap/bin/score.py, e.g. "--mos-max-pairs 80 --measures emb,clf,mcep,f0"
classifier_overrides="" # "section.key=value ..." overrides of conf/speaker_classifier.yaml (the judge of stage 9)
results=""              # corpus results table of stage 10 (default: RESULTS.md beside the exp dir)

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
     (softvc: content features, k-means, soft-unit head)    -> \${dump_dir}/content, \${exp_dir}/<tag>/content
  5: dump units (vqvae: code indices and vectors;           -> \${dump_dir}/units/<tag>/<set>
     softvc: k-means ids, soft units)
  6: train the conversion model (vqvae: trained in stage 4;  softvc: the acoustic model -> \${exp_dir}/<tag>)
  7: train the vocoder (griffinlim: nothing to train; hifigan -> \${exp_dir}/vocoder_hifigan_<corpus>)
  8: convert the eval pairs, reconstruct their sources      -> \${exp_dir}/<tag>/convert_<vocoder>
  9: score: the metric suite (+ the speaker classifier)     -> \${exp_dir}/<tag>/scores_<vocoder>
 10: plots and the results table of every experiment        -> \${exp_dir}/<tag>/plots_<vocoder>, RESULTS.md
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
  --vocoder             # vocoder: griffinlim or hifigan (default="${vocoder}")
  --vocoder-config      # vocoder config (default: conf/vocoder/<vocoder>_small.yaml)
  --vocoder-overrides   # "section.key=value ..." vocoder config overrides, e.g. "train.max_steps=2000"
  --vocoder-dir         # trained vocoder dir (default: \${exp_dir}/vocoder_<vocoder>_<corpus>)
  --hubert-checkpoint   # softvc + HuBERT content features: local checkpoint (default: download HUBERT_BASE)
  --ngpu                # training GPUs; > 1 runs DistributedDataParallel via torchrun (default="${ngpu}")
  --convert-reconstruct # stage 8 also reconstructs each source (default="${convert_reconstruct}")
Scoring options:
  --score-max-pairs     # score at most this many conversion pairs, 0: all (default="${score_max_pairs}")
  --score-opts          # extra options of score.py (default="${score_opts}")
  --classifier-overrides # overrides of conf/speaker_classifier.yaml (default="${classifier_overrides}")
  --results             # results table (default: RESULTS.md beside \${exp_dir})
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
  hifigan)
    [ -n "${vocoder_config}" ] || vocoder_config=conf/vocoder/${vocoder}_small.yaml
    [ -n "${vocoder_dir}" ] || vocoder_dir=${exp_dir}/vocoder_${vocoder}_${corpus}
    if [ ! -f "${vocoder_config}" ]; then
      log "Error: no vocoder config ${vocoder_config}; configs: $(cd conf/vocoder && ls ./*.yaml | sed 's|^\./|conf/vocoder/|' | tr '\n' ' ')"
      exit 2
    fi
    ;;
  *) log "Error: unknown vocoder '${vocoder}'; valid vocoders: griffinlim hifigan"; exit 2 ;;
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
  _set_opts=""
  for _override in ${train_overrides}; do
    _set_opts+=" --set ${_override}"
  done
  # shellcheck disable=SC2086
  [ -n "${tag}" ] || tag=$(train.py --config "${model_config}" ${_set_opts} --print-tag)
  model_exp=${exp_dir}/${tag}
  log "Experiment: ${model_exp} (tag ${tag})"
  # The stage that writes the model stage 8 converts with (and its spk2id).
  model_stage="stage 4"
  if [ "${model}" = softvc ]; then
    model_stage="stage 6"
    # Content features are shared by every experiment with the same content.features (and checkpoint).
    # shellcheck disable=SC2086
    content_dir=${dump_dir}/content/$(extract_content.py --config "${model_config}" ${_set_opts} \
      --hubert-checkpoint "${hubert_checkpoint}" --print-name)
    units_dir=${dump_dir}/units/${tag}
    # Where train.py / convert.py find the feature names of conf/softvc*.yaml ({set}: the set).
    softvc_unit_scps="--feats-scp soft_units=${units_dir}/{set}/vectors.scp --feats-scp discrete_units=${units_dir}/{set}/discrete.scp"
  fi
fi


if [ ${stage} -le 4 ] && [ ${stop_stage} -ge 4 ]; then
  log "Stage 4: train ${model} (${model_config}${train_overrides:+, ${train_overrides}}) -> ${model_exp}"
  require_file "${dump_dir}/norm/logmel80/${train_set}/.done" "stage 3"
  set_train_launcher
  if [ "${model}" = softvc ]; then
    # (a) Content features of every set (content.features of the config).
    for _set in ${sets}; do
      _out=${content_dir}/${_set}
      _inputs="${data_dir}/${_set}/wav.scp"
      for _feat in ${feats}; do
        _inputs+=" ${dump_dir}/norm/${_feat}/${_set}/.done"
      done
      [ -z "${hubert_checkpoint}" ] || _inputs+=" ${hubert_checkpoint}"
      # shellcheck disable=SC2086
      if ! ${force} && stamp.py check "${_out}" --text "${content_dir}" ${_inputs}; then
        log "Stage 4: ${_out} is up to date; skipping"
        continue
      fi
      log "Stage 4: content features $(basename "${content_dir}") of ${_set} -> ${_out}"
      # shellcheck disable=SC2086
      ${train_cmd} "${_out}/log/extract_content.log" \
        extract_content.py --config "${model_config}" ${_set_opts} --hubert-checkpoint "${hubert_checkpoint}" \
          --data-dir "${data_dir}" --dump-dir "${dump_dir}" "${_set}" "${_out}"
      # shellcheck disable=SC2086
      stamp.py write "${_out}" --text "${content_dir}" ${_inputs}
    done
    # (b) k-means on the train set's content features; its ids of train and dev are the head's targets.
    _km=${model_exp}/content/kmeans
    if ! ${force} && stamp.py check "${_km}" --text "${_set_opts}" "${content_dir}/${train_set}/.done" \
        "${content_dir}/${dev_set}/.done"; then
      log "Stage 4: ${_km} is up to date; skipping"
    else
      log "Stage 4: k-means on ${content_dir}/${train_set} -> ${_km}"
      # shellcheck disable=SC2086
      ${train_cmd} "${_km}/log/fit.log" \
        kmeans_units.py fit --config "${model_config}" ${_set_opts} "${content_dir}/${train_set}/feats.scp" "${_km}/model.npz"
      for _set in ${train_set} ${dev_set}; do
        ${train_cmd} "${_km}/log/apply.${_set}.log" \
          kmeans_units.py apply --name units "${_km}/model.npz" "${content_dir}/${_set}/feats.scp" "${_km}/${_set}"
      done
      stamp.py write "${_km}" --text "${_set_opts}" "${content_dir}/${train_set}/.done" "${content_dir}/${dev_set}/.done"
    fi
    # (c) The soft-unit head (config section content) learns to predict the k-means ids.
    log "Stage 4: train the soft-unit head -> ${model_exp}/content; see the progress in ${model_exp}/content/log/train.log"
    # shellcheck disable=SC2086
    ${_cmd} "${model_exp}/content/log/train.log" \
      ${_train} --config "${model_config}" ${_set_opts} --section content --outdir "${model_exp}/content" \
        --feats-dir "${dump_dir}/norm" --data-dir "${data_dir}" --train-set "${train_set}" --valid-set "${dev_set}" \
        --feats-scp "content=${content_dir}/{set}/feats.scp" --feats-scp "kmeans=${_km}/{set}/units.scp"
  else
    log "Stage 4: see the progress in ${model_exp}/train.log (or ${model_exp}/log/train.log)"
    # shellcheck disable=SC2086
    ${_cmd} "${model_exp}/log/train.log" \
      ${_train} --config "${model_config}" ${_set_opts} --outdir "${model_exp}" \
        --feats-dir "${dump_dir}/norm" --data-dir "${data_dir}" \
        --train-set "${train_set}" --valid-set "${dev_set}"
  fi
fi


if [ ${stage} -le 5 ] && [ ${stop_stage} -ge 5 ]; then
  log "Stage 5: dump ${model} units -> ${dump_dir}/units/${tag}/<set>"
  if [ "${model}" = softvc ]; then
    # k-means ids (discrete.scp) and the head's soft units (vectors.scp) and argmax (indices.scp), 50 Hz.
    require_file "${model_exp}/content/spk2id" "stage 4"
    require_file "${model_exp}/content/kmeans/model.npz" "stage 4"
    _ckpt=$(readlink -f "${model_exp}/content/checkpoints/best.pt")
    for _set in ${sets}; do
      _out=${units_dir}/${_set}
      _inputs="${_ckpt} ${model_exp}/content/kmeans/model.npz ${content_dir}/${_set}/.done"
      # shellcheck disable=SC2086
      if ! ${force} && stamp.py check "${_out}" --text "${_ckpt}" ${_inputs}; then
        log "Stage 5: ${_out} is up to date; skipping"
        continue
      fi
      ${decode_cmd} "${model_exp}/log/kmeans_units.${_set}.log" \
        kmeans_units.py apply --name discrete "${model_exp}/content/kmeans/model.npz" \
          "${content_dir}/${_set}/feats.scp" "${_out}"
      ${decode_cmd} "${model_exp}/log/dump_units.${_set}.log" \
        dump_units.py --model-dir "${model_exp}/content" --dump-dir "${dump_dir}" \
          --feats-scp "content=${content_dir}/{set}/feats.scp" "${_set}" "${_out}"
      # shellcheck disable=SC2086
      stamp.py write "${_out}" --text "${_ckpt}" ${_inputs}
    done
  else
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
fi


if [ ${stage} -le 6 ] && [ ${stop_stage} -ge 6 ]; then
  case "${model}" in
    vqvae) log "Stage 6: ${model}: the decoder is the conversion model and trained with the encoder in stage 4; nothing to do" ;;
    softvc)
      log "Stage 6: train the ${model} acoustic model (units + target speaker -> log-mel) -> ${model_exp}; see the progress in ${model_exp}/log/train.log"
      require_file "${units_dir}/${train_set}/.done" "stage 5"
      require_file "${units_dir}/${dev_set}/.done" "stage 5"
      set_train_launcher
      # shellcheck disable=SC2086
      ${_cmd} "${model_exp}/log/train.log" \
        ${_train} --config "${model_config}" ${_set_opts} --outdir "${model_exp}" \
          --feats-dir "${dump_dir}/norm" --data-dir "${data_dir}" --train-set "${train_set}" --valid-set "${dev_set}" \
          ${softvc_unit_scps}
      ;;
  esac
fi


if [ ${stage} -le 7 ] && [ ${stop_stage} -ge 7 ]; then
  case "${vocoder}" in
    griffinlim) log "Stage 7: ${vocoder} needs no training; nothing to do" ;;
    hifigan)
      # One vocoder per corpus and features, shared by every model: it learns log-mel -> audio of real speech.
      require_file "${dump_dir}/raw/logmel80/${train_set}/.done" "stage 2"
      require_file "${dump_dir}/raw/logmel80/${dev_set}/.done" "stage 2"
      _voc_set_opts=""
      for _override in ${vocoder_overrides}; do
        _voc_set_opts+=" --set ${_override}"
      done
      log "Stage 7: train ${vocoder} (${vocoder_config}${vocoder_overrides:+, ${vocoder_overrides}}) -> ${vocoder_dir}; see the progress in ${vocoder_dir}/log/train.log"
      set_train_launcher
      # shellcheck disable=SC2086
      ${_cmd} "${vocoder_dir}/log/train.log" \
        ${_train} --config "${vocoder_config}" ${_voc_set_opts} --outdir "${vocoder_dir}" \
          --feats-dir "${dump_dir}/raw" --data-dir "${data_dir}" --train-set "${train_set}" --valid-set "${dev_set}"
      ;;
  esac
fi


if [ ${stage} -le 8 ] && [ ${stop_stage} -ge 8 ]; then
  # One convert/scores/plots dir per vocoder (voiceswap/eval/layout.py), so both land in RESULTS.md.
  _out=${model_exp}/convert_${vocoder}
  log "Stage 8: convert ${data_dir}/${eval_set}/pairs with ${model} + ${vocoder} -> ${_out}"
  require_file "${model_exp}/spk2id" "${model_stage}"
  require_file "${data_dir}/${eval_set}/pairs" "stage 1"
  _ckpt=$(readlink -f "${model_exp}/checkpoints/best.pt")
  _convert_opts=""
  if [ "${model}" = softvc ]; then
    require_file "${units_dir}/${eval_set}/.done" "stage 5"
    _convert_opts+=" ${softvc_unit_scps}"
  fi
  if [ "${vocoder}" = hifigan ]; then
    require_file "${vocoder_dir}/spk2id" "stage 7"
    _convert_opts+=" --vocoder-dir ${vocoder_dir}"
    # The checkpoint convert.py loads (best, else newest): a retrained vocoder makes the outputs out of date.
    if [ -e "${vocoder_dir}/checkpoints/best.pt" ]; then
      _voc_ckpt=$(readlink -f "${vocoder_dir}/checkpoints/best.pt")
    else
      _voc_ckpt=$(find "${vocoder_dir}/checkpoints" -name 'step_*.pt' | sort -t_ -k2 -n | tail -n 1)
    fi
  fi
  _stamp_text="${_ckpt} ${vocoder} ${convert_reconstruct}${_voc_ckpt:+ ${_voc_ckpt}}"
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
    # shellcheck disable=SC2086
    ${decode_cmd} JOB=1:"${_nj}" "${_out}/log/convert.JOB.log" \
      convert.py --model-dir "${model_exp}" --dump-dir "${dump_dir}" --set "${eval_set}" \
        --utt2spk "${data_dir}/${eval_set}/utt2spk" --vocoder "${vocoder}" ${_convert_opts} --job JOB \
        "${_out}/split/items.JOB" "${_out}"
    for _n in $(seq "${_nj}"); do cat "${_out}/mel.${_n}.scp"; done | LC_ALL=C sort > "${_out}/mel.scp"
    for _n in $(seq "${_nj}"); do cat "${_out}/conversions.${_n}"; done | LC_ALL=C sort > "${_out}/conversions"
    awk -v dir="$(cd "${_out}" && pwd)/wav" '{print $1, dir "/" $1 ".wav"}' "${_out}/conversions" > "${_out}/wav.scp"
    stamp.py write "${_out}" --text "${_stamp_text}" "${_ckpt}" "${data_dir}/${eval_set}/pairs"
    log "Stage 8: $(grep -c ' conversion$' "${_out}/conversions") conversions and $(grep -c ' reconstruction$' "${_out}/conversions" || true) reconstructions in ${_out}/wav"
  fi
fi

if [ ${stage} -le 9 ] && [ ${stop_stage} -ge 9 ]; then
  _scores=${model_exp}/scores_${vocoder}
  log "Stage 9: score ${model_exp}/convert_${vocoder} -> ${_scores}"
  require_file "${model_exp}/convert_${vocoder}/.done" "stage 8"
  require_file "${dump_dir}/norm/logmel80/${train_set}/.done" "stage 3"
  # The judge of speaker accuracy, class and Frechet scores: the toolkit's own speaker classifier,
  # trained once per corpus on real train speech and cached (nothing is downloaded).
  _clf=${exp_dir}/speaker_classifier_${corpus}
  if [ ! -f "${_clf}/checkpoints/best.pt" ]; then
    _clf_set_opts=""
    for _override in ${classifier_overrides}; do
      _clf_set_opts+=" --set ${_override}"
    done
    log "Stage 9: train the speaker classifier of the metric suite -> ${_clf}; see the progress in ${_clf}/log/train.log"
    # shellcheck disable=SC2086
    ${cuda_cmd} "${_clf}/log/train.log" \
      train.py --config conf/speaker_classifier.yaml ${_clf_set_opts} --outdir "${_clf}" \
        --feats-dir "${dump_dir}/norm" --data-dir "${data_dir}" --train-set "${train_set}" --valid-set "${dev_set}"
  fi
  _clf_ckpt=$(readlink -f "${_clf}/checkpoints/best.pt")
  _score_opts="--exp-dir ${model_exp} --data-dir ${data_dir} --dump-dir ${dump_dir} --eval-set ${eval_set}"
  _score_opts+=" --train-set ${train_set} --corpus ${corpus} --vocoder ${vocoder} --classifier-dir ${_clf}"
  _score_opts+=" --max-pairs ${score_max_pairs} ${score_opts}"
  [ -z "${vocoder_dir}" ] || _score_opts+=" --vocoder-dir ${vocoder_dir}"
  if ! ${force} && stamp.py check "${_scores}" --text "${_score_opts} ${_clf_ckpt}" "${model_exp}/convert_${vocoder}/.done" "${_clf_ckpt}"; then
    log "Stage 9: ${_scores} is up to date; skipping"
  else
    rm -rf "${_scores}/measure"
    log "Stage 9: measuring in ${nj} jobs; see the progress in ${_scores}/log/measure.*.log"
    # shellcheck disable=SC2086
    ${decode_cmd} JOB=1:"${nj}" "${_scores}/log/measure.JOB.log" \
      score.py measure ${_score_opts} --job JOB --nj "${nj}"
    # shellcheck disable=SC2086
    ${decode_cmd} "${_scores}/log/summarize.log" score.py summarize ${_score_opts} --nj "${nj}"
    stamp.py write "${_scores}" --text "${_score_opts} ${_clf_ckpt}" "${model_exp}/convert_${vocoder}/.done" "${_clf_ckpt}"
    log "Stage 9: scores in ${_scores}/RESULTS.md and ${_scores}/metrics.json"
  fi
fi


if [ ${stage} -le 10 ] && [ ${stop_stage} -ge 10 ]; then
  _plots=${model_exp}/plots_${vocoder}
  [ -n "${results}" ] || results=$(dirname "${exp_dir}")/RESULTS.md
  log "Stage 10: plots -> ${_plots}, results of every experiment -> ${results}"
  require_file "${model_exp}/scores_${vocoder}/metrics.json" "stage 9"
  ${train_cmd} "${_plots}/log/plot.log" \
    plot.py --exp-dir "${model_exp}" --vocoder "${vocoder}" --data-dir "${data_dir}" --dump-dir "${dump_dir}" \
      --eval-set "${eval_set}" --train-set "${train_set}" "${_plots}"
  utils/show_results.sh "${exp_dir}" > "${results}.tmp"
  mv "${results}.tmp" "${results}"
  log "Stage 10: $(find "${_plots}" -name '*.png' | wc -l) plots in ${_plots}; table in ${results}"
fi

log "Successfully finished stages ${stage}-${stop_stage}"
