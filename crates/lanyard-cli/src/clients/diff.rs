//! Line-based unified diff, for `lanyard clients … --dry-run` (what would change, before it does).
//!
//! Our edits touch a few adjacent lines of files that can be large (`~/.claude.json` keeps
//! history), so the common head and tail are skipped first and only the changed middle goes
//! through a longest-common-subsequence table. Pure text in, text out.

/// Context lines around each change, as `diff -u` does.
const CONTEXT: usize = 3;
/// Beyond this many table cells the middle is shown as removed-then-added instead.
const MAX_TABLE_CELLS: usize = 4_000_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Same(usize, usize),
    Removed(usize),
    Added(usize),
}

/// A unified diff of `old` → `new` with `---`/`+++` headers naming `label`; empty when equal.
pub fn unified(label: &str, old: &str, new: &str) -> String {
    if old == new {
        return String::new();
    }
    let a: Vec<&str> = old.split_inclusive('\n').collect();
    let b: Vec<&str> = new.split_inclusive('\n').collect();
    let ops = line_ops(&a, &b);
    let mut out = format!("--- {label}\n+++ {label}\n");
    let changed: Vec<usize> = ops
        .iter()
        .enumerate()
        .filter(|(_, op)| !matches!(op, Op::Same(..)))
        .map(|(i, _)| i)
        .collect();
    let mut k = 0;
    while k < changed.len() {
        // Grow the hunk while the next change is within two contexts of the last one.
        let first = changed[k];
        let mut last = first;
        while k + 1 < changed.len() && changed[k + 1] - last <= 2 * CONTEXT {
            k += 1;
            last = changed[k];
        }
        k += 1;
        let from = first.saturating_sub(CONTEXT);
        let to = (last + CONTEXT + 1).min(ops.len());
        let hunk = &ops[from..to];
        let (old_start, new_start) = position(&ops, from);
        let old_len = hunk.iter().filter(|op| !matches!(op, Op::Added(_))).count();
        let new_len = hunk
            .iter()
            .filter(|op| !matches!(op, Op::Removed(_)))
            .count();
        out.push_str(&format!(
            "@@ -{} +{} @@\n",
            range(old_start, old_len),
            range(new_start, new_len)
        ));
        for op in hunk {
            let (sign, line) = match *op {
                Op::Same(i, _) => (' ', a[i]),
                Op::Removed(i) => ('-', a[i]),
                Op::Added(j) => ('+', b[j]),
            };
            out.push(sign);
            out.push_str(line);
            if !line.ends_with('\n') {
                out.push_str("\n\\ No newline at end of file\n");
            }
        }
    }
    out
}

/// `start,len` in 1-based lines; an empty range names the line before it, as `diff -u` does.
fn range(start: usize, len: usize) -> String {
    if len == 0 {
        format!("{start},0")
    } else {
        format!("{},{len}", start + 1)
    }
}

/// The 0-based old and new line numbers at which `ops[index]` stands.
fn position(ops: &[Op], index: usize) -> (usize, usize) {
    let old = ops[..index]
        .iter()
        .filter(|op| !matches!(op, Op::Added(_)))
        .count();
    let new = ops[..index]
        .iter()
        .filter(|op| !matches!(op, Op::Removed(_)))
        .count();
    (old, new)
}

fn line_ops(a: &[&str], b: &[&str]) -> Vec<Op> {
    let head = a.iter().zip(b).take_while(|(x, y)| x == y).count();
    let tail = a[head..]
        .iter()
        .rev()
        .zip(b[head..].iter().rev())
        .take_while(|(x, y)| x == y)
        .count();
    let (a_mid, b_mid) = (&a[head..a.len() - tail], &b[head..b.len() - tail]);
    let mut ops: Vec<Op> = (0..head).map(|i| Op::Same(i, i)).collect();
    let (n, m) = (a_mid.len(), b_mid.len());
    if (n + 1) * (m + 1) > MAX_TABLE_CELLS {
        ops.extend((0..n).map(|i| Op::Removed(head + i)));
        ops.extend((0..m).map(|j| Op::Added(head + j)));
    } else {
        // lcs[i][j] = length of the LCS of a_mid[i..] and b_mid[j..].
        let mut lcs = vec![0u32; (n + 1) * (m + 1)];
        let at = |i: usize, j: usize| i * (m + 1) + j;
        for i in (0..n).rev() {
            for j in (0..m).rev() {
                lcs[at(i, j)] = if a_mid[i] == b_mid[j] {
                    lcs[at(i + 1, j + 1)] + 1
                } else {
                    lcs[at(i + 1, j)].max(lcs[at(i, j + 1)])
                };
            }
        }
        let (mut i, mut j) = (0, 0);
        while i < n || j < m {
            if i < n && j < m && a_mid[i] == b_mid[j] {
                ops.push(Op::Same(head + i, head + j));
                i += 1;
                j += 1;
            } else if i < n && (j == m || lcs[at(i + 1, j)] >= lcs[at(i, j + 1)]) {
                ops.push(Op::Removed(head + i));
                i += 1;
            } else {
                ops.push(Op::Added(head + j));
                j += 1;
            }
        }
    }
    let (a_tail, b_tail) = (a.len() - tail, b.len() - tail);
    ops.extend((0..tail).map(|k| Op::Same(a_tail + k, b_tail + k)));
    ops
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_texts_have_no_diff() {
        assert_eq!(unified("f", "a\nb\n", "a\nb\n"), "");
    }

    #[test]
    fn one_inserted_line_in_the_middle() {
        let old = "1\n2\n3\n4\n5\n6\n7\n8\n";
        let new = "1\n2\n3\n4\nnew\n5\n6\n7\n8\n";
        assert_eq!(
            unified("f", old, new),
            "--- f\n+++ f\n@@ -2,6 +2,7 @@\n 2\n 3\n 4\n+new\n 5\n 6\n 7\n"
        );
    }

    #[test]
    fn distant_changes_make_two_hunks_and_near_ones_merge() {
        let lines = |swap: &[(usize, &str)]| -> String {
            (1..=20)
                .map(|i| {
                    swap.iter()
                        .find(|(n, _)| *n == i)
                        .map_or(format!("{i}\n"), |(_, s)| format!("{s}\n"))
                })
                .collect()
        };
        let old = lines(&[]);
        let new = lines(&[(2, "two"), (18, "eighteen")]);
        let diff = unified("f", &old, &new);
        assert_eq!(diff.matches("@@ -").count(), 2, "{diff}");
        assert!(
            diff.contains("@@ -1,5 +1,5 @@\n 1\n-2\n+two\n 3\n"),
            "{diff}"
        );
        assert!(
            diff.contains("@@ -15,6 +15,6 @@\n 15\n 16\n 17\n-18\n+eighteen\n 19\n 20\n"),
            "{diff}"
        );
        let near = lines(&[(2, "two"), (7, "seven")]);
        assert_eq!(unified("f", &old, &near).matches("@@ -").count(), 1);
    }

    #[test]
    fn creating_a_file_and_a_missing_final_newline() {
        assert_eq!(
            unified("f", "", "{}\n"),
            "--- f\n+++ f\n@@ -0,0 +1,1 @@\n+{}\n"
        );
        assert_eq!(
            unified("f", "a\n", "a\nb"),
            "--- f\n+++ f\n@@ -1,1 +1,2 @@\n a\n+b\n\\ No newline at end of file\n"
        );
    }
}
