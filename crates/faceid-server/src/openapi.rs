//! The OpenAPI document, built from the route table the router is built from and from the
//! input table the validation reads.

use axum::routing::MethodRouter;
use serde_json::{Map, Value, json};

/// One route: how it is documented, and its handler.
pub struct Route<S> {
    /// `get`, `post` or `put`.
    pub method: &'static str,
    /// The path (axum syntax, `{id}` for parameters).
    pub path: String,
    /// What it does.
    pub summary: &'static str,
    /// Whether the body is the endpoint's input.
    pub takes_input: bool,
    /// Responses: status, description, whether the body is the endpoint's output.
    pub responses: &'static [(u16, &'static str, bool)],
    /// The handler.
    pub handler: MethodRouter<S>,
}

/// The OpenAPI 3.1 document of these routes.
pub fn document<S>(routes: &[Route<S>]) -> Value {
    let mut paths = Map::new();
    for route in routes {
        let mut responses = Map::new();
        for (status, description, output) in route.responses {
            let mut response = json!({"description": description});
            if *output {
                response["content"] = json!({"application/json": {"schema": {"$ref": "#/components/schemas/Output"}}});
            }
            responses.insert(status.to_string(), response);
        }
        let mut operation = json!({"summary": route.summary, "responses": responses});
        let parameters: Vec<Value> = route
            .path
            .split('/')
            .filter_map(|seg| seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
            .map(|name| json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"}}))
            .collect();
        if !parameters.is_empty() {
            operation["parameters"] = Value::Array(parameters);
        }
        if route.takes_input {
            operation["requestBody"] = json!({
                "required": true,
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Input"}}},
            });
        }
        let entry = paths.entry(route.path.clone()).or_insert_with(|| json!({}));
        entry[route.method] = operation;
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": crate::routes::APP,
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Self-hosted server for the API of fal's fal-ai/ip-adapter-face-id endpoint.",
        },
        "paths": paths,
        "components": {
            "schemas": {
                "Input": faceid_fal::input_schema(),
                "Output": faceid_fal::output_schema(),
            },
            "securitySchemes": {
                "key": {"type": "apiKey", "in": "header", "name": "Authorization", "description": "`Key <key>`, when the server has keys"},
            },
        },
        "security": [{"key": []}],
    })
}
