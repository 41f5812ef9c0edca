"""``insightgluon face2rec``: an image folder tree or a legacy ``.lst`` -> ``train.rec/.idx/property``.

Folder mode: ``INPUT/<identity>/<images>``; identities sorted by name get labels
``0..N-1``. List mode: a ``.lst`` file (or a directory holding exactly one) in
the ``face2rec2`` format. Files without an image extension, images that do not
decode and ``aligned=0`` lines without landmarks are skipped and counted.
"""
import argparse
import logging
import os
import sys
from typing import Iterator, List, Optional, Tuple

from insightgluon.errors import DataFormatError
from insightgluon.outputs import output_dir
from insightgluon.progress import progress

log = logging.getLogger("insightgluon.face2rec")
_SHOW = 5  # skipped files named in the log


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="insightgluon face2rec", description=__doc__.split("\n\n")[0])
    parser.add_argument("input", help="folder of identity folders, a .lst file, or a directory with one .lst")
    parser.add_argument("-o", "--output", help="dataset directory to write (default: the .lst directory; "
                        "required for folders)")
    parser.add_argument("--quality", type=int, default=95, help="JPEG quality when re-encoding")
    parser.add_argument("--image-size", default="112,112", help="H,W of the stored images")
    return parser


def _find_lst(path: str) -> Optional[str]:
    if path.endswith(".lst"):
        return path
    if os.path.isdir(path):
        lsts = sorted(f for f in os.listdir(path) if f.endswith(".lst"))
        if len(lsts) > 1:
            raise DataFormatError(f"{path}: holds several .lst files ({', '.join(lsts[:3])}); pass one")
        if lsts:
            return os.path.join(path, lsts[0])
    return None


def _samples(items, image_size, quality, skipped: List[str]) -> Iterator[Tuple[int, bytes]]:
    from insightgluon.data.pack import load_aligned

    kept_of_label, label = 0, None
    for item in progress(items, desc="face2rec", unit="img"):
        if item.label != label:
            if label is not None and not kept_of_label:
                raise DataFormatError(f"{os.path.dirname(item.path)}: identity {label} has no decodable image")
            label, kept_of_label = item.label, 0
        try:
            jpeg = load_aligned(item, image_size, quality)
        except DataFormatError as err:
            skipped.append(str(err))
            continue
        kept_of_label += 1
        yield item.label, jpeg
    if label is not None and not kept_of_label:
        raise DataFormatError(f"identity {label} has no decodable image")


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    from insightgluon.data.pack import parse_lst, scan_folder
    from insightgluon.data.recordio import write_face_dataset

    try:
        height, width = (int(v) for v in args.image_size.split(","))
    except ValueError:
        raise DataFormatError(f"--image-size: expected H,W, got {args.image_size!r}") from None
    lst = _find_lst(args.input)
    if lst:
        report = parse_lst(lst)
        output = args.output or os.path.dirname(os.path.abspath(lst))
    else:
        if not args.output:
            build_parser().error("--output is required for a folder input")
        report = scan_folder(args.input)
        output = args.output
    output_dir(output, "--output")
    undecodable: List[str] = []
    prop = write_face_dataset(output, _samples(report.items, (height, width), args.quality, undecodable),
                              image_size=(height, width), num_classes=len(report.identities))
    for what, names in (("non-image files", report.skipped_non_image), ("undecodable images", undecodable),
                        ("aligned=0 lines without landmarks", report.skipped_lines)):
        if names:
            log.warning("skipped %d %s, e.g. %s", len(names), what, "; ".join(names[:_SHOW]))
    written = len(report.items) - len(undecodable)
    sys.stdout.write(f"{output}: {written} images, {prop.num_classes} identities, {prop.height}x{prop.width} "
                     f"(skipped {len(report.skipped_non_image)} non-image files, {len(undecodable)} undecodable "
                     f"images, {len(report.skipped_lines)} unaligned lines)\n")
    return 0
