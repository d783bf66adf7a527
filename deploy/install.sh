#!/usr/bin/env bash
# Installs (or with --uninstall removes) wasm-cri on this node: the binary, the systemd unit, and the example
# config, then starts the service and waits for its CRI socket. Safe to run any number of times: files that
# are already up to date are left alone, the config files are written only when absent (the operator's edits
# are kept), and the daemon is restarted only when its binary or unit changed (pods keep running through
# the restart: see docs/operations.md, "Upgrade").
#
# Reads its inputs from the directory it lives in (a release directory, the installer image's /opt/wasm-cri,
# or deploy/ of the source tree): wasm-cri (the binary; or --binary), wasm-cri.service, config.toml,
# crictl.yaml.
set -euo pipefail

usage() {
  cat <<'EOF'
usage: install.sh [--root DIR] [--binary FILE] [--no-start] [--host-exec CMD] [--uninstall [--remove-pods]]

  --root DIR       install below DIR instead of / (a staging root, or the host's filesystem mounted in a
                   container); systemctl is then used only with --host-exec, or not at all with --no-start
  --binary FILE    the wasm-cri binary to install (default: wasm-cri next to this script)
  --no-start       only write files: no systemctl, no socket wait, no crictl
  --host-exec CMD  prefix for the commands run on the host (systemctl, crictl, the socket check), e.g.
                   "nsenter --target 1 --mount --uts --ipc --net --pid --" from a privileged container
  --uninstall      stop and disable the service, remove the binary and the unit; keeps /etc/wasm-cri and
                   the state directories (printed at the end)
  --remove-pods    with --uninstall: stop and remove every pod through the CRI first (crictl rmp -af);
                   without it, uninstall refuses while pods exist, since their processes would keep running
EOF
}

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=/
binary=$here/wasm-cri
start=1
uninstall=0
remove_pods=0
host_exec=()
while (($#)); do
  case $1 in
    --root) root=${2:?--root needs a directory}; shift 2 ;;
    --binary) binary=${2:?--binary needs a file}; shift 2 ;;
    --no-start) start=0; shift ;;
    --host-exec) read -r -a host_exec <<<"${2:?--host-exec needs a command}"; shift 2 ;;
    --uninstall) uninstall=1; shift ;;
    --remove-pods) remove_pods=1; shift ;;
    -h | --help) usage; exit 0 ;;
    *) echo "install.sh: unknown argument $1" >&2; usage >&2; exit 2 ;;
  esac
done

