//! The fixtures are what they claim: core modules for p1, a component for p2, the right exports.

use conformance::fixtures::{self, FIXTURES, fixture_path, fixtures_dir};

#[test]
fn every_fixture_is_built() {
    let dir = fixtures_dir().unwrap();
    for f in FIXTURES {
        let bytes = std::fs::read(fixture_path(dir, f.name)).unwrap();
        if f.component {
            assert!(
                fixtures::is_component(&bytes),
                "{} should be a component",
                f.name
            );
        } else {
            assert!(
                fixtures::is_module(&bytes),
                "{} should be a core module",
                f.name
            );
        }
    }
}

/// Core modules export `_start` and `memory` and import only from wasi_snapshot_preview1.
#[test]
fn modules_are_wasi_p1_commands() {
    let dir = fixtures_dir().unwrap();
    for f in FIXTURES.iter().filter(|f| !f.component) {
        let bytes = std::fs::read(fixture_path(dir, f.name)).unwrap();
        let mut exports = Vec::new();
        for payload in wasmparser::Parser::new(0).parse_all(&bytes) {
            match payload.unwrap() {
                wasmparser::Payload::ImportSection(imports) => {
                    for import in imports.into_imports() {
                        let import = import.unwrap();
                        assert_eq!(
                            import.module, "wasi_snapshot_preview1",
                            "{}: import {}",
                            f.name, import.name
                        );
                    }
                }
                wasmparser::Payload::ExportSection(section) => {
                    for export in section {
                        exports.push(export.unwrap().name.to_string());
                    }
                }
                _ => {}
            }
        }
        assert!(
            exports.iter().any(|e| e == "_start"),
            "{}: exports {exports:?}",
            f.name
        );
        assert!(
            exports.iter().any(|e| e == "memory"),
            "{}: exports {exports:?}",
            f.name
        );
    }
}

/// `loop` must not call the host (only an epoch interrupt can stop it); `trap` must reach `unreachable`.
#[test]
fn loop_has_no_imports_and_trap_is_unreachable() {
    let dir = fixtures_dir().unwrap();
    let looping = std::fs::read(fixture_path(dir, "loop")).unwrap();
    for payload in wasmparser::Parser::new(0).parse_all(&looping) {
        assert!(
            !matches!(payload.unwrap(), wasmparser::Payload::ImportSection(_)),
            "loop imports something"
        );
    }
    let trap = std::fs::read(fixture_path(dir, "trap")).unwrap();
    let mut unreachable = false;
    for payload in wasmparser::Parser::new(0).parse_all(&trap) {
        if let wasmparser::Payload::CodeSectionEntry(body) = payload.unwrap() {
            let mut ops = body.get_operators_reader().unwrap();
            while !ops.eof() {
                unreachable |= matches!(ops.read().unwrap(), wasmparser::Operator::Unreachable);
            }
        }
    }
    assert!(unreachable, "trap has no unreachable");
}

/// The component exports the wasi:cli run interface (it is a command).
#[test]
fn component_is_a_wasi_command() {
    let dir = fixtures_dir().unwrap();
    let bytes = std::fs::read(fixture_path(dir, "hello-component")).unwrap();
    let mut exports = Vec::new();
    for payload in wasmparser::Parser::new(0).parse_all(&bytes) {
        if let wasmparser::Payload::ComponentExportSection(section) = payload.unwrap() {
            for export in section {
                exports.push(export.unwrap().name.name.to_string());
            }
        }
    }
    assert!(
        exports.iter().any(|e| e.starts_with("wasi:cli/run@0.2")),
        "exports {exports:?}"
    );
}

/// Top-level `(imports, exports)` names of a component fixture.
fn component_interfaces(name: &str) -> (Vec<String>, Vec<String>) {
    let bytes = std::fs::read(fixture_path(fixtures_dir().unwrap(), name)).unwrap();
    let (mut imports, mut exports) = (Vec::new(), Vec::new());
    // wit-component's output has no nested components, so these are the outer component's sections.
    for payload in wasmparser::Parser::new(0).parse_all(&bytes) {
        match payload.unwrap() {
            wasmparser::Payload::ComponentImportSection(section) => {
                for import in section {
                    imports.push(import.unwrap().name.name.to_string());
                }
            }
            wasmparser::Payload::ComponentExportSection(section) => {
                for export in section {
                    exports.push(export.unwrap().name.name.to_string());
                }
            }
            _ => {}
        }
    }
    (imports, exports)
}

/// The wasi:http fixture is a handler of the proxy world: it exports the incoming handler and no `run`, and
/// imports nothing outside that world (no filesystem: the proxy adapter).
#[test]
fn http_fixture_is_a_wasi_http_handler() {
    let (imports, exports) = component_interfaces("hello-http");
    assert!(
        exports
            .iter()
            .any(|e| e.starts_with("wasi:http/incoming-handler@0.2")),
        "exports {exports:?}"
    );
    assert!(!exports.iter().any(|e| e.starts_with("wasi:cli/run")));
    assert!(
        !imports.iter().any(|i| i.starts_with("wasi:filesystem")),
        "imports {imports:?}"
    );
}

/// The sockets fixture is a WASI 0.2 command that imports wasi:sockets itself.
#[test]
fn sockets_fixture_imports_wasi_sockets() {
    let (imports, exports) = component_interfaces("tcp-hello");
    assert!(
        exports.iter().any(|e| e.starts_with("wasi:cli/run@0.2")),
        "exports {exports:?}"
    );
    for wanted in ["wasi:sockets/tcp@0.2", "wasi:sockets/ip-name-lookup@0.2"] {
        assert!(
            imports.iter().any(|i| i.starts_with(wanted)),
            "imports {imports:?}"
        );
    }
}
