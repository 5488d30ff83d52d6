//! Token buckets for the contract's rate limits: `per_min` tokens refill
//! evenly over a minute, a burst may spend the whole bucket, and a refusal
//! says how long until the next token (the `Retry-After` header).

use serde::{Deserialize, Serialize};

use super::time::Millis;

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct TokenBucket {
    pub per_min: u32,
    /// Tokens left, fractional while refilling.
    pub tokens: f64,
    pub at: Millis,
}

/// How long an actor takes no call before it may leave memory: about 10 s,
/// locally and on Cloudflare (DESIGN.md, toolchain facts).
pub const EVICTION_IDLE_MS: Millis = 10_000;

impl TokenBucket {
    pub fn full(per_min: u32, now: Millis) -> Self {
        TokenBucket { per_min, tokens: per_min as f64, at: now }
    }

    /// The bucket after its actor's restart: the `recorded` one refilled,
    /// or a full one when none was recorded (see [`Self::refills_while_idle`]).
    pub fn restored(recorded: Option<TokenBucket>, per_min: u32, now: Millis) -> Self {
        recorded.unwrap_or_else(|| TokenBucket::full(per_min, now))
    }

    /// Whether the idle time before an eviction refills this bucket: then a
    /// full one after the eviction is what it would hold anyway, and it needs
    /// no record. One below that must be recorded, or a caller who spent it
    /// and waited 10 s would find it full again.
    pub fn refills_while_idle(&self) -> bool {
        self.tokens + EVICTION_IDLE_MS as f64 * self.per_min as f64 / 60_000.0 >= self.per_min as f64
    }

    /// Whether it holds all it can (a fresh bucket would hold no more).
    pub fn is_full(&self) -> bool {
        self.tokens >= self.per_min as f64
    }

    /// When the bucket is full again if nothing more is taken.
    pub fn full_at(&self) -> Millis {
        if self.per_min == 0 {
            return self.at;
        }
        let missing = (self.per_min as f64 - self.tokens).max(0.0);
        self.at.saturating_add((missing * 60_000.0 / self.per_min as f64).ceil() as Millis)
    }

    fn refill(&mut self, now: Millis) {
        let elapsed = (now - self.at).max(0) as f64;
        self.tokens = (self.tokens + elapsed * self.per_min as f64 / 60_000.0).min(self.per_min as f64);
        self.at = now.max(self.at);
    }

    /// Takes `cost` tokens, or says in whole seconds (at least 1) when
    /// enough will be there. A limit change (a key's `rate_per_min`) applies
    /// at once, keeping the tokens already spent. A cost above a minute's
    /// tokens (a batch of 1,000 items at 50 a minute) is taken from a full
    /// bucket into debt, so it is never refused for good and still costs
    /// its whole price: the bucket then refills from below zero.
    pub fn take(&mut self, cost: u32, per_min: u32, now: Millis) -> Result<(), u64> {
        if per_min != self.per_min {
            self.tokens = self.tokens.min(per_min as f64);
            self.per_min = per_min;
        }
        self.refill(now);
        if self.per_min == 0 {
            return Err(60);
        }
        // Never more than a whole minute's tokens needed: a limit set below
        // a request's cost (an answer's 10 read tokens) would otherwise
        // refuse it for good, while its `Retry-After` says to wait.
        let needed = cost.min(self.per_min) as f64;
        if self.tokens >= needed {
            self.tokens -= cost as f64;
            return Ok(());
        }
        let missing = needed - self.tokens;
        let ms = missing * 60_000.0 / self.per_min as f64;
        Err(((ms / 1000.0).ceil() as u64).max(1))
    }
}

