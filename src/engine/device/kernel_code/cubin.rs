//! The interface of a cubin (an ELF file of GPU machine code, as ptxas writes it): its
//! kernels and the size and offset of each parameter, read from the `.nv.info.KERNEL`
//! section ptxas writes for every kernel, whose `EIATTR_KPARAM_INFO` records are what
//! the driver itself lays a launch's arguments out by. A cubin keeps no parameter
//! types, so sizes and offsets are what two cubins can be compared on: a parameter
//! added, dropped or widened moves them.
//!
//! The record layout (not documented by NVIDIA; it is what cuobjdump --dump-elf shows):
//! each record is a format byte and an attribute byte, then a 2-byte value, except
//! for the "sized" format, whose 2 bytes are the length of the value that follows.
//! A KPARAM_INFO value is a 4-byte index, the parameter's 2-byte ordinal and 2-byte
//! offset, and a 4-byte word with the size in its top 14 bits. tests/kernel_override.rs
//! reads every embedded cubin this way and finds the sizes of the PTX's types.

use std::collections::BTreeMap;

use anyhow::{bail, Context, Result};

use super::interface::Interface;

/// The "sized" record format (EIFMT_SVAL): a 2-byte length, then the value.
const FORMAT_SIZED: u8 = 4;
/// EIATTR_KPARAM_INFO: one kernel parameter.
const KPARAM_INFO: u8 = 0x17;
const INFO_PREFIX: &str = ".nv.info.";

/// The kernels of `cubin` and their parameters, each as "SIZE bytes at OFFSET".
pub fn of_cubin(cubin: &[u8]) -> Result<Interface> {
    let elf = Elf::new(cubin)?;
    let mut kernels = BTreeMap::new();
    for section in elf.sections()? {
        if let Some(kernel) = section.name.strip_prefix(INFO_PREFIX) {
            let info = elf.bytes(section.offset, section.size)?;
            let parameters =
                parameters(info).with_context(|| format!("cubin: section {}", section.name))?;
            kernels.insert(kernel.to_string(), parameters);
        }
    }
    Ok(Interface(kernels))
}

/// A kernel's parameters from its `.nv.info.KERNEL` records, in order.
fn parameters(info: &[u8]) -> Result<Vec<String>> {
    let mut found: Vec<(u16, u16, u32)> = Vec::new();
    let mut at = 0;
    while at < info.len() {
        let header = info.get(at..at + 4).context("a record cut short")?;
        let (format, attribute) = (header[0], header[1]);
        let value = u16::from_le_bytes([header[2], header[3]]) as usize;
        at += 4;
        if format != FORMAT_SIZED {
            continue;
        }
        let data = info
            .get(at..at + value)
            .context("a record's value cut short")?;
        at += value;
        if attribute == KPARAM_INFO {
            let [_, _, _, _, o0, o1, f0, f1, s0, s1, s2, s3, ..] = *data else {
                bail!("a parameter record of {} bytes", data.len());
            };
            let ordinal = u16::from_le_bytes([o0, o1]);
            let offset = u16::from_le_bytes([f0, f1]);
            let size = u32::from_le_bytes([s0, s1, s2, s3]) >> 18;
            found.push((ordinal, offset, size));
        }
    }
    found.sort_unstable();
    for (i, (ordinal, ..)) in found.iter().enumerate() {
        if usize::from(*ordinal) != i {
            bail!("parameter {i} is missing (ordinals {found:?})");
        }
    }
    Ok(found
        .into_iter()
        .map(|(_, offset, size)| format!("{size} bytes at {offset}"))
        .collect())
}

/// One section header's fields that matter here.
struct Section<'a> {
    name: &'a str,
    offset: u64,
    size: u64,
}

/// A little-endian 64-bit ELF file, read with every offset checked.
struct Elf<'a> {
    data: &'a [u8],
}

impl<'a> Elf<'a> {
    fn new(data: &'a [u8]) -> Result<Elf<'a>> {
        if data.get(..4) != Some(b"\x7fELF") {
            bail!("not an ELF file (a cubin is one)");
        }
        if data.get(4..6) != Some(&[2, 1]) {
            bail!("not a little-endian 64-bit ELF file");
        }
        Ok(Elf { data })
    }

    fn bytes(&self, offset: u64, len: u64) -> Result<&'a [u8]> {
        let start = usize::try_from(offset)?;
        let end = start
            .checked_add(usize::try_from(len)?)
            .context("ELF: offset overflow")?;
        self.data
            .get(start..end)
            .with_context(|| format!("ELF: bytes {start}..{end} of a file of {}", self.data.len()))
    }

    fn u16_at(&self, offset: u64) -> Result<u16> {
        let b = self.bytes(offset, 2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }

    fn u32_at(&self, offset: u64) -> Result<u32> {
        let b = self.bytes(offset, 4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u64_at(&self, offset: u64) -> Result<u64> {
        let b = self.bytes(offset, 8)?;
        let mut word = [0; 8];
        word.copy_from_slice(b);
        Ok(u64::from_le_bytes(word))
    }

    /// Every section: its name, offset and size.
    fn sections(&self) -> Result<Vec<Section<'a>>> {
        let table = self.u64_at(0x28)?;
        let entry = u64::from(self.u16_at(0x3a)?);
        let count = u64::from(self.u16_at(0x3c)?);
        let names = u64::from(self.u16_at(0x3e)?);
        let header = |i: u64| -> Result<(u32, u64, u64)> {
            // Saturating: an absurd offset then fails its bounds check in `bytes`.
            let at = table.saturating_add(i * entry);
            let (offset, size) = (at.saturating_add(24), at.saturating_add(32));
            Ok((self.u32_at(at)?, self.u64_at(offset)?, self.u64_at(size)?))
        };
        let (_, names_offset, names_size) = header(names)?;
        let names = self.bytes(names_offset, names_size)?;
        (0..count)
            .map(|i| {
                let (name, offset, size) = header(i)?;
                let tail = names
                    .get(name as usize..)
                    .context("ELF: a section name outside its table")?;
                let end = tail
                    .iter()
                    .position(|&b| b == 0)
                    .context("ELF: an unterminated section name")?;
                Ok(Section {
                    name: std::str::from_utf8(&tail[..end])?,
                    offset,
                    size,
                })
            })
            .collect()
    }
}
