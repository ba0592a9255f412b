#!/usr/bin/env bash
# Records which functions of cloudlb run and writes link/cloudlb.order, the list LLD lays out
# first (build.rs says why). Run it when the benchmark's "link order" line shows the list
# covering much less of the binary than it did, e.g. after a dependency update.
#
#   link/order.sh            # about 40 minutes on 2 cores
#
# Needs valgrind, nm and python3, and what the end-to-end tests need (moto, see .ci/run). Each
# run is labelled; the controller runs under callgrind, which dumps every 50M basic blocks, so
# a test that kills it still leaves its profile. Tests are slower under valgrind and some may
# time out: their profiles count all the same, so failures are reported and not fatal.
set -euo pipefail
cd "$(dirname "$0")/.."
for tool in valgrind nm python3; do
  command -v "$tool" >/dev/null || { echo "order.sh: needs $tool" >&2; exit 1; }
done
export CARGO_INCREMENTAL=0
target=${CARGO_TARGET_DIR:-target}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

# The binary that ships (the Dockerfile's build) and the benchmark's own: dev-dependencies
# enable other features of shared crates in the benchmark, and so other symbol names.
cargo build --release --locked --bin cloudlb
cp "$target/release/cloudlb" "$out/cloudlb"
cargo bench --bench scale --no-run
cp "$target/release/cloudlb" "$out/cloudlb-bench"

wrapper() {
  mkdir -p "$out/profiles/$1"
  echo "valgrind --tool=callgrind -q --demangle=no --dump-every-bb=50000000 --callgrind-out-file=$out/profiles/$1/cg.%p"
}
scenarios=(--services 100 --latency-samples 20 --footprint 300,100,20)
CLOUDLB_TEST_BIN="$out/cloudlb" CLOUDLB_TEST_WRAPPER=$(wrapper memory) cargo bench --bench scale -- "${scenarios[@]}"
CLOUDLB_TEST_BIN="$out/cloudlb-bench" CLOUDLB_TEST_WRAPPER=$(wrapper bench) cargo bench --bench scale -- "${scenarios[@]}"
for t in controller aws gcp local; do
  CLOUDLB_TEST_BIN="$out/cloudlb" CLOUDLB_TEST_WRAPPER=$(wrapper "$t") cargo test --test "$t" \
    || echo "order.sh: some $t tests failed under valgrind; their profiles are used all the same" >&2
done
python3 link/merge-order.py "$out/profiles" "$out/cloudlb" "$out/cloudlb-bench" > link/cloudlb.order
grep -c -v '^#' link/cloudlb.order | xargs echo "order.sh: link/cloudlb.order lists these many functions:"
