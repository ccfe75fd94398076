//! Keeps the proxy's in-memory [`KeyCache`] in step with the database by polling the revision
//! counter, so authenticating a request never waits on the database.
//!
//! Revocation therefore reaches a replica within one poll interval (plus one query). When the
//! database is unreachable the cache keeps serving what it last knew.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tollgate_core::KeyCache;

use crate::error::Result;
use crate::poll::{Poll, run_every};
use crate::store::Store;

/// Fills a [`KeyCache`] and applies changes to it. The first [`sync_once`](KeySync::sync_once)
/// loads every key; later ones fetch only rows changed since the last revision seen.
pub struct KeySync {
    store: Store,
    cache: Arc<KeyCache>,
    /// Highest revision applied; `None` until the first load.
    rev: Option<i64>,
}

impl KeySync {
    pub fn new(store: Store, cache: Arc<KeyCache>) -> KeySync {
        KeySync {
            store,
            cache,
            rev: None,
        }
    }

    /// Fills the cache from scratch (every key; revoked ones too, so they are refused as revoked).
    /// Returns how many records were loaded.
    pub async fn load(&mut self) -> Result<usize> {
        self.rev = None;
        self.sync_once().await
    }

    /// Applies the changes since the last call (everything on the first call); returns how many
    /// key records were written into the cache.
    pub async fn sync_once(&mut self) -> Result<usize> {
        // Revisions start at 1, so "since 0" is every row.
        let changes = self.store.key_records_since(self.rev.unwrap_or(0)).await?;
        let applied = changes.records.len();
        for record in changes.records {
            self.cache.upsert(record);
        }
        self.rev = Some(changes.rev);
        Ok(applied)
    }

    /// The revision the cache reflects, once loaded.
    pub fn rev(&self) -> Option<i64> {
        self.rev
    }

    /// Polls every `every` until `shutdown` resolves. Errors are logged and retried on the next
    /// tick; the cache is left as it was.
    pub async fn run(self, every: Duration, shutdown: impl Future<Output = ()>) {
        run_every(every, shutdown, self).await;
    }
}

impl Poll for KeySync {
    type Output = Result<usize>;

    // Dropping `sync_once` midway leaves the cache and `rev` consistent.
    fn pass(&mut self) -> impl Future<Output = Result<usize>> + Send {
        self.sync_once()
    }

    fn report(&mut self, result: Result<usize>) {
        match result {
            Ok(0) => {}
            Ok(applied) => tracing::debug!(applied, rev = self.rev, "key cache updated"),
            Err(error) => tracing::warn!(
                %error,
                "key cache sync failed; serving keys from memory until the next poll"
            ),
        }
    }
}
