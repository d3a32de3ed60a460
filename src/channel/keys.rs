//! The keys of the real channels and what is done with them: RSA PKCS#1 v1.5 SHA-256 signatures
//! (Alipay's RSA2, WeChat Pay's `SHA256withRSA`) and AES-GCM decryption (WeChat Pay's
//! notifications), on `ring`.
//!
//! Keys are read leniently, as the channels' key tools write them: PEM with its armour (one long
//! base64 line or wrapped), or bare base64. A private key is PKCS#8 or PKCS#1; a public key is a
//! SubjectPublicKeyInfo, a PKCS#1 `RSAPublicKey`, or an X.509 certificate (its key is used). RSA
//! keys under 2048 bits are refused. Nothing here logs or prints key material.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use ring::aead::{self, Aad, LessSafeKey, Nonce, UnboundKey};
use ring::rand::SystemRandom;
use ring::signature::{self, RsaKeyPair, UnparsedPublicKey};

/// The smallest RSA modulus accepted, in bits.
pub const MIN_RSA_BITS: usize = 2048;

/// Base64 of `bytes`, standard alphabet with padding (what both channels use).
pub fn b64(bytes: &[u8]) -> String {
    STANDARD.encode(bytes)
}

/// Decodes standard base64 (padding required, whitespace not allowed).
pub fn unb64(text: &str) -> Option<Vec<u8>> {
    STANDARD.decode(text.as_bytes()).ok()
}

/// The DER inside a PEM text or a bare base64 text: armour lines and all whitespace dropped.
fn der_of(text: &str) -> Result<Vec<u8>, String> {
    let body: String = text
        .lines()
        .filter(|l| !l.trim_start().starts_with("-----"))
        .flat_map(|l| l.chars())
        .filter(|c| !c.is_whitespace())
        .collect();
    if body.is_empty() {
        return Err("no key in the text".into());
    }
    STANDARD
        .decode(body.as_bytes())
        .map_err(|_| "the key is not PEM or base64".to_string())
}

/// The form a private key came in, kept so that it can be loaded again from its DER.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyFormat {
    Pkcs8,
    Pkcs1,
}

impl KeyFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            KeyFormat::Pkcs8 => "pkcs8",
            KeyFormat::Pkcs1 => "pkcs1",
        }
    }

    pub fn parse(s: &str) -> Option<KeyFormat> {
        match s {
            "pkcs8" => Some(KeyFormat::Pkcs8),
            "pkcs1" => Some(KeyFormat::Pkcs1),
            _ => None,
        }
    }
}

/// An RSA private key that signs with PKCS#1 v1.5 and SHA-256. Its `Debug` shows no key.
pub struct PrivateKey {
    pair: RsaKeyPair,
    der: Vec<u8>,
    format: KeyFormat,
}

impl std::fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PrivateKey({} bits, <redacted>)", self.bits())
    }
}

impl PrivateKey {
    /// Reads a key from PEM or bare base64, PKCS#8 or PKCS#1.
    pub fn parse(text: &str) -> Result<PrivateKey, String> {
        let der = der_of(text)?;
        if let Ok(pair) = RsaKeyPair::from_pkcs8(&der) {
            return PrivateKey::checked(pair, der, KeyFormat::Pkcs8);
        }
        match RsaKeyPair::from_der(&der) {
            Ok(pair) => PrivateKey::checked(pair, der, KeyFormat::Pkcs1),
            Err(e) => {
                // ring refuses small keys itself; say so plainly when that is why.
                match pkcs1_private_bits(&der).or_else(|| pkcs8_private_bits(&der)) {
                    Some(bits) if bits < MIN_RSA_BITS => Err(format!(
                        "the RSA key has {bits} bits; at least {MIN_RSA_BITS} are required"
                    )),
                    _ => Err(format!(
                        "not an RSA private key in PKCS#8 or PKCS#1 form ({e})"
                    )),
                }
            }
        }
    }

    /// Loads a key from the DER `der_base64` and `format` gave.
    pub fn from_stored(format: KeyFormat, der: &[u8]) -> Result<PrivateKey, String> {
        let pair = match format {
            KeyFormat::Pkcs8 => RsaKeyPair::from_pkcs8(der),
            KeyFormat::Pkcs1 => RsaKeyPair::from_der(der),
        }
        .map_err(|e| format!("the stored private key does not load ({e})"))?;
        PrivateKey::checked(pair, der.to_vec(), format)
    }

