//! Who is asking, and what they may do: the contract's "Principals and
//! access" as pure rules, so every route and topic asks the same questions
//! and the whole matrix is tested natively.
//!
//! A principal is worked out in the Worker before any actor wakes (see
//! `api::auth`); actors receive it in their op bodies and ask
//! [`Principal::access`] against the item's [`Ownership`]. An item the caller
//! may not read is `404` (its existence is not revealed); one it may read but
//! not change is `403`.

use serde::{Deserialize, Serialize};

/// Tenants are slugs: `[a-z0-9-]{1,40}`.
pub fn valid_tenant(t: &str) -> bool {
    (1..=40).contains(&t.len()) && t.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PrincipalKind {
    Operator,
    ApiKey,
    User,
    Anonymous,
}

impl PrincipalKind {
    /// Its wire name (as serde writes it), also the catalog's `owner_kind`.
    pub fn as_str(self) -> &'static str {
        match self {
            PrincipalKind::Operator => "operator",
            PrincipalKind::ApiKey => "api_key",
            PrincipalKind::User => "user",
            PrincipalKind::Anonymous => "anonymous",
        }
    }

    pub fn parse(s: &str) -> Option<PrincipalKind> {
        [PrincipalKind::Operator, PrincipalKind::ApiKey, PrincipalKind::User, PrincipalKind::Anonymous]
            .into_iter()
            .find(|k| k.as_str() == s)
    }
}

/// Content scopes. Each includes the ones below it: `content:manage` ⊃
/// `content:write` ⊃ `content:read`.
#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Scope {
    #[serde(rename = "content:read")]
    Read,
    #[serde(rename = "content:write")]
    Write,
    #[serde(rename = "content:manage")]
    Manage,
}

impl Scope {
    pub const ALL: [Scope; 3] = [Scope::Read, Scope::Write, Scope::Manage];

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Read => "content:read",
            Scope::Write => "content:write",
            Scope::Manage => "content:manage",
        }
    }

    pub fn parse(s: &str) -> Option<Scope> {
        Scope::ALL.into_iter().find(|x| x.as_str() == s)
    }
}

/// Who may read an item besides its tenant's readers.
#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
// Ordered from the narrowest to the widest (the feed only narrows).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Visibility {
    /// The owner, `content:manage` in the tenant, and the operator.
    Private,
    /// Any principal of the tenant with `content:read`.
    #[default]
    Tenant,
    /// Anyone, anonymous included.
    Public,
}

impl Visibility {
    pub const ALL: [Visibility; 3] = [Visibility::Private, Visibility::Tenant, Visibility::Public];

    pub fn as_str(self) -> &'static str {
        match self {
            Visibility::Private => "private",
            Visibility::Tenant => "tenant",
            Visibility::Public => "public",
        }
    }

    pub fn parse(s: &str) -> Option<Visibility> {
        Visibility::ALL.into_iter().find(|v| v.as_str() == s)
    }
}

/// Whose an item is. Tenant and owner never change after creation; only the
/// visibility does (a `PUT` may set it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ownership {
    pub tenant: String,
    pub owner: String,
    pub visibility: Visibility,
    /// The owner's kind: a key's id and a user's `sub` are both subjects,
    /// and a user whose `sub` is some key's id owns none of the key's items.
    /// None for items made before it was recorded (owned by the subject).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner_kind: Option<PrincipalKind>,
}

impl Ownership {
    /// Items stored before ownership existed stay as open as they were.
    pub fn legacy() -> Self {
        Ownership { tenant: LEGACY_TENANT.into(), owner: String::new(), visibility: Visibility::Public, owner_kind: None }
    }

    /// The owner's kind: as recorded or, for an item made before kinds
    /// were, a key's when the subject has a key id's form (no other kind
    /// made such items but a user whose `sub` has that form, which the
    /// identity providers' formats rarely do), else not known.
    pub fn kind_of_owner(&self) -> Option<PrincipalKind> {
        self.owner_kind.or_else(|| is_key_id(&self.owner).then_some(PrincipalKind::ApiKey))
    }

    /// Whether a principal of `kind` (None: not known, as in a socket
    /// attached before kinds were recorded) and `subject`, in this item's
    /// tenant, is its owner.
    fn owned_by(&self, kind: Option<PrincipalKind>, subject: &str) -> bool {
        let same_kind = match (self.kind_of_owner(), kind) {
            (Some(owner), Some(kind)) => owner == kind,
            _ => true,
        };
        !self.owner.is_empty() && self.owner == subject && same_kind
    }

