//! The local cmdlets the remoting lines lean on: Where-Object, ForEach-Object, Select-Object, Sort-Object,
//! Format-Table, Format-List, Get-Member, Get-Help, Get-Command, Get-History, Clear-Host, Get-Credential,
//! Write-Output, Write-Host.

use psgate_shared::api::RecordKind;
use psgate_shared::clixml::{Content, Object, Value};

use super::Cmdlet;
use crate::bind::{Bound, Kind, Pipe, Signature, p};
use crate::error::{Category, ErrorSpec, Failure};
use crate::eval::{Ctx, Flow, R, Sink};
use crate::values::{self, text};

const WHERE_OPS: &[(&str, &str)] = &[
    ("EQ", "EqualSet"),
    ("CEQ", "CaseSensitiveEqualSet"),
    ("NE", "NotEqualSet"),
    ("CNE", "CaseSensitiveNotEqualSet"),
    ("GT", "GreaterThanSet"),
    ("CGT", "CaseSensitiveGreaterThanSet"),
    ("LT", "LessThanSet"),
    ("CLT", "CaseSensitiveLessThanSet"),
    ("GE", "GreaterOrEqualSet"),
    ("CGE", "CaseSensitiveGreaterOrEqualSet"),
    ("LE", "LessOrEqualSet"),
    ("CLE", "CaseSensitiveLessOrEqualSet"),
    ("Like", "LikeSet"),
    ("CLike", "CaseSensitiveLikeSet"),
    ("NotLike", "NotLikeSet"),
    ("CNotLike", "CaseSensitiveNotLikeSet"),
    ("Match", "MatchSet"),
    ("CMatch", "CaseSensitiveMatchSet"),
    ("NotMatch", "NotMatchSet"),
    ("CNotMatch", "CaseSensitiveNotMatchSet"),
    ("Contains", "ContainsSet"),
    ("CContains", "CaseSensitiveContainsSet"),
    ("NotContains", "NotContainsSet"),
    ("CNotContains", "CaseSensitiveNotContainsSet"),
    ("In", "InSet"),
    ("CIn", "CaseSensitiveInSet"),
    ("NotIn", "NotInSet"),
    ("CNotIn", "CaseSensitiveNotInSet"),
    ("Not", "NotSet"),
];

const SIMPLE_SETS: &[&str] = &[
    "EqualSet", "CaseSensitiveEqualSet", "NotEqualSet", "CaseSensitiveNotEqualSet", "GreaterThanSet", "CaseSensitiveGreaterThanSet", "LessThanSet",
    "CaseSensitiveLessThanSet", "GreaterOrEqualSet", "CaseSensitiveGreaterOrEqualSet", "LessOrEqualSet", "CaseSensitiveLessOrEqualSet", "LikeSet",
    "CaseSensitiveLikeSet", "NotLikeSet", "CaseSensitiveNotLikeSet", "MatchSet", "CaseSensitiveMatchSet", "NotMatchSet", "CaseSensitiveNotMatchSet",
    "ContainsSet", "CaseSensitiveContainsSet", "NotContainsSet", "CaseSensitiveNotContainsSet", "InSet", "CaseSensitiveInSet", "NotInSet",
    "CaseSensitiveNotInSet", "NotSet",
];

const WHERE_SETS: &[&str] = &[
    "EqualSet", "ScriptBlockSet", "CaseSensitiveEqualSet", "NotEqualSet", "CaseSensitiveNotEqualSet", "GreaterThanSet", "CaseSensitiveGreaterThanSet",
    "LessThanSet", "CaseSensitiveLessThanSet", "GreaterOrEqualSet", "CaseSensitiveGreaterOrEqualSet", "LessOrEqualSet", "CaseSensitiveLessOrEqualSet",
    "LikeSet", "CaseSensitiveLikeSet", "NotLikeSet", "CaseSensitiveNotLikeSet", "MatchSet", "CaseSensitiveMatchSet", "NotMatchSet",
    "CaseSensitiveNotMatchSet", "ContainsSet", "CaseSensitiveContainsSet", "NotContainsSet", "CaseSensitiveNotContainsSet", "InSet",
    "CaseSensitiveInSet", "NotInSet", "CaseSensitiveNotInSet", "NotSet",
];

macro_rules! switch_in {
    ($name:literal, $set:literal) => {
        p($name, Kind::Switch, "").sets(&[$set]).mandatory(&[$set])
    };
}

/// `-EQ` is the one operator switch not mandatory in its set: EqualSet is Where-Object's default, so `where Name`
/// (no operator) tests the property's truth.
const EQ: crate::bind::Param = p("EQ", Kind::Switch, "").sets(&["EqualSet"]).alias(&["IEQ"]);

const FORMAT_SETS: &[&str] = &[""];

