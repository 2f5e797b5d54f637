"""
The worlds the project generates: synthetic long-tailed LVIS-format datasets written to disk
(images and annotation files), which :mod:`projects_lda.data` then reads like a user's files.
Each generator is a module run on its own, e.g.
``python -m projects_lda.worlds.embedded --out DIR``.
"""
