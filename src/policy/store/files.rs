//! The policy directory on disk: which files a load reads, a consistent
//! snapshot of them (a Kubernetes ConfigMap's `..data` link resolved once
//! per read, a plain directory read until its fingerprint holds still), the
//! version hash of what was read, and the refusal of policy files no layer
//! would read.

use std::path::{Path, PathBuf};

use sha1::{Digest as _, Sha1};

use super::{Error, Layer, Problem, Problems};

/// The version's hash: every file read, named relative to the directory
/// loaded, so that the same files give the same version wherever they are
/// mounted (every replica of a Kubernetes ConfigMap has its own
/// `..<timestamp>` directory).
pub(super) struct Version {
    root: PathBuf,
    sha: Sha1,
}

impl Version {
    pub(super) fn new(root: &Path) -> Self {
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

    /// The version's name: the first six bytes of the hash, in hex.
    pub(super) fn finish(self) -> String {
        let digest = self.sha.finalize();
        hex::encode(&digest[..6])
    }
}

/// The text of `path`, added to the version; `None` (a problem) when it
/// cannot be read.
pub(super) fn read(path: &Path, problems: &mut Problems, hasher: &mut Version) -> Option<String> {
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

/// Reads `dir` with `snapshot` from a consistent snapshot of it (see
/// [`load`](super::load)): a ConfigMap's `..data` resolved before and after
/// each read, a plain directory's [`fingerprint`] taken before and after.
pub(super) fn consistently<T>(
    dir: &Path,
    snapshot: impl Fn(&Path) -> Result<T, Error>,
) -> Result<T, Error> {
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
            let loaded = snapshot(&root);
            let now = resolve()?;
            if now == root {
                return loaded;
            }
            tracing::info!(dir = %dir.display(), "the ConfigMap was swapped while being read; reading the new one");
            root = now;
        }
        return snapshot(&root);
    }
    for _ in 1..ATTEMPTS {
        let before = fingerprint(dir);
        let loaded = snapshot(dir);
        if fingerprint(dir) == before {
            return loaded;
        }
        tracing::info!(dir = %dir.display(), "policy files changed while being read; reading again");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    snapshot(dir)
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
pub(super) fn layer_files(dir: &Path, layer: Layer) -> std::io::Result<Vec<PathBuf>> {
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
pub(super) fn unread_policy_files(dir: &Path) -> Vec<(PathBuf, String)> {
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
