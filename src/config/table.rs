//! Every setting's names: its settings-file key, environment variable and
//! `serve` flag. Adding a setting is a row here, a field in its stage's
//! `Config` (with its default), one line in `config/sections.rs` and a row in
//! `docs/operations.md` (a test checks that every row here is there).
//!
//! Long because: it is the table of every setting, one row each.

/// A setting's names. An empty string: the setting has no such name (no
/// flag, or a secret that is never a file key).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Setting {
    /// The settings file's key, dotted (`server.request_timeout`).
    pub key: &'static str,
    /// The environment variable.
    pub var: &'static str,
    /// `serve`'s command-line flag.
    pub flag: &'static str,
}

const fn setting(key: &'static str, var: &'static str, flag: &'static str) -> Setting {
    Setting { key, var, flag }
}

/// The settings file itself.
pub(crate) const CONFIG: Setting = setting("", "ECS_GATEWAY_CONFIG", "--config");
/// The gRPC address.
pub(crate) const LISTEN: Setting = setting("listen", "ECS_GATEWAY_LISTEN", "--listen");
/// The admin HTTP address.
pub(crate) const ADMIN_LISTEN: Setting =
    setting("admin_listen", "ECS_GATEWAY_ADMIN_LISTEN", "--admin-listen");

pub(crate) const UPSTREAM_ENDPOINT: Setting = setting(
    "upstream.endpoint",
    "ECS_GATEWAY_UPSTREAM_ENDPOINT",
    "--upstream-endpoint",
);
pub(crate) const UPSTREAM_TIMEOUT: Setting = setting(
    "upstream.timeout",
    "ECS_GATEWAY_UPSTREAM_TIMEOUT",
    "--upstream-timeout",
);
pub(crate) const UPSTREAM_CONNECT_TIMEOUT: Setting = setting(
    "upstream.connect_timeout",
    "ECS_GATEWAY_UPSTREAM_CONNECT_TIMEOUT",
    "",
);
pub(crate) const UPSTREAM_ATTEMPT_TIMEOUT: Setting = setting(
    "upstream.attempt_timeout",
    "ECS_GATEWAY_UPSTREAM_ATTEMPT_TIMEOUT",
    "",
);
pub(crate) const UPSTREAM_MAX_ATTEMPTS: Setting = setting(
    "upstream.max_attempts",
    "ECS_GATEWAY_UPSTREAM_MAX_ATTEMPTS",
    "",
);
pub(crate) const UPSTREAM_BREAKER_FAILURES: Setting = setting(
    "upstream.breaker_failures",
    "ECS_GATEWAY_UPSTREAM_BREAKER_FAILURES",
    "",
);
pub(crate) const UPSTREAM_BREAKER_OPEN_FOR: Setting = setting(
    "upstream.breaker_open_for",
    "ECS_GATEWAY_UPSTREAM_BREAKER_OPEN_FOR",
    "",
);

pub(crate) const MAX_CONCURRENT_CALLS: Setting = setting(
    "server.max_concurrent_calls",
    "ECS_GATEWAY_MAX_CONCURRENT_CALLS",
    "",
);
pub(crate) const MAX_CONCURRENT_CALLS_PER_CALLER: Setting = setting(
    "server.max_concurrent_calls_per_caller",
    "ECS_GATEWAY_MAX_CONCURRENT_CALLS_PER_CALLER",
    "",
);
pub(crate) const MAX_CONCURRENT_CALLS_PER_UNMAPPED_CALLER: Setting = setting(
    "server.max_concurrent_calls_per_unmapped_caller",
    "ECS_GATEWAY_MAX_CONCURRENT_CALLS_PER_UNMAPPED_CALLER",
    "",
);
pub(crate) const RECEIVE_TIMEOUT: Setting =
    setting("server.receive_timeout", "ECS_GATEWAY_RECEIVE_TIMEOUT", "");
