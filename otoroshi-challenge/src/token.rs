//! The Otoroshi exchange protocol V2: the request's `Otoroshi-State` is a JWT signed HS512 with
//! the shared secret (`iss` = `Otoroshi`, a `state` claim, `exp` in the future, `iat`/`nbf`
//! checked when present); the response carries `Otoroshi-State-Resp`, a JWT HS512 with
//! `state-resp` = that state, `aud` = `Otoroshi`, `iat`, `nbf` and `exp` = `iat` + 30 s.
//!
//! Verifying and signing HS512 on every request is the proxy's main cost, so a verified token
//! is remembered until it expires, and a response token is reused within the same second.
//!
//! [`Challenge`] is the proxy's side; [`Otoroshi`] is Otoroshi's (it signs the request token
//! and checks the answer's), for the health check and `otoroshi-challenge token`: one
//! implementation of the protocol, so that what they send is what the proxy accepts.

use http::header::HeaderValue;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{decode, encode, Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Tokens larger than this are refused before any parsing.
pub const MAX_TOKEN_BYTES: usize = 4096;
/// Clock skew tolerated on `exp`, `nbf` and `iat`, in seconds.
pub const LEEWAY_SECONDS: u64 = 2;
/// Lifetime of the response token.
pub const RESPONSE_TTL_SECONDS: u64 = 30;
/// Lifetime of a request token [`Otoroshi`] signs by default (Otoroshi's own default).
pub const STATE_TTL: Duration = Duration::from_secs(30);
/// How many verified tokens are remembered before the memory is cleared.
const MAX_REMEMBERED: usize = 10_000;

#[derive(Deserialize)]
struct StateClaims {
    state: Option<serde_json::Value>,
    iat: Option<u64>,
}

/// The claims of the `Otoroshi-State` token Otoroshi sends.
#[derive(Serialize, Deserialize, Debug, PartialEq)]
pub struct RequestClaims {
    pub iss: String,
    pub state: String,
    pub iat: u64,
    pub nbf: u64,
    pub exp: u64,
}

#[derive(Serialize, Deserialize, Debug, PartialEq)]
pub struct ResponseClaims {
    #[serde(rename = "state-resp")]
    pub state_resp: String,
    pub aud: String,
    pub iat: u64,
    pub nbf: u64,
    pub exp: u64,
}

/// Why a request is refused, as the 401 body says it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    #[error("Missing Otoroshi-State header")]
    MissingHeader,
    #[error("Otoroshi-State header too large ({0} bytes, at most 4096)")]
    TooLarge(usize),
    #[error("Missing required claim: {0}")]
    MissingClaim(String),
    #[error("JWT verification failed: {0}")]
    Invalid(String),
    /// An answer without `Otoroshi-State-Resp`: it did not come through the challenge.
    #[error("Missing Otoroshi-State-Resp header")]
    MissingResponse,
    /// A response token for another request.
    #[error("Otoroshi-State-Resp answers another state")]
    OtherState,
}

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Verifies request tokens and signs response tokens with one secret.
pub struct Challenge {
    decoding: DecodingKey,
    encoding: EncodingKey,
    validation: Validation,
    /// token -> (state, exp) of tokens already verified.
    verified: Mutex<HashMap<String, (String, u64)>>,
    /// state -> (iat, token) of the last response token signed for it, kept as the header
    /// value itself: it is sent as is until the second changes.
    signed: Mutex<HashMap<String, (u64, HeaderValue)>>,
}

impl Challenge {
    pub fn new(secret: &[u8]) -> Self {
        let mut validation = Validation::new(Algorithm::HS512);
        validation.set_issuer(&["Otoroshi"]);
        validation.set_required_spec_claims(&["exp", "iss"]);
        validation.validate_nbf = true;
        validation.validate_aud = false;
        validation.leeway = LEEWAY_SECONDS;
        Challenge {
            decoding: DecodingKey::from_secret(secret),
            encoding: EncodingKey::from_secret(secret),
            validation,
            verified: Mutex::new(HashMap::new()),
            signed: Mutex::new(HashMap::new()),
        }
    }

