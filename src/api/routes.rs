//! The route table: one list that the dispatcher, the OpenAPI document and its
//! coverage test all read, so a route cannot exist without being documented.

use crate::error::ApiError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteId {
    Health,
    OpenApi,
    CreateContent,
    ListContent,
    GetContent,
    PutContent,
    DeleteContent,
    GetRun,
    CancelRun,
    RetryRun,
    Search,
    CreateSession,
    SessionSocket,
    AdminActors,
    AdminInspect,
    AdminAlarm,
    AdminDeadLetters,
    AdminMetrics,
    AdminReconcile,
    CreateKey,
    ListKeys,
    RevokeKey,
    WhoAmI,
    CreateAnswer,
    GetAnswer,
    TopicEvents,
    CreateUpload,
    GetSource,
    PutSource,
    CreateBatch,
    GetBatch,
    TopicSocket,
}

pub struct Route {
    pub method: &'static str,
    /// OpenAPI-style pattern; `{x}` matches one non-empty segment.
    pub pattern: &'static str,
    pub id: RouteId,
}

impl Route {
    /// Whether only the operator may call it: the `/admin` routes.
    pub fn operator_only(&self) -> bool {
        self.pattern.starts_with("/admin/")
    }
}

impl RouteId {
    /// [`Route::operator_only`] of the route this is: the dispatcher asks the
    /// route it matched, never the raw path (`//admin/keys` matched the
    /// pattern while failing a `starts_with("/admin")`).
    pub fn operator_only(self) -> bool {
        ROUTES.iter().any(|r| r.id == self && r.operator_only())
    }
}

const fn r(method: &'static str, pattern: &'static str, id: RouteId) -> Route {
    Route { method, pattern, id }
}

pub const ROUTES: &[Route] = &[
    r("GET", "/healthz", RouteId::Health),
    r("GET", "/api/openapi.json", RouteId::OpenApi),
    r("POST", "/api/content", RouteId::CreateContent),
    // Before `/api/content/{id}`, which the same path also matches.
    r("POST", "/api/content/batch", RouteId::CreateBatch),
    r("GET", "/api/batches/{id}", RouteId::GetBatch),
    r("GET", "/api/content", RouteId::ListContent),
    r("GET", "/api/content/{id}", RouteId::GetContent),
    r("PUT", "/api/content/{id}", RouteId::PutContent),
    r("DELETE", "/api/content/{id}", RouteId::DeleteContent),
    r("GET", "/api/content/{id}/source", RouteId::GetSource),
    r("PUT", "/api/content/{id}/source", RouteId::PutSource),
    r("POST", "/api/uploads", RouteId::CreateUpload),
    r("GET", "/api/runs/{id}", RouteId::GetRun),
    r("POST", "/api/runs/{id}/cancel", RouteId::CancelRun),
    r("POST", "/api/runs/{id}/retry", RouteId::RetryRun),
    r("GET", "/api/search", RouteId::Search),
    r("POST", "/api/sessions", RouteId::CreateSession),
    r("GET", "/api/sessions/{id}/ws", RouteId::SessionSocket),
    r("GET", "/admin/actors", RouteId::AdminActors),
    r("GET", "/admin/actors/{kind}/{id}", RouteId::AdminInspect),
    r("POST", "/admin/actors/{kind}/{id}/alarm", RouteId::AdminAlarm),
    r("GET", "/admin/dead-letters", RouteId::AdminDeadLetters),
    r("GET", "/admin/metrics", RouteId::AdminMetrics),
    r("POST", "/admin/reconcile", RouteId::AdminReconcile),
    r("POST", "/admin/keys", RouteId::CreateKey),
    r("GET", "/admin/keys", RouteId::ListKeys),
    r("DELETE", "/admin/keys/{key_id}", RouteId::RevokeKey),
    r("GET", "/api/me", RouteId::WhoAmI),
    r("POST", "/api/answers", RouteId::CreateAnswer),
    r("GET", "/api/answers/{id}", RouteId::GetAnswer),
    r("GET", "/api/topics/{topic}/events", RouteId::TopicEvents),
    r("GET", "/api/topics/{topic}/ws", RouteId::TopicSocket),
];

/// An integer query parameter, declared once: the handler reads it with
/// these bounds (`input::IntParam::read`, 422 outside them; an empty value is
/// the default) and the OpenAPI document states them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IntParam {
    pub name: &'static str,
    /// `None`: an absent value means something of its own (the handler's).
    pub default: Option<u32>,
    pub min: u32,
    pub max: u32,
}

