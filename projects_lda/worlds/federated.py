"""
Federated (LVIS-style) annotation of an exhaustively annotated split of the embedded dataset.

LVIS v1 is not exhaustively annotated. Each image is checked for only some categories:

* **positive** categories are labelled (the image's annotations);
* ``neg_category_ids`` is a *sample* of the categories verified absent, not all absent ones;
* ``not_exhaustive_category_ids`` marks positive categories whose instances in the image are only
  partly labelled;
* objects of categories the image was never checked for are in the image without a label.

LVIS evaluation follows from this: a detection of category ``c`` in an image counts only if ``c``
is a positive or a negative of the image (otherwise it is ignored), and an unmatched detection of
a category in ``not_exhaustive_category_ids`` is ignored too. Training sees unlabelled objects
as background.

:func:`federate` turns the exhaustive labels into such labels with the rates below. They are
chosen close to LVIS v1's; LVIS's paper (Gupta et al., 2019) describes the federated design but
the rates it implies are not published per image, so the numbers are estimates (see
``docs/datasets.md``).
"""

__all__ = ["federate", "UNCHECKED_PROB", "NEG_SAMPLE_PROB", "NOT_EXHAUSTIVE_PROB"]

# Probability that a category present in an image was never checked for it (missed at LVIS's
# object-spotting stage): its objects stay in the image, unlabelled, and it is not a negative.
UNCHECKED_PROB = 0.15
# Probability that an absent category is listed in the image's neg_category_ids (verified
# absent); about 4 of the 27 absent categories of an image of the 30-class variant.
NEG_SAMPLE_PROB = 0.15
# Probability that a positive category with at least two instances in the image is marked
# not exhaustive; each of its instances but one is then left unlabelled with MISSING_PROB
# (at least one is left unlabelled).
NOT_EXHAUSTIVE_PROB = 0.4
MISSING_PROB = 0.5
# Chance that a class of an image gets a second instance (the exhaustive variant: 0.12 in
# training, none in val / test): LVIS images hold several instances of a category far more often.
DUPLICATE_PROB = 0.35


def federate(rng, images, annotations, *, num_classes, neg_sample_prob=NEG_SAMPLE_PROB,
             unchecked=None):  # fmt: skip
    """
    Apply federated labelling to one split (in place on copies of the image records).

    Args:
        rng (np.random.Generator): the random stream.
        images (list[dict]): LVIS image records of an exhaustively annotated split (every
            absent category in ``neg_category_ids``).
        annotations (list[dict]): all objects of the split, each with ``image_id``,
            ``category_id`` and ``id``.
        num_classes (int): categories are ``1..num_classes``.
        neg_sample_prob (float): probability that an absent category is listed as a negative
            (the many-class variant lowers it to keep a few negatives per image).
        unchecked (set or None): the (image id, category id) pairs never checked, chosen by the
            caller (the many-class variant's training split, so that every class keeps its
            planned number of labelled images); None: each present category of an image is
            unchecked with probability ``UNCHECKED_PROB``.

    Returns:
        (images, annotations): the federated image records and the labelled annotations (a subset
        of ``annotations``, in their order, ids unchanged).
    """
    by_image = {}
    for ann in annotations:
        by_image.setdefault(ann["image_id"], {}).setdefault(ann["category_id"], []).append(ann)
    keep_ids = set()
    out_images = []
    for img in images:
        present = by_image.get(img["id"], {})
        positives, not_exhaustive = [], []
        for cat in sorted(present):
            anns = present[cat]
            if unchecked is None:
                never_checked = rng.random() < UNCHECKED_PROB
            else:
                never_checked = (img["id"], cat) in unchecked
            if never_checked:
                continue  # never checked: unlabelled objects, not a negative either
            positives.append(cat)
            kept = anns
            if len(anns) > 1 and rng.random() < NOT_EXHAUSTIVE_PROB:
                drop = rng.random(len(anns) - 1) < MISSING_PROB
                if not drop.any():
                    drop[rng.integers(len(drop))] = True
                kept = [anns[0]] + [a for a, d in zip(anns[1:], drop) if not d]
                not_exhaustive.append(cat)
            keep_ids.update(a["id"] for a in kept)
        absent = [c for c in range(1, num_classes + 1) if c not in present]
        sampled = rng.random(len(absent)) < neg_sample_prob
        out_images.append(
            dict(
                img,
                neg_category_ids=[c for c, s in zip(absent, sampled) if s],
                not_exhaustive_category_ids=not_exhaustive,
            )
        )
    return out_images, [a for a in annotations if a["id"] in keep_ids]
