"""Generated passages that stand for one corpus passage share its identity, so the
false-negative mask keeps them from being each other's negatives."""
import json

from engine.data import load_retrieval_data, training_pairs
from tests.helpers import write_synthetic


def test_ict_variants_of_one_paragraph_share_its_identity(tmp_path):
    data = load_retrieval_data(write_synthetic(tmp_path / "syn"))
    source = data.passage_ids[0]
    folder = tmp_path / "ict"
    (folder / "qrels").mkdir(parents=True)
    rows = [{"_id": f"{source}#ict0", "text": "a b", "source_id": source},
            {"_id": f"{source}#ict1", "text": "c d", "source_id": source},
            {"_id": "fresh", "text": "e f"}]
    (folder / "corpus.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (folder / "queries.jsonl").write_text("".join(json.dumps({"_id": f"q{i}", "text": "x"}) + "\n" for i in range(3)))
    (folder / "qrels" / "train.tsv").write_text("query-id\tcorpus-id\tscore\n" + "".join(
        f"q{i}\t{row['_id']}\t1\n" for i, row in enumerate(rows)))
    pairs = training_pairs(data, str(folder))
    own = len(data.passages)                     # own passages get rows after the main corpus, in file order
    assert sorted(pairs.pairs[:, 1]) == [own, own + 1, own + 2]
    first, second, fresh = (int(pairs.identity[own + i]) for i in range(3))
    assert first == second == data.passage_row[source]
    assert fresh not in (first, data.passage_row[source])
