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
pub const CONFIG: Setting = setting("", "ECS_GATEWAY_CONFIG", "--config");
/// The gRPC address.
pub const LISTEN: Setting = setting("listen", "ECS_GATEWAY_LISTEN", "--listen");
/// The admin HTTP address.
pub const ADMIN_LISTEN: Setting =
    setting("admin_listen", "ECS_GATEWAY_ADMIN_LISTEN", "--admin-listen");

/// `upstream.endpoint`.
pub const UPSTREAM_ENDPOINT: Setting = setting(
    "upstream.endpoint",
    "ECS_GATEWAY_UPSTREAM_ENDPOINT",
    "--upstream-endpoint",
);
/// `upstream.timeout`.
pub const UPSTREAM_TIMEOUT: Setting = setting(
    "upstream.timeout",
    "ECS_GATEWAY_UPSTREAM_TIMEOUT",
    "--upstream-timeout",
);
/// `upstream.connect_timeout`.
pub const UPSTREAM_CONNECT_TIMEOUT: Setting = setting(
    "upstream.connect_timeout",
    "ECS_GATEWAY_UPSTREAM_CONNECT_TIMEOUT",
    "",
);
/// `upstream.attempt_timeout`.
pub const UPSTREAM_ATTEMPT_TIMEOUT: Setting = setting(
    "upstream.attempt_timeout",
    "ECS_GATEWAY_UPSTREAM_ATTEMPT_TIMEOUT",
    "",
);
/// `upstream.max_attempts`.
pub const UPSTREAM_MAX_ATTEMPTS: Setting = setting(
    "upstream.max_attempts",
    "ECS_GATEWAY_UPSTREAM_MAX_ATTEMPTS",
    "",
);
/// `upstream.breaker_failures`.
pub const UPSTREAM_BREAKER_FAILURES: Setting = setting(
    "upstream.breaker_failures",
    "ECS_GATEWAY_UPSTREAM_BREAKER_FAILURES",
    "",
);
/// `upstream.breaker_open_for`.
pub const UPSTREAM_BREAKER_OPEN_FOR: Setting = setting(
    "upstream.breaker_open_for",
    "ECS_GATEWAY_UPSTREAM_BREAKER_OPEN_FOR",
    "",
);

/// `server.max_concurrent_calls`.
pub const MAX_CONCURRENT_CALLS: Setting = setting(
    "server.max_concurrent_calls",
    "ECS_GATEWAY_MAX_CONCURRENT_CALLS",
    "",
);
/// `server.max_concurrent_calls_per_caller`.
pub const MAX_CONCURRENT_CALLS_PER_CALLER: Setting = setting(
    "server.max_concurrent_calls_per_caller",
    "ECS_GATEWAY_MAX_CONCURRENT_CALLS_PER_CALLER",
    "",
);
/// `server.max_concurrent_calls_per_unmapped_caller`.
pub const MAX_CONCURRENT_CALLS_PER_UNMAPPED_CALLER: Setting = setting(
    "server.max_concurrent_calls_per_unmapped_caller",
    "ECS_GATEWAY_MAX_CONCURRENT_CALLS_PER_UNMAPPED_CALLER",
    "",
);
/// `server.receive_timeout`.
pub const RECEIVE_TIMEOUT: Setting =
    setting("server.receive_timeout", "ECS_GATEWAY_RECEIVE_TIMEOUT", "");
/// `server.reflection`.
pub const REFLECTION: Setting = setting("server.reflection", "ECS_GATEWAY_REFLECTION", "");
/// `server.max_unauthenticated_streams`.
pub const MAX_UNAUTHENTICATED_STREAMS: Setting = setting(
    "server.max_unauthenticated_streams",
    "ECS_GATEWAY_MAX_UNAUTHENTICATED_STREAMS",
    "",
);
/// `server.max_unauthenticated_streams_per_connection`.
pub const MAX_UNAUTHENTICATED_STREAMS_PER_CONNECTION: Setting = setting(
    "server.max_unauthenticated_streams_per_connection",
    "ECS_GATEWAY_MAX_UNAUTHENTICATED_STREAMS_PER_CONNECTION",
    "",
);
/// `server.unauthenticated_idle_timeout`.
pub const UNAUTHENTICATED_IDLE_TIMEOUT: Setting = setting(
    "server.unauthenticated_idle_timeout",
    "ECS_GATEWAY_UNAUTHENTICATED_IDLE_TIMEOUT",
    "",
);
/// `server.request_timeout`.
pub const REQUEST_TIMEOUT: Setting =
    setting("server.request_timeout", "ECS_GATEWAY_REQUEST_TIMEOUT", "");
/// `server.shutdown_grace`.
pub const SHUTDOWN_GRACE: Setting =
    setting("server.shutdown_grace", "ECS_GATEWAY_SHUTDOWN_GRACE", "");

/// The AccessKey ID (environment only: never in the settings file).
pub const ACCESS_KEY_ID: Setting = setting("", "ALIBABA_CLOUD_ACCESS_KEY_ID", "");
/// The AccessKey secret (environment only).
pub const ACCESS_KEY_SECRET: Setting = setting("", "ALIBABA_CLOUD_ACCESS_KEY_SECRET", "");
/// The STS token of temporary keys (environment only).
pub const SECURITY_TOKEN: Setting = setting("", "ALIBABA_CLOUD_SECURITY_TOKEN", "");
/// `credentials.file`.
pub const CREDENTIALS_FILE: Setting = setting(
    "credentials.file",
    "ALIBABA_CLOUD_CREDENTIALS_FILE",
    "--credentials-file",
);
/// `credentials.profile`.
pub const CREDENTIALS_PROFILE: Setting =
    setting("credentials.profile", "ALIBABA_CLOUD_PROFILE", "");

