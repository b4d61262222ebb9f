//! A counterexample of `policy diff` made readable and replayed: the
//! solver's request and entities turned into a call the gateway could
//! receive (a caller, a validated request, the instance's entities.json),
//! decided again by both policy directories to show the difference.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use cedar_policy::{Entities, EntityUid, RequestEnv};
use cedar_policy_symcc::Env;
use serde_json::{Value, json};

use super::values::{datetime_value, extension_arg};
use super::{Difference, Options, Undecided, undecided};
use crate::identity::{Caller, CallerId, Via};
use crate::pb;
use crate::policy::Query;
use crate::policy::catalogue::{self, Action};
use crate::policy::store;

/// The identity the replayed principal gets.
pub const REPLAY_IDENTITY: &str = "spiffe://policy-diff.local/counterexample";

/// The identity a replayed Explain simulates, unless the counterexample
/// names one the gateway could see.
pub const SIMULATED_IDENTITY: &str = "spiffe://policy-diff.local/simulated";

/// A counterexample as a request: the readable form, then its replay.
pub(super) fn replay(
    options: &Options,
    action: &'static Action,
    env: &RequestEnv,
    counterexample: &Env,
) -> Result<Difference, Undecided> {
    let cx = Readable::of(counterexample, env, action, options)?;
    let dirs = [&options.active, &options.candidate].map(|dir| cx.write_dir(dir));
    let [active_dir, candidate_dir] = dirs;
    let (active_dir, candidate_dir) = (active_dir?, candidate_dir?);
    let decide = |dir: &Path| -> Result<(bool, String, &'static str), Undecided> {
        let authorizer = crate::policy::Config {
            dir: dir.to_owned(),
            account_id: options.account_id.clone(),
            dependent_actions: options.rules.clone(),
        }
        .build()
        .map_err(|e| undecided(format!("replaying the counterexample: {e}")))?;
        let (caller, request) = (cx.caller(), cx.request()?);
        let decision = match action.name {
            name if name == catalogue::MODIFY_INSTANCE_NETWORK_SPEC.name => {
                authorizer.decide(&caller, &request, cx.time)
            }
            // The Explain rpc's permission check, as `server::explain` asks
            // it (the instance lookup off: entities.json's instances).
            name if name == catalogue::EXPLAIN.name
                || name == catalogue::SIMULATE_PRINCIPAL.name =>
            {
                authorizer.may_explain(
                    &Query::new(&caller, &request, cx.time),
                    cx.simulated.as_ref().map(|s| &s.identity),
                )
            }
            name => return Err(undecided(format!("no replay of a request of {name}"))),
        };
        let kind = match &decision.outcome {
            crate::policy::Outcome::Allow { .. } => "Allow",
            crate::policy::Outcome::Deny(d) => d.kind.as_str(),
        };
        Ok((decision.allowed(), decision.summary(), kind))
    };
    let active = decide(&active_dir.0);
    let candidate = decide(&candidate_dir.0);
    let ((active_allows, active, active_kind), (candidate_allows, candidate, candidate_kind)) =
        (active?, candidate?);
    Ok(Difference {
        action: action.name,
        principal_type: env.principal().to_string(),
        call: cx.json(),
        confirmed: active_allows != candidate_allows,
        active,
        candidate,
        case: cx.case(candidate_kind, active_kind),
    })
}

/// A counterexample with readable ids, as the gateway would see the call.
#[derive(Debug, Clone)]
struct Readable {
    /// The gateway's default account (its principals' ARNs).
    default_account: String,
    /// The account owning the instance: one the gateway serves.
    account_id: String,
    principal_arn: String,
    groups: Vec<String>,
    instance_id: String,
    /// The instance's attributes (without `known`), when it is known.
    instance: Option<(
        serde_json::Map<String, Value>,
        serde_json::Map<String, Value>,
    )>,
    region_id: String,
    source_ip: IpAddr,
    time: chrono::DateTime<chrono::Utc>,
    mfa: bool,
    secure_transport: bool,
    /// The request's fields (the proto's names), as the context holds them.
    request: serde_json::Map<String, Value>,
    /// An Explain's permission check (`ecsgateway:` actions), not a call.
    explain: bool,
    /// For `ecsgateway:SimulatePrincipal`: the identity explained for.
    simulated: Option<Simulated>,
}

