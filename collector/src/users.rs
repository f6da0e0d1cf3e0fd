//! People known to the collector: one `NAME.toml` per user in the users
//! directory, written by `siaga-collector enroll user` and read at start and
//! on reload. The certificate says who someone is; this file says what roles
//! they hold.

use std::collections::HashMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::config::parse_toml;
use crate::error::ConfigError;

/// Role ids of the default SOP, used when the SOP file cannot be read.
pub const DEFAULT_ROLES: &[&str] = &[
    "pemohon",
    "kepala_dinas",
    "sekretaris_dinas",
    "kabid_aptika",
    "pranata_komputer",
    "helpdesk",
    "tim_teknis",
];

/// An enrolled person.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct User {
    /// User name, as in the certificate (`siaga://user/<name>`).
    pub name: String,
    /// SOP role ids (plus `admin`).
    #[serde(default)]
    pub roles: Vec<String>,
}

impl User {
    /// The file form.
    pub fn to_toml(&self) -> String {
        let roles: Vec<String> = self
            .roles
            .iter()
            .map(|r| toml::Value::String(r.clone()).to_string())
            .collect();
        format!(
            "# Written by `siaga-collector enroll user`; edit roles here, then `siaga-collector reload`.\nname = {}\nroles = [{}]\n",
            toml::Value::String(self.name.clone()),
            roles.join(", ")
        )
    }
}

/// Reads every `*.toml` in `dir`. A missing directory means no users.
pub fn load_users(dir: &Path) -> Result<HashMap<String, User>, ConfigError> {
    let mut users = HashMap::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(users),
        Err(error) => {
            return Err(ConfigError::Read {
                file: dir.to_path_buf(),
                error,
            });
        }
    };
    let mut paths: Vec<_> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    paths.sort();
    for path in paths {
        let text = std::fs::read_to_string(&path).map_err(|error| ConfigError::Read {
            file: path.clone(),
            error,
        })?;
        let user: User = parse_toml(&path, &text)?;
        users.insert(user.name.clone(), user);
    }
    Ok(users)
}

/// Role ids a user may hold: the `[[role]]` ids of the SOP file plus `admin`.
pub fn known_roles(sop: &Path) -> Vec<String> {
    let from_file = std::fs::read_to_string(sop)
        .ok()
        .and_then(|t| toml::from_str::<toml::Table>(&t).ok())
        .and_then(|t| {
            t.get("role").and_then(|r| r.as_array()).map(|roles| {
                roles
                    .iter()
                    .filter_map(|r| r.get("id").and_then(|i| i.as_str()).map(str::to_string))
                    .collect::<Vec<_>>()
            })
        })
        .filter(|r| !r.is_empty());
    let mut roles =
        from_file.unwrap_or_else(|| DEFAULT_ROLES.iter().map(|r| r.to_string()).collect());
    roles.push("admin".into());
    roles
}