pub(crate) static CMDLETS: &[Cmdlet] = &[
    Cmdlet {
        sig: Signature {
            name: "Where-Object",
            class: "Microsoft.PowerShell.Commands.WhereObjectCommand",
            params: &[
                p("InputObject", Kind::Objects, "The objects to filter.").pipe(Pipe::ByValue),
                p("FilterScript", Kind::ScriptBlock, "The condition: a script block where $_ is the object.").at(0).sets(&["ScriptBlockSet"]).mandatory(&["ScriptBlockSet"]),
                p("Property", Kind::String, "The property the simplified syntax compares.").at(0).sets(SIMPLE_SETS).mandatory(SIMPLE_SETS),
                p("Value", Kind::Object, "The value the property is compared with.").at(1).sets(SIMPLE_SETS),
                EQ,
                switch_in!("CEQ", "CaseSensitiveEqualSet"),
                switch_in!("NE", "NotEqualSet").alias(&["INE"]),
                switch_in!("CNE", "CaseSensitiveNotEqualSet"),
                switch_in!("GT", "GreaterThanSet").alias(&["IGT"]),
                switch_in!("CGT", "CaseSensitiveGreaterThanSet"),
                switch_in!("LT", "LessThanSet").alias(&["ILT"]),
                switch_in!("CLT", "CaseSensitiveLessThanSet"),
                switch_in!("GE", "GreaterOrEqualSet").alias(&["IGE"]),
                switch_in!("CGE", "CaseSensitiveGreaterOrEqualSet"),
                switch_in!("LE", "LessOrEqualSet").alias(&["ILE"]),
                switch_in!("CLE", "CaseSensitiveLessOrEqualSet"),
                switch_in!("Like", "LikeSet").alias(&["ILike"]),
                switch_in!("CLike", "CaseSensitiveLikeSet"),
                switch_in!("NotLike", "NotLikeSet").alias(&["INotLike"]),
                switch_in!("CNotLike", "CaseSensitiveNotLikeSet"),
                switch_in!("Match", "MatchSet").alias(&["IMatch"]),
                switch_in!("CMatch", "CaseSensitiveMatchSet"),
                switch_in!("NotMatch", "NotMatchSet").alias(&["INotMatch"]),
                switch_in!("CNotMatch", "CaseSensitiveNotMatchSet"),
                switch_in!("Contains", "ContainsSet").alias(&["IContains"]),
                switch_in!("CContains", "CaseSensitiveContainsSet"),
                switch_in!("NotContains", "NotContainsSet").alias(&["INotContains"]),
                switch_in!("CNotContains", "CaseSensitiveNotContainsSet"),
                switch_in!("In", "InSet").alias(&["IIn"]),
                switch_in!("CIn", "CaseSensitiveInSet"),
                switch_in!("NotIn", "NotInSet").alias(&["INotIn"]),
                switch_in!("CNotIn", "CaseSensitiveNotInSet"),
                switch_in!("Not", "NotSet"),
            ],
            sets: WHERE_SETS,
        },
        aliases: &["where", "?"],
        synopsis: "Selects objects from a collection based on their property values.",
        run: where_object,
    },
    Cmdlet {
        sig: Signature {
            name: "ForEach-Object",
            class: "Microsoft.PowerShell.Commands.ForEachObjectCommand",
            params: &[
                p("InputObject", Kind::Objects, "The objects.").pipe(Pipe::ByValue),
                p("Process", Kind::ScriptBlocks, "What to do with each object ($_).").at(0).sets(&["ScriptBlockSet"]).mandatory(&["ScriptBlockSet"]),
                p("Begin", Kind::ScriptBlock, "What to do before the first object.").sets(&["ScriptBlockSet"]),
                p("End", Kind::ScriptBlock, "What to do after the last object.").sets(&["ScriptBlockSet"]),
                p("MemberName", Kind::String, "A property to get or a method to call of each object.").at(0).sets(&["PropertyAndMethodSet"]).mandatory(&["PropertyAndMethodSet"]),
                p("ArgumentList", Kind::Objects, "The method's arguments.").alias(&["Args"]).sets(&["PropertyAndMethodSet"]).remaining(),
            ],
            sets: &["ScriptBlockSet", "PropertyAndMethodSet"],
        },
        aliases: &["foreach", "%"],
        synopsis: "Performs an operation against each item in a collection of input objects.",
        run: foreach_object,
    },
    Cmdlet {
        sig: Signature {
            name: "Select-Object",
            class: "Microsoft.PowerShell.Commands.SelectObjectCommand",
            params: &[
                p("InputObject", Kind::Objects, "The objects.").pipe(Pipe::ByValue),
                p("Property", Kind::Objects, "The properties to keep (wildcards, or @{Name=…; Expression={…}}).").at(0),
                p("ExcludeProperty", Kind::Strings, "Properties to leave out."),
                p("ExpandProperty", Kind::String, "Output this property's value instead of the object."),
                p("Unique", Kind::Switch, "Only distinct objects."),
                p("First", Kind::Int, "The first N objects."),
                p("Last", Kind::Int, "The last N objects."),
                p("Skip", Kind::Int, "Skip the first N objects."),
                p("Index", Kind::Ints, "The objects at these positions."),
            ],
            sets: &[],
        },
        aliases: &["select"],
        synopsis: "Selects objects or object properties.",
        run: select_object,
    },
    Cmdlet {
        sig: Signature {
            name: "Sort-Object",
            class: "Microsoft.PowerShell.Commands.SortObjectCommand",
            params: &[
                p("InputObject", Kind::Objects, "The objects.").pipe(Pipe::ByValue),
                p("Property", Kind::Objects, "The properties to sort by.").at(0),
                p("Descending", Kind::Switch, "Largest first."),
                p("Unique", Kind::Switch, "Only distinct objects."),
                p("CaseSensitive", Kind::Switch, "Upper and lower case apart."),
            ],
            sets: &[],
        },
        aliases: &["sort"],
        synopsis: "Sorts objects by property values.",
        run: sort_object,
    },
    Cmdlet {
        sig: Signature {
            name: "Format-Table",
            class: "Microsoft.PowerShell.Commands.FormatTableCommand",
            params: &[
                p("InputObject", Kind::Objects, "The objects.").pipe(Pipe::ByValue),
                p("Property", Kind::Objects, "The columns (wildcards allowed).").at(0),
                p("AutoSize", Kind::Switch, "Accepted: columns are always sized to their content."),
                p("Wrap", Kind::Switch, "Accepted for compatibility."),
                p("HideTableHeaders", Kind::Switch, "Accepted for compatibility."),
            ],
            sets: FORMAT_SETS,
        },
        aliases: &["ft"],
        synopsis: "Formats the output as a table.",
        run: format_table,
    },
    Cmdlet {
        sig: Signature {
            name: "Format-List",
            class: "Microsoft.PowerShell.Commands.FormatListCommand",
            params: &[p("InputObject", Kind::Objects, "The objects.").pipe(Pipe::ByValue), p("Property", Kind::Objects, "The properties (wildcards allowed; * for all).").at(0)],
            sets: FORMAT_SETS,
        },
        aliases: &["fl"],
        synopsis: "Formats the output as a list of properties in which each property appears on a new line.",
        run: format_list,
    },
    Cmdlet {
        sig: Signature {
            name: "Get-Member",
            class: "Microsoft.PowerShell.Commands.GetMemberCommand",
            params: &[
                p("InputObject", Kind::Objects, "The objects whose members to list.").pipe(Pipe::ByValue),
                p("Name", Kind::Strings, "Only members with these names (wildcards allowed).").at(0),
                p("MemberType", Kind::Strings, "Only these kinds of member (Property, Method, NoteProperty…)").alias(&["Type"]),
                p("Force", Kind::Switch, "Accepted for compatibility."),
            ],
            sets: &[],
        },
        aliases: &["gm"],
        synopsis: "Gets the properties and methods of objects.",
        run: get_member,
    },
    Cmdlet {
        sig: Signature {
            name: "Get-Help",
            class: "Microsoft.PowerShell.Commands.GetHelpCommand",
            params: &[
                p("Name", Kind::String, "The command to describe.").at(0),
                p("Full", Kind::Switch, "Everything: syntax, every parameter, examples.").sets(&["AllUsersView", "Full"]),
                p("Detailed", Kind::Switch, "Parameters and examples.").sets(&["DetailedView"]),
                p("Examples", Kind::Switch, "Only the examples.").sets(&["Examples"]),
                p("Parameter", Kind::Strings, "Only these parameters.").sets(&["Parameters"]),
            ],
            sets: &["AllUsersView", "DetailedView", "Examples", "Parameters", "Full"],
        },
        aliases: &["help", "man"],
        synopsis: "Displays information about psgate's commands.",
        run: crate::help::get_help,
    },
    Cmdlet {
        sig: Signature {
            name: "Get-Command",
            class: "Microsoft.PowerShell.Commands.GetCommandCommand",
            params: &[
                p("Name", Kind::Strings, "Command names (wildcards allowed).").at(0).pipe(Pipe::ByPropertyName),
                p("Verb", Kind::Strings, "Commands with these verbs.").pipe(Pipe::ByPropertyName),
                p("Noun", Kind::Strings, "Commands with these nouns.").pipe(Pipe::ByPropertyName),
                p("CommandType", Kind::Strings, "Cmdlet or Alias.").alias(&["Type"]),
                p("Module", Kind::Strings, "Accepted: every command here is psgate's.").alias(&["PSSnapin"]),
            ],
            sets: &[],
        },
        aliases: &["gcm"],
        synopsis: "Gets the commands of psgate's prompt.",
        run: crate::help::get_command,
    },
    Cmdlet {
        sig: Signature {
            name: "Get-History",
            class: "Microsoft.PowerShell.Commands.GetHistoryCommand",
            params: &[p("Id", Kind::Ints, "These entries.").at(0).pipe(Pipe::ByValue), p("Count", Kind::Int, "The last N entries.").at(1)],
            sets: &[],
        },
        aliases: &["h", "history", "ghy"],
        synopsis: "Gets a list of the commands entered during the current session.",
        run: get_history,
    },
    Cmdlet {
        sig: Signature { name: "Clear-Host", class: "Microsoft.PowerShell.Commands.ClearHostCommand", params: &[], sets: &[] },
        aliases: &["cls", "clear"],
        synopsis: "Clears the console.",
        run: clear_host,
    },
    Cmdlet {
        sig: Signature {
            name: "Get-Credential",
            class: "Microsoft.PowerShell.Commands.GetCredentialCommand",
            params: &[
                p("Credential", Kind::Credential, "A user name to fill in, or a credential to pass through.").at(0).sets(&["CredentialSet"]),
                p("Message", Kind::String, "The message of the dialog.").sets(&["MessageSet"]),
                p("Title", Kind::String, "The title of the dialog.").sets(&["MessageSet"]),
                p("UserName", Kind::String, "A user name to fill in.").at(0).sets(&["MessageSet"]),
            ],
            sets: &["CredentialSet", "MessageSet"],
        },
        aliases: &[],
        synopsis: "Gets a credential object based on a user name and password.",
        run: get_credential,
    },
    Cmdlet {
        sig: Signature {
            name: "Write-Output",
            class: "Microsoft.PowerShell.Commands.WriteOutputCommand",
            params: &[p("InputObject", Kind::Objects, "The objects to send down the pipeline.").at(0).mandatory(&["*"]).pipe(Pipe::ByValue).remaining(), p("NoEnumerate", Kind::Switch, "Send a collection as one object.")],
            sets: &[],
        },
        aliases: &["echo", "write"],
        synopsis: "Writes the specified objects to the pipeline.",
        run: write_output,
    },
    Cmdlet {
        sig: Signature {
            name: "Write-Host",
            class: "Microsoft.PowerShell.Commands.WriteHostCommand",
            params: &[
                p("Object", Kind::Objects, "What to write.").at(0).pipe(Pipe::ByValue).remaining(),
                p("NoNewline", Kind::Switch, "No line break after it."),
                p("Separator", Kind::Object, "Between the objects."),
                p("ForegroundColor", Kind::String, "The text's colour."),
                p("BackgroundColor", Kind::String, "The background's colour."),
            ],
            sets: &[],
        },
        aliases: &[],
        synopsis: "Writes text to the console.",
        run: write_host,
    },
];

