"""Faces in photos against a model: 1:1 verification and gallery search (:mod:`.search`).

Built on :mod:`insightgluon.engines` (what runs the model) and :mod:`insightgluon.align`
(MTCNN and the five-point alignment).
"""
