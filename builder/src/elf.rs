//! A bounded ELF reader shared by the image steps (the `ld.so.cache` generator) and packaging
//! checks: from the bytes of one file it reads the class, byte order, type, machine and flags,
//! the program interpreter (`PT_INTERP`) and the dynamic section's `DT_SONAME` and `DT_NEEDED`.
//!
//! Only the ELF header, the program header table, `PT_INTERP`, the dynamic segment and the
//! strings it names are read, through an [`ElfSource`]; every read is bounded (program header
//! table and dynamic segment 1 MiB each, strings 4096 bytes). `DT_STRTAB` is an address, mapped
//! to a file offset through the `PT_LOAD` segment containing it; names are bounded by
//! `DT_STRSZ` when present. Section headers are never used. Anything truncated, inconsistent or
//! not UTF-8 makes the whole file malformed: [`read_elf`] then answers `Ok(None)`, so callers
//! skip the file rather than trust part of it.

use std::io;

/// The four bytes every ELF file starts with.
pub const ELF_MAGIC: &[u8; 4] = b"\x7fELF";
/// `e_ident[EI_CLASS]`: 32-bit objects.
pub const ELFCLASS32: u8 = 1;
/// `e_ident[EI_CLASS]`: 64-bit objects.
pub const ELFCLASS64: u8 = 2;
/// `e_ident[EI_DATA]`: little-endian.
pub const ELFDATA2LSB: u8 = 1;
/// `e_ident[EI_DATA]`: big-endian.
pub const ELFDATA2MSB: u8 = 2;

/// `e_type`: a relocatable object.
pub const ET_REL: u16 = 1;
/// `e_type`: an executable (not position-independent).
pub const ET_EXEC: u16 = 2;
/// `e_type`: a shared object (also position-independent executables).
pub const ET_DYN: u16 = 3;

/// `p_type`: a loadable segment.
pub const PT_LOAD: u32 = 1;
/// `p_type`: the dynamic section.
pub const PT_DYNAMIC: u32 = 2;
/// `p_type`: the program interpreter's path.
pub const PT_INTERP: u32 = 3;

/// `d_tag`: end of the dynamic section.
pub const DT_NULL: u64 = 0;
/// `d_tag`: a needed library (string table offset).
pub const DT_NEEDED: u64 = 1;
/// `d_tag`: the string table's address.
pub const DT_STRTAB: u64 = 5;
/// `d_tag`: the string table's size.
pub const DT_STRSZ: u64 = 10;
/// `d_tag`: the object's soname (string table offset).
pub const DT_SONAME: u64 = 14;

/// `e_machine`: Intel 80386.
pub const EM_386: u16 = 3;
/// `e_machine`: 64-bit PowerPC.
pub const EM_PPC64: u16 = 21;
/// `e_machine`: IBM S/390.
pub const EM_S390: u16 = 22;
/// `e_machine`: 32-bit ARM.
pub const EM_ARM: u16 = 40;
/// `e_machine`: AMD x86-64.
pub const EM_X86_64: u16 = 62;
/// `e_machine`: 64-bit ARM.
pub const EM_AARCH64: u16 = 183;
/// `e_machine`: RISC-V.
pub const EM_RISCV: u16 = 243;
/// `e_machine`: LoongArch.
pub const EM_LOONGARCH: u16 = 258;

/// Largest program header table read.
const MAX_PHDR_TABLE: u64 = 1 << 20;
/// Largest dynamic segment read.
const MAX_DYNAMIC: u64 = 1 << 20;
/// Longest string read (soname, needed name, interpreter), terminating NUL included.
const MAX_STRING: u64 = 4096;

/// Random-access bytes of one file.
pub trait ElfSource {
    /// Total length in bytes.
    fn len(&self) -> u64;

    /// Whether the file has no bytes.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Up to `len` bytes at `offset` (fewer at the end of the file, empty past it).
    fn read_at(&self, offset: u64, len: u64) -> io::Result<Vec<u8>>;
}

impl ElfSource for [u8] {
    fn len(&self) -> u64 {
        <[u8]>::len(self) as u64
    }

    fn read_at(&self, offset: u64, len: u64) -> io::Result<Vec<u8>> {
        let rest = usize::try_from(offset)
            .ok()
            .and_then(|start| self.get(start..))
            .unwrap_or_default();
        let take = usize::try_from(len).map_or(rest.len(), |len| len.min(rest.len()));
        Ok(rest[..take].to_vec())
    }
}

impl ElfSource for std::fs::File {
    /// The size in the file's metadata; 0 when the metadata cannot be read.
    fn len(&self) -> u64 {
        self.metadata().map_or(0, |metadata| metadata.len())
    }

