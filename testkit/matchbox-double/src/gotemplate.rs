//! A subset of Go's `text/template`, enough for matchbox's generic templates, with
//! `Option("missingkey=error")` semantics.
//!
//! Supported: text, `{{- ` / ` -}}` trim markers, comments `{{/* */}}`, `.`, field
//! chains `.a.b`, variables `$`, `$x`, `$x.a`, `$x := pipeline`, `$x = pipeline`,
//! string (interpreted and raw), number, bool and nil literals, pipelines with `|`,
//! parenthesised pipelines, `if`/`else if`/`else`/`end`, `range` (with `$i, $v :=`
//! and `else`), `with`/`else`, and the functions `and or not len index print printf
//! println eq ne lt le gt ge`.
//! Anything else (`define`, `template`, `block`, `break`, `html`, `js`, `urlquery`,
//! `slice`, `call`, unknown functions) is a parse error, as unknown functions are in
//! Go; matchbox answers 404 on any parse or execution error.

use serde_json::Value as Json;
use std::collections::BTreeMap;

#[derive(Clone, Debug, PartialEq)]
pub enum V {
    Nil,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    List(Vec<V>),
    Map(BTreeMap<String, V>),
}

impl V {
    pub fn from_json(j: &Json) -> V {
        match j {
            Json::Null => V::Nil,
            Json::Bool(b) => V::Bool(*b),
            // encoding/json decodes every number into float64
            Json::Number(n) => V::Float(n.as_f64().unwrap_or(0.0)),
            Json::String(s) => V::Str(s.clone()),
            Json::Array(a) => V::List(a.iter().map(V::from_json).collect()),
            Json::Object(o) => V::Map(o.iter().map(|(k, v)| (k.clone(), V::from_json(v))).collect()),
        }
    }

    fn truth(&self) -> bool {
        match self {
            V::Nil => false,
            V::Bool(b) => *b,
            V::Int(i) => *i != 0,
            V::Float(f) => *f != 0.0,
            V::Str(s) => !s.is_empty(),
            V::List(l) => !l.is_empty(),
            V::Map(m) => !m.is_empty(),
        }
    }

    fn type_name(&self) -> &'static str {
        match self {
            V::Nil => "<nil>",
            V::Bool(_) => "bool",
            V::Int(_) => "int",
            V::Float(_) => "float64",
            V::Str(_) => "string",
            V::List(_) => "[]interface {}",
            V::Map(_) => "map[string]interface {}",
        }
    }
}

/// fmt.Sprint of a value, as text/template prints it.
pub fn go_print(v: &V) -> String {
    match v {
        V::Nil => "<no value>".into(),
        V::Bool(b) => b.to_string(),
        V::Int(i) => i.to_string(),
        V::Float(f) => go_float(*f),
        V::Str(s) => s.clone(),
        V::List(l) => format!("[{}]", l.iter().map(go_print_inner).collect::<Vec<_>>().join(" ")),
        V::Map(m) => format!(
            "map[{}]",
            m.iter()
                .map(|(k, v)| format!("{k}:{}", go_print_inner(v)))
                .collect::<Vec<_>>()
                .join(" ")
        ),
    }
}

fn go_print_inner(v: &V) -> String {
    match v {
        V::Nil => "<nil>".into(),
        v => go_print(v),
    }
}

/// Go's %v for float64 (%g, shortest): %e form when exp < -4 || exp >= 6.
pub fn go_float(f: f64) -> String {
    if f.is_nan() {
        return "NaN".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { "+Inf".into() } else { "-Inf".into() };
    }
    if f == 0.0 {
        return if f.is_sign_negative() { "-0".into() } else { "0".into() };
    }
    let e = format!("{:e}", f); // e.g. "-1.2345e6"
    let (mant, exp) = e.split_once('e').unwrap();
    let exp: i32 = exp.parse().unwrap();
    let neg = mant.starts_with('-');
    let digits: String = mant.chars().filter(|c| c.is_ascii_digit()).collect();
    let sign = if neg { "-" } else { "" };
    if !(-4..6).contains(&exp) {
        let m = if digits.len() > 1 {
            format!("{}.{}", &digits[..1], &digits[1..])
        } else {
            digits.clone()
        };
        let es = if exp < 0 { "-" } else { "+" };
        return format!("{sign}{m}e{es}{:02}", exp.abs());
    }
    if exp < 0 {
        format!("{sign}0.{}{}", "0".repeat((-exp - 1) as usize), digits)
    } else {
        let dp = (exp + 1) as usize;
        if digits.len() <= dp {
            format!("{sign}{}{}", digits, "0".repeat(dp - digits.len()))
        } else {
            format!("{sign}{}.{}", &digits[..dp], &digits[dp..])
        }
    }
}

