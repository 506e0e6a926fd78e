//! [`AttestStore`] in SQLite: WAL, `synchronous=FULL` (as the lease store:
//! an enrollment or a used nonce forgotten after a power cut would let a
//! node replay it), its own tables with their own schema version so they
//! can live in the same file as the leases.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use rusqlite::{Connection, OptionalExtension, params};

use super::store::{
    AttestStore, AttestStoreError, EnrollmentSession, IssuedNonce, NodeRecord, NodeState, NonceUse,
    TimelineEntry,
};
use crate::attest::protocol::NodeId;
use crate::attest::tpm::ClockInfo;
use crate::store::{connect_read_only, tune};

/// Schema steps; the version lives in `attest_schema`, not `user_version`
/// (which the lease store owns when both share a file).
const MIGRATIONS: &[&str] = &[
    "
    CREATE TABLE attest_sessions (
        id            BLOB PRIMARY KEY NOT NULL,
        node          TEXT NOT NULL,
        ek_public     BLOB NOT NULL,
        ak_public     BLOB NOT NULL,
        secret_sha256 BLOB NOT NULL,
        state         TEXT NOT NULL,
        reason        TEXT,
        expires_at    INTEGER NOT NULL
    ) STRICT;
    CREATE TABLE attest_nodes (
        node          TEXT PRIMARY KEY NOT NULL,
        ek_public     BLOB NOT NULL,
        ak_public     BLOB NOT NULL,
        state         TEXT NOT NULL,
        reason        TEXT,
        clock         INTEGER,
        reset_count   INTEGER,
        restart_count INTEGER,
        safe          INTEGER
    ) STRICT;
    CREATE INDEX attest_nodes_ek ON attest_nodes (ek_public);
    CREATE TABLE attest_nonces (
        nonce       BLOB PRIMARY KEY NOT NULL,
        node        TEXT NOT NULL,
        expires_at  INTEGER NOT NULL,
        used        INTEGER NOT NULL DEFAULT 0
    ) STRICT;
    CREATE TABLE attest_timeline (
        seq     INTEGER PRIMARY KEY AUTOINCREMENT,
        node    TEXT NOT NULL,
        at      INTEGER NOT NULL,
        status  TEXT NOT NULL,
        code    TEXT,
        detail  TEXT NOT NULL
    ) STRICT;
    CREATE INDEX attest_timeline_node ON attest_timeline (node, seq);
",
    "
    CREATE TABLE attest_versions (
        node    TEXT NOT NULL,
        image   TEXT NOT NULL,
        version INTEGER NOT NULL,
        PRIMARY KEY (node, image)
    ) STRICT;
",
];

/// Attestation state in a SQLite file.
#[derive(Debug)]
pub struct SqliteAttestStore {
    path: PathBuf,
    conn: Mutex<Connection>,
}

type Row = (
    String,
    Vec<u8>,
    Vec<u8>,
    String,
    Option<String>,
    Option<i64>,
    Option<i64>,
    Option<i64>,
    Option<i64>,
);

impl SqliteAttestStore {
    /// Opens (creating if needed) the database at `path`.
    pub fn open(path: &Path) -> Result<Self, AttestStoreError> {
        let conn = Connection::open(path).map_err(|source| AttestStoreError::Open {
            path: path.to_owned(),
            source,
        })?;
        Self::prepare(path, conn)
    }

    /// Opens an existing database read-only (`ironrack nodes`), without
    /// touching its schema; `None` when no server has created the
    /// attestation tables in it yet.
    pub fn open_read_only(path: &Path) -> Result<Option<Self>, AttestStoreError> {
        let open_err = |source| AttestStoreError::Open {
            path: path.to_owned(),
            source,
        };
        let conn = connect_read_only(path).map_err(open_err)?;
        let version: Option<i64> = conn
            .query_row(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'attest_schema'",
                [],
                |_| Ok(()),
            )
            .optional()
            .map_err(open_err)?
            .map(|()| {
                conn.query_row(
                    "SELECT COALESCE(MAX(version), 0) FROM attest_schema",
                    [],
                    |r| r.get(0),
                )
            })
            .transpose()
            .map_err(open_err)?;
        let Some(version) = version else {
            return Ok(None);
        };
        let known = MIGRATIONS.len() as i64;
        if version > known {
            return Err(AttestStoreError::SchemaTooNew {
                path: path.to_owned(),
                found: version,
                known,
            });
        }
        Ok(Some(SqliteAttestStore {
            path: path.to_owned(),
            conn: Mutex::new(conn),
        }))
    }

