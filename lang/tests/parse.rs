//! The parser, case by case: what each line parses to (shown compactly), and every malformed line's error id and
//! place, as PowerShell reports them.

use psgate_lang::ast::{CommandArg, Element, Expr, ExprKind, Pipeline, Statement, StringPart};
use psgate_lang::{parse, position_message};

/// A compact, readable form of a parse.
fn show(line: &str) -> String {
    match parse(line) {
        Ok(s) => s.statements.iter().map(statement).collect::<Vec<_>>().join("; "),
        Err(e) => format!("error {} at {}", e.id, e.span.start),
    }
}

fn statement(s: &Statement) -> String {
    match s {
        Statement::Pipeline(p) => pipeline(p),
        Statement::Assign { targets, value, .. } => {
            format!("{} = {}", targets.iter().map(|t| format!("${}", t.name)).collect::<Vec<_>>().join(", "), pipeline(value))
        }
        Statement::Exit { .. } => "exit".into(),
    }
}

fn pipeline(p: &Pipeline) -> String {
    p.elements
        .iter()
        .map(|e| match e {
            Element::Expression(x) => expr(x),
            Element::Command(c) => {
                let mut s = format!("cmd({}", c.name);
                for a in &c.args {
                    match a {
                        CommandArg::Parameter { name, value: Some(v), .. } => s.push_str(&format!(" -{name}:{}", expr(v))),
                        CommandArg::Parameter { name, value: None, .. } => s.push_str(&format!(" -{name}")),
                        CommandArg::Argument(v) => s.push_str(&format!(" {}", expr(v))),
                    }
                }
                s + ")"
            }
        })
        .collect::<Vec<_>>()
        .join(" | ")
}

fn expr(e: &Expr) -> String {
    match &e.kind {
        ExprKind::Int(n) => n.to_string(),
        ExprKind::Double(f) => format!("{f:?}"),
        ExprKind::String(s) => format!("'{s}'"),
        ExprKind::BareWord(s) => s.clone(),
        ExprKind::Expandable(parts) => format!(
            "\"{}\"",
            parts
                .iter()
                .map(|p| match p {
                    StringPart::Text(t) => t.clone(),
                    StringPart::Variable(v) => format!("${{{v}}}"),
                    StringPart::SubExpression(s) => format!("$({})", s.statements.iter().map(statement).collect::<Vec<_>>().join("; ")),
                })
                .collect::<String>()
        ),
        ExprKind::Variable(v) => format!("${v}"),
        ExprKind::Array(items) => format!("[{}]", items.iter().map(expr).collect::<Vec<_>>().join(", ")),
        ExprKind::Paren(p) => format!("({})", pipeline(p)),
        ExprKind::SubExpression(s) => format!("$({})", s.statements.iter().map(statement).collect::<Vec<_>>().join("; ")),
        ExprKind::ArrayExpression(s) => format!("@({})", s.statements.iter().map(statement).collect::<Vec<_>>().join("; ")),
        ExprKind::Hashtable(entries) => format!("@{{{}}}", entries.iter().map(|(k, v)| format!("{}={}", expr(k), pipeline(v))).collect::<Vec<_>>().join("; ")),
        ExprKind::ScriptBlock(b) => format!("{{{}}}{}", b.text, if b.body.is_ok() { "" } else { "(unread)" }),
        ExprKind::Member(t, m) => format!("{}.{m}", expr(t)),
        ExprKind::Index(t, i) => format!("{}[{}]", expr(t), expr(i)),
        ExprKind::Method(t, m, args) => format!("{}.{m}({})", expr(t), args.iter().map(expr).collect::<Vec<_>>().join(", ")),
        ExprKind::Unary(op, x) => format!("{op:?}({})", expr(x)),
        ExprKind::Binary(op, l, r) => format!("{op:?}({}, {})", expr(l), expr(r)),
    }
}

