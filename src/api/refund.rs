//! `POST /unipay/refund` (give money back, `refund::Refunds`) and
//! `POST /unipay/query/refundOrder` (one refund of the caller's app, as the SDK's
//! `RefundOrderResult`).

use crate::api::Call;
use crate::error::{Error, MSG_REFUND_NOT_FOUND};
use crate::gateway::Gateway;
use crate::refund::{Asker, Refunds};
use crate::wire;

/// `/unipay/refund`: code 0 with the refund as it stands after its channel's answer (a refusal
/// is `status: fail` with `errorMsg`).
pub fn handle_refund(gw: &Gateway, call: &Call) -> Result<Option<String>, Error> {
    let input = wire::refund_input(&call.params)?;
    let common = call.params.common();
    let asker = Asker {
        client_ip: common.client_ip.map(str::to_string),
        req_time: common.req_time,
    };
    let refunds = Refunds {
        store: &gw.store,
        channels: &gw.channels,
        busy: &gw.busy,
    };
    let refund = refunds.refund(&call.app.app_id, input, asker, call.now, call.memo.as_ref())?;
    Ok(Some(wire::refund_data(&refund)))
}

/// `/unipay/query/refundOrder`.
pub fn handle_query(gw: &Gateway, call: &Call) -> Result<Option<String>, Error> {
    let key = wire::refund_key_required(&call.params)?;
    let refund = gw
        .store
        .find_refund(&call.app.app_id, &key)?
        .ok_or(Error::RefundNotFound(MSG_REFUND_NOT_FOUND))?;
    Ok(Some(wire::refund_order_data(&refund, gw.offset)))
}
