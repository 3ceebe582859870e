//! Query parameters -> labels, as matchbox's `labelsFromRequest` does with Go's
//! `url.ParseQuery` and `net.ParseMAC`.

use std::collections::BTreeMap;

/// Percent-decoding of a query component (`+` is a space). None on a bad escape.
pub fn query_unescape(s: &str) -> Option<String> {
    decode(s, true)
}

/// Percent-decoding of a path (no `+` rule). None on a bad escape.
pub fn path_unescape(s: &str) -> Option<String> {
    decode(s, false)
}

fn decode(s: &str, plus: bool) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let h = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(h, 16).ok()?);
                i += 3;
            }
            b'+' if plus => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    Some(String::from_utf8_lossy(&out).into_owned())
}

/// `url.ParseQuery`: an ordered multimap; pairs with `;` or a bad escape are dropped.
pub fn parse_query(raw: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for part in raw.split('&') {
        if part.is_empty() || part.contains(';') {
            continue;
        }
        let (k, v) = part.split_once('=').unwrap_or((part, ""));
        let (Some(k), Some(v)) = (query_unescape(k), query_unescape(v)) else {
            continue;
        };
        out.push((k, v));
    }
    out
}

/// `net.ParseMAC` followed by `HardwareAddr.String()`: lower-case, colon-separated.
/// Accepts 6, 8 or 20 octets as `aa:bb:..`, `aa-bb-..` or `aabb.ccdd.eeff`.
pub fn normalize_mac(s: &str) -> Option<String> {
    if s.len() < 14 {
        return None;
    }
    let bytes: Vec<u8> = if s.as_bytes()[2] == b':' || s.as_bytes()[2] == b'-' {
        let sep = s.as_bytes()[2] as char;
        if !(s.len() + 1).is_multiple_of(3) {
            return None;
        }
        let parts: Vec<&str> = s.split(sep).collect();
        if parts.iter().any(|p| p.len() != 2) {
            return None;
        }
        parts.iter().map(|p| hex_byte(p)).collect::<Option<Vec<u8>>>()?
    } else if s.as_bytes()[4] == b'.' {
        if !(s.len() + 1).is_multiple_of(5) {
            return None;
        }
        let parts: Vec<&str> = s.split('.').collect();
        if parts.iter().any(|p| p.len() != 4) {
            return None;
        }
        let mut v = Vec::new();
        for p in parts {
            v.push(hex_byte(&p[0..2])?);
            v.push(hex_byte(&p[2..4])?);
        }
        v
    } else {
        return None;
    };
    if !matches!(bytes.len(), 6 | 8 | 20) {
        return None;
    }
    Some(bytes.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":"))
}

fn hex_byte(p: &str) -> Option<u8> {
    if p.len() != 2 || !p.bytes().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    u8::from_str_radix(p, 16).ok()
}

/// matchbox `labelsFromRequest`: every query key is a label (first value wins); a key
/// equal to "mac" in any case is kept only if it parses, normalised.
pub fn labels_from_query(raw: &str) -> BTreeMap<String, String> {
    let pairs = parse_query(raw);
    let mut labels = BTreeMap::new();
    for (k, v) in &pairs {
        if labels.contains_key(k) {
            continue;
        }
        if k.eq_ignore_ascii_case("mac") {
            match normalize_mac(v) {
                Some(m) => {
                    labels.insert(k.clone(), m);
                }
                None => crate::log::log(
                    crate::log::Level::Warn,
                    &format!("ignoring unparseable MAC address: address {v}: invalid MAC address"),
                    &[("mac", v.clone())],
                ),
            }
        } else {
            labels.insert(k.clone(), v.clone());
        }
    }
    labels
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mac_forms() {
        assert_eq!(normalize_mac("52-54-00-AB-CD-EF").unwrap(), "52:54:00:ab:cd:ef");
        assert_eq!(normalize_mac("52:54:00:ab:cd:ef").unwrap(), "52:54:00:ab:cd:ef");
        assert_eq!(normalize_mac("5254.00ab.cdef").unwrap(), "52:54:00:ab:cd:ef");
        assert!(normalize_mac("52:54:00:ab:cd").is_none());
        assert!(normalize_mac("52:54:00:ab:cd:eg").is_none());
        assert!(normalize_mac("52:54-00:ab:cd:ef").is_none());
        assert!(normalize_mac("").is_none());
        assert_eq!(normalize_mac("00:00:00:00:fe:80:00:00").unwrap().len(), 23);
    }

    #[test]
    fn query() {
        let l = labels_from_query("mac=52-54-00-AB-CD-EF&arch=arm64&arch=x86_64&a+b=c%20d&bad=%zz&x;y=1&&uuid=");
        assert_eq!(l["mac"], "52:54:00:ab:cd:ef");
        assert_eq!(l["arch"], "arm64");
        assert_eq!(l["a b"], "c d");
        assert_eq!(l["uuid"], "");
        assert!(!l.contains_key("bad"));
        assert!(!l.contains_key("x;y"));
        let l = labels_from_query("MAC=junk&Mac=52:54:00:00:00:01");
        assert!(!l.contains_key("MAC"));
        assert_eq!(l["Mac"], "52:54:00:00:00:01");
    }

    #[test]
    fn unescape() {
        assert_eq!(path_unescape("/a%2Fb+c").unwrap(), "/a/b+c");
        assert!(path_unescape("%4").is_none());
        assert!(path_unescape("%").is_none());
    }
}
