#!/usr/bin/env python3
"""Writes docs/conformance.md from a critest run's critest-results.txt (see conformance/critest.sh).

Usage: conformance/conformance-doc.py RESULTS.txt > docs/conformance.md

Every spec gets its outcome; every spec that did not pass gets the reason, matched below by a substring of its
name. A non-passing spec without a reason is an error: the table must explain each one.
"""
import sys

# (substring of the spec name, reason it does not pass). First match wins.
REASONS = [
    ("AppArmor", "skipped by critest: AppArmor is not enabled on this machine (and a Wasm guest makes no syscalls for a profile to confine)"),
    ("SELinux", "skipped by critest: SELinux is not enabled on this machine"),
    ("benchmark", "benchmark specs only run with `critest -benchmark`"),
    ("UserNamespaces", "skipped: the runtime handler does not advertise user namespaces (wasm-cri has no idmapped mounts)"),
    ("with digest", "the image is pinned by a digest of a Linux image on gcr.io; an offline stand-in can never have that digest"),
    ("Mount Propagation", "needs `mount` inside the container (and rshared back to the host); a Wasm guest cannot mount"),
    ("non-recursive readonly", "critest mounts a tmpfs under the volume after the pod started; this VM's mounts are private, so it never reaches the pod's mount namespace"),
    ("HostPID", "the spec waits for nginx's /var/run/nginx.pid and looks that pid up from a hostPID container; a Wasm instance is a thread of its pod process, not a process with a pid of its own, so the stand-in has no pid to write"),
    ("ContainerPID", "a Wasm container is not a process, so it cannot have a PID namespace of its own: it shares the pod's, whose pid 1 is the pod process, never nginx"),
    ("NoNewPrivs", "needs the e2e nonewprivs image (a setuid Linux binary); privilege escalation does not exist for a Wasm guest"),
    ("setting hostname", "needs `hostname NAME` (sethostname); a Wasm guest cannot set the hostname"),
    ("setting host name", "needs `hostname NAME` (sethostname); a Wasm guest cannot set the hostname"),
    ("seccomp localhost", "needs `chmod` (a Wasm guest cannot change modes through WASI) and a seccomp filter"),
    ("seccomp default", "seccomp profiles are not applied (the guest makes no system calls and the pod process's threads are not filtered): /proc/self/status truthfully says Seccomp 0, not the 2 RuntimeDefault gives"),
    ("adding capability", "the capability set is applied to the instance's thread, but the check is `brctl addbr` (a Wasm guest cannot create network devices)"),
    ("dropping capability", "the capability set is applied to the instance's thread, but the check is `ping` (a Wasm guest cannot open raw sockets)"),
    ("Privileged is true", "needs `brctl addbr` (a Wasm guest cannot create network devices)"),
]


def reason(name):
    for key, text in REASONS:
        if key in name:
            return text
    return None


def main():
    rows = []
    for line in open(sys.argv[1]):
        outcome, _, name = line.rstrip("\n").partition(" ")
        name = name.strip().removeprefix("[It] ").replace("[k8s.io] ", "")
        rows.append((outcome, name))
    count = {k: sum(1 for o, _ in rows if o == k) for k in ("passed", "failed", "skipped")}
    missing = [n for o, n in rows if o != "passed" and reason(n) is None]
    if missing:
        sys.exit("no reason given for: " + "; ".join(missing))
    out = sys.stdout
    out.write("# critest results\n\n")
    out.write(
        "critest v1.36.0 run by `conformance/critest.sh` against wasm-cri on the CI machine (2 cores, no AppArmor, "
        "no SELinux, no internet). critest's hard-coded Linux images (`registry.k8s.io/e2e-test-images/busybox`, "
        "`nginx`, `httpd`, `pause`, `gcr.io/k8s-staging-cri-tools/test-image-*`) are replaced by **Wasm stand-ins "
        "under the same names**, served by a local docker-registry through wasm-cri's registry mirrors "
        "(`[registries.\"registry.k8s.io\"] mirrors = [...]` for registry.k8s.io, k8s.gcr.io, gcr.io, "
        "public.ecr.aws): the busybox-style toolbox (`conformance/fixtures/toolbox/`) with its applets as "
        "`/bin/<applet>`, and images with the `User`, ports and tags the specs check "
        "(`conformance/src/critest_images.rs`). Pods get their network from Debian's CNI plugins (bridge, host-local, "
        "portmap, loopback; the conflist is written by `critest.sh`). No spec is faked: applets Wasm cannot honestly provide "
        "(`mount`, `brctl`, `hostname NAME`, ...) are absent and the specs that need them fail.\n\n"
    )
    out.write(
        f"**{count['passed']} passed, {count['failed']} failed, {count['skipped']} skipped** of {len(rows)} specs "
        "(the suite's 122 include 5 benchmark specs that only run with `-benchmark`).\n\n"
    )
    out.write(
        "The specs that passed are the ratchet in `conformance/critest-expected-pass.txt`: CI fails if one of "
        "them stops passing.\n\n"
    )
    out.write("| spec | result | why not passed |\n|---|---|---|\n")
    for outcome, name in sorted(rows, key=lambda r: r[1]):
        why = "" if outcome == "passed" else reason(name)
        out.write(f"| {name.replace('|', '/')} | {outcome} | {why} |\n")


if __name__ == "__main__":
    main()
