//! The OPD scope of each kind of object, decided in one place per kind: a
//! person held to one OPD (a `pemohon`) sees and acts only on that OPD's
//! devices, links, agents, tickets, events and measurements; an object of
//! another OPD answers exactly as a missing one does ([`ApiError::NotFound`]
//! with the same message), so its existence is not confirmed. Province
//! roles see every OPD.

use super::{ApiError, Caller};
use crate::inventory::Inventory;
use crate::sop::store::{SopStore, SopTicket};

/// The answer for a device that is missing or not the caller's.
pub fn no_device(id: &str) -> ApiError {
    ApiError::NotFound(format!("unknown device {id:?} (see `siaga devices`)"))
}

/// The answer for a ticket that is missing or not the caller's.
pub fn no_ticket(number: &str) -> ApiError {
    ApiError::NotFound(format!("no ticket {number}"))
}

/// The answer for a measurement that is missing or not the caller's.
pub fn no_measurement(id: &str) -> ApiError {
    ApiError::NotFound(format!("no measurement {id}"))
}

/// Whether an item of `opd` belongs in `caller`'s listings.
pub fn listed(caller: &Caller, opd: &str) -> bool {
    caller.sees(opd)
}

/// Device `id` of `inv`, when it exists and `caller` sees its OPD.
pub fn device<'a>(
    caller: &Caller,
    inv: &'a Inventory,
    id: &str,
) -> Result<&'a crate::inventory::Device, ApiError> {
    match inv.devices.get(id.trim()) {
        Some(d) if caller.sees(&d.opd) => Ok(d),
        _ => Err(no_device(id)),
    }
}

/// `Ok` when `caller` may read the stored samples of device `id`: one of
/// the inventory they see, or (province roles only) one no longer in the
/// inventory whose samples are still kept.
pub fn device_samples(caller: &Caller, inv: &Inventory, id: &str) -> Result<(), ApiError> {
    match inv.devices.get(id.trim()) {
        Some(d) => caller.see(&d.opd, || no_device(id).to_string()),
        None if caller.province() => Ok(()),
        None => Err(no_device(id)),
    }
}

/// Whether `caller` sees link `device`/`link` (a link is its device's).
pub fn link_listed(caller: &Caller, inv: &Inventory, device: &str) -> bool {
    inv.devices.get(device).is_some_and(|d| caller.sees(&d.opd))
}

/// Ticket `number` (as typed: trimmed, any case), when it exists and
/// `caller` sees its OPD.
pub fn ticket(caller: &Caller, store: &SopStore, number: &str) -> Result<SopTicket, ApiError> {
    let number = number.trim().to_ascii_uppercase();
    match store.get(&number) {
        Ok(t) if caller.sees(&t.info.opd) => Ok(t),
        Ok(_) | Err(crate::sop::store::StoreError::NoTicket(_)) => Err(no_ticket(&number)),
        Err(e) => Err(ApiError::internal(format!("reading ticket {number}"), e)),
    }
}

/// `Ok` when `caller` sees a measurement of `opd`.
pub fn measurement(caller: &Caller, id: &str, opd: &str) -> Result<(), ApiError> {
    caller.see(opd, || no_measurement(id).to_string())
}

/// The object a people's `Call` method names, for [`call`].
enum Named<'a> {
    Ticket(&'a str),
    Device(&'a str),
}

/// What `method` names in its JSON arguments `args`, if anything.
fn named<'a>(method: &str, args: &'a serde_json::Value) -> Option<Named<'a>> {
    let field = |k: &str| args.get(k).and_then(serde_json::Value::as_str);
    match method {
        "ticket.measure" | "ticket.measurements" => field("ticket").map(Named::Ticket),
        "device.show" => field("id").map(Named::Device),
        "measure" => field("device").map(Named::Device),
        _ => None,
    }
}

/// Before a people's `Call` runs: the ticket or device it names must exist
/// and be one `caller` sees; else the same NOT_FOUND as for a missing one.
/// Arguments that do not parse are left to the method to refuse.
pub fn call(
    caller: &Caller,
    inv: &Inventory,
    tickets: Option<&SopStore>,
    method: &str,
    json: &str,
) -> Result<(), ApiError> {
    let Ok(args) = serde_json::from_str::<serde_json::Value>(json) else {
        return Ok(());
    };
    match named(method, &args) {
        Some(Named::Ticket(number)) => match tickets {
            Some(store) => ticket(caller, store, number).map(|_| ()),
            None => Ok(()),
        },
        Some(Named::Device(id)) => device(caller, inv, id).map(|_| ()),
        None => Ok(()),
    }
}

/// After a people's `Call` answered: a listing keeps only the items of the
/// OPDs `caller` sees (`events.list`, `ticket.measurements`: items
/// carry `opd`); a measurement (`measure.get`) of another OPD is not found.
pub fn answer(
    caller: &Caller,
    method: &str,
    json: &str,
    reply: String,
) -> Result<String, ApiError> {
    if caller.province() {
        return Ok(reply);
    }
    match method {
        "events.list" | "ticket.measurements" => {
            let Ok(serde_json::Value::Array(items)) = serde_json::from_str(&reply) else {
                return Ok(reply);
            };
            let kept: Vec<serde_json::Value> = items
                .into_iter()
                .filter(|i| opd_of(i).is_some_and(|o| listed(caller, o)))
                .collect();
            Ok(serde_json::Value::Array(kept).to_string())
        }
        "measure.get" => {
            let v: serde_json::Value = serde_json::from_str(&reply).unwrap_or_default();
            let id = serde_json::from_str::<serde_json::Value>(json)
                .ok()
                .and_then(|a| a.get("id").and_then(|i| i.as_str()).map(str::to_string))
                .unwrap_or_default();
            let id = id.trim().to_ascii_uppercase();
            measurement(caller, &id, opd_of(&v).unwrap_or(""))?;
            Ok(reply)
        }
        _ => Ok(reply),
    }
}

/// The `opd` of a listed item (or of its `ticket`, for inbox items).
fn opd_of(item: &serde_json::Value) -> Option<&str> {
    item.get("opd")
        .or_else(|| item.get("ticket").and_then(|t| t.get("opd")))
        .and_then(serde_json::Value::as_str)
}