/// `GET /api/content?limit`.
pub const CONTENT_LIMIT: IntParam = IntParam { name: "limit", default: Some(20), min: 1, max: 100 };
/// `GET /admin/actors?limit`.
pub const ACTORS_LIMIT: IntParam = IntParam { name: "limit", default: Some(50), min: 1, max: 200 };
/// `POST /admin/reconcile?limit`: also the most `ids` one request may name.
pub const RECONCILE_LIMIT: IntParam = IntParam { name: "limit", default: Some(20), min: 1, max: 50 };
/// `GET /api/search?k`.
pub const SEARCH_K: IntParam = IntParam { name: "k", default: Some(10), min: 1, max: 50 };
/// `GET /api/content/{id}/source?version` (absent: the current version).
pub const SOURCE_VERSION: IntParam = IntParam { name: "version", default: None, min: 1, max: u32::MAX };

/// A keyset page's position, `<at>.<key>`: the sort value (ms) of the last
/// row a page showed and its key. Opaque to clients, but any string of this
/// pattern is a position, so the document can say exactly what is accepted.
pub const PAGE_CURSOR_PATTERN: &str = r"^-?[0-9]{1,18}\.[A-Za-z0-9_:-]{1,80}$";

pub fn page_cursor(at: i64, key: &str) -> String {
    format!("{at}.{key}")
}

/// Where a keyset page starts: after the `cursor` a client sent back, or at
/// the top (newest first).
pub fn page_start(cursor: Option<&str>) -> Result<(i64, String), crate::error::ApiError> {
    cursor.map_or_else(|| Ok((i64::MAX, String::new())), parse_page_cursor)
}

/// A page of at most `limit` rows out of `rows`, fetched as `limit + 1` (the
/// extra row says another page follows), and that page's cursor, made from
/// the last row kept by `position` (its sort value and key).
pub fn keyset_page<T>(mut rows: Vec<T>, limit: u32, position: impl Fn(&T) -> (i64, String)) -> (Vec<T>, Option<String>) {
    if rows.len() <= limit as usize {
        return (rows, None);
    }
    rows.truncate(limit as usize);
    let next = rows.last().map(|r| {
        let (at, key) = position(r);
        page_cursor(at, &key)
    });
    (rows, next)
}

/// Reads a [`page_cursor`]; 422 for anything [`PAGE_CURSOR_PATTERN`] refuses.
pub fn parse_page_cursor(c: &str) -> Result<(i64, String), crate::error::ApiError> {
    let bad = || crate::error::ApiError::invalid("cursor", "is not a cursor this API returned");
    let (at, key) = c.split_once('.').ok_or_else(bad)?;
    let digits = at.strip_prefix('-').unwrap_or(at);
    if !(1..=18).contains(&digits.len()) || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    if !(1..=80).contains(&key.len()) || !key.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b':')) {
        return Err(bad());
    }
    Ok((at.parse().map_err(|_| bad())?, key.to_string()))
}

fn matches(pattern: &str, path: &str) -> Option<Vec<String>> {
    let p: Vec<&str> = pattern.trim_matches('/').split('/').collect();
    // One leading slash: `//admin/keys` is no route (its empty first
    // segment matches nothing), as `/api/runs//cancel` is none.
    let s: Vec<&str> = path.strip_prefix('/')?.trim_end_matches('/').split('/').collect();
    if p.len() != s.len() {
        return None;
    }
    let mut params = Vec::new();
    for (pp, ss) in p.iter().zip(s.iter()) {
        if pp.starts_with('{') {
            if ss.is_empty() {
                return None;
            }
            params.push((*ss).to_string());
        } else if pp != ss {
            return None;
        }
    }
    Some(params)
}

/// Finds the route for a request: 404 when no pattern matches the path, 405
/// when one does but not with this method.
pub fn resolve(method: &str, path: &str) -> Result<(RouteId, Vec<String>), ApiError> {
    let routes = routes_for(path);
    if routes.is_empty() {
        return Err(ApiError::not_found(format!("route {path}")));
    }
    routes
        .into_iter()
        .find(|(r, _)| r.method == method || (method == "HEAD" && r.method == "GET"))
        .map(|(r, params)| (r.id, params))
        .ok_or_else(|| ApiError::MethodNotAllowed { method: method.to_string(), path: path.to_string() })
}

/// Methods a path accepts, for the `Allow` header of a 405.
pub fn allowed(path: &str) -> Vec<&'static str> {
    routes_for(path).into_iter().map(|(r, _)| r.method).collect()
}

