use super::*;
use crate::senml::{encode_cbor, Record, ValueRef};
use alloc::vec;

const NOW: f64 = 1_700_000_000.0;

fn ok(payload: &[u8]) -> Pack {
    decode(payload, &Limits::default(), NOW).expect("decodes")
}

fn err(payload: &[u8]) -> WireError {
    decode(payload, &Limits::default(), NOW).expect_err("refused")
}

fn num(name: &str, v: f64) -> Record<'_> {
    Record {
        name,
        unit: Some("Cel"),
        value: ValueRef::Num(v),
        time: None,
    }
}

#[test]
fn json_table() {
    type Row<'a> = (&'a str, Option<&'a str>, Value, f64);
    let cases: &[(&str, Result<Vec<Row<'_>>, &str>)] = &[
        (
            r#"[{"n":"temp","u":"Cel","v":21.5}]"#,
            Ok(vec![("temp", Some("Cel"), Value::Num(21.5), NOW)]),
        ),
        (
            r#"[{"bn":"room1/","bt":1700000100,"bu":"%RH","n":"hum","v":40},{"n":"hum","t":10,"v":41}]"#,
            Ok(vec![
                ("room1/hum", Some("%RH"), Value::Num(40.0), 1_700_000_100.0),
                ("room1/hum", Some("%RH"), Value::Num(41.0), 1_700_000_110.0),
            ]),
        ),
        (
            r#"[{"n":"door","vb":true,"t":-5},{"n":"fw","vs":"1.2"}]"#,
            Ok(vec![
                ("door", None, Value::Bool(true), NOW - 5.0),
                ("fw", None, Value::Str("1.2".into()), NOW),
            ]),
        ),
        (
            r#"[{"bv":10,"n":"x","v":1.5},{"n":"e","s":3}]"#,
            Ok(vec![
                ("x", None, Value::Num(11.5), NOW),
                ("e", None, Value::Num(3.0), NOW),
            ]),
        ),
        (
            r#" [{"n":"b","vd":"AQI"}]"#,
            Ok(vec![("b", None, Value::Data(vec![1, 2]), NOW)]),
        ),
        (
            r#"[{"n":"t","v":"hot"}]"#,
            Err("record 0: label v has the wrong type"),
        ),
        (r#"[{"n":"t","v":1"#, Err("json is malformed")),
        (r#"[]"#, Err("pack has no records")),
        (r#"{"n":"t"}"#, Err("neither a SenML CBOR array")),
        (r#"[{"n":"t"}]"#, Err("record 0: no value")),
        (r#"[{"n":"","v":1}]"#, Err("record 0: name is empty")),
        (
            r#"[{"n":"-x","v":1}]"#,
            Err("record 0: name has a character"),
        ),
        (
            r#"[{"n":"a b","v":1}]"#,
            Err("record 0: name has a character"),
        ),
        (
            r#"[{"n":"t","v":1,"vs":"x"}]"#,
            Err("record 0: more than one value"),
        ),
        (r#"[{"n":"t","v":1e999}]"#, Err("json is malformed")),
        (
            r#"[{"n":"t","v":1,"foo_":2}]"#,
            Err("must-understand label foo_"),
        ),
        (r#"[{"bver":11,"n":"t","v":1}]"#, Err("SenML version 11")),
        (
            r#"[{"n":"a","v":1},{"tt_ob":1,"tt_bs":2,"n":"b","v":1}]"#,
            Err("batch identity"),
        ),
        (r#"[{"tt_ob":1,"n":"b","v":1}]"#, Err("batch identity")),
        (
            r#"[{"tt_ob":1,"tt_bs":0,"n":"b","v":1}]"#,
            Err("batch identity"),
        ),
        ("x", Err("neither a SenML CBOR array")),
        ("", Err("payload is empty")),
    ];
    for (input, want) in cases {
        let got = decode(input.as_bytes(), &Limits::default(), NOW);
        match (got, want) {
            (Ok(pack), Ok(want)) => {
                let got: Vec<_> = pack
                    .readings
                    .iter()
                    .map(|r| (r.name.as_str(), r.unit.as_deref(), r.value.clone(), r.time))
                    .collect();
                assert_eq!(&got, want, "{input}");
            }
            (Err(e), Err(want)) => {
                let text = e.to_string();
                assert!(text.contains(want), "{input}: {text} should contain {want}");
            }
            (got, want) => panic!("{input}: got {got:?}, want {want:?}"),
        }
    }
}

#[test]
fn name_too_long_and_too_many_records() {
    let long = alloc::format!(r#"[{{"n":"{}","v":1}}]"#, "a".repeat(65));
    assert!(matches!(
        err(long.as_bytes()),
        WireError::NameTooLong { len: 65, .. }
    ));
    let many = alloc::format!("[{}]", vec![r#"{"n":"a","v":1}"#; 1001].join(","));
    assert!(matches!(
        err(many.as_bytes()),
        WireError::TooManyRecords { .. }
    ));
    let big = vec![b' '; 64 * 1024 + 1];
    assert!(matches!(err(&big), WireError::PayloadTooLarge { .. }));
}

#[test]
fn cbor_round_trip_with_identity() {
    let recs = [
        num("temp", 21.5),
        Record {
            name: "door",
            unit: None,
            value: ValueRef::Bool(false),
            time: Some(1_700_000_123.25),
        },
        Record {
            name: "fw",
            unit: None,
            value: ValueRef::Str("v1"),
            time: None,
        },
        num("count", 7.0),
        num("precise", 0.1),
    ];
    let id = BatchId {
        outbox: 42,
        seq: 7,
        low: 3,
    };
    let mut buf = [0u8; 256];
    let n = encode_cbor(Some("dev/"), Some(id), &recs, &mut buf).expect("fits");
    let pack = ok(&buf[..n]);
    assert_eq!(pack.batch, Some(id));
    let names: Vec<_> = pack.readings.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(
        names,
        ["dev/temp", "dev/door", "dev/fw", "dev/count", "dev/precise"]
    );
    assert_eq!(pack.readings[0].value, Value::Num(21.5));
    assert_eq!(pack.readings[1].time, 1_700_000_123.25);
    assert_eq!(pack.readings[2].value, Value::Str("v1".into()));
    assert_eq!(pack.readings[3].value, Value::Num(7.0));
    assert_eq!(pack.readings[4].value, Value::Num(0.1));
}

#[test]
fn cbor_bad_inputs() {
    let mut buf = [0u8; 64];
    let n = encode_cbor(None, None, &[num("temp", 1.0)], &mut buf).expect("fits");
    // Truncated at every length.
    for cut in 1..n {
        let e = err(&buf[..cut]);
        assert!(
            matches!(e, WireError::MalformedCbor { .. }),
            "cut {cut}: {e:?}"
        );
    }
    // Trailing garbage.
    let mut long = buf[..n].to_vec();
    long.push(0);
    assert!(matches!(err(&long), WireError::MalformedCbor { .. }));
    // [{0: "t", 2: "x"}]: v is a string.
    assert_eq!(
        err(&[0x81, 0xa2, 0x00, 0x61, b't', 0x02, 0x61, b'x']),
        WireError::WrongType {
            record: 0,
            label: "v"
        }
    );
    // [{0: "t", 2: NaN (f16 0x7e00)}]
    assert_eq!(
        err(&[0x81, 0xa2, 0x00, 0x61, b't', 0x02, 0xf9, 0x7e, 0x00]),
        WireError::NotFinite {
            record: 0,
            label: "v"
        }
    );
    // [1]: a record that is not a map.
    assert!(matches!(
        err(&[0x81, 0x01]),
        WireError::MalformedCbor { .. }
    ));
    // Indefinite array and map.
    let p = ok(&[0x9f, 0xbf, 0x00, 0x61, b't', 0x02, 0x01, 0xff, 0xff]);
    assert_eq!(p.readings[0].value, Value::Num(1.0));
}

#[test]
fn heapless_batch_decodes() {
    let mut b: crate::batch::Batch<4> = crate::batch::Batch::new();
    b.push(num("a", 1.0)).expect("room");
    b.push(num("b", 2.5)).expect("room");
    let mut buf = [0u8; 128];
    let n = b
        .encode_cbor(
            Some(BatchId {
                outbox: 1,
                seq: 1,
                low: 1,
            }),
            &mut buf,
        )
        .expect("fits");
    let p = ok(&buf[..n]);
    assert_eq!(p.readings.len(), 2);
    assert_eq!(p.readings[1].value, Value::Num(2.5));
}

#[test]
fn identity_of_a_refused_pack() {
    let bad = br#"[{"tt_ob":9,"tt_bs":4,"tt_lo":2,"n":"b","v":"x"}]"#;
    assert!(decode(bad, &Limits::default(), NOW).is_err());
    assert_eq!(
        batch_identity(bad),
        Some(BatchId {
            outbox: 9,
            seq: 4,
            low: 2
        })
    );
    assert_eq!(batch_identity(b"[{\"n\":\"b\",\"v\":1}]"), None);
    assert_eq!(batch_identity(b"junk"), None);
}