pub(crate) const REFLECTION: Setting = setting("server.reflection", "ECS_GATEWAY_REFLECTION", "");
pub(crate) const MAX_UNAUTHENTICATED_STREAMS: Setting = setting(
    "server.max_unauthenticated_streams",
    "ECS_GATEWAY_MAX_UNAUTHENTICATED_STREAMS",
    "",
);
pub(crate) const MAX_UNAUTHENTICATED_STREAMS_PER_CONNECTION: Setting = setting(
    "server.max_unauthenticated_streams_per_connection",
    "ECS_GATEWAY_MAX_UNAUTHENTICATED_STREAMS_PER_CONNECTION",
    "",
);
pub(crate) const UNAUTHENTICATED_IDLE_TIMEOUT: Setting = setting(
    "server.unauthenticated_idle_timeout",
    "ECS_GATEWAY_UNAUTHENTICATED_IDLE_TIMEOUT",
    "",
);
pub(crate) const REQUEST_TIMEOUT: Setting =
    setting("server.request_timeout", "ECS_GATEWAY_REQUEST_TIMEOUT", "");
pub(crate) const SHUTDOWN_GRACE: Setting =
    setting("server.shutdown_grace", "ECS_GATEWAY_SHUTDOWN_GRACE", "");

/// The AccessKey ID (environment only: never in the settings file).
pub(crate) const ACCESS_KEY_ID: Setting = setting("", "ALIBABA_CLOUD_ACCESS_KEY_ID", "");
/// The AccessKey secret (environment only).
pub(crate) const ACCESS_KEY_SECRET: Setting = setting("", "ALIBABA_CLOUD_ACCESS_KEY_SECRET", "");
/// The STS token of temporary keys (environment only).
pub(crate) const SECURITY_TOKEN: Setting = setting("", "ALIBABA_CLOUD_SECURITY_TOKEN", "");
pub(crate) const CREDENTIALS_FILE: Setting = setting(
    "credentials.file",
    "ALIBABA_CLOUD_CREDENTIALS_FILE",
    "--credentials-file",
);
pub(crate) const CREDENTIALS_PROFILE: Setting =
    setting("credentials.profile", "ALIBABA_CLOUD_PROFILE", "");
/// RRSA: the role, the OIDC provider and the token file (all three).
pub(crate) const ROLE_ARN: Setting = setting("credentials.role_arn", "ALIBABA_CLOUD_ROLE_ARN", "");
pub(crate) const OIDC_PROVIDER_ARN: Setting = setting(
    "credentials.oidc_provider_arn",
    "ALIBABA_CLOUD_OIDC_PROVIDER_ARN",
    "",
);
pub(crate) const OIDC_TOKEN_FILE: Setting = setting(
    "credentials.oidc_token_file",
    "ALIBABA_CLOUD_OIDC_TOKEN_FILE",
    "",
);
pub(crate) const ROLE_SESSION_NAME: Setting = setting(
    "credentials.role_session_name",
    "ALIBABA_CLOUD_ROLE_SESSION_NAME",
    "",
);
pub(crate) const SESSION_DURATION: Setting = setting(
    "credentials.session_duration",
    "ECS_GATEWAY_CREDENTIALS_SESSION_DURATION",
    "",
);
pub(crate) const SESSIONS_PER_CALLER: Setting = setting(
    "credentials.session_name_from_caller",
    "ECS_GATEWAY_SESSION_NAME_FROM_CALLER",
    "",
);
pub(crate) const ECS_RAM_ROLE: Setting =
    setting("credentials.ecs_ram_role", "ALIBABA_CLOUD_ECS_METADATA", "");
pub(crate) const ECS_METADATA_DISABLED: Setting = setting(
    "credentials.ecs_metadata_disabled",
    "ALIBABA_CLOUD_ECS_METADATA_DISABLED",
    "",
);
pub(crate) const IMDSV1_DISABLED: Setting = setting(
    "credentials.imdsv1_disabled",
    "ALIBABA_CLOUD_IMDSV1_DISABLED",
    "",
);
pub(crate) const METADATA_ENDPOINT: Setting = setting(
    "credentials.metadata_endpoint",
    "ECS_GATEWAY_METADATA_ENDPOINT",
    "",
);
/// A credentials URI (environment only: its query may hold a secret).
pub(crate) const CREDENTIALS_URI: Setting = setting("", "ALIBABA_CLOUD_CREDENTIALS_URI", "");
pub(crate) const STS_ENDPOINT: Setting =
    setting("credentials.sts_endpoint", "ALIBABA_CLOUD_STS_ENDPOINT", "");
