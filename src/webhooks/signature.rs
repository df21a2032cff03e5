//! The signature TalkJS puts on webhook requests, and Natter too: HMAC-SHA256 keyed with the app's secret over
//! `<timestamp>.<raw body>`, in uppercase hex, sent as `X-TalkJS-Signature` beside `X-TalkJS-Timestamp`.

use hmac::{Hmac, Mac};
use sha2::Sha256;

pub const TIMESTAMP_HEADER: &str = "X-TalkJS-Timestamp";
pub const SIGNATURE_HEADER: &str = "X-TalkJS-Signature";

pub fn sign(secret: &str, timestamp: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes a key of any length");
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    hex::encode_upper(mac.finalize().into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signs_the_timestamp_a_dot_and_the_body_in_uppercase_hex() {
        // From outside: printf '1700000000000.{"a":1}' | openssl dgst -sha256 -hmac sk_test_secret
        assert_eq!(
            sign("sk_test_secret", "1700000000000", br#"{"a":1}"#),
            "80393440B7979B78FB0C3DCBE092B875B3F3D34534B947925B4DFFB802F7E047"
        );
        assert_ne!(
            sign("sk_test_secret", "1700000000001", br#"{"a":1}"#),
            sign("sk_test_secret", "1700000000000", br#"{"a":1}"#)
        );
    }
}
