//! Alipay's signing rules, pure: the canonical string of a request (RSA2 over it), the bytes a
//! gateway reply's signature covers (the raw-substring rule), and the canonical string of a
//! payment notification (the "V1" rule). Tested against the published vectors.

use serde_json::{Map, Value};

/// The string a request's `sign` covers: every parameter but `sign` (`sign_type` included),
/// empty values left out, sorted by key bytes, `key=value` joined by `&`, raw UTF-8.
pub fn request_content(params: &[(&str, &str)]) -> String {
    let mut pairs: Vec<&(&str, &str)> = params
        .iter()
        .filter(|(k, v)| *k != "sign" && !v.is_empty())
        .collect();
    pairs.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    join(pairs.into_iter().map(|(k, v)| (*k, *v)))
}

/// The strings a payment notification's `sign` may cover (the V1 rule: `sign` and `sign_type`
/// dropped, sorted, form-decoded values): first with empty values kept, then without them
/// (Alipay's implementations differ; either is covered by Alipay's signature).
pub fn notice_contents(params: &[(String, String)]) -> [String; 2] {
    let mut pairs: Vec<(&str, &str)> = params
        .iter()
        .filter(|(k, _)| k != "sign" && k != "sign_type")
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    pairs.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    let all = join(pairs.iter().copied());
    let non_empty = join(pairs.iter().copied().filter(|(_, v)| !v.is_empty()));
    [all, non_empty]
}

fn join<'a>(pairs: impl Iterator<Item = (&'a str, &'a str)>) -> String {
    let mut out = String::new();
    for (k, v) in pairs {
        if !out.is_empty() {
            out.push('&');
        }
        out.push_str(k);
        out.push('=');
        out.push_str(v);
    }
    out
}

/// The node of a gateway reply: its exact bytes (what the signature covers), its fields, and
/// the reply's `sign` if it has one.
#[derive(Debug, Clone, PartialEq)]
pub struct Node<'a> {
    pub raw: &'a [u8],
    pub fields: Map<String, Value>,
    pub sign: Option<String>,
}

/// Finds the node `name` (e.g. `alipay_trade_close_response`, else `error_response`) in a
/// gateway reply, by the raw-substring rule: the bytes of the JSON object that is the node's
/// value, as sent (never re-serialised: `\/` stays). A reply whose node name appears twice is
/// refused, as Alipay's Java SDK refuses it.
pub fn find_node<'a>(body: &'a [u8], name: &str) -> Result<Node<'a>, String> {
    let whole: Value =
        serde_json::from_slice(body).map_err(|_| "the reply is not JSON".to_string())?;
    let Value::Object(top) = whole else {
        return Err("the reply is not a JSON object".into());
    };
    let name = if top.contains_key(name) {
        name
    } else if top.contains_key("error_response") {
        "error_response"
    } else {
        return Err(format!("the reply has no {name}"));
    };
    let (start, end) = node_span(body, name).ok_or("the reply's node cannot be delimited")?;
    let key = format!("\"{name}\"");
    if find(&body[end..], key.as_bytes()).is_some() {
        return Err(format!("the reply has {name} twice"));
    }
    let raw = &body[start..end];
    let fields = match serde_json::from_slice::<Value>(raw) {
        Ok(Value::Object(map)) => map,
        _ => return Err("the reply's node is not a JSON object".into()),
    };
    let sign = top.get("sign").and_then(Value::as_str).map(str::to_string);
    Ok(Node { raw, fields, sign })
}