fn property_of(cx: &mut Ctx<'_>, item: &Value, name: &str) -> Value {
    let item = cx.live(item.clone());
    values::member(&item, name)
}

fn where_object(cx: &mut Ctx<'_>, b: &Bound, sink: &mut Sink<'_>) -> R<()> {
    let items = b.items("InputObject");
    if b.set == "ScriptBlockSet" {
        let block = b.string("FilterScript").unwrap_or_default();
        for item in items {
            cx.check_stop()?;
            let out = cx.invoke_block(&block, Some(&item))?;
            if values::truthy(&values::collapse(out)) {
                cx.emit(sink, item);
            }
        }
        return Ok(());
    }
    let property = b.string("Property").unwrap_or_default();
    let op = WHERE_OPS.iter().find(|(_, set)| *set == b.set).map(|(name, _)| *name);
    let op = if b.set == "EqualSet" && !b.has("EQ") { None } else { op };
    let value = b.get("Value").cloned();
    let where_error = |id: &str, message: &str| {
        Flow::Error(Failure::new(ErrorSpec {
            message: message.to_owned(),
            id: format!("{id},Microsoft.PowerShell.Commands.WhereObjectCommand"),
            category: Category::InvalidArgument,
            exception: "System.Management.Automation.PSArgumentException",
            target: None,
            activity: "Where-Object".into(),
            position: None,
        }))
    };
    if op.is_none() && b.has("Value") {
        return Err(where_error(
            "OperatorNotSpecified",
            "An operator is required to compare the two specified values. Include a valid operator in the command, and then try the command again. For example, Get-Process | Where-Object -Property Name -eq Idle",
        ));
    }
    if op.is_some_and(|o| o != "EQ" && o != "Not") && !b.has("Value") {
        return Err(where_error(
            "ValueNotSpecifiedForWhereObject",
            "The specified operator requires both the -Property and -Value parameters. Provide values for both parameters, and then try the command again.",
        ));
    }
    for item in items {
        let v = property_of(cx, &item, &property);
        let keep = match (op, &value) {
            (None, _) => values::truthy(&v),
            (Some("Not"), _) => !values::truthy(&v),
            (Some(op), value) => {
                let value = value.clone().unwrap_or(Value::Nil);
                let cs = op.starts_with('C') && op != "Contains";
                let base = if cs { &op[1..] } else { op };
                match base.to_ascii_lowercase().as_str() {
                    "eq" => values::equals(&v, &value, cs),
                    "ne" => !values::equals(&v, &value, cs),
                    "gt" => values::order(&v, &value, cs) == Some(std::cmp::Ordering::Greater),
                    "lt" => values::order(&v, &value, cs) == Some(std::cmp::Ordering::Less),
                    "ge" => matches!(values::order(&v, &value, cs), Some(std::cmp::Ordering::Greater | std::cmp::Ordering::Equal)),
                    "le" => matches!(values::order(&v, &value, cs), Some(std::cmp::Ordering::Less | std::cmp::Ordering::Equal)),
                    "like" => values::like(&text(&v), &text(&value), cs),
                    "notlike" => !values::like(&text(&v), &text(&value), cs),
                    "match" | "notmatch" => {
                        let re = regex::RegexBuilder::new(&text(&value)).case_insensitive(!cs).size_limit(1 << 20).build();
                        let found = re.map(|r| r.is_match(&text(&v))).map_err(|e| {
                            Flow::Error(Failure::new(ErrorSpec {
                                message: format!("The regular expression pattern {} is not valid: {e}", text(&value)),
                                id: "InvalidRegularExpression,Microsoft.PowerShell.Commands.WhereObjectCommand".into(),
                                category: Category::InvalidArgument,
                                exception: "System.ArgumentException",
                                target: None,
                                activity: "Where-Object".into(),
                                position: None,
                            }))
                        })?;
                        found == (base.eq_ignore_ascii_case("match"))
                    }
                    "contains" => values::enumerate(v.clone()).iter().any(|x| values::equals(x, &value, cs)),
                    "notcontains" => !values::enumerate(v.clone()).iter().any(|x| values::equals(x, &value, cs)),
                    "in" => values::enumerate(value.clone()).iter().any(|x| values::equals(x, &v, cs)),
                    "notin" => !values::enumerate(value.clone()).iter().any(|x| values::equals(x, &v, cs)),
                    _ => false,
                }
            }
        };
        if keep {
            cx.emit(sink, item);
        }
    }
    Ok(())
}

