"""Reports: a terminal table, and JSON + Markdown files with the environment and totals."""

import datetime
import json
import os
import platform


def environment(device):
    import torch
    import triton

    env = {
        "device": device,
        "tier": "gpu" if device == "cuda" else "interpreter",
        "torch": torch.__version__,
        "triton": triton.__version__,
        "python": platform.python_version(),
        "date": datetime.date.today().isoformat(),
    }
    if device == "cuda":
        props = torch.cuda.get_device_properties(0)
        env.update(gpu=props.name, sms=props.multi_processor_count, driver=_driver_version())
    else:
        env.update(gpu="none (Triton interpreter on the CPU)")
    return env


def _driver_version():
    import subprocess

    try:
        return subprocess.run(
            ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def totals(case_results, mutant_results):
    passed = sum(r.passed for r in case_results)
    caught = sum(m.caught and m.right_cause for m in mutant_results)
    return {
        "cases": len(case_results),
        "passed": passed,
        "failed": len(case_results) - passed,
        "mutants": len(mutant_results),
        "mutants_caught_with_right_cause": caught,
        "mutation_score": caught / len(mutant_results) if mutant_results else None,
    }


def not_run(case_results):
    """The checks that could not run here (``Finding.ran`` False): one line per check and
    reason with the number of cases, e.g. ``graph replay on 53 cases: not run: CUDA graphs
    need a CUDA device``."""
    counts = {}
    for r in case_results:
        for f in r.findings:
            if not f.ran:
                key = (f.check, "; ".join(f.reasons))
                counts[key] = counts.get(key, 0) + 1
    return [
        f"{check} on {count} case{'s' * (count > 1)}: {why}"
        for (check, why), count in counts.items()
    ]


def table(case_results, mutant_results):
    """Plain-text summary for the terminal."""
    lines = []
    failed = [r for r in case_results if not r.passed]
    lines.append(f"{'case':44} {'kernel':10} result  cause")
    for r in failed:
        lines.append(f"{r.case.name[:44]:44} {r.kernel[:10]:10} FAIL    {', '.join(r.causes)}")
        for f in r.findings:
            if f.passed:
                continue
            if f.groups:  # one line per cause, lead first
                lines.append(f"    {f.check}:")
                lines += [f"      {group.line()[:150]}" for group in f.groups]
            else:
                lines.append(f"    {f.check}: {'; '.join(f.reasons)[:150]}")
    lines.append(f"{len(case_results) - len(failed)} of {len(case_results)} cases passed")
    lines += [f"  {line}" for line in not_run(case_results)]
    if mutant_results:
        lines.append("")
        name_width = max(len("mutant"), *(len(m.mutant.name) for m in mutant_results))
        cause_width = max(len("expected cause"), *(len(m.expected_cause) for m in mutant_results))
        lines.append(
            f"{'mutant':{name_width}} {'expected cause':{cause_width}} caught  cause found"
        )
        for m in mutant_results:
            verdict = "yes" if m.caught and m.right_cause else ("wrong" if m.caught else "NO")
            lines.append(
                f"{m.mutant.name:{name_width}} {m.expected_cause:{cause_width}} {verdict:7} "
                f"{', '.join(dict.fromkeys(m.result.causes)) or '-'}"
            )
        score = totals(case_results, mutant_results)["mutation_score"]
        lines.append(
            f"mutation score {score:.0%} "
            f"({sum(m.caught and m.right_cause for m in mutant_results)} of "
            f"{len(mutant_results)} caught with the right cause)"
        )
    return "\n".join(lines)


def title(env):
    """What a run checked, from its environment: the tier (with the GPU's name on a GPU), the
    kernel under test when not the project's own (``kernel``), the case file (``cases``) or
    named set (``set``), and the shard when the run was one of several, e.g. ``interpreter,
    kernel my_module:buggy, cases cases.json`` or ``gpu NVIDIA H200, set full``."""
    tier = env.get("tier", env.get("device"))
    parts = [f"{tier} {env['gpu']}" if tier == "gpu" and env.get("gpu") else tier]
    if env.get("kernel"):
        parts.append(f"kernel {env['kernel']}")
    if env.get("cases"):
        parts.append(f"cases {env['cases']}")
    elif env.get("set"):
        parts.append(f"set {env['set']}")
    if env.get("shard", "1/1") != "1/1":
        parts.append(f"shard {env['shard']}")
    return ", ".join(map(str, parts))


def write(folder, env, case_results, mutant_results):
    """``report.json`` and ``report.md`` in ``folder``."""
    os.makedirs(folder, exist_ok=True)
    summary = totals(case_results, mutant_results)
    with open(os.path.join(folder, "report.json"), "w") as f:
        json.dump(
            {
                "environment": env,
                "totals": summary,
                "cases": [r.to_dict() for r in case_results],
                "mutants": [m.to_dict() for m in mutant_results],
            },
            f,
            indent=1,
            default=str,
        )
    lines = [
        f"# Conformance report: {title(env)}",
        "",
        ", ".join(f"{k} {v}" for k, v in env.items()),
        "",
        f"**Cases: {summary['passed']} passed, {summary['failed']} failed, of "
        f"{summary['cases']}.**",
    ]
    if mutant_results:
        lines.append(
            f"**Mutants: {summary['mutants_caught_with_right_cause']} of "
            f"{summary['mutants']} caught with the right cause (mutation score "
            f"{summary['mutation_score']:.0%}).**"
        )
    lines += ["", "| case | kernel | result | cause | seconds |", "|---|---|---|---|---:|"]
    for r in case_results:
        lines.append(
            f"| {r.case.name} | {r.kernel} | {'pass' if r.passed else 'FAIL'} | "
            f"{r.cause or ''} | {r.seconds:.2f} |"
        )
    if mutant_results:
        lines += [
            "",
            "| mutant | what is wrong | expected cause | caught | causes found |",
            "|---|---|---|---|---|",
        ]
        for m in mutant_results:
            lines.append(
                f"| {m.mutant.name} | {m.mutant.description} | {m.expected_cause} "
                f"| {'yes' if m.caught and m.right_cause else 'no'} | "
                f"{', '.join(dict.fromkeys(m.result.causes))} |"
            )
    skipped = not_run(case_results)
    if env.get("mutants_not_run"):
        skipped.append(f"mutants not run on {env['device']}: {env['mutants_not_run']}")
    if skipped:
        lines += ["", "## Not run here", ""] + [f"- {line}" for line in skipped]
    failures = [r for r in case_results if not r.passed] + [m.result for m in mutant_results]
    if failures:
        lines += ["", "## Findings"]
        for r in failures:
            lines.append(f"- **{r.case.name}** ({r.kernel}): {', '.join(r.causes) or 'failed'}")
            for f in r.findings:
                if f.passed:
                    continue
                if f.groups:  # diagnosed tile by tile: one line per cause, lead first
                    lines.append(f"  - {f.check}:")
                    lines += [f"    - {reason}" for reason in f.reasons]
                else:
                    lines.append(
                        f"  - {f.check}: {'; '.join(f.reasons)}"
                        + (f" -- cause: {f.cause}" if f.cause else "")
                    )
                if f.diagnosis and {"tile", "plan"} <= f.diagnosis.keys():
                    lines.append(
                        f"    - refsim's plan for tile {f.diagnosis['tile']}: "
                        f"{f.diagnosis['plan']}; {f.diagnosis.get('detail', '')}"
                    )
    with open(os.path.join(folder, "report.md"), "w") as f:
        f.write("\n".join(lines) + "\n")


def tier_summary(folders):
    """A Markdown table of totals and mutation score per tier, from the ``report.json`` files of
    runs written to ``folders`` (one per tier: the interpreter's quick set, a GPU's full set)."""
    lines = [
        "| tier | device | cases | passed | mutants | caught with the right cause | "
        "mutation score | wall time | date |",
        "|---|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for folder in folders:
        with open(os.path.join(folder, "report.json"), encoding="utf-8") as f:
            data = json.load(f)
        env, summary = data["environment"], data["totals"]
        score = summary["mutation_score"]
        wall = env.get("wall_seconds")
        lines.append(
            f"| {env.get('tier', env['device'])} | {env.get('gpu')} | {summary['cases']} | "
            f"{summary['passed']} | {summary['mutants']} | "
            f"{summary['mutants_caught_with_right_cause']} | "
            f"{'-' if score is None else f'{score:.0%}'} | "
            f"{'-' if wall is None else f'{wall:.0f} s'} | {env.get('date')} |"
        )
    return "\n".join(lines)


def main(argv=None):
    """``python -m conformance.report DIR [DIR ...]``: the per-tier table of written reports."""
    import argparse
    import sys

    parser = argparse.ArgumentParser(
        prog="python -m conformance.report",
        description="Print totals and the mutation score per tier of written conformance reports.",
    )
    parser.add_argument("folders", nargs="+", metavar="DIR", help="a folder holding report.json")
    args = parser.parse_args(argv)
    try:
        print(tier_summary(args.folders))
    except OSError as exc:
        print(f"conformance.report: error: {exc.filename}: {exc.strerror}", file=sys.stderr)
        return 2
    except (ValueError, KeyError, TypeError) as exc:
        print(f"conformance.report: error: not a conformance report: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
