//! Downloading the release's `.gz` files over plain HTTP.
//!
//! Each file is fetched into memory, decompressed and checked (IDX format, and MD5
//! if verifying) before anything is written; then it goes to a temporary file in the
//! target directory that is renamed into place. An interrupted or corrupt download
//! never leaves a file under a final name.

use std::io::{IsTerminal, Read, Write};
use std::path::Path;
use std::time::Duration;

use anyhow::{anyhow, bail, Result};
use indicatif::{ProgressBar, ProgressStyle};
use ureq::Agent;

use super::files::GET_BY_HAND;
use super::files::{self, DataFile, FILES};
use super::idx;

/// Zalando's mirror of the release (plain HTTP).
pub const OFFICIAL_MIRROR: &str = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/";

/// More than any file of the release (the largest, gzip'ed, is 26 MB): a bound on
/// what a misbehaving server can make this hold in memory.
const MAX_BYTES: u64 = 100 << 20;

/// Downloads into `dir` (created if needed) each of the four files that it lacks,
/// from `mirror`.
pub(crate) fn download_missing(dir: &Path, mirror: &str, verify: bool) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| {
        anyhow!(
            "{}: cannot create the download directory: {e}",
            dir.display()
        )
    })?;
    let agent: Agent = Agent::config_builder()
        .http_status_as_error(false)
        .timeout_connect(Some(Duration::from_secs(30)))
        .timeout_per_read(Some(Duration::from_secs(60)))
        .build()
        .into();
    for file in FILES.iter().filter(|f| files::find(dir, f.name).is_none()) {
        let url = format!(
            "{}/{}",
            mirror.trim_end_matches('/'),
            files::gz_name(file.name)
        );
        fetch(&agent, &url, dir, file, verify).map_err(|e| {
            let e = format!("{e:#}");
            let stop = if e.ends_with('.') { "" } else { "." };
            anyhow!("download failed: {e}{stop} {GET_BY_HAND}")
        })?;
    }
    Ok(())
}

/// Downloads `url`, checks it as `file`, and saves it in `dir` as `NAME.gz`.
fn fetch(agent: &Agent, url: &str, dir: &Path, file: &DataFile, verify: bool) -> Result<()> {
    let mut response = agent.get(url).call().map_err(|e| anyhow!("{url}: {e}"))?;
    let status = response.status();
    if !status.is_success() {
        bail!(
            "{url}: HTTP status {} {}",
            status.as_u16(),
            status.canonical_reason().unwrap_or("")
        );
    }
    let expected = response.body().content_length();
    if let Some(n) = expected.filter(|&n| n > MAX_BYTES) {
        bail!("{url}: the server announces {n} bytes, more than any Fashion-MNIST file");
    }
    let progress = Progress::start(url, file.name, expected);
    let mut bytes = Vec::with_capacity(expected.unwrap_or(0) as usize);
    let read = progress
        .wrap(response.body_mut().as_reader())
        .take(MAX_BYTES + 1)
        .read_to_end(&mut bytes);
    progress.finish(bytes.len());
    let announced = expected.map_or(String::new(), |n| format!(" of the {n} announced"));
    if let Err(e) = read {
        bail!(
            "{url}: transfer failed after {} bytes{announced}: {e}",
            bytes.len()
        );
    }
    if bytes.len() as u64 > MAX_BYTES || expected.is_some_and(|n| n != bytes.len() as u64) {
        bail!("{url}: received {} bytes{announced}", bytes.len());
    }

    let content = files::gunzip(url, &bytes)?;
    idx::parse(url, &content, file.kind)?;
    if verify {
        files::verify_md5(url, &content, file)?;
    }
    save(dir, &files::gz_name(file.name), &bytes)
}

/// Writes `bytes` to `dir/name` through a temporary file, so that `name` appears
/// complete or not at all.
fn save(dir: &Path, name: &str, bytes: &[u8]) -> Result<()> {
    let path = dir.join(name);
    let fail = |what: &str, e: &dyn std::fmt::Display| anyhow!("{}: {what}: {e}", path.display());
    let mut tmp = tempfile::Builder::new()
        .prefix(&format!(".{name}."))
        .suffix(".part")
        .tempfile_in(dir)
        .map_err(|e| fail("cannot create a temporary file beside it", &e))?;
    tmp.write_all(bytes)
        .and_then(|()| tmp.as_file().sync_all())
        .map_err(|e| fail("cannot write", &e))?;
    tmp.persist(&path)
        .map_err(|e| fail("cannot rename the temporary file to it", &e.error))?;
    Ok(())
}

/// A progress bar on a terminal, a line before and after otherwise (logs).
enum Progress {
    Bar(ProgressBar),
    Lines,
}

impl Progress {
    fn start(url: &str, name: &str, len: Option<u64>) -> Progress {
        if !std::io::stderr().is_terminal() {
            eprintln!("Downloading {url}");
            return Progress::Lines;
        }
        let bar = match len {
            Some(len) => ProgressBar::new(len).with_style(
                ProgressStyle::with_template(
                    "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
                )
                .expect("a valid template")
                .progress_chars("=> "),
            ),
            None => ProgressBar::new_spinner(),
        };
        Progress::Bar(bar.with_message(name.to_string()))
    }

    fn wrap<'a>(&self, reader: impl Read + 'a) -> Box<dyn Read + 'a> {
        match self {
            Progress::Bar(bar) => Box::new(bar.wrap_read(reader)),
            Progress::Lines => Box::new(reader),
        }
    }

    fn finish(&self, bytes: usize) {
        match self {
            Progress::Bar(bar) => bar.finish(),
            Progress::Lines => eprintln!("  {bytes} bytes received"),
        }
    }
}
