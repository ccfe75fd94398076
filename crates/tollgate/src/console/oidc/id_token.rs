//! Checks an ID token: its signature against the provider's published keys (JWKS), then `iss`,
//! `aud`, `exp`, `nbf`, `nonce` and `azp`. jsonwebtoken parses and validates; the signature
//! arithmetic is ring's, through the small [`CryptoProvider`] below, so tollgate carries one
//! crypto library (rustls uses ring too) rather than jsonwebtoken's aws-lc-rs or RustCrypto
//! backends.

use jsonwebtoken::crypto::{CryptoProvider, JwtVerifier, KeyUtils};
use jsonwebtoken::errors::{Error as JwtError, ErrorKind};
use jsonwebtoken::jwk::{AlgorithmParameters, Jwk, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use ring::signature::{self as ring_sig, RsaPublicKeyComponents, UnparsedPublicKey};
use serde_json::Value;

/// Clock skew tolerated on `exp` and `nbf`, in seconds.
const LEEWAY_SECS: u64 = 60;

/// The signature algorithms accepted: every asymmetric one jsonwebtoken names. HS* (a MAC keyed
/// with the client secret) is refused: a public client has no secret, and a provider that
/// signs with one is misconfigured for this flow.
const ALGORITHMS: [Algorithm; 9] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

/// What the token must say to be for this sign-in.
pub(super) struct Expected<'a> {
    pub issuer: &'a str,
    pub client_id: &'a str,
    pub nonce: &'a str,
}

/// Why a token was not accepted.
#[derive(Debug)]
pub(super) enum Rejection {
    /// None of the keys fits the token's `kid` (and algorithm): fetch the JWKS again, the
    /// provider may have rotated its keys.
    UnknownKey(Option<String>),
    /// Bad signature, wrong audience, expired, … : the reason, as a phrase.
    Invalid(String),
}

/// The token's claims, if it is a valid ID token for `expected` signed by one of `keys`.
pub(super) fn verify(
    token: &str,
    keys: &[Jwk],
    expected: &Expected<'_>,
) -> Result<Value, Rejection> {
    install_ring();
    let header = jsonwebtoken::decode_header(token)
        .map_err(|e| Rejection::Invalid(format!("it is not a signed JWT ({e})")))?;
    if !ALGORITHMS.contains(&header.alg) {
        return Err(Rejection::Invalid(format!(
            "it is signed with {:?}, which tollgate does not accept for ID tokens",
            header.alg
        )));
    }
    let candidates: Vec<&Jwk> = keys
        .iter()
        .filter(|key| fits(key, header.kid.as_deref(), header.alg))
        .collect();
    if candidates.is_empty() {
        return Err(Rejection::UnknownKey(header.kid));
    }
    let mut validation = Validation::new(header.alg);
    validation.set_issuer(&[expected.issuer]);
    validation.set_audience(&[expected.client_id]);
    // Required means present *and* well-formed: a malformed `iss` or `aud` is refused rather
    // than skipped.
    validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
    validation.validate_nbf = true;
    validation.leeway = LEEWAY_SECS;
    let mut last = Rejection::UnknownKey(header.kid.clone());
    for jwk in candidates {
        let key = match DecodingKey::from_jwk(jwk) {
            Ok(key) => key,
            Err(e) => {
                last = Rejection::Invalid(format!("the provider's key is unusable ({e})"));
                continue;
            }
        };
        match jsonwebtoken::decode::<Value>(token, &key, &validation) {
            Ok(data) => return check_claims(data.claims, expected),
            Err(e) => last = Rejection::Invalid(reason(&e, expected)),
        }
    }
    Err(last)
}

