//! How values travel between the shared SQL and either engine: statements and their
//! arguments ([`Sql`], [`Arg`]), rows ([`Record`]), and timestamps ([`Time`]), which the two
//! engines store differently.
//!
//! It must never hold a statement: only the means to bind and decode one.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use sqlx::encode::IsNull;
use sqlx::error::BoxDynError;
use sqlx::postgres::{PgRow, Postgres};
use sqlx::query::Query;
use sqlx::sqlite::{Sqlite, SqliteRow};
use sqlx::{Arguments, AssertSqlSafe, Database, Decode, Encode, IntoArguments, Row, Type};
use uuid::Uuid;

use super::Dialect;
use crate::event::{EventId, EventStatus};
use crate::store::{Cause, StoreError};

/// A timestamp column: `timestamptz` on PostgreSQL, milliseconds since the epoch on SQLite.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Time(pub DateTime<Utc>);

impl Type<Postgres> for Time {
    fn type_info() -> <Postgres as Database>::TypeInfo {
        <DateTime<Utc> as Type<Postgres>>::type_info()
    }
    fn compatible(ty: &<Postgres as Database>::TypeInfo) -> bool {
        <DateTime<Utc> as Type<Postgres>>::compatible(ty)
    }
}

impl<'r> Decode<'r, Postgres> for Time {
    fn decode(value: <Postgres as Database>::ValueRef<'r>) -> Result<Self, BoxDynError> {
        Ok(Self(<DateTime<Utc> as Decode<Postgres>>::decode(value)?))
    }
}

impl Encode<'_, Postgres> for Time {
    fn encode_by_ref(
        &self,
        buf: &mut <Postgres as Database>::ArgumentBuffer,
    ) -> Result<IsNull, BoxDynError> {
        <DateTime<Utc> as Encode<Postgres>>::encode_by_ref(&self.0, buf)
    }
}

impl Type<Sqlite> for Time {
    fn type_info() -> <Sqlite as Database>::TypeInfo {
        <i64 as Type<Sqlite>>::type_info()
    }
    fn compatible(ty: &<Sqlite as Database>::TypeInfo) -> bool {
        <i64 as Type<Sqlite>>::compatible(ty)
    }
}

impl<'r> Decode<'r, Sqlite> for Time {
    fn decode(value: <Sqlite as Database>::ValueRef<'r>) -> Result<Self, BoxDynError> {
        let ms = <i64 as Decode<Sqlite>>::decode(value)?;
        DateTime::from_timestamp_millis(ms)
            .map(Self)
            .ok_or_else(|| format!("timestamp out of range: {ms} ms").into())
    }
}

impl Encode<'_, Sqlite> for Time {
    fn encode_by_ref(
        &self,
        buf: &mut <Sqlite as Database>::ArgumentBuffer,
    ) -> Result<IsNull, BoxDynError> {
        <i64 as Encode<Sqlite>>::encode(self.0.timestamp_millis(), buf)
    }
}

/// One bound value. Owned, so a statement can be built once and run on either engine.
#[derive(Debug, Clone)]
pub enum Arg {
    Text(String),
    MaybeText(Option<String>),
    Int(i64),
    Int32(i32),
    Id(Uuid),
    Bytes(Vec<u8>),
    Time(Time),
    MaybeTime(Option<Time>),
    Bool(bool),
}

impl From<&str> for Arg {
    fn from(v: &str) -> Self {
        Self::Text(v.to_owned())
    }
}
impl From<String> for Arg {
    fn from(v: String) -> Self {
        Self::Text(v)
    }
}
impl From<&String> for Arg {
    fn from(v: &String) -> Self {
        Self::Text(v.clone())
    }
}
impl From<Option<&str>> for Arg {
    fn from(v: Option<&str>) -> Self {
        Self::MaybeText(v.map(str::to_owned))
    }
}
impl From<i64> for Arg {
    fn from(v: i64) -> Self {
        Self::Int(v)
    }
}
impl From<i32> for Arg {
    fn from(v: i32) -> Self {
        Self::Int32(v)
    }
}
impl From<Uuid> for Arg {
    fn from(v: Uuid) -> Self {
        Self::Id(v)
    }
}
impl From<EventId> for Arg {
    fn from(v: EventId) -> Self {
        Self::Id(v.0)
    }
}
impl From<&[u8]> for Arg {
    fn from(v: &[u8]) -> Self {
        Self::Bytes(v.to_vec())
    }
}
impl From<DateTime<Utc>> for Arg {
    fn from(v: DateTime<Utc>) -> Self {
        Self::Time(Time(v))
    }
}
impl From<Option<DateTime<Utc>>> for Arg {
    fn from(v: Option<DateTime<Utc>>) -> Self {
        Self::MaybeTime(v.map(Time))
    }
}
impl From<bool> for Arg {
    fn from(v: bool) -> Self {
        Self::Bool(v)
    }
}

