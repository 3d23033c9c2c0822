#!/usr/bin/env bash
# Stage 0 of the flickr8k recipe: download, verify and extract the Flickr 8k Audio Caption Corpus
# (MIT CSAIL SLS; 40,000 spoken captions of the Flickr8k images, 183 speakers) into <db-dir>, or
# only check it when <db-dir> already holds it.
#
#   <download-dir>/flickr_audio.tar.gz          the archive (~4.2 GB), resumable via a .part file
#   <db-dir>/flickr_audio/wavs/*.wav, wav2spk.txt, wav2capt.txt
#   <db-dir>/.complete                          written once the layout is verified
#
# No checksum of flickr_audio.tar.gz is published by the distributor and none is built in: the
# download is verified only if you give --checksum-file. The caption texts (Flickr8k.token.txt)
# are not in this archive; see local/README.md. The generic work (HTTP Range resume, checksums,
# safe extraction) is local/download.py's.
set -euo pipefail

# shellcheck disable=SC2034  # nj and cmd: accepted for run.sh's interface (parse_options.sh)
nj=2                    # accepted for run.sh's interface; the download is one stream
# shellcheck disable=SC2034
cmd=run.pl              # idem
url_base=https://groups.csail.mit.edu/sls/downloads/flickraudio/downloads
download_dir=downloads
checksum_file=""        # 'HEX  NAME' checksum file for flickr_audio.tar.gz
remove_archive=false    # delete the archive once extracted
retries=5               # resume attempts after a dropped connection
help_message="Usage: $0 [options] <db-dir>
Downloads the Flickr 8k Audio Caption Corpus (stage 0) into <db-dir>; if <db-dir> already holds
flickr_audio/, only checks its layout.
e.g.: $0 db/flickr8k
Options:
  --url-base <url>        # where flickr_audio.tar.gz is (mirror, tests) (default: $url_base)
  --download-dir <dir>    # where the archive goes (default: $download_dir)
  --checksum-file <file>  # 'HEX  NAME' lines (md5sum/sha256sum format); none is built in
  --remove-archive <bool> # delete the archive after extraction (default: $remove_archive)
  --retries <n>           # resume attempts after an interruption (default: $retries)
  --nj, --cmd             # accepted for run.sh; unused"

. utils/parse_options.sh

if [ $# -ne 1 ]; then
  echo "$help_message" >&2
  exit 1
fi
db=$1

log() { echo "$(date '+%Y-%m-%dT%H:%M:%S') (flickr8k/get_corpus.sh) $*" >&2; }
die() { echo "$0: $*" >&2; exit 1; }

params="corpus flickr8k
archive flickr_audio.tar.gz"
if [ -f "$db/.complete" ] && [ "$(cat "$db/.complete")" = "$params" ]; then
  log "Flickr 8k Audio Caption Corpus in $db is complete; nothing to do"
  exit 0
fi

if python3 local/flickr8k/data_prep.py --check-layout --verbose 0 "$db" 2>/dev/null; then
  log "$db already holds flickr_audio/; not downloading"
else
  [ -z "$checksum_file" ] || [ -f "$checksum_file" ] || die "--checksum-file $checksum_file does not exist"
  opts=(--download-dir "$download_dir" --extract-to "$db" --retries "$retries")
  [ -z "$checksum_file" ] || opts+=(--checksum-file "$checksum_file")
  ! $remove_archive || opts+=(--remove-archive)
  log "downloading ${url_base%/}/flickr_audio.tar.gz (~4.2 GB) into $download_dir, extracting into $db"
  python3 local/download.py get "${opts[@]}" "${url_base%/}/flickr_audio.tar.gz" || die "getting Flickr8k audio failed (see above)"
fi

python3 local/flickr8k/data_prep.py --check-layout "$db" ||
  die "$db does not hold a usable Flickr 8k Audio Caption Corpus (see above)"
echo "$params" > "$db/.complete.tmp"
mv "$db/.complete.tmp" "$db/.complete"
log "Flickr 8k Audio Caption Corpus in $db is complete"
