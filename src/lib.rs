//! ecs-gateway: a gRPC gateway that lets internal services change an Alibaba
//! Cloud ECS instance's public network (`ModifyInstanceNetworkSpec`) without
//! holding cloud credentials.
//!
//! A call flows through one module per stage, in the order written in
//! [`server`]:
//!
//! 1. [`identity`] and [`admission`] (tower layers): who is calling, then
//!    admission (the message first, then a place per caller and overall);
//! 2. [`validate`]: every documented parameter rule, all violations at once;
//! 3. [`policy`]: Cedar policies that decide as RAM does;
//! 4. [`sign`]: Alibaba Cloud RPC signature V1 with the gateway's
//!    [`credentials`];
//! 5. [`upstream`]: the signed call to the regional ECS endpoint.
//!
//! Each stage owns its error type and knows nothing of gRPC; [`error`] is the
//! one place that turns them into gRPC statuses, with codes fixed by its
//! [`error::catalogue`]. Imports run one way (`.ci/module-cycles.py` checks
//! it). [`simulator`] is a faithful ECS stand-in for tests and the [`demo`];
//! `client` is the `call` command's client; [`cli`] holds every command.
//! The policy authoring and proof tools (`policy_tools`, behind the default
//! `tools` feature) never run on a call.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub(crate) mod account;
pub mod admission;
pub mod cli;
pub(crate) mod client;
pub mod config;
pub mod credentials;
pub mod demo;
pub mod error;
#[doc(hidden)]
pub mod fuzzing;
pub mod identity;
pub mod lookup;
pub mod policy;
#[cfg(feature = "tools")]
pub mod policy_tools;
pub mod server;
pub mod sign;
pub mod simulator;
pub mod telemetry;
pub mod upstream;
pub mod validate;

/// Installs ring as the process's rustls crypto provider. reqwest and tonic
/// are built without a default one (so the build needs no C toolchain for
/// aws-lc); every HTTP client and TLS server calls this first. Later calls
/// find it installed and do nothing.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Code generated from `proto/` by `build.rs`; never edited by hand.
pub mod pb {
    #![allow(missing_docs, clippy::all, clippy::pedantic)]
    tonic::include_proto!("ecsgateway.v1");

    /// The encoded file descriptor set, for gRPC server reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        tonic::include_file_descriptor_set!("ecsgateway_descriptor");
}
