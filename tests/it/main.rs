//! unipay's integration tests: the real binary, driven over HTTP and its command line.
//! One test binary; every test starts its own server on its own database.
//! Case tables are laid out by hand, one case per line with aligned columns, under
//! `#[rustfmt::skip]` on the smallest item that holds them (there is no `rustfmt.toml`).

mod helpers;

mod admin;
mod alipay;
mod alipay_close;
mod alipay_refund;
mod backup;
mod cli;
mod close;
mod crash;
mod errors;
mod expiry;
mod fake_alipay;
mod fake_wechat;
mod faults;
mod full_disk;
mod http;
mod lost_races;
mod malformed;
mod missing_db;
mod mutants;
mod nonce;
mod notify;
mod ops;
mod panic;
mod pay;
mod production;
mod props;
mod query;
mod refund;
mod refund_better;
mod refund_races;
mod secrets;
mod shutdown;
mod signature;
mod sim;
mod stalls;
mod wechat;
mod wechat_refund;
mod window;
