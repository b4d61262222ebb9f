//! ModifyInstanceNetworkSpec as ECS applies it: the parameter formats, then
//! the instance's state against the reference's rules, in the order ECS
//! reports them (one error per call), then the change itself. A ClientToken
//! seen before in the account with the same parameters returns the first
//! result (with a RequestId of its own) and changes nothing, whichever of
//! the account's keys signed it (a refreshed temporary key retries as the
//! same caller); with other parameters it is `IdempotentParameterMismatch`.
//! An instance of another account is `InvalidInstanceId.NotFound`, as an
//! unknown one; the quota and account state are the instance's account's.

use chrono::{DateTime, NaiveDateTime, TimeDelta, Utc};

use super::{
    ChargeType, Failure, Instance, NetworkChargeType, NetworkType, Params, Simulator, Status,
    Success,
};
use crate::upstream::{ACTION, END_TIME_FORMAT, START_TIME_FORMAT};
use crate::validate::{
    self, MAX_BANDWIDTH_OUT, MAX_BANDWIDTH_OUT_PAY_BY_TRAFFIC, MAX_CLIENT_TOKEN_LEN,
};

/// The request's parameters, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Request {
    region_id: String,
    instance_id: String,
    bandwidth_out: Option<u32>,
    bandwidth_in: Option<u32>,
    isp: Option<String>,
    network_charge_type: Option<NetworkChargeType>,
    allocate_public_ip: Option<bool>,
    start: Option<DateTime<Utc>>,
    end: Option<DateTime<Utc>>,
    auto_pay: bool,
    client_token: Option<String>,
}

fn required(params: &Params, name: &str) -> Result<String, Failure> {
    match params.get(name) {
        Some(v) if !v.is_empty() => Ok(v.clone()),
        _ => Err(Failure::new("MissingParameter").message(format!(
            "The input parameter \"{name}\" that is mandatory for processing this request is not supplied."
        ))),
    }
}

fn integer(params: &Params, name: &str, code: &'static str) -> Result<Option<u32>, Failure> {
    params
        .get(name)
        .map(|v| v.parse::<u32>().map_err(|_| Failure::new(code)))
        .transpose()
}

fn boolean(params: &Params, name: &str, code: &'static str) -> Result<Option<bool>, Failure> {
    params
        .get(name)
        .map(|v| match v.as_str() {
            "true" => Ok(true),
            "false" => Ok(false),
            _ => Err(Failure::new(code)
                .message(format!("The specified parameter {name} is not a boolean."))),
        })
        .transpose()
}

/// Parses ECS's minute or hour formats exactly.
fn time(
    params: &Params,
    name: &str,
    format: &str,
    code: &'static str,
) -> Result<Option<DateTime<Utc>>, Failure> {
    let Some(value) = params.get(name) else {
        return Ok(None);
    };
    // chrono needs a minute to build a time: the hour-only EndTime gets ":00"
    // before parsing, and the text must round-trip to be accepted.
    let (text, parse_format) = if format == END_TIME_FORMAT {
        (
            value.strip_suffix('Z').map(|v| format!("{v}:00Z")),
            "%Y-%m-%dT%H:%MZ",
        )
    } else {
        (Some(value.clone()), format)
    };
    text.and_then(|t| NaiveDateTime::parse_from_str(&t, parse_format).ok())
        .map(|t| t.and_utc())
        .filter(|t| t.format(format).to_string() == *value)
        .map(Some)
        .ok_or_else(|| Failure::new(code))
}

