//! People known to the collector: one `NAME.toml` per user in the users
//! directory, written by `siaga-collector enroll user` and read at start and
//! on reload. The certificate says who someone is; this file says what roles
//! they hold. With several collectors on PostgreSQL the record is also in
//! the database, which wins over the file ([`crate::trust`]).

use std::collections::HashMap;
use std::path::Path;

use serde::{Deserialize, Serialize};
use siaga_proto::v1;

use crate::api::{ApiError, limits};
use crate::role::Role;

use crate::config::parse_toml;
use crate::error::ConfigError;

/// Role ids of the default SOP, used when the SOP file cannot be read.
pub const DEFAULT_ROLES: &[Role] = &[
    Role::PEMOHON,
    Role::KEPALA_DINAS,
    Role::SEKRETARIS_DINAS,
    Role::KABID_APTIKA,
    Role::PRANATA_KOMPUTER,
    Role::HELPDESK,
    Role::TIM_TEKNIS,
];

/// Roles whose holder works for one OPD and sees only it (the SOP's
/// requester). Every other role is a province role and sees every OPD.
pub const OPD_ROLES: &[Role] = &[Role::PEMOHON];

/// Whether a person with `roles` is held to their own OPD: every role is an
/// OPD role (no roles at all counts too: such a person sees no other OPD).
pub fn only_opd_roles(roles: &[Role]) -> bool {
    roles.iter().all(|r| OPD_ROLES.contains(r))
}

/// An enrolled person.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct User {
    /// User name, as in the certificate (`siaga://user/<name>`).
    pub name: String,
    /// SOP role ids (plus `admin`), checked against the SOP file's roles
    /// where the file is loaded ([`load_users_checked`], [`check_roles`]).
    #[serde(default)]
    pub roles: Vec<Role>,
    /// The OPD the person works for (`enroll user --opd`). A person whose
    /// roles are all OPD roles (`pemohon`) sees and acts only on this OPD;
    /// province roles see every OPD whatever it says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub opd: Option<String>,
    /// Serials (hex) of the certificates issued to this person, newest last;
    /// `siaga-collector revoke-cert --name` revokes them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub certificates: Vec<String>,
    /// Full name with titles, as signed on documents ("Budi Santoso, S.Kom.").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub full_name: Option<String>,
    /// NIP (Nomor Induk Pegawai), 18 digits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nip: Option<String>,
    /// Position (jabatan), as printed under the signature.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jabatan: Option<String>,
    /// The web console password as an argon2id hash (PHC string), set by
    /// `siaga user passwd`; none: this person cannot log in on the web.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_hash: Option<String>,
    /// The web console's second-factor secret (RFC 6238, base32), enrolled
    /// by `siaga user totp`; set: the login asks for the current code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub totp_secret: Option<String>,
    /// The RFC 6238 step of the newest code this person logged in with:
    /// a code of that step or an older one is refused, also after a restart.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub totp_last_step: Option<u64>,
}

/// The shortest password `SetPassword` accepts.
pub use siaga_proto::MIN_PASSWORD;
/// The longest (bounds the work of one hash).
pub const MAX_PASSWORD: usize = 1024;

/// The argon2id hash (PHC string, with a random salt) of `password`.
pub fn hash_password(password: &str) -> Result<String, String> {
    use argon2::password_hash::{PasswordHasher as _, SaltString};
    let salt = SaltString::encode_b64(&rand::random::<[u8; 16]>()).map_err(|e| e.to_string())?;
    argon2::Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| e.to_string())
}

/// Whether `password` matches `hash` (a hash that cannot be read matches nothing).
pub fn verify_password(password: &str, hash: &str) -> bool {
    use argon2::password_hash::{PasswordHash, PasswordVerifier as _};
    match PasswordHash::new(hash) {
        Ok(h) => argon2::Argon2::default()
            .verify_password(password.as_bytes(), &h)
            .is_ok(),
        Err(e) => {
            tracing::warn!(error = %e, "a stored password hash cannot be read");
            false
        }
    }
}

/// Checks an NIP: 18 digits, the first eight a date of birth (YYYYMMDD).
pub fn check_nip(nip: &str) -> Result<(), String> {
    let digits = nip
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect::<String>();
    if digits.len() != 18 || !digits.chars().all(|c| c.is_ascii_digit()) {
        return Err(format!(
            "NIP {nip:?} is not 18 digits (e.g. 198001012005011001)"
        ));
    }
    if chrono::NaiveDate::parse_from_str(&digits[..8], "%Y%m%d").is_err() {
        return Err(format!(
            "NIP {nip:?} does not start with a date of birth YYYYMMDD (e.g. 198001012005011001)"
        ));
    }
    Ok(())
}

/// An NIP as stored: its digits only.
pub fn normalise_nip(nip: &str) -> String {
    nip.chars().filter(|c| !c.is_whitespace()).collect()
}

/// The people documents name, from the user files in `dir` (empty, with
/// an error logged, when they cannot be read).
pub fn people(dir: &Path) -> crate::sop::People {
    let mut out = crate::sop::People::default();
    match load_users(dir) {
        Ok(all) => {
            for (name, u) in all {
                out.insert(name, u.person());
            }
        }
        Err(e) => tracing::warn!(error = %e, "reading users for the documents failed"),
    }
    out
}

