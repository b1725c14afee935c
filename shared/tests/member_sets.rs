//! Member sets: PowerShell writes an object's instance `PSMemberSet`s (a `PSStandardMembers` added with
//! `Add-Member -MemberType MemberSet`) as a nested `<MS N="name">` among the object's extended members.
//!
//! The shapes below follow PowerShell's serializer (serialization.cs, `WriteMemberInfoCollection` and
//! `WriteMemberSet`): a set's property members are written as notes, its member sets as nested `<MS N>`,
//! and a `PSPropertySet` member (such as `DefaultDisplayPropertySet`) is not written at all; an empty set
//! closes itself.

use std::sync::Arc;

use psgate_shared::clixml::{
    self, Content, DecodeErrorKind as K, EncodeError, Limits, Object, Property, Value, decode_document, decode_message,
    encode_document, encode_message, json,
};

/// A `[pscustomobject]` with six notes and a `PSStandardMembers` holding a `DefaultDisplayPropertySet`
/// (dropped by the serializer) and a `DefaultDisplayProperty` note, as PowerShell writes it in a message.
const STANDARD_MEMBERS: &str = concat!(
    r#"<Obj RefId="0"><TN RefId="0"><T>System.Management.Automation.PSCustomObject</T><T>System.Object</T></TN><MS>"#,
    r#"<S N="Name">svc1</S><I32 N="Id">42</I32><S N="Status">Running</S><S N="Path">C:\svc</S><S N="Owner">me</S>"#,
    r#"<DT N="Started">2026-01-02T03:04:05Z</DT>"#,
    r#"<MS N="PSStandardMembers"><S N="DefaultDisplayProperty">Name</S></MS></MS></Obj>"#
);

/// A set that carries the display names as values a sender can serialize: a `string[]` note, a
/// `PSPropertySet` held as a note's value (an ordinary object whose `Value` is itself), and a nested set.
const CARRIED_NAMES: &str = concat!(
    r#"<Obj RefId="0"><TN RefId="0"><T>Contoso.Service</T><T>System.Object</T></TN><ToString>svc1</ToString><MS>"#,
    r#"<S N="Name">svc1</S><I32 N="Id">42</I32><S N="Status">Running</S><S N="Path">C:\svc</S><S N="Owner">me</S><S N="Host">h</S>"#,
    r#"<MS N="PSStandardMembers">"#,
    r#"<Obj N="DefaultDisplayPropertySet" RefId="1"><TN RefId="1"><T>System.String[]</T><T>System.Array</T><T>System.Object</T></TN><LST><S>Name</S><S>Id</S></LST></Obj>"#,
    r#"<Obj N="DefaultKeyPropertySet" RefId="2"><TN RefId="2"><T>System.Management.Automation.PSPropertySet</T><T>System.Management.Automation.PSMemberInfo</T><T>System.Object</T></TN>"#,
    r#"<ToString>DefaultKeyPropertySet {Id}</ToString><Props><Obj N="ReferencedPropertyNames" RefId="3"><TN RefId="3"><T>System.Collections.ObjectModel.Collection`1[[System.String]]</T><T>System.Object</T></TN><LST><S>Id</S></LST></Obj>"#,
    r#"<Ref N="Value" RefId="2" /><S N="Name">DefaultKeyPropertySet</S></Props></Obj>"#,
    r#"<MS N="Inner"><MS N="Empty" /><Ref N="Owner" RefId="0" /></MS>"#,
    r#"</MS></MS></Obj>"#
);

fn json_of(v: &Value) -> serde_json::Value {
    serde_json::from_str(&json::Writer::default().value_json(v)).expect("our JSON parses")
}

fn object(v: &Value) -> &Object {
    v.as_object().expect("an object")
}

/// Decodes, and checks that our encoding is PowerShell's text again and reads back as the same value,
/// through CLIXML and through the JSON shape.
#[track_caller]
fn round_trip_exactly(xml: &str) -> Value {
    let value = decode_message(xml.as_bytes()).unwrap_or_else(|e| panic!("decoding {xml}: {e}"));
    assert_eq!(encode_message(&value).expect("encodes"), xml, "written back as PowerShell wrote it");
    let line = json::Writer::default().value_json(&value);
    let parsed = serde_json::from_str(&line).expect("our JSON parses");
    assert_eq!(json::Reader::new().value(&parsed, "$", 0).expect("reads back"), value, "{line}");
    value
}

