//! WeChat Pay API v3's signing rules, pure: the request signature (`WECHATPAY2-SHA256-RSA2048`
//! over `METHOD\nURL\nTIMESTAMP\nNONCE\nBODY\n`), the verification of replies and
//! notifications (`TIMESTAMP\nNONCE\nBODY\n` with WeChat Pay's public key, its ID, a 5-minute
//! window, no `WECHATPAY/SIGNTEST/` probe), the JSAPI `paySign`, and the decryption of a
//! notification's resource (AES-GCM with the APIv3 key). Tested against the published vectors.

use serde_json::Value;

use crate::channel::keys::{aes_gcm_open, unb64, PrivateKey, PublicKey};

/// How far a reply's or a notification's timestamp may be from now, in seconds.
pub const MAX_SKEW_SECS: i64 = 5 * 60;

/// The prefix of the signatures WeChat sends now and then to check that they are verified.
pub const PROBE_PREFIX: &str = "WECHATPAY/SIGNTEST/";

/// The message a request's signature covers. `url` is the path and query exactly as sent;
/// `body` the exact bytes sent (empty for a GET).
pub fn request_message(
    method: &str,
    url: &str,
    timestamp: i64,
    nonce: &str,
    body: &[u8],
) -> Vec<u8> {
    let mut m = format!("{method}\n{url}\n{timestamp}\n{nonce}\n").into_bytes();
    m.extend_from_slice(body);
    m.push(b'\n');
    m
}

/// The `Authorization` header of a request.
#[allow(clippy::too_many_arguments)]
pub fn authorization(
    key: &PrivateKey,
    mchid: &str,
    serial_no: &str,
    method: &str,
    url: &str,
    timestamp: i64,
    nonce: &str,
    body: &[u8],
) -> String {
    let signature = key.sign_b64(&request_message(method, url, timestamp, nonce, body));
    format!(
        "WECHATPAY2-SHA256-RSA2048 mchid=\"{mchid}\",nonce_str=\"{nonce}\",signature=\"{signature}\",timestamp=\"{timestamp}\",serial_no=\"{serial_no}\""
    )
}

/// The signature headers of a reply or a notification.
#[derive(Debug, Clone, Copy)]
pub struct Signed<'a> {
    pub timestamp: Option<&'a str>,
    pub nonce: Option<&'a str>,
    pub signature: Option<&'a str>,
    pub serial: Option<&'a str>,
}

/// A serial or key ID as compared: trimmed, upper-case, a hex serial without leading zeros.
fn normal_id(id: &str) -> String {
    let id = id.trim().to_ascii_uppercase();
    if id.chars().all(|c| c.is_ascii_hexdigit()) {
        let trimmed = id.trim_start_matches('0');
        return trimmed.to_string();
    }
    id
}

/// Verifies a reply or a notification: signed by the key with ID `key_id`, over
/// `TIMESTAMP\nNONCE\nBODY\n` (for an empty body, the last line is just `\n`), at most
/// `MAX_SKEW_SECS` from `now_secs`. The error says why not.
pub fn verify(
    key: &PublicKey,
    key_id: &str,
    signed: &Signed,
    body: &[u8],
    now_secs: i64,
) -> Result<(), &'static str> {
    let (Some(ts), Some(nonce), Some(signature)) =
        (signed.timestamp, signed.nonce, signed.signature)
    else {
        return Err("no signature headers");
    };
    if signature.starts_with(PROBE_PREFIX) {
        return Err("a WECHATPAY/SIGNTEST/ probe signature");
    }
    if signed.serial.map(normal_id) != Some(normal_id(key_id)) {
        return Err("Wechatpay-Serial is not the configured public key ID");
    }
    let ts_secs: i64 = ts
        .trim()
        .parse()
        .map_err(|_| "Wechatpay-Timestamp is not a number")?;
    if (now_secs - ts_secs).abs() >= MAX_SKEW_SECS {
        return Err("Wechatpay-Timestamp is more than 5 minutes off");
    }
    let mut message = format!("{ts}\n{nonce}\n").into_bytes();
    message.extend_from_slice(body);
    message.push(b'\n');
    if !key.verify_b64(&message, signature) {
        return Err("the signature does not verify");
    }
    Ok(())
}

