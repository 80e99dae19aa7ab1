//! [`KeyStore`]: keys issued at run time (through the admin API), looked up on the request
//! path next to the config's keys.
//!
//! The store is an in-memory map behind an atomic pointer: a lookup is one hash-map probe on a
//! snapshot, with no lock and no I/O, so a key created or revoked by the admin API takes
//! effect on the very next request without touching the request path's cost. Whoever
//! persists the keys (the admin API's database) fills it at start and after each change; this
//! crate stays free of I/O.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use arc_swap::ArcSwap;

use crate::{ApiKeyEntry, KeyHash};

/// A shared handle on the run-time keys. Clones share one map, so the admin API and every
/// [`Authenticator`](crate::Authenticator) built from any config load see the same keys.
#[derive(Clone, Default)]
pub struct KeyStore {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    keys: ArcSwap<HashMap<KeyHash, Arc<ApiKeyEntry>>>,
    /// Serialises writers, so two concurrent changes cannot lose one another's update
    /// (readers never take it).
    write: Mutex<()>,
}

impl std::fmt::Debug for KeyStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyStore")
            .field("keys", &self.len())
            .finish()
    }
}

impl KeyStore {
    /// An empty store.
    pub fn new() -> KeyStore {
        KeyStore::default()
    }

    /// The entry whose hash is `hash`, if any (revoked and expired entries included: the
    /// caller decides). No lock, no I/O.
    pub fn get(&self, hash: &KeyHash) -> Option<Arc<ApiKeyEntry>> {
        self.inner.keys.load().get(hash).cloned()
    }

    /// Number of keys held.
    pub fn len(&self) -> usize {
        self.inner.keys.load().len()
    }

    /// Whether no key is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Adds or replaces one key (by hash); in force from the next lookup.
    pub fn insert(&self, entry: ApiKeyEntry) {
        self.update(|keys| {
            keys.insert(entry.hash.clone(), Arc::new(entry));
        });
    }

    /// Removes the key with this hash; refused from the next lookup.
    pub fn remove(&self, hash: &KeyHash) {
        self.update(|keys| {
            keys.remove(hash);
        });
    }

    /// Replaces every key at once (at start, and when a config reload re-resolves them
    /// against new tenants and models).
    pub fn replace(&self, entries: Vec<ApiKeyEntry>) {
        let map = entries
            .into_iter()
            .map(|e| (e.hash.clone(), Arc::new(e)))
            .collect();
        let _guard = self.lock();
        self.inner.keys.store(Arc::new(map));
    }

    /// Copy-on-write: writes are rare (an operator's action), reads are every request.
    fn update(&self, change: impl FnOnce(&mut HashMap<KeyHash, Arc<ApiKeyEntry>>)) {
        let _guard = self.lock();
        let mut map = HashMap::clone(&self.inner.keys.load());
        change(&mut map);
        self.inner.keys.store(Arc::new(map));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ()> {
        // The guard protects no data of its own: a poisoned lock is still usable.
        self.inner
            .write
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}
