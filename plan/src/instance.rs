//! The variables the platform sets in every process of a deployment (its environment variables
//! reference): `INSTANCE_TYPE`, `INSTANCE_ID`, `INSTANCE_NUMBER`, `APP_ID`, `APP_HOME`,
//! `COMMIT_ID`, `CC_PRETTY_INSTANCE_NAME`, `CC_DEPLOYMENT_ID`, `CC_APP_NAME`. `PORT` is the
//! launcher's (the app's and hops'). The reference's `CC_REVERSE_PROXY_IPS` is not set: no
//! proxy of the platform sits in front of a rehearsal.

use sha1::Digest;
use std::path::Path;

/// The names, in the order they are listed.
pub const VARIABLES: [&str; 9] = [
    "INSTANCE_TYPE",
    "INSTANCE_ID",
    "INSTANCE_NUMBER",
    "APP_ID",
    "APP_HOME",
    "COMMIT_ID",
    "CC_PRETTY_INSTANCE_NAME",
    "CC_DEPLOYMENT_ID",
    "CC_APP_NAME",
];

/// `INSTANCE_TYPE`: `build` on the build instance, `production` otherwise.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InstanceType {
    Build,
    Production,
}

/// One instance of one deployment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instance {
    /// `app_<uuid>`, the same for every deployment of the app ([`app_id`]).
    pub app_id: String,
    /// New for each deployment.
    pub instance_id: String,
    /// 0: a rehearsal runs one instance.
    pub instance_number: u32,
    /// The deployed copy's directory (the application's, `APP_FOLDER` included).
    pub app_home: String,
    /// The commit deployed, when one was.
    pub commit_id: Option<String>,
    /// A generated name, as the platform gives each instance one.
    pub pretty_name: String,
    /// New for each deployment (one instance per deployment here: its own UUID).
    pub deployment_id: String,
    /// The application's name: its directory's.
    pub app_name: String,
}

impl Instance {
    /// A new instance of the app whose directory (canonical) is `app_dir`.
    pub fn new(app_dir: &Path, app_home: &Path) -> Self {
        let random = random_bytes();
        Instance {
            app_id: app_id(app_dir),
            instance_id: uuid_v4(random),
            instance_number: 0,
            app_home: app_home.display().to_string(),
            commit_id: None,
            pretty_name: pretty_name(random),
            deployment_id: uuid_v4(random_bytes()),
            app_name: app_dir
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| "app".into()),
        }
    }

    /// The variables, as `(name, value)`, for a process of this kind (`COMMIT_ID` only when
    /// a commit was deployed).
    pub fn variables(&self, kind: InstanceType) -> Vec<(&'static str, String)> {
        let mut vars = vec![
            (
                "INSTANCE_TYPE",
                match kind {
                    InstanceType::Build => "build",
                    InstanceType::Production => "production",
                }
                .to_string(),
            ),
            ("INSTANCE_ID", self.instance_id.clone()),
            ("INSTANCE_NUMBER", self.instance_number.to_string()),
            ("APP_ID", self.app_id.clone()),
            ("APP_HOME", self.app_home.clone()),
        ];
        if let Some(commit) = &self.commit_id {
            vars.push(("COMMIT_ID", commit.clone()));
        }
        vars.push(("CC_PRETTY_INSTANCE_NAME", self.pretty_name.clone()));
        vars.push(("CC_DEPLOYMENT_ID", self.deployment_id.clone()));
        vars.push(("CC_APP_NAME", self.app_name.clone()));
        vars
    }
}

/// The app's id, in the platform's `app_<uuid>` form: a UUID version 5 (RFC 9562) of the
/// directory's `file://` URL in the URL namespace, so that every deployment of one directory
/// has the same id and two directories never share one.
pub fn app_id(canonical_dir: &Path) -> String {
    // The URL namespace, 6ba7b811-9dad-11d1-80b4-00c04fd430c8.
    const NAMESPACE_URL: [u8; 16] = [
        0x6b, 0xa7, 0xb8, 0x11, 0x9d, 0xad, 0x11, 0xd1, 0x80, 0xb4, 0x00, 0xc0, 0x4f, 0xd4, 0x30,
        0xc8,
    ];
    let mut hash = sha1::Sha1::new();
    hash.update(NAMESPACE_URL);
    hash.update(b"file://");
    hash.update(canonical_dir.as_os_str().as_encoded_bytes());
    let digest = hash.finalize();
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    bytes[6] = (bytes[6] & 0x0f) | 0x50;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    format!("app_{}", uuid_text(&bytes))
}

