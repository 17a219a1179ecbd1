#!/usr/bin/env bash
# Cache misses per `get` hit on a large table, counted by cachegrind's cache simulator (this VM
# exposes no hardware counters to `perf stat`). For each store and value size, runs
# examples/cache_probe.rs with 0 and with GETS reads and prints the difference divided by GETS:
# data reads, L1d misses and last-level misses per get. Cachegrind simulates the caches the CPU
# reports (here L1d 48 KiB, and the 105 MiB L3 as the last level); the tables are sized to be
# about three times the last level (4M entries with 16-byte values, 1M with 256-byte values),
# so nearly every line a lookup touches is a miss. Cachegrind models no prefetcher: the lines
# of one value, which the hardware streams in together, each count as a miss.
#
#   bash scripts/cache_misses.sh            # 200 000 gets per run (about 2 minutes)
#   SCALE=10 GETS=20000 bash scripts/cache_misses.sh   # tables 10 times smaller (a smoke)
set -euo pipefail
cd "$(dirname "$0")/.."

SCALE=${SCALE:-1}
GETS=${GETS:-200000}
command -v valgrind >/dev/null || { echo "valgrind is not installed (apt-get install valgrind)" >&2; exit 1; }
cargo build --release --quiet --example cache_probe
bin=target/release/examples/cache_probe

# Prints "<data reads> <D1 read misses> <LL read misses>" for one run.
count() {
    local log
    log=$(mktemp)
    valgrind --tool=cachegrind --cache-sim=yes --cachegrind-out-file=/dev/null \
        "$bin" "$@" 2>"$log" >/dev/null || { cat "$log" >&2; rm -f "$log"; exit 1; }
    # "==123== D refs: 1,234 (1,000 rd + 234 wr)", "D1  misses: ... (x rd + y wr)",
    # "LLd misses: ... (x rd + y wr)": the read parts.
    awk '/D +refs:/ || /D1 +misses:/ || /LLd +misses:/ {
            for (i = 1; i <= NF; i++) if ($i == "rd") { v = $(i - 1); gsub(/[(,]/, "", v); printf "%s ", v }
         } END { print "" }' "$log"
    rm -f "$log"
}

echo "gets: $GETS per run, key 16 B"
echo
echo "| store | entries | value | data reads per get | L1d read misses per get | LL read misses per get |"
echo "|---|---:|---:|---:|---:|---:|"
for kind in shm hashmap; do
    for value in 16 256; do
        entries=$(( (value == 16 ? 4000000 : 1000000) / SCALE ))
        c0=$(count "$kind" "$entries" "$value" 0)
        c1=$(count "$kind" "$entries" "$value" "$GETS")
        read -r r0 d0 l0 <<<"$c0"
        read -r r1 d1 l1 <<<"$c1"
        [ -n "$l0" ] && [ -n "$l1" ] || { echo "no cachegrind figures for $kind $value" >&2; exit 1; }
        name=$([ "$kind" = shm ] && echo shmstate || echo '`Mutex<HashMap>`')
        awk -v n="$GETS" -v r="$((r1 - r0))" -v d="$((d1 - d0))" -v l="$((l1 - l0))" \
            -v name="$name" -v value="$value" -v entries="$entries" \
            'BEGIN { printf "| %s | %d | %d B | %.1f | %.2f | %.2f |\n", name, entries, value, r / n, d / n, l / n }'
    done
done
