#!/usr/bin/env bash
# Stage 1 of the flickr8k recipe: Kaldi data dirs <data-dir>/{train,dev,eval}/ (wav.scp with
# 16 kHz sox pipes, utt2spk, spk2utt, utt2dur, and text when the caption texts are available)
# and <data-dir>/eval/pairs (no references: not parallel) for a one-to-one speaker pair
# (--speakers, default 4 and 7 as in the VAE-GAN seed) or the N busiest speakers
# (--num-speakers N, many-to-many), split 80/10/10 per speaker as the seed. See local/flickr8k/data_prep.py.
set -euo pipefail

speakers="4 7"
num_speakers=0
num_dev_utts=0
num_eval_utts=0
dev_percent=10
eval_percent=10
num_pair_utts=0
captions=""
help_message="Usage: $0 [options] <db-dir> <data-dir>
Kaldi data prep (stage 1) for the Flickr 8k Audio Caption Corpus in <db-dir>.
e.g.: $0 --num-speakers 10 db/flickr8k data
Options:
  --speakers \"<n> <n>\"     # speaker numbers of wav2spk.txt (default: $speakers)
  --num-speakers <n>       # if > 0: the n speakers with most utterances instead (default: $num_speakers)
  --dev-percent <p>        # per cent of each speaker's utterances for dev (default: $dev_percent)
  --eval-percent <p>       # per cent of each speaker's utterances for eval (default: $eval_percent; 80/10/10 as the VAE-GAN seed)
  --num-dev-utts <n>       # if > 0: this many dev utterances per speaker instead (default: $num_dev_utts)
  --num-eval-utts <n>      # if > 0: this many eval utterances per speaker instead (default: $num_eval_utts)
  --num-pair-utts <n>      # source utterances per speaker in eval/pairs, 0 = all (default: $num_pair_utts)
  --captions <file>        # Flickr8k.token.txt (default: looked for in <db-dir>)"

. utils/parse_options.sh

if [ $# -ne 2 ]; then
  echo "$help_message" >&2
  exit 1
fi
db=$1
data=$2

log() { echo "$(date '+%Y-%m-%dT%H:%M:%S') (flickr8k/data_prep.sh) $*" >&2; }

[ -f "$db/.complete" ] || { echo "$0: $db/.complete is missing: run stage 0 (local/flickr8k/get_corpus.sh $db)" >&2; exit 1; }
log "preparing $data/{train,dev,eval} from $db"
python3 local/flickr8k/data_prep.py --speakers "$speakers" --num-speakers "$num_speakers" \
  --num-dev-utts "$num_dev_utts" --num-eval-utts "$num_eval_utts" --dev-percent "$dev_percent" \
  --eval-percent "$eval_percent" --num-pair-utts "$num_pair_utts" \
  --captions "$captions" "$db" "$data"