    /// The vector namespace (shard namespace or Vectorize namespace) this
    /// item's chunks live in: public items in one shared namespace, every
    /// other item in its tenant's, so a tenant's search scans only its own
    /// namespace and the public one.
    pub fn namespace(&self) -> String {
        match self.visibility {
            Visibility::Public => PUBLIC_NAMESPACE.to_string(),
            _ => tenant_namespace(&self.tenant),
        }
    }
}

/// Whether `s` has an API key id's form (`api::auth`): 32 lowercase hex
/// digits, a v4 UUID's simple form.
pub fn is_key_id(s: &str) -> bool {
    s.len() == 32 && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The tenant of content created before tenants existed.
pub const LEGACY_TENANT: &str = "legacy";
/// The tenant the operator's own items join unless `OPERATOR_TENANT` names another.
pub const DEFAULT_OPERATOR_TENANT: &str = "operator";
/// The vector namespace of public items.
pub const PUBLIC_NAMESPACE: &str = "public";

pub fn tenant_namespace(tenant: &str) -> String {
    format!("t-{tenant}")
}

/// What a principal may do with one item.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Access {
    /// Not even its existence: answer 404.
    None,
    /// Read it, its runs and its topics; a change is 403.
    Read,
    /// Change, delete, cancel and retry its runs.
    Change,
}

/// Why a principal may not do something with an item.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Denied {
    /// The item is not readable: answered as if it did not exist (404).
    #[error("not found")]
    Hidden,
    /// Readable but not changeable by this principal (403).
    #[error("only the owner, content:manage in its tenant, or the operator may change this item")]
    ReadOnly,
}

/// Which items a listing, search or feed may show a principal. It also
/// travels as JSON in a feed socket's attachment: sockets with equal JSON
/// see the same events (`domain::broadcast`), hence the short names.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "k", rename_all = "snake_case")]
pub enum ReadScope {
    /// The operator: everything.
    All,
    /// Public items, plus the tenant's `tenant` items (with `read`), plus
    /// the tenant's items owned by `subject` (or all of them with `manage`).
    Tenant {
        #[serde(rename = "t")]
        tenant: String,
        #[serde(rename = "s")]
        subject: String,
        /// The subject's kind (see [`Ownership::owner_kind`]); None in an
        /// attachment written before it was.
        #[serde(rename = "o", default, skip_serializing_if = "Option::is_none")]
        kind: Option<PrincipalKind>,
        #[serde(rename = "r")]
        read: bool,
        #[serde(rename = "m")]
        manage: bool,
    },
    /// Public items only.
    #[serde(rename = "public")]
    PublicOnly,
}

#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Principal {
    pub kind: PrincipalKind,
    /// None for the operator and anonymous callers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// The key id, the JWT `sub`, `operator`, or `anonymous`.
    pub subject: String,
    #[serde(default)]
    pub scopes: Vec<Scope>,
    /// A key's own write limit, overriding `RATE_WRITE_PER_MIN`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_per_min: Option<u32>,
}

impl Principal {
    /// The API key whose validity this principal rests on: a key's own, and
    /// so a session's or a socket's that a key opened. A revoked key ends
    /// them too (see `domain::broadcast::KEY_RECHECK_MS`).
    pub fn key_id(&self) -> Option<&str> {
        (self.kind == PrincipalKind::ApiKey).then_some(self.subject.as_str())
    }

    pub fn operator() -> Self {
        Principal { kind: PrincipalKind::Operator, tenant: None, subject: "operator".into(), scopes: Scope::ALL.to_vec(), rate_per_min: None }
    }

    pub fn anonymous() -> Self {
        Principal { kind: PrincipalKind::Anonymous, tenant: None, subject: "anonymous".into(), scopes: Vec::new(), rate_per_min: None }
    }

    /// An API key's principal with no rate of its own (tests build the
    /// principals the authentication step would).
    #[cfg(test)]
    pub fn api_key(tenant: &str, subject: &str, scopes: &[Scope]) -> Self {
        Principal { kind: PrincipalKind::ApiKey, tenant: Some(tenant.into()), subject: subject.into(), scopes: scopes.to_vec(), rate_per_min: None }
    }

    pub fn is_operator(&self) -> bool {
        self.kind == PrincipalKind::Operator
    }

    /// Whether this principal may see what `owner` made for itself alone (an
    /// answer, a batch): the same kind, subject and tenant, or the operator.
    /// Anonymous callers share one identity; the random ids of what they make
    /// are what keeps one anonymous caller's things from another's.
    pub fn is_or_operates(&self, owner: &Principal) -> bool {
        self.is_operator() || (self.kind == owner.kind && self.subject == owner.subject && self.tenant == owner.tenant)
    }

