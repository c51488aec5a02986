# The C module, not `signal`: importing `signal` builds its enums (milliseconds), and a Ctrl-C
# landing in there would be a traceback before any handler of ours exists.
import _signal  # type: ignore[import-not-found]  # typeshed describes only `signal`
import sys


def _before_main(signum: int, frame: object) -> None:
    # Stopped while the CLI is still being imported: nothing started, nothing to clean up;
    # exit quietly as the CLI would (128 + N) instead of with a KeyboardInterrupt traceback.
    sys.exit(128 + signum)


for _signum in (_signal.SIGINT, _signal.SIGTERM, _signal.SIGHUP):
    _signal.signal(_signum, _before_main)

from unitgen.cli import main  # noqa: E402 - after the handlers, on purpose

sys.exit(main())
