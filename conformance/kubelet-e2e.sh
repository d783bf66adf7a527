#!/usr/bin/env bash
# Runs the upstream kubelet (built from Go modules by conformance/kubelet/build.sh) in standalone mode against the
# real wasm-cri binary and checks the scenarios of issue 6 from what the kubelet and wasm-cri report: the
# kubelet's pod status endpoint (read-only port on 127.0.0.1), crictl, and the log files the kubelet reads.
# Prints `PASS|FAIL <scenario>` per scenario (after indented lines saying what was seen or why it failed), a
# summary and `kubelet-e2e: N passed, M failed`; exits 0 only when every scenario passed. docs/kubelet.md explains every kubelet setting used and what each scenario asserts.
#
# Everything lives in one temp dir: the registry (Debian's docker-registry on a free loopback port, holding the
# Wasm fixtures pushed by wcri-fixture), wasm-cri's socket/root/state, a CNI bridge config (as critest.sh: a
# bridge named after the run, host-local addresses from 10.90.0.0/16), and the kubelet's root dir, static pod
# manifests, pod logs dir and certificates. The cleanup stops the kubelet first (else it would restart what we
# remove), puts back the node sysctls the kubelet changed, removes every pod through crictl, stops wasm-cri, and
# deletes the bridge and the temp dir.
#
# Needs root, wasm-cri and wcri-fixture built (cargo build -p cri-server -p conformance), crictl, Go (for the
# kubelet's first build, ~10 min on 2 cores, then cached), docker-registry, containernetworking-plugins, jq, curl.
# Outputs in $OUT (default target/kubelet-e2e, or $WASM_CRI_ARTIFACTS): kubelet-e2e.log (this run's lines),
# kubelet.log, kubelet-daemon.log (wasm-cri), kubelet-pods.json (the kubelet's last /pods answer).
set -euo pipefail
cd "$(dirname "$0")/.."
source conformance/harness.sh

: "${CARGO_TARGET_DIR:=$HOME/.cache/wasm-cri-target}"
: "${WASM_CRI_TOOLS:=$HOME/.cache/wasm-cri-tools}"
: "${WASM_CRI_BIN:=$CARGO_TARGET_DIR/debug/wasm-cri}"
: "${WCRI_FIXTURE:=$CARGO_TARGET_DIR/debug/wcri-fixture}"
: "${WCRI_REGISTRY_BIN:=/usr/bin/docker-registry}"
: "${CRICTL:=$WASM_CRI_TOOLS/bin/crictl}"
: "${CNI_BIN_DIR:=/usr/lib/cni}"
export WASM_CRI_TOOLS
OUT=${OUT:-${WASM_CRI_ARTIFACTS:-target/kubelet-e2e}}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
exec > >(tee "$OUT/kubelet-e2e.log") 2>&1

if [[ $(id -u) != 0 ]]; then
  echo "kubelet-e2e: skipped: the kubelet and pod network namespaces need root"
  exit 0
fi
KUBELET=${KUBELET:-$(bash conformance/kubelet/build.sh)}
for bin in "$WASM_CRI_BIN" "$WCRI_FIXTURE" "$WCRI_REGISTRY_BIN" "$CRICTL" "$KUBELET"; do
  [[ -x $bin ]] || { echo "kubelet-e2e: $bin not found (build with: cargo build -p cri-server -p conformance)"; exit 1; }
done

work=$(mktemp -d /tmp/wasm-cri-kubelet.XXXXXX)
cni_bridge=wcrik$(($$ % 100000)) # interface names hold 15 bytes
NODE=wcri-e2e                    # --hostname-override: static pods are named <manifest name>-$NODE
daemon_pid=
kubelet_pid=
ro_port=
registry_pid=
# Two paths of the kubelet ignore --root-dir and podLogsDir: the device manager's socket in
# /var/lib/kubelet/device-plugins, and the legacy per-container log symlinks in /var/log/containers. The cleanup
# removes the directories this run creates and the symlinks into its dir.
leftovers=()
for d in /var/lib/kubelet /var/lib/kubelet/device-plugins /var/log/containers; do
  [[ -e $d ]] || leftovers+=("$d")
done
# The kubelet sets these node sysctls at start (as on any node); the cleanup gives the machine its values back.
declare -A saved_sysctls=()
for k in vm/overcommit_memory vm/panic_on_oom kernel/panic kernel/panic_on_oops kernel/keys/root_maxkeys \
  kernel/keys/root_maxbytes; do
  saved_sysctls[$k]=$(cat "/proc/sys/$k")
