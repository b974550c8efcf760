//! AWS's service model of what the API serves, read from
//! `emulator/data/iot-api.json` (botocore's, vendored by `cargo xtask
//! aws-data`): which operation a request is (method and `requestUri`
//! template), where each input member is read from (`location`,
//! `locationName`, the payload member), what each value must be (the
//! shapes' types, enums, required members, lengths and ranges), how each
//! listing pages (the paginators) and which HTTP status each error has
//! (`error.httpStatusCode`). Nothing about an operation's shape is typed
//! here by hand.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use serde_json::{Map, Value};

use super::ApiError;

const MODEL_JSON: &str = include_str!("../../data/iot-api.json");

/// The model, parsed once.
pub(crate) fn model() -> &'static Model {
    static MODEL: OnceLock<Model> = OnceLock::new();
    MODEL.get_or_init(|| {
        // The file is generated and checked by `cargo xtask aws-data
        // --check`; a model that does not parse is a build defect.
        let doc: Value = serde_json::from_str(MODEL_JSON)
            .unwrap_or_else(|e| panic!("emulator/data/iot-api.json does not parse: {e}"));
        Model::from_document(&doc)
            .unwrap_or_else(|e| panic!("emulator/data/iot-api.json is not a service model: {e}"))
    })
}

/// One segment of a request URI template.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    Label(String),
    /// `{name+}`: the rest of the path.
    Greedy(String),
}

/// A `requestUri` template: path segments and literal query parameters.
#[derive(Debug, Clone)]
pub(crate) struct Template {
    segments: Vec<Segment>,
    query: Vec<(String, Option<String>)>,
}

impl Template {
    fn parse(uri: &str) -> Template {
        let (path, query) = uri.split_once('?').unwrap_or((uri, ""));
        let segments = path
            .split('/')
            .filter(|s| !s.is_empty())
            .map(
                |s| match s.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                    Some(label) => match label.strip_suffix('+') {
                        Some(greedy) => Segment::Greedy(greedy.to_owned()),
                        None => Segment::Label(label.to_owned()),
                    },
                    None => Segment::Literal(s.to_owned()),
                },
            )
            .collect();
        let query = query
            .split('&')
            .filter(|q| !q.is_empty())
            .map(|q| match q.split_once('=') {
                Some((k, v)) => (k.to_owned(), Some(v.to_owned())),
                None => (q.to_owned(), None),
            })
            .collect();
        Template { segments, query }
    }

    /// The labels when `path` (raw, percent-encoded segments) and `query`
    /// match.
    fn matches(
        &self,
        path: &[&str],
        query: &[(String, String)],
    ) -> Option<BTreeMap<String, String>> {
        let mut labels = BTreeMap::new();
        let mut i = 0;
        for seg in &self.segments {
            match seg {
                Segment::Literal(l) => {
                    if path.get(i).map(|p| decode(p)) != Some(l.clone()) {
                        return None;
                    }
                    i += 1;
                }
                Segment::Label(name) => {
                    let value = decode(path.get(i)?);
                    if value.is_empty() {
                        return None;
                    }
                    labels.insert(name.clone(), value);
                    i += 1;
                }
                Segment::Greedy(name) => {
                    if i >= path.len() {
                        return None;
                    }
                    let rest: Vec<String> = path[i..].iter().map(|p| decode(p)).collect();
                    labels.insert(name.clone(), rest.join("/"));
                    i = path.len();
                }
            }
        }
        if i != path.len() {
            return None;
        }
        let literal_query_matches = self.query.iter().all(|(k, v)| {
            query
                .iter()
                .any(|(qk, qv)| qk == k && v.as_ref().is_none_or(|v| v == qv))
        });
        literal_query_matches.then_some(labels)
    }

    /// More literal segments first: `/things/{thingName}/principals` wins
    /// over a template with a label in its place.
    fn specificity(&self) -> usize {
        self.segments
            .iter()
            .filter(|s| matches!(s, Segment::Literal(_)))
            .count()
            + self.query.len()
    }
}

fn decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
}

