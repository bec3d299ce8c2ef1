//! The query handlers of the PostgreSQL transport: the simple protocol (one or more statements
//! in a `Query` message, results in text) and the extended protocol (`Parse` plans once with
//! DataFusion, inferring parameter and result types; `Bind` values are decoded by type and bound
//! by DataFusion, never pasted into SQL; results in the formats the client asks for).
//!
//! SQL goes through the same [`strata_query::QueryEngine`] as `POST /api/v1/query` (same
//! timeout and result-size limit), after the PostgreSQL syntax rewrite of
//! [`strata_query::postgres_compat`]. The session commands clients send on their own — `BEGIN`,
//! `COMMIT`, `ROLLBACK`, `SET`, `SHOW`, `DISCARD`, `DEALLOCATE`, `RESET` — are answered here
//! (every statement reads one snapshot; a transaction groups nothing). Writes and DDL are
//! refused: Strata's SQL is read-only.

use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::Arc;

use async_trait::async_trait;
use futures::sink::Sink;
use pgwire::api::portal::{Format, Portal};
use pgwire::api::query::{ExtendedQueryHandler, SimpleQueryHandler};
use pgwire::api::results::{
    DescribePortalResponse, FieldFormat, FieldInfo, QueryResponse, Response, Tag,
};
use pgwire::api::stmt::QueryParser;
use pgwire::api::store::PortalStore;
use pgwire::api::{ClientInfo, ClientPortalStore, Type};
use pgwire::error::{PgWireError, PgWireResult};
use pgwire::messages::PgWireBackendMessage;
use strata_query::arrow::datatypes::DataType;
use strata_query::datafusion::logical_expr::LogicalPlan;
use strata_query::datafusion::physical_plan::ExecutionPlan;
use strata_query::datafusion::sql::parser::{DFParser, Statement as DfStatement};
use strata_query::datafusion::sql::sqlparser::ast;
use strata_query::datafusion::sql::sqlparser::dialect::PostgreSqlDialect;

use super::auth::{Session, TokenStartup};
use super::encode;
use super::error::PgError;
use crate::auth::{Access, Principal};
use crate::state::AppState;

/// A parsed statement of the extended protocol.
#[derive(Debug, Clone)]
pub enum PgStatement {
    /// SQL planned by DataFusion (parameters unbound).
    Query(Arc<Planned>),
    /// A session command answered by the server.
    Local(Local),
}

/// A planned query and the types DataFusion inferred for `$1`, `$2`, ...
#[derive(Debug)]
pub struct Planned {
    plan: LogicalPlan,
    params: Vec<Option<DataType>>,
    /// Plan-cache key of the statement text (physical plans are cached per text and bound
    /// values, like the HTTP API caches per SQL text) and the catalog version it was planned at.
    key: String,
    version: u64,
}

/// Prefix of the PostgreSQL transport's plan-cache keys (its texts parse with PostgreSQL's
/// dialect and its rewrite, so they never share an entry with an HTTP SQL text).
const PLAN_KEY: &str = "pg\u{1f}";

/// Session commands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Local {
    /// `BEGIN`, `START TRANSACTION`.
    Begin,
    /// `COMMIT`, `END`, `ROLLBACK`, `ABORT` (the tag).
    End(&'static str),
    /// `SET name = value` (name lower-cased, value unquoted).
    Set(String, String),
    /// `SHOW name`.
    Show(String),
    /// Accepted without effect (`DISCARD ALL`, `DEALLOCATE`, `RESET`, `SAVEPOINT`, `RELEASE`,
    /// `ROLLBACK TO`): the tag.
    Accept(String),
}

/// The handlers shared by every connection.
pub struct PgHandler {
    st: AppState,
    parser: Arc<PgParser>,
    startup: Arc<TokenStartup>,
}

impl PgHandler {
    /// Handlers over `st`; `startup` answers `SHOW` of the startup parameters.
    pub fn new(st: AppState, startup: Arc<TokenStartup>) -> PgHandler {
        PgHandler {
            parser: Arc::new(PgParser { st: st.clone() }),
            st,
            startup,
        }
    }
}