    fn checked(pair: RsaKeyPair, der: Vec<u8>, format: KeyFormat) -> Result<PrivateKey, String> {
        let key = PrivateKey { pair, der, format };
        if key.bits() < MIN_RSA_BITS {
            return Err(format!(
                "the RSA key has {} bits; at least {MIN_RSA_BITS} are required",
                key.bits()
            ));
        }
        Ok(key)
    }

    pub fn bits(&self) -> usize {
        self.pair.public().modulus_len() * 8
    }

    /// The DER to store, and its form.
    pub fn der(&self) -> (&[u8], KeyFormat) {
        (&self.der, self.format)
    }

    /// SHA256withRSA (PKCS#1 v1.5) of `msg`: deterministic.
    pub fn sign(&self, msg: &[u8]) -> Vec<u8> {
        let mut sig = vec![0; self.pair.public().modulus_len()];
        // The random source only blinds the computation; the signature does not depend on it.
        self.pair
            .sign(
                &signature::RSA_PKCS1_SHA256,
                &SystemRandom::new(),
                msg,
                &mut sig,
            )
            .expect("signing with a loaded RSA key");
        sig
    }

    /// `sign` in base64, as both channels send it.
    pub fn sign_b64(&self, msg: &[u8]) -> String {
        b64(&self.sign(msg))
    }
}

/// An RSA public key that verifies PKCS#1 v1.5 SHA-256 signatures.
#[derive(Clone)]
pub struct PublicKey {
    /// The PKCS#1 `RSAPublicKey` DER.
    pkcs1: Vec<u8>,
    bits: usize,
}

impl std::fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PublicKey({} bits)", self.bits)
    }
}

impl PublicKey {
    /// Reads a SubjectPublicKeyInfo, a PKCS#1 `RSAPublicKey` or an X.509 certificate, from PEM
    /// or bare base64.
    pub fn parse(text: &str) -> Result<PublicKey, String> {
        PublicKey::from_der(&der_of(text)?)
    }

    /// Reads any of the forms of `parse` from DER.
    pub fn from_der(der: &[u8]) -> Result<PublicKey, String> {
        let pkcs1 = spki_rsa_key(der)
            .or_else(|| certificate_rsa_key(der))
            .or_else(|| rsa_modulus_bits(der).map(|_| der.to_vec()))
            .ok_or("not an RSA public key (SubjectPublicKeyInfo, PKCS#1 or a certificate)")?;
        let bits = rsa_modulus_bits(&pkcs1).ok_or("the RSA public key is malformed")?;
        if bits < MIN_RSA_BITS {
            return Err(format!(
                "the RSA key has {bits} bits; at least {MIN_RSA_BITS} are required"
            ));
        }
        Ok(PublicKey { pkcs1, bits })
    }

    /// The key as SubjectPublicKeyInfo DER (what `BEGIN PUBLIC KEY` holds), for storing.
    pub fn spki_der(&self) -> Vec<u8> {
        // AlgorithmIdentifier rsaEncryption with NULL parameters.
        const ALG: &[u8] = &[
            0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01, 0x05,
            0x00,
        ];
        let mut bits = vec![0u8];
        bits.extend_from_slice(&self.pkcs1);
        let mut inner = ALG.to_vec();
        inner.extend(der_tlv(0x03, &bits));
        der_tlv(0x30, &inner)
    }

    pub fn bits(&self) -> usize {
        self.bits
    }

    /// Whether `sig` is a valid SHA256withRSA signature of `msg`.
    pub fn verify(&self, msg: &[u8], sig: &[u8]) -> bool {
        UnparsedPublicKey::new(&signature::RSA_PKCS1_2048_8192_SHA256, &self.pkcs1)
            .verify(msg, sig)
            .is_ok()
    }

    /// `verify` of a base64 signature; a signature that is not base64 fails.
    pub fn verify_b64(&self, msg: &[u8], sig_b64: &str) -> bool {
        match unb64(sig_b64.trim()) {
            Some(sig) => self.verify(msg, &sig),
            None => false,
        }
    }
}

