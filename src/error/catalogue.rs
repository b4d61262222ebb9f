//! The one error catalogue: every error code of ModifyInstanceNetworkSpec's
//! reference (`../shared/reference/ModifyInstanceNetworkSpec.txt`), the ECS
//! common errors the signing layer can meet, and the gateway's own codes.
//! Each row fixes the gRPC code a caller sees and whether a retry can help.
//! `error.rs` turns a row into a `tonic::Status`; the simulator answers with
//! the same rows, so the two cannot drift apart.

use std::time::Duration;
use tonic::Code;

/// Where a code is defined.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// Listed in the API's reference.
    Reference,
    /// An ECS (POP gateway) error common to every API: signatures, keys.
    Common,
    /// Raised by this gateway, in ECS's naming style where ECS has the code.
    Gateway,
}

/// One error code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    /// The error code, ErrorInfo's `reason`.
    pub code: &'static str,
    /// The HTTP status ECS answers with (the gateway's own codes: the status
    /// ECS would use for such an error).
    pub http_status: u16,
    /// The gRPC code the caller gets.
    pub grpc: Code,
    /// Some delay when retrying the same call (same ClientToken) can succeed.
    pub retry_after: Option<Duration>,
    /// ECS's documented message.
    pub message: &'static str,
    /// Where the code comes from.
    pub source: Source,
}

/// ErrorInfo domain of ECS's codes.
pub const ECS_DOMAIN: &str = "ecs.aliyuncs.com";
/// ErrorInfo domain of codes only the gateway raises.
pub const GATEWAY_DOMAIN: &str = "ecs-gateway";

impl Entry {
    /// ErrorInfo's domain for this code.
    pub fn domain(&self) -> &'static str {
        match self.source {
            Source::Gateway => GATEWAY_DOMAIN,
            Source::Reference | Source::Common => ECS_DOMAIN,
        }
    }
}

const fn row(
    http_status: u16,
    code: &'static str,
    grpc: Code,
    retry_ms: u64,
    message: &'static str,
    source: Source,
) -> Entry {
    Entry {
        code,
        http_status,
        grpc,
        retry_after: if retry_ms == 0 {
            None
        } else {
            Some(Duration::from_millis(retry_ms))
        },
        message,
        source,
    }
}

use Code::{
    Aborted, Cancelled, DeadlineExceeded, FailedPrecondition, Internal, InvalidArgument, NotFound,
    OutOfRange, PermissionDenied, ResourceExhausted, Unauthenticated, Unavailable,
};
use Source::{Common, Gateway, Reference};

