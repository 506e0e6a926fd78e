//! [`InventoryStore`] on SQLite.
//!
//! Events are appended in batches (one transaction, one fsync with
//! `synchronous=FULL`, however many events): the inventory writer hands
//! over everything queued since its last commit, so a boot storm costs an
//! fsync per batch, not per event. When `record_events` returns, every
//! event of the batch is on disk; events still queued in memory when the
//! process dies are the only ones a crash can lose, and none of those was
//! ever reported as committed.

use rusqlite::{OptionalExtension, params};

use super::SqliteStore;
use crate::site::MacAddr;
use crate::store::{
    Approval, ImageStatus, InventoryStore, NodeEvent, NodeRecord, StoreError, node_state_after,
};

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

impl SqliteStore {
    fn bad_row(&self, row: &str, why: String) -> StoreError {
        StoreError::BadRow {
            path: self.path.clone(),
            row: row.to_owned(),
            why,
        }
    }

    fn parse_mac(&self, mac: &str) -> Result<MacAddr, StoreError> {
        mac.parse().map_err(|e| self.bad_row(mac, format!("{e}")))
    }
}

type NodeRow = (
    String,
    Option<String>,
    Option<String>,
    String,
    String,
    i64,
    i64,
);

impl SqliteStore {
    fn node_from_row(&self, r: NodeRow) -> Result<NodeRecord, StoreError> {
        Ok(NodeRecord {
            mac: self.parse_mac(&r.0)?,
            name: r.1,
            image: r.2,
            state: r.3,
            last_event: r.4,
            last_at_ms: u64::try_from(r.5).unwrap_or(0),
            first_seen_ms: u64::try_from(r.6).unwrap_or(0),
        })
    }
}

const NODE_COLUMNS: &str = "mac, name, image, state, last_event, last_at, first_seen";

