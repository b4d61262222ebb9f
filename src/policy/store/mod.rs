//! Loading the policy directory, validating it against the schema (strict
//! mode), and swapping it in atomically on reload.
//!
//! ```text
//! policies/schema.cedarschema   the Cedar model
//! policies/control/*.cedar      guardrails: must allow (RAM's control policies)
//! policies/identity/*.cedar     permissions: must allow (RAM's identity policies)
//! policies/principals.toml      identities → RAM user or role ARNs and groups
//! policies/entities.json        known instances: attributes and tags
//! ```
//!
//! A ConfigMap has no subdirectories, so a policy file may also sit at the
//! top as `<layer>__<name>.cedar` (`control__guardrails.cedar` is
//! `control/guardrails.cedar`); the Helm chart mounts its ConfigMap so.
//!
//! Every policy carries a unique `@id`, used in decisions and logs. A load
//! fails with `file:line` messages; a reload that fails keeps the last good
//! set and is counted.
//!
//! One file per concern: `files` reads a consistent snapshot of the
//! directory (a ConfigMap's `..data` re-resolved, a plain directory's
//! fingerprint compared) and refuses stray policy files; `snapshot` parses
//! and validates one snapshot; `principals` and `entities` map
//! principals.toml and entities.json; this file holds the versioned live
//! [`Store`]; [`watch`](fn@watch) reloads it on change.

mod entities;
mod files;
mod principals;
mod snapshot;
mod watch;

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arc_swap::ArcSwap;
use cedar_policy::{Entities, PolicyId, PolicySet, Schema};
use miette::Diagnostic;

pub use entities::Instance;
pub use principals::{JwtSubject, Principal, principal_type};
pub use watch::watch;

use super::index::LayerIndex;
use crate::identity::CallerId;

/// One problem in the policy directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The file.
    pub path: PathBuf,
    /// 1-based line, where known.
    pub line: Option<usize>,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{line}: {}", self.path.display(), self.message),
            None => write!(f, "{}: {}", self.path.display(), self.message),
        }
    }
}

/// The policy directory cannot be used.
#[derive(Debug, thiserror::Error)]
pub struct Error {
    /// Every problem found.
    pub problems: Vec<Problem>,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid policies ({} problem(s))", self.problems.len())?;
        for problem in &self.problems {
            write!(f, "\n  {problem}")?;
        }
        Ok(())
    }
}

/// The two layers, in the order RAM evaluates them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Layer {
    /// The platform team's guardrails.
    Control,
    /// Per-team permissions.
    Identity,
}

impl Layer {
    /// Both layers, in evaluation order.
    pub const ALL: [Layer; 2] = [Layer::Control, Layer::Identity];

    /// The directory name, also the layer's name in decisions.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Control => "control",
            Self::Identity => "identity",
        }
    }

    /// RAM's name for the policy type.
    pub fn ram_policy_type(self) -> &'static str {
        match self {
            Self::Control => "ControlPolicy",
            Self::Identity => "IdentityPolicy",
        }
    }
}

/// One loaded and validated policy directory.
pub struct PolicyData {
    /// The schema.
    pub schema: Schema,
    /// Control policies.
    pub control: PolicySet,
    /// Identity policies.
    pub identity: PolicySet,
    /// Each layer's policies, indexed for decisions.
    pub indexes: [LayerIndex; 2],
    /// Identity → principal.
    pub principals: HashMap<CallerId, Principal>,
    /// Instance id → instance.
    pub instances: HashMap<String, Instance>,
    /// The Resource Directory as entities.json describes it: its
    /// `Ram::Account`s and `Ram::Folder`s, in every request's entities so
    /// that `resource in Ram::Folder::"…"` holds for an instance of an
    /// account in that folder (or one below it).
    pub directory: Vec<cedar_policy::Entity>,
    /// The accounts `directory` places in a folder (read per call by
    /// [`Self::placed`]).
    pub placed_accounts: std::collections::HashSet<String>,
    /// Each account `directory` describes, with the folders above it: the
    /// part of the directory a request on that account's instance needs.
    pub ancestry: HashMap<String, std::sync::Arc<[cedar_policy::Entity]>>,
    /// The action hierarchy (groups such as `ecs:*`), which `action in`
    /// needs in every request's entities.
    pub actions: Entities,
    /// Where each policy came from, for messages.
    pub sources: HashMap<PolicyId, PathBuf>,
    /// A short hash of every file loaded.
    pub version: String,
}

impl fmt::Debug for PolicyData {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PolicyData")
            .field("version", &self.version)
            .field("policies", &self.sources.len())
            .field("principals", &self.principals.len())
            .field("instances", &self.instances.len())
            .finish()
    }
}

