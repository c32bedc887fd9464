//! Stateless proof that a source receives what the sensor sends it: keyed To-tags and Digest
//! nonces (issue 18).
//!
//! A token is `<bucket: 8 hex><MAC: 2 x PROOF_MAC_BYTES hex>`, lower case. The bucket is
//! `now_s / PROOF_BUCKET_S` (its low 32 bits; the checker rebuilds the rest from its own clock).
//! The MAC is HMAC-SHA256, truncated, over the token kind, the source IP (IPv4-mapped IPv6 is
//! IPv4) and the full bucket, keyed by the key of the bucket's UTC day: HMAC-SHA256(master,
//! `"sentrypeer proof day"` || day as u64 big-endian). So a node keeps no table per source, keys
//! rotate daily, and a token of one kind, source, node or day proves nothing for another.
//!
//! Never: reads a clock (`now_s` is passed in), allocates, panics on any token bytes, compares a
//! MAC in variable time, prints the master secret.
//!
//! Limits: `PROOF_BUCKET_S`, `PROOF_TOKEN_FRESH_S`, `PROOF_FUTURE_SKEW_S`, `PROOF_MAC_BYTES` in
//! [`crate::config::limits`].

use std::fmt;
use std::net::IpAddr;

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use crate::config::limits::{
    PROOF_BUCKET_S, PROOF_FUTURE_SKEW_S, PROOF_MAC_BYTES, PROOF_TOKEN_FRESH_S,
};

type HmacSha256 = Hmac<Sha256>;

/// Hex characters of the bucket.
const BUCKET_HEX: usize = 8;
/// Characters of a token.
pub const TOKEN_BYTES: usize = BUCKET_HEX + 2 * PROOF_MAC_BYTES;
const BUCKETS_PER_DAY: u64 = 86_400 / PROOF_BUCKET_S;
const FRESH_BUCKETS: u64 = PROOF_TOKEN_FRESH_S / PROOF_BUCKET_S;
const SKEW_BUCKETS: u64 = PROOF_FUTURE_SKEW_S / PROOF_BUCKET_S;
const DAY_LABEL: &[u8] = b"sentrypeer proof day";
const HEX: &[u8; 16] = b"0123456789abcdef";
// Short enough for a To-tag or nonce that draws no attention.
const _: () = assert!(TOKEN_BYTES <= 32);

/// The per-node master secret the daily MAC keys are derived from.
#[derive(Clone)]
pub struct ProofKey {
    master: [u8; 32],
}

impl fmt::Debug for ProofKey {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("ProofKey(..)")
    }
}

/// What a token is for; a token of one kind never checks as the other.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    /// The To-tag of a reply in responsive mode.
    Tag,
    /// The nonce of a `401 Unauthorized` Digest challenge.
    Nonce,
}

impl TokenKind {
    fn label(self) -> &'static [u8] {
        match self {
            Self::Tag => b"tag",
            Self::Nonce => b"nonce",
        }
    }
}

/// A token: `TOKEN_BYTES` lower-case hex characters.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Token {
    bytes: [u8; TOKEN_BYTES],
}

impl Token {
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "Token({})", self.bytes.escape_ascii())
    }
}

/// The outcome of [`ProofKey::check_token`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenVerdict {
    /// Ours, for this kind and source, made at most `PROOF_TOKEN_FRESH_S` ago: proof.
    Valid,
    /// Ours, for this kind and source, but older than `PROOF_TOKEN_FRESH_S`.
    Stale,
    /// Anything else: another MAC, source, kind or node, malformed, or a bucket further in the
    /// future than `PROOF_FUTURE_SKEW_S`.
    Foreign,
}

impl ProofKey {
    pub fn new(master: [u8; 32]) -> Self {
        Self { master }
    }

    /// A fresh token of `kind` for `ip` at `now_s` (UTC seconds).
    pub fn make_token(&self, kind: TokenKind, ip: IpAddr, now_s: u64) -> Token {
        let bucket = now_s / PROOF_BUCKET_S;
        let mut bytes = [0u8; TOKEN_BYTES];
        let (bucket_hex, mac_hex) = bytes.split_at_mut(BUCKET_HEX);
        // The low 32 bits of the bucket (the truncation is the format).
        #[allow(clippy::cast_possible_truncation)]
        write_hex(&(bucket as u32).to_be_bytes(), bucket_hex);
        let tag = self.mac(kind, ip, bucket).finalize().into_bytes();
        write_hex(tag.get(..PROOF_MAC_BYTES).unwrap_or_default(), mac_hex);
        Token { bytes }
    }

