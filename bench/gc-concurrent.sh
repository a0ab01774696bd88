#!/usr/bin/env bash
# Pushes and pulls with the garbage collector running all along, against the same without:
# one registry of 100,000 blobs (bench/gc-pass.py makes it: 90,000 referenced once its
# garbage is collected), served twice by the release build, each time measured with the
# registry benchmark (../shared/tools/registry-bench/bench.sh):
#   idle  gc_interval_seconds = 86400 (the collector does not run during the benchmark)
#   busy  gc_interval_seconds = 1, gc_grace_seconds = 60: one node's gc job runs a pass over
#         every holding, blob row and object a second after the last ended, all along
# (a grace of 60 s rather than 0: with 0, a layer uploaded and not yet referenced by its
# manifest may be released before the manifest comes, which a client sees as
# MANIFEST_BLOB_UNKNOWN — the documented meaning of no grace, not what is measured here).
#
#   bench/gc-concurrent.sh [OUTDIR]
#   env: REPEATS=3 CLIENTS=skopeo BENCH=../shared/tools/registry-bench BLOBS=100000
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-$(mktemp -d /tmp/berth-gc-concurrent.XXXXXX)}
BENCH=${BENCH:-../shared/tools/registry-bench}
export REPEATS=${REPEATS:-3} CLIENTS=${CLIENTS:-skopeo}
BIN=${CARGO_TARGET_DIR:-target}/release/berth
mkdir -p "$OUT"
python3 bench/gc-pass.py --blobs "${BLOBS:-100000}" --repeats 1 --keep "$OUT/registry" | tee "$OUT/prepare.txt"
DATA=$OUT/registry/data
root() { python3 -c "import json,sys;print(json.load(open(sys.argv[1]))[sys.argv[2]])" "$DATA/bench-root.json" "$1"; }

for mode in idle busy; do
  C=$OUT/$mode.toml
  printf 'create_on_push = true\naudit_log = "off"\n' > "$C"
  if [ "$mode" = busy ]; then
    printf 'gc_interval_seconds = 1\ngc_grace_seconds = 60\n' >> "$C"
  else
    printf 'gc_interval_seconds = 86400\n' >> "$C"
  fi
  RUST_LOG=info "$BIN" serve --data-dir "$DATA" --listen 127.0.0.1:0 --config "$C" 2> "$OUT/$mode.log" &
  BPID=$!
  for _ in $(seq 200); do grep -q "listening on" "$OUT/$mode.log" && break; sleep 0.05; done
  URL=$(grep -o 'http://127.0.0.1:[0-9]*' "$OUT/$mode.log" | head -1)
  PASS=$(AWS_ACCESS_KEY_ID=$(root access_key_id) AWS_SECRET_ACCESS_KEY=$(root secret_access_key) \
    aws --endpoint-url "$URL" --region us-east-1 ecr get-login-password)
  REGISTRY_PID=$BPID "$BENCH/bench.sh" "${URL#http://}" AWS "$PASS" | tee "$OUT/$mode.txt"
  kill $BPID; wait $BPID 2>/dev/null || true
  echo "$mode: gc passes during the run: $(grep -c 'released .* repository holdings' "$OUT/$mode.log" || true)" | tee -a "$OUT/passes.txt"
done

python3 "$BENCH/summarize.py" "idle=$OUT/idle.txt" "busy=$OUT/busy.txt" | tee "$OUT/summary.md"
