//! Desired state versus what the engine and the data dir hold → the actions `up` takes.
//!
//! Pure: no Docker, no disk. `up --dry-run` prints the plan; `apply` carries it out, and plans
//! again after pulling, because a pull can change what an image holds.

use crate::artifacts::arch::Arch;
use crate::artifacts::tls::ServerNames;
use crate::render::container_spec::ContainerSpec;
use crate::render::containers::{Role, LABEL_SPEC_HASH};
use crate::settings::PullPolicy;
use crate::store::state::{SourceKind, State};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::PathBuf;

/// What `up` wants to exist.
#[derive(Debug, Clone)]
pub struct Desired {
    pub pull: PullPolicy,
    /// Every image `up` needs, with the tag.
    pub images: Vec<String>,
    pub talos_image: String,
    pub dnsmasq_image: String,
    pub arches: Vec<Arch>,
    /// Whether x86 bootloaders must be copied out of the dnsmasq image.
    pub x86_bootloaders: bool,
    /// Where the arm64 iPXE binary comes from, when arm64 is served.
    pub arm64_source: Option<Arm64Source>,
    /// Where the Raspberry Pi UEFI firmware comes from, when the Pi EEPROM's netboot is served
    /// (same shape as the arm64 iPXE's source: `--rpi-uefi`, or the pinned release's download).
    pub rpi_source: Option<Arm64Source>,
    /// The boards' settings (`rpi-nodes`) their own `<serial>/RPI_EFI.fd` must carry, as one
    /// fingerprint: a change rewrites the boards' folders even when the release is the same.
    pub rpi_boards: String,
    /// The names matchbox's gRPC server certificate must cover, when the API is enabled.
    pub certificates: Option<ServerNames>,
    /// matchbox first: dnsmasq may share its network namespace.
    pub containers: Vec<(Role, ContainerSpec)>,
    /// Whether dnsmasq shares matchbox's network namespace (so a new matchbox means a new dnsmasq).
    pub dnsmasq_follows_matchbox: bool,
    /// Paths of rendered matchbox files whose content differs from the disk.
    pub files_to_write: Vec<String>,
}

/// Where this run's arm64 iPXE binary comes from (`apply` resolves it: flag, file placed in
/// the assets dir, host package, cached download, download).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Arm64Source {
    pub kind: SourceKind,
    /// The path or URL: what state records and the plan compares.
    pub source: String,
    /// A copy of the download from `source` cached earlier, installed instead of fetching again.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cached: Option<PathBuf>,
}

/// What is there now.
#[derive(Debug, Clone, Default)]
pub struct Observed {
    /// Local image id per image reference; `None` when the engine does not have it.
    pub images: BTreeMap<String, Option<String>>,
    pub state: State,
    /// Whether the recorded asset files are all still on disk, per arch name.
    pub assets_present: BTreeMap<String, bool>,
    pub x86_bootloaders_present: bool,
    pub arm64_bootloader_present: bool,
    /// Whether every recorded Pi firmware file is still in the TFTP root with its size.
    pub rpi_firmware_present: bool,
    /// The names the certificates on disk cover; `None` when there is no complete set.
    pub certificates: Option<ServerNames>,
    pub containers: BTreeMap<String, ObservedContainer>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObservedContainer {
    pub id: String,
    pub image_id: String,
    pub running: bool,
    pub labels: BTreeMap<String, String>,
    pub cmd: Vec<String>,
    pub image: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "action", rename_all = "kebab-case")]
pub enum Action {
    Pull {
        image: String,
        reason: String,
    },
    /// Files in the matchbox tree that cozyboot did not write, moved aside on request.
    MoveForeign {
        files: Vec<String>,
        to: String,
    },
    ExtractAssets {
        arch: Arch,
        image: String,
        reason: String,
    },
    CopyX86Bootloaders {
        image: String,
        reason: String,
    },
    InstallArm64Bootloader {
        kind: SourceKind,
        source: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        cached: Option<PathBuf>,
        reason: String,
    },
    InstallRpiFirmware {
        kind: SourceKind,
        source: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        cached: Option<PathBuf>,
        reason: String,
    },
    WriteConfig {
        files: Vec<String>,
    },
    GenerateCertificates {
        reason: String,
    },
    CreateContainer {
        role: Role,
        name: String,
    },
    ReplaceContainer {
        role: Role,
        name: String,
        reason: String,
    },
    Keep {
        role: Role,
        name: String,
    },
}

