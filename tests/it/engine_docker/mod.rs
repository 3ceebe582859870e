//! `engine` against the real Docker Engine (its socket: `DOCKER_HOST`, else /var/run/docker.sock).
//!
//! Test images are built here (docker-save archives loaded through the image import API, or
//! served by a tiny in-process registry), so no network and no registry are needed. Every
//! object a test creates carries `io.cozyboot.test=1` plus a per-test run label, and is
//! removed at the end of the test, also when it fails. Containers never get a real network:
//! they use `none`, an `--internal` network created here, or another container's netns.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::net::Ipv4Addr;
use std::os::unix::fs::PermissionsExt;
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bollard::models::{ContainerCreateBody, Ipam, IpamConfig, NetworkCreateRequest};
use bollard::query_parameters::{
    ContainerArchiveInfoOptionsBuilder, CreateContainerOptionsBuilder, DownloadFromContainerOptionsBuilder,
    ImportImageOptionsBuilder, InspectContainerOptions, ListContainersOptionsBuilder, RemoveContainerOptionsBuilder,
    RemoveImageOptionsBuilder,
};
use bollard::Docker;
use cozyboot::engine::{
    Bind, ContainerSpec, Engine, EngineError, ExtractError, FileSet, Limits, NetworkMode, PullEvent, Rule,
    TEMPORARY_LABEL,
};
use futures_util::{FutureExt, StreamExt};
use sha2::{Digest, Sha256};
use tar::{EntryType, Header};

use crate::support;

/// Which refusal an error must carry.
type RuleCheck = fn(&Rule) -> bool;

const TEST_LABEL: &str = "io.cozyboot.test";
const RUN_LABEL: &str = "io.cozyboot.test-run";
const ASSET_DIR: &str = "/assets/talos/arm64";
const INSTALLER_DIR: &str = "/usr/install/arm64";

mod build;
mod connecting;
mod containers;
mod export_dir;
mod fixture;
mod images;
mod registry;

use build::*;
use fixture::*;
