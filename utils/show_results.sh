#!/usr/bin/env bash
# Print a RESULTS.md comparing every scored experiment (<exp-dir>/*/scores_<vocoder>/metrics.json), one table
# per corpus, with the environment and the exact commands (as ESPnet's show_asr_result.sh).
#   utils/show_results.sh [--corpus synth] [exp] > RESULTS.md
set -euo pipefail
if [ "${1:-}" = "--help" ] || [ "${1:-}" = "-h" ]; then
  echo "Usage: $0 [--corpus <name>] [<exp-dir>=exp]   (prints markdown to stdout)"
  exit 0
fi
_root=$(cd "$(dirname "$0")/.." && pwd)
_python=${_root}/.venv/bin/python
[ -x "${_python}" ] || _python=python3
exec "${_python}" "${_root}/voiceswap/bin/show_results.py" --command "$0 $*" "$@"
