//! Who a container runs as: the uid, primary gid and supplementary groups, resolved the way containerd and runc
//! resolve them from the CRI security context, the image's `User` and the container's own `/etc/passwd` and
//! `/etc/group`:
//! - user: `run_as_user`, else `run_as_username` (must exist in `/etc/passwd`), else the image's `User`
//!   (`uid`, `name`, `uid:gid`, `name:group`), else root;
//! - primary group: `run_as_group`, else the image's `User` group part, else the user's `/etc/passwd` entry,
//!   else 0;
//! - supplementary groups: the primary group, the groups of `/etc/group` that list the user's name
//!   (`SupplementalGroupsPolicy` Merge, the default; not with Strict) and `supplemental_groups`, in that
//!   order, without repeats.

use std::path::Path;

use proto::cri::LinuxContainerSecurityContext;
use proto::pod::RunAs;

use crate::error::ServerError;

struct PasswdEntry {
    name: String,
    uid: u32,
    gid: u32,
}

struct GroupEntry {
    name: String,
    gid: u32,
    members: Vec<String>,
}

/// Resolves the identity of a container whose root filesystem is at `root`.
pub fn resolve(
    security: Option<&LinuxContainerSecurityContext>,
    image_user: &str,
    root: &Path,
) -> Result<RunAs, ServerError> {
    // Resolved as the guest would (a symlinked /etc/passwd stays inside the container's root), never by the
    // host's rules, which would let an image point the daemon at a host file.
    let in_root = |guest: &str| podsandbox::guest_path::resolve_in_root(root, guest);
    let passwd = in_root("/etc/passwd")
        .map(|p| read_passwd(&p))
        .unwrap_or_default();
    let groups = in_root("/etc/group")
        .map(|p| read_groups(&p))
        .unwrap_or_default();
    let by_uid = |uid: u32| passwd.iter().find(|e| e.uid == uid);

    let (user_part, group_part) = match image_user.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (image_user, None),
    };
    let sc_user = security
        .and_then(|s| s.run_as_user.as_ref())
        .map(|v| v.value);
    let sc_name = security
        .map(|s| s.run_as_username.as_str())
        .filter(|n| !n.is_empty());

    let (uid, entry) = if let Some(uid) = sc_user {
        let uid = id_from_i64(uid, "run_as_user")?;
        (uid, by_uid(uid))
    } else if let Some(name) = sc_name {
        let entry = passwd.iter().find(|e| e.name == name).ok_or_else(|| {
            ServerError::InvalidArgument(format!(
                "run_as_username {name:?} is not in the image's /etc/passwd; use run_as_user with a numeric uid"
            ))
        })?;
        (entry.uid, Some(entry))
    } else if user_part.is_empty() {
        (0, by_uid(0))
    } else if let Ok(uid) = user_part.parse::<u32>() {
        (uid, by_uid(uid))
    } else {
        let entry = passwd.iter().find(|e| e.name == user_part).ok_or_else(|| {
            ServerError::FailedPrecondition(format!(
                "the image's User {image_user:?} names user {user_part:?}, which is not in the image's /etc/passwd"
            ))
        })?;
        (entry.uid, Some(entry))
    };

    let sc_group = security
        .and_then(|s| s.run_as_group.as_ref())
        .map(|v| v.value);
    // The image's group part only applies to the image's user, as in containerd.
    let image_group = if sc_user.is_none() && sc_name.is_none() {
        group_part.filter(|g| !g.is_empty())
    } else {
        None
    };
    let gid = if let Some(gid) = sc_group {
        id_from_i64(gid, "run_as_group")?
    } else if let Some(group) = image_group {
        match group.parse::<u32>() {
            Ok(gid) => gid,
            Err(_) => groups.iter().find(|g| g.name == group).map(|g| g.gid).ok_or_else(|| {
                ServerError::FailedPrecondition(format!(
                    "the image's User {image_user:?} names group {group:?}, which is not in the image's /etc/group"
                ))
            })?,
        }
    } else {
        entry.map_or(0, |e| e.gid)
    };

    let strict = security.is_some_and(|s| {
        s.supplemental_groups_policy == proto::cri::SupplementalGroupsPolicy::Strict as i32
    });
    let mut additional = vec![gid];
    // Strict: only the groups the pod asks for, none from the image's /etc/group.
    if let Some(e) = entry.filter(|_| !strict) {
        additional.extend(
            groups
                .iter()
                .filter(|g| g.members.contains(&e.name))
                .map(|g| g.gid),
        );
    }
    for g in security
        .map(|s| s.supplemental_groups.as_slice())
        .unwrap_or_default()
    {
        additional.push(id_from_i64(*g, "supplemental_groups")?);
    }
    let mut seen = std::collections::HashSet::new();
    additional.retain(|g| seen.insert(*g));
    Ok(RunAs {
        uid,
        gid,
        additional_gids: additional,
        // Set by `capabilities::resolve`: who a container is does not decide what it may do.
        capabilities: 0,
    })
}

fn id_from_i64(v: i64, field: &str) -> Result<u32, ServerError> {
    u32::try_from(v).map_err(|_| {
        ServerError::InvalidArgument(format!(
            "linux.security_context.{field} {v} is not a valid id (0 to 4294967295)"
        ))
    })
}

