"""A helper module reached only through an import: its code still counts."""

import time


def slow_write(path, text, delay):
    half = len(text) // 2
    with open(path, "w") as f:
        f.write(text[:half])
        f.flush()
        time.sleep(delay)  # a kill here leaves a half-written file in the temp dir
        f.write(text[half:])
