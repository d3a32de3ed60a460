//! unipay's integration tests: the real binary, driven over HTTP and its command line.
//! One test binary; every test starts its own server on its own database.

mod helpers;

mod admin;
mod cli;
mod close;
mod errors;
mod expiry;
mod hardening;
mod http;
mod notify;
mod pay;
mod props;
mod query;
mod signature;
mod sim;
mod window;