done
crictl() { "$CRICTL" --runtime-endpoint "unix://$work/cri.sock" --image-endpoint "unix://$work/cri.sock" --timeout 60s "$@"; }

cleanup() {
  set +e # best effort: one failed step must not skip the rest
  if [[ -n $kubelet_pid ]]; then
    curl -fsS --max-time 5 "http://127.0.0.1:$ro_port/pods" >"$OUT/kubelet-pods.json" 2>/dev/null
    stop_pid "$kubelet_pid"
  fi
  local k l
  for l in /var/log/containers/*.log; do
    [[ -L $l && $(readlink "$l") == "$work"/* ]] && rm -f "$l"
  done
  ((${#leftovers[@]})) && rm -rf "${leftovers[@]}"
  for k in "${!saved_sysctls[@]}"; do echo "${saved_sysctls[$k]}" >"/proc/sys/$k" 2>/dev/null; done
  if [[ -n $daemon_pid ]]; then
    crictl rmp -fa >/dev/null 2>&1
    stop_pid "$daemon_pid"
  fi
  # Pod processes outlive the daemon by design: end any this run started (each works in its state dir).
  for pid in $(pgrep -f "wasm-cri pod" || true); do
    [[ $(readlink "/proc/$pid/cwd" 2>/dev/null) == "$work"/* ]] && kill -9 "$pid" 2>/dev/null
  done
  # Whatever the kubelet or wasm-cri mounted under the run's dir (netns pins, volumes), deepest first.
  awk -v w="$work/" 'index($2, w) == 1 { print $2 }' /proc/self/mounts | sort -r | while read -r m; do
    umount -l "$m" 2>/dev/null
  done
  ip link del "$cni_bridge" 2>/dev/null
  if [[ -n $registry_pid ]]; then
    stop_pid "$registry_pid"
  fi
  cp "$work/kubelet.log" "$OUT/kubelet.log" 2>/dev/null
  cp "$work/daemon.log" "$OUT/kubelet-daemon.log" 2>/dev/null
  rm -rf "$work"
}
# stop_pid PID: SIGTERM, then SIGKILL if it is still there after 10 s.
stop_pid() {
  kill "$1" 2>/dev/null || return 0
  for _ in $(seq 20); do
    kill -0 "$1" 2>/dev/null || break
    sleep 0.5
  done
  kill -9 "$1" 2>/dev/null
  wait "$1" 2>/dev/null
}
trap cleanup EXIT
trap 'exit 130' INT # run the cleanup on Ctrl-C and kill too
trap 'exit 143' TERM

log() { echo "kubelet-e2e: $(date +%T) $*"; }

# --- results ---
passed=0
failed=0
declare -a summary=()
# scenario NAME FUNCTION: runs FUNCTION (which prints why it failed) and records PASS or FAIL.
scenario() {
  local name=$1 start=$SECONDS
  shift
  log "scenario: $name"
  if "$@"; then
    passed=$((passed + 1))
    summary+=("PASS $name ($((SECONDS - start)) s)")
    echo "PASS $name"
  else
    failed=$((failed + 1))
    summary+=("FAIL $name ($((SECONDS - start)) s)")
    echo "FAIL $name"
  fi
}
# wait_until SECONDS DESCRIPTION COMMAND...: polls COMMAND every second; prints DESCRIPTION if it never succeeds.
wait_until() {
  local limit=$1 desc=$2
  local deadline=$((SECONDS + limit))
  shift 2
  until "$@" >/dev/null 2>&1; do
    if ((SECONDS >= deadline)); then
      echo "  timed out after $limit s waiting for: $desc"
      return 1
    fi
    sleep 1
  done
}
fail() {
  echo "  $*"
  return 1
}

# --- the kubelet's view (read-only port, /pods: static pods with the status the kubelet computed) ---
kpods() { curl -fsS --max-time 5 "http://127.0.0.1:$ro_port/pods"; }
# kpod NAME: the pod object of static pod NAME (empty when the kubelet has none).
kpod() { kpods | jq -c --arg n "$1-$NODE" '.items[] | select(.metadata.name == $n)'; }
# kq NAME JQ: evaluates JQ on pod NAME; fails when the pod is unknown or JQ yields false/null.
kq() {
  local pod
  pod=$(kpod "$1") && [[ -n $pod ]] && jq -e "$2" <<<"$pod"
}
# The status of container C (regular or init) of pod P, for use inside kq's JQ.
cs() { echo "([.status.containerStatuses[]?, .status.initContainerStatuses[]?] | map(select(.name == \"$1\")) | .[0])"; }
# sandbox_of NAME: id of the Ready sandbox of static pod NAME, from wasm-cri.
sandbox_of() { crictl pods --name "^$1-$NODE\$" --state ready -q | head -n 1; }

# --- a throwaway registry with the fixture images ---
start_registry "$work" || exit 1
# wasm/<fixture>:latest (exitcode, memhog, hello, toolbox, ...) and the busybox/nginx stand-ins (the toolbox as
# busybox with applets on PATH; nginx = its httpd serving port 80, which the image's ExposedPorts pre-opens).
"$WCRI_FIXTURE" build-and-push --registry "$registry" --out "$work/fixtures" >"$work/images.txt"
"$WCRI_FIXTURE" critest-images --registry "$registry" --out "$work/fixtures" >>"$work/images.txt"
log "pushed $(wc -l <"$work/images.txt") images to $registry"
BUSYBOX=$registry/e2e-test-images/busybox:1.29-2
NGINX=$registry/e2e-test-images/nginx:1.14-2
EXITCODE=$registry/wasm/exitcode:latest
MEMHOG=$registry/wasm/memhog:latest
HELLO=$registry/wasm/hello:latest

# --- wasm-cri, with a CNI bridge network (the same plugins as critest.sh) ---
write_bridge_conflist "$work/net.d/10-wasm-cri-kubelet.conflist" wasm-cri-kubelet "$cni_bridge" 10.90.0.0/16 "$work/cni-ipam"
printf '[cni]\nconf_dir = "%s"\nbin_dirs = ["%s"]\n' "$work/net.d" "$CNI_BIN_DIR" >"$work/wasm-cri.toml"
start_daemon() {
  "$WASM_CRI_BIN" --config "$work/wasm-cri.toml" --socket "$work/cri.sock" --root "$work/root" \
    --state "$work/state" >>"$work/daemon.log" 2>&1 &
  daemon_pid=$!
  wait_until 60 "wasm-cri's socket" crictl version || { tail -n 20 "$work/daemon.log"; return 1; }
}
start_daemon || exit 1
log "wasm-cri running (pid $daemon_pid)"

# --- static pod manifests ---
manifests=$work/manifests
mkdir -p "$manifests"
# web: a long-running server and a container that exits 0; OnFailure, so the finished one stays Completed.
cat >"$manifests/web.yaml" <<EOF
apiVersion: v1
kind: Pod
metadata: {name: web, namespace: default}
spec:
  restartPolicy: OnFailure
  containers:
  - name: server
    image: $NGINX
    imagePullPolicy: IfNotPresent
  - name: once
    image: $BUSYBOX
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", "echo hello-from-once; echo to-stderr >&2"]
EOF
# logger: writes ~1.3 KiB/s so the kubelet's 4 KiB containerLogMaxSize makes it rotate every few seconds.
cat >"$manifests/logger.yaml" <<EOF
apiVersion: v1
kind: Pod
metadata: {name: logger, namespace: default}
spec:
  containers:
  - name: chatty
    image: $BUSYBOX
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", "while true; do echo 'logger: 0123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789'; sleep 0.1; done"]
EOF
# crash: exits 3 over and over under restartPolicy Always.
cat >"$manifests/crash.yaml" <<EOF
apiVersion: v1
kind: Pod
metadata: {name: crash, namespace: default}
spec:
  restartPolicy: Always
  containers:
  - {name: fail, image: $EXITCODE, imagePullPolicy: IfNotPresent, args: ["3"]}
EOF
cat >"$manifests/onfailure.yaml" <<EOF
apiVersion: v1
kind: Pod
metadata: {name: onfailure, namespace: default}
spec:
  restartPolicy: OnFailure
  containers:
  - {name: ok, image: $EXITCODE, imagePullPolicy: IfNotPresent, args: ["0"]}
  - {name: fail, image: $EXITCODE, imagePullPolicy: IfNotPresent, args: ["3"]}
EOF
cat >"$manifests/never.yaml" <<EOF
apiVersion: v1
kind: Pod
metadata: {name: never, namespace: default}
spec:
  restartPolicy: Never
  containers:
  - {name: fail, image: $EXITCODE, imagePullPolicy: IfNotPresent, args: ["3"]}
EOF
# oom: memhog allocates 1 MiB at a time without end; the 32 MiB limit must stop it.
cat >"$manifests/oom.yaml" <<EOF
apiVersion: v1
kind: Pod
metadata: {name: oom, namespace: default}
spec:
  restartPolicy: Never
  containers:
  - name: hog
    image: $MEMHOG
    imagePullPolicy: IfNotPresent
    resources: {limits: {memory: 32Mi}}
EOF
# init: the init container leaves a marker in an emptyDir that the main container prints.
cat >"$manifests/init.yaml" <<EOF
apiVersion: v1
kind: Pod
metadata: {name: init, namespace: default}
spec:
  volumes: [{name: shared, emptyDir: {}}]
  initContainers:
  - name: setup
    image: $BUSYBOX
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", "echo init-ran > /shared/marker"]
    volumeMounts: [{name: shared, mountPath: /shared}]
  containers:
  - name: main
    image: $BUSYBOX
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", "cat /shared/marker; sleep 100000"]
    volumeMounts: [{name: shared, mountPath: /shared}]
EOF
# probes: exec probes that pass, an httpGet probe against the httpd in the pod that passes, and one against a
# missing page that must keep its container unready (so a probe that always passed would be caught).
cat >"$manifests/probes.yaml" <<EOF
apiVersion: v1
kind: Pod
metadata: {name: probes, namespace: default}
spec:
  containers:
  - name: exec
    image: $BUSYBOX
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", "touch /tmp/ready; sleep 100000"]
    readinessProbe: {exec: {command: ["cat", "/tmp/ready"]}, periodSeconds: 2, timeoutSeconds: 20}
    livenessProbe: {exec: {command: ["cat", "/tmp/ready"]}, periodSeconds: 2, timeoutSeconds: 20}
  - name: http
    image: $NGINX
    imagePullPolicy: IfNotPresent
    readinessProbe: {httpGet: {path: /, port: 80}, periodSeconds: 2, timeoutSeconds: 5}
    livenessProbe: {httpGet: {path: /, port: 80}, periodSeconds: 2, timeoutSeconds: 5}
  - name: unready
    image: $BUSYBOX
    imagePullPolicy: IfNotPresent
    command: ["sleep", "100000"]
    readinessProbe: {httpGet: {path: /no-such-page, port: 80}, periodSeconds: 2, timeoutSeconds: 5}
EOF
# liveness: an exec liveness probe that fails (the file never exists): the kubelet must restart the container.
cat >"$manifests/liveness.yaml" <<EOF
apiVersion: v1
kind: Pod
metadata: {name: liveness, namespace: default}
spec:
  containers:
  - name: doomed
    image: $BUSYBOX
    imagePullPolicy: IfNotPresent
    command: ["sleep", "100000"]
    livenessProbe: {exec: {command: ["cat", "/tmp/never-created"]}, periodSeconds: 2, failureThreshold: 2, timeoutSeconds: 20}
EOF
# gc: the only user of wasm/hello; its manifest is removed early, so image GC must delete that image.
cat >"$manifests/gc.yaml" <<EOF
apiVersion: v1
kind: Pod
metadata: {name: gc, namespace: default}
spec:
  restartPolicy: Never
  containers:
  - {name: hello, image: $HELLO, imagePullPolicy: IfNotPresent}
EOF

# --- the kubelet, standalone (no kubeconfig: no API server), on loopback ports ---
ro_port=$(free_port)
kubelet_port=$(free_port)
healthz_port=$(free_port)
mkdir -p "$work/kubelet" "$work/pod-logs"
cat >"$work/kubelet-config.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
containerRuntimeEndpoint: unix://$work/cri.sock
imageServiceEndpoint: unix://$work/cri.sock
cgroupDriver: cgroupfs
runtimeRequestTimeout: 5m
staticPodPath: $manifests
fileCheckFrequency: 2s
podLogsDir: $work/pod-logs
volumePluginDir: $work/volume-plugins
makeIPTablesUtilChains: false
address: 127.0.0.1
port: $kubelet_port
readOnlyPort: $ro_port
healthzBindAddress: 127.0.0.1
healthzPort: $healthz_port
authentication: {anonymous: {enabled: true}, webhook: {enabled: false}}
authorization: {mode: AlwaysAllow}
failSwapOn: false
failCgroupV1: false
cgroupsPerQOS: false
enforceNodeAllocatable: []
evictionHard: {memory.available: "1Mi", nodefs.available: "1%", imagefs.available: "1%", nodefs.inodesFree: "1%"}
imageMinimumGCAge: 30s
imageMaximumGCAge: 1m
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
containerLogMaxSize: 4Ki
containerLogMaxFiles: 3
containerLogMonitorInterval: 3s
EOF
kubelet_start=$SECONDS
"$KUBELET" --config "$work/kubelet-config.yaml" --root-dir "$work/kubelet" --cert-dir "$work/kubelet/pki" \
  --hostname-override "$NODE" --v=2 >"$work/kubelet.log" 2>&1 &
kubelet_pid=$!
for _ in $(seq 120); do
  curl -fsS "http://127.0.0.1:$healthz_port/healthz" >/dev/null 2>&1 && break
  kill -0 "$kubelet_pid" 2>/dev/null || break
  sleep 1
done
if ! curl -fsS "http://127.0.0.1:$healthz_port/healthz" >/dev/null 2>&1; then
  echo "kubelet-e2e: the kubelet did not become healthy on 127.0.0.1:$healthz_port; its log ends with:"
  grep -v 'flags.go' "$work/kubelet.log" | tail -n 30
  exit 1
fi
log "kubelet $("$KUBELET" --version) running (pid $kubelet_pid)"

# --- scenarios ---
web_running() {
  wait_until 240 "web Running with server running and once Completed" \
    kq web ".status.phase == \"Running\" and ($(cs server).state.running != null)
      and ($(cs once).state.terminated.reason == \"Completed\")" || { kpod web; return 1; }
  local dir
  dir=$(compgen -G "$work/pod-logs/default_web-${NODE}_*" | head -n 1)
  [[ -n $dir ]] || fail "no pod log dir default_web-${NODE}_<uid> under $work/pod-logs" || return 1
  grep -q '^[0-9T:.+Z-]* stdout F hello-from-once$' "$dir/once/0.log" ||
    fail "$dir/once/0.log lacks the CRI line 'stdout F hello-from-once': $(head -c 300 "$dir/once/0.log")" || return 1
  grep -q ' stderr F to-stderr$' "$dir/once/0.log" || fail "$dir/once/0.log lacks the stderr line" || return 1
  [[ -f $dir/server/0.log ]] || fail "no $dir/server/0.log" || return 1
  echo "  web Running; $dir/once/0.log has the container's stdout and stderr lines"
}

# The gc pod runs wasm/hello once; its manifest goes right away, so that by the kubelet's image GC pass 5 minutes
# after its start no container uses that image any more (the kubelet's container GC removes the exited one).
gc_pod_done() {
  wait_until 180 "gc: hello Completed" kq gc "$(cs hello).state.terminated.reason == \"Completed\"" || { kpod gc; return 1; }
  rm "$manifests/gc.yaml"
  wait_until 60 "the kubelet to drop gc" bash -c "! curl -fsS http://127.0.0.1:$ro_port/pods | grep -q '\"gc-$NODE\"'"
}

log_rotation() {
  wait_until 120 "logger running" kq logger "$(cs chatty).state.running != null" || return 1
  local dir
  dir=$(compgen -G "$work/pod-logs/default_logger-${NODE}_*" | head -n 1)/chatty
  # The kubelet renames 0.log to 0.log.<timestamp>, asks wasm-cri to reopen, and gzips older rotations.
  wait_until 90 "two rotated files of $dir/0.log" \
    bash -c "(( \$(ls '$dir' | grep -c '^0\.log\.') >= 2 ))" || { ls -l "$dir"; return 1; }
  # After the rotations the reopened 0.log must still be the file being written: if ReopenContainerLog did
  # not work, wasm-cri would keep writing the renamed file and 0.log would stay empty and old.
  wait_until 10 "$dir/0.log written to within the last 3 s" \
    bash -c "[[ -s '$dir/0.log' ]] && (( \$(date +%s) - \$(stat -c %Y '$dir/0.log') <= 3 ))" || { ls -l --time-style=+%T "$dir"; return 1; }
  tail -n 1 "$dir/0.log" | grep -q ' stdout F logger: ' || fail "0.log's last line is not a CRI line" || return 1
  echo "  rotated: $(ls "$dir" | tr '\n' ' ')"
}

crash_loop() {
  # Note when the kubelet's restartCount changes while we watch (the pod may have restarted before this
  # scenario began), until two consecutive changes were seen: the time between them is the back-off the
  # kubelet waited (restart 1 is immediate, restart n >= 2 waits 10 s * 2^(n-2)).
  local deadline=$((SECONDS + 240)) last=-1 first=-1 n pod saw_backoff=0
  local -a at=()
  while ((SECONDS < deadline)); do
    pod=$(kpod crash) || true
    if [[ -n $pod ]]; then
      n=$(jq -r "$(cs fail).restartCount // 0" <<<"$pod")
      if ((last == -1)); then
        first=$n
      elif ((n != last)); then
        at[n]=$SECONDS
      fi
      last=$n
      jq -e "$(cs fail).state.waiting.reason == \"CrashLoopBackOff\"" <<<"$pod" >/dev/null && saw_backoff=1
      ((n >= 2 && n - 1 > first)) && [[ -n ${at[n]:-} && -n ${at[n - 1]:-} ]] && ((saw_backoff)) && break
    fi
    sleep 1
  done
  [[ -n ${at[last]:-} && -n ${at[last - 1]:-} ]] && ((last >= 2)) ||
    fail "saw restartCount go from $first to $last in 240 s; need two restarts in a row after the first" || return 1
  ((saw_backoff)) || fail "waiting.reason never was CrashLoopBackOff" || return 1
  kq crash "$(cs fail).lastState.terminated.exitCode == 3 and $(cs fail).lastState.terminated.reason == \"Error\"" \
    >/dev/null || { kpod crash; fail "lastState.terminated is not exit 3 / Error"; return 1; }
  local gap=$((at[last] - at[last - 1])) backoff=$((10 << (last - 2)))
  # At least the back-off (less 2 s of polling error); the kubelet retries a pod in back-off every ~10 s, so a
  # restart may come up to that much later.
  ((gap >= backoff - 2 && gap <= backoff + 30)) ||
    fail "restarts $((last - 1)) and $last were $gap s apart; the kubelet's back-off before restart $last is $backoff s" ||
    return 1
  grep -q "back-off ${backoff}s restarting failed container=fail pod=crash-$NODE" "$work/kubelet.log" ||
    fail "the kubelet's log does not say 'back-off ${backoff}s restarting failed container=fail pod=crash-$NODE'" ||
    return 1
  echo "  CrashLoopBackOff, lastState exit 3 (Error); restarts $((last - 1)) -> $last: $gap s apart (kubelet back-off ${backoff}s)"
}

restart_policies() {
  wait_until 120 "onfailure: ok Completed with no restart, fail restarted" \
    kq onfailure "($(cs ok).state.terminated.reason == \"Completed\") and ($(cs ok).restartCount == 0)
      and ($(cs fail).restartCount >= 1)" || { kpod onfailure; return 1; }
  wait_until 120 "never: Failed, fail terminated with exit 3 and never restarted" \
    kq never ".status.phase == \"Failed\" and ($(cs fail).state.terminated.exitCode == 3) and ($(cs fail).restartCount == 0)" ||
    { kpod never; return 1; }
  sleep 12 # longer than the first back-off: a Never pod must still not have restarted
  kq never "$(cs fail).restartCount == 0" >/dev/null || fail "the Never pod restarted" || return 1
  local n
  n=$(crictl ps -a --name '^fail$' -o json | jq --arg p "never-$NODE" '[.containers[] | select(.labels["io.kubernetes.pod.name"] == $p)] | length')
  ((n == 1)) || fail "wasm-cri has $n containers for never/fail, expected 1" || return 1
  echo "  OnFailure: exit 0 Completed (0 restarts), exit 3 restarted; Never: phase Failed, 1 container"
}

oom_killed() {
  wait_until 180 "oom: hog terminated with reason OOMKilled" \
    kq oom "$(cs hog).state.terminated.reason == \"OOMKilled\" and $(cs hog).state.terminated.exitCode == 137" ||
    { kpod oom; return 1; }
  local id limit
  id=$(crictl ps -a --name '^hog$' -q | head -n 1)
  limit=$(crictl inspect "$id" | jq -r '.status.resources.linux.memoryLimitInBytes // empty')
  [[ -z $limit || $limit == 33554432 ]] || fail "wasm-cri reports a memory limit of $limit, expected 33554432" || return 1
  echo "  kubelet: hog terminated OOMKilled, exit 137 (limit 32Mi)"
}

init_container() {
  wait_until 180 "init: setup Completed, main running" \
    kq init "($(cs setup).state.terminated.reason == \"Completed\") and ($(cs main).state.running != null)" ||
    { kpod init; return 1; }
  local pod fin start
  pod=$(kpod init)
  fin=$(jq -r "$(cs setup).state.terminated.finishedAt" <<<"$pod")
  start=$(jq -r "$(cs main).state.running.startedAt" <<<"$pod")
  [[ ! $start < $fin ]] || fail "the kubelet says main started ($start) before setup finished ($fin)" || return 1
  # The kubelet's times have whole seconds; wasm-cri's have nanoseconds.
  local sandbox setup_id main_id fin_ns start_ns
  sandbox=$(sandbox_of init)
  setup_id=$(crictl ps -a --pod "$sandbox" --name '^setup$' -q | head -n 1)
  main_id=$(crictl ps --pod "$sandbox" --name '^main$' -q | head -n 1)
  [[ -n $setup_id && -n $main_id ]] || fail "wasm-cri lists no setup ($setup_id) or main ($main_id) container" || return 1
  fin_ns=$(date -d "$(crictl inspect "$setup_id" | jq -r .status.finishedAt)" +%s%N)
  start_ns=$(date -d "$(crictl inspect "$main_id" | jq -r .status.startedAt)" +%s%N)
  ((start_ns >= fin_ns)) || fail "wasm-cri says main started before setup finished ($start_ns < $fin_ns ns)" || return 1
  local dir
  dir=$(compgen -G "$work/pod-logs/default_init-${NODE}_*" | head -n 1)
  wait_until 30 "main's log to show the init container's marker" grep -q ' stdout F init-ran$' "$dir/main/0.log" ||
    return 1
  echo "  setup finished $fin, main started $start ($(((start_ns - fin_ns) / 1000000)) ms later) and read the marker setup wrote"
}

probes() {
  wait_until 180 "probes: exec and http Ready, unready not Ready" \
    kq probes "($(cs exec).ready == true) and ($(cs http).ready == true) and ($(cs unready).state.running != null)" ||
    { kpod probes; return 1; }
  sleep 6 # a few more probe periods
  kq probes "($(cs unready).ready == false) and ($(cs exec).restartCount == 0) and ($(cs http).restartCount == 0)
    and (.status.conditions[] | select(.type == \"Ready\") | .status == \"False\")" >/dev/null ||
    { kpod probes; fail "unready is Ready (an httpGet probe of a missing page passed) or a probed container restarted"; return 1; }
  local ip
  ip=$(kpod probes | jq -r .status.podIP)
  [[ $ip == 10.90.* ]] || fail "pod IP $ip is not from the CNI range 10.90.0.0/16" || return 1
  wait_until 120 "liveness: doomed restarted after its exec liveness probe failed" \
    kq liveness "$(cs doomed).restartCount >= 1 and $(cs doomed).lastState.terminated.exitCode == 137" ||
    { kpod liveness; return 1; }
  grep -q 'Liveness probe\|probeType="Liveness"' "$work/kubelet.log" || fail "no liveness failure in the kubelet log" ||
    return 1
  echo "  exec readiness+liveness pass (ExecSync), httpGet on $ip:80 passes, /no-such-page keeps unready; failing exec liveness restarts"
}

manifest_removal() {
  local id pid netns
  id=$(sandbox_of web)
  [[ -n $id ]] || fail "no Ready sandbox for web" || return 1
  pid=$(crictl inspectp "$id" | jq -r .info.pid)
  netns=$(crictl inspectp "$id" | jq -r .info.netns)
  [[ -n $pid && -e $netns ]] || fail "web sandbox $id: no pid ($pid) or netns ($netns)" || return 1
  rm "$manifests/web.yaml"
  wait_until 60 "the kubelet to drop web" bash -c "! curl -fsS http://127.0.0.1:$ro_port/pods | grep -q '\"web-$NODE\"'" ||
    return 1
  wait_until 60 "web's pod process $pid to exit" bash -c "! kill -0 $pid" || return 1
  # The kubelet removes sandboxes of deleted pods in its container GC, which runs once a minute.
  wait_until 150 "wasm-cri to remove sandbox $id" bash -c "[[ -z \$('$CRICTL' --runtime-endpoint unix://$work/cri.sock pods --id $id -q) ]]" ||
    return 1
  [[ ! -e $netns ]] || fail "netns $netns still exists" || return 1
  echo "  web: sandbox $id stopped (pid $pid gone) and removed, netns $netns gone"
}

# stable_view: "<sandbox id> <pod pid> <container id>..." per long-running pod, and the kubelet's restartCounts.
stable_view() {
  local p id
  for p in init probes logger; do
    id=$(sandbox_of "$p")
    echo "$p $id $(crictl inspectp "$id" | jq -r .info.pid) $(crictl ps --pod "$id" -q | sort | tr '\n' ' ')"
    kpod "$p" | jq -c '[.status.containerStatuses[] | {name, restartCount, containerID}]'
  done
}
daemon_restart() {
  local before after
  before=$(stable_view)
  kill "$daemon_pid" && wait "$daemon_pid" 2>/dev/null || true
  daemon_pid=
  sleep 5 # the kubelet notices the runtime is gone
  start_daemon || return 1
  log "wasm-cri restarted (pid $daemon_pid)"
  sleep 30 # several PLEG relists and pod syncs with the restarted daemon
  after=$(stable_view)
  if [[ $before != "$after" ]]; then
    diff <(echo "$before") <(echo "$after")
    fail "sandboxes, pod processes, containers or the kubelet's restart counts changed across the restart"
    return 1
  fi
  local n
  n=$(crictl pods -o json | jq '[.items[] | select(.metadata.name == "init-'$NODE'" or .metadata.name == "probes-'$NODE'" or .metadata.name == "logger-'$NODE'")] | length')
  ((n == 3)) || fail "wasm-cri has $n sandboxes for init/probes/logger, expected 3 (the kubelet recreated some)" || return 1
  wait_until 30 "probes: exec and http Ready again" kq probes "($(cs exec).ready == true) and ($(cs http).ready == true)" ||
    return 1
  local exec_id
  exec_id=$(crictl ps --pod "$(sandbox_of probes)" --name '^exec$' -q)
  local out
  out=$(crictl exec -s "$exec_id" ls /tmp 2>&1) && grep -qx ready <<<"$out" ||
    fail "ExecSync 'ls /tmp' in probes/exec through the restarted daemon did not list 'ready': $out" || return 1
  echo "  same sandbox ids, pod process pids, container ids and restart counts after the restart:"
  echo "$after" | sed 's/^/    /'
}

image_gc() {
  local hello_id
  hello_id=$(crictl images -o json | jq -r --arg r "$HELLO" '.images[] | select(any(.repoTags[]; . == $r)) | .id')
  [[ -n $hello_id ]] || fail "$HELLO is not in wasm-cri's image list before GC" || return 1
  # Image GC runs when the kubelet starts and every 5 minutes; imageMaximumGCAge frees images unused for 1 min.
  local wait_s=$((kubelet_start + 330 - SECONDS))
  ((wait_s > 0)) && log "waiting up to $((wait_s + 60)) s for the kubelet's second image GC pass"
  wait_until $((wait_s > 0 ? wait_s + 60 : 60)) "the kubelet's image GC to remove $HELLO" \
    bash -c "! '$CRICTL' --image-endpoint unix://$work/cri.sock images -q | grep -qx '$hello_id'" || return 1
  crictl images -o json | jq -e --arg r "$BUSYBOX" '.images[] | select(any(.repoTags[]; . == $r))' >/dev/null ||
    fail "the in-use image $BUSYBOX was removed too" || return 1
  echo "  $HELLO ($hello_id) removed by the kubelet through RemoveImage; in-use $BUSYBOX kept"
}

scenario "two-container pod Running, logs in the kubelet's pod log dir" web_running
scenario "single-run pod completes and its manifest is removed" gc_pod_done
scenario "log rotation (containerLogMaxSize + ReopenContainerLog)" log_rotation
scenario "restartPolicy Always: CrashLoopBackOff with growing back-off" crash_loop
scenario "restartPolicy OnFailure and Never" restart_policies
scenario "memory limit: OOMKilled in the kubelet's status" oom_killed
scenario "init container runs before the main container" init_container
scenario "exec and httpGet liveness/readiness probes" probes
scenario "manifest removal stops and removes the pod and its netns" manifest_removal
scenario "wasm-cri restart under a running kubelet loses nothing" daemon_restart
scenario "kubelet image GC removes an unused image" image_gc

echo "kubelet-e2e: summary"
printf '  %s\n' "${summary[@]}"
echo "kubelet-e2e: $passed passed, $failed failed"
((failed == 0))
