//! One snapshot of the policy directory parsed and validated: the schema,
//! each layer's policies (with unique `@id`s, checked in strict mode), the
//! principals and the instances, assembled into [`PolicyData`].

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use cedar_policy::{Entities, PolicyId, PolicySet, Schema, ValidationMode, Validator};

use super::files::{Version, layer_files, read, unread_policy_files};
use super::{Error, Layer, PolicyData, Problem, Problems, entities, first_line, principals};
use crate::policy::catalogue;
use crate::policy::index::LayerIndex;

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

/// The line where each policy of a file starts (its first annotation or
/// its `permit`/`forbid`), in the file's order, which is the order of the
/// parser's `policy0`, `policy1`, … ids. Statements end at a `;` outside
/// strings and comments.
fn statement_lines(text: &str) -> Vec<usize> {
    let (mut lines, mut line) = (Vec::new(), 1);
    let (mut in_statement, mut in_string, mut escaped) = (false, false, false);
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if in_string {
            match c {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                '"' => in_string = false,
                '\n' => line += 1,
                _ => {}
            }
            continue;
        }
        match c {
            '\n' => line += 1,
            '/' if chars.peek() == Some(&'/') => {
                // A comment runs to the end of its line; Cedar ends it at a
                // carriage return too.
                for c in chars.by_ref() {
                    if c == '\n' {
                        line += 1;
                        break;
                    }
                    if c == '\r' {
                        break;
                    }
                }
            }
            c if c.is_whitespace() => {}
            ';' => in_statement = false,
            c => {
                if !in_statement {
                    in_statement = true;
                    lines.push(line);
                }
                if c == '"' {
                    in_string = true;
                }
            }
        }
    }
    lines
}

/// The index in its file of a policy the parser named `policy<N>`.
fn parsed_index(id: &PolicyId) -> Option<usize> {
    id.to_string().strip_prefix("policy")?.parse().ok()
}

