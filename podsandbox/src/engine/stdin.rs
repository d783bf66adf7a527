//! [`GuestStdin`]: a guest's standard input fed by the host (an exec's stdin, sent over the pod protocol).

use std::sync::Arc;

use tokio::io::AsyncRead;
use wasmtime_wasi::cli::{AsyncStdinStream, IsTerminal, StdinStream};
use wasmtime_wasi::p2::InputStream;

/// Standard input read from an async reader. Clones share the reader, so every guest handle on stdin makes
/// progress through the same bytes (what WASI requires of stdin).
#[derive(Clone)]
pub struct GuestStdin {
    stream: Arc<AsyncStdinStream>,
    terminal: bool,
}

impl GuestStdin {
    /// Stdin reading `reader` until it reports end-of-file; `terminal` is what the guest is told `isatty` is.
    pub fn new(reader: impl AsyncRead + Send + Sync + 'static, terminal: bool) -> GuestStdin {
        GuestStdin {
            stream: Arc::new(AsyncStdinStream::new(reader)),
            terminal,
        }
    }
}

impl std::fmt::Debug for GuestStdin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GuestStdin")
            .field("terminal", &self.terminal)
            .finish_non_exhaustive()
    }
}

impl IsTerminal for GuestStdin {
    fn is_terminal(&self) -> bool {
        self.terminal
    }
}

impl StdinStream for GuestStdin {
    fn async_stream(&self) -> Box<dyn AsyncRead + Send + Sync> {
        self.stream.async_stream()
    }

    fn p2_stream(&self) -> Box<dyn InputStream> {
        self.stream.p2_stream()
    }
}
