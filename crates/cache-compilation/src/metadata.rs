//! The values stored with cached workspaces and builds, and the docker image check.
//!
//! Workspace and build metadata is stored as the value of an entry that owns a directory; it is
//! JSON (self-describing, readable in the CLI) inside an envelope that carries a schema version.
//! An envelope of another version, or one that does not decode, is a miss and its entry is
//! removed, never a wrong value.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::error::{CompilationError, Result};
use crate::keys::{BuildInputs, WorkspaceLevel};
use crate::tree::GitHandling;

/// Where a cached workspace came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum WorkspaceOrigin {
    /// Cached by the build after it set the workspace up.
    Build,
    /// An existing workspace the user injected (the original's `workspace add`).
    Injected,
    /// Imported from a directory.
    ImportedDirectory,
    /// Imported from an archive.
    ImportedArchive,
}

/// What is stored about a cached workspace.
///
/// The original's metadata also held the workspace's path (here it is where the cache put the
/// entry's directory: [`crate::CachedWorkspace::path`]), its last access time (read from the
/// store: [`crate::CachedWorkspace::last_accessed`]) and an "auto-detected" flag with its source
/// (here [`WorkspaceMetadata::origin`] and [`WorkspaceMetadata::source`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkspaceMetadata {
    /// The repository (`zmkfirmware/zmk`).
    pub repository: String,
    /// The branch, for a branch-level workspace.
    pub branch: Option<String>,
    /// The level it is cached at.
    pub level: WorkspaceLevel,
    /// When it was stored (by the cache's clock).
    #[serde(with = "millis")]
    pub created: SystemTime,
    /// How it got into the cache.
    pub origin: WorkspaceOrigin,
    /// The directory or archive it was copied from, as text.
    pub source: Option<String>,
    /// Which of `zmk`, `zephyr`, `modules`, `.west` it holds.
    pub components: Vec<String>,
    /// Whether its `.git` directories were kept.
    pub git: GitHandling,
    /// Files and symlinks in it.
    pub files: u64,
    /// Bytes of file content in it.
    pub size_bytes: u64,
    /// Caller-supplied details.
    pub details: WorkspaceDetails,
}

/// Details a caller may record with a workspace. All optional.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkspaceDetails {
    /// The commit the workspace's `zmk` is at.
    pub commit: Option<String>,
    /// Content hash of the keymap the workspace was set up for.
    pub keymap_hash: Option<String>,
    /// Content hash of the config the workspace was set up for.
    pub config_hash: Option<String>,
    /// The build that set it up.
    pub build_id: Option<String>,
    /// The keyboard/firmware profile it was set up for.
    pub build_profile: Option<String>,
    /// Free text.
    pub notes: Option<String>,
}

/// One firmware artifact of a cached build.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BuildArtifact {
    /// Its path relative to the build directory, `/`-separated (`zephyr/zmk.uf2`).
    pub path: String,
    /// Its size in bytes.
    pub size_bytes: u64,
}

/// What is stored about a cached build.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BuildMetadata {
    /// What the build was made from (its key).
    pub inputs: BuildInputs,
    /// Its artifacts, in path order.
    pub artifacts: Vec<BuildArtifact>,
    /// When it was stored (by the cache's clock).
    #[serde(with = "millis")]
    pub created: SystemTime,
    /// The build directory it was copied from, as text: `None` in what
    /// [`crate::BuildService::store`] records. **Decision:** dropped, not kept under a
    /// machine-local key: builds are shared through the remote tier and a path on one machine
    /// says nothing on another, and it was never read back (a build is found by its inputs).
    /// The field stays so that builds stored by earlier versions still decode.
    pub source: Option<String>,
    /// Bytes of all artifacts.
    pub size_bytes: u64,
}

/// The cached result of checking whether a docker image is available locally.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DockerImageCheck {
    /// The image (`zmkfirmware/zmk-build-arm:stable`).
    pub image: String,
    /// Whether it was available.
    pub available: bool,
    /// When it was checked (by the cache's clock).
    #[serde(with = "millis")]
    pub checked_at: SystemTime,
}

/// The schema version of stored workspace and build metadata. Bump when either changes shape.
const METADATA_SCHEMA: u32 = 1;

#[derive(Serialize)]
struct EnvelopeOut<'a, T> {
    schema: u32,
    value: &'a T,
}

#[derive(Deserialize)]
struct EnvelopeIn<T> {
    schema: u32,
    value: T,
}

/// `value` as stored: JSON in a versioned envelope.
pub(crate) fn encode<T: Serialize>(value: &T, what: impl FnOnce() -> String) -> Result<Vec<u8>> {
    serde_json::to_vec(&EnvelopeOut {
        schema: METADATA_SCHEMA,
        value,
    })
    .map_err(|source| CompilationError::Metadata {
        what: what(),
        source,
    })
}

/// A stored value, or why it cannot be used.
pub(crate) fn decode<T: DeserializeOwned>(bytes: &[u8]) -> std::result::Result<T, String> {
    let envelope: EnvelopeIn<T> =
        serde_json::from_slice(bytes).map_err(|err| format!("metadata does not decode: {err}"))?;
    if envelope.schema != METADATA_SCHEMA {
        return Err(format!(
            "metadata has schema {}, this version reads {METADATA_SCHEMA}",
            envelope.schema
        ));
    }
    Ok(envelope.value)
}

/// A time from a clock's milliseconds since the Unix epoch.
pub(crate) fn time_from_ms(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms)
}

/// Milliseconds since the Unix epoch of a time (0 before it).
pub(crate) fn ms_from_time(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH).map_or(0, |elapsed| {
        u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX)
    })
}

/// Serde for a time as whole milliseconds since the Unix epoch.
mod millis {
    use std::time::SystemTime;

    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(
        time: &SystemTime,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        serializer.serialize_u64(super::ms_from_time(*time))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<SystemTime, D::Error> {
        Ok(super::time_from_ms(u64::deserialize(deserializer)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_round_trips_and_refuses_other_schemas() {
        let details = WorkspaceDetails {
            commit: Some("abc".to_owned()),
            ..WorkspaceDetails::default()
        };
        let bytes = encode(&details, || "details".to_owned()).unwrap();
        assert_eq!(decode::<WorkspaceDetails>(&bytes).unwrap(), details);

        let other = br#"{"schema":99,"value":{}}"#;
        let err = decode::<WorkspaceDetails>(other).unwrap_err();
        assert!(err.contains("schema 99"), "{err}");
        assert!(decode::<WorkspaceDetails>(b"not json").is_err());
    }

    #[test]
    fn times_are_whole_milliseconds() {
        let time = time_from_ms(1_767_225_600_123);
        assert_eq!(ms_from_time(time), 1_767_225_600_123);
        assert_eq!(ms_from_time(UNIX_EPOCH - Duration::from_secs(1)), 0);
    }
}