/// Every known code. Rows with the same code and another HTTP status are the
/// reference's own duplicates (ECS answers some codes with 400 or 403).
///
/// How gRPC codes are chosen (google.rpc.Code's guidance):
/// - the caller must change a value: `INVALID_ARGUMENT`;
/// - the instance, its orders or the account are in the wrong state:
///   `FAILED_PRECONDITION` (no retry hint: the state must change first).
///   `InvalidBandwidth.ValueNotSupported` ("not allow less then existed")
///   is one: the same value is fine for an instance with less bandwidth.
///   `Image.OrderFailed` (HTTP 500) is another: the marketplace image's
///   order failed, which a retry does not mend;
/// - a concurrent change is in progress: `ABORTED`, retried in the call;
/// - a rate or quota: `RESOURCE_EXHAUSTED`; `Throttling` carries ECS's own
///   five minutes and is answered at once, not retried in the call;
/// - beyond the instance's lifetime: `OUT_OF_RANGE`;
/// - ECS failing for a moment: `UNAVAILABLE` with a retry hint, retried in
///   the call. `InternalError`, and the three failures that say the same
///   in other words (`IpAllocationError`, `NAT_PUBLIC_IP_BINDING_FAILED`,
///   `Mayi.InternalError`): their message is ECS's own and safe to show;
/// - the gateway's own request refused: `INTERNAL`, ECS's message replaced
///   by the row's (the caller cannot act on it, and ECS's text quotes the
///   signed string, with the STS token). Only the gateway's AccessKey,
///   signature, clock, API version and RAM permissions are `INTERNAL`:
///   `Forbidden.RAM` (the gateway's RAM identity lacks
///   `ecs:ModifyInstanceNetworkSpec`) and `NoPermission.Refund` (it lacks
///   the refund permission a downgrade needs), which an operator must grant.
///   `NoPermission.Price` stays `PERMISSION_DENIED` with ECS's message: the
///   caller can avoid it by setting `auto_pay`, as the message says.
///
/// Codes not in the catalogue map by HTTP status ([`by_http_status`]).
#[rustfmt::skip]
pub static CATALOGUE: &[Entry] = &[
    row(400, "InvalidInternetMaxBandwidthIn.ValueNotSupported", InvalidArgument, 0, "The specified InternetMaxBandwidthIn is beyond the permitted range.", Reference),
    row(400, "InvalidInternetMaxBandwidthOut.ValueNotSupported", InvalidArgument, 0, "The specified InternetMaxBandwidthOut is beyond the permitted range.", Reference),
    row(400, "OperationDenied", FailedPrecondition, 0, "Specified instance is in VPC.", Reference),
    row(400, "InvalidParameter.Conflict", InvalidArgument, 0, "The specified parameter is invalid. Check whether parameter conflicts exist.", Reference),
    row(400, "InvalidStartTime.ValueNotSupported", InvalidArgument, 0, "The specified StartTime is out of the permitted range.", Reference),
    row(400, "InvalidEndTime.ValueNotSupported", InvalidArgument, 0, "The specified EndTime is out of the permitted range.", Reference),
    row(400, "ChargeTypeViolation", FailedPrecondition, 0, "The operation is not permitted due to billing method of the instance.", Reference),
    row(400, "Account.Arrearage", FailedPrecondition, 0, "Your account has an outstanding payment.", Reference),
    row(400, "InvalidInternetChargeType.ValueNotSupported", InvalidArgument, 0, "The specified InternetChargeType is invalid.", Reference),
    row(400, "DecreasedBandwidthNotAllowed", FailedPrecondition, 0, "The bandwidth downgrade operation is invalid.", Reference),
    row(400, "BandwidthUpgradeDenied.EipBoundInstance", FailedPrecondition, 0, "The specified VPC instance has bound EIP, temporary bandwidth upgrade is denied.", Reference),
    row(400, "InvalidClientToken.ValueNotSupported", InvalidArgument, 0, "The ClientToken provided is invalid.", Reference),
    row(400, "Throttling", ResourceExhausted, 300_000, "Request was denied due to request throttling, please try again after 5 minutes.", Reference),
    row(400, "InvalidInstanceStatus.NotStopped", FailedPrecondition, 0, "The specified Instance status is not Stopped.", Reference),
    row(400, "InvalidAction", FailedPrecondition, 0, "Specified action is not valid.", Reference),
    row(400, "IpAllocationError", Unavailable, 1000, "Allocate public ip failed.", Reference),
    row(400, "InvalidParam.AllocatePublicIp", InvalidArgument, 0, "The specified param AllocatePublicIp is invalid.", Reference),
    row(400, "InstanceDowngrade.QuotaExceed", ResourceExhausted, 0, "Quota of instance downgrade is exceed.", Reference),
    row(400, "InvalidBandwidth.ValueNotSupported", FailedPrecondition, 0, "Instance upgrade bandwidth of temporary not allow less then existed.", Reference),
    row(400, "InvalidInstanceStatus", FailedPrecondition, 0, "The specified instance status does not support this action.", Reference),
    row(400, "InvalidInstance.UnPaidOrder", FailedPrecondition, 0, "Unpaid order exists in your account, please complete or cancel the payment in the expense center.", Reference),
    row(400, "LastOrderProcessing", Aborted, 2000, "The previous order is still processing, please try again later.", Reference),
    row(400, "LastRequestProcessing", Aborted, 1000, "The previous request is still processing, please try again later.", Reference),
    row(400, "InvalidStartTime.BeyondLifeCycle", OutOfRange, 0, "The specified start time exceeds the expiration time.", Reference),
    row(400, "InvalidEndTime.BeyondLifeCycle", OutOfRange, 0, "The specified end time exceeds the expiration time.", Reference),
    row(400, "InvalidPayMethod.SyncPaymentNotSupport", FailedPrecondition, 0, "Synchronous payment is not supported. Use another payment method.", Reference),
    row(400, "InvalidBandwidthOut.LessThanZero", InvalidArgument, 0, "The bandwidth must be larger than 0 when specifying isp.", Reference),
    row(400, "InvalidParameter.BandwidthBiggerThanBaseBandwidth", InvalidArgument, 0, "The bandwidth is bigger than the base bandwidth of the instance type.", Reference),
    row(400, "InvalidAction.WithActiveElasticUpgrade", FailedPrecondition, 0, "The instance has active Elastic Upgrade.", Reference),
    row(400, "InvalidParameter.CloudboxNotSupported", FailedPrecondition, 0, "The operation is not supported for Cloudbox instances.", Reference),
    row(400, "InvalidParameter.Bandwidth", InvalidArgument, 0, "The specified bandwidth value is invalid.", Reference),
    row(400, "NoPermission.Price", PermissionDenied, 0, "The operation requires price permission. Please either apply for permission from your main account, or set the parameter AutoPay as true.", Reference),
    row(400, "NoPermission.Refund", Internal, 0, "The operation requires refund permission. Please apply for permission from your main account.", Reference),
    row(400, "InvalidParameter.DedicatedRegionNotSupported", FailedPrecondition, 0, "The specified action is rejected because the specified ECS instance in the dedicated region does not support public IP.", Reference),
    row(400, "InvalidOperation.InstanceStatusUnsupported", FailedPrecondition, 0, "The specified instance status is not supported for this operation, expect status is Running or Stopped.", Reference),
    row(400, "QuotaExceeded.InternetBandwidth", ResourceExhausted, 0, "The public bandwidth of pay-as-you-go instances charged by fixed bandwidth exceeds the total bandwidth quota of the account in this region.", Reference),
    row(400, "UnsupportedIspNetworkChargeType", InvalidArgument, 0, "The network charge type is not supported when specifying ISP.", Reference),
    row(400, "IncorrectInstanceStatus", FailedPrecondition, 0, "Current instance status does not support this operation.", Reference),
    row(400, "TaskConflict", Aborted, 1000, "The operation is too frequent, please wait a moment and try again.", Reference),
    row(400, "InvalidOperation.InternetMaxBandwidthOutUnsupported", FailedPrecondition, 0, "The InternetMaxBandwidthOut is not allowed to modify.", Reference),
    row(500, "InternalError", Unavailable, 1000, "The request processing has failed due to some unknown error.", Reference),
    row(500, "Image.OrderFailed", FailedPrecondition, 0, "Create marketplace image order failed.", Reference),
    row(403, "IncorrectInstanceStatus", FailedPrecondition, 0, "The current status of the instance does not support this operation.", Reference),
    row(403, "InstanceLockedForSecurity", FailedPrecondition, 0, "The specified operation is denied as your instance is locked for security reasons.", Reference),
    row(403, "InstanceExpiredOrInArrears", FailedPrecondition, 0, "The specified operation is denied as your prepay instance is expired (prepay mode) or in arrears (afterpay mode).", Reference),
    row(403, "ChargeTypeViolation", FailedPrecondition, 0, "The operation is not permitted due to billing method of the instance.", Reference),
    row(403, "OperationDenied", FailedPrecondition, 0, "The operation is denied due to the instance is PrePaid.", Reference),
    row(403, "InvalidAccountStatus.NotEnoughBalance", FailedPrecondition, 0, "Your account does not have enough balance.", Reference),
    row(403, "InvalidInstance.UnPaidOrder", FailedPrecondition, 0, "The specified Instance has unpaid order.", Reference),
    row(403, "Throttling", ResourceExhausted, 300_000, "Request was denied due to request throttling, please try again after 5 minutes.", Reference),
    row(403, "InvalidInstance.InstanceNotSupported", FailedPrecondition, 0, "The special vpc instance with eip not need bandwidth.", Reference),
    row(403, "InstanceDowngrade.QuotaExceed", ResourceExhausted, 0, "Quota of instance downgrade is exceed.", Reference),
    row(403, "InvalidInstanceStatus", FailedPrecondition, 0, "The current status of the instance does not support this operation.", Reference),
    row(403, "InvalidOperation.StarterPackage", FailedPrecondition, 0, "StarterPackage not support modification.", Reference),
    row(403, "NAT_PUBLIC_IP_BINDING_FAILED", Unavailable, 1000, "Binding nat public ip failed.", Reference),
    row(403, "InvalidInstance.EipNotSupport", FailedPrecondition, 0, "The specified instance with eip is not supported, please unassociate eip first.", Reference),
    row(403, "InvalidInstance.NatPortMapNotSupport", FailedPrecondition, 0, "The special instance with nat port map not support operate, please remove nat port map first.", Reference),
    row(403, "OperationDenied.UnpaidOrder", FailedPrecondition, 0, "The specified instance has unpaid order.", Reference),
    row(403, "Mayi.InternalError", Unavailable, 1000, "The request processing has failed due to some unknown error.", Reference),
    row(403, "InvalidNetworkType.ValueNotSupported", FailedPrecondition, 0, "The specified parameter NetworkType is not valid.", Reference),
    row(403, "OperationDenied.ImageNotValid", FailedPrecondition, 0, "The specified image is not authorized.", Reference),
    row(403, "InvalidInstanceChargeType.ValueNotSupported", FailedPrecondition, 0, "The specified parameter ChargeType is not valid.", Reference),
    row(403, "InvalidIspType.ValueNotSupported", InvalidArgument, 0, "The specified ISP type is not supported.", Reference),
    row(403, "UnsupportedIspChargeType", FailedPrecondition, 0, "The billing type does not support the service provider (ISP) for this account.", Reference),
    row(403, "UnsupportedIspClassicNetwork", FailedPrecondition, 0, "ISP is not supported for classic network instances.", Reference),
    row(403, "InvalidIspBandwidthOut", InvalidArgument, 0, "The outbound bandwidth is not supported for the ISP.", Reference),
    row(403, "UnsupportedChangeIsp", FailedPrecondition, 0, "The ISP of the instance cannot be changed.", Reference),
    row(403, "InvalidIspUID", PermissionDenied, 0, "The account is not allowed to use ISP.", Reference),
    row(403, "UnsupportedIspRegion", FailedPrecondition, 0, "ISP is not supported in this region.", Reference),
    row(403, "BandIncreaseNotSupportIsp", FailedPrecondition, 0, "Bandwidth increase is not supported for the ISP.", Reference),
    row(403, "SecurityRisk.3DVerification", FailedPrecondition, 0, "We have detected a security risk with your default credit or debit card. Please proceed with verification via the link in your email.", Reference),
    row(403, "InvalidOperation.PublicIpAddressNoStock", ResourceExhausted, 0, "The public IP address for the specified Region or ChargeType of the instance is out of stock. Please try another Region or ChargeType.", Reference),
    row(403, "InvalidOperation.NetworkTypeUnsupported", FailedPrecondition, 0, "The specified network type is not supported in this region.", Reference),
    row(404, "InvalidInstanceId.NotFound", NotFound, 0, "The specified InstanceId does not exist.", Reference),
    row(409, "OperationConflict", Aborted, 1000, "Request was denied due to conflict with a previous request,please try again later.", Reference),
    // ECS common errors: signing and request shape. The gateway's own
    // credentials or clock are at fault, which the caller cannot fix.
    row(400, "InvalidParameter", InvalidArgument, 0, "The specified parameter is not valid.", Common),
    row(400, "MissingParameter", InvalidArgument, 0, "The input parameter that is mandatory for processing this request is not supplied.", Common),
    // ECS's answer to a ClientToken used again with other parameters: the
    // caller reused a token for a different change and must pick a new one.
    row(400, "IdempotentParameterMismatch", InvalidArgument, 0, "The specified parameter has changed while using an already used clientToken.", Common),
    row(400, "SignatureDoesNotMatch", Internal, 0, "Specified signature is not matched with our calculation.", Common),
    row(404, "InvalidAccessKeyId.NotFound", Internal, 0, "Specified access key is not found.", Common),
    row(400, "InvalidAccessKeyId.Inactive", Internal, 0, "Specified access key is disabled.", Common),
    row(400, "SignatureNonceUsed", Aborted, 100, "Specified signature nonce was used already.", Common),
    row(400, "InvalidTimeStamp.Expired", Internal, 0, "Specified time stamp or date value is expired.", Common),
    row(400, "InvalidTimeStamp.Format", Internal, 0, "Specified time stamp or date value is not well formatted.", Common),
    row(400, "IncompleteSignature", Internal, 0, "The request signature does not conform to Aliyun standards.", Common),
    row(400, "InvalidSecurityToken.Mismatch", Internal, 0, "Specified SecurityToken mismatch with the AccessKey.", Common),
    row(400, "InvalidSecurityToken.Expired", Internal, 0, "Specified SecurityToken is expired.", Common),
    row(400, "InvalidSecurityToken.Malformed", Internal, 0, "Specified SecurityToken is malformed.", Common),
    // Alibaba Cloud's OpenAPI common errors (help.aliyun.com/document_detail/53438.html):
    // an STS key without its token, and a token that is not the key's.
    row(400, "MissingSecurityToken", Internal, 0, "SecurityToken is mandatory for this action.", Common),
    row(400, "InvalidSecurityToken.MismatchWithAccessKey", Internal, 0, "Specified SecurityToken mismatch with the AccessKey.", Common),
    // STS (AssumeRole, AssumeRoleWithOIDC), where the gateway's credentials
    // come from: its role settings or OIDC token are at fault. STS's error
    // codes (api-sts-2015-04-01-errorcodes) and troubleshooting page (42775).
    row(400, "InvalidParameter.RoleSessionName", Internal, 0, "The parameter RoleSessionName is wrongly formed.", Common),
    row(400, "InvalidParameter.DurationSeconds", Internal, 0, "The Min/Max value of DurationSeconds is 15min/1hr.", Common),
    row(403, "NoPermission", Internal, 0, "You are not authorized to do this action. You should be authorized by RAM.", Common),
    row(404, "EntityNotExist.Role", Internal, 0, "The role not exists.", Common),
    row(404, "EntityNotExist.OIDCProvider", Internal, 0, "The specified OIDC provider does not exist.", Common),
    row(401, "AuthenticationFail.NoPermission", Internal, 0, "There is no permission", Common),
    row(401, "AuthenticationFail.OIDCToken.Invalid", Internal, 0, "The Jwt content is invalid that cannot be recognized.", Common),
    row(401, "AuthenticationFail.OIDCToken.InvalidSignature", Internal, 0, "OIDC token validate failed: invalid signature.", Common),
    row(401, "AuthenticationFail.OIDCToken.IssuerNotMatch", Internal, 0, "Invalid issuer.", Common),
    row(401, "AuthenticationFail.OIDCToken.AudienceNotMatch", Internal, 0, "Invalid audience.", Common),
    row(401, "AuthenticationFail.OIDCToken.Expired", Internal, 0, "This JsonWebToken is expired.", Common),
    row(400, "InvalidVersion", Internal, 0, "Specified parameter Version is not valid.", Common),
    row(403, "Forbidden.RAM", Internal, 0, "User not authorized to operate on the specified resource, or this API doesn't support RAM.", Common),
    row(503, "ServiceUnavailable", Unavailable, 1000, "The request has failed due to a temporary failure of the server.", Common),
    // The gateway's own codes. ECS uses the two `Malformed` codes in other APIs.
    row(400, "InvalidRegionId.Malformed", InvalidArgument, 0, "The specified parameter RegionId is not valid.", Gateway),
    row(400, "InvalidInstanceId.Malformed", InvalidArgument, 0, "The specified parameter InstanceId is not valid.", Gateway),
    row(400, "InvalidAccountId.Malformed", InvalidArgument, 0, "The specified parameter account_id is not an Alibaba Cloud account ID.", Gateway),
    row(400, "InvalidAccountId.NotServed", InvalidArgument, 0, "The specified account is not one this gateway serves.", Gateway),
    row(503, "UpstreamUnavailable", Unavailable, 1000, "The ECS endpoint could not be reached.", Gateway),
    row(504, "UpstreamTimeout", DeadlineExceeded, 0, "The ECS endpoint did not answer in time.", Gateway),
    row(503, "UpstreamCircuitOpen", Unavailable, 1000, "The ECS endpoint is failing; calls are refused until it recovers.", Gateway),
    row(502, "UpstreamInvalidResponse", Unavailable, 1000, "The ECS endpoint answered with a response that could not be read.", Gateway),
    row(503, "GatewayOverloaded", ResourceExhausted, 200, "The gateway is serving as many calls as it can; retry shortly or on another replica.", Gateway),
    row(429, "GatewayCallerOverloaded", ResourceExhausted, 200, "This caller already has as many calls in flight as one caller may; retry when one has finished.", Gateway),
    row(408, "GatewayReceiveTimeout", DeadlineExceeded, 0, "The request message did not arrive in time.", Gateway),
    row(413, "GatewayMessageTooLarge", OutOfRange, 0, "The request message is too large.", Gateway),
    row(429, "GatewayLookupThrottled", ResourceExhausted, 1000, "The gateway asked ECS about instances as often as it may for this caller (or for all callers); retry shortly.", Gateway),
    row(503, "GatewayStreamsExhausted", ResourceExhausted, 1000, "As many health and reflection streams are open as the gateway allows; retry shortly.", Gateway),
    row(408, "GatewayStreamExpired", DeadlineExceeded, 0, "The health or reflection stream was idle too long or reached its deadline; open a new one.", Gateway),
    row(499, "GatewayCallCancelled", Cancelled, 0, "The caller went away before its request message arrived.", Gateway),
    row(503, "GatewayShuttingDown", Unavailable, 100, "The gateway is shutting down; retry with the same client_token, another replica will serve it.", Gateway),
    row(503, "GatewayCredentialsUnavailable", Unavailable, 1000, "The gateway has no usable credentials for the account right now; nothing was sent. Retry shortly.", Gateway),
    row(500, "GatewayInternalError", Internal, 0, "The gateway failed to process the request.", Gateway),
    // Identity and authorization: the gateway's own RAM-like checks.
    row(401, "Unauthenticated.MissingIdentity", Unauthenticated, 0, "No identity: present an mTLS client certificate or a bearer token.", Gateway),
    row(401, "Unauthenticated.InvalidClientCertificate", Unauthenticated, 0, "The client certificate cannot be used.", Gateway),
    row(401, "Unauthenticated.InvalidToken", Unauthenticated, 0, "The bearer token is not valid.", Gateway),
    row(401, "Unauthenticated.InvalidForwardedClientCert", Unauthenticated, 0, "The forwarded client certificate header cannot be used.", Gateway),
    row(403, "AccessDenied", PermissionDenied, 0, "The policies do not allow this call.", Gateway),
];