pub(crate) const STS_REGION: Setting =
    setting("credentials.sts_region", "ALIBABA_CLOUD_STS_REGION", "");
pub(crate) const VPC_ENDPOINT: Setting = setting(
    "credentials.vpc_endpoint",
    "ALIBABA_CLOUD_VPC_ENDPOINT_ENABLED",
    "",
);
/// `[[accounts]]` (the file only: a list of tables).
pub(crate) const ACCOUNTS: Setting = setting("accounts", "", "");

pub(crate) const POLICY_DIR: Setting =
    setting("policy.dir", "ECS_GATEWAY_POLICY_DIR", "--policies");
pub(crate) const ACCOUNT_ID: Setting = setting(
    "policy.account_id",
    "ECS_GATEWAY_ACCOUNT_ID",
    "--account-id",
);
/// `[[policy.dependent_actions]]` (the file only: a list of tables).
pub(crate) const DEPENDENT_ACTIONS: Setting = setting("policy.dependent_actions", "", "");
pub(crate) const SHADOW_DIR: Setting =
    setting("policy.shadow_dir", "ECS_GATEWAY_POLICY_SHADOW_DIR", "");
pub(crate) const INSTANCE_LOOKUP: Setting = setting(
    "policy.instance_lookup.enabled",
    "ECS_GATEWAY_INSTANCE_LOOKUP",
    "",
);
pub(crate) const INSTANCE_LOOKUP_TTL: Setting = setting(
    "policy.instance_lookup.ttl",
    "ECS_GATEWAY_INSTANCE_LOOKUP_TTL",
    "",
);
pub(crate) const INSTANCE_LOOKUP_MAX_INSTANCES: Setting = setting(
    "policy.instance_lookup.max_instances",
    "ECS_GATEWAY_INSTANCE_LOOKUP_MAX_INSTANCES",
    "",
);
pub(crate) const INSTANCE_LOOKUP_MAX_PER_SECOND: Setting = setting(
    "policy.instance_lookup.max_per_second",
    "ECS_GATEWAY_INSTANCE_LOOKUP_MAX_PER_SECOND",
    "",
);
pub(crate) const INSTANCE_LOOKUP_MAX_PER_SECOND_PER_CALLER: Setting = setting(
    "policy.instance_lookup.max_per_second_per_caller",
    "ECS_GATEWAY_INSTANCE_LOOKUP_MAX_PER_SECOND_PER_CALLER",
    "",
);

pub(crate) const TLS_CERT: Setting = setting("tls.cert", "ECS_GATEWAY_TLS_CERT", "");
pub(crate) const TLS_KEY: Setting = setting("tls.key", "ECS_GATEWAY_TLS_KEY", "");
pub(crate) const TLS_CLIENT_CA: Setting = setting("tls.client_ca", "ECS_GATEWAY_TLS_CLIENT_CA", "");
pub(crate) const TLS_REQUIRE_CLIENT_CERT: Setting = setting(
    "tls.require_client_cert",
    "ECS_GATEWAY_TLS_REQUIRE_CLIENT_CERT",
    "",
);

pub(crate) const TRUST_FORWARDED_CLIENT_CERT: Setting = setting(
    "identity.trust_forwarded_client_cert",
    "ECS_GATEWAY_TRUST_FORWARDED_CLIENT_CERT",
    "",
);
pub(crate) const SOURCE_ADDRESS_HEADER: Setting = setting(
    "identity.source_address_header",
    "ECS_GATEWAY_SOURCE_ADDRESS_HEADER",
    "",
);
pub(crate) const JWT_ISSUER: Setting = setting("identity.jwt.issuer", "ECS_GATEWAY_JWT_ISSUER", "");
pub(crate) const JWT_AUDIENCE: Setting =
    setting("identity.jwt.audience", "ECS_GATEWAY_JWT_AUDIENCE", "");