/// The identity an Explain simulates, as the counterexample's
/// `ecsgateway:SimulatedPrincipal` and `ecsgateway:SimulatedGroups` say.
#[derive(Debug, Clone)]
struct Simulated {
    identity: CallerId,
    /// Its principals.toml entry (ARN, groups); `None`: it has none, and
    /// the gateway names it by its identity, with no groups.
    entry: Option<(String, Vec<String>)>,
}

impl Simulated {
    fn of(principal: &str, groups: Vec<String>, account_id: &str) -> Self {
        let own = || CallerId::Spiffe(SIMULATED_IDENTITY.into());
        if is_ram_arn(principal) {
            return Self {
                identity: own(),
                entry: Some((principal.to_owned(), groups)),
            };
        }
        if groups.is_empty() {
            return Self {
                identity: identity_named(principal).unwrap_or_else(own),
                entry: None,
            };
        }
        // Groups come only with an entry, and an entry has a RAM ARN: the
        // solver's free string cannot be one.
        Self {
            identity: own(),
            entry: Some((
                format!("acs:ram::{account_id}:role/simulated-counterexample"),
                groups,
            )),
        }
    }
}

/// The identity the gateway names `name` (a SPIFFE ID, or
/// `jwt:<subject>@<issuer>`), if it is one an Explain can simulate other
/// than the replayed caller.
fn identity_named(name: &str) -> Option<CallerId> {
    let identity = if name.starts_with("spiffe://") {
        crate::validate::explain::spiffe_id_problem(name)
            .is_none()
            .then(|| CallerId::Spiffe(name.to_owned()))?
    } else {
        let (subject, issuer) = name.strip_prefix("jwt:")?.rsplit_once('@')?;
        (!subject.is_empty() && !issuer.is_empty()).then(|| CallerId::Jwt {
            issuer: issuer.to_owned(),
            subject: subject.to_owned(),
        })?
    };
    (identity.to_string() != REPLAY_IDENTITY).then_some(identity)
}

/// A group's readable name: the solver leaves a free one's id empty.
fn group_name(id: &str) -> String {
    if id.is_empty() {
        "CounterexampleGroup".to_owned()
    } else {
        id.to_owned()
    }
}

/// Temporary copies of a policy directory, removed on drop.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn copy_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), target)?;
        }
    }
    Ok(())
}

fn is_ram_arn(arn: &str) -> bool {
    store::principal_type(arn).is_some()
}

impl Readable {
    fn of(
        counterexample: &Env,
        env: &RequestEnv,
        action: &'static Action,
        options: &Options,
    ) -> Result<Self, Undecided> {
        let account_id = options.account_id.as_str();
        let bad = |what: &str| undecided(format!("the counterexample has no {what}"));
        let request = &counterexample.request;
        let entities: &Entities = &counterexample.entities;
        let principal = request.principal().ok_or_else(|| bad("principal"))?;
        let resource = request.resource().ok_or_else(|| bad("resource"))?;
        let context = request
            .context()
            .ok_or_else(|| bad("context"))?
            .to_json_value()
            .map_err(|e| undecided(format!("the counterexample's context: {e}")))?;
        let principal_json = entity_json(entities, principal);
        let simulated = (action.name == catalogue::SIMULATE_PRINCIPAL.name).then(|| {
            Simulated::of(
                context["ecsgateway:SimulatedPrincipal"]
                    .as_str()
                    .unwrap_or_default(),
                groups_of(&context["ecsgateway:SimulatedGroups"]),
                account_id,
            )
        });
        let resource_id = resource.id().unescaped().to_owned();
        let instance_id = if crate::validate::is_instance_id(&resource_id) {
            resource_id
        } else {
            "i-counterexample".to_owned()
        };
        // A region no policy names may come out as any string; the
        // gateway accepts only its format.
        let region_id = context["request"]["region_id"]
            .as_str()
            .filter(|r| crate::validate::is_region_id(r))
            .unwrap_or("zz-counterexample")
            .to_owned();
        let source_ip = extension_arg(&context["acs:SourceIp"])
            .map(|ip| ip.split('/').next().unwrap_or(ip))
            .and_then(|ip| ip.parse::<IpAddr>().ok())
            .ok_or_else(|| bad("usable acs:SourceIp"))?;
        // To the second, as the gateway gives acs:CurrentTime.
        let time = datetime_value(&context["acs:CurrentTime"])
            .and_then(|t| chrono::DateTime::from_timestamp(t.timestamp(), 0))
            .ok_or_else(|| {
                bad(&format!(
                    "usable acs:CurrentTime ({})",
                    context["acs:CurrentTime"]
                ))
            })?;
        // The instance's account, as the solver chose it among those served.
        let resource_json = entity_json(entities, resource);
        let owner = resource_json["attrs"]["account"]
            .as_str()
            .filter(|a| options.accounts().iter().any(|served| served == a))
            .unwrap_or(account_id)
            .to_owned();
        Ok(Self {
            default_account: account_id.to_owned(),
            account_id: owner,
            principal_arn: principal_arn(env, principal, account_id),
            groups: groups_of(&principal_json["parents"]),
            instance_id,
            instance: known_instance(&entity_json(entities, resource)),
            region_id,
            source_ip,
            time,
            mfa: context["acs:MFAPresent"].as_bool().unwrap_or(false),
            secure_transport: context["acs:SecureTransport"].as_bool().unwrap_or(false),
            request: context["request"].as_object().cloned().unwrap_or_default(),
            explain: action.name != catalogue::MODIFY_INSTANCE_NETWORK_SPEC.name,
            simulated,
        })
    }