/// The row for `code` as ECS answered it with `http_status`: the exact pair
/// when the catalogue has it, else the code's first row.
///
/// Only ECS's own rows (the reference's and the common ones): an answer from
/// ECS is never one of the gateway's codes, whatever it is called.
pub fn lookup(code: &str, http_status: u16) -> Option<&'static Entry> {
    let mut first = None;
    for entry in CATALOGUE
        .iter()
        .filter(|e| e.code == code && e.source != Gateway)
    {
        if entry.http_status == http_status {
            return Some(entry);
        }
        first.get_or_insert(entry);
    }
    first
}

/// Families of ECS codes that refuse the gateway's own request: its
/// AccessKey, STS token, signature, clock or RAM permissions. A code of
/// these families that the catalogue does not know is still `INTERNAL`, and
/// its message (which can name the gateway's RAM identity or quote the
/// signed string) is not shown.
const GATEWAYS_OWN: &[&str] = &[
    "AccessDenied",
    "Forbidden",
    "NoPermission",
    "InvalidAccessKeyId",
    "InvalidSecurityToken",
    "InvalidTimeStamp",
    "SignatureDoesNotMatch",
    "IncompleteSignature",
];

/// The gRPC code and retry advice for an ECS error: the catalogue's row;
/// for an unknown code, `INTERNAL` when its family refuses the gateway's
/// own request (`GATEWAYS_OWN`), else [`by_http_status`].
pub fn advice(code: &str, http_status: u16) -> (Code, Option<Duration>) {
    if let Some(entry) = lookup(code, http_status) {
        return (entry.grpc, entry.retry_after);
    }
    let family = code.split('.').next().unwrap_or(code);
    if GATEWAYS_OWN.contains(&family) {
        return (Internal, None);
    }
    by_http_status(http_status)
}

