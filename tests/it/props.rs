//! Property tests of the canonical string and the signature (spec §3), through the same path a
//! request takes: JSON bytes → `wire::Params` → `sign`.
//!
//! Any field values (unicode, quotes, backslashes, empty, long) sign and verify round-trip; and
//! changing one signed field breaks verification exactly when DaxPay's canonical string can tell
//! the difference, that is unless the two values are equal once `"` and `\` are deleted and the
//! text is upper-cased (and a primitive boolean's `false` is the same as its absence).

use proptest::prelude::*;
use serde_json::{Map, Value};
use unipay::sign::{self, SignType};
use unipay::sys::UtcOffset;
use unipay::wire::{self, Params};

/// Awkward pieces that the canonical rules treat specially.
const PIECES: &[&str] = &[
    "\"", "\\", "\\\"", "", " ", "ß", "ǅ", "İ", "ﬁ", "ı", "σς", "\u{0}", "&", "=", "&key=", "\n",
    "中文", "😀", "\u{301}", "a", "Z", "0", "{}", "[\"x\"]", "%", "'",
];

/// Any text of at most `max` characters: arbitrary unicode, runs of awkward pieces, or long.
fn text(max: usize) -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        prop::collection::vec(prop::sample::select(PIECES), 0..12).prop_map(|v| v.concat()),
        "[a-zA-Z0-9\"\\\\ ]{0,20}",
        "\\PC{80,300}",
    ]
    .prop_map(move |s| s.chars().take(max).collect())
}

/// Text that is not blank (required fields).
fn required(max: usize) -> impl Strategy<Value = String> {
    text(max - 1).prop_map(|s| format!("x{s}"))
}

fn time() -> impl Strategy<Value = String> {
    (
        1971i64..9999,
        1i64..=12,
        1i64..=28,
        0i64..24,
        0i64..60,
        0i64..60,
    )
        .prop_map(|(y, mo, d, h, mi, s)| format!("{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02}"))
}

fn ip() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<std::net::Ipv4Addr>().prop_map(|a| a.to_string()),
        any::<std::net::Ipv6Addr>().prop_map(|a| a.to_string()),
        Just(String::new()),
    ]
}

fn sign_type() -> impl Strategy<Value = SignType> {
    prop::sample::select(vec![SignType::Md5, SignType::HmacSha256, SignType::Sm3])
}

/// An optional field: absent, `null`, or a value.
fn optional(v: impl Strategy<Value = Value>) -> impl Strategy<Value = Option<Value>> {
    prop_oneof![
        1 => Just(None),
        1 => Just(Some(Value::Null)),
        4 => v.prop_map(Some),
    ]
}

fn put(map: &mut Map<String, Value>, key: &str, v: Option<Value>) {
    if let Some(v) = v {
        map.insert(key.into(), v);
    }
}

/// A valid close request body (no `sign` yet).
fn close_body() -> impl Strategy<Value = Map<String, Value>> {
    (
        (required(32), required(32), time()),
        optional(text(32).prop_map(Value::from)),
        optional(ip().prop_map(Value::from)),
        optional(text(100).prop_map(Value::from)),
        optional(text(100).prop_map(Value::from)),
        optional(text(150).prop_map(Value::from)),
        optional(prop_oneof![
            any::<bool>().prop_map(Value::from),
            any::<bool>().prop_map(|b| Value::from(b.to_string())),
        ]),
    )
        .prop_map(|((mch, app, t), nonce, ip, order, biz, out, cancel)| {
            let mut m = Map::new();
            m.insert("mchNo".into(), mch.into());
            m.insert("appId".into(), app.into());
            m.insert("reqTime".into(), t.into());
            put(&mut m, "nonceStr", nonce);
            put(&mut m, "clientIp", ip);
            put(&mut m, "orderNo", order);
            put(&mut m, "bizOrderNo", biz);
            put(&mut m, "outOrderNo", out);
            put(&mut m, "useCancel", cancel);
            m
        })
}

