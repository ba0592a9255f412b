use super::*;

fn cond(path: &str) -> Conditions {
    Conditions { host: Some("foo.example".into()), paths: vec![path.into()], ..Default::default() }
}

fn fwd(tg: &str) -> AlbAction {
    AlbAction::Forward(vec![(tg.into(), 1)])
}

fn cur(arn: &str, priority: u32, path: &str, tg: &str, ours: bool) -> Current {
    Current { arn: arn.into(), priority, conditions: cond(path), action: fwd(tg), ours }
}

#[test]
fn a_fresh_listener_gets_rules_a_step_apart() {
    let desired = vec![(cond("/a"), fwd("A")), (cond("/b"), fwd("B")), (cond("/c"), fwd("C"))];
    let c = diff(&desired, &[]).expect("diff");
    assert_eq!(c.create, vec![(0, 100), (1, 200), (2, 300)]);
    assert!(c.moves.is_empty() && c.modify.is_empty() && c.delete.is_empty());
}

#[test]
fn a_new_path_between_two_rules_takes_a_free_priority_and_moves_nothing() {
    let current =
        vec![cur("r1", 100, "/a", "A", true), cur("r2", 200, "/b", "B", true), cur("r3", 300, "/d", "D", true)];
    let desired = vec![(cond("/a"), fwd("A")), (cond("/b"), fwd("B")), (cond("/c"), fwd("C")), (cond("/d"), fwd("D"))];
    let c = diff(&desired, &current).expect("diff");
    assert_eq!(c.create, vec![(2, 250)]);
    assert!(c.moves.is_empty() && c.modify.is_empty() && c.delete.is_empty(), "{c:?}");
}

#[test]
fn a_repointed_path_is_modified_in_place() {
    let current = vec![cur("r1", 100, "/a", "A", true)];
    let c = diff(&[(cond("/a"), fwd("B"))], &current).expect("diff");
    assert_eq!(c.modify, vec![("r1".to_string(), 0)]);
    assert!(c.create.is_empty() && c.delete.is_empty() && c.moves.is_empty());
}

#[test]
fn unchanged_rules_need_no_change_at_all() {
    let current = vec![cur("r1", 7, "/a", "A", true), cur("r2", 9000, "/b", "B", true)];
    let c = diff(&[(cond("/a"), fwd("A")), (cond("/b"), fwd("B"))], &current).expect("diff");
    assert_eq!(c, Changes::default());
}

#[test]
fn a_reorder_moves_only_what_is_out_of_order() {
    let current =
        vec![cur("r1", 100, "/a", "A", true), cur("r2", 200, "/b", "B", true), cur("r3", 300, "/c", "C", true)];
    // c now goes first.
    let c = diff(&[(cond("/c"), fwd("C")), (cond("/a"), fwd("A")), (cond("/b"), fwd("B"))], &current).expect("diff");
    assert_eq!(c.moves.len(), 1, "{c:?}");
    assert_eq!(c.moves[0].0, "r3");
    assert!(c.moves[0].1 < 100);
}

#[test]
fn foreign_rules_are_never_touched_and_their_priorities_never_taken() {
    let current = vec![
        cur("mine", 100, "/a", "A", true),
        cur("theirs", 150, "/x", "X", false),
        cur("old", 300, "/gone", "G", true),
    ];
    let desired = vec![(cond("/a"), fwd("A")), (cond("/b"), fwd("B"))];
    let c = diff(&desired, &current).expect("diff");
    assert_eq!(c.delete, vec!["old".to_string()]);
    assert_eq!(c.create.len(), 1);
    assert!(c.create[0].1 != 150 && c.create[0].1 != 300 && c.create[0].1 > 100);
    assert!(!c.moves.iter().any(|(a, _)| a == "theirs"));
}

#[test]
fn a_full_gap_lays_the_rules_out_again_in_a_free_range() {
    let current = vec![cur("r1", 1, "/a", "A", true), cur("r2", 2, "/c", "C", true)];
    let desired = vec![(cond("/a"), fwd("A")), (cond("/b"), fwd("B")), (cond("/c"), fwd("C"))];
    let c = diff(&desired, &current).expect("diff");
    assert_eq!(c.moves.len(), 2, "{c:?}");
    let pa = c.moves.iter().find(|(a, _)| a == "r1").map(|m| m.1).unwrap();
    let pc = c.moves.iter().find(|(a, _)| a == "r2").map(|m| m.1).unwrap();
    let pb = c.create[0].1;
    assert!(pa > 2 && pa < pb && pb < pc, "{pa} {pb} {pc}");
}

#[test]
fn longest_increasing_keeps_the_most_rules() {
    assert_eq!(longest_increasing(&[100, 300, 200, 400]).len(), 3);
    assert_eq!(longest_increasing(&[]).len(), 0);
    assert_eq!(longest_increasing(&[5, 4, 3]).len(), 1);
}