/// AES-GCM decryption with a 16- or 32-byte key (AES-128 or AES-256 by its length), a 12-byte
/// nonce and the tag as the last 16 bytes of `ciphertext`. `None` when anything does not match.
pub fn aes_gcm_open(key: &[u8], nonce: &[u8], aad: &[u8], ciphertext: &[u8]) -> Option<Vec<u8>> {
    let alg = match key.len() {
        16 => &aead::AES_128_GCM,
        32 => &aead::AES_256_GCM,
        _ => return None,
    };
    if ciphertext.len() < alg.tag_len() {
        return None;
    }
    let key = LessSafeKey::new(UnboundKey::new(alg, key).ok()?);
    let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
    let mut buf = ciphertext.to_vec();
    let plain = key.open_in_place(nonce, Aad::from(aad), &mut buf).ok()?;
    Some(plain.to_vec())
}

/// AES-GCM encryption, the inverse of `aes_gcm_open` (the tag appended).
pub fn aes_gcm_seal(key: &[u8], nonce: &[u8], aad: &[u8], plain: &[u8]) -> Option<Vec<u8>> {
    let alg = match key.len() {
        16 => &aead::AES_128_GCM,
        32 => &aead::AES_256_GCM,
        _ => return None,
    };
    let key = LessSafeKey::new(UnboundKey::new(alg, key).ok()?);
    let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
    let mut buf = plain.to_vec();
    key.seal_in_place_append_tag(nonce, Aad::from(aad), &mut buf)
        .ok()?;
    Some(buf)
}

// ---- a small DER reader: just enough to find an RSA key and its size ----

/// One DER element at the start of `der`: (tag, contents, the rest after it).
fn der_next(der: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = der.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (first as usize, rest)
    } else {
        let n = (first & 0x7f) as usize;
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, b| acc << 8 | *b as usize);
        (len, &rest[n..])
    };
    if rest.len() < len {
        return None;
    }
    Some((tag, &rest[..len], &rest[len..]))
}

fn der_tlv(tag: u8, contents: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = contents.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes: Vec<u8> = len
            .to_be_bytes()
            .iter()
            .copied()
            .skip_while(|b| *b == 0)
            .collect();
        out.push(0x80 | bytes.len() as u8);
        out.extend(bytes);
    }
    out.extend_from_slice(contents);
    out
}

/// The size in bits of an INTEGER's contents, leading zero bytes not counted.
fn integer_bits(contents: &[u8]) -> usize {
    let trimmed: &[u8] = match contents.iter().position(|b| *b != 0) {
        Some(i) => &contents[i..],
        None => &[],
    };
    match trimmed.first() {
        Some(b) => trimmed.len() * 8 - b.leading_zeros() as usize,
        None => 0,
    }
}

/// The modulus size of a PKCS#1 `RSAPublicKey` (SEQUENCE { n INTEGER, e INTEGER }).
fn rsa_modulus_bits(der: &[u8]) -> Option<usize> {
    let (tag, seq, rest) = der_next(der)?;
    if tag != 0x30 || !rest.is_empty() {
        return None;
    }
    let (t1, n, rest) = der_next(seq)?;
    let (t2, _e, rest) = der_next(rest)?;
    (t1 == 0x02 && t2 == 0x02 && rest.is_empty()).then(|| integer_bits(n))
}

/// The `RSAPublicKey` inside a SubjectPublicKeyInfo with the rsaEncryption algorithm.
fn spki_rsa_key(der: &[u8]) -> Option<Vec<u8>> {
    const RSA_OID: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
    let (tag, seq, rest) = der_next(der)?;
    if tag != 0x30 || !rest.is_empty() {
        return None;
    }
    let (t_alg, alg, rest) = der_next(seq)?;
    let (t_bits, bits, rest) = der_next(rest)?;
    if t_alg != 0x30 || t_bits != 0x03 || !rest.is_empty() {
        return None;
    }
    let (t_oid, oid, _) = der_next(alg)?;
    if t_oid != 0x06 || oid != RSA_OID {
        return None;
    }
    let (&unused, key) = bits.split_first()?;
    (unused == 0 && rsa_modulus_bits(key).is_some()).then(|| key.to_vec())
}