/// The byte range of the object that follows `"name"` and a colon: from its `{` to the
/// matching `}`, counting braces outside strings.
fn node_span(body: &[u8], name: &str) -> Option<(usize, usize)> {
    let key = format!("\"{name}\"");
    let at = find(body, key.as_bytes())? + key.len();
    let mut i = at;
    while body.get(i)?.is_ascii_whitespace() {
        i += 1;
    }
    if body[i] != b':' {
        return None;
    }
    i += 1;
    while body.get(i)?.is_ascii_whitespace() {
        i += 1;
    }
    if body[i] != b'{' {
        return None;
    }
    let start = i;
    let (mut depth, mut in_str, mut escaped) = (0usize, false, false);
    for (j, &b) in body.iter().enumerate().skip(start) {
        if in_str {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_str = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_str = true,
            b'{' => depth += 1,
            b'}' => {
                depth -= 1;
                if depth == 0 {
                    return Some((start, j + 1));
                }
            }
            _ => {}
        }
    }
    None
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::channel::keys::{PrivateKey, PublicKey};

    const FIX: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/alipay");

    fn key(name: &str) -> String {
        std::fs::read_to_string(format!("{FIX}/{name}")).unwrap()
    }

    fn as1_params(method: &'static str) -> Vec<(&'static str, &'static str)> {
        vec![
            ("app_id", "2021000122671080"),
            ("method", method),
            ("format", "json"),
            ("charset", "utf-8"),
            ("sign_type", "RSA2"),
            ("timestamp", "2024-01-01 12:00:00"),
            ("version", "1.0"),
            ("biz_content", r#"{"out_trade_no":"P2024010112000001"}"#),
        ]
    }

    #[test]
    fn as1_as2_request_signatures_match_the_sdks() {
        let cases = [
            ("alipay.trade.close", "FQcMfkijvh42t0YXLTkn26LshpGclFYNXuB4W3m/RC0vtruEcJf5PsysQktwtz6WF8TvsNJM6+ovBJuD394eLfqeUWRi0bt7hdS38s9ZSzSV1M4T3r4qJkyNSReB4tkziZLHZ2fD6EwSyhvsygdz+KvODLNwLxoUKRrx3ElKg0+7jsynGP5iU3xIMoUkQFmd2mFW6RI9gZMGcFSV7CJdEYdEbaNMID5G7Do3w83fWCJIJnoctgfkdJ/mIY+0ZgBbuEPVwiiCPG8Vxo+/d3nYjkS92tv3rZBE3fN6bpVT5tgD3QUL7KKMrNfbr+AqcANux8y7TlnAToOtMaR/IzSA9w=="),
            ("alipay.trade.query", "TcfMnHic10R1pdsO/JjUQcWkho+m5+bHW+xiMFuEdKpZdNczoE1MOkKLLdZjpG2tUfNUi/GyWKKEef7kAf1lnlPYJqTRquxtyl8SYs5qornzXTvvdH5+0fFZe8Y7PRtQX+wYEP//J3wrs3XvaL7hoadMrOHpvOt8Y3AMc8DVuRxg9WzJzDYaEHWYX+w27C+GHYLb6AHmJhwnGd19DHvD1JbgFYI6F9nSucZD2RtYcjImfYmSiQArGxrOA3eFhtTRROVs3zMpXqxEcBYIeaTYSXqJXkztRb1xOop+qWxBCFGBH0fsmZDMabKhj/CJ8juV/fkn6XEeQaHeH+Roij2MtA=="),
        ];
        let pkcs1 = PrivateKey::parse(&key("app-private-key.pem")).unwrap();
        let pkcs8 = PrivateKey::parse(&key("app-private-key-pkcs8.pem")).unwrap();
        let public = PublicKey::parse(&key("app-public-key.pem")).unwrap();
        for (method, want) in cases {
            let content = request_content(&as1_params(method));
            assert_eq!(
                content,
                format!(
                    "app_id=2021000122671080&biz_content={{\"out_trade_no\":\"P2024010112000001\"}}&charset=utf-8&format=json&method={method}&sign_type=RSA2&timestamp=2024-01-01 12:00:00&version=1.0"
                )
            );
            assert_eq!(pkcs1.sign_b64(content.as_bytes()), want);
            assert_eq!(pkcs8.sign_b64(content.as_bytes()), want);
            assert!(public.verify_b64(content.as_bytes(), want));
        }
        // `sign` and empty values are not signed.
        let mut with = as1_params("alipay.trade.close");
        with.push(("sign", "x"));
        with.push(("notify_url", ""));
        assert_eq!(
            request_content(&with),
            request_content(&as1_params("alipay.trade.close"))
        );
    }

    #[test]
    fn ar1_ar2_reply_nodes_verify_as_sent() {
        let ar1 = br#"{"alipay_open_file_upload_response":{"code":"10000","msg":"Success","file_id":"CAxAToWB1JsAAAAAAAAAAAAADgSLAQBr"},"sign":"F+LDzpTNiavn7xVZPGuPCSSVRSmWzJGgtuji6tVELGEaqMaNj0jRKXUEr5nloZJBBmwEnddOyCjjepMmrTKTvoOqQ0Efxpr/R1iEeHTHVbb/Q8TTh6Up5gHJDkILdaWS2q1cWeQ6VT+HQY9P3WRXS7uhILHuDODIhpAyCu5KhWGt0rMCIG+Im6NODJP2oohtSCtmTFXg58HH587Z2y2bdbjzOxLvzD9IrU1imghXQ2S/Q+wMIvRk9on6cWnBLkrNvJKapA2ReNGWOwyuASvB9zDVzhMPbR+3mfRGkVDxsq5HYLjBKGskJMXHw0HuugZij6ScRuaLPODhmHwr/pJ9yw=="}"#;
        let public = PublicKey::parse(&key("alipay-public-key.pem")).unwrap();
        let node = find_node(ar1, "alipay_open_file_upload_response").unwrap();
        assert_eq!(
            node.raw,
            br#"{"code":"10000","msg":"Success","file_id":"CAxAToWB1JsAAAAAAAAAAAAADgSLAQBr"}"#
        );
        assert!(public.verify_b64(node.raw, node.sign.as_deref().unwrap()));
        assert_eq!(node.fields["code"], "10000");
        // Re-serialised, the same object does not verify.
        let again = br#"{"code": "10000", "msg": "Success", "file_id": "CAxAToWB1JsAAAAAAAAAAAAADgSLAQBr"}"#;
        assert!(!public.verify_b64(again, node.sign.as_deref().unwrap()));

        let ar2 = r#"{"alipay_security_risk_content_analyze_response":{"code":"40003","msg":"Insufficient Conditions","sub_code":"isv.decryption-error-unknown","sub_msg":"解密出错, 未知错误"},"sign":"fpPCfGS+MLqJzK0Q/W61pNMXMLBogtCxyl0ZiEtOzTKWZBC7hiXe9AGOML0hoXQkJshlRgz8dUPvQNapuZff5TNu16/Va/4bnwLW1V1Og7KaAYlD9jbQPFLJv+YFM3SAXmylLVMatKMbEy2Cb3vn6FVpDrqTspUjhcPH7ACUirIcriFR+FhT9yGypLeOm2wYto0t59H5k5FlcsepdUReBcXP0UbglwjUOHh9TX3/VNQk3s6zoxhUC4ep570gmycEHwg4H1lSJky8M/FADUBr3gd8rynz3S+CbfPaOJoGKraeSzR2iA1bIu1fUN7GjI1wZjR8PfiQI2joNn+Z9OxUgw=="}"#;
        let stable = PublicKey::parse(&key("alipay_stable_rsa2_public_key.pem")).unwrap();
        let node = find_node(
            ar2.as_bytes(),
            "alipay_security_risk_content_analyze_response",
        )
        .unwrap();
        assert!(stable.verify_b64(node.raw, node.sign.as_deref().unwrap()));
        assert_eq!(node.fields["sub_msg"], "解密出错, 未知错误");
        let escaped = br#"{"code":"40003","msg":"Insufficient Conditions","sub_code":"isv.decryption-error-unknown","sub_msg":"\u89e3\u5bc6\u51fa\u9519, \u672a\u77e5\u9519\u8bef"}"#;
        assert!(!stable.verify_b64(escaped, node.sign.as_deref().unwrap()));
    }

    #[test]
    fn nodes_are_found_by_brace_matching_and_duplicates_refused() {
        let body = br#"{"x_response":{"a":"}{\"","b":{"c":"http:\/\/q"}},"sign":"S"}"#;
        let node = find_node(body, "x_response").unwrap();
        assert_eq!(node.raw, br#"{"a":"}{\"","b":{"c":"http:\/\/q"}}"#);
        assert_eq!(node.sign.as_deref(), Some("S"));
        let unsigned = find_node(br#"{"x_response":{"code":"10000"}}"#, "x_response").unwrap();
        assert_eq!(unsigned.sign, None);
        let twice = br#"{"x_response":{"code":"10000"},"x_response":{"code":"10000"},"sign":"S"}"#;
        assert!(find_node(twice, "x_response").is_err());
        let error = find_node(br#"{"error_response":{"code":"40002"}}"#, "x_response").unwrap();
        assert_eq!(error.fields["code"], "40002");
        assert!(find_node(b"<html>", "x_response").is_err());
        assert!(find_node(br#"{"y":1}"#, "x_response").is_err());
    }

    #[test]
    fn an1_notification_verifies_only_with_sign_type_dropped() {
        let sign = "QfTb8tqE1BMhS5qAnXtvsF3/jBkEvu9q9en0pdbBUDDjvKycZhQb7h8GDs4FKfi049PynaNuatxSgLb/nLWZpXyyh0LEWdK2S6Ri7nPwrVgOs08zugLO20vOQz44y3ti2Ncm8/wZts1Fr2gZ7pShnVX3d1B50hbsXnObT1r/U8ONNQjWXd0HIul4TG+Q3fm3svmSvFEy0WnzuhcyHPX5Gm4ELNctL6Qd5YniGJFNcc7kopHYtI/XD9YCKCH6Ct02rzUs9i11C9CsadtZn+WhxF26Dqt9sGEFajkJ8cxUTLi8+VCpLHsgPE8P0y095uQcDdK0YjCh4x7wVSov+lrmOQ==";
        let fields = [
            ("gmt_create", "2019-08-15 15:56:22"),
            ("charset", "utf-8"),
            ("seller_email", "z97-yuquerevenue@service.aliyun.com"),
            ("subject", "语雀空间 500人规模"),
            ("sign", sign),
            ("buyer_id", "2088102534368455"),
            ("invoice_amount", "0.10"),
            ("notify_id", "2019081500222155624068450559358070"),
            (
                "fund_bill_list",
                r#"[{"amount":"0.10","fundChannel":"ALIPAYACCOUNT"}]"#,
            ),
            ("notify_type", "trade_status_sync"),
            ("trade_status", "TRADE_SUCCESS"),
            ("receipt_amount", "0.10"),
            ("buyer_pay_amount", "0.10"),
            ("app_id", "2019073166072302"),
            ("sign_type", "RSA2"),
            ("seller_id", "2088531891668739"),
            ("gmt_payment", "2019-08-15 15:56:24"),
            ("notify_time", "2019-08-15 15:56:25"),
            ("version", "1.0"),
            ("out_trade_no", "20190815155618536-564-57"),
            ("total_amount", "0.10"),
            ("trade_no", "2019081522001468450512505578"),
            ("auth_app_id", "2019073166072302"),
            ("buyer_logon_id", "xud***@126.com"),
            ("point_amount", "0.00"),
        ];
        let params: Vec<(String, String)> = fields
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let public = PublicKey::parse(&key("alipay-notify-v1-public-key.pem")).unwrap();
        let [content, _] = notice_contents(&params);
        assert!(
            content.starts_with("app_id=2019073166072302&auth_app_id="),
            "{content}"
        );
        assert!(public.verify_b64(content.as_bytes(), sign));
        // With sign_type kept, or a changed amount, it does not verify.
        assert!(!public.verify_b64(format!("{content}&sign_type=RSA2").as_bytes(), sign));
        let tampered: Vec<(String, String)> = params
            .iter()
            .map(|(k, v)| match k.as_str() {
                "total_amount" => (k.clone(), "0.11".to_string()),
                _ => (k.clone(), v.clone()),
            })
            .collect();
        let [content, _] = notice_contents(&tampered);
        assert!(!public.verify_b64(content.as_bytes(), sign));
    }

    /// A reply node is found with whitespace on either side of its colon, as a JSON writer
    /// other than Alipay's own may put it (kills `i += 1` with `-=` or `*=` in `node_span`).
    #[test]
    fn a_reply_node_is_delimited_with_whitespace_around_its_colon() {
        let body =
            br#"{"alipay_trade_query_response" :  {"code":"10000","msg":"Success"},"sign":"x"}"#;
        let (start, end) = node_span(body, "alipay_trade_query_response").unwrap();
        assert_eq!(&body[start..end], br#"{"code":"10000","msg":"Success"}"#);
        let tight = br#"{"n":{"a":"}"},"sign":"x"}"#;
        let (start, end) = node_span(tight, "n").unwrap();
        assert_eq!(&tight[start..end], br#"{"a":"}"}"#);
    }
}