/// A statement and its arguments. The text uses `$1`, `$2`, ... and may say `{now}` for the
/// current time: `now()` on PostgreSQL (the database clock), the process clock on SQLite (the
/// same machine's clock: SQLite is embedded).
#[derive(Debug, Clone, Default)]
pub struct Sql {
    text: String,
    args: Vec<Arg>,
}

impl Sql {
    pub fn new(text: &str) -> Self {
        Self {
            text: text.to_owned(),
            args: Vec::new(),
        }
    }

    /// Add the value of the next `$n` written in the text.
    pub fn arg(mut self, value: impl Into<Arg>) -> Self {
        self.args.push(value.into());
        self
    }

    /// Append text.
    pub fn push(&mut self, text: &str) -> &mut Self {
        self.text.push_str(text);
        self
    }

    /// Append a placeholder for `value`.
    pub fn bind(&mut self, value: impl Into<Arg>) -> &mut Self {
        self.args.push(value.into());
        self.text.push_str(&format!("${}", self.args.len()));
        self
    }

    /// The statement for `DB`, ready to run.
    pub fn query<DB: Driver>(self) -> Result<Query<'static, DB, DB::Arguments>, StoreError> {
        let Self { mut text, mut args } = self;
        if text.contains("{now}") {
            let now = match DB::DIALECT {
                Dialect::Postgres => "now()".to_owned(),
                Dialect::Sqlite => {
                    args.push(Arg::Time(Time(Utc::now())));
                    format!("${}", args.len())
                }
            };
            text = text.replace("{now}", &now);
        }
        Ok(sqlx::query_with(AssertSqlSafe(text), DB::arguments(args)?))
    }
}

/// A database driver the SQL core can bind arguments for.
pub trait Driver: Database<Arguments: IntoArguments<Self>> {
    const DIALECT: Dialect;

    fn arguments(args: Vec<Arg>) -> Result<Self::Arguments, StoreError>;
}

impl Driver for Postgres {
    const DIALECT: Dialect = Dialect::Postgres;

    fn arguments(args: Vec<Arg>) -> Result<Self::Arguments, StoreError> {
        arguments::<Self>(args)
    }
}

impl Driver for Sqlite {
    const DIALECT: Dialect = Dialect::Sqlite;

    fn arguments(args: Vec<Arg>) -> Result<Self::Arguments, StoreError> {
        arguments::<Self>(args)
    }
}

fn arguments<DB>(args: Vec<Arg>) -> Result<DB::Arguments, StoreError>
where
    DB: Database,
    for<'q> String: Encode<'q, DB> + Type<DB>,
    for<'q> Option<String>: Encode<'q, DB> + Type<DB>,
    for<'q> i64: Encode<'q, DB> + Type<DB>,
    for<'q> i32: Encode<'q, DB> + Type<DB>,
    for<'q> Uuid: Encode<'q, DB> + Type<DB>,
    for<'q> Vec<u8>: Encode<'q, DB> + Type<DB>,
    for<'q> Time: Encode<'q, DB> + Type<DB>,
    for<'q> Option<Time>: Encode<'q, DB> + Type<DB>,
    for<'q> bool: Encode<'q, DB> + Type<DB>,
{
    let mut out = DB::Arguments::default();
    for arg in args {
        match arg {
            Arg::Text(v) => out.add(v),
            Arg::MaybeText(v) => out.add(v),
            Arg::Int(v) => out.add(v),
            Arg::Int32(v) => out.add(v),
            Arg::Id(v) => out.add(v),
            Arg::Bytes(v) => out.add(v),
            Arg::Time(v) => out.add(v),
            Arg::MaybeTime(v) => out.add(v),
            Arg::Bool(v) => out.add(v),
        }
        .map_err(|e| StoreError::Other(Cause::Database(Arc::new(sqlx::Error::Encode(e)))))?;
    }
    Ok(out)
}

