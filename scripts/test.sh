#!/usr/bin/env bash
# Run every test: install what is missing, lint, native unit tests, build the worker, report the
# bundle size (wrangler deploy --dry-run), then the end-to-end suite through real wrangler dev
# against the fake providers, including the official SDKs.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export PATH="$PWD/node_modules/.bin:${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
export CI=true WRANGLER_SEND_METRICS=false CLOUDFLARE_CF_FETCH_ENABLED=false
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "format and lints"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --quiet -- -D warnings
cargo clippy -p switchyard --target wasm32-unknown-unknown --quiet -- -D warnings

step "native tests (core, fake provider, worker crate)"
cargo test --workspace --quiet

step "build the worker (release, wasm-opt) and the fake provider"
bash scripts/build.sh
cargo build --release --quiet -p fake-provider

step "bundle size (wrangler deploy --dry-run)"
rm -rf dist
SWITCHYARD_SKIP_BUILD=1 wrangler deploy --dry-run --outdir dist 2>&1 | grep -E "Total Upload|gzip" || true
raw=$(wc -c < build/index_bg.wasm); gz=$(gzip -9c build/index_bg.wasm | wc -c)
echo "worker wasm: $raw bytes raw, $gz bytes gzip"

step "end-to-end tests (wrangler dev + fake providers + official SDKs)"
.venv/bin/python -m pytest tests/e2e -q -p no:cacheprovider --timeout 120 "$@"
