//! Precompiled programs: the daemon compiles an image's Wasm once into the image store's precompile
//! cache ([`Precompiler`]), and pod processes map the artifact instead of compiling
//! ([`Engine::load_precompiled`]).
//!
//! Artifacts live in `<images root>/precompiled/<key>/<wasm sha256 hex>.cwasm`, where `<key>` is
//! [`compatibility_key`]: a hash of `Engine::precompile_compatibility_hash()` of the engine built from
//! the one [`build_config`](super::config::build_config) (wasmtime version, target, ISA flags, tunables,
//! features). Daemon and pod processes are the same binary on the same host, so they agree on it; an
//! upgrade or a configuration change gives a new key, and the image store deletes the old directory.

use std::fs::File;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::Path;

use wasmtime::component::Component;
use wasmtime::{Module, Precompiled};

use super::artifact_trust;
use super::config::build_config;
use super::detect::{self, Detected};
use super::error::{EngineError, boxed};
use super::{Engine, Program};

/// The cache key of `engine`: 16 lowercase hex digits.
///
/// SipHash with fixed keys (`DefaultHasher::new()`) is deterministic for a given build, which is all the
/// key needs: the writer and the readers are the same binary. A key collision could only hand a loader an
/// artifact of another configuration, which wasmtime refuses when loading it (it checks version and
/// compiler settings), and the loader then compiles.
pub fn compatibility_key(engine: &wasmtime::Engine) -> String {
    let mut hasher = DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut hasher);
    format!("{:016x}", hasher.finish())
}

/// Compiles Wasm into artifacts for the cache: an engine with the pod processes' configuration, without
/// linkers or epoch ticker (it never runs anything).
pub struct Precompiler {
    engine: wasmtime::Engine,
    key: String,
}

impl Precompiler {
    pub fn new() -> Result<Precompiler, EngineError> {
        let engine = wasmtime::Engine::new(&build_config())
            .map_err(|e| EngineError::BuildEngine { source: boxed(e) })?;
        let key = compatibility_key(&engine);
        Ok(Precompiler { engine, key })
    }

    /// See [`compatibility_key`].
    pub fn key(&self) -> &str {
        &self.key
    }

    /// Compiles a core module or a component (told apart by the bytes) into an artifact. CPU-heavy: call
    /// it from a blocking context.
    pub fn precompile(&self, wasm: &[u8]) -> Result<Vec<u8>, EngineError> {
        let compiled = match detect::detect(wasm) {
            Detected::Module => self.engine.precompile_module(wasm),
            Detected::Component => self.engine.precompile_component(wasm),
            Detected::UnsupportedWasm(version) => {
                return Err(EngineError::Precompile {
                    source: format!("unsupported Wasm version or layer (header bytes {version})")
                        .into(),
                });
            }
            Detected::NotWasm(found) => {
                return Err(EngineError::Precompile {
                    source: format!("not WebAssembly: {found}").into(),
                });
            }
        };
        crate::pod::release_compiler_memory();
        compiled.map_err(|e| EngineError::Precompile { source: boxed(e) })
    }

    /// Whether the file at `artifact` looks like a wasmtime artifact (its ELF header and wasmtime section;
    /// not its content): a truncated or foreign file fails here.
    pub fn check(&self, artifact: &Path) -> Result<(), EngineError> {
        match wasmtime::Engine::detect_precompiled_file(artifact) {
            Ok(Some(_)) => Ok(()),
            Ok(None) => Err(EngineError::UntrustedArtifact {
                path: artifact.to_path_buf(),
                reason: "not a wasmtime artifact".into(),
            }),
            Err(e) => Err(EngineError::LoadArtifact {
                path: artifact.to_path_buf(),
                source: boxed(e),
            }),
        }
    }
}

