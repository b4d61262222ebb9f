use super::*;
use crate::credentials::Secret;
use std::collections::HashMap;

fn load_with(flags: &Flags, vars: &[(&str, &str)]) -> Result<Config, Error> {
    let vars: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| ((*k).into(), (*v).into()))
        .collect();
    load(flags, |k| vars.get(k).cloned())
}

#[test]
fn defaults_without_any_setting() {
    let c = load_with(&Flags::default(), &[]).unwrap();
    assert_eq!(c.listen, DEFAULT_LISTEN.parse().unwrap());
    assert_eq!(c.upstream, upstream::Config::default());
    // The SDKs' last resort: the ECS instance's attached RAM role.
    assert_eq!(
        c.credentials,
        Some(credentials::Config::EcsRamRole(
            credentials::metadata::Config {
                endpoint: "http://100.100.100.200".into(),
                role: None,
                imdsv1_disabled: false,
            }
        ))
    );
    assert_eq!(c.sts, credentials::sts::Config::default());
    assert!(c.accounts.is_empty());
}

/// The first source of the SDKs' chain the settings configure wins:
/// environment, RRSA, file, a named ECS RAM role, a credentials URI, the
/// discovered role; with the metadata server disabled, none.
#[test]
fn the_credential_chain_is_the_sdks_order() {
    let all = [
        ("ALIBABA_CLOUD_ACCESS_KEY_ID", "AK"),
        ("ALIBABA_CLOUD_ACCESS_KEY_SECRET", "S"),
        ("ALIBABA_CLOUD_ROLE_ARN", "acs:ram::1:role/pod"),
        (
            "ALIBABA_CLOUD_OIDC_PROVIDER_ARN",
            "acs:ram::1:oidc-provider/ack",
        ),
        ("ALIBABA_CLOUD_OIDC_TOKEN_FILE", "/token"),
        ("ALIBABA_CLOUD_CREDENTIALS_FILE", "/creds"),
        ("ALIBABA_CLOUD_ECS_METADATA", "node-role"),
        ("ALIBABA_CLOUD_CREDENTIALS_URI", "http://127.0.0.1:9/c"),
    ];
    // Each step leaves out the sources before it.
    let sources: Vec<&str> = [0, 2, 5, 6, 7, 8]
        .into_iter()
        .map(|from| {
            let c = load_with(&Flags::default(), &all[from..]).unwrap();
            c.credentials.map_or("none", |c| c.source())
        })
        .collect();
    assert_eq!(
        sources,
        [
            "environment",
            "rrsa",
            "file",
            "ecs_ram_role",
            "credentials_uri",
            "ecs_ram_role"
        ]
    );
    let off = load_with(
        &Flags::default(),
        &[("ALIBABA_CLOUD_ECS_METADATA_DISABLED", "true")],
    )
    .unwrap();
    assert_eq!(off.credentials, None);
    let named = load_with(
        &Flags::default(),
        &[
            ("ALIBABA_CLOUD_ECS_METADATA", "node-role"),
            ("ALIBABA_CLOUD_IMDSV1_DISABLED", "true"),
            ("ECS_GATEWAY_METADATA_ENDPOINT", "http://127.0.0.1:8080"),
        ],
    )
    .unwrap();
    assert_eq!(
        named.credentials,
        Some(credentials::Config::EcsRamRole(
            credentials::metadata::Config {
                endpoint: "http://127.0.0.1:8080".into(),
                role: Some("node-role".into()),
                imdsv1_disabled: true,
            }
        ))
    );
}

#[test]
fn sts_settings_are_checked() {
    let c = load_with(
        &Flags::default(),
        &[
            ("ALIBABA_CLOUD_STS_REGION", "cn-hangzhou"),
            ("ALIBABA_CLOUD_VPC_ENDPOINT_ENABLED", "true"),
            ("ALIBABA_CLOUD_ROLE_SESSION_NAME", "gw@prod"),
            ("ECS_GATEWAY_CREDENTIALS_SESSION_DURATION", "2h"),
        ],
    )
    .unwrap();
    assert_eq!(c.sts.endpoint, "https://sts-vpc.cn-hangzhou.aliyuncs.com");
    assert_eq!(c.sts.session_name, "gw@prod");
    assert_eq!(c.sts.duration, Duration::from_secs(7200));
    for (var, value) in [
        ("ALIBABA_CLOUD_ROLE_SESSION_NAME", "a b"),
        ("ECS_GATEWAY_CREDENTIALS_SESSION_DURATION", "5m"),
        ("ECS_GATEWAY_CREDENTIALS_SESSION_DURATION", "13h"),
        ("ALIBABA_CLOUD_STS_ENDPOINT", "http://sts.aliyuncs.com"),
        ("ECS_GATEWAY_METADATA_ENDPOINT", "https://100.100.100.200/x"),
        ("ALIBABA_CLOUD_ROLE_ARN", "acs:ram::1:user/pod"),
    ] {
        let err = load_with(&Flags::default(), &[(var, value)])
            .unwrap_err()
            .to_string();
        assert!(err.contains(var), "{var}={value}: {err}");
    }
}

