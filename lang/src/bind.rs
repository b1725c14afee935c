//! Parameter binding with PowerShell's rules: names and aliases ignoring case, unambiguous prefixes, `-Name:value`,
//! switches, positional arguments by the parameter sets still possible, pipeline input by value and then by
//! property name, and the mandatory parameters of the chosen set (prompted for, as PowerShell does, when someone
//! can answer).

use std::collections::BTreeMap;

use psgate_shared::clixml::Value;

use crate::ast::Span;
use crate::error::{Category, ErrorSpec, Failure};
use crate::values::{self, text};

/// How a parameter's value is read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A switch: present or `-Name:$false`.
    Switch,
    /// `String`
    String,
    /// `String[]`
    Strings,
    /// `Int32`
    Int,
    /// `Int32[]`
    Ints,
    /// `Object`, as given.
    Object,
    /// `Object[]`, as given.
    Objects,
    /// `PSSession[]`
    Sessions,
    /// `PSSession`
    Session,
    /// `ScriptBlock`
    ScriptBlock,
    /// `ScriptBlock[]`
    ScriptBlocks,
    /// `PSCredential` (a user name asks for the password).
    Credential,
    /// An enum: one of these names (ignoring case).
    Enum(&'static str, &'static [&'static str]),
    /// `Guid[]`
    Guids,
}

impl Kind {
    /// The .NET type PowerShell names in its messages.
    pub fn type_name(self) -> &'static str {
        match self {
            Kind::Switch => "System.Management.Automation.SwitchParameter",
            Kind::String => "System.String",
            Kind::Strings => "System.String[]",
            Kind::Int => "System.Int32",
            Kind::Ints => "System.Int32[]",
            Kind::Object => "System.Object",
            Kind::Objects => "System.Object[]",
            Kind::Sessions => "System.Management.Automation.Runspaces.PSSession[]",
            Kind::Session => "System.Management.Automation.Runspaces.PSSession",
            Kind::ScriptBlock => "System.Management.Automation.ScriptBlock",
            Kind::ScriptBlocks => "System.Management.Automation.ScriptBlock[]",
            Kind::Credential => "System.Management.Automation.PSCredential",
            Kind::Enum(name, _) => name,
            Kind::Guids => "System.Guid[]",
        }
    }

    /// The short form of `Get-Help`'s syntax (`<String[]>`).
    pub fn short_name(self) -> &'static str {
        match self {
            Kind::Switch => "",
            Kind::String => "String",
            Kind::Strings => "String[]",
            Kind::Int => "Int32",
            Kind::Ints => "Int32[]",
            Kind::Object => "Object",
            Kind::Objects => "Object[]",
            Kind::Sessions => "PSSession[]",
            Kind::Session => "PSSession",
            Kind::ScriptBlock => "ScriptBlock",
            Kind::ScriptBlocks => "ScriptBlock[]",
            Kind::Credential => "PSCredential",
            Kind::Enum(name, _) => name.rsplit('.').next().unwrap_or(name),
            Kind::Guids => "Guid[]",
        }
    }
}

/// Pipeline input a parameter takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pipe {
    /// None.
    No,
    /// `ValueFromPipeline`
    ByValue,
    /// `ValueFromPipelineByPropertyName`
    ByPropertyName,
    /// Both.
    Both,
}

/// A parameter of a cmdlet.
#[derive(Clone, Copy, Debug)]
pub struct Param {
    /// Its name.
    pub name: &'static str,
    /// Its aliases.
    pub aliases: &'static [&'static str],
    /// Its type.
    pub kind: Kind,
    /// Its position, where it has one.
    pub position: Option<u8>,
    /// The parameter sets it is in (empty: all of them).
    pub sets: &'static [&'static str],
    /// The sets where it is mandatory (`["*"]`: all its sets).
    pub mandatory: &'static [&'static str],
    /// Pipeline input.
    pub pipe: Pipe,
    /// One line for Get-Help.
    pub help: &'static str,
    /// `ValueFromRemainingArguments`: positional arguments nobody else takes.
    pub remaining: bool,
}

impl Param {
    /// In this set.
    pub fn in_set(&self, set: &str) -> bool {
        self.sets.is_empty() || self.sets.contains(&set)
    }

    /// Mandatory in this set.
    pub fn mandatory_in(&self, set: &str) -> bool {
        self.in_set(set) && (self.mandatory.contains(&"*") || self.mandatory.contains(&set))
    }
}

