//! The keys of the `compilation` tag: one readable prefix per kind, then full-width hashes.
//!
//! | kind | key |
//! |---|---|
//! | workspace, repository level | `workspace:repo:<R>` |
//! | workspace, repository + branch level | `workspace:branch:<R>:<B>` |
//! | build artifacts | `build:<H>` |
//! | docker image check (`DockerImageKey`, in `docker.rs`) | `docker-image:<H>` |
//!
//! `<R>`, `<B>`, `<H>` are [`cache_core::keys::from_parts`] hashes (blake3, 64 hex digits) over
//! the domain, the kind and the identifying parts, so two different inputs never share a key
//! (the original joined parts after replacing `/` by `_`: `a/b` and `a_b` collided). The prefix
//! lets a service find its entries among the tag's `keys()`, and lets a person reading the CLI
//! tell them apart. A branch key starts with its repository's hash, so every workspace of a
//! repository, at both levels, is found by prefix without reading any value (what deleting a
//! repository needs: the original's delete never reached repo+branch entries, its defect 11).
//! Changing any of this orphans stored entries: the golden values are tested.

use cache_core::keys::from_parts;
use serde::{Deserialize, Serialize};

use crate::error::{CompilationError, Result};

/// The tag every key of this crate lives in.
pub const COMPILATION_TAG: &str = "compilation";

/// Prefix of every workspace key, at both levels.
pub const WORKSPACE_KEY_PREFIX: &str = "workspace:";
/// Prefix of every build key.
pub const BUILD_KEY_PREFIX: &str = "build:";
/// Prefix of every docker image check key.
pub const DOCKER_IMAGE_KEY_PREFIX: &str = "docker-image:";

const REPOSITORY_LEVEL_PREFIX: &str = "workspace:repo:";
const BRANCH_LEVEL_PREFIX: &str = "workspace:branch:";
pub(crate) const DOMAIN: &str = "compilation";
/// Longest repository, branch or image name accepted, in bytes.
const MAX_NAME_BYTES: usize = 1024;

/// The level a workspace is cached at, which decides its time to live.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum WorkspaceLevel {
    /// Cached for a repository, whatever the branch:
    /// [`ttl::WORKSPACE_BASE`](crate::ttl::WORKSPACE_BASE) (30 days).
    Repository,
    /// Cached for one branch of a repository:
    /// [`ttl::WORKSPACE_BRANCH`](crate::ttl::WORKSPACE_BRANCH) (1 day).
    RepositoryBranch,
}

/// Which workspace: a repository (`zmkfirmware/zmk`), and optionally one of its branches.
///
/// Both are checked when built: not empty, no control characters, at most 1 KiB.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct WorkspaceId {
    repository: String,
    branch: Option<String>,
}

impl WorkspaceId {
    /// The repository-level workspace of `repository`.
    pub fn repository(repository: &str) -> Result<WorkspaceId> {
        WorkspaceId::new(repository, None)
    }

    /// The workspace of `branch` of `repository`.
    pub fn branch(repository: &str, branch: &str) -> Result<WorkspaceId> {
        WorkspaceId::new(repository, Some(branch))
    }

    /// A workspace at the repository level (`branch` `None`) or the branch level.
    pub fn new(repository: &str, branch: Option<&str>) -> Result<WorkspaceId> {
        check_name("repository", repository)?;
        if let Some(branch) = branch {
            check_name("branch", branch)?;
        }
        Ok(WorkspaceId {
            repository: repository.to_owned(),
            branch: branch.map(str::to_owned),
        })
    }

    /// The repository.
    pub fn repository_name(&self) -> &str {
        &self.repository
    }

    /// The branch, for a branch-level workspace.
    pub fn branch_name(&self) -> Option<&str> {
        self.branch.as_deref()
    }

    /// The level this workspace is cached at.
    pub fn level(&self) -> WorkspaceLevel {
        match self.branch {
            None => WorkspaceLevel::Repository,
            Some(_) => WorkspaceLevel::RepositoryBranch,
        }
    }

    /// The repository-level workspace of the same repository.
    pub fn repository_level(&self) -> WorkspaceId {
        WorkspaceId {
            repository: self.repository.clone(),
            branch: None,
        }
    }

