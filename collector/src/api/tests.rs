//! The gate and the codec against a real in-process collector.

use bytes::{Buf, BufMut};
use tonic::Code;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::transport::Channel;

use super::testing::{Fixture, OWN};

/// Sends and receives raw bytes: requests a typed client cannot make.
#[derive(Debug, Clone, Default)]
struct Raw;

impl Codec for Raw {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = Raw;
    type Decoder = Raw;
    fn encoder(&mut self) -> Raw {
        Raw
    }
    fn decoder(&mut self) -> Raw {
        Raw
    }
}

impl Encoder for Raw {
    type Item = Vec<u8>;
    type Error = tonic::Status;
    fn encode(&mut self, item: Vec<u8>, dst: &mut EncodeBuf<'_>) -> Result<(), tonic::Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for Raw {
    type Item = Vec<u8>;
    type Error = tonic::Status;
    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Vec<u8>>, tonic::Status> {
        Ok(Some(src.copy_to_bytes(src.remaining()).to_vec()))
    }
}

async fn raw(ch: Channel, path: &'static str, body: Vec<u8>) -> Result<Vec<u8>, tonic::Status> {
    let mut grpc = tonic::client::Grpc::new(ch).max_encoding_message_size(64 << 20);
    grpc.ready()
        .await
        .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
    grpc.unary(
        tonic::Request::new(body),
        http::uri::PathAndQuery::from_static(path),
        Raw,
    )
    .await
    .map(tonic::Response::into_inner)
}

/// A protobuf field 1 of wire type 2 (a string) holding `bytes`.
fn string_field(bytes: &[u8]) -> Vec<u8> {
    let mut v = vec![0x0a];
    let mut n = bytes.len();
    loop {
        let b = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            v.push(b);
            break;
        }
        v.push(b | 0x80);
    }
    v.extend_from_slice(bytes);
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_or_oversized_request_is_the_callers_error_and_the_collector_goes_on() {
    let f = Fixture::start().await;
    // Invalid UTF-8 in a string field: INVALID_ARGUMENT, not INTERNAL.
    let e = raw(
        f.as_role("helpdesk"),
        "/siaga.v1.Devices/ListDevices",
        string_field(&[0xff, 0xfe, b'a']),
    )
    .await
    .expect_err("invalid UTF-8 accepted");
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    assert!(
        e.message().contains("ListDevicesRequest"),
        "{}",
        e.message()
    );
    // A truncated message, too.
    let e = raw(
        f.as_role("helpdesk"),
        "/siaga.v1.Devices/ListDevices",
        vec![0x0a, 0x10, b'a'],
    )
    .await
    .expect_err("truncated message accepted");
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    // 15 MB in one field: refused before it is decoded.
    let e = raw(
        f.as_role("helpdesk"),
        "/siaga.v1.Devices/ListDevices",
        string_field(&vec![b'x'; 15 << 20]),
    )
    .await
    .expect_err("15 MB request accepted");
    assert!(
        matches!(e.code(), Code::OutOfRange | Code::ResourceExhausted),
        "{e:?}"
    );
    // And everyone is still served.
    let mut c = siaga_proto::v1::admin_client::AdminClient::new(f.as_role("pemohon"));
    let me = c
        .who_am_i(siaga_proto::v1::WhoAmIRequest {})
        .await
        .expect("whoami after the refusals")
        .into_inner();
    assert_eq!(me.user, "opd");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_changing_calls_are_in_the_api_audit_trail_with_user_opd_rpc_and_outcome() {
    let f = Fixture::start().await;
    let mut c = siaga_proto::v1::admin_client::AdminClient::new(f.as_role("pemohon"));
    // A refused change: a requester voids a ticket that is not there.
    let e = siaga_proto::v1::tickets_client::TicketsClient::new(f.as_role("pemohon"))
        .void_ticket(siaga_proto::v1::VoidTicketRequest {
            id: "PJ-2026-0001".into(),
            reason: "salah".into(),
        })
        .await
        .expect_err("a pemohon voided a ticket");
    assert_eq!(e.code(), Code::NotFound);
    // A read is not audited.
    c.who_am_i(siaga_proto::v1::WhoAmIRequest {})
        .await
        .expect("whoami");
    // The record is on disk before the caller hears the answer: read at once.
    let file = f.data_dir().join(super::gate::AUDIT_FILE);
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&file)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("a JSON line"))
        .collect();
    assert_eq!(lines.len(), 1, "{lines:?}");
    let r = &lines[0];
    assert_eq!(r["user"], "opd");
    assert_eq!(r["opd"], OWN);
    assert_eq!(r["rpc"], "/siaga.v1.Tickets/VoidTicket");
    let outcome = r["outcome"].as_str().unwrap_or_default();
    assert!(
        outcome.starts_with(&format!("{:?}", e.code())),
        "{outcome} vs {e:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_role_the_table_refuses_is_refused_before_the_handler() {
    let f = Fixture::start().await;
    for role in ["pemohon", "helpdesk", "kepala_dinas"] {
        let mut c = siaga_proto::v1::admin_client::AdminClient::new(f.as_role(role));
        let e = c
            .backup(siaga_proto::v1::BackupRequest {})
            .await
            .expect_err("backup for a non-admin");
        assert_eq!(e.code(), Code::PermissionDenied, "{role}: {e:?}");
        assert!(
            e.message().contains("Admin/Backup is for admin"),
            "{}",
            e.message()
        );
    }
    let mut c = siaga_proto::v1::admin_client::AdminClient::new(f.as_role("admin"));
    let mut s = c
        .backup(siaga_proto::v1::BackupRequest {})
        .await
        .expect("backup for the admin")
        .into_inner();
    assert!(s.message().await.expect("a chunk").is_some());
}
