//! Identifiers: 64 hex characters like containerd's, random.

/// A fresh 256-bit id as lowercase hex.
pub fn new_id() -> String {
    let mut bytes = [0u8; 32];
    // getrandom only fails if the kernel has no entropy source at all; a time-and-pid fallback keeps ids unique
    // on such a system, which is all they need to be.
    if getrandom::fill(&mut bytes).is_err() {
        let seed = format!(
            "{}-{}",
            std::process::id(),
            chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0)
        );
        for (i, b) in seed.bytes().enumerate() {
            bytes[i % 32] ^= b;
        }
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn ids_are_64_hex_and_distinct() {
        let a = super::new_id();
        let b = super::new_id();
        assert_eq!(a.len(), 64);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }
}
