//! Generates the C bindings the component fixtures are written against (`fixtures/http/`, `fixtures/sockets/`)
//! with wit-bindgen's C generator, from the WASI 0.2 WIT that wasmtime-wasi-http ships in its crate (the
//! same WIT the pod process serves): found through `cargo metadata`, never copied into this repository.
//!
//! For each world, `<world>.c`, `<world>.h` and `<world>_component_type.o` (the component type the module
//! is later wrapped with) land in `$OUT_DIR/wit-c/`; `src/fixtures.rs` embeds them.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use wit_bindgen_core::wit_parser::Resolve;

/// The crate whose packaged `wit/` directory (with `wit/deps/`) holds the WASI 0.2 packages.
const WIT_CRATE: &str = "wasmtime-wasi-http";

/// `(world, file stem)`: the wasi:http handler world and the command world (which imports wasi:sockets).
const WORLDS: &[(&str, &str)] = &[
    ("wasi:http/proxy", "proxy"),
    ("wasi:cli/command", "command"),
];

fn main() -> Result<()> {
    println!("cargo:rerun-if-changed=build.rs");
    let wit = wit_dir().context("find the WIT of the wasmtime-wasi-http crate")?;
    println!("cargo:rerun-if-changed={}", wit.display());
    let out = PathBuf::from(std::env::var("OUT_DIR").context("OUT_DIR")?).join("wit-c");
    std::fs::create_dir_all(&out).with_context(|| format!("create {}", out.display()))?;
    for (world, stem) in WORLDS {
        generate(&wit, world, stem, &out)
            .with_context(|| format!("generate C bindings of {world}"))?;
    }
    Ok(())
}

/// `<wasmtime-wasi-http source>/wit`, from `cargo metadata` of this workspace (whose lock file pins the crate to
/// the wasmtime release the pod process runs).
fn wit_dir() -> Result<PathBuf> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
    let manifest = Path::new(&std::env::var("CARGO_MANIFEST_DIR")?).join("Cargo.toml");
    // Offline and for the host only: the packages the build itself has downloaded are enough, and a
    // build script has no business fetching anything.
    let host = std::env::var("HOST").context("HOST")?;
    let output = Command::new(&cargo)
        .args(["metadata", "--format-version", "1", "--offline"])
        .args(["--filter-platform", &host, "--manifest-path"])
        .arg(&manifest)
        .output()
        .with_context(|| format!("run {cargo} metadata"))?;
    if !output.status.success() {
        bail!(
            "{cargo} metadata failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    let metadata: serde_json::Value =
        serde_json::from_slice(&output.stdout).context("parse cargo metadata")?;
    let packages = metadata["packages"]
        .as_array()
        .context("cargo metadata has no packages")?;
    let manifest_path = packages
        .iter()
        .find(|p| p["name"] == WIT_CRATE)
        .and_then(|p| p["manifest_path"].as_str())
        .with_context(|| format!("{WIT_CRATE} is not in the workspace's dependency graph"))?;
    let dir = Path::new(manifest_path)
        .parent()
        .with_context(|| format!("no directory above {manifest_path}"))?
        .join("wit");
    if !dir.join("deps").is_dir() {
        bail!("{} has no deps/ directory of WIT packages", dir.display());
    }
    Ok(dir)
}

/// Writes the C bindings of `world` (a package-qualified name; the version is the one in the WIT) to `out`.
fn generate(wit: &Path, world: &str, stem: &str, out: &Path) -> Result<()> {
    let mut resolve = Resolve::default();
    resolve
        .push_dir(wit)
        .with_context(|| format!("parse {}", wit.display()))?;
    let (package, name) = world.split_once('/').context("world without a package")?;
    let id = resolve
        .worlds
        .iter()
        .find(|(_, w)| {
            w.name == name
                && w.package
                    .map(|p| {
                        let n = &resolve.packages[p].name;
                        format!("{}:{}", n.namespace, n.name) == package
                    })
                    .unwrap_or(false)
        })
        .map(|(id, _)| id)
        .with_context(|| format!("no world {world} in {} or its deps", wit.display()))?;
    let mut files = Default::default();
    wit_bindgen_c::Opts::default()
        .build()
        .generate(&mut resolve, id, &mut files)?;
    let mut written = 0;
    for (file, bytes) in files.iter() {
        if !file.starts_with(stem) {
            bail!("unexpected generated file {file} for world {world}");
        }
        std::fs::write(out.join(file), bytes).with_context(|| format!("write {file}"))?;
        written += 1;
    }
    if written != 3 {
        bail!("expected {stem}.c, {stem}.h and {stem}_component_type.o, got {written} files");
    }
    Ok(())
}
