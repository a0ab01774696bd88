#!/usr/bin/env bash
# Push/pull over TLS: berth with --tls-cert against the reference registry (CNCF
# distribution 2.8, Debian's docker-registry) serving the same certificate (from
# `berth cert init`), and berth on plain HTTP for the cost of TLS itself. One registry
# after the other on this machine, the same client and the same benchmark script
# (../shared/tools/registry-bench/bench.sh: skopeo with --tls-verify=false speaks
# HTTPS to a registry that offers it), sampling each registry's CPU seconds and peak RSS.
#
#   bench/tls.sh [OUTDIR]
#   env: REPEATS=3 CLIENTS=skopeo BIG_MIB=512 SCENARIOS="push_small push_many push_big pull_small pull_many pull_big pull16_small"
#        BENCH=../shared/tools/registry-bench (bench.sh's knobs pass through)
#
# Needs: target/release/berth (or $CARGO_TARGET_DIR/release/berth), docker-registry, skopeo,
# the aws CLI, python3. berth runs with create_on_push = true (the benchmark pushes to new
# repository names) and the audit log off, as in bench/registry-vs-distribution.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-$(mktemp -d /tmp/berth-tls.XXXXXX)}
BENCH=${BENCH:-../shared/tools/registry-bench}
BERTH=${CARGO_TARGET_DIR:-target}/release/berth
export REPEATS=${REPEATS:-3} CLIENTS=${CLIENTS:-skopeo} BIG_MIB=${BIG_MIB:-512}
export SCENARIOS=${SCENARIOS:-"push_small push_many push_big pull_small pull_many pull_big pull16_small"}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

"$BERTH" cert init --data-dir "$OUT/certs" --host 127.0.0.1 --host localhost > /dev/null
CRT=$OUT/certs/tls/server.crt
KEY=$OUT/certs/tls/private/server.key
# bench.sh checks that the registry answers with `curl http://HOST/v2/`; over TLS that
# probe is https (skopeo itself, with --tls-verify=false, tries HTTPS first).
SHIM=$OUT/shim; mkdir -p "$SHIM"
cat > "$SHIM/curl" <<'SH'
#!/bin/sh
for a; do shift; case $a in http://*) a="https://${a#http://}";; esac; set -- "$@" "$a"; done
exec /usr/bin/curl -k "$@"
SH
chmod +x "$SHIM/curl"

# distribution over TLS
DIST=$OUT/distribution; mkdir -p "$DIST"
DPORT=$(free_port)
cat > "$DIST/config.yml" <<YML
version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $DIST/data
http:
  addr: 127.0.0.1:$DPORT
  tls:
    certificate: $CRT
    key: $KEY
YML
docker-registry serve "$DIST/config.yml" > "$DIST/log" 2>&1 &
DPID=$!
for _ in $(seq 100); do curl -s --cacert "$OUT/certs/tls/ca.crt" -o /dev/null "https://127.0.0.1:$DPORT/v2/" && break; sleep 0.1; done
PATH=$SHIM:$PATH REGISTRY_PID=$DPID "$BENCH/bench.sh" "127.0.0.1:$DPORT" | tee "$OUT/distribution-tls.txt"
kill $DPID; wait $DPID 2>/dev/null || true

# berth, over TLS then over plain HTTP
run_berth() { # NAME PATH EXTRA_CONFIG
  local B=$OUT/$1
  mkdir -p "$B"
  printf 'create_on_push = true\naudit_log = "off"\n%s' "$3" > "$B/config.toml"
  "$BERTH" serve --data-dir "$B/data" --listen 127.0.0.1:0 --config "$B/config.toml" 2> "$B/log" &
  local BPID=$!
  for _ in $(seq 100); do grep -q "listening on" "$B/log" && break; sleep 0.05; done
  local URL
  URL=$(grep -o 'https\?://127.0.0.1:[0-9]*' "$B/log" | head -1)
  local PASS
  PASS=$(AWS_ACCESS_KEY_ID=$(python3 -c "import json,sys;print(json.load(open(sys.argv[1]))['access_key_id'])" "$B/data/root-credentials.json") \
    AWS_SECRET_ACCESS_KEY=$(python3 -c "import json,sys;print(json.load(open(sys.argv[1]))['secret_access_key'])" "$B/data/root-credentials.json") \
    AWS_CA_BUNDLE="$OUT/certs/tls/ca.crt" aws --endpoint-url "$URL" --region us-east-1 ecr get-login-password)
  PATH=$2 REGISTRY_PID=$BPID "$BENCH/bench.sh" "${URL#*://}" AWS "$PASS" | tee "$OUT/$1.txt"
  kill $BPID; wait $BPID 2>/dev/null || true
}
run_berth berth-tls "$SHIM:$PATH" "tls_cert = \"$CRT\"
tls_key = \"$KEY\"
"
run_berth berth-plain "$PATH" ""

python3 "$BENCH/summarize.py" "distribution-tls=$OUT/distribution-tls.txt" "berth-tls=$OUT/berth-tls.txt" \
  "berth-plain=$OUT/berth-plain.txt" | tee "$OUT/summary.md"
