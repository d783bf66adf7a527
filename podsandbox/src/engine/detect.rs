//! Telling a core module from a component, and naming what a non-Wasm file is, from its first bytes.
//!
//! The kind comes from the Wasm preamble, never from a file name or an image annotation: `\0asm` followed by
//! version `01 00 00 00` is a core module, and by version/layer `0d 00 01 00` a component. Anything else gets a
//! description meant for a person reading `kubectl describe` ("an ELF executable ...").
//!
//! A compiled component is a `wasi:http` handler when its type exports `wasi:http/incoming-handler`
//! ([`exports_http_handler`]).

use wasmtime::component::Component;
use wasmtime::component::types::ComponentItem;

/// The Wasm magic number.
const WASM_MAGIC: &[u8; 4] = b"\0asm";
/// Version 1, layer 0: a core module.
const MODULE_VERSION: [u8; 4] = [0x01, 0x00, 0x00, 0x00];
/// Version 0x0d (the component-model binary draft), layer 1: a component.
const COMPONENT_VERSION: [u8; 4] = [0x0d, 0x00, 0x01, 0x00];
/// How many leading bytes an "unknown bytes" description shows.
const SHOWN_BYTES: usize = 8;
/// How much of a `#!` line a description shows.
const SHOWN_SHEBANG: usize = 64;

/// What a file's leading bytes say it is.
#[derive(Debug, PartialEq, Eq)]
pub enum Detected {
    Module,
    Component,
    /// Starts with the Wasm magic but has another version/layer; holds the four bytes in hex.
    UnsupportedWasm(String),
    /// Not WebAssembly; holds a description of what it is.
    NotWasm(String),
}

/// Classifies `bytes` (the whole file or at least its first few hundred bytes).
pub fn detect(bytes: &[u8]) -> Detected {
    if let Some(rest) = bytes.strip_prefix(WASM_MAGIC) {
        return match rest.get(..4) {
            Some(v) if v == MODULE_VERSION => Detected::Module,
            Some(v) if v == COMPONENT_VERSION => Detected::Component,
            Some(v) => Detected::UnsupportedWasm(hex(v)),
            None => Detected::NotWasm("a truncated WebAssembly header".to_string()),
        };
    }
    Detected::NotWasm(describe(bytes))
}

/// The export a wasi:http handler component serves requests through, up to its version.
const HTTP_HANDLER_EXPORT: &str = "wasi:http/incoming-handler@0.2.";

/// Whether `component` exports `wasi:http/incoming-handler` of WASI 0.2 (any patch version: wasmtime-wasi-http
/// serves them all), i.e. is a handler the pod serves over HTTP rather than a command it runs. Read from the
/// component's own type, whatever the image or file is called.
pub fn exports_http_handler(engine: &wasmtime::Engine, component: &Component) -> bool {
    component
        .component_type()
        .exports(engine)
        .any(|(name, item)| {
            name.starts_with(HTTP_HANDLER_EXPORT)
                && matches!(item.ty, ComponentItem::ComponentInstance(_))
        })
}

fn describe(bytes: &[u8]) -> String {
    if bytes.is_empty() {
        return "empty file".to_string();
    }
    if bytes.starts_with(b"\x7fELF") {
        return "an ELF executable (a Linux binary, not WebAssembly)".to_string();
    }
    if let Some(rest) = bytes.strip_prefix(b"#!") {
        let line = rest.split(|&b| b == b'\n').next().unwrap_or_default();
        let shown = &line[..line.len().min(SHOWN_SHEBANG)];
        return format!(
            "a shell script (#!{})",
            String::from_utf8_lossy(shown).trim()
        );
    }
    if bytes.starts_with(b"MZ") {
        return "a Windows executable (PE), not WebAssembly".to_string();
    }
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(256)]);
    let trimmed = text.trim_start();
    if trimmed.starts_with("(module") || trimmed.starts_with("(component") {
        return "WebAssembly text (.wat), which must be compiled to the binary format first"
            .to_string();
    }
    format!(
        "unknown bytes {}",
        hex(&bytes[..bytes.len().min(SHOWN_BYTES)])
    )
}

fn hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn core_module() {
        assert_eq!(
            detect(&wat::parse_str("(module)").unwrap()),
            Detected::Module
        );
    }

    #[test]
    fn component() {
        assert_eq!(
            detect(&wat::parse_str("(component)").unwrap()),
            Detected::Component
        );
    }

    #[test]
    fn http_handler_by_its_exports() {
        let engine = wasmtime::Engine::default();
        let handler = wat::parse_str(
            r#"(component
                 (instance $h)
                 (export "wasi:http/incoming-handler@0.2.6" (instance $h)))"#,
        )
        .unwrap();
        let handler = Component::from_binary(&engine, &handler).unwrap();
        assert!(exports_http_handler(&engine, &handler));
        let command = wat::parse_str(
            r#"(component
                 (instance $r)
                 (export "wasi:cli/run@0.2.6" (instance $r)))"#,
        )
        .unwrap();
        let command = Component::from_binary(&engine, &command).unwrap();
        assert!(!exports_http_handler(&engine, &command));
    }

    #[test]
    fn elf() {
        assert_eq!(
            detect(b"\x7fELF\x02\x01\x01\0\0\0"),
            Detected::NotWasm("an ELF executable (a Linux binary, not WebAssembly)".into())
        );
    }

    #[test]
    fn script() {
        assert_eq!(
            detect(b"#!/bin/sh\necho hi\n"),
            Detected::NotWasm("a shell script (#!/bin/sh)".into())
        );
    }

    #[test]
    fn empty() {
        assert_eq!(detect(b""), Detected::NotWasm("empty file".into()));
    }

    #[test]
    fn unknown_and_odd_wasm() {
        assert_eq!(
            detect(&[0xca, 0xfe, 0xba, 0xbe, 0, 0, 0, 0x34, 0x99]),
            Detected::NotWasm("unknown bytes ca fe ba be 00 00 00 34".into())
        );
        assert_eq!(
            detect(b"\0asm\x02\0\0\0"),
            Detected::UnsupportedWasm("02 00 00 00".into())
        );
        assert!(matches!(detect(b"\0asm\x01"), Detected::NotWasm(_)));
        assert!(matches!(detect(b"  (module)"), Detected::NotWasm(s) if s.contains(".wat")));
    }
}