    /// Reads with `pread`, retrying short reads until `len` bytes or the end of the file (its
    /// size when the read starts).
    fn read_at(&self, offset: u64, len: u64) -> io::Result<Vec<u8>> {
        use std::os::unix::fs::FileExt;
        const CHUNK: u64 = 64 * 1024;
        let size = self.metadata()?.len();
        let len = len.min(size.saturating_sub(offset));
        let mut out = Vec::new();
        let mut buf = vec![0u8; len.min(CHUNK) as usize];
        while (out.len() as u64) < len {
            let done = out.len() as u64;
            let want = (len - done).min(CHUNK) as usize;
            match FileExt::read_at(self, &mut buf[..want], offset + done) {
                Ok(0) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }
}

/// What [`read_elf`] found in a well-formed ELF file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ElfFile {
    /// A 64-bit object (`ELFCLASS64`); otherwise 32-bit.
    pub wide: bool,
    /// Big-endian (`ELFDATA2MSB`); otherwise little-endian.
    pub big_endian: bool,
    /// `e_type`: [`ET_EXEC`], [`ET_DYN`], [`ET_REL`], …
    pub e_type: u16,
    /// `e_machine`: [`EM_X86_64`], [`EM_AARCH64`], …
    pub machine: u16,
    /// `e_flags` (processor-specific; the ABI for ARM, RISC-V and LoongArch).
    pub flags: u32,
    /// The `PT_INTERP` path, without its terminating NUL; `None` without `PT_INTERP`.
    pub interpreter: Option<String>,
    /// The `DT_SONAME` string; `None` without one (or without a dynamic segment).
    pub soname: Option<String>,
    /// The `DT_NEEDED` strings, in dynamic section order.
    pub needed: Vec<String>,
}

/// Reads what [`ElfFile`] holds from one file. `Ok(None)` when the bytes are not a well-formed
/// ELF file (wrong magic, class, data encoding, truncated or inconsistent headers/dynamic
/// section/string table, an unterminated or non-UTF-8 interpreter or name); `Err` only for I/O
/// errors from `source`.
///
/// The program header table must have entries of at least the class's size
/// (`e_phentsize` 56 or 32) even when `e_phnum` is 0, so relocatable objects whose
/// `e_phentsize` is 0 are reported as `None`. The first `PT_INTERP` and `PT_DYNAMIC` are used;
/// the dynamic section ends at `DT_NULL` or at the end of the segment (at most 1 MiB).
pub fn read_elf(source: &(impl ElfSource + ?Sized)) -> io::Result<Option<ElfFile>> {
    match parse(source) {
        Ok(file) => Ok(Some(file)),
        Err(Failure::Malformed) => Ok(None),
        Err(Failure::Io(error)) => Err(error),
    }
}

/// The ELF machine (`e_machine`) for an apk architecture name: `x86_64` → [`EM_X86_64`],
/// `aarch64` → [`EM_AARCH64`], `x86` → [`EM_386`], `armhf` and `armv7` → [`EM_ARM`],
/// `ppc64le` → [`EM_PPC64`], `s390x` → [`EM_S390`], `riscv64` → [`EM_RISCV`], `loongarch64` →
/// [`EM_LOONGARCH`]; `None` for anything else.
pub fn machine_for_apk_arch(arch: &str) -> Option<u16> {
    Some(match arch {
        "x86_64" => EM_X86_64,
        "aarch64" => EM_AARCH64,
        "x86" => EM_386,
        "armhf" | "armv7" => EM_ARM,
        "ppc64le" => EM_PPC64,
        "s390x" => EM_S390,
        "riscv64" => EM_RISCV,
        "loongarch64" => EM_LOONGARCH,
        _ => return None,
    })
}

/// A human name for an ELF machine, for messages: the apk architecture name where there is one
/// (`x86_64`, `aarch64`, `x86`, `ppc64le`, `s390x`, `riscv64`, `loongarch64`), `arm` for
/// [`EM_ARM`] (apk's `armhf` and `armv7`), else `ELF machine N`.
pub fn machine_name(machine: u16) -> String {
    match machine {
        EM_X86_64 => "x86_64",
        EM_AARCH64 => "aarch64",
        EM_386 => "x86",
        EM_ARM => "arm",
        EM_PPC64 => "ppc64le",
        EM_S390 => "s390x",
        EM_RISCV => "riscv64",
        EM_LOONGARCH => "loongarch64",
        other => return format!("ELF machine {other}"),
    }
    .to_string()
}

/// Why parsing stopped.
enum Failure {
    /// The source could not be read.
    Io(io::Error),
    /// The bytes are not a well-formed ELF file.
    Malformed,
}

impl From<io::Error> for Failure {
    fn from(error: io::Error) -> Self {
        Self::Io(error)
    }
}

/// A parse step's result.
type Parsed<T> = Result<T, Failure>;

/// The ELF header fields used.
struct Header {
    wide: bool,
    big_endian: bool,
    e_type: u16,
    machine: u16,
    flags: u32,
    phoff: u64,
    phentsize: u16,
    phnum: u16,
}

/// One program header: type, file offset, virtual address and size in the file.
struct Segment {
    kind: u32,
    offset: u64,
    vaddr: u64,
    filesz: u64,
}

/// The dynamic entries used: string table offsets of the names, and where the table is.
struct Dynamic {
    soname: Option<u64>,
    needed: Vec<u64>,
    strtab: Option<u64>,
    strsz: Option<u64>,
}

fn parse(source: &(impl ElfSource + ?Sized)) -> Parsed<ElfFile> {
    let header = read_header(source)?;
    let segments = read_segments(source, &header)?;
    let interpreter = match segments.iter().find(|s| s.kind == PT_INTERP) {
        Some(segment) => {
            let bytes = source.read_at(segment.offset, segment.filesz.min(MAX_STRING))?;
            Some(terminated(&bytes)?)
        }
        None => None,
    };
    let (soname, needed) = match read_dynamic(source, &header, &segments)? {
        Some(dynamic) => read_names(source, &segments, &dynamic)?,
        None => (None, Vec::new()),
    };
    Ok(ElfFile {
        wide: header.wide,
        big_endian: header.big_endian,
        e_type: header.e_type,
        machine: header.machine,
        flags: header.flags,
        interpreter,
        soname,
        needed,
    })
}

fn read_header(source: &(impl ElfSource + ?Sized)) -> Parsed<Header> {
    let bytes = source.read_at(0, 64)?;
    if bytes.len() < 52 || &bytes[..4] != ELF_MAGIC {
        return Err(Failure::Malformed);
    }
    let wide = match bytes[4] {
        ELFCLASS32 => false,
        ELFCLASS64 if bytes.len() >= 64 => true,
        _ => return Err(Failure::Malformed),
    };
    let big_endian = match bytes[5] {
        ELFDATA2LSB => false,
        ELFDATA2MSB => true,
        _ => return Err(Failure::Malformed),
    };
    let fields = Fields {
        bytes: &bytes,
        big_endian,
    };
    let (phoff, flags, phentsize, phnum) = if wide {
        (
            fields.u64(32),
            fields.u32(48),
            fields.u16(54),
            fields.u16(56),
        )
    } else {
        (
            fields.u32(28).map(u64::from),
            fields.u32(36),
            fields.u16(42),
            fields.u16(44),
        )
    };
    let header = (|| {
        Some(Header {
            wide,
            big_endian,
            e_type: fields.u16(16)?,
            machine: fields.u16(18)?,
            flags: flags?,
            phoff: phoff?,
            phentsize: phentsize?,
            phnum: phnum?,
        })
    })();
    header.ok_or(Failure::Malformed)
}

fn read_segments(source: &(impl ElfSource + ?Sized), header: &Header) -> Parsed<Vec<Segment>> {
    let min_entsize = if header.wide { 56 } else { 32 };
    let table_size = u64::from(header.phentsize) * u64::from(header.phnum);
    if usize::from(header.phentsize) < min_entsize || table_size > MAX_PHDR_TABLE {
        return Err(Failure::Malformed);
    }
    let table = source.read_at(header.phoff, table_size)?;
    if (table.len() as u64) < table_size {
        return Err(Failure::Malformed);
    }
    let fields = Fields {
        bytes: &table,
        big_endian: header.big_endian,
    };
    (0..usize::from(header.phnum))
        .map(|i| {
            let at = i * usize::from(header.phentsize);
            let segment = if header.wide {
                (|| {
                    Some(Segment {
                        kind: fields.u32(at)?,
                        offset: fields.u64(at + 8)?,
                        vaddr: fields.u64(at + 16)?,
                        filesz: fields.u64(at + 32)?,
                    })
                })()
            } else {
                (|| {
                    Some(Segment {
                        kind: fields.u32(at)?,
                        offset: u64::from(fields.u32(at + 4)?),
                        vaddr: u64::from(fields.u32(at + 8)?),
                        filesz: u64::from(fields.u32(at + 16)?),
                    })
                })()
            };
            segment.ok_or(Failure::Malformed)
        })
        .collect()
}

/// The dynamic entries of the first `PT_DYNAMIC`; `None` without one.
fn read_dynamic(
    source: &(impl ElfSource + ?Sized),
    header: &Header,
    segments: &[Segment],
) -> Parsed<Option<Dynamic>> {
    let Some(segment) = segments.iter().find(|s| s.kind == PT_DYNAMIC) else {
        return Ok(None);
    };
    let size = segment.filesz.min(MAX_DYNAMIC);
    let bytes = source.read_at(segment.offset, size)?;
    if (bytes.len() as u64) < size {
        return Err(Failure::Malformed);
    }
    let fields = Fields {
        bytes: &bytes,
        big_endian: header.big_endian,
    };
    let wide = header.wide;
    let entry_size = if wide { 16 } else { 8 };
    let mut dynamic = Dynamic {
        soname: None,
        needed: Vec::new(),
        strtab: None,
        strsz: None,
    };
    for at in (0..bytes.len() / entry_size).map(|i| i * entry_size) {
        let (Some(tag), Some(value)) = (
            fields.word(at, wide),
            fields.word(at + entry_size / 2, wide),
        ) else {
            break;
        };
        match tag {
            DT_NULL => break,
            DT_NEEDED => dynamic.needed.push(value),
            DT_SONAME => dynamic.soname = Some(value),
            DT_STRTAB => dynamic.strtab = Some(value),
            DT_STRSZ => dynamic.strsz = Some(value),
            _ => {}
        }
    }
    Ok(Some(dynamic))
}

/// The soname and needed names, read from the string table.
fn read_names(
    source: &(impl ElfSource + ?Sized),
    segments: &[Segment],
    dynamic: &Dynamic,
) -> Parsed<(Option<String>, Vec<String>)> {
    if dynamic.soname.is_none() && dynamic.needed.is_empty() {
        return Ok((None, Vec::new()));
    }
    let strtab = dynamic.strtab.ok_or(Failure::Malformed)?;
    let table_offset = segments
        .iter()
        .filter(|s| s.kind == PT_LOAD)
        .find(|s| strtab.checked_sub(s.vaddr).is_some_and(|d| d < s.filesz))
        .and_then(|s| s.offset.checked_add(strtab - s.vaddr))
        .ok_or(Failure::Malformed)?;
    // Each name's file offset and the most bytes it may span (NUL included).
    let span = |name: u64| -> Parsed<(u64, u64)> {
        if dynamic.strsz.is_some_and(|size| name >= size) {
            return Err(Failure::Malformed);
        }
        let limit = dynamic
            .strsz
            .map_or(MAX_STRING, |size| (size - name).min(MAX_STRING));
        let start = table_offset.checked_add(name).ok_or(Failure::Malformed)?;
        Ok((start, limit))
    };
    let soname = dynamic.soname.map(span).transpose()?;
    let needed = dynamic
        .needed
        .iter()
        .map(|&name| span(name))
        .collect::<Parsed<Vec<_>>>()?;
    let read = |(start, limit): (u64, u64)| terminated(&source.read_at(start, limit)?);
    let soname = soname.map(read).transpose()?;
    let needed = needed.into_iter().map(read).collect::<Parsed<Vec<_>>>()?;
    Ok((soname, needed))
}

/// The UTF-8 text before the first NUL; malformed without a NUL or when not UTF-8.
fn terminated(bytes: &[u8]) -> Parsed<String> {
    let end = bytes
        .iter()
        .position(|&b| b == 0)
        .ok_or(Failure::Malformed)?;
    String::from_utf8(bytes[..end].to_vec()).map_err(|_| Failure::Malformed)
}

/// A reader of fixed-width integers in one byte order.
struct Fields<'a> {
    bytes: &'a [u8],
    big_endian: bool,
}

