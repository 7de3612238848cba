"""gen: n seeded random integers (optionally slow, to test interruption)."""

import json
import random
import time

from pipeline.spec import Context, StageSpec

SPEC = StageSpec(name="gen", reads=("n", "seed", "delay"), code=("stages.helpers",))


def run(ctx: Context) -> dict:
    from stages.helpers import slow_write

    rng = random.Random(ctx.params["seed"])
    values = [rng.randrange(100) for _ in range(ctx.params["n"])]
    slow_write(ctx.out / "values.json", json.dumps(values), ctx.params["delay"])
    time.sleep(0)
    return {"total": sum(values)}
