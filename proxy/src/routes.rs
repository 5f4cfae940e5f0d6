//! Which upstream repository a vanity name stands for. A route maps names under a prefix,
//! optionally only for one `Host`, onto a repository prefix of an upstream registry:
//! `hello` → `registry.internal:5000/team/hello` (the name and the names below it),
//! `base/` (or `base/*`) → `registry.internal:5000/base/` (everything under `base/`),
//! `images.example.com/` → everything asked of that host. The most specific route wins: one
//! for the request's host before one for any host, then the longest prefix.

use crate::names::is_valid_name;

/// How clients reach an upstream through a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Access {
    /// Anyone may pull; the proxy uses its own credentials upstream.
    #[default]
    Public,
    /// Clients authenticate against the upstream through the proxy, with their own
    /// credentials, which are passed on and never kept.
    Passthrough,
}

/// A route as written: `VANITY=UPSTREAM` on the command line, or the same fields in YAML.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RouteSpec {
    /// `[host/]name-prefix`: `hello`, `base/`, `base/*`, `images.example.com/`.
    pub vanity: String,
    /// `registry-host[:port]/repository-prefix`: `registry.internal:5000/team/`.
    pub upstream: String,
    /// Who may pull.
    #[serde(default)]
    pub access: Access,
}

impl std::str::FromStr for RouteSpec {
    type Err = RouteError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (vanity, upstream) = text.split_once('=').ok_or_else(|| RouteError {
            route: text.to_owned(),
            problem: "expected VANITY=UPSTREAM, for example hello=registry.internal:5000/team/hello",
        })?;
        Ok(Self {
            vanity: vanity.trim().to_owned(),
            upstream: upstream.trim().to_owned(),
            access: Access::Public,
        })
    }
}

/// A route that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid route {route:?}: {problem}")]
pub struct RouteError {
    /// The route as given.
    pub route: String,
    /// What is wrong with it and what is expected.
    pub problem: &'static str,
}

/// A parsed route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// The vanity side as written, the route's name in metrics and logs.
    pub label: String,
    /// The host it is limited to (lower case, with a port when one was given).
    pub host: Option<String>,
    /// The names it maps.
    prefix: Prefix,
    /// The upstream registry, `host[:port]`.
    pub registry: String,
    /// The upstream repository prefix (a name, or a namespace ending in `/`, or empty).
    upstream_prefix: String,
    /// Who may pull.
    pub access: Access,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Prefix {
    /// Every name starting with this (empty, or ending in `/`).
    Namespace(String),
    /// This name and the names below it.
    Name(String),
}

impl Prefix {
    fn len(&self) -> usize {
        match self {
            Self::Namespace(prefix) | Self::Name(prefix) => prefix.len(),
        }
    }
}

/// Where a vanity name leads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target<'a> {
    /// The route taken.
    pub route: &'a Route,
    /// The upstream repository.
    pub repository: String,
}

impl Route {
    /// Parses and checks a route.
    pub fn parse(spec: &RouteSpec) -> Result<Self, RouteError> {
        let error = |problem| RouteError {
            route: format!("{}={}", spec.vanity, spec.upstream),
            problem,
        };
        let vanity = spec.vanity.strip_suffix('*').unwrap_or(&spec.vanity);
        let (host, name_prefix) = match vanity.split_once('/') {
            Some((first, rest)) if is_host(first) => (Some(first.to_ascii_lowercase()), rest),
            None if is_host(vanity) => {
                return Err(error(
                    "a vanity host needs a trailing '/' (images.example.com/) to map its names",
                ));
            }
            _ => (None, vanity),
        };
        if host.is_none() && name_prefix.is_empty() {
            return Err(error(
                "the vanity is empty; give a host (images.example.com/) or a name prefix (base/)",
            ));
        }
        let prefix = if name_prefix.is_empty() {
            Prefix::Namespace(String::new())
        } else if let Some(namespace) = name_prefix.strip_suffix('/') {
            if !is_valid_name(namespace) {
                return Err(error(
                    "the vanity name prefix is not a valid repository name",
                ));
            }
            Prefix::Namespace(name_prefix.to_owned())
        } else {
            if !is_valid_name(name_prefix) {
                return Err(error("the vanity name is not a valid repository name"));
            }
            Prefix::Name(name_prefix.to_owned())
        };
        let upstream = spec.upstream.strip_suffix('*').unwrap_or(&spec.upstream);
        let (registry, upstream_prefix) = upstream
            .split_once('/')
            .ok_or_else(|| error("the upstream must be registry-host[:port]/repository-prefix"))?;
        if registry.is_empty() || registry.contains(char::is_whitespace) {
            return Err(error("the upstream registry host is empty or has spaces"));
        }
        let upstream_prefix = match &prefix {
            Prefix::Namespace(_) => {
                let namespace = upstream_prefix.trim_end_matches('/');
                if namespace.is_empty() {
                    String::new()
                } else if is_valid_name(namespace) {
                    format!("{namespace}/")
                } else {
                    return Err(error("the upstream repository prefix is not a valid name"));
                }
            }
            Prefix::Name(_) => {
                if !is_valid_name(upstream_prefix) {
                    return Err(error(
                        "a vanity name needs an upstream repository name (registry-host/team/hello)",
                    ));
                }
                upstream_prefix.to_owned()
            }
        };
        Ok(Self {
            label: spec.vanity.clone(),
            host,
            prefix,
            registry: registry.to_ascii_lowercase(),
            upstream_prefix,
            access: spec.access,
        })
    }

