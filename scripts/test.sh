#!/usr/bin/env bash
# The tests: set up the environment if needed, then run the fast CPU test suite.
# Extra arguments go to pytest (e.g. `-m slow` for the long tests).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
. scripts/env.sh
python -m pytest "$@"