impl User {
    /// What documents print where this person signs.
    pub fn person(&self) -> crate::sop::Person {
        crate::sop::Person {
            full_name: self.full_name.clone(),
            nip: self.nip.clone(),
            jabatan: self.jabatan.clone(),
        }
    }

    /// The file form.
    pub fn to_toml(&self) -> String {
        let roles: Vec<String> = self
            .roles
            .iter()
            .map(|r| toml::Value::String(r.to_string()).to_string())
            .collect();
        let certs: Vec<String> = self
            .certificates
            .iter()
            .map(|c| toml::Value::String(c.clone()).to_string())
            .collect();
        let mut text = format!(
            "# Written by `siaga-collector enroll user`; edit roles here, then `siaga-collector reload`.\nname = {}\nroles = [{}]\n",
            toml::Value::String(self.name.clone()),
            roles.join(", ")
        );
        if let Some(opd) = &self.opd {
            text.push_str(&format!(
                "# The OPD this person works for: an OPD role (pemohon) sees only this OPD.\nopd = {}\n",
                toml::Value::String(opd.clone())
            ));
        }
        for (key, value) in [
            ("full_name", &self.full_name),
            ("nip", &self.nip),
            ("jabatan", &self.jabatan),
        ] {
            if let Some(v) = value {
                text.push_str(&format!("{key} = {}\n", toml::Value::String(v.clone())));
            }
        }
        if let Some(h) = &self.password_hash {
            text.push_str(&format!(
                "# The web console password (argon2id), set by `siaga user passwd`.\npassword_hash = {}\n",
                toml::Value::String(h.clone())
            ));
        }
        if let Some(t) = &self.totp_secret {
            text.push_str(&format!(
                "# The web console's second-factor secret (RFC 6238), set by `siaga user totp`.\ntotp_secret = {}\n",
                toml::Value::String(t.clone())
            ));
        }
        if let Some(step) = self.totp_last_step {
            text.push_str(&format!(
                "# The step of the last second-factor code used (a code is good once).\ntotp_last_step = {step}\n"
            ));
        }
        if !certs.is_empty() {
            text.push_str(&format!(
                "# Serials of the certificates issued (for `siaga-collector revoke-cert --name`).\ncertificates = [{}]\n",
                certs.join(", ")
            ));
        }
        text
    }
}

/// Reads every `*.toml` in `dir`. A missing directory means no users.
pub fn load_users(dir: &Path) -> Result<HashMap<String, User>, ConfigError> {
    Ok(read_user_files(dir)?
        .into_iter()
        .map(|f| (f.user.name.clone(), f.user))
        .collect())
}

/// Whether the users directory changed since the last look (a file added,
/// removed or renamed into it changes its stamp): a name not known is
/// looked for on disk again only then, so unknown names, a password
/// guesser's say, do not have every user file read for each attempt.
#[derive(Debug, Default)]
pub struct DirWatch {
    /// The stamp last seen; `None` before the first look.
    seen: std::sync::Mutex<Option<Option<DirStamp>>>,
}

/// One version of a directory: its inode and modification time.
type DirStamp = (u64, Option<std::time::SystemTime>);

impl DirWatch {
    /// Whether `dir` changed since the last call (true on the first).
    /// A modification time within the last second counts as a change: the
    /// clock that stamps files is coarse, and a second change within its
    /// tick would leave the time as it was.
    pub fn changed(&self, dir: &Path) -> bool {
        use std::os::unix::fs::MetadataExt;
        let now = std::fs::metadata(dir)
            .ok()
            .map(|m| (m.ino(), m.modified().ok()));
        let recent = now.and_then(|(_, m)| m).is_some_and(|m| {
            m.elapsed()
                .map_or(true, |e| e < std::time::Duration::from_secs(1))
        });
        // A plain value: a poisoned lock is still usable.
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        let changed = recent || seen.as_ref() != Some(&now);
        *seen = Some(now);
        changed
    }
}

/// One user file as read.
struct UserFile {
    path: std::path::PathBuf,
    text: String,
    user: User,
}

/// Every `*.toml` in `dir`, in name order; two files for one person are refused.
fn read_user_files(dir: &Path) -> Result<Vec<UserFile>, ConfigError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
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
    let mut files: Vec<UserFile> = Vec::new();
    for path in paths {
        let text = std::fs::read_to_string(&path).map_err(|error| ConfigError::Read {
            file: path.clone(),
            error,
        })?;
        let user: User = parse_toml(&path, &text)?;
        if let Some(nip) = &user.nip
            && let Err(message) = check_nip(nip)
        {
            return Err(ConfigError::Invalid {
                file: path.clone(),
                line: crate::config::line_of_top_key(&text, "nip"),
                key: "nip".into(),
                message,
            });
        }
        // A second file with the same name would silently replace the
        // first one's roles: say which two files disagree instead.
        if let Some(first) = files.iter().find(|f| f.user.name == user.name) {
            return Err(ConfigError::Invalid {
                file: path.clone(),
                line: crate::config::line_of_top_key(&text, "name"),
                key: "name".into(),
                message: format!(
                    "user {:?} is already defined in {}; one file per person: \
                     merge the roles into one file and remove the other",
                    user.name,
                    first.path.display()
                ),
            });
        }
        files.push(UserFile { path, text, user });
    }
    Ok(files)
}