    /// The state of a valid `Otoroshi-State` header.
    pub fn verify(&self, header: Option<&[u8]>) -> Result<String, Rejection> {
        let raw = header.ok_or(Rejection::MissingHeader)?;
        if raw.len() > MAX_TOKEN_BYTES {
            return Err(Rejection::TooLarge(raw.len()));
        }
        let token = std::str::from_utf8(raw)
            .map_err(|_| Rejection::Invalid("InvalidToken".into()))?
            .trim();
        let now = now();
        if let Some((state, exp)) = self.verified.lock().expect("lock").get(token) {
            if now <= exp + LEEWAY_SECONDS {
                return Ok(state.clone());
            }
        }
        let (state, exp) = self.verify_signature(token, now)?;
        let mut verified = self.verified.lock().expect("lock");
        if verified.len() >= MAX_REMEMBERED {
            verified.clear();
        }
        verified.insert(token.to_string(), (state.clone(), exp));
        Ok(state)
    }

    fn verify_signature(&self, token: &str, now: u64) -> Result<(String, u64), Rejection> {
        let data = decode::<serde_json::Map<String, serde_json::Value>>(
            token,
            &self.decoding,
            &self.validation,
        )
        .map_err(|e| match e.kind() {
            ErrorKind::MissingRequiredClaim(claim) => Rejection::MissingClaim(claim.clone()),
            kind => Rejection::Invalid(format!("{kind:?}")),
        })?;
        let exp = data.claims.get("exp").and_then(|v| v.as_u64()).unwrap_or(0);
        let claims: StateClaims = serde_json::from_value(serde_json::Value::Object(data.claims))
            .map_err(|_| Rejection::Invalid("InvalidClaims".into()))?;
        if claims.iat.is_some_and(|iat| iat > now + LEEWAY_SECONDS) {
            return Err(Rejection::Invalid("ImmatureSignature".into()));
        }
        let state = match claims.state {
            Some(serde_json::Value::String(s)) => s,
            Some(serde_json::Value::Null) | None => {
                return Err(Rejection::MissingClaim("state".into()))
            }
            Some(other) => other.to_string(),
        };
        Ok((state, exp))
    }

    /// The `Otoroshi-State-Resp` token for `state`, signed now, as a header value.
    pub fn sign_response(&self, state: &str) -> HeaderValue {
        let iat = now();
        if let Some((signed_at, token)) = self.signed.lock().expect("lock").get(state) {
            if *signed_at == iat {
                return token.clone();
            }
        }
        let claims = ResponseClaims {
            state_resp: state.to_string(),
            aud: "Otoroshi".into(),
            iat,
            nbf: iat,
            exp: iat + RESPONSE_TTL_SECONDS,
        };
        let token = encode(&Header::new(Algorithm::HS512), &claims, &self.encoding)
            .expect("HS512 signing cannot fail");
        // Base64url parts and dots: always a valid header value.
        let token = HeaderValue::from_str(&token).expect("a JWT is a valid header value");
        let mut signed = self.signed.lock().expect("lock");
        if signed.len() >= MAX_REMEMBERED {
            signed.clear();
        }
        signed.insert(state.to_string(), (iat, token.clone()));
        token
    }
}

/// Otoroshi's side of the exchange: the `Otoroshi-State` token a request carries, and the
/// check of the `Otoroshi-State-Resp` the answer must carry back.
pub struct Otoroshi {
    encoding: EncodingKey,
    decoding: DecodingKey,
    /// How a response token is checked: HS512, `aud` = `Otoroshi`, not expired.
    validation: Validation,
}

impl std::fmt::Debug for Otoroshi {
    /// Never the secret.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Otoroshi { .. }")
    }
}

impl Otoroshi {
    pub fn new(secret: &[u8]) -> Self {
        let mut validation = Validation::new(Algorithm::HS512);
        validation.set_audience(&["Otoroshi"]);
        validation.set_required_spec_claims(&["exp", "aud"]);
        validation.validate_nbf = true;
        validation.leeway = LEEWAY_SECONDS;
        Otoroshi {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
        }
    }

