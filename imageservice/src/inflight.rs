//! Single-flight pulls: concurrent pulls of the same normalised reference with the same
//! credentials share one download. The first caller (the leader) runs the pull in its own future;
//! later callers (followers) wait for its outcome. When the leader's future is dropped (its caller's
//! deadline passed, or it was cancelled) the pull stops, and a follower that is still waiting takes
//! over, reusing every blob that was already verified and stored. So the work goes on exactly as
//! long as somebody wants its result.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::watch;

use crate::error::ImageError;
use crate::locks::lock;
use crate::types::{Image, RegistryAuth};

/// What followers receive: the image, or the leader's error shared.
type Outcome = Result<Image, Arc<ImageError>>;

#[derive(Default)]
pub(crate) struct InFlight {
    /// By normalised reference; one entry per distinct credentials (a pull with other credentials
    /// may well succeed where this one fails, so it is not made to share the outcome).
    pulls: Mutex<HashMap<String, Vec<Entry>>>,
    next_id: AtomicU64,
}

struct Entry {
    id: u64,
    auth: Option<RegistryAuth>,
    outcome: watch::Receiver<Option<Outcome>>,
}

pub(crate) enum Joined<'a> {
    /// Nobody is pulling this: run the pull and [`Leader::finish`] it.
    Leader(Leader<'a>),
    /// Somebody is: wait with [`wait`].
    Follower(watch::Receiver<Option<Outcome>>),
}

/// The caller that runs the pull. Dropping it without `finish` (cancellation) withdraws the entry
/// and wakes the followers, which then try to become the leader themselves.
pub(crate) struct Leader<'a> {
    inflight: &'a InFlight,
    key: String,
    id: u64,
    outcome: watch::Sender<Option<Outcome>>,
}

impl InFlight {
    pub(crate) fn join(&self, key: &str, auth: Option<&RegistryAuth>) -> Joined<'_> {
        let mut pulls = lock(&self.pulls);
        let entries = pulls.entry(key.to_owned()).or_default();
        if let Some(running) = entries.iter().find(|e| e.auth.as_ref() == auth) {
            return Joined::Follower(running.outcome.clone());
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = watch::channel(None);
        entries.push(Entry {
            id,
            auth: auth.cloned(),
            outcome: rx,
        });
        Joined::Leader(Leader {
            inflight: self,
            key: key.to_owned(),
            id,
            outcome: tx,
        })
    }

    fn withdraw(&self, key: &str, id: u64) {
        let mut pulls = lock(&self.pulls);
        if let Some(entries) = pulls.get_mut(key) {
            entries.retain(|e| e.id != id);
            if entries.is_empty() {
                pulls.remove(key);
            }
        }
    }

    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        lock(&self.pulls).is_empty()
    }
}

impl Leader<'_> {
    /// Publishes the outcome to the followers and returns it to the leader. The leader keeps its
    /// own error when nobody else waits; otherwise everybody gets the same shared error.
    pub(crate) fn finish(self, result: Result<Image, ImageError>) -> Result<Image, ImageError> {
        // Withdrawn first: a caller arriving from now on starts a fresh pull instead of taking an
        // outcome that may already be stale (tags move).
        self.inflight.withdraw(&self.key, self.id);
        match result {
            Ok(image) => {
                self.outcome.send_replace(Some(Ok(image.clone())));
                Ok(image)
            }
            // The withdrawn entry's receiver is gone, so any receiver left is a waiting follower.
            Err(error) if self.outcome.receiver_count() == 0 => Err(error),
            Err(error) => {
                let shared = Arc::new(error);
                self.outcome.send_replace(Some(Err(Arc::clone(&shared))));
                Err(ImageError::Shared(shared))
            }
        }
    }
}

impl Drop for Leader<'_> {
    fn drop(&mut self) {
        // After `finish` this finds nothing; after a cancellation it lets followers take over.
        self.inflight.withdraw(&self.key, self.id);
    }
}

/// Waits for the leader's outcome; `None` when the leader was cancelled before it had one.
pub(crate) async fn wait(
    mut outcome: watch::Receiver<Option<Outcome>>,
) -> Option<Result<Image, ImageError>> {
    let value = outcome.wait_for(Option::is_some).await.ok()?;
    value
        .as_ref()
        .map(|o| o.clone().map_err(ImageError::Shared))
}
