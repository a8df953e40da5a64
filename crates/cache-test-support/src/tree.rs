//! Directory trees for the tests of directories through the remote tier: a snapshot of what a
//! tree holds (paths, modes, bytes), to compare two trees byte for byte and mode for mode, and a
//! file written with a given mode.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// What a tree holds, by relative path: a directory's mode, or a file's mode and bytes.
pub type TreeSnapshot = BTreeMap<String, (u32, Option<Vec<u8>>)>;

/// What the tree under `top` holds (symlinks are read as files: the trees compared have none).
pub fn snapshot(top: &Path) -> TreeSnapshot {
    fn walk(top: &Path, dir: &Path, out: &mut TreeSnapshot) {
        for entry in fs::read_dir(dir).expect("list") {
            let path = entry.expect("entry").path();
            let meta = fs::symlink_metadata(&path).expect("stat");
            let relative = path
                .strip_prefix(top)
                .expect("below top")
                .to_str()
                .expect("utf-8")
                .to_owned();
            let mode = meta.permissions().mode() & 0o777;
            if meta.is_dir() {
                out.insert(relative, (mode, None));
                walk(top, &path, out);
            } else {
                out.insert(relative, (mode, Some(fs::read(&path).expect("read"))));
            }
        }
    }
    let mut out = TreeSnapshot::new();
    walk(top, top, &mut out);
    out
}

/// Writes `bytes` to `path` and gives it `mode`.
pub fn write_with_mode(path: &Path, bytes: &[u8], mode: u32) {
    fs::write(path, bytes).expect("write");
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).expect("chmod");
}
