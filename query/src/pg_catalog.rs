//! What PostgreSQL clients (psql, Grafana, SQLAlchemy, psycopg) expect to find besides the data:
//! a minimal, read-only `pg_catalog` schema derived from Strata's own catalog, a few `pg_*`
//! functions, the Arrow → PostgreSQL type mapping, and a rewrite of PostgreSQL-only syntax
//! (`pg_catalog.`-qualified functions, `OPERATOR(pg_catalog.~)`, `COLLATE pg_catalog.default`,
//! `::regclass` / `::oid` casts) into what DataFusion plans.
//!
//! The shim is honest rather than complete: `pg_namespace`, `pg_class`, `pg_attribute`,
//! `pg_type`, `pg_database` and `pg_am` describe the real schemas (databases), tables (streams
//! and registry tables) and columns; tables Strata has nothing for (`pg_index`, `pg_constraint`,
//! `pg_description`, `pg_inherits`, `pg_proc`, ...) exist and are empty. Object ids are stable
//! for one listing only (they follow the sorted names), as clients use them to join these tables.

use std::ops::ControlFlow;
use std::sync::Arc;

use arrow::array::{
    ArrayRef, BooleanArray, Int16Array, Int32Array, Int64Array, RecordBatch, StringArray,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use async_trait::async_trait;
use datafusion::catalog::{CatalogProvider, MemTable, SchemaProvider, TableProvider};
use datafusion::common::ScalarValue;
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::{ColumnarValue, Volatility, create_udf};
use datafusion::prelude::SessionContext;
use datafusion::sql::sqlparser::ast::{
    self, BinaryOperator, Expr, Ident, ObjectName, ObjectNamePart, visit_expressions_mut,
    visit_relations_mut,
};

/// The schema name PostgreSQL clients query.
pub const PG_CATALOG: &str = "pg_catalog";

/// Version string `version()` answers over the PostgreSQL protocol (clients parse the number).
pub const PG_VERSION: &str = concat!(
    "PostgreSQL 16.6 (Strata ",
    env!("CARGO_PKG_VERSION"),
    ", read-only SQL on Apache DataFusion)"
);

/// Owner name reported for every object.
const OWNER: &str = "strata";
/// Object id of the `pg_catalog` namespace (as in PostgreSQL).
const PG_CATALOG_OID: i64 = 11;
/// First object id given to Strata's schemas and tables.
const FIRST_OID: i64 = 16384;

/// A PostgreSQL type as clients see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PgType {
    /// Its object id (`pg_type.oid`).
    pub oid: u32,
    /// Its name (`pg_type.typname`).
    pub name: &'static str,
    /// Storage length in bytes, -1 when variable.
    pub len: i16,
    /// The object id of its array type (0 when none).
    pub array: u32,
}

macro_rules! pg_types {
    ($($konst:ident = $oid:literal, $name:literal, $len:literal, $array:literal;)*) => {
        impl PgType {
            $(
                #[doc = concat!("`", $name, "`")]
                pub const $konst: PgType = PgType { oid: $oid, name: $name, len: $len, array: $array };
            )*
            /// Every type `pg_type` lists.
            pub const ALL: &'static [PgType] = &[$(PgType::$konst),*];
        }
    };
}

pg_types! {
    BOOL = 16, "bool", 1, 1000;
    BYTEA = 17, "bytea", -1, 1001;
    CHAR = 18, "char", 1, 1002;
    NAME = 19, "name", 64, 1003;
    INT8 = 20, "int8", 8, 1016;
    INT2 = 21, "int2", 2, 1005;
    INT4 = 23, "int4", 4, 1007;
    TEXT = 25, "text", -1, 1009;
    OID = 26, "oid", 4, 1028;
    JSON = 114, "json", -1, 199;
    FLOAT4 = 700, "float4", 4, 1021;
    FLOAT8 = 701, "float8", 8, 1022;
    UNKNOWN = 705, "unknown", -2, 0;
    VARCHAR = 1043, "varchar", -1, 1015;
    DATE = 1082, "date", 4, 1182;
    TIME = 1083, "time", 8, 1183;
    TIMESTAMP = 1114, "timestamp", 8, 1115;
    TIMESTAMPTZ = 1184, "timestamptz", 8, 1185;
    INTERVAL = 1186, "interval", 16, 1187;
    NUMERIC = 1700, "numeric", -1, 1231;
}

