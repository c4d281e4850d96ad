"""MLproject's entry points, written from the step parameters declared in `pipeline/parameters.py`.

    python tools/mlproject.py write    # rewrite MLproject's `entry_points:` (make mlproject)
    python tools/mlproject.py check    # exit 1 when MLproject differs from what it would write (tests run this)

Each step declares its parameters once (a YAML anchor) and `main` reuses them (aliases) and forwards every one
to the steps that take it. Every command is `python <file>.py ...`: on Databricks MLflow runs the second word.
"""

import dataclasses
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from pipeline.parameters import STEP_PARAMETERS, MainParameters, as_text, mlproject_type  # noqa: E402

FILES = {"download_data": "pipeline/download_data.py", "fine_tuning_model": "pipeline/fine_tuning_model.py",
         "register_model": "pipeline/register_model.py", "batch_inference": "pipeline/batch_inference.py",
         "main": "main.py"}
MARKER = "entry_points:\n"


def declaration(item: dataclasses.Field) -> str:
    default = json.dumps(as_text(item.default)) if item.type in (str, bool) else repr(item.default)
    return f"{{type: {mlproject_type(item)}, default: {default}}}"


def command(file: str, words: list[str]) -> list[str]:
    """The folded command, wrapped between words (an option stays beside its value)."""
    lines = [f"python {file}"]
    for word in words:
        if len(lines[-1]) + 1 + len(word) > 112:
            lines.append(word)
        else:
            lines[-1] += f" {word}"
    return ["    command: >-", *(f"      {line}" for line in lines)]


def option(item: dataclasses.Field) -> str:
    return f"--{item.name.replace('_', '-')} {{{item.name}}}"


def entry_points() -> str:
    lines = [MARKER.rstrip("\n")]
    anchored: dict[str, str] = {}  # name -> declaration: a parameter two steps take (spark_master) is declared once
    for step, config in STEP_PARAMETERS.items():
        lines += [f"  {step}:", "    parameters:"]
        for item in dataclasses.fields(config):
            if item.name in anchored:
                if anchored[item.name] != declaration(item):
                    sys.exit(f"error: {step}.{item.name} is {declaration(item)}, another step's is {anchored[item.name]}: "
                             "main forwards one value to both, so declare them alike")
                lines.append(f"      {item.name}: *{item.name}")
            else:
                anchored[item.name] = declaration(item)
                lines.append(f"      {item.name}: &{item.name} {declaration(item)}")
        lines += command(FILES[step], [option(item) for item in dataclasses.fields(config)])
        lines.append("")
    forwarded = [item for config in STEP_PARAMETERS.values() for item in dataclasses.fields(config)]
    unique = list({item.name: item for item in forwarded}.values())
    lines += ["  main:", "    parameters:"]
    lines += [f"      {item.name}: {declaration(item)}" for item in dataclasses.fields(MainParameters)]
    lines += [f"      {item.name}: *{item.name}" for item in unique]
    lines += command(FILES["main"], [option(item) for item in dataclasses.fields(MainParameters)] +
                     [f"{item.name}={{{item.name}}}" for item in unique])
    return "\n".join(lines) + "\n"


def written(text: str) -> str:
    """`text` (MLproject) with its entry points as `entry_points()` writes them."""
    return text[:text.index(MARKER)] + entry_points()


if __name__ == "__main__":
    path = REPO / "MLproject"
    if sys.argv[1:] == ["write"]:
        path.write_text(written(path.read_text()))
    elif written(path.read_text()) != path.read_text():
        sys.exit("error: MLproject's entry points differ from pipeline/parameters.py: run make mlproject")
