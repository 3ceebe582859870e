//! Image references: how cozyboot names the variant images, and checking user-given parts.

use super::Variant;
use oci_spec::distribution::Reference;

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
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
    let rest_ok = tag
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if tag.is_empty() || tag.len() > 128 || !first_ok || !rest_ok {
        return Err(
            "not a valid image tag (letters, digits, '_', '.', '-'; at most 128; not starting with '.' or '-')"
                .into(),
        );
    }
    Ok(())
}

/// Checks a complete reference with a tag, as the registry client will parse it.
pub fn check_reference(reference: &str) -> Result<(), String> {
    let name = match reference.rfind(':') {
        Some(i) if !reference[i..].contains('/') => &reference[..i],
        _ => reference,
    };
    if name.chars().any(|c| c.is_ascii_uppercase()) {
        return Err("repository names must be lower-case".into());
    }
    // The parser accepts tag-less references by defaulting to `latest`; cozyboot never wants that.
    let parsed = Reference::try_from(reference).map_err(|e| e.to_string())?;
    if parsed.tag().is_none() && parsed.digest().is_none() {
        return Err("has no tag".into());
    }
    Ok(())
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
            variant_image("ghcr.io/urmanac/cozystack-assets", Variant::SpinTailscale, "matchbox", "v1.3.3"),
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
    fn registries() {
        assert!(check_registry("ghcr.io/urmanac/cozystack-assets").is_ok());
        assert!(check_registry("127.0.0.1:5000/urmanac/cozystack-assets").is_ok());
        assert!(check_registry("https://ghcr.io/x").is_err());
        assert!(check_registry("Ghcr.io/UPPER").is_err());
        assert!(check_registry("bad registry").is_err());
    }
}
