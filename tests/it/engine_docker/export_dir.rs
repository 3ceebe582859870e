//! Asset extraction: `export_dir` and `export_files` against real images.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_dir_streams_the_first_existing_path_and_removes_its_container() {
    with_fixture("export", |fx| async move {
        let image = fx.image("assets", &talos_assets_image()).await;
        let staging = tempfile::tempdir().unwrap();
        let dest = staging.path().join("stage");
        let report = fx
            .engine
            .export_dir(&image, &[ASSET_DIR, INSTALLER_DIR], &dest, &Limits::default())
            .await
            .expect("export");

        assert_eq!(report.source_path.as_deref(), Some(ASSET_DIR));
        let mut names: Vec<_> = report.files.iter().map(|f| f.path.display().to_string()).collect();
        names.sort();
        assert_eq!(names, ["initramfs.xz", "vmlinuz"]);
        let vmlinuz = report.file("vmlinuz").unwrap();
        assert_eq!(
            (vmlinuz.size, vmlinuz.sha256.as_str()),
            (kernel().len() as u64, sha256_hex(&kernel()).as_str())
        );
        let initrd = report.file("initramfs.xz").unwrap();
        assert_eq!(
            (initrd.size, initrd.sha256.as_str()),
            (initramfs().len() as u64, sha256_hex(&initramfs()).as_str())
        );
        assert_eq!(std::fs::read(dest.join("vmlinuz")).unwrap(), kernel());
        let mode = std::fs::metadata(dest.join("initramfs.xz"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o644, "TFTP needs world-readable files");

        assert_eq!(
            fx.leftover_containers().await,
            Vec::<String>::new(),
            "temporary container left behind"
        );
        let temporaries = fx.engine.list_labelled(TEMPORARY_LABEL).await.unwrap();
        assert!(
            temporaries.iter().all(|c| c.labels.get(RUN_LABEL) != Some(&fx.run)),
            "{temporaries:?}"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_dir_falls_back_to_the_installer_path() {
    with_fixture("fallback", |fx| async move {
        let image = fx.image("installer", &installer_only_image()).await;
        let staging = tempfile::tempdir().unwrap();
        let report = fx
            .engine
            .export_dir(&image, &[ASSET_DIR, INSTALLER_DIR], staging.path(), &Limits::default())
            .await
            .expect("export");
        assert_eq!(report.source_path.as_deref(), Some(INSTALLER_DIR));
        assert_eq!(report.file("vmlinuz").unwrap().sha256, sha256_hex(&kernel()));
        assert_eq!(report.files.len(), 2);

        let err = fx
            .engine
            .export_dir(
                &image,
                &["/nowhere/a", "/nowhere/b"],
                &staging.path().join("x"),
                &Limits::default(),
            )
            .await
            .unwrap_err();
        match &err {
            EngineError::NoCandidatePath { tried, .. } => assert_eq!(tried, &["/nowhere/a", "/nowhere/b"]),
            other => panic!("expected NoCandidatePath, got {other}"),
        }
        assert!(err.to_string().contains(&image), "{err}");
        assert_eq!(fx.leftover_containers().await, Vec::<String>::new());
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_files_picks_the_first_layout_the_image_has() {
    with_fixture("layouts", |fx| async move {
        let mut entries = installer_only_image();
        // Half of an earlier layout (no initramfs beside it) must not be chosen, and a big
        // file beside the chosen pair must not be read.
        entries.extend([
            Entry::Dir("assets/"),
            Entry::Dir("assets/talos/"),
            Entry::Dir("assets/talos/arm64/"),
            Entry::File("assets/talos/arm64/vmlinuz", b"half a layout".to_vec()),
            Entry::File("usr/install/arm64/metal.raw.xz", vec![7u8; 4 * 1024 * 1024]),
        ]);
        let image = fx.image("layouts", &entries).await;
        let set = |dir: &str, optional: &[&str]| FileSet {
            required: vec![format!("{dir}/vmlinuz"), format!("{dir}/initramfs.xz")],
            optional: optional.iter().map(|o| format!("{dir}/{o}")).collect(),
        };
        let sets = [set(ASSET_DIR, &[]), set(INSTALLER_DIR, &["checksums.sha256"])];
        let staging = tempfile::tempdir().unwrap();
        let got = fx
            .engine
            .export_files(&image, &sets, &staging.path().join("s"), &Limits::default())
            .await
            .expect("export");
        assert_eq!(got.set, 1);
        assert_eq!(got.report.source_path.as_deref(), Some("/usr/install/arm64/vmlinuz"));
        // Copied side by side from two containers, reported in the set's order.
        assert_eq!(
            got.paths,
            ["/usr/install/arm64/vmlinuz", "/usr/install/arm64/initramfs.xz"]
        );
        let order: Vec<String> = got.report.files.iter().map(|f| f.path.display().to_string()).collect();
        assert_eq!(order, ["vmlinuz", "initramfs.xz"]);
        assert_eq!(got.report.file("vmlinuz").unwrap().sha256, sha256_hex(&kernel()));
        assert_eq!(
            got.report.file("initramfs.xz").unwrap().sha256,
            sha256_hex(&initramfs())
        );
        let names: Vec<String> = std::fs::read_dir(staging.path().join("s"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names.len(), 2, "only the pair was written: {names:?}");
        let pair = (kernel().len() + initramfs().len()) as u64;
        assert!(
            got.report.archive_bytes < pair + 16 * 1024,
            "read {} bytes for a {pair}-byte pair",
            got.report.archive_bytes
        );

        let err = fx
            .engine
            .export_files(
                &image,
                &[set("/nowhere", &[])],
                &staging.path().join("x"),
                &Limits::default(),
            )
            .await
            .unwrap_err();
        match &err {
            EngineError::NoCandidatePath { tried, .. } => {
                assert_eq!(tried, &["/nowhere/vmlinuz + /nowhere/initramfs.xz"])
            }
            other => panic!("expected NoCandidatePath, got {other}"),
        }
        assert_eq!(fx.leftover_containers().await, Vec::<String>::new());
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_files_stops_the_other_copy_when_one_fails_and_removes_both_containers() {
    with_fixture("sidebyside", |fx| async move {
        // The kernel and a fifo where the initramfs should be: the two are copied side by
        // side from two containers, and the fifo's copy is refused.
        let image = fx
            .image(
                "fifo-pair",
                &[
                    Entry::Dir("assets/"),
                    Entry::Dir("assets/talos/"),
                    Entry::Dir("assets/talos/arm64/"),
                    Entry::File("assets/talos/arm64/vmlinuz", vec![3u8; 8 * 1024 * 1024]),
                    Entry::Fifo("assets/talos/arm64/initramfs.xz"),
                ],
            )
            .await;
        let set = FileSet {
            required: vec![format!("{ASSET_DIR}/vmlinuz"), format!("{ASSET_DIR}/initramfs.xz")],
            optional: vec![],
        };
        let staging = tempfile::tempdir().unwrap();
        let err = fx
            .engine
            .export_files(&image, &[set], &staging.path().join("s"), &Limits::default())
            .await
            .unwrap_err();
        match &err {
            EngineError::Extract {
                source: ExtractError::Refused { rule, .. },
                path,
                ..
            } => {
                assert_eq!(*rule, Rule::Fifo, "{err}");
                assert_eq!(path, &format!("{ASSET_DIR}/initramfs.xz"));
            }
            other => panic!("expected the fifo refused, got {other}"),
        }
        assert_eq!(
            fx.leftover_containers().await,
            Vec::<String>::new(),
            "a temporary container was left after the failed copy"
        );

        // Both containers fail to be created: one error, nothing left.
        let absent = "cozyboot-test/absent:nope";
        let set = FileSet {
            required: vec![format!("{ASSET_DIR}/vmlinuz")],
            optional: vec![],
        };
        let err = fx
            .engine
            .export_files(absent, &[set], &staging.path().join("t"), &Limits::default())
            .await
            .unwrap_err();
        assert!(matches!(err, EngineError::NoSuchImage { .. }), "{err}");
        assert_eq!(fx.leftover_containers().await, Vec::<String>::new());
    })
    .await;
}

/// An upstream fact `export_files` is built on (docs/performance.md): dockerd answers one
/// archive request of a container at a time, holding the container's lock until the archive
/// has been read to its end, so copies side by side need a container each. Should an engine
/// stop doing so, this fails and the second container can go.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dockerd_answers_one_archive_request_of_a_container_at_a_time() {
    with_fixture("archivelock", |fx| async move {
        let path = format!("{ASSET_DIR}/initramfs.xz");
        // Larger than the socket's buffers, so that dockerd is still sending.
        let image = fx
            .image(
                "lock",
                &[
                    Entry::Dir("assets/"),
                    Entry::Dir("assets/talos/"),
                    Entry::Dir("assets/talos/arm64/"),
                    Entry::File("assets/talos/arm64/initramfs.xz", vec![5u8; 16 * 1024 * 1024]),
                ],
            )
            .await;
        let mut ids = Vec::new();
        for what in ["lock-a", "lock-b"] {
            let body = ContainerCreateBody {
                image: Some(image.clone()),
                cmd: Some(vec!["/never-started".to_owned()]),
                labels: Some(fx.labels().into_iter().collect()),
                ..Default::default()
            };
            let options = CreateContainerOptionsBuilder::new().name(&fx.name(what)).build();
            ids.push(
                fx.docker
                    .create_container(Some(options), body)
                    .await
                    .expect("create")
                    .id,
            );
        }
        let stat = |id: &str| {
            let options = ContainerArchiveInfoOptionsBuilder::new().path(&path).build();
            let (docker, id) = (fx.docker.clone(), id.to_owned());
            async move { docker.get_container_archive_info(&id, Some(options)).await }
        };
        let options = DownloadFromContainerOptionsBuilder::new().path(&path).build();
        let mut archive = fx.docker.download_from_container(&ids[0], Some(options));
        archive.next().await.expect("a first piece").expect("the archive");
        assert!(
            tokio::time::timeout(Duration::from_millis(1500), stat(&ids[0]))
                .await
                .is_err(),
            "dockerd answered about a container while its archive was still being read"
        );
        tokio::time::timeout(Duration::from_secs(10), stat(&ids[1]))
            .await
            .expect("the other container is answered at once")
            .expect("stat");
        drop(archive);
        tokio::time::timeout(Duration::from_secs(10), stat(&ids[0]))
            .await
            .expect("answered once the archive is closed")
            .expect("stat");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_dir_refuses_hostile_images_and_writes_nothing_outside_staging() {
    with_fixture("hostile", |fx| async move {
        let symlink = fx
            .image(
                "symlink",
                &[
                    Entry::Dir("assets/"),
                    Entry::Dir("assets/talos/"),
                    Entry::Dir("assets/talos/arm64/"),
                    Entry::File("assets/talos/arm64/initramfs.xz", initramfs()),
                    Entry::Symlink("assets/talos/arm64/vmlinuz", "/etc/passwd"),
                ],
            )
            .await;
        let fifo = fx
            .image(
                "fifo",
                &[
                    Entry::Dir("assets/"),
                    Entry::Dir("assets/talos/"),
                    Entry::Dir("assets/talos/arm64/"),
                    Entry::Fifo("assets/talos/arm64/initramfs.xz"),
                    Entry::File("assets/talos/arm64/vmlinuz", kernel()),
                ],
            )
            .await;
        let cases: [(&str, RuleCheck); 2] = [
            (
                &symlink,
                |r| matches!(r, Rule::Symlink { target } if target == "/etc/passwd"),
            ),
            (&fifo, |r| *r == Rule::Fifo),
        ];
        for (image, expected_rule) in cases {
            let root = tempfile::tempdir().unwrap();
            let staging = root.path().join("staging");
            let err = fx
                .engine
                .export_dir(image, &[ASSET_DIR], &staging, &Limits::default())
                .await
                .unwrap_err();
            match &err {
                EngineError::Extract {
                    source: ExtractError::Refused { entry, rule },
                    path,
                    ..
                } => {
                    assert!(expected_rule(rule), "{err}");
                    assert_eq!(path, ASSET_DIR);
                    assert!(entry.starts_with("arm64/"), "{err}");
                }
                other => panic!("expected a refused entry, got {other}"),
            }
            for path in every_path_under(root.path()) {
                assert!(path.starts_with(&staging), "wrote outside staging: {}", path.display());
                let kind = path.symlink_metadata().unwrap().file_type();
                assert!(
                    kind.is_file() || kind.is_dir(),
                    "materialised {kind:?} at {}",
                    path.display()
                );
            }
            assert_eq!(
                fx.leftover_containers().await,
                Vec::<String>::new(),
                "temporary container left after failure"
            );
        }

        let limits = Limits {
            max_file_bytes: 1000,
            ..Limits::default()
        };
        let image = fx.image("big", &installer_only_image()).await;
        let staging = tempfile::tempdir().unwrap();
        let err = fx
            .engine
            .export_dir(&image, &[INSTALLER_DIR], staging.path(), &limits)
            .await
            .unwrap_err();
        let rule = match &err {
            EngineError::Extract { source, .. } => source.rule(),
            _ => None,
        };
        assert!(matches!(rule, Some(Rule::FileTooLarge { .. })), "{err}");
        assert_eq!(fx.leftover_containers().await, Vec::<String>::new());

        let absent = "cozyboot-test/absent:nope";
        let err = fx
            .engine
            .export_dir(absent, &[ASSET_DIR], Path::new("/nonexistent"), &limits)
            .await
            .unwrap_err();
        assert!(matches!(err, EngineError::NoSuchImage { .. }), "{err}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_dir_cancelled_midway_leaves_no_container() {
    with_fixture("cancel", |fx| async move {
        let image = fx.image("assets", &talos_assets_image()).await;
        // Cancel at different points: during create, during the download, during removal.
        let limits = Limits::default();
        for delay_ms in [0, 1, 2, 5, 10, 20, 40, 80] {
            let staging = tempfile::tempdir().unwrap();
            let export = fx.engine.export_dir(&image, &[ASSET_DIR], staging.path(), &limits);
            let _ = tokio::time::timeout(Duration::from_millis(delay_ms), export).await;
        }
        let mut left = fx.leftover_containers().await;
        for _ in 0..50 {
            if left.is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
            left = fx.leftover_containers().await;
        }
        assert_eq!(
            left,
            Vec::<String>::new(),
            "cancelled extractions left containers behind"
        );
    })
    .await;
}
