use super::*;
use std::path::PathBuf;

fn settings(renew_before: Option<Duration>) -> AcmeSettings {
    AcmeSettings {
        domains: vec!["shop.example.com".into()],
        email: None,
        directory: "https://ca.test/dir".into(),
        directory_ca: None,
        state_dir: PathBuf::from("/tmp/acme"),
        renew_before,
        retry_after: Duration::from_secs(600),
    }
}

const DAY: i64 = 86_400;

#[test]
fn renewal_is_at_two_thirds_of_the_lifetime_or_renew_before_expiry() {
    let at = |renew_before| {
        renewal_time(0, 90 * DAY, &settings(renew_before))
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64
    };
    assert_eq!(
        at(None),
        60 * DAY,
        "a 90-day certificate is renewed after 60 days"
    );
    assert_eq!(at(Some(Duration::from_secs(7 * DAY as u64))), 83 * DAY);
    // A renew_before as long as the lifetime would order without end: the default applies.
    assert_eq!(at(Some(Duration::from_secs(90 * DAY as u64))), 60 * DAY);
}
