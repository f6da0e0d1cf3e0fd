//! Generates the `siaga.v1` bindings with protox (no system `protoc`
//! needed), and their proto3 JSON mapping with pbjson (field names kept as
//! in the .proto files, so `--json` keys read like the proto comments).

use std::path::PathBuf;

/// The people's services, one file per concern, beside the agents' uplink.
/// Every service decodes with the strict codec (a malformed message is the
/// sender's fault: `INVALID_ARGUMENT`).
const PEOPLE: [&str; 9] = [
    "admin",
    "devices",
    "events",
    "tickets",
    "sop",
    "documents",
    "measure",
    "reports",
    "users",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut protos = vec!["proto/siaga/v1/uplink.proto".to_string()];
    protos.extend(PEOPLE.iter().map(|p| format!("proto/siaga/v1/{p}.proto")));
    for p in &protos {
        println!("cargo:rerun-if-changed={p}");
    }
    let fds = protox::compile(&protos, ["proto"])?;
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    // pbjson reads the descriptors (compile_fds does not write them).
    let bytes = prost::Message::encode_to_vec(&fds);
    std::fs::write(out.join("siaga_descriptor.bin"), &bytes)?;
    tonic_prost_build::configure()
        .compile_well_known_types(true)
        .extern_path(".google.protobuf", "::pbjson_types")
        .codec_path("crate::codec::StrictCodec")
        .compile_fds(fds)?;
    pbjson_build::Builder::new()
        .register_descriptors(&bytes)?
        .preserve_proto_field_names()
        .build(&[".siaga"])?;
    Ok(())
}
