"""``--show``: annotated frames in a window, with Tk.

OpenCV's own window (``cv2.imshow``) needs a GUI build of OpenCV, which a headless
installation lacks; Tk comes with Python and draws on any X display (a real one, or a virtual
one such as Xvfb). Without a display the viewer says so once and the run goes on without it.
Closing the window, ``q`` or Escape stops the run, as in Open Model Zoo's demos.
"""
import logging
import os
import sys
from typing import Optional

import numpy as np

from insightgluon.errors import first_line

logger = logging.getLogger(__name__)


class Viewer:
    """A Tk window showing BGR frames; ``show`` returns False once the user closed it."""

    def __init__(self, title: str):
        import tkinter

        from PIL import ImageTk  # noqa: F401  (fail here, not at the first frame)

        self.root = tkinter.Tk()
        self.root.title(title)
        self.label = tkinter.Label(self.root)
        self.label.pack()
        self.open = True
        self.root.protocol("WM_DELETE_WINDOW", self._close)
        self.root.bind("<Key>", lambda event: self._close() if event.keysym in ("q", "Escape") else None)
        self.shown = 0

    def _close(self) -> None:
        self.open = False

    def show(self, bgr: np.ndarray) -> bool:
        from PIL import Image, ImageTk

        if not self.open:
            return False
        photo = ImageTk.PhotoImage(Image.fromarray(np.ascontiguousarray(bgr[:, :, ::-1])))
        self.label.configure(image=photo)
        self.label.image = photo  # Tk keeps no reference of its own
        self.root.update()
        self.shown += 1
        return self.open

    def close(self) -> None:
        try:
            self.root.destroy()
        except Exception:  # noqa: BLE001 -- the window may already be gone
            pass


def open_viewer(title: str) -> Optional[Viewer]:
    """A :class:`Viewer`, or None (with one warning) where no window can be opened."""
    if sys.platform.startswith("linux") and not os.environ.get("DISPLAY"):
        logger.warning("--show: no display here (DISPLAY is not set); going on without a window")
        return None
    try:
        return Viewer(title)
    except Exception as err:  # tkinter.TclError (no display), ImportError (no Tk or PIL)
        logger.warning("--show: cannot open a window (%s); going on without it", first_line(err))
        return None