    fn caller(&self) -> Caller {
        Caller {
            identity: CallerId::Spiffe(REPLAY_IDENTITY.into()),
            via: Via::Mtls,
            mfa: self.mfa,
            secure_transport: self.secure_transport,
            peer: Some(std::net::SocketAddr::new(self.source_ip, 0)),
        }
    }

    fn long(&self, name: &str) -> Option<i32> {
        self.request
            .get(name)
            .and_then(Value::as_i64)
            .and_then(|v| i32::try_from(v).ok())
    }

    fn timestamp(&self, name: &str) -> Option<prost_types::Timestamp> {
        let time = datetime_value(self.request.get(name)?)?;
        Some(prost_types::Timestamp {
            seconds: time.timestamp(),
            nanos: 0,
        })
    }

    /// The upgrade window as the gateway accepts it: the start on a whole
    /// minute, the end on a whole hour, three hours or more apart (Cedar
    /// cannot say "whole", so the solver's times are rounded; the replay
    /// tells whether the decision stayed).
    fn window(
        &self,
    ) -> (
        Option<prost_types::Timestamp>,
        Option<prost_types::Timestamp>,
    ) {
        let (Some(start), Some(end)) = (self.timestamp("start_time"), self.timestamp("end_time"))
        else {
            return (None, None);
        };
        let start = start.seconds - start.seconds.rem_euclid(60);
        let mut end = end.seconds - end.seconds.rem_euclid(3600);
        if end < start + 3 * 3600 {
            end += 3600;
        }
        let ts = |seconds| prost_types::Timestamp { seconds, nanos: 0 };
        (Some(ts(start)), Some(ts(end)))
    }

    fn proto(&self) -> pb::ModifyInstanceNetworkSpecRequest {
        let charge = match self
            .request
            .get("network_charge_type")
            .and_then(Value::as_str)
        {
            Some("PayByBandwidth") => pb::NetworkChargeType::PayByBandwidth,
            Some("PayByTraffic") => pb::NetworkChargeType::PayByTraffic,
            _ => pb::NetworkChargeType::Unspecified,
        };
        pb::ModifyInstanceNetworkSpecRequest {
            region_id: self.region_id.clone(),
            instance_id: self.instance_id.clone(),
            internet_max_bandwidth_out: self.long("internet_max_bandwidth_out"),
            internet_max_bandwidth_in: self.long("internet_max_bandwidth_in"),
            network_charge_type: charge as i32,
            allocate_public_ip: self
                .request
                .get("allocate_public_ip")
                .and_then(Value::as_bool),
            start_time: self.window().0,
            end_time: self.window().1,
            auto_pay: self.request.get("auto_pay").and_then(Value::as_bool),
            client_token: "policy-diff".into(),
            account_id: if self.account_id == self.default_account {
                String::new()
            } else {
                self.account_id.clone()
            },
            ..Default::default()
        }
    }

