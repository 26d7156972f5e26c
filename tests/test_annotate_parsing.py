"""Parsing of LLM answers and cleaning of generated queries on canned outputs of
every bad kind: nothing raises, everything dropped is counted."""
import json

import pytest

from engine.annotate.cache import OutputCache, cached_outputs
from engine.annotate.llm import PROMPT, build_prompt
from engine.annotate.parsing import Tally, clean_queries, parse_llm_answer

FIVE = {f"query{i}": f"what is query number {i} about" for i in range(1, 6)}


def parse(answer):
    tally = Tally()
    return parse_llm_answer(answer, tally), tally


def test_a_clean_answer_gives_five_queries():
    queries, tally = parse(json.dumps(FIVE))
    assert queries == [(i, f"what is query number {i + 1} about") for i in range(5)]
    assert tally.outputs == 1 and tally.queries == 5 and not tally.skipped and not tally.notes


@pytest.mark.parametrize("fence", ["```json\n{}\n```", "```\n{}\n```", "Sure! ```JSON {} ``` Hope it helps",
                                   "```json\n{}"])   # the last one never closes its fence
def test_code_fences_are_stripped_and_counted(fence):
    queries, tally = parse(fence.replace("{}", json.dumps(FIVE, indent=2)))
    assert len(queries) == 5
    assert tally.notes == {"code_fence": 1} and not tally.skipped


def test_prose_around_the_json_is_ignored():
    queries, tally = parse("Here are the queries: {broken} " + json.dumps(FIVE) + " and {another}")
    assert len(queries) == 5 and not tally.skipped


@pytest.mark.parametrize("answer", ["", "I cannot help with that.", "query1: what is it", "[\"a\", \"b\"]",
                                    '{"query1": "unterminated', '{"questions": ["a", "b"]}', "{{{{", "null"])
def test_non_json_answers_are_counted_and_skipped(answer):
    queries, tally = parse(answer)
    assert queries == []
    assert tally.skipped == {"not_json": 1} and tally.outputs == 1 and tally.queries == 0


def test_fewer_than_five_queries_keep_the_rest():
    answer = {"query1": "first one", "query3": "third one", "query5": 42}   # 42 is not a query
    queries, tally = parse(json.dumps(answer))
    assert queries == [(0, "first one"), (2, "third one")]
    assert tally.skipped == {"missing_query": 3}
    assert tally.notes == {"fewer_than_five": 1}


def test_empty_and_duplicate_queries_are_counted():
    answer = {"query1": "Same  question ", "query2": "   ", "query3": "same question", "query4": "",
              "query5": "other question"}
    queries, tally = parse(json.dumps(answer))
    assert queries == [(0, "Same question"), (4, "other question")]
    assert tally.skipped == {"empty": 2, "duplicate": 1} and tally.queries == 5


def test_clean_queries_keeps_positions_and_order():
    tally = Tally()
    kept = clean_queries(["b", "", "a", "B", " a\n"], tally)
    assert kept == [(0, "b"), (2, "a")]
    assert tally.skipped == {"empty": 1, "duplicate": 2}


def test_tally_reports_every_reason():
    tally = Tally()
    for answer in ("nope", "```json\n" + json.dumps({"query1": "x", "query2": "x"}) + "\n```"):
        parse_llm_answer(answer, tally)
    text = tally.describe()
    for word in ("not_json", "duplicate", "missing_query", "code_fence", "fewer_than_five"):
        assert word in text
    assert set(tally.as_dict()["legend"]) == {"not_json", "duplicate", "missing_query", "code_fence",
                                               "fewer_than_five"}


def test_the_prompt_is_the_papers():
    assert PROMPT.startswith("Please generate 5 relevant queries according to the given passage for search purpose.")
    assert '"query1", "query2", "query3", "query4", "query5"' in PROMPT
    assert "5. Please respond in English. DO NOT use Chinese." in PROMPT
    assert build_prompt("abcdef", 3).endswith("Passage: abc")


def test_cache_survives_a_torn_line_and_an_edited_passage(tmp_path):
    path = tmp_path / "c.jsonl"
    calls = []

    def generate(batch):
        calls.extend(pid for pid, _ in batch)
        for pid, text in batch:
            yield pid, [text.upper()]

    passages = [("a", "alpha"), ("b", "beta"), ("c", "gamma")]
    assert cached_outputs(passages, generate, OutputCache(path), 2, "t") == {
        "a": ["ALPHA"], "b": ["BETA"], "c": ["GAMMA"]}
    path.write_text(path.read_text()[:-20])                    # a kill mid-write tears the last line
    calls.clear()
    edited = [("a", "alpha"), ("b", "beta, edited"), ("c", "gamma")]
    out = cached_outputs(edited, generate, OutputCache(path), 2, "t")
    assert sorted(calls) == ["b", "c"]                         # b changed, c torn; a reused
    assert out["b"] == ["BETA, EDITED"]
    calls.clear()
    assert cached_outputs(edited, generate, OutputCache(path), 2, "t") == out and calls == []
