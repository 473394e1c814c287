//! NumPy `.npy` files: read float32/float64 arrays of any rank, write them back.
//!
//! A host-side helper for programs that exchange matrices with numpy (the `cli` example uses
//! it); nothing here touches the GPU. No dependency: the format is a magic string, a version,
//! a Python-literal header and the raw data.
//!
//! - Read: format versions 1.0, 2.0 and 3.0; dtypes float32 and float64 in little-endian (`<`),
//!   big-endian (`>`, converted) or native (`=`, `|`, or no byte-order character) order;
//!   `fortran_order` True or False; any rank (rank 0 is a scalar with shape `()`).
//! - Write: the array's own dtype and order (always little-endian), version 1.0 unless the
//!   header needs 2.0. [`write_f32`] writes float32 in C order, what numpy produces by default.
//!
//! Every malformed input — bad magic, unknown version, a header that is not the expected
//! dictionary, an unsupported dtype, data shorter or longer than the shape says, a file cut
//! anywhere — is an [`NpyError`] naming the file and what is wrong; nothing panics and nothing is
//! allocated from sizes read in the header before they are checked against the file's length.
//!
//! Shapes mean what numpy means: a C-order array of shape `(m, n)` holds element `(i, j)` at
//! `i * n + j`, a Fortran-order one at `i + j * m`. [`Array::to_f32_c_order`] and
//! [`Array::to_f32_fortran_order`] give the elements in either order whatever the file's.
//!
//! ```
//! use metalcore::npy::{Array, Data};
//! let a = Array::new(vec![2, 3], false, Data::F32(vec![1., 2., 3., 4., 5., 6.])).unwrap();
//! let bytes = a.to_bytes();
//! let b = Array::from_bytes(&bytes).unwrap();
//! assert_eq!(b.shape(), &[2, 3]);
//! assert_eq!(b.to_f32_fortran_order(), vec![1., 4., 2., 5., 3., 6.]); // column-major
//! ```

use std::fmt;
use std::path::{Path, PathBuf};

/// The six bytes every `.npy` file starts with.
pub const MAGIC: &[u8; 6] = b"\x93NUMPY";

/// The element types this module reads and writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DType {
    /// IEEE float32 (`'<f4'`).
    F32,
    /// IEEE float64 (`'<f8'`).
    F64,
}

impl DType {
    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            DType::F32 => 4,
            DType::F64 => 8,
        }
    }

    /// The little-endian descr string written in headers: `'<f4'` or `'<f8'`.
    pub fn descr(self) -> &'static str {
        match self {
            DType::F32 => "<f4",
            DType::F64 => "<f8",
        }
    }
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DType::F32 => "float32",
            DType::F64 => "float64",
        })
    }
}

/// The elements of an [`Array`], in the array's storage order.
#[derive(Clone, Debug, PartialEq)]
pub enum Data {
    /// float32 elements.
    F32(Vec<f32>),
    /// float64 elements.
    F64(Vec<f64>),
}

impl Data {
    /// Number of elements.
    pub fn len(&self) -> usize {
        match self {
            Data::F32(v) => v.len(),
            Data::F64(v) => v.len(),
        }
    }

    /// Whether there are no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The element type.
    pub fn dtype(&self) -> DType {
        match self {
            Data::F32(_) => DType::F32,
            Data::F64(_) => DType::F64,
        }
    }
}

