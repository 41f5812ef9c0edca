"""Recognising every face of 640x480 frames: frames/s and milliseconds per stage, beside detection alone.

Frames hold 1, 3 or 10 synthetic faces (``insightgluon.data.synthetic``, 96-128 px) on a
gradient background; the gallery holds those identities and ten more. The model is a y1 (emb
128, random weights: speed does not depend on them) loaded by ``FaceModel`` on ``--engine``
(default ``auto``: OpenVINO here) in ``--dtype``; MTCNN runs on the same side (OpenVINO when
the model does) with the smallest face ``--min-size`` (40 px) and the deploy preset's scale
factor 0.709 and thresholds. Each configuration is timed over ``--frames`` frames, ``--repeat``
rounds interleaved with detection alone on the same frames; medians.

    OMP_NUM_THREADS=2 python bench/face_pipeline.py [--frames 30] [--repeat 3] [--dtype fp32]
"""
import argparse
import os
import statistics
import sys
import tempfile
import time

import numpy as np

from _clock import StealFreeClock


def face_frame(identities, rng, size=(480, 640)):
    """A frame with one synthetic face per identity, laid out on a grid, on a gradient background."""
    import cv2

    from insightgluon.data.image import decode_jpeg
    from insightgluon.data.synthetic import render_identity

    height, width = size
    ramp = np.linspace(0, 1, height, dtype=np.float32)[:, None, None]
    frame = ((1 - ramp) * rng.uniform(40, 200, 3) + ramp * rng.uniform(40, 200, 3)) * np.ones((1, width, 1))
    frame = frame.astype(np.uint8)
    cols = min(len(identities), 5)
    for k, identity in enumerate(identities):
        side = int(rng.integers(96, 129))
        face = cv2.resize(decode_jpeg(render_identity(0, identity, 2, 112)[1]), (side, side))
        x = 8 + (k % cols) * (width - 16) // cols
        y = 20 + (k // cols) * 230 + int(rng.integers(0, 230 - side))
        frame[y:y + side, x:x + side] = face
    return frame


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=30)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--faces", default="1,3,10")
    parser.add_argument("--engine", default="auto")
    parser.add_argument("--dtype", default="fp32", choices=("fp32", "bf16"))
    parser.add_argument("--min-size", type=float, default=40)
    args = parser.parse_args(argv)
    from insightgluon import runtime

    runtime.configure()
    import cv2
    import mxnet as mx

    from insightgluon.align.mtcnn import MTCNN
    from insightgluon.data.image import decode_jpeg
    from insightgluon.data.synthetic import render_identity
    from insightgluon.face.recognize import FrameRecognizer
    from insightgluon.face.search import FaceCropper, FaceModel, Gallery
    from insightgluon.networks import get_network
    from insightgluon.precision import DTYPES
    from insightgluon.train.checkpoint import save_deployable

    rng = np.random.default_rng(0)
    counts = [int(c) for c in args.faces.split(",")]
    with tempfile.TemporaryDirectory() as root:
        net = get_network("y1", emb_size=128)
        net.initialize(mx.init.Xavier())
        with mx.autograd.train_mode():
            net(mx.nd.random.uniform(0, 255, (4, 3, 112, 112)))
        save_deployable(net, os.path.join(root, "y1"), 0)
        model = FaceModel.load(os.path.join(root, "y1") + ",0", engine=args.engine, dtype=DTYPES[args.dtype])
        gallery_dir = os.path.join(root, "gallery")
        os.makedirs(gallery_dir)
        for identity in range(20):
            cv2.imwrite(os.path.join(gallery_dir, f"id{identity}.png"),
                        decode_jpeg(render_identity(0, identity, 1, 112)[0])[:, :, ::-1])
        gallery = Gallery(gallery_dir, model, FaceCropper(model.image_size, aligned=True), cache=False)
        detector = MTCNN.from_preset("deploy", min_size=args.min_size,  # what face recognize uses
                                     engine="openvino" if model.engine.startswith("openvino") else "mxnet")
        # Identities from 1: MTCNN misses synthetic identity 0's drawing at most sizes.
        frames = {n: [face_frame(list(range(1, n + 1)), rng) for _ in range(args.frames)] for n in counts}
        clock = StealFreeClock()
        results = {n: {"detect": [], "all": [], "found": 0, "stages": []} for n in counts}
        for _ in range(args.repeat):
            for n in counts:
                start = clock()
                found = sum(len(detector.detect(f)[0]) for f in frames[n])
                results[n]["detect"].append(len(frames[n]) / (clock() - start))
                recognizer = FrameRecognizer(model, gallery, detector, threshold=0.3)
                start = clock()
                for f in frames[n]:
                    recognizer(f)
                results[n]["all"].append(len(frames[n]) / (clock() - start))
                results[n]["found"] = found / len(frames[n])
                results[n]["stages"].append({k: 1000 * v / len(frames[n]) for k, v in recognizer.seconds.items()})
    print(f"640x480 frames, y1 on {model.engine}, MTCNN on {detector.engine} (min face {args.min_size:g} px, "
          f"factor 0.709), {args.frames} frames x {args.repeat} rounds, medians, steal "
          f"{100 * clock.steal_share():.1f}%")
    print("| faces | found per frame | detection alone, frames/s | end to end, frames/s | "
          "detect / align / embed / match, ms per frame |")
    print("|---|---|---|---|---|")
    for n in counts:
        r = results[n]
        stages = {k: statistics.median(s[k] for s in r["stages"]) for k in r["stages"][0]}
        print(f"| {n} | {r['found']:.1f} | {statistics.median(r['detect']):.1f} | "
              f"{statistics.median(r['all']):.1f} | " + " / ".join(f"{stages[k]:.1f}" for k in stages) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
