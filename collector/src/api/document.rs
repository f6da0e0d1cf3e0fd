//! Documents to people (a control card, the register, a work report),
//! streamed in chunks: the first carries what the document is with its size
//! and SHA-256, which the receiver checks before it keeps anything.

use siaga_proto::v1;
use tonic::Status;

/// Bytes of a document per chunk.
pub const CHUNK: usize = 64 * 1024;

pub use siaga_proto::document::{MAX_DOCUMENT_BYTES, ReceiveError, Received, receive};

/// The answer stream of a document RPC.
pub type Stream = tokio_stream::Iter<std::vec::IntoIter<Result<v1::DocumentChunk, Status>>>;

/// `bytes` as chunks, the first with `info` (its size and hash filled in).
pub fn stream(mut info: v1::DocumentInfo, bytes: &[u8]) -> Stream {
    info.bytes = bytes.len() as u64;
    info.sha256 = crate::report::store::sha256(bytes);
    let mut info = Some(info);
    let mut chunks: Vec<Result<v1::DocumentChunk, Status>> = bytes
        .chunks(CHUNK)
        .map(|c| {
            Ok(v1::DocumentChunk {
                info: info.take(),
                data: c.to_vec(),
            })
        })
        .collect();
    if let Some(info) = info {
        // An empty document is its description alone.
        chunks.push(Ok(v1::DocumentChunk {
            info: Some(info),
            data: Vec::new(),
        }));
    }
    tokio_stream::iter(chunks)
}

/// A domain error of the SOP or report code as a gRPC status.
pub fn sop_status(e: crate::sop::api::ApiError) -> Status {
    use crate::sop::api::ApiError as E;
    match e {
        E::BadRequest(m) => Status::invalid_argument(m),
        E::Denied(m) => Status::permission_denied(m),
        E::NotFound(m) => Status::not_found(m),
        E::Internal(m) => {
            crate::api::ApiError::internal("making the document", anyhow::anyhow!(m)).into()
        }
    }
}

/// "id" (default) or "en", as `field` of a request.
pub fn lang(field: &str, v: &str) -> Result<crate::sop::Lang, crate::api::ApiError> {
    match v.trim() {
        "" | "id" => Ok(crate::sop::Lang::Id),
        "en" => Ok(crate::sop::Lang::En),
        other => Err(crate::api::ApiError::invalid(
            field,
            format!("{other:?} is not a language: id (Bahasa Indonesia) or en"),
        )),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use tokio_stream::StreamExt as _;

    #[tokio::test]
    async fn chunks_carry_the_description_once_and_every_byte() {
        let doc: Vec<u8> = (0..(CHUNK * 2 + 10)).map(|i| (i % 251) as u8).collect();
        let info = v1::DocumentInfo {
            format: "pdf".into(),
            ..Default::default()
        };
        let chunks: Vec<_> = stream(info, &doc).collect().await;
        assert_eq!(chunks.len(), 3);
        let chunks: Vec<v1::DocumentChunk> = chunks.into_iter().map(Result::unwrap).collect();
        let first = chunks[0].info.clone().unwrap();
        assert_eq!(first.bytes, doc.len() as u64);
        assert_eq!(first.sha256, crate::report::store::sha256(&doc));
        assert!(chunks[1..].iter().all(|c| c.info.is_none()));
        let all: Vec<u8> = chunks.iter().flat_map(|c| c.data.clone()).collect();
        assert_eq!(all, doc);
        let empty: Vec<_> = stream(v1::DocumentInfo::default(), &[]).collect().await;
        assert_eq!(empty.len(), 1);
    }
}
