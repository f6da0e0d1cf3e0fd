//! Tickets from letters (SOP step 1) that cannot lie: the letter's date,
//! its devices and links, one ticket per letter, and the length of what a
//! person types; a request the collector cannot read is bad input.

use anyhow::{Context, Result, ensure};
use serde_json::Value;
use siaga_tests::harness::{Collector, Inventory, runtime};
use siaga_tests::office::{OFFICE_USERS, Office, letter_args};

/// An office whose inventory has a device of dinkes and one of bappeda.
fn office() -> Result<Office> {
    let collector = Collector::init()?;
    collector.write_inventory(
        &Inventory::new("10s")
            .opd("dinkes")
            .opd("bappeda")
            .device("dinkes-rtr", "dinkes", "198.18.40.1")
            .device("bappeda-sw", "bappeda", "198.18.40.2"),
    )?;
    Office::serve(collector, &OFFICE_USERS)
}

/// Today in WIB, shifted by `days`.
fn day(days: i64) -> Result<String> {
    let wib = chrono::FixedOffset::east_opt(7 * 3600).context("offset")?;
    Ok(
        (chrono::Utc::now().with_timezone(&wib).date_naive() + chrono::Duration::days(days))
            .format("%Y-%m-%d")
            .to_string(),
    )
}

fn letter_tickets(o: &Office, who: &str) -> Result<Vec<Value>> {
    let all = o.json(who, &["tickets", "--json"])?;
    Ok(all
        .as_array()
        .context("tickets is not an array")?
        .iter()
        .filter(|t| t["origin"] == "letter")
        .cloned()
        .collect())
}

#[test]
fn a_letter_dated_in_the_future_or_in_1900_is_refused() -> Result<()> {
    let o = office()?;
    let future = day(3)?;
    let err = o.refused(
        "hd",
        &letter_args("005/1/DINKES", &future, "Internet putus"),
    )?;
    ensure!(
        err.contains(&format!("letter_date: {future} is in the future")),
        "{err}"
    );
    let err = o.refused(
        "hd",
        &letter_args("005/1/DINKES", "1900-01-01", "Internet putus"),
    )?;
    ensure!(
        err.contains("letter_date: 1900-01-01 is more than 365 days ago")
            && err.contains("tickets.max_letter_age"),
        "{err}"
    );
    ensure!(letter_tickets(&o, "hd")?.is_empty(), "nothing was opened");
    // Today and tomorrow (a clock a little ahead) are fine.
    o.ok(
        "hd",
        &letter_args("005/2/DINKES", &day(1)?, "Internet putus"),
    )?;
    o.ok(
        "hd",
        &letter_args("005/3/DINKES", &day(-300)?, "Internet putus"),
    )?;
    Ok(())
}

#[test]
fn the_same_letter_filed_twice_is_the_same_ticket() -> Result<()> {
    let o = office()?;
    let today = day(0)?;
    let first = o.ok(
        "hd",
        &letter_args("005/7/DINKES/XII", &today, "Internet putus"),
    )?;
    let id = siaga_tests::office::opened_ticket(&first)?;
    // Again, by another desk, with the number typed in other case.
    let again = o.ok(
        "root",
        &letter_args("005/7/dinkes/xii", &today, "Internet putus (lagi)"),
    )?;
    ensure!(
        again.starts_with(&format!("already filed as ticket {id}")),
        "{again}"
    );
    // The same answer in JSON says so too.
    let mut args = letter_args("005/7/DINKES/XII", &today, "Internet putus");
    args.push("--json");
    let json = o.json("hd", &args)?;
    ensure!(
        json["already_filed"] == true && json["ticket"]["id"] == id.as_str(),
        "{json:#}"
    );
    let letters = letter_tickets(&o, "hd")?;
    ensure!(
        letters.len() == 1 && letters[0]["id"] == id.as_str(),
        "{letters:#?}"
    );
    // The same number from another OPD is another letter.
    let mut other = letter_args("005/7/DINKES/XII", &today, "Printer");
    other[3] = "bappeda";
    let out = o.ok("hd", &other)?;
    ensure!(out.starts_with("opened "), "{out}");
    ensure!(letter_tickets(&o, "hd")?.len() == 2);
    Ok(())
}