/// An anonymous caller's bucket: its IPv4 address, or its IPv6 /64. One
/// IPv6 client is usually given a whole /64, so a bucket per address would
/// give it 2^64 buckets.
pub fn client_key(ip: Option<&str>) -> String {
    use std::net::IpAddr;
    match ip.map(str::parse::<IpAddr>) {
        Some(Ok(IpAddr::V4(v4))) => format!("ip:{v4}"),
        Some(Ok(IpAddr::V6(v6))) => match v6.to_ipv4_mapped() {
            Some(v4) => format!("ip:{v4}"),
            None => {
                let s = v6.segments();
                format!("ip6:{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
        },
        // Cloudflare always sets it; locally or when malformed, one shared bucket.
        _ => "ip:unknown".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_refusal_then_refill() {
        let mut b = TokenBucket::full(60, 0);
        for _ in 0..60 {
            assert_eq!(b.take(1, 60, 0), Ok(()));
        }
        assert_eq!(b.take(1, 60, 0), Err(1));
        assert_eq!(b.take(1, 60, 500), Err(1));
        assert_eq!(b.take(1, 60, 1000), Ok(()));
        // A slow limit waits longer.
        let mut slow = TokenBucket::full(2, 0);
        slow.take(2, 2, 0).unwrap();
        assert_eq!(slow.take(1, 2, 0), Err(30));
        // Never more than the bucket holds, however long idle.
        let mut idle = TokenBucket::full(5, 0);
        idle.take(5, 5, 0).unwrap();
        idle.take(0, 5, 10_000_000).unwrap();
        assert!(idle.tokens <= 5.0);
    }

    #[test]
    fn limit_changes_apply_at_once() {
        let mut b = TokenBucket::full(100, 0);
        b.take(10, 100, 0).unwrap();
        assert_eq!(b.take(1, 5, 0), Ok(()));
        assert!(b.tokens <= 4.0);
        assert!(b.take(10, 5, 0).is_err());
        assert_eq!(TokenBucket::full(0, 0).take(1, 0, 0), Err(60));
    }

    #[test]
    fn a_cost_above_the_limit_is_taken_from_a_full_bucket_into_debt() {
        let mut b = TokenBucket::full(5, 0);
        assert_eq!(b.take(10, 5, 0), Ok(()), "a full bucket affords it");
        assert_eq!(b.tokens, -5.0, "at its whole price");
        assert_eq!(b.take(10, 5, 0), Err(120), "full again two minutes later");
        assert_eq!(b.take(1, 5, 60_000), Err(12), "the debt is paid first");
        assert_eq!(b.take(10, 5, 120_000), Ok(()));
        assert!(!b.refills_while_idle(), "a bucket in debt is recorded");
        assert_eq!(b.full_at(), 120_000 + 120_000);
    }

    /// A bucket that needs no record is one that an eviction's idle time
    /// fills anyway; one that needs a record, restored from it, refuses as
    /// the bucket in memory would have.
    #[test]
    fn only_a_bucket_the_idle_time_would_not_refill_is_recorded() {
        let mut b = TokenBucket::full(60, 0);
        // 60 per minute: 10 s give back 10 tokens, so 50 left is enough.
        for _ in 0..10 {
            b.take(1, 60, 0).unwrap();
        }
        assert!(b.refills_while_idle());
        b.take(1, 60, 0).unwrap();
        assert!(!b.refills_while_idle(), "49 left and 10 back in 10 s is not full");
        for _ in 0..49 {
            b.take(1, 60, 0).unwrap();
        }
        // Evicted after 12 s idle: the record gives back 12 tokens, not 60.
        let mut back = TokenBucket::restored(Some(b), 60, 12_000);
        for _ in 0..12 {
            assert_eq!(back.take(1, 60, 12_000), Ok(()));
        }
        assert_eq!(back.take(1, 60, 12_000), Err(1));
        // Unrecorded, it starts full.
        assert_eq!(TokenBucket::restored(None, 60, 5).tokens, 60.0);
        // Full again once a minute's refill covers what was spent.
        assert_eq!(b.full_at(), 60_000);
        assert_eq!(TokenBucket::full(60, 7).full_at(), 7);
        assert_eq!(TokenBucket::full(0, 7).full_at(), 7);
    }

    #[test]
    fn an_ipv6_client_is_one_bucket_per_64() {
        assert_eq!(client_key(Some("2001:db8:1:2:aaaa::1")), client_key(Some("2001:db8:1:2:ffff:1:2:3")));
        assert_ne!(client_key(Some("2001:db8:1:2::1")), client_key(Some("2001:db8:1:3::1")));
        assert_eq!(client_key(Some("2001:db8:1:2::1")), "ip6:2001:db8:1:2::/64");
        assert_eq!(client_key(Some("::ffff:192.0.2.7")), client_key(Some("192.0.2.7")));
        assert_ne!(client_key(Some("192.0.2.7")), client_key(Some("192.0.2.8")));
        assert_eq!(client_key(None), "ip:unknown");
        assert_eq!(client_key(Some("not an address")), "ip:unknown");
    }
}
