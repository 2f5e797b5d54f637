"""
The application: what ``train_net.py`` and the tools run, above the training engine
(:mod:`projects_lda.engine`) and the trained model's use (:mod:`projects_lda.deploy`).
"""
