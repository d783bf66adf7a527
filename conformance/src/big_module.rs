//! A generated WASI p1 module of any size, for the precompile cache's tests and benchmark: `functions`
//! functions of `i32` arithmetic (about 350 bytes of code each, so 15 000 make about 5 MB), all called in
//! turn through a table by `_start`, which prints `big module ok` when the result is the one computed here
//! and exits 1 after `big module wrong` otherwise. Running it to "ok" shows the compiled code is right.

use anyhow::{Context, Result};

/// Arithmetic steps per function: each is `i32.const; i32.add; i32.const; i32.mul; i32.const; i32.xor`.
const STEPS: usize = 24;

/// The line a correct run prints.
pub const OK_LINE: &str = "big module ok";

/// The module's binary.
pub fn generate(functions: usize) -> Result<Vec<u8>> {
    wat::parse_str(text(functions)).context("assemble the generated module")
}

/// The constants of step `s` of function `f`: deterministic, varied, odd multipliers.
fn constants(f: usize, s: usize) -> (i32, i32, i32) {
    let seed = (f as u64)
        .wrapping_mul(0x9e37_79b9_7f4a_7c15)
        .wrapping_add((s as u64).wrapping_mul(0xbf58_476d_1ce4_e5b9));
    let mix = seed ^ (seed >> 29);
    (
        (mix & 0xffff_ffff) as u32 as i32,
        ((mix >> 16) as u32 | 1) as i32,
        (mix >> 32) as u32 as i32,
    )
}

/// What `_start` computes: every function applied in turn to the accumulator, starting from 1.
fn expected(functions: usize) -> i32 {
    (0..functions).fold(1i32, |acc, f| {
        (0..STEPS).fold(acc, |x, s| {
            let (add, mul, xor) = constants(f, s);
            x.wrapping_add(add).wrapping_mul(mul) ^ xor
        })
    })
}

fn text(functions: usize) -> String {
    let mut wat = String::with_capacity(functions * 700 + 2048);
    wat.push_str(
        r#"(module
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $proc_exit (param i32)))
  (type $step (func (param i32) (result i32)))
  (memory (export "memory") 1)
"#,
    );
    wat.push_str(&format!(
        "  (data (i32.const 64) \"{OK_LINE}\\n\")\n  (data (i32.const 128) \"big module wrong\\n\")\n"
    ));
    wat.push_str(&format!(
        "  (table {functions} funcref)\n  (elem (i32.const 0)"
    ));
    for f in 0..functions {
        wat.push_str(&format!(" $f{f}"));
    }
    wat.push_str(")\n");
    for f in 0..functions {
        wat.push_str(&format!("  (func $f{f} (type $step) local.get 0"));
        for s in 0..STEPS {
            let (add, mul, xor) = constants(f, s);
            wat.push_str(&format!(
                " i32.const {add} i32.add i32.const {mul} i32.mul i32.const {xor} i32.xor"
            ));
        }
        wat.push_str(")\n");
    }
    let ok_len = OK_LINE.len() + 1;
    wat.push_str(&format!(
        r#"  (func (export "_start") (local $i i32) (local $acc i32)
    i32.const 1
    local.set $acc
    (block $done
      (loop $next
        local.get $i
        i32.const {functions}
        i32.ge_u
        br_if $done
        local.get $acc
        local.get $i
        call_indirect (type $step)
        local.set $acc
        local.get $i
        i32.const 1
        i32.add
        local.set $i
        br $next))
    local.get $acc
    i32.const {expected}
    i32.eq
    (if
      (then
        (i32.store (i32.const 0) (i32.const 64))
        (i32.store (i32.const 4) (i32.const {ok_len}))
        (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8))))
      (else
        (i32.store (i32.const 0) (i32.const 128))
        (i32.store (i32.const 4) (i32.const 17))
        (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))
        (call $proc_exit (i32.const 1)))))
)
"#,
        expected = expected(functions),
    ));
    wat
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn is_a_module_of_the_size_asked_for() {
        let small = generate(10).unwrap();
        let big = generate(1000).unwrap();
        assert!(crate::fixtures::is_module(&big));
        let per_function = (big.len() - small.len()) / 990;
        assert!(
            (250..600).contains(&per_function),
            "{per_function} bytes per function"
        );
    }
}
