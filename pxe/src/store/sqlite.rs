//! The embedded store: one SQLite file in WAL mode.
//!
//! Durability: `journal_mode=WAL` with `synchronous=FULL`. In WAL mode
//! `NORMAL` already survives a crash of the process (a committed transaction
//! is in the WAL file before `COMMIT` returns), but not a power cut: the
//! last transactions can roll back. A lease the server forgot after a power
//! cut is an address it may hand to a second machine while the first still
//! uses it, so every commit here is fsynced before the DHCP ACK leaves.
//! The price is one fsync per ACK, not per packet (offers are not stored).

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use rusqlite::{Connection, OptionalExtension, params};

use super::{InventoryStore, Lease, LeaseState, LeaseStore, Store, StoreError};

/// Schema versions, in `PRAGMA user_version`. Each entry upgrades from the
/// previous version; the next part (inventory, timelines) appends its own.
const MIGRATIONS: &[&str] = &[
    // 1: leases.
    "CREATE TABLE leases (
        ip          TEXT PRIMARY KEY NOT NULL,
        mac         TEXT NOT NULL,
        state       TEXT NOT NULL,
        expires_at  INTEGER NOT NULL,
        hostname    TEXT
    ) STRICT;
    CREATE INDEX leases_mac ON leases (mac);",
    // 2: inventory, boot timelines, rollback records, image status.
    "CREATE TABLE nodes (
        mac         TEXT PRIMARY KEY NOT NULL,
        name        TEXT,
        image       TEXT,
        state       TEXT NOT NULL,
        last_event  TEXT NOT NULL,
        last_at     INTEGER NOT NULL,
        first_seen  INTEGER NOT NULL
    ) STRICT;
    CREATE TABLE events (
        id          INTEGER PRIMARY KEY,
        mac         TEXT NOT NULL,
        at          INTEGER NOT NULL,
        node        TEXT,
        kind        TEXT NOT NULL,
        image       TEXT,
        detail      TEXT
    ) STRICT;
    CREATE INDEX events_mac ON events (mac, id);
    CREATE TABLE served (
        mac         TEXT NOT NULL,
        image       TEXT NOT NULL,
        version     INTEGER NOT NULL,
        PRIMARY KEY (mac, image)
    ) STRICT;
    CREATE TABLE image_status (
        dir         TEXT PRIMARY KEY NOT NULL,
        name        TEXT NOT NULL,
        version     INTEGER,
        status      TEXT NOT NULL,
        reason      TEXT
    ) STRICT;",
    // 3: operators' approvals (`ironrack nodes approve`).
    "CREATE TABLE approvals (
        mac         TEXT PRIMARY KEY NOT NULL,
        image       TEXT,
        approved_at INTEGER NOT NULL
    ) STRICT;",
];

/// SQLite-backed [`Store`].
#[derive(Debug)]
pub struct SqliteStore {
    path: PathBuf,
    conn: Mutex<Connection>,
}

/// How long a statement waits for another connection's lock.
const BUSY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Sets up a read-write connection as every ironrack database is used
/// (the lease and inventory store and the attestation store, which may
/// share one file): WAL, `synchronous=FULL` (a committed row survives a
/// crash), a busy timeout.
///
/// Every write transaction begins IMMEDIATE: a deferred one that reads
/// first and then writes fails at once with SQLITE_BUSY when another
/// connection committed in between (WAL cannot upgrade a stale read
/// snapshot, and the busy timeout does not apply). A boot storm showed it:
/// quotes refused with "consuming a nonce: database is locked" while the
/// inventory connection recorded events.
pub(crate) fn tune(conn: &Connection) -> rusqlite::Result<()> {
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.busy_timeout(BUSY_TIMEOUT)
}

