//! `remote`: the remote tier's state (`status`: endpoint without credentials, mode, breaker,
//! whether the server answers, the counters of this run's probe and the lifetime counters of
//! the root's tags) and signing keys (`keygen`).
//!
//! The breaker is shown as the probe left it. When the breaker hint under the root says the
//! endpoint is down (another run failed to reach it within the open period), the run starts with
//! the breaker open: the probe is skipped (`this_run.skipped` 1, `reachable` false) and costs no
//! timeout.

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;

use anyhow::{Context as _, bail};
use cache_core::{RemoteStore as _, Tag};
use cache_remote::{BreakerState, RemoteMode, SecretKey};
use serde::Serialize;

use crate::cli::{RemoteArgs, RemoteCommand};
use crate::commands::show::{self, RemoteRow};
use crate::exit::UsageError;
use crate::output::Output;
use crate::render::Table;
use crate::root::CacheRoot;

#[derive(Serialize)]
struct Status {
    configured: bool,
    endpoint: Option<String>,
    mode: Option<&'static str>,
    prefix: Option<String>,
    signing: bool,
    verifying: bool,
    reachable: Option<bool>,
    breaker: Option<&'static str>,
    /// Where large values' chunks go when not to the endpoint (the split setup).
    chunks: Option<String>,
    /// `fleet`: one machine computes a missing entry for all (Redis leases); `none`: each
    /// machine computes (S3 alone).
    leases: Option<&'static str>,
    /// This run's counters (its probe).
    this_run: Option<RemoteRow>,
    /// The lifetime counters persisted with the root's tags, summed.
    lifetime: Option<RemoteRow>,
}

pub(crate) fn run(root: &CacheRoot, args: &RemoteArgs, output: &Output) -> anyhow::Result<()> {
    match &args.command {
        RemoteCommand::Status => status(root, output),
        RemoteCommand::Keygen { name, output: path } => keygen(name, path, output),
    }
}

fn status(root: &CacheRoot, output: &Output) -> anyhow::Result<()> {
    let Some(remote) = root.remote() else {
        let report = Status {
            configured: false,
            endpoint: None,
            mode: None,
            prefix: None,
            signing: false,
            verifying: false,
            reachable: None,
            breaker: None,
            chunks: None,
            leases: None,
            this_run: None,
            lifetime: None,
        };
        if output.is_json() {
            return output.json(&report);
        }
        return output
            .text("no remote configured (GLOVEBOX_CACHE_REMOTE is unset, or its mode is off)\n");
    };
    let config = remote.config();
    // Read before the probe, whose counts this run's close persists with a tag's.
    let lifetime = RemoteRow::from(&show::remote_lifetime(root)?);
    // One probe: a fetch of a key nobody stores answers whether the server is reachable.
    let probe_tag = Tag::new("status").context("the probe's tag")?;
    let reachable = remote
        .fetch(&probe_tag, b"glovebox-cache remote status probe")
        .is_ok()
        && remote.stats().errors == 0
        && remote.stats().skipped == 0;
    let this_run = RemoteRow::from(&remote.stats().counters());
    let report = Status {
        configured: true,
        endpoint: Some(config.endpoint.clone()),
        mode: Some(match config.mode {
            RemoteMode::ReadWrite => "rw",
            RemoteMode::ReadOnly => "ro",
        }),
        prefix: Some(config.prefix.clone()),
        signing: config.signing_key.is_some(),
        verifying: config.trusted_keys.is_some(),
        reachable: Some(reachable),
        breaker: Some(match remote.breaker_state() {
            BreakerState::Closed => "closed",
            BreakerState::Open => "open",
            BreakerState::HalfOpen => "half-open",
        }),
        chunks: config.chunks.clone(),
        leases: Some(if remote.coordinates_fleet() {
            "fleet"
        } else {
            "none"
        }),
        this_run: Some(this_run),
        lifetime: Some(lifetime),
    };
    if output.is_json() {
        return output.json(&report);
    }
    output.text(&format!(
        "endpoint   {}{}\nmode       {}\nprefix     {}\nsigning    {}\nverifying  {}\nreachable  {}\nbreaker    {}\nleases     {}\n",
        config.endpoint,
        config
            .chunks
            .as_ref()
            .map_or(String::new(), |chunks| format!("\nchunks     {chunks}")),
        report.mode.unwrap_or("-"),
        config.prefix,
        if report.signing { "yes" } else { "no" },
        if report.verifying { "yes (trusted keys)" } else { "no" },
        if reachable { "yes" } else { "no" },
        report.breaker.unwrap_or("-"),
        if remote.coordinates_fleet() {
            "fleet (one machine computes a missing entry for all)"
        } else {
            "none (S3 alone: each machine computes what it misses)"
        },
    ))?;
    let mut table = Table::new(&RemoteRow::columns("COUNTERS"));
    table.row(this_run.cells("this run".to_owned()));
    table.row(lifetime.cells("lifetime".to_owned()));
    output.text(&table.render())
}

#[derive(Serialize)]
struct Keygen {
    name: String,
    secret_key_file: String,
    public_line: String,
}

fn keygen(name: &str, path: &std::path::Path, output: &Output) -> anyhow::Result<()> {
    let key = SecretKey::generate(name).map_err(|err| UsageError(err.to_string()))?;
    let mut file = match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(file) => file,
        Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => {
            bail!(UsageError(format!(
                "{} exists; a key file is never overwritten",
                path.display()
            )))
        }
        Err(err) => {
            return Err(err).with_context(|| format!("while creating {}", path.display()));
        }
    };
    file.write_all(key.to_file_text().as_bytes())
        .and_then(|()| file.sync_all())
        .with_context(|| format!("while writing {}", path.display()))?;
    if output.is_json() {
        return output.json(&Keygen {
            name: name.to_owned(),
            secret_key_file: path.display().to_string(),
            public_line: key.public_line(),
        });
    }
    output.text(&format!("{}\n", key.public_line()))?;
    output.note(&format!(
        "secret key written to {} (readable by you only); give the line above to readers",
        path.display()
    ))
}
