//! Wasm fixtures: compiles the C sources in `conformance/fixtures/` with Debian's clang + wasi-libc (one
//! file per fixture, or a directory of files such as the busybox-style `toolbox/`), the WAT sources with the
//! `wat` crate, and componentizes the p1 hello module into a WASI p2 component.
//!
//! The sources are embedded with `include_str!` so the `wcri-fixture` binary works from any directory.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use anyhow::{Context, Result, bail};

/// Debian's wasi-libc installs headers in `/usr/include/wasm32-wasi` and libraries in
/// `/usr/lib/wasm32-wasi`, which is the layout clang expects under `--sysroot=/usr`.
pub const DEFAULT_SYSROOT: &str = "/usr";

/// The `.wasm` preamble of a core module: magic + version 1.
pub const MODULE_PREAMBLE: [u8; 8] = [0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00];
/// The `.wasm` preamble of a component: magic + version 0x0d, layer 1.
pub const COMPONENT_PREAMBLE: [u8; 8] = [0x00, 0x61, 0x73, 0x6d, 0x0d, 0x00, 0x01, 0x00];

/// How a fixture is produced.
#[derive(Debug, Clone, Copy)]
pub enum Source {
    /// C compiled with clang for wasm32-wasi.
    C(&'static str),
    /// Several C files and headers `(file name, contents)` compiled together into one module.
    CFiles(&'static [(&'static str, &'static str)]),
    /// WebAssembly text.
    Wat(&'static str),
    /// The named p1 fixture, componentized with the wasi_snapshot_preview1 command adapter.
    ComponentOf(&'static str),
}

/// One fixture: `name` becomes `<name>.wasm` and the image `wasm/<name>:latest`.
#[derive(Debug, Clone, Copy)]
pub struct Fixture {
    pub name: &'static str,
    pub source: Source,
    /// Whether the output is a component (WASI p2) rather than a core module (WASI p1).
    pub component: bool,
}

/// The sources of the busybox-style multi-call toolbox (`conformance/fixtures/toolbox/`): the applet is
/// chosen by `basename(argv[0])`, or `toolbox APPLET ARGS...`.
pub const TOOLBOX_SOURCES: &[(&str, &str)] = &[
    ("toolbox.h", include_str!("../fixtures/toolbox/toolbox.h")),
    ("main.c", include_str!("../fixtures/toolbox/main.c")),
    ("util.c", include_str!("../fixtures/toolbox/util.c")),
    ("sh.c", include_str!("../fixtures/toolbox/sh.c")),
    (
        "fileutils.c",
        include_str!("../fixtures/toolbox/fileutils.c"),
    ),
    (
        "textutils.c",
        include_str!("../fixtures/toolbox/textutils.c"),
    ),
    ("sysutils.c", include_str!("../fixtures/toolbox/sysutils.c")),
    ("httpd.c", include_str!("../fixtures/toolbox/httpd.c")),
];

/// Stack of the C fixtures (wasm-ld's default is 64 KiB; the toolbox's shell recurses while parsing and
/// its applets keep buffers on the stack).
const STACK_SIZE: &str = "-Wl,-z,stack-size=1048576";

/// Every fixture, in build order (components after the modules they wrap).
pub const FIXTURES: &[Fixture] = &[
    Fixture {
        name: "hello",
        source: Source::C(include_str!("../fixtures/hello.c")),
        component: false,
    },
    Fixture {
        name: "exitcode",
        source: Source::C(include_str!("../fixtures/exitcode.c")),
        component: false,
    },
    Fixture {
        name: "sleeper",
        source: Source::C(include_str!("../fixtures/sleeper.c")),
        component: false,
    },
    Fixture {
        name: "probe",
        source: Source::C(include_str!("../fixtures/probe.c")),
        component: false,
    },
    Fixture {
        name: "memhog",
        source: Source::C(include_str!("../fixtures/memhog.c")),
        component: false,
    },
    Fixture {
        name: "trap",
        source: Source::Wat(include_str!("../fixtures/trap.wat")),
        component: false,
    },
    Fixture {
        name: "loop",
        source: Source::Wat(include_str!("../fixtures/loop.wat")),
        component: false,
    },
    Fixture {
        name: "toolbox",
        source: Source::CFiles(TOOLBOX_SOURCES),
        component: false,
    },
    Fixture {
        name: "hello-component",
        source: Source::ComponentOf("hello"),
        component: true,
    },
];

/// The clang binary: `$WCRI_CLANG`, else `clang`.
fn clang() -> String {
    std::env::var("WCRI_CLANG").unwrap_or_else(|_| "clang".to_string())
}

/// The wasi-libc sysroot: `$WCRI_WASI_SYSROOT`, else [`DEFAULT_SYSROOT`].
pub fn sysroot() -> PathBuf {
    std::env::var_os("WCRI_WASI_SYSROOT")
        .map_or_else(|| PathBuf::from(DEFAULT_SYSROOT), PathBuf::from)
}

/// Path of a built fixture inside `dir`.
pub fn fixture_path(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}.wasm"))
}

/// Builds every fixture into `out` (created if missing) and returns the written paths in
/// [`FIXTURES`] order.
pub fn build_all(out: &Path) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(out).with_context(|| format!("create {}", out.display()))?;
    let work = tempfile::Builder::new()
        .prefix("wcri-fixture-src")
        .tempdir()
        .context("create source temp dir")?;
    let mut written = Vec::with_capacity(FIXTURES.len());
    for fixture in FIXTURES {
        let dest = fixture_path(out, fixture.name);
        build_one(fixture, work.path(), out, &dest)
            .with_context(|| format!("build fixture {}", fixture.name))?;
        written.push(dest);
    }
    Ok(written)
}

fn build_one(fixture: &Fixture, work: &Path, out: &Path, dest: &Path) -> Result<()> {
    match fixture.source {
        Source::C(src) => {
            let src_path = work.join(format!("{}.c", fixture.name));
            std::fs::write(&src_path, src)
                .with_context(|| format!("write {}", src_path.display()))?;
            compile_c(&src_path, dest)
        }
        Source::CFiles(files) => {
            let dir = work.join(fixture.name);
            std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
            let mut sources = Vec::new();
            for (name, contents) in files {
                let path = dir.join(name);
                std::fs::write(&path, contents)
                    .with_context(|| format!("write {}", path.display()))?;
                if name.ends_with(".c") {
                    sources.push(path);
                }
            }
            compile_c_files(&sources, dest, &[STACK_SIZE])
        }
        Source::Wat(src) => {
            let bytes = wat::parse_str(src).context("parse wat")?;
            std::fs::write(dest, bytes).with_context(|| format!("write {}", dest.display()))
        }
        Source::ComponentOf(module) => {
            let module_path = fixture_path(out, module);
            let bytes = std::fs::read(&module_path)
                .with_context(|| format!("read {}", module_path.display()))?;
            let component = componentize(&bytes)?;
            std::fs::write(dest, component).with_context(|| format!("write {}", dest.display()))
        }
    }
}

/// Compiles one C file into a wasm32-wasi command module.
pub fn compile_c(src: &Path, dest: &Path) -> Result<()> {
    compile_c_files(&[src.to_path_buf()], dest, &[])
}

/// Compiles C files (headers next to them) into one wasm32-wasi command module, with `extra` clang
/// arguments.
pub fn compile_c_files(srcs: &[PathBuf], dest: &Path, extra: &[&str]) -> Result<()> {
    let clang = clang();
    let sysroot = sysroot();
    let output = Command::new(&clang)
        .arg("--target=wasm32-wasi")
        .arg(format!("--sysroot={}", sysroot.display()))
        .args(["-O2", "-Wall", "-Wextra", "-Werror", "-Wl,--strip-debug"])
        .args(extra)
        .arg("-o")
        .arg(dest)
        .args(srcs)
        .output()
        .with_context(|| {
            format!("run {clang} (install clang, lld, wasi-libc, libclang-rt-14-dev-wasm32)")
        })?;
    if !output.status.success() {
        bail!(
            "{clang} --target=wasm32-wasi --sysroot={} failed with {}: {}",
            sysroot.display(),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(())
}

/// Wraps a WASI p1 command module into a WASI p2 component with the command adapter.
pub fn componentize(module: &[u8]) -> Result<Vec<u8>> {
    use wasi_preview1_component_adapter_provider::{
        WASI_SNAPSHOT_PREVIEW1_ADAPTER_NAME, WASI_SNAPSHOT_PREVIEW1_COMMAND_ADAPTER,
    };
    wit_component::ComponentEncoder::default()
        .module(module)
        .context("load module into component encoder")?
        .adapter(
            WASI_SNAPSHOT_PREVIEW1_ADAPTER_NAME,
            WASI_SNAPSHOT_PREVIEW1_COMMAND_ADAPTER,
        )
        .context("add wasi_snapshot_preview1 command adapter")?
        .validate(true)
        .encode()
        .context("encode component")
}

/// Whether `bytes` start with the component preamble.
pub fn is_component(bytes: &[u8]) -> bool {
    bytes.starts_with(&COMPONENT_PREAMBLE)
}

/// Whether `bytes` start with the core module preamble.
pub fn is_module(bytes: &[u8]) -> bool {
    bytes.starts_with(&MODULE_PREAMBLE)
}

/// Key of the fixture cache: changes whenever a source, the adapter or the toolchain settings do.
fn cache_key() -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for fixture in FIXTURES {
        h.update(fixture.name.as_bytes());
        match fixture.source {
            Source::C(src) => h.update(src.as_bytes()),
            Source::CFiles(files) => {
                for (name, contents) in files {
                    h.update(name.as_bytes());
                    h.update(contents.as_bytes());
                }
                h.update(STACK_SIZE.as_bytes());
            }
            Source::Wat(src) => h.update(src.as_bytes()),
            Source::ComponentOf(module) => h.update(module.as_bytes()),
        }
    }
    h.update(wasi_preview1_component_adapter_provider::WASI_SNAPSHOT_PREVIEW1_COMMAND_ADAPTER);
    h.update(clang().as_bytes());
    h.update(sysroot().as_os_str().as_encoded_bytes());
    hex::encode(&h.finalize()[..8])
}

fn complete(dir: &Path) -> bool {
    FIXTURES.iter().all(|f| fixture_path(dir, f.name).is_file())
}

/// Directory holding every fixture, built at most once per process.
///
/// `$WCRI_FIXTURES_DIR` if set (built into it), else a cache `<tmp>/wcri-fixtures-<key>` shared by test
/// runs: built into a sibling temp dir and renamed into place, so concurrent test processes never see
/// a half-built cache.
pub fn fixtures_dir() -> Result<&'static Path> {
    static DIR: OnceLock<std::result::Result<PathBuf, String>> = OnceLock::new();
    let built = DIR.get_or_init(|| locate_or_build().map_err(|e| format!("{e:#}")));
    match built {
        Ok(dir) => Ok(dir.as_path()),
        Err(e) => bail!("build fixtures: {e}"),
    }
}

fn locate_or_build() -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os("WCRI_FIXTURES_DIR") {
        let dir = PathBuf::from(dir);
        build_all(&dir)?;
        return Ok(dir);
    }
    let parent = std::env::temp_dir();
    let dir = parent.join(format!("wcri-fixtures-{}", cache_key()));
    if complete(&dir) {
        return Ok(dir);
    }
    let staging = tempfile::Builder::new()
        .prefix("wcri-fixtures-staging")
        .tempdir_in(&parent)
        .context("create fixtures staging dir")?;
    build_all(staging.path())?;
    // An incomplete leftover (e.g. a crashed older layout) would block the rename.
    if dir.exists() && !complete(&dir) {
        let _ = std::fs::remove_dir_all(&dir);
    }
    let staged = staging.keep();
    if let Err(e) = std::fs::rename(&staged, &dir) {
        let _ = std::fs::remove_dir_all(&staged);
        // Lost the race to another test process: its result is just as good.
        if !complete(&dir) {
            return Err(e).with_context(|| format!("move fixtures into {}", dir.display()));
        }
    }
    Ok(dir)
}
