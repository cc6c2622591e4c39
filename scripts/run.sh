#!/usr/bin/env bash
# The main job: set up the environment if needed, then run the whole pipeline (dvc repro) on the
# built-in synthetic face set. Extra arguments go to `dvc repro` (e.g. a stage name, or -f).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
. scripts/env.sh
dvc repro "$@"
dvc metrics show
