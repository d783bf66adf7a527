//! The config file's `[registries."<host>"]` tables: mirrors, plain HTTP and credentials per
//! registry, checked and turned into the image store's [`RegistryHost`] settings at start-up, so a
//! typo fails the daemon's start instead of a pull hours later.
//!
//! ```toml
//! [registries."registry.k8s.io"]
//! mirrors = ["http://127.0.0.1:5000", "https://mirror.example.com/prefix"]
//! fallback_to_origin = true
//! insecure = false
//! username = "u"            # or auth = "base64(user:pass)", or registry_token = "..."
//! password = "p"
//! ```

use std::collections::BTreeMap;

use imageservice::{Endpoint, ImageRef, RegistryAuth, RegistryHost};
use serde::Deserialize;

/// One `[registries."<host>"]` table as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RegistryFile {
    mirrors: Option<Vec<String>>,
    fallback_to_origin: Option<bool>,
    insecure: Option<bool>,
    username: Option<String>,
    password: Option<String>,
    auth: Option<String>,
    registry_token: Option<String>,
}

/// A `[registries."<host>"]` table that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum RegistryConfigError {
    #[error(
        "[registries.{host:?}]: the key must be a registry host[:port] as written in image references"
    )]
    Host {
        host: String,
        #[source]
        source: Box<imageservice::ImageError>,
    },
    #[error("[registries.{host:?}]: bad mirror")]
    Mirror {
        host: String,
        #[source]
        source: Box<imageservice::ImageError>,
    },
    #[error("[registries.{host:?}]: bad `auth`")]
    Auth {
        host: String,
        #[source]
        source: Box<imageservice::ImageError>,
    },
    #[error("[registries.{host:?}]: {reason}")]
    Invalid { host: String, reason: &'static str },
}

/// Checks every table and converts it.
pub(super) fn registry_hosts(
    tables: BTreeMap<String, RegistryFile>,
) -> Result<BTreeMap<String, RegistryHost>, RegistryConfigError> {
    tables
        .into_iter()
        .map(|(host, table)| {
            let settings = registry_host(&host, table)?;
            Ok((host, settings))
        })
        .collect()
}

fn registry_host(host: &str, table: RegistryFile) -> Result<RegistryHost, RegistryConfigError> {
    let invalid = |reason| RegistryConfigError::Invalid {
        host: host.to_owned(),
        reason,
    };
    // A reference on this registry must parse and name it (Docker Hub's aliases all become
    // docker.io, which the store accepts for them).
    let probe =
        ImageRef::parse(&format!("{host}/probe")).map_err(|source| RegistryConfigError::Host {
            host: host.to_owned(),
            source: Box::new(source),
        })?;
    if host.contains('/') || (probe.registry() != host && probe.registry() != "docker.io") {
        return Err(invalid(
            "the key must be a registry host[:port], without scheme or path",
        ));
    }
    let mirrors = table
        .mirrors
        .unwrap_or_default()
        .iter()
        .map(|m| Endpoint::parse(m))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| RegistryConfigError::Mirror {
            host: host.to_owned(),
            source: Box::new(source),
        })?;
    let fallback_to_origin = table.fallback_to_origin.unwrap_or(true);
    if mirrors.is_empty() && !fallback_to_origin {
        return Err(invalid(
            "fallback_to_origin = false needs at least one mirror, or nothing could be pulled",
        ));
    }
    let auth = match (
        table.username,
        table.password,
        table.auth,
        table.registry_token,
    ) {
        (None, None, None, None) => None,
        (Some(username), password, None, None) => {
            Some(RegistryAuth::basic(username, password.unwrap_or_default()))
        }
        (None, Some(_), None, None) => return Err(invalid("`password` needs a `username`")),
        (None, None, Some(auth), None) => Some(RegistryAuth::from_base64(&auth).map_err(
            |source| RegistryConfigError::Auth {
                host: host.to_owned(),
                source: Box::new(source),
            },
        )?),
        (None, None, None, Some(token)) => Some(RegistryAuth::Bearer { token }),
        _ => {
            return Err(invalid(
                "give one kind of credentials: username/password, auth or registry_token",
            ));
        }
    };
    Ok(RegistryHost {
        mirrors,
        fallback_to_origin,
        insecure: table.insecure.unwrap_or(false),
        auth,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<BTreeMap<String, RegistryHost>, RegistryConfigError> {
        #[derive(Deserialize)]
        struct File {
            registries: BTreeMap<String, RegistryFile>,
        }
        let file: File = toml::from_str(text).unwrap();
        registry_hosts(file.registries)
    }

    #[test]
    fn every_key() {
        let hosts = parse(
            r#"
            [registries."registry.k8s.io"]
            mirrors = ["http://127.0.0.1:5000", "https://mirror.example.com/prefix"]
            fallback_to_origin = false
            insecure = true
            username = "u"
            password = "p"

            [registries."127.0.0.1:5000"]
            auth = "dXNlcjpwYXNz"

            [registries."docker.io"]
            registry_token = "tok"
            "#,
        )
        .unwrap();
        let k8s = &hosts["registry.k8s.io"];
        assert_eq!(
            k8s.mirrors
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>(),
            ["http://127.0.0.1:5000", "https://mirror.example.com/prefix"]
        );
        assert!(!k8s.fallback_to_origin && k8s.insecure);
        assert_eq!(k8s.auth, Some(RegistryAuth::basic("u", "p")));
        assert_eq!(
            hosts["127.0.0.1:5000"].auth,
            Some(RegistryAuth::basic("user", "pass"))
        );
        assert!(hosts["127.0.0.1:5000"].fallback_to_origin);
        assert_eq!(
            hosts["docker.io"].auth,
            Some(RegistryAuth::Bearer {
                token: "tok".into()
            })
        );
    }

    #[test]
    fn the_example_in_deploy_config_is_valid() {
        let deploy = include_str!("../../../deploy/config.toml");
        let start = deploy.find("# [registries.\"registry.k8s.io\"]").unwrap();
        let example: String = deploy[start..]
            .lines()
            .map(|l| l.strip_prefix("# ").unwrap_or(l))
            .collect::<Vec<_>>()
            .join("\n");
        let hosts = parse(&example).unwrap();
        assert_eq!(hosts["registry.k8s.io"].mirrors.len(), 2);
        assert_eq!(
            hosts["registry.k8s.io"].auth,
            Some(RegistryAuth::basic("u", "p"))
        );
    }

    #[test]
    fn mistakes_are_named() {
        for (text, wanted) in [
            (
                "[registries.\"r.io\"]\nmirrors = [\"127.0.0.1:5000\"]",
                "bad mirror",
            ),
            (
                "[registries.\"r.io\"]\nusername = \"u\"\nauth = \"dTpw\"",
                "one kind of credentials",
            ),
            ("[registries.\"r.io\"]\nauth = \"!!\"", "bad `auth`"),
            (
                "[registries.\"r.io\"]\nfallback_to_origin = false",
                "needs at least one mirror",
            ),
            ("[registries.\"https://r.io\"]\n", "registry host"),
            ("[registries.\"r.io/path\"]\n", "registry host"),
        ] {
            let err = parse(text).unwrap_err();
            assert!(err.to_string().contains(wanted), "{text}: {err}");
        }
    }
}
