//! AWS IoT's control-plane API (and iot-data `Publish`) over HTTP on
//! 127.0.0.1, as the AWS SDKs, the AWS CLI and boto3 call it (restJson1):
//! the operator's access to the emulated account, on the cloud's one
//! registry.
//!
//! Model-driven: [`model`] reads botocore's service model
//! (`emulator/data/iot-api.json`, vendored by `cargo xtask aws-data`)
//! and does everything protocol-shaped from it: which operation a
//! request is, where each input member comes from and what it must be,
//! how listings page, how outputs and errors are written and with which
//! status. [`ops`] is only what each operation does to the registry.
//! SigV4 is accepted from any credentials (the region is read from the
//! signature's scope and logged; the account lives in one region). A call
//! the API does not implement gets an `UnknownOperationException` naming
//! it; a path no operation has, the same without a name.
//!
//! The API is the operator's (root credentials), not a function's: its
//! calls are not authorized against a role.

pub(crate) mod model;
mod ops;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{Request, Response};
use serde_json::{Map, Value};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

pub use ops::{ApiOptions, Synthesize};

use model::{Route, model};

/// The error code of a call the API does not serve.
pub const UNKNOWN_OPERATION: &str = "UnknownOperationException";
/// The largest request body read (a CA and its verification certificate
/// are a few KiB; an iot-data payload at most 128 KiB).
const MAX_BODY: usize = 1024 * 1024;
/// A client that sends no whole request head, or no whole body, in this
/// time is disconnected (a keep-alive connection waits as long for its
/// next request).
const READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// An error as AWS IoT returns it: the error shape's name and its message.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct ApiError {
    /// The error shape's name, e.g. `ResourceNotFoundException`.
    pub code: String,
    /// Its `message`.
    pub message: String,
    /// Other members of the error shape (e.g. `resourceId`).
    pub fields: Map<String, Value>,
}

impl ApiError {
    /// An error with `code` and `message`.
    pub fn new(code: &str, message: impl Into<String>) -> ApiError {
        ApiError {
            code: code.to_owned(),
            message: message.into(),
            fields: Map::new(),
        }
    }

    /// `InvalidRequestException`.
    pub fn invalid(message: impl Into<String>) -> ApiError {
        ApiError::new("InvalidRequestException", message)
    }

    /// `ResourceNotFoundException`.
    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new("ResourceNotFoundException", message)
    }

    /// `InternalFailureException`.
    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError::new("InternalFailureException", message)
    }
}

/// The API's listener. Dropping it stops serving.
#[derive(Debug)]
pub struct ApiServer {
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl ApiServer {
    /// Where it listens.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://<addr>`: the `--endpoint-url` of `aws`, boto3 and the SDKs.
    pub fn endpoint_url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// botocore's version the served model came from.
pub fn model_source() -> &'static str {
    &model().source
}

/// Starts serving the API of the cloud made of `registry`, `emulator`
/// and `lambda` on `options.bind`.
pub(crate) async fn serve(
    registry: lambdas::memory::MemoryRegistry,
    emulator: Arc<crate::Emulator>,
    lambda: crate::lambda::LambdaService,
    options: ApiOptions,
) -> std::io::Result<ApiServer> {
    let listener = TcpListener::bind(options.bind).await?;
    let api = ops::Api::new(registry, emulator, lambda, options);
    let addr = listener.local_addr()?;
    let api = Arc::new(api);
    let task = tokio::spawn(async move {
        loop {
            let (tcp, _) = match listener.accept().await {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = %e, "api accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                    continue;
                }
            };
            let api = api.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req| {
                    let api = api.clone();
                    async move { Ok::<_, Infallible>(handle(&api, req).await) }
                });
                if let Err(e) = hyper::server::conn::http1::Builder::new()
                    .timer(hyper_util::rt::TokioTimer::new())
                    .header_read_timeout(Some(READ_TIMEOUT))
                    .serve_connection(hyper_util::rt::TokioIo::new(tcp), service)
                    .await
                {
                    tracing::debug!(error = %e, "api connection ended");
                }
            });
        }
    });
    Ok(ApiServer { addr, task })
}

/// The region of a SigV4 `Authorization` header's credential scope.
fn signed_region(authorization: &str) -> Option<&str> {
    let credential = authorization.split("Credential=").nth(1)?;
    let scope = credential.split([',', ' ']).next()?;
    scope.split('/').nth(2)
}

