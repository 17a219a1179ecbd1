//! Integers stored as values, as Redis stores them: decimal ASCII, no `+`, no leading zeros,
//! no `-0` (so `get` of a counter made by `incr` returns e.g. `b"42"`, and `set` of `b"10"` can
//! be incremented).

/// Parses a decimal `i64` written as Redis writes it; `None` for anything else.
pub(super) fn parse_int(b: &[u8]) -> Option<i64> {
    let (neg, digits) = match b.split_first()? {
        (b'-', rest) => (true, rest),
        _ => (false, b),
    };
    if digits.is_empty() || digits.len() > 19 || (digits[0] == b'0' && b.len() > 1) {
        return None;
    }
    // Accumulate negatively so that i64::MIN parses.
    let mut v: i64 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        v = v.checked_mul(10)?.checked_sub(i64::from(d - b'0'))?;
    }
    if neg {
        Some(v)
    } else {
        v.checked_neg()
    }
}

/// Formats `v` into `buf` (20 bytes hold any `i64`) and returns the digits.
pub(super) fn format_int(v: i64, buf: &mut [u8; 20]) -> &[u8] {
    let mut n = v.unsigned_abs();
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    if v < 0 {
        i -= 1;
        buf[i] = b'-';
    }
    &buf[i..]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ints_parse_like_redis() {
        for (s, v) in [
            ("0", Some(0)),
            ("-5", Some(-5)),
            ("9223372036854775807", Some(i64::MAX)),
        ] {
            assert_eq!(parse_int(s.as_bytes()), v, "{s}");
        }
        assert_eq!(parse_int(b"-9223372036854775808"), Some(i64::MIN));
        for bad in [
            "",
            "-",
            "+1",
            "01",
            "-0",
            " 1",
            "1 ",
            "1a",
            "9223372036854775808",
        ] {
            assert_eq!(parse_int(bad.as_bytes()), None, "{bad}");
        }
        let mut b = [0u8; 20];
        for v in [0, 1, -1, 42, i64::MAX, i64::MIN] {
            assert_eq!(format_int(v, &mut b), v.to_string().as_bytes());
        }
    }
}
