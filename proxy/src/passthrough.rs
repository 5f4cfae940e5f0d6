//! The `passthrough` access mode's rewriting: upstream `WWW-Authenticate` challenges are shown
//! to clients with the realm pointing at the proxy's `/token` and the scope naming vanity
//! repositories, and the clients' token requests go to the upstream's token server with the
//! scope naming upstream repositories again, as registry redirectors for public registries do.
//! Only `pull` is ever asked for upstream. Pure; the credentials in these exchanges are
//! passed on, never kept.

use securebuild_registry::token::parse_challenge;
use url::form_urlencoded;

use crate::spec_error::{ErrorCode, SpecError};

/// The path of the proxy's token endpoint.
pub const TOKEN_PATH: &str = "/token";
const BEARER: &str = "bearer";
const REPOSITORY_SCOPE: &str = "repository";
const PULL: &str = "pull";

/// The parameters of one challenge, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    /// `Bearer` or `Basic`, as sent.
    pub scheme: String,
    /// `key=value` parameters, unquoted.
    pub params: Vec<(String, String)>,
}

impl Challenge {
    /// Parses the first challenge of a `WWW-Authenticate` value.
    pub fn parse(value: &str) -> Option<Self> {
        let (scheme, params) = parse_challenge(value)?;
        Some(Self { scheme, params })
    }

    /// Whether it asks for a bearer token.
    pub fn is_bearer(&self) -> bool {
        self.scheme.eq_ignore_ascii_case(BEARER)
    }

    /// The value of parameter `key`.
    pub fn param(&self, key: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(key))
            .map(|(_, value)| value.as_str())
    }

    /// The challenge as a header value.
    pub fn render(&self) -> String {
        let params: Vec<String> = self
            .params
            .iter()
            .map(|(key, value)| {
                let escaped = value.replace('\\', "\\\\").replace('"', "\\\"");
                format!("{key}=\"{escaped}\"")
            })
            .collect();
        if params.is_empty() {
            self.scheme.clone()
        } else {
            format!("{} {}", self.scheme, params.join(","))
        }
    }
}

/// The challenge a client of the proxy sees: a bearer challenge gets `realm` (the proxy's
/// token endpoint) and its scope's repositories renamed by `to_vanity` (scopes it cannot
/// rename are dropped); any other challenge (`Basic`) is passed on as it is.
pub fn client_challenge(
    upstream: &Challenge,
    realm: &str,
    to_vanity: impl Fn(&str) -> Option<String>,
) -> Challenge {
    if !upstream.is_bearer() {
        return upstream.clone();
    }
    let mut params = Vec::new();
    for (key, value) in &upstream.params {
        if key.eq_ignore_ascii_case("realm") {
            params.push((key.clone(), realm.to_owned()));
        } else if key.eq_ignore_ascii_case("scope") {
            let scopes: Vec<String> = value
                .split_whitespace()
                .filter_map(|scope| rename_scope(scope, &to_vanity, false))
                .collect();
            if !scopes.is_empty() {
                params.push((key.clone(), scopes.join(" ")));
            }
        } else {
            params.push((key.clone(), value.clone()));
        }
    }
    Challenge {
        scheme: upstream.scheme.clone(),
        params,
    }
}

/// The query of a client's token request as the upstream token server gets it: every
/// `repository:NAME:ACTIONS` scope renamed by `to_upstream` and cut down to `pull`; `service`,
/// `account`, `client_id` and `offline_token` passed on; anything else dropped.
pub fn upstream_token_query(
    query: &str,
    to_upstream: impl Fn(&str) -> Option<String>,
) -> Result<String, SpecError> {
    let mut serializer = form_urlencoded::Serializer::new(String::new());
    for (key, value) in form_urlencoded::parse(query.as_bytes()) {
        match key.as_ref() {
            "scope" => {
                for scope in value.split_whitespace() {
                    let renamed = rename_scope(scope, &to_upstream, true).ok_or_else(|| {
                        SpecError::new(
                            ErrorCode::NameUnknown,
                            format!("scope {scope:?} names no repository this proxy serves"),
                        )
                    })?;
                    serializer.append_pair("scope", &renamed);
                }
            }
            "service" | "account" | "client_id" | "offline_token" => {
                serializer.append_pair(&key, &value);
            }
            _ => {}
        }
    }
    Ok(serializer.finish())
}

/// The repository names of `repository:` scopes in a token request query.
pub fn scope_repositories(query: &str) -> Vec<String> {
    form_urlencoded::parse(query.as_bytes())
        .filter(|(key, _)| key == "scope")
        .flat_map(|(_, value)| {
            value
                .split_whitespace()
                .filter_map(|scope| {
                    let rest = scope.strip_prefix("repository:")?;
                    let (name, _) = rest.rsplit_once(':')?;
                    Some(name.to_owned())
                })
                .collect::<Vec<_>>()
        })
        .collect()
}

/// `repository:NAME:ACTIONS` with NAME renamed (and ACTIONS cut to `pull` when `pull_only`);
/// `None` for other scopes and names `rename` does not know.
fn rename_scope(
    scope: &str,
    rename: impl Fn(&str) -> Option<String>,
    pull_only: bool,
) -> Option<String> {
    let rest = scope.strip_prefix(REPOSITORY_SCOPE)?.strip_prefix(':')?;
    let (name, actions) = rest.rsplit_once(':')?;
    let renamed = rename(name)?;
    let actions = if pull_only {
        if !actions.split(',').any(|action| action == PULL) {
            return None;
        }
        PULL
    } else {
        actions
    };
    Some(format!("{REPOSITORY_SCOPE}:{renamed}:{actions}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn upstream_name(name: &str) -> Option<String> {
        name.strip_prefix("hello")
            .map(|rest| format!("team/hello{rest}"))
    }

    fn vanity_name(name: &str) -> Option<String> {
        name.strip_prefix("team/hello")
            .map(|rest| format!("hello{rest}"))
    }

    #[test]
    fn bearer_challenges_point_at_the_proxy_under_vanity_names() {
        let upstream = Challenge::parse(
            r#"Bearer realm="https://auth.example/token",service="registry.example",scope="repository:team/hello:pull repository:other:pull""#,
        )
        .unwrap();
        let client = client_challenge(&upstream, "https://proxy.example/token", vanity_name);
        assert_eq!(
            client.render(),
            r#"Bearer realm="https://proxy.example/token",service="registry.example",scope="repository:hello:pull""#
        );
        let basic = Challenge::parse(r#"Basic realm="securebuild-test""#).unwrap();
        assert_eq!(
            client_challenge(&basic, "x", vanity_name).render(),
            r#"Basic realm="securebuild-test""#
        );
        assert!(Challenge::parse("").is_none());
    }

    #[test]
    fn token_requests_go_upstream_for_pull_only() {
        let query =
            "scope=repository%3Ahello%3Apull%2Cpush&service=registry.example&account=alice&other=x";
        assert_eq!(
            upstream_token_query(query, upstream_name).unwrap(),
            "scope=repository%3Ateam%2Fhello%3Apull&service=registry.example&account=alice"
        );
        assert_eq!(scope_repositories(query), ["hello"]);
        let error =
            upstream_token_query("scope=repository:elsewhere:pull", upstream_name).unwrap_err();
        assert_eq!(error.code, ErrorCode::NameUnknown);
        let error = upstream_token_query("scope=repository:hello:push", upstream_name).unwrap_err();
        assert_eq!(error.code, ErrorCode::NameUnknown);
    }
}
