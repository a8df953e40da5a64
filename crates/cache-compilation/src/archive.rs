//! Workspace archives: writing a listed tree as tar.gz, tar or zip, and unpacking one safely.
//!
//! Unpacking is two passes over the archive. The first reads every entry's header (and a
//! symlink's target) and refuses the whole archive if any entry could land outside the target:
//! an absolute name, a `..` component, a Windows drive, a NUL or backslash in a name, a hard
//! link, a device or fifo, an entry below a symlink of the archive, a name that appears twice,
//! or a symlink whose target, resolved through the archive's own symlinks, leaves the target
//! directory. Only then does the second pass write anything, creating symlinks last. Since the
//! target starts empty and holds only what the archive says, the first pass sees every symlink
//! that can exist there, so its resolution is exact.
//!
//! One file of about 1 100 lines (with its tests), on purpose: writing and unpacking share the entry model and its
//! checks (names, kinds, modes), and three formats go through both; split apart, every check
//! would be read in two places.

use std::collections::{HashMap, HashSet};
use std::ffi::OsString;
use std::fs::{self, File};
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::{Component, Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::error::{CompilationError, Result};
use crate::progress::Tracker;
use crate::tree::{self, Node, NodeKind, Tree, link_stays_inside};

/// Longest symlink target read from an archive; longer ones are refused.
const MAX_LINK_TARGET_BYTES: u64 = 4096;
/// The mode written for a node whose mode is unknown (none is, once listed on unix).
const DEFAULT_FILE_MODE: u32 = 0o644;
const DEFAULT_DIR_MODE: u32 = 0o755;

/// The archive formats export writes and import reads.
///
/// The original also wrote `tar.bz2` and `tar.xz`; they are left out to keep the dependencies
/// to the pure-Rust deflate that tar.gz and zip share.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum ArchiveFormat {
    /// A gzip-compressed tar archive (`.tar.gz`, `.tgz`).
    TarGz,
    /// An uncompressed tar archive (`.tar`).
    Tar,
    /// A zip archive, deflate-compressed (`.zip`).
    Zip,
}

impl ArchiveFormat {
    /// The format a file name says, by its ending in any case (`.tar.gz`, `.tgz`, `.tar`,
    /// `.zip`); `None` for anything else.
    pub fn from_path(path: &Path) -> Option<ArchiveFormat> {
        let name = path.file_name()?.to_str()?.to_ascii_lowercase();
        if name.ends_with(".tar.gz") || name.ends_with(".tgz") {
            Some(ArchiveFormat::TarGz)
        } else if name.ends_with(".tar") {
            Some(ArchiveFormat::Tar)
        } else if name.ends_with(".zip") {
            Some(ArchiveFormat::Zip)
        } else {
            None
        }
    }

