//! Per-key async mutexes, used to serialise pulls of the same reference: the second pull waits and
//! then finds everything in place instead of racing the first one over the same temp work.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};

#[derive(Default)]
pub(crate) struct KeyedLocks {
    // Weak so that an entry lives only while some pull holds or waits for it.
    map: Mutex<HashMap<String, Weak<tokio::sync::Mutex<()>>>>,
}

impl KeyedLocks {
    pub(crate) fn get(&self, key: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut map = lock(&self.map);
        if let Some(existing) = map.get(key).and_then(Weak::upgrade) {
            return existing;
        }
        map.retain(|_, weak| weak.strong_count() > 0);
        let fresh = Arc::new(tokio::sync::Mutex::new(()));
        map.insert(key.to_owned(), Arc::downgrade(&fresh));
        fresh
    }
}

/// Locks a std mutex, ignoring poisoning: the data under our mutexes is only changed after the
/// fallible disk work succeeded, so a panic elsewhere cannot leave it half-updated.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn same_key_same_lock_until_released() {
        let locks = KeyedLocks::default();
        let a = locks.get("x");
        assert!(Arc::ptr_eq(&a, &locks.get("x")));
        assert!(!Arc::ptr_eq(&a, &locks.get("y")));
        drop(a);
        assert_eq!(Arc::strong_count(&locks.get("x")), 1);
    }
}
