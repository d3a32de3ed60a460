//! The HTTP floor of the load generator: a tiny_http server that reads every request whole and
//! answers it with a fixed JSON reply (the bytes of a real close reply the load generator gives
//! it, or a 150-byte envelope), with as many worker threads as the machine has cores. The load
//! generator measures it with the same client, requests and settings as unipay, so that the
//! ratio of the two says what unipay's own work costs.
//!
//! Usage: `http_floor [HOST:PORT] [REPLY_FILE]` (default 127.0.0.1:0); prints
//! `listening on http://…` first.

use std::io::Write;
use std::sync::Arc;
use std::thread;

fn main() {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:0".into());
    let server = Arc::new(tiny_http::Server::http(&addr).expect("bind the floor server"));
    let bound = server.server_addr().to_ip().expect("an IP address");
    println!("listening on http://{bound}");
    std::io::stdout().flush().expect("stdout");
    let reply_file = std::env::args().nth(2);
    // 150 bytes, about the size of a close reply, when no reply is given.
    let body = format!(
        "{{\"code\":0,\"msg\":\"success\",\"data\":null,\"sign\":\"{}\",\"resTime\":\"2025-04-10 17:09:08\",\"traceId\":\"{}\"}}",
        "0".repeat(32),
        "A".repeat(12)
    );
    let body = format!("{body}{}", " ".repeat(150usize.saturating_sub(body.len())));
    let body = match reply_file {
        Some(path) => std::fs::read_to_string(&path).expect("the reply file"),
        None => body,
    };
    let workers = thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2);
    let header = tiny_http::Header::from_bytes("Content-Type", "application/json").expect("header");
    let handles: Vec<_> = (0..workers)
        .map(|_| {
            let (server, body, header) = (server.clone(), body.clone(), header.clone());
            thread::spawn(move || {
                for mut req in server.incoming_requests() {
                    let mut sink = Vec::new();
                    let _ = std::io::copy(&mut req.as_reader(), &mut sink);
                    let resp =
                        tiny_http::Response::from_string(body.clone()).with_header(header.clone());
                    let _ = req.respond(resp);
                }
            })
        })
        .collect();
    for h in handles {
        let _ = h.join();
    }
}