impl PgType {
    /// The type of `oid`, if listed.
    pub fn from_oid(oid: u32) -> Option<PgType> {
        PgType::ALL.iter().copied().find(|t| t.oid == oid)
    }

    /// The SQL spelling `format_type` answers (`timestamp with time zone`, `double precision`).
    pub fn sql_name(self) -> &'static str {
        match self.oid {
            16 => "boolean",
            20 => "bigint",
            21 => "smallint",
            23 => "integer",
            700 => "real",
            701 => "double precision",
            1043 => "character varying",
            1083 => "time without time zone",
            1114 => "timestamp without time zone",
            1184 => "timestamp with time zone",
            _ => self.name,
        }
    }
}

/// The PostgreSQL type a column of Arrow type `t` is sent as. Every timestamp is `timestamptz`
/// (Strata's times are instants, UTC); unsigned integers widen; decimals are sent as `float8`;
/// everything else (times of day, intervals, lists, structs, ...) as its text rendering.
pub fn pg_type_of(t: &DataType) -> PgType {
    match t {
        DataType::Boolean => PgType::BOOL,
        DataType::Int8 | DataType::Int16 | DataType::UInt8 => PgType::INT2,
        DataType::Int32 | DataType::UInt16 => PgType::INT4,
        DataType::Int64 | DataType::UInt32 | DataType::UInt64 => PgType::INT8,
        DataType::Float16 | DataType::Float32 => PgType::FLOAT4,
        DataType::Float64 => PgType::FLOAT8,
        DataType::Decimal32(..)
        | DataType::Decimal64(..)
        | DataType::Decimal128(..)
        | DataType::Decimal256(..) => PgType::FLOAT8,
        DataType::Timestamp(..) => PgType::TIMESTAMPTZ,
        DataType::Date32 | DataType::Date64 => PgType::DATE,
        DataType::Binary
        | DataType::LargeBinary
        | DataType::BinaryView
        | DataType::FixedSizeBinary(_) => PgType::BYTEA,
        DataType::Null => PgType::TEXT,
        DataType::Dictionary(_, v) => pg_type_of(v),
        _ => PgType::TEXT,
    }
}

/// Rewrites PostgreSQL-only syntax of `statement` into what DataFusion plans: functions
/// qualified with `pg_catalog.` lose the qualifier, `version()` becomes `pg_version()` (so HTTP
/// callers keep DataFusion's), `OPERATOR(pg_catalog.~)` and friends become the plain operators,
/// `COLLATE` clauses are dropped, unqualified `pg_catalog` tables (`FROM pg_type`) are qualified,
/// casts to `oid` / `regclass` / `regtype` / `name` become casts to `BIGINT` / text,
/// `array_lower` / `array_upper` become `array_length` forms, and functions in `FROM` that
/// DataFusion cannot plan there become derived tables ([`crate::pg_from`]).
pub fn postgres_compat(statement: &mut ast::Statement) {
    crate::pg_from::rewrite_from_functions(statement);
    crate::pg_subquery::rewrite_subqueries(statement);
    let _ = visit_expressions_mut(statement, |expr| {
        rewrite(expr);
        crate::pg_functions::rewrite_array_bounds(expr);
        ControlFlow::<()>::Continue(())
    });
    // PostgreSQL searches pg_catalog first: `FROM pg_type` is `pg_catalog.pg_type`; and
    // `information_schema.columns` gets PostgreSQL's type names.
    let _ = visit_relations_mut(statement, |name| {
        if is_information_schema_columns(name) {
            *name = ObjectName(vec![
                ObjectNamePart::Identifier(Ident::new(PG_CATALOG)),
                ObjectNamePart::Identifier(Ident::new(PG_COLUMNS)),
            ]);
        }
        if let [only] = name.0.as_slice()
            && only
                .as_ident()
                .is_some_and(|i| TABLES.contains(&i.value.as_str()))
        {
            name.0
                .insert(0, ObjectNamePart::Identifier(Ident::new(PG_CATALOG)));
        }
        ControlFlow::<()>::Continue(())
    });
}

/// Whether `name` is `information_schema.columns` (any case, any catalog prefix).
fn is_information_schema_columns(name: &ObjectName) -> bool {
    let parts: Vec<String> = name
        .0
        .iter()
        .filter_map(|p| p.as_ident().map(|i| i.value.to_ascii_lowercase()))
        .collect();
    parts.len() >= 2 && parts[parts.len() - 2..] == ["information_schema", "columns"]
}

