//! `-R`: rules from standard input, one command line per line, as `-S`
//! writes them.
//!
//! Like ipvsadm's restore (which runs itself once per line): words are
//! split on blanks, a word `ipvsadm` (or `rvsadm`) is dropped so shell-style
//! lines work too, blank lines are skipped. rvsadm also skips comments: from
//! a word starting with `#` to the end of the line.
//!
//! A line that does not parse stops the restore with its error (ipvsadm
//! exits there too), as does `-R` inside the input. A line the table
//! refuses (e.g. `Service already exists`) is reported and the next line is
//! read, as ipvsadm does; unlike ipvsadm, whose exit code is that of the
//! last line, the exit code is that of the last refused line, so a failure
//! is never hidden. Every message starts with `line N: `.

use super::args::{self, Command};
use super::{execute, Model, Output};
use std::io::BufRead;

/// Reads `input` to its end and applies each line to `model`. Output of
/// listing lines (`-L`, `-S`) goes to the returned stdout.
pub fn restore(model: &mut Model, input: impl BufRead) -> Output {
    let mut output = Output::default();
    for (index, line) in input.lines().enumerate() {
        let number = index + 1;
        let line = match line {
            Ok(line) => line,
            Err(err) => {
                output.fail(number, &format!("cannot read the rules: {err}"), 255);
                return output;
            }
        };
        let words = line_words(&line);
        if words.is_empty() {
            continue;
        }
        let command = match args::parse(&words) {
            Ok(Command::Restore) => Err(args::try_help()),
            parsed => parsed,
        };
        match command {
            Err(err) => {
                output.fail(number, &err.message, err.code);
                return output;
            }
            Ok(command) => {
                let result = execute(&command, model);
                output.stdout.push_str(&result.stdout);
                if result.code != 0 {
                    output.fail(number, result.stderr.trim_end_matches('\n'), result.code);
                }
            }
        }
    }
    output
}

/// The command-line words of one line of rules.
fn line_words(line: &str) -> Vec<String> {
    line.split([' ', '\t', '\r'])
        .filter(|word| !word.is_empty())
        .take_while(|word| !word.starts_with('#'))
        .filter(|word| *word != "ipvsadm" && *word != "rvsadm")
        .map(str::to_string)
        .collect()
}

impl Output {
    fn fail(&mut self, line: usize, message: &str, code: i32) {
        self.stderr.push_str(&format!("line {line}: {message}\n"));
        self.code = code;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_skip_blanks_comments_and_the_program_name() {
        assert_eq!(
            line_words("ipvsadm  -A\t-t 198.18.0.100:80 -s rr\r # the web"),
            vec!["-A", "-t", "198.18.0.100:80", "-s", "rr"]
        );
        assert!(line_words("   # only a comment").is_empty());
        assert!(line_words("").is_empty());
        assert_eq!(line_words("rvsadm -C#x"), vec!["-C#x"]);
    }
}
