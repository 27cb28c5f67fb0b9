//! Where an app's add-on data is kept, and its credentials, generated once.

use super::Kind;
use plan::Env;
use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// Where the add-ons' data of every app is: `$XDG_DATA_HOME/uvdeploy/addons`, else
/// `~/.local/share/uvdeploy/addons`.
pub fn data_root(env: &Env) -> PathBuf {
    match env.non_empty("XDG_DATA_HOME") {
        Some(dir) => Path::new(dir).join("uvdeploy").join("addons"),
        None => {
            Path::new(env.non_empty("HOME").unwrap_or("/tmp")).join(".local/share/uvdeploy/addons")
        }
    }
}

/// The directory of one app's add-on of `kind` (`app_dir` absolute and canonical).
pub fn home(env: &Env, app_dir: &Path, kind: Kind) -> PathBuf {
    data_root(env)
        .join(crate::lock::app_key(app_dir))
        .join(kind.name())
}

/// The credentials of one add-on, generated once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    pub user: String,
    pub password: String,
    pub db: String,
}

/// `n` random characters from `alphabet` (the kernel's random numbers).
fn random(n: usize, alphabet: &[u8]) -> std::io::Result<String> {
    let mut bytes = vec![0u8; n * 2];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(bytes
        .chunks(2)
        .map(|pair| {
            let i = usize::from(u16::from_le_bytes([pair[0], pair[1]])) % alphabet.len();
            alphabet[i] as char
        })
        .collect())
}

const LOWER: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
const ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

impl Credentials {
    /// New ones, named as the platform names them (`u…` users, `b…` databases).
    pub fn generate() -> std::io::Result<Self> {
        Ok(Credentials {
            user: format!("u{}", random(15, LOWER)?),
            password: random(24, ALNUM)?,
            db: format!("b{}", random(19, LOWER)?),
        })
    }

    pub(super) fn parse(text: &str) -> Option<Self> {
        let value = |key: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
                .map(str::to_string)
        };
        Some(Credentials {
            user: value("USER")?,
            password: value("PASSWORD")?,
            db: value("DB")?,
        })
    }

    /// The ones kept in `path`, or new ones written there, readable by the owner only.
    pub fn load_or_create(path: &Path) -> std::io::Result<Self> {
        if let Ok(text) = std::fs::read_to_string(path) {
            if let Some(credentials) = Credentials::parse(&text) {
                return Ok(credentials);
            }
        }
        let credentials = Credentials::generate()?;
        write_private(
            path,
            &format!(
                "# Generated once by uvdeploy for this app's local add-on: keep it private.\nUSER={}\nPASSWORD={}\nDB={}\n",
                credentials.user, credentials.password, credentials.db
            ),
        )?;
        Ok(credentials)
    }
}

/// Writes `text` to `path`, mode 0600 from its creation.
pub(super) fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)?;
    file.write_all(text.as_bytes())?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;
    #[test]
    fn credentials_are_made_once_private_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("credentials");
        let first = Credentials::load_or_create(&path).unwrap();
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert!(first.user.starts_with('u') && first.user.len() == 16);
        assert!(first.db.starts_with('b') && first.db.len() == 20);
        assert!(
            first.password.len() == 24 && first.password.chars().all(|c| c.is_ascii_alphanumeric())
        );
        assert_eq!(Credentials::load_or_create(&path).unwrap(), first);
        assert_ne!(Credentials::generate().unwrap().password, first.password);
    }

    #[test]
    fn each_app_has_its_own_data_directory_under_the_users_data_directory() {
        let env: Env = [("XDG_DATA_HOME", "/d"), ("HOME", "/h")]
            .into_iter()
            .collect();
        let a = home(&env, Path::new("/srv/shop"), Kind::Postgresql);
        assert!(a.starts_with("/d/uvdeploy/addons/"));
        assert!(a.ends_with("postgresql"));
        assert_ne!(a, home(&env, Path::new("/other/shop"), Kind::Postgresql));
        let env: Env = [("HOME", "/h")].into_iter().collect();
        assert!(home(&env, Path::new("/srv/shop"), Kind::Redis)
            .display()
            .to_string()
            .starts_with("/h/.local/share/uvdeploy/addons/shop-"));
    }
}
