#!/usr/bin/env bash
# Push/pull benchmark of berth's scale-out configuration (metadata in PostgreSQL, blobs in
# an S3-compatible store) against the reference registry (CNCF distribution 2.8, Debian's
# docker-registry) configured with its S3 driver, both on the same S3 server (moto's
# server on loopback, each registry in its own bucket; S3_SERVER=s3s-fs for s3s-fs), one after the other, with the same client
# and benchmark script (../shared/tools/registry-bench/bench.sh), sampling each
# registry's CPU seconds and peak RSS. Then concurrent pulls through one berth node
# against the same pulls spread over two nodes.
#
#   bench/scaleout-vs-distribution.sh [OUTDIR]
#   env: REPEATS=3 CLIENTS=skopeo BENCH=../shared/tools/registry-bench (bench.sh's knobs pass through)
#        PG_URL=postgres://postgres@127.0.0.1:5432/postgres (a server whose user may create databases)
#        REDIRECT=1 (both registries redirect blob GETs to presigned S3 URLs, distribution's
#        default); REDIRECT=0: neither does, each streams blobs itself
#        CACHE_GIB=0 (berth's blob_cache_gib: each node keeps up to this many GiB of blobs
#        it received or served whole on its own disk and serves them from there)
#
# Needs: target/release/berth (or $CARGO_TARGET_DIR/release/berth), docker-registry, skopeo,
# the aws CLI, psql, moto_server (pip install 'moto[server]') or s3s-fs (cargo install
# s3s-fs --version 0.14.1 --features binary --locked), python3. The S3 server's CPU seconds
# are reported too (s3-cpu.txt): they are part of what each registry costs. berth runs with create_on_push = true (the benchmark pushes to new repository
# names) and the audit log off.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-$(mktemp -d /tmp/berth-scaleout.XXXXXX)}
BENCH=${BENCH:-../shared/tools/registry-bench}
PG_URL=${PG_URL:-postgres://postgres@127.0.0.1:5432/postgres}
REDIRECT=${REDIRECT:-1}
CACHE_GIB=${CACHE_GIB:-0}
export REPEATS=${REPEATS:-3} CLIENTS=${CLIENTS:-skopeo}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
BERTH=${CARGO_TARGET_DIR:-$PWD/target}/release/berth
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_http() { for _ in $(seq 200); do curl -s -o /dev/null "$1" && return 0; sleep 0.05; done; echo "no answer from $1" >&2; return 1; }

PIDS=()
DB=berth_bench_$$
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  psql "$PG_URL" -qc "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null 2>&1 || true
}
trap cleanup EXIT

# The S3 server, a bucket for each registry: moto's server by default (S3_SERVER=moto;
# distribution's S3 driver needs ListMultipartUploads, which s3s-fs does not implement),
# or S3_SERVER=s3s-fs (berth alone then makes sense: distribution fails its pushes).
S3_SERVER=${S3_SERVER:-moto}
S3PORT=$(free_port)
KEY=bench$$; SECRET=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
if [ "$S3_SERVER" = moto ]; then
  moto_server -H 127.0.0.1 -p "$S3PORT" > "$OUT/s3.log" 2>&1 &
  PIDS+=($!)
  wait_http "http://127.0.0.1:$S3PORT/"
  for b in distribution berth; do
    AWS_ACCESS_KEY_ID=$KEY AWS_SECRET_ACCESS_KEY=$SECRET aws --endpoint-url "http://127.0.0.1:$S3PORT" \
      --region us-east-1 s3api create-bucket --bucket "$b" > /dev/null
  done
else
  mkdir -p "$OUT/s3/distribution" "$OUT/s3/berth"
  s3s-fs --host 127.0.0.1 --port "$S3PORT" --access-key "$KEY" --secret-key "$SECRET" "$OUT/s3" > "$OUT/s3.log" 2>&1 &
  PIDS+=($!)
  wait_http "http://127.0.0.1:$S3PORT/"
fi
S3PID=${PIDS[-1]}

# distribution with its S3 driver
DIST=$OUT/distribution; mkdir -p "$DIST"
DPORT=$(free_port)
cat > "$DIST/config.yml" <<YML
version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  s3:
    region: us-east-1
    regionendpoint: http://127.0.0.1:$S3PORT
    bucket: distribution
    accesskey: $KEY
    secretkey: $SECRET
    secure: false
    v4auth: true
  cache:
    blobdescriptor: inmemory
  redirect:
    disable: $([ "$REDIRECT" = 1 ] && echo false || echo true)
http:
  addr: 127.0.0.1:$DPORT
YML
# AWS_CA_BUNDLE (set on some machines) makes distribution's S3 client panic at start
# ("unsupported transport"); the endpoint here is plain HTTP anyway.
env -u AWS_CA_BUNDLE docker-registry serve "$DIST/config.yml" > "$DIST/log" 2>&1 &
DPID=$!; PIDS+=($DPID)
wait_http "http://127.0.0.1:$DPORT/v2/"
s3cpu() { awk '{print ($14 + $15) / '"$(getconf CLK_TCK)"'}' "/proc/$S3PID/stat"; }
S3_BEFORE=$(s3cpu)
REGISTRY_PID=$DPID "$BENCH/bench.sh" "127.0.0.1:$DPORT" | tee "$OUT/distribution.txt"
echo "distribution: S3 server CPU s $(python3 -c "print(round($(s3cpu) - $S3_BEFORE, 2))")" >> "$OUT/s3-cpu.txt"
kill $DPID; wait $DPID 2>/dev/null || true