    /// Whether the principal holds `scope`, directly or through a wider one.
    pub fn has(&self, scope: Scope) -> bool {
        self.is_operator() || self.scopes.iter().any(|s| *s >= scope)
    }

    fn in_tenant(&self, tenant: &str) -> bool {
        self.tenant.as_deref() == Some(tenant)
    }

    /// The contract's access table for one item.
    pub fn access(&self, o: &Ownership) -> Access {
        if self.is_operator() {
            return Access::Change;
        }
        let same = self.in_tenant(&o.tenant);
        let owner = same && self.kind != PrincipalKind::Anonymous && o.owned_by(Some(self.kind), &self.subject);
        let manage = same && self.has(Scope::Manage);
        if owner || manage {
            return Access::Change;
        }
        let readable = match o.visibility {
            Visibility::Public => true,
            Visibility::Tenant => same && self.has(Scope::Read),
            Visibility::Private => false,
        };
        if readable {
            Access::Read
        } else {
            Access::None
        }
    }

    /// `Ok` when the principal has at least `needed` on the item.
    pub fn require(&self, o: &Ownership, needed: Access) -> Result<(), Denied> {
        match self.access(o) {
            Access::None if needed > Access::None => Err(Denied::Hidden),
            a if a < needed => Err(Denied::ReadOnly),
            _ => Ok(()),
        }
    }

    pub fn can_read(&self, o: &Ownership) -> bool {
        self.access(o) >= Access::Read
    }

    /// Creating content needs `content:write`; it joins the principal's
    /// tenant (the operator's joins `operator_tenant`).
    pub fn ownership_for_new(&self, visibility: Visibility, operator_tenant: &str) -> Option<Ownership> {
        if !self.has(Scope::Write) {
            return None;
        }
        let tenant = match (&self.tenant, self.is_operator()) {
            (Some(t), _) => t.clone(),
            (None, true) => operator_tenant.to_string(),
            (None, false) => return None,
        };
        Some(Ownership { tenant, owner: self.subject.clone(), visibility, owner_kind: Some(self.kind) })
    }

    pub fn read_scope(&self) -> ReadScope {
        match (&self.tenant, self.kind) {
            (_, PrincipalKind::Operator) => ReadScope::All,
            (Some(t), _) => ReadScope::Tenant {
                tenant: t.clone(),
                subject: self.subject.clone(),
                kind: Some(self.kind),
                read: self.has(Scope::Read),
                manage: self.has(Scope::Manage),
            },
            (None, _) => ReadScope::PublicOnly,
        }
    }

    /// The vector namespaces a search by this principal scans: `None` means
    /// every namespace (the operator).
    pub fn namespaces(&self) -> Option<Vec<String>> {
        match self.read_scope() {
            ReadScope::All => None,
            ReadScope::Tenant { tenant, .. } => Some(vec![tenant_namespace(&tenant), PUBLIC_NAMESPACE.to_string()]),
            ReadScope::PublicOnly => Some(vec![PUBLIC_NAMESPACE.to_string()]),
        }
    }
}

impl ReadScope {
    /// Whether an item is in this scope: the same rule as
    /// [`Principal::can_read`], for rows that carry their ownership.
    pub fn admits(&self, o: &Ownership) -> bool {
        match self {
            ReadScope::All => true,
            ReadScope::PublicOnly => o.visibility == Visibility::Public,
            ReadScope::Tenant { tenant, subject, kind, read, manage } => {
                o.visibility == Visibility::Public
                    || (o.tenant == *tenant
                        && (o.owned_by(*kind, subject) || *manage || (*read && o.visibility == Visibility::Tenant)))
            }
        }
    }

    /// The keyword index's scope tokens this scope may match (see
    /// `catalog::fts_scope_token`); `None` means all.
    pub fn fts_tokens(&self) -> Option<Vec<String>> {
        match self {
            ReadScope::All => None,
            ReadScope::Tenant { tenant, .. } => Some(vec![fts_tenant_token(tenant), FTS_PUBLIC_TOKEN.to_string()]),
            ReadScope::PublicOnly => Some(vec![FTS_PUBLIC_TOKEN.to_string()]),
        }
    }
}

/// The keyword index carries one scope token per document (its `scope`
/// column): public documents one shared token, others their tenant's, so a
/// tenant's keyword query matches only its own and public documents.
pub const FTS_PUBLIC_TOKEN: &str = "scopepublic0";

