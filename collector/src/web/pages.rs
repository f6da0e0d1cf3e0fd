//! The console's pages, server-rendered in Bahasa Indonesia, with a little
//! inline CSS that fits a phone and a wall screen alike.

use maud::{DOCTYPE, Markup, html};
use siaga_proto::v1::device_info::State;

/// One OPD's row on the board.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OpdCounts {
    /// OPD id.
    pub id: String,
    /// Its name.
    pub name: String,
    /// Devices per shown state.
    pub up: usize,
    /// Degraded (loss or slow).
    pub degraded: usize,
    /// Down.
    pub down: usize,
    /// Unreachable (their parent is down).
    pub unreachable: usize,
    /// Stale (readings stopped arriving).
    pub stale: usize,
    /// Unknown (no agent heard).
    pub unknown: usize,
    /// Covered by a maintenance window now (counted here, not by state).
    pub maintenance: usize,
}

impl OpdCounts {
    /// Counts one device in `state`.
    pub fn count(&mut self, state: State) {
        match state {
            State::Up => self.up += 1,
            State::Degraded => self.degraded += 1,
            State::Down => self.down += 1,
            State::Unreachable => self.unreachable += 1,
            State::Stale => self.stale += 1,
            State::Unknown | State::Unspecified => self.unknown += 1,
        }
    }

    /// Sort key: the worst OPD first (more down, then unreachable, then
    /// degraded, then stale and unknown), then by id.
    pub fn severity(&self) -> impl Ord + use<> {
        (
            std::cmp::Reverse(self.down),
            std::cmp::Reverse(self.unreachable),
            std::cmp::Reverse(self.degraded),
            std::cmp::Reverse(self.stale + self.unknown),
            self.id.clone(),
        )
    }

    fn class(&self) -> &'static str {
        if self.down + self.unreachable > 0 {
            "buruk"
        } else if self.degraded + self.stale + self.unknown > 0 {
            "waspada"
        } else {
            "baik"
        }
    }
}

const CSS: &str = "\
*{box-sizing:border-box}body{margin:0;font-family:system-ui,sans-serif;background:#f4f5f7;color:#1d2430}\
header{display:flex;gap:.5rem;align-items:center;justify-content:space-between;padding:.6rem 1rem;background:#123a6b;color:#fff}\
header h1{font-size:1.1rem;margin:0;flex:1 1 auto;min-width:0;overflow-wrap:anywhere}\
header form{margin:0;flex:none;display:flex;align-items:center;gap:.4rem;white-space:nowrap}\
main{max-width:60rem;margin:0 auto;padding:1rem}\
button{font:inherit;padding:.5rem 1rem;border:0;border-radius:.3rem;background:#1f5fae;color:#fff;cursor:pointer}\
header button{background:#2d4f7c}\
nav.tiket{display:flex;flex-wrap:wrap;gap:.8rem;margin-bottom:.8rem}\
label{display:block;margin:.8rem 0 .2rem}input{font:inherit;width:100%;padding:.5rem;border:1px solid #9aa5b1;border-radius:.3rem}\
.kartu{background:#fff;border-radius:.4rem;padding:1rem;box-shadow:0 1px 2px #0002}\
.masuk{max-width:24rem;margin:2rem auto}.masuk button{margin-top:1rem;width:100%}\
.pesan{padding:.6rem;border-radius:.3rem;background:#fde8e8;color:#8a1c1c;margin-bottom:.5rem}\
.opd{display:grid;grid-template-columns:repeat(auto-fill,minmax(17rem,1fr));gap:.8rem;list-style:none;padding:0}\
.opd li{background:#fff;border-radius:.4rem;padding:.8rem;border-left:.5rem solid #2e7d32;box-shadow:0 1px 2px #0002}\
.opd li.waspada{border-left-color:#e0a800}.opd li.buruk{border-left-color:#c62828}\
.opd h2{font-size:1rem;margin:0 0 .4rem}.opd dl{display:grid;grid-template-columns:repeat(3,1fr);gap:.2rem;margin:0}\
.opd dt{font-size:.75rem;color:#566}.opd dd{margin:0 0 .3rem;font-weight:600;font-size:1.2rem}\
@media (max-width:30rem){main{padding:.5rem}header{padding:.5rem}header h1{font-size:1rem}\
header button{padding:.4rem .7rem}.opd dl{grid-template-columns:repeat(2,1fr)}}";

/// A page of the console: `title`, the logged-in `user` (name and CSRF
/// token, for the logout form) when there is one, and `body`.
pub fn page(title: &str, user: Option<(&str, &str)>, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="id" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · Siaga" }
                style { (maud::PreEscaped(CSS)) }
            }
            body {
                header {
                    h1 { "Siaga · " (title) }
                    @if let Some((name, csrf)) = user {
                        form method="post" action="/keluar" {
                            input type="hidden" name="csrf" value=(csrf);
                            span { (name) " " }
                            button type="submit" { "Keluar" }
                        }
                    }
                }
                main { (body) }
            }
        }
    }
}

