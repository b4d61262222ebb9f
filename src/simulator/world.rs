//! The simulator's world: its account, access keys and instances, and the
//! demo's.

use std::time::Duration;

use chrono::{DateTime, Utc};

pub use crate::validate::NetworkChargeType;

/// The instance's billing method.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChargeType {
    /// Subscription.
    PrePaid,
    /// Pay-as-you-go.
    PostPaid,
}

/// The instance's lifecycle status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Running.
    Running,
    /// Stopped.
    Stopped,
    /// Starting.
    Starting,
    /// Stopping.
    Stopping,
    /// Being created.
    Pending,
}

/// The instance's network type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NetworkType {
    /// A VPC.
    Vpc,
    /// The classic network.
    Classic,
}

/// A temporary bandwidth upgrade in force.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TemporaryUpgrade {
    /// Start of the window.
    pub start: DateTime<Utc>,
    /// End of the window.
    pub end: DateTime<Utc>,
    /// Outbound bandwidth during the window.
    pub bandwidth_out: u32,
}

/// One simulated instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instance {
    /// Instance ID.
    pub id: String,
    /// Region ID.
    pub region_id: String,
    /// Billing method.
    pub charge_type: ChargeType,
    /// Status.
    pub status: Status,
    /// Network type.
    pub network_type: NetworkType,
    /// Outbound public bandwidth, Mbit/s.
    pub bandwidth_out: u32,
    /// Inbound public bandwidth, Mbit/s.
    pub bandwidth_in: u32,
    /// Network billing method.
    pub network_charge_type: NetworkChargeType,
    /// The public IP address, if any.
    pub public_ip: Option<String>,
    /// The bound EIP, if any.
    pub eip: Option<String>,
    /// When a subscription expires.
    pub expired_at: Option<DateTime<Utc>>,
    /// Locked by Alibaba Cloud's security team.
    pub locked_for_security: bool,
    /// A normal order waiting for payment (`AutoPay=false`).
    pub unpaid_order: Option<String>,
    /// An abnormal order: automatic payment failed for lack of balance; it
    /// can only be cancelled.
    pub abnormal_order: Option<String>,
    /// Bandwidth downgrades so far.
    pub downgrades: u32,
    /// A temporary upgrade.
    pub temporary_upgrade: Option<TemporaryUpgrade>,
    /// Its tags, as DescribeInstances lists them.
    pub tags: Vec<(String, String)>,
}

impl Instance {
    /// A running VPC instance with no public bandwidth, pay-by-traffic.
    pub fn new(id: &str, region_id: &str, charge_type: ChargeType) -> Self {
        Self {
            id: id.to_owned(),
            region_id: region_id.to_owned(),
            charge_type,
            status: Status::Running,
            network_type: NetworkType::Vpc,
            bandwidth_out: 0,
            bandwidth_in: 10,
            network_charge_type: NetworkChargeType::PayByTraffic,
            public_ip: None,
            eip: None,
            expired_at: (charge_type == ChargeType::PrePaid)
                .then(|| Utc::now() + chrono::TimeDelta::days(365)),
            locked_for_security: false,
            unpaid_order: None,
            abnormal_order: None,
            downgrades: 0,
            temporary_upgrade: None,
            tags: Vec::new(),
        }
    }
}

/// An AccessKey the simulator accepts.
#[derive(Debug, Clone)]
pub struct AccessKey {
    /// AccessKey ID.
    pub id: String,
    /// AccessKey secret.
    pub secret: crate::credentials::Secret,
    /// For an STS key: the token that must accompany it.
    pub security_token: Option<crate::credentials::Secret>,
}

/// Account-wide state that ECS checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    /// The account ID.
    pub id: String,
    /// The account has overdue payments.
    pub in_arrears: bool,
    /// Automatic payment would fail for lack of balance.
    pub balance_insufficient: bool,
    /// Total pay-by-bandwidth outbound bandwidth of pay-as-you-go instances
    /// per region, Mbit/s.
    pub bandwidth_quota: u32,
    /// Bandwidth downgrades allowed per subscription instance.
    pub max_downgrades: u32,
}

/// What the simulator starts with.
#[derive(Debug, Clone)]
pub struct Config {
    /// Accepted AccessKeys.
    pub access_keys: Vec<AccessKey>,
    /// The account.
    pub account: Account,
    /// Instances.
    pub instances: Vec<Instance>,
    /// Calls per second per AccessKey before `Throttling`; `None` never throttles.
    pub throttle_per_second: Option<u32>,
    /// How far a `Timestamp` may be from the simulator's clock.
    pub max_clock_skew: Duration,
}

/// The demo's account ID.
pub const DEMO_ACCOUNT_ID: &str = "1234567890123456";
/// The demo's region.
pub const DEMO_REGION: &str = "cn-hangzhou";
/// The demo's AccessKey ID (not a real key).
pub const DEMO_ACCESS_KEY_ID: &str = "LTAI5tDemoGatewayKey";
/// The demo's AccessKey secret (not a real key).
pub const DEMO_ACCESS_KEY_SECRET: &str = "demo-secret-not-for-production";

impl Config {
    /// The demo world: region `cn-hangzhou`, account `1234567890123456`, and
    /// the instances `i-demo-prepaid` (subscription, 0 Mbit/s),
    /// `i-demo-postpaid` (pay-as-you-go, 5 Mbit/s, public IP), `i-demo-eip`
    /// (EIP bound) and `i-demo-stopped`.
    pub fn demo() -> Self {
        let mut prepaid = Instance::new("i-demo-prepaid", DEMO_REGION, ChargeType::PrePaid);
        prepaid.network_charge_type = NetworkChargeType::PayByBandwidth;
        let mut postpaid = Instance::new("i-demo-postpaid", DEMO_REGION, ChargeType::PostPaid);
        postpaid.bandwidth_out = 5;
        postpaid.public_ip = Some("47.96.10.20".into());
        let mut eip = Instance::new("i-demo-eip", DEMO_REGION, ChargeType::PostPaid);
        eip.eip = Some("47.98.1.1".into());
        let mut stopped = Instance::new("i-demo-stopped", DEMO_REGION, ChargeType::PostPaid);
        stopped.status = Status::Stopped;
        // The tags policies/entities.json gives them.
        let tags =
            |env: &str, team: &str| vec![("env".into(), env.into()), ("team".into(), team.into())];
        prepaid.tags = tags("production", "platform");
        postpaid.tags = tags("staging", "web");
        eip.tags = tags("staging", "web");
        stopped.tags = tags("dev", "web");
        Self {
            access_keys: vec![AccessKey {
                id: DEMO_ACCESS_KEY_ID.into(),
                secret: crate::credentials::Secret::new(DEMO_ACCESS_KEY_SECRET),
                security_token: None,
            }],
            account: Account {
                id: DEMO_ACCOUNT_ID.into(),
                in_arrears: false,
                balance_insufficient: false,
                bandwidth_quota: 1000,
                max_downgrades: 3,
            },
            instances: vec![prepaid, postpaid, eip, stopped],
            throttle_per_second: None,
            max_clock_skew: Duration::from_secs(15 * 60),
        }
    }
}
