//! Unit tests of the storage backends (`backend.rs`), in a file of their own to keep that one short.

use super::*;
use redb::{ReadableDatabase, TableDefinition};

const TABLE: TableDefinition<u64, &[u8]> = TableDefinition::new("t");

fn settings(access: Access) -> HandleSettings {
    HandleSettings {
        access,
        timeout: Duration::from_secs(30),
        page_cache_bytes: 1 << 20,
    }
}

fn database(opened: Result<Opened>) -> Database {
    match opened {
        Ok(Opened::Database(database)) => database,
        Ok(Opened::Corrupt(reason)) => panic!("corrupt: {reason}"),
        Err(err) => panic!("{err}"),
    }
}

/// A file with `rows` rows of 1 KiB, committed.
fn written_file(dir: &Path, rows: u64) -> std::path::PathBuf {
    let path = dir.join("cache.redb");
    fs::write(&path, b"").unwrap();
    let database = database(open_database(&path, "t", &settings(Access::Shared)));
    let txn = database.begin_write().unwrap();
    {
        let mut table = txn.open_table(TABLE).unwrap();
        for row in 0..rows {
            table.insert(row, [row as u8; 1024].as_slice()).unwrap();
        }
    }
    txn.commit().unwrap();
    drop(database);
    path
}

#[test]
fn the_writer_byte_is_the_one_a_write_transaction_holds() {
    let dir = tempfile::tempdir().unwrap();
    let path = written_file(dir.path(), 1);
    let writer = database(open_database(&path, "t", &settings(Access::Shared)));
    let probe = FileBackend::new(fs::File::open(&path).unwrap()).unwrap();
    let byte = (
        Bound::Included(REDB_WRITER_BYTE),
        Bound::Included(REDB_WRITER_BYTE),
    );
    let txn = writer.begin_write().unwrap();
    assert!(
        !probe.try_lock_shared_range(byte.0, byte.1).unwrap(),
        "a write transaction holds redb's writer byte"
    );
    txn.abort().unwrap();
    assert!(probe.try_lock_shared_range(byte.0, byte.1).unwrap());
    assert!(
        writer.try_begin_write().is_err(),
        "a shared hold on the writer byte keeps writers out"
    );
    probe.close().unwrap();
    writer.try_begin_write().unwrap().abort().unwrap();
}

#[test]
fn an_overlay_checks_and_recovers_in_memory_and_leaves_the_file_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let path = written_file(dir.path(), 300);
    let before = fs::read(&path).unwrap();
    let mut view = database(open_database(
        &path,
        "t",
        &settings(Access::CheckWithoutWriting),
    ));
    assert!(view.check_integrity().unwrap());
    {
        let txn = view.begin_write().unwrap();
        txn.open_table(TABLE)
            .unwrap()
            .insert(1_000, [9u8; 70_000].as_slice())
            .unwrap();
        txn.commit().unwrap();
    }
    let read = view.begin_read().unwrap();
    let table = read.open_table(TABLE).unwrap();
    assert_eq!(table.get(7).unwrap().unwrap().value(), [7u8; 1024]);
    assert_eq!(table.get(1_000).unwrap().unwrap().value().len(), 70_000);
    drop((table, read, view));
    assert!(fs::read(&path).unwrap() == before, "not a byte written");
    let reopened = database(open_database(&path, "t", &settings(Access::Shared)));
    let read = reopened.begin_read().unwrap();
    assert!(
        read.open_table(TABLE)
            .unwrap()
            .get(1_000)
            .unwrap()
            .is_none(),
        "the view's commit stayed in memory"
    );
}

#[test]
fn an_open_behind_a_write_transaction_times_out_and_holds_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = written_file(dir.path(), 1);
    let holder = database(open_database(&path, "t", &settings(Access::Shared)));
    let txn = holder.begin_write().unwrap();
    let short = |access| HandleSettings {
        timeout: Duration::from_millis(50),
        ..settings(access)
    };
    for access in [Access::Shared, Access::CheckWithoutWriting] {
        match open_database(&path, "tagname", &short(access)) {
            Err(CacheError::LockTimeout { tag, path: at, .. }) => {
                assert_eq!((tag.as_str(), at.as_path()), ("tagname", path.as_path()));
            }
            Err(err) => panic!("{access:?}: expected a lock timeout, got {err}"),
            Ok(_) => panic!("{access:?}: opened behind a write transaction"),
        }
    }
    txn.commit().unwrap();
    drop(holder);
    // The failed opens released what they had taken: a writer gets the file at once.
    let next = database(open_database(&path, "t", &short(Access::Shared)));
    next.try_begin_write().unwrap().abort().unwrap();
}

#[test]
fn overlay_writes_past_a_shortened_end_read_as_zero_not_as_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bytes");
    let content: Vec<u8> = (0..3 * CHUNK as usize)
        .map(|i| (i % 251 + 1) as u8)
        .collect();
    fs::write(&path, &content).unwrap();
    let wait = LockWait::for_open(Duration::from_secs(5), Instant::now());
    let view = OverlayBackend::over(&path, &wait).unwrap();
    let mut out = vec![0u8; 10];
    view.read(CHUNK - 5, &mut out).unwrap();
    assert_eq!(out, content[CHUNK as usize - 5..CHUNK as usize + 5]);
    view.write(CHUNK - 2, &[0xEE; 4]).unwrap();
    view.read(CHUNK - 5, &mut out).unwrap();
    assert_eq!(&out[..3], &content[CHUNK as usize - 5..CHUNK as usize - 2]);
    assert_eq!(&out[3..7], &[0xEE; 4]);
    assert_eq!(&out[7..], &content[CHUNK as usize + 2..CHUNK as usize + 5]);
    view.set_len(CHUNK + 1).unwrap();
    view.set_len(3 * CHUNK).unwrap();
    let mut tail = vec![1u8; 2 * CHUNK as usize];
    view.read(CHUNK, &mut tail).unwrap();
    assert_eq!(tail[0], 0xEE, "kept below the cut");
    assert!(tail[1..].iter().all(|&byte| byte == 0), "zero past the cut");
    assert!(view.read(3 * CHUNK - 1, &mut out).is_err(), "past the end");
    view.close().unwrap();
    assert_eq!(fs::read(&path).unwrap(), content);
}
