#!/usr/bin/env bash
# Runs the whole critest suite against a fresh wasm-cri daemon on a temp socket and prints
# `critest: N passed, M failed, K skipped` (of the suite's specs). Not a gate yet: exits 0 when critest ran,
# whatever it counted; non-zero only when the harness itself could not run. The JUnit report is kept in
# $WASM_CRI_ARTIFACTS/critest-junit.xml.
set -euo pipefail
cd "$(dirname "$0")/.."

: "${CARGO_TARGET_DIR:=$HOME/.cache/wasm-cri-target}"
: "${WASM_CRI_TOOLS:=$HOME/.cache/wasm-cri-tools}"
: "${WASM_CRI_BIN:=$CARGO_TARGET_DIR/debug/wasm-cri}"
: "${CRITEST:=$WASM_CRI_TOOLS/bin/critest}"
: "${CRICTL:=$WASM_CRI_TOOLS/bin/crictl}"
: "${WASM_CRI_ARTIFACTS:=/tmp/wasm-cri-artifacts}"
: "${CRITEST_TIMEOUT:=12m}"

work=$(mktemp -d /tmp/wasm-cri-critest.XXXXXX)
mkdir -p "$WASM_CRI_ARTIFACTS"
daemon_pid=
cleanup() {
  # Specs that fail halfway leave pods behind; remove them the way a user would, while the daemon is up.
  "$CRICTL" --runtime-endpoint "unix://$work/cri.sock" --timeout 30s rmp -fa >/dev/null 2>&1 || true
  [[ -n $daemon_pid ]] && kill "$daemon_pid" 2>/dev/null && wait "$daemon_pid" 2>/dev/null
  # Pod processes outlive the daemon by design: end any this run started that are still there (each works in
  # its state directory under $work).
  for pid in $(pgrep -f "wasm-cri pod" || true); do
    [[ $(readlink "/proc/$pid/cwd" 2>/dev/null) == "$work"/* ]] && kill -9 "$pid" 2>/dev/null
  done
  for ns in "$work"/state/netns/*; do [[ -e $ns ]] && umount -l "$ns" 2>/dev/null; done
  cp "$work/daemon.log" "$WASM_CRI_ARTIFACTS/critest-daemon.log" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

"$WASM_CRI_BIN" --socket "$work/cri.sock" --root "$work/root" --state "$work/state" \
  >"$work/daemon.log" 2>&1 &
daemon_pid=$!
for _ in $(seq 100); do [[ -S $work/cri.sock ]] && break; sleep 0.1; done
[[ -S $work/cri.sock ]] || { echo "critest: wasm-cri did not start"; cat "$work/daemon.log"; exit 1; }

set +e
timeout 20m "$CRITEST" --runtime-endpoint "unix://$work/cri.sock" --image-endpoint "unix://$work/cri.sock" \
  -ginkgo.junit-report="$WASM_CRI_ARTIFACTS/critest-junit.xml" -ginkgo.timeout="$CRITEST_TIMEOUT" -ginkgo.no-color \
  >"$WASM_CRI_ARTIFACTS/critest.log" 2>&1
rc=$?
set -e
tail -n 5 "$WASM_CRI_ARTIFACTS/critest.log"
report=$WASM_CRI_ARTIFACTS/critest-junit.xml
if [[ ! -s $report ]]; then
  echo "critest: no JUnit report (exit $rc); see $WASM_CRI_ARTIFACTS/critest.log"
  exit 0
fi
# Count testcases in the JUnit report: a <skipped> or <failure>/<error> child marks the outcome.
python3 - "$report" <<'PY'
import sys, xml.etree.ElementTree as ET
root = ET.parse(sys.argv[1]).getroot()
passed = failed = skipped = 0
for tc in root.iter("testcase"):
    name = tc.get("name", "")
    if name.startswith("[BeforeSuite]") or name.startswith("[AfterSuite]") or name.startswith("[SynchronizedBeforeSuite]"):
        continue
    if tc.find("skipped") is not None:
        skipped += 1
    elif tc.find("failure") is not None or tc.find("error") is not None:
        failed += 1
    else:
        passed += 1
print(f"critest: {passed} passed, {failed} failed, {skipped} skipped (of {passed + failed + skipped} specs)")
PY
