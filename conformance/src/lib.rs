//! Conformance harness for wasm-cri: Wasm fixtures (C/WAT → Wasm, a p2 component), test images pushed to
//! a throwaway `docker-registry`, the real `wasm-cri` daemon on a temp root, `crictl` helpers and the pod
//! and container config builders the end-to-end tests use, and the Wasm stand-ins for critest's images.

pub mod artifact;
pub mod big_module;
pub mod crictl;
pub mod critest_images;
pub mod daemon;
pub mod fixtures;
pub mod image;
pub mod registry;
pub mod spec;

pub use crictl::{crictl, crictl_json, crictl_ok, wait_until};
pub use daemon::{Daemon, DaemonOpts};
pub use fixtures::fixtures_dir;
pub use image::{
    ImageSpec, LayerEntry, LayerFile, block_on, build_and_push_all, pull_image, push_image,
};
pub use registry::Registry;
pub use spec::{ContainerConfig, DnsConfig, PodConfig};

/// Whether this process runs with effective uid 0.
pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// For tests named `root_*`: returns true (after printing why) when the test should be skipped because
/// it is not running as root. With `WCRI_REQUIRE_ROOT=1` it panics instead, so CI cannot silently skip.
pub fn skip_unless_root() -> bool {
    if is_root() {
        return false;
    }
    let thread = std::thread::current();
    let name = thread.name().unwrap_or("this test");
    if std::env::var_os("WCRI_REQUIRE_ROOT").is_some_and(|v| v == "1") {
        panic!("{name} needs root and WCRI_REQUIRE_ROOT=1 is set");
    }
    eprintln!(
        "skipping {name}: needs root (euid {})",
        nix::unistd::geteuid()
    );
    true
}

/// Returns early from a test that needs root, printing the reason: `require_root!();` in a test returning
/// `()`, `require_root!(Ok(()))` in one returning a `Result`.
#[macro_export]
macro_rules! require_root {
    () => {
        if $crate::skip_unless_root() {
            return;
        }
    };
    ($ret:expr) => {
        if $crate::skip_unless_root() {
            return $ret;
        }
    };
}
