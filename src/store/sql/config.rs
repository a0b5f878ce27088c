//! [`ConfigVersions`] for any engine, written once.
//!
//! It must never change a version once written.

use async_trait::async_trait;

use super::{Engine, Record, Sql};
use crate::store::StoreError;
use crate::store::config::{ConfigVersion, ConfigVersions};

const COLUMNS: &str = "SELECT version, document, actor, at, summary FROM config_versions";

fn version<R: Record>(r: &R) -> Result<ConfigVersion, StoreError> {
    Ok(ConfigVersion {
        version: r.get("version")?,
        document: r.get("document")?,
        actor: r.get("actor")?,
        at: r.time("at")?,
        summary: r.get("summary")?,
    })
}

#[async_trait]
impl<E: Engine> ConfigVersions for E {
    async fn config_head(&self) -> Result<i64, StoreError> {
        let q = Sql::new("SELECT COALESCE(MAX(version), 0) AS head FROM config_versions");
        match self.read(q).await?.first() {
            Some(r) => r.get("head"),
            None => Ok(0),
        }
    }

    async fn config_latest(&self) -> Result<Option<ConfigVersion>, StoreError> {
        // From the writer's side: a process applying a notification must see the row it names.
        let q = Sql::new(&format!("{COLUMNS} ORDER BY version DESC LIMIT 1"));
        self.write_rows(q).await?.first().map(version).transpose()
    }

    async fn config_write(&self, v: &ConfigVersion) -> Result<bool, StoreError> {
        let q = Sql::new(
            "INSERT INTO config_versions (version, document, actor, at, summary)
             VALUES ($1, $2, $3, {now}, $4) ON CONFLICT (version) DO NOTHING",
        )
        .arg(v.version)
        .arg(&v.document)
        .arg(&v.actor)
        .arg(&v.summary);
        Ok(self.write(q).await? == 1)
    }

    async fn config_history(
        &self,
        before: Option<i64>,
        limit: u32,
    ) -> Result<Vec<ConfigVersion>, StoreError> {
        let mut q = Sql::new(&format!("{COLUMNS} WHERE true"));
        if let Some(b) = before {
            q.push(" AND version < ").bind(b);
        }
        q.push(" ORDER BY version DESC LIMIT ")
            .bind(i64::from(limit));
        self.read(q).await?.iter().map(version).collect()
    }
}
