//! The daemon's side of the pod protocol: spawn a pod process, connect to its socket, and verify that the
//! process behind a socket is the one we started (pid + start time) before trusting it.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use hyper_util::rt::TokioIo;
use proto::pod::pod_client::PodClient;
use proto::pod::{Bootstrap, BootstrapReply, HelloRequest, PROTOCOL_VERSION};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;
use tonic::transport::{Channel, Endpoint, Uri};

/// A gRPC client of one pod process.
pub type Client = PodClient<Channel>;

/// How long a pod process may take from exec to its bootstrap reply.
const BOOTSTRAP_TIMEOUT: Duration = Duration::from_secs(30);

/// Failures talking to a pod process.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("starting pod process {exe}")]
    Spawn {
        exe: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("exchanging the bootstrap messages with the pod process")]
    Bootstrap(#[source] std::io::Error),
    #[error("the pod process did not answer its bootstrap within {0:?}")]
    BootstrapTimeout(Duration),
    #[error("the pod process failed to start: {0}")]
    Refused(String),
    #[error("pod protocol version mismatch: daemon speaks {ours}, pod process speaks {theirs}")]
    Version { ours: u32, theirs: u32 },
    #[error("connecting to pod socket {path}")]
    Connect {
        path: PathBuf,
        #[source]
        source: tonic::transport::Error,
    },
    #[error("asking the pod process at {path} who it is")]
    Hello {
        path: PathBuf,
        #[source]
        source: tonic::Status,
    },
    #[error("the process behind {path} is not the expected pod process ({reason})")]
    Impostor { path: PathBuf, reason: String },
}

/// A freshly started pod process.
pub struct Spawned {
    pub client: Client,
    pub pid: u32,
    pub start_time: u64,
    /// The child handle: await it to reap the process when it exits.
    pub child: tokio::process::Child,
}

/// Starts `exe pod` with `boot` on its stdin and the process's own log going to `log_path`. With
/// `own_pid_namespace` the pod process is the first process (pid 1) of a new PID namespace: the pod's processes
/// are its instances, as a Linux pod's are the processes of its containers.
pub async fn spawn(
    exe: &Path,
    boot: &Bootstrap,
    log_path: &Path,
    own_pid_namespace: bool,
) -> Result<Spawned, ClientError> {
    let spawn_err = |source| ClientError::Spawn {
        exe: exe.to_path_buf(),
        source,
    };
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log_path)
        .map_err(spawn_err)?;
    let mut command = tokio::process::Command::new(exe);
    command
        .arg("pod")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(log))
        // The pod must outlive the daemon: never kill it because a handle was dropped.
        .kill_on_drop(false);
    let mut child = if own_pid_namespace {
        spawn_in_new_pid_namespace(command).await
    } else {
        command.spawn()
    }
    .map_err(spawn_err)?;
    let reply = tokio::time::timeout(BOOTSTRAP_TIMEOUT, exchange(&mut child, boot)).await;
    let reply = match reply {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => {
            let _ = child.start_kill();
            return Err(e);
        }
        Err(_) => {
            let _ = child.start_kill();
            return Err(ClientError::BootstrapTimeout(BOOTSTRAP_TIMEOUT));
        }
    };
    if !reply.error.is_empty() {
        let _ = child.wait().await;
        return Err(ClientError::Refused(reply.error));
    }
    if reply.protocol_version != PROTOCOL_VERSION {
        let _ = child.start_kill();
        return Err(ClientError::Version {
            ours: PROTOCOL_VERSION,
            theirs: reply.protocol_version,
        });
    }
    let socket = PathBuf::from(&boot.socket_path);
    let client = match connect(&socket).await {
        Ok(c) => c,
        Err(e) => {
            let _ = child.start_kill();
            return Err(e);
        }
    };
    Ok(Spawned {
        client,
        pid: reply.pid,
        start_time: reply.start_time,
        child,
    })
}

/// `unshare(CLONE_NEWPID)` changes the namespace the calling thread's *next child* is born in, and only one
/// child can be that namespace's pid 1: so the fork happens on a throw-away thread that unshared first, never
/// on a runtime worker. The runtime is entered there so the child is still reaped and its pipes still polled
/// by it.
async fn spawn_in_new_pid_namespace(
    mut command: tokio::process::Command,
) -> std::io::Result<tokio::process::Child> {
    let runtime = tokio::runtime::Handle::current();
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("pidns-spawn".into())
        .spawn(move || {
            let _entered = runtime.enter();
            let spawned = nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWPID)
                .map_err(std::io::Error::from)
                .and_then(|()| command.spawn());
            let _ = tx.send(spawned);
        })?;
    rx.await
        .unwrap_or_else(|_| Err(std::io::Error::other("the spawning thread panicked")))
}

