//! The simulator's world: its accounts, access keys, instances, RAM roles
//! and OIDC providers, and the demo's.

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
    /// The account that owns it: only that account's keys see it.
    pub account: String,
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
            account: DEMO_ACCOUNT_ID.to_owned(),
        }
    }

    /// The same instance, owned by `account` instead.
    #[must_use]
    pub fn with_account(mut self, account: &str) -> Self {
        self.account = account.to_owned();
        self
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
    /// The account whose key it is.
    pub account: String,
    /// When a temporary key stops being accepted (`InvalidSecurityToken.Expired`).
    pub expires: Option<DateTime<Utc>>,
}

impl AccessKey {
    /// A long-term key of the demo account.
    pub fn new(id: &str, secret: &str) -> Self {
        Self {
            id: id.to_owned(),
            secret: crate::credentials::Secret::new(secret),
            security_token: None,
            account: DEMO_ACCOUNT_ID.to_owned(),
            expires: None,
        }
    }
}

/// A RAM role that STS issues keys for (`AssumeRole`,
/// `AssumeRoleWithOIDC`), as its trust policy allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Role {
    /// `acs:ram::<account>:role/<name>`.
    pub arn: String,
    /// Accounts whose keys may assume it (`AssumeRole`).
    pub trusted_accounts: Vec<String>,
    /// The trust policy's `sts:ExternalId` condition: `AssumeRole` must send
    /// this `ExternalId`.
    pub external_id: Option<String>,
    /// The OIDC provider it trusts (`AssumeRoleWithOIDC`).
    pub oidc_provider_arn: Option<String>,
    /// The token subjects (`sub`) it trusts; empty trusts any.
    pub oidc_subjects: Vec<String>,
    /// Its maximum session: the largest `DurationSeconds` (3,600 s to
    /// 43,200 s; 3,600 s by default).
    pub max_session: Duration,
}

/// The longest session a role may allow.
pub const MAX_ROLE_SESSION: Duration = Duration::from_secs(43_200);

/// The `<account>` and `<resource>` of `acs:ram::<account>:<kind>/<resource>`.
fn arn_parts<'a>(arn: &'a str, kind: &str) -> Option<(&'a str, &'a str)> {
    let (account, resource) = arn.strip_prefix("acs:ram::")?.split_once(':')?;
    let name = resource.strip_prefix(kind)?.strip_prefix('/')?;
    Some((account, name))
}

impl Role {
    /// A role trusting nobody yet, with the default maximum session (1 h).
    pub fn new(arn: &str) -> Self {
        Self {
            arn: arn.to_owned(),
            trusted_accounts: Vec::new(),
            external_id: None,
            oidc_provider_arn: None,
            oidc_subjects: Vec::new(),
            max_session: Duration::from_secs(3600),
        }
    }

    /// The account the role belongs to, from its ARN ("" when the ARN is not
    /// a role's).
    pub fn account(&self) -> &str {
        arn_parts(&self.arn, "role").map_or("", |p| p.0)
    }

    /// The role's name, from its ARN ("" when the ARN is not a role's).
    pub fn name(&self) -> &str {
        arn_parts(&self.arn, "role").map_or("", |p| p.1)
    }
}

/// The audience an OIDC provider accepts when it lists no client ID.
pub const DEFAULT_OIDC_CLIENT_ID: &str = "sts.aliyuncs.com";

/// An OIDC identity provider registered in RAM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OidcProvider {
    /// `acs:ram::<account>:oidc-provider/<name>`.
    pub arn: String,
    /// The issuer URL a token's `iss` must equal.
    pub issuer: String,
    /// The client IDs a token's `aud` must name one of; empty accepts
    /// [`DEFAULT_OIDC_CLIENT_ID`].
    pub client_ids: Vec<String>,
    /// PEM of the provider's signing key: an EC P-256 (ES256) or RSA (RS256)
    /// public key.
    pub public_key_pem: String,
}

/// The ECS instance metadata server, as the instance the simulator stands
/// for sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Metadata {
    /// The name of the RAM role attached to the instance. A role of that
    /// name in [`Config::roles`] gives its account; otherwise it is the
    /// default account's.
    pub role: Option<String>,
    /// Token-less (IMDSv1) requests are served; `false` is hardened mode
    /// enforced (403 without a token).
    pub imdsv1_allowed: bool,
}

