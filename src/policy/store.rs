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

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arc_swap::ArcSwap;
use cedar_policy::{
    Entities, Entity, EntityId, EntityTypeName, EntityUid, PolicyId, PolicySet,
    RestrictedExpression, Schema, ValidationMode, Validator,
};
use miette::Diagnostic;
use serde::Deserialize;
use sha1::{Digest as _, Sha1};

use super::catalogue;
use super::index::LayerIndex;
use crate::account::AccountId;
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

/// A mapped principal.
#[derive(Debug, Clone)]
pub struct Principal {
    /// The RAM ARN.
    pub arn: String,
    /// Its Cedar uid (`Ram::Role::"<arn>"` or `Ram::User::"<arn>"`).
    pub uid: EntityUid,
    /// The entity, with its groups as parents.
    pub entity: Entity,
    /// Group names.
    pub groups: Vec<String>,
    /// Its uid and its groups' uids: the schema lets groups have no parents,
    /// so `principal in G` holds exactly for these.
    pub member_of: Vec<EntityUid>,
    /// The action hierarchy and this principal, ready for a request's
    /// resource to be added.
    pub entities: Entities,
}

/// What entities.json says about an instance.
#[derive(Debug, Clone)]
pub struct Instance {
    /// The entity, with its tags.
    pub entity: Entity,
    /// Its `arn` attribute.
    pub arn: String,
    /// Its region.
    pub region: String,
    /// Its account.
    pub account: String,
    /// `PrePaid` or `PostPaid`, where known.
    pub charge_type: Option<String>,
    /// Whether it has a public IP, where known.
    pub has_public_ip: Option<bool>,
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

/// The line of each `@id("…")` in a policy file, in one pass (a search per
/// policy would make loading quadratic in a file's size).
fn id_lines(text: &str) -> HashMap<&str, usize> {
    let (mut lines, mut counted) = (HashMap::new(), (0, 1));
    for (offset, marker) in text.match_indices("@id(\"") {
        let line = counted.1 + text[counted.0..offset].matches('\n').count();
        counted = (offset, line);
        let rest = &text[offset + marker.len()..];
        if let Some(end) = rest.find("\")") {
            lines.entry(&rest[..end]).or_insert(line);
        }
    }
    lines
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

/// The version's hash: every file read, named relative to the directory
/// loaded, so that the same files give the same version wherever they are
/// mounted (every replica of a Kubernetes ConfigMap has its own
/// `..<timestamp>` directory).
struct Version {
    root: PathBuf,
    sha: Sha1,
}

impl Version {
    fn new(root: &Path) -> Self {
        Self {
            root: root.to_owned(),
            sha: Sha1::new(),
        }
    }

    fn add(&mut self, path: &Path, text: &str) {
        let name = path.strip_prefix(&self.root).unwrap_or(path);
        self.sha.update(name.as_os_str().as_encoded_bytes());
        self.sha.update([0]);
        self.sha.update(text.as_bytes());
    }
}

fn read(path: &Path, problems: &mut Problems, hasher: &mut Version) -> Option<String> {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            hasher.add(path, &text);
            Some(text)
        }
        Err(e) => {
            problems.add(path, None, format!("cannot read: {e}"));
            None
        }
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
    const ATTEMPTS: usize = 5;
    let configmap = dir.join("..data");
    if configmap.exists() {
        let resolve = || {
            std::fs::canonicalize(&configmap).map_err(|e| Error {
                problems: vec![Problem {
                    path: configmap.clone(),
                    line: None,
                    message: format!("cannot resolve: {e}"),
                }],
            })
        };
        // The kubelet may swap `..data` (and delete the directory it left)
        // while this reads: then read the new one, rather than keep a
        // failed or stale reload until the next change.
        let mut root = resolve()?;
        // Each swap is one more read; a ConfigMap changes seconds apart.
        for _ in 1..4 * ATTEMPTS {
            let loaded = load_snapshot(&root);
            let now = resolve()?;
            if now == root {
                return loaded;
            }
            tracing::info!(dir = %dir.display(), "the ConfigMap was swapped while being read; reading the new one");
            root = now;
        }
        return load_snapshot(&root);
    }
    for _ in 1..ATTEMPTS {
        let before = fingerprint(dir);
        let loaded = load_snapshot(dir);
        if fingerprint(dir) == before {
            return loaded;
        }
        tracing::info!(dir = %dir.display(), "policy files changed while being read; reading again");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    load_snapshot(dir)
}

/// Names, sizes and modification times of the files a load reads.
fn fingerprint(dir: &Path) -> Vec<(PathBuf, u64, Option<std::time::SystemTime>)> {
    let mut paths = vec![
        dir.join("schema.cedarschema"),
        dir.join("principals.toml"),
        dir.join("entities.json"),
    ];
    for layer in Layer::ALL {
        if let Ok(files) = layer_files(dir, layer) {
            paths.extend(files);
        }
    }
    paths.sort();
    paths
        .into_iter()
        .map(|path| {
            let meta = std::fs::metadata(&path).ok();
            let len = meta.as_ref().map_or(0, std::fs::Metadata::len);
            let modified = meta.and_then(|m| m.modified().ok());
            (path, len, modified)
        })
        .collect()
}

/// A layer's policy files: `<layer>/*.cedar` and `<layer>__*.cedar` at the
/// top (the flat form a ConfigMap can hold).
///
/// # Errors
///
/// Neither form exists: a missing layer would allow nothing or, worse, be
/// skipped.
fn layer_files(dir: &Path, layer: Layer) -> std::io::Result<Vec<PathBuf>> {
    let is_cedar = |p: &PathBuf| p.extension().is_some_and(|e| e == "cedar");
    let prefix = format!("{}__", layer.as_str());
    let flat: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
        .map(|e| e.path())
        .filter(is_cedar)
        .collect();
    match std::fs::read_dir(dir.join(layer.as_str())) {
        Ok(entries) => Ok(entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(is_cedar)
            .chain(flat)
            .collect()),
        // Only a layer directory that does not exist gives way to the flat
        // files: one that cannot be read (or a file named like it) fails.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !flat.is_empty() => Ok(flat),
        Err(e) => Err(e),
    }
}

/// Files under `dir` that look like policies but that no layer reads, each
/// with what is wrong: a `.cedar` file (any case of the extension) at any
/// depth that is not `<layer>/<name>.cedar` or `<layer>__<name>.cedar` at
/// the top, and a top-level folder (or link to one) whose name is a layer's
/// in another case (`Identity/`). ConfigMap internals (folders and links
/// named `..data`, `..2026_…`) are skipped; links to folders are followed,
/// as the loader follows them, within [`MAX_DEPTH`] levels and
/// [`MAX_ENTRIES`] entries, beyond which the directory is refused.
fn unread_policy_files(dir: &Path) -> Vec<(PathBuf, String)> {
    let mut walk = Walk {
        found: Vec::new(),
        entries: 0,
    };
    walk.dir(dir, 0);
    walk.found.sort();
    walk.found
}

/// How deep [`unread_policy_files`] looks.
const MAX_DEPTH: usize = 8;

/// How many entries [`unread_policy_files`] looks at.
const MAX_ENTRIES: usize = 10_000;

struct Walk {
    found: Vec<(PathBuf, String)>,
    entries: usize,
}

impl Walk {
    fn dir(&mut self, dir: &Path, depth: usize) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.filter_map(Result::ok) {
            self.entries += 1;
            if self.entries == MAX_ENTRIES {
                self.found.push((
                    dir.to_owned(),
                    format!("more than {MAX_ENTRIES} files and folders: the policy directory cannot be checked"),
                ));
            }
            if self.entries >= MAX_ENTRIES {
                return;
            }
            let name = entry.file_name().to_string_lossy().into_owned();
            let path = entry.path();
            // Follows links, as the loader's reads do.
            let is_dir = path.is_dir();
            if name.starts_with("..") && (is_dir || entry.file_type().is_ok_and(|t| t.is_symlink()))
            {
                continue;
            }
            if is_dir {
                self.folder(&path, &name, depth);
                continue;
            }
            let looks_like_policy = path
                .extension()
                .is_some_and(|e| e.to_string_lossy().eq_ignore_ascii_case("cedar"));
            if !looks_like_policy {
                continue;
            }
            let read = path.extension().is_some_and(|e| e == "cedar")
                && match depth {
                    0 => Layer::ALL
                        .iter()
                        .any(|l| name.starts_with(&format!("{}__", l.as_str()))),
                    1 => dir
                        .file_name()
                        .is_some_and(|d| Layer::ALL.iter().any(|l| d == l.as_str())),
                    _ => false,
                };
            if !read {
                self.found.push((
                    path,
                    "looks like a policy but would not be read: policies are control/<name>.cedar or identity/<name>.cedar (or control__<name>.cedar, identity__<name>.cedar at the top), with the extension in lower case".to_owned(),
                ));
            }
        }
    }

    fn folder(&mut self, path: &Path, name: &str, depth: usize) {
        let layer = Layer::ALL
            .iter()
            .find(|l| l.as_str().eq_ignore_ascii_case(name));
        if depth == 0
            && let Some(layer) = layer
            && name != layer.as_str()
        {
            self.found.push((
                path.to_owned(),
                format!(
                    "a folder named {name}/ is not read: the layer's folder is {}/ (lower case)",
                    layer.as_str()
                ),
            ));
        }
        if depth < MAX_DEPTH {
            self.dir(path, depth + 1);
        } else {
            self.found.push((
                path.to_owned(),
                format!("folders nested more than {MAX_DEPTH} deep are not checked: flatten the policy directory"),
            ));
        }
    }
}

fn load_snapshot(dir: &Path) -> Result<PolicyData, Error> {
    let mut problems = Problems::default();
    let mut hasher = Version::new(dir);

    let schema_path = dir.join("schema.cedarschema");
    let schema = read(&schema_path, &mut problems, &mut hasher).and_then(|text| {
        match Schema::from_cedarschema_str(&text) {
            Ok((schema, warnings)) => {
                for warning in warnings {
                    tracing::warn!(path = %schema_path.display(), %warning, "schema warning");
                }
                if !text.contains(&catalogue::schema_actions()) {
                    problems.add(
                        &schema_path,
                        None,
                        format!(
                            "the action declarations differ from the action catalogue; they must read:\n{}",
                            catalogue::schema_actions()
                        ),
                    );
                }
                Some(schema)
            }
            Err(e) => {
                problems.add(&schema_path, first_line(&text, &e), crate::telemetry::chain(&e));
                None
            }
        }
    });

    // A policy file the loader does not read would be ignored: a guardrail
    // meant to forbid would silently not be in force. Refuse it.
    for (path, message) in unread_policy_files(dir) {
        problems.add(&path, None, message);
    }

    let mut sources = HashMap::new();
    let mut ids: HashMap<String, (PathBuf, Option<usize>)> = HashMap::new();
    let mut texts: HashMap<PathBuf, String> = HashMap::new();
    let mut sets = Vec::new();
    for layer in Layer::ALL {
        let layer_dir = dir.join(layer.as_str());
        let mut set = PolicySet::new();
        let mut files: Vec<PathBuf> = match layer_files(dir, layer) {
            Ok(files) => files,
            Err(e) => {
                // A missing layer would allow nothing or, worse, be skipped:
                // refuse to start instead.
                problems.add(
                    &layer_dir,
                    None,
                    format!("cannot read the {} layer: {e}", layer.as_str()),
                );
                Vec::new()
            }
        };
        files.sort();
        for path in files {
            let Some(text) = read(&path, &mut problems, &mut hasher) else {
                continue;
            };
            let id_lines = id_lines(&text);
            match PolicySet::from_str(&text) {
                Err(errors) => {
                    for error in errors.iter() {
                        problems.add(&path, first_line(&text, error), error.to_string());
                    }
                }
                Ok(parsed) => {
                    if parsed.templates().next().is_some() {
                        problems.add(
                            &path,
                            None,
                            "templates are not supported: write static policies",
                        );
                    }
                    for policy in parsed.policies() {
                        let Some(id) = policy.annotation("id") else {
                            let head: String = policy.to_string().chars().take(60).collect();
                            problems.add(
                                &path,
                                None,
                                format!("every policy needs an @id(\"...\") annotation: {head}…"),
                            );
                            continue;
                        };
                        let line = id_lines.get(id).copied();
                        if let Some((other, other_line)) = ids.get(id) {
                            problems.add(
                                &path,
                                line,
                                format!(
                                    "@id({id:?}) is already used at {}:{}",
                                    other.display(),
                                    other_line.unwrap_or(0)
                                ),
                            );
                            continue;
                        }
                        ids.insert(id.to_owned(), (path.clone(), line));
                        let policy_id = PolicyId::new(id);
                        sources.insert(policy_id.clone(), path.clone());
                        if let Err(e) = set.add(policy.new_id(policy_id)) {
                            problems.add(&path, line, e.to_string());
                        }
                    }
                }
            }
            texts.insert(path, text);
        }
        sets.push(set);
    }

    if let Some(schema) = &schema {
        let validator = Validator::new(schema.clone());
        for set in &sets {
            let result = validator.validate(set, ValidationMode::Strict);
            for error in result.validation_errors() {
                let path = sources
                    .get(error.policy_id())
                    .cloned()
                    .unwrap_or_else(|| dir.to_owned());
                let line = texts.get(&path).and_then(|text| first_line(text, error));
                problems.add(&path, line, format!("[{}] {error}", error.policy_id()));
            }
            for warning in result.validation_warnings() {
                tracing::warn!(policy = %warning.policy_id(), %warning, "policy validation warning");
            }
        }
    }

    let principals = schema
        .as_ref()
        .map(|schema| {
            load_principals(
                &dir.join("principals.toml"),
                schema,
                &mut problems,
                &mut hasher,
            )
        })
        .unwrap_or_default();
    let instances = schema
        .as_ref()
        .map(|schema| {
            load_instances(
                &dir.join("entities.json"),
                schema,
                &mut problems,
                &mut hasher,
            )
        })
        .unwrap_or_default();

    let actions = schema
        .as_ref()
        .and_then(|schema| match schema.action_entities() {
            Ok(actions) => Some(actions),
            Err(e) => {
                problems.add(&schema_path, None, e.to_string());
                None
            }
        });

    match (schema, actions) {
        (Some(schema), Some(actions)) if problems.0.is_empty() => {
            let mut sets = sets.into_iter();
            let (Some(control), Some(identity)) = (sets.next(), sets.next()) else {
                return Err(Error {
                    problems: vec![Problem {
                        path: dir.to_owned(),
                        line: None,
                        message: "missing a layer".into(),
                    }],
                });
            };
            let digest = hasher.sha.finalize();
            let version = digest.iter().take(6).map(|b| format!("{b:02x}")).collect();
            let mut principals = principals;
            for principal in principals.values_mut() {
                principal.entities = actions
                    .clone()
                    .add_entities([principal.entity.clone()], None)
                    .map_err(|e| Error {
                        problems: vec![Problem {
                            path: dir.join("principals.toml"),
                            line: None,
                            message: e.to_string(),
                        }],
                    })?;
            }
            let indexes = [
                LayerIndex::new(&control, &actions),
                LayerIndex::new(&identity, &actions),
            ];
            Ok(PolicyData {
                schema,
                control,
                identity,
                indexes,
                principals,
                instances,
                actions,
                sources,
                version,
            })
        }
        _ => Err(Error {
            problems: problems.0,
        }),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PrincipalsFile {
    #[serde(default)]
    principal: Vec<PrincipalEntry>,
}

/// One `[[principal]]`: exactly one source (`spiffe_id`, or `jwt` with its
/// issuer and subject), the ARN and the groups.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PrincipalEntry {
    #[serde(default)]
    spiffe_id: Option<String>,
    #[serde(default)]
    jwt: Option<JwtSubject>,
    /// The old, source-less key: refused with a pointer to the new ones.
    #[serde(default)]
    identity: Option<String>,
    arn: String,
    #[serde(default)]
    groups: Vec<String>,
}

/// A JWT identity as policy files write it: `jwt = { issuer, subject }`
/// (principals.toml and the policy test cases).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwtSubject {
    /// `iss`.
    pub issuer: String,
    /// `sub`.
    pub subject: String,
}

impl JwtSubject {
    /// The caller identity it names.
    pub fn caller_id(&self) -> CallerId {
        CallerId::Jwt {
            issuer: self.issuer.clone(),
            subject: self.subject.clone(),
        }
    }
}

impl PrincipalEntry {
    /// The identity this entry maps, or why it names none or several.
    fn identity(&self) -> Result<CallerId, String> {
        match (&self.spiffe_id, &self.jwt, &self.identity) {
            (Some(id), None, None) if id.starts_with("spiffe://") && id.len() > 9 => {
                Ok(CallerId::Spiffe(id.clone()))
            }
            (Some(id), None, None) => Err(format!(
                "spiffe_id {id:?} is not a SPIFFE ID (spiffe://<trust domain>/<path>)"
            )),
            (None, Some(jwt), None) if !jwt.issuer.is_empty() && !jwt.subject.is_empty() => {
                Ok(jwt.caller_id())
            }
            (None, Some(_), None) => Err("jwt needs a non-empty issuer and subject".into()),
            (_, _, Some(old)) => Err(format!(
                "`identity = {old:?}` does not say which source it matches: write \
                 `spiffe_id = \"spiffe://…\"` (mTLS or a trusted x-forwarded-client-cert) or \
                 `jwt = {{ issuer = \"…\", subject = \"…\" }}`"
            )),
            (None, None, None) => Err(
                "name the identity: `spiffe_id = \"spiffe://…\"` or `jwt = { issuer, subject }`"
                    .into(),
            ),
            (Some(_), Some(_), None) => {
                Err("one identity per entry: spiffe_id or jwt, not both".into())
            }
        }
    }
}

/// `acs:ram::{account}:role/{name}` or `acs:ram::{account}:user/{name}`.
/// The Cedar type of a RAM user or role ARN, and its account.
pub fn principal_type(arn: &str) -> Option<(&'static str, &str)> {
    let rest = arn.strip_prefix("acs:ram::")?;
    let (account, resource) = rest.split_once(':')?;
    if !AccountId::is_valid(account) {
        return None;
    }
    let kind = match resource.split_once('/') {
        Some(("role", name)) if !name.is_empty() => "Ram::Role",
        Some(("user", name)) if !name.is_empty() => "Ram::User",
        _ => return None,
    };
    Some((kind, account))
}

fn uid(type_name: &str, id: &str) -> EntityUid {
    EntityUid::from_type_name_and_id(
        EntityTypeName::from_str(type_name)
            .unwrap_or_else(|_| unreachable!("fixed type names parse")),
        EntityId::new(id),
    )
}

fn load_principals(
    path: &Path,
    schema: &Schema,
    problems: &mut Problems,
    hasher: &mut Version,
) -> HashMap<CallerId, Principal> {
    let Some(text) = read(path, problems, hasher) else {
        return HashMap::new();
    };
    let file: PrincipalsFile = match toml::from_str(&text) {
        Ok(file) => file,
        Err(e) => {
            let line = e.span().map(|s| line_of(&text, s.start));
            problems.add(path, line, e.message().to_owned());
            return HashMap::new();
        }
    };
    let mut principals = HashMap::new();
    for entry in file.principal {
        let line = text.find(&entry.arn).map(|o| line_of(&text, o));
        let identity = match entry.identity() {
            Ok(identity) => identity,
            Err(message) => {
                problems.add(path, line, message);
                continue;
            }
        };
        let Some((kind, account)) = principal_type(&entry.arn) else {
            problems.add(
                path,
                line,
                format!(
                    "{:?} is not a RAM user or role ARN (acs:ram::<account>:role/<name>)",
                    entry.arn
                ),
            );
            continue;
        };
        let uid = uid(kind, &entry.arn);
        let parents: HashSet<EntityUid> = entry
            .groups
            .iter()
            .map(|g| self::uid("Ram::Group", g))
            .collect();
        let attrs = HashMap::from([
            (
                "arn".to_owned(),
                RestrictedExpression::new_string(entry.arn.clone()),
            ),
            (
                "account".to_owned(),
                RestrictedExpression::new_string(account.to_owned()),
            ),
        ]);
        let entity = match Entity::new(uid.clone(), attrs, parents.clone()) {
            Ok(entity) => entity,
            Err(e) => {
                problems.add(path, line, e.to_string());
                continue;
            }
        };
        // Check the entity against the schema, as a reload must.
        if let Err(e) = Entities::from_entities([entity.clone()], Some(schema)) {
            problems.add(path, line, crate::telemetry::chain(&e));
            continue;
        }
        if principals.contains_key(&identity) {
            problems.add(path, line, format!("identity {identity} is mapped twice"));
            continue;
        }
        principals.insert(
            identity,
            Principal {
                arn: entry.arn,
                uid: uid.clone(),
                entity,
                member_of: std::iter::once(uid.clone()).chain(parents).collect(),
                groups: entry.groups,
                entities: Entities::empty(),
            },
        );
    }
    principals
}

fn load_instances(
    path: &Path,
    schema: &Schema,
    problems: &mut Problems,
    hasher: &mut Version,
) -> HashMap<String, Instance> {
    let Some(text) = read(path, problems, hasher) else {
        return HashMap::new();
    };
    // `known` is the gateway's to say: true for every instance described
    // here (a file may not claim otherwise).
    let mut json: serde_json::Value = match serde_json::from_str(&text) {
        Ok(json) => json,
        Err(e) => {
            problems.add(path, Some(e.line()), e.to_string());
            return HashMap::new();
        }
    };
    if let Some(items) = json.as_array_mut() {
        for item in items {
            let is_instance = item
                .pointer("/uid/type")
                .and_then(serde_json::Value::as_str)
                == Some("Ecs::Instance");
            if let Some(attrs) = item
                .get_mut("attrs")
                .and_then(serde_json::Value::as_object_mut)
                .filter(|_| is_instance)
            {
                if attrs
                    .get("known")
                    .is_some_and(|k| k != &serde_json::Value::Bool(true))
                {
                    problems.add(path, None, "an instance's known attribute is set by the gateway (true for every instance described here): remove it");
                    return HashMap::new();
                }
                attrs.insert("known".into(), serde_json::Value::Bool(true));
            }
        }
    }
    let entities = match Entities::from_json_value(json, Some(schema)) {
        Ok(entities) => entities,
        Err(e) => {
            problems.add(path, None, crate::telemetry::chain(&e));
            return HashMap::new();
        }
    };
    let string = |entity: &Entity, name: &str| match entity.attr(name) {
        Some(Ok(cedar_policy::EvalResult::String(s))) => Some(s),
        _ => None,
    };
    let mut instances = BTreeMap::new();
    for entity in entities.iter() {
        if entity.uid().type_name().to_string() != "Ecs::Instance" {
            continue;
        }
        // Rules match the ARN attribute; it must be the ARN RAM would
        // check, built from the instance's own region, account and id.
        let id = entity.uid().id().unescaped().to_owned();
        let (region, account, arn) = (
            string(entity, "region").unwrap_or_default(),
            string(entity, "account").unwrap_or_default(),
            string(entity, "arn").unwrap_or_default(),
        );
        if !AccountId::is_valid(&account) {
            let line = text.find(&format!("\"{id}\"")).map(|o| line_of(&text, o));
            problems.add(
                path,
                line,
                format!(
                    "instance {id}: account {account:?} is not an Alibaba Cloud account ID (digits)"
                ),
            );
            continue;
        }
        let expected = catalogue::instance_arn(&region, &account, &id);
        if arn != expected {
            let line = text.find(&format!("\"{id}\"")).map(|o| line_of(&text, o));
            problems.add(
                path,
                line,
                format!("instance {id}: arn is {arn:?}, expected {expected:?} (from its region, account and id)"),
            );
            continue;
        }
        let has_public_ip = match entity.attr("hasPublicIp") {
            Some(Ok(cedar_policy::EvalResult::Bool(b))) => Some(b),
            _ => None,
        };
        instances.insert(
            entity.uid().id().unescaped().to_owned(),
            Instance {
                arn,
                region,
                account,
                charge_type: string(entity, "chargeType"),
                has_public_ip,
                entity: entity.clone(),
            },
        );
    }
    instances.into_iter().collect()
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