/// Whether `key` may have signed a token with this `kid` and algorithm: an encryption key
/// never; a key naming another algorithm never; without a `kid`, any signing key of the
/// algorithm's kind.
fn fits(key: &Jwk, kid: Option<&str>, alg: Algorithm) -> bool {
    if matches!(key.common.public_key_use, Some(PublicKeyUse::Encryption)) {
        return false;
    }
    if let Some(named) = key.common.key_algorithm
        && named.to_string().parse::<Algorithm>().ok() != Some(alg)
    {
        return false;
    }
    if let Some(kid) = kid {
        return key.common.key_id.as_deref() == Some(kid);
    }
    matches!(
        (&key.algorithm, alg),
        (
            AlgorithmParameters::RSA(_),
            Algorithm::RS256
                | Algorithm::RS384
                | Algorithm::RS512
                | Algorithm::PS256
                | Algorithm::PS384
                | Algorithm::PS512
        ) | (
            AlgorithmParameters::EllipticCurve(_),
            Algorithm::ES256 | Algorithm::ES384
        ) | (AlgorithmParameters::OctetKeyPair(_), Algorithm::EdDSA)
    )
}

/// The OpenID Connect checks jsonwebtoken does not know: the nonce this sign-in sent, and the
/// authorised party when there is one.
fn check_claims(claims: Value, expected: &Expected<'_>) -> Result<Value, Rejection> {
    if claims.get("nonce").and_then(Value::as_str) != Some(expected.nonce) {
        return Err(Rejection::Invalid(
            "its nonce does not match this sign-in (a token from another sign-in was replayed)"
                .into(),
        ));
    }
    if let Some(azp) = claims.get("azp")
        && azp.as_str() != Some(expected.client_id)
    {
        return Err(Rejection::Invalid(format!(
            "it was issued to another client ({azp}), not '{}'",
            expected.client_id
        )));
    }
    if claims
        .get("sub")
        .and_then(Value::as_str)
        .is_none_or(str::is_empty)
    {
        return Err(Rejection::Invalid("its subject ('sub') is empty".into()));
    }
    Ok(claims)
}

/// jsonwebtoken's error as the end of "the ID token was rejected: …".
fn reason(error: &JwtError, expected: &Expected<'_>) -> String {
    match error.kind() {
        ErrorKind::InvalidSignature => {
            "its signature does not verify against the provider's published keys".into()
        }
        ErrorKind::ExpiredSignature => {
            "it has already expired (check that this server's clock is right)".into()
        }
        ErrorKind::ImmatureSignature => {
            "it is not valid yet (check that this server's clock is right)".into()
        }
        ErrorKind::InvalidIssuer => format!("it was not issued by {}", expected.issuer),
        ErrorKind::InvalidAudience => format!(
            "it is meant for another client, not '{}'",
            expected.client_id
        ),
        ErrorKind::MissingRequiredClaim(claim) | ErrorKind::InvalidClaimFormat(claim) => {
            format!("its '{claim}' claim is missing or malformed")
        }
        ErrorKind::InvalidAlgorithm => "its algorithm does not match its key".into(),
        _ => format!("it is malformed ({error})"),
    }
}

/// Installs [`RING`] as jsonwebtoken's process-wide provider (once; later calls, and a provider
/// someone else installed first, are fine).
fn install_ring() {
    let _ = CryptoProvider::install_default(&RING);
}

/// Verification only: tollgate never signs a JWT, and never needs the JWK helpers that work on
/// private keys or thumbprints (`KeyUtils`).
static RING: CryptoProvider = CryptoProvider {
    signer_factory: |_, _| Err(ErrorKind::Provider("tollgate does not sign JWTs".into()).into()),
    verifier_factory: ring_verifier,
    key_utils: KeyUtils::new_unimplemented(),
};

fn ring_verifier(
    alg: &Algorithm,
    key: &DecodingKey,
) -> jsonwebtoken::errors::Result<Box<dyn JwtVerifier>> {
    if !ALGORITHMS.contains(alg) || key.family() != alg.family() {
        return Err(ErrorKind::InvalidAlgorithm.into());
    }
    Ok(Box::new(RingVerifier {
        alg: *alg,
        key: key.clone(),
    }))
}

struct RingVerifier {
    alg: Algorithm,
    key: DecodingKey,
}

impl JwtVerifier for RingVerifier {
    fn algorithm(&self) -> Algorithm {
        self.alg
    }
}

