//! What goes on the error stream at the end of an exec or attach session, per protocol version.
//!
//! v4 and later carry a JSON `metav1.Status`, so the exit code reaches the client: client-go turns
//! reason `NonZeroExitCode` with an `ExitCode` cause into `exec.CodeExitError` (crictl exits with that code).
//! Earlier versions carry plain text and only on failure.

use serde_json::json;

/// How a session ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Success,
    /// The command exited with this non-zero code.
    ExitCode(i32),
    /// The runtime could not run or attach; the message names why.
    Failed(String),
}

/// The bytes to write on the error stream, or `None` when this version writes nothing.
pub fn encode(outcome: &Outcome, json_status: bool) -> Option<Vec<u8>> {
    if json_status {
        return Some(status_json(outcome).to_string().into_bytes());
    }
    match outcome {
        Outcome::Success => None,
        Outcome::ExitCode(_) | Outcome::Failed(_) => Some(message(outcome).into_bytes()),
    }
}

fn message(outcome: &Outcome) -> String {
    match outcome {
        Outcome::Success => String::new(),
        Outcome::ExitCode(code) => {
            format!("command terminated with non-zero exit code: exit status {code}")
        }
        Outcome::Failed(why) => format!("Internal error occurred: {why}"),
    }
}

/// client-go parses the exit code as an 8-bit unsigned number; a code outside 1..=255 (a Wasm guest can
/// exit with any i32) is reported as 255 rather than as a protocol error.
fn wire_exit_code(code: i32) -> u8 {
    u8::try_from(code).ok().filter(|c| *c != 0).unwrap_or(255)
}

/// `metav1.Status` as `encoding/json` renders it (`StatusCause.Type` is serialised as "reason").
fn status_json(outcome: &Outcome) -> serde_json::Value {
    match outcome {
        Outcome::Success => json!({"metadata": {}, "status": "Success"}),
        Outcome::ExitCode(code) => json!({
            "metadata": {},
            "status": "Failure",
            "message": message(outcome),
            "reason": "NonZeroExitCode",
            "details": {"causes": [{"reason": "ExitCode", "message": wire_exit_code(*code).to_string()}]},
        }),
        Outcome::Failed(why) => json!({
            "metadata": {},
            "status": "Failure",
            "message": message(outcome),
            "reason": "InternalError",
            "details": {"causes": [{"message": why}]},
            "code": 500,
        }),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn parse(b: Option<Vec<u8>>) -> serde_json::Value {
        serde_json::from_slice(&b.unwrap()).unwrap()
    }

    #[test]
    fn v4_success() {
        let v = parse(encode(&Outcome::Success, true));
        assert_eq!(v, json!({"metadata": {}, "status": "Success"}));
    }

    #[test]
    fn v4_exit_code_as_client_go_reads_it() {
        let v = parse(encode(&Outcome::ExitCode(3), true));
        assert_eq!(v["status"], "Failure");
        assert_eq!(v["reason"], "NonZeroExitCode");
        assert_eq!(v["details"]["causes"][0]["reason"], "ExitCode");
        assert_eq!(v["details"]["causes"][0]["message"], "3");
        let v = parse(encode(&Outcome::ExitCode(-1), true));
        assert_eq!(v["details"]["causes"][0]["message"], "255");
        let v = parse(encode(&Outcome::ExitCode(256), true));
        assert_eq!(v["details"]["causes"][0]["message"], "255");
    }

    #[test]
    fn v4_internal_error() {
        let v = parse(encode(&Outcome::Failed("no such container".into()), true));
        assert_eq!(v["reason"], "InternalError");
        assert_eq!(v["code"], 500);
        assert!(v["message"].as_str().unwrap().contains("no such container"));
    }

    #[test]
    fn before_v4_text_and_only_on_failure() {
        assert_eq!(encode(&Outcome::Success, false), None);
        let t = String::from_utf8(encode(&Outcome::ExitCode(2), false).unwrap()).unwrap();
        assert!(t.contains("exit status 2"), "{t}");
    }
}
