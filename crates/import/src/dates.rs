//! Parsing of the timestamps and dates found in Jira exports and the generic CSV.

use chrono::{DateTime, Duration, NaiveDate, NaiveDateTime, TimeZone, Utc};
use chrono_tz::Tz;

/// Formats of zone-less timestamps, tried in order. The first two are Jira's default
/// `dd/MMM/yy h:mm a` with a two- or four-digit year.
const DATETIME_FORMATS: [&str; 5] = [
    "%d/%b/%y %I:%M %p",
    "%d/%b/%Y %I:%M %p",
    "%Y-%m-%d %H:%M:%S",
    "%Y-%m-%d %H:%M",
    "%Y-%m-%dT%H:%M:%S",
];

/// Formats of calendar dates, tried in order.
const DATE_FORMATS: [&str; 3] = ["%d/%b/%y", "%d/%b/%Y", "%Y-%m-%d"];

/// Example shown in error messages about timestamps.
pub(crate) const DATETIME_EXAMPLE: &str = "10/Oct/25 10:08 PM";

/// Parses a timestamp such as `10/Oct/25 10:08 PM`, read as wall-clock time in `zone`.
///
/// A value with an explicit offset (RFC 3339) keeps its own offset. A wall-clock time that
/// occurs twice when clocks go back takes the earlier instant. A time that does not exist
/// because clocks went forward is moved one hour later, as a wall clock would show it.
pub(crate) fn parse_datetime(value: &str, zone: Tz) -> Option<DateTime<Utc>> {
    let value = value.trim();
    if let Ok(with_offset) = DateTime::parse_from_rfc3339(value) {
        return Some(with_offset.with_timezone(&Utc));
    }
    let naive = DATETIME_FORMATS
        .iter()
        .find_map(|format| NaiveDateTime::parse_from_str(value, format).ok())?;
    local_to_utc(naive, zone)
}

fn local_to_utc(naive: NaiveDateTime, zone: Tz) -> Option<DateTime<Utc>> {
    if let Some(local) = zone.from_local_datetime(&naive).earliest() {
        return Some(local.with_timezone(&Utc));
    }
    let shifted = naive.checked_add_signed(Duration::hours(1))?;
    let local = zone.from_local_datetime(&shifted).earliest()?;
    Some(local.with_timezone(&Utc))
}

/// Parses a calendar date such as `14/Oct/25` or `2025-10-14`. A time of day after the
/// first space, as Jira writes in `Due Date`, is ignored.
pub(crate) fn parse_date(value: &str) -> Option<NaiveDate> {
    let date_part = value.split_whitespace().next()?;
    DATE_FORMATS
        .iter()
        .find_map(|format| NaiveDate::parse_from_str(date_part, format).ok())
}

/// Parses an ISO 8601 calendar date, `YYYY-MM-DD`.
pub(crate) fn parse_iso_date(value: &str) -> Option<NaiveDate> {
    NaiveDate::parse_from_str(value.trim(), "%Y-%m-%d").ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .with_timezone(&Utc)
    }

    #[test]
    fn datetime_parses_jira_format_in_utc() {
        let parsed = parse_datetime("10/Oct/25 10:08 PM", chrono_tz::UTC);

        assert_eq!(parsed, Some(utc("2025-10-10T22:08:00Z")));
    }

    #[test]
    fn datetime_accepts_single_digit_hour_and_midnight() {
        let zone = chrono_tz::UTC;

        assert_eq!(
            parse_datetime("9/Oct/25 1:05 AM", zone),
            Some(utc("2025-10-09T01:05:00Z"))
        );
        assert_eq!(
            parse_datetime("10/Oct/25 12:00 AM", zone),
            Some(utc("2025-10-10T00:00:00Z"))
        );
        assert_eq!(
            parse_datetime("10/Oct/25 12:30 PM", zone),
            Some(utc("2025-10-10T12:30:00Z"))
        );
    }

    #[test]
    fn datetime_accepts_four_digit_year_and_iso() {
        let zone = chrono_tz::UTC;

        assert_eq!(
            parse_datetime("10/Oct/2025 10:08 PM", zone),
            Some(utc("2025-10-10T22:08:00Z"))
        );
        assert_eq!(
            parse_datetime("2025-10-10 22:08", zone),
            Some(utc("2025-10-10T22:08:00Z"))
        );
        assert_eq!(
            parse_datetime("2025-10-10T22:08:00+02:00", zone),
            Some(utc("2025-10-10T20:08:00Z"))
        );
    }

    #[test]
    fn datetime_converts_from_source_zone() {
        let zone = chrono_tz::Europe::Berlin;

        assert_eq!(
            parse_datetime("10/Jul/25 10:00 AM", zone),
            Some(utc("2025-07-10T08:00:00Z"))
        );
        assert_eq!(
            parse_datetime("10/Jan/25 10:00 AM", zone),
            Some(utc("2025-01-10T09:00:00Z"))
        );
    }

    #[test]
    fn datetime_resolves_daylight_saving_edges() {
        let zone = chrono_tz::Europe::Berlin;

        // 02:30 on 30 March 2025 does not exist in Berlin, so it is read as 03:30 CEST.
        assert_eq!(
            parse_datetime("30/Mar/25 2:30 AM", zone),
            Some(utc("2025-03-30T01:30:00Z"))
        );
        // 02:30 on 26 October 2025 occurs twice; the earlier one is still CEST.
        assert_eq!(
            parse_datetime("26/Oct/25 2:30 AM", zone),
            Some(utc("2025-10-26T00:30:00Z"))
        );
    }

    #[test]
    fn datetime_rejects_invalid_values() {
        for value in [
            "",
            "yesterday",
            "31/Feb/25 1:00 AM",
            "10/Okt/25 10:08 PM",
            "10/Oct/25",
        ] {
            assert_eq!(
                parse_datetime(value, chrono_tz::UTC),
                None,
                "value {value:?}"
            );
        }
    }

    #[test]
    fn date_drops_time_of_day() {
        let expected = NaiveDate::from_ymd_opt(2025, 10, 14);

        assert_eq!(parse_date("14/Oct/25 12:00 AM"), expected);
        assert_eq!(parse_date("14/Oct/25"), expected);
        assert_eq!(parse_date("2025-10-14"), expected);
    }

    #[test]
    fn date_rejects_invalid_values() {
        assert_eq!(parse_date(""), None);
        assert_eq!(parse_date("soon"), None);
        assert_eq!(parse_date("32/Oct/25"), None);
    }

    #[test]
    fn iso_date_requires_iso_format() {
        assert_eq!(
            parse_iso_date(" 2025-01-31 "),
            NaiveDate::from_ymd_opt(2025, 1, 31)
        );
        assert_eq!(parse_iso_date("31/Jan/25"), None);
        assert_eq!(parse_iso_date("2025-02-30"), None);
    }
}