// ---------------------------------------------------------------- lexer

#[derive(Clone, Debug, PartialEq)]
enum Tok {
    Dot,
    Field(Vec<String>),       // .a.b
    Var(String, Vec<String>), // $x.a.b ("" for $)
    Ident(String),
    Str(String),
    Num(V),
    Pipe,
    LParen,
    RParen,
    Declare,
    Assign,
    Comma,
}

const KEYWORDS: &[&str] = &[
    "if", "else", "end", "range", "with", "define", "template", "block", "break", "continue",
];
const FUNCS: &[&str] = &[
    "and", "or", "not", "len", "index", "print", "printf", "println", "eq", "ne", "lt", "le", "gt", "ge",
];
const UNSUPPORTED: &[&str] = &["html", "js", "urlquery", "slice", "call"];

enum Piece {
    Text(String),
    Action(Vec<Tok>),
}

fn is_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\r' | '\n')
}

fn lex(src: &str) -> Result<Vec<Piece>, String> {
    let mut pieces = Vec::new();
    let mut rest = src;
    let mut trim_next = false;
    loop {
        let Some(start) = rest.find("{{") else {
            let mut t = rest.to_string();
            if trim_next {
                t = t.trim_start_matches(is_space).to_string();
            }
            pieces.push(Piece::Text(t));
            break;
        };
        let mut text = rest[..start].to_string();
        if trim_next {
            text = text.trim_start_matches(is_space).to_string();
        }
        let mut inner = &rest[start + 2..];
        if inner.starts_with('-') && inner[1..].starts_with(is_space) {
            text = text.trim_end_matches(is_space).to_string();
            inner = &inner[1..];
        }
        pieces.push(Piece::Text(text));
        // comment
        let trimmed = inner.trim_start_matches(is_space);
        if trimmed.starts_with("/*") {
            let Some(end) = trimmed.find("*/") else {
                return Err("unclosed comment".into());
            };
            let after = &trimmed[end + 2..];
            if let Some(a) = after.strip_prefix("}}") {
                trim_next = false;
                rest = a;
            } else if let Some(a) = after.trim_start_matches(is_space).strip_prefix("-}}") {
                trim_next = true;
                rest = a;
            } else {
                return Err("comment ends before closing delimiter".into());
            }
            continue;
        }
        let (toks, used, trim) = lex_action(inner)?;
        trim_next = trim;
        pieces.push(Piece::Action(toks));
        rest = &inner[used..];
    }
    Ok(pieces)
}

