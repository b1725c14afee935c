//! The syntax tree of a line at psgate's prompt. Every node keeps its [`Span`] in the line, so errors point at the
//! place (`At line:1 char:20`) and a script block's text goes to the remote side exactly as typed.

/// A byte range of the line.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Span {
    /// First byte.
    pub start: u32,
    /// One past the last byte.
    pub end: u32,
}

impl Span {
    /// `start..end`.
    pub fn new(start: usize, end: usize) -> Span {
        Span { start: start as u32, end: end as u32 }
    }

    /// From the start of `self` to the end of `other`.
    pub fn to(self, other: Span) -> Span {
        Span { start: self.start.min(other.start), end: self.end.max(other.end) }
    }

    /// The text it covers (empty when it does not fit `text`).
    pub fn text(self, text: &str) -> &str {
        text.get(self.start as usize..self.end as usize).unwrap_or_default()
    }
}

/// A line, or the body of `$( … )`, `@( … )` or a script block: statements in order.
#[derive(Clone, Debug, PartialEq)]
pub struct Script {
    /// The statements.
    pub statements: Vec<Statement>,
    /// Where it is.
    pub span: Span,
}

/// One statement.
#[derive(Clone, Debug, PartialEq)]
pub enum Statement {
    /// A pipeline whose output goes to the console (or to the enclosing expression).
    Pipeline(Pipeline),
    /// `$a = …` or `$a, $b = …` (each target takes one output, the last one takes the rest).
    Assign {
        /// The variables, in order.
        targets: Vec<Target>,
        /// The value.
        value: Pipeline,
        /// The whole statement.
        span: Span,
    },
    /// `exit` (Exit-PSSession inside an entered session; nothing at the local prompt).
    Exit {
        /// The whole statement.
        span: Span,
    },
}

impl Statement {
    /// Where it is.
    pub fn span(&self) -> Span {
        match self {
            Statement::Pipeline(p) => p.span,
            Statement::Assign { span, .. } | Statement::Exit { span } => *span,
        }
    }
}

/// An assignment's variable.
#[derive(Clone, Debug, PartialEq)]
pub struct Target {
    /// The variable's name, without `$` and scope.
    pub name: String,
    /// Where it is.
    pub span: Span,
}

/// `a | b | c`.
#[derive(Clone, Debug, PartialEq)]
pub struct Pipeline {
    /// The elements: the first may be an expression, the others are commands.
    pub elements: Vec<Element>,
    /// Where it is.
    pub span: Span,
}

/// A pipeline element.
#[derive(Clone, Debug, PartialEq)]
pub enum Element {
    /// An expression (only first in a pipeline).
    Expression(Expr),
    /// A command with its arguments.
    Command(CommandCall),
}

impl Element {
    /// Where it is.
    pub fn span(&self) -> Span {
        match self {
            Element::Expression(e) => e.span,
            Element::Command(c) => c.span,
        }
    }
}

/// `Get-PSSession -ComputerName srv02 -Id:3 'x'`.
#[derive(Clone, Debug, PartialEq)]
pub struct CommandCall {
    /// The name as typed.
    pub name: String,
    /// Where the name is.
    pub name_span: Span,
    /// Parameters and arguments in order.
    pub args: Vec<CommandArg>,
    /// The whole command.
    pub span: Span,
}

/// One element after a command's name.
#[derive(Clone, Debug, PartialEq)]
pub enum CommandArg {
    /// `-Name`, `-Name:value` (the value is bound to it whatever it is).
    Parameter {
        /// The name after `-`, as typed.
        name: String,
        /// `-Name:value`'s value.
        value: Option<Expr>,
        /// Where `-Name` (and its value) is.
        span: Span,
    },
    /// A value: positional, or the value of the parameter before it.
    Argument(Expr),
}

/// A unary operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UnaryOp {
    /// `-not`, `!`
    Not,
    /// `-`
    Negate,
    /// `+`
    Plus,
}

/// A binary operator. Comparisons carry their case: `-eq`/`-ieq` ignore it, `-ceq` does not.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BinaryOp {
    /// `-and`
    And,
    /// `-or`
    Or,
    /// `-xor`
    Xor,
    /// A comparison.
    Compare(CompareOp, bool),
    /// `+`
    Add,
    /// `-`
    Subtract,
    /// `*`
    Multiply,
    /// `/`
    Divide,
    /// `%`
    Remainder,
    /// `..`
    Range,
    /// `-f`
    Format,
}