impl Default for Metadata {
    fn default() -> Self {
        Self {
            role: None,
            imdsv1_allowed: true,
        }
    }
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

impl Account {
    /// An account in good standing: no arrears, enough balance, a 1,000
    /// Mbit/s regional quota and 3 downgrades per subscription instance.
    pub fn new(id: &str) -> Self {
        Self {
            id: id.to_owned(),
            in_arrears: false,
            balance_insufficient: false,
            bandwidth_quota: 1000,
            max_downgrades: 3,
        }
    }
}

/// What the simulator starts with.
#[derive(Debug, Clone)]
pub struct Config {
    /// AccessKeys accepted from the start; the keys issued at run time join
    /// them.
    pub access_keys: Vec<AccessKey>,
    /// The default account (the demo key's).
    pub account: Account,
    /// Further accounts, reached with their own keys or by assuming their roles.
    pub other_accounts: Vec<Account>,
    /// Instances.
    pub instances: Vec<Instance>,
    /// Calls per second per AccessKey before `Throttling`; `None` never throttles.
    pub throttle_per_second: Option<u32>,
    /// How far a `Timestamp` may be from the simulator's clock.
    pub max_clock_skew: Duration,
    /// RAM roles that STS, the metadata server and the credentials URI issue
    /// keys for.
    pub roles: Vec<Role>,
    /// OIDC providers `AssumeRoleWithOIDC` trusts.
    pub oidc_providers: Vec<OidcProvider>,
    /// The instance metadata server.
    pub metadata: Metadata,
    /// The role ARN whose keys `GET /credentials-uri` hands out; `None`
    /// answers 404.
    pub credentials_uri_role: Option<String>,
    /// A test knob for refresh tests: when set, every key issued by STS, the
    /// metadata server and the credentials URI lives this long, whatever was
    /// asked.
    pub issued_lifetime: Option<Duration>,
}

/// The demo's account ID.
pub const DEMO_ACCOUNT_ID: &str = "1234567890123456";
/// The demo's region.
pub const DEMO_REGION: &str = "cn-hangzhou";
/// The demo's AccessKey ID (not a real key).
pub const DEMO_ACCESS_KEY_ID: &str = "LTAI5tDemoGatewayKey";
/// The demo's AccessKey secret (not a real key).
pub const DEMO_ACCESS_KEY_SECRET: &str = "demo-secret-not-for-production";
/// The demo's second account, reached by assuming [`SECOND_ACCOUNT_ROLE_ARN`].
pub const SECOND_ACCOUNT_ID: &str = "2234567890123456";
/// The second account's role, trusting the demo account with
/// [`DEMO_EXTERNAL_ID`].
pub const SECOND_ACCOUNT_ROLE_ARN: &str = "acs:ram::2234567890123456:role/ecs-gateway";
/// The external ID the second account's role requires.
pub const DEMO_EXTERNAL_ID: &str = "demo-external-id";

impl Config {
    /// The demo world: region `cn-hangzhou`, account `1234567890123456`, and
    /// the instances `i-demo-prepaid` (subscription, 0 Mbit/s),
    /// `i-demo-postpaid` (pay-as-you-go, 5 Mbit/s, public IP), `i-demo-eip`
    /// (EIP bound) and `i-demo-stopped`; a second account
    /// `2234567890123456` with `i-prod-web` (pay-as-you-go, 10 Mbit/s,
    /// public IP) and `i-prod-batch` (pay-as-you-go, 0 Mbit/s), reached
    /// through its role `ecs-gateway` (trusting the first account with the
    /// external ID `demo-external-id`, 1 h sessions).
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
        let mut web = Instance::new("i-prod-web", DEMO_REGION, ChargeType::PostPaid)
            .with_account(SECOND_ACCOUNT_ID);
        web.bandwidth_out = 10;
        web.public_ip = Some("47.96.30.40".into());
        web.tags = tags("production", "web");
        let mut batch = Instance::new("i-prod-batch", DEMO_REGION, ChargeType::PostPaid)
            .with_account(SECOND_ACCOUNT_ID);
        batch.tags = tags("production", "platform");
        let mut role = Role::new(SECOND_ACCOUNT_ROLE_ARN);
        role.trusted_accounts = vec![DEMO_ACCOUNT_ID.into()];
        role.external_id = Some(DEMO_EXTERNAL_ID.into());
        Self {
            access_keys: vec![AccessKey::new(DEMO_ACCESS_KEY_ID, DEMO_ACCESS_KEY_SECRET)],
            account: Account::new(DEMO_ACCOUNT_ID),
            other_accounts: vec![Account::new(SECOND_ACCOUNT_ID)],
            instances: vec![prepaid, postpaid, eip, stopped, web, batch],
            throttle_per_second: None,
            max_clock_skew: Duration::from_secs(15 * 60),
            roles: vec![role],
            oidc_providers: Vec::new(),
            metadata: Metadata::default(),
            credentials_uri_role: None,
            issued_lifetime: None,
        }
    }
}