    /// The upstream repository for `name`, if this route maps it.
    fn map(&self, name: &str) -> Option<String> {
        let repository = match &self.prefix {
            Prefix::Namespace(prefix) => {
                let rest = name.strip_prefix(prefix.as_str())?;
                format!("{}{rest}", self.upstream_prefix)
            }
            Prefix::Name(prefix) => {
                let rest = name.strip_prefix(prefix.as_str())?;
                if !rest.is_empty() && !rest.starts_with('/') {
                    return None;
                }
                format!("{}{rest}", self.upstream_prefix)
            }
        };
        is_valid_name(&repository).then_some(repository)
    }

    /// The vanity name of upstream repository `repository`, if this route maps it back.
    pub fn vanity_name(&self, repository: &str) -> Option<String> {
        let rest = repository.strip_prefix(self.upstream_prefix.as_str())?;
        match &self.prefix {
            Prefix::Namespace(prefix) => Some(format!("{prefix}{rest}")),
            Prefix::Name(prefix) => {
                (rest.is_empty() || rest.starts_with('/')).then(|| format!("{prefix}{rest}"))
            }
        }
    }

    /// Whether the route serves requests for `host` (every host when it names none).
    pub fn serves_host(&self, host: Option<&str>) -> bool {
        let Some(own) = &self.host else {
            return true;
        };
        let Some(host) = host.map(str::to_ascii_lowercase) else {
            return false;
        };
        if own.contains(':') {
            host == *own
        } else {
            host == *own || host.rsplit_once(':').is_some_and(|(name, _)| name == own)
        }
    }
}

/// Whether the first component of a vanity names a host (it has a `.` or a `:`, or is
/// `localhost`), as in image references.
fn is_host(component: &str) -> bool {
    component.contains('.') || component.contains(':') || component == "localhost"
}

/// Every route, in the order they are tried.
#[derive(Debug, Clone, Default)]
pub struct RouteTable {
    routes: Vec<Route>,
}

impl RouteTable {
    /// Orders `routes` from the most specific to the least.
    pub fn new(mut routes: Vec<Route>) -> Self {
        routes.sort_by_key(|route| {
            (
                std::cmp::Reverse(route.host.is_some()),
                std::cmp::Reverse(route.prefix.len()),
            )
        });
        Self { routes }
    }

    /// Every route.
    pub fn routes(&self) -> &[Route] {
        &self.routes
    }

    /// Where `name` asked of `host` (the `Host` header) leads, if anywhere.
    pub fn resolve(&self, host: Option<&str>, name: &str) -> Option<Target<'_>> {
        self.routes
            .iter()
            .filter(|route| route.serves_host(host))
            .find_map(|route| {
                route
                    .map(name)
                    .map(|repository| Target { route, repository })
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(text: &str) -> Route {
        Route::parse(&text.parse().unwrap()).unwrap()
    }

    fn table(routes: &[&str]) -> RouteTable {
        RouteTable::new(routes.iter().map(|text| route(text)).collect())
    }

    fn upstream(table: &RouteTable, host: Option<&str>, name: &str) -> Option<String> {
        table
            .resolve(host, name)
            .map(|target| format!("{}/{}", target.route.registry, target.repository))
    }

    #[test]
    fn names_map_by_prefix_and_host() {
        let table = table(&[
            "hello=registry.internal:5000/team/hello",
            "base/*=registry.internal:5000/base/*",
            "images.example.com/=registry.internal:5000/team/",
            "images.example.com/special=other.example:443/x/y",
            "mirror/=127.0.0.1:5000/",
        ]);
        let cases = [
            (None, "hello", Some("registry.internal:5000/team/hello")),
            (
                None,
                "hello/sub",
                Some("registry.internal:5000/team/hello/sub"),
            ),
            (None, "hellox", None),
            (
                None,
                "base/alpine",
                Some("registry.internal:5000/base/alpine"),
            ),
            (None, "base", None),
            (None, "mirror/a/b", Some("127.0.0.1:5000/a/b")),
            (None, "other", None),
            (
                Some("images.example.com"),
                "app",
                Some("registry.internal:5000/team/app"),
            ),
            (
                Some("IMAGES.example.com:443"),
                "app",
                Some("registry.internal:5000/team/app"),
            ),
            (
                Some("images.example.com"),
                "special",
                Some("other.example:443/x/y"),
            ),
            (
                Some("images.example.com"),
                "hello",
                Some("registry.internal:5000/team/hello"),
            ),
            (Some("elsewhere.example.com"), "app", None),
        ];
        for (host, name, expected) in cases {
            assert_eq!(
                upstream(&table, host, name).as_deref(),
                expected,
                "{host:?} {name}"
            );
        }
        let hello = route("hello=registry.internal:5000/team/hello");
        assert_eq!(hello.vanity_name("team/hello").as_deref(), Some("hello"));
        assert_eq!(hello.vanity_name("team/other"), None);
    }

    #[test]
    fn bad_routes_say_what_is_expected() {
        for bad in [
            "hello",
            "hello=registry.internal:5000",
            "Hello=r:5000/x",
            "images.example.com=r:5000/x/",
            "hello=r:5000/Team/",
            "base/=r:5000/BAD/",
            "=r:5000/x",
        ] {
            let result = bad
                .parse::<RouteSpec>()
                .and_then(|spec| Route::parse(&spec));
            let error = result.expect_err(bad);
            assert!(error.to_string().contains("invalid route"), "{error}");
        }
    }
}