/// The JSAPI `paySign`: the merchant key's signature of `appId\ntimeStamp\nnonceStr\npackage\n`.
pub fn pay_sign(
    key: &PrivateKey,
    app_id: &str,
    timestamp: &str,
    nonce: &str,
    package: &str,
) -> String {
    key.sign_b64(format!("{app_id}\n{timestamp}\n{nonce}\n{package}\n").as_bytes())
}

/// Decrypts a notification's `resource` (`ciphertext`, `nonce`, `associated_data`) with the
/// APIv3 key: AES-128- or AES-256-GCM by the key's length, the tag checked.
pub fn decrypt_resource(apiv3_key: &[u8], resource: &Value) -> Result<Vec<u8>, &'static str> {
    let text = |k: &str| resource.get(k).and_then(Value::as_str);
    let ciphertext = text("ciphertext").ok_or("no ciphertext")?;
    let nonce = text("nonce").ok_or("no nonce")?;
    let aad = text("associated_data").unwrap_or("");
    let ciphertext = unb64(ciphertext).ok_or("the ciphertext is not base64")?;
    aes_gcm_open(apiv3_key, nonce.as_bytes(), aad.as_bytes(), &ciphertext)
        .ok_or("the resource does not decrypt (key, nonce, associated data or tag)")
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIX: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/wechat");

    fn fixture(name: &str) -> String {
        std::fs::read_to_string(format!("{FIX}/{name}")).unwrap()
    }

    const W2_SIGNATURE: &str = "tJHIiIS9eB2hAYstmAmbbD3ZE5LiIm/Ug5tuL4fC0YOFRWIHV39UFIZXC0e9Wl6lBu6sKvkqDkzpqzBsVHyXFlbYZTOQrVdG4b6LfTnK4mikv9++ixJMd3vTf2yCqvBkh98zs3Ds5zsYQakzbcwhmw4fMJs4nPLws28H0UW9FjDR//rxELLwXvV1VEA1IBLX70xptjL8hrfUjEE8kkry6yNJTHZRU8CAc7qHli2Ng1V1qb9ARbK8A3ThmFmPQvRGrapI/jS2laKKgYUmfdEdkNO6B2Cke5e8VTxY406ArAmQ90GAihDwIcb16TQMnzCMBoutnwZKNiKRACrFmtxw2Q==";
    const W2_BODY: &str = r#"{"id":"3119dfba-e649-5eec-ab1e-3412bc4d2e17","create_time":"2021-06-24T16:37:26+08:00","resource_type":"encrypt-resource","event_type":"PAYSCORE.USER_OPEN_SERVICE","summary":"签约成功","resource":{"original_type":"payscore","algorithm":"AEAD_AES_256_GCM","ciphertext":"YDS3lKPaC4Y52Gf3uhft5qUBlIa8b428AWTtTauHQfQrRw+X1WpiuHIDy0vo1Vd6VEq67aVyqPdDYMkRVSDaZL3iZttevRMOoPKMifozg6XPWjIZumks/GpT48lI4NizyeaqLBokNebthah3o1H76qSlO9NkDjp9bzmKLEYYH9TEklFUpsvPqOTOcgSLgh21YJXYR7dEBXFgRLiNIKRgO5JdXh1hccRUAlyVWxE54PXpnQ==","associated_data":"payscore","nonce":"Kj7QIyUiYx1q"}}"#;

    fn w2_headers(signature: &str) -> Signed<'_> {
        Signed {
            timestamp: Some("1624523846"),
            nonce: Some("EcZ9Cmy4Xyx1i6RlJQzLcCyEqDa26NBz"),
            signature: Some(signature),
            serial: Some("D7CE59D1F522D701"),
        }
    }

    #[test]
    fn w2_notification_signature_with_the_clock_of_its_day() {
        use sha2::{Digest, Sha256};
        assert_eq!(W2_BODY.len(), 568);
        let digest: String = Sha256::digest(W2_BODY.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(
            digest,
            "b6fdfc5e4afdc463950d873c4fdc3c494df05965016225c6a1e8e2e887cdc94d"
        );
        let key = PublicKey::parse(&fixture("wechatpay-go-platform-cert.pem")).unwrap();
        let at = 1624523846 + 10;
        let body = W2_BODY.as_bytes();
        assert_eq!(
            verify(
                &key,
                "D7CE59D1F522D701",
                &w2_headers(W2_SIGNATURE),
                body,
                at
            ),
            Ok(())
        );
        // The same ID with leading zeros (a DER serial), lower case: the same key.
        assert_eq!(
            verify(
                &key,
                "00d7ce59d1f522d701",
                &w2_headers(W2_SIGNATURE),
                body,
                at
            ),
            Ok(())
        );
        // Five minutes later it is stale; a probe, another key ID, a changed byte all fail.
        assert!(verify(
            &key,
            "D7CE59D1F522D701",
            &w2_headers(W2_SIGNATURE),
            body,
            at + 300
        )
        .is_err());
        let probe = format!("{PROBE_PREFIX}{W2_SIGNATURE}");
        assert!(verify(&key, "D7CE59D1F522D701", &w2_headers(&probe), body, at).is_err());
        assert!(verify(&key, "PUB_KEY_ID_0001", &w2_headers(W2_SIGNATURE), body, at).is_err());
        let mut changed = body.to_vec();
        changed[100] ^= 1;
        assert!(verify(
            &key,
            "D7CE59D1F522D701",
            &w2_headers(W2_SIGNATURE),
            &changed,
            at
        )
        .is_err());
        let unsigned = Signed {
            signature: None,
            ..w2_headers(W2_SIGNATURE)
        };
        assert!(verify(&key, "D7CE59D1F522D701", &unsigned, body, at).is_err());
    }

    #[test]
    fn w3_resource_decrypts_with_a_16_byte_key() {
        let body: Value = serde_json::from_str(W2_BODY).unwrap();
        let plain = decrypt_resource(b"testMchAPIv3Key0", &body["resource"]).unwrap();
        assert_eq!(
            String::from_utf8(plain).unwrap(),
            r#"{"mchid":"1234567890","appid":"054aa7d7a2a54ab5898df65bd96f001c","create_time":"2020-06-30T12:12:00+08:00","out_contract_code":"21640bdbd08e473e828f3206a2741c6e"}"#
        );
        let mut wrong_aad = body["resource"].clone();
        wrong_aad["associated_data"] = "transaction".into();
        assert!(decrypt_resource(b"testMchAPIv3Key0", &wrong_aad).is_err());
        assert!(decrypt_resource(b"testMchAPIv3Key1", &body["resource"]).is_err());
    }

    #[test]
    fn requests_are_signed_over_five_lines() {
        let key = PrivateKey::parse(&fixture("wechatpay-go-merchant-private-key.pem")).unwrap();
        let public = PublicKey::parse(&fixture("wechatpay-go-platform-cert.pem")).unwrap();
        let msg = request_message(
            "GET",
            "/v3/certificates?x=1",
            1554208460,
            "593BEC0C930BF1AFEB40B4A08C8FB242",
            b"",
        );
        assert_eq!(
            String::from_utf8(msg.clone()).unwrap(),
            "GET\n/v3/certificates?x=1\n1554208460\n593BEC0C930BF1AFEB40B4A08C8FB242\n\n"
        );
        let header = authorization(
            &key,
            "1900009191",
            "SERIAL",
            "GET",
            "/v3/certificates?x=1",
            1554208460,
            "593BEC0C930BF1AFEB40B4A08C8FB242",
            b"",
        );
        let signature = header
            .split("signature=\"")
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap();
        assert!(public.verify_b64(&msg, signature));
        assert!(header.starts_with("WECHATPAY2-SHA256-RSA2048 mchid=\"1900009191\","));
        let paid = pay_sign(
            &key,
            "wx8888888888888888",
            "1414561699",
            "5K8264ILTKCH16CQ2502SI8ZNMTM67VS",
            "prepay_id=wx201410272009395522657a690389285100",
        );
        assert!(public.verify_b64(b"wx8888888888888888\n1414561699\n5K8264ILTKCH16CQ2502SI8ZNMTM67VS\nprepay_id=wx201410272009395522657a690389285100\n", &paid));
    }
}
