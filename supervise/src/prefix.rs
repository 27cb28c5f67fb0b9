//! Each process's output on stderr, every line behind the process's name, aligned, as honcho
//! and docker compose show it (`app      | ...`).
//!
//! - Read in blocks and written one block at a time (one `write` per block, under stderr's
//!   lock, so that two processes' lines never interleave mid-line): a fast app is not slowed.
//! - A line without a newline is held up to [`MAX_LINE`] bytes, then written in pieces, each
//!   behind the prefix: memory stays bounded whatever the process writes.
//! - Control characters (escape sequences among them) are shown, not sent: `^[`, `^M`, ... A
//!   process's output cannot move the cursor or recolour the user's terminal unless the user
//!   asks for raw output. A `\r` before the newline (Windows line ends) is dropped.

use std::io::{Read, Write};

/// The most a line may hold before it is written in pieces.
pub const MAX_LINE: usize = 16 * 1024;

/// How much is read at once.
const BLOCK: usize = 64 * 1024;

/// The colours the names take in turn, as honcho does.
const PALETTE: [u8; 6] = [36, 33, 35, 32, 34, 31];

/// How lines are shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Style {
    /// Colour the names (on a terminal, unless `NO_COLOR`).
    pub colour: bool,
    /// Pass control characters through as they are.
    pub raw: bool,
}

/// The prefix of the `index`-th process named `name`: the name padded to `width` columns and
/// ` | `, in the index's colour when `colour`.
pub fn label(name: &str, index: usize, colour: bool, width: usize) -> Vec<u8> {
    let plain = format!("{name:<width$} |");
    let mut out = if colour {
        format!("\x1b[{}m{plain}\x1b[0m", PALETTE[index % PALETTE.len()])
    } else {
        plain
    };
    out.push(' ');
    out.into_bytes()
}

/// Copies `input` to `out` line by line, each behind `prefix`, until `input` ends. A last line
/// without a newline gets one. Errors writing (stderr closed) end nothing: the process must
/// still be read, or it would block on a full pipe.
pub fn relay(
    mut input: impl Read,
    prefix: &[u8],
    style: Style,
    secrets: &[Vec<u8>],
    mut out: impl FnMut(&[u8]),
) {
    let mut block = vec![0u8; BLOCK];
    // The start of a line whose end has not come yet.
    let mut pending: Vec<u8> = Vec::new();
    let mut shown: Vec<u8> = Vec::with_capacity(BLOCK + BLOCK / 4);
    loop {
        let n = match input.read(&mut block) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        };
        shown.clear();
        let mut rest = &block[..n];
        while let Some(end) = rest.iter().position(|&b| b == b'\n') {
            let (line, after) = rest.split_at(end);
            if pending.is_empty() {
                push_line(&mut shown, prefix, line, style, secrets);
            } else {
                pending.extend_from_slice(line);
                push_line(&mut shown, prefix, &pending, style, secrets);
                pending.clear();
            }
            rest = &after[1..];
        }
        pending.extend_from_slice(rest);
        while pending.len() >= MAX_LINE {
            let piece: Vec<u8> = pending.drain(..MAX_LINE).collect();
            push_line(&mut shown, prefix, &piece, style, secrets);
        }
        if !shown.is_empty() {
            out(&shown);
        }
    }
    if !pending.is_empty() {
        shown.clear();
        push_line(&mut shown, prefix, &pending, style, secrets);
        out(&shown);
    }
}

/// Writes one whole block to stderr, and to the caller of a redeploy while there is one
/// ([`tee`]).
pub fn to_stderr(block: &[u8]) {
    to_stderr_from(0, block)
}

/// The generation whose processes' lines reach the caller of a redeploy (0: every line).
static TEED: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

/// [`to_stderr`] for a process of generation `tag`: its lines reach a redeploy's caller only
/// when it is the generation that caller asked for (tag 0, what uvsupervise says itself,
/// always does): not the serving generation's request log.
pub fn to_stderr_from(tag: u32, block: &[u8]) {
    let _ = std::io::stderr().lock().write_all(block);
    let teed = TEED.load(std::sync::atomic::Ordering::Relaxed);
    if tag != 0 && teed != 0 && tag != teed {
        return;
    }
    let mut tee = TEE.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(out) = tee.as_mut() {
        if out(block).is_err() {
            // The caller is gone: what follows is not for it.
            *tee = None;
        }
    }
}