impl Action {
    /// One line for people.
    pub fn describe(&self) -> String {
        match self {
            Action::Pull { image, reason } => format!("pull {image} ({reason})"),
            Action::MoveForeign { files, to } => {
                format!("move {} file(s) cozyboot did not write into {to}", files.len())
            }
            Action::ExtractAssets { arch, image, reason } => {
                format!("extract {arch} kernel and initramfs from {image} ({reason})")
            }
            Action::CopyX86Bootloaders { image, reason } => {
                format!("copy undionly.kpxe and ipxe.efi out of {image} ({reason})")
            }
            Action::InstallArm64Bootloader {
                kind,
                source,
                cached,
                reason,
            } => match (kind, cached) {
                (SourceKind::Placed, _) => {
                    format!("check and record the arm64 iPXE binary placed at {source} ({reason})")
                }
                (_, Some(copy)) => format!(
                    "install the arm64 iPXE binary from {source} ({kind}, copy cached in {}; {reason})",
                    copy.display()
                ),
                (_, None) => format!("install the arm64 iPXE binary from {source} ({kind}; {reason})"),
            },
            Action::InstallRpiFirmware {
                kind,
                source,
                cached,
                reason,
            } => match cached {
                Some(copy) => format!(
                    "install the Raspberry Pi UEFI firmware into the TFTP root from {source} ({kind}, copy cached in {}; {reason})",
                    copy.display()
                ),
                None => format!("install the Raspberry Pi UEFI firmware into the TFTP root from {source} ({kind}; {reason})"),
            },
            Action::WriteConfig { files } => format!("write {} matchbox file(s)", files.len()),
            Action::GenerateCertificates { reason } => format!("generate matchbox gRPC TLS certificates ({reason})"),
            Action::CreateContainer { name, .. } => format!("create and start {name}"),
            Action::ReplaceContainer { name, reason, .. } => format!("replace {name} ({reason})"),
            Action::Keep { name, .. } => format!("keep {name} (unchanged, running)"),
        }
    }
}

/// A plan that cannot be carried out, found before anything is touched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanError(pub String);

/// Which images to pull. Apart from the images, everything is planned by [`plan`].
pub fn pulls(d: &Desired, o: &Observed) -> Result<Vec<Action>, PlanError> {
    let mut actions = Vec::new();
    for image in &d.images {
        let present = o.images.get(image).is_some_and(Option::is_some);
        let reason = match (d.pull, present) {
            (PullPolicy::Never, false) => {
                return Err(PlanError(format!(
                    "{image} is not in the engine and the pull policy is 'never'\n  fix: pull or load it (docker pull / docker load), or use --pull missing"
                )))
            }
            (PullPolicy::Never, true) => continue,
            (PullPolicy::Always, _) => "pull policy always",
            (PullPolicy::Missing, false) => "not in the engine",
            // A moving tag may point at new content: ask the registry (cheap when unchanged).
            (PullPolicy::Missing, true) if image.ends_with(":latest") => "re-check the moving tag latest",
            (PullPolicy::Missing, true) => continue,
        };
        actions.push(Action::Pull {
            image: image.clone(),
            reason: reason.to_string(),
        });
    }
    Ok(actions)
}