/// Lex the inside of an action; returns tokens, bytes consumed (including the closing
/// delimiter) and whether a right trim marker was present.
fn lex_action(s: &str) -> Result<(Vec<Tok>, usize, bool), String> {
    let b = s.as_bytes();
    let mut i = 0;
    let mut toks = Vec::new();
    let ident = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    loop {
        if i >= b.len() {
            return Err("unclosed action".into());
        }
        let c = b[i];
        if is_space(c as char) {
            let ws_start = i;
            while i < b.len() && is_space(b[i] as char) {
                i += 1;
            }
            if s[i..].starts_with("-}}") && i > ws_start {
                return Ok((toks, i + 3, true));
            }
            continue;
        }
        if s[i..].starts_with("}}") {
            return Ok((toks, i + 2, false));
        }
        match c {
            b'|' => {
                toks.push(Tok::Pipe);
                i += 1;
            }
            b'(' => {
                toks.push(Tok::LParen);
                i += 1;
            }
            b')' => {
                toks.push(Tok::RParen);
                i += 1;
            }
            b',' => {
                toks.push(Tok::Comma);
                i += 1;
            }
            b':' if s[i..].starts_with(":=") => {
                toks.push(Tok::Declare);
                i += 2;
            }
            b'=' => {
                toks.push(Tok::Assign);
                i += 1;
            }
            b'.' | b'$' => {
                let mut var = None;
                if c == b'$' {
                    let st = i + 1;
                    i += 1;
                    while i < b.len() && ident(b[i]) {
                        i += 1;
                    }
                    var = Some(s[st..i].to_string());
                } else if i + 1 < b.len() && b[i + 1].is_ascii_digit() {
                    // a number like .5
                    let (n, used) = lex_number(&s[i..])?;
                    toks.push(Tok::Num(n));
                    i += used;
                    continue;
                }
                let mut chain = Vec::new();
                while i < b.len() && b[i] == b'.' {
                    let st = i + 1;
                    i += 1;
                    while i < b.len() && ident(b[i]) {
                        i += 1;
                    }
                    if st == i {
                        if var.is_none() && chain.is_empty() {
                            break; // plain "."
                        }
                        return Err("bad field syntax".into());
                    }
                    chain.push(s[st..i].to_string());
                }
                match var {
                    Some(v) => toks.push(Tok::Var(v, chain)),
                    None if chain.is_empty() => toks.push(Tok::Dot),
                    None => toks.push(Tok::Field(chain)),
                }
            }
            b'"' => {
                let mut out = String::new();
                i += 1;
                loop {
                    let Some(&ch) = b.get(i) else {
                        return Err("unterminated quoted string".into());
                    };
                    match ch {
                        b'"' => {
                            i += 1;
                            break;
                        }
                        b'\n' => return Err("unterminated quoted string".into()),
                        b'\\' => {
                            let Some(&e) = b.get(i + 1) else {
                                return Err("unterminated quoted string".into());
                            };
                            i += 2;
                            match e {
                                b'n' => out.push('\n'),
                                b't' => out.push('\t'),
                                b'r' => out.push('\r'),
                                b'\\' => out.push('\\'),
                                b'"' => out.push('"'),
                                b'\'' => out.push('\''),
                                b'a' => out.push('\x07'),
                                b'b' => out.push('\x08'),
                                b'f' => out.push('\x0c'),
                                b'v' => out.push('\x0b'),
                                b'x' => {
                                    let h = s.get(i..i + 2).ok_or("bad escape")?;
                                    out.push(u8::from_str_radix(h, 16).map_err(|_| "bad escape")? as char);
                                    i += 2;
                                }
                                b'u' => {
                                    let h = s.get(i..i + 4).ok_or("bad escape")?;
                                    let cp = u32::from_str_radix(h, 16).map_err(|_| "bad escape")?;
                                    out.push(char::from_u32(cp).ok_or("bad escape")?);
                                    i += 4;
                                }
                                _ => return Err("unknown escape sequence".into()),
                            }
                        }
                        _ => {
                            let chs = &s[i..];
                            let chr = chs.chars().next().unwrap();
                            out.push(chr);
                            i += chr.len_utf8();
                        }
                    }
                }
                toks.push(Tok::Str(out));
            }
            b'`' => {
                let Some(end) = s[i + 1..].find('`') else {
                    return Err("unterminated raw quoted string".into());
                };
                toks.push(Tok::Str(s[i + 1..i + 1 + end].to_string()));
                i += end + 2;
            }
            b'0'..=b'9' | b'-' | b'+' => {
                let (n, used) = lex_number(&s[i..])?;
                toks.push(Tok::Num(n));
                i += used;
            }
            c if c.is_ascii_alphabetic() || c == b'_' => {
                let st = i;
                while i < b.len() && ident(b[i]) {
                    i += 1;
                }
                let w = &s[st..i];
                match w {
                    "true" => toks.push(Tok::Num(V::Bool(true))),
                    "false" => toks.push(Tok::Num(V::Bool(false))),
                    "nil" => toks.push(Tok::Num(V::Nil)),
                    _ => toks.push(Tok::Ident(w.to_string())),
                }
            }
            _ => return Err(format!("unexpected {:?} in command", s[i..].chars().next().unwrap())),
        }
    }
}

fn lex_number(s: &str) -> Result<(V, usize), String> {
    let end = s
        .char_indices()
        .skip(1)
        .find(|(_, c)| !(c.is_ascii_alphanumeric() || *c == '.' || *c == '_'))
        .map(|(i, _)| i)
        .unwrap_or(s.len());
    let t = &s[..end];
    let clean = t.replace('_', "");
    let (neg, body) = match clean.strip_prefix('-') {
        Some(b) => (true, b.to_string()),
        None => (false, clean.trim_start_matches('+').to_string()),
    };
    let int = if let Some(h) = body.strip_prefix("0x").or_else(|| body.strip_prefix("0X")) {
        i64::from_str_radix(h, 16).ok()
    } else if let Some(o) = body.strip_prefix("0o") {
        i64::from_str_radix(o, 8).ok()
    } else if let Some(bn) = body.strip_prefix("0b") {
        i64::from_str_radix(bn, 2).ok()
    } else {
        body.parse::<i64>().ok()
    };
    if let Some(i) = int {
        return Ok((V::Int(if neg { -i } else { i }), end));
    }
    match body.parse::<f64>() {
        Ok(f) if !body.is_empty() => Ok((V::Float(if neg { -f } else { f }), end)),
        _ => Err(format!("bad number syntax: {t:?}")),
    }
}

