//! The subset of AWS IoT SQL (version 2016-03-23) that fleetcert's topic
//! rules use, parsed and evaluated.
//!
//! The subset:
//!
//! ```text
//! statement := SELECT item ("," item)* FROM '<topic filter>' [WHERE expr]
//! item      := "*" | operand [AS alias]
//! operand   := clientid() | principal() | topic() | topic(n) | timestamp()
//!            | field ("." field)* | 'string' | number | true | false | null
//! expr      := or ;  or := and (OR and)* ;  and := not (AND not)*
//! not       := NOT not | cmp ;  cmp := primary [("=" | "<>" | "!=" | "<" | "<=" | ">" | ">=") primary]
//! primary   := operand | "(" expr ")"
//! ```
//!
//! Keywords and function names are case-insensitive; field names and
//! aliases are case-sensitive. Anything else (other functions, `CASE`,
//! arithmetic, quoted identifiers, escapes inside strings, ...) is a
//! [`SqlError`] naming the byte offset: a statement outside the subset is
//! never evaluated with guessed semantics. For the same reason a function
//! call or a literal in the `SELECT` list needs an `AS alias` (the output
//! key AWS IoT invents for an unaliased expression is not documented);
//! a field reference without an alias is output under its last segment
//! (`SELECT state.color` gives `{"color": ...}`), as AWS IoT does.
//!
//! Evaluation follows IoT SQL's *undefined* value: a missing field, a
//! `topic(n)` beyond the topic's levels, or a comparison of values of
//! different types is undefined; an undefined `SELECT` item is omitted from
//! the output and a `WHERE` that is not `true` drops the message.

use std::cmp::Ordering;
use std::fmt;

use serde_json::{Map, Number, Value};

use crate::topic;

/// Deepest nesting of parentheses and `NOT` the parser accepts (keeps a
/// hostile statement from exhausting the stack).
pub const MAX_NESTING: usize = 64;

/// Longest statement accepted, in bytes.
pub const MAX_STATEMENT_BYTES: usize = 16 * 1024;

/// Why a statement is not in the supported IoT SQL subset. Every variant
/// names the byte offset in the statement where the problem starts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SqlError {
    /// A token other than the one the grammar allows here.
    #[error("at byte {offset}: expected {expected}, found {found}")]
    Unexpected {
        /// Byte offset of the offending token.
        offset: usize,
        /// What the grammar allows here.
        expected: &'static str,
        /// What was found, as written (or "end of statement").
        found: String,
    },
    /// A character that starts no token of the subset.
    #[error("at byte {offset}: unexpected character {found:?}")]
    InvalidCharacter {
        /// Byte offset of the character.
        offset: usize,
        /// The character.
        found: char,
    },
    /// A string literal without its closing quote.
    #[error("at byte {offset}: string literal is not closed")]
    UnterminatedString {
        /// Byte offset of the opening quote.
        offset: usize,
    },
    /// A quote or backslash escape inside a string literal.
    #[error("at byte {offset}: escapes in string literals are not supported")]
    UnsupportedEscape {
        /// Byte offset of the escape.
        offset: usize,
    },
    /// A number that is not a valid JSON number.
    #[error("at byte {offset}: invalid number {text:?}")]
    InvalidNumber {
        /// Byte offset of the number.
        offset: usize,
        /// The number as written.
        text: String,
    },
    /// A function outside the subset.
    #[error(
        "at byte {offset}: unsupported function {name}(), expected clientid(), principal(), topic(), topic(n) or timestamp()"
    )]
    UnsupportedFunction {
        /// Byte offset of the function name.
        offset: usize,
        /// The function name as written.
        name: String,
    },
    /// `topic(n)` with `n` not an integer ≥ 1.
    #[error("at byte {offset}: topic(n) needs an integer level n >= 1, found {found}")]
    InvalidTopicLevel {
        /// Byte offset of the argument.
        offset: usize,
        /// The argument as written.
        found: String,
    },
    /// A function call or literal in the `SELECT` list without `AS alias`.
    #[error("at byte {offset}: {item} needs an alias (`{item} AS name`)")]
    MissingAlias {
        /// Byte offset of the item.
        offset: usize,
        /// The item, as displayed.
        item: String,
    },
    /// The `FROM` topic filter is not a valid topic filter.
    #[error("at byte {offset}: invalid FROM topic filter: {source}")]
    InvalidFromFilter {
        /// Byte offset of the filter's string literal.
        offset: usize,
        /// Why the filter is invalid.
        source: topic::TopicError,
    },
    /// Parentheses or `NOT` nested deeper than [`MAX_NESTING`].
    #[error("at byte {offset}: expression nested deeper than {max} levels")]
    TooDeep {
        /// Byte offset where the limit was reached.
        offset: usize,
        /// The limit.
        max: usize,
    },
    /// The statement is longer than [`MAX_STATEMENT_BYTES`].
    #[error("at byte {offset}: statement longer than {max} bytes")]
    TooLong {
        /// Byte offset of the first byte past the limit.
        offset: usize,
        /// The limit.
        max: usize,
    },
}

