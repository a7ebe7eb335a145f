//! The playground: one page for the endpoint at `GET /` (HTML, CSS and plain JavaScript
//! embedded in the binary, nothing loaded from other hosts, under a strict
//! Content-Security-Policy). The page builds its form from `/playground/config.json`: the input
//! schema that the validation reads, the fields in the schema's order, which model types this
//! server can generate (and why not), and whether it needs an API key. It talks to the same
//! queue API as any client.

use std::sync::Arc;

use axum::Router;
use axum::http::{HeaderName, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use faceid_fal::{FIELDS, ModelType};
use serde::Serialize;
use serde_json::Value;

use crate::models::Models;

const INDEX_HTML: &str = include_str!("index.html");
const APP_JS: &str = include_str!("app.js");
const APP_CSS: &str = include_str!("app.css");

/// What the page is built from.
#[derive(Serialize)]
struct Config {
    /// The endpoint's app id.
    app: &'static str,
    /// The JSON Schema of the input.
    input: Value,
    /// The input fields, in the schema's order.
    fields: Vec<&'static str>,
    /// Every model type, and whether this server generates it.
    model_types: Vec<ModelTypeInfo>,
    /// Whether requests need `Authorization: Key ...`.
    auth_required: bool,
    /// Largest request body in bytes (a face file is sent inside it, as base64).
    max_body_bytes: usize,
    /// The base URL clients reach this server at, for the code snippets.
    public_url: String,
}

#[derive(Serialize)]
struct ModelTypeInfo {
    name: &'static str,
    available: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
}

/// The page's files and the configuration it reads.
pub struct Playground {
    config: String,
    security: Vec<(HeaderName, HeaderValue)>,
}

impl Playground {
    /// The playground of a server with `models`, reached at `public_url`.
    pub fn new(
        models: &Models,
        public_url: &str,
        auth_required: bool,
        max_body_bytes: usize,
    ) -> Self {
        let model_types = ModelType::ALL
            .into_iter()
            .map(|m| {
                let availability = models.availability(m);
                ModelTypeInfo {
                    name: m.name(),
                    available: availability.is_ok(),
                    reason: availability.err(),
                }
            })
            .collect();
        let config = Config {
            app: crate::routes::APP,
            input: faceid_fal::input_schema(),
            fields: FIELDS.iter().map(|f| f.name).collect(),
            model_types,
            auth_required,
            max_body_bytes,
            public_url: public_url.to_string(),
        };
        let config = serde_json::to_string(&config).expect("the configuration serializes");
        // Result images are served at the public URL, which may be another origin than the one
        // the page was loaded from (a proxy in front).
        let images = origin(public_url).unwrap_or_default();
        let csp = format!(
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob: {images}; \
             connect-src 'self'; form-action 'none'; base-uri 'none'; frame-ancestors 'none'"
        );
        let security = vec![
            (
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_str(&csp)
                    .unwrap_or(HeaderValue::from_static("default-src 'none'")),
            ),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
            (
                header::REFERRER_POLICY,
                HeaderValue::from_static("no-referrer"),
            ),
            (header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        ];
        Self { config, security }
    }

    fn respond(&self, content_type: &'static str, body: impl Into<axum::body::Body>) -> Response {
        let mut response = ([(header::CONTENT_TYPE, content_type)], body.into()).into_response();
        for (name, value) in &self.security {
            response.headers_mut().insert(name.clone(), value.clone());
        }
        response
    }

    /// The routes of the page: `/`, `/playground/app.js`, `/playground/app.css` and
    /// `/playground/config.json`.
    pub fn routes<S: Clone + Send + Sync + 'static>(self: Arc<Self>) -> Router<S> {
        let page = |content_type: &'static str, body: &'static str| {
            let this = self.clone();
            get(move || {
                let this = this.clone();
                async move { this.respond(content_type, body) }
            })
        };
        let config = {
            let this = self.clone();
            get(move || {
                let this = this.clone();
                async move { this.respond("application/json", this.config.clone()) }
            })
        };
        Router::new()
            .route("/", page("text/html; charset=utf-8", INDEX_HTML))
            .route(
                "/playground/app.js",
                page("text/javascript; charset=utf-8", APP_JS),
            )
            .route(
                "/playground/app.css",
                page("text/css; charset=utf-8", APP_CSS),
            )
            .route("/playground/config.json", config)
    }
}

/// `scheme://host[:port]` of a URL.
fn origin(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    let authority = rest.split(['/', '?', '#']).next()?;
    (!authority.is_empty()).then(|| format!("{scheme}://{authority}"))
}
