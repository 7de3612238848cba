"""Keep HF ``datasets`` off the network when asked: the loaders' offline switch."""

from __future__ import annotations

import contextlib


@contextlib.contextmanager
def hub_offline(offline: bool):
    """Make datasets/huggingface_hub refuse network for the duration (restored after).

    Both libraries read HF_HUB_OFFLINE once at import, so setting the environment
    variable here would come too late; their module flags are what they consult.
    """
    if not offline:
        yield
        return
    import datasets.config
    import huggingface_hub.constants

    saved = datasets.config.HF_HUB_OFFLINE, huggingface_hub.constants.HF_HUB_OFFLINE
    datasets.config.HF_HUB_OFFLINE = huggingface_hub.constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        datasets.config.HF_HUB_OFFLINE, huggingface_hub.constants.HF_HUB_OFFLINE = saved
