//! The ticket pages as a person's browser meets them: the queue, one
//! ticket with the forms of its viewer's role, the forms' actions through
//! the typed services (checked back over gRPC), CSRF and the OPD scope.

use siaga_proto::v1::{self, sop_client::SopClient, tickets_client::TicketsClient};

use super::{Browser, Page, audited, set_password};
use crate::api::testing::{Fixture, OTHER, OWN};

const KADIS: (&str, &str) = ("kadis", "rahasia-kadis-123");
const PEMOHON: (&str, &str) = ("opd", "rahasia-pemohon-1");
const HELPDESK: (&str, &str) = ("hd", "rahasia-helpdesk-1");

/// A browser logged in as `who` (their password set first).
async fn logged_in(f: &Fixture, who: (&str, &str)) -> Browser {
    set_password(f, who.0, who.1).await;
    let mut b = Browser::new(f).await;
    let p = b.log_in(who.0, who.1).await;
    assert_eq!(p.status, 303, "login of {}: {p:?}", who.0);
    b
}

/// A letter ticket of `opd` at step 2 (the pemohon's step 1 disposed over
/// gRPC): it waits on the Kepala Dinas.
async fn at_kadis(f: &Fixture, opd: &str) -> String {
    let id = f.ticket_of(opd).await;
    if opd == OWN {
        SopClient::new(f.as_role("pemohon"))
            .dispose_ticket(v1::DisposeTicketRequest {
                id: id.clone(),
                ..Default::default()
            })
            .await
            .unwrap();
    }
    id
}

async fn typed(f: &Fixture, id: &str) -> v1::TicketDetail {
    TicketsClient::new(f.as_role("kabid_aptika"))
        .get_ticket(v1::GetTicketRequest { id: id.into() })
        .await
        .unwrap()
        .into_inner()
}

