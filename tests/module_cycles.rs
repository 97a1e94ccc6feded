//! No module cycles in the crate: dependencies run one way, down the layers that
//! docs/ARCHITECTURE.md names.
//!
//! A file depends on another when it names one of that file's items: by a `use`, or by
//! a path in its code that starts at `crate::`, `super::`, `self::`, a child module, or
//! a module a `use` brought into scope. A path to an item that a module re-exports
//! (`pub use`) leads on to the file that defines it. A module's file declaring its
//! children (`mod x;`) or re-exporting its own descendants (`pub use x::Item;`) owns
//! them; that is not a dependency. A cycle is a file that depends, directly or through
//! others, on a file that depends on it.
//!
//! The reader below is small on purpose: it strips comments and literals, reads `mod`
//! declarations, `use` trees and `a::b::c` paths, and resolves them over the module
//! tree. It is tested here on planted cycles, and on the real crate with one planted.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// Names that start a path outside this crate.
const EXTERNAL_ROOTS: [&str; 3] = ["std", "core", "alloc"];

#[derive(Debug)]
struct Module {
    file: usize,
    parent: Option<usize>,
    children: BTreeMap<String, usize>,
}

#[derive(Debug)]
struct SourceFile {
    /// Relative to the crate's `src/`.
    path: PathBuf,
    tokens: Vec<Token>,
    /// The module the file itself is.
    module: usize,
    /// Inline modules (`mod tests { .. }`): (first token, last token, module).
    inline: Vec<(usize, usize, usize)>,
}

#[derive(Clone, Debug, PartialEq)]
struct Token {
    text: String,
    line: usize,
}

/// One `use` path, expanded from its tree: `use a::{b, c::d as e}` gives `a::b` and
/// `a::c::d` (bound as `e`).
#[derive(Clone, Debug)]
struct UsePath {
    segments: Vec<String>,
    alias: Option<String>,
    public: bool,
    /// The module the `use` stands in.
    scope: usize,
    line: usize,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Target {
    Module(usize),
    Item(usize),
}

struct Crate {
    modules: Vec<Module>,
    files: Vec<SourceFile>,
    /// Per file, its `use` paths.
    uses: Vec<Vec<UsePath>>,
}

/// A dependency of one file on another, with the first place that makes it.
#[derive(Clone, Debug)]
struct Edge {
    line: usize,
    what: String,
}

/// Replaces comments, string and char literals with spaces, keeping line breaks, so
/// that paths in documentation or messages are not read as code.
fn strip(source: &str) -> String {
    let bytes = source.as_bytes();
    let mut out = String::with_capacity(source.len());
    let blank = |out: &mut String, text: &str| {
        for c in text.chars() {
            out.push(if c == '\n' { '\n' } else { ' ' });
        }
    };
    let is_ident = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let mut i = 0;
    while i < bytes.len() {
        let rest = &source[i..];
        let prev_ident = i > 0 && is_ident(bytes[i - 1]);
        if rest.starts_with("//") {
            let end = rest.find('\n').map_or(source.len(), |e| i + e);
            blank(&mut out, &source[i..end]);
            i = end;
        } else if rest.starts_with("/*") {
            let mut depth = 0;
            let mut j = i;
            while j < bytes.len() {
                if source[j..].starts_with("/*") {
                    depth += 1;
                    j += 2;
                } else if source[j..].starts_with("*/") {
                    depth -= 1;
                    j += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    j += 1;
                }
            }
            blank(&mut out, &source[i..j]);
            i = j;
        } else if !prev_ident
            && (rest.starts_with("r\"")
                || rest.starts_with("r#")
                || rest.starts_with("br\"")
                || rest.starts_with("br#"))
        {
            let start = i + if rest.starts_with('b') { 2 } else { 1 };
            let hashes = source[start..].bytes().take_while(|&b| b == b'#').count();
            if source[start + hashes..].starts_with('"') {
                let close = format!("\"{}", "#".repeat(hashes));
                let body = start + hashes + 1;
                let end = source[body..]
                    .find(&close)
                    .map_or(source.len(), |e| body + e + close.len());
                blank(&mut out, &source[i..end]);
                i = end;
            } else {
                out.push(bytes[i] as char);
                i += 1;
            }
        } else if bytes[i] == b'"' {
            let mut j = i + 1;
            while j < bytes.len() && bytes[j] != b'"' {
                j += if bytes[j] == b'\\' { 2 } else { 1 };
            }
            let end = (j + 1).min(source.len());
            blank(&mut out, &source[i..end]);
            i = end;
        } else if bytes[i] == b'\'' {
            // A char literal ('x', '\n', '\u{..}'), or else a lifetime.
            let end = if rest[1..].starts_with('\\') {
                rest[2..].find('\'').map(|e| i + 2 + e + 1)
            } else {
                let mut chars = rest[1..].chars();
                match (chars.next(), chars.next()) {
                    (Some(c), Some('\'')) => Some(i + 1 + c.len_utf8() + 1),
                    _ => None,
                }
            };
            match end {
                Some(end) => {
                    blank(&mut out, &source[i..end]);
                    i = end;
                }
                None => {
                    out.push('\'');
                    i += 1;
                }
            }
        } else {
            let c = rest.chars().next().expect("not at the end");
            out.push(c);
            i += c.len_utf8();
        }
    }
    out
}

fn tokenize(stripped: &str) -> Vec<Token> {
    let mut tokens = Vec::new();
    for (n, line) in stripped.lines().enumerate() {
        let chars: Vec<char> = line.chars().collect();
        let mut i = 0;
        while i < chars.len() {
            let c = chars[i];
            if c.is_whitespace() {
                i += 1;
            } else if c.is_alphanumeric() || c == '_' {
                let start = i;
                while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                    i += 1;
                }
                tokens.push(Token {
                    text: chars[start..i].iter().collect(),
                    line: n + 1,
                });
            } else if c == ':' && chars.get(i + 1) == Some(&':') {
                tokens.push(Token {
                    text: "::".into(),
                    line: n + 1,
                });
                i += 2;
            } else {
                tokens.push(Token {
                    text: c.to_string(),
                    line: n + 1,
                });
                i += 1;
            }
        }
    }
    tokens
}

