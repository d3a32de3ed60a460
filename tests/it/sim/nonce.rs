//! Requests with a `nonceStr`, and their replays (src/api/nonce.rs, src/store/nonce.rs).
//!
//! Some closes, pays and refunds carry a fresh nonce. The contract checked:
//! - a request that finished (its reply built, delivered or lost with a crash right after) has
//!   that very reply remembered, byte for byte, unless it is a system error (10500), which is
//!   never remembered;
//! - a request that crashed inside (in a channel call) remembered nothing: the crash points all
//!   come before the transaction that would remember its reply;
//! - a replay (same nonce, same body, same `reqTime`) of a remembered request gets the
//!   remembered reply, byte for byte (`traceId` and `resTime` included), and changes nothing:
//!   no second close record, refund, notice or trade;
//! - a replay of a request that crashed acts, as the first request would have; its reply is
//!   then the one remembered;
//! - the same nonce with another body is refused (10506, "nonceStr…") and changes nothing.
//!
//! The client retries at once after a crash or a lost reply half of the time; other replays
//! come at any later step, after other requests, crashes and clock jumps (within the day that
//! nonces are remembered).

use serde_json::Value;
use unipay::domain::NONCE_TTL_MS;

use super::unchanged::Allow;
use super::{count, Sent, World, APP_ID};

/// The order a nonce'd request is about: its number, or (a new order) its `bizOrderNo`.
#[derive(Debug, Clone)]
pub(super) enum Target {
    Order(String),
    Biz(String),
}

/// A request sent with a `nonceStr`.
#[derive(Debug, Clone)]
pub(super) struct Nonced {
    path: String,
    nonce: String,
    /// The body exactly as sent.
    body: Vec<u8>,
    target: Target,
    /// The reply of the first request with this nonce that finished, as remembered; `None`
    /// while every request with it crashed inside.
    reply: Option<Vec<u8>>,
    /// Whether that first reply was lost with a crash (the client never saw it).
    lost: bool,
    sent_at: i64,
}

fn code_of(reply: &[u8]) -> i64 {
    let v: Value = serde_json::from_slice(reply).expect("replies are JSON");
    v["code"].as_i64().expect("a code")
}

impl World {
    /// `post` with a fresh `nonceStr`, remembered for replays.
    pub(super) fn post_nonced(&mut self, path: &str, body: Value, target: Target) -> Option<Value> {
        let nonce = format!("N{}", self.nonced.len() + 1);
        let mut body = body;
        body["nonceStr"] = nonce.clone().into();
        let body = self.body_bytes(Some(body));
        let sent_at = self.now();
        let sent = self.send(path, "", body.clone());
        let mut entry = Nonced {
            path: path.to_string(),
            nonce: nonce.clone(),
            body,
            target,
            reply: None,
            lost: false,
            sent_at,
        };
        let answered = match sent {
            Sent::Answered(reply) => {
                entry.reply = self.remembered(&nonce, &reply);
                Some(serde_json::from_slice(&reply).expect("replies are JSON"))
            }
            Sent::Lost(reply) => {
                entry.reply = self.remembered(&nonce, &reply);
                entry.lost = entry.reply.is_some();
                if entry.lost {
                    count("nonce'd requests whose reply was lost: remembered as built");
                }
                None
            }
            Sent::Crashed => {
                entry.reply = self.remembered_after_crash(&nonce);
                None
            }
        };
        self.nonced.push(entry);
        if answered.is_none() && self.rng.chance(50) {
            count("nonce replays right after a crash or a lost reply");
            self.replay(self.nonced.len() - 1, false);
        }
        answered
    }