fn rewrite(expr: &mut Expr) {
    match expr {
        Expr::Function(f) => {
            let parts = &mut f.name.0;
            if parts.len() == 2
                && parts[0]
                    .as_ident()
                    .is_some_and(|i| i.value.eq_ignore_ascii_case(PG_CATALOG))
            {
                parts.remove(0);
            }
            if parts.len() == 1
                && parts[0]
                    .as_ident()
                    .is_some_and(|i| i.value.eq_ignore_ascii_case("version"))
            {
                f.name = ObjectName(vec![ObjectNamePart::Identifier(Ident::new("pg_version"))]);
            }
        }
        Expr::BinaryOp { op, .. } => {
            if let BinaryOperator::PGCustomBinaryOperator(parts) = op
                && let Some(plain) = parts.last().and_then(|p| plain_operator(p))
            {
                *op = plain;
            }
        }
        Expr::Collate { expr: inner, .. } => {
            let inner = std::mem::replace(inner.as_mut(), Expr::value(ast::Value::Null));
            *expr = inner;
        }
        Expr::Cast { data_type, .. } => {
            if matches!(data_type, ast::DataType::Regclass) {
                *data_type = ast::DataType::Text;
            }
            if let ast::DataType::Custom(name, _) = data_type {
                let last = name
                    .0
                    .last()
                    .and_then(|p| p.as_ident())
                    .map(|i| i.value.to_ascii_lowercase())
                    .unwrap_or_default();
                match last.as_str() {
                    "oid" | "regproc" | "xid" | "int8" => *data_type = ast::DataType::BigInt(None),
                    "int4" => *data_type = ast::DataType::Int(None),
                    "int2" => *data_type = ast::DataType::SmallInt(None),
                    "float8" => *data_type = ast::DataType::DoublePrecision,
                    "bool" => *data_type = ast::DataType::Boolean,
                    "regclass" | "regtype" | "regnamespace" | "name" | "text" | "varchar"
                    | "char" | "bpchar" => *data_type = ast::DataType::Text,
                    _ => {}
                }
            }
        }
        _ => {}
    }
}

fn plain_operator(op: &str) -> Option<BinaryOperator> {
    Some(match op {
        "~" => BinaryOperator::PGRegexMatch,
        "~*" => BinaryOperator::PGRegexIMatch,
        "!~" => BinaryOperator::PGRegexNotMatch,
        "!~*" => BinaryOperator::PGRegexNotIMatch,
        "=" => BinaryOperator::Eq,
        "<>" => BinaryOperator::NotEq,
        "<" => BinaryOperator::Lt,
        ">" => BinaryOperator::Gt,
        "<=" => BinaryOperator::LtEq,
        ">=" => BinaryOperator::GtEq,
        _ => return None,
    })
}

/// Registers the `pg_*` functions clients call: `pg_version()`, `current_schema()`,
/// `current_database()`, `current_user()`-like helpers, `pg_table_is_visible`, `pg_get_userbyid`,
/// `format_type`, `obj_description`, `col_description`, `pg_encoding_to_char`,
/// `has_table_privilege`, `has_schema_privilege`, `to_regtype`.
pub fn register_functions(ctx: &SessionContext) {
    let text = |name: &str, args: Vec<DataType>, value: &'static str| {
        create_udf(
            name,
            args,
            DataType::Utf8,
            Volatility::Stable,
            Arc::new(move |a: &[ColumnarValue]| constant(a, ScalarValue::Utf8(Some(value.into())))),
        )
    };
    let null_text = |name: &str, args: Vec<DataType>| {
        create_udf(
            name,
            args,
            DataType::Utf8,
            Volatility::Stable,
            Arc::new(|a: &[ColumnarValue]| constant(a, ScalarValue::Utf8(None))),
        )
    };
    let yes = |name: &str, args: Vec<DataType>| {
        create_udf(
            name,
            args,
            DataType::Boolean,
            Volatility::Stable,
            Arc::new(|a: &[ColumnarValue]| constant(a, ScalarValue::Boolean(Some(true)))),
        )
    };
    let utf8 = DataType::Utf8;
    let int = DataType::Int64;
    let udfs = [
        text("pg_version", vec![], PG_VERSION),
        text("current_schema", vec![], strata_storage::DEFAULT_DATABASE),
        text("current_database", vec![], "strata"),
        text("pg_get_userbyid", vec![int.clone()], OWNER),
        text("pg_encoding_to_char", vec![int.clone()], "UTF8"),
        null_text("obj_description", vec![int.clone(), utf8.clone()]),
        null_text("col_description", vec![int.clone(), int.clone()]),
        null_text("shobj_description", vec![int.clone(), utf8.clone()]),
        yes("pg_table_is_visible", vec![int.clone()]),
        yes("pg_type_is_visible", vec![int.clone()]),
        yes("has_table_privilege", vec![utf8.clone(), utf8.clone()]),
        yes("has_schema_privilege", vec![utf8.clone(), utf8.clone()]),
        create_udf(
            "format_type",
            vec![int.clone(), DataType::Int32],
            DataType::Utf8,
            Volatility::Immutable,
            Arc::new(|a: &[ColumnarValue]| map_i64(a, |oid| type_name(oid).map(str::to_owned))),
        ),
        create_udf(
            "to_regtype",
            vec![utf8.clone()],
            DataType::Int64,
            Volatility::Immutable,
            Arc::new(regtype),
        ),
    ];
    for udf in udfs {
        ctx.register_udf(udf);
    }
    crate::pg_functions::register(ctx);
}

