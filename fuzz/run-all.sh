#!/usr/bin/env bash
# Runs every fuzz target for SECONDS (default 300) with its seeds from fixtures/, two at a time
# (one per core), and prints libFuzzer's closing statistics. Needs cargo-fuzz
# (`cargo install cargo-fuzz`); RUSTC_BOOTSTRAP lets the stable toolchain take the sanitizer flags.
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-300}"
export RUSTC_BOOTSTRAP=1
cargo fuzz build
seeds() {
  case "$1" in
    kubeconfig) echo fixtures/bad/kubeconfigs fixtures/kubeadm-golden ;;
    pem) echo fixtures/bad/pem fixtures/kubeadm-golden ;;
    journal) echo fixtures/bad/journals ;;
    config) echo fixtures/bad/config fixtures/bad/tokens ;;
    cluster_info) echo fuzz/seeds/cluster_info ;;
    protobuf) echo fuzz/seeds/protobuf ;;
  esac
}
run() {
  local t="$1"
  mkdir -p "fuzz/corpus/$t" fuzz/logs
  cargo fuzz run "$t" "fuzz/corpus/$t" $(seeds "$t") -- -max_total_time="$secs" -rss_limit_mb=4096 >"fuzz/logs/$t.log" 2>&1 \
    && echo "$t: ok: $(grep -E '^Done [0-9]+ runs' "fuzz/logs/$t.log" | tail -1)" \
    || { echo "$t: FAILED, see fuzz/logs/$t.log"; return 1; }
}
status=0
for pair in "kubeconfig pem" "journal config" "cluster_info protobuf"; do
  set -- $pair
  run "$1" & a=$!
  run "$2" & b=$!
  wait $a || status=1
  wait $b || status=1
done
exit $status