    fn request(&self) -> Result<crate::validate::ModifyRequest, Undecided> {
        crate::validate::modify_request(self.proto()).map_err(|r| {
            undecided(format!(
                "the counterexample is not a valid call ({r}): the model allows a request the gateway refuses"
            ))
        })
    }

    /// The instance's entities.json entry.
    fn instance_entity(&self, account_id: &str) -> Option<Value> {
        let (attrs, tags) = self.instance.as_ref()?;
        let mut attrs = attrs.clone();
        attrs.insert(
            "arn".into(),
            json!(catalogue::instance_arn(
                &self.region_id,
                account_id,
                &self.instance_id
            )),
        );
        attrs.insert("region".into(), json!(self.region_id));
        attrs.insert("account".into(), json!(account_id));
        Some(json!({
            "uid": { "type": "Ecs::Instance", "id": self.instance_id },
            "attrs": attrs,
            "parents": [],
            "tags": tags,
        }))
    }

    /// A copy of `dir` with the counterexample's principal in
    /// principals.toml and its instance in entities.json.
    fn write_dir(&self, dir: &Path) -> Result<TempDir, Undecided> {
        let io = |e: std::io::Error| undecided(format!("replaying the counterexample: {e}"));
        let target = std::env::temp_dir().join(format!(
            "ecs-gateway-diff-{}-{}",
            std::process::id(),
            uuid::Uuid::new_v4().simple()
        ));
        let temp = TempDir(target.clone());
        copy_dir(dir, &target).map_err(io)?;
        let principals = target.join("principals.toml");
        let mut text = std::fs::read_to_string(&principals).unwrap_or_default();
        text.push_str(&self.principal_toml());
        std::fs::write(&principals, text).map_err(io)?;
        if let Some(entity) = self.instance_entity(&self.account_id) {
            let path = target.join("entities.json");
            let mut list: Vec<Value> = std::fs::read_to_string(&path)
                .ok()
                .and_then(|t| serde_json::from_str(&t).ok())
                .unwrap_or_default();
            list.retain(|e| e["uid"]["id"] != json!(self.instance_id));
            list.push(entity);
            std::fs::write(
                &path,
                serde_json::to_string_pretty(&list).unwrap_or_default(),
            )
            .map_err(io)?;
        }
        Ok(temp)
    }

    fn principal_toml(&self) -> String {
        let mut out = format!(
            "\n# policy diff: the counterexample's principal\n[[principal]]\nspiffe_id = {:?}\narn = {:?}\ngroups = {:?}\n",
            REPLAY_IDENTITY, self.principal_arn, self.groups
        );
        if let Some(Simulated {
            identity,
            entry: Some((arn, groups)),
        }) = &self.simulated
        {
            out.push_str(&format!(
                "\n# policy diff: the principal the Explain simulates\n[[principal]]\nspiffe_id = {:?}\narn = {arn:?}\ngroups = {groups:?}\n",
                identity.to_string()
            ));
        }
        out
    }

    /// The `[[case]]` keys that make it an Explain's permission check.
    fn explain_keys(&self) -> String {
        if !self.explain {
            return String::new();
        }
        let mut out = "explain = true\n".to_owned();
        match self.simulated.as_ref().map(|s| &s.identity) {
            None => {}
            Some(CallerId::Spiffe(id)) => out.push_str(&format!("simulate_spiffe_id = {id:?}\n")),
            Some(CallerId::Jwt { issuer, subject }) => out.push_str(&format!(
                "simulate_jwt = {{ issuer = {issuer:?}, subject = {subject:?} }}\n"
            )),
        }
        out
    }