/// Checks each user file's `opd` against the inventory's OPDs: an unknown
/// OPD, or a person held to one OPD (only OPD roles) without any, is an
/// error naming the file, line and key. (`load_users` reads the files
/// without the inventory; `validate` and `serve` call this too.)
pub fn check_opds<'a>(
    dir: &Path,
    opds: impl Iterator<Item = &'a String> + Clone,
) -> Result<(), ConfigError> {
    for UserFile { path, text, user } in read_user_files(dir)? {
        let (file, name) = (path, &user.name);
        match &user.opd {
            Some(opd) if !opds.clone().any(|o| o == opd) => {
                return Err(ConfigError::Invalid {
                    file,
                    line: crate::config::line_of_top_key(&text, "opd"),
                    key: "opd".into(),
                    message: format!(
                        "{opd:?} is not an OPD of the inventory ({}); correct it or re-enroll \
                         the person with --opd",
                        opds.clone().cloned().collect::<Vec<_>>().join(", ")
                    ),
                });
            }
            None if !user.roles.is_empty() && only_opd_roles(&user.roles) => {
                return Err(ConfigError::Invalid {
                    file,
                    line: crate::config::line_of_top_key(&text, "roles"),
                    key: "opd".into(),
                    message: format!(
                        "{name} is {} and sees only its own OPD, but has no `opd = \"…\"`; \
                         add the OPD it works for",
                        crate::role::join(&user.roles, ", ")
                    ),
                });
            }
            _ => {}
        }
    }
    Ok(())
}

/// Checks each user file's `roles` against `known` (the SOP file's
/// `[[role]]` ids and `admin`): a role that is neither is an error naming
/// the file, line and key, as `enroll user --role` refuses it.
pub fn check_roles(dir: &Path, known: &[Role]) -> Result<(), ConfigError> {
    read_user_files(dir)?
        .iter()
        .try_for_each(|f| check_file_roles(f, known))
}

/// [`load_users`] with every file's roles checked against `known` (at
/// start and on reload: a file naming no role there is refused whole).
pub fn load_users_checked(
    dir: &Path,
    known: &[Role],
) -> Result<HashMap<String, User>, ConfigError> {
    let files = read_user_files(dir)?;
    files.iter().try_for_each(|f| check_file_roles(f, known))?;
    Ok(files
        .into_iter()
        .map(|f| (f.user.name.clone(), f.user))
        .collect())
}

fn check_file_roles(f: &UserFile, known: &[Role]) -> Result<(), ConfigError> {
    for role in &f.user.roles {
        if let Err(e) = Role::parse(role.as_str(), known) {
            return Err(ConfigError::Invalid {
                file: f.path.clone(),
                line: crate::config::line_of_top_key(&f.text, "roles"),
                key: "roles".into(),
                message: format!("{e}; correct it, or add the role to the SOP file as a [[role]]"),
            });
        }
    }
    Ok(())
}

/// Role ids a user may hold: the `[[role]]` ids of the SOP file plus `admin`.
pub fn known_roles(sop: &Path) -> Vec<Role> {
    let from_file = std::fs::read_to_string(sop)
        .ok()
        .and_then(|t| toml::from_str::<toml::Table>(&t).ok())
        .and_then(|t| {
            t.get("role").and_then(|r| r.as_array()).map(|roles| {
                roles
                    .iter()
                    .filter_map(|r| r.get("id").and_then(|i| i.as_str()).map(Role::sop_id))
                    .collect::<Vec<_>>()
            })
        })
        .filter(|r| !r.is_empty());
    let mut roles = from_file.unwrap_or_else(|| DEFAULT_ROLES.to_vec());
    roles.push(Role::ADMIN);
    roles
}

/// Role ids a user may hold under a parsed SOP: its `[[role]]` ids plus
/// `admin`.
pub fn roles_of(sop: &crate::sop::Sop) -> Vec<Role> {
    let mut roles: Vec<Role> = sop.roles.iter().map(|r| Role::sop_id(&r.id)).collect();
    roles.push(Role::ADMIN);
    roles
}

/// Name of the append-only trail of user management (JSON lines) in the users directory.
pub const AUDIT_FILE: &str = "audit.jsonl";

/// Writes a user's file (atomically: a temporary file renamed over it);
/// readable by the collector's user only once it holds a password hash.
pub fn write_user(dir: &Path, user: &User) -> Result<(), String> {
    let path = dir.join(format!("{}.toml", user.name));
    let mode = if user.password_hash.is_some() || user.totp_secret.is_some() {
        crate::safe_file::PRIVATE
    } else {
        crate::safe_file::PUBLIC
    };
    crate::safe_file::write(&path, user.to_toml().as_bytes(), mode).map_err(|e| e.to_string())
}

