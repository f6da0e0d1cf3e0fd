//! The report's two languages: labels and number formats. Bahasa Indonesia
//! writes a decimal comma ("50,0 %"), English a decimal point.

use crate::sop::Lang;

/// The Indonesian or the English text.
pub fn tr(lang: Lang, id: &'static str, en: &'static str) -> &'static str {
    match lang {
        Lang::Id => id,
        Lang::En => en,
    }
}

/// `id` or `en`.
pub fn code(lang: Lang) -> &'static str {
    match lang {
        Lang::Id => "id",
        Lang::En => "en",
    }
}

/// `v` with `places` decimals in the language's format; never "-0".
pub fn decimal(lang: Lang, v: f64, places: usize) -> String {
    let mut s = format!("{v:.places$}");
    if s.starts_with('-') && s[1..].chars().all(|c| c == '0' || c == '.') {
        s.remove(0);
    }
    match lang {
        Lang::Id => s.replace('.', ","),
        Lang::En => s,
    }
}

/// Like [`decimal`], with a sign: "+1,5", "-0,3", "0,0".
pub fn signed(lang: Lang, v: f64, places: usize) -> String {
    let s = decimal(lang, v, places);
    if v > 0.0 && s.chars().any(|c| c.is_ascii_digit() && c != '0') {
        format!("+{s}")
    } else {
        s
    }
}

/// "50,0 %".
pub fn pct(lang: Lang, v: f64) -> String {
    format!("{} %", decimal(lang, v, 1))
}

/// Microseconds as "0,42 ms".
pub fn ms(lang: Lang, us: u64) -> String {
    format!("{} ms", decimal(lang, us as f64 / 1000.0, 2))
}

#[cfg(test)]
mod tests {
    use super::*;
    use test_case::test_case;

    #[test_case(Lang::Id, 50.0, 1, "50,0")]
    #[test_case(Lang::En, 50.0, 1, "50.0")]
    #[test_case(Lang::Id, -0.04, 1, "0,0" ; "no negative zero")]
    #[test_case(Lang::En, 1234.567, 2, "1234.57")]
    fn decimals(lang: Lang, v: f64, places: usize, want: &str) {
        assert_eq!(decimal(lang, v, places), want);
    }

    #[test_case(Lang::Id, 1.5, "+1,5")]
    #[test_case(Lang::Id, -50.0, "-50,0")]
    #[test_case(Lang::En, 0.01, "0.0")]
    fn signs(lang: Lang, v: f64, want: &str) {
        assert_eq!(signed(lang, v, 1), want);
    }

    #[test]
    fn units() {
        assert_eq!(pct(Lang::Id, 49.5), "49,5 %");
        assert_eq!(ms(Lang::En, 420), "0.42 ms");
    }
}
