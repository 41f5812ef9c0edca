"""Image decoding and encoding with OpenCV, in RGB order (no MXNet, so it is safe in workers)."""
import cv2
import numpy as np

from insightgluon.errors import ConfigError, DataFormatError

#: Extensions of the 8-bit photo formats OpenCV reads (grey-scale or colour), lower case.
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".jpe", ".png", ".bmp", ".dib", ".pgm", ".ppm", ".pbm", ".pnm",
                    ".tif", ".tiff", ".webp", ".jp2", ".sr", ".ras")
#: Formats a face crop can be written in -> the images they hold. PGM holds grey images only
#: (the classic face databases' format); PBM holds one bit per pixel, which no face survives.
CROP_FORMATS = {
    ".jpg": "colour", ".jpeg": "colour", ".jpe": "colour", ".png": "colour", ".bmp": "colour",
    ".dib": "colour", ".ppm": "colour", ".pnm": "colour", ".tif": "colour", ".tiff": "colour",
    ".webp": "colour", ".jp2": "colour", ".sr": "colour", ".ras": "colour", ".pgm": "grey",
}
_QUALITY_FLAGS = {".jpg": cv2.IMWRITE_JPEG_QUALITY, ".jpeg": cv2.IMWRITE_JPEG_QUALITY,
                  ".jpe": cv2.IMWRITE_JPEG_QUALITY, ".webp": cv2.IMWRITE_WEBP_QUALITY}
DEFAULT_CROP_EXT = ".jpg"


def crop_extension(source_ext: str, requested: str = "") -> str:
    """The extension a crop of a ``source_ext`` photo is written with.

    ``requested`` (``--ext``, with or without the dot) wins; otherwise the photo's
    own format when it can hold a face crop, else ``.jpg``.
    """
    if requested:
        ext = "." + requested.lower().lstrip(".")
        if ext not in CROP_FORMATS:
            raise ConfigError(f"--ext {requested}: crops cannot be written as '{ext}'; choose one of: "
                              + ", ".join(sorted(e.lstrip(".") for e in CROP_FORMATS)))
        return ext
    ext = source_ext.lower()
    return ext if ext in CROP_FORMATS else DEFAULT_CROP_EXT


def encode_image(rgb: np.ndarray, ext: str, quality: int = 95) -> bytes:
    """Encode an ``(H, W, 3)`` uint8 RGB image in the format of ``ext`` (``.png``, ``.pgm``, ...).

    Grey-only formats get the luminance; lossy formats use ``quality`` (1-100).

    Raises
    ------
    DataFormatError
        The format is not one of :data:`CROP_FORMATS` or OpenCV fails to encode it.
    """
    ext = ext.lower()
    if ext not in CROP_FORMATS:
        raise DataFormatError(f"cannot write '{ext}' images; choose one of: {', '.join(sorted(CROP_FORMATS))}")
    image = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY if CROP_FORMATS[ext] == "grey" else cv2.COLOR_RGB2BGR)
    params = [_QUALITY_FLAGS[ext], int(quality)] if ext in _QUALITY_FLAGS else []
    try:
        ok, buf = cv2.imencode(ext, image, params)
    except cv2.error:
        ok = False
    if not ok:
        raise DataFormatError(f"OpenCV failed to encode a {image.shape[1]}x{image.shape[0]} image as '{ext}'")
    return buf.tobytes()


def decode_jpeg(data: bytes, source: str = "") -> np.ndarray:
    """Decode image bytes (JPEG, or any format OpenCV reads) to RGB.

    Parameters
    ----------
    data : bytes
        Encoded image.
    source : str
        Where the bytes came from (``"train.rec: record 17"``), used in the error message.

    Returns
    -------
    np.ndarray
        ``(H, W, 3)`` uint8 RGB; grey-scale images are expanded to three channels.

    Raises
    ------
    DataFormatError
        The bytes do not decode.
    """
    buf = np.frombuffer(data, dtype=np.uint8) if len(data) else None
    bgr = cv2.imdecode(buf, cv2.IMREAD_COLOR) if buf is not None else None
    if bgr is None:
        where = source or "<bytes>"
        raise DataFormatError(f"{where}: image data does not decode ({len(data)} bytes)")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def encode_jpeg(rgb: np.ndarray, quality: int = 95) -> bytes:
    """Encode an ``(H, W, 3)`` uint8 RGB image as JPEG at ``quality`` (1-100)."""
    rgb = np.asarray(rgb)
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"encode_jpeg expects (H, W, 3) uint8 RGB, got {rgb.dtype} {rgb.shape}")
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise ValueError("OpenCV failed to encode the image as JPEG")
    return buf.tobytes()


def resize_to(rgb: np.ndarray, size) -> np.ndarray:
    """Bring an aligned face ``rgb`` to ``size = (height, width)``.

    A wider image of the same height is cropped to its centre columns instead of
    squeezed: the legacy 112x96 alignment template is the 112x112 one shifted 8
    pixels left, so the centre 96 columns of a 112x112 face *are* its 112x96
    alignment (SphereNet models read 112x112 packs and datasets this way). Any
    other size is resized.
    """
    height, width = int(size[0]), int(size[1])
    if rgb.shape[:2] == (height, width):
        return rgb
    if rgb.shape[0] == height and rgb.shape[1] > width:
        left = (rgb.shape[1] - width) // 2
        return np.ascontiguousarray(rgb[:, left:left + width])
    shrink = rgb.shape[0] > height or rgb.shape[1] > width
    interp = cv2.INTER_AREA if shrink else cv2.INTER_LINEAR
    return cv2.resize(rgb, (width, height), interpolation=interp)
