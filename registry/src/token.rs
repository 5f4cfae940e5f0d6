//! The bearer token flow beyond what `oci-client` does: parsing `WWW-Authenticate: Bearer`
//! challenges and trading a docker `identitytoken` (an OAuth2 refresh token) for an access
//! token at the registry's token server.

use std::collections::BTreeMap;

use reqwest::header;
use serde::Deserialize;

use crate::client::{API_ROOT, Registry};
use crate::error::{Action, RegistryError, ResponseDetail};
use crate::session::Session;

/// The `client_id` docker's OAuth2 token request sends; ours names this tool.
const TOKEN_CLIENT_ID: &str = "securebuild";
const OAUTH_GRANT_TYPE: &str = "grant_type";
const OAUTH_REFRESH_TOKEN: &str = "refresh_token";
const OAUTH_CLIENT_ID: &str = "client_id";
const OAUTH_SCOPE: &str = "scope";
const OAUTH_SERVICE: &str = "service";
const PUSH_PULL_ACTIONS: &str = "pull,push";
const TOKEN_TARGET: &str = "token";
const MAX_TOKEN_BYTES: u64 = 1 << 20;
/// The scheme of a bearer challenge and of a bearer `Authorization` value.
pub const BEARER_PREFIX: &str = "Bearer";

impl Registry {
    /// Trades an OAuth2 refresh token (docker's `identitytoken`) for an access token at the
    /// registry's token server, as `docker` does.
    pub(crate) async fn exchange_identity_token(
        &self,
        session: &Session,
        refresh_token: &str,
    ) -> Result<String, RegistryError> {
        #[derive(Deserialize)]
        struct TokenAnswer {
            #[serde(alias = "token")]
            access_token: String,
        }
        let ping = format!("{}{API_ROOT}", session.base_url);
        let response = self
            .http
            .get(&ping)
            .send()
            .await
            .map_err(|source| session.connection(Action::Authenticating, API_ROOT, source))?;
        let challenge = response
            .headers()
            .get(header::WWW_AUTHENTICATE)
            .and_then(|value| value.to_str().ok())
            .and_then(parse_bearer_challenge);
        let Some(challenge) = challenge else {
            return Err(RegistryError::IdentityTokenUnsupported {
                registry: session.registry.clone(),
                credentials: Box::new(session.credentials.clone()),
            });
        };
        let scope = format!("repository:{}:{PUSH_PULL_ACTIONS}", session.repository);
        let mut form = vec![
            (OAUTH_GRANT_TYPE, OAUTH_REFRESH_TOKEN),
            (OAUTH_REFRESH_TOKEN, refresh_token),
            (OAUTH_CLIENT_ID, TOKEN_CLIENT_ID),
            (OAUTH_SCOPE, scope.as_str()),
        ];
        if let Some(service) = challenge.service.as_deref() {
            form.push((OAUTH_SERVICE, service));
        }
        let response = self
            .http
            .post(&challenge.realm)
            .form(&form)
            .send()
            .await
            .map_err(|source| session.connection(Action::Authenticating, TOKEN_TARGET, source))?;
        let status = response.status();
        let body = session
            .read_body(
                response,
                MAX_TOKEN_BYTES,
                Action::Authenticating,
                TOKEN_TARGET,
            )
            .await?;
        if !status.is_success() {
            return Err(RegistryError::AuthenticationFailed {
                registry: session.registry.clone(),
                repository: session.repository.clone(),
                credentials: Box::new(session.credentials.clone()),
                message: format!(
                    "status {}: {}",
                    status.as_u16(),
                    ResponseDetail::from_body(&body)
                ),
            });
        }
        let answer: TokenAnswer =
            serde_json::from_slice(&body).map_err(|source| RegistryError::InvalidToken {
                registry: session.registry.clone(),
                source,
            })?;
        Ok(answer.access_token)
    }
}

/// The parts of a `WWW-Authenticate: Bearer …` challenge a token request needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BearerChallenge {
    /// Where tokens are asked for.
    pub realm: String,
    /// The `service` parameter, when given.
    pub service: Option<String>,
}

/// The first challenge of a `WWW-Authenticate` value: its scheme as sent and its `key=value`
/// parameters in order, keys as sent, values unquoted. A parameter key with whitespace in it
/// starts the next challenge, which ends this one.
pub fn parse_challenge(value: &str) -> Option<(String, Vec<(String, String)>)> {
    let value = value.trim();
    let (scheme, mut rest) = value.split_at(value.find(char::is_whitespace).unwrap_or(value.len()));
    if scheme.is_empty() {
        return None;
    }
    let mut params = Vec::new();
    loop {
        rest = rest.trim_start_matches(|c: char| c.is_whitespace() || c == ',');
        if rest.is_empty() {
            break;
        }
        let equals = rest.find('=')?;
        let key = rest[..equals].trim().to_owned();
        if key.contains(char::is_whitespace) {
            // The start of another challenge: this one is complete.
            break;
        }
        rest = rest[equals + 1..].trim_start();
        let value = if let Some(quoted) = rest.strip_prefix('"') {
            let mut value = String::new();
            let mut chars = quoted.char_indices();
            let mut end = None;
            while let Some((index, c)) = chars.next() {
                match c {
                    '\\' => value.push(chars.next()?.1),
                    '"' => {
                        end = Some(index + 1);
                        break;
                    }
                    c => value.push(c),
                }
            }
            rest = &quoted[end?..];
            value
        } else {
            let end = rest.find(',').unwrap_or(rest.len());
            let value = rest[..end].trim().to_owned();
            rest = &rest[end..];
            value
        };
        params.push((key, value));
    }
    Some((scheme.to_owned(), params))
}

/// Parses the first `Bearer` challenge of a `WWW-Authenticate` value.
pub fn parse_bearer_challenge(value: &str) -> Option<BearerChallenge> {
    let (scheme, params) = parse_challenge(value)?;
    if !scheme.eq_ignore_ascii_case(BEARER_PREFIX) {
        return None;
    }
    let mut first = BTreeMap::new();
    for (key, value) in params {
        first.entry(key.to_ascii_lowercase()).or_insert(value);
    }
    Some(BearerChallenge {
        realm: first.remove("realm").filter(|realm| !realm.is_empty())?,
        service: first.remove("service"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_challenges_parse() {
        let check = |header: &str, expected: Option<(&str, Option<&str>)>| {
            let parsed = parse_bearer_challenge(header);
            let expected = expected.map(|(realm, service)| BearerChallenge {
                realm: realm.to_owned(),
                service: service.map(str::to_owned),
            });
            assert_eq!(parsed, expected, "{header}");
        };
        check(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io""#,
            Some(("https://auth.docker.io/token", Some("registry.docker.io"))),
        );
        check(
            r#"bearer  service="a b", realm="https://x/token?x=1,2", scope="repository:r:pull""#,
            Some(("https://x/token?x=1,2", Some("a b"))),
        );
        check(
            r#"Bearer realm=https://x/token"#,
            Some(("https://x/token", None)),
        );
        check(r#"Bearer realm="quo\"ted""#, Some(("quo\"ted", None)));
        check(r#"Basic realm="registry""#, None);
        check(r#"Bearer service="only""#, None);
        check(r#"Bearer realm="unterminated"#, None);
        check("", None);
    }
}
