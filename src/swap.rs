//! A value that is replaced whole while readers keep using the one they took: the providers and
//! the routes, which the live configuration swaps without a restart.
//!
//! A reader takes an `Arc` of the current value and keeps it for as long as it needs (a request
//! verifies with the providers it started with; an attempt runs the routes current when it
//! started), so a swap never cuts anything short. It must never hold its lock across an await.

use std::sync::{Arc, RwLock};

/// The current value, replaced whole by [`Swap::store`].
pub struct Swap<T>(RwLock<Arc<T>>);

impl<T> Swap<T> {
    pub fn new(value: T) -> Self {
        Self(RwLock::new(Arc::new(value)))
    }

    /// The current value; later swaps do not change it.
    pub fn load(&self) -> Arc<T> {
        // A panic elsewhere cannot leave the `Arc` half-written: keep going.
        self.0.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Make `value` the current one.
    pub fn store(&self, value: T) {
        *self.0.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(value);
    }
}
