//! The MSK IAM token the relay sends (through `TokenCache` and `MskIamSigner`,
//! the code the Lambda runs) is the token AWS's reference signer,
//! aws-msk-iam-sasl-signer-python, makes for the same credentials, region and
//! signing time: same endpoint, same query parameters, same SigV4 signature.
//! Only `User-Agent` names a different library.
//!
//! The Rust signer reads the clock itself; the test takes the signing time
//! from its token (`X-Amz-Date`) and freezes the Python signer's clock at that
//! second, so the comparison is exact, signature included.

#[path = "support/python_tools.rs"]
mod python_tools;

use std::collections::BTreeMap;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use aws_credential_types::provider::SharedCredentialsProvider;
use aws_credential_types::Credentials;
use base64::Engine as _;
use raffle_outbox::kafka::auth::oauthbearer::{MskIamSigner, TokenCache, TokenSource};

const REGION: &str = "eu-west-1";
const ACCESS_KEY: &str = "AKIAIOSFODNN7EXAMPLE";
const SECRET_KEY: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
const SESSION_TOKEN: &str = "IQoJb3JpZ2luX2VjEXAMPLE/session+token==";

/// A token decoded: the URL without its query, and the query's parameters.
fn decode(token: &str) -> (String, BTreeMap<String, String>) {
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token.trim())
        .expect("a token is unpadded base64url");
    let url = String::from_utf8(bytes).expect("a token is a URL");
    let (base, query) = url.split_once('?').expect("a signed URL has a query");
    let params = query
        .split('&')
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect();
    (base.trim_end_matches('/').to_string(), params)
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                out.push(u8::from_str_radix(&s[i + 1..i + 3], 16).expect("hex escape"));
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).unwrap()
}

#[tokio::test]
async fn our_token_is_the_reference_signers_token() {
    let credentials = Credentials::new(
        ACCESS_KEY,
        SECRET_KEY,
        Some(SESSION_TOKEN.into()),
        None,
        "fixed",
    );
    let signer = MskIamSigner::new(
        aws_config::Region::new(REGION),
        SharedCredentialsProvider::new(credentials),
    );
    let ours = signer.sign().await.expect("signed");
    // The same token through the cache the connections use.
    let cache = TokenCache::new(Arc::new(signer));
    let (cached_base, cached) = decode(&cache.token().await.unwrap());
    assert_eq!(cached_base, format!("https://kafka.{REGION}.amazonaws.com"));
    assert_eq!(cached["Action"], "kafka-cluster:Connect");

    let (base, params) = decode(&ours.value);
    let signing_time = params["X-Amz-Date"].clone();

    let bin = python_tools::bin("lint");
    let out = Command::new(bin.join("python"))
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/support/msk_iam_reference_token.py"
        ))
        .args([REGION, ACCESS_KEY, SECRET_KEY, SESSION_TOKEN, &signing_time])
        .output()
        .expect("the reference signer runs");
    assert!(
        out.status.success(),
        "reference signer: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    let mut lines = stdout.lines();
    let reference_token = lines.next().expect("a token line");
    let reference_expiry_ms: u64 = lines.next().expect("an expiry line").parse().unwrap();
    let (reference_base, reference) = decode(reference_token);

    assert_eq!(base, reference_base, "same endpoint");
    let without_agent = |p: &BTreeMap<String, String>| {
        let mut p = p.clone();
        p.remove("User-Agent");
        p
    };
    assert_eq!(
        without_agent(&params),
        without_agent(&reference),
        "same signed request"
    );
    for expected in [
        "Action",
        "X-Amz-Algorithm",
        "X-Amz-Credential",
        "X-Amz-Date",
        "X-Amz-Expires",
        "X-Amz-Security-Token",
        "X-Amz-Signature",
        "X-Amz-SignedHeaders",
    ] {
        assert!(params.contains_key(expected), "{expected} present");
    }
    assert_eq!(params["X-Amz-Security-Token"], SESSION_TOKEN);
    assert_eq!(
        params["X-Amz-Credential"],
        format!(
            "{ACCESS_KEY}/{}/{REGION}/kafka-cluster/aws4_request",
            &signing_time[..8]
        )
    );
    assert_eq!(params["X-Amz-Expires"], "900");
    assert!(params["User-Agent"].starts_with("aws-msk-iam-sasl-signer-rs/"));
    assert!(reference["User-Agent"].starts_with("aws-msk-iam-sasl-signer-python/"));
    assert_eq!(
        ours.expires_at,
        UNIX_EPOCH + Duration::from_millis(reference_expiry_ms),
        "same expiry: signing time + 15 minutes"
    );
}
