"""LDA for detectron2."""
