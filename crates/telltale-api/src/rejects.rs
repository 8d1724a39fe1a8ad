//! `/v1/rejects`: the payloads the hub refused, as a log collection (the
//! store keeps the newest `store.max_rejects`; a reject's id is its
//! version). Everything a collection needs is here: the object's filter
//! fields and how it is served, the store as its source, its rows as
//! objects. The counts by kind since the database was created are
//! `/metrics`' `telltale_rejects_total{reason}`.

use crate::collection::Resource;
use crate::items::{rfc3339, Object, Shape};
use crate::sources::Readers;
use std::sync::Arc;
use telltale_filter::{Field, FieldValue};
use telltale_store::RejectRow;
use telltale_types::Reject;
use telltale_watch::{Kind, Source, SourceError};

impl Shape for Reject {
    fn field(&self, f: Field<'_>) -> Option<FieldValue<'_>> {
        match f {
            Field::Device => self.device.as_deref().map(FieldValue::Str),
            _ => None,
        }
    }
}

impl Resource for Reject {
    const NAME: &'static str = "rejects";
    const LIST_KIND: &'static str = "RejectList";
    const KIND: Kind = Kind::Log;
    const SUMMARY: &'static str = "Refused payloads: list, long poll or watch";
    const DESCRIPTION: &'static str = "The payloads the hub refused, oldest first, with the reason (a log: events are `ADDED`; the store keeps the newest `store.max_rejects`, older ones answer 410). Filter with `device`. The counts by kind since the database was created are `telltale_rejects_total{reason}` on /metrics.";
}

/// A reject as the API's object.
fn object(row: RejectRow) -> Arc<Object<Reject>> {
    let seq = row.id as u64;
    let key = row.device.clone().unwrap_or_default();
    let obj = Reject {
        id: row.id,
        time: rfc3339(row.at_ms),
        topic: row.topic,
        device: row.device,
        kind: row.kind,
        reason: row.reason,
        size: row.size,
    };
    Object::make(obj, seq, key, Some(row.at_ms))
}

/// The store's rejects ring as the collection's source.
#[derive(Debug)]
pub struct RejectsSource(pub Arc<Readers>);

impl Source<Object<Reject>> for RejectsSource {
    fn after(&self, after: u64, limit: usize) -> Result<Vec<Arc<Object<Reject>>>, SourceError> {
        let rows = self.0.with(|r| r.rejects_after(after, limit))?;
        Ok(rows.into_iter().map(object).collect())
    }
    fn state(&self) -> Result<(Vec<Arc<Object<Reject>>>, u64), SourceError> {
        Ok((Vec::new(), self.last()?))
    }
    fn oldest(&self) -> Result<u64, SourceError> {
        // One below the oldest held: a resume from there has no gap.
        let (oldest, last) = self.0.with(|r| r.reject_ids())?;
        Ok(if oldest == 0 { last } else { oldest - 1 })
    }
    fn last(&self) -> Result<u64, SourceError> {
        Ok(self.0.with(|r| r.reject_ids())?.1)
    }
    fn seq_at_time(&self, ts_ms: i64) -> Result<u64, SourceError> {
        match self.0.with(|r| r.first_reject_at_or_after(ts_ms))? {
            Some(id) => Ok(id),
            None => Ok(self.last()? + 1),
        }
    }
}