fn foreach_object(cx: &mut Ctx<'_>, b: &Bound, sink: &mut Sink<'_>) -> R<()> {
    let items = b.items("InputObject");
    if b.set == "PropertyAndMethodSet" {
        let member = b.string("MemberName").unwrap_or_default();
        let args = b.items("ArgumentList");
        for item in items {
            let item = cx.live(item);
            let has_property = values::property(&item, &member).is_some() || values::as_list(&item).is_some();
            let v = if has_property || args.is_empty() && crate::methods::call(&item, &member, &[]).is_err() {
                values::member(&item, &member)
            } else {
                crate::methods::call(&item, &member, &args).map_err(|m| cx.runtime_error(&m, crate::ast::Span::default()))?
            };
            for x in values::enumerate(v) {
                if !x.is_nil() {
                    cx.emit(sink, x);
                }
            }
        }
        return Ok(());
    }
    if let Some(begin) = b.string("Begin") {
        for v in cx.invoke_block(&begin, None)? {
            cx.emit(sink, v);
        }
    }
    let blocks: Vec<String> = b.items("Process").iter().map(text).collect();
    for item in items {
        cx.check_stop()?;
        for block in &blocks {
            for v in cx.invoke_block(block, Some(&item))? {
                cx.emit(sink, v);
            }
        }
    }
    if let Some(end) = b.string("End") {
        for v in cx.invoke_block(&end, None)? {
            cx.emit(sink, v);
        }
    }
    Ok(())
}