impl jsonwebtoken::signature::Verifier<Vec<u8>> for RingVerifier {
    fn verify(&self, msg: &[u8], sig: &Vec<u8>) -> Result<(), jsonwebtoken::signature::Error> {
        use jsonwebtoken::DecodingKeyKind;
        let rsa: &ring_sig::RsaParameters = match self.alg {
            Algorithm::RS256 => &ring_sig::RSA_PKCS1_2048_8192_SHA256,
            Algorithm::RS384 => &ring_sig::RSA_PKCS1_2048_8192_SHA384,
            Algorithm::RS512 => &ring_sig::RSA_PKCS1_2048_8192_SHA512,
            Algorithm::PS256 => &ring_sig::RSA_PSS_2048_8192_SHA256,
            Algorithm::PS384 => &ring_sig::RSA_PSS_2048_8192_SHA384,
            Algorithm::PS512 => &ring_sig::RSA_PSS_2048_8192_SHA512,
            other => {
                // EC and EdDSA keys are raw public points (`SecretOrDer`).
                let algorithm: &dyn ring_sig::VerificationAlgorithm = match other {
                    Algorithm::ES256 => &ring_sig::ECDSA_P256_SHA256_FIXED,
                    Algorithm::ES384 => &ring_sig::ECDSA_P384_SHA384_FIXED,
                    Algorithm::EdDSA => &ring_sig::ED25519,
                    _ => return Err(jsonwebtoken::signature::Error::new()),
                };
                let bytes = self
                    .key
                    .try_get_as_bytes()
                    .map_err(|_| jsonwebtoken::signature::Error::new())?;
                return UnparsedPublicKey::new(algorithm, bytes)
                    .verify(msg, sig)
                    .map_err(|_| jsonwebtoken::signature::Error::new());
            }
        };
        let verified = match self.key.kind() {
            DecodingKeyKind::RsaModulusExponent { n, e } => {
                RsaPublicKeyComponents { n, e }.verify(rsa, msg, sig)
            }
            DecodingKeyKind::SecretOrDer(der) => UnparsedPublicKey::new(rsa, der).verify(msg, sig),
        };
        verified.map_err(|_| jsonwebtoken::signature::Error::new())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
    use ring::rand::SystemRandom;
    use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
    use serde_json::json;

    const ISSUER: &str = "https://idp.example.com";

    struct Signer {
        pair: EcdsaKeyPair,
        rng: SystemRandom,
    }

    impl Signer {
        fn new() -> Signer {
            let rng = SystemRandom::new();
            let pkcs8 =
                EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
            let pair =
                EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
                    .unwrap();
            Signer { pair, rng }
        }

        /// The public key as a JWK with `kid` and extra members.
        fn jwk(&self, kid: &str, extra: Value) -> Jwk {
            let point = self.pair.public_key().as_ref();
            let mut jwk = json!({
                "kty": "EC", "crv": "P-256", "kid": kid,
                "x": B64.encode(&point[1..33]), "y": B64.encode(&point[33..]),
            });
            if let (Some(jwk), Value::Object(extra)) = (jwk.as_object_mut(), extra) {
                jwk.extend(extra);
            }
            serde_json::from_value(jwk).unwrap()
        }

        fn token(&self, header: Value, claims: &Value) -> String {
            let message = format!(
                "{}.{}",
                B64.encode(header.to_string()),
                B64.encode(claims.to_string())
            );
            let signature = self.pair.sign(&self.rng, message.as_bytes()).unwrap();
            format!("{message}.{}", B64.encode(signature.as_ref()))
        }
    }

    fn now() -> i64 {
        i64::try_from(jsonwebtoken::get_current_timestamp()).unwrap()
    }

    fn claims() -> Value {
        json!({
            "iss": ISSUER, "aud": "tollgate", "sub": "u1", "nonce": "n1",
            "iat": now(), "exp": now() + 300, "email": "ada@example.com",
        })
    }

    fn expected() -> Expected<'static> {
        Expected {
            issuer: ISSUER,
            client_id: "tollgate",
            nonce: "n1",
        }
    }

    fn es256(kid: &str) -> Value {
        json!({"alg": "ES256", "kid": kid, "typ": "JWT"})
    }

    fn invalid(result: Result<Value, Rejection>) -> String {
        match result {
            Err(Rejection::Invalid(reason)) => reason,
            other => panic!("expected a rejection, got {other:?}"),
        }
    }