#[test]
fn a_member_set_decodes_as_a_property_whose_members_are_reachable() {
    let v = round_trip_exactly(STANDARD_MEMBERS);
    let obj = object(&v);
    let names: Vec<&str> = obj.extended.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["Name", "Id", "Status", "Path", "Owner", "Started", "PSStandardMembers"], "in document order");
    let set = obj.property("psstandardmembers").expect("the set, found as PowerShell finds members");
    assert!(set.is_member_set() && !obj.extended[0].value.is_member_set());
    let set = object(set);
    assert!(set.type_names.is_none() && set.to_string.is_none() && set.adapted.is_empty());
    assert_eq!(set.property("DefaultDisplayProperty").and_then(Value::as_str), Some("Name"));
    assert_eq!(
        json_of(&v),
        serde_json::json!({"Obj": {"TN": ["System.Management.Automation.PSCustomObject", "System.Object"], "MS": {
            "Name": "svc1", "Id": {"I32": 42}, "Status": "Running", "Path": "C:\\svc", "Owner": "me",
            "Started": {"DT": "2026-01-02T03:04:05Z"},
            "PSStandardMembers": {"MS": {"DefaultDisplayProperty": "Name"}}}}})
    );
}

#[test]
fn a_set_holding_only_a_property_set_arrives_empty() {
    // `PSPropertySet` is neither a property nor a member set: the serializer skips it, and the set it
    // was in closes empty.
    let xml = concat!(
        r#"<Obj RefId="0"><TN RefId="0"><T>System.Management.Automation.PSCustomObject</T><T>System.Object</T></TN>"#,
        r#"<MS><S N="Name">a</S><MS N="PSStandardMembers" /></MS></Obj>"#
    );
    let v = round_trip_exactly(xml);
    let set = object(object(&v).property("PSStandardMembers").expect("the set"));
    assert!(set.member_set && set.extended.is_empty());
    assert_eq!(json_of(&v)["Obj"]["MS"]["PSStandardMembers"], serde_json::json!({"MS": {}}));
    // Written in full, it reads the same.
    let full = xml.replace(r#"<MS N="PSStandardMembers" />"#, r#"<MS N="PSStandardMembers"></MS>"#);
    assert_eq!(decode_message(full.as_bytes()).expect("decodes"), v);
}

#[test]
fn names_a_sender_carries_in_a_set_are_reachable_and_sets_nest() {
    let v = round_trip_exactly(CARRIED_NAMES);
    let obj = object(&v);
    let set = object(obj.property("PSStandardMembers").expect("the set"));
    let names = |v: &Value| match &object(v).content {
        Content::List(_, items) => items.iter().filter_map(Value::as_str).map(str::to_owned).collect::<Vec<_>>(),
        other => panic!("not a list: {other:?}"),
    };
    assert_eq!(names(set.property("DefaultDisplayPropertySet").expect("display set")), ["Name", "Id"]);
    let key_set = object(set.property("DefaultKeyPropertySet").expect("key set"));
    assert_eq!(names(key_set.property("ReferencedPropertyNames").expect("names")), ["Id"]);
    assert_eq!(key_set.property("Value"), Some(&Value::Cycle(0)), "a PSPropertySet's Value is itself");
    let inner = object(set.property("Inner").expect("a nested set"));
    assert!(inner.member_set);
    assert!(inner.property("Empty").is_some_and(Value::is_member_set));
    assert_eq!(inner.property("Owner"), Some(&Value::Cycle(0)), "member sets are not levels: 0 is the object");
    assert_eq!(
        json_of(&v)["Obj"]["MS"]["PSStandardMembers"]["MS"]["Inner"],
        serde_json::json!({"MS": {"Empty": {"MS": {}}, "Owner": {"Cycle": 0}}})
    );
}

#[test]
fn documents_keep_member_sets_too() {
    let xml = format!(r#"<Objs Version="1.1.0.1" xmlns="{}">{}</Objs>"#, clixml::OBJS_NAMESPACE, STANDARD_MEMBERS);
    let doc = decode_document(xml.as_bytes()).expect("decodes");
    assert_eq!(encode_document(&doc).expect("encodes"), xml);
    // Export-Clixml indents: whitespace between members is not content.
    let indented = xml.replace("<MS N=\"PSStandardMembers\">", "\r\n      <MS N=\"PSStandardMembers\">\r\n        ").replace("</MS></MS>", "\r\n      </MS>\r\n    </MS>");
    assert_eq!(decode_document(indented.as_bytes()).expect("decodes"), doc);
}

#[track_caller]
fn check_err(xml: &str, expected: K, line: usize, column: usize) {
    let err = decode_message(xml.as_bytes()).expect_err("must fail");
    assert_eq!(err.kind, expected, "{xml}");
    assert_eq!((err.position.line, err.position.column), (line, column), "position of {err} in {xml}");
}

#[test]
fn malformed_member_sets_get_typed_errors_with_their_position() {
    let ms = |context: &str| K::UnexpectedElement { element: "MS".into(), context: context.into() };
    // A nested set must be named.
    check_err("<Obj RefId=\"0\">\n<MS><MS><S N=\"a\">x</S></MS></MS></Obj>", K::BadAttribute { element: "MS".into(), attribute: "N" }, 2, 5);
    // Adapted properties hold values only.
    check_err(r#"<Obj RefId="0"><Props><MS N="PSStandardMembers" /></Props></Obj>"#, ms("<Props>"), 1, 23);
    // Nor is a set a value anywhere else.
    check_err(r#"<Obj><LST><MS N="x" /></LST></Obj>"#, ms("a value position"), 1, 11);
    check_err(r#"<MS N="x"></MS>"#, ms("a value position"), 1, 1);
    check_err(r#"<Obj><DCT><En><MS N="Key" /></En></DCT></Obj>"#, ms("a value position"), 1, 15);
    check_err(r#"<Obj><MS><Obj N="o"><MS N="s"><LST /></MS></Obj></MS></Obj>"#, K::BadAttribute { element: "LST".into(), attribute: "N" }, 1, 31);
    // Its members need names, and it holds elements only.
    check_err(r#"<Obj><MS><MS N="s"><S>x</S></MS></MS></Obj>"#, K::BadAttribute { element: "S".into(), attribute: "N" }, 1, 20);
    check_err(r#"<Obj><MS><MS N="s">text</MS></MS></Obj>"#, K::UnexpectedText("<MS>".into()), 1, 20);
    check_err(r#"<Obj><MS><MS N="a&bogus;" /></MS></Obj>"#, K::BadText("malformed character or entity reference"), 1, 18);
    // Badly closed or cut short.
    check_err(r#"<Obj><MS><MS N="s"><S N="a">x</S></MS></Obj>"#, K::MismatchedEnd { expected: "MS".into(), found: "Obj".into() }, 1, 39);
    check_err(r#"<Obj><MS><MS N="s"><S N="a">x</S>"#, K::UnexpectedEof("MS".into()), 1, 34);
    check_err(r#"<Obj><MS><MS N="s"></Props></MS></Obj>"#, K::MismatchedEnd { expected: "MS".into(), found: "Props".into() }, 1, 20);
    let err = decode_document(br#"<Objs><MS N="x" /></Objs>"#).expect_err("not an item");
    assert_eq!(err.kind, ms("a value position"));
    // Each set is a value for the limits.
    let tight = Limits { max_values: 3, ..Limits::default() };
    let err = clixml::decode_message_with(br#"<Obj><MS><MS N="a"><MS N="b"><MS N="c" /></MS></MS></MS></Obj>"#, tight).expect_err("too many");
    assert_eq!(err.kind, K::TooManyValues(3));
}

fn nested_sets(depth: usize) -> String {
    let mut s = String::from("<Obj RefId=\"0\"><MS>");
    for _ in 0..depth {
        s.push_str("<MS N=\"s\">");
    }
    s.push_str("<I32 N=\"x\">1</I32>");
    for _ in 0..depth {
        s.push_str("</MS>");
    }
    s.push_str("</MS></Obj>");
    s
}

#[test]
fn deeply_nested_sets_are_refused_not_a_stack_overflow() {
    let err = decode_message(nested_sets(1_000_000).as_bytes()).expect_err("too deep");
    assert_eq!(err.kind, K::TooDeep(Limits::default().max_depth));
    // The deepest accepted decodes, encodes, prints and drops on a small stack.
    let deepest = (1..Limits::default().max_depth).rev().find(|d| decode_message(nested_sets(*d).as_bytes()).is_ok()).expect("some depth");
    assert!(deepest >= Limits::default().max_depth - 3, "only the object and its <MS> cost levels: {deepest}");
    let xml = nested_sets(deepest);
    std::thread::Builder::new()
        .stack_size(512 << 10)
        .spawn(move || {
            let v = decode_message(xml.as_bytes()).expect("within the limit");
            assert_eq!(encode_message(&v).expect("encodes"), xml);
            assert!(json::Writer::default().value_json(&v).contains("{\"x\":{\"I32\":1}}"));
            // (Two JSON levels a set: serde_json's own recursion limit allows about 60.)
            let v = decode_message(nested_sets(60).as_bytes()).expect("decodes");
            let parsed = serde_json::from_str(&json::Writer::default().value_json(&v)).expect("parses");
            assert_eq!(json::Reader::new().value(&parsed, "$", 0).expect("reads"), v);
        })
        .expect("thread")
        .join()
        .expect("no stack overflow");
}

#[test]
fn the_encoder_writes_sets_only_where_clixml_has_them() {
    let set = Value::member_set(vec![Property::new("DefaultDisplayProperty", Value::string("Name"))]);
    let with = |adapted: Vec<Property>, extended: Vec<Property>| Value::object(Object { adapted, extended, ..Object::default() });
    assert_eq!(encode_message(&set), Err(EncodeError::MisplacedMemberSet));
    assert_eq!(encode_message(&with(vec![Property::new("PSStandardMembers", set.clone())], vec![])), Err(EncodeError::MisplacedMemberSet));
    let list = Value::object(Object { content: Content::List(clixml::ListKind::List, vec![set.clone()]), ..Object::default() });
    assert_eq!(encode_message(&list), Err(EncodeError::MisplacedMemberSet));
    let typed = Value::object(Object { member_set: true, to_string: Some("x".into()), ..Object::default() });
    assert_eq!(encode_message(&with(vec![], vec![Property::new("S", typed)])), Err(EncodeError::InvalidMemberSet("S".into())));
    // One set held twice is written twice, with no RefId: sets are not objects.
    let twice = with(vec![], vec![Property::new("A", set.clone()), Property::new("B", set)]);
    let xml = encode_message(&twice).expect("encodes");
    assert_eq!(
        xml,
        r#"<Obj RefId="0"><MS><MS N="A"><S N="DefaultDisplayProperty">Name</S></MS><MS N="B"><S N="DefaultDisplayProperty">Name</S></MS></MS></Obj>"#
    );
    assert_eq!(decode_message(xml.as_bytes()).expect("decodes"), twice);
    // Member sets do not take RefIds from the objects after them.
    let shared = Arc::new(Object { to_string: Some("o".into()), ..Object::default() });
    let inner = Value::member_set(vec![Property::new("o", Value::Object(Arc::clone(&shared)))]);
    let v = with(vec![], vec![Property::new("s", inner), Property::new("again", Value::Object(shared))]);
    let xml = encode_message(&v).expect("encodes");
    assert!(xml.contains(r#"<MS N="s"><Obj N="o" RefId="1"><ToString>o</ToString></Obj></MS><Ref N="again" RefId="1" />"#), "{xml}");
    assert_eq!(decode_message(xml.as_bytes()).expect("decodes"), v);
}

#[test]
fn the_json_shape_takes_sets_only_among_extended_members() {
    let read = |text: &str| json::Reader::new().value(&serde_json::from_str(text).expect("JSON"), "$", 0);
    let v = read(r#"{"Obj": {"MS": {"a": {"I32": 1}, "PSStandardMembers": {"MS": [["n", "x"], ["n", "y"], ["s", {"MS": {}}]]}}}}"#)
        .expect("reads");
    let set = object(object(&v).property("PSStandardMembers").expect("set"));
    assert_eq!(set.extended.len(), 3, "a set repeating a name reads from pairs");
    assert!(set.extended[2].value.is_member_set());
    assert_eq!(json_of(&v)["Obj"]["MS"]["PSStandardMembers"]["MS"][1], serde_json::json!(["n", "y"]), "and is written as pairs");
    for (text, path) in [
        (r#"{"MS": {}}"#, "$.MS"),
        (r#"{"Obj": {"Props": {"s": {"MS": {}}}}}"#, "$.Obj.Props.s.MS"),
        (r#"{"Obj": {"LST": [{"MS": {}}]}}"#, "$.Obj.LST[0].MS"),
        (r#"{"Obj": {"MS": {"s": {"MS": {"t": {"Obj": {"value": {"MS": {}}}}}}}}}"#, "$.Obj.MS.s.MS.t.Obj.value.MS"),
    ] {
        let e = read(text).expect_err("not a member position");
        assert_eq!((e.path.as_str(), e.message.as_str()), (path, "a member set can only be a member of an \"MS\""), "{text}");
    }
    assert!(read(r#"{"Obj": {"MS": {"s": {"MS": 5}}}}"#).is_err());
}

#[test]
fn the_fuzz_seeds_hold_member_sets() {
    // shared/test_data/fuzz/clixml_decode: the seeds the fuzzer starts from, so that it mutates member sets.
    let message = decode_message(include_bytes!("../test_data/fuzz/clixml_decode/seed-member-set.xml")).expect("decodes");
    assert!(object(&message).property("PSStandardMembers").is_some_and(Value::is_member_set));
    let doc = decode_document(include_bytes!("../test_data/fuzz/clixml_decode/seed-member-set-doc.xml")).expect("decodes");
    assert_eq!(doc.items.len(), 2);
    let custom = object(object(&doc.items[0].value).property("Custom").expect("a set"));
    let nested = object(object(custom.property("Set").expect("an object")).property("Nested").expect("a set in it"));
    assert_eq!(nested.property("Back"), Some(&Value::Cycle(1)), "two objects up, sets not counted");
}
