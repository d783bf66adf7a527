# Image of the installer DaemonSet (deploy/installer-daemonset.yaml): the release binary of wasm-cri and the
# files install.sh puts on the host. It runs nothing of its own: install.sh copies the binary out and starts
# it on the host through systemd.
#
# Build from the root of the source tree, after `cargo build --release -p cri-server`:
#   docker build -f deploy/installer.Dockerfile \
#     --build-arg BINARY=target/release/wasm-cri -t REGISTRY/wasm-cri-installer:VERSION .
# (With CARGO_TARGET_DIR set, copy the binary into the tree first: the build context must contain it.)
#
# The binary links against glibc: it runs on hosts whose glibc is at least as new as the build machine's
# (Debian 12 builds need glibc 2.36), which is the host's glibc that matters, not this image's.

# Debian slim has bash, coreutils and util-linux's nsenter, all install.sh and the DaemonSet need.
FROM debian:12-slim
ARG BINARY=target/release/wasm-cri
COPY ${BINARY} /opt/wasm-cri/wasm-cri
COPY deploy/install.sh deploy/wasm-cri.service deploy/config.toml deploy/crictl.yaml /opt/wasm-cri/
RUN chmod 0755 /opt/wasm-cri/wasm-cri /opt/wasm-cri/install.sh
# The DaemonSet gives the real command (install, then sleep); this default only prints the usage.
CMD ["/opt/wasm-cri/install.sh", "--help"]