/// Opens an existing database read-only (`ironrack nodes`), with the busy
/// timeout.
pub(crate) fn connect_read_only(path: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open_with_flags(
        path,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    Ok(conn)
}

impl SqliteStore {
    /// Opens an existing database read-only (`ironrack nodes`), without
    /// touching its schema.
    pub fn open_read_only(path: &Path) -> Result<SqliteStore, StoreError> {
        let open_err = |source| StoreError::Open {
            path: path.to_owned(),
            source,
        };
        let conn = connect_read_only(path).map_err(open_err)?;
        Ok(SqliteStore {
            path: path.to_owned(),
            conn: Mutex::new(conn),
        })
    }

    /// Opens (creating if needed) the database at `path` and brings its
    /// schema up to date.
    pub fn open(path: &Path) -> Result<SqliteStore, StoreError> {
        let open_err = |source| StoreError::Open {
            path: path.to_owned(),
            source,
        };
        let conn = Connection::open(path).map_err(open_err)?;
        Self::prepare(path, conn)
    }

    /// A private in-memory database (tests, dry runs).
    pub fn open_in_memory() -> Result<SqliteStore, StoreError> {
        let path = Path::new(":memory:");
        let conn = Connection::open_in_memory().map_err(|source| StoreError::Open {
            path: path.to_owned(),
            source,
        })?;
        Self::prepare(path, conn)
    }

    fn prepare(path: &Path, mut conn: Connection) -> Result<SqliteStore, StoreError> {
        let open_err = |source| StoreError::Open {
            path: path.to_owned(),
            source,
        };
        tune(&conn).map_err(open_err)?;
        let version: i64 = conn
            .pragma_query_value(None, "user_version", |row| row.get(0))
            .map_err(open_err)?;
        let known = MIGRATIONS.len() as i64;
        if version > known {
            return Err(StoreError::SchemaTooNew {
                path: path.to_owned(),
                found: version,
                known,
            });
        }
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(open_err)?;
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
            tx.execute_batch(sql).map_err(open_err)?;
            tx.pragma_update(None, "user_version", i as i64 + 1)
                .map_err(open_err)?;
        }
        tx.commit().map_err(open_err)?;
        Ok(SqliteStore {
            path: path.to_owned(),
            conn: Mutex::new(conn),
        })
    }

    pub(super) fn conn(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock cannot leave a half-done SQLite
        // transaction behind (it rolls back on drop), so the connection is
        // still sound.
        self.conn
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(super) fn query_err(
        &self,
        op: impl Into<String>,
    ) -> impl FnOnce(rusqlite::Error) -> StoreError + '_ {
        let op = op.into();
        move |source| StoreError::Query {
            path: self.path.clone(),
            op,
            source,
        }
    }

    fn row_to_lease(
        &self,
        row: (String, String, String, i64, Option<String>),
    ) -> Result<Lease, StoreError> {
        let (ip, mac, state, expires_at, hostname) = row;
        let bad = |why: String| StoreError::BadRow {
            path: self.path.clone(),
            row: ip.clone(),
            why,
        };
        Ok(Lease {
            ip: ip
                .parse()
                .map_err(|_| bad("address does not parse".into()))?,
            mac: mac.parse().map_err(|e| bad(format!("{e}")))?,
            state: LeaseState::from_name(&state)
                .ok_or_else(|| bad(format!("unknown state {state:?}")))?,
            expires_at: u64::try_from(expires_at).map_err(|_| bad("negative expiry".into()))?,
            hostname,
        })
    }
}

impl Store for SqliteStore {
    fn leases(&self) -> &dyn LeaseStore {
        self
    }

    fn inventory(&self) -> &dyn InventoryStore {
        self
    }
}

impl LeaseStore for SqliteStore {
    fn all_leases(&self) -> Result<Vec<Lease>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached("SELECT ip, mac, state, expires_at, hostname FROM leases ORDER BY ip")
            .map_err(self.query_err("reading leases"))?;
        let rows = stmt
            .query_map([], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
            })
            .map_err(self.query_err("reading leases"))?;
        let mut out = Vec::new();
        for row in rows {
            out.push(self.row_to_lease(row.map_err(self.query_err("reading leases"))?)?);
        }
        Ok(out)
    }

    fn put_lease(&self, lease: &Lease) -> Result<(), StoreError> {
        let op = format!("storing lease {} for {}", lease.ip, lease.mac);
        let mut conn = self.conn();
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(self.query_err(op.clone()))?;
        let mac = lease.mac.to_string();
        let ip = lease.ip.to_string();
        if lease.state == LeaseState::Bound {
            tx.execute(
                "DELETE FROM leases WHERE mac = ?1 AND state = 'bound' AND ip <> ?2",
                params![mac, ip],
            )
            .map_err(self.query_err(op.clone()))?;
        }
        let expires = i64::try_from(lease.expires_at).unwrap_or(i64::MAX);
        tx.execute(
            "INSERT INTO leases (ip, mac, state, expires_at, hostname) VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (ip) DO UPDATE SET mac = ?2, state = ?3, expires_at = ?4, hostname = ?5",
            params![ip, mac, lease.state.as_str(), expires, lease.hostname],
        )
        .map_err(self.query_err(op.clone()))?;
        tx.commit().map_err(self.query_err(op))
    }

    fn remove_lease(&self, ip: Ipv4Addr) -> Result<(), StoreError> {
        let conn = self.conn();
        conn.execute("DELETE FROM leases WHERE ip = ?1", params![ip.to_string()])
            .map_err(self.query_err(format!("removing lease {ip}")))?;
        Ok(())
    }

    fn prune_leases(&self, now: u64) -> Result<usize, StoreError> {
        let conn = self.conn();
        let now = i64::try_from(now).unwrap_or(i64::MAX);
        conn.execute("DELETE FROM leases WHERE expires_at <= ?1", params![now])
            .map_err(self.query_err("pruning expired leases"))
    }
}