/// The routes that serve `path`, with its parameters: those that name it
/// literally (`/api/content/batch` is not also an `{id}`), else those whose
/// pattern matches it.
fn routes_for(path: &str) -> Vec<(&'static Route, Vec<String>)> {
    let literal = path.trim_end_matches('/');
    let named = ROUTES.iter().any(|r| r.pattern == literal);
    ROUTES
        .iter()
        .filter(|r| !named || r.pattern == literal)
        .filter_map(|r| matches(r.pattern, path).map(|params| (r, params)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn a_keyset_page_says_whether_another_follows() {
        let pos = |r: &(i64, &str)| (r.0, r.1.to_string());
        let (rows, next) = keyset_page(vec![(30, "c"), (20, "b"), (10, "a")], 2, pos);
        assert_eq!((rows, next.as_deref()), (vec![(30, "c"), (20, "b")], Some("20.b")));
        let (rows, next) = keyset_page(vec![(30, "c"), (20, "b")], 2, pos);
        assert_eq!((rows.len(), next), (2, None), "no extra row: the last page");
        assert_eq!(page_start(None).unwrap(), (i64::MAX, String::new()));
        assert_eq!(page_start(Some("20.b")).unwrap(), (20, "b".to_string()));
        assert!(page_start(Some("nope")).is_err());
    }

    #[test]
    fn the_statuses_and_visibilities_a_query_takes_are_the_enums() {
        use crate::domain::principal::Visibility;
        use crate::protocol::ContentStatus;
        for c in ContentStatus::ALL {
            assert_eq!(serde_json::to_value(c).unwrap(), c.as_str());
            assert_eq!(ContentStatus::parse(c.as_str()), Some(c));
        }
        for v in Visibility::ALL {
            assert_eq!(serde_json::to_value(v).unwrap(), v.as_str());
        }
        assert_eq!(ContentStatus::parse("done"), None);
        // ALL is every variant: the schema lists them from the enum itself.
        let schema = serde_json::to_value(schemars::schema_for!(ContentStatus)).unwrap();
        assert_eq!(schema["enum"], serde_json::json!(ContentStatus::ALL.map(|c| c.as_str())));
    }

    #[test]
    fn resolves_params_404_and_405() {
        assert_eq!(resolve("GET", "/api/runs/abc").unwrap(), (RouteId::GetRun, vec!["abc".to_string()]));
        assert_eq!(resolve("POST", "/api/runs/abc/retry").unwrap().0, RouteId::RetryRun);
        assert_eq!(resolve("GET", "/api/content/").unwrap().0, RouteId::ListContent);
        assert_eq!(resolve("PATCH", "/api/content/x").unwrap_err().status(), 405);
        assert_eq!(resolve("QUERY", "/api/content").unwrap_err().status(), 405);
        // A literal path is not also an `{id}` of the pattern beside it.
        assert_eq!(resolve("PUT", "/api/content/batch").unwrap_err().status(), 405);
        assert_eq!(allowed("/api/content/batch"), vec!["POST"]);
        assert_eq!(resolve("GET", "/api/nope").unwrap_err().status(), 404);
        assert_eq!(resolve("GET", "/api/runs//cancel").unwrap_err().status(), 404);
        // Extra leading slashes name no route, so none can pass for an
        // admin route without the operator's check.
        for path in ["//admin/keys", "///admin/actors", "//api/content", "admin/keys"] {
            assert_eq!(resolve("GET", path).unwrap_err().status(), 404, "{path}");
        }
        assert!(RouteId::CreateKey.operator_only() && RouteId::AdminInspect.operator_only());
        assert!(!RouteId::CreateContent.operator_only() && !RouteId::Health.operator_only());
        let admin: Vec<RouteId> = ROUTES.iter().filter(|r| r.pattern.starts_with("/admin")).map(|r| r.id).collect();
        assert!(admin.len() >= 8 && admin.iter().all(|id| id.operator_only()), "{admin:?}");
        assert_eq!(resolve("GET", "/admin/actors/run/x").unwrap().1, vec!["run", "x"]);
        assert_eq!(allowed("/api/content/x"), vec!["GET", "PUT", "DELETE"]);
        assert_eq!(resolve("GET", "/api/content/x/source").unwrap(), (RouteId::GetSource, vec!["x".to_string()]));
        assert_eq!(resolve("POST", "/api/uploads").unwrap().0, RouteId::CreateUpload);
        assert_eq!(resolve("GET", "/api/uploads").unwrap_err().status(), 405);
        assert_eq!(resolve("POST", "/api/content/batch").unwrap().0, RouteId::CreateBatch);
        assert_eq!(resolve("GET", "/api/batches/b").unwrap(), (RouteId::GetBatch, vec!["b".to_string()]));
    }
}