/// A property selector of Select-Object, Sort-Object or Format-*: a name (wildcards) or a calculated one.
enum Selector {
    Name(String),
    Calculated { name: String, expression: Value, descending: Option<bool> },
}

fn selectors(b: &Bound, param: &str) -> R<Vec<Selector>> {
    let mut out = Vec::new();
    for v in b.items(param) {
        match v.as_object().map(|o| &o.content) {
            Some(Content::Dict(entries)) => {
                let get = |keys: &[&str]| entries.iter().find(|(k, _)| keys.iter().any(|key| text(k).eq_ignore_ascii_case(key))).map(|(_, v)| v.clone());
                let expression = get(&["Expression", "E"]).unwrap_or(Value::Nil);
                let name = get(&["Name", "N", "Label", "L"]).map(|v| text(&v)).unwrap_or_else(|| text(&expression));
                let descending = get(&["Descending"]).map(|v| values::truthy(&v)).or(get(&["Ascending"]).map(|v| !values::truthy(&v)));
                out.push(Selector::Calculated { name, expression, descending });
            }
            _ => out.push(Selector::Name(text(&v))),
        }
    }
    Ok(out)
}

/// The properties of an object, in order: (name, value).
fn properties_of(v: &Value) -> Vec<(String, Value)> {
    match v.as_object() {
        Some(o) => o.properties().filter(|p| !p.value.is_member_set()).map(|p| (p.name.to_string(), p.value.clone())).collect(),
        None => Vec::new(),
    }
}