/// The SQL name of type `oid`.
fn type_name(oid: i64) -> Option<&'static str> {
    let oid = u32::try_from(oid).ok()?;
    PgType::from_oid(oid).map(PgType::sql_name)
}

/// `value` for every row of the call (or once, for a call on constants).
fn constant(args: &[ColumnarValue], value: ScalarValue) -> Result<ColumnarValue> {
    match args.iter().find_map(|a| match a {
        ColumnarValue::Array(a) => Some(a.len()),
        ColumnarValue::Scalar(_) => None,
    }) {
        Some(n) => Ok(ColumnarValue::Array(value.to_array_of_size(n)?)),
        None => Ok(ColumnarValue::Scalar(value)),
    }
}

/// Applies `f` to the first (Int64) argument, row by row.
fn map_i64(args: &[ColumnarValue], f: impl Fn(i64) -> Option<String>) -> Result<ColumnarValue> {
    let first = args
        .first()
        .ok_or_else(|| DataFusionError::Plan("expected an argument".into()))?;
    match first {
        ColumnarValue::Scalar(ScalarValue::Int64(v)) => {
            Ok(ColumnarValue::Scalar(ScalarValue::Utf8(v.and_then(&f))))
        }
        ColumnarValue::Scalar(_) => Ok(ColumnarValue::Scalar(ScalarValue::Utf8(None))),
        ColumnarValue::Array(a) => {
            let a = a
                .as_any()
                .downcast_ref::<Int64Array>()
                .ok_or_else(|| DataFusionError::Plan("expected an oid".into()))?;
            let out: StringArray = a.iter().map(|v| v.and_then(&f)).collect();
            Ok(ColumnarValue::Array(Arc::new(out)))
        }
    }
}

/// `to_regtype('name')`: the type's oid, or NULL.
fn regtype(args: &[ColumnarValue]) -> Result<ColumnarValue> {
    let lookup = |name: &str| {
        let name = name.trim().to_ascii_lowercase();
        PgType::ALL
            .iter()
            .find(|t| t.name == name || t.sql_name() == name)
            .map(|t| i64::from(t.oid))
    };
    match args.first() {
        Some(ColumnarValue::Scalar(ScalarValue::Utf8(v))) => Ok(ColumnarValue::Scalar(
            ScalarValue::Int64(v.as_deref().and_then(lookup)),
        )),
        Some(ColumnarValue::Array(a)) => {
            let a = a
                .as_any()
                .downcast_ref::<StringArray>()
                .ok_or_else(|| DataFusionError::Plan("expected a type name".into()))?;
            let out: Int64Array = a.iter().map(|v| v.and_then(lookup)).collect();
            Ok(ColumnarValue::Array(Arc::new(out)))
        }
        _ => Ok(ColumnarValue::Scalar(ScalarValue::Int64(None))),
    }
}

/// The `pg_catalog` schema over a catalog (Strata's), built at each lookup.
#[derive(Debug)]
pub struct PgCatalogSchema {
    catalog: Arc<dyn CatalogProvider>,
}

impl PgCatalogSchema {
    /// The schema describing `catalog`.
    pub fn new(catalog: Arc<dyn CatalogProvider>) -> PgCatalogSchema {
        PgCatalogSchema { catalog }
    }
}

