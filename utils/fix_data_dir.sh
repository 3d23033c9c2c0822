#!/usr/bin/env bash
# Usage: utils/fix_data_dir.sh <data-dir>
# Keeps only utterances present in every file, sorts every file, rebuilds spk2utt (backup in .backup/).
set -euo pipefail
exec python3 -m voiceswap.bin.fix_data_dir "$@"