/// The RSA key of an X.509 certificate (the SubjectPublicKeyInfo of its TBSCertificate).
fn certificate_rsa_key(der: &[u8]) -> Option<Vec<u8>> {
    let (tag, cert, _) = der_next(der)?;
    if tag != 0x30 {
        return None;
    }
    let (tag, mut tbs, _) = der_next(cert)?;
    if tag != 0x30 {
        return None;
    }
    // version [0] (optional), serial, signature, issuer, validity, subject, then the key.
    let mut fields = Vec::new();
    while let Some((t, c, rest)) = der_next(tbs) {
        fields.push((t, c, &tbs[..tbs.len() - rest.len()]));
        tbs = rest;
        if fields.len() > 8 {
            break;
        }
    }
    let skip = if fields.first().map(|f| f.0) == Some(0xa0) {
        1
    } else {
        0
    };
    let (_, _, whole) = fields.get(skip + 5)?;
    spki_rsa_key(whole)
}

/// The serial number of an X.509 certificate as upper-case hex without leading zeros (what
/// WeChat Pay's `Wechatpay-Serial` carries).
pub fn certificate_serial(text: &str) -> Option<String> {
    let der = der_of(text).ok()?;
    let (_, cert, _) = der_next(&der)?;
    let (_, tbs, _) = der_next(cert)?;
    let (tag, first, rest) = der_next(tbs)?;
    let serial = if tag == 0xa0 {
        der_next(rest)?.1
    } else {
        first
    };
    let hex: String = serial.iter().map(|b| format!("{b:02X}")).collect();
    Some(hex.trim_start_matches('0').to_string())
}

/// The modulus size of a PKCS#1 `RSAPrivateKey` (version, n, …).
fn pkcs1_private_bits(der: &[u8]) -> Option<usize> {
    let (tag, seq, _) = der_next(der)?;
    if tag != 0x30 {
        return None;
    }
    let (t_v, _, rest) = der_next(seq)?;
    let (t_n, n, _) = der_next(rest)?;
    (t_v == 0x02 && t_n == 0x02).then(|| integer_bits(n))
}