    /// Whether `token` is a fresh token of ours of `kind` for `ip` at `now_s` (UTC seconds).
    pub fn check_token(
        &self,
        kind: TokenKind,
        ip: IpAddr,
        token: &[u8],
        now_s: u64,
    ) -> TokenVerdict {
        let Some((bucket_low, mac)) = parse_token(token) else {
            return TokenVerdict::Foreign;
        };
        let now_bucket = now_s / PROOF_BUCKET_S;
        // The bucket's age in buckets, from the low 32 bits: negative is the future.
        #[allow(clippy::cast_possible_truncation)]
        let age = i64::from((now_bucket as u32).wrapping_sub(bucket_low).cast_signed());
        if age < 0 && age.unsigned_abs() > SKEW_BUCKETS {
            return TokenVerdict::Foreign;
        }
        let bucket = now_bucket.wrapping_sub(age.cast_unsigned());
        if self
            .mac(kind, ip, bucket)
            .verify_truncated_left(&mac)
            .is_err()
        {
            return TokenVerdict::Foreign;
        }
        if age > 0 && age.unsigned_abs() > FRESH_BUCKETS {
            TokenVerdict::Stale
        } else {
            TokenVerdict::Valid
        }
    }

    /// The MAC state over kind, source and bucket, keyed by the bucket's day key.
    fn mac(&self, kind: TokenKind, ip: IpAddr, bucket: u64) -> HmacSha256 {
        let mut mac = self.day_mac(bucket / BUCKETS_PER_DAY);
        mac.update(kind.label());
        mac.update(&canonical_ip(ip));
        mac.update(&bucket.to_be_bytes());
        mac
    }

    fn day_mac(&self, day: u64) -> HmacSha256 {
        let mut derive = keyed(&self.master);
        derive.update(DAY_LABEL);
        derive.update(&day.to_be_bytes());
        let mut day_key = [0u8; 32];
        day_key.copy_from_slice(&derive.finalize().into_bytes());
        keyed(&day_key)
    }
}

/// HMAC-SHA256 keyed by 32 bytes. HMAC pads a key shorter than the block with zeros, so padding
/// it here is the same MAC, and needs no fallible `new_from_slice`.
fn keyed(key: &[u8; 32]) -> HmacSha256 {
    let mut block = [0u8; 64];
    let (head, _) = block.split_at_mut(32);
    head.copy_from_slice(key);
    HmacSha256::new(&block.into())
}

/// The IP as 16 bytes, IPv4 as IPv4-mapped IPv6 (so both spellings of an IPv4 source agree).
fn canonical_ip(ip: IpAddr) -> [u8; 16] {
    match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
        IpAddr::V6(v6) => v6.octets(),
    }
}

/// The bucket's low 32 bits and the MAC of a well-formed token.
fn parse_token(token: &[u8]) -> Option<(u32, [u8; PROOF_MAC_BYTES])> {
    if token.len() != TOKEN_BYTES {
        return None;
    }
    let (bucket_hex, mac_hex) = token.split_at_checked(BUCKET_HEX)?;
    let mut bucket = [0u8; 4];
    read_hex(bucket_hex, &mut bucket)?;
    let mut mac = [0u8; PROOF_MAC_BYTES];
    read_hex(mac_hex, &mut mac)?;
    Some((u32::from_be_bytes(bucket), mac))
}

fn write_hex(bytes: &[u8], out: &mut [u8]) {
    for (&byte, pair) in bytes.iter().zip(out.chunks_exact_mut(2)) {
        if let [high, low] = pair {
            *high = HEX.get(usize::from(byte >> 4)).copied().unwrap_or(b'0');
            *low = HEX.get(usize::from(byte & 0xf)).copied().unwrap_or(b'0');
        }
    }
}