/// `/etc/passwd` entries; a missing or unreadable file has none (as in an image without one).
fn read_passwd(path: &Path) -> Vec<PasswdEntry> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split(':').collect();
            if f.len() < 4 || line.starts_with('#') {
                return None;
            }
            Some(PasswdEntry {
                name: f[0].to_string(),
                uid: f[2].parse().ok()?,
                gid: f[3].parse().ok()?,
            })
        })
        .collect()
}

fn read_groups(path: &Path) -> Vec<GroupEntry> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split(':').collect();
            if f.len() < 3 || line.starts_with('#') {
                return None;
            }
            Some(GroupEntry {
                name: f[0].to_string(),
                gid: f[2].parse().ok()?,
                members: f
                    .get(3)
                    .map(|m| {
                        m.split(',')
                            .filter(|s| !s.is_empty())
                            .map(str::to_string)
                            .collect()
                    })
                    .unwrap_or_default(),
            })
        })
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use proto::cri::Int64Value;

    fn root() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("etc")).unwrap();
        std::fs::write(
            dir.path().join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/home:/bin/false\ndefault-user:x:1000:1000::/home:/bin/sh\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("etc/group"),
            "root:x:0:\nwheel:x:10:root\nnogroup:x:65534:\ndefault-user:x:1000:\ngroup-defined-in-image:x:50000:default-user\n",
        )
        .unwrap();
        dir
    }

    fn sc(f: impl FnOnce(&mut LinuxContainerSecurityContext)) -> LinuxContainerSecurityContext {
        let mut s = LinuxContainerSecurityContext::default();
        f(&mut s);
        s
    }

    #[test]
    fn defaults_to_root_with_roots_groups() {
        let r = root();
        let id = resolve(None, "", r.path()).unwrap();
        assert_eq!((id.uid, id.gid, id.additional_gids), (0, 0, vec![0, 10]));
    }

    #[test]
    fn run_as_user_and_group_win_and_supplemental_groups_are_added() {
        let r = root();
        let s = sc(|s| {
            s.run_as_user = Some(Int64Value { value: 1001 });
            s.run_as_group = Some(Int64Value { value: 1002 });
            s.supplemental_groups = vec![1234, 5678, 1002];
        });
        let id = resolve(Some(&s), "nobody", r.path()).unwrap();
        assert_eq!(
            (id.uid, id.gid, id.additional_gids),
            (1001, 1002, vec![1002, 1234, 5678])
        );
    }

    #[test]
    fn names_resolve_through_the_images_files() {
        let r = root();
        let s = sc(|s| s.run_as_username = "nobody".into());
        let id = resolve(Some(&s), "", r.path()).unwrap();
        assert_eq!((id.uid, id.gid), (65534, 65534));
        let id = resolve(None, "default-user", r.path()).unwrap();
        assert_eq!(
            (id.uid, id.gid, id.additional_gids),
            (1000, 1000, vec![1000, 50000])
        );
        let id = resolve(None, "1000:group-defined-in-image", r.path()).unwrap();
        assert_eq!(id.gid, 50000);
        let s = sc(|s| s.run_as_username = "ghost".into());
        assert!(matches!(
            resolve(Some(&s), "", r.path()),
            Err(ServerError::InvalidArgument(_))
        ));
        assert!(matches!(
            resolve(None, "ghost", r.path()),
            Err(ServerError::FailedPrecondition(_))
        ));
    }

    #[test]
    fn strict_policy_ignores_the_images_groups() {
        let r = root();
        let mut s = sc(|s| {
            s.run_as_user = Some(Int64Value { value: 1000 });
            s.supplemental_groups = vec![1234];
        });
        let merged = resolve(Some(&s), "", r.path()).unwrap();
        assert_eq!(merged.additional_gids, vec![1000, 50000, 1234]);
        s.supplemental_groups_policy = proto::cri::SupplementalGroupsPolicy::Strict as i32;
        let strict = resolve(Some(&s), "", r.path()).unwrap();
        assert_eq!(strict.additional_gids, vec![1000, 1234]);
    }

    #[test]
    fn a_symlinked_passwd_is_followed_inside_the_root_only() {
        let r = root();
        let etc = r.path().join("etc");
        std::fs::rename(etc.join("passwd"), etc.join("passwd.real")).unwrap();
        std::os::unix::fs::symlink("/etc/passwd.real", etc.join("passwd")).unwrap();
        let s = sc(|s| s.run_as_username = "nobody".into());
        assert_eq!(resolve(Some(&s), "", r.path()).unwrap().uid, 65534);
        // An absolute target restarts at the container's root, not at the host's.
        std::fs::remove_file(etc.join("passwd")).unwrap();
        std::os::unix::fs::symlink("/../../../../etc/passwd", etc.join("passwd")).unwrap();
        assert!(resolve(Some(&s), "", r.path()).is_err());
    }

    #[test]
    fn negative_ids_are_refused() {
        let r = root();
        let s = sc(|s| s.run_as_user = Some(Int64Value { value: -1 }));
        assert!(matches!(
            resolve(Some(&s), "", r.path()),
            Err(ServerError::InvalidArgument(_))
        ));
    }
}
