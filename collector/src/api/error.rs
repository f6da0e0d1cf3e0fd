//! The one error type of the people's API and its mapping to gRPC codes.

use tonic::{Code, Status};

/// Why a call did not do what was asked. Every handler returns this; the
/// client maps the code to its exit code (see the CLI's `EXIT CODES`).
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The caller's role does not allow it (`PERMISSION_DENIED`).
    #[error("{0}")]
    Denied(String),
    /// No such object, or one the caller may not see (`NOT_FOUND`): another
    /// OPD's ticket answers this too, so its existence is not confirmed.
    #[error("{0}")]
    NotFound(String),
    /// A field of the request is wrong (`INVALID_ARGUMENT`); names the field.
    #[error("{field}: {message}")]
    Invalid {
        /// The request field, as in the .proto file.
        field: String,
        /// What is wrong and what is accepted.
        message: String,
    },
    /// The request is fine but the object's state refuses it
    /// (`FAILED_PRECONDITION`), e.g. a step already taken, an agent offline.
    #[error("{0}")]
    Refused(String),
    /// It already exists (`ALREADY_EXISTS`).
    #[error("{0}")]
    Exists(String),
    /// Too many calls at once (`RESOURCE_EXHAUSTED`).
    #[error("{0}")]
    Exhausted(String),
    /// A part of the collector is not running (`UNAVAILABLE`); retry later.
    #[error("{0}")]
    Unavailable(String),
    /// The collector failed (`INTERNAL`): logged with its source; the caller
    /// gets what failed, not the source's details.
    #[error("{what}: {source}")]
    Internal {
        /// What was being done.
        what: String,
        /// Why it failed.
        source: anyhow::Error,
    },
}

impl ApiError {
    /// An [`ApiError::Invalid`] for `field`.
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        ApiError::Invalid {
            field: field.into(),
            message: message.into(),
        }
    }

    /// An [`ApiError::Internal`] while doing `what`.
    pub fn internal(what: impl Into<String>, source: impl Into<anyhow::Error>) -> Self {
        ApiError::Internal {
            what: what.into(),
            source: source.into(),
        }
    }

    /// The gRPC code.
    pub fn code(&self) -> Code {
        match self {
            ApiError::Denied(_) => Code::PermissionDenied,
            ApiError::NotFound(_) => Code::NotFound,
            ApiError::Invalid { .. } => Code::InvalidArgument,
            ApiError::Refused(_) => Code::FailedPrecondition,
            ApiError::Exists(_) => Code::AlreadyExists,
            ApiError::Exhausted(_) => Code::ResourceExhausted,
            ApiError::Unavailable(_) => Code::Unavailable,
            ApiError::Internal { .. } => Code::Internal,
        }
    }
}

impl From<ApiError> for Status {
    fn from(e: ApiError) -> Status {
        match &e {
            ApiError::Internal { what, source } => {
                tracing::error!(what = %what, error = %format!("{source:#}"), "admin API call failed");
                Status::internal(format!(
                    "the collector failed while {what}; its log says why (search for \"{what}\")"
                ))
            }
            _ => Status::new(e.code(), e.to_string()),
        }
    }
}

/// A blocking part of a handler (store reads and commits) run off the
/// async workers; a panic in it is an [`ApiError::Internal`].
pub async fn blocking<T, F>(what: &str, f: F) -> Result<T, ApiError>
where
    F: FnOnce() -> Result<T, ApiError> + Send + 'static,
    T: Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::internal(what.to_string(), e))?
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_has_its_code_and_internal_hides_the_source() {
        let s: Status = ApiError::invalid("subject", "at most 200 characters").into();
        assert_eq!(s.code(), Code::InvalidArgument);
        assert_eq!(s.message(), "subject: at most 200 characters");
        let s: Status = ApiError::NotFound("ticket 2026-0001 not found".into()).into();
        assert_eq!(s.code(), Code::NotFound);
        let s: Status =
            ApiError::internal("reading tickets", anyhow::anyhow!("redb: page 7 corrupt")).into();
        assert_eq!(s.code(), Code::Internal);
        assert!(!s.message().contains("page 7"), "{}", s.message());
        assert!(s.message().contains("reading tickets"), "{}", s.message());
    }
}