# berth: nodes on one PostgreSQL database and the berth bucket, sharing a secrets key.
psql "$PG_URL" -qc "CREATE DATABASE $DB" >/dev/null
B=$OUT/berth; mkdir -p "$B"
head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$B/secrets.key"; echo >> "$B/secrets.key"; chmod 600 "$B/secrets.key"
cat > "$B/config.toml" <<TOML
create_on_push = true
audit_log = "off"
metadata_url = "${PG_URL%/*}/$DB"
blob_url = "s3://berth"
s3_endpoint = "http://127.0.0.1:$S3PORT"
s3_region = "us-east-1"
s3_allow_http = true
secrets_key_file = "$B/secrets.key"
# As distribution's S3 driver does by default (REDIRECT=1): blob GETs redirected to the bucket.
blob_redirect = $([ "$REDIRECT" = 1 ] && echo true || echo false)
# Each node's own copy of blobs (in its data dir), 0: none.
blob_cache_gib = $CACHE_GIB
TOML
start_node() { # start_node NAME: sets NODE_URL and NODE_PID
  BERTH_S3_ACCESS_KEY_ID=$KEY BERTH_S3_SECRET_ACCESS_KEY=$SECRET \
    "$BERTH" serve --data-dir "$B/$1" --listen 127.0.0.1:0 --config "$B/config.toml" > /dev/null 2> "$B/$1.log" &
  NODE_PID=$!; PIDS+=($NODE_PID)
  for _ in $(seq 200); do grep -q "listening on" "$B/$1.log" && break; sleep 0.05; done
  NODE_URL=$(grep -o 'http://127.0.0.1:[0-9]*' "$B/$1.log" | head -1)
}
start_node node1; URL1=$NODE_URL; PID1=$NODE_PID
creds=$B/node1/root-credentials.json
export AWS_ACCESS_KEY_ID=$(python3 -c "import json,sys;print(json.load(open(sys.argv[1]))['access_key_id'])" "$creds")
export AWS_SECRET_ACCESS_KEY=$(python3 -c "import json,sys;print(json.load(open(sys.argv[1]))['secret_access_key'])" "$creds")
PASS=$(aws --endpoint-url "$URL1" --region us-east-1 ecr get-login-password)
S3_BEFORE=$(s3cpu)
REGISTRY_PID=$PID1 "$BENCH/bench.sh" "${URL1#http://}" AWS "$PASS" | tee "$OUT/berth.txt"
echo "berth: S3 server CPU s $(python3 -c "print(round($(s3cpu) - $S3_BEFORE, 2))")" >> "$OUT/s3-cpu.txt"

python3 "$BENCH/summarize.py" "distribution=$OUT/distribution.txt" "berth=$OUT/berth.txt" | tee "$OUT/summary.md"

# Concurrent pulls: 16 skopeo pulls of one pushed image through one node, then the same 16
# spread over two nodes (8 each), REPEATS times each, interleaved; wall time of each batch.
start_node node2; URL2=$NODE_URL
IMG=$OUT/img; mkdir -p "$IMG"
python3 - "$IMG" <<'PY'
import hashlib, json, os, sys
d = sys.argv[1]
blobs = os.path.join(d, "blobs", "sha256"); os.makedirs(blobs, exist_ok=True)
def put(b):
    h = hashlib.sha256(b).hexdigest(); open(os.path.join(blobs, h), "wb").write(b); return h, len(b)
layers = [put(os.urandom(4 << 20)) for _ in range(8)]
cfg = put(json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": ["sha256:" + h for h, _ in layers]}}).encode())
m = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
    "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": "sha256:" + cfg[0], "size": cfg[1]},
    "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": "sha256:" + h, "size": n} for h, n in layers]}).encode()
mh, mn = put(m)
json.dump({"schemaVersion": 2, "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": "sha256:" + mh, "size": mn, "annotations": {"org.opencontainers.image.ref.name": "v1"}}]}, open(os.path.join(d, "index.json"), "w"))
open(os.path.join(d, "oci-layout"), "w").write('{"imageLayoutVersion":"1.0.0"}')
PY
skopeo copy -q --dest-tls-verify=false --dest-creds "AWS:$PASS" "oci:$IMG:v1" "docker://${URL1#http://}/pulls/img:v1"
batch() { # batch URL... : 16 pulls spread round-robin over the URLs; prints wall seconds
  local start end i urls=("$@")
  start=$(date +%s.%N)
  for i in $(seq 0 15); do
    u=${urls[$((i % ${#urls[@]}))]}
    skopeo copy -q --src-tls-verify=false --src-creds "AWS:$PASS" "docker://${u#http://}/pulls/img:v1" "oci:$OUT/pull-$i:v1" &
  done
  wait
  end=$(date +%s.%N)
  rm -rf "$OUT"/pull-*
  python3 -c "print(f'{$end - $start:.3f}')"
}
: > "$OUT/pulls.tsv"
for r in $(seq "$REPEATS"); do
  printf 'one_node\t%s\n' "$(batch "$URL1")" >> "$OUT/pulls.tsv"
  printf 'two_nodes\t%s\n' "$(batch "$URL1" "$URL2")" >> "$OUT/pulls.tsv"
done
python3 - "$OUT/pulls.tsv" <<'PY' | tee "$OUT/pulls.md"
import statistics, sys
rows = [l.split("\t") for l in open(sys.argv[1]).read().split("\n") if l]
by = {}
for k, v in rows:
    by.setdefault(k, []).append(float(v))
one, two = statistics.median(by["one_node"]), statistics.median(by["two_nodes"])
print("| 16 concurrent pulls of a 32 MiB image | median s | runs |")
print("|---|---|---|")
for k in ("one_node", "two_nodes"):
    print(f"| {k.replace('_', ' ')} | {statistics.median(by[k]):.3f} | {', '.join(f'{x:.3f}' for x in by[k])} |")
print(f"\ntwo nodes against one: {one / two:.2f}x")
PY
