#!/usr/bin/env bash
# Run Switchyard locally: install what is missing, build, start the bundled demo provider on
# 127.0.0.1:8790, apply D1 migrations locally, and serve the gateway on http://127.0.0.1:8787.
# Ctrl-C stops both.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export PATH="$PWD/node_modules/.bin:${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
export CI=true WRANGLER_SEND_METRICS=false CLOUDFLARE_CF_FETCH_ENABLED=false
PORT=${PORT:-8787}
DEMO_PORT=8790

# Local secrets live in the untracked .dev.vars. The demo provider's key is a local placeholder;
# the admin token and the end-user signing secret are random, made once per checkout.
touch .dev.vars
grep -q '^DEMO_API_KEY=' .dev.vars || echo 'DEMO_API_KEY=demo-local-placeholder' >> .dev.vars
for name in ADMIN_TOKEN SIGNING_SECRET; do
  grep -q "^$name=" .dev.vars || echo "$name=$(python3 -c 'import secrets; print(secrets.token_urlsafe(32))')" >> .dev.vars
done

echo "[dev] building the worker and the demo provider"
bash scripts/build.sh
cargo build --release --quiet -p fake-provider

wrangler d1 migrations apply DB --local >/dev/null

# The demo tenant and its fixed token, for local use only (a deployed gateway never has it: this
# runs against the local database). Idempotent; only the token's sha256 is stored.
DEMO_TOKEN=sy_demo_local_only_token
demo_hash=$(printf '%s' "$DEMO_TOKEN" | sha256sum | cut -d' ' -f1)
now_ms=$(($(date +%s) * 1000))
wrangler d1 execute DB --local --command \
  "INSERT OR IGNORE INTO tenants (id, name, created_ms, updated_ms) VALUES ('demo', 'Demo (local only)', $now_ms, $now_ms);
   INSERT OR IGNORE INTO tokens (id, tenant_id, hash, prefix, name, created_ms)
   VALUES ('tok_demo_local', 'demo', '$demo_hash', '${DEMO_TOKEN:0:11}', 'local demo', $now_ms);" >/dev/null

mkdir -p .wrangler
target/release/fake-provider --port "$DEMO_PORT" > .wrangler/demo-provider.log 2>&1 &
demo_pid=$!
trap 'kill "$demo_pid" 2>/dev/null || true' EXIT INT TERM
for _ in $(seq 1 50); do
  curl -sf "http://127.0.0.1:$DEMO_PORT/_fake/health" >/dev/null && break
  sleep 0.1
done
# The `demo-failover` route's primary answers 503 until told otherwise: watch it fail over.
curl -sf "http://127.0.0.1:$DEMO_PORT/_fake/behavior" -d '{"instance":"flaky","spec":"status=503"}' >/dev/null

cat <<MSG
[dev] demo provider on 127.0.0.1:$DEMO_PORT (pid $demo_pid); gateway on http://127.0.0.1:$PORT
[dev] try:  curl -s http://127.0.0.1:$PORT/v1/chat/completions -H 'authorization: Bearer $DEMO_TOKEN' \\
              -H 'content-type: application/json' -d '{"model":"demo","messages":[{"role":"user","content":"Hello!"}]}'
[dev] admin: export SWITCHYARD_URL=http://127.0.0.1:$PORT SWITCHYARD_ADMIN_TOKEN=\$(sed -n 's/^ADMIN_TOKEN=//p' .dev.vars)
             scripts/switchyard-admin tenants list
MSG
SWITCHYARD_SKIP_BUILD=1 wrangler dev --ip 127.0.0.1 --port "$PORT"
