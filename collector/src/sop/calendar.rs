//! The business calendar (`[calendar]` in collector.toml) and working-time arithmetic.
//!
//! "1 hari" in the SOP is one working day (the length of the working day on this
//! calendar), "1 jam" one working hour. The clock runs only on working days,
//! between `start` and `end`, outside holidays.
//!
//! The province's time is one IANA zone name (`time_zone`, e.g.
//! `Asia/Jakarta`, `Asia/Makassar`, `Asia/Jayapura`); its UTC offset and
//! abbreviation (WIB, WITA, WIT) come from the time-zone database. The
//! Indonesian zones have no daylight saving time, so that offset is exact
//! all year; a zone that has one is refused.

use std::collections::BTreeSet;

use chrono::{
    DateTime, Datelike, Duration, FixedOffset, NaiveDate, NaiveTime, Offset, TimeZone, Utc, Weekday,
};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::model::WorkDuration;

/// `[calendar]` in collector.toml.
///
/// ```toml
/// [calendar]
/// working_days = ["Mon", "Tue", "Wed", "Thu", "Fri"]
/// start = "07:30"
/// end = "16:00"
/// time_zone = "Asia/Jakarta"
/// holidays = ["2026-08-17", "2026-12-25"]
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CalendarConfig {
    /// Days the clock runs, as "Mon" … "Sun". Default Monday to Friday.
    pub working_days: Vec<Weekday>,
    /// Start of the working day, local time "HH:MM". Default "07:30".
    #[serde(with = "hhmm")]
    pub start: NaiveTime,
    /// End of the working day, local time "HH:MM". Default "16:00".
    #[serde(with = "hhmm")]
    pub end: NaiveTime,
    /// Offset of local time from UTC, "+07:00". Optional: it follows from
    /// `time_zone`; when given it must agree with it (older files set both).
    #[serde(with = "offset", skip_serializing_if = "Option::is_none")]
    pub utc_offset: Option<FixedOffset>,
    /// The province's IANA time zone. Default "Asia/Jakarta" (WIB).
    pub time_zone: String,
    /// Holidays (no working time), "YYYY-MM-DD" strings or TOML dates.
    #[serde(
        deserialize_with = "dates::deserialize",
        serialize_with = "dates::serialize"
    )]
    pub holidays: Vec<NaiveDate>,
}

impl Default for CalendarConfig {
    fn default() -> Self {
        CalendarConfig {
            working_days: vec![
                Weekday::Mon,
                Weekday::Tue,
                Weekday::Wed,
                Weekday::Thu,
                Weekday::Fri,
            ],
            start: NaiveTime::from_hms_opt(7, 30, 0).unwrap_or_default(),
            end: NaiveTime::from_hms_opt(16, 0, 0).unwrap_or_default(),
            utc_offset: None,
            time_zone: "Asia/Jakarta".into(),
            holidays: Vec::new(),
        }
    }
}

/// A calendar config that cannot work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CalendarError {
    /// No working days at all: no deadline could ever be reached.
    #[error("calendar.working_days: no working days")]
    NoWorkingDays,
    /// Not a zone of the time-zone database.
    #[error(
        "calendar.time_zone: {0:?} is not an IANA time zone (e.g. \"Asia/Jakarta\" for WIB, \"Asia/Makassar\" for WITA, \"Asia/Jayapura\" for WIT)"
    )]
    UnknownZone(String),
    /// A zone whose offset changes during the year.
    #[error(
        "calendar.time_zone: {0} has daylight saving time; Siaga's working-time arithmetic needs a zone with one offset all year (the Indonesian zones have)"
    )]
    DaylightSaving(String),
    /// `utc_offset` given and not the zone's.
    #[error(
        "calendar.utc_offset: {given} disagrees with time_zone {zone} ({derived}, {abbr}); remove utc_offset (it follows from time_zone) or correct one of them"
    )]
    OffsetDisagrees {
        /// utc_offset as written
        given: FixedOffset,
        /// time_zone
        zone: String,
        /// the zone's offset
        derived: FixedOffset,
        /// the zone's abbreviation
        abbr: String,
    },
    /// The day ends before it starts.
    #[error("calendar.end: {end} is not after calendar.start {start}")]
    EndBeforeStart {
        /// start
        start: NaiveTime,
        /// end
        end: NaiveTime,
    },
}

