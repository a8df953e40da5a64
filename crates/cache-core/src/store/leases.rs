//! The single-flight lease table (`leases`) of one tag: the functions `crate::flight` uses to
//! read and change a lease. Every lease change is a commit through the one write path
//! (`commit.rs`).

use super::*;
use crate::flight::LeaseStore;

/// The storage side of single-flight (`flight.rs`): the in-process flights, the lease table,
/// and the counters it keeps.
impl RedbCache {
    pub(crate) fn flights(&self) -> &Flights {
        &self.flights
    }

    pub(crate) fn counters(&self) -> &AtomicCounters {
        &self.counters
    }

    /// Reads the lease row of `key` and changes it as `decide` says, in one commit through the
    /// one write path: the change is durable and visible to other processes when this returns,
    /// and this process's buffered writes (a computed value among them) commit with it.
    pub(crate) fn update_lease<R>(
        &self,
        key: &[u8],
        decide: impl FnOnce(Option<&[u8]>) -> (LeaseWrite, R),
    ) -> Result<R> {
        self.write(|tables, _| {
            let mut leases = tables.leases().or_db(self)?;
            let current = leases.get(key).or_db(self)?.map(|row| row.value().to_vec());
            let (write, decided) = decide(current.as_deref());
            match write {
                LeaseWrite::Keep => {}
                LeaseWrite::Put(record) => {
                    leases.insert(key, record.as_slice()).or_db(self)?;
                }
                LeaseWrite::Remove => {
                    leases.remove(key).or_db(self)?;
                }
            }
            Ok(decided)
        })
    }

    /// The lease row of `key` as last committed by any process, in a fresh read transaction
    /// (never the shared snapshot, which may be `commit_interval` old).
    pub(crate) fn read_lease(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let txn = self.begin_read_on_current()?;
        let leases = match txn.open_table(LEASES) {
            Ok(table) => table,
            Err(TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(err) => return Err(err).or_db(self),
        };
        let row = leases.get(key).or_db(self)?;
        Ok(row.map(|row| row.value().to_vec()))
    }

    /// Drops the read snapshot, so that the next read sees what other processes committed up to
    /// now (a waiter whose computation finished elsewhere reads the result at once).
    pub(crate) fn refresh_snapshot(&self) {
        lock(&self.buffer).drop_snapshot();
    }
}

impl LeaseStore for RedbCache {
    fn options(&self) -> &CacheOptions {
        RedbCache::options(self)
    }

    fn tag(&self) -> &Tag {
        &self.tag
    }

    fn flights(&self) -> &Flights {
        RedbCache::flights(self)
    }

    fn counters(&self) -> &AtomicCounters {
        RedbCache::counters(self)
    }

    fn refresh_snapshot(&self) {
        RedbCache::refresh_snapshot(self);
    }

    fn read_lease(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        RedbCache::read_lease(self, key)
    }

    fn update_lease<R>(
        &self,
        key: &[u8],
        decide: impl FnOnce(Option<&[u8]>) -> (LeaseWrite, R),
    ) -> Result<R> {
        RedbCache::update_lease(self, key, decide)
    }

    fn fleet_lease(&self, key: &[u8]) -> crate::remote::RemoteLease {
        match self.remote_for(key) {
            Some(remote) => remote.lease(&self.tag, key, self.options.lease_duration),
            None => crate::remote::RemoteLease::NotCoordinated,
        }
    }

    fn drain_remote(&self) {
        if let Some(remote) = self.remote() {
            remote.drain(self.options.timeout);
        }
    }
}
