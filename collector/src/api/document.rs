//! Documents to people (a control card, the register, a work report),
//! streamed in chunks: the first carries what the document is with its size
//! and SHA-256, which the receiver checks before it keeps anything.

use siaga_proto::v1;
use tonic::Status;

/// Bytes of a document per chunk.
pub const CHUNK: usize = 64 * 1024;

/// The most a client takes of one document (a register of years of tickets
/// as xlsx stays far below): a collector that sends more is refused.
pub const MAX_DOCUMENT_BYTES: u64 = 256 * 1024 * 1024;

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

/// A received document: what it is and its bytes, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    /// From the first chunk.
    pub info: v1::DocumentInfo,
    /// All of it.
    pub bytes: Vec<u8>,
}

/// Reads a document stream to its end: refused when the first chunk does
/// not say what it is, when it is over [`MAX_DOCUMENT_BYTES`] or longer
/// than it said, or when its size or SHA-256 does not match.
pub async fn receive(mut s: tonic::Streaming<v1::DocumentChunk>) -> Result<Received, ReceiveError> {
    let mut info: Option<v1::DocumentInfo> = None;
    let mut bytes = Vec::new();
    while let Some(c) = s.message().await.map_err(ReceiveError::Status)? {
        match (&info, c.info) {
            (None, Some(i)) => {
                if i.bytes > MAX_DOCUMENT_BYTES {
                    return Err(ReceiveError::Bad(format!(
                        "the collector announced a document of {} bytes, more than the {} this \
                         siaga takes",
                        i.bytes, MAX_DOCUMENT_BYTES
                    )));
                }
                bytes.reserve(usize::try_from(i.bytes).unwrap_or(0));
                info = Some(i);
            }
            (None, None) => {
                return Err(ReceiveError::Bad(
                    "the collector sent a document without saying what it is".into(),
                ));
            }
            (Some(_), Some(_)) => {
                return Err(ReceiveError::Bad(
                    "the collector described one document twice".into(),
                ));
            }
            (Some(_), None) => {}
        }
        let announced = info.as_ref().map_or(0, |i| i.bytes);
        if (bytes.len() + c.data.len()) as u64 > announced {
            return Err(ReceiveError::Bad(format!(
                "the collector sent more than the {announced} bytes it announced"
            )));
        }
        bytes.extend_from_slice(&c.data);
    }
    let info = info.ok_or_else(|| ReceiveError::Bad("the collector sent no document".into()))?;
    if bytes.len() as u64 != info.bytes {
        return Err(ReceiveError::Bad(format!(
            "the document ended after {} of its {} bytes; try again",
            bytes.len(),
            info.bytes
        )));
    }
    if crate::report::store::sha256(&bytes) != info.sha256 {
        return Err(ReceiveError::Bad(
            "the document from the collector does not match its sha256".into(),
        ));
    }
    Ok(Received { info, bytes })
}

/// Why [`receive`] failed.
#[derive(Debug, thiserror::Error)]
pub enum ReceiveError {
    /// The call failed.
    #[error("{0}")]
    Status(Status),
    /// The stream is not a sound document.
    #[error("{0}")]
    Bad(String),
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
