//! Policy reloads: the policies in force and the shadow policies are
//! reloaded when their directory changes and on SIGHUP; shadow policies that
//! could not be loaded at start are loaded once they can be.

use std::sync::Arc;
use std::time::Duration;

use super::Stack;
use crate::policy;
use crate::telemetry::Metrics;

/// Reloads the policies when they change on disk and on SIGHUP, for as long
/// as the returned watcher lives.
pub fn reload_policies(store: &Arc<policy::Store>) -> Option<notify::RecommendedWatcher> {
    #[cfg(unix)]
    {
        let store = store.clone();
        tokio::spawn(async move {
            let Ok(mut hangup) =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
            else {
                tracing::warn!("cannot listen for SIGHUP");
                return;
            };
            while hangup.recv().await.is_some() {
                tracing::info!("SIGHUP: reloading policies");
                let store = store.clone();
                // Blocking work, serialized with the watcher's reloads.
                let _ = tokio::task::spawn_blocking(move || store.reload()).await;
            }
        });
    }
    match policy::store::watch(store.clone()) {
        Ok(watcher) => Some(watcher),
        Err(error) => {
            tracing::warn!(%error, dir = %store.dir().display(), "cannot watch the policy directory; SIGHUP still reloads");
            None
        }
    }
}

/// Reloads the policies in force and the shadow policies on change, for as
/// long as the returned watchers live; shadow policies that could not be
/// loaded at start are loaded (and shadow mode turned on) on their first
/// change that makes them valid.
pub fn watch_policies(stack: &Stack) -> Vec<notify::RecommendedWatcher> {
    let mut watchers: Vec<_> = reload_policies(stack.gateway.authorizer().store())
        .into_iter()
        .collect();
    if let Some(shadow) = stack.gateway.shadow() {
        watchers.extend(reload_policies(shadow.store()));
    }
    if let Some(candidate) = stack.shadow_pending.clone() {
        watchers.extend(load_shadow_when_valid(
            candidate,
            stack.gateway.shadow.clone(),
            stack.metrics.clone(),
        ));
    }
    watchers
}

/// Watches a shadow directory that did not load; on each change tries
/// again, and once it loads puts it in `slot` and reloads it on change.
fn load_shadow_when_valid(
    candidate: policy::Config,
    slot: Arc<arc_swap::ArcSwapOption<policy::Authorizer>>,
    metrics: Arc<Metrics>,
) -> Option<notify::RecommendedWatcher> {
    use notify::Watcher as _;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let mut watcher = match notify::recommended_watcher(
        move |event: notify::Result<notify::Event>| {
            if event.is_ok_and(|e| !e.kind.is_access()) {
                let _ = tx.send(());
            }
        },
    ) {
        Ok(watcher) => watcher,
        Err(error) => {
            tracing::error!(%error, "cannot watch the shadow policy directory; shadow mode stays off");
            return None;
        }
    };
    if let Err(error) = watcher.watch(&candidate.dir, notify::RecursiveMode::Recursive) {
        tracing::error!(%error, dir = %candidate.dir.display(), "cannot watch the shadow policy directory; shadow mode stays off");
        return None;
    }
    tokio::spawn(async move {
        let mut loaded = None;
        while loaded.is_none() && rx.recv().await.is_some() {
            tokio::time::sleep(Duration::from_millis(200)).await;
            while rx.try_recv().is_ok() {}
            let attempt = candidate.clone();
            let Ok(built) = tokio::task::spawn_blocking(move || attempt.build()).await else {
                continue;
            };
            match built {
                Ok(shadow) => {
                    let shadow = Arc::new(shadow);
                    tracing::info!(dir = %candidate.dir.display(), version = %shadow.store().current().version, "shadow policies loaded: shadow mode is on");
                    loaded = Some(reload_policies(shadow.store()));
                    slot.store(Some(shadow));
                }
                Err(error) => {
                    metrics.shadow_load_failures.inc();
                    tracing::error!(%error, dir = %candidate.dir.display(), "the shadow policies still cannot be loaded: shadow mode stays off");
                }
            }
        }
        // Loaded: this watcher's events are no longer read (nor kept), and
        // this task keeps the new store's watcher alive.
        drop(rx);
        if loaded.is_some() {
            std::future::pending::<()>().await;
        }
    });
    Some(watcher)
}