impl SqlError {
    /// Byte offset in the statement where the problem starts.
    pub fn offset(&self) -> usize {
        match self {
            SqlError::Unexpected { offset, .. }
            | SqlError::InvalidCharacter { offset, .. }
            | SqlError::UnterminatedString { offset }
            | SqlError::UnsupportedEscape { offset }
            | SqlError::InvalidNumber { offset, .. }
            | SqlError::UnsupportedFunction { offset, .. }
            | SqlError::InvalidTopicLevel { offset, .. }
            | SqlError::MissingAlias { offset, .. }
            | SqlError::InvalidFromFilter { offset, .. }
            | SqlError::TooDeep { offset, .. }
            | SqlError::TooLong { offset, .. } => *offset,
        }
    }
}

/// Why a parsed statement could not be evaluated on a message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EvalError {
    /// `SELECT *` merges the payload's top-level fields, so the payload
    /// must be a JSON object.
    #[error("SELECT * needs a json object payload, found {found}")]
    PayloadNotObject {
        /// The JSON type of the payload.
        found: &'static str,
    },
}

/// The message a statement is evaluated on.
#[derive(Debug, Clone, Copy)]
pub struct MessageContext<'a> {
    /// The topic the message was published on.
    pub topic: &'a str,
    /// The parsed JSON payload.
    pub payload: &'a Value,
    /// MQTT client id of the publisher (`clientid()`).
    pub client_id: &'a str,
    /// Id of the certificate the publisher connected with (`principal()`).
    pub principal: &'a str,
    /// Time the broker received the message, ms since the epoch (`timestamp()`).
    pub timestamp_ms: i64,
}

/// A built-in function of the subset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Builtin {
    /// `clientid()`: the publisher's MQTT client id.
    ClientId,
    /// `principal()`: the certificate id the publisher connected with.
    Principal,
    /// `topic()` (whole topic) or `topic(n)` (1-based level `n`).
    Topic(Option<u32>),
    /// `timestamp()`: the receive time in ms since the epoch.
    Timestamp,
}

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CompareOp {
    /// `=`
    Eq,
    /// `<>` (also written `!=`)
    Ne,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
}

impl CompareOp {
    fn as_str(self) -> &'static str {
        match self {
            CompareOp::Eq => "=",
            CompareOp::Ne => "<>",
            CompareOp::Lt => "<",
            CompareOp::Le => "<=",
            CompareOp::Gt => ">",
            CompareOp::Ge => ">=",
        }
    }
}

/// An expression of the subset.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    /// A string, number, boolean or null literal.
    Literal(Value),
    /// A payload field path: `a` is `["a"]`, `a.b` is `["a", "b"]`.
    Field(Vec<String>),
    /// A built-in function call.
    Call(Builtin),
    /// `left op right`.
    Compare {
        /// Left operand.
        left: Box<Expr>,
        /// The operator.
        op: CompareOp,
        /// Right operand.
        right: Box<Expr>,
    },
    /// `left AND right`.
    And(Box<Expr>, Box<Expr>),
    /// `left OR right`.
    Or(Box<Expr>, Box<Expr>),
    /// `NOT operand`.
    Not(Box<Expr>),
}

/// One item of the `SELECT` list.
#[derive(Debug, Clone, PartialEq)]
pub enum SelectItem {
    /// `*`: the payload's top-level fields.
    Wildcard,
    /// An operand, output under `alias` (or a field's last segment).
    Expr {
        /// The operand (a literal, field or function call).
        expr: Expr,
        /// The `AS` alias, if any.
        alias: Option<String>,
    },
}

