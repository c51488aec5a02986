import signal
import sys
from types import FrameType


def _before_main(signum: int, frame: FrameType | None) -> None:
    # Stopped while the CLI is still being imported: nothing started, nothing to clean up;
    # exit quietly as the CLI would (128 + N) instead of with a KeyboardInterrupt traceback.
    sys.exit(128 + signum)


for _signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
    signal.signal(_signum, _before_main)

from unitgen.cli import main  # noqa: E402 - after the handlers, on purpose

sys.exit(main())
