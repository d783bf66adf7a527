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
    ("SupplementalGroupsPolicy", "skipped: the runtime does not advertise SupplementalGroupsPolicy"),
    ("with digest", "the image is pinned by a digest of a Linux image on gcr.io; an offline stand-in can never have that digest"),
    ("Mount Propagation", "needs `mount` inside the container (and rshared back to the host); a Wasm guest cannot mount"),
    ("non-recursive readonly", "critest mounts a tmpfs under the volume after the pod started; this VM's mounts are private, so it never reaches the pod's mount namespace"),
    ("recursive readonly mounts", "the write is refused by the kernel, but wasmtime-wasi 48 reports EROFS to the guest as EIO, so `touch` does not print \"Read-only file system\""),
    ("ReadOnlyRootfs is true", "as above: the write fails (kernel read-only mount) with EIO instead of EROFS"),
    ("ReadonlyPaths", "as above: the write fails (kernel read-only mount) with EIO instead of EROFS"),
    ("MaskedPaths", "masked paths are enforced as runc does (a bind of /dev/null, following symlinks), but the stand-in busybox links its applets with symlinks where the real one uses hardlinks, so masking /bin/ls hides /bin/busybox and with it /bin/sh"),
    ("port mapping", "pods have only loopback yet (pod networking is issue 4): no pod IP, no host ports"),
    ("portforward", "the web server needs a listening socket in the pod; Wasm sockets come with pod networking (issue 4)"),
    ("Multiple Containers", "the httpd container needs a listening socket (issue 4), so it exits and the exec/network checks fail"),
    ("sysctls", "no /proc/sys view for guests, and no IPC namespace to apply kernel.* sysctls to"),
    ("HostNetwork is true", "the web server needs a listening socket (issue 4)"),
    ("HostPID", "the nginx stand-in needs a listening socket (issue 4) and pgrep needs a /proc view"),
    ("PodPID", "needs a /proc view listing the pod's instances as processes"),
    ("ContainerPID", "needs a /proc view listing the pod's instances as processes"),
    ("HostIpc", "needs /proc/sysvipc/shm (a Wasm guest has no System V IPC)"),
    ("RunAs", "`id` reads /proc/self/status; there is no /proc view for guests yet"),
    ("SupplementalGroups", "`id` reads /proc/self/status; there is no /proc view for guests yet"),
    ("capability", "checks capability sets in /proc/self/status or needs `brctl`; a Wasm guest has no capabilities to add or drop"),
    ("capabilities", "checks capability sets in /proc/self/status; a Wasm guest has no capabilities to add or drop"),
    ("Privileged is true", "needs `brctl addbr` (a Wasm guest cannot create network devices)"),
    ("Seccomp", "checks the Seccomp mode in /proc/self/status or sets the hostname; a Wasm guest makes no syscalls to filter and cannot set the hostname"),
    ("seccomp", "checks the Seccomp mode in /proc/self/status or sets the hostname; a Wasm guest makes no syscalls to filter and cannot set the hostname"),
    ("NoNewPrivs", "needs the e2e nonewprivs image (a setuid Linux binary); privilege escalation does not exist for a Wasm guest"),
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
        "(`conformance/src/critest_images.rs`). No spec is faked: applets Wasm cannot honestly provide "
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
