"""Lab 00 runs headlessly and records what its text explains."""

import pytest


@pytest.mark.lab
def test_lab00_trains_above_chance_and_reports_exclusions(lab_results):
    results = lab_results("00")
    # 3,000 synthetic files: the 5 UTKFace defects are excluded with a reason, none are lost
    assert results["n_images"] + results["n_excluded"] == 3000
    assert results["n_excluded"] == 5
    # one epoch at 32 px already beats chance (1/2, 1/5, 1/9) clearly on held-out faces
    assert 0.6 < results["gender_accuracy"] <= 1
    assert 0.3 < results["race_accuracy"] <= 1
    assert 1 / 9 < results["age_group_accuracy"] <= 1
