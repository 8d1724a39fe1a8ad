//! The subcommands that are plain HTTP requests: `devices` and `latest`
//! (every page of a list) and `ack` (one POST).

use crate::fail::Fail;
use crate::http::Hub;
use crate::output::{ack_text, devices_table, latest_table, now_ms, out};
use telltale_types::{AckRequest, Alert, Device, Latest};

/// `telltale devices`.
pub async fn devices(hub: &Hub, json: bool) -> Result<i32, Fail> {
    let mut pages = Vec::new();
    let items: Vec<Device> = hub.list("/v1/devices", &[], &mut pages).await?;
    if json {
        for p in pages {
            out(p.trim_end())?;
        }
    } else if items.is_empty() {
        out("no devices: the hub has not heard from any")?;
    } else {
        out(devices_table(&items, now_ms()).trim_end())?;
    }
    Ok(0)
}

/// `telltale latest`.
pub async fn latest(
    hub: &Hub,
    device: Option<String>,
    metric: Option<String>,
    json: bool,
) -> Result<i32, Fail> {
    let mut query = Vec::new();
    if let Some(d) = &device {
        query.push(("device", d.as_str()));
    }
    if let Some(m) = &metric {
        query.push(("metric", m.as_str()));
    }
    let mut pages = Vec::new();
    let items: Vec<Latest> = hub.list("/v1/latest", &query, &mut pages).await?;
    if json {
        for p in pages {
            out(p.trim_end())?;
        }
    } else if items.is_empty() {
        out("no values")?;
    } else {
        out(latest_table(&items, now_ms()).trim_end())?;
    }
    Ok(0)
}

/// `telltale ack`.
pub async fn ack(
    hub: &Hub,
    alert: u64,
    by: Option<String>,
    note: Option<String>,
) -> Result<i32, Fail> {
    let body = AckRequest { by, note };
    let a: Alert = hub.post(&format!("/v1/alerts/{alert}/ack"), &body).await?;
    out(&ack_text(&a))?;
    Ok(0)
}