    #[test]
    fn accepts_a_token_signed_by_a_published_key_for_this_sign_in() {
        let signer = Signer::new();
        let keys = [
            Signer::new().jwk("old", json!({})),
            signer.jwk("k1", json!({"use": "sig"})),
        ];
        let token = signer.token(es256("k1"), &claims());
        let verified = verify(&token, &keys, &expected()).unwrap();
        assert_eq!(verified["email"], "ada@example.com");
        // No `kid`: any signing key of the right kind is tried.
        let token = signer.token(json!({"alg": "ES256"}), &claims());
        assert!(verify(&token, &keys, &expected()).is_ok());
        // An audience list holding this client, with itself as the authorised party.
        let mut many = claims();
        many["aud"] = json!(["other", "tollgate"]);
        many["azp"] = json!("tollgate");
        assert!(verify(&signer.token(es256("k1"), &many), &keys, &expected()).is_ok());
    }

    #[test]
    fn an_unknown_or_unsuitable_key_asks_for_the_key_set_again() {
        let signer = Signer::new();
        let token = signer.token(es256("new"), &claims());
        let keys = [signer.jwk("old", json!({}))];
        assert!(matches!(
            verify(&token, &keys, &expected()),
            Err(Rejection::UnknownKey(Some(kid))) if kid == "new"
        ));
        for extra in [json!({"use": "enc"}), json!({"alg": "ES384"})] {
            let keys = [signer.jwk("new", extra)];
            assert!(matches!(
                verify(&token, &keys, &expected()),
                Err(Rejection::UnknownKey(_))
            ));
        }
    }

    #[test]
    fn refuses_forged_foreign_stale_and_replayed_tokens() {
        let signer = Signer::new();
        let keys = [signer.jwk("k1", json!({}))];
        let check = |claims: &Value| {
            invalid(verify(
                &signer.token(es256("k1"), claims),
                &keys,
                &expected(),
            ))
        };

        // Signed by another key under the same kid.
        let forged = Signer::new().token(es256("k1"), &claims());
        assert!(invalid(verify(&forged, &keys, &expected())).contains("signature does not verify"));
        let mut c = claims();
        c["nonce"] = json!("n2");
        assert!(check(&c).contains("nonce does not match"));
        c = claims();
        c.as_object_mut().unwrap().remove("nonce");
        assert!(check(&c).contains("nonce does not match"));
        c = claims();
        c["aud"] = json!("someone-else");
        assert!(check(&c).contains("meant for another client"));
        c = claims();
        c["iss"] = json!("https://evil.example.com");
        assert!(check(&c).contains("not issued by https://idp.example.com"));
        c = claims();
        c["exp"] = json!(now() - 120);
        assert!(check(&c).contains("expired"));
        c["exp"] = json!(now() - 30);
        assert!(
            verify(&signer.token(es256("k1"), &c), &keys, &expected()).is_ok(),
            "60 s leeway"
        );
        // A malformed claim is refused, not skipped (GHSA-h395-gr6q-cpjc).
        for (claim, value) in [
            ("exp", json!("never")),
            ("nbf", json!("later")),
            ("aud", json!(7)),
        ] {
            c = claims();
            c[claim] = value;
            assert!(check(&c).contains(&format!("'{claim}'")), "{claim}");
        }
        c = claims();
        c["nbf"] = json!(now() + 600);
        assert!(check(&c).contains("not valid yet"));
        c = claims();
        c["azp"] = json!("other");
        assert!(check(&c).contains("another client"));
        c = claims();
        c["sub"] = json!("");
        assert!(check(&c).contains("subject"));
    }

    #[test]
    fn refuses_symmetric_and_unsigned_algorithms() {
        let signer = Signer::new();
        let keys = [signer.jwk("k1", json!({}))];
        let hs = signer.token(json!({"alg": "HS256", "kid": "k1"}), &claims());
        assert!(invalid(verify(&hs, &keys, &expected())).contains("HS256"));
        let none = signer.token(json!({"alg": "none"}), &claims());
        assert!(invalid(verify(&none, &keys, &expected())).contains("not a signed JWT"));
    }
}
