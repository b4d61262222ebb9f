//! ECS's `DescribeInstances` for one instance: what the policies need to
//! know of it (billing method, network billing, bandwidth, public IP, tags),
//! signed and sent through the same client, retries, budget and breakers as
//! the calls the gateway forwards. Read-only, so a retry is always safe.

use std::borrow::Cow;
use std::time::Duration;

use serde::Deserialize;

use super::{Answer, Client, Error, budget, parse_answer};

/// The action.
pub const ACTION: &str = "DescribeInstances";

/// What ECS says about an instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceFacts {
    /// The instance ID.
    pub instance_id: String,
    /// Its region.
    pub region_id: String,
    /// `PrePaid` (subscription) or `PostPaid` (pay-as-you-go).
    pub instance_charge_type: String,
    /// `PayByTraffic` or `PayByBandwidth`, when it has public bandwidth.
    pub internet_charge_type: Option<String>,
    /// Outbound public bandwidth, Mbit/s.
    pub bandwidth_out: Option<i64>,
    /// Inbound public bandwidth, Mbit/s.
    pub bandwidth_in: Option<i64>,
    /// Its public IP addresses (none: it has no public IP).
    pub public_ips: Vec<String>,
    /// Its bound EIP address, if any.
    pub eip: Option<String>,
    /// Its tags, in ECS's order.
    pub tags: Vec<(String, String)>,
}

/// ECS's answer: the instance, or `None` when the region holds no such
/// instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Described {
    /// ECS's RequestId.
    pub request_id: String,
    /// The instance.
    pub instance: Option<InstanceFacts>,
}

