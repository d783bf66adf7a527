# Shell functions shared by the harnesses that drive the real binary against real tools (critest.sh,
# kubelet-e2e.sh): a throwaway local registry and a CNI bridge network. Sourced, never run.

# A free TCP port on 127.0.0.1.
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# start_registry WORK: Debian's docker-registry ($WCRI_REGISTRY_BIN) on a free loopback port, storing under
# WORK/registry and logging to WORK/registry.log. Sets `registry` (host:port) and `registry_pid`; returns 1,
# after printing the registry's log, when it does not answer within 10 s.
start_registry() {
  local work=$1
  registry=127.0.0.1:$(free_port)
  mkdir -p "$work/registry"
  cat >"$work/registry.yml" <<EOF
version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $work/registry
  delete:
    enabled: true
http:
  addr: $registry
EOF
  "$WCRI_REGISTRY_BIN" serve "$work/registry.yml" >"$work/registry.log" 2>&1 &
  registry_pid=$!
  for _ in $(seq 100); do curl -fsS "http://$registry/v2/" >/dev/null 2>&1 && return 0; sleep 0.1; done
  echo "the registry on $registry did not start:"
  cat "$work/registry.log"
  return 1
}

# write_bridge_conflist FILE NAME BRIDGE SUBNET IPAM_DIR: the network the harnesses give their pods, with
# Debian's plugins: a bridge with the host as gateway and no masquerading (traffic stays on the node),
# host-local addresses kept in IPAM_DIR, portmap for hostPorts, loopback.
write_bridge_conflist() {
  mkdir -p "$(dirname "$1")"
  cat >"$1" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "$2",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "$3",
      "isGateway": true,
      "ipMasq": false,
      "ipam": {
        "type": "host-local",
        "ranges": [[{"subnet": "$4"}]],
        "routes": [{"dst": "0.0.0.0/0"}],
        "dataDir": "$5"
      }
    },
    {"type": "portmap", "capabilities": {"portMappings": true}},
    {"type": "loopback"}
  ]
}
EOF
}
