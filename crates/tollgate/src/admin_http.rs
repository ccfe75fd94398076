//! `/admin/v1` over HTTP: a thin shell around the control plane ([`crate::control`]). It finds
//! the operation (404/405), authenticates the admin token (401; a team key never opens it),
//! reads the JSON body (at most 1 MiB) and writes the operation's reply. Not on the hot path.

use http::header::{AUTHORIZATION, CONTENT_DISPOSITION, CONTENT_TYPE, HeaderName, HeaderValue};
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;

use tollgate_core::ApiError;
use tollgate_core::keys::BearerError;
use tollgate_proxy::body::read_limited;
use tollgate_proxy::{ProxyBody, error_response, json_response};

use crate::control::reply::ReportBody;
use crate::control::reply::store_error;
use crate::control::{Actor, Control, OPENAPI_JSON, Reply};

const MAX_ADMIN_BODY: u64 = 1024 * 1024;

pub struct AdminHttp {
    control: Control,
}

impl AdminHttp {
    pub fn new(control: Control) -> AdminHttp {
        AdminHttp { control }
    }

    pub async fn handle(&self, request: Request<Incoming>) -> Response<ProxyBody> {
        match self.dispatch(request).await {
            Ok(reply) => into_response(reply),
            Err(error) => error_response(&error),
        }
    }

    /// Route (404/405), then token (401), then the operation (which checks the role: 403).
    async fn dispatch(&self, request: Request<Incoming>) -> Result<Reply, ApiError> {
        let routed = Control::route(request.method(), request.uri().path())?;
        if routed.is_public() {
            // The one public route: the OpenAPI document, which reveals no data.
            return Ok(Reply::Document(OPENAPI_JSON));
        }
        let actor = self.authenticate(&request).await?;
        let query = request.uri().query().map(str::to_string);
        let body = read_limited(request.into_body(), MAX_ADMIN_BODY)
            .await
            .map_err(too_large)?;
        self.control
            .run(&actor, routed, query.as_deref(), &body)
            .await
    }

    async fn authenticate(&self, request: &Request<Incoming>) -> Result<Actor, ApiError> {
        let unauthorized = |why: &str| {
            ApiError::new(
                401,
                "invalid_request_error",
                "invalid_admin_token",
                format!(
                    "{why}. The admin API takes an admin token as 'Authorization: Bearer <token>'."
                ),
            )
        };
        let header = request
            .headers()
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        let token = tollgate_core::keys::bearer_token(header).map_err(|e| match e {
            BearerError::Missing => unauthorized("No admin token was provided"),
            BearerError::NotBearer => unauthorized("The Authorization header has no Bearer scheme"),
        })?;
        self.control
            .store()
            .admin_for_token(token)
            .await
            .map_err(store_error)?
            .ok_or_else(|| unauthorized("The admin token is not valid"))
    }
}

/// The body reader's 413 names the proxy's setting (`limits.max_body_bytes`), which does not
/// govern the admin API: its limit is fixed, and the message says so.
fn too_large(mut error: ApiError) -> ApiError {
    if error.status == 413 {
        error.message = format!(
            "The request body exceeds the admin API's limit of {MAX_ADMIN_BODY} bytes (1 MiB; \
             no admin request needs more)."
        );
    }
    error
}

/// The HTTP answer for a reply; the console's downloads use it too, so their bytes and headers
/// are the admin API's.
pub(crate) fn into_response(reply: Reply) -> Response<ProxyBody> {
    match reply {
        Reply::Json(status, body) => json_response(status, body.to_string().into_bytes()),
        Reply::Document(text) => json_response(StatusCode::OK, text.as_bytes().to_vec()),
        Reply::Report { body, headers } => {
            let mut response = match body {
                ReportBody::Json(value) => {
                    json_response(StatusCode::OK, value.to_string().into_bytes())
                }
                ReportBody::Csv { filename, text } => {
                    let mut response = Response::new(ProxyBody::full(text));
                    let disposition = format!("attachment; filename=\"{filename}\"");
                    let csv_headers = response.headers_mut();
                    csv_headers.insert(
                        CONTENT_TYPE,
                        HeaderValue::from_static("text/csv; charset=utf-8"),
                    );
                    if let Ok(value) = HeaderValue::from_str(&disposition) {
                        csv_headers.insert(CONTENT_DISPOSITION, value);
                    }
                    response
                }
            };
            for (name, value) in headers {
                if let Ok(value) = HeaderValue::from_str(&value) {
                    response
                        .headers_mut()
                        .insert(HeaderName::from_static(name), value);
                }
            }
            response
        }
    }
}