    fn prepare(path: &Path, mut conn: Connection) -> Result<Self, AttestStoreError> {
        let open_err = |source| AttestStoreError::Open {
            path: path.to_owned(),
            source,
        };
        tune(&conn).map_err(open_err)?;
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(open_err)?;
        tx.execute_batch(
            "CREATE TABLE IF NOT EXISTS attest_schema (version INTEGER NOT NULL) STRICT",
        )
        .map_err(open_err)?;
        let version: i64 = tx
            .query_row(
                "SELECT COALESCE(MAX(version), 0) FROM attest_schema",
                [],
                |r| r.get(0),
            )
            .map_err(open_err)?;
        let known = MIGRATIONS.len() as i64;
        if version > known {
            return Err(AttestStoreError::SchemaTooNew {
                path: path.to_owned(),
                found: version,
                known,
            });
        }
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
            tx.execute_batch(sql).map_err(open_err)?;
            tx.execute(
                "INSERT INTO attest_schema (version) VALUES (?1)",
                [i as i64 + 1],
            )
            .map_err(open_err)?;
        }
        tx.commit().map_err(open_err)?;
        Ok(SqliteAttestStore {
            path: path.to_owned(),
            conn: Mutex::new(conn),
        })
    }

    fn conn(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock rolls its transaction back.
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn err(&self, op: impl Into<String>) -> impl FnOnce(rusqlite::Error) -> AttestStoreError + '_ {
        let op = op.into();
        move |source| AttestStoreError::Query {
            path: self.path.clone(),
            op,
            source,
        }
    }

    fn bad(&self, table: &'static str, key: &str, why: impl Into<String>) -> AttestStoreError {
        AttestStoreError::BadRow {
            path: self.path.clone(),
            table,
            key: key.chars().take(80).collect(),
            why: why.into(),
        }
    }

    fn node_id(&self, table: &'static str, text: &str) -> Result<NodeId, AttestStoreError> {
        NodeId::new(text).map_err(|e| self.bad(table, text, e.to_string()))
    }

    fn state(
        &self,
        table: &'static str,
        key: &str,
        name: &str,
        reason: Option<String>,
    ) -> Result<NodeState, AttestStoreError> {
        NodeState::from_parts(name, reason)
            .ok_or_else(|| self.bad(table, key, format!("unknown state {name:?}")))
    }

    fn row_to_node(&self, row: Row) -> Result<NodeRecord, AttestStoreError> {
        let (node, ek_public, ak_public, state, reason, clock, reset, restart, safe) = row;
        let last_clock = match (clock, reset, restart, safe) {
            (Some(clock), Some(reset), Some(restart), Some(safe)) => {
                let num = |v: i64, what: &str| {
                    u32::try_from(v).map_err(|_| {
                        self.bad("attest_nodes", &node, format!("{what} out of range"))
                    })
                };
                Some(ClockInfo {
                    clock: u64::try_from(clock)
                        .map_err(|_| self.bad("attest_nodes", &node, "negative clock"))?,
                    reset_count: num(reset, "reset count")?,
                    restart_count: num(restart, "restart count")?,
                    safe: safe != 0,
                })
            }
            (None, None, None, None) => None,
            _ => return Err(self.bad("attest_nodes", &node, "clock columns partly empty")),
        };
        Ok(NodeRecord {
            state: self.state("attest_nodes", &node, &state, reason)?,
            node: self.node_id("attest_nodes", &node)?,
            ek_public,
            ak_public,
            last_clock,
        })
    }

    fn select_nodes(
        &self,
        sql: &str,
        args: &[&dyn rusqlite::ToSql],
    ) -> Result<Vec<NodeRecord>, AttestStoreError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached(sql)
            .map_err(self.err("reading nodes"))?;
        let rows: Vec<Row> = stmt
            .query_map(args, |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                    r.get(6)?,
                    r.get(7)?,
                    r.get(8)?,
                ))
            })
            .and_then(|rows| rows.collect())
            .map_err(self.err("reading nodes"))?;
        drop(stmt);
        drop(conn);
        rows.into_iter().map(|r| self.row_to_node(r)).collect()
    }
}

const NODE_COLUMNS: &str =
    "node, ek_public, ak_public, state, reason, clock, reset_count, restart_count, safe";

