"""InsightFace data formats: RecordIO datasets, ``property``, ``.bin`` packs, augmentation, synthetic faces."""
