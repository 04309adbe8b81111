//! The `--since` / `--until` window on a row's `created_at`.
//!
//! `created_at` is RFC 3339 text. Rows are written with exactly three
//! fractional digits ([`crate::outbox::row::rfc3339`]), but rows written by
//! earlier versions have a fraction of no fixed width (`…:05Z` for a whole
//! second, `…:05.12Z` for 120 ms), and for those text order is time order
//! only to the second. So that old and new rows both answer exactly, the
//! key condition asks the index for whole seconds (`created_at BETWEEN
//! "…:05" AND "…:09"`, which is exact at that precision because every
//! stored value continues its second's prefix) and [`TimeRange::contains`] keeps the exact window by
//! parsing each row's time: at most the rows of the two edge seconds are
//! read and dropped.

use time::format_description::well_known::Rfc3339;
use time::macros::format_description;
use time::{Date, Duration, OffsetDateTime};

/// `since` inclusive, `until` exclusive; either may be open.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TimeRange {
    /// The earliest `created_at` kept (inclusive); `None` for no lower bound.
    pub since: Option<OffsetDateTime>,
    /// The first `created_at` no longer kept (exclusive); `None` for no
    /// upper bound.
    pub until: Option<OffsetDateTime>,
}

/// Lower than any `created_at` ("0" sorts before every year's digits…
/// only "0000" would tie, and no row is from year 0).
const FIRST: &str = "0";
/// Higher than any `created_at`.
const LAST: &str = "9999-12-31T23:59:59~";

impl TimeRange {
    /// The window from `since` (inclusive) to `until` (exclusive). Does not
    /// check that `since` comes first: a reversed window matches nothing.
    pub fn new(since: Option<OffsetDateTime>, until: Option<OffsetDateTime>) -> TimeRange {
        TimeRange { since, until }
    }

    /// The key condition's bounds, whole seconds around the window, for
    /// `created_at BETWEEN :lo AND :hi`.
    pub fn key_bounds(&self) -> (String, String) {
        let lo = self
            .since
            .map(second_prefix)
            .unwrap_or_else(|| FIRST.to_string());
        let hi = self
            .until
            .map(|t| {
                // Every value of second S is greater than the bare prefix "S",
                // so "S" as upper bound keeps exactly the seconds before S;
                // an `until` inside S needs S itself, so the bound is S + 1.
                let whole = t.replace_nanosecond(0).expect("0 is a valid nanosecond");
                let bound = if whole == t {
                    t
                } else {
                    whole + Duration::SECOND
                };
                second_prefix(bound)
            })
            .unwrap_or_else(|| LAST.to_string());
        (lo, hi)
    }

    /// Whether a row created at `created_at` (RFC 3339) is in the window. A
    /// value that cannot be parsed is kept: an audit must not hide a row.
    pub fn contains(&self, created_at: &str) -> bool {
        let Ok(t) = OffsetDateTime::parse(created_at, &Rfc3339) else {
            return true;
        };
        self.since.is_none_or(|since| t >= since) && self.until.is_none_or(|until| t < until)
    }
}

fn second_prefix(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    t.format(format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second]"
    ))
    .expect("formatting a UTC time")
}

/// Parses an operator's time: RFC 3339 (`2026-11-28T12:00:00Z`, any offset)
/// or a UTC date (`2026-11-28`, meaning its midnight).
pub fn parse_time(text: &str) -> Result<OffsetDateTime, String> {
    if let Ok(t) = OffsetDateTime::parse(text, &Rfc3339) {
        return Ok(t);
    }
    Date::parse(text, format_description!("[year]-[month]-[day]"))
        .map(|d| d.midnight().assume_utc())
        .map_err(|_| {
            format!("`{text}` is neither RFC 3339 (2026-11-28T12:00:00Z) nor a date (2026-11-28)")
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn key_bounds_cover_whole_seconds() {
        let open = TimeRange::default();
        assert_eq!(open.key_bounds(), (FIRST.to_string(), LAST.to_string()));
        let r = TimeRange::new(
            Some(datetime!(2026-11-28 12:00:05.250 UTC)),
            Some(datetime!(2026-11-28 12:00:09 UTC)),
        );
        assert_eq!(
            r.key_bounds(),
            ("2026-11-28T12:00:05".into(), "2026-11-28T12:00:09".into())
        );
        let inside = TimeRange::new(None, Some(datetime!(2026-11-28 12:00:09.5 UTC)));
        assert_eq!(inside.key_bounds().1, "2026-11-28T12:00:10");
        // Stored values of the edge seconds fall inside or outside as they should.
        let (lo, hi) = r.key_bounds();
        for (stored, inside_bounds) in [
            ("2026-11-28T12:00:05Z", true),
            ("2026-11-28T12:00:05.12Z", true),
            ("2026-11-28T12:00:08.999Z", true),
            ("2026-11-28T12:00:09Z", false),
            ("2026-11-28T12:00:04.999Z", false),
        ] {
            assert_eq!(
                lo.as_str() <= stored && stored <= hi.as_str(),
                inside_bounds,
                "{stored}"
            );
        }
    }

    #[test]
    fn contains_is_exact_to_the_millisecond() {
        let r = TimeRange::new(
            Some(datetime!(2026-11-28 12:00:05.250 UTC)),
            Some(datetime!(2026-11-28 12:00:09 UTC)),
        );
        assert!(!r.contains("2026-11-28T12:00:05.12Z"));
        assert!(r.contains("2026-11-28T12:00:05.25Z"));
        assert!(r.contains("2026-11-28T12:00:08.999Z"));
        assert!(!r.contains("2026-11-28T12:00:09Z"));
        assert!(r.contains("not a time"));
    }

    #[test]
    fn operator_times() {
        assert_eq!(
            parse_time("2026-11-28").unwrap(),
            datetime!(2026-11-28 0:00 UTC)
        );
        assert_eq!(
            parse_time("2026-11-28T13:00:00+01:00").unwrap(),
            datetime!(2026-11-28 12:00 UTC)
        );
        assert!(parse_time("yesterday").is_err());
    }
}
