//! The `Documents` service (documents.proto): a ticket's control card and
//! the register of a period, streamed in chunks. A person held to an OPD
//! (pemohon) gets the card of their OPD's tickets only (another's is not
//! found) and a register of their OPD's tickets only.

use std::sync::Arc;

use chrono::NaiveDate;
use siaga_proto::v1;
use tonic::{Request, Response, Status};

use crate::api::document::{self, Stream, sop_status};
use crate::api::{ApiError, limits, scope};
use crate::hub::Hub;

/// The `Documents` gRPC service.
#[derive(Debug, Clone)]
pub struct DocumentsApi {
    hub: Arc<Hub>,
}

impl DocumentsApi {
    /// The service on `hub`.
    pub fn new(hub: Arc<Hub>) -> Self {
        Self { hub }
    }

    /// The collector's shared state.
    pub fn hub(&self) -> &Hub {
        &self.hub
    }
}

/// A `YYYY-MM-DD` day of a request.
fn day(field: &str, v: &str) -> Result<NaiveDate, ApiError> {
    NaiveDate::parse_from_str(v.trim(), "%Y-%m-%d")
        .map_err(|_| ApiError::invalid(field, format!("{v:?} is not a day like 2026-12-04")))
}

#[tonic::async_trait]
impl v1::documents_server::Documents for DocumentsApi {
    type GetCardStream = Stream;
    type GetRegisterStream = Stream;

    async fn get_card(&self, req: Request<v1::GetCardRequest>) -> Result<Response<Stream>, Status> {
        let caller = crate::api::caller(&req)?;
        let r = req.into_inner();
        let ticket = limits::ticket_number("ticket", &r.ticket)?;
        let lang = document::lang("lang", &r.lang)?;
        let format = match r.format.trim() {
            "" | "text" => "text",
            "html" => "html",
            other => {
                return Err(ApiError::invalid(
                    "format",
                    format!("{other:?} is not a card format: text or html"),
                )
                .into());
            }
        };
        let health = self.hub.health.clone();
        let dir = crate::admin::HubDirectory(self.hub.clone());
        let (number, bytes) = tokio::task::spawn_blocking(move || {
            let t = scope::ticket(&caller, &health.sop_store, &ticket)?;
            let bytes =
                crate::sop::api::card_bytes(&health.sop_store, &dir, &t.info.number, format, lang)
                    .map_err(sop_status)?;
            Ok::<_, Status>((t.info.number, bytes))
        })
        .await
        .map_err(|e| Status::from(ApiError::internal("making the control card", e)))??;
        Ok(Response::new(document::stream(
            v1::DocumentInfo {
                format: format.into(),
                lang: lang_name(lang).into(),
                ticket: number,
                ..Default::default()
            },
            &bytes,
        )))
    }

    async fn get_register(
        &self,
        req: Request<v1::GetRegisterRequest>,
    ) -> Result<Response<Stream>, Status> {
        let caller = crate::api::caller(&req)?;
        let r = req.into_inner();
        let from = day("from", &r.from)?;
        let to = day("to", &r.to)?;
        if to < from {
            return Err(ApiError::invalid(
                "to",
                format!("{to} is before from {from}: give the last day of the period"),
            )
            .into());
        }
        limits::text("opd", &r.opd, limits::len::ID)?;
        let lang = document::lang("lang", &r.lang)?;
        let format = match r.format.trim() {
            "" | "csv" => "csv",
            "xlsx" => "xlsx",
            other => {
                return Err(ApiError::invalid(
                    "format",
                    format!("{other:?} is not a register format: csv or xlsx"),
                )
                .into());
            }
        };
        let health = self.hub.health.clone();
        let dir = crate::admin::HubDirectory(self.hub.clone());
        let now = chrono::Utc::now();
        let bytes = tokio::task::spawn_blocking(move || {
            // The tickets of the OPDs the caller sees (and asked for).
            let keep = |opd: &str| caller.sees(opd) && (r.opd.is_empty() || r.opd == opd);
            crate::sop::api::register_bytes(
                &health.sop_store,
                &dir,
                from,
                to,
                format,
                lang,
                &keep,
                now,
            )
            .map_err(sop_status)
        })
        .await
        .map_err(|e| Status::from(ApiError::internal("making the register", e)))??;
        Ok(Response::new(document::stream(
            v1::DocumentInfo {
                format: format.into(),
                lang: lang_name(lang).into(),
                ..Default::default()
            },
            &bytes,
        )))
    }
}

/// "id" or "en".
pub fn lang_name(lang: crate::sop::Lang) -> &'static str {
    match lang {
        crate::sop::Lang::Id => "id",
        crate::sop::Lang::En => "en",
    }
}

#[cfg(test)]
pub mod tests {
    use std::sync::Arc;

    use siaga_proto::v1::{self, documents_client::DocumentsClient};

    use crate::api::document::{ReceiveError, receive};
    use crate::api::matrix::{Case, Outcome};
    use crate::api::testing::Fixture;

    /// What a document call gave: the document's text, or the outcome.
    async fn text(
        answer: Result<tonic::Response<tonic::Streaming<v1::DocumentChunk>>, tonic::Status>,
    ) -> Result<String, Outcome> {
        let s = answer.map_err(Outcome::from)?.into_inner();
        match receive(s).await {
            Ok(d) => Ok(String::from_utf8_lossy(&d.bytes).into_owned()),
            Err(ReceiveError::Status(s)) => Err(s.into()),
            Err(ReceiveError::Bad(m)) => Err(Outcome::Refused(tonic::Code::DataLoss, m)),
        }
    }

    /// The matrix cases of the `Documents` service.
    pub const CASES: &[Case] = &[
        Case {
            rpc: "/siaga.v1.Documents/GetCard",
            call: |f: Arc<Fixture>, p, opd| {
                Box::pin(async move {
                    let ticket = f.ticket_of(opd).await;
                    let mut c = DocumentsClient::new(f.channel(p));
                    let r = c
                        .get_card(v1::GetCardRequest {
                            ticket: ticket.clone(),
                            ..Default::default()
                        })
                        .await;
                    match text(r).await {
                        Ok(t) if t.contains(&ticket) => Outcome::Seen,
                        Ok(t) => Outcome::Refused(tonic::Code::Unknown, t),
                        Err(o) => o,
                    }
                })
            },
        },
        Case {
            rpc: "/siaga.v1.Documents/GetRegister",
            call: |f: Arc<Fixture>, p, opd| {
                Box::pin(async move {
                    let ticket = f.ticket_of(opd).await;
                    let today = chrono::Utc::now()
                        .with_timezone(&chrono_tz::Asia::Jakarta)
                        .date_naive()
                        .to_string();
                    let mut c = DocumentsClient::new(f.channel(p));
                    let r = c
                        .get_register(v1::GetRegisterRequest {
                            from: today.clone(),
                            to: today,
                            ..Default::default()
                        })
                        .await;
                    match text(r).await {
                        Ok(t) if t.contains(&ticket) => Outcome::Seen,
                        Ok(_) => Outcome::Hidden,
                        Err(o) => o,
                    }
                })
            },
        },
    ];
}
