//! `up --rpc`'s certificates proven with a gRPC client that is not ours (Google's grpcio, see
//! support/grpc.rs) against the matchbox that `up` started, which serves matchbox v0.11.0's
//! API with its TLS rules (client certificate required and verified against the CA). A TLS
//! handshake alone proves little: under TLS 1.3 a client finishes its side before the server
//! has judged the client certificate, so only a call that comes back shows it was accepted.
//! Traffic stays on the test's `--internal` Docker network.

use crate::support;

use serde_json::{json, Value};
use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};
use support::grpc::{Client, Credentials, Reply};
use support::site::{Site, TAG};

/// The JSON files `up` wrote under `dir`, in file-name order (matchbox's list order).
fn written(dir: &Path) -> Vec<Value> {
    let mut paths: Vec<_> = fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
    paths.sort();
    paths
        .iter()
        .map(|p| serde_json::from_slice(&fs::read(p).unwrap()).unwrap())
        .collect()
}

fn ids(items: &[Value]) -> Vec<String> {
    items.iter().map(|i| i["id"].as_str().unwrap().to_string()).collect()
}

#[test]
fn up_rpc_certificates_let_a_grpc_client_in_and_keep_others_out() {
    let Some(site) = Site::new() else { return };
    let Some(client) = Client::new() else { return };
    site.up_ok(TAG, &["--rpc"]);
    let tls = site.data().join("tls");
    let (ca, cert, key) = (tls.join("ca.crt"), tls.join("client.crt"), tls.join("client.key"));
    // dialled by address: the server certificate must cover the server IP
    let target = format!("{}:8081", site.server_ip());
    let ours = Credentials {
        ca: &ca,
        client: Some((&cert, &key)),
    };
    let call = |creds: &Credentials, service: &str, method: &str, request: Value| {
        client.call(&target, creds, service, method, request)
    };

    let groups = written(&site.data().join("groups"));
    let profiles = written(&site.data().join("profiles"));
    assert!(
        !groups.is_empty() && !profiles.is_empty(),
        "up wrote groups and profiles"
    );

    let listed = call(&ours, "Groups", "GroupList", json!({})).ok();
    let listed = listed["groups"].as_array().unwrap();
    assert_eq!(ids(listed), ids(&groups), "GroupList: {listed:#?}");
    for group in &groups {
        let got = call(&ours, "Groups", "GroupGet", json!({"id": group["id"]})).ok();
        let got = &got["group"];
        assert_eq!(
            (&got["name"], &got["profile"], &got["selector"]),
            (&group["name"], &group["profile"], &group["selector"]),
            "GroupGet {}",
            group["id"]
        );
    }

    let listed = call(&ours, "Profiles", "ProfileList", json!({})).ok();
    assert_eq!(ids(listed["profiles"].as_array().unwrap()), ids(&profiles));
    for profile in &profiles {
        let got = call(&ours, "Profiles", "ProfileGet", json!({"id": profile["id"]})).ok();
        assert_eq!(got["profile"]["boot"], profile["boot"], "ProfileGet {}", profile["id"]);
        assert_eq!(got["profile"]["name"], profile["name"]);
    }

    // what a machine whose iPXE reports an arch gets: the group's profile
    for group in &groups {
        let labels = &group["selector"];
        let got = call(&ours, "Select", "SelectProfile", json!({"labels": labels})).ok();
        assert_eq!(got["profile"]["id"], group["profile"], "SelectProfile {labels}");
    }
    match call(
        &ours,
        "Select",
        "SelectGroup",
        json!({"labels": {"arch": "no-such-arch"}}),
    ) {
        Reply::Failed(code, details) => {
            assert_eq!(
                (code.as_str(), details.as_str()),
                ("NOT_FOUND", "matchbox: No matching Group")
            )
        }
        Reply::Ok(v) => panic!("a group for an arch nobody boots: {v}"),
    }

    // Refused: no client certificate, and a client certificate from another CA (a second set
    // made the way `up` makes one). The server is still trusted by `up`'s CA in both, so the
    // refusal is the server's, over the client certificate.
    let other = tempfile::tempdir().unwrap();
    let names = cozyboot::artifacts::tls::ServerNames::for_server(site.server_ip().parse().unwrap());
    cozyboot::artifacts::tls::generate(other.path(), &names).unwrap();
    let (other_cert, other_key) = (other.path().join("client.crt"), other.path().join("client.key"));
    for (what, creds) in [
        ("no client certificate", Credentials { ca: &ca, client: None }),
        (
            "a client certificate from another CA",
            Credentials {
                ca: &ca,
                client: Some((&other_cert, &other_key)),
            },
        ),
    ] {
        let before = refusals(&site.matchbox);
        match call(&creds, "Groups", "GroupList", json!({})) {
            Reply::Failed(code, details) => assert_eq!(code, "UNAVAILABLE", "{what}: {details}"),
            Reply::Ok(v) => panic!("{what}: the call was answered: {v}"),
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        // the engine copies the container's stderr to its log a moment later
        while refusals(&site.matchbox) == before && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
        assert!(
            refusals(&site.matchbox) > before,
            "{what}: the server refused the handshake"
        );
    }
}

/// How many TLS handshakes the matchbox container has refused so far (the double logs each).
fn refusals(container: &str) -> usize {
    let logs = Command::new("docker").args(["logs", container]).output().unwrap();
    String::from_utf8_lossy(&logs.stderr)
        .matches("failed to complete security handshake")
        .count()
}
