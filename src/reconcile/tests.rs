use super::*;
use time::macros::datetime;

const NOW: OffsetDateTime = datetime!(2026-12-02 12:00:00 UTC);
const GRACE: Duration = Duration::from_secs(300);

#[test]
fn a_delivered_row_wins_then_waiting_then_failed_then_rejected() {
    use Status::*;
    let class = |s: &[Status]| classify(s, None, NOW, GRACE);
    assert_eq!(class(&[Rejected, Failed, Delivered]), Class::Delivered);
    assert_eq!(class(&[Rejected, InFlight]), Class::Pending);
    assert_eq!(class(&[Pending]), Class::Pending);
    assert_eq!(class(&[Rejected, Failed]), Class::Failed);
    assert_eq!(class(&[Rejected]), Class::Rejected);
}

#[test]
fn no_row_is_young_inside_the_grace_window_and_missing_after() {
    let at = |seconds_ago: i64| Some(NOW - time::Duration::seconds(seconds_ago));
    assert_eq!(classify(&[], at(10), NOW, GRACE), Class::Young);
    assert_eq!(classify(&[], at(299), NOW, GRACE), Class::Young);
    assert_eq!(classify(&[], at(300), NOW, GRACE), Class::Missing);
    assert_eq!(
        classify(&[], None, NOW, GRACE),
        Class::Missing,
        "no registered_at: never young"
    );
}

#[test]
fn segments_follow_the_table_size_within_bounds() {
    assert_eq!(segments_for(0), 1);
    assert_eq!(segments_for(9_999), 1);
    assert_eq!(segments_for(100_000), 10);
    assert_eq!(segments_for(10_000_000), MAX_SEGMENTS);
}

#[test]
fn the_report_is_clean_only_when_nothing_is_left_missing() {
    let mut report = Report::default();
    assert!(report.is_clean());
    report.classes.insert(Class::Missing, 2);
    assert!(!report.is_clean());
    report.repaired = 1;
    report.repair_already_there = 1;
    assert!(report.is_clean());
    report.verify = Some(crate::verify::Report {
        checked: 3,
        missing: 1,
        different: 0,
    });
    assert!(!report.is_clean());
}
