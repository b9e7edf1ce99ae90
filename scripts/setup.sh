#!/usr/bin/env bash
# Install everything Switchyard needs to build, run and test — from the package registries only,
# skipping what is already there. Safe to run again and again.
#   Rust: the wasm32 target, worker-build 0.8.7, wasm-bindgen-cli (= the pinned library)
#   npm:  wrangler, a Node 22 for it, binaryen's wasm-opt, the openai SDK (package-lock.json)
#   PyPI: the end-to-end test tools and official SDKs, in .venv (tests/requirements.txt)
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
say() { printf '\033[1m[setup]\033[0m %s\n' "$*"; }

WORKER_BUILD_VERSION=0.8.7
WASM_BINDGEN_VERSION=$(sed -n 's/^wasm-bindgen = "=\(.*\)"/\1/p' Cargo.toml)

command -v cargo >/dev/null || { echo "cargo is required (rustup)"; exit 1; }
command -v npm >/dev/null || { echo "npm is required"; exit 1; }
command -v python3 >/dev/null || { echo "python3 is required"; exit 1; }

if ! rustup target list --installed 2>/dev/null | grep -qx wasm32-unknown-unknown; then
  say "adding the wasm32-unknown-unknown target"
  rustup target add wasm32-unknown-unknown
fi

# The two cargo installs are independent: build them side by side.
pids=()
if [[ "$(worker-build --version 2>/dev/null)" != "$WORKER_BUILD_VERSION" ]]; then
  say "installing worker-build $WORKER_BUILD_VERSION (a few minutes, once)"
  cargo install worker-build --version "$WORKER_BUILD_VERSION" --locked --quiet & pids+=($!)
fi
if [[ "$(wasm-bindgen --version 2>/dev/null)" != "wasm-bindgen $WASM_BINDGEN_VERSION" ]]; then
  say "installing wasm-bindgen-cli $WASM_BINDGEN_VERSION (a few minutes, once)"
  # No --locked: its lockfile names a crate version the registry index lacks.
  cargo install wasm-bindgen-cli --version "$WASM_BINDGEN_VERSION" --force --quiet & pids+=($!)
fi
for p in "${pids[@]}"; do wait "$p"; done

# npm: `npm ci` refuses this lock (it lacks workerd builds for other platforms); `npm install`
# with the committed lock installs the same versions. Re-run only when the lock changed.
stamp=node_modules/.switchyard-lock.sha
want=$(sha256sum package-lock.json | cut -d' ' -f1)
if [[ ! -x node_modules/.bin/wrangler || "$(cat "$stamp" 2>/dev/null)" != "$want" ]]; then
  say "installing npm packages"
  npm install --no-audit --no-fund --loglevel=error
  echo "$want" > "$stamp"
fi

stamp=.venv/.switchyard-req.sha
want=$(sha256sum tests/requirements.txt | cut -d' ' -f1)
if [[ ! -x .venv/bin/python || "$(cat "$stamp" 2>/dev/null)" != "$want" ]]; then
  say "installing Python test packages into .venv"
  python3 -m venv .venv
  .venv/bin/pip install --quiet --disable-pip-version-check -r tests/requirements.txt
  echo "$want" > "$stamp"
fi
say "toolchain ready"
