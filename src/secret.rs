//! Secrets: comparing them without telling how much matched, and making
//! new ones.

/// A new host key: 128 random bits as 32 hex digits (safe in a shell, an
/// INI file and `overcli -i NAME:KEY`).
///
/// # Errors
/// When the operating system has no randomness to give.
pub(crate) fn new_key() -> crate::Result<String> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes)
        .map_err(|e| crate::Error::Storage(format!("no randomness for a key: {e}")))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

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
    fn new_keys_are_32_hex_digits_and_differ() {
        let (a, b) = (new_key().unwrap(), new_key().unwrap());
        assert_eq!(a.len(), 32);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit()), "{a}");
        assert_ne!(a, b);
    }

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