fn parse(params: &Params) -> Result<Request, Failure> {
    if params.get("Action").map(String::as_str) != Some(ACTION) {
        return Err(Failure::new("InvalidAction"));
    }
    // The reference lists no RegionId parameter (the endpoint is regional);
    // when one is sent it must be the instance's.
    let region_id = params.get("RegionId").cloned().unwrap_or_default();
    let instance_id = required(params, "InstanceId")?;
    let client_token = params.get("ClientToken").filter(|t| !t.is_empty()).cloned();
    if let Some(token) = &client_token
        && (!token.is_ascii() || token.len() > MAX_CLIENT_TOKEN_LEN)
    {
        return Err(Failure::new("InvalidClientToken.ValueNotSupported"));
    }
    let network_charge_type = params
        .get("NetworkChargeType")
        .map(|v| {
            NetworkChargeType::parse(v)
                .ok_or_else(|| Failure::new("InvalidInternetChargeType.ValueNotSupported"))
        })
        .transpose()?;
    Ok(Request {
        region_id,
        instance_id,
        bandwidth_out: integer(
            params,
            "InternetMaxBandwidthOut",
            "InvalidInternetMaxBandwidthOut.ValueNotSupported",
        )?,
        bandwidth_in: integer(
            params,
            "InternetMaxBandwidthIn",
            "InvalidInternetMaxBandwidthIn.ValueNotSupported",
        )?,
        isp: params.get("ISP").filter(|v| !v.is_empty()).cloned(),
        network_charge_type,
        allocate_public_ip: boolean(params, "AllocatePublicIp", "InvalidParam.AllocatePublicIp")?,
        start: time(
            params,
            "StartTime",
            START_TIME_FORMAT,
            "InvalidStartTime.ValueNotSupported",
        )?,
        end: time(
            params,
            "EndTime",
            END_TIME_FORMAT,
            "InvalidEndTime.ValueNotSupported",
        )?,
        auto_pay: boolean(params, "AutoPay", "InvalidParameter")?.unwrap_or(true),
        client_token,
    })
}

/// Answers one call signed by a key of `account`.
pub(super) fn call(
    sim: &Simulator,
    params: &Params,
    account: &str,
    now: DateTime<Utc>,
) -> Result<Success, Failure> {
    let request = parse(params)?;
    let mut state = sim.state();

    let idempotency_key = request
        .client_token
        .clone()
        .map(|t| (account.to_owned(), t));
    let fingerprint = fingerprint(&request);
    if let Some(first) = idempotency_key.as_ref().and_then(|k| state.replies.get(k)) {
        if first.parameters != fingerprint {
            return Err(Failure::new("IdempotentParameterMismatch"));
        }
        // The first call's result; this request has its own RequestId.
        return Ok(Success {
            request_id: super::request_id(),
            order_id: first.order_id.clone(),
        });
    }

    let instance = state
        .instances
        .get(&request.instance_id)
        .filter(|i| i.account == account)
        .filter(|i| request.region_id.is_empty() || i.region_id == request.region_id)
        .ok_or_else(|| Failure::new("InvalidInstanceId.NotFound"))?;
    let account = Simulator::account_state(&state, &sim.inner.default_account, &instance.account);
    // The quota is the account's in the instance's region.
    let regional_bandwidth: u32 = state
        .instances
        .values()
        .filter(|i| {
            i.region_id == instance.region_id
                && i.account == instance.account
                && i.id != instance.id
                && i.charge_type == ChargeType::PostPaid
                && i.network_charge_type == NetworkChargeType::PayByBandwidth
        })
        .map(|i| i.bandwidth_out)
        .sum();

    let plan = check(instance, &request, &account, regional_bandwidth, now)?;
    let ordered = plan.ordered;
    let order_id = ordered.then(|| {
        state.next_order += 1;
        state.next_order.to_string()
    });
    let ip = plan.allocate_ip.then(|| {
        state.next_ip += 1;
        format!("47.100.{}.{}", state.next_ip / 250, state.next_ip % 250 + 1)
    });
    let Some(instance) = state.instances.get_mut(&request.instance_id) else {
        return Err(Failure::new("InvalidInstanceId.NotFound"));
    };
    match (&order_id, request.auto_pay) {
        (Some(order), true) if plan.upgrade && account.balance_insufficient => {
            // Automatic payment fails: ECS still creates the order, an
            // abnormal one that can only be cancelled, and the instance is
            // blocked by it until then.
            instance.abnormal_order = Some(order.clone());
            return Err(Failure::new("InvalidAccountStatus.NotEnoughBalance"));
        }
        (Some(order), false) => {
            // Without automatic payment ECS creates a normal unpaid order;
            // the change waits for the payment in the console.
            instance.unpaid_order = Some(order.clone());
        }
        _ => apply(instance, &request, &plan, ip),
    }

    let success = Success {
        request_id: super::request_id(),
        order_id,
    };
    if let Some(key) = idempotency_key {
        *state.applied.entry(key.1.clone()).or_default() += 1;
        state.replies.insert(
            key,
            super::FirstResult {
                parameters: fingerprint,
                order_id: success.order_id.clone(),
            },
        );
    }
    Ok(success)
}

