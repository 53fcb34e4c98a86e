//! Comparing secrets without telling how much of them matched.

/// Compares a presented value with a known one without an early exit: the
/// time depends on the known value's length only, so it shows neither how
/// much matched nor how long the presented value is.
pub(crate) fn constant_time_eq(known: &[u8], presented: &[u8]) -> bool {
    let diff = known.iter().enumerate().fold(0u8, |acc, (i, x)| {
        acc | (x ^ presented.get(i).copied().unwrap_or(!x))
    });
    diff == 0 && known.len() == presented.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_time_eq_needs_the_whole_value() {
        assert!(constant_time_eq(b"secret", b"secret"));
        for other in ["", "s", "secre", "secret!", "secreT", "xecret"] {
            assert!(!constant_time_eq(b"secret", other.as_bytes()), "{other:?}");
        }
        assert!(!constant_time_eq(b"", b"x"));
        assert!(constant_time_eq(b"", b""));
    }
}
