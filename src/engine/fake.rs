//! An in-memory [`ContainerEngine`] for unit tests: images with files, containers with names,
//! ids, states and logs, network namespaces joined by container id as Docker does, a record
//! of every call, and failures scripted per method and container.
//!
//! A fault names a container by any name it had: its name at the call, its name at create
//! time (`cozyboot-matchbox-cozyboot-new` stays the target after the rename), or its id.

use std::collections::BTreeMap;
use std::io::Cursor;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures_util::FutureExt;

use super::candidates::{archive_prefix, first_complete_set, first_present};
use super::contract::ContainerEngine;
use super::docker::{ContainerInfo, EngineError, ExportedFiles, FileSet, ImageInfo, NetworkInfo, PullEvent};
use super::extract::{extract, ExtractReport, Limits};
use crate::render::container_spec::{ContainerSpec, NetworkMode};
use crate::render::containers::LABEL_ROLE;

/// The calls a fault can be attached to. `Health` and `Crash` act at `start`: the container
/// starts but never shows its health signal, or exits at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Pull,
    Create,
    Start,
    Stop,
    Rename,
    Remove,
    Health,
    Crash,
}

#[derive(Debug, Clone)]
struct Fault {
    op: Op,
    target: String,
    /// `None`: every time.
    left: Option<u32>,
}

/// An image: its id and its files (absolute paths).
#[derive(Debug, Clone)]
pub struct FakeImage {
    pub id: String,
    pub files: BTreeMap<String, Vec<u8>>,
}

#[derive(Debug, Clone)]
struct Container {
    id: String,
    name: String,
    created_as: String,
    spec: ContainerSpec,
    image_id: String,
    running: bool,
    status: String,
    exit_code: Option<i64>,
    started_at: Option<String>,
    logs: String,
    /// `container:<name>` resolved at create time, as Docker does: the id whose namespace it
    /// joins.
    joins: Option<String>,
    /// The network namespace of its processes while it runs.
    netns: Option<u64>,
    unhealthy: bool,
}

#[derive(Debug, Default)]
struct World {
    registry: BTreeMap<String, FakeImage>,
    images: BTreeMap<String, FakeImage>,
    containers: Vec<Container>,
    faults: Vec<Fault>,
    calls: Vec<String>,
    counter: u64,
    /// How many times a pull of the image lets the other tasks run before it completes.
    slow: BTreeMap<String, u32>,
}

#[derive(Debug, Clone, Default)]
pub struct FakeEngine {
    world: Arc<Mutex<World>>,
}

fn injected(what: String) -> EngineError {
    EngineError::Api {
        action: what,
        detail: "injected fault".into(),
    }
}

impl World {
    fn find(&self, name: &str) -> Option<usize> {
        self.containers.iter().position(|c| c.name == name || c.id == name)
    }

    /// The injected error for `op` on the container called `name`, if one is scripted.
    fn fault(&mut self, op: Op, name: &str) -> Option<EngineError> {
        let mut names = vec![name.to_string()];
        if let Some(i) = self.find(name) {
            names.push(self.containers[i].created_as.clone());
            names.push(self.containers[i].id.clone());
        }
        let fault = self
            .faults
            .iter_mut()
            .find(|f| f.op == op && names.contains(&f.target) && f.left != Some(0))?;
        if let Some(left) = &mut fault.left {
            *left -= 1;
        }
        Some(injected(format!("{op:?} {name}").to_lowercase()))
    }

    fn tick(&mut self) -> u64 {
        self.counter += 1;
        self.counter
    }

    fn info(&self, c: &Container) -> ContainerInfo {
        ContainerInfo {
            id: c.id.clone(),
            name: c.name.clone(),
            image: c.spec.image.clone(),
            image_id: c.image_id.clone(),
            labels: c.spec.labels.clone(),
            running: c.running,
            status: c.status.clone(),
            restart_count: 0,
            started_at: c.started_at.clone(),
            exit_code: c.exit_code,
            cmd: c.spec.cmd.clone(),
            network_mode: match &c.joins {
                Some(id) => format!("container:{id}"),
                None => c.spec.network.docker_value(),
            },
            pid: None,
        }
    }
}

impl FakeEngine {
    pub fn new() -> Self {
        Self::default()
    }

