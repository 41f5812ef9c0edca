"""Align many photos: detection (or given landmarks), fallbacks, resumable writes, a report.

A :class:`Job` says where a photo is, where its crop goes and what is known
about it (landmarks from a list, a box from MegaFace's JSON). :func:`run_jobs`
skips jobs whose output exists, detects the rest in batches, writes each crop
atomically and keeps a report of every photo without a detected face.
"""
import contextlib
import os
import tempfile
from typing import Dict, Iterable, List, NamedTuple, Optional, Sequence, Tuple

import numpy as np
from insightgluon.align import boxes as bx
from insightgluon.align.landmarks import read_rgb
from insightgluon.align.transform import BBOX_MARGIN, align_face, crop_bbox, select_face
from insightgluon.data.image import crop_extension, encode_image
from insightgluon.errors import ConfigError, DataFormatError
from insightgluon.progress import Progress

REPORT_HEADER = "path\tproblem\taction\n"
NO_FACE_ACTIONS = ("center", "skip")
# A detection must overlap the dataset's own box this much to count as the same face (legacy).
HINT_IOU = 0.3


class Job(NamedTuple):
    """One photo to align; ``rel`` is its crop's path relative to the output root.

    Layouts set ``rel`` to the photo's path relative to the input root;
    :func:`with_crop_names` gives it the crop's extension.
    """

    src: str
    rel: str
    identity: str = ""
    landmarks: Optional[np.ndarray] = None
    box: Optional[np.ndarray] = None


class Outcome(NamedTuple):
    rel: str
    method: str  # landmarks | detected | bbox | center | skipped | unreadable
    problem: str = ""


class FaceAligner:
    """Turn one photo into one aligned crop, choosing the face and the fallback.

    Parameters
    ----------
    detector : MTCNN, optional
        Needed unless every job carries landmarks.
    image_size : (height, width)
    margin : int
        Margin of the bounding-box fallback crop (legacy 44).
    no_face : {"center", "skip"}
        Without a detection (and no box from the dataset): crop the image centre
        (legacy) or write nothing.
    """

    def __init__(self, detector=None, image_size=(112, 112), margin: int = BBOX_MARGIN, no_face: str = "center"):
        if no_face not in NO_FACE_ACTIONS:
            raise ValueError(f"no_face must be one of {NO_FACE_ACTIONS}, got {no_face!r}")
        self.detector, self.image_size, self.margin, self.no_face = detector, tuple(image_size), margin, no_face

    def align_batch(self, jobs: List[Job], images: List[np.ndarray]) -> List[Tuple[Optional[np.ndarray], str, str]]:
        """``(crop or None, method, problem)`` per job."""
        out: List = [None] * len(jobs)
        to_detect = []
        for i, (job, rgb) in enumerate(zip(jobs, images)):
            if job.landmarks is None:
                to_detect.append(i)
                continue
            try:
                out[i] = (align_face(rgb, job.landmarks, self.image_size), "landmarks", "")
            except ValueError as err:
                out[i] = self._fallback(rgb, job, f"bad landmarks: {err}")
        if to_detect:
            if self.detector is None:
                raise ValueError("a photo has no landmarks and no detector was given")
            found = self.detector.detect_batch([images[i] for i in to_detect])
            for i, (boxes, points) in zip(to_detect, found):
                out[i] = self._from_detections(images[i], jobs[i], boxes, points)
        return out

    def _from_detections(self, rgb, job: Job, boxes, points):
        if len(boxes) and job.box is not None:
            overlap = bx.iou(np.asarray(job.box, dtype=np.float64), boxes)
            if overlap.max() <= HINT_IOU:
                return self._fallback(rgb, job, "no detection matches the dataset box")
            pick = int(np.argmax(overlap))
        elif len(boxes):
            pick = select_face(boxes, rgb.shape)
        else:
            return self._fallback(rgb, job, "no face detected")
        return align_face(rgb, points[pick], self.image_size), "detected", ""

    def _fallback(self, rgb, job: Job, problem: str):
        if job.box is not None:
            return crop_bbox(rgb, job.box, self.margin, self.image_size), "bbox", problem
        if self.no_face == "skip":
            return None, "skipped", problem
        return crop_bbox(rgb, None, self.margin, self.image_size), "center", problem