#[test]
fn the_issue_lines_parse_as_powershell_reads_them() {
    for (line, expect) in [
        ("New-PSSession -HostName PC1 -UserName Andres", "cmd(New-PSSession -HostName PC1 -UserName Andres)"),
        ("$iis_server = New-PSSession -HostName pc1, pc2, pc3 -UserName Admin", "$iis_server = cmd(New-PSSession -HostName [pc1, pc2, pc3] -UserName Admin)"),
        ("$session1, $session2 = New-PSSession -ComputerName srv02, dc01", "$session1, $session2 = cmd(New-PSSession -ComputerName [srv02, dc01])"),
        ("Get-PSSession", "cmd(Get-PSSession)"),
        ("$session1 | gm", "$session1 | cmd(gm)"),
        ("Enter-PSSession -Session $session1", "cmd(Enter-PSSession -Session $session1)"),
        (
            "Enter-PSSession -Session ($sessions | where {$_.ComputerName -eq 'SRV02'})",
            "cmd(Enter-PSSession -Session ($sessions | cmd(where {$_.ComputerName -eq 'SRV02'})))",
        ),
        ("Enter-PSSession -Session (Get-PSSession -ComputerName 'SRV02')", "cmd(Enter-PSSession -Session (cmd(Get-PSSession -ComputerName 'SRV02')))"),
        ("Get-PSSession -ComputerName SRV02 | Enter-PSSession", "cmd(Get-PSSession -ComputerName SRV02) | cmd(Enter-PSSession)"),
        ("exit", "exit"),
        ("Invoke-Command -Command {Get-Process} -Session $session1", "cmd(Invoke-Command -Command {Get-Process} -Session $session1)"),
        (
            "Invoke-Command -Command {Get-Process bits} -Session (Get-PSSession -ComputerName server1, server2, server3)",
            "cmd(Invoke-Command -Command {Get-Process bits} -Session (cmd(Get-PSSession -ComputerName [server1, server2, server3])))",
        ),
        ("Disconnect-PSSession -Id 3", "cmd(Disconnect-PSSession -Id 3)"),
        ("Get-PSSession -ComputerName Computer2 | Connect-PSSession", "cmd(Get-PSSession -ComputerName Computer2) | cmd(Connect-PSSession)"),
        ("Remove-PSSession $session1", "cmd(Remove-PSSession $session1)"),
        ("Get-PSSession | Remove-PSSession", "cmd(Get-PSSession) | cmd(Remove-PSSession)"),
    ] {
        assert_eq!(show(line), expect, "{line}");
    }
}

#[test]
fn expressions_and_command_arguments() {
    for (line, expect) in [
        // Command mode: bare words, numbers, `-Name:value`, switches, arrays, members.
        ("Get-PSSession -Id:3 -Name:x", "cmd(Get-PSSession -Id:3 -Name:x)"),
        ("Invoke-Command -ThrottleLimit:5 -HideComputerName:$false", "cmd(Invoke-Command -ThrottleLimit:5 -HideComputerName:$false)"),
        ("Get-X 7zip 1kb 0x10 -1 1.5", "cmd(Get-X 7zip 1024 16 -1 1.5)"),
        ("Get-X $s.Name $s[0] $a.b.c", "cmd(Get-X $s.Name $s[0] $a.b.c)"),
        ("Get-X srv01.contoso.com C:\\Windows\\Temp", "cmd(Get-X srv01.contoso.com C:\\Windows\\Temp)"),
        ("Get-X –ComputerName srv02", "cmd(Get-X -ComputerName srv02)"),
        ("Get-X ‘smart’ “quotes”", "cmd(Get-X 'smart' \"quotes\")"),
        // Expression mode: precedence as PowerShell's (comma tighter than unary, comparison, -and/-or).
        ("1 + 2 * 3", "Add(1, Multiply(2, 3))"),
        ("1, 2 + 3", "Add([1, 2], 3)"),
        ("-not $a -eq $b", "Compare(Eq, false)(Not($a), $b)"),
        ("$a -eq 1 -and $b -ceq 'X' -or $c", "Or(And(Compare(Eq, false)($a, 1), Compare(Eq, true)($b, 'X')), $c)"),
        ("$x -notlike 'a*' -and $y -in 1, 2", "And(Compare(NotLike, false)($x, 'a*'), Compare(In, false)($y, [1, 2]))"),
        ("1..3", "Range(1, 3)"),
        ("'{0:N2}' -f 1234.5", "Format('{0:N2}', 1234.5)"),
        ("\"a $x b $($y.Name) c `$d `n\"", "\"a ${x} b $($y.Name) c $d \n\""),
        ("\"$env:USERNAME ${weird name}\"", "\"${env:USERNAME} ${weird name}\""),
        ("'it''s'", "'it's'"),
        ("@(Get-PSSession).Count", "@(cmd(Get-PSSession)).Count"),
        ("$s.ToString().ToUpper()", "$s.ToString().ToUpper()"),
        ("@{Name='Id'; Expression={$_.Id * 2}}", "@{Name='Id'; Expression={$_.Id * 2}}"),
        ("$global:x = 1; $script:y", "$x = 1; $y"),
        // Statements: separators, line continuation, comments.
        ("a; b\nc", "cmd(a); cmd(b); cmd(c)"),
        ("Get-PSSession |\n  Remove-PSSession", "cmd(Get-PSSession) | cmd(Remove-PSSession)"),
        ("Get-X `\n -Name y # comment", "cmd(Get-X -Name y)"),
        ("<# block #> Get-X", "cmd(Get-X)"),
        // Script blocks keep their text exactly, even when psgate cannot read them.
        ("icm { if ($x) { 'a}' } else { \"b{\" } }", "cmd(icm { if ($x) { 'a}' } else { \"b{\" } }(unread))"),
        ("icm { param($n) Get-Process -Name $n } -Args 'bits'", "cmd(icm { param($n) Get-Process -Name $n }(unread) -Args 'bits')"),
        ("icm { # } comment\n Get-X }", "cmd(icm { # } comment\n Get-X })"),
        ("? { $_.Name -like \"$($p)*\" }", "cmd(? { $_.Name -like \"$($p)*\" })"),
        ("% Name", "cmd(% Name)"),
    ] {
        assert_eq!(show(line), expect, "{line}");
    }
}

