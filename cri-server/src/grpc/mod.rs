//! The gRPC edge: the tonic service traits, implemented as a switchboard that hands every RPC to
//! [`crate::runtime::Runtime`] through one instrumentation layer ([`Edge::call`]).

mod image;
mod runtime;

use std::future::Future;
use std::sync::Arc;

use tonic::{Response, Status};
use tracing::{Instrument, debug, info, info_span, warn};

use crate::error::{ServerError, chain};
use crate::runtime::Runtime;

/// How an RPC is treated by the instrumentation layer.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Changes state: logged at info, and run in its own task so that a caller who gives up (kubelet
    /// timeout) does not cancel it halfway; the retry then finds the finished result.
    Mutating,
    /// Read-only and polled (every second by the kubelet): logged at debug.
    Polled,
}

/// The object implementing both CRI services.
#[derive(Clone)]
pub struct Edge {
    rt: Arc<Runtime>,
}

impl Edge {
    pub fn new(rt: Arc<Runtime>) -> Edge {
        Edge { rt }
    }

    /// The one instrumentation layer: span with the RPC name, logging, detached execution for mutations, and
    /// the single ServerError → Status conversion.
    async fn call<T, F, Fut>(
        &self,
        rpc: &'static str,
        kind: Kind,
        f: F,
    ) -> Result<Response<T>, Status>
    where
        T: Send + 'static,
        F: FnOnce(Arc<Runtime>) -> Fut,
        Fut: Future<Output = Result<T, ServerError>> + Send + 'static,
    {
        let span = info_span!("cri", rpc);
        let fut = f(Arc::clone(&self.rt)).instrument(span.clone());
        let result = match kind {
            Kind::Mutating => match tokio::spawn(fut).await {
                Ok(r) => r,
                Err(source) => Err(ServerError::Task { rpc, source }),
            },
            Kind::Polled => fut.await,
        };
        let _enter = span.enter();
        match result {
            Ok(v) => {
                match kind {
                    Kind::Mutating => info!("ok"),
                    Kind::Polled => debug!("ok"),
                }
                Ok(Response::new(v))
            }
            Err(err) => {
                warn!(error = %chain(&err), "failed");
                Err(err.into())
            }
        }
    }
}
