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

/// Ticket `number`, when it exists and `caller` sees its OPD.
pub fn ticket(
    caller: &Caller,
    store: &SopStore,
    number: &crate::sop::TicketNumber,
) -> Result<SopTicket, ApiError> {
    match store.get(number.as_str()) {
        Ok(t) if caller.sees(&t.info.opd) => Ok(t),
        Ok(_) | Err(crate::sop::store::StoreError::NoTicket(_)) => Err(no_ticket(number.as_str())),
        Err(e) => Err(ApiError::internal(format!("reading ticket {number}"), e)),
    }
}

/// `Ok` when `caller` sees a measurement of `opd`.
pub fn measurement(caller: &Caller, id: &str, opd: &str) -> Result<(), ApiError> {
    caller.see(opd, || no_measurement(id).to_string())
}
