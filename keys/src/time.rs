//! UTC timestamps in the one RFC 3339 form signed documents use:
//! `YYYY-MM-DDTHH:MM:SSZ`. One spelling per instant keeps canonical JSON
//! canonical, so offsets, fractions and lower-case letters are refused.

use std::fmt;
use std::str::FromStr;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::Error;

/// Seconds since the Unix epoch, UTC, between 1970 and 9999.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(i64);

const SECONDS_PER_DAY: i64 = 86_400;
/// 9999-12-31T23:59:59Z, the last instant four year digits can write.
const MAX_SECONDS: i64 = 253_402_300_799;

impl Timestamp {
    /// The current time. A clock before 1970 counts as 1970.
    pub fn now() -> Timestamp {
        let secs = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        Timestamp(i64::try_from(secs).unwrap_or(MAX_SECONDS).min(MAX_SECONDS))
    }

    /// A timestamp from Unix seconds; `None` outside 1970..=9999.
    pub fn from_unix(secs: i64) -> Option<Timestamp> {
        (0..=MAX_SECONDS).contains(&secs).then_some(Timestamp(secs))
    }

    /// Unix seconds.
    pub fn unix(self) -> i64 {
        self.0
    }

    /// This instant plus whole days, saturating at year 9999.
    pub fn plus_days(self, days: u32) -> Timestamp {
        Timestamp((self.0 + i64::from(days) * SECONDS_PER_DAY).min(MAX_SECONDS))
    }

    /// An expiry as an operator types it: a timestamp, or `N` days from
    /// `now` written `Nd` (`90d`).
    pub fn parse_expiry(text: &str, now: Timestamp) -> Result<Timestamp, Error> {
        if let Some(days) = text.strip_suffix('d')
            && !days.is_empty()
            && days.bytes().all(|b| b.is_ascii_digit())
        {
            let days: u32 = days.parse().map_err(|_| syntax(text))?;
            return Ok(now.plus_days(days));
        }
        text.parse()
    }
}

fn syntax(text: &str) -> Error {
    Error::Timestamp {
        text: text.chars().take(64).collect(),
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's
/// days_from_civil).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month_index = (month + 9) % 12;
    let day_of_year = (153 * month_index + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// The inverse of [`days_from_civil`].
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let days = days + 719_468;
    let era = days.div_euclid(146_097);
    let day_of_era = days - era * 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

fn days_in_month(year: i64, month: i64) -> i64 {
    let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    match month {
        2 if leap => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

impl FromStr for Timestamp {
    type Err = Error;

    fn from_str(text: &str) -> Result<Self, Error> {
        let b = text.as_bytes();
        let shape_ok = b.len() == 20
            && b[4] == b'-'
            && b[7] == b'-'
            && b[10] == b'T'
            && b[13] == b':'
            && b[16] == b':'
            && b[19] == b'Z';
        if !shape_ok {
            return Err(syntax(text));
        }
        let number = |range: std::ops::Range<usize>| -> Result<i64, Error> {
            let digits = &b[range];
            if !digits.iter().all(u8::is_ascii_digit) {
                return Err(syntax(text));
            }
            Ok(digits
                .iter()
                .fold(0, |acc, d| acc * 10 + i64::from(d - b'0')))
        };
        let (year, month, day) = (number(0..4)?, number(5..7)?, number(8..10)?);
        let (hour, minute, second) = (number(11..13)?, number(14..16)?, number(17..19)?);
        let valid = year >= 1970
            && (1..=12).contains(&month)
            && (1..=days_in_month(year, month)).contains(&day)
            && hour < 24
            && minute < 60
            && second < 60;
        if !valid {
            return Err(syntax(text));
        }
        let secs = days_from_civil(year, month, day) * SECONDS_PER_DAY
            + hour * 3600
            + minute * 60
            + second;
        Ok(Timestamp(secs))
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let days = self.0.div_euclid(SECONDS_PER_DAY);
        let rest = self.0.rem_euclid(SECONDS_PER_DAY);
        let (year, month, day) = civil_from_days(days);
        write!(
            f,
            "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
            rest / 3600,
            rest % 3600 / 60,
            rest % 60
        )
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_instants() {
        let cases = [
            ("1970-01-01T00:00:00Z", 0),
            ("2000-02-29T12:34:56Z", 951_827_696),
            ("2038-01-19T03:14:08Z", 2_147_483_648),
            ("9999-12-31T23:59:59Z", MAX_SECONDS),
        ];
        for (text, secs) in cases {
            let t: Timestamp = text.parse().unwrap();
            assert_eq!(t.unix(), secs, "{text}");
            assert_eq!(t.to_string(), text);
        }
    }

    #[test]
    fn refuses_other_spellings() {
        for text in [
            "2024-02-30T00:00:00Z",
            "2023-02-29T00:00:00Z",
            "2024-01-01T24:00:00Z",
            "2024-01-01T00:00:60Z",
            "2024-01-01t00:00:00Z",
            "2024-01-01T00:00:00z",
            "2024-01-01T00:00:00+00:00",
            "2024-01-01T00:00:00.5Z",
            "1969-12-31T23:59:59Z",
            "+024-01-01T00:00:00Z",
            "",
        ] {
            assert!(text.parse::<Timestamp>().is_err(), "{text}");
        }
    }

    #[test]
    fn every_day_round_trips() {
        // Walk 1970..2100 day by day through both directions.
        for days in 0..47_482 {
            let t = Timestamp(days * SECONDS_PER_DAY + 3_661);
            assert_eq!(t.to_string().parse::<Timestamp>().unwrap(), t);
        }
    }

    #[test]
    fn expiry_in_days() {
        let now: Timestamp = "2025-01-01T00:00:00Z".parse().unwrap();
        let t = Timestamp::parse_expiry("31d", now).unwrap();
        assert_eq!(t.to_string(), "2025-02-01T00:00:00Z");
        assert!(Timestamp::parse_expiry("d", now).is_err());
        assert!(Timestamp::parse_expiry("-3d", now).is_err());
        assert!(Timestamp::parse_expiry("99999999999d", now).is_err());
    }
}
