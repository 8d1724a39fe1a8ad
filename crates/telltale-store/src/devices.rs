//! The devices collection: the presence columns of `devices` (online, seen
//! times, agent, labels) with a seq of their own (`meta.devices_seq`, never
//! reused). The rows themselves are made by interning (`names`).
//!
//! Every device that sent anything in a group (readings, a reject, a
//! status) gets `last_seen` = commit time. Its devices seq moves (the device
//! "changes") when it is new, when its presence, agent or labels changed, or
//! when the `last_seen` watchers last saw is more than [`SEEN_EVENT_MS`]
//! old. So a device reporting every second makes about one devices event
//! per 10 s, not one per commit, while `last_seen` in the table (and in
//! every list) stays exact to the commit.
//!
//! Uses `meta` and the [`Reader`] type.

use crate::meta;
use crate::reader::{sql_limit, sql_u64, Reader};
use crate::StoreError;
use rusqlite::types::ValueRef;
use rusqlite::{params, Connection, Row};
use rustc_hash::FxHashMap as HashMap;
use std::collections::BTreeMap;
use std::sync::Arc;

/// Version 2 of the hub database: the presence columns of `devices`, filled
/// on an existing database from `latest` (made by the step before).
pub(crate) const SCHEMA_V2: &str = "
    -- seq is the devices collection's sequence (meta.devices_seq, never reused).
    -- It moves when a device is new, when its presence, agent or labels change,
    -- or when last_seen is more than 10 s past its value at the last move (so
    -- a device reporting every second makes about one event per 10 s);
    -- last_seen itself is written at every commit the device had a message in.
    -- online: 1 online, 0 offline, NULL never sent a status. last_seen and
    -- first_seen: hub time (ms) of the last and first message from the device.
    -- labels: a JSON object of strings, NULL for none.
    ALTER TABLE devices ADD COLUMN seq INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE devices ADD COLUMN online INTEGER;
    ALTER TABLE devices ADD COLUMN last_seen INTEGER;
    ALTER TABLE devices ADD COLUMN first_seen INTEGER;
    ALTER TABLE devices ADD COLUMN agent TEXT;
    ALTER TABLE devices ADD COLUMN labels TEXT;
    CREATE INDEX devices_by_seq ON devices(seq);

    -- Every known device enters the devices collection once; its last_seen is
    -- the newest time stamp among its readings (a device clock, so never
    -- later than now), first_seen stays unknown (NULL) until it next talks.
    UPDATE devices SET
        seq = id,
        last_seen = min(
            (SELECT max(ts) FROM latest WHERE latest.device = devices.id),
            CAST(strftime('%s', 'now') AS INTEGER) * 1000
        );
    INSERT INTO meta(key, value)
    SELECT 'devices_seq', CAST(coalesce(max(seq), 0) AS TEXT) FROM devices;
    ";

/// A device's `last_seen` alone makes it change (a devices event) only once
/// it has moved this far (ms) from the value watchers last saw: a device
/// reporting every second produces about one devices event per 10 s.
pub const SEEN_EVENT_MS: i64 = 10_000;

/// A device: an item of the devices collection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceRow {
    /// Sequence number in the devices collection: the last change of this row.
    pub seq: u64,
    /// Device id (the `{id}` in its topics).
    pub id: Arc<str>,
    /// From the device's last status message; `None` when it never sent one.
    pub online: Option<bool>,
    /// Hub time (ms since the epoch) of the commit that last stored a message
    /// from it. Written at every commit, but only a change of it by more than
    /// 10 s makes a new `seq` (see [`SEEN_EVENT_MS`]).
    pub last_seen_ms: Option<i64>,
    /// Hub time of the first message seen from it; `None` for a device known
    /// before presence was tracked (schema version 2) that has not talked since.
    pub first_seen_ms: Option<i64>,
    /// Agent name and version from its last status that named one.
    pub agent: Option<String>,
    /// Labels from its last status that carried them.
    pub labels: BTreeMap<String, String>,
}

/// A device's status message (its birth, a later status, or its Last Will),
/// for the devices collection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Presence {
    /// Device id (from the topic, already checked).
    pub device: String,
    /// When the hub received the status (ms since the epoch). The device's
    /// `last_seen` is the commit time like for any other message; this is
    /// kept for the writer's log line.
    pub at_ms: i64,
    /// Online (birth) or offline (Last Will, clean disconnect).
    pub online: bool,
    /// Agent name and version: replaces the stored one when `Some`, keeps it
    /// when `None`.
    pub agent: Option<String>,
    /// Labels: replace the stored set when `Some` (an empty map clears them),
    /// keep it when `None` (a Last Will carries none).
    pub labels: Option<BTreeMap<String, String>>,
}

