//! The race-check copy of a kernel file, for the emulator (see "The race check" in
//! kernels/emu/cuda_emu.h). Two textual changes, on code only (comments, strings and
//! character literals are left alone), keeping every line where it was:
//!
//! - `__shared__ T a[N][M], b[K];` becomes
//!   `static thread_local ::emu::Shared<T[N][M]> a{"T a[N][M]", "file", line}; ...`,
//!   so that every element access of the array is checked; an alignment first
//!   (`__shared__ __align__(16) T a[N];`, as ldmatrix and cp.async need) stays on the
//!   declaration, `static thread_local __align__(16) ::emu::Shared<T[N]> a{...};`,
//!   whose array is its first member;
//! - `extern "C"` goes (`extern "C" {` becomes `inline namespace emu_extern_c {`): the
//!   copy is compiled beside the original, in another namespace, and two `extern "C"`
//!   functions of one name would be one function.
//!
//! A `__shared__` declaration of another form (`extern __shared__`, an initialiser) is
//! left as it is, unchecked, with a warning for the build to print.

/// The copy of `source` (the text of the file `file_name`), and the warnings.
pub fn instrument(source: &str, file_name: &str) -> (String, Vec<String>) {
    let bytes = source.as_bytes();
    let mut out = String::with_capacity(source.len() + source.len() / 8);
    let mut warnings = Vec::new();
    let mut i = 0; // bytes[..i] are handled
    let mut copied = 0; // source[..copied] is in `out`
    let mut previous_word = "";
    while i < bytes.len() {
        match bytes[i] {
            b'/' if bytes.get(i + 1) == Some(&b'/') => i = skip_line_comment(bytes, i),
            b'/' if bytes.get(i + 1) == Some(&b'*') => i = skip_block_comment(bytes, i),
            b'"' | b'\'' => i = skip_literal(bytes, i),
            c if is_word_start(c) => {
                let start = i;
                while i < bytes.len() && is_word_byte(bytes[i]) {
                    i += 1;
                }
                let word = &source[start..i];
                if word == "__shared__" && previous_word != "extern" {
                    let line = 1 + source[..start].matches('\n').count();
                    if let Some((end, replacement)) = shared_declaration(source, i, file_name, line)
                    {
                        out.push_str(&source[copied..start]);
                        out.push_str(&replacement);
                        copied = end;
                        i = end;
                    } else {
                        warnings.push(format!(
                            "{file_name}:{line}: this __shared__ declaration is not of the form \
                             `__shared__ T name[N]...;`, so the race check does not watch it"
                        ));
                    }
                } else if word == "extern" {
                    if let Some((end, replacement)) = extern_c(source, i) {
                        out.push_str(&source[copied..start]);
                        out.push_str(replacement);
                        copied = end;
                        i = end;
                    }
                }
                previous_word = word;
            }
            _ => i += 1,
        }
    }
    out.push_str(&source[copied..]);
    (out, warnings)
}

fn is_word_start(c: u8) -> bool {
    c.is_ascii_alphabetic() || c == b'_'
}

fn is_word_byte(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_'
}

fn skip_line_comment(bytes: &[u8], mut i: usize) -> usize {
    while i < bytes.len() && bytes[i] != b'\n' {
        i += 1;
    }
    i
}

fn skip_block_comment(bytes: &[u8], i: usize) -> usize {
    let mut j = i + 2;
    while j + 1 < bytes.len() && !(bytes[j] == b'*' && bytes[j + 1] == b'/') {
        j += 1;
    }
    (j + 2).min(bytes.len())
}

/// Past the string or character literal that starts at `i`.
fn skip_literal(bytes: &[u8], i: usize) -> usize {
    let quote = bytes[i];
    let mut j = i + 1;
    while j < bytes.len() && bytes[j] != quote && bytes[j] != b'\n' {
        j += if bytes[j] == b'\\' { 2 } else { 1 };
    }
    (j + 1).min(bytes.len())
}