impl SelectItem {
    /// The output key of a non-wildcard item: its alias, else the last
    /// segment of a field reference.
    pub fn output_name(&self) -> Option<&str> {
        match self {
            SelectItem::Wildcard => None,
            SelectItem::Expr { alias: Some(a), .. } => Some(a),
            SelectItem::Expr {
                expr: Expr::Field(path),
                alias: None,
            } => path.last().map(String::as_str),
            SelectItem::Expr { .. } => None,
        }
    }
}

/// A parsed IoT SQL statement of the subset.
#[derive(Debug, Clone, PartialEq)]
pub struct Statement {
    select: Vec<SelectItem>,
    from: String,
    where_clause: Option<Expr>,
}

/// Parses a statement of the IoT SQL subset described in the module docs.
pub fn parse(sql: &str) -> Result<Statement, SqlError> {
    if sql.len() > MAX_STATEMENT_BYTES {
        return Err(SqlError::TooLong {
            offset: MAX_STATEMENT_BYTES,
            max: MAX_STATEMENT_BYTES,
        });
    }
    let tokens = tokenize(sql)?;
    let mut parser = Parser {
        tokens,
        pos: 0,
        end: sql.len(),
        depth: 0,
    };
    parser.statement()
}

impl Statement {
    /// The `SELECT` list, in statement order.
    pub fn select(&self) -> &[SelectItem] {
        &self.select
    }

    /// The `FROM` topic filter (validated with
    /// [`topic::validate_topic_filter`]).
    pub fn from_filter(&self) -> &str {
        &self.from
    }

    /// The `WHERE` condition, if any.
    pub fn where_clause(&self) -> Option<&Expr> {
        self.where_clause.as_ref()
    }

    /// Evaluates the statement on one message.
    ///
    /// Returns `Ok(None)` when the `FROM` filter does not match the topic or
    /// the `WHERE` condition is not `true` (false or undefined), otherwise
    /// the output JSON object.
    ///
    /// **Explicit items win over `*`**, whatever their order in the list:
    /// the payload's top-level fields are merged first, then each explicit
    /// item is written over them. An explicit item that is undefined (a
    /// missing field, `topic(n)` out of range) removes a `*` field of the
    /// same name rather than let it through. So a device cannot spoof
    /// `clientid`, `principal` or `topicClientId` by putting such a field in
    /// its payload.
    pub fn evaluate(&self, ctx: &MessageContext<'_>) -> Result<Option<Value>, EvalError> {
        if !topic::matches(&self.from, ctx.topic) {
            return Ok(None);
        }
        if let Some(cond) = &self.where_clause
            && eval(cond, ctx).as_bool() != Some(true)
        {
            return Ok(None);
        }
        let mut out = Map::new();
        if self
            .select
            .iter()
            .any(|i| matches!(i, SelectItem::Wildcard))
        {
            match ctx.payload {
                Value::Object(fields) => {
                    out.extend(fields.iter().map(|(k, v)| (k.clone(), v.clone())));
                }
                other => {
                    return Err(EvalError::PayloadNotObject {
                        found: json_type(other),
                    });
                }
            }
        }
        for item in &self.select {
            let SelectItem::Expr { expr, .. } = item else {
                continue;
            };
            let Some(name) = item.output_name() else {
                continue;
            };
            match eval(expr, ctx).into_value() {
                Some(v) => {
                    out.insert(name.to_owned(), v);
                }
                None => {
                    out.remove(name);
                }
            }
        }
        Ok(Some(Value::Object(out)))
    }
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

// ---------------------------------------------------------------- evaluation

/// A value during evaluation; borrows where it can.
enum Val<'a> {
    Undefined,
    Json(&'a Value),
    Str(&'a str),
    Int(i64),
    Bool(bool),
}

impl Val<'_> {
    fn into_value(self) -> Option<Value> {
        match self {
            Val::Undefined => None,
            Val::Json(v) => Some(v.clone()),
            Val::Str(s) => Some(Value::String(s.to_owned())),
            Val::Int(i) => Some(Value::Number(i.into())),
            Val::Bool(b) => Some(Value::Bool(b)),
        }
    }

    /// A boolean, from an operator or from the payload; anything else is
    /// not a boolean (IoT SQL does not coerce in `AND`/`OR`/`NOT`/`WHERE`).
    fn as_bool(&self) -> Option<bool> {
        match self {
            Val::Bool(b) | Val::Json(Value::Bool(b)) => Some(*b),
            _ => None,
        }
    }

    fn scalar(&self) -> Option<Scalar<'_>> {
        Some(match self {
            Val::Undefined => return None,
            Val::Str(s) => Scalar::Str(s),
            Val::Int(i) => Scalar::Num(Num::Int(i128::from(*i))),
            Val::Bool(b) => Scalar::Bool(*b),
            Val::Json(v) => match v {
                Value::Null => Scalar::Null,
                Value::Bool(b) => Scalar::Bool(*b),
                Value::Number(n) => Scalar::Num(Num::of(n)),
                Value::String(s) => Scalar::Str(s),
                other => Scalar::Composite(other),
            },
        })
    }
}