/// The extended protocol's parser: plans at `Parse` time.
pub struct PgParser {
    st: AppState,
}

/// The session's principal, checked again now (a revoked token stops working at once).
fn principal<C: ClientInfo + ?Sized>(st: &AppState, client: &C) -> Result<Principal, PgError> {
    let session = client
        .session_extensions()
        .get::<Session>()
        .ok_or_else(|| PgError::new("28000", "not signed in"))?;
    Ok(session.check(st)?)
}

/// Splits `sql` into statements (PostgreSQL dialect); a syntax error is `42601`.
fn parse(sql: &str) -> Result<Vec<DfStatement>, PgError> {
    let statements = DFParser::parse_sql_with_dialect(sql, &PostgreSqlDialect {})
        .map_err(|e| PgError::new("42601", e.to_string()))?;
    Ok(statements.into_iter().collect())
}

/// What to do with one statement: a session command, a refusal, or SQL to plan.
enum Kind {
    Local(Local),
    Sql(DfStatement),
}

fn classify(statement: DfStatement, principal: &Principal) -> Result<Kind, PgError> {
    let DfStatement::Statement(mut inner) = statement else {
        return Ok(Kind::Sql(statement));
    };
    use ast::Statement as S;
    match inner.as_ref() {
        S::StartTransaction { .. } => return Ok(Kind::Local(Local::Begin)),
        S::Commit { .. } => return Ok(Kind::Local(Local::End("COMMIT"))),
        S::Rollback {
            savepoint: Some(_), ..
        } => return Ok(Kind::Local(Local::Accept("ROLLBACK".into()))),
        S::Rollback { .. } => return Ok(Kind::Local(Local::End("ROLLBACK"))),
        S::Savepoint { .. } => return Ok(Kind::Local(Local::Accept("SAVEPOINT".into()))),
        S::ReleaseSavepoint { .. } => return Ok(Kind::Local(Local::Accept("RELEASE".into()))),
        S::Insert(_)
        | S::Update { .. }
        | S::Delete(_)
        | S::Merge { .. }
        | S::Copy { .. }
        | S::Truncate { .. }
        | S::CreateTable(_)
        | S::CreateView { .. }
        | S::CreateIndex(_)
        | S::CreateSchema { .. }
        | S::CreateDatabase { .. }
        | S::Drop { .. }
        | S::AlterTable { .. } => return Err(read_only(principal)),
        _ => {}
    }
    let text = inner.to_string();
    let words: Vec<String> = text
        .split_whitespace()
        .take(2)
        .map(str::to_ascii_uppercase)
        .collect();
    let first = words.first().map(String::as_str).unwrap_or("");
    match first {
        "SET" => return set(&text).map(Kind::Local),
        "SHOW" => {
            let name = text[4..].trim().trim_end_matches(';').to_ascii_lowercase();
            return Ok(Kind::Local(Local::Show(name)));
        }
        "DISCARD" | "DEALLOCATE" | "RESET" => {
            return Ok(Kind::Local(Local::Accept(words.join(" "))));
        }
        _ => {}
    }
    strata_query::postgres_compat(&mut inner);
    Ok(Kind::Sql(DfStatement::Statement(inner)))
}

/// The refusal of a write or DDL statement.
fn read_only(principal: &Principal) -> PgError {
    let may_write = crate::auth::authorize(principal.clone(), Access::Write).is_ok();
    if may_write {
        PgError::new(
            "25006",
            "Strata's SQL is read-only: write with the HTTP API, MQTT or Flight SQL (DoPut)",
        )
    } else {
        PgError::new(
            "42501",
            format!(
                "permission denied: {} has the read scope only, and Strata's SQL is read-only \
                 (write with the HTTP API, MQTT or Flight SQL with a write token)",
                principal.actor()
            ),
        )
    }
}