/// A device as the devices collection sees it (the writer's copy of its row).
#[derive(Debug)]
pub(crate) struct DeviceState {
    /// Device id.
    name: Arc<str>,
    /// Its seq in the devices collection (0: not yet in it).
    seq: u64,
    /// Presence from its last status; `None` when it never sent one.
    online: Option<bool>,
    /// Hub time of the last commit with a message from it.
    last_seen: Option<i64>,
    /// Hub time of the first commit with a message from it.
    first_seen: Option<i64>,
    /// Agent from its last status that named one.
    agent: Option<String>,
    /// Labels from its last status that carried them (rule scopes test them).
    pub(crate) labels: BTreeMap<String, String>,
    /// `last_seen` as of the device's last change of seq: what watchers saw.
    evented_seen: Option<i64>,
    /// Presence, agent or labels changed in the current group.
    changed: bool,
}

impl DeviceState {
    fn row(&self) -> DeviceRow {
        DeviceRow {
            seq: self.seq,
            id: self.name.clone(),
            online: self.online,
            last_seen_ms: self.last_seen,
            first_seen_ms: self.first_seen,
            agent: self.agent.clone(),
            labels: self.labels.clone(),
        }
    }
}

/// The writer's state of the devices collection.
pub(crate) struct Devices {
    /// Seq the next change of a device gets (`meta.devices_seq` + 1).
    pub(crate) next_seq: u64,
    /// Each device met so far, by id, loaded on first use (one query per
    /// device, not per message).
    cache: HashMap<i64, DeviceState>,
}

impl Devices {
    /// Carries on from the database.
    pub(crate) fn load(conn: &Connection) -> Result<Devices, StoreError> {
        Ok(Devices {
            next_seq: meta::seq(conn, meta::DEVICES_SEQ)? + 1,
            cache: HashMap::default(),
        })
    }

    /// Back to what the database holds (after a failed commit).
    pub(crate) fn reload(&mut self, conn: &Connection) -> Result<(), StoreError> {
        self.cache.clear();
        self.next_seq = meta::seq(conn, meta::DEVICES_SEQ)? + 1;
        Ok(())
    }

    /// The writer's copy of device `dev`'s row, read on first use.
    pub(crate) fn state(
        &mut self,
        tx: &Connection,
        dev: i64,
        name: &Arc<str>,
    ) -> Result<&mut DeviceState, StoreError> {
        use std::collections::hash_map::Entry;
        match self.cache.entry(dev) {
            Entry::Occupied(e) => Ok(e.into_mut()),
            Entry::Vacant(e) => {
                let (seq, online, last_seen, first_seen, agent, labels) = tx
                    .prepare_cached(
                        "SELECT seq, online, last_seen, first_seen, agent, labels
                         FROM devices WHERE id = ?1",
                    )?
                    .query_row([dev], |r| {
                        Ok((
                            r.get::<_, i64>(0)?,
                            r.get::<_, Option<bool>>(1)?,
                            r.get::<_, Option<i64>>(2)?,
                            r.get::<_, Option<i64>>(3)?,
                            r.get::<_, Option<String>>(4)?,
                            r.get::<_, Option<String>>(5)?,
                        ))
                    })?;
                let labels = match labels.as_deref().map(parse_labels) {
                    None => BTreeMap::new(),
                    Some(Ok(l)) => l,
                    // One device's bad row must not stop the writer: its labels
                    // are replaced by its next status that carries some.
                    Some(Err(err)) => {
                        tracing::warn!(device = %name, error = %err, "stored labels are not a JSON object of strings; ignored");
                        BTreeMap::new()
                    }
                };
                Ok(e.insert(DeviceState {
                    name: name.clone(),
                    seq: seq as u64,
                    online,
                    last_seen,
                    first_seen,
                    agent,
                    labels,
                    evented_seen: last_seen,
                    changed: false,
                }))
            }
        }
    }

    /// A status message: presence, and agent and labels when it carries
    /// them. The devices seq moves at the end of the group. Returns whether
    /// the labels changed (rule scopes may test them).
    pub(crate) fn presence(
        &mut self,
        tx: &Connection,
        dev: i64,
        name: &Arc<str>,
        p: Presence,
    ) -> Result<bool, StoreError> {
        let st = self.state(tx, dev, name)?;
        let mut labels_changed = false;
        if st.online != Some(p.online) {
            st.online = Some(p.online);
            st.changed = true;
        }
        if let Some(agent) = p.agent {
            if st.agent.as_ref() != Some(&agent) {
                st.agent = Some(agent);
                st.changed = true;
            }
        }
        if let Some(labels) = p.labels {
            if st.labels != labels {
                st.labels = labels;
                st.changed = true;
                labels_changed = true;
            }
        }
        tracing::debug!(
            device = p.device,
            online = p.online,
            at_ms = p.at_ms,
            changed = st.changed,
            "presence"
        );
        Ok(labels_changed)
    }

