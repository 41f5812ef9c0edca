"""Faces in photos and videos against a model: 1:1 verification and gallery search (:mod:`.search`),
and recognition of every face of every frame (:mod:`.recognize`, with :mod:`.media` for frames in
and annotated frames out and :mod:`.viewer` for ``--show``).

Built on :mod:`insightgluon.engines` (what runs the model) and :mod:`insightgluon.align`
(MTCNN and the five-point alignment).
"""
