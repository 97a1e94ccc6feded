//! The init check's record of which elements of each emulated buffer hold something
//! an upload, a memset or a kernel wrote. Only buffers with unwritten elements are in
//! it (an `EmuDriver::invalidate`d one, until every element is written), keyed by the
//! address of their data: emulated buffers are host vectors, which do not move. Every
//! emulated buffer comes from the driver, which forgets (`forget`) or sets (`set`) the
//! entry at its address, so a freed buffer's entry never passes to the next buffer
//! there; buffers with no entry count as fully written.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

/// Address -> (length, which elements are unwritten).
static RECORD: Mutex<Option<HashMap<usize, Entry>>> = Mutex::new(None);
/// Whether RECORD was ever used, so that allocations skip its lock until then.
static USED: AtomicBool = AtomicBool::new(false);

struct Entry {
    len: usize,
    unwritten: Vec<bool>,
}

/// Which of the `len` elements at `address` no one wrote; None if all were written.
pub fn unwritten(address: *const u8, len: usize) -> Option<Vec<bool>> {
    if !USED.load(Ordering::Acquire) || len == 0 {
        return None;
    }
    let mut record = RECORD.lock().unwrap_or_else(|e| e.into_inner());
    let map = record.as_mut()?;
    match map.get(&(address as usize)) {
        Some(entry) if entry.len == len => Some(entry.unwritten.clone()),
        Some(_) => {
            map.remove(&(address as usize));
            None
        }
        None => None,
    }
}

/// Records which elements of the buffer at `address` are unwritten.
pub fn set(address: *const u8, unwritten: Vec<bool>) {
    if unwritten.is_empty() {
        return;
    }
    let mut record = RECORD.lock().unwrap_or_else(|e| e.into_inner());
    let map = record.get_or_insert_with(HashMap::new);
    if unwritten.iter().any(|&u| u) {
        let len = unwritten.len();
        map.insert(address as usize, Entry { len, unwritten });
        USED.store(true, Ordering::Release);
    } else {
        map.remove(&(address as usize));
    }
}

/// A buffer the driver has just filled (an upload or a memset) lives at `address`.
pub fn forget(address: *const u8) {
    if !USED.load(Ordering::Acquire) {
        return;
    }
    let mut record = RECORD.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(map) = record.as_mut() {
        map.remove(&(address as usize));
    }
}