/// `SET [SESSION|LOCAL] name {=|TO} value` and `SET TIME ZONE value`.
fn set(text: &str) -> Result<Local, PgError> {
    let rest = text[3..].trim();
    let rest = strip_word(rest, "SESSION").unwrap_or(rest);
    let rest = strip_word(rest, "LOCAL").unwrap_or(rest);
    let (name, value) = if let Some(v) = strip_word(rest, "TIME ZONE") {
        ("timezone".to_owned(), v)
    } else if let Some((n, v)) = rest.split_once('=') {
        (n.trim().to_ascii_lowercase(), v)
    } else if let Some(i) = rest.to_ascii_uppercase().find(" TO ") {
        (rest[..i].trim().to_ascii_lowercase(), &rest[i + 4..])
    } else {
        (rest.to_ascii_lowercase(), "")
    };
    let value = value.trim().trim_matches(['\'', '"']).to_owned();
    let utc = [
        "utc", "etc/utc", "gmt", "z", "+00:00", "00:00", "0", "default", "local",
    ];
    if name == "timezone" && !utc.contains(&value.to_ascii_lowercase().as_str()) {
        return Err(PgError::unsupported(format!(
            "time zone '{value}': Strata sends timestamptz values in UTC; only SET TIME ZONE 'UTC' is accepted"
        )));
    }
    let utf8 = ["utf8", "utf-8", "unicode", "default"];
    if name == "client_encoding" && !utf8.contains(&value.to_ascii_lowercase().as_str()) {
        return Err(PgError::unsupported(format!(
            "client encoding '{value}': only UTF8 is supported"
        )));
    }
    Ok(Local::Set(name, value))
}

/// `text` after the leading words `word` (case-insensitive), if it starts with them.
fn strip_word<'a>(text: &'a str, word: &str) -> Option<&'a str> {
    let head = text.get(..word.len())?;
    let after = text.get(word.len()..)?;
    (head.eq_ignore_ascii_case(word) && (after.is_empty() || after.starts_with(' ')))
        .then(|| after.trim_start())
}

impl PgParser {
    /// Plans one statement; its parameter types in `$n` order. Placeholders are typed from
    /// their use; where that leaves one untyped (`SELECT $1`) or would make a value the client
    /// declared as a float meet an integer column as an integer (`count >= 20.5`), the
    /// statement is planned again with the types the client declared in Parse (`declared`),
    /// as PostgreSQL types them.
    async fn plan(
        &self,
        statement: DfStatement,
        text: &str,
        declared: &[Option<Type>],
    ) -> Result<Planned, PgError> {
        let version = self.st.query.plan_version();
        let mut plan = self.st.query.statement_plan(statement.clone()).await?;
        let mut params = parameter_types(&plan)?;
        if let Some(types) = encode::retyped(declared, &params) {
            plan = (self.st.query)
                .statement_plan_typed(statement, types)
                .await?;
            params = parameter_types(&plan)?;
        }
        let oids: Vec<u32> = declared
            .iter()
            .map(|t| t.as_ref().map_or(0, Type::oid))
            .collect();
        Ok(Planned {
            plan,
            params,
            key: plan_key(&oids, text),
            version,
        })
    }
}

/// The plan cache key of statement `text` parsed with declared parameter types `oids` (none
/// for a simple query): the same text with other declared types may plan differently.
fn plan_key(oids: &[u32], text: &str) -> String {
    format!("{PLAN_KEY}{oids:?}\u{1f}{text}")
}

/// The types of a plan's placeholders `$1..$n` (`None`: not typed by the planner).
fn parameter_types(plan: &LogicalPlan) -> Result<Vec<Option<DataType>>, PgError> {
    let types = plan
        .get_parameter_types()
        .map_err(|e| PgError::new("42P18", e.to_string()))?;
    let mut numbered: Vec<(usize, Option<DataType>)> = types
        .into_iter()
        .filter_map(|(k, v)| Some((k.trim_start_matches('$').parse().ok()?, v)))
        .collect();
    numbered.sort_by_key(|(n, _)| *n);
    let count = numbered.last().map_or(0, |(n, _)| *n);
    let mut params = vec![None; count];
    for (n, t) in numbered {
        if let Some(slot) = n.checked_sub(1).and_then(|i| params.get_mut(i)) {
            *slot = t;
        }
    }
    Ok(params)
}