/// The comparison operators.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CompareOp {
    /// `-eq`
    Eq,
    /// `-ne`
    Ne,
    /// `-gt`
    Gt,
    /// `-ge`
    Ge,
    /// `-lt`
    Lt,
    /// `-le`
    Le,
    /// `-like`
    Like,
    /// `-notlike`
    NotLike,
    /// `-match`
    Match,
    /// `-notmatch`
    NotMatch,
    /// `-in`
    In,
    /// `-notin`
    NotIn,
    /// `-contains`
    Contains,
    /// `-notcontains`
    NotContains,
}

impl CompareOp {
    /// The operator's name without `-`, case prefix or `c`/`i`.
    pub fn name(self) -> &'static str {
        match self {
            CompareOp::Eq => "eq",
            CompareOp::Ne => "ne",
            CompareOp::Gt => "gt",
            CompareOp::Ge => "ge",
            CompareOp::Lt => "lt",
            CompareOp::Le => "le",
            CompareOp::Like => "like",
            CompareOp::NotLike => "notlike",
            CompareOp::Match => "match",
            CompareOp::NotMatch => "notmatch",
            CompareOp::In => "in",
            CompareOp::NotIn => "notin",
            CompareOp::Contains => "contains",
            CompareOp::NotContains => "notcontains",
        }
    }

    /// Every comparison operator.
    pub const ALL: [CompareOp; 14] = [
        CompareOp::Eq,
        CompareOp::Ne,
        CompareOp::Gt,
        CompareOp::Ge,
        CompareOp::Lt,
        CompareOp::Le,
        CompareOp::Like,
        CompareOp::NotLike,
        CompareOp::Match,
        CompareOp::NotMatch,
        CompareOp::In,
        CompareOp::NotIn,
        CompareOp::Contains,
        CompareOp::NotContains,
    ];
}

/// An expression and where it is.
#[derive(Clone, Debug, PartialEq)]
pub struct Expr {
    /// What it is.
    pub kind: ExprKind,
    /// Where it is.
    pub span: Span,
}

/// A part of a double-quoted string.
#[derive(Clone, Debug, PartialEq)]
pub enum StringPart {
    /// Text, escapes resolved.
    Text(String),
    /// `$name`
    Variable(String),
    /// `$( … )`
    SubExpression(Script),
}

/// What an expression is.
#[derive(Clone, Debug, PartialEq)]
pub enum ExprKind {
    /// A number: `3`, `0x10`, `1kb`.
    Int(i64),
    /// A number with a fraction or exponent.
    Double(f64),
    /// A single-quoted string, or a bare word in command mode (`srv02`).
    String(String),
    /// A bare word in command mode: a string, kept apart so that `-Name:srv02` and `srv02` read alike.
    BareWord(String),
    /// A double-quoted string.
    Expandable(Vec<StringPart>),
    /// `$name` (scope prefixes removed; `$true`, `$false`, `$null` included).
    Variable(String),
    /// `a, b, c`
    Array(Vec<Expr>),
    /// `( pipeline )`
    Paren(Box<Pipeline>),
    /// `$( … )`
    SubExpression(Script),
    /// `@( … )`
    ArrayExpression(Script),
    /// `@{ key = value; … }`
    Hashtable(Vec<(Expr, Pipeline)>),
    /// `{ … }`
    ScriptBlock(ScriptBlock),
    /// `x.Name`
    Member(Box<Expr>, String),
    /// `x[i]`
    Index(Box<Expr>, Box<Expr>),
    /// `x.Method(a, b)`
    Method(Box<Expr>, String, Vec<Expr>),
    /// `-not x`
    Unary(UnaryOp, Box<Expr>),
    /// `x -eq y`
    Binary(BinaryOp, Box<Expr>, Box<Expr>),
}

/// `{ … }`: its text, kept as typed for the remote side, and its statements where psgate's prompt can read them
/// (evaluated locally by Where-Object and ForEach-Object).
#[derive(Clone, Debug, PartialEq)]
pub struct ScriptBlock {
    /// The text between the braces.
    pub text: String,
    /// The statements, or why psgate cannot read them (a remote side may: the text is sent as it is).
    pub body: Result<Script, crate::ParseError>,
}