    /// A valid `Otoroshi-State` token for `state`, for `ttl` from now (whole seconds, at
    /// least one), as [`Challenge::verify`] checks it.
    pub fn state_token(&self, state: &str, ttl: Duration) -> String {
        let iat = now();
        let claims = RequestClaims {
            iss: "Otoroshi".into(),
            state: state.to_string(),
            iat,
            nbf: iat,
            exp: iat + ttl.as_secs().max(1),
        };
        encode(&Header::new(Algorithm::HS512), &claims, &self.encoding)
            .expect("HS512 signing cannot fail")
    }

    /// Whether `header` is a valid `Otoroshi-State-Resp` for `state`: the answer then came
    /// back through the challenge that got our token.
    pub fn check_response(&self, header: Option<&[u8]>, state: &str) -> Result<(), Rejection> {
        let raw = header.ok_or(Rejection::MissingResponse)?;
        if raw.len() > MAX_TOKEN_BYTES {
            return Err(Rejection::TooLarge(raw.len()));
        }
        let token = std::str::from_utf8(raw)
            .map_err(|_| Rejection::Invalid("InvalidToken".into()))?
            .trim();
        let claims = decode::<ResponseClaims>(token, &self.decoding, &self.validation)
            .map_err(|e| match e.kind() {
                ErrorKind::MissingRequiredClaim(claim) => Rejection::MissingClaim(claim.clone()),
                kind => Rejection::Invalid(format!("{kind:?}")),
            })?
            .claims;
        if claims.state_resp != state {
            return Err(Rejection::OtherState);
        }
        Ok(())
    }
}