#[test]
fn a_device_or_link_of_another_opd_or_not_in_the_inventory_is_refused() -> Result<()> {
    let o = office()?;
    let today = day(0)?;
    let with = |extra: &[&'static str]| {
        let mut a = letter_args("005/9/DINKES", &today, "Switch mati");
        a.extend_from_slice(extra);
        o.refused("hd", &a)
    };
    let err = with(&["--device", "bappeda-sw"])?;
    ensure!(
        err.contains("device: bappeda-sw is not a device of OPD dinkes"),
        "{err}"
    );
    let err = with(&["--device", "no-such-sw"])?;
    ensure!(
        err.contains("device: no device no-such-sw in the inventory"),
        "{err}"
    );
    let err = with(&["--link", "no-such-link"])?;
    ensure!(
        err.contains("link: no link no-such-link in the inventory"),
        "{err}"
    );
    ensure!(letter_tickets(&o, "hd")?.is_empty(), "nothing was opened");
    let mut ok = letter_args("005/9/DINKES", &today, "Switch mati");
    ok.extend_from_slice(&["--device", "dinkes-rtr"]);
    o.ok("hd", &ok)?;
    Ok(())
}

#[test]
fn text_over_its_limit_is_refused_and_the_queue_still_lists() -> Result<()> {
    let o = office()?;
    let today = day(0)?;
    let subject = "x".repeat(201);
    let err = o.refused("hd", &letter_args("005/11/DINKES", &today, &subject))?;
    ensure!(
        err.contains("subject: 201 characters; the limit is 200"),
        "{err}"
    );
    let number = "9".repeat(101);
    let err = o.refused("hd", &letter_args(&number, &today, "Internet putus"))?;
    ensure!(
        err.contains("letter_number: 101 characters; the limit is 100"),
        "{err}"
    );
    let id = siaga_tests::office::opened_ticket(&o.ok(
        "hd",
        &letter_args("005/12/DINKES", &today, "Internet putus"),
    )?)?;
    let note = "n".repeat(2001);
    let err = o.refused("opd", &["ticket", "dispose", &id, "--note", &note])?;
    ensure!(
        err.contains("note: 2001 characters; the limit is 2000"),
        "{err}"
    );
    let err = o.refused("kabid", &["ticket", "void", &id, "--reason", &note])?;
    ensure!(
        err.contains("reason: 2001 characters; the limit is 2000"),
        "{err}"
    );

    // 15 MB of subject: more than a command line holds, so sent as the CLI
    // sends it, straight to the admin API.
    let tls = o.user("hd")?.tls()?;
    let huge = siaga_proto::v1::NewTicketRequest {
        opd: "dinkes".into(),
        letter_number: "005/13/DINKES".into(),
        letter_date: today.to_string(),
        subject: "x".repeat(15 << 20),
        ..Default::default()
    };
    let answer = runtime()?.block_on(async {
        let mut c = siaga_proto::v1::tickets_client::TicketsClient::new(tls.channel().await?);
        anyhow::Ok(c.new_ticket(huge).await)
    })?;
    ensure!(answer.is_err(), "a 15 MB subject was accepted");
    // Everyone's queue still lists, with the one ticket of a normal size.
    for who in ["hd", "opd", "kabid"] {
        let letters = letter_tickets(&o, who)?;
        ensure!(
            letters.len() == 1 && letters[0]["id"] == id.as_str(),
            "{who}: {letters:#?}"
        );
    }
    Ok(())
}

/// Bytes as they are: a request the generated client could not send.
#[derive(Clone, Copy, Default)]
struct Raw;