/// The modulus size of the RSA key inside a PKCS#8 `PrivateKeyInfo`.
fn pkcs8_private_bits(der: &[u8]) -> Option<usize> {
    let (tag, seq, _) = der_next(der)?;
    if tag != 0x30 {
        return None;
    }
    let (_, _, rest) = der_next(seq)?; // version
    let (_, _, rest) = der_next(rest)?; // algorithm
    let (t, key, _) = der_next(rest)?;
    (t == 0x04).then(|| pkcs1_private_bits(key)).flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIX: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");

    fn fixture(path: &str) -> String {
        std::fs::read_to_string(format!("{FIX}/{path}")).unwrap()
    }

    #[test]
    fn keys_load_in_every_form_the_tools_write() {
        let pkcs1 = PrivateKey::parse(&fixture("alipay/app-private-key.pem")).unwrap();
        let pkcs8 = PrivateKey::parse(&fixture("alipay/app-private-key-pkcs8.pem")).unwrap();
        assert_eq!(pkcs1.der().1, KeyFormat::Pkcs1);
        assert_eq!(pkcs8.der().1, KeyFormat::Pkcs8);
        assert_eq!(
            pkcs1.sign(b"x"),
            pkcs8.sign(b"x"),
            "the same key in two forms"
        );
        // Bare base64, and wrapped PEM, and a certificate's key.
        let bare: String = fixture("alipay/app-private-key.pem")
            .lines()
            .filter(|l| !l.starts_with("-----"))
            .collect();
        assert!(PrivateKey::parse(&bare).is_ok());
        let public = PublicKey::parse(&fixture("alipay/app-public-key.pem")).unwrap();
        assert!(public.verify(b"x", &pkcs1.sign(b"x")));
        assert!(!public.verify(b"y", &pkcs1.sign(b"x")));
        assert_eq!(public.bits(), 2048);
        let stable = PublicKey::parse(&fixture("alipay/alipay_stable_rsa2_public_key.pem"));
        assert!(stable.is_ok(), "bare base64 SPKI");
        let cert = PublicKey::parse(&fixture("wechat/wechatpay-go-platform-cert.pem")).unwrap();
        let cert_key =
            PublicKey::parse(&fixture("wechat/wechatpay-go-platform-public-key.pem")).unwrap();
        assert_eq!(cert.spki_der(), cert_key.spki_der());
        // The SPKI written back reads as the same key.
        let again = PublicKey::from_der(&public.spki_der()).unwrap();
        assert_eq!(again.pkcs1, public.pkcs1);
        assert_eq!(
            certificate_serial(&fixture("wechat/wechatpay-go-platform-cert.pem")).as_deref(),
            Some("D7CE59D1F522D701")
        );
        // Stored and loaded again.
        let (der, format) = pkcs8.der();
        let loaded = PrivateKey::from_stored(format, der).unwrap();
        assert_eq!(loaded.sign(b"x"), pkcs8.sign(b"x"));
    }

    #[test]
    fn small_and_malformed_keys_are_refused_with_a_reason() {
        let err = PrivateKey::parse(&fixture("alipay/weak-1024.pem")).unwrap_err();
        assert!(err.contains("1024 bits"), "{err}");
        assert!(PrivateKey::parse("").is_err());
        assert!(PrivateKey::parse("not a key at all!").is_err());
        assert!(PrivateKey::parse(&fixture("alipay/app-public-key.pem")).is_err());
        assert!(PublicKey::parse(&fixture("alipay/app-private-key.pem")).is_err());
        assert!(PublicKey::parse("AAAA").is_err());
        let debug = format!(
            "{:?}",
            PrivateKey::parse(&fixture("alipay/app-private-key.pem")).unwrap()
        );
        assert_eq!(debug, "PrivateKey(2048 bits, <redacted>)");
    }

    #[test]
    fn aes_gcm_by_key_length() {
        // W4: AES-128-GCM (WeChat Pay's Go SDK).
        let ct = unb64("FsdXzxryWfKwvLJKf8LG/ToRPTRh8RN9wROC").unwrap();
        let aad = b"Dl56FrqWQJF1t9LtC3vEUsniZKvbqdR8";
        let plain = aes_gcm_open(b"testAPIv3Key0000", b"wCq51qZv4Yfg", aad, &ct).unwrap();
        assert_eq!(plain, b"Hello World");
        assert!(aes_gcm_open(b"testAPIv3Key1111", b"wCq51qZv4Yfg", aad, &ct).is_none());
        assert!(aes_gcm_open(b"not a aes key", b"wCq51qZv4Yfg", aad, &ct).is_none());
        assert!(unb64("invalid cipher").is_none());
        let short = unb64("SGVsbG8gV29ybGQK").unwrap();
        assert!(aes_gcm_open(b"testAPIv3Key0000", b"wCq51qZv4Yfg", aad, &short).is_none());
        // W5: AES-256-GCM (WeChat Pay's Java SDK), both ways.
        let key = b"a7cde1ZJB1kG2e7VfTs3jQzaWizur8Gb";
        let ct = unb64("ulwSiIajGClcvcOYvOQ7+l+0PAbzzwI=").unwrap();
        let plain = aes_gcm_open(key, b"uluk4a9R25RW", b"associatedData", &ct).unwrap();
        assert_eq!(plain, b"message");
        assert_eq!(
            aes_gcm_seal(key, b"uluk4a9R25RW", b"associatedData", b"message").unwrap(),
            ct
        );
        assert!(aes_gcm_open(key, b"uluk4a9R25RW", b"bad-associatedData", &ct).is_none());
        assert!(aes_gcm_open(key, b"bad-4a9R25RW", b"associatedData", &ct).is_none());
    }

    #[test]
    fn w1_signature_of_source() {
        let key =
            PrivateKey::parse(&fixture("wechat/wechatpay-go-merchant-private-key.pem")).unwrap();
        assert_eq!(
            key.sign_b64(b"source"),
            "BKyAfU4iMCuvXMXS0Wzam3V/cnxZ+JaqigPM5OhljS2iOT95OO6Fsuml2JkFANJU9K6q9bLlDhPXuoVz+pp4hAm6pHU4ld815U4jsKu1RkyaII+1CYBUYC8TK0XtJ8FwUXXz8vZHh58rrAVN1XwNyvD1vfpxrMT4SL536GLwvpUHlCqIMzoZUguLli/K8V29QiOhuH6IEqLNJn8e9b3nwNcQ7be3CzYGpDAKBfDGPCqCv8Rw5zndhlffk2FEA70G4hvMwe51qMN/RAJbknXG23bSlObuTCN7Ndj1aJGH6/L+hdwfLpUtJm4QYVazzW7DFD27EpSQEqA8bX9+8m1rLg=="
        );
        let cert = PublicKey::parse(&fixture("wechat/wechatpay-go-platform-cert.pem")).unwrap();
        assert!(cert.verify_b64(b"source", &key.sign_b64(b"source")));
    }
}
