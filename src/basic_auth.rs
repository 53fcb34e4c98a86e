//! HTTP Basic credentials: base64 and the `user:password@` URL form.

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64 with padding.
// Only the client sends credentials.
#[cfg_attr(not(feature = "client"), allow(dead_code))]
pub(crate) fn base64_encode(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Decodes standard base64; `None` on anything malformed.
// Only the server checks credentials.
#[cfg_attr(not(feature = "server"), allow(dead_code))]
pub(crate) fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let text = text.trim().trim_end_matches('=');
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let mut acc = 0u32;
    let mut bits = 0;
    for c in text.bytes() {
        let v = ALPHABET.iter().position(|&a| a == c)? as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    Some(out)
}

// Only the server checks credentials.
#[cfg_attr(not(feature = "server"), allow(dead_code))]
/// The decoded `user:password` of an `Authorization: Basic …` header value.
///
/// The scheme is matched in any case and may be followed by more than one
/// space (RFC 7235 §2.1: `auth-scheme 1*SP token68`, schemes case-insensitive);
/// proxies and scripts do send `BASIC` and `basic`.
pub(crate) fn basic_credentials(header: &str) -> Option<Vec<u8>> {
    let (scheme, token) = header.trim_start().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    base64_decode(token.trim_start_matches(' '))
}

// Only the client sends credentials.
#[cfg_attr(not(feature = "client"), allow(dead_code))]
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && s.is_char_boundary(i + 1)
            && s.is_char_boundary(i + 3)
        {
            if let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Splits `scheme://user:password@host/…` into the URL without credentials
/// and an `Authorization` header value, if credentials were given.
// Only the client sends credentials.
#[cfg_attr(not(feature = "client"), allow(dead_code))]
pub(crate) fn split_credentials(url: &str) -> (String, Option<String>) {
    let Some((scheme, rest)) = url.split_once("://") else {
        return (url.to_owned(), None);
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let (user, pass) = userinfo.split_once(':').unwrap_or((userinfo, ""));
            let pair = format!("{}:{}", percent_decode(user), percent_decode(pass));
            (
                format!("{scheme}://{host}{path}"),
                Some(format!("Basic {}", base64_encode(pair.as_bytes()))),
            )
        }
        None => (url.to_owned(), None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_round_trip() {
        assert_eq!(base64_encode(b"martin:secret"), "bWFydGluOnNlY3JldA==");
        assert_eq!(base64_encode(b""), "");
        assert_eq!(base64_encode(b"ab"), "YWI=");
        for s in ["", "a", "ab", "abc", "abcd", "üñï©ødé"] {
            assert_eq!(
                base64_decode(&base64_encode(s.as_bytes())).unwrap(),
                s.as_bytes()
            );
        }
        assert!(base64_decode("@@@").is_none());
    }

    #[test]
    fn the_basic_scheme_is_matched_in_any_case() {
        for h in [
            "Basic bWFydGluOnNlY3JldA==",
            "BASIC bWFydGluOnNlY3JldA==",
            "bAsIc  bWFydGluOnNlY3JldA==",
        ] {
            assert_eq!(
                basic_credentials(h).as_deref(),
                Some(&b"martin:secret"[..]),
                "{h}"
            );
        }
        for h in ["Basic", "Basicx bWFy", "Bearer bWFy", "Digest user=x", ""] {
            assert_eq!(basic_credentials(h), None, "{h}");
        }
    }

    #[test]
    fn credentials_are_taken_out_of_the_url() {
        let (url, auth) = split_credentials("http://user:p%40ss@mon:5000/x");
        assert_eq!(url, "http://mon:5000/x");
        assert_eq!(
            auth.unwrap(),
            format!("Basic {}", base64_encode(b"user:p@ss"))
        );
        assert_eq!(split_credentials("http://mon:5000/").1, None);
    }
}