fn is_ident(text: &str) -> bool {
    text.chars()
        .next()
        .is_some_and(|c| c.is_alphabetic() || c == '_')
}

/// The token closing the brace opened at `open`.
fn matching_brace(tokens: &[Token], open: usize) -> usize {
    let mut depth = 0;
    for (i, t) in tokens.iter().enumerate().skip(open) {
        match t.text.as_str() {
            "{" => depth += 1,
            "}" => {
                depth -= 1;
                if depth == 0 {
                    return i;
                }
            }
            _ => {}
        }
    }
    tokens.len() - 1
}

impl Crate {
    /// Reads the crate whose root is `src/lib.rs` under `src`.
    fn read(src: &Path) -> Crate {
        let mut krate = Crate {
            modules: Vec::new(),
            files: Vec::new(),
            uses: Vec::new(),
        };
        krate.add_file(src, Path::new("lib.rs"), None, None);
        krate.uses = (0..krate.files.len()).map(|f| krate.read_uses(f)).collect();
        krate
    }

    /// Adds the module in file `rel` (and its descendants); returns its id.
    fn add_file(
        &mut self,
        src: &Path,
        rel: &Path,
        parent: Option<usize>,
        name: Option<&str>,
    ) -> usize {
        let text = fs::read_to_string(src.join(rel))
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", rel.display()));
        let tokens = tokenize(&strip(&text));
        let module = self.modules.len();
        let file = self.files.len();
        self.modules.push(Module {
            file,
            parent,
            children: BTreeMap::new(),
        });
        if let (Some(parent), Some(name)) = (parent, name) {
            self.modules[parent]
                .children
                .insert(name.to_string(), module);
        }
        self.files.push(SourceFile {
            path: rel.to_path_buf(),
            tokens: tokens.clone(),
            module,
            inline: Vec::new(),
        });
        // Children of lib.rs and mod.rs sit beside them; those of foo.rs in foo/.
        let stem = rel
            .file_stem()
            .expect("a .rs file")
            .to_string_lossy()
            .to_string();
        let dir = rel.parent().unwrap_or(Path::new(""));
        let child_dir = if stem == "lib" || stem == "mod" {
            dir.to_path_buf()
        } else {
            dir.join(&stem)
        };
        // `mod` declarations, and inline modules with their token spans.
        let mut inline_stack: Vec<(usize, usize, usize)> = Vec::new();
        let mut i = 0;
        while i + 2 < tokens.len() {
            while inline_stack.last().is_some_and(|&(_, end, _)| i > end) {
                inline_stack.pop();
            }
            let scope = inline_stack.last().map_or(module, |&(_, _, m)| m);
            if tokens[i].text == "mod" && is_ident(&tokens[i + 1].text) {
                let name = tokens[i + 1].text.clone();
                match tokens[i + 2].text.as_str() {
                    ";" if scope == module => {
                        let candidates = [
                            child_dir.join(format!("{name}.rs")),
                            child_dir.join(&name).join("mod.rs"),
                        ];
                        let child = candidates
                            .iter()
                            .find(|c| src.join(c).is_file())
                            .unwrap_or_else(|| {
                                panic!("{}: no file for `mod {name};`", rel.display())
                            })
                            .clone();
                        self.add_file(src, &child, Some(module), Some(&name));
                    }
                    "{" => {
                        let end = matching_brace(&tokens, i + 2);
                        let inner = self.modules.len();
                        self.modules.push(Module {
                            file,
                            parent: Some(scope),
                            children: BTreeMap::new(),
                        });
                        self.modules[scope].children.insert(name, inner);
                        self.files[file].inline.push((i, end, inner));
                        inline_stack.push((i, end, inner));
                    }
                    _ => {}
                }
            }
            i += 1;
        }
        module
    }

