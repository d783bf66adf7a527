//! Bootstrap framing (one length-delimited protobuf message each way over stdin/stdout) and namespace entry.

use std::io::{Read, Write};
use std::os::fd::AsFd;

use nix::sched::CloneFlags;

/// Reads one length-delimited message: the writer closes the pipe after it, so read to EOF.
pub fn read_message<M: prost::Message + Default>(mut r: impl Read) -> std::io::Result<M> {
    let mut buf = Vec::new();
    r.read_to_end(&mut buf)?;
    M::decode_length_delimited(buf.as_slice())
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
}

/// Writes one length-delimited message and flushes.
pub fn write_message<M: prost::Message>(mut w: impl Write, msg: &M) -> std::io::Result<()> {
    w.write_all(&msg.encode_length_delimited_to_vec())?;
    w.flush()
}

/// Moves the calling thread (the only thread at this point) into the network namespace pinned at `path`.
pub fn join_netns(path: &str) -> std::io::Result<()> {
    let file = std::fs::File::open(path)?;
    nix::sched::setns(file.as_fd(), CloneFlags::CLONE_NEWNET).map_err(std::io::Error::from)
}

/// Points stdout at /dev/null once the bootstrap reply is written, so the daemon's read of the pipe ends and a
/// daemon that went away cannot make later writes fail.
pub fn detach_stdout() -> std::io::Result<()> {
    let devnull = std::fs::OpenOptions::new().write(true).open("/dev/null")?;
    let mut stdout = std::io::stdout().lock();
    nix::unistd::dup2_stdout(devnull.as_fd()).map_err(std::io::Error::from)?;
    stdout.flush()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use proto::pod::Bootstrap;

    #[test]
    fn bootstrap_round_trips() {
        let msg = Bootstrap {
            protocol_version: 1,
            pod_id: "abc".into(),
            netns_path: "/run/x".into(),
            socket_path: "/run/y".into(),
            state_dir: "/run/z".into(),
            ..Default::default()
        };
        let mut buf = Vec::new();
        write_message(&mut buf, &msg).unwrap();
        let back: Bootstrap = read_message(buf.as_slice()).unwrap();
        assert_eq!(back, msg);
    }

    #[test]
    fn garbage_is_invalid_data() {
        let err = read_message::<Bootstrap>(&b"\xff\xff\xff"[..]).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidData);
    }
}