#[derive(Clone, Copy)]
enum Num {
    Int(i128),
    Float(f64),
}

impl Num {
    fn of(n: &Number) -> Num {
        if let Some(i) = n.as_i64() {
            Num::Int(i128::from(i))
        } else if let Some(u) = n.as_u64() {
            Num::Int(i128::from(u))
        } else {
            Num::Float(n.as_f64().unwrap_or(f64::NAN))
        }
    }

    fn cmp(self, other: Num) -> Option<Ordering> {
        match (self, other) {
            (Num::Int(a), Num::Int(b)) => Some(a.cmp(&b)),
            (a, b) => a.as_f64().partial_cmp(&b.as_f64()),
        }
    }

    fn as_f64(self) -> f64 {
        match self {
            Num::Int(i) => i as f64,
            Num::Float(f) => f,
        }
    }
}

enum Scalar<'a> {
    Null,
    Bool(bool),
    Num(Num),
    Str(&'a str),
    Composite(&'a Value),
}

/// Compares two defined values of the same type; `None` (undefined) for
/// values of different types, or ordering of types without an order.
fn compare(a: &Scalar<'_>, b: &Scalar<'_>, op: CompareOp) -> Option<bool> {
    let ordering = match (a, b) {
        (Scalar::Num(x), Scalar::Num(y)) => x.cmp(*y)?,
        (Scalar::Str(x), Scalar::Str(y)) => x.cmp(y),
        (Scalar::Bool(x), Scalar::Bool(y)) => x.cmp(y),
        (Scalar::Null, Scalar::Null) => Ordering::Equal,
        (Scalar::Composite(x), Scalar::Composite(y)) => {
            return match op {
                CompareOp::Eq => Some(x == y),
                CompareOp::Ne => Some(x != y),
                _ => None,
            };
        }
        _ => return None,
    };
    let ordered = matches!(a, Scalar::Num(_) | Scalar::Str(_));
    Some(match op {
        CompareOp::Eq => ordering == Ordering::Equal,
        CompareOp::Ne => ordering != Ordering::Equal,
        _ if !ordered => return None,
        CompareOp::Lt => ordering == Ordering::Less,
        CompareOp::Le => ordering != Ordering::Greater,
        CompareOp::Gt => ordering == Ordering::Greater,
        CompareOp::Ge => ordering != Ordering::Less,
    })
}

fn eval<'a>(expr: &'a Expr, ctx: &MessageContext<'a>) -> Val<'a> {
    match expr {
        Expr::Literal(v) => Val::Json(v),
        Expr::Field(path) => {
            let mut v = ctx.payload;
            for seg in path {
                match v.get(seg.as_str()) {
                    Some(inner) => v = inner,
                    None => return Val::Undefined,
                }
            }
            Val::Json(v)
        }
        Expr::Call(Builtin::ClientId) => Val::Str(ctx.client_id),
        Expr::Call(Builtin::Principal) => Val::Str(ctx.principal),
        Expr::Call(Builtin::Timestamp) => Val::Int(ctx.timestamp_ms),
        Expr::Call(Builtin::Topic(None)) => Val::Str(ctx.topic),
        Expr::Call(Builtin::Topic(Some(n))) => {
            let index = usize::try_from(*n).unwrap_or(usize::MAX).saturating_sub(1);
            match ctx.topic.split('/').nth(index) {
                Some(level) if *n >= 1 => Val::Str(level),
                _ => Val::Undefined,
            }
        }
        Expr::Compare { left, op, right } => {
            let (l, r) = (eval(left, ctx), eval(right, ctx));
            match (l.scalar(), r.scalar()) {
                (Some(a), Some(b)) => compare(&a, &b, *op).map_or(Val::Undefined, Val::Bool),
                _ => Val::Undefined,
            }
        }
        Expr::And(l, r) => match (eval(l, ctx).as_bool(), eval(r, ctx).as_bool()) {
            (Some(a), Some(b)) => Val::Bool(a && b),
            _ => Val::Undefined,
        },
        Expr::Or(l, r) => match (eval(l, ctx).as_bool(), eval(r, ctx).as_bool()) {
            (Some(a), Some(b)) => Val::Bool(a || b),
            _ => Val::Undefined,
        },
        Expr::Not(e) => eval(e, ctx)
            .as_bool()
            .map_or(Val::Undefined, |b| Val::Bool(!b)),
    }
}

// ---------------------------------------------------------------- tokenizer

#[derive(Debug, Clone, PartialEq)]
enum Tok<'a> {
    Ident(&'a str),
    Str(&'a str),
    Num(&'a str),
    Star,
    Comma,
    Dot,
    LParen,
    RParen,
    Minus,
    Op(CompareOp),
}

#[derive(Debug, Clone)]
struct Token<'a> {
    tok: Tok<'a>,
    offset: usize,
    text: &'a str,
}

fn tokenize(sql: &str) -> Result<Vec<Token<'_>>, SqlError> {
    let bytes = sql.as_bytes();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let start = i;
        let b = bytes[i];
        let tok = match b {
            b' ' | b'\t' | b'\r' | b'\n' => {
                i += 1;
                continue;
            }
            b'*' => {
                i += 1;
                Tok::Star
            }
            b',' => {
                i += 1;
                Tok::Comma
            }
            b'.' => {
                i += 1;
                Tok::Dot
            }
            b'(' => {
                i += 1;
                Tok::LParen
            }
            b')' => {
                i += 1;
                Tok::RParen
            }
            b'-' => {
                i += 1;
                Tok::Minus
            }
            b'=' => {
                i += 1;
                Tok::Op(CompareOp::Eq)
            }
            b'!' if bytes.get(i + 1) == Some(&b'=') => {
                i += 2;
                Tok::Op(CompareOp::Ne)
            }
            b'<' => match bytes.get(i + 1) {
                Some(b'>') => {
                    i += 2;
                    Tok::Op(CompareOp::Ne)
                }
                Some(b'=') => {
                    i += 2;
                    Tok::Op(CompareOp::Le)
                }
                _ => {
                    i += 1;
                    Tok::Op(CompareOp::Lt)
                }
            },
            b'>' => {
                if bytes.get(i + 1) == Some(&b'=') {
                    i += 2;
                    Tok::Op(CompareOp::Ge)
                } else {
                    i += 1;
                    Tok::Op(CompareOp::Gt)
                }
            }
            b'\'' => {
                i += 1;
                loop {
                    match bytes.get(i) {
                        None => return Err(SqlError::UnterminatedString { offset: start }),
                        Some(b'\'') if bytes.get(i + 1) == Some(&b'\'') => {
                            return Err(SqlError::UnsupportedEscape { offset: i });
                        }
                        Some(b'\'') => break,
                        Some(b'\\') => return Err(SqlError::UnsupportedEscape { offset: i }),
                        Some(_) => i += 1,
                    }
                }
                i += 1;
                Tok::Str(&sql[start + 1..i - 1])
            }
            b'0'..=b'9' => {
                while i < bytes.len()
                    && (bytes[i].is_ascii_alphanumeric()
                        || bytes[i] == b'.'
                        || ((bytes[i] == b'+' || bytes[i] == b'-')
                            && matches!(bytes[i - 1], b'e' | b'E')))
                {
                    i += 1;
                }
                Tok::Num(&sql[start..i])
            }
            b'a'..=b'z' | b'A'..=b'Z' | b'_' => {
                while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_') {
                    i += 1;
                }
                Tok::Ident(&sql[start..i])
            }
            _ => {
                let found = sql[start..].chars().next().unwrap_or('\u{FFFD}');
                return Err(SqlError::InvalidCharacter {
                    offset: start,
                    found,
                });
            }
        };
        tokens.push(Token {
            tok,
            offset: start,
            text: &sql[start..i],
        });
    }
    Ok(tokens)
}

