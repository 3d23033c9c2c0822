#!/usr/bin/env bash
# Lint: ruff on the Python code (rules in pyproject.toml [tool.ruff]) and shellcheck on the recipe's
# shell scripts. CI runs it before the tests (.ci/run); utils/setup.sh installs both.
# Usage: utils/lint.sh
set -euo pipefail
cd "$(dirname "$0")/.."
. ./path.sh

status=0
ruff check voiceswap tests bench local utils || status=1
shell_scripts=$(ls run.sh path.sh cmd.sh test.sh .ci/run utils/*.sh local/*/*.sh)
# shellcheck disable=SC2086
shellcheck -x ${shell_scripts} || status=1
if [ "${status}" -ne 0 ]; then
  echo "$0: lint failed: fix what ruff and shellcheck report above" >&2
fi
exit "${status}"