    /// The module token `at` of file `f` stands in.
    fn scope(&self, f: usize, at: usize) -> usize {
        let file = &self.files[f];
        file.inline
            .iter()
            .filter(|&&(start, end, _)| start <= at && at <= end)
            .min_by_key(|&&(start, end, _)| end - start)
            .map_or(file.module, |&(_, _, m)| m)
    }

    fn read_uses(&self, f: usize) -> Vec<UsePath> {
        let tokens = &self.files[f].tokens;
        let mut out = Vec::new();
        for (i, t) in tokens.iter().enumerate() {
            if t.text != "use" || (i > 0 && tokens[i - 1].text == "::") {
                continue;
            }
            let public = i > 0
                && (tokens[i - 1].text == "pub"
                    || (tokens[i - 1].text == ")"
                        && tokens[..i - 1]
                            .iter()
                            .rev()
                            .position(|t| t.text == "(")
                            .is_some_and(|back| {
                                let open = i - 2 - back;
                                open > 0 && tokens[open - 1].text == "pub"
                            })));
            let end = (i..tokens.len())
                .find(|&j| tokens[j].text == ";")
                .unwrap_or(tokens.len());
            let mut paths = Vec::new();
            parse_tree(&tokens[i + 1..end], &[], &mut paths);
            for (segments, alias) in paths {
                out.push(UsePath {
                    segments,
                    alias,
                    public,
                    scope: self.scope(f, i),
                    line: t.line,
                });
            }
        }
        out
    }

    /// Where a path starting in module `scope` leads; `None` outside the crate.
    fn resolve(&self, scope: usize, segments: &[String], depth: usize) -> Option<Target> {
        if depth > 16 || segments.is_empty() {
            return None;
        }
        let first = segments[0].as_str();
        let mut module = match first {
            "crate" => 0,
            "super" => self.modules[scope].parent?,
            "self" => scope,
            name if EXTERNAL_ROOTS.contains(&name) => return None,
            name => {
                if let Some(&child) = self.modules[scope].children.get(name) {
                    child
                } else {
                    // A name a `use` of this file brought in.
                    let file = self.modules[scope].file;
                    let bound = self.uses[file]
                        .iter()
                        .find(|u| u.bound_name().as_deref() == Some(name))?;
                    let target = self.resolve(bound.scope, &bound.segments, depth + 1)?;
                    match target {
                        Target::Module(m) => m,
                        Target::Item(_) => return Some(target),
                    }
                }
            }
        };
        for segment in &segments[1..] {
            match segment.as_str() {
                "super" => module = self.modules[module].parent?,
                "self" => {}
                "*" => return Some(Target::Module(module)),
                name => match self.modules[module].children.get(name) {
                    Some(&child) => module = child,
                    None => return self.item(module, name, depth),
                },
            }
        }
        Some(Target::Module(module))
    }

