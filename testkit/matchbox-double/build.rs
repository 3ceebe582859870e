//! Generates the gRPC server (and, for the double's tests, a client) from proto/, which holds
//! matchbox v0.11.0's .proto files trimmed to the calls the double serves.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = [
        "proto/matchbox/rpc/rpcpb/rpc.proto",
        "proto/matchbox/server/serverpb/messages.proto",
        "proto/matchbox/storage/storagepb/storage.proto",
    ];
    let descriptors = protox::compile(files, ["proto"])?;
    tonic_prost_build::configure()
        .build_transport(false)
        .compile_fds(descriptors)?;
    println!("cargo:rerun-if-changed=proto");
    Ok(())
}
