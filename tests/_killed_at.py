"""``python tests/_killed_at.py STEP insightgluon-args...``: the command line tool, killed by SIGKILL
right after training batch STEP, so that a test interrupts training at the same point on any machine.

The kill comes from the training process itself, as the kernel's would: nothing is flushed or closed.
"""
import os
import signal
import sys

from insightgluon.cli import main as cli_main
from insightgluon.train.loop import Session


def kill_after(step):
    """Make every :class:`Session` SIGKILL its own process once batch ``step`` is trained."""
    train_batch = Session._train_batch

    def train_batch_then_die(self, *args, **kwargs):
        train_batch(self, *args, **kwargs)
        if self.step == step:
            os.kill(os.getpid(), signal.SIGKILL)

    Session._train_batch = train_batch_then_die


if __name__ == "__main__":
    kill_after(int(sys.argv[1]))
    sys.exit(cli_main(sys.argv[2:]))
