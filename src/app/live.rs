//! The live configuration of a process: the file's providers and routes plus the stored
//! configuration, built at start (a stored configuration this process cannot apply stops it)
//! and followed for changes until shutdown.

use std::sync::Arc;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::StartError;
use crate::config::Config;
use crate::live::{Base, Live};
use crate::store::EventStore;

/// The providers and routes of the file and the stored configuration, followed for changes
/// until shutdown. A stored configuration this process cannot apply (a secret under a key it
/// does not have) stops start-up.
pub(super) async fn start(
    config: &Config,
    store: &Arc<dyn EventStore>,
    shutdown: &watch::Receiver<bool>,
    tasks: &mut Vec<JoinHandle<()>>,
) -> Result<Arc<Live>, StartError> {
    let base = Base {
        providers: config.providers.clone(),
        actions: config.actions.clone(),
        public_url: config.public_url.clone(),
    };
    let live = Live::start(store.clone(), base, config.live.clone()).await?;
    let postgres = (store.backend() == "postgres").then(|| config.store.database_url.clone());
    tasks.push(tokio::spawn(crate::live::watch::run(
        live.clone(),
        postgres,
        shutdown.clone(),
    )));
    Ok(live)
}
