//! The daemon's error type and its one mapping to gRPC status codes.

use std::path::PathBuf;

use tonic::{Code, Status};

/// Everything a CRI method can fail with. Variants name the failed operation; causes stay in `#[source]`.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("{kind} {id:?} not found")]
    NotFound { kind: &'static str, id: String },
    #[error("{kind} id prefix {prefix:?} is ambiguous; give more characters of the id")]
    Ambiguous { kind: &'static str, prefix: String },
    #[error("invalid request: {0}")]
    InvalidArgument(String),
    #[error("{0}")]
    FailedPrecondition(String),
    /// The operation ran out of the time it was given (and was ended).
    #[error("{0}")]
    DeadlineExceeded(String),
    #[error("{rpc} is not implemented by wasm-cri yet (see docs/cri-coverage.md)")]
    Unimplemented { rpc: &'static str },
    /// A bounded resource is full (the streaming server's in-flight requests).
    #[error("{0}")]
    ResourceExhausted(String),
    /// The streaming server (exec, attach, port-forward) could not do its part.
    #[error("{op}")]
    Stream {
        op: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{op}")]
    Pod {
        op: String,
        #[source]
        source: podsandbox::client::ClientError,
    },
    /// The pod process answered with an error status; its code is passed on.
    #[error("{op}: {}", .status.message())]
    PodRpc { op: String, status: Status },
    #[error("{op}")]
    Image {
        op: String,
        #[source]
        source: imageservice::ImageError,
    },
    #[error("{op}")]
    Net {
        op: String,
        #[source]
        source: cni::NetError,
    },
    #[error("{op} {path}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("encoding record {path}")]
    Encode {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("the worker running {rpc} failed")]
    Task {
        rpc: &'static str,
        #[source]
        source: tokio::task::JoinError,
    },
}

impl ServerError {
    pub fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> ServerError {
        ServerError::Io {
            op,
            path: path.into(),
            source,
        }
    }

    fn code(&self) -> Code {
        match self {
            ServerError::NotFound { .. } => Code::NotFound,
            ServerError::Ambiguous { .. } | ServerError::InvalidArgument(_) => {
                Code::InvalidArgument
            }
            ServerError::FailedPrecondition(_) => Code::FailedPrecondition,
            ServerError::DeadlineExceeded(_) => Code::DeadlineExceeded,
            ServerError::Unimplemented { .. } => Code::Unimplemented,
            ServerError::ResourceExhausted(_) => Code::ResourceExhausted,
            ServerError::PodRpc { status, .. } => status.code(),
            ServerError::Image { source, .. } => image_code(source),
            ServerError::Pod { .. } => Code::Unavailable,
            ServerError::Net { .. }
            | ServerError::Io { .. }
            | ServerError::Stream { .. }
            | ServerError::Encode { .. }
            | ServerError::Task { .. } => Code::Internal,
        }
    }
}

/// Registry refusals keep their meaning for the caller: a kubelet or crictl user can tell missing
/// credentials (Unauthenticated) from a missing image (NotFound) without parsing the message.
fn image_code(err: &imageservice::ImageError) -> Code {
    use imageservice::ErrorKind as K;
    match err.kind() {
        K::InvalidArgument => Code::InvalidArgument,
        K::NotFound => Code::NotFound,
        K::Unauthenticated => Code::Unauthenticated,
        K::PermissionDenied => Code::PermissionDenied,
        K::Unavailable => Code::Unavailable,
        K::Other => Code::Unknown,
    }
}

pub use podsandbox::error_chain as chain;

impl From<ServerError> for Status {
    fn from(err: ServerError) -> Status {
        Status::new(err.code(), chain(&err))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code_of(e: ServerError) -> Code {
        Status::from(e).code()
    }

    #[test]
    fn codes() {
        assert_eq!(
            code_of(ServerError::NotFound {
                kind: "container",
                id: "x".into()
            }),
            Code::NotFound
        );
        assert_eq!(
            code_of(ServerError::Ambiguous {
                kind: "container",
                prefix: "a".into()
            }),
            Code::InvalidArgument
        );
        assert_eq!(
            code_of(ServerError::InvalidArgument("x".into())),
            Code::InvalidArgument
        );
        assert_eq!(
            code_of(ServerError::FailedPrecondition("x".into())),
            Code::FailedPrecondition
        );
        assert_eq!(
            code_of(ServerError::DeadlineExceeded("x".into())),
            Code::DeadlineExceeded
        );
        assert_eq!(
            code_of(ServerError::Unimplemented { rpc: "Exec" }),
            Code::Unimplemented
        );
        assert_eq!(
            code_of(ServerError::ResourceExhausted("x".into())),
            Code::ResourceExhausted
        );
        assert_eq!(
            code_of(ServerError::Stream {
                op: "dialing".into(),
                source: std::io::Error::other("refused")
            }),
            Code::Internal
        );
        assert_eq!(
            code_of(ServerError::PodRpc {
                op: "x".into(),
                status: Status::failed_precondition("elf")
            }),
            Code::FailedPrecondition
        );
        assert_eq!(
            code_of(ServerError::io(
                "reading",
                "/x",
                std::io::Error::other("boom")
            )),
            Code::Internal
        );
    }

    #[test]
    fn message_carries_the_cause_chain() {
        let s = Status::from(ServerError::io(
            "reading",
            "/x",
            std::io::Error::other("boom"),
        ));
        assert_eq!(s.message(), "reading /x: boom");
        let s = Status::from(ServerError::Unimplemented { rpc: "Exec" });
        assert!(s.message().contains("Exec"));
    }
}

#[cfg(test)]
mod image_code_tests {
    use super::*;

    #[test]
    fn image_errors_keep_their_kind() {
        let image = |source| {
            Status::from(ServerError::Image {
                op: "pulling".into(),
                source,
            })
            .code()
        };
        assert_eq!(
            image(imageservice::ImageError::InvalidReference {
                reference: "X".into(),
                reason: "r".into()
            }),
            Code::InvalidArgument
        );
        assert_eq!(
            image(imageservice::ImageError::NoMatchingPlatform {
                digest: "d".into(),
                available: "linux/arm64".into()
            }),
            Code::NotFound
        );
        let refused = |kind| imageservice::ImageError::FetchManifest {
            reference: "r".into(),
            source: Box::new(imageservice::registry::Failure {
                kind,
                source: "401".into(),
            }),
        };
        assert_eq!(
            image(refused(imageservice::FailureKind::Unauthorized)),
            Code::Unauthenticated
        );
        assert_eq!(
            image(refused(imageservice::FailureKind::Denied)),
            Code::PermissionDenied
        );
        assert_eq!(
            image(refused(imageservice::FailureKind::Unreachable)),
            Code::Unavailable
        );
        assert_eq!(
            image(imageservice::ImageError::NoLayers {
                reference: "r".into()
            }),
            Code::Unknown
        );
    }
}
