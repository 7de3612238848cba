"""The params only set attention (SKA) reads, one list for every SKA train stage.

A stage marks them ``applies`` SKA only, so an SDPA (or attention-free) cell leaves them out of
its params and editing one retrains no such cell. Their types and ranges stay inline in each
stage's SPEC: rules written there never enter a fingerprint (pipeline.codehash), rules kept here
would.
"""

# The set kernel's keys every SKA model has: sets of minhash_k hashes, taken every stride tokens
# or patches, the router's top-k, the adapter's rank, and the score with its gamma and beta.
SET_KEYS = ("stride", "minhash_k", "router_topk", "adapter_rank", "score_mode", "gamma", "beta")

# SKA's keys in a model that builds its bank from its own input (ViT, image and text DDPM): the
# bank's window and hash seed are the model's, as is the kernel's backend. (Their local mixer,
# when they have one, is a width-3 conv: no window.)
INLINE_BANK_KEYS = ("window", *SET_KEYS, "hash_seed", "backend")