/// An operation the API implements.
#[derive(Debug, Clone)]
pub(crate) struct Operation {
    /// `iot` or `iot-data`.
    pub service: String,
    /// The operation's name, e.g. `DescribeCertificate`.
    pub name: String,
    method: String,
    template: Template,
    input: Option<String>,
    output: Option<String>,
    errors: Vec<String>,
    /// The success status (`http.responseCode`, 200 by default).
    pub status: u16,
}

/// How a listing pages, from botocore's paginators.
#[derive(Debug, Clone)]
pub(crate) struct Pager {
    /// The member carrying the token in (`marker`, `nextToken`).
    pub input_token: String,
    /// The member carrying the token out (`nextMarker`, `nextToken`).
    pub output_token: String,
    /// The page size member (`pageSize`, `maxResults`).
    pub limit_key: Option<String>,
    /// The list paged (`certificates`, `things`, ...).
    pub result_key: String,
    /// The largest page size the model allows.
    pub max: usize,
}

/// A request's operation, or why it has none.
#[derive(Debug)]
pub(crate) enum Route<'m> {
    /// An implemented operation and its URI labels (decoded).
    Operation(&'m Operation, BTreeMap<String, String>),
    /// An operation of AWS IoT (or IoT data) the API does not implement.
    NotImplemented {
        /// Its service.
        service: String,
        /// Its name.
        name: String,
    },
    /// No operation of either service has this method and path.
    Unknown,
}

#[derive(Debug)]
struct Service {
    shapes: Map<String, Value>,
    paginators: Map<String, Value>,
}

/// The operations, shapes and paginators of the vendored model.
#[derive(Debug)]
pub(crate) struct Model {
    operations: Vec<Operation>,
    others: Vec<(String, String, String, Template)>,
    services: BTreeMap<String, Service>,
    /// botocore's version the model came from.
    pub source: String,
}

/// A request's input: its members by name, and the raw payload member.
#[derive(Debug, Clone, Default)]
pub(crate) struct Input {
    /// Members read from the URI, query string, headers and JSON body.
    pub members: Map<String, Value>,
    /// The body of an operation whose input has a blob payload member
    /// (iot-data `Publish`).
    pub payload: Option<Vec<u8>>,
}

/// What the response is made of.
#[derive(Debug)]
pub(crate) struct Encoded {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

fn str_at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    let mut v = v;
    for p in path {
        v = v.get(p)?;
    }
    v.as_str()
}

impl Model {
    fn from_document(doc: &Value) -> Result<Model, String> {
        let services_doc = doc
            .get("services")
            .and_then(Value::as_object)
            .ok_or("no services")?;
        let mut operations = Vec::new();
        let mut others = Vec::new();
        let mut services = BTreeMap::new();
        for (service, s) in services_doc {
            for (name, op) in s
                .get("operations")
                .and_then(Value::as_object)
                .ok_or("no operations")?
            {
                let method = str_at(op, &["http", "method"]).ok_or("no method")?;
                let uri = str_at(op, &["http", "requestUri"]).ok_or("no requestUri")?;
                operations.push(Operation {
                    service: service.clone(),
                    name: name.clone(),
                    method: method.to_owned(),
                    template: Template::parse(uri),
                    input: str_at(op, &["input", "shape"]).map(str::to_owned),
                    output: str_at(op, &["output", "shape"]).map(str::to_owned),
                    errors: op
                        .get("errors")
                        .and_then(Value::as_array)
                        .map(|e| {
                            e.iter()
                                .filter_map(|e| str_at(e, &["shape"]).map(str::to_owned))
                                .collect()
                        })
                        .unwrap_or_default(),
                    status: op
                        .pointer("/http/responseCode")
                        .and_then(Value::as_u64)
                        .and_then(|c| u16::try_from(c).ok())
                        .unwrap_or(200),
                });
            }
            for (name, op) in s
                .get("otherOperations")
                .and_then(Value::as_object)
                .ok_or("no otherOperations")?
            {
                let method = str_at(op, &["method"]).ok_or("no method")?;
                let uri = str_at(op, &["requestUri"]).ok_or("no requestUri")?;
                others.push((
                    service.clone(),
                    name.clone(),
                    method.to_owned(),
                    Template::parse(uri),
                ));
            }
            let obj = |key: &str| {
                s.get(key)
                    .and_then(Value::as_object)
                    .cloned()
                    .unwrap_or_default()
            };
            services.insert(
                service.clone(),
                Service {
                    shapes: obj("shapes"),
                    paginators: obj("paginators"),
                },
            );
        }
        // The most specific template first.
        operations.sort_by_key(|o| std::cmp::Reverse(o.template.specificity()));
        others.sort_by_key(|o| std::cmp::Reverse(o.3.specificity()));
        Ok(Model {
            operations,
            others,
            services,
            source: doc
                .get("source")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
        })
    }

