"""Frames in and annotated frames out: photos, folders of photos, video files and cameras.

:func:`open_input` reads what ``face recognize`` is given - an image, a folder of images
(recursively), a video file (whatever OpenCV's ``VideoCapture`` opens) or a camera index - as
:class:`Frame` objects. :class:`AnnotatedOutput` writes each annotated frame back: photos under
the output folder at their relative paths, a video or camera as an MP4 of the same size and
frame rate. :func:`annotate` draws boxes, the five landmarks and ``name 0.71`` / ``unknown``.
"""
import logging
import os
from dataclasses import dataclass
from typing import Iterator, List, Optional

import cv2
import numpy as np

from insightgluon.data.image import IMAGE_EXTENSIONS
from insightgluon.errors import DataFormatError

logger = logging.getLogger(__name__)

KNOWN, UNKNOWN = (60, 200, 60), (40, 40, 230)  # BGR box colours
#: Formats an annotated photo is written back in; others get ``.png`` appended.
ANNOTATED_FORMATS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")


@dataclass
class Frame:
    """One frame: ``source`` is the photo's path relative to the input (or the video's name),
    ``index`` the frame number (0 for a photo), ``time_s`` its time in the video, ``rgb`` uint8."""

    source: str
    index: int
    time_s: float
    rgb: np.ndarray


def _read_image(path: str) -> np.ndarray:
    data = np.fromfile(path, dtype=np.uint8) if os.path.isfile(path) else None
    if data is None:
        raise DataFormatError(f"{path}: no such image")
    bgr = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if bgr is None:
        raise DataFormatError(f"{path}: not a readable image")
    return bgr[:, :, ::-1]


class MediaInput:
    """What to recognise. ``kind`` is ``image``, ``folder``, ``video`` or ``camera``; ``total`` the
    number of frames or files when known; ``fps`` and ``size`` (W, H) those of a video or camera;
    ``failed`` the files of a folder that could not be read (each also logged)."""

    def __init__(self, spec: str):
        self.spec, self.failed, self.fps, self.size = spec, [], 0.0, None
        self._capture = None
        if spec.isdigit():
            self.kind, self.total = "camera", None
            self._capture = self._open_capture(int(spec), f"camera {spec}: does not open")
        elif os.path.isdir(spec):
            self.kind = "folder"
            self.files = sorted(os.path.relpath(os.path.join(d, f), spec) for d, _, names in os.walk(spec)
                                for f in names if f.lower().endswith(IMAGE_EXTENSIONS) and not f.startswith("."))
            if not self.files:
                raise DataFormatError(f"{spec}: no images in this folder")
            self.total = len(self.files)
        elif not os.path.exists(spec):
            raise DataFormatError(f"{spec}: no such image, folder or video")
        elif spec.lower().endswith(IMAGE_EXTENSIONS):
            self.kind, self.total, self.files = "image", 1, [os.path.basename(spec)]
        else:
            self.kind = "video"
            self._capture = self._open_capture(spec, f"{spec}: not a video OpenCV can open")
            count = int(self._capture.get(cv2.CAP_PROP_FRAME_COUNT))
            self.total = count if count > 0 else None

    def _open_capture(self, what, error: str):
        capture = cv2.VideoCapture(what)
        if not capture.isOpened():
            raise DataFormatError(error)
        self.fps = float(capture.get(cv2.CAP_PROP_FPS)) or 25.0
        self.size = (int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)), int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT)))
        return capture

    @property
    def name(self) -> str:
        """The input as records name it: a video's file name, ``camera0``."""
        return f"camera{self.spec}" if self.kind == "camera" else os.path.basename(os.path.normpath(self.spec))

    def frames(self) -> Iterator[Frame]:
        if self._capture is None:
            root = self.spec if self.kind == "folder" else os.path.dirname(self.spec)
            for rel in self.files:
                try:
                    rgb = _read_image(os.path.join(root, rel))
                except DataFormatError as err:
                    if self.kind == "image":
                        raise
                    logger.warning("%s; going on with the rest", err)
                    self.failed.append(rel)
                    continue
                yield Frame(rel, 0, 0.0, rgb)
            return
        index = 0
        try:
            while True:
                ok, bgr = self._capture.read()
                if not ok:
                    break
                yield Frame(self.name, index, index / self.fps, bgr[:, :, ::-1])
                index += 1
        finally:
            self._capture.release()


def open_input(spec: str) -> MediaInput:
    """:class:`MediaInput` for an image, a folder, a video file or a camera index; one line when it cannot."""
    return MediaInput(spec)


def annotate(rgb: np.ndarray, faces) -> np.ndarray:
    """A BGR copy of ``rgb`` with every face's box, landmarks and ``name score`` (or ``unknown``)."""
    bgr = np.ascontiguousarray(rgb[:, :, ::-1])
    scale = max(bgr.shape[:2]) / 640.0
    thick = max(1, int(round(2 * scale)))
    for face in faces:
        colour = KNOWN if face.identity else UNKNOWN
        x1, y1, x2, y2 = (int(round(v)) for v in face.box)
        cv2.rectangle(bgr, (x1, y1), (x2, y2), colour, thick)
        for x, y in face.landmarks:
            cv2.circle(bgr, (int(round(x)), int(round(y))), thick + 1, (0, 220, 255), -1)
        label = f"{face.identity} {face.score:.2f}" if face.identity else "unknown"
        font = 0.5 * max(scale, 0.6)
        (w, h), base = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, font, 1)
        top = max(y1 - h - base - 2, 0)
        cv2.rectangle(bgr, (x1, top), (x1 + w + 4, top + h + base + 2), colour, -1)
        cv2.putText(bgr, label, (x1 + 2, top + h + 1), cv2.FONT_HERSHEY_SIMPLEX, font, (255, 255, 255), 1,
                    cv2.LINE_AA)
    return bgr


class AnnotatedOutput:
    """Writes annotated frames under ``folder``: photos at their relative paths (``.png`` appended to a
    format that cannot hold colour, such as ``.pgm``), a video or camera as ``<stem>.mp4``."""

    def __init__(self, folder: str, media: MediaInput):
        self.folder, self.media = folder, media
        self.path: Optional[str] = None
        self._writer = None
        self.written: List[str] = []

    def write(self, frame: Frame, bgr: np.ndarray) -> None:
        if self.media.kind in ("image", "folder"):
            path = os.path.join(self.folder, frame.source)
            if os.path.splitext(path)[1].lower() not in ANNOTATED_FORMATS:
                path += ".png"  # a grey or exotic format cannot hold the coloured annotations
            os.makedirs(os.path.dirname(path), exist_ok=True)
            ok, data = cv2.imencode(os.path.splitext(path)[1], bgr)
            if not ok:
                raise DataFormatError(f"{path}: cannot encode the annotated image")
            with open(path, "wb") as stream:
                stream.write(data.tobytes())
            self.written.append(path)
            return
        if self._writer is None:
            stem = os.path.splitext(self.media.name)[0]
            self.path = os.path.join(self.folder, f"{stem}.mp4")
            height, width = bgr.shape[:2]
            self._writer = cv2.VideoWriter(self.path, cv2.VideoWriter_fourcc(*"mp4v"), self.media.fps,
                                           (width, height))
            if not self._writer.isOpened():
                raise DataFormatError(f"{self.path}: OpenCV cannot write an MP4 video here")
            self.written.append(self.path)
        self._writer.write(bgr)

    def close(self) -> None:
        """Finish the video (a playable file, also after Ctrl-C)."""
        if self._writer is not None:
            self._writer.release()
            self._writer = None
