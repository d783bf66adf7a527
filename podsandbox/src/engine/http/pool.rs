//! The engine wasi:http handler instances run in: wasm-cri's one `Config` with the pooling allocator.
//!
//! A handler gets a fresh instance per request, so instantiation is on the hot path; the pooling allocator
//! keeps memories, tables and fiber stacks in pre-reserved slots and reuses them, instead of mapping and
//! unmapping them for every request as the on-demand allocator of the shared engine does. The pool is made only
//! in pod processes that serve a handler (on first use), so other pods reserve nothing.
//!
//! [`pooling_config`] changes nothing but the allocation strategy of [`build_config`]: compiled code is the
//! same, which the unit test below checks through `precompile_compatibility_hash`, and which lets a component
//! compiled by the shared engine (or taken from the precompile cache) be moved into this one without compiling
//! it again ([`Pool::adopt`]).

use std::sync::{Arc, Mutex};

use wasmtime::component::{Component, Linker};
use wasmtime::{InstanceAllocationStrategy, PoolingAllocationConfig};

use super::request::HandlerState;
use crate::engine::config::{EpochTicker, build_config};
use crate::engine::error::{EngineError, boxed};

/// Component instances alive at once in the pod's pool, across its handler containers: each container is
/// bounded by its own concurrency limit (default 100), so two of them at their limits fit. An instantiation
/// past it fails and the request is answered 503.
const POOL_COMPONENT_INSTANCES: u32 = 256;
/// Core instances per pooled component instance: a C handler componentized with the adapter has its module,
/// the adapter and two shim modules; room for more.
const CORE_INSTANCES_PER_COMPONENT: u32 = 8;
/// Linear memories per pooled component instance (the module's and the adapter's, when it keeps its own).
const MEMORIES_PER_COMPONENT: u32 = 2;
/// Tables per pooled component instance (the module's and the shims' indirect-call tables).
const TABLES_PER_COMPONENT: u32 = 8;

/// The configuration of the handler engine: [`build_config`] with the pooling allocator.
pub fn pooling_config() -> wasmtime::Config {
    let mut pool = PoolingAllocationConfig::default();
    pool.total_component_instances(POOL_COMPONENT_INSTANCES)
        .total_core_instances(POOL_COMPONENT_INSTANCES * CORE_INSTANCES_PER_COMPONENT)
        .total_memories(POOL_COMPONENT_INSTANCES * MEMORIES_PER_COMPONENT)
        .total_tables(POOL_COMPONENT_INSTANCES * TABLES_PER_COMPONENT)
        // One fiber stack per instance running at once.
        .total_stacks(POOL_COMPONENT_INSTANCES);
    let mut config = build_config();
    config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    config
}

/// The handler engine of this pod process, its linker and its epoch ticker.
pub struct Pool {
    engine: wasmtime::Engine,
    linker: Linker<HandlerState>,
    _ticker: EpochTicker,
}

impl Pool {
    /// The pod's pool, made on first use. Starts the pool's epoch ticker thread: call it only after the pod
    /// joined its namespaces (as for `Engine::new`).
    pub fn shared() -> Result<Arc<Pool>, EngineError> {
        static POOL: Mutex<Option<Arc<Pool>>> = Mutex::new(None);
        // Plain data: still consistent if a holder panicked.
        let mut slot = POOL.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(pool) = &*slot {
            return Ok(Arc::clone(pool));
        }
        let pool = Arc::new(Pool::new()?);
        *slot = Some(Arc::clone(&pool));
        Ok(pool)
    }

    fn new() -> Result<Pool, EngineError> {
        let engine = wasmtime::Engine::new(&pooling_config())
            .map_err(|e| EngineError::BuildEngine { source: boxed(e) })?;
        let mut linker = Linker::new(&engine);
        let link = |e| EngineError::LinkWasi {
            abi: "preview2 + wasi:http",
            source: boxed(e),
        };
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(link)?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker).map_err(link)?;
        let ticker = EpochTicker::start(engine.clone())
            .map_err(|source| EngineError::StartTicker { source })?;
        Ok(Pool {
            engine,
            linker,
            _ticker: ticker,
        })
    }

    pub fn engine(&self) -> &wasmtime::Engine {
        &self.engine
    }

    pub fn linker(&self) -> &Linker<HandlerState> {
        &self.linker
    }

    /// The component compiled by another engine of the same configuration, loaded into this one from its
    /// serialized code, without compiling again.
    pub fn adopt(&self, component: &Component) -> Result<Component, EngineError> {
        let bytes = component
            .serialize()
            .map_err(|e| EngineError::AdoptHandler { source: boxed(e) })?;
        // SAFETY: `bytes` were serialized just above by this process's wasmtime from a component it compiled
        // (never read from outside), and `deserialize` checks they match this engine's configuration.
        unsafe { Component::deserialize(&self.engine, &bytes) }
            .map_err(|e| EngineError::AdoptHandler { source: boxed(e) })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::hash::{DefaultHasher, Hash, Hasher};

    use super::*;

    fn compat_hash(config: &wasmtime::Config) -> u64 {
        let engine = wasmtime::Engine::new(config).unwrap();
        let mut h = DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut h);
        h.finish()
    }

    #[test]
    fn pooling_engine_shares_the_precompile_cache_key() {
        assert_eq!(compat_hash(&build_config()), compat_hash(&pooling_config()));
    }

    #[test]
    fn a_component_compiled_by_the_shared_engine_is_adopted() {
        let shared = wasmtime::Engine::new(&build_config()).unwrap();
        let bytes = wat::parse_str("(component (core module))").unwrap();
        let component = Component::from_binary(&shared, &bytes).unwrap();
        let pool = Pool::new().unwrap();
        pool.adopt(&component).unwrap();
    }
}
