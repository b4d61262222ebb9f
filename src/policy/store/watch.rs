//! Reloading the store when its directory changes.

use std::sync::Arc;

use super::Store;

/// Watches the directory and reloads on change, coalescing bursts of events
/// (editors and Kubernetes ConfigMap updates write several files). The
/// watcher stops when the returned value is dropped.
///
/// # Errors
///
/// The platform's file watcher cannot start.
pub fn watch(store: Arc<Store>) -> Result<notify::RecommendedWatcher, notify::Error> {
    use notify::Watcher as _;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if event.is_ok_and(|e| !e.kind.is_access()) {
            let _ = tx.send(());
        }
    })?;
    watcher.watch(store.dir(), notify::RecursiveMode::Recursive)?;
    tokio::spawn(async move {
        while rx.recv().await.is_some() {
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            while rx.try_recv().is_ok() {}
            let store = store.clone();
            // Reading and validating is blocking work: off the async workers.
            let _ = tokio::task::spawn_blocking(move || store.reload()).await;
        }
    });
    Ok(watcher)
}