    fn world(&self) -> MutexGuard<'_, World> {
        self.world.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether the running container labelled `label=value` is healthy (no health fault hit
    /// it); `None` when none runs. What a health probe of its server would find.
    pub fn running_healthy(&self, label: &str, value: &str) -> Option<bool> {
        let w = self.world();
        w.containers
            .iter()
            .find(|c| c.running && c.spec.labels.get(label).map(String::as_str) == Some(value))
            .map(|c| !c.unhealthy)
    }

    /// An image `pull` can fetch.
    pub fn publish(&self, reference: &str, id: &str, files: &[(&str, &[u8])]) {
        let image = FakeImage {
            id: id.to_string(),
            files: files.iter().map(|(p, b)| (p.to_string(), b.to_vec())).collect(),
        };
        self.world().registry.insert(reference.to_string(), image);
    }

    /// A pull of `reference` takes `turns` turns of the other tasks (a big image).
    pub fn slow_pull(&self, reference: &str, turns: u32) {
        self.world().slow.insert(reference.to_string(), turns);
    }

    /// Every later `op` on `target` fails.
    pub fn fail(&self, op: Op, target: &str) {
        self.world().faults.push(Fault {
            op,
            target: target.to_string(),
            left: None,
        });
    }

    /// The next `op` on `target` fails.
    pub fn fail_once(&self, op: Op, target: &str) {
        self.world().faults.push(Fault {
            op,
            target: target.to_string(),
            left: Some(1),
        });
    }

    pub fn clear_faults(&self) {
        self.world().faults.clear();
    }

    /// Every call made, as `op name` lines.
    pub fn calls(&self) -> Vec<String> {
        self.world().calls.clone()
    }

    /// Every container as `(name, id, running)`, by name.
    pub fn containers(&self) -> Vec<(String, String, bool)> {
        let mut all: Vec<_> = self
            .world()
            .containers
            .iter()
            .map(|c| (c.name.clone(), c.id.clone(), c.running))
            .collect();
        all.sort();
        all
    }

    pub fn id_of(&self, name: &str) -> Option<String> {
        let w = self.world();
        w.find(name).map(|i| w.containers[i].id.clone())
    }

    /// Runs, and, when it joins another container's namespace, that container runs in the
    /// very namespace it joined (a stopped or restarted owner leaves it without a network).
    pub fn serving(&self, name: &str) -> bool {
        let w = self.world();
        let Some(c) = w.find(name).map(|i| &w.containers[i]) else {
            return false;
        };
        if !c.running {
            return false;
        }
        match &c.joins {
            None => true,
            Some(owner) => w
                .find(owner)
                .map(|i| &w.containers[i])
                .is_some_and(|o| o.running && o.netns == c.netns),
        }
    }

    fn record(&self, call: String) {
        self.world().calls.push(call);
    }

    /// A tar of `files` (path in the archive, content).
    fn tar(files: &[(String, &[u8])]) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        for (path, content) in files {
            let mut header = tar::Header::new_gnu();
            header.set_size(content.len() as u64);
            header.set_mode(0o644);
            header.set_entry_type(tar::EntryType::Regular);
            builder.append_data(&mut header, path, *content).expect("tar in memory");
        }
        builder.into_inner().expect("tar in memory")
    }

    fn image_files(&self, image: &str) -> Result<BTreeMap<String, Vec<u8>>, EngineError> {
        self.world()
            .images
            .get(image)
            .map(|i| i.files.clone())
            .ok_or_else(|| EngineError::NoSuchImage { image: image.into() })
    }
}

/// A PE header for `machine` (0xAA64 arm64, 0x8664 x86_64): what the bootloader checks read.
pub fn pe(machine: u16) -> Vec<u8> {
    let mut b = vec![0; 512];
    b[0..2].copy_from_slice(b"MZ");
    b[0x3c..0x40].copy_from_slice(&0x80u32.to_le_bytes());
    b[0x80..0x84].copy_from_slice(b"PE\0\0");
    b[0x84..0x86].copy_from_slice(&machine.to_le_bytes());
    b
}

impl ContainerEngine for FakeEngine {
    fn host(&self) -> &str {
        "fake://engine"
    }
    fn api_version(&self) -> String {
        "1.41".into()
    }
    fn is_local(&self) -> bool {
        false
    }
    fn with_temporary_labels(&self, _labels: BTreeMap<String, String>) -> Self {
        self.clone()
    }