    /// The implemented operations.
    #[cfg(test)]
    pub fn operations(&self) -> impl Iterator<Item = &Operation> {
        self.operations.iter()
    }

    /// Which operation `method` `path` `query` is.
    pub fn route(&self, method: &str, path: &str, query: &[(String, String)]) -> Route<'_> {
        let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        for op in &self.operations {
            if op.method == method
                && let Some(labels) = op.template.matches(&segments, query)
            {
                return Route::Operation(op, labels);
            }
        }
        for (service, name, m, template) in &self.others {
            if m == method && template.matches(&segments, query).is_some() {
                return Route::NotImplemented {
                    service: service.clone(),
                    name: name.clone(),
                };
            }
        }
        Route::Unknown
    }

    fn shape(&self, service: &str, name: &str) -> Option<&Value> {
        self.services.get(service)?.shapes.get(name)
    }

    /// The HTTP status of error `code` (its shape's `error.httpStatusCode`;
    /// 400 for an error the model does not have, 404 for an unknown
    /// operation).
    pub fn error_status(&self, service: &str, code: &str) -> u16 {
        if code == super::UNKNOWN_OPERATION {
            return 404;
        }
        self.shape(service, code)
            .and_then(|s| s.pointer("/error/httpStatusCode"))
            .and_then(Value::as_u64)
            .and_then(|c| u16::try_from(c).ok())
            .unwrap_or(400)
    }

    /// Whether `op` may return error `code` (listed in its `errors`).
    pub fn declares_error(&self, op: &Operation, code: &str) -> bool {
        op.errors.iter().any(|e| e == code)
    }

    /// How `op` pages, if it is a listing.
    pub fn pager(&self, op: &Operation) -> Option<Pager> {
        let p = self.services.get(&op.service)?.paginators.get(&op.name)?;
        let first = |v: &Value| match v {
            Value::Array(a) => a.first().and_then(Value::as_str).map(str::to_owned),
            other => other.as_str().map(str::to_owned),
        };
        let limit_key = p
            .get("limit_key")
            .and_then(Value::as_str)
            .map(str::to_owned);
        let max = limit_key
            .as_ref()
            .and_then(|k| {
                let input = self.shape(&op.service, op.input.as_deref()?)?;
                let member = input.get("members")?.get(k)?;
                let shape = self.shape(&op.service, member.get("shape")?.as_str()?)?;
                shape.get("max")?.as_u64()
            })
            .and_then(|m| usize::try_from(m).ok())
            .unwrap_or(250);
        Some(Pager {
            input_token: first(p.get("input_token")?)?,
            output_token: first(p.get("output_token")?)?,
            limit_key,
            result_key: first(p.get("result_key")?)?,
            max,
        })
    }

    /// Reads `op`'s input from the request: each member from where its
    /// `location` says, typed by its shape, then validated.
    ///
    /// # Errors
    /// `InvalidRequestException` naming the member that is missing, of the
    /// wrong type or out of its shape's bounds, or a body that is not JSON.
    pub fn decode(
        &self,
        op: &Operation,
        labels: &BTreeMap<String, String>,
        query: &[(String, String)],
        headers: &[(String, String)],
        body: &[u8],
    ) -> Result<Input, ApiError> {
        let mut input = Input::default();
        let Some(shape_name) = &op.input else {
            return Ok(input);
        };
        let shape = self
            .shape(&op.service, shape_name)
            .ok_or_else(|| ApiError::internal(format!("no shape {shape_name}")))?;
        let payload_member = shape.get("payload").and_then(Value::as_str);
        let mut body_json: Option<Map<String, Value>> = None;
        let has_body_members = shape
            .get("members")
            .and_then(Value::as_object)
            .is_some_and(|m| {
                m.iter().any(|(name, member)| {
                    member.get("location").is_none() && Some(name.as_str()) != payload_member
                })
            });
        if has_body_members && payload_member.is_none() && !body.is_empty() {
            let v: Value = serde_json::from_slice(body)
                .map_err(|e| ApiError::invalid(format!("the request body is not JSON: {e}")))?;
            match v {
                Value::Object(m) => body_json = Some(m),
                _ => return Err(ApiError::invalid("the request body is not a JSON object")),
            }
        }
        let members = shape
            .get("members")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        for (name, member) in &members {
            let target = member.get("shape").and_then(Value::as_str).unwrap_or("");
            let target_shape = self
                .shape(&op.service, target)
                .cloned()
                .unwrap_or(Value::Null);
            let location_name = member
                .get("locationName")
                .and_then(Value::as_str)
                .unwrap_or(name);
            let text = |s: &str| self.scalar_from_text(&target_shape, s, location_name);
            let value = match member.get("location").and_then(Value::as_str) {
                Some("uri") => labels.get(location_name).map(|s| text(s)).transpose()?,
                Some("querystring") => {
                    let values: Vec<&String> = query
                        .iter()
                        .filter(|(k, _)| k == location_name)
                        .map(|(_, v)| v)
                        .collect();
                    if target_shape.get("type").and_then(Value::as_str) == Some("list") {
                        let item = target_shape
                            .pointer("/member/shape")
                            .and_then(Value::as_str)
                            .and_then(|s| self.shape(&op.service, s))
                            .cloned()
                            .unwrap_or(Value::Null);
                        (!values.is_empty())
                            .then(|| {
                                values
                                    .iter()
                                    .map(|v| self.scalar_from_text(&item, v, location_name))
                                    .collect::<Result<Vec<_>, _>>()
                                    .map(Value::Array)
                            })
                            .transpose()?
                    } else {
                        values.first().map(|s| text(s)).transpose()?
                    }
                }
                Some("header") => headers
                    .iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case(location_name))
                    .map(|(_, v)| text(v))
                    .transpose()?,
                Some(_) => None,
                None if Some(name.as_str()) == payload_member => {
                    input.payload = Some(body.to_vec());
                    None
                }
                None => body_json.as_mut().and_then(|b| b.remove(name)),
            };
            if let Some(v) = value {
                input.members.insert(name.clone(), v);
            }
        }
        if let Some(rest) = body_json
            && let Some(extra) = rest.keys().next()
        {
            return Err(ApiError::invalid(format!(
                "{} has no member {extra}",
                op.name
            )));
        }
        self.validate(
            &op.service,
            shape_name,
            &Value::Object(input.members.clone()),
            shape_name,
        )
        .map_err(ApiError::invalid)?;
        Ok(input)
    }

    fn scalar_from_text(&self, shape: &Value, s: &str, name: &str) -> Result<Value, ApiError> {
        let bad = |what: &str| ApiError::invalid(format!("{name}: {s:?} is not {what}"));
        Ok(match shape.get("type").and_then(Value::as_str) {
            Some("integer" | "long") => {
                Value::from(s.parse::<i64>().map_err(|_| bad("an integer"))?)
            }
            Some("boolean") => match s {
                "true" => Value::Bool(true),
                "false" => Value::Bool(false),
                _ => return Err(bad("true or false")),
            },
            Some("timestamp") => Value::from(s.parse::<f64>().map_err(|_| bad("a timestamp"))?),
            _ => Value::String(s.to_owned()),
        })
    }

    /// Checks `value` against shape `shape_name`: types, required members,
    /// enums, lengths and ranges.
    ///
    /// # Errors
    /// What is wrong and where (`path`).
    pub fn validate(
        &self,
        service: &str,
        shape_name: &str,
        value: &Value,
        path: &str,
    ) -> Result<(), String> {
        let shape = self
            .shape(service, shape_name)
            .ok_or_else(|| format!("{path}: the model has no shape {shape_name}"))?;
        let kind = shape.get("type").and_then(Value::as_str).unwrap_or("");
        let bound = |key: &str| shape.get(key).and_then(Value::as_f64);
        let within = |n: f64, what: &str| -> Result<(), String> {
            if let Some(min) = bound("min")
                && n < min
            {
                return Err(format!("{path}: {what} {n} is below the minimum {min}"));
            }
            if let Some(max) = bound("max")
                && n > max
            {
                return Err(format!("{path}: {what} {n} is above the maximum {max}"));
            }
            Ok(())
        };
        match kind {
            "structure" => {
                let obj = value
                    .as_object()
                    .ok_or_else(|| format!("{path}: expected an object"))?;
                let members = shape
                    .get("members")
                    .and_then(Value::as_object)
                    .cloned()
                    .unwrap_or_default();
                for required in shape
                    .get("required")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                {
                    if obj.get(required).is_none_or(Value::is_null)
                        && shape.get("payload").and_then(Value::as_str) != Some(required)
                    {
                        return Err(format!("{path}: {required} is required"));
                    }
                }
                for (k, v) in obj {
                    if v.is_null() {
                        continue;
                    }
                    let member = members
                        .get(k)
                        .ok_or_else(|| format!("{path}: {shape_name} has no member {k}"))?;
                    let target = member.get("shape").and_then(Value::as_str).unwrap_or("");
                    self.validate(service, target, v, &format!("{path}.{k}"))?;
                }
                Ok(())
            }
            "list" => {
                let items = value
                    .as_array()
                    .ok_or_else(|| format!("{path}: expected a list"))?;
                within(items.len() as f64, "length")?;
                let item = shape
                    .pointer("/member/shape")
                    .and_then(Value::as_str)
                    .unwrap_or("");
                for (i, v) in items.iter().enumerate() {
                    self.validate(service, item, v, &format!("{path}[{i}]"))?;
                }
                Ok(())
            }
            "map" => {
                let obj = value
                    .as_object()
                    .ok_or_else(|| format!("{path}: expected a map"))?;
                let key = shape
                    .pointer("/key/shape")
                    .and_then(Value::as_str)
                    .unwrap_or("");
                let val = shape
                    .pointer("/value/shape")
                    .and_then(Value::as_str)
                    .unwrap_or("");
                for (k, v) in obj {
                    self.validate(
                        service,
                        key,
                        &Value::String(k.clone()),
                        &format!("{path} key"),
                    )?;
                    self.validate(service, val, v, &format!("{path}.{k}"))?;
                }
                Ok(())
            }
            "string" => {
                let s = value
                    .as_str()
                    .ok_or_else(|| format!("{path}: expected a string"))?;
                within(s.chars().count() as f64, "length")?;
                if let Some(allowed) = shape.get("enum").and_then(Value::as_array)
                    && !allowed.iter().any(|a| a.as_str() == Some(s))
                {
                    let names: Vec<&str> = allowed.iter().filter_map(Value::as_str).collect();
                    return Err(format!("{path}: {s:?} is not one of {}", names.join(", ")));
                }
                Ok(())
            }
            "integer" | "long" => {
                let n = value
                    .as_i64()
                    .ok_or_else(|| format!("{path}: expected an integer"))?;
                within(n as f64, "value")
            }
            "boolean" => value
                .as_bool()
                .map(|_| ())
                .ok_or_else(|| format!("{path}: expected true or false")),
            "timestamp" => value
                .as_f64()
                .map(|_| ())
                .ok_or_else(|| format!("{path}: expected a timestamp (seconds since the epoch)")),
            // a blob outside a payload: base64 text
            "blob" => value
                .as_str()
                .map(|_| ())
                .ok_or_else(|| format!("{path}: expected base64 text")),
            other => Err(format!("{path}: shape type {other} is not served")),
        }
    }

    /// Writes `op`'s output: checked against its shape, header members as
    /// headers, the rest as the JSON body.
    ///
    /// # Errors
    /// `InternalFailureException` when the output does not fit the model
    /// (a defect of the emulator, said as such).
    pub fn encode(&self, op: &Operation, output: Value) -> Result<Encoded, ApiError> {
        let mut headers = Vec::new();
        let Some(shape_name) = &op.output else {
            return Ok(Encoded {
                status: op.status,
                headers,
                body: Vec::new(),
            });
        };
        let mut output = match output {
            Value::Object(m) => m,
            Value::Null => Map::new(),
            _ => return Err(ApiError::internal("an output that is not an object")),
        };
        output.retain(|_, v| !v.is_null());
        self.validate(
            &op.service,
            shape_name,
            &Value::Object(output.clone()),
            shape_name,
        )
        .map_err(|e| ApiError::internal(format!("the emulator's answer breaks the model: {e}")))?;
        let shape = self
            .shape(&op.service, shape_name)
            .ok_or_else(|| ApiError::internal(format!("no shape {shape_name}")))?;
        let members = shape
            .get("members")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        let mut status = op.status;
        let mut body = Map::new();
        for (name, v) in output {
            let member = &members[&name];
            let location_name = member
                .get("locationName")
                .and_then(Value::as_str)
                .unwrap_or(&name)
                .to_owned();
            match member.get("location").and_then(Value::as_str) {
                Some("header") => headers.push((
                    location_name,
                    v.as_str().map_or_else(|| v.to_string(), str::to_owned),
                )),
                Some("statusCode") => {
                    status = v
                        .as_u64()
                        .and_then(|c| u16::try_from(c).ok())
                        .unwrap_or(status);
                }
                _ => {
                    body.insert(location_name, v);
                }
            }
        }
        Ok(Encoded {
            status,
            headers,
            body: serde_json::to_vec(&Value::Object(body)).unwrap_or_default(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn requests_route_to_the_operation_of_their_method_and_uri_template() {
        let m = model();
        let name = |method: &str, path: &str| match m.route(method, path, &[]) {
            Route::Operation(op, labels) => format!("{} {labels:?}", op.name),
            Route::NotImplemented { name, .. } => format!("not implemented {name}"),
            Route::Unknown => "unknown".to_owned(),
        };
        assert_eq!(name("GET", "/certificates"), "ListCertificates {}");
        assert_eq!(
            name("GET", "/certificates/abc"),
            "DescribeCertificate {\"certificateId\": \"abc\"}"
        );
        assert_eq!(
            name("GET", "/things/t-1/principals"),
            "ListThingPrincipals {\"thingName\": \"t-1\"}"
        );
        assert_eq!(
            name(
                "POST",
                "/attached-policies/arn%3Aaws%3Aiot%3Aus-east-1%3A1%3Acert%2Fab"
            ),
            "ListAttachedPolicies {\"target\": \"arn:aws:iot:us-east-1:1:cert/ab\"}"
        );
        assert_eq!(
            name("POST", "/topics/a%2Fb"),
            "Publish {\"topic\": \"a/b\"}"
        );
        assert_eq!(name("GET", "/rules"), "not implemented ListTopicRules");
        assert_eq!(name("GET", "/no-such-thing/at/all"), "unknown");
        assert_eq!(name("PATCH", "/certificates"), "unknown");
    }

    #[test]
    fn no_two_operations_share_a_method_and_template() {
        let m = model();
        let mut seen = std::collections::BTreeSet::new();
        for op in m.operations() {
            let key = (op.method.clone(), format!("{:?}", op.template.segments));
            assert!(seen.insert(key), "{} collides", op.name);
        }
    }

    #[test]
    fn input_members_are_read_from_where_the_model_puts_them_and_validated() {
        let m = model();
        let id = "ab".repeat(32);
        let Route::Operation(op, labels) = m.route("PUT", &format!("/certificates/{id}"), &[])
        else {
            panic!("UpdateCertificate");
        };
        let input = m
            .decode(op, &labels, &q(&[("newStatus", "REVOKED")]), &[], b"")
            .unwrap();
        assert_eq!(input.members["certificateId"], id.as_str());
        let short = m
            .decode(
                op,
                &[("certificateId".to_owned(), "abc".to_owned())].into(),
                &q(&[("newStatus", "ACTIVE")]),
                &[],
                b"",
            )
            .unwrap_err();
        assert!(
            short.message.contains("below the minimum 64"),
            "{}",
            short.message
        );
        assert_eq!(input.members["newStatus"], "REVOKED");
        let bad = m
            .decode(op, &labels, &q(&[("newStatus", "GONE")]), &[], b"")
            .unwrap_err();
        assert_eq!(bad.code, "InvalidRequestException");
        assert!(
            bad.message.contains("\"GONE\" is not one of ACTIVE"),
            "{}",
            bad.message
        );
        let missing = m.decode(op, &labels, &[], &[], b"").unwrap_err();
        assert!(
            missing.message.contains("newStatus is required"),
            "{}",
            missing.message
        );

        let Route::Operation(op, labels) = m.route("GET", "/certificates", &[]) else {
            panic!("ListCertificates");
        };
        let too_big = m
            .decode(op, &labels, &q(&[("pageSize", "100000")]), &[], b"")
            .unwrap_err();
        assert!(
            too_big.message.contains("above the maximum"),
            "{}",
            too_big.message
        );
        let not_a_number = m
            .decode(op, &labels, &q(&[("pageSize", "ten")]), &[], b"")
            .unwrap_err();
        assert!(
            not_a_number.message.contains("not an integer"),
            "{}",
            not_a_number.message
        );

        let Route::Operation(op, labels) = m.route("POST", "/certificates", &[]) else {
            panic!("CreateCertificateFromCsr");
        };
        let not_json = m.decode(op, &labels, &[], &[], b"{").unwrap_err();
        assert!(
            not_json.message.contains("not JSON"),
            "{}",
            not_json.message
        );
        let extra = m
            .decode(
                op,
                &labels,
                &[],
                &[],
                br#"{"certificateSigningRequest":"x","bogus":1}"#,
            )
            .unwrap_err();
        assert!(
            extra.message.contains("no member bogus"),
            "{}",
            extra.message
        );
    }

    #[test]
    fn outputs_that_break_the_model_are_refused_not_sent() {
        let m = model();
        let Route::Operation(op, _) = m.route("GET", "/registrationcode", &[]) else {
            panic!("GetRegistrationCode");
        };
        let ok = m
            .encode(op, serde_json::json!({"registrationCode": "a".repeat(64)}))
            .unwrap();
        assert_eq!(ok.status, 200);
        let bad = m.encode(op, serde_json::json!({"code": 1})).unwrap_err();
        assert_eq!(bad.code, "InternalFailureException");
    }

    #[test]
    fn error_statuses_come_from_the_error_shapes() {
        let m = model();
        assert_eq!(m.error_status("iot", "ResourceNotFoundException"), 404);
        assert_eq!(m.error_status("iot", "DeleteConflictException"), 409);
        assert_eq!(m.error_status("iot", "InvalidRequestException"), 400);
        assert_eq!(m.error_status("iot", "ThrottlingException"), 400);
        assert_eq!(m.error_status("iot", "InternalFailureException"), 500);
    }

    #[test]
    fn listings_page_as_botocore_says() {
        let m = model();
        let Route::Operation(op, _) = m.route("GET", "/certificates", &[]) else {
            panic!("ListCertificates");
        };
        let p = m.pager(op).unwrap();
        assert_eq!(
            (
                p.input_token.as_str(),
                p.output_token.as_str(),
                p.result_key.as_str()
            ),
            ("marker", "nextMarker", "certificates")
        );
        assert_eq!(p.limit_key.as_deref(), Some("pageSize"));
        assert_eq!(p.max, 250);
    }
}
