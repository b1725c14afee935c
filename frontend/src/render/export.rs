//! A result table as text to copy: CSV as `ConvertTo-Csv -NoTypeInformation` writes it (every field quoted,
//! `"` doubled, CRLF line ends) and JSON as `ConvertTo-Json` writes the rows (two-space indentation, numbers
//! and booleans as themselves, enums as their numbers, one row as an object, several as an array).
//!
//! The columns are the ones shown (a view's headings); the values are whole, not cut to a cell's width.

use psgate_shared::clixml::{Content, Value};

use super::blocks::{Objects, Row};
use super::display::{cell, datetime_full, double, scalar_text, single};

/// The CSV of the rows, header first.
pub fn csv(objects: &Objects) -> String {
    let mut out = String::new();
    let quote = |out: &mut String, field: &str| {
        out.push('"');
        out.push_str(&field.replace('"', "\"\""));
        out.push('"');
    };
    for (i, h) in objects.headings().iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        quote(&mut out, h);
    }
    objects.rows.with(|rows| {
        for row in rows {
            out.push_str("\r\n");
            for c in 0..objects.columns.len() {
                if c > 0 {
                    out.push(',');
                }
                quote(&mut out, &text(objects, row, c));
            }
        }
    });
    out
}

/// The JSON of the rows.
pub fn json(objects: &Objects) -> String {
    let headings = objects.headings();
    let record = |row: &Row, indent: &str| {
        let mut s = format!("{indent}{{");
        for (c, h) in headings.iter().enumerate() {
            s.push_str(if c > 0 { ",\n" } else { "\n" });
            s.push_str(&format!("{indent}  {}: {}", string(h), value(&objects.value(row, c), 0)));
        }
        s.push_str(&format!("\n{indent}}}"));
        s
    };
    objects.rows.with(|rows| match rows {
        [one] => record(one, ""),
        rows => {
            let items: Vec<String> = rows.iter().map(|r| record(r, "  ")).collect();
            if items.is_empty() { "[]".to_owned() } else { format!("[\n{}\n]", items.join(",\n")) }
        }
    })
}

/// A cell's whole text (a string keeps its line breaks and length; CSV quoting holds them).
fn text(objects: &Objects, row: &Row, column: usize) -> String {
    let v = objects.value(row, column);
    let s = match &v {
        Value::Object(_) | Value::DateTime(_) | Value::Nil => cell(&v),
        other => scalar_text(other).unwrap_or_else(|| cell(other)),
    };
    super::ansi::strip(&s).into_owned()
}

/// A JSON string literal.
fn string(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".to_owned())
}

/// A value as ConvertTo-Json writes it (collections one level deep, deeper objects as their text).
fn value(v: &Value, depth: usize) -> String {
    match v {
        Value::Nil => "null".to_owned(),
        Value::Bool(b) => b.to_string(),
        Value::U8(_) | Value::I8(_) | Value::U16(_) | Value::I16(_) | Value::U32(_) | Value::I32(_) | Value::U64(_) | Value::I64(_) => {
            scalar_text(v).unwrap_or_default()
        }
        Value::Decimal(d) => d.to_string(),
        Value::Double(d) if d.is_finite() => double(*d),
        Value::Single(f) if f.is_finite() => single(*f),
        Value::DateTime(dt) => string(&datetime_full(dt)),
        Value::Object(o) => match (&o.content, o.primitive()) {
            (_, Some(p)) if o.is_enum() => value(p, depth),
            (Content::List(_, items), _) if depth == 0 => {
                let items: Vec<String> = items.iter().map(|i| value(i, depth + 1)).collect();
                format!("[{}]", items.join(", "))
            }
            (_, Some(p)) if o.to_string.is_none() => value(p, depth),
            _ => string(&super::ansi::strip(&cell(v))),
        },
        other => string(&super::ansi::strip(&scalar_text(other).unwrap_or_else(|| cell(other)))),
    }
}

#[cfg(test)]
mod tests {
    use psgate_shared::clixml::decode_document;

    use super::*;
    use crate::render::blocks::{Block, blocks};

    fn objects(body: &str) -> Objects {
        let xml = format!("<Objs>{body}</Objs>");
        let doc = decode_document(xml.as_bytes()).expect("test document decodes");
        match blocks(&doc).into_iter().next() {
            Some(Block::Objects(o)) => o,
            other => panic!("not objects: {other:?}"),
        }
    }

    fn bag(props: &str) -> String {
        format!("<Obj><TN><T>System.Management.Automation.PSCustomObject</T></TN><MS>{props}</MS></Obj>")
    }

    #[test]
    fn csv_quotes_every_field_and_doubles_quotes() {
        let o = objects(&[
            bag(r#"<S N="Name">say "hi"</S><I32 N="Size">10</I32><Nil N="Note"/>"#),
            bag(r#"<S N="Name">two_x000D__x000A_lines, and a comma</S><I32 N="Size">-2</I32><B N="Note">true</B>"#),
        ]
        .concat());
        assert_eq!(
            csv(&o),
            "\"Name\",\"Size\",\"Note\"\r\n\"say \"\"hi\"\"\",\"10\",\"\"\r\n\"two\r\nlines, and a comma\",\"-2\",\"True\""
        );
    }

    #[test]
    fn json_types_its_values_like_convertto_json() {
        let o = objects(&[
            bag(r#"<S N="Name">a "q"</S><I32 N="Size">10</I32><Db N="Ratio">0.5</Db><B N="Ok">true</B>"#),
            bag(concat!(
                r#"<S N="Name">b</S><Nil N="Size"/><Db N="Ratio">1E+15</Db>"#,
                r#"<Obj N="Ok"><TN><T>System.ConsoleColor</T><T>System.Enum</T></TN><ToString>Red</ToString><I32>12</I32></Obj>"#
            )),
        ]
        .concat());
        assert_eq!(
            json(&o),
            concat!(
                "[\n  {\n    \"Name\": \"a \\\"q\\\"\",\n    \"Size\": 10,\n    \"Ratio\": 0.5,\n    \"Ok\": true\n  },\n",
                "  {\n    \"Name\": \"b\",\n    \"Size\": null,\n    \"Ratio\": 1E+15,\n    \"Ok\": 12\n  }\n]"
            )
        );
        let one = objects(&bag(r#"<DT N="When">2026-11-25T08:15:02Z</DT><Obj N="Tags"><LST><S>x</S><I32>2</I32></LST></Obj>"#));
        assert_eq!(json(&one), "{\n  \"When\": \"2026-11-25T08:15:02Z\",\n  \"Tags\": [\"x\", 2]\n}");
    }

    #[test]
    fn computed_columns_export_what_they_show() {
        let p = r#"<Obj><TN><T>System.Diagnostics.Process</T></TN><Props><I32 N="Id">4</I32><S N="ProcessName">System</S></Props><MS><I64 N="NPM">2048</I64><I64 N="WS">1048576</I64></MS></Obj>"#;
        let o = objects(p);
        assert_eq!(csv(&o), "\"NPM(K)\",\"PM(M)\",\"WS(M)\",\"CPU(s)\",\"Id\",\"SI\",\"ProcessName\"\r\n\"2\",\"0.00\",\"1.00\",\"0.00\",\"4\",\"\",\"System\"");
        assert!(json(&o).contains("\"NPM(K)\": 2,\n  \"PM(M)\": \"0.00\""));
    }
}