/// A parameter with only the commonest fields (the others: none, all sets, not mandatory, no pipeline input).
pub const fn p(name: &'static str, kind: Kind, help: &'static str) -> Param {
    Param { name, aliases: &[], kind, position: None, sets: &[], mandatory: &[], pipe: Pipe::No, help, remaining: false }
}

impl Param {
    /// With aliases.
    pub const fn alias(mut self, aliases: &'static [&'static str]) -> Param {
        self.aliases = aliases;
        self
    }

    /// At a position.
    pub const fn at(mut self, position: u8) -> Param {
        self.position = Some(position);
        self
    }

    /// In these sets.
    pub const fn sets(mut self, sets: &'static [&'static str]) -> Param {
        self.sets = sets;
        self
    }

    /// Mandatory in these sets (`&["*"]`: all).
    pub const fn mandatory(mut self, sets: &'static [&'static str]) -> Param {
        self.mandatory = sets;
        self
    }

    /// Taking pipeline input.
    pub const fn pipe(mut self, pipe: Pipe) -> Param {
        self.pipe = pipe;
        self
    }

    /// Taking the positional arguments nobody else takes.
    pub const fn remaining(mut self) -> Param {
        self.remaining = true;
        self
    }
}

/// The common parameters every cmdlet takes (`-ErrorAction` is honoured; the others are accepted).
pub const COMMON: &[Param] = &[
    p("Verbose", Kind::Switch, "").alias(&["vb"]),
    p("Debug", Kind::Switch, "").alias(&["db"]),
    p("ErrorAction", Kind::Enum("System.Management.Automation.ActionPreference", &["SilentlyContinue", "Stop", "Continue", "Inquire", "Ignore", "Suspend", "Break"]), "").alias(&["ea"]),
    p("WarningAction", Kind::Enum("System.Management.Automation.ActionPreference", &["SilentlyContinue", "Stop", "Continue", "Inquire", "Ignore", "Suspend", "Break"]), "").alias(&["wa"]),
    p("InformationAction", Kind::Enum("System.Management.Automation.ActionPreference", &["SilentlyContinue", "Stop", "Continue", "Inquire", "Ignore", "Suspend", "Break"]), "").alias(&["infa"]),
    p("ProgressAction", Kind::Enum("System.Management.Automation.ActionPreference", &["SilentlyContinue", "Stop", "Continue", "Inquire", "Ignore", "Suspend", "Break"]), "").alias(&["proga"]),
    p("ErrorVariable", Kind::String, "").alias(&["ev"]),
    p("WarningVariable", Kind::String, "").alias(&["wv"]),
    p("InformationVariable", Kind::String, "").alias(&["iv"]),
    p("OutVariable", Kind::String, "").alias(&["ov"]),
    p("OutBuffer", Kind::Int, "").alias(&["ob"]),
    p("PipelineVariable", Kind::String, "").alias(&["pv"]),
];

/// What a cmdlet needs to bind: its name for messages, .NET class for error ids, parameters and sets.
#[derive(Debug)]
pub struct Signature {
    /// `New-PSSession`
    pub name: &'static str,
    /// `Microsoft.PowerShell.Commands.NewPSSessionCommand`
    pub class: &'static str,
    /// Its parameters (the common ones are added).
    pub params: &'static [Param],
    /// Its parameter sets, the default first.
    pub sets: &'static [&'static str],
}

/// One argument as the command line gave it, evaluated.
#[derive(Clone, Debug)]
pub enum Arg {
    /// `-Name` or `-Name:value`.
    Named {
        /// The name as typed.
        name: String,
        /// `-Name:value`'s value.
        value: Option<Value>,
        /// Where.
        span: Span,
    },
    /// A value.
    Value {
        /// The value.
        value: Value,
        /// Its text as typed (for messages).
        shown: String,
        /// Where.
        span: Span,
    },
}

/// Parameters bound to values, and the parameter set chosen.
#[derive(Clone, Debug, Default)]
pub struct Bound {
    /// By parameter name (as declared).
    pub values: BTreeMap<&'static str, Value>,
    /// The parameter set.
    pub set: &'static str,
}

impl Bound {
    /// Whether the parameter was given.
    pub fn has(&self, name: &str) -> bool {
        self.values.contains_key(name)
    }

