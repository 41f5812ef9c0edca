"""From aligned crops to training and test data: ``.lst``, ``train.rec`` and ``.bin`` packs."""
import os
from typing import Iterator, List, Sequence, Tuple

from insightgluon.align.pipeline import Job
from insightgluon.data.image import decode_jpeg, encode_jpeg
from insightgluon.errors import ConfigError, DataFormatError


def aligned_jobs(jobs: Sequence[Job], out_root: str) -> List[Job]:
    """The jobs whose crop exists, in identity order (failed photos are left out)."""
    return [job for job in jobs if os.path.exists(os.path.join(out_root, job.rel))]


def contiguous_labels(jobs: Sequence[Job]) -> dict:
    """Identity -> label 0..K-1 over identities that have at least one crop."""
    names = sorted({job.identity for job in jobs})
    if not names:
        raise ConfigError("no aligned crops: every photo failed or was skipped (see the report)")
    if "" in names:
        raise ConfigError("labels need one sub-directory per identity (photos found directly in the input "
                          "directory, or a list without identities)")
    return {name: i for i, name in enumerate(names)}


def write_lst(path: str, jobs: Sequence[Job], out_root: str) -> int:
    """Write the legacy ``1<TAB>aligned_path<TAB>label`` list of the aligned crops; returns its length."""
    done = aligned_jobs(jobs, out_root)
    labels = contiguous_labels(done)
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        for job in done:
            f.write(f"1\t{os.path.abspath(os.path.join(out_root, job.rel))}\t{labels[job.identity]}\n")
    os.replace(tmp, path)
    return len(done)


def _jpeg_bytes(path: str, image_size) -> bytes:
    with open(path, "rb") as f:
        data = f.read()
    rgb = decode_jpeg(data, path)
    if rgb.shape[:2] != tuple(image_size):
        raise DataFormatError(f"{path}: crop is {rgb.shape[0]}x{rgb.shape[1]}, expected "
                              f"{image_size[0]}x{image_size[1]} (an older run with another --image-size?)")
    # JPEG crops are stored verbatim (legacy aligned=1); other formats are re-encoded.
    return data if data[:3] == b"\xff\xd8\xff" else encode_jpeg(rgb, 95)


def write_rec(rec_dir: str, jobs: Sequence[Job], out_root: str, image_size=(112, 112)):
    """``train.rec/train.idx/property`` of the aligned crops, one class per identity directory.

    Returns
    -------
    insightgluon.data.property.Property
    """
    from insightgluon.data.recordio import write_face_dataset

    done = aligned_jobs(jobs, out_root)
    labels = contiguous_labels(done)

    def samples() -> Iterator[Tuple[int, bytes]]:
        for job in done:
            yield labels[job.identity], _jpeg_bytes(os.path.join(out_root, job.rel), image_size)

    return write_face_dataset(rec_dir, samples(), image_size=image_size)


def crop_pairs(pairs_path: str, out_root: str, ext: str = "") -> List[Tuple[str, str, bool, str]]:
    """The pairs of ``pairs.txt`` as crop paths: ``(crop_a, crop_b, same, "file: line N")``.

    ``pairs.txt`` is LFW's (``name i j`` / ``name1 i name2 j``, photos ``name/name_%04d.jpg``)
    or the simple ``path1 path2 0|1`` form, paths relative to ``out_root``; each
    photo name becomes its crop's name (``ext`` is ``--ext``). Parsing it before
    the alignment starts finds a bad pairs file at once.
    """
    from insightgluon.data.image import crop_extension
    from insightgluon.data.pack import LFW_PATTERN, parse_pairs

    def crop(path: str) -> str:
        stem, source_ext = os.path.splitext(path)
        return stem + crop_extension(source_ext, ext)

    return [(crop(a), crop(b), same, where) for a, b, same, where in parse_pairs(pairs_path, out_root, LFW_PATTERN)]


def _existing_crop(path: str) -> str:
    """``path``, or the crop of the same stem in another format (LFW-style pairs name ``.jpg``
    photos, but a folder of ``.pgm`` photos gives ``.pgm`` crops); ``""`` when there is none."""
    from insightgluon.data.image import CROP_FORMATS

    if os.path.exists(path):
        return path
    stem = os.path.splitext(path)[0]
    return next((stem + e for e in sorted(CROP_FORMATS) if os.path.exists(stem + e)), "")


def write_pairs_bin(bin_path: str, pairs_path: str, out_root: str, image_size=(112, 112), ext: str = "") -> int:
    """Pack the aligned crops named by ``pairs.txt`` as a ``.bin`` verification set; returns the pair count.

    See :func:`crop_pairs` for the pairs file and ``ext``.
    """
    from insightgluon.data.bin import save_bin

    bins, issame = [], []
    for path_a, path_b, same, where in crop_pairs(pairs_path, out_root, ext):
        for crop in (path_a, path_b):
            found = _existing_crop(crop)
            if not found:
                raise DataFormatError(f"{where}: no aligned crop {crop} (photo missing or skipped; see the report)")
            bins.append(_jpeg_bytes(found, image_size))
        issame.append(same)
    save_bin(bin_path, bins, issame)
    return len(issame)
