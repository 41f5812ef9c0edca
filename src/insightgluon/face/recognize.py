"""Who is in a frame: every face detected, aligned, embedded in one batch and matched to a gallery.

:class:`FrameRecognizer` runs the whole chain on one RGB frame - MTCNN (boxes and five
landmarks), the five-point alignment, the embedding of all faces of the frame in one batch
(flip-summed and L2-normalised as in verification, so a calibrated threshold applies), and
the match against a :class:`~insightgluon.face.search.Gallery` - and times each stage.

Matching (:func:`match_faces`): a face's score for an identity is its best cosine similarity
over that identity's gallery photos (photos of one person differ in pose and light; the best
one is the fairest comparison, where a mean would blur them). Within one frame an identity is
given to at most one face: ``assign`` solves the assignment that maximises the summed scores
of accepted pairs (the Hungarian method, as Open Model Zoo's demo matches), ``greedy`` takes
pairs best first. A face whose assigned score is below the threshold is unknown.
"""
import time
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from insightgluon.errors import ConfigError

MATCHES = ("assign", "greedy")
STAGES = ("detect", "align", "embed", "match")


@dataclass
class RecognisedFace:
    """One face of a frame: where it is, how sure the detector is, and who it is."""

    box: Tuple[float, float, float, float]
    landmarks: List[Tuple[float, float]]
    det_score: float
    identity: Optional[str]
    score: float
    top: List[Tuple[str, float]] = field(default_factory=list)

    def to_dict(self) -> Dict:
        return {"box": [round(v, 2) for v in self.box],
                "landmarks": [[round(x, 2), round(y, 2)] for x, y in self.landmarks],
                "det_score": round(self.det_score, 5), "identity": self.identity, "score": round(self.score, 5),
                "top": [[name, round(value, 5)] for name, value in self.top]}


def match_faces(scores: np.ndarray, threshold: float, mode: str = "assign") -> List[Optional[int]]:
    """The identity column of each face (row) of ``scores``, or None; one face per identity at most.

    ``scores`` is ``(faces, identities)``. ``assign`` maximises the summed score of the accepted
    pairs; ``greedy`` accepts the best remaining pair until none is above ``threshold``.
    """
    if mode not in MATCHES:
        raise ConfigError(f"--match {mode}: choose one of {', '.join(MATCHES)}")
    faces, identities = scores.shape
    out: List[Optional[int]] = [None] * faces
    if not faces or not identities:
        return out
    if mode == "assign":
        from scipy.optimize import linear_sum_assignment

        # Pairs below the threshold are worth nothing, so they never displace an accepted one.
        gain = np.where(scores > threshold, scores - threshold, 0.0)
        rows, cols = linear_sum_assignment(gain, maximize=True)
        for row, col in zip(rows, cols):
            if scores[row, col] > threshold:
                out[row] = int(col)
        return out
    order = np.dstack(np.unravel_index(np.argsort(-scores, axis=None), scores.shape))[0]
    taken = set()
    for row, col in order:
        if scores[row, col] <= threshold:
            break
        if out[row] is None and col not in taken:
            out[row] = int(col)
            taken.add(int(col))
    return out


class FrameRecognizer:
    """Recognise every face of RGB frames against a gallery.

    Parameters
    ----------
    model : FaceModel
        The embedding model (any engine).
    gallery : Gallery
        Embedded with the same model.
    detector : MTCNN
    threshold : float
        Cosine similarity above which a face is its best identity.
    match : {"assign", "greedy"}
    top_k : int
        Best identities listed per face.
    """

    def __init__(self, model, gallery, detector, threshold: float, match: str = "assign", top_k: int = 3):
        if match not in MATCHES:
            raise ConfigError(f"--match {match}: choose one of {', '.join(MATCHES)}")
        if top_k < 1:
            raise ConfigError(f"--top-k must be at least 1, got {top_k}")
        self.model, self.gallery, self.detector = model, gallery, detector
        self.threshold, self.match, self.top_k = float(threshold), match, int(top_k)
        self.seconds = dict.fromkeys(STAGES, 0.0)

    def __call__(self, rgb: np.ndarray) -> List[RecognisedFace]:
        """Every face of one uint8 RGB frame, best detection first."""
        from insightgluon.align.transform import align_face

        clock = time.perf_counter
        start = clock()
        boxes, landmarks = self.detector.detect(rgb)
        after_detect = clock()
        crops = [align_face(rgb, points, self.model.image_size) for points in landmarks]
        after_align = clock()
        embeddings = self.model.embed(np.stack(crops)) if crops else np.zeros((0, 1), np.float32)
        after_embed = clock()
        faces = self._match(boxes, landmarks, embeddings)
        end = clock()
        for stage, seconds in zip(STAGES, (after_detect - start, after_align - after_detect,
                                           after_embed - after_align, end - after_embed)):
            self.seconds[stage] += seconds
        return faces

    def _match(self, boxes: np.ndarray, landmarks: np.ndarray, embeddings: np.ndarray) -> List[RecognisedFace]:
        if not len(boxes):
            return []
        names, scores = self.gallery.identity_scores(embeddings)
        chosen = match_faces(scores, self.threshold, self.match)
        faces = []
        for k, column in enumerate(chosen):
            best = np.argsort(-scores[k])[:self.top_k]
            faces.append(RecognisedFace(
                tuple(float(v) for v in boxes[k, :4]), [(float(x), float(y)) for x, y in landmarks[k]],
                float(boxes[k, 4]), None if column is None else names[column],
                float(scores[k, column] if column is not None else scores[k].max()),
                [(names[j], float(scores[k, j])) for j in best]))
        return faces


