//! The CLIXML codec at its boundary: text in, values (as the JSON shape) out, and back.

use std::sync::Arc;

use psgate_shared::clixml::{
    self, Content, DecodeErrorKind as K, Document, Limits, Value, decode_document, decode_message, encode_document,
    encode_message, json,
};

/// Decodes a message, checks its JSON form, and checks that encoding then decoding gives the same value.
#[track_caller]
fn check(xml: &str, expected_json: &str) {
    let value = decode_message(xml.as_bytes()).unwrap_or_else(|e| panic!("decoding {xml}: {e}"));
    let got = json::Writer::default().value_json(&value);
    let got: serde_json::Value = serde_json::from_str(&got).expect("our JSON parses");
    let expected: serde_json::Value = serde_json::from_str(expected_json).expect("expected JSON parses");
    assert_eq!(got, expected, "decoding {xml}");
    let again = encode_message(&value).expect("encodes");
    let back = decode_message(again.as_bytes()).unwrap_or_else(|e| panic!("re-decoding {again}: {e}"));
    assert_eq!(back, value, "round trip through {again}");
}

#[track_caller]
fn check_err(xml: &str, expected: K, line: usize, column: usize) {
    let err = decode_message(xml.as_bytes()).expect_err("must fail");
    assert_eq!(err.kind, expected, "{xml}");
    assert_eq!((err.position.line, err.position.column), (line, column), "position of {err} in {xml}");
}

