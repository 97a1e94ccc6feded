//! Reads `ptxas -v`'s report: per entry function, its registers, static shared memory,
//! stack frame and spills. Used by build.rs (which fails the build on a spill) and by
//! tests/kernels_build.rs (which checks this parser on a report with spills).
//!
//! The report, per kernel:
//! ```text
//! ptxas info    : Compiling entry function 'conv_fwd_f32' for 'sm_90'
//! ptxas info    : Function properties for conv_fwd_f32
//!     0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads
//! ptxas info    : Used 64 registers, used 1 barriers, 8320 bytes smem
//! ```

/// One kernel's resources, as ptxas assembled it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EntryReport {
    pub kernel: String,
    pub registers: u32,
    /// Static `__shared__` bytes.
    pub shared_bytes: u32,
    pub stack_bytes: u32,
    pub spill_store_bytes: u32,
    pub spill_load_bytes: u32,
}

impl EntryReport {
    pub fn spills(&self) -> bool {
        self.spill_store_bytes > 0 || self.spill_load_bytes > 0
    }
}

/// The number just before `unit` in `line` ("8320 bytes smem" → 8320 for "bytes smem").
fn number_before(line: &str, unit: &str) -> Option<u32> {
    let head = &line[..line.find(unit)?];
    head.split(|c: char| !c.is_ascii_digit())
        .rfind(|s| !s.is_empty())?
        .parse()
        .ok()
}

/// Every entry function of the report, in its order.
pub fn parse(report: &str) -> Vec<EntryReport> {
    let mut entries: Vec<EntryReport> = Vec::new();
    // Properties lines also follow device functions (`Function properties for helper`);
    // only those of the entry being compiled count.
    let mut in_entry = false;
    for line in report.lines() {
        if let Some(rest) = line.split("Compiling entry function '").nth(1) {
            let kernel = rest.split('\'').next().unwrap_or_default().to_string();
            entries.push(EntryReport {
                kernel,
                ..EntryReport::default()
            });
            in_entry = true;
        } else if line.contains("Function properties for ") {
            in_entry = entries
                .last()
                .is_some_and(|e| line.trim_end().ends_with(&format!(" {}", e.kernel)));
        } else if let (true, Some(entry)) = (in_entry, entries.last_mut()) {
            if line.contains("bytes stack frame") {
                entry.stack_bytes = number_before(line, "bytes stack frame").unwrap_or(0);
                entry.spill_store_bytes = number_before(line, "bytes spill stores").unwrap_or(0);
                entry.spill_load_bytes = number_before(line, "bytes spill loads").unwrap_or(0);
            } else if line.contains("Used ") && line.contains(" registers") {
                entry.registers = number_before(line, " registers").unwrap_or(0);
                entry.shared_bytes = number_before(line, " bytes smem").unwrap_or(0);
            }
        }
    }
    entries
}
