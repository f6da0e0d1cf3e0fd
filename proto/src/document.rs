//! Receiving a document (a control card, the register, a work report)
//! streamed in chunks: the first says what it is with its size and SHA-256,
//! checked before anything is kept.

use sha2::{Digest as _, Sha256};
use tonic::Status;

use crate::v1;

/// The most a client takes of one document (a register of years of tickets
/// as xlsx stays far below): a collector that sends more is refused.
pub const MAX_DOCUMENT_BYTES: u64 = 256 * 1024 * 1024;

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
    if hex::encode(Sha256::digest(&bytes)) != info.sha256 {
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
