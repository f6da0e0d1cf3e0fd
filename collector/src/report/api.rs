//! `ticket.report {ticket, format, lang}` on the admin API: the report's
//! bytes (base64) with its hash and whether it is the frozen final one. Any
//! enrolled user may read it, as any may read the ticket.

use base64::Engine as _;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{Format, ReportError, Reports, store};
use crate::sop::Lang;
use crate::sop::api::ApiError;

/// Largest document the admin API sends: base64 grows it by a third, and the
/// answer must stay under the gRPC message cap with room for the JSON around it.
pub const MAX_DOCUMENT_BYTES: usize = siaga_proto::MAX_MESSAGE_BYTES / 4 * 3 - 64 * 1024;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReportArgs {
    ticket: String,
    #[serde(default)]
    format: Option<String>,
    #[serde(default)]
    lang: Option<Lang>,
}

/// The answer of `ticket.report`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReportDocument {
    /// Ticket.
    pub ticket: String,
    /// `html` or `pdf`.
    pub format: String,
    /// Language.
    pub lang: Lang,
    /// The frozen final report (else a draft).
    #[serde(rename = "final")]
    pub is_final: bool,
    /// Local time of the Kepala Dinas's review, for the final report.
    pub reviewed_at: Option<String>,
    /// Hex sha256 of the document.
    pub sha256: String,
    /// Its size.
    pub bytes: u64,
    /// The document, base64.
    pub base64: String,
}

impl ReportDocument {
    /// The document's bytes, checked against its hash.
    pub fn decode(&self) -> Result<Vec<u8>, String> {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(&self.base64)
            .map_err(|e| format!("bad document from the collector: {e}"))?;
        if store::sha256(&bytes) != self.sha256 {
            return Err("the document from the collector does not match its sha256".into());
        }
        Ok(bytes)
    }
}

fn api_error(e: ReportError) -> ApiError {
    match e {
        ReportError::NoTicket(_) => ApiError::NotFound(e.to_string()),
        ReportError::Tampered { .. } | ReportError::Store(_) | ReportError::Pdf(_) => {
            ApiError::Internal(e.to_string())
        }
    }
}

/// Handles `ticket.report`; `None` for other methods.
pub fn handle(
    reports: &Reports,
    method: &str,
    json: &str,
    now: DateTime<Utc>,
) -> Option<Result<String, ApiError>> {
    if method != "ticket.report" {
        return None;
    }
    Some(report(reports, json, now))
}

fn report(reports: &Reports, json: &str, now: DateTime<Utc>) -> Result<String, ApiError> {
    let a: ReportArgs = serde_json::from_str(if json.trim().is_empty() { "{}" } else { json })
        .map_err(|e| ApiError::BadRequest(format!("ticket.report: bad arguments: {e}")))?;
    let format: Format = a
        .format
        .as_deref()
        .unwrap_or("pdf")
        .parse()
        .map_err(ApiError::BadRequest)?;
    let lang = a.lang.unwrap_or_default();
    let ticket = a.ticket.trim().to_ascii_uppercase();
    if ticket.is_empty() {
        return Err(ApiError::BadRequest(
            "ticket.report: ticket must not be empty".into(),
        ));
    }
    let r = reports
        .document(&ticket, format, lang, now)
        .map_err(api_error)?;
    if r.bytes.len() > MAX_DOCUMENT_BYTES {
        return Err(ApiError::Internal(format!(
            "the report of {ticket} is {} bytes, more than the {MAX_DOCUMENT_BYTES} the admin API can carry",
            r.bytes.len()
        )));
    }
    let doc = ReportDocument {
        ticket,
        format: format.as_str().to_string(),
        lang,
        is_final: r.is_final,
        reviewed_at: r.reviewed_at,
        sha256: store::sha256(&r.bytes),
        bytes: r.bytes.len() as u64,
        base64: base64::engine::general_purpose::STANDARD.encode(&r.bytes),
    };
    serde_json::to_string(&doc).map_err(|e| ApiError::Internal(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_document_that_does_not_match_its_hash_is_refused() {
        let bytes = b"%PDF-1.7 laporan".to_vec();
        let mut d = ReportDocument {
            ticket: "PJ-2026-0001".into(),
            format: "pdf".into(),
            lang: Lang::Id,
            is_final: true,
            reviewed_at: None,
            sha256: store::sha256(&bytes),
            bytes: bytes.len() as u64,
            base64: base64::engine::general_purpose::STANDARD.encode(&bytes),
        };
        assert_eq!(d.decode(), Ok(bytes));
        d.base64 = base64::engine::general_purpose::STANDARD.encode(b"%PDF-1.7 palsu");
        assert!(d.decode().expect_err("changed").contains("does not match"));
        let json = serde_json::to_value(&d).expect("json");
        assert_eq!(json["final"], true, "the JSON says final");
    }

    #[test]
    fn formats() {
        assert_eq!("PDF".parse::<Format>(), Ok(Format::Pdf));
        assert_eq!("html".parse::<Format>(), Ok(Format::Html));
        assert!(
            "docx"
                .parse::<Format>()
                .expect_err("no")
                .contains("html or pdf")
        );
    }
}

/// The `Reports` gRPC service (reports.proto).
#[derive(Debug, Clone)]
pub struct ReportsApi {
    hub: std::sync::Arc<crate::hub::Hub>,
}

impl ReportsApi {
    /// The service on `hub`.
    pub fn new(hub: std::sync::Arc<crate::hub::Hub>) -> Self {
        Self { hub }
    }

    /// The collector's shared state.
    pub fn hub(&self) -> &crate::hub::Hub {
        &self.hub
    }
}

#[tonic::async_trait]
impl siaga_proto::v1::reports_server::Reports for ReportsApi {}