/// What is wrong with a `.npy` file (the part of an [`NpyError`] that does not name the file).
#[derive(Debug)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The file could not be read.
    Read(std::io::Error),
    /// The file could not be written.
    Write(std::io::Error),
    /// The file does not start with `\x93NUMPY`.
    BadMagic {
        /// The first bytes found, escaped.
        found: String,
    },
    /// A format version other than 1.0, 2.0 or 3.0.
    UnsupportedVersion {
        /// Major version byte.
        major: u8,
        /// Minor version byte.
        minor: u8,
    },
    /// The file ends before the header does.
    Truncated {
        /// Which part is cut: `"magic"`, `"version"`, `"header length"` or `"header"`.
        part: &'static str,
        /// Bytes in the file.
        len: usize,
        /// Bytes the part needs the file to have.
        needed: usize,
    },
    /// The header is not the dictionary `{'descr': …, 'fortran_order': …, 'shape': (…)}`.
    Header(String),
    /// A dtype other than float32 or float64.
    UnsupportedDType {
        /// The descr as written in the header.
        descr: String,
    },
    /// The number of data bytes does not match the shape and dtype.
    DataLength {
        /// The shape, as numpy prints it.
        shape: String,
        /// The element type.
        dtype: DType,
        /// Bytes the shape needs.
        expected: usize,
        /// Bytes present.
        found: usize,
    },
    /// The shape's element count does not fit in memory addresses.
    ShapeOverflow {
        /// The shape, as numpy prints it.
        shape: String,
    },
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ErrorKind::Read(e) => write!(f, "cannot read: {e}"),
            ErrorKind::Write(e) => write!(f, "cannot write: {e}"),
            ErrorKind::BadMagic { found } => write!(
                f,
                "not a .npy file: it starts with \"{found}\", not the magic \"\\x93NUMPY\""
            ),
            ErrorKind::UnsupportedVersion { major, minor } => write!(
                f,
                "unsupported .npy format version {major}.{minor} (1.0, 2.0 and 3.0 are read)"
            ),
            ErrorKind::Truncated { part, len, needed } => write!(
                f,
                "truncated .npy file: it ends inside the {part} ({len} bytes, the {part} needs {needed})"
            ),
            ErrorKind::Header(msg) => write!(f, "bad .npy header: {msg}"),
            ErrorKind::UnsupportedDType { descr } => write!(
                f,
                "unsupported dtype {descr:?}: only float32 ('<f4') and float64 ('<f8') are read"
            ),
            ErrorKind::DataLength {
                shape,
                dtype,
                expected,
                found,
            } => {
                let what = if found < expected {
                    "data is truncated"
                } else {
                    "data is longer than the header says"
                };
                write!(
                    f,
                    "{what}: shape {shape} of {dtype} needs {expected} bytes, the file has {found}"
                )
            }
            ErrorKind::ShapeOverflow { shape } => {
                write!(f, "shape {shape} has more elements than memory can address")
            }
        }
    }
}

/// A `.npy` file that could not be read, parsed or written: which file, and what is wrong.
/// Displays as one line, `FILE: what is wrong`.
#[derive(Debug)]
pub struct NpyError {
    file: Option<PathBuf>,
    kind: ErrorKind,
}

impl NpyError {
    fn new(kind: ErrorKind) -> Self {
        Self { file: None, kind }
    }

    fn in_file(mut self, path: &Path) -> Self {
        self.file = Some(path.to_path_buf());
        self
    }

    /// The file, when the error came from [`Array::read`], [`Array::write`] or [`write_f32`].
    pub fn file(&self) -> Option<&Path> {
        self.file.as_deref()
    }

    /// What is wrong.
    pub fn kind(&self) -> &ErrorKind {
        &self.kind
    }
}

impl fmt::Display for NpyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.file {
            Some(p) => write!(f, "{}: {}", p.display(), self.kind),
            None => write!(f, "{}", self.kind),
        }
    }
}

impl std::error::Error for NpyError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.kind {
            ErrorKind::Read(e) | ErrorKind::Write(e) => Some(e),
            _ => None,
        }
    }
}

/// Formats a shape as numpy prints it: `()`, `(5,)`, `(3, 4)`.
pub fn shape_string(shape: &[usize]) -> String {
    match shape {
        [] => "()".to_string(),
        [n] => format!("({n},)"),
        _ => {
            let parts: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
            format!("({})", parts.join(", "))
        }
    }
}

