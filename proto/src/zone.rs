//! The province's time zone: its fixed offset and abbreviation ("WIB"), as
//! the collector's calendar and the people's CLI both read it.

use chrono::{Datelike, FixedOffset, NaiveDate, NaiveTime, Offset, TimeZone, Utc};

/// A time zone Siaga cannot count working time in.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ZoneError {
    /// Not a zone of the time-zone database.
    #[error(
        "{0:?} is not an IANA time zone (e.g. \"Asia/Jakarta\" for WIB, \"Asia/Makassar\" for WITA, \"Asia/Jayapura\" for WIT)"
    )]
    Unknown(String),
    /// A zone whose offset changes during the year.
    #[error(
        "{0} has daylight saving time; Siaga's working-time arithmetic needs a zone with one offset all year (the Indonesian zones have)"
    )]
    DaylightSaving(String),
}

/// The UTC offset and abbreviation of IANA zone `name`, refusing a name
/// the database does not know and a zone with daylight saving time.
pub fn offset(name: &str) -> Result<(FixedOffset, String), ZoneError> {
    use chrono_tz::OffsetName;
    let tz: chrono_tz::Tz = name
        .trim()
        .parse()
        .map_err(|_| ZoneError::Unknown(name.to_string()))?;
    let year = Utc::now().year();
    let at = |month| {
        let t = NaiveDate::from_ymd_opt(year, month, 1)
            .unwrap_or_default()
            .and_time(NaiveTime::MIN);
        tz.offset_from_utc_datetime(&t)
    };
    let (jan, jul) = (at(1), at(7));
    if jan.fix() != jul.fix() {
        return Err(ZoneError::DaylightSaving(name.trim().to_string()));
    }
    let abbr = jan
        .abbreviation()
        .filter(|a| !a.starts_with(['+', '-']))
        .map_or_else(|| format!("UTC{}", jan.fix()), str::to_string);
    Ok((jan.fix(), abbr))
}
