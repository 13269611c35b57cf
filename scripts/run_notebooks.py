"""Runs every notebook under notebooks/ with papermill, or checks that they are committed clean.

    python scripts/run_notebooks.py --weights-rn PATH --weights-vit PATH --photo PATH [--steps N] [--device cpu]
    python scripts/run_notebooks.py --check-clean

Run with the set-up's interpreter (~/.cache/clip-rs/torch-2.11.0/bin/python), which has clip_rs
and needs `pip install papermill nbclient nbformat ipykernel matplotlib`.

Each notebook is executed in the kernel `python3` (checked to be this interpreter first) into a
temporary directory: its executed copy is `<tmp>/<stem>.ipynb`, its working directory and results
`<tmp>/<stem>/`. The committed notebooks are never written. Parameters are injected into the cell
tagged `parameters`, only those the notebook declares:

- per-model notebooks: `WEIGHTS` (the ResNet checkpoint when the notebook's MODEL is a ResNet,
  else the ViT one), `STEPS`, `DEVICE`, `REAL_PHOTO`, `OUT`;
- beyond.ipynb: `WEIGHTS_A` (ResNet), `WEIGHTS_B` (ViT), `STEPS`, `DEVICE`, `REAL_PHOTO`, `OUT`.

Prints one line per notebook with its wall time. Exits 1 when a cell fails (naming the notebook
and the cell; the temporary directory is kept for a look), 2 on bad arguments.

`--check-clean` only checks that every notebook has no outputs and no execution counts (nbformat
v4), and exits 1 naming the offenders.

The fast check uses the tiny random-weight checkpoints of the tests:

    python scripts/run_notebooks.py \\
        --weights-rn clip-core/tests/fixtures/models/tiny-rn.pt \\
        --weights-vit clip-core/tests/fixtures/models/tiny-vit.pt \\
        --photo clip-core/tests/fixtures/preprocess/photo_300x200.jpg --steps 3
"""

import argparse
import ast
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parent.parent
KERNEL = "python3"


def notebooks(directory: Path):
    found = sorted(directory.glob("*.ipynb"))
    if not found:
        sys.exit(f"error: no notebook in {directory}")
    return found


def show(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


# ----------------------------------------------------------------------------- --check-clean


def check_clean(directory: Path) -> int:
    offenders = []
    paths = notebooks(directory)
    for path in paths:
        try:
            nb = nbformat.read(path, as_version=nbformat.NO_CONVERT)
        except Exception as e:  # not JSON, not a notebook
            offenders.append(f"{show(path)}: cannot be read as a notebook: {e}")
            continue
        if nb.get("nbformat") != 4:
            offenders.append(f"{show(path)}: nbformat {nb.get('nbformat')}, not 4")
            continue
        for index, cell in enumerate(nb.cells):
            if cell.get("cell_type") != "code":
                continue
            problems = []
            if cell.get("outputs"):
                problems.append(f"{len(cell['outputs'])} output(s)")
            if cell.get("execution_count") is not None:
                problems.append(f"execution count {cell['execution_count']}")
            if problems:
                offenders.append(f"{show(path)}: cell {index} (id {cell.get('id', '-')}): {', '.join(problems)}")
    if offenders:
        print("notebooks with outputs or execution counts (clear them before committing):", file=sys.stderr)
        for line in offenders:
            print(f"  {line}", file=sys.stderr)
        return 1
    print(f"{len(paths)} notebook(s) clean: no outputs, no execution counts")
    return 0


# ----------------------------------------------------------------------------- the kernel


def ensure_kernel(scratch: Path) -> None:
    """Makes sure the kernel `python3` runs this interpreter (sys.executable): when the kernelspec
    Jupyter finds runs another Python, a kernelspec of this one is put first on JUPYTER_PATH for
    this process. Then a one-cell notebook checks it."""
    try:
        import ipykernel  # noqa: F401
    except ImportError:
        sys.exit(f"error: ipykernel is not installed in {sys.executable}: {sys.executable} -m pip install ipykernel")
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    here = os.path.abspath(sys.executable)
    try:
        argv0 = KernelSpecManager().get_kernel_spec(KERNEL).argv[0]
        # jupyter_client runs a kernelspec's bare "python", "python3" or "python3.11" as sys.executable.
        bare = {"python", f"python{sys.version_info[0]}", "python%i.%i" % sys.version_info[:2]}
        runs = here if argv0 in bare else os.path.abspath(argv0)
    except NoSuchKernel:
        runs = None
    if runs != here:
        spec_dir = scratch / "jupyter" / "kernels" / KERNEL
        spec_dir.mkdir(parents=True)
        spec = {
            "argv": [here, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
            "display_name": f"Python 3 ({here})",
            "language": "python",
        }
        (spec_dir / "kernel.json").write_text(json.dumps(spec, indent=1))
        os.environ["JUPYTER_PATH"] = os.pathsep.join(filter(None, [str(scratch / "jupyter"), os.environ.get("JUPYTER_PATH")]))
        print(f"note: kernel {KERNEL!r} ran {runs or 'nothing (not installed)'}; using a kernelspec of {here} for this run")

    from nbclient import NotebookClient

    probe = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("import sys; print(sys.executable)")])
    NotebookClient(probe, kernel_name=KERNEL, timeout=120).execute()
    seen = "".join(o.get("text", "") for o in probe.cells[0].outputs).strip()
    if os.path.abspath(seen) != here:
        sys.exit(f"error: kernel {KERNEL!r} runs {seen!r}, not {here}")