/// The request's parameters as ECS reads them (parsed, defaults applied),
/// without its ClientToken: what must match when a ClientToken is used
/// again. `AutoPay` left out and `AutoPay=true` are the same request.
fn fingerprint(request: &Request) -> Request {
    Request {
        client_token: None,
        ..request.clone()
    }
}

/// What a call will change, once every rule has passed.
struct Plan {
    bandwidth_out: u32,
    bandwidth_in: u32,
    network_charge_type: NetworkChargeType,
    allocate_ip: bool,
    downgrade: bool,
    /// The outbound bandwidth goes up (permanently or for a while).
    upgrade: bool,
    /// A subscription instance's bandwidth configuration changes: ECS
    /// places an order (and answers its OrderId).
    ordered: bool,
}

fn check(
    instance: &Instance,
    request: &Request,
    account: &super::Account,
    regional_bandwidth: u32,
    now: DateTime<Utc>,
) -> Result<Plan, Failure> {
    check_state(instance, account, now)?;
    if let Some(isp) = &request.isp {
        check_isp(isp, instance, request)?;
    }
    let charge = request
        .network_charge_type
        .unwrap_or(instance.network_charge_type);
    let bandwidth_out = request.bandwidth_out.unwrap_or(instance.bandwidth_out);
    check_eip(instance, request)?;
    check_temporary(instance, request, now)?;
    let bandwidth_in = check_bandwidths(instance, request, charge, bandwidth_out)?;
    let allocate_ip = allocates_ip(instance, request, bandwidth_out)?;
    check_classic(instance, bandwidth_out)?;
    let downgrade = request.start.is_none() && bandwidth_out < instance.bandwidth_out;
    let quota = Quota {
        account,
        regional_bandwidth,
    };
    quota.check(instance, charge, bandwidth_out, downgrade)?;
    let upgrade = bandwidth_out > instance.bandwidth_out;
    // OrderId comes back only when a subscription instance's bandwidth
    // configuration changes: its bandwidth, a temporary upgrade or its
    // network billing method. An IP alone, or the values it already has,
    // place no order.
    let ordered = instance.charge_type == ChargeType::PrePaid
        && (bandwidth_out != instance.bandwidth_out
            || bandwidth_in != instance.bandwidth_in
            || request.start.is_some()
            || charge != instance.network_charge_type);
    Ok(Plan {
        bandwidth_out,
        bandwidth_in,
        network_charge_type: charge,
        allocate_ip,
        downgrade,
        upgrade,
        ordered,
    })
}

/// The instance's and the account's state, before anything of the request.
fn check_state(
    instance: &Instance,
    account: &super::Account,
    now: DateTime<Utc>,
) -> Result<(), Failure> {
    if instance.locked_for_security {
        return Err(Failure::new("InstanceLockedForSecurity"));
    }
    if instance.expired_at.is_some_and(|e| e <= now) {
        return Err(Failure::new("InstanceExpiredOrInArrears"));
    }
    if !matches!(instance.status, Status::Running | Status::Stopped) {
        return Err(Failure::new("InvalidOperation.InstanceStatusUnsupported"));
    }
    if instance.unpaid_order.is_some() || instance.abnormal_order.is_some() {
        return Err(Failure::with_status("InvalidInstance.UnPaidOrder", 403));
    }
    if account.in_arrears {
        return Err(Failure::new("Account.Arrearage"));
    }
    Ok(())
}

fn check_eip(instance: &Instance, request: &Request) -> Result<(), Failure> {
    if instance.eip.is_some() {
        // A VPC instance with an EIP reaches the internet through the EIP:
        // a temporary upgrade is refused as such, a public bandwidth is not
        // needed (the reference's specific answer), and any other change of
        // its public network waits until the EIP is unassociated.
        if request.start.is_some() || request.end.is_some() {
            return Err(Failure::new("BandwidthUpgradeDenied.EipBoundInstance"));
        }
        if request.bandwidth_out.is_some() || request.bandwidth_in.is_some() {
            return Err(Failure::new("InvalidInstance.InstanceNotSupported"));
        }
        if request.allocate_public_ip == Some(true) || request.network_charge_type.is_some() {
            return Err(Failure::new("InvalidInstance.EipNotSupport"));
        }
    }

    Ok(())
}