impl SqliteStore {
    /// The journal mode and synchronous level in force, for diagnostics and
    /// tests (`("wal", 2)` means WAL with FULL).
    pub fn durability(&self) -> Result<(String, i64), StoreError> {
        let conn = self.conn();
        let mode: String = conn
            .pragma_query_value(None, "journal_mode", |r| r.get(0))
            .map_err(self.query_err("reading journal_mode"))?;
        let sync: i64 = conn
            .pragma_query_value(None, "synchronous", |r| r.get(0))
            .map_err(self.query_err("reading synchronous"))?;
        Ok((mode, sync))
    }

    /// The stored lease for `ip`, if any.
    pub fn lease(&self, ip: Ipv4Addr) -> Result<Option<Lease>, StoreError> {
        let row = {
            let conn = self.conn();
            conn.query_row(
                "SELECT ip, mac, state, expires_at, hostname FROM leases WHERE ip = ?1",
                params![ip.to_string()],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
            )
            .optional()
            .map_err(self.query_err(format!("reading lease {ip}")))?
        };
        row.map(|r| self.row_to_lease(r)).transpose()
    }
}

mod inventory;

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(ip: &str, mac: &str, state: LeaseState, expires_at: u64) -> Lease {
        Lease {
            ip: ip.parse().unwrap(),
            mac: mac.parse().unwrap(),
            state,
            expires_at,
            hostname: Some("n1".into()),
        }
    }

    #[test]
    fn leases_survive_reopen_and_one_bound_address_per_mac() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        {
            let store = SqliteStore::open(&path).unwrap();
            assert_eq!(store.durability().unwrap(), ("wal".to_string(), 2));
            store
                .put_lease(&lease(
                    "198.18.0.10",
                    "52:54:00:00:00:01",
                    LeaseState::Bound,
                    100,
                ))
                .unwrap();
            // The same MAC moves to another address: the old record goes.
            store
                .put_lease(&lease(
                    "198.18.0.11",
                    "52:54:00:00:00:01",
                    LeaseState::Bound,
                    200,
                ))
                .unwrap();
            store
                .put_lease(&lease(
                    "198.18.0.12",
                    "52:54:00:00:00:02",
                    LeaseState::Declined,
                    300,
                ))
                .unwrap();
            // Dropped without any shutdown step: what was committed stays.
        }
        let store = SqliteStore::open(&path).unwrap();
        let all = store.all_leases().unwrap();
        assert_eq!(all.len(), 2, "{all:?}");
        assert_eq!(
            all[0],
            lease("198.18.0.11", "52:54:00:00:00:01", LeaseState::Bound, 200)
        );
        assert_eq!(all[1].state, LeaseState::Declined);
        assert_eq!(store.prune_leases(250).unwrap(), 1);
        store.remove_lease("198.18.0.12".parse().unwrap()).unwrap();
        assert!(store.all_leases().unwrap().is_empty());
    }

    #[test]
    fn newer_schema_is_refused_with_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        Connection::open(&path)
            .unwrap()
            .pragma_update(None, "user_version", 99)
            .unwrap();
        let err = SqliteStore::open(&path).unwrap_err();
        assert!(
            matches!(err, StoreError::SchemaTooNew { found: 99, .. }),
            "{err}"
        );
        assert!(err.to_string().contains("state.db"), "{err}");
    }

    #[test]
    fn hand_edited_row_is_reported_not_panicked() {
        let store = SqliteStore::open_in_memory().unwrap();
        store
            .conn()
            .execute(
                "INSERT INTO leases VALUES ('198.18.0.9', 'not-a-mac', 'bound', 5, NULL)",
                [],
            )
            .unwrap();
        let err = store.all_leases().unwrap_err();
        assert!(err.to_string().contains("row 198.18.0.9"), "{err}");
    }
}