# ----------------------------------------------------------------------------- running


def declared(path: Path) -> dict:
    """The names the notebook's cell tagged `parameters` assigns: name -> its value when it is a
    literal, else None. Empty when there is no such cell."""
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code" and "parameters" in cell.metadata.get("tags", []):
            break
    else:
        return {}
    out = {}
    for node in ast.parse(cell.source).body:
        if isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                if isinstance(target, ast.Name):
                    try:
                        out[target.id] = ast.literal_eval(node.value)
                    except (ValueError, TypeError, SyntaxError):
                        out[target.id] = None
    return out


def parameters_for(path: Path, args, work: Path) -> dict:
    names = declared(path)
    model = names.get("MODEL")
    resnet = isinstance(model, str) and model.upper().startswith("RN")
    offered = {
        "WEIGHTS": str(args.weights_rn if resnet else args.weights_vit),
        "WEIGHTS_A": str(args.weights_rn),
        "WEIGHTS_B": str(args.weights_vit),
        "STEPS": args.steps,
        "DEVICE": args.device,
        "REAL_PHOTO": str(args.photo),
        "OUT": str(work / "results"),
    }
    return {k: v for k, v in offered.items() if k in names}


def failed_cell(error, source: Path, executed: Path) -> str:
    """Names the failing cell by its index in the committed notebook: the code cell with the
    failing source (papermill's own indices count the cells it inserts)."""
    try:
        for index, cell in enumerate(nbformat.read(source, as_version=4).cells):
            if cell.cell_type == "code" and cell.source == error.source:
                return f"cell {index} (id {cell.get('id', '-')})"
    except Exception:
        pass
    if str(error.source).startswith("# Parameters"):
        return "the cell of injected parameters"
    return f"the cell executed as [{error.exec_count}] (see {executed})"


def run(args) -> int:
    import papermill
    from papermill.exceptions import PapermillExecutionError

    for flag in ("weights_rn", "weights_vit", "photo"):
        value = getattr(args, flag)
        if value is None:
            print(f"error: --{flag.replace('_', '-')} is required (or --check-clean)", file=sys.stderr)
            return 2
        if not value.is_file():
            print(f"error: --{flag.replace('_', '-')}: no file {value}", file=sys.stderr)
            return 2
        setattr(args, flag, value.resolve())
    if args.steps < 1:
        print("error: --steps must be at least 1", file=sys.stderr)
        return 2

    paths = notebooks(args.notebooks)
    tmp = Path(tempfile.mkdtemp(prefix="clip-rs-notebooks-"))
    ensure_kernel(tmp)
    failures = []
    total = time.perf_counter()
    for path in paths:
        work = tmp / path.stem
        work.mkdir()
        executed = tmp / path.name
        params = parameters_for(path, args, work)
        if not params:
            print(f"note: {show(path)} has no cell tagged 'parameters' declaring any of them: run with its own defaults")
        start = time.perf_counter()
        try:
            papermill.execute_notebook(
                str(path), str(executed), parameters=params, kernel_name=KERNEL, cwd=str(work),
                progress_bar=False, log_output=False,
            )
        except PapermillExecutionError as e:
            where = failed_cell(e, path, executed)
            line = f"{show(path)}: FAILED in {time.perf_counter() - start:.1f} s at {where}: {e.ename}: {e.evalue}"
            failures.append(line)
            print(line, flush=True)
            continue
        except Exception as e:  # the kernel died, a timeout, a bad notebook
            line = f"{show(path)}: FAILED in {time.perf_counter() - start:.1f} s: {type(e).__name__}: {e}"
            failures.append(line)
            print(line, flush=True)
            continue
        print(f"{show(path)}: ok in {time.perf_counter() - start:.1f} s", flush=True)
    print(f"{len(paths)} notebook(s) in {time.perf_counter() - total:.1f} s")
    if failures:
        print(f"{len(failures)} notebook(s) failed; executed copies kept in {tmp}:", file=sys.stderr)
        for line in failures:
            print(f"  {line}", file=sys.stderr)
        return 1
    if args.keep:
        print(f"executed copies and results kept in {tmp}")
    else:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--weights-rn", type=Path, help="a ResNet CLIP checkpoint (WEIGHTS of RN notebooks, WEIGHTS_A)")
    parser.add_argument("--weights-vit", type=Path, help="a ViT CLIP checkpoint (WEIGHTS of ViT notebooks, WEIGHTS_B)")
    parser.add_argument("--photo", type=Path, help="a photo (REAL_PHOTO)")
    parser.add_argument("--steps", type=int, default=3, help="STEPS (default 3)")
    parser.add_argument("--device", default="cpu", help="DEVICE (default cpu)")
    parser.add_argument("--notebooks", type=Path, default=ROOT / "notebooks", help="the notebooks' directory (default notebooks/)")
    parser.add_argument("--keep", action="store_true", help="keep the executed copies and results (kept anyway on failure)")
    parser.add_argument("--check-clean", action="store_true", help="only check that the notebooks have no outputs and no execution counts")
    args = parser.parse_args(argv)
    if args.check_clean:
        return check_clean(args.notebooks)
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
