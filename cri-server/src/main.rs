//! `wasm-cri`: the Kubernetes CRI v1 server for WebAssembly, and (as `wasm-cri pod`) the per-pod process.

use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;

use cri_server::config::{Cli, Config};

mod image_cmd;

fn main() -> anyhow::Result<ExitCode> {
    // `wasm-cri pod` must reach its namespace switch while the process still has a single thread, so it is
    // dispatched before anything else (argument parsing included) can start one.
    if std::env::args_os().nth(1).is_some_and(|a| a == "pod") {
        init_tracing(&std::env::var("WASM_CRI_LOG").unwrap_or_else(|_| "info".into()));
        return Ok(podsandbox::pod::main());
    }
    if std::env::args_os().nth(1).is_some_and(|a| a == "image") {
        init_tracing(&std::env::var("WASM_CRI_LOG").unwrap_or_else(|_| "warn".into()));
        let _ = rustls::crypto::ring::default_provider().install_default();
        return image_cmd::main(std::env::args_os().collect());
    }
    let cli = Cli::parse();
    let config = Config::load(&cli).context("loading configuration")?;
    init_tracing(&config.log_level);
    // oci-client is built without a default TLS provider (the default one compiles aws-lc from C).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(cri_server::server::run(config))?;
    Ok(ExitCode::SUCCESS)
}

fn init_tracing(level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_new(level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .init();
}