// ---------------------------------------------------------------- parser

#[derive(Clone, Debug)]
enum Arg {
    Dot,
    Field(Vec<String>),
    Var(String, Vec<String>),
    Lit(V),
    Func(String),
    Pipe(Box<Pipeline>),
}

#[derive(Clone, Debug)]
struct Pipeline {
    decl: Vec<String>,
    assign: bool,
    cmds: Vec<Vec<Arg>>,
}

#[derive(Clone, Debug)]
enum Node {
    Text(String),
    Action(Pipeline),
    If(Pipeline, Vec<Node>, Vec<Node>),
    With(Pipeline, Vec<Node>, Vec<Node>),
    Range(Pipeline, Vec<Node>, Vec<Node>),
}

pub struct Template {
    nodes: Vec<Node>,
}

enum Stop {
    End,
    Else(Vec<Tok>),
    Eof,
}

struct Parser {
    pieces: std::vec::IntoIter<Piece>,
}

impl Parser {
    fn list(&mut self) -> Result<(Vec<Node>, Stop), String> {
        let mut nodes = Vec::new();
        while let Some(p) = self.pieces.next() {
            match p {
                Piece::Text(t) => {
                    if !t.is_empty() {
                        nodes.push(Node::Text(t))
                    }
                }
                Piece::Action(toks) => {
                    let first = match toks.first() {
                        Some(Tok::Ident(w)) if KEYWORDS.contains(&w.as_str()) => Some(w.clone()),
                        _ => None,
                    };
                    match first.as_deref() {
                        Some("end") => {
                            if toks.len() != 1 {
                                return Err("unexpected tokens after end".into());
                            }
                            return Ok((nodes, Stop::End));
                        }
                        Some("else") => return Ok((nodes, Stop::Else(toks[1..].to_vec()))),
                        Some(kw @ ("if" | "with" | "range")) => {
                            let node = self.control(kw, &toks[1..])?;
                            nodes.push(node);
                        }
                        Some(kw) => return Err(format!("{kw:?} is not supported by matchbox-double")),
                        None => {
                            if toks.is_empty() {
                                return Err("missing value for command".into());
                            }
                            nodes.push(Node::Action(pipeline(&toks, true)?));
                        }
                    }
                }
            }
        }
        Ok((nodes, Stop::Eof))
    }

    fn control(&mut self, kw: &str, toks: &[Tok]) -> Result<Node, String> {
        if toks.is_empty() {
            return Err(format!("missing value for {kw}"));
        }
        let pipe = pipeline(toks, true)?;
        if kw == "range" && pipe.decl.len() > 2 || kw != "range" && pipe.decl.len() > 1 {
            return Err("too many declarations".into());
        }
        let (body, stop) = self.list()?;
        let els = match stop {
            Stop::End => Vec::new(),
            Stop::Eof => return Err(format!("unexpected EOF in {kw}")),
            Stop::Else(rest) => {
                if rest.is_empty() {
                    let (els, stop) = self.list()?;
                    match stop {
                        Stop::End => els,
                        Stop::Eof => return Err("unexpected EOF".into()),
                        Stop::Else(_) => return Err("expected end; found else".into()),
                    }
                } else if kw != "range" && matches!(&rest[0], Tok::Ident(w) if w == "if" || w == "with") {
                    // {{else if ...}} / {{else with ...}}: a nested control sharing our {{end}}
                    let Tok::Ident(w) = &rest[0] else { unreachable!() };
                    vec![self.control(&w.clone(), &rest[1..])?]
                } else {
                    return Err("unexpected tokens after else".into());
                }
            }
        };
        Ok(match kw {
            "if" => Node::If(pipe, body, els),
            "with" => Node::With(pipe, body, els),
            _ => Node::Range(pipe, body, els),
        })
    }
}