/// `information_schema.columns` as PostgreSQL clients read it (PostgreSQL type names in
/// `data_type`), which the PostgreSQL transport queries in place of DataFusion's (whose
/// `data_type` holds Arrow type names); not listed among the catalog's tables.
const PG_COLUMNS: &str = "strata_pg_columns";

/// Tables of `pg_catalog`, sorted.
const TABLES: &[&str] = &[
    "pg_am",
    "pg_attrdef",
    "pg_attribute",
    "pg_class",
    "pg_collation",
    "pg_constraint",
    "pg_database",
    "pg_description",
    "pg_enum",
    "pg_extension",
    "pg_index",
    "pg_inherits",
    "pg_namespace",
    "pg_proc",
    "pg_range",
    "pg_roles",
    "pg_settings",
    "pg_tables",
    "pg_type",
    "pg_user",
];

#[async_trait]
impl SchemaProvider for PgCatalogSchema {
    fn table_names(&self) -> Vec<String> {
        TABLES.iter().map(|t| t.to_string()).collect()
    }

    async fn table(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>> {
        if !self.table_exist(name) {
            return Ok(None);
        }
        let batch = match name {
            PG_COLUMNS => columns(&self.objects().await?),
            "pg_namespace" => namespaces(&self.objects().await?),
            "pg_class" => classes(&self.objects().await?),
            "pg_tables" => tables(&self.objects().await?),
            "pg_attribute" => attributes(&self.objects().await?),
            "pg_type" => types(),
            "pg_database" => databases(),
            "pg_am" => access_methods(),
            "pg_roles" | "pg_user" => roles(name),
            "pg_settings" => settings(),
            other => empty(other),
        }?;
        let table = MemTable::try_new(batch.schema(), vec![vec![batch]])?;
        Ok(Some(Arc::new(table)))
    }

    fn table_exist(&self, name: &str) -> bool {
        TABLES.contains(&name) || name == PG_COLUMNS
    }
}

/// One schema (database) with its tables and their Arrow schemas, with object ids.
struct Namespace {
    oid: i64,
    name: String,
    tables: Vec<(i64, String, SchemaRef)>,
}

impl PgCatalogSchema {
    /// Strata's schemas and tables, sorted by name, numbered from [`FIRST_OID`].
    async fn objects(&self) -> Result<Vec<Namespace>> {
        let mut names = self.catalog.schema_names();
        names.retain(|n| n != PG_CATALOG);
        names.sort();
        let mut next = FIRST_OID;
        let mut out = Vec::new();
        for name in names {
            let Some(schema) = self.catalog.schema(&name) else {
                continue;
            };
            let oid = next;
            next += 1;
            let mut table_names = schema.table_names();
            table_names.sort();
            let mut tables = Vec::new();
            for t in table_names {
                if let Some(provider) = schema.table(&t).await? {
                    tables.push((next, t, provider.schema()));
                    next += 1;
                }
            }
            out.push(Namespace { oid, name, tables });
        }
        Ok(out)
    }
}

fn batch(columns: Vec<(&str, ArrayRef)>) -> Result<RecordBatch> {
    let fields: Vec<Field> = columns
        .iter()
        .map(|(n, a)| Field::new(*n, a.data_type().clone(), true))
        .collect();
    let arrays = columns.into_iter().map(|(_, a)| a).collect();
    Ok(RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays)?)
}

fn strings<S: AsRef<str>>(v: impl IntoIterator<Item = S>) -> ArrayRef {
    Arc::new(StringArray::from_iter_values(v))
}

fn i64s(v: impl IntoIterator<Item = i64>) -> ArrayRef {
    Arc::new(Int64Array::from_iter_values(v))
}

fn i32s(v: impl IntoIterator<Item = i32>) -> ArrayRef {
    Arc::new(Int32Array::from_iter_values(v))
}

fn i16s(v: impl IntoIterator<Item = i16>) -> ArrayRef {
    Arc::new(Int16Array::from_iter_values(v))
}

fn bools(v: impl IntoIterator<Item = bool>) -> ArrayRef {
    Arc::new(BooleanArray::from(v.into_iter().collect::<Vec<_>>()))
}

fn nulls(n: usize) -> ArrayRef {
    Arc::new(StringArray::from(vec![None::<&str>; n]))
}