/// The login page, with `message` (a refusal) when there is one.
pub fn login(csrf: &str, name: &str, message: Option<&str>) -> Markup {
    page(
        "Masuk",
        None,
        html! {
            form.kartu.masuk method="post" action="/masuk" {
                @if let Some(m) = message {
                    p.pesan role="alert" { (m) }
                }
                input type="hidden" name="csrf" value=(csrf);
                label for="nama" { "Nama pengguna" }
                input #nama name="nama" autocomplete="username" required value=(name);
                label for="sandi" { "Kata sandi" }
                input #sandi type="password" name="sandi" autocomplete="current-password" required;
                button type="submit" { "Masuk" }
            }
        },
    )
}

/// The login's second step: the password was right, only the second
/// factor's code is asked (the pending login's cookie says who).
pub fn login_code(csrf: &str, name: &str, message: Option<&str>) -> Markup {
    page(
        "Masuk",
        None,
        html! {
            form.kartu.masuk method="post" action="/masuk/kode" {
                @if let Some(m) = message {
                    p.pesan role="alert" { (m) }
                }
                p { "Masuk sebagai " strong { (name) } ". Masukkan kode 6 angka dari aplikasi autentikator Anda." }
                input type="hidden" name="csrf" value=(csrf);
                label for="kode" { "Kode autentikator (6 angka)" }
                input #kode name="kode" inputmode="numeric" pattern="[0-9]{6}" maxlength="6"
                    autocomplete="one-time-code" required autofocus;
                button type="submit" { "Lanjut" }
                p { a href="/masuk" { "Batal, masuk sebagai orang lain" } }
            }
        },
    )
}

/// The status board: every OPD the person sees, worst first; it keeps
/// itself current from `/papan/langsung` (server-sent events) when the
/// browser can; above it `nav`, the links the person has.
pub fn board(user: &str, csrf: &str, nav: Markup, opds: &[OpdCounts], at: &str) -> Markup {
    page(
        "Papan status",
        Some((user, csrf)),
        html! {
            (nav)
            // htmx's SSE extension swaps each event (the board's body) in;
            // without script the board is a plain page.
            div hx-ext="sse" sse-connect="/papan/langsung" sse-swap="message" {
                (board_body(opds, at))
            }
            (scripts())
        },
    )
}

/// What the board's live updates replace: the time and the OPDs.
pub fn board_body(opds: &[OpdCounts], at: &str) -> Markup {
    html! {
        div #papan {
            p { "Keadaan perangkat per OPD, yang terburuk di atas. Per " (at) "." }
            @if opds.is_empty() {
                p.kartu { "Tidak ada OPD yang dapat Anda lihat." }
            }
            ul.opd {
                @for o in opds {
                    li class=(o.class()) data-opd=(o.id) {
                        h2 { a href={ "/opd/" (super::access::segment(&o.id)) } { (o.name) } }
                        dl {
                            div { dt { "Mati" } dd.down { (o.down) } }
                            div { dt { "Tak terjangkau" } dd.unreachable { (o.unreachable) } }
                            div { dt { "Menurun" } dd.degraded { (o.degraded) } }
                            div { dt { "Basi" } dd.stale { (o.stale) } }
                            div { dt { "Tak diketahui" } dd.unknown { (o.unknown) } }
                            div { dt { "Hidup" } dd.up { (o.up) } }
                            div { dt { "Pemeliharaan" } dd.maintenance { (o.maintenance) } }
                        }
                    }
                }
            }
        }
    }
}

/// The vendored scripts (served by the console itself), with htmx held to
/// what the page's policy allows: no eval, no injected style.
fn scripts() -> Markup {
    html! {
        (htmx())
        script src=(super::assets::SSE_PATH) {}
    }
}

/// The vendored htmx alone, held as [`scripts`] holds it.
pub(super) fn htmx() -> Markup {
    html! {
        meta name="htmx-config" content=r#"{"allowEval":false,"includeIndicatorStyles":false,"selfRequestsOnly":true}"#;
        script src=(super::assets::HTMX_PATH) {}
    }
}

/// A short page for a refusal or a missing page.
pub fn notice(title: &str, message: &str) -> Markup {
    page(
        title,
        None,
        html! {
            div.kartu {
                p { (message) }
                p { a href="/masuk" { "Ke halaman masuk" } }
            }
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opd(id: &str, states: &[State]) -> OpdCounts {
        let mut o = OpdCounts {
            id: id.into(),
            name: id.into(),
            ..Default::default()
        };
        for s in states {
            o.count(*s);
        }
        o
    }

    #[test]
    fn the_worst_opd_comes_first() {
        let mut v = [
            opd("a", &[State::Up, State::Up]),
            opd("b", &[State::Down, State::Up]),
            opd("c", &[State::Unreachable, State::Unreachable]),
            opd("d", &[State::Down, State::Degraded]),
            opd("e", &[State::Stale]),
            opd("f", &[State::Degraded]),
        ];
        v.sort_by_key(OpdCounts::severity);
        let order: Vec<_> = v.iter().map(|o| o.id.as_str()).collect();
        assert_eq!(order, ["d", "b", "c", "f", "e", "a"]);
        assert_eq!(v[0].class(), "buruk");
        assert_eq!(v[3].class(), "waspada");
        assert_eq!(v[5].class(), "baik");
    }

    #[test]
    fn what_a_person_typed_is_escaped() {
        let html = login("t", "<script>x</script>", Some("a & b")).into_string();
        assert!(html.contains("&lt;script&gt;"), "{html}");
        assert!(html.contains("a &amp; b"));
        assert!(!html.contains("<script>"));
    }
}
