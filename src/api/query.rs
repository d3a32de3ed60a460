//! `POST /unipay/query/payOrder`: one order of the caller's app, as `PayOrderResult`.

use crate::api::Call;
use crate::error::Error;
use crate::gateway::Gateway;
use crate::wire;

pub fn handle(gw: &Gateway, call: &Call) -> Result<Option<String>, Error> {
    let key = wire::order_key(&call.params)?;
    let order = gw
        .store
        .find_order(&call.app.app_id, &key)?
        .ok_or(Error::OrderNotFound)?;
    Ok(Some(wire::order_data(&order, gw.offset)))
}