fn pipeline(toks: &[Tok], allow_decl: bool) -> Result<Pipeline, String> {
    let mut decl = Vec::new();
    let mut assign = false;
    let mut rest = toks;
    // declarations: $x := / $x, $y := / $x =
    if allow_decl {
        let mut j = 0;
        let mut vars = Vec::new();
        loop {
            match rest.get(j) {
                Some(Tok::Var(v, chain)) if chain.is_empty() => {
                    vars.push(v.clone());
                    j += 1;
                }
                _ => break,
            }
            match rest.get(j) {
                Some(Tok::Comma) => j += 1,
                Some(Tok::Declare) => {
                    decl = vars;
                    rest = &rest[j + 1..];
                    break;
                }
                Some(Tok::Assign) => {
                    decl = vars;
                    assign = true;
                    rest = &rest[j + 1..];
                    break;
                }
                _ => break,
            }
        }
    }
    let mut cmds = Vec::new();
    let mut cur: Vec<Arg> = Vec::new();
    let mut i = 0;
    while i < rest.len() {
        match &rest[i] {
            Tok::Pipe => {
                if cur.is_empty() {
                    return Err("missing command".into());
                }
                cmds.push(std::mem::take(&mut cur));
            }
            Tok::LParen => {
                let mut depth = 0;
                let mut k = i;
                loop {
                    match rest.get(k) {
                        Some(Tok::LParen) => depth += 1,
                        Some(Tok::RParen) => {
                            depth -= 1;
                            if depth == 0 {
                                break;
                            }
                        }
                        None => return Err("unclosed left paren".into()),
                        _ => {}
                    }
                    k += 1;
                }
                let inner = pipeline(&rest[i + 1..k], false)?;
                cur.push(Arg::Pipe(Box::new(inner)));
                i = k;
            }
            Tok::RParen => return Err("unexpected right paren".into()),
            Tok::Dot => cur.push(Arg::Dot),
            Tok::Field(c) => cur.push(Arg::Field(c.clone())),
            Tok::Var(v, c) => cur.push(Arg::Var(v.clone(), c.clone())),
            Tok::Str(s) => cur.push(Arg::Lit(V::Str(s.clone()))),
            Tok::Num(n) => cur.push(Arg::Lit(n.clone())),
            Tok::Ident(w) => {
                if FUNCS.contains(&w.as_str()) {
                    cur.push(Arg::Func(w.clone()))
                } else if UNSUPPORTED.contains(&w.as_str()) {
                    return Err(format!("function {w:?} is not supported by matchbox-double"));
                } else if KEYWORDS.contains(&w.as_str()) {
                    return Err(format!("unexpected {w:?} in command"));
                } else {
                    return Err(format!("function {w:?} not defined"));
                }
            }
            Tok::Declare | Tok::Assign | Tok::Comma => return Err("unexpected token in operand".into()),
        }
        i += 1;
    }
    if cur.is_empty() {
        return Err("missing value for command".into());
    }
    cmds.push(cur);
    for c in &cmds[1..] {
        if !matches!(c[0], Arg::Func(_)) {
            return Err("non executable command in pipeline stage".into());
        }
    }
    for c in &cmds {
        if !matches!(c[0], Arg::Func(_)) && c.len() > 1 {
            return Err("can't give argument to non-function".into());
        }
        for a in &c[1..] {
            if let Arg::Func(f) = a {
                // a bare function name as an argument is a call with no args in Go;
                // allow only for zero-arg-safe functions would be overkill: reject
                return Err(format!(
                    "function {f:?} used as an operand is not supported by matchbox-double"
                ));
            }
        }
    }
    Ok(Pipeline { decl, assign, cmds })
}

impl Template {
    pub fn parse(src: &str) -> Result<Template, String> {
        let pieces = lex(src).map_err(|e| format!("template: :{e}"))?;
        let mut p = Parser {
            pieces: pieces.into_iter(),
        };
        let (nodes, stop) = p.list().map_err(|e| format!("template: :{e}"))?;
        match stop {
            Stop::Eof => Ok(Template { nodes }),
            Stop::End => Err("template: :unexpected {{end}}".into()),
            Stop::Else(_) => Err("template: :unexpected {{else}}".into()),
        }
    }

    pub fn execute(&self, data: &V) -> Result<String, String> {
        let mut out = String::new();
        let mut ex = Exec {
            vars: vec![("".to_string(), data.clone())],
        };
        ex.walk(&self.nodes, data, &mut out)
            .map_err(|e| format!("template: :{e}"))?;
        Ok(out)
    }
}

// ---------------------------------------------------------------- execution

struct Exec {
    vars: Vec<(String, V)>,
}

