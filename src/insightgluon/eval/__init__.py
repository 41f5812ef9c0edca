"""Evaluation: face verification on ``.bin`` pair sets, MegaFace and 1:N search.

- :mod:`~insightgluon.eval.embed` — batched, flip-augmented embedding.
- :mod:`~insightgluon.eval.verification` — the legacy 10-fold protocol plus AUC,
  EER, TAR@FAR and ROC data.
- :mod:`~insightgluon.eval.plots` — ROC curve and worst-pair gallery images.
- :mod:`~insightgluon.eval.megaface` — devkit feature files and noise removal.
- :mod:`~insightgluon.eval.identification` — streaming CMC / TAR@FAR with up to
  millions of distractors, and 1:N evaluation on an identity folder.

Submodules are imported on use so that importing this package stays cheap.
"""