/// Everything but pulls, against the images the engine holds now.
pub fn plan(d: &Desired, o: &Observed) -> Vec<Action> {
    let mut actions = Vec::new();
    let image_id = |image: &str| o.images.get(image).cloned().flatten();

    for arch in &d.arches {
        let recorded = o.state.assets.get(arch.name());
        let present = o.assets_present.get(arch.name()).copied().unwrap_or(false);
        let reason = match (recorded, image_id(&d.talos_image)) {
            (None, _) => Some("no assets recorded"),
            (Some(_), _) if !present => Some("asset files missing or changed on disk"),
            (Some(r), Some(id)) if r.image_id != id || r.image != d.talos_image => Some("image changed"),
            (Some(_), None) => Some("image not yet pulled"),
            _ => None,
        };
        if let Some(reason) = reason {
            actions.push(Action::ExtractAssets {
                arch: *arch,
                image: d.talos_image.clone(),
                reason: reason.into(),
            });
        }
    }

    if d.x86_bootloaders {
        let recorded = o.state.x86_bootloaders.as_ref();
        let reason = match (recorded, image_id(&d.dnsmasq_image)) {
            (None, _) => Some("not copied yet"),
            (Some(_), _) if !o.x86_bootloaders_present => Some("files missing or changed on disk"),
            (Some(r), Some(id)) if r.image_id != id => Some("dnsmasq image changed"),
            _ => None,
        };
        if let Some(reason) = reason {
            actions.push(Action::CopyX86Bootloaders {
                image: d.dnsmasq_image.clone(),
                reason: reason.into(),
            });
        }
    }

    if let Some(wanted) = &d.arm64_source {
        let recorded = o.state.arm64_bootloader.as_ref();
        let reason = match recorded {
            None if wanted.kind == SourceKind::Placed => Some("not recorded yet"),
            None => Some("not installed yet"),
            Some(_) if !o.arm64_bootloader_present => Some("file missing or changed on disk"),
            Some(r) if r.file.source.as_deref() != Some(wanted.source.as_str()) => Some("source changed"),
            _ => None,
        };
        if let Some(reason) = reason {
            actions.push(Action::InstallArm64Bootloader {
                kind: wanted.kind,
                source: wanted.source.clone(),
                cached: wanted.cached.clone(),
                reason: reason.into(),
            });
        }
    }

    if let Some(wanted) = &d.rpi_source {
        let reason = match &o.state.rpi_firmware {
            None => Some("not installed yet"),
            Some(_) if !o.rpi_firmware_present => Some("files missing or changed on disk"),
            Some(r) if r.source != wanted.source => Some("source changed"),
            Some(r) if r.boards != d.rpi_boards => Some("boards' settings changed"),
            _ => None,
        };
        if let Some(reason) = reason {
            actions.push(Action::InstallRpiFirmware {
                kind: wanted.kind,
                source: wanted.source.clone(),
                cached: wanted.cached.clone(),
                reason: reason.into(),
            });
        }
    }

    let certificates_reason = d.certificates.as_ref().and_then(|wanted| match &o.certificates {
        None => Some("none yet".to_string()),
        Some(have) if have != wanted => Some(format!("they cover {have}, not {wanted}")),
        Some(_) => None,
    });
    let certificates_regenerated = certificates_reason.is_some();
    if let Some(reason) = certificates_reason {
        actions.push(Action::GenerateCertificates { reason });
    }
    if !d.files_to_write.is_empty() {
        actions.push(Action::WriteConfig {
            files: d.files_to_write.clone(),
        });
    }

    let mut matchbox_replaced = false;
    for (role, spec) in &d.containers {
        let reason = container_reason(spec, o.containers.get(&spec.name), image_id(&spec.image));
        let reason = match reason {
            Some(r) => Some(r),
            // matchbox reads its certificates only when it starts.
            None if *role == Role::Matchbox && certificates_regenerated => {
                Some(Reason::Replace("its gRPC TLS certificates were regenerated".into()))
            }
            None if *role == Role::Dnsmasq && d.dnsmasq_follows_matchbox && matchbox_replaced => {
                Some(Reason::Replace("it shares matchbox's network namespace".into()))
            }
            None => None,
        };
        let name = spec.name.clone();
        actions.push(match reason {
            None => Action::Keep { role: *role, name },
            Some(Reason::Create) => Action::CreateContainer { role: *role, name },
            Some(Reason::Replace(reason)) => Action::ReplaceContainer {
                role: *role,
                name,
                reason,
            },
        });
        if *role == Role::Matchbox {
            matchbox_replaced = !matches!(actions.last(), Some(Action::Keep { .. }));
        }
    }
    actions
}