/// The outbound bandwidth's range, then the inbound's; the inbound
/// bandwidth the instance will have.
fn check_bandwidths(
    instance: &Instance,
    request: &Request,
    charge: NetworkChargeType,
    bandwidth_out: u32,
) -> Result<u32, Failure> {
    let max_out = match (charge, instance.charge_type) {
        (NetworkChargeType::PayByBandwidth, ChargeType::PrePaid) => MAX_BANDWIDTH_OUT,
        _ => MAX_BANDWIDTH_OUT_PAY_BY_TRAFFIC,
    }
    .unsigned_abs();
    if bandwidth_out > max_out {
        return Err(Failure::new("InvalidInternetMaxBandwidthOut.ValueNotSupported").message(format!(
            "The specified InternetMaxBandwidthOut is beyond the permitted range: 0 to {max_out} for a {:?} {} instance.",
            instance.charge_type,
            charge.as_str()
        )));
    }
    let limit_in = validate::max_bandwidth_in(bandwidth_out);
    Ok(match request.bandwidth_in {
        Some(v) if v == 0 || v > limit_in => {
            return Err(Failure::new("InvalidInternetMaxBandwidthIn.ValueNotSupported")
                .message(format!("The specified InternetMaxBandwidthIn is beyond the permitted range: 1 to {limit_in}.")));
        }
        Some(v) => v,
        None if request.bandwidth_out.is_some() => validate::default_bandwidth_in(bandwidth_out),
        None => instance.bandwidth_in,
    })
}

/// Whether the call allocates a public IP address.
fn allocates_ip(
    instance: &Instance,
    request: &Request,
    bandwidth_out: u32,
) -> Result<bool, Failure> {
    Ok(match (instance.charge_type, request.allocate_public_ip) {
        (_, Some(true)) if instance.public_ip.is_some() => {
            return Err(Failure::new("InvalidParam.AllocatePublicIp")
                .message("The specified param AllocatePublicIp is invalid: the instance already has a public IP address."));
        }
        (_, Some(true)) if bandwidth_out == 0 => {
            return Err(Failure::new("InvalidParam.AllocatePublicIp").message(
                "The specified param AllocatePublicIp is invalid: the outbound bandwidth is 0.",
            ));
        }
        (_, Some(true)) => true,
        // A subscription instance raised from 0 gets a public IP by itself.
        (ChargeType::PrePaid, _) => {
            instance.public_ip.is_none() && instance.bandwidth_out == 0 && bandwidth_out > 0
        }
        (ChargeType::PostPaid, _) => false,
    })
}

fn check_classic(instance: &Instance, bandwidth_out: u32) -> Result<(), Failure> {
    // A classic-network instance leaves 0 Mbit/s outbound only while it is
    // stopped (earlier editions of this API's reference; the current one
    // keeps the error code).
    if instance.network_type == NetworkType::Classic
        && instance.bandwidth_out == 0
        && bandwidth_out > 0
        && instance.status != Status::Stopped
    {
        return Err(Failure::new("InvalidInstanceStatus.NotStopped").message(
            "The specified Instance status is not Stopped: a classic network instance must be stopped to raise its outbound bandwidth from 0.",
        ));
    }

    Ok(())
}

/// The account's quotas a change counts against.
struct Quota<'a> {
    account: &'a super::Account,
    /// The pay-by-bandwidth bandwidth of the region's pay-as-you-go
    /// instances, this one's excluded.
    regional_bandwidth: u32,
}

