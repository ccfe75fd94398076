//! The store behind the proxy's [`BatchBook`]: batches recorded in the database, and a batch
//! marked settled only once its ledger rows are durable (flushed to the database or the spool),
//! so a crash between the two re-settles it — a no-op in the idempotent ledger — rather than
//! lose its rows.

use tollgate_core::batch::{BatchRecord, BatchSettlement};
use tollgate_proxy::batch::{BatchBook, BookFuture};
use tollgate_store::Store;
use tollgate_store::ledger::Ledger;

pub struct StoreBatchBook {
    pub store: Store,
    pub ledger: Ledger,
    /// This process's replica id: whose hold on a batch's reservation is whose.
    pub holder: String,
    /// How long a hold lasts unless renewed (a few poll intervals).
    pub hold_ms: i64,
}

impl BatchBook for StoreBatchBook {
    fn record(&self, record: BatchRecord) -> BookFuture<'_, ()> {
        Box::pin(async move { self.store.record_batch(&record).await.map_err(text) })
    }

    fn created(&self, request_id: String, batch_id: String) -> BookFuture<'_, bool> {
        Box::pin(async move {
            self.store
                .batch_created(&request_id, &batch_id)
                .await
                .map_err(text)
        })
    }

    fn hold(&self, batch_id: String) -> BookFuture<'_, bool> {
        Box::pin(async move {
            let now = tollgate_core::time::now_ms();
            let until = now.saturating_add(self.hold_ms);
            self.store
                .hold_batch(&batch_id, &self.holder, now, until)
                .await
                .map_err(text)
        })
    }

    fn abandon(&self, request_id: String) -> BookFuture<'_, ()> {
        Box::pin(async move { self.store.abandon_batch(&request_id).await.map_err(text) })
    }

    fn intents(&self, before_ms: i64) -> BookFuture<'_, Vec<BatchRecord>> {
        Box::pin(async move { self.store.batch_intents(before_ms).await.map_err(text) })
    }

    fn unsettled(&self) -> BookFuture<'_, Vec<BatchRecord>> {
        Box::pin(async move { self.store.unsettled_batches().await.map_err(text) })
    }

    fn settle(&self, batch_id: String, settlement: BatchSettlement) -> BookFuture<'_, bool> {
        Box::pin(async move {
            self.ledger.flush().await;
            self.store
                .settle_batch(&batch_id, settlement)
                .await
                .map_err(text)
        })
    }
}

fn text(error: tollgate_store::StoreError) -> String {
    error.to_string()
}
