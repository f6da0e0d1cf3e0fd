//! The `Reports` service (reports.proto): a ticket's work report, streamed
//! in chunks with its hash and whether it is the frozen final one. Anyone
//! who may read the ticket may read it (a pemohon: their OPD's tickets).

use chrono::Utc;

use super::{Format, ReportError};
use crate::sop::api::ApiError;

fn api_error(e: ReportError) -> ApiError {
    match e {
        ReportError::NoTicket(_) => ApiError::NotFound(e.to_string()),
        ReportError::Tampered { .. } | ReportError::Store(_) | ReportError::Pdf(_) => {
            ApiError::Internal(e.to_string())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
impl siaga_proto::v1::reports_server::Reports for ReportsApi {
    type GetReportStream = crate::api::document::Stream;

    async fn get_availability(
        &self,
        req: tonic::Request<siaga_proto::v1::GetAvailabilityRequest>,
    ) -> Result<tonic::Response<siaga_proto::v1::Availability>, tonic::Status> {
        use crate::api::{ApiError as E, limits};
        let caller = crate::api::caller(&req)?;
        let r = req.into_inner();
        limits::text("period", &r.period, 7)?;
        limits::text("opd", &r.opd, limits::len::ID)?;
        let format = match r.format.trim() {
            f @ ("" | "xlsx" | "pdf") => f.to_string(),
            f => return Err(E::invalid("format", format!("{f:?} is not xlsx or pdf")).into()),
        };
        let inv = self.hub.inventory();
        let opd = match r.opd.trim() {
            "" => caller.held_to().map(str::to_string),
            o if inv.opds.contains_key(o) && caller.sees(o) => Some(o.to_string()),
            o => return Err(E::NotFound(format!("unknown OPD {o:?}")).into()),
        };
        let health = self.hub.health.clone();
        let offset = health.sop_store.calendar().offset().local_minus_utc() / 60;
        let period = super::availability::Period::month(&r.period, offset)
            .map_err(|m| E::invalid("period", m))?;
        let store = self.hub.store.clone();
        let sees = caller.clone();
        let spec = r.period.trim().to_string();
        let now = Utc::now().timestamp_micros();
        let a = crate::api::error::blocking("computing the availability", move || {
            let windows = health
                .store
                .windows()
                .map_err(|e| E::internal("reading the maintenance windows", e))?;
            let topo = crate::ticket::service::topology(&inv);
            super::availability::compute_prepared(
                &*store,
                &topo,
                &health.rules,
                &windows,
                period,
                opd.as_deref(),
                now,
                super::prepare::replay_limit(period, now, offset),
            )
            .map_err(|e| E::internal("reading the samples", e))
            .and_then(|a| a.map_err(|ready| E::Unavailable(ready.preparing(&spec))))
            .and_then(|mut a| {
                let sop = &health.sop_store;
                let cal = sop.calendar();
                let day = |us: i64| {
                    chrono::DateTime::from_timestamp_micros(us).map(|t| cal.local_date(t))
                };
                let (Some(from), Some(to)) = (day(period.from_us), day(period.until_us - 1)) else {
                    return Err(E::invalid("period", "out of range"));
                };
                let keep = |o: &str| sees.sees(o) && opd.as_deref().is_none_or(|w| w == o);
                let tickets = crate::sop::api::standards_by_opd(sop, from, to, &keep, Utc::now())
                    .map_err(|e| E::internal("reading the tickets", e))?;
                for o in &mut a.opds {
                    o.tickets = tickets.get(&o.opd).copied().unwrap_or_default();
                }
                Ok(a)
            })
        })
        .await?;
        let mut answer = availability_message(r.period.trim(), &a);
        if !format.is_empty() {
            let hub = self.hub.clone();
            let period = r.period.trim().to_string();
            answer.document = crate::api::error::blocking("writing the document", move || {
                sla_document(&hub, &period, &a, &format)
            })
            .await?;
        }
        Ok(tonic::Response::new(answer))
    }

    async fn get_report(
        &self,
        req: tonic::Request<siaga_proto::v1::GetReportRequest>,
    ) -> Result<tonic::Response<Self::GetReportStream>, tonic::Status> {
        use crate::api::{ApiError as E, document, limits, scope};
        let caller = crate::api::caller(&req)?;
        let r = req.into_inner();
        let ticket = limits::ticket_number("ticket", &r.ticket)?;
        let lang = document::lang("lang", &r.lang)?;
        let format: Format = match r.format.trim() {
            "" => Format::Pdf,
            f => f.parse().map_err(|m: String| E::invalid("format", m))?,
        };
        let health = self.hub.health.clone();
        let reports = self.hub.reports.clone();
        let (number, r) = tokio::task::spawn_blocking(move || {
            let t = scope::ticket(&caller, &health.sop_store, &ticket)?;
            let doc = reports
                .document(&t.info.number, format, lang, Utc::now())
                .map_err(|e| match e {
                    // The stored bytes changed behind the collector's back:
                    // said as it is, not hidden as an internal failure.
                    ReportError::Tampered { .. } => tonic::Status::data_loss(e.to_string()),
                    e => document::sop_status(api_error(e)),
                })?;
            Ok::<_, tonic::Status>((t.info.number, doc))
        })
        .await
        .map_err(|e| tonic::Status::from(E::internal("making the work report", e)))??;
        Ok(tonic::Response::new(document::stream(
            siaga_proto::v1::DocumentInfo {
                format: format.as_str().into(),
                lang: crate::sop::documents::lang_name(lang).into(),
                r#final: r.is_final,
                reviewed_at: r.reviewed_at.unwrap_or_default(),
                ticket: number,
                ..Default::default()
            },
            &r.bytes,
        )))
    }
}

/// The availability report `a` of month `period` as an XLSX or PDF
/// document, signed by the first user (by name) who holds `kepala_dinas`.
fn sla_document(
    hub: &std::sync::Arc<crate::hub::Hub>,
    period: &str,
    a: &super::availability::Availability,
    format: &str,
) -> Result<Vec<u8>, crate::api::ApiError> {
    use crate::api::ApiError as E;
    use crate::users::UserDirectory as _;
    let sop = hub.health.sop_store.sop();
    let mut users = crate::admin::HubUsers(hub.clone()).all();
    users.sort_by(|x, y| x.name.cmp(&y.name));
    let head = users
        .iter()
        .find(|u| u.roles.iter().any(|r| r == "kepala_dinas"));
    let people = hub.people();
    let doc = super::sla::SlaDoc {
        office: sop.office.clone(),
        office_unit: sop.office_unit.clone(),
        period: period.to_string(),
        a,
        opd_names: hub
            .inventory()
            .opds
            .iter()
            .map(|(id, o)| (id.clone(), o.name.clone()))
            .collect(),
        signer: head.map(|u| people.signer(&u.name, crate::sop::Lang::Id)),
    };
    match format {
        "xlsx" => super::sla::to_xlsx(&doc).map_err(|e| E::internal("writing the workbook", e)),
        _ => super::pdf::render_availability(&doc).map_err(|e| E::internal("writing the PDF", e)),
    }
}

/// The proto figures of `f`.
fn figures(f: &super::availability::Figures) -> siaga_proto::v1::AvailabilityFigures {
    siaga_proto::v1::AvailabilityFigures {
        up_us: f.up_us,
        down_us: f.down_us,
        maintenance_us: f.maintenance_us,
        unreachable_us: f.unreachable_us,
        no_data_us: f.no_data_us,
        incidents: f.incidents,
        longest_outage_us: f.longest_outage_us,
        mttr_us: f.mttr_us(),
        availability_pct: f.availability_pct(),
    }
}

/// The proto message of an availability report of month `period`.
pub fn availability_message(
    period: &str,
    a: &super::availability::Availability,
) -> siaga_proto::v1::Availability {
    use siaga_proto::v1::AvailabilityRow;
    siaga_proto::v1::Availability {
        period: period.to_string(),
        from_us: a.period.from_us,
        until_us: a.period.until_us,
        opds: a
            .opds
            .iter()
            .map(|o| AvailabilityRow {
                opd: o.opd.clone(),
                figures: Some(figures(&o.figures)),
                tickets_within_standard: o.tickets.within,
                tickets_outside_standard: o.tickets.outside,
                ..Default::default()
            })
            .collect(),
        subjects: a
            .subjects
            .iter()
            .map(|r| AvailabilityRow {
                opd: r.opd.clone(),
                device: r.subject.device_id().unwrap_or_default().to_string(),
                link: r.subject.link_name().unwrap_or_default().to_string(),
                figures: Some(figures(&r.figures)),
                ..Default::default()
            })
            .collect(),
        document: Vec::new(),
    }
}

#[cfg(test)]
pub mod matrix {
    use std::sync::Arc;

    use siaga_proto::v1::{self, reports_client::ReportsClient};

    use crate::api::document::{ReceiveError, receive};
    use crate::api::matrix::{Case, Outcome};
    use crate::api::testing::Fixture;

    /// Without `opd`, a pemohon gets their own OPD alone and a province
    /// role every OPD; a month that is not one is refused by name.
    #[tokio::test]
    #[allow(clippy::unwrap_used)]
    async fn availability_without_an_opd_is_the_callers_opds() {
        use crate::api::testing::{OTHER, OWN};
        let f = Arc::new(Fixture::start().await);
        let ask = |role: &'static str, period: &'static str| {
            let f = f.clone();
            async move {
                ReportsClient::new(f.as_role(role))
                    .get_availability(v1::GetAvailabilityRequest {
                        period: period.into(),
                        ..Default::default()
                    })
                    .await
            }
        };
        let opds =
            |a: v1::Availability| -> Vec<String> { a.opds.into_iter().map(|o| o.opd).collect() };
        let own = ask("pemohon", "2026-11").await.unwrap().into_inner();
        assert!(own.subjects.iter().all(|r| r.opd == OWN));
        assert_eq!(opds(own), [OWN]);
        let all = opds(ask("kabid_aptika", "2026-11").await.unwrap().into_inner());
        assert!(
            all.iter().any(|o| o == OWN) && all.iter().any(|o| o == OTHER),
            "{all:?}"
        );
        let bad = ask("kabid_aptika", "2026-13").await.unwrap_err();
        assert_eq!(bad.code(), tonic::Code::InvalidArgument);
        assert!(bad.message().contains("period"), "{}", bad.message());
    }

    /// An OPD's row counts its tickets of the month by the SOP's time
    /// standards: a letter just recorded is within them; an OPD without
    /// tickets has none.
    #[tokio::test]
    #[allow(clippy::unwrap_used)]
    async fn availability_counts_the_months_tickets_by_the_time_standards() {
        use crate::api::testing::{OTHER, OWN};
        let f = Arc::new(Fixture::start().await);
        f.ticket_of(OWN).await;
        let month = chrono::Utc::now()
            .with_timezone(&chrono_tz::Asia::Jakarta)
            .format("%Y-%m")
            .to_string();
        let a = ReportsClient::new(f.as_role("kabid_aptika"))
            .get_availability(v1::GetAvailabilityRequest {
                period: month,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        let counts = |opd: &str| {
            a.opds
                .iter()
                .find(|o| o.opd == opd)
                .map(|o| (o.tickets_within_standard, o.tickets_outside_standard))
        };
        assert_eq!(counts(OWN), Some((1, 0)), "{:?}", a.opds);
        assert_eq!(counts(OTHER), Some((0, 0)), "{:?}", a.opds);
    }

    /// The report as a workbook or a PDF comes in `document`; another
    /// format is refused by name; without one there is no document.
    #[tokio::test]
    #[allow(clippy::unwrap_used)]
    async fn availability_comes_as_xlsx_or_pdf_when_asked() {
        let f = Arc::new(Fixture::start().await);
        let ask = |format: &'static str| {
            let f = f.clone();
            async move {
                ReportsClient::new(f.as_role("kabid_aptika"))
                    .get_availability(v1::GetAvailabilityRequest {
                        period: "2026-11".into(),
                        format: format.into(),
                        ..Default::default()
                    })
                    .await
            }
        };
        let xlsx = ask("xlsx").await.unwrap().into_inner();
        assert!(xlsx.document.starts_with(b"PK"));
        assert!(!xlsx.opds.is_empty());
        let pdf = ask("pdf").await.unwrap().into_inner();
        assert!(pdf.document.starts_with(b"%PDF"));
        assert!(ask("").await.unwrap().into_inner().document.is_empty());
        let bad = ask("docx").await.unwrap_err();
        assert_eq!(bad.code(), tonic::Code::InvalidArgument);
        assert!(bad.message().contains("format"), "{}", bad.message());
    }

    /// The matrix cases of the `Reports` service.
    pub const CASES: &[Case] = &[
        Case {
            rpc: "/siaga.v1.Reports/GetAvailability",
            call: |f: Arc<Fixture>, p, opd| {
                Box::pin(async move {
                    let mut c = ReportsClient::new(f.channel(p));
                    let r = c
                        .get_availability(v1::GetAvailabilityRequest {
                            period: "2026-11".into(),
                            opd: opd.into(),
                            ..Default::default()
                        })
                        .await;
                    match r {
                        Ok(a)
                            if !a.get_ref().opds.is_empty()
                                && a.get_ref().opds.iter().all(|o| o.opd == opd) =>
                        {
                            Outcome::Seen
                        }
                        Ok(a) => Outcome::Refused(
                            tonic::Code::Unknown,
                            format!("{:?}", a.get_ref().opds),
                        ),
                        Err(s) => s.into(),
                    }
                })
            },
        },
        Case {
            rpc: "/siaga.v1.Reports/GetReport",
            call: |f: Arc<Fixture>, p, opd| {
                Box::pin(async move {
                    let ticket = f.ticket_of(opd).await;
                    let mut c = ReportsClient::new(f.channel(p));
                    let r = c
                        .get_report(v1::GetReportRequest {
                            ticket: ticket.clone(),
                            format: "html".into(),
                            ..Default::default()
                        })
                        .await;
                    let s = match r {
                        Ok(s) => s.into_inner(),
                        Err(s) => return s.into(),
                    };
                    match receive(s).await {
                        Ok(d) if d.info.ticket == ticket && !d.info.r#final => Outcome::Seen,
                        Ok(d) => Outcome::Refused(tonic::Code::Unknown, format!("{:?}", d.info)),
                        Err(ReceiveError::Status(s)) => s.into(),
                        Err(ReceiveError::Bad(m)) => Outcome::Refused(tonic::Code::DataLoss, m),
                    }
                })
            },
        },
    ];
}