    /// The key bytes of this workspace.
    pub fn key_bytes(&self) -> Vec<u8> {
        let repository = repository_hash(&self.repository);
        match &self.branch {
            None => format!("{REPOSITORY_LEVEL_PREFIX}{repository}").into_bytes(),
            Some(branch) => {
                let branch = from_parts([DOMAIN, "workspace-branch", &self.repository, branch]);
                format!("{BRANCH_LEVEL_PREFIX}{repository}:{branch}").into_bytes()
            }
        }
    }
}

fn repository_hash(repository: &str) -> String {
    from_parts([DOMAIN, "workspace-repository", repository])
}

/// The keys of every workspace of `repository` start with one of these (the repository level's
/// key is the first one exactly).
pub(crate) fn repository_key_prefixes(repository: &str) -> [Vec<u8>; 2] {
    let repository = repository_hash(repository);
    [
        format!("{REPOSITORY_LEVEL_PREFIX}{repository}").into_bytes(),
        format!("{BRANCH_LEVEL_PREFIX}{repository}:").into_bytes(),
    ]
}

pub(crate) fn check_name(what: &'static str, value: &str) -> Result<()> {
    let reason = if value.is_empty() {
        "it is empty"
    } else if value.len() > MAX_NAME_BYTES {
        "it is longer than 1024 bytes"
    } else if value.chars().any(char::is_control) {
        "it contains a control character"
    } else {
        return Ok(());
    };
    Err(CompilationError::InvalidInput {
        what,
        reason: format!("{reason}: {:?}", value.chars().take(80).collect::<String>()),
    })
}

/// What a firmware build was made from: the build key's parts.
///
/// `keymap_hash` and `config_hash` are content hashes of the keymap and `.conf` files
/// ([`BuildInputs::from_files`] computes them with [`cache_core::keys::from_file`]); `board`
/// and `shield` tell builds of the same files for different targets apart. Every field is part
/// of the key, and `None` differs from `Some("")`.
///
/// **Pinned:** `commit` (the full commit id the branch resolved to when the firmware was
/// built) and `toolchain` (what identifies the build environment: the docker image's digest,
/// `zmkfirmware/zmk-build-arm@sha256:…`) are part of the key and required
/// ([`BuildInputs::pinned`]; [`BuildInputs::validate`] refuses inputs without them), so a build
/// cached for a branch is never served after the branch has moved or the toolchain changed.
/// The branch stays in the key for listing and for telling the user what was built.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct BuildInputs {
    /// The ZMK repository built (`zmkfirmware/zmk`).
    pub repository: String,
    /// Its branch.
    pub branch: String,
    /// The full commit id (40 or 64 hex digits) `branch` resolved to for this build.
    #[serde(default)]
    pub commit: String,
    /// What identifies the toolchain the build ran in: the docker image digest
    /// (`zmkfirmware/zmk-build-arm@sha256:…`), or another exact identity of a local toolchain.
    #[serde(default)]
    pub toolchain: String,
    /// Content hash of the keymap file.
    pub keymap_hash: String,
    /// Content hash of the config (`.conf`) file.
    pub config_hash: String,
    /// The board built for, if the build names one (`glove80_lh`).
    pub board: Option<String>,
    /// The shield built for, if any.
    pub shield: Option<String>,
}

impl BuildInputs {
    /// Inputs from already computed content hashes, with no board or shield, not yet pinned:
    /// add the commit and toolchain with [`BuildInputs::pinned`] before use.
    pub fn new(repository: &str, branch: &str, keymap_hash: &str, config_hash: &str) -> Self {
        BuildInputs {
            repository: repository.to_owned(),
            branch: branch.to_owned(),
            commit: String::new(),
            toolchain: String::new(),
            keymap_hash: keymap_hash.to_owned(),
            config_hash: config_hash.to_owned(),
            board: None,
            shield: None,
        }
    }