fn namespaces(objects: &[Namespace]) -> Result<RecordBatch> {
    let mut oids = vec![PG_CATALOG_OID];
    let mut names = vec![PG_CATALOG.to_string()];
    for ns in objects {
        oids.push(ns.oid);
        names.push(ns.name.clone());
    }
    let n = oids.len();
    batch(vec![
        ("oid", i64s(oids)),
        ("nspname", strings(names)),
        ("nspowner", i64s(vec![10; n])),
        ("nspacl", nulls(n)),
    ])
}

fn classes(objects: &[Namespace]) -> Result<RecordBatch> {
    let rows: Vec<(&Namespace, &(i64, String, SchemaRef))> = objects
        .iter()
        .flat_map(|ns| ns.tables.iter().map(move |t| (ns, t)))
        .collect();
    let n = rows.len();
    batch(vec![
        ("oid", i64s(rows.iter().map(|(_, t)| t.0))),
        ("relname", strings(rows.iter().map(|(_, t)| t.1.as_str()))),
        ("relnamespace", i64s(rows.iter().map(|(ns, _)| ns.oid))),
        ("reltype", i64s(vec![0; n])),
        ("reloftype", i64s(vec![0; n])),
        ("relowner", i64s(vec![10; n])),
        ("relam", i64s(vec![2; n])),
        ("relfilenode", i64s(vec![0; n])),
        ("reltablespace", i64s(vec![0; n])),
        ("reltuples", i64s(vec![-1; n])),
        ("reltoastrelid", i64s(vec![0; n])),
        ("relhasindex", bools(vec![false; n])),
        ("relisshared", bools(vec![false; n])),
        ("relpersistence", strings(vec!["p"; n])),
        ("relkind", strings(vec!["r"; n])),
        (
            "relnatts",
            i16s(
                rows.iter()
                    .map(|(_, t)| i16::try_from(t.2.fields().len()).unwrap_or(i16::MAX)),
            ),
        ),
        ("relchecks", i16s(vec![0; n])),
        ("relhasrules", bools(vec![false; n])),
        ("relhastriggers", bools(vec![false; n])),
        ("relhassubclass", bools(vec![false; n])),
        ("relrowsecurity", bools(vec![false; n])),
        ("relforcerowsecurity", bools(vec![false; n])),
        ("relispopulated", bools(vec![true; n])),
        ("relreplident", strings(vec!["n"; n])),
        ("relispartition", bools(vec![false; n])),
        ("relacl", nulls(n)),
        ("reloptions", nulls(n)),
        ("relpartbound", nulls(n)),
    ])
}

fn tables(objects: &[Namespace]) -> Result<RecordBatch> {
    let rows: Vec<(&str, &str)> = objects
        .iter()
        .flat_map(|ns| {
            ns.tables
                .iter()
                .map(move |t| (ns.name.as_str(), t.1.as_str()))
        })
        .collect();
    let n = rows.len();
    batch(vec![
        ("schemaname", strings(rows.iter().map(|r| r.0))),
        ("tablename", strings(rows.iter().map(|r| r.1))),
        ("tableowner", strings(vec![OWNER; n])),
        ("tablespace", nulls(n)),
        ("hasindexes", bools(vec![false; n])),
        ("hasrules", bools(vec![false; n])),
        ("hastriggers", bools(vec![false; n])),
        ("rowsecurity", bools(vec![false; n])),
    ])
}

fn attributes(objects: &[Namespace]) -> Result<RecordBatch> {
    let mut rel = Vec::new();
    let mut name = Vec::new();
    let mut ty = Vec::new();
    let mut num = Vec::new();
    let mut not_null = Vec::new();
    for (oid, _, schema) in objects.iter().flat_map(|ns| ns.tables.iter()) {
        for (i, f) in schema.fields().iter().enumerate() {
            rel.push(*oid);
            name.push(f.name().clone());
            ty.push(i64::from(pg_type_of(f.data_type()).oid));
            num.push(i16::try_from(i + 1).unwrap_or(i16::MAX));
            not_null.push(!f.is_nullable());
        }
    }
    let n = rel.len();
    batch(vec![
        ("attrelid", i64s(rel)),
        ("attname", strings(name)),
        ("atttypid", i64s(ty)),
        ("attlen", i16s(vec![-1; n])),
        ("attnum", i16s(num)),
        ("atttypmod", i32s(vec![-1; n])),
        ("attndims", i16s(vec![0; n])),
        ("attnotnull", bools(not_null)),
        ("atthasdef", bools(vec![false; n])),
        ("atthasmissing", bools(vec![false; n])),
        ("attidentity", strings(vec![""; n])),
        ("attgenerated", strings(vec![""; n])),
        ("attisdropped", bools(vec![false; n])),
        ("attislocal", bools(vec![true; n])),
        ("attcollation", i64s(vec![0; n])),
        ("attstattarget", i16s(vec![-1; n])),
    ])
}

