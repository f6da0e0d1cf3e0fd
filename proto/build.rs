//! Generates the `siaga.v1` bindings with protox (no system `protoc`
//! needed), and their proto3 JSON mapping with pbjson (field names kept as
//! in the .proto files, so `--json` keys read like the proto comments).

use std::path::PathBuf;

/// The people's services, one file per concern, beside the agents' uplink.
/// Every service decodes with the strict codec (a malformed message is the
/// sender's fault: `INVALID_ARGUMENT`).
const PEOPLE: [&str; 10] = [
    "admin",
    "discovery",
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
    let mut protos = vec![
        "proto/siaga/v1/uplink.proto".to_string(),
        "proto/siaga/v1/words.proto".to_string(),
    ];
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
    lenient_enums(&out.join("siaga.v1.serde.rs"))?;
    Ok(())
}

/// pbjson refuses to print an enum value it does not know ("Invalid
/// variant 7"), so an older `siaga` would fail on every `--json` answer of a
/// newer collector that added a state. Rewrites each such refusal to print
/// the enum's zero value (unspecified) instead, see `words::unspecified`.
/// Fails the build when pbjson's text no longer matches, rather than
/// silently losing the rewrite.
fn lenient_enums(path: &std::path::Path) -> Result<(), Box<dyn std::error::Error>> {
    const REFUSAL: &str = ".map_err(|_| serde::ser::Error::custom(format!(\"Invalid variant {}\", ";
    let text = std::fs::read_to_string(path)?;
    let mut out = String::with_capacity(text.len());
    let mut rest = text.as_str();
    let mut rewritten = 0;
    while let Some(at) = rest.find(REFUSAL) {
        out.push_str(&rest[..at]);
        let after = &rest[at + REFUSAL.len()..];
        let end = after
            .find(")))")
            .ok_or("pbjson: unterminated enum refusal")?;
        let value = &after[..end];
        out.push_str(&format!(
            ".or_else(|_| crate::words::unspecified::<_, S::Error>({value}))"
        ));
        rest = &after[end + 3..];
        rewritten += 1;
    }
    out.push_str(rest);
    if rewritten == 0 {
        return Err("pbjson: no enum refusal found to make lenient".into());
    }
    std::fs::write(path, out)?;
    Ok(())
}