/// The province's time zone, for writing moments in sentences people read
/// ("2026-12-07 14:34 WIB").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Zone {
    offset: FixedOffset,
    abbr: String,
}

impl Default for Zone {
    fn default() -> Self {
        Zone {
            offset: Utc.fix(),
            abbr: "UTC".into(),
        }
    }
}

impl Zone {
    /// µs since the epoch as "2026-12-07 14:34 WIB".
    pub fn fmt_us(&self, us: i64) -> String {
        DateTime::from_timestamp_micros(us).map_or_else(
            || us.to_string(),
            |t| {
                format!(
                    "{} {}",
                    t.with_timezone(&self.offset).format("%Y-%m-%d %H:%M"),
                    self.abbr
                )
            },
        )
    }
}

/// A validated business calendar.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Calendar {
    days: [bool; 7],
    start: NaiveTime,
    end: NaiveTime,
    offset: FixedOffset,
    zone: String,
    abbr: String,
    holidays: BTreeSet<NaiveDate>,
}

impl Default for Calendar {
    fn default() -> Self {
        // The default config is valid by construction (checked by a test).
        Calendar::new(&CalendarConfig::default()).unwrap_or_else(|_| Calendar {
            days: [true, true, true, true, true, false, false],
            start: NaiveTime::MIN,
            end: NaiveTime::from_hms_opt(23, 0, 0).unwrap_or(NaiveTime::MIN),
            offset: Utc.fix(),
            zone: "UTC".into(),
            abbr: "UTC".into(),
            holidays: BTreeSet::new(),
        })
    }
}

impl Calendar {
    /// Check a config and build the calendar.
    pub fn new(cfg: &CalendarConfig) -> Result<Self, CalendarError> {
        if cfg.end <= cfg.start {
            return Err(CalendarError::EndBeforeStart {
                start: cfg.start,
                end: cfg.end,
            });
        }
        let mut days = [false; 7];
        for d in &cfg.working_days {
            days[d.num_days_from_monday() as usize] = true;
        }
        if !days.iter().any(|d| *d) {
            return Err(CalendarError::NoWorkingDays);
        }
        let (offset, abbr) = zone_offset(&cfg.time_zone)?;
        if let Some(given) = cfg.utc_offset
            && given != offset
        {
            return Err(CalendarError::OffsetDisagrees {
                given,
                zone: cfg.time_zone.trim().to_string(),
                derived: offset,
                abbr,
            });
        }
        Ok(Calendar {
            days,
            start: cfg.start,
            end: cfg.end,
            offset,
            zone: cfg.time_zone.trim().to_string(),
            abbr,
            holidays: cfg.holidays.iter().copied().collect(),
        })
    }

    /// Length of one working day ("1 hari").
    pub fn day_length(&self) -> Duration {
        self.end - self.start
    }

    /// The time zone's IANA name ("Asia/Jakarta").
    pub fn zone_name(&self) -> &str {
        &self.zone
    }

    /// The zone's abbreviation as people read it ("WIB", "WITA", "WIT").
    pub fn zone_abbr(&self) -> &str {
        &self.abbr
    }

    /// The zone's offset from UTC.
    pub fn offset(&self) -> FixedOffset {
        self.offset
    }

    /// The zone alone, for sentences.
    pub fn zone(&self) -> Zone {
        Zone {
            offset: self.offset,
            abbr: self.abbr.clone(),
        }
    }

    /// `t` in local time.
    pub fn local(&self, t: DateTime<Utc>) -> DateTime<FixedOffset> {
        t.with_timezone(&self.offset)
    }

