//! Tag lists and referrers, with their pagination and filters checked before anything goes
//! upstream.

use super::*;

impl Proxy {
    pub(super) async fn tag_list(&self, call: &Call<'_>) -> Result<Response<Body>, SpecError> {
        let query = tag_list_query(call.query)?;
        let mut request = call.request(Method::GET, "tags/list".to_owned());
        request.query = query;
        let (response, _permit) = self.upstream(call, request).await?;
        if response.status() != StatusCode::OK {
            return Err(self.status_error(call, &response, ErrorCode::NameUnknown, "tags/list"));
        }
        let link = response
            .headers()
            .get(header::LINK)
            .and_then(|value| value.to_str().ok())
            .map(|link| {
                link.replace(
                    &format!("/v2/{}/", call.upstream.repository()),
                    &format!("/v2/{}/", call.name),
                )
            });
        let bytes = read_limited(response, MAX_MANIFEST_BYTES, call, "tags/list").await?;
        let mut list: serde_json::Value = serde_json::from_slice(&bytes).map_err(|_| {
            SpecError::new(
                ErrorCode::UpstreamFailed,
                "the upstream's tag list is not JSON".to_owned(),
            )
        })?;
        if let Some(object) = list.as_object_mut() {
            object.insert("name".to_owned(), serde_json::Value::from(call.name));
        }
        let body = Bytes::from(list.to_string());
        let length = body.len().to_string();
        let mut headers = vec![
            (header::CONTENT_TYPE, JSON),
            (header::CONTENT_LENGTH, length.as_str()),
        ];
        if let Some(link) = &link {
            headers.push((header::LINK, link.as_str()));
        }
        Ok(respond(
            StatusCode::OK,
            &headers,
            body_for(call.method, body),
        ))
    }

    pub(super) async fn referrers(
        &self,
        call: &Call<'_>,
        digest: &str,
    ) -> Result<Response<Body>, SpecError> {
        let query = referrers_query(call.query)?;
        let mut request = call.request(Method::GET, format!("referrers/{digest}"));
        request.query = query;
        let (response, _permit) = self.upstream(call, request).await?;
        if response.status() != StatusCode::OK {
            return Err(self.status_error(call, &response, ErrorCode::ManifestUnknown, digest));
        }
        let content_type = response
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .unwrap_or("application/vnd.oci.image.index.v1+json")
            .to_owned();
        let filters = response
            .headers()
            .get(OCI_FILTERS_APPLIED)
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned);
        let bytes = read_limited(response, MAX_MANIFEST_BYTES, call, digest).await?;
        let length = bytes.len().to_string();
        let mut headers = vec![
            (header::CONTENT_TYPE, content_type.as_str()),
            (header::CONTENT_LENGTH, length.as_str()),
        ];
        if let Some(filters) = &filters {
            headers.push((
                HeaderName::from_static(OCI_FILTERS_APPLIED),
                filters.as_str(),
            ));
        }
        Ok(respond(
            StatusCode::OK,
            &headers,
            body_for(call.method, bytes),
        ))
    }
}

/// The `n` and `last` of a tag list request, checked and re-encoded.
pub(super) fn tag_list_query(query: Option<&str>) -> Result<Option<String>, SpecError> {
    let mut parts = Vec::new();
    for (key, value) in query_pairs(query) {
        match key {
            "n" if !value.is_empty()
                && value.len() <= 9
                && value.bytes().all(|b| b.is_ascii_digit()) =>
            {
                parts.push(format!("n={value}"));
            }
            "n" => {
                return Err(SpecError::new(
                    ErrorCode::PaginationInvalid,
                    format!("n={value:?} is not a number of tags"),
                ));
            }
            "last" if is_valid_tag(value) => parts.push(format!("last={value}")),
            "last" => {
                return Err(SpecError::new(
                    ErrorCode::PaginationInvalid,
                    format!("last={value:?} is not a tag"),
                ));
            }
            _ => {}
        }
    }
    Ok((!parts.is_empty()).then(|| parts.join("&")))
}

/// The `artifactType` filter of a referrers request, checked and passed on.
pub(super) fn referrers_query(query: Option<&str>) -> Result<Option<String>, SpecError> {
    let mut parts = Vec::new();
    for (key, value) in query_pairs(query) {
        if key != "artifactType" {
            continue;
        }
        let valid = !value.is_empty()
            && value
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$&-^_.+/%".contains(&b));
        if !valid {
            return Err(SpecError::new(
                ErrorCode::Unsupported,
                format!("artifactType={value:?} is not a media type"),
            ));
        }
        parts.push(format!("artifactType={value}"));
    }
    Ok((!parts.is_empty()).then(|| parts.join("&")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pagination_and_filters_are_checked_before_going_upstream() {
        assert_eq!(tag_list_query(None).unwrap(), None);
        assert_eq!(
            tag_list_query(Some("n=10&last=v1&other=x"))
                .unwrap()
                .as_deref(),
            Some("n=10&last=v1")
        );
        for bad in ["n=-1", "n=abc", "n=", "last=../x", "n=1234567890"] {
            assert_eq!(
                tag_list_query(Some(bad)).unwrap_err().code,
                ErrorCode::PaginationInvalid,
                "{bad}"
            );
        }
        assert_eq!(
            referrers_query(Some(
                "artifactType=application/vnd.dev.cosign.artifact.sig.v1%2Bjson"
            ))
            .unwrap()
            .as_deref(),
            Some("artifactType=application/vnd.dev.cosign.artifact.sig.v1%2Bjson")
        );
        assert!(referrers_query(Some("artifactType=a b")).is_err());
    }
}