/// A state no other request shares: this process, the time and a counter.
pub fn new_state() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!(
        "{:x}-{nanos:x}-{:x}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const SECRET: &[u8] = b"test-secret";

    fn token(claims: serde_json::Value, alg: Algorithm, secret: &[u8]) -> String {
        encode(
            &Header::new(alg),
            &claims,
            &EncodingKey::from_secret(secret),
        )
        .unwrap()
    }

    fn valid_claims() -> serde_json::Value {
        json!({"iss": "Otoroshi", "state": "s-123", "exp": now() + 60, "iat": now(), "nbf": now()})
    }

    fn verify(t: &str) -> Result<String, Rejection> {
        Challenge::new(SECRET).verify(Some(t.as_bytes()))
    }

    #[test]
    fn a_valid_token_gives_its_state_and_is_remembered() {
        let challenge = Challenge::new(SECRET);
        let t = token(valid_claims(), Algorithm::HS512, SECRET);
        assert_eq!(challenge.verify(Some(t.as_bytes())), Ok("s-123".into()));
        assert_eq!(challenge.verify(Some(t.as_bytes())), Ok("s-123".into()));
        assert_eq!(challenge.verified.lock().unwrap().len(), 1);
    }

    #[test]
    fn every_bad_token_is_named() {
        let mut claims = valid_claims();
        let cases: Vec<(String, Rejection)> = vec![
            (
                token(valid_claims(), Algorithm::HS512, b"wrong"),
                Rejection::Invalid("InvalidSignature".into()),
            ),
            (
                token(valid_claims(), Algorithm::HS256, SECRET),
                Rejection::Invalid("InvalidAlgorithm".into()),
            ),
            (
                {
                    claims["iss"] = json!("Other");
                    token(claims.clone(), Algorithm::HS512, SECRET)
                },
                Rejection::Invalid("InvalidIssuer".into()),
            ),
            (
                token(
                    json!({"iss": "Otoroshi", "state": "s", "exp": now() - 60}),
                    Algorithm::HS512,
                    SECRET,
                ),
                Rejection::Invalid("ExpiredSignature".into()),
            ),
            (
                token(
                    json!({"iss": "Otoroshi", "state": "s"}),
                    Algorithm::HS512,
                    SECRET,
                ),
                Rejection::MissingClaim("exp".into()),
            ),
            (
                token(
                    json!({"iss": "Otoroshi", "exp": now() + 60}),
                    Algorithm::HS512,
                    SECRET,
                ),
                Rejection::MissingClaim("state".into()),
            ),
            (
                token(
                    json!({"iss": "Otoroshi", "state": "s", "exp": now() + 60, "nbf": now() + 600}),
                    Algorithm::HS512,
                    SECRET,
                ),
                Rejection::Invalid("ImmatureSignature".into()),
            ),
            (
                token(
                    json!({"iss": "Otoroshi", "state": "s", "exp": now() + 60, "iat": now() + 600}),
                    Algorithm::HS512,
                    SECRET,
                ),
                Rejection::Invalid("ImmatureSignature".into()),
            ),
            ("garbage".into(), Rejection::Invalid("InvalidToken".into())),
        ];
        for (t, expected) in cases {
            assert_eq!(verify(&t), Err(expected.clone()), "{expected}");
        }
        assert_eq!(
            Challenge::new(SECRET).verify(None),
            Err(Rejection::MissingHeader)
        );
        assert_eq!(verify(&"a".repeat(5000)), Err(Rejection::TooLarge(5000)));
    }

    #[test]
    fn alg_none_is_refused() {
        // {"alg":"none","typ":"JWT"} . {"iss":"Otoroshi","state":"s","exp":9999999999} . (no signature)
        let t = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJpc3MiOiJPdG9yb3NoaSIsInN0YXRlIjoicyIsImV4cCI6OTk5OTk5OTk5OX0.";
        assert!(matches!(verify(t), Err(Rejection::Invalid(_))));
    }

    #[test]
    fn the_response_token_carries_the_state_for_30_seconds() {
        let challenge = Challenge::new(SECRET);
        let value = challenge.sign_response("s-123");
        let t = value.to_str().unwrap();
        let mut validation = Validation::new(Algorithm::HS512);
        validation.set_audience(&["Otoroshi"]);
        let claims = decode::<ResponseClaims>(t, &DecodingKey::from_secret(SECRET), &validation)
            .unwrap()
            .claims;
        assert_eq!(claims.state_resp, "s-123");
        assert_eq!(claims.aud, "Otoroshi");
        assert_eq!(claims.exp - claims.iat, 30);
        assert_eq!(claims.nbf, claims.iat);
    }

    /// What Otoroshi signs, the challenge accepts; what the challenge answers, Otoroshi
    /// accepts for that state only, and only from the same secret.
    #[test]
    fn otoroshis_side_speaks_the_challenges_protocol() {
        let otoroshi = Otoroshi::new(SECRET);
        let challenge = Challenge::new(SECRET);
        let state = new_state();
        assert_ne!(state, new_state());
        let request = otoroshi.state_token(&state, Duration::from_secs(30));
        assert_eq!(
            challenge.verify(Some(request.as_bytes())),
            Ok(state.clone())
        );
        let answer = challenge.sign_response(&state);
        assert_eq!(
            otoroshi.check_response(Some(answer.as_bytes()), &state),
            Ok(())
        );
        assert_eq!(
            otoroshi.check_response(Some(answer.as_bytes()), "another"),
            Err(Rejection::OtherState)
        );
        assert_eq!(
            otoroshi.check_response(None, &state),
            Err(Rejection::MissingResponse)
        );
        let foreign = Challenge::new(b"another secret").sign_response(&state);
        assert_eq!(
            otoroshi.check_response(Some(foreign.as_bytes()), &state),
            Err(Rejection::Invalid("InvalidSignature".into()))
        );
        // A request token is not a response token (no audience).
        assert!(otoroshi
            .check_response(Some(request.as_bytes()), &state)
            .is_err());
        assert_eq!(format!("{otoroshi:?}"), "Otoroshi { .. }");
    }

    /// Random bytes, and valid tokens cut or with one byte changed: always a rejection,
    /// never a panic (a fixed seed, so a failure is reproducible).
    #[test]
    fn no_input_panics() {
        let challenge = Challenge::new(SECRET);
        let valid = token(valid_claims(), Algorithm::HS512, SECRET).into_bytes();
        let mut seed: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for _ in 0..5000 {
            let len = (next() % 600) as usize;
            let random: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            assert!(challenge.verify(Some(&random)).is_err());
            let mut mutated = valid[..(next() as usize % valid.len()) + 1].to_vec();
            let at = next() as usize % mutated.len();
            mutated[at] ^= (next() as u8) | 1;
            let _ = challenge.verify(Some(&mutated));
        }
    }
}