    /// Item `name` of `module`: the file that defines it, following re-exports.
    fn item(&self, module: usize, name: &str, depth: usize) -> Option<Target> {
        let file = self.modules[module].file;
        let reexports = self.uses[file]
            .iter()
            .filter(|u| u.public && u.scope == module);
        for u in reexports.clone() {
            if u.bound_name().as_deref() == Some(name) {
                return self
                    .resolve(u.scope, &u.segments, depth + 1)
                    .or(Some(Target::Item(file)));
            }
        }
        if !defines(&self.files[file].tokens, name) {
            for u in reexports.filter(|u| u.segments.last().map(String::as_str) == Some("*")) {
                let glob = &u.segments[..u.segments.len() - 1];
                let mut path: Vec<String> = glob.to_vec();
                path.push(name.to_string());
                if let Some(target) = self.resolve(u.scope, &path, depth + 1) {
                    return Some(target);
                }
            }
        }
        Some(Target::Item(file))
    }

    fn target_file(&self, target: Target) -> usize {
        match target {
            Target::Module(m) => self.modules[m].file,
            Target::Item(f) => f,
        }
    }

    /// Whether module `a` is `b` or one of its descendants.
    fn within(&self, mut a: usize, b: usize) -> bool {
        loop {
            if a == b {
                return true;
            }
            match self.modules[a].parent {
                Some(p) => a = p,
                None => return false,
            }
        }
    }

    /// Every file's dependencies: (from, to) → the first place that makes it.
    fn dependencies(&self) -> BTreeMap<(usize, usize), Edge> {
        let mut edges = BTreeMap::new();
        let mut add = |from: usize, to: usize, line: usize, what: String| {
            if from != to {
                edges.entry((from, to)).or_insert(Edge { line, what });
            }
        };
        for (f, file) in self.files.iter().enumerate() {
            for u in &self.uses[f] {
                let Some(target) = self.resolve(u.scope, &u.segments, 0) else {
                    continue;
                };
                // Re-exporting its own descendants is what a module's file does to own them.
                let owned = u.public
                    && match target {
                        Target::Module(m) => self.within(m, u.scope),
                        Target::Item(t) => self.within(self.files[t].module, u.scope),
                    };
                if !owned {
                    add(
                        f,
                        self.target_file(target),
                        u.line,
                        format!("use {}", u.segments.join("::")),
                    );
                }
            }
            // Paths in the code, outside `use` declarations.
            let tokens = &file.tokens;
            let mut in_use = false;
            let mut i = 0;
            while i < tokens.len() {
                let t = &tokens[i].text;
                if t == "use" {
                    in_use = true;
                } else if t == ";" {
                    in_use = false;
                }
                let starts_path = is_ident(t)
                    && tokens.get(i + 1).is_some_and(|n| n.text == "::")
                    && (i == 0 || tokens[i - 1].text != "::");
                if in_use || !starts_path || t == "use" {
                    i += 1;
                    continue;
                }
                let mut segments = vec![t.clone()];
                let mut j = i + 1;
                while j + 1 < tokens.len()
                    && tokens[j].text == "::"
                    && is_ident(&tokens[j + 1].text)
                {
                    segments.push(tokens[j + 1].text.clone());
                    j += 2;
                }
                let scope = self.scope(f, i);
                if let Some(target) = self.resolve(scope, &segments, 0) {
                    add(
                        f,
                        self.target_file(target),
                        tokens[i].line,
                        segments.join("::"),
                    );
                }
                i = j;
            }
        }
        edges
    }

