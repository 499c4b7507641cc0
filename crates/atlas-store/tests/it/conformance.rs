//! Every backend passes the same suite.

use std::sync::Arc;

use atlas_core::ports::BlobStore;
use atlas_store::{FaultStore, LocalStore, MemoryStore, conformance};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn memory_store_conforms() {
    let store: Arc<dyn BlobStore> = Arc::new(MemoryStore::new());
    conformance::run_all(&store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn local_store_conforms() {
    let dir = tempfile::tempdir().unwrap();
    // A root that does not exist yet: the first write must create it.
    let store: Arc<dyn BlobStore> = Arc::new(LocalStore::new(dir.path().join("repo")));
    conformance::run_all(&store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fault_store_without_faults_conforms() {
    let store: Arc<dyn BlobStore> = Arc::new(FaultStore::new(Arc::new(MemoryStore::new())));
    conformance::run_all(&store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fault_store_over_local_store_conforms() {
    let dir = tempfile::tempdir().unwrap();
    let local: Arc<dyn BlobStore> = Arc::new(LocalStore::new(dir.path()));
    let store: Arc<dyn BlobStore> = Arc::new(FaultStore::new(local));
    conformance::run_all(&store).await;
}
