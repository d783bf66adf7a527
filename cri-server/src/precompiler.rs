//! The image store's [`imageservice::Precompiler`]: the pod processes' engine configuration
//! (`podsandbox::engine::precompiled`), so what the daemon compiles is what pod processes can load. The
//! image store stays free of wasmtime; this adapter is the only place the two meet.

use std::path::Path;

use imageservice::PrecompileError;
use podsandbox::engine::EngineError;
use podsandbox::engine::precompiled::Precompiler;

pub struct EnginePrecompiler(Precompiler);

impl EnginePrecompiler {
    pub fn new() -> Result<EnginePrecompiler, EngineError> {
        Precompiler::new().map(EnginePrecompiler)
    }
}

impl imageservice::Precompiler for EnginePrecompiler {
    fn key(&self) -> &str {
        self.0.key()
    }

    fn precompile(&self, wasm: &[u8]) -> Result<Vec<u8>, PrecompileError> {
        self.0.precompile(wasm).map_err(PrecompileError::from)
    }

    fn check(&self, artifact: &Path) -> Result<(), PrecompileError> {
        self.0.check(artifact).map_err(PrecompileError::from)
    }
}