    /// "2026-11-24 10:00" in local time.
    pub fn fmt_local(&self, t: DateTime<Utc>) -> String {
        self.local(t).format("%Y-%m-%d %H:%M").to_string()
    }

    /// The local date of `t`.
    pub fn local_date(&self, t: DateTime<Utc>) -> NaiveDate {
        self.local(t).date_naive()
    }

    /// Whether the clock runs on this (local) date.
    pub fn is_working_day(&self, date: NaiveDate) -> bool {
        self.days[date.weekday().num_days_from_monday() as usize] && !self.holidays.contains(&date)
    }

    fn at(&self, date: NaiveDate, time: NaiveTime) -> DateTime<Utc> {
        let naive = date.and_time(time);
        // A fixed offset maps every local time to exactly one instant.
        match self.offset.from_local_datetime(&naive) {
            chrono::LocalResult::Single(t) => t.with_timezone(&Utc),
            _ => Utc.from_utc_datetime(&(naive - self.offset_duration())),
        }
    }

    fn offset_duration(&self) -> Duration {
        Duration::seconds(i64::from(self.offset.local_minus_utc()))
    }

    /// The working interval of a date, if it is a working day.
    fn window(&self, date: NaiveDate) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
        self.is_working_day(date)
            .then(|| (self.at(date, self.start), self.at(date, self.end)))
    }

    /// The instant when `amount` of working time, counted from `start`, has passed.
    /// Starting outside working hours counts from the next opening; a deadline that
    /// falls exactly at closing time is that closing time, not the next opening.
    pub fn add_working(&self, start: DateTime<Utc>, amount: Duration) -> DateTime<Utc> {
        if amount <= Duration::zero() {
            return start;
        }
        let mut left = amount;
        let mut date = self.local_date(start);
        // Bounded: every 7 days hold a working day unless all are holidays; 100 years is plenty.
        for _ in 0..(366 * 100) {
            if let Some((open, close)) = self.window(date) {
                let from = start.max(open);
                if from < close {
                    let room = close - from;
                    if left <= room {
                        return from + left;
                    }
                    left -= room;
                }
            }
            date = match date.succ_opt() {
                Some(d) => d,
                None => break,
            };
        }
        start + amount
    }

    /// Working time between `a` and `b` (zero if `b` is not after `a`).
    pub fn working_between(&self, a: DateTime<Utc>, b: DateTime<Utc>) -> Duration {
        if b <= a {
            return Duration::zero();
        }
        let mut total = Duration::zero();
        let mut date = self.local_date(a);
        let last = self.local_date(b);
        while date <= last {
            if let Some((open, close)) = self.window(date) {
                let (from, to) = (a.max(open), b.min(close));
                if to > from {
                    total += to - from;
                }
            }
            date = match date.succ_opt() {
                Some(d) => d,
                None => break,
            };
        }
        total
    }

    /// The length of a standard: working days of this calendar, or 24-hour days when urgent.
    pub fn span(&self, d: WorkDuration, urgent: bool) -> Duration {
        let day = if urgent {
            Duration::days(1)
        } else {
            self.day_length()
        };
        day * i32::try_from(d.days).unwrap_or(i32::MAX) + Duration::minutes(i64::from(d.minutes))
    }

    /// When `d` counted from `start` runs out (calendar time when `urgent`).
    pub fn deadline(&self, start: DateTime<Utc>, d: WorkDuration, urgent: bool) -> DateTime<Utc> {
        let span = self.span(d, urgent);
        if urgent {
            start + span
        } else {
            self.add_working(start, span)
        }
    }

    /// Time counted between `a` and `b` (calendar time when `urgent`).
    pub fn elapsed(&self, a: DateTime<Utc>, b: DateTime<Utc>, urgent: bool) -> Duration {
        if urgent {
            (b - a).max(Duration::zero())
        } else {
            self.working_between(a, b)
        }
    }
}

