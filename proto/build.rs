//! Generates the `siaga.v1` bindings with protox: no system `protoc` needed.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = ["proto/siaga/v1/uplink.proto", "proto/siaga/v1/admin.proto"];
    for p in &protos {
        println!("cargo:rerun-if-changed={p}");
    }
    let fds = protox::compile(protos, ["proto"])?;
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    tonic_prost_build::configure()
        .file_descriptor_set_path(out.join("siaga_descriptor.bin"))
        .compile_fds(fds)?;
    Ok(())
}