    /// The cycles: each strongly connected set of two or more files, with the
    /// dependencies between them.
    fn cycles(&self) -> Vec<String> {
        let edges = self.dependencies();
        let n = self.files.len();
        let mut next: Vec<Vec<usize>> = vec![Vec::new(); n];
        for &(a, b) in edges.keys() {
            next[a].push(b);
        }
        let components = strongly_connected(&next);
        components
            .into_iter()
            .filter(|c| c.len() > 1)
            .map(|c| {
                let set: BTreeSet<usize> = c.iter().copied().collect();
                let mut lines = vec![format!(
                    "a cycle among {}:",
                    c.iter()
                        .map(|&f| self.files[f].path.display().to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                )];
                for (&(a, b), edge) in &edges {
                    if set.contains(&a) && set.contains(&b) {
                        lines.push(format!(
                            "  {}:{} names {} ({})",
                            self.files[a].path.display(),
                            edge.line,
                            self.files[b].path.display(),
                            edge.what
                        ));
                    }
                }
                lines.join("\n")
            })
            .collect()
    }
}

impl UsePath {
    /// The name this path brings into scope.
    fn bound_name(&self) -> Option<String> {
        if let Some(alias) = &self.alias {
            return (alias != "_").then(|| alias.clone());
        }
        match self.segments.as_slice() {
            [.., last] if last == "*" => None,
            [.., before, last] if last == "self" => Some(before.clone()),
            [.., last] => Some(last.clone()),
            [] => None,
        }
    }
}

/// Whether the tokens define an item called `name`.
fn defines(tokens: &[Token], name: &str) -> bool {
    const KEYWORDS: [&str; 9] = [
        "fn", "struct", "enum", "trait", "const", "static", "type", "union", "mod",
    ];
    tokens
        .windows(2)
        .any(|w| KEYWORDS.contains(&w[0].text.as_str()) && w[1].text == name)
        || tokens
            .windows(3)
            .any(|w| w[0].text == "macro_rules" && w[2].text == name)
}

/// Expands a use tree into its paths, with the prefix so far.
fn parse_tree(tokens: &[Token], prefix: &[String], out: &mut Vec<(Vec<String>, Option<String>)>) {
    let mut segments = prefix.to_vec();
    let mut i = 0;
    if tokens.first().is_some_and(|t| t.text == "::") {
        i = 1;
    }
    while i < tokens.len() {
        let t = tokens[i].text.as_str();
        match t {
            "{" => {
                let close = matching_brace(tokens, i);
                let inner = &tokens[i + 1..close];
                // Split on top-level commas.
                let mut depth = 0;
                let mut start = 0;
                for (k, tok) in inner.iter().enumerate() {
                    match tok.text.as_str() {
                        "{" => depth += 1,
                        "}" => depth -= 1,
                        "," if depth == 0 => {
                            parse_tree(&inner[start..k], &segments, out);
                            start = k + 1;
                        }
                        _ => {}
                    }
                }
                if start < inner.len() {
                    parse_tree(&inner[start..], &segments, out);
                }
                return;
            }
            "::" => {}
            "as" => {
                let alias = tokens.get(i + 1).map(|t| t.text.clone());
                out.push((segments, alias));
                return;
            }
            _ => segments.push(t.to_string()),
        }
        i += 1;
    }
    if segments.len() > prefix.len() {
        out.push((segments, None));
    }
}

/// Tarjan's strongly connected components.
fn strongly_connected(next: &[Vec<usize>]) -> Vec<Vec<usize>> {
    struct State<'a> {
        next: &'a [Vec<usize>],
        index: Vec<Option<usize>>,
        low: Vec<usize>,
        on_stack: Vec<bool>,
        stack: Vec<usize>,
        counter: usize,
        out: Vec<Vec<usize>>,
    }
    fn visit(s: &mut State, v: usize) {
        s.index[v] = Some(s.counter);
        s.low[v] = s.counter;
        s.counter += 1;
        s.stack.push(v);
        s.on_stack[v] = true;
        for k in 0..s.next[v].len() {
            let w = s.next[v][k];
            match s.index[w] {
                None => {
                    visit(s, w);
                    s.low[v] = s.low[v].min(s.low[w]);
                }
                Some(iw) if s.on_stack[w] => s.low[v] = s.low[v].min(iw),
                Some(_) => {}
            }
        }
        if Some(s.low[v]) == s.index[v] {
            let mut component = Vec::new();
            loop {
                let w = s.stack.pop().expect("v is on the stack");
                s.on_stack[w] = false;
                component.push(w);
                if w == v {
                    break;
                }
            }
            s.out.push(component);
        }
    }
    let n = next.len();
    let mut s = State {
        next,
        index: vec![None; n],
        low: vec![0; n],
        on_stack: vec![false; n],
        stack: Vec::new(),
        counter: 0,
        out: Vec::new(),
    };
    for v in 0..n {
        if s.index[v].is_none() {
            visit(&mut s, v);
        }
    }
    s.out
}