// ---------------------------------------------------------------- parser

const RESERVED: [&str; 9] = [
    "select", "from", "where", "as", "and", "or", "not", "true", "false",
];

fn is_keyword(word: &str, keyword: &str) -> bool {
    word.eq_ignore_ascii_case(keyword)
}

fn is_reserved(word: &str) -> bool {
    RESERVED.iter().any(|k| word.eq_ignore_ascii_case(k)) || word.eq_ignore_ascii_case("null")
}

struct Parser<'a> {
    tokens: Vec<Token<'a>>,
    pos: usize,
    end: usize,
    depth: usize,
}

impl<'a> Parser<'a> {
    fn peek(&self) -> Option<&Token<'a>> {
        self.tokens.get(self.pos)
    }

    fn offset(&self) -> usize {
        self.peek().map_or(self.end, |t| t.offset)
    }

    fn unexpected<T>(&self, expected: &'static str) -> Result<T, SqlError> {
        Err(SqlError::Unexpected {
            offset: self.offset(),
            expected,
            found: self.peek().map_or_else(
                || "end of statement".to_owned(),
                |t| format!("`{}`", t.text),
            ),
        })
    }

    fn eat_keyword(&mut self, keyword: &str) -> bool {
        match self.peek() {
            Some(Token {
                tok: Tok::Ident(w), ..
            }) if is_keyword(w, keyword) => {
                self.pos += 1;
                true
            }
            _ => false,
        }
    }

    fn eat(&mut self, tok: &Tok<'_>) -> bool {
        if self.peek().is_some_and(|t| &t.tok == tok) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn statement(&mut self) -> Result<Statement, SqlError> {
        if !self.eat_keyword("select") {
            return self.unexpected("SELECT");
        }
        let mut select = vec![self.select_item()?];
        while self.eat(&Tok::Comma) {
            select.push(self.select_item()?);
        }
        if !self.eat_keyword("from") {
            return self.unexpected("`,` or FROM");
        }
        let from_offset = self.offset();
        let from = match self.peek() {
            Some(Token {
                tok: Tok::Str(s), ..
            }) => (*s).to_owned(),
            _ => return self.unexpected("a quoted topic filter"),
        };
        self.pos += 1;
        topic::validate_topic_filter(&from).map_err(|source| SqlError::InvalidFromFilter {
            offset: from_offset,
            source,
        })?;
        let where_clause = if self.eat_keyword("where") {
            Some(self.expr()?)
        } else {
            None
        };
        if self.peek().is_some() {
            return self.unexpected(if where_clause.is_some() {
                "an operator or end of statement"
            } else {
                "WHERE or end of statement"
            });
        }
        Ok(Statement {
            select,
            from,
            where_clause,
        })
    }

    fn select_item(&mut self) -> Result<SelectItem, SqlError> {
        if self.eat(&Tok::Star) {
            return Ok(SelectItem::Wildcard);
        }
        let offset = self.offset();
        let expr = self.operand()?;
        let alias = if self.eat_keyword("as") {
            match self.peek() {
                Some(Token {
                    tok: Tok::Ident(w), ..
                }) if !is_reserved(w) => {
                    let alias = (*w).to_owned();
                    self.pos += 1;
                    Some(alias)
                }
                _ => return self.unexpected("an alias name"),
            }
        } else {
            None
        };
        if alias.is_none() && !matches!(expr, Expr::Field(_)) {
            return Err(SqlError::MissingAlias {
                offset,
                item: expr.to_string(),
            });
        }
        Ok(SelectItem::Expr { expr, alias })
    }

    fn enter(&mut self) -> Result<(), SqlError> {
        self.depth += 1;
        if self.depth > MAX_NESTING {
            return Err(SqlError::TooDeep {
                offset: self.offset(),
                max: MAX_NESTING,
            });
        }
        Ok(())
    }

    fn expr(&mut self) -> Result<Expr, SqlError> {
        let mut left = self.and()?;
        while self.eat_keyword("or") {
            let right = self.and()?;
            left = Expr::Or(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Expr, SqlError> {
        let mut left = self.not()?;
        while self.eat_keyword("and") {
            let right = self.not()?;
            left = Expr::And(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn not(&mut self) -> Result<Expr, SqlError> {
        if self.eat_keyword("not") {
            self.enter()?;
            let inner = self.not()?;
            self.depth -= 1;
            return Ok(Expr::Not(Box::new(inner)));
        }
        self.comparison()
    }

    fn comparison(&mut self) -> Result<Expr, SqlError> {
        let left = self.primary()?;
        if let Some(Token {
            tok: Tok::Op(op), ..
        }) = self.peek()
        {
            let op = *op;
            self.pos += 1;
            let right = self.primary()?;
            return Ok(Expr::Compare {
                left: Box::new(left),
                op,
                right: Box::new(right),
            });
        }
        Ok(left)
    }

    fn primary(&mut self) -> Result<Expr, SqlError> {
        if self.eat(&Tok::LParen) {
            self.enter()?;
            let inner = self.expr()?;
            self.depth -= 1;
            if !self.eat(&Tok::RParen) {
                return self.unexpected("`)` or an operator");
            }
            return Ok(inner);
        }
        self.operand()
    }

    fn operand(&mut self) -> Result<Expr, SqlError> {
        let Some(token) = self.peek().cloned() else {
            return self.unexpected("a field, literal or function call");
        };
        match token.tok {
            Tok::Str(s) => {
                self.pos += 1;
                Ok(Expr::Literal(Value::String(s.to_owned())))
            }
            Tok::Num(_) => self.number(false),
            Tok::Minus => {
                self.pos += 1;
                match self.peek() {
                    Some(Token {
                        tok: Tok::Num(_), ..
                    }) => self.number(true),
                    _ => self.unexpected("a number after `-`"),
                }
            }
            Tok::Ident(w) => {
                self.pos += 1;
                if self.peek().is_some_and(|t| t.tok == Tok::LParen) {
                    self.pos += 1;
                    return self.call(w, token.offset);
                }
                if is_keyword(w, "true") {
                    return Ok(Expr::Literal(Value::Bool(true)));
                }
                if is_keyword(w, "false") {
                    return Ok(Expr::Literal(Value::Bool(false)));
                }
                if is_keyword(w, "null") {
                    return Ok(Expr::Literal(Value::Null));
                }
                if is_reserved(w) {
                    self.pos -= 1;
                    return self.unexpected("a field, literal or function call");
                }
                let mut path = vec![w.to_owned()];
                while self.eat(&Tok::Dot) {
                    match self.peek() {
                        Some(Token {
                            tok: Tok::Ident(seg),
                            ..
                        }) if !is_reserved(seg) => {
                            path.push((*seg).to_owned());
                            self.pos += 1;
                        }
                        _ => return self.unexpected("a field name after `.`"),
                    }
                }
                Ok(Expr::Field(path))
            }
            _ => self.unexpected("a field, literal or function call"),
        }
    }

    fn number(&mut self, negative: bool) -> Result<Expr, SqlError> {
        let Some(Token {
            tok: Tok::Num(text),
            offset,
            ..
        }) = self.peek().cloned()
        else {
            return self.unexpected("a number");
        };
        self.pos += 1;
        let owned;
        let text_signed = if negative {
            owned = format!("-{text}");
            owned.as_str()
        } else {
            text
        };
        // serde_json checks the syntax and keeps integers exact; its float
        // parsing is not correctly rounded for long mantissas (without
        // `float_roundtrip`), so floats are re-read by `str::parse`, which
        // is, and which `Display` (shortest round-trip form) relies on.
        let number = serde_json::from_str::<Number>(text_signed)
            .ok()
            .and_then(|n| match n.is_f64() {
                true => text_signed.parse::<f64>().ok().and_then(Number::from_f64),
                false => Some(n),
            });
        match number {
            Some(n) => Ok(Expr::Literal(Value::Number(n))),
            None => Err(SqlError::InvalidNumber {
                offset,
                text: text.to_owned(),
            }),
        }
    }

    fn call(&mut self, name: &'a str, offset: usize) -> Result<Expr, SqlError> {
        let builtin = if is_keyword(name, "clientid") {
            Builtin::ClientId
        } else if is_keyword(name, "principal") {
            Builtin::Principal
        } else if is_keyword(name, "timestamp") {
            Builtin::Timestamp
        } else if is_keyword(name, "topic") {
            match self.peek().cloned() {
                Some(Token {
                    tok: Tok::Num(text),
                    offset,
                    ..
                }) => {
                    self.pos += 1;
                    match text.parse::<u32>() {
                        Ok(n) if n >= 1 => Builtin::Topic(Some(n)),
                        _ => {
                            return Err(SqlError::InvalidTopicLevel {
                                offset,
                                found: text.to_owned(),
                            });
                        }
                    }
                }
                Some(Token {
                    tok: Tok::RParen, ..
                }) => Builtin::Topic(None),
                Some(t) => {
                    return Err(SqlError::InvalidTopicLevel {
                        offset: t.offset,
                        found: t.text.to_owned(),
                    });
                }
                None => return self.unexpected("a topic level or `)`"),
            }
        } else {
            return Err(SqlError::UnsupportedFunction {
                offset,
                name: name.to_owned(),
            });
        };
        if !self.eat(&Tok::RParen) {
            return self.unexpected(if matches!(builtin, Builtin::Topic(_)) {
                "`)`"
            } else {
                "`)` (this function takes no arguments)"
            });
        }
        Ok(Expr::Call(builtin))
    }
}

// ---------------------------------------------------------------- display

impl fmt::Display for Builtin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Builtin::ClientId => f.write_str("clientid()"),
            Builtin::Principal => f.write_str("principal()"),
            Builtin::Timestamp => f.write_str("timestamp()"),
            Builtin::Topic(None) => f.write_str("topic()"),
            Builtin::Topic(Some(n)) => write!(f, "topic({n})"),
        }
    }
}

impl fmt::Display for CompareOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Expr {
    /// Binding strength, for printing the fewest parentheses that re-parse
    /// to the same tree.
    fn precedence(&self) -> u8 {
        match self {
            Expr::Or(..) => 1,
            Expr::And(..) => 2,
            Expr::Not(_) => 3,
            Expr::Compare { .. } => 4,
            Expr::Literal(_) | Expr::Field(_) | Expr::Call(_) => 5,
        }
    }

    fn fmt_child(&self, f: &mut fmt::Formatter<'_>, min: u8) -> fmt::Result {
        if self.precedence() < min {
            write!(f, "({self})")
        } else {
            write!(f, "{self}")
        }
    }
}

impl fmt::Display for Expr {
    /// Prints the expression in the subset's syntax; `parse` reads it back
    /// to the same tree.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expr::Literal(Value::String(s)) => write!(f, "'{s}'"),
            Expr::Literal(v) => write!(f, "{v}"),
            Expr::Field(path) => {
                for (i, seg) in path.iter().enumerate() {
                    if i > 0 {
                        f.write_str(".")?;
                    }
                    f.write_str(seg)?;
                }
                Ok(())
            }
            Expr::Call(b) => write!(f, "{b}"),
            Expr::Compare { left, op, right } => {
                left.fmt_child(f, 5)?;
                write!(f, " {op} ")?;
                right.fmt_child(f, 5)
            }
            Expr::And(l, r) => {
                l.fmt_child(f, 2)?;
                f.write_str(" AND ")?;
                r.fmt_child(f, 3)
            }
            Expr::Or(l, r) => {
                l.fmt_child(f, 1)?;
                f.write_str(" OR ")?;
                r.fmt_child(f, 2)
            }
            Expr::Not(e) => {
                f.write_str("NOT ")?;
                e.fmt_child(f, 3)
            }
        }
    }
}

impl fmt::Display for SelectItem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SelectItem::Wildcard => f.write_str("*"),
            SelectItem::Expr { expr, alias: None } => write!(f, "{expr}"),
            SelectItem::Expr {
                expr,
                alias: Some(a),
            } => write!(f, "{expr} AS {a}"),
        }
    }
}

impl fmt::Display for Statement {
    /// Prints the statement in canonical form (upper-case keywords);
    /// `parse(&s.to_string()) == Ok(s)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SELECT ")?;
        for (i, item) in self.select.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{item}")?;
        }
        write!(f, " FROM '{}'", self.from)?;
        if let Some(w) = &self.where_clause {
            write!(f, " WHERE {w}")?;
        }
        Ok(())
    }
}

impl std::str::FromStr for Statement {
    type Err = SqlError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse(s)
    }
}

#[cfg(test)]
#[path = "sql_tests.rs"]
mod tests;
