#!/usr/bin/env bash
# Extract features for one Kaldi data dir in nj parallel jobs (the model: Kaldi's make_mfcc.sh).
# Writes <feat-dir>/feats.scp (+ feats.JOB.ark), utt2num_frames and the config it used.
set -euo pipefail

# Begin configuration section.
nj=2
cmd=run.pl
feats_config=conf/feats/logmel80.yaml
force=false
# End configuration section.

echo "$0 $*" >&2

help_message="Usage: $0 [options] <data-dir> <feat-dir>
e.g.: $0 --nj 2 --feats-config conf/feats/logmel80.yaml data/train dump/raw/logmel80/train
Options:
  --nj <n>          # parallel jobs (default: ${nj}; capped at the number of utterances)
  --cmd <cmd>       # job dispatcher (default: ${cmd})
  --feats-config <yaml> # feature config (default: ${feats_config})
  --force <bool>    # recompute even if up to date (default: ${force})"

. utils/parse_options.sh

if [ $# -ne 2 ]; then
  echo "${help_message}" >&2
  exit 1
fi
data=$1
feat_dir=$2

for f in "${data}/wav.scp" "${feats_config}"; do
  if [ ! -f "${f}" ]; then
    echo "$0: ${f} not found; run stage 1 (data prep) first or fix --feats-config" >&2
    exit 1
  fi
done

if ! ${force} && stamp.py check "${feat_dir}" --wav-scp "${data}/wav.scp" "${data}/wav.scp" "${feats_config}"; then
  echo "$0: ${feat_dir} is up to date with ${data} and ${feats_config}; skipping (--force true to redo)" >&2
  exit 0
fi

num_utts=$(wc -l < "${data}/wav.scp")
if [ "${num_utts}" -lt "${nj}" ]; then
  echo "$0: ${data} has only ${num_utts} utterances: using --nj ${num_utts} instead of ${nj}" >&2
  nj=${num_utts}
fi

mkdir -p "${feat_dir}/log" "${feat_dir}/split${nj}"
rm -f "${feat_dir}/.done" "${feat_dir}"/feats.*.scp "${feat_dir}"/feats.*.ark "${feat_dir}"/utt2num_frames.*
split_wavs=""
for n in $(seq "${nj}"); do
  split_wavs+=" ${feat_dir}/split${nj}/wav.${n}.scp"
done
# shellcheck disable=SC2086
split_scp.pl "${data}/wav.scp" ${split_wavs}

if ! ${cmd} JOB=1:"${nj}" "${feat_dir}/log/compute_feats.JOB.log" \
    compute_feats.py --config "${feats_config}" \
      "${feat_dir}/split${nj}/wav.JOB.scp" "${feat_dir}/feats.JOB.ark" \
      "${feat_dir}/feats.JOB.scp" "${feat_dir}/utt2num_frames.JOB"; then
  echo "$0: feature extraction failed for ${data}: see ${feat_dir}/log/compute_feats.*.log" >&2
  exit 1
fi

# Join the per-job outputs; the per-job arks stay where the joined scp points.
for n in $(seq "${nj}"); do cat "${feat_dir}/feats.${n}.scp"; done \
  | LC_ALL=C sort > "${feat_dir}/feats.scp.tmp"
for n in $(seq "${nj}"); do cat "${feat_dir}/utt2num_frames.${n}"; done \
  | LC_ALL=C sort > "${feat_dir}/utt2num_frames.tmp"
mv "${feat_dir}/feats.scp.tmp" "${feat_dir}/feats.scp"
mv "${feat_dir}/utt2num_frames.tmp" "${feat_dir}/utt2num_frames"
cp "${feats_config}" "${feat_dir}/feats_config.yaml"

num_done=$(wc -l < "${feat_dir}/feats.scp")
if [ "${num_done}" -ne "${num_utts}" ]; then
  echo "$0: warning: features for ${num_done} of ${num_utts} utterances of ${data}; failures are in ${feat_dir}/log" >&2
fi
stamp.py write "${feat_dir}" --wav-scp "${data}/wav.scp" "${data}/wav.scp" "${feats_config}"
echo "$0: ${num_done} utterances -> ${feat_dir}/feats.scp" >&2