/// `policy.dir`.
pub const POLICY_DIR: Setting = setting("policy.dir", "ECS_GATEWAY_POLICY_DIR", "--policies");
/// `policy.account_id`.
pub const ACCOUNT_ID: Setting = setting(
    "policy.account_id",
    "ECS_GATEWAY_ACCOUNT_ID",
    "--account-id",
);
/// `[[policy.dependent_actions]]` (the file only: a list of tables).
pub const DEPENDENT_ACTIONS: Setting = setting("policy.dependent_actions", "", "");
/// `policy.shadow_dir`.
pub const SHADOW_DIR: Setting = setting("policy.shadow_dir", "ECS_GATEWAY_POLICY_SHADOW_DIR", "");
/// `policy.instance_lookup.enabled`.
pub const INSTANCE_LOOKUP: Setting = setting(
    "policy.instance_lookup.enabled",
    "ECS_GATEWAY_INSTANCE_LOOKUP",
    "",
);
/// `policy.instance_lookup.ttl`.
pub const INSTANCE_LOOKUP_TTL: Setting = setting(
    "policy.instance_lookup.ttl",
    "ECS_GATEWAY_INSTANCE_LOOKUP_TTL",
    "",
);
/// `policy.instance_lookup.max_instances`.
pub const INSTANCE_LOOKUP_MAX_INSTANCES: Setting = setting(
    "policy.instance_lookup.max_instances",
    "ECS_GATEWAY_INSTANCE_LOOKUP_MAX_INSTANCES",
    "",
);
/// `policy.instance_lookup.max_per_second`.
pub const INSTANCE_LOOKUP_MAX_PER_SECOND: Setting = setting(
    "policy.instance_lookup.max_per_second",
    "ECS_GATEWAY_INSTANCE_LOOKUP_MAX_PER_SECOND",
    "",
);
/// `policy.instance_lookup.max_per_second_per_caller`.
pub const INSTANCE_LOOKUP_MAX_PER_SECOND_PER_CALLER: Setting = setting(
    "policy.instance_lookup.max_per_second_per_caller",
    "ECS_GATEWAY_INSTANCE_LOOKUP_MAX_PER_SECOND_PER_CALLER",
    "",
);

/// `tls.cert`.
pub const TLS_CERT: Setting = setting("tls.cert", "ECS_GATEWAY_TLS_CERT", "");
/// `tls.key`.
pub const TLS_KEY: Setting = setting("tls.key", "ECS_GATEWAY_TLS_KEY", "");
/// `tls.client_ca`.
pub const TLS_CLIENT_CA: Setting = setting("tls.client_ca", "ECS_GATEWAY_TLS_CLIENT_CA", "");
/// `tls.require_client_cert`.
pub const TLS_REQUIRE_CLIENT_CERT: Setting = setting(
    "tls.require_client_cert",
    "ECS_GATEWAY_TLS_REQUIRE_CLIENT_CERT",
    "",
);

/// `identity.trust_forwarded_client_cert`.
pub const TRUST_FORWARDED_CLIENT_CERT: Setting = setting(
    "identity.trust_forwarded_client_cert",
    "ECS_GATEWAY_TRUST_FORWARDED_CLIENT_CERT",
    "",
);
/// `identity.source_address_header`.
pub const SOURCE_ADDRESS_HEADER: Setting = setting(
    "identity.source_address_header",
    "ECS_GATEWAY_SOURCE_ADDRESS_HEADER",
    "",
);
/// `identity.jwt.issuer`.
pub const JWT_ISSUER: Setting = setting("identity.jwt.issuer", "ECS_GATEWAY_JWT_ISSUER", "");
/// `identity.jwt.audience`.
pub const JWT_AUDIENCE: Setting = setting("identity.jwt.audience", "ECS_GATEWAY_JWT_AUDIENCE", "");
/// `identity.jwt.jwks_file`.
pub const JWT_JWKS_FILE: Setting =
    setting("identity.jwt.jwks_file", "ECS_GATEWAY_JWT_JWKS_FILE", "");
/// `identity.jwt.jwks_url`.
pub const JWT_JWKS_URL: Setting = setting("identity.jwt.jwks_url", "ECS_GATEWAY_JWT_JWKS_URL", "");
/// `identity.jwt.leeway`.
pub const JWT_LEEWAY: Setting = setting("identity.jwt.leeway", "ECS_GATEWAY_JWT_LEEWAY", "");
/// `identity.jwt.jwks_refresh`.
pub const JWT_JWKS_REFRESH: Setting = setting(
    "identity.jwt.jwks_refresh",
    "ECS_GATEWAY_JWT_JWKS_REFRESH",
    "",
);
/// `identity.jwt.jwks_max_age`.
pub const JWT_JWKS_MAX_AGE: Setting = setting(
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
    MAX_CONCURRENT_CALLS,
    MAX_CONCURRENT_CALLS_PER_CALLER,
    MAX_CONCURRENT_CALLS_PER_UNMAPPED_CALLER,
    RECEIVE_TIMEOUT,
    REFLECTION,
    MAX_UNAUTHENTICATED_STREAMS,
    MAX_UNAUTHENTICATED_STREAMS_PER_CONNECTION,
    UNAUTHENTICATED_IDLE_TIMEOUT,
    REQUEST_TIMEOUT,
    SHUTDOWN_GRACE,
    ACCESS_KEY_ID,
    ACCESS_KEY_SECRET,
    SECURITY_TOKEN,
    CREDENTIALS_FILE,
    CREDENTIALS_PROFILE,
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