/// The rows of [`PG_COLUMNS`].
fn columns(objects: &[Namespace]) -> Result<RecordBatch> {
    let (mut schema_names, mut table_names, mut names) = (Vec::new(), Vec::new(), Vec::new());
    let (mut position, mut nullable, mut data_type, mut udt) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for ns in objects {
        for (_, table, schema) in &ns.tables {
            for (i, f) in schema.fields().iter().enumerate() {
                let pg = pg_type_of(f.data_type());
                schema_names.push(ns.name.clone());
                table_names.push(table.clone());
                names.push(f.name().clone());
                position.push(i64::try_from(i + 1).unwrap_or(i64::MAX));
                nullable.push(if f.is_nullable() { "YES" } else { "NO" });
                data_type.push(pg.sql_name());
                udt.push(pg.name);
            }
        }
    }
    let n = names.len();
    batch(vec![
        ("table_catalog", strings(vec!["strata"; n])),
        ("table_schema", strings(schema_names)),
        ("table_name", strings(table_names)),
        ("column_name", strings(names)),
        ("ordinal_position", i64s(position)),
        ("column_default", nulls(n)),
        ("is_nullable", strings(nullable)),
        ("data_type", strings(data_type)),
        ("udt_name", strings(udt)),
    ])
}

fn types() -> Result<RecordBatch> {
    let t = PgType::ALL;
    let n = t.len();
    batch(vec![
        ("oid", i64s(t.iter().map(|t| i64::from(t.oid)))),
        ("typname", strings(t.iter().map(|t| t.name))),
        ("typnamespace", i64s(vec![PG_CATALOG_OID; n])),
        ("typowner", i64s(vec![10; n])),
        ("typlen", i16s(t.iter().map(|t| t.len))),
        (
            "typbyval",
            bools(t.iter().map(|t| (1..=8).contains(&t.len))),
        ),
        ("typtype", strings(vec!["b"; n])),
        ("typcategory", strings(t.iter().map(|t| category(*t)))),
        ("typisdefined", bools(vec![true; n])),
        ("typdelim", strings(vec![","; n])),
        ("typrelid", i64s(vec![0; n])),
        ("typelem", i64s(vec![0; n])),
        ("typarray", i64s(t.iter().map(|t| i64::from(t.array)))),
        ("typbasetype", i64s(vec![0; n])),
        ("typtypmod", i32s(vec![-1; n])),
        ("typnotnull", bools(vec![false; n])),
        ("typcollation", i64s(vec![0; n])),
        (
            "typinput",
            strings(t.iter().map(|t| format!("{}in", t.name))),
        ),
    ])
}

fn category(t: PgType) -> &'static str {
    match t.oid {
        16 => "B",
        20 | 21 | 23 | 26 | 700 | 701 | 1700 => "N",
        1082 | 1083 | 1114 | 1184 => "D",
        1186 => "T",
        705 => "X",
        17 | 114 => "U",
        _ => "S",
    }
}

fn databases() -> Result<RecordBatch> {
    batch(vec![
        ("oid", i64s([1])),
        ("datname", strings(["strata"])),
        ("datdba", i64s([10])),
        ("encoding", i32s([6])),
        ("datcollate", strings(["C"])),
        ("datctype", strings(["C"])),
        ("datistemplate", bools([false])),
        ("datallowconn", bools([true])),
        ("datconnlimit", i32s([-1])),
        ("datacl", nulls(1)),
    ])
}

fn access_methods() -> Result<RecordBatch> {
    batch(vec![
        ("oid", i64s([2])),
        ("amname", strings(["strata"])),
        ("amtype", strings(["t"])),
    ])
}

fn roles(table: &str) -> Result<RecordBatch> {
    let name = if table == "pg_user" {
        "usename"
    } else {
        "rolname"
    };
    batch(vec![
        ("oid", i64s([10])),
        (name, strings([OWNER])),
        ("rolsuper", bools([false])),
        ("rolcanlogin", bools([true])),
    ])
}

