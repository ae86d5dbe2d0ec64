//! Generates the gRPC server (Diff) and clients (Content, Leases) from the vendored containerd
//! `.proto` files with `protoc` (Debian's `protobuf-compiler`, or `$PROTOC`).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let api = "proto/github.com/containerd/containerd/api";
    let protos = [
        format!("{api}/services/diff/v1/diff.proto"),
        format!("{api}/services/content/v1/content.proto"),
        format!("{api}/services/leases/v1/leases.proto"),
    ];
    for p in &protos {
        println!("cargo:rerun-if-changed={p}");
    }
    println!("cargo:rerun-if-changed=proto");
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .compile_protos(&protos, &["proto".to_string()])?;
    Ok(())
}
