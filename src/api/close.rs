//! `POST /unipay/close`: close or cancel an unpaid order of the caller's app (the close itself
//! is `close::close_order`, shared with the console and the sweeper).

use crate::api::Call;
use crate::close::close_order;
use crate::domain::{Actor, CloseRequest};
use crate::error::Error;
use crate::gateway::Gateway;
use crate::store::OrderRef;
use crate::wire;

pub fn handle(gw: &Gateway, call: &Call) -> Result<Option<String>, Error> {
    let input = wire::close_input(&call.params)?;
    let req = CloseRequest {
        actor: Actor::Api,
        client_ip: call.params.common().client_ip.map(str::to_string),
        now: call.now,
    };
    let order = OrderRef::Key {
        app_id: call.app.app_id.clone(),
        key: input.key,
    };
    close_order(
        &gw.store,
        &gw.channels,
        order,
        input.use_cancel,
        req,
        call.memo.as_ref(),
    )
    .map(|_| None)
}
