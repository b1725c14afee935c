//! Property tests: any value survives encode → decode and the JSON shape; no input makes the decoder panic.
#![cfg(not(target_arch = "wasm32"))]

use std::sync::Arc;

use proptest::prelude::*;
use psgate_shared::clixml::{
    Content, DateTime, DateTimeKind, Document, Item, ListKind, Object, ProgressRecord, ProgressRecordType, Property,
    Str, TimeSpan, Value, Version, decode_document, decode_message, encode_document, encode_message, json,
};

fn text() -> impl Strategy<Value = Str> {
    // Every code point, plus the ones the escaping rules single out.
    let tricky = prop_oneof![
        Just("_x".to_owned()),
        Just("_X0041_".to_owned()),
        Just("_x005F_".to_owned()),
        Just("\r\n\t\u{0}\u{7F}\u{85}\u{9F}".to_owned()),
        Just("😀𝄞".to_owned()),
        Just("&<>\"']]>".to_owned()),
    ];
    prop::collection::vec(prop_oneof![3 => any::<char>().prop_map(String::from), 1 => tricky], 0..8)
        .prop_map(|parts| Str::from(parts.concat()))
}

fn datetime() -> impl Strategy<Value = DateTime> {
    (1u16..=9999, 1u8..=12, 1u8..=28, 0u8..24, 0u8..60, 0u8..60, 0u32..10_000_000, 0u8..3, -840i16..=840).prop_map(
        |(year, month, day, hour, minute, second, ticks, k, off)| DateTime {
            year,
            month,
            day,
            hour,
            minute,
            second,
            ticks,
            kind: match k {
                0 => DateTimeKind::Unspecified,
                1 => DateTimeKind::Utc,
                _ => DateTimeKind::Local(off),
            },
        },
    )
}

fn decimal() -> impl Strategy<Value = Str> {
    (any::<bool>(), 0u64..u64::MAX, 0usize..10).prop_map(|(neg, digits, scale)| {
        let s = digits.to_string();
        let s = if scale > 0 && scale < s.len() { format!("{}.{}", &s[..s.len() - scale], &s[s.len() - scale..]) } else { s };
        Str::from(if neg { format!("-{s}") } else { s })
    })
}

fn version() -> impl Strategy<Value = Version> {
    let part = 0u32..=i32::MAX as u32;
    (part.clone(), part.clone(), prop::option::of((part.clone(), prop::option::of(part)))).prop_map(|(major, minor, rest)| {
        Version { major, minor, build: rest.map(|r| r.0), revision: rest.and_then(|r| r.1) }
    })
}

fn f64_canonical() -> impl Strategy<Value = f64> {
    any::<f64>().prop_map(|f| if f.is_nan() { f64::NAN } else { f })
}

fn primitive() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Nil),
        any::<bool>().prop_map(Value::Bool),
        any::<u16>().prop_map(Value::Char),
        any::<u8>().prop_map(Value::U8),
        any::<i8>().prop_map(Value::I8),
        any::<u16>().prop_map(Value::U16),
        any::<i16>().prop_map(Value::I16),
        any::<u32>().prop_map(Value::U32),
        any::<i32>().prop_map(Value::I32),
        any::<u64>().prop_map(Value::U64),
        any::<i64>().prop_map(Value::I64),
        any::<f32>().prop_map(|f| Value::Single(if f.is_nan() { f32::NAN } else { f })),
        f64_canonical().prop_map(Value::Double),
        decimal().prop_map(Value::Decimal),
        text().prop_map(Value::String),
        text().prop_map(Value::Uri),
        text().prop_map(Value::Xml),
        text().prop_map(Value::ScriptBlock),
        datetime().prop_map(Value::DateTime),
        any::<i64>().prop_map(|t| Value::TimeSpan(TimeSpan(t))),
        prop::collection::vec(any::<u8>(), 0..20).prop_map(Value::Bytes),
        prop::collection::vec(any::<u8>(), 0..20).prop_map(Value::SecureString),
        any::<u128>().prop_map(|g| Value::Guid(uuid::Uuid::from_u128(g))),
        version().prop_map(Value::Version),
        (text(), any::<i32>(), prop::option::of(text()), any::<i32>(), any::<i32>(), any::<bool>(), any::<i32>(), prop::option::of(text()))
            .prop_map(|(activity, activity_id, current_operation, parent_activity_id, percent_complete, done, seconds_remaining, status_description)| {
                Value::Progress(Box::new(ProgressRecord {
                    activity,
                    activity_id,
                    current_operation,
                    parent_activity_id,
                    percent_complete,
                    record_type: if done { ProgressRecordType::Completed } else { ProgressRecordType::Processing },
                    seconds_remaining,
                    status_description,
                }))
            }),
    ]
}

