//! Connecting: an unreachable engine is named, the API version is negotiated.

use super::*;

#[tokio::test]
async fn unreachable_socket_names_the_path_and_what_to_check() {
    let err = Engine::connect_to(Some("unix:///nonexistent.sock")).await.unwrap_err();
    assert!(matches!(err, EngineError::Unreachable { .. }), "{err}");
    let text = err.to_string();
    for needle in ["/nonexistent.sock", "daemon is running", "DOCKER_HOST"] {
        assert!(text.contains(needle), "missing {needle:?} in: {text}");
    }
}

#[tokio::test]
async fn refused_tcp_host_is_unreachable() {
    let err = Engine::connect_to(Some("tcp://127.0.0.1:1")).await.unwrap_err();
    match &err {
        EngineError::Unreachable { host, .. } => assert_eq!(host, "tcp://127.0.0.1:1"),
        other => panic!("expected Unreachable, got {other}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_negotiates_the_api_version_and_reads_the_arch() {
    with_fixture("connect", |fx| async move {
        let version = fx.engine.api_version();
        let (major, minor) = version.split_once('.').expect("x.y");
        assert_eq!(major, "1");
        assert!(minor.parse::<u32>().unwrap() >= 41, "negotiated {version}");
        let server = fx.docker.version().await.unwrap().api_version.unwrap();
        assert!(
            version == server || server.split('.').nth(1).unwrap().parse::<u32>().unwrap() > minor.parse().unwrap(),
            "client {version} must not be newer than the server's {server}"
        );
        assert!(["amd64", "arm64"].contains(&fx.arch));
        assert_eq!(fx.engine.host(), format!("unix://{}", fx.socket.display()));
    })
    .await;
}
