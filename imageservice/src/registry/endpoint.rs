//! [`Endpoint`]: one place a reference can be pulled from, the origin registry or a mirror.
//!
//! A mirror is written `http://` or `https://` + `host[:port]` + an optional path prefix. The
//! prefix is a repository prefix on the mirror, as in CRI-O's `registries.conf` and Harbor proxy
//! projects: `https://mirror.example.com/hub` serves `docker.io/library/busybox` as
//! `https://mirror.example.com/v2/hub/library/busybox/...`. (containerd's `hosts.toml` instead
//! puts the path before `/v2`; registries such as `docker-registry` only serve `/v2` at the root,
//! so a repository prefix is what works with them.)

use std::fmt;

use crate::error::ImageError;

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Endpoint {
    plain_http: bool,
    host: String,
    /// Repository prefix on this endpoint, without leading or trailing `/`; empty for none.
    prefix: String,
}

impl Endpoint {
    /// Parses a mirror URL (`http://127.0.0.1:5000`, `https://mirror.example.com/prefix`).
    pub fn parse(url: &str) -> Result<Endpoint, ImageError> {
        let invalid = |reason: &'static str| ImageError::InvalidEndpoint {
            endpoint: url.to_owned(),
            reason,
        };
        let (plain_http, rest) = if let Some(rest) = url.strip_prefix("http://") {
            (true, rest)
        } else if let Some(rest) = url.strip_prefix("https://") {
            (false, rest)
        } else {
            return Err(invalid("must start with http:// or https://"));
        };
        let rest = rest.trim_end_matches('/');
        let (host, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if host.is_empty() {
            return Err(invalid("names no host"));
        }
        // Credentials go in the config's own keys, queries and fragments have no meaning here.
        if !host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']'))
        {
            return Err(invalid(
                "host may only hold letters, digits, `.`, `-`, a `:port` or an [IPv6] address",
            ));
        }
        let component_ok = |c: &str| {
            !c.is_empty()
                && c != "."
                && c != ".."
                && c.bytes().all(|b| {
                    b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-')
                })
        };
        if !prefix.is_empty() && !prefix.split('/').all(component_ok) {
            return Err(invalid(
                "path prefix must be lowercase repository components separated by `/`",
            ));
        }
        Ok(Endpoint {
            plain_http,
            host: host.to_owned(),
            prefix: prefix.to_owned(),
        })
    }

    /// The registry a reference names, reached directly.
    pub fn origin(host: &str, plain_http: bool) -> Endpoint {
        Endpoint {
            plain_http,
            host: host.to_owned(),
            prefix: String::new(),
        }
    }

    /// `host[:port]` contacted.
    pub fn host(&self) -> &str {
        &self.host
    }

    pub fn plain_http(&self) -> bool {
        self.plain_http
    }

    /// The repository path on this endpoint for `repository` of the requested reference.
    pub fn repository(&self, repository: &str) -> String {
        if self.prefix.is_empty() {
            repository.to_owned()
        } else {
            format!("{}/{repository}", self.prefix)
        }
    }

    /// Whether pulling `registry`'s content from here goes through a mirror (another host, or a
    /// prefix) rather than to the registry itself.
    pub fn is_mirror_of(&self, registry: &str) -> bool {
        self.host != registry || !self.prefix.is_empty()
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.plain_http { "http" } else { "https" };
        write!(f, "{scheme}://{}", self.host)?;
        if !self.prefix.is_empty() {
            write!(f, "/{}", self.prefix)?;
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn parses_scheme_host_port_and_prefix() {
        let e = Endpoint::parse("http://127.0.0.1:5000").unwrap();
        assert!(e.plain_http());
        assert_eq!(e.host(), "127.0.0.1:5000");
        assert_eq!(e.repository("wasm/hello"), "wasm/hello");
        assert_eq!(e.to_string(), "http://127.0.0.1:5000");

        let e = Endpoint::parse("https://mirror.example.com/hub/cache/").unwrap();
        assert!(!e.plain_http());
        assert_eq!(e.host(), "mirror.example.com");
        assert_eq!(e.repository("library/busybox"), "hub/cache/library/busybox");
        assert_eq!(e.to_string(), "https://mirror.example.com/hub/cache");
        assert!(e.is_mirror_of("docker.io"));
        assert!(Endpoint::parse("https://[::1]:5000").is_ok());
    }

    #[test]
    fn refuses_what_is_not_an_endpoint() {
        for bad in [
            "127.0.0.1:5000",
            "ftp://host",
            "https://",
            "https:///prefix",
            "https://user:pw@host",
            "https://host?x=1",
            "https://host/Upper",
            "https://host/a//b",
            "https://host/../x",
        ] {
            assert!(
                matches!(
                    Endpoint::parse(bad),
                    Err(ImageError::InvalidEndpoint { .. })
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn origin_is_not_a_mirror_of_itself() {
        let origin = Endpoint::origin("registry.k8s.io", false);
        assert!(!origin.is_mirror_of("registry.k8s.io"));
        assert_eq!(origin.to_string(), "https://registry.k8s.io");
    }
}
