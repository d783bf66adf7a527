//! The one wasmtime [`Config`] of wasm-cri, and the epoch ticker that drives interruption.
//!
//! Everything that changes compiled code lives in [`build_config`]: the precompile cache is keyed by
//! `Engine::precompile_compatibility_hash()`, which hashes these settings, so a second place that tweaks a
//! `Config` would silently make cached artifacts unusable (or, worse, mismatched).

use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::thread;
use std::time::Duration;

use wasmtime::{Config, InstanceAllocationStrategy, OptLevel, Strategy, WasmBacktraceDetails};

/// How often the epoch advances.
///
/// Every running instance yields to the tokio scheduler once per tick and a stop takes effect at the next
/// tick, so this is both the scheduling slice of a CPU-bound container and the worst-case stop latency (plus
/// scheduling). 10 ms is a Linux-like time slice: the pod's own gRPC tasks never wait long behind a busy guest,
/// while the cost stays negligible (100 atomic increments and thread wake-ups per second per pod, and a fiber
/// switch per tick per busy instance).
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Builds the wasmtime configuration. The only function allowed to do so (see the module docs).
pub fn build_config() -> Config {
    let mut config = Config::new();
    config
        .strategy(Strategy::Cranelift)
        .cranelift_opt_level(OptLevel::Speed)
        .parallel_compilation(true)
        // Stops and time slicing: compiled code checks the epoch at function entries and loop back-edges.
        .epoch_interruption(true)
        .wasm_component_model(true)
        // Debug info parsing would otherwise follow the WASMTIME_BACKTRACE_DETAILS variable of whichever
        // process compiles, making the cache key depend on the environment.
        .wasm_backtrace_details(WasmBacktraceDetails::Disable)
        // On-demand allocation: memories and tables are mapped at instantiation and unmapped when the store
        // drops, so an idle pod holds nothing. The pooling allocator would reserve slots for the maximum number
        // of instances and memories up front, in every pod process, which costs more than it saves at the
        // instantiation rate of containers (one per container start).
        .allocation_strategy(InstanceAllocationStrategy::OnDemand);
    // Copy-on-write memory images (the default) keep the data segments of identical containers shared pages.
    config.memory_init_cow(true);
    config
}

/// Keeps the background thread that advances the epoch of one engine. Dropping the last clone of the owning
/// engine drops the sender, which ends the thread at its next wait.
#[derive(Debug)]
pub struct EpochTicker {
    _stop: Sender<()>,
}

impl EpochTicker {
    /// Starts the ticker thread for `engine`. Call after any namespace switching: see `Engine::new`.
    pub fn start(engine: wasmtime::Engine) -> std::io::Result<EpochTicker> {
        let (stop, stopped) = mpsc::channel::<()>();
        thread::Builder::new()
            .name("wasm-epoch".to_string())
            .spawn(move || {
                loop {
                    match stopped.recv_timeout(EPOCH_TICK) {
                        Err(RecvTimeoutError::Timeout) => engine.increment_epoch(),
                        // Nothing is ever sent: a message or a disconnect both mean the engine is gone.
                        Ok(()) | Err(RecvTimeoutError::Disconnected) => return,
                    }
                }
            })?;
        Ok(EpochTicker { _stop: stop })
    }
}
