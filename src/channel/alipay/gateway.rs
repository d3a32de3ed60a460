//! Calls to Alipay's gateway (`gateway.do`): a signed form POST, and a reply whose node is
//! verified over its raw bytes with Alipay's public key. Also the signed GET URL of the page
//! methods (wap, web), which the payer's browser takes to Alipay.

use serde_json::{Map, Value};

use super::settings::Settings;
use super::sign::{find_node, request_content};
use crate::channel::client::Client;
use crate::form;
use crate::sys::{self, UtcOffset};

/// A gateway reply's node, and whether its signature verified.
#[derive(Debug, Clone)]
pub struct Reply {
    pub verified: bool,
    pub fields: Map<String, Value>,
}

impl Reply {
    pub fn str(&self, name: &str) -> Option<&str> {
        self.fields
            .get(name)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
    }

    /// A verified `10000`.
    pub fn success(&self) -> bool {
        self.verified && self.str("code") == Some("10000")
    }

    /// The business error code of a verified failure (`ACQ.TRADE_NOT_EXIST`, …).
    pub fn sub_code(&self) -> Option<&str> {
        self.str("sub_code").filter(|_| self.verified)
    }

    /// What a merchant is told about a failure: Alipay's `sub_msg`, else its `msg`.
    pub fn message(&self) -> String {
        let text = self.str("sub_msg").or(self.str("msg")).unwrap_or("");
        match (self.str("code"), self.str("sub_code")) {
            (Some(code), Some(sub)) => format!("{text} ({code} {sub})"),
            (Some(code), None) => format!("{text} ({code})"),
            _ => text.to_string(),
        }
    }
}

/// The signed parameters of a call (`sign` last).
fn signed_params(
    s: &Settings,
    method: &str,
    biz_content: &str,
    extra: &[(&str, &str)],
    now_ms: i64,
) -> Vec<(String, String)> {
    // Alipay reads `timestamp` in UTC+8 whatever the host's zone.
    let timestamp = sys::format_time(now_ms, UtcOffset::CST);
    let mut params: Vec<(&str, &str)> = vec![
        ("app_id", &s.alipay_app_id),
        ("method", method),
        ("format", "json"),
        ("charset", "utf-8"),
        ("sign_type", "RSA2"),
        ("timestamp", &timestamp),
        ("version", "1.0"),
    ];
    // Empty values are never sent: every implementation then signs the same string.
    params.extend(extra.iter().filter(|(_, v)| !v.is_empty()));
    params.push(("biz_content", biz_content));
    let sign = s.private_key.sign_b64(request_content(&params).as_bytes());
    let mut out: Vec<(String, String)> = params
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    out.push(("sign".into(), sign));
    out
}

fn encode_pairs<'a>(pairs: impl Iterator<Item = &'a (String, String)>) -> String {
    let mut out = String::new();
    for (k, v) in pairs {
        if !out.is_empty() {
            out.push('&');
        }
        out.push_str(&form::encode(k));
        out.push('=');
        out.push_str(&form::encode(v));
    }
    out
}

/// Calls `method` with `biz_content` (JSON text, sent as signed). `Err` when there is no answer
/// to read: a network failure, a timeout, a reply that is not a gateway reply. A reply that
/// does not verify comes back with `verified: false`: the caller must not act on it.
pub fn call(
    client: &Client,
    s: &Settings,
    method: &str,
    biz_content: &str,
    extra: &[(&str, &str)],
    now_ms: i64,
) -> Result<Reply, String> {
    let params = signed_params(s, method, biz_content, extra, now_ms);
    // Every parameter in the form body (the gateway merges query and body): the URL, which
    // HTTP libraries log, then carries no signature.
    let body = encode_pairs(params.iter());
    let reply = client
        .send(
            "POST",
            &s.gateway,
            &[(
                "Content-Type",
                "application/x-www-form-urlencoded;charset=utf-8",
            )],
            body.as_bytes(),
        )
        .map_err(|e| format!("no answer from Alipay: {e}"))?;
    if reply.status != 200 {
        return Err(format!("Alipay answered HTTP {}", reply.status));
    }
    let node_name = format!("{}_response", method.replace('.', "_"));
    let node = find_node(&reply.body, &node_name).map_err(|e| format!("Alipay's reply: {e}"))?;
    let verified = node
        .sign
        .as_deref()
        .is_some_and(|sig| s.alipay_public_key.verify_b64(node.raw, sig));
    Ok(Reply {
        verified,
        fields: node.fields,
    })
}

/// The signed GET URL of a page method (`alipay.trade.wap.pay`, `alipay.trade.page.pay`): the
/// gateway with every parameter, `sign` included, in the query.
pub fn page_url(
    s: &Settings,
    method: &str,
    biz_content: &str,
    extra: &[(&str, &str)],
    now_ms: i64,
) -> String {
    let params = signed_params(s, method, biz_content, extra, now_ms);
    let sep = if s.gateway.contains('?') { '&' } else { '?' };
    format!("{}{sep}{}", s.gateway, encode_pairs(params.iter()))
}