/// An n-dimensional float array as stored in a `.npy` file: shape, storage order, elements.
#[derive(Clone, Debug, PartialEq)]
pub struct Array {
    shape: Vec<usize>,
    fortran_order: bool,
    data: Data,
}

impl Array {
    /// An array of `shape` whose elements are `data` in C order (`fortran_order = false`) or
    /// Fortran order. The element count must be the product of the shape (1 for rank 0).
    pub fn new(shape: Vec<usize>, fortran_order: bool, data: Data) -> Result<Self, NpyError> {
        let shape_str = shape_string(&shape);
        let count = element_count(&shape).ok_or_else(|| {
            NpyError::new(ErrorKind::ShapeOverflow {
                shape: shape_str.clone(),
            })
        })?;
        if count != data.len() {
            let dtype = data.dtype();
            return Err(NpyError::new(ErrorKind::DataLength {
                shape: shape_str,
                dtype,
                expected: count.saturating_mul(dtype.size()),
                found: data.len().saturating_mul(dtype.size()),
            }));
        }
        Ok(Self {
            shape,
            fortran_order,
            data,
        })
    }

    /// A float32 array from elements in C order.
    pub fn from_f32(shape: Vec<usize>, data: Vec<f32>) -> Result<Self, NpyError> {
        Self::new(shape, false, Data::F32(data))
    }

    /// The shape, as numpy gives it.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// Number of dimensions.
    pub fn ndim(&self) -> usize {
        self.shape.len()
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.data.len()
    }

    /// Whether the array has no elements (some dimension is 0).
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// Whether the elements are stored in Fortran (column-major) order.
    pub fn fortran_order(&self) -> bool {
        self.fortran_order
    }

    /// The element type.
    pub fn dtype(&self) -> DType {
        self.data.dtype()
    }

    /// The elements in storage order (see [`Array::fortran_order`]).
    pub fn data(&self) -> &Data {
        &self.data
    }

    /// Takes the elements, in storage order.
    pub fn into_data(self) -> Data {
        self.data
    }

    /// The elements as f32 in C (row-major) order, whatever the file's order; float64 values
    /// are rounded to the nearest float32 (values beyond its range become ±inf).
    pub fn to_f32_c_order(&self) -> Vec<f32> {
        self.to_f32_in(false)
    }

    /// The elements as f32 in Fortran (column-major) order, whatever the file's order. For a
    /// 2-D array this is the column-major matrix LAPACK and metalcore use.
    pub fn to_f32_fortran_order(&self) -> Vec<f32> {
        self.to_f32_in(true)
    }

    fn to_f32_in(&self, fortran: bool) -> Vec<f32> {
        let flat: Vec<f32> = match &self.data {
            Data::F32(v) => v.clone(),
            Data::F64(v) => v.iter().map(|&x| x as f32).collect(),
        };
        if fortran == self.fortran_order {
            flat
        } else {
            reorder(&self.shape, &flat, self.fortran_order)
        }
    }

    /// The elements as f64 in C (row-major) order, whatever the file's order (exact: float32
    /// widens without rounding).
    pub fn to_f64_c_order(&self) -> Vec<f64> {
        self.to_f64_in(false)
    }

    /// The elements as f64 in Fortran (column-major) order, whatever the file's order.
    pub fn to_f64_fortran_order(&self) -> Vec<f64> {
        self.to_f64_in(true)
    }

    fn to_f64_in(&self, fortran: bool) -> Vec<f64> {
        let flat: Vec<f64> = match &self.data {
            Data::F32(v) => v.iter().map(|&x| x as f64).collect(),
            Data::F64(v) => v.clone(),
        };
        if fortran == self.fortran_order {
            flat
        } else {
            reorder(&self.shape, &flat, self.fortran_order)
        }
    }