#[test]
fn flags_beat_environment_beat_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gateway.toml");
    std::fs::write(
        &path,
        "listen = \"127.0.0.1:1\"\n[upstream]\nendpoint = \"https://file.example\"\ntimeout = \"1s\"\n\
         connect_timeout = \"250ms\"\n[credentials]\nfile = \"/creds\"\nprofile = \"prod\"\n",
    )
    .unwrap();
    let flags = Flags::default().with(table::CONFIG, path.display().to_string());
    let c = load_with(&flags, &[]).unwrap();
    assert_eq!(c.listen, "127.0.0.1:1".parse().unwrap());
    assert_eq!(c.upstream.endpoint, "https://file.example");
    assert_eq!(c.upstream.timeout, Duration::from_secs(1));
    assert_eq!(c.upstream.connect_timeout, Duration::from_millis(250));
    assert_eq!(
        c.credentials,
        Some(credentials::Config::File {
            path: "/creds".into(),
            profile: "prod".into()
        })
    );

    let env = [
        ("ECS_GATEWAY_LISTEN", "127.0.0.1:2"),
        ("ECS_GATEWAY_UPSTREAM_TIMEOUT", "2s"),
    ];
    let c = load_with(&flags, &env).unwrap();
    assert_eq!(c.listen, "127.0.0.1:2".parse().unwrap());
    assert_eq!(c.upstream.timeout, Duration::from_secs(2));

    let flags = flags
        .with(table::LISTEN, "127.0.0.1:3")
        .with(table::UPSTREAM_TIMEOUT, "3s");
    let c = load_with(&flags, &env).unwrap();
    assert_eq!(c.listen, "127.0.0.1:3".parse().unwrap());
    assert_eq!(c.upstream.timeout, Duration::from_secs(3));
}

#[test]
fn tls_and_a_trusted_forwarded_header_exclude_each_other() {
    let error = load_with(
        &Flags::default(),
        &[
            ("ECS_GATEWAY_TLS_CERT", "/tls/tls.crt"),
            ("ECS_GATEWAY_TLS_KEY", "/tls/tls.key"),
            ("ECS_GATEWAY_TRUST_FORWARDED_CLIENT_CERT", "true"),
        ],
    )
    .unwrap_err();
    assert!(
        error
            .to_string()
            .contains("identity.trust_forwarded_client_cert"),
        "{error}"
    );
}

#[test]
fn errors_name_the_setting() {
    let cases: &[(&[(&str, &str)], &str)] = &[
        (&[("ECS_GATEWAY_LISTEN", "nope")], "ECS_GATEWAY_LISTEN"),
        (
            &[("ECS_GATEWAY_UPSTREAM_TIMEOUT", "soon")],
            "ECS_GATEWAY_UPSTREAM_TIMEOUT",
        ),
        (
            &[("ECS_GATEWAY_UPSTREAM_TIMEOUT", "0s")],
            "greater than zero",
        ),
        (
            &[("ECS_GATEWAY_UPSTREAM_TIMEOUT", "60s")],
            "not shorter than server.request_timeout",
        ),
        (
            // Equal budgets let the server cancel a call, token and
            // all, while ECS is still being called.
            &[
                ("ECS_GATEWAY_UPSTREAM_TIMEOUT", "25s"),
                ("ECS_GATEWAY_REQUEST_TIMEOUT", "30s"),
            ],
            "would not get their client_token back",
        ),
        (
            &[
                ("ECS_GATEWAY_MAX_CONCURRENT_CALLS", "8"),
                ("ECS_GATEWAY_MAX_CONCURRENT_CALLS_PER_CALLER", "9"),
            ],
            "server.max_concurrent_calls_per_caller",
        ),
        (
            &[("ECS_GATEWAY_JWT_JWKS_MAX_AGE", "1s")],
            "shorter than the JWKS refresh interval",
        ),
        (
            &[("ECS_GATEWAY_MAX_CONCURRENT_CALLS", "0")],
            "ECS_GATEWAY_MAX_CONCURRENT_CALLS",
        ),
        (
            &[("ECS_GATEWAY_UPSTREAM_ENDPOINT", "http://ecs.example.com")],
            "loopback",
        ),
        (
            &[("ECS_GATEWAY_UPSTREAM_ENDPOINT", "ftp://127.0.0.1")],
            "scheme ftp",
        ),
        (
            &[("ECS_GATEWAY_UPSTREAM_ENDPOINT", "https://x/?a=1")],
            "query",
        ),
        (
            &[("ALIBABA_CLOUD_ACCESS_KEY_ID", "AK")],
            "ALIBABA_CLOUD_ACCESS_KEY_SECRET",
        ),
        (
            &[("ALIBABA_CLOUD_ACCESS_KEY_SECRET", "s")],
            "ALIBABA_CLOUD_ACCESS_KEY_ID",
        ),
    ];
    for (vars, expected) in cases {
        let err = load_with(&Flags::default(), vars).unwrap_err().to_string();
        assert!(err.contains(expected), "{vars:?}: {err}");
    }
    let flags = Flags::default().with(table::CONFIG, "/nonexistent/gateway.toml");
    assert!(
        load_with(&flags, &[])
            .unwrap_err()
            .to_string()
            .contains("/nonexistent/gateway.toml")
    );
}

