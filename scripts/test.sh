#!/usr/bin/env bash
# Installs opensearch-cir with its test extras and runs the whole test suite.
# The browser test needs Debian's chromium: installed here when running as root with apt-get available
# (CI does), skipped otherwise. Extra arguments go to pytest.
set -euo pipefail
EXTRAS="cpu,export,train,test"
. "$(dirname "${BASH_SOURCE[0]}")/bootstrap.sh"
if ! command -v chromium >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "==> installing Debian chromium for the browser test"
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
    || echo "chromium could not be installed: the browser test will be skipped"
fi
cd "$ROOT"
exec python -m pytest -q "$@"
