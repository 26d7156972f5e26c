"""engine/point_selection.py: the choices the pages offer and the rows each keeps, on
frames built here (no page, no store)."""
from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from engine.eval_protocol import UNRECORDED, protocol_id
from engine.point_selection import (ALL, MIN_DATA_SIZES, comparison_dataset, comparison_model_size,
                                    evaluation_points, held_fixed, leave_out, no_better_than_random, not_overfit,
                                    of_protocol, point_names, points_digest, protocol_groups, value_choice, where,
                                    where_any)

K16 = {"negatives": 16, "repeats": 2}
K256 = {"negatives": 256, "repeats": 3}


def points_of_two_protocols() -> pd.DataFrame:
    """Three runs measured with k = 16, two with k = 256, one with none recorded."""
    fingerprints = [K16, K16, K16, K256, K256, None]
    return pd.DataFrame({"n": [1e5, 1e6, 1e7, 1e5, 1e6, 1e7], "d": 1000, "label": list("abcdef"),
                         "loss": [1.0, 0.9, 3.0, 2.0, 6.0, 1.0], "eval_fingerprint": fingerprints})


def test_protocol_groups_put_the_most_common_first_and_describe_each():
    groups = protocol_groups(points_of_two_protocols())
    assert list(groups["protocol"]) == [protocol_id(K16), protocol_id(K256), UNRECORDED]
    assert list(groups["points"]) == [3, 2, 1]
    assert "k=16" in groups["description"][0] and groups["description"][2] == "protocol not recorded"


def test_of_protocol_keeps_its_rows_with_the_fingerprint_as_text():
    kept = of_protocol(points_of_two_protocols(), protocol_id(K256))
    assert list(kept["label"]) == ["d", "e"] and set(kept["eval_protocol"]) == {protocol_id(K256)}
    assert [json.loads(text) for text in kept["eval_fingerprint"]] == [K256, K256]
    assert list(of_protocol(points_of_two_protocols(), UNRECORDED)["eval_fingerprint"]) == [None]


def test_a_one_variable_law_holds_the_other_size_at_its_largest_by_default():
    points = pd.DataFrame({"n": [1e5, 1e6, 1e5, 1e6], "d": [100, 100, 2000, 2000], "loss": 1.0})
    column, choice = held_fixed(points, "model")
    assert column == "d" and choice.options == [100, 2000] and choice.options[choice.default] == 2000
    column, choice = held_fixed(points, "data")
    assert column == "n" and choice.options[choice.default] == 1e6
    assert held_fixed(points, "joint") is None
    assert held_fixed(points[points["d"] == 100], "model") is None      # one D: nothing to choose


def test_the_size_held_fixed_defaults_to_the_largest_a_law_can_be_fitted_at():
    """Eq. 7 has 3 parameters, so it needs 4 data sizes: at the largest N there are 2."""
    d = [100, 200, 400, 800]
    points = pd.DataFrame({"n": [1e5] * 4 + [1e6] * 4 + [1e7] * 2, "d": d + d + d[:2], "loss": 1.0})
    column, choice = held_fixed(points, "data")
    assert column == "n" and choice.options == [1e5, 1e6, 1e7] and choice.options[choice.default] == 1e6
    column, choice = held_fixed(points[points["n"] != 1e6].assign(d=[1, 2, 3, 4, 1, 2]), "model")
    assert choice.options[choice.default] == 4      # no D has 4 sizes of N: the largest, as before
    three_sizes = pd.DataFrame({"n": [1e5, 1e6, 1e7, 1e7, 1e5, 1e6], "d": [100] * 4 + [200] * 2, "loss": 1.0})
    column, choice = held_fixed(three_sizes, "model")
    assert choice.options[choice.default] == 100    # 3 sizes in 4 points: enough, as the fit itself accepts


def test_a_value_choice_prefers_the_asked_value_then_the_most_common():
    frame = pd.DataFrame({"annotation": ["ict", "ict", "human", "llm"]})
    chosen = value_choice(frame, "annotation", preferred="human")
    assert chosen.options == ["human", "ict", "llm"] and chosen.options[chosen.default] == "human"
    common = value_choice(frame, "annotation", with_all=True)
    assert common.options[0] == ALL and common.options[common.default] == "ict"
    assert value_choice(frame.iloc[:0], "annotation") is None and value_choice(frame, "dataset") is None
    assert len(where(frame, "annotation", "ict")) == 2 and len(where(frame, "annotation", ALL)) == 4


