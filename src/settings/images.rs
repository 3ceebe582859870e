//! Image references: how cozyboot names the variant images, and checking user-given parts.

use super::Variant;

pub fn variant_image(registry: &str, variant: Variant, component: &str, tag: &str) -> String {
    format!(
        "{}/talos/cozystack-{}/{component}:{tag}",
        registry.trim_end_matches('/'),
        variant.name()
    )
}

/// Docker's tag grammar: `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`.
pub fn check_tag(tag: &str) -> Result<(), String> {
    let mut chars = tag.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
    let rest_ok = tag
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if tag.is_empty() || tag.len() > 128 || !first_ok || !rest_ok {
        return Err(
            "not a valid image tag (letters, digits, '_', '.', '-'; at most 128; not starting with '.' or '-')".into(),
        );
    }
    Ok(())
}

/// Checks a complete reference with a tag against the distribution reference grammar
/// (`[domain[:port]/]path[:tag][@digest]`), as the engine will parse it. Written out here
/// because the regex-based parsers cost ~40 ms per process to compile, twice `render`'s budget.
pub fn check_reference(reference: &str) -> Result<(), String> {
    let (rest, digest) = match reference.split_once('@') {
        Some((rest, digest)) => (rest, Some(digest)),
        None => (reference, None),
    };
    let (name, tag) = match rest.rfind(':') {
        Some(i) if !rest[i + 1..].contains('/') => (&rest[..i], Some(&rest[i + 1..])),
        _ => (rest, None),
    };
    if name.chars().any(|c| c.is_ascii_uppercase()) {
        return Err("repository names must be lower-case".into());
    }
    if let Some(tag) = tag {
        check_tag(tag)?;
    }
    match digest {
        Some(d) if !valid_digest(d) => return Err(format!("'{d}' is not a digest (algorithm:hex)")),
        None if tag.is_none() => return Err("has no tag".into()),
        _ => {}
    }
    if name.len() > 255 {
        return Err("the name is longer than 255 characters".into());
    }
    let mut parts: Vec<&str> = name.split('/').collect();
    // The first part is a registry host only if it looks like one (as the engine decides).
    let first = parts[0];
    if parts.len() > 1 && (first.contains('.') || first.contains(':') || first == "localhost") {
        if !valid_domain(first) {
            return Err(format!("'{first}' is not a registry host[:port]"));
        }
        parts.remove(0);
    }
    match parts.iter().find(|p| !valid_path_component(p)) {
        Some(bad) => Err(format!(
            "invalid reference format: '{bad}' is not a repository path component (lower-case letters and digits, separated by '.', '_', '__' or dashes)"
        )),
        None => Ok(()),
    }
}

fn valid_domain(domain: &str) -> bool {
    let (host, port) = match domain.rsplit_once(':') {
        Some((host, port)) if !host.ends_with(']') || domain.starts_with('[') => (host, Some(port)),
        _ => (domain, None),
    };
    let port_ok = port.is_none_or(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()));
    let host_ok = if let Some(v6) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        !v6.is_empty() && v6.chars().all(|c| c.is_ascii_hexdigit() || c == ':')
    } else {
        host.split('.').all(|label| {
            let b = label.as_bytes();
            !b.is_empty()
                && b[0].is_ascii_alphanumeric()
                && b[b.len() - 1].is_ascii_alphanumeric()
                && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
        })
    };
    port_ok && host_ok
}

/// `[a-z0-9]+` runs joined by exactly one separator: `.`, `_`, `__` or one or more `-`.
fn valid_path_component(component: &str) -> bool {
    let alnum = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
    let mut separator = String::new();
    let mut seen_alnum = false;
    for c in component.chars() {
        if alnum(c) {
            let ok = separator.is_empty()
                || matches!(separator.as_str(), "." | "_" | "__")
                || separator.chars().all(|s| s == '-');
            if !ok || (!seen_alnum && !separator.is_empty()) {
                return false;
            }
            separator.clear();
            seen_alnum = true;
        } else if matches!(c, '.' | '_' | '-') {
            separator.push(c);
        } else {
            return false;
        }
    }
    seen_alnum && separator.is_empty()
}

fn valid_digest(digest: &str) -> bool {
    match digest.split_once(':') {
        Some((algorithm, hex)) => {
            !algorithm.is_empty()
                && algorithm
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '.' | '_' | '-'))
                && hex.len() >= 32
                && hex.chars().all(|c| c.is_ascii_hexdigit())
        }
        None => false,
    }
}

/// Checks a registry prefix such as `ghcr.io/urmanac/cozystack-assets` or `127.0.0.1:5000/x`.
pub fn check_registry(registry: &str) -> Result<(), String> {
    if registry.is_empty() {
        return Err("is empty".into());
    }
    if registry.contains("://") {
        return Err("must not have a scheme (write 'registry.example:5000/path', not a URL)".into());
    }
    if registry.contains('@') {
        return Err("must not contain a digest".into());
    }
    // Validate the prefix in the position it is used in.
    check_reference(&variant_image(registry, Variant::SpinOnly, "talos", "latest"))
        .map_err(|e| format!("does not make a valid image reference: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variant_images_follow_the_published_layout() {
        assert_eq!(
            variant_image(
                "ghcr.io/urmanac/cozystack-assets",
                Variant::SpinTailscale,
                "matchbox",
                "v1.3.3"
            ),
            "ghcr.io/urmanac/cozystack-assets/talos/cozystack-spin-tailscale/matchbox:v1.3.3"
        );
    }

    #[test]
    fn tags() {
        assert!(check_tag("latest").is_ok());
        assert!(check_tag("v1.3.3").is_ok());
        assert!(check_tag("-bad").is_err());
        assert!(check_tag("a/b").is_err());
        assert!(check_tag("").is_err());
        assert!(check_tag(&"a".repeat(129)).is_err());
    }

    #[test]
    fn references() {
        for ok in [
            "quay.io/poseidon/dnsmasq:v0.5.0-32-g4327d60-amd64",
            "127.0.0.1:5000/urmanac/cozystack-assets/talos/cozystack-spin-only/talos:latest",
            "localhost/a__b/c-d--e:1",
            "busybox:latest",
            "ghcr.io/x/y@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
        ] {
            assert!(check_reference(ok).is_ok(), "{ok}: {:?}", check_reference(ok));
        }
        for bad in [
            "quay.io/poseidon/dnsmasq",
            "quay.io/poseidon/dnsmasq:bad tag",
            "quay.io/Poseidon/dnsmasq:v1",
            "quay.io//dnsmasq:v1",
            "quay.io/-x/dnsmasq:v1",
            "quay.io/a..b/dnsmasq:v1",
            "bad registry/x:v1",
            "host:port/x:v1",
            "x@sha256:abc",
        ] {
            assert!(check_reference(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn registries() {
        assert!(check_registry("ghcr.io/urmanac/cozystack-assets").is_ok());
        assert!(check_registry("127.0.0.1:5000/urmanac/cozystack-assets").is_ok());
        assert!(check_registry("https://ghcr.io/x").is_err());
        assert!(check_registry("Ghcr.io/UPPER").is_err());
        assert!(check_registry("bad registry").is_err());
    }
}
