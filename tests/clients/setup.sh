#!/usr/bin/env bash
# Installs the real clients tollgate's tests drive: the official `openai` Python SDK (in a venv)
# and the Codex CLI (from npm), at pinned versions, under target/clients/. Idempotent and safe to
# run from several test processes at once (flock). Needs python3 with venv, and npm.
# The same venv carries the deploy kit's checkers (tests/deploy.rs): PyYAML, and
# kubernetes-validate (Kubernetes JSON schemas bundled, so it validates offline); and the
# official OTLP protobuf definitions plus grpcio for tests/otlp/receiver.py (telemetry tests);
# and schemathesis, which fuzzes the admin API against its OpenAPI document (tests/openapi.rs).
# The console's browser tests (tests/console*.rs) add Debian's chromium and chromium-driver (apt,
# as root or through sudo), and axe-core and oidc-provider from npm under target/clients/web.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
dir="${TOLLGATE_CLIENTS_DIR:-$root/target/clients}"
openai_version="3.57.0"
pyyaml_version="6.0.3"
kubernetes_validate_version="1.37.0"
otel_proto_version="1.45.2"
protobuf_version="7.36.2"
grpcio_version="1.85.3"
schemathesis_version="4.32.5"
codex_version="0.169.0"
# The console's browser tests: axe-core (run inside each page) and a real OpenID provider.
axe_version="4.11.0"
oidc_provider_version="8.8.1" # 9.x supports only Node 22+; the test machines run Node 20
mkdir -p "$dir"
exec 9>"$dir/.lock"
flock 9

python_packages=("openai==$openai_version" "PyYAML==$pyyaml_version" "kubernetes-validate==$kubernetes_validate_version"
  "opentelemetry-proto==$otel_proto_version" "protobuf==$protobuf_version" "grpcio==$grpcio_version"
  "schemathesis==$schemathesis_version")
if ! "$dir/venv/bin/python" -c "
import sys
from importlib.metadata import version
sys.exit(any(version(name) != want for name, want in (a.split('==') for a in sys.argv[1:])))
" "${python_packages[@]}" 2>/dev/null; then
  echo "tollgate tests: installing ${python_packages[*]} into $dir/venv" >&2
  python3 -m venv "$dir/venv"
  "$dir/venv/bin/pip" install --quiet --disable-pip-version-check "${python_packages[@]}"
fi

if [ "$("$dir/npm/node_modules/.bin/codex" --version 2>/dev/null || true)" != "codex-cli $codex_version" ]; then
  echo "tollgate tests: installing @openai/codex@$codex_version into $dir/npm" >&2
  mkdir -p "$dir/npm"
  npm install --silent --no-audit --no-fund --prefix "$dir/npm" "@openai/codex@$codex_version" >&2
fi
web_packages=("axe-core@$axe_version" "oidc-provider@$oidc_provider_version")
if [ "$(node -e "const v=p=>require('$dir/web/node_modules/'+p+'/package.json').version;try{console.log(v('axe-core')+' '+v('oidc-provider'))}catch{}" 2>/dev/null)" != "$axe_version $oidc_provider_version" ]; then
  echo "tollgate tests: installing ${web_packages[*]} into $dir/web" >&2
  mkdir -p "$dir/web"
  npm install --silent --no-audit --no-fund --prefix "$dir/web" "${web_packages[@]}" >&2
fi

# Debian's Chromium and its WebDriver, for the console's browser tests.
if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then
  echo "tollgate tests: installing Debian's chromium and chromium-driver" >&2
  export DEBIAN_FRONTEND=noninteractive
  sudo_cmd=""
  [ "$(id -u)" = 0 ] || sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq >&2
  $sudo_cmd apt-get install -y -qq chromium chromium-driver >/dev/null
fi
echo "$dir"
