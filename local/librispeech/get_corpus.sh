#!/usr/bin/env bash
# Stage 0 of the librispeech recipe: download, verify and extract the chosen LibriSpeech subsets
# (OpenSLR 12; CC BY 4.0) into <db-dir>, or only check them when <db-dir> already holds them.
#
#   <download-dir>/<subset>.tar.gz               one archive per subset, resumable via a .part file
#   <db-dir>/LibriSpeech/<subset>/<spk>/<chapter>/*.flac, *.trans.txt
#   <db-dir>/LibriSpeech/SPEAKERS.TXT ...
#   <db-dir>/.complete                           the subsets, written once all are verified
#
# Archives are checked against OpenSLR's published MD5 (local/librispeech/md5sum.txt) and the
# SHA-256 that torchaudio pins (local/librispeech/sha256sum.txt). A rerun with the same subsets
# returns at once; adding a subset fetches only that one. The generic work (HTTP Range resume,
# checksums, safe extraction) is local/download.py's.
set -euo pipefail

# shellcheck disable=SC2034  # nj and cmd: accepted for run.sh's interface (parse_options.sh)
nj=2                    # accepted for run.sh's interface; downloads run one at a time
# shellcheck disable=SC2034
cmd=run.pl              # idem
subsets="train-clean-100 dev-clean test-clean"
url_base=https://www.openslr.org/resources/12
download_dir=downloads
checksum_file=""        # extra 'HEX  NAME' checksum file; overrides the built-in sums
remove_archive=false    # delete each archive once extracted
retries=5               # resume attempts after a dropped connection
help_message="Usage: $0 [options] <db-dir>
Downloads LibriSpeech subsets (stage 0) into <db-dir>/LibriSpeech; subsets already there
(e.g. a corpus you extracted yourself, given with run.sh --db-dir) are only checked.
e.g.: $0 --subsets \"train-clean-360 dev-clean test-clean\" db/librispeech
Options:
  --subsets \"<names>\"     # train-clean-100 train-clean-360 train-other-500 dev-clean dev-other
                          # test-clean test-other (default: $subsets)
  --url-base <url>        # where <subset>.tar.gz are (mirror, tests) (default: $url_base)
  --download-dir <dir>    # where the archives go (default: $download_dir)
  --checksum-file <file>  # 'HEX  NAME' lines (md5sum/sha256sum format) overriding the built-in sums
  --remove-archive <bool> # delete each archive after extraction (default: $remove_archive)
  --retries <n>           # resume attempts after an interruption (default: $retries)
  --nj, --cmd             # accepted for run.sh; unused"

. utils/parse_options.sh

if [ $# -ne 1 ]; then
  echo "$help_message" >&2
  exit 1
fi
db=$1

log() { echo "$(date '+%Y-%m-%dT%H:%M:%S') (librispeech/get_corpus.sh) $*" >&2; }
die() { echo "$0: $*" >&2; exit 1; }

subsets=${subsets//,/ }
[ -n "$subsets" ] || die "--subsets is empty"
for subset in $subsets; do
  [[ $subset =~ ^(train|dev|test)-[a-z0-9-]+$ ]] ||
    die "--subsets: '$subset' is not a LibriSpeech subset name (e.g. train-clean-100 dev-clean test-clean)"
done
params="corpus librispeech
subsets $subsets"
if [ -f "$db/.complete" ] && [ "$(cat "$db/.complete")" = "$params" ]; then
  log "LibriSpeech ($subsets) in $db is complete; nothing to do"
  exit 0
fi
[ -z "$checksum_file" ] || [ -f "$checksum_file" ] || die "--checksum-file $checksum_file does not exist"

for subset in $subsets; do
  if python3 local/librispeech/data_prep.py --check-layout --subsets "$subset" --verbose 0 "$db" 2>/dev/null; then
    log "$subset is already in $db; not downloading"
    continue
  fi
  opts=(--download-dir "$download_dir" --extract-to "$db" --retries "$retries"
        --checksum-file local/librispeech/md5sum.txt --checksum-file local/librispeech/sha256sum.txt)
  [ -z "$checksum_file" ] || opts+=(--checksum-file "$checksum_file")
  ! $remove_archive || opts+=(--remove-archive)
  log "getting ${url_base%/}/$subset.tar.gz into $download_dir, extracting into $db"
  python3 local/download.py get "${opts[@]}" "${url_base%/}/$subset.tar.gz" || die "getting $subset failed (see above)"
done

python3 local/librispeech/data_prep.py --check-layout --subsets "$subsets" "$db" ||
  die "$db does not hold the LibriSpeech subsets $subsets (see above)"
echo "$params" > "$db/.complete.tmp"
mv "$db/.complete.tmp" "$db/.complete"
log "LibriSpeech ($subsets) in $db is complete"
