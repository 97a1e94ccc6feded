//! The Fashion-MNIST module on crafted files in temporary directories: every kind of
//! bad input, gzip'ed and raw files, downloads from a tiny HTTP server on 127.0.0.1,
//! and the epoch shuffling. The real data set is read too where Debian's
//! `dataset-fashion-mnist` is installed.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};

mod common;

use common::idx::{gz, header, images_idx, labels_idx, write_set};
use common::system_data::{self, SYSTEM_DIR};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use googlenet::data::{epoch_order, load, load_dir, DataOptions, CLASS_NAMES, FILES};

// ---------------------------------------------------------------- crafted files

/// The contents of a small data set: 3 training and 2 test samples, in `FILES`
/// order.
fn small_set() -> [Vec<u8>; 4] {
    [
        images_idx(3, 28),
        labels_idx(&[9, 0, 5]),
        images_idx(2, 28),
        labels_idx(&[1, 2]),
    ]
}

/// A temporary directory holding the small set, raw, with file `index` replaced by
/// `content`.
fn set_with(index: usize, content: Vec<u8>) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let mut set = small_set();
    set[index] = content;
    write_set(dir.path(), &set, false);
    dir
}

/// Asserts that loading `dir` fails with a message that holds each of `needles`.
fn assert_fails(dir: &Path, verify: bool, needles: &[&str]) -> String {
    let message = match load_dir(dir, verify) {
        Ok(_) => panic!("{} loaded, but should have failed", dir.display()),
        Err(e) => format!("{e:#}"),
    };
    for needle in needles {
        assert!(
            message.contains(needle),
            "error {message:?} should mention {needle:?}"
        );
    }
    message
}

fn path_of(dir: &Path, name: &str) -> String {
    dir.join(name).display().to_string()
}

// ---------------------------------------------------------------- reading

#[test]
fn gzip_and_raw_files_read_the_same() {
    let (raw, gzipped) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    write_set(raw.path(), &small_set(), false);
    write_set(gzipped.path(), &small_set(), true);
    let a = load_dir(raw.path(), false).unwrap();
    let b = load_dir(gzipped.path(), false).unwrap();
    assert_eq!(a.train, b.train);
    assert_eq!(a.test, b.test);
    assert_eq!((a.train.len(), a.test.len()), (3, 2));
    assert_eq!((a.train.rows, a.train.cols), (28, 28));
    assert_eq!(a.train.labels, [9, 0, 5]);
    assert_eq!(a.test.labels, [1, 2]);
    assert_eq!(a.train.images, images_idx(3, 28)[16..]);
    assert_eq!(a.source, raw.path());
}

#[test]
fn raw_file_is_preferred_over_gzip() {
    let dir = tempfile::tempdir().unwrap();
    write_set(dir.path(), &small_set(), false);
    // A broken .gz beside a good raw file is never opened.
    std::fs::write(dir.path().join("train-labels-idx1-ubyte.gz"), b"junk").unwrap();
    assert_eq!(load_dir(dir.path(), false).unwrap().train.labels, [9, 0, 5]);
}

#[test]
fn missing_file_is_named() {
    let dir = tempfile::tempdir().unwrap();
    write_set(dir.path(), &small_set(), true);
    std::fs::remove_file(dir.path().join("t10k-labels-idx1-ubyte.gz")).unwrap();
    let path = path_of(dir.path(), "t10k-labels-idx1-ubyte");
    assert_fails(dir.path(), false, &[&path, "missing"]);
}

#[test]
fn wrong_magic_number() {
    // An image file where the training labels should be.
    let dir = set_with(1, images_idx(3, 28));
    let path = path_of(dir.path(), "train-labels-idx1-ubyte");
    assert_fails(
        dir.path(),
        false,
        &[&path, "wrong magic number 0x00000803", "0x00000801"],
    );
}

#[test]
fn truncated_data() {
    let mut content = images_idx(3, 28);
    content.truncate(content.len() - 100);
    let dir = set_with(0, content);
    let path = path_of(dir.path(), "train-images-idx3-ubyte");
    assert_fails(
        dir.path(),
        false,
        &[&path, "truncated", "3 images of 28x28", "2252 bytes"],
    );
}