    async fn arch(&self) -> Result<&'static str, EngineError> {
        Ok("amd64")
    }

    async fn image(&self, reference: &str) -> Result<Option<ImageInfo>, EngineError> {
        Ok(self.world().images.get(reference).map(|i| ImageInfo {
            id: i.id.clone(),
            repo_digests: vec![],
            created: None,
            architecture: Some("amd64".into()),
        }))
    }

    async fn pull(&self, reference: &str, on_event: &mut dyn FnMut(PullEvent)) -> Result<(), EngineError> {
        self.record(format!("pull {reference}"));
        let found = {
            let mut w = self.world();
            if let Some(e) = w.fault(Op::Pull, reference) {
                return Err(e);
            }
            w.registry.get(reference).cloned()
        };
        let Some(image) = found else {
            return Err(EngineError::Pull {
                image: reference.into(),
                detail: "manifest unknown".into(),
            });
        };
        // Let the other pulls run between the events, as a real pull does.
        let turns = self.world().slow.get(reference).copied().unwrap_or(1);
        for _ in 0..turns {
            tokio::task::yield_now().await;
        }
        on_event(PullEvent {
            layer: Some("abc".into()),
            status: "Pull complete".into(),
            current: None,
            total: None,
        });
        self.world().images.insert(reference.into(), image);
        self.record(format!("pulled {reference}"));
        Ok(())
    }

    async fn container(&self, name: &str) -> Result<Option<ContainerInfo>, EngineError> {
        let w = self.world();
        Ok(w.find(name).map(|i| w.info(&w.containers[i])))
    }

    async fn network(&self, name: &str) -> Result<Option<NetworkInfo>, EngineError> {
        Ok(Some(NetworkInfo {
            name: name.into(),
            driver: "bridge".into(),
            parent: None,
        }))
    }

    async fn list_labelled(&self, label: &str) -> Result<Vec<ContainerInfo>, EngineError> {
        let (key, value) = match label.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (label, None),
        };
        let w = self.world();
        Ok(w.containers
            .iter()
            .filter(|c| {
                c.spec
                    .labels
                    .get(key)
                    .is_some_and(|v| value.is_none_or(|want| v == want))
            })
            .map(|c| w.info(c))
            .collect())
    }

    async fn create(&self, spec: &ContainerSpec) -> Result<String, EngineError> {
        self.record(format!("create {}", spec.name));
        let mut w = self.world();
        if let Some(e) = w.fault(Op::Create, &spec.name) {
            return Err(e);
        }
        if w.find(&spec.name).is_some() {
            return Err(EngineError::Conflict {
                name: spec.name.clone(),
                detail: "name in use".into(),
            });
        }
        let image_id = match w.images.get(&spec.image) {
            Some(i) => i.id.clone(),
            None => {
                return Err(EngineError::NoSuchImage {
                    image: spec.image.clone(),
                })
            }
        };
        let joins = match &spec.network {
            NetworkMode::Container(other) => match w.find(other) {
                Some(i) => Some(w.containers[i].id.clone()),
                None => {
                    return Err(EngineError::Api {
                        action: format!("creating container {}", spec.name),
                        detail: format!("No such container: {other}"),
                    })
                }
            },
            _ => None,
        };
        let id = format!("id{:04}", w.tick());
        w.containers.push(Container {
            id: id.clone(),
            name: spec.name.clone(),
            created_as: spec.name.clone(),
            spec: spec.clone(),
            image_id,
            running: false,
            status: "created".into(),
            exit_code: None,
            started_at: None,
            logs: String::new(),
            joins,
            netns: None,
            unhealthy: false,
        });
        Ok(id)
    }

    async fn start(&self, name: &str) -> Result<(), EngineError> {
        self.record(format!("start {name}"));
        let mut w = self.world();
        if let Some(e) = w.fault(Op::Start, name) {
            return Err(e);
        }
        let i = w
            .find(name)
            .ok_or_else(|| EngineError::NoSuchContainer { name: name.into() })?;
        if w.containers[i].running {
            return Ok(());
        }
        let netns = match w.containers[i].joins.clone() {
            Some(owner) => match w.find(&owner).map(|o| &w.containers[o]) {
                None => {
                    return Err(EngineError::Api {
                        action: format!("starting container {name}"),
                        detail: format!("joining network namespace of container: No such container: {owner}"),
                    })
                }
                Some(o) if !o.running => {
                    return Err(EngineError::Api {
                        action: format!("starting container {name}"),
                        detail: format!("cannot join network of a non running container: {owner}"),
                    })
                }
                Some(o) => o.netns,
            },
            None => Some(w.tick()),
        };
        let unhealthy = w.fault(Op::Health, name).is_some();
        let crash = w.fault(Op::Crash, name).is_some();
        let at = w.tick();
        let c = &mut w.containers[i];
        c.netns = netns;
        c.started_at = Some(format!("t{at}"));
        c.unhealthy = unhealthy;
        c.exit_code = None;
        let role = c.spec.labels.get(LABEL_ROLE).cloned().unwrap_or_default();
        if crash {
            c.running = false;
            c.status = "exited".into();
            c.exit_code = Some(1);
            c.logs.push_str("fatal: injected crash\n");
            return Ok(());
        }
        c.running = true;
        c.status = "running".into();
        if !unhealthy {
            c.logs.push_str(match role.as_str() {
                "matchbox" => "Starting matchbox HTTP server on 0.0.0.0:8080\n",
                _ => "dnsmasq: started, version 2.90 cachesize 150\n",
            });
        }
        Ok(())
    }

    async fn stop(&self, name: &str, _timeout: Duration) -> Result<(), EngineError> {
        self.record(format!("stop {name}"));
        let mut w = self.world();
        if let Some(e) = w.fault(Op::Stop, name) {
            return Err(e);
        }
        let i = w
            .find(name)
            .ok_or_else(|| EngineError::NoSuchContainer { name: name.into() })?;
        let c = &mut w.containers[i];
        if c.running {
            c.running = false;
            c.status = "exited".into();
            c.exit_code = Some(0);
            c.netns = None;
        }
        Ok(())
    }

    async fn remove(&self, name: &str, _force: bool) -> Result<(), EngineError> {
        self.record(format!("remove {name}"));
        let mut w = self.world();
        if let Some(e) = w.fault(Op::Remove, name) {
            return Err(e);
        }
        if let Some(i) = w.find(name) {
            w.containers.remove(i);
        }
        Ok(())
    }

    async fn rename(&self, name: &str, new_name: &str) -> Result<(), EngineError> {
        self.record(format!("rename {name} {new_name}"));
        let mut w = self.world();
        if let Some(e) = w.fault(Op::Rename, name) {
            return Err(e);
        }
        let i = w
            .find(name)
            .ok_or_else(|| EngineError::NoSuchContainer { name: name.into() })?;
        if w.find(new_name).is_some() {
            return Err(EngineError::Conflict {
                name: new_name.into(),
                detail: "name in use".into(),
            });
        }
        w.containers[i].name = new_name.into();
        Ok(())
    }

    async fn logs(&self, name: &str, _tail: Option<usize>) -> Result<String, EngineError> {
        let w = self.world();
        let i = w
            .find(name)
            .ok_or_else(|| EngineError::NoSuchContainer { name: name.into() })?;
        Ok(w.containers[i].logs.clone())
    }

    async fn run_once(&self, image: &str, args: &[&str], _timeout: Duration) -> Result<(i64, String), EngineError> {
        self.record(format!("run {image} {}", args.join(" ")));
        self.image_files(image)?;
        Ok((0, "v0.11.0\n".into()))
    }

    async fn export_dir(
        &self,
        image: &str,
        candidate_paths: &[&str],
        dest_staging: &Path,
        limits: &Limits,
    ) -> Result<ExtractReport, EngineError> {
        let files = self.image_files(image)?;
        // The engine's fallback, over this image's files: a path exists when files lie under it.
        let found = first_present(candidate_paths, |path| {
            let dir = path.trim_end_matches('/');
            let prefix = archive_prefix(path);
            let under: Vec<(String, &[u8])> = files
                .iter()
                .filter_map(|(p, b)| {
                    p.strip_prefix(&format!("{dir}/"))
                        .map(|rest| (format!("{prefix}/{rest}"), b.as_slice()))
                })
                .collect();
            std::future::ready(if under.is_empty() {
                Ok(None)
            } else {
                extract(Cursor::new(Self::tar(&under)), dest_staging, &prefix, limits)
                    .map(Some)
                    .map_err(|source| EngineError::Extract {
                        image: image.into(),
                        path: path.into(),
                        source,
                    })
            })
        })
        .now_or_never()
        .expect("the fake's lookups answer at once")?;
        match found {
            Some((path, mut report)) => {
                report.source_path = Some(path.to_string());
                Ok(report)
            }
            None => Err(EngineError::NoCandidatePath {
                image: image.into(),
                tried: candidate_paths.iter().map(|p| (*p).to_string()).collect(),
            }),
        }
    }

    async fn export_files(
        &self,
        image: &str,
        sets: &[FileSet],
        dest_staging: &Path,
        limits: &Limits,
    ) -> Result<ExportedFiles, EngineError> {
        let files = self.image_files(image)?;
        // The engine's choice of set, over this image's files.
        let chosen = first_complete_set(sets, |_, path| {
            std::future::ready(Ok::<_, EngineError>(files.get(path)))
        })
        .now_or_never()
        .expect("the fake's lookups answer at once")?;
        let Some(chosen) = chosen else {
            return Err(EngineError::NoCandidatePath {
                image: image.into(),
                tried: sets.iter().map(FileSet::describe).collect(),
            });
        };
        let paths: Vec<String> = chosen.files.iter().map(|(p, _)| (*p).to_owned()).collect();
        let entries: Vec<(String, &[u8])> = chosen
            .files
            .iter()
            .map(|(p, bytes)| (p.rsplit('/').next().unwrap_or_default().to_string(), bytes.as_slice()))
            .collect();
        let mut report = extract(Cursor::new(Self::tar(&entries)), dest_staging, "", limits).map_err(|source| {
            EngineError::Extract {
                image: image.into(),
                path: paths.join(", "),
                source,
            }
        })?;
        report.source_path = sets[chosen.set].required.first().cloned();
        Ok(ExportedFiles {
            set: chosen.set,
            paths,
            report,
        })
    }
}