#[test]
fn rejects_unknown_and_secret_keys_in_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gateway.toml");
    std::fs::write(&path, "[credentials]\naccess_key_secret = \"hunter2\"\n").unwrap();
    let flags = Flags::default().with(table::CONFIG, path.display().to_string());
    let err = load_with(&flags, &[]).unwrap_err().to_string();
    assert!(
        err.contains("line 2") && err.contains("unknown field"),
        "{err}"
    );
    assert!(!err.contains("hunter2"), "{err}");
}

#[test]
fn environment_key_pair_beats_credentials_file() {
    let env = [
        ("ALIBABA_CLOUD_ACCESS_KEY_ID", "AK"),
        ("ALIBABA_CLOUD_ACCESS_KEY_SECRET", "S"),
        ("ALIBABA_CLOUD_SECURITY_TOKEN", "T"),
        ("ALIBABA_CLOUD_CREDENTIALS_FILE", "/creds"),
    ];
    let c = load_with(&Flags::default(), &env).unwrap();
    let Some(credentials::Config::Static(creds)) = c.credentials else {
        panic!("expected static credentials");
    };
    assert_eq!(creds.access_key_id, "AK");
    assert_eq!(creds.security_token.as_ref().map(Secret::expose), Some("T"));
}

/// Loads a settings file written from `text`.
fn load_file(text: &str) -> Result<Config, Error> {
    let file = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
    std::fs::write(file.path(), text).unwrap();
    let flags = Flags::default().with(table::CONFIG, file.path().display().to_string());
    load_with(&flags, &[])
}

/// A quoted key with a dot would be read as the setting by the key check
/// but not by serde: `[[policy.dependent_actions]]` written that way would
/// be dropped silently, and calls would go ahead without the extra
/// permission. Such keys are refused, and so is a key set twice.
#[test]
fn quoted_dotted_keys_are_refused() {
    let rule = r#"{ action = "ecs:ModifyInstanceNetworkSpec", requires = "ecs:AllocatePublicIpAddress", when = "always" }"#;
    for text in [
        format!("\"policy.dependent_actions\" = [{rule}]\n"),
        "[[\"policy.dependent_actions\"]]\naction = \"ecs:ModifyInstanceNetworkSpec\"\nrequires = \"ecs:AllocatePublicIpAddress\"\n".to_owned(),
        "\"server.max_concurrent_calls\" = 100000\n".to_owned(),
        "[identity]\n\"jwt.issuer\" = \"x\"\n".to_owned(),
    ] {
        let err = load_file(&text).unwrap_err().to_string();
        assert!(err.contains("contain a dot"), "{text}: {err}");
    }
    let nested = format!("[policy]\ndependent_actions = [{rule}]\n");
    assert_eq!(
        load_file(&nested).unwrap().policy.dependent_actions.len(),
        1
    );
}

/// A table no setting lives in is a typo, even when it is empty.
#[test]
fn unknown_tables_are_refused_even_empty() {
    for text in ["[credentails]\n", "[tls.client]\n", "x = {}\n"] {
        let err = load_file(text).unwrap_err().to_string();
        assert!(err.contains("unknown field"), "{text}: {err}");
    }
}

/// The file's values have the setting's TOML type: a boolean is not 0 or
/// "no", a count is not a string, and a number too large is refused rather
/// than capped.
#[test]
fn file_values_have_their_settings_type() {
    for (text, expected) in [
        (
            "[tls]\nrequire_client_cert = 0\n",
            "true or false (without quotes) in the settings file (line 2)",
        ),
        ("[server]\nreflection = \"yes\"\n", "true or false"),
        (
            "[identity]\ntrust_forwarded_client_cert = 1\n",
            "true or false",
        ),
        ("[server]\nmax_concurrent_calls = \"8\"\n", "whole number"),
        ("[upstream]\ntimeout = 10\n", "a string"),
        (
            "[upstream]\nmax_attempts = 4294967296\n",
            "more than 4294967295",
        ),
    ] {
        let err = load_file(text).unwrap_err().to_string();
        assert!(err.contains(expected), "{text}: {err}");
    }
    // The environment's values are text, as ever.
    let c = load_with(&Flags::default(), &[("ECS_GATEWAY_REFLECTION", "yes")]).unwrap();
    assert!(c.server.reflection);
}

/// The lookup's rates are checked when the lookup is off too, so turning it
/// on cannot meet a file that was accepted before.
#[test]
fn lookup_rates_are_checked_while_the_lookup_is_off() {
    let text = "[policy.instance_lookup]\nmax_per_second = 2\nmax_per_second_per_caller = 5\n";
    let err = load_file(text).unwrap_err().to_string();
    assert!(
        err.contains("policy.instance_lookup.max_per_second_per_caller"),
        "{err}"
    );
}
