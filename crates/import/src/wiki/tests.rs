use std::time::{Duration, Instant};

use super::jira_wiki_to_markdown as convert;

#[test]
fn headings_convert() {
    assert_eq!(convert("h1. Title\nh3. *Sub*"), "# Title\n### **Sub**");
}

#[test]
fn plain_text_passes_through() {
    assert_eq!(convert("just text\r\n\r\nnext"), "just text\n\nnext");
}

#[test]
fn leading_spaces_are_dropped() {
    assert_eq!(convert("    indented"), "indented");
}

#[test]
fn bullets_nest_with_indentation() {
    let input = "* one\n** two\n*** three\n- dash";

    assert_eq!(convert(input), "- one\n  - two\n    - three\n- dash");
}

#[test]
fn numbered_lists_nest_with_indentation() {
    let input = "# first\n## inner\n#* bullet";

    assert_eq!(convert(input), "1. first\n   1. inner\n   - bullet");
}

#[test]
fn code_block_keeps_contents() {
    let input = "before\n{code:java}\nint *a* = [~x];\n{code}\nafter";

    assert_eq!(
        convert(input),
        "before\n```java\nint *a* = [~x];\n```\nafter"
    );
}

#[test]
fn noformat_block_inline_position() {
    let input = "see {noformat}a _b_{noformat} done";

    assert_eq!(convert(input), "see\n```\na _b_\n```\ndone");
}

#[test]
fn code_fence_outgrows_backticks_inside() {
    let input = "{code}\n```\n{code}";

    assert_eq!(convert(input), "````\n```\n````");
}

#[test]
fn unclosed_code_runs_to_end() {
    assert_eq!(convert("{code}\nx *y*"), "```\nx *y*\n```");
}

#[test]
fn quote_macro_prefixes_lines() {
    let input = "{quote}\nfirst\n\nsecond\n{quote}\nafter";

    assert_eq!(convert(input), "> first\n>\n> second\n\nafter");
}

#[test]
fn bq_line_becomes_quote() {
    assert_eq!(convert("bq. quoted _text_"), "> quoted _text_");
    assert_eq!(convert("bq.not a quote"), "bq.not a quote");
}

#[test]
fn table_with_header_converts() {
    let input = "||Name||Link||\n|a|[x|http://x.io]|\n|b|{{c|d}}|\ntext";

    let expected = "| Name | Link |\n| --- | --- |\n| a | [x](http://x.io) |\n\
                    | b | `c\\|d` |\n\ntext";
    assert_eq!(convert(input), expected);
}

#[test]
fn table_without_header_gets_empty_one() {
    let input = "para\n|a|b|";

    assert_eq!(
        convert(input),
        "para\n\n|   |   |\n| --- | --- |\n| a | b |"
    );
}

#[test]
fn rule_and_dash_lines_do_not_become_headings() {
    assert_eq!(convert("text\n----"), "text\n\n---");
    assert_eq!(convert("text\n---"), "text\n\\---");
}

#[test]
fn line_break_macro_becomes_hard_break() {
    assert_eq!(convert("a\\\\b"), "a\\\nb");
}

#[test]
fn mentions_and_links_convert() {
    let input = "[~ann] see [docs|https://x.io] and [https://y.io]";

    assert_eq!(
        convert(input),
        "@ann see [docs](https://x.io) and <https://y.io>"
    );
}

#[test]
fn color_is_dropped_keeping_text() {
    assert_eq!(convert("{color:red}*alert*{color}"), "**alert**");
}

#[test]
fn unbalanced_markup_is_kept() {
    let cases = [
        ("*open", "*open"),
        ("[open", "[open"),
        ("{{open", "{{open"),
        ("{quote}open", "> open"),
        ("a_b *c", "a_b *c"),
    ];
    for (input, expected) in cases {
        assert_eq!(convert(input), expected, "input {input:?}");
    }
}

#[test]
fn multibyte_text_survives() {
    let input = "h2. Größe ✓\n* 日本 _語_\n|é|ü|";

    assert_eq!(
        convert(input),
        "## Größe ✓\n- 日本 _語_\n\n|   |   |\n| --- | --- |\n| é | ü |"
    );
}

#[test]
fn every_prefix_of_markup_converts() {
    let input = "h1. T\n*b* _i_ -s- +u+ {{m}} [a|http://x] [~u] é\n{quote}q{quote}\n\
                 {code:rust}x{code}\n||h||\n|c|\n# n\nbq. z \\\\ {color:red}r{color}";
    for (end, _) in input.char_indices() {
        convert(&input[..end]);
    }
}

#[test]
fn pathological_inputs_run_in_linear_time() {
    let size = 200_000;
    let inputs = [
        "[".repeat(size),
        "*a".repeat(size / 2),
        "{{".repeat(size / 2),
        "_x_ ".repeat(size / 4),
        "{code:".repeat(size / 6),
        "{color:".repeat(size / 7),
        "[~".repeat(size / 2),
        "|[".repeat(size / 2),
        "- *".repeat(size / 3),
    ];
    for input in &inputs {
        let started = Instant::now();

        convert(input);
        crate::count_mentions(input);

        // A quadratic scan of 200,000 bytes takes minutes even in an optimized build.
        let elapsed = started.elapsed();
        assert!(
            elapsed < Duration::from_secs(5),
            "{elapsed:?} for {:?}...",
            &input[..12]
        );
    }
}