impl tonic::codec::Codec for Raw {
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

impl tonic::codec::Encoder for Raw {
    type Item = Vec<u8>;
    type Error = tonic::Status;
    fn encode(
        &mut self,
        item: Vec<u8>,
        dst: &mut tonic::codec::EncodeBuf<'_>,
    ) -> Result<(), tonic::Status> {
        use prost::bytes::BufMut;
        dst.put_slice(&item);
        Ok(())
    }
}

impl tonic::codec::Decoder for Raw {
    type Item = Vec<u8>;
    type Error = tonic::Status;
    fn decode(
        &mut self,
        src: &mut tonic::codec::DecodeBuf<'_>,
    ) -> Result<Option<Vec<u8>>, tonic::Status> {
        use prost::bytes::Buf;
        let mut v = vec![0; src.remaining()];
        src.copy_to_slice(&mut v);
        Ok(Some(v))
    }
}

#[test]
fn a_request_with_invalid_utf8_is_invalid_argument() -> Result<()> {
    let o = Office::start(&OFFICE_USERS)?;
    let tls = o.user("hd")?.tls()?;
    // GetTicketRequest { id: "PJ-2026\xFF" }: field 1, length 8.
    let mut msg = vec![0x0a, 8];
    msg.extend_from_slice(b"PJ-2026\xff");
    let status = runtime()?.block_on(async {
        let mut g = tonic::client::Grpc::new(tls.channel().await?);
        g.ready().await?;
        let r = g
            .unary(
                tonic::Request::new(msg),
                tonic::codegen::http::uri::PathAndQuery::from_static("/siaga.v1.Tickets/GetTicket"),
                Raw,
            )
            .await;
        anyhow::Ok(r.err())
    })?;
    let status = status.context("a request with invalid UTF-8 was answered")?;
    ensure!(
        status.code() == tonic::Code::InvalidArgument,
        "{:?}: {}",
        status.code(),
        status.message()
    );
    // The collector still answers.
    letter_tickets(&o, "hd")?;
    Ok(())
}

#[test]
fn the_ticket_table_fits_80_columns_and_plain_output_is_tab_separated() -> Result<()> {
    let o = office()?;
    let subject = "Koneksi internet ke Puskesmas Kecamatan Sukamaju putus total sejak pagi; \
                   semua layanan SIMPUS dan pendaftaran pasien tidak dapat diakses";
    let filed = o.ok("hd", &letter_args("005/8/DINKES/XII", &day(0)?, subject))?;
    let id = siaga_tests::office::opened_ticket(&filed)?;
    let hd = o.user("hd")?;
    let text = |out: std::process::Output| -> Result<String> {
        ensure!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(String::from_utf8_lossy(&out.stdout).to_string())
    };
    // The terminal is 80 columns: no line is longer, the long subject wraps.
    let table = text(hd.run_env(&["tickets"], &[("COLUMNS", "80")])?)?;
    let widest = table.lines().map(|l| l.chars().count()).max().unwrap_or(0);
    ensure!(
        widest <= 80 && table.contains(id.as_str()),
        "{widest} columns:\n{table}"
    );
    // -o wide: every cell whole on its line, however wide.
    let wide = text(hd.run_env(&["-o", "wide", "tickets"], &[("COLUMNS", "80")])?)?;
    ensure!(
        wide.lines()
            .any(|l| l.chars().count() > 80 && l.contains("Puskesmas Kecamatan")),
        "{wide}"
    );
    // -o plain: a header line, then the ticket on one tab-separated line
    // with no borders, its subject whole.
    let plain = text(hd.run_env(&["tickets", "-o", "plain"], &[("COLUMNS", "80")])?)?;
    let lines: Vec<&str> = plain.lines().collect();
    ensure!(
        lines.first().is_some_and(|h| h.starts_with("id\t")),
        "{plain}"
    );
    let row = lines
        .iter()
        .find(|l| l.starts_with(&format!("{id}\t")))
        .with_context(|| format!("no line for {id}:\n{plain}"))?;
    ensure!(
        row.contains("Puskesmas Kecamatan Sukamaju putus total")
            && !plain.contains('│')
            && !plain.contains('─'),
        "{plain}"
    );
    ensure!(
        row.split('\t').count() == lines[0].split('\t').count(),
        "as many cells as headers: {plain}"
    );
    // -o json is the command's --json; a command without JSON says so.
    let by_flag: serde_json::Value = serde_json::from_str(&text(hd.run(&["tickets", "--json"])?)?)?;
    let by_o: serde_json::Value =
        serde_json::from_str(&text(hd.run(&["-o", "json", "tickets"])?)?)?;
    ensure!(
        by_o == by_flag && by_o.to_string().contains(id.as_str()),
        "{by_o}"
    );
    let none = hd.run(&["completion", "bash", "-o", "json"])?;
    ensure!(
        none.status.code() == Some(64)
            && String::from_utf8_lossy(&none.stderr)
                .contains("-o json: this command prints no JSON"),
        "{none:?}"
    );
    Ok(())
}
