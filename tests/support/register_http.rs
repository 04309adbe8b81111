//! A local HTTP front for the register handler, for tests only: it does to
//! an HTTP/1.1 request what the HTTP API does (an API Gateway v2 event:
//! header names in lower case, repeated headers joined with commas, a body
//! that is not JSON or text base64-encoded) and calls the same
//! `Registrar::handle` the Lambda calls. Bound to 127.0.0.1 only.
#![allow(dead_code)]

use std::net::SocketAddr;

use aws_lambda_events::encodings::Body;
use aws_lambda_events::event::apigw::{ApiGatewayV2httpRequest, ApiGatewayV2httpResponse};
use aws_lambda_events::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use base64::Engine as _;
use raffle_outbox::register::Registrar;
use serde_json::json;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

/// The largest request head read, and API Gateway's payload limit (10 MB).
const MAX_HEAD: usize = 64 * 1024;
const MAX_PAYLOAD: usize = 10 * 1024 * 1024;

/// Serves `POST /participants` with `registrar` on a free port of
/// 127.0.0.1 until the runtime ends; returns the address.
pub async fn serve(registrar: Registrar) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a local port");
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let registrar = registrar.clone();
            tokio::spawn(async move {
                let _ = connection(stream, &registrar).await;
            });
        }
    });
    address
}

/// One request as the HTTP API hands it on.
struct Request {
    method: String,
    path: String,
    query: String,
    headers: HeaderMap,
    body: Vec<u8>,
}

/// Requests on one connection, one after another (keep-alive), until the
/// client closes it or sends something that is not HTTP/1.1.
async fn connection(mut stream: TcpStream, registrar: &Registrar) -> std::io::Result<()> {
    let mut buffer = Vec::new();
    loop {
        let request = match read_request(&mut stream, &mut buffer).await? {
            Ok(Some(request)) => request,
            Ok(None) => return Ok(()),
            Err(response) => {
                write_response(&mut stream, &response, true).await?;
                return Ok(());
            }
        };
        let response = if request.method == Method::POST.as_str() && request.path == "/participants"
        {
            registrar.handle(&event(request)).await
        } else {
            gateway_error(StatusCode::NOT_FOUND)
        };
        write_response(&mut stream, &response, false).await?;
    }
}

/// The next request, `None` at the end of the connection, or the error
/// answer to a request that cannot be read.
async fn read_request(
    stream: &mut TcpStream,
    buffer: &mut Vec<u8>,
) -> std::io::Result<Result<Option<Request>, ApiGatewayV2httpResponse>> {
    let mut chunk = [0u8; 8192];
    let (head, mut request, length) = loop {
        let mut headers = [httparse::EMPTY_HEADER; 100];
        let mut parsed = httparse::Request::new(&mut headers);
        match parsed.parse(buffer) {
            Ok(httparse::Status::Complete(head)) => {
                let mut map = HeaderMap::new();
                let mut chunked = false;
                for h in parsed.headers.iter() {
                    let Ok(name) = HeaderName::from_bytes(h.name.as_bytes()) else {
                        return Ok(Err(gateway_error(StatusCode::BAD_REQUEST)));
                    };
                    let Ok(value) = HeaderValue::from_bytes(h.value) else {
                        return Ok(Err(gateway_error(StatusCode::BAD_REQUEST)));
                    };
                    chunked |= name == "transfer-encoding";
                    // API Gateway joins a repeated header's values with commas.
                    let joined = match map.get(&name) {
                        None => value,
                        Some(first) => {
                            let mut both = first.as_bytes().to_vec();
                            both.push(b',');
                            both.extend_from_slice(value.as_bytes());
                            HeaderValue::from_bytes(&both).unwrap()
                        }
                    };
                    map.insert(name, joined);
                }
                if chunked {
                    return Ok(Err(gateway_error(StatusCode::LENGTH_REQUIRED)));
                }
                let length = match map
                    .get("content-length")
                    .map(|v| v.to_str().ok().and_then(|v| v.parse::<usize>().ok()))
                {
                    None => 0,
                    Some(Some(length)) => length,
                    Some(None) => return Ok(Err(gateway_error(StatusCode::BAD_REQUEST))),
                };
                if length > MAX_PAYLOAD {
                    return Ok(Err(gateway_error(StatusCode::PAYLOAD_TOO_LARGE)));
                }
                let target = parsed.path.unwrap_or("/");
                let (path, query) = target.split_once('?').unwrap_or((target, ""));
                let request = Request {
                    method: parsed.method.unwrap_or("GET").to_string(),
                    path: path.to_string(),
                    query: query.to_string(),
                    headers: map,
                    body: Vec::new(),
                };
                break (head, request, length);
            }
            Ok(httparse::Status::Partial) if buffer.len() < MAX_HEAD => {}
            Ok(httparse::Status::Partial) => {
                return Ok(Err(gateway_error(
                    StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                )))
            }
            Err(_) => return Ok(Err(gateway_error(StatusCode::BAD_REQUEST))),
        }
        let read = stream.read(&mut chunk).await?;
        if read == 0 {
            return Ok(Ok(None));
        }
        buffer.extend_from_slice(&chunk[..read]);
    };
    while buffer.len() < head + length {
        let read = stream.read(&mut chunk).await?;
        if read == 0 {
            return Ok(Ok(None));
        }
        buffer.extend_from_slice(&chunk[..read]);
    }
    request.body = buffer[head..head + length].to_vec();
    buffer.drain(..head + length);
    Ok(Ok(Some(request)))
}

