"""Models of other frameworks read into ours: PyTorch state dicts without PyTorch (:mod:`.pth`)."""
