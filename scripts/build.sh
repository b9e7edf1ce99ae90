#!/usr/bin/env bash
# Build the worker (wrangler's [build] command). Uses only local tools: worker-build must never
# download wasm-bindgen or wasm-opt, so it is pointed at the installed binaries.
#   SWITCHYARD_SKIP_BUILD=1  reuse build/ as it is (tests build once, then start wrangler fast)
#   SWITCHYARD_NO_OPT=1      skip wasm-opt (a faster, larger debug loop)
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ "${SWITCHYARD_SKIP_BUILD:-}" == 1 && -f build/index.js ]]; then
  exit 0
fi
export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
export WASM_BINDGEN_BIN="${CARGO_HOME:-$HOME/.cargo}/bin/wasm-bindgen"
export WASM_OPT_BIN="$PWD/node_modules/.bin/wasm-opt"
export ESBUILD_BIN="$PWD/node_modules/.bin/esbuild"
args=(--release)
if [[ "${SWITCHYARD_NO_OPT:-}" == 1 ]]; then args+=(--no-opt); fi
exec worker-build "${args[@]}"