/// Applies selectors to one object: the named (and calculated) properties, in the selectors' order.
fn select_properties(cx: &mut Ctx<'_>, item: &Value, selectors: &[Selector], exclude: &[String]) -> R<Vec<(String, Value)>> {
    let item = cx.live(item.clone());
    let all = properties_of(&item);
    let mut out: Vec<(String, Value)> = Vec::new();
    for s in selectors {
        match s {
            Selector::Name(pattern) if values::has_wildcards(pattern) => {
                for (n, v) in &all {
                    if values::like(n, pattern, false) && !out.iter().any(|(o, _)| o.eq_ignore_ascii_case(n)) {
                        out.push((n.clone(), v.clone()));
                    }
                }
            }
            Selector::Name(name) => {
                let v = values::member(&item, name);
                let shown = all.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map_or(name.clone(), |(n, _)| n.clone());
                out.push((shown, v));
            }
            Selector::Calculated { name, expression, .. } => {
                let v = match expression {
                    Value::ScriptBlock(block) => values::collapse(cx.invoke_block(block, Some(&item))?),
                    other => values::member(&item, &text(other)),
                };
                out.push((name.clone(), v));
            }
        }
    }
    out.retain(|(n, _)| !exclude.iter().any(|e| values::like(n, e, false)));
    Ok(out)
}

fn select_object(cx: &mut Ctx<'_>, b: &Bound, sink: &mut Sink<'_>) -> R<()> {
    let mut items = b.items("InputObject");
    if b.switch("Unique") {
        let mut seen: Vec<Value> = Vec::new();
        items.retain(|i| {
            let dup = seen.iter().any(|s| values::equals(s, i, true));
            if !dup {
                seen.push(i.clone());
            }
            !dup
        });
    }
    if let Some(n) = b.int("Skip") {
        items = items.into_iter().skip(n.max(0) as usize).collect();
    }
    if b.has("Index") {
        let indexes = b.ints("Index");
        items = items.into_iter().enumerate().filter(|(i, _)| indexes.contains(&(*i as i64))).map(|(_, v)| v).collect();
    }
    if b.has("First") || b.has("Last") {
        let first = b.int("First").map(|n| n.max(0) as usize);
        let last = b.int("Last").map(|n| n.max(0) as usize);
        let len = items.len();
        let mut keep: Vec<Value> = Vec::new();
        if let Some(f) = first {
            keep.extend(items.iter().take(f).cloned());
        }
        if let Some(l) = last {
            let start = len.saturating_sub(l).max(first.unwrap_or(0).min(len));
            keep.extend(items[start..].iter().cloned());
        }
        items = keep;
    }
    let selectors = selectors(b, "Property")?;
    let exclude = b.strings("ExcludeProperty");
    for item in items {
        cx.check_stop()?;
        if let Some(expand) = b.string("ExpandProperty") {
            let item = cx.live(item);
            let v = values::member(&item, &expand);
            if v.is_nil() && values::property(&item, &expand).is_none() {
                cx.write_error(Failure::new(ErrorSpec {
                    message: format!("Property \"{expand}\" cannot be found."),
                    id: "ExpandPropertyNotFound,Microsoft.PowerShell.Commands.SelectObjectCommand".into(),
                    category: Category::InvalidArgument,
                    exception: "System.Management.Automation.PSArgumentException",
                    target: None,
                    activity: "Select-Object".into(),
                    position: None,
                }))?;
                continue;
            }
            for x in values::enumerate(v) {
                cx.emit(sink, x);
            }
            continue;
        }
        if selectors.is_empty() && exclude.is_empty() {
            cx.emit(sink, item);
            continue;
        }
        let selectors = if selectors.is_empty() { vec![Selector::Name("*".into())] } else { selectors_clone(&selectors) };
        let props = select_properties(cx, &item, &selectors, &exclude)?;
        let first_type = values::type_name(&item);
        let mut o = match values::custom_object(props) {
            Value::Object(o) => std::sync::Arc::unwrap_or_clone(o),
            _ => Object::default(),
        };
        o.type_names = Some(vec![format!("Selected.{first_type}").into(), "System.Management.Automation.PSCustomObject".into(), "System.Object".into()].into());
        cx.emit(sink, Value::object(o));
    }
    Ok(())
}

fn selectors_clone(s: &[Selector]) -> Vec<Selector> {
    s.iter()
        .map(|x| match x {
            Selector::Name(n) => Selector::Name(n.clone()),
            Selector::Calculated { name, expression, descending } => Selector::Calculated { name: name.clone(), expression: expression.clone(), descending: *descending },
        })
        .collect()
}