/// The part of `page` inside the element with id `id` (to its section's end).
fn section<'a>(page: &'a Page, id: &str) -> &'a str {
    let body = &page.body;
    let at = body
        .find(&format!("id=\"{id}\""))
        .unwrap_or_else(|| panic!("no #{id} in {body}"));
    let rest = &body[at..];
    &rest[..rest.find("</section>").unwrap_or(rest.len())]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_queue_puts_what_waits_on_me_first_and_filters_and_pages() {
    let f = Fixture::start_web().await;
    let id = at_kadis(&f, OWN).await;
    let mut kadis = logged_in(&f, KADIS).await;
    let q = kadis.get("/tiket").await;
    assert_eq!(q.status, 200, "{q:?}");
    assert!(q.body.contains("Menunggu tindakan saya"), "{}", q.body);
    let mine = section(&q, "saya");
    assert!(mine.contains(&format!("data-tiket=\"{id}\"")), "{mine}");
    assert!(mine.contains("Kepala Dinas"), "{mine}");
    // The board links to the queue.
    let board = kadis.get("/papan").await;
    assert!(board.body.contains("href=\"/tiket\""), "{}", board.body);
    // The pemohon's step is done: nothing waits on them, the ticket is open.
    let mut opd = logged_in(&f, PEMOHON).await;
    let q = opd.get("/tiket").await;
    assert!(
        section(&q, "saya").contains("Tidak ada tiket yang menunggu tindakan Anda."),
        "{}",
        q.body
    );
    assert!(section(&q, "terbuka").contains(&format!("data-tiket=\"{id}\"")));
    // Filters: another step, another OPD, overdue: not listed.
    for filter in ["langkah=5", "opd=dishub", "terlambat=1"] {
        let q = kadis.get(&format!("/tiket?{filter}")).await;
        assert_eq!(q.status, 200, "{filter}: {q:?}");
        assert!(
            !q.body.contains(&format!("data-tiket=\"{id}\"")),
            "{filter}: {}",
            q.body
        );
    }
    let q = kadis.get("/tiket?langkah=2&opd=dinkes").await;
    assert!(section(&q, "saya").contains(&format!("data-tiket=\"{id}\"")));
    assert_eq!(kadis.get("/tiket?langkah=dua").await.status, 400);
    // Paged by the service: 26 open tickets are two pages, with a link on.
    let hd = TicketsClient::new(f.as_role("helpdesk"));
    let today = chrono::Utc::now()
        .with_timezone(&chrono_tz::Asia::Jakarta)
        .date_naive()
        .to_string();
    for n in 0..25 {
        hd.clone()
            .new_ticket(v1::NewTicketRequest {
                opd: OTHER.into(),
                letter_number: format!("{n}/halaman"),
                letter_date: today.clone(),
                subject: "Internet putus".into(),
                ..Default::default()
            })
            .await
            .unwrap();
    }
    let q = kadis.get("/tiket").await;
    let open = section(&q, "terbuka");
    assert_eq!(open.matches("data-tiket=").count(), 25, "{open}");
    let at = open
        .find("class=\"berikutnya\" href=\"")
        .expect("a next link")
        + 25;
    let next = open[at..].split('"').next().unwrap().replace("&amp;", "&");
    let q = kadis.get(&next).await;
    assert_eq!(q.status, 200, "{next}: {q:?}");
    assert_eq!(section(&q, "terbuka").matches("data-tiket=").count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ticket_shows_only_the_actions_the_role_may_take_and_the_form_disposes() {
    let f = Fixture::start_web().await;
    let id = at_kadis(&f, OWN).await;
    let mut kadis = logged_in(&f, KADIS).await;
    let p = kadis.get(&format!("/tiket/{id}")).await;
    assert_eq!(p.status, 200, "{p:?}");
    assert!(p.body.contains("id=\"disposisi\""), "{}", p.body);
    assert!(p.body.contains("id=\"kembalikan\""));
    assert!(!p.body.contains("id=\"terima\"") && !p.body.contains("id=\"ukur\""));
    // The timeline: step 1 done by the pemohon within its standard.
    let line = section(&p, "linimasa");
    assert!(
        line.contains("data-kind=\"disposed\" data-step=\"1\" data-user=\"opd\""),
        "{line}"
    );
    assert!(line.contains("dalam standar waktu"), "{line}");
    // The pemohon sees the ticket, and no form of a step not theirs.
    let mut opd = logged_in(&f, PEMOHON).await;
    let mine = opd.get(&format!("/tiket/{id}")).await;
    assert_eq!(mine.status, 200);
    for form in ["disposisi", "kembalikan", "perbarui", "terima", "ukur"] {
        assert!(
            !mine.body.contains(&format!("id=\"{form}\"")),
            "{form}: {}",
            mine.body
        );
    }
    assert!(
        mine.body
            .contains("Tidak ada tindakan Anda pada tiket ini sekarang.")
    );
    // A refusal of the service is said on the ticket's page.
    let r = opd
        .post(
            &format!("/tiket/{id}/disposisi"),
            &[("csrf", &mine.csrf()), ("catatan", "coba")],
        )
        .await;
    assert_eq!(
        (r.status, r.location.as_str()),
        (303, &*format!("/tiket/{id}"))
    );
    let again = opd.get(&format!("/tiket/{id}")).await;
    assert!(
        again.body.contains("step 2 belongs to kepala_dinas"),
        "{}",
        again.body
    );
    assert_eq!(typed(&f, &id).await.ticket.unwrap().step, 2);

    // The Kepala Dinas disposes through the form.
    let r = kadis
        .post(
            &format!("/tiket/{id}/disposisi"),
            &[("csrf", &p.csrf()), ("catatan", "segera ditangani")],
        )
        .await;
    assert_eq!(
        (r.status, r.location.as_str()),
        (303, &*format!("/tiket/{id}")),
        "{r:?}"
    );
    let after = kadis.get(&format!("/tiket/{id}")).await;
    assert!(
        after
            .body
            .contains("sekarang di langkah 3 (Kepala Bidang Aplikasi dan Informatika)"),
        "{}",
        after.body
    );
    // The message is shown once.
    let later = kadis.get(&format!("/tiket/{id}")).await;
    assert!(!later.body.contains("sekarang di langkah 3"));
    // The typed service sees the step done by that user.
    let d = typed(&f, &id).await;
    assert_eq!(d.ticket.as_ref().unwrap().step, 3);
    let done = d
        .trail
        .iter()
        .filter_map(|r| r.event.as_ref())
        .find(|e| e.kind() == v1::audit_event_kind::Kind::Disposed && e.step == 2)
        .expect("step 2 disposed");
    assert_eq!(done.user, "kadis");
    assert_eq!(done.role, "kepala_dinas");
    match &done.detail {
        Some(v1::audit_event::Detail::Disposed(d)) => {
            assert_eq!(d.note.as_deref(), Some("segera ditangani"));
        }
        other => panic!("{other:?}"),
    }
    // On the API audit trail exactly as the gRPC call.
    audited(
        &f,
        "\"outcome\":\"ok\",\"rpc\":\"/siaga.v1.Sop/DisposeTicket\",\"user\":\"kadis\"",
    )
    .await;
    audited(
        &f,
        "\"outcome\":\"PermissionDenied: step 2 belongs to kepala_dinas",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_form_without_the_sessions_token_is_refused_and_changes_nothing() {
    let f = Fixture::start_web().await;
    let id = at_kadis(&f, OWN).await;
    let mut kadis = logged_in(&f, KADIS).await;
    let mut hd = logged_in(&f, HELPDESK).await;
    let other_token = hd.get("/tiket").await.csrf();
    let own_token = kadis.get(&format!("/tiket/{id}")).await.csrf();
    assert_ne!(own_token, other_token);
    let path = format!("/tiket/{id}/disposisi");
    for fields in [
        vec![("catatan", "tanpa token")],
        vec![("csrf", ""), ("catatan", "token kosong")],
        vec![
            ("csrf", other_token.as_str()),
            ("catatan", "token sesi lain"),
        ],
    ] {
        let r = kadis.post(&path, &fields).await;
        assert_eq!(r.status, 403, "{fields:?}: {r:?}");
        assert!(r.body.contains("tidak sah untuk sesi Anda"), "{}", r.body);
    }
    for form in ["kembalikan", "status", "terima", "ukur"] {
        let r = kadis
            .post(&format!("/tiket/{id}/{form}"), &[("csrf", &other_token)])
            .await;
        assert_eq!(r.status, 403, "{form}: {r:?}");
    }
    let d = typed(&f, &id).await;
    assert_eq!(d.ticket.unwrap().step, 2, "nothing moved");
    assert!(
        !d.trail
            .iter()
            .filter_map(|r| r.event.as_ref())
            .any(|e| e.user == "kadis"),
        "nothing on the trail: {:?}",
        d.trail
    );
    // Not logged in: to the login page, nothing done.
    let mut stranger = Browser::new(&f).await;
    let r = stranger.post(&path, &[("csrf", &own_token)]).await;
    assert_eq!((r.status, r.location.as_str()), (303, "/masuk"));
    assert_eq!(typed(&f, &id).await.ticket.unwrap().step, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_opds_ticket_is_not_found_as_a_missing_one_is() {
    let f = Fixture::start_web().await;
    let own = f.ticket_of(OWN).await;
    let other = f.ticket_of(OTHER).await;
    let mut opd = logged_in(&f, PEMOHON).await;
    assert_eq!(opd.get(&format!("/tiket/{own}")).await.status, 200);
    let missing = opd.get("/tiket/PJ-2099-9999").await;
    assert_eq!(missing.status, 404);
    assert!(missing.body.contains("tidak ditemukan"), "{}", missing.body);
    let token = opd.get("/tiket").await.csrf();
    for path in [
        format!("/tiket/{other}"),
        format!("/tiket/{}", other.to_ascii_lowercase()),
    ] {
        let p = opd.get(&path).await;
        assert_eq!((p.status, &p.body), (404, &missing.body), "{path}");
    }
    // Nor can a form reach it.
    let p = opd
        .post(&format!("/tiket/{other}/disposisi"), &[("csrf", &token)])
        .await;
    assert_eq!((p.status, &p.body), (404, &missing.body));
    // The queue lists the own OPD's tickets only.
    let q = opd.get("/tiket").await;
    assert!(q.body.contains(&format!("data-tiket=\"{own}\"")));
    assert!(!q.body.contains(&other), "{}", q.body);
}

/// Disposes ticket `id` over gRPC as each of `roles` in turn.
async fn dispose_as(f: &Fixture, id: &str, roles: &[&str]) {
    for role in roles {
        let no_measurement_reason =
            (*role == "tim_teknis").then(|| "perangkat diganti baru".to_string());
        SopClient::new(f.as_role(role))
            .dispose_ticket(v1::DisposeTicketRequest {
                id: id.into(),
                no_measurement_reason,
                ..Default::default()
            })
            .await
            .unwrap_or_else(|s| panic!("{role} disposes {id}: {s}"));
    }
}

/// The work report over gRPC, as `siaga ticket report` fetches it.
async fn grpc_report(f: &Fixture, id: &str, format: &str) -> crate::api::document::Received {
    let s = v1::reports_client::ReportsClient::new(f.as_role("helpdesk"))
        .get_report(v1::GetReportRequest {
            ticket: id.into(),
            format: format.into(),
            lang: "id".into(),
        })
        .await
        .unwrap()
        .into_inner();
    crate::api::document::receive(s).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_report_page_acknowledges_reviews_and_its_pdf_is_the_frozen_report() {
    let f = Fixture::start_web().await;
    let id = f.ticket_of(OWN).await;
    let other = f.ticket_of(OTHER).await;
    dispose_as(
        &f,
        &id,
        &[
            "pemohon",
            "kepala_dinas",
            "kabid_aptika",
            "pranata_komputer",
            "helpdesk",
        ],
    )
    .await;
    // At the work step the OPD acknowledges the report from its page.
    let mut opd = logged_in(&f, PEMOHON).await;
    let page = opd.get(&format!("/tiket/{id}/laporan")).await;
    assert_eq!(page.status, 200, "{page:?}");
    assert!(page.body.contains("LAPORAN PEKERJAAN"), "{}", page.body);
    assert!(page.body.contains("Draf: belum ditinjau"));
    assert!(
        page.body
            .contains(&format!("href=\"/tiket/{id}/laporan.pdf\""))
    );
    assert!(page.body.contains("id=\"terima\"") && !page.body.contains("id=\"tinjau\""));
    let r = opd
        .post(
            &format!("/tiket/{id}/terima"),
            &[
                ("csrf", &page.csrf()),
                ("oleh", "Andi Wijaya, Kasubag Umum"),
                ("kembali", "laporan"),
            ],
        )
        .await;
    assert_eq!(
        (r.status, r.location.as_str()),
        (303, &*format!("/tiket/{id}/laporan")),
        "{r:?}"
    );
    let page = opd.get(&format!("/tiket/{id}/laporan")).await;
    assert!(
        page.body.contains("Laporan pekerjaan diterima."),
        "{}",
        page.body
    );
    assert_eq!(
        typed(&f, &id).await.ticket.unwrap().acknowledged_by,
        "Andi Wijaya, Kasubag Umum"
    );
    // The pemohon's report of another OPD: as missing, page and PDF alike.
    let missing = opd.get("/tiket/PJ-2099-9999/laporan").await;
    assert_eq!(missing.status, 404);
    for path in [
        format!("/tiket/{other}/laporan"),
        format!("/tiket/{other}/laporan.pdf"),
        "/tiket/PJ-2099-9999/laporan.pdf".to_string(),
    ] {
        let p = opd.get(&path).await;
        assert_eq!((p.status, &p.body), (404, &missing.body), "{path}");
    }

    dispose_as(
        &f,
        &id,
        &["tim_teknis", "helpdesk", "pranata_komputer", "kabid_aptika"],
    )
    .await;
    // The Kepala Dinas reviews from the report page: the report is frozen.
    let mut kadis = logged_in(&f, KADIS).await;
    let page = kadis.get(&format!("/tiket/{id}/laporan")).await;
    assert!(page.body.contains("id=\"tinjau\""), "{}", page.body);
    assert!(!page.body.contains("id=\"terima\""));
    let r = kadis
        .post(
            &format!("/tiket/{id}/disposisi"),
            &[
                ("csrf", &page.csrf()),
                ("catatan", "laporan diterima"),
                ("kembali", "laporan"),
            ],
        )
        .await;
    assert_eq!(r.status, 303, "{r:?}");
    let page = kadis.get(&format!("/tiket/{id}/laporan")).await;
    assert!(page.body.contains("Laporan final"), "{}", page.body);
    assert!(!page.body.contains("id=\"tinjau\""));
    assert!(typed(&f, &id).await.ticket.unwrap().closed);
    let pdf = kadis.bytes(&format!("/tiket/{id}/laporan.pdf")).await;
    assert_eq!(pdf.0, 200);
    assert_eq!(pdf.1, "application/pdf");
    let frozen = grpc_report(&f, &id, "pdf").await;
    assert!(frozen.info.r#final);
    assert!(pdf.2.starts_with(b"%PDF"));
    assert_eq!(pdf.2, frozen.bytes, "the PDF link serves the frozen report");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_register_is_scoped_as_get_register_is() {
    let f = Fixture::start_web().await;
    let own = f.ticket_of(OWN).await;
    let other = f.ticket_of(OTHER).await;
    let today = chrono::Utc::now()
        .with_timezone(&chrono_tz::Asia::Jakarta)
        .date_naive();
    let period = format!(
        "dari={}&sampai={}",
        today - chrono::Duration::days(1),
        today + chrono::Duration::days(1)
    );
    let mut opd = logged_in(&f, PEMOHON).await;
    let form = opd.get("/register").await;
    assert_eq!(form.status, 200);
    assert!(form.body.contains("id=\"register\""), "{}", form.body);
    let (status, mime, csv) = opd.bytes(&format!("/register?{period}&format=csv")).await;
    assert_eq!((status, mime.as_str()), (200, "text/csv; charset=utf-8"));
    let csv = String::from_utf8(csv).unwrap();
    assert!(csv.contains(&own), "{csv}");
    assert!(!csv.contains(&other) && !csv.contains("dishub"), "{csv}");
    // Asking for the other OPD by name: its tickets stay out.
    let (_, _, csv) = opd
        .bytes(&format!("/register?{period}&format=csv&opd=dishub"))
        .await;
    assert!(!String::from_utf8(csv).unwrap().contains(&other));
    let mut hd = logged_in(&f, HELPDESK).await;
    let (_, _, csv) = hd.bytes(&format!("/register?{period}&format=csv")).await;
    let csv = String::from_utf8(csv).unwrap();
    assert!(csv.contains(&own) && csv.contains(&other), "{csv}");
    let (status, mime, xlsx) = hd.bytes(&format!("/register?{period}&format=xlsx")).await;
    assert_eq!(status, 200);
    assert!(mime.contains("spreadsheetml"), "{mime}");
    assert!(xlsx.starts_with(b"PK"));
    // A period backwards: the service's message on the form.
    let p = hd
        .get(&format!(
            "/register?dari={today}&sampai={}&format=csv",
            today - chrono::Duration::days(3)
        ))
        .await;
    assert_eq!(p.status, 400);
    assert!(p.body.contains("is before from"), "{}", p.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pemohon_enters_a_letter_checked_as_new_ticket_checks_it() {
    let f = Fixture::start_web().await;
    let mut opd = logged_in(&f, PEMOHON).await;
    let form = opd.get("/tiket/baru").await;
    assert_eq!(form.status, 200, "{form:?}");
    // Their own OPD and its devices only.
    assert!(form.body.contains("value=\"dinkes\""), "{}", form.body);
    assert!(form.body.contains("dinkes-sw") && !form.body.contains("dishub"));
    let csrf = form.csrf();
    let today = chrono::Utc::now()
        .with_timezone(&chrono_tz::Asia::Jakarta)
        .date_naive();
    let letter = |number: &'static str, date: String| {
        vec![
            ("opd", "dinkes".to_string()),
            ("nomor", number.to_string()),
            ("tanggal", date),
            ("perihal", "Internet putus di lantai 2".to_string()),
            ("perangkat", "dinkes-sw".to_string()),
        ]
    };
    async fn send(b: &mut Browser, csrf: &str, fields: Vec<(&'static str, String)>) -> Page {
        let mut refs: Vec<(&str, &str)> = vec![("csrf", csrf)];
        refs.extend(fields.iter().map(|(k, v)| (*k, v.as_str())));
        b.post("/tiket/baru", &refs).await
    }
    // A date in the future: refused with the service's words, the form kept.
    let r = send(
        &mut opd,
        &csrf,
        letter(
            "005/9/DINKES",
            (today + chrono::Duration::days(30)).to_string(),
        ),
    )
    .await;
    assert_eq!(r.status, 400, "{r:?}");
    assert!(r.body.contains("is in the future"), "{}", r.body);
    assert!(r.body.contains("value=\"005/9/DINKES\""), "{}", r.body);
    // The letter: a ticket at step 1, then the same letter again: the same ticket.
    let r = send(&mut opd, &csrf, letter("005/9/DINKES", today.to_string())).await;
    assert_eq!(r.status, 303, "{r:?}");
    let first = r.location.clone();
    assert!(first.starts_with("/tiket/PJ-"), "{first}");
    let page = opd.get(&first).await;
    assert!(
        page.body.contains("dibuat dari surat 005/9/DINKES"),
        "{}",
        page.body
    );
    let r = send(&mut opd, &csrf, letter("005/9/DINKES", today.to_string())).await;
    assert_eq!((r.status, &r.location), (303, &first));
    let page = opd.get(&first).await;
    assert!(
        page.body.contains("sudah tercatat sebagai tiket"),
        "{}",
        page.body
    );
    let id = first.trim_start_matches("/tiket/");
    let t = typed(&f, id).await.ticket.unwrap();
    assert_eq!(
        (t.opd.as_str(), t.step, t.device.as_str()),
        ("dinkes", 1, "dinkes-sw")
    );
    // Another OPD's letter: that OPD is not found for them.
    let mut other = letter("1/DISHUB", today.to_string());
    other[0].1 = "dishub".into();
    other[4].1 = String::new();
    let r = send(&mut opd, &csrf, other).await;
    assert_eq!(r.status, 400, "{r:?}");
    assert!(r.body.contains("no OPD dishub"), "{}", r.body);
    audited(
        &f,
        "\"outcome\":\"ok\",\"rpc\":\"/siaga.v1.Tickets/NewTicket\",\"user\":\"opd\"",
    )
    .await;
    // Who may not enter letters is not shown the form.
    let mut kadis = logged_in(&f, KADIS).await;
    assert_eq!(kadis.get("/tiket/baru").await.status, 403);
    assert!(
        !kadis
            .get("/tiket")
            .await
            .body
            .contains("href=\"/tiket/baru\"")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_technician_measures_from_the_ticket_page() {
    let f = Fixture::start_web().await;
    let today = chrono::Utc::now()
        .with_timezone(&chrono_tz::Asia::Jakarta)
        .date_naive();
    let id = TicketsClient::new(f.as_role("helpdesk"))
        .new_ticket(v1::NewTicketRequest {
            opd: OWN.into(),
            letter_number: "7/ukur".into(),
            letter_date: today.to_string(),
            subject: "Switch lantai 2 lambat".into(),
            device: "dinkes-sw".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .ticket
        .unwrap()
        .id;
    dispose_as(
        &f,
        &id,
        &[
            "pemohon",
            "kepala_dinas",
            "kabid_aptika",
            "pranata_komputer",
            "helpdesk",
        ],
    )
    .await;
    let mut teknisi = logged_in(&f, ("teknisi", "rahasia-teknisi-1")).await;
    let p = teknisi.get(&format!("/tiket/{id}")).await;
    for form in ["disposisi", "tanpa_ukur", "perbarui", "ukur", "kembalikan"] {
        assert!(
            p.body.contains(&format!("id=\"{form}\"")),
            "{form}: {}",
            p.body
        );
    }
    assert!(!p.body.contains("id=\"terima\""), "{}", p.body);
    // No agent of dinkes is connected: refused, unless queued.
    let r = teknisi
        .post(
            &format!("/tiket/{id}/ukur"),
            &[("csrf", &p.csrf()), ("tahap", "before")],
        )
        .await;
    assert_eq!(r.status, 303, "{r:?}");
    let said = teknisi.get(&format!("/tiket/{id}")).await;
    assert!(said.body.contains("class=\"pesan\""), "{}", said.body);
    let r = teknisi
        .post(
            &format!("/tiket/{id}/ukur"),
            &[("csrf", &p.csrf()), ("tahap", "before"), ("antre", "1")],
        )
        .await;
    assert_eq!(r.status, 303, "{r:?}");
    let page = teknisi.get(&format!("/tiket/{id}")).await;
    assert!(page.body.contains("dimulai (queued)"), "{}", page.body);
    assert!(page.body.contains("<td>sebelum</td>"), "{}", page.body);
    audited(
        &f,
        "\"outcome\":\"ok\",\"rpc\":\"/siaga.v1.Measure/MeasureTicket\",\"user\":\"teknisi\"",
    )
    .await;
    // The status form: the follow-up status, as the service keeps it.
    let r = teknisi
        .post(
            &format!("/tiket/{id}/status"),
            &[("csrf", &p.csrf()), ("status", "menuju lokasi")],
        )
        .await;
    assert_eq!(r.status, 303);
    let page = teknisi.get(&format!("/tiket/{id}")).await;
    assert!(page.body.contains("Status tercatat."), "{}", page.body);
    assert_eq!(typed(&f, &id).await.ticket.unwrap().status, "menuju lokasi");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dispose_form_lists_whom_the_sop_takes_and_the_service_refuses_others() {
    let f = Fixture::start_web().await;
    let id = at_kadis(&f, OWN).await;
    let mut kadis = logged_in(&f, KADIS).await;
    let p = kadis.get(&format!("/tiket/{id}")).await;
    assert_eq!(p.status, 200, "{p:?}");
    // Step 3, next, is the Kabid's: of the fixture's people, only kabid.
    let form = section(&p, "disposisi");
    let select = &form[form.find("<select").expect("a select")..];
    let select = &select[..select.find("</select>").expect("its end")];
    let values: Vec<&str> = select
        .split("<option value=\"")
        .skip(1)
        .map(|o| &o[..o.find('"').unwrap()])
        .collect();
    assert_eq!(values, ["", "kabid"], "{select}");
    assert!(select.contains("kabid (kabid_aptika)"), "{select}");
    // Whoever is not listed, posted anyway, is refused by the service.
    let r = kadis
        .post(
            &format!("/tiket/{id}/disposisi"),
            &[("csrf", &p.csrf()), ("ke", "hd")],
        )
        .await;
    assert_eq!(r.status, 303, "{r:?}");
    let again = kadis.get(&format!("/tiket/{id}")).await;
    assert!(
        again.body.contains("hd cannot take step 3"),
        "{}",
        again.body
    );
    assert_eq!(typed(&f, &id).await.ticket.unwrap().step, 2);
    // One listed is taken.
    let r = kadis
        .post(
            &format!("/tiket/{id}/disposisi"),
            &[("csrf", &p.csrf()), ("ke", "kabid")],
        )
        .await;
    assert_eq!(r.status, 303, "{r:?}");
    let t = typed(&f, &id).await.ticket.unwrap();
    assert_eq!((t.step, t.assignee.as_str()), (3, "kabid"));
    // The Kabid's form names those who may take step 4.
    let mut kabid = logged_in(&f, ("kabid", "rahasia-kabid-123")).await;
    let p = kabid.get(&format!("/tiket/{id}")).await;
    let form = section(&p, "disposisi");
    assert!(form.contains("<option value=\"prakom\">"), "{form}");
    assert!(!form.contains("<option value=\"kabid\">"), "{form}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ticket_page_names_roles_as_the_sop_file_does() {
    let mut f = Fixture::start_web().await;
    // An office renames two roles in its SOP file; the page follows it.
    let sop = std::fs::read_to_string(&f.cfg.sop).unwrap();
    let renamed = sop
        .replace("name = \"Kepala Dinas\"", "name = \"Kepala Dinas Kominfo\"")
        .replace(
            "name = \"Kepala Bidang Aplikasi dan Informatika\"",
            "name = \"Kabid APTIKA Kominfo\"",
        );
    assert_ne!(renamed, sop);
    std::fs::write(&f.cfg.sop, renamed).unwrap();
    f.restart().await;
    let id = at_kadis(&f, OWN).await;
    let mut kadis = logged_in(&f, KADIS).await;
    let p = kadis.get(&format!("/tiket/{id}")).await;
    assert_eq!(p.status, 200, "{p:?}");
    assert!(p.body.contains("2 · Kepala Dinas Kominfo"), "{}", p.body);
    let r = kadis
        .post(
            &format!("/tiket/{id}/disposisi"),
            &[("csrf", &p.csrf()), ("catatan", "segera")],
        )
        .await;
    assert_eq!(r.status, 303, "{r:?}");
    let after = kadis.get(&format!("/tiket/{id}")).await;
    assert!(
        after
            .body
            .contains("sekarang di langkah 3 (Kabid APTIKA Kominfo)"),
        "{}",
        after.body
    );
    assert!(
        after.body.contains("3 · Kabid APTIKA Kominfo"),
        "{}",
        after.body
    );
    // The step the Kepala Dinas took, in the timeline.
    assert!(
        after.body.contains("(Kepala Dinas Kominfo)"),
        "{}",
        after.body
    );
}
