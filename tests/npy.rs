//! `metalcore::npy`: round trips, the files numpy writes, and every kind of broken file. The
//! fixtures are bytes built here; the numpy ones were checked against `numpy.save` by hand.

use metalcore::npy::{self, Array, DType, Data, ErrorKind, NpyError};

/// A `.npy` file as numpy lays it out: magic, version, header length, the header dict padded
/// with spaces to a 64-byte boundary and ended by '\n', then `data`.
fn npy_file(major: u8, dict: &str, data: &[u8]) -> Vec<u8> {
    let preamble = if major == 1 { 10 } else { 12 };
    let total = (preamble + dict.len() + 1).div_ceil(64) * 64;
    let header_len = total - preamble;
    let mut out = b"\x93NUMPY".to_vec();
    out.extend_from_slice(&[major, 0]);
    if major == 1 {
        out.extend_from_slice(&(header_len as u16).to_le_bytes());
    } else {
        out.extend_from_slice(&(header_len as u32).to_le_bytes());
    }
    out.extend_from_slice(dict.as_bytes());
    out.resize(total - 1, b' ');
    out.push(b'\n');
    out.extend_from_slice(data);
    out
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn f32_le(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// Parses bytes that must be rejected; the error must be one line.
fn err(bytes: &[u8]) -> NpyError {
    match Array::from_bytes(bytes) {
        Ok(a) => panic!("parsed a broken file as {a:?}"),
        Err(e) => {
            let msg = e.to_string();
            assert!(!msg.contains('\n'), "multi-line error: {msg}");
            e
        }
    }
}

#[test]
fn reads_what_numpy_writes() {
    // np.save(f, np.array([[1, -2, 3.5], [4, 5, 6]], dtype=np.float32))
    let f = npy_file(
        1,
        "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }",
        &hex("0000803f000000c000006040000080400000a0400000c040"),
    );
    assert_eq!(f.len(), 152);
    let a = Array::from_bytes(&f).unwrap();
    assert_eq!(a.shape(), &[2, 3]);
    assert_eq!(a.dtype(), DType::F32);
    assert!(!a.fortran_order());
    assert_eq!(a.to_f32_c_order(), vec![1., -2., 3.5, 4., 5., 6.]);
    assert_eq!(a.to_f32_fortran_order(), vec![1., 4., -2., 5., 3.5, 6.]);

    // np.save(f, np.array([1, -2, 3.5], dtype='>f4')): big-endian, converted.
    let f = npy_file(
        1,
        "{'descr': '>f4', 'fortran_order': False, 'shape': (3,), }",
        &hex("3f800000c000000040600000"),
    );
    let a = Array::from_bytes(&f).unwrap();
    assert_eq!(a.shape(), &[3]);
    assert_eq!(a.data(), &Data::F32(vec![1., -2., 3.5]));

    // np.save(f, np.asfortranarray(np.array([[1, 2, 3], [4, 5, 6]], dtype='<f8')))
    let f = npy_file(
        1,
        "{'descr': '<f8', 'fortran_order': True, 'shape': (2, 3), }",
        &hex("000000000000f03f00000000000010400000000000000040000000000000144000000000000008400000000000001840"),
    );
    let a = Array::from_bytes(&f).unwrap();
    assert!(a.fortran_order());
    assert_eq!(a.dtype(), DType::F64);
    assert_eq!(a.to_f32_c_order(), vec![1., 2., 3., 4., 5., 6.]);
    assert_eq!(a.to_f32_fortran_order(), vec![1., 4., 2., 5., 3., 6.]);
}

#[test]
fn header_variants_numpy_accepts() {
    let data = f32_le(&[1., 2.]);
    for dict in [
        "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }",
        "{'descr': '<f4', 'fortran_order': False, 'shape': (2,)}",
        "{\"descr\": \"<f4\", \"fortran_order\": False, \"shape\": (2,)}",
        "{'shape': (2,), 'fortran_order': False, 'descr': '<f4'}",
        "{'descr':'<f4','fortran_order':False,'shape':(2L,)}",
        "{ 'descr' : '<f4' ,\t'fortran_order' : False , 'shape' : ( 2 , ) , }",
    ] {
        let a =
            Array::from_bytes(&npy_file(1, dict, &data)).unwrap_or_else(|e| panic!("{dict}: {e}"));
        assert_eq!(a.to_f32_c_order(), vec![1., 2.], "{dict}");
    }
    // Native byte order: '=', '|' and no character at all.
    #[cfg(target_endian = "little")]
    for descr in ["=f4", "|f4", "f4"] {
        let dict = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': (2,), }}");
        let a = Array::from_bytes(&npy_file(1, &dict, &data)).unwrap();
        assert_eq!(a.to_f32_c_order(), vec![1., 2.], "{descr}");
    }
    // Big-endian float64.
    let be: Vec<u8> = [1.5f64, -2.0]
        .iter()
        .flat_map(|x| x.to_be_bytes())
        .collect();
    let a = Array::from_bytes(&npy_file(
        1,
        "{'descr': '>f8', 'fortran_order': False, 'shape': (2,), }",
        &be,
    ))
    .unwrap();
    assert_eq!(a.data(), &Data::F64(vec![1.5, -2.0]));
}

#[test]
fn versions_2_and_3() {
    for major in [2, 3] {
        let f = npy_file(
            major,
            "{'descr': '<f4', 'fortran_order': False, 'shape': (1, 2), }",
            &f32_le(&[7., 8.]),
        );
        let a = Array::from_bytes(&f).unwrap();
        assert_eq!(a.shape(), &[1, 2]);
        assert_eq!(a.to_f32_c_order(), vec![7., 8.]);
    }
}

#[test]
fn round_trips_every_rank_order_and_dtype() {
    let shapes: [&[usize]; 7] = [&[], &[5], &[0], &[3, 4], &[4, 0], &[2, 3, 4], &[1, 1, 1]];
    for shape in shapes {
        let n: usize = shape.iter().product();
        let values: Vec<f64> = (0..n).map(|i| i as f64 * 0.5 - 3.0).collect();
        for fortran in [false, true] {
            for data in [
                Data::F32(values.iter().map(|&x| x as f32).collect()),
                Data::F64(values.clone()),
            ] {
                let a = Array::new(shape.to_vec(), fortran, data).unwrap();
                let bytes = a.to_bytes();
                assert_eq!(bytes[6..8], [1, 0]);
                let header_end = 10 + u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
                assert_eq!(header_end % 64, 0, "data not 64-byte aligned");
                assert_eq!(bytes[header_end - 1], b'\n');
                let b = Array::from_bytes(&bytes).unwrap();
                assert_eq!(a, b, "shape {shape:?} fortran {fortran}");
                // Logical contents agree whatever the storage order.
                let c = Array::new(shape.to_vec(), false, Data::F32(b.to_f32_c_order())).unwrap();
                assert_eq!(c.to_f32_fortran_order(), b.to_f32_fortran_order());
            }
        }
    }
}

#[test]
fn fortran_order_rank_3_means_first_index_fastest() {
    // Shape (2, 3, 4) in Fortran order: element (i, j, k) stored at i + 2j + 6k.
    let stored: Vec<f32> = (0..24).map(|x| x as f32).collect();
    let a = Array::new(vec![2, 3, 4], true, Data::F32(stored.clone())).unwrap();
    let c = a.to_f32_c_order();
    for i in 0..2 {
        for j in 0..3 {
            for k in 0..4 {
                assert_eq!(c[i * 12 + j * 4 + k], stored[i + 2 * j + 6 * k]);
            }
        }
    }
}

#[test]
fn files_on_disk_and_errors_name_them() {
    let dir = std::env::temp_dir().join(format!("metalcore-npy-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("x.npy");
    npy::write_f32(&path, &[2, 2], &[1., 2., 3., 4.]).unwrap();
    let a = npy::read(&path).unwrap();
    assert_eq!(a.shape(), &[2, 2]);
    assert_eq!(a.to_f32_c_order(), vec![1., 2., 3., 4.]);

    let bad = dir.join("bad.npy");
    std::fs::write(&bad, b"hello, world").unwrap();
    let e = npy::read(&bad).unwrap_err();
    assert_eq!(e.file(), Some(bad.as_path()));
    let msg = e.to_string();
    assert!(msg.starts_with(&bad.display().to_string()), "{msg}");
    assert!(msg.contains("not a .npy file"), "{msg}");

    let missing = dir.join("missing.npy");
    let e = npy::read(&missing).unwrap_err();
    assert!(matches!(e.kind(), ErrorKind::Read(_)));
    assert!(e.to_string().contains("missing.npy"), "{e}");

    let e = npy::write_f32(dir.join("no/such/dir.npy"), &[1], &[1.]).unwrap_err();
    assert!(matches!(e.kind(), ErrorKind::Write(_)), "{e}");
    let e = npy::write_f32(dir.join("short.npy"), &[2, 2], &[1.]).unwrap_err();
    assert!(matches!(e.kind(), ErrorKind::DataLength { .. }), "{e}");
    std::fs::remove_dir_all(&dir).ok();
}

fn good() -> Vec<u8> {
    npy_file(
        1,
        "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }",
        &f32_le(&[1., 2., 3., 4., 5., 6.]),
    )
}

#[test]
fn magic_version_and_truncation() {
    assert!(matches!(
        err(b"").kind(),
        ErrorKind::Truncated { part: "magic", .. }
    ));
    assert!(matches!(
        err(b"\x93NUM").kind(),
        ErrorKind::Truncated { part: "magic", .. }
    ));
    assert!(matches!(
        err(b"\x93NUMPY\x01").kind(),
        ErrorKind::Truncated {
            part: "version",
            ..
        }
    ));
    assert!(matches!(
        err(b"\x93NUMPY\x01\x00\x76").kind(),
        ErrorKind::Truncated {
            part: "header length",
            ..
        }
    ));
    assert!(matches!(
        err(b"PK\x03\x04 a zip file").kind(),
        ErrorKind::BadMagic { .. }
    ));
    assert!(matches!(
        err(b"\x93NUMPX\x01\x00").kind(),
        ErrorKind::BadMagic { .. }
    ));
    let mut f = good();
    f[6] = 4;
    assert!(matches!(
        err(&f).kind(),
        ErrorKind::UnsupportedVersion { major: 4, minor: 0 }
    ));
    f[6] = 1;
    f[7] = 1;
    assert!(matches!(
        err(&f).kind(),
        ErrorKind::UnsupportedVersion { .. }
    ));

    // Cut inside the header, and inside the data.
    let f = good();
    assert!(matches!(
        err(&f[..60]).kind(),
        ErrorKind::Truncated { part: "header", .. }
    ));
    match err(&f[..f.len() - 3]).kind() {
        ErrorKind::DataLength {
            expected, found, ..
        } => assert_eq!((*expected, *found), (24, 21)),
        other => panic!("{other:?}"),
    }
    let msg = Array::from_bytes(&f[..f.len() - 3])
        .unwrap_err()
        .to_string();
    assert!(msg.contains("truncated"), "{msg}");
    // Trailing bytes.
    let mut long = good();
    long.extend_from_slice(&[0; 4]);
    assert!(matches!(
        err(&long).kind(),
        ErrorKind::DataLength { found: 28, .. }
    ));
    // Every prefix of a good file is an error, never a panic.
    for cut in 0..f.len() {
        assert!(Array::from_bytes(&f[..cut]).is_err(), "prefix {cut} parsed");
    }
    // A header length pointing far past the end.
    let mut f = good();
    f[8] = 0xff;
    f[9] = 0xff;
    assert!(matches!(
        err(&f).kind(),
        ErrorKind::Truncated { part: "header", .. }
    ));
    let mut f = npy_file(
        2,
        "{'descr': '<f4', 'fortran_order': False, 'shape': (1,), }",
        &f32_le(&[1.]),
    );
    f[8..12].copy_from_slice(&u32::MAX.to_le_bytes());
    assert!(matches!(
        err(&f).kind(),
        ErrorKind::Truncated { part: "header", .. }
    ));
}

#[test]
fn bad_headers() {
    let data = f32_le(&[1., 2.]);
    let header = |dict: &str| err(&npy_file(1, dict, &data));
    for dict in [
        "",
        "garbage",
        "{",
        "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), ",
        "{'descr': '<f4', 'fortran_order': False}",
        "{'descr': '<f4', 'shape': (2,)}",
        "{'fortran_order': False, 'shape': (2,)}",
        "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), 'extra': 1}",
        "{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, 'shape': (2,)}",
        "{'descr': '<f4', 'fortran_order': 0, 'shape': (2,)}",
        "{'descr': '<f4', 'fortran_order': false, 'shape': (2,)}",
        "{'descr': '<f4', 'fortran_order': False, 'shape': [2]}",
        "{'descr': '<f4', 'fortran_order': False, 'shape': (-2,)}",
        "{'descr': '<f4', 'fortran_order': False, 'shape': (2.0,)}",
        "{'descr': '<f4', 'fortran_order': False, 'shape': (2 3)}",
        "{'descr': '<f4', 'fortran_order': False, 'shape': (2,,)}",
        "{'descr': '<f4', 'fortran_order': False, 'shape': (2,)} trailing",
        "{'descr': <f4, 'fortran_order': False, 'shape': (2,)}",
        "{'descr': '<f4, 'fortran_order': False, 'shape': (2,)}",
        "{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (2,)}",
        "{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999999999999999,)}",
        "{'descr': 3, 'fortran_order': False, 'shape': (2,)}",
        "{descr: '<f4', 'fortran_order': False, 'shape': (2,)}",
    ] {
        match header(dict).kind() {
            ErrorKind::Header(msg) => assert!(!msg.is_empty()),
            other => panic!("{dict}: {other:?}"),
        }
    }
    for descr in ["<i8", "<f2", "<c8", "|u1", "<f16", "", "<", "float32", "O"] {
        let dict = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': (2,), }}");
        match header(&dict).kind() {
            ErrorKind::UnsupportedDType { descr: d } => assert_eq!(d, descr),
            other => panic!("{descr}: {other:?}"),
        }
    }
    // Shapes whose byte count overflows, or whose element count does: no allocation, an error.
    for shape in [
        "(4611686018427387904,)",
        "(4294967296, 4294967296, 4294967296)",
    ] {
        let dict = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {shape}, }}");
        assert!(
            matches!(header(&dict).kind(), ErrorKind::ShapeOverflow { .. }),
            "{shape}"
        );
    }
    // A large but representable shape against a small file: a length mismatch, not an allocation.
    let dict = "{'descr': '<f4', 'fortran_order': False, 'shape': (100000, 100000), }";
    assert!(matches!(
        header(dict).kind(),
        ErrorKind::DataLength {
            expected: 40_000_000_000,
            found: 8,
            ..
        }
    ));
}

#[test]
fn corrupted_bytes_never_panic() {
    // Flip every byte of the preamble and header to a few values: any result but a panic.
    let f = good();
    let header_end = 128;
    for i in 0..header_end {
        for v in [0u8, b' ', b'\'', b'(', b')', b',', b'9', 0x93, 0xff] {
            let mut g = f.clone();
            g[i] = v;
            if let Err(e) = Array::from_bytes(&g) {
                assert!(!e.to_string().contains('\n'));
            }
        }
    }
    // Pseudo-random garbage after a valid magic and version.
    let mut s = 0x1234_5678_9abc_def0u64;
    for len in 0..300 {
        let mut g = b"\x93NUMPY\x01\x00".to_vec();
        for _ in 0..len {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            g.push(s as u8);
        }
        let _ = Array::from_bytes(&g);
    }
}

#[test]
fn new_checks_length() {
    assert!(Array::new(vec![2, 2], false, Data::F32(vec![0.; 3])).is_err());
    assert!(Array::new(vec![], false, Data::F64(vec![1.0])).is_ok());
    assert!(Array::new(vec![], false, Data::F64(vec![])).is_err());
    assert_eq!(npy::shape_string(&[]), "()");
    assert_eq!(npy::shape_string(&[3]), "(3,)");
    assert_eq!(npy::shape_string(&[3, 4]), "(3, 4)");
}

#[test]
fn large_header_uses_version_2() {
    // A rank-30000 shape of ones (90 kB of header): too long for version 1.0's u16 length.
    let shape = vec![1usize; 30000];
    let a = Array::new(shape.clone(), false, Data::F32(vec![2.5])).unwrap();
    let bytes = a.to_bytes();
    assert_eq!(bytes[6..8], [2, 0]);
    let header_end = 12 + u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize;
    assert_eq!(header_end % 64, 0);
    let b = Array::from_bytes(&bytes).unwrap();
    assert_eq!(b.shape(), &shape[..]);
    assert_eq!(b.to_f32_c_order(), vec![2.5]);
}

#[test]
fn with_order_and_f64_views_keep_the_logical_array() {
    let c = Array::new(
        vec![2, 3, 2],
        false,
        Data::F64((0..12).map(|x| x as f64 + 0.25).collect()),
    )
    .unwrap();
    let f = c.with_order(true);
    assert!(f.fortran_order());
    assert_eq!(f.shape(), c.shape());
    assert_eq!(f.to_f64_c_order(), c.to_f64_c_order());
    assert_eq!(f.to_f64_fortran_order(), c.to_f64_fortran_order());
    assert_eq!(f.with_order(false), c);
    // Storage order of the Fortran copy: (i, j, k) at i + 2j + 6k.
    let Data::F64(stored) = f.data() else {
        panic!("dtype changed")
    };
    let logical = c.to_f64_c_order();
    for i in 0..2 {
        for j in 0..3 {
            for k in 0..2 {
                assert_eq!(stored[i + 2 * j + 6 * k], logical[i * 6 + j * 2 + k]);
            }
        }
    }
    // f64 → f32 rounds; f32 → f64 is exact.
    let a = Array::new(vec![1], false, Data::F64(vec![0.1])).unwrap();
    assert_eq!(a.to_f32_c_order(), vec![0.1f32]);
    let a = Array::new(vec![1], false, Data::F32(vec![0.1])).unwrap();
    assert_eq!(a.to_f64_c_order(), vec![0.1f32 as f64]);
}