mod hhmm {
    use super::*;
    pub fn serialize<S: Serializer>(t: &NaiveTime, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&t.format("%H:%M").to_string())
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<NaiveTime, D::Error> {
        let text = String::deserialize(d)?;
        NaiveTime::parse_from_str(&text, "%H:%M")
            .or_else(|_| NaiveTime::parse_from_str(&text, "%H:%M:%S"))
            .map_err(|_| serde::de::Error::custom(format!("`{text}` is not a time like \"07:30\"")))
    }
}

/// The UTC offset and abbreviation of IANA zone `name`, refusing a name
/// the database does not know and a zone with daylight saving time.
pub fn zone_offset(name: &str) -> Result<(FixedOffset, String), CalendarError> {
    siaga_proto::zone::offset(name).map_err(|e| match e {
        siaga_proto::zone::ZoneError::Unknown(n) => CalendarError::UnknownZone(n),
        siaga_proto::zone::ZoneError::DaylightSaving(n) => CalendarError::DaylightSaving(n),
    })
}

mod offset {
    use super::*;
    pub fn serialize<S: Serializer>(o: &Option<FixedOffset>, s: S) -> Result<S::Ok, S::Error> {
        match o {
            Some(o) => s.serialize_str(&o.to_string()),
            None => s.serialize_none(),
        }
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<FixedOffset>, D::Error> {
        let text = String::deserialize(d)?;
        text.parse::<FixedOffset>().map(Some).map_err(|_| {
            serde::de::Error::custom(format!("`{text}` is not a UTC offset like \"+07:00\""))
        })
    }
}

mod dates {
    use super::*;

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum DateItem {
        Text(String),
        Toml(toml::value::Datetime),
    }

