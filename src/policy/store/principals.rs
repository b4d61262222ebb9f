//! principals.toml: which caller identity is which RAM user or role, and its
//! groups.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::str::FromStr;

use cedar_policy::{
    Entities, Entity, EntityId, EntityTypeName, EntityUid, RestrictedExpression, Schema,
};
use serde::Deserialize;

use super::files::{Version, read};
use super::{Problems, line_of};
use crate::account::AccountId;
use crate::identity::CallerId;

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

/// Reads principals.toml: each entry's identity, mapped once, to a RAM
/// user or role the schema accepts.
pub(super) fn load(
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
            },
        );
    }
    principals
}
