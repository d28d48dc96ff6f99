"""The example notebook, examples/quickstart.ipynb, runs from top to bottom and shows what it says.

    pytest tests/test_notebook.py     # executes it in a temporary folder (about a minute on two cores)
    python tests/test_notebook.py     # the same, then stores the new outputs in the notebook

The kernel is this interpreter's (ipykernel), started in a temporary folder, so the run folder and
the sample images the notebook writes land there, never in the repository.
"""

from __future__ import annotations

import re
import sys
import tempfile
from pathlib import Path

import nbformat
import pytest
from ipykernel.kernelspec import write_kernel_spec
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import KernelManager
from nbclient import NotebookClient

NOTEBOOK = Path(__file__).resolve().parents[1] / "examples" / "quickstart.ipynb"
CELL_TIMEOUT_S = 300  # the longest cell trains `fast` on all of MNIST: about 15 s on two cores
KERNEL = "this-python"
MIN_ACCURACY = 97.0  # percent; `fast` reaches about 99.2 % (README), 97 leaves room for any machine


def execute(notebook: Path, folder: Path) -> nbformat.NotebookNode:
    """The notebook executed by a kernel running this interpreter, in `folder`.

    A kernel spec of our own rather than "python3", which a user's Jupyter may map to another
    Python; outputs are stored as a notebook shows them (a progress bar's redraws collapsed, no
    timings), so running it again changes only what the run itself changed.
    """
    nb = nbformat.read(notebook, as_version=4)
    specs = folder / ".kernels"
    write_kernel_spec(specs / KERNEL)  # argv: sys.executable -m ipykernel_launcher
    kernel = KernelManager(kernel_name=KERNEL, kernel_spec_manager=KernelSpecManager(kernel_dirs=[str(specs)]))
    NotebookClient(nb, km=kernel, timeout=CELL_TIMEOUT_S, coalesce_streams=True, record_timing=False,
                   resources={"metadata": {"path": str(folder)}}).execute()
    nb.metadata.pop("widgets", None)
    nb.metadata["language_info"] = {"name": "python"}  # not this machine's Python version
    return nb


def cell(nb: nbformat.NotebookNode, tag: str) -> nbformat.NotebookNode:
    """The code cell tagged `tag` (cell metadata "tags": what the assertions below look for)."""
    (found,) = [c for c in nb.cells if tag in c.metadata.get("tags", [])]
    return found


def text(c: nbformat.NotebookNode) -> str:
    """Everything a cell printed to stdout."""
    return "".join(o.text for o in c.outputs if o.output_type == "stream" and o.name == "stdout")


def html(c: nbformat.NotebookNode) -> str:
    """The HTML a cell displayed, as Jupyter shows it."""
    shown = [o for o in c.outputs if o.output_type in ("execute_result", "display_data")]
    return "".join(o.data.get("text/html", "") for o in shown)


def check_outputs(nb: nbformat.NotebookNode) -> None:
    """What any executed copy of the notebook must show, stored or fresh."""
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert [c.execution_count for c in code] == list(range(1, len(code) + 1)), "not run top to bottom"
    assert [o for c in code for o in c.outputs if o.output_type == "error"] == []
    trained = cell(nb, "train")
    assert "<table>" in html(trained) and "test accuracy" in html(trained)
    assert [o.text for o in trained.outputs if o.get("name") == "stderr"] == []  # no TensorFlow start-up notes

    accuracy = float(re.search(r"^test accuracy (\d+\.\d+) %", text(cell(nb, "evaluate")), re.M).group(1))
    assert accuracy > MIN_ACCURACY

    page = html(cell(nb, "report"))
    assert page.startswith('<iframe srcdoc="') and "confusion matrix" in page

    answers = re.findall(r"^true (\d)  predicted (\d)", text(cell(nb, "predict")), re.M)
    assert len(answers) == 10 and sum(a == b for a, b in answers) >= 9

    samples = cell(nb, "samples")
    assert any("image/jpeg" in o.get("data", {}) for o in samples.outputs)  # the photo, shown
    assert len(re.findall(r"^samples/\S+ +\d ", text(samples), re.M)) == 4

    assert re.search(r"top-1 agreement (99\.99|100\.00) %", text(cell(nb, "export")))
    assert text(cell(nb, "onnx")).startswith("onnx ")

    shown = [o.get("text", "") + o.get("data", {}).get("text/plain", "") for c in code for o in c.outputs]
    assert [t for t in shown if "/tmp" in t or str(Path.home()) in t] == []  # no machine's paths


def test_stored_notebook_is_valid_and_executed():
    """The file in the repository keeps its outputs: a reader sees them without running it."""
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    check_outputs(nb)


@pytest.mark.slow
def test_notebook_runs(tmp_path):
    check_outputs(execute(NOTEBOOK, tmp_path))
    assert (tmp_path / "runs" / "latest" / "model.onnx").is_file()  # its run folder went to tmp_path


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as folder:
        executed = execute(NOTEBOOK, Path(folder))
    check_outputs(executed)
    nbformat.write(executed, NOTEBOOK)
    print(f"stored the outputs in {NOTEBOOK}", file=sys.stderr)
