//! Compiles wasm-cri's own daemon↔pod-process protocol. CRI v1 itself comes from the `k8s-cri` crate.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=pod/v1/pod.proto");
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        // Exec output and stdin are relayed chunk by chunk: `Bytes` moves them without copying.
        .bytes(".wasmcri.pod.v1.ExecInput")
        .bytes(".wasmcri.pod.v1.ExecOutput")
        .compile_protos(&["pod/v1/pod.proto"], &["pod"])?;
    Ok(())
}