root=${root%/}
# systemctl would act on the running system while the files went somewhere else.
if [[ -n $root && $start == 1 && ${#host_exec[@]} == 0 ]]; then
  echo "install.sh: --root $root needs --no-start, or --host-exec to reach the host's systemd" >&2
  exit 2
fi

bin_dest=$root/usr/local/bin/wasm-cri
unit_dest=$root/etc/systemd/system/wasm-cri.service
conf_dir=$root/etc/wasm-cri
conf_dest=$conf_dir/config.toml
crictl_dest=$conf_dir/crictl.yaml

log() { echo "install.sh: $*"; }
on_host() { "${host_exec[@]}" "$@"; }

# Copies $1 to $2 with mode $3 unless $2 already has that content and mode; the copy is renamed into place
# (same directory, so the rename is atomic): a running process never sees a half-written binary, and
# processes still running the old file keep its inode. Sets `changed` to 1 when it wrote.
install_file() {
  local src=$1 dest=$2 mode=$3
  if [[ -f $dest ]] && cmp -s "$src" "$dest" && [[ $(stat -c %a "$dest") == "$mode" ]]; then
    log "up to date: $dest"
    return
  fi
  mkdir -p "$(dirname "$dest")"
  local tmp
  tmp=$(mktemp "$dest.new.XXXXXX")
  cp "$src" "$tmp"
  chmod "$mode" "$tmp"
  sync "$tmp"
  mv -f "$tmp" "$dest"
  changed=1
  log "installed: $dest (mode $mode)"
}

# Writes $1 to $2 only if $2 does not exist: configuration belongs to the operator once written.
install_once() {
  local src=$1 dest=$2 mode=$3
  if [[ -e $dest ]]; then
    log "kept existing: $dest"
    return
  fi
  local changed=0
  install_file "$src" "$dest" "$mode"
}

# The CRI socket named by the config file (its default when the key is absent).
socket_path() {
  local s=/run/wasm-cri/cri.sock line
  line=$(grep -sE '^[[:space:]]*socket[[:space:]]*=[[:space:]]*"' "$conf_dest" | tail -n1 || true)
  if [[ -n $line ]]; then
    s=$(sed -E 's/^[^=]*=[[:space:]]*"([^"]*)".*/\1/' <<<"$line")
    s=${s#unix://}
  fi
  echo "$s"
}

have_crictl() { on_host sh -c 'command -v crictl' >/dev/null 2>&1; }

do_install() {
  for f in "$binary" "$here/wasm-cri.service" "$here/config.toml" "$here/crictl.yaml"; do
    [[ -f $f ]] || { echo "install.sh: missing $f" >&2; exit 1; }
  done
  [[ -x $binary ]] || { echo "install.sh: $binary is not executable" >&2; exit 1; }

  local changed=0
  install_file "$binary" "$bin_dest" 755
  install_file "$here/wasm-cri.service" "$unit_dest" 644
  local restart_needed=$changed
  # 0600: the config may hold registry credentials.
  mkdir -p "$conf_dir"
  install_once "$here/config.toml" "$conf_dest" 600
  install_once "$here/crictl.yaml" "$crictl_dest" 644

  if [[ $start == 0 ]]; then
    log "files in place below ${root:-/}; not starting (--no-start)"
    return
  fi
  on_host systemctl daemon-reload
  if on_host systemctl is-active --quiet wasm-cri.service; then
    if [[ $restart_needed == 1 ]]; then
      # Pod processes are not part of the restart (KillMode=process): the new daemon re-adopts them.
      log "binary or unit changed: restarting wasm-cri (pods keep running)"
      on_host systemctl restart wasm-cri.service
    fi
    on_host systemctl enable --quiet wasm-cri.service
  else
    # Type=notify: this returns once the daemon has recovered its pods and serves the socket.
    on_host systemctl enable --now wasm-cri.service
  fi
  local sock
  sock=$(socket_path)
  for _ in $(seq 60); do
    on_host test -S "$sock" && break
    sleep 1
  done
  on_host test -S "$sock" || { echo "install.sh: $sock did not appear; see: journalctl -u wasm-cri" >&2; exit 1; }
  log "wasm-cri is serving unix://$sock"
  if have_crictl; then
    on_host crictl --runtime-endpoint "unix://$sock" --image-endpoint "unix://$sock" version
  else
    log "crictl not found on the host: skipping \`crictl version\`"
  fi
}

do_uninstall() {
  if [[ $start == 1 ]] && on_host systemctl is-active --quiet wasm-cri.service; then
    local sock pods=""
    sock=$(socket_path)
    if have_crictl; then
      pods=$(on_host crictl --runtime-endpoint "unix://$sock" pods -q)
    else
      log "crictl not found on the host: cannot check for pods; their processes outlive the service"
    fi
    if [[ -n $pods ]]; then
      if [[ $remove_pods == 0 ]]; then
        echo "install.sh: $(wc -l <<<"$pods") pod(s) still exist on wasm-cri; drain the node (kubectl drain) or" \
          "pass --remove-pods: stopping the service leaves pod processes running (KillMode=process)" >&2
        exit 1
      fi
      log "stopping and removing every pod"
      on_host crictl --runtime-endpoint "unix://$sock" rmp --all --force
    fi
  fi
  if [[ $start == 1 ]]; then
    on_host systemctl disable --now wasm-cri.service 2>/dev/null || true
  fi
  local f
  for f in "$unit_dest" "$bin_dest"; do
    if [[ -e $f ]]; then
      rm -f "$f"
      log "removed: $f"
    fi
  done
  if [[ $start == 1 ]]; then
    on_host systemctl daemon-reload
  fi
  log "kept: $conf_dir (configuration), /var/lib/wasm-cri and /run/wasm-cri (state; the root and state" \
    "keys of the config may name others); remove them by hand for a clean slate"
}

if [[ $uninstall == 1 ]]; then
  do_uninstall
else
  do_install
fi