/// The layers of docs/ARCHITECTURE.md, bottom up, by the path prefix of their files
/// (the longest prefix decides); files of one rank may name each other, and lower
/// ranks name nothing above them.
const LAYERS: [(&str, usize); 11] = [
    ("sys.rs", 0),
    ("engine/device/", 1),
    ("engine/tensor.rs", 2),
    ("engine/ops.rs", 3),
    ("engine/autograd/", 4),
    ("engine/optim/", 5),
    ("engine/nn/", 5),
    ("data/", 5),
    ("training/", 6),
    ("fuzz_targets.rs", 7),
    ("", 8),
];

fn layer_of(path: &Path) -> usize {
    let path = path.to_string_lossy();
    LAYERS
        .iter()
        .filter(|(prefix, _)| path.starts_with(prefix))
        .max_by_key(|(prefix, _)| prefix.len())
        .map(|&(_, rank)| rank)
        .expect("the empty prefix matches every path")
}

fn crate_src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// A tree of source files from `(path, text)` pairs, in a fresh directory.
fn write_tree(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("a temporary directory");
    for (path, text) in files {
        let path = dir.path().join(path);
        fs::create_dir_all(path.parent().expect("a parent")).expect("mkdir");
        fs::write(path, text).expect("write");
    }
    dir
}

/// Copies `from` into `to`, recursively.
fn copy_tree(from: &Path, to: &Path) {
    fs::create_dir_all(to).expect("mkdir");
    for entry in fs::read_dir(from).expect("list") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("type").is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            fs::copy(entry.path(), &target).expect("copy");
        }
    }
}

#[test]
fn the_crate_has_no_module_cycle() {
    let cycles = Crate::read(&crate_src()).cycles();
    assert!(cycles.is_empty(), "module cycles:\n{}", cycles.join("\n"));
}

/// Each dependency of a file on one in a higher layer, as a line.
fn upward(krate: &Crate) -> Vec<String> {
    krate
        .dependencies()
        .iter()
        .filter(|(&(from, to), _)| {
            layer_of(&krate.files[from].path) < layer_of(&krate.files[to].path)
        })
        .map(|(&(from, to), edge)| {
            format!(
                "{}:{} names {} above it ({})",
                krate.files[from].path.display(),
                edge.line,
                krate.files[to].path.display(),
                edge.what
            )
        })
        .collect()
}

#[test]
fn every_dependency_points_down_the_layers() {
    let upward = upward(&Crate::read(&crate_src()));
    assert!(
        upward.is_empty(),
        "upward dependencies:\n{}",
        upward.join("\n")
    );
}

#[test]
fn the_reader_follows_uses_paths_and_reexports_through_the_real_crate() {
    let krate = Crate::read(&crate_src());
    let edges = krate.dependencies();
    let file = |path: &str| {
        krate
            .files
            .iter()
            .position(|f| f.path == Path::new(path))
            .unwrap_or_else(|| panic!("no {path}"))
    };
    // The tape names the op set; the op set names nothing above it.
    let tape = file("engine/autograd/tape.rs");
    let ops = file("engine/ops.rs");
    assert!(
        edges.contains_key(&(tape, ops)),
        "the tape's use of the op set was missed"
    );
    assert!(!edges.contains_key(&(ops, tape)));
    // `crate::engine::device::Device` is re-exported by device/mod.rs from handle.rs:
    // the dependency is on handle.rs, and mod.rs's re-export is not one.
    let handle = file("engine/device/handle.rs");
    let device_mod = file("engine/device/mod.rs");
    assert!(
        edges.contains_key(&(ops, handle)),
        "a re-export was not followed"
    );
    assert!(
        !edges.keys().any(|&(from, _)| from == device_mod),
        "a module's re-exports counted as imports"
    );
}

