#!/usr/bin/env bash
# Installs the real clients tollgate's tests drive: the official `openai` Python SDK (in a venv)
# and the Codex CLI (from npm), at pinned versions, under target/clients/. Idempotent and safe to
# run from several test processes at once (flock). Needs python3 with venv, and npm.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
dir="${TOLLGATE_CLIENTS_DIR:-$root/target/clients}"
openai_version="3.57.0"
codex_version="0.169.0"
mkdir -p "$dir"
exec 9>"$dir/.lock"
flock 9

if ! "$dir/venv/bin/python" -c "import openai, sys; sys.exit(openai.__version__ != '$openai_version')" 2>/dev/null; then
  echo "tollgate tests: installing openai==$openai_version into $dir/venv" >&2
  python3 -m venv "$dir/venv"
  "$dir/venv/bin/pip" install --quiet --disable-pip-version-check "openai==$openai_version"
fi

if [ "$("$dir/npm/node_modules/.bin/codex" --version 2>/dev/null || true)" != "codex-cli $codex_version" ]; then
  echo "tollgate tests: installing @openai/codex@$codex_version into $dir/npm" >&2
  mkdir -p "$dir/npm"
  npm install --silent --no-audit --no-fund --prefix "$dir/npm" "@openai/codex@$codex_version" >&2
fi
echo "$dir"
