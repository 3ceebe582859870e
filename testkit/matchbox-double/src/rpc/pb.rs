//! The messages and services generated from proto/ (see build.rs), one module per proto
//! package so that their cross-references (`super::storagepb::Group`) resolve.

#![allow(clippy::all)]

pub mod storagepb {
    tonic::include_proto!("storagepb");
}
pub mod serverpb {
    tonic::include_proto!("serverpb");
}
pub mod rpcpb {
    tonic::include_proto!("rpcpb");
}
