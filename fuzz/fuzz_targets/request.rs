//! Request parsing and verification on arbitrary bytes: what `api::signed` does with a body
//! before any store access. Nothing here may panic, and a request signed by the library must
//! verify (in either hex case) while a different signature must not.

#![no_main]

use libfuzzer_sys::fuzz_target;
use unipay::api::nonce;
use unipay::domain::OrderKey;
use unipay::sign::{self, SignType};
use unipay::sys::UtcOffset;
use unipay::wire::{self, Params};

const SECRET: &str = "fuzz-Secret\"\\1";

fuzz_target!(|data: &[u8]| {
    let _ = wire::parse_object(data);
    let _ = wire::peek_app_id(data);
    for (path, fields) in [
        ("/unipay/close", wire::CLOSE),
        ("/unipay/query/payOrder", wire::QUERY),
        ("/unipay/pay", wire::PAY),
        ("/unipay/gateway/prePay", wire::PRE_PAY),
    ] {
        let Ok(params) = Params::parse(data, &[wire::COMMON, fields], UtcOffset::CST) else {
            continue;
        };
        let pairs = params.sign_pairs();
        let canonical = sign::sign_string(&pairs, SECRET);
        let body = canonical
            .strip_suffix(&format!("&KEY={}", SECRET.to_uppercase()))
            .expect("the canonical string ends with the secret");
        assert!(!body.contains('"') && !body.contains('\\'), "{canonical}");
        for sign_type in [SignType::Md5, SignType::HmacSha256, SignType::Sm3] {
            let good = sign::sign(sign_type, &pairs, SECRET);
            assert!(sign::verify(sign_type, &pairs, SECRET, &good));
            assert!(sign::verify(
                sign_type,
                &pairs,
                SECRET,
                &good.to_uppercase()
            ));
            if let Some(given) = params.str("sign") {
                let ok = sign::verify(sign_type, &pairs, SECRET, given);
                assert_eq!(ok, given.eq_ignore_ascii_case(&good), "{given} vs {good}");
            }
        }
        let _ = nonce::fingerprint(path, &pairs);
        let _ = OrderKey::pick(
            params.str("orderNo"),
            params.str("bizOrderNo"),
            params.str("outOrderNo"),
        );
        let _ = params.common();
        let _ = wire::order_key(&params);
        let _ = wire::close_input(&params);
        let _ = wire::pay_input(&params);
        if params.decimal("amount").is_some() {
            let _ = wire::order_input(&params);
        }
        let _ = params.time_ms("reqTime");
        let _ = params.time_ms("expiredTime");
    }
});