    /// The same array (same shape, dtype and elements) stored in Fortran order (`fortran`) or
    /// C order.
    pub fn with_order(&self, fortran: bool) -> Array {
        if fortran == self.fortran_order {
            return self.clone();
        }
        let data = match &self.data {
            Data::F32(v) => Data::F32(reorder(&self.shape, v, self.fortran_order)),
            Data::F64(v) => Data::F64(reorder(&self.shape, v, self.fortran_order)),
        };
        Array {
            shape: self.shape.clone(),
            fortran_order: fortran,
            data,
        }
    }

    /// Parses the bytes of a `.npy` file.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, NpyError> {
        parse(bytes).map_err(NpyError::new)
    }

    /// Reads and parses a `.npy` file.
    pub fn read(path: impl AsRef<Path>) -> Result<Self, NpyError> {
        let path = path.as_ref();
        let bytes =
            std::fs::read(path).map_err(|e| NpyError::new(ErrorKind::Read(e)).in_file(path))?;
        parse(&bytes).map_err(|k| NpyError::new(k).in_file(path))
    }

    /// The bytes of a `.npy` file holding this array: its dtype (little-endian), its order.
    pub fn to_bytes(&self) -> Vec<u8> {
        let dict = format!(
            "{{'descr': '{}', 'fortran_order': {}, 'shape': {}, }}",
            self.dtype().descr(),
            if self.fortran_order { "True" } else { "False" },
            shape_string(&self.shape)
        );
        // Pad with spaces and end with '\n' so that the data starts 64-byte aligned.
        let pad = |preamble: usize| {
            let unpadded = preamble + dict.len() + 1;
            unpadded.div_ceil(64) * 64 - preamble
        };
        let (version, preamble) = if pad(10) <= u16::MAX as usize {
            (1u8, 10)
        } else {
            (2u8, 12)
        };
        let header_len = pad(preamble);
        let mut out = Vec::with_capacity(preamble + header_len + self.len() * 8);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&[version, 0]);
        if version == 1 {
            out.extend_from_slice(&(header_len as u16).to_le_bytes());
        } else {
            out.extend_from_slice(&(header_len as u32).to_le_bytes());
        }
        out.extend_from_slice(dict.as_bytes());
        out.resize(preamble + header_len - 1, b' ');
        out.push(b'\n');
        match &self.data {
            Data::F32(v) => v
                .iter()
                .for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
            Data::F64(v) => v
                .iter()
                .for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
        }
        out
    }

    /// Writes the array as a `.npy` file (see [`Array::to_bytes`]).
    pub fn write(&self, path: impl AsRef<Path>) -> Result<(), NpyError> {
        let path = path.as_ref();
        std::fs::write(path, self.to_bytes())
            .map_err(|e| NpyError::new(ErrorKind::Write(e)).in_file(path))
    }
}

/// Reads a `.npy` file (see [`Array::read`]).
pub fn read(path: impl AsRef<Path>) -> Result<Array, NpyError> {
    Array::read(path)
}

/// Writes float32 elements given in C (row-major) order as a `.npy` file of `shape` — what
/// `numpy.save` writes for a float32 C-contiguous array.
pub fn write_f32(path: impl AsRef<Path>, shape: &[usize], data: &[f32]) -> Result<(), NpyError> {
    let path = path.as_ref();
    Array::from_f32(shape.to_vec(), data.to_vec())
        .map_err(|e| e.in_file(path))?
        .write(path)
}

fn element_count(shape: &[usize]) -> Option<usize> {
    shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d))
}

