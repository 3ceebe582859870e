//! The `-rpc-address` listener: matchbox's gRPC API (matchbox v0.11.0, matchbox/rpc/grpc.go)
//! over mutual TLS, on a thread of its own so the blocking HTTP server is untouched.
//!
//! rustls accepts each connection (with the rules of `crate::tls::rpc_config`) and only then
//! hands it to tonic's HTTP/2 server, as grpc-go's `credentials.NewTLS` does: a client without
//! a certificate from the CA never reaches a service.

mod api;
pub mod pb;

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;
use tokio_stream::wrappers::ReceiverStream;

use crate::log;
use api::Api;
use pb::rpcpb::{groups_server::GroupsServer, profiles_server::ProfilesServer, select_server::SelectServer};

/// grpc-go's default `ConnectionTimeout` for a connection's TLS handshake (grpc v1.62.1,
/// server.go), which also bounds what a client that never finishes one can hold.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(120);

type Accepted = Result<TlsStream<TcpStream>, std::io::Error>;

/// Serves the API until the process exits (matchbox runs it beside the HTTP server).
pub fn serve(listener: TcpListener, tls: Arc<rustls::ServerConfig>, data_path: PathBuf) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| log::fatal(&format!("failed to start the gRPC server: {e}")));
    runtime.block_on(async move {
        let listener = listener
            .set_nonblocking(true)
            .and_then(|()| tokio::net::TcpListener::from_std(listener))
            .unwrap_or_else(|e| log::fatal(&format!("failed to start the gRPC server: {e}")));
        let (accepted, incoming) = mpsc::channel::<Accepted>(16);
        tokio::spawn(accept(listener, TlsAcceptor::from(tls), accepted));
        let api = Arc::new(Api::new(data_path));
        let served = tonic::transport::Server::builder()
            .add_service(GroupsServer::from_arc(api.clone()))
            .add_service(ProfilesServer::from_arc(api.clone()))
            .add_service(SelectServer::from_arc(api))
            .serve_with_incoming(ReceiverStream::new(incoming))
            .await;
        if let Err(e) = served {
            log::fatal(&format!("gRPC server stopped: {e}"));
        }
    });
}

/// Accepts TCP connections and completes each TLS handshake in a task of its own, so one
/// slow or hostile client delays no other.
async fn accept(listener: tokio::net::TcpListener, acceptor: TlsAcceptor, accepted: mpsc::Sender<Accepted>) {
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                // e.g. out of file descriptors: wait instead of spinning, as net/http does
                log::warn(&format!("grpc: Server.Serve accept error: {e}"));
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let (acceptor, accepted) = (acceptor.clone(), accepted.clone());
        tokio::spawn(async move {
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(tls)) => {
                    let _ = accepted.send(Ok(tls)).await;
                }
                Ok(Err(e)) => handshake_failed(peer, &e.to_string()),
                Err(_) => handshake_failed(peer, "timed out"),
            }
        });
    }
}

/// grpc-go reports a refused client with this line (at a level matchbox does not show); the
/// double prints it so that a test's failure says why the server refused.
fn handshake_failed(peer: SocketAddr, why: &str) {
    log::warn(&format!(
        "grpc: Server.Serve failed to complete security handshake from {:?}: {why}",
        peer.to_string()
    ));
}
