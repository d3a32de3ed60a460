//! `POST /unipay/sync/order/pay` and `POST /unipay/sync/order/refund`: ask the channel and
//! repair the order or the refund (`sync`). The reply is `{orderStatus, adjust}`, `adjust` true
//! when this call changed the status.

use crate::api::Call;
use crate::error::{Error, MSG_REFUND_SYNC_NOT_FOUND};
use crate::gateway::Gateway;
use crate::refund::Refunds;
use crate::sync::{sync_pay, sync_refund};
use crate::wire;

pub fn handle_pay(gw: &Gateway, call: &Call) -> Result<Option<String>, Error> {
    let key = wire::order_key(&call.params)?;
    let order = gw
        .store
        .find_order(&call.app.app_id, &key)?
        .ok_or(Error::OrderNotFound)?;
    let client_ip = call.params.common().client_ip.map(str::to_string);
    let synced = sync_pay(
        &gw.store,
        &gw.channels,
        &gw.busy,
        &order,
        client_ip,
        call.now,
    )?;
    Ok(Some(wire::sync_data(&synced.status, synced.adjust)))
}

pub fn handle_refund(gw: &Gateway, call: &Call) -> Result<Option<String>, Error> {
    let not_found = Error::RefundNotFound(MSG_REFUND_SYNC_NOT_FOUND);
    let key = wire::refund_key(&call.params).ok_or(not_found.clone())?;
    let refund = gw
        .store
        .find_refund(&call.app.app_id, &key)?
        .ok_or(not_found)?;
    let refunds = Refunds {
        store: &gw.store,
        channels: &gw.channels,
        busy: &gw.busy,
    };
    let client_ip = call.params.common().client_ip.map(str::to_string);
    let synced = sync_refund(&refunds, &refund, client_ip, call.now)?;
    Ok(Some(wire::sync_data(&synced.status, synced.adjust)))
}