    /// The `[[case]]` that reproduces the call with `policy test`,
    /// expecting the candidate's decision (`candidate`; the active
    /// policies decide `active`).
    fn case(&self, candidate: &str, active: &str) -> String {
        let mut fields = vec![
            format!("region_id = {:?}", self.region_id),
            format!("instance_id = {:?}", self.instance_id),
        ];
        if self.account_id != self.default_account {
            fields.push(format!("account_id = {:?}", self.account_id));
        }
        for (name, value) in &self.request {
            match name.as_str() {
                "region_id" | "instance_id" | "effective_bandwidth_in" | "temporary_upgrade" => {}
                "start_time" | "end_time" => {
                    let (start, end) = self.window();
                    let ts = if name == "start_time" { start } else { end };
                    if let Some(t) =
                        ts.and_then(|ts| chrono::DateTime::from_timestamp(ts.seconds, 0))
                    {
                        fields.push(format!("{name} = {:?}", t.to_rfc3339()));
                    }
                }
                _ => fields.push(format!("{name} = {value}")),
            }
        }
        let mut out = self.principal_toml();
        out.push_str(&format!(
            "\n# in a case file with account_id = {:?}\n[[case]]\nname = \"policy diff counterexample\"\nspiffe_id = {:?}\nsource_ip = {:?}\ntime = {:?}\nmfa = {}\nsecure_transport = {}\n{}request = {{ {} }}\nexpect = {candidate:?}  # the candidate's decision; the active policies': {active}\n",
            self.default_account,
            REPLAY_IDENTITY,
            self.source_ip.to_string(),
            self.time.to_rfc3339(),
            self.mfa,
            self.secure_transport,
            self.explain_keys(),
            fields.join(", ")
        ));
        if let Some(entity) = self.instance_entity(&self.account_id) {
            out.push_str(&format!(
                "# entities.json gets the instance: {}\n",
                serde_json::to_string(&entity).unwrap_or_default()
            ));
        }
        out
    }

    fn json(&self) -> Value {
        let mut call = json!({
            "principal": { "arn": self.principal_arn, "groups": self.groups },
            "resource": {
                "instanceId": self.instance_id,
                "known": self.instance.is_some(),
                "attributes": self.instance_entity(&self.account_id).map(|e| e["attrs"].clone()),
                "tags": self.instance.as_ref().map(|(_, t)| t.clone()),
            },
            "context": {
                "acs:SourceIp": self.source_ip.to_string(),
                "acs:CurrentTime": self.time.to_rfc3339(),
                "acs:MFAPresent": self.mfa,
                "acs:SecureTransport": self.secure_transport,
            },
            "request": self.request.iter().map(|(k, v)| {
                let v = match k.as_str() {
                    "instance_id" => json!(self.instance_id),
                    _ => datetime_value(v).map_or_else(|| v.clone(), |t| json!(t.to_rfc3339())),
                };
                (k.clone(), v)
            }).collect::<BTreeMap<_, _>>(),
        });
        if let Some(simulated) = &self.simulated {
            let (principal, groups) = simulated
                .entry
                .clone()
                .unwrap_or_else(|| (simulated.identity.to_string(), Vec::new()));
            call["simulated"] = json!({
                "identity": simulated.identity.to_string(),
                "principal": principal,
                "groups": groups,
            });
        }
        call
    }
}

/// An entity of the counterexample as JSON (`null` when absent).
fn entity_json(entities: &Entities, uid: &EntityUid) -> Value {
    entities
        .get(uid)
        .and_then(|e| e.to_json_value().ok())
        .unwrap_or(Value::Null)
}

/// The principal's ARN: its id when a RAM ARN, else a readable one (the
/// solver leaves free ids empty).
fn principal_arn(env: &RequestEnv, principal: &EntityUid, account_id: &str) -> String {
    let kind = if env.principal().to_string() == "Ram::User" {
        "user"
    } else {
        "role"
    };
    let principal_id = principal.id().unescaped().to_owned();
    if is_ram_arn(&principal_id) {
        principal_id
    } else {
        format!("acs:ram::{account_id}:{kind}/counterexample")
    }
}

/// Groups as entity references: `{"type", "id"}`, or wrapped in
/// `__entity` as a context holds them.
fn groups_of(value: &Value) -> Vec<String> {
    let mut groups: Vec<String> = value
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| p.get("__entity").unwrap_or(p))
        .filter(|p| p["type"] == "Ram::Group")
        .filter_map(|p| p["id"].as_str())
        .map(group_name)
        .collect();
    groups.sort();
    groups.dedup();
    groups
}

/// The instance's attributes (without `known`) and tags, when known.
fn known_instance(
    resource_json: &Value,
) -> Option<(
    serde_json::Map<String, Value>,
    serde_json::Map<String, Value>,
)> {
    let mut attrs = resource_json["attrs"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    let known = attrs
        .remove("known")
        .and_then(|k| k.as_bool())
        .unwrap_or(false);
    let tags = resource_json["tags"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    known.then_some((attrs, tags))
}
