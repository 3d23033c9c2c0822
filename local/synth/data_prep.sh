#!/usr/bin/env bash
# Stage 1 of the synth recipe: Kaldi data dirs <data-dir>/{train,dev,eval}/
# (wav.scp utt2spk spk2utt text utt2dur spk2gender phones.ctm) from the corpus
# that stage 0 (local/synth/get_corpus.sh) made, split by sentence so no dev or
# eval sentence is trained on, plus <data-dir>/eval/pairs (source_utt
# target_spk reference_utt) for the conversion eval. --heldout-speakers keeps
# speakers out of train and dev (eval only); through run.sh:
#   ./run.sh --data-prep-opts "--heldout-speakers kalw116,esf2w76 --heldout-pairs zero-shot"
set -euo pipefail

num_dev_sentences=10
num_eval_sentences=10
num_pair_sentences=5
heldout_speakers=
heldout_pairs=seen
help_message="Usage: $0 [options] <db-dir> <data-dir>
Kaldi data prep (stage 1) for the synth corpus in <db-dir>.
e.g.: $0 db/synth data
Options:
  --num-dev-sentences <n>    # sentences (x every speaker) in dev (default: $num_dev_sentences)
  --num-eval-sentences <n>   # sentences (x every speaker) in eval (default: $num_eval_sentences)
  --num-pair-sentences <n>   # eval sentences whose speaker pairs go in eval/pairs (default: $num_pair_sentences)
  --heldout-speakers \"<ids>\" # speakers (spaces or commas) kept out of train and dev, in eval only (default: none)
  --heldout-pairs <kind>     # pairs of held-out speakers: seen (held-out sources to seen targets) or
                             # zero-shot (also every source to the held-out targets) (default: $heldout_pairs)"

. utils/parse_options.sh

if [ $# -ne 2 ]; then
  echo "$help_message" >&2
  exit 1
fi
db=$1
data=$2

log() { echo "$(date '+%Y-%m-%dT%H:%M:%S') (data_prep.sh) $*" >&2; }

log "preparing $data/{train,dev,eval} from $db"
python3 local/synth/data_prep.py --num-dev-sentences "$num_dev_sentences" \
  --num-eval-sentences "$num_eval_sentences" --num-pair-sentences "$num_pair_sentences" \
  --heldout-speakers "$heldout_speakers" --heldout-pairs "$heldout_pairs" --verbose 0 "$db" "$data"
for split in train dev eval; do
  log "$data/$split: $(wc -l < "$data/$split/utt2spk") utterances, $(wc -l < "$data/$split/spk2utt") speakers"
done
log "$data/eval/pairs: $(wc -l < "$data/eval/pairs") conversion pairs"