/// The declaration after a `__shared__` that ends at `from`: where it ends (past its
/// `;`) and what replaces it, or None if it is not `T name[N]... (, name[N]...)*;`.
fn shared_declaration(
    source: &str,
    from: usize,
    file_name: &str,
    line: usize,
) -> Option<(usize, String)> {
    let semicolon = from + source[from..].find(';')?;
    let text = &source[from..semicolon];
    if text.contains("//") || text.contains("/*") || text.contains('=') || text.contains('{') {
        return None;
    }
    let declarators = split_top_level(text, ',');
    let first = declarators[0].trim();
    let name_end = first.find('[').unwrap_or(first.len());
    let before = first[..name_end].trim_end();
    let name_start = before
        .rfind(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .map_or(0, |p| p + 1);
    let name = &before[name_start..];
    let (alignment, element_type) = split_alignment(&normalise(&before[..name_start]))?;
    if name.is_empty() || !is_word_start(name.as_bytes()[0]) || element_type.is_empty() {
        return None;
    }
    // The emulator runs threads one at a time: `volatile` changes nothing but would
    // have to be carried through every access of the wrapper.
    let checked_type = element_type
        .split(' ')
        .filter(|word| *word != "volatile")
        .collect::<Vec<_>>()
        .join(" ");
    let mut replacement = String::new();
    let mut rest = Some((name, &first[name_end..]));
    let mut others = declarators[1..].iter();
    while let Some((name, dims)) = rest {
        let dims = normalise(dims);
        if !is_extents(&dims) {
            return None;
        }
        let declaration = format!("{element_type} {name}{dims}");
        replacement.push_str(&format!(
            "static thread_local {alignment}::emu::Shared<{checked_type}{dims}> {name}{{\"{}\", \
             \"{}\", {line}}};",
            escape(&declaration),
            escape(file_name)
        ));
        rest = match others.next() {
            None => None,
            Some(other) => {
                let other = other.trim();
                let name_end = other.find('[').unwrap_or(other.len());
                let name = other[..name_end].trim();
                if name.is_empty() || !name.bytes().all(is_word_byte) {
                    return None;
                }
                Some((name, &other[name_end..]))
            }
        };
        if rest.is_some() {
            replacement.push(' ');
        }
    }
    // The lines the declaration spanned, so that later lines keep their numbers.
    replacement.push_str(&"\n".repeat(text.matches('\n').count()));
    Some((semicolon + 1, replacement))
}

/// A leading `__align__(..) ` of `text`, with its space ("" if there is none), and the
/// rest; None if its parenthesis does not close.
fn split_alignment(text: &str) -> Option<(String, String)> {
    if !text.starts_with("__align__(") {
        return Some((String::new(), text.to_string()));
    }
    let mut depth = 0usize;
    for (i, c) in text.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => {
                depth -= 1;
                if depth == 0 {
                    let rest = text[i + 1..].trim_start().to_string();
                    return Some((format!("{} ", &text[..=i]), rest));
                }
            }
            _ => {}
        }
    }
    None
}

/// `[..][..]...` (or nothing), brackets balanced.
fn is_extents(dims: &str) -> bool {
    let mut depth = 0usize;
    for c in dims.chars() {
        match c {
            '[' => depth += 1,
            ']' if depth == 0 => return false,
            ']' => depth -= 1,
            ' ' => {}
            _ if depth == 0 => return false,
            _ => {}
        }
    }
    depth == 0
}

/// `text` split at each `separator` outside brackets and parentheses.
fn split_top_level(text: &str, separator: char) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0i32, 0);
    for (i, c) in text.char_indices() {
        match c {
            '[' | '(' | '<' => depth += 1,
            ']' | ')' | '>' => depth -= 1,
            c if c == separator && depth == 0 => {
                parts.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&text[start..]);
    parts
}

/// Whitespace runs as one space, trimmed.
fn normalise(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn escape(text: &str) -> String {
    text.replace('\\', "\\\\").replace('"', "\\\"")
}

/// After an `extern` that ends at `from`: if `"C"` follows, where it ends and what
/// replaces the two.
fn extern_c(source: &str, from: usize) -> Option<(usize, &'static str)> {
    let rest = &source[from..];
    let after_space = rest.len() - rest.trim_start().len();
    let literal = rest[after_space..].strip_prefix("\"C\"")?;
    let end = from + after_space + 3;
    let brace = literal.len() - literal.trim_start().len();
    if literal[brace..].starts_with('{') {
        return Some((end + brace + 1, "inline namespace emu_extern_c {"));
    }
    Some((end, ""))
}
