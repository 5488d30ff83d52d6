//! The sessions that follow a topic through their session sockets, as the
//! topic's actor lists them. Each costs the topic one call per push (a
//! delivery), against one `send` per topic socket, so the list is bounded:
//! per principal (per client IP for anonymous callers) on each topic, and in
//! all. A session past its expiry is dropped from the list without a call,
//! so a session that ends while it follows a topic is not called forever.

use serde::{Deserialize, Serialize};

use super::time::Millis;

/// Most sessions one topic pushes to. A push is a call per session on the
/// topic actor's one thread; past this, watchers belong on the topic's own
/// socket (`/api/topics/{topic}/ws`), a `send` each.
pub const MAX_FOLLOWERS: usize = 1_000;

/// Most places anonymous sessions take on one topic, whatever their client
/// addresses: the per-holder cap counts an IPv6 client by its /64, and one
/// home line often has 256 of them, so without this share one client could
/// fill a topic and lock out every signed-in follower.
pub const MAX_ANONYMOUS_FOLLOWERS: usize = MAX_FOLLOWERS / 2;

/// The holder of an anonymous caller's sessions and sockets: its client
/// key, marked so that a topic tells it from a principal's key (which
/// starts with a tenant, `[a-z0-9-]`, never `~`).
pub fn anonymous_holder(client_key: &str) -> String {
    format!("~{client_key}")
}

/// The bucket key a holder stands for (see [`anonymous_holder`]).
pub fn holder_bucket(holder: &str) -> &str {
    holder.strip_prefix('~').unwrap_or(holder)
}

pub fn is_anonymous(holder: &Option<String>) -> bool {
    holder.as_deref().is_some_and(|h| h.starts_with('~'))
}

/// One following session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Follower {
    pub session: String,
    /// The rate-limit bucket key of the session's creator (its principal,
    /// or its client IP when anonymous); none for the operator, and for a
    /// session made before sessions recorded it.
    #[serde(default)]
    pub holder: Option<String>,
    /// When the session expires; none for a session made before sessions
    /// said so (it stays until a push finds it gone).
    #[serde(default)]
    pub until: Option<Millis>,
    /// When it (last) subscribed: a push that began earlier and found the
    /// session gone must not drop a subscription made since.
    #[serde(default)]
    pub since: Millis,
}

impl Follower {
    pub fn live(&self, now: Millis) -> bool {
        self.until.is_none_or(|u| u > now)
    }
}

/// Why a session may not follow one more topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FollowRefused {
    /// The topic pushes to [`MAX_FOLLOWERS`] sessions already.
    Full,
    /// The holder's sessions follow this topic `max` times already.
    HolderCap { max: u32 },
    /// Anonymous sessions take [`MAX_ANONYMOUS_FOLLOWERS`] places already.
    AnonymousShare,
}

/// Whether `candidate` may join `list`, counting live followers only. A
/// session already on the list is admitted again (a resubscribe, another
/// tab of the same session). The operator (no holder) meets only the total.
pub fn admit(list: &[Follower], candidate: &Follower, per_holder: u32, now: Millis) -> Result<(), FollowRefused> {
    if list.iter().any(|f| f.session == candidate.session) {
        return Ok(());
    }
    let live = || list.iter().filter(|f| f.live(now));
    if live().count() >= MAX_FOLLOWERS {
        return Err(FollowRefused::Full);
    }
    if is_anonymous(&candidate.holder) && live().filter(|f| is_anonymous(&f.holder)).count() >= MAX_ANONYMOUS_FOLLOWERS {
        return Err(FollowRefused::AnonymousShare);
    }
    match &candidate.holder {
        Some(h) if live().filter(|f| f.holder.as_ref() == Some(h)).count() >= per_holder as usize => Err(FollowRefused::HolderCap { max: per_holder }),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(session: &str, holder: Option<&str>, until: Option<Millis>) -> Follower {
        Follower { session: session.into(), holder: holder.map(str::to_string), until, since: 0 }
    }

    #[test]
    fn a_holder_follows_a_topic_at_most_its_cap_times() {
        let list = vec![f("a", Some("ip:1"), Some(100)), f("b", Some("ip:1"), Some(100)), f("c", Some("ip:2"), Some(100))];
        assert_eq!(admit(&list, &f("d", Some("ip:1"), Some(100)), 2, 50), Err(FollowRefused::HolderCap { max: 2 }));
        assert_eq!(admit(&list, &f("d", Some("ip:2"), Some(100)), 2, 50), Ok(()), "another holder has room");
        assert_eq!(admit(&list, &f("a", Some("ip:1"), Some(100)), 2, 50), Ok(()), "a session already following is admitted again");
        assert_eq!(admit(&list, &f("d", None, None), 0, 50), Ok(()), "no holder, no holder cap");
    }

    #[test]
    fn anonymous_sessions_take_at_most_their_share_of_a_topic() {
        let anon = |i: usize| f(&format!("a{i}"), Some(&anonymous_holder(&format!("ip6:2001:db8:0:{i:x}::/64"))), Some(100));
        let mut list: Vec<Follower> = (0..MAX_ANONYMOUS_FOLLOWERS).map(anon).collect();
        assert_eq!(admit(&list, &anon(9_999), 16, 50), Err(FollowRefused::AnonymousShare), "each /64 under its cap, the share full");
        assert_eq!(admit(&list, &f("k", Some("acme:key-1:0"), Some(100)), 16, 50), Ok(()), "a key's session still has room");
        list[0].until = Some(10);
        assert_eq!(admit(&list, &anon(9_999), 16, 50), Ok(()), "an expired one's place is free");
        assert!(!is_anonymous(&Some("-:key-1:0".into())) && !is_anonymous(&None));
    }

    #[test]
    fn expired_sessions_do_not_count() {
        let list = vec![f("a", Some("ip:1"), Some(40)), f("b", Some("ip:1"), None)];
        assert!(!list[0].live(40) && list[0].live(39) && list[1].live(i64::MAX));
        assert_eq!(admit(&list, &f("c", Some("ip:1"), Some(100)), 2, 50), Ok(()), "a has expired");
        assert_eq!(admit(&list, &f("c", Some("ip:1"), Some(100)), 2, 39), Err(FollowRefused::HolderCap { max: 2 }));
    }

    #[test]
    fn the_topic_pushes_to_a_bounded_number_of_sessions() {
        let mut list: Vec<Follower> = (0..MAX_FOLLOWERS).map(|i| f(&format!("s{i}"), Some(&format!("ip:{i}")), Some(100))).collect();
        assert_eq!(admit(&list, &f("new", None, None), 16, 50), Err(FollowRefused::Full), "not even the operator");
        assert_eq!(admit(&list, &f("s7", Some("ip:7"), Some(100)), 16, 50), Ok(()));
        list[0].until = Some(10);
        assert_eq!(admit(&list, &f("new", Some("ip:new"), Some(100)), 16, 50), Ok(()), "an expired one's place is free");
    }
}
