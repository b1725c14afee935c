//! Objects a document holds more than once. The codec decodes a `<Ref>` to an earlier object as the same
//! `Arc`, so the tree can tell the user "this is the same object as there" instead of showing two copies.

use std::collections::HashMap;
use std::sync::Arc;

use psgate_shared::clixml::{Content, Document, Object, Value};

/// A shared object: its number (in order of first appearance, from 1) and how many places hold it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shared {
    /// `#1`, `#2`, … in document order.
    pub id: u32,
    /// How many places refer to it (at least 2).
    pub count: u32,
}

/// The shared objects of one document, by identity.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct SharedRefs {
    by_ptr: HashMap<usize, Shared>,
}

impl SharedRefs {
    /// Finds the objects `doc` holds more than once. Each object's contents are walked once, so this is
    /// linear in the size of the document however much is shared.
    pub fn of(doc: &Document) -> SharedRefs {
        let mut counts: HashMap<usize, u32> = HashMap::new();
        let mut order = Vec::new();
        let mut stack: Vec<&Value> = doc.items.iter().rev().map(|i| &i.value).collect();
        while let Some(v) = stack.pop() {
            let Value::Object(obj) = v else { continue };
            let key = ptr(obj);
            let n = counts.entry(key).or_insert(0);
            *n += 1;
            if *n > 1 {
                continue;
            }
            order.push(key);
            let before = stack.len();
            match &obj.content {
                Content::Primitive(v) => stack.push(v),
                Content::List(_, items) => stack.extend(items),
                Content::Dict(entries) => entries.iter().for_each(|(k, v)| stack.extend([k, v])),
                Content::None => {}
            }
            stack.extend(obj.properties().map(|p| &p.value));
            stack[before..].reverse();
        }
        let mut by_ptr = HashMap::new();
        let mut id = 0;
        for key in order {
            let count = counts[&key];
            if count > 1 {
                id += 1;
                by_ptr.insert(key, Shared { id, count });
            }
        }
        SharedRefs { by_ptr }
    }

    /// Whether `obj` is one of the shared objects.
    pub fn get(&self, obj: &Arc<Object>) -> Option<Shared> {
        self.by_ptr.get(&ptr(obj)).copied()
    }

    /// How many objects are shared.
    pub fn len(&self) -> usize {
        self.by_ptr.len()
    }

    /// Whether nothing is shared.
    pub fn is_empty(&self) -> bool {
        self.by_ptr.is_empty()
    }
}

fn ptr(obj: &Arc<Object>) -> usize {
    Arc::as_ptr(obj) as usize
}

#[cfg(test)]
mod tests {
    use psgate_shared::clixml::decode_document;

    use super::*;

    #[test]
    fn refs_to_one_object_share_a_number() {
        let doc = decode_document(
            concat!(
                r#"<Objs><Obj RefId="0"><MS><S N="a">x</S></MS></Obj>"#,
                r#"<Obj RefId="1"><MS><Ref N="first" RefId="0"/><Ref N="again" RefId="0"/><Obj N="own" RefId="2"><MS/></Obj></MS></Obj>"#,
                r#"<Ref RefId="1"/></Objs>"#
            )
            .as_bytes(),
        )
        .expect("decodes");
        let shared = SharedRefs::of(&doc);
        assert_eq!(shared.len(), 2);
        let first = object(&doc.items[0].value);
        assert_eq!(shared.get(&first), Some(Shared { id: 1, count: 3 }));
        let second = object(&doc.items[1].value);
        assert_eq!(shared.get(&second), Some(Shared { id: 2, count: 2 }));
        let own = object(second.property("own").expect("own"));
        assert_eq!(shared.get(&own), None);
    }

    fn object(v: &Value) -> Arc<Object> {
        match v {
            Value::Object(o) => Arc::clone(o),
            other => panic!("not an object: {other:?}"),
        }
    }

    #[test]
    fn a_diamond_of_refs_is_walked_once_per_object() {
        // Each level refers to the one below twice: 2^40 paths, 40 objects.
        let mut xml = String::from(r#"<Objs><Obj RefId="0"><MS/></Obj>"#);
        for i in 1..=40 {
            xml.push_str(&format!(
                r#"<Obj RefId="{i}"><MS><Ref N="a" RefId="{0}"/><Ref N="b" RefId="{0}"/></MS></Obj>"#,
                i - 1
            ));
        }
        xml.push_str("</Objs>");
        let doc = decode_document(xml.as_bytes()).expect("decodes");
        let shared = SharedRefs::of(&doc);
        assert_eq!(shared.len(), 40);
    }
}
