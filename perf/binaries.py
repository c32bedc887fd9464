"""Path, SHA-256 and build time of the binaries a benchmark ran: with `--no-build` a script runs
whatever the target directory holds, and this is how its result is matched to a build."""

import datetime
import hashlib
import os


def identify(paths):
    """{name: path} -> {name: {"path", "sha256", "mtime"}}; a missing file is recorded as such."""
    found = {}
    for name, path in paths.items():
        try:
            digest = hashlib.sha256()
            with open(path, "rb") as handle:
                for chunk in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(chunk)
            mtime = datetime.datetime.fromtimestamp(os.stat(path).st_mtime,
                                                    datetime.timezone.utc)
        except OSError as error:
            found[name] = {"path": path, "error": str(error)}
            continue
        found[name] = {"path": path, "sha256": digest.hexdigest(),
                       "mtime": mtime.isoformat(timespec="seconds")}
    return found