fn sort_object(cx: &mut Ctx<'_>, b: &Bound, sink: &mut Sink<'_>) -> R<()> {
    let items: Vec<Value> = b.items("InputObject").into_iter().map(|i| cx.live(i)).collect();
    let selectors = selectors(b, "Property")?;
    let descending = b.switch("Descending");
    let cs = b.switch("CaseSensitive");
    let mut keyed: Vec<(Vec<(Value, bool)>, Value)> = Vec::with_capacity(items.len());
    for item in items {
        let mut keys = Vec::new();
        if selectors.is_empty() {
            keys.push((item.clone(), descending));
        }
        for s in &selectors {
            match s {
                Selector::Name(n) => keys.push((values::member(&item, n), descending)),
                Selector::Calculated { expression, descending: d, .. } => {
                    let v = match expression {
                        Value::ScriptBlock(block) => values::collapse(cx.invoke_block(block, Some(&item))?),
                        other => values::member(&item, &text(other)),
                    };
                    keys.push((v, d.unwrap_or(descending)));
                }
            }
        }
        keyed.push((keys, item));
    }
    keyed.sort_by(|(a, _), (b, _)| {
        for ((x, desc), (y, _)) in a.iter().zip(b.iter()) {
            let o = if cs && !values::is_number(x) { values::order(x, y, true).unwrap_or(std::cmp::Ordering::Equal) } else { values::sort_order(x, y) };
            let o = if *desc { o.reverse() } else { o };
            if o != std::cmp::Ordering::Equal {
                return o;
            }
        }
        std::cmp::Ordering::Equal
    });
    let mut last: Option<Vec<Value>> = None;
    for (keys, item) in keyed {
        if b.switch("Unique") {
            let k: Vec<Value> = keys.into_iter().map(|(k, _)| k).collect();
            if last.as_ref().is_some_and(|l| l.iter().zip(k.iter()).all(|(a, b)| values::equals(a, b, cs))) {
                continue;
            }
            last = Some(k);
        }
        cx.emit(sink, item);
    }
    Ok(())
}

/// The type name psgate's consoles read as "lay these out as a table" (or list): Format-Table's and
/// Format-List's output keeps the objects' properties, not PowerShell's format records.
pub const FORMAT_TABLE: &str = "psgate.Format.Table";
/// See [`FORMAT_TABLE`].
pub const FORMAT_LIST: &str = "psgate.Format.List";

fn format(cx: &mut Ctx<'_>, b: &Bound, sink: &mut Sink<'_>, layout: &str) -> R<()> {
    let selectors = selectors(b, "Property")?;
    for item in b.items("InputObject") {
        let item = cx.live(item);
        let props = if selectors.is_empty() {
            if layout == FORMAT_LIST || item.as_object().is_none() {
                cx.emit(sink, tag(item, layout));
                continue;
            }
            crate::format::default_columns(&item).into_iter().map(|c| (c.clone(), values::member(&item, &c))).collect()
        } else {
            select_properties(cx, &item, &selectors, &[])?
        };
        let mut o = match values::custom_object(props) {
            Value::Object(o) => std::sync::Arc::unwrap_or_clone(o),
            _ => Object::default(),
        };
        let original: Vec<psgate_shared::clixml::Str> = item.as_object().map(|x| x.type_names().map(Into::into).collect()).unwrap_or_default();
        let mut names: Vec<psgate_shared::clixml::Str> = vec![layout.into()];
        names.extend(original.into_iter().filter(|t: &psgate_shared::clixml::Str| t.as_str() != "System.Object"));
        names.push("System.Object".into());
        o.type_names = Some(names.into());
        o.to_string = item.as_object().and_then(|x| x.to_string.clone());
        cx.emit(sink, Value::object(o));
    }
    Ok(())
}

/// The object with the layout's type name first.
fn tag(item: Value, layout: &str) -> Value {
    match item {
        Value::Object(o) => {
            let mut o = std::sync::Arc::unwrap_or_clone(o);
            let mut names: Vec<psgate_shared::clixml::Str> = vec![layout.into()];
            names.extend(o.type_names().map(Into::into));
            o.type_names = Some(names.into());
            Value::object(o)
        }
        other => other,
    }
}

fn format_table(cx: &mut Ctx<'_>, b: &Bound, sink: &mut Sink<'_>) -> R<()> {
    format(cx, b, sink, FORMAT_TABLE)
}

fn format_list(cx: &mut Ctx<'_>, b: &Bound, sink: &mut Sink<'_>) -> R<()> {
    format(cx, b, sink, FORMAT_LIST)
}

/// Get-Member's `MemberDefinition`.
fn member_definition(type_name: &str, name: &str, member_type: &str, definition: &str) -> Value {
    values::object(
        &["Microsoft.PowerShell.Commands.MemberDefinition"],
        Some(definition.to_owned()),
        vec![
            ("TypeName", Value::string(type_name)),
            ("Name", Value::string(name)),
            ("MemberType", Value::string(member_type)),
            ("Definition", Value::string(definition)),
        ],
    )
}

fn get_member(cx: &mut Ctx<'_>, b: &Bound, sink: &mut Sink<'_>) -> R<()> {
    let items = b.items("InputObject");
    let names = b.strings("Name");
    let kinds = b.strings("MemberType");
    let mut seen: Vec<String> = Vec::new();
    for item in items {
        let item = cx.live(item);
        let type_name = values::type_name(&item);
        let shown_type = item.as_object().and_then(|o| o.type_names().next()).map_or(type_name.clone(), str::to_owned);
        if seen.contains(&shown_type) {
            continue;
        }
        seen.push(shown_type.clone());
        let members = crate::members::of(&item);
        for (name, kind, definition) in members {
            if !names.is_empty() && !names.iter().any(|n| values::like(&name, n, false)) {
                continue;
            }
            if !kinds.is_empty() && !kinds.iter().any(|k| values::like(kind, k, false) || (k.eq_ignore_ascii_case("Properties") && kind.ends_with("Property")) || (k.eq_ignore_ascii_case("Methods") && kind.ends_with("Method"))) {
                continue;
            }
            cx.emit(sink, member_definition(&shown_type, &name, kind, &definition));
        }
    }
    if seen.is_empty() {
        return Err(Flow::Error(Failure::new(ErrorSpec {
            message: "You must specify an object for the Get-Member cmdlet.".into(),
            id: "NoObjectInGetMember,Microsoft.PowerShell.Commands.GetMemberCommand".into(),
            category: Category::CloseError,
            exception: "System.InvalidOperationException",
            target: None,
            activity: "Get-Member".into(),
            position: None,
        })));
    }
    Ok(())
}

