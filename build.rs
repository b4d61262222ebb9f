//! Compiles `proto/` into the `pb` module with tonic-prost-build, nothing else.
//! The vendored `protoc` (and its well-known types) keeps a fresh machine free
//! of system packages.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    let mut config = tonic_prost_build::Config::new();
    config.protoc_executable(protoc_bin_vendored::protoc_bin_path()?);
    let well_known = protoc_bin_vendored::include_path()?;
    tonic_prost_build::configure()
        // The descriptor set feeds gRPC server reflection.
        .file_descriptor_set_path(out_dir.join("ecsgateway_descriptor.bin"))
        .compile_with_config(
            config,
            &[
                PathBuf::from("proto/ecsgateway/v1/instance_network.proto"),
                PathBuf::from("proto/ecsgateway/v1/authorization.proto"),
            ],
            &[PathBuf::from("proto"), well_known],
        )?;
    println!("cargo:rerun-if-changed=proto");
    Ok(())
}
