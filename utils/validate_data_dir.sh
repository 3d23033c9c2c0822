#!/usr/bin/env bash
# Usage: utils/validate_data_dir.sh [--no-audio] [--sample-rate 16000] <data-dir>
# Kaldi's checks (sorted unique keys, utt2spk/spk2utt agreement, same utterances everywhere) and
# the audio itself (readable, mono, non-empty, at the expected rate).
set -euo pipefail
exec python3 -m voiceswap.bin.validate_data_dir "$@"
