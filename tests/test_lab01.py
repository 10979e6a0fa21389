"""Lab 01 runs headlessly and records the numbers its text explains."""

import pytest

N_IMAGES = 3000  # the lab's default synthetic set


@pytest.mark.lab
def test_lab01_records_its_analysis(lab_results):
    results = lab_results("01")

    # every synthetic file is either loaded or excluded with a reason (5 UTKFace defects)
    assert results["n_images"] + results["n_excluded"] == N_IMAGES
    assert results["n_excluded"] == 5
    assert results["excluded_per_layout"]["utkface"] == 5
    assert results["excluded_per_layout"]["afad"] == 5  # 3 Thumbs.db + README.md + AFAD-Full.txt
    # Adience: 2 repeated fold-file rows and 1 row with neither an age group nor a gender; rows
    # with one usable label stay in the table (the other <NA>), and the (25, 23) typo is read
    assert results["excluded_per_layout"]["adience"] == 3

    # the majority model: balanced accuracy is 1/k, accuracy the majority share (>= 1/k)
    for base in results["majority_baseline"]:
        assert base["balanced_accuracy"] == pytest.approx(1 / base["k"], abs=1e-3)
        assert 0 <= base["accuracy"] <= 1
    race = {b["dataset"].split(" ")[0]: b for b in results["majority_baseline"]
            if b["task"] == "race"}
    assert race["utkface"]["predicts"] == "White"
    # the text: "over 40 % of races right" on the main table, less on the comparison set
    assert race["utkface"]["accuracy"] > 0.4
    assert race["utkface"]["accuracy"] > race["fairface"]["accuracy"]

    # UTKFace-like race labels are more imbalanced than FairFace-like ones
    imbalance = results["imbalance"]
    # the text: the main table's race ratio is a multiple of FairFace's (2 to 3 times)
    assert imbalance["utkface (main) race"]["imbalance_ratio"] > \
        2 * imbalance["fairface race"]["imbalance_ratio"]
    # FairFace's tiny youngest and oldest groups give it the larger age ratio
    assert imbalance["fairface age"]["imbalance_ratio"] > \
        imbalance["utkface (main) age"]["imbalance_ratio"]
    assert 0 < imbalance["utkface (main) race"]["normalised_entropy"] < \
        imbalance["fairface race"]["normalised_entropy"] <= 1

    # right-closed bins move the boundary ages; the lab counts them
    assert 0 < results["right_closed_misbinned"] < results["n_images"]
    # the text: "about a tenth of this table"
    assert 0.07 < results["right_closed_misbinned_share"] < 0.15
    assert results["right_closed_misbinned_share"] == pytest.approx(
        results["right_closed_misbinned"] / results["n_images"])
    assert [s["layout"] for s in results["layout_shapes"]] == ["utkface", "fairface", "afad",
                                                               "adience"]


SEVEN = {"White", "Black", "Latino_Hispanic", "East Asian", "Southeast Asian", "Indian",
         "Middle Eastern"}
# the groupings, written out by hand (datasets.md; the lab's section 5)
FIVE = {"White": "White", "Black": "Black", "Indian": "Indian", "East Asian": "Asian",
        "Southeast Asian": "Asian", "Latino_Hispanic": "Others", "Middle Eastern": "Others"}
FOUR = {race: group for race, group in FIVE.items() if group != "Others"}


def _ratio(counts: dict, mapping: dict) -> float:
    groups = {}
    for race, n in counts.items():
        if race in mapping:
            groups[mapping[race]] = groups.get(mapping[race], 0) + n
    return max(groups.values()) / min(groups.values())


@pytest.mark.lab
def test_lab01_exercise2_compares_fairfaces_imbalance_under_each_grouping(lab_results):
    results = lab_results("01")
    counts = results["fairface_race_counts"]
    assert set(counts) == SEVEN  # the synthetic FairFace table holds all seven race strings
    ratios = results["fairface_race_imbalance"]
    # each ratio recomputed from the seven races' counts with the groupings written above
    assert ratios["race_fairface7"] == pytest.approx(max(counts.values()) / min(counts.values()))
    assert ratios["race_fairface5"] == pytest.approx(_ratio(counts, FIVE))
    assert ratios["race_fairface4"] == pytest.approx(_ratio(counts, FOUR))
    assert all(ratio >= 1 for ratio in ratios.values())
    # FairFace's race ratio in section 3 is the 5-group one
    assert ratios["race_fairface5"] == pytest.approx(
        results["imbalance"]["fairface race"]["imbalance_ratio"], abs=1e-3)
