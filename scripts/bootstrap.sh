#!/usr/bin/env bash
# Creates .venv (if needed) and installs opensearch-cir into it. Sourced by scripts/demo.sh and scripts/test.sh.
# EXTRAS: which extras to install (default "cpu"). torch is pinned to 2.13.0 in the extras that need it,
# which pip takes from the local CPU build instead of downloading a multi-GB CUDA build.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${CIR_VENV:-$ROOT/.venv}"
EXTRAS="${EXTRAS:-cpu}"
if [ ! -x "$VENV/bin/python" ]; then
  echo "==> creating virtual environment in $VENV"
  python3 -m venv "$VENV"
fi
# shellcheck disable=SC1091
. "$VENV/bin/activate"
stamp="$VENV/.cir-installed-$(echo "$EXTRAS" | tr ',' '-')"
if [ ! -f "$stamp" ] || [ "$ROOT/setup.cfg" -nt "$stamp" ]; then
  echo "==> installing opensearch-cir[$EXTRAS] (first run takes a few minutes)"
  python -m pip install -q --upgrade pip
  case ",$EXTRAS," in *,export,*|*,train,*|*,test,*) python -m pip install -q torch==2.13.0 ;; esac
  # OpenAI's BPE vocabulary for the export tests ships in open_clip_torch; --no-deps keeps its torchvision out.
  case ",$EXTRAS," in *,test,*) python -m pip install -q --no-deps open_clip_torch==3.3.0 ;; esac
  python -m pip install -q -e "$ROOT[$EXTRAS]"
  touch "$stamp"
fi
