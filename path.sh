# shellcheck shell=bash disable=SC2317  # sourced: "return || exit" is how a sourced file stops
# Sourced by run.sh and the step scripts: the project's venv, utils/ and the entry scripts on PATH.
VOICESWAP_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
export VOICESWAP_ROOT
if [ ! -f "${VOICESWAP_ROOT}/.venv/bin/activate" ]; then
  echo "path.sh: ${VOICESWAP_ROOT}/.venv is missing: run utils/setup.sh (run.sh does it by itself)" >&2
  return 1 2>/dev/null || exit 1
fi
# shellcheck disable=SC1091
. "${VOICESWAP_ROOT}/.venv/bin/activate"
export PATH="${VOICESWAP_ROOT}/utils:${VOICESWAP_ROOT}/voiceswap/bin:${PATH}"
export LC_ALL=C
export PYTHONUNBUFFERED=1
# Two cores are shared by nj jobs: one intra-op thread per job keeps them from oversubscribing.
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