impl Quota<'_> {
    fn check(
        &self,
        instance: &Instance,
        charge: NetworkChargeType,
        bandwidth_out: u32,
        downgrade: bool,
    ) -> Result<(), Failure> {
        let (account, regional_bandwidth) = (self.account, self.regional_bandwidth);
        if downgrade
            && instance.charge_type == ChargeType::PrePaid
            && instance.downgrades >= account.max_downgrades
        {
            return Err(Failure::new("InstanceDowngrade.QuotaExceed"));
        }
        if instance.charge_type == ChargeType::PostPaid
            && charge == NetworkChargeType::PayByBandwidth
            && regional_bandwidth + bandwidth_out > account.bandwidth_quota
        {
            return Err(Failure::new("QuotaExceeded.InternetBandwidth").message(format!(
                "QuotaExceeded.InternetBandwidth: the pay-by-bandwidth public bandwidth of pay-as-you-go instances in {} would be {} Mbit/s, above the quota of {} Mbit/s.",
                instance.region_id,
                regional_bandwidth + bandwidth_out,
                account.bandwidth_quota
            )));
        }
        Ok(())
    }
}

fn check_isp(isp: &str, instance: &Instance, request: &Request) -> Result<(), Failure> {
    if instance.network_type == NetworkType::Classic {
        return Err(
            Failure::new("UnsupportedIspClassicNetwork").message(format!(
                "ISP {isp:?} is not supported for classic network instances."
            )),
        );
    }
    if request.bandwidth_out.unwrap_or(0) == 0 {
        return Err(Failure::new("InvalidBandwidthOut.LessThanZero"));
    }
    if request.network_charge_type == Some(NetworkChargeType::PayByTraffic) {
        return Err(Failure::new("UnsupportedIspNetworkChargeType"));
    }
    // ISP is in invitational preview: no account here is invited.
    Err(Failure::new("InvalidIspUID")
        .message(format!("The account is not invited to use ISP {isp:?}.")))
}

fn check_temporary(
    instance: &Instance,
    request: &Request,
    now: DateTime<Utc>,
) -> Result<(), Failure> {
    let (start, end) = match (request.start, request.end) {
        (None, None) => return Ok(()),
        (Some(start), Some(end)) => (start, end),
        _ => {
            return Err(Failure::new("InvalidParameter.Conflict")
                .message("StartTime and EndTime must be specified together for a temporary bandwidth upgrade."));
        }
    };
    if instance.charge_type != ChargeType::PrePaid {
        return Err(Failure::new("ChargeTypeViolation"));
    }
    if instance.status != Status::Running {
        return Err(Failure::with_status("IncorrectInstanceStatus", 403));
    }
    let this_minute = now - TimeDelta::seconds(i64::from(chrono::Timelike::second(&now)));
    if start < this_minute - TimeDelta::minutes(1) {
        return Err(Failure::new("InvalidStartTime.ValueNotSupported")
            .message("The specified StartTime is out of the permitted range: it is in the past."));
    }
    if end - start < validate::MIN_TEMPORARY_UPGRADE {
        return Err(Failure::new("InvalidEndTime.ValueNotSupported")
            .message("The specified EndTime is out of the permitted range: it must be at least 3 hours after StartTime."));
    }
    if let Some(expiry) = instance.expired_at {
        if start >= expiry {
            return Err(Failure::new("InvalidStartTime.BeyondLifeCycle"));
        }
        if end > expiry {
            return Err(Failure::new("InvalidEndTime.BeyondLifeCycle"));
        }
    }
    let Some(out) = request.bandwidth_out else {
        return Err(Failure::new("InvalidParameter.Conflict")
            .message("A temporary bandwidth upgrade needs InternetMaxBandwidthOut."));
    };
    if out < instance.bandwidth_out {
        return Err(Failure::new("InvalidBandwidth.ValueNotSupported"));
    }
    Ok(())
}

fn apply(instance: &mut Instance, request: &Request, plan: &Plan, ip: Option<String>) {
    if let (Some(start), Some(end)) = (request.start, request.end) {
        instance.temporary_upgrade = Some(super::TemporaryUpgrade {
            start,
            end,
            bandwidth_out: plan.bandwidth_out,
        });
        return;
    }
    if plan.downgrade && instance.charge_type == ChargeType::PrePaid {
        instance.downgrades += 1;
    }
    instance.bandwidth_out = plan.bandwidth_out;
    instance.bandwidth_in = plan.bandwidth_in;
    instance.network_charge_type = plan.network_charge_type;
    if let Some(ip) = ip {
        instance.public_ip = Some(ip);
    }
}