impl Exec {
    fn walk(&mut self, nodes: &[Node], dot: &V, out: &mut String) -> Result<(), String> {
        for n in nodes {
            match n {
                Node::Text(t) => out.push_str(t),
                Node::Action(p) => {
                    let v = self.pipe(p, dot)?;
                    if p.decl.is_empty() {
                        out.push_str(&go_print(&v));
                    }
                }
                Node::If(p, body, els) | Node::With(p, body, els) => {
                    let mark = self.vars.len();
                    let v = self.pipe(p, dot)?;
                    let is_with = matches!(n, Node::With(..));
                    if v.truth() {
                        let d = if is_with { v } else { dot.clone() };
                        self.walk(body, &d, out)?;
                    } else {
                        self.walk(els, dot, out)?;
                    }
                    self.vars.truncate(mark);
                }
                Node::Range(p, body, els) => {
                    let mark = self.vars.len();
                    let inner = Pipeline {
                        decl: Vec::new(),
                        assign: false,
                        cmds: p.cmds.clone(),
                    };
                    let v = self.pipe(&inner, dot)?;
                    let items: Vec<(V, V)> = match v {
                        V::List(l) => l.into_iter().enumerate().map(|(i, x)| (V::Int(i as i64), x)).collect(),
                        V::Map(m) => m.into_iter().map(|(k, x)| (V::Str(k), x)).collect(),
                        V::Int(n) => (0..n.max(0)).map(|i| (V::Int(i), V::Int(i))).collect(),
                        V::Nil => Vec::new(),
                        other => return Err(format!("range can't iterate over {}", go_print(&other))),
                    };
                    if items.is_empty() {
                        self.walk(els, dot, out)?;
                    }
                    for (k, x) in items {
                        let m2 = self.vars.len();
                        match p.decl.len() {
                            1 => self.vars.push((p.decl[0].clone(), x.clone())),
                            2 => {
                                self.vars.push((p.decl[0].clone(), k));
                                self.vars.push((p.decl[1].clone(), x.clone()));
                            }
                            _ => {}
                        }
                        self.walk(body, &x, out)?;
                        self.vars.truncate(m2);
                    }
                    self.vars.truncate(mark);
                }
            }
        }
        Ok(())
    }

    fn lookup_var(&self, name: &str) -> Result<V, String> {
        self.vars
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
            .ok_or_else(|| format!("undefined variable: ${name}"))
    }

    fn pipe(&mut self, p: &Pipeline, dot: &V) -> Result<V, String> {
        let mut prev: Option<V> = None;
        for cmd in &p.cmds {
            prev = Some(self.cmd(cmd, dot, prev)?);
        }
        let v = prev.unwrap_or(V::Nil);
        if !p.decl.is_empty() {
            if p.assign {
                let name = &p.decl[0];
                let slot = self
                    .vars
                    .iter_mut()
                    .rev()
                    .find(|(n, _)| n == name)
                    .ok_or_else(|| format!("undefined variable: ${name}"))?;
                slot.1 = v.clone();
            } else {
                self.vars.push((p.decl[0].clone(), v.clone()));
            }
        }
        Ok(v)
    }

    fn arg(&mut self, a: &Arg, dot: &V) -> Result<V, String> {
        match a {
            Arg::Dot => Ok(dot.clone()),
            Arg::Field(chain) => fields(dot.clone(), chain),
            Arg::Var(n, chain) => fields(self.lookup_var(n)?, chain),
            Arg::Lit(v) => Ok(v.clone()),
            Arg::Pipe(p) => self.pipe(p, dot),
            Arg::Func(f) => Err(format!("function {f:?} used as an operand")),
        }
    }

    fn cmd(&mut self, cmd: &[Arg], dot: &V, prev: Option<V>) -> Result<V, String> {
        let Arg::Func(f) = &cmd[0] else {
            return self.arg(&cmd[0], dot);
        };
        // and/or short-circuit
        if f == "and" || f == "or" {
            let mut last = V::Nil;
            let n = cmd.len() - 1 + prev.is_some() as usize;
            if n == 0 {
                return Err(format!("wrong number of args for {f}: want at least 1 got 0"));
            }
            for a in &cmd[1..] {
                last = self.arg(a, dot)?;
                if (f == "and") != last.truth() {
                    return Ok(last);
                }
            }
            if let Some(p) = prev {
                last = p;
            }
            return Ok(last);
        }
        let mut args = Vec::new();
        for a in &cmd[1..] {
            args.push(self.arg(a, dot)?);
        }
        if let Some(p) = prev {
            args.push(p);
        }
        call(f, args)
    }
}

fn fields(mut v: V, chain: &[String]) -> Result<V, String> {
    for name in chain {
        v = match v {
            V::Map(mut m) => match m.remove(name) {
                Some(x) => x,
                None => return Err(format!("map has no entry for key {name:?}")),
            },
            V::Nil => return Err(format!("nil pointer evaluating interface {{}}.{name}")),
            other => return Err(format!("can't evaluate field {name} in type {}", other.type_name())),
        };
    }
    Ok(v)
}