/// The secret values of the deployment (as [`crate::children::Children::set_secrets`] last
/// set them), for what the supervisor says itself ([`say`]).
static SECRETS: std::sync::Mutex<Option<std::sync::Arc<Vec<Vec<u8>>>>> =
    std::sync::Mutex::new(None);

pub fn set_secrets(secrets: std::sync::Arc<Vec<Vec<u8>>>) {
    *SECRETS.lock().unwrap_or_else(|e| e.into_inner()) = Some(secrets);
}

/// A line of the supervisor's own on stderr, secrets hidden as in every process's lines.
/// Written, not `eprintln!`ed: a stderr that is gone (`| head`, a closed terminal) must not
/// stop the deployment half-way with a panic.
pub fn say(line: &str) {
    let secrets = SECRETS.lock().unwrap_or_else(|e| e.into_inner()).clone();
    match secrets {
        Some(secrets) => to_stderr(&redact(line.as_bytes(), &secrets)),
        None => to_stderr(line.as_bytes()),
    }
}

type Sink = Box<dyn FnMut(&[u8]) -> std::io::Result<()> + Send>;

static TEE: std::sync::Mutex<Option<Sink>> = std::sync::Mutex::new(None);

/// Everything written to stderr goes to `sink` too (of the processes, those of generation
/// `tag` only), until `tee(None, _)` (or its first error).
pub fn tee(sink: Option<Sink>, tag: u32) {
    TEED.store(tag, std::sync::atomic::Ordering::Relaxed);
    *TEE.lock().unwrap_or_else(|e| e.into_inner()) = sink;
}

