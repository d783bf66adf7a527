#!/usr/bin/env bash
# Builds release binaries and runs wcri-bench (pod start latency, memory per idle pod) against the release
# wasm-cri on a temp root with a throwaway registry. Needs root: every pod gets a network namespace.
# Arguments are passed to wcri-bench (--runs N, --warmup N, --pods N, --settle-ms MS). See docs/benchmarks.md.
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ $(id -u) -ne 0 ]]; then
  echo "bench.sh: must run as root (pods get network namespaces)" >&2
  exit 1
fi
: "${CARGO_TARGET_DIR:=$HOME/.cache/wasm-cri-target}"
export CARGO_TARGET_DIR

cargo build --release -p cri-server -p conformance
WASM_CRI_BIN="$CARGO_TARGET_DIR/release/wasm-cri" exec "$CARGO_TARGET_DIR/release/wcri-bench" "$@"