    /// Stamps every device `seen` in the group with `now` and moves the
    /// devices seq of those that changed: new, presence/agent/labels changed,
    /// or a `last_seen` more than [`SEEN_EVENT_MS`] past what watchers last
    /// saw (into `changed` when `want_events`). One statement per device
    /// seen, never per message.
    pub(crate) fn flush(
        &mut self,
        tx: &Connection,
        seen: &mut HashMap<i64, Arc<str>>,
        want_events: bool,
        now: i64,
        changed: &mut Vec<DeviceRow>,
    ) -> Result<(), StoreError> {
        if seen.is_empty() {
            return Ok(());
        }
        let mut seen: Vec<_> = seen.drain().collect();
        seen.sort_unstable_by_key(|(dev, _)| *dev);
        let before = self.next_seq;
        for (dev, name) in seen {
            let next_seq = self.next_seq;
            let st = self.state(tx, dev, &name)?;
            st.last_seen = Some(now);
            if st.first_seen.is_none() {
                st.first_seen = Some(now);
                st.changed = true;
            }
            // A hub clock that went back counts as stale too.
            let stale = st
                .evented_seen
                .is_none_or(|e| now - e > SEEN_EVENT_MS || e > now);
            if !(st.changed || stale || st.seq == 0) {
                tx.prepare_cached("UPDATE devices SET last_seen = ?2 WHERE id = ?1")?
                    .execute(params![dev, now])?;
                continue;
            }
            st.seq = next_seq;
            st.evented_seen = Some(now);
            st.changed = false;
            let labels = if st.labels.is_empty() {
                None
            } else {
                // A map of strings always serializes.
                serde_json::to_string(&st.labels).ok()
            };
            tx.prepare_cached(
                "UPDATE devices SET seq = ?2, online = ?3, last_seen = ?4, first_seen = ?5,
                     agent = ?6, labels = ?7
                 WHERE id = ?1",
            )?
            .execute(params![
                dev,
                st.seq as i64,
                st.online,
                st.last_seen,
                st.first_seen,
                st.agent,
                labels
            ])?;
            if want_events {
                changed.push(st.row());
            }
            self.next_seq += 1;
        }
        if self.next_seq != before {
            meta::set_seq(tx, meta::DEVICES_SEQ, self.next_seq - 1)?;
        }
        Ok(())
    }
}

/// Labels as stored: a JSON object of strings.
pub(crate) fn parse_labels(json: &str) -> Result<BTreeMap<String, String>, serde_json::Error> {
    serde_json::from_str(json)
}

const DEVICE_SELECT: &str =
    "SELECT seq, name, online, last_seen, first_seen, agent, labels FROM devices";

fn device_row(r: &Row<'_>) -> rusqlite::Result<DeviceRow> {
    let labels = match r.get_ref(6)? {
        ValueRef::Null => BTreeMap::new(),
        v => parse_labels(v.as_str()?).map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(6, v.data_type(), Box::new(e))
        })?,
    };
    Ok(DeviceRow {
        seq: r.get::<_, i64>(0)? as u64,
        id: r.get::<_, String>(1)?.into(),
        online: r.get::<_, Option<bool>>(2)?,
        last_seen_ms: r.get(3)?,
        first_seen_ms: r.get(4)?,
        agent: r.get(5)?,
        labels,
    })
}

impl Reader {
    /// Every device, ordered by id.
    pub fn devices_all(&self) -> Result<Vec<DeviceRow>, StoreError> {
        self.rows(&format!("{DEVICE_SELECT} ORDER BY name"), [], device_row)
    }

    /// One device by id.
    pub fn device(&self, id: &str) -> Result<Option<DeviceRow>, StoreError> {
        use rusqlite::OptionalExtension;
        let mut q = self
            .conn
            .prepare_cached(&format!("{DEVICE_SELECT} WHERE name = ?1"))?;
        Ok(q.query_row([id], device_row).optional()?)
    }

    /// Up to `limit` devices changed after `seq`, in seq order. A device
    /// changes when it is new, when its presence, agent or labels change, or
    /// when its `last_seen` moved more than 10 s; see [`crate::Changes::devices`].
    pub fn devices_after(&self, seq: u64, limit: usize) -> Result<Vec<DeviceRow>, StoreError> {
        let sql = format!("{DEVICE_SELECT} WHERE seq > ?1 ORDER BY seq LIMIT ?2");
        self.rows(&sql, [sql_u64(seq), sql_limit(limit)], device_row)
    }
}