async fn exchange(
    child: &mut tokio::process::Child,
    boot: &Bootstrap,
) -> Result<BootstrapReply, ClientError> {
    let mut stdin = child
        .stdin
        .take()
        .ok_or_else(|| ClientError::Bootstrap(std::io::Error::other("no stdin pipe")))?;
    stdin
        .write_all(&prost::Message::encode_length_delimited_to_vec(boot))
        .await
        .map_err(ClientError::Bootstrap)?;
    // Closing stdin is the end-of-message marker.
    drop(stdin);
    let mut stdout = child
        .stdout
        .take()
        .ok_or_else(|| ClientError::Bootstrap(std::io::Error::other("no stdout pipe")))?;
    let mut buf = Vec::new();
    stdout
        .read_to_end(&mut buf)
        .await
        .map_err(ClientError::Bootstrap)?;
    if buf.is_empty() {
        let status = child.wait().await.map_err(ClientError::Bootstrap)?;
        return Err(ClientError::Refused(format!(
            "it exited ({status}) without a bootstrap reply; see its log"
        )));
    }
    prost::Message::decode_length_delimited(buf.as_slice()).map_err(|e| {
        ClientError::Bootstrap(std::io::Error::new(std::io::ErrorKind::InvalidData, e))
    })
}

/// Connects to a pod socket (lazily re-dialled by tonic if the connection drops).
pub async fn connect(socket: &Path) -> Result<Client, ClientError> {
    let path = socket.to_path_buf();
    // The URI is a placeholder: the connector below ignores it and dials the unix socket.
    let channel = Endpoint::from_static("http://pod.invalid")
        .connect_timeout(Duration::from_secs(5))
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let path = path.clone();
            async move { connect_unix(&path).await.map(TokioIo::new) }
        }))
        .await
        .map_err(|source| ClientError::Connect {
            path: socket.to_path_buf(),
            source,
        })?;
    Ok(PodClient::new(channel))
}

/// Longest path a unix socket address can hold (sun_path is 108 bytes with the terminating NUL).
const SUN_PATH_MAX: usize = 107;

/// Connects to a unix socket at any path length: a path too long for a socket address is reached through the
/// `/proc/self/fd/<n>` link of its directory, opened for just this call.
async fn connect_unix(path: &Path) -> std::io::Result<UnixStream> {
    if path.as_os_str().len() <= SUN_PATH_MAX {
        return UnixStream::connect(path).await;
    }
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return UnixStream::connect(path).await;
    };
    let dir = std::fs::File::open(dir)?;
    let short = Path::new("/proc/self/fd")
        .join(std::os::fd::AsRawFd::as_raw_fd(&dir).to_string())
        .join(name);
    let stream = UnixStream::connect(&short).await;
    drop(dir);
    stream
}

/// Reconnects to a pod process after a daemon restart and checks that it is the same process (protocol
/// version, pod id, pid and start time) before trusting anything it says.
pub async fn reconnect(
    socket: &Path,
    pod_id: &str,
    pid: u32,
    start_time: u64,
) -> Result<Client, ClientError> {
    let mut client = connect(socket).await?;
    let hello = client
        .hello(HelloRequest {})
        .await
        .map_err(|source| ClientError::Hello {
            path: socket.to_path_buf(),
            source,
        })?
        .into_inner();
    let impostor = |reason: String| ClientError::Impostor {
        path: socket.to_path_buf(),
        reason,
    };
    if hello.protocol_version != PROTOCOL_VERSION {
        return Err(ClientError::Version {
            ours: PROTOCOL_VERSION,
            theirs: hello.protocol_version,
        });
    }
    if hello.pod_id != pod_id {
        return Err(impostor(format!("it serves pod {}", hello.pod_id)));
    }
    if hello.pid != pid || hello.start_time != start_time {
        return Err(impostor(format!(
            "pid {} started at {}, expected pid {pid} started at {start_time}",
            hello.pid, hello.start_time
        )));
    }
    if !crate::fsutil::process_matches(pid, start_time) {
        return Err(impostor(format!(
            "pid {pid} is not running with that start time"
        )));
    }
    Ok(client)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn connects_to_a_socket_whose_path_is_too_long_for_sun_path() {
        let dir = tempfile::tempdir().unwrap();
        let deep = dir.path().join("x".repeat(60)).join("y".repeat(60));
        std::fs::create_dir_all(&deep).unwrap();
        let path = deep.join("pod.sock");
        assert!(path.as_os_str().len() > SUN_PATH_MAX);
        let listener = std::os::unix::net::UnixListener::bind(
            Path::new("/proc/self/fd")
                .join(
                    std::os::fd::AsRawFd::as_raw_fd(&std::fs::File::open(&deep).unwrap())
                        .to_string(),
                )
                .join("pod.sock"),
        );
        // (The pod process binds relative to its working directory instead; a test cannot move the whole test
        // process, so it binds through the same /proc link the client uses.)
        let listener = listener.unwrap();
        assert!(path.exists());
        let accept = std::thread::spawn(move || listener.accept().map(|_| ()));
        connect_unix(&path).await.unwrap();
        accept.join().unwrap().unwrap();
    }
}