/// Converts elements between C and Fortran order (`from_fortran` says which they are in).
fn reorder<T: Copy + Default>(shape: &[usize], src: &[T], from_fortran: bool) -> Vec<T> {
    let n = src.len();
    if shape.len() < 2 || n == 0 {
        return src.to_vec();
    }
    // Fortran strides: the first index moves fastest.
    let mut fstride = vec![1usize; shape.len()];
    for k in 1..shape.len() {
        fstride[k] = fstride[k - 1] * shape[k - 1];
    }
    let mut out = vec![T::default(); n];
    let mut index = vec![0usize; shape.len()];
    let mut f = 0usize;
    for c in 0..n {
        if from_fortran {
            out[c] = src[f];
        } else {
            out[f] = src[c];
        }
        // Advance the C-order multi-index (last index fastest), keeping f in step.
        for k in (0..shape.len()).rev() {
            index[k] += 1;
            f += fstride[k];
            if index[k] < shape[k] {
                break;
            }
            f -= fstride[k] * shape[k];
            index[k] = 0;
        }
    }
    out
}

fn escape(bytes: &[u8]) -> String {
    bytes
        .iter()
        .flat_map(|&b| std::ascii::escape_default(b))
        .map(char::from)
        .collect()
}

fn parse(bytes: &[u8]) -> Result<Array, ErrorKind> {
    let truncated = |part, needed| ErrorKind::Truncated {
        part,
        len: bytes.len(),
        needed,
    };
    let head = &bytes[..bytes.len().min(MAGIC.len())];
    if head != &MAGIC[..head.len()] {
        return Err(ErrorKind::BadMagic {
            found: escape(head),
        });
    }
    if bytes.len() < 6 {
        return Err(truncated("magic", 6));
    }
    if bytes.len() < 8 {
        return Err(truncated("version", 8));
    }
    let (major, minor) = (bytes[6], bytes[7]);
    let len_bytes = match (major, minor) {
        (1, 0) => 2,
        (2, 0) | (3, 0) => 4,
        _ => return Err(ErrorKind::UnsupportedVersion { major, minor }),
    };
    let preamble = 8 + len_bytes;
    if bytes.len() < preamble {
        return Err(truncated("header length", preamble));
    }
    let header_len = if len_bytes == 2 {
        u16::from_le_bytes([bytes[8], bytes[9]]) as usize
    } else {
        u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize
    };
    let data_start = preamble
        .checked_add(header_len)
        .ok_or_else(|| truncated("header", usize::MAX))?;
    if bytes.len() < data_start {
        return Err(truncated("header", data_start));
    }
    let header = parse_header(&bytes[preamble..data_start])?;
    let shape_str = shape_string(&header.shape);
    let count = element_count(&header.shape).ok_or_else(|| ErrorKind::ShapeOverflow {
        shape: shape_str.clone(),
    })?;
    let body = &bytes[data_start..];
    let expected = count.checked_mul(header.dtype.size());
    if expected != Some(body.len()) {
        return Err(match expected {
            Some(expected) => ErrorKind::DataLength {
                shape: shape_str,
                dtype: header.dtype,
                expected,
                found: body.len(),
            },
            None => ErrorKind::ShapeOverflow { shape: shape_str },
        });
    }
    let data = match header.dtype {
        DType::F32 => Data::F32(
            body.chunks_exact(4)
                .map(|c| {
                    let b = [c[0], c[1], c[2], c[3]];
                    match header.order {
                        ByteOrder::Little => f32::from_le_bytes(b),
                        ByteOrder::Big => f32::from_be_bytes(b),
                        ByteOrder::Native => f32::from_ne_bytes(b),
                    }
                })
                .collect(),
        ),
        DType::F64 => Data::F64(
            body.chunks_exact(8)
                .map(|c| {
                    let b = [c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]];
                    match header.order {
                        ByteOrder::Little => f64::from_le_bytes(b),
                        ByteOrder::Big => f64::from_be_bytes(b),
                        ByteOrder::Native => f64::from_ne_bytes(b),
                    }
                })
                .collect(),
        ),
    };
    Ok(Array {
        shape: header.shape,
        fortran_order: header.fortran_order,
        data,
    })
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ByteOrder {
    Little,
    Big,
    Native,
}

struct Header {
    dtype: DType,
    order: ByteOrder,
    fortran_order: bool,
    shape: Vec<usize>,
}