impl Fields<'_> {
    fn u16(&self, at: usize) -> Option<u16> {
        let b: [u8; 2] = self.bytes.get(at..at.checked_add(2)?)?.try_into().ok()?;
        Some(if self.big_endian {
            u16::from_be_bytes(b)
        } else {
            u16::from_le_bytes(b)
        })
    }

    fn u32(&self, at: usize) -> Option<u32> {
        let b: [u8; 4] = self.bytes.get(at..at.checked_add(4)?)?.try_into().ok()?;
        Some(if self.big_endian {
            u32::from_be_bytes(b)
        } else {
            u32::from_le_bytes(b)
        })
    }

    fn u64(&self, at: usize) -> Option<u64> {
        let b: [u8; 8] = self.bytes.get(at..at.checked_add(8)?)?.try_into().ok()?;
        Some(if self.big_endian {
            u64::from_be_bytes(b)
        } else {
            u64::from_le_bytes(b)
        })
    }

    /// A word: 4 bytes for ELF32, 8 for ELF64.
    fn word(&self, at: usize, wide: bool) -> Option<u64> {
        if wide {
            self.u64(at)
        } else {
            self.u32(at).map(u64::from)
        }
    }
}

/// Synthetic ELF files for tests.
#[cfg(test)]
pub(crate) mod fixture {
    use super::*;

