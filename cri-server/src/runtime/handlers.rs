//! The runtime handler names wasm-cri answers to: the CRI `runtime_handler` of RunPodSandbox, which the
//! kubelet takes from the pod's RuntimeClass `handler`. Every pod runs the same way whatever the name; the
//! list exists so that Status can advertise each name's features (the kubelet looks its handler up there)
//! and so that a RuntimeClass meant for another runtime (`runc`, `kata`, ...) fails at RunPodSandbox with a
//! message that says so, as containerd and CRI-O refuse handlers they have no runtime for.

use crate::error::ServerError;

/// The default handler (pods without a RuntimeClass) and `wasm` (the RuntimeClass in `deploy/`).
pub const HANDLERS: [&str; 2] = ["", "wasm"];

/// Refuses a handler name that is not in [`HANDLERS`].
pub fn check(handler: &str) -> Result<(), ServerError> {
    if HANDLERS.contains(&handler) {
        return Ok(());
    }
    Err(ServerError::InvalidArgument(format!(
        "runtime handler {handler:?} is not served by wasm-cri (it serves \"\", the default, and \"wasm\"); \
         check the handler of the pod's RuntimeClass"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_and_wasm_are_accepted_others_refused() {
        assert!(check("").is_ok());
        assert!(check("wasm").is_ok());
        let err = check("runc")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            err.contains("\"runc\"") && err.contains("RuntimeClass"),
            "{err}"
        );
    }
}
