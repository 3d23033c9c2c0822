#!/usr/bin/env bash
# Stage 0 of the vctk recipe: download, verify and extract VCTK 0.92 (CSTR, University of
# Edinburgh; CC BY 4.0) into <db-dir>, or only check it when <db-dir> already holds it.
#
#   <download-dir>/VCTK-Corpus-0.92.zip          the archive (~11 GB), resumable via a .part file
#   <db-dir>/wav48_silence_trimmed/<spk>/*.flac   48 kHz flac, mic1 + mic2
#   <db-dir>/txt/<spk>/*.txt  <db-dir>/speaker-info.txt
#   <db-dir>/.complete                            written once the layout is verified
#
# A rerun returns at once once <db-dir>/.complete exists. The generic work (HTTP Range resume,
# checksums, safe extraction) is local/download.py's.
set -euo pipefail

# shellcheck disable=SC2034  # nj and cmd: accepted for run.sh's interface (parse_options.sh)
nj=2                    # accepted for run.sh's interface; the download is one stream
# shellcheck disable=SC2034
cmd=run.pl              # idem
url_base=https://datashare.ed.ac.uk/bitstream/handle/10283/3443
download_dir=downloads
checksum_file=""        # extra 'HEX  NAME' checksum file; overrides local/vctk/sha256sum.txt
remove_archive=false    # delete the zip once extracted
retries=5               # resume attempts after a dropped connection
mic=mic1                # the microphone whose audio must be present
help_message="Usage: $0 [options] <db-dir>
Downloads VCTK 0.92 (stage 0) into <db-dir>; if <db-dir> already holds an extracted VCTK 0.92,
only checks its layout.
e.g.: $0 db/vctk
Options:
  --url-base <url>        # where VCTK-Corpus-0.92.zip is (mirror, tests) (default: $url_base)
  --download-dir <dir>    # where the archive goes (default: $download_dir)
  --checksum-file <file>  # 'HEX  NAME' lines (md5sum/sha256sum format) overriding the built-in sums
  --remove-archive <bool> # delete the archive after extraction (default: $remove_archive)
  --retries <n>           # resume attempts after an interruption (default: $retries)
  --mic <mic1|mic2>       # microphone whose audio must be there (default: $mic)
  --nj, --cmd             # accepted for run.sh; unused"

. utils/parse_options.sh

if [ $# -ne 1 ]; then
  echo "$help_message" >&2
  exit 1
fi
db=$1

log() { echo "$(date '+%Y-%m-%dT%H:%M:%S') (vctk/get_corpus.sh) $*" >&2; }
die() { echo "$0: $*" >&2; exit 1; }

params="corpus vctk
release 0.92"
if [ -f "$db/.complete" ] && [ "$(cat "$db/.complete")" = "$params" ]; then
  log "VCTK 0.92 in $db is complete; nothing to do"
  exit 0
fi

if python3 local/vctk/data_prep.py --check-layout --mic "$mic" --verbose 0 "$db" 2>/dev/null; then
  log "$db already holds VCTK 0.92; not downloading"
else
  [ -z "$checksum_file" ] || [ -f "$checksum_file" ] || die "--checksum-file $checksum_file does not exist"
  opts=(--download-dir "$download_dir" --extract-to "$db" --retries "$retries"
        --checksum-file local/vctk/sha256sum.txt)
  [ -z "$checksum_file" ] || opts+=(--checksum-file "$checksum_file")
  ! $remove_archive || opts+=(--remove-archive)
  log "downloading ${url_base%/}/VCTK-Corpus-0.92.zip (~11 GB) into $download_dir, extracting into $db"
  python3 local/download.py get "${opts[@]}" "${url_base%/}/VCTK-Corpus-0.92.zip" || die "getting VCTK failed (see above)"
fi

python3 local/vctk/data_prep.py --check-layout --mic "$mic" "$db" ||
  die "$db does not hold a usable VCTK 0.92 corpus (see above)"
echo "$params" > "$db/.complete.tmp"
mv "$db/.complete.tmp" "$db/.complete"
log "VCTK 0.92 in $db is complete"