#[test]
fn truncated_header() {
    let dir = set_with(2, header(0x803, &[2]));
    let path = path_of(dir.path(), "t10k-images-idx3-ubyte");
    assert_fails(dir.path(), false, &[&path, "truncated", "header"]);
}

#[test]
fn trailing_garbage() {
    let mut content = labels_idx(&[1, 2]);
    content.extend_from_slice(b"xyz");
    let dir = set_with(3, content);
    let path = path_of(dir.path(), "t10k-labels-idx1-ubyte");
    assert_fails(dir.path(), false, &[&path, "3 bytes of trailing garbage"]);
}

#[test]
fn image_and_label_counts_must_match() {
    let dir = set_with(1, labels_idx(&[9, 0]));
    let images = path_of(dir.path(), "train-images-idx3-ubyte");
    let labels = path_of(dir.path(), "train-labels-idx1-ubyte");
    assert_fails(
        dir.path(),
        false,
        &[&images, &labels, "3 images", "2 labels"],
    );
}

#[test]
fn label_out_of_range() {
    let dir = set_with(3, labels_idx(&[1, 10]));
    let path = path_of(dir.path(), "t10k-labels-idx1-ubyte");
    assert_fails(
        dir.path(),
        false,
        &[&path, "label 10 at index 1", "out of range"],
    );
}

#[test]
fn wrong_image_size() {
    let dir = set_with(0, images_idx(3, 32));
    let path = path_of(dir.path(), "train-images-idx3-ubyte");
    assert_fails(dir.path(), false, &[&path, "32x32", "28x28"]);
}

#[test]
fn corrupt_gzip() {
    let dir = tempfile::tempdir().unwrap();
    write_set(dir.path(), &small_set(), true);
    let name = "train-images-idx3-ubyte.gz";
    let mut bytes = std::fs::read(dir.path().join(name)).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(dir.path().join(name), bytes).unwrap();
    assert_fails(dir.path(), false, &[&path_of(dir.path(), name), "gzip"]);

    // Not gzip at all under a .gz name.
    std::fs::write(dir.path().join(name), images_idx(3, 28)).unwrap();
    assert_fails(
        dir.path(),
        false,
        &[&path_of(dir.path(), name), "not gzip data"],
    );
}

#[test]
fn checksum_mismatch_suggests_no_verify() {
    let dir = tempfile::tempdir().unwrap();
    write_set(dir.path(), &small_set(), true);
    let path = path_of(dir.path(), "train-images-idx3-ubyte.gz");
    let message = assert_fails(
        dir.path(),
        true,
        &[
            &path,
            "checksum mismatch",
            "f4a8712d7a061bf5bd6d2ca38dc4d50a",
            "--no-verify",
        ],
    );
    // The actual sum is there too.
    let actual = format!("{:x}", md5_of(&images_idx(3, 28)));
    assert!(
        message.contains(&actual),
        "{message:?} should hold {actual}"
    );
}

fn md5_of(bytes: &[u8]) -> u128 {
    use md5::{Digest, Md5};
    u128::from_be_bytes(Md5::digest(bytes).into())
}

#[test]
fn explicit_data_dir_does_not_fall_back() {
    let dir = tempfile::tempdir().unwrap();
    write_set(dir.path(), &small_set(), false);
    std::fs::remove_file(dir.path().join("t10k-images-idx3-ubyte")).unwrap();
    let opts = DataOptions {
        data_dir: Some(dir.path().to_path_buf()),
        verify: false,
        download: true,
        mirror: "http://127.0.0.1:9/".into(),
    };
    let message = format!("{:#}", load(&opts).unwrap_err());
    for needle in [
        &dir.path().display().to_string(),
        "t10k-images-idx3-ubyte",
        "--data-dir",
    ] {
        assert!(
            message.contains(needle),
            "{message:?} should mention {needle:?}"
        );
    }
    // Nothing was downloaded into a directory that holds part of a set.
    assert!(!dir.path().join("t10k-images-idx3-ubyte.gz").exists());
}

