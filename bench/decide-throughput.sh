#!/usr/bin/env bash
# Throughput of `berth policy decide`: N generated ECR-style request lines (default
# 100,000), decided R times (default 5); prints lines/s for each run and the median.
# usage: bench/decide-throughput.sh [N] [R]
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-100000}
R=${2:-5}
cargo build --release --quiet --bin berth
corpus=$(mktemp /tmp/berth-decide-XXXXXX.jsonl)
trap 'rm -f "$corpus"' EXIT
python3 bench/decide-corpus.py "$N" > "$corpus"
echo "corpus: $N lines, $(stat -c %s "$corpus") bytes"
./target/release/berth policy decide < "$corpus" > /dev/null   # warm the page cache
rates=()
for i in $(seq "$R"); do
  start=$(date +%s.%N)
  ./target/release/berth policy decide < "$corpus" > /dev/null
  end=$(date +%s.%N)
  rate=$(python3 -c "print(round($N / ($end - $start)))")
  echo "run $i: $(python3 -c "print(round($end - $start, 3))") s, $rate lines/s"
  rates+=("$rate")
done
printf '%s\n' "${rates[@]}" | sort -n | awk '{a[NR]=$1} END {print "median: " a[int((NR+1)/2)] " lines/s"}'
