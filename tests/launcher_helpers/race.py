"""Start line for the race test: block until the test releases everyone at once, then run main().

usage: race.py READ_FD SETTINGS_JSON
"""

import json
import os
import sys

from runtime import main  # type: ignore[import-not-found]  # unitgen/launcher/runtime.py, via sys.path

os.read(int(sys.argv[1]), 1)  # everyone wakes up when the test closes the write end
raise SystemExit(main(json.loads(sys.argv[2]), []))
