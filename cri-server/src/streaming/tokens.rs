//! One-time tokens for streaming URLs, as the kubelet's streaming server hands them out: Exec, Attach and
//! PortForward store the validated request under a random token and answer
//! `http://<stream address>/<kind>/<token>`; the first HTTP request with that token takes the request out
//! again. A token is good for one use and for one minute; the URL is the only credential the stream server
//! checks, so tokens are 128 random bits.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use proto::cri::{AttachRequest, ExecRequest, PortForwardRequest};

use crate::error::ServerError;

/// How long a URL stays valid (the kubelet's `CacheTTL`).
pub const TOKEN_TTL: Duration = Duration::from_secs(60);
/// At most this many unused, unexpired tokens at once (the kubelet's `MaxInFlight`): bounds the memory a
/// caller who never connects can pin.
pub const MAX_IN_FLIGHT: usize = 1000;

/// A request waiting for its client to connect.
#[derive(Debug, Clone, PartialEq)]
pub enum StreamRequest {
    Exec(ExecRequest),
    Attach(AttachRequest),
    PortForward(PortForwardRequest),
}

impl StreamRequest {
    /// The URL path segment of this kind of request.
    pub fn kind(&self) -> &'static str {
        match self {
            StreamRequest::Exec(_) => "exec",
            StreamRequest::Attach(_) => "attach",
            StreamRequest::PortForward(_) => "portforward",
        }
    }
}

struct Entry {
    request: StreamRequest,
    expires: Instant,
}

/// Requests by token.
#[derive(Default)]
pub struct TokenCache {
    entries: Mutex<HashMap<String, Entry>>,
}

impl TokenCache {
    pub fn new() -> TokenCache {
        TokenCache::default()
    }

    /// Stores `request` and returns its new token.
    pub fn insert(&self, request: StreamRequest) -> Result<String, ServerError> {
        self.insert_at(request, Instant::now())
    }

    /// Takes the request stored under `token` out of the cache; `None` if there is none or it expired.
    pub fn consume(&self, token: &str) -> Option<StreamRequest> {
        self.consume_at(token, Instant::now())
    }

    fn insert_at(&self, request: StreamRequest, now: Instant) -> Result<String, ServerError> {
        let token = new_token()?;
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries.retain(|_, e| e.expires > now);
        if entries.len() >= MAX_IN_FLIGHT {
            return Err(ServerError::ResourceExhausted(format!(
                "{MAX_IN_FLIGHT} streaming requests are already waiting for their client; try again later"
            )));
        }
        entries.insert(
            token.clone(),
            Entry {
                request,
                expires: now + TOKEN_TTL,
            },
        );
        Ok(token)
    }

    fn consume_at(&self, token: &str, now: Instant) -> Option<StreamRequest> {
        let entry = self
            .entries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(token)?;
        (entry.expires > now).then_some(entry.request)
    }
}

/// 128 random bits, URL-safe. Unlike ids, a token must not be guessable, so a missing entropy source is an
/// error rather than a fallback.
fn new_token() -> Result<String, ServerError> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(|err| ServerError::Stream {
        op: "drawing a random streaming token".into(),
        source: std::io::Error::other(err.to_string()),
    })?;
    Ok(URL_SAFE_NO_PAD.encode(bytes))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn exec(id: &str) -> StreamRequest {
        StreamRequest::Exec(ExecRequest {
            container_id: id.into(),
            ..Default::default()
        })
    }

    #[test]
    fn a_token_is_single_use() {
        let cache = TokenCache::new();
        let token = cache.insert(exec("c1")).unwrap();
        assert_eq!(token.len(), 22);
        assert_eq!(cache.consume(&token), Some(exec("c1")));
        assert_eq!(cache.consume(&token), None);
    }

    #[test]
    fn tokens_are_distinct() {
        let cache = TokenCache::new();
        let a = cache.insert(exec("c1")).unwrap();
        let b = cache.insert(exec("c1")).unwrap();
        assert_ne!(a, b);
    }

    #[test]
    fn a_token_expires_after_a_minute() {
        let cache = TokenCache::new();
        let t0 = Instant::now();
        let fresh = cache.insert_at(exec("fresh"), t0).unwrap();
        let stale = cache.insert_at(exec("stale"), t0).unwrap();
        assert_eq!(
            cache.consume_at(&fresh, t0 + TOKEN_TTL - Duration::from_millis(1)),
            Some(exec("fresh"))
        );
        assert_eq!(cache.consume_at(&stale, t0 + TOKEN_TTL), None);
    }

    #[test]
    fn unknown_token_is_none() {
        assert_eq!(TokenCache::new().consume("nope"), None);
    }

    #[test]
    fn in_flight_requests_are_bounded_and_expired_ones_make_room() {
        let cache = TokenCache::new();
        let t0 = Instant::now();
        for _ in 0..MAX_IN_FLIGHT {
            cache.insert_at(exec("c"), t0).unwrap();
        }
        let err = cache.insert_at(exec("c"), t0).unwrap_err();
        assert!(matches!(err, ServerError::ResourceExhausted(_)), "{err}");
        cache.insert_at(exec("c"), t0 + TOKEN_TTL).unwrap();
    }

    #[test]
    fn kinds_match_url_paths() {
        assert_eq!(exec("c").kind(), "exec");
        assert_eq!(
            StreamRequest::Attach(AttachRequest::default()).kind(),
            "attach"
        );
        assert_eq!(
            StreamRequest::PortForward(PortForwardRequest::default()).kind(),
            "portforward"
        );
    }
}