#[async_trait]
impl QueryParser for PgParser {
    type Statement = PgStatement;

    async fn parse_sql<C>(
        &self,
        client: &C,
        sql: &str,
        types: &[Option<Type>],
    ) -> PgWireResult<Option<PgStatement>>
    where
        C: ClientInfo + Unpin + Send + Sync,
    {
        let principal = principal(&self.st, client)?;
        let mut statements = parse(sql)?;
        if statements.len() > 1 {
            return Err(PgError::new(
                "42601",
                "cannot insert multiple commands into a prepared statement",
            )
            .into());
        }
        let Some(statement) = statements.pop() else {
            return Ok(None);
        };
        Ok(Some(match classify(statement, &principal)? {
            Kind::Local(l) => PgStatement::Local(l),
            Kind::Sql(s) => PgStatement::Query(Arc::new(self.plan(s, sql, types).await?)),
        }))
    }

    fn get_parameter_types(&self, stmt: &PgStatement) -> PgWireResult<Vec<Type>> {
        Ok(match stmt {
            PgStatement::Query(p) => p
                .params
                .iter()
                .map(|t| t.as_ref().map_or(Type::UNKNOWN, encode::wire_type))
                .collect(),
            PgStatement::Local(_) => Vec::new(),
        })
    }

    fn get_result_schema(
        &self,
        stmt: &PgStatement,
        column_format: Option<&Format>,
    ) -> PgWireResult<Vec<FieldInfo>> {
        let format = |i: usize| column_format.map_or(FieldFormat::Text, |f| f.format_for(i));
        if let Some(f) = column_format {
            let columns = match stmt {
                PgStatement::Query(p) => p.plan.schema().fields().len(),
                PgStatement::Local(Local::Show(_)) => 1,
                PgStatement::Local(_) => 0,
            };
            check_formats(f, columns, "result column")?;
        }
        Ok(match stmt {
            PgStatement::Query(p) => encode::fields(p.plan.schema().as_arrow(), format),
            PgStatement::Local(Local::Show(name)) => show_fields(name, format(0)),
            PgStatement::Local(_) => Vec::new(),
        })
    }
}

fn show_fields(name: &str, format: FieldFormat) -> Vec<FieldInfo> {
    vec![FieldInfo::new(
        name.to_owned(),
        None,
        None,
        Type::TEXT,
        format,
    )]
}

/// Runs a plan (cached under `cache` when given and reusable) and encodes its rows in the
/// formats of `format`.
async fn run(
    st: &AppState,
    plan: &LogicalPlan,
    cache: Option<(&str, u64)>,
    format: &Format,
) -> Result<Response, PgError> {
    let physical = st.query.physical_plan(plan, cache).await?;
    respond(st, physical, format).await
}

/// Runs a physical plan and encodes its rows in the formats of `format`.
async fn respond(
    st: &AppState,
    physical: Arc<dyn ExecutionPlan>,
    format: &Format,
) -> Result<Response, PgError> {
    check_formats(format, physical.schema().fields().len(), "result column")?;
    let result = st.query.run_plan(physical).await?;
    let fields = Arc::new(encode::fields(&result.schema, |i| format.format_for(i)));
    let rows = encode::rows(&result.batches, &fields)?;
    let stream = futures::stream::iter(rows.into_iter().map(Ok));
    Ok(Response::Query(QueryResponse::new(fields, stream)))
}

/// Refuses a Bind whose format codes are neither one for all (0 or 1 codes) nor one per
/// `what` (`pgwire`'s `Format::format_for` would index past the client's list).
fn check_formats(format: &Format, n: usize, what: &str) -> Result<(), PgError> {
    match format {
        Format::Individual(codes) if codes.len() != n => Err(PgError::new(
            "08P01",
            format!(
                "bind message has {} {what} format codes, but the statement has {n} {what}s",
                codes.len()
            ),
        )),
        _ => Ok(()),
    }
}

