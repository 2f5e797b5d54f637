"""
LVIS's frequency groups: a category is rare, common or frequent by its number of training images.

A leaf module (it imports nothing of the project): the LVIS-format loader
(:mod:`projects_lda.data.annotation_file`), the generators of :mod:`projects_lda.worlds` and
the evaluation need the rule.
"""

__all__ = ["RARE_MAX_IMAGES", "COMMON_MAX_IMAGES", "lvis_frequency"]

RARE_MAX_IMAGES = 10  # rare: 1-10 training images
COMMON_MAX_IMAGES = 100  # common: 11-100; frequent: more


def lvis_frequency(image_count):
    """LVIS's frequency group (``"r"``, ``"c"`` or ``"f"``) of a category from its number of
    training images."""
    if image_count <= RARE_MAX_IMAGES:
        return "r"
    return "c" if image_count <= COMMON_MAX_IMAGES else "f"
