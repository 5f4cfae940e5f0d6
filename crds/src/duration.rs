//! Go-style durations (`30m`, `1h30m`, `2.5s`) as Kubernetes writes them in specs, parsed into
//! [`std::time::Duration`]. Pure.

use std::time::Duration;

/// A duration string that is not a Go duration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid duration `{text}`: write a number followed by a unit (ns, us, ms, s, m, h), e.g. `30m` or `1h30m`"
)]
pub struct DurationError {
    /// The text as written.
    pub text: String,
}

/// Parses a Go duration such as `90s`, `30m`, `1h30m` or `1.5h`. Negative durations and a bare
/// `0` without unit are rejected, since no spec field accepts them.
pub fn parse_duration(text: &str) -> Result<Duration, DurationError> {
    let error = || DurationError {
        text: text.to_string(),
    };
    if text.is_empty() {
        return Err(error());
    }
    let mut rest = text;
    let mut total_nanos: u128 = 0;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(error)?;
        if number_len == 0 {
            return Err(error());
        }
        let (number, after) = rest.split_at(number_len);
        let unit_len = after
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(after.len());
        let (unit, next) = after.split_at(unit_len);
        let unit_nanos: u128 = match unit {
            "ns" => 1,
            "us" | "µs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            _ => return Err(error()),
        };
        let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
        if whole.is_empty() && fraction.is_empty() {
            return Err(error());
        }
        let whole: u128 = if whole.is_empty() {
            0
        } else {
            whole.parse().map_err(|_| error())?
        };
        let mut nanos = whole.checked_mul(unit_nanos).ok_or_else(error)?;
        if !fraction.is_empty() {
            if !fraction.chars().all(|c| c.is_ascii_digit()) {
                return Err(error());
            }
            let digits = fraction.len().min(18);
            let scale = 10u128.pow(u32::try_from(digits).map_err(|_| error())?);
            let value: u128 = fraction[..digits].parse().map_err(|_| error())?;
            nanos = nanos
                .checked_add(value * unit_nanos / scale)
                .ok_or_else(error)?;
        }
        total_nanos = total_nanos.checked_add(nanos).ok_or_else(error)?;
        rest = next;
    }
    let secs = u64::try_from(total_nanos / 1_000_000_000).map_err(|_| error())?;
    let nanos = u32::try_from(total_nanos % 1_000_000_000).map_err(|_| error())?;
    Ok(Duration::new(secs, nanos))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str, expected: Option<Duration>) {
        assert_eq!(parse_duration(text).ok(), expected, "{text}");
    }

    #[test]
    fn go_durations() {
        check("30m", Some(Duration::from_secs(1800)));
        check("1h30m", Some(Duration::from_secs(5400)));
        check("90s", Some(Duration::from_secs(90)));
        check("1.5h", Some(Duration::from_secs(5400)));
        check("2.5s", Some(Duration::from_millis(2500)));
        check("250ms", Some(Duration::from_millis(250)));
        check("10us", Some(Duration::from_micros(10)));
        check("10µs", Some(Duration::from_micros(10)));
        check("7ns", Some(Duration::from_nanos(7)));
        check("1h0m0s", Some(Duration::from_secs(3600)));
        check(".5m", Some(Duration::from_secs(30)));
    }

    #[test]
    fn rejects_what_go_rejects() {
        for text in [
            "", "30", "m", "1d", "-5m", "1h30", "1..5s", ".s", "5 m", "1e3s",
        ] {
            check(text, None);
        }
        let message = parse_duration("1d").unwrap_err().to_string();
        assert!(message.contains("`1d`"), "{message}");
    }
}