/// The HTTP API's payload 2.0 event for a request.
fn event(request: Request) -> ApiGatewayV2httpRequest {
    let media_type = request
        .headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|t| t.trim().to_ascii_lowercase())
        .unwrap_or_default();
    let textual = media_type == "application/json" || media_type.starts_with("text/");
    let (body, base64) = match String::from_utf8(request.body) {
        Ok(text) if textual => (text, false),
        Ok(text) => (base64::engine::general_purpose::STANDARD.encode(text), true),
        Err(e) => (
            base64::engine::general_purpose::STANDARD.encode(e.into_bytes()),
            true,
        ),
    };
    let mut event: ApiGatewayV2httpRequest = serde_json::from_value(json!({
        "version": "2.0",
        "routeKey": "POST /participants",
        "rawPath": request.path,
        "rawQueryString": request.query,
        "requestContext": {
            "http": {"method": request.method, "path": request.path, "protocol": "HTTP/1.1",
                     "sourceIp": "127.0.0.1", "userAgent": ""},
            "routeKey": "POST /participants",
            "stage": "$default"
        },
        "isBase64Encoded": base64
    }))
    .expect("an HTTP API event");
    event.headers = request.headers;
    event.body = (!body.is_empty()).then_some(body);
    event
}

/// An answer API Gateway gives itself: `{"message": "<reason>"}`.
fn gateway_error(status: StatusCode) -> ApiGatewayV2httpResponse {
    let mut response = ApiGatewayV2httpResponse::default();
    response.status_code = i64::from(status.as_u16());
    response
        .headers
        .insert("content-type", HeaderValue::from_static("application/json"));
    let message = status.canonical_reason().unwrap_or("Error");
    response.body = Some(Body::Text(json!({ "message": message }).to_string()));
    response
}

async fn write_response(
    stream: &mut TcpStream,
    response: &ApiGatewayV2httpResponse,
    close: bool,
) -> std::io::Result<()> {
    let status = StatusCode::from_u16(response.status_code as u16).expect("a status");
    let body: &[u8] = match &response.body {
        Some(Body::Text(text)) => text.as_bytes(),
        Some(Body::Binary(bytes)) => bytes,
        _ => b"",
    };
    let mut head = format!(
        "HTTP/1.1 {} {}\r\n",
        status.as_u16(),
        status.canonical_reason().unwrap_or("")
    );
    for (name, value) in &response.headers {
        head.push_str(&format!("{name}: {}\r\n", value.to_str().unwrap_or("")));
    }
    head.push_str(&format!("content-length: {}\r\n", body.len()));
    if close {
        head.push_str("connection: close\r\n");
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body).await?;
    stream.flush().await
}
