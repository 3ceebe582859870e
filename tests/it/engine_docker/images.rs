//! Images: inspect and pull.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn image_inspect_finds_loaded_images_only() {
    with_fixture("image", |fx| async move {
        let tag = fx.image("inspect", &installer_only_image()).await;
        let info = fx.engine.image(&tag).await.unwrap().expect("loaded image");
        assert!(info.id.starts_with("sha256:"), "{info:?}");
        assert_eq!(info.architecture.as_deref(), Some(fx.arch));
        assert!(info.created.is_some());
        assert_eq!(fx.engine.image(&format!("{tag}-missing")).await.unwrap(), None);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pull_errors_name_the_image() {
    with_fixture("pull-error", |fx| async move {
        let reference = "127.0.0.1:1/cozyboot/none:v1";
        let err = fx.engine.pull(reference, &mut |_| {}).await.unwrap_err();
        assert!(matches!(err, EngineError::Pull { .. }), "{err}");
        assert!(err.to_string().contains(reference), "{err}");

        let err = fx.engine.pull("not a reference", &mut |_| {}).await.unwrap_err();
        assert!(matches!(err, EngineError::InvalidReference { .. }), "{err}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pull_fetches_exactly_one_tag_from_a_registry_with_a_port() {
    with_fixture("pull", |fx| async move {
        let registry = registry::Registry::start(fx.arch, &["v1", "v2"]).await;
        let reference = format!("127.0.0.1:{}/cozyboot/pulltest:v1", registry.port);
        fx.images.lock().unwrap().push(reference.clone());
        let mut events: Vec<PullEvent> = Vec::new();
        fx.engine.pull(&reference, &mut |e| events.push(e)).await.expect("pull");

        assert!(
            events.iter().any(PullEvent::layer_done),
            "no finished layer in {events:?}"
        );
        let info = fx.engine.image(&reference).await.unwrap().expect("pulled");
        let digest = format!(
            "127.0.0.1:{}/cozyboot/pulltest@{}",
            registry.port, registry.manifest_digest
        );
        assert!(
            info.repo_digests.contains(&digest),
            "{:?} lacks {digest}",
            info.repo_digests
        );

        let requests = registry.requests();
        assert!(requests.iter().any(|r| r.ends_with("/manifests/v1")), "{requests:?}");
        assert!(
            !requests
                .iter()
                .any(|r| r.contains("/manifests/v2") || r.contains("/tags/list")),
            "{requests:?}"
        );
        let other_tag = format!("127.0.0.1:{}/cozyboot/pulltest:v2", registry.port);
        assert_eq!(
            fx.engine.image(&other_tag).await.unwrap(),
            None,
            "pulled more than the one tag"
        );

        let missing = format!("127.0.0.1:{}/cozyboot/pulltest:v9", registry.port);
        let err = fx.engine.pull(&missing, &mut |_| {}).await.unwrap_err();
        assert!(
            matches!(err, EngineError::Pull { .. }) && err.to_string().contains(&missing),
            "{err}"
        );
    })
    .await;
}
