//! Caption tokenisation as the official code does it (spec §2.1):
//! `nltk.tokenize.word_tokenize(caption.strip().lower())`, i.e.
//!
//! 1. the Punkt sentence splitter with NLTK's pretrained English model, then
//! 2. NLTK's improved Treebank word tokenizer (`NLTKWordTokenizer`) on each
//!    sentence.
//!
//! Both are ported rule by rule, in NLTK's order, from NLTK 3.10
//! (`nltk/tokenize/destructive.py`, `nltk/tokenize/punkt.py`): each regular
//! expression substitution is one pass below, named after the NLTK rule.
//! The test table was checked against NLTK 3.10.4 run with the English
//! Punkt parameters.
//!
//! Deliberate simplifications (none matters for lower-cased English text):
//! * Punkt only needs two things from its trained English model here, because
//!   the text is lower-cased first: the abbreviation list ([`ABBREVIATIONS`])
//!   and the four lower-case words that the model has seen sentence-initially
//!   in lower case and never capitalised ([`LOWER_SENT_STARTERS`]). Collocations
//!   and frequent sentence starters only act on capitalised words. Upper-case
//!   letters that survive lower-casing (a few symbols) are treated as words the
//!   model has never seen.
//! * Python's `\d` (Unicode decimal digit) is approximated by ASCII digits plus
//!   Rust's `char::is_numeric` for non-ASCII characters.
//! * Older NLTK releases (3.4, when the SCAN vocabularies were built) split
//!   only `...` rather than any run of two or more periods, and did not split
//!   `*` or Unicode dashes; captions with such characters may tokenise
//!   differently there.

use super::vocab::{Vocab, END, START};

/// Tokenises one caption: trims it, lower-cases it, then splits it exactly as
/// NLTK's `word_tokenize` does (Punkt sentences, then Treebank words).
pub fn tokenize(caption: &str) -> Vec<String> {
    let text: Vec<char> = caption.trim_matches(is_space).to_lowercase().chars().collect();
    let mut tokens = Vec::new();
    for range in punkt::sentences(&text) {
        tokens.extend(treebank(&text[range]));
    }
    tokens
}

/// Token ids of a caption as the model reads them: `[<start>] + ids + [<end>]`,
/// out-of-vocabulary words mapped to `<unk>` (3).
pub fn encode(caption: &str, vocab: &Vocab) -> Vec<u32> {
    let mut ids = vec![START];
    ids.extend(tokenize(caption).iter().map(|t| vocab.id(t)));
    ids.push(END);
    ids
}

// ---------------------------------------------------------------------------
// Character classes of Python's `re` (Unicode str patterns).

/// `\s` / `str.isspace()`.
fn is_space(c: char) -> bool {
    c.is_whitespace() || ('\x1c'..='\x1f').contains(&c)
}