/// Held while a user's file is read, changed and written back by this
/// process, so two changes of one file (a new password, a code's step) do
/// not undo each other.
static USER_FILE_CHANGE: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn changing_user_files() -> std::sync::MutexGuard<'static, ()> {
    USER_FILE_CHANGE.lock().unwrap_or_else(|p| p.into_inner())
}

/// Sets the web console password of `name`, by `by`: the admin for anyone,
/// a person for themself. Written to the user's file (as an argon2id hash)
/// and to the users' trail (never the password).
pub fn set_password(
    users: &dyn UserDirectory,
    by: &crate::api::Caller,
    name: &str,
    password: &str,
) -> Result<User, ApiError> {
    limits::required("name", name, limits::len::ID)?;
    if name != by.name && !by.has(&Role::ADMIN) {
        return Err(ApiError::Denied(format!(
            "only the admin sets another person's password; you are {}",
            by.describe()
        )));
    }
    let n = password.chars().count();
    if n < MIN_PASSWORD {
        return Err(ApiError::invalid(
            "password",
            format!("{n} characters; at least {MIN_PASSWORD}"),
        ));
    }
    if n > MAX_PASSWORD {
        return Err(ApiError::invalid(
            "password",
            format!("{n} characters; the limit is {MAX_PASSWORD}"),
        ));
    }
    let _change = changing_user_files();
    let Some(mut user) = users.get(name) else {
        return Err(ApiError::NotFound(format!(
            "no user {name} (enroll with `siaga-collector enroll user`)"
        )));
    };
    user.password_hash = Some(
        hash_password(password)
            .map_err(|e| ApiError::internal("hashing the password", anyhow::anyhow!(e)))?,
    );
    users
        .save(&user)
        .map_err(|e| ApiError::internal("writing the user's file", anyhow::anyhow!(e)))?;
    users.reload();
    audit(users.dir(), &by.name, "passwd", name, "", "done");
    tracing::info!(by = %by.name, user = %name, "web console password set");
    Ok(user)
}

/// Enrols a new second-factor secret for `name`, by `by`: the admin for
/// anyone, a person for themself. Written to the user's file and the
/// users' trail (never the secret); the user with the `otpauth://` URI.
pub fn enroll_totp(
    users: &dyn UserDirectory,
    by: &crate::api::Caller,
    name: &str,
) -> Result<(User, String), ApiError> {
    limits::required("name", name, limits::len::ID)?;
    if name != by.name && !by.has(&Role::ADMIN) {
        return Err(ApiError::Denied(format!(
            "only the admin enrols another person's second factor; you are {}",
            by.describe()
        )));
    }
    let _change = changing_user_files();
    let Some(mut user) = users.get(name) else {
        return Err(ApiError::NotFound(format!(
            "no user {name} (enroll with `siaga-collector enroll user`)"
        )));
    };
    let secret = crate::web::totp::new_secret();
    let uri = crate::web::totp::uri(&secret, name)
        .map_err(|e| ApiError::internal("making the otpauth URI", anyhow::anyhow!(e)))?;
    user.totp_secret = Some(secret);
    // A new secret starts its own count of steps.
    user.totp_last_step = None;
    users
        .save(&user)
        .map_err(|e| ApiError::internal("writing the user's file", anyhow::anyhow!(e)))?;
    users.reload();
    audit(users.dir(), &by.name, "totp", name, "", "done");
    tracing::info!(by = %by.name, user = %name, "web console second factor enrolled");
    Ok((user, uri))
}

/// Takes `name`'s second-factor code of `step`: `Ok(false)` when a code
/// of that step or a later one was used already. The step is written to
/// the user's file (atomically, as the password hash) before the answer,
/// so a restarted collector refuses the code too.
pub fn take_totp_step(users: &dyn UserDirectory, name: &str, step: u64) -> Result<bool, String> {
    let _change = changing_user_files();
    // Read afresh from the file: it, not a cache, holds the last step.
    let Some(mut user) = users.get(name) else {
        return Ok(false);
    };
    if user.totp_last_step.is_some_and(|last| step <= last) {
        return Ok(false);
    }
    user.totp_last_step = Some(step);
    users.save(&user)?;
    users.reload();
    Ok(true)
}

/// Appends one record to the user-management trail: who, what, on whom, and
/// whether it was done or refused (with why).
pub fn audit(dir: &Path, by: &str, action: &str, user: &str, role: &str, outcome: &str) {
    use std::io::Write as _;
    let line = serde_json::json!({
        "at": chrono::Utc::now().to_rfc3339(),
        "by": by,
        "action": action,
        "user": user,
        "role": role,
        "outcome": outcome,
    });
    let path = dir.join(AUDIT_FILE);
    let r = crate::safe_file::append(&path, crate::safe_file::PUBLIC)
        .map_err(|e| e.error)
        .and_then(|mut f| writeln!(f, "{line}"));
    if let Err(e) = r {
        tracing::error!(file = %path.display(), error = %e, "cannot write the user audit trail");
    }
}

