//! `siaga ticket report ID --format html|pdf [--lang id|en] --out FILE`.

use std::path::PathBuf;

use clap::Args;
use siaga_proto::v1;

use crate::client::{CliError, SiagaConfig};

/// `siaga ticket report`.
#[derive(Debug, Clone, Args)]
pub struct ReportCmd {
    /// Ticket number, e.g. PJ-2026-0001.
    pub id: String,
    /// html (one self-contained file) or pdf (A4).
    #[arg(long, default_value = "pdf", value_parser = ["html", "pdf"])]
    pub format: String,
    /// id (Bahasa Indonesia) or en.
    #[arg(long, default_value = "id", value_parser = ["id", "en"])]
    pub lang: String,
    /// The file to write; a file already there is replaced.
    #[arg(long)]
    pub out: PathBuf,
    /// Print what was written as JSON (the document's description, its
    /// sha256 and whether it is the final report, and `out`).
    #[arg(long)]
    pub json: bool,
}

impl ReportCmd {
    /// Fetches the report (streamed), writes the file and says where, how
    /// big, its sha256, and whether it is the draft or the final one.
    pub async fn run(&self, cfg: &SiagaConfig) -> Result<String, CliError> {
        let mut c = v1::reports_client::ReportsClient::new(crate::client::channel(cfg).await?);
        let answer = c
            .get_report(crate::client::request(v1::GetReportRequest {
                ticket: self.id.clone(),
                format: self.format.clone(),
                lang: self.lang.clone(),
            }))
            .await;
        let (info, said) = crate::client::save_document(
            cfg,
            answer,
            Some(&self.out),
            "the work report",
            self.json,
        )
        .await?;
        if self.json {
            return Ok(said);
        }
        let what = if info.r#final {
            format!(
                "final: the report frozen at the Kepala Dinas's review ({}), as stored with the ticket",
                if info.reviewed_at.is_empty() {
                    "-"
                } else {
                    &info.reviewed_at
                }
            )
        } else {
            "draft (marked DRAF): not yet reviewed by the Kepala Dinas; it changes as the ticket moves"
                .to_string()
        };
        Ok(format!("{said}\n{what}"))
    }
}