/// Decodes lower-case hex into `out` (exactly twice its length); `None` on any other byte.
fn read_hex(hex: &[u8], out: &mut [u8]) -> Option<()> {
    if hex.len() != 2 * out.len() {
        return None;
    }
    for (slot, pair) in out.iter_mut().zip(hex.chunks_exact(2)) {
        let [high, low] = pair else { return None };
        *slot = nibble(*high)? << 4 | nibble(*low)?;
    }
    Some(())
}

fn nibble(byte: u8) -> Option<u8> {
    match byte {
        b'0'..=b'9' => Some(byte - b'0'),
        b'a'..=b'f' => Some(byte - b'a' + 10),
        _ => None,
    }
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use proptest::prelude::*;

    use super::*;

    const NOW_S: u64 = 1_796_000_000; // 2026-11-30
    const KIND: [TokenKind; 2] = [TokenKind::Tag, TokenKind::Nonce];

    fn key(seed: u8) -> ProofKey {
        ProofKey::new([seed; 32])
    }

    fn any_ip() -> impl Strategy<Value = IpAddr> {
        prop_oneof![
            any::<[u8; 4]>().prop_map(IpAddr::from),
            any::<[u8; 16]>().prop_map(IpAddr::from),
        ]
    }

    #[test]
    fn proof_token_format() {
        let token = key(1).make_token(TokenKind::Tag, IpAddr::from([192, 0, 2, 1]), NOW_S);
        let text = token.as_bytes();
        assert_eq!(text.len(), TOKEN_BYTES);
        assert!(
            text.iter()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b))
        );
        assert_eq!(
            &text[..8],
            format!("{:08x}", NOW_S / PROOF_BUCKET_S).as_bytes()
        );
        assert_eq!(format!("{token:?}").len(), TOKEN_BYTES + 7);
        assert_eq!(format!("{:?}", key(1)), "ProofKey(..)");
    }

    #[test]
    fn proof_ipv4_mapped_is_ipv4() {
        let v4 = IpAddr::from([203, 0, 113, 9]);
        let mapped = IpAddr::V6(Ipv4Addr::new(203, 0, 113, 9).to_ipv6_mapped());
        let token = key(1).make_token(TokenKind::Nonce, v4, NOW_S);
        assert_eq!(token, key(1).make_token(TokenKind::Nonce, mapped, NOW_S));
        let verdict = key(1).check_token(TokenKind::Nonce, mapped, token.as_bytes(), NOW_S);
        assert_eq!(verdict, TokenVerdict::Valid);
        let compatible = IpAddr::V6(Ipv6Addr::from(u128::from(0xcb00_7109_u32)));
        let verdict = key(1).check_token(TokenKind::Nonce, compatible, token.as_bytes(), NOW_S);
        assert_eq!(verdict, TokenVerdict::Foreign);
    }

    #[test]
    fn proof_freshness_edges() {
        let ip = IpAddr::from([198, 51, 100, 7]);
        let made_s = NOW_S - NOW_S % PROOF_BUCKET_S; // the first second of a bucket
        let token = key(2).make_token(TokenKind::Tag, ip, made_s);
        let check = |now_s| key(2).check_token(TokenKind::Tag, ip, token.as_bytes(), now_s);
        let last_fresh_s = made_s + PROOF_TOKEN_FRESH_S + PROOF_BUCKET_S - 1;
        assert_eq!(check(made_s), TokenVerdict::Valid);
        assert_eq!(check(last_fresh_s), TokenVerdict::Valid);
        assert_eq!(check(last_fresh_s + 1), TokenVerdict::Stale);
        assert_eq!(check(made_s + 30 * 86_400), TokenVerdict::Stale);
        // From the future: a clock step within the skew is fine, beyond it is not ours.
        assert_eq!(check(made_s - PROOF_FUTURE_SKEW_S), TokenVerdict::Valid);
        assert_eq!(
            check(made_s - PROOF_FUTURE_SKEW_S - PROOF_BUCKET_S),
            TokenVerdict::Foreign
        );
    }

    #[test]
    fn proof_day_key_rotates() {
        let ip = IpAddr::from([198, 51, 100, 7]);
        let midnight_s = NOW_S - NOW_S % 86_400 + 86_400;
        let before = key(3).make_token(TokenKind::Tag, ip, midnight_s - 1);
        let after = key(3).make_token(TokenKind::Tag, ip, midnight_s);
        // Across midnight, each token checks under its own day's key.
        for token in [before, after] {
            let verdict = key(3).check_token(TokenKind::Tag, ip, token.as_bytes(), midnight_s + 5);
            assert_eq!(verdict, TokenVerdict::Valid);
        }
        // A token's MAC moved to another bucket does not check (the bucket is under the MAC).
        let mut moved = after.as_bytes().to_vec();
        moved[..8].copy_from_slice(before.as_bytes()[..8].as_ref());
        let verdict = key(3).check_token(TokenKind::Tag, ip, &moved, midnight_s + 5);
        assert_eq!(verdict, TokenVerdict::Foreign);
    }

    #[test]
    fn proof_malformed_tokens_foreign() {
        let ip = IpAddr::from([192, 0, 2, 1]);
        let token = key(1).make_token(TokenKind::Tag, ip, NOW_S);
        let upper = token.as_bytes().to_ascii_uppercase();
        let mut longer = token.as_bytes().to_vec();
        longer.push(b'0');
        let cases: [&[u8]; 5] = [b"", &upper, &longer, &token.as_bytes()[1..], b"as7f3c"];
        for case in cases {
            let verdict = key(1).check_token(TokenKind::Tag, ip, case, NOW_S);
            assert_eq!(verdict, TokenVerdict::Foreign, "{}", case.escape_ascii());
        }
    }

    proptest! {
        #[test]
        fn proof_made_token_is_valid(ip in any_ip(), now_s in any::<u64>(), seed in any::<u8>(), kind in 0usize..2) {
            let token = key(seed).make_token(KIND[kind], ip, now_s);
            prop_assert_eq!(key(seed).check_token(KIND[kind], ip, token.as_bytes(), now_s), TokenVerdict::Valid);
            let later_s = now_s.saturating_add(PROOF_TOKEN_FRESH_S);
            prop_assert_eq!(key(seed).check_token(KIND[kind], ip, token.as_bytes(), later_s), TokenVerdict::Valid);
        }

        #[test]
        fn proof_old_token_is_stale(ip in any_ip(), now_s in 0u64..u64::MAX / 2, extra_s in 0u64..(1 << 30)) {
            let token = key(1).make_token(TokenKind::Tag, ip, now_s);
            let later_s = now_s + PROOF_TOKEN_FRESH_S + PROOF_BUCKET_S + extra_s;
            prop_assert_eq!(key(1).check_token(TokenKind::Tag, ip, token.as_bytes(), later_s), TokenVerdict::Stale);
        }

        #[test]
        fn proof_other_ip_key_kind_or_byte_is_foreign(
            ip in any_ip(), other_ip in any_ip(), now_s in any::<u64>(), kind in 0usize..2,
            flip_index in 0usize..TOKEN_BYTES, flip in 1u8..=255,
        ) {
            let token = key(1).make_token(KIND[kind], ip, now_s);
            let check = |key: &ProofKey, kind, ip, token: &[u8]| key.check_token(kind, ip, token, now_s);
            if canonical_ip(other_ip) != canonical_ip(ip) {
                prop_assert_eq!(check(&key(1), KIND[kind], other_ip, token.as_bytes()), TokenVerdict::Foreign);
            }
            prop_assert_eq!(check(&key(2), KIND[kind], ip, token.as_bytes()), TokenVerdict::Foreign);
            prop_assert_eq!(check(&key(1), KIND[1 - kind], ip, token.as_bytes()), TokenVerdict::Foreign);
            let mut flipped = *token.as_bytes().first_chunk::<TOKEN_BYTES>().unwrap();
            flipped[flip_index] ^= flip;
            prop_assert_eq!(check(&key(1), KIND[kind], ip, &flipped), TokenVerdict::Foreign);
        }

        #[test]
        fn proof_never_panics_on_bytes(token in proptest::collection::vec(any::<u8>(), 0..40), now_s in any::<u64>(), ip in any_ip()) {
            let verdict = key(1).check_token(TokenKind::Nonce, ip, &token, now_s);
            prop_assert_eq!(verdict, TokenVerdict::Foreign);
        }
    }
}