/// A column type both engines decode.
pub trait Value:
    Sized
    + Send
    + for<'r> Decode<'r, Postgres>
    + Type<Postgres>
    + for<'r> Decode<'r, Sqlite>
    + Type<Sqlite>
{
}

impl<T> Value for T where
    T: Sized
        + Send
        + for<'r> Decode<'r, Postgres>
        + Type<Postgres>
        + for<'r> Decode<'r, Sqlite>
        + Type<Sqlite>
{
}

/// A result row of either engine.
pub trait Record: Send + Sync {
    fn get<T: Value>(&self, col: &str) -> Result<T, StoreError>;

    /// A timestamp column.
    fn time(&self, col: &str) -> Result<DateTime<Utc>, StoreError> {
        Ok(self.get::<Time>(col)?.0)
    }

    /// A timestamp column that may be NULL.
    fn maybe_time(&self, col: &str) -> Result<Option<DateTime<Utc>>, StoreError> {
        Ok(self.get::<Option<Time>>(col)?.map(|t| t.0))
    }

    /// A status column.
    fn status(&self, col: &str) -> Result<EventStatus, StoreError> {
        let s: String = self.get(col)?;
        EventStatus::parse(&s).ok_or_else(|| StoreError::other(format!("unknown status {s:?}")))
    }

    /// A count or size column that cannot be negative.
    fn count(&self, col: &str) -> Result<u64, StoreError> {
        Ok(self.get::<i64>(col)?.max(0) as u64)
    }

    /// An `integer` column (attempts, generations).
    fn small(&self, col: &str) -> Result<u32, StoreError> {
        Ok(self.get::<i32>(col)?.max(0) as u32)
    }
}

impl Record for PgRow {
    fn get<T: Value>(&self, col: &str) -> Result<T, StoreError> {
        Ok(self.try_get(col)?)
    }
}

impl Record for SqliteRow {
    fn get<T: Value>(&self, col: &str) -> Result<T, StoreError> {
        Ok(self.try_get(col)?)
    }
}

#[cfg(test)]
mod tests {
    use sqlx::sqlite::SqlitePool;

    use super::*;

    /// The one row `q` returns on an in-memory SQLite database.
    async fn one(q: Sql) -> SqliteRow {
        let pool = SqlitePool::connect("sqlite::memory:").await.unwrap();
        q.query::<Sqlite>().unwrap().fetch_one(&pool).await.unwrap()
    }

    #[tokio::test]
    async fn placeholders_number_the_arguments_and_now_is_bound_last() {
        let at = DateTime::from_timestamp_millis(1_700_000_000_123).unwrap();
        let mut q = Sql::new("SELECT $1 AS a, ").arg("x");
        q.bind(at)
            .push(" AS t, {now} AS n, ")
            .bind(7i64)
            .push(" AS b");
        let before = Utc::now().timestamp_millis();
        let row = one(q).await;
        assert_eq!(Record::get::<String>(&row, "a").unwrap(), "x");
        assert_eq!(
            row.time("t").unwrap(),
            at,
            "a time goes in and out as itself"
        );
        assert_eq!(Record::get::<i64>(&row, "b").unwrap(), 7);
        let now = row.time("n").unwrap().timestamp_millis();
        assert!(
            now >= before && now <= Utc::now().timestamp_millis(),
            "{now}"
        );
    }

    #[tokio::test]
    async fn a_timestamp_out_of_range_is_an_error_not_a_default() {
        let q = Sql::new("SELECT $1 AS t").arg(i64::MAX);
        let row = one(q).await;
        let e = row.time("t").unwrap_err();
        assert!(matches!(e, StoreError::Other(Cause::Database(_))), "{e}");
        assert!(e.to_string().contains("out of range"), "{e}");
    }

    #[tokio::test]
    async fn an_unknown_status_is_an_error() {
        let q = Sql::new("SELECT 'sleeping' AS status");
        let row = one(q).await;
        let e = row.status("status").unwrap_err();
        assert!(e.to_string().contains("unknown status \"sleeping\""), "{e}");
    }
}