    /// The reply remembered for `nonce` of the app: (code, reply).
    fn nonce_row(&self, nonce: &str) -> Option<(i64, Vec<u8>)> {
        self.read()
            .query_row(
                "SELECT code, reply FROM request_nonce WHERE app_id = ?1 AND nonce = ?2",
                [APP_ID, nonce],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .ok()
    }

    /// Checks that a finished request's `reply` is the one remembered for `nonce` (a system
    /// error is not remembered); returns what a replay must get.
    fn remembered(&self, nonce: &str, reply: &[u8]) -> Option<Vec<u8>> {
        let seed = self.seed;
        let row = self.nonce_row(nonce);
        if code_of(reply) == 10500 {
            assert!(
                row.is_none(),
                "seed {seed}: a system error was remembered for {nonce}"
            );
            return None;
        }
        let Some((code, remembered)) = row else {
            panic!("seed {seed}: the reply to {nonce} was not remembered");
        };
        assert!(
            code == code_of(reply) && remembered == reply,
            "seed {seed}: {nonce} remembered another reply than it sent:\n  sent       {}\n  remembered {}",
            String::from_utf8_lossy(reply),
            String::from_utf8_lossy(&remembered)
        );
        Some(remembered)
    }

    /// What a request that crashed inside left remembered: nothing, since no crash point comes
    /// after the transaction that would remember its reply.
    fn remembered_after_crash(&self, nonce: &str) -> Option<Vec<u8>> {
        let row = self.nonce_row(nonce);
        assert!(
            row.is_none(),
            "seed {}: {nonce} crashed before its change, yet its reply is remembered",
            self.seed
        );
        count("nonce'd requests that crashed: nothing remembered");
        None
    }

    /// The client sends a nonce'd request again, or (a misuse) the nonce with another body.
    pub(super) fn op_replay(&mut self) {
        if self.nonced.is_empty() {
            return;
        }
        let i = self.rng.below(self.nonced.len() as u64) as usize;
        // Nonces are remembered for a day: later, the same one is a new request.
        if self.now() - self.nonced[i].sent_at >= NONCE_TTL_MS - 3_600_000 {
            return;
        }
        let other = self.nonced[i].reply.is_some() && self.rng.chance(20);
        self.replay(i, other);
    }

    fn replay(&mut self, i: usize, other_body: bool) {
        let e = self.nonced[i].clone();
        let seed = self.seed;
        let order_no = match &e.target {
            Target::Order(o) => Some(o.clone()),
            Target::Biz(b) => self.order_no_of(b),
        };
        let key = order_no.clone().unwrap_or_else(|| "-".into());
        let before = self.snap(&key);
        let row_before = self.nonce_row(&e.nonce);
        let body = match other_body {
            true => {
                let mut v: Value = serde_json::from_slice(&e.body).unwrap();
                v["clientIp"] = "10.9.8.7".into();
                serde_json::to_vec(&v).unwrap()
            }
            false => e.body.clone(),
        };
        let sent = self.send(&e.path, "", body);
        let (reply, lost) = match sent {
            Sent::Answered(r) => (Some(r), false),
            Sent::Lost(r) => (Some(r), true),
            Sent::Crashed => (None, false),
        };
        self.log.push(format!(
            "replay {} {} ({:?}){} -> {}",
            e.nonce,
            e.path,
            e.target,
            if other_body { " with another body" } else { "" },
            reply
                .as_deref()
                .map(String::from_utf8_lossy)
                .unwrap_or_else(|| "crash".into())
        ));
        match (reply, &e.reply) {
            (Some(r), Some(_)) if other_body => {
                let v: Value = serde_json::from_slice(&r).unwrap();
                assert!(
                    v["code"] == 10506 && v["msg"].as_str().unwrap_or("").contains("nonceStr"),
                    "seed {seed}: {} reused with another body answered {v}",
                    e.nonce
                );
                if !lost {
                    self.unchanged("a reused nonce", &key, &before, Allow::default());
                    assert!(self.nonce_row(&e.nonce) == row_before, "seed {seed}");
                    count("nonces reused with another body: refused, nothing done");
                }
            }
            (Some(r), Some(first)) => {
                assert!(
                    &r == first,
                    "seed {seed}: the replay of {} is not the first reply:\n  first  {}\n  replay {}",
                    e.nonce,
                    String::from_utf8_lossy(first),
                    String::from_utf8_lossy(&r)
                );
                if !lost {
                    // A crash right after it would have let the boot's recovery change things.
                    self.unchanged("a replay", &key, &before, Allow::default());
                    assert!(self.nonce_row(&e.nonce) == row_before, "seed {seed}");
                    count("nonce replays: the first reply, nothing done");
                }
                if e.lost {
                    count("nonce replays of a lost reply: the same bytes");
                }
            }
            (Some(r), None) => {
                // The first crashed before its change: this one acts, and is remembered.
                self.nonced[i].reply = self.remembered(&e.nonce, &r);
                self.nonced[i].lost = lost;
                count("nonce replays after a crash: acted");
                self.after_acting_replay(&e, order_no, &r);
            }
            (None, Some(_)) => panic!(
                "seed {seed}: a replay of {} reached the channel, though its reply is remembered",
                e.nonce
            ),
            (None, None) => self.nonced[i].reply = self.remembered_after_crash(&e.nonce),
        }
    }

    /// What the simulation must learn from a replay that acted.
    fn after_acting_replay(&mut self, e: &Nonced, order_no: Option<String>, reply: &[u8]) {
        match (&e.target, order_no) {
            (Target::Biz(biz), _) => {
                if let Some(no) = self.order_no_of(biz) {
                    if !self.orders.contains(&no) {
                        self.orders.push(no);
                    }
                }
            }
            (Target::Order(no), Some(_)) if e.path == "/unipay/close" && code_of(reply) == 0 => {
                let status = self.status_of(no);
                assert!(
                    matches!(status.as_str(), "close" | "cancel"),
                    "seed {}: a code-0 close left {no} {status}",
                    self.seed
                );
                self.closed_ok.insert(no.clone(), status);
            }
            _ => {}
        }
    }
}
