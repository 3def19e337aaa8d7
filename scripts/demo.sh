#!/usr/bin/env bash
# The main job, offline: installs opensearch-cir, then runs `cir demo` (embedded engine, default model).
# Extra arguments go to `cir demo`, e.g. `scripts/demo.sh --serve`.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/bootstrap.sh"
exec cir demo "$@"
