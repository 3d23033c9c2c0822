#!/usr/bin/env bash
# Creates the project's environment: Debian packages the offline corpus needs, .venv with the
# voiceswap package installed editable. Idempotent: a second run checks a stamp and exits in seconds.
#
# Usage: utils/setup.sh [--extras test,bench] [--force]
set -euo pipefail

extras="test"
force=false
while [ $# -gt 0 ]; do
  case "$1" in
    --extras) extras="$2"; shift 2 ;;
    --force) force=true; shift ;;
    -h|--help) sed -n '2,6p' "$0"; exit 0 ;;
    *) echo "$0: unknown option '$1' (see --help)" >&2; exit 1 ;;
  esac
done

root=$(cd "$(dirname "$0")/.." && pwd)
cd "${root}"
log() { echo "$(date '+%Y-%m-%dT%H:%M:%S') (setup.sh) $*" >&2; }

# Debian packages: speech engines and WordNet for the synth corpus; sox (+ flac) for speed warps
# and resampling the real corpora.
# Slurm + munge: the cluster backend and its tests (a throw-away cluster on 127.0.0.1).
# The shell linter (for utils/lint.sh, in CI): shellcheck. With the test extra: chromium, the browser the
# listening report's test opens (headless, driven by playwright from PyPI).
debian_packages="espeak-ng libespeak-ng1 flite festival festvox-kdlpc16k festlex-cmu festlex-poslex sox wordnet-base
  libsox-fmt-base slurm-wlm slurmctld slurmd slurm-client munge shellcheck"
case ",${extras}," in
  *,test,*) debian_packages+=" chromium" ;;
esac
missing=""
for pkg in ${debian_packages}; do
  status=$(dpkg-query -W -f='${Status}' "${pkg}" 2>/dev/null || true)
  [ "${status}" = "install ok installed" ] || missing+=" ${pkg}"
done
if [ -n "${missing}" ]; then
  if [ "$(id -u)" -eq 0 ] && command -v apt-get > /dev/null; then
    log "installing Debian packages:${missing}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # shellcheck disable=SC2086
    apt-get install -y -qq --no-install-recommends ${missing} > /dev/null
  else
    echo "$0: missing Debian packages:${missing}" >&2
    echo "$0: install them as root: apt-get install --no-install-recommends${missing}" >&2
    exit 1
  fi
fi

python=${PYTHON:-python3}
stamp_file=.venv/.voiceswap-setup
wanted_stamp="$(cat pyproject.toml "$0" | sha1sum | cut -d' ' -f1) extras=${extras}"
if ! ${force} && [ -f "${stamp_file}" ] && [ "$(cat "${stamp_file}")" = "${wanted_stamp}" ]; then
  exit 0
fi

if [ ! -x .venv/bin/python ]; then
  log "creating .venv with $(${python} --version 2>&1)"
  ${python} -m venv .venv
fi
log "installing voiceswap[${extras}] into .venv (first time: a few minutes, torch is large)"
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e ".[${extras}]"
echo "${wanted_stamp}" > "${stamp_file}.tmp" && mv "${stamp_file}.tmp" "${stamp_file}"
log "done: $(.venv/bin/python -c 'import torch, torchaudio; print("torch", torch.__version__, "torchaudio", torchaudio.__version__)')"