    /// Inputs whose hashes are the contents of the `keymap` and `config` files (blake3, as
    /// `b3sum` prints it).
    pub fn from_files(
        repository: &str,
        branch: &str,
        keymap: &std::path::Path,
        config: &std::path::Path,
    ) -> Result<Self> {
        let keymap_hash = cache_core::keys::from_file(keymap)?;
        let config_hash = cache_core::keys::from_file(config)?;
        Ok(BuildInputs::new(
            repository,
            branch,
            &keymap_hash,
            &config_hash,
        ))
    }

    /// The same inputs pinned to the `commit` the branch resolved to (full hex id) and the
    /// `toolchain` identity (the build image's digest).
    pub fn pinned(mut self, commit: &str, toolchain: &str) -> Self {
        self.commit = commit.to_owned();
        self.toolchain = toolchain.to_owned();
        self
    }

    /// The same inputs for `board`.
    pub fn with_board(mut self, board: &str) -> Self {
        self.board = Some(board.to_owned());
        self
    }

    /// The same inputs for `shield`.
    pub fn with_shield(mut self, shield: &str) -> Self {
        self.shield = Some(shield.to_owned());
        self
    }

    /// Checks the names: repository, branch, toolchain and both hashes must not be empty; no
    /// field may be longer than 1 KiB or hold control characters; the commit must be a full
    /// commit id (40 or 64 hex digits: an abbreviated one could name another commit later).
    pub fn validate(&self) -> Result<()> {
        check_name("repository", &self.repository)?;
        check_name("branch", &self.branch)?;
        let full_commit = matches!(self.commit.len(), 40 | 64)
            && self.commit.bytes().all(|byte| byte.is_ascii_hexdigit());
        if !full_commit {
            return Err(CompilationError::InvalidInput {
                what: "commit",
                reason: format!(
                    "a build is keyed by the full commit id its branch resolved to (40 or 64 hex \
                     digits, BuildInputs::pinned), so that it is never served after the branch \
                     moves; got {:?}",
                    self.commit.chars().take(80).collect::<String>()
                ),
            });
        }
        check_name("toolchain", &self.toolchain)?;
        check_name("keymap hash", &self.keymap_hash)?;
        check_name("config hash", &self.config_hash)?;
        if let Some(board) = &self.board {
            check_name("board", board)?;
        }
        if let Some(shield) = &self.shield {
            check_name("shield", shield)?;
        }
        Ok(())
    }

    /// The key bytes of a build from these inputs.
    pub fn key_bytes(&self) -> Vec<u8> {
        // An optional part is empty when absent and `=` + value when present, so `None` and
        // `Some("")` differ; `from_parts` length-prefixes every part.
        let optional = |value: &Option<String>| match value {
            None => String::new(),
            Some(value) => format!("={value}"),
        };
        let hash = from_parts([
            DOMAIN,
            "build",
            &self.repository,
            &self.branch,
            &self.commit,
            &self.toolchain,
            &self.keymap_hash,
            &self.config_hash,
            &optional(&self.board),
            &optional(&self.shield),
        ]);
        format!("{BUILD_KEY_PREFIX}{hash}").into_bytes()
    }
}

/// What of the `compilation` tag may go through a remote tier (`cache_core::SharingRule`; a
/// program passes these to `Coordinator::with_sharing`): firmware builds, which are functions of
/// their pinned inputs and carry no local path ([`crate::BuildMetadata::source`] is not
/// recorded). Workspaces are large, hold what their user checked out, and stay on the machine
/// unless a program opts in with a rule of its own (the longest prefix decides); whether a
/// docker image is present is a fact about this machine.
pub const REMOTE_SHARING: &[cache_core::SharingRule] = &[
    cache_core::SharingRule {
        tag: COMPILATION_TAG,
        key_prefix: BUILD_KEY_PREFIX,
        share: true,
        reason: "a build is a function of its pinned inputs, the same on every machine",
    },
    cache_core::SharingRule {
        tag: COMPILATION_TAG,
        key_prefix: WORKSPACE_KEY_PREFIX,
        share: false,
        reason: "a workspace is large and its user's checkout: opt-in",
    },
    cache_core::SharingRule {
        tag: COMPILATION_TAG,
        key_prefix: DOCKER_IMAGE_KEY_PREFIX,
        share: false,
        reason: "whether an image is present is a fact about this machine",
    },
];
