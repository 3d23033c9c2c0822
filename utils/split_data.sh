#!/usr/bin/env bash
# Splits a data directory into N parts for N parallel jobs, writing
# <data-dir>/split<N>/{1..N}/, each a data directory of its own.
set -euo pipefail
export LC_ALL=C

me=$(basename "$0")
utils=$(dirname "$0")
usage="Usage: $me [--per-utt] <data-dir> <num-splits>
Writes <data-dir>/split<num-splits>/{1..num-splits}/ with wav.scp, utt2spk,
spk2utt, and (where <data-dir> has them) text, utt2dur, utt2num_frames,
feats.scp, segments, phones.ctm, spk2gender, cmvn.scp.
Parts hold whole speakers unless --per-utt is given; with fewer speakers than
parts the split falls back to per-utterance, with a warning.
Nothing is redone while the split is newer than the files of <data-dir>.
e.g.: $me data/train 4"

die() {
  echo "$me: $*" >&2
  exit 1
}

per_utt=false
while [ $# -gt 0 ]; do
  case "$1" in
    --per-utt) per_utt=true; shift ;;
    --help|-h) echo "$usage"; exit 0 ;;
    --) shift; break ;;
    -*) echo "$me: unknown option '$1'" >&2; echo "$usage" >&2; exit 1 ;;
    *) break ;;
  esac
done
if [ $# -ne 2 ]; then
  echo "$me: expected <data-dir> <num-splits>, got $# argument(s)" >&2
  echo "$usage" >&2
  exit 1
fi
data=${1%/}
nj=$2

[[ $nj =~ ^[1-9][0-9]*$ ]] || die "number of splits must be a positive integer, got '$nj'"
[ -d "$data" ] || die "data directory '$data' does not exist"
for f in utt2spk wav.scp; do
  [ -s "$data/$f" ] || die "'$data/$f' is missing or empty: every data directory needs wav.scp and utt2spk"
done

utt_files="text utt2dur utt2num_frames feats.scp phones.ctm"
spk_files="spk2gender cmvn.scp"

num_utts=$(wc -l < "$data/utt2spk")
if [ "$num_utts" -lt "$nj" ]; then
  die "cannot split $num_utts utterances of $data into $nj parts: use fewer jobs (--nj)"
fi
# Utterances missing from the indexing file would silently vanish from every part.
if [ -f "$data/segments" ]; then
  index=segments
else
  index=wav.scp
fi
missing=$("$utils/filter_scp.pl" --exclude "$data/$index" "$data/utt2spk" | awk '{print $1}')
if [ -n "$missing" ]; then
  die "$(echo "$missing" | wc -l) utterance(s) of $data/utt2spk have no line in $data/$index" \
      "(first: '$(echo "$missing" | head -n 1)'); fix it with utils/fix_data_dir.sh $data"
fi

mode=per-spk
if ! $per_utt; then
  num_spks=$(awk '{print $2}' "$data/utt2spk" | sort -u | wc -l)
  if [ "$num_spks" -lt "$nj" ]; then
    echo "$me: WARNING: $data has $num_spks speakers, fewer than $nj splits: splitting per utterance instead" >&2
    mode=per-utt
  fi
else
  mode=per-utt
fi

present="utt2spk wav.scp"
for f in spk2utt segments $utt_files $spk_files; do
  [ -f "$data/$f" ] && present="$present $f"
done

split_dir=$data/split$nj
stamp=$split_dir/.split_info
stamp_text="mode=$mode files=$present"

# Up to date when made the same way from the same files, none newer than the split.
up_to_date() {
  [ -f "$stamp" ] || return 1
  [ "$(cat "$stamp")" = "$stamp_text" ] || return 1
  local f
  for f in $present; do
    [ "$data/$f" -nt "$stamp" ] && return 1
  done
  return 0
}

# Two jobs splitting the same directory at once must not interleave.
# (The lock is on the data directory itself, so no lock file is left behind.)
if command -v flock > /dev/null; then
  exec 9< "$data"
  flock 9
fi

if up_to_date; then
  echo "$me: $split_dir is up to date ($mode); not splitting again" >&2
  exit 0
fi

# Build beside the final place and swap at the end, so an interrupted run never
# leaves a half-written split that a later run would take as up to date.
tmp=$data/.split$nj.tmp.$$
rm -rf "$tmp"
trap 'rm -rf "$tmp"' EXIT

parts=()
for n in $(seq "$nj"); do
  mkdir -p "$tmp/$n"
  parts+=("$tmp/$n/utt2spk")
done
if [ "$mode" = per-spk ]; then
  "$utils/split_scp.pl" --utt2spk "$data/utt2spk" "$data/utt2spk" "${parts[@]}"
else
  "$utils/split_scp.pl" "$data/utt2spk" "${parts[@]}"
fi

for n in $(seq "$nj"); do
  d=$tmp/$n
  "$utils/utt2spk_to_spk2utt.pl" "$d/utt2spk" > "$d/spk2utt"
  for f in $utt_files; do
    if [ -f "$data/$f" ]; then
      "$utils/filter_scp.pl" "$d/utt2spk" "$data/$f" > "$d/$f"
    fi
  done
  for f in $spk_files; do
    if [ -f "$data/$f" ]; then
      "$utils/filter_scp.pl" "$d/spk2utt" "$data/$f" > "$d/$f"
    fi
  done
  if [ -f "$data/segments" ]; then
    # wav.scp is then indexed by recording: keep the recordings this part's
    # segments come from.
    "$utils/filter_scp.pl" "$d/utt2spk" "$data/segments" > "$d/segments"
    awk '{print $2}' "$d/segments" | sort -u > "$d/.recordings"
    "$utils/filter_scp.pl" "$d/.recordings" "$data/wav.scp" > "$d/wav.scp"
    rm "$d/.recordings"
  else
    "$utils/filter_scp.pl" "$d/utt2spk" "$data/wav.scp" > "$d/wav.scp"
  fi
done

echo "$stamp_text" > "$tmp/.split_info"
rm -rf "$split_dir"
mv "$tmp" "$split_dir"
trap - EXIT
echo "$me: split $data into $nj parts ($mode) in $split_dir" >&2