    /// A value.
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.values.get(name)
    }

    /// A switch (absent: false).
    pub fn switch(&self, name: &str) -> bool {
        self.values.get(name).is_some_and(values::truthy)
    }

    /// A string.
    pub fn string(&self, name: &str) -> Option<String> {
        self.values.get(name).map(text)
    }

    /// A string array (a single value is one string).
    pub fn strings(&self, name: &str) -> Vec<String> {
        self.values.get(name).map(|v| values::enumerate(v.clone()).iter().map(text).collect()).unwrap_or_default()
    }

    /// An integer.
    pub fn int(&self, name: &str) -> Option<i64> {
        self.values.get(name).and_then(values::integer)
    }

    /// An integer array.
    pub fn ints(&self, name: &str) -> Vec<i64> {
        self.values.get(name).map(|v| values::enumerate(v.clone()).iter().filter_map(values::integer).collect()).unwrap_or_default()
    }

    /// The items of an array parameter.
    pub fn items(&self, name: &str) -> Vec<Value> {
        self.values.get(name).map(|v| values::enumerate(v.clone())).unwrap_or_default()
    }
}

/// A binding error, as PowerShell's `ParameterBindingException` (its id is `<id>,<class>`).
pub fn binding_error(sig: &Signature, id: &str, message: String, position: Option<String>, category: Category) -> Failure {
    Failure::new(ErrorSpec {
        message,
        id: format!("{id},{}", sig.class),
        category,
        exception: "System.Management.Automation.ParameterBindingException",
        target: None,
        activity: sig.name.to_owned(),
        position,
    })
}

/// The parameter `name` (as typed, without `-`) names: exactly, or by an unambiguous prefix.
pub fn resolve<'s>(sig: &'s Signature, name: &str) -> Result<&'s Param, Vec<&'s Param>> {
    // PowerShell's MergedCommandParameterMetadata.GetMatchingParameter: an exact name or alias wins at once; else
    // every parameter a name or alias of which starts with what was typed, once each; of several, the one declared
    // by the cmdlet (not a common parameter) if it is the only such.
    let all = || sig.params.iter().chain(COMMON.iter());
    if let Some(p) = all().find(|p| p.name.eq_ignore_ascii_case(name) || p.aliases.iter().any(|a| a.eq_ignore_ascii_case(name))) {
        return Ok(p);
    }
    let lower = name.to_lowercase();
    let starts = |s: &str| s.to_lowercase().starts_with(&lower);
    let mut matches: Vec<&Param> = Vec::new();
    for p in all().filter(|p| starts(p.name)).chain(all().filter(|p| p.aliases.iter().any(|a| starts(a)))) {
        if !matches.iter().any(|m| m.name == p.name) {
            matches.push(p);
        }
    }
    match matches.len() {
        1 => Ok(matches[0]),
        _ => {
            let own: Vec<&Param> = matches.iter().copied().filter(|m| !COMMON.iter().any(|c| c.name == m.name)).collect();
            if own.len() == 1 && matches.len() > 1 { Ok(own[0]) } else { Err(matches) }
        }
    }
}

