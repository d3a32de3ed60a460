//! unipay: a one-binary payment gateway that speaks the DaxPay open-gateway protocol and keeps
//! its orders in SQLite. See ARCHITECTURE.md for the map.

pub mod admin;
pub mod api;
pub mod channel;
pub mod cli;
pub mod close;
pub mod config;
pub mod domain;
pub mod error;
pub mod expiry;
pub mod form;
pub mod gateway;
pub mod html;
pub mod http;
pub mod inflight;
pub mod metrics;
pub mod notify;
pub mod ops;
pub mod refund;
pub mod router;
pub mod sign;
pub mod signal;
pub mod stop;
pub mod store;
pub mod sync;
pub mod sys;
pub mod wire;
