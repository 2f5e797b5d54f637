"""
What the embedded dataset's two generators share: the generation parameters and their defaults,
the split names, the test split's random stream and the dealing of frequency ranks to the
members of sibling groups.

A leaf module of the generators (of the project it imports only LVIS's frequency rule,
:mod:`projects_lda.data.frequency_groups`): :mod:`.embedded` (the small variant, the dispatch on
the class count and the cache) and :mod:`.many_class` (the many-class variant) both import it,
and :mod:`.embedded` imports :mod:`.many_class`.
"""

__all__ = ["EMBEDDED_DEFAULTS", "SPLITS", "TEST_STREAM", "rank_order"]

# The generation parameters (those of ``meta.json``) and the default dataset's values.
EMBEDDED_DEFAULTS = {
    "seed": 0,
    "num_classes": 24,
    "num_train_images": 400,
    "num_val_images": 120,
    "num_test_images": 343,
    "imbalance": 2.0,
    "image_size": 128,
    "federated": False,
}
SPLITS = ("train", "val", "test")
# The test split is drawn from its own random stream, ``(seed, TEST_STREAM)``, so the train and
# val files do not depend on it (in the small variant they are those of generator version 2).
TEST_STREAM = 2


def rank_order(rng, table):
    """
    Class indices ordered from the most to the least frequent; ``table`` lists the classes by
    category id, each a row whose first field is its sibling group's index. Tier t holds the
    t-th member of every group (heads, then mids, then tails); mids go in reverse group order so
    that the group with the strongest head gets the weakest mid. Which member is the head is
    random per group.
    """
    num_groups = table[-1][0] + 1
    members = [[i for i, row in enumerate(table) if row[0] == g] for g in range(num_groups)]
    members = [[m[j] for j in rng.permutation(len(m))] for m in members]
    group_order = list(rng.permutation(num_groups))
    order = []
    for tier in range(3):
        groups = group_order if tier % 2 == 0 else group_order[::-1]
        order += [members[g][tier] for g in groups if tier < len(members[g])]
    return order


def train_categories(names_and_defs, train_annotations):
    """
    LVIS categories ``1..C`` from ``(name, definition, group)`` triples, with the training counts:
    LVIS's ``frequency`` by training image count, ``image_count`` and ``instance_count``; the
    sibling group is COCO's ``supercategory`` (the evaluation report's sibling confusions).
    """
    from ..data.frequency_groups import lvis_frequency

    image_sets = [set() for _ in names_and_defs]
    instances = [0] * len(names_and_defs)
    for ann in train_annotations:
        image_sets[ann["category_id"] - 1].add(ann["image_id"])
        instances[ann["category_id"] - 1] += 1
    return [
        {
            "id": i + 1,
            "name": name,
            "synonyms": [name],
            "synset": f"{name}.n.01",
            "def": definition,
            "supercategory": group,
            "frequency": lvis_frequency(len(image_sets[i])),
            "image_count": len(image_sets[i]),
            "instance_count": instances[i],
        }
        for i, (name, definition, group) in enumerate(names_and_defs)
    ]