/// A random UUID (version 4).
fn uuid_v4(mut bytes: [u8; 16]) -> String {
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    uuid_text(&bytes)
}

fn uuid_text(b: &[u8; 16]) -> String {
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// 16 bytes from the kernel's random source (the clock's nanoseconds and the PID, should it
/// be unreadable: an instance id must differ between deployments, not resist guessing).
fn random_bytes() -> [u8; 16] {
    use std::io::Read;
    let mut bytes = [0u8; 16];
    if std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .is_err()
    {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        let seed = nanos ^ (u128::from(std::process::id()) << 64);
        bytes = seed.to_le_bytes();
    }
    bytes
}

/// `Tiny rhyhorn`: an adjective and a Pokémon's name, as the platform's names go, drawn from
/// `random`'s last bytes.
fn pretty_name(random: [u8; 16]) -> String {
    const ADJECTIVES: [&str; 16] = [
        "Brave", "Calm", "Eager", "Fuzzy", "Gentle", "Happy", "Jolly", "Kind", "Lively", "Merry",
        "Nimble", "Proud", "Quick", "Shiny", "Tiny", "Witty",
    ];
    const ANIMALS: [&str; 16] = [
        "bulbasaur",
        "charmander",
        "squirtle",
        "pikachu",
        "jigglypuff",
        "psyduck",
        "snorlax",
        "eevee",
        "rhyhorn",
        "onix",
        "magikarp",
        "lapras",
        "vulpix",
        "togepi",
        "mudkip",
        "totodile",
    ];
    format!(
        "{} {}",
        ADJECTIVES[usize::from(random[14]) % ADJECTIVES.len()],
        ANIMALS[usize::from(random[15]) % ANIMALS.len()]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_app_id_is_a_uuid_v5_of_the_directory_and_stable() {
        // python3 -c 'import uuid; print(uuid.uuid5(uuid.NAMESPACE_URL, "file:///srv/app"))'
        assert_eq!(
            app_id(Path::new("/srv/app")),
            "app_b9b4dac7-c907-5657-80b4-7b9c1d43c569"
        );
        assert_eq!(app_id(Path::new("/srv/app")), app_id(Path::new("/srv/app")));
        assert_ne!(
            app_id(Path::new("/srv/app")),
            app_id(Path::new("/srv/app2"))
        );
    }

    #[test]
    fn each_instance_has_its_own_id_and_the_variables_by_kind() {
        let mut one = Instance::new(Path::new("/srv/app"), Path::new("/tmp/s/copy"));
        let two = Instance::new(Path::new("/srv/app"), Path::new("/tmp/s/copy"));
        assert_ne!(one.instance_id, two.instance_id);
        assert_eq!(one.app_id, two.app_id);
        assert_eq!(one.instance_id.len(), 36);
        assert_eq!(&one.instance_id[14..15], "4");
        let names = |vars: Vec<(&'static str, String)>| {
            vars.into_iter().map(|(k, _)| k).collect::<Vec<_>>()
        };
        assert!(!names(one.variables(InstanceType::Build)).contains(&"COMMIT_ID"));
        one.commit_id = Some("abc1234".into());
        let vars = one.variables(InstanceType::Production);
        assert_eq!(names(vars.clone()), VARIABLES);
        assert_eq!(vars[8], ("CC_APP_NAME", "app".to_string()));
        assert_ne!(one.deployment_id, two.deployment_id);
        assert_eq!(vars[0], ("INSTANCE_TYPE", "production".to_string()));
        assert_eq!(
            one.variables(InstanceType::Build)[0],
            ("INSTANCE_TYPE", "build".to_string())
        );
        assert_eq!(vars[2], ("INSTANCE_NUMBER", "0".to_string()));
        assert_eq!(vars[4], ("APP_HOME", "/tmp/s/copy".to_string()));
    }
}
