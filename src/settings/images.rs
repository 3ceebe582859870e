//! How cozyboot names the variant images, and checking the parts users give
//! (parsing is [`crate::artifacts::image_ref`]'s).

use super::Variant;
use crate::artifacts::image_ref::ImageRef;

pub fn variant_image(registry: &str, variant: Variant, component: &str, tag: &str) -> String {
    format!(
        "{}/talos/cozystack-{}/{component}:{tag}",
        registry.trim_end_matches('/'),
        variant.name()
    )
}

pub use crate::artifacts::image_ref::check_tag;

/// Checks a complete reference with a tag against the distribution reference grammar.
pub fn check_reference(reference: &str) -> Result<(), String> {
    ImageRef::split(reference).check()
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
    fn registries() {
        assert!(check_registry("ghcr.io/urmanac/cozystack-assets").is_ok());
        assert!(check_registry("127.0.0.1:5000/urmanac/cozystack-assets").is_ok());
        assert!(check_registry("https://ghcr.io/x").is_err());
        assert!(check_registry("Ghcr.io/UPPER").is_err());
        assert!(check_registry("bad registry").is_err());
    }
}