/// Unquoted `SHOW` names that differ from the startup parameter names.
fn show_value(
    name: &str,
    set: &HashMap<String, String>,
    server: &HashMap<String, String>,
) -> Option<String> {
    let name = name.trim_matches('"');
    match name {
        "transaction isolation level" | "transaction_isolation" => {
            return Some("read committed".into());
        }
        "time zone" | "timezone" => return Some("UTC".into()),
        _ => {}
    }
    set.get(name).cloned().or_else(|| {
        server
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
            .or_else(|| strata_query::pg_setting(name).map(str::to_owned))
    })
}

/// Key prefix of values set with `SET` in the connection metadata.
const SET_PREFIX: &str = "strata.set.";

impl PgHandler {
    /// Answers a session command.
    fn local<C: ClientInfo>(
        &self,
        client: &mut C,
        local: &Local,
        format: FieldFormat,
    ) -> Result<Response, PgError> {
        Ok(match local {
            Local::Begin => Response::TransactionStart(Tag::new("BEGIN")),
            Local::End(tag) => Response::TransactionEnd(Tag::new(tag)),
            Local::Accept(tag) => Response::Execution(Tag::new(tag)),
            Local::Set(name, value) => {
                client
                    .metadata_mut()
                    .insert(format!("{SET_PREFIX}{name}"), value.clone());
                Response::Execution(Tag::new("SET"))
            }
            Local::Show(name) => {
                let set: HashMap<String, String> = client
                    .metadata()
                    .iter()
                    .filter_map(|(k, v)| Some((k.strip_prefix(SET_PREFIX)?.to_owned(), v.clone())))
                    .collect();
                let server = self.startup.parameters(client);
                let value = show_value(name, &set, &server).ok_or_else(|| {
                    PgError::new(
                        "42704",
                        format!("unrecognized configuration parameter \"{name}\""),
                    )
                })?;
                let fields = Arc::new(show_fields(name, format));
                let mut buf = bytes::BytesMut::new();
                bytes::BufMut::put_i32(&mut buf, value.len() as i32);
                bytes::BufMut::put_slice(&mut buf, value.as_bytes());
                let row = pgwire::messages::data::DataRow::new(buf, 1);
                let mut response = QueryResponse::new(fields, futures::stream::iter([Ok(row)]));
                response.set_command_tag("SHOW");
                Response::Query(response)
            }
        })
    }
}

#[async_trait]
impl SimpleQueryHandler for PgHandler {
    async fn do_query<C>(&self, client: &mut C, query: &str) -> PgWireResult<Vec<Response>>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let principal = principal(&self.st, client)?;
        // A text run before (one read-only statement): its cached physical plan.
        let key = plan_key(&[], query);
        if let Some(plan) = self.st.query.cached_plan(&key).map_err(PgError::from)? {
            return Ok(vec![respond(&self.st, plan, &Format::UnifiedText).await?]);
        }
        let statements = parse(query)?;
        if statements.is_empty() {
            // Only whitespace or comments (pgx's `-- ping`, Grafana's health check).
            return Ok(vec![Response::EmptyQuery]);
        }
        let single = statements.len() == 1;
        let mut out = Vec::new();
        for statement in statements {
            let answer = match classify(statement, &principal) {
                Ok(Kind::Local(l)) => self.local(client, &l, FieldFormat::Text),
                Ok(Kind::Sql(s)) => match self.parser.plan(s, query, &[]).await {
                    Ok(p) if !p.params.is_empty() => Err(PgError::new(
                        "08P01",
                        "parameters ($1, ...) need the extended query protocol",
                    )),
                    Ok(p) => {
                        let cache = single.then_some((p.key.as_str(), p.version));
                        run(&self.st, &p.plan, cache, &Format::UnifiedText).await
                    }
                    Err(e) => Err(e),
                },
                Err(e) => Err(e),
            };
            match answer {
                Ok(r) => out.push(r),
                Err(e) => {
                    out.push(Response::Error(Box::new(error_info(e))));
                    break;
                }
            }
        }
        Ok(out)
    }
}

fn error_info(e: PgError) -> pgwire::error::ErrorInfo {
    pgwire::error::ErrorInfo::new(e.severity.to_owned(), e.code.to_owned(), e.message)
}