#[test]
fn split_truncated() {
    let dir = tempfile::tempdir().unwrap();
    write_set(dir.path(), &small_set(), false);
    let train = load_dir(dir.path(), false).unwrap().train;

    let first2 = train.truncated(2);
    assert_eq!(first2.len(), 2);
    assert_eq!(first2.labels, [9, 0]);
    assert_eq!(first2.images, train.images[..2 * 784]);
    assert_eq!(train.truncated(100), train);
}

/// The real data set, where the Debian package is installed (CI installs it).
#[test]
fn real_files_load_and_verify() {
    if !system_data::present() {
        return;
    }
    let data = load(&DataOptions {
        data_dir: Some(SYSTEM_DIR.into()),
        download: false,
        ..DataOptions::default()
    })
    .unwrap();
    assert_eq!(data.source, Path::new(SYSTEM_DIR));
    assert_eq!((data.train.len(), data.test.len()), (60000, 10000));
    assert_eq!(data.train.images.len(), 60000 * 28 * 28);
    assert_eq!(data.train.labels[0], 9);
    assert_eq!(CLASS_NAMES[data.train.labels[0] as usize], "Ankle boot");
    // Balanced: 6000 and 1000 of each class.
    for (split, each) in [(&data.train, 6000), (&data.test, 1000)] {
        let mut counts = [0; 10];
        split.labels.iter().for_each(|&l| counts[l as usize] += 1);
        assert_eq!(counts, [each; 10]);
    }
}

// ---------------------------------------------------------------- downloads

/// What the test server answers for one path.
#[derive(Clone)]
enum Reply {
    Body(Vec<u8>),
    Status(u16),
    /// Announces `claimed` bytes, sends `body`, closes.
    CutShort {
        claimed: usize,
        body: Vec<u8>,
    },
}

/// Serves `routes` (file name → reply) on 127.0.0.1 from a thread that stops after
/// `requests` requests or 20 seconds; returns the base URL.
fn serve(routes: HashMap<String, Reply>, requests: usize) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    listener.set_nonblocking(true).unwrap();
    std::thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut served = 0;
        while served < requests && Instant::now() < deadline {
            match listener.accept() {
                Ok((stream, _)) => {
                    let _ = answer(stream, &routes);
                    served += 1;
                }
                Err(_) => std::thread::sleep(Duration::from_millis(5)),
            }
        }
    });
    url
}

fn answer(mut stream: TcpStream, routes: &HashMap<String, Reply>) -> std::io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line == "\r\n" {
            break;
        }
    }
    let path = request_line.split(' ').nth(1).unwrap_or("/");
    let reply = routes.get(path.trim_start_matches('/')).cloned();
    let (status, claimed, body) = match reply {
        Some(Reply::Body(body)) => (200, body.len(), body),
        Some(Reply::Status(code)) => (code, 5, b"error".to_vec()),
        Some(Reply::CutShort { claimed, body }) => (200, claimed, body),
        None => (404, 9, b"not found".to_vec()),
    };
    write!(
        stream,
        "HTTP/1.1 {status} X\r\nContent-Length: {claimed}\r\nConnection: close\r\n\r\n"
    )?;
    stream.write_all(&body)?;
    stream.flush()
}

/// The small set's files as served by a mirror: `NAME.gz` → gzip'ed content.
fn small_mirror() -> HashMap<String, Reply> {
    FILES
        .iter()
        .zip(small_set())
        .map(|(f, content)| (format!("{}.gz", f.name), Reply::Body(gz(&content))))
        .collect()
}

fn download_into(
    dir: &Path,
    mirror: String,
    verify: bool,
) -> anyhow::Result<googlenet::data::FashionMnist> {
    load(&DataOptions {
        data_dir: Some(dir.to_path_buf()),
        verify,
        download: true,
        mirror,
    })
}

/// The names in `dir`, sorted.
fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn gz_names(count: usize) -> Vec<String> {
    let mut names: Vec<String> = FILES[..count]
        .iter()
        .map(|f| format!("{}.gz", f.name))
        .collect();
    names.sort();
    names
}