/// Appends `events` and updates each node's record, inside `tx`.
fn insert_events(tx: &rusqlite::Transaction<'_>, events: &[NodeEvent]) -> rusqlite::Result<()> {
    let mut insert = tx.prepare_cached(
        "INSERT INTO events (mac, at, node, kind, image, detail) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?;
    let mut upsert = tx.prepare_cached(
        "INSERT INTO nodes (mac, name, image, state, last_event, last_at, first_seen)
         VALUES (?1, ?2, ?3, COALESCE(?4, 'seen'), ?5, ?6, ?6)
         ON CONFLICT (mac) DO UPDATE SET
            name = COALESCE(?2, name),
            image = COALESCE(?3, image),
            state = COALESCE(?4, state),
            last_event = ?5,
            last_at = ?6",
    )?;
    for e in events {
        let mac = e.mac.to_string();
        let at = to_i64(e.at_ms);
        insert.execute(params![mac, at, e.node, e.kind, e.image, e.detail])?;
        upsert.execute(params![
            mac,
            e.node,
            e.image,
            node_state_after(&e.kind),
            e.kind,
            at
        ])?;
    }
    Ok(())
}

impl InventoryStore for SqliteStore {
    fn record_events(&self, events: &[NodeEvent]) -> Result<(), StoreError> {
        if events.is_empty() {
            return Ok(());
        }
        let op = format!("recording {} event(s)", events.len());
        let mut conn = self.conn();
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(self.query_err(op.clone()))?;
        insert_events(&tx, events).map_err(self.query_err(op.clone()))?;
        tx.commit().map_err(self.query_err(op))
    }

    fn approve(&self, approval: &Approval, event: &NodeEvent) -> Result<(), StoreError> {
        let op = format!("approving {}", approval.mac);
        let mut conn = self.conn();
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(self.query_err(op.clone()))?;
        tx.execute(
            "INSERT INTO approvals (mac, image, approved_at) VALUES (?1, ?2, ?3)
             ON CONFLICT (mac) DO UPDATE SET image = ?2, approved_at = ?3",
            params![
                approval.mac.to_string(),
                approval.image,
                to_i64(approval.at_ms)
            ],
        )
        .map_err(self.query_err(op.clone()))?;
        insert_events(&tx, std::slice::from_ref(event)).map_err(self.query_err(op.clone()))?;
        tx.commit().map_err(self.query_err(op))
    }

    fn approval(&self, mac: &MacAddr) -> Result<Option<Approval>, StoreError> {
        let conn = self.conn();
        let row: Option<(Option<String>, i64)> = conn
            .query_row(
                "SELECT image, approved_at FROM approvals WHERE mac = ?1",
                params![mac.to_string()],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(self.query_err(format!("reading the approval of {mac}")))?;
        Ok(row.map(|(image, at)| Approval {
            mac: *mac,
            image,
            at_ms: u64::try_from(at).unwrap_or(0),
        }))
    }

    fn nodes(&self) -> Result<Vec<NodeRecord>, StoreError> {
        let rows: Vec<NodeRow> = {
            let conn = self.conn();
            let mut stmt = conn
                .prepare_cached(&format!("SELECT {NODE_COLUMNS} FROM nodes ORDER BY mac"))
                .map_err(self.query_err("reading nodes"))?;
            stmt.query_map([], |r| {
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
            .and_then(Iterator::collect)
            .map_err(self.query_err("reading nodes"))?
        };
        rows.into_iter().map(|r| self.node_from_row(r)).collect()
    }

    fn node(&self, mac: &MacAddr) -> Result<Option<NodeRecord>, StoreError> {
        let row: Option<NodeRow> = {
            let conn = self.conn();
            conn.query_row(
                &format!("SELECT {NODE_COLUMNS} FROM nodes WHERE mac = ?1"),
                params![mac.to_string()],
                |r| {
                    Ok((
                        r.get(0)?,
                        r.get(1)?,
                        r.get(2)?,
                        r.get(3)?,
                        r.get(4)?,
                        r.get(5)?,
                        r.get(6)?,
                    ))
                },
            )
            .optional()
            .map_err(self.query_err(format!("reading node {mac}")))?
        };
        row.map(|r| self.node_from_row(r)).transpose()
    }

    fn events(&self, mac: &MacAddr, limit: usize) -> Result<Vec<NodeEvent>, StoreError> {
        type Row = (i64, Option<String>, String, Option<String>, Option<String>);
        let op = format!("reading events of {mac}");
        let rows: Vec<Row> = {
            let conn = self.conn();
            let mut stmt = conn
                .prepare_cached(
                    "SELECT at, node, kind, image, detail FROM
                       (SELECT id, at, node, kind, image, detail FROM events WHERE mac = ?1
                        ORDER BY id DESC LIMIT ?2)
                     ORDER BY id",
                )
                .map_err(self.query_err(op.clone()))?;
            stmt.query_map(params![mac.to_string(), to_i64(limit as u64)], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
            })
            .and_then(Iterator::collect)
            .map_err(self.query_err(op))?
        };
        Ok(rows
            .into_iter()
            .map(|(at, node, kind, image, detail)| NodeEvent {
                at_ms: u64::try_from(at).unwrap_or(0),
                mac: *mac,
                node,
                kind,
                image,
                detail,
            })
            .collect())
    }

    fn highest_served(&self, mac: &MacAddr, image: &str) -> Result<Option<u64>, StoreError> {
        let conn = self.conn();
        let v: Option<i64> = conn
            .query_row(
                "SELECT version FROM served WHERE mac = ?1 AND image = ?2",
                params![mac.to_string(), image],
                |r| r.get(0),
            )
            .optional()
            .map_err(self.query_err(format!("reading versions served to {mac}")))?;
        Ok(v.and_then(|v| u64::try_from(v).ok()))
    }

    fn record_served(&self, mac: &MacAddr, image: &str, version: u64) -> Result<(), StoreError> {
        let conn = self.conn();
        conn.execute(
            "INSERT INTO served (mac, image, version) VALUES (?1, ?2, ?3)
             ON CONFLICT (mac, image) DO UPDATE SET version = MAX(version, ?3)",
            params![mac.to_string(), image, to_i64(version)],
        )
        .map_err(self.query_err(format!("recording {image}@{version} served to {mac}")))?;
        Ok(())
    }

    fn replace_image_status(&self, images: &[ImageStatus]) -> Result<(), StoreError> {
        let op = "recording image status";
        let mut conn = self.conn();
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(self.query_err(op))?;
        tx.execute("DELETE FROM image_status", [])
            .map_err(self.query_err(op))?;
        for i in images {
            tx.execute(
                "INSERT OR REPLACE INTO image_status (dir, name, version, status, reason) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![i.dir, i.name, i.version.map(to_i64), i.status, i.reason],
            )
            .map_err(self.query_err(op))?;
        }
        tx.commit().map_err(self.query_err(op))
    }

    fn image_status(&self) -> Result<Vec<ImageStatus>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached("SELECT dir, name, version, status, reason FROM image_status ORDER BY name, version")
            .map_err(self.query_err("reading image status"))?;
        stmt.query_map([], |r| {
            let version: Option<i64> = r.get(2)?;
            Ok(ImageStatus {
                dir: r.get(0)?,
                name: r.get(1)?,
                version: version.and_then(|v| u64::try_from(v).ok()),
                status: r.get(3)?,
                reason: r.get(4)?,
            })
        })
        .and_then(Iterator::collect)
        .map_err(self.query_err("reading image status"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(mac: &str, at_ms: u64, kind: &str) -> NodeEvent {
        NodeEvent {
            at_ms,
            mac: mac.parse().unwrap(),
            node: Some("n1".into()),
            kind: kind.into(),
            image: None,
            detail: None,
        }
    }

    #[test]
    fn events_survive_reopen_and_drive_the_node_state() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        let mac: MacAddr = "52:54:00:00:00:01".parse().unwrap();
        {
            let store = SqliteStore::open(&path).unwrap();
            store
                .record_events(&[
                    event("52:54:00:00:00:01", 1, "dhcp-offer"),
                    event("52:54:00:00:00:01", 2, "dhcp-ack"),
                ])
                .unwrap();
            store
                .record_events(&[
                    event("52:54:00:00:00:01", 3, "script"),
                    event("52:54:00:00:00:01", 4, "dhcp-silent"),
                ])
                .unwrap();
            store.record_served(&mac, "gpu-node", 4).unwrap();
            store.record_served(&mac, "gpu-node", 3).unwrap();
        }
        let store = SqliteStore::open(&path).unwrap();
        let node = store.node(&mac).unwrap().unwrap();
        // dhcp-silent says nothing new: the state stays where script left it.
        assert_eq!(
            (node.state.as_str(), node.last_event.as_str()),
            ("ipxe", "dhcp-silent")
        );
        assert_eq!((node.first_seen_ms, node.last_at_ms), (1, 4));
        let kinds: Vec<String> = store
            .events(&mac, 100)
            .unwrap()
            .into_iter()
            .map(|e| e.kind)
            .collect();
        assert_eq!(kinds, ["dhcp-offer", "dhcp-ack", "script", "dhcp-silent"]);
        let last_two: Vec<String> = store
            .events(&mac, 2)
            .unwrap()
            .into_iter()
            .map(|e| e.kind)
            .collect();
        assert_eq!(last_two, ["script", "dhcp-silent"]);
        assert_eq!(store.highest_served(&mac, "gpu-node").unwrap(), Some(4));
        assert_eq!(store.highest_served(&mac, "other").unwrap(), None);
    }

    #[test]
    fn image_status_is_replaced_whole() {
        let store = SqliteStore::open_in_memory().unwrap();
        let status = |dir: &str, status: &str| ImageStatus {
            name: "gpu-node".into(),
            version: Some(1),
            dir: dir.into(),
            status: status.into(),
            reason: None,
        };
        store
            .replace_image_status(&[status("/a", "verified"), status("/b", "refused")])
            .unwrap();
        store
            .replace_image_status(&[status("/c", "verified")])
            .unwrap();
        let all = store.image_status().unwrap();
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].dir, "/c");
    }
}