/// The longest retry hint the gateway acts on itself, retrying inside the
/// call (with the same ClientToken): codes that clear in seconds. A longer
/// hint (`Throttling`'s five minutes) is the caller's to honour: retrying
/// within the call's few seconds could not succeed and would only add load.
pub const RETRY_WITHIN_CALL: Duration = Duration::from_secs(5);

/// Whether an ECS error is worth another attempt inside the same call.
pub fn retry_within_call(code: &str, http_status: u16) -> bool {
    advice(code, http_status)
        .1
        .is_some_and(|delay| delay <= RETRY_WITHIN_CALL)
}

/// Whether an ECS error says ECS itself failed (rather than the call, the
/// instance or the account): a 5xx that ECS asks to retry. What a circuit
/// breaker counts; `Image.OrderFailed` (500, an order that failed) is not.
pub fn ecs_failed(code: &str, http_status: u16) -> bool {
    http_status >= 500 && advice(code, http_status).1.is_some()
}

/// The catalogue's own spelling of a code ECS answered with, or `None` for
/// a code it does not know: metric labels take only these, so that ECS (or
/// a fake endpoint) cannot grow the label set.
pub fn known(code: &str, http_status: u16) -> Option<&'static str> {
    lookup(code, http_status).map(|entry| entry.code)
}

