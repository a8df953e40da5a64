//! Durations on the command line: a whole number with an optional unit, `s` (the default), `m`,
//! `h` or `d`: `90s`, `10m`, `12h`, `7d`, `3600`.

use std::time::Duration;

const UNITS: [(&str, u64); 4] = [("s", 1), ("m", 60), ("h", 3600), ("d", 86_400)];

/// Parses a duration; the error names the value and says what is accepted. Zero is allowed.
pub(crate) fn parse_duration(text: &str) -> Result<Duration, String> {
    let trimmed = text.trim();
    let digits_end = trimmed
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(trimmed.len());
    let (number, unit) = trimmed.split_at(digits_end);
    let accepted = "a whole number with an optional unit s, m, h or d (90s, 10m, 12h, 7d)";
    if number.is_empty() {
        return Err(format!("duration {text:?} is not {accepted}"));
    }
    let seconds_per_unit = match unit {
        "" => 1,
        _ => UNITS
            .iter()
            .find(|(name, _)| *name == unit)
            .map(|(_, seconds)| *seconds)
            .ok_or_else(|| {
                format!("duration {text:?} has unknown unit {unit:?}; use {accepted}")
            })?,
    };
    number
        .parse::<u64>()
        .ok()
        .and_then(|count| count.checked_mul(seconds_per_unit))
        .map(Duration::from_secs)
        .ok_or_else(|| format!("duration {text:?} is too large"))
}

/// The longest time to live that can be stored: an entry's expiry is kept in milliseconds since
/// 1970 in a `u64`, so `now + ttl` must fit. 100 000 years leaves every clock in this era far
/// below the bound, and the TTL is stored exactly as given.
pub(crate) const MAX_TTL: Duration = Duration::from_secs(100_000 * 365 * 86_400);

/// Parses a time to live: a duration greater than zero and at most [`MAX_TTL`].
pub(crate) fn parse_ttl(text: &str) -> Result<Duration, String> {
    if text.trim_start().starts_with('-') {
        return Err(format!(
            "TTL {text:?} is negative: an entry cannot expire before it is stored; leave --ttl \
             out for an entry that never expires"
        ));
    }
    let ttl = parse_duration(text).map_err(|err| {
        if err.ends_with("is too large") {
            format!(
                "TTL {text:?} is too large to store (at most {}d); leave --ttl out for an entry \
                 that never expires",
                MAX_TTL.as_secs() / 86_400
            )
        } else {
            err
        }
    })?;
    if ttl > MAX_TTL {
        return Err(format!(
            "TTL {text:?} is too large to store (at most {}d); leave --ttl out for an entry that \
             never expires",
            MAX_TTL.as_secs() / 86_400
        ));
    }
    if ttl.is_zero() {
        return Err(format!(
            "TTL {text:?} is zero, so the entry would expire at once; leave --ttl out for an entry \
             that never expires"
        ));
    }
    Ok(ttl)
}

/// A duration for people, in its two largest units: `7d`, `1d 2h`, `1m 30s`, `0s`.
pub(crate) fn format_duration(duration: Duration) -> String {
    let mut remaining = duration.as_secs();
    let mut parts = Vec::new();
    for (name, seconds) in UNITS.iter().rev() {
        if remaining >= *seconds {
            parts.push(format!("{}{name}", remaining / seconds));
            remaining %= seconds;
        }
        if parts.len() == 2 {
            break;
        }
    }
    if parts.is_empty() {
        "0s".to_owned()
    } else {
        parts.join(" ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_and_plain_seconds() {
        let cases = [
            ("90s", 90),
            ("10m", 600),
            ("12h", 43_200),
            ("7d", 604_800),
            ("3600", 3600),
            ("0", 0),
        ];
        for (text, seconds) in cases {
            assert_eq!(
                parse_duration(text),
                Ok(Duration::from_secs(seconds)),
                "{text}"
            );
        }
    }

    #[test]
    fn bad_durations_name_the_value() {
        for text in ["", "7x", "d", "-5s", "1.5h", "7 d", "99999999999999999999d"] {
            let err = parse_duration(text).unwrap_err();
            assert!(err.contains(&format!("{text:?}")), "{text}: {err}");
        }
    }

    #[test]
    fn a_zero_ttl_is_refused() {
        assert!(parse_ttl("0s").unwrap_err().contains("zero"));
        assert_eq!(parse_ttl("1s"), Ok(Duration::from_secs(1)));
    }

    #[test]
    fn formatting_keeps_two_units() {
        assert_eq!(format_duration(Duration::from_secs(604_800)), "7d");
        assert_eq!(format_duration(Duration::from_secs(93_600)), "1d 2h");
        assert_eq!(format_duration(Duration::from_secs(90)), "1m 30s");
        assert_eq!(format_duration(Duration::from_secs(90_061)), "1d 1h");
        assert_eq!(format_duration(Duration::from_millis(300)), "0s");
    }
}
