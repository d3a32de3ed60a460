//! Calls to WeChat Pay's API v3: the exact JSON bytes signed and sent, `Accept` and a
//! `User-Agent` set, and every reply verified with WeChat Pay's public key (a 204 too: its body
//! is the empty line).

use serde_json::Value;

use super::settings::Settings;
use super::sign::{authorization, verify, Signed};
use crate::channel::client::{Client, Reply};

/// What unipay says it is when it calls WeChat Pay.
const USER_AGENT: &str = concat!("unipay/", env!("CARGO_PKG_VERSION"));

/// A reply of WeChat Pay, and whether its signature verified.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    /// Why the signature did not verify; `None` when it did.
    pub unverified: Option<&'static str>,
    /// The body as JSON (`Null` for a 204 or a body that is not JSON).
    pub json: Value,
}

impl Answer {
    pub fn verified(&self) -> bool {
        self.unverified.is_none()
    }

    /// A verified 2xx.
    pub fn ok(&self) -> bool {
        self.verified() && (200..300).contains(&self.status)
    }

    /// The error `code` of a 4xx/5xx (`ORDER_CLOSED`, …), verified or not.
    pub fn code(&self) -> Option<&str> {
        self.json.get("code").and_then(Value::as_str)
    }

    pub fn str(&self, name: &str) -> Option<&str> {
        self.json
            .get(name)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
    }

    /// What a merchant is told about a failure.
    pub fn message(&self) -> String {
        let msg = self.str("message").unwrap_or("");
        match self.code() {
            Some(code) => format!("{msg} (HTTP {} {code})", self.status),
            None => format!("{msg} (HTTP {})", self.status),
        }
    }
}

/// Verifies a reply's signature headers and body at `now_secs`.
pub fn verify_reply(s: &Settings, reply: &Reply, now_secs: i64) -> Result<(), &'static str> {
    let signed = Signed {
        timestamp: reply.header("wechatpay-timestamp"),
        nonce: reply.header("wechatpay-nonce"),
        signature: reply.header("wechatpay-signature"),
        serial: reply.header("wechatpay-serial"),
    };
    verify(
        &s.platform_public_key,
        &s.platform_public_key_id,
        &signed,
        &reply.body,
        now_secs,
    )
}

/// Sends one call. `path` includes the query, exactly as signed. `Err` when there is no answer
/// (a network failure, a timeout): the outcome is unknown.
pub fn call(
    client: &Client,
    s: &Settings,
    method: &str,
    path: &str,
    body: Option<&Value>,
    nonce: &str,
    now_secs: i64,
) -> Result<Answer, String> {
    let bytes = body.map(|b| b.to_string().into_bytes()).unwrap_or_default();
    let auth = authorization(
        &s.private_key,
        &s.mchid,
        &s.serial_no,
        method,
        path,
        now_secs,
        nonce,
        &bytes,
    );
    let mut headers = vec![
        ("Authorization", auth.as_str()),
        ("Accept", "application/json"),
        ("User-Agent", USER_AGENT),
    ];
    if body.is_some() {
        headers.push(("Content-Type", "application/json"));
    }
    let url = format!("{}{path}", s.base_url);
    let reply = client
        .send(method, &url, &headers, &bytes)
        .map_err(|e| format!("no answer from WeChat Pay: {e}"))?;
    let unverified = verify_reply(s, &reply, now_secs).err();
    Ok(Answer {
        status: reply.status,
        unverified,
        json: serde_json::from_slice(&reply.body).unwrap_or(Value::Null),
    })
}
