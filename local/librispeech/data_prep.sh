#!/usr/bin/env bash
# Stage 1 of the librispeech recipe: Kaldi data dirs <data-dir>/{train,dev,eval}/ (wav.scp with
# sox pipes, utt2spk, spk2utt, text, utt2dur, spk2gender) and <data-dir>/eval/pairs (no
# references: the corpus is not parallel) from the subsets stage 0 left in <db-dir>.
# train-* subsets -> train, dev-* -> dev, test-* -> eval. See local/librispeech/data_prep.py.
set -euo pipefail

subsets=""              # default: the subsets stage 0 fetched (<db-dir>/.complete)
speaker_unit=chapter
num_pair_speakers=8
num_pair_utts=5
pair_targets=seen
num_pair_targets=4
num_target_ref_utts=3
num_target_dev_utts=2
help_message="Usage: $0 [options] <db-dir> <data-dir>
Kaldi data prep (stage 1) for LibriSpeech in <db-dir>.
e.g.: $0 db/librispeech data
Options:
  --subsets \"<names>\"        # subsets to use (default: those stage 0 got)
  --speaker-unit <chapter|speaker>  # speaker id SPK-CHAPTER (as Kaldi's recipe) or SPK (default: $speaker_unit)
  --num-pair-speakers <n>    # eval speakers in eval/pairs, gender-balanced, 0 = all (default: $num_pair_speakers)
  --num-pair-utts <n>        # source utterances per pair speaker, 0 = all (default: $num_pair_utts)
  --pair-targets <seen|eval> # seen: train speakers, a held-out slice of each in eval; eval: zero-shot (default: $pair_targets)
  --num-pair-targets <n>     # seen targets (train speakers, gender-balanced) (default: $num_pair_targets)
  --num-target-ref-utts <n>  # utterances of each seen target held out of train into eval (default: $num_target_ref_utts)
  --num-target-dev-utts <n>  # utterances of each seen target held out into dev, for validation (default: $num_target_dev_utts)"

. utils/parse_options.sh

if [ $# -ne 2 ]; then
  echo "$help_message" >&2
  exit 1
fi
db=$1
data=$2

log() { echo "$(date '+%Y-%m-%dT%H:%M:%S') (librispeech/data_prep.sh) $*" >&2; }

[ -f "$db/.complete" ] || { echo "$0: $db/.complete is missing: run stage 0 (local/librispeech/get_corpus.sh $db)" >&2; exit 1; }
log "preparing $data/{train,dev,eval} from $db"
python3 local/librispeech/data_prep.py --subsets "$subsets" --speaker-unit "$speaker_unit" \
  --num-pair-speakers "$num_pair_speakers" --num-pair-utts "$num_pair_utts" --pair-targets "$pair_targets" \
  --num-pair-targets "$num_pair_targets" --num-target-ref-utts "$num_target_ref_utts" \
  --num-target-dev-utts "$num_target_dev_utts" "$db" "$data"