#[test]
fn malformed_lines_are_errors_with_powershells_ids_and_places() {
    for (line, id, at) in [
        ("Get-PSSession -Id (", "MissingEndParenthesisInExpression", 19),
        ("\"unterminated", "TerminatorExpectedAtEndOfString", 0),
        ("'unterminated", "TerminatorExpectedAtEndOfString", 0),
        ("icm { a", "MissingEndCurlyBrace", 4),
        ("$a = ", "ExpectedValueExpression", 3),
        ("| gm", "EmptyPipeElement", 0),
        ("Get-X |", "EmptyPipeElement", 6),
        ("Get-X | | b", "EmptyPipeElement", 6),
        ("@(", "MissingEndParenthesisInExpression", 2),
        ("$($", "InvalidVariableReference", 2),
        ("1 +* 2", "UnexpectedToken", 3),
        ("1 -foo 2", "UnexpectedToken", 2),
        ("$a -eq", "ExpectedValueExpression", 3),
        ("Get-X | 1", "ExpressionsMustBeFirstInPipeline", 8),
        ("1 = 2", "InvalidLeftHandSide", 0),
        ("$a,", "MissingExpressionAfterToken", 2),
        ("Get-X -Name:", "ParameterRequiresArgument", 11),
        ("$a[]", "MissingArrayIndexExpression", 2),
        ("$a.", "MissingPropertyName", 2),
        ("if ($x) { a }", "NotSupported", 0),
        ("foreach ($s in $x) { a }", "NotSupported", 0),
        ("Get-X > file.txt", "NotSupported", 6),
        ("Get-X && Get-Y", "NotSupported", 6),
        ("[int]'3'", "NotSupported", 0),
        ("Get-X @params", "NotSupported", 6),
        (")", "UnexpectedToken", 0),
    ] {
        let e = parse(line).expect_err(line);
        assert_eq!((e.id, e.span.start), (id, at), "{line}: {e:?}");
        assert!(!e.message.is_empty());
    }
}

#[test]
fn a_parse_error_points_at_its_place_like_powershell() {
    let line = "Get-PSSession -Id (";
    let e = parse(line).expect_err("unclosed");
    assert_eq!(e.message, "Missing closing ')' in expression.");
    assert_eq!(position_message(line, e.span), "At line:1 char:20\n+ Get-PSSession -Id (\n+                    ~");
    let two = "Get-X\n$a = ";
    let e = parse(two).expect_err("no value");
    assert_eq!(position_message(two, e.span), "At line:2 char:4\n+ $a = \n+    ~");
}

#[test]
fn deep_nesting_is_an_error_not_a_crash() {
    for line in ["(".repeat(10_000), "{".repeat(10_000), "$(".repeat(10_000), "@(".repeat(5_000), format!("{}1{}", "(".repeat(100), ")".repeat(100)), "-".repeat(10_000) + "1"] {
        let _ = parse(&line);
    }
    let e = parse(&format!("{}1{}", "(".repeat(100), ")".repeat(100))).expect_err("too deep");
    assert_eq!(e.id, "ScriptTooComplex");
}

#[test]
fn empty_lines_and_comments_are_no_statements() {
    for line in ["", "   ", "\n\n", "# just a comment", "<# block #>", ";;;"] {
        assert_eq!(parse(line).map(|s| s.statements.len()), Ok(0), "{line:?}");
    }
}
