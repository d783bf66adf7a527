#!/usr/bin/env bash
# Builds the upstream kubelet (k8s.io/kubernetes/cmd/kubelet, version pinned in go.mod) for
# conformance/kubelet-e2e.sh and caches it as $WASM_CRI_TOOLS/bin/kubelet-<version>, so a machine builds it once.
# Prints the binary's path. Cold build: about 11 minutes on 2 shared cores (docs/kubelet.md has the measurement).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
TOOLS_DIR=${WASM_CRI_TOOLS:-$HOME/.cache/wasm-cri-tools}
version=$(awk '$1 == "k8s.io/kubernetes" { print $2 }' "$here/go.mod")
[[ $version =~ ^v([0-9]+)\.([0-9]+)\. ]] || { echo "kubelet/build.sh: no k8s.io/kubernetes version in go.mod" >&2; exit 1; }
out=$TOOLS_DIR/bin/kubelet-$version

if [[ ! -x $out ]]; then
  mkdir -p "$TOOLS_DIR/bin"
  echo "kubelet/build.sh: building kubelet $version from Go modules (cached as $out)" >&2
  start=$(date +%s)
  # The version variables are the ones Kubernetes' own build (hack/lib/version.sh) sets: without them the
  # kubelet reports v0.0.0-master to the runtime and in /healthz. CGO_ENABLED=0 as for the released binary.
  pkg=k8s.io/component-base/version
  ldflags="-s -w -X $pkg.gitVersion=$version -X $pkg.gitMajor=${BASH_REMATCH[1]} -X $pkg.gitMinor=${BASH_REMATCH[2]}"
  ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
  (cd "$here" && GOFLAGS="-mod=readonly -buildvcs=false" CGO_ENABLED=0 go build -trimpath -ldflags "$ldflags" -o "$out.tmp" \
    k8s.io/kubernetes/cmd/kubelet)
  mv "$out.tmp" "$out"
  echo "kubelet/build.sh: built in $(($(date +%s) - start)) s" >&2
fi
echo "$out"