    /// The usual file name ending, without the leading dot.
    pub fn extension(self) -> &'static str {
        match self {
            ArchiveFormat::TarGz => "tar.gz",
            ArchiveFormat::Tar => "tar",
            ArchiveFormat::Zip => "zip",
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Writing

/// Writes the listed `tree` of `source` as an archive at `output` (replacing it), through a temp
/// file beside it that is renamed into place only once complete and synced. Returns the
/// archive's size in bytes.
pub(crate) fn write_archive(
    source: &Path,
    tree: &Tree,
    output: &Path,
    format: ArchiveFormat,
    tracker: &mut Tracker<'_>,
) -> Result<u64> {
    let (pending, file) = PendingOutput::create_beside(output)?;
    let writer = BufWriter::new(file);
    let archive_error = |message: String| CompilationError::Archive {
        path: output.to_owned(),
        message,
    };
    let writer = match format {
        ArchiveFormat::TarGz => {
            let encoder = flate2::write::GzEncoder::new(writer, flate2::Compression::default());
            let encoder = write_tar(encoder, source, tree, output, tracker)?;
            encoder
                .finish()
                .map_err(|source| CompilationError::io("compressing", output, source))?
        }
        ArchiveFormat::Tar => write_tar(writer, source, tree, output, tracker)?,
        ArchiveFormat::Zip => {
            write_zip(writer, source, tree, output, tracker).map_err(|err| match err {
                ZipWriteError::Ours(err) => err,
                ZipWriteError::Zip(err) => archive_error(err.to_string()),
            })?
        }
    };
    let file = writer
        .into_inner()
        .map_err(|err| CompilationError::io("writing", &pending.temp, err.into_error()))?;
    file.sync_all()
        .map_err(|source| CompilationError::io("syncing", &pending.temp, source))?;
    let len = file
        .metadata()
        .map_err(|source| CompilationError::io("reading metadata of", &pending.temp, source))?
        .len();
    pending.persist(output)?;
    Ok(len)
}

fn write_tar<W: Write>(
    writer: W,
    source: &Path,
    tree: &Tree,
    output: &Path,
    tracker: &mut Tracker<'_>,
) -> Result<W> {
    let mut builder = tar::Builder::new(writer);
    let write_error = |source: io::Error| CompilationError::io("writing archive", output, source);
    for node in &tree.nodes {
        let mut header = tar::Header::new_gnu();
        // The file's own time and mode, so that an import gives back what was exported (git
        // compares modification times); one tree still always gives the same bytes.
        header.set_mtime(unix_seconds(node.mtime));
        header.set_uid(0);
        header.set_gid(0);
        match &node.kind {
            NodeKind::Dir => {
                header.set_entry_type(tar::EntryType::Directory);
                header.set_mode(node.mode.unwrap_or(DEFAULT_DIR_MODE));
                header.set_size(0);
                builder
                    .append_data(&mut header, &node.relative, io::empty())
                    .map_err(write_error)?;
            }
            NodeKind::File { len, .. } => {
                let path = source.join(&node.relative);
                let file = open_unchanged(&path, *len)?;
                header.set_entry_type(tar::EntryType::Regular);
                header.set_mode(node.mode.unwrap_or(DEFAULT_FILE_MODE));
                header.set_size(*len);
                builder
                    .append_data(
                        &mut header,
                        &node.relative,
                        tracker.reading(file.take(*len)),
                    )
                    .map_err(write_error)?;
                tracker.file_done(*len);
            }
            NodeKind::HardLink { to } => {
                header.set_entry_type(tar::EntryType::Link);
                header.set_mode(node.mode.unwrap_or(DEFAULT_FILE_MODE));
                header.set_size(0);
                builder
                    .append_link(&mut header, &node.relative, to)
                    .map_err(write_error)?;
                tracker.file_done(0);
            }
            NodeKind::Symlink { target } => {
                header.set_entry_type(tar::EntryType::Symlink);
                header.set_mode(0o777);
                header.set_size(0);
                builder
                    .append_link(&mut header, &node.relative, target)
                    .map_err(write_error)?;
                tracker.file_done(0);
            }
        }
    }
    builder.into_inner().map_err(write_error)
}

enum ZipWriteError {
    Ours(CompilationError),
    Zip(zip::result::ZipError),
}

impl From<CompilationError> for ZipWriteError {
    fn from(err: CompilationError) -> Self {
        ZipWriteError::Ours(err)
    }
}

impl From<zip::result::ZipError> for ZipWriteError {
    fn from(err: zip::result::ZipError) -> Self {
        ZipWriteError::Zip(err)
    }
}

fn write_zip<W: Write + io::Seek>(
    writer: W,
    source: &Path,
    tree: &Tree,
    output: &Path,
    tracker: &mut Tracker<'_>,
) -> std::result::Result<W, ZipWriteError> {
    use zip::write::SimpleFileOptions;

    let mut zip = zip::ZipWriter::new(writer);
    let base = SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
    // The modification time goes in the extended timestamp field (whole seconds, UTC, as unzip
    // and Info-ZIP read it) and in zip's own DOS time (two-second steps, here in UTC, for tools
    // that read only that one; outside 1980..2107 it keeps zip's default).
    let options_for = |node: &Node, default_mode: u32| {
        let seconds = unix_seconds(node.mtime);
        let mut options = base.unix_permissions(node.mode.unwrap_or(default_mode));
        if let Some(dos) = dos_time(seconds) {
            options = options.last_modified_time(dos);
        }
        options.with_extended_timestamp(
            Some(u32::try_from(seconds).unwrap_or(u32::MAX)),
            None,
            None,
        )
    };
    let name_of = |relative: &Path| {
        tree::slash_path(relative).ok_or_else(|| CompilationError::Archive {
            path: output.to_owned(),
            message: format!(
                "{} is not valid UTF-8, which zip names must be; export as tar.gz instead",
                relative.display()
            ),
        })
    };
    let mut lens: HashMap<&Path, u64> = HashMap::new();
    for node in &tree.nodes {
        let name = name_of(&node.relative)?;
        // Zip has no hard links: a second name of a file is written as a file of its own.
        let (content, len) = match &node.kind {
            NodeKind::File { len, .. } => (&node.relative, *len),
            NodeKind::HardLink { to } => (to, lens.get(to.as_path()).copied().unwrap_or(0)),
            _ => (&node.relative, 0),
        };
        match &node.kind {
            NodeKind::Dir => zip.add_directory(name, options_for(node, DEFAULT_DIR_MODE)?)?,
            NodeKind::File { .. } | NodeKind::HardLink { .. } => {
                lens.insert(&node.relative, len);
                let path = source.join(content);
                let file = open_unchanged(&path, len)?;
                zip.start_file(
                    name,
                    options_for(node, DEFAULT_FILE_MODE)?.large_file(len >= u64::from(u32::MAX)),
                )?;
                // A second name's content is counted once, under its first name.
                let copied = if matches!(node.kind, NodeKind::File { .. }) {
                    io::copy(&mut tracker.reading(file.take(len)), &mut zip)
                } else {
                    io::copy(&mut file.take(len), &mut zip)
                }
                .map_err(|source| CompilationError::io("reading", &path, source))?;
                if copied != len {
                    return Err(changed_while_reading(&path).into());
                }
                let counted = if matches!(node.kind, NodeKind::File { .. }) {
                    len
                } else {
                    0
                };
                tracker.file_done(counted);
            }
            NodeKind::Symlink { target } => {
                let target = target.to_str().ok_or_else(|| CompilationError::Archive {
                    path: output.to_owned(),
                    message: format!("the target of symlink {name} is not valid UTF-8"),
                })?;
                zip.add_symlink(name, target, options_for(node, 0o777)?)?;
                tracker.file_done(0);
            }
        }
    }
    Ok(zip.finish()?)
}

/// Opens a listed file, refusing it if it is no longer a regular file of the listed length.
fn open_unchanged(path: &Path, len: u64) -> Result<BufReader<File>> {
    let meta = fs::symlink_metadata(path)
        .map_err(|source| CompilationError::io("reading", path, source))?;
    if !meta.file_type().is_file() || meta.len() != len {
        return Err(changed_while_reading(path));
    }
    let file = File::open(path).map_err(|source| CompilationError::io("opening", path, source))?;
    Ok(BufReader::new(file))
}

/// Whole seconds since 1970 (0 for an unknown time or one before 1970: tar and zip store
/// unsigned times).
fn unix_seconds(time: Option<SystemTime>) -> u64 {
    time.and_then(|time| time.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |since| since.as_secs())
}

/// `seconds` since 1970 as a zip DOS time (UTC); `None` outside what it can hold.
fn dos_time(seconds: u64) -> Option<zip::DateTime> {
    // Days to a civil date (Howard Hinnant's `civil_from_days`).
    let days = i64::try_from(seconds / 86_400).ok()?;
    let of_day = seconds % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z - era * 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * shifted_month + 2) / 5 + 1;
    let month = if shifted_month < 10 {
        shifted_month + 3
    } else {
        shifted_month - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    zip::DateTime::from_date_and_time(
        u16::try_from(year).ok()?,
        u8::try_from(month).ok()?,
        u8::try_from(day).ok()?,
        u8::try_from(of_day / 3600).ok()?,
        u8::try_from(of_day % 3600 / 60).ok()?,
        u8::try_from(of_day % 60).ok()?,
    )
    .ok()
}

fn changed_while_reading(path: &Path) -> CompilationError {
    CompilationError::io(
        "reading",
        path,
        io::Error::other("the file changed while it was being archived"),
    )
}

/// How many names [`PendingOutput::create_beside`] tries before it gives up.
const TEMP_NAME_ATTEMPTS: u32 = 100;

/// A temp file beside an output, removed if dropped before [`PendingOutput::persist`].
struct PendingOutput {
    temp: PathBuf,
    persisted: bool,
}

impl PendingOutput {
    /// Creates `.NAME.partial-<pid>-<n>` beside `output` exclusively (`O_CREAT | O_EXCL`, which
    /// never follows a symlink), trying the next `n` while the name is taken: a file or a
    /// symlink planted under a name is never written through. The directory may be shared (a
    /// download folder, `/tmp`), so the names are assumed known to others.
    fn create_beside(output: &Path) -> Result<(PendingOutput, File)> {
        let name = output
            .file_name()
            .ok_or_else(|| CompilationError::InvalidInput {
                what: "archive path",
                reason: format!("{} does not name a file", output.display()),
            })?;
        for attempt in 0..TEMP_NAME_ATTEMPTS {
            let mut temp_name = OsString::from(".");
            temp_name.push(name);
            temp_name.push(format!(".partial-{}-{attempt}", std::process::id()));
            let temp = output.with_file_name(temp_name);
            match File::options().write(true).create_new(true).open(&temp) {
                Ok(file) => {
                    let pending = PendingOutput {
                        temp,
                        persisted: false,
                    };
                    return Ok((pending, file));
                }
                Err(err) if err.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(source) => return Err(CompilationError::io("creating", &temp, source)),
            }
        }
        Err(CompilationError::io(
            "creating a temp file beside",
            output,
            io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!(
                    "all {TEMP_NAME_ATTEMPTS} names .{}.partial-{}-<n> are taken (by files or \
                     symlinks someone else put there); nothing was written",
                    name.to_string_lossy(),
                    std::process::id()
                ),
            ),
        ))
    }

    fn persist(mut self, output: &Path) -> Result<()> {
        fs::rename(&self.temp, output).map_err(|source| {
            CompilationError::io("moving archive into place at", output, source)
        })?;
        self.persisted = true;
        Ok(())
    }
}

impl Drop for PendingOutput {
    fn drop(&mut self) {
        if !self.persisted {
            let _ = fs::remove_file(&self.temp);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Reading

/// What the first pass decided for one entry of the archive, by its position.
#[derive(Clone, Debug)]
struct Planned {
    /// Where it goes, relative to the target (after any top-level directory is stripped).
    path: PathBuf,
    kind: NodeKind,
    /// Permission bits as the archive gives them (`0o777` kept), if it gives any.
    mode: Option<u32>,
    /// Modification time as the archive gives it, if it does.
    mtime: Option<SystemTime>,
}

impl Planned {
    fn node(&self) -> Node {
        Node {
            relative: self.path.clone(),
            kind: self.kind.clone(),
            mode: self.mode,
            mtime: self.mtime,
            identity: None,
        }
    }
}

/// The checked plan of an extraction: per archive entry, in archive order, what to write
/// (`None`: skipped).
#[derive(Debug)]
pub(crate) struct ExtractionPlan {
    archive: PathBuf,
    format: ArchiveFormat,
    entries: Vec<Option<Planned>>,
    /// Files and symlinks to write.
    pub(crate) file_count: u64,
    /// Bytes of file content to write.
    pub(crate) byte_count: u64,
}

impl ExtractionPlan {
    /// Whether the plan writes anything at or under `first` (a top-level name).
    pub(crate) fn writes_under(&self, first: &str) -> bool {
        self.entries.iter().flatten().any(|planned| {
            matches!(planned.path.components().next(), Some(Component::Normal(name)) if name == first)
        })
    }
}

/// One entry as the first pass read it, before filtering.
struct RawEntry {
    /// The name as stored, for messages.
    name: String,
    /// The validated relative path; `None` for the archive's root (`./`) and headers that carry
    /// no file (pax global headers).
    path: Option<PathBuf>,
    /// A hard link's target is its first name, as stored in the archive (checked like a name).
    kind: NodeKind,
    mode: Option<u32>,
    mtime: Option<SystemTime>,
}

/// Reads `archive` and checks every entry (see the module docs). Entries under a single
/// top-level directory are taken from inside it when `anchor` is not at the top but is inside
/// that directory (an archive made of a folder holding the workspace). `keep(path, is_dir)`
/// chooses which entries are written.
pub(crate) fn plan_extraction(
    archive: &Path,
    format: ArchiveFormat,
    anchor: &str,
    keep: &dyn Fn(&Path, bool) -> bool,
    allow_escaping_symlinks: bool,
) -> Result<ExtractionPlan> {
    let raw = match format {
        ArchiveFormat::TarGz | ArchiveFormat::Tar => read_tar_entries(archive, format)?,
        ArchiveFormat::Zip => read_zip_entries(archive)?,
    };
    let unsafe_entry = |name: &str, reason: String| CompilationError::UnsafeArchiveEntry {
        archive: archive.to_owned(),
        entry: name.to_owned(),
        reason,
    };
    let strip = top_level_to_strip(&raw, anchor);
    let stripped = |path: &Path| -> Option<PathBuf> {
        match &strip {
            Some(top) => path.strip_prefix(top).ok().map(Path::to_owned),
            None => Some(path.to_owned()),
        }
    };
    let mut entries: Vec<Option<Planned>> = Vec::with_capacity(raw.len());
    // Regular files met so far, by their (stripped) path: the entry that holds them, and where
    // they are written (their own path, or the first kept hard link's when they are not kept).
    let mut files: HashMap<PathBuf, (usize, Option<PathBuf>)> = HashMap::new();
    for (index, entry) in raw.iter().enumerate() {
        let Some(path) = entry.path.as_deref().and_then(stripped) else {
            entries.push(None);
            continue;
        };
        let is_dir = matches!(entry.kind, NodeKind::Dir);
        let kept = !path.as_os_str().is_empty() && keep(&path, is_dir);
        let mut kind = entry.kind.clone();
        if let NodeKind::HardLink { to } = &entry.kind {
            // A second name of a file of the archive: linked to it, never to anything outside.
            let first = safe_relative(to)
                .ok()
                .flatten()
                .and_then(|to| stripped(&to))
                .and_then(|to| files.get(&to).cloned().map(|found| (to, found)));
            let Some((first_path, (first_index, written_at))) = first else {
                return Err(unsafe_entry(
                    &entry.name,
                    format!(
                        "a hard link to {}, which is not a file earlier in the archive",
                        to.display()
                    ),
                ));
            };
            if !kept {
                entries.push(None);
                continue;
            }
            match written_at {
                Some(written_at) => kind = NodeKind::HardLink { to: written_at },
                None => {
                    // Its first name is not kept (a `.git` left out, say): the content is
                    // written here, from the first name's entry, and later links link here.
                    let first_kind = raw[first_index].kind.clone();
                    entries[first_index] = Some(Planned {
                        path: path.clone(),
                        kind: first_kind,
                        mode: raw[first_index].mode,
                        mtime: raw[first_index].mtime,
                    });
                    files.insert(first_path, (first_index, Some(path)));
                    entries.push(None);
                    continue;
                }
            }
        }
        if let NodeKind::File { .. } = entry.kind {
            files.insert(path.clone(), (index, kept.then(|| path.clone())));
        }
        entries.push(kept.then_some(Planned {
            path,
            kind,
            mode: entry.mode,
            mtime: entry.mtime,
        }));
    }

    // Symlinks of the archive, by where they go: the whole set that will exist in the target.
    let links: HashMap<PathBuf, PathBuf> = entries
        .iter()
        .flatten()
        .filter_map(|planned| match &planned.kind {
            NodeKind::Symlink { target } => Some((planned.path.clone(), target.clone())),
            _ => None,
        })
        .collect();
    let mut seen_dirs: HashSet<&Path> = HashSet::new();
    let mut seen_others: HashSet<&Path> = HashSet::new();
    let (mut file_count, mut byte_count) = (0u64, 0u64);
    for (planned, entry) in entries.iter().zip(&raw) {
        let Some(planned) = planned else { continue };
        let path = planned.path.as_path();
        if let Some(link) = path
            .ancestors()
            .skip(1)
            .find(|ancestor| links.contains_key(*ancestor))
        {
            return Err(unsafe_entry(
                &entry.name,
                format!("it lies below {}, a symlink of the archive", link.display()),
            ));
        }
        let fresh = match planned.kind {
            NodeKind::Dir => {
                !seen_others.contains(path) && {
                    seen_dirs.insert(path);
                    true
                }
            }
            _ => !seen_dirs.contains(path) && seen_others.insert(path),
        };
        if !fresh {
            return Err(unsafe_entry(
                &entry.name,
                "the name appears twice".to_owned(),
            ));
        }
        match &planned.kind {
            NodeKind::Dir => {}
            NodeKind::File { len, .. } => {
                file_count += 1;
                byte_count = byte_count.saturating_add(*len);
            }
            NodeKind::HardLink { .. } => file_count += 1,
            NodeKind::Symlink { target } => {
                if !allow_escaping_symlinks {
                    link_stays_inside(&links, path, target)
                        .map_err(|reason| unsafe_entry(&entry.name, reason))?;
                }
                file_count += 1;
            }
        }
    }
    Ok(ExtractionPlan {
        archive: archive.to_owned(),
        format,
        entries,
        file_count,
        byte_count,
    })
}

/// The single top-level directory to take entries from, when `anchor` is not at the top of the
/// archive but inside that directory.
fn top_level_to_strip(raw: &[RawEntry], anchor: &str) -> Option<PathBuf> {
    let firsts: HashSet<&std::ffi::OsStr> = raw
        .iter()
        .filter_map(|entry| entry.path.as_ref()?.components().next())
        .map(Component::as_os_str)
        .collect();
    if firsts.contains(std::ffi::OsStr::new(anchor)) || firsts.len() != 1 {
        return None;
    }
    let top = PathBuf::from(firsts.into_iter().next()?);
    let anchor_inside = top.join(anchor);
    raw.iter()
        .filter_map(|entry| entry.path.as_ref())
        .any(|path| path.starts_with(&anchor_inside))
        .then_some(top)
}

/// A name from an archive as a relative path of normal components; `Ok(None)` for the root
/// itself (`./`); an error saying why for anything that could leave the target.
fn safe_relative(path: &Path) -> std::result::Result<Option<PathBuf>, String> {
    let mut relative = PathBuf::new();
    for component in path.components() {
        match component {
            Component::Normal(part) => {
                let text = part.to_string_lossy();
                if text.contains('\\') {
                    return Err("the name contains a backslash".to_owned());
                }
                if relative.as_os_str().is_empty() && is_windows_drive(&text) {
                    return Err("the name starts with a windows drive".to_owned());
                }
                relative.push(part);
            }
            Component::CurDir => {}
            Component::ParentDir => return Err("the name climbs out with ..".to_owned()),
            Component::RootDir | Component::Prefix(_) => {
                return Err("the name is an absolute path".to_owned());
            }
        }
    }
    Ok((!relative.as_os_str().is_empty()).then_some(relative))
}

fn is_windows_drive(part: &str) -> bool {
    let bytes = part.as_bytes();
    bytes.len() == 2 && bytes[0].is_ascii_alphabetic() && bytes[1] == b':'
}

/// A zip entry name as a path: `/`-separated, checked for NUL and a leading `/` (which
/// `Path` would also catch) before [`safe_relative`].
fn zip_name_to_path(name: &str) -> std::result::Result<Option<PathBuf>, String> {
    if name.contains('\0') {
        return Err("the name contains a NUL byte".to_owned());
    }
    if name.contains('\\') {
        return Err("the name contains a backslash".to_owned());
    }
    safe_relative(Path::new(name))
}

fn open_archive_file(archive: &Path) -> Result<BufReader<File>> {
    let file = File::open(archive)
        .map_err(|source| CompilationError::io("opening archive", archive, source))?;
    Ok(BufReader::new(file))
}

/// A tar (or tar.gz) archive, opened for reading.
fn open_tar(archive: &Path, format: ArchiveFormat) -> Result<tar::Archive<Box<dyn Read>>> {
    let file = open_archive_file(archive)?;
    let reader: Box<dyn Read> = match format {
        ArchiveFormat::TarGz => Box::new(flate2::read::GzDecoder::new(file)),
        _ => Box::new(file),
    };
    Ok(tar::Archive::new(reader))
}

fn tar_error(archive: &Path, source: io::Error) -> CompilationError {
    CompilationError::Archive {
        path: archive.to_owned(),
        message: source.to_string(),
    }
}

fn read_tar_entries(archive: &Path, format: ArchiveFormat) -> Result<Vec<RawEntry>> {
    let mut tar = open_tar(archive, format)?;
    let mut raw = Vec::new();
    for entry in tar.entries().map_err(|err| tar_error(archive, err))? {
        let entry = entry.map_err(|err| tar_error(archive, err))?;
        let path = entry
            .path()
            .map_err(|err| tar_error(archive, err))?
            .into_owned();
        let name = path.to_string_lossy().into_owned();
        let unsafe_entry = |reason: String| CompilationError::UnsafeArchiveEntry {
            archive: archive.to_owned(),
            entry: name.clone(),
            reason,
        };
        let entry_type = entry.header().entry_type();
        let mode = entry.header().mode().ok().map(|mode| mode & 0o777);
        let mtime = entry
            .header()
            .mtime()
            .ok()
            .and_then(|secs| UNIX_EPOCH.checked_add(Duration::from_secs(secs)));
        let kind = match entry_type {
            tar::EntryType::Regular | tar::EntryType::Continuous => NodeKind::File {
                len: entry.size(),
                links: 1,
            },
            tar::EntryType::Directory => NodeKind::Dir,
            tar::EntryType::Link => {
                let to = entry
                    .link_name()
                    .map_err(|err| tar_error(archive, err))?
                    .ok_or_else(|| unsafe_entry("a hard link without a target".to_owned()))?
                    .into_owned();
                NodeKind::HardLink { to }
            }
            tar::EntryType::Symlink => {
                let target = entry
                    .link_name()
                    .map_err(|err| tar_error(archive, err))?
                    .ok_or_else(|| unsafe_entry("a symlink without a target".to_owned()))?
                    .into_owned();
                NodeKind::Symlink { target }
            }
            // Headers that describe other entries, not files; the tar crate applies the
            // per-entry ones itself.
            tar::EntryType::XGlobalHeader
            | tar::EntryType::XHeader
            | tar::EntryType::GNULongName
            | tar::EntryType::GNULongLink => {
                raw.push(RawEntry {
                    name,
                    path: None,
                    kind: NodeKind::Dir,
                    mode: None,
                    mtime: None,
                });
                continue;
            }
            other => {
                return Err(unsafe_entry(format!(
                    "entries of type {other:?} (devices, fifos, sparse files) are not unpacked"
                )));
            }
        };
        let path = safe_relative(&path).map_err(unsafe_entry)?;
        raw.push(RawEntry {
            name,
            path,
            kind,
            mode,
            mtime,
        });
    }
    Ok(raw)
}

fn zip_error(archive: &Path, err: zip::result::ZipError) -> CompilationError {
    match err {
        zip::result::ZipError::Io(source) => {
            CompilationError::io("reading archive", archive, source)
        }
        other => CompilationError::Archive {
            path: archive.to_owned(),
            message: other.to_string(),
        },
    }
}

fn read_zip_entries(archive: &Path) -> Result<Vec<RawEntry>> {
    let mut zip =
        zip::ZipArchive::new(open_archive_file(archive)?).map_err(|err| zip_error(archive, err))?;
    // The zip crate indexes entries by name, keeping the last of several with one name, so a
    // duplicate never reaches the check in `plan_extraction`: refuse it here, as tar's is.
    if zip.has_duplicate_names() {
        return Err(CompilationError::UnsafeArchiveEntry {
            archive: archive.to_owned(),
            entry: first_repeated_zip_name(archive)
                .unwrap_or_else(|| "(a name of the central directory)".to_owned()),
            reason: "the name appears twice".to_owned(),
        });
    }
    let mut raw = Vec::with_capacity(zip.len());
    for index in 0..zip.len() {
        let file = zip
            .by_index_raw(index)
            .map_err(|err| zip_error(archive, err))?;
        let name = file
            .name()
            .map_err(|err| zip_error(archive, err))?
            .into_owned();
        let unsafe_entry = |reason: String| CompilationError::UnsafeArchiveEntry {
            archive: archive.to_owned(),
            entry: name.clone(),
            reason,
        };
        if file.encrypted() {
            return Err(unsafe_entry(
                "encrypted entries are not unpacked".to_owned(),
            ));
        }
        let path = zip_name_to_path(&name).map_err(unsafe_entry)?;
        let mode = file.unix_mode().map(|mode| mode & 0o777);
        let mtime = file
            .extra_data_fields()
            .find_map(|field| match field {
                zip::extra_fields::ExtraField::ExtendedTimestamp(stamp) => stamp.mod_time(),
                _ => None,
            })
            .and_then(|secs| UNIX_EPOCH.checked_add(Duration::from_secs(secs.into())));
        let kind = if file.is_symlink() {
            drop(file);
            // The target is the entry's content; read it decompressed.
            let file = zip.by_index(index).map_err(|err| zip_error(archive, err))?;
            let mut target = Vec::new();
            file.take(MAX_LINK_TARGET_BYTES + 1)
                .read_to_end(&mut target)
                .map_err(|source| CompilationError::io("reading archive", archive, source))?;
            if target.len() as u64 > MAX_LINK_TARGET_BYTES {
                return Err(unsafe_entry("its symlink target is too long".to_owned()));
            }
            let target = String::from_utf8(target)
                .map_err(|_| unsafe_entry("its symlink target is not valid UTF-8".to_owned()))?;
            if target.contains('\0') {
                return Err(unsafe_entry(
                    "its symlink target contains a NUL byte".to_owned(),
                ));
            }
            NodeKind::Symlink {
                target: PathBuf::from(target),
            }
        } else if file.is_dir() {
            NodeKind::Dir
        } else {
            NodeKind::File {
                len: file.size(),
                links: 1,
            }
        };
        raw.push(RawEntry {
            name,
            path,
            kind,
            mode,
            mtime,
        });
    }
    Ok(raw)
}

/// The first name that appears twice among the archive's entries, read through their local
/// headers (the zip crate's index has only one entry per name); `None` if the local headers show
/// no repeated name or cannot be read that way.
fn first_repeated_zip_name(archive: &Path) -> Option<String> {
    let mut reader = open_archive_file(archive).ok()?;
    let mut seen = HashSet::new();
    while let Ok(Some(file)) = zip::read::read_zipfile_from_stream(&mut reader) {
        let name = file.name().ok()?.into_owned();
        if !seen.insert(name.clone()) {
            return Some(name);
        }
    }
    None
}

/// Writes what `plan` says into `target` (an empty directory), symlinks last. The archive is
/// read again; an entry that no longer matches the plan (the archive changed in between) is an
/// error.
pub(crate) fn extract(
    plan: &ExtractionPlan,
    target: &Path,
    tracker: &mut Tracker<'_>,
) -> Result<()> {
    let archive = plan.archive.as_path();
    let mut links: Vec<&Planned> = Vec::new();
    match plan.format {
        ArchiveFormat::TarGz | ArchiveFormat::Tar => {
            let mut tar = open_tar(archive, plan.format)?;
            let mut entries = tar.entries().map_err(|err| tar_error(archive, err))?;
            for planned in &plan.entries {
                let mut entry = entries
                    .next()
                    .ok_or_else(|| changed_archive(archive))?
                    .map_err(|err| tar_error(archive, err))?;
                let Some(planned) = planned else { continue };
                write_planned(planned, &mut entry, target, archive, tracker, &mut links)?;
            }
        }
        ArchiveFormat::Zip => {
            let mut zip = zip::ZipArchive::new(open_archive_file(archive)?)
                .map_err(|err| zip_error(archive, err))?;
            if zip.len() != plan.entries.len() {
                return Err(changed_archive(archive));
            }
            for (index, planned) in plan.entries.iter().enumerate() {
                let Some(planned) = planned else { continue };
                if matches!(planned.kind, NodeKind::File { .. }) {
                    let mut file = zip.by_index(index).map_err(|err| zip_error(archive, err))?;
                    write_planned(planned, &mut file, target, archive, tracker, &mut links)?;
                } else {
                    write_planned(
                        planned,
                        &mut io::empty(),
                        target,
                        archive,
                        tracker,
                        &mut links,
                    )?;
                }
            }
        }
    }
    for planned in links {
        if let NodeKind::Symlink { target: link } = &planned.kind {
            let at = target.join(&planned.path);
            tree::create_parent(&at)?;
            tree::make_symlink(link, &at)?;
            tree::set_mode_and_time(&at, &planned.node(), true)?;
            tracker.file_done(0);
        }
    }
    // Directories last, deepest first: their times after their content is in, their modes
    // after that (a read-only directory is filled before it becomes read-only).
    let mut dirs: Vec<&Planned> = plan
        .entries
        .iter()
        .flatten()
        .filter(|planned| matches!(planned.kind, NodeKind::Dir))
        .collect();
    dirs.sort_by_key(|planned| std::cmp::Reverse(planned.path.components().count()));
    for planned in dirs {
        tree::set_mode_and_time(&target.join(&planned.path), &planned.node(), false)?;
    }
    Ok(())
}

fn changed_archive(archive: &Path) -> CompilationError {
    CompilationError::Archive {
        path: archive.to_owned(),
        message: "the archive changed while it was being unpacked".to_owned(),
    }
}

fn write_planned<'p>(
    planned: &'p Planned,
    data: &mut dyn Read,
    target: &Path,
    archive: &Path,
    tracker: &mut Tracker<'_>,
    links: &mut Vec<&'p Planned>,
) -> Result<()> {
    let at = target.join(&planned.path);
    match &planned.kind {
        NodeKind::Dir => tree::create_dir_all(&at),
        NodeKind::Symlink { .. } => {
            links.push(planned);
            Ok(())
        }
        NodeKind::HardLink { to } => {
            tree::create_parent(&at)?;
            let first = target.join(to);
            if fs::hard_link(&first, &at).is_err() {
                tree::copy_file(&first, &at)?;
            }
            tracker.file_done(0);
            Ok(())
        }
        NodeKind::File { len, .. } => {
            tree::create_parent(&at)?;
            let file = fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&at)
                .map_err(|source| CompilationError::io("creating", &at, source))?;
            let mut writer = BufWriter::new(file);
            // One byte more than declared, to notice an entry longer than its header says.
            let written = io::copy(
                &mut tracker.reading(data.take(len.saturating_add(1))),
                &mut writer,
            )
            .map_err(|source| CompilationError::io("unpacking archive", archive, source))?;
            if written != *len {
                return Err(CompilationError::Archive {
                    path: archive.to_owned(),
                    message: format!(
                        "entry {} holds {written} bytes, but its header says {len}",
                        planned.path.display()
                    ),
                });
            }
            writer
                .flush()
                .map_err(|source| CompilationError::io("writing", &at, source))?;
            drop(writer);
            tree::set_mode_and_time(&at, &planned.node(), false)?;
            tracker.file_done(*len);
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use rstest::rstest;

    use super::*;

    #[test]
    fn dos_times_are_the_utc_civil_time_in_two_second_steps() {
        let at = |seconds| {
            dos_time(seconds).map(|t| {
                (
                    t.year(),
                    t.month(),
                    t.day(),
                    t.hour(),
                    t.minute(),
                    t.second(),
                )
            })
        };
        // 2001-09-09T01:46:40Z, 2024-02-29T23:59:59Z (leap day; odd seconds round down).
        assert_eq!(at(1_000_000_000), Some((2001, 9, 9, 1, 46, 40)));
        assert_eq!(at(1_709_251_199), Some((2024, 2, 29, 23, 59, 58)));
        assert_eq!(at(0), None, "1970 is before what zip can hold");
    }

    #[rstest]
    #[case("ws.tar.gz", Some(ArchiveFormat::TarGz))]
    #[case("WS.TGZ", Some(ArchiveFormat::TarGz))]
    #[case("ws.tar", Some(ArchiveFormat::Tar))]
    #[case("ws.zip", Some(ArchiveFormat::Zip))]
    #[case("ws.tar.xz", None)]
    #[case("ws", None)]
    fn formats_by_name(#[case] name: &str, #[case] expected: Option<ArchiveFormat>) {
        assert_eq!(ArchiveFormat::from_path(Path::new(name)), expected);
    }

    #[rstest]
    #[case("zmk/app/x", Ok(Some("zmk/app/x")))]
    #[case("./zmk//app/./x", Ok(Some("zmk/app/x")))]
    #[case("./", Ok(None))]
    #[case("../evil", Err("..".to_owned()))]
    #[case("zmk/../../evil", Err("..".to_owned()))]
    #[case("/etc/passwd", Err("absolute".to_owned()))]
    #[case("C:/evil", Err("drive".to_owned()))]
    #[case("zmk\\..\\evil", Err("backslash".to_owned()))]
    #[case("zmk/\0evil", Err("NUL".to_owned()))]
    fn zip_names(#[case] name: &str, #[case] expected: std::result::Result<Option<&str>, String>) {
        let got = zip_name_to_path(name);
        match expected {
            Ok(path) => assert_eq!(got, Ok(path.map(PathBuf::from))),
            Err(word) => {
                let reason = got.expect_err(name);
                assert!(reason.contains(&word), "{name}: {reason}");
            }
        }
    }

    fn links(pairs: &[(&str, &str)]) -> HashMap<PathBuf, PathBuf> {
        pairs
            .iter()
            .map(|(at, to)| (PathBuf::from(at), PathBuf::from(to)))
            .collect()
    }

    #[rstest]
    #[case::sibling(&[], "zmk/link", "file", true)]
    #[case::up_and_over(&[], "zmk/a/link", "../../zephyr/x", true)]
    #[case::one_too_many(&[], "zmk/link", "../../x", false)]
    #[case::absolute(&[], "zmk/link", "/etc/passwd", false)]
    #[case::empty(&[], "zmk/link", "", false)]
    // `s -> .` makes `s/s/s` the top again, so three `..` from there leave the target, though
    // the same text without symlinks would not.
    #[case::through_a_dot_link(&[("zmk/s", ".")], "zmk/l", "s/s/s/../../..", false)]
    #[case::through_a_deep_link(&[("zmk/d", "a/b/c")], "zmk/l", "d/../../..", true)]
    #[case::chain_out(&[("zmk/a", "b"), ("zmk/b", "../..")], "zmk/l", "a/x", false)]
    #[case::loop_(&[("zmk/a", "b"), ("zmk/b", "a")], "zmk/l", "a", false)]
    fn symlink_targets(
        #[case] others: &[(&str, &str)],
        #[case] link: &str,
        #[case] target: &str,
        #[case] inside: bool,
    ) {
        let mut all = links(others);
        all.insert(PathBuf::from(link), PathBuf::from(target));
        let got = link_stays_inside(&all, Path::new(link), Path::new(target));
        assert_eq!(got.is_ok(), inside, "{link} -> {target}: {got:?}");
    }
}
