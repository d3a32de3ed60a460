//! An app's WeChat Pay settings (直连商户, API v3): the merchant id and the WeChat app id, the
//! merchant's API key and its certificate serial, the APIv3 key, WeChat Pay's public key and its
//! ID, the base URL. Stored by `unipay channel set` as a small JSON text (keys as base64).

use serde_json::{json, Value};

use crate::channel::keys::{b64, unb64, KeyFormat, PrivateKey, PublicKey};
use crate::channel::settings::Parse;

/// WeChat Pay's API.
pub const DEFAULT_BASE_URL: &str = "https://api.mch.weixin.qq.com";

/// One app's WeChat Pay settings, loaded. Its `Debug` shows no key.
pub struct Settings {
    pub mchid: String,
    pub appid: String,
    /// The merchant API certificate's serial (upper-case hex).
    pub serial_no: String,
    pub private_key: PrivateKey,
    /// 32 bytes (a 16-byte key also works: some published vectors use one).
    pub apiv3_key: Vec<u8>,
    pub platform_public_key: PublicKey,
    /// What `Wechatpay-Serial` carries for that key (`PUB_KEY_ID_…`).
    pub platform_public_key_id: String,
    pub base_url: String,
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("mchid", &self.mchid)
            .field("appid", &self.appid)
            .field("serial_no", &self.serial_no)
            .field("platform_public_key_id", &self.platform_public_key_id)
            .field("base_url", &self.base_url)
            .finish_non_exhaustive()
    }
}

/// What `channel set wechat_pay` was given (the files' text, not their names).
pub struct Given<'a> {
    pub mchid: &'a str,
    pub wx_appid: &'a str,
    pub serial_no: &'a str,
    pub private_key: &'a str,
    pub apiv3_key: &'a str,
    pub platform_public_key: &'a str,
    pub platform_public_key_id: &'a str,
    pub base_url: Option<&'a str>,
}

impl Settings {
    /// Checks and loads what `channel set` was given; the error names the flag.
    pub fn from_given(g: &Given) -> Result<Settings, String> {
        let non_empty = |v: &str, flag: &str| {
            let v = v.trim();
            match v.is_empty() {
                true => Err(format!("{flag}: must not be empty")),
                false => Ok(v.to_string()),
            }
        };
        let private_key =
            PrivateKey::parse(g.private_key).map_err(|e| format!("--private-key-file: {e}"))?;
        let platform_public_key = PublicKey::parse(g.platform_public_key)
            .map_err(|e| format!("--platform-public-key-file: {e}"))?;
        let apiv3_key = g.apiv3_key.trim().as_bytes().to_vec();
        if apiv3_key.len() != 32 && apiv3_key.len() != 16 {
            return Err(format!(
                "--apiv3-key-file: the APIv3 key has {} bytes; it must have 32 (or 16)",
                apiv3_key.len()
            ));
        }
        let base_url = g.base_url.unwrap_or(DEFAULT_BASE_URL).trim_end_matches('/');
        if !(base_url.starts_with("https://") || base_url.starts_with("http://")) {
            return Err(format!("--base-url: `{base_url}` is not an http(s) URL"));
        }
        Ok(Settings {
            mchid: non_empty(g.mchid, "--mchid")?,
            appid: non_empty(g.wx_appid, "--wx-appid")?,
            serial_no: non_empty(g.serial_no, "--serial-no")?.to_ascii_uppercase(),
            private_key,
            apiv3_key,
            platform_public_key,
            platform_public_key_id: non_empty(
                g.platform_public_key_id,
                "--platform-public-key-id",
            )?,
            base_url: base_url.to_string(),
        })
    }

    /// The text the store keeps.
    pub fn to_stored(&self) -> String {
        let (der, format) = self.private_key.der();
        json!({
            "mchid": self.mchid,
            "appid": self.appid,
            "serialNo": self.serial_no,
            "privateKey": b64(der),
            "privateKeyFormat": format.as_str(),
            "apiv3Key": b64(&self.apiv3_key),
            "platformPublicKey": b64(&self.platform_public_key.spki_der()),
            "platformPublicKeyId": self.platform_public_key_id,
            "baseUrl": self.base_url,
        })
        .to_string()
    }

    /// What `channel list` shows: no key, ever.
    pub fn public_view(stored: &str) -> Vec<(&'static str, String)> {
        let v: Value = serde_json::from_str(stored).unwrap_or(Value::Null);
        let text = |k: &str| v[k].as_str().unwrap_or("").to_string();
        vec![
            ("mchid", text("mchid")),
            ("wxAppid", text("appid")),
            ("serialNo", text("serialNo")),
            ("platformPublicKeyId", text("platformPublicKeyId")),
            ("baseUrl", text("baseUrl")),
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
        let bytes = |k: &str| unb64(&field(k)?).ok_or_else(|| format!("{k} is not base64"));
        let format = KeyFormat::parse(&field("privateKeyFormat")?).ok_or("bad privateKeyFormat")?;
        Ok(Settings {
            mchid: field("mchid")?,
            appid: field("appid")?,
            serial_no: field("serialNo")?,
            private_key: PrivateKey::from_stored(format, &bytes("privateKey")?)?,
            apiv3_key: bytes("apiv3Key")?,
            platform_public_key: PublicKey::from_der(&bytes("platformPublicKey")?)?,
            platform_public_key_id: field("platformPublicKeyId")?,
            base_url: field("baseUrl")?,
        })
    }
}
