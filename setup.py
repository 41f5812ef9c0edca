"""insightgluon: InsightFace face-recognition training on Apache MXNet Gluon."""
from setuptools import find_packages, setup

setup(
    name="insightgluon",
    version="0.1.0",
    description="InsightFace face-recognition training pipeline on MXNet 1.9 / Gluon",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.11,<3.12",
    package_dir={"": "src"},
    packages=find_packages("src"),
    # Versions live in requirements/constraints.txt; install with
    # `pip install -c requirements/constraints.txt -e .` so numpy stays <1.24.
    install_requires=[
        line.strip()
        for line in open("requirements/base.txt", encoding="utf-8")
        if line.strip() and not line.startswith(("#", "-"))
    ],
    entry_points={
        "console_scripts": [
            "insightgluon=insightgluon.cli:main",
            "train_softmax=insightgluon.cli:train_softmax",
        ]
    },
)