fn push_line(out: &mut Vec<u8>, prefix: &[u8], line: &[u8], style: Style, secrets: &[Vec<u8>]) {
    out.extend_from_slice(prefix);
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let redacted;
    let line = if secrets.iter().any(|s| contains(line, s)) {
        redacted = redact(line, secrets);
        &redacted[..]
    } else {
        line
    };
    if style.raw {
        out.extend_from_slice(line);
    } else {
        push_shown(out, line);
    }
    out.push(b'\n');
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

/// `line` with each secret value replaced by `***` (the values longest first).
fn redact(line: &[u8], secrets: &[Vec<u8>]) -> Vec<u8> {
    let mut out = line.to_vec();
    for secret in secrets.iter().filter(|s| !s.is_empty()) {
        let mut next = Vec::with_capacity(out.len());
        let mut i = 0;
        while i < out.len() {
            if out[i..].starts_with(secret) {
                next.extend_from_slice(b"***");
                i += secret.len();
            } else {
                next.push(out[i]);
                i += 1;
            }
        }
        out = next;
    }
    out
}

/// `line` with its control characters in caret notation (`^[` for ESC), and the C1 controls
/// of UTF-8 (U+0080 to U+009F, which some terminals obey) as `\u{9b}`.
fn push_shown(out: &mut Vec<u8>, line: &[u8]) {
    let is_control = |b: u8| (b < 0x20 && b != b'\t') || b == 0x7f || b == 0xc2;
    if !line.iter().any(|&b| is_control(b)) {
        out.extend_from_slice(line);
        return;
    }
    let mut i = 0;
    while i < line.len() {
        let b = line[i];
        match b {
            b'\t' => out.push(b),
            0x00..=0x1f | 0x7f => out.extend_from_slice(&[b'^', b ^ 0x40]),
            0xc2 if matches!(line.get(i + 1), Some(0x80..=0x9f)) => {
                out.extend_from_slice(format!("\\u{{{:x}}}", line[i + 1]).as_bytes());
                i += 1;
            }
            _ => out.push(b),
        }
        i += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shown(input: &[u8], style: Style) -> String {
        let mut out = Vec::new();
        relay(input, b"app | ", style, &[], |block| {
            out.extend_from_slice(block)
        });
        String::from_utf8(out).unwrap()
    }

    const PLAIN: Style = Style {
        colour: false,
        raw: false,
    };

    #[test]
    fn every_line_gets_the_prefix_and_a_last_line_its_newline() {
        assert_eq!(
            shown(b"one\ntwo\r\nthree", PLAIN),
            "app | one\napp | two\napp | three\n"
        );
        assert_eq!(shown(b"", PLAIN), "");
    }

    #[test]
    fn escape_sequences_are_shown_not_sent_unless_raw() {
        let input = "\x1b[2J\x1b]0;title\x07bell\ttab \u{9b}31m\n".as_bytes();
        assert_eq!(
            shown(input, PLAIN),
            "app | ^[[2J^[]0;title^Gbell\ttab \\u{9b}31m\n"
        );
        let raw = Style { raw: true, ..PLAIN };
        assert_eq!(
            shown(input, raw),
            format!("app | {}", String::from_utf8_lossy(input))
        );
        // Text that is not a control is left alone: accents, CJK, emoji.
        assert_eq!(shown("é 日本 🎉\n".as_bytes(), PLAIN), "app | é 日本 🎉\n");
    }

    #[test]
    fn a_line_longer_than_the_limit_is_cut_into_pieces_each_with_the_prefix() {
        let long = vec![b'x'; MAX_LINE * 2 + 10];
        let out = shown(&long, PLAIN);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(lines.iter().all(|l| l.starts_with("app | ")));
        assert_eq!(lines[2], format!("app | {}", "x".repeat(10)));
    }

    /// A reader that hands out one byte at a time: lines split across reads are joined.
    struct Trickle<'a>(&'a [u8]);

    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let Some((&first, rest)) = self.0.split_first() else {
                return Ok(0);
            };
            buf[0] = first;
            self.0 = rest;
            Ok(1)
        }
    }

    #[test]
    fn lines_split_across_reads_come_out_whole() {
        let mut out = Vec::new();
        relay(Trickle(b"ab\ncd\n"), b"w | ", PLAIN, &[], |b| {
            out.extend_from_slice(b)
        });
        assert_eq!(String::from_utf8(out).unwrap(), "w | ab\nw | cd\n");
    }

    #[test]
    fn what_the_supervisor_says_itself_hides_secrets_too_and_reaches_a_tee() {
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let into = seen.clone();
        tee(
            Some(Box::new(move |bytes: &[u8]| {
                into.lock().unwrap().extend_from_slice(bytes);
                Ok(())
            })),
            2,
        );
        set_secrets(std::sync::Arc::new(vec![b"hunter2".to_vec()]));
        say("deploy: cannot use /srv/hunter2/app\n");
        // The serving generation's lines stay on the deployment's own stderr.
        to_stderr_from(1, b"app | GET / 200\n");
        to_stderr_from(2, b"app | listening\n");
        tee(None, 0);
        set_secrets(std::sync::Arc::new(Vec::new()));
        assert_eq!(
            String::from_utf8(seen.lock().unwrap().clone()).unwrap(),
            "deploy: cannot use /srv/***/app\napp | listening\n"
        );
    }

    #[test]
    fn secret_values_are_never_shown() {
        let mut out = Vec::new();
        let secrets = [b"tok-Super Secret".to_vec(), b"pa:ss".to_vec()];
        relay(
            &b"token=tok-Super Secret url=redis://:pa:ss@h\nplain\n"[..],
            b"app | ",
            PLAIN,
            &secrets,
            |b| out.extend_from_slice(b),
        );
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "app | token=*** url=redis://:***@h\napp | plain\n"
        );
    }

    #[test]
    fn names_are_aligned_and_coloured_only_when_asked() {
        assert_eq!(label("app", 0, false, 8), b"app      | ");
        assert_eq!(label("varnish", 1, true, 8), b"\x1b[33mvarnish  |\x1b[0m ");
        assert_eq!(
            label("redirectionio.1", 2, false, 15),
            b"redirectionio.1 | "
        );
    }
}
