//! entities.json: the instances the gateway knows, with their attributes
//! and tags, checked against the schema and against the ARN RAM would check.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use cedar_policy::{Entities, Entity, Schema};

use super::files::{Version, read};
use super::{Problems, line_of};
use crate::account::AccountId;
use crate::policy::catalogue;

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

/// Reads entities.json: every instance, marked known, placed in its
/// account and checked against the schema and its ARN; and the Resource
/// Directory's accounts and folders.
pub(super) fn load(
    path: &Path,
    schema: &Schema,
    problems: &mut Problems,
    hasher: &mut Version,
) -> (HashMap<String, Instance>, Vec<Entity>) {
    let Some(text) = read(path, problems, hasher) else {
        return Default::default();
    };
    let mut json: serde_json::Value = match serde_json::from_str(&text) {
        Ok(json) => json,
        Err(e) => {
            problems.add(path, Some(e.line()), e.to_string());
            return Default::default();
        }
    };
    if let Err(message) = mark_known(&mut json) {
        problems.add(path, None, message);
        return Default::default();
    }
    let entities = match Entities::from_json_value(json, Some(schema)) {
        Ok(entities) => entities,
        Err(e) => {
            problems.add(path, None, crate::telemetry::chain(&e));
            return Default::default();
        }
    };
    let mut instances = BTreeMap::new();
    let mut directory = Vec::new();
    for entity in entities.iter() {
        let kind = entity.uid().type_name().to_string();
        if kind == "Ram::Account" || kind == "Ram::Folder" {
            directory.push(entity.clone());
        }
        if kind != "Ecs::Instance" {
            continue;
        }
        match instance(entity, &entities) {
            Ok(instance) => {
                instances.insert(entity.uid().id().unescaped().to_owned(), instance);
            }
            Err(message) => {
                let uid = entity.uid();
                let id = uid.id().unescaped();
                let line = text.find(&format!("\"{id}\"")).map(|o| line_of(&text, o));
                problems.add(path, line, message);
            }
        }
    }
    (instances.into_iter().collect(), directory)
}

/// Sets every instance's `known` attribute, and its parent: its account.
/// Both are the gateway's to say: `known` is true for every instance
/// described here (a file may not claim otherwise), and an instance belongs
/// to the account its `account` attribute names (a file places accounts in
/// folders, not instances).
fn mark_known(json: &mut serde_json::Value) -> Result<(), &'static str> {
    let Some(items) = json.as_array_mut() else {
        return Ok(());
    };
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
                return Err(
                    "an instance's known attribute is set by the gateway (true for every instance described here): remove it",
                );
            }
            attrs.insert("known".into(), serde_json::Value::Bool(true));
            let account = attrs.get("account").cloned();
            let parents = item
                .get("parents")
                .and_then(serde_json::Value::as_array)
                .map_or(0, Vec::len);
            if parents != 0 {
                return Err(
                    "an instance's parent is its account, which the gateway sets from its account attribute: leave parents empty, and place accounts in folders",
                );
            }
            if let (Some(account), Some(object)) = (account, item.as_object_mut()) {
                object.insert(
                    "parents".into(),
                    serde_json::json!([{ "type": "Ram::Account", "id": account }]),
                );
            }
        }
    }
    Ok(())
}

/// One `Ecs::Instance` entity as an [`Instance`], or what is wrong with it.
fn instance(entity: &Entity, entities: &Entities) -> Result<Instance, String> {
    let string = |name: &str| match entity.attr(name) {
        Some(Ok(cedar_policy::EvalResult::String(s))) => Some(s),
        _ => None,
    };
    // Rules match the ARN attribute; it must be the ARN RAM would
    // check, built from the instance's own region, account and id.
    let id = entity.uid().id().unescaped().to_owned();
    let (region, account, arn) = (
        string("region").unwrap_or_default(),
        string("account").unwrap_or_default(),
        string("arn").unwrap_or_default(),
    );
    if !AccountId::is_valid(&account) {
        return Err(format!(
            "instance {id}: account {account:?} is not an Alibaba Cloud account ID (digits)"
        ));
    }
    // What mark_known set, checked on what Cedar parsed: an entity written
    // in another form (`{"__entity": …}`) must not escape it.
    // Its ancestors (Cedar has closed them) are its account and the
    // account's folders, and nothing else.
    let (_, _, ancestors) = entity.clone().into_inner();
    let own = catalogue::account_uid(&account);
    let mut expected: std::collections::HashSet<cedar_policy::EntityUid> = entities
        .ancestors(&own)
        .map(|up| up.cloned().collect())
        .unwrap_or_default();
    expected.insert(own);
    if ancestors != expected {
        return Err(format!(
            "instance {id}: its parent is its account, Ram::Account::{account:?}, which the gateway sets: leave parents empty, and write its uid as {{\"type\": \"Ecs::Instance\", \"id\": …}}"
        ));
    }
    if !matches!(
        entity.attr("known"),
        Some(Ok(cedar_policy::EvalResult::Bool(true)))
    ) {
        return Err(format!(
            "instance {id}: known is the gateway's to set: write its uid as {{\"type\": \"Ecs::Instance\", \"id\": …}}"
        ));
    }
    let expected = catalogue::instance_arn(&region, &account, &id);
    if arn != expected {
        return Err(format!(
            "instance {id}: arn is {arn:?}, expected {expected:?} (from its region, account and id)"
        ));
    }
    let has_public_ip = match entity.attr("hasPublicIp") {
        Some(Ok(cedar_policy::EvalResult::Bool(b))) => Some(b),
        _ => None,
    };
    Ok(Instance {
        arn,
        region,
        account,
        charge_type: string("chargeType"),
        has_public_ip,
        entity: entity.clone(),
    })
}
