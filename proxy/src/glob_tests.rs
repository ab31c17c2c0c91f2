use proptest::prelude::*;

use super::*;

#[test]
fn common_shapes_compile_to_their_fast_forms() {
    assert_eq!(Glob::new("*"), Glob::Any);
    assert_eq!(Glob::new("echo"), Glob::Exact("echo".into()));
    assert_eq!(Glob::new("crawl_*"), Glob::Prefix("crawl_".into()));
    assert_eq!(Glob::new("*_web"), Glob::General("*_web".into()));
    assert_eq!(Glob::new("a?*"), Glob::General("a?*".into()));
    assert_eq!(Glob::new("**"), Glob::General("**".into()));
    assert_eq!(Glob::new(""), Glob::Exact(String::new()));
}

#[test]
fn shapes_and_matches() {
    assert!(Glob::new("crawl_*").matches("crawl_web"));
    assert!(Glob::new("crawl_*").matches("crawl_"));
    assert!(!Glob::new("crawl_*").matches("crawl"));
    assert!(Glob::new("*_web").matches("crawl_web"));
    assert!(!Glob::new("*_web").matches("crawl_webs"));
    assert!(Glob::new("tools/*").matches("tools/list"));
    assert!(Glob::new("a?c").matches("abc"));
    assert!(Glob::new("a?c").matches("aéc"));
    assert!(!Glob::new("a?c").matches("ac"));
    assert!(Glob::new("*a*b*").matches("xxaxxbxx"));
    assert!(!Glob::new("*a*b*").matches("xxbxxaxx"));
    assert!(Glob::new("**").matches(""));
    assert!(!Glob::new("Echo").matches("echo"));
    assert!(Glob::new("https://*.example.com").matches("https://app.example.com"));
    assert!(!Glob::new("https://*.example.com").matches("https://example.com"));
}

#[test]
fn globs() {
    assert!(glob_match("crawl_*", "crawl_web"));
    assert!(glob_match("crawl_*", "crawl_"));
    assert!(!glob_match("crawl_*", "crawl"));
    assert!(glob_match("*", ""));
    assert!(glob_match("tools/*", "tools/call"));
    assert!(glob_match("t?ols/call", "tools/call"));
    assert!(!glob_match("tools/call", "tools/calls"));
    assert!(glob_match("*a*b*c", "xxaxxbxxc"));
    assert!(!glob_match("*a*b*c", "xxaxxcxxb"));
    assert!(glob_match("é*", "éa"));
    assert!(Glob::new("crawl_*").matches("crawl_web") && !Glob::new("crawl_*").matches("crawl"));
}

#[test]
fn globs_match_whole_names() {
    assert!(glob_match("crawl_*", "crawl_web"));
    assert!(glob_match("crawl_*", "crawl_"));
    assert!(!glob_match("crawl_*", "xcrawl_web"));
    assert!(glob_match("*_find", "qdrant_find"));
    assert!(glob_match("q?rant*", "qdrant_find"));
    assert!(glob_match("*", ""));
    assert!(glob_match("a*b*c", "a-b-b-c"));
    assert!(!glob_match("a*b*c", "a-b-b-d"));
    assert!(!glob_match("echo", "echo2"));
    assert!(glob_match("echo", "echo"));
}

#[test]
fn question_mark_is_one_character_of_any_width() {
    for wide in ["é", "€", "😀"] {
        assert!(glob_match("a?c", &format!("a{wide}c")), "{wide}");
        assert!(!glob_match("a??c", &format!("a{wide}c")), "{wide}");
        assert!(glob_match("*?", wide), "{wide}");
        assert!(
            glob_match(&format!("*{wide}"), &format!("xy{wide}")),
            "{wide}"
        );
    }
    // Same lead byte, other character: a literal matches whole characters only.
    assert!(!glob_match("aéc", "aèc"));
    assert!(!glob_match("*é", "è"));
}