fn cmp_vals(a: &V, b: &V) -> Result<std::cmp::Ordering, String> {
    use std::cmp::Ordering::*;
    Ok(match (a, b) {
        (V::Int(x), V::Int(y)) => x.cmp(y),
        (V::Float(x), V::Float(y)) => x.partial_cmp(y).unwrap_or(Equal),
        (V::Str(x), V::Str(y)) => x.cmp(y),
        _ => return Err("incompatible types for comparison".into()),
    })
}

fn call(f: &str, args: Vec<V>) -> Result<V, String> {
    let want = |n: usize| -> Result<(), String> {
        if args.len() != n {
            Err(format!("wrong number of args for {f}: want {n} got {}", args.len()))
        } else {
            Ok(())
        }
    };
    match f {
        "not" => {
            want(1)?;
            Ok(V::Bool(!args[0].truth()))
        }
        "len" => {
            want(1)?;
            match &args[0] {
                V::Str(s) => Ok(V::Int(s.len() as i64)),
                V::List(l) => Ok(V::Int(l.len() as i64)),
                V::Map(m) => Ok(V::Int(m.len() as i64)),
                v => Err(format!("len of type {}", v.type_name())),
            }
        }
        "index" => {
            if args.is_empty() {
                return Err("wrong number of args for index: want at least 1 got 0".into());
            }
            let mut v = args[0].clone();
            for k in &args[1..] {
                v = match (v, k) {
                    (V::Map(mut m), V::Str(s)) => m.remove(s).unwrap_or(V::Nil),
                    (V::List(l), V::Int(i)) => l
                        .get(*i as usize)
                        .cloned()
                        .ok_or_else(|| format!("index out of range: {i}"))?,
                    (V::Nil, _) => return Err("index of untyped nil".into()),
                    (v, _) => return Err(format!("can't index item of type {}", v.type_name())),
                };
            }
            Ok(v)
        }
        "print" => {
            // fmt.Sprint: spaces between operands when neither is a string
            let mut s = String::new();
            for (i, a) in args.iter().enumerate() {
                if i > 0 && !matches!(a, V::Str(_)) && !matches!(args[i - 1], V::Str(_)) {
                    s.push(' ');
                }
                s.push_str(&go_print_inner(a));
            }
            Ok(V::Str(s))
        }
        "println" => Ok(V::Str(format!(
            "{}\n",
            args.iter().map(go_print_inner).collect::<Vec<_>>().join(" ")
        ))),
        "printf" => {
            let Some(V::Str(fmt)) = args.first() else {
                return Err("printf needs a format string".into());
            };
            Ok(V::Str(sprintf(fmt, &args[1..])))
        }
        "eq" => {
            if args.len() < 2 {
                return Err("missing argument for comparison".into());
            }
            for b in &args[1..] {
                if matches!((&args[0], b), (V::Nil, V::Nil)) {
                    return Ok(V::Bool(true));
                }
                let eq = match (&args[0], b) {
                    (V::Bool(x), V::Bool(y)) => x == y,
                    (x, y) => cmp_vals(x, y)? == std::cmp::Ordering::Equal,
                };
                if eq {
                    return Ok(V::Bool(true));
                }
            }
            Ok(V::Bool(false))
        }
        "ne" => {
            want(2)?;
            let r = call("eq", args)?;
            Ok(V::Bool(!r.truth()))
        }
        "lt" | "le" | "gt" | "ge" => {
            want(2)?;
            let o = cmp_vals(&args[0], &args[1])?;
            use std::cmp::Ordering::*;
            Ok(V::Bool(match f {
                "lt" => o == Less,
                "le" => o != Greater,
                "gt" => o == Greater,
                _ => o != Less,
            }))
        }
        _ => Err(format!("function {f:?} not defined")),
    }
}

fn sprintf(fmt: &str, args: &[V]) -> String {
    let mut out = String::new();
    let mut it = fmt.chars().peekable();
    let mut ai = 0;
    while let Some(c) = it.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let Some(verb) = it.next() else {
            out.push_str("%!(NOVERB)");
            break;
        };
        if verb == '%' {
            out.push('%');
            continue;
        }
        let Some(a) = args.get(ai) else {
            out.push_str(&format!("%!{verb}(MISSING)"));
            continue;
        };
        ai += 1;
        match (verb, a) {
            ('v', a) | ('s', a @ V::Str(_)) => out.push_str(&go_print_inner(a)),
            ('d', V::Int(i)) => out.push_str(&i.to_string()),
            ('q', V::Str(s)) => out.push_str(&format!("{s:?}")),
            ('x', V::Int(i)) => out.push_str(&format!("{i:x}")),
            ('x', V::Str(s)) => out.push_str(&s.bytes().map(|b| format!("{b:02x}")).collect::<String>()),
            ('t', V::Bool(b)) => out.push_str(&b.to_string()),
            (v, a) => out.push_str(&format!("%!{v}({}={})", a.type_name(), go_print_inner(a))),
        }
    }
    if ai < args.len() {
        out.push_str("%!(EXTRA ");
        out.push_str(
            &args[ai..]
                .iter()
                .map(|a| format!("{}={}", a.type_name(), go_print_inner(a)))
                .collect::<Vec<_>>()
                .join(", "),
        );
        out.push(')');
    }
    out
}

