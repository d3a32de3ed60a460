//! `POST /unipay/query/payOrder`: one order of the caller's app, as `PayOrderResult`.

use crate::api::{Call, Gateway};
use crate::domain::OrderKey;
use crate::error::Error;
use crate::wire;

pub fn handle(gw: &Gateway, call: &Call) -> Result<Option<String>, Error> {
    let p = &call.params;
    let key = OrderKey::pick(p.str("orderNo"), p.str("bizOrderNo"), p.str("outOrderNo"))
        .ok_or_else(|| Error::Validation("支付订单号不能都为空".into()))?;
    let order = gw
        .store
        .find_order(&call.app.app_id, &key)?
        .ok_or(Error::OrderNotFound)?;
    Ok(Some(wire::order_data(&order, gw.offset)))
}