/// A value of the header dictionary.
enum Value {
    Str(String),
    Bool(bool),
    Tuple(Vec<usize>),
}

/// A tiny reader for the Python literal numpy writes: `{'descr': '<f4', 'fortran_order':
/// False, 'shape': (3, 4), }`, followed by spaces and a newline.
struct Lexer<'a> {
    s: &'a [u8],
    pos: usize,
}

impl Lexer<'_> {
    fn skip_ws(&mut self) {
        while self.pos < self.s.len() && matches!(self.s[self.pos], b' ' | b'\t' | b'\n' | b'\r') {
            self.pos += 1;
        }
    }

    fn peek(&mut self) -> Option<u8> {
        self.skip_ws();
        self.s.get(self.pos).copied()
    }

    fn describe(c: Option<u8>) -> String {
        match c {
            Some(c) if c.is_ascii_graphic() => format!("'{}'", c as char),
            Some(c) => format!("byte 0x{c:02x}"),
            None => "the end of the header".to_string(),
        }
    }

    fn expect(&mut self, want: u8) -> Result<(), ErrorKind> {
        match self.peek() {
            Some(c) if c == want => {
                self.pos += 1;
                Ok(())
            }
            other => Err(ErrorKind::Header(format!(
                "expected '{}' at offset {}, found {}",
                want as char,
                self.pos,
                Self::describe(other)
            ))),
        }
    }

    fn string(&mut self) -> Result<String, ErrorKind> {
        let quote = match self.peek() {
            Some(q @ (b'\'' | b'"')) => q,
            other => {
                return Err(ErrorKind::Header(format!(
                    "expected a quoted string at offset {}, found {}",
                    self.pos,
                    Self::describe(other)
                )))
            }
        };
        let start = self.pos + 1;
        let end = self.s[start..]
            .iter()
            .position(|&c| c == quote)
            .map(|p| start + p)
            .ok_or_else(|| ErrorKind::Header("unterminated string".to_string()))?;
        self.pos = end + 1;
        Ok(String::from_utf8_lossy(&self.s[start..end]).into_owned())
    }

    fn word(&mut self) -> &[u8] {
        self.skip_ws();
        let start = self.pos;
        while self.pos < self.s.len() && self.s[self.pos].is_ascii_alphanumeric() {
            self.pos += 1;
        }
        &self.s[start..self.pos]
    }

    fn value(&mut self) -> Result<Value, ErrorKind> {
        match self.peek() {
            Some(b'\'' | b'"') => self.string().map(Value::Str),
            Some(b'(') => {
                self.pos += 1;
                let mut dims = Vec::new();
                loop {
                    if self.peek() == Some(b')') {
                        self.pos += 1;
                        break;
                    }
                    let at = self.pos;
                    let word = self.word();
                    // Python 2 wrote long integers as `3L`.
                    let digits = word.strip_suffix(b"L").unwrap_or(word);
                    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
                        return Err(ErrorKind::Header(format!(
                            "shape must be a tuple of non-negative integers; found {} at offset {at}",
                            if word.is_empty() {
                                Self::describe(self.s.get(at).copied())
                            } else {
                                format!("{:?}", String::from_utf8_lossy(word))
                            }
                        )));
                    }
                    let dim = std::str::from_utf8(digits)
                        .ok()
                        .and_then(|d| d.parse::<usize>().ok())
                        .ok_or_else(|| {
                            ErrorKind::Header(format!(
                                "shape dimension {} is too large",
                                String::from_utf8_lossy(digits)
                            ))
                        })?;
                    dims.push(dim);
                    match self.peek() {
                        Some(b',') => self.pos += 1,
                        Some(b')') => {}
                        other => {
                            return Err(ErrorKind::Header(format!(
                                "expected ',' or ')' in shape at offset {}, found {}",
                                self.pos,
                                Self::describe(other)
                            )))
                        }
                    }
                }
                Ok(Value::Tuple(dims))
            }
            Some(b'[') => Err(ErrorKind::Header(
                "structured dtypes (a list as descr) are not supported".to_string(),
            )),
            other => {
                let at = self.pos;
                match self.word() {
                    b"True" => Ok(Value::Bool(true)),
                    b"False" => Ok(Value::Bool(false)),
                    _ => Err(ErrorKind::Header(format!(
                        "expected a string, True, False or a tuple at offset {at}, found {}",
                        Self::describe(other)
                    ))),
                }
            }
        }
    }
}