def write_image(path: str, rgb: np.ndarray, quality: int = 95) -> None:
    """Encode by the file extension (lossy formats at ``quality``) and publish with a rename."""
    ext = os.path.splitext(path)[1].lower() or ".jpg"
    try:
        data = encode_image(rgb, ext, quality)
    except DataFormatError as err:
        raise DataFormatError(f"{path}: {err}") from None
    directory = os.path.dirname(path)
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=ext, dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def with_crop_names(jobs: Sequence[Job], ext: str = "") -> List[Job]:
    """The jobs with ``rel`` renamed to their crop's file name: same stem, extension from
    :func:`~insightgluon.data.image.crop_extension` (``ext`` is ``--ext``)."""
    out, seen = [], {}
    for job in jobs:
        stem, source_ext = os.path.splitext(job.rel)
        rel = stem + crop_extension(source_ext, ext)
        if rel in seen:
            raise ConfigError(f"photos {seen[rel]} and {job.rel} would both be written as {rel}; "
                              "rename one of them or choose another --ext")
        seen[rel] = job.rel
        out.append(job._replace(rel=rel))
    return out


def read_report(path: str) -> Dict[str, Tuple[str, str]]:
    """``{rel_path: (problem, action)}`` of an earlier report (empty if there is none)."""
    if not os.path.exists(path):
        return {}
    out = {}
    with open(path, encoding="utf-8") as f:
        for line in f.read().splitlines()[1:]:
            fields = line.split("\t")
            if len(fields) == 3:
                out[fields[0]] = (fields[1], fields[2])
    return out


def write_report(path: str, entries: Dict[str, Tuple[str, str]]) -> None:
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".report-", dir=directory)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(REPORT_HEADER)
        for rel in sorted(entries):
            f.write(f"{rel}\t{entries[rel][0]}\t{entries[rel][1]}\n")
    os.replace(tmp, path)


def run_jobs(jobs: Iterable[Job], out_root: str, aligner: FaceAligner, report_path: str,
             batch_size: int = 16, quality: int = 95) -> Dict[str, int]:
    """Align every job whose output does not exist yet; returns counts per method.

    The report (tab-separated ``path, problem, action``) keeps entries of
    earlier runs for photos this run skipped because their crop exists.
    """
    jobs = list(jobs)
    report = read_report(report_path)
    counts: Dict[str, int] = {}
    pending = []
    for job in jobs:
        if os.path.exists(os.path.join(out_root, job.rel)):
            counts["existing"] = counts.get("existing", 0) + 1
        else:
            report.pop(job.rel, None)
            pending.append(job)
    try:
        with Progress(total=len(pending), desc="align", unit="img") as bar:
            for start in range(0, len(pending), batch_size):
                for outcome in _run_batch(pending[start:start + batch_size], out_root, aligner, quality):
                    counts[outcome.method] = counts.get(outcome.method, 0) + 1
                    if outcome.problem:
                        report[outcome.rel] = (outcome.problem, outcome.method)
                    bar.update(1)
    finally:
        write_report(report_path, report)
    return counts


def _run_batch(jobs: List[Job], out_root: str, aligner: FaceAligner, quality: int) -> List[Outcome]:
    readable, images, outcomes = [], [], []
    for job in jobs:
        try:
            images.append(read_rgb(job.src))
            readable.append(job)
        except DataFormatError as err:
            outcomes.append(Outcome(job.rel, "unreadable", str(err).split(": ", 1)[-1]))
    for job, (crop, method, problem) in zip(readable, aligner.align_batch(readable, images)):
        if crop is not None:
            write_image(os.path.join(out_root, job.rel), crop, quality)
        outcomes.append(Outcome(job.rel, method, problem))
    return outcomes