enum Reason {
    Create,
    Replace(String),
}

fn container_reason(
    spec: &ContainerSpec,
    found: Option<&ObservedContainer>,
    image_id: Option<String>,
) -> Option<Reason> {
    let Some(c) = found else {
        return Some(Reason::Create);
    };
    let wanted_hash = spec.labels.get(LABEL_SPEC_HASH);
    if !c.labels.contains_key(LABEL_SPEC_HASH) {
        return Some(Reason::Replace("not created by cozyboot (started by hand?)".into()));
    }
    if c.labels.get(LABEL_SPEC_HASH) != wanted_hash {
        let what = if c.cmd != spec.cmd {
            "args changed"
        } else if c.image != spec.image {
            "image changed"
        } else {
            "settings changed"
        };
        return Some(Reason::Replace(what.into()));
    }
    if image_id.is_some_and(|id| id != c.image_id) {
        return Some(Reason::Replace("a newer image was pulled".into()));
    }
    if !c.running {
        return Some(Reason::Replace("not running".into()));
    }
    None
}

/// True when nothing but `Keep` is planned.
pub fn is_noop(actions: &[Action]) -> bool {
    actions.iter().all(|a| matches!(a, Action::Keep { .. }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::container_spec::NetworkMode;
    use crate::store::state::{AssetRecord, FileRecord};

    fn spec(name: &str, cmd: &[&str], hash: &str) -> ContainerSpec {
        ContainerSpec {
            name: name.into(),
            image: format!("{name}:v1"),
            cmd: cmd.iter().map(|s| s.to_string()).collect(),
            labels: BTreeMap::from([(LABEL_SPEC_HASH.to_string(), hash.to_string())]),
            binds: vec![],
            network: NetworkMode::Host,
            cap_add: vec![],
            restart_unless_stopped: true,
        }
    }

    fn desired() -> Desired {
        Desired {
            pull: PullPolicy::Missing,
            images: vec!["talos:v1".into(), "matchbox:v1".into(), "dnsmasq:v1".into()],
            talos_image: "talos:v1".into(),
            dnsmasq_image: "dnsmasq:v1".into(),
            arches: vec![Arch::Arm64],
            x86_bootloaders: false,
            arm64_source: None,
            rpi_source: None,
            rpi_boards: String::new(),
            certificates: None,
            containers: vec![
                (Role::Matchbox, spec("matchbox", &["-address=0.0.0.0:8080"], "m1")),
                (Role::Dnsmasq, spec("dnsmasq", &["-d"], "d1")),
            ],
            dnsmasq_follows_matchbox: false,
            files_to_write: vec![],
        }
    }

    /// Everything in place and running, as after a successful `up`.
    fn settled(d: &Desired) -> Observed {
        let images = d.images.iter().map(|i| (i.clone(), Some(format!("id-{i}")))).collect();
        let mut state = State::default();
        state.assets.insert(
            "arm64".into(),
            AssetRecord {
                image: d.talos_image.clone(),
                image_id: format!("id-{}", d.talos_image),
                source: "/assets/talos/arm64".into(),
                layout: "assets".into(),
                verified_by: None,
                uki: None,
                archive_bytes: 0,
                files: vec![FileRecord {
                    name: "vmlinuz".into(),
                    size: 1,
                    sha256: String::new(),
                    source: None,
                }],
                extracted_at: 0,
            },
        );
        let containers = d
            .containers
            .iter()
            .map(|(_, s)| {
                let c = ObservedContainer {
                    id: format!("{}-id", s.name),
                    image_id: format!("id-{}", s.image),
                    running: true,
                    labels: s.labels.clone(),
                    cmd: s.cmd.clone(),
                    image: s.image.clone(),
                };
                (s.name.clone(), c)
            })
            .collect();
        Observed {
            images,
            state,
            assets_present: BTreeMap::from([("arm64".into(), true)]),
            certificates: d.certificates.clone(),
            containers,
            ..Observed::default()
        }
    }

    #[test]
    fn a_settled_site_plans_nothing_and_pins_are_not_pulled() {
        let d = desired();
        let o = settled(&d);
        assert!(pulls(&d, &o).unwrap().is_empty());
        assert!(is_noop(&plan(&d, &o)));
    }

    #[test]
    fn certificates_are_generated_when_missing_and_again_when_the_server_address_changes() {
        let mut d = desired();
        d.certificates = Some(ServerNames::for_server("10.0.0.2".parse().unwrap()));
        let mut o = settled(&d);
        assert!(is_noop(&plan(&d, &o)), "they cover the address: nothing to do");

        o.certificates = None;
        assert!(plan(&d, &o).contains(&Action::GenerateCertificates {
            reason: "none yet".into()
        }));

        o.certificates = d.certificates.clone();
        d.certificates = Some(ServerNames::for_server("10.0.0.3".parse().unwrap()));
        let actions = plan(&d, &o);
        let reasons: Vec<&str> = actions
            .iter()
            .filter_map(|a| match a {
                Action::GenerateCertificates { reason } => Some(reason.as_str()),
                Action::ReplaceContainer {
                    role: Role::Matchbox,
                    reason,
                    ..
                } => Some(reason.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(
            reasons,
            [
                "they cover 10.0.0.2, 127.0.0.1, localhost, matchbox, not 10.0.0.3, 127.0.0.1, localhost, matchbox",
                "its gRPC TLS certificates were regenerated",
            ]
        );
    }

    #[test]
    fn latest_is_rechecked_and_never_refuses_a_missing_image() {
        let mut d = desired();
        d.images[0] = "talos:latest".into();
        let mut o = settled(&d);
        assert_eq!(pulls(&d, &o).unwrap().len(), 1);
        d.pull = PullPolicy::Never;
        o.images.insert("matchbox:v1".into(), None);
        assert!(pulls(&d, &o).unwrap_err().0.contains("matchbox:v1"));
    }

    #[test]
    fn a_new_image_id_means_new_assets_and_a_new_container() {
        let d = desired();
        let mut o = settled(&d);
        o.images.insert("talos:v1".into(), Some("id-new".into()));
        o.images.insert("matchbox:v1".into(), Some("id-new".into()));
        let actions = plan(&d, &o);
        assert!(actions
            .iter()
            .any(|a| matches!(a, Action::ExtractAssets { reason, .. } if reason == "image changed")));
        assert!(actions.iter().any(|a| matches!(
            a,
            Action::ReplaceContainer {
                role: Role::Matchbox,
                ..
            }
        )));
        assert!(actions.iter().any(|a| matches!(
            a,
            Action::Keep {
                role: Role::Dnsmasq,
                ..
            }
        )));
    }

    #[test]
    fn changed_args_replace_only_that_container_unless_dnsmasq_follows_matchbox() {
        let mut d = desired();
        let o = settled(&d);
        d.containers[0].1 = spec("matchbox", &["-log-level=debug"], "m2");
        let actions = plan(&d, &o);
        assert!(actions.contains(&Action::ReplaceContainer {
            role: Role::Matchbox,
            name: "matchbox".into(),
            reason: "args changed".into()
        }));
        assert!(actions.contains(&Action::Keep {
            role: Role::Dnsmasq,
            name: "dnsmasq".into()
        }));
        d.dnsmasq_follows_matchbox = true;
        let actions = plan(&d, &o);
        assert!(actions.iter().any(|a| matches!(
            a,
            Action::ReplaceContainer {
                role: Role::Dnsmasq,
                ..
            }
        )));
    }

    #[test]
    fn hand_started_stopped_and_missing_containers_are_replaced_or_created() {
        let d = desired();
        let mut o = settled(&d);
        o.containers.get_mut("matchbox").unwrap().labels.clear();
        o.containers.get_mut("dnsmasq").unwrap().running = false;
        let actions = plan(&d, &o);
        assert!(actions
            .iter()
            .any(|a| matches!(a, Action::ReplaceContainer { reason, .. } if reason.contains("by hand"))));
        assert!(actions
            .iter()
            .any(|a| matches!(a, Action::ReplaceContainer { reason, .. } if reason == "not running")));
        o.containers.clear();
        assert_eq!(
            plan(&d, &o)
                .iter()
                .filter(|a| matches!(a, Action::CreateContainer { .. }))
                .count(),
            2
        );
    }

    #[test]
    fn an_unchanged_arm64_source_in_place_plans_nothing_and_a_new_one_installs() {
        use crate::store::state::{Arm64Record, FileRecord};
        let url = "https://boot.ipxe.org/arm64-efi/ipxe.efi";
        let mut d = desired();
        d.arm64_source = Some(Arm64Source {
            kind: SourceKind::Download,
            source: url.into(),
            cached: None,
        });
        let mut o = settled(&d);
        let install = |o: &Observed, d: &Desired| {
            plan(d, o)
                .into_iter()
                .find(|a| matches!(a, Action::InstallArm64Bootloader { .. }))
        };
        let action = install(&o, &d).expect("nothing recorded: install");
        assert_eq!(
            action.describe(),
            format!("install the arm64 iPXE binary from {url} (download; not installed yet)")
        );
        o.state.arm64_bootloader = Some(Arm64Record {
            file: FileRecord {
                name: "bootaa64.efi".into(),
                size: 1,
                sha256: String::new(),
                source: Some(url.into()),
            },
            source_kind: Some(SourceKind::Download),
        });
        o.arm64_bootloader_present = true;
        // The cached copy of the same URL is the same source: nothing to do.
        d.arm64_source.as_mut().unwrap().cached = Some("/x/.cozyboot/cache/ipxe-arm64-0.efi".into());
        assert_eq!(install(&o, &d), None);
        o.arm64_bootloader_present = false;
        assert!(install(&o, &d)
            .unwrap()
            .describe()
            .contains("copy cached in /x/.cozyboot/cache"));
        o.arm64_bootloader_present = true;
        d.arm64_source = Some(Arm64Source {
            kind: SourceKind::HostPackage,
            source: "/usr/lib/ipxe/ipxe-arm64.efi".into(),
            cached: None,
        });
        assert!(
            matches!(install(&o, &d), Some(Action::InstallArm64Bootloader { reason, .. }) if reason == "source changed")
        );
    }

    #[test]
    fn missing_asset_files_are_extracted_again() {
        let d = desired();
        let mut o = settled(&d);
        o.assets_present.insert("arm64".into(), false);
        assert!(plan(&d, &o).iter().any(|a| matches!(a, Action::ExtractAssets { .. })));
    }

    #[test]
    fn the_pi_firmware_is_installed_again_when_only_the_boards_settings_change() {
        let mut d = desired();
        d.rpi_source = Some(Arm64Source {
            kind: SourceKind::Explicit,
            source: "/srv/RPi4_UEFI_Firmware_v1.41.zip".into(),
            cached: None,
        });
        d.rpi_boards = "boards-a".into();
        let mut o = settled(&d);
        o.state.rpi_firmware = Some(crate::store::state::RpiFirmwareRecord {
            source: "/srv/RPi4_UEFI_Firmware_v1.41.zip".into(),
            source_kind: SourceKind::Explicit,
            version: Some("v1.41".into()),
            files: vec![],
            boards: "boards-a".into(),
        });
        o.rpi_firmware_present = true;
        assert!(is_noop(&plan(&d, &o)), "same release, same boards");

        d.rpi_boards = "boards-b".into();
        let reasons: Vec<String> = plan(&d, &o)
            .iter()
            .filter_map(|a| match a {
                Action::InstallRpiFirmware { reason, .. } => Some(reason.clone()),
                _ => None,
            })
            .collect();
        assert_eq!(reasons, ["boards' settings changed"]);
    }
}