#[async_trait]
impl ExtendedQueryHandler for PgHandler {
    type Statement = PgStatement;
    type QueryParser = PgParser;

    fn query_parser(&self) -> Arc<PgParser> {
        self.parser.clone()
    }

    /// The row description of a bound portal: a statement with parameters is described with its
    /// values bound, so a placeholder the planner could not type (`SELECT $1`) is described by
    /// the type of its value, as Execute then sends it (and not as `text`).
    async fn do_describe_portal<C>(
        &self,
        _client: &mut C,
        portal: &Portal<PgStatement>,
    ) -> PgWireResult<DescribePortalResponse>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = PgStatement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let format = &portal.result_column_format;
        let fields = match &portal.statement.statement {
            PgStatement::Query(planned) if !planned.params.is_empty() => {
                let plan = with_values(planned, bind(portal, planned)?)?;
                check_formats(format, plan.schema().fields().len(), "result column")?;
                encode::fields(plan.schema().as_arrow(), |i| format.format_for(i))
            }
            stmt => self.parser.get_result_schema(stmt, Some(format))?,
        };
        Ok(DescribePortalResponse::new(fields))
    }

    async fn do_query<C>(
        &self,
        client: &mut C,
        portal: &Portal<PgStatement>,
        _max_rows: usize,
    ) -> PgWireResult<Response>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = PgStatement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        principal(&self.st, client)?;
        let format = &portal.result_column_format;
        match &portal.statement.statement {
            PgStatement::Local(l) => Ok(self.local(client, l, format.format_for(0))?),
            PgStatement::Query(planned) => {
                let values = bind(portal, planned)?;
                // Cached per statement text and bound values (a dashboard re-running the same
                // statement with the same values plans it once).
                let key = format!("{}\u{1f}{values:?}", planned.key);
                if let Some(plan) = self.st.query.cached_plan(&key).map_err(PgError::from)? {
                    return Ok(respond(&self.st, plan, format).await?);
                }
                let plan = with_values(planned, values)?;
                Ok(run(&self.st, &plan, Some((&key, planned.version)), format).await?)
            }
        }
    }
}

/// The statement's plan with `values` bound to its placeholders.
fn with_values(
    planned: &Planned,
    values: Vec<strata_query::datafusion::scalar::ScalarValue>,
) -> Result<LogicalPlan, PgError> {
    if values.is_empty() {
        return Ok(planned.plan.clone());
    }
    planned
        .plan
        .clone()
        .with_param_values(values)
        .map_err(|e| PgError::new("22023", e.to_string()))
}

/// The portal's parameter values, decoded and typed for the plan.
fn bind(
    portal: &Portal<PgStatement>,
    planned: &Planned,
) -> Result<Vec<strata_query::datafusion::scalar::ScalarValue>, PgError> {
    let count = portal.parameter_len();
    if count != planned.params.len() {
        return Err(PgError::new(
            "08P01",
            format!(
                "bind message supplies {count} parameters, but the statement needs {}",
                planned.params.len()
            ),
        ));
    }
    check_formats(&portal.parameter_format, count, "parameter")?;
    (0..count)
        .map(|i| {
            let want = planned.params[i].as_ref();
            let ty = portal
                .statement
                .parameter_types
                .get(i)
                .cloned()
                .flatten()
                .or_else(|| want.map(encode::wire_type))
                .unwrap_or(Type::UNKNOWN);
            encode::parameter(
                i,
                portal.parameters[i].as_deref(),
                portal.parameter_format.is_binary(i),
                &ty,
                want,
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_codes_must_be_one_for_all_or_one_each() {
        assert!(check_formats(&Format::UnifiedText, 3, "parameter").is_ok());
        assert!(check_formats(&Format::UnifiedBinary, 0, "parameter").is_ok());
        assert!(check_formats(&Format::Individual(vec![0, 1, 1]), 3, "parameter").is_ok());
        let e = check_formats(&Format::Individual(vec![0, 1]), 3, "result column").unwrap_err();
        assert_eq!(e.code, "08P01");
        assert_eq!(
            e.message,
            "bind message has 2 result column format codes, but the statement has 3 result columns"
        );
    }
}