fn settings() -> Result<RecordBatch> {
    let rows = crate::pg_functions::SETTINGS;
    batch(vec![
        ("name", strings(rows.iter().map(|r| r.0))),
        ("setting", strings(rows.iter().map(|r| r.1))),
    ])
}

/// An empty table with the columns clients select from it.
fn empty(name: &str) -> Result<RecordBatch> {
    let columns: &[&str] = match name {
        "pg_index" => &[
            "indexrelid",
            "indrelid",
            "indisunique",
            "indisprimary",
            "indkey",
        ],
        "pg_constraint" => &["oid", "conname", "connamespace", "contype", "conrelid"],
        "pg_description" => &["objoid", "classoid", "objsubid", "description"],
        "pg_inherits" => &["inhrelid", "inhparent", "inhseqno"],
        "pg_proc" => &["oid", "proname", "pronamespace", "prorettype"],
        "pg_attrdef" => &["oid", "adrelid", "adnum", "adbin"],
        "pg_enum" => &["oid", "enumtypid", "enumsortorder", "enumlabel"],
        "pg_range" => &["rngtypid", "rngsubtype"],
        "pg_extension" => &["oid", "extname", "extversion", "extnamespace"],
        "pg_collation" => &["oid", "collname", "collnamespace"],
        _ => &["oid"],
    };
    let fields: Vec<Field> = columns
        .iter()
        .map(|c| {
            let text = matches!(
                *c,
                "conname"
                    | "contype"
                    | "description"
                    | "proname"
                    | "adbin"
                    | "enumlabel"
                    | "indkey"
                    | "extname"
                    | "collname"
                    | "extversion"
            );
            let bool_col = c.starts_with("indis");
            let ty = if text {
                DataType::Utf8
            } else if bool_col {
                DataType::Boolean
            } else {
                DataType::Int64
            };
            Field::new(*c, ty, true)
        })
        .collect();
    Ok(RecordBatch::new_empty(Arc::new(Schema::new(fields))))
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
    use datafusion::sql::sqlparser::parser::Parser;

    fn rewritten(sql: &str) -> String {
        let mut s = Parser::parse_sql(&PostgreSqlDialect {}, sql).unwrap();
        postgres_compat(&mut s[0]);
        s[0].to_string()
    }

    #[test]
    fn postgres_only_syntax_is_rewritten() {
        assert_eq!(
            rewritten("SELECT pg_catalog.version()"),
            "SELECT pg_version()"
        );
        let s = rewritten(
            "SELECT c.relname FROM pg_catalog.pg_class c WHERE c.relname OPERATOR(pg_catalog.~) '^(t)$' COLLATE pg_catalog.default AND pg_catalog.pg_table_is_visible(c.oid)",
        );
        assert!(s.contains("c.relname ~ '^(t)$'"), "{s}");
        assert!(s.contains(" pg_table_is_visible(c.oid)"), "{s}");
        assert!(s.contains("FROM pg_catalog.pg_class"), "{s}");
        assert!(!s.contains("COLLATE"), "{s}");
        let s = rewritten("SELECT 't'::regclass, c.oid::oid FROM x c");
        assert!(
            s.contains("CAST('t' AS TEXT)") || s.contains("'t'::TEXT"),
            "{s}"
        );
        assert!(s.contains("BIGINT"), "{s}");
        let s = rewritten("SELECT typname FROM pg_type t WHERE t.oid = to_regtype('x')");
        assert!(s.contains("FROM pg_catalog.pg_type"), "{s}");
    }

    #[test]
    fn arrow_types_map_to_postgres_types() {
        use arrow::datatypes::TimeUnit;
        assert_eq!(
            pg_type_of(&DataType::Timestamp(TimeUnit::Nanosecond, None)),
            PgType::TIMESTAMPTZ
        );
        assert_eq!(pg_type_of(&DataType::Float64), PgType::FLOAT8);
        assert_eq!(pg_type_of(&DataType::Utf8View), PgType::TEXT);
        assert_eq!(pg_type_of(&DataType::UInt64), PgType::INT8);
        assert_eq!(
            PgType::from_oid(1184).map(PgType::sql_name),
            Some("timestamp with time zone")
        );
        for t in PgType::ALL {
            assert_eq!(PgType::from_oid(t.oid), Some(*t));
        }
    }
}