/// A valid pay request body (no `sign` yet), with the amount as a number or a string, trailing
/// zeros or not.
fn pay_body() -> impl Strategy<Value = Map<String, Value>> {
    (
        close_body(),
        (required(100), required(100), required(32), required(32)),
        (1i64..10_000_000_000, 0usize..3, any::<bool>()),
        optional(text(500).prop_map(Value::from)),
        optional(text(2048).prop_map(Value::from)),
        optional(time().prop_map(Value::from)),
        optional(any::<bool>().prop_map(Value::from)),
    )
        .prop_map(
            |(
                common,
                (biz, title, channel, method),
                (cents, zeros, as_text),
                desc,
                extra,
                exp,
                alloc,
            )| {
                let mut m = Map::new();
                for k in ["mchNo", "appId", "reqTime", "nonceStr", "clientIp"] {
                    if let Some(v) = common.get(k) {
                        m.insert(k.into(), v.clone());
                    }
                }
                m.insert("bizOrderNo".into(), biz.into());
                m.insert("title".into(), title.into());
                m.insert("channel".into(), channel.into());
                m.insert("method".into(), method.into());
                let amount = format!("{}.{:02}{}", cents / 100, cents % 100, "0".repeat(zeros));
                let amount = match as_text {
                    true => Value::from(amount),
                    false => serde_json::from_str(&amount).unwrap(),
                };
                m.insert("amount".into(), amount);
                put(&mut m, "description", desc);
                put(&mut m, "extraParam", extra);
                put(&mut m, "expiredTime", exp);
                put(&mut m, "allocation", alloc);
                m
            },
        )
}

fn parse(map: &Map<String, Value>, fields: &'static [wire::Field]) -> Params {
    let raw = serde_json::to_vec(map).unwrap();
    Params::parse(&raw, &[wire::COMMON, fields], UtcOffset::CST)
        .unwrap_or_else(|e| panic!("a valid body must parse: {e}: {map:?}"))
}

/// Signs `map` as a client would and returns the signature.
fn sign_map(
    map: &Map<String, Value>,
    fields: &'static [wire::Field],
    st: SignType,
    secret: &str,
) -> String {
    sign::sign(st, &parse(map, fields).sign_pairs(), secret)
}

/// Whether the server accepts `map` carrying signature `given`.
fn verifies(
    map: &Map<String, Value>,
    fields: &'static [wire::Field],
    st: SignType,
    secret: &str,
    given: &str,
) -> bool {
    let mut m = map.clone();
    m.insert("sign".into(), given.into());
    let params = parse(&m, fields);
    sign::verify(
        st,
        &params.sign_pairs(),
        secret,
        params.str("sign").unwrap(),
    )
}

/// What DaxPay's canonical string keeps of a value.
fn canon(s: &str) -> String {
    s.chars()
        .filter(|c| *c != '"' && *c != '\\')
        .collect::<String>()
        .to_uppercase()
}