impl Engine {
    /// Loads the program precompiled at `artifact`, memory-mapped. Only artifacts of the runtime's own
    /// store are accepted (see `artifact_trust.rs`): the path must be `.../precompiled/<this engine's
    /// key>/<64 hex>.cwasm`, and the file and every directory above it owned by root and not writable by
    /// group or others. Any failure is an error for the caller to fall back on compiling.
    pub fn load_precompiled(&self, artifact: &Path) -> Result<Program, EngineError> {
        let key = compatibility_key(&self.inner);
        let file: File = artifact_trust::open_trusted(artifact, &key)?;
        let load_error = |e| EngineError::LoadArtifact {
            path: artifact.to_path_buf(),
            source: boxed(e),
        };
        let kind = wasmtime::Engine::detect_precompiled_file(artifact)
            .map_err(load_error)?
            .ok_or_else(|| EngineError::UntrustedArtifact {
                path: artifact.to_path_buf(),
                reason: "not a wasmtime artifact".into(),
            })?;
        match kind {
            // SAFETY: deserializing trusts the file to be code wasmtime compiled, unchanged for the module's
            // lifetime. `open_trusted` admits only a root-owned, not group/world-writable file in the image
            // store's precompile directory for this engine's key, below directories that only root can change:
            // the daemon (root) wrote it there from Wasm whose digest it checked, with this binary's
            // configuration, and nothing from a registry is ever placed there. The store never rewrites an
            // artifact in place (temp file + rename; removal unlinks), so the mapped pages cannot change
            // under the module. wasmtime itself checks the version and compiler settings it was made with.
            Precompiled::Module => unsafe { Module::deserialize_open_file(&self.inner, file) }
                .map(Program::Module)
                .map_err(load_error),
            // SAFETY: as for modules above; the path is the one `open_trusted` checked, in directories only
            // root can change, so it names the same file.
            Precompiled::Component => unsafe { Component::deserialize_file(&self.inner, artifact) }
                .map(Program::Component)
                .map_err(load_error),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use std::os::unix::fs::PermissionsExt;
    use std::path::PathBuf;

    use super::*;

    const HELLO: &str = r#"(module (func (export "_start")))"#;

    fn is_root() -> bool {
        if nix::unistd::geteuid().is_root() {
            return true;
        }
        eprintln!("skipped: needs root (artifacts must be root-owned to be loaded)");
        false
    }

    /// `<tmp>/precompiled/<key>/<hex>.cwasm` holding `bytes`, mode 0600, directories 0700.
    fn place(dir: &Path, key: &str, bytes: &[u8]) -> PathBuf {
        let key_dir = dir.join("precompiled").join(key);
        std::fs::create_dir_all(&key_dir).unwrap();
        for d in [dir.join("precompiled"), key_dir.clone()] {
            std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o700)).unwrap();
        }
        let path = key_dir.join(format!("{}.cwasm", "ab".repeat(32)));
        std::fs::write(&path, bytes).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        path
    }

    fn refusal(engine: &Engine, path: &Path) -> EngineError {
        match engine.load_precompiled(path) {
            Ok(_) => panic!("{} was loaded", path.display()),
            Err(e) => e,
        }
    }

    #[test]
    fn key_is_stable_and_shared_with_the_pod_engine() {
        let a = Precompiler::new().unwrap();
        let b = Precompiler::new().unwrap();
        assert_eq!(a.key(), b.key());
        assert_eq!(a.key().len(), 16);
        let engine = Engine::new().unwrap();
        assert_eq!(compatibility_key(engine.wasmtime()), a.key());
    }

    #[test]
    fn root_precompiled_module_and_component_load_as_their_kind() {
        if !is_root() {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let pre = Precompiler::new().unwrap();
        let module = pre.precompile(&wat::parse_str(HELLO).unwrap()).unwrap();
        let path = place(dir.path(), pre.key(), &module);
        pre.check(&path).unwrap();
        let engine = Engine::new().unwrap();
        assert!(matches!(
            engine.load_precompiled(&path).unwrap(),
            Program::Module(_)
        ));
        let component = pre
            .precompile(&wat::parse_str("(component)").unwrap())
            .unwrap();
        std::fs::write(&path, component).unwrap();
        assert!(matches!(
            engine.load_precompiled(&path).unwrap(),
            Program::Component(_)
        ));
    }

    #[test]
    fn root_untrusted_or_damaged_artifacts_are_refused() {
        if !is_root() {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let pre = Precompiler::new().unwrap();
        let engine = Engine::new().unwrap();
        let module = pre.precompile(&wat::parse_str(HELLO).unwrap()).unwrap();

        // Another engine's directory.
        let other = place(dir.path(), "0123456789abcdef", &module);
        let err = refusal(&engine, &other);
        assert!(
            matches!(err, EngineError::UntrustedArtifact { .. }),
            "{err}"
        );

        let path = place(dir.path(), pre.key(), &module);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).unwrap();
        let err = refusal(&engine, &path);
        assert!(err.to_string().contains("writable"), "{err}");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();

        std::fs::set_permissions(
            path.parent().unwrap(),
            std::fs::Permissions::from_mode(0o777),
        )
        .unwrap();
        let err = refusal(&engine, &path);
        assert!(err.to_string().contains("writable"), "{err}");
        std::fs::set_permissions(
            path.parent().unwrap(),
            std::fs::Permissions::from_mode(0o700),
        )
        .unwrap();

        let link = path.with_file_name(format!("{}.cwasm", "cd".repeat(32)));
        std::os::unix::fs::symlink(&path, &link).unwrap();
        assert!(engine.load_precompiled(&link).is_err());

        // Truncated: not an ELF file any more, for the daemon's check and for the loader.
        std::fs::write(&path, &module[..module.len() / 2]).unwrap();
        assert!(pre.check(&path).is_err());
        assert!(engine.load_precompiled(&path).is_err());
        std::fs::write(&path, b"garbage").unwrap();
        assert!(engine.load_precompiled(&path).is_err());
    }
}
