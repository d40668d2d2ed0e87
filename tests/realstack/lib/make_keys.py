"""Create Keystone's fernet-token and credential key repositories, as `keystone-manage fernet_setup` and
`credential_setup` would: a 0700 directory with a staged key "0" and a primary key "1", each a Fernet key
(url-safe base64 of 32 random bytes) in a 0600 file.

Why not keystone-manage: each call imports all of Keystone (seconds of CPU); this takes milliseconds.

usage: make_keys.py DIRECTORY [DIRECTORY ...]   (an existing repository is left alone)
"""

import base64
import os
import sys


def make_repository(path):
    if os.path.exists(os.path.join(path, "0")):
        return
    os.makedirs(path, mode=0o700, exist_ok=True)
    os.chmod(path, 0o700)
    for index in ("0", "1"):
        key = base64.urlsafe_b64encode(os.urandom(32)).decode()
        fd = os.open(os.path.join(path, index), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(key)


if __name__ == "__main__":
    for directory in sys.argv[1:]:
        make_repository(directory)