async fn handle(api: &ops::Api, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let request_id = api.next_request_id();
    let method = req.method().as_str().to_owned();
    let path = req.uri().path().to_owned();
    let query: Vec<(String, String)> = req
        .uri()
        .query()
        .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default();
    let headers: Vec<(String, String)> = req
        .headers()
        .iter()
        .filter_map(|(k, v)| Some((k.as_str().to_owned(), v.to_str().ok()?.to_owned())))
        .collect();
    let region = headers
        .iter()
        .find(|(k, _)| k == "authorization")
        .and_then(|(_, v)| signed_region(v))
        .unwrap_or("")
        .to_owned();
    let body = match tokio::time::timeout(
        READ_TIMEOUT,
        Limited::new(req.into_body(), MAX_BODY).collect(),
    )
    .await
    {
        Ok(Ok(b)) => b.to_bytes(),
        Ok(Err(e)) => {
            return error_response(
                "iot",
                &ApiError::invalid(format!("the request body cannot be read: {e}")),
                &request_id,
            );
        }
        Err(_) => {
            return error_response(
                "iot",
                &ApiError::invalid(format!(
                    "the request body did not arrive within {} s",
                    READ_TIMEOUT.as_secs()
                )),
                &request_id,
            );
        }
    };
    let m = model();
    let (op, labels) = match m.route(&method, &path, &query) {
        Route::Operation(op, labels) => (op, labels),
        Route::NotImplemented { service, name } => {
            tracing::warn!(%service, operation = %name, "api call not implemented");
            return error_response(
                &service,
                &ApiError::new(
                    UNKNOWN_OPERATION,
                    format!("{name} ({service}) is not implemented by the fleetcert emulator"),
                ),
                &request_id,
            );
        }
        Route::Unknown => {
            return error_response(
                "iot",
                &ApiError::new(
                    UNKNOWN_OPERATION,
                    format!("no AWS IoT operation is {method} {path}"),
                ),
                &request_id,
            );
        }
    };
    let result = match m.decode(op, &labels, &query, &headers, &body) {
        Ok(input) => api.call(op, input).await,
        Err(e) => Err(e),
    };
    let result = result.and_then(|output| m.encode(op, output));
    match result {
        Ok(encoded) => {
            tracing::debug!(operation = %op.name, %region, status = encoded.status, "api call");
            let mut response = Response::builder()
                .status(encoded.status)
                .header("content-type", "application/json")
                .header("x-amzn-RequestId", &request_id);
            for (k, v) in &encoded.headers {
                response = response.header(k, v);
            }
            response
                .body(Full::new(Bytes::from(encoded.body)))
                .unwrap_or_else(|e| {
                    error_response(&op.service, &ApiError::internal(e.to_string()), &request_id)
                })
        }
        Err(e) => {
            if !m.declares_error(op, &e.code) {
                tracing::warn!(operation = %op.name, code = %e.code, "an error the model does not list for this operation");
            }
            tracing::info!(operation = %op.name, %region, code = %e.code, message = %e.message, "api call refused");
            error_response(&op.service, &e, &request_id)
        }
    }
}

/// restJson1's error: `x-amzn-ErrorType` and a JSON body with `message`,
/// the status the error shape says.
fn error_response(service: &str, e: &ApiError, request_id: &str) -> Response<Full<Bytes>> {
    let status = model().error_status(service, &e.code);
    let mut body = e.fields.clone();
    body.insert("message".into(), Value::String(e.message.clone()));
    let bytes = serde_json::to_vec(&Value::Object(body)).unwrap_or_default();
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .header("x-amzn-ErrorType", &e.code)
        .header("x-amzn-RequestId", request_id)
        .body(Full::new(Bytes::from(bytes)))
        .unwrap_or_else(|_| Response::new(Full::new(Bytes::new())))
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_region_is_read_from_the_signatures_scope() {
        assert_eq!(
            super::signed_region(
                "AWS4-HMAC-SHA256 Credential=AKID/20261207/eu-west-1/iot/aws4_request, SignedHeaders=host, Signature=ab"
            ),
            Some("eu-west-1")
        );
        assert_eq!(super::signed_region("Bearer x"), None);
    }
}