    /// What to put in a synthetic ELF file.
    pub(crate) struct Spec<'a> {
        pub(crate) wide: bool,
        pub(crate) big: bool,
        pub(crate) e_type: u16,
        pub(crate) machine: u16,
        pub(crate) flags: u32,
        pub(crate) interpreter: Option<&'a [u8]>,
        /// Whether there is a `PT_DYNAMIC` (and the entries below).
        pub(crate) dynamic: bool,
        pub(crate) soname: Option<&'a [u8]>,
        pub(crate) needed: &'a [&'a [u8]],
        /// Whether `DT_STRSZ` is written.
        pub(crate) strsz: bool,
        /// Zero bytes in the string table between the soname and the needed names.
        pub(crate) padding: usize,
    }

    impl Default for Spec<'_> {
        fn default() -> Self {
            Self {
                wide: true,
                big: false,
                e_type: ET_DYN,
                machine: EM_X86_64,
                flags: 0,
                interpreter: None,
                dynamic: true,
                soname: None,
                needed: &[],
                strsz: true,
                padding: 0,
            }
        }
    }

    /// A built file and where its parts are.
    pub(crate) struct Image {
        pub(crate) bytes: Vec<u8>,
        pub(crate) phoff: usize,
        pub(crate) phentsize: usize,
        pub(crate) interp_offset: usize,
        pub(crate) dyn_offset: usize,
        pub(crate) strtab_offset: usize,
        pub(crate) wide: bool,
        pub(crate) big: bool,
    }

    impl Image {
        pub(crate) fn put_word(&mut self, at: usize, value: u64) {
            match (self.wide, self.big) {
                (true, true) => self.bytes[at..at + 8].copy_from_slice(&value.to_be_bytes()),
                (true, false) => self.bytes[at..at + 8].copy_from_slice(&value.to_le_bytes()),
                (false, true) => {
                    self.bytes[at..at + 4].copy_from_slice(&(value as u32).to_be_bytes())
                }
                (false, false) => {
                    self.bytes[at..at + 4].copy_from_slice(&(value as u32).to_le_bytes())
                }
            }
        }

        /// Sets the value of dynamic entry `index`.
        pub(crate) fn set_dynamic_value(&mut self, index: usize, value: u64) {
            let word = if self.wide { 8 } else { 4 };
            self.put_word(self.dyn_offset + index * 2 * word + word, value);
        }

        /// Sets the tag of dynamic entry `index`.
        pub(crate) fn set_dynamic_tag(&mut self, index: usize, tag: u64) {
            let word = if self.wide { 8 } else { 4 };
            self.put_word(self.dyn_offset + index * 2 * word, tag);
        }

        pub(crate) fn read(&self) -> Option<ElfFile> {
            read_elf(self.bytes.as_slice()).unwrap()
        }
    }

    /// Lays out: header, program headers (`PT_LOAD` of the whole file at 0x400000, then
    /// `PT_INTERP`, `PT_DYNAMIC`), the interpreter, the dynamic entries (`DT_NEEDED`s,
    /// `DT_SONAME`, `DT_STRTAB`, `DT_STRSZ`, `DT_NULL`) and the string table.
    pub(crate) fn build(spec: &Spec<'_>) -> Image {
        let big = spec.big;
        let wide = spec.wide;
        let u16b = |v: u16| {
            if big {
                v.to_be_bytes()
            } else {
                v.to_le_bytes()
            }
        };
        let u32b = |v: u32| {
            if big {
                v.to_be_bytes()
            } else {
                v.to_le_bytes()
            }
        };
        let word = |v: u64| -> Vec<u8> {
            match (wide, big) {
                (true, true) => v.to_be_bytes().to_vec(),
                (true, false) => v.to_le_bytes().to_vec(),
                (false, _) => u32b(v as u32).to_vec(),
            }
        };
        let vaddr = 0x40_0000u64;
        let (ehsize, phentsize) = if wide { (64, 56) } else { (52, 32) };
        let phnum = 1 + usize::from(spec.interpreter.is_some()) + usize::from(spec.dynamic);
        let phoff = ehsize;
        let interp_offset = phoff + phnum * phentsize;
        let interp = spec.interpreter.unwrap_or_default();
        let dyn_offset = interp_offset + interp.len();

        let mut strtab = vec![0u8];
        let mut entries: Vec<(u64, u64)> = Vec::new();
        let soname_offset = spec.soname.map(|name| {
            let at = strtab.len() as u64;
            strtab.extend_from_slice(name);
            strtab.push(0);
            at
        });
        strtab.resize(strtab.len() + spec.padding, 0);
        for name in spec.needed {
            entries.push((DT_NEEDED, strtab.len() as u64));
            strtab.extend_from_slice(name);
            strtab.push(0);
        }
        if let Some(at) = soname_offset {
            entries.push((DT_SONAME, at));
        }
        entries.push((DT_STRTAB, 0));
        if spec.strsz {
            entries.push((DT_STRSZ, strtab.len() as u64));
        }
        entries.push((DT_NULL, 0));
        let entry_size = if wide { 16 } else { 8 };
        let dyn_size = if spec.dynamic {
            entries.len() * entry_size
        } else {
            0
        };
        let strtab_offset = dyn_offset + dyn_size;
        let total = strtab_offset + if spec.dynamic { strtab.len() } else { 0 };

        let mut out = Vec::new();
        out.extend_from_slice(ELF_MAGIC);
        out.push(if wide { ELFCLASS64 } else { ELFCLASS32 });
        out.push(if big { ELFDATA2MSB } else { ELFDATA2LSB });
        out.push(1);
        out.extend_from_slice(&[0; 9]);
        out.extend_from_slice(&u16b(spec.e_type));
        out.extend_from_slice(&u16b(spec.machine));
        out.extend_from_slice(&u32b(1));
        out.extend(word(vaddr)); // e_entry
        out.extend(word(phoff as u64));
        out.extend(word(0)); // e_shoff
        out.extend_from_slice(&u32b(spec.flags));
        out.extend_from_slice(&u16b(ehsize as u16));
        out.extend_from_slice(&u16b(phentsize as u16));
        out.extend_from_slice(&u16b(phnum as u16));
        out.extend_from_slice(&[0; 6]); // e_shentsize, e_shnum, e_shstrndx
        assert_eq!(out.len(), ehsize);
        let phdr = |p_type: u32, offset: usize, size: usize| -> Vec<u8> {
            let (offset, size) = (offset as u64, size as u64);
            let addr = vaddr + offset;
            let mut h = Vec::new();
            h.extend_from_slice(&u32b(p_type));
            if wide {
                h.extend_from_slice(&u32b(4)); // p_flags
            }
            h.extend(word(offset));
            h.extend(word(addr));
            h.extend(word(addr));
            h.extend(word(size));
            h.extend(word(size));
            if !wide {
                h.extend_from_slice(&u32b(4)); // p_flags
            }
            h.extend(word(8));
            assert_eq!(h.len(), phentsize);
            h
        };
        out.extend(phdr(PT_LOAD, 0, total));
        if spec.interpreter.is_some() {
            out.extend(phdr(PT_INTERP, interp_offset, interp.len()));
        }
        if spec.dynamic {
            out.extend(phdr(PT_DYNAMIC, dyn_offset, dyn_size));
        }
        out.extend_from_slice(interp);
        if spec.dynamic {
            for (tag, value) in entries {
                let value = if tag == DT_STRTAB {
                    vaddr + strtab_offset as u64
                } else {
                    value
                };
                out.extend(word(tag));
                out.extend(word(value));
            }
            out.extend(strtab);
        }
        assert_eq!(out.len(), total);
        Image {
            bytes: out,
            phoff,
            phentsize,
            interp_offset,
            dyn_offset,
            strtab_offset,
            wide,
            big,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fixture::{Image, Spec, build};
    use super::*;

    const LD64: &[u8] = b"/lib64/ld-linux-x86-64.so.2\0";
    const LD32: &[u8] = b"/lib/ld.so.1\0";

    fn elf64_le() -> Image {
        build(&Spec {
            e_type: ET_EXEC,
            flags: 0x1234,
            interpreter: Some(LD64),
            soname: Some(b"libfoo.so.1"),
            needed: &[b"libz.so.1", b"libc.so.6"],
            ..Spec::default()
        })
    }

    fn elf32_be() -> Image {
        build(&Spec {
            wide: false,
            big: true,
            machine: EM_S390,
            flags: 0x8000_0001,
            interpreter: Some(LD32),
            soname: Some(b"libbar.so.2"),
            needed: &[b"libm.so.6", b"libc.so.6"],
            ..Spec::default()
        })
    }

    fn strings(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn reads_every_field() {
        assert_eq!(
            elf64_le().read(),
            Some(ElfFile {
                wide: true,
                big_endian: false,
                e_type: ET_EXEC,
                machine: EM_X86_64,
                flags: 0x1234,
                interpreter: Some("/lib64/ld-linux-x86-64.so.2".into()),
                soname: Some("libfoo.so.1".into()),
                needed: strings(&["libz.so.1", "libc.so.6"]),
            })
        );
        assert_eq!(
            elf32_be().read(),
            Some(ElfFile {
                wide: false,
                big_endian: true,
                e_type: ET_DYN,
                machine: EM_S390,
                flags: 0x8000_0001,
                interpreter: Some("/lib/ld.so.1".into()),
                soname: Some("libbar.so.2".into()),
                needed: strings(&["libm.so.6", "libc.so.6"]),
            })
        );
        // ELF32 little-endian and ELF64 big-endian, without interpreter or soname.
        let arm = build(&Spec {
            wide: false,
            machine: EM_ARM,
            flags: 0x0500_0400,
            needed: &[b"libc.so.6"],
            ..Spec::default()
        })
        .read()
        .unwrap();
        assert_eq!(
            (arm.wide, arm.big_endian, arm.machine, arm.flags),
            (false, false, EM_ARM, 0x0500_0400)
        );
        assert_eq!((arm.interpreter, arm.soname), (None, None));
        assert_eq!(arm.needed, strings(&["libc.so.6"]));
        let s390 = build(&Spec {
            big: true,
            machine: EM_S390,
            soname: Some(b"libs.so"),
            ..Spec::default()
        })
        .read()
        .unwrap();
        assert_eq!((s390.wide, s390.big_endian), (true, true));
        assert_eq!(s390.soname.as_deref(), Some("libs.so"));
        assert!(s390.needed.is_empty());
    }

    #[test]
    fn static_and_nameless_files() {
        // No PT_DYNAMIC, no PT_INTERP: a static executable.
        let file = build(&Spec {
            e_type: ET_EXEC,
            dynamic: false,
            ..Spec::default()
        })
        .read()
        .unwrap();
        assert_eq!(file.e_type, ET_EXEC);
        assert_eq!((file.interpreter, file.soname), (None, None));
        assert!(file.needed.is_empty());
        // A dynamic section naming nothing needs no usable string table.
        let mut image = build(&Spec::default());
        image.set_dynamic_value(0, 0xdead_0000);
        assert_eq!(image.read().unwrap().needed, Vec::<String>::new());
        // Without DT_STRSZ the names are still read, up to 4096 bytes each.
        let file = build(&Spec {
            soname: Some(b"libx.so"),
            needed: &[b"liby.so"],
            strsz: false,
            ..Spec::default()
        })
        .read()
        .unwrap();
        assert_eq!(file.soname.as_deref(), Some("libx.so"));
        assert_eq!(file.needed, strings(&["liby.so"]));
        let long = vec![b'a'; 5000];
        let names: [&[u8]; 1] = [&long];
        let image = build(&Spec {
            needed: &names,
            strsz: false,
            ..Spec::default()
        });
        assert_eq!(image.read(), None);
        // An empty interpreter string is still a string.
        let file = build(&Spec {
            interpreter: Some(b"\0"),
            ..Spec::default()
        })
        .read()
        .unwrap();
        assert_eq!(file.interpreter.as_deref(), Some(""));
    }

    #[test]
    fn names_far_apart_in_the_string_table() {
        let image = build(&Spec {
            soname: Some(b"libfar.so.1"),
            needed: &[b"libc.so.6", b"libm.so.6"],
            padding: (1 << 20) + 10,
            ..Spec::default()
        });
        let file = image.read().unwrap();
        assert_eq!(file.soname.as_deref(), Some("libfar.so.1"));
        assert_eq!(file.needed, strings(&["libc.so.6", "libm.so.6"]));
    }

    #[test]
    fn every_truncation_is_malformed() {
        for image in [elf64_le(), elf32_be()] {
            assert!(image.read().is_some());
            for len in 0..image.bytes.len() {
                assert_eq!(read_elf(&image.bytes[..len]).unwrap(), None, "{len}");
            }
        }
    }

    #[test]
    fn inconsistent_files_are_malformed() {
        let check = |image: &Image, what: &str| assert_eq!(image.read(), None, "{what}");
        let patched = |change: &dyn Fn(&mut Image)| {
            let mut image = elf64_le();
            change(&mut image);
            image
        };
        check(&patched(&|i| i.bytes[0] = b'\x7e'), "magic");
        check(&patched(&|i| i.bytes[4] = 3), "class");
        check(&patched(&|i| i.bytes[5] = 0), "data encoding");
        let elf32 = build(&Spec {
            wide: false,
            big: true,
            ..Spec::default()
        });
        assert_eq!(
            read_elf(&elf32.bytes[..51]).unwrap(),
            None,
            "short ELF32 header"
        );
        let mut short64 = elf64_le().bytes;
        short64.truncate(60);
        assert_eq!(
            read_elf(short64.as_slice()).unwrap(),
            None,
            "short ELF64 header"
        );
        // e_phentsize too small, table too large, table past the end.
        check(&patched(&|i| i.bytes[54] = 40), "phentsize");
        check(
            &patched(&|i| i.bytes[56..58].copy_from_slice(&0x5000u16.to_le_bytes())),
            "phnum",
        );
        check(&patched(&|i| i.put_word(32, 1 << 40)), "phoff");
        // PT_DYNAMIC past the end of the file.
        let dynamic_phdr = |i: &Image| i.phoff + 2 * i.phentsize;
        check(
            &patched(&|i| i.put_word(dynamic_phdr(i) + 8, 1 << 20)),
            "dynamic offset",
        );
        // The string table address outside every PT_LOAD.
        check(
            &patched(&|i| i.set_dynamic_value(3, 0x10)),
            "strtab address",
        );
        // DT_STRTAB missing (its entry turned into another tag).
        check(
            &patched(&|i| i.set_dynamic_tag(3, 0x6fff_fff0)),
            "no strtab",
        );
        // A needed name, or the soname, at or past DT_STRSZ.
        check(&patched(&|i| i.set_dynamic_value(1, 1000)), "needed offset");
        check(&patched(&|i| i.set_dynamic_value(2, 1000)), "soname offset");
        let strsz = patched(&|i| {
            let size = (i.bytes.len() - i.strtab_offset) as u64;
            i.set_dynamic_value(4, size - 3);
        });
        check(&strsz, "last name cut by DT_STRSZ");
        // Not UTF-8, unterminated interpreter.
        check(
            &patched(&|i| {
                let at = i.strtab_offset + 1;
                i.bytes[at] = 0xff;
            }),
            "soname not UTF-8",
        );
        let bad_needed: [&[u8]; 1] = [b"lib\xc3.so"];
        check(
            &build(&Spec {
                needed: &bad_needed,
                ..Spec::default()
            }),
            "needed not UTF-8",
        );
        check(
            &build(&Spec {
                interpreter: Some(b"/lib/ld.so"),
                ..Spec::default()
            }),
            "interpreter without NUL",
        );
        check(
            &build(&Spec {
                interpreter: Some(b"/lib/\xffld.so\0"),
                ..Spec::default()
            }),
            "interpreter not UTF-8",
        );
        check(
            &patched(&|i| {
                let at = i.interp_offset;
                i.bytes[at..at + LD64.len()].fill(b'x');
            }),
            "interpreter overwritten",
        );
        check(
            &build(&Spec {
                interpreter: Some(&[b'x'; 5000]),
                ..Spec::default()
            }),
            "interpreter too long",
        );
        // Not ELF at all.
        assert_eq!(read_elf(&b"#!/bin/sh\necho hi\n"[..]).unwrap(), None);
        assert_eq!(read_elf(&[][..]).unwrap(), None);
    }

    #[test]
    fn sources() {
        let bytes: &[u8] = b"0123456789";
        assert_eq!(ElfSource::len(bytes), 10);
        assert!(!ElfSource::is_empty(bytes));
        assert_eq!(bytes.read_at(2, 3).unwrap(), b"234");
        assert_eq!(bytes.read_at(8, 5).unwrap(), b"89");
        assert_eq!(bytes.read_at(10, 5).unwrap(), b"");
        assert_eq!(bytes.read_at(u64::MAX, u64::MAX).unwrap(), b"");
        assert_eq!(bytes.read_at(0, u64::MAX).unwrap(), bytes);

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("data");
        let big: Vec<u8> = (0..200_000u32).map(|i| i as u8).collect();
        std::fs::write(&path, &big).unwrap();
        let file = std::fs::File::open(&path).unwrap();
        assert_eq!(ElfSource::len(&file), 200_000);
        assert_eq!(file.read_at(5, 3).unwrap(), &big[5..8]);
        assert_eq!(file.read_at(1000, 150_000).unwrap(), &big[1000..151_000]);
        assert_eq!(file.read_at(199_990, 100).unwrap(), &big[199_990..]);
        assert_eq!(file.read_at(200_000, 1).unwrap(), b"");
        assert_eq!(file.read_at(u64::MAX, u64::MAX).unwrap(), b"");

        // The same image read from a file.
        let image = elf32_be();
        std::fs::write(&path, &image.bytes).unwrap();
        let file = std::fs::File::open(&path).unwrap();
        assert_eq!(read_elf(&file).unwrap(), image.read());
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn reads_a_host_binary() {
        let path = ["/bin/ls", "/usr/bin/ls"]
            .into_iter()
            .map(std::path::PathBuf::from)
            .find(|p| p.exists())
            .unwrap_or_else(|| std::env::current_exe().unwrap());
        let file = std::fs::File::open(&path).unwrap();
        let elf = read_elf(&file).unwrap().unwrap();
        assert!(matches!(elf.e_type, ET_EXEC | ET_DYN), "{elf:?}");
        let Some(interpreter) = &elf.interpreter else {
            // A static binary: nothing more to check.
            return;
        };
        assert!(interpreter.starts_with("/lib"), "{elf:?}");
        assert!(
            elf.needed.iter().any(|n| n.starts_with("libc.so.")),
            "{elf:?}"
        );
        if cfg!(target_arch = "x86_64") {
            assert_eq!((elf.machine, elf.wide), (EM_X86_64, true));
        } else if cfg!(target_arch = "aarch64") {
            assert_eq!((elf.machine, elf.wide), (EM_AARCH64, true));
        }
    }

    #[test]
    fn machines_and_names() {
        for arch in [
            "x86_64",
            "aarch64",
            "x86",
            "ppc64le",
            "s390x",
            "riscv64",
            "loongarch64",
        ] {
            let machine = machine_for_apk_arch(arch).unwrap();
            assert_eq!(machine_name(machine), arch);
        }
        for arch in ["armhf", "armv7"] {
            assert_eq!(machine_for_apk_arch(arch), Some(EM_ARM));
            assert_eq!(machine_name(EM_ARM), "arm");
        }
        assert_eq!(machine_for_apk_arch("x86_64"), Some(62));
        assert_eq!(machine_for_apk_arch("aarch64"), Some(183));
        assert_eq!(machine_for_apk_arch("x86"), Some(3));
        assert_eq!(machine_for_apk_arch("armv7"), Some(40));
        assert_eq!(machine_for_apk_arch("ppc64le"), Some(21));
        assert_eq!(machine_for_apk_arch("s390x"), Some(22));
        assert_eq!(machine_for_apk_arch("riscv64"), Some(243));
        assert_eq!(machine_for_apk_arch("loongarch64"), Some(258));
        assert_eq!(machine_for_apk_arch("amd64"), None);
        assert_eq!(machine_for_apk_arch("noarch"), None);
        assert_eq!(machine_name(0x1234), "ELF machine 4660");
    }
}