/// `\w`: letters, digits, numerics and the underscore.
fn is_word(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// `\d` (approximation, see the module doc).
fn is_digit(c: char) -> bool {
    c.is_ascii_digit() || (!c.is_ascii() && c.is_numeric())
}

fn at(t: &[char], i: usize) -> Option<char> {
    t.get(i).copied()
}

/// Whether `t[i..]` starts with `pat`, comparing ASCII letters case-insensitively.
fn starts_with_ci(t: &[char], i: usize, pat: &str) -> bool {
    (i..).zip(pat.chars()).all(|(k, p)| t.get(k).is_some_and(|c| c.eq_ignore_ascii_case(&p)))
}

/// Whether `t[i..]` starts with `pat` exactly.
fn starts_with(t: &[char], i: usize, pat: &str) -> bool {
    (i..).zip(pat.chars()).all(|(k, p)| t.get(k) == Some(&p))
}

/// `\b` at position `i` of `t`.
fn word_boundary(t: &[char], i: usize) -> bool {
    let before = i > 0 && is_word(t[i - 1]);
    let after = i < t.len() && is_word(t[i]);
    before != after
}

// ---------------------------------------------------------------------------
// Generic passes.

/// Replaces every character for which `pred` holds by ` c `.
fn pad_chars(t: &[char], pred: impl Fn(char) -> bool) -> Vec<char> {
    let mut out = Vec::with_capacity(t.len() + 8);
    for &c in t {
        if pred(c) {
            out.extend([' ', c, ' ']);
        } else {
            out.push(c);
        }
    }
    out
}

/// Replaces every non-overlapping occurrence of `pat` (left to right) by ` pat `.
fn pad_literal(t: &[char], pat: &str) -> Vec<char> {
    let n = pat.chars().count();
    let mut out = Vec::with_capacity(t.len() + 8);
    let mut i = 0;
    while i < t.len() {
        if starts_with(t, i, pat) {
            out.push(' ');
            out.extend_from_slice(&t[i..i + n]);
            out.push(' ');
            i += n;
        } else {
            out.push(t[i]);
            i += 1;
        }
    }
    out
}

/// Replaces every maximal run of `min` or more characters `c` by ` run `.
fn pad_runs(t: &[char], c: char, min: usize) -> Vec<char> {
    let mut out = Vec::with_capacity(t.len() + 8);
    let mut i = 0;
    while i < t.len() {
        let mut j = i;
        while j < t.len() && t[j] == c {
            j += 1;
        }
        if j - i >= min {
            out.push(' ');
            out.extend_from_slice(&t[i..j]);
            out.push(' ');
            i = j;
        } else if j > i {
            out.extend_from_slice(&t[i..j]);
            i = j;
        } else {
            out.push(t[i]);
            i += 1;
        }
    }
    out
}

/// The final-period rules `([^\.])(\.)([<closers>]*)\s*$`, replacement
/// `\1 \2<sep>\3 `: the leftmost non-period character followed by a period
/// after which only closers and then whitespace remain to the end.
fn final_period(t: &[char], closers: &[char], sep: &str) -> Vec<char> {
    for i in 0..t.len().saturating_sub(1) {
        if t[i] == '.' || t[i + 1] != '.' {
            continue;
        }
        let mut j = i + 2;
        while j < t.len() && closers.contains(&t[j]) {
            j += 1;
        }
        if t[j..].iter().all(|&c| is_space(c)) {
            let mut out = t[..=i].to_vec();
            out.push(' ');
            out.push('.');
            out.extend(sep.chars());
            out.extend_from_slice(&t[i + 2..j]);
            out.push(' ');
            return out;
        }
    }
    t.to_vec()
}

// ---------------------------------------------------------------------------
// NLTKWordTokenizer.tokenize, pass by pass.

/// Closing characters of NLTK's first PUNCTUATION rule (note the space).
const CLOSERS_IMPROVED: [char; 10] = [']', ')', '}', '>', '"', '\'', '»', '”', '’', ' '];
/// Closing characters of the Treebank final-period rule.
const CLOSERS_TREEBANK: [char; 6] = [']', ')', '}', '>', '"', '\''];

/// Splits one sentence into Treebank tokens.
fn treebank(sentence: &[char]) -> Vec<String> {
    let mut t = sentence.to_vec();

    // ---- STARTING_QUOTES
    // ([«“‘„]|[`]+) -> " \1 "
    t = pad_chars(&t, |c| matches!(c, '«' | '“' | '‘' | '„'));
    t = pad_runs(&t, '`', 1);
    // ^\" -> ``
    if t.first() == Some(&'"') {
        t.splice(0..1, ['`', '`']);
    }
    // (``) -> " \1 "
    t = pad_literal(&t, "``");
    // ([ \(\[{<])(\"|\'{2}) -> "\1 `` "
    t = open_quote_after_bracket(&t);
    // (?i)(?<!\w)(\')(?!(?:re|ve|ll|m|t|s|d|n)\b)(?=\w) -> "\1 "
    t = split_opening_apostrophe(&t);

    // ---- PUNCTUATION
    // ([^\.])(\.)([\]\)}>"\'»”’ ]*+)\s*$ -> "\1 \2 \3 "
    t = final_period(&t, &CLOSERS_IMPROVED, " ");
    // ([:,])([^\d]) -> " \1 \2"
    t = split_colon_comma(&t);
    // ([:,])$ -> " \1 "
    if matches!(t.last(), Some(':' | ',')) {
        let c = t.pop().unwrap_or(',');
        t.extend([' ', c, ' ']);
    }
    // \.{2,} -> " \g<0> "
    t = pad_runs(&t, '.', 2);
    // [;@#$%&] -> " \g<0> "
    t = pad_chars(&t, |c| matches!(c, ';' | '@' | '#' | '$' | '%' | '&'));
    // [\u2012-\u2015] -> " \g<0> "
    t = pad_chars(&t, |c| ('\u{2012}'..='\u{2015}').contains(&c));
    // ([^\.])(\.)([\]\)}>"\']*)\s*$ -> "\1 \2\3 "
    t = final_period(&t, &CLOSERS_TREEBANK, "");
    // [?!] -> " \g<0> "
    t = pad_chars(&t, |c| c == '?' || c == '!');
    // ([^'])' -> "\1 ' "
    t = split_apostrophe_space(&t);
    // [*] -> " \g<0> "
    t = pad_chars(&t, |c| c == '*');

    // ---- PARENS_BRACKETS, DOUBLE_DASHES
    t = pad_chars(&t, |c| matches!(c, ']' | '[' | '(' | ')' | '{' | '}' | '<' | '>'));
    t = pad_literal(&t, "--");

    // add extra space to make things easier
    t.insert(0, ' ');
    t.push(' ');

    // ---- ENDING_QUOTES
    // ([»”’]) -> " \1 "
    t = pad_chars(&t, |c| matches!(c, '»' | '”' | '’'));
    // '' -> " '' "
    t = pad_literal(&t, "''");
    // " -> " '' "
    t = t.iter().flat_map(|&c| if c == '"' { vec![' ', '\'', '\'', ' '] } else { vec![c] }).collect();
    // \s+ -> " "
    t = collapse_spaces(&t);
    // ([^' ])('[sS]|'[mM]|'[dD]|') -> "\1 \2 "
    t = split_clitic(&t, &["'s", "'S", "'m", "'M", "'d", "'D", "'"]);
    // ([^' ])('ll|'LL|'re|'RE|'ve|'VE|n't|N'T) -> "\1 \2 "
    t = split_clitic(&t, &["'ll", "'LL", "'re", "'RE", "'ve", "'VE", "n't", "N'T"]);

    // ---- CONTRACTIONS2 (MacIntyre), case-insensitive: \b(A)(B)\b -> " \1 \2 "
    for (a, b) in
        [("can", "not"), ("d", "'ye"), ("gim", "me"), ("gon", "na"), ("got", "ta"), ("lem", "me"), ("more", "'n")]
    {
        t = split_contraction(&t, a, b, false);
    }
    // \b(wan)(na)(?=\s)
    t = split_contraction(&t, "wan", "na", true);
    // ---- CONTRACTIONS3: " ('t)(is)\b" and " ('t)(was)\b" -> " \1 \2 "
    t = split_t_is(&t, "is");
    t = split_t_is(&t, "was");

    t.split(|&c| is_space(c)).filter(|w| !w.is_empty()).map(|w| w.iter().collect()).collect()
}

/// `([ \(\[{<])(\"|\'{2})` -> `\1 `` `.
fn open_quote_after_bracket(t: &[char]) -> Vec<char> {
    let mut out = Vec::with_capacity(t.len() + 8);
    let mut i = 0;
    while i < t.len() {
        if matches!(t[i], ' ' | '(' | '[' | '{' | '<') {
            let quote_len = match (at(t, i + 1), at(t, i + 2)) {
                (Some('"'), _) => 1,
                (Some('\''), Some('\'')) => 2,
                _ => 0,
            };
            if quote_len > 0 {
                out.extend([t[i], ' ', '`', '`', ' ']);
                i += 1 + quote_len;
                continue;
            }
        }
        out.push(t[i]);
        i += 1;
    }
    out
}

/// `(?i)(?<!\w)(\')(?!(?:re|ve|ll|m|t|s|d|n)\b)(?=\w)` -> `\1 `: an apostrophe
/// opening a word (not a clitic) is split from it.
fn split_opening_apostrophe(t: &[char]) -> Vec<char> {
    let mut out = Vec::with_capacity(t.len() + 8);
    for (i, &c) in t.iter().enumerate() {
        out.push(c);
        if c != '\'' || (i > 0 && is_word(t[i - 1])) || !at(t, i + 1).is_some_and(is_word) {
            continue;
        }
        let clitic = ["re", "ve", "ll", "m", "t", "s", "d", "n"]
            .iter()
            .any(|p| starts_with_ci(t, i + 1, p) && word_boundary(t, i + 1 + p.len()));
        if !clitic {
            out.push(' ');
        }
    }
    out
}

/// `([:,])([^\d])` -> ` \1 \2`.
fn split_colon_comma(t: &[char]) -> Vec<char> {
    let mut out = Vec::with_capacity(t.len() + 8);
    let mut i = 0;
    while i < t.len() {
        if matches!(t[i], ':' | ',') && at(t, i + 1).is_some_and(|c| !is_digit(c)) {
            out.extend([' ', t[i], ' ', t[i + 1]]);
            i += 2;
        } else {
            out.push(t[i]);
            i += 1;
        }
    }
    out
}

/// `([^'])' ` -> `\1 ' `.
fn split_apostrophe_space(t: &[char]) -> Vec<char> {
    let mut out = Vec::with_capacity(t.len() + 8);
    let mut i = 0;
    while i < t.len() {
        if t[i] != '\'' && at(t, i + 1) == Some('\'') && at(t, i + 2) == Some(' ') {
            out.extend([t[i], ' ', '\'', ' ']);
            i += 3;
        } else {
            out.push(t[i]);
            i += 1;
        }
    }
    out
}

/// `\s+` -> ` `.
fn collapse_spaces(t: &[char]) -> Vec<char> {
    let mut out = Vec::with_capacity(t.len());
    for &c in t {
        if is_space(c) {
            if out.last() != Some(&' ') {
                out.push(' ');
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// `([^' ])(alt1|alt2|...) ` -> `\1 \2 `, alternatives tried in order.
fn split_clitic(t: &[char], alternatives: &[&str]) -> Vec<char> {
    let mut out = Vec::with_capacity(t.len() + 8);
    let mut i = 0;
    'scan: while i < t.len() {
        if t[i] != '\'' && t[i] != ' ' {
            for alt in alternatives {
                let n = alt.chars().count();
                if starts_with(t, i + 1, alt) && at(t, i + 1 + n) == Some(' ') {
                    out.extend([t[i], ' ']);
                    out.extend_from_slice(&t[i + 1..i + 1 + n]);
                    out.push(' ');
                    i += n + 2;
                    continue 'scan;
                }
            }
        }
        out.push(t[i]);
        i += 1;
    }
    out
}

/// `(?i)\b(a)(b)\b` -> ` \1 \2 ` (with `(?=\s)` instead of the final `\b`
/// when `space_after`).
fn split_contraction(t: &[char], a: &str, b: &str, space_after: bool) -> Vec<char> {
    let (na, nb) = (a.chars().count(), b.chars().count());
    let mut out = Vec::with_capacity(t.len() + 8);
    let mut i = 0;
    while i < t.len() {
        let end = i + na + nb;
        let matched = word_boundary(t, i)
            && starts_with_ci(t, i, a)
            && starts_with_ci(t, i + na, b)
            && if space_after { at(t, end).is_some_and(is_space) } else { word_boundary(t, end) };
        if matched {
            out.push(' ');
            out.extend_from_slice(&t[i..i + na]);
            out.push(' ');
            out.extend_from_slice(&t[i + na..end]);
            out.push(' ');
            i = end;
        } else {
            out.push(t[i]);
            i += 1;
        }
    }
    out
}

/// `(?i) ('t)(is)\b` -> ` \1 \2 ` ("'tis", "'twas").
fn split_t_is(t: &[char], rest: &str) -> Vec<char> {
    let n = rest.len();
    let mut out = Vec::with_capacity(t.len() + 8);
    let mut i = 0;
    while i < t.len() {
        let end = i + 3 + n;
        if t[i] == ' ' && starts_with_ci(t, i + 1, "'t") && starts_with_ci(t, i + 3, rest) && word_boundary(t, end) {
            out.push(' ');
            out.extend_from_slice(&t[i + 1..i + 3]);
            out.push(' ');
            out.extend_from_slice(&t[i + 3..end]);
            out.push(' ');
            i = end;
        } else {
            out.push(t[i]);
            i += 1;
        }
    }
    out
}

// ---------------------------------------------------------------------------
// Punkt sentence splitting (PunktSentenceTokenizer.span_tokenize).

/// Abbreviations of NLTK's English Punkt model (`abbrev_types`, which lists
/// them without their final period).
pub const ABBREVIATIONS: [&str; 156] = [
    ". . ", "a.a", "a.c", "a.d", "a.g", "a.h", "a.m", "a.m.e", "a.s", "a.t", "adm", "ala", "ariz", "aug", "ave", "b.f",
    "b.v", "bros", "c", "c.i.t", "c.o.m.b", "c.v", "calif", "chg", "cie", "co", "col", "colo", "conn", "corp", "cos",
    "ct", "d", "d.c", "d.h", "d.w", "dec", "dr", "e", "e.f", "e.h", "e.l", "e.m", "f", "f.g", "f.j", "feb", "fla",
    "fri", "ft", "g", "g.d", "g.f", "g.k", "ga", "gen", "h", "h.c", "h.f", "h.m", "i.m.s", "ill", "inc", "j.b", "j.c",
    "j.j", "j.k", "j.p", "j.r", "jan", "jr", "k", "kan", "ky", "l", "l.a", "l.f", "l.p", "lt", "ltd", "m", "m.b.a",
    "m.d.c", "m.j", "maj", "messrs", "mg", "mich", "minn", "mr", "mrs", "ms", "n", "n.c", "n.d", "n.h", "n.j", "n.m",
    "n.v", "n.y", "nev", "nov", "oct", "ok", "okla", "ore", "p", "p.a.m", "p.m", "pa", "ph.d", "prof", "r", "r.a",
    "r.h", "r.i", "r.j", "r.k", "r.t", "rep", "reps", "s", "s.a", "s.a.y", "s.c", "s.g", "s.p.a", "s.s", "sen", "sep",
    "sept", "sr", "st", "sw", "t", "t.j", "tenn", "tues", "u.k", "u.n", "u.s", "u.s.a", "u.s.s.r", "v", "va", "vs",
    "vt", "w", "w.c", "w.r", "w.va", "w.w", "wash", "wed", "wis", "yr",
];

/// Word types of the English Punkt model's orthographic context that were
/// seen lower-case at a sentence start and never capitalised: the only
/// lower-case words after which an initial ("a.") or a number ("5.") still
/// ends a sentence.
pub const LOWER_SENT_STARTERS: [&str; 4] = ["administrators", "b-week", "r-revised", "z-holiday"];

mod punkt {
    use super::{is_digit, is_space, is_word, ABBREVIATIONS, LOWER_SENT_STARTERS};
    use std::ops::Range;

    /// `string.whitespace`, which NLTK uses to find the word before a period.
    fn is_ascii_ws(c: char) -> bool {
        matches!(c, ' ' | '\t' | '\n' | '\r' | '\x0b' | '\x0c')
    }

    /// `_re_non_word_chars`: characters that cannot appear within words.
    fn is_non_word(c: char) -> bool {
        matches!(
            c,
            ')' | '"'
                | ';'
                | '}'
                | ']'
                | '*'
                | ':'
                | '@'
                | '\''
                | '('
                | '{'
                | '['
                | '‘'
                | '’'
                | '“'
                | '”'
                | '«'
                | '»'
                | '?'
                | '!'
        )
    }

    /// `_re_word_start`: characters that may start a word token.
    fn is_word_start(c: char) -> bool {
        !matches!(c, '(' | '"' | '`' | '{' | '[' | ':' | ';' | '&' | '#' | '*' | '@' | ')' | '}' | ']' | '-' | ',')
    }

    /// `_re_multi_char_punct` = `(?:\-{2,}|\.{2,}|(?:\.\s){2,}\.)` at `i`: its end.
    fn multi_char(t: &[char], i: usize) -> Option<usize> {
        let run = |c: char| t[i..].iter().take_while(|&&x| x == c).count();
        if run('-') >= 2 {
            return Some(i + run('-'));
        }
        if run('.') >= 2 {
            return Some(i + run('.'));
        }
        let mut reps = 0;
        while t.get(i + 2 * reps) == Some(&'.') && t.get(i + 2 * reps + 1).is_some_and(|&c| is_space(c)) {
            reps += 1;
        }
        if reps >= 2 && t.get(i + 2 * reps) == Some(&'.') {
            Some(i + 2 * reps + 1)
        } else if reps >= 3 {
            Some(i + 2 * reps - 1)
        } else {
            None
        }
    }

    /// The lookahead that ends a word token at `e`.
    fn word_ends_at(t: &[char], e: usize) -> bool {
        match t.get(e) {
            None => true,
            Some(&c) if is_space(c) || is_non_word(c) => true,
            Some(_) if multi_char(t, e).is_some() => true,
            Some(',') => match t.get(e + 1) {
                None => true,
                Some(&d) => is_space(d) || is_non_word(d) || multi_char(t, e + 1).is_some(),
            },
            _ => false,
        }
    }

    /// `PunktLanguageVars.word_tokenize` (`_word_tokenize_fmt`) on one line.
    fn words(t: &[char]) -> Vec<String> {
        let mut out = Vec::new();
        let mut i = 0;
        while i < t.len() {
            if is_space(t[i]) {
                i += 1;
                continue;
            }
            let end = if let Some(e) = multi_char(t, i) {
                e
            } else if is_word_start(t[i]) {
                let mut e = i + 1;
                while !word_ends_at(t, e) {
                    e += 1;
                }
                e
            } else {
                i + 1
            };
            out.push(t[i..end].iter().collect());
            i = end;
        }
        out
    }

    #[derive(Debug)]
    struct Token {
        tok: String,
        /// Lower-cased text, or `##number##` for numbers.
        typ: String,
        period_final: bool,
        sentbreak: bool,
        abbr: bool,
        ellipsis: bool,
    }

    /// `_RE_NUMERIC` = `^-?[\.,]?\d[\d,\.-]*\.?$`.
    fn is_number(s: &str) -> bool {
        let c: Vec<char> = s.chars().collect();
        let mut i = 0;
        if c.get(i) == Some(&'-') {
            i += 1;
        }
        if matches!(c.get(i), Some('.' | ',')) {
            i += 1;
        }
        if !c.get(i).is_some_and(|&d| is_digit(d)) {
            return false;
        }
        c[i + 1..].iter().all(|&d| is_digit(d) || matches!(d, ',' | '.' | '-'))
    }

    impl Token {
        fn new(tok: String) -> Self {
            let lower = tok.to_lowercase();
            let typ = if is_number(&lower) { "##number##".to_string() } else { lower };
            let period_final = tok.ends_with('.');
            Token { tok, typ, period_final, sentbreak: false, abbr: false, ellipsis: false }
        }
        fn type_no_period(&self) -> &str {
            if self.typ.chars().count() > 1 && self.typ.ends_with('.') {
                &self.typ[..self.typ.len() - 1]
            } else {
                &self.typ
            }
        }
        fn type_no_sentperiod(&self) -> &str {
            if self.sentbreak {
                self.type_no_period()
            } else {
                &self.typ
            }
        }
        fn first_upper(&self) -> bool {
            self.tok.chars().next().is_some_and(char::is_uppercase)
        }
        fn first_lower(&self) -> bool {
            self.tok.chars().next().is_some_and(char::is_lowercase)
        }
        /// `_RE_INITIAL` = `[^\W\d]\.$` (matched at the start).
        fn is_initial(&self) -> bool {
            let c: Vec<char> = self.tok.chars().collect();
            c.len() == 2 && is_word(c[0]) && !is_digit(c[0]) && c[1] == '.'
        }
        /// `_RE_ELLIPSIS` = `\.\.+$` (matched at the start).
        fn is_ellipsis(&self) -> bool {
            self.tok.len() >= 2 && self.tok.chars().all(|c| c == '.')
        }
    }

    fn is_abbreviation(word: &str) -> bool {
        ABBREVIATIONS.contains(&word)
    }

    /// `_first_pass_annotation`.
    fn first_pass(tok: &mut Token) {
        if matches!(tok.tok.as_str(), "." | "?" | "!") {
            tok.sentbreak = true;
        } else if tok.is_ellipsis() {
            tok.ellipsis = true;
        } else if tok.period_final && !tok.tok.ends_with("..") {
            let stem = tok.tok[..tok.tok.len() - 1].to_lowercase();
            let last = stem.rsplit('-').next().unwrap_or("");
            if is_abbreviation(&stem) || is_abbreviation(last) {
                tok.abbr = true;
            } else {
                tok.sentbreak = true;
            }
        }
    }

    /// Answers of the orthographic heuristic; "starter" never occurs for
    /// lower-cased text.
    #[derive(PartialEq)]
    enum Ortho {
        NotStarter,
        Unknown,
    }

    /// `_ortho_heuristic` for lower-cased text (see the module doc).
    fn ortho_heuristic(tok: &Token) -> Ortho {
        if matches!(tok.tok.as_str(), ";" | ":" | "," | "." | "!" | "?") {
            return Ortho::NotStarter;
        }
        if tok.first_lower() && !LOWER_SENT_STARTERS.contains(&tok.type_no_sentperiod()) {
            return Ortho::NotStarter;
        }
        Ortho::Unknown
    }

    /// `_second_pass_annotation` of `tok1` given the following token.
    fn second_pass(tok1: &mut Token, tok2: &Token) {
        if !tok1.period_final {
            return;
        }
        let is_initial = tok1.is_initial();
        // Collocations, and the sentence-starter and capitalised-initial
        // heuristics, only fire for capitalised words: never here.
        if (tok1.abbr || tok1.ellipsis) && !is_initial {
            // The orthographic heuristic never says "starter" for lower-case
            // text, so an abbreviation or ellipsis stays inside the sentence.
            return;
        }
        if (is_initial || tok1.type_no_period() == "##number##") && ortho_heuristic(tok2) == Ortho::NotStarter {
            tok1.sentbreak = false;
            tok1.abbr = true;
        } else if is_initial && tok2.first_upper() && ortho_heuristic(tok2) == Ortho::Unknown {
            // Upper-case word never seen by the model: "J. Bach" rule.
            tok1.sentbreak = false;
            tok1.abbr = true;
        }
    }

    /// `text_contains_sentbreak`: whether a token other than the last one
    /// ends a sentence.
    fn contains_sentbreak(context: &[char]) -> bool {
        let mut tokens: Vec<Token> = Vec::new();
        for line in context.split(|&c| c == '\n') {
            tokens.extend(words(line).into_iter().map(Token::new));
        }
        for tok in tokens.iter_mut() {
            first_pass(tok);
        }
        for k in 0..tokens.len().saturating_sub(1) {
            let (head, tail) = tokens.split_at_mut(k + 1);
            second_pass(&mut head[k], &tail[0]);
            if head[k].sentbreak {
                return true;
            }
        }
        false
    }

    /// A potential sentence end (`_period_context_fmt`).
    struct EndContext {
        /// Index of the `.`, `?` or `!`.
        at: usize,
        /// End of `after_tok` (the following punctuation, or whitespace and the next token).
        after_end: usize,
        /// Start of `next_tok` when the end is followed by whitespace.
        next_tok: Option<usize>,
    }

    fn potential_ends(t: &[char]) -> Vec<EndContext> {
        let mut out = Vec::new();
        for i in 0..t.len() {
            if !matches!(t[i], '.' | '?' | '!') {
                continue;
            }
            match t.get(i + 1) {
                Some(&c) if is_non_word(c) => out.push(EndContext { at: i, after_end: i + 2, next_tok: None }),
                Some(&c) if is_space(c) => {
                    let mut k = i + 1;
                    while k < t.len() && is_space(t[k]) {
                        k += 1;
                    }
                    if k < t.len() {
                        let mut e = k;
                        while e < t.len() && !is_space(t[e]) {
                            e += 1;
                        }
                        out.push(EndContext { at: i, after_end: e, next_tok: Some(k) });
                    }
                }
                _ => {}
            }
        }
        out
    }

    /// `_match_potential_end_contexts`: each potential end with its context
    /// (the word before it, itself and what follows); of several ends inside
    /// one word only the last is kept.
    fn end_contexts(t: &[char]) -> Vec<(EndContext, Range<usize>)> {
        let mut out = Vec::new();
        let mut prev: Option<(EndContext, Range<usize>)> = None;
        let mut prev_word = 0..0;
        for end in potential_ends(t) {
            let before = &t[prev_word.end..end.at];
            let last_ws = before.iter().rposition(|&c| is_ascii_ws(c)).unwrap_or(0);
            let start = if last_ws != 0 { prev_word.end + last_ws + 1 } else { prev_word.start };
            let word = start..end.at;
            if let Some(p) = prev.take() {
                if prev_word.end <= word.start {
                    out.push(p);
                }
            }
            prev_word = word.clone();
            let context = word.start..end.after_end;
            prev = Some((end, context));
        }
        out.extend(prev);
        out
    }

    /// `re_boundary_realignment` = `["\')\]}‘’“”«»]+?(?:\s+|(?=--)|$)` matched
    /// at the start of `s`: (length of the closing characters, match end).
    fn realignment(s: &[char]) -> Option<(usize, usize)> {
        let closing = |c: char| matches!(c, '"' | '\'' | ')' | ']' | '}' | '‘' | '’' | '“' | '”' | '«' | '»');
        let mut k = 0;
        while k < s.len() && closing(s[k]) {
            k += 1;
            let rest = &s[k..];
            if rest.first().is_some_and(|&c| is_space(c)) {
                let spaces = rest.iter().take_while(|&&c| is_space(c)).count();
                return Some((k, k + spaces));
            }
            if rest.starts_with(&['-', '-']) || rest.is_empty() {
                return Some((k, k));
            }
        }
        None
    }

    /// Sentence spans of `t` (`PunktSentenceTokenizer.span_tokenize` with
    /// boundary realignment).
    pub fn sentences(t: &[char]) -> Vec<Range<usize>> {
        let mut slices = Vec::new();
        let mut last_break = 0;
        for (end, context) in end_contexts(t) {
            if contains_sentbreak(&t[context]) {
                slices.push(last_break..end.at + 1);
                last_break = end.next_tok.unwrap_or(end.at + 1);
            }
        }
        let stripped = t.len() - t.iter().rev().take_while(|&&c| is_space(c)).count();
        slices.push(last_break..stripped);

        // _realign_boundaries
        let mut out = Vec::new();
        let mut realign = 0;
        for k in 0..slices.len() {
            let s1 = (slices[k].start + realign).min(slices[k].end)..slices[k].end;
            let Some(s2) = slices.get(k + 1) else {
                if !s1.is_empty() {
                    out.push(s1);
                }
                continue;
            };
            let s2_text = if s2.start <= s2.end { &t[s2.clone()] } else { &[][..] };
            if let Some((len, end)) = realignment(s2_text) {
                out.push(s1.start..s2.start + len);
                realign = end;
            } else {
                realign = 0;
                if !s1.is_empty() {
                    out.push(s1);
                }
            }
        }
        out
    }

    #[cfg(test)]
    pub(super) fn sentence_strings(text: &str) -> Vec<String> {
        let t: Vec<char> = text.chars().collect();
        sentences(&t).into_iter().map(|r| t[r].iter().collect()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (caption as written, expected `word_tokenize(caption.strip().lower())`).
    /// Expected outputs checked against NLTK 3.10.4 with the English Punkt model.
    const CASES: &[(&str, &[&str])] = &[
        (
            "Two young guys with shaggy hair look at their hands while hanging out in the yard.",
            &[
                "two", "young", "guys", "with", "shaggy", "hair", "look", "at", "their", "hands", "while", "hanging",
                "out", "in", "the", "yard", ".",
            ],
        ),
        (
            "A man in a blue t-shirt doesn't smile.",
            &["a", "man", "in", "a", "blue", "t-shirt", "does", "n't", "smile", "."],
        ),
        ("The dog's owner can't catch it!", &["the", "dog", "'s", "owner", "ca", "n't", "catch", "it", "!"]),
        (
            "Several men in hard hats are operating a giant pulley system .",
            &["several", "men", "in", "hard", "hats", "are", "operating", "a", "giant", "pulley", "system", "."],
        ),
        (
            "A child in a pink dress is climbing up a set of stairs in an entry way.",
            &[
                "a", "child", "in", "a", "pink", "dress", "is", "climbing", "up", "a", "set", "of", "stairs", "in",
                "an", "entry", "way", ".",
            ],
        ),
        (
            "A man, a woman, and a dog walk on the beach; they're happy.",
            &[
                "a", "man", ",", "a", "woman", ",", "and", "a", "dog", "walk", "on", "the", "beach", ";", "they",
                "'re", "happy", ".",
            ],
        ),
        ("A sign reads \"Open 24 hours\".", &["a", "sign", "reads", "``", "open", "24", "hours", "''", "."]),
        ("\"Stop\" is written on the red sign", &["``", "stop", "''", "is", "written", "on", "the", "red", "sign"]),
        (
            "A boy (wearing a hat) jumps over a log.",
            &["a", "boy", "(", "wearing", "a", "hat", ")", "jumps", "over", "a", "log", "."],
        ),
        (
            "The U.S. flag waves above St. Mary's church.",
            &["the", "u.s.", "flag", "waves", "above", "st.", "mary", "'s", "church", "."],
        ),
        (
            "A man holds a sign that says $3.50 & a smile.",
            &["a", "man", "holds", "a", "sign", "that", "says", "$", "3.50", "&", "a", "smile", "."],
        ),
        ("A woman is waiting... for the bus.", &["a", "woman", "is", "waiting", "...", "for", "the", "bus", "."]),
        ("Dogs run. A cat sleeps on the sofa.", &["dogs", "run", ".", "a", "cat", "sleeps", "on", "the", "sofa", "."]),
        (
            "I'll be there, we've said, and I'm sure you'd agree.",
            &[
                "i", "'ll", "be", "there", ",", "we", "'ve", "said", ",", "and", "i", "'m", "sure", "you", "'d",
                "agree", ".",
            ],
        ),
        (
            "A man wearing a number 5 jersey: he is running at 10:30",
            &["a", "man", "wearing", "a", "number", "5", "jersey", ":", "he", "is", "running", "at", "10:30"],
        ),
        ("Is the man on the left smiling?", &["is", "the", "man", "on", "the", "left", "smiling", "?"]),
        (
            "A crowd of 1,000 people watch the parade [downtown] {maybe}",
            &["a", "crowd", "of", "1,000", "people", "watch", "the", "parade", "[", "downtown", "]", "{", "maybe", "}"],
        ),
        (
            "The players' uniforms are red -- and white",
            &["the", "players", "'", "uniforms", "are", "red", "--", "and", "white"],
        ),
        (
            "A man who cannot swim is gonna jump in.",
            &["a", "man", "who", "can", "not", "swim", "is", "gon", "na", "jump", "in", "."],
        ),
        (
            "Two women in 'traditional' dress dance.",
            &["two", "women", "in", "'", "traditional", "'", "dress", "dance", "."],
        ),
        ("The letter a. is painted on the wall", &["the", "letter", "a.", "is", "painted", "on", "the", "wall"]),
        (
            "A brown dog is running through the grass.   ",
            &["a", "brown", "dog", "is", "running", "through", "the", "grass", "."],
        ),
        ("The dog is ok. It runs.", &["the", "dog", "is", "ok.", "it", "runs", "."]),
        ("He shouted \"go!\" and ran.", &["he", "shouted", "``", "go", "!", "''", "and", "ran", "."]),
        (
            "A 3.5 year old girl eats a hot-dog at 5 p.m. today.",
            &["a", "3.5", "year", "old", "girl", "eats", "a", "hot-dog", "at", "5", "p.m.", "today", "."],
        ),
        (
            "Is it raining? Yes, a man holds an umbrella!",
            &["is", "it", "raining", "?", "yes", ",", "a", "man", "holds", "an", "umbrella", "!"],
        ),
        (
            "A man with a shirt that says: \"I love NY\"",
            &["a", "man", "with", "a", "shirt", "that", "says", ":", "``", "i", "love", "ny", "''"],
        ),
        ("People at a café in Zürich.", &["people", "at", "a", "café", "in", "zürich", "."]),
        (
            "A girl (age 5.) plays. Her mom watches.",
            &["a", "girl", "(", "age", "5", ".", ")", "plays", ".", "her", "mom", "watches", "."],
        ),
        ("Men wanna play ball 'til dark.", &["men", "wan", "na", "play", "ball", "'", "til", "dark", "."]),
        (
            "A dog.. a cat... 100% cute #pets @home *wow*",
            &["a", "dog", "..", "a", "cat", "...", "100", "%", "cute", "#", "pets", "@", "home", "*", "wow", "*"],
        ),
    ];

    #[test]
    fn matches_nltk_word_tokenize() {
        let mut failures = Vec::new();
        for (caption, expected) in CASES {
            let got = tokenize(caption);
            if got != *expected {
                failures.push(format!("caption {caption:?}\n  expected {expected:?}\n  got      {got:?}"));
            }
        }
        assert!(failures.is_empty(), "{} of {} captions differ:\n{}", failures.len(), CASES.len(), failures.join("\n"));
    }

    #[test]
    fn sentence_splitting_follows_punkt() {
        let cases: &[(&str, &[&str])] = &[
            ("a dog runs. a cat sleeps.", &["a dog runs.", "a cat sleeps."]),
            ("mr. smith walks. st. mary's is near.", &["mr. smith walks.", "st. mary's is near."]),
            ("number 5. a man", &["number 5. a man"]),
            ("a girl (age 5.) plays. her mom", &["a girl (age 5.)", "plays.", "her mom"]),
            ("he said \"go.\" then left", &["he said \"go.\"", "then left"]),
            ("what? no! yes", &["what?", "no!", "yes"]),
            ("   ", &[]),
        ];
        for (text, expected) in cases {
            assert_eq!(punkt::sentence_strings(text), *expected, "sentences of {text:?}");
        }
    }

    #[test]
    fn empty_and_blank_captions() {
        assert!(tokenize("").is_empty());
        assert!(tokenize("  \t ").is_empty());
        assert_eq!(tokenize("."), vec!["."]);
    }

    #[test]
    fn encode_wraps_with_start_and_end() {
        let vocab = Vocab::from_json_str(
            r#"{"idx2word": {"0": "<pad>", "1": "<start>", "2": "<end>", "3": "<unk>", "4": "a", "5": "dog", "6": "."},
                "word2idx": {"<pad>": 0, "<start>": 1, "<end>": 2, "<unk>": 3, "a": 4, "dog": 5, ".": 6}, "idx": 7}"#,
        )
        .unwrap();
        assert_eq!(encode("A dog.", &vocab), vec![1, 4, 5, 6, 2]);
        assert_eq!(encode("A purple dog!", &vocab), vec![1, 4, 3, 5, 3, 2]);
        assert_eq!(encode("", &vocab), vec![1, 2]);
    }
}