/// Parse and execute in one go (matchbox renderTemplate).
pub fn render(src: &str, data: &V) -> Result<String, String> {
    Template::parse(src)?.execute(data)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data() -> V {
        V::from_json(&serde_json::json!({
            "name": "node1",
            "port": 8080,
            "big": 1000000,
            "ratio": 0.5,
            "list": ["a", "b"],
            "nested": {"k": "v"},
            "empty": "",
            "request": {"query": {"mac": "52:54:00:00:00:01"}, "raw_query": "mac=52-54-00-00-00-01"}
        }))
    }

    fn r(s: &str) -> Result<String, String> {
        render(s, &data())
    }

    #[test]
    fn plain_text_is_verbatim() {
        let yaml = "version: v1alpha1\nmachine:\n  type: worker # }} not an action\n";
        assert_eq!(r(yaml).unwrap(), yaml);
    }

    #[test]
    fn fields_and_trim() {
        assert_eq!(r("host {{.name}}:{{ .port }}").unwrap(), "host node1:8080");
        assert_eq!(r("a  {{- .nested.k -}}  \n b").unwrap(), "avb");
        assert_eq!(r("{{.request.query.mac}}").unwrap(), "52:54:00:00:00:01");
        assert_eq!(r("{{.big}} {{.ratio}}").unwrap(), "1e+06 0.5");
        assert_eq!(r("{{/* c */}}x{{- /* c */ -}} y").unwrap(), "xy");
        assert_eq!(r("{{.list}} {{.nested}}").unwrap(), "[a b] map[k:v]");
    }

    #[test]
    fn literal_braces() {
        assert_eq!(r(r#"{{"{{"}} .x }}"#).unwrap(), "{{ .x }}");
        assert_eq!(r("{{`{{`}}").unwrap(), "{{");
    }

    #[test]
    fn control() {
        assert_eq!(
            r("{{if .empty}}y{{else if .name}}n={{.name}}{{else}}z{{end}}").unwrap(),
            "n=node1"
        );
        assert_eq!(r("{{range $i, $v := .list}}{{$i}}={{$v}};{{end}}").unwrap(), "0=a;1=b;");
        assert_eq!(r("{{range .nested}}{{.}}{{end}}").unwrap(), "v");
        assert_eq!(r("{{with .nested}}{{.k}}{{end}}").unwrap(), "v");
        assert_eq!(r("{{$x := .name}}{{$x}}").unwrap(), "node1");
        assert_eq!(
            r(r#"{{index .nested "k"}} {{len .list}} {{.name | printf "%s!"}}"#).unwrap(),
            "v 2 node1!"
        );
        assert_eq!(r(r#"{{if eq .name "node1"}}ok{{end}}"#).unwrap(), "ok");
        assert_eq!(r("{{if and .name (not .empty)}}ok{{end}}").unwrap(), "ok");
    }

    #[test]
    fn errors() {
        // missingkey=error
        assert!(r("{{.nope}}").is_err());
        assert!(r("{{.name.x}}").is_err());
        // parse errors
        assert!(r("a {{ b").is_err());
        assert!(r("{{ }}").is_err());
        assert!(r("{{if .name}}x").is_err());
        assert!(r("{{end}}").is_err());
        assert!(r("{{ .Values.foo | quote }}").is_err());
        assert!(r("{{ include \"x\" . }}").is_err());
        assert!(r("{{{ x }}}").is_err());
        assert!(
            r(r#"{{if eq .port 8080}}{{end}}"#).is_err(),
            "float64 vs int compare is an error in Go"
        );
    }

    #[test]
    fn floats() {
        assert_eq!(go_float(8080.0), "8080");
        assert_eq!(go_float(1e6), "1e+06");
        assert_eq!(go_float(123456.0), "123456");
        assert_eq!(go_float(1234567.0), "1.234567e+06");
        assert_eq!(go_float(0.0001), "0.0001");
        assert_eq!(go_float(0.00001), "1e-05");
        assert_eq!(go_float(-2.5), "-2.5");
    }
}