fn secs(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

impl AttestStore for SqliteAttestStore {
    fn put_session(&self, s: &EnrollmentSession) -> Result<(), AttestStoreError> {
        self.conn()
            .prepare_cached(
                "INSERT OR REPLACE INTO attest_sessions
                 (id, node, ek_public, ak_public, secret_sha256, state, reason, expires_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )
            .and_then(|mut st| {
                st.execute(params![
                    s.id,
                    s.node.as_str(),
                    s.ek_public,
                    s.ak_public,
                    s.secret_sha256.as_slice(),
                    s.state.as_str(),
                    s.state.reason(),
                    secs(s.expires_at),
                ])
            })
            .map_err(self.err(format!("storing enrollment session of node {}", s.node)))?;
        Ok(())
    }

    fn take_session(&self, id: &[u8]) -> Result<Option<EnrollmentSession>, AttestStoreError> {
        type SessionRow = (
            String,
            Vec<u8>,
            Vec<u8>,
            Vec<u8>,
            String,
            Option<String>,
            i64,
        );
        let row: Option<SessionRow> = self
            .conn()
            .prepare_cached(
                "DELETE FROM attest_sessions WHERE id = ?1
                 RETURNING node, ek_public, ak_public, secret_sha256, state, reason, expires_at",
            )
            .and_then(|mut st| {
                st.query_row([id], |r| {
                    Ok((
                        r.get(0)?,
                        r.get(1)?,
                        r.get(2)?,
                        r.get(3)?,
                        r.get(4)?,
                        r.get(5)?,
                        r.get(6)?,
                    ))
                })
                .optional()
            })
            .map_err(self.err("taking an enrollment session"))?;
        let Some((node, ek_public, ak_public, secret, state, reason, expires_at)) = row else {
            return Ok(None);
        };
        let key = hex::encode(id);
        Ok(Some(EnrollmentSession {
            id: id.to_vec(),
            node: self.node_id("attest_sessions", &node)?,
            ek_public,
            ak_public,
            secret_sha256: secret
                .try_into()
                .map_err(|_| self.bad("attest_sessions", &key, "secret digest is not 32 bytes"))?,
            state: self.state("attest_sessions", &key, &state, reason)?,
            expires_at: u64::try_from(expires_at).unwrap_or(0),
        }))
    }

    fn node(&self, node: &NodeId) -> Result<Option<NodeRecord>, AttestStoreError> {
        let sql = format!("SELECT {NODE_COLUMNS} FROM attest_nodes WHERE node = ?1");
        Ok(self.select_nodes(&sql, &[&node.as_str()])?.pop())
    }

    fn node_with_ek(&self, ek_public: &[u8]) -> Result<Option<NodeId>, AttestStoreError> {
        let found: Option<String> = self
            .conn()
            .prepare_cached("SELECT node FROM attest_nodes WHERE ek_public = ?1 LIMIT 1")
            .and_then(|mut st| st.query_row([ek_public], |r| r.get(0)).optional())
            .map_err(self.err("looking a node up by its EK"))?;
        found.map(|n| self.node_id("attest_nodes", &n)).transpose()
    }

    fn nodes(&self) -> Result<Vec<NodeRecord>, AttestStoreError> {
        let sql = format!("SELECT {NODE_COLUMNS} FROM attest_nodes ORDER BY node");
        self.select_nodes(&sql, &[])
    }

    fn put_node(&self, r: &NodeRecord) -> Result<(), AttestStoreError> {
        let c = r.last_clock;
        self.conn()
            .prepare_cached(&format!(
                "INSERT OR REPLACE INTO attest_nodes ({NODE_COLUMNS})
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"
            ))
            .and_then(|mut st| {
                st.execute(params![
                    r.node.as_str(),
                    r.ek_public,
                    r.ak_public,
                    r.state.as_str(),
                    r.state.reason(),
                    c.map(|c| secs(c.clock)),
                    c.map(|c| i64::from(c.reset_count)),
                    c.map(|c| i64::from(c.restart_count)),
                    c.map(|c| i64::from(c.safe)),
                ])
            })
            .map_err(self.err(format!("storing node {}", r.node)))?;
        Ok(())
    }

    fn put_nonce(&self, n: &IssuedNonce) -> Result<(), AttestStoreError> {
        self.conn()
            .prepare_cached(
                "INSERT INTO attest_nonces (nonce, node, expires_at, used) VALUES (?1, ?2, ?3, 0)",
            )
            .and_then(|mut st| st.execute(params![n.nonce, n.node.as_str(), secs(n.expires_at)]))
            .map_err(self.err(format!("storing a nonce for node {}", n.node)))?;
        Ok(())
    }

    fn consume_nonce(&self, nonce: &[u8]) -> Result<NonceUse, AttestStoreError> {
        let mut conn = self.conn();
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(self.err("consuming a nonce"))?;
        let row: Option<(String, i64, i64)> = tx
            .query_row(
                "SELECT node, expires_at, used FROM attest_nonces WHERE nonce = ?1",
                [nonce],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()
            .map_err(self.err("consuming a nonce"))?;
        let Some((node, expires_at, used)) = row else {
            return Ok(NonceUse::Unknown);
        };
        if used == 0 {
            tx.execute(
                "UPDATE attest_nonces SET used = 1 WHERE nonce = ?1",
                [nonce],
            )
            .map_err(self.err("consuming a nonce"))?;
        }
        tx.commit().map_err(self.err("consuming a nonce"))?;
        drop(conn);
        let issued = IssuedNonce {
            nonce: nonce.to_vec(),
            node: self.node_id("attest_nonces", &node)?,
            expires_at: u64::try_from(expires_at).unwrap_or(0),
        };
        Ok(if used == 0 {
            NonceUse::Fresh(issued)
        } else {
            NonceUse::Replayed(issued)
        })
    }

    fn append_timeline(&self, node: &NodeId, e: &TimelineEntry) -> Result<(), AttestStoreError> {
        self.conn()
            .prepare_cached(
                "INSERT INTO attest_timeline (node, at, status, code, detail)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )
            .and_then(|mut st| {
                st.execute(params![
                    node.as_str(),
                    secs(e.at),
                    e.status,
                    e.code,
                    e.detail
                ])
            })
            .map_err(self.err(format!("appending to the timeline of node {node}")))?;
        Ok(())
    }

    fn timeline(&self, node: &NodeId) -> Result<Vec<TimelineEntry>, AttestStoreError> {
        let conn = self.conn();
        let mut st = conn
            .prepare_cached(
                "SELECT at, status, code, detail FROM attest_timeline WHERE node = ?1 ORDER BY seq",
            )
            .map_err(self.err(format!("reading the timeline of node {node}")))?;
        st.query_map([node.as_str()], |r| {
            Ok(TimelineEntry {
                at: u64::try_from(r.get::<_, i64>(0)?).unwrap_or(0),
                status: r.get(1)?,
                code: r.get(2)?,
                detail: r.get(3)?,
            })
        })
        .and_then(|rows| rows.collect())
        .map_err(self.err(format!("reading the timeline of node {node}")))
    }

    fn highest_version(&self, node: &NodeId, image: &str) -> Result<Option<u64>, AttestStoreError> {
        let found: Option<i64> = self
            .conn()
            .prepare_cached("SELECT version FROM attest_versions WHERE node = ?1 AND image = ?2")
            .and_then(|mut st| {
                st.query_row([node.as_str(), image], |r| r.get(0))
                    .optional()
            })
            .map_err(self.err(format!("reading the versions node {node} ran")))?;
        Ok(found.map(|v| u64::try_from(v).unwrap_or(0)))
    }

    fn record_version(
        &self,
        node: &NodeId,
        image: &str,
        version: u64,
    ) -> Result<(), AttestStoreError> {
        self.conn()
            .prepare_cached(
                "INSERT INTO attest_versions (node, image, version) VALUES (?1, ?2, ?3)
                 ON CONFLICT (node, image) DO UPDATE SET version = MAX(version, excluded.version)",
            )
            .and_then(|mut st| st.execute(params![node.as_str(), image, secs(version)]))
            .map_err(self.err(format!("recording the version node {node} runs")))?;
        Ok(())
    }

    fn prune(&self, now: u64) -> Result<usize, AttestStoreError> {
        let mut conn = self.conn();
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(self.err("pruning"))?;
        let mut n = tx
            .execute(
                "DELETE FROM attest_sessions WHERE expires_at < ?1",
                [secs(now)],
            )
            .map_err(self.err("pruning sessions"))?;
        n += tx
            .execute(
                "DELETE FROM attest_nonces WHERE expires_at < ?1",
                [secs(now)],
            )
            .map_err(self.err("pruning nonces"))?;
        tx.commit().map_err(self.err("pruning"))?;
        Ok(n)
    }
}
