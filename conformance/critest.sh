#!/usr/bin/env bash
# Runs the whole critest suite against a fresh wasm-cri daemon on a temp socket and prints
# `critest: N passed, M failed, K skipped` (of the suite's specs). The committed list
# conformance/critest-expected-pass.txt is a ratchet: the run fails if one of those specs did not pass (new
# passes are reported so the list can grow). Exits non-zero also when the harness itself could not run.
#
# critest pulls fixed image names (registry.k8s.io/e2e-test-images/busybox:1.29-2, gcr.io/k8s-staging-cri-tools/...,
# registry.k8s.io/pause:3.9, ...). The harness serves Wasm stand-ins for them offline: it starts Debian's
# docker-registry on a free loopback port, pushes the images with `wcri-fixture critest-images` (the toolbox
# fixture as busybox, its httpd as nginx/httpd, the user and tag test images), and gives the daemon a config
# whose registry mirrors map registry.k8s.io, k8s.gcr.io, gcr.io and public.ecr.aws to that registry.
#
# Pods get a real network: the daemon's [cni] table points at a conflist written into the run's temp dir
# (Debian's bridge on a bridge named after the run, with the host as gateway and no masquerading, host-local
# addresses from 10.89.0.0/16 kept in the temp dir, portmap for hostPorts, loopback), so the networking specs
# fetch pages from pod IPs and from 127.0.0.1:<hostPort>. The bridge is deleted at the end; portmap's
# per-pod rules go with each pod's CNI DEL.
#
# Outputs in $OUT (default target/critest, or $WASM_CRI_ARTIFACTS when set): critest-junit.xml, critest.log,
# critest-results.txt (one `passed|failed|skipped <spec name>` line per spec, sorted by name, to compare with a
# committed ratchet), critest-images.txt (pushed names and digests), critest-daemon.log, critest-registry.log.
# Needs: wasm-cri and wcri-fixture built (cargo build -p cri-server -p conformance), critest, crictl,
# docker-registry, clang + wasi-libc, python3, curl, containernetworking-plugins (/usr/lib/cni) and iptables.
# With CRITEST_BENCHMARK=1 it runs critest's benchmark specs instead (BENCH_PODS, BENCH_CONTAINERS, BENCH_IMAGES
# lifecycles, one at a time) and writes medians per operation to $OUT/critest-benchmark.md; no ratchet.
set -euo pipefail
cd "$(dirname "$0")/.."
source conformance/harness.sh

: "${CARGO_TARGET_DIR:=$HOME/.cache/wasm-cri-target}"
: "${WASM_CRI_TOOLS:=$HOME/.cache/wasm-cri-tools}"
: "${WASM_CRI_BIN:=$CARGO_TARGET_DIR/debug/wasm-cri}"
: "${WCRI_FIXTURE:=$CARGO_TARGET_DIR/debug/wcri-fixture}"
: "${WCRI_REGISTRY_BIN:=/usr/bin/docker-registry}"
: "${CRITEST:=$WASM_CRI_TOOLS/bin/critest}"
: "${CRICTL:=$WASM_CRI_TOOLS/bin/crictl}"
: "${CRITEST_TIMEOUT:=50m}" # every container compiles its Wasm in a debug build: a full run takes a while
: "${CRITEST_HARD_TIMEOUT:=60m}"
OUT=${OUT:-${WASM_CRI_ARTIFACTS:-target/critest}}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)

for bin in "$WASM_CRI_BIN" "$WCRI_FIXTURE" "$WCRI_REGISTRY_BIN" "$CRITEST" "$CRICTL"; do
  [[ -x $bin ]] || { echo "critest: $bin not found (build with: cargo build -p cri-server -p conformance)"; exit 1; }
done

