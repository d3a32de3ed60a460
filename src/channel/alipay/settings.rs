//! An app's Alipay settings: its Alipay app id, its private key, Alipay's public key, and the
//! gateway. Stored by `unipay channel set` as a small JSON text (keys as base64 DER); read back
//! and loaded once per change (`settings::Cache`).

use serde_json::{json, Value};

use crate::channel::keys::{b64, unb64, KeyFormat, PrivateKey, PublicKey};
use crate::channel::settings::Parse;

/// Alipay's production gateway.
pub const DEFAULT_GATEWAY: &str = "https://openapi.alipay.com/gateway.do";

/// One app's Alipay settings, loaded. Its `Debug` shows no key.
#[derive(Debug)]
pub struct Settings {
    pub alipay_app_id: String,
    pub private_key: PrivateKey,
    pub alipay_public_key: PublicKey,
    pub gateway: String,
}

impl Settings {
    /// Settings from what `channel set` was given: the key files' text. A key that does not
    /// parse, or is under 2048 bits, is refused with the reason.
    pub fn from_texts(
        alipay_app_id: &str,
        private_key: &str,
        alipay_public_key: &str,
        gateway: Option<&str>,
    ) -> Result<Settings, String> {
        if alipay_app_id.trim().is_empty() {
            return Err("--alipay-app-id: must not be empty".into());
        }
        let private_key =
            PrivateKey::parse(private_key).map_err(|e| format!("--private-key-file: {e}"))?;
        let alipay_public_key = PublicKey::parse(alipay_public_key)
            .map_err(|e| format!("--alipay-public-key-file: {e}"))?;
        let gateway = gateway.unwrap_or(DEFAULT_GATEWAY).to_string();
        if !(gateway.starts_with("https://") || gateway.starts_with("http://")) {
            return Err(format!("--gateway: `{gateway}` is not an http(s) URL"));
        }
        Ok(Settings {
            alipay_app_id: alipay_app_id.trim().to_string(),
            private_key,
            alipay_public_key,
            gateway,
        })
    }

    /// The text the store keeps.
    pub fn to_stored(&self) -> String {
        let (der, format) = self.private_key.der();
        json!({
            "alipayAppId": self.alipay_app_id,
            "privateKey": b64(der),
            "privateKeyFormat": format.as_str(),
            "alipayPublicKey": b64(&self.alipay_public_key.spki_der()),
            "gateway": self.gateway,
        })
        .to_string()
    }

    /// What `channel list` shows: no private key, ever.
    pub fn public_view(stored: &str) -> Vec<(&'static str, String)> {
        let v: Value = serde_json::from_str(stored).unwrap_or(Value::Null);
        let text = |k: &str| v[k].as_str().unwrap_or("").to_string();
        vec![
            ("alipayAppId", text("alipayAppId")),
            ("gateway", text("gateway")),
        ]
    }
}

impl Parse for Settings {
    fn parse(text: &str) -> Result<Settings, String> {
        let v: Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
        let field = |k: &str| {
            v[k].as_str()
                .map(str::to_string)
                .ok_or_else(|| format!("{k} missing"))
        };
        let format = KeyFormat::parse(&field("privateKeyFormat")?).ok_or("bad privateKeyFormat")?;
        let der = unb64(&field("privateKey")?).ok_or("privateKey is not base64")?;
        let public = unb64(&field("alipayPublicKey")?).ok_or("alipayPublicKey is not base64")?;
        Ok(Settings {
            alipay_app_id: field("alipayAppId")?,
            private_key: PrivateKey::from_stored(format, &der)?,
            alipay_public_key: PublicKey::from_der(&public)?,
            gateway: field("gateway")?,
        })
    }
}
