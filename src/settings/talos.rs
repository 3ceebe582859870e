//! Talos machine configs given to cozyboot: read once, checked before anything is served.

use crate::error::setting::ConfigError;
use serde::Serialize;
use std::path::{Path, PathBuf};

/// A Talos machine config file, read and checked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TalosConfig {
    pub path: PathBuf,
    #[serde(skip)]
    pub content: String,
}

/// Reads and checks a machine config against the installer image the nodes must use.
pub fn load(field: &str, path: &Path, expected_image: &str) -> Result<TalosConfig, ConfigError> {
    let shown = path.display().to_string();
    let fail = |problem: String, fix: String| ConfigError::new(field, problem, fix).value(&shown);
    let content = std::fs::read_to_string(path).map_err(|e| {
        fail(
            format!("cannot read the Talos machine config: {e}"),
            "check the path and its permissions".into(),
        )
    })?;
    // matchbox renders /generic files as Go templates: a literal `{{` breaks or alters them.
    if let Some(line) = content.lines().position(|l| l.contains("{{")) {
        return Err(fail(
            format!(
                "line {} contains '{{{{', which matchbox would evaluate as a Go template",
                line + 1
            ),
            "remove the template braces (escape them as {{ \"{{\" }} if they must stay)".into(),
        ));
    }
    let install_image = install_image(&content).map_err(|e| {
        fail(
            format!("not valid YAML: {e}"),
            "fix the file; `talosctl validate --config FILE --mode metal` checks it fully".into(),
        )
    })?;
    match install_image {
        Some(image) if image == expected_image => {}
        Some(image) => {
            return Err(fail(
                format!(
                    "machine.install.image is '{image}', but the nodes PXE-boot the kernel and initramfs of '{expected_image}'"
                ),
                format!("set machine.install.image: {expected_image} (or change --variant/--tag to match)"),
            ))
        }
        None => {
            return Err(fail(
                format!(
                    "machine.install.image is not set, so Talos would install its stock installer instead of '{expected_image}'"
                ),
                format!("add machine.install.image: {expected_image}"),
            ))
        }
    }
    Ok(TalosConfig {
        path: path.to_path_buf(),
        content,
    })
}

/// `machine.install.image` from the first document that has a `machine` section.
fn install_image(content: &str) -> Result<Option<String>, String> {
    use serde::Deserialize;
    let mut saw_document = false;
    for document in serde_yaml_ng::Deserializer::from_str(content) {
        let value = serde_yaml_ng::Value::deserialize(document).map_err(|e| e.to_string())?;
        saw_document = true;
        if let Some(machine) = value.get("machine") {
            return Ok(machine
                .get("install")
                .and_then(|i| i.get("image"))
                .and_then(|i| i.as_str())
                .map(str::to_string));
        }
    }
    if saw_document {
        Err("no `machine:` section: this is not a Talos machine config".into())
    } else {
        Err("the file is empty".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_install_image_in_a_multi_document_config() {
        let text = "apiVersion: v1alpha1\nkind: HostnameConfig\n---\nmachine:\n  install:\n    image: x:y\n";
        assert_eq!(install_image(text).unwrap(), Some("x:y".into()));
    }

    #[test]
    fn reports_yaml_errors_with_a_location() {
        let err = install_image("machine: [\n").unwrap_err();
        assert!(err.contains("line"), "{err}");
    }
}
