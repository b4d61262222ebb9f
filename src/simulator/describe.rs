//! `DescribeInstances` as ECS answers it, for the instances the simulator
//! holds of the signing key's account (another account's are not listed,
//! as unknown ones): `RegionId` required, `InstanceIds` a JSON array of at
//! most 100 IDs (all the region's instances when absent), the documented
//! body (`Instances.Instance[]` with billing, bandwidth, addresses and tags).

use serde_json::{Value, json};

use super::{ChargeType, Failure, Params, Simulator};

/// The most IDs `InstanceIds` may hold.
const MAX_IDS: usize = 100;

/// The answer's body, or ECS's error.
pub(super) fn answer(sim: &Simulator, params: &Params, account: &str) -> Result<Value, Failure> {
    let region = params
        .get("RegionId")
        .filter(|r| !r.is_empty())
        .ok_or_else(|| super::auth::missing("RegionId"))?;
    let ids: Option<Vec<String>> = match params.get("InstanceIds") {
        None => None,
        Some(raw) => {
            let ids: Vec<String> = serde_json::from_str(raw).map_err(|_| {
                Failure::new("InvalidParameter")
                    .message("The specified parameter InstanceIds is not a JSON array of strings.")
            })?;
            if ids.len() > MAX_IDS {
                return Err(Failure::new("InvalidParameter")
                    .message("The specified parameter InstanceIds holds more than 100 IDs."));
            }
            Some(ids)
        }
    };
    let mut state = sim.state();
    state.described += 1;
    let mut instances: Vec<&super::Instance> = state
        .instances
        .values()
        .filter(|i| &i.region_id == region && i.account == account)
        .filter(|i| ids.as_ref().is_none_or(|ids| ids.contains(&i.id)))
        .collect();
    instances.sort_by(|a, b| a.id.cmp(&b.id));
    let listed: Vec<Value> = instances
        .iter()
        .map(|i| {
            json!({
                "InstanceId": i.id,
                "RegionId": i.region_id,
                "InstanceChargeType": match i.charge_type {
                    ChargeType::PrePaid => "PrePaid",
                    ChargeType::PostPaid => "PostPaid",
                },
                "InternetChargeType": i.network_charge_type.as_str(),
                "InternetMaxBandwidthOut": i.bandwidth_out,
                "InternetMaxBandwidthIn": i.bandwidth_in,
                "PublicIpAddress": { "IpAddress": i.public_ip.iter().collect::<Vec<_>>() },
                "EipAddress": { "IpAddress": i.eip.clone().unwrap_or_default(), "AllocationId": "" },
                "Tags": { "Tag": i.tags.iter().map(|(k, v)| json!({"TagKey": k, "TagValue": v})).collect::<Vec<_>>() },
                "Status": format!("{:?}", i.status),
            })
        })
        .collect();
    Ok(json!({
        "RequestId": super::request_id(),
        "TotalCount": listed.len(),
        "PageNumber": 1,
        "PageSize": listed.len().max(10),
        "Instances": { "Instance": listed },
    }))
}
