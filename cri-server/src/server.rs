//! Daemon start-up and shutdown: directories, stores, recovery, then the CRI socket until SIGTERM/SIGINT.
//! Pod processes are left running on exit: they belong to pods, not to this process.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use imageservice::{ImageStore, StoreOptions};
use proto::cri::image_service_server::ImageServiceServer;
use proto::cri::runtime_service_server::RuntimeServiceServer;
use tokio::net::UnixListener;
use tokio::signal::unix::{SignalKind, signal};
use tokio_stream::wrappers::UnixListenerStream;
use tracing::info;

use crate::config::Config;
use crate::grpc::Edge;
use crate::runtime::{Runtime, RuntimeBackend};
use crate::state::Store;

/// Runs the daemon until SIGTERM or SIGINT.
pub async fn run(mut config: Config) -> anyhow::Result<()> {
    for dir in [&config.root, &config.state] {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let images = ImageStore::open(
        &config.root.join("images"),
        StoreOptions {
            insecure_registries: config.insecure_registries.clone(),
            registries: config.registries.clone(),
        },
    )
    .context("opening the image store")?;
    if config.precompile {
        let precompiler = crate::precompiler::EnginePrecompiler::new()
            .context("building the engine that fills the precompile cache")?;
        images
            .set_precompiler(Arc::new(precompiler))
            .context("enabling the precompile cache")?;
    }
    let store = Store::load(&config.root).context("loading pod and container records")?;
    let exe = std::env::current_exe().context("finding this executable to start pod processes")?;
    // Bound before the runtime exists so that the URLs it hands out name the real port when the configured
    // one is 0.
    let stream_listener = tokio::net::TcpListener::bind(config.stream_address)
        .await
        .with_context(|| {
            format!(
                "binding the streaming server to {} (stream_address)",
                config.stream_address
            )
        })?;
    config.stream_address = stream_listener
        .local_addr()
        .context("reading the streaming server's address")?;
    // Pod networks come from CNI plugins while a CNI config exists, else from the native bridge backend
    // (unless disabled: then pods keep loopback only).
    let network = Arc::new(cni::CniOrNative::new(
        cni::CniBackend::new(config.cni.clone()),
        cni::NativeBackend::new(config.native_network.clone()),
    ));
    let rt = Arc::new(Runtime::new(
        config.clone(),
        store,
        Arc::new(images),
        exe,
        network,
    ));

    crate::recovery::recover(&rt).await;

    let streaming = tokio::spawn(crate::streaming::serve(
        stream_listener,
        Arc::clone(&rt.stream_tokens),
        Arc::new(RuntimeBackend::new(Arc::clone(&rt))),
    ));
    info!(stream_address = %config.stream_address, "streaming server listening");

    let listener = bind(&config.socket)?;
    info!(socket = %config.socket.display(), root = %config.root.display(), state = %config.state.display(), "serving CRI");
    notify_ready();

    let edge = Edge::new(Arc::clone(&rt));
    let mut term = signal(SignalKind::terminate()).context("installing SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing SIGINT handler")?;
    tonic::transport::Server::builder()
        .add_service(RuntimeServiceServer::new(edge.clone()))
        // Stamps each image request's arrival, so PullImage's deadline is measured from when tonic
        // started its own grpc-timeout timer (see grpc::deadline).
        .add_service(ImageServiceServer::with_interceptor(
            edge,
            crate::grpc::stamp_arrival,
        ))
        .serve_with_incoming_shutdown(UnixListenerStream::new(listener), async move {
            tokio::select! {
                _ = term.recv() => info!("SIGTERM: shutting down (pods keep running)"),
                _ = int.recv() => info!("SIGINT: shutting down (pods keep running)"),
            }
        })
        .await
        .context("serving CRI")?;
    streaming.abort();
    let _ = std::fs::remove_file(&config.socket);
    Ok(())
}

/// Binds the CRI socket, replacing a stale one, with mode 0660 (root and its group only).
fn bind(path: &Path) -> anyhow::Result<UnixListener> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            anyhow::bail!(
                "another process is serving {}; stop it or pass --socket with another path",
                path.display()
            );
        }
        std::fs::remove_file(path)
            .with_context(|| format!("removing stale socket {}", path.display()))?;
    }
    let listener =
        UnixListener::bind(path).with_context(|| format!("binding {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))
        .with_context(|| format!("setting mode 0660 on {}", path.display()))?;
    Ok(listener)
}

/// Tells systemd (Type=notify) that recovery is done and the socket is served. No-op outside systemd.
fn notify_ready() {
    let Some(addr) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let Ok(sock) = std::os::unix::net::UnixDatagram::unbound() else {
        return;
    };
    let _ = sock.send_to(b"READY=1", addr);
}
