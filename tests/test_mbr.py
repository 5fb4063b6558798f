"""Minimum Bayes risk selection (core.generation.mbr): the consensus wins over an outlier, ties keep the beam's
order, weights count, bad input is refused; and the sentence-level utilities it is given for translation."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tinyformers.core.generation import mbr_pick
from tinyformers.data.translation import sentence_utility


def shared_words(h: str, r: str) -> float:
    return len(set(h.split()) & set(r.split()))


def test_the_consensus_wins_over_the_first_candidate():
    # the beam's best ("a dog sleeps here") shares little with the rest; "the cat sleeps" agrees with both others
    cands = ["a dog sleeps here", "the cat sleeps", "the cat sleeps today", "the cat"]
    # words shared with the others: 2, 6, 6, 4; "the cat sleeps today" ties at 6 and comes later
    assert mbr_pick(cands, shared_words) == 1
    scores = [sum(shared_words(h, y) for y in cands if y is not h) for h in cands]
    assert scores.index(max(scores)) == mbr_pick(cands, shared_words)


def test_ties_keep_the_earlier_candidate_and_one_candidate_is_picked():
    assert mbr_pick(["x", "y", "z"], lambda h, r: 0.0) == 0
    assert mbr_pick(["only"], shared_words) == 0


def test_weights_move_the_choice_and_bad_weights_are_refused():
    cands = ["a b", "a c", "d c"]
    # uniform: "a c" shares one word with each other candidate (2), the others share one in total (1)
    assert mbr_pick(cands, shared_words) == 1
    # all the weight on "a b": the candidate closest to it wins ("a c": 1 word; "d c": 0; "a b" itself not counted)
    assert mbr_pick(cands, shared_words, weights=[1.0, 0.0, 0.0]) == 1
    assert mbr_pick(cands, shared_words, weights=[0.0, 0.0, 1.0]) == 1  # "a c" shares "c" with "d c"
    assert mbr_pick(cands, shared_words, weights=[0.0, 1.0, 0.0]) == 0  # "a b" and "d c" tie at 1: the earlier
    with pytest.raises(ValueError, match="weights"):
        mbr_pick(cands, shared_words, weights=[1.0, 1.0])
    with pytest.raises(ValueError, match=">= 0"):
        mbr_pick(cands, shared_words, weights=[1.0, -1.0, 1.0])
    with pytest.raises(ValueError, match=">= 0"):
        mbr_pick(cands, shared_words, weights=[1.0, float("nan"), 1.0])
    with pytest.raises(ValueError, match="at least one"):
        mbr_pick([], shared_words)


def test_references_replace_the_other_candidates():
    """With pseudo-references (samples), each candidate is scored against all of them, itself included if it
    was sampled too; weights then go with the references."""
    cands = ["a b", "a c", "d c"]
    assert mbr_pick(cands, shared_words, references=["d c", "d e"]) == 2  # "d c": 2 + 1 shared words
    assert mbr_pick(cands, shared_words, references=["a x", "a y"]) == 0  # a tie of "a b" and "a c": the earlier
    assert mbr_pick(cands, shared_words, references=["d c", "a b"], weights=[0.0, 1.0]) == 0
    assert mbr_pick(cands, shared_words, references=[]) == 0  # nothing to tell them apart: the beam's best
    with pytest.raises(ValueError, match="2 weights for 1 references"):
        mbr_pick(cands, shared_words, references=["a"], weights=[1.0, 1.0])


@given(st.lists(st.text(alphabet="abcd ", max_size=12), min_size=1, max_size=6), st.randoms(use_true_random=False))
def test_the_pick_maximises_the_expected_utility_whatever_the_order(cands, rnd):
    """The pick's expected utility is the maximum, and shuffling the candidates does not change that maximum."""
    utility = sentence_utility("chrf")

    def expected(cs: list[str], i: int) -> float:
        return sum(utility(cs[i], y) for j, y in enumerate(cs) if j != i)

    best = max(expected(cands, i) for i in range(len(cands)))
    assert expected(cands, mbr_pick(cands, utility)) == best
    shuffled = list(cands)
    rnd.shuffle(shuffled)
    assert expected(shuffled, mbr_pick(shuffled, utility)) == pytest.approx(best)


def test_sentence_utilities():
    chrf, bleu = sentence_utility("chrf"), sentence_utility("bleu")
    assert chrf("The dog sleeps.", "The dog sleeps.") == pytest.approx(100.0)
    assert bleu("The dog sleeps.", "The dog sleeps.") == pytest.approx(100.0)
    assert 0 < chrf("The dog sleeps.", "The dogs sleep.") < 100
    assert bleu("dog", "The dog sleeps here today.") > 0  # effective order: a short sentence is not zeroed
    with pytest.raises(ValueError, match="chrf or bleu"):
        sentence_utility("ter")