/// Converts a value for a parameter; `Err` is the conversion's message.
pub fn convert(kind: Kind, value: Value) -> Result<Value, String> {
    let cannot = |v: &Value, ty: &str, why: &str| {
        let shown = text(v);
        if why.is_empty() {
            format!("Cannot convert the \"{shown}\" value of type \"{}\" to type \"{ty}\".", values::type_name(v))
        } else {
            format!("Cannot convert value \"{shown}\" to type \"{ty}\". Error: \"{why}\"")
        }
    };
    match kind {
        Kind::Switch => Ok(Value::Bool(values::truthy(&value))),
        Kind::String => Ok(if value.is_nil() { Value::Nil } else { Value::string(text(&value)) }),
        Kind::Strings => Ok(values::collapse(values::enumerate(value).into_iter().map(|v| Value::string(text(&v))).collect::<Vec<_>>()).pipe_array()),
        Kind::Int => match values::integer(&value) {
            Some(n) if i32::try_from(n).is_ok() => Ok(values::int(n)),
            _ => Err(cannot(&value, "System.Int32", &format!("The input string '{}' was not in a correct format.", text(&value)))),
        },
        Kind::Ints => {
            let mut out = Vec::new();
            for v in values::enumerate(value) {
                match values::integer(&v) {
                    Some(n) if i32::try_from(n).is_ok() => out.push(values::int(n)),
                    _ => return Err(cannot(&v, "System.Int32", &format!("The input string '{}' was not in a correct format.", text(&v)))),
                }
            }
            Ok(values::array(out))
        }
        Kind::Object | Kind::Objects => Ok(value),
        Kind::Sessions | Kind::Session => {
            let items = values::enumerate(value);
            for v in &items {
                if !crate::session::is_session(v) {
                    return Err(cannot(v, "System.Management.Automation.Runspaces.PSSession", ""));
                }
            }
            if kind == Kind::Session && items.len() > 1 {
                return Err(format!(
                    "Cannot convert \"System.Object[]\" to \"System.Management.Automation.Runspaces.PSSession\"; give one session (there are {}).",
                    items.len()
                ));
            }
            Ok(if kind == Kind::Session { values::collapse(items) } else { values::array(items) })
        }
        Kind::ScriptBlock => match value {
            Value::ScriptBlock(_) => Ok(value),
            v => Err(cannot(&v, "System.Management.Automation.ScriptBlock", "")),
        },
        Kind::ScriptBlocks => {
            let items = values::enumerate(value);
            for v in &items {
                if !matches!(v, Value::ScriptBlock(_)) {
                    return Err(cannot(v, "System.Management.Automation.ScriptBlock", ""));
                }
            }
            Ok(values::array(items))
        }
        Kind::Credential => {
            if crate::secrets::is_credential(&value) || matches!(values::primitive(&value), Value::String(_)) {
                Ok(value)
            } else {
                Err(cannot(&value, "System.Management.Automation.PSCredential", ""))
            }
        }
        Kind::Enum(ty, names) => {
            let given = text(&value);
            match names.iter().find(|n| n.eq_ignore_ascii_case(given.trim())) {
                Some(n) => Ok(Value::string(*n)),
                None => Err(cannot(
                    &value,
                    ty,
                    &format!("Unable to match the identifier name {given} to a valid enumerator name. Specify one of the following enumerator names and try again:\n{}", names.join(", ")),
                )),
            }
        }
        Kind::Guids => {
            let mut out = Vec::new();
            for v in values::enumerate(value) {
                match v {
                    Value::Guid(_) => out.push(v),
                    other => match uuid::Uuid::parse_str(text(&other).trim()) {
                        Ok(g) => out.push(Value::Guid(g)),
                        Err(_) => return Err(cannot(&other, "System.Guid", "Guid should contain 32 digits with 4 dashes (xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx).")),
                    },
                }
            }
            Ok(values::array(out))
        }
    }
}

trait PipeArray {
    fn pipe_array(self) -> Value;
}

impl PipeArray for Value {
    /// A string array stays an array even with one item (`-ComputerName srv02` is `String[]`).
    fn pipe_array(self) -> Value {
        match self {
            Value::Nil => values::array(Vec::new()),
            v if values::as_list(&v).is_some() => v,
            v => values::array(vec![v]),
        }
    }
}

/// Whether a value fits a parameter's type without conversion (each item, for an array parameter).
fn fits(kind: Kind, v: &Value) -> bool {
    match kind {
        Kind::Strings | Kind::Ints | Kind::Sessions | Kind::Guids | Kind::ScriptBlocks => {
            let element = match kind {
                Kind::Strings => Kind::String,
                Kind::Ints => Kind::Int,
                Kind::Sessions => Kind::Session,
                Kind::ScriptBlocks => Kind::ScriptBlock,
                _ => Kind::Guids,
            };
            values::enumerate(v.clone()).iter().all(|i| takes_by_value(element, i))
        }
        Kind::Switch => matches!(v, Value::Bool(_)),
        _ => takes_by_value(kind, v),
    }
}

/// Whether a value is pipeline input this parameter takes by value without conversion.
fn takes_by_value(kind: Kind, v: &Value) -> bool {
    match kind {
        Kind::Sessions | Kind::Session => crate::session::is_session(v),
        Kind::Object | Kind::Objects => true,
        Kind::String | Kind::Strings => matches!(values::primitive(v), Value::String(_)),
        Kind::Int | Kind::Ints => values::is_number(v),
        Kind::Guids => matches!(v, Value::Guid(_)),
        Kind::ScriptBlock | Kind::ScriptBlocks => matches!(v, Value::ScriptBlock(_)),
        Kind::Credential => crate::secrets::is_credential(v),
        _ => false,
    }
}