fn get_history(cx: &mut Ctx<'_>, b: &Bound, sink: &mut Sink<'_>) -> R<()> {
    let ids = b.ints("Id");
    let mut entries: Vec<crate::eval::HistoryEntry> = cx.rs.history.iter().filter(|h| h.status != "Running").cloned().collect();
    if !ids.is_empty() {
        entries.retain(|h| ids.contains(&i64::from(h.id)));
    }
    let count = b.int("Count").map_or(4096, |c| c.max(0) as usize);
    let skip = entries.len().saturating_sub(count);
    for h in entries.into_iter().skip(skip) {
        let v = values::object(
            &["Microsoft.PowerShell.Commands.HistoryInfo"],
            Some(h.line.clone()),
            vec![("Id", Value::I64(i64::from(h.id))), ("CommandLine", Value::string(h.line.as_str())), ("ExecutionStatus", Value::string(h.status))],
        );
        cx.emit(sink, v);
    }
    Ok(())
}

fn clear_host(cx: &mut Ctx<'_>, _b: &Bound, _sink: &mut Sink<'_>) -> R<()> {
    cx.host.clear();
    Ok(())
}

fn get_credential(cx: &mut Ctx<'_>, b: &Bound, sink: &mut Sink<'_>) -> R<()> {
    if let Some(c) = b.get("Credential")
        && crate::secrets::is_credential(c)
    {
        cx.emit(sink, c.clone());
        return Ok(());
    }
    let user = b.string("UserName").or_else(|| b.string("Credential")).unwrap_or_default();
    let caption = b.string("Title").unwrap_or_else(|| "PowerShell credential request".into());
    let message = b.string("Message").unwrap_or_else(|| "Enter your credentials.".into());
    let (user, password) = super::remoting::ask_credential(cx, &caption, &message, &user)?;
    let v = cx.rs.secrets.credential(&user, password);
    cx.emit(sink, v);
    Ok(())
}

fn write_output(cx: &mut Ctx<'_>, b: &Bound, sink: &mut Sink<'_>) -> R<()> {
    let v = b.get("InputObject").cloned().unwrap_or(Value::Nil);
    if b.switch("NoEnumerate") {
        cx.emit(sink, v);
    } else {
        for item in values::enumerate(v) {
            cx.emit(sink, item);
        }
    }
    Ok(())
}

fn write_host(cx: &mut Ctx<'_>, b: &Bound, _sink: &mut Sink<'_>) -> R<()> {
    let separator = b.string("Separator").unwrap_or_else(|| " ".into());
    let message: Vec<String> = b.items("Object").iter().map(text).collect();
    let message = message.join(&separator);
    let color = |name: &str| b.string(name).map_or(Value::Nil, Value::string);
    let data = values::object(
        &["System.Management.Automation.HostInformationMessage"],
        Some(message.clone()),
        vec![
            ("Message", Value::string(message.as_str())),
            ("NoNewLine", Value::Bool(b.switch("NoNewline"))),
            ("ForegroundColor", color("ForegroundColor")),
            ("BackgroundColor", color("BackgroundColor")),
        ],
    );
    let record = values::object(
        &["System.Management.Automation.InformationRecord"],
        Some(message),
        vec![("MessageData", data), ("Source", Value::string("Write-Host")), ("Tags", values::array(vec![Value::string("PSHOST")]))],
    );
    cx.host.record(RecordKind::Information, record);
    Ok(())
}

/// `$PSVersionTable` of psgate's prompt.
pub(crate) fn version_table() -> Value {
    let entries = vec![
        (Value::string("PSVersion"), Value::string(crate::eval::PSGATE_VERSION)),
        (Value::string("PSEdition"), Value::string("psgate")),
        (Value::string("PSCompatibleVersions"), Value::string("5.1, 7.4")),
        (Value::string("PSRemotingProtocolVersion"), Value::Version(psgate_shared::clixml::Version::new(2, 3))),
        (Value::string("SerializationVersion"), Value::string("1.1.0.1")),
        (Value::string("WSManStackVersion"), Value::Version(psgate_shared::clixml::Version::new(3, 0))),
        (Value::string("Platform"), Value::string("psgate relay")),
    ];
    Value::object(Object {
        type_names: Some(vec!["System.Management.Automation.PSVersionHashTable".into(), "System.Collections.Hashtable".into(), "System.Object".into()].into()),
        content: Content::Dict(entries),
        ..Object::default()
    })
}