impl Answer for Described {
    fn request_id(&self) -> &str {
        &self.request_id
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Body {
    request_id: String,
    #[serde(default)]
    instances: Instances,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
struct Instances {
    #[serde(default)]
    instance: Vec<Item>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Item {
    instance_id: String,
    region_id: String,
    instance_charge_type: String,
    #[serde(default)]
    internet_charge_type: Option<String>,
    #[serde(default)]
    internet_max_bandwidth_out: Option<i64>,
    #[serde(default)]
    internet_max_bandwidth_in: Option<i64>,
    #[serde(default)]
    public_ip_address: Addresses,
    #[serde(default)]
    eip_address: Eip,
    #[serde(default)]
    tags: Tags,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
struct Addresses {
    #[serde(default)]
    ip_address: Vec<String>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
struct Eip {
    #[serde(default)]
    ip_address: String,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
struct Tags {
    #[serde(default)]
    tag: Vec<Tag>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Tag {
    tag_key: String,
    #[serde(default)]
    tag_value: String,
}

/// The parameters: the region and a one-element `InstanceIds` JSON array.
pub fn parameters<'a>(region_id: &'a str, instance_id: &str) -> Vec<(&'static str, Cow<'a, str>)> {
    vec![
        ("Action", ACTION.into()),
        ("RegionId", region_id.into()),
        (
            "InstanceIds",
            serde_json::Value::from(vec![instance_id])
                .to_string()
                .into(),
        ),
    ]
}

/// Reads ECS's answer about `instance_id` in `region_id`.
///
/// # Errors
///
/// [`Error::Ecs`] for ECS's errors; [`Error::InvalidResponse`] for a body
/// that is not the documented one, or that describes another instance or
/// region, or the instance twice.
pub fn parse(
    http_status: u16,
    body: &[u8],
    region_id: &str,
    instance_id: &str,
) -> Result<Described, Error> {
    let body: Body = parse_answer(http_status, body, "DescribeInstances' JSON")?;
    let invalid = |detail: String| Error::InvalidResponse {
        http_status,
        detail,
    };
    let mut found = body.instances.instance.into_iter();
    let instance = match (found.next(), found.next()) {
        (None, _) => None,
        (Some(_), Some(_)) => {
            return Err(invalid("more than one instance for one InstanceId".into()));
        }
        (Some(item), None) => {
            if item.instance_id != instance_id || item.region_id != region_id {
                return Err(invalid(format!(
                    "asked for {instance_id} in {region_id}, got {} in {}",
                    item.instance_id, item.region_id
                )));
            }
            Some(InstanceFacts {
                instance_id: item.instance_id,
                region_id: item.region_id,
                instance_charge_type: item.instance_charge_type,
                internet_charge_type: item.internet_charge_type.filter(|c| !c.is_empty()),
                bandwidth_out: item.internet_max_bandwidth_out,
                bandwidth_in: item.internet_max_bandwidth_in,
                public_ips: item
                    .public_ip_address
                    .ip_address
                    .into_iter()
                    .filter(|ip| !ip.is_empty())
                    .collect(),
                eip: Some(item.eip_address.ip_address).filter(|ip| !ip.is_empty()),
                tags: item
                    .tags
                    .tag
                    .into_iter()
                    .map(|t| (t.tag_key, t.tag_value))
                    .collect(),
            })
        }
    };
    Ok(Described {
        request_id: body.request_id,
        instance,
    })
}

impl Client {
    /// Asks ECS about `instance_id` in `region_id` of `account` (`None`:
    /// the default account), within the budget of
    /// `deadline` and the configured timeout.
    ///
    /// # Errors
    ///
    /// As [`Client::modify_instance_network_spec`].
    pub async fn describe_instance(
        &self,
        account: Option<&str>,
        region_id: &str,
        instance_id: &str,
        deadline: Duration,
    ) -> Result<Described, Error> {
        let timeout = budget(deadline).min(self.config.timeout);
        let endpoint = self.endpoint(region_id);
        let params = parameters(region_id, instance_id);
        // The lookup's answers are shared by every caller: the gateway's
        // own session asks.
        self.attempts(
            (account, None),
            region_id,
            &params,
            &endpoint,
            timeout,
            &|status, body| parse(status, body, region_id, instance_id),
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BODY: &str = r#"{"RequestId":"R1","TotalCount":1,"Instances":{"Instance":[{
        "InstanceId":"i-abc","RegionId":"cn-hangzhou","InstanceChargeType":"PrePaid",
        "InternetChargeType":"PayByBandwidth","InternetMaxBandwidthOut":5,"InternetMaxBandwidthIn":10,
        "PublicIpAddress":{"IpAddress":["47.1.2.3"]},"EipAddress":{"IpAddress":"","AllocationId":""},
        "Tags":{"Tag":[{"TagKey":"env","TagValue":"production"},{"TagKey":"team"}]},
        "Status":"Running"}]}}"#;

    #[test]
    fn asks_for_one_instance_by_a_json_array() {
        let params = parameters("cn-hangzhou", "i-abc");
        assert_eq!(params[0], ("Action", "DescribeInstances".into()));
        assert_eq!(params[2], ("InstanceIds", r#"["i-abc"]"#.into()));
    }

    #[test]
    fn reads_what_the_policies_need() {
        let described = parse(200, BODY.as_bytes(), "cn-hangzhou", "i-abc").unwrap();
        assert_eq!(described.request_id, "R1");
        let facts = described.instance.unwrap();
        assert_eq!(facts.instance_charge_type, "PrePaid");
        assert_eq!(
            facts.internet_charge_type.as_deref(),
            Some("PayByBandwidth")
        );
        assert_eq!(
            (facts.bandwidth_out, facts.bandwidth_in),
            (Some(5), Some(10))
        );
        assert_eq!(facts.public_ips, ["47.1.2.3"]);
        assert_eq!(facts.eip, None);
        assert_eq!(
            facts.tags,
            [
                ("env".to_owned(), "production".to_owned()),
                ("team".to_owned(), String::new())
            ]
        );
        let none = parse(
            200,
            br#"{"RequestId":"R2","TotalCount":0,"Instances":{"Instance":[]}}"#,
            "cn-hangzhou",
            "i-abc",
        )
        .unwrap();
        assert_eq!(none.instance, None);
    }

    #[test]
    fn refuses_answers_about_something_else() {
        for (region, id) in [("cn-shanghai", "i-abc"), ("cn-hangzhou", "i-abd")] {
            assert!(matches!(
                parse(200, BODY.as_bytes(), region, id),
                Err(Error::InvalidResponse { .. })
            ));
        }
        let twice = BODY.replace(
            r#""Status":"Running"}]"#,
            r#""Status":"Running"},{"InstanceId":"i-abc","RegionId":"cn-hangzhou","InstanceChargeType":"PostPaid"}]"#,
        );
        assert!(matches!(
            parse(200, twice.as_bytes(), "cn-hangzhou", "i-abc"),
            Err(Error::InvalidResponse { .. })
        ));
        assert!(matches!(
            parse(200, b"{}", "cn-hangzhou", "i-abc"),
            Err(Error::InvalidResponse { .. })
        ));
        assert!(matches!(
            parse(
                400,
                br#"{"Code":"InvalidRegionId.NotFound","RequestId":"R"}"#,
                "cn-x",
                "i-abc"
            ),
            Err(Error::Ecs(_))
        ));
    }
}