pub fn fts_tenant_token(tenant: &str) -> String {
    // One FTS5 word per slug: unicode61 splits on '-', so '-' is written
    // "x0" after 'x' is escaped as "xx" (a prefix code: distinct slugs give
    // distinct words), and the final '0' keeps the porter stemmer off it.
    format!("scopet{}0", tenant.replace('x', "xx").replace('-', "x0"))
}

pub fn fts_scope_token(o: &Ownership) -> String {
    match o.visibility {
        Visibility::Public => FTS_PUBLIC_TOKEN.to_string(),
        _ => fts_tenant_token(&o.tenant),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(tenant: &str, owner: &str, v: Visibility) -> Ownership {
        Ownership { tenant: tenant.into(), owner: owner.into(), visibility: v, owner_kind: Some(PrincipalKind::ApiKey) }
    }

    fn user(tenant: &str, sub: &str, scopes: &[Scope]) -> Principal {
        Principal { kind: PrincipalKind::User, tenant: Some(tenant.into()), subject: sub.into(), scopes: scopes.to_vec(), rate_per_min: None }
    }

    #[test]
    fn tenant_slugs() {
        assert!(valid_tenant("acme-1"));
        assert!(!valid_tenant(""));
        assert!(!valid_tenant("Acme"));
        assert!(!valid_tenant(&"a".repeat(41)));
        assert!(!valid_tenant("a_b"));
    }

    #[test]
    fn scopes_include_the_narrower_ones() {
        let w = Principal::api_key("a", "k", &[Scope::Write]);
        assert!(w.has(Scope::Read) && w.has(Scope::Write) && !w.has(Scope::Manage));
        assert!(Principal::operator().has(Scope::Manage));
        assert!(!Principal::anonymous().has(Scope::Read));
        assert_eq!(Scope::parse("content:manage"), Some(Scope::Manage));
        assert_eq!(Scope::parse("content:admin"), None);
    }

    /// The contract's access table, principal kind × item visibility ×
    /// own / same tenant / other tenant.
    #[test]
    fn access_matrix() {
        use Access::*;
        use Visibility::*;
        let reader = Principal::api_key("a", "r", &[Scope::Read]);
        let writer = Principal::api_key("a", "w", &[Scope::Write]);
        let manager = Principal::api_key("a", "m", &[Scope::Manage]);
        let other = Principal::api_key("b", "o", &[Scope::Manage]);
        let anon = Principal::anonymous();
        let op = Principal::operator();
        let cases = [
            // (principal, visibility, owner, expected)
            (&writer, Private, "w", Change),
            (&writer, Tenant, "w", Change),
            (&writer, Public, "w", Change),
            (&writer, Private, "x", None),
            (&writer, Tenant, "x", Read),
            (&writer, Public, "x", Read),
            (&reader, Tenant, "x", Read),
            (&reader, Private, "x", None),
            (&manager, Private, "x", Change),
            (&manager, Tenant, "x", Change),
            (&other, Private, "x", None),
            (&other, Tenant, "x", None),
            (&other, Public, "x", Read),
            (&anon, Tenant, "x", None),
            (&anon, Private, "x", None),
            (&anon, Public, "x", Read),
            (&op, Private, "x", Change),
        ];
        for (p, v, owner, want) in cases {
            let o = item("a", owner, v);
            assert_eq!(p.access(&o), want, "{:?} {} on {v:?} owned by {owner}", p.kind, p.subject);
            // Listings and search use the same rule.
            assert_eq!(p.read_scope().admits(&o), want >= Read, "scope of {} on {v:?}", p.subject);
        }
        // The same subject in another tenant is not the owner.
        assert_eq!(Principal::api_key("b", "w", &[Scope::Write]).access(&item("a", "w", Private)), None);
        // Anonymous never owns, even an item with an empty owner.
        assert_eq!(anon.access(&item("a", "", Private)), None);
    }

    /// A key's id and a user's `sub` are both subjects: a user whose `sub`
    /// is a key's id owns none of the key's items, nor the key a user's.
    /// Items recorded before the kind was are owned by the subject alone.
    #[test]
    fn the_owner_is_a_subject_of_its_kind() {
        use Visibility::*;
        let twin = user("a", "w", &[Scope::Write]);
        let keys = item("a", "w", Private);
        assert_eq!(twin.access(&keys), Access::None);
        assert!(!twin.read_scope().admits(&keys));
        assert_eq!(twin.access(&item("a", "w", Tenant)), Access::Read);
        let users = twin.ownership_for_new(Private, "ops").unwrap();
        assert_eq!(users.owner_kind, Some(PrincipalKind::User));
        assert_eq!(twin.access(&users), Access::Change);
        assert_eq!(Principal::api_key("a", "w", &[Scope::Write]).access(&users), Access::None);
        // Items made before kinds were recorded: a key id's form is a key's.
        let key_id = "0123456789abcdef0123456789abcdef";
        let legacy = Ownership { owner_kind: Option::None, owner: key_id.into(), ..keys.clone() };
        assert_eq!(legacy.kind_of_owner(), Some(PrincipalKind::ApiKey));
        assert_eq!(user("a", key_id, &[Scope::Write]).access(&legacy), Access::None);
        assert_eq!(Principal::api_key("a", key_id, &[Scope::Write]).access(&legacy), Access::Change);
        // Any other subject is its own, of whatever kind.
        let legacy = Ownership { owner_kind: Option::None, ..keys.clone() };
        assert_eq!(legacy.kind_of_owner(), Option::None);
        assert_eq!(twin.access(&legacy), Access::Change);
        assert!(twin.read_scope().admits(&legacy));
        assert!(!is_key_id("0123456789ABCDEF0123456789abcdef") && !is_key_id("w"));
        // A scope attached before kinds were recorded matches the subject.
        let ReadScope::Tenant { tenant, subject, read, manage, .. } = twin.read_scope() else { panic!() };
        assert!(ReadScope::Tenant { tenant, subject, kind: Option::None, read, manage }.admits(&keys));
        // Its short JSON (a feed socket's attachment) carries the kind, and
        // one written before reads back without it.
        let json = serde_json::to_value(twin.read_scope()).unwrap();
        assert_eq!(json["o"], "user");
        let old: ReadScope = serde_json::from_value(serde_json::json!({"k": "tenant", "t": "a", "s": "w", "r": true, "m": false})).unwrap();
        assert!(matches!(old, ReadScope::Tenant { kind: Option::None, .. }));
        for k in [PrincipalKind::Operator, PrincipalKind::ApiKey, PrincipalKind::User, PrincipalKind::Anonymous] {
            assert_eq!(serde_json::to_value(k).unwrap(), k.as_str());
            assert_eq!(PrincipalKind::parse(k.as_str()), Some(k));
        }
    }

    #[test]
    fn require_hides_or_refuses() {
        let o = item("a", "w", Visibility::Tenant);
        let reader = Principal::api_key("a", "r", &[Scope::Read]);
        assert_eq!(reader.require(&o, Access::Read), Ok(()));
        assert_eq!(reader.require(&o, Access::Change), Err(Denied::ReadOnly));
        assert_eq!(Principal::api_key("b", "r", &[Scope::Read]).require(&o, Access::Change), Err(Denied::Hidden));
        assert_eq!(Principal::api_key("a", "w", &[Scope::Write]).require(&o, Access::Change), Ok(()));
    }

    #[test]
    fn creating_needs_write_and_a_tenant() {
        assert!(Principal::api_key("a", "r", &[Scope::Read]).ownership_for_new(Visibility::Tenant, "ops").is_none());
        assert!(Principal::anonymous().ownership_for_new(Visibility::Public, "ops").is_none());
        let o = Principal::api_key("a", "w", &[Scope::Write]).ownership_for_new(Visibility::Private, "ops").unwrap();
        assert_eq!((o.tenant.as_str(), o.owner.as_str(), o.visibility), ("a", "w", Visibility::Private));
        assert_eq!(Principal::operator().ownership_for_new(Visibility::Tenant, "ops").unwrap().tenant, "ops");
    }

    #[test]
    fn namespaces_and_scope_tokens_separate_tenants() {
        assert_eq!(item("a", "w", Visibility::Public).namespace(), PUBLIC_NAMESPACE);
        assert_eq!(item("a", "w", Visibility::Private).namespace(), "t-a");
        assert_eq!(Principal::api_key("a", "w", &[Scope::Read]).namespaces().unwrap(), vec!["t-a".to_string(), "public".into()]);
        assert_eq!(Principal::anonymous().namespaces().unwrap(), vec!["public".to_string()]);
        assert_eq!(Principal::operator().namespaces(), Option::None);
        // Tokens are single FTS5 words and distinct for distinct slugs.
        let slugs = ["a-b", "ax-b", "a-xb", "ab", "a0b", "a-0b", "x", "xx"];
        let tokens: Vec<String> = slugs.iter().map(|s| fts_tenant_token(s)).collect();
        for (i, t) in tokens.iter().enumerate() {
            assert!(t.chars().all(|c| c.is_ascii_alphanumeric()), "{t}");
            assert!(!tokens[..i].contains(t), "{t} collides");
        }
    }
}
