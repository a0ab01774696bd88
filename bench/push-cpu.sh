#!/usr/bin/env bash
# Registry CPU per GiB pushed, against what `openssl dgst -sha256` spends hashing a GiB on
# this machine in the same run: starts `berth serve` (release build), pushes a 1 GiB random
# layer with skopeo REPEATS times through the shared benchmark (push_big only), hashes a
# 1 GiB random file with openssl REPEATS times, and prints the medians and their ratio.
#
#   bench/push-cpu.sh [local|s3] [OUTDIR]
#   env: REPEATS=3  SCENARIOS=push_big (add pull_big: the first pulls' CPU too)  BENCH=../shared/tools/registry-bench  BERTH_BIN=<berth binary>
#        CACHE_GIB=0  s3: the node's blob cache (blob_cache_gib)
#        KEEP=1       keep the server's data directory (removed after the run by default)
#        WARM_MEMORY=1  (root, a VM with virtio-balloon free page reporting) pause the
#                     reporting for the run and touch the free memory once first: on such
#                     a VM, memory given back to the host costs ~2.5 CPU-s per GiB to touch
#                     again, charged to whichever process fills the page cache with it (a
#                     push does; openssl reading a cached file does not). Restored on exit.
#        PERF=record  also record a profile of the server during the pushes
#                     (perf record -e cpu-clock -F 499 -g, or -e PERF_EVENTS; report in
#                     OUTDIR/perf-BACKEND.txt)
#        PERF=stat    count the server's syscalls, context switches and page faults
#                     during the pushes instead (OUTDIR/perf-stat-BACKEND.txt)
#   s3 needs an endpoint: run under scripts/with-s3 (BERTH_TEST_S3_* variables).
#
# Needs: $CARGO_TARGET_DIR/release/berth (or target/release/berth), skopeo, the aws CLI,
# openssl, python3; perf for PERF.
set -euo pipefail
cd "$(dirname "$0")/.."
BACKEND=${1:-local}
OUT=${2:-$(mktemp -d /tmp/berth-push-cpu.XXXXXX)}
BENCH=${BENCH:-../shared/tools/registry-bench}
REPEATS=${REPEATS:-3}
mkdir -p "$OUT"
B=$OUT/berth-$BACKEND
rm -rf "$B"
mkdir -p "$B"
{
  printf 'create_on_push = true\naudit_log = "off"\n'
  if [ "$BACKEND" = s3 ]; then
    : "${BERTH_TEST_S3_ENDPOINT:?s3 needs an endpoint: run under scripts/with-s3}"
    printf 'blob_url = "s3://%s/push-cpu-%s"\n' "$BERTH_TEST_S3_BUCKET" "$$"
    printf 's3_endpoint = "%s"\ns3_region = "us-east-1"\ns3_allow_http = true\n' "$BERTH_TEST_S3_ENDPOINT"
    printf 's3_access_key_id = "%s"\ns3_secret_access_key = "%s"\n' \
      "$BERTH_TEST_S3_ACCESS_KEY_ID" "$BERTH_TEST_S3_SECRET_ACCESS_KEY"
    printf 'blob_cache_gib = %s\n' "${CACHE_GIB:-0}"
  fi
} > "$B/config.toml"
"${BERTH_BIN:-${CARGO_TARGET_DIR:-target}/release/berth}" serve --data-dir "$B/data" --listen 127.0.0.1:0 \
  --config "$B/config.toml" 2> "$B/log" &
BPID=$!
PERF_PID=""
stop() {
  [ -z "$PERF_PID" ] || kill -INT "$PERF_PID" 2>/dev/null || true
  kill "$BPID" 2>/dev/null || true
  wait 2>/dev/null || true
}
trap stop EXIT
REPORTING=/sys/module/page_reporting/parameters/page_reporting_order
if [ -n "${WARM_MEMORY:-}" ]; then
  [ -w "$REPORTING" ] || { echo "WARM_MEMORY needs root and $REPORTING" >&2; exit 2; }
  OLD_ORDER=$(cat "$REPORTING")
  trap 'stop; echo "$OLD_ORDER" > "$REPORTING"' EXIT
  echo 11 > "$REPORTING"   # above the largest block order: nothing is reported
  python3 - <<'PY'
import mmap
free = int(next(l.split()[1] for l in open('/proc/meminfo') if l.startswith('MemFree:'))) * 1024
n = max(0, free - (1 << 30)) // mmap.PAGESIZE * mmap.PAGESIZE
if n:
    m = mmap.mmap(-1, n)
    for i in range(0, n, 1 << 21):
        k = min(1 << 21, n - i)
        m[i:i + k] = b"\1" * k
    m.close()