#[test]
fn a_parent_and_child_that_name_each_other_are_a_cycle() {
    let dir = write_tree(&[
        ("lib.rs", "pub mod a;\n"),
        (
            "a/mod.rs",
            "mod b;\npub struct Shared;\npub fn f() { b::g(); }\n",
        ),
        ("a/b.rs", "use super::Shared;\npub fn g() {}\n"),
    ]);
    let cycles = Crate::read(dir.path()).cycles();
    assert_eq!(cycles.len(), 1, "{cycles:?}");
    assert!(
        cycles[0].contains("a/mod.rs") && cycles[0].contains("a/b.rs"),
        "{}",
        cycles[0]
    );
}

#[test]
fn a_cycle_through_a_third_file_and_a_module_alias_is_found() {
    let dir = write_tree(&[
        ("lib.rs", "pub mod x;\npub mod y;\npub mod z;\n"),
        ("x.rs", "use crate::y;\n/// crate::z::Nothing in a comment is not a path.\npub fn f() { y::g(); }\n"),
        ("y.rs", "pub fn g() { crate::z::h(); }\n"),
        ("z.rs", "pub fn h() { let _ = \"crate::x::f\"; super::x::f(); }\n"),
    ]);
    let cycles = Crate::read(dir.path()).cycles();
    assert_eq!(cycles.len(), 1, "{cycles:?}");
    for file in ["x.rs", "y.rs", "z.rs"] {
        assert!(cycles[0].contains(file), "{}", cycles[0]);
    }
}

#[test]
fn a_table_of_contents_and_its_children_are_not_a_cycle() {
    let dir = write_tree(&[
        ("lib.rs", "pub mod a;\npub use a::Thing;\n"),
        ("a/mod.rs", "mod b;\nmod c;\npub use b::Thing;\npub use c::*;\n"),
        ("a/b.rs", "use super::c::Other;\npub struct Thing(Other);\n#[cfg(test)]\nmod tests { use super::*; }\n"),
        ("a/c.rs", "pub struct Other;\n"),
        ("user.rs", ""),
    ]);
    let krate = Crate::read(dir.path());
    assert!(krate.cycles().is_empty(), "{:?}", krate.cycles());
    // A user of `crate::a::Other` depends on c.rs, through the glob re-export.
    let dir = write_tree(&[
        ("lib.rs", "pub mod a;\npub mod user;\n"),
        ("a/mod.rs", "mod c;\npub use c::*;\n"),
        (
            "a/c.rs",
            "pub struct Other;\npub fn f() { crate::user::g(); }\n",
        ),
        (
            "user.rs",
            "pub fn g() {}\npub fn h() -> crate::a::Other { crate::a::Other }\n",
        ),
    ]);
    let cycles = Crate::read(dir.path()).cycles();
    assert_eq!(cycles.len(), 1, "{cycles:?}");
    assert!(
        cycles[0].contains("a/c.rs") && cycles[0].contains("user.rs"),
        "{}",
        cycles[0]
    );
}

#[test]
fn a_cycle_planted_in_a_copy_of_the_crate_is_found() {
    let copy = tempfile::tempdir().expect("a temporary directory");
    copy_tree(&crate_src(), copy.path());
    // The CPU's loss kernels calling back up into the op set: the cycle the layers
    // forbid (ops → device).
    let loss = copy.path().join("engine/device/cpu/loss.rs");
    let mut text = fs::read_to_string(&loss).expect("read");
    text.push_str("\npub fn planted() { let _ = crate::engine::ops::correct_count; }\n");
    fs::write(&loss, text).expect("write");
    let krate = Crate::read(copy.path());
    let cycles = krate.cycles();
    assert_eq!(cycles.len(), 1, "{cycles:?}");
    assert!(
        cycles[0].contains("engine/device/cpu/loss.rs") && cycles[0].contains("engine/ops.rs"),
        "{}",
        cycles[0]
    );
    let upward = upward(&krate);
    assert!(
        upward.len() == 1 && upward[0].starts_with("engine/device/cpu/loss.rs:"),
        "{upward:?}"
    );
}
