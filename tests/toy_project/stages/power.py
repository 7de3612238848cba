"""power: raise every value to a power."""

import json

from pipeline.spec import Context, StageSpec

SPEC = StageSpec(name="power", reads=("exponent", "fail"), needs=("gen",), ranges={"exponent": ">= 0"})


def run(ctx: Context) -> dict:
    if ctx.params["fail"]:
        raise RuntimeError("asked to fail")
    values = json.loads((ctx.input("gen") / "values.json").read_text())
    out = [v ** ctx.params["exponent"] for v in values]
    (ctx.out / "values.json").write_text(json.dumps(out))
    return {"total": sum(out)}