#[test]
fn primitives() {
    check("<S>hello</S>", r#""hello""#);
    check("<S />", r#""""#);
    check("<S></S>", r#""""#);
    check("<Nil />", "null");
    check("<B>true</B>", "true");
    check("<C>97</C>", r#"{"C":97}"#);
    check("<By>255</By>", r#"{"By":255}"#);
    check("<SB>-128</SB>", r#"{"SB":-128}"#);
    check("<U16>65535</U16>", r#"{"U16":65535}"#);
    check("<I16>-32768</I16>", r#"{"I16":-32768}"#);
    check("<U32>4294967295</U32>", r#"{"U32":4294967295}"#);
    check("<I32>-2147483648</I32>", r#"{"I32":-2147483648}"#);
    check("<U64>18446744073709551615</U64>", r#"{"U64":18446744073709551615}"#);
    check("<I64>-9223372036854775808</I64>", r#"{"I64":-9223372036854775808}"#);
    check("<Db>1.5</Db>", r#"{"Db":1.5}"#);
    check("<Db>-INF</Db>", r#"{"Db":"-INF"}"#);
    check("<Db>NaN</Db>", r#"{"Db":"NaN"}"#);
    check("<Sg>0.1</Sg>", r#"{"Sg":0.1}"#);
    check("<D>1.10</D>", r#"{"D":"1.10"}"#);
    check("<DT>2024-05-01T10:00:00.5Z</DT>", r#"{"DT":"2024-05-01T10:00:00.5Z"}"#);
    check("<DT>2024-05-01T10:00:00.1234567+02:00</DT>", r#"{"DT":"2024-05-01T10:00:00.1234567+02:00"}"#);
    check("<TS>PT9.0269026S</TS>", r#"{"TS":"PT9.0269026S"}"#);
    check("<BA>AQID</BA>", r#"{"BA":"AQID"}"#);
    check("<G>792E5B37-4505-47EF-B7D2-8711BB7AFFA8</G>", r#"{"G":"792e5b37-4505-47ef-b7d2-8711bb7affa8"}"#);
    check("<URI>http://localhost/a_x0020_b</URI>", r#"{"URI":"http://localhost/a b"}"#);
    check("<XD>&lt;a/&gt;</XD>", r#"{"XD":"<a/>"}"#);
    check("<SBK>Get-Date</SBK>", r#"{"SBK":"Get-Date"}"#);
    check("<Version>1.1.0.1</Version>", r#"{"Version":"1.1.0.1"}"#);
    check("<SS>AAEC</SS>", r#"{"SS":"AAEC"}"#);
}

#[test]
fn strings_are_unescaped_once() {
    check("<S>a_x000D__x000A_b</S>", r#""a\r\nb""#);
    check("<S>C:\\a_x005F_x_x000D__x000A_</S>", r#""C:\\a_x\r\n""#);
    check("<S>_xD83D__xDE00_</S>", r#""😀""#);
    check("<S>&lt;&amp;&gt;&quot;&apos;&#65;&#x42;</S>", r#""<&>\"'AB""#);
    check("<S><![CDATA[<raw> & _x0041_]]> tail</S>", r#""<raw> & A tail""#);
    check("<S>  spaces kept  </S>", r#""  spaces kept  ""#);
}

#[test]
fn protocol_examples() {
    // protocol.md §2.4: a capability message, a hashtable, an array of enums with a Ref and TNRef.
    check(
        r#"<Obj RefId="0"><MS><Version N="protocolversion">2.3</Version><Version N="PSVersion">2.0</Version>
  <Version N="SerializationVersion">1.1.0.1</Version></MS></Obj>"#,
        r#"{"Obj":{"MS":{"protocolversion":{"Version":"2.3"},"PSVersion":{"Version":"2.0"},"SerializationVersion":{"Version":"1.1.0.1"}}}}"#,
    );
    check(
        r#"<Obj RefId="0"><TN RefId="0"><T>System.Collections.Hashtable</T><T>System.Object</T></TN>
  <DCT><En><S N="Key">path</S><S N="Value">C:\a_x005F_x_x000D__x000A_</S></En>
       <En><S N="Key">n</S><I32 N="Value">1</I32></En></DCT></Obj>"#,
        r#"{"Obj":{"TN":["System.Collections.Hashtable","System.Object"],"DCT":[["path","C:\\a_x\r\n"],["n",{"I32":1}]]}}"#,
    );
    check(
        r#"<Obj RefId="0"><TN RefId="0"><T>System.Object[]</T><T>System.Array</T><T>System.Object</T></TN><LST>
  <Obj RefId="1"><TN RefId="1"><T>System.ConsoleColor</T><T>System.Enum</T><T>System.ValueType</T><T>System.Object</T></TN>
    <ToString>Red</ToString><I32>12</I32></Obj>
  <Obj RefId="2"><TNRef RefId="1" /><ToString>Blue</ToString><I32>9</I32></Obj>
  <Ref RefId="1" /><Nil /><DT>2024-05-01T10:00:00.5Z</DT><TS>PT1M30S</TS><BA>AQID</BA></LST></Obj>"#,
        r#"{"Obj":{"TN":["System.Object[]","System.Array","System.Object"],"LST":[
            {"Obj":{"RefId":0,"TN":["System.ConsoleColor","System.Enum","System.ValueType","System.Object"],"ToString":"Red","value":{"I32":12}}},
            {"Obj":{"TN":["System.ConsoleColor","System.Enum","System.ValueType","System.Object"],"ToString":"Blue","value":{"I32":9}}},
            {"Ref":0},null,{"DT":"2024-05-01T10:00:00.5Z"},{"TS":"PT1M30S"},{"BA":"AQID"}]}}"#,
    );
}

#[test]
fn objects_keep_adapted_and_extended_properties_and_containers() {
    check(
        r#"<Obj RefId="0"><TN RefId="0"><T>Deserialized.System.IO.FileInfo</T><T>Deserialized.System.Object</T></TN>
           <ToString>a.txt</ToString><Props><S N="Name">a.txt</S><I64 N="Length">3</I64></Props>
           <MS><S N="PSComputerName">srv01</S><B N="RunspaceId_x005F_x">false</B></MS></Obj>"#,
        r#"{"Obj":{"TN":["Deserialized.System.IO.FileInfo","Deserialized.System.Object"],"ToString":"a.txt",
            "Props":{"Name":"a.txt","Length":{"I64":3}},"MS":{"PSComputerName":"srv01","RunspaceId_x":false}}}"#,
    );
    check(
        r#"<Obj RefId="0"><STK><I32>1</I32><I32>2</I32></STK></Obj>"#,
        r#"{"Obj":{"STK":[{"I32":1},{"I32":2}]}}"#,
    );
    check(r#"<Obj RefId="0"><QUE /></Obj>"#, r#"{"Obj":{"QUE":[]}}"#);
    check(r#"<Obj RefId="0"><IE><S>x</S></IE></Obj>"#, r#"{"Obj":{"IE":["x"]}}"#);
    // An extended primitive: a string with a note property.
    check(
        r#"<Obj RefId="0"><S>text</S><MS><I32 N="Extra">7</I32></MS></Obj>"#,
        r#"{"Obj":{"value":"text","MS":{"Extra":{"I32":7}}}}"#,
    );
    check(
        r#"<PR N="Record"><AV>Copy</AV><AI>1</AI><S>file.txt</S><PI>-1</PI><PC>42</PC><T>Processing</T><SR>9</SR><SD>Copying</SD></PR>"#,
        r#"{"PR":{"activity":"Copy","activity_id":1,"current_operation":"file.txt","parent_activity_id":-1,
            "percent_complete":42,"record_type":"Processing","seconds_remaining":9,"status_description":"Copying"}}"#,
    );
}

#[test]
fn refs_share_one_object_and_cycles_survive() {
    let xml = r#"<Obj RefId="0"><LST><Obj RefId="1"><MS><S N="a">x</S></MS></Obj><Ref RefId="1" /></LST></Obj>"#;
    let v = decode_message(xml.as_bytes()).expect("decodes");
    let Some(Content::List(_, items)) = v.as_object().map(|o| &o.content) else { panic!("a list") };
    let (Value::Object(a), Value::Object(b)) = (&items[0], &items[1]) else { panic!("two objects") };
    assert!(Arc::ptr_eq(a, b), "a Ref is the same object, not a copy");
    let again = encode_message(&v).expect("encodes");
    assert!(again.contains(r#"<Ref RefId="1" />"#), "the shared object is written once: {again}");

    // A hashtable that contains itself, as PowerShell writes it.
    let xml = r#"<Obj RefId="0"><DCT><En><S N="Key">self</S><Ref N="Value" RefId="0" /></En></DCT></Obj>"#;
    check(xml, r#"{"Obj":{"DCT":[["self",{"Cycle":0}]]}}"#);
    assert_eq!(encode_message(&decode_message(xml.as_bytes()).expect("decodes")).expect("encodes"), xml);
}

#[test]
fn type_name_lists_are_shared_and_written_once() {
    let xml = r#"<Obj RefId="0"><LST><Obj RefId="1"><TN RefId="0"><T>A</T></TN></Obj><Obj RefId="2"><TNRef RefId="0" /></Obj></LST></Obj>"#;
    let v = decode_message(xml.as_bytes()).expect("decodes");
    let Some(Content::List(_, items)) = v.as_object().map(|o| &o.content) else { panic!("a list") };
    let tn = |i: usize| items[i].as_object().and_then(|o| o.type_names.clone()).expect("type names");
    assert!(Arc::ptr_eq(&tn(0), &tn(1)));
    assert_eq!(encode_message(&v).expect("encodes"), xml);
}

#[test]
fn documents_keep_streams_and_the_clixml_line() {
    let text = "\u{FEFF}#< CLIXML\r\n<?xml version=\"1.0\"?>\n<Objs Version=\"1.1.0.1\" xmlns=\"http://schemas.microsoft.com/powershell/2004/04\">\n\
                <S S=\"Error\">oops_x000D__x000A_</S>\n<I32>5</I32>\n<Obj S=\"warning\" RefId=\"0\"><TN RefId=\"0\"><T>T</T></TN></Obj>\n\
                <Ref RefId=\"0\" /></Objs>\n";
    let doc = decode_document(text.as_bytes()).expect("decodes");
    assert!(doc.clixml_header);
    let streams: Vec<_> = doc.items.iter().map(|i| i.stream.as_deref()).collect();
    assert_eq!(streams, [Some("Error"), None, Some("warning"), None]);
    assert_eq!(doc.items[0].value, Value::string("oops\r\n"));
    // RefIds span the whole document.
    assert_eq!(doc.items[3].value, doc.items[2].value);
    let again = encode_document(&doc).expect("encodes");
    assert!(again.starts_with("#< CLIXML\r\n<Objs Version=\"1.1.0.1\""));
    assert_eq!(decode_document(again.as_bytes()).expect("re-decodes"), doc);
    assert_eq!(decode_document(b"<Objs/>").expect("empty"), Document::default());
}

#[test]
fn documents_are_told_from_messages() {
    use clixml::{Kind, kind_of};
    for (text, kind) in [
        (&b"#< CLIXML\r\n<Objs Version=\"1.1.0.1\">"[..], Kind::Document),
        (b"\n  #< CLIXML\n<Objs/>", Kind::Document),
        (b"\xEF\xBB\xBF<?xml version=\"1.0\"?>\n<!-- c --><Objs/>", Kind::Document),
        (b"<Obj RefId=\"0\"><MS/></Obj>", Kind::Message),
        (b"<ObjsX/>", Kind::Message),
        (b"", Kind::Message),
    ] {
        assert_eq!(kind_of(text), kind, "{}", String::from_utf8_lossy(text));
    }
    let (kind, doc) = clixml::decode_auto(b"\n  #< CLIXML\n<Objs><S>a</S></Objs>").expect("whitespace before the line is fine");
    assert_eq!((kind, doc.clixml_header, doc.items[0].value.as_str()), (Kind::Document, true, Some("a")));
    let (kind, doc) = clixml::decode_auto(b"<I32>7</I32>").expect("a message");
    assert_eq!((kind, doc.items.len()), (Kind::Message, 1));
}

#[test]
fn message_bodies_may_start_with_a_bom() {
    // Windows writes every PSRP message with a UTF-8 BOM.
    assert_eq!(decode_message(b"\xEF\xBB\xBF<I32>1</I32>").expect("decodes"), Value::I32(1));
}

#[test]
fn malformed_input_gets_a_typed_error_with_its_position() {
    check_err("<I32>12x</I32>", K::InvalidValue { type_name: "I32", text: "12x".into() }, 1, 6);
    check_err("<Obj RefId=\"0\">\n  <MS><S>no name</S></MS></Obj>", K::BadAttribute { element: "S".into(), attribute: "N" }, 2, 7);
    check_err("<Obj RefId=\"0\"><Bogus /></Obj>", K::UnexpectedElement { element: "Bogus".into(), context: "a value position".into() }, 1, 16);
    check_err("<Obj RefId=\"0\"><MS></Obj>", K::MismatchedEnd { expected: "MS".into(), found: "Obj".into() }, 1, 20);
    check_err("<Obj RefId=\"0\"><MS>", K::UnexpectedEof("MS".into()), 1, 20);
    check_err("<Ref RefId=\"4\" />", K::UnknownRef { element: "Ref", id: 4 }, 1, 1);
    check_err("<Obj><TNRef RefId=\"2\" /></Obj>", K::UnknownRef { element: "TNRef", id: 2 }, 1, 6);
    check_err("<Ref RefId=\"x\" />", K::BadAttribute { element: "Ref".into(), attribute: "RefId" }, 1, 1);
    check_err("<I32>1</I32><I32>2</I32>", K::TrailingContent("message"), 1, 13);
    check_err("", K::Empty, 1, 1);
    check_err("<Obj><DCT><En><S N=\"Key\">k</S></En></DCT></Obj>", K::BadDictEntry("a Value"), 1, 31);
    check_err("<Obj><I32>1</I32><S>2</S></Obj>", K::DuplicateContent, 1, 18);
    check_err("<Obj>text</Obj>", K::UnexpectedText("<Obj>".into()), 1, 6);
    check_err("<S>a &bogus; b</S>", K::BadText("malformed character or entity reference"), 1, 6);
    check_err("<S><b/></S>", K::UnexpectedElement { element: "b".into(), context: "<S>".into() }, 1, 4);
    check_err("<DT>2023-02-29T00:00:00</DT>", K::InvalidValue { type_name: "DT", text: "2023-02-29T00:00:00".into() }, 1, 5);
    let err = decode_message(b"<S>\xFF</S>").expect_err("not UTF-8");
    assert_eq!((err.kind, err.position.offset), (K::BadText("not valid UTF-8"), 3));
    let err = decode_document(b"<Obj/>").expect_err("no root");
    assert_eq!(err.kind, K::NotADocument);
    let err = decode_message(b"<S>unterminated").expect_err("eof");
    assert!(matches!(err.kind, K::Xml(_) | K::UnexpectedEof(_)), "{err}");
    assert!(err.to_string().contains("line 1"), "the message says where: {err}");
}

fn nested(depth: usize) -> String {
    let mut s = String::new();
    for _ in 0..depth {
        s.push_str("<Obj><LST>");
    }
    s.push_str("<I32>1</I32>");
    for _ in 0..depth {
        s.push_str("</LST></Obj>");
    }
    s
}

#[test]
fn deep_nesting_is_refused_not_a_stack_overflow() {
    let err = decode_message(nested(1_000_000).as_bytes()).expect_err("too deep");
    assert_eq!(err.kind, K::TooDeep(Limits::default().max_depth));
    // Just inside the limit decodes on a thread with a small stack (a browser's is about 1 MiB), and
    // encodes and drops there too.
    let ok = nested(Limits::default().max_depth / 2 - 1);
    std::thread::Builder::new()
        .stack_size(512 << 10)
        .spawn(move || {
            let v = decode_message(ok.as_bytes()).expect("within the limit");
            encode_message(&v).expect("encodes");
            assert!(json::Writer::default().value_json(&v).contains("{\"I32\":1}"));
        })
        .expect("thread")
        .join()
        .expect("no stack overflow");
}

#[test]
fn limits_bound_counts_and_sizes() {
    let tight = Limits { max_values: 3, ..Limits::default() };
    let err = clixml::decode_message_with(b"<Obj><LST><I32>1</I32><I32>2</I32><I32>3</I32></LST></Obj>", tight).expect_err("too many");
    assert_eq!(err.kind, K::TooManyValues(3));
    let small = Limits { max_bytes: 8, ..Limits::default() };
    let err = clixml::decode_message_with(b"<S>123456789</S>", small).expect_err("too large");
    assert_eq!(err.kind, K::TooLarge { size: 16, limit: 8 });
}

#[test]
fn encoder_refuses_what_clixml_cannot_say() {
    assert_eq!(encode_message(&Value::Cycle(0)), Err(clixml::EncodeError::DanglingCycle(0)));
    assert!(matches!(encode_message(&Value::Decimal("1e5".into())), Err(clixml::EncodeError::InvalidValue { .. })));
}