/// Loads and validates one snapshot of `dir` (see [`super::load`]).
pub(super) fn load(dir: &Path) -> Result<PolicyData, Error> {
    let mut problems = Problems::default();
    let mut hasher = Version::new(dir);
    let schema_path = dir.join("schema.cedarschema");
    let schema = schema(&schema_path, &mut problems, &mut hasher);

    // A policy file the loader does not read would be ignored: a guardrail
    // meant to forbid would silently not be in force. Refuse it.
    for (path, message) in unread_policy_files(dir) {
        problems.add(&path, None, message);
    }

    let mut policies = Policies::default();
    for layer in Layer::ALL {
        policies.read_layer(dir, layer, &mut problems, &mut hasher);
    }
    if let Some(schema) = &schema {
        policies.validate(dir, schema, &mut problems);
    }

    let principals = schema
        .as_ref()
        .map(|schema| {
            principals::load(
                &dir.join("principals.toml"),
                schema,
                &mut problems,
                &mut hasher,
            )
        })
        .unwrap_or_default();
    let (instances, directory) = schema
        .as_ref()
        .map(|schema| {
            entities::load(
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
            let loaded = Parts {
                schema,
                actions,
                policies,
                principals,
                instances,
                directory,
                version: hasher.finish(),
            };
            loaded.assemble(dir)
        }
        _ => Err(Error {
            problems: problems.0,
        }),
    }
}

/// The schema, checked to declare the catalogue's actions.
fn schema(path: &Path, problems: &mut Problems, hasher: &mut Version) -> Option<Schema> {
    let text = read(path, problems, hasher)?;
    match Schema::from_cedarschema_str(&text) {
        Ok((schema, warnings)) => {
            for warning in warnings {
                tracing::warn!(path = %path.display(), %warning, "schema warning");
            }
            if !text.contains(&catalogue::schema_actions()) {
                problems.add(
                    path,
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
            problems.add(path, first_line(&text, &e), crate::telemetry::chain(&e));
            None
        }
    }
}

/// The policies read so far: one set per layer, in [`Layer::ALL`]'s order.
#[derive(Default)]
struct Policies {
    sets: Vec<PolicySet>,
    /// Where each policy came from.
    sources: HashMap<PolicyId, PathBuf>,
    /// Each `@id` seen, with its file and line.
    ids: HashMap<String, (PathBuf, Option<usize>)>,
    /// Each file's text, for the lines of validation errors.
    texts: HashMap<PathBuf, String>,
}

impl Policies {
    /// Reads `layer`'s policy files into a new set.
    fn read_layer(
        &mut self,
        dir: &Path,
        layer: Layer,
        problems: &mut Problems,
        hasher: &mut Version,
    ) {
        let mut set = PolicySet::new();
        let mut files: Vec<PathBuf> = match layer_files(dir, layer) {
            Ok(files) => files,
            Err(e) => {
                // A missing layer would allow nothing or, worse, be skipped:
                // refuse to start instead.
                problems.add(
                    &dir.join(layer.as_str()),
                    None,
                    format!("cannot read the {} layer: {e}", layer.as_str()),
                );
                Vec::new()
            }
        };
        files.sort();
        for path in files {
            let Some(text) = read(&path, problems, hasher) else {
                continue;
            };
            self.parse_file(&path, &text, &mut set, problems);
            self.texts.insert(path, text);
        }
        self.sets.push(set);
    }

    /// Adds one file's policies to `set`, each under its unique `@id`.
    fn parse_file(
        &mut self,
        path: &Path,
        text: &str,
        set: &mut PolicySet,
        problems: &mut Problems,
    ) {
        let parsed = match PolicySet::from_str(text) {
            Ok(parsed) => parsed,
            Err(errors) => {
                for error in errors.iter() {
                    problems.add(path, first_line(text, error), error.to_string());
                }
                return;
            }
        };
        if parsed.templates().next().is_some() {
            problems.add(
                path,
                None,
                "templates are not supported: write static policies",
            );
        }
        let id_lines = id_lines(text);
        let starts = statement_lines(text);
        for policy in parsed.policies() {
            let Some(id) = policy.annotation("id") else {
                let head: String = policy.to_string().chars().take(60).collect();
                let line = parsed_index(policy.id()).and_then(|i| starts.get(i).copied());
                problems.add(
                    path,
                    line,
                    format!("every policy needs an @id(\"...\") annotation: {head}…"),
                );
                continue;
            };
            let line = id_lines.get(id).copied();
            if let Some((other, other_line)) = self.ids.get(id) {
                problems.add(
                    path,
                    line,
                    format!(
                        "@id({id:?}) is already used at {}:{}",
                        other.display(),
                        other_line.unwrap_or(0)
                    ),
                );
                continue;
            }
            self.ids.insert(id.to_owned(), (path.to_owned(), line));
            let policy_id = PolicyId::new(id);
            self.sources.insert(policy_id.clone(), path.to_owned());
            if let Err(e) = set.add(policy.new_id(policy_id)) {
                problems.add(path, line, e.to_string());
            }
        }
    }

    /// Validates every layer against `schema` in strict mode.
    fn validate(&self, dir: &Path, schema: &Schema, problems: &mut Problems) {
        let validator = Validator::new(schema.clone());
        for set in &self.sets {
            let result = validator.validate(set, ValidationMode::Strict);
            for error in result.validation_errors() {
                let path = self
                    .sources
                    .get(error.policy_id())
                    .cloned()
                    .unwrap_or_else(|| dir.to_owned());
                let line = self
                    .texts
                    .get(&path)
                    .and_then(|text| first_line(text, error));
                problems.add(&path, line, format!("[{}] {error}", error.policy_id()));
            }
            for warning in result.validation_warnings() {
                tracing::warn!(policy = %warning.policy_id(), %warning, "policy validation warning");
            }
        }
    }
}

/// Everything a snapshot loaded without a problem.
struct Parts {
    schema: Schema,
    actions: Entities,
    policies: Policies,
    principals: HashMap<crate::identity::CallerId, super::Principal>,
    instances: HashMap<String, super::Instance>,
    directory: Vec<cedar_policy::Entity>,
    version: String,
}

impl Parts {
    /// The policy data: each layer indexed, the directory's accounts
    /// placed.
    fn assemble(self, dir: &Path) -> Result<PolicyData, Error> {
        let Self {
            schema,
            actions,
            policies,
            principals,
            instances,
            directory,
            version,
        } = self;
        let mut sets = policies.sets.into_iter();
        let (Some(control), Some(identity)) = (sets.next(), sets.next()) else {
            return Err(Error {
                problems: vec![Problem {
                    path: dir.to_owned(),
                    line: None,
                    message: "missing a layer".into(),
                }],
            });
        };
        let indexes = [
            LayerIndex::new(&control, &actions),
            LayerIndex::new(&identity, &actions),
        ];
        let placed_accounts = placed_accounts(&directory);
        let ancestry = ancestry(&directory);
        Ok(PolicyData {
            schema,
            control,
            identity,
            indexes,
            principals,
            instances,
            directory,
            placed_accounts,
            ancestry,
            actions,
            sources: policies.sources,
            version,
        })
    }
}

/// The accounts the directory places in a folder.
fn placed_accounts(directory: &[cedar_policy::Entity]) -> std::collections::HashSet<String> {
    let account_type = crate::policy::catalogue::account_uid("0")
        .type_name()
        .clone();
    directory
        .iter()
        .filter(|entity| entity.uid().type_name() == &account_type)
        .filter(|entity| !(*entity).clone().into_inner().2.is_empty())
        .map(|entity| entity.uid().id().unescaped().to_owned())
        .collect()
}

/// Each account the directory describes, with the folders above it (the
/// account first): all a request's entities need of the directory, since
/// an instance's only ancestors are its account and that account's folders.
fn ancestry(
    directory: &[cedar_policy::Entity],
) -> std::collections::HashMap<String, std::sync::Arc<[cedar_policy::Entity]>> {
    let account_type = crate::policy::catalogue::account_uid("0")
        .type_name()
        .clone();
    let by_uid: std::collections::HashMap<_, _> = directory
        .iter()
        .map(|entity| (entity.uid(), entity))
        .collect();
    directory
        .iter()
        .filter(|entity| entity.uid().type_name() == &account_type)
        .map(|account| {
            let mut chain = vec![account.clone()];
            let mut seen = std::collections::HashSet::from([account.uid()]);
            let mut next = 0;
            while let Some(entity) = chain.get(next) {
                let parents = entity.clone().into_inner().2;
                next += 1;
                for parent in parents {
                    if let Some(folder) = by_uid.get(&parent)
                        && seen.insert(parent)
                    {
                        chain.push((*folder).clone());
                    }
                }
            }
            (account.uid().id().unescaped().to_owned(), chain.into())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Statements start after the previous `;`, whatever strings and
    /// comments hold.
    #[test]
    fn statement_lines_skip_strings_and_comments() {
        let text = r#"// a comment; with a semicolon
@id("a")
permit (principal, action, resource)
when { resource.name == "x; // not a comment" };

// another
forbid (principal, action, resource) when { "\"" == "a;b" };
  permit (principal, action, resource);
"#;
        assert_eq!(statement_lines(text), vec![2, 7, 8]);
        // A comment ended by a lone carriage return, as Cedar ends it.
        let text = "// note\rpermit (principal, action, resource);\n@id(\"b\") forbid (principal, action, resource);\n";
        assert_eq!(statement_lines(text), vec![1, 2]);
    }

    /// A policy without an `@id` is reported at its own line, not the file's.
    #[test]
    fn a_policy_without_an_id_is_reported_at_its_line() {
        let text = "@id(\"first\")\npermit (principal, action, resource);\n\n// no id:\nforbid (principal, action, resource)\nwhen { context has x };\n";
        let mut problems = Problems::default();
        let mut set = PolicySet::new();
        Policies::default().parse_file(Path::new("p.cedar"), text, &mut set, &mut problems);
        let message = problems
            .0
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>();
        assert!(
            message
                .iter()
                .any(|m| m.starts_with("p.cedar:5:") && m.contains("@id")),
            "{message:?}"
        );
    }
}