impl PolicyData {
    /// Whether `account` may be decided on: entities.json describes no
    /// Resource Directory, or places the account in a folder.
    pub fn placed(&self, account: &str) -> bool {
        if self.directory.is_empty() {
            return true;
        }
        self.placed_accounts.contains(account)
    }

    /// A layer's index.
    pub fn layer_index(&self, layer: Layer) -> &LayerIndex {
        &self.indexes[layer as usize]
    }

    /// Number of policies.
    pub fn policy_count(&self) -> usize {
        self.sources.len()
    }
}

/// 1-based line of a byte offset.
fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|b| **b == b'\n')
        .count()
        + 1
}

fn first_line(text: &str, diagnostic: &dyn Diagnostic) -> Option<usize> {
    diagnostic
        .labels()
        .and_then(|mut labels| labels.next())
        .map(|l| line_of(text, l.offset()))
}

/// Collects problems while loading.
#[derive(Default)]
struct Problems(Vec<Problem>);

impl Problems {
    fn add(&mut self, path: &Path, line: Option<usize>, message: impl Into<String>) {
        self.0.push(Problem {
            path: path.to_owned(),
            line,
            message: message.into(),
        });
    }
}

/// Loads and validates the directory, from a consistent snapshot of it.
///
/// A Kubernetes ConfigMap volume swaps every file at once by pointing its
/// `..data` symlink at a new directory: when there is one, it is resolved
/// once and everything is read from that one directory, never half from
/// the old and half from the new. A plain directory is read until two
/// looks at its files (names, sizes, modification times) before and after
/// reading agree.
///
/// # Errors
///
/// Every problem found, with file and line.
pub fn load(dir: &Path) -> Result<PolicyData, Error> {
    files::consistently(dir, snapshot::load)
}

/// The active policy data and reload bookkeeping.
pub struct Store {
    dir: PathBuf,
    current: ArcSwap<PolicyData>,
    /// One reload at a time (SIGHUP and the watcher can fire together):
    /// the later reload reads the later files and swaps last.
    reloading: std::sync::Mutex<()>,
    reloads_ok: AtomicU64,
    reloads_failed: AtomicU64,
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store")
            .field("dir", &self.dir)
            .field("version", &self.current.load().version)
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Loads `dir`.
    ///
    /// # Errors
    ///
    /// The directory has problems.
    pub fn open(dir: impl Into<PathBuf>) -> Result<Self, Error> {
        let dir = dir.into();
        let data = load(&dir)?;
        tracing::info!(dir = %dir.display(), version = %data.version, policies = data.policy_count(), "policies loaded");
        Ok(Self {
            dir,
            current: ArcSwap::from_pointee(data),
            reloading: std::sync::Mutex::new(()),
            reloads_ok: AtomicU64::new(0),
            reloads_failed: AtomicU64::new(0),
        })
    }

    /// The policy data in force.
    pub fn current(&self) -> Arc<PolicyData> {
        self.current.load_full()
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Loads the directory again and swaps it in if it is valid; otherwise
    /// keeps the data in force. Blocking (it reads and validates): from
    /// async code, call it through `spawn_blocking`.
    ///
    /// # Errors
    ///
    /// The new files have problems; nothing changed.
    pub fn reload(&self) -> Result<String, Error> {
        let _one_at_a_time = self.reloading.lock().unwrap_or_else(|e| e.into_inner());
        match load(&self.dir) {
            Ok(data) => {
                let version = data.version.clone();
                let previous = self.current.swap(Arc::new(data));
                self.reloads_ok.fetch_add(1, Ordering::Relaxed);
                if previous.version != version {
                    tracing::info!(from = %previous.version, to = %version, "policies reloaded");
                }
                Ok(version)
            }
            Err(error) => {
                self.reloads_failed.fetch_add(1, Ordering::Relaxed);
                tracing::error!(%error, version = %self.current.load().version, "policy reload failed, keeping the policies in force");
                Err(error)
            }
        }
    }

    /// Reloads so far: (succeeded, failed).
    pub fn reload_counts(&self) -> (u64, u64) {
        (
            self.reloads_ok.load(Ordering::Relaxed),
            self.reloads_failed.load(Ordering::Relaxed),
        )
    }
}

impl crate::telemetry::metrics::PolicyState for Store {
    fn reload_counts(&self) -> (u64, u64) {
        Store::reload_counts(self)
    }

    fn in_force(&self) -> (String, usize) {
        let data = self.current.load();
        (data.version.clone(), data.policy_count())
    }
}
