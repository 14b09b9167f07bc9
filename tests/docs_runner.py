"""Runs one doc page's python blocks, in order, in one namespace (tests/test_docs.py starts it
in a subprocess per page). argv: a JSON file of blocks ({"where", "code"}) and the JSON file to
write the results to: per block its stdout, its wall time and, if it raised, the traceback. The
first block that raises ends the run (the later ones may need its names)."""

import contextlib
import io
import json
import linecache
import sys
import time
import traceback


def main(blocks_file, results_file):
    with open(blocks_file) as f:
        blocks = json.load(f)
    namespace = {"__name__": "__main__"}
    results = []
    for block in blocks:
        out = io.StringIO()
        error = None
        start = time.perf_counter()
        try:
            # Registered as a source file, so inspect.getsource (Triton's jit) finds the code.
            lines = block["code"].splitlines(True)
            linecache.cache[block["where"]] = (len(block["code"]), None, lines, block["where"])
            code = compile(block["code"], block["where"], "exec")
            with contextlib.redirect_stdout(out):
                exec(code, namespace)
        except BaseException:  # a doc block's SystemExit is a failure too
            error = traceback.format_exc()
        results.append(
            {"stdout": out.getvalue(), "error": error, "seconds": time.perf_counter() - start}
        )
        with open(results_file, "w") as f:  # written as it goes: a hang still leaves the rest
            json.dump(results, f)
        if error is not None:
            break


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