def stage_report(seconds: Dict[str, float], frames: int) -> Sequence[str]:
    """``detect 12.3 ms`` ... per frame, for the stages timed by a :class:`FrameRecognizer`."""
    return [f"{stage} {1000 * seconds[stage] / max(frames, 1):.1f} ms" for stage in STAGES]


@dataclass
class RunSummary:
    """What a run over a whole input saw: counts, identities, time per stage, and how it ended."""

    frames: int = 0
    faces: int = 0
    identities: Dict[str, int] = field(default_factory=dict)
    seconds: Dict[str, float] = field(default_factory=dict)
    wall: float = 0.0
    interrupted: bool = False
    stopped: bool = False

    def lines(self) -> List[str]:
        seen = ", ".join(f"{name} ({count})" for name, count in sorted(self.identities.items())) or "none"
        fps = self.frames / self.wall if self.wall > 0 else 0.0
        per_stage = ", ".join(f"{stage} {1000 * self.seconds.get(stage, 0.0) / max(self.frames, 1):.1f}"
                              for stage in ("decode",) + STAGES)
        ending = " (interrupted)" if self.interrupted else " (window closed)" if self.stopped else ""
        return [f"frames {self.frames}, faces {self.faces}, {fps:.1f} frames/s{ending}",
                f"identities seen: {seen}",
                f"ms per frame: {per_stage}"]


def recognise_media(media, recognizer: FrameRecognizer, output=None, records=None, viewer=None,
                    progress: bool = True) -> RunSummary:
    """Recognise every frame of ``media`` (:class:`~insightgluon.face.media.MediaInput`).

    ``output`` (:class:`~insightgluon.face.media.AnnotatedOutput`) receives annotated frames;
    ``records`` is an unbuffered binary file to which each frame's faces are appended as JSON lines
    in one write, so every frame that finished is whole on disk. (SIGKILL can still cut the write
    in flight: Linux stops a file write between pages when the process is killed, leaving at most
    one unterminated last line.) ``viewer`` shows frames until closed.
    Ctrl-C ends the run early with ``interrupted`` set; the output is closed either way.
    """
    import json

    from insightgluon.face.media import annotate
    from insightgluon.progress import Progress

    summary = RunSummary()
    start = time.perf_counter()
    decode = 0.0
    frames = media.frames()
    try:
        with Progress(total=media.total, desc="recognize", unit="frame", enabled=progress) as bar:
            while True:
                tick = time.perf_counter()
                frame = next(frames, None)
                decode += time.perf_counter() - tick
                if frame is None:
                    break
                faces = recognizer(frame.rgb)
                summary.frames += 1
                summary.faces += len(faces)
                for face in faces:
                    if face.identity:
                        summary.identities[face.identity] = summary.identities.get(face.identity, 0) + 1
                if records is not None and faces:
                    lines = [json.dumps(dict(source=frame.source, frame=frame.index, time_s=round(frame.time_s, 3),
                                             **face.to_dict())) for face in faces]
                    records.write(("\n".join(lines) + "\n").encode())
                    records.flush()
                if output is not None or viewer is not None:
                    bgr = annotate(frame.rgb, faces)
                    if output is not None:
                        output.write(frame, bgr)
                    if viewer is not None and not viewer.show(bgr):
                        summary.stopped = True
                        break
                bar.update(1)
    except KeyboardInterrupt:
        summary.interrupted = True
    finally:
        if output is not None:
            output.close()
        frames.close()
    summary.wall = time.perf_counter() - start
    summary.seconds = dict(recognizer.seconds, decode=decode)
    return summary
