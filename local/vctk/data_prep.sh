#!/usr/bin/env bash
# Stage 1 of the vctk recipe: Kaldi data dirs <data-dir>/{train,dev,eval}/ (wav.scp with 16 kHz
# sox pipes, utt2spk, spk2utt, text, utt2dur, spk2gender) and <data-dir>/eval/pairs from the VCTK
# 0.92 corpus that stage 0 (local/vctk/get_corpus.sh) left in <db-dir>. See local/vctk/data_prep.py.
set -euo pipefail

mic=mic1
split=utterance
num_dev_sentences=10
num_eval_sentences=10
num_dev_speakers=4
num_eval_speakers=8
dev_speakers=""
eval_speakers=""
num_pair_utts=5
pair_targets=seen
num_pair_targets=4
num_target_ref_utts=3
num_target_dev_utts=2
keep_untranscribed=false
help_message="Usage: $0 [options] <db-dir> <data-dir>
Kaldi data prep (stage 1) for VCTK 0.92 in <db-dir>.
e.g.: $0 --split speaker db/vctk data
Options:
  --mic <mic1|mic2>            # microphone (default: $mic)
  --split <utterance|speaker>  # utterance: every speaker everywhere, sentence-disjoint;
                               # speaker: speaker-disjoint (default: $split)
  --num-dev-sentences <n>      # utterance split: dev sentences (default: $num_dev_sentences)
  --num-eval-sentences <n>     # utterance split: eval sentences, the most-read ones (default: $num_eval_sentences)
  --num-dev-speakers <n>       # speaker split: dev speakers (default: $num_dev_speakers)
  --num-eval-speakers <n>      # speaker split: eval speakers; utterance split: speakers in eval/pairs (default: $num_eval_speakers)
  --dev-speakers \"<ids>\"       # explicit dev speakers (speaker split)
  --eval-speakers \"<ids>\"      # explicit eval / pair speakers
  --num-pair-utts <n>          # source utterances per speaker in eval/pairs, 0 = all (default: $num_pair_utts)
  --pair-targets <seen|eval>   # speaker split: seen = train speakers, a held-out slice of each in eval;
                               # eval = the other eval speakers, zero-shot (default: $pair_targets)
  --num-pair-targets <n>       # speaker split: seen targets, gender-balanced (default: $num_pair_targets)
  --num-target-ref-utts <n>    # speaker split: utterances of each seen target held out into eval (default: $num_target_ref_utts)
  --num-target-dev-utts <n>    # utterances of each seen target held out into dev, for validation (default: $num_target_dev_utts)
  --keep-untranscribed <bool>  # keep utterances without text (p315), with empty text (default: $keep_untranscribed)"

. utils/parse_options.sh

if [ $# -ne 2 ]; then
  echo "$help_message" >&2
  exit 1
fi
db=$1
data=$2

log() { echo "$(date '+%Y-%m-%dT%H:%M:%S') (vctk/data_prep.sh) $*" >&2; }

[ -f "$db/.complete" ] || { echo "$0: $db/.complete is missing: run stage 0 (local/vctk/get_corpus.sh $db)" >&2; exit 1; }
log "preparing $data/{train,dev,eval} from $db ($mic, $split split)"
python3 local/vctk/data_prep.py --mic "$mic" --split "$split" \
  --num-dev-sentences "$num_dev_sentences" --num-eval-sentences "$num_eval_sentences" \
  --num-dev-speakers "$num_dev_speakers" --num-eval-speakers "$num_eval_speakers" \
  --dev-speakers "$dev_speakers" --eval-speakers "$eval_speakers" \
  --num-pair-utts "$num_pair_utts" --pair-targets "$pair_targets" --num-pair-targets "$num_pair_targets" \
  --num-target-ref-utts "$num_target_ref_utts" \
  --num-target-dev-utts "$num_target_dev_utts" --keep-untranscribed "$keep_untranscribed" "$db" "$data"