    pub fn serialize<S: Serializer>(v: &[NaiveDate], s: S) -> Result<S::Ok, S::Error> {
        let texts: Vec<String> = v.iter().map(|d| d.format("%Y-%m-%d").to_string()).collect();
        texts.serialize(s)
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<NaiveDate>, D::Error> {
        let items = Vec::<DateItem>::deserialize(d)?;
        items
            .into_iter()
            .map(|it| {
                let text = match it {
                    DateItem::Text(t) => t,
                    DateItem::Toml(t) => t.to_string(),
                };
                NaiveDate::parse_from_str(text.trim(), "%Y-%m-%d").map_err(|_| {
                    serde::de::Error::custom(format!(
                        "holiday `{text}` is not a date like \"2026-08-17\""
                    ))
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use test_case::test_case;

    // 2026-11-23 is a Monday. Local times are WIB (+07:00).
    fn wib(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_str(&format!("{s} +0700"), "%Y-%m-%d %H:%M %z")
            .unwrap_or_else(|e| panic!("bad test time {s}: {e}"))
            .with_timezone(&Utc)
    }

    fn cal() -> Calendar {
        let cfg: CalendarConfig =
            toml::from_str(r#"holidays = ["2026-11-25", 2026-12-25]"#).expect("config");
        Calendar::new(&cfg).expect("calendar")
    }

    fn h(n: i64) -> Duration {
        Duration::hours(n)
    }

    fn m(n: i64) -> Duration {
        Duration::minutes(n)
    }

    #[test_case("2026-11-23 10:00", h(1), "2026-11-23 11:00" ; "inside one day")]
    #[test_case("2026-11-23 15:30", h(1), "2026-11-24 08:00" ; "over the night")]
    #[test_case("2026-11-23 15:00", h(1), "2026-11-23 16:00" ; "ending exactly at close")]
    #[test_case("2026-11-23 16:00", h(1), "2026-11-24 08:30" ; "starting at close")]
    #[test_case("2026-11-23 06:00", h(1), "2026-11-23 08:30" ; "starting before opening")]
    #[test_case("2026-11-23 20:00", h(1), "2026-11-24 08:30" ; "starting in the evening")]
    #[test_case("2026-11-27 15:30", h(1), "2026-11-30 08:00" ; "across a weekend")]
    #[test_case("2026-11-28 10:00", h(1), "2026-11-30 08:30" ; "starting on saturday")]
    #[test_case("2026-11-24 15:30", h(1), "2026-11-26 08:00" ; "across a holiday")]
    #[test_case("2026-11-24 10:00", h(8) + m(30), "2026-11-26 10:00" ; "one working day across a holiday")]
    #[test_case("2026-11-27 10:00", h(8) + m(30), "2026-11-30 10:00" ; "one working day across a weekend")]
    #[test_case("2026-11-23 07:30", h(8) + m(30), "2026-11-23 16:00" ; "a whole day ends at close")]
    #[test_case("2026-12-24 12:00", h(17), "2026-12-29 12:00" ; "two days across christmas and a weekend")]
    #[test_case("2026-11-23 10:00", Duration::zero(), "2026-11-23 10:00" ; "nothing to add")]
    fn add_working(start: &str, amount: Duration, due: &str) {
        assert_eq!(cal().add_working(wib(start), amount), wib(due));
    }

    #[test_case("2026-11-23 10:00", "2026-11-23 11:00", h(1) ; "same day")]
    #[test_case("2026-11-23 15:30", "2026-11-24 08:00", h(1) ; "over night")]
    #[test_case("2026-11-27 15:30", "2026-11-30 08:00", h(1) ; "over the weekend")]
    #[test_case("2026-11-24 15:30", "2026-11-26 08:00", h(1) ; "over the holiday")]
    #[test_case("2026-11-28 08:00", "2026-11-29 12:00", Duration::zero() ; "weekend only")]
    #[test_case("2026-11-23 18:00", "2026-11-23 07:00", Duration::zero() ; "backwards")]
    #[test_case("2026-11-23 00:00", "2026-11-30 00:00", (h(8) + m(30)) * 4 ; "a week with a holiday")]
    fn working_between(a: &str, b: &str, want: Duration) {
        assert_eq!(cal().working_between(wib(a), wib(b)), want);
    }

    #[test]
    fn add_and_between_agree() {
        let c = cal();
        let starts = [
            "2026-11-23 06:00",
            "2026-11-24 15:59",
            "2026-11-27 12:00",
            "2026-11-28 09:00",
        ];
        for s in starts {
            for mins in [1, 59, 60, 510, 511, 1020, 2000] {
                let start = wib(s);
                let due = c.add_working(start, m(mins));
                assert_eq!(
                    c.working_between(start, due),
                    m(mins),
                    "{s} + {mins}m = {due}"
                );
            }
        }
    }

    #[test_case(WorkDuration { days: 1, minutes: 0 }, false, "2026-11-27 10:00", "2026-11-30 10:00" ; "one working day")]
    #[test_case(WorkDuration { days: 1, minutes: 0 }, true, "2026-11-27 10:00", "2026-11-28 10:00" ; "urgent counts calendar days")]
    #[test_case(WorkDuration { days: 0, minutes: 60 }, true, "2026-11-27 15:30", "2026-11-27 16:30" ; "urgent hour ignores closing")]
    #[test_case(WorkDuration { days: 2, minutes: 0 }, false, "2026-11-24 09:00", "2026-11-27 09:00" ; "two days over a holiday")]
    fn deadlines(d: WorkDuration, urgent: bool, start: &str, due: &str) {
        assert_eq!(cal().deadline(wib(start), d, urgent), wib(due));
    }

    #[test]
    fn default_is_jakarta_office_hours() {
        let c = Calendar::new(&CalendarConfig::default()).expect("valid");
        assert_eq!(c.day_length(), h(8) + m(30));
        assert_eq!(c.fmt_local(wib("2026-11-23 07:30")), "2026-11-23 07:30");
        assert!(!c.is_working_day(NaiveDate::from_ymd_opt(2026, 11, 29).expect("date")));
        assert_eq!(c, Calendar::default());
    }

    #[test_case("Asia/Jakarta", 7, "WIB" ; "western")]
    #[test_case("Asia/Makassar", 8, "WITA" ; "central")]
    #[test_case("Asia/Jayapura", 9, "WIT" ; "eastern")]
    fn the_offset_and_abbreviation_follow_from_the_zone(zone: &str, hours: i32, abbr: &str) {
        let cfg: CalendarConfig =
            toml::from_str(&format!("time_zone = \"{zone}\"")).expect("parses");
        let c = Calendar::new(&cfg).expect("valid");
        assert_eq!(c.offset().local_minus_utc(), hours * 3600);
        assert_eq!(c.zone_abbr(), abbr);
        // 01:00 UTC is 08:00 WIB, 09:00 WITA, 10:00 WIT.
        let t = DateTime::parse_from_rfc3339("2026-12-07T01:00:00Z")
            .expect("time")
            .with_timezone(&Utc);
        assert_eq!(c.fmt_local(t), format!("2026-12-07 {:02}:00", 1 + hours));
    }

    #[test_case("time_zone = \"Asia/Makassar\"\nutc_offset = \"+07:00\"", "calendar.utc_offset: +07:00 disagrees with time_zone Asia/Makassar (+08:00, WITA)" ; "WITA zone with a WIB offset")]
    #[test_case("time_zone = \"Asia/Bandung\"", "calendar.time_zone: \"Asia/Bandung\" is not an IANA time zone" ; "unknown zone")]
    #[test_case("time_zone = \"Europe/Berlin\"", "calendar.time_zone: Europe/Berlin has daylight saving time" ; "daylight saving")]
    fn a_zone_that_cannot_be_the_provinces_is_refused(text: &str, words: &str) {
        let cfg: CalendarConfig = toml::from_str(text).expect("parses");
        let err = Calendar::new(&cfg).expect_err("refused");
        assert!(err.to_string().starts_with(words), "{err}");
    }

    #[test]
    fn an_offset_that_agrees_with_the_zone_is_accepted() {
        let cfg: CalendarConfig =
            toml::from_str("time_zone = \"Asia/Makassar\"\nutc_offset = \"+08:00\"")
                .expect("parses");
        assert_eq!(Calendar::new(&cfg).expect("valid").zone_abbr(), "WITA");
    }

    #[test_case("start = \"16:00\"\nend = \"07:30\"", "not after" ; "end before start")]
    #[test_case("working_days = []", "no working days" ; "no days")]
    fn refuses_impossible_calendars(text: &str, words: &str) {
        let cfg: CalendarConfig = toml::from_str(text).expect("parses");
        let err = Calendar::new(&cfg).expect_err("refused");
        assert!(err.to_string().contains(words), "{err}");
    }

    #[test_case("start = \"7.30\"", "not a time" ; "bad time")]
    #[test_case("utc_offset = \"WIB\"", "not a UTC offset" ; "bad offset")]
    #[test_case("holidays = [\"17-08-2026\"]", "not a date" ; "bad holiday")]
    #[test_case("working_days = [\"Sen\"]", "" ; "bad weekday")]
    #[test_case("workdays = [\"Mon\"]", "unknown field" ; "unknown key")]
    fn refuses_bad_config(text: &str, words: &str) {
        let err = toml::from_str::<CalendarConfig>(text).expect_err("refused");
        assert!(err.to_string().contains(words), "{err}");
        assert!(err.to_string().contains("line 1"), "{err}");
    }

    #[test]
    fn config_round_trips() {
        let cfg = CalendarConfig {
            holidays: vec![NaiveDate::from_ymd_opt(2026, 8, 17).expect("date")],
            ..CalendarConfig::default()
        };
        let text = toml::to_string(&cfg).expect("serialize");
        assert_eq!(toml::from_str::<CalendarConfig>(&text).expect("parse"), cfg);
    }
}
