//! `siaga ticket report ID --format html|pdf [--lang id|en] --out FILE`.

use std::path::PathBuf;

use clap::Args;
use serde_json::json;

use super::api::ReportDocument;
use crate::sop::cli::Request;

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
}

impl ReportCmd {
    /// The call.
    pub fn request(&self) -> Request {
        Request {
            method: "ticket.report",
            json: json!({"ticket": self.id, "format": self.format, "lang": self.lang}).to_string(),
        }
    }

    /// Writes the file; says where, how big, its sha256, and draft or final.
    pub fn render(&self, reply: &str) -> Result<String, String> {
        let d: ReportDocument = serde_json::from_str(reply)
            .map_err(|e| format!("the collector sent an answer this siaga cannot read: {e}"))?;
        let bytes = d.decode()?;
        let existed = self.out.exists();
        crate::safe_file::write(&self.out, &bytes, crate::safe_file::PUBLIC)
            .map_err(|e| e.to_string())?;
        let what = if d.is_final {
            format!(
                "final: the report frozen at the Kepala Dinas's review ({}), as stored with the ticket",
                d.reviewed_at.as_deref().unwrap_or("-")
            )
        } else {
            "draft (marked DRAF): not yet reviewed by the Kepala Dinas; it changes as the ticket moves"
                .to_string()
        };
        Ok(format!(
            "wrote {}{}: {} bytes, sha256 {}\n{what}",
            self.out.display(),
            if existed {
                " (replaced the file there)"
            } else {
                ""
            },
            bytes.len(),
            d.sha256
        ))
    }
}