work=$(mktemp -d /tmp/wasm-cri-critest.XXXXXX)
cni_bridge=wcrit$(( $$ % 100000 )) # interface names hold 15 bytes
daemon_pid=
registry_pid=
cleanup() {
  set +e # best effort: one failed step must not skip the rest
  # Specs that fail halfway leave pods behind; remove them the way a user would, while the daemon is up.
  if [[ -n $daemon_pid ]]; then
    "$CRICTL" --runtime-endpoint "unix://$work/cri.sock" --timeout 30s rmp -fa >/dev/null 2>&1 || true
    kill "$daemon_pid" 2>/dev/null && wait "$daemon_pid" 2>/dev/null
  fi
  # Pod processes outlive the daemon by design: end any this run started that are still there (each works in
  # its state directory under $work).
  for pid in $(pgrep -f "wasm-cri pod" || true); do
    [[ $(readlink "/proc/$pid/cwd" 2>/dev/null) == "$work"/* ]] && kill -9 "$pid" 2>/dev/null
  done
  for ns in "$work"/state/netns/*; do [[ -e $ns ]] && umount -l "$ns" 2>/dev/null; done
  ip link del "$cni_bridge" 2>/dev/null
  if [[ -n $registry_pid ]]; then
    kill "$registry_pid" 2>/dev/null && wait "$registry_pid" 2>/dev/null
  fi
  cp "$work/daemon.log" "$OUT/critest-daemon.log" 2>/dev/null || true
  cp "$work/registry.log" "$OUT/critest-registry.log" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

# --- a throwaway registry holding the critest images ---
start_registry "$work" || { echo "critest: registry did not start"; exit 1; }

"$WCRI_FIXTURE" critest-images --registry "$registry" --out "$work/fixtures" >"$OUT/critest-images.txt" \
  || { echo "critest: pushing the critest images failed"; exit 1; }
echo "critest: pushed $(wc -l <"$OUT/critest-images.txt") images to $registry"

# --- the daemon, pulling critest's image names from that registry ---
{
  for host in registry.k8s.io k8s.gcr.io gcr.io public.ecr.aws; do
    printf '[registries."%s"]\nmirrors = ["http://%s"]\nfallback_to_origin = false\n\n' "$host" "$registry"
  done
} >"$work/wasm-cri.toml"
: "${CNI_BIN_DIR:=/usr/lib/cni}"
write_bridge_conflist "$work/net.d/10-wasm-cri-critest.conflist" wasm-cri-critest "$cni_bridge" 10.89.0.0/16 "$work/cni-ipam"
printf '[cni]\nconf_dir = "%s"\nbin_dirs = ["%s"]\n' "$work/net.d" "$CNI_BIN_DIR" >>"$work/wasm-cri.toml"
cat >"$work/test-images.yaml" <<'EOF'
defaultTestContainerImage: registry.k8s.io/e2e-test-images/busybox:1.29-2
webServerTestImage: registry.k8s.io/e2e-test-images/nginx:1.14-2
EOF

"$WASM_CRI_BIN" --config "$work/wasm-cri.toml" --socket "$work/cri.sock" --root "$work/root" --state "$work/state" \
  >"$work/daemon.log" 2>&1 &
daemon_pid=$!
for _ in $(seq 100); do [[ -S $work/cri.sock ]] && break; sleep 0.1; done
[[ -S $work/cri.sock ]] || { echo "critest: wasm-cri did not start"; cat "$work/daemon.log"; exit 1; }

if [[ ${CRITEST_BENCHMARK:-0} == 1 ]]; then
  # critest's benchmark specs instead of the validation suite: pod, container and image lifecycles timed per
  # operation, summarised as medians in $OUT/critest-benchmark.md (raw JSON in $OUT/benchmark/).
  cat >"$work/bench-params.yaml" <<PARAMS
podsNumber: ${BENCH_PODS:-20}
podsNumberParallel: 1
podBenchmarkTimeoutSeconds: 300
containersNumber: ${BENCH_CONTAINERS:-20}
containersNumberParallel: 1
containerBenchmarkTimeoutSeconds: 300
podContainerStartBenchmarkTimeoutSeconds: 300
imagesNumber: ${BENCH_IMAGES:-10}
imagesNumberParallel: 1
imageBenchmarkTimeoutSeconds: 300
imagePullingBenchmarkImage: registry.k8s.io/e2e-test-images/busybox:1.29-2
imageListingBenchmarkImages:
  - registry.k8s.io/e2e-test-images/busybox:1.29-2
  - registry.k8s.io/e2e-test-images/nginx:1.14-2
  - registry.k8s.io/pause:3.9
PARAMS
  mkdir -p "$OUT/benchmark"
  set +e
  timeout "$CRITEST_HARD_TIMEOUT" "$CRITEST" --runtime-endpoint "unix://$work/cri.sock" --image-endpoint "unix://$work/cri.sock" \
    -test-images-file="$work/test-images.yaml" -benchmark \
    -benchmarking-params-file="$work/bench-params.yaml" -benchmarking-output-dir="$OUT/benchmark" \
    -ginkgo.no-color >"$OUT/critest-benchmark.log" 2>&1
  rc=$?
  set -e
  tail -n 5 "$OUT/critest-benchmark.log"
  python3 - "$OUT/benchmark" "$OUT/critest-benchmark.md" <<'PY'
import json, pathlib, statistics, sys
rows = []
for f in sorted(pathlib.Path(sys.argv[1]).glob("*.json")):
    data = json.loads(f.read_text())
    names = data.get("operationsNames") or []
    points = data.get("datapoints") or []
    for i, name in enumerate(names):
        values = [p["operationsDurationsNs"][i] / 1e6 for p in points if len(p.get("operationsDurationsNs") or []) > i]
        if values:
            rows.append((f.stem, name, len(values), statistics.median(values), max(values)))
with open(sys.argv[2], "w") as out:
    out.write("| benchmark | operation | samples | median ms | max ms |\n|---|---|---|---|---|\n")
    for r in rows:
        out.write(f"| {r[0]} | {r[1]} | {r[2]} | {r[3]:.1f} | {r[4]:.1f} |\n")
print(open(sys.argv[2]).read())
PY
  exit "$rc"
fi

set +e
timeout "$CRITEST_HARD_TIMEOUT" "$CRITEST" --runtime-endpoint "unix://$work/cri.sock" --image-endpoint "unix://$work/cri.sock" \
  -test-images-file="$work/test-images.yaml" \
  -ginkgo.junit-report="$OUT/critest-junit.xml" -ginkgo.timeout="$CRITEST_TIMEOUT" -ginkgo.no-color \
  >"$OUT/critest.log" 2>&1
rc=$?
set -e
tail -n 5 "$OUT/critest.log"
report=$OUT/critest-junit.xml
if [[ ! -s $report ]]; then
  echo "critest: no JUnit report (exit $rc); see $OUT/critest.log"
  exit 0
fi
# Count testcases in the JUnit report: a <skipped> or <failure>/<error> child marks the outcome. Also write
# the per-spec outcomes, sorted by name.
python3 - "$report" "$OUT/critest-results.txt" <<'PY'
import sys, xml.etree.ElementTree as ET
root = ET.parse(sys.argv[1]).getroot()
outcomes = []
for tc in root.iter("testcase"):
    name = tc.get("name", "")
    if name.startswith("[BeforeSuite]") or name.startswith("[AfterSuite]") or name.startswith("[SynchronizedBeforeSuite]"):
        continue
    if tc.find("skipped") is not None:
        outcome = "skipped"
    elif tc.find("failure") is not None or tc.find("error") is not None:
        outcome = "failed"
    else:
        outcome = "passed"
    outcomes.append((" ".join(name.split()), outcome))
outcomes.sort()
with open(sys.argv[2], "w") as f:
    for name, outcome in outcomes:
        f.write(f"{outcome:<7} {name}\n")
count = {k: sum(1 for _, o in outcomes if o == k) for k in ("passed", "failed", "skipped")}
print(f"critest: {count['passed']} passed, {count['failed']} failed, {count['skipped']} skipped (of {len(outcomes)} specs)")
PY

# The ratchet: every spec in the committed list must have passed.
expected=conformance/critest-expected-pass.txt
python3 - "$OUT/critest-results.txt" "$expected" <<'PY'
import sys
results = {}
for line in open(sys.argv[1]):
    outcome, _, name = line.rstrip("\n").partition(" ")
    results[name.strip()] = outcome
expected = [l.strip() for l in open(sys.argv[2]) if l.strip() and not l.startswith("#")]
regressed = [n for n in expected if results.get(n) != "passed"]
new = sorted(n for n, o in results.items() if o == "passed" and n not in set(expected))
for n in new:
    print(f"critest: newly passing (add to {sys.argv[2]}): {n}")
for n in regressed:
    print(f"critest: REGRESSION, expected to pass but {results.get(n, 'did not run')}: {n}")
if regressed:
    sys.exit(1)
print(f"critest: all {len(expected)} specs of the ratchet passed")
PY

