#!/usr/bin/env bash
# Runs the test suite; installs what it needs first (utils/setup.sh is idempotent: seconds when done).
# Extra arguments go to pytest, e.g. ./test.sh -k features -x
set -euo pipefail
cd "$(dirname "$0")"
utils/setup.sh
. ./path.sh
exec python -m pytest "$@"
