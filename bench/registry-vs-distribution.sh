#!/usr/bin/env bash
# Push/pull benchmark of berth against the reference registry (CNCF distribution 2.8, Debian's
# docker-registry), one after the other on this machine, with the same client and the same
# benchmark script (../shared/tools/registry-bench/bench.sh), sampling each registry's CPU
# seconds and peak RSS.
#
#   bench/registry-vs-distribution.sh [OUTDIR]
#   env: REPEATS=3 CLIENTS=skopeo BENCH=../shared/tools/registry-bench (bench.sh's knobs pass through)
#
# Needs: target/release/berth (or $CARGO_TARGET_DIR/release/berth), docker-registry, skopeo, the aws CLI, python3.
# berth runs with create_on_push = true (the benchmark pushes to new repository names;
# ECR itself never creates repositories on push) and the audit log off.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-$(mktemp -d /tmp/berth-vs-distribution.XXXXXX)}
BENCH=${BENCH:-../shared/tools/registry-bench}
export REPEATS=${REPEATS:-3} CLIENTS=${CLIENTS:-skopeo}
mkdir -p "$OUT"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# distribution
DIST=$OUT/distribution; mkdir -p "$DIST"
DPORT=$(free_port)
cat > "$DIST/config.yml" <<YML
version: 0.1
storage:
  filesystem:
    rootdirectory: $DIST/data
http:
  addr: 127.0.0.1:$DPORT
YML
docker-registry serve "$DIST/config.yml" > "$DIST/log" 2>&1 &
DPID=$!
sleep 1
REGISTRY_PID=$DPID "$BENCH/bench.sh" "127.0.0.1:$DPORT" | tee "$OUT/distribution.txt"
kill $DPID; wait $DPID 2>/dev/null || true

# berth
B=$OUT/berth; mkdir -p "$B"
printf 'create_on_push = true\naudit_log = "off"\n' > "$B/config.toml"
"${CARGO_TARGET_DIR:-target}/release/berth" serve --data-dir "$B/data" --listen 127.0.0.1:0 --config "$B/config.toml" 2> "$B/log" &
BPID=$!
for _ in $(seq 100); do grep -q "listening on" "$B/log" && break; sleep 0.05; done
URL=$(grep -o 'http://127.0.0.1:[0-9]*' "$B/log" | head -1)
PASS=$(AWS_ACCESS_KEY_ID=$(python3 -c "import json,sys;print(json.load(open(sys.argv[1]))['access_key_id'])" "$B/data/root-credentials.json") \
  AWS_SECRET_ACCESS_KEY=$(python3 -c "import json,sys;print(json.load(open(sys.argv[1]))['secret_access_key'])" "$B/data/root-credentials.json") \
  aws --endpoint-url "$URL" --region us-east-1 ecr get-login-password)
REGISTRY_PID=$BPID "$BENCH/bench.sh" "${URL#http://}" AWS "$PASS" | tee "$OUT/berth.txt"
kill $BPID; wait $BPID 2>/dev/null || true

python3 "$BENCH/summarize.py" "distribution=$OUT/distribution.txt" "berth=$OUT/berth.txt" | tee "$OUT/summary.md"