#[test]
fn download_good_files() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("new"); // created by the download
    let data = download_into(&target, serve(small_mirror(), 4), false).unwrap();
    assert_eq!(data.train.labels, [9, 0, 5]);
    assert_eq!(data.test.labels, [1, 2]);
    assert_eq!(data.source, target);
    assert_eq!(listing(&target), gz_names(4));
}

#[test]
fn download_real_files_and_verify() {
    if !system_data::present() {
        return;
    }
    let routes = FILES
        .iter()
        .map(|f| {
            let name = format!("{}.gz", f.name);
            let bytes = std::fs::read(Path::new(SYSTEM_DIR).join(&name)).unwrap();
            (name, Reply::Body(bytes))
        })
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let data = download_into(dir.path(), serve(routes, 4), true).unwrap();
    assert_eq!((data.train.len(), data.test.len()), (60000, 10000));
    assert_eq!(listing(dir.path()), gz_names(4));
}

/// Downloads from `routes` and expects a failure mentioning `needles`, with only the
/// first `completed` files saved and no temporary files left.
fn assert_download_fails(
    routes: HashMap<String, Reply>,
    verify: bool,
    completed: usize,
    needles: &[&str],
) {
    let dir = tempfile::tempdir().unwrap();
    let url = serve(routes, 4);
    let message = format!(
        "{:#}",
        download_into(dir.path(), url.clone(), verify).unwrap_err()
    );
    let failed = format!("{url}{}.gz", FILES[completed].name);
    for needle in [
        failed.as_str(),
        "apt-get install dataset-fashion-mnist",
        "--data-dir",
    ]
    .iter()
    .chain(needles)
    {
        assert!(
            message.contains(needle),
            "{message:?} should mention {needle:?}"
        );
    }
    assert_eq!(listing(dir.path()), gz_names(completed));
}

#[test]
fn download_corrupt_file() {
    let mut routes = small_mirror();
    let mut bytes = gz(&small_set()[1]);
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    routes.insert("train-labels-idx1-ubyte.gz".into(), Reply::Body(bytes));
    assert_download_fails(routes, false, 1, &["gzip"]);
}

#[test]
fn download_checksum_mismatch() {
    // Well-formed files that are not the official ones.
    assert_download_fails(
        small_mirror(),
        true,
        0,
        &["checksum mismatch", "--no-verify"],
    );
}

#[test]
fn download_server_error() {
    let mut routes = small_mirror();
    routes.insert("t10k-images-idx3-ubyte.gz".into(), Reply::Status(500));
    assert_download_fails(routes, false, 2, &["HTTP status 500"]);
}

#[test]
fn download_interrupted() {
    let mut routes = small_mirror();
    let body = gz(&small_set()[0]);
    let cut = Reply::CutShort {
        claimed: body.len() + 1000,
        body,
    };
    routes.insert("train-images-idx3-ubyte.gz".into(), cut);
    assert_download_fails(routes, false, 0, &[]);
}

#[test]
fn download_unreachable_mirror() {
    // Nothing listens on a port just released.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}/");
    let dir = tempfile::tempdir().unwrap();
    let message = format!(
        "{:#}",
        download_into(dir.path(), url.clone(), false).unwrap_err()
    );
    assert!(message.contains(&url), "{message:?} should name {url}");
    assert!(listing(dir.path()).is_empty());
}

// ---------------------------------------------------------------- shuffling

#[test]
fn epoch_order_is_a_deterministic_permutation() {
    let order = epoch_order(1000, 7, 3);
    let mut sorted = order.clone();
    sorted.sort();
    assert_eq!(sorted, (0..1000).collect::<Vec<u32>>());
    assert_ne!(order, sorted, "shuffled");
    assert_eq!(
        order,
        epoch_order(1000, 7, 3),
        "same seed and epoch, same order"
    );
    assert_ne!(order, epoch_order(1000, 7, 4), "each epoch its own order");
    assert_ne!(order, epoch_order(1000, 8, 3), "each seed its own order");
    assert_ne!(epoch_order(1000, 1, 0), epoch_order(1000, 0, 1));
    assert!(epoch_order(0, 1, 1).is_empty());
}