def test_point_names_say_index_label_and_sizes():
    names = point_names(pd.DataFrame({"n": [39_104, 5e5], "d": [2000, np.nan], "label": ["run a", None]}))
    assert list(names) == ["0: run a N=39.1k · D=2k", "1: N=500k"]


def test_the_digest_follows_the_points_not_their_order_of_arrival():
    points = points_of_two_protocols()
    assert points_digest(points) == points_digest(points.copy())
    assert points_digest(points) != points_digest(points.assign(loss=points["loss"] + 1e-9))
    assert len(points_digest(points)) == 12


def test_runs_no_better_than_their_random_scorer_start_left_out():
    points = points_of_two_protocols()
    at_random = no_better_than_random(points)
    # k = 16: log 17 = 2.83, so 3.0 is random; k = 256: log 257 = 5.55, so 6.0 is; unrecorded: k = 256
    assert list(at_random) == [False, False, True, False, True, False]
    assert math.log(17) < 3.0 < math.log(257) < 6.0
    names = point_names(points)
    kept, dropped = leave_out(points, names, list(names[at_random]))
    assert list(kept["label"]) == ["a", "b", "d", "f"]
    assert dropped.to_dict("records") == [{"label": "c", "n": 1e7, "d": 1000, "loss": 3.0},
                                          {"label": "e", "n": 1e6, "d": 1000, "loss": 6.0}]


def comparison_points() -> pd.DataFrame:
    """squad-dev: human and ict at MIN_DATA_SIZES data sizes at N = 1e6, human only at
    1e7; cmrc2018: human only."""
    d = np.geomspace(100, 10_000, MIN_DATA_SIZES)
    rows = [("squad-dev", 1e6, a, x) for a in ("human", "ict") for x in d]
    rows += [("squad-dev", 1e7, "human", x) for x in d] + [("cmrc2018", 1e8, "human", x) for x in d]
    return pd.DataFrame(rows, columns=["dataset", "n", "annotation", "d"]).assign(loss=1.0)


def test_annotation_types_are_compared_where_most_of_them_have_a_law():
    points = comparison_points()
    datasets = comparison_dataset(points)
    assert datasets.options == ["cmrc2018", "squad-dev"] and datasets.options[datasets.default] == "squad-dev"
    sizes = comparison_model_size(where(points, "dataset", "squad-dev"))
    assert sizes.options == [1e6, 1e7] and sizes.options[sizes.default] == 1e6   # two types beat one larger N
    one_type = comparison_model_size(points[points["annotation"] == "human"])
    assert one_type.options[one_type.default] == 1e8   # a tie on types and points: the largest N


@pytest.mark.parametrize("metric, kept", [("raw", [4.0, 3.0]), ("calibrated", [3.5])])
def test_evaluation_points_carry_their_run_and_the_chosen_entropy(metric, kept):
    runs = pd.DataFrame({"run_id": ["r1"], "model_name": ["m"], "label": ["r1"], "dataset": ["syn"],
                         "annotation": ["human"], "seed": [0]})
    points = pd.DataFrame({"run_id": ["r1", "r1"], "step": [0, 10], "contrastive_entropy": [4.0, 3.0],
                           "calibrated_entropy": [np.nan, 3.5]})
    joined = evaluation_points(runs, points, metric)
    assert list(joined["contrastive_entropy"]) == kept
    assert set(joined["model"]) == {"m"} and "seed" not in joined


def test_runs_within_the_gap_of_their_best_have_not_overfit():
    runs = pd.DataFrame({"run_id": ["a", "b", "c"], "contrastive_entropy": [3.0, 3.2, 3.05],
                         "best_entropy": [3.0, 3.0, 3.0]})
    assert list(not_overfit(runs, gap=0.1)["run_id"]) == ["a", "c"]


def test_where_any_keeps_the_chosen_values_and_everything_when_none_is_chosen():
    runs = pd.DataFrame({"status": ["completed", "failed", "running"]})
    assert list(where_any(runs, "status", ["failed", "running"])["status"]) == ["failed", "running"]
    assert len(where_any(runs, "status", [])) == 3
    assert where_any(pd.DataFrame(), "law", ["joint"]).empty          # an empty store's fits: no column at all