/// What the `Users` service needs from the running collector.
pub trait UserDirectory {
    /// Every user, re-read from the directory.
    fn all(&self) -> Vec<User>;
    /// One user.
    fn get(&self, name: &str) -> Option<User>;
    /// Where the user files live.
    fn dir(&self) -> &Path;
    /// Role ids a user may hold (the SOP's plus `admin`).
    fn known_roles(&self) -> Vec<Role>;
    /// Re-read the files after a change.
    fn reload(&self);
    /// Writes a user's record where the collector reads it: the user's
    /// file, and with several collectors on PostgreSQL the database too.
    fn save(&self, user: &User) -> Result<(), String> {
        write_user(self.dir(), user)
    }
}

/// A role change: grant or revoke.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoleChange {
    /// Give the role.
    Grant,
    /// Take it away.
    Revoke,
}

impl RoleChange {
    fn word(self) -> &'static str {
        match self {
            RoleChange::Grant => "grant",
            RoleChange::Revoke => "revoke",
        }
    }
}

/// Gives or takes `role` of user `name`, by `by` (whom the policy already
/// let in as admin); written to the user's file and to the users' trail.
pub fn change_role(
    users: &dyn UserDirectory,
    by: &str,
    change: RoleChange,
    name: &str,
    role: &str,
) -> Result<User, ApiError> {
    limits::required("name", name, limits::len::ID)?;
    limits::required("role", role, limits::len::ID)?;
    let role = Role::parse(role, &users.known_roles())
        .map_err(|e| ApiError::invalid("role", e.to_string()))?;
    let Some(mut user) = users.get(name) else {
        return Err(ApiError::NotFound(format!(
            "no user {name} (enroll with `siaga-collector enroll user`)"
        )));
    };
    match change {
        RoleChange::Grant => {
            if !user.roles.contains(&role) {
                user.roles.push(role.clone());
            }
        }
        RoleChange::Revoke => {
            if role == Role::ADMIN && name == by {
                return Err(ApiError::Refused(
                    "you cannot take the admin role from yourself".into(),
                ));
            }
            user.roles.retain(|r| *r != role);
        }
    }
    users
        .save(&user)
        .map_err(|e| ApiError::internal("writing the user's file", anyhow::anyhow!(e)))?;
    users.reload();
    audit(users.dir(), by, change.word(), name, role.as_str(), "done");
    tracing::info!(%by, user = %user.name, %role, action = change.word(), "user roles changed");
    Ok(user)
}