/// Binds a command's arguments and pipeline input (`None`: first in its pipeline). `position` turns a span into
/// PowerShell's position message.
pub fn bind(sig: &'static Signature, args: Vec<Arg>, input: Option<&[Value]>, position: &dyn Fn(Span) -> String) -> Result<(Bound, Vec<&'static Param>), Failure> {
    let mut bound = Bound::default();
    let mut named: Vec<&'static Param> = Vec::new();
    let mut positional: Vec<(Value, String, Span)> = Vec::new();
    let mut args = args.into_iter().peekable();
    while let Some(arg) = args.next() {
        match arg {
            Arg::Value { value, shown, span } => positional.push((value, shown, span)),
            Arg::Named { name, value, span } => {
                let param: &'static Param = match resolve(sig, &name) {
                    Ok(p) => p,
                    Err(matches) if matches.is_empty() => {
                        return Err(binding_error(sig, "NamedParameterNotFound", format!("A parameter cannot be found that matches parameter name '{name}'."), Some(position(span)), Category::InvalidArgument));
                    }
                    Err(matches) => {
                        let list: String = matches.iter().map(|m| format!(" -{}", m.name)).collect();
                        return Err(binding_error(
                            sig,
                            "AmbiguousParameter",
                            format!("Parameter cannot be processed because the parameter name '{name}' is ambiguous. Possible matches include:{list}."),
                            Some(position(span)),
                            Category::InvalidArgument,
                        ));
                    }
                };
                if bound.values.contains_key(param.name) {
                    return Err(binding_error(
                        sig,
                        "ParameterAlreadyBound",
                        format!(
                            "Cannot bind parameter because parameter '{}' is specified more than once. To provide multiple values to parameters that can accept multiple values, use the array syntax. For example, \"-parameter value1,value2,value3\".",
                            param.name
                        ),
                        Some(position(span)),
                        Category::InvalidArgument,
                    ));
                }
                let value = match (param.kind, value) {
                    (_, Some(v)) => v,
                    (Kind::Switch, None) => Value::Bool(true),
                    (kind, None) => match args.peek() {
                        Some(Arg::Value { .. }) => match args.next() {
                            Some(Arg::Value { value, .. }) => value,
                            _ => Value::Nil,
                        },
                        _ => {
                            return Err(binding_error(
                                sig,
                                "MissingArgument",
                                format!("Missing an argument for parameter '{}'. Specify a parameter of type '{}' and try again.", param.name, kind.type_name()),
                                Some(position(span)),
                                Category::InvalidArgument,
                            ));
                        }
                    },
                };
                let value = convert(param.kind, value).map_err(|why| {
                    binding_error(sig, "CannotConvertArgumentNoMessage", format!("Cannot bind parameter '{}'. {why}", param.name), Some(position(span)), Category::InvalidArgument)
                })?;
                bound.values.insert(param.name, value);
                named.push(param);
            }
        }
    }
    // The sets every named parameter is in.
    let mut sets: Vec<&'static str> = sig.sets.to_vec();
    if sets.is_empty() {
        sets.push("");
    }
    for param in &named {
        sets.retain(|s| in_set(sig, param.name, s));
    }
    if sets.is_empty() {
        return Err(binding_error(
            sig,
            "AmbiguousParameterSet",
            "Parameter set cannot be resolved using the specified named parameters. One or more parameters issued cannot be used together or an insufficient number of parameters were provided.".into(),
            None,
            Category::InvalidArgument,
        ));
    }
    // Positional arguments, in order, to the lowest free position of the sets still possible (the default set
    // first when it is one of them); an argument that does not convert to one tries the next, as PowerShell's
    // binder does. What is left goes to a `ValueFromRemainingArguments` parameter.
    let mut remaining: Vec<(Value, Span)> = Vec::new();
    for (value, shown, span) in positional {
        let mut candidates: Vec<&'static Param> = sig
            .params
            .iter()
            .filter(|p| p.position.is_some() && !bound.values.contains_key(p.name) && sets.iter().any(|s| p.in_set(s)))
            .collect();
        candidates.sort_by_key(|p| (p.position, !p.in_set(sets[0])));
        // As PowerShell's binder: a parameter the value fits without conversion first, then with conversion.
        let exact: Vec<&'static Param> = candidates.iter().copied().filter(|p| fits(p.kind, &value)).collect();
        let candidates: Vec<&'static Param> = exact.iter().copied().chain(candidates.iter().copied().filter(|p| !fits(p.kind, &value))).collect();
        let mut error = None;
        let mut taken = None;
        for param in candidates {
            match convert(param.kind, value.clone()) {
                Ok(v) => {
                    taken = Some((param, v));
                    break;
                }
                Err(why) if error.is_none() => error = Some((param, why)),
                Err(_) => {}
            }
        }
        match (taken, error) {
            (Some((param, v)), _) => {
                bound.values.insert(param.name, v);
                sets.retain(|s| in_set(sig, param.name, s));
                named.push(param);
            }
            (None, Some((param, why))) => {
                return Err(binding_error(sig, "CannotConvertArgumentNoMessage", format!("Cannot bind parameter '{}'. {why}", param.name), Some(position(span)), Category::InvalidArgument));
            }
            (None, None) if sig.params.iter().any(|p| p.remaining && sets.iter().any(|s| p.in_set(s))) => remaining.push((value, span)),
            (None, None) => {
                return Err(binding_error(
                    sig,
                    "PositionalParameterNotFound",
                    format!("A positional parameter cannot be found that accepts argument '{shown}'."),
                    Some(position(span)),
                    Category::InvalidArgument,
                ));
            }
        }
    }
    if !remaining.is_empty()
        && let Some(param) = sig.params.iter().find(|p| p.remaining && sets.iter().any(|s| p.in_set(s)))
    {
        let mut items = bound.values.remove(param.name).map(values::enumerate).unwrap_or_default();
        items.extend(remaining.into_iter().map(|(v, _)| v));
        bound.values.insert(param.name, values::array(items));
    }
    // Pipeline input: by value without conversion, then by property name, then by value with conversion.
    if let Some(items) = input.filter(|i| !i.is_empty()) {
        let free = |pipe: &[Pipe], bound: &Bound, sets: &[&str]| -> Vec<&'static Param> {
            sig.params.iter().filter(|p| pipe.contains(&p.pipe) && !bound.values.contains_key(p.name) && sets.iter().any(|s| p.in_set(s))).collect()
        };
        let by_value = free(&[Pipe::ByValue, Pipe::Both], &bound, &sets);
        let mut taken = false;
        if let Some(param) = by_value.iter().find(|p| items.iter().all(|v| takes_by_value(p.kind, v))) {
            bind_input(&mut bound, param, items.to_vec(), sig)?;
            sets.retain(|s| param.in_set(s));
            taken = true;
        }
        if !taken {
            for param in free(&[Pipe::ByPropertyName, Pipe::Both], &bound, &sets) {
                let found: Option<Vec<Value>> =
                    items.iter().map(|v| std::iter::once(param.name).chain(param.aliases.iter().copied()).find_map(|n| values::property(v, n).filter(|x| !x.is_nil()))).collect();
                if let Some(found) = found
                    && sets.iter().any(|s| param.in_set(s))
                {
                    bind_input(&mut bound, param, found, sig)?;
                    sets.retain(|s| param.in_set(s));
                    taken = true;
                }
            }
        }
        if !taken && let Some(param) = by_value.first() {
            bind_input(&mut bound, param, items.to_vec(), sig)?;
            sets.retain(|s| param.in_set(s));
            taken = true;
        }
        if !taken {
            return Err(Failure::new(ErrorSpec {
                message: "The input object cannot be bound to any parameters for the command either because the command does not take pipeline input or the input and its properties do not match any of the parameters that take pipeline input.".into(),
                id: format!("InputObjectNotBound,{}", sig.class),
                category: Category::InvalidArgument,
                exception: "System.Management.Automation.ParameterBindingException",
                target: None,
                activity: sig.name.to_owned(),
                position: None,
            }));
        }
    }
    // The default set when it is still possible, else the first one left.
    let defaults = sig.sets.first().copied().unwrap_or("");
    bound.set = if sets.contains(&defaults) { defaults } else { sets[0] };
    let missing: Vec<&'static Param> = sig.params.iter().filter(|p| p.mandatory_in(bound.set) && !bound.values.contains_key(p.name)).collect();
    Ok((bound, missing))
}

/// Whether the parameter called `name` (declared once, or once per set) is in `set`.
fn in_set(sig: &Signature, name: &str, set: &str) -> bool {
    sig.params.iter().chain(COMMON.iter()).any(|p| p.name == name && p.in_set(set))
}

fn bind_input(bound: &mut Bound, param: &'static Param, items: Vec<Value>, sig: &Signature) -> Result<(), Failure> {
    let value = match param.kind {
        Kind::Object | Kind::Session | Kind::String | Kind::Int | Kind::ScriptBlock | Kind::Credential | Kind::Enum(..) if items.len() == 1 => {
            items.into_iter().next().unwrap_or(Value::Nil)
        }
        _ => values::array(items),
    };
    let value = convert(param.kind, value).map_err(|why| {
        binding_error(sig, "InputObjectNotBound", format!("The input object cannot be bound to parameter '{}'. {why}", param.name), None, Category::InvalidArgument)
    })?;
    bound.values.insert(param.name, value);
    Ok(())
}