PY
fi
for _ in $(seq 100); do grep -q "listening on" "$B/log" && break; sleep 0.05; done
URL=$(grep -o 'http://127.0.0.1:[0-9]*' "$B/log" | head -1)
cred() { python3 -c "import json,sys;print(json.load(open(sys.argv[1]))[sys.argv[2]])" "$B/data/root-credentials.json" "$1"; }
PASS=$(AWS_ACCESS_KEY_ID=$(cred access_key_id) AWS_SECRET_ACCESS_KEY=$(cred secret_access_key) \
  aws --endpoint-url "$URL" --region us-east-1 ecr get-login-password)

case ${PERF:-} in
  record) perf record -e "${PERF_EVENTS:-cpu-clock}" -F 499 ${PERF_CALLGRAPH:--g} -p "$BPID" -o "$OUT/perf-$BACKEND.data" 2> "$OUT/perf-record.log" & ;;
  stat) perf stat -e task-clock,context-switches,cpu-migrations,page-faults \
          -e syscalls:sys_enter_read,syscalls:sys_enter_recvfrom,syscalls:sys_enter_write \
          -e syscalls:sys_enter_writev,syscalls:sys_enter_sendto,syscalls:sys_enter_epoll_wait \
          -e syscalls:sys_enter_futex,syscalls:sys_enter_pwrite64 \
          -p "$BPID" -o "$OUT/perf-stat-$BACKEND.txt" & ;;
  "") ;;
  *) echo "PERF is record or stat" >&2; exit 2 ;;
esac
if [ -n "${PERF:-}" ]; then PERF_PID=$!; sleep 0.5; fi
SCENARIOS=${SCENARIOS:-push_big} REPEATS=$REPEATS CLIENTS=skopeo REGISTRY_PID=$BPID \
  "$BENCH/bench.sh" "${URL#http://}" AWS "$PASS" > "$OUT/bench-$BACKEND.txt"
if [ -n "$PERF_PID" ]; then
  kill -INT "$PERF_PID"; wait "$PERF_PID" 2>/dev/null || true; PERF_PID=""
fi
if [ "${PERF:-}" = record ]; then
  perf report -i "$OUT/perf-$BACKEND.data" --no-children --sort symbol --stdio 2>/dev/null \
    | grep -v '^$' > "$OUT/perf-$BACKEND.txt" || true
fi
kill "$BPID"; wait "$BPID" 2>/dev/null || true
# The pushed layers (a GiB per repeat) are not needed after the run.
[ -n "${KEEP:-}" ] || rm -rf "$B/data"

# openssl over the same amount of random data, read from the page cache like the pushes'
# bytes come from skopeo's layout.
head -c $((1 << 30)) /dev/urandom > "$OUT/gib"
cat "$OUT/gib" > /dev/null
: > "$OUT/openssl-times"
for _ in $(seq "$REPEATS"); do
  /usr/bin/time -f '%U %S' -a -o "$OUT/openssl-times" openssl dgst -sha256 "$OUT/gib" > /dev/null
done
rm -f "$OUT/gib"

python3 - "$OUT/bench-$BACKEND.txt" "$OUT/openssl-times" "$BACKEND" <<'EOF'
import json, statistics, sys
summary = json.loads(open(sys.argv[1]).read().strip().splitlines()[-1])
push = summary["results"]["skopeo"]["push_big"]
gib = push["bytes"] / (1 << 30)
reg = push["registry_cpu_s_median"] / gib
ossl = [float(u) + float(s) for u, s in (l.split() for l in open(sys.argv[2]) if l.strip())]
o = statistics.median(ossl)
print(f"{sys.argv[3]}: push_big wall median {push['median_s']:.3f} s (all {push['all_s']}), "
      f"registry CPU {reg:.2f} s/GiB (median of {push['ok']}), "
      f"openssl dgst -sha256 {o:.2f} CPU-s/GiB (all {ossl}), ratio {reg / o:.2f}x")
pull = summary["results"]["skopeo"].get("pull_big")
if pull:
    print(f"{sys.argv[3]}: pull_big wall median {pull['median_s']:.3f} s, "
          f"registry CPU {pull['registry_cpu_s_median'] / gib:.2f} s/GiB (median of {pull['ok']})")
EOF
echo "outputs in $OUT" >&2