/// A member set (a nested `<MS N="…">`) of `members`, themselves values or member sets, nested a few deep.
fn member_set(member: impl Strategy<Value = Value> + Clone + 'static) -> impl Strategy<Value = Value> {
    let leaf = prop::collection::vec((text(), member.clone()).prop_map(|(n, v)| Property::new(n, v)), 0..3).prop_map(Value::member_set);
    leaf.prop_recursive(3, 12, 3, move |set| {
        let entry = prop_oneof![3 => member.clone(), 1 => set];
        prop::collection::vec((text(), entry).prop_map(|(n, v)| Property::new(n, v)), 0..3).prop_map(Value::member_set)
    })
}

fn value() -> impl Strategy<Value = Value> {
    primitive().prop_recursive(5, 64, 6, |inner| {
        let props = || prop::collection::vec((text(), inner.clone()).prop_map(|(n, v)| Property::new(n, v)), 0..4);
        // Extended members may be member sets too.
        let members = || {
            let member = prop_oneof![4 => inner.clone(), 1 => member_set(inner.clone())];
            prop::collection::vec((text(), member).prop_map(|(n, v)| Property::new(n, v)), 0..4)
        };
        let content = prop_oneof![
            Just(Content::None),
            inner.clone().prop_map(Content::Primitive),
            (0u8..4, prop::collection::vec(inner.clone(), 0..4)).prop_map(|(k, items)| {
                let kind = [ListKind::List, ListKind::Enumerable, ListKind::Stack, ListKind::Queue][k as usize];
                Content::List(kind, items)
            }),
            prop::collection::vec((inner.clone(), inner.clone()), 0..3).prop_map(Content::Dict),
        ];
        let type_names = prop::option::of(prop::collection::vec(text(), 0..3).prop_map(Arc::from));
        (type_names, prop::option::of(text()), content, props(), members(), any::<bool>()).prop_map(
            |(type_names, to_string, content, adapted, extended, share)| {
                let obj = Value::Object(Arc::new(Object { type_names, to_string, content, adapted, extended, member_set: false }));
                if share {
                    // The same object twice: written once, then as a <Ref>.
                    let list = Object { content: Content::List(ListKind::List, vec![obj.clone(), obj]), ..Object::default() };
                    Value::object(list)
                } else {
                    obj
                }
            },
        )
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn any_value_survives_a_round_trip(v in value()) {
        let xml = encode_message(&v).expect("encodes");
        let back = decode_message(xml.as_bytes()).map_err(|e| TestCaseError::fail(format!("{e}\n{xml}")))?;
        prop_assert_eq!(&back, &v, "{}", xml);
        // Encoding is a function of meaning: the same value always gives the same text.
        prop_assert_eq!(encode_message(&back).expect("encodes"), xml);
    }

    #[test]
    fn any_value_survives_the_json_shape(v in value()) {
        let line = json::Writer::default().value_json(&v);
        let parsed: serde_json::Value = serde_json::from_str(&line).map_err(|e| TestCaseError::fail(format!("{e}: {line}")))?;
        let back = json::Reader::new().value(&parsed, "$", 0).map_err(|e| TestCaseError::fail(format!("{e}: {line}")))?;
        prop_assert_eq!(back, v);
    }

    #[test]
    fn documents_keep_items_and_streams(items in prop::collection::vec((prop::option::of(text()), value()), 0..4), header in any::<bool>()) {
        let doc = Document { clixml_header: header, items: items.into_iter().map(|(stream, value)| Item { stream, value }).collect() };
        let xml = encode_document(&doc).expect("encodes");
        prop_assert_eq!(decode_document(xml.as_bytes()).map_err(|e| TestCaseError::fail(format!("{e}\n{xml}")))?, doc);
    }

    #[test]
    fn the_decoder_never_panics_on_mutated_input(v in value(), cuts in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6)) {
        let mut bytes = encode_message(&v).expect("encodes").into_bytes();
        for (at, byte) in cuts {
            let i = at.index(bytes.len().max(1));
            if i < bytes.len() { bytes[i] = byte; }
        }
        let _ = decode_message(&bytes);
        let _ = decode_document(&bytes);
    }

    #[test]
    fn the_decoder_never_panics_on_any_bytes(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        let _ = decode_message(&bytes);
        let _ = decode_document(&bytes);
    }
}