impl From<&User> for siaga_proto::v1::UserInfo {
    fn from(u: &User) -> Self {
        siaga_proto::v1::UserInfo {
            name: u.name.clone(),
            roles: crate::role::ids(&u.roles),
            opd: u.opd.clone().unwrap_or_default(),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
pub(crate) mod tests {
    use super::*;
    use crate::api::matrix::{Case, Outcome};
    use crate::api::testing::Fixture;
    use siaga_proto::v1::users_client::UsersClient;

    /// The user files of one directory, read afresh on every look.
    struct Files(std::path::PathBuf);

    impl UserDirectory for Files {
        fn all(&self) -> Vec<User> {
            load_users(&self.0).unwrap().into_values().collect()
        }
        fn get(&self, name: &str) -> Option<User> {
            load_users(&self.0).unwrap().remove(name)
        }
        fn dir(&self) -> &Path {
            &self.0
        }
        fn known_roles(&self) -> Vec<crate::role::Role> {
            Vec::new()
        }
        fn reload(&self) {}
    }

    #[test]
    fn a_codes_step_is_taken_once_and_kept_in_the_users_file() {
        let tmp = tempfile::tempdir().unwrap();
        let budi = User {
            name: "budi".into(),
            roles: vec![Role::HELPDESK],
            password_hash: Some("$argon2id$h".into()),
            totp_secret: Some("GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ".into()),
            ..Default::default()
        };
        write_user(tmp.path(), &budi).unwrap();
        let files = Files(tmp.path().to_path_buf());
        assert_eq!(take_totp_step(&files, "budi", 100), Ok(true));
        assert_eq!(take_totp_step(&files, "budi", 100), Ok(false), "again");
        assert_eq!(take_totp_step(&files, "budi", 99), Ok(false), "older");
        assert_eq!(take_totp_step(&files, "budi", 101), Ok(true), "newer");
        assert_eq!(take_totp_step(&files, "nobody", 5), Ok(false));
        // In the file, the rest of it as it was.
        let kept = files.get("budi").unwrap();
        assert_eq!(kept.totp_last_step, Some(101));
        assert_eq!(
            User {
                totp_last_step: None,
                ..kept
            },
            budi
        );
    }

    #[test]
    fn the_users_directory_is_read_again_only_when_it_changed() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("users");
        std::fs::create_dir(&dir).unwrap();
        let age = |secs| {
            let t = std::time::SystemTime::now() - std::time::Duration::from_secs(secs);
            std::fs::File::open(&dir).unwrap().set_modified(t).unwrap();
        };
        age(60);
        let w = DirWatch::default();
        assert!(w.changed(&dir), "the first look reads it");
        assert!(!w.changed(&dir), "unchanged: not read again");
        assert!(!w.changed(&dir));
        // Someone enrolled meanwhile: a file more.
        std::fs::write(dir.join("budi.toml"), "").unwrap();
        assert!(w.changed(&dir), "a new file is seen at once");
        age(30);
        assert!(w.changed(&dir));
        assert!(!w.changed(&dir));
        // A directory that goes away is a change too.
        std::fs::remove_file(dir.join("budi.toml")).unwrap();
        std::fs::remove_dir(&dir).unwrap();
        assert!(w.changed(&dir));
        assert!(!w.changed(&dir));
    }

    fn user_outcome(r: Result<tonic::Response<v1::UserInfo>, tonic::Status>) -> Outcome {
        match r {
            Ok(_) => Outcome::Seen,
            Err(s) => s.into(),
        }
    }

    /// The `Users` service in the policy matrix (not OPD data: the OPD is ignored).
    pub const CASES: &[Case] = &[
        Case {
            rpc: "/siaga.v1.Users/ListUsers",
            call: |f, person, _| {
                Box::pin(async move {
                    let mut c = UsersClient::new(f.channel(person));
                    match c.list_users(v1::ListUsersRequest::default()).await {
                        Ok(r) if r.get_ref().users.iter().any(|u| u.name == "root") => {
                            Outcome::Seen
                        }
                        Ok(_) => Outcome::Hidden,
                        Err(s) => s.into(),
                    }
                })
            },
        },
        Case {
            rpc: "/siaga.v1.Users/GrantRole",
            call: |f, person, _| {
                Box::pin(async move {
                    let mut c = UsersClient::new(f.channel(person));
                    user_outcome(
                        c.grant_role(v1::GrantRoleRequest {
                            name: "opd".into(),
                            role: "pemohon".into(),
                        })
                        .await,
                    )
                })
            },
        },
        Case {
            rpc: "/siaga.v1.Users/RevokeRole",
            call: |f, person, _| {
                Box::pin(async move {
                    let mut c = UsersClient::new(f.channel(person));
                    user_outcome(
                        c.revoke_role(v1::RevokeRoleRequest {
                            name: "teknisi".into(),
                            role: "helpdesk".into(),
                        })
                        .await,
                    )
                })
            },
        },
        Case {
            // Everyone may call it; only the admin and teknisi themself
            // may set teknisi's password (the others get PERMISSION_DENIED
            // from the service).
            rpc: "/siaga.v1.Users/SetPassword",
            call: |f, person, _| {
                Box::pin(async move {
                    let mut c = UsersClient::new(f.channel(person));
                    let r = c
                        .set_password(v1::SetPasswordRequest {
                            name: "teknisi".into(),
                            password: "kata-sandi-teknisi".into(),
                        })
                        .await;
                    match r {
                        Ok(_) if matches!(person, "root" | "teknisi") => Outcome::Seen,
                        // Counted as a failure by the matrix.
                        Ok(_) => Outcome::Refused(
                            tonic::Code::Internal,
                            format!("{person} set teknisi's password"),
                        ),
                        Err(s) => s.into(),
                    }
                })
            },
        },
        Case {
            // As SetPassword: the admin and teknisi themself only.
            rpc: "/siaga.v1.Users/EnrollTotp",
            call: |f, person, _| {
                Box::pin(async move {
                    let mut c = UsersClient::new(f.channel(person));
                    let r = c
                        .enroll_totp(v1::EnrollTotpRequest {
                            name: "teknisi".into(),
                        })
                        .await;
                    match r {
                        Ok(_) if matches!(person, "root" | "teknisi") => Outcome::Seen,
                        Ok(_) => Outcome::Refused(
                            tonic::Code::Internal,
                            format!("{person} enrolled teknisi's second factor"),
                        ),
                        Err(s) => s.into(),
                    }
                })
            },
        },
    ];

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_password_is_set_by_the_admin_or_oneself_hashed_and_never_shown() {
        let f = Fixture::start().await;
        let set = |who: &str, name: &str, password: &str| {
            let mut c = UsersClient::new(f.channel(who));
            let req = v1::SetPasswordRequest {
                name: name.into(),
                password: password.into(),
            };
            async move { c.set_password(req).await }
        };
        set("root", "hd", "rahasia-helpdesk-1").await.unwrap();
        set("hd", "hd", "rahasia-helpdesk-2").await.unwrap();
        let e = set("hd", "kabid", "rahasia-kabid-99").await.unwrap_err();
        assert_eq!(e.code(), tonic::Code::PermissionDenied, "{e:?}");
        assert!(e.message().contains("only the admin"), "{}", e.message());
        let e = set("root", "hd", "pendek").await.unwrap_err();
        assert_eq!(e.code(), tonic::Code::InvalidArgument);
        assert_eq!(e.message(), "password: 6 characters; at least 10");
        let e = set("root", "nobody", "rahasia-helpdesk-1")
            .await
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::NotFound);
        // The file holds an argon2id hash of the last password, private to the collector.
        let path = f.cfg.users.join("hd.toml");
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(!text.contains("rahasia"), "{text}");
        let hash = load_users(&f.cfg.users).unwrap()["hd"]
            .password_hash
            .clone()
            .unwrap();
        assert!(hash.starts_with("$argon2id$"), "{hash}");
        assert!(verify_password("rahasia-helpdesk-2", &hash));
        assert!(!verify_password("rahasia-helpdesk-1", &hash));
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        // The audit trails name who set whose password, never the password.
        let trail = std::fs::read_to_string(f.cfg.users.join(AUDIT_FILE)).unwrap();
        assert!(trail.contains("\"passwd\""), "{trail}");
        assert!(!trail.contains("rahasia"));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_admin_lists_in_pages_grants_and_revokes_with_field_limits() {
        let f = Fixture::start().await;
        let mut c = UsersClient::new(f.as_role("admin"));
        // Paging: 3 at a time, every person once, in name order.
        let mut names = Vec::new();
        let mut page_token = String::new();
        loop {
            let r = c
                .list_users(v1::ListUsersRequest {
                    page_size: 3,
                    page_token,
                })
                .await
                .unwrap()
                .into_inner();
            assert!(r.users.len() <= 3);
            names.extend(r.users.into_iter().map(|u| u.name));
            if r.next_page_token.is_empty() {
                break;
            }
            page_token = r.next_page_token;
        }
        let mut expected: Vec<_> = crate::api::testing::PEOPLE
            .iter()
            .map(|(n, _)| n.to_string())
            .collect();
        expected.sort();
        assert_eq!(names, expected);
        // Grant, then revoke; the answer is the person's roles.
        let u = c
            .grant_role(v1::GrantRoleRequest {
                name: "teknisi".into(),
                role: "kabid_aptika".into(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(u.roles, ["tim_teknis", "kabid_aptika"]);
        let u = c
            .revoke_role(v1::RevokeRoleRequest {
                name: "teknisi".into(),
                role: "kabid_aptika".into(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(u.roles, ["tim_teknis"]);
        // Refusals with the field named; the admin keeps their own role.
        let e = c
            .grant_role(v1::GrantRoleRequest {
                name: "teknisi".into(),
                role: "bupati".into(),
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::InvalidArgument);
        assert!(
            e.message().starts_with("role: `bupati` is not a role"),
            "{}",
            e.message()
        );
        let e = c
            .grant_role(v1::GrantRoleRequest {
                name: "x".repeat(65),
                role: "helpdesk".into(),
            })
            .await
            .unwrap_err();
        assert_eq!(e.message(), "name: 65 characters; the limit is 64");
        let e = c
            .grant_role(v1::GrantRoleRequest {
                name: "nobody".into(),
                role: "helpdesk".into(),
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::NotFound);
        let e = c
            .revoke_role(v1::RevokeRoleRequest {
                name: "root".into(),
                role: "admin".into(),
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::FailedPrecondition, "{e:?}");
        // A bad page token is the caller's error.
        let e = c
            .list_users(v1::ListUsersRequest {
                page_size: 3,
                page_token: "bm9wZQ".into(),
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::InvalidArgument);
    }

    #[test]
    fn a_user_file_carries_full_name_nip_and_jabatan_and_a_bad_nip_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let u = User {
            name: "budi".into(),
            roles: vec![Role::TIM_TEKNIS],
            full_name: Some("Budi Santoso, S.Kom.".into()),
            nip: Some("198001012005011001".into()),
            jabatan: Some("Pranata Komputer \"Ahli\" Pertama".into()),
            ..User::default()
        };
        write_user(dir.path(), &u).unwrap();
        assert_eq!(load_users(dir.path()).unwrap()["budi"], u);
        let p = people(dir.path());
        assert_eq!(
            p.signer("budi", crate::sop::Lang::Id).nip,
            "NIP 19800101 200501 1 001"
        );
        std::fs::write(
            dir.path().join("budi.toml"),
            "name = \"budi\"\nroles = [\"tim_teknis\"]\nnip = \"12345\"\n",
        )
        .unwrap();
        let err = load_users(dir.path()).unwrap_err().to_string();
        assert!(
            err.starts_with(&format!(
                "{}:3: nip: NIP \"12345\" is not 18 digits",
                dir.path().join("budi.toml").display()
            )),
            "{err}"
        );
    }

    #[test]
    fn a_role_neither_in_the_sop_nor_admin_is_refused_with_file_line_and_key() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("budi.toml");
        std::fs::write(
            &file,
            "name = \"budi\"\n# hand-edited\nroles = [\"helpdesk\", \"auditor\"]\n",
        )
        .unwrap();
        let sop_roles = [Role::HELPDESK, Role::ADMIN];
        for err in [
            check_roles(dir.path(), &sop_roles).unwrap_err(),
            load_users_checked(dir.path(), &sop_roles).unwrap_err(),
        ] {
            assert_eq!(
                err.to_string(),
                format!(
                    "{}:3: roles: `auditor` is not a role (helpdesk, admin); correct it, \
                     or add the role to the SOP file as a [[role]]",
                    file.display()
                )
            );
        }
        // A SOP file that defines the role accepts the same file.
        let with_auditor = [Role::HELPDESK, Role::sop_id("auditor"), Role::ADMIN];
        check_roles(dir.path(), &with_auditor).unwrap();
        let users = load_users_checked(dir.path(), &with_auditor).unwrap();
        assert_eq!(users["budi"].roles, ["helpdesk", "auditor"]);
    }

    #[test]
    fn two_files_for_one_name_are_refused_naming_both() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("budi.toml"),
            "name = \"budi\"\nroles = [\"helpdesk\"]\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("budi-lama.toml"),
            "# old copy\nname = \"budi\"\nroles = [\"admin\"]\n",
        )
        .unwrap();
        let err = load_users(dir.path()).unwrap_err().to_string();
        // Files are read in name order: budi-lama.toml first.
        let second = dir.path().join("budi.toml");
        assert!(
            err.starts_with(&format!(
                "{}:1: name: user \"budi\" is already defined in ",
                second.display()
            )),
            "{err}"
        );
        assert!(err.contains("budi-lama.toml"), "{err}");

        std::fs::remove_file(dir.path().join("budi-lama.toml")).unwrap();
        let users = load_users(dir.path()).unwrap();
        assert_eq!(users["budi"].roles, ["helpdesk"]);
    }
}

/// The `Users` gRPC service (users.proto).
#[derive(Debug, Clone)]
pub struct UsersApi {
    hub: std::sync::Arc<crate::hub::Hub>,
}

impl UsersApi {
    /// The service on `hub`.
    pub fn new(hub: std::sync::Arc<crate::hub::Hub>) -> Self {
        Self { hub }
    }

    /// The collector's shared state.
    pub fn hub(&self) -> &crate::hub::Hub {
        &self.hub
    }
}

#[tonic::async_trait]
impl siaga_proto::v1::users_server::Users for UsersApi {
    async fn list_users(
        &self,
        req: tonic::Request<v1::ListUsersRequest>,
    ) -> Result<tonic::Response<v1::ListUsersResponse>, tonic::Status> {
        let r = req.into_inner();
        let page = crate::api::page::Page::new(r.page_size, &r.page_token, "users")?;
        let dir = crate::admin::HubUsers(self.hub.clone());
        let (users, next_page_token) = crate::api::error::blocking("listing users", move || {
            let mut all = dir.all();
            all.sort_by(|a, b| a.name.cmp(&b.name));
            Ok(page.take(all.iter().map(v1::UserInfo::from), |u| u.name.clone()))
        })
        .await?;
        Ok(tonic::Response::new(v1::ListUsersResponse {
            users,
            next_page_token,
        }))
    }

    async fn grant_role(
        &self,
        req: tonic::Request<v1::GrantRoleRequest>,
    ) -> Result<tonic::Response<v1::UserInfo>, tonic::Status> {
        let by = crate::api::caller(&req)?.name;
        let r = req.into_inner();
        self.change(by, RoleChange::Grant, r.name, r.role).await
    }

    async fn revoke_role(
        &self,
        req: tonic::Request<v1::RevokeRoleRequest>,
    ) -> Result<tonic::Response<v1::UserInfo>, tonic::Status> {
        let by = crate::api::caller(&req)?.name;
        let r = req.into_inner();
        self.change(by, RoleChange::Revoke, r.name, r.role).await
    }

    async fn set_password(
        &self,
        req: tonic::Request<v1::SetPasswordRequest>,
    ) -> Result<tonic::Response<v1::UserInfo>, tonic::Status> {
        let by = crate::api::caller(&req)?;
        let r = req.into_inner();
        let dir = crate::admin::HubUsers(self.hub.clone());
        // Hashing is deliberately slow: off the async workers.
        let user = crate::api::error::blocking("setting a password", move || {
            set_password(&dir, &by, &r.name, &r.password)
        })
        .await?;
        Ok(tonic::Response::new(v1::UserInfo::from(&user)))
    }

    async fn enroll_totp(
        &self,
        req: tonic::Request<v1::EnrollTotpRequest>,
    ) -> Result<tonic::Response<v1::EnrollTotpResponse>, tonic::Status> {
        let by = crate::api::caller(&req)?;
        let r = req.into_inner();
        let dir = crate::admin::HubUsers(self.hub.clone());
        let (user, uri) = crate::api::error::blocking("enrolling a second factor", move || {
            enroll_totp(&dir, &by, &r.name)
        })
        .await?;
        Ok(tonic::Response::new(v1::EnrollTotpResponse {
            user: Some(v1::UserInfo::from(&user)),
            otpauth_uri: uri,
            secret: user.totp_secret.unwrap_or_default(),
        }))
    }
}

impl UsersApi {
    async fn change(
        &self,
        by: String,
        change: RoleChange,
        name: String,
        role: String,
    ) -> Result<tonic::Response<v1::UserInfo>, tonic::Status> {
        let dir = crate::admin::HubUsers(self.hub.clone());
        let user = crate::api::error::blocking("changing a role", move || {
            change_role(&dir, &by, change, &name, &role)
        })
        .await?;
        Ok(tonic::Response::new(v1::UserInfo::from(&user)))
    }
}
