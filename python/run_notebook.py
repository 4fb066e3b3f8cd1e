"""Executes a notebook top to bottom with nbclient, in the notebook's directory, as CI does.

    python python/run_notebook.py NOTEBOOK [EXECUTED_COPY]

Settings reach the notebook through the environment (the notebooks read theirs in their first cell). The notebook
file itself is never written: its committed form has no outputs. The executed copy, when asked for, holds them.
Exit 0 when every cell ran; otherwise the failing cell's error on stderr and exit 1.
"""
import pathlib
import sys

import nbclient
import nbformat


def main():
    path = pathlib.Path(sys.argv[1]).resolve()
    nb = nbformat.read(str(path), as_version=4)
    client = nbclient.NotebookClient(nb, timeout=900, kernel_name="python3",
                                     resources={"metadata": {"path": str(path.parent)}})
    try:
        client.execute()
    except nbclient.exceptions.CellExecutionError as e:
        print(f"{path.name}: {e}", file=sys.stderr)
        return 1
    if len(sys.argv) > 2:
        nbformat.write(nb, sys.argv[2])
    code = sum(1 for c in nb.cells if c.cell_type == "code")
    print(f"{path.name}: {code} code cells ran")
    return 0


if __name__ == "__main__":
    sys.exit(main())