/// A field of the close request, changed one of several ways.
#[derive(Debug, Clone)]
enum Change {
    /// A new value for a string field.
    Set(&'static str, String),
    /// The case of every letter of a string field flipped.
    FlipCase(&'static str),
    /// A `"` or `\` inserted into a string field at a character position.
    Insert(&'static str, char, usize),
    /// A field removed, or set to null.
    Remove(&'static str, bool),
    /// `useCancel` set to this.
    Cancel(bool),
    /// A field no request has, added (DaxPay's parameter classes drop it: it is not signed).
    Unknown(String, String),
}

const STRING_FIELDS: &[&str] = &[
    "mchNo",
    "appId",
    "nonceStr",
    "orderNo",
    "bizOrderNo",
    "outOrderNo",
];

fn change() -> impl Strategy<Value = Change> {
    let field = prop::sample::select(STRING_FIELDS);
    prop_oneof![
        (field.clone(), text(30)).prop_map(|(f, v)| Change::Set(f, v)),
        field.clone().prop_map(Change::FlipCase),
        (
            field.clone(),
            prop::sample::select(vec!['"', '\\']),
            0usize..40
        )
            .prop_map(|(f, c, at)| Change::Insert(f, c, at)),
        (
            prop::sample::select(vec![
                "nonceStr",
                "orderNo",
                "bizOrderNo",
                "outOrderNo",
                "clientIp",
                "useCancel"
            ]),
            any::<bool>()
        )
            .prop_map(|(f, null)| Change::Remove(f, null)),
        any::<bool>().prop_map(Change::Cancel),
        time().prop_map(|t| Change::Set("reqTime", t)),
        ip().prop_map(|a| Change::Set("clientIp", a)),
        ("zz[a-zA-Z]{0,8}", text(20)).prop_map(|(k, v)| Change::Unknown(k, v)),
    ]
}

/// Applies `change`; returns the changed body and whether the canonical string must stay the
/// same (the signature must still verify), or `None` if the change does not apply.
fn apply(map: &Map<String, Value>, change: &Change) -> Option<(Map<String, Value>, bool)> {
    let mut m = map.clone();
    let old = |k: &str| map.get(k).and_then(Value::as_str).map(str::to_string);
    let same_text = |k: &str, new: &str| match old(k) {
        Some(o) => canon(&o) == canon(new),
        None => false,
    };
    let bool_of = |v: Option<&Value>| match v {
        Some(Value::Bool(b)) => Some(*b),
        Some(Value::String(s)) => Some(s == "true"),
        _ => None,
    };
    let same = match change {
        Change::Set(k, v) => {
            let same = same_text(k, v);
            m.insert((*k).into(), v.clone().into());
            same
        }
        Change::FlipCase(k) => {
            let o = old(k)?;
            let flipped: String = o
                .chars()
                .flat_map(|c| match c.is_uppercase() {
                    true => c.to_lowercase().collect::<Vec<_>>(),
                    false => c.to_uppercase().collect::<Vec<_>>(),
                })
                .collect();
            let same = same_text(k, &flipped);
            m.insert((*k).into(), flipped.into());
            same
        }
        Change::Insert(k, c, at) => {
            let o = old(k)?;
            let at = (*at).min(o.chars().count());
            let mut chars: Vec<char> = o.chars().collect();
            chars.insert(at, *c);
            let new: String = chars.into_iter().collect();
            m.insert((*k).into(), new.into());
            true
        }
        Change::Remove(k, null) => {
            let was = map.get(*k).filter(|v| !v.is_null()).cloned();
            match null {
                true => m.insert((*k).into(), Value::Null),
                false => m.remove(*k),
            };
            match was {
                None => true,
                // An absent primitive boolean is signed as `false`.
                Some(v) if *k == "useCancel" => bool_of(Some(&v)) == Some(false),
                Some(_) => false,
            }
        }
        Change::Cancel(b) => {
            let was = bool_of(map.get("useCancel")).unwrap_or(false);
            m.insert("useCancel".into(), (*b).into());
            was == *b
        }
        Change::Unknown(k, v) => {
            m.insert(k.clone(), v.clone().into());
            true
        }
    };
    // Length limits count characters before any deletion: a change may make the body invalid.
    let raw = serde_json::to_vec(&m).unwrap();
    Params::parse(&raw, &[wire::COMMON, wire::CLOSE], UtcOffset::CST).ok()?;
    Some((m, same))
}

/// A field of the pay request, changed one of several ways.
#[derive(Debug, Clone)]
enum PayChange {
    /// The amount written another way: more or fewer trailing zeros, a number or a string.
    Reformat(usize, bool),
    /// Another amount.
    Amount(i64),
    /// A new value for a string field.
    Set(&'static str, String),
    /// A field no request has, added.
    Unknown(String, String),
}

fn pay_change() -> impl Strategy<Value = PayChange> {
    prop_oneof![
        (0usize..4, any::<bool>()).prop_map(|(z, t)| PayChange::Reformat(z, t)),
        (1i64..10_000_000_000).prop_map(PayChange::Amount),
        (
            prop::sample::select(vec!["title", "description", "extraParam", "bizOrderNo"]),
            text(60)
        )
            .prop_map(|(f, v)| PayChange::Set(f, v)),
        ("zz[a-zA-Z]{0,8}", text(20)).prop_map(|(k, v)| PayChange::Unknown(k, v)),
    ]
}

/// The cents of a pay body's amount (two decimals at most, as `pay_body` writes it).
fn cents_of(map: &Map<String, Value>) -> i64 {
    let text = match &map["amount"] {
        Value::String(s) => s.clone(),
        v => v.to_string(),
    };
    let (whole, frac) = text.split_once('.').unwrap_or((&text, ""));
    let frac: String = frac.chars().chain("00".chars()).take(2).collect();
    whole.parse::<i64>().unwrap() * 100 + frac.parse::<i64>().unwrap()
}

/// An amount of `cents` with `zeros` extra trailing zeros, as a JSON string or number.
fn amount_value(cents: i64, zeros: usize, as_text: bool) -> Value {
    let amount = format!("{}.{:02}{}", cents / 100, cents % 100, "0".repeat(zeros));
    match as_text {
        true => Value::from(amount),
        false => serde_json::from_str(&amount).unwrap(),
    }
}

/// Applies a pay change: the changed body and whether the signature must still verify, or
/// `None` if the changed body is not a valid pay request.
fn apply_pay(map: &Map<String, Value>, change: &PayChange) -> Option<(Map<String, Value>, bool)> {
    let mut m = map.clone();
    let same = match change {
        PayChange::Reformat(zeros, as_text) => {
            m.insert(
                "amount".into(),
                amount_value(cents_of(map), *zeros, *as_text),
            );
            true
        }
        PayChange::Amount(cents) => {
            m.insert("amount".into(), amount_value(*cents, 0, true));
            *cents == cents_of(map)
        }
        PayChange::Set(k, v) => {
            let same = match map.get(*k).and_then(Value::as_str) {
                Some(o) => canon(o) == canon(v),
                None => false,
            };
            m.insert((*k).into(), v.clone().into());
            same
        }
        PayChange::Unknown(k, v) => {
            m.insert(k.clone(), v.clone().into());
            true
        }
    };
    let raw = serde_json::to_vec(&m).unwrap();
    Params::parse(&raw, &[wire::COMMON, wire::PAY], UtcOffset::CST).ok()?;
    Some((m, same))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn a_changed_pay_field_breaks_the_signature_unless_daxpay_cannot_tell(
        body in pay_body(),
        change in pay_change(),
        st in sign_type(),
        secret in "[a-zA-Z0-9]{1,32}",
    ) {
        let sig = sign_map(&body, wire::PAY, st, &secret);
        let Some((changed, same)) = apply_pay(&body, &change) else {
            return Ok(());
        };
        let ok = verifies(&changed, wire::PAY, st, &secret, &sig);
        prop_assert_eq!(ok, same, "{:?}\nbefore {:?}\nafter  {:?}", change, body, changed);
    }

    #[test]
    fn one_point_one_and_one_point_ten_are_the_same_amount(st in sign_type()) {
        let mut a = Map::new();
        // (rustfmt leaves the body of `proptest!` alone: this table needs no `rustfmt::skip`.)
        for (k, v) in [
            ("mchNo",      "M"),
            ("appId",      "A"),
            ("reqTime",    "2026-12-03 10:00:00"),
            ("bizOrderNo", "B"),
            ("title",      "t"),
            ("channel",    "sandbox"),
            ("method",     "wap"),
        ] {
            a.insert(k.into(), v.into());
        }
        let mut b = a.clone();
        a.insert("amount".into(), "1.10".into());
        b.insert("amount".into(), serde_json::from_str::<Value>("1.1").unwrap());
        let sig = sign_map(&a, wire::PAY, st, "k");
        prop_assert!(verifies(&b, wire::PAY, st, "k", &sig));
        b.insert("amount".into(), "1.01".into());
        prop_assert!(!verifies(&b, wire::PAY, st, "k", &sig));
    }

    #[test]
    fn close_requests_sign_and_verify_round_trip(
        body in close_body(),
        st in sign_type(),
        secret in text(40).prop_filter("a secret", |s| !s.is_empty()),
    ) {
        let sig = sign_map(&body, wire::CLOSE, st, &secret);
        prop_assert!(verifies(&body, wire::CLOSE, st, &secret, &sig));
        prop_assert!(verifies(&body, wire::CLOSE, st, &secret, &sig.to_uppercase()));
        // Another secret does not verify.
        let other = format!("{secret}x");
        prop_assert!(!verifies(&body, wire::CLOSE, st, &other, &sig));
    }

    #[test]
    fn pay_requests_sign_and_verify_round_trip(
        body in pay_body(),
        st in sign_type(),
        secret in text(40).prop_filter("a secret", |s| !s.is_empty()),
    ) {
        let sig = sign_map(&body, wire::PAY, st, &secret);
        prop_assert!(verifies(&body, wire::PAY, st, &secret, &sig));
        // The amount is signed without trailing zeros, whatever its JSON form.
        let params = parse(&body, wire::PAY);
        let amount = params.decimal("amount").unwrap();
        prop_assert!(!amount.ends_with('0') || !amount.contains('.'), "{}", amount);
        prop_assert!(!amount.ends_with('.'));
    }

    #[test]
    fn a_changed_field_breaks_the_signature_unless_daxpay_cannot_tell(
        body in close_body(),
        change in change(),
        st in sign_type(),
        secret in "[a-zA-Z0-9]{1,32}",
    ) {
        let sig = sign_map(&body, wire::CLOSE, st, &secret);
        let Some((changed, same)) = apply(&body, &change) else {
            return Ok(());
        };
        let ok = verifies(&changed, wire::CLOSE, st, &secret, &sig);
        prop_assert_eq!(ok, same, "{:?}\nbefore {:?}\nafter  {:?}", change, body, changed);
    }

    #[test]
    fn the_canonical_string_holds_no_quote_or_backslash_and_is_upper_case(
        pairs in prop::collection::vec(("[a-zA-Z]{1,12}", text(60)), 0..12),
        secret in text(20),
    ) {
        let pairs: Vec<(&str, &str)> =
            pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let s = sign::sign_string(&pairs, &secret);
        let tail = format!("&KEY={}", secret.to_uppercase());
        let head = s.strip_suffix(&tail).expect("ends with the secret");
        prop_assert!(!head.contains('"') && !head.contains('\\'), "{}", head);
        prop_assert_eq!(head.to_uppercase(), head);
    }
}
