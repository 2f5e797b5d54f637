"""Class frequencies n_k from dataset dicts, with and without repeat-factor sampling."""
import math

import pytest
import torch

from projects_lda.data.class_freq import class_frequencies

DICTS = [
    {"file_name": "a.png", "annotations": [{"category_id": 0}, {"category_id": 0},
                                           {"category_id": 1}, {"category_id": 2, "iscrowd": 1}]},
    {"file_name": "b.png", "annotations": [{"category_id": 1}]},
    {"file_name": "c.png", "annotations": [{"category_id": 2}]},
]


def test_annotation_counts_skip_crowd():
    freq = class_frequencies(DICTS, 4, source="annotations", repeat_thresh=0.5)
    assert freq.tolist() == [2.0, 2.0, 1.0, 0.0]


def test_sampled_counts_follow_repeat_factors_by_hand():
    # image fractions f = [1/3, 2/3, 2/3] (detectron2's RFS counts the crowd box of a.png too);
    # t = 2/3: r(0) = sqrt(2), r(1) = r(2) = 1; image factors a: sqrt 2, b: 1, c: 1
    freq = class_frequencies(DICTS, 4, source="sampled", repeat_thresh=2 / 3)
    s = math.sqrt(2)
    assert torch.allclose(freq, torch.tensor([2 * s, s + 1, 1.0, 0.0]), atol=1e-5)


def test_sampled_without_rfs_equals_annotations():
    assert torch.equal(
        class_frequencies(DICTS, 3, source="sampled", repeat_thresh=0.0),
        class_frequencies(DICTS, 3, source="annotations"),
    )


def test_bad_inputs_are_named():
    with pytest.raises(ValueError, match="source must be one of.*'images'"):
        class_frequencies(DICTS, 3, source="images")
    with pytest.raises(ValueError, match="b.png.*category_id 7.*NUM_CLASSES=3"):
        class_frequencies(
            [DICTS[0], {"file_name": "b.png", "annotations": [{"category_id": 7}]}], 3
        )