fn parse_header(raw: &[u8]) -> Result<Header, ErrorKind> {
    let mut lx = Lexer { s: raw, pos: 0 };
    lx.expect(b'{')?;
    let (mut descr, mut fortran, mut shape) = (None, None, None);
    loop {
        if lx.peek() == Some(b'}') {
            lx.pos += 1;
            break;
        }
        let key = lx.string()?;
        lx.expect(b':')?;
        let value = lx.value()?;
        let duplicate = match (key.as_str(), value) {
            ("descr", Value::Str(s)) => descr.replace(s).is_some(),
            ("fortran_order", Value::Bool(b)) => fortran.replace(b).is_some(),
            ("shape", Value::Tuple(t)) => shape.replace(t).is_some(),
            ("descr", _) => return Err(ErrorKind::Header("'descr' must be a string".into())),
            ("fortran_order", _) => {
                return Err(ErrorKind::Header(
                    "'fortran_order' must be True or False".into(),
                ))
            }
            ("shape", _) => {
                return Err(ErrorKind::Header("'shape' must be a tuple".into()));
            }
            (other, _) => {
                return Err(ErrorKind::Header(format!(
                    "unexpected key {other:?} (expected 'descr', 'fortran_order', 'shape')"
                )))
            }
        };
        if duplicate {
            return Err(ErrorKind::Header(format!("key {key:?} appears twice")));
        }
        match lx.peek() {
            Some(b',') => lx.pos += 1,
            Some(b'}') => {}
            other => {
                return Err(ErrorKind::Header(format!(
                    "expected ',' or '}}' at offset {}, found {}",
                    lx.pos,
                    Lexer::describe(other)
                )))
            }
        }
    }
    if let Some(c) = lx.peek() {
        return Err(ErrorKind::Header(format!(
            "unexpected {} after the dictionary at offset {}",
            Lexer::describe(Some(c)),
            lx.pos
        )));
    }
    let missing = |k: &str| ErrorKind::Header(format!("the key '{k}' is missing"));
    let descr = descr.ok_or_else(|| missing("descr"))?;
    let fortran_order = fortran.ok_or_else(|| missing("fortran_order"))?;
    let shape = shape.ok_or_else(|| missing("shape"))?;
    let (order, kind) = match descr.as_bytes().first() {
        Some(b'<') => (ByteOrder::Little, &descr[1..]),
        Some(b'>') => (ByteOrder::Big, &descr[1..]),
        Some(b'=' | b'|') => (ByteOrder::Native, &descr[1..]),
        _ => (ByteOrder::Native, descr.as_str()),
    };
    let dtype = match kind {
        "f4" => DType::F32,
        "f8" => DType::F64,
        _ => return Err(ErrorKind::UnsupportedDType { descr }),
    };
    Ok(Header {
        dtype,
        order,
        fortran_order,
        shape,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reorder_round_trips_rank_3() {
        let shape = [2, 3, 4];
        let c: Vec<f32> = (0..24).map(|x| x as f32).collect();
        let f = reorder(&shape, &c, false);
        // Fortran element (i, j, k) at i + 2j + 6k equals C element i*12 + j*4 + k.
        for i in 0..2 {
            for j in 0..3 {
                for k in 0..4 {
                    assert_eq!(f[i + 2 * j + 6 * k], c[i * 12 + j * 4 + k]);
                }
            }
        }
        assert_eq!(reorder(&shape, &f, true), c);
    }
}
