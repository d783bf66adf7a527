//! Pins: digests an in-flight pull is using (blobs, and via the config digest its rootfs). A
//! concurrent `remove` skips pinned content, so a pull never loses a blob between checking for it
//! and using it.

use std::collections::hash_map::Entry;

use crate::digest::Digest;
use crate::locks::lock;
use crate::store::ImageStore;

/// Digests pinned by one pull; unpinned when the pull ends, however it ends.
pub(crate) struct Pins<'a> {
    store: &'a ImageStore,
    held: Vec<String>,
}

impl<'a> Pins<'a> {
    pub(crate) fn new(store: &'a ImageStore) -> Self {
        Pins {
            store,
            held: Vec::new(),
        }
    }

    pub(crate) fn pin(&mut self, digest: &Digest) {
        let digest = digest.to_string();
        *lock(&self.store.state)
            .pins
            .entry(digest.clone())
            .or_default() += 1;
        self.held.push(digest);
    }
}

impl Drop for Pins<'_> {
    fn drop(&mut self) {
        let mut state = lock(&self.store.state);
        for digest in self.held.drain(..) {
            if let Entry::Occupied(mut count) = state.pins.entry(digest) {
                *count.get_mut() -= 1;
                if *count.get() == 0 {
                    count.remove();
                }
            }
        }
    }
}
