//! The gRPC edge: the tonic service traits, implemented as a switchboard that hands every RPC to
//! [`crate::runtime::Runtime`] through one instrumentation layer ([`Edge::call`]).

mod image;
mod runtime;

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

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
    /// Changes state and is bounded by the caller's deadline (`grpc-timeout`; PullImage): runs in its
    /// own task like `Mutating`, so a caller that merely goes away does not cancel it, but when the
    /// deadline passes the task is aborted (a pull then stops unless another caller waits for the
    /// same image) and the caller gets DeadlineExceeded. tonic on its own would only drop the
    /// handler and answer Cancelled, with the detached work going on.
    Bounded(Option<Instant>),
}

/// When a request reached the server: stamped by [`stamp_arrival`], an interceptor that runs while
/// tonic sets up the request, just before tonic starts its own `grpc-timeout` timer.
#[derive(Clone, Copy, Debug)]
pub struct Arrival(pub Instant);

/// The interceptor that stamps [`Arrival`].
pub fn stamp_arrival(mut req: tonic::Request<()>) -> Result<tonic::Request<()>, Status> {
    req.extensions_mut().insert(Arrival(Instant::now()));
    Ok(req)
}

/// The instant before which a call with a `grpc-timeout` must answer, if it has one: measured from
/// the request's [`Arrival`] (else now), so it is never later than tonic's own timer, whose expiry
/// would drop the handler and answer Cancelled; and a little before the caller's deadline (half the
/// timeout, at most 50 ms) so our DeadlineExceeded reaches the caller before it gives up itself.
pub fn deadline<T>(req: &tonic::Request<T>) -> Option<Instant> {
    let timeout = parse_grpc_timeout(req.metadata().get("grpc-timeout")?.to_str().ok()?)?;
    let arrival = req
        .extensions()
        .get::<Arrival>()
        .map_or_else(Instant::now, |a| a.0);
    let margin = (timeout / 2).min(Duration::from_millis(50));
    Some(arrival + (timeout - margin))
}

/// `grpc-timeout` per the gRPC HTTP/2 protocol: at most 8 digits and a unit (H, M, S, m, u, n).
fn parse_grpc_timeout(value: &str) -> Option<Duration> {
    let unit_at = value.len().checked_sub(1)?;
    let (digits, unit) = value.split_at_checked(unit_at)?;
    if digits.is_empty() || digits.len() > 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n * 3600),
        "M" => Duration::from_secs(n * 60),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

/// Waits for `task` until `deadline`; past it, aborts the task. The deadline is also checked
/// against the clock whenever this is polled, so a poll that happens because tonic's own timer
/// fired in the same timer tick still sees it.
async fn join_until<T>(
    rpc: &'static str,
    task: tokio::task::JoinHandle<Result<T, ServerError>>,
    deadline: Instant,
) -> Result<T, ServerError> {
    let abort = task.abort_handle();
    let mut task = std::pin::pin!(task);
    let mut timer = std::pin::pin!(tokio::time::sleep_until(deadline.into()));
    let outcome = std::future::poll_fn(|cx| {
        use std::task::Poll;
        if Instant::now() >= deadline {
            return Poll::Ready(None);
        }
        if let Poll::Ready(joined) = task.as_mut().poll(cx) {
            return Poll::Ready(Some(joined));
        }
        match timer.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    })
    .await;
    match outcome {
        Some(Ok(result)) => result,
        Some(Err(source)) => Err(ServerError::Task { rpc, source }),
        None => {
            abort.abort();
            Err(ServerError::DeadlineExceeded(format!(
                "{rpc} did not finish before the caller's deadline; it was stopped"
            )))
        }
    }
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
            Kind::Mutating | Kind::Bounded(None) => match tokio::spawn(fut).await {
                Ok(r) => r,
                Err(source) => Err(ServerError::Task { rpc, source }),
            },
            Kind::Bounded(Some(deadline)) => join_until(rpc, tokio::spawn(fut), deadline).await,
            Kind::Polled => fut.await,
        };
        let _enter = span.enter();
        match result {
            Ok(v) => {
                match kind {
                    Kind::Mutating | Kind::Bounded(_) => info!("ok"),
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod deadline_tests {
    use super::*;

    #[test]
    fn grpc_timeout_values() {
        assert_eq!(parse_grpc_timeout("1m"), Some(Duration::from_millis(1)));
        assert_eq!(parse_grpc_timeout("30S"), Some(Duration::from_secs(30)));
        assert_eq!(parse_grpc_timeout("2M"), Some(Duration::from_secs(120)));
        assert_eq!(parse_grpc_timeout("1H"), Some(Duration::from_secs(3600)));
        assert_eq!(parse_grpc_timeout("5u"), Some(Duration::from_micros(5)));
        assert_eq!(
            parse_grpc_timeout("99999999n"),
            Some(Duration::from_nanos(99_999_999))
        );
        for bad in ["", "m", "123456789m", "1x", "-1S", "1.5S", "éS"] {
            assert_eq!(parse_grpc_timeout(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn deadline_is_a_little_before_the_callers() {
        let mut req = tonic::Request::new(());
        assert!(deadline(&req).is_none());
        req.metadata_mut()
            .insert("grpc-timeout", "10S".parse().unwrap());
        let left = deadline(&req).unwrap() - Instant::now();
        assert!(
            left <= Duration::from_millis(9_950) && left > Duration::from_secs(9),
            "{left:?}"
        );
        let mut req = stamp_arrival(req).unwrap();
        req.extensions_mut()
            .insert(Arrival(Instant::now() - Duration::from_secs(5)));
        let left = deadline(&req).unwrap() - Instant::now();
        assert!(
            left < Duration::from_secs(5),
            "measured from arrival: {left:?}"
        );
    }

    #[tokio::test]
    async fn work_past_the_deadline_is_aborted() {
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            // Holds `tx` until aborted; the receiver sees the drop.
            let _tx = tx;
            std::future::pending::<Result<(), ServerError>>().await
        });
        let err = join_until(
            "PullImage",
            task,
            Instant::now() + Duration::from_millis(20),
        )
        .await
        .unwrap_err();
        assert_eq!(Status::from(err).code(), tonic::Code::DeadlineExceeded);
        assert!(rx.await.is_err(), "the task was dropped");

        let done = tokio::spawn(async { Ok::<_, ServerError>(7) });
        let value = join_until("PullImage", done, Instant::now() + Duration::from_secs(5)).await;
        assert_eq!(value.unwrap(), 7);
    }
}
