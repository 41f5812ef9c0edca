"""insightgluon: the InsightFace face-recognition training pipeline on MXNet Gluon.

Importing the package has no side effects and does not import MXNet; the
sub-packages (``data``, ``networks``, ``losses``, ``train``, ``eval``,
``align``, ``export``) import it when they are used.
"""

__version__ = "0.1.0"
