//! JEA-safe remote pipelines. A line typed at a remote prompt, or an Invoke-Command script block, goes to the
//! target as PowerShell's own client sends it where it can: a simple pipeline (commands whose arguments are
//! constants, no nested commands, no script blocks, no variables but `$true`/`$false`/`$null` and, in a script
//! block, `$using:` ones) becomes Command objects (`IsScript = false`) with their parameters, as
//! `ScriptBlock.GetPowerShell` makes them, so it runs on a NoLanguage (JEA, RestrictedRemoteServer) endpoint as on a
//! full one. Anything else goes as script text.
//!
//! Parameters keep the shape PowerShell's converter (`ScriptBlockToPowerShellConverter`) gives them: `-Name:value`
//! is the parameter `-Name:` with its value; `-Name value` is the parameter `-Name` without a value followed by an
//! argument, which the server's binder pairs up as it does for a typed line, so a switch (`-Force C:\x`) is never
//! given the next argument by mistake. (A name with its dash is "as typed"; without one it would bind `$null`.)

use psgate_shared::clixml::Value;
use psgate_shared::psrp::messages::{Command, PipelineSpec};

use crate::ast::{CommandArg, Element, Expr, ExprKind, Statement, StringPart};
use crate::values;

/// The pipeline for a line typed at a remote prompt (added to the remote history, as Enter-PSSession does).
pub fn pipeline_for(line: &str) -> PipelineSpec {
    let mut spec = match commands_of(line, &|_| None) {
        Some(commands) => PipelineSpec { commands, no_input: true, add_to_history: true, is_nested: false },
        None => PipelineSpec { commands: vec![Command::script(line)], no_input: true, add_to_history: true, is_nested: false },
    };
    spec.add_to_history = true;
    spec
}

/// The pipeline for Invoke-Command's script block with its `-ArgumentList`: Command objects when the block is a
/// simple pipeline and takes no arguments, else the block's text as a script with the arguments.
pub fn block_pipeline(block: &str, args: &[Value]) -> PipelineSpec {
    if args.is_empty()
        && let Some(commands) = commands_of(block, &|_| None)
    {
        return PipelineSpec { commands, no_input: true, add_to_history: false, is_nested: false };
    }
    let mut command = Command::script(block);
    for a in args {
        command = command.arg(a.clone());
    }
    PipelineSpec { commands: vec![command], no_input: true, add_to_history: false, is_nested: false }
}

/// Whether a line would go as Command objects (for tests and the console's own display).
pub fn is_command_pipeline(line: &str) -> bool {
    commands_of(line, &|_| None).is_some()
}

/// The commands of a one-pipeline line of commands with constant arguments; `None` when it is anything else.
fn commands_of(text: &str, using: &dyn Fn(&str) -> Option<Value>) -> Option<Vec<Command>> {
    let script = crate::parser::parse(text).ok()?;
    let [Statement::Pipeline(pipeline)] = script.statements.as_slice() else { return None };
    let mut commands = Vec::new();
    for element in &pipeline.elements {
        let Element::Command(call) = element else { return None };
        if call.name.contains(['$', '(', '{']) {
            return None;
        }
        let mut command = Command::named(call.name.as_str());
        for arg in &call.args {
            match arg {
                CommandArg::Parameter { name, value: Some(v), .. } => command = command.param(format!("-{name}:"), constant(v, using)?),
                CommandArg::Parameter { name, value: None, .. } => command.parameters.push((Some(format!("-{name}")), Value::Nil)),
                CommandArg::Argument(v) => command = command.arg(constant(v, using)?),
            }
        }
        commands.push(command);
    }
    Some(commands)
}

/// A constant argument's value (`None`: not a constant).
fn constant(e: &Expr, using: &dyn Fn(&str) -> Option<Value>) -> Option<Value> {
    Some(match &e.kind {
        ExprKind::Int(n) => values::int(*n),
        ExprKind::Double(f) => Value::Double(*f),
        ExprKind::String(s) | ExprKind::BareWord(s) => Value::string(s.as_str()),
        ExprKind::Expandable(parts) => {
            let mut s = String::new();
            for p in parts {
                match p {
                    StringPart::Text(t) => s.push_str(t),
                    _ => return None,
                }
            }
            Value::string(s)
        }
        ExprKind::Variable(name) => match name.to_ascii_lowercase().as_str() {
            "true" => Value::Bool(true),
            "false" => Value::Bool(false),
            "null" => Value::Nil,
            n => using(n.strip_prefix("using:")?)?,
        },
        ExprKind::Array(items) => values::array(items.iter().map(|i| constant(i, using)).collect::<Option<Vec<_>>>()?),
        _ => return None,
    })
}
