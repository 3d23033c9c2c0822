#!/usr/bin/env bash
# Stage 0 of the synth recipe: make the offline multi-speaker corpus with the
# Debian speech engines (flite, festival, espeak-ng) and WordNet's example
# sentences: every speaker says every sentence (parallel data), and every
# utterance comes with the engine's own phone alignment.
#
#   <db-dir>/sentences.txt            s0001 TEXT ...   (ids sorted)
#   <db-dir>/wav/<spk>/<spk>-<id>.wav 16 kHz mono 16-bit PCM
#   <db-dir>/align/<spk>/<spk>-<id>.lab  "start end phone" (seconds, CMU phones + pau)
#   <db-dir>/LICENSE.wordnet          the licence of the sentences' source
#   <db-dir>/log/synth.<job>.log      one log per synthesis job
#   <db-dir>/.complete                the parameters of a finished corpus
#
# A rerun with the same parameters returns at once; with other parameters it
# regenerates, reusing utterances that cannot have changed (same sentences and
# engine versions), and resumes an interrupted run where it stopped.
set -euo pipefail

nj=2
cmd=utils/run.pl
num_sentences=100
seed=777
speakers="slt rms awb kal ked esf2 esm7 sltw"
help_message="Usage: $0 [options] <db-dir>
Synthesises the offline 'synth' corpus (stage 0) into <db-dir>.
e.g.: $0 --nj 2 db/synth
Options:
  --nj <n>                # parallel synthesis jobs (default: $nj)
  --cmd <dispatcher>      # job dispatcher, run.pl-compatible (default: $cmd)
  --num-sentences <n>     # sentences drawn from WordNet's examples (default: $num_sentences)
  --seed <n>              # seed of the sentence draw (default: $seed)
  --speakers \"<ids>\"      # voices (ids in local/synth/voices.py) and/or presets: default (the 8 voices
                          # named as the default), many (24: those 8 + 16 speed warps) (default: $speakers)"

. utils/parse_options.sh

if [ $# -ne 1 ]; then
  echo "$help_message" >&2
  exit 1
fi
db=$1

log() { echo "$(date '+%Y-%m-%dT%H:%M:%S') (get_corpus.sh) $*" >&2; }
die() { echo "$0: $*" >&2; exit 1; }

[[ $nj =~ ^[1-9][0-9]*$ ]] || die "--nj must be a positive integer, got '$nj'"
[[ $num_sentences =~ ^[1-9][0-9]*$ ]] || die "--num-sentences must be a positive integer, got '$num_sentences'"
[[ $seed =~ ^[0-9]+$ ]] || die "--seed must be a non-negative integer, got '$seed'"
# The ids, one space between (commas accepted too), presets such as `many`
# expanded, so the stamps below list real ids; fails with one line on an
# unknown or repeated speaker.
speakers=$(python3 local/synth/voices.py --speakers "$speakers" --list)

# Everything the audio depends on. voices.py also fails, with one line, on an
# unknown speaker or a missing engine.
engine_versions=$(python3 local/synth/voices.py --speakers "$speakers")
params="corpus_format 1
num_sentences $num_sentences
seed $seed
speakers $speakers
$engine_versions"

if [ -f "$db/.complete" ]; then
  if [ "$(cat "$db/.complete")" = "$params" ]; then
    log "corpus in $db is complete ($num_sentences sentences x speakers $speakers, seed $seed); nothing to do"
    exit 0
  fi
  log "corpus in $db was made with other parameters; regenerating. Was:"
  grep -v -x -F -f <(echo "$params") "$db/.complete" | sed 's/^/    /' >&2 || true
  rm -f "$db/.complete"
fi
mkdir -p "$db/log"

# (a) sentences
python3 local/synth/select_sentences.py --num-sentences "$num_sentences" --seed "$seed" \
  --output "$db/sentences.txt.new" --licence-output "$db/LICENSE.wordnet" --verbose 0
# Old audio is reusable only if it was made from the same sentences by the same
# versions of the engines still in use (the speaker list may differ); otherwise
# start from scratch.
reusable=true
cmp -s "$db/sentences.txt.new" "$db/sentences.txt" 2>/dev/null || reusable=false
if [ -f "$db/.params" ]; then
  changed=$(grep -v -x -F -f "$db/.params" <<<"$params" | grep -v '^speakers ' || true)
  [ -z "$changed" ] || reusable=false
else
  reusable=false
fi
if ! $reusable && { [ -d "$db/wav" ] || [ -d "$db/align" ]; }; then
  log "sentences or engine versions changed: removing the old audio in $db/wav and $db/align"
  rm -rf "$db/wav" "$db/align"
fi
for dir in "$db"/wav/* "$db"/align/*; do  # speakers no longer asked for
  [ -d "$dir" ] || continue
  [[ " $speakers " == *" $(basename "$dir") "* ]] || rm -rf "$dir"
done
mv "$db/sentences.txt.new" "$db/sentences.txt"
echo "$params" > "$db/.params"
log "(a) selected $num_sentences WordNet sentences (seed $seed) -> $db/sentences.txt"

# (b) synthesis
num_speakers=$(wc -w <<<"$speakers")
log "(b) synthesising $num_speakers speakers x $num_sentences sentences in $nj jobs (logs: $db/log/synth.*.log)"
start=$(date +%s)
$cmd JOB=1:"$nj" "$db/log/synth.JOB.log" \
  python3 local/synth/synthesize.py --db-dir "$db" --speakers "${speakers// /,}" --job JOB --num-jobs "$nj" ||
  die "synthesis failed: see the error at the end of $db/log/synth.*.log"
log "(b) synthesis took $(($(date +%s) - start)) s"

# (c) verification
expected=0
missing=0
first_missing=
while read -r sentence_id _; do
  for spk in $speakers; do
    expected=$((expected + 1))
    for file in "$db/wav/$spk/$spk-$sentence_id.wav" "$db/align/$spk/$spk-$sentence_id.lab"; do
      if [ ! -s "$file" ]; then
        missing=$((missing + 1))
        first_missing=${first_missing:-$file}
      fi
    done
  done
done < "$db/sentences.txt"
[ "$missing" -eq 0 ] ||
  die "$missing files of $expected utterances are missing (first: $first_missing): see $db/log/synth.*.log and rerun"
echo "$params" > "$db/.complete.tmp"
mv "$db/.complete.tmp" "$db/.complete"
log "(c) verified $expected utterances (wav + lab); corpus in $db is complete"