/// The first row for `code`.
///
/// # Panics
///
/// When `code` is not in the catalogue: callers pass literals, and a test
/// checks every literal the crate uses.
pub fn get(code: &str) -> &'static Entry {
    match CATALOGUE.iter().find(|e| e.code == code) {
        Some(entry) => entry,
        None => panic!("error code {code} is not in the catalogue"),
    }
}

/// The gRPC code and retry advice for a code the catalogue does not know,
/// from ECS's HTTP status alone.
///
/// 403 is `FAILED_PRECONDITION`, not `PERMISSION_DENIED`: the caller was
/// already authorized by the gateway's policies, and of the 31 codes the
/// reference documents with 403, 23 are state errors (the instance, its
/// orders, the account, the region) and one alone (`InvalidIspUID`) is an
/// account's permission; a caller told PERMISSION_DENIED would look for a
/// permission the gateway's policies already gave it. Retrying does not
/// help either way. 401 is the gateway's own credentials.
pub fn by_http_status(http_status: u16) -> (Code, Option<Duration>) {
    match http_status {
        400 => (InvalidArgument, None),
        401 => (Internal, None),
        403 => (FailedPrecondition, None),
        404 => (NotFound, None),
        409 => (Aborted, Some(Duration::from_secs(1))),
        // A rate limit of unknown length: the caller's to back off from, not
        // something to retry within the call.
        429 => (ResourceExhausted, None),
        500..=599 => (Unavailable, Some(Duration::from_secs(1))),
        _ => (Code::Unknown, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn rows_are_unique_and_consistent() {
        let mut seen = HashSet::new();
        for entry in CATALOGUE {
            assert!(
                seen.insert((entry.code, entry.http_status)),
                "duplicate row {} {}",
                entry.code,
                entry.http_status
            );
            assert_ne!(entry.grpc, Code::Ok, "{}", entry.code);
            assert!(!entry.message.is_empty(), "{}", entry.code);
            assert!((400..600).contains(&entry.http_status), "{}", entry.code);
            // A retry hint on a code that tells the caller to change its input
            // would invite a loop.
            if entry.grpc == InvalidArgument || entry.grpc == FailedPrecondition {
                assert!(entry.retry_after.is_none(), "{}", entry.code);
            }
        }
    }

    #[test]
    fn lookup_prefers_the_exact_http_status() {
        assert_eq!(lookup("Throttling", 403).map(|e| e.http_status), Some(403));
        assert_eq!(lookup("Throttling", 400).map(|e| e.http_status), Some(400));
        assert_eq!(lookup("Throttling", 429).map(|e| e.http_status), Some(400));
        assert!(lookup("NoSuchCode", 400).is_none());
    }

    /// INTERNAL hides ECS's message and blames the gateway's set-up: only
    /// the gateway's own credentials, signature, clock and RAM permission
    /// may map to it, never a failure ECS documents for the API.
    #[test]
    fn internal_is_only_the_gateways_own_request() {
        for entry in CATALOGUE.iter().filter(|e| e.grpc == Internal) {
            assert!(
                entry.source == Common
                    || ["GatewayInternalError", "NoPermission.Refund"].contains(&entry.code),
                "{} {} is INTERNAL",
                entry.code,
                entry.http_status
            );
        }
        for code in [
            "IpAllocationError",
            "NAT_PUBLIC_IP_BINDING_FAILED",
            "Mayi.InternalError",
        ] {
            let entry = get(code);
            assert_eq!(entry.grpc, Unavailable, "{code}");
            assert_eq!(
                entry.retry_after,
                get("InternalError").retry_after,
                "{code}"
            );
        }
        assert_eq!(get("Forbidden.RAM").grpc, Internal);
    }

    #[test]
    fn state_errors_are_failed_preconditions() {
        for code in ["InvalidBandwidth.ValueNotSupported", "Image.OrderFailed"] {
            assert_eq!(get(code).grpc, FailedPrecondition, "{code}");
            assert_eq!(get(code).retry_after, None, "{code}");
        }
    }

    #[test]
    fn only_codes_that_clear_in_seconds_are_retried_within_the_call() {
        for (code, status) in [
            ("Throttling", 400),
            ("Throttling", 403),
            ("Image.OrderFailed", 500),
        ] {
            assert!(!retry_within_call(code, status), "{code} {status}");
        }
        for (code, status) in [
            ("InternalError", 500),
            ("ServiceUnavailable", 503),
            ("LastRequestProcessing", 400),
            ("LastOrderProcessing", 400),
            ("TaskConflict", 400),
            ("OperationConflict", 409),
            ("SignatureNonceUsed", 400),
            ("IpAllocationError", 400),
            ("Brand.NewCode", 502),
        ] {
            assert!(retry_within_call(code, status), "{code} {status}");
        }
        assert!(!retry_within_call("Brand.NewCode", 400));
        // An unknown rate limit is the caller's to back off from.
        assert!(!retry_within_call("Throttling.User", 429));
        assert_eq!(advice("Throttling.User", 429), (ResourceExhausted, None));
        // The hint a caller gets for Throttling is ECS's five minutes.
        assert_eq!(
            get("Throttling").retry_after,
            Some(Duration::from_secs(300))
        );
    }

    #[test]
    fn ecs_failures_are_what_a_breaker_counts() {
        assert!(ecs_failed("InternalError", 500));
        assert!(ecs_failed("Brand.NewCode", 503));
        assert!(!ecs_failed("Image.OrderFailed", 500));
        assert!(!ecs_failed("Throttling", 400));
    }

    #[test]
    fn unknown_codes_map_by_http_status() {
        // An unknown 403 is a state error, as most of the reference's are.
        assert_eq!(by_http_status(403), (FailedPrecondition, None));
        assert_eq!(advice("Brand.NewCode", 403).0, FailedPrecondition);
        assert_eq!(by_http_status(404).0, NotFound);
        // Unknown codes of the families that refuse the gateway's own
        // request stay INTERNAL, whatever their HTTP status.
        // ECS answering with a name the gateway uses for its own codes is
        // still ECS: never the gateway's row, and a RAM denial stays hidden.
        assert_eq!(lookup("AccessDenied", 403), None);
        assert_eq!(advice("Unauthenticated.InvalidToken", 401).0, Internal);
        for code in [
            "AccessDenied",
            "Forbidden.AccessKeyDisabled",
            "NoPermission",
            "InvalidSecurityToken.Revoked",
        ] {
            assert_eq!(advice(code, 403), (Internal, None), "{code}");
        }
        assert_eq!(by_http_status(503).0, Unavailable);
        assert!(by_http_status(503).1.is_some());
        assert!(by_http_status(400).1.is_none());
    }
}
