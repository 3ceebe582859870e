//! Image references, `[registry[:port]/]path[:tag][@digest]`: split in one place, for the
//! settings (which judge them against the grammar), the engine (which pulls by name and tag)
//! and `validate` (which says what part of a running container's image differs).
//!
//! Written out rather than taken from a regex-based crate: compiling those regexes costs
//! ~40 ms per process, twice `render`'s budget.

/// A reference split into its parts, borrowed from the text. Splitting never fails; whether
/// the parts are valid is [`ImageRef::check`]'s business (or the caller's, for looser needs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageRef<'a> {
    /// The repository: registry (if any) and path, `127.0.0.1:5000/a/b`.
    pub name: &'a str,
    /// After the last `:` that is not part of a registry port.
    pub tag: Option<&'a str>,
    /// After the `@`: `sha256:…`.
    pub digest: Option<&'a str>,
}

impl<'a> ImageRef<'a> {
    pub fn split(reference: &'a str) -> Self {
        let (rest, digest) = match reference.split_once('@') {
            Some((rest, digest)) => (rest, Some(digest)),
            None => (reference, None),
        };
        // A `:` followed by a `/` belongs to a registry port (`host:5000/x`), not a tag.
        let (name, tag) = match rest.rfind(':') {
            Some(i) if !rest[i + 1..].contains('/') => (&rest[..i], Some(&rest[i + 1..])),
            _ => (rest, None),
        };
        ImageRef { name, tag, digest }
    }

    /// The tag the engine uses when none is written.
    pub fn tag_or_latest(&self) -> &'a str {
        self.tag.unwrap_or("latest")
    }

    /// The registry host[:port], when the first part of the name is one. As the engine
    /// decides: only if there is more than one part and the first has a `.` or a `:` or is
    /// `localhost` (else `library/x` on Docker Hub would be a host).
    pub fn registry(&self) -> Option<&'a str> {
        let (first, _) = self.name.split_once('/')?;
        let looks_like_host = first.contains('.') || first.contains(':') || first == "localhost";
        looks_like_host.then_some(first)
    }

    /// The name without the registry: `urmanac/cozystack-assets/talos/...`.
    pub fn path(&self) -> &'a str {
        match self.registry() {
            Some(registry) => &self.name[registry.len() + 1..],
            None => self.name,
        }
    }

    /// Checks the reference against the distribution reference grammar, as the engine will
    /// parse it; a tag (or a digest) is required, since cozyboot never means "latest" by accident.
    pub fn check(&self) -> Result<(), String> {
        if self.name.chars().any(|c| c.is_ascii_uppercase()) {
            return Err("repository names must be lower-case".into());
        }
        if let Some(tag) = self.tag {
            check_tag(tag)?;
        }
        match self.digest {
            Some(d) if !valid_digest(d) => return Err(format!("'{d}' is not a digest (algorithm:hex)")),
            None if self.tag.is_none() => return Err("has no tag".into()),
            _ => {}
        }
        if self.name.len() > 255 {
            return Err("the name is longer than 255 characters".into());
        }
        if let Some(registry) = self.registry() {
            if !valid_domain(registry) {
                return Err(format!("'{registry}' is not a registry host[:port]"));
            }
        }
        match self.path().split('/').find(|p| !valid_path_component(p)) {
            Some(bad) => Err(format!(
                "invalid reference format: '{bad}' is not a repository path component (lower-case letters and digits, separated by '.', '_', '__' or dashes)"
            )),
            None => Ok(()),
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn check(reference: &str) -> Result<(), String> {
        ImageRef::split(reference).check()
    }

    #[test]
    fn splits_name_tag_and_digest_and_never_takes_a_port_for_a_tag() {
        let cases = [
            ("alpine", "alpine", None, None),
            ("alpine:3.20", "alpine", Some("3.20"), None),
            (
                "ghcr.io/cozystack/cozystack/talos:v1.10.5",
                "ghcr.io/cozystack/cozystack/talos",
                Some("v1.10.5"),
                None,
            ),
            ("127.0.0.1:5000/a/b:tag", "127.0.0.1:5000/a/b", Some("tag"), None),
            ("127.0.0.1:5000/a/b", "127.0.0.1:5000/a/b", None, None),
            ("localhost:5000/x", "localhost:5000/x", None, None),
            ("alpine:", "alpine", Some(""), None),
            ("reg:5000/", "reg:5000/", None, None),
            (
                "quay.io/poseidon/matchbox@sha256:0123abcd",
                "quay.io/poseidon/matchbox",
                None,
                Some("sha256:0123abcd"),
            ),
            ("x:v1@sha256:00", "x", Some("v1"), Some("sha256:00")),
        ];
        for (reference, name, tag, digest) in cases {
            assert_eq!(
                ImageRef::split(reference),
                ImageRef { name, tag, digest },
                "{reference}"
            );
        }
        assert_eq!(ImageRef::split("127.0.0.1:5000/a/b").tag_or_latest(), "latest");
    }

    #[test]
    fn the_registry_is_the_first_part_only_when_it_looks_like_a_host() {
        fn registry(reference: &str) -> Option<&str> {
            ImageRef::split(reference).registry()
        }
        assert_eq!(registry("127.0.0.1:5000/a/b:t"), Some("127.0.0.1:5000"));
        assert_eq!(registry("localhost/a"), Some("localhost"));
        assert_eq!(registry("ghcr.io/x/y:v1"), Some("ghcr.io"));
        assert_eq!(registry("library/busybox:v1"), None);
        assert_eq!(registry("busybox:v1"), None);
        assert_eq!(ImageRef::split("ghcr.io/x/y:v1").path(), "x/y");
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
            assert!(check(ok).is_ok(), "{ok}: {:?}", check(ok));
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
            assert!(check(bad).is_err(), "{bad}");
        }
    }
}