pub(crate) const JWT_JWKS_FILE: Setting =
    setting("identity.jwt.jwks_file", "ECS_GATEWAY_JWT_JWKS_FILE", "");
pub(crate) const JWT_JWKS_URL: Setting =
    setting("identity.jwt.jwks_url", "ECS_GATEWAY_JWT_JWKS_URL", "");
pub(crate) const JWT_LEEWAY: Setting = setting("identity.jwt.leeway", "ECS_GATEWAY_JWT_LEEWAY", "");
pub(crate) const JWT_JWKS_REFRESH: Setting = setting(
    "identity.jwt.jwks_refresh",
    "ECS_GATEWAY_JWT_JWKS_REFRESH",
    "",
);
pub(crate) const JWT_JWKS_MAX_AGE: Setting = setting(
    "identity.jwt.jwks_max_age",
    "ECS_GATEWAY_JWT_JWKS_MAX_AGE",
    "",
);

/// Every setting, in the order `serve --check` prints them.
pub const ALL: &[Setting] = &[
    CONFIG,
    LISTEN,
    ADMIN_LISTEN,
    UPSTREAM_ENDPOINT,
    UPSTREAM_TIMEOUT,
    UPSTREAM_CONNECT_TIMEOUT,
    UPSTREAM_ATTEMPT_TIMEOUT,
    UPSTREAM_MAX_ATTEMPTS,
    UPSTREAM_BREAKER_FAILURES,
    UPSTREAM_BREAKER_OPEN_FOR,
    REFLECTION,
    REQUEST_TIMEOUT,
    SHUTDOWN_GRACE,
    MAX_CONCURRENT_CALLS,
    MAX_CONCURRENT_CALLS_PER_CALLER,
    MAX_CONCURRENT_CALLS_PER_UNMAPPED_CALLER,
    RECEIVE_TIMEOUT,
    MAX_UNAUTHENTICATED_STREAMS,
    MAX_UNAUTHENTICATED_STREAMS_PER_CONNECTION,
    UNAUTHENTICATED_IDLE_TIMEOUT,
    ACCESS_KEY_ID,
    ACCESS_KEY_SECRET,
    SECURITY_TOKEN,
    CREDENTIALS_FILE,
    CREDENTIALS_PROFILE,
    ROLE_ARN,
    OIDC_PROVIDER_ARN,
    OIDC_TOKEN_FILE,
    ROLE_SESSION_NAME,
    SESSION_DURATION,
    SESSIONS_PER_CALLER,
    ECS_RAM_ROLE,
    ECS_METADATA_DISABLED,
    IMDSV1_DISABLED,
    METADATA_ENDPOINT,
    CREDENTIALS_URI,
    STS_ENDPOINT,
    STS_REGION,
    VPC_ENDPOINT,
    ACCOUNTS,
    POLICY_DIR,
    ACCOUNT_ID,
    DEPENDENT_ACTIONS,
    SHADOW_DIR,
    INSTANCE_LOOKUP,
    INSTANCE_LOOKUP_TTL,
    INSTANCE_LOOKUP_MAX_INSTANCES,
    INSTANCE_LOOKUP_MAX_PER_SECOND,
    INSTANCE_LOOKUP_MAX_PER_SECOND_PER_CALLER,
    TLS_CERT,
    TLS_KEY,
    TLS_CLIENT_CA,
    TLS_REQUIRE_CLIENT_CERT,
    TRUST_FORWARDED_CLIENT_CERT,
    SOURCE_ADDRESS_HEADER,
    JWT_ISSUER,
    JWT_AUDIENCE,
    JWT_JWKS_FILE,
    JWT_JWKS_URL,
    JWT_LEEWAY,
    JWT_JWKS_REFRESH,
    JWT_JWKS_MAX_AGE,
];

/// The setting a flag of `serve` sets.
pub fn by_flag(flag: &str) -> Option<&'static Setting> {
    ALL.iter().find(|s| !s.flag.is_empty() && s.flag == flag)
}