#[test]
fn only_star_and_question_mark_are_special() {
    for literal in ["[ab]", "{a,b}", "a\\*", "a.c", "^a$"] {
        assert!(glob_match(literal, literal), "{literal}");
    }
    assert!(!glob_match("[ab]", "a"));
    assert!(!glob_match("{a,b}", "a"));
    assert!(!glob_match("a.c", "abc"));
    // A backslash does not escape: `a\*` is `a\` then any run.
    assert!(glob_match("a\\*", "a\\anything"));
    assert!(!glob_match("a\\*", "a*"));
}

#[test]
fn matching_is_case_sensitive() {
    assert!(!glob_match("Tools/*", "tools/call"));
    assert!(!glob_match("*.Example.com", "app.example.com"));
    assert!(!Glob::new("ECHO").matches("echo"));
    assert!(!Glob::new("Crawl_*").matches("crawl_web"));
}

#[test]
fn many_stars_against_a_long_miss_stay_quick() {
    // Exponential for a naive backtracker; the single backtrack point keeps it quadratic.
    let pattern = "*a".repeat(30) + "b";
    let text = "a".repeat(4000);
    assert!(!glob_match(&pattern, &text));
}

/// Reference matcher: plain recursion over characters, straight from the definition.
fn reference(p: &[char], t: &[char]) -> bool {
    match (p.first(), t.first()) {
        (None, None) => true,
        (Some('*'), _) => reference(&p[1..], t) || (!t.is_empty() && reference(p, &t[1..])),
        (Some('?'), Some(_)) => reference(&p[1..], &t[1..]),
        (Some(a), Some(b)) if a == b => reference(&p[1..], &t[1..]),
        _ => false,
    }
}

fn agrees(p: &str, t: &str) -> Result<(), TestCaseError> {
    let pc: Vec<char> = p.chars().collect();
    let tc: Vec<char> = t.chars().collect();
    let expected = reference(&pc, &tc);
    prop_assert_eq!(glob_match(p, t), expected, "glob_match({:?}, {:?})", p, t);
    prop_assert_eq!(
        Glob::new(p).matches(t),
        expected,
        "Glob({:?}) on {:?}",
        p,
        t
    );
    Ok(())
}

proptest! {
    #[test]
    fn agrees_with_the_reference(p in "[ab*?é]{0,8}", t in "[abé]{0,10}") {
        agrees(&p, &t)?;
    }

    /// Characters of every UTF-8 width, so `?` and `*` must step over whole characters.
    #[test]
    fn agrees_with_the_reference_on_every_utf8_width(
        p in "[a€😀é*?]{0,8}",
        t in "[a€😀é]{0,10}",
    ) {
        agrees(&p, &t)?;
    }

    /// Patterns cut from the text, some characters turned into wildcards, so most cases match.
    #[test]
    fn agrees_with_the_reference_on_patterns_made_from_the_text(
        t in "\\PC{0,12}",
        edits in proptest::collection::vec((0usize..12, 0u8..3), 0..6),
    ) {
        let mut p: Vec<char> = t.chars().collect();
        for (at, what) in edits {
            if p.is_empty() {
                break;
            }
            let at = at % p.len();
            match what {
                0 => p[at] = '?',
                1 => p[at] = '*',
                _ => p.insert(at, '*'),
            }
        }
        let p: String = p.into_iter().collect();
        agrees(&p, &t)?;
    }

    #[test]
    fn literal_patterns_match_only_themselves(a in "[a-z_?]{0,8}", b in "[a-z_]{0,8}") {
        let literal = !a.contains('?');
        if literal {
            prop_assert_eq!(glob_match(&a, &b), a == b);
        }
        prop_assert!(glob_match("*", &b));
        let star_suffixed = format!("{b}*");
        let longer = format!("{b}x");
        prop_assert!(glob_match(&star_suffixed, &longer));
    }
}
